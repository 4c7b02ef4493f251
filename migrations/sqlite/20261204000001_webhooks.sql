-- Webhooks (the PostgreSQL migration of the same name says what each table is for).
CREATE TABLE webhooks (
    tenant_id            BLOB    NOT NULL,
    id                   BLOB    NOT NULL,
    url                  TEXT    NOT NULL,
    event_types          TEXT    NOT NULL,
    description          TEXT    NOT NULL,
    secret               TEXT    NOT NULL,
    state                TEXT    NOT NULL CHECK (state IN ('active', 'disabled')),
    disabled_reason      TEXT    NOT NULL DEFAULT '',
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    request_id           TEXT,
    request_fingerprint  BLOB,
    create_time          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE UNIQUE INDEX webhooks_request_id_key
    ON webhooks (tenant_id, request_id) WHERE request_id IS NOT NULL;

CREATE TABLE webhook_deliveries (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id         BLOB    NOT NULL,
    id                BLOB    NOT NULL,
    webhook_id        BLOB    NOT NULL,
    event_id          TEXT    NOT NULL,
    event_type        TEXT    NOT NULL,
    ordering_key      BLOB    NOT NULL,
    body              TEXT    NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_time INTEGER NOT NULL,
    last_attempt_time INTEGER,
    last_status       INTEGER,
    last_latency_us   INTEGER,
    last_error        TEXT    NOT NULL DEFAULT '',
    create_time       INTEGER NOT NULL,
    finish_time       INTEGER,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, webhook_id, event_id),
    FOREIGN KEY (tenant_id, webhook_id) REFERENCES webhooks (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_time)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_in_order
    ON webhook_deliveries (webhook_id, ordering_key, seq) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (tenant_id, webhook_id, seq DESC);

CREATE TABLE webhook_events (
    position      INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     BLOB    NOT NULL,
    event_type    TEXT    NOT NULL,
    ordering_key  BLOB    NOT NULL,
    payload       TEXT    NOT NULL,
    create_time   INTEGER NOT NULL
) STRICT;

CREATE TABLE webhook_cursor (
    singleton     INTEGER PRIMARY KEY CHECK (singleton = 1),
    last_txid     TEXT    NOT NULL,
    last_position INTEGER NOT NULL
) STRICT;
INSERT INTO webhook_cursor (singleton, last_txid, last_position)
SELECT 1, '', COALESCE(max(position), 0) FROM outbox;
