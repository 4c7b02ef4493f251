//! `iqs bi`: PostgreSQL logins for BI tools, each reading only its tenant's `reporting`
//! views.

use clap::{Args, Subcommand};

use crate::config::Config;
use crate::store::postgres::{PoolSettings, PostgresStore};

#[derive(Debug, Subcommand)]
pub enum BiCommand {
    /// Make (or rotate) the tenant's BI login; its connection URL is the last line.
    Grant(TenantArg),
    /// Drop the tenant's BI login.
    Revoke(TenantArg),
}

#[derive(Debug, Args)]
pub struct TenantArg {
    /// The tenant's name.
    #[arg(long)]
    tenant: String,
}

pub async fn bi(config: &Config, command: BiCommand) -> Result<(), String> {
    let url = config
        .database_url
        .as_deref()
        .filter(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"))
        .ok_or(
            "iqs bi makes PostgreSQL logins: set DATABASE_URL=postgres://…. The embedded \
             store has the same views in its SQLite file (reporting_evaluations, \
             reporting_criterion_scores, reporting_daily_scores): open it read-only with a \
             SQLite client",
        )?;
    let settings = PoolSettings {
        max_connections: 2,
        acquire_timeout: config.database_acquire_timeout(),
    };
    let store = PostgresStore::connect(url, &settings)
        .await
        .map_err(|err| err.to_string())?;
    store.migrate().await.map_err(|err| err.to_string())?;
    match command {
        BiCommand::Grant(TenantArg { tenant }) => {
            let login = store
                .grant_bi_login(&tenant)
                .await
                .map_err(|err| err.to_string())?;
            let what = if login.rotated {
                "new password for"
            } else {
                "created"
            };
            say!(
                "{what} the BI login {} of tenant {tenant:?}: it reads the views of schema \
                 reporting (evaluations, criterion_scores, daily_scores), its tenant's rows only",
                login.role
            );
            say!("{}", login_url(url, &login.role, &login.password)?);
        }
        BiCommand::Revoke(TenantArg { tenant }) => {
            let dropped = store
                .revoke_bi_login(&tenant)
                .await
                .map_err(|err| err.to_string())?;
            if dropped {
                say!("dropped the BI login of tenant {tenant:?}");
            } else {
                say!("tenant {tenant:?} had no BI login");
            }
        }
    }
    Ok(())
}

/// IQS's own database URL with the login's name and password instead of its own: the
/// same host, port, database and TLS settings.
fn login_url(database_url: &str, role: &str, password: &str) -> Result<String, String> {
    let mut url = url::Url::parse(database_url).map_err(|err| format!("DATABASE_URL: {err}"))?;
    url.set_username(role)
        .and_then(|()| url.set_password(Some(password)))
        .map_err(|()| "DATABASE_URL has no host to connect to".to_owned())?;
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_url_keeps_host_database_and_tls_settings() {
        let url = login_url(
            "postgres://iqs:secret@db.internal:5433/iqs?sslmode=verify-full",
            "iqs_bi_0123",
            "pw-_x",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://iqs_bi_0123:pw-_x@db.internal:5433/iqs?sslmode=verify-full"
        );
    }
}
