-- The analytics service's schema: a copy of each evaluation's current revision (facts),
-- daily rollups per dimension, and the projector's cursor over the evaluation outbox.
CREATE SCHEMA IF NOT EXISTS analytics;

-- One projector applies the outbox of the whole database; this row is its position.
-- Not tenant-scoped: it is the consumer's own bookkeeping, never read by tenants.
CREATE TABLE analytics.projector_cursor (
    singleton       boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    last_txid       xid8        NOT NULL DEFAULT '0',
    last_position   bigint      NOT NULL DEFAULT 0,
    applied_events  bigint      NOT NULL DEFAULT 0,
    update_time     timestamptz NOT NULL DEFAULT now()
);
INSERT INTO analytics.projector_cursor DEFAULT VALUES;

-- The current revision of every evaluation, as the outbox described it. Rollups are
-- adjusted by the difference between a fact's old and new contribution.
CREATE TABLE analytics.evaluation_facts (
    tenant_id          uuid             NOT NULL,
    evaluation_id      uuid             NOT NULL,
    revision           integer          NOT NULL,
    state              text             NOT NULL,
    agent_id           text             NOT NULL,
    team_id            text             NOT NULL,
    channel            text             NOT NULL,
    region             text             NOT NULL,
    rubric_id          uuid             NOT NULL,
    reviewer_id        text             NOT NULL,
    kind               text             NOT NULL,
    score              double precision,
    passed             boolean          NOT NULL,
    critical_failed    boolean          NOT NULL,
    csat               smallint,
    first_create_time  timestamptz      NOT NULL,
    event              jsonb            NOT NULL,
    PRIMARY KEY (tenant_id, evaluation_id)
);
CREATE INDEX evaluation_facts_by_time ON analytics.evaluation_facts (tenant_id, first_create_time);
CREATE INDEX evaluation_facts_by_agent ON analytics.evaluation_facts (tenant_id, agent_id, first_create_time);
CREATE INDEX evaluation_facts_by_team ON analytics.evaluation_facts (tenant_id, team_id, first_create_time);

CREATE TABLE analytics.daily_scores (
    tenant_id     uuid    NOT NULL,
    day           date    NOT NULL,
    agent_id      text    NOT NULL,
    team_id       text    NOT NULL,
    channel       text    NOT NULL,
    region        text    NOT NULL,
    rubric_id     uuid    NOT NULL,
    reviewer_id   text    NOT NULL,
    kind          text    NOT NULL,
    evaluation_count     bigint           NOT NULL,
    scored_count         bigint           NOT NULL,
    score_sum            double precision NOT NULL,
    passed_count         bigint           NOT NULL,
    critical_fail_count  bigint           NOT NULL,
    csat_sum             bigint           NOT NULL,
    csat_count           bigint           NOT NULL,
    PRIMARY KEY (tenant_id, day, agent_id, team_id, channel, region, rubric_id, reviewer_id, kind)
);
CREATE INDEX daily_scores_by_agent ON analytics.daily_scores (tenant_id, agent_id, day);
CREATE INDEX daily_scores_by_team ON analytics.daily_scores (tenant_id, team_id, day);

-- The same figures summed over every agent and reviewer (both '' here): dashboards that
-- group or filter by team, channel, region, rubric or kind read far fewer rows.
CREATE TABLE analytics.daily_team_scores (
    tenant_id     uuid    NOT NULL,
    day           date    NOT NULL,
    agent_id      text    NOT NULL,
    team_id       text    NOT NULL,
    channel       text    NOT NULL,
    region        text    NOT NULL,
    rubric_id     uuid    NOT NULL,
    reviewer_id   text    NOT NULL,
    kind          text    NOT NULL,
    evaluation_count     bigint           NOT NULL,
    scored_count         bigint           NOT NULL,
    score_sum            double precision NOT NULL,
    passed_count         bigint           NOT NULL,
    critical_fail_count  bigint           NOT NULL,
    csat_sum             bigint           NOT NULL,
    csat_count           bigint           NOT NULL,
    PRIMARY KEY (tenant_id, day, agent_id, team_id, channel, region, rubric_id, reviewer_id, kind)
);
CREATE TABLE analytics.daily_section_scores (
    tenant_id     uuid    NOT NULL,
    day           date    NOT NULL,
    agent_id      text    NOT NULL,
    team_id       text    NOT NULL,
    channel       text    NOT NULL,
    region        text    NOT NULL,
    rubric_id     uuid    NOT NULL,
    reviewer_id   text    NOT NULL,
    kind          text    NOT NULL,
    section      text             NOT NULL,
    score_sum    double precision NOT NULL,
    score_count  bigint           NOT NULL,
    PRIMARY KEY (tenant_id, day, agent_id, team_id, channel, region, rubric_id, reviewer_id, kind, section)
);
CREATE INDEX daily_section_scores_by_agent ON analytics.daily_section_scores (tenant_id, agent_id, day);
CREATE INDEX daily_section_scores_by_team ON analytics.daily_section_scores (tenant_id, team_id, day);

CREATE TABLE analytics.daily_criterion_scores (
    tenant_id     uuid    NOT NULL,
    day           date    NOT NULL,
    agent_id      text    NOT NULL,
    team_id       text    NOT NULL,
    channel       text    NOT NULL,
    region        text    NOT NULL,
    rubric_id     uuid    NOT NULL,
    reviewer_id   text    NOT NULL,
    kind          text    NOT NULL,
    criterion_key         text             NOT NULL,
    score_sum             double precision NOT NULL,
    rated_count           bigint           NOT NULL,
    not_applicable_count  bigint           NOT NULL,
    PRIMARY KEY (tenant_id, day, agent_id, team_id, channel, region, rubric_id, reviewer_id, kind, criterion_key)
);

CREATE TABLE analytics.daily_root_causes (
    tenant_id     uuid    NOT NULL,
    day           date    NOT NULL,
    agent_id      text    NOT NULL,
    team_id       text    NOT NULL,
    channel       text    NOT NULL,
    region        text    NOT NULL,
    rubric_id     uuid    NOT NULL,
    reviewer_id   text    NOT NULL,
    kind          text    NOT NULL,
    criterion_key  text   NOT NULL,
    root_cause     text   NOT NULL,
    count          bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, agent_id, team_id, channel, region, rubric_id, reviewer_id, kind, criterion_key, root_cause)
);
