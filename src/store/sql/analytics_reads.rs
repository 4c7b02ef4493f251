//! AnalyticsReads, once for both databases: the statements come from
//! `store/score_query.rs` and the backend's `ScoreDialect`.

use async_trait::async_trait;
use chrono::NaiveDate;
use sqlx::types::Json;
use uuid::Uuid;

use super::{SqlBackend, Stamp, sql};
use crate::domain::analytics::{Dimension, Interval, ScoreFilter, Totals};
use crate::domain::evaluation::EvaluationEvent;
use crate::domain::tenant::TenantId;
use crate::error::{Error, Result};
use crate::store::score_query::{
    Breakdown, MAX_DIMENSIONS, breakdown_statement, group_totals_statement, push_filters,
};
use crate::store::sql::Record;
use crate::store::{AnalyticsReads, CriterionTotals, GroupTotals, RootCauseTotals, SectionTotals};

/// A row of `group_totals_statement`.
#[derive(sqlx::FromRow)]
struct GroupRow {
    d0: Option<String>,
    d1: Option<String>,
    d2: Option<String>,
    d3: Option<String>,
    d4: Option<String>,
    d5: Option<String>,
    bucket: Option<String>,
    evaluation_count: i64,
    scored_count: i64,
    score_sum: f64,
    passed_count: i64,
    critical_fail_count: i64,
    csat_sum: i64,
    csat_count: i64,
}

impl GroupRow {
    fn into_totals(self, dimensions: usize) -> Result<GroupTotals> {
        let values = [self.d0, self.d1, self.d2, self.d3, self.d4, self.d5];
        let dimensions = values
            .into_iter()
            .take(dimensions.min(MAX_DIMENSIONS))
            .map(|value| {
                value.ok_or_else(|| Error::Internal("a group without its dimension".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        let bucket_start = self
            .bucket
            .map(|day| {
                // PostgreSQL's text of a timestamp carries a time after the day.
                NaiveDate::parse_from_str(&day[..day.len().min(10)], "%Y-%m-%d")
                    .map(|day| day.and_time(chrono::NaiveTime::MIN).and_utc())
                    .map_err(|err| Error::Internal(format!("bucket {day:?}: {err}")))
            })
            .transpose()?;
        Ok(GroupTotals {
            dimensions,
            bucket_start,
            totals: Totals {
                evaluation_count: self.evaluation_count,
                scored_count: self.scored_count,
                score_sum: self.score_sum,
                passed_count: self.passed_count,
                critical_fail_count: self.critical_fail_count,
                csat_sum: self.csat_sum,
                csat_count: self.csat_count,
            },
        })
    }
}

async fn aggregate<B: SqlBackend, T: Record>(
    backend: &B,
    tenant: TenantId,
    filter: &ScoreFilter,
    breakdown: &Breakdown,
) -> Result<Vec<T>> {
    backend
        .analytics_read()
        .await?
        .fetch_all(breakdown_statement(tenant, filter, breakdown))
        .await
}

#[async_trait]
impl<B: SqlBackend> AnalyticsReads for B {
    #[tracing::instrument(name = "db.group_totals", skip_all, fields(db.system = B::SYSTEM))]
    async fn group_totals(
        &self,
        tenant: TenantId,
        filter: &ScoreFilter,
        group_by: &[Dimension],
        interval: Interval,
    ) -> Result<Vec<GroupTotals>> {
        let statement = group_totals_statement(B::SCORES, tenant, filter, group_by, interval);
        let rows: Vec<GroupRow> = self.analytics_read().await?.fetch_all(statement).await?;
        rows.into_iter()
            .map(|row| row.into_totals(group_by.len()))
            .collect()
    }

    #[tracing::instrument(name = "db.section_totals", skip_all, fields(db.system = B::SYSTEM))]
    async fn section_totals(
        &self,
        tenant: TenantId,
        filter: &ScoreFilter,
    ) -> Result<Vec<SectionTotals>> {
        aggregate(self, tenant, filter, &B::SCORES.section_totals).await
    }

    #[tracing::instrument(name = "db.criterion_totals", skip_all, fields(db.system = B::SYSTEM))]
    async fn criterion_totals(
        &self,
        tenant: TenantId,
        filter: &ScoreFilter,
    ) -> Result<Vec<CriterionTotals>> {
        aggregate(self, tenant, filter, &B::SCORES.criterion_totals).await
    }

    #[tracing::instrument(name = "db.root_cause_totals", skip_all, fields(db.system = B::SYSTEM))]
    async fn root_cause_totals(
        &self,
        tenant: TenantId,
        filter: &ScoreFilter,
    ) -> Result<Vec<RootCauseTotals>> {
        aggregate(self, tenant, filter, &B::SCORES.root_cause_totals).await
    }

    #[tracing::instrument(name = "db.export_page", skip_all, fields(db.system = B::SYSTEM))]
    async fn export_page(
        &self,
        tenant: TenantId,
        filter: &ScoreFilter,
        include_deleted: bool,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<EvaluationEvent>> {
        let mut statement = push_filters(
            sql("SELECT f.event FROM evaluation_facts f"),
            "f",
            tenant,
            filter,
        );
        if !include_deleted {
            statement = statement.push(" AND f.state = 'active'");
        }
        if let Some(start) = filter.start {
            statement = statement
                .push(" AND f.first_create_time >= ")
                .push_bind(Stamp(start));
        }
        if let Some(end) = filter.end {
            statement = statement
                .push(" AND f.first_create_time < ")
                .push_bind(Stamp(end));
        }
        if let Some(after) = after {
            statement = statement.push(" AND f.evaluation_id > ").push_bind(after);
        }
        let statement = statement
            .push(" ORDER BY f.evaluation_id LIMIT ")
            .push_bind(i64::from(limit));
        let rows: Vec<(Json<EvaluationEvent>,)> =
            self.analytics_read().await?.fetch_all(statement).await?;
        Ok(rows.into_iter().map(|(event,)| event.0).collect())
    }
}
