//! RubricStore on PostgreSQL (schema `rubric`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, types::Json};
use uuid::Uuid;

use super::{PostgresStore, classify};
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

#[derive(sqlx::FromRow)]
struct RubricRow {
    id: Uuid,
    display_name: String,
    description: String,
    state: String,
    latest_version: i32,
    draft: Json<RubricDraft>,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
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
            create_time: row.create_time,
            update_time: row.update_time,
        })
    }
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    rubric_id: Uuid,
    version: i32,
    criteria: Json<Vec<Criterion>>,
    pass_threshold: f64,
    publish_time: DateTime<Utc>,
}

impl TryFrom<VersionRow> for RubricVersion {
    type Error = Error;

    fn try_from(row: VersionRow) -> Result<Self> {
        Ok(RubricVersion {
            rubric_id: row.rubric_id,
            version: to_version(row.version)?,
            criteria: row.criteria.0,
            pass_threshold: row.pass_threshold,
            publish_time: row.publish_time,
        })
    }
}

fn to_version(value: i32) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::Internal(format!("negative version {value}")))
}

fn from_version(value: u32) -> Result<i32> {
    i32::try_from(value).map_err(|_| Error::not_found("rubric version", value))
}

async fn lock_rubric(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Rubric> {
    let row: Option<RubricRow> = sqlx::query_as(&format!(
        "SELECT {RUBRIC_COLUMNS} FROM rubric.rubrics WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
    ))
    .bind(tenant.as_uuid())
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(classify)?;
    row.ok_or_else(|| Error::not_found("rubric", id))?
        .try_into()
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
impl RubricStore for PostgresStore {
    #[tracing::instrument(name = "db.create_rubric", skip_all, fields(db.system = "postgresql"))]
    async fn create_rubric(
        &self,
        tenant: TenantId,
        request_id: Option<&str>,
        rubric: NewRubric,
    ) -> Result<Rubric> {
        let fingerprint = rubric.fingerprint();
        let inserted: Option<RubricRow> = sqlx::query_as(&format!(
            "INSERT INTO rubric.rubrics
                 (tenant_id, id, display_name, description, state, draft, request_id, request_fingerprint)
             VALUES ($1, $2, $3, $4, 'active', $5, $6, $7)
             ON CONFLICT (tenant_id, request_id) WHERE request_id IS NOT NULL DO NOTHING
             RETURNING {RUBRIC_COLUMNS}"
        ))
        .bind(tenant.as_uuid())
        .bind(Uuid::now_v7())
        .bind(&rubric.display_name)
        .bind(&rubric.description)
        .bind(Json(&rubric.draft))
        .bind(request_id)
        .bind(&fingerprint)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        if let Some(row) = inserted {
            return row.try_into();
        }
        // The request id was used before: a retry of the same request, or a mistake.
        let (row, stored_fingerprint): (RubricRow, Option<Vec<u8>>) = {
            #[derive(sqlx::FromRow)]
            struct Existing {
                #[sqlx(flatten)]
                rubric: RubricRow,
                request_fingerprint: Option<Vec<u8>>,
            }
            let existing: Existing = sqlx::query_as(&format!(
                "SELECT {RUBRIC_COLUMNS}, request_fingerprint FROM rubric.rubrics
                 WHERE tenant_id = $1 AND request_id = $2"
            ))
            .bind(tenant.as_uuid())
            .bind(request_id)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
            (existing.rubric, existing.request_fingerprint)
        };
        if stored_fingerprint.as_deref() == Some(fingerprint.as_slice()) {
            row.try_into()
        } else {
            Err(Error::AlreadyExists(format!(
                "request_id {:?} was already used for a different rubric",
                request_id.unwrap_or_default()
            )))
        }
    }

    #[tracing::instrument(name = "db.get_rubric", skip_all, fields(db.system = "postgresql"))]
    async fn get_rubric(&self, tenant: TenantId, id: Uuid) -> Result<Rubric> {
        let row: Option<RubricRow> = sqlx::query_as(&format!(
            "SELECT {RUBRIC_COLUMNS} FROM rubric.rubrics WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.as_uuid())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.ok_or_else(|| Error::not_found("rubric", id))?
            .try_into()
    }

    #[tracing::instrument(name = "db.list_rubrics", skip_all, fields(db.system = "postgresql"))]
    async fn list_rubrics(&self, tenant: TenantId, listing: RubricListing) -> Result<Vec<Rubric>> {
        let rows: Vec<RubricRow> = sqlx::query_as(&format!(
            "SELECT {RUBRIC_COLUMNS} FROM rubric.rubrics
             WHERE tenant_id = $1
               AND ($2::uuid IS NULL OR id > $2)
               AND ($3 OR state = 'active')
             ORDER BY id
             LIMIT $4"
        ))
        .bind(tenant.as_uuid())
        .bind(listing.after)
        .bind(listing.include_archived)
        .bind(i64::from(listing.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.into_iter().map(Rubric::try_from).collect()
    }

    #[tracing::instrument(name = "db.update_draft", skip_all, fields(db.system = "postgresql"))]
    async fn update_draft(&self, tenant: TenantId, id: Uuid, patch: DraftPatch) -> Result<Rubric> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let mut rubric = lock_rubric(&mut tx, tenant, id).await?;
        refuse_if_archived(&rubric)?;
        patch.apply_to(&mut rubric.draft);
        let row: RubricRow = sqlx::query_as(&format!(
            "UPDATE rubric.rubrics SET draft = $3, update_time = now()
             WHERE tenant_id = $1 AND id = $2
             RETURNING {RUBRIC_COLUMNS}"
        ))
        .bind(tenant.as_uuid())
        .bind(id)
        .bind(Json(&rubric.draft))
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        row.try_into()
    }

    #[tracing::instrument(name = "db.publish", skip_all, fields(db.system = "postgresql"))]
    async fn publish(&self, tenant: TenantId, id: Uuid) -> Result<RubricVersion> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let rubric = lock_rubric(&mut tx, tenant, id).await?;
        refuse_if_archived(&rubric)?;
        if let Some(reason) = unpublishable_reason(&rubric.draft) {
            return Err(Error::FailedPrecondition(reason.to_owned()));
        }
        if rubric.latest_version > 0 {
            let latest = fetch_version(&mut tx, tenant, id, rubric.latest_version).await?;
            if latest.froze(&rubric.draft) {
                return Ok(latest);
            }
        }
        let next = rubric.latest_version + 1;
        let row: VersionRow = sqlx::query_as(
            "INSERT INTO rubric.rubric_versions (tenant_id, rubric_id, version, criteria, pass_threshold)
             VALUES ($1, $2, $3, $4, $5)
             RETURNING rubric_id, version, criteria, pass_threshold, publish_time",
        )
        .bind(tenant.as_uuid())
        .bind(id)
        .bind(from_version(next)?)
        .bind(Json(&rubric.draft.criteria))
        .bind(rubric.draft.pass_threshold)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query(
            "UPDATE rubric.rubrics SET latest_version = $3, update_time = now()
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.as_uuid())
        .bind(id)
        .bind(from_version(next)?)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        row.try_into()
    }

    #[tracing::instrument(name = "db.get_version", skip_all, fields(db.system = "postgresql"))]
    async fn get_version(
        &self,
        tenant: TenantId,
        rubric_id: Uuid,
        version: Option<u32>,
    ) -> Result<RubricVersion> {
        #[derive(sqlx::FromRow)]
        struct Lookup {
            latest_version: i32,
            version: Option<i32>,
            criteria: Option<Json<Vec<Criterion>>>,
            pass_threshold: Option<f64>,
            publish_time: Option<DateTime<Utc>>,
        }
        let requested = version.map(from_version).transpose()?;
        let lookup: Option<Lookup> = sqlx::query_as(
            "SELECT r.latest_version, v.version, v.criteria, v.pass_threshold, v.publish_time
             FROM rubric.rubrics r
             LEFT JOIN rubric.rubric_versions v
               ON v.tenant_id = r.tenant_id AND v.rubric_id = r.id
              AND v.version = COALESCE($3, r.latest_version)
             WHERE r.tenant_id = $1 AND r.id = $2",
        )
        .bind(tenant.as_uuid())
        .bind(rubric_id)
        .bind(requested)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        let lookup = lookup.ok_or_else(|| Error::not_found("rubric", rubric_id))?;
        match (
            lookup.version,
            lookup.criteria,
            lookup.pass_threshold,
            lookup.publish_time,
        ) {
            (Some(found), Some(criteria), Some(pass_threshold), Some(publish_time)) => {
                Ok(RubricVersion {
                    rubric_id,
                    version: to_version(found)?,
                    criteria: criteria.0,
                    pass_threshold,
                    publish_time,
                })
            }
            _ if requested.is_none() && lookup.latest_version == 0 => {
                Err(Error::FailedPrecondition(format!(
                    "rubric {rubric_id} has no published version yet"
                )))
            }
            _ => Err(Error::not_found(
                "rubric version",
                format!("{rubric_id}@{}", version.unwrap_or_default()),
            )),
        }
    }

    #[tracing::instrument(name = "db.list_versions", skip_all, fields(db.system = "postgresql"))]
    async fn list_versions(
        &self,
        tenant: TenantId,
        rubric_id: Uuid,
        listing: VersionListing,
    ) -> Result<Vec<RubricVersion>> {
        // Reading the rubric first tells an unknown rubric from one without versions.
        self.get_rubric(tenant, rubric_id).await?;
        let before = listing.before.map(from_version).transpose()?;
        let rows: Vec<VersionRow> = sqlx::query_as(
            "SELECT rubric_id, version, criteria, pass_threshold, publish_time
             FROM rubric.rubric_versions
             WHERE tenant_id = $1 AND rubric_id = $2 AND ($3::integer IS NULL OR version < $3)
             ORDER BY version DESC
             LIMIT $4",
        )
        .bind(tenant.as_uuid())
        .bind(rubric_id)
        .bind(before)
        .bind(i64::from(listing.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.into_iter().map(RubricVersion::try_from).collect()
    }

    #[tracing::instrument(name = "db.archive", skip_all, fields(db.system = "postgresql"))]
    async fn archive(&self, tenant: TenantId, id: Uuid) -> Result<Rubric> {
        let row: Option<RubricRow> = sqlx::query_as(&format!(
            "WITH archived AS (
                 UPDATE rubric.rubrics SET state = 'archived', update_time = now()
                 WHERE tenant_id = $1 AND id = $2 AND state = 'active'
                 RETURNING {RUBRIC_COLUMNS}
             )
             SELECT {RUBRIC_COLUMNS} FROM archived
             UNION ALL
             SELECT {RUBRIC_COLUMNS} FROM rubric.rubrics
             WHERE tenant_id = $1 AND id = $2 AND state = 'archived'"
        ))
        .bind(tenant.as_uuid())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.ok_or_else(|| Error::not_found("rubric", id))?
            .try_into()
    }
}

async fn fetch_version(
    conn: &mut PgConnection,
    tenant: TenantId,
    rubric_id: Uuid,
    version: u32,
) -> Result<RubricVersion> {
    let row: Option<VersionRow> = sqlx::query_as(
        "SELECT rubric_id, version, criteria, pass_threshold, publish_time
         FROM rubric.rubric_versions WHERE tenant_id = $1 AND rubric_id = $2 AND version = $3",
    )
    .bind(tenant.as_uuid())
    .bind(rubric_id)
    .bind(from_version(version)?)
    .fetch_optional(&mut *conn)
    .await
    .map_err(classify)?;
    row.ok_or_else(|| Error::not_found("rubric version", format!("{rubric_id}@{version}")))?
        .try_into()
}
