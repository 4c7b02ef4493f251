-- The CSAT each revision's outbox event carried, kept on the revision itself: rebuilding
-- the analytics derives every event from the evaluations, so the outbox can be pruned
-- once it is consumed. Filled for existing revisions from the last event that named them.
ALTER TABLE evaluation.evaluations ADD COLUMN event_csat smallint;

UPDATE evaluation.evaluations e SET event_csat = (last.payload->>'csat')::smallint
FROM (
    SELECT DISTINCT ON (tenant_id, evaluation_id, revision) tenant_id, evaluation_id, revision, payload
    FROM evaluation.outbox
    ORDER BY tenant_id, evaluation_id, revision, txid DESC, position DESC
) last
WHERE e.tenant_id = last.tenant_id AND e.id = last.evaluation_id AND e.revision = last.revision
  AND last.payload->>'csat' IS NOT NULL;

