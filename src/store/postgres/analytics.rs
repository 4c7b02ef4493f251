//! AnalyticsStore on PostgreSQL (schema `analytics`): the projector over the evaluation
//! outbox, and the queries over facts and daily rollups.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, postgres::PgListener, types::Json};
use uuid::Uuid;

use super::{PostgresStore, classify};
use crate::domain::evaluation::EvaluationEvent;
use crate::error::Result;
use crate::store::score_query::{Breakdown, Parts, ScoreDialect};
use crate::store::sql::{
    Link,
    projection::{apply_events, empty_figures, replay_evaluations},
};
use crate::store::{AnalyticsStore, AppliedBatch, OutboxWakeups};

/// NOTIFY `iqs_outbox`, sent after each commit that wrote outbox events (`notifier`).
struct OutboxNotifications(PgListener);

#[async_trait]
impl OutboxWakeups for OutboxNotifications {
    async fn wait(&mut self) {
        // The listener reconnects by itself; back off so a database outage is not a busy loop.
        if let Err(err) = self.0.recv().await {
            tracing::debug!(%err, "outbox listener reconnecting");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        // One look at the outbox serves every commit notified so far.
        while self.0.next_buffered().is_some() {}
    }
}

/// The outbox events after the projector's cursor, as a condition on `o`. The cursor is
/// read by scalar subqueries so that the condition reaches the `(txid, position)` index:
/// joined instead, the consumed events the retention keeps were scanned in full.
macro_rules! after_cursor {
    () => {
        "(o.txid, o.position) > ((SELECT last_txid FROM analytics.projector_cursor), \
         (SELECT last_position FROM analytics.projector_cursor))"
    };
}

/// "Is any event pending?" ORDER BY … LIMIT 1 rather than EXISTS: for EXISTS the planner
/// guessed a third of the outbox pending and scanned all of it, consumed events included.
pub const HAS_PENDING_SQL: &str = concat!(
    "SELECT 1 FROM evaluation.outbox o WHERE ",
    after_cursor!(),
    " ORDER BY o.txid, o.position LIMIT 1"
);

/// The time of the oldest pending event: what the rollups are as of.
pub const AS_OF_SQL: &str = concat!(
    "SELECT COALESCE(min(o.create_time), now()) FROM evaluation.outbox o WHERE ",
    after_cursor!()
);

/// What a streaming replica's rollups are as of: its own oldest pending event, and no
/// later than the last transaction it replayed while WAL it received waits for replay.
/// (WAL the primary has not sent yet is beyond what a replica can know.)
pub const REPLICA_AS_OF_SQL: &str = concat!(
    "SELECT LEAST((SELECT COALESCE(min(o.create_time), now()) FROM evaluation.outbox o WHERE ",
    after_cursor!(),
    "), CASE WHEN pg_is_in_recovery() \
               AND pg_last_wal_receive_lsn() IS DISTINCT FROM pg_last_wal_replay_lsn() \
             THEN COALESCE(pg_last_xact_replay_timestamp(), now()) ELSE now() END)"
);

/// How many events are pending (the lag metric).
pub const PENDING_COUNT_SQL: &str = concat!(
    "SELECT count(*) FROM evaluation.outbox o WHERE ",
    after_cursor!()
);

/// The next safe events after the cursor ($1, $2), at most $3. Qualified names matter:
/// a bare `ORDER BY txid` would sort by the text output column (out of order past a
/// power of ten, and without the index).
pub const NEXT_EVENTS_SQL: &str = "SELECT o.tenant_id, o.position, o.txid::text AS txid, o.payload
     FROM evaluation.outbox o
     WHERE (o.txid, o.position) > ($1::text::xid8, $2)
       AND o.txid < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY o.txid, o.position
     LIMIT $3";

/// Every statement that reads the outbox behind the projector's cursor, by name. The
/// outbox keeps every event, so each must reach the `(txid, position)` index rather than
/// scan the events already consumed; a test checks their plans.
/// Removes consumed events past their retention (`$1`), among the oldest `$2`, by their
/// row addresses: joining the deleted table to the chosen rows planned a scan of it.
const PRUNE_SQL: &str = "DELETE FROM evaluation.outbox WHERE ctid = ANY(ARRAY(
 SELECT head.ctid
 FROM (SELECT ctid, txid, position, create_time FROM evaluation.outbox
       ORDER BY txid, position LIMIT $2) head,
      analytics.projector_cursor p, evaluation.webhook_cursor w
 WHERE head.create_time < $1
   AND (head.txid, head.position) <= (p.last_txid, p.last_position)
   AND (head.txid, head.position) <= (w.last_txid::xid8, w.last_position)))";

/// Outbox events pruned between two vacuums of the outbox: its table holds at most
/// about this many deleted events' space beyond the events in flight (about 1.4 kB each).
const VACUUM_OUTBOX_AFTER: u64 = 10_000;

pub const OUTBOX_READS: [(&str, &str); 5] = [
    ("has_pending", HAS_PENDING_SQL),
    ("as_of", AS_OF_SQL),
    ("pending_events", PENDING_COUNT_SQL),
    ("next_events", NEXT_EVENTS_SQL),
    ("prune_outbox", PRUNE_SQL),
];

#[derive(sqlx::FromRow)]
struct OutboxRow {
    tenant_id: Uuid,
    position: i64,
    txid: String,
    payload: Json<EvaluationEvent>,
}

/// Reads the next safe events after the cursor and applies them; the caller holds the
/// cursor row locked.
async fn apply_next(
    conn: &mut PgConnection,
    last_txid: &str,
    last_position: i64,
    limit: u32,
) -> Result<AppliedBatch> {
    let rows: Vec<OutboxRow> = sqlx::query_as(NEXT_EVENTS_SQL)
        .bind(last_txid)
        .bind(last_position)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
    let Some(last) = rows.last() else {
        return Ok(AppliedBatch::default());
    };
    let (txid, position) = (last.txid.clone(), last.position);
    let events: Vec<(Uuid, EvaluationEvent)> = rows
        .into_iter()
        .map(|row| (row.tenant_id, row.payload.0))
        .collect();
    let applied = apply_events(&mut Link::Postgres(conn), &events).await?;
    sqlx::query(
        "UPDATE analytics.projector_cursor SET last_txid = $1::text::xid8, last_position = $2,
             applied_events = applied_events + $3, update_time = now()",
    )
    .bind(&txid)
    .bind(position)
    .bind(events.len() as i64)
    .execute(&mut *conn)
    .await
    .map_err(classify)?;
    Ok(applied)
}

#[async_trait]
impl AnalyticsStore for PostgresStore {
    #[tracing::instrument(name = "db.apply_pending", skip_all, fields(db.system = "postgresql"))]
    async fn apply_pending(&self, limit: u32) -> Result<AppliedBatch> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let cursor: Option<(String, i64)> = sqlx::query_as(
            "SELECT last_txid::text, last_position FROM analytics.projector_cursor FOR UPDATE SKIP LOCKED",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let Some((last_txid, last_position)) = cursor else {
            return Ok(AppliedBatch::default());
        };
        let applied = apply_next(&mut tx, &last_txid, last_position, limit).await?;
        tx.commit().await.map_err(classify)?;
        Ok(applied)
    }

    #[tracing::instrument(name = "db.has_pending", skip_all, fields(db.system = "postgresql"))]
    async fn has_pending(&self) -> Result<bool> {
        let next: Option<i32> = sqlx::query_scalar(HAS_PENDING_SQL)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        Ok(next.is_some())
    }

    #[tracing::instrument(name = "db.as_of", skip_all, fields(db.system = "postgresql"))]
    async fn as_of(&self) -> Result<DateTime<Utc>> {
        if let Some(replica) = self.replica_pool() {
            match sqlx::query_scalar(REPLICA_AS_OF_SQL)
                .fetch_one(replica)
                .await
            {
                Ok(as_of) => return Ok(as_of),
                // The score queries fall back to the primary too.
                Err(err) => tracing::debug!(%err, "as_of from the primary: the replica failed"),
            }
        }
        sqlx::query_scalar(AS_OF_SQL)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    #[tracing::instrument(name = "db.outbox_wakeups", skip_all, fields(db.system = "postgresql"))]
    async fn outbox_wakeups(&self) -> Result<Box<dyn OutboxWakeups>> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(classify)?;
        listener
            .listen(super::notifier::OUTBOX_CHANNEL)
            .await
            .map_err(classify)?;
        Ok(Box::new(OutboxNotifications(listener)))
    }

    #[tracing::instrument(name = "db.rebuild", skip_all, fields(db.system = "postgresql"))]
    async fn rebuild(&self) -> Result<u64> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // Waits for a running apply to finish, then keeps the projector out until commit.
        // The cursor stays: events after it are applied afterwards, as stale where the
        // evaluations read here already describe them.
        sqlx::query("SELECT 1 FROM analytics.projector_cursor FOR UPDATE")
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let mut link = Link::Postgres(&mut tx);
        empty_figures(&mut link).await?;
        let replayed = replay_evaluations(&mut link).await?;
        tx.commit().await.map_err(classify)?;
        Ok(replayed)
    }

    #[tracing::instrument(name = "db.prune_outbox", skip_all, fields(db.system = "postgresql"))]
    async fn prune_outbox(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        // Consumed means behind both readers of the outbox: the projector and the webhook
        // dispatcher. Only the oldest `limit` events (in their order, on their index) are
        // looked at: events are written in about time order, so once those are within
        // the retention the rest are too, and a pass reads `limit` index entries at most
        // instead of every consumed event the retention keeps.
        let pruned = sqlx::query(PRUNE_SQL)
            .bind(before)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await
            .map_err(classify)?
            .rows_affected();
        let since_vacuum = self
            .pruned_since_vacuum
            .fetch_add(pruned, Ordering::Relaxed)
            + pruned;
        if since_vacuum >= VACUUM_OUTBOX_AFTER {
            self.pruned_since_vacuum.store(0, Ordering::Relaxed);
            // Deleted rows leave their space to new events only once a vacuum has
            // recorded it as free; autovacuum looks at a table about once a minute, so
            // during a burst every new event would extend the table instead. Not being
            // allowed to vacuum (not the table's owner) is a warning, not an error.
            sqlx::raw_sql("VACUUM (SKIP_LOCKED) evaluation.outbox")
                .execute(&self.pool)
                .await
                .map_err(classify)?;
        }
        Ok(pruned)
    }
}

/// How the score queries are said on PostgreSQL.
pub(super) const SCORES: ScoreDialect = ScoreDialect {
    dimension_text: |alias, dimension| format!("{alias}.{}::text", dimension.column()),
    rollup_bucket: |interval| match interval.unit() {
        Some(unit) => format!("date_trunc('{unit}', r.day::timestamp)"),
        None => "NULL::timestamp".to_owned(),
    },
    facts_bucket: |interval| match interval.unit() {
        Some(unit) => format!("date_trunc('{unit}', f.first_create_time AT TIME ZONE 'UTC')"),
        None => "NULL::timestamp".to_owned(),
    },
    bucket_text: |column| format!("to_char({column}, 'YYYY-MM-DD')"),

    section_totals: Breakdown {
        head: "SELECT section, sum(score_sum)::float8 AS score_sum, sum(score_count)::bigint AS score_count",
        parts: Parts {
            rollup_select: "r.section, r.score_sum, r.score_count",
            rollup_from: "analytics.daily_section_scores r",
            facts_select: "s->>'section' AS section, (s->>'score')::float8 AS score_sum, 1::bigint AS score_count",
            facts_from: "analytics.evaluation_facts f CROSS JOIN LATERAL jsonb_array_elements(f.event->'section_scores') s",
            facts_where: "s->>'score' IS NOT NULL",
        },
        tail: " GROUP BY section HAVING sum(score_count) > 0 ORDER BY section",
    },

    criterion_totals: Breakdown {
        head: "SELECT criterion_key, sum(score_sum)::float8 AS score_sum, sum(rated_count)::bigint AS rated_count,
                    sum(not_applicable_count)::bigint AS not_applicable_count",
        parts: Parts {
            rollup_select: "r.criterion_key, r.score_sum, r.rated_count, r.not_applicable_count",
            rollup_from: "analytics.daily_criterion_scores r",
            facts_select: "c->>'criterion_key' AS criterion_key,
                           COALESCE((c->>'score')::float8, 0) AS score_sum,
                           (c->>'score' IS NOT NULL)::int::bigint AS rated_count,
                           (c->>'score' IS NULL)::int::bigint AS not_applicable_count",
            facts_from: "analytics.evaluation_facts f CROSS JOIN LATERAL jsonb_array_elements(f.event->'criterion_scores') c",
            facts_where: "",
        },
        tail: " GROUP BY criterion_key HAVING sum(rated_count) + sum(not_applicable_count) > 0 ORDER BY criterion_key",
    },

    root_cause_totals: Breakdown {
        head: "SELECT criterion_key, root_cause, sum(count)::bigint AS count",
        parts: Parts {
            rollup_select: "r.criterion_key, r.root_cause, r.count",
            rollup_from: "analytics.daily_root_causes r",
            facts_select: "rc->>0 AS criterion_key, rc->>1 AS root_cause, 1::bigint AS count",
            facts_from: "analytics.evaluation_facts f CROSS JOIN LATERAL jsonb_array_elements(f.event->'root_causes') rc",
            facts_where: "",
        },
        tail: " GROUP BY criterion_key, root_cause HAVING sum(count) > 0 ORDER BY count DESC, criterion_key, root_cause",
    },
};
