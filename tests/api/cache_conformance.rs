//! One suite of cache behaviours, run on every adapter: Redis (the server at `REDIS_URL`,
//! else the local one), the in-process memory cache, and the two tiered (memory in front
//! of Redis). Then what only the tiered cache does. Each test uses a tenant of its
//! own, so tests never meet on the shared Redis.

use std::{sync::Arc, time::Duration};

use iqs::cache::{
    CacheEntity, Lookup, SummaryCache, memory::MemoryCache, redis::RedisCache, tiered::TieredCache,
};
use iqs::domain::tenant::TenantId;
use uuid::Uuid;

const TTL: Duration = Duration::from_millis(400);

#[derive(Debug, Clone, Copy)]
enum Adapter {
    Redis,
    Memory,
    Tiered,
}

fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

fn redis(url: &str) -> Arc<RedisCache> {
    Arc::new(RedisCache::new(url, Duration::from_secs(2), TTL).expect("Redis URL"))
}

fn cache(adapter: Adapter) -> Arc<dyn SummaryCache> {
    match adapter {
        Adapter::Redis => redis(&redis_url()),
        Adapter::Memory => Arc::new(MemoryCache::new(TTL)),
        Adapter::Tiered => Arc::new(TieredCache::new(redis(&redis_url()), TTL)),
    }
}

fn agent(tenant: TenantId, id: &str) -> CacheEntity {
    CacheEntity::Agent(tenant, id.to_owned())
}

fn new_tenant() -> TenantId {
    TenantId(Uuid::now_v7())
}

/// A miss, retried while the Redis adapter connects in the background (the tiered
/// cache answers a miss of its near tier alone meanwhile: its version ends in `|`).
async fn miss_version(cache: &dyn SummaryCache, entity: &CacheEntity, request: &str) -> String {
    for _ in 0..100 {
        match cache.get(entity, request).await {
            Lookup::Miss { version } if !version.ends_with('|') => return version,
            Lookup::Miss { .. } => tokio::time::sleep(Duration::from_millis(20)).await,
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

/// Runs each named `async fn(Adapter)` as `<name>::on_redis`, `::on_memory` and `::on_tiered`.
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

                #[tokio::test]
                async fn on_tiered() {
                    super::$name(super::Adapter::Tiered).await
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

/// Two instances' tiered caches over one Redis, as two IQS servers share it.
fn two_instances(near_ttl: Duration) -> (TieredCache, TieredCache, Arc<RedisCache>) {
    let url = redis_url();
    let far_of_b = redis(&url);
    let a = TieredCache::new(redis(&url), near_ttl);
    let b = TieredCache::new(far_of_b.clone(), near_ttl);
    (a, b, far_of_b)
}

#[tokio::test]
async fn a_value_from_redis_is_kept_near_so_repeated_reads_skip_redis() {
    let (a, b, far_of_b) = two_instances(Duration::from_secs(60));
    let entity = agent(new_tenant(), "ana");
    let version = miss_version(&a, &entity, "q").await;
    a.put(&entity, "q", &version, b"shared".to_vec()).await;
    miss_version(&*far_of_b, &entity, "warm-up").await;
    let far_hits = far_of_b.stats().hits();
    for _ in 0..5 {
        assert_eq!(b.get(&entity, "q").await, Lookup::Hit(b"shared".to_vec()));
    }
    assert_eq!(far_of_b.stats().hits(), far_hits + 1, "Redis answered once");
    assert_eq!(b.stats().hits(), 5);
}

#[tokio::test]
async fn an_invalidation_by_another_instance_reaches_the_near_tier_within_its_ttl() {
    let near_ttl = Duration::from_millis(300);
    let (a, b, _) = two_instances(near_ttl);
    let entity = agent(new_tenant(), "ana");
    let version = miss_version(&a, &entity, "q").await;
    a.put(&entity, "q", &version, b"old".to_vec()).await;
    miss_version(&b, &entity, "warm-up").await;
    assert_eq!(b.get(&entity, "q").await, Lookup::Hit(b"old".to_vec()));
    a.invalidate(std::slice::from_ref(&entity)).await.unwrap();
    assert!(matches!(a.get(&entity, "q").await, Lookup::Miss { .. }));
    let invalidated = std::time::Instant::now();
    while let Lookup::Hit(_) = b.get(&entity, "q").await {
        assert!(
            invalidated.elapsed() < near_ttl * 2,
            "a near value outlived its TTL"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn with_redis_unreachable_the_near_tier_still_caches_and_invalidates() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = Arc::new(
        RedisCache::new(
            &format!("redis://127.0.0.1:{port}"),
            Duration::from_millis(50),
            TTL,
        )
        .unwrap(),
    );
    let cache = TieredCache::new(unreachable, TTL);
    let entity = agent(new_tenant(), "ana");
    let Lookup::Miss { version } = cache.get(&entity, "q").await else {
        panic!("expected a miss");
    };
    cache.put(&entity, "q", &version, b"near".to_vec()).await;
    assert_eq!(cache.get(&entity, "q").await, Lookup::Hit(b"near".to_vec()));
    assert!(
        cache
            .invalidate(std::slice::from_ref(&entity))
            .await
            .is_err(),
        "the caller must retry the far tier"
    );
    assert!(matches!(cache.get(&entity, "q").await, Lookup::Miss { .. }));
}
