//! The suites against the in-memory implementations, and the suites against broken ones
//! (a suite that cannot fail is a defect).

use std::sync::Arc;

use async_trait::async_trait;

use super::{backup_sink, session_store, unique_token};
use crate::backup::{BackupKey, BackupSink, ByteStream, ObjectMeta, SinkCapabilities};
use crate::error::Result;
use crate::testing::{FakeClock, InMemorySessionStore, MemoryBackupSink};

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
