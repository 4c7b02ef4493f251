//! RubricStore on SQLite. Writes run in `BEGIN IMMEDIATE` transactions on the single
//! writer connection, which stand in for PostgreSQL's row locks.

use async_trait::async_trait;
use sqlx::{SqliteConnection, types::Json};
use uuid::Uuid;

use super::time::{from_micros, now_micros, to_micros};
use super::{SqliteStore, classify};
use crate::domain::{
    rubric::{
        Criterion, DraftPatch, NewRubric, Rubric, RubricDraft, RubricState, RubricVersion,
        unpublishable_reason,
    },
    tenant::TenantId,
};
use crate::error::{Error, Result};
use crate::store::{RubricListing, RubricStore, VersionListing};

const RUBRIC_COLUMNS: &str =
    "id, display_name, description, state, latest_version, draft, create_time, update_time";

const VERSION_COLUMNS: &str = "rubric_id, version, criteria, pass_threshold, publish_time";

#[derive(sqlx::FromRow)]
struct RubricRow {
    id: Uuid,
    display_name: String,
    description: String,
    state: String,
    latest_version: i32,
    draft: Json<RubricDraft>,
    create_time: i64,
    update_time: i64,
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
            latest_version: to_version(row.latest_version)?,
            draft: row.draft.0,
            create_time: from_micros(row.create_time)?,
            update_time: from_micros(row.update_time)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    rubric_id: Uuid,
    version: i32,
    criteria: Json<Vec<Criterion>>,
    pass_threshold: f64,
    publish_time: i64,
}

impl TryFrom<VersionRow> for RubricVersion {
    type Error = Error;

    fn try_from(row: VersionRow) -> Result<Self> {
        Ok(RubricVersion {
            rubric_id: row.rubric_id,
            version: to_version(row.version)?,
            criteria: row.criteria.0,
            pass_threshold: row.pass_threshold,
            publish_time: from_micros(row.publish_time)?,
        })
    }
}

fn to_version(value: i32) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::Internal(format!("negative version {value}")))
}

fn from_version(value: u32) -> Result<i32> {
    i32::try_from(value).map_err(|_| Error::not_found("rubric version", value))
}

async fn fetch_rubric(conn: &mut SqliteConnection, tenant: TenantId, id: Uuid) -> Result<Rubric> {
    let row: Option<RubricRow> = sqlx::query_as(&format!(
        "SELECT {RUBRIC_COLUMNS} FROM rubrics WHERE tenant_id = ? AND id = ?"
    ))
    .bind(tenant.as_uuid())
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(classify)?;
    row.ok_or_else(|| Error::not_found("rubric", id))?
        .try_into()
}

async fn fetch_version(
    conn: &mut SqliteConnection,
    tenant: TenantId,
    rubric_id: Uuid,
    version: u32,
) -> Result<Option<RubricVersion>> {
    let row: Option<VersionRow> = sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} FROM rubric_versions
         WHERE tenant_id = ? AND rubric_id = ? AND version = ?"
    ))
    .bind(tenant.as_uuid())
    .bind(rubric_id)
    .bind(from_version(version)?)
    .fetch_optional(&mut *conn)
    .await
    .map_err(classify)?;
    row.map(RubricVersion::try_from).transpose()
}

fn refuse_if_archived(rubric: &Rubric) -> Result<()> {
    match rubric.state {
        RubricState::Active => Ok(()),
        RubricState::Archived => Err(Error::FailedPrecondition(format!(
            "rubric {} is archived",
            rubric.id
        ))),
    }
}

#[async_trait]
impl RubricStore for SqliteStore {
    #[tracing::instrument(name = "db.create_rubric", skip_all, fields(db.system = "sqlite"))]
    async fn create_rubric(
        &self,
        tenant: TenantId,
        request_id: Option<&str>,
        rubric: NewRubric,
    ) -> Result<Rubric> {
        let fingerprint = rubric.fingerprint();
        let mut tx = self.begin_write().await?;
        if let Some(request_id) = request_id {
            #[derive(sqlx::FromRow)]
            struct Existing {
                #[sqlx(flatten)]
                rubric: RubricRow,
                request_fingerprint: Option<Vec<u8>>,
            }
            let existing: Option<Existing> = sqlx::query_as(&format!(
                "SELECT {RUBRIC_COLUMNS}, request_fingerprint FROM rubrics
                 WHERE tenant_id = ? AND request_id = ?"
            ))
            .bind(tenant.as_uuid())
            .bind(request_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
            // The request id was used before: a retry of the same request, or a mistake.
            if let Some(existing) = existing {
                return if existing.request_fingerprint.as_deref() == Some(fingerprint.as_slice()) {
                    existing.rubric.try_into()
                } else {
                    Err(Error::AlreadyExists(format!(
                        "request_id {request_id:?} was already used for a different rubric"
                    )))
                };
            }
        }
        let now = to_micros(now_micros());
        let row: RubricRow = sqlx::query_as(&format!(
            "INSERT INTO rubrics
                 (tenant_id, id, display_name, description, state, draft, request_id,
                  request_fingerprint, create_time, update_time)
             VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?7, ?8, ?8)
             RETURNING {RUBRIC_COLUMNS}"
        ))
        .bind(tenant.as_uuid())
        .bind(Uuid::now_v7())
        .bind(&rubric.display_name)
        .bind(&rubric.description)
        .bind(Json(&rubric.draft))
        .bind(request_id)
        .bind(&fingerprint)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        row.try_into()
    }

    #[tracing::instrument(name = "db.get_rubric", skip_all, fields(db.system = "sqlite"))]
    async fn get_rubric(&self, tenant: TenantId, id: Uuid) -> Result<Rubric> {
        let mut conn = self.reader.acquire().await.map_err(classify)?;
        fetch_rubric(&mut conn, tenant, id).await
    }

    #[tracing::instrument(name = "db.list_rubrics", skip_all, fields(db.system = "sqlite"))]
    async fn list_rubrics(&self, tenant: TenantId, listing: RubricListing) -> Result<Vec<Rubric>> {
        let rows: Vec<RubricRow> = sqlx::query_as(&format!(
            "SELECT {RUBRIC_COLUMNS} FROM rubrics
             WHERE tenant_id = ?1
               AND (?2 IS NULL OR id > ?2)
               AND (?3 OR state = 'active')
             ORDER BY id
             LIMIT ?4"
        ))
        .bind(tenant.as_uuid())
        .bind(listing.after)
        .bind(listing.include_archived)
        .bind(i64::from(listing.limit))
        .fetch_all(&self.reader)
        .await
        .map_err(classify)?;
        rows.into_iter().map(Rubric::try_from).collect()
    }

    #[tracing::instrument(name = "db.update_draft", skip_all, fields(db.system = "sqlite"))]
    async fn update_draft(&self, tenant: TenantId, id: Uuid, patch: DraftPatch) -> Result<Rubric> {
        let mut tx = self.begin_write().await?;
        let mut rubric = fetch_rubric(&mut tx, tenant, id).await?;
        refuse_if_archived(&rubric)?;
        patch.apply_to(&mut rubric.draft);
        let row: RubricRow = sqlx::query_as(&format!(
            "UPDATE rubrics SET draft = ?3, update_time = ?4
             WHERE tenant_id = ?1 AND id = ?2
             RETURNING {RUBRIC_COLUMNS}"
        ))
        .bind(tenant.as_uuid())
        .bind(id)
        .bind(Json(&rubric.draft))
        .bind(to_micros(now_micros()))
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        row.try_into()
    }

    #[tracing::instrument(name = "db.publish", skip_all, fields(db.system = "sqlite"))]
    async fn publish(&self, tenant: TenantId, id: Uuid) -> Result<RubricVersion> {
        let mut tx = self.begin_write().await?;
        let rubric = fetch_rubric(&mut tx, tenant, id).await?;
        refuse_if_archived(&rubric)?;
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
        let next = from_version(rubric.latest_version + 1)?;
        let now = to_micros(now_micros());
        let row: VersionRow = sqlx::query_as(&format!(
            "INSERT INTO rubric_versions
                 (tenant_id, rubric_id, version, criteria, pass_threshold, publish_time)
             VALUES (?, ?, ?, ?, ?, ?)
             RETURNING {VERSION_COLUMNS}"
        ))
        .bind(tenant.as_uuid())
        .bind(id)
        .bind(next)
        .bind(Json(&rubric.draft.criteria))
        .bind(rubric.draft.pass_threshold)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query(
            "UPDATE rubrics SET latest_version = ?, update_time = ? WHERE tenant_id = ? AND id = ?",
        )
        .bind(next)
        .bind(now)
        .bind(tenant.as_uuid())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        row.try_into()
    }

    #[tracing::instrument(name = "db.get_version", skip_all, fields(db.system = "sqlite"))]
    async fn get_version(
        &self,
        tenant: TenantId,
        rubric_id: Uuid,
        version: Option<u32>,
    ) -> Result<RubricVersion> {
        let mut conn = self.reader.acquire().await.map_err(classify)?;
        let rubric = fetch_rubric(&mut conn, tenant, rubric_id).await?;
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

    #[tracing::instrument(name = "db.list_versions", skip_all, fields(db.system = "sqlite"))]
    async fn list_versions(
        &self,
        tenant: TenantId,
        rubric_id: Uuid,
        listing: VersionListing,
    ) -> Result<Vec<RubricVersion>> {
        let mut conn = self.reader.acquire().await.map_err(classify)?;
        // Reading the rubric first tells an unknown rubric from one without versions.
        fetch_rubric(&mut conn, tenant, rubric_id).await?;
        let before = listing.before.map(from_version).transpose()?;
        let rows: Vec<VersionRow> = sqlx::query_as(&format!(
            "SELECT {VERSION_COLUMNS} FROM rubric_versions
             WHERE tenant_id = ?1 AND rubric_id = ?2 AND (?3 IS NULL OR version < ?3)
             ORDER BY version DESC
             LIMIT ?4"
        ))
        .bind(tenant.as_uuid())
        .bind(rubric_id)
        .bind(before)
        .bind(i64::from(listing.limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
        rows.into_iter().map(RubricVersion::try_from).collect()
    }

    #[tracing::instrument(name = "db.archive", skip_all, fields(db.system = "sqlite"))]
    async fn archive(&self, tenant: TenantId, id: Uuid) -> Result<Rubric> {
        let mut tx = self.begin_write().await?;
        let rubric = fetch_rubric(&mut tx, tenant, id).await?;
        if rubric.state == RubricState::Archived {
            return Ok(rubric);
        }
        let row: RubricRow = sqlx::query_as(&format!(
            "UPDATE rubrics SET state = 'archived', update_time = ?3
             WHERE tenant_id = ?1 AND id = ?2
             RETURNING {RUBRIC_COLUMNS}"
        ))
        .bind(tenant.as_uuid())
        .bind(id)
        .bind(to_micros(now_micros()))
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        row.try_into()
    }
}
