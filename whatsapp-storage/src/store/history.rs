//! [`MessageHistory`]: every message a session's account received or sent, once per
//! WhatsApp message key, kept for the history API, de-duplication of events and the
//! reconciliation after a restart.
//!
//! Table `message_history` (migration `0006`): one row per `(session_id, message_key)`,
//! deleted with the session. `seq` is the order rows were recorded in; listings are newest
//! first by `(sent_at, seq)` and page with a [`HistoryCursor`] built from the last row seen.

use std::fmt::{self, Debug};
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use whatsapp_core::{Ack, Error, MessageId, Result, SessionId, Wid};

/// A message to record, as the page reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// The session whose account holds the message.
    pub session_id: SessionId,
    /// WhatsApp's serialized key, `<fromMe>_<chat>_<id>[_<participant>]`: the identity
    /// every event carries so a receiver de-duplicates.
    pub key: MessageId,
    /// The chat: the other party, or the group.
    pub chat: Wid,
    /// Sent by the account (from this device or another one of it).
    pub from_me: bool,
    /// Who wrote it: the group participant, or the other party; `None` when `from_me`.
    pub sender: Option<Wid>,
    /// WhatsApp's message type (`chat`, `image`, `ptt`, `document`, `location`, …).
    pub kind: String,
    /// The text, or a media message's caption.
    pub body: Option<String>,
    /// The ack level when first seen (our own messages), if any.
    pub ack: Option<Ack>,
    /// Everything else the event carries (media handle, quoted message, location, …).
    pub payload: serde_json::Value,
    /// When WhatsApp says it was sent (`msg.t`).
    pub sent_at: DateTime<Utc>,
}

/// A recorded message.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// The order it was recorded in (unique in the database).
    pub seq: i64,
    /// The session.
    pub session_id: SessionId,
    /// WhatsApp's serialized key.
    pub key: MessageId,
    /// The chat.
    pub chat: Wid,
    /// Sent by the account.
    pub from_me: bool,
    /// Who wrote it.
    pub sender: Option<Wid>,
    /// WhatsApp's message type.
    pub kind: String,
    /// The text or caption (the latest edit's; `None` once revoked).
    pub body: Option<String>,
    /// The highest ack level seen.
    pub ack: Option<Ack>,
    /// Deleted for everyone.
    pub revoked: bool,
    /// When it was last edited, if ever.
    pub edited_at: Option<DateTime<Utc>>,
    /// The rest of the event.
    pub payload: serde_json::Value,
    /// When WhatsApp says it was sent (microsecond precision).
    pub sent_at: DateTime<Utc>,
    /// When it was recorded (microsecond precision).
    pub recorded_at: DateTime<Utc>,
}

impl StoredMessage {
    /// The cursor that continues a listing after this message.
    pub fn cursor(&self) -> HistoryCursor {
        HistoryCursor {
            sent_at: self.sent_at,
            seq: self.seq,
        }
    }
}

/// What [`MessageHistory::record`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// The key was new: the message is stored now (emit its event).
    New(StoredMessage),
    /// The key was already recorded: nothing changed (its event was emitted before).
    Known(StoredMessage),
}

impl Recorded {
    /// The stored message, either way.
    pub fn message(&self) -> &StoredMessage {
        match self {
            Recorded::New(m) | Recorded::Known(m) => m,
        }
    }

    /// Whether the key was new.
    pub fn is_new(&self) -> bool {
        matches!(self, Recorded::New(_))
    }
}

/// A change to a recorded message.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageChange {
    /// A new ack level; it applies only if higher than the stored one (acks only rise).
    Ack(Ack),
    /// The text or caption was edited; applies only if it differs and the message is not
    /// revoked.
    Edited {
        /// The new text.
        body: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Deleted for everyone: the body is cleared; applies once.
    Revoked,
}

/// Where a newest-first listing continues: strictly older than this `(sent_at, seq)`.
/// Written as `<sent_at in microseconds>.<seq>`, opaque to API callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor {
    /// The last listed message's `sent_at`.
    pub sent_at: DateTime<Utc>,
    /// The last listed message's `seq`.
    pub seq: i64,
}

impl fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.sent_at.timestamp_micros(), self.seq)
    }
}

impl FromStr for HistoryCursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = || Error::invalid("cursor", "not a cursor this server handed out");
        let (micros, seq) = s.split_once('.').ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        let seq: i64 = seq.parse().map_err(|_| invalid())?;
        let sent_at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        Ok(HistoryCursor { sent_at, seq })
    }
}

/// One chat of a session's history.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatSummary {
    /// The chat.
    pub chat: Wid,
    /// How many messages of it are recorded.
    pub messages: u64,
    /// Its newest message.
    pub last: StoredMessage,
}

/// The most a listing returns at once.
pub const MAX_PAGE: u32 = 1000;

/// Every message of every session, once per key.
///
/// # Contract
///
/// - **Record** stores a message whose `(session, key)` is new and returns
///   [`Recorded::New`]; a key already recorded returns [`Recorded::Known`] with the stored
///   row unchanged, however often and however concurrently it is recorded. A session that
///   does not exist is [`Error::NotFound`]. Timestamps are kept to the microsecond.
/// - **Get** returns the message of a key, or `Ok(None)`.
/// - **Apply** changes a message and returns it as changed, or `Ok(None)` when the change
///   does not apply (an ack not higher than the stored one; an edit to the same text or of a
///   revoked message; a second revoke), so each change is reported once. A key that is not
///   recorded is [`Error::NotFound`].
/// - **Messages** lists a session's messages (of one chat, or all) newest first by
///   `(sent_at, seq)`, strictly after the cursor when one is given, at most `limit` (capped at
///   [`MAX_PAGE`]; 0 gives none). Following each page's last cursor visits every message
///   once.
/// - **Chats** lists a session's chats by their newest message, newest first, with their
///   message count, paged the same way by the newest message's cursor.
/// - **Purge** deletes the messages sent strictly before `before` and returns how many
///   (retention).
/// - Deleting a session deletes its messages; sessions never see each other's.
#[async_trait]
pub trait MessageHistory: Send + Sync + Debug + 'static {
    /// Records `message` once per key.
    async fn record(&self, message: &NewMessage, now: DateTime<Utc>) -> Result<Recorded>;

    /// The message of `key` in `session`.
    async fn get(&self, session: &SessionId, key: &MessageId) -> Result<Option<StoredMessage>>;

    /// Applies `change` to the message of `key`; `Ok(None)` when it does not apply.
    async fn apply(
        &self,
        session: &SessionId,
        key: &MessageId,
        change: &MessageChange,
    ) -> Result<Option<StoredMessage>>;

    /// A page of `session`'s messages, of `chat` or of all chats, newest first.
    async fn messages(
        &self,
        session: &SessionId,
        chat: Option<&Wid>,
        before: Option<&HistoryCursor>,
        limit: u32,
    ) -> Result<Vec<StoredMessage>>;

    /// A page of `session`'s chats, by newest message first.
    async fn chats(
        &self,
        session: &SessionId,
        before: Option<&HistoryCursor>,
        limit: u32,
    ) -> Result<Vec<ChatSummary>>;

    /// Deletes the messages sent before `before`; returns how many.
    async fn purge_sent_before(&self, before: DateTime<Utc>) -> Result<u64>;
}

pub(crate) const HISTORY_COLUMNS: &str = "seq, session_id, message_key, chat, from_me, sender, \
     kind, body, ack, revoked, edited_at, payload, sent_at, recorded_at";

/// Whether `change` applies to `current`, and the message after it (the in-memory history's
/// rule; the SQL backends state it as `UPDATE … WHERE` guards).
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
pub(crate) fn changed(current: &StoredMessage, change: &MessageChange) -> Option<StoredMessage> {
    let mut next = current.clone();
    match change {
        MessageChange::Ack(ack) => {
            if current.ack.is_some_and(|a| a >= *ack) {
                return None;
            }
            next.ack = Some(*ack);
        }
        MessageChange::Edited { body, at } => {
            if current.revoked || current.body.as_deref() == Some(body.as_str()) {
                return None;
            }
            next.body = Some(body.clone());
            next.edited_at = Some(whatsapp_core::types::truncate_micros(*at));
        }
        MessageChange::Revoked => {
            if current.revoked {
                return None;
            }
            next.revoked = true;
            next.body = None;
        }
    }
    Some(next)
}

/// Implements [`MessageHistory`] for one backend, like
/// [`impl_tenants`](super::tenants::impl_tenants): the SQL is shared, the backend supplies its
/// timestamp encoding and decoding.
macro_rules! impl_history {
    (
        backend: $backend:expr,
        pool: $pool:ty,
        row: $row:ty,
        history: $history:ident,
        ts: $ts:path,
        get_ts: $get_ts:path,
        get_opt_ts: $get_opt_ts:path $(,)?
    ) => {
        /// This backend's [`MessageHistory`](crate::store::history::MessageHistory), sharing
        /// the session store's pool.
        #[derive(Clone)]
        pub struct $history {
            pool: $pool,
        }

        impl std::fmt::Debug for $history {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($history)).finish_non_exhaustive()
            }
        }

        mod history_impls {
            use super::*;
            use crate::store::history::{
                ChatSummary, HISTORY_COLUMNS, HistoryCursor, MAX_PAGE, MessageChange,
                MessageHistory, NewMessage, Recorded, StoredMessage,
            };
            use crate::store::map_sqlx;
            use chrono::{DateTime, Utc};
            use sqlx::Row;
            use sqlx::types::Json;
            use whatsapp_core::types::truncate_micros;
            use whatsapp_core::{Ack, Error, MessageId, Result, SessionId, Wid};

            fn db(e: sqlx::Error) -> Error {
                map_sqlx($backend, e)
            }

            fn decode(row: &$row) -> Result<StoredMessage> {
                let corrupt = |e: Error| Error::Corrupt(format!("message_history: {e}"));
                let session: String = row.try_get("session_id").map_err(db)?;
                let chat: String = row.try_get("chat").map_err(db)?;
                let sender: Option<String> = row.try_get("sender").map_err(db)?;
                let ack: Option<i16> = row.try_get("ack").map_err(db)?;
                let payload: Json<serde_json::Value> = row.try_get("payload").map_err(db)?;
                Ok(StoredMessage {
                    seq: row.try_get("seq").map_err(db)?,
                    session_id: SessionId::new(session).map_err(corrupt)?,
                    key: MessageId(row.try_get("message_key").map_err(db)?),
                    chat: Wid::parse(&chat).map_err(corrupt)?,
                    from_me: row.try_get("from_me").map_err(db)?,
                    sender: sender.as_deref().map(Wid::parse).transpose().map_err(corrupt)?,
                    kind: row.try_get("kind").map_err(db)?,
                    body: row.try_get("body").map_err(db)?,
                    ack: ack
                        .map(|a| i8::try_from(a).map(Ack))
                        .transpose()
                        .map_err(|_| Error::Corrupt("message_history: ack out of range".into()))?,
                    revoked: row.try_get("revoked").map_err(db)?,
                    edited_at: $get_opt_ts(row, "edited_at")?,
                    payload: payload.0,
                    sent_at: $get_ts(row, "sent_at")?,
                    recorded_at: $get_ts(row, "recorded_at")?,
                })
            }

            impl $history {
                pub(crate) fn new(pool: $pool) -> Self {
                    Self { pool }
                }
            }

            #[async_trait::async_trait]
            impl MessageHistory for $history {
                async fn record(
                    &self,
                    m: &NewMessage,
                    now: DateTime<Utc>,
                ) -> Result<Recorded> {
                    let sql = format!(
                        "INSERT INTO message_history (session_id, message_key, chat, from_me, \
                         sender, kind, body, ack, payload, sent_at, recorded_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                         ON CONFLICT (session_id, message_key) DO NOTHING \
                         RETURNING {HISTORY_COLUMNS}"
                    );
                    let inserted = sqlx::query(&sql)
                        .bind(m.session_id.as_str())
                        .bind(&m.key.0)
                        .bind(m.chat.to_string())
                        .bind(m.from_me)
                        .bind(m.sender.as_ref().map(|w| w.to_string()))
                        .bind(&m.kind)
                        .bind(m.body.as_deref())
                        .bind(m.ack.map(|a| i16::from(a.0)))
                        .bind(Json(&m.payload))
                        .bind($ts(truncate_micros(m.sent_at)))
                        .bind($ts(truncate_micros(now)))
                        .fetch_optional(&self.pool.current().await)
                        .await;
                    match inserted {
                        Ok(Some(row)) => Ok(Recorded::New(decode(&row)?)),
                        Ok(None) => match self.get(&m.session_id, &m.key).await? {
                            Some(known) => Ok(Recorded::Known(known)),
                            None => Err(Error::Conflict(format!(
                                "message {} was recorded and deleted at once",
                                m.key
                            ))),
                        },
                        Err(sqlx::Error::Database(e))
                            if e.kind() == sqlx::error::ErrorKind::ForeignKeyViolation =>
                        {
                            Err(Error::not_found(format!("session {}", m.session_id)))
                        }
                        Err(e) => Err(db(e)),
                    }
                }

                async fn get(
                    &self,
                    session: &SessionId,
                    key: &MessageId,
                ) -> Result<Option<StoredMessage>> {
                    let sql = format!(
                        "SELECT {HISTORY_COLUMNS} FROM message_history \
                         WHERE session_id = $1 AND message_key = $2"
                    );
                    sqlx::query(&sql)
                        .bind(session.as_str())
                        .bind(&key.0)
                        .fetch_optional(&self.pool.current().await)
                        .await
                        .map_err(db)?
                        .map(|row| decode(&row))
                        .transpose()
                }

                async fn apply(
                    &self,
                    session: &SessionId,
                    key: &MessageId,
                    change: &MessageChange,
                ) -> Result<Option<StoredMessage>> {
                    // One conditional UPDATE per change, so concurrent changes never undo
                    // each other (an ack only rises, a revoke wins over an edit).
                    let (set, guard) = match change {
                        MessageChange::Ack(_) => ("ack = $3", "(ack IS NULL OR ack < $3)"),
                        MessageChange::Edited { .. } => (
                            "body = $3, edited_at = $4",
                            "NOT revoked AND (body IS NULL OR body <> $3)",
                        ),
                        MessageChange::Revoked => ("revoked = $3, body = NULL", "revoked <> $3"),
                    };
                    let sql = format!(
                        "UPDATE message_history SET {set} \
                         WHERE session_id = $1 AND message_key = $2 AND {guard} \
                         RETURNING {HISTORY_COLUMNS}"
                    );
                    let query = sqlx::query(&sql).bind(session.as_str()).bind(&key.0);
                    let query = match change {
                        MessageChange::Ack(ack) => query.bind(i16::from(ack.0)),
                        MessageChange::Edited { body, at } => {
                            query.bind(body.as_str()).bind($ts(truncate_micros(*at)))
                        }
                        MessageChange::Revoked => query.bind(true),
                    };
                    let row = query
                        .fetch_optional(&self.pool.current().await)
                        .await
                        .map_err(db)?;
                    match row {
                        Some(row) => Ok(Some(decode(&row)?)),
                        None => match self.get(session, key).await? {
                            Some(_) => Ok(None),
                            None => Err(Error::not_found(format!("message {key}"))),
                        },
                    }
                }

                async fn messages(
                    &self,
                    session: &SessionId,
                    chat: Option<&Wid>,
                    before: Option<&HistoryCursor>,
                    limit: u32,
                ) -> Result<Vec<StoredMessage>> {
                    let limit = i64::from(limit.min(MAX_PAGE));
                    if limit == 0 {
                        return Ok(Vec::new());
                    }
                    let sql = format!(
                        "SELECT {HISTORY_COLUMNS} FROM message_history \
                         WHERE session_id = $1 AND ($2 IS NULL OR chat = $2) \
                         AND ($3 IS NULL OR sent_at < $3 OR (sent_at = $3 AND seq < $4)) \
                         ORDER BY sent_at DESC, seq DESC LIMIT $5"
                    );
                    let rows = sqlx::query(&sql)
                        .bind(session.as_str())
                        .bind(chat.map(|c| c.to_string()))
                        .bind(before.map(|c| $ts(c.sent_at)))
                        .bind(before.map_or(0, |c| c.seq))
                        .bind(limit)
                        .fetch_all(&self.pool.current().await)
                        .await
                        .map_err(db)?;
                    rows.iter().map(decode).collect()
                }

                async fn chats(
                    &self,
                    session: &SessionId,
                    before: Option<&HistoryCursor>,
                    limit: u32,
                ) -> Result<Vec<ChatSummary>> {
                    let limit = i64::from(limit.min(MAX_PAGE));
                    if limit == 0 {
                        return Ok(Vec::new());
                    }
                    // Each chat's newest message: no newer one in the same chat.
                    let sql = format!(
                        "SELECT {HISTORY_COLUMNS}, \
                         (SELECT COUNT(*) FROM message_history c \
                          WHERE c.session_id = m.session_id AND c.chat = m.chat) AS total \
                         FROM message_history m \
                         WHERE m.session_id = $1 \
                         AND NOT EXISTS (SELECT 1 FROM message_history n \
                           WHERE n.session_id = m.session_id AND n.chat = m.chat \
                           AND (n.sent_at > m.sent_at OR (n.sent_at = m.sent_at AND n.seq > m.seq))) \
                         AND ($2 IS NULL OR m.sent_at < $2 OR (m.sent_at = $2 AND m.seq < $3)) \
                         ORDER BY m.sent_at DESC, m.seq DESC LIMIT $4"
                    );
                    let rows = sqlx::query(&sql)
                        .bind(session.as_str())
                        .bind(before.map(|c| $ts(c.sent_at)))
                        .bind(before.map_or(0, |c| c.seq))
                        .bind(limit)
                        .fetch_all(&self.pool.current().await)
                        .await
                        .map_err(db)?;
                    rows.iter()
                        .map(|row| {
                            let last = decode(row)?;
                            let total: i64 = row.try_get("total").map_err(db)?;
                            Ok(ChatSummary {
                                chat: last.chat.clone(),
                                messages: u64::try_from(total).unwrap_or(0),
                                last,
                            })
                        })
                        .collect()
                }

                async fn purge_sent_before(&self, before: DateTime<Utc>) -> Result<u64> {
                    let done = sqlx::query("DELETE FROM message_history WHERE sent_at < $1")
                        .bind($ts(before))
                        .execute(&self.pool.current().await)
                        .await
                        .map_err(db)?;
                    Ok(done.rows_affected())
                }
            }
        }
    };
}
pub(crate) use impl_history;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = HistoryCursor {
            sent_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            seq: 42,
        };
        assert_eq!(c.to_string().parse::<HistoryCursor>().unwrap(), c);
        for bad in ["", "12", "a.b", "1.x", "99999999999999999999.1"] {
            assert!(bad.parse::<HistoryCursor>().is_err(), "{bad}");
        }
    }
}
