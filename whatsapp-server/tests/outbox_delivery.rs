//! The outbox end to end: real databases (a SQLite file per test, a fresh Postgres database
//! per test) and real HTTP receivers on 127.0.0.1 that answer 200, 4xx, 5xx or hang.
//!
//! The Postgres tests need `DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`,
//! a role that may `CREATE DATABASE`); without it they fail, saying so:
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo test -p whatsapp-server --test outbox_delivery
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;
use whatsapp_core::testing::{FakeClock, Probe, eventually};
use whatsapp_core::{
    Backoff, Clock, EmailAddress, Error, Jitter, Notification, NotificationKind, Notifier,
    SystemClock, TenantId,
};
use whatsapp_server::notify::HttpEmailNotifier;
use whatsapp_server::outbox::webhook::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use whatsapp_server::outbox::{
    Outbox, OutboxConfig, OutboxNotifier, OutboxWorker, SignatureError, StaticWebhookDirectory,
    WebhookAllowList, WebhookEndpoint, WebhookEvent, content_key, verify_signature,
};
use whatsapp_storage::store::{self, OutboxItem, OutboxKind, OutboxStatus, OutboxStore};

// ---------------------------------------------------------------------------------------------
// A scriptable HTTP receiver.

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// Holds the request until [`Receiver::release`], then answers 200.
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Hit {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

struct ReceiverState {
    hits: Mutex<Vec<Hit>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    released: watch::Sender<bool>,
}

/// An HTTP server on 127.0.0.1 that records every request and answers as scripted: first the
/// replies queued with [`Receiver::script`], then the default.
#[derive(Clone)]
struct Receiver {
    state: Arc<ReceiverState>,
    base: Url,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    state.hits.lock().unwrap().push(Hit {
        path: uri.path().to_owned(),
        headers,
        body,
    });
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(*state.default.lock().unwrap());
    match reply {
        Reply::Status(s) => StatusCode::from_u16(s).unwrap(),
        Reply::Hang => {
            let mut released = state.released.subscribe();
            let _ = released.wait_for(|r| *r).await;
            StatusCode::OK
        }
    }
}

impl Receiver {
    async fn start(default: Reply) -> Self {
        let state = Arc::new(ReceiverState {
            hits: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(default),
            released: watch::channel(false).0,
        });
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            state,
            base: Url::parse(&format!("http://{addr}/")).unwrap(),
        }
    }

    fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    fn set_default(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = reply;
    }

    fn release(&self) {
        self.state.released.send_replace(true);
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        let hits = self.state.hits.lock().unwrap();
        hits.iter().filter(|h| h.path == path).cloned().collect()
    }

    /// The e-mail sender for this receiver (`/api/send-email`).
    fn emails(&self) -> Arc<dyn Notifier> {
        Arc::new(HttpEmailNotifier::for_frontend(&self.base, Duration::from_millis(500)).unwrap())
    }

    fn endpoint(&self, path: &str, secret: &str) -> WebhookEndpoint {
        WebhookEndpoint::new(self.base.join(path).unwrap(), secret).unwrap()
    }
}

const EMAIL_PATH: &str = "/api/send-email";

// ---------------------------------------------------------------------------------------------
// Helpers.

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap()
}

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn email(session: &str) -> Notification {
    Notification {
        kind: NotificationKind::WhatsappDisconnected,
        to: EmailAddress::new("owner@example.com").unwrap(),
        data: serde_json::json!({"session_id": session}),
    }
}

/// Short waits so the tests run fast; the real-time tests never assert on how long anything
/// took. The receivers listen on 127.0.0.1, an internal address: it is allowed.
fn config(max_attempts: u32) -> OutboxConfig {
    OutboxConfig {
        poll_interval: Duration::from_millis(20),
        concurrency: 4,
        request_timeout: Duration::from_millis(500),
        claim_hold: Duration::from_secs(10),
        retry: Backoff {
            initial: Duration::from_millis(20),
            factor: 2.0,
            max: Duration::from_millis(100),
            max_attempts,
            jitter: Jitter::Shorten(0.5),
        },
        jitter_seed: Some(7),
        webhook_allow: WebhookAllowList::parse("127.0.0.1").unwrap(),
    }
}

async fn open(url: &str) -> Arc<dyn OutboxStore> {
    store::open(url).await.unwrap().outbox
}

/// A worker running in the background.
struct Running {
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

impl Running {
    fn start(
        store: Arc<dyn OutboxStore>,
        emails: Arc<dyn Notifier>,
        webhooks: StaticWebhookDirectory,
        clock: Arc<dyn Clock>,
        config: OutboxConfig,
    ) -> Self {
        let worker = OutboxWorker::new(store, emails, clock, config)
            .unwrap()
            .with_webhooks(Arc::new(webhooks));
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(worker.run(cancel.clone()));
        Running { cancel, handle }
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("the worker stops when cancelled")
            .unwrap();
    }
}

/// Polls `check` until it succeeds; fails after 30 s, naming what it waited for and the last
/// observation.
async fn wait_for<P: Probe, Fut: Future<Output = P>>(
    what: &str,
    check: impl FnMut() -> Fut,
) -> P::Output {
    eventually(what, Duration::from_secs(30), check).await
}

async fn get(store: &Arc<dyn OutboxStore>, id: i64) -> OutboxItem {
    store.get(id).await.unwrap().expect("item exists")
}

/// Waits until the item has the status and returns it.
async fn wait_status(store: &Arc<dyn OutboxStore>, id: i64, status: OutboxStatus) -> OutboxItem {
    wait_for(&format!("item {id} to be {status}"), || async {
        let item = get(store, id).await;
        if item.status == status {
            Ok(item)
        } else {
            Err(item)
        }
    })
    .await
}

/// Waits until the item failed at least `attempts` times, the last time with an error
/// containing `error`, and is waiting for a retry.
async fn wait_failed(
    store: &Arc<dyn OutboxStore>,
    id: i64,
    attempts: u32,
    error: &str,
) -> OutboxItem {
    wait_for(
        &format!("item {id} to fail {attempts} times, last with {error:?}"),
        || async {
            let item = get(store, id).await;
            let failed = item.status == OutboxStatus::Pending
                && item.attempts >= attempts
                && item
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.contains(error));
            if failed { Ok(item) } else { Err(item) }
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Cases, run against both backends. Each gets the URL of an empty database.

/// 200: each item is POSTed once, e-mails as `{"type","to","data"}`, webhooks signed.
async fn delivers_once_and_signs(url: &str) {
    let store = open(url).await;
    let rx = Receiver::start(Reply::Status(200)).await;
    let outbox = Outbox::new(Arc::clone(&store), Arc::new(SystemClock));
    let notifier = OutboxNotifier::new(outbox.clone()).dedupe_by_content();

    // The same notification twice (a caller's retry) is stored once.
    notifier.notify(&email("alice")).await.unwrap();
    notifier.notify(&email("alice")).await.unwrap();
    let mail = outbox
        .enqueue_email(&email("alice"), Some(content_key(&email("alice"))))
        .await
        .unwrap();
    assert_eq!(mail.status, OutboxStatus::Pending);
    assert_eq!(mail.attempts, 0, "the notifier stored it once: {mail:?}");
    let event = WebhookEvent::new("session.ready", serde_json::json!({"session_id": "alice"}));
    let hook = outbox
        .enqueue_webhook(&tenant("acme"), &event)
        .await
        .unwrap();
    assert_eq!(
        outbox
            .enqueue_webhook(&tenant("acme"), &event)
            .await
            .unwrap()
            .id,
        hook.id,
        "the same event id is stored once"
    );
    // A tenant without an endpoint: refused for good, not retried.
    let orphan = outbox
        .enqueue_webhook(
            &tenant("nobody"),
            &WebhookEvent::new("x", serde_json::json!({})),
        )
        .await
        .unwrap();

    let dir = StaticWebhookDirectory::new().with(tenant("acme"), rx.endpoint("hook", "whsec_acme"));
    let worker = Running::start(
        Arc::clone(&store),
        rx.emails(),
        dir,
        Arc::new(SystemClock),
        config(5),
    );
    let delivered_hook = wait_status(&store, hook.id, OutboxStatus::Delivered).await;
    let mail = wait_status(&store, mail.id, OutboxStatus::Delivered).await;
    let dead = wait_status(&store, orphan.id, OutboxStatus::Dead).await;
    worker.stop().await;

    assert_eq!((mail.attempts, delivered_hook.attempts), (1, 1));
    assert!(mail.delivered_at.is_some() && mail.last_error.is_none());
    assert_eq!(dead.attempts, 1);
    assert!(
        dead.last_error.as_deref().unwrap().contains("nobody"),
        "{dead:?}"
    );

    let mails = rx.hits(EMAIL_PATH);
    assert_eq!(mails.len(), 1, "one e-mail POST");
    assert_eq!(
        mails[0].json(),
        serde_json::json!({"type": "whatsapp_disconnected", "to": "owner@example.com", "data": {"session_id": "alice"}})
    );

    let hooks = rx.hits("/hook");
    assert_eq!(hooks.len(), 1, "one webhook POST");
    let h = &hooks[0];
    assert_eq!(h.header(HEADER_ID), event.id);
    assert_eq!(h.header("content-type"), "application/json");
    let body = h.json();
    assert_eq!(body["id"], event.id.as_str());
    assert_eq!(body["type"], "session.ready");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["data"], serde_json::json!({"session_id": "alice"}));

    // The receiver's side: the real request verifies; a changed body, another secret or an
    // old timestamp does not.
    let ts = h.header(HEADER_TIMESTAMP);
    let sig = h.header(HEADER_SIGNATURE);
    let window = Duration::from_secs(300);
    let now = Utc::now();
    assert_eq!(
        verify_signature("whsec_acme", &ts, &h.body, &sig, now, window),
        Ok(())
    );
    let mut tampered = h.body.to_vec();
    let last = tampered.len() - 2;
    tampered[last] ^= 1;
    assert_eq!(
        verify_signature("whsec_acme", &ts, &tampered, &sig, now, window),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_signature("whsec_other", &ts, &h.body, &sig, now, window),
        Err(SignatureError::Mismatch)
    );
    let later = now + chrono::TimeDelta::seconds(301);
    assert_eq!(
        verify_signature("whsec_acme", &ts, &h.body, &sig, later, window),
        Err(SignatureError::Stale)
    );
}

/// 500, then 503, then 200: retried after the backoff (a stopped clock shows the item is not
/// retried before its time), then delivered; every webhook attempt has the same id and body.
async fn retries_server_errors_with_backoff(url: &str) {
    let store = open(url).await;
    let rx = Receiver::start(Reply::Status(200)).await;
    rx.script([Reply::Status(500), Reply::Status(503)]);
    let clock = FakeClock::new(t0());
    let outbox = Outbox::new(Arc::clone(&store), Arc::new(clock.clone()));
    let event = WebhookEvent::new("session.disconnected", serde_json::json!({"n": 1}));
    let hook = outbox
        .enqueue_webhook(&tenant("acme"), &event)
        .await
        .unwrap();

    let mut cfg = config(5);
    cfg.retry = Backoff {
        initial: Duration::from_secs(10),
        factor: 2.0,
        max: Duration::from_secs(60),
        max_attempts: 5,
        jitter: Jitter::Shorten(0.5),
    };
    let dir = StaticWebhookDirectory::new().with(tenant("acme"), rx.endpoint("hook", "whsec_acme"));
    let worker = Running::start(
        Arc::clone(&store),
        rx.emails(),
        dir,
        Arc::new(clock.clone()),
        cfg,
    );

    let first = wait_failed(&store, hook.id, 1, "500").await;
    let wait = first.next_attempt_at - t0();
    assert!(
        wait >= chrono::TimeDelta::seconds(5) && wait <= chrono::TimeDelta::seconds(10),
        "first backoff within [base/2, base]: {wait}"
    );
    // The stored clock stands still: the item is not due, however long the worker polls.
    clock.advance(Duration::from_secs(10));
    let second = wait_failed(&store, hook.id, 2, "503").await;
    let wait = second.next_attempt_at - clock.now();
    assert!(
        wait >= chrono::TimeDelta::seconds(10) && wait <= chrono::TimeDelta::seconds(20),
        "second backoff doubles: {wait}"
    );
    assert_eq!(
        rx.hits("/hook").len(),
        2,
        "no retry before the backoff ran out"
    );
    clock.advance(Duration::from_secs(20));
    let done = wait_status(&store, hook.id, OutboxStatus::Delivered).await;
    worker.stop().await;

    assert_eq!(done.attempts, 3);
    assert_eq!(
        done.delivered_at,
        Some(t0() + chrono::TimeDelta::seconds(30))
    );
    let hits = rx.hits("/hook");
    assert_eq!(hits.len(), 3);
    for h in &hits {
        assert_eq!(h.header(HEADER_ID), event.id);
        assert_eq!(h.body, hits[0].body);
    }
}

/// Always 500: dead after N attempts; replay queues a copy that is delivered once the
/// endpoint recovers, keeping the webhook's event id.
async fn dead_after_n_attempts_then_replayed(url: &str) {
    let store = open(url).await;
    let rx = Receiver::start(Reply::Status(500)).await;
    let outbox = Outbox::new(Arc::clone(&store), Arc::new(SystemClock));
    let mail = outbox.enqueue_email(&email("bob"), None).await.unwrap();
    let event = WebhookEvent::new("session.error", serde_json::json!({})).with_id("evt_fixed_1");
    let hook = outbox
        .enqueue_webhook(&tenant("acme"), &event)
        .await
        .unwrap();
    let dir = StaticWebhookDirectory::new().with(tenant("acme"), rx.endpoint("hook", "whsec_acme"));
    let worker = Running::start(
        Arc::clone(&store),
        rx.emails(),
        dir,
        Arc::new(SystemClock),
        config(3),
    );

    let dead_mail = wait_status(&store, mail.id, OutboxStatus::Dead).await;
    let dead_hook = wait_status(&store, hook.id, OutboxStatus::Dead).await;
    assert_eq!((dead_mail.attempts, dead_hook.attempts), (3, 3));
    assert!(dead_mail.last_error.as_deref().unwrap().contains("500"));
    assert_eq!(rx.hits(EMAIL_PATH).len(), 3);
    assert_eq!(rx.hits("/hook").len(), 3);

    // Only dead items replay; a missing one is not found.
    assert!(matches!(
        outbox.replay(i64::MAX).await,
        Err(Error::NotFound { .. })
    ));
    rx.set_default(Reply::Status(200));
    let again = outbox.replay(mail.id).await.unwrap();
    assert_ne!(again.id, mail.id);
    assert_eq!(again.status, OutboxStatus::Pending);
    assert_eq!(again.payload, dead_mail.payload);
    assert_eq!(
        outbox.replay(mail.id).await.unwrap().id,
        again.id,
        "replaying twice queues one copy"
    );
    let again_hook = outbox.replay(hook.id).await.unwrap();
    assert_eq!(again_hook.kind, OutboxKind::Webhook);
    wait_status(&store, again.id, OutboxStatus::Delivered).await;
    wait_status(&store, again_hook.id, OutboxStatus::Delivered).await;
    assert!(matches!(
        outbox.replay(again.id).await,
        Err(Error::Conflict(_))
    ));
    worker.stop().await;

    assert_eq!(get(&store, mail.id).await.status, OutboxStatus::Dead);
    let hooks = rx.hits("/hook");
    assert_eq!(hooks.len(), 4);
    assert!(hooks.iter().all(|h| h.header(HEADER_ID) == "evt_fixed_1"));
}

/// With a poll interval of an hour, items still go out at once: enqueueing wakes the worker.
async fn enqueueing_wakes_an_idle_worker(url: &str) {
    let store = open(url).await;
    let rx = Receiver::start(Reply::Status(200)).await;
    let mut cfg = config(5);
    cfg.poll_interval = Duration::from_secs(3600);
    let worker =
        OutboxWorker::new(Arc::clone(&store), rx.emails(), Arc::new(SystemClock), cfg).unwrap();
    let outbox = Outbox::new(Arc::clone(&store), Arc::new(SystemClock)).with_waker(worker.waker());
    let cancel = CancellationToken::new();
    let running = Running {
        cancel: cancel.clone(),
        handle: tokio::spawn(worker.run(cancel)),
    };
    for i in 0..3 {
        let item = outbox
            .enqueue_email(&email(&format!("wake-{i}")), None)
            .await
            .unwrap();
        wait_status(&store, item.id, OutboxStatus::Delivered).await;
    }
    running.stop().await;
    assert_eq!(rx.hits(EMAIL_PATH).len(), 3);
}

/// A 4xx is a refusal: dead after one attempt.
async fn client_errors_are_dead_at_once(url: &str) {
    let store = open(url).await;
    let rx = Receiver::start(Reply::Status(422)).await;
    let outbox = Outbox::new(Arc::clone(&store), Arc::new(SystemClock));
    let mail = outbox.enqueue_email(&email("carol"), None).await.unwrap();
    let hook = outbox
        .enqueue_webhook(
            &tenant("acme"),
            &WebhookEvent::new("x", serde_json::json!({})),
        )
        .await
        .unwrap();
    let dir = StaticWebhookDirectory::new().with(tenant("acme"), rx.endpoint("hook", "whsec_acme"));
    let worker = Running::start(
        Arc::clone(&store),
        rx.emails(),
        dir,
        Arc::new(SystemClock),
        config(5),
    );
    let m = wait_status(&store, mail.id, OutboxStatus::Dead).await;
    let h = wait_status(&store, hook.id, OutboxStatus::Dead).await;
    worker.stop().await;
    assert_eq!((m.attempts, h.attempts), (1, 1));
    assert!(h.last_error.as_deref().unwrap().contains("422"), "{h:?}");
    assert_eq!(rx.hits(EMAIL_PATH).len(), 1);
    assert_eq!(rx.hits("/hook").len(), 1);
}

/// A hanging e-mail endpoint and a hanging webhook receiver time out and are retried, while
/// other items keep being delivered; once they answer, they are delivered too.
async fn hanging_endpoints_do_not_block_other_items(url: &str) {
    let store = open(url).await;
    let slow = Receiver::start(Reply::Hang).await;
    let fast = Receiver::start(Reply::Status(200)).await;
    let outbox = Outbox::new(Arc::clone(&store), Arc::new(SystemClock));
    // The slow items first, so they are claimed first.
    let mail = outbox.enqueue_email(&email("dave"), None).await.unwrap();
    let slow_hook = outbox
        .enqueue_webhook(
            &tenant("slow"),
            &WebhookEvent::new("x", serde_json::json!({})),
        )
        .await
        .unwrap();
    let mut fast_ids = Vec::new();
    for i in 0..6 {
        let e = WebhookEvent::new("y", serde_json::json!({ "i": i }));
        fast_ids.push(
            outbox
                .enqueue_webhook(&tenant("fast"), &e)
                .await
                .unwrap()
                .id,
        );
    }
    let dir = StaticWebhookDirectory::new()
        .with(tenant("slow"), slow.endpoint("hook", "whsec_slow"))
        .with(tenant("fast"), fast.endpoint("hook", "whsec_fast"));
    let mut cfg = config(100);
    cfg.concurrency = 3;
    let worker = Running::start(
        Arc::clone(&store),
        slow.emails(),
        dir,
        Arc::new(SystemClock),
        cfg,
    );

    for id in &fast_ids {
        wait_status(&store, *id, OutboxStatus::Delivered).await;
    }
    // Each slow item timed out at least once and was tried again.
    wait_for("a second attempt at the hanging e-mail", async || {
        slow.hits(EMAIL_PATH).len() >= 2
    })
    .await;
    wait_for("a second attempt at the hanging webhook", async || {
        slow.hits("/hook").len() >= 2
    })
    .await;
    for id in [mail.id, slow_hook.id] {
        let item = get(&store, id).await;
        assert_ne!(item.status, OutboxStatus::Delivered, "{item:?}");
        assert!(item.last_error.is_some(), "{item:?}");
    }
    assert_eq!(fast.hits("/hook").len(), fast_ids.len());
    // The keepalive engine's e-mails only write to the database: a hanging endpoint never
    // holds up the session that sends one.
    let notifier = OutboxNotifier::new(outbox.clone());
    tokio::time::timeout(Duration::from_secs(10), notifier.notify(&email("late")))
        .await
        .expect("enqueueing does not wait for the e-mail endpoint")
        .unwrap();

    slow.release();
    wait_status(&store, mail.id, OutboxStatus::Delivered).await;
    wait_status(&store, slow_hook.id, OutboxStatus::Delivered).await;
    worker.stop().await;
}

/// Items queued before any worker ran, items waiting for a retry when the worker stopped, and
/// an item claimed by a worker that died mid-delivery are all delivered by a new worker on a
/// newly opened store.
async fn restarted_worker_delivers_what_was_pending(url: &str) {
    let rx = Receiver::start(Reply::Status(500)).await;
    let dir = || StaticWebhookDirectory::new().with(tenant("acme"), rx.endpoint("hook", "whsec"));
    let (failing, queued, orphan) = {
        let store = open(url).await;
        let outbox = Outbox::new(Arc::clone(&store), Arc::new(SystemClock));
        // Through the notifier, as the keepalive engine sends it; the dedupe key finds it.
        let notifier = OutboxNotifier::new(outbox.clone()).dedupe_by_content();
        notifier.notify(&email("erin")).await.unwrap();
        let failing = outbox
            .enqueue_email(&email("erin"), Some(content_key(&email("erin"))))
            .await
            .unwrap();
        let mut cfg = config(1000);
        cfg.retry.initial = Duration::from_millis(200);
        cfg.retry.max = Duration::from_millis(200);
        let worker = Running::start(
            Arc::clone(&store),
            rx.emails(),
            dir(),
            Arc::new(SystemClock),
            cfg,
        );
        wait_failed(&store, failing.id, 1, "500").await;
        worker.stop().await;
        // A worker that claims an item and dies: the item stays hidden for the hold only.
        let orphan = outbox.enqueue_email(&email("frank"), None).await.unwrap();
        let claimed = wait_for("a claim of the orphan", || async {
            let got = store
                .claim_due(Utc::now(), 10, Duration::from_millis(300))
                .await
                .unwrap();
            got.into_iter().find(|i| i.id == orphan.id)
        })
        .await;
        // Queued while no worker runs.
        let queued = outbox
            .enqueue_webhook(
                &tenant("acme"),
                &WebhookEvent::new("z", serde_json::json!({})),
            )
            .await
            .unwrap();
        assert_eq!(claimed.attempts, 1);
        (failing, queued, orphan)
    };

    rx.set_default(Reply::Status(200));
    let store = open(url).await;
    let worker = Running::start(
        Arc::clone(&store),
        rx.emails(),
        dir(),
        Arc::new(SystemClock),
        config(5),
    );
    let a = wait_status(&store, failing.id, OutboxStatus::Delivered).await;
    let b = wait_status(&store, queued.id, OutboxStatus::Delivered).await;
    let c = wait_status(&store, orphan.id, OutboxStatus::Delivered).await;
    worker.stop().await;
    assert!(a.attempts >= 2, "{a:?}");
    assert_eq!(b.attempts, 1);
    assert!(c.attempts >= 2, "the dead worker's claim counted: {c:?}");
}

/// Waits until the item is no longer pending (delivered or dead) and returns it.
async fn wait_settled(store: &Arc<dyn OutboxStore>, id: i64) -> OutboxItem {
    wait_for(&format!("item {id} to be delivered or dead"), || async {
        let item = get(store, id).await;
        if item.status != OutboxStatus::Pending {
            Ok(item)
        } else {
            Err(item)
        }
    })
    .await
}

/// Without `WEBHOOK_ALLOW_HOSTS` a receiver on loopback is never contacted, whether the URL
/// names the address (`127.0.0.1`, the IPv4-mapped `[::ffff:127.0.0.1]`) or a host name that
/// resolves to it (`localhost`, as a rebinding domain would): each item is dead after one
/// attempt, saying why. With the allow-list the replayed items are delivered; a redirect
/// from an allowed receiver is not followed.
async fn internal_targets_are_refused_by_default(url: &str) {
    let store = open(url).await;
    let rx = Receiver::start(Reply::Status(200)).await;
    let port = rx.base.port().unwrap();
    let outbox = Outbox::new(Arc::clone(&store), Arc::new(SystemClock));
    let targets = [
        (
            "literal",
            format!("http://127.0.0.1:{port}/hook"),
            "127.0.0.1",
        ),
        (
            "named",
            format!("http://localhost:{port}/hook"),
            "localhost",
        ),
        (
            "mapped",
            format!("http://[::ffff:127.0.0.1]:{port}/hook"),
            "127.0.0.1",
        ),
    ];
    let mut dir = StaticWebhookDirectory::new();
    let mut items = Vec::new();
    for (name, target, _) in &targets {
        dir = dir.with(
            tenant(name),
            WebhookEndpoint::new(Url::parse(target).unwrap(), "whsec_x").unwrap(),
        );
        let item = outbox
            .enqueue_webhook(
                &tenant(name),
                &WebhookEvent::new("x", serde_json::json!({})),
            )
            .await
            .unwrap();
        items.push(item.id);
    }
    let mut refusing = config(5);
    refusing.webhook_allow = WebhookAllowList::default();
    let worker = Running::start(
        Arc::clone(&store),
        rx.emails(),
        dir.clone(),
        Arc::new(SystemClock),
        refusing,
    );
    for (id, (name, _, names)) in items.iter().zip(&targets) {
        let item = wait_settled(&store, *id).await;
        assert_eq!(item.status, OutboxStatus::Dead, "{name}: {item:?}");
        assert_eq!(
            item.attempts, 1,
            "{name}: refused once, not retried: {item:?}"
        );
        let error = item.last_error.as_deref().unwrap();
        assert!(
            error.contains("internal")
                && error.contains(names)
                && error.contains("WEBHOOK_ALLOW_HOSTS"),
            "{name}: {error}"
        );
    }
    worker.stop().await;
    assert!(rx.hits("/hook").is_empty(), "the receiver got nothing");

    // The operator allows loopback (by address, and `localhost` by name): delivered.
    // (The IPv4-mapped form is left out: whether it connects depends on the host's IPv6.)
    let redirector = {
        let to = format!("http://127.0.0.1:{port}/redirected");
        let app = axum::Router::new()
            .fallback(async move || (StatusCode::TEMPORARY_REDIRECT, [("location", to.clone())]));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    };
    let dir = dir.with(
        tenant("redirect"),
        WebhookEndpoint::new(
            Url::parse(&format!("http://{redirector}/hook")).unwrap(),
            "whsec_x",
        )
        .unwrap(),
    );
    let mut allowing = config(5);
    allowing.webhook_allow = WebhookAllowList::parse("127.0.0.1, localhost").unwrap();
    let worker = Running::start(
        Arc::clone(&store),
        rx.emails(),
        dir,
        Arc::new(SystemClock),
        allowing,
    );
    for id in &items[..2] {
        let again = outbox.replay(*id).await.unwrap();
        let done = wait_settled(&store, again.id).await;
        assert_eq!(done.status, OutboxStatus::Delivered, "{done:?}");
    }
    let redirected = outbox
        .enqueue_webhook(
            &tenant("redirect"),
            &WebhookEvent::new("x", serde_json::json!({})),
        )
        .await
        .unwrap();
    let dead = wait_settled(&store, redirected.id).await;
    worker.stop().await;
    assert_eq!(dead.status, OutboxStatus::Dead, "{dead:?}");
    assert!(
        dead.last_error.as_deref().unwrap().contains("307"),
        "{dead:?}"
    );
    assert_eq!(rx.hits("/hook").len(), 2);
    assert!(
        rx.hits("/redirected").is_empty(),
        "the redirect was not followed"
    );
}

// ---------------------------------------------------------------------------------------------
// SQLite: a file per test.

mod sqlite {
    fn db() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("outbox.db").display());
        (dir, url)
    }

    #[tokio::test]
    async fn delivers_once_and_signs() {
        let (_d, url) = db();
        super::delivers_once_and_signs(&url).await;
    }

    #[tokio::test]
    async fn retries_server_errors_with_backoff() {
        let (_d, url) = db();
        super::retries_server_errors_with_backoff(&url).await;
    }

    #[tokio::test]
    async fn dead_after_n_attempts_then_replayed() {
        let (_d, url) = db();
        super::dead_after_n_attempts_then_replayed(&url).await;
    }

    #[tokio::test]
    async fn enqueueing_wakes_an_idle_worker() {
        let (_d, url) = db();
        super::enqueueing_wakes_an_idle_worker(&url).await;
    }

    #[tokio::test]
    async fn client_errors_are_dead_at_once() {
        let (_d, url) = db();
        super::client_errors_are_dead_at_once(&url).await;
    }

    #[tokio::test]
    async fn hanging_endpoints_do_not_block_other_items() {
        let (_d, url) = db();
        super::hanging_endpoints_do_not_block_other_items(&url).await;
    }

    #[tokio::test]
    async fn restarted_worker_delivers_what_was_pending() {
        let (_d, url) = db();
        super::restarted_worker_delivers_what_was_pending(&url).await;
    }

    // The target checks do not depend on the database: SQLite only.
    #[tokio::test]
    async fn internal_targets_are_refused_by_default() {
        let (_d, url) = db();
        super::internal_targets_are_refused_by_default(&url).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Postgres: a uniquely named database per test, dropped afterwards (also when the test fails).

mod postgres {
    use super::*;

    async fn with_database<F, Fut>(test: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = ()>,
    {
        whatsapp_tests::postgres::with_database("wa_outbox_test", test).await
    }

    #[tokio::test]
    async fn delivers_once_and_signs() {
        with_database(async |url| super::delivers_once_and_signs(&url).await).await;
    }

    #[tokio::test]
    async fn retries_server_errors_with_backoff() {
        with_database(async |url| super::retries_server_errors_with_backoff(&url).await).await;
    }

    #[tokio::test]
    async fn dead_after_n_attempts_then_replayed() {
        with_database(async |url| super::dead_after_n_attempts_then_replayed(&url).await).await;
    }

    #[tokio::test]
    async fn enqueueing_wakes_an_idle_worker() {
        with_database(async |url| super::enqueueing_wakes_an_idle_worker(&url).await).await;
    }

    #[tokio::test]
    async fn client_errors_are_dead_at_once() {
        with_database(async |url| super::client_errors_are_dead_at_once(&url).await).await;
    }

    #[tokio::test]
    async fn hanging_endpoints_do_not_block_other_items() {
        with_database(async |url| super::hanging_endpoints_do_not_block_other_items(&url).await)
            .await;
    }

    #[tokio::test]
    async fn restarted_worker_delivers_what_was_pending() {
        with_database(async |url| super::restarted_worker_delivers_what_was_pending(&url).await)
            .await;
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput, not a pass/fail test:
//
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//     cargo test -p whatsapp-server --test outbox_delivery -- --ignored --nocapture throughput
//
// Prints how fast e-mails are enqueued (one caller, sequential) and delivered (one worker,
// 16 in flight, a receiver answering 200 at once), and writes the figures to
// target/outbox-throughput.txt.

async fn measure(backend: &str, url: &str) -> String {
    const N: usize = 500;
    let store = open(url).await;
    let rx = Receiver::start(Reply::Status(200)).await;
    let outbox = Outbox::new(Arc::clone(&store), Arc::new(SystemClock));
    let start = std::time::Instant::now();
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        let item = outbox
            .enqueue_email(&email(&format!("bench-{i}")), None)
            .await
            .unwrap();
        ids.push(item.id);
    }
    let enqueue = start.elapsed();
    let mut cfg = config(5);
    cfg.concurrency = 16;
    let start = std::time::Instant::now();
    let worker = Running::start(
        Arc::clone(&store),
        rx.emails(),
        StaticWebhookDirectory::new(),
        Arc::new(SystemClock),
        cfg,
    );
    for id in &ids {
        wait_status(&store, *id, OutboxStatus::Delivered).await;
    }
    let deliver = start.elapsed();
    worker.stop().await;
    assert_eq!(rx.hits(EMAIL_PATH).len(), N);
    let line = format!(
        "{backend:8} enqueue {N} e-mails: {:7.1} µs each | deliver {N} (16 in flight): {:7.0} e-mails/s\n",
        enqueue.as_secs_f64() * 1e6 / N as f64,
        N as f64 / deliver.as_secs_f64(),
    );
    print!("{line}");
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints figures; run explicitly with --ignored"]
async fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mut report = measure("sqlite", &sqlite_url).await;
    let line = whatsapp_tests::postgres::with_database("wa_outbox_bench", async |url| {
        measure("postgres", &url).await
    })
    .await;
    report.push_str(&line);
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("outbox-throughput.txt"), report).unwrap();
}
