//! The embedded adapter: every store port on one SQLite file (WAL mode), for a machine
//! with nothing installed. Writes go through a pool of one connection, so transactions
//! never contend for SQLite's single write lock and outbox positions are in commit
//! order; reads use a pool of their own.

mod analytics;
mod errors;
mod evaluation;
mod time;

use std::{path::Path, str::FromStr, sync::Arc, time::Duration};

use async_trait::async_trait;
use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::sync::Notify;

use super::score_query::ScoreDialect;
use super::sql::{Conn, SqlBackend};
use super::{PoolUsage, StoreHealth};
use crate::error::{Error, Result};

pub use errors::classify;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for another process (a CLI command, say) holding the
/// write lock before it fails as unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const READERS: u32 = 8;

/// The embedded store's file in its data directory.
pub const EMBEDDED_FILE: &str = "iqs.db";

/// Every store port, on one SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Woken after every commit that wrote outbox events (in-process LISTEN/NOTIFY).
    outbox_written: Arc<Notify>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at a `sqlite:` URL.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|err| Error::Internal(format!("bad SQLite URL {url}: {err}")))?;
        Self::open(options).await
    }

    /// Opens (creating when missing) `iqs.db` in a data directory.
    pub async fn open_dir(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|err| {
            Error::Unavailable(format!(
                "cannot create data directory {}: {err}",
                dir.display()
            ))
        })?;
        Self::open(SqliteConnectOptions::new().filename(dir.join(EMBEDDED_FILE))).await
    }

    async fn open(options: SqliteConnectOptions) -> Result<Self> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let unavailable = |err: sqlx::Error| {
            Error::Unavailable(format!("cannot open the SQLite database: {err}"))
        };
        // One writer: waiting for it is how writes queue, not a sign of trouble, so only
        // a wait close to the timeout is logged as slow.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(BUSY_TIMEOUT)
            .acquire_slow_threshold(BUSY_TIMEOUT.mul_f32(0.8))
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options.read_only(true))
            .await
            .map_err(unavailable)?;
        Ok(Self {
            writer,
            reader,
            outbox_written: Arc::new(Notify::new()),
        })
    }

    /// Applies the embedded migrations.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.writer).await.map_err(|err| match err {
            sqlx::migrate::MigrateError::Execute(inner) => classify(inner),
            other => Error::Internal(format!("migration failed: {other}")),
        })
    }

    /// A write transaction that takes SQLite's write lock at once: a deferred one that
    /// read first could not upgrade once another process had written (SQLITE_BUSY_SNAPSHOT),
    /// while waiting for the lock is covered by the busy timeout.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(classify)
    }

    /// One projector runs per process on the embedded store: a permit stored while it is
    /// busy wakes its next wait, so no write goes unnoticed until the next poll.
    fn outbox_written(&self) {
        self.outbox_written.notify_one();
    }
}

#[async_trait]
impl SqlBackend for SqliteStore {
    const SYSTEM: &'static str = "sqlite";
    /// The write transaction holds the whole database (`BEGIN IMMEDIATE`).
    const LOCK_ROWS: &'static str = "";
    const WEBHOOKS: &'static crate::store::sql::webhooks::WebhookDialect =
        &crate::store::sql::webhooks::SQLITE_WEBHOOKS;
    const SCORES: &'static ScoreDialect = &analytics::SCORES;

    async fn read(&self) -> Result<Conn> {
        self.reader
            .acquire()
            .await
            .map(Conn::Sqlite)
            .map_err(classify)
    }

    async fn write(&self) -> Result<Conn> {
        self.begin_write().await.map(Conn::SqliteTx)
    }

    fn events_committed(&self) {
        self.outbox_written();
    }
}

#[async_trait]
impl StoreHealth for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(|_| ())
            .map_err(classify)
    }

    /// The readers' pool: the writer is a single connection, always open.
    fn pool_usage(&self) -> PoolUsage {
        PoolUsage {
            open: self.reader.size(),
            idle: u32::try_from(self.reader.num_idle()).unwrap_or(u32::MAX),
            max: self.reader.options().get_max_connections(),
        }
    }

    async fn pending_events(&self) -> Result<u64> {
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE position > (SELECT last_position FROM projector_cursor)",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(classify)?;
        Ok(pending.max(0) as u64)
    }
}
