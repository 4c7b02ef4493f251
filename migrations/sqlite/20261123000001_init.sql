-- The embedded store: the same tables as the PostgreSQL schemas rubric, evaluation,
-- analytics and access, in one SQLite file. Conventions: UUIDs are 16-byte BLOBs, times
-- are INTEGER microseconds since the Unix epoch (exact and ordered), days are TEXT
-- 'YYYY-MM-DD', booleans are INTEGER 0/1, JSON is TEXT.

-- rubric -------------------------------------------------------------------------------

CREATE TABLE rubrics (
    tenant_id            BLOB    NOT NULL,
    id                   BLOB    NOT NULL,
    display_name         TEXT    NOT NULL,
    description          TEXT    NOT NULL,
    state                TEXT    NOT NULL CHECK (state IN ('active', 'archived')),
    latest_version       INTEGER NOT NULL DEFAULT 0 CHECK (latest_version >= 0),
    draft                TEXT    NOT NULL,
    request_id           TEXT,
    request_fingerprint  BLOB,
    create_time          INTEGER NOT NULL,
    update_time          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT;

CREATE UNIQUE INDEX rubrics_request_id_key
    ON rubrics (tenant_id, request_id) WHERE request_id IS NOT NULL;

CREATE TABLE rubric_versions (
    tenant_id       BLOB    NOT NULL,
    rubric_id       BLOB    NOT NULL,
    version         INTEGER NOT NULL CHECK (version >= 1),
    criteria        TEXT    NOT NULL,
    pass_threshold  REAL    NOT NULL,
    publish_time    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, rubric_id, version),
    FOREIGN KEY (tenant_id, rubric_id) REFERENCES rubrics (tenant_id, id)
) STRICT;

-- Published versions are immutable forever: evaluations point at them.
CREATE TRIGGER rubric_versions_no_update BEFORE UPDATE ON rubric_versions
BEGIN
    SELECT RAISE(ABORT, 'published rubric versions are immutable');
END;
CREATE TRIGGER rubric_versions_no_delete BEFORE DELETE ON rubric_versions
BEGIN
    SELECT RAISE(ABORT, 'published rubric versions are immutable');
END;

-- evaluation ---------------------------------------------------------------------------

CREATE TABLE interactions (
    tenant_id    BLOB    NOT NULL,
    id           BLOB    NOT NULL,
    source       TEXT    NOT NULL,
    external_id  TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    agent_id     TEXT    NOT NULL,
    team_id      TEXT    NOT NULL,
    region       TEXT    NOT NULL,
    -- NULL until a caller gives it; reads fall back to create_time.
    occur_time   INTEGER,
    csat         INTEGER CHECK (csat BETWEEN 1 AND 5),
    nps          INTEGER CHECK (nps BETWEEN 0 AND 10),
    messages     TEXT    NOT NULL,
    attributes   TEXT    NOT NULL,
    create_time  INTEGER NOT NULL,
    update_time  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, source, external_id)
) STRICT;

CREATE TABLE evaluations (
    tenant_id            BLOB    NOT NULL,
    id                   BLOB    NOT NULL,
    revision             INTEGER NOT NULL CHECK (revision >= 1),
    interaction_id       BLOB    NOT NULL,
    agent_id             TEXT    NOT NULL,
    team_id              TEXT    NOT NULL,
    channel              TEXT    NOT NULL,
    region               TEXT    NOT NULL,
    rubric_id            BLOB    NOT NULL,
    rubric_version       INTEGER NOT NULL,
    reviewer_id          TEXT    NOT NULL,
    kind                 TEXT    NOT NULL CHECK (kind IN ('manual', 'self', 'automated', 'calibration')),
    comment              TEXT    NOT NULL,
    score                REAL,
    section_scores       TEXT    NOT NULL,
    criterion_scores     TEXT    NOT NULL,
    critical_failed      INTEGER NOT NULL,
    passed               INTEGER NOT NULL,
    state                TEXT    NOT NULL CHECK (state IN ('active', 'superseded', 'deleted')),
    reason               TEXT    NOT NULL DEFAULT '',
    request_id           TEXT,
    request_fingerprint  BLOB,
    create_time          INTEGER NOT NULL,
    first_create_time    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id, revision),
    FOREIGN KEY (tenant_id, interaction_id) REFERENCES interactions (tenant_id, id)
) STRICT;

CREATE UNIQUE INDEX evaluations_request_id_key
    ON evaluations (tenant_id, request_id) WHERE request_id IS NOT NULL;
CREATE UNIQUE INDEX evaluations_current_key
    ON evaluations (tenant_id, id) WHERE state <> 'superseded';
CREATE INDEX evaluations_by_agent ON evaluations (tenant_id, agent_id, id DESC);
CREATE INDEX evaluations_by_team ON evaluations (tenant_id, team_id, id DESC);
CREATE INDEX evaluations_by_reviewer ON evaluations (tenant_id, reviewer_id, id DESC);
CREATE INDEX evaluations_by_rubric ON evaluations (tenant_id, rubric_id, id DESC);
CREATE INDEX evaluations_by_interaction ON evaluations (tenant_id, interaction_id, id DESC);

CREATE TABLE ratings (
    tenant_id       BLOB    NOT NULL,
    evaluation_id   BLOB    NOT NULL,
    revision        INTEGER NOT NULL,
    position        INTEGER NOT NULL,
    criterion_key   TEXT    NOT NULL,
    value           INTEGER,
    not_applicable  INTEGER NOT NULL,
    comment         TEXT    NOT NULL,
    root_causes     TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, evaluation_id, revision, position),
    FOREIGN KEY (tenant_id, evaluation_id, revision)
        REFERENCES evaluations (tenant_id, id, revision)
) STRICT;

-- Events for analytics, written in the same transaction as the change they describe.
-- The store has one writer at a time, so positions are in commit order and the
-- projector's cursor is a position alone.
CREATE TABLE outbox (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      BLOB    NOT NULL,
    event_type     TEXT    NOT NULL CHECK (event_type IN ('submitted', 'revised', 'deleted')),
    evaluation_id  BLOB    NOT NULL,
    revision       INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    create_time    INTEGER NOT NULL
) STRICT;

-- analytics ----------------------------------------------------------------------------

CREATE TABLE projector_cursor (
    singleton       INTEGER PRIMARY KEY CHECK (singleton = 1),
    last_position   INTEGER NOT NULL DEFAULT 0,
    applied_events  INTEGER NOT NULL DEFAULT 0,
    update_time     INTEGER NOT NULL DEFAULT 0
) STRICT;
INSERT INTO projector_cursor (singleton) VALUES (1);

CREATE TABLE evaluation_facts (
    tenant_id          BLOB    NOT NULL,
    evaluation_id      BLOB    NOT NULL,
    revision           INTEGER NOT NULL,
    state              TEXT    NOT NULL,
    agent_id           TEXT    NOT NULL,
    team_id            TEXT    NOT NULL,
    channel            TEXT    NOT NULL,
    region             TEXT    NOT NULL,
    rubric_id          BLOB    NOT NULL,
    reviewer_id        TEXT    NOT NULL,
    kind               TEXT    NOT NULL,
    score              REAL,
    passed             INTEGER NOT NULL,
    critical_failed    INTEGER NOT NULL,
    csat               INTEGER,
    first_create_time  INTEGER NOT NULL,
    event              TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, evaluation_id)
) STRICT;
CREATE INDEX evaluation_facts_by_time ON evaluation_facts (tenant_id, first_create_time);
CREATE INDEX evaluation_facts_by_agent ON evaluation_facts (tenant_id, agent_id, first_create_time);
CREATE INDEX evaluation_facts_by_team ON evaluation_facts (tenant_id, team_id, first_create_time);

CREATE TABLE daily_scores (
    tenant_id            BLOB    NOT NULL,
    day                  TEXT    NOT NULL,
    agent_id             TEXT    NOT NULL,
    team_id              TEXT    NOT NULL,
    channel              TEXT    NOT NULL,
    region               TEXT    NOT NULL,
    rubric_id            BLOB    NOT NULL,
    reviewer_id          TEXT    NOT NULL,
    kind                 TEXT    NOT NULL,
    evaluation_count     INTEGER NOT NULL,
    scored_count         INTEGER NOT NULL,
    score_sum            REAL    NOT NULL,
    passed_count         INTEGER NOT NULL,
    critical_fail_count  INTEGER NOT NULL,
    csat_sum             INTEGER NOT NULL,
    csat_count           INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day, agent_id, team_id, channel, region, rubric_id, reviewer_id, kind)
) STRICT;
CREATE INDEX daily_scores_by_agent ON daily_scores (tenant_id, agent_id, day);
CREATE INDEX daily_scores_by_team ON daily_scores (tenant_id, team_id, day);

CREATE TABLE daily_team_scores (
    tenant_id            BLOB    NOT NULL,
    day                  TEXT    NOT NULL,
    agent_id             TEXT    NOT NULL,
    team_id              TEXT    NOT NULL,
    channel              TEXT    NOT NULL,
    region               TEXT    NOT NULL,
    rubric_id            BLOB    NOT NULL,
    reviewer_id          TEXT    NOT NULL,
    kind                 TEXT    NOT NULL,
    evaluation_count     INTEGER NOT NULL,
    scored_count         INTEGER NOT NULL,
    score_sum            REAL    NOT NULL,
    passed_count         INTEGER NOT NULL,
    critical_fail_count  INTEGER NOT NULL,
    csat_sum             INTEGER NOT NULL,
    csat_count           INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day, agent_id, team_id, channel, region, rubric_id, reviewer_id, kind)
) STRICT;

CREATE TABLE daily_section_scores (
    tenant_id    BLOB    NOT NULL,
    day          TEXT    NOT NULL,
    agent_id     TEXT    NOT NULL,
    team_id      TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    region       TEXT    NOT NULL,
    rubric_id    BLOB    NOT NULL,
    reviewer_id  TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    section      TEXT    NOT NULL,
    score_sum    REAL    NOT NULL,
    score_count  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day, agent_id, team_id, channel, region, rubric_id, reviewer_id, kind, section)
) STRICT;
CREATE INDEX daily_section_scores_by_agent ON daily_section_scores (tenant_id, agent_id, day);
CREATE INDEX daily_section_scores_by_team ON daily_section_scores (tenant_id, team_id, day);

CREATE TABLE daily_criterion_scores (
    tenant_id             BLOB    NOT NULL,
    day                   TEXT    NOT NULL,
    agent_id              TEXT    NOT NULL,
    team_id               TEXT    NOT NULL,
    channel               TEXT    NOT NULL,
    region                TEXT    NOT NULL,
    rubric_id             BLOB    NOT NULL,
    reviewer_id           TEXT    NOT NULL,
    kind                  TEXT    NOT NULL,
    criterion_key         TEXT    NOT NULL,
    score_sum             REAL    NOT NULL,
    rated_count           INTEGER NOT NULL,
    not_applicable_count  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day, agent_id, team_id, channel, region, rubric_id, reviewer_id, kind, criterion_key)
) STRICT;

CREATE TABLE daily_root_causes (
    tenant_id      BLOB    NOT NULL,
    day            TEXT    NOT NULL,
    agent_id       TEXT    NOT NULL,
    team_id        TEXT    NOT NULL,
    channel        TEXT    NOT NULL,
    region         TEXT    NOT NULL,
    rubric_id      BLOB    NOT NULL,
    reviewer_id    TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    criterion_key  TEXT    NOT NULL,
    root_cause     TEXT    NOT NULL,
    count          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day, agent_id, team_id, channel, region, rubric_id, reviewer_id, kind, criterion_key, root_cause)
) STRICT;

-- access -------------------------------------------------------------------------------

CREATE TABLE tenants (
    tenant_id    BLOB    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    create_time  INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    tenant_id    BLOB    NOT NULL REFERENCES tenants (tenant_id),
    key_id       BLOB    NOT NULL,
    secret_hash  BLOB    NOT NULL,
    role         TEXT    NOT NULL CHECK (role IN ('admin', 'qa_reviewer', 'agent', 'integration', 'analyst', 'service')),
    agent_id     TEXT,
    create_time  INTEGER NOT NULL,
    revoke_time  INTEGER,
    PRIMARY KEY (tenant_id, key_id),
    CHECK ((role = 'agent') = (agent_id IS NOT NULL))
) STRICT;

CREATE TABLE audit_log (
    tenant_id    BLOB    NOT NULL,
    id           BLOB    NOT NULL,
    key_id       BLOB,
    role         TEXT    NOT NULL,
    rpc          TEXT    NOT NULL,
    request_id   TEXT    NOT NULL,
    status_code  INTEGER NOT NULL,
    time         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT;
