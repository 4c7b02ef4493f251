-- Generates evaluations :first .. :first+:n-1 of :total for tenant :'tenant' straight into
-- the evaluation schema, for the query and export benchmarks. Run with psql -v first=…
-- -v n=… -v total=… -v tenant=…; then bench_rollups.sql once. Evaluation g is reviewed at
-- 2026-04-01 + g/total of six months (plus up to a minute of jitter), so rows arrive in
-- time order as they do in service, and ids are time-ordered like IQS's UUIDv7 ids.
-- Each evaluation has four criteria (weights 1, 2, 1, 2; scores on a 1..4 scale), 30
-- agents in 3 teams, 3 channels, 3 rubrics, 10 reviewers, and kinds MANUAL (85%), SELF
-- (10%) and CALIBRATION (5%). Each evaluation's analytics fact is written beside it, as
-- the projector would have; ratings and outbox events are not generated (no figure reads
-- them), and bench_rollups.sql then writes the daily rollups from the facts.
WITH gen AS (
    SELECT g,
           ('00000000-0000-4000-8000-' || lpad((g % 100000)::text, 12, '0'))::uuid AS interaction_id,
           'agent-' || (g % 30) AS agent_id,
           'team-' || (g % 30 % 3) AS team_id,
           (ARRAY['emea', 'amer', 'apac'])[1 + g % 30 % 3] AS region,
           (ARRAY['chat', 'email', 'voice'])[1 + (g * 7 / 3) % 3] AS channel,
           ('00000000-0000-4000-9000-00000000000' || (g * 11 % 3))::uuid AS rubric_id,
           'qa-' || (g * 13 % 10) AS reviewer_id,
           CASE WHEN g % 20 < 17 THEN 'manual' WHEN g % 20 < 19 THEN 'self' ELSE 'calibration' END AS kind,
           TIMESTAMPTZ '2026-04-01 00:00:00+00'
               + (g * 15724800.0 / :total + abs(hashint8(g * 8 + 6)) % 60) * INTERVAL '1 second' AS t,
           (abs(hashint8(g * 8 + 1)) % 4) * 100.0 / 3 AS c1,
           (abs(hashint8(g * 8 + 2)) % 4) * 100.0 / 3 AS c2,
           (abs(hashint8(g * 8 + 3)) % 4) * 100.0 / 3 AS c3,
           (abs(hashint8(g * 8 + 4)) % 4) * 100.0 / 3 AS c4,
           -- The CSAT of interaction g % 100000 (bench_interactions.sql).
           1 + abs(hashint8(g % 100000)) % 5 AS csat
    FROM generate_series(:first::bigint, :first::bigint + :n - 1) AS g
), scored AS (
    SELECT gen.*,
           ((c1 + 2 * c2 + c3 + 2 * c4) / 6)::float8 AS score,
           -- UUIDv7 layout: 48 bits of milliseconds, version 7, then g for uniqueness.
           (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') || '7'
            || lpad(to_hex(g), 19, '0'))::uuid AS id,
           to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS t_text
    FROM gen
), evaluations AS (
INSERT INTO evaluation.evaluations
    (tenant_id, id, revision, interaction_id, agent_id, team_id, channel, region, rubric_id,
     rubric_version, reviewer_id, kind, comment, score, section_scores, criterion_scores,
     critical_failed, passed, state, create_time, first_create_time)
SELECT :'tenant'::uuid, id, 1, interaction_id, agent_id, team_id, channel, region, rubric_id,
       1, reviewer_id, kind, '', score,
       jsonb_build_array(jsonb_build_object('section', '', 'score', score)),
       jsonb_build_array(
           jsonb_build_object('criterion_key', 'c1', 'score', c1::float8),
           jsonb_build_object('criterion_key', 'c2', 'score', c2::float8),
           jsonb_build_object('criterion_key', 'c3', 'score', c3::float8),
           jsonb_build_object('criterion_key', 'c4', 'score', c4::float8)),
       false, score >= 80, 'active', t, t
FROM scored
ORDER BY id
)
INSERT INTO analytics.evaluation_facts
    (tenant_id, evaluation_id, revision, state, agent_id, team_id, channel, region, rubric_id,
     reviewer_id, kind, score, passed, critical_failed, csat, first_create_time, event)
SELECT :'tenant'::uuid, id, 1, 'active', agent_id, team_id, channel, region, rubric_id,
       reviewer_id, kind, score, score >= 80, false, csat, t, jsonb_build_object(
           'evaluation_id', id, 'revision', 1, 'state', 'active', 'interaction_id', interaction_id,
           'agent_id', agent_id, 'team_id', team_id, 'channel', channel, 'region', region,
           'rubric_id', rubric_id, 'rubric_version', 1, 'reviewer_id', reviewer_id, 'kind', kind,
           'score', score, 'passed', score >= 80, 'critical_failed', false,
           'section_scores', jsonb_build_array(jsonb_build_object('section', '', 'score', score)),
           'criterion_scores', jsonb_build_array(
               jsonb_build_object('criterion_key', 'c1', 'score', c1::float8),
               jsonb_build_object('criterion_key', 'c2', 'score', c2::float8),
               jsonb_build_object('criterion_key', 'c3', 'score', c3::float8),
               jsonb_build_object('criterion_key', 'c4', 'score', c4::float8)),
           'root_causes', '[]'::jsonb, 'csat', csat, 'first_create_time', t_text)
FROM scored
ORDER BY id;
