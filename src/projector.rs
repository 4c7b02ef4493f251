//! The analytics projector: applies the evaluation outbox to the rollups, woken by
//! LISTEN/NOTIFY, with polling as the fallback. Several replicas may run; one applies at
//! a time (the cursor row is locked with SKIP LOCKED).

use std::{sync::Arc, time::Duration};

use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::watch;

use crate::store::{AnalyticsStore, AppliedBatch};

/// Events applied per transaction.
pub const BATCH_SIZE: u32 = 500;
/// How often to look for events when no notification arrives.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How soon to look again when events wait for older transactions to end.
pub const PENDING_RETRY: Duration = Duration::from_millis(20);
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Called after each applied batch, e.g. to refresh caches.
pub type AfterApply = Arc<dyn Fn(AppliedBatch) + Send + Sync>;

pub struct Projector {
    store: Arc<dyn AnalyticsStore>,
    pool: PgPool,
    after_apply: Option<AfterApply>,
}

impl Projector {
    pub fn new(
        store: Arc<dyn AnalyticsStore>,
        pool: PgPool,
        after_apply: Option<AfterApply>,
    ) -> Self {
        Self {
            store,
            pool,
            after_apply,
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(mut listener) => match listener.listen("iqs_outbox").await {
                Ok(()) => Some(listener),
                Err(err) => {
                    tracing::warn!(%err, "cannot LISTEN for outbox events; polling only");
                    None
                }
            },
            Err(err) => {
                tracing::warn!(%err, "cannot LISTEN for outbox events; polling only");
                None
            }
        };
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.store.apply_pending(BATCH_SIZE).await {
                Ok(applied) if applied.events > 0 => {
                    tracing::debug!(events = applied.events, "applied outbox events");
                    if let Some(after_apply) = &self.after_apply {
                        after_apply(applied);
                    }
                    continue;
                }
                Ok(_) => match self.store.has_pending().await {
                    Ok(true) => PENDING_RETRY,
                    Ok(false) => POLL_INTERVAL,
                    Err(err) => {
                        tracing::warn!(%err, "projector cannot read the outbox");
                        ERROR_BACKOFF
                    }
                },
                Err(err) => {
                    tracing::warn!(%err, "projector cannot apply events");
                    ERROR_BACKOFF
                }
            };
            let notified = async {
                match listener.as_mut() {
                    Some(listener) => {
                        if let Err(err) = listener.recv().await {
                            tracing::debug!(%err, "outbox listener reconnecting");
                            tokio::time::sleep(ERROR_BACKOFF).await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
