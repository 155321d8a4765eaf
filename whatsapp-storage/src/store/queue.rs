//! The durable outbox and the outgoing message queue, stored next to the sessions.
//!
//! Both live in the session store's database (tables `outbox` and `message_queue`, see the
//! [module docs](super)), so a state change and the e-mail it causes can be written by the
//! same process without a second system. Get them from a store:
//! [`SqliteSessionStore::outbox`](super::SqliteSessionStore::outbox),
//! [`PostgresSessionStore::message_queue`](super::PostgresSessionStore::message_queue), or
//! [`super::open`] for every store of the database at once.
//!
//! Claims are single statements (Postgres adds `FOR UPDATE SKIP LOCKED`), so several workers
//! on several nodes may poll the same tables: no item is handed to two of them at once.

use std::fmt::{self, Debug};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use whatsapp_core::{Error, MessageId, Result, SessionId, Wid};

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal { $($(#[$vdoc:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The name stored in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $s),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok($name::$variant),)+
                    other => Err(Error::invalid($field, format!("unknown value {other:?}"))),
                }
            }
        }
    };
}

string_enum!(
    /// What an outbox item delivers.
    OutboxKind, "outbox kind" {
        /// An e-mail (the payload holds recipient, subject, body).
        Email = "email",
        /// A webhook call (the payload holds URL and body).
        Webhook = "webhook",
    }
);

string_enum!(
    /// Where an outbox item is in its life.
    OutboxStatus, "outbox status" {
        /// Waiting for (another) delivery attempt.
        Pending = "pending",
        /// Delivered; kept for the record.
        Delivered = "delivered",
        /// Given up after too many failures.
        Dead = "dead",
    }
);

string_enum!(
    /// Where a queued message is in its life.
    QueueStatus, "message status" {
        /// Waiting to be sent.
        Queued = "queued",
        /// Taken by a sender.
        Sending = "sending",
        /// Sent; WhatsApp's message id is known.
        Sent = "sent",
        /// Given up.
        Failed = "failed",
    }
);

/// An outbox item to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxItem {
    /// What to deliver.
    pub kind: OutboxKind,
    /// Everything the deliverer needs, as JSON.
    pub payload: serde_json::Value,
    /// Enqueueing twice with the same key stores one item (e.g. `qr-reminder:alice:2026-03-28`).
    pub dedupe_key: Option<String>,
}

/// A stored outbox item.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    /// Assigned by the database, increasing.
    pub id: i64,
    /// What to deliver.
    pub kind: OutboxKind,
    /// The de-duplication key, if any.
    pub dedupe_key: Option<String>,
    /// What to deliver, as JSON.
    pub payload: serde_json::Value,
    /// Pending, delivered or dead.
    pub status: OutboxStatus,
    /// Delivery attempts so far (a claim counts as one).
    pub attempts: u32,
    /// When the item is next due (while claimed: when the claim runs out).
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The durable outbox: at-least-once delivery of e-mails and webhooks.
///
/// # Contract
///
/// - `enqueue` stores a pending item due at `now`; with a `dedupe_key` already stored it
///   stores nothing and returns the existing item.
/// - `claim_due` takes up to `limit` pending items due at `now`, oldest due first (returned
///   in id order), counts an attempt on each and hides them until `now + hold`: a worker that
///   dies mid-delivery leaves them to be claimed again then. Concurrent claims never return
///   the same item.
/// - `mark_delivered` / `mark_failed` apply to pending items only (otherwise
///   [`Error::Conflict`]; a missing id is [`Error::NotFound`]). `mark_failed` with a
///   `retry_at` keeps the item pending until then; without one the item is dead.
/// - `list` returns items newest first (id descending), optionally of one status, at most
///   `limit`, and with `before_id` only items with a lower id: pass the last id of a page to
///   get the next one.
/// - `requeue_dead` puts a dead item back to pending, due at `now`, with `attempts` reset to
///   0 and `last_error` kept. Any other status is [`Error::Conflict`] naming it; a missing id
///   is [`Error::NotFound`].
/// - `pending_stats` counts the pending items (claimed ones included) and gives the
///   `created_at` of the oldest, never later than `now`.
/// - Times read back truncated to microseconds; ids increase.
///
/// The suite `whatsapp_storage::testing::conformance::outbox_store` (feature `testing`)
/// checks each promise.
#[async_trait]
pub trait OutboxStore: Send + Sync + Debug + 'static {
    /// Stores an item due at `now` (or returns the one with the same dedupe key).
    async fn enqueue(&self, item: &NewOutboxItem, now: DateTime<Utc>) -> Result<OutboxItem>;

    /// Claims up to `limit` due items for `hold`.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        hold: Duration,
    ) -> Result<Vec<OutboxItem>>;

    /// Marks a claimed item delivered.
    async fn mark_delivered(&self, id: i64, now: DateTime<Utc>) -> Result<OutboxItem>;

    /// Records a failed attempt: retry at `retry_at`, or dead when `None`.
    async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<OutboxItem>;

    /// Reads one item.
    async fn get(&self, id: i64) -> Result<Option<OutboxItem>>;

    /// Items by id descending (newest first), optionally only one status, at most `limit`,
    /// with `id < before_id` when given (paging).
    async fn list(
        &self,
        status: Option<OutboxStatus>,
        limit: u32,
        before_id: Option<i64>,
    ) -> Result<Vec<OutboxItem>>;

    /// Puts a dead item back to pending, due at `now`, attempts reset to 0, last error kept.
    async fn requeue_dead(&self, id: i64, now: DateTime<Utc>) -> Result<OutboxItem>;

    /// How many items are pending, and the `created_at` of the oldest pending one (at most
    /// `now`, so that a node whose clock runs ahead cannot make the lag negative): for the
    /// outbox-lag metric.
    async fn pending_stats(&self, now: DateTime<Utc>) -> Result<(u64, Option<DateTime<Utc>>)>;
}

/// A message to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQueuedMessage {
    /// The session that sends it.
    pub session_id: SessionId,
    /// The client's idempotency key: queueing twice with the same key (for the same session)
    /// stores one message.
    pub idempotency_key: Option<String>,
    /// The chat to send to.
    pub recipient: Wid,
    /// The text.
    pub body: String,
    /// Not sent before this time.
    pub not_before: DateTime<Utc>,
}

/// A stored outgoing message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Assigned by the database, increasing: the sending order within a session.
    pub id: i64,
    /// The session that sends it.
    pub session_id: SessionId,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// The chat to send to.
    pub recipient: Wid,
    /// The text.
    pub body: String,
    /// Queued, sending, sent or failed.
    pub status: QueueStatus,
    /// Send attempts so far.
    pub attempts: u32,
    /// Not sent before this time.
    pub not_before: DateTime<Utc>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
    /// WhatsApp's id of the sent message.
    pub message_id: Option<MessageId>,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// What [`MessageQueue::enqueue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The stored message (the earlier one when the idempotency key was already used).
    pub message: QueuedMessage,
    /// Whether this call stored it (false: a duplicate of an earlier call).
    pub created: bool,
}

/// Outgoing WhatsApp messages, per session.
///
/// # Contract
///
/// - `enqueue` stores a queued message; an idempotency key already used for the same session
///   stores nothing and returns the earlier message with `created == false`. Ids increase;
///   times read back truncated to microseconds.
/// - `take_next` takes the session's oldest queued message due at `now` (lowest id), marks it
///   `sending` and counts an attempt. Concurrent callers never take the same message.
/// - `mark_sent` / `mark_failed` apply to `sending` messages only (otherwise
///   [`Error::Conflict`]; a missing id is [`Error::NotFound`]). `mark_failed` with a
///   `retry_at` queues the message again for then; without one it has failed for good.
/// - `requeue_sending` puts a session's `sending` messages back to `queued` — for the node
///   that takes over a session whose previous owner died mid-send (at-least-once).
/// - `list` gives a session's messages by id, all of them or those in the given statuses;
///   `get` of a missing id is `None`.
/// - `depth` counts the `queued` and `sending` messages of all sessions.
/// - Deleting a session deletes its messages and frees their idempotency keys.
/// - A queue stored with the sessions (the database queues) knows them: `enqueue` for a
///   missing session is [`Error::NotFound`], and deleting the session record deletes its
///   messages. A queue kept apart from the sessions (Redis, in memory) leaves the check to
///   its caller and deletes a session's messages with its own `delete_session`.
///
/// The suite `whatsapp_storage::testing::conformance::message_queue` (feature `testing`)
/// checks each promise.
#[async_trait]
pub trait MessageQueue: Send + Sync + Debug + 'static {
    /// Queues a message (idempotent per session and key).
    async fn enqueue(&self, message: &NewQueuedMessage, now: DateTime<Utc>) -> Result<Enqueued>;

    /// Takes the session's next due message, if any.
    async fn take_next(
        &self,
        session: &SessionId,
        now: DateTime<Utc>,
    ) -> Result<Option<QueuedMessage>>;

    /// Records a successful send.
    async fn mark_sent(
        &self,
        id: i64,
        message_id: &MessageId,
        now: DateTime<Utc>,
    ) -> Result<QueuedMessage>;

    /// Records a failed send: queued again at `retry_at`, or failed when `None`.
    async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<QueuedMessage>;

    /// Puts the session's `sending` messages back to `queued`; returns how many.
    async fn requeue_sending(&self, session: &SessionId) -> Result<u64>;

    /// Reads one message.
    async fn get(&self, id: i64) -> Result<Option<QueuedMessage>>;

    /// The session's messages in the given statuses (empty: all), by id.
    async fn list(
        &self,
        session: &SessionId,
        statuses: &[QueueStatus],
    ) -> Result<Vec<QueuedMessage>>;

    /// How many messages are `queued` or `sending`, over all sessions (the queue-depth
    /// metric).
    async fn depth(&self) -> Result<u64>;
}

pub(crate) const OUTBOX_COLUMNS: &str = "id, kind, dedupe_key, payload, status, attempts, \
     next_attempt_at, last_error, created_at, delivered_at";

pub(crate) const QUEUE_COLUMNS: &str = "id, session_id, idempotency_key, recipient, body, \
     status, attempts, not_before, created_at, sent_at, message_id, error";

pub(crate) fn attempts(v: i32) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Corrupt(format!("attempts = {v} is negative")))
}

pub(crate) fn outbox_not_found(id: i64) -> Error {
    Error::not_found(format!("outbox item {id}"))
}

pub(crate) fn message_not_found(id: i64) -> Error {
    Error::not_found(format!("queued message {id}"))
}

/// Implements [`OutboxStore`] and [`MessageQueue`] for one backend. The SQL is shared
/// (sqlx's SQLite driver accepts `$n` placeholders); the backend supplies its timestamp
/// encoding and decoding, and the row-locking clause for claims.
macro_rules! impl_queues {
    (
        backend: $backend:expr,
        db: $db:ty,
        pool: $pool:ty,
        row: $row:ty,
        outbox: $outbox:ident,
        queue: $queue:ident,
        ts: $ts:path,
        get_ts: $get_ts:path,
        get_opt_ts: $get_opt_ts:path,
        lock_clause: $lock:expr $(,)?
    ) => {
        /// This backend's [`OutboxStore`](crate::store::queue::OutboxStore), sharing the
        /// session store's pool.
        #[derive(Clone)]
        pub struct $outbox {
            pool: $pool,
        }

        impl std::fmt::Debug for $outbox {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($outbox)).finish_non_exhaustive()
            }
        }

        /// This backend's [`MessageQueue`](crate::store::queue::MessageQueue), sharing the
        /// session store's pool.
        #[derive(Clone)]
        pub struct $queue {
            pool: $pool,
        }

        impl std::fmt::Debug for $queue {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($queue)).finish_non_exhaustive()
            }
        }

        mod queue_impls {
            use super::*;
            use crate::store::queue::{
                Enqueued, MessageQueue, NewOutboxItem, NewQueuedMessage, OUTBOX_COLUMNS,
                OutboxItem, OutboxStatus, OutboxStore, QUEUE_COLUMNS, QueueStatus,
                QueuedMessage, attempts, message_not_found, outbox_not_found,
            };
            use sqlx::types::Json;
            use whatsapp_core::{MessageId, Wid};

            fn decode_outbox(row: &$row) -> Result<OutboxItem> {
                let get = |e| map_sqlx($backend, e);
                let kind: String = row.try_get("kind").map_err(get)?;
                let status: String = row.try_get("status").map_err(get)?;
                let payload: Json<serde_json::Value> = row.try_get("payload").map_err(get)?;
                Ok(OutboxItem {
                    id: row.try_get("id").map_err(get)?,
                    kind: kind.parse().map_err(|e| Error::Corrupt(format!("outbox: {e}")))?,
                    dedupe_key: row.try_get("dedupe_key").map_err(get)?,
                    payload: payload.0,
                    status: status
                        .parse()
                        .map_err(|e| Error::Corrupt(format!("outbox: {e}")))?,
                    attempts: attempts(row.try_get("attempts").map_err(get)?)?,
                    next_attempt_at: $get_ts(row, "next_attempt_at")?,
                    last_error: row.try_get("last_error").map_err(get)?,
                    created_at: $get_ts(row, "created_at")?,
                    delivered_at: $get_opt_ts(row, "delivered_at")?,
                })
            }

            fn decode_message(row: &$row) -> Result<QueuedMessage> {
                let get = |e| map_sqlx($backend, e);
                let corrupt = |e: Error| Error::Corrupt(format!("message queue: {e}"));
                let session: String = row.try_get("session_id").map_err(get)?;
                let recipient: String = row.try_get("recipient").map_err(get)?;
                let status: String = row.try_get("status").map_err(get)?;
                let message_id: Option<String> = row.try_get("message_id").map_err(get)?;
                Ok(QueuedMessage {
                    id: row.try_get("id").map_err(get)?,
                    session_id: SessionId::new(session).map_err(corrupt)?,
                    idempotency_key: row.try_get("idempotency_key").map_err(get)?,
                    recipient: Wid::parse(&recipient).map_err(corrupt)?,
                    body: row.try_get("body").map_err(get)?,
                    status: status.parse().map_err(corrupt)?,
                    attempts: attempts(row.try_get("attempts").map_err(get)?)?,
                    not_before: $get_ts(row, "not_before")?,
                    created_at: $get_ts(row, "created_at")?,
                    sent_at: $get_opt_ts(row, "sent_at")?,
                    message_id: message_id.map(MessageId),
                    error: row.try_get("error").map_err(get)?,
                })
            }

            impl $outbox {
                pub(crate) fn new(pool: $pool) -> Self {
                    Self { pool }
                }

                /// The item if it exists, else NotFound; used after a CAS touched no row.
                async fn explain(&self, id: i64, wanted: &str) -> Error {
                    self.explain_not(id, OutboxStatus::Pending, &format!("mark it {wanted}"))
                        .await
                }

                /// Like `explain`, for a CAS that expected `expected` before doing `what`.
                async fn explain_not(&self, id: i64, expected: OutboxStatus, what: &str) -> Error {
                    match OutboxStore::get(self, id).await {
                        Ok(Some(item)) => Error::Conflict(format!(
                            "outbox item {id} is {}, not {expected}; cannot {what}",
                            item.status
                        )),
                        Ok(None) => outbox_not_found(id),
                        Err(e) => e,
                    }
                }
            }

            #[async_trait::async_trait]
            impl OutboxStore for $outbox {
                async fn enqueue(
                    &self,
                    item: &NewOutboxItem,
                    now: DateTime<Utc>,
                ) -> Result<OutboxItem> {
                    let sql = format!(
                        "INSERT INTO outbox (kind, dedupe_key, payload, status, attempts, \
                         next_attempt_at, created_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4) \
                         ON CONFLICT (dedupe_key) DO NOTHING RETURNING {OUTBOX_COLUMNS}"
                    );
                    let row = sqlx::query(&sql)
                        .bind(item.kind.as_str())
                        .bind(item.dedupe_key.as_deref())
                        .bind(Json(&item.payload))
                        .bind($ts(now))
                        .fetch_all(&self.pool.current().await)
                        .await.map(first_row)
                        .map_err(|e| map_sqlx($backend, e))?;
                    if let Some(row) = row {
                        return decode_outbox(&row);
                    }
                    // A duplicate dedupe key: return the item already stored.
                    let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE dedupe_key = $1");
                    let row = sqlx::query(&sql)
                        .bind(item.dedupe_key.as_deref())
                        .fetch_optional(&self.pool.current().await)
                        .await
                        .map_err(|e| map_sqlx($backend, e))?
                        .ok_or_else(|| {
                            Error::Conflict(
                                "the outbox item with this dedupe key vanished; try again".into(),
                            )
                        })?;
                    decode_outbox(&row)
                }

                async fn claim_due(
                    &self,
                    now: DateTime<Utc>,
                    limit: u32,
                    hold: std::time::Duration,
                ) -> Result<Vec<OutboxItem>> {
                    let until = crate::store::lease_expiry(now, hold)?;
                    let sql = format!(
                        // MATERIALIZED: the due set is chosen once. Postgres could otherwise
                        // re-run a `SKIP LOCKED` subquery per row, and a re-run skips the rows
                        // this very statement already updated, picking others past the limit.
                        "WITH due AS MATERIALIZED (SELECT id FROM outbox \
                             WHERE status = 'pending' AND next_attempt_at <= $2 \
                             ORDER BY next_attempt_at, id LIMIT $3{lock}) \
                         UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1 \
                         WHERE id IN (SELECT id FROM due) \
                         AND status = 'pending' AND next_attempt_at <= $2 \
                         RETURNING {OUTBOX_COLUMNS}",
                        lock = $lock
                    );
                    let rows = sqlx::query(&sql)
                        .bind($ts(until))
                        .bind($ts(now))
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool.current().await)
                        .await
                        .map_err(|e| map_sqlx($backend, e))?;
                    let mut items = rows.iter().map(decode_outbox).collect::<Result<Vec<_>>>()?;
                    items.sort_by_key(|i| i.id);
                    Ok(items)
                }

                async fn mark_delivered(&self, id: i64, now: DateTime<Utc>) -> Result<OutboxItem> {
                    let sql = format!(
                        "UPDATE outbox SET status = 'delivered', delivered_at = $1, last_error = NULL \
                         WHERE id = $2 AND status = 'pending' RETURNING {OUTBOX_COLUMNS}"
                    );
                    match sqlx::query(&sql)
                        .bind($ts(now))
                        .bind(id)
                        .fetch_all(&self.pool.current().await)
                        .await.map(first_row)
                        .map_err(|e| map_sqlx($backend, e))?
                    {
                        Some(row) => decode_outbox(&row),
                        None => Err(self.explain(id, "delivered").await),
                    }
                }

                async fn mark_failed(
                    &self,
                    id: i64,
                    error: &str,
                    retry_at: Option<DateTime<Utc>>,
                ) -> Result<OutboxItem> {
                    let sql = format!(
                        "UPDATE outbox SET last_error = $1, \
                         status = CASE WHEN $2 IS NULL THEN '{dead}' ELSE '{pending}' END, \
                         next_attempt_at = COALESCE($2, next_attempt_at) \
                         WHERE id = $3 AND status = 'pending' RETURNING {OUTBOX_COLUMNS}",
                        dead = OutboxStatus::Dead.as_str(),
                        pending = OutboxStatus::Pending.as_str(),
                    );
                    match sqlx::query(&sql)
                        .bind(error)
                        .bind(retry_at.map($ts))
                        .bind(id)
                        .fetch_all(&self.pool.current().await)
                        .await.map(first_row)
                        .map_err(|e| map_sqlx($backend, e))?
                    {
                        Some(row) => decode_outbox(&row),
                        None => Err(self.explain(id, "failed").await),
                    }
                }

                async fn get(&self, id: i64) -> Result<Option<OutboxItem>> {
                    let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1");
                    sqlx::query(&sql)
                        .bind(id)
                        .fetch_optional(&self.pool.current().await)
                        .await
                        .map_err(|e| map_sqlx($backend, e))?
                        .map(|row| decode_outbox(&row))
                        .transpose()
                }

                async fn list(
                    &self,
                    status: Option<OutboxStatus>,
                    limit: u32,
                    before_id: Option<i64>,
                ) -> Result<Vec<OutboxItem>> {
                    let mut qb: sqlx::QueryBuilder<$db> = sqlx::QueryBuilder::new(format!(
                        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE 1 = 1"
                    ));
                    if let Some(status) = status {
                        qb.push(" AND status = ").push_bind(status.as_str());
                    }
                    if let Some(before_id) = before_id {
                        qb.push(" AND id < ").push_bind(before_id);
                    }
                    qb.push(" ORDER BY id DESC LIMIT ")
                        .push_bind(i64::from(limit));
                    let rows = qb
                        .build()
                        .fetch_all(&self.pool.current().await)
                        .await
                        .map_err(|e| map_sqlx($backend, e))?;
                    rows.iter().map(decode_outbox).collect()
                }

                async fn requeue_dead(&self, id: i64, now: DateTime<Utc>) -> Result<OutboxItem> {
                    let sql = format!(
                        "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1 \
                         WHERE id = $2 AND status = 'dead' RETURNING {OUTBOX_COLUMNS}"
                    );
                    match sqlx::query(&sql)
                        .bind($ts(now))
                        .bind(id)
                        .fetch_all(&self.pool.current().await)
                        .await.map(first_row)
                        .map_err(|e| map_sqlx($backend, e))?
                    {
                        Some(row) => decode_outbox(&row),
                        None => Err(self.explain_not(id, OutboxStatus::Dead, "requeue it").await),
                    }
                }

                async fn pending_stats(
                    &self,
                    now: DateTime<Utc>,
                ) -> Result<(u64, Option<DateTime<Utc>>)> {
                    let row = sqlx::query(
                        "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox \
                         WHERE status = 'pending'",
                    )
                    .fetch_one(&self.pool.current().await)
                    .await
                    .map_err(|e| map_sqlx($backend, e))?;
                    let n: i64 = row.try_get("n").map_err(|e| map_sqlx($backend, e))?;
                    let oldest = $get_opt_ts(&row, "oldest")?;
                    let now = whatsapp_core::types::truncate_micros(now);
                    Ok((
                        u64::try_from(n).unwrap_or_default(),
                        oldest.map(|t| t.min(now)),
                    ))
                }
            }

            impl $queue {
                pub(crate) fn new(pool: $pool) -> Self {
                    Self { pool }
                }

                async fn explain(&self, id: i64, wanted: &str) -> Error {
                    match MessageQueue::get(self, id).await {
                        Ok(Some(m)) => Error::Conflict(format!(
                            "queued message {id} is {}, not sending; cannot mark it {wanted}",
                            m.status
                        )),
                        Ok(None) => message_not_found(id),
                        Err(e) => e,
                    }
                }
            }

            #[async_trait::async_trait]
            impl MessageQueue for $queue {
                async fn enqueue(
                    &self,
                    m: &NewQueuedMessage,
                    now: DateTime<Utc>,
                ) -> Result<Enqueued> {
                    let sql = format!(
                        "INSERT INTO message_queue (session_id, idempotency_key, recipient, body, \
                         status, attempts, not_before, created_at) \
                         VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6) \
                         ON CONFLICT (session_id, idempotency_key) DO NOTHING \
                         RETURNING {QUEUE_COLUMNS}"
                    );
                    let row = sqlx::query(&sql)
                        .bind(m.session_id.as_str())
                        .bind(m.idempotency_key.as_deref())
                        .bind(m.recipient.to_string())
                        .bind(m.body.as_str())
                        .bind($ts(m.not_before))
                        .bind($ts(now))
                        .fetch_all(&self.pool.current().await)
                        .await.map(first_row);
                    let row = match row {
                        Ok(row) => row,
                        Err(sqlx::Error::Database(e))
                            if e.kind() == sqlx::error::ErrorKind::ForeignKeyViolation =>
                        {
                            return Err(Error::not_found(format!("session {}", m.session_id)));
                        }
                        Err(e) => return Err(map_sqlx($backend, e)),
                    };
                    if let Some(row) = row {
                        return Ok(Enqueued {
                            message: decode_message(&row)?,
                            created: true,
                        });
                    }
                    let sql = format!(
                        "SELECT {QUEUE_COLUMNS} FROM message_queue \
                         WHERE session_id = $1 AND idempotency_key = $2"
                    );
                    let row = sqlx::query(&sql)
                        .bind(m.session_id.as_str())
                        .bind(m.idempotency_key.as_deref())
                        .fetch_optional(&self.pool.current().await)
                        .await
                        .map_err(|e| map_sqlx($backend, e))?
                        .ok_or_else(|| {
                            Error::Conflict(
                                "the message with this idempotency key vanished; try again".into(),
                            )
                        })?;
                    Ok(Enqueued {
                        message: decode_message(&row)?,
                        created: false,
                    })
                }

                async fn take_next(
                    &self,
                    session: &SessionId,
                    now: DateTime<Utc>,
                ) -> Result<Option<QueuedMessage>> {
                    let sql = format!(
                        "WITH next AS MATERIALIZED (SELECT id FROM message_queue \
                             WHERE session_id = $1 AND status = 'queued' AND not_before <= $2 \
                             ORDER BY id LIMIT 1{lock}) \
                         UPDATE message_queue SET status = 'sending', attempts = attempts + 1 \
                         WHERE id IN (SELECT id FROM next) AND status = 'queued' \
                         RETURNING {QUEUE_COLUMNS}",
                        lock = $lock
                    );
                    sqlx::query(&sql)
                        .bind(session.as_str())
                        .bind($ts(now))
                        .fetch_all(&self.pool.current().await)
                        .await.map(first_row)
                        .map_err(|e| map_sqlx($backend, e))?
                        .map(|row| decode_message(&row))
                        .transpose()
                }

                async fn mark_sent(
                    &self,
                    id: i64,
                    message_id: &MessageId,
                    now: DateTime<Utc>,
                ) -> Result<QueuedMessage> {
                    let sql = format!(
                        "UPDATE message_queue SET status = 'sent', sent_at = $1, message_id = $2, \
                         error = NULL WHERE id = $3 AND status = 'sending' RETURNING {QUEUE_COLUMNS}"
                    );
                    match sqlx::query(&sql)
                        .bind($ts(now))
                        .bind(message_id.0.as_str())
                        .bind(id)
                        .fetch_all(&self.pool.current().await)
                        .await.map(first_row)
                        .map_err(|e| map_sqlx($backend, e))?
                    {
                        Some(row) => decode_message(&row),
                        None => Err(self.explain(id, "sent").await),
                    }
                }

                async fn mark_failed(
                    &self,
                    id: i64,
                    error: &str,
                    retry_at: Option<DateTime<Utc>>,
                ) -> Result<QueuedMessage> {
                    let sql = format!(
                        "UPDATE message_queue SET error = $1, \
                         status = CASE WHEN $2 IS NULL THEN '{failed}' ELSE '{queued}' END, \
                         not_before = COALESCE($2, not_before) \
                         WHERE id = $3 AND status = 'sending' RETURNING {QUEUE_COLUMNS}",
                        failed = QueueStatus::Failed.as_str(),
                        queued = QueueStatus::Queued.as_str(),
                    );
                    match sqlx::query(&sql)
                        .bind(error)
                        .bind(retry_at.map($ts))
                        .bind(id)
                        .fetch_all(&self.pool.current().await)
                        .await.map(first_row)
                        .map_err(|e| map_sqlx($backend, e))?
                    {
                        Some(row) => decode_message(&row),
                        None => Err(self.explain(id, "failed").await),
                    }
                }

                async fn requeue_sending(&self, session: &SessionId) -> Result<u64> {
                    let done = sqlx::query(
                        "UPDATE message_queue SET status = 'queued' \
                         WHERE session_id = $1 AND status = 'sending'",
                    )
                    .bind(session.as_str())
                    .execute(&self.pool.current().await)
                    .await
                    .map_err(|e| map_sqlx($backend, e))?;
                    Ok(done.rows_affected())
                }

                async fn get(&self, id: i64) -> Result<Option<QueuedMessage>> {
                    let sql = format!("SELECT {QUEUE_COLUMNS} FROM message_queue WHERE id = $1");
                    sqlx::query(&sql)
                        .bind(id)
                        .fetch_optional(&self.pool.current().await)
                        .await
                        .map_err(|e| map_sqlx($backend, e))?
                        .map(|row| decode_message(&row))
                        .transpose()
                }

                async fn list(
                    &self,
                    session: &SessionId,
                    statuses: &[QueueStatus],
                ) -> Result<Vec<QueuedMessage>> {
                    let mut qb: sqlx::QueryBuilder<$db> = sqlx::QueryBuilder::new(format!(
                        "SELECT {QUEUE_COLUMNS} FROM message_queue WHERE session_id = "
                    ));
                    qb.push_bind(session.as_str().to_owned());
                    if !statuses.is_empty() {
                        qb.push(" AND status IN (");
                        let mut list = qb.separated(", ");
                        for s in statuses {
                            list.push_bind(s.as_str());
                        }
                        qb.push(")");
                    }
                    qb.push(" ORDER BY id");
                    let rows = qb
                        .build()
                        .fetch_all(&self.pool.current().await)
                        .await
                        .map_err(|e| map_sqlx($backend, e))?;
                    rows.iter().map(decode_message).collect()
                }

                async fn depth(&self) -> Result<u64> {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM message_queue WHERE status IN ('queued', 'sending')",
                    )
                    .fetch_one(&self.pool.current().await)
                    .await
                    .map_err(|e| map_sqlx($backend, e))?;
                    Ok(u64::try_from(n).unwrap_or_default())
                }
            }
        }
    };
}
pub(crate) use impl_queues;
