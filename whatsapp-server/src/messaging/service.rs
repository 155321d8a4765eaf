//! [`Messaging`]: the queue, the limiter, the sender and one [`MessageWorker`] per running
//! session, behind the calls the API makes; [`QueueSender`] routes keepalive texts into it.

use std::collections::HashMap;
use std::fmt::{self, Debug};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use whatsapp_core::{BrowserSession, Clock, Error, Result, SessionId, SessionStore, Wid};
use whatsapp_keepalive::KeepaliveSender;
use whatsapp_storage::store::{
    Enqueued, MessageHistory, MessageQueue, NewQueuedMessage, QueuedMessage,
};

use super::limiter::{LocalRateLimiter, Pacing, RateLimiter, RedisRateLimiter};
use super::redis_queue::RedisMessageQueue;
use super::worker::{MessageSender, MessageWorker, WorkerConfig};

/// The longest text accepted (WhatsApp's own limit is 65 536 characters), in Unicode scalar
/// values (`str::chars`): an emoji outside the BMP counts once, not as its two UTF-16 units.
pub const MAX_TEXT_CHARS: usize = 65_536;

/// The longest idempotency key accepted, in characters (Unicode scalar values, as texts
/// count them): at most 800 bytes of UTF-8.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;

struct Running {
    cancel: CancellationToken,
    wake: Arc<Notify>,
    task: JoinHandle<Result<()>>,
}

struct Inner {
    queue: Arc<dyn MessageQueue>,
    limiter: Arc<dyn RateLimiter>,
    sender: Arc<dyn MessageSender>,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    sessions: Option<Arc<dyn SessionStore>>,
    history: Option<Arc<dyn MessageHistory>>,
    workers: Mutex<HashMap<SessionId, Running>>,
}

/// The queue and the limiter of a deployment: both in Redis when a connection is given
/// (`REDIS_URL` set), otherwise the database's queue and the in-process limiter.
///
/// `prefix` namespaces the Redis keys (several deployments may share one Redis).
pub fn backends(
    redis: Option<ConnectionManager>,
    prefix: &str,
    database_queue: Arc<dyn MessageQueue>,
    pacing: Pacing,
) -> Result<(Arc<dyn MessageQueue>, Arc<dyn RateLimiter>)> {
    Ok(match redis {
        Some(conn) => (
            Arc::new(RedisMessageQueue::new(conn.clone(), prefix)),
            Arc::new(RedisRateLimiter::new(conn, prefix, pacing)?),
        ),
        None => (database_queue, Arc::new(LocalRateLimiter::new(pacing)?)),
    })
}

/// Outgoing messages: enqueue, status, and one worker per session that sends.
///
/// Cheap to clone (an `Arc`). The server starts a session's worker when the session runs on
/// this node ([`Messaging::start`]) and stops it when the session stops or moves
/// ([`Messaging::stop`]).
#[derive(Clone)]
pub struct Messaging {
    inner: Arc<Inner>,
}

impl Debug for Messaging {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Messaging")
            .field("queue", &self.inner.queue)
            .field("limiter", &self.inner.limiter)
            .field("sender", &self.inner.sender)
            .field("workers", &self.running().len())
            .finish_non_exhaustive()
    }
}

impl Messaging {
    /// Wires the parts; no worker runs until [`Messaging::start`].
    pub fn new(
        queue: Arc<dyn MessageQueue>,
        limiter: Arc<dyn RateLimiter>,
        sender: Arc<dyn MessageSender>,
        clock: Arc<dyn Clock>,
        config: WorkerConfig,
    ) -> Self {
        Messaging {
            inner: Arc::new(Inner {
                queue,
                limiter,
                sender,
                clock,
                config,
                sessions: None,
                history: None,
                workers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Makes [`Messaging::enqueue`] check that the session exists ([`Error::NotFound`]
    /// otherwise) — needed with the Redis queue, which does not know the sessions. Call
    /// before cloning.
    ///
    /// # Panics
    ///
    /// If this `Messaging` was already cloned.
    pub fn with_sessions(mut self, sessions: Arc<dyn SessionStore>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("Messaging::with_sessions must be called before cloning")
            .sessions = Some(sessions);
        self
    }

    /// Records every sent message in `history` (see [`MessageWorker::with_history`]).
    /// Call before cloning.
    pub fn with_history(mut self, history: Arc<dyn MessageHistory>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("Messaging::with_history must be called before cloning")
            .history = Some(history);
        self
    }

    /// The queue (for listing and reads).
    pub fn queue(&self) -> &Arc<dyn MessageQueue> {
        &self.inner.queue
    }

    /// Queues `text` to `to` from `session`, durably, and wakes the session's worker.
    ///
    /// With an `idempotency_key` already used for this session, stores nothing and returns
    /// the earlier message (`created == false`). An empty or over-long text, or an over-long
    /// key, is [`Error::InvalidInput`]; a missing session is [`Error::NotFound`] (database
    /// queue).
    pub async fn enqueue(
        &self,
        session: &SessionId,
        to: &Wid,
        text: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Enqueued> {
        if text.trim().is_empty() {
            return Err(Error::invalid("text", "must not be empty"));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(Error::invalid(
                "text",
                format!("must be at most {MAX_TEXT_CHARS} characters (Unicode scalar values)"),
            ));
        }
        if let Some(key) = idempotency_key
            && (key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS)
        {
            return Err(Error::invalid(
                "idempotency_key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"),
            ));
        }
        if let Some(sessions) = &self.inner.sessions
            && sessions.get(session).await?.is_none()
        {
            return Err(Error::not_found(format!("session {session}")));
        }
        let now = self.inner.clock.now();
        let done = self
            .inner
            .queue
            .enqueue(
                &NewQueuedMessage {
                    session_id: session.clone(),
                    idempotency_key: idempotency_key.map(str::to_owned),
                    recipient: to.clone(),
                    body: text.to_owned(),
                    not_before: now,
                },
                now,
            )
            .await?;
        if done.created {
            self.wake(session);
        }
        Ok(done)
    }

    /// One message, by the id [`Messaging::enqueue`] returned.
    pub async fn get(&self, id: i64) -> Result<Option<QueuedMessage>> {
        self.inner.queue.get(id).await
    }

    /// Starts the worker of `session` unless one runs. Needs a Tokio runtime.
    pub fn start(&self, session: &SessionId) {
        let mut workers = self.inner.workers.lock().unwrap();
        if workers.get(session).is_some_and(|r| !r.task.is_finished()) {
            return;
        }
        let worker = MessageWorker::new(
            session.clone(),
            self.inner.queue.clone(),
            self.inner.limiter.clone(),
            self.inner.sender.clone(),
            self.inner.clock.clone(),
        )
        .with_config(self.inner.config.clone());
        let worker = match &self.inner.history {
            Some(history) => worker.with_history(history.clone()),
            None => worker,
        };
        let cancel = CancellationToken::new();
        let wake = worker.waker();
        let task = tokio::spawn(worker.run(cancel.clone()));
        workers.insert(session.clone(), Running { cancel, wake, task });
    }

    /// Stops the worker of `session` and waits for it (a send in flight is abandoned and
    /// resent by the next worker). Returns whether one was running.
    pub async fn stop(&self, session: &SessionId) -> bool {
        let running = self.inner.workers.lock().unwrap().remove(session);
        match running {
            Some(r) => {
                r.cancel.cancel();
                Self::join(session, r.task).await;
                true
            }
            None => false,
        }
    }

    /// Stops every worker.
    pub async fn shutdown(&self) {
        let all: Vec<_> = self.inner.workers.lock().unwrap().drain().collect();
        for (_, r) in &all {
            r.cancel.cancel();
        }
        for (id, r) in all {
            Self::join(&id, r.task).await;
        }
    }

    /// The sessions whose worker runs, sorted.
    pub fn running(&self) -> Vec<SessionId> {
        let workers = self.inner.workers.lock().unwrap();
        let mut ids: Vec<_> = workers
            .iter()
            .filter(|(_, r)| !r.task.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    fn wake(&self, session: &SessionId) {
        if let Some(r) = self.inner.workers.lock().unwrap().get(session) {
            r.wake.notify_one();
        }
    }

    async fn join(session: &SessionId, task: JoinHandle<Result<()>>) {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(session = %session, error = %e, "message worker failed"),
            Err(e) => tracing::error!(session = %session, error = %e, "message worker panicked"),
        }
    }
}

/// The keepalive engine's [`KeepaliveSender`] for the server: queues the text instead of
/// sending it, so keepalive messages are durable and paced with all the others.
///
/// `send` returns once the text is queued (the engine's contract allows that). The text has
/// no idempotency key: the engine calls `send` once per keepalive.
#[derive(Debug, Clone)]
pub struct QueueSender {
    messaging: Messaging,
}

impl QueueSender {
    /// Queues keepalive texts into `messaging`.
    pub fn new(messaging: Messaging) -> Self {
        QueueSender { messaging }
    }
}

#[async_trait]
impl KeepaliveSender for QueueSender {
    async fn send(
        &self,
        session: &SessionId,
        _browser: &Arc<dyn BrowserSession>,
        to: &Wid,
        text: &str,
    ) -> Result<()> {
        self.messaging
            .enqueue(session, to, text, None)
            .await
            .map(|_| ())
    }
}
