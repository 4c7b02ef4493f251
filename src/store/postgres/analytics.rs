//! AnalyticsStore on PostgreSQL (schema `analytics`): the projector over the evaluation
//! outbox, and the queries over facts and daily rollups.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder, postgres::PgListener, types::Json};
use uuid::Uuid;

use super::{PostgresStore, classify};
use crate::domain::{
    analytics::{RollupDeltas, RollupKey, Totals},
    evaluation::EvaluationEvent,
};
use crate::error::Result;
use crate::store::outbox_batch::plan_batch;
use crate::store::score_query::{Breakdown, Parts, ScoreDialect};
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
/// joined instead, the events were scanned in full (the outbox keeps every event).
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
pub const OUTBOX_READS: [(&str, &str); 4] = [
    ("has_pending", HAS_PENDING_SQL),
    ("as_of", AS_OF_SQL),
    ("pending_events", PENDING_COUNT_SQL),
    ("next_events", NEXT_EVENTS_SQL),
];

const ROLLUP_KEY: &str =
    "tenant_id, day, agent_id, team_id, channel, region, rubric_id, reviewer_id, kind";

/// Rows per multi-row statement: PostgreSQL allows 65,535 bind parameters, and a facts
/// row takes 17.
const ROWS_PER_STATEMENT: usize = 2_000;

#[derive(sqlx::FromRow)]
struct OutboxRow {
    tenant_id: Uuid,
    position: i64,
    txid: String,
    payload: Json<EvaluationEvent>,
}

/// Applies events to facts and rollups inside the caller's transaction.
async fn apply_events(
    conn: &mut PgConnection,
    events: &[(Uuid, EvaluationEvent)],
) -> Result<AppliedBatch> {
    let tenants: Vec<Uuid> = events.iter().map(|(tenant, _)| *tenant).collect();
    let ids: Vec<Uuid> = events
        .iter()
        .map(|(_, event)| event.evaluation_id)
        .collect();
    let stored: Vec<(Uuid, Uuid, Json<EvaluationEvent>)> = sqlx::query_as(
        "SELECT f.tenant_id, f.evaluation_id, f.event FROM analytics.evaluation_facts f
         JOIN UNNEST($1::uuid[], $2::uuid[]) AS wanted(tenant_id, evaluation_id)
           ON f.tenant_id = wanted.tenant_id AND f.evaluation_id = wanted.evaluation_id",
    )
    .bind(&tenants)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(classify)?;
    let facts: HashMap<(Uuid, Uuid), EvaluationEvent> = stored
        .into_iter()
        .map(|(tenant, id, event)| ((tenant, id), event.0))
        .collect();
    let plan = plan_batch(facts, events);
    let changed: Vec<(Uuid, &EvaluationEvent)> = plan
        .facts
        .iter()
        .map(|(tenant, event)| (*tenant, event))
        .collect();
    upsert_facts(conn, &changed).await?;
    upsert_rollups(conn, &plan.deltas).await?;
    Ok(plan.applied)
}

async fn upsert_facts(conn: &mut PgConnection, facts: &[(Uuid, &EvaluationEvent)]) -> Result<()> {
    for chunk in facts.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Postgres>::new(
            "INSERT INTO analytics.evaluation_facts (tenant_id, evaluation_id, revision, state, agent_id,
                 team_id, channel, region, rubric_id, reviewer_id, kind, score, passed, critical_failed,
                 csat, first_create_time, event) ",
        );
        query.push_values(chunk, |mut row, (tenant, event)| {
            row.push_bind(*tenant)
                .push_bind(event.evaluation_id)
                .push_bind(event.revision as i32)
                .push_bind(event.state.as_str())
                .push_bind(event.agent_id.clone())
                .push_bind(event.team_id.clone())
                .push_bind(event.channel.clone())
                .push_bind(event.region.clone())
                .push_bind(event.rubric_id)
                .push_bind(event.reviewer_id.clone())
                .push_bind(event.kind.as_str())
                .push_bind(event.score)
                .push_bind(event.passed)
                .push_bind(event.critical_failed)
                .push_bind(event.csat.map(|c| c as i16))
                .push_bind(event.first_create_time)
                .push_bind(Json((*event).clone()));
        });
        query.push(
            " ON CONFLICT (tenant_id, evaluation_id) DO UPDATE SET revision = EXCLUDED.revision,
                 state = EXCLUDED.state, agent_id = EXCLUDED.agent_id, team_id = EXCLUDED.team_id,
                 channel = EXCLUDED.channel, region = EXCLUDED.region, rubric_id = EXCLUDED.rubric_id,
                 reviewer_id = EXCLUDED.reviewer_id, kind = EXCLUDED.kind, score = EXCLUDED.score,
                 passed = EXCLUDED.passed, critical_failed = EXCLUDED.critical_failed,
                 csat = EXCLUDED.csat, first_create_time = EXCLUDED.first_create_time,
                 event = EXCLUDED.event",
        );
        query.build().execute(&mut *conn).await.map_err(classify)?;
    }
    Ok(())
}

/// Pushes the rollup key columns of `key` into a VALUES row.
macro_rules! push_key {
    ($row:expr, $key:expr) => {
        $row.push_bind($key.tenant_id)
            .push_bind($key.day)
            .push_bind($key.agent_id.clone())
            .push_bind($key.team_id.clone())
            .push_bind($key.channel.clone())
            .push_bind($key.region.clone())
            .push_bind($key.rubric_id)
            .push_bind($key.reviewer_id.clone())
            .push_bind($key.kind.as_str())
    };
}

async fn upsert_rollups(conn: &mut PgConnection, deltas: &RollupDeltas) -> Result<()> {
    for (table, scores) in [
        ("daily_scores", &deltas.scores),
        ("daily_team_scores", &deltas.team_scores),
    ] {
        upsert_scores(conn, table, scores).await?;
    }
    upsert_breakdowns(conn, deltas).await
}

async fn upsert_scores(
    conn: &mut PgConnection,
    table: &str,
    scores: &HashMap<RollupKey, Totals>,
) -> Result<()> {
    let scores: Vec<_> = scores.iter().collect();
    for chunk in scores.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "INSERT INTO analytics.{table} AS r ({ROLLUP_KEY}, evaluation_count, scored_count,
                 score_sum, passed_count, critical_fail_count, csat_sum, csat_count) "
        ));
        query.push_values(chunk, |mut row, (key, totals)| {
            push_key!(row, key)
                .push_bind(totals.evaluation_count)
                .push_bind(totals.scored_count)
                .push_bind(totals.score_sum)
                .push_bind(totals.passed_count)
                .push_bind(totals.critical_fail_count)
                .push_bind(totals.csat_sum)
                .push_bind(totals.csat_count);
        });
        query.push(format!(
            " ON CONFLICT ({ROLLUP_KEY}) DO UPDATE SET
                 evaluation_count = r.evaluation_count + EXCLUDED.evaluation_count,
                 scored_count = r.scored_count + EXCLUDED.scored_count,
                 score_sum = r.score_sum + EXCLUDED.score_sum,
                 passed_count = r.passed_count + EXCLUDED.passed_count,
                 critical_fail_count = r.critical_fail_count + EXCLUDED.critical_fail_count,
                 csat_sum = r.csat_sum + EXCLUDED.csat_sum,
                 csat_count = r.csat_count + EXCLUDED.csat_count"
        ));
        query.build().execute(&mut *conn).await.map_err(classify)?;
    }
    Ok(())
}

async fn upsert_breakdowns(conn: &mut PgConnection, deltas: &RollupDeltas) -> Result<()> {
    let sections: Vec<_> = deltas.sections.iter().collect();
    for chunk in sections.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "INSERT INTO analytics.daily_section_scores AS r ({ROLLUP_KEY}, section, score_sum, score_count) "
        ));
        query.push_values(chunk, |mut row, ((key, section), delta)| {
            push_key!(row, key)
                .push_bind(section.clone())
                .push_bind(delta.sum)
                .push_bind(delta.count);
        });
        query.push(format!(
            " ON CONFLICT ({ROLLUP_KEY}, section) DO UPDATE SET
                 score_sum = r.score_sum + EXCLUDED.score_sum,
                 score_count = r.score_count + EXCLUDED.score_count"
        ));
        query.build().execute(&mut *conn).await.map_err(classify)?;
    }
    let criteria: Vec<_> = deltas.criteria.iter().collect();
    for chunk in criteria.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "INSERT INTO analytics.daily_criterion_scores AS r ({ROLLUP_KEY}, criterion_key, score_sum,
                 rated_count, not_applicable_count) "
        ));
        query.push_values(chunk, |mut row, ((key, criterion), delta)| {
            push_key!(row, key)
                .push_bind(criterion.clone())
                .push_bind(delta.score_sum)
                .push_bind(delta.rated_count)
                .push_bind(delta.not_applicable_count);
        });
        query.push(format!(
            " ON CONFLICT ({ROLLUP_KEY}, criterion_key) DO UPDATE SET
                 score_sum = r.score_sum + EXCLUDED.score_sum,
                 rated_count = r.rated_count + EXCLUDED.rated_count,
                 not_applicable_count = r.not_applicable_count + EXCLUDED.not_applicable_count"
        ));
        query.build().execute(&mut *conn).await.map_err(classify)?;
    }
    let causes: Vec<_> = deltas.root_causes.iter().collect();
    for chunk in causes.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "INSERT INTO analytics.daily_root_causes AS r ({ROLLUP_KEY}, criterion_key, root_cause, count) "
        ));
        query.push_values(chunk, |mut row, ((key, criterion, cause), count)| {
            push_key!(row, key)
                .push_bind(criterion.clone())
                .push_bind(cause.clone())
                .push_bind(*count);
        });
        query.push(format!(
            " ON CONFLICT ({ROLLUP_KEY}, criterion_key, root_cause) DO UPDATE SET count = r.count + EXCLUDED.count"
        ));
        query.build().execute(&mut *conn).await.map_err(classify)?;
    }
    Ok(())
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
    let applied = apply_events(conn, &events).await?;
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
        sqlx::query("SELECT 1 FROM analytics.projector_cursor FOR UPDATE")
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        for table in [
            "evaluation_facts",
            "daily_scores",
            "daily_team_scores",
            "daily_section_scores",
            "daily_criterion_scores",
            "daily_root_causes",
        ] {
            // DELETE, not TRUNCATE: readers keep their snapshot instead of waiting.
            sqlx::query(&format!("DELETE FROM analytics.{table}"))
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        sqlx::query("UPDATE analytics.projector_cursor SET last_txid = '0', last_position = 0, applied_events = 0")
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        // Replay up to the last event committed when the rebuild started. Events of
        // transactions older than one still running elsewhere are not safe to apply
        // yet: wait for them rather than stop short.
        let target: Option<(String, i64)> = sqlx::query_as(
            "SELECT txid::text, position FROM evaluation.outbox ORDER BY txid DESC, position DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let Some((target_txid, target_position)) = target else {
            tx.commit().await.map_err(classify)?;
            return Ok(0);
        };
        let target = (
            target_txid.parse::<u64>().unwrap_or(u64::MAX),
            target_position,
        );
        let (mut txid, mut position) = ("0".to_owned(), 0i64);
        let mut total = 0u64;
        while (txid.parse::<u64>().unwrap_or(0), position) < target {
            let applied = apply_next(&mut tx, &txid, position, 5_000).await?;
            if applied.events == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
            total += applied.events as u64;
            (txid, position) = sqlx::query_as(
                "SELECT last_txid::text, last_position FROM analytics.projector_cursor",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(total)
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
