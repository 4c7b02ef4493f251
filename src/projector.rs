//! The analytics projector: applies the evaluation outbox to the rollups, woken by the
//! store's outbox wake-ups (LISTEN/NOTIFY on PostgreSQL), with polling as the fallback. Several replicas may run; one applies at
//! a time (the cursor row is locked with SKIP LOCKED).

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use tokio::sync::watch;

use crate::cache::{CacheEntity, SummaryCache};
use crate::store::{AnalyticsStore, AppliedBatch, OutboxWakeups};

/// Events applied per transaction.
pub const BATCH_SIZE: u32 = 500;
/// How often to look for events when no notification arrives.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How soon to look again when events wait for older transactions to end. Notifications
/// do not cut this short: under a steady write load every commit notifies while some older
/// transaction is still open, and looking again at each one made the projector run about
/// two empty transactions per submission.
pub const PENDING_RETRY: Duration = Duration::from_millis(5);
const ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// How long the store may stay busy or unreachable before the projector warns: another
/// process writing to the embedded store (`iqs demo seed`, say) holds its write lock for
/// seconds at a time, which is no one's problem.
const WARN_AFTER: Duration = Duration::from_secs(30);
/// How long events gather before the next batch, after a batch of several events that
/// was not full. Each batch has a fixed cost (the cursor, five rollup statements, a
/// commit): looking again at once, under a steady write load, applied a few events per
/// transaction. A batch of one event is no sign of load: the next one is not held back.
pub const GATHER: Duration = Duration::from_millis(10);

/// How soon to retry invalidations the cache could not take.
const INVALIDATION_RETRY: Duration = Duration::from_millis(250);

pub struct Projector {
    store: Arc<dyn AnalyticsStore>,
    cache: Option<Arc<dyn SummaryCache>>,
    /// Entities whose cached summaries are older than the rollups, until the cache
    /// confirms their invalidation.
    stale: BTreeSet<CacheEntity>,
}

impl Projector {
    pub fn new(store: Arc<dyn AnalyticsStore>, cache: Option<Arc<dyn SummaryCache>>) -> Self {
        Self {
            store,
            cache,
            stale: BTreeSet::new(),
        }
    }

    fn mark_stale(&mut self, applied: &AppliedBatch) {
        if self.cache.is_none() {
            return;
        }
        let agents = applied
            .agents
            .iter()
            .map(|(t, id)| CacheEntity::Agent(*t, id.clone()));
        let teams = applied
            .teams
            .iter()
            .map(|(t, id)| CacheEntity::Team(*t, id.clone()));
        self.stale.extend(agents.chain(teams));
    }

    /// Invalidates the stale entities; keeps them for a retry when the cache is down.
    async fn invalidate(&mut self) {
        let Some(cache) = &self.cache else { return };
        if self.stale.is_empty() {
            return;
        }
        let entities: Vec<CacheEntity> = self.stale.iter().cloned().collect();
        match cache.invalidate(&entities).await {
            Ok(()) => self.stale.clear(),
            Err(err) => {
                tracing::debug!(%err, pending = entities.len(), "cache invalidation deferred")
            }
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut wakeups: Option<Box<dyn OutboxWakeups>> = match self.store.outbox_wakeups().await {
            Ok(wakeups) => Some(wakeups),
            Err(err) => {
                tracing::warn!(%err, "cannot subscribe to outbox events; polling only");
                None
            }
        };
        let mut failures = Failures::default();
        loop {
            if *stop.borrow() {
                return;
            }
            let (wait, woken_by_notifications) = match self.store.apply_pending(BATCH_SIZE).await {
                Ok(applied) if applied.events > 0 => {
                    failures.ended("projector applies events again");
                    tracing::debug!(events = applied.events, "applied outbox events");
                    self.mark_stale(&applied);
                    self.invalidate().await;
                    if applied.events > 1 && applied.events < BATCH_SIZE as usize {
                        tokio::select! {
                            () = tokio::time::sleep(GATHER) => {}
                            _ = stop.changed() => {}
                        }
                    }
                    continue;
                }
                Ok(_) => match self.store.has_pending().await {
                    Ok(true) => {
                        failures.ended("projector applies events again");
                        (PENDING_RETRY, false)
                    }
                    Ok(false) => {
                        failures.ended("projector applies events again");
                        (POLL_INTERVAL, true)
                    }
                    Err(err) => {
                        failures.failed(&err, "projector cannot read the outbox");
                        (ERROR_BACKOFF, true)
                    }
                },
                Err(err) => {
                    failures.failed(&err, "projector cannot apply events");
                    (ERROR_BACKOFF, true)
                }
            };
            self.invalidate().await;
            let wait = if self.stale.is_empty() {
                wait
            } else {
                wait.min(INVALIDATION_RETRY)
            };
            let notified = async {
                match wakeups.as_mut() {
                    Some(wakeups) => wakeups.wait().await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = notified, if woken_by_notifications => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// How the projector reports failing calls: a store that is busy or unreachable for a
/// moment is expected and logged at debug level; one still failing after `WARN_AFTER`
/// is warned about once, and its recovery said. Any other error is warned about at once.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    since: Option<std::time::Instant>,
    warned: bool,
}

impl Failures {
    pub(crate) fn failed(&mut self, err: &crate::error::Error, what: &str) {
        let now = std::time::Instant::now();
        let since = *self.since.get_or_insert(now);
        if self.should_warn(err, now.duration_since(since)) {
            tracing::warn!(%err, failing_for_s = now.duration_since(since).as_secs(), "{what}");
            self.warned = true;
        } else {
            tracing::debug!(%err, "{what}");
        }
    }

    fn should_warn(&self, err: &crate::error::Error, failing_for: Duration) -> bool {
        match err {
            crate::error::Error::Unavailable(_) => !self.warned && failing_for >= WARN_AFTER,
            _ => true,
        }
    }

    /// The failing ended; `recovered` says what works again, when a warning was given.
    pub(crate) fn ended(&mut self, recovered: &str) {
        if self.warned {
            tracing::info!("{recovered}");
        }
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn a_busy_store_is_warned_about_once_after_30_seconds_and_other_errors_at_once() {
        let failures = Failures::default();
        let busy = Error::Unavailable("database is locked".into());
        assert!(!failures.should_warn(&busy, Duration::from_secs(5)));
        assert!(failures.should_warn(&busy, WARN_AFTER));
        let warned = Failures {
            warned: true,
            ..Failures::default()
        };
        assert!(!warned.should_warn(&busy, Duration::from_secs(600)));
        assert!(failures.should_warn(&Error::Internal("broken".into()), Duration::ZERO));
    }
}
