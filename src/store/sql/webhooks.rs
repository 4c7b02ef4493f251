//! WebhookStore, once for both databases. Dispatching holds the cursor row locked, so
//! one replica at a time turns events into deliveries, and moves the cursor in the same
//! transaction: each event is enqueued once. Deliveries are claimed with a lease, so
//! replicas deliver side by side and a delivery held by a replica that died is tried
//! again when its lease ends.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::evaluation_reads::{EVALUATION_COLUMNS, with_ratings};
use super::{Link, SqlBackend, Stamp, Value, sql};
use crate::domain::dispute::Dispute;
use crate::domain::evaluation::EvaluationKind;
use crate::domain::tenant::TenantId;
use crate::domain::webhook::{
    self, Delivery, DeliveryState, EventType, MAX_WEBHOOKS_PER_TENANT, Webhook, WebhookState,
};
use crate::error::{Error, Result};
use crate::store::evaluation_rows::EvaluationRow;
use crate::store::{
    AttemptOutcome, AttemptRecord, Dispatched, DueDelivery, NewWebhook, WebhookRenderer,
    WebhookStore, WebhookSubject,
};

/// How each database says the statements that differ.
pub(crate) struct WebhookDialect {
    /// The dispatcher's cursor, locked for the transaction (or skipped when another
    /// replica holds it).
    pub lock_cursor: &'static str,
    /// Outbox events after the cursor (`$1` txid, `$2` position), at most `$3`, each as
    /// `tenant_id, position, txid, event_type, evaluation_id, revision, create_time`.
    pub outbox_after: &'static str,
    /// Dispute events ready to dispatch, at most `$1`.
    pub events_ready: &'static str,
    /// Appended to the claim of due deliveries (`d`).
    pub claim_lock: &'static str,
}

pub(crate) const POSTGRES_WEBHOOKS: WebhookDialect = WebhookDialect {
    lock_cursor: "SELECT last_txid, last_position FROM webhook_cursor FOR UPDATE SKIP LOCKED",
    outbox_after: "SELECT o.tenant_id, o.position, o.txid::text AS txid, o.event_type,
                          o.evaluation_id, o.revision, o.create_time
                   FROM outbox o
                   WHERE (o.txid, o.position) > ($1::text::xid8, $2)
                     AND o.txid < pg_snapshot_xmin(pg_current_snapshot())
                   ORDER BY o.txid, o.position
                   LIMIT $3",
    events_ready: "SELECT position, tenant_id, event_type, payload, create_time
                   FROM webhook_events
                   WHERE txid < pg_snapshot_xmin(pg_current_snapshot())
                   ORDER BY position LIMIT $1",
    claim_lock: " FOR UPDATE OF d SKIP LOCKED",
};

/// One writer at a time: positions are in commit order, and nothing needs locking.
pub(crate) const SQLITE_WEBHOOKS: WebhookDialect = WebhookDialect {
    lock_cursor: "SELECT last_txid, last_position FROM webhook_cursor",
    outbox_after: "SELECT tenant_id, position, CAST($1 AS TEXT) AS txid, event_type,
                          evaluation_id, revision, create_time
                   FROM outbox WHERE position > $2 ORDER BY position LIMIT $3",
    events_ready: "SELECT position, tenant_id, event_type, payload, create_time
                   FROM webhook_events ORDER BY position LIMIT $1",
    claim_lock: "",
};

const WEBHOOK_COLUMNS: &str =
    "id, url, event_types, description, state, disabled_reason, create_time";

#[derive(sqlx::FromRow)]
struct WebhookRow {
    id: Uuid,
    url: String,
    event_types: Json<Vec<EventType>>,
    description: String,
    state: String,
    disabled_reason: String,
    create_time: Stamp,
}

impl TryFrom<WebhookRow> for Webhook {
    type Error = Error;

    fn try_from(row: WebhookRow) -> Result<Self> {
        Ok(Webhook {
            id: row.id,
            url: row.url,
            event_types: row.event_types.0,
            description: row.description,
            state: WebhookState::parse(&row.state)
                .ok_or_else(|| Error::Internal(format!("unknown webhook state {:?}", row.state)))?,
            disabled_reason: row.disabled_reason,
            create_time: row.create_time.into(),
        })
    }
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event_id, event_type, state, attempts, \
     last_status, last_latency_us, last_error, create_time, last_attempt_time, \
     next_attempt_time, finish_time";

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    webhook_id: Uuid,
    event_id: String,
    event_type: String,
    state: String,
    attempts: i32,
    last_status: Option<i32>,
    last_latency_us: Option<i64>,
    last_error: String,
    create_time: Stamp,
    last_attempt_time: Option<Stamp>,
    next_attempt_time: Stamp,
    finish_time: Option<Stamp>,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = Error;

    fn try_from(row: DeliveryRow) -> Result<Self> {
        Ok(Delivery {
            id: row.id,
            webhook_id: row.webhook_id,
            event_id: row.event_id,
            event_type: row.event_type,
            state: DeliveryState::parse(&row.state).ok_or_else(|| {
                Error::Internal(format!("unknown delivery state {:?}", row.state))
            })?,
            attempts: u32::try_from(row.attempts).unwrap_or(0),
            last_status: row
                .last_status
                .and_then(|status| u16::try_from(status).ok()),
            last_latency: row
                .last_latency_us
                .and_then(|us| u64::try_from(us).ok())
                .map(std::time::Duration::from_micros),
            last_error: row.last_error,
            create_time: row.create_time.into(),
            last_attempt_time: row.last_attempt_time.map(Into::into),
            next_attempt_time: row.next_attempt_time.into(),
            finish_time: row.finish_time.map(Into::into),
        })
    }
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    tenant_id: Uuid,
    position: i64,
    txid: String,
    event_type: String,
    evaluation_id: Uuid,
    revision: i32,
    create_time: Stamp,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    position: i64,
    tenant_id: Uuid,
    event_type: String,
    payload: Json<Dispute>,
    create_time: Stamp,
}

#[derive(sqlx::FromRow)]
struct DueRow {
    tenant_id: Uuid,
    id: Uuid,
    webhook_id: Uuid,
    url: String,
    secret: String,
    event_id: String,
    body: String,
    attempts: i32,
    create_time: Stamp,
}

/// An event to enqueue: its type, what it is about and when it happened.
struct Pending {
    tenant: Uuid,
    event_type: EventType,
    ordering_key: Uuid,
    subject: WebhookSubject,
    time: DateTime<Utc>,
}

/// Writes a dispute's event inside the transaction that changed the dispute, when its
/// tenant has a subscription at all.
pub(crate) async fn record_dispute_event(
    link: &mut Link<'_>,
    tenant: TenantId,
    event_type: EventType,
    dispute: &Dispute,
) -> Result<()> {
    link.execute(
        sql(
            "INSERT INTO webhook_events (tenant_id, event_type, ordering_key, payload, create_time)
             SELECT $1, $2, $3, $4, $5
             WHERE EXISTS (SELECT 1 FROM webhooks WHERE tenant_id = $1 AND state = 'active')",
        )
        .bind(tenant)
        .bind(event_type.as_str())
        .bind(dispute.evaluation_id)
        .bind(Value::json(dispute)?)
        .bind(Stamp::now()),
    )
    .await?;
    Ok(())
}

/// Active subscriptions by tenant: (id, event types).
type Subscriptions = HashMap<Uuid, Vec<(Uuid, Vec<EventType>)>>;

/// Active subscriptions of `tenants`.
async fn subscriptions(
    link: &mut Link<'_>,
    tenants: impl IntoIterator<Item = Uuid>,
) -> Result<Subscriptions> {
    let rows: Vec<(Uuid, Uuid, Json<Vec<EventType>>)> = link
        .fetch_all(
            sql("SELECT tenant_id, id, event_types FROM webhooks WHERE state = 'active'")
                .push_in("tenant_id", tenants),
        )
        .await?;
    let mut by_tenant = Subscriptions::new();
    for (tenant, id, types) in rows {
        by_tenant.entry(tenant).or_default().push((id, types.0));
    }
    Ok(by_tenant)
}

/// The subscriptions of `tenant` that want `event_type`.
fn subscribers<'a>(
    subscribed: &'a Subscriptions,
    tenant: &Uuid,
    event_type: EventType,
) -> impl Iterator<Item = Uuid> + 'a {
    subscribed
        .get(tenant)
        .into_iter()
        .flatten()
        .filter(move |(_, types)| types.contains(&event_type))
        .map(|(id, _)| *id)
}

/// The evaluation revisions the outbox events name, by (tenant, id, revision).
async fn revisions(
    link: &mut Link<'_>,
    wanted: &[&OutboxRow],
) -> Result<HashMap<(Uuid, Uuid, u32), crate::domain::evaluation::Evaluation>> {
    let mut by_tenant: BTreeMap<Uuid, Vec<&OutboxRow>> = BTreeMap::new();
    for row in wanted {
        by_tenant.entry(row.tenant_id).or_default().push(row);
    }
    let mut found = HashMap::new();
    for (tenant, rows) in by_tenant {
        for chunk in rows.chunks(500) {
            let mut statement = sql(format!(
                "SELECT {EVALUATION_COLUMNS} FROM evaluations
                 WHERE tenant_id = $1 AND (id, revision) IN (VALUES "
            ))
            .bind(tenant);
            for (index, row) in chunk.iter().enumerate() {
                statement = statement
                    .push(if index == 0 { "(" } else { ", (" })
                    .push_bind(row.evaluation_id)
                    .push(", ")
                    .push_bind(row.revision)
                    .push(")");
            }
            let stored: Vec<EvaluationRow> = link.fetch_all(statement.push(")")).await?;
            for evaluation in with_ratings(link, TenantId(tenant), stored).await? {
                found.insert((tenant, evaluation.id, evaluation.revision), evaluation);
            }
        }
    }
    Ok(found)
}

/// Inserts one delivery per (event, subscription that wants it); how many.
async fn enqueue(
    link: &mut Link<'_>,
    pending: Vec<Pending>,
    subscribed: &Subscriptions,
    renderer: &dyn WebhookRenderer,
) -> Result<usize> {
    let now = Stamp::now();
    let mut rows: Vec<Vec<Value>> = Vec::new();
    for event in pending {
        let targets: Vec<Uuid> = subscribers(subscribed, &event.tenant, event.event_type).collect();
        if targets.is_empty() {
            continue;
        }
        let event_id = format!("msg_{}", Uuid::now_v7().simple());
        let data = renderer.data(&event.subject)?;
        let body = webhook::event_body(&event_id, event.event_type, event.time, &data);
        for webhook_id in targets {
            rows.push(vec![
                event.tenant.into(),
                Uuid::now_v7().into(),
                webhook_id.into(),
                event_id.as_str().into(),
                event.event_type.as_str().into(),
                event.ordering_key.into(),
                body.as_str().into(),
                now.into(),
                now.into(),
            ]);
        }
    }
    let enqueued = rows.len();
    // A delivery binds 9 values; SQLite allows 32,766 per statement.
    for chunk in rows.chunks(1_000) {
        let mut statement = sql(
            "INSERT INTO webhook_deliveries (tenant_id, id, webhook_id, event_id, event_type,
                 ordering_key, body, state, next_attempt_time, create_time) VALUES ",
        );
        for (index, row) in chunk.iter().enumerate() {
            statement = statement.push(if index == 0 { "(" } else { ", (" });
            for (column, value) in row.iter().enumerate() {
                if column == 7 {
                    statement = statement.push(", 'pending'");
                }
                statement = statement
                    .push(if column == 0 { "" } else { ", " })
                    .push_bind(value.clone());
            }
            statement = statement.push(")");
        }
        link.execute(statement).await?;
    }
    Ok(enqueued)
}

/// Whether an outbox or dispute event waits behind the dispatcher's cursor.
async fn events_waiting<B: SqlBackend>(link: &mut Link<'_>) -> Result<bool> {
    let (last_txid, last_position): (String, i64) = link
        .fetch_one(sql("SELECT last_txid, last_position FROM webhook_cursor"))
        .await?;
    let outbox: Vec<OutboxRow> = link
        .fetch_all(
            sql(B::WEBHOOKS.outbox_after)
                .bind(last_txid)
                .bind(last_position)
                .bind(1i64),
        )
        .await?;
    if !outbox.is_empty() {
        return Ok(true);
    }
    let disputes: Vec<EventRow> = link
        .fetch_all(sql(B::WEBHOOKS.events_ready).bind(1i64))
        .await?;
    Ok(!disputes.is_empty())
}

#[async_trait]
impl<B: SqlBackend> WebhookStore for B {
    #[tracing::instrument(name = "db.create_webhook", skip_all, fields(db.system = B::SYSTEM))]
    async fn create_webhook(&self, tenant: TenantId, new: NewWebhook) -> Result<(Webhook, String)> {
        let mut tx = self.write().await?;
        let mut link = tx.link();
        if let Some(request_id) = new.request_id.as_deref() {
            let stored: Option<(WebhookRow, String, Option<Vec<u8>>)> = link
                .fetch_optional(
                    sql(format!(
                        "SELECT {WEBHOOK_COLUMNS}, secret, request_fingerprint FROM webhooks
                         WHERE tenant_id = $1 AND request_id = $2"
                    ))
                    .bind(tenant)
                    .bind(request_id),
                )
                .await?
                .map(|row: StoredWebhook| (row.row, row.secret, row.request_fingerprint));
            if let Some((row, secret, fingerprint)) = stored {
                if fingerprint.as_deref() != Some(new.fingerprint.as_slice()) {
                    return Err(Error::AlreadyExists(format!(
                        "request_id {request_id:?} was already used for a different webhook"
                    )));
                }
                return Ok((row.try_into()?, secret));
            }
        }
        let (count,): (i64,) = link
            .fetch_one(sql("SELECT count(*) FROM webhooks WHERE tenant_id = $1").bind(tenant))
            .await?;
        if count >= MAX_WEBHOOKS_PER_TENANT as i64 {
            return Err(Error::FailedPrecondition(format!(
                "a tenant has at most {MAX_WEBHOOKS_PER_TENANT} webhooks: delete one first"
            )));
        }
        let row: WebhookRow = link
            .fetch_one(
                sql(format!(
                    "INSERT INTO webhooks (tenant_id, id, url, event_types, description, secret,
                         state, request_id, request_fingerprint, create_time)
                     VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9)
                     RETURNING {WEBHOOK_COLUMNS}"
                ))
                .bind(tenant)
                .bind(Uuid::now_v7())
                .bind(new.input.url.as_str())
                .bind(Value::json(&new.input.event_types)?)
                .bind(new.input.description.as_str())
                .bind(new.secret.as_str())
                .bind(new.request_id.as_deref())
                .bind(new.fingerprint.as_slice())
                .bind(Stamp::now()),
            )
            .await?;
        let webhook = row.try_into()?;
        tx.commit().await?;
        Ok((webhook, new.secret))
    }

    #[tracing::instrument(name = "db.list_webhooks", skip_all, fields(db.system = B::SYSTEM))]
    async fn list_webhooks(
        &self,
        tenant: TenantId,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Webhook>> {
        let mut statement = sql(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = $1"
        ))
        .bind(tenant);
        if let Some(before) = before {
            statement = statement.push(" AND id < ").push_bind(before);
        }
        let rows: Vec<WebhookRow> = self
            .read()
            .await?
            .fetch_all(
                statement
                    .push(" ORDER BY id DESC LIMIT ")
                    .push_bind(i64::from(limit)),
            )
            .await?;
        rows.into_iter().map(Webhook::try_from).collect()
    }

    #[tracing::instrument(name = "db.delete_webhook", skip_all, fields(db.system = B::SYSTEM))]
    async fn delete_webhook(&self, tenant: TenantId, id: Uuid) -> Result<Webhook> {
        let mut tx = self.write().await?;
        let mut link = tx.link();
        let row: Option<WebhookRow> = link
            .fetch_optional(
                sql(format!(
                    "DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2
                     RETURNING {WEBHOOK_COLUMNS}"
                ))
                .bind(tenant)
                .bind(id),
            )
            .await?;
        let row = row.ok_or_else(|| Error::not_found("webhook", id))?;
        let webhook = row.try_into()?;
        tx.commit().await?;
        Ok(webhook)
    }

    #[tracing::instrument(name = "db.list_webhook_deliveries", skip_all, fields(db.system = B::SYSTEM))]
    async fn list_webhook_deliveries(
        &self,
        tenant: TenantId,
        webhook_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let mut conn = self.read().await?;
        let exists: Option<(Uuid,)> = conn
            .fetch_optional(
                sql("SELECT id FROM webhooks WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant)
                    .bind(webhook_id),
            )
            .await?;
        if exists.is_none() {
            return Err(Error::not_found("webhook", webhook_id));
        }
        let mut statement = sql(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
             WHERE tenant_id = $1 AND webhook_id = $2"
        ))
        .bind(tenant)
        .bind(webhook_id);
        if let Some(before) = before {
            statement = statement.push(" AND id < ").push_bind(before);
        }
        let rows: Vec<DeliveryRow> = conn
            .fetch_all(
                statement
                    .push(" ORDER BY id DESC LIMIT ")
                    .push_bind(i64::from(limit)),
            )
            .await?;
        rows.into_iter().map(Delivery::try_from).collect()
    }

    #[tracing::instrument(name = "db.dispatch_webhook_events", skip_all, fields(db.system = B::SYSTEM))]
    async fn dispatch_webhook_events(
        &self,
        limit: u32,
        renderer: &dyn WebhookRenderer,
    ) -> Result<Dispatched> {
        if !events_waiting::<B>(&mut self.read().await?.link()).await? {
            // Most passes find nothing: they take no write transaction (on SQLite, the
            // one writer's lock) just to see that.
            return Ok(Dispatched::default());
        }
        let mut tx = self.write().await?;
        let mut link = tx.link();
        let cursor: Option<(String, i64)> =
            link.fetch_optional(sql(B::WEBHOOKS.lock_cursor)).await?;
        let Some((last_txid, last_position)) = cursor else {
            // Another replica is dispatching.
            return Ok(Dispatched::default());
        };
        let outbox: Vec<OutboxRow> = link
            .fetch_all(
                sql(B::WEBHOOKS.outbox_after)
                    .bind(last_txid)
                    .bind(last_position)
                    .bind(i64::from(limit)),
            )
            .await?;
        let disputes: Vec<EventRow> = link
            .fetch_all(sql(B::WEBHOOKS.events_ready).bind(i64::from(limit)))
            .await?;
        if outbox.is_empty() && disputes.is_empty() {
            return Ok(Dispatched::default());
        }
        let tenants: std::collections::BTreeSet<Uuid> = outbox
            .iter()
            .map(|row| row.tenant_id)
            .chain(disputes.iter().map(|row| row.tenant_id))
            .collect();
        let subscribed = subscriptions(&mut link, tenants).await?;
        let wanted = |tenant: &Uuid, event_type: EventType| {
            subscribers(&subscribed, tenant, event_type)
                .next()
                .is_some()
        };
        let needed: Vec<&OutboxRow> = outbox
            .iter()
            .filter(|row| {
                EventType::of_outbox(&row.event_type)
                    .is_some_and(|event_type| wanted(&row.tenant_id, event_type))
            })
            .collect();
        let stored = revisions(&mut link, &needed).await?;
        let mut pending = Vec::new();
        for row in &needed {
            let Some(event_type) = EventType::of_outbox(&row.event_type) else {
                continue;
            };
            let revision = u32::try_from(row.revision).unwrap_or(0);
            // Two events may name one revision (revised, then deleted).
            let Some(evaluation) = stored
                .get(&(row.tenant_id, row.evaluation_id, revision))
                .cloned()
            else {
                continue;
            };
            // A calibration review is blind until its session closes: not news to send.
            if evaluation.kind == EvaluationKind::Calibration {
                continue;
            }
            pending.push(Pending {
                tenant: row.tenant_id,
                event_type,
                ordering_key: row.evaluation_id,
                subject: WebhookSubject::Evaluation(evaluation),
                time: row.create_time.into(),
            });
        }
        for row in &disputes {
            let Some(event_type) = EventType::parse(&row.event_type) else {
                continue;
            };
            if !wanted(&row.tenant_id, event_type) {
                continue;
            }
            pending.push(Pending {
                tenant: row.tenant_id,
                event_type,
                ordering_key: row.payload.0.evaluation_id,
                subject: WebhookSubject::Dispute(row.payload.0.clone()),
                time: row.create_time.into(),
            });
        }
        let deliveries = enqueue(&mut link, pending, &subscribed, renderer).await?;
        if let Some(last) = outbox.last() {
            link.execute(
                sql("UPDATE webhook_cursor SET last_txid = $1, last_position = $2")
                    .bind(last.txid.as_str())
                    .bind(last.position),
            )
            .await?;
        }
        if !disputes.is_empty() {
            link.execute(
                sql("DELETE FROM webhook_events WHERE 1 = 1")
                    .push_in("position", disputes.iter().map(|row| row.position)),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Dispatched {
            events: outbox.len() + disputes.len(),
            deliveries,
        })
    }

    #[tracing::instrument(name = "db.claim_webhook_deliveries", skip_all, fields(db.system = B::SYSTEM))]
    async fn claim_webhook_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        in_flight: &HashMap<Uuid, usize>,
        per_webhook: usize,
    ) -> Result<Vec<DueDelivery>> {
        let busy: Vec<Uuid> = in_flight
            .iter()
            .filter(|(_, count)| **count >= per_webhook)
            .map(|(id, _)| *id)
            .collect();
        let due: Option<(i32,)> = self
            .read()
            .await?
            .fetch_optional(
                sql("SELECT 1 FROM webhook_deliveries
                     WHERE state = 'pending' AND next_attempt_time <= $1 LIMIT 1")
                .bind(Stamp(now)),
            )
            .await?;
        if due.is_none() {
            // Nothing due: no write transaction just to see that.
            return Ok(Vec::new());
        }
        let mut tx = self.write().await?;
        let mut link = tx.link();
        let mut statement = sql(
            "SELECT d.tenant_id, d.id, d.webhook_id, w.url, w.secret, d.event_id, d.body,
                    d.attempts, d.create_time
             FROM webhook_deliveries d
             JOIN webhooks w ON w.tenant_id = d.tenant_id AND w.id = d.webhook_id
             WHERE d.state = 'pending' AND d.next_attempt_time <= $1 AND w.state = 'active'
               AND NOT EXISTS (
                   SELECT 1 FROM webhook_deliveries e
                   WHERE e.webhook_id = d.webhook_id AND e.ordering_key = d.ordering_key
                     AND e.state = 'pending' AND e.seq < d.seq)",
        )
        .bind(Stamp(now));
        if !busy.is_empty() {
            statement = statement.push(" AND NOT (d.webhook_id IN (");
            for (index, id) in busy.iter().enumerate() {
                statement = statement
                    .push(if index == 0 { "" } else { ", " })
                    .push_bind(*id);
            }
            statement = statement.push("))");
        }
        let statement = statement
            .push(" ORDER BY d.next_attempt_time LIMIT ")
            .push_bind(i64::from(limit))
            .push(B::WEBHOOKS.claim_lock);
        let mut rows: Vec<DueRow> = link.fetch_all(statement).await?;
        // No more per subscription than it has room for; the rest stay due (their locks
        // end with this transaction).
        let mut room: HashMap<Uuid, usize> = HashMap::new();
        rows.retain(|row| {
            let taken = room
                .entry(row.webhook_id)
                .or_insert_with(|| in_flight.get(&row.webhook_id).copied().unwrap_or(0));
            *taken += 1;
            *taken <= per_webhook
        });
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        for row in &rows {
            link.execute(
                sql("UPDATE webhook_deliveries SET next_attempt_time = $3
                     WHERE tenant_id = $1 AND id = $2")
                .bind(row.tenant_id)
                .bind(row.id)
                .bind(Stamp(lease_until)),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|row| DueDelivery {
                tenant: TenantId(row.tenant_id),
                id: row.id,
                webhook_id: row.webhook_id,
                url: row.url,
                secret: row.secret,
                event_id: row.event_id,
                body: row.body,
                attempts: u32::try_from(row.attempts).unwrap_or(0),
                create_time: row.create_time.into(),
            })
            .collect())
    }

    #[tracing::instrument(name = "db.prune_webhook_deliveries", skip_all, fields(db.system = B::SYSTEM))]
    async fn prune_webhook_deliveries(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.write().await?;
        let pruned = tx
            .execute(
                sql("DELETE FROM webhook_deliveries
                     WHERE state <> 'pending' AND finish_time < $1")
                .bind(Stamp(before)),
            )
            .await?;
        tx.commit().await?;
        Ok(pruned)
    }

    #[tracing::instrument(name = "db.record_webhook_attempt", skip_all, fields(db.system = B::SYSTEM))]
    async fn record_webhook_attempt(
        &self,
        attempt: AttemptRecord,
        disable_after: u32,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        let mut link = tx.link();
        let (state, next, finished) = match attempt.outcome {
            AttemptOutcome::Delivered => ("delivered", attempt.time, true),
            AttemptOutcome::RetryAt(next) => ("pending", next, false),
            AttemptOutcome::GiveUp | AttemptOutcome::Gone => ("failed", attempt.time, true),
        };
        let latency = i64::try_from(attempt.latency.as_micros()).unwrap_or(i64::MAX);
        // The attempt's time tells a record tried again after a commit whose answer was
        // lost from a new attempt: the same attempt is counted once.
        let recorded = link
            .execute(
                sql(
                    "UPDATE webhook_deliveries SET state = $3, attempts = attempts + 1,
                     next_attempt_time = $4, last_attempt_time = $5, last_status = $6,
                     last_latency_us = $7, last_error = $8, finish_time = $9
                 WHERE tenant_id = $1 AND id = $2 AND state = 'pending'
                   AND (last_attempt_time IS NULL OR last_attempt_time <> $5)",
                )
                .bind(attempt.tenant)
                .bind(attempt.delivery_id)
                .bind(state)
                .bind(Stamp(next))
                .bind(Stamp(attempt.time))
                .bind(attempt.status.map(i32::from))
                .bind(latency)
                .bind(attempt.error.as_str())
                .bind(finished.then_some(Stamp(attempt.time))),
            )
            .await?;
        if recorded == 0 {
            // Recorded before, or no longer pending: the subscription's counts are not
            // this attempt's to change again.
            return Ok(());
        }
        let disable =
            match attempt.outcome {
                AttemptOutcome::Delivered => {
                    link.execute(
                        sql("UPDATE webhooks SET consecutive_failures = 0
                         WHERE tenant_id = $1 AND id = $2 AND consecutive_failures <> 0")
                        .bind(attempt.tenant)
                        .bind(attempt.webhook_id),
                    )
                    .await?;
                    None
                }
                AttemptOutcome::Gone => Some("the receiver answered 410 Gone".to_owned()),
                AttemptOutcome::RetryAt(_) | AttemptOutcome::GiveUp => {
                    let failures: Option<(i32,)> = link
                    .fetch_optional(
                        sql("UPDATE webhooks SET consecutive_failures = consecutive_failures + 1
                             WHERE tenant_id = $1 AND id = $2
                             RETURNING consecutive_failures")
                        .bind(attempt.tenant)
                        .bind(attempt.webhook_id),
                    )
                    .await?;
                    failures
                        .filter(|(failures,)| i64::from(*failures) >= i64::from(disable_after))
                        .map(|(failures,)| format!("{failures} consecutive attempts failed"))
                }
            };
        if let Some(reason) = disable {
            link.execute(
                sql(
                    "UPDATE webhooks SET state = 'disabled', disabled_reason = $3
                     WHERE tenant_id = $1 AND id = $2 AND state = 'active'",
                )
                .bind(attempt.tenant)
                .bind(attempt.webhook_id)
                .bind(reason.as_str()),
            )
            .await?;
            link.execute(
                sql(
                    "UPDATE webhook_deliveries SET state = 'failed', finish_time = $3,
                         last_error = CASE WHEN last_error = '' THEN $4 ELSE last_error END
                     WHERE tenant_id = $1 AND webhook_id = $2 AND state = 'pending'",
                )
                .bind(attempt.tenant)
                .bind(attempt.webhook_id)
                .bind(Stamp(attempt.time))
                .bind(format!("not sent: the webhook was disabled ({reason})")),
            )
            .await?;
        }
        tx.commit().await
    }
}

#[derive(sqlx::FromRow)]
struct StoredWebhook {
    #[sqlx(flatten)]
    row: WebhookRow,
    secret: String,
    request_fingerprint: Option<Vec<u8>>,
}
