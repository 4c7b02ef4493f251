-- Disputes of evaluations, coaching sessions with their action items, and the tenant's
-- dispute window (the PostgreSQL migration of the same name says why).

ALTER TABLE tenants ADD COLUMN dispute_window_days INTEGER NOT NULL DEFAULT 14
    CHECK (dispute_window_days BETWEEN 1 AND 365);

CREATE TABLE disputes (
    tenant_id            BLOB    NOT NULL,
    id                   BLOB    NOT NULL,
    evaluation_id        BLOB    NOT NULL,
    evaluation_revision  INTEGER NOT NULL CHECK (evaluation_revision >= 1),
    agent_id             TEXT    NOT NULL,
    team_id              TEXT    NOT NULL,
    reviewer_id          TEXT    NOT NULL,
    state                TEXT    NOT NULL CHECK (state IN ('open', 'resolved', 'withdrawn')),
    outcome              TEXT    CHECK (outcome IN ('accepted', 'partially_accepted', 'rejected')),
    comment              TEXT    NOT NULL,
    proposed_ratings     TEXT    NOT NULL,
    contested_criteria   TEXT    NOT NULL,
    resolution_comment   TEXT    NOT NULL DEFAULT '',
    resolver_id          TEXT    NOT NULL DEFAULT '',
    resolved_revision    INTEGER,
    resolution_fingerprint BLOB,
    open_time            INTEGER NOT NULL,
    resolve_time         INTEGER,
    request_id           TEXT,
    request_fingerprint  BLOB,
    PRIMARY KEY (tenant_id, id),
    CHECK ((state = 'resolved') = (outcome IS NOT NULL))
) STRICT;

CREATE UNIQUE INDEX disputes_request_id_key
    ON disputes (tenant_id, request_id) WHERE request_id IS NOT NULL;
CREATE UNIQUE INDEX disputes_one_open_per_evaluation
    ON disputes (tenant_id, evaluation_id) WHERE state = 'open';
CREATE INDEX disputes_by_evaluation ON disputes (tenant_id, evaluation_id);
CREATE INDEX disputes_by_open_time ON disputes (tenant_id, open_time);

CREATE TABLE coaching_sessions (
    tenant_id            BLOB    NOT NULL,
    id                   BLOB    NOT NULL,
    agent_id             TEXT    NOT NULL,
    coach_id             TEXT    NOT NULL,
    criterion_keys       TEXT    NOT NULL,
    evaluation_ids       TEXT    NOT NULL,
    notes                TEXT    NOT NULL,
    session_time         INTEGER NOT NULL,
    create_time          INTEGER NOT NULL,
    request_id           TEXT,
    request_fingerprint  BLOB,
    PRIMARY KEY (tenant_id, id)
) STRICT;

CREATE UNIQUE INDEX coaching_sessions_request_id_key
    ON coaching_sessions (tenant_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX coaching_sessions_by_agent ON coaching_sessions (tenant_id, agent_id, id DESC);

CREATE TABLE action_items (
    tenant_id    BLOB    NOT NULL,
    session_id   BLOB    NOT NULL,
    id           BLOB    NOT NULL,
    position     INTEGER NOT NULL,
    description  TEXT    NOT NULL,
    due_time     INTEGER,
    done_time    INTEGER,
    PRIMARY KEY (tenant_id, session_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES coaching_sessions (tenant_id, id)
) STRICT;
