//! SummaryCache on Redis. Each entity has a version counter and a hash of summaries
//! keyed by `version:request`; reads and conditional writes are Lua scripts, so a value
//! computed before an invalidation can never be stored after it. Every call has a
//! bounded timeout; while Redis is unreachable, lookups answer `Unavailable` at once and
//! a reconnect is tried at most once per `RECONNECT_EVERY`.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use redis::{Client, Script, aio::ConnectionManager};

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

pub struct RedisCache {
    client: Client,
    connection: Arc<RwLock<Connection>>,
    timeout: Duration,
    ttl: Duration,
    get: Script,
    put: Script,
    stats: CacheStats,
}

enum Connection {
    Ready(ConnectionManager),
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
        let client = Client::open(url).map_err(|err| format!("bad REDIS_URL: {err}"))?;
        Ok(Self {
            client,
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
    fn connection(&self) -> Option<ConnectionManager> {
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
        let (client, shared, timeout) = (
            self.client.clone(),
            self.connection.clone(),
            self.timeout * 10,
        );
        tokio::spawn(async move {
            let connected = tokio::time::timeout(timeout, ConnectionManager::new(client)).await;
            let next = match connected {
                Ok(Ok(manager)) => Connection::Ready(manager),
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
    async fn call<T, F>(&self, call: impl FnOnce(ConnectionManager) -> F) -> Option<T>
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
        // One pipeline: the script is loaded first, so every EVALSHA after it finds it.
        let mut pipeline = redis::pipe();
        pipeline.load_script(&self.get).ignore();
        for invocation in &invocations {
            pipeline.invoke_script(invocation);
        }
        let found: Option<Vec<(String, Option<Vec<u8>>)>> = self
            .call(|mut connection| async move { pipeline.query_async(&mut connection).await })
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
        let mut pipeline = redis::pipe();
        for entity in entities {
            let (version_key, hash_key) = keys(entity);
            pipeline
                .incr(version_key, 1)
                .ignore()
                .del(hash_key)
                .ignore();
        }
        let done: Option<()> = self
            .call(|mut connection| async move { pipeline.query_async(&mut connection).await })
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
