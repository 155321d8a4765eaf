//! [`PostgresSessionStore`]: plain Postgres, as Supabase offers it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use whatsapp_core::types::truncate_micros;
use whatsapp_core::{
    Error, Lease, NodeId, Result, SessionFilter, SessionId, SessionPatch, SessionRecord,
    SessionStatus, SessionStore,
};

use super::{
    CurrentPool, RedactedUrl, SESSION_COLUMNS, SessionRow, WriteProbe, accepted_statuses,
    first_row, lease_conflict, lease_expiry, map_migrate, map_sqlx, one_row, push_patch,
    session_not_found, transition_conflict,
};

const BACKEND: &str = "postgres";

/// Connections in the pool. Supabase's smallest plan allows 60 direct connections in all.
const MAX_CONNECTIONS: u32 = 10;

/// How long a caller waits for a free connection before a transient error.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A [`SessionStore`] in Postgres.
///
/// Runs its migrations on connect (no extension, no superuser: fine on Supabase). Several
/// server nodes may share one database: transitions and lease claims are single-statement
/// compare-and-sets.
///
/// With Supabase, use the direct connection or the session pooler (port 5432): the
/// transaction pooler (port 6543) does not keep the prepared statements sqlx relies on.
///
/// `Debug` prints the URL with its password replaced by `***`.
#[derive(Clone)]
pub struct PostgresSessionStore {
    pool: PgPool,
    url: Option<RedactedUrl>,
}

impl fmt::Debug for PostgresSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSessionStore")
            .field("url", &self.url)
            .field("connections", &self.pool.size())
            .finish()
    }
}

impl PostgresSessionStore {
    /// Connects to `url` (`postgres://user:password@host:5432/db`) and runs the migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let redacted = RedactedUrl::new(url);
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            // sqlx's message may quote the URL: keep it out.
            let _ = e;
            Error::invalid(
                "database url",
                format!("{redacted} is not a valid postgres://user:password@host:port/db URL"),
            )
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| match map_sqlx(BACKEND, e) {
                Error::Backend {
                    transient: true,
                    source,
                    ..
                } => Error::unavailable(
                    "postgres",
                    format!("cannot connect to {redacted}: {source}"),
                ),
                other => other,
            })?;
        let mut store = Self::from_pool(pool).await?;
        tracing::debug!(url = %redacted, "opened Postgres session store");
        store.url = Some(redacted);
        Ok(store)
    }

    /// Uses an existing pool and runs the migrations on it.
    pub async fn from_pool(pool: PgPool) -> Result<Self> {
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| map_migrate(BACKEND, e))?;
        Ok(PostgresSessionStore { pool, url: None })
    }

    /// The connection pool, for the other tables of the same database (outbox, queue).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The outbox in the same database.
    pub fn outbox(&self) -> PostgresOutbox {
        PostgresOutbox::new(self.pool.clone())
    }

    /// The outgoing message queue in the same database.
    pub fn message_queue(&self) -> PostgresMessageQueue {
        PostgresMessageQueue::new(self.pool.clone())
    }

    /// Tenants and API keys in the same database.
    pub fn tenants(&self) -> PostgresTenantStore {
        PostgresTenantStore::new(self.pool.clone())
    }

    /// The phone-number check cache in the same database.
    pub fn numbers(&self) -> PostgresNumberCache {
        PostgresNumberCache::new(self.pool.clone())
    }

    /// The message history in the same database.
    pub fn history(&self) -> PostgresMessageHistory {
        PostgresMessageHistory::new(self.pool.clone())
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn fetch_optional(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
        sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool.current().await)
            .await
            .map_err(|e| map_sqlx(BACKEND, e))?
            .map(|row| decode(&row))
            .transpose()
    }
}

fn row_ts(row: &PgRow, column: &str) -> Result<DateTime<Utc>> {
    row.try_get(column).map_err(|e| map_sqlx(BACKEND, e))
}

fn row_opt_ts(row: &PgRow, column: &str) -> Result<Option<DateTime<Utc>>> {
    row.try_get(column).map_err(|e| map_sqlx(BACKEND, e))
}

super::queue::impl_queues! {
    backend: BACKEND,
    db: Postgres,
    pool: PgPool,
    row: PgRow,
    outbox: PostgresOutbox,
    queue: PostgresMessageQueue,
    ts: ts,
    get_ts: row_ts,
    get_opt_ts: row_opt_ts,
    // Concurrent workers skip each other's rows instead of queueing behind them.
    lock_clause: " FOR UPDATE SKIP LOCKED",
}

super::history::impl_history! {
    backend: BACKEND,
    pool: PgPool,
    row: PgRow,
    history: PostgresMessageHistory,
    ts: ts,
    get_ts: row_ts,
    get_opt_ts: row_opt_ts,
}

super::tenants::impl_tenants! {
    backend: BACKEND,
    pool: PgPool,
    row: PgRow,
    tenants: PostgresTenantStore,
    numbers: PostgresNumberCache,
    ts: ts,
    get_ts: row_ts,
    get_opt_ts: row_opt_ts,
}

fn decode(row: &PgRow) -> Result<SessionRecord> {
    let get = |e| map_sqlx(BACKEND, e);
    SessionRow {
        id: row.try_get("id").map_err(get)?,
        name: row.try_get("name").map_err(get)?,
        tenant: row.try_get("tenant").map_err(get)?,
        owner_email: row.try_get("owner_email").map_err(get)?,
        status: row.try_get("status").map_err(get)?,
        wid: row.try_get("wid").map_err(get)?,
        push_name: row.try_get("push_name").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
        last_seen_at: row.try_get("last_seen_at").map_err(get)?,
        last_connected_at: row.try_get("last_connected_at").map_err(get)?,
        last_activity_at: row.try_get("last_activity_at").map_err(get)?,
        last_backup_at: row.try_get("last_backup_at").map_err(get)?,
        expires_at: row.try_get("expires_at").map_err(get)?,
        last_error: row.try_get("last_error").map_err(get)?,
        restarts: row.try_get("restarts").map_err(get)?,
        reconnects: row.try_get("reconnects").map_err(get)?,
        linked_at: row.try_get("linked_at").map_err(get)?,
        lease_node: row.try_get("lease_node").map_err(get)?,
        lease_expires_at: row.try_get("lease_expires_at").map_err(get)?,
    }
    .into_record()
}

/// Truncates before binding: sqlx rounds sub-microsecond parts of pre-2000 times towards
/// 2000-01-01, which is not [`truncate_micros`].
fn ts(t: DateTime<Utc>) -> DateTime<Utc> {
    truncate_micros(t)
}

#[async_trait]
impl WriteProbe for PostgresSessionStore {
    async fn probe_write(&self, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO write_probe (id, probed_at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
        )
        .bind(truncate_micros(now))
        .execute(&self.pool.current().await)
        .await
        .map_err(|e| map_sqlx(BACKEND, e))?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for PostgresSessionStore {
    async fn create(&self, r: &SessionRecord) -> Result<()> {
        let sql = format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
        );
        let result = sqlx::query(&sql)
            .bind(r.id.as_str())
            .bind(r.name.as_str())
            .bind(r.tenant.as_str())
            .bind(r.owner_email.as_ref().map(|e| e.as_str()))
            .bind(r.status.as_str())
            .bind(r.wid.as_ref().map(|w| w.to_string()))
            .bind(r.push_name.as_deref())
            .bind(ts(r.created_at))
            .bind(ts(r.updated_at))
            .bind(r.last_seen_at.map(ts))
            .bind(r.last_connected_at.map(ts))
            .bind(r.last_activity_at.map(ts))
            .bind(r.last_backup_at.map(ts))
            .bind(r.expires_at.map(ts))
            .bind(r.last_error.as_deref())
            .bind(i64::from(r.restarts))
            .bind(i64::from(r.reconnects))
            .bind(r.linked_at.map(ts))
            .bind(r.lease.as_ref().map(|l| l.node.as_str()))
            .bind(r.lease.as_ref().map(|l| ts(l.expires_at)))
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
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE TRUE"));
        if let Some(tenant) = &filter.tenant {
            qb.push(" AND tenant = ")
                .push_bind(tenant.as_str().to_owned());
        }
        if let Some(name) = &filter.name {
            qb.push(" AND name = ").push_bind(name.as_str().to_owned());
        }
        if !filter.statuses.is_empty() {
            let statuses: Vec<String> = filter
                .statuses
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect();
            qb.push(" AND status = ANY(").push_bind(statuses).push(")");
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
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("UPDATE sessions SET updated_at = ");
        qb.push_bind(ts(now));
        push_patch!(&mut qb, patch, ts);
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
        let accepted: Vec<String> = accepted_statuses(from)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let sql = format!(
            "UPDATE sessions SET status = $1, updated_at = $2 \
             WHERE id = $3 AND status = ANY($4) RETURNING {SESSION_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(ts(now))
            .bind(id.as_str())
            .bind(accepted)
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
            "UPDATE sessions SET lease_node = $1, lease_expires_at = $2 \
             WHERE id = $3 AND (lease_node IS NULL OR lease_expires_at <= $4 OR lease_node = $1) \
             RETURNING lease_node",
        )
        .bind(node.as_str())
        .bind(expires_at)
        .bind(id.as_str())
        .bind(ts(now))
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
        // One statement: the CTE tells whether the session exists at all.
        let row = sqlx::query(
            "WITH released AS ( \
                 UPDATE sessions SET lease_node = NULL, lease_expires_at = NULL \
                 WHERE id = $1 AND lease_node = $2 RETURNING id) \
             SELECT EXISTS (SELECT 1 FROM released) OR EXISTS (SELECT 1 FROM sessions WHERE id = $1)",
        )
        .bind(id.as_str())
        .bind(node.as_str())
        .fetch_all(&self.pool.current().await)
        .await.and_then(one_row)
        .map_err(|e| map_sqlx(BACKEND, e))?;
        let exists: bool = row.try_get(0).map_err(|e| map_sqlx(BACKEND, e))?;
        if exists {
            Ok(())
        } else {
            Err(session_not_found(id))
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool.current().await)
            .await
            .map_err(|e| map_sqlx(BACKEND, e))?;
        Ok(done.rows_affected() > 0)
    }
}
