//! Keeps the evaluation outbox bounded: events every reader has passed (the projector
//! and the webhook dispatcher) are removed once older than the retention. Nothing needs
//! them afterwards: `iqs analytics rebuild` derives the figures from the evaluations.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use tokio::sync::watch;

use crate::projector::Failures;
use crate::store::AnalyticsStore;

/// Events removed per statement: short transactions, however far behind pruning is.
pub const PRUNE_BATCH: u32 = 5_000;
/// How often pruning looks for consumed events past their retention.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Runs until `stop` turns true. Several replicas may run it: removing what another
/// removed removes nothing more.
pub async fn run(
    store: Arc<dyn AnalyticsStore>,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = Failures::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let before =
            Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        match store.prune_outbox(before, PRUNE_BATCH).await {
            Ok(pruned) => {
                failures.ended("the outbox is pruned again");
                if pruned > 0 {
                    tracing::debug!(
                        pruned,
                        "consumed outbox events past their retention removed"
                    );
                }
                // A full batch: more are waiting, after a pause that lets writers in.
                if pruned >= u64::from(PRUNE_BATCH) {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(10)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            }
            Err(err) => failures.failed(&err, "cannot prune the outbox; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(PRUNE_EVERY.min(retention.max(Duration::from_millis(100)))) => {}
            _ = stop.changed() => {}
        }
    }
}
