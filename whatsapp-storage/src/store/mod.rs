//! [`whatsapp_core::SessionStore`] implementations, one module per backend.
//!
//! - [`SqliteSessionStore`] (feature `sqlite`): the embedded default, one file under the data
//!   directory, in WAL mode.
//! - [`PostgresSessionStore`] (feature `postgres`): plain Postgres as Supabase offers it.
//! - [`connect`] picks one by URL scheme and returns it as `Arc<dyn SessionStore>`.
//!
//! Both run their migrations when opened (`migrations/sqlite`, `migrations/postgres`), so a
//! fresh database is ready after the first [`connect`]. The Postgres migrations use no
//! extension and nothing that needs a superuser.
//!
//! # Atomicity
//!
//! Every compare-and-set is a single statement, so several nodes can share one database:
//!
//! - `transition`: `UPDATE sessions SET status = … WHERE id = ? AND status IN (…) RETURNING …`
//! - `claim_lease`: `UPDATE sessions SET lease_node = ?, lease_expires_at = ? WHERE id = ? AND
//!   (lease_node IS NULL OR lease_expires_at <= now OR lease_node = ?) RETURNING …`
//! - `update` writes only the columns set in the patch, so it never overwrites a concurrent
//!   transition or lease change.
//!
//! When such an update touches no row, a follow-up read tells `NotFound` from `Conflict`.
//!
//! # Schema
//!
//! `sessions` holds one [`whatsapp_core::SessionRecord`] per row (the lease as the two
//! columns `lease_node`, `lease_expires_at`: both set or both NULL). Timestamps have
//! microsecond precision: `timestamptz` in Postgres, integer microseconds since the Unix
//! epoch in SQLite. Counters are 64-bit columns checked to fit a `u32`.
//!
//! Two more tables are created now for the server's later work (see [`queue`] for the typed
//! API):
//!
//! - `outbox`: e-mails and webhooks to deliver at least once. Columns: `id`, `kind`
//!   (`email` | `webhook`), `dedupe_key` (optional, unique: enqueueing the same key twice
//!   stores one item), `payload` (JSON), `status` (`pending` | `delivered` | `dead`),
//!   `attempts`, `next_attempt_at`, `last_error`, `created_at`, `delivered_at`. A worker
//!   claims due items by pushing `next_attempt_at` forward in one statement (Postgres adds
//!   `FOR UPDATE SKIP LOCKED`), so two workers never take the same item at once.
//! - `message_queue`: outgoing WhatsApp messages. Columns: `id`, `session_id` (foreign key,
//!   `ON DELETE CASCADE`), `idempotency_key` (optional, unique per session), `recipient`,
//!   `body`, `status` (`queued` | `sending` | `sent` | `failed`), `attempts`, `not_before`,
//!   `created_at`, `sent_at`, `message_id` (WhatsApp's id once sent), `error`. Only the node
//!   holding a session's lease sends its messages, oldest first.
//!
//! Migration `0003_tenants` adds what the HTTP API needs (see [`tenants`] for the typed API):
//!
//! - `tenants`: `id`, `name`, `webhook_url`, `webhook_secret`, `created_at`.
//! - `api_keys`: `id` (the public key id), `tenant` (foreign key, `ON DELETE CASCADE`),
//!   `key_hash` (unique: hex SHA-256 of the key; the key itself is never stored), `label`,
//!   `created_at`, `revoked_at`.
//! - `number_checks`: the cache of "is this number on WhatsApp?", keyed by `session_id`
//!   (foreign key to `sessions`, `ON DELETE CASCADE`) and `phone`; `registered`, `wid`,
//!   `checked_at`.
//!
//! Migration `0006_message_history` adds `message_history` (see [`history`]): every message
//! a session's account received or sent, once per `(session_id, message_key)`.
//!
//! On Postgres every table has row level security enabled and no policy: Supabase's
//! REST API (anon key) sees nothing; the service connects as the owner, which RLS does not
//! restrict.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use whatsapp_core::types::truncate_micros;
use whatsapp_core::{
    EmailAddress, Error, Lease, NodeId, Result, SessionId, SessionRecord, SessionStatus,
    SessionStore, TenantId, Wid,
};

pub mod history;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod queue;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod tenants;

pub use history::{
    ChatSummary, HistoryCursor, MessageChange, MessageHistory, NewMessage, Recorded, StoredMessage,
};
#[cfg(feature = "postgres")]
pub use postgres::{
    PostgresMessageHistory, PostgresMessageQueue, PostgresNumberCache, PostgresOutbox,
    PostgresSessionStore, PostgresTenantStore,
};
pub use queue::{
    Enqueued, MessageQueue, NewOutboxItem, NewQueuedMessage, OutboxItem, OutboxKind, OutboxStatus,
    OutboxStore, QueueStatus, QueuedMessage,
};
#[cfg(feature = "sqlite")]
pub use sqlite::{
    SqliteMessageHistory, SqliteMessageQueue, SqliteNumberCache, SqliteOutbox, SqliteSessionStore,
    SqliteTenantStore,
};
pub use tenants::{ApiKeyRecord, CachedNumber, NewTenant, NumberCache, TenantRecord, TenantStore};

/// The stores of one database, shared by the server.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Session records.
    pub sessions: Arc<dyn SessionStore>,
    /// The durable outbox (e-mails, webhooks).
    pub outbox: Arc<dyn OutboxStore>,
    /// Outgoing WhatsApp messages.
    pub messages: Arc<dyn MessageQueue>,
    /// Tenants and their API keys.
    pub tenants: Arc<dyn TenantStore>,
    /// The cache of phone-number checks.
    pub numbers: Arc<dyn NumberCache>,
    /// The message history.
    pub history: Arc<dyn MessageHistory>,
    /// The database's write probe (readiness: is the disk full or read-only?).
    pub probe: Arc<dyn WriteProbe>,
}

/// A cheap check that the database takes writes, for readiness probes.
///
/// # Contract
///
/// - `probe_write` overwrites the one row of table `write_probe` and returns once that is
///   committed: the database never grows by it, and a full disk
///   ([`Error::StorageFull`]) or a read-only one ([`Error::StorageReadOnly`]) fails it the
///   way it fails every other write.
#[async_trait::async_trait]
pub trait WriteProbe: Send + Sync + fmt::Debug + 'static {
    /// Commits one tiny write stamped `now`.
    async fn probe_write(&self, now: DateTime<Utc>) -> Result<()>;
}

/// Opens the session store named by `url` and runs its migrations.
///
/// - `sqlite://path/to/file.db`, `sqlite:///absolute/path.db`, `sqlite::memory:` →
///   [`SqliteSessionStore`] (the file and its directory are created if missing).
/// - `postgres://…`, `postgresql://…` → [`PostgresSessionStore`].
///
/// Any other scheme, or a backend left out at build time, is [`Error::InvalidInput`].
pub async fn connect(url: &str) -> Result<Arc<dyn SessionStore>> {
    Ok(open(url).await?.sessions)
}

/// Like [`connect`], with the other stores of the same database (outbox, message queue,
/// tenants, number cache).
pub async fn open(url: &str) -> Result<Stores> {
    let scheme = url
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match scheme.as_str() {
        "sqlite" => {
            #[cfg(feature = "sqlite")]
            {
                let store = SqliteSessionStore::connect(url).await?;
                Ok(Stores {
                    outbox: Arc::new(store.outbox()),
                    messages: Arc::new(store.message_queue()),
                    tenants: Arc::new(store.tenants()),
                    numbers: Arc::new(store.numbers()),
                    history: Arc::new(store.history()),
                    probe: Arc::new(store.clone()),
                    sessions: Arc::new(store),
                })
            }
            #[cfg(not(feature = "sqlite"))]
            {
                Err(Error::invalid(
                    "database url",
                    "this build has no SQLite support (enable feature `sqlite` of whatsapp-storage)",
                ))
            }
        }
        "postgres" | "postgresql" => {
            #[cfg(feature = "postgres")]
            {
                let store = PostgresSessionStore::connect(url).await?;
                Ok(Stores {
                    outbox: Arc::new(store.outbox()),
                    messages: Arc::new(store.message_queue()),
                    tenants: Arc::new(store.tenants()),
                    numbers: Arc::new(store.numbers()),
                    history: Arc::new(store.history()),
                    probe: Arc::new(store.clone()),
                    sessions: Arc::new(store),
                })
            }
            #[cfg(not(feature = "postgres"))]
            {
                Err(Error::invalid(
                    "database url",
                    "this build has no Postgres support (enable feature `postgres` of whatsapp-storage)",
                ))
            }
        }
        _ => Err(Error::invalid(
            "database url",
            format!(
                "unsupported scheme in {}; expected sqlite://<path>, sqlite::memory: or postgres://user:password@host:5432/db",
                RedactedUrl::new(url)
            ),
        )),
    }
}

/// A database URL that prints with its password (user info and `password=` parameter)
/// replaced by `***`, for logs, errors and `Debug`.
///
/// ```
/// use whatsapp_storage::store::RedactedUrl;
/// let url = RedactedUrl::new("postgres://app:s3cret@db.example.com:5432/app?sslmode=require");
/// assert_eq!(url.to_string(), "postgres://app:***@db.example.com:5432/app?sslmode=require");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedactedUrl(String);

impl RedactedUrl {
    /// Redacts `url`. Something that does not parse as a URL keeps only its scheme.
    pub fn new(url: &str) -> Self {
        // `sqlite::memory:` and `sqlite:relative.db` are not hierarchical URLs, and carry no
        // password: keep them as they are.
        if url.starts_with("sqlite:") && !url.contains('@') && !url.contains("password") {
            return RedactedUrl(url.to_owned());
        }
        match url::Url::parse(url) {
            Ok(mut parsed) => {
                if parsed.password().is_some() {
                    let _ = parsed.set_password(Some("***"));
                }
                if parsed.query().is_some() {
                    let pairs: Vec<(String, String)> = parsed
                        .query_pairs()
                        .map(|(k, v)| {
                            let secret = k.eq_ignore_ascii_case("password")
                                || k.eq_ignore_ascii_case("sslpassword");
                            let v = if secret {
                                "***".to_owned()
                            } else {
                                v.into_owned()
                            };
                            (k.into_owned(), v)
                        })
                        .collect();
                    parsed.query_pairs_mut().clear().extend_pairs(pairs);
                }
                RedactedUrl(parsed.to_string())
            }
            Err(_) => {
                let scheme = url.split(':').next().unwrap_or_default();
                let scheme =
                    if scheme.len() < 16 && scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
                        scheme
                    } else {
                        "?"
                    };
                RedactedUrl(format!("{scheme}:<unparsable url>"))
            }
        }
    }

    /// The redacted URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The columns of `sessions`, in the order [`SessionRow`] reads them.
pub(crate) const SESSION_COLUMNS: &str = "id, name, tenant, owner_email, status, wid, push_name, \
     created_at, updated_at, last_seen_at, last_connected_at, last_activity_at, \
     last_backup_at, expires_at, last_error, restarts, reconnects, linked_at, lease_node, lease_expires_at";

/// One `sessions` row with timestamps already decoded, shared by the backends.
pub(crate) struct SessionRow {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub owner_email: Option<String>,
    pub status: String,
    pub wid: Option<String>,
    pub push_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub last_connected_at: Option<DateTime<Utc>>,
    pub last_activity_at: Option<DateTime<Utc>>,
    pub last_backup_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub restarts: i64,
    pub reconnects: i64,
    pub linked_at: Option<DateTime<Utc>>,
    pub lease_node: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
}

impl SessionRow {
    /// Validates the stored values; anything that fails is [`Error::Corrupt`].
    pub(crate) fn into_record(self) -> Result<SessionRecord> {
        let id = self.id;
        let corrupt = |what: &str, e: Error| Error::Corrupt(format!("session {id}: {what}: {e}"));
        let counter = |what: &str, v: i64| {
            u32::try_from(v)
                .map_err(|_| Error::Corrupt(format!("session {id}: {what} = {v} is not a u32")))
        };
        let lease = match (self.lease_node, self.lease_expires_at) {
            (Some(node), Some(expires_at)) => Some(Lease {
                node: NodeId::new(node).map_err(|e| corrupt("lease node", e))?,
                expires_at,
            }),
            (None, None) => None,
            _ => {
                return Err(Error::Corrupt(format!(
                    "session {id}: lease node and expiry must both be set or both be empty"
                )));
            }
        };
        Ok(SessionRecord {
            tenant: TenantId::new(self.tenant).map_err(|e| corrupt("tenant", e))?,
            owner_email: self
                .owner_email
                .map(EmailAddress::new)
                .transpose()
                .map_err(|e| corrupt("owner e-mail", e))?,
            status: self.status.parse().map_err(|e| corrupt("status", e))?,
            wid: self
                .wid
                .as_deref()
                .map(Wid::parse)
                .transpose()
                .map_err(|e| corrupt("wid", e))?,
            push_name: self.push_name,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_seen_at: self.last_seen_at,
            last_connected_at: self.last_connected_at,
            last_activity_at: self.last_activity_at,
            last_backup_at: self.last_backup_at,
            expires_at: self.expires_at,
            last_error: self.last_error,
            restarts: counter("restarts", self.restarts)?,
            reconnects: counter("reconnects", self.reconnects)?,
            linked_at: self.linked_at,
            lease,
            name: SessionId::new(self.name).map_err(|e| corrupt("name", e))?,
            id: SessionId::new(id.clone()).map_err(|e| corrupt("id", e))?,
        })
    }
}

/// `now + ttl`, truncated to microseconds.
pub(crate) fn lease_expiry(now: DateTime<Utc>, ttl: Duration) -> Result<DateTime<Utc>> {
    chrono::TimeDelta::from_std(ttl)
        .ok()
        .and_then(|ttl| now.checked_add_signed(ttl))
        .map(truncate_micros)
        .ok_or_else(|| Error::invalid("lease ttl", format!("{ttl:?} is too long")))
}

/// The statuses a transition accepts: `from`, or every status when `from` is empty.
pub(crate) fn accepted_statuses(from: &[SessionStatus]) -> Vec<&'static str> {
    if from.is_empty() {
        SessionStatus::ALL.iter().map(|s| s.as_str()).collect()
    } else {
        from.iter().map(|s| s.as_str()).collect()
    }
}

/// The error for a transition whose expectation did not hold.
pub(crate) fn transition_conflict(
    id: &SessionId,
    actual: SessionStatus,
    from: &[SessionStatus],
    to: SessionStatus,
) -> Error {
    let expected: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    Error::Conflict(format!(
        "session {id} is {actual}, not {}; cannot move it to {to}",
        expected.join(" or ")
    ))
}

/// The error for a lease held by someone else.
pub(crate) fn lease_conflict(id: &SessionId, record: &SessionRecord, node: &NodeId) -> Error {
    match &record.lease {
        Some(lease) => Error::Conflict(format!(
            "session {id} is leased by node {} until {}; node {node} cannot claim it",
            lease.node,
            lease
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        )),
        // The lease was released between the failed claim and the read: a retry will win.
        None => Error::Conflict(format!(
            "the lease on session {id} changed while node {node} claimed it; try again"
        )),
    }
}

/// The error for an operation on a session that does not exist.
pub(crate) fn session_not_found(id: &SessionId) -> Error {
    Error::not_found(format!("session {id}"))
}

/// The first row of a `… RETURNING` write run with `fetch_all`.
///
/// Writes with `RETURNING` are always run to completion (`fetch_all`), never with
/// `fetch_optional`/`fetch_one`: sqlx's SQLite driver stops stepping a statement after the
/// row it wanted and discards the error of the final step, and in autocommit mode that final
/// step is the **commit**. A commit that failed (a full disk: `SQLITE_FULL`) then looked
/// like a stored row, with an id that the next insert was handed again.
pub(crate) fn first_row<R>(rows: Vec<R>) -> Option<R> {
    rows.into_iter().next()
}

/// Like [`first_row`] for a write that must return a row.
pub(crate) fn one_row<R>(rows: Vec<R>) -> Result<R, sqlx::Error> {
    rows.into_iter().next().ok_or(sqlx::Error::RowNotFound)
}

/// Maps an sqlx error to the core error type. Conflicts are decided by the callers that know
/// what the conflict means; here a unique violation is a generic [`Error::Conflict`].
///
/// A full disk is [`Error::StorageFull`] and a read-only one [`Error::StorageReadOnly`], so
/// that the server can tell the client (507, 503 `read_only`) and the operator what is
/// wrong. A SQLite error that leaves a connection unusable (read-only, I/O error, cannot
/// open) also retires the pool's connections opened before it ([`sqlite_fault`]).
pub(crate) fn map_sqlx(backend: &'static str, err: sqlx::Error) -> Error {
    use sqlx::Error as E;
    match err {
        E::Database(db) => {
            let code = db.code().map(|c| c.into_owned());
            let fault = match (backend, code.as_deref()) {
                ("postgres", Some(c)) => pg_fault(c),
                (_, Some(c)) => sqlite_fault(c),
                _ => None,
            };
            match fault {
                Some(StorageFault::Full) => {
                    return Error::StorageFull {
                        what: backend.to_owned(),
                        reason: format!("the disk holding the database is full ({})", db.message()),
                    };
                }
                Some(StorageFault::ReadOnly) => {
                    return Error::StorageReadOnly {
                        what: backend.to_owned(),
                        reason: format!(
                            "the database file or its directory is read-only ({})",
                            db.message()
                        ),
                    };
                }
                None => {}
            }
            let transient = match backend {
                "postgres" => code.as_deref().is_some_and(pg_code_is_transient),
                _ => code.as_deref().is_some_and(sqlite_code_is_transient),
            };
            match db.kind() {
                sqlx::error::ErrorKind::UniqueViolation => {
                    Error::Conflict(format!("{backend}: {}", db.message()))
                }
                sqlx::error::ErrorKind::ForeignKeyViolation
                | sqlx::error::ErrorKind::CheckViolation
                | sqlx::error::ErrorKind::NotNullViolation => {
                    Error::invalid("stored value", format!("{backend}: {}", db.message()))
                }
                _ => Error::backend(backend, transient, E::Database(db)),
            }
        }
        E::RowNotFound => Error::not_found("row"),
        E::Io(io) if io.raw_os_error() == Some(ENOSPC) => Error::StorageFull {
            what: backend.to_owned(),
            reason: format!("the disk holding the database is full ({io})"),
        },
        E::Io(io) if io.raw_os_error() == Some(EROFS) => {
            retire_sqlite_connections();
            Error::StorageReadOnly {
                what: backend.to_owned(),
                reason: format!("the database's file system is read-only ({io})"),
            }
        }
        e @ (E::Io(_) | E::PoolTimedOut | E::Tls(_) | E::Protocol(_) | E::WorkerCrashed) => {
            Error::backend(backend, true, e)
        }
        e => Error::backend(backend, false, e),
    }
}

/// `ENOSPC` and `EROFS` on Linux (and every other Unix this runs on).
const ENOSPC: i32 = 28;
const EROFS: i32 = 30;

/// What is wrong with the storage under a database, when it is the storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StorageFault {
    Full,
    ReadOnly,
}

/// Postgres: `53100` disk_full; `25006` read_only_sql_transaction (a standby, or
/// `default_transaction_read_only`).
fn pg_fault(code: &str) -> Option<StorageFault> {
    match code {
        "53100" => Some(StorageFault::Full),
        "25006" => Some(StorageFault::ReadOnly),
        _ => None,
    }
}

/// SQLite (extended result codes): `SQLITE_FULL` (13); `SQLITE_READONLY` (8) and its
/// extended codes. `SQLITE_READONLY`, `SQLITE_IOERR` (10) and `SQLITE_CANTOPEN` (14) also
/// mean that the connection's file handles may be bad for good (a connection opened while
/// the directory was read-only stays read-only), so they retire the connections opened so
/// far: the pool opens fresh ones, which see the disk as it is now.
fn sqlite_fault(code: &str) -> Option<StorageFault> {
    let primary = code.parse::<i64>().ok()? & 0xff;
    if matches!(primary, 8 | 10 | 14) {
        retire_sqlite_connections();
    }
    match primary {
        13 => Some(StorageFault::Full),
        8 => Some(StorageFault::ReadOnly),
        _ => None,
    }
}

/// When (nanoseconds after [`clock_base`]) a SQLite error last retired the connections
/// opened before it; 0: never.
static SQLITE_RETIRED_AT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn clock_base() -> std::time::Instant {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(std::time::Instant::now)
}

fn nanos_since_base(t: std::time::Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(clock_base()).as_nanos()).unwrap_or(u64::MAX)
}

/// Marks every SQLite pool opened until now as retired: its next use closes it and opens a
/// new one ([`sqlite_retired_since`]). Process-wide, because the error does not say which
/// connection failed; reopening a SQLite pool is cheap.
pub(crate) fn retire_sqlite_connections() {
    // At least 1, so that "retired at 0" keeps meaning "never".
    let now = nanos_since_base(std::time::Instant::now()).max(1);
    SQLITE_RETIRED_AT.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
}

/// Whether a SQLite error that retires connections came after `opened`.
pub(crate) fn sqlite_retired_since(opened: std::time::Instant) -> bool {
    let retired = SQLITE_RETIRED_AT.load(std::sync::atomic::Ordering::SeqCst);
    retired != 0 && retired >= nanos_since_base(opened)
}

/// [`Pool::current`](CurrentPool::current) for backends whose pool is never replaced.
pub(crate) trait CurrentPool: Sized {
    /// A clone of the pool.
    fn current(&self) -> impl std::future::Future<Output = Self> + Send;
}

impl<DB: sqlx::Database> CurrentPool for sqlx::Pool<DB> {
    async fn current(&self) -> Self {
        self.clone()
    }
}

/// Maps a migration error.
pub(crate) fn map_migrate(backend: &'static str, err: sqlx::migrate::MigrateError) -> Error {
    use sqlx::migrate::MigrateError as M;
    match err {
        M::Execute(e) => map_sqlx(backend, e),
        e => Error::backend(backend, false, e),
    }
}

/// SQLSTATE classes worth retrying: connection exceptions, serialization failures and
/// deadlocks, insufficient resources, operator intervention, lock not available.
fn pg_code_is_transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || matches!(code, "40001" | "40P01" | "55P03")
}

/// SQLite primary result codes worth retrying: BUSY, LOCKED, IOERR, FULL.
fn sqlite_code_is_transient(code: &str) -> bool {
    code.parse::<i64>()
        .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13))
}

/// Pushes `, column = value` for every field set in a [`whatsapp_core::SessionPatch`] onto a
/// `QueryBuilder`; `$ts` converts a timestamp to the backend's bind type.
macro_rules! push_patch {
    ($qb:expr, $patch:expr, $ts:expr) => {{
        let qb = $qb;
        let patch: &whatsapp_core::SessionPatch = $patch;
        let ts = $ts;
        if let Some(v) = &patch.owner_email {
            qb.push(", owner_email = ")
                .push_bind(v.as_ref().map(|e| e.as_str().to_owned()));
        }
        if let Some(v) = &patch.wid {
            qb.push(", wid = ")
                .push_bind(v.as_ref().map(|w| w.to_string()));
        }
        if let Some(v) = &patch.push_name {
            qb.push(", push_name = ").push_bind(v.clone());
        }
        if let Some(v) = patch.last_seen_at {
            qb.push(", last_seen_at = ").push_bind(ts(v));
        }
        if let Some(v) = patch.last_connected_at {
            qb.push(", last_connected_at = ").push_bind(ts(v));
        }
        if let Some(v) = patch.last_activity_at {
            qb.push(", last_activity_at = ").push_bind(ts(v));
        }
        if let Some(v) = patch.last_backup_at {
            qb.push(", last_backup_at = ").push_bind(ts(v));
        }
        if let Some(v) = patch.expires_at {
            qb.push(", expires_at = ").push_bind(v.map(ts));
        }
        if let Some(v) = &patch.last_error {
            qb.push(", last_error = ").push_bind(v.clone());
        }
        if let Some(v) = patch.restarts {
            qb.push(", restarts = ").push_bind(i64::from(v));
        }
        if let Some(v) = patch.reconnects {
            qb.push(", reconnects = ").push_bind(i64::from(v));
        }
        if let Some(v) = patch.linked_at {
            qb.push(", linked_at = ").push_bind(v.map(ts));
        }
    }};
}
pub(crate) use push_patch;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_print_without_passwords() {
        let cases = [
            (
                "postgres://app:s3cret@db.example.com:5432/app",
                "postgres://app:***@db.example.com:5432/app",
            ),
            (
                "postgresql://db.example.com/app?user=app&password=s3cret&sslmode=require",
                "postgresql://db.example.com/app?user=app&password=***&sslmode=require",
            ),
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ),
            ("sqlite::memory:", "sqlite::memory:"),
            ("sqlite://data/sessions.db", "sqlite://data/sessions.db"),
        ];
        for (input, want) in cases {
            let r = RedactedUrl::new(input);
            assert_eq!(r.to_string(), want);
            assert!(!format!("{r:?}").contains("s3cret"));
        }
        let odd = RedactedUrl::new("postgres://app:s3cret@[bad");
        assert!(!odd.to_string().contains("s3cret"), "{odd}");
    }

    #[test]
    fn lease_expiry_truncates_and_rejects_overflow() {
        let now = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let exp = lease_expiry(now, Duration::from_millis(1500)).unwrap();
        assert_eq!(exp.timestamp_subsec_nanos(), 623_456_000);
        assert!(lease_expiry(now, Duration::MAX).is_err());
    }

    #[test]
    fn error_codes_classify() {
        assert!(pg_code_is_transient("40001"));
        assert!(pg_code_is_transient("08006"));
        assert!(!pg_code_is_transient("23505"));
        assert!(sqlite_code_is_transient("5"));
        assert!(sqlite_code_is_transient("517"));
        assert!(!sqlite_code_is_transient("19"));
    }

    #[test]
    fn full_and_read_only_storage_are_named() {
        assert_eq!(sqlite_fault("13"), Some(StorageFault::Full));
        assert_eq!(sqlite_fault("8"), Some(StorageFault::ReadOnly));
        // SQLITE_READONLY_DIRECTORY (1544), SQLITE_READONLY_CANTINIT (1288).
        assert_eq!(sqlite_fault("1544"), Some(StorageFault::ReadOnly));
        assert_eq!(sqlite_fault("1288"), Some(StorageFault::ReadOnly));
        assert_eq!(sqlite_fault("5"), None);
        assert_eq!(pg_fault("53100"), Some(StorageFault::Full));
        assert_eq!(pg_fault("25006"), Some(StorageFault::ReadOnly));
        assert_eq!(pg_fault("23505"), None);
    }

    #[test]
    fn retiring_renews_pools_opened_before() {
        let before = std::time::Instant::now();
        retire_sqlite_connections();
        assert!(sqlite_retired_since(before));
    }
}
