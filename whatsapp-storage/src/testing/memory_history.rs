//! [`MemoryHistory`]: a [`MessageHistory`] in memory, for tests of code that records
//! messages without a database.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use whatsapp_core::types::truncate_micros;
use whatsapp_core::{MessageId, Result, SessionId, Wid};

use crate::store::history::{MAX_PAGE, changed};
use crate::store::{
    ChatSummary, HistoryCursor, MessageChange, MessageHistory, NewMessage, Recorded, StoredMessage,
};

/// A [`MessageHistory`] in memory. It does not know the sessions: it records for any
/// session id, and [`MemoryHistory::delete_session`] stands for the cascade of a session's
/// deletion.
#[derive(Debug, Default)]
pub struct MemoryHistory {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_seq: i64,
    rows: Vec<StoredMessage>,
}

impl MemoryHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Deletes every message of `session` (what deleting a session does to a database's).
    pub fn delete_session(&self, session: &SessionId) {
        self.lock().rows.retain(|m| &m.session_id != session);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Newest first by `(sent_at, seq)`, strictly after `before`.
fn newest_first<'a>(
    rows: impl Iterator<Item = &'a StoredMessage>,
    before: Option<&HistoryCursor>,
) -> Vec<&'a StoredMessage> {
    let mut out: Vec<&StoredMessage> = rows
        .filter(|m| before.is_none_or(|c| (m.sent_at, m.seq) < (c.sent_at, c.seq)))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse((m.sent_at, m.seq)));
    out
}

#[async_trait]
impl MessageHistory for MemoryHistory {
    async fn record(&self, m: &NewMessage, now: DateTime<Utc>) -> Result<Recorded> {
        let mut inner = self.lock();
        if let Some(known) = inner
            .rows
            .iter()
            .find(|r| r.session_id == m.session_id && r.key == m.key)
        {
            return Ok(Recorded::Known(known.clone()));
        }
        inner.next_seq += 1;
        let stored = StoredMessage {
            seq: inner.next_seq,
            session_id: m.session_id.clone(),
            key: m.key.clone(),
            chat: m.chat.clone(),
            from_me: m.from_me,
            sender: m.sender.clone(),
            kind: m.kind.clone(),
            body: m.body.clone(),
            ack: m.ack,
            revoked: false,
            edited_at: None,
            payload: m.payload.clone(),
            sent_at: truncate_micros(m.sent_at),
            recorded_at: truncate_micros(now),
        };
        inner.rows.push(stored.clone());
        Ok(Recorded::New(stored))
    }

    async fn get(&self, session: &SessionId, key: &MessageId) -> Result<Option<StoredMessage>> {
        Ok(self
            .lock()
            .rows
            .iter()
            .find(|r| &r.session_id == session && &r.key == key)
            .cloned())
    }

    async fn apply(
        &self,
        session: &SessionId,
        key: &MessageId,
        change: &MessageChange,
    ) -> Result<Option<StoredMessage>> {
        let mut inner = self.lock();
        let row = inner
            .rows
            .iter_mut()
            .find(|r| &r.session_id == session && &r.key == key)
            .ok_or_else(|| whatsapp_core::Error::not_found(format!("message {key}")))?;
        let Some(next) = changed(row, change) else {
            return Ok(None);
        };
        *row = next.clone();
        Ok(Some(next))
    }

    async fn messages(
        &self,
        session: &SessionId,
        chat: Option<&Wid>,
        before: Option<&HistoryCursor>,
        limit: u32,
    ) -> Result<Vec<StoredMessage>> {
        let inner = self.lock();
        let rows = inner
            .rows
            .iter()
            .filter(|m| &m.session_id == session && chat.is_none_or(|c| &m.chat == c));
        Ok(newest_first(rows, before)
            .into_iter()
            .take(limit.min(MAX_PAGE) as usize)
            .cloned()
            .collect())
    }

    async fn chats(
        &self,
        session: &SessionId,
        before: Option<&HistoryCursor>,
        limit: u32,
    ) -> Result<Vec<ChatSummary>> {
        let inner = self.lock();
        let mine: Vec<&StoredMessage> = inner
            .rows
            .iter()
            .filter(|m| &m.session_id == session)
            .collect();
        let mut newest: Vec<ChatSummary> = Vec::new();
        for m in newest_first(mine.iter().copied(), None) {
            if newest.iter().any(|c| c.chat == m.chat) {
                continue;
            }
            newest.push(ChatSummary {
                chat: m.chat.clone(),
                messages: mine.iter().filter(|o| o.chat == m.chat).count() as u64,
                last: m.clone(),
            });
        }
        Ok(newest
            .into_iter()
            .filter(|c| before.is_none_or(|b| (c.last.sent_at, c.last.seq) < (b.sent_at, b.seq)))
            .take(limit.min(MAX_PAGE) as usize)
            .collect())
    }

    async fn purge_sent_before(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut inner = self.lock();
        let n = inner.rows.len();
        inner.rows.retain(|m| m.sent_at >= before);
        Ok((n - inner.rows.len()) as u64)
    }
}
