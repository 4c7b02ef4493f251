//! BI logins: PostgreSQL roles that may read the `reporting` views of one tenant and
//! nothing else (`iqs bi grant` / `iqs bi revoke`). Which tenant a login reads is the
//! row of `access.bi_logins` named after it; the views filter by it (see the migration
//! `20261203000001_reporting.sql`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use super::PostgresStore;
use super::errors::classify;
use crate::error::{Error, Result};
use crate::store::AccessStore;

/// Calls one login may have open at once.
const CONNECTION_LIMIT: u32 = 10;
/// The longest query a BI login may run.
const STATEMENT_TIMEOUT: &str = "300s";

/// A login made or rotated by `grant_bi_login`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BiLogin {
    pub role: String,
    pub password: String,
    pub tenant_id: Uuid,
    /// True when the login existed and only its password changed.
    pub rotated: bool,
}

/// The role of a tenant's login: role names are shared by every database of a
/// PostgreSQL server, and tenant ids are unique across them.
pub fn role_name(tenant_id: Uuid) -> String {
    format!("iqs_bi_{}", tenant_id.simple())
}

fn new_password() -> Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|err| Error::Internal(format!("random: {err}")))?;
    // URL-safe base64 needs no quoting, in SQL or in a connection URL.
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

impl PostgresStore {
    async fn tenant_id_named(&self, tenant: &str) -> Result<Uuid> {
        let found = self.find_tenant(tenant).await?;
        found
            .map(|tenant| tenant.id.0)
            .ok_or_else(|| Error::not_found("tenant", format!("{tenant:?}")))
    }

    /// Makes the tenant's BI login, or gives the existing one a new password (the old
    /// one stops working at once). Needs a database user with CREATEROLE.
    pub async fn grant_bi_login(&self, tenant: &str) -> Result<BiLogin> {
        let tenant_id = self.tenant_id_named(tenant).await?;
        let role = role_name(tenant_id);
        let password = new_password()?;
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let exists = sqlx::query("SELECT 1 FROM pg_roles WHERE rolname = $1")
            .bind(&role)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?
            .is_some();
        // Role names and passwords cannot be bound parameters; both are made of
        // [a-z0-9_] and URL-safe base64 here, so quoting them is enough.
        let verb = if exists { "ALTER" } else { "CREATE" };
        let statements = [
            format!(
                "{verb} ROLE \"{role}\" WITH LOGIN PASSWORD '{password}' NOSUPERUSER NOCREATEDB \
                 NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {CONNECTION_LIMIT}"
            ),
            format!("ALTER ROLE \"{role}\" SET default_transaction_read_only = on"),
            format!("ALTER ROLE \"{role}\" SET statement_timeout = '{STATEMENT_TIMEOUT}'"),
            format!("ALTER ROLE \"{role}\" SET search_path = reporting"),
            format!("GRANT USAGE ON SCHEMA reporting TO \"{role}\""),
            format!("GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO \"{role}\""),
            // Views added by later migrations (run by this same user) are readable too.
            format!(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA reporting GRANT SELECT ON TABLES TO \"{role}\""
            ),
        ];
        for statement in &statements {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(|err| bi_error(err, &role))?;
        }
        sqlx::query(
            "INSERT INTO access.bi_logins (role_name, tenant_id) VALUES ($1, $2)
             ON CONFLICT (role_name) DO UPDATE SET rotate_time = now()",
        )
        .bind(&role)
        .bind(tenant_id)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(BiLogin {
            role,
            password,
            tenant_id,
            rotated: exists,
        })
    }

    /// Drops the tenant's BI login; false when it had none. Its open sessions end when
    /// this database user may end them (superuser or pg_signal_backend); they can read
    /// nothing more either way, since the mapping row is gone.
    pub async fn revoke_bi_login(&self, tenant: &str) -> Result<bool> {
        let tenant_id = self.tenant_id_named(tenant).await?;
        let role = role_name(tenant_id);
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let mapped = sqlx::query("DELETE FROM access.bi_logins WHERE role_name = $1")
            .bind(&role)
            .execute(&mut *tx)
            .await
            .map_err(classify)?
            .rows_affected()
            > 0;
        let exists = sqlx::query("SELECT 1 FROM pg_roles WHERE rolname = $1")
            .bind(&role)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?
            .is_some();
        if exists {
            for statement in [
                format!("ALTER ROLE \"{role}\" NOLOGIN"),
                format!(
                    "ALTER DEFAULT PRIVILEGES IN SCHEMA reporting REVOKE SELECT ON TABLES FROM \"{role}\""
                ),
                format!("REVOKE ALL ON ALL TABLES IN SCHEMA reporting FROM \"{role}\""),
                format!("REVOKE ALL ON SCHEMA reporting FROM \"{role}\""),
                format!("DROP ROLE \"{role}\""),
            ] {
                sqlx::query(&statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| bi_error(err, &role))?;
            }
        }
        tx.commit().await.map_err(classify)?;
        // Best effort, after the commit: the login can no longer read anything anyway.
        let _ = sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
        )
        .bind(&role)
        .execute(&self.pool)
        .await;
        Ok(mapped || exists)
    }
}

/// A refused role statement names what the database user lacks.
fn bi_error(err: sqlx::Error, role: &str) -> Error {
    if let sqlx::Error::Database(db) = &err
        && db.code().as_deref() == Some("42501")
    {
        return Error::FailedPrecondition(format!(
            "the database user cannot manage the login {role}: it needs CREATEROLE \
             (ALTER ROLE <iqs user> CREATEROLE): {}",
            db.message()
        ));
    }
    classify(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_unique_per_tenant_and_need_no_quoting() {
        let tenant = Uuid::now_v7();
        let role = role_name(tenant);
        assert!(role.len() <= 63, "PostgreSQL's identifier limit");
        assert!(
            role.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
        assert_ne!(role, role_name(Uuid::now_v7()));
        let password = new_password().unwrap();
        assert_eq!(password.len(), 32);
        assert!(
            password
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
