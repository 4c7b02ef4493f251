-- Disputes of evaluations, coaching sessions with their action items, and the tenant's
-- dispute window.

ALTER TABLE access.tenants ADD COLUMN dispute_window_days integer NOT NULL DEFAULT 14
    CHECK (dispute_window_days BETWEEN 1 AND 365);

CREATE TABLE evaluation.disputes (
    tenant_id            uuid        NOT NULL,
    id                   uuid        NOT NULL,
    evaluation_id        uuid        NOT NULL,
    evaluation_revision  integer     NOT NULL CHECK (evaluation_revision >= 1),
    agent_id             text        NOT NULL,
    team_id              text        NOT NULL,
    reviewer_id          text        NOT NULL,
    state                text        NOT NULL CHECK (state IN ('open', 'resolved', 'withdrawn')),
    outcome              text        CHECK (outcome IN ('accepted', 'partially_accepted', 'rejected')),
    comment              text        NOT NULL,
    proposed_ratings     jsonb       NOT NULL,
    -- Keys of the criteria whose proposed rating differs from the disputed one.
    contested_criteria   jsonb       NOT NULL,
    resolution_comment   text        NOT NULL DEFAULT '',
    resolver_id          text        NOT NULL DEFAULT '',
    resolved_revision    integer,
    -- A retried resolution with the same content answers as the first one did.
    resolution_fingerprint bytea,
    open_time            timestamptz NOT NULL,
    resolve_time         timestamptz,
    request_id           text,
    request_fingerprint  bytea,
    PRIMARY KEY (tenant_id, id),
    CHECK ((state = 'resolved') = (outcome IS NOT NULL))
);

CREATE UNIQUE INDEX disputes_request_id_key
    ON evaluation.disputes (tenant_id, request_id) WHERE request_id IS NOT NULL;
-- One open dispute per evaluation, whatever races.
CREATE UNIQUE INDEX disputes_one_open_per_evaluation
    ON evaluation.disputes (tenant_id, evaluation_id) WHERE state = 'open';
CREATE INDEX disputes_by_evaluation ON evaluation.disputes (tenant_id, evaluation_id);
CREATE INDEX disputes_by_open_time ON evaluation.disputes (tenant_id, open_time);

CREATE TABLE evaluation.coaching_sessions (
    tenant_id            uuid        NOT NULL,
    id                   uuid        NOT NULL,
    agent_id             text        NOT NULL,
    coach_id             text        NOT NULL,
    criterion_keys       jsonb       NOT NULL,
    evaluation_ids       jsonb       NOT NULL,
    notes                text        NOT NULL,
    session_time         timestamptz NOT NULL,
    create_time          timestamptz NOT NULL,
    request_id           text,
    request_fingerprint  bytea,
    PRIMARY KEY (tenant_id, id)
);

CREATE UNIQUE INDEX coaching_sessions_request_id_key
    ON evaluation.coaching_sessions (tenant_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX coaching_sessions_by_agent ON evaluation.coaching_sessions (tenant_id, agent_id, id DESC);

CREATE TABLE evaluation.action_items (
    tenant_id    uuid        NOT NULL,
    session_id   uuid        NOT NULL,
    id           uuid        NOT NULL,
    position     smallint    NOT NULL,
    description  text        NOT NULL,
    due_time     timestamptz,
    done_time    timestamptz,
    PRIMARY KEY (tenant_id, session_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES evaluation.coaching_sessions (tenant_id, id)
);
