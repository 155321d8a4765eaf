//! [`InMemoryMessageQueue`]: the [`MessageQueue`] contract in a `Mutex`, for tests under
//! paused time (no I/O) and single-process demos. Not durable.
//!
//! Like the Redis queue it is kept apart from the sessions: `enqueue` does not check that
//! the session exists, and [`InMemoryMessageQueue::delete_session`] deletes a session's
//! messages. Times are kept to the microsecond, as in the other queues.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use whatsapp_core::types::truncate_micros;
use whatsapp_core::{Error, MessageId, Result, SessionId};
use whatsapp_storage::store::{
    Enqueued, MessageQueue, NewQueuedMessage, QueueStatus, QueuedMessage,
};

/// An in-memory [`MessageQueue`]; every session exists. Not durable.
#[derive(Debug, Default)]
pub struct InMemoryMessageQueue {
    messages: Mutex<Messages>,
}

#[derive(Debug, Default)]
struct Messages {
    by_id: BTreeMap<i64, QueuedMessage>,
    /// The last id handed out (ids are never reused, even after a delete).
    last_id: i64,
}

impl InMemoryMessageQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Deletes every message of `session` (the database queue does this by cascade when the
    /// session is deleted). Returns how many.
    pub fn delete_session(&self, session: &SessionId) -> u64 {
        let mut all = self.messages.lock().unwrap();
        let before = all.by_id.len();
        all.by_id.retain(|_, m| &m.session_id != session);
        (before - all.by_id.len()) as u64
    }

    fn update(
        &self,
        id: i64,
        wanted: &str,
        f: impl FnOnce(&mut QueuedMessage),
    ) -> Result<QueuedMessage> {
        let mut all = self.messages.lock().unwrap();
        let m = all
            .by_id
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
                .by_id
                .values()
                .find(|m| m.session_id == new.session_id && m.idempotency_key.as_ref() == Some(key))
        {
            return Ok(Enqueued {
                message: m.clone(),
                created: false,
            });
        }
        all.last_id += 1;
        let id = all.last_id;
        let message = QueuedMessage {
            id,
            session_id: new.session_id.clone(),
            idempotency_key: new.idempotency_key.clone(),
            recipient: new.recipient.clone(),
            body: new.body.clone(),
            status: QueueStatus::Queued,
            attempts: 0,
            not_before: truncate_micros(new.not_before),
            created_at: truncate_micros(now),
            sent_at: None,
            message_id: None,
            error: None,
        };
        all.by_id.insert(id, message.clone());
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
        let next = all.by_id.values_mut().find(|m| {
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
            m.sent_at = Some(truncate_micros(now));
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
                    m.not_before = truncate_micros(at);
                }
                None => m.status = QueueStatus::Failed,
            }
        })
    }

    async fn requeue_sending(&self, session: &SessionId) -> Result<u64> {
        let mut all = self.messages.lock().unwrap();
        let mut n = 0;
        for m in all.by_id.values_mut() {
            if &m.session_id == session && m.status == QueueStatus::Sending {
                m.status = QueueStatus::Queued;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn get(&self, id: i64) -> Result<Option<QueuedMessage>> {
        Ok(self.messages.lock().unwrap().by_id.get(&id).cloned())
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
            .by_id
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
            .by_id
            .values()
            .filter(|m| matches!(m.status, QueueStatus::Queued | QueueStatus::Sending))
            .count();
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::panic::AssertUnwindSafe;

    use futures::FutureExt;
    use whatsapp_storage::testing::conformance::message_queue::{self, QueueSessions};

    use super::*;

    /// Sessions of a queue apart from them: nothing to create, `delete_session` to delete.
    struct Sessions<'a>(&'a InMemoryMessageQueue);

    #[async_trait]
    impl QueueSessions for Sessions<'_> {
        async fn create(&self, _id: &SessionId) {}

        async fn delete(&self, id: &SessionId) {
            self.0.delete_session(id);
        }

        fn checks_sessions(&self) -> bool {
            false
        }
    }

    #[tokio::test]
    async fn passes_the_queue_suite() {
        let q = InMemoryMessageQueue::new();
        message_queue::run_all(&q, &Sessions(&q)).await;
        assert_eq!(q.depth().await.unwrap(), 0, "the cases clean up");
    }

    /// A queue whose `take_next` hands every message out twice in a row.
    #[derive(Debug, Default)]
    struct DoublingQueue(
        InMemoryMessageQueue,
        Mutex<std::collections::HashMap<SessionId, QueuedMessage>>,
    );

    #[async_trait]
    impl MessageQueue for DoublingQueue {
        async fn enqueue(&self, m: &NewQueuedMessage, now: DateTime<Utc>) -> Result<Enqueued> {
            self.0.enqueue(m, now).await
        }
        async fn take_next(
            &self,
            session: &SessionId,
            now: DateTime<Utc>,
        ) -> Result<Option<QueuedMessage>> {
            if let Some(again) = self.1.lock().unwrap().remove(session) {
                return Ok(Some(again));
            }
            let taken = self.0.take_next(session, now).await?;
            if let Some(m) = &taken {
                self.1.lock().unwrap().insert(session.clone(), m.clone());
            }
            Ok(taken)
        }
        async fn mark_sent(
            &self,
            id: i64,
            message_id: &MessageId,
            now: DateTime<Utc>,
        ) -> Result<QueuedMessage> {
            self.0.mark_sent(id, message_id, now).await
        }
        async fn mark_failed(
            &self,
            id: i64,
            error: &str,
            retry_at: Option<DateTime<Utc>>,
        ) -> Result<QueuedMessage> {
            self.0.mark_failed(id, error, retry_at).await
        }
        async fn requeue_sending(&self, session: &SessionId) -> Result<u64> {
            self.0.requeue_sending(session).await
        }
        async fn get(&self, id: i64) -> Result<Option<QueuedMessage>> {
            self.0.get(id).await
        }
        async fn list(
            &self,
            session: &SessionId,
            statuses: &[QueueStatus],
        ) -> Result<Vec<QueuedMessage>> {
            self.0.list(session, statuses).await
        }
        async fn depth(&self) -> Result<u64> {
            self.0.depth().await
        }
    }

    #[tokio::test]
    async fn the_queue_suite_names_the_broken_promise() {
        let q = DoublingQueue::default();
        let outcome = AssertUnwindSafe(message_queue::run_all(&q, &Sessions(&q.0)))
            .catch_unwind()
            .await;
        let payload = outcome.expect_err("a queue that hands a message out twice must fail");
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(
            msg.contains("message_queue::take_next_takes_the_oldest_due"),
            "{msg}"
        );
        assert!(
            msg.contains("message_queue::concurrent_takes_never_overlap"),
            "{msg}"
        );
        assert!(
            !msg.contains("message_queue::enqueue_is_idempotent_per_session"),
            "{msg}"
        );
    }
}
