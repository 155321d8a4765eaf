//! The message queue and worker against real components, in real time: the SQLite and
//! Postgres queues of `whatsapp-storage`, the Redis queue, and the Redis rate limiter.
//!
//! Needs Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`) and Postgres
//! (`DATABASE_URL`, e.g. `postgres://postgres@127.0.0.1:5432/postgres`, a role allowed to
//! `CREATE DATABASE`); without them the tests fail, saying so. Each test uses its own Redis
//! key prefix and its own Postgres database, and removes them afterwards.
//!
//! Real I/O means real time: these tests assert on counts, states and the limiter's
//! decisions, never on elapsed time (the timing policy is tested under paused time in
//! `messaging_pacing.rs`).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;
use whatsapp_core::testing::{FakeBrowser, eventually};
use whatsapp_core::{
    Backoff, BrowserDriver, Clock, Error, LaunchSpec, MessageId, PhoneNumber, Result, SessionId,
    SessionRecord, SystemClock, TenantId, Wid,
};
use whatsapp_server::messaging::{
    BrowserSender, Decision, MessageSender, MessageWorker, Messaging, Pacing, RateLimiter,
    RedisMessageQueue, RedisRateLimiter, WorkerConfig,
};
use whatsapp_storage::store::{self, MessageQueue, NewQueuedMessage, QueueStatus, Stores};
use whatsapp_storage::testing::conformance::message_queue::{self, QueueSessions};

// ---------------------------------------------------------------------------------------------
// Components.

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn redis_conn() -> ConnectionManager {
    let url = redis_url();
    let client =
        redis::Client::open(url.as_str()).unwrap_or_else(|e| panic!("bad REDIS_URL {url:?}: {e}"));
    tokio::time::timeout(Duration::from_secs(10), ConnectionManager::new(client))
        .await
        .unwrap_or_else(|_| panic!("Redis at {url} did not answer; these tests need Redis running"))
        .unwrap_or_else(|e| {
            panic!("cannot connect to Redis at {url} ({e}); these tests need Redis running")
        })
}

fn unique(name: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "wa-test-{name}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        Utc::now().timestamp_micros()
    )
}

/// Runs `test` with a Redis connection and a fresh key prefix; deletes the prefix's keys.
async fn with_redis<F, Fut>(name: &str, test: F)
where
    F: FnOnce(ConnectionManager, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let conn = redis_conn().await;
    let prefix = unique(name);
    let outcome = AssertUnwindSafe(test(conn.clone(), prefix.clone()))
        .catch_unwind()
        .await;
    let mut conn = conn;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `test` with the stores (and the URL) of a fresh Postgres database; drops the
/// database.
async fn with_postgres<F, Fut>(test: F)
where
    F: FnOnce(Stores, String) -> Fut,
    Fut: Future<Output = ()>,
{
    whatsapp_tests::postgres::with_database("wa_queue_test", async |url| {
        let stores = store::open(&url).await.unwrap();
        test(stores, url).await
    })
    .await
}

/// The stores of a fresh SQLite file.
async fn sqlite(dir: &Path) -> Stores {
    let url = format!("sqlite://{}", dir.join("queue.db").display());
    store::open(&url).await.unwrap()
}

/// Creates the session records the database queues need (foreign key).
async fn create_sessions(stores: &Stores, ids: &[SessionId]) {
    for id in ids {
        stores
            .sessions
            .create(&SessionRecord::new(
                id.clone(),
                TenantId::new("acme").unwrap(),
                Utc::now(),
            ))
            .await
            .unwrap();
    }
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

fn to() -> Wid {
    Wid::parse("34600000001@c.us").unwrap()
}

// ---------------------------------------------------------------------------------------------
// The queue contract, for the Redis queue (the database queues run the same suite in
// whatsapp-storage), then what only the Redis queue does.

fn new_message(
    session: &SessionId,
    key: Option<&str>,
    body: &str,
    now: DateTime<Utc>,
) -> NewQueuedMessage {
    NewQueuedMessage {
        session_id: session.clone(),
        idempotency_key: key.map(str::to_owned),
        recipient: to(),
        body: body.to_owned(),
        not_before: now,
    }
}

/// Sessions of the Redis queue: it does not know them; `delete_session` deletes their
/// messages.
struct RedisSessions<'a>(&'a RedisMessageQueue);

#[async_trait]
impl QueueSessions for RedisSessions<'_> {
    async fn create(&self, _id: &SessionId) {}

    async fn delete(&self, id: &SessionId) {
        self.0.delete_session(id).await.unwrap();
    }

    fn checks_sessions(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn redis_queue_passes_the_queue_suite() {
    with_redis("contract", |conn, prefix| async move {
        let q = RedisMessageQueue::new(conn, prefix);
        message_queue::run_all(&q, &RedisSessions(&q)).await;
        assert_eq!(q.depth().await.unwrap(), 0, "the cases clean up");
    })
    .await;
}

#[tokio::test]
async fn redis_queue_reclaims_claims_past_the_visibility_timeout() {
    with_redis("visibility", |conn, prefix| async move {
        let q = RedisMessageQueue::new(conn, prefix)
            .with_visibility_timeout(Some(Duration::from_secs(60)));
        let a = sid("alice");
        let now = Utc::now();
        let m = q
            .enqueue(&new_message(&a, None, "x", now), now)
            .await
            .unwrap()
            .message;
        assert_eq!(q.take_next(&a, now).await.unwrap().unwrap().id, m.id);
        // Within the timeout the claim holds...
        let soon = now + chrono::Duration::seconds(30);
        assert!(q.take_next(&a, soon).await.unwrap().is_none());
        // ...after it, the message is taken again (the first taker is presumed dead).
        let late = now + chrono::Duration::seconds(61);
        let again = q.take_next(&a, late).await.unwrap().unwrap();
        assert_eq!((again.id, again.attempts), (m.id, 2));
    })
    .await;
}

#[tokio::test]
async fn redis_queue_finished_messages_expire_after_the_retention() {
    with_redis("retention", |conn, prefix| async move {
        let q = RedisMessageQueue::new(conn.clone(), prefix.clone())
            .with_retention(Duration::from_secs(3600));
        let a = sid("alice");
        let m = q
            .enqueue(&new_message(&a, Some("k"), "x", Utc::now()), Utc::now())
            .await
            .unwrap()
            .message;
        q.take_next(&a, Utc::now()).await.unwrap().unwrap();
        q.mark_sent(m.id, &MessageId("w".into()), Utc::now())
            .await
            .unwrap();
        let mut conn = conn;
        for key in [
            format!("{prefix}:q:msg:{}", m.id),
            format!("{prefix}:q:idem:alice:k"),
        ] {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(ttl > 0 && ttl <= 3_600_000, "{key}: pttl {ttl}");
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The Redis rate limiter.

#[tokio::test]
async fn redis_rate_limit_is_shared_by_two_nodes() {
    with_redis("limit", |_conn, prefix| async move {
        let pacing = Pacing {
            interval: Duration::from_secs(10),
            burst: 3,
        };
        // Two "nodes": separate connections, same prefix.
        let a = RedisRateLimiter::new(redis_conn().await, &prefix, pacing).unwrap();
        let b = RedisRateLimiter::new(redis_conn().await, &prefix, pacing).unwrap();
        // Looking takes nothing.
        for _ in 0..5 {
            assert_eq!(a.time_to_ready("alice").await.unwrap(), Duration::ZERO);
        }
        assert_eq!(a.try_acquire("alice").await.unwrap(), Decision::Allowed);
        assert_eq!(b.try_acquire("alice").await.unwrap(), Decision::Allowed);
        assert_eq!(a.try_acquire("alice").await.unwrap(), Decision::Allowed);
        let Decision::RetryAfter(wait) = b.try_acquire("alice").await.unwrap() else {
            panic!("the burst of 3 is shared by both nodes");
        };
        assert!(wait > Duration::ZERO && wait <= pacing.interval, "{wait:?}");
        let ready_in = a.time_to_ready("alice").await.unwrap();
        assert!(
            ready_in > Duration::ZERO && ready_in <= wait,
            "{ready_in:?}"
        );
        // Other sessions, and other prefixes, have their own budget.
        assert_eq!(b.try_acquire("bob").await.unwrap(), Decision::Allowed);
        let elsewhere =
            RedisRateLimiter::new(redis_conn().await, format!("{prefix}-other"), pacing).unwrap();
        assert_eq!(
            elsewhere.try_acquire("alice").await.unwrap(),
            Decision::Allowed
        );
        // The state expires once the bucket would be full again: nothing leaks.
        let mut conn = redis_conn().await;
        let ttl: i64 = redis::cmd("PTTL")
            .arg(a.redis_key("alice"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 31_000, "pttl {ttl}");
        let _: () = redis::cmd("DEL")
            .arg(elsewhere.redis_key("alice"))
            .query_async(&mut conn)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn concurrent_requests_from_two_nodes_never_exceed_the_burst() {
    with_redis("race", |_conn, prefix| async move {
        let pacing = Pacing {
            interval: Duration::from_secs(60),
            burst: 4,
        };
        let nodes = [
            Arc::new(RedisRateLimiter::new(redis_conn().await, &prefix, pacing).unwrap()),
            Arc::new(RedisRateLimiter::new(redis_conn().await, &prefix, pacing).unwrap()),
        ];
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let l = nodes[i % 2].clone();
                tokio::spawn(async move { l.try_acquire("alice").await.unwrap() })
            })
            .collect();
        let mut allowed = 0;
        for t in tasks {
            if t.await.unwrap() == Decision::Allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 4);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The worker end to end, on every queue backend.

/// A limiter that records its decisions.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn RateLimiter>,
    allowed: Mutex<Vec<String>>,
    denied: AtomicU32,
}

#[async_trait]
impl RateLimiter for Recording {
    async fn try_acquire(&self, key: &str) -> Result<Decision> {
        let d = self.inner.try_acquire(key).await?;
        match d {
            Decision::Allowed => self.allowed.lock().unwrap().push(key.to_owned()),
            Decision::RetryAfter(_) => {
                self.denied.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(d)
    }

    async fn time_to_ready(&self, key: &str) -> Result<Duration> {
        self.inner.time_to_ready(key).await
    }
}

/// Sends through the fake after failing with the scripted errors.
#[derive(Debug)]
struct Scripted {
    inner: BrowserSender,
    /// Failures per message text, used up in order.
    failures: Mutex<HashMap<String, VecDeque<Error>>>,
}

#[async_trait]
impl MessageSender for Scripted {
    async fn ready(&self, session: &SessionId) -> bool {
        self.inner.ready(session).await
    }

    async fn send(&self, session: &SessionId, to: &Wid, body: &str) -> Result<MessageId> {
        let failure = self
            .failures
            .lock()
            .unwrap()
            .get_mut(body)
            .and_then(VecDeque::pop_front);
        match failure {
            Some(e) => Err(e),
            None => self.inner.send(session, to, body).await,
        }
    }
}

/// Ready, and never answers a send.
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

fn fast_config() -> WorkerConfig {
    WorkerConfig {
        poll_interval: Duration::from_millis(20),
        send_timeout: Duration::from_secs(10),
        error_backoff: Duration::from_millis(50),
        shutdown_grace: Duration::from_millis(100),
        retry: Backoff::exponential(Duration::from_millis(20), 2.0, Duration::from_millis(100))
            .with_max_attempts(3),
    }
}

const SESSIONS: [&str; 4] = ["w-idem", "w-crash", "w-retry", "w-pace"];

async fn connected(dir: &Path) -> FakeBrowser {
    let fake = FakeBrowser::new(11);
    for id in SESSIONS.map(sid) {
        let profile = dir.join(id.as_str());
        FakeBrowser::write_login(&profile, &PhoneNumber::new("34600000000").unwrap()).unwrap();
        fake.launch(LaunchSpec {
            session: id.clone(),
            profile_dir: profile,
        })
        .await
        .unwrap();
    }
    fake
}

async fn wait_status(q: &Arc<dyn MessageQueue>, id: i64, status: QueueStatus) {
    eventually(
        &format!("message {id} to become {status}"),
        Duration::from_secs(30),
        || async {
            let m = q.get(id).await.unwrap().unwrap();
            if m.status == status { Ok(()) } else { Err(m) }
        },
    )
    .await
}

/// Every worker scenario, on one queue and one limiter backend.
async fn worker_scenarios(queue: Arc<dyn MessageQueue>, limiter: Arc<dyn RateLimiter>) {
    let dir = tempfile::tempdir().unwrap();
    let fake = connected(dir.path()).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let limiter = Arc::new(Recording {
        inner: limiter,
        allowed: Mutex::new(Vec::new()),
        denied: AtomicU32::new(0),
    });
    let failures = HashMap::from([
        (
            "flaky".to_owned(),
            VecDeque::from([Error::unavailable("browser", "socket reset")]),
        ),
        (
            "doomed".to_owned(),
            VecDeque::from([Error::invalid("recipient", "not on WhatsApp")]),
        ),
    ]);
    let lookup = fake.clone();
    let sender = Arc::new(Scripted {
        inner: BrowserSender::new(move |id| lookup.session(id)),
        failures: Mutex::new(failures),
    });
    let m = Messaging::new(
        queue.clone(),
        limiter.clone(),
        sender.clone(),
        clock.clone(),
        fast_config(),
    );

    // Transient failure, retried; then a permanent one, failed with its reason.
    let retry = sid("w-retry");
    m.start(&retry);
    let flaky = m
        .enqueue(&retry, &to(), "flaky", None)
        .await
        .unwrap()
        .message;
    wait_status(&queue, flaky.id, QueueStatus::Sent).await;
    assert_eq!(queue.get(flaky.id).await.unwrap().unwrap().attempts, 2);
    let doomed = m
        .enqueue(&retry, &to(), "doomed", None)
        .await
        .unwrap()
        .message;
    wait_status(&queue, doomed.id, QueueStatus::Failed).await;
    let doomed = queue.get(doomed.id).await.unwrap().unwrap();
    assert_eq!(doomed.attempts, 1);
    assert_eq!(
        doomed.error.as_deref(),
        Some("invalid recipient: not on WhatsApp")
    );
    assert_eq!(fake.sent_by(&retry).len(), 1);

    // The same idempotency key: one message, one send.
    let idem = sid("w-idem");
    m.start(&idem);
    let ids: Vec<i64> = futures::future::join_all((0..5).map(|_| {
        let m = m.clone();
        let idem = idem.clone();
        async move {
            m.enqueue(&idem, &to(), "once", Some("order-42"))
                .await
                .unwrap()
                .message
                .id
        }
    }))
    .await;
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    wait_status(&queue, ids[0], QueueStatus::Sent).await;
    let again = m
        .enqueue(&idem, &to(), "once", Some("order-42"))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(fake.sent_by(&idem).len(), 1);

    // A worker that dies mid-send: the next one sends the message, once.
    let crash = sid("w-crash");
    let hanging = Arc::new(Hanging::default());
    let cancel = CancellationToken::new();
    let dead = MessageWorker::new(
        crash.clone(),
        queue.clone(),
        limiter.clone(),
        hanging.clone(),
        clock.clone(),
    )
    .with_config(fast_config());
    let called = hanging.called.notified();
    let task = tokio::spawn(dead.run(cancel.clone()));
    let msg = m
        .enqueue(&crash, &to(), "in flight", None)
        .await
        .unwrap()
        .message;
    tokio::time::timeout(Duration::from_secs(30), called)
        .await
        .expect("the first worker never tried to send");
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(
        queue.get(msg.id).await.unwrap().unwrap().status,
        QueueStatus::Sending
    );
    m.start(&crash);
    wait_status(&queue, msg.id, QueueStatus::Sent).await;
    let sent = queue.get(msg.id).await.unwrap().unwrap();
    assert_eq!(sent.attempts, 2);
    assert_eq!(fake.sent_by(&crash).len(), 1);
    assert_eq!(
        sent.message_id,
        Some(fake.sent_by(&crash)[0].id.clone()),
        "the WhatsApp id is recorded"
    );

    // 20 messages to one session: all sent, in order, each after one slot of the limiter.
    let pace = sid("w-pace");
    let mut last = 0;
    for i in 0..20 {
        last = m
            .enqueue(&pace, &to(), &format!("m{i}"), None)
            .await
            .unwrap()
            .message
            .id;
    }
    m.start(&pace);
    wait_status(&queue, last, QueueStatus::Sent).await;
    let bodies: Vec<_> = fake.sent_by(&pace).into_iter().map(|s| s.body).collect();
    assert_eq!(bodies, (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
    m.shutdown().await;
    let allowed = limiter.allowed.lock().unwrap().clone();
    assert_eq!(
        allowed.iter().filter(|k| *k == "w-pace").count(),
        20,
        "one slot per message"
    );
    // Every send of every session took exactly one slot (the crashed send took one too).
    assert_eq!(allowed.len(), fake.sent().len() + 2 + 1);
}

fn pacing() -> Pacing {
    Pacing {
        interval: Duration::from_millis(15),
        burst: 1,
    }
}

#[tokio::test]
async fn worker_on_the_redis_queue_with_the_redis_limiter() {
    with_redis("worker", |conn, prefix| async move {
        let queue = Arc::new(RedisMessageQueue::new(conn.clone(), &prefix));
        let limiter = Arc::new(RedisRateLimiter::new(conn, &prefix, pacing()).unwrap());
        worker_scenarios(queue, limiter).await;
    })
    .await;
}

#[tokio::test]
async fn worker_on_the_sqlite_queue() {
    let dir = tempfile::tempdir().unwrap();
    let stores = sqlite(dir.path()).await;
    create_sessions(&stores, &SESSIONS.map(sid)).await;
    let limiter = Arc::new(whatsapp_server::messaging::LocalRateLimiter::new(pacing()).unwrap());
    worker_scenarios(stores.messages.clone(), limiter).await;
}

#[tokio::test]
async fn worker_on_the_postgres_queue_with_the_redis_limiter() {
    with_redis("pg-worker", |conn, prefix| async move {
        with_postgres(|stores, _url| async move {
            create_sessions(&stores, &SESSIONS.map(sid)).await;
            let limiter = Arc::new(RedisRateLimiter::new(conn, &prefix, pacing()).unwrap());
            worker_scenarios(stores.messages.clone(), limiter).await;
        })
        .await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// kill -9 of the process that sends: a child process (this test binary, re-run on the ignored
// `crash_child` test) sends through a sender that appends to a file; the parent kills it with
// SIGKILL mid-stream, then a new worker finishes the queue. Every accepted message is sent;
// at most the one in flight at the kill is sent twice.

const CHILD_ENV: &str = "WA_MESSAGING_CRASH_CHILD";
const CRASH_SESSION: &str = "crash-kill";
const CRASH_MESSAGES: usize = 30;

/// "Sends" by appending the text to a file (synced), after `delay` (WhatsApp's latency).
#[derive(Debug)]
struct FileSender {
    path: std::path::PathBuf,
    delay: Duration,
}

#[async_trait]
impl MessageSender for FileSender {
    async fn ready(&self, _session: &SessionId) -> bool {
        true
    }

    async fn send(&self, _session: &SessionId, _to: &Wid, body: &str) -> Result<MessageId> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .unwrap();
        // One write(2) per line: `writeln!` may split the text and the newline into two
        // writes, and a kill between them glued the next line onto this one.
        f.write_all(format!("{body}\n").as_bytes()).unwrap();
        f.sync_data().unwrap();
        tokio::time::sleep(self.delay).await;
        Ok(MessageId(format!("file-{body}")))
    }
}

async fn open_queue(url: &str, prefix: &str) -> Arc<dyn MessageQueue> {
    if url.starts_with("redis") {
        Arc::new(RedisMessageQueue::connect(url, prefix).await.unwrap())
    } else {
        store::open(url).await.unwrap().messages
    }
}

fn fast_limiter() -> Arc<dyn RateLimiter> {
    Arc::new(
        whatsapp_server::messaging::LocalRateLimiter::new(Pacing {
            interval: Duration::from_millis(5),
            burst: 1,
        })
        .unwrap(),
    )
}

/// The child: sends the queue of `CRASH_SESSION` until killed.
#[tokio::test]
#[ignore = "a child process of the kill -9 tests; does nothing on its own"]
async fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let [url, prefix, log]: [&str; 3] = spec
        .split('\n')
        .collect::<Vec<_>>()
        .try_into()
        .expect("spec: url, prefix, log path");
    let queue = open_queue(url, prefix).await;
    let sender = Arc::new(FileSender {
        path: log.into(),
        delay: Duration::from_millis(20),
    });
    let worker = MessageWorker::new(
        sid(CRASH_SESSION),
        queue,
        fast_limiter(),
        sender,
        Arc::new(SystemClock),
    )
    .with_config(fast_config());
    worker.run(CancellationToken::new()).await.unwrap();
}

async fn kill_mid_send(url: &str, prefix: &str, queue: Arc<dyn MessageQueue>) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sent.log");
    let session = sid(CRASH_SESSION);
    let mut ids = Vec::new();
    for i in 0..CRASH_MESSAGES {
        let m = queue
            .enqueue(
                &new_message(
                    &session,
                    Some(&format!("k{i}")),
                    &format!("m{i}"),
                    Utc::now(),
                ),
                Utc::now(),
            )
            .await
            .unwrap();
        ids.push(m.message.id);
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_ENV, format!("{url}\n{prefix}\n{}", log.display()))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = |log: &Path| -> Vec<String> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let what = "the child process to send a third of the messages";
    let waited = AssertUnwindSafe(eventually(what, Duration::from_secs(60), || async {
        let sent = lines(&log).len();
        if sent >= CRASH_MESSAGES / 3 {
            Ok(())
        } else {
            Err(sent)
        }
    }))
    .catch_unwind()
    .await;
    // SIGKILL, by the child's own pid (also when the wait timed out).
    child.kill().unwrap();
    child.wait().unwrap();
    if let Err(timed_out) = waited {
        std::panic::resume_unwind(timed_out);
    }
    let before = lines(&log);
    assert!(
        before.len() < CRASH_MESSAGES,
        "killed too late to test anything"
    );
    let in_flight = queue.list(&session, &[QueueStatus::Sending]).await.unwrap();
    assert!(in_flight.len() <= 1, "one worker has one message in flight");

    // Restart: a new worker finishes the queue.
    let m = Messaging::new(
        queue.clone(),
        fast_limiter(),
        Arc::new(FileSender {
            path: log.clone(),
            delay: Duration::ZERO,
        }),
        Arc::new(SystemClock),
        fast_config(),
    );
    m.start(&session);
    for id in &ids {
        wait_status(&queue, *id, QueueStatus::Sent).await;
    }
    m.shutdown().await;

    let after = lines(&log);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for l in &after {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    for i in 0..CRASH_MESSAGES {
        assert!(
            counts.contains_key(format!("m{i}").as_str()),
            "m{i} was lost"
        );
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.len() <= 1 && twice.iter().all(|(_, n)| **n == 2),
        "{twice:?}"
    );
    if let Some((body, _)) = twice.first() {
        assert_eq!(
            in_flight.first().map(|m| m.body.as_str()),
            Some(**body),
            "only the message in flight at the kill may be sent twice"
        );
    }
    eprintln!(
        "kill -9 after {} sends: {} message(s) in flight, {} sent twice",
        before.len(),
        in_flight.len(),
        twice.len()
    );
}

#[tokio::test]
async fn kill_9_while_sending_on_sqlite_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("queue.db").display());
    let stores = store::open(&url).await.unwrap();
    create_sessions(&stores, &[sid(CRASH_SESSION)]).await;
    kill_mid_send(&url, "", stores.messages.clone()).await;
}

#[tokio::test]
async fn kill_9_while_sending_on_redis_loses_nothing() {
    with_redis("kill", |conn, prefix| async move {
        let queue = Arc::new(RedisMessageQueue::new(conn, &prefix));
        kill_mid_send(&redis_url(), &prefix, queue).await;
    })
    .await;
}

#[tokio::test]
async fn kill_9_while_sending_on_postgres_loses_nothing() {
    with_postgres(|stores, url| async move {
        create_sessions(&stores, &[sid(CRASH_SESSION)]).await;
        kill_mid_send(&url, "", stores.messages.clone()).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Figures, not assertions. Run with:
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//     cargo test -p whatsapp-server --test messaging_backends -- --ignored --nocapture throughput
// Prints the mean latency of each operation (one caller, sequential) and writes the figures
// to target/messaging-throughput.txt.

async fn measure_queue(backend: &str, q: &dyn MessageQueue) -> String {
    const N: usize = 300;
    let session = sid("bench");
    let mut out = String::new();
    let mut line = |op: &str, elapsed: Duration| {
        let l = format!(
            "{backend:9} {op:22} {N:4} ops  {:8.1} µs/op\n",
            elapsed.as_secs_f64() * 1e6 / N as f64
        );
        print!("{l}");
        out.push_str(&l);
    };
    let start = std::time::Instant::now();
    for i in 0..N {
        q.enqueue(
            &new_message(&session, Some(&format!("k{i}")), "bench", Utc::now()),
            Utc::now(),
        )
        .await
        .unwrap();
    }
    line("enqueue (with key)", start.elapsed());
    let start = std::time::Instant::now();
    for _ in 0..N {
        let m = q.take_next(&session, Utc::now()).await.unwrap().unwrap();
        q.mark_sent(m.id, &MessageId("w".into()), Utc::now())
            .await
            .unwrap();
    }
    line("take_next + mark_sent", start.elapsed());
    out
}

#[tokio::test]
#[ignore = "prints figures; run explicitly"]
async fn throughput() {
    let mut report = String::new();
    let dir = tempfile::tempdir().unwrap();
    let stores = sqlite(dir.path()).await;
    create_sessions(&stores, &[sid("bench")]).await;
    report.push_str(&measure_queue("sqlite", stores.messages.as_ref()).await);
    let pg = Arc::new(Mutex::new(String::new()));
    let pg_out = pg.clone();
    with_postgres(|stores, _url| async move {
        create_sessions(&stores, &[sid("bench")]).await;
        let figures = measure_queue("postgres", stores.messages.as_ref()).await;
        pg_out.lock().unwrap().push_str(&figures);
    })
    .await;
    report.push_str(&pg.lock().unwrap());
    let redis_out = Arc::new(Mutex::new(String::new()));
    let out = redis_out.clone();
    with_redis("bench", |conn, prefix| async move {
        let q = RedisMessageQueue::new(conn.clone(), &prefix);
        let mut figures = measure_queue("redis", &q).await;
        let limiter = RedisRateLimiter::new(conn, &prefix, Pacing::default()).unwrap();
        const N: u32 = 1000;
        let start = std::time::Instant::now();
        for i in 0..N {
            limiter.try_acquire(&format!("s{}", i % 50)).await.unwrap();
        }
        let l = format!(
            "redis     {:22} {N:4} ops  {:8.1} µs/op\n",
            "rate limiter decision",
            start.elapsed().as_secs_f64() * 1e6 / f64::from(N)
        );
        print!("{l}");
        figures.push_str(&l);
        out.lock().unwrap().push_str(&figures);
    })
    .await;
    report.push_str(&redis_out.lock().unwrap());
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/messaging-throughput.txt");
    std::fs::write(&target, report).unwrap();
    println!("written to {}", target.display());
}

#[tokio::test]
async fn backends_follow_redis_url_and_enqueue_checks_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let stores = sqlite(dir.path()).await;
    create_sessions(&stores, &[sid("alice")]).await;
    let (queue, limiter) =
        whatsapp_server::messaging::backends(None, "x", stores.messages.clone(), Pacing::default())
            .unwrap();
    assert!(format!("{queue:?}").contains("Sqlite"), "{queue:?}");
    assert!(
        format!("{limiter:?}").contains("LocalRateLimiter"),
        "{limiter:?}"
    );

    with_redis("backends", |conn, prefix| async move {
        let (queue, limiter) = whatsapp_server::messaging::backends(
            Some(conn),
            &prefix,
            stores.messages.clone(),
            Pacing::default(),
        )
        .unwrap();
        assert!(format!("{queue:?}").contains("RedisMessageQueue"));
        assert!(format!("{limiter:?}").contains("RedisRateLimiter"));
        let lookup = FakeBrowser::new(1);
        let m = Messaging::new(
            queue.clone(),
            limiter,
            Arc::new(BrowserSender::new(move |id| lookup.session(id))),
            Arc::new(SystemClock),
            fast_config(),
        )
        .with_sessions(stores.sessions.clone());
        let alice = sid("alice");
        assert!(m.enqueue(&alice, &to(), "hi", None).await.unwrap().created);
        assert!(matches!(
            m.enqueue(&sid("nobody"), &to(), "hi", None).await,
            Err(Error::NotFound { .. })
        ));
        assert!(queue.list(&sid("nobody"), &[]).await.unwrap().is_empty());
        for (text, key) in [
            ("   ", None),
            ("hi", Some("")),
            ("hi", Some(&*"k".repeat(201))),
        ] {
            assert!(
                matches!(
                    m.enqueue(&alice, &to(), text, key).await,
                    Err(Error::InvalidInput { .. })
                ),
                "{text:?} {key:?}"
            );
        }
        assert_eq!(queue.list(&alice, &[]).await.unwrap().len(), 1);
    })
    .await;
}
