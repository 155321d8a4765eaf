//! [`InMemoryMessageQueue`]: the [`MessageQueue`] contract in a `Mutex`, for tests under
//! paused time (no I/O) and single-process demos. Not durable.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use whatsapp_core::{Error, MessageId, Result, SessionId};
use whatsapp_storage::store::{
    Enqueued, MessageQueue, NewQueuedMessage, QueueStatus, QueuedMessage,
};

/// An in-memory [`MessageQueue`]; every session exists. Not durable.
#[derive(Debug, Default)]
pub struct InMemoryMessageQueue {
    messages: Mutex<BTreeMap<i64, QueuedMessage>>,
}

impl InMemoryMessageQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn update(
        &self,
        id: i64,
        wanted: &str,
        f: impl FnOnce(&mut QueuedMessage),
    ) -> Result<QueuedMessage> {
        let mut all = self.messages.lock().unwrap();
        let m = all
            .get_mut(&id)
            .ok_or_else(|| Error::not_found(format!("queued message {id}")))?;
        if m.status != QueueStatus::Sending {
            return Err(Error::Conflict(format!(
                "queued message {id} is {}, not sending; cannot mark it {wanted}",
                m.status
            )));
        }
        f(m);
        Ok(m.clone())
    }
}

#[async_trait]
impl MessageQueue for InMemoryMessageQueue {
    async fn enqueue(&self, new: &NewQueuedMessage, now: DateTime<Utc>) -> Result<Enqueued> {
        let mut all = self.messages.lock().unwrap();
        if let Some(key) = &new.idempotency_key
            && let Some(m) = all
                .values()
                .find(|m| m.session_id == new.session_id && m.idempotency_key.as_ref() == Some(key))
        {
            return Ok(Enqueued {
                message: m.clone(),
                created: false,
            });
        }
        let id = all.keys().next_back().map_or(1, |last| last + 1);
        let message = QueuedMessage {
            id,
            session_id: new.session_id.clone(),
            idempotency_key: new.idempotency_key.clone(),
            recipient: new.recipient.clone(),
            body: new.body.clone(),
            status: QueueStatus::Queued,
            attempts: 0,
            not_before: new.not_before,
            created_at: now,
            sent_at: None,
            message_id: None,
            error: None,
        };
        all.insert(id, message.clone());
        Ok(Enqueued {
            message,
            created: true,
        })
    }

    async fn take_next(
        &self,
        session: &SessionId,
        now: DateTime<Utc>,
    ) -> Result<Option<QueuedMessage>> {
        let mut all = self.messages.lock().unwrap();
        let next = all.values_mut().find(|m| {
            &m.session_id == session && m.status == QueueStatus::Queued && m.not_before <= now
        });
        Ok(next.map(|m| {
            m.status = QueueStatus::Sending;
            m.attempts += 1;
            m.clone()
        }))
    }

    async fn mark_sent(
        &self,
        id: i64,
        message_id: &MessageId,
        now: DateTime<Utc>,
    ) -> Result<QueuedMessage> {
        self.update(id, "sent", |m| {
            m.status = QueueStatus::Sent;
            m.sent_at = Some(now);
            m.message_id = Some(message_id.clone());
            m.error = None;
        })
    }

    async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<QueuedMessage> {
        self.update(id, "failed", |m| {
            m.error = Some(error.to_owned());
            match retry_at {
                Some(at) => {
                    m.status = QueueStatus::Queued;
                    m.not_before = at;
                }
                None => m.status = QueueStatus::Failed,
            }
        })
    }

    async fn requeue_sending(&self, session: &SessionId) -> Result<u64> {
        let mut all = self.messages.lock().unwrap();
        let mut n = 0;
        for m in all.values_mut() {
            if &m.session_id == session && m.status == QueueStatus::Sending {
                m.status = QueueStatus::Queued;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn get(&self, id: i64) -> Result<Option<QueuedMessage>> {
        Ok(self.messages.lock().unwrap().get(&id).cloned())
    }

    async fn list(
        &self,
        session: &SessionId,
        statuses: &[QueueStatus],
    ) -> Result<Vec<QueuedMessage>> {
        Ok(self
            .messages
            .lock()
            .unwrap()
            .values()
            .filter(|m| {
                &m.session_id == session && (statuses.is_empty() || statuses.contains(&m.status))
            })
            .cloned()
            .collect())
    }

    async fn depth(&self) -> Result<u64> {
        let all = self.messages.lock().unwrap();
        let n = all
            .values()
            .filter(|m| matches!(m.status, QueueStatus::Queued | QueueStatus::Sending))
            .count();
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_core::Wid;

    #[tokio::test]
    async fn depth_counts_queued_and_sending_over_all_sessions() {
        let q = InMemoryMessageQueue::new();
        let now = Utc::now();
        assert_eq!(q.depth().await.unwrap(), 0);
        for session in ["a", "a", "b"] {
            let m = NewQueuedMessage {
                session_id: SessionId::new(session).unwrap(),
                idempotency_key: None,
                recipient: Wid::parse("34600000000@c.us").unwrap(),
                body: "hi".into(),
                not_before: now,
            };
            q.enqueue(&m, now).await.unwrap();
        }
        assert_eq!(q.depth().await.unwrap(), 3);
        let a = SessionId::new("a").unwrap();
        let taken = q.take_next(&a, now).await.unwrap().unwrap();
        assert_eq!(q.depth().await.unwrap(), 3, "sending still counts");
        q.mark_sent(taken.id, &MessageId("wamid-1".into()), now)
            .await
            .unwrap();
        assert_eq!(q.depth().await.unwrap(), 2);
        let taken = q.take_next(&a, now).await.unwrap().unwrap();
        q.mark_failed(taken.id, "blocked", None).await.unwrap();
        assert_eq!(q.depth().await.unwrap(), 1);
    }
}
