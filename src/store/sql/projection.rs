//! Applying outbox events to the facts and daily rollups, once for both databases: what
//! changed is planned in `store/outbox_batch.rs`, and written here with multi-row upserts
//! that add to the rollups. Reading the events and moving the cursor stay with each
//! adapter (PostgreSQL orders events by transaction id, SQLite by position).

use std::collections::{BTreeMap, HashMap};

use sqlx::types::Json;
use uuid::Uuid;

use super::evaluation_reads::{EVALUATION_COLUMNS, with_ratings};
use super::{Link, Stamp, Statement, Value, sql};
use crate::domain::analytics::{RollupDeltas, RollupKey, Totals};
use crate::domain::evaluation::EvaluationEvent;
use crate::domain::tenant::TenantId;
use crate::error::Result;
use crate::store::AppliedBatch;
use crate::store::evaluation_rows::EvaluationRow;
use crate::store::outbox_batch::plan_batch;

const ROLLUP_KEY: &str =
    "tenant_id, day, agent_id, team_id, channel, region, rubric_id, reviewer_id, kind";

/// Rows per multi-row statement: a facts row binds 17 values, and SQLite allows 32,766
/// (PostgreSQL 65,535).
const ROWS_PER_STATEMENT: usize = 1_000;

/// Deletes every fact and rollup, inside the caller's transaction: the start of a
/// rebuild. DELETE, not TRUNCATE: readers keep their snapshot instead of waiting.
pub(crate) async fn empty_figures(link: &mut Link<'_>) -> Result<()> {
    for table in [
        "evaluation_facts",
        "daily_scores",
        "daily_team_scores",
        "daily_section_scores",
        "daily_criterion_scores",
        "daily_root_causes",
    ] {
        link.execute(sql(format!("DELETE FROM {table}"))).await?;
    }
    Ok(())
}

/// Evaluations read per page of a rebuild.
const REBUILD_PAGE: i64 = 5_000;

/// The current revision of an evaluation, with its tenant and the CSAT its event carried.
#[derive(sqlx::FromRow)]
struct CurrentRevision {
    tenant_id: Uuid,
    event_csat: Option<i16>,
    #[sqlx(flatten)]
    row: EvaluationRow,
}

/// Applies the current revision of every evaluation (active or deleted) to the facts and
/// rollups, inside the caller's transaction, as the last outbox event of each would:
/// a rebuild needs the evaluations only, so consumed outbox events can be pruned.
/// Events not applied yet meet these facts later and are skipped as stale when they
/// describe what was read here. Returns the evaluations applied.
pub(crate) async fn replay_evaluations(link: &mut Link<'_>) -> Result<u64> {
    let mut after: Option<(Uuid, Uuid)> = None;
    let mut total = 0u64;
    loop {
        let mut statement = sql(format!(
            "SELECT tenant_id, event_csat, {EVALUATION_COLUMNS} FROM evaluations
             WHERE state <> 'superseded'"
        ));
        if let Some((tenant, id)) = after {
            statement = statement
                .push(" AND (tenant_id > ")
                .push_bind(tenant)
                .push(" OR (tenant_id = ")
                .push_bind(tenant)
                .push(" AND id > ")
                .push_bind(id)
                .push("))");
        }
        let page: Vec<CurrentRevision> = link
            .fetch_all(
                statement
                    .push(" ORDER BY tenant_id, id LIMIT ")
                    .push_bind(REBUILD_PAGE),
            )
            .await?;
        let Some(last) = page.last() else {
            return Ok(total);
        };
        after = Some((last.tenant_id, last.row.id));
        let full = page.len() as i64 == REBUILD_PAGE;
        total += page.len() as u64;
        let mut by_tenant: BTreeMap<Uuid, Vec<(Option<i16>, EvaluationRow)>> = BTreeMap::new();
        for revision in page {
            by_tenant
                .entry(revision.tenant_id)
                .or_default()
                .push((revision.event_csat, revision.row));
        }
        let mut events = Vec::new();
        for (tenant, rows) in by_tenant {
            let (csats, rows): (Vec<Option<i16>>, Vec<EvaluationRow>) = rows.into_iter().unzip();
            let evaluations = with_ratings(link, TenantId(tenant), rows).await?;
            events.extend(evaluations.iter().zip(csats).map(|(evaluation, csat)| {
                (tenant, EvaluationEvent::of(evaluation, csat.map(i32::from)))
            }));
        }
        apply_events(link, &events).await?;
        if !full {
            return Ok(total);
        }
    }
}

/// Applies events to facts and rollups inside the caller's transaction.
pub(crate) async fn apply_events(
    link: &mut Link<'_>,
    events: &[(Uuid, EvaluationEvent)],
) -> Result<AppliedBatch> {
    let mut facts = HashMap::new();
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let mut statement = sql(
            "SELECT tenant_id, evaluation_id, event FROM evaluation_facts
             WHERE (tenant_id, evaluation_id) IN (VALUES ",
        );
        for (index, (tenant, event)) in chunk.iter().enumerate() {
            statement = statement
                .push(if index == 0 { "(" } else { ", (" })
                .push_bind(*tenant)
                .push(", ")
                .push_bind(event.evaluation_id)
                .push(")");
        }
        let stored: Vec<(Uuid, Uuid, Json<EvaluationEvent>)> =
            link.fetch_all(statement.push(")")).await?;
        facts.extend(
            stored
                .into_iter()
                .map(|(tenant, id, event)| ((tenant, id), event.0)),
        );
    }
    let plan = plan_batch(facts, events);
    upsert_facts(link, &plan.facts).await?;
    upsert_rollups(link, &plan.deltas).await?;
    Ok(plan.applied)
}

/// `INSERT INTO {into} ({columns}) VALUES (…), …` with one row of values per item.
fn values<T>(
    into: &str,
    columns: &str,
    rows: &[T],
    row: impl Fn(&T) -> Result<Vec<Value>>,
) -> Result<Statement<'static>> {
    let mut statement = sql(format!("INSERT INTO {into} ({columns}) VALUES "));
    for (index, item) in rows.iter().enumerate() {
        statement = statement.push(if index == 0 { "(" } else { ", (" });
        for (column, value) in row(item)?.into_iter().enumerate() {
            statement = statement
                .push(if column == 0 { "" } else { ", " })
                .push_bind(value);
        }
        statement = statement.push(")");
    }
    Ok(statement)
}

async fn upsert_facts(link: &mut Link<'_>, facts: &[(Uuid, EvaluationEvent)]) -> Result<()> {
    for chunk in facts.chunks(ROWS_PER_STATEMENT) {
        let statement = values(
            "evaluation_facts",
            "tenant_id, evaluation_id, revision, state, agent_id, team_id, channel, region, \
             rubric_id, reviewer_id, kind, score, passed, critical_failed, csat, \
             first_create_time, event",
            chunk,
            |(tenant, event)| {
                Ok(vec![
                    (*tenant).into(),
                    event.evaluation_id.into(),
                    i64::from(event.revision).into(),
                    event.state.as_str().into(),
                    event.agent_id.as_str().into(),
                    event.team_id.as_str().into(),
                    event.channel.as_str().into(),
                    event.region.as_str().into(),
                    event.rubric_id.into(),
                    event.reviewer_id.as_str().into(),
                    event.kind.as_str().into(),
                    event.score.into(),
                    event.passed.into(),
                    event.critical_failed.into(),
                    event.csat.and_then(|c| i16::try_from(c).ok()).into(),
                    Stamp(event.first_create_time).into(),
                    Value::json(event)?,
                ])
            },
        )?;
        link.execute(statement.push(
            " ON CONFLICT (tenant_id, evaluation_id) DO UPDATE SET revision = excluded.revision,
                 state = excluded.state, agent_id = excluded.agent_id, team_id = excluded.team_id,
                 channel = excluded.channel, region = excluded.region, rubric_id = excluded.rubric_id,
                 reviewer_id = excluded.reviewer_id, kind = excluded.kind, score = excluded.score,
                 passed = excluded.passed, critical_failed = excluded.critical_failed,
                 csat = excluded.csat, first_create_time = excluded.first_create_time,
                 event = excluded.event",
        ))
        .await?;
    }
    Ok(())
}

/// The rollup key columns of `key`, as values.
fn key_values(key: &RollupKey) -> Vec<Value> {
    vec![
        key.tenant_id.into(),
        key.day.into(),
        key.agent_id.as_str().into(),
        key.team_id.as_str().into(),
        key.channel.as_str().into(),
        key.region.as_str().into(),
        key.rubric_id.into(),
        key.reviewer_id.as_str().into(),
        key.kind.as_str().into(),
    ]
}

/// Upserts `rows` into rollup `table`, adding each of `sums` to the stored value.
async fn add_to_rollup<T>(
    link: &mut Link<'_>,
    table: &str,
    extra_key: &str,
    sums: &[&str],
    rows: &[T],
    row: impl Fn(&T) -> Vec<Value>,
) -> Result<()> {
    let key = format!("{ROLLUP_KEY}{extra_key}");
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let statement = values(
            &format!("{table} AS r"),
            &format!("{key}, {}", sums.join(", ")),
            chunk,
            |item| Ok(row(item)),
        )?;
        let additions: Vec<String> = sums
            .iter()
            .map(|column| format!("{column} = r.{column} + excluded.{column}"))
            .collect();
        link.execute(statement.push(&format!(
            " ON CONFLICT ({key}) DO UPDATE SET {}",
            additions.join(", ")
        )))
        .await?;
    }
    Ok(())
}

async fn upsert_rollups(link: &mut Link<'_>, deltas: &RollupDeltas) -> Result<()> {
    for (table, scores) in [
        ("daily_scores", &deltas.scores),
        ("daily_team_scores", &deltas.team_scores),
    ] {
        let scores: Vec<(&RollupKey, &Totals)> = scores.iter().collect();
        add_to_rollup(
            link,
            table,
            "",
            &[
                "evaluation_count",
                "scored_count",
                "score_sum",
                "passed_count",
                "critical_fail_count",
                "csat_sum",
                "csat_count",
            ],
            &scores,
            |(key, totals)| {
                let mut row = key_values(key);
                row.extend([
                    totals.evaluation_count.into(),
                    totals.scored_count.into(),
                    totals.score_sum.into(),
                    totals.passed_count.into(),
                    totals.critical_fail_count.into(),
                    totals.csat_sum.into(),
                    totals.csat_count.into(),
                ]);
                row
            },
        )
        .await?;
    }
    let sections: Vec<_> = deltas.sections.iter().collect();
    add_to_rollup(
        link,
        "daily_section_scores",
        ", section",
        &["score_sum", "score_count"],
        &sections,
        |((key, section), delta)| {
            let mut row = key_values(key);
            row.extend([
                section.as_str().into(),
                delta.sum.into(),
                delta.count.into(),
            ]);
            row
        },
    )
    .await?;
    let criteria: Vec<_> = deltas.criteria.iter().collect();
    add_to_rollup(
        link,
        "daily_criterion_scores",
        ", criterion_key",
        &["score_sum", "rated_count", "not_applicable_count"],
        &criteria,
        |((key, criterion), delta)| {
            let mut row = key_values(key);
            row.extend([
                criterion.as_str().into(),
                delta.score_sum.into(),
                delta.rated_count.into(),
                delta.not_applicable_count.into(),
            ]);
            row
        },
    )
    .await?;
    let causes: Vec<_> = deltas.root_causes.iter().collect();
    add_to_rollup(
        link,
        "daily_root_causes",
        ", criterion_key, root_cause",
        &["count"],
        &causes,
        |((key, criterion, cause), count)| {
            let mut row = key_values(key);
            row.extend([
                criterion.as_str().into(),
                cause.as_str().into(),
                (**count).into(),
            ]);
            row
        },
    )
    .await
}
