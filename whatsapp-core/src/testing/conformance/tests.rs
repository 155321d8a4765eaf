//! The suites against the in-memory implementations, and the suites against broken ones
//! (a suite that cannot fail is a defect).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt;

use super::{backup_sink, browser_driver, notifier, session_store, unique_token};
use crate::backup::{BackupKey, BackupSink, ByteStream, ObjectMeta, SinkCapabilities};
use crate::driver::{BrowserDriver, BrowserSession, DriverEvent, LaunchSpec};
use crate::error::Result;
use crate::notify::{Notification, Notifier};
use crate::testing::{
    FakeBrowser, FakeClock, InMemorySessionStore, MemoryBackupSink, RecordingNotifier,
};
use crate::types::{
    AccountInfo, ConnectionState, MessageId, PhoneNumber, QrPayload, SessionId, Wid,
};

#[tokio::test]
async fn in_memory_store_passes_the_suite() {
    let store = InMemorySessionStore::new();
    session_store::run_all(&store).await;
    assert!(
        store.is_empty(),
        "the cases clean up: {:?}",
        store.records()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_store_passes_the_suite_on_a_shared_store() {
    // Cases must not step on each other when several runs share one backend.
    let store = InMemorySessionStore::new();
    let a = tokio::spawn({
        let store = store.clone();
        async move { session_store::run_all(&store).await }
    });
    session_store::run_all(&store).await;
    a.await.unwrap();
}

#[tokio::test]
async fn memory_sink_passes_the_suite() {
    let sink = MemoryBackupSink::new();
    backup_sink::run_all(&sink).await;
    assert!(
        sink.keys().is_empty(),
        "the cases clean up: {:?}",
        sink.keys()
    );
}

#[tokio::test]
async fn memory_sink_without_list_or_delete_passes_the_suite() {
    for (list, delete) in [(false, true), (true, false), (false, false)] {
        let sink = MemoryBackupSink::new().with_capabilities(SinkCapabilities { list, delete });
        // The cases that depend on capabilities (run_all adds only the 20 MiB case).
        backup_sink::capabilities_are_honest(&sink).await;
        backup_sink::list_prefix_ordered(&sink).await;
        backup_sink::delete_idempotent(&sink).await;
        backup_sink::put_overwrites(&sink).await;
        backup_sink::failed_put_leaves_previous(&sink).await;
        backup_sink::readers_never_see_a_partial_put(&sink).await;
    }
}

#[tokio::test]
async fn memory_sink_with_a_fake_clock_passes_the_suite() {
    let clock = FakeClock::new("2026-03-28T02:00:00Z".parse().unwrap());
    backup_sink::run_all(&MemoryBackupSink::with_clock(Arc::new(clock))).await;
}

#[test]
fn unique_tokens_fit_ids_and_differ() {
    let a = unique_token();
    let b = unique_token();
    assert_ne!(a, b);
    assert!(a.len() <= 24, "{a}");
    assert!(
        a.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );
}

/// A sink that shows partial objects: the suite must catch it.
#[derive(Debug, Default)]
struct NonAtomicSink(MemoryBackupSink);

#[async_trait]
impl BackupSink for NonAtomicSink {
    fn name(&self) -> &'static str {
        "non-atomic"
    }
    fn capabilities(&self) -> SinkCapabilities {
        self.0.capabilities()
    }
    async fn put(&self, key: &BackupKey, mut body: ByteStream) -> Result<ObjectMeta> {
        use futures::StreamExt;
        let mut buf = Vec::new();
        self.0.insert(key.clone(), Vec::new(), chrono::Utc::now());
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk?);
            // Writes in place as it goes: a failure leaves a partial object.
            self.0.insert(key.clone(), buf.clone(), chrono::Utc::now());
        }
        self.0.head(key).await
    }
    async fn get(&self, key: &BackupKey) -> Result<ByteStream> {
        self.0.get(key).await
    }
    async fn head(&self, key: &BackupKey) -> Result<ObjectMeta> {
        self.0.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.0.list(prefix).await
    }
    async fn delete(&self, key: &BackupKey) -> Result<()> {
        self.0.delete(key).await
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[tokio::test]
async fn the_sink_suite_names_the_broken_promises() {
    let err = tokio::spawn(async { backup_sink::run_all(&NonAtomicSink::default()).await })
        .await
        .expect_err("a non-atomic sink must fail the suite");
    let msg = panic_text(err);
    assert!(
        msg.contains("backup_sink::failed_put_leaves_previous"),
        "{msg}"
    );
    assert!(
        msg.contains("backup_sink::readers_never_see_a_partial_put"),
        "{msg}"
    );
    assert!(!msg.contains("backup_sink::put_get_round_trip"), "{msg}");
}

/// A store whose list is unordered and whose transition is not a compare-and-set.
#[derive(Debug, Default)]
struct SloppyStore(InMemorySessionStore);

#[async_trait]
impl crate::store::SessionStore for SloppyStore {
    async fn create(&self, record: &crate::types::SessionRecord) -> Result<()> {
        self.0.create(record).await
    }
    async fn get(
        &self,
        id: &crate::types::SessionId,
    ) -> Result<Option<crate::types::SessionRecord>> {
        self.0.get(id).await
    }
    async fn list(
        &self,
        filter: &crate::types::SessionFilter,
    ) -> Result<Vec<crate::types::SessionRecord>> {
        let mut v = self.0.list(filter).await?;
        v.reverse();
        Ok(v)
    }
    async fn update(
        &self,
        id: &crate::types::SessionId,
        patch: &crate::types::SessionPatch,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::types::SessionRecord> {
        self.0.update(id, patch, now).await
    }
    async fn transition(
        &self,
        id: &crate::types::SessionId,
        _from: &[crate::types::SessionStatus],
        to: crate::types::SessionStatus,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::types::SessionRecord> {
        self.0.transition(id, &[], to, now).await
    }
    async fn claim_lease(
        &self,
        id: &crate::types::SessionId,
        node: &crate::types::NodeId,
        now: chrono::DateTime<chrono::Utc>,
        ttl: std::time::Duration,
    ) -> Result<crate::types::Lease> {
        self.0.claim_lease(id, node, now, ttl).await
    }
    async fn release_lease(
        &self,
        id: &crate::types::SessionId,
        node: &crate::types::NodeId,
    ) -> Result<()> {
        self.0.release_lease(id, node).await
    }
    async fn delete(&self, id: &crate::types::SessionId) -> Result<bool> {
        self.0.delete(id).await
    }
}

#[tokio::test]
async fn the_store_suite_names_the_broken_promises() {
    let err = tokio::spawn(async { session_store::run_all(&SloppyStore::default()).await })
        .await
        .expect_err("a sloppy store must fail the suite");
    let msg = panic_text(err);
    for case in [
        "session_store::list_filters_and_orders",
        "session_store::transition_is_compare_and_set",
        "session_store::concurrent_transitions_one_wins",
    ] {
        assert!(msg.contains(case), "{case} missing from: {msg}");
    }
    assert!(
        !msg.contains("session_store::lease_claim_renew_expire_release"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// Notifier

/// The receiving end of a [`RecordingNotifier`]: what it recorded; it can fail transiently.
#[derive(Debug, Clone, Default)]
struct RecordingEnd(RecordingNotifier);

#[async_trait]
impl notifier::NotifierEnd for RecordingEnd {
    async fn accepted(&self) -> Vec<notifier::Received> {
        self.0.sent().iter().map(notifier::Received::of).collect()
    }

    async fn inject(&self, fault: notifier::Fault) -> bool {
        match fault {
            notifier::Fault::Unavailable => {
                self.0.fail_next(1);
                true
            }
            // The recorder only fails transiently, and never hangs.
            notifier::Fault::Refused | notifier::Fault::Hang => false,
        }
    }

    fn time_limit(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
}

#[tokio::test]
async fn recording_notifier_passes_the_suite() {
    let end = RecordingEnd::default();
    notifier::run_all(&end.0, &end).await;
    assert!(!end.0.sent().is_empty());
}

/// A notifier that "helpfully" swallows a notification it already delivered.
#[derive(Debug, Default)]
struct DedupingNotifier {
    inner: RecordingNotifier,
    seen: std::sync::Mutex<Vec<Notification>>,
}

#[async_trait]
impl Notifier for DedupingNotifier {
    async fn notify(&self, n: &Notification) -> Result<()> {
        if self.seen.lock().unwrap().contains(n) {
            return Ok(());
        }
        self.inner.notify(n).await?;
        self.seen.lock().unwrap().push(n.clone());
        Ok(())
    }
}

#[tokio::test]
async fn the_notifier_suite_names_the_broken_promise() {
    let broken = DedupingNotifier::default();
    let end = RecordingEnd(broken.inner.clone());
    let outcome = AssertUnwindSafe(notifier::run_all(&broken, &end))
        .catch_unwind()
        .await;
    let msg = super::panic_message(outcome.expect_err("a de-duplicating notifier must fail"));
    assert!(
        msg.contains("notifier::no_deduplication_in_the_notifier"),
        "{msg}"
    );
    assert!(msg.contains("1 case(s) failed"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// BrowserDriver

#[tokio::test]
async fn fake_browser_passes_the_driver_suite() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBrowser::new(7);
    let world = browser_driver::FakeWorld::new(fake.clone(), dir.path());
    browser_driver::run_all(&fake, &world).await;
    assert_eq!(fake.live_count(), 0, "the cases close what they launch");
}

#[tokio::test(start_paused = true)]
async fn fake_browser_passes_the_driver_suite_under_paused_time() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBrowser::new(8);
    browser_driver::run_all(
        &fake,
        &browser_driver::FakeWorld::new(fake.clone(), dir.path()),
    )
    .await;
}

/// A driver whose sessions report a stale state: `state()` always answers `OPENING`.
#[derive(Debug, Clone)]
struct StaleStateDriver(FakeBrowser);

#[derive(Debug)]
struct StaleStateSession(Arc<dyn BrowserSession>);

#[async_trait]
impl BrowserDriver for StaleStateDriver {
    async fn launch(&self, spec: LaunchSpec) -> Result<Arc<dyn BrowserSession>> {
        Ok(Arc::new(StaleStateSession(self.0.launch(spec).await?)))
    }
}

#[async_trait]
impl BrowserSession for StaleStateSession {
    fn session_id(&self) -> &SessionId {
        self.0.session_id()
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<DriverEvent> {
        self.0.subscribe()
    }
    async fn state(&self) -> Result<ConnectionState> {
        // Still answers errors (closed, crashed), but never moves on from OPENING.
        self.0.state().await.map(|_| ConnectionState::Opening)
    }
    async fn qr(&self) -> Result<Option<QrPayload>> {
        self.0.qr().await
    }
    async fn request_pairing_code(&self, phone: &PhoneNumber) -> Result<String> {
        self.0.request_pairing_code(phone).await
    }
    async fn send_presence_available(&self) -> Result<()> {
        self.0.send_presence_available().await
    }
    async fn send_text(&self, to: &Wid, body: &str) -> Result<MessageId> {
        self.0.send_text(to, body).await
    }
    async fn number_exists(&self, phone: &PhoneNumber) -> Result<Option<Wid>> {
        self.0.number_exists(phone).await
    }
    async fn reconnect(&self) -> Result<()> {
        self.0.reconnect().await
    }
    async fn takeover(&self) -> Result<()> {
        self.0.takeover().await
    }
    async fn logout(&self) -> Result<()> {
        self.0.logout().await
    }
    async fn simulate_activity(&self) -> Result<()> {
        self.0.simulate_activity().await
    }
    async fn account_info(&self) -> Result<Option<AccountInfo>> {
        self.0.account_info().await
    }
    async fn close(&self) -> Result<()> {
        self.0.close().await
    }
}

#[tokio::test(start_paused = true)]
async fn the_driver_suite_names_the_broken_promise() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBrowser::new(9);
    let broken = StaleStateDriver(fake.clone());
    let world = browser_driver::FakeWorld::new(fake, dir.path());
    let outcome = AssertUnwindSafe(browser_driver::run_all(&broken, &world))
        .catch_unwind()
        .await;
    let msg =
        super::panic_message(outcome.expect_err("a driver reporting a stale state must fail"));
    assert!(
        msg.contains("browser_driver::events_follow_a_scan_without_polling"),
        "{msg}"
    );
    assert!(
        msg.contains("browser_driver::launch_creates_the_profile_and_shows_a_qr"),
        "{msg}"
    );
    // Cases that never read the state pass.
    assert!(
        !msg.contains("browser_driver::number_exists_answers_yes_and_no"),
        "{msg}"
    );
    assert!(
        !msg.contains("browser_driver::incoming_texts_are_events"),
        "{msg}"
    );
}
