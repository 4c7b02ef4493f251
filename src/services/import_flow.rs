//! Holds an import back while the projector is far behind it.
//!
//! An import writes faster than the projector applies its events (on two cores, about
//! 10,000 rows/s against a projector that must also share them), and every event not
//! yet applied is a row the outbox holds and a figure the analytics do not show yet. So
//! before each batch, an import finding the projector more than `limit` events behind
//! waits until it is back within half of it: the import then writes several batches
//! before it waits again, rather than one batch after each poll.
//!
//! A projector that does not move (none runs, or it is stopped) must not stop imports:
//! when the backlog has not shrunk for `STALLED_AFTER`, the import goes on, and no import
//! waits again until the projector is seen to move.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::{Instant, sleep};

use crate::store::StoreHealth;

/// How often a held import looks at the backlog again.
const POLL: Duration = Duration::from_millis(10);
/// How long a backlog that does not shrink means the projector is not running.
const STALLED_AFTER: Duration = Duration::from_secs(1);

pub struct ProjectionBackpressure {
    health: Arc<dyn StoreHealth>,
    /// Events the projector may be behind before an import waits; 0 never waits.
    limit: u64,
    /// The backlog when the projector was last seen not moving: while it is no smaller,
    /// imports do not wait.
    stalled_at: Mutex<Option<u64>>,
}

impl ProjectionBackpressure {
    pub fn new(health: Arc<dyn StoreHealth>, limit: u64) -> Self {
        Self {
            health,
            limit,
            stalled_at: Mutex::new(None),
        }
    }

    /// Returns at once when the projector is at most `limit` events behind; otherwise once
    /// it is back within half of `limit`, or is not moving. A
    /// store that cannot say how far behind it is holds nothing back: the write that
    /// follows reports the store's trouble.
    pub async fn wait_for_projector(&self) {
        if self.limit == 0 {
            return;
        }
        let Ok(mut pending) = self.health.pending_events().await else {
            return;
        };
        if pending <= self.limit {
            self.set_stalled(None);
            return;
        }
        if self.stalled_at().is_some_and(|stalled| pending >= stalled) {
            return;
        }
        let mut moved_at = Instant::now();
        loop {
            sleep(POLL).await;
            let Ok(now) = self.health.pending_events().await else {
                return;
            };
            if now <= self.limit / 2 {
                self.set_stalled(None);
                return;
            }
            if now < pending {
                moved_at = Instant::now();
            } else if moved_at.elapsed() >= STALLED_AFTER {
                tracing::warn!(
                    pending = now,
                    limit = self.limit,
                    "the projector has not applied any event for a second; imports go on without waiting for it"
                );
                self.set_stalled(Some(now));
                return;
            }
            pending = now;
        }
    }

    fn stalled_at(&self) -> Option<u64> {
        *self
            .stalled_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_stalled(&self, pending: Option<u64>) {
        *self
            .stalled_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = pending;
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use async_trait::async_trait;

    use super::*;
    use crate::error::Result;
    use crate::store::PoolUsage;

    /// Answers the backlogs it was given in turn, then the last one again.
    struct Backlogs {
        answers: Mutex<VecDeque<u64>>,
        asked: AtomicUsize,
    }

    impl Backlogs {
        fn new(answers: &[u64]) -> Arc<Self> {
            Arc::new(Self {
                answers: Mutex::new(answers.iter().copied().collect()),
                asked: AtomicUsize::new(0),
            })
        }

        fn asked(&self) -> usize {
            self.asked.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl StoreHealth for Backlogs {
        async fn ping(&self) -> Result<()> {
            Ok(())
        }

        fn pool_usage(&self) -> PoolUsage {
            PoolUsage::default()
        }

        async fn pending_events(&self) -> Result<u64> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let mut answers = self.answers.lock().unwrap();
            let answer = answers[0];
            if answers.len() > 1 {
                answers.pop_front();
            }
            Ok(answer)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_import_within_the_limit_does_not_wait() {
        let backlogs = Backlogs::new(&[100]);
        let flow = ProjectionBackpressure::new(backlogs.clone(), 100);
        let started = Instant::now();
        flow.wait_for_projector().await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(backlogs.asked(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_import_past_the_limit_waits_until_the_projector_is_back_within_half_of_it() {
        let backlogs = Backlogs::new(&[500, 400, 300, 200, 100, 50, 10]);
        let flow = ProjectionBackpressure::new(backlogs.clone(), 100);
        let started = Instant::now();
        flow.wait_for_projector().await;
        assert_eq!(
            backlogs.asked(),
            6,
            "returns at the first backlog within half the limit"
        );
        assert_eq!(started.elapsed(), 5 * POLL);
    }

    #[tokio::test(start_paused = true)]
    async fn a_projector_that_does_not_move_holds_an_import_back_once_only() {
        let backlogs = Backlogs::new(&[500]);
        let flow = ProjectionBackpressure::new(backlogs.clone(), 100);
        let started = Instant::now();
        flow.wait_for_projector().await;
        let waited = started.elapsed();
        assert!(
            waited >= STALLED_AFTER && waited < STALLED_AFTER + 2 * POLL,
            "{waited:?}"
        );
        let asked = backlogs.asked();
        let again = Instant::now();
        flow.wait_for_projector().await;
        assert_eq!(again.elapsed(), Duration::ZERO);
        assert_eq!(backlogs.asked(), asked + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_projector_that_moves_again_holds_imports_back_again() {
        let backlogs = Backlogs::new(&[500]);
        let flow = ProjectionBackpressure::new(backlogs.clone(), 100);
        flow.wait_for_projector().await;
        *backlogs.answers.lock().unwrap() = [400, 300, 40].into_iter().collect();
        let started = Instant::now();
        flow.wait_for_projector().await;
        assert_eq!(started.elapsed(), 2 * POLL);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_projector_is_waited_for_as_long_as_it_moves() {
        // 240 polls (2.4 s, past `STALLED_AFTER`), the backlog shrinking at every other.
        let mut answers: Vec<u64> = (0..240).map(|poll| 1_000 - poll / 2).collect();
        answers.push(50);
        let backlogs = Backlogs::new(&answers);
        let flow = ProjectionBackpressure::new(backlogs.clone(), 100);
        let started = Instant::now();
        flow.wait_for_projector().await;
        assert_eq!(started.elapsed(), 240 * POLL);
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_of_zero_never_asks_nor_waits() {
        let backlogs = Backlogs::new(&[1_000_000]);
        let flow = ProjectionBackpressure::new(backlogs.clone(), 0);
        flow.wait_for_projector().await;
        assert_eq!(backlogs.asked(), 0);
    }
}
