//! The [`MessageHistory`] conformance suite on every implementation: SQLite in a temp file,
//! Postgres in a fresh database (needs `DATABASE_URL`; fails saying so without it), and
//! [`MemoryHistory`]; and the suite shown to fail on a deliberately broken history.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use whatsapp_core::{MessageId, SessionId, Wid};
use whatsapp_storage::store::{
    self, ChatSummary, HistoryCursor, MessageChange, MessageHistory, NewMessage, Recorded,
    SqliteSessionStore, StoredMessage,
};
use whatsapp_storage::testing::MemoryHistory;
use whatsapp_storage::testing::conformance::message_history;
use whatsapp_storage::testing::conformance::message_queue::{QueueSessions, StoreSessions};

#[tokio::test]
async fn sqlite_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteSessionStore::open(dir.path().join("history.db"))
        .await
        .unwrap();
    message_history::run_all(&store.history(), &StoreSessions(&store)).await;
}

#[tokio::test]
async fn postgres_passes_the_suite() {
    whatsapp_tests::postgres::with_database("wa_history_test", |url| async move {
        let stores = store::open(&url).await.unwrap();
        message_history::run_all(
            stores.history.as_ref(),
            &StoreSessions(stores.sessions.as_ref()),
        )
        .await;
    })
    .await;
}

/// Sessions of a [`MemoryHistory`]: it does not know them; deleting one deletes its
/// messages.
struct MemorySessions<'a>(&'a MemoryHistory);

#[async_trait]
impl QueueSessions for MemorySessions<'_> {
    async fn create(&self, _id: &SessionId) {}

    async fn delete(&self, id: &SessionId) {
        self.0.delete_session(id);
    }

    fn checks_sessions(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn memory_passes_the_suite() {
    let history = MemoryHistory::new();
    message_history::run_all(&history, &MemorySessions(&history)).await;
}

/// A history whose acks may fall: it applies every ack, which breaks "each change once".
#[derive(Debug, Default)]
struct FallingAcks(MemoryHistory);

#[async_trait]
impl MessageHistory for FallingAcks {
    async fn record(&self, m: &NewMessage, now: DateTime<Utc>) -> whatsapp_core::Result<Recorded> {
        self.0.record(m, now).await
    }
    async fn get(
        &self,
        s: &SessionId,
        k: &MessageId,
    ) -> whatsapp_core::Result<Option<StoredMessage>> {
        self.0.get(s, k).await
    }
    async fn apply(
        &self,
        s: &SessionId,
        k: &MessageId,
        change: &MessageChange,
    ) -> whatsapp_core::Result<Option<StoredMessage>> {
        if let MessageChange::Ack(ack) = change {
            let mut m = self.0.get(s, k).await?.expect("recorded");
            m.ack = Some(*ack);
            return Ok(Some(m));
        }
        self.0.apply(s, k, change).await
    }
    async fn messages(
        &self,
        s: &SessionId,
        chat: Option<&Wid>,
        before: Option<&HistoryCursor>,
        limit: u32,
    ) -> whatsapp_core::Result<Vec<StoredMessage>> {
        self.0.messages(s, chat, before, limit).await
    }
    async fn chats(
        &self,
        s: &SessionId,
        before: Option<&HistoryCursor>,
        limit: u32,
    ) -> whatsapp_core::Result<Vec<ChatSummary>> {
        self.0.chats(s, before, limit).await
    }
    async fn purge_sent_before(&self, before: DateTime<Utc>) -> whatsapp_core::Result<u64> {
        self.0.purge_sent_before(before).await
    }
}

#[tokio::test]
async fn the_suite_names_the_broken_promise() {
    use futures::FutureExt;
    let broken = FallingAcks::default();
    let outcome = std::panic::AssertUnwindSafe(message_history::run_all(
        &broken,
        &MemorySessions(&broken.0),
    ))
    .catch_unwind()
    .await;
    let payload = outcome.expect_err("a history whose acks fall must fail the suite");
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        msg.contains("message_history::apply_reports_each_change_once"),
        "{msg}"
    );
    assert!(
        !msg.contains("message_history::record_stores_once_per_key"),
        "{msg}"
    );
}
