//! The PostgreSQL adapter: production storage, one schema per service.

mod analytics;
mod audit;
pub mod bi;
mod copy_binary;
mod errors;
mod evaluation;
mod group_commit;
mod notifier;
mod submissions;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{
    Connection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use audit::AuditWriter;
use group_commit::SubmissionQueue;
use notifier::OutboxNotifier;
use submissions::SubmissionWriter;

use super::score_query::ScoreDialect;
use super::sql::{Conn, SqlBackend};
use super::{AuditEntry, PoolUsage, StoreHealth};
use crate::error::{Error, Result};

pub use analytics::OUTBOX_READS;
pub use errors::classify;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Every schema, so a table's bare name finds it (table names are unique across them).
/// `public` stays first: it is where unqualified objects are created (sqlx's migration table).
const SEARCH_PATH: &str = "public,rubric,evaluation,analytics,access";

/// A connection idle this long is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_millis(250);

/// Connection settings of the pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a call waits for a connection before it answers UNAVAILABLE.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// How long a score query waits for a replica connection before it reads the primary.
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// Every store port, on one PostgreSQL pool, and optionally a streaming replica's pool
/// for the score queries and exports.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    replica: Option<PgPool>,
    outbox: OutboxNotifier,
    audit: AuditWriter,
    submissions: SubmissionQueue,
    /// Outbox events deleted since the outbox was last vacuumed.
    pruned_since_vacuum: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Connection options of a URL, with the session settings every IQS connection has.
fn connect_options(url: &str) -> Result<PgConnectOptions> {
    url.parse::<PgConnectOptions>()
        .map(|options| {
            options.options([
                (notifier::NOTIFIES_AFTER_COMMIT, "on"),
                // The statements written once for both databases name tables unqualified.
                ("search_path", SEARCH_PATH),
            ])
        })
        .map_err(|err| Error::Unavailable(format!("cannot connect to PostgreSQL: {err}")))
}

impl PostgresStore {
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Self> {
        let unavailable = |err| Error::Unavailable(format!("cannot connect to PostgreSQL: {err}"));
        let options = connect_options(url)?;
        let pool = pool_options(settings.max_connections, settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        Ok(Self::from_pool(pool))
    }

    /// Serves the score queries and exports (and `as_of`) from a streaming replica at
    /// `url`, read-only, while everything else stays on the primary. The replica is
    /// connected to on first use: an unreachable one leaves those reads on the primary.
    pub fn with_read_replica(mut self, url: &str, settings: &PoolSettings) -> Result<Self> {
        let options = connect_options(url)?.options([("default_transaction_read_only", "on")]);
        let pool = pool_options(
            settings.max_connections,
            REPLICA_ACQUIRE_TIMEOUT.min(settings.acquire_timeout),
        )
        .connect_lazy_with(options);
        self.replica = Some(pool);
        Ok(self)
    }

    /// The replica's pool, when one is configured.
    pub fn replica_pool(&self) -> Option<&PgPool> {
        self.replica.as_ref()
    }

    /// A store on a pool made elsewhere. Unless its sessions set
    /// `iqs.outbox_notify_after_commit = on` as `connect`'s do, the outbox trigger
    /// notifies too: correct, but the writes' commits are serialized again.
    pub fn from_pool(pool: PgPool) -> Self {
        let outbox = OutboxNotifier::new(pool.clone());
        Self {
            replica: None,
            submissions: SubmissionQueue::new(SubmissionWriter {
                pool: pool.clone(),
                outbox: outbox.clone(),
            }),
            outbox,
            audit: AuditWriter::new(pool.clone()),
            pruned_since_vacuum: std::sync::Arc::default(),
            pool,
        }
    }

    /// Stores submissions as one group, answering each as if it had been submitted alone
    /// in the order given: what `submit` does with the calls that arrive together.
    /// `waiting(index)` says whether the caller of `submissions[index]` still waits; the
    /// submission of one that does not when its transaction would commit is not stored.
    pub async fn submit_group(
        &self,
        submissions: Vec<(
            crate::domain::tenant::TenantId,
            crate::domain::evaluation::NewEvaluation,
        )>,
        waiting: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<Result<crate::domain::evaluation::Evaluation>> {
        self.submissions
            .writer()
            .submit_group(submissions, waiting)
            .await
    }

    /// Commits a transaction that wrote outbox events, then wakes the projectors.
    async fn commit_with_events(&self, tx: sqlx::Transaction<'_, sqlx::Postgres>) -> Result<()> {
        tx.commit().await.map_err(classify)?;
        self.outbox.committed();
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the embedded migrations. sqlx holds a PostgreSQL advisory lock while it
    /// migrates, so replicas starting together apply each migration once.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(|err| match err {
            sqlx::migrate::MigrateError::Execute(inner) => classify(inner),
            other => Error::Internal(format!("migration failed: {other}")),
        })
    }
}

#[async_trait]
impl SqlBackend for PostgresStore {
    const SYSTEM: &'static str = "postgresql";
    const LOCK_ROWS: &'static str = " FOR UPDATE";
    const WEBHOOKS: &'static crate::store::sql::webhooks::WebhookDialect =
        &crate::store::sql::webhooks::POSTGRES_WEBHOOKS;
    const SCORES: &'static ScoreDialect = &analytics::SCORES;

    async fn read(&self) -> Result<Conn> {
        self.pool
            .acquire()
            .await
            .map(Conn::Postgres)
            .map_err(classify)
    }

    async fn analytics_read(&self) -> Result<Conn> {
        if let Some(replica) = &self.replica {
            match replica.acquire().await {
                Ok(conn) => return Ok(Conn::Postgres(conn)),
                Err(err) => replica_unreachable(&err),
            }
        }
        self.read().await
    }

    async fn write(&self) -> Result<Conn> {
        self.pool
            .begin()
            .await
            .map(Conn::PostgresTx)
            .map_err(classify)
    }

    fn events_committed(&self) {
        self.outbox.committed();
    }

    /// Concurrent entries share one INSERT (see `AuditWriter`).
    async fn write_audit(&self, entry: AuditEntry) -> Result<()> {
        self.audit.write(entry).await
    }
}

/// The pool's settings: how many connections, how long a caller waits for one.
fn pool_options(max_connections: u32, acquire_timeout: Duration) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        // The pool pings every connection it takes back; pinging it again when it is
        // handed out cost each acquire a round trip. Only a connection idle long enough
        // for the server to have gone away since is pinged again.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Says that the replica is unreachable, at most once a minute: every score query
/// falls back to the primary meanwhile.
fn replica_unreachable(err: &sqlx::Error) {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST_WARNED: AtomicI64 = AtomicI64::new(i64::MIN);
    let now = chrono::Utc::now().timestamp();
    let last = LAST_WARNED.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 60
        && LAST_WARNED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(%err, "the read replica is unreachable; score queries read the primary");
    }
}

#[async_trait]
impl StoreHealth for PostgresStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(classify)
    }

    fn pool_usage(&self) -> PoolUsage {
        PoolUsage {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    async fn pending_events(&self) -> Result<u64> {
        let pending: i64 = sqlx::query_scalar(analytics::PENDING_COUNT_SQL)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        Ok(pending.max(0) as u64)
    }
}
