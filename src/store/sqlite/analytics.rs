//! AnalyticsStore on SQLite: the projector over the outbox and the queries over facts
//! and daily rollups. With one writer at a time, outbox positions are in commit order,
//! so the cursor is a position and every event below it has been applied.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, types::Json};
use uuid::Uuid;

use super::time::{now_micros, to_micros};
use super::{SqliteStore, classify};
use crate::domain::{
    analytics::{Dimension, Interval, RollupDeltas, RollupKey, Totals},
    evaluation::EvaluationEvent,
};
use crate::error::{Error, Result};
use crate::store::outbox_batch::plan_batch;
use crate::store::score_query::{Breakdown, Parts, ScoreDialect};
use crate::store::{AnalyticsStore, AppliedBatch, OutboxWakeups};

const ROLLUP_KEY: &str =
    "tenant_id, day, agent_id, team_id, channel, region, rubric_id, reviewer_id, kind";

/// Rows per multi-row statement: a facts row binds 17 parameters, and SQLite allows 32,766.
const ROWS_PER_STATEMENT: usize = 1_000;

/// Events per transaction of a rebuild.
const REBUILD_BATCH: u32 = 5_000;

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

/// Applies events to facts and rollups inside the caller's transaction.
async fn apply_events(
    conn: &mut SqliteConnection,
    events: &[(Uuid, EvaluationEvent)],
) -> Result<AppliedBatch> {
    let mut facts = HashMap::new();
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT tenant_id, evaluation_id, event FROM evaluation_facts
             WHERE (tenant_id, evaluation_id) IN (VALUES ",
        );
        let mut values = query.separated(", ");
        for (tenant, event) in chunk {
            values
                .push("(")
                .push_bind_unseparated(*tenant)
                .push_unseparated(", ")
                .push_bind_unseparated(event.evaluation_id)
                .push_unseparated(")");
        }
        query.push(")");
        let stored: Vec<(Uuid, Uuid, Json<EvaluationEvent>)> = query
            .build_query_as()
            .fetch_all(&mut *conn)
            .await
            .map_err(classify)?;
        facts.extend(
            stored
                .into_iter()
                .map(|(tenant, id, event)| ((tenant, id), event.0)),
        );
    }
    let plan = plan_batch(facts, events);
    upsert_facts(conn, &plan.facts).await?;
    upsert_rollups(conn, &plan.deltas).await?;
    Ok(plan.applied)
}

async fn upsert_facts(
    conn: &mut SqliteConnection,
    facts: &[(Uuid, EvaluationEvent)],
) -> Result<()> {
    for chunk in facts.chunks(ROWS_PER_STATEMENT) {
        let mut rows = Vec::with_capacity(chunk.len());
        for (tenant, event) in chunk {
            rows.push((
                tenant,
                event,
                serde_json::to_string(event)
                    .map_err(|err| Error::Internal(format!("cannot encode JSON: {err}")))?,
            ));
        }
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO evaluation_facts (tenant_id, evaluation_id, revision, state, agent_id,
                 team_id, channel, region, rubric_id, reviewer_id, kind, score, passed, critical_failed,
                 csat, first_create_time, event) ",
        );
        query.push_values(rows, |mut row, (tenant, event, json)| {
            row.push_bind(*tenant)
                .push_bind(event.evaluation_id)
                .push_bind(i64::from(event.revision))
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
                .push_bind(event.csat.map(i64::from))
                .push_bind(to_micros(event.first_create_time))
                .push_bind(json);
        });
        query.push(
            " ON CONFLICT (tenant_id, evaluation_id) DO UPDATE SET revision = excluded.revision,
                 state = excluded.state, agent_id = excluded.agent_id, team_id = excluded.team_id,
                 channel = excluded.channel, region = excluded.region, rubric_id = excluded.rubric_id,
                 reviewer_id = excluded.reviewer_id, kind = excluded.kind, score = excluded.score,
                 passed = excluded.passed, critical_failed = excluded.critical_failed,
                 csat = excluded.csat, first_create_time = excluded.first_create_time,
                 event = excluded.event",
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

async fn upsert_rollups(conn: &mut SqliteConnection, deltas: &RollupDeltas) -> Result<()> {
    for (table, scores) in [
        ("daily_scores", &deltas.scores),
        ("daily_team_scores", &deltas.team_scores),
    ] {
        upsert_scores(conn, table, scores).await?;
    }
    let sections: Vec<_> = deltas.sections.iter().collect();
    for chunk in sections.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO daily_section_scores ({ROLLUP_KEY}, section, score_sum, score_count) "
        ));
        query.push_values(chunk, |mut row, ((key, section), delta)| {
            push_key!(row, key)
                .push_bind(section.clone())
                .push_bind(delta.sum)
                .push_bind(delta.count);
        });
        query.push(format!(
            " ON CONFLICT ({ROLLUP_KEY}, section) DO UPDATE SET
                 score_sum = score_sum + excluded.score_sum,
                 score_count = score_count + excluded.score_count"
        ));
        query.build().execute(&mut *conn).await.map_err(classify)?;
    }
    let criteria: Vec<_> = deltas.criteria.iter().collect();
    for chunk in criteria.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO daily_criterion_scores ({ROLLUP_KEY}, criterion_key, score_sum,
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
                 score_sum = score_sum + excluded.score_sum,
                 rated_count = rated_count + excluded.rated_count,
                 not_applicable_count = not_applicable_count + excluded.not_applicable_count"
        ));
        query.build().execute(&mut *conn).await.map_err(classify)?;
    }
    let causes: Vec<_> = deltas.root_causes.iter().collect();
    for chunk in causes.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO daily_root_causes ({ROLLUP_KEY}, criterion_key, root_cause, count) "
        ));
        query.push_values(chunk, |mut row, ((key, criterion, cause), count)| {
            push_key!(row, key)
                .push_bind(criterion.clone())
                .push_bind(cause.clone())
                .push_bind(*count);
        });
        query.push(format!(
            " ON CONFLICT ({ROLLUP_KEY}, criterion_key, root_cause) DO UPDATE SET count = count + excluded.count"
        ));
        query.build().execute(&mut *conn).await.map_err(classify)?;
    }
    Ok(())
}

async fn upsert_scores(
    conn: &mut SqliteConnection,
    table: &str,
    scores: &HashMap<RollupKey, Totals>,
) -> Result<()> {
    let scores: Vec<_> = scores.iter().collect();
    for chunk in scores.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO {table} ({ROLLUP_KEY}, evaluation_count, scored_count, score_sum,
                 passed_count, critical_fail_count, csat_sum, csat_count) "
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
                 evaluation_count = evaluation_count + excluded.evaluation_count,
                 scored_count = scored_count + excluded.scored_count,
                 score_sum = score_sum + excluded.score_sum,
                 passed_count = passed_count + excluded.passed_count,
                 critical_fail_count = critical_fail_count + excluded.critical_fail_count,
                 csat_sum = csat_sum + excluded.csat_sum,
                 csat_count = csat_count + excluded.csat_count"
        ));
        query.build().execute(&mut *conn).await.map_err(classify)?;
    }
    Ok(())
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
    let applied = apply_events(conn, &events).await?;
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
        let mut tx = self.begin_write().await?;
        for table in [
            "evaluation_facts",
            "daily_scores",
            "daily_team_scores",
            "daily_section_scores",
            "daily_criterion_scores",
            "daily_root_causes",
        ] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        sqlx::query("UPDATE projector_cursor SET last_position = 0, applied_events = 0")
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let mut total = 0u64;
        loop {
            let applied = apply_next(&mut tx, REBUILD_BATCH).await?;
            if applied.events == 0 {
                break;
            }
            total += applied.events as u64;
        }
        tx.commit().await.map_err(classify)?;
        Ok(total)
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
