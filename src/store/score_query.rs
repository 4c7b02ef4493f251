//! The score queries both store adapters build: filters, and the union of whole days
//! from the rollups with the partial days at the edges from the facts. What differs
//! between the databases (how a list or a time is bound) is behind `Dialect`.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{Database, QueryBuilder};
use uuid::Uuid;

use crate::domain::analytics::{ScoreFilter, TimeSplit, split_time};
use crate::domain::tenant::TenantId;

/// How a database binds what the score queries compare against.
pub(crate) trait Dialect: Database {
    fn bind_uuid(query: &mut QueryBuilder<'_, Self>, value: Uuid);
    fn bind_day(query: &mut QueryBuilder<'_, Self>, day: NaiveDate);
    fn bind_time(query: &mut QueryBuilder<'_, Self>, time: DateTime<Utc>);
    /// ` AND {column} IN (values)`, in whatever form the database takes a list.
    fn push_any<'a>(query: &mut QueryBuilder<'a, Self>, column: &str, values: Vec<&'a str>);

    /// The breakdowns by section, by criterion and by root cause: the facts keep their
    /// scores as JSON, which each database reads with functions of its own.
    const SECTION_TOTALS: Breakdown;
    const CRITERION_TOTALS: Breakdown;
    const ROOT_CAUSE_TOTALS: Breakdown;
}

/// A query over the union of `parts`: `head FROM (parts) AS parts tail`.
pub(crate) struct Breakdown {
    pub head: &'static str,
    pub parts: Parts<'static>,
    pub tail: &'static str,
}

/// The query of `breakdown` for `tenant` and `filter`. (Each adapter runs it: sqlx
/// cannot run a query generic over the database whose arguments borrow the builder.)
pub(crate) fn breakdown_query<'a, DB: Dialect>(
    tenant: TenantId,
    filter: &'a ScoreFilter,
    breakdown: &Breakdown,
) -> QueryBuilder<'a, DB> {
    let mut query = QueryBuilder::<DB>::new(format!("{} FROM ", breakdown.head));
    push_parts(&mut query, tenant, filter, &breakdown.parts);
    query.push(breakdown.tail);
    query
}

/// ` WHERE {alias}.tenant_id = … AND …`: the tenant and every filter of `filter`.
pub(crate) fn push_filters<'a, DB: Dialect>(
    query: &mut QueryBuilder<'a, DB>,
    alias: &str,
    tenant: TenantId,
    filter: &'a ScoreFilter,
) {
    query.push(format!(" WHERE {alias}.tenant_id = "));
    DB::bind_uuid(query, tenant.as_uuid());
    for (column, values) in [
        ("agent_id", &filter.agent_ids),
        ("team_id", &filter.team_ids),
        ("channel", &filter.channels),
        ("region", &filter.regions),
    ] {
        if !values.is_empty() {
            let values = values.iter().map(String::as_str).collect();
            DB::push_any(query, &format!("{alias}.{column}"), values);
        }
    }
    if let Some(rubric_id) = filter.rubric_id {
        query.push(format!(" AND {alias}.rubric_id = "));
        DB::bind_uuid(query, rubric_id);
    }
    let kinds = filter.kinds.iter().map(|kind| kind.as_str()).collect();
    DB::push_any(query, &format!("{alias}.kind"), kinds);
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

/// Pushes `(… UNION ALL …) AS parts`: whole days from rollups, edges from facts.
pub(crate) fn push_parts<'a, DB: Dialect>(
    query: &mut QueryBuilder<'a, DB>,
    tenant: TenantId,
    filter: &'a ScoreFilter,
    parts: &Parts<'_>,
) {
    let TimeSplit { days, edges } = split_time(filter.start, filter.end);
    query.push("(");
    let mut any = false;
    if let Some((first, last)) = days {
        query.push(format!(
            "SELECT {} FROM {}",
            parts.rollup_select, parts.rollup_from
        ));
        push_filters(query, "r", tenant, filter);
        if let Some(first) = first {
            query.push(" AND r.day >= ");
            DB::bind_day(query, first);
        }
        if let Some(last) = last {
            query.push(" AND r.day < ");
            DB::bind_day(query, last);
        }
        any = true;
    }
    for (start, end) in edges {
        if any {
            query.push(" UNION ALL ");
        }
        query.push(format!(
            "SELECT {} FROM {}",
            parts.facts_select, parts.facts_from
        ));
        push_filters(query, "f", tenant, filter);
        query.push(" AND f.state = 'active'");
        if !parts.facts_where.is_empty() {
            query.push(format!(" AND {}", parts.facts_where));
        }
        if let Some(start) = start {
            query.push(" AND f.first_create_time >= ");
            DB::bind_time(query, start);
        }
        if let Some(end) = end {
            query.push(" AND f.first_create_time < ");
            DB::bind_time(query, end);
        }
        any = true;
    }
    if !any {
        query.push(format!(
            "SELECT {} FROM {} WHERE false",
            parts.rollup_select, parts.rollup_from
        ));
    }
    query.push(") AS parts");
}
