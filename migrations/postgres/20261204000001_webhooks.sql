-- Webhooks: a tenant's subscriptions, the deliveries owed to them (the queue and its log
-- at once), the dispatcher's cursor over the evaluation outbox, and the events that do
-- not come from that outbox (disputes), written in the transaction that makes them.
CREATE TABLE evaluation.webhooks (
    tenant_id            uuid        NOT NULL,
    id                   uuid        NOT NULL,
    url                  text        NOT NULL,
    event_types          jsonb       NOT NULL,
    description          text        NOT NULL,
    secret               text        NOT NULL,
    state                text        NOT NULL CHECK (state IN ('active', 'disabled')),
    disabled_reason      text        NOT NULL DEFAULT '',
    consecutive_failures integer     NOT NULL DEFAULT 0,
    request_id           text,
    request_fingerprint  bytea,
    create_time          timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX webhooks_request_id_key
    ON evaluation.webhooks (tenant_id, request_id) WHERE request_id IS NOT NULL;

CREATE TABLE evaluation.webhook_deliveries (
    tenant_id         uuid        NOT NULL,
    id                uuid        NOT NULL,
    seq               bigint      GENERATED ALWAYS AS IDENTITY,
    webhook_id        uuid        NOT NULL,
    event_id          text        NOT NULL,
    event_type        text        NOT NULL,
    ordering_key      uuid        NOT NULL,
    body              text        NOT NULL,
    state             text        NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts          integer     NOT NULL DEFAULT 0,
    next_attempt_time timestamptz NOT NULL,
    last_attempt_time timestamptz,
    last_status       integer,
    last_latency_us   bigint,
    last_error        text        NOT NULL DEFAULT '',
    create_time       timestamptz NOT NULL,
    finish_time       timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, webhook_id, event_id),
    FOREIGN KEY (tenant_id, webhook_id) REFERENCES evaluation.webhooks (tenant_id, id)
        ON DELETE CASCADE
);
-- Due deliveries across tenants, for the delivery workers.
CREATE INDEX webhook_deliveries_due ON evaluation.webhook_deliveries (next_attempt_time)
    WHERE state = 'pending';
-- The earlier pending delivery of the same evaluation to the same subscription.
CREATE INDEX webhook_deliveries_in_order
    ON evaluation.webhook_deliveries (webhook_id, ordering_key, seq) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_log
    ON evaluation.webhook_deliveries (tenant_id, webhook_id, seq DESC);

-- Read, like the outbox, only once every older transaction has ended (txid), so that a
-- dispute's event never overtakes the evaluation revision written with it.
CREATE TABLE evaluation.webhook_events (
    tenant_id     uuid        NOT NULL,
    position      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_type    text        NOT NULL,
    ordering_key  uuid        NOT NULL,
    payload       jsonb       NOT NULL,
    create_time   timestamptz NOT NULL
);

CREATE TABLE evaluation.webhook_cursor (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_txid     text    NOT NULL,
    last_position bigint  NOT NULL
);
-- Starts at the end of the outbox: what was written before webhooks existed is not news.
INSERT INTO evaluation.webhook_cursor (last_txid, last_position)
SELECT COALESCE(max(txid)::text, '0'), COALESCE(max(position), 0) FROM evaluation.outbox;
