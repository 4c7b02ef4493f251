-- The rubric service's schema: rubrics with their editable draft, and published
-- versions, which never change once written.
CREATE SCHEMA IF NOT EXISTS rubric;

CREATE TABLE rubric.rubrics (
    tenant_id            uuid        NOT NULL,
    id                   uuid        NOT NULL,
    display_name         text        NOT NULL,
    description          text        NOT NULL,
    state                text        NOT NULL CHECK (state IN ('active', 'archived')),
    latest_version       integer     NOT NULL DEFAULT 0 CHECK (latest_version >= 0),
    draft                jsonb       NOT NULL,
    request_id           text,
    request_fingerprint  bytea,
    create_time          timestamptz NOT NULL DEFAULT now(),
    update_time          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

-- AIP-155: one rubric per (tenant, request id).
CREATE UNIQUE INDEX rubrics_request_id_key
    ON rubric.rubrics (tenant_id, request_id)
    WHERE request_id IS NOT NULL;

CREATE TABLE rubric.rubric_versions (
    tenant_id       uuid             NOT NULL,
    rubric_id       uuid             NOT NULL,
    version         integer          NOT NULL CHECK (version >= 1),
    criteria        jsonb            NOT NULL,
    pass_threshold  double precision NOT NULL,
    publish_time    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, rubric_id, version),
    FOREIGN KEY (tenant_id, rubric_id) REFERENCES rubric.rubrics (tenant_id, id)
);

-- Published versions are immutable forever: evaluations point at them.
CREATE FUNCTION rubric.refuse_version_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'published rubric versions are immutable'
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER rubric_versions_immutable
    BEFORE UPDATE OR DELETE ON rubric.rubric_versions
    FOR EACH ROW EXECUTE FUNCTION rubric.refuse_version_change();
