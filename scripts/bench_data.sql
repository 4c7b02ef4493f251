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
--
-- Building each fact's event (a JSON object of about a kilobyte) was most of the cost, so
-- the parts that repeat are built once: the 256 combinations of the four ratings, with
-- everything that follows from them, and the 180 combinations of the attributes, which
-- repeat with g modulo 180. Each row then adds only its own ids, CSAT and time.
CREATE TEMPORARY TABLE rating_parts AS
SELECT k, c1, c2, c3, c4, score, score >= 80 AS passed,
       jsonb_build_array(jsonb_build_object('section', '', 'score', score)) AS section_scores,
       jsonb_build_array(
           jsonb_build_object('criterion_key', 'c1', 'score', c1),
           jsonb_build_object('criterion_key', 'c2', 'score', c2),
           jsonb_build_object('criterion_key', 'c3', 'score', c3),
           jsonb_build_object('criterion_key', 'c4', 'score', c4)) AS criterion_scores
FROM (SELECT k, c1::float8 AS c1, c2::float8 AS c2, c3::float8 AS c3, c4::float8 AS c4,
             ((c1 + 2 * c2 + c3 + 2 * c4) / 6)::float8 AS score
      FROM (SELECT k, (k / 64) * 100.0 / 3 AS c1, (k / 16 % 4) * 100.0 / 3 AS c2,
                   (k / 4 % 4) * 100.0 / 3 AS c3, (k % 4) * 100.0 / 3 AS c4
            FROM generate_series(0, 255) AS k) AS ratings) AS scored;
CREATE TEMPORARY TABLE rating_events AS
SELECT k, score, passed, section_scores, criterion_scores,
       jsonb_build_object('revision', 1, 'state', 'active', 'rubric_version', 1, 'score', score,
                          'passed', passed, 'critical_failed', false, 'section_scores', section_scores,
                          'criterion_scores', criterion_scores, 'root_causes', '[]'::jsonb) AS event_part
FROM rating_parts;
CREATE TEMPORARY TABLE attribute_parts AS
SELECT p, agent_id, team_id, region, channel, rubric_id, reviewer_id, kind,
       jsonb_build_object('agent_id', agent_id, 'team_id', team_id, 'channel', channel,
                          'region', region, 'rubric_id', rubric_id, 'reviewer_id', reviewer_id,
                          'kind', kind) AS event_part
FROM (SELECT p, 'agent-' || (p % 30) AS agent_id, 'team-' || (p % 30 % 3) AS team_id,
             (ARRAY['emea', 'amer', 'apac'])[1 + p % 30 % 3] AS region,
             (ARRAY['chat', 'email', 'voice'])[1 + (p * 7 / 3) % 3] AS channel,
             ('00000000-0000-4000-9000-00000000000' || (p * 11 % 3))::uuid AS rubric_id,
             'qa-' || (p * 13 % 10) AS reviewer_id,
             CASE WHEN p % 20 < 17 THEN 'manual' WHEN p % 20 < 19 THEN 'self' ELSE 'calibration' END AS kind
      FROM generate_series(0, 179) AS p) AS attributes;
ANALYZE rating_events;
ANALYZE attribute_parts;

WITH gen AS (
    SELECT g,
           ('00000000-0000-4000-8000-' || lpad((g % 100000)::text, 12, '0'))::uuid AS interaction_id,
           TIMESTAMPTZ '2026-04-01 00:00:00+00'
               + (g * 15724800.0 / :total + abs(hashint8(g * 8 + 6)) % 60) * INTERVAL '1 second' AS t,
           -- Each criterion's rating 0..3 (a score of rating × 100/3), as the digits of k.
           (abs(hashint8(g * 8 + 1)) % 4) * 64 + (abs(hashint8(g * 8 + 2)) % 4) * 16
               + (abs(hashint8(g * 8 + 3)) % 4) * 4 + abs(hashint8(g * 8 + 4)) % 4 AS k,
           g % 180 AS p,
           -- The CSAT of interaction g % 100000 (bench_interactions.sql).
           1 + abs(hashint8(g % 100000)) % 5 AS csat
    FROM generate_series(:first::bigint, :first::bigint + :n - 1) AS g
), rows AS (
    SELECT gen.*, r.score, r.passed, r.section_scores, r.criterion_scores,
           r.event_part AS rating_event, a.agent_id, a.team_id, a.region, a.channel, a.rubric_id,
           a.reviewer_id, a.kind, a.event_part AS attribute_event,
           -- UUIDv7 layout: 48 bits of milliseconds, version 7, then g for uniqueness.
           (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') || '7'
            || lpad(to_hex(g), 19, '0'))::uuid AS id
    FROM gen JOIN rating_events r USING (k) JOIN attribute_parts a USING (p)
), evaluations AS (
INSERT INTO evaluation.evaluations
    (tenant_id, id, revision, interaction_id, agent_id, team_id, channel, region, rubric_id,
     rubric_version, reviewer_id, kind, comment, score, section_scores, criterion_scores,
     critical_failed, passed, state, create_time, first_create_time)
SELECT :'tenant'::uuid, id, 1, interaction_id, agent_id, team_id, channel, region, rubric_id,
       1, reviewer_id, kind, '', score, section_scores, criterion_scores,
       false, passed, 'active', t, t
FROM rows
)
INSERT INTO analytics.evaluation_facts
    (tenant_id, evaluation_id, revision, state, agent_id, team_id, channel, region, rubric_id,
     reviewer_id, kind, score, passed, critical_failed, csat, first_create_time, event)
SELECT :'tenant'::uuid, id, 1, 'active', agent_id, team_id, channel, region, rubric_id,
       reviewer_id, kind, score, passed, false, csat, t,
       rating_event || attribute_event || jsonb_build_object(
           'evaluation_id', id, 'interaction_id', interaction_id, 'csat', csat,
           'first_create_time', to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
FROM rows;
