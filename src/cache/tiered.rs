//! A near cache in process memory in front of a shared far cache (Redis). A read that
//! the near tier answers costs no network round trip, which is what lets a cached
//! `GetAgentScore` keep up with the transport itself. The near tier lives briefly
//! (`cache_near_ttl_ms`): invalidations made by this process reach it at once, those
//! made by another instance's projector only reach the far tier, so a near value may
//! outlive them by at most its TTL.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

use super::{CacheEntity, CacheStats, Lookup, SummaryCache, memory::MemoryCache};

/// Separates the near and far versions inside the version a miss hands out. Near
/// versions are `generation.counter`, so they never hold it.
const VERSION_SEPARATOR: char = '|';

pub struct TieredCache {
    near: MemoryCache,
    far: Arc<dyn SummaryCache>,
    stats: CacheStats,
}

impl TieredCache {
    pub fn new(far: Arc<dyn SummaryCache>, near_ttl: Duration) -> Self {
        Self {
            near: MemoryCache::new(near_ttl),
            far,
            stats: CacheStats::default(),
        }
    }
}

impl TieredCache {
    /// The lookup of an entity the near tier did not hold, given the far tier's answer
    /// (`None`: not asked, as when it was unreachable for a whole batch).
    async fn combine(
        &self,
        entity: &CacheEntity,
        request_key: &str,
        near: Lookup,
        far: Option<Lookup>,
    ) -> Lookup {
        let far = far.unwrap_or(Lookup::Unavailable);
        let Lookup::Miss { version: near } = near else {
            return far;
        };
        match far {
            Lookup::Hit(value) => {
                // Dropped if this process invalidated the entity since the near miss;
                // the far tier is invalidated first, so it cannot have answered with a
                // value older than that invalidation.
                self.near
                    .put(entity, request_key, &near, value.clone())
                    .await;
                Lookup::Hit(value)
            }
            Lookup::Miss { version: far } => Lookup::Miss {
                version: format!("{near}{VERSION_SEPARATOR}{far}"),
            },
            // The far tier is down: computed values still fill the near tier.
            Lookup::Unavailable => Lookup::Miss {
                version: format!("{near}{VERSION_SEPARATOR}"),
            },
        }
    }
}

#[async_trait]
impl SummaryCache for TieredCache {
    async fn get(&self, entity: &CacheEntity, request_key: &str) -> Lookup {
        let lookup = match self.near.get(entity, request_key).await {
            Lookup::Hit(value) => Lookup::Hit(value),
            near => {
                let far = self.far.get(entity, request_key).await;
                self.combine(entity, request_key, near, Some(far)).await
            }
        };
        self.stats.record(&lookup);
        lookup
    }

    async fn get_many(&self, keys: &[(CacheEntity, String)]) -> Vec<Lookup> {
        let near = self.near.get_many(keys).await;
        let missing: Vec<(CacheEntity, String)> = keys
            .iter()
            .zip(&near)
            .filter(|(_, lookup)| !matches!(lookup, Lookup::Hit(_)))
            .map(|(key, _)| key.clone())
            .collect();
        let mut far = self.far.get_many(&missing).await.into_iter();
        let mut lookups = Vec::with_capacity(keys.len());
        for ((entity, request_key), near) in keys.iter().zip(near) {
            let lookup = match near {
                Lookup::Hit(value) => Lookup::Hit(value),
                near => self.combine(entity, request_key, near, far.next()).await,
            };
            self.stats.record(&lookup);
            lookups.push(lookup);
        }
        lookups
    }

    async fn put(&self, entity: &CacheEntity, request_key: &str, version: &str, value: Vec<u8>) {
        let Some((near, far)) = version.split_once(VERSION_SEPARATOR) else {
            return;
        };
        if !far.is_empty() {
            self.far.put(entity, request_key, far, value.clone()).await;
        }
        self.near.put(entity, request_key, near, value).await;
    }

    /// The far tier first: a read between the two steps can then only refill the near
    /// tier from a far tier that is already current. The near tier is invalidated even
    /// when the far tier cannot be reached, and the error makes the caller retry both.
    async fn invalidate(&self, entities: &[CacheEntity]) -> Result<(), String> {
        let far = self.far.invalidate(entities).await;
        self.near.invalidate(entities).await?;
        far
    }

    fn stats(&self) -> &CacheStats {
        &self.stats
    }
}
