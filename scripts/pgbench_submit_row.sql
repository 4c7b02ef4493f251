-- pgbench baseline for SubmitEvaluation: the single-row insert of one evaluation, with
-- the columns, indexes and constraints a submission's evaluation row has, and a
-- time-ordered id like IQS's UUIDv7. Run with -M prepared -D tenant=… -D interaction=….
INSERT INTO evaluation.evaluations
    (tenant_id, id, revision, interaction_id, agent_id, team_id, channel, region, rubric_id,
     rubric_version, reviewer_id, kind, comment, score, section_scores, criterion_scores,
     critical_failed, passed, state, request_id, request_fingerprint, create_time, first_create_time)
SELECT :tenant::uuid, id, 1, :interaction::uuid, 'agent-' || :client_id, 'team-1', 'chat', 'emea',
       '00000000-0000-4000-9000-000000000001', 1, 'reviewer-1', 'manual', '', 75.0,
       '[{"section": "Soft skills", "score": 75.0}]',
       '[{"criterion_key": "empathy", "score": 66.7}, {"criterion_key": "tone", "score": 100.0}]',
       false, false, 'active', id::text, sha256(id::text::bytea), now(), now()
FROM (SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
              || substr(md5(random()::text), 1, 20))::uuid AS id) AS generated;
