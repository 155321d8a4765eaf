//! The message worker's policy under paused time: pacing, retries, failures, crash
//! recovery, keepalive texts. The queue is the in-memory one (no I/O, so time can be paused)
//! and the browser is `whatsapp_core::testing::FakeBrowser`.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use whatsapp_core::testing::{FakeBrowser, eventually};
use whatsapp_core::{
    BrowserDriver, Error, LaunchSpec, MessageId, PhoneNumber, Result, SessionId, Wid,
};
use whatsapp_keepalive::KeepaliveSender;
use whatsapp_server::messaging::{
    BrowserSender, InMemoryMessageQueue, LocalRateLimiter, MessageSender, MessageWorker, Messaging,
    Pacing, QueueSender, WorkerConfig,
};
use whatsapp_storage::store::{MessageQueue, QueueStatus, QueuedMessage};

fn t0() -> DateTime<Utc> {
    "2026-03-28T12:00:00Z".parse().unwrap()
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

fn to() -> Wid {
    Wid::parse("34600000001@c.us").unwrap()
}

/// A fake browser with `id` launched, linked and connected.
async fn connected(dir: &Path, id: &SessionId) -> FakeBrowser {
    let fake = FakeBrowser::new(7);
    let profile = dir.join(id.as_str());
    FakeBrowser::write_login(&profile, &PhoneNumber::new("34600000000").unwrap()).unwrap();
    fake.launch(LaunchSpec {
        session: id.clone(),
        profile_dir: profile,
    })
    .await
    .unwrap();
    fake
}

/// Sends through the fake, recording when each attempt happened, failing the first sends
/// with scripted errors.
#[derive(Debug)]
struct Scripted {
    inner: BrowserSender,
    failures: Mutex<VecDeque<Error>>,
    attempts: Mutex<Vec<(Instant, String)>>,
}

impl Scripted {
    fn new(fake: &FakeBrowser, failures: Vec<Error>) -> Arc<Self> {
        let fake = fake.clone();
        Arc::new(Scripted {
            inner: BrowserSender::new(move |id| fake.session(id)),
            failures: Mutex::new(failures.into()),
            attempts: Mutex::new(Vec::new()),
        })
    }

    fn attempts(&self) -> Vec<(Instant, String)> {
        self.attempts.lock().unwrap().clone()
    }
}

#[async_trait]
impl MessageSender for Scripted {
    async fn ready(&self, session: &SessionId) -> bool {
        self.inner.ready(session).await
    }

    async fn send(&self, session: &SessionId, to: &Wid, body: &str) -> Result<MessageId> {
        self.attempts
            .lock()
            .unwrap()
            .push((Instant::now(), body.to_owned()));
        let failure = self.failures.lock().unwrap().pop_front();
        match failure {
            Some(e) => Err(e),
            None => self.inner.send(session, to, body).await,
        }
    }
}

/// Ready, and never answers a send (a browser that hangs mid-send).
#[derive(Debug, Default)]
struct Hanging {
    called: tokio::sync::Notify,
}

#[async_trait]
impl MessageSender for Hanging {
    async fn ready(&self, _session: &SessionId) -> bool {
        true
    }

    async fn send(&self, _session: &SessionId, _to: &Wid, _body: &str) -> Result<MessageId> {
        self.called.notify_one();
        std::future::pending().await
    }
}

fn messaging(
    queue: &Arc<InMemoryMessageQueue>,
    sender: Arc<dyn MessageSender>,
    config: WorkerConfig,
) -> Messaging {
    Messaging::new(
        queue.clone(),
        Arc::new(LocalRateLimiter::new(Pacing::default()).unwrap()),
        sender,
        Arc::new(whatsapp_core::testing::FakeClock::following_tokio(t0())),
        config,
    )
}

async fn wait_for(
    queue: &Arc<InMemoryMessageQueue>,
    id: i64,
    done: impl Fn(&QueuedMessage) -> bool,
) -> QueuedMessage {
    eventually(
        &format!("message {id} to reach the expected state"),
        Duration::from_secs(3600),
        || async {
            let m = queue.get(id).await.unwrap().unwrap();
            if done(&m) { Ok(m) } else { Err(m) }
        },
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn twenty_messages_go_out_in_order_at_the_default_pace() {
    let dir = tempfile::tempdir().unwrap();
    let id = sid("alice");
    let fake = connected(dir.path(), &id).await;
    let queue = Arc::new(InMemoryMessageQueue::new());
    let sender = Scripted::new(&fake, vec![]);
    let m = messaging(&queue, sender.clone(), WorkerConfig::default());
    for i in 0..20 {
        m.enqueue(&id, &to(), &format!("m{i}"), None).await.unwrap();
    }
    let start = Instant::now();
    m.start(&id);
    tokio::time::timeout(
        Duration::from_secs(600),
        fake.wait_until(|f| f.sent_by(&id).len() == 20),
    )
    .await
    .expect("20 messages not sent");

    let bodies: Vec<_> = fake.sent_by(&id).into_iter().map(|s| s.body).collect();
    let expected: Vec<_> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, expected, "sent in queue order");
    // Pacing::default(): a burst of 2, then one every 4 s.
    let pace = Pacing::default();
    let at: Vec<Duration> = sender.attempts().iter().map(|(t, _)| *t - start).collect();
    assert_eq!(at.len(), 20);
    assert!(at[1] < Duration::from_millis(10), "burst of 2: {at:?}");
    for i in 2..20 {
        let expected = pace.interval * (i as u32 - 1);
        assert!(
            at[i] >= expected && at[i] < expected + Duration::from_millis(50),
            "message {i} at {:?}, expected {expected:?}",
            at[i]
        );
        assert!(at[i] - at[i - 1] >= pace.interval - Duration::from_millis(1));
    }
    for msg in queue.list(&id, &[]).await.unwrap() {
        assert_eq!(msg.status, QueueStatus::Sent);
        assert_eq!(msg.attempts, 1);
        assert!(msg.message_id.is_some());
    }
    m.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_same_idempotency_key_is_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let id = sid("alice");
    let fake = connected(dir.path(), &id).await;
    let queue = Arc::new(InMemoryMessageQueue::new());
    let m = messaging(
        &queue,
        Scripted::new(&fake, vec![]),
        WorkerConfig::default(),
    );
    m.start(&id);
    let first = m.enqueue(&id, &to(), "hello", Some("k-1")).await.unwrap();
    let again = m.enqueue(&id, &to(), "hello", Some("k-1")).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.message.id, again.message.id);
    wait_for(&queue, first.message.id, |m| m.status == QueueStatus::Sent).await;
    // Queued again after it was sent: still the same message, not a second send.
    let late = m.enqueue(&id, &to(), "hello", Some("k-1")).await.unwrap();
    assert!(!late.created);
    assert_eq!(late.message.status, QueueStatus::Sent);
    // Time passes on purpose (paused time): no second send comes.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(fake.sent_by(&id).len(), 1);
    m.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let id = sid("alice");
    let fake = connected(dir.path(), &id).await;
    let queue = Arc::new(InMemoryMessageQueue::new());
    let flaky = vec![
        Error::unavailable("browser", "socket reset"),
        Error::Crashed("renderer gone".into()),
    ];
    let sender = Scripted::new(&fake, flaky);
    let m = messaging(&queue, sender.clone(), WorkerConfig::default());
    m.start(&id);
    let queued = m.enqueue(&id, &to(), "hello", None).await.unwrap().message;
    let sent = wait_for(&queue, queued.id, |m| m.status == QueueStatus::Sent).await;
    assert_eq!(sent.attempts, 3);
    assert_eq!(fake.sent_by(&id).len(), 1);
    let at: Vec<_> = sender.attempts().iter().map(|(t, _)| *t).collect();
    let policy = WorkerConfig::default().retry;
    assert!(at[1] - at[0] >= policy.initial, "{at:?}");
    assert!(at[2] - at[1] >= policy.initial * 2, "{at:?}");
    m.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_and_exhausted_retries_fail_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let id = sid("alice");
    let fake = connected(dir.path(), &id).await;
    let queue = Arc::new(InMemoryMessageQueue::new());
    let mut failures = vec![Error::invalid("recipient", "not on WhatsApp")];
    failures.extend((0..3).map(|_| Error::unavailable("browser", "socket reset")));
    let sender = Scripted::new(&fake, failures);
    let config = WorkerConfig {
        retry: WorkerConfig::default().retry.with_max_attempts(3),
        ..WorkerConfig::default()
    };
    let m = messaging(&queue, sender.clone(), config);
    m.start(&id);
    let permanent = m.enqueue(&id, &to(), "one", None).await.unwrap().message;
    let failed = wait_for(&queue, permanent.id, |m| m.status == QueueStatus::Failed).await;
    assert_eq!(failed.attempts, 1);
    assert_eq!(
        failed.error.as_deref(),
        Some("invalid recipient: not on WhatsApp")
    );

    let flaky = m.enqueue(&id, &to(), "two", None).await.unwrap().message;
    let failed = wait_for(&queue, flaky.id, |m| m.status == QueueStatus::Failed).await;
    assert_eq!(failed.attempts, 3);
    assert_eq!(
        failed.error.as_deref(),
        Some("browser unavailable: socket reset")
    );
    assert!(fake.sent_by(&id).is_empty());
    m.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn messages_wait_queued_while_the_session_cannot_send() {
    let dir = tempfile::tempdir().unwrap();
    let id = sid("alice");
    let fake = connected(dir.path(), &id).await;
    fake.drop_connection(&id);
    let queue = Arc::new(InMemoryMessageQueue::new());
    let m = messaging(
        &queue,
        Scripted::new(&fake, vec![]),
        WorkerConfig::default(),
    );
    m.start(&id);
    let msg = m.enqueue(&id, &to(), "hello", None).await.unwrap().message;
    // An hour passes on purpose (paused time): nothing is attempted while disconnected.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let still = queue.get(msg.id).await.unwrap().unwrap();
    assert_eq!(still.status, QueueStatus::Queued);
    assert_eq!(
        still.attempts, 0,
        "no attempt is used up while disconnected"
    );
    fake.restore_connection(&id);
    wait_for(&queue, msg.id, |m| m.status == QueueStatus::Sent).await;
    m.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_worker_stopped_mid_send_leaves_the_message_to_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let id = sid("alice");
    let fake = connected(dir.path(), &id).await;
    let queue = Arc::new(InMemoryMessageQueue::new());
    let clock = Arc::new(whatsapp_core::testing::FakeClock::following_tokio(t0()));
    let limiter = Arc::new(LocalRateLimiter::new(Pacing::default()).unwrap());
    let hanging = Arc::new(Hanging::default());
    let first = MessageWorker::new(
        id.clone(),
        queue.clone(),
        limiter.clone(),
        hanging.clone(),
        clock.clone(),
    );
    let cancel = CancellationToken::new();
    let called = hanging.called.notified();
    let task = tokio::spawn(first.run(cancel.clone()));
    let m = Messaging::new(
        queue.clone(),
        limiter.clone(),
        Scripted::new(&fake, vec![]),
        clock.clone(),
        WorkerConfig::default(),
    );
    let msg = m.enqueue(&id, &to(), "hello", None).await.unwrap().message;
    called.await;
    cancel.cancel();
    task.await.unwrap().unwrap();
    let stuck = queue.get(msg.id).await.unwrap().unwrap();
    assert_eq!(stuck.status, QueueStatus::Sending);

    m.start(&id);
    let sent = wait_for(&queue, msg.id, |m| m.status == QueueStatus::Sent).await;
    assert_eq!(sent.attempts, 2);
    // Time passes on purpose (paused time): the stopped worker sends nothing more.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(fake.sent_by(&id).len(), 1);
    m.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn keepalive_texts_go_through_the_queue_and_are_paced() {
    let dir = tempfile::tempdir().unwrap();
    let id = sid("alice");
    let fake = connected(dir.path(), &id).await;
    let queue = Arc::new(InMemoryMessageQueue::new());
    let sender = Scripted::new(&fake, vec![]);
    let m = messaging(&queue, sender.clone(), WorkerConfig::default());
    m.start(&id);
    let keepalive = QueueSender::new(m.clone());
    let handle = fake.session(&id).unwrap();
    let start = Instant::now();
    for i in 0..4 {
        keepalive
            .send(&id, &handle, &to(), &format!("ping {i}"))
            .await
            .unwrap();
    }
    assert_eq!(queue.list(&id, &[]).await.unwrap().len(), 4);
    tokio::time::timeout(
        Duration::from_secs(60),
        fake.wait_until(|f| f.sent_by(&id).len() == 4),
    )
    .await
    .unwrap();
    let last = sender.attempts().last().unwrap().0 - start;
    assert!(
        last >= Pacing::default().interval * 2,
        "4 texts with a burst of 2 take two intervals: {last:?}"
    );
    m.shutdown().await;
    assert!(m.running().is_empty());
}

/// Sends through the fake after a delay (a slow browser).
#[derive(Debug)]
struct Slow {
    inner: BrowserSender,
    delay: Duration,
    called: tokio::sync::Notify,
}

#[async_trait]
impl MessageSender for Slow {
    async fn ready(&self, session: &SessionId) -> bool {
        self.inner.ready(session).await
    }

    async fn send(&self, session: &SessionId, to: &Wid, body: &str) -> Result<MessageId> {
        self.called.notify_one();
        // The slowness is the point: a send still in flight when the stop comes.
        tokio::time::sleep(self.delay).await;
        self.inner.send(session, to, body).await
    }
}

#[tokio::test(start_paused = true)]
async fn an_orderly_stop_lets_the_send_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let id = sid("alice");
    let fake = connected(dir.path(), &id).await;
    let queue = Arc::new(InMemoryMessageQueue::new());
    let lookup = fake.clone();
    let config = WorkerConfig::default();
    let slow = Arc::new(Slow {
        inner: BrowserSender::new(move |id| lookup.session(id)),
        delay: config.shutdown_grace / 2,
        called: tokio::sync::Notify::new(),
    });
    let m = messaging(&queue, slow.clone(), config);
    m.start(&id);
    let msg = m.enqueue(&id, &to(), "hello", None).await.unwrap().message;
    let second = m.enqueue(&id, &to(), "later", None).await.unwrap().message;
    slow.called.notified().await;
    assert!(m.stop(&id).await);
    let done = queue.get(msg.id).await.unwrap().unwrap();
    assert_eq!(done.status, QueueStatus::Sent, "recorded before stopping");
    assert_eq!(
        queue.get(second.id).await.unwrap().unwrap().status,
        QueueStatus::Queued,
        "a stopped worker takes nothing more"
    );
    // The next worker does not send it again.
    m.start(&id);
    wait_for(&queue, second.id, |m| m.status == QueueStatus::Sent).await;
    let bodies: Vec<_> = fake.sent_by(&id).into_iter().map(|s| s.body).collect();
    assert_eq!(bodies, ["hello", "later"]);
    m.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_readiness_function_replaces_the_browser_probe() {
    let dir = tempfile::tempdir().unwrap();
    let id = sid("alice");
    let fake = connected(dir.path(), &id).await;
    let lookup = fake.clone();
    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = open.clone();
    let sender = BrowserSender::new(move |id| lookup.session(id))
        .with_readiness(move |_| gate.load(std::sync::atomic::Ordering::SeqCst));
    assert!(!sender.ready(&id).await);
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(sender.ready(&id).await);
    // Without one, the browser is asked: a dropped connection is not ready.
    let lookup = fake.clone();
    let probing = BrowserSender::new(move |id| lookup.session(id));
    assert!(probing.ready(&id).await);
    fake.drop_connection(&id);
    assert!(!probing.ready(&id).await);
    assert!(!probing.ready(&sid("nobody")).await);
}

#[tokio::test(start_paused = true)]
async fn the_engines_keepalive_texts_are_queued_paced_and_sent_through_its_browser() {
    use whatsapp_core::testing::{FakeClock, InMemorySessionStore, RecordingNotifier};
    use whatsapp_core::{Clock, SessionRecord, SessionStatus, SessionStore, TenantId};
    use whatsapp_keepalive::{
        EngineDeps, KeepaliveConfig, KeepaliveEngine, KeepaliveTarget, NoBackup,
    };

    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::following_tokio(t0());
    let fake = FakeBrowser::new(42);
    let store = Arc::new(InMemorySessionStore::new());
    let queue = Arc::new(InMemoryMessageQueue::new());
    // The wiring the server does: sender first, engine later.
    let slot = Arc::new(std::sync::OnceLock::new());
    let m = Messaging::new(
        queue.clone(),
        Arc::new(LocalRateLimiter::new(Pacing::default()).unwrap()),
        Arc::new(BrowserSender::from_engine_slot(slot.clone())),
        Arc::new(clock.clone()),
        WorkerConfig::default(),
    );
    let target = PhoneNumber::new("34600000002").unwrap();
    let mut config = KeepaliveConfig::default();
    config.keepalive.target = KeepaliveTarget::Number(target.clone());
    let engine = KeepaliveEngine::new(
        config,
        EngineDeps {
            driver: Arc::new(fake.clone()),
            store: store.clone(),
            notifier: Arc::new(RecordingNotifier::new()),
            clock: Arc::new(clock.clone()),
            backup: Arc::new(NoBackup),
            sender: Arc::new(QueueSender::new(m.clone())),
            sessions_path: dir.path().to_owned(),
            seed: 7,
        },
    )
    .unwrap();
    slot.set(engine.clone()).unwrap();

    let id = sid("alice");
    let phone = PhoneNumber::new("34600000000").unwrap();
    let mut record = SessionRecord::new(id.clone(), TenantId::new("t1").unwrap(), clock.now());
    record.status = SessionStatus::Ready;
    record.wid = Some(phone.wid());
    store.create(&record).await.unwrap();
    FakeBrowser::write_login(&dir.path().join(id.as_str()), &phone).unwrap();
    m.start(&id);
    engine.start(&id).await.unwrap();

    // Keepalive texts come every 55–65 min: three of them within 4 hours.
    tokio::time::timeout(
        Duration::from_secs(4 * 3600),
        fake.wait_until(|f| f.sent_by(&id).len() >= 3),
    )
    .await
    .expect("the engine's keepalive texts were not sent");
    let sent = fake.sent_by(&id);
    let queued = queue.list(&id, &[QueueStatus::Sent]).await.unwrap();
    assert!(queued.len() >= 3);
    for (s, q) in sent.iter().zip(&queued) {
        assert_eq!(s.to, target.wid());
        assert_eq!(q.body, s.body, "every text went through the queue");
        assert_eq!(q.message_id.as_ref(), Some(&s.id));
    }
    // Readiness comes from the engine: a stopped session cannot send.
    let sender = BrowserSender::from_engine(engine.clone());
    assert!(sender.ready(&id).await);
    engine.stop(&id).await.unwrap();
    assert!(!sender.ready(&id).await);
    let err = sender.send(&id, &to(), "x").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    engine.shutdown().await;
    m.shutdown().await;
}
