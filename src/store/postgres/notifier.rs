//! Wakes the projectors that LISTEN on the outbox channel after each commit that wrote
//! outbox events.
//!
//! A NOTIFY inside the writing transaction (the outbox trigger's) makes PostgreSQL
//! serialize those commits: it holds a database-wide lock from before the commit record
//! until the transaction ends, WAL flush included, so concurrent submissions could not
//! share a flush. Sent after the commit from a task of its own, the NOTIFY writes no WAL,
//! and the commits that land while one is being sent share the next one. Should the
//! process stop between a commit and its NOTIFY, the projector's poll finds the event.

use std::sync::{Arc, OnceLock};

use sqlx::PgPool;
use tokio::sync::mpsc;

/// The channel the projector listens on.
pub(super) const OUTBOX_CHANNEL: &str = "iqs_outbox";
/// The session setting that tells the outbox trigger not to notify: this process does,
/// after the commit. The trigger still notifies for sessions of earlier versions.
pub(super) const NOTIFIES_AFTER_COMMIT: &str = "iqs.outbox_notify_after_commit";

#[derive(Debug, Clone)]
pub(super) struct OutboxNotifier {
    pool: PgPool,
    /// Started on the first commit, so a store used without a runtime's tasks (such as a
    /// CLI command that writes nothing) starts nothing; the task ends with the last store.
    due: Arc<OnceLock<mpsc::Sender<()>>>,
}

impl OutboxNotifier {
    pub(super) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            due: Arc::default(),
        }
    }

    /// Records that a transaction which wrote outbox events has committed.
    pub(super) fn committed(&self) {
        let due = self.due.get_or_init(|| {
            let (due, mut pending) = mpsc::channel(1);
            let pool = self.pool.clone();
            tokio::spawn(async move {
                while pending.recv().await.is_some() {
                    if let Err(err) = sqlx::query("SELECT pg_notify($1, '')")
                        .bind(OUTBOX_CHANNEL)
                        .execute(&pool)
                        .await
                    {
                        tracing::debug!(%err, "outbox NOTIFY not sent; the projector's poll finds the events");
                    }
                }
            });
            due
        });
        // A full channel holds a NOTIFY not yet sent, which will be sent after this commit.
        let _ = due.try_send(());
    }
}
