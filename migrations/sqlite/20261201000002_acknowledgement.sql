-- When the agent read an evaluation revision (AcknowledgeEvaluation); a new revision
-- starts unread.
ALTER TABLE evaluations ADD COLUMN acknowledge_time INTEGER;
