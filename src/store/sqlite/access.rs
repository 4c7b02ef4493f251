//! AccessStore on SQLite.

use async_trait::async_trait;
use uuid::Uuid;

use super::time::{from_micros, now_micros, to_micros};
use super::{SqliteStore, classify};
use crate::domain::{access::Role, tenant::TenantId};
use crate::error::{Error, Result};
use crate::store::{AccessStore, ApiKeyRecord, AuditEntry, Tenant, new_deployment_secret};

#[derive(sqlx::FromRow)]
struct KeyRow {
    tenant_id: Uuid,
    name: String,
    key_id: Uuid,
    secret_hash: Vec<u8>,
    role: String,
    agent_id: Option<String>,
    create_time: i64,
    revoke_time: Option<i64>,
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
            create_time: from_micros(row.create_time)?,
            revoke_time: row.revoke_time.map(from_micros).transpose()?,
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
    create_time: i64,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = Error;

    fn try_from(row: TenantRow) -> Result<Self> {
        Ok(Tenant {
            id: TenantId(row.tenant_id),
            name: row.name,
            create_time: from_micros(row.create_time)?,
        })
    }
}

const KEY_SELECT: &str = "SELECT k.tenant_id, t.name, k.key_id, k.secret_hash, k.role, k.agent_id, \
     k.create_time, k.revoke_time FROM api_keys k JOIN tenants t ON t.tenant_id = k.tenant_id";

#[async_trait]
impl AccessStore for SqliteStore {
    #[tracing::instrument(name = "db.create_tenant", skip_all, fields(db.system = "sqlite"))]
    async fn create_tenant(&self, name: &str) -> Result<Tenant> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO tenants (tenant_id, name, create_time) VALUES (?, ?, ?)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(name)
        .bind(to_micros(now_micros()))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        let row: TenantRow =
            sqlx::query_as("SELECT tenant_id, name, create_time FROM tenants WHERE name = ?")
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        row.try_into()
    }

    #[tracing::instrument(name = "db.find_tenant", skip_all, fields(db.system = "sqlite"))]
    async fn find_tenant(&self, name: &str) -> Result<Option<Tenant>> {
        let row: Option<TenantRow> =
            sqlx::query_as("SELECT tenant_id, name, create_time FROM tenants WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.reader)
                .await
                .map_err(classify)?;
        row.map(Tenant::try_from).transpose()
    }

    #[tracing::instrument(name = "db.create_key", skip_all, fields(db.system = "sqlite"))]
    async fn create_key(
        &self,
        tenant: TenantId,
        key_id: Uuid,
        secret_hash: Vec<u8>,
        role: Role,
        agent_id: Option<String>,
    ) -> Result<ApiKeyRecord> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_keys (tenant_id, key_id, secret_hash, role, agent_id, create_time)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant.as_uuid())
        .bind(key_id)
        .bind(&secret_hash)
        .bind(role.as_str())
        .bind(&agent_id)
        .bind(to_micros(now_micros()))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        let row: KeyRow = sqlx::query_as(&format!(
            "{KEY_SELECT} WHERE k.tenant_id = ? AND k.key_id = ?"
        ))
        .bind(tenant.as_uuid())
        .bind(key_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        row.try_into()
    }

    #[tracing::instrument(name = "db.find_key", skip_all, fields(db.system = "sqlite"))]
    async fn find_key(&self, tenant: TenantId, key_id: Uuid) -> Result<Option<ApiKeyRecord>> {
        let row: Option<KeyRow> = sqlx::query_as(&format!(
            "{KEY_SELECT} WHERE k.tenant_id = ? AND k.key_id = ?"
        ))
        .bind(tenant.as_uuid())
        .bind(key_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(classify)?;
        row.map(ApiKeyRecord::try_from).transpose()
    }

    #[tracing::instrument(name = "db.list_keys", skip_all, fields(db.system = "sqlite"))]
    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows: Vec<KeyRow> = sqlx::query_as(&format!("{KEY_SELECT} ORDER BY t.name, k.key_id"))
            .fetch_all(&self.reader)
            .await
            .map_err(classify)?;
        rows.into_iter().map(ApiKeyRecord::try_from).collect()
    }

    #[tracing::instrument(name = "db.revoke_key", skip_all, fields(db.system = "sqlite"))]
    async fn revoke_key(&self, key_id: Uuid) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let revoked = sqlx::query(
            "UPDATE api_keys SET revoke_time = COALESCE(revoke_time, ?) WHERE key_id = ?",
        )
        .bind(to_micros(now_micros()))
        .bind(key_id)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(revoked.rows_affected() > 0)
    }

    #[tracing::instrument(name = "db.record_audit", skip_all, fields(db.system = "sqlite"))]
    async fn record_audit(&self, entry: AuditEntry) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, id, key_id, role, rpc, request_id, status_code, time)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(entry.tenant.as_uuid())
        .bind(Uuid::now_v7())
        .bind(entry.key_id)
        .bind(entry.role.as_str())
        .bind(&entry.rpc)
        .bind(&entry.request_id)
        .bind(entry.status_code)
        .bind(to_micros(entry.time))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    #[tracing::instrument(name = "db.list_audit", skip_all, fields(db.system = "sqlite"))]
    async fn list_audit(&self, tenant: Option<TenantId>, limit: u32) -> Result<Vec<AuditEntry>> {
        #[derive(sqlx::FromRow)]
        struct AuditRow {
            tenant_id: Uuid,
            key_id: Option<Uuid>,
            role: String,
            rpc: String,
            request_id: String,
            status_code: i32,
            time: i64,
        }
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT tenant_id, key_id, role, rpc, request_id, status_code, time FROM audit_log
             WHERE (?1 IS NULL OR tenant_id = ?1)
             ORDER BY time DESC, id DESC LIMIT ?2",
        )
        .bind(tenant.map(|t| t.as_uuid()))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(classify)?;
        rows.into_iter()
            .map(|row| {
                Ok(AuditEntry {
                    tenant: TenantId(row.tenant_id),
                    key_id: row.key_id,
                    role: parse_role(&row.role)?,
                    rpc: row.rpc,
                    request_id: row.request_id,
                    status_code: row.status_code,
                    time: from_micros(row.time)?,
                })
            })
            .collect()
    }

    #[tracing::instrument(name = "db.deployment_secret", skip_all, fields(db.system = "sqlite"))]
    async fn deployment_secret(&self, name: &str) -> Result<Vec<u8>> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO deployment_secrets (name, secret, create_time) VALUES (?, ?, ?)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(new_deployment_secret()?)
        .bind(to_micros(now_micros()))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        let secret: Vec<u8> =
            sqlx::query_scalar("SELECT secret FROM deployment_secrets WHERE name = ?")
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(secret)
    }
}
