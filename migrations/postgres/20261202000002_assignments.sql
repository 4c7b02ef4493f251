-- Sampling plans and the assignments they make.

CREATE TABLE evaluation.sampling_plans (
    tenant_id            uuid        NOT NULL,
    id                   uuid        NOT NULL,
    display_name         text        NOT NULL,
    rubric_id            uuid        NOT NULL,
    filter               jsonb       NOT NULL,
    per_agent_count      integer     NOT NULL CHECK (per_agent_count BETWEEN 1 AND 1000),
    period               text        NOT NULL CHECK (period IN ('week', 'month')),
    strategy             text        NOT NULL
                         CHECK (strategy IN ('random', 'stratified_channel', 'low_csat_first')),
    reviewer_ids         jsonb       NOT NULL,
    seed                 bigint      NOT NULL,
    create_time          timestamptz NOT NULL,
    request_id           text,
    request_fingerprint  bytea,
    PRIMARY KEY (tenant_id, id)
);

CREATE UNIQUE INDEX sampling_plans_request_id_key
    ON evaluation.sampling_plans (tenant_id, request_id) WHERE request_id IS NOT NULL;

-- One row per sampled (plan, period): a second run answers with the first one's work.
CREATE TABLE evaluation.sampling_runs (
    tenant_id     uuid        NOT NULL,
    plan_id       uuid        NOT NULL,
    period_start  timestamptz NOT NULL,
    short_agents  jsonb       NOT NULL,
    create_time   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, plan_id, period_start)
);

CREATE TABLE evaluation.assignments (
    tenant_id       uuid        NOT NULL,
    id              uuid        NOT NULL,
    plan_id         uuid        NOT NULL,
    period_start    timestamptz NOT NULL,
    interaction_id  uuid        NOT NULL,
    agent_id        text        NOT NULL,
    channel         text        NOT NULL,
    reviewer_id     text        NOT NULL,
    rubric_id       uuid        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('open', 'done', 'skipped')),
    evaluation_id   uuid,
    skip_reason     text        NOT NULL DEFAULT '',
    create_time     timestamptz NOT NULL,
    close_time      timestamptz,
    PRIMARY KEY (tenant_id, id)
);

-- An interaction is assigned at most once under a rubric, whatever became of it.
CREATE UNIQUE INDEX assignments_one_per_rubric_interaction
    ON evaluation.assignments (tenant_id, rubric_id, interaction_id);
-- A reviewer's queue, oldest first.
CREATE INDEX assignments_queue
    ON evaluation.assignments (tenant_id, reviewer_id, id) WHERE state = 'open';
CREATE INDEX assignments_by_plan
    ON evaluation.assignments (tenant_id, plan_id, period_start);

-- Sampling reads a period's interactions.
CREATE INDEX interactions_by_time
    ON evaluation.interactions (tenant_id, (COALESCE(occur_time, create_time)));

-- A MANUAL review of an assigned interaction under its rubric by its reviewer marks the
-- assignment done, in the transaction that stores the review (submit or import, one
-- statement for a whole batch). Later revisions and deletions leave it done.
CREATE FUNCTION evaluation.complete_assignments() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE evaluation.assignments a
       SET state = 'done', evaluation_id = e.id, close_time = e.create_time
      FROM inserted e
     WHERE e.revision = 1 AND e.kind = 'manual'
       AND a.tenant_id = e.tenant_id AND a.rubric_id = e.rubric_id
       AND a.interaction_id = e.interaction_id AND a.reviewer_id = e.reviewer_id
       AND a.state = 'open';
    RETURN NULL;
END
$$;

CREATE TRIGGER evaluations_complete_assignments
    AFTER INSERT ON evaluation.evaluations
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT
    EXECUTE FUNCTION evaluation.complete_assignments();
