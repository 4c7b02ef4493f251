-- Sampling plans and the assignments they make (the PostgreSQL migration of the same
-- name says why).

CREATE TABLE sampling_plans (
    tenant_id            BLOB    NOT NULL,
    id                   BLOB    NOT NULL,
    display_name         TEXT    NOT NULL,
    rubric_id            BLOB    NOT NULL,
    filter               TEXT    NOT NULL,
    per_agent_count      INTEGER NOT NULL CHECK (per_agent_count BETWEEN 1 AND 1000),
    period               TEXT    NOT NULL CHECK (period IN ('week', 'month')),
    strategy             TEXT    NOT NULL
                         CHECK (strategy IN ('random', 'stratified_channel', 'low_csat_first')),
    reviewer_ids         TEXT    NOT NULL,
    seed                 INTEGER NOT NULL,
    create_time          INTEGER NOT NULL,
    request_id           TEXT,
    request_fingerprint  BLOB,
    PRIMARY KEY (tenant_id, id)
) STRICT;

CREATE UNIQUE INDEX sampling_plans_request_id_key
    ON sampling_plans (tenant_id, request_id) WHERE request_id IS NOT NULL;

CREATE TABLE sampling_runs (
    tenant_id     BLOB    NOT NULL,
    plan_id       BLOB    NOT NULL,
    period_start  INTEGER NOT NULL,
    short_agents  TEXT    NOT NULL,
    create_time   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, plan_id, period_start)
) STRICT;

CREATE TABLE assignments (
    tenant_id       BLOB    NOT NULL,
    id              BLOB    NOT NULL,
    plan_id         BLOB    NOT NULL,
    period_start    INTEGER NOT NULL,
    interaction_id  BLOB    NOT NULL,
    agent_id        TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    reviewer_id     TEXT    NOT NULL,
    rubric_id       BLOB    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('open', 'done', 'skipped')),
    evaluation_id   BLOB,
    skip_reason     TEXT    NOT NULL DEFAULT '',
    create_time     INTEGER NOT NULL,
    close_time      INTEGER,
    PRIMARY KEY (tenant_id, id)
) STRICT;

CREATE UNIQUE INDEX assignments_one_per_rubric_interaction
    ON assignments (tenant_id, rubric_id, interaction_id);
CREATE INDEX assignments_queue
    ON assignments (tenant_id, reviewer_id, id) WHERE state = 'open';
CREATE INDEX assignments_by_plan
    ON assignments (tenant_id, plan_id, period_start);

CREATE INDEX interactions_by_time
    ON interactions (tenant_id, COALESCE(occur_time, create_time));

-- SQLite has row triggers only.
CREATE TRIGGER evaluations_complete_assignments
    AFTER INSERT ON evaluations
    FOR EACH ROW WHEN NEW.revision = 1 AND NEW.kind = 'manual'
BEGIN
    UPDATE assignments
       SET state = 'done', evaluation_id = NEW.id, close_time = NEW.create_time
     WHERE tenant_id = NEW.tenant_id AND rubric_id = NEW.rubric_id
       AND interaction_id = NEW.interaction_id AND reviewer_id = NEW.reviewer_id
       AND state = 'open';
END;
