-- Tenants, API keys and the audit log.
CREATE SCHEMA IF NOT EXISTS access;

CREATE TABLE access.tenants (
    tenant_id    uuid        NOT NULL,
    name         text        NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id)
);
-- Names are looked up by operators (`iqs key create --tenant NAME`), never by tenants.
CREATE UNIQUE INDEX tenants_name_key ON access.tenants (name);

-- Only a SHA-256 of each key's secret is stored; the key itself is shown once.
CREATE TABLE access.api_keys (
    tenant_id    uuid        NOT NULL REFERENCES access.tenants (tenant_id),
    key_id       uuid        NOT NULL,
    secret_hash  bytea       NOT NULL,
    role         text        NOT NULL CHECK (role IN ('admin', 'qa_reviewer', 'agent', 'integration', 'analyst', 'service')),
    agent_id     text,
    create_time  timestamptz NOT NULL DEFAULT now(),
    revoke_time  timestamptz,
    PRIMARY KEY (tenant_id, key_id),
    CHECK ((role = 'agent') = (agent_id IS NOT NULL))
);

-- Every write call: who, what, when, with which request id, and how it ended.
CREATE TABLE access.audit_log (
    tenant_id    uuid        NOT NULL,
    id           uuid        NOT NULL,
    key_id       uuid,
    role         text        NOT NULL,
    rpc          text        NOT NULL,
    request_id   text        NOT NULL,
    status_code  integer     NOT NULL,
    time         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
