//! [`SqliteSessionStore`]: the embedded default, one SQLite file in WAL mode.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use whatsapp_core::types::truncate_micros;
use whatsapp_core::{
    Error, Lease, NodeId, Result, SessionFilter, SessionId, SessionPatch, SessionRecord,
    SessionStatus, SessionStore,
};

use super::{
    RedactedUrl, SESSION_COLUMNS, SessionRow, WriteProbe, accepted_statuses, first_row,
    lease_conflict, lease_expiry, map_migrate, map_sqlx, one_row, push_patch, session_not_found,
    sqlite_retired_since, transition_conflict,
};

const BACKEND: &str = "sqlite";

/// How long a connection waits for another writer before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections in the pool: readers run in parallel under WAL; writers take turns anyway,
/// so more connections buy little. Each one is a thread of its own with its own page cache.
const MAX_CONNECTIONS: u32 = 4;

/// A connection unused this long is closed (its thread and cache go with it); one stays.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Page cache per connection, in KiB (SQLite's default is 2000 KiB): the tables are small
/// and the operating system caches the file anyway.
const CACHE_KIB: i64 = 512;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// A [`SessionStore`] in one SQLite file.
///
/// Opened in WAL mode (readers never block the writer) with `synchronous = FULL` (a write is
/// on disk when the call returns), a busy timeout of 10 s so that concurrent writers wait
/// for each other instead of failing, and foreign keys on. Several processes may open the
/// same file; the atomic single-statement compare-and-sets keep them consistent.
///
/// Timestamps are stored as integer microseconds since the Unix epoch.
///
/// # Recovering from a read-only or failing disk
///
/// A connection opened while the directory is read-only stays read-only, and SQLite shares
/// one wal-index mapping among all connections of a process to the same file, so while any
/// connection of that time stays open, new ones are read-only too. After an error that says
/// so (`SQLITE_READONLY`, `SQLITE_IOERR`, `SQLITE_CANTOPEN`, `EROFS`) the next call closes
/// the whole pool (waiting for the calls in flight) and opens a new one: once the disk is
/// writable again, writes succeed without a restart.
#[derive(Clone)]
pub struct SqliteSessionStore {
    pool: SqliteHandle,
    location: String,
}

impl fmt::Debug for SqliteSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteSessionStore")
            .field("location", &self.location)
            .field("connections", &self.pool().size())
            .finish()
    }
}

impl SqliteSessionStore {
    /// Opens (creating it and its parent directory if missing) the database file at `path`
    /// and runs the migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        create_parent_dir(path).await?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::with_options(options, path.display().to_string(), false).await
    }

    /// Opens the database named by a `sqlite:` URL (`sqlite://data/sessions.db`,
    /// `sqlite:///var/lib/wa/sessions.db`, `sqlite::memory:`), creating the file and its
    /// directory if missing, and runs the migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let redacted = RedactedUrl::new(url);
        let options = SqliteConnectOptions::from_str(url).map_err(|e| {
            Error::invalid(
                "database url",
                format!("{redacted} is not a SQLite URL: {e}"),
            )
        })?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory {
            create_parent_dir(options.get_filename()).await?;
        }
        Self::with_options(
            options.create_if_missing(true),
            redacted.to_string(),
            in_memory,
        )
        .await
    }

    async fn with_options(
        options: SqliteConnectOptions,
        location: String,
        in_memory: bool,
    ) -> Result<Self> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("cache_size", format!("-{CACHE_KIB}"));
        let pool = pool_options(in_memory)
            .connect_with(options.clone())
            .await
            .map_err(|e| map_sqlx(BACKEND, e))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| map_migrate(BACKEND, e))?;
        let pool = SqliteHandle(Arc::new(HandleInner {
            options,
            renewable: !in_memory,
            current: std::sync::RwLock::new((pool, Instant::now())),
            renewal: tokio::sync::Mutex::new(()),
        }));
        tracing::debug!(location = %location, "opened SQLite session store");
        Ok(SqliteSessionStore { pool, location })
    }

    /// The connection pool in use now, for the other tables of the same database. A pool
    /// is replaced after a read-only or I/O error (see [`SqliteSessionStore`]); a clone
    /// kept across that stops working.
    pub fn pool(&self) -> SqlitePool {
        self.pool.0.current.read().unwrap().0.clone()
    }

    /// The outbox in the same database.
    pub fn outbox(&self) -> SqliteOutbox {
        SqliteOutbox::new(self.pool.clone())
    }

    /// The outgoing message queue in the same database.
    pub fn message_queue(&self) -> SqliteMessageQueue {
        SqliteMessageQueue::new(self.pool.clone())
    }

    /// Tenants and API keys in the same database.
    pub fn tenants(&self) -> SqliteTenantStore {
        SqliteTenantStore::new(self.pool.clone())
    }

    /// The phone-number check cache in the same database.
    pub fn numbers(&self) -> SqliteNumberCache {
        SqliteNumberCache::new(self.pool.clone())
    }

    /// The message history in the same database.
    pub fn history(&self) -> SqliteMessageHistory {
        SqliteMessageHistory::new(self.pool.clone())
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        self.pool().close().await;
    }

    async fn fetch_optional(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?");
        sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool.current().await)
            .await
            .map_err(|e| map_sqlx(BACKEND, e))?
            .map(|row| decode(&row))
            .transpose()
    }
}

/// The pool options: in memory, one connection kept forever (the database lives as long as
/// one connection to it).
fn pool_options(in_memory: bool) -> SqlitePoolOptions {
    if in_memory {
        SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(MAX_CONNECTIONS)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(MAX_CONNECTIONS)
            .idle_timeout(IDLE_TIMEOUT)
    }
}

/// The store's pool, replaced by a fresh one after a connection-breaking error.
#[derive(Clone)]
pub(crate) struct SqliteHandle(Arc<HandleInner>);

struct HandleInner {
    options: SqliteConnectOptions,
    /// False for an in-memory database: closing its pool would lose it.
    renewable: bool,
    /// The pool and when it was opened.
    current: std::sync::RwLock<(SqlitePool, Instant)>,
    /// Held while a pool is replaced, so that one call replaces it.
    renewal: tokio::sync::Mutex<()>,
}

impl SqliteHandle {
    /// The pool to use now: the current one, or — after a read-only / I/O error that came
    /// after it was opened — a new one, opened once every connection of the old one is
    /// closed (so that none of them keeps the file's wal-index read-only).
    pub(crate) async fn current(&self) -> SqlitePool {
        let (pool, opened) = self.0.current.read().unwrap().clone();
        if !self.0.renewable || !sqlite_retired_since(opened) {
            return pool;
        }
        let _renewing = self.0.renewal.lock().await;
        let (pool, opened) = self.0.current.read().unwrap().clone();
        if !sqlite_retired_since(opened) {
            return pool;
        }
        tracing::warn!("closing the SQLite connections after a read-only or I/O error");
        pool.close().await;
        let fresh = pool_options(false).connect_lazy_with(self.0.options.clone());
        *self.0.current.write().unwrap() = (fresh.clone(), Instant::now());
        fresh
    }
}

async fn create_parent_dir(path: &Path) -> Result<()> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    tokio::fs::create_dir_all(parent).await.map_err(|e| {
        Error::unavailable(
            "sqlite",
            format!(
                "cannot create directory {}: {e}",
                PathBuf::from(parent).display()
            ),
        )
    })
}

/// Microseconds since the epoch, after truncation.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    truncate_micros(t).timestamp_micros()
}

/// The inverse of [`micros`].
pub(crate) fn from_micros(column: &str, v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| Error::Corrupt(format!("{column} = {v} is not a valid timestamp")))
}

fn row_ts(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>> {
    from_micros(
        column,
        row.try_get(column).map_err(|e| map_sqlx(BACKEND, e))?,
    )
}

fn row_opt_ts(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>> {
    row.try_get::<Option<i64>, _>(column)
        .map_err(|e| map_sqlx(BACKEND, e))?
        .map(|v| from_micros(column, v))
        .transpose()
}

super::queue::impl_queues! {
    backend: BACKEND,
    db: Sqlite,
    pool: SqliteHandle,
    row: SqliteRow,
    outbox: SqliteOutbox,
    queue: SqliteMessageQueue,
    ts: micros,
    get_ts: row_ts,
    get_opt_ts: row_opt_ts,
    // SQLite has one writer at a time: the UPDATE itself is the lock.
    lock_clause: "",
}

super::history::impl_history! {
    backend: BACKEND,
    pool: SqliteHandle,
    row: SqliteRow,
    history: SqliteMessageHistory,
    ts: micros,
    get_ts: row_ts,
    get_opt_ts: row_opt_ts,
}

super::tenants::impl_tenants! {
    backend: BACKEND,
    pool: SqliteHandle,
    row: SqliteRow,
    tenants: SqliteTenantStore,
    numbers: SqliteNumberCache,
    ts: micros,
    get_ts: row_ts,
    get_opt_ts: row_opt_ts,
}

fn decode(row: &SqliteRow) -> Result<SessionRecord> {
    let get_ts = |c: &str| row_ts(row, c);
    let get_opt_ts = |c: &str| row_opt_ts(row, c);
    let get = |e| map_sqlx(BACKEND, e);
    SessionRow {
        id: row.try_get("id").map_err(get)?,
        name: row.try_get("name").map_err(get)?,
        tenant: row.try_get("tenant").map_err(get)?,
        owner_email: row.try_get("owner_email").map_err(get)?,
        status: row.try_get("status").map_err(get)?,
        wid: row.try_get("wid").map_err(get)?,
        push_name: row.try_get("push_name").map_err(get)?,
        created_at: get_ts("created_at")?,
        updated_at: get_ts("updated_at")?,
        last_seen_at: get_opt_ts("last_seen_at")?,
        last_connected_at: get_opt_ts("last_connected_at")?,
        last_activity_at: get_opt_ts("last_activity_at")?,
        last_backup_at: get_opt_ts("last_backup_at")?,
        expires_at: get_opt_ts("expires_at")?,
        last_error: row.try_get("last_error").map_err(get)?,
        restarts: row.try_get("restarts").map_err(get)?,
        reconnects: row.try_get("reconnects").map_err(get)?,
        linked_at: get_opt_ts("linked_at")?,
        lease_node: row.try_get("lease_node").map_err(get)?,
        lease_expires_at: get_opt_ts("lease_expires_at")?,
    }
    .into_record()
}

#[async_trait]
impl WriteProbe for SqliteSessionStore {
    async fn probe_write(&self, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO write_probe (id, probed_at) VALUES (1, ?1) \
             ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
        )
        .bind(micros(now))
        .execute(&self.pool.current().await)
        .await
        .map_err(|e| map_sqlx(BACKEND, e))?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for SqliteSessionStore {
    async fn create(&self, r: &SessionRecord) -> Result<()> {
        let sql = format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        let result = sqlx::query(&sql)
            .bind(r.id.as_str())
            .bind(r.name.as_str())
            .bind(r.tenant.as_str())
            .bind(r.owner_email.as_ref().map(|e| e.as_str()))
            .bind(r.status.as_str())
            .bind(r.wid.as_ref().map(|w| w.to_string()))
            .bind(r.push_name.as_deref())
            .bind(micros(r.created_at))
            .bind(micros(r.updated_at))
            .bind(r.last_seen_at.map(micros))
            .bind(r.last_connected_at.map(micros))
            .bind(r.last_activity_at.map(micros))
            .bind(r.last_backup_at.map(micros))
            .bind(r.expires_at.map(micros))
            .bind(r.last_error.as_deref())
            .bind(i64::from(r.restarts))
            .bind(i64::from(r.reconnects))
            .bind(r.linked_at.map(micros))
            .bind(r.lease.as_ref().map(|l| l.node.as_str()))
            .bind(r.lease.as_ref().map(|l| micros(l.expires_at)))
            .execute(&self.pool.current().await)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e))
                if e.kind() == sqlx::error::ErrorKind::UniqueViolation =>
            {
                Err(Error::Conflict(format!(
                    "session {} already exists, or tenant {} has a session named {}",
                    r.id, r.tenant, r.name
                )))
            }
            Err(e) => Err(map_sqlx(BACKEND, e)),
        }
    }

    async fn get(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
        self.fetch_optional(id).await
    }

    async fn list(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE 1 = 1"
        ));
        if let Some(tenant) = &filter.tenant {
            qb.push(" AND tenant = ")
                .push_bind(tenant.as_str().to_owned());
        }
        if let Some(name) = &filter.name {
            qb.push(" AND name = ").push_bind(name.as_str().to_owned());
        }
        if !filter.statuses.is_empty() {
            qb.push(" AND status IN (");
            let mut list = qb.separated(", ");
            for s in &filter.statuses {
                list.push_bind(s.as_str());
            }
            qb.push(")");
        }
        qb.push(" ORDER BY id");
        let rows = qb
            .build()
            .fetch_all(&self.pool.current().await)
            .await
            .map_err(|e| map_sqlx(BACKEND, e))?;
        rows.iter().map(decode).collect()
    }

    async fn update(
        &self,
        id: &SessionId,
        patch: &SessionPatch,
        now: DateTime<Utc>,
    ) -> Result<SessionRecord> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("UPDATE sessions SET updated_at = ");
        qb.push_bind(micros(now));
        push_patch!(&mut qb, patch, micros);
        qb.push(" WHERE id = ").push_bind(id.as_str().to_owned());
        qb.push(format!(" RETURNING {SESSION_COLUMNS}"));
        let row = qb
            .build()
            .fetch_all(&self.pool.current().await)
            .await
            .map(first_row)
            .map_err(|e| map_sqlx(BACKEND, e))?;
        match row {
            Some(row) => decode(&row),
            None => Err(session_not_found(id)),
        }
    }

    async fn transition(
        &self,
        id: &SessionId,
        from: &[SessionStatus],
        to: SessionStatus,
        now: DateTime<Utc>,
    ) -> Result<SessionRecord> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("UPDATE sessions SET status = ");
        qb.push_bind(to.as_str())
            .push(", updated_at = ")
            .push_bind(micros(now))
            .push(" WHERE id = ")
            .push_bind(id.as_str().to_owned())
            .push(" AND status IN (");
        let mut list = qb.separated(", ");
        for s in accepted_statuses(from) {
            list.push_bind(s);
        }
        qb.push(format!(") RETURNING {SESSION_COLUMNS}"));
        let row = qb
            .build()
            .fetch_all(&self.pool.current().await)
            .await
            .map(first_row)
            .map_err(|e| map_sqlx(BACKEND, e))?;
        if let Some(row) = row {
            return decode(&row);
        }
        match self.fetch_optional(id).await? {
            None => Err(session_not_found(id)),
            Some(current) => Err(transition_conflict(id, current.status, from, to)),
        }
    }

    async fn claim_lease(
        &self,
        id: &SessionId,
        node: &NodeId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Lease> {
        let expires_at = lease_expiry(now, ttl)?;
        let row = sqlx::query(
            "UPDATE sessions SET lease_node = ?1, lease_expires_at = ?2 \
             WHERE id = ?3 AND (lease_node IS NULL OR lease_expires_at <= ?4 OR lease_node = ?1) \
             RETURNING lease_node",
        )
        .bind(node.as_str())
        .bind(micros(expires_at))
        .bind(id.as_str())
        .bind(micros(now))
        .fetch_all(&self.pool.current().await)
        .await
        .map(first_row)
        .map_err(|e| map_sqlx(BACKEND, e))?;
        if row.is_some() {
            return Ok(Lease {
                node: node.clone(),
                expires_at,
            });
        }
        match self.fetch_optional(id).await? {
            None => Err(session_not_found(id)),
            Some(current) => Err(lease_conflict(id, &current, node)),
        }
    }

    async fn release_lease(&self, id: &SessionId, node: &NodeId) -> Result<()> {
        let done = sqlx::query(
            "UPDATE sessions SET lease_node = NULL, lease_expires_at = NULL \
             WHERE id = ? AND lease_node = ?",
        )
        .bind(id.as_str())
        .bind(node.as_str())
        .execute(&self.pool.current().await)
        .await
        .map_err(|e| map_sqlx(BACKEND, e))?;
        if done.rows_affected() > 0 {
            return Ok(());
        }
        let exists = sqlx::query("SELECT 1 FROM sessions WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool.current().await)
            .await
            .map_err(|e| map_sqlx(BACKEND, e))?
            .is_some();
        if exists {
            Ok(())
        } else {
            Err(session_not_found(id))
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id = ?")
            .bind(id.as_str())
            .execute(&self.pool.current().await)
            .await
            .map_err(|e| map_sqlx(BACKEND, e))?;
        Ok(done.rows_affected() > 0)
    }
}
