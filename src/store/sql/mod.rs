//! One implementation of a store port for both databases.
//!
//! A port written here is a blanket impl over [`SqlBackend`], which both adapters
//! implement. Its statements are written once, in the SQL both databases accept:
//! `$n` placeholders (sent to SQLite as anonymous `?`, see `Statement::sqlite`),
//! unqualified table names (PostgreSQL sessions put every schema on their
//! `search_path`), times bound and read as [`Stamp`]. What truly differs stays behind
//! the backend: how a write transaction begins (SQLite takes its write lock at once),
//! what a locking read appends, how the score queries are said, how projectors are
//! woken, and how errors are classified.
//!
//! Why not generic over `sqlx::Database`: every bound value and every row type would
//! need its own `Encode`/`Decode`/`FromRow` bound repeated on each generic function,
//! since Rust does not imply where-clauses. Values are bound through [`Value`] instead,
//! and a row type is checked against both databases where it is used.

mod access;
mod analytics_reads;
mod assignments;
mod autoqa;
mod calibration;
mod coaching;
mod disputes;
pub(crate) mod evaluation_changes;
pub(crate) mod evaluation_reads;
pub(crate) mod projection;
mod rubric;
mod stamp;
pub(crate) mod webhooks;

use std::borrow::Cow;

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::Serialize;
use sqlx::{
    Arguments, FromRow, PgConnection, Postgres, Sqlite, SqliteConnection, Transaction,
    pool::PoolConnection,
    postgres::{PgArguments, PgRow},
    sqlite::{SqliteArguments, SqliteRow},
    types::Json,
};
use uuid::Uuid;

use crate::domain::tenant::TenantId;
use crate::error::{Error, Result};
use crate::store::AuditEntry;
use crate::store::score_query::ScoreDialect;

pub(crate) use stamp::Stamp;

/// What a store needs from a database to run the ports written in this module.
#[async_trait]
pub(crate) trait SqlBackend: Send + Sync + 'static {
    /// The `db.system` attribute of its spans.
    const SYSTEM: &'static str;
    /// What a read that locks the rows it returns appends to its statement.
    const LOCK_ROWS: &'static str;
    /// How the score queries are said in this database.
    const SCORES: &'static ScoreDialect;
    /// How the webhook statements that differ are said in this database.
    const WEBHOOKS: &'static webhooks::WebhookDialect;

    /// A connection for reads.
    async fn read(&self) -> Result<Conn>;
    /// A connection for the score queries and exports, which may read a replica.
    async fn analytics_read(&self) -> Result<Conn> {
        self.read().await
    }
    /// A transaction for writes (`commit` it; dropping it rolls back).
    async fn write(&self) -> Result<Conn>;

    /// Wakes the projectors after a commit that wrote outbox events.
    fn events_committed(&self);

    /// Stores one audit entry, answering once it is durable.
    async fn write_audit(&self, entry: AuditEntry) -> Result<()> {
        let mut tx = self.write().await?;
        access::insert_audit(&mut tx, entry).await?;
        tx.commit().await
    }
}

/// A value bound to a statement, typed as the adapters store it.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Uuid(Option<Uuid>),
    Text(Option<String>),
    I16(Option<i16>),
    I32(Option<i32>),
    I64(Option<i64>),
    F64(Option<f64>),
    Bool(bool),
    Bytes(Option<Vec<u8>>),
    /// Serialized once, as it is stored.
    Json(Box<serde_json::value::RawValue>),
    Time(Option<Stamp>),
    /// A calendar day (`date` on PostgreSQL, 'YYYY-MM-DD' text on SQLite).
    Day(Option<NaiveDate>),
}

impl Value {
    /// A document stored as JSON (`jsonb` on PostgreSQL, TEXT on SQLite).
    pub fn json(document: &impl Serialize) -> Result<Self> {
        serde_json::value::to_raw_value(document)
            .map(Self::Json)
            .map_err(|err| Error::Internal(format!("cannot encode JSON: {err}")))
    }
}

macro_rules! value_from {
    ($($ty:ty => |$value:ident| $convert:expr;)+) => {$(
        impl From<$ty> for Value {
            fn from($value: $ty) -> Self {
                $convert
            }
        }
    )+};
}

value_from! {
    Uuid => |v| Value::Uuid(Some(v));
    Option<Uuid> => |v| Value::Uuid(v);
    TenantId => |v| Value::Uuid(Some(v.as_uuid()));
    String => |v| Value::Text(Some(v));
    &str => |v| Value::Text(Some(v.to_owned()));
    Option<&str> => |v| Value::Text(v.map(str::to_owned));
    Option<String> => |v| Value::Text(v);
    i16 => |v| Value::I16(Some(v));
    Option<i16> => |v| Value::I16(v);
    i32 => |v| Value::I32(Some(v));
    Option<i32> => |v| Value::I32(v);
    i64 => |v| Value::I64(Some(v));
    Option<i64> => |v| Value::I64(v);
    f64 => |v| Value::F64(Some(v));
    Option<f64> => |v| Value::F64(v);
    bool => |v| Value::Bool(v);
    Vec<u8> => |v| Value::Bytes(Some(v));
    &[u8] => |v| Value::Bytes(Some(v.to_vec()));
    Stamp => |v| Value::Time(Some(v));
    Option<Stamp> => |v| Value::Time(v);
    NaiveDate => |v| Value::Day(Some(v));
}

/// Adds `value` to a database's arguments: the same for both, typed per database.
macro_rules! add_value {
    ($args:expr, $value:expr) => {
        match $value {
            Value::Uuid(v) => $args.add(v),
            Value::Text(v) => $args.add(v),
            Value::I16(v) => $args.add(v),
            Value::I32(v) => $args.add(v),
            Value::I64(v) => $args.add(v),
            Value::F64(v) => $args.add(v),
            Value::Bool(v) => $args.add(v),
            Value::Bytes(v) => $args.add(v),
            Value::Json(v) => $args.add(Json(v)),
            Value::Time(v) => $args.add(v),
            Value::Day(v) => $args.add(v),
        }
        .map_err(unbindable)
    };
}

/// A statement and the values of its `$n` placeholders, in order.
#[derive(Debug)]
pub(crate) struct Statement<'s> {
    sql: Cow<'s, str>,
    values: Vec<Value>,
    /// Kept prepared on its connection (and so, on PostgreSQL, run with a generic plan
    /// after five executions), or planned anew for each call's values.
    persistent: bool,
}

/// Starts a statement; bind its values in placeholder order.
pub(crate) fn sql<'s>(sql: impl Into<Cow<'s, str>>) -> Statement<'s> {
    Statement {
        sql: sql.into(),
        values: Vec::new(),
        persistent: true,
    }
}

impl<'s> Statement<'s> {
    /// Binds the value of the next placeholder the text already holds.
    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.values.push(value.into());
        self
    }

    /// Plans the statement for each call's values instead of keeping it prepared.
    /// PostgreSQL's generic plan of a prepared statement is made once per connection; one
    /// made while a table was nearly empty (a new database, a new tenant) keeps walking a
    /// whole tenant's rows for a lookup that an index answers, long after the table has
    /// grown. For the lookups whose right index depends on the values.
    pub fn planned_per_call(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// Appends text to a statement built as it goes.
    pub fn push(mut self, text: &str) -> Self {
        self.sql.to_mut().push_str(text);
        self
    }

    /// Appends the next placeholder (`$n`) and binds its value.
    pub fn push_bind(mut self, value: impl Into<Value>) -> Self {
        use std::fmt::Write;
        self.values.push(value.into());
        let _ = write!(self.sql.to_mut(), "${}", self.values.len());
        self
    }

    /// Appends ` AND {column} IN ($n, …)` for `values`; no values match nothing.
    pub fn push_in<V: Into<Value>>(
        mut self,
        column: &str,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        let mut values = values.into_iter().peekable();
        if values.peek().is_none() {
            return self.push(" AND false");
        }
        self = self.push(&format!(" AND {column} IN ("));
        for (index, value) in values.enumerate() {
            if index > 0 {
                self = self.push(", ");
            }
            self = self.push_bind(value);
        }
        self.push(")")
    }

    fn postgres(self) -> Result<(Cow<'s, str>, PgArguments)> {
        let mut args = PgArguments::default();
        for value in self.values {
            add_value!(args, value)?;
        }
        Ok((self.sql, args))
    }

    /// The text with anonymous `?` placeholders, and the values in the order they appear
    /// (a value used twice is bound twice). SQLite also takes `$n`, but binding a named or
    /// numbered parameter looks its name up among all of the statement's: a multi-row
    /// statement with thousands of values took most of a second to bind.
    fn sqlite(self) -> Result<(Cow<'s, str>, SqliteArguments<'static>)> {
        let (sql, order) = anonymous_placeholders(self.sql);
        // Each value is moved to its last use and cloned only for the uses before.
        let mut uses = vec![0usize; self.values.len()];
        for &index in &order {
            if let Some(count) = uses.get_mut(index) {
                *count += 1;
            }
        }
        let mut values: Vec<Option<Value>> = self.values.into_iter().map(Some).collect();
        let mut args = SqliteArguments::default();
        for index in order {
            let missing = || Error::Internal(format!("placeholder ${} has no value", index + 1));
            let count = uses.get_mut(index).ok_or_else(missing)?;
            *count -= 1;
            let slot = &mut values[index];
            let value = if *count == 0 {
                slot.take()
            } else {
                slot.clone()
            };
            add_value!(args, value.ok_or_else(missing)?)?;
        }
        Ok((sql, args))
    }
}

/// `sql` with each `$n` placeholder as `?`, and the (0-based) value index of each `?` in
/// order. (A `$` followed by a digit appears in no literal of these statements.)
fn anonymous_placeholders(sql: Cow<'_, str>) -> (Cow<'_, str>, Vec<usize>) {
    let bytes = sql.as_bytes();
    let mut text = String::new();
    let mut order = Vec::new();
    let mut copied = 0;
    for (at, _) in sql.match_indices('$') {
        let digits = bytes[at + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            continue;
        }
        if order.is_empty() {
            text.reserve(sql.len());
        }
        let number: usize = sql[at + 1..at + 1 + digits].parse().unwrap_or(0);
        order.push(number.saturating_sub(1));
        text.push_str(&sql[copied..at]);
        text.push('?');
        copied = at + 1 + digits;
    }
    if order.is_empty() {
        return (sql, order);
    }
    text.push_str(&sql[copied..]);
    (Cow::Owned(text), order)
}

fn unbindable(err: sqlx::error::BoxDynError) -> Error {
    Error::Internal(format!("cannot bind a statement value: {err}"))
}

/// A row and the fingerprint of the request that created it.
#[derive(sqlx::FromRow)]
pub(crate) struct WithFingerprint<T> {
    #[sqlx(flatten)]
    row: T,
    request_fingerprint: Option<Vec<u8>>,
}

/// The row a request id created before (`select` picks `$1` tenant and `$2` request id),
/// when `fingerprint` says it is a retry of the same request; `AlreadyExists` naming
/// `what` when the same id came with other content.
pub(crate) async fn created_before<T>(
    link: &mut Link<'_>,
    select: &str,
    tenant: TenantId,
    request_id: Option<&str>,
    fingerprint: &[u8],
    what: &str,
) -> Result<T>
where
    WithFingerprint<T>: Record,
{
    let existing: WithFingerprint<T> = link
        .fetch_one(sql(select).bind(tenant).bind(request_id))
        .await?;
    if existing.request_fingerprint.as_deref() == Some(fingerprint) {
        Ok(existing.row)
    } else {
        Err(Error::AlreadyExists(format!(
            "request_id {:?} was already used for a different {what}",
            request_id.unwrap_or_default()
        )))
    }
}

/// A row type both databases can decode.
pub(crate) trait Record:
    for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

impl<R> Record for R where
    R: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

/// A connection or transaction of either database, owned.
pub(crate) enum Conn {
    Postgres(PoolConnection<Postgres>),
    PostgresTx(Transaction<'static, Postgres>),
    Sqlite(PoolConnection<Sqlite>),
    SqliteTx(Transaction<'static, Sqlite>),
}

/// A connection of either database, borrowed: what the statements run on, so the code
/// of one adapter can run them on the connection it holds.
pub(crate) enum Link<'c> {
    Postgres(&'c mut PgConnection),
    Sqlite(&'c mut SqliteConnection),
}

impl Conn {
    pub fn link(&mut self) -> Link<'_> {
        match self {
            Conn::Postgres(conn) => Link::Postgres(conn),
            Conn::PostgresTx(tx) => Link::Postgres(tx),
            Conn::Sqlite(conn) => Link::Sqlite(conn),
            Conn::SqliteTx(tx) => Link::Sqlite(tx),
        }
    }

    pub async fn fetch_optional<R: Record>(
        &mut self,
        statement: Statement<'_>,
    ) -> Result<Option<R>> {
        self.link().fetch_optional(statement).await
    }

    pub async fn fetch_all<R: Record>(&mut self, statement: Statement<'_>) -> Result<Vec<R>> {
        self.link().fetch_all(statement).await
    }

    pub async fn fetch_one<R: Record>(&mut self, statement: Statement<'_>) -> Result<R> {
        self.link().fetch_one(statement).await
    }

    pub async fn execute(&mut self, statement: Statement<'_>) -> Result<u64> {
        self.link().execute(statement).await
    }

    /// Commits a transaction (a plain connection has nothing to commit).
    pub async fn commit(self) -> Result<()> {
        match self {
            Conn::PostgresTx(tx) => tx.commit().await.map_err(crate::store::postgres::classify),
            Conn::SqliteTx(tx) => tx.commit().await.map_err(crate::store::sqlite::classify),
            Conn::Postgres(_) | Conn::Sqlite(_) => Ok(()),
        }
    }
}

/// Runs `statement` on either database: `$query(text, arguments)`, then `.$run(conn)`,
/// then `$map` of the outcome.
macro_rules! on_link {
    ($link:expr, $statement:expr, $query:ident, $run:ident, $map:expr) => {
        match $link {
            Link::Postgres(conn) => {
                let persistent = $statement.persistent;
                let (sql, args) = $statement.postgres()?;
                sqlx::$query(&sql, args)
                    .persistent(persistent)
                    .$run(&mut **conn)
                    .await
                    .map($map)
                    .map_err(crate::store::postgres::classify)
            }
            Link::Sqlite(conn) => {
                let persistent = $statement.persistent;
                let (sql, args) = $statement.sqlite()?;
                sqlx::$query(&sql, args)
                    .persistent(persistent)
                    .$run(&mut **conn)
                    .await
                    .map($map)
                    .map_err(crate::store::sqlite::classify)
            }
        }
    };
}

impl Link<'_> {
    pub async fn fetch_optional<R: Record>(
        &mut self,
        statement: Statement<'_>,
    ) -> Result<Option<R>> {
        on_link!(self, statement, query_as_with, fetch_optional, |row| row)
    }

    pub async fn fetch_all<R: Record>(&mut self, statement: Statement<'_>) -> Result<Vec<R>> {
        on_link!(self, statement, query_as_with, fetch_all, |rows| rows)
    }

    /// The one row a statement must return: none is an internal error.
    pub async fn fetch_one<R: Record>(&mut self, statement: Statement<'_>) -> Result<R> {
        // Only the statement's beginning, and only kept for the message: a multi-row
        // statement's text is long, and this runs on every call.
        let head: String = statement.sql.trim_start().chars().take(60).collect();
        self.fetch_optional(statement)
            .await?
            .ok_or_else(|| Error::Internal(format!("no row returned by: {head}…")))
    }

    /// Runs a statement; the number of rows it changed.
    pub async fn execute(&mut self, statement: Statement<'_>) -> Result<u64> {
        on_link!(self, statement, query_with, execute, |done| done
            .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_gets_anonymous_placeholders_in_text_order_and_json_paths_stay_as_they_are() {
        let sql = Cow::Borrowed(
            "SELECT json_extract(x, '$.score') FROM t WHERE ($2 IS NULL OR a > $2) AND b IN ($1, $10) AND c = 'é'",
        );
        let (text, order) = anonymous_placeholders(sql);
        assert_eq!(
            text,
            "SELECT json_extract(x, '$.score') FROM t WHERE (? IS NULL OR a > ?) AND b IN (?, ?) AND c = 'é'"
        );
        assert_eq!(order, [1, 1, 0, 9]);
        let (text, order) = anonymous_placeholders(Cow::Borrowed("SELECT 1"));
        assert!(matches!(text, Cow::Borrowed(_)) && order.is_empty());
    }
}
