//! SummaryCache in process memory, for a server without Redis. Same contract as the
//! Redis adapter: each entity has a version, values are stored under the version they
//! were computed at, and a `put` for an entity invalidated since is dropped. Values are
//! bounded in number and live at most the TTL.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use async_trait::async_trait;
use moka::sync::Cache;

use super::{CacheEntity, CacheStats, Lookup, SummaryCache};

/// Summaries kept at most; the least recently used go first.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

/// Entities whose versions are tracked before the versions start over.
const MAX_TRACKED_ENTITIES: usize = 1_000_000;

type Key = (CacheEntity, String, String);

pub struct MemoryCache {
    versions: Mutex<Versions>,
    values: Cache<Key, Vec<u8>>,
    stats: CacheStats,
}

/// An entity's version is `generation.counter`. Starting over bumps the generation, so
/// a version handed out before can never be handed out again.
#[derive(Default)]
struct Versions {
    generation: u64,
    counters: HashMap<CacheEntity, u64>,
}

impl Versions {
    fn of(&self, entity: &CacheEntity) -> String {
        let counter = self.counters.get(entity).copied().unwrap_or(0);
        format!("{}.{counter}", self.generation)
    }
}

impl MemoryCache {
    pub fn new(ttl: Duration) -> Self {
        Self::with_capacity(ttl, DEFAULT_MAX_ENTRIES)
    }

    pub fn with_capacity(ttl: Duration, max_entries: u64) -> Self {
        Self {
            versions: Mutex::new(Versions::default()),
            values: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
            stats: CacheStats::default(),
        }
    }

    fn versions(&self) -> std::sync::MutexGuard<'_, Versions> {
        // A panic elsewhere cannot leave the map half-updated: recover it.
        self.versions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl SummaryCache for MemoryCache {
    async fn get(&self, entity: &CacheEntity, request_key: &str) -> Lookup {
        let version = self.versions().of(entity);
        let key = (entity.clone(), version.clone(), request_key.to_owned());
        let lookup = match self.values.get(&key) {
            Some(value) => Lookup::Hit(value),
            None => Lookup::Miss { version },
        };
        self.stats.record(&lookup);
        lookup
    }

    async fn put(&self, entity: &CacheEntity, request_key: &str, version: &str, value: Vec<u8>) {
        // Checked and inserted under the lock, so no invalidation falls in between.
        let versions = self.versions();
        if versions.of(entity) == version {
            self.values.insert(
                (entity.clone(), version.to_owned(), request_key.to_owned()),
                value,
            );
        }
    }

    async fn invalidate(&self, entities: &[CacheEntity]) -> Result<(), String> {
        let mut versions = self.versions();
        if versions.counters.len() + entities.len() > MAX_TRACKED_ENTITIES {
            versions.generation += 1;
            versions.counters.clear();
            self.values.invalidate_all();
        }
        for entity in entities {
            *versions.counters.entry(entity.clone()).or_insert(0) += 1;
        }
        Ok(())
    }

    fn stats(&self) -> &CacheStats {
        &self.stats
    }
}
