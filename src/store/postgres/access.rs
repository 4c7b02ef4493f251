//! AccessStore on PostgreSQL (schema `access`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{PostgresStore, classify};
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
    create_time: DateTime<Utc>,
    revoke_time: Option<DateTime<Utc>>,
}

impl TryFrom<KeyRow> for ApiKeyRecord {
    type Error = Error;

    fn try_from(row: KeyRow) -> Result<Self> {
        Ok(ApiKeyRecord {
            tenant: TenantId(row.tenant_id),
            tenant_name: row.name,
            key_id: row.key_id,
            secret_hash: row.secret_hash,
            role: Role::parse(&row.role)
                .ok_or_else(|| Error::Internal(format!("unknown role {:?}", row.role)))?,
            agent_id: row.agent_id,
            create_time: row.create_time,
            revoke_time: row.revoke_time,
        })
    }
}

const KEY_SELECT: &str = "SELECT k.tenant_id, t.name, k.key_id, k.secret_hash, k.role, k.agent_id, \
     k.create_time, k.revoke_time FROM access.api_keys k JOIN access.tenants t ON t.tenant_id = k.tenant_id";

#[async_trait]
impl AccessStore for PostgresStore {
    #[tracing::instrument(name = "db.create_tenant", skip_all, fields(db.system = "postgresql"))]
    async fn create_tenant(&self, name: &str) -> Result<Tenant> {
        let row: (Uuid, String, DateTime<Utc>) = sqlx::query_as(
            "WITH inserted AS (
                 INSERT INTO access.tenants (tenant_id, name) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING
                 RETURNING tenant_id, name, create_time
             )
             SELECT tenant_id, name, create_time FROM inserted
             UNION ALL
             SELECT tenant_id, name, create_time FROM access.tenants WHERE name = $2
             LIMIT 1",
        )
        .bind(Uuid::now_v7())
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        Ok(Tenant {
            id: TenantId(row.0),
            name: row.1,
            create_time: row.2,
        })
    }

    #[tracing::instrument(name = "db.find_tenant", skip_all, fields(db.system = "postgresql"))]
    async fn find_tenant(&self, name: &str) -> Result<Option<Tenant>> {
        let row: Option<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT tenant_id, name, create_time FROM access.tenants WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(row.map(|(id, name, create_time)| Tenant {
            id: TenantId(id),
            name,
            create_time,
        }))
    }

    #[tracing::instrument(name = "db.create_key", skip_all, fields(db.system = "postgresql"))]
    async fn create_key(
        &self,
        tenant: TenantId,
        key_id: Uuid,
        secret_hash: Vec<u8>,
        role: Role,
        agent_id: Option<String>,
    ) -> Result<ApiKeyRecord> {
        sqlx::query(
            "INSERT INTO access.api_keys (tenant_id, key_id, secret_hash, role, agent_id)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tenant.as_uuid())
        .bind(key_id)
        .bind(&secret_hash)
        .bind(role.as_str())
        .bind(&agent_id)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        self.find_key(tenant, key_id)
            .await?
            .ok_or_else(|| Error::Internal("a created key cannot be read back".into()))
    }

    #[tracing::instrument(name = "db.find_key", skip_all, fields(db.system = "postgresql"))]
    async fn find_key(&self, tenant: TenantId, key_id: Uuid) -> Result<Option<ApiKeyRecord>> {
        let row: Option<KeyRow> = sqlx::query_as(&format!(
            "{KEY_SELECT} WHERE k.tenant_id = $1 AND k.key_id = $2"
        ))
        .bind(tenant.as_uuid())
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.map(ApiKeyRecord::try_from).transpose()
    }

    #[tracing::instrument(name = "db.list_keys", skip_all, fields(db.system = "postgresql"))]
    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows: Vec<KeyRow> = sqlx::query_as(&format!("{KEY_SELECT} ORDER BY t.name, k.key_id"))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.into_iter().map(ApiKeyRecord::try_from).collect()
    }

    #[tracing::instrument(name = "db.revoke_key", skip_all, fields(db.system = "postgresql"))]
    async fn revoke_key(&self, key_id: Uuid) -> Result<bool> {
        let revoked = sqlx::query(
            "UPDATE access.api_keys SET revoke_time = COALESCE(revoke_time, now()) WHERE key_id = $1",
        )
        .bind(key_id)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(revoked.rows_affected() > 0)
    }

    #[tracing::instrument(name = "db.record_audit", skip_all, fields(db.system = "postgresql"))]
    async fn record_audit(&self, entry: AuditEntry) -> Result<()> {
        self.audit.write(entry).await
    }

    #[tracing::instrument(name = "db.list_audit", skip_all, fields(db.system = "postgresql"))]
    async fn list_audit(&self, tenant: Option<TenantId>, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows: Vec<(Uuid, Option<Uuid>, String, String, String, i32, DateTime<Utc>)> = sqlx::query_as(
            "SELECT tenant_id, key_id, role, rpc, request_id, status_code, time FROM access.audit_log
             WHERE ($1::uuid IS NULL OR tenant_id = $1)
             ORDER BY time DESC, id DESC LIMIT $2",
        )
        .bind(tenant.map(|t| t.as_uuid()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.into_iter()
            .map(
                |(tenant, key_id, role, rpc, request_id, status_code, time)| {
                    Ok(AuditEntry {
                        tenant: TenantId(tenant),
                        key_id,
                        role: Role::parse(&role)
                            .ok_or_else(|| Error::Internal(format!("unknown role {role:?}")))?,
                        rpc,
                        request_id,
                        status_code,
                        time,
                    })
                },
            )
            .collect()
    }

    #[tracing::instrument(name = "db.deployment_secret", skip_all, fields(db.system = "postgresql"))]
    async fn deployment_secret(&self, name: &str) -> Result<Vec<u8>> {
        // Two statements, not one: a statement's snapshot predates the row of a
        // concurrent first start that its ON CONFLICT waited for; the next one sees it.
        sqlx::query(
            "INSERT INTO access.deployment_secrets (name, secret) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(new_deployment_secret()?)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        sqlx::query_scalar("SELECT secret FROM access.deployment_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }
}
