//! `iqs tenant`, `iqs key` and `iqs audit`: operator commands on the access store.

use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::auth::keys;
use crate::domain::dispute::MAX_WINDOW_DAYS;
use crate::domain::{
    access::Role,
    interaction::{OPAQUE_ID_RULE, is_opaque_id},
};
use crate::store::{AccessStore, KeyBinding, Store};

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (or show the one with this name) and print its id.
    Create { name: String },
    /// Change a tenant's settings, then print them.
    Configure {
        name: String,
        /// Days after an evaluation revision during which its agent may dispute it
        /// (1..365; a new tenant has 14).
        #[arg(long)]
        dispute_window_days: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key; it is printed once, alone on the last line of stdout.
    Create(KeyCreateArgs),
    /// List keys (never their secrets).
    List,
    /// Revoke a key, given the key itself or its id; every server refuses it within 2 s
    /// (a verified key is remembered that long).
    Revoke { key: String },
}

#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    /// Name of the tenant.
    #[arg(long)]
    tenant: String,
    /// admin, qa_reviewer, agent, integration, analyst or service.
    #[arg(long)]
    role: String,
    /// The agent an `agent` key is bound to.
    #[arg(long)]
    agent_id: Option<String>,
    /// Binds a `qa_reviewer` key to one reviewer: it then submits only as that reviewer
    /// and, in an open calibration session, sees only its own reviews.
    #[arg(long)]
    reviewer_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this tenant's entries.
    #[arg(long)]
    tenant: Option<String>,
    /// How many entries, newest first.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

pub async fn tenant(store: &dyn Store, command: TenantCommand) -> Result<(), String> {
    match command {
        TenantCommand::Create { name } => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 200 {
                return Err("a tenant name is 1..200 characters".into());
            }
            let tenant = store.create_tenant(name).await.map_err(|e| e.to_string())?;
            say!("tenant {} {}", tenant.name, tenant.id);
            Ok(())
        }
        TenantCommand::Configure {
            name,
            dispute_window_days,
        } => {
            let tenant = store
                .find_tenant(name.trim())
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no tenant {name:?}: create it with `iqs tenant create`"))?;
            if let Some(days) = dispute_window_days {
                if !(1..=MAX_WINDOW_DAYS).contains(&days) {
                    return Err(format!(
                        "--dispute-window-days must be 1..{MAX_WINDOW_DAYS}, got {days}"
                    ));
                }
                store
                    .set_dispute_window_days(tenant.id, days)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let days = store
                .dispute_window_days(tenant.id)
                .await
                .map_err(|e| e.to_string())?;
            say!("tenant {} {}", tenant.name, tenant.id);
            say!("dispute_window_days {days}");
            Ok(())
        }
    }
}

pub async fn key(store: &dyn AccessStore, command: KeyCommand) -> Result<(), String> {
    match command {
        KeyCommand::Create(args) => {
            let role = Role::parse(&args.role).ok_or_else(|| {
                format!("unknown role {:?}; expected admin, qa_reviewer, agent, integration, analyst or service", args.role)
            })?;
            match (&role, &args.agent_id) {
                (Role::Agent, None) => return Err("an agent key needs --agent-id".into()),
                (Role::Agent, Some(id)) if !is_opaque_id(id) => {
                    return Err(format!("--agent-id {id:?}: {OPAQUE_ID_RULE}"));
                }
                (Role::Agent, Some(_)) => {}
                (_, Some(_)) => return Err("--agent-id is only for agent keys".into()),
                (_, None) => {}
            }
            match (&role, &args.reviewer_id) {
                (Role::QaReviewer, Some(id)) if !is_opaque_id(id) => {
                    return Err(format!("--reviewer-id {id:?}: {OPAQUE_ID_RULE}"));
                }
                (Role::QaReviewer, _) | (_, None) => {}
                (_, Some(_)) => return Err("--reviewer-id is only for qa_reviewer keys".into()),
            }
            let tenant = store
                .find_tenant(&args.tenant)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!(
                        "no tenant named {:?}; create it with `iqs tenant create`",
                        args.tenant
                    )
                })?;
            let new = keys::generate(tenant.id).map_err(|e| e.to_string())?;
            let record = store
                .create_key(
                    tenant.id,
                    new.key_id,
                    new.secret_hash,
                    role,
                    KeyBinding {
                        agent_id: args.agent_id,
                        reviewer_id: args.reviewer_id,
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            say!(
                "key {} for tenant {} with role {} (shown once; store it now):",
                record.key_id,
                tenant.name,
                role
            );
            say!("{}", new.key);
            Ok(())
        }
        KeyCommand::List => {
            say!(
                "{:<36}  {:<20}  {:<12}  {:<16}  {:<20}  revoked",
                "key id",
                "tenant",
                "role",
                "bound to",
                "created"
            );
            for key in store.list_keys().await.map_err(|e| e.to_string())? {
                say!(
                    "{:<36}  {:<20}  {:<12}  {:<16}  {:<20}  {}",
                    key.key_id,
                    key.tenant_name,
                    key.role.as_str(),
                    (key.agent_id.as_deref())
                        .or(key.reviewer_id.as_deref())
                        .unwrap_or("-"),
                    key.create_time.format("%Y-%m-%d %H:%M:%S"),
                    key.revoke_time
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_else(|| "-".into())
                );
            }
            Ok(())
        }
        KeyCommand::Revoke { key } => {
            let key_id = match keys::parse(&key) {
                Some(parsed) => parsed.key_id,
                None => {
                    Uuid::try_parse(&key).map_err(|_| "give the key itself or its id".to_owned())?
                }
            };
            if store.revoke_key(key_id).await.map_err(|e| e.to_string())? {
                say!("key {key_id} revoked");
                Ok(())
            } else {
                Err(format!("no key {key_id}"))
            }
        }
    }
}

pub async fn audit(store: &dyn AccessStore, args: AuditArgs) -> Result<(), String> {
    let tenant = match &args.tenant {
        Some(name) => Some(
            store
                .find_tenant(name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no tenant named {name:?}"))?
                .id,
        ),
        None => None,
    };
    let entries = store
        .list_audit(tenant, args.limit)
        .await
        .map_err(|e| e.to_string())?;
    say!(
        "{:<27}  {:<36}  {:<36}  {:<12}  {:<20}  {:<6}  request id",
        "time",
        "tenant",
        "key id",
        "role",
        "rpc",
        "status"
    );
    for entry in entries {
        say!(
            "{:<27}  {:<36}  {:<36}  {:<12}  {:<20}  {:<6}  {}",
            entry
                .time
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            entry.tenant,
            entry
                .key_id
                .map(|id| id.to_string())
                .unwrap_or_else(|| "-".into()),
            entry.role.as_str(),
            entry.rpc,
            entry.status_code,
            entry.request_id
        );
    }
    Ok(())
}
