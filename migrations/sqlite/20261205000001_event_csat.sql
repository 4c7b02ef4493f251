-- The CSAT each revision's outbox event carried, kept on the revision itself: rebuilding
-- the analytics derives every event from the evaluations, so the outbox can be pruned
-- once it is consumed. Filled for existing revisions from the last event that named them.
ALTER TABLE evaluations ADD COLUMN event_csat INTEGER;

UPDATE evaluations SET event_csat = last.csat
FROM (
    SELECT tenant_id, evaluation_id, revision, json_extract(payload, '$.csat') AS csat,
           max(position) AS position
    FROM outbox
    GROUP BY tenant_id, evaluation_id, revision
) last
WHERE evaluations.tenant_id = last.tenant_id AND evaluations.id = last.evaluation_id
  AND evaluations.revision = last.revision AND last.csat IS NOT NULL;
