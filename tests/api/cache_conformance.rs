//! One suite of cache behaviours, run on both adapters: Redis (the server at `REDIS_URL`,
//! else the local one) and the in-process memory cache. Each test uses a tenant of its
//! own, so tests never meet on the shared Redis.

use std::{sync::Arc, time::Duration};

use iqs::cache::{CacheEntity, Lookup, SummaryCache, memory::MemoryCache, redis::RedisCache};
use iqs::domain::tenant::TenantId;
use uuid::Uuid;

const TTL: Duration = Duration::from_millis(400);

#[derive(Debug, Clone, Copy)]
enum Adapter {
    Redis,
    Memory,
}

fn cache(adapter: Adapter) -> Arc<dyn SummaryCache> {
    match adapter {
        Adapter::Redis => {
            let url = std::env::var("REDIS_URL")
                .ok()
                .filter(|url| !url.is_empty())
                .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
            Arc::new(RedisCache::new(&url, Duration::from_secs(2), TTL).expect("Redis URL"))
        }
        Adapter::Memory => Arc::new(MemoryCache::new(TTL)),
    }
}

fn agent(tenant: TenantId, id: &str) -> CacheEntity {
    CacheEntity::Agent(tenant, id.to_owned())
}

fn new_tenant() -> TenantId {
    TenantId(Uuid::now_v7())
}

/// A miss, retried while the Redis adapter connects in the background.
async fn miss_version(cache: &dyn SummaryCache, entity: &CacheEntity, request: &str) -> String {
    for _ in 0..100 {
        match cache.get(entity, request).await {
            Lookup::Miss { version } => return version,
            Lookup::Unavailable => tokio::time::sleep(Duration::from_millis(20)).await,
            Lookup::Hit(value) => panic!("unexpected hit {value:?}"),
        }
    }
    panic!("the cache never answered");
}

async fn a_value_put_after_a_miss_is_a_hit_with_the_same_bytes(adapter: Adapter) {
    let cache = cache(adapter);
    let entity = agent(new_tenant(), "ana");
    let version = miss_version(cache.as_ref(), &entity, "q1").await;
    cache
        .put(&entity, "q1", &version, b"summary".to_vec())
        .await;
    assert_eq!(
        cache.get(&entity, "q1").await,
        Lookup::Hit(b"summary".to_vec())
    );
    assert!(matches!(
        cache.get(&entity, "q2").await,
        Lookup::Miss { .. }
    ));
}

async fn a_put_after_an_invalidation_is_dropped(adapter: Adapter) {
    let cache = cache(adapter);
    let entity = agent(new_tenant(), "ana");
    let version = miss_version(cache.as_ref(), &entity, "q").await;
    cache
        .invalidate(std::slice::from_ref(&entity))
        .await
        .unwrap();
    cache.put(&entity, "q", &version, b"stale".to_vec()).await;
    let fresh = miss_version(cache.as_ref(), &entity, "q").await;
    assert_ne!(fresh, version);
    cache.put(&entity, "q", &fresh, b"fresh".to_vec()).await;
    assert_eq!(
        cache.get(&entity, "q").await,
        Lookup::Hit(b"fresh".to_vec())
    );
}

async fn invalidating_one_entity_keeps_the_others(adapter: Adapter) {
    let cache = cache(adapter);
    let (tenant, other_tenant) = (new_tenant(), new_tenant());
    let entities = [
        agent(tenant, "ana"),
        agent(tenant, "ben"),
        agent(other_tenant, "ana"),
        CacheEntity::Team(tenant, "ana".to_owned()),
    ];
    for entity in &entities {
        let version = miss_version(cache.as_ref(), entity, "q").await;
        cache
            .put(entity, "q", &version, format!("{entity:?}").into_bytes())
            .await;
    }
    cache.invalidate(&entities[..1]).await.unwrap();
    assert!(matches!(
        cache.get(&entities[0], "q").await,
        Lookup::Miss { .. }
    ));
    for entity in &entities[1..] {
        assert_eq!(
            cache.get(entity, "q").await,
            Lookup::Hit(format!("{entity:?}").into_bytes()),
            "{entity:?}"
        );
    }
}

async fn values_expire_after_the_ttl(adapter: Adapter) {
    let cache = cache(adapter);
    let entity = agent(new_tenant(), "ana");
    let version = miss_version(cache.as_ref(), &entity, "q").await;
    cache
        .put(&entity, "q", &version, b"short-lived".to_vec())
        .await;
    assert!(matches!(cache.get(&entity, "q").await, Lookup::Hit(_)));
    tokio::time::sleep(TTL * 3).await;
    assert!(matches!(cache.get(&entity, "q").await, Lookup::Miss { .. }));
}

async fn hits_and_misses_are_counted(adapter: Adapter) {
    let cache = cache(adapter);
    let entity = agent(new_tenant(), "ana");
    let version = miss_version(cache.as_ref(), &entity, "q").await;
    let misses = cache.stats().misses();
    cache.put(&entity, "q", &version, b"v".to_vec()).await;
    cache.get(&entity, "q").await;
    cache.get(&entity, "q").await;
    cache.get(&entity, "other").await;
    assert_eq!(cache.stats().hits(), 2);
    assert_eq!(cache.stats().misses(), misses + 1);
}

/// Runs each named `async fn(Adapter)` as `<name>::on_redis` and `<name>::on_memory`.
macro_rules! on_every_cache {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn on_redis() {
                    super::$name(super::Adapter::Redis).await
                }

                #[tokio::test]
                async fn on_memory() {
                    super::$name(super::Adapter::Memory).await
                }
            }
        )*
    };
}

on_every_cache! {
    a_value_put_after_a_miss_is_a_hit_with_the_same_bytes,
    a_put_after_an_invalidation_is_dropped,
    invalidating_one_entity_keeps_the_others,
    values_expire_after_the_ttl,
    hits_and_misses_are_counted,
}
