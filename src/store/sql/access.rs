//! AccessStore, once for both databases (tenants, API keys, the audit log, secrets).

use async_trait::async_trait;
use uuid::Uuid;

use super::{Conn, SqlBackend, Stamp, sql};
use crate::domain::{access::Role, tenant::TenantId};
use crate::error::{Error, Result};
use crate::store::{
    AccessStore, ApiKeyRecord, AuditEntry, KeyBinding, Tenant, new_deployment_secret,
};

#[derive(sqlx::FromRow)]
struct KeyRow {
    tenant_id: Uuid,
    name: String,
    key_id: Uuid,
    secret_hash: Vec<u8>,
    role: String,
    agent_id: Option<String>,
    reviewer_id: Option<String>,
    create_time: Stamp,
    revoke_time: Option<Stamp>,
}

impl TryFrom<KeyRow> for ApiKeyRecord {
    type Error = Error;

    fn try_from(row: KeyRow) -> Result<Self> {
        Ok(ApiKeyRecord {
            tenant: TenantId(row.tenant_id),
            tenant_name: row.name,
            key_id: row.key_id,
            secret_hash: row.secret_hash,
            role: parse_role(&row.role)?,
            agent_id: row.agent_id,
            reviewer_id: row.reviewer_id,
            create_time: row.create_time.into(),
            revoke_time: row.revoke_time.map(Into::into),
        })
    }
}

fn parse_role(role: &str) -> Result<Role> {
    Role::parse(role).ok_or_else(|| Error::Internal(format!("unknown role {role:?}")))
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    tenant_id: Uuid,
    name: String,
    create_time: Stamp,
}

impl From<TenantRow> for Tenant {
    fn from(row: TenantRow) -> Self {
        Tenant {
            id: TenantId(row.tenant_id),
            name: row.name,
            create_time: row.create_time.into(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    tenant_id: Uuid,
    key_id: Option<Uuid>,
    role: String,
    rpc: String,
    request_id: String,
    status_code: i32,
    time: Stamp,
}

const KEY_SELECT: &str = "SELECT k.tenant_id, t.name, k.key_id, k.secret_hash, k.role, k.agent_id, \
     k.reviewer_id, k.create_time, k.revoke_time FROM api_keys k JOIN tenants t ON t.tenant_id = k.tenant_id";

const TENANT_BY_NAME: &str = "SELECT tenant_id, name, create_time FROM tenants WHERE name = $1";

const INSERT_AUDIT: &str = "INSERT INTO audit_log
     (tenant_id, id, key_id, role, rpc, request_id, status_code, time)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Writes one audit entry on `conn`: how a backend without batching records one.
pub(crate) async fn insert_audit(conn: &mut Conn, entry: AuditEntry) -> Result<()> {
    conn.execute(
        sql(INSERT_AUDIT)
            .bind(entry.tenant)
            .bind(Uuid::now_v7())
            .bind(entry.key_id)
            .bind(entry.role.as_str())
            .bind(entry.rpc)
            .bind(entry.request_id)
            .bind(entry.status_code)
            .bind(Stamp(entry.time)),
    )
    .await
    .map(drop)
}

async fn fetch_key(
    conn: &mut Conn,
    tenant: TenantId,
    key_id: Uuid,
) -> Result<Option<ApiKeyRecord>> {
    let row: Option<KeyRow> = conn
        .fetch_optional(
            sql(format!(
                "{KEY_SELECT} WHERE k.tenant_id = $1 AND k.key_id = $2"
            ))
            .bind(tenant)
            .bind(key_id),
        )
        .await?;
    row.map(ApiKeyRecord::try_from).transpose()
}

#[async_trait]
impl<B: SqlBackend> AccessStore for B {
    #[tracing::instrument(name = "db.create_tenant", skip_all, fields(db.system = B::SYSTEM))]
    async fn create_tenant(&self, name: &str) -> Result<Tenant> {
        let mut tx = self.write().await?;
        // Two statements, not one: a statement's snapshot predates the row of a
        // concurrent creation that its ON CONFLICT waited for; the next one sees it.
        tx.execute(
            sql(
                "INSERT INTO tenants (tenant_id, name, create_time) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(name)
            .bind(Stamp::now()),
        )
        .await?;
        let row: TenantRow = tx.fetch_one(sql(TENANT_BY_NAME).bind(name)).await?;
        tx.commit().await?;
        Ok(row.into())
    }

    #[tracing::instrument(name = "db.find_tenant", skip_all, fields(db.system = B::SYSTEM))]
    async fn find_tenant(&self, name: &str) -> Result<Option<Tenant>> {
        let row: Option<TenantRow> = self
            .read()
            .await?
            .fetch_optional(sql(TENANT_BY_NAME).bind(name))
            .await?;
        Ok(row.map(Tenant::from))
    }

    #[tracing::instrument(name = "db.create_key", skip_all, fields(db.system = B::SYSTEM))]
    async fn create_key(
        &self,
        tenant: TenantId,
        key_id: Uuid,
        secret_hash: Vec<u8>,
        role: Role,
        binding: KeyBinding,
    ) -> Result<ApiKeyRecord> {
        let mut tx = self.write().await?;
        tx.execute(
            sql("INSERT INTO api_keys
                     (tenant_id, key_id, secret_hash, role, agent_id, reviewer_id, create_time)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(tenant)
            .bind(key_id)
            .bind(secret_hash)
            .bind(role.as_str())
            .bind(binding.agent_id)
            .bind(binding.reviewer_id)
            .bind(Stamp::now()),
        )
        .await?;
        let key = fetch_key(&mut tx, tenant, key_id)
            .await?
            .ok_or_else(|| Error::Internal("a created key cannot be read back".into()))?;
        tx.commit().await?;
        Ok(key)
    }

    #[tracing::instrument(name = "db.find_key", skip_all, fields(db.system = B::SYSTEM))]
    async fn find_key(&self, tenant: TenantId, key_id: Uuid) -> Result<Option<ApiKeyRecord>> {
        fetch_key(&mut self.read().await?, tenant, key_id).await
    }

    #[tracing::instrument(name = "db.list_keys", skip_all, fields(db.system = B::SYSTEM))]
    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows: Vec<KeyRow> = self
            .read()
            .await?
            .fetch_all(sql(format!("{KEY_SELECT} ORDER BY t.name, k.key_id")))
            .await?;
        rows.into_iter().map(ApiKeyRecord::try_from).collect()
    }

    #[tracing::instrument(name = "db.revoke_key", skip_all, fields(db.system = B::SYSTEM))]
    async fn revoke_key(&self, key_id: Uuid) -> Result<bool> {
        let mut tx = self.write().await?;
        let revoked = tx
            .execute(
                sql(
                    "UPDATE api_keys SET revoke_time = COALESCE(revoke_time, $2) WHERE key_id = $1",
                )
                .bind(key_id)
                .bind(Stamp::now()),
            )
            .await?;
        tx.commit().await?;
        Ok(revoked > 0)
    }

    #[tracing::instrument(name = "db.record_audit", skip_all, fields(db.system = B::SYSTEM))]
    async fn record_audit(&self, entry: AuditEntry) -> Result<()> {
        self.write_audit(entry).await
    }

    #[tracing::instrument(name = "db.list_audit", skip_all, fields(db.system = B::SYSTEM))]
    async fn list_audit(&self, tenant: Option<TenantId>, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = self
            .read()
            .await?
            .fetch_all(
                sql(
                    "SELECT tenant_id, key_id, role, rpc, request_id, status_code, time
                     FROM audit_log
                     WHERE ($1 IS NULL OR tenant_id = $1)
                     ORDER BY time DESC, id DESC LIMIT $2",
                )
                .bind(tenant.map(|t| t.as_uuid()))
                .bind(i64::from(limit)),
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(AuditEntry {
                    tenant: TenantId(row.tenant_id),
                    key_id: row.key_id,
                    role: parse_role(&row.role)?,
                    rpc: row.rpc,
                    request_id: row.request_id,
                    status_code: row.status_code,
                    time: row.time.into(),
                })
            })
            .collect()
    }

    #[tracing::instrument(name = "db.deployment_secret", skip_all, fields(db.system = B::SYSTEM))]
    async fn deployment_secret(&self, name: &str) -> Result<Vec<u8>> {
        let mut tx = self.write().await?;
        // Two statements, for the reason given in `create_tenant`.
        tx.execute(
            sql(
                "INSERT INTO deployment_secrets (name, secret, create_time) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(new_deployment_secret()?)
            .bind(Stamp::now()),
        )
        .await?;
        let (secret,): (Vec<u8>,) = tx
            .fetch_one(sql("SELECT secret FROM deployment_secrets WHERE name = $1").bind(name))
            .await?;
        tx.commit().await?;
        Ok(secret)
    }
}
