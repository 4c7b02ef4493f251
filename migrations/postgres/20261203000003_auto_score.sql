-- AutoQA's automatic mode: a published version may ask for every interaction upserted
-- with messages to be auto-scored; the worker reads interactions in update order from a
-- cursor of its own.
ALTER TABLE rubric.rubric_versions ADD COLUMN auto_score boolean NOT NULL DEFAULT false;
CREATE INDEX interactions_by_update ON evaluation.interactions (update_time, tenant_id, id);
CREATE TABLE evaluation.autoqa_cursor (
    singleton    boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    last_time    timestamptz NOT NULL DEFAULT now(),
    last_tenant  uuid        NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    last_id      uuid        NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000'
);
INSERT INTO evaluation.autoqa_cursor DEFAULT VALUES;
