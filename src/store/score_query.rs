//! The score queries, assembled once for both databases: filters, and the union of whole
//! days from the rollups with the partial days at the edges from the facts. What differs
//! between the databases (text of a dimension, time buckets, reading the facts' JSON) is
//! data in a `ScoreDialect`.

use crate::domain::analytics::{Dimension, Interval, ScoreFilter, TimeSplit, split_time};
use crate::domain::tenant::TenantId;
use crate::store::sql::{Stamp, Statement, sql};

/// What the score queries say differently on each database.
pub(crate) struct ScoreDialect {
    /// A dimension of rollup or fact row `alias`, as text.
    pub dimension_text: fn(alias: &str, dimension: Dimension) -> String,
    /// The start of the bucket of a rollup row `r` (NULL without an interval).
    pub rollup_bucket: fn(Interval) -> String,
    /// The same of a fact row `f`.
    pub facts_bucket: fn(Interval) -> String,
    /// A bucket start as 'YYYY-MM-DD…' text, for the answer.
    pub bucket_text: fn(column: &str) -> String,
    /// The breakdowns by section, by criterion and by root cause: the facts keep their
    /// scores as JSON, which each database reads with functions of its own.
    pub section_totals: Breakdown,
    pub criterion_totals: Breakdown,
    pub root_cause_totals: Breakdown,
}

/// A query over the union of `parts`: `head FROM (parts) AS parts tail`.
pub(crate) struct Breakdown {
    pub head: &'static str,
    pub parts: Parts<'static>,
    pub tail: &'static str,
}

/// The most dimensions a group can have: one of each.
pub(crate) const MAX_DIMENSIONS: usize = 6;

/// The query of `breakdown` for `tenant` and `filter`.
pub(crate) fn breakdown_statement(
    tenant: TenantId,
    filter: &ScoreFilter,
    breakdown: &Breakdown,
) -> Statement<'static> {
    let statement = sql(format!("{} FROM ", breakdown.head));
    push_parts(statement, tenant, filter, &breakdown.parts).push(breakdown.tail)
}

/// The `QueryScores` totals: one row per group and bucket, its dimensions in `d0..d5`
/// (NULL beyond `group_by`), the bucket's first day as text, then the counters. Grouped
/// by the bucket as each database computes it (GROUP BY names the input column), and
/// only the answer's rows turned into text.
pub(crate) fn group_totals_statement(
    dialect: &ScoreDialect,
    tenant: TenantId,
    filter: &ScoreFilter,
    group_by: &[Dimension],
    interval: Interval,
) -> Statement<'static> {
    // Without agents or reviewers in the question, the coarse rollup answers it.
    let coarse = filter.agent_ids.is_empty() && group_by.iter().all(|d| d.in_team_rollup());
    let dims = |alias: &str| -> String {
        group_by
            .iter()
            .enumerate()
            .map(|(index, dimension)| {
                format!(
                    "{} AS d{index}, ",
                    (dialect.dimension_text)(alias, *dimension)
                )
            })
            .collect()
    };
    let rollup_select = format!(
        "{}{} AS bucket, r.evaluation_count, r.scored_count, r.score_sum, r.passed_count,
         r.critical_fail_count, r.csat_sum, r.csat_count",
        dims("r"),
        (dialect.rollup_bucket)(interval)
    );
    let facts_select = format!(
        "{}{} AS bucket, 1 AS evaluation_count,
         CASE WHEN f.score IS NOT NULL THEN 1 ELSE 0 END AS scored_count,
         COALESCE(f.score, 0.0) AS score_sum,
         CASE WHEN f.passed THEN 1 ELSE 0 END AS passed_count,
         CASE WHEN f.critical_failed THEN 1 ELSE 0 END AS critical_fail_count,
         COALESCE(f.csat, 0) AS csat_sum,
         CASE WHEN f.csat IS NOT NULL THEN 1 ELSE 0 END AS csat_count",
        dims("f"),
        (dialect.facts_bucket)(interval)
    );
    let groups: String = (0..group_by.len()).map(|i| format!("d{i}, ")).collect();
    let outer: String = (0..MAX_DIMENSIONS)
        .map(|i| match i < group_by.len() {
            true => format!("d{i}, "),
            false => format!("CAST(NULL AS TEXT) AS d{i}, "),
        })
        .collect();
    let bucket = (dialect.bucket_text)("bucket");
    let statement = sql(format!(
        "SELECT {outer}{bucket} AS bucket, CAST(sum(evaluation_count) AS BIGINT) AS evaluation_count,
                CAST(sum(scored_count) AS BIGINT) AS scored_count,
                CAST(sum(score_sum) AS DOUBLE PRECISION) AS score_sum,
                CAST(sum(passed_count) AS BIGINT) AS passed_count,
                CAST(sum(critical_fail_count) AS BIGINT) AS critical_fail_count,
                CAST(sum(csat_sum) AS BIGINT) AS csat_sum,
                CAST(sum(csat_count) AS BIGINT) AS csat_count
         FROM "
    ));
    let parts = Parts {
        rollup_select: &rollup_select,
        rollup_from: if coarse {
            "daily_team_scores r"
        } else {
            "daily_scores r"
        },
        facts_select: &facts_select,
        facts_from: "evaluation_facts f",
        facts_where: "",
    };
    push_parts(statement, tenant, filter, &parts).push(&format!(
        " GROUP BY {groups}bucket HAVING sum(evaluation_count) > 0 ORDER BY bucket NULLS FIRST, {groups}1"
    ))
}

/// ` WHERE {alias}.tenant_id = … AND …`: the tenant and every filter of `filter`.
pub(crate) fn push_filters(
    statement: Statement<'static>,
    alias: &str,
    tenant: TenantId,
    filter: &ScoreFilter,
) -> Statement<'static> {
    let mut statement = statement
        .push(&format!(" WHERE {alias}.tenant_id = "))
        .push_bind(tenant);
    for (column, values) in [
        ("agent_id", &filter.agent_ids),
        ("team_id", &filter.team_ids),
        ("channel", &filter.channels),
        ("region", &filter.regions),
    ] {
        if !values.is_empty() {
            statement = statement.push_in(&format!("{alias}.{column}"), values.iter().cloned());
        }
    }
    if let Some(rubric_id) = filter.rubric_id {
        statement = statement
            .push(&format!(" AND {alias}.rubric_id = "))
            .push_bind(rubric_id);
    }
    statement.push_in(
        &format!("{alias}.kind"),
        filter.kinds.iter().map(|kind| kind.as_str()),
    )
}

/// What one query selects from the daily rollups and, for partial days, from facts.
pub(crate) struct Parts<'s> {
    /// Columns selected from the rollup table `r`.
    pub rollup_select: &'s str,
    pub rollup_from: &'s str,
    /// The same columns, computed from facts `f` (and any joined table).
    pub facts_select: &'s str,
    pub facts_from: &'s str,
    /// An extra condition on facts rows.
    pub facts_where: &'s str,
}

/// Appends `(… UNION ALL …) AS parts`: whole days from rollups, edges from facts.
pub(crate) fn push_parts(
    statement: Statement<'static>,
    tenant: TenantId,
    filter: &ScoreFilter,
    parts: &Parts<'_>,
) -> Statement<'static> {
    let TimeSplit { days, edges } = split_time(filter.start, filter.end);
    let mut statement = statement.push("(");
    let mut any = false;
    if let Some((first, last)) = days {
        statement = statement.push(&format!(
            "SELECT {} FROM {}",
            parts.rollup_select, parts.rollup_from
        ));
        statement = push_filters(statement, "r", tenant, filter);
        if let Some(first) = first {
            statement = statement.push(" AND r.day >= ").push_bind(first);
        }
        if let Some(last) = last {
            statement = statement.push(" AND r.day < ").push_bind(last);
        }
        any = true;
    }
    for (start, end) in edges {
        if any {
            statement = statement.push(" UNION ALL ");
        }
        statement = statement.push(&format!(
            "SELECT {} FROM {}",
            parts.facts_select, parts.facts_from
        ));
        statement = push_filters(statement, "f", tenant, filter).push(" AND f.state = 'active'");
        if !parts.facts_where.is_empty() {
            statement = statement.push(&format!(" AND {}", parts.facts_where));
        }
        if let Some(start) = start {
            statement = statement
                .push(" AND f.first_create_time >= ")
                .push_bind(Stamp(start));
        }
        if let Some(end) = end {
            statement = statement
                .push(" AND f.first_create_time < ")
                .push_bind(Stamp(end));
        }
        any = true;
    }
    if !any {
        statement = statement.push(&format!(
            "SELECT {} FROM {} WHERE false",
            parts.rollup_select, parts.rollup_from
        ));
    }
    statement.push(") AS parts")
}
