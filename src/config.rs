//! Layered configuration: defaults -> `iqs.toml` (optional) -> `IQS_*` environment
//! (plus `DATABASE_URL` and `REDIS_URL`) -> command-line flags.

use std::{
    collections::BTreeSet,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::auth::limits::RoleRates;
use crate::domain::tenant::TenantId;

pub const DEFAULT_CONFIG_FILE: &str = "iqs.toml";

/// One of the gRPC services the binary can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKind {
    Rubric,
    Evaluation,
    Analytics,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 3] = [Self::Rubric, Self::Evaluation, Self::Analytics];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rubric => "rubric",
            Self::Evaluation => "evaluation",
            Self::Analytics => "analytics",
        }
    }
}

/// The services one process serves (`--services rubric,evaluation`; `all` = every one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSet(BTreeSet<ServiceKind>);

impl ServiceSet {
    pub fn all() -> Self {
        Self(ServiceKind::ALL.into_iter().collect())
    }

    pub fn contains(&self, kind: ServiceKind) -> bool {
        self.0.contains(&kind)
    }

    pub fn iter(&self) -> impl Iterator<Item = ServiceKind> + '_ {
        self.0.iter().copied()
    }
}

impl FromStr for ServiceSet {
    type Err = String;

    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let mut kinds = BTreeSet::new();
        for name in list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            match name {
                "all" => kinds.extend(ServiceKind::ALL),
                "rubric" => {
                    kinds.insert(ServiceKind::Rubric);
                }
                "evaluation" => {
                    kinds.insert(ServiceKind::Evaluation);
                }
                "analytics" => {
                    kinds.insert(ServiceKind::Analytics);
                }
                other => {
                    return Err(format!(
                        "unknown service {other:?}; expected rubric, evaluation, analytics or all"
                    ));
                }
            }
        }
        if kinds.is_empty() {
            return Err("no service named; expected rubric, evaluation, analytics or all".into());
        }
        Ok(Self(kinds))
    }
}

impl fmt::Display for ServiceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.iter().map(ServiceKind::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl Serialize for ServiceSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ServiceSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum ListOrString {
            List(Vec<String>),
            String(String),
        }
        let list = match ListOrString::deserialize(deserializer)? {
            ListOrString::List(names) => names.join(","),
            ListOrString::String(names) => names,
        };
        list.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Keys,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable in a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The whole configuration of a process. Not `Debug`: it holds connection URLs with
/// credentials, which must never reach logs.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address to bind; port 0 picks a free port.
    pub listen_addr: SocketAddr,
    pub services: ServiceSet,
    /// `postgres://…`.
    pub database_url: Option<String>,
    /// Where the rubric service is when this process serves evaluation without it.
    pub rubric_endpoint: Option<String>,
    /// `redis://…`.
    pub redis_url: Option<String>,
    /// Longest wait for Redis before answering from PostgreSQL.
    pub redis_timeout_ms: u64,
    /// How long a cached summary may live, as a backstop to invalidation: even when an
    /// invalidation cannot reach Redis, no summary outlives this.
    pub cache_ttl_ms: u64,
    /// How long a summary read from Redis is also kept in this process's memory, so
    /// that repeated reads skip the network; 0 turns the near cache off. Another
    /// instance's invalidations reach it only when it expires.
    pub cache_near_ttl_ms: u64,
    /// Where the embedded store keeps its files.
    pub data_dir: PathBuf,
    /// `keys`: every call needs an API key. `disabled`: every call is served as an
    /// admin of `default_tenant` (only behind a gateway that authenticates).
    pub auth: AuthMode,
    /// The tenant of a server without keys.
    pub default_tenant: Uuid,
    /// Rate limit per key, by role.
    pub rate_limits: RoleRates,
    pub database_max_connections: u32,
    /// How long a call waits for a database connection before answering UNAVAILABLE.
    pub database_acquire_timeout_ms: u64,
    pub log_format: LogFormat,
    /// After SIGTERM, how long calls in flight may take before connections are closed.
    pub shutdown_grace_ms: u64,
    /// Calls handled at once; more wait up to `queue_timeout_ms` for a slot, then are
    /// refused with RESOURCE_EXHAUSTED.
    pub max_concurrent_calls: usize,
    /// 0 refuses at once: under a flood, any wait is paid by every admitted call.
    pub queue_timeout_ms: u64,
    /// The longest any call may take (a shorter `grpc-timeout` from the caller wins).
    pub request_timeout_ms: u64,
    /// The largest message a service accepts or sends.
    pub max_message_bytes: usize,
    /// How often the database is checked for health.
    pub health_check_interval_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            services: ServiceSet::all(),
            database_url: None,
            redis_url: None,
            redis_timeout_ms: 100,
            cache_ttl_ms: 1_000,
            cache_near_ttl_ms: 250,
            rubric_endpoint: None,
            data_dir: PathBuf::from("./iqs-data"),
            auth: AuthMode::Keys,
            default_tenant: Uuid::nil(),
            rate_limits: RoleRates::default(),
            database_max_connections: 16,
            database_acquire_timeout_ms: 1000,
            log_format: LogFormat::Text,
            shutdown_grace_ms: 30_000,
            max_concurrent_calls: 256,
            queue_timeout_ms: 0,
            request_timeout_ms: 30_000,
            max_message_bytes: 4 * 1024 * 1024,
            health_check_interval_ms: 1_000,
        }
    }
}

impl Config {
    pub fn default_tenant(&self) -> TenantId {
        TenantId(self.default_tenant)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn database_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.database_acquire_timeout_ms)
    }
}

/// Values given as command-line flags; they win over every other layer.
#[derive(Debug, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

/// Loads the layers. `file` names a config file that must exist; without it,
/// `iqs.toml` in the working directory is read when present.
pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Config, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    match file {
        Some(path) if !path.exists() => {
            return Err(ConfigError(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        Some(path) => figment = figment.merge(Toml::file_exact(path)),
        None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
            figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE))
        }
        None => {}
    }
    let figment = figment
        .merge(Env::prefixed("IQS_").ignore(&["config"]))
        .merge(Env::raw().only(&["database_url", "redis_url"]))
        .merge(Serialized::defaults(flags));
    let mut config: Config = figment
        .extract()
        .map_err(|err| ConfigError(err.to_string()))?;
    // An empty URL in the environment means "not set", as shells and charts produce it.
    config.database_url = config.database_url.filter(|url| !url.is_empty());
    config.redis_url = config.redis_url.filter(|url| !url.is_empty());
    Ok(config)
}

#[cfg(test)]
// figment::Jail's closures return figment::Error, which is large by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn service_list_parses_names_and_all() {
        let set: ServiceSet = "evaluation, rubric".parse().unwrap();
        assert!(set.contains(ServiceKind::Rubric) && !set.contains(ServiceKind::Analytics));
        assert_eq!("all".parse::<ServiceSet>().unwrap(), ServiceSet::all());
        assert!("billing".parse::<ServiceSet>().is_err());
        assert!("".parse::<ServiceSet>().is_err());
    }

    #[test]
    fn layers_apply_defaults_then_file_then_env_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "iqs.toml",
                r#"
                listen_addr = "0.0.0.0:7000"
                services = ["rubric"]
                database_max_connections = 4
                log_format = "json"
                "#,
            )?;
            jail.set_env("IQS_DATABASE_MAX_CONNECTIONS", "8");
            jail.set_env("DATABASE_URL", "postgres://db/iqs");
            jail.set_env("IQS_SERVICES", "rubric,analytics");
            let flags = FlagOverrides {
                listen_addr: Some("127.0.0.1:0".parse().unwrap()),
                services: None,
            };
            let config = load(None, &flags).map_err(|e| e.to_string())?;
            assert_eq!(config.listen_addr, "127.0.0.1:0".parse().unwrap());
            assert_eq!(config.services.to_string(), "rubric,analytics");
            assert_eq!(config.database_max_connections, 8);
            assert_eq!(config.database_url.as_deref(), Some("postgres://db/iqs"));
            assert_eq!(config.log_format, LogFormat::Json);
            assert_eq!(config.data_dir, PathBuf::from("./iqs-data"));
            Ok(())
        });
    }

    #[test]
    fn empty_database_url_means_unset() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("DATABASE_URL", "");
            let config = load(None, &FlagOverrides::default()).map_err(|e| e.to_string())?;
            assert!(config.database_url.is_none());
            Ok(())
        });
    }

    #[test]
    fn a_named_config_file_must_exist() {
        assert!(
            load(
                Some(Path::new("/nonexistent/iqs.toml")),
                &FlagOverrides::default()
            )
            .is_err()
        );
    }
}
