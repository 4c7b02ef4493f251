//! What AutoQA's agreement with people reads, written once for both databases.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::{SqlBackend, sql, stamp::Stamp};
use crate::domain::{scoring::CriterionScore, tenant::TenantId};
use crate::error::Result;
use crate::store::{AutoQaCursor, AutoQaReads, KindScores};

#[derive(sqlx::FromRow)]
struct KindScoresRow {
    interaction_id: Uuid,
    kind: String,
    criterion_scores: Json<Vec<CriterionScore>>,
}

#[derive(sqlx::FromRow)]
struct CursorRow {
    time: Stamp,
    tenant_id: Uuid,
    id: Uuid,
}

impl From<CursorRow> for AutoQaCursor {
    fn from(row: CursorRow) -> Self {
        Self {
            time: row.time.into(),
            tenant: TenantId(row.tenant_id),
            interaction_id: row.id,
        }
    }
}

#[async_trait]
impl<B: SqlBackend> AutoQaReads for B {
    #[tracing::instrument(name = "db.auto_scored_rubrics", skip_all, fields(db.system = B::SYSTEM))]
    async fn auto_scored_rubrics(&self) -> Result<Vec<(TenantId, Uuid, u32)>> {
        let rows: Vec<(Uuid, Uuid, i32)> = self
            .read()
            .await?
            .fetch_all(sql(
                "SELECT r.tenant_id, r.id, r.latest_version FROM rubrics r
                 JOIN rubric_versions v ON v.tenant_id = r.tenant_id AND v.rubric_id = r.id
                                       AND v.version = r.latest_version
                 WHERE r.state = 'active' AND v.auto_score
                 ORDER BY r.tenant_id, r.id",
            ))
            .await?;
        Ok(rows
            .into_iter()
            .map(|(tenant, rubric, version)| {
                (
                    TenantId(tenant),
                    rubric,
                    u32::try_from(version).unwrap_or(0),
                )
            })
            .collect())
    }

    #[tracing::instrument(name = "db.interactions_changed", skip_all, fields(db.system = B::SYSTEM))]
    async fn interactions_changed(
        &self,
        after: AutoQaCursor,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<AutoQaCursor>> {
        let rows: Vec<CursorRow> = self
            .read()
            .await?
            .fetch_all(
                sql("SELECT update_time AS time, tenant_id, id FROM interactions
                     WHERE (update_time, tenant_id, id) > ($1, $2, $3) AND update_time < $4
                       AND CAST(messages AS TEXT) <> '[]'
                     ORDER BY update_time, tenant_id, id
                     LIMIT $5")
                .bind(Stamp(after.time))
                .bind(after.tenant)
                .bind(after.interaction_id)
                .bind(Stamp(before))
                .bind(i64::from(limit)),
            )
            .await?;
        Ok(rows.into_iter().map(AutoQaCursor::from).collect())
    }

    async fn autoqa_cursor(&self) -> Result<AutoQaCursor> {
        let row: CursorRow = self
            .read()
            .await?
            .fetch_one(sql(
                "SELECT last_time AS time, last_tenant AS tenant_id, last_id AS id FROM autoqa_cursor",
            ))
            .await?;
        Ok(row.into())
    }

    async fn save_autoqa_cursor(&self, cursor: AutoQaCursor) -> Result<()> {
        let mut tx = self.write().await?;
        tx.execute(
            sql("UPDATE autoqa_cursor SET last_time = $1, last_tenant = $2, last_id = $3")
                .bind(Stamp(cursor.time))
                .bind(cursor.tenant)
                .bind(cursor.interaction_id),
        )
        .await?;
        tx.commit().await
    }

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
