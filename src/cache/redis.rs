//! SummaryCache on Redis, one server or a Redis Cluster. Each entity has a version
//! counter and a hash of summaries keyed by `version:request`; reads and conditional
//! writes are Lua scripts, so a value computed before an invalidation can never be
//! stored after it. Every call has a bounded timeout; while Redis is unreachable,
//! lookups answer `Unavailable` at once and a reconnect is tried at most once per
//! `RECONNECT_EVERY`. On a cluster both keys of an entity share a slot, and what one
//! server takes in one pipeline is sent as one request per entity, concurrently.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use futures_util::future::join_all;
use redis::{
    Client, Cmd, Pipeline, RedisFuture, Script, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
};

use super::{CacheEntity, CacheStats, Lookup, SummaryCache};

const RECONNECT_EVERY: Duration = Duration::from_secs(1);

const GET: &str = r"
local version = redis.call('GET', KEYS[1]) or '0'
local value = redis.call('HGET', KEYS[2], version .. ':' .. ARGV[1])
return {version, value}
";

const PUT: &str = r"
local version = redis.call('GET', KEYS[1]) or '0'
if version ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], version .. ':' .. ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
";

/// Where the cache lives: one server, or the nodes of a cluster.
#[derive(Clone)]
enum Servers {
    Single(Box<Client>),
    Cluster(Box<ClusterClient>),
}

impl Servers {
    /// `redis://…` (or `rediss://…`) is one server. A cluster is named by its nodes:
    /// `redis+cluster://host:port,host:port` (`rediss+cluster://` over TLS), or
    /// several URLs separated by commas.
    fn parse(url: &str) -> Result<Self, String> {
        let bad = |err: redis::RedisError| format!("bad REDIS_URL: {err}");
        let cluster_scheme = ["redis+cluster://", "rediss+cluster://"]
            .into_iter()
            .find_map(|scheme| url.strip_prefix(scheme).map(|rest| (scheme, rest)));
        let nodes: Vec<String> = match cluster_scheme {
            Some((scheme, rest)) => {
                let scheme = scheme.replace("+cluster", "");
                rest.split(',')
                    .map(|node| format!("{scheme}{}", node.trim()))
                    .collect()
            }
            None if url.contains(',') => {
                url.split(',').map(|node| node.trim().to_owned()).collect()
            }
            None => {
                return Client::open(url)
                    .map(|client| Servers::Single(Box::new(client)))
                    .map_err(bad);
            }
        };
        if nodes.iter().any(|node| node.ends_with("://")) {
            return Err(format!(
                "bad REDIS_URL: a cluster node without an address in {url:?}"
            ));
        }
        ClusterClient::new(nodes)
            .map(|client| Servers::Cluster(Box::new(client)))
            .map_err(bad)
    }

    async fn connect(self) -> redis::RedisResult<Link> {
        match self {
            Servers::Single(client) => ConnectionManager::new(*client).await.map(Link::Single),
            Servers::Cluster(client) => client.get_async_connection().await.map(Link::Cluster),
        }
    }
}

/// A connection to one server or to a cluster, for the scripts and pipelines alike.
#[derive(Clone)]
enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(connection) => connection.req_packed_command(cmd),
            Link::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Link::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(connection) => connection.get_db(),
            Link::Cluster(connection) => connection.get_db(),
        }
    }
}

pub struct RedisCache {
    servers: Servers,
    connection: Arc<RwLock<Connection>>,
    timeout: Duration,
    ttl: Duration,
    get: Script,
    put: Script,
    stats: CacheStats,
}

enum Connection {
    Ready(Link),
    Down { since: Instant, reconnecting: bool },
}

/// The version key and the hash key of an entity. The braces keep both in one Redis
/// Cluster slot, as the scripts need.
fn keys(entity: &CacheEntity) -> (String, String) {
    let slot = match entity {
        CacheEntity::Agent(tenant, id) => format!("iqs:{{{tenant}:agent:{id}}}"),
        CacheEntity::Team(tenant, id) => format!("iqs:{{{tenant}:team:{id}}}"),
    };
    (format!("{slot}:version"), format!("{slot}:summaries"))
}

impl RedisCache {
    /// Does not connect yet: Redis may be down when IQS starts.
    pub fn new(url: &str, timeout: Duration, ttl: Duration) -> Result<Self, String> {
        Ok(Self {
            servers: Servers::parse(url)?,
            connection: Arc::new(RwLock::new(Connection::Down {
                since: Instant::now() - RECONNECT_EVERY,
                reconnecting: false,
            })),
            timeout,
            ttl,
            get: Script::new(GET),
            put: Script::new(PUT),
            stats: CacheStats::default(),
        })
    }

    /// The connection when there is one. Otherwise a reconnect starts in the background
    /// (at most one at a time, once per `RECONNECT_EVERY`), never on the caller's path.
    fn connection(&self) -> Option<Link> {
        if let Ok(connection) = self.connection.read()
            && let Connection::Ready(manager) = &*connection
        {
            return Some(manager.clone());
        }
        let Ok(mut connection) = self.connection.write() else {
            return None;
        };
        match &*connection {
            Connection::Ready(manager) => return Some(manager.clone()),
            Connection::Down {
                since,
                reconnecting,
            } if *reconnecting || since.elapsed() < RECONNECT_EVERY => {
                return None;
            }
            Connection::Down { since, .. } => {
                *connection = Connection::Down {
                    since: *since,
                    reconnecting: true,
                };
            }
        }
        let (servers, shared, timeout) = (
            self.servers.clone(),
            self.connection.clone(),
            self.timeout * 10,
        );
        tokio::spawn(async move {
            let connected = tokio::time::timeout(timeout, servers.connect()).await;
            let next = match connected {
                Ok(Ok(link)) => Connection::Ready(link),
                _ => Connection::Down {
                    since: Instant::now(),
                    reconnecting: false,
                },
            };
            if let Ok(mut connection) = shared.write() {
                *connection = next;
            }
        });
        None
    }

    fn mark_down(&self) {
        if let Ok(mut connection) = self.connection.write()
            && matches!(&*connection, Connection::Ready(_))
        {
            *connection = Connection::Down {
                since: Instant::now(),
                reconnecting: false,
            };
        }
    }

    /// Runs a call with the timeout; a failure marks the connection down.
    async fn call<T, F>(&self, call: impl FnOnce(Link) -> F) -> Option<T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.connection()?;
        match tokio::time::timeout(self.timeout, call(connection)).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(err)) => {
                tracing::debug!(%err, "redis call failed");
                self.mark_down();
                None
            }
            Err(_) => {
                tracing::debug!("redis call timed out");
                self.mark_down();
                None
            }
        }
    }
}

#[async_trait]
impl SummaryCache for RedisCache {
    #[tracing::instrument(name = "cache.get", skip_all, fields(cache.system = "redis"))]
    async fn get(&self, entity: &CacheEntity, request_key: &str) -> Lookup {
        let (version_key, hash_key) = keys(entity);
        let found: Option<(String, Option<Vec<u8>>)> = self
            .call(|mut connection| async move {
                self.get
                    .key(&version_key)
                    .key(&hash_key)
                    .arg(request_key)
                    .invoke_async(&mut connection)
                    .await
            })
            .await;
        let lookup = match found {
            Some((_, Some(value))) => Lookup::Hit(value),
            Some((version, None)) => Lookup::Miss { version },
            None => Lookup::Unavailable,
        };
        self.stats.record(&lookup);
        lookup
    }

    #[tracing::instrument(name = "cache.get_many", skip_all, fields(cache.system = "redis", cache.entities = lookups.len()))]
    async fn get_many(&self, lookups: &[(CacheEntity, String)]) -> Vec<Lookup> {
        if lookups.is_empty() {
            return Vec::new();
        }
        let keys: Vec<(String, String)> = lookups.iter().map(|(entity, _)| keys(entity)).collect();
        let invocations: Vec<redis::ScriptInvocation<'_>> = keys
            .iter()
            .zip(lookups)
            .map(|((version_key, hash_key), (_, request_key))| {
                let mut invocation = self.get.key(version_key);
                invocation.key(hash_key).arg(request_key);
                invocation
            })
            .collect();
        let found: Option<Vec<(String, Option<Vec<u8>>)>> = self
            .call(|mut connection| async move {
                match connection {
                    // One pipeline: the script is loaded first, so every EVALSHA after
                    // it finds it.
                    Link::Single(_) => {
                        let mut pipeline = redis::pipe();
                        pipeline.load_script(&self.get).ignore();
                        for invocation in &invocations {
                            pipeline.invoke_script(invocation);
                        }
                        pipeline.query_async(&mut connection).await
                    }
                    // Entities live in different slots: one script call each, at once.
                    Link::Cluster(_) => join_all(invocations.iter().map(|invocation| {
                        let mut connection = connection.clone();
                        async move { invocation.invoke_async(&mut connection).await }
                    }))
                    .await
                    .into_iter()
                    .collect(),
                }
            })
            .await;
        let entities = lookups.len();
        let lookups: Vec<Lookup> = match found {
            Some(found) if found.len() == entities => found
                .into_iter()
                .map(|found| match found {
                    (_, Some(value)) => Lookup::Hit(value),
                    (version, None) => Lookup::Miss { version },
                })
                .collect(),
            _ => vec![Lookup::Unavailable; entities],
        };
        for lookup in &lookups {
            self.stats.record(lookup);
        }
        lookups
    }

    #[tracing::instrument(name = "cache.put", skip_all, fields(cache.system = "redis"))]
    async fn put(&self, entity: &CacheEntity, request_key: &str, version: &str, value: Vec<u8>) {
        let (version_key, hash_key) = keys(entity);
        let ttl = self.ttl.as_millis().max(1) as u64;
        let _: Option<i64> = self
            .call(|mut connection| async move {
                self.put
                    .key(&version_key)
                    .key(&hash_key)
                    .arg(version)
                    .arg(request_key)
                    .arg(value)
                    .arg(ttl)
                    .invoke_async(&mut connection)
                    .await
            })
            .await;
    }

    #[tracing::instrument(name = "cache.invalidate", skip_all, fields(cache.system = "redis"))]
    async fn invalidate(&self, entities: &[CacheEntity]) -> Result<(), String> {
        if entities.is_empty() {
            return Ok(());
        }
        let invalidation = |pipeline: &mut Pipeline, entity: &CacheEntity| {
            let (version_key, hash_key) = keys(entity);
            pipeline
                .incr(version_key, 1)
                .ignore()
                .del(hash_key)
                .ignore();
        };
        let done: Option<()> = self
            .call(|mut connection| async move {
                match connection {
                    Link::Single(_) => {
                        let mut pipeline = redis::pipe();
                        for entity in entities {
                            invalidation(&mut pipeline, entity);
                        }
                        pipeline.query_async(&mut connection).await
                    }
                    // One pipeline per entity: its two keys share a slot.
                    Link::Cluster(_) => join_all(entities.iter().map(|entity| {
                        let mut connection = connection.clone();
                        let mut pipeline = redis::pipe();
                        invalidation(&mut pipeline, entity);
                        async move { pipeline.query_async::<()>(&mut connection).await }
                    }))
                    .await
                    .into_iter()
                    .collect(),
                }
            })
            .await;
        done.ok_or_else(|| "redis is unreachable".to_owned())
    }

    fn stats(&self) -> &CacheStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::domain::tenant::TenantId;

    #[test]
    fn a_redis_url_names_one_server_or_the_nodes_of_a_cluster() {
        assert!(matches!(
            Servers::parse("redis://127.0.0.1:6379"),
            Ok(Servers::Single(_))
        ));
        for cluster in [
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
            "redis://127.0.0.1:7000, redis://127.0.0.1:7001",
        ] {
            assert!(
                matches!(Servers::parse(cluster), Ok(Servers::Cluster(_))),
                "{cluster}"
            );
        }
        for bad in ["redis+cluster://127.0.0.1:7000,", "nonsense"] {
            match Servers::parse(bad) {
                Err(err) => assert!(err.starts_with("bad REDIS_URL"), "{bad}: {err}"),
                Ok(_) => panic!("{bad} was taken for a Redis URL"),
            }
        }
    }

    #[test]
    fn both_keys_of_an_entity_share_a_cluster_slot_and_tenants_do_not_share_keys() {
        let tenant = TenantId(Uuid::nil());
        let (version, hash) = keys(&CacheEntity::Agent(tenant, "ana".into()));
        let tag = |key: &str| key[key.find('{').unwrap()..=key.find('}').unwrap()].to_owned();
        assert_eq!(tag(&version), tag(&hash));
        let other = keys(&CacheEntity::Agent(TenantId(Uuid::now_v7()), "ana".into()));
        assert_ne!(version, other.0);
        assert_ne!(keys(&CacheEntity::Team(tenant, "ana".into())).0, version);
    }
}
