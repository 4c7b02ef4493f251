-- AutoQA's automatic mode: a published version may ask for every interaction upserted
-- with messages to be auto-scored; the worker reads interactions in update order from a
-- cursor of its own.
ALTER TABLE rubric_versions ADD COLUMN auto_score INTEGER NOT NULL DEFAULT 0;
CREATE INDEX interactions_by_update ON interactions (update_time, tenant_id, id);
CREATE TABLE autoqa_cursor (
    singleton    INTEGER NOT NULL PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
    last_time    INTEGER NOT NULL,
    last_tenant  BLOB    NOT NULL,
    last_id      BLOB    NOT NULL
) STRICT;
INSERT INTO autoqa_cursor (last_time, last_tenant, last_id)
VALUES (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER),
        X'00000000000000000000000000000000', X'00000000000000000000000000000000');
