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
    /// A streaming replica of `database_url` (`postgres://…`) that serves the score
    /// queries and exports; unset, they read the primary.
    pub database_read_url: Option<String>,
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
    /// Calls one API key may have in flight; more are refused with RESOURCE_EXHAUSTED at
    /// once, so one caller cannot hold the slots every tenant shares.
    pub max_concurrent_calls_per_key: usize,
    /// Calls one tenant may have in flight, over all its keys.
    pub max_concurrent_calls_per_tenant: usize,
    /// The longest any call may take (a shorter `grpc-timeout` from the caller wins).
    pub request_timeout_ms: u64,
    /// How long the request message of a unary call may take to arrive.
    pub request_body_timeout_ms: u64,
    /// How long a streamed request (ImportEvaluations) may go without sending anything.
    pub stream_idle_timeout_ms: u64,
    /// How long a streamed request may take in all.
    pub stream_max_duration_ms: u64,
    /// How long a new connection may take to send the HTTP/2 preface and first frame.
    pub http2_handshake_timeout_ms: u64,
    /// How long a connection may stay open with no call in flight.
    pub connection_idle_timeout_ms: u64,
    /// How often an HTTP/2 ping checks that a quiet peer still answers.
    pub http2_keepalive_interval_ms: u64,
    /// How long a peer may take to answer that ping before its connection is closed.
    pub http2_keepalive_timeout_ms: u64,
    /// The largest message a service accepts or sends.
    pub max_message_bytes: usize,
    /// How often the database is checked for health.
    pub health_check_interval_ms: u64,
    /// TLS on the gRPC port (`[tls]` in `iqs.toml`, `IQS_TLS__CERT_FILE`, …).
    pub tls: TlsConfig,
    /// A second, plaintext port serving only `grpc.health.v1.Health`, for probes that
    /// cannot speak TLS (Kubernetes' gRPC probes). Off when unset.
    pub health_listen_addr: Option<SocketAddr>,
    /// Browser origins (`https://helpdesk.example.com`) allowed to call the API from a
    /// page (CORS, for Connect and gRPC-Web); none by default.
    pub cors_allowed_origins: Vec<String>,
    /// How long AutoQA waits for an external scorer (`external` rules) before rating its
    /// criteria N/A.
    pub autoqa_scorer_timeout_ms: u64,
    /// Lets webhook URLs use plain http and reach loopback or private addresses (tests,
    /// private networks). Off: https only, and never a private, loopback, link-local or
    /// metadata address.
    pub webhook_allow_private_targets: bool,
    /// How long one delivery attempt may take.
    pub webhook_attempt_timeout_ms: u64,
    /// The wait before a failed delivery's second attempt, doubled for each one after.
    pub webhook_retry_first_ms: u64,
    /// The longest wait between two attempts.
    pub webhook_retry_longest_ms: u64,
    /// How long after its event a delivery keeps being retried.
    pub webhook_give_up_after_s: u64,
    /// Consecutive failed attempts after which a subscription is disabled.
    pub webhook_disable_after_failures: u32,
    /// Delivery attempts in flight per process.
    pub webhook_max_in_flight: usize,
    /// Delivery attempts in flight to one subscription per process.
    pub webhook_max_in_flight_per_webhook: usize,
    /// How long the delivery log keeps a delivery after it was delivered or failed.
    pub webhook_log_retention_s: u64,
    /// How long an outbox event is kept after the projector and the webhook dispatcher
    /// have both passed it.
    pub outbox_retention_s: u64,
    /// Events the projector may be behind before ImportEvaluations waits for it before
    /// its next batch; 0 never waits. A projector that does not move holds nothing back.
    pub import_max_projection_lag: u64,
}

/// TLS on the gRPC port. Without `cert_file` and `key_file` the port is plaintext; with
/// them it speaks only TLS. The files are read again on SIGHUP and whenever their
/// contents change, without dropping connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates. When set, every client must present a certificate signed by
    /// one of them (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for changes; SIGHUP checks at once.
    pub reload_interval_ms: u64,
    /// How long a client may take to complete its TLS handshake.
    pub handshake_timeout_ms: u64,
    /// PEM CA certificates trusted when this process calls another IQS service over
    /// `https://` (the rubric service at `rubric_endpoint`); the system's roots when
    /// unset. With `cert_file` and `key_file` set, this process presents that certificate
    /// to the service it calls, for mutual TLS.
    pub server_ca_file: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            reload_interval_ms: 5_000,
            handshake_timeout_ms: 10_000,
            server_ca_file: None,
        }
    }
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    fn check(&self) -> Result<(), ConfigError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err(ConfigError(
                "tls.cert_file is set but tls.key_file is not; set both".into(),
            )),
            (None, Some(_)) => Err(ConfigError(
                "tls.key_file is set but tls.cert_file is not; set both".into(),
            )),
            (None, None) if self.client_ca_file.is_some() => Err(ConfigError(
                "tls.client_ca_file needs tls.cert_file and tls.key_file".into(),
            )),
            _ => Ok(()),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            services: ServiceSet::all(),
            database_url: None,
            database_read_url: None,
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
            max_concurrent_calls_per_key: 64,
            max_concurrent_calls_per_tenant: 128,
            request_timeout_ms: 30_000,
            request_body_timeout_ms: 10_000,
            stream_idle_timeout_ms: 60_000,
            stream_max_duration_ms: 3_600_000,
            http2_handshake_timeout_ms: 10_000,
            connection_idle_timeout_ms: 600_000,
            http2_keepalive_interval_ms: 30_000,
            http2_keepalive_timeout_ms: 10_000,
            max_message_bytes: 4 * 1024 * 1024,
            health_check_interval_ms: 1_000,
            tls: TlsConfig::default(),
            health_listen_addr: None,
            cors_allowed_origins: Vec::new(),
            autoqa_scorer_timeout_ms: 5_000,
            webhook_allow_private_targets: false,
            webhook_attempt_timeout_ms: 10_000,
            webhook_retry_first_ms: 5_000,
            webhook_retry_longest_ms: 3_600_000,
            webhook_give_up_after_s: 3 * 86_400,
            webhook_disable_after_failures: 100,
            webhook_max_in_flight: 64,
            webhook_max_in_flight_per_webhook: 8,
            webhook_log_retention_s: 30 * 86_400,
            outbox_retention_s: 3_600,
            import_max_projection_lag: 5_000,
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
    let shape = serde_json::to_value(Config::default())
        .map_err(|err| ConfigError(format!("the defaults do not serialize: {err}")))?;
    let serde_json::Value::Object(shape) = shape else {
        return Err(ConfigError("the defaults are not a table".into()));
    };
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
    let top_level_keys: BTreeSet<String> = shape.keys().cloned().collect();
    let figment = figment
        // Other tools share the prefix (IQS_CONFIG, IQS_API_KEY, IQS_TEST_THROWAWAY, …):
        // only variables naming a configuration key are configuration.
        .merge(Env::prefixed("IQS_").split("__").filter(move |key| {
            let top = key.as_str().split('.').next().unwrap_or_default();
            top_level_keys.contains(&top.to_ascii_lowercase())
        }))
        .merge(Env::raw().only(&["database_url", "database_read_url", "redis_url"]))
        .merge(Serialized::defaults(flags));
    refuse_unknown_keys(&figment, &shape)?;
    let mut config: Config = figment.extract().map_err(|err| describe(&err))?;
    // An empty URL in the environment means "not set", as shells and charts produce it.
    config.database_url = config.database_url.filter(|url| !url.is_empty());
    config.database_read_url = config.database_read_url.filter(|url| !url.is_empty());
    config.redis_url = config.redis_url.filter(|url| !url.is_empty());
    config.tls.check()?;
    check_origins(&config.cors_allowed_origins)?;
    Ok(config)
}

/// An origin is `scheme://host[:port]` as browsers send it, or `*` for any.
fn check_origins(origins: &[String]) -> Result<(), ConfigError> {
    let bad: Vec<&str> = origins
        .iter()
        .map(String::as_str)
        .filter(|origin| {
            let Some((scheme, rest)) = origin.split_once("://") else {
                return *origin != "*";
            };
            !matches!(scheme, "http" | "https")
                || rest.is_empty()
                || rest.contains(['/', '?', '#', ' '])
                || http::HeaderValue::from_str(origin).is_err()
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(ConfigError(format!(
        "cors_allowed_origins: {bad:?} are not origins; write each as scheme://host[:port] \
         (https://helpdesk.example.com), without a path, or \"*\" for any origin"
    )))
}

/// A misspelt key would otherwise be ignored in silence, leaving its default in force.
fn refuse_unknown_keys(
    figment: &Figment,
    shape: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), ConfigError> {
    let given: figment::value::Dict = figment.extract().map_err(|err| describe(&err))?;
    let mut unknown = Vec::new();
    collect_unknown_keys(&given, shape, &mut Vec::new(), &mut unknown);
    if unknown.is_empty() {
        return Ok(());
    }
    let problems: Vec<String> = unknown
        .into_iter()
        .map(|(path, suggestion)| {
            let source = source_of(figment.find_metadata(&path.join(".")), &path)
                .map(|source| format!(" {source}"))
                .unwrap_or_default();
            let hint = suggestion
                .map(|known| format!(" (did you mean `{known}`?)"))
                .unwrap_or_default();
            format!("unknown key `{}`{source}{hint}", path.join("."))
        })
        .collect();
    Err(ConfigError(problems.join("; ")))
}

/// The keys of `given` that `shape` (the serialized defaults) does not have, each with
/// the known key nearest in spelling, if one is near.
fn collect_unknown_keys(
    given: &figment::value::Dict,
    shape: &serde_json::Map<String, serde_json::Value>,
    path: &mut Vec<String>,
    unknown: &mut Vec<(Vec<String>, Option<String>)>,
) {
    for (key, value) in given {
        path.push(key.clone());
        match (shape.get(key), value) {
            (None, _) => {
                let suggestion = shape
                    .keys()
                    .map(|known| (edit_distance(key, known), known))
                    .filter(|(distance, _)| *distance <= 3)
                    .min()
                    .map(|(_, known)| known.clone());
                unknown.push((path.clone(), suggestion));
            }
            (Some(serde_json::Value::Object(inner)), figment::value::Value::Dict(_, dict)) => {
                collect_unknown_keys(dict, inner, path, unknown);
            }
            _ => {}
        }
        path.pop();
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// figment's own Display names the Rust source line of programmatic layers
/// (`src/config.rs:269:16`); operators need the key and where they set it.
fn describe(error: &figment::Error) -> ConfigError {
    let problems: Vec<String> = error
        .clone()
        .into_iter()
        .map(|error| {
            let key = error.path.join(".");
            let source = source_of(error.metadata.as_ref(), &error.path);
            match (key.is_empty(), source) {
                (false, Some(source)) => format!("`{key}` {source}: {}", error.kind),
                (false, None) => format!("`{key}`: {}", error.kind),
                (true, Some(source)) => {
                    format!("{}: {}", source.trim_start_matches("in "), error.kind)
                }
                (true, None) => error.kind.to_string(),
            }
        })
        .collect();
    ConfigError(problems.join("; "))
}

/// Where a value was set, in the operator's terms: "in iqs.toml", "on the command line".
fn source_of(metadata: Option<&figment::Metadata>, path: &[String]) -> Option<String> {
    let metadata = metadata?;
    Some(match &metadata.source {
        Some(figment::Source::File(file)) => format!("in {}", file.display()),
        Some(figment::Source::Code(_)) if metadata.name.ends_with("FlagOverrides") => {
            "on the command line".to_owned()
        }
        Some(figment::Source::Code(_)) => "in the built-in defaults".to_owned(),
        Some(figment::Source::Custom(custom)) => format!("in {custom}"),
        None if metadata.name.contains("environment") => {
            let prefix = if metadata.name.starts_with("`IQS_`") {
                "IQS_"
            } else {
                ""
            };
            format!(
                "in environment variable {prefix}{}",
                path.join("__").to_ascii_uppercase()
            )
        }
        _ => format!("in {}", metadata.name),
    })
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
    fn cors_origins_come_from_the_file_or_the_environment_and_a_path_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "IQS_CORS_ALLOWED_ORIGINS",
                "[https://helpdesk.example.com, http://localhost:5173]",
            );
            let config = load(None, &FlagOverrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(
                config.cors_allowed_origins,
                vec!["https://helpdesk.example.com", "http://localhost:5173"]
            );
            jail.set_env("IQS_CORS_ALLOWED_ORIGINS", "[https://a.example.com/app, *]");
            let err = load(None, &FlagOverrides::default())
                .err()
                .expect("an origin with a path is refused")
                .to_string();
            assert!(err.contains("https://a.example.com/app"), "{err}");
            assert!(!err.contains("\"*\","), "{err}");
            Ok(())
        });
    }

    #[test]
    fn an_unknown_key_in_the_file_is_refused_by_name() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("iqs.toml", "max_concurent_calls = 5\n")?;
            let err = load(None, &FlagOverrides::default())
                .err()
                .expect("a misspelt key is refused")
                .to_string();
            assert!(err.contains("`max_concurent_calls`"), "{err}");
            assert!(err.contains("iqs.toml"), "{err}");
            assert!(err.contains("did you mean `max_concurrent_calls`"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn an_unknown_nested_key_is_refused_by_its_full_name() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("iqs.toml", "[rate_limits.admin]\nper_secnd = 5.0\n")?;
            let err = load(None, &FlagOverrides::default())
                .err()
                .expect("a misspelt nested key is refused")
                .to_string();
            assert!(err.contains("`rate_limits.admin.per_secnd`"), "{err}");
            jail.create_file("iqs.toml", "")?;
            jail.set_env("IQS_TLS__CERTFILE", "/tls/cert.pem");
            let err = load(None, &FlagOverrides::default())
                .err()
                .expect("a misspelt nested variable is refused")
                .to_string();
            assert!(
                err.contains("`tls.certfile` in environment variable IQS_TLS__CERTFILE"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn variables_of_other_tools_sharing_the_prefix_are_not_configuration() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("IQS_TEST_THROWAWAY", "1");
            jail.set_env("IQS_API_KEY", "iqs_secret");
            jail.set_env("IQS_CONFIG", "iqs.toml");
            jail.set_env("IQS_PG_BIN", "/usr/lib/postgresql/16/bin");
            load(None, &FlagOverrides::default()).map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_names_its_key_and_source_not_a_source_line() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("IQS_MAX_CONCURRENT_CALLS", "lots");
            let err = load(None, &FlagOverrides::default())
                .err()
                .expect("a bad number is refused")
                .to_string();
            assert!(
                err.contains(
                    "`max_concurrent_calls` in environment variable IQS_MAX_CONCURRENT_CALLS"
                ),
                "{err}"
            );
            assert!(!err.contains(".rs:"), "{err}");
            jail.set_env("IQS_MAX_CONCURRENT_CALLS", "8");
            let flags = FlagOverrides {
                listen_addr: None,
                services: Some("billing".into()),
            };
            let err = load(None, &flags)
                .err()
                .expect("an unknown service")
                .to_string();
            assert!(err.contains("`services` on the command line"), "{err}");
            assert!(err.contains("billing"), "{err}");
            assert!(!err.contains(".rs:"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn tls_files_come_from_the_file_or_double_underscore_variables() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "iqs.toml",
                "[tls]\ncert_file = \"/tls/cert.pem\"\nreload_interval_ms = 100\n",
            )?;
            jail.set_env("IQS_TLS__KEY_FILE", "/tls/key.pem");
            let config = load(None, &FlagOverrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(config.tls.cert_file, Some(PathBuf::from("/tls/cert.pem")));
            assert_eq!(config.tls.key_file, Some(PathBuf::from("/tls/key.pem")));
            assert_eq!(config.tls.reload_interval_ms, 100);
            assert_eq!(config.tls.handshake_timeout_ms, 10_000);
            jail.set_env("IQS_TLS__CERT_FILE", "/tls/other.pem");
            let config = load(None, &FlagOverrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(config.tls.cert_file, Some(PathBuf::from("/tls/other.pem")));
            Ok(())
        });
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("IQS_TLS__CERT_FILE", "/tls/cert.pem");
            let err = load(None, &FlagOverrides::default())
                .err()
                .expect("a certificate needs its key")
                .to_string();
            assert!(err.contains("tls.key_file"), "{err}");
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
