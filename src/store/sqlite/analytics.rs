//! AnalyticsStore on SQLite: the projector over the outbox and the queries over facts
//! and daily rollups. With one writer at a time, outbox positions are in commit order,
//! so the cursor is a position and every event below it has been applied.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{SqliteConnection, types::Json};
use uuid::Uuid;

use super::time::{now_micros, to_micros};
use super::{SqliteStore, classify};
use crate::domain::{
    analytics::{Dimension, Interval},
    evaluation::EvaluationEvent,
};
use crate::error::Result;
use crate::store::score_query::{Breakdown, Parts, ScoreDialect};
use crate::store::sql::{
    Link,
    projection::{apply_events, empty_figures, replay_evaluations},
};
use crate::store::{AnalyticsStore, AppliedBatch, OutboxWakeups};

/// Wake-ups from this process's own writes: the store is embedded, so no other process
/// serves evaluations on it.
struct LocalWakeups(std::sync::Arc<tokio::sync::Notify>);

#[async_trait]
impl OutboxWakeups for LocalWakeups {
    async fn wait(&mut self) {
        self.0.notified().await;
    }
}

/// A BLOB UUID as PostgreSQL prints one, so group keys read the same on both stores.
fn uuid_text(column: &str) -> String {
    format!(
        "lower(substr(hex({column}), 1, 8) || '-' || substr(hex({column}), 9, 4) || '-' || \
         substr(hex({column}), 13, 4) || '-' || substr(hex({column}), 17, 4) || '-' || \
         substr(hex({column}), 21, 12))"
    )
}

fn dimension_text(alias: &str, dimension: Dimension) -> String {
    let column = format!("{alias}.{}", dimension.column());
    match dimension {
        Dimension::Rubric => uuid_text(&column),
        _ => column,
    }
}

/// The first day of the bucket holding `day` (a 'YYYY-MM-DD' expression); weeks start on
/// Monday, as ISO and PostgreSQL's `date_trunc` have them.
fn bucket_of(day: &str, interval: Interval) -> String {
    match interval {
        Interval::None => "NULL".to_owned(),
        Interval::Day => day.to_owned(),
        Interval::Week => {
            format!(
                "date({day}, '-' || ((CAST(strftime('%w', {day}) AS INTEGER) + 6) % 7) || ' days')"
            )
        }
        Interval::Month => format!("strftime('%Y-%m-01', {day})"),
    }
}

const FACT_DAY: &str = "date(f.first_create_time / 1000000.0, 'unixepoch')";

#[derive(sqlx::FromRow)]
struct OutboxRow {
    tenant_id: Uuid,
    position: i64,
    payload: Json<EvaluationEvent>,
}

/// Applies the events after the cursor (at most `limit`) and moves the cursor.
async fn apply_next(conn: &mut SqliteConnection, limit: u32) -> Result<AppliedBatch> {
    let rows: Vec<OutboxRow> = sqlx::query_as(
        "SELECT tenant_id, position, payload FROM outbox
         WHERE position > (SELECT last_position FROM projector_cursor)
         ORDER BY position LIMIT ?",
    )
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(classify)?;
    let Some(last) = rows.last().map(|row| row.position) else {
        return Ok(AppliedBatch::default());
    };
    let events: Vec<(Uuid, EvaluationEvent)> = rows
        .into_iter()
        .map(|row| (row.tenant_id, row.payload.0))
        .collect();
    let applied = apply_events(&mut Link::Sqlite(conn), &events).await?;
    sqlx::query(
        "UPDATE projector_cursor SET last_position = ?, applied_events = applied_events + ?,
             update_time = ?",
    )
    .bind(last)
    .bind(events.len() as i64)
    .bind(to_micros(now_micros()))
    .execute(&mut *conn)
    .await
    .map_err(classify)?;
    Ok(applied)
}

#[async_trait]
impl AnalyticsStore for SqliteStore {
    #[tracing::instrument(name = "db.apply_pending", skip_all, fields(db.system = "sqlite"))]
    async fn apply_pending(&self, limit: u32) -> Result<AppliedBatch> {
        let mut tx = self.begin_write().await?;
        let applied = apply_next(&mut tx, limit).await?;
        tx.commit().await.map_err(classify)?;
        Ok(applied)
    }

    #[tracing::instrument(name = "db.has_pending", skip_all, fields(db.system = "sqlite"))]
    async fn has_pending(&self) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM outbox
                            WHERE position > (SELECT last_position FROM projector_cursor))",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(classify)
    }

    #[tracing::instrument(name = "db.as_of", skip_all, fields(db.system = "sqlite"))]
    async fn as_of(&self) -> Result<DateTime<Utc>> {
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT min(create_time) FROM outbox
             WHERE position > (SELECT last_position FROM projector_cursor)",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(classify)?;
        match oldest {
            Some(micros) => super::time::from_micros(micros),
            None => Ok(now_micros()),
        }
    }

    #[tracing::instrument(name = "db.rebuild", skip_all, fields(db.system = "sqlite"))]
    async fn rebuild(&self) -> Result<u64> {
        // The writer connection is this store's only one: holding its transaction keeps
        // the projector out until the rebuild commits, and readers keep the old figures.
        // The cursor stays: events after it are applied afterwards, as stale.
        let mut tx = self.begin_write().await?;
        let mut link = Link::Sqlite(&mut tx);
        empty_figures(&mut link).await?;
        let replayed = replay_evaluations(&mut link).await?;
        tx.commit().await.map_err(classify)?;
        Ok(replayed)
    }

    #[tracing::instrument(name = "db.prune_outbox", skip_all, fields(db.system = "sqlite"))]
    async fn prune_outbox(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        // The oldest `limit` events only, as on PostgreSQL.
        const PRUNABLE: &str = "FROM (SELECT position, create_time FROM outbox
                                      ORDER BY position LIMIT ?2)
                                WHERE position <= (SELECT last_position FROM projector_cursor)
                                  AND position <= (SELECT last_position FROM webhook_cursor)
                                  AND create_time < ?1";
        // Most passes find nothing: they take no write transaction (the one writer's
        // lock) just to see that.
        let waiting: Option<i64> =
            sqlx::query_scalar(&format!("SELECT position {PRUNABLE} LIMIT 1"))
                .bind(to_micros(before))
                .bind(i64::from(limit))
                .fetch_optional(&self.reader)
                .await
                .map_err(classify)?;
        if waiting.is_none() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let pruned = sqlx::query(&format!(
            "DELETE FROM outbox WHERE position IN (SELECT position {PRUNABLE})"
        ))
        .bind(to_micros(before))
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(pruned.rows_affected())
    }

    #[tracing::instrument(name = "db.outbox_wakeups", skip_all, fields(db.system = "sqlite"))]
    async fn outbox_wakeups(&self) -> Result<Box<dyn OutboxWakeups>> {
        Ok(Box::new(LocalWakeups(self.outbox_written.clone())))
    }
}

/// How the score queries are said on SQLite.
pub(super) const SCORES: ScoreDialect = ScoreDialect {
    dimension_text,
    rollup_bucket: |interval| bucket_of("r.day", interval),
    facts_bucket: |interval| bucket_of(FACT_DAY, interval),
    bucket_text: |column| column.to_owned(),

    section_totals: Breakdown {
        head: "SELECT section, total(score_sum) AS score_sum, sum(score_count) AS score_count",
        parts: Parts {
            rollup_select: "r.section, r.score_sum, r.score_count",
            rollup_from: "daily_section_scores r",
            facts_select: "json_extract(s.value, '$.section') AS section,
                           json_extract(s.value, '$.score') AS score_sum, 1 AS score_count",
            facts_from: "evaluation_facts f, json_each(f.event, '$.section_scores') s",
            facts_where: "json_extract(s.value, '$.score') IS NOT NULL",
        },
        tail: " GROUP BY section HAVING sum(score_count) > 0 ORDER BY section",
    },

    criterion_totals: Breakdown {
        head:
            "SELECT criterion_key, total(score_sum) AS score_sum, sum(rated_count) AS rated_count,
                    sum(not_applicable_count) AS not_applicable_count",
        parts: Parts {
            rollup_select: "r.criterion_key, r.score_sum, r.rated_count, r.not_applicable_count",
            rollup_from: "daily_criterion_scores r",
            facts_select: "json_extract(c.value, '$.criterion_key') AS criterion_key,
                           COALESCE(json_extract(c.value, '$.score'), 0.0) AS score_sum,
                           (json_extract(c.value, '$.score') IS NOT NULL) AS rated_count,
                           (json_extract(c.value, '$.score') IS NULL) AS not_applicable_count",
            facts_from: "evaluation_facts f, json_each(f.event, '$.criterion_scores') c",
            facts_where: "",
        },
        tail: " GROUP BY criterion_key HAVING sum(rated_count) + sum(not_applicable_count) > 0 ORDER BY criterion_key",
    },

    root_cause_totals: Breakdown {
        head: "SELECT criterion_key, root_cause, sum(count) AS count",
        parts: Parts {
            rollup_select: "r.criterion_key, r.root_cause, r.count",
            rollup_from: "daily_root_causes r",
            facts_select: "json_extract(rc.value, '$[0]') AS criterion_key,
                           json_extract(rc.value, '$[1]') AS root_cause, 1 AS count",
            facts_from: "evaluation_facts f, json_each(f.event, '$.root_causes') rc",
            facts_where: "",
        },
        tail: " GROUP BY criterion_key, root_cause HAVING sum(count) > 0 ORDER BY count DESC, criterion_key, root_cause",
    },
};
