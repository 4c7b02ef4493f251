-- The evaluation service's schema: interactions, evaluations (one row per revision),
-- their ratings, and the outbox of events for analytics.
CREATE SCHEMA IF NOT EXISTS evaluation;

CREATE TABLE evaluation.interactions (
    tenant_id    uuid        NOT NULL,
    id           uuid        NOT NULL,
    source       text        NOT NULL,
    external_id  text        NOT NULL,
    channel      text        NOT NULL,
    agent_id     text        NOT NULL,
    team_id      text        NOT NULL,
    region       text        NOT NULL,
    -- NULL until a caller gives it; reads fall back to create_time.
    occur_time   timestamptz,
    csat         smallint    CHECK (csat BETWEEN 1 AND 5),
    nps          smallint    CHECK (nps BETWEEN 0 AND 10),
    messages     jsonb       NOT NULL,
    attributes   jsonb       NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT now(),
    update_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, source, external_id)
);

CREATE TABLE evaluation.evaluations (
    tenant_id            uuid        NOT NULL,
    id                   uuid        NOT NULL,
    revision             integer     NOT NULL CHECK (revision >= 1),
    interaction_id       uuid        NOT NULL,
    agent_id             text        NOT NULL,
    team_id              text        NOT NULL,
    channel              text        NOT NULL,
    region               text        NOT NULL,
    rubric_id            uuid        NOT NULL,
    rubric_version       integer     NOT NULL,
    reviewer_id          text        NOT NULL,
    kind                 text        NOT NULL CHECK (kind IN ('manual', 'self', 'automated', 'calibration')),
    comment              text        NOT NULL,
    score                double precision,
    section_scores       jsonb       NOT NULL,
    criterion_scores     jsonb       NOT NULL,
    critical_failed      boolean     NOT NULL,
    passed               boolean     NOT NULL,
    state                text        NOT NULL CHECK (state IN ('active', 'superseded', 'deleted')),
    reason               text        NOT NULL DEFAULT '',
    request_id           text,
    request_fingerprint  bytea,
    create_time          timestamptz NOT NULL,
    first_create_time    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id, revision),
    FOREIGN KEY (tenant_id, interaction_id) REFERENCES evaluation.interactions (tenant_id, id)
);

-- AIP-155: one submission or revision per (tenant, request id).
CREATE UNIQUE INDEX evaluations_request_id_key
    ON evaluation.evaluations (tenant_id, request_id) WHERE request_id IS NOT NULL;
-- At most one current (active or deleted) revision per evaluation.
CREATE UNIQUE INDEX evaluations_current_key
    ON evaluation.evaluations (tenant_id, id) WHERE state <> 'superseded';
-- One index per ListEvaluations filter, newest first.
CREATE INDEX evaluations_by_agent ON evaluation.evaluations (tenant_id, agent_id, id DESC);
CREATE INDEX evaluations_by_team ON evaluation.evaluations (tenant_id, team_id, id DESC);
CREATE INDEX evaluations_by_reviewer ON evaluation.evaluations (tenant_id, reviewer_id, id DESC);
CREATE INDEX evaluations_by_rubric ON evaluation.evaluations (tenant_id, rubric_id, id DESC);
CREATE INDEX evaluations_by_interaction ON evaluation.evaluations (tenant_id, interaction_id, id DESC);

CREATE TABLE evaluation.ratings (
    tenant_id       uuid             NOT NULL,
    evaluation_id   uuid             NOT NULL,
    revision        integer          NOT NULL,
    position        smallint         NOT NULL,
    criterion_key   text             NOT NULL,
    value           integer,
    not_applicable  boolean          NOT NULL,
    comment         text             NOT NULL,
    root_causes     jsonb            NOT NULL,
    PRIMARY KEY (tenant_id, evaluation_id, revision, position),
    FOREIGN KEY (tenant_id, evaluation_id, revision)
        REFERENCES evaluation.evaluations (tenant_id, id, revision)
);

-- Events for analytics, written in the same transaction as the change they describe.
-- `txid` lets the consumer read in commit-safe order: it applies only events of
-- transactions older than every transaction still running (pg_snapshot_xmin), ordered by
-- (txid, position), so an event can never appear behind its cursor.
CREATE TABLE evaluation.outbox (
    tenant_id      uuid        NOT NULL,
    position       bigint      GENERATED ALWAYS AS IDENTITY,
    txid           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_type     text        NOT NULL CHECK (event_type IN ('submitted', 'revised', 'deleted')),
    evaluation_id  uuid        NOT NULL,
    revision       integer     NOT NULL,
    payload        jsonb       NOT NULL,
    create_time    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, position)
);

-- The consumer reads across tenants (one projector per database), hence no tenant_id first.
CREATE INDEX outbox_consumption_order ON evaluation.outbox (txid, position);

-- Wakes the projector at commit; polling is the fallback.
CREATE FUNCTION evaluation.notify_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('iqs_outbox', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify
    AFTER INSERT ON evaluation.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION evaluation.notify_outbox();
