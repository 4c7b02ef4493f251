//! RubricStore, once for both databases.

use async_trait::async_trait;
use sqlx::types::Json;
use uuid::Uuid;

use super::{Conn, SqlBackend, Stamp, Value, created_before, sql};
use crate::domain::{
    rubric::{
        Criterion, DraftPatch, NewRubric, Rubric, RubricDraft, RubricState, RubricVersion,
        unpublishable_reason,
    },
    tenant::TenantId,
};
use crate::error::{Error, Result};
use crate::store::evaluation_rows::{rubric_version, unsigned};
use crate::store::{RubricListing, RubricStore, VersionListing};

const RUBRIC_COLUMNS: &str =
    "id, display_name, description, state, latest_version, draft, create_time, update_time";

const VERSION_COLUMNS: &str =
    "rubric_id, version, criteria, pass_threshold, publish_time, auto_score";

#[derive(sqlx::FromRow)]
struct RubricRow {
    id: Uuid,
    display_name: String,
    description: String,
    state: String,
    latest_version: i32,
    draft: Json<RubricDraft>,
    create_time: Stamp,
    update_time: Stamp,
}

impl TryFrom<RubricRow> for Rubric {
    type Error = Error;

    fn try_from(row: RubricRow) -> Result<Self> {
        let state = match row.state.as_str() {
            "active" => RubricState::Active,
            "archived" => RubricState::Archived,
            other => return Err(Error::Internal(format!("unknown rubric state {other:?}"))),
        };
        Ok(Rubric {
            id: row.id,
            display_name: row.display_name,
            description: row.description,
            state,
            latest_version: unsigned(row.latest_version)?,
            draft: row.draft.0,
            create_time: row.create_time.into(),
            update_time: row.update_time.into(),
        })
    }
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    rubric_id: Uuid,
    version: i32,
    criteria: Json<Vec<Criterion>>,
    pass_threshold: f64,
    publish_time: Stamp,
    auto_score: bool,
}

impl TryFrom<VersionRow> for RubricVersion {
    type Error = Error;

    fn try_from(row: VersionRow) -> Result<Self> {
        Ok(RubricVersion {
            rubric_id: row.rubric_id,
            version: unsigned(row.version)?,
            criteria: row.criteria.0,
            pass_threshold: row.pass_threshold,
            publish_time: row.publish_time.into(),
            auto_score: row.auto_score,
        })
    }
}

/// The rubric, locked until the transaction ends when `lock` is the backend's clause.
async fn fetch_rubric(conn: &mut Conn, tenant: TenantId, id: Uuid, lock: &str) -> Result<Rubric> {
    let row: Option<RubricRow> = conn
        .fetch_optional(
            sql(format!(
                "SELECT {RUBRIC_COLUMNS} FROM rubrics WHERE tenant_id = $1 AND id = $2{lock}"
            ))
            .bind(tenant)
            .bind(id),
        )
        .await?;
    row.ok_or_else(|| Error::not_found("rubric", id))?
        .try_into()
}

async fn fetch_version(
    conn: &mut Conn,
    tenant: TenantId,
    rubric_id: Uuid,
    version: u32,
) -> Result<Option<RubricVersion>> {
    let row: Option<VersionRow> = conn
        .fetch_optional(
            sql(format!(
                "SELECT {VERSION_COLUMNS} FROM rubric_versions
                 WHERE tenant_id = $1 AND rubric_id = $2 AND version = $3"
            ))
            .bind(tenant)
            .bind(rubric_id)
            .bind(rubric_version(version)?),
        )
        .await?;
    row.map(RubricVersion::try_from).transpose()
}

#[async_trait]
impl<B: SqlBackend> RubricStore for B {
    #[tracing::instrument(name = "db.create_rubric", skip_all, fields(db.system = B::SYSTEM))]
    async fn create_rubric(
        &self,
        tenant: TenantId,
        request_id: Option<&str>,
        rubric: NewRubric,
    ) -> Result<Rubric> {
        let fingerprint = rubric.fingerprint();
        let now = Stamp::now();
        let mut tx = self.write().await?;
        let inserted: Option<RubricRow> = tx
            .fetch_optional(
                sql(format!(
                    "INSERT INTO rubrics
                         (tenant_id, id, display_name, description, state, draft, request_id,
                          request_fingerprint, create_time, update_time)
                     VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $8)
                     ON CONFLICT (tenant_id, request_id) WHERE request_id IS NOT NULL DO NOTHING
                     RETURNING {RUBRIC_COLUMNS}"
                ))
                .bind(tenant)
                .bind(Uuid::now_v7())
                .bind(rubric.display_name.as_str())
                .bind(rubric.description.as_str())
                .bind(Value::json(&rubric.draft)?)
                .bind(request_id)
                .bind(fingerprint.as_slice())
                .bind(now),
            )
            .await?;
        if let Some(row) = inserted {
            tx.commit().await?;
            return row.try_into();
        }
        // The request id was used before: a retry of the same request, or a mistake.
        let existing: RubricRow = created_before(
            &mut tx.link(),
            &format!(
                "SELECT {RUBRIC_COLUMNS}, request_fingerprint FROM rubrics
                 WHERE tenant_id = $1 AND request_id = $2"
            ),
            tenant,
            request_id,
            &fingerprint,
            "rubric",
        )
        .await?;
        existing.try_into()
    }

    #[tracing::instrument(name = "db.get_rubric", skip_all, fields(db.system = B::SYSTEM))]
    async fn get_rubric(&self, tenant: TenantId, id: Uuid) -> Result<Rubric> {
        fetch_rubric(&mut self.read().await?, tenant, id, "").await
    }

    #[tracing::instrument(name = "db.list_rubrics", skip_all, fields(db.system = B::SYSTEM))]
    async fn list_rubrics(&self, tenant: TenantId, listing: RubricListing) -> Result<Vec<Rubric>> {
        let rows: Vec<RubricRow> = self
            .read()
            .await?
            .fetch_all(
                sql(format!(
                    "SELECT {RUBRIC_COLUMNS} FROM rubrics
                     WHERE tenant_id = $1
                       AND ($2 IS NULL OR id > $2)
                       AND ($3 OR state = 'active')
                     ORDER BY id
                     LIMIT $4"
                ))
                .bind(tenant)
                .bind(listing.after)
                .bind(listing.include_archived)
                .bind(i64::from(listing.limit)),
            )
            .await?;
        rows.into_iter().map(Rubric::try_from).collect()
    }

    #[tracing::instrument(name = "db.update_draft", skip_all, fields(db.system = B::SYSTEM))]
    async fn update_draft(&self, tenant: TenantId, id: Uuid, patch: DraftPatch) -> Result<Rubric> {
        let mut tx = self.write().await?;
        let mut rubric = fetch_rubric(&mut tx, tenant, id, B::LOCK_ROWS).await?;
        rubric.ensure_active()?;
        patch.apply_to(&mut rubric.draft);
        let row: RubricRow = tx
            .fetch_one(
                sql(format!(
                    "UPDATE rubrics SET draft = $3, update_time = $4
                     WHERE tenant_id = $1 AND id = $2
                     RETURNING {RUBRIC_COLUMNS}"
                ))
                .bind(tenant)
                .bind(id)
                .bind(Value::json(&rubric.draft)?)
                .bind(Stamp::now()),
            )
            .await?;
        tx.commit().await?;
        row.try_into()
    }

    #[tracing::instrument(name = "db.publish", skip_all, fields(db.system = B::SYSTEM))]
    async fn publish(&self, tenant: TenantId, id: Uuid) -> Result<RubricVersion> {
        let mut tx = self.write().await?;
        let rubric = fetch_rubric(&mut tx, tenant, id, B::LOCK_ROWS).await?;
        rubric.ensure_active()?;
        if let Some(reason) = unpublishable_reason(&rubric.draft) {
            return Err(Error::FailedPrecondition(reason.to_owned()));
        }
        if rubric.latest_version > 0 {
            let latest = fetch_version(&mut tx, tenant, id, rubric.latest_version)
                .await?
                .ok_or_else(|| Error::Internal(format!("rubric {id} lost its latest version")))?;
            if latest.froze(&rubric.draft) {
                return Ok(latest);
            }
        }
        let next = rubric_version(rubric.latest_version + 1)?;
        let now = Stamp::now();
        let row: VersionRow = tx
            .fetch_one(
                sql(format!(
                    "INSERT INTO rubric_versions
                         (tenant_id, rubric_id, version, criteria, pass_threshold, publish_time,
                          auto_score)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     RETURNING {VERSION_COLUMNS}"
                ))
                .bind(tenant)
                .bind(id)
                .bind(next)
                .bind(Value::json(&rubric.draft.criteria)?)
                .bind(rubric.draft.pass_threshold)
                .bind(now)
                .bind(rubric.draft.auto_score),
            )
            .await?;
        tx.execute(
            sql("UPDATE rubrics SET latest_version = $3, update_time = $4
                 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .bind(next)
            .bind(now),
        )
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    #[tracing::instrument(name = "db.get_version", skip_all, fields(db.system = B::SYSTEM))]
    async fn get_version(
        &self,
        tenant: TenantId,
        rubric_id: Uuid,
        version: Option<u32>,
    ) -> Result<RubricVersion> {
        let mut conn = self.read().await?;
        // One statement when the version exists: every submission naming no version asks
        // for the latest. The reads below only tell why there is none.
        let found: Option<VersionRow> = conn
            .fetch_optional(
                sql(format!(
                    "SELECT {VERSION_COLUMNS} FROM rubric_versions
                     WHERE tenant_id = $1 AND rubric_id = $2
                       AND version = COALESCE($3, (SELECT latest_version FROM rubrics
                                                   WHERE tenant_id = $1 AND id = $2))"
                ))
                .bind(tenant)
                .bind(rubric_id)
                .bind(version.map(rubric_version).transpose()?),
            )
            .await?;
        if let Some(found) = found {
            return found.try_into();
        }
        let rubric = fetch_rubric(&mut conn, tenant, rubric_id, "").await?;
        let wanted = match version {
            Some(version) => version,
            None if rubric.latest_version == 0 => {
                return Err(Error::FailedPrecondition(format!(
                    "rubric {rubric_id} has no published version yet"
                )));
            }
            None => rubric.latest_version,
        };
        fetch_version(&mut conn, tenant, rubric_id, wanted)
            .await?
            .ok_or_else(|| {
                Error::not_found(
                    "rubric version",
                    format!("{rubric_id}@{}", version.unwrap_or_default()),
                )
            })
    }

    #[tracing::instrument(name = "db.list_versions", skip_all, fields(db.system = B::SYSTEM))]
    async fn list_versions(
        &self,
        tenant: TenantId,
        rubric_id: Uuid,
        listing: VersionListing,
    ) -> Result<Vec<RubricVersion>> {
        let mut conn = self.read().await?;
        // Reading the rubric first tells an unknown rubric from one without versions.
        fetch_rubric(&mut conn, tenant, rubric_id, "").await?;
        let before = listing.before.map(rubric_version).transpose()?;
        let rows: Vec<VersionRow> = conn
            .fetch_all(
                sql(format!(
                    "SELECT {VERSION_COLUMNS} FROM rubric_versions
                     WHERE tenant_id = $1 AND rubric_id = $2 AND ($3 IS NULL OR version < $3)
                     ORDER BY version DESC
                     LIMIT $4"
                ))
                .bind(tenant)
                .bind(rubric_id)
                .bind(before)
                .bind(i64::from(listing.limit)),
            )
            .await?;
        rows.into_iter().map(RubricVersion::try_from).collect()
    }

    #[tracing::instrument(name = "db.archive", skip_all, fields(db.system = B::SYSTEM))]
    async fn archive(&self, tenant: TenantId, id: Uuid) -> Result<Rubric> {
        let mut tx = self.write().await?;
        let rubric = fetch_rubric(&mut tx, tenant, id, B::LOCK_ROWS).await?;
        if rubric.state == RubricState::Archived {
            return Ok(rubric);
        }
        let row: RubricRow = tx
            .fetch_one(
                sql(format!(
                    "UPDATE rubrics SET state = 'archived', update_time = $3
                     WHERE tenant_id = $1 AND id = $2
                     RETURNING {RUBRIC_COLUMNS}"
                ))
                .bind(tenant)
                .bind(id)
                .bind(Stamp::now()),
            )
            .await?;
        tx.commit().await?;
        row.try_into()
    }
}
