//! Writes the audit log in batches. Every write call's entry must be stored before the
//! call is answered; with one transaction per entry, each write call paid a second commit
//! (a submit load without any audit ran about a fifth faster). Entries that arrive while
//! a batch is being written share the next INSERT, each caller still waiting for its own.
//!
//! A batch waits for a connection only until its oldest caller's acquire timeout ends, so
//! during an outage no caller waits out the timeouts of the batches queued before its
//! own. Entries the database could not take are held and written once it answers again.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use sqlx::PgPool;
use tokio::{
    sync::{mpsc, oneshot},
    time::{Instant, timeout, timeout_at},
};
use uuid::Uuid;

use super::classify;
use crate::error::{Error, Result};
use crate::store::AuditEntry;

/// Entries written by one INSERT at most, besides held ones.
const MAX_BATCH: usize = 512;
/// Entries held while the database does not answer, at most (about 200 bytes each); the
/// oldest are dropped beyond it.
const MAX_HELD: usize = 50_000;
/// How long held entries wait for another try when no new entry comes.
const RETRY_HELD_AFTER: Duration = Duration::from_secs(1);

/// An entry with the id it keeps across tries, so that a batch whose commit was in doubt
/// is not stored twice when it is tried again.
struct Row {
    id: Uuid,
    entry: AuditEntry,
}

struct Pending {
    row: Row,
    /// When the caller's acquire timeout ends.
    deadline: Instant,
    done: oneshot::Sender<Result<()>>,
}

#[derive(Debug, Clone)]
pub(super) struct AuditWriter {
    pool: PgPool,
    /// Started on the first entry; the task ends with the last store.
    queue: Arc<OnceLock<mpsc::UnboundedSender<Pending>>>,
}

impl AuditWriter {
    pub(super) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            queue: Arc::default(),
        }
    }

    /// Stores `entry`, returning once the batch holding it has committed; or, when the
    /// database does not answer within the acquire timeout, an `Unavailable` error while
    /// the entry is held for a later try.
    pub(super) async fn write(&self, entry: AuditEntry) -> Result<()> {
        let queue = self.queue.get_or_init(|| {
            let (queue, pending) = mpsc::unbounded_channel();
            tokio::spawn(write_batches(self.pool.clone(), pending));
            queue
        });
        let (done, written) = oneshot::channel();
        let pending = Pending {
            row: Row {
                id: Uuid::now_v7(),
                entry,
            },
            deadline: Instant::now() + self.pool.options().get_acquire_timeout(),
            done,
        };
        queue
            .send(pending)
            .map_err(|_| Error::Internal("the audit writer has stopped".into()))?;
        written
            .await
            .map_err(|_| Error::Internal("the audit writer has stopped".into()))?
    }
}

async fn write_batches(pool: PgPool, mut pending: mpsc::UnboundedReceiver<Pending>) {
    let mut batch = Vec::new();
    let mut held = Vec::new();
    loop {
        let received = if held.is_empty() {
            pending.recv_many(&mut batch, MAX_BATCH).await
        } else {
            // Nothing new for a while: the held entries are tried on their own.
            timeout(RETRY_HELD_AFTER, pending.recv_many(&mut batch, MAX_BATCH))
                .await
                .unwrap_or(usize::MAX)
        };
        if received == 0 && held.is_empty() {
            return;
        }
        let deadline = batch
            .iter()
            .map(|pending: &Pending| pending.deadline)
            .min()
            .unwrap_or_else(|| Instant::now() + pool.options().get_acquire_timeout());
        let (new, waiters): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .map(|pending| (pending.row, pending.done))
            .unzip();
        let mut rows = std::mem::take(&mut held);
        let retried = rows.len();
        rows.extend(new);
        let result = insert(&pool, &rows, deadline).await;
        match &result {
            Ok(()) if retried > 0 => {
                tracing::info!(entries = retried, "held audit entries written");
            }
            Ok(()) => {}
            Err(Error::Unavailable(_)) => {
                held = rows;
                let dropped = held.len().saturating_sub(MAX_HELD);
                held.drain(..dropped);
                tracing::warn!(
                    held = held.len(),
                    dropped,
                    "the database does not answer: audit entries are held until it does"
                );
            }
            Err(err) => tracing::error!(%err, entries = rows.len(), "audit entries lost"),
        }
        for waiter in waiters {
            // A caller that went away (its call was cancelled) needs no answer.
            let _ = waiter.send(result.as_ref().map(|_| ()).map_err(shared));
        }
        if received == 0 {
            // The last store is gone; this was the held entries' last try.
            if !held.is_empty() {
                tracing::error!(entries = held.len(), "held audit entries lost at shutdown");
            }
            return;
        }
    }
}

#[tracing::instrument(
    name = "db.insert_audit_batch",
    skip_all,
    fields(db.system = "postgresql", entries = rows.len())
)]
async fn insert(pool: &PgPool, rows: &[Row], deadline: Instant) -> Result<()> {
    let mut conn = timeout_at(deadline, pool.acquire())
        .await
        .map_err(|_| Error::Unavailable("no database connection for the audit log".into()))?
        .map_err(classify)?;
    let column = |field: fn(&AuditEntry) -> String| {
        rows.iter().map(|row| field(&row.entry)).collect::<Vec<_>>()
    };
    sqlx::query(
        "INSERT INTO access.audit_log (tenant_id, id, key_id, role, rpc, request_id, status_code, time)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                              $7::integer[], $8::timestamptz[])
         ON CONFLICT (tenant_id, id) DO NOTHING",
    )
    .bind(rows.iter().map(|row| row.entry.tenant.as_uuid()).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.id).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.entry.key_id).collect::<Vec<_>>())
    .bind(column(|e| e.role.as_str().to_owned()))
    .bind(column(|e| e.rpc.clone()))
    .bind(column(|e| e.request_id.clone()))
    .bind(rows.iter().map(|row| row.entry.status_code).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.entry.time).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .map_err(classify)?;
    Ok(())
}

/// The batch's error, for each of its callers.
fn shared(err: &Error) -> Error {
    match err {
        Error::Unavailable(message) => Error::Unavailable(format!(
            "{message}; the audit entry is held until the database answers"
        )),
        other => Error::Internal(other.to_string()),
    }
}
