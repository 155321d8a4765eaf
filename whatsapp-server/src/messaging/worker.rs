//! [`MessageWorker`]: sends one session's queued messages, paced, and records the outcome.
//!
//! The loop, per message: wait until the session can send ([`MessageSender::ready`]) and the
//! [`RateLimiter`] has a slot, take the oldest due message (`queued` → `sending`), take the
//! slot, send it, and mark it `sent` (with WhatsApp's message id) or failed: a transient error
//! queues it again after a backoff ([`WorkerConfig::retry`], a [`Backoff`]), a permanent one
//! (or too many attempts) fails it for good with the reason. On start, and after any storage error, the worker puts
//! back the messages a previous worker left `sending` (see the
//! [delivery guarantee](super#delivery-guarantee)).
//!
//! A worker must be the only one for its session: the keepalive engine's session lease
//! guarantees that in a cluster (the node that runs the browser runs the worker).

use std::fmt::{self, Debug};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use whatsapp_core::{
    Backoff, BrowserSession, Clock, ConnectionState, Error, MessageId, Result, SessionId, Wid,
};
use whatsapp_keepalive::KeepaliveEngine;
use whatsapp_storage::store::{MessageHistory, MessageQueue, NewMessage, QueuedMessage};

use super::limiter::{Decision, RateLimiter};

/// Sends one text from a session: the worker's way out.
///
/// # Contract
///
/// - `ready` says whether `session` can send now (its browser is up and connected). While it
///   cannot, the worker leaves the queue alone: messages wait `queued` without using up
///   attempts. It must answer quickly.
/// - `send` returns WhatsApp's id once the message is accepted. Errors are classified with
///   [`Error::is_transient`]: transient ones are retried later, others fail the message.
#[async_trait]
pub trait MessageSender: Send + Sync + Debug + 'static {
    /// Whether `session` can send now.
    async fn ready(&self, session: &SessionId) -> bool;

    /// Sends `body` to `to` from `session`.
    async fn send(&self, session: &SessionId, to: &Wid, body: &str) -> Result<MessageId>;
}

type Lookup = dyn Fn(&SessionId) -> Option<Arc<dyn BrowserSession>> + Send + Sync;

/// The production [`MessageSender`]: sends through the session's current browser handle.
///
/// Built from the keepalive engine ([`BrowserSender::from_engine`]) or from any lookup
/// (tests use `FakeBrowser::session`).
#[derive(Clone)]
pub struct BrowserSender {
    lookup: Arc<Lookup>,
    readiness: Option<Arc<Readiness>>,
    probe_timeout: Duration,
}

type Readiness = dyn Fn(&SessionId) -> bool + Send + Sync;

impl Debug for BrowserSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserSender")
            .field("probe_timeout", &self.probe_timeout)
            .finish_non_exhaustive()
    }
}

impl BrowserSender {
    /// Sends through whatever handle `lookup` returns for the session.
    pub fn new(
        lookup: impl Fn(&SessionId) -> Option<Arc<dyn BrowserSession>> + Send + Sync + 'static,
    ) -> Self {
        BrowserSender {
            lookup: Arc::new(lookup),
            readiness: None,
            probe_timeout: Duration::from_secs(5),
        }
    }

    /// Answers [`MessageSender::ready`] with `ready` instead of asking the browser for its
    /// state (which costs a round trip to the page on every poll).
    pub fn with_readiness(
        mut self,
        ready: impl Fn(&SessionId) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.readiness = Some(Arc::new(ready));
        self
    }

    /// Sends through the engine's current handle of each session; a session is ready when
    /// the engine has a handle and last saw it `CONNECTED` (no browser round trip).
    pub fn from_engine(engine: KeepaliveEngine) -> Self {
        let slot = Arc::new(OnceLock::new());
        let _ = slot.set(engine);
        Self::from_engine_slot(slot)
    }

    /// Like [`BrowserSender::from_engine`], for an engine built later: the engine's
    /// [`QueueSender`](super::QueueSender) needs the [`Messaging`](super::Messaging) that
    /// needs this sender, so the server builds the sender first and fills `slot` once the
    /// engine exists. Until then no session is ready.
    pub fn from_engine_slot(slot: Arc<OnceLock<KeepaliveEngine>>) -> Self {
        let states = slot.clone();
        Self::new(move |id| slot.get().and_then(|e| e.browser(id))).with_readiness(move |id| {
            states.get().is_some_and(|e| {
                e.browser(id).is_some()
                    && e.snapshot(id)
                        .is_some_and(|s| s.state == Some(ConnectionState::Connected))
            })
        })
    }
}

#[async_trait]
impl MessageSender for BrowserSender {
    async fn ready(&self, session: &SessionId) -> bool {
        if let Some(ready) = &self.readiness {
            return ready(session);
        }
        let Some(browser) = (self.lookup)(session) else {
            return false;
        };
        matches!(
            tokio::time::timeout(self.probe_timeout, browser.state()).await,
            Ok(Ok(ConnectionState::Connected))
        )
    }

    async fn send(&self, session: &SessionId, to: &Wid, body: &str) -> Result<MessageId> {
        let browser = (self.lookup)(session).ok_or_else(|| {
            Error::unavailable(
                "browser",
                format!("session {session} has no running browser"),
            )
        })?;
        browser.send_text(to, body).await
    }
}

/// How a [`MessageWorker`] behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// How often an idle worker looks at the queue (it is also woken on enqueue; polling
    /// catches messages queued by other nodes and retries coming due).
    pub poll_interval: Duration,
    /// How long one send may take before it counts as a transient failure.
    pub send_timeout: Duration,
    /// The pause after a storage or rate-limiter error.
    pub error_backoff: Duration,
    /// How long a stopping worker waits for a send in flight before abandoning it (an
    /// abandoned send is resent by the next worker: a possible duplicate).
    pub shutdown_grace: Duration,
    /// Retries of transient send failures: the wait after failed attempt `n`, and the
    /// attempts (sends tried) after which a message fails for good. Default: 5 s, 10 s,
    /// 20 s, … capped at 10 min, 8 attempts (about 25 minutes in all), no jitter. Attempts
    /// are counted only while the session can send: a session that is down keeps its
    /// messages queued without using them up.
    pub retry: Backoff,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            poll_interval: Duration::from_secs(2),
            send_timeout: Duration::from_secs(60),
            error_backoff: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(15),
            retry: Backoff::exponential(Duration::from_secs(5), 2.0, Duration::from_secs(600))
                .with_max_attempts(8),
        }
    }
}

/// What one step of the loop asks for next.
enum Step {
    /// Go again at once.
    Again,
    /// Wait this long (or until woken).
    Wait(Duration),
    /// Cancelled.
    Stop,
}

/// Sends the queued messages of one session; see the [module docs](self).
pub struct MessageWorker {
    session: SessionId,
    queue: Arc<dyn MessageQueue>,
    limiter: Arc<dyn RateLimiter>,
    sender: Arc<dyn MessageSender>,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    wake: Arc<Notify>,
    history: Option<Arc<dyn MessageHistory>>,
}

impl Debug for MessageWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageWorker")
            .field("session", &self.session)
            .field("queue", &self.queue)
            .field("limiter", &self.limiter)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MessageWorker {
    /// A worker for `session` with the default [`WorkerConfig`].
    pub fn new(
        session: SessionId,
        queue: Arc<dyn MessageQueue>,
        limiter: Arc<dyn RateLimiter>,
        sender: Arc<dyn MessageSender>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        MessageWorker {
            session,
            queue,
            limiter,
            sender,
            clock,
            config: WorkerConfig::default(),
            wake: Arc::new(Notify::new()),
            history: None,
        }
    }

    /// Records each sent message in `history` (as the account's own, `from_me`), so the
    /// history holds both sides of a chat and the acks of our messages rise there.
    pub fn with_history(mut self, history: Arc<dyn MessageHistory>) -> Self {
        self.history = Some(history);
        self
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// The session this worker sends for.
    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// A handle that wakes the worker (call `notify_one` after queueing a message), so it
    /// does not wait for its next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `cancel` fires. Returns an error only when the queue fails permanently at
    /// start; later errors are logged and retried after [`WorkerConfig::error_backoff`].
    ///
    /// Cancelled mid-send, the worker waits up to [`WorkerConfig::shutdown_grace`] for the
    /// send to finish and records it; after that it abandons the send and leaves the message
    /// `sending`: the next worker of the session queues it again (at least once).
    pub async fn run(self, cancel: CancellationToken) -> Result<()> {
        let mut recover = true;
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            if recover {
                match self.queue.requeue_sending(&self.session).await {
                    Ok(n) => {
                        recover = false;
                        if n > 0 {
                            tracing::info!(
                                session = %self.session,
                                messages = n,
                                "queued again the messages a previous worker left in flight"
                            );
                        }
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(session = %self.session, error = %e, "cannot requeue in-flight messages yet");
                        if !self.pause(self.config.error_backoff, &cancel).await {
                            return Ok(());
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let pause = match self.step(&cancel).await {
                Ok(Step::Again) => continue,
                Ok(Step::Wait(d)) => d,
                Ok(Step::Stop) => return Ok(()),
                Err(e) => {
                    tracing::warn!(session = %self.session, error = %e, "message worker step failed");
                    recover = true;
                    self.config.error_backoff
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(pause) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Sleeps `d`; false if cancelled meanwhile.
    async fn pause(&self, d: Duration, cancel: &CancellationToken) -> bool {
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    async fn step(&self, cancel: &CancellationToken) -> Result<Step> {
        let key = self.session.as_str();
        if !self.sender.ready(&self.session).await {
            return Ok(Step::Wait(self.config.poll_interval));
        }
        let wait = self.limiter.time_to_ready(key).await?;
        if !wait.is_zero() {
            return Ok(Step::Wait(wait));
        }
        let Some(message) = self
            .queue
            .take_next(&self.session, self.clock.now())
            .await?
        else {
            return Ok(Step::Wait(self.config.poll_interval));
        };
        if cancel.is_cancelled() {
            self.put_back(&message, "worker stopped before sending")
                .await;
            return Ok(Step::Stop);
        }
        // Take the slot; a second holder of the same key may have taken it meanwhile.
        loop {
            let decision = match self.limiter.try_acquire(key).await {
                Ok(d) => d,
                Err(e) => {
                    self.put_back(&message, "rate limiter unavailable").await;
                    return Err(e);
                }
            };
            match decision {
                Decision::Allowed => break,
                Decision::RetryAfter(d) => {
                    if !self.pause(d, cancel).await {
                        self.put_back(&message, "worker stopped before sending")
                            .await;
                        return Ok(Step::Stop);
                    }
                }
            }
        }
        let send = tokio::time::timeout(
            self.config.send_timeout,
            self.sender
                .send(&self.session, &message.recipient, &message.body),
        );
        tokio::pin!(send);
        let timed_out = || Error::Timeout {
            what: "send_text".into(),
            after: self.config.send_timeout,
        };
        let outcome = tokio::select! {
            r = &mut send => r.unwrap_or_else(|_| Err(timed_out())),
            _ = cancel.cancelled() => {
                // Let the send in flight finish, so that an orderly stop does not resend it.
                match tokio::time::timeout(self.config.shutdown_grace, &mut send).await {
                    Ok(r) => r.unwrap_or_else(|_| Err(timed_out())),
                    // Abandoned and left `sending`: whether WhatsApp got it is unknown; the
                    // next worker of the session sends it again (at least once).
                    Err(_) => return Ok(Step::Stop),
                }
            }
        };
        match outcome {
            Ok(wa_id) => self.record_sent(&message, &wa_id, cancel).await,
            Err(e) => self.record_failure(&message, &e).await?,
        }
        Ok(Step::Again)
    }

    /// Queues a taken message again, due as before (the attempt `take_next` counted stays
    /// counted). Best effort: if it fails, the message stays `sending` until the next
    /// recovery.
    async fn put_back(&self, message: &QueuedMessage, why: &str) {
        if let Err(e) = self
            .queue
            .mark_failed(message.id, why, Some(message.not_before))
            .await
        {
            tracing::warn!(session = %self.session, id = message.id, error = %e, "cannot put a message back");
        }
    }

    /// Records the send, insisting on transient errors: giving up here would resend it.
    async fn record_sent(
        &self,
        message: &QueuedMessage,
        wa_id: &MessageId,
        cancel: &CancellationToken,
    ) {
        loop {
            match self
                .queue
                .mark_sent(message.id, wa_id, self.clock.now())
                .await
            {
                Ok(_) => {
                    tracing::debug!(session = %self.session, id = message.id, "message sent");
                    self.record_in_history(message, wa_id).await;
                    return;
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(session = %self.session, id = message.id, error = %e, "cannot record a sent message yet");
                    if !self.pause(self.config.error_backoff, cancel).await {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(session = %self.session, id = message.id, error = %e, "cannot record a sent message");
                    return;
                }
            }
        }
    }

    /// Best effort: the send is recorded in the queue already; a history that cannot take
    /// it now only lacks this row (logged).
    async fn record_in_history(&self, message: &QueuedMessage, wa_id: &MessageId) {
        let Some(history) = &self.history else {
            return;
        };
        let now = self.clock.now();
        let row = NewMessage {
            session_id: self.session.clone(),
            key: wa_id.clone(),
            chat: message.recipient.clone(),
            from_me: true,
            sender: None,
            kind: "chat".into(),
            body: Some(message.body.clone()),
            ack: Some(whatsapp_core::Ack::PENDING),
            payload: serde_json::json!({ "queue_id": message.id }),
            sent_at: now,
        };
        if let Err(e) = history.record(&row, now).await {
            tracing::warn!(session = %self.session, id = message.id, error = %e, "cannot record a sent message in the history");
        }
    }

    async fn record_failure(&self, message: &QueuedMessage, error: &Error) -> Result<()> {
        let retry_at = self
            .config
            .retry
            // No jitter is configured, so the random input is irrelevant.
            .retry_after(error, message.attempts, 0.0)
            .map(|d| {
                self.clock.now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
            });
        tracing::warn!(
            session = %self.session,
            id = message.id,
            attempts = message.attempts,
            retry = retry_at.is_some(),
            error = %error,
            "sending a message failed"
        );
        self.queue
            .mark_failed(message.id, &error.to_string(), retry_at)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_gives_up() {
        let p = WorkerConfig::default().retry;
        let t = Error::unavailable("browser", "down");
        let retry_delay = |p: &Backoff, e: &Error, attempts| p.retry_after(e, attempts, 0.0);
        assert_eq!(retry_delay(&p, &t, 1), Some(Duration::from_secs(5)));
        assert_eq!(retry_delay(&p, &t, 2), Some(Duration::from_secs(10)));
        assert_eq!(retry_delay(&p, &t, 7), Some(Duration::from_secs(320)));
        assert_eq!(retry_delay(&p, &t, 8), None);
        let capped = p.with_max_attempts(100);
        assert_eq!(retry_delay(&capped, &t, 50), Some(Duration::from_secs(600)));
        assert_eq!(retry_delay(&p, &Error::LoggedOut, 1), None);
    }
}
