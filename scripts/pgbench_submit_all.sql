-- pgbench baseline for SubmitEvaluation: one transaction writing every row a submission
-- writes (its interaction upserted by source and external id, the evaluation, six ratings
-- and the outbox event), in one statement. Run with -M prepared -D tenant=… -D rep=….
WITH generated AS (
    SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
            || substr(md5(random()::text), 1, 20))::uuid AS id
), interaction AS (
    INSERT INTO evaluation.interactions AS i
        (tenant_id, id, source, external_id, channel, agent_id, team_id, region, csat, messages, attributes)
    SELECT :tenant::uuid, id, 'zendesk', 'pgbench-' || :rep || '-' || id, 'chat', 'agent-' || :client_id,
           'team-1', 'emea', 4,
           '[{"role": "customer", "text": "Hello, my order has not arrived yet."},
             {"role": "agent", "text": "Sorry to hear that, let me check the tracking for you."}]',
           '{}'
    FROM generated
    ON CONFLICT (tenant_id, source, external_id) DO UPDATE SET update_time = now()
    RETURNING id
), evaluation AS (
    INSERT INTO evaluation.evaluations
        (tenant_id, id, revision, interaction_id, agent_id, team_id, channel, region, rubric_id,
         rubric_version, reviewer_id, kind, comment, score, section_scores, criterion_scores,
         critical_failed, passed, state, request_id, request_fingerprint, create_time, first_create_time)
    SELECT :tenant::uuid, id, 1, id, 'agent-' || :client_id, 'team-1', 'chat', 'emea',
           '00000000-0000-4000-9000-000000000001', 1, 'reviewer-1', 'manual', '', 75.0,
           '[{"section": "Soft skills", "score": 75.0}]',
           '[{"criterion_key": "empathy", "score": 66.7}, {"criterion_key": "tone", "score": 100.0}]',
           false, false, 'active', id::text, sha256(id::text::bytea), now(), now()
    FROM interaction
    RETURNING id
), ratings AS (
    INSERT INTO evaluation.ratings
        (tenant_id, evaluation_id, revision, position, criterion_key, value, not_applicable, comment, root_causes)
    SELECT :tenant::uuid, id, 1, position, 'criterion-' || position, 1, false, '', '[]'
    FROM evaluation, generate_series(0, 5) AS position
)
INSERT INTO evaluation.outbox (tenant_id, event_type, evaluation_id, revision, payload)
SELECT :tenant::uuid, 'submitted', id, 1,
       jsonb_build_object('evaluation_id', id, 'revision', 1, 'state', 'active', 'agent_id', 'agent-1',
                          'team_id', 'team-1', 'channel', 'chat', 'region', 'emea', 'kind', 'manual',
                          'score', 75.0, 'passed', false, 'critical_failed', false, 'csat', 4,
                          'section_scores', '[{"section": "Soft skills", "score": 75.0}]'::jsonb,
                          'criterion_scores', '[{"criterion_key": "empathy", "score": 66.7}]'::jsonb,
                          'root_causes', '[]'::jsonb)
FROM evaluation;
