//! What AutoQA's agreement with people reads, written once for both databases.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::{SqlBackend, sql, stamp::Stamp};
use crate::domain::{scoring::CriterionScore, tenant::TenantId};
use crate::error::Result;
use crate::store::{AutoQaReads, KindScores};

#[derive(sqlx::FromRow)]
struct KindScoresRow {
    interaction_id: Uuid,
    kind: String,
    criterion_scores: Json<Vec<CriterionScore>>,
}

#[async_trait]
impl<B: SqlBackend> AutoQaReads for B {
    #[tracing::instrument(name = "db.manual_and_automated", skip_all, fields(db.system = B::SYSTEM))]
    async fn manual_and_automated(
        &self,
        tenant: TenantId,
        rubric_id: Uuid,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Vec<KindScores>> {
        let mut statement = sql(
            "SELECT interaction_id, kind, criterion_scores FROM evaluations
             WHERE tenant_id = $1 AND rubric_id = $2 AND state = 'active'
               AND kind IN ('manual', 'automated')
               AND interaction_id IN (
                   SELECT interaction_id FROM evaluations
                   WHERE tenant_id = $1 AND rubric_id = $2 AND state = 'active'
                     AND kind = 'automated')",
        )
        .bind(tenant)
        .bind(rubric_id);
        if let Some(start) = start {
            statement = statement
                .push(" AND first_create_time >= ")
                .push_bind(Stamp(start));
        }
        if let Some(end) = end {
            statement = statement
                .push(" AND first_create_time < ")
                .push_bind(Stamp(end));
        }
        let rows: Vec<KindScoresRow> = self
            .read()
            .await?
            .fetch_all(statement.push(" ORDER BY interaction_id, first_create_time, id"))
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| KindScores {
                interaction_id: row.interaction_id,
                automated: row.kind == "automated",
                criterion_scores: row.criterion_scores.0,
            })
            .collect())
    }
}
