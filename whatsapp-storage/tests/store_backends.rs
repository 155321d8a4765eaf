//! The session stores against real databases: SQLite in a temp file per test, Postgres in a
//! fresh database per test.
//!
//! The Postgres tests need `DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`,
//! a role that may `CREATE DATABASE`); without it they fail, saying so.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use whatsapp_core::testing::conformance;
use whatsapp_core::types::truncate_micros;
use whatsapp_core::{
    EmailAddress, Error, Lease, NodeId, SessionFilter, SessionId, SessionPatch, SessionRecord,
    SessionStatus, SessionStore, TenantId, Wid,
};
use whatsapp_storage::store::{
    self, NewOutboxItem, OutboxItem, OutboxStatus, OutboxStore, PostgresSessionStore,
    SqliteSessionStore,
};
use whatsapp_storage::testing::conformance::message_queue::{self, StoreSessions};
use whatsapp_storage::testing::conformance::outbox_store;

// ---------------------------------------------------------------------------------------------
// Shared cases, run against both backends.

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

fn node(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

/// A time with nanoseconds, so every write has something to truncate.
fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000, 123_456_789).unwrap()
}

fn full_record(id: &str) -> SessionRecord {
    let now = t0();
    let mut r = SessionRecord::new(sid(id), TenantId::new("acme").unwrap(), now);
    r.owner_email = Some(EmailAddress::new("owner@example.com").unwrap());
    r.status = SessionStatus::Ready;
    r.wid = Some(Wid::parse("34600000000@c.us").unwrap());
    r.push_name = Some("Zoë's phone — ✓".into());
    // Before 2000 and before 1970, with sub-microsecond parts: both must truncate, not round.
    r.last_seen_at = Some(Utc.timestamp_opt(946_684_799, 999_999_999).unwrap());
    r.last_connected_at = Some(Utc.timestamp_opt(-1, 999_999_999).unwrap());
    r.last_activity_at = Some(now + chrono::TimeDelta::nanoseconds(1_999));
    r.last_backup_at = Some(now);
    r.expires_at = Some(Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap());
    r.last_error = Some("it's \"quoted\"; DROP TABLE sessions; --".into());
    r.restarts = u32::MAX;
    r.reconnects = 7;
    r.lease = Some(Lease {
        node: node("node-a"),
        expires_at: now + chrono::TimeDelta::nanoseconds(30_000_000_999),
    });
    r
}

fn truncated(mut r: SessionRecord) -> SessionRecord {
    let t = truncate_micros;
    r.created_at = t(r.created_at);
    r.updated_at = t(r.updated_at);
    r.last_seen_at = r.last_seen_at.map(t);
    r.last_connected_at = r.last_connected_at.map(t);
    r.last_activity_at = r.last_activity_at.map(t);
    r.last_backup_at = r.last_backup_at.map(t);
    r.expires_at = r.expires_at.map(t);
    if let Some(l) = &mut r.lease {
        l.expires_at = t(l.expires_at);
    }
    r
}

/// Beyond the conformance suite: times before 2000 and before 1970 with sub-microsecond
/// parts truncate towards the past (sqlx's Postgres encoding would round towards 2000).
async fn old_timestamps_truncate_towards_the_past(store: &dyn SessionStore) {
    let r = full_record("old-times");
    store.create(&r).await.unwrap();
    let back = store
        .get(&r.id)
        .await
        .unwrap()
        .expect("record just created");
    assert_eq!(back, truncated(r.clone()));
    assert_eq!(
        back.last_seen_at.unwrap(),
        Utc.timestamp_opt(946_684_799, 999_999_000).unwrap()
    );
    assert_eq!(
        back.last_connected_at.unwrap(),
        Utc.timestamp_opt(-1, 999_999_000).unwrap()
    );
    let patch = SessionPatch {
        last_activity_at: Some(Utc.timestamp_opt(-86_400, 1_999).unwrap()),
        ..SessionPatch::default()
    };
    let updated = store.update(&r.id, &patch, t0()).await.unwrap();
    assert_eq!(
        updated.last_activity_at.unwrap(),
        Utc.timestamp_opt(-86_400, 1_000).unwrap()
    );
    assert!(store.delete(&r.id).await.unwrap());
}

/// Beyond the conformance suite: a lease is free at the very instant it expires, and a ttl
/// that overflows the calendar is invalid input, not a backend error.
async fn lease_boundaries(store: &dyn SessionStore) {
    let id = sid("lease-edges");
    store
        .create(&SessionRecord::new(
            id.clone(),
            TenantId::new("t").unwrap(),
            t0(),
        ))
        .await
        .unwrap();
    let (a, b) = (node("node-a"), node("node-b"));
    let lease = store
        .claim_lease(&id, &a, t0(), Duration::from_millis(1500))
        .await
        .unwrap();
    let just_before = lease.expires_at - chrono::TimeDelta::microseconds(1);
    let err = store
        .claim_lease(&id, &b, just_before, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("node-a"),
        "names the holder: {err}"
    );
    let taken = store
        .claim_lease(&id, &b, lease.expires_at, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(taken.node, b);
    let err = store
        .claim_lease(&id, &b, t0(), Duration::MAX)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert_eq!(store.get(&id).await.unwrap().unwrap().lease, Some(taken));
    assert!(store.delete(&id).await.unwrap());
}

/// The core conformance suite, then the cases above.
async fn run_cases(store: &dyn SessionStore) {
    conformance::session_store::run_all(store).await;
    old_timestamps_truncate_towards_the_past(store).await;
    lease_boundaries(store).await;
}

/// Several callers (on `stores`, round-robin: different pools or different connections of
/// one pool) race the same transition and the same lease; exactly one of each wins.
async fn races_have_exactly_one_winner(stores: Vec<Arc<dyn SessionStore>>) {
    const RACERS: usize = 8;
    const ROUNDS: usize = 5;
    for round in 0..ROUNDS {
        let id = sid(&format!("race-{round}"));
        stores[0]
            .create(&SessionRecord::new(
                id.clone(),
                TenantId::new("t").unwrap(),
                t0(),
            ))
            .await
            .unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = Vec::new();
        for i in 0..RACERS {
            let store = stores[i % stores.len()].clone();
            let (id, barrier) = (id.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let target = [SessionStatus::Starting, SessionStatus::Stopped][i % 2];
                let moved = store
                    .transition(&id, &[SessionStatus::Created], target, t0())
                    .await;
                let claimed = store
                    .claim_lease(
                        &id,
                        &node(&format!("node-{i}")),
                        t0(),
                        Duration::from_secs(60),
                    )
                    .await;
                (moved, claimed)
            }));
        }
        let mut moved_ok = Vec::new();
        let mut claimed_ok = Vec::new();
        for task in tasks {
            let (moved, claimed) = task.await.unwrap();
            match moved {
                Ok(r) => moved_ok.push(r.status),
                Err(Error::Conflict(_)) => {}
                Err(e) => panic!("a losing transition must be a Conflict, got {e:?}"),
            }
            match claimed {
                Ok(l) => claimed_ok.push(l.node),
                Err(Error::Conflict(_)) => {}
                Err(e) => panic!("a losing claim must be a Conflict, got {e:?}"),
            }
        }
        assert_eq!(
            moved_ok.len(),
            1,
            "round {round}: transitions won: {moved_ok:?}"
        );
        assert_eq!(
            claimed_ok.len(),
            1,
            "round {round}: claims won: {claimed_ok:?}"
        );
        let stored = stores[0].get(&id).await.unwrap().unwrap();
        assert_eq!(stored.status, moved_ok[0]);
        assert_eq!(stored.lease.unwrap().node, claimed_ok[0]);
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite

mod sqlite {
    use super::*;

    fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/sessions.db");
        (dir, path)
    }

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let (_dir, path) = temp_db();
        let store = SqliteSessionStore::open(&path).await.unwrap();
        run_cases(&store).await;
    }

    #[tokio::test]
    async fn creates_the_file_in_wal_mode_and_keeps_data_across_reopen() {
        let (_dir, path) = temp_db();
        let store = SqliteSessionStore::open(&path).await.unwrap();
        assert!(path.exists());
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&store.pool())
            .await
            .unwrap();
        assert_eq!(fk, 1);
        let r = full_record("kept");
        store.create(&r).await.unwrap();
        store.close().await;

        // Migrations run again on open and find nothing to do.
        let url = format!("sqlite://{}", path.display());
        let reopened = store::connect(&url).await.unwrap();
        assert_eq!(reopened.get(&r.id).await.unwrap(), Some(truncated(r)));
    }

    #[tokio::test]
    async fn in_memory_url_works() {
        let store = store::connect("sqlite::memory:").await.unwrap();
        store
            .create(&SessionRecord::new(
                sid("mem"),
                TenantId::new("t").unwrap(),
                t0(),
            ))
            .await
            .unwrap();
        assert!(store.get(&sid("mem")).await.unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_transitions_and_claims_have_one_winner() {
        let (_dir, path) = temp_db();
        // Two independent stores on one file: two nodes (or processes) sharing it.
        let a = SqliteSessionStore::open(&path).await.unwrap();
        let b = SqliteSessionStore::open(&path).await.unwrap();
        races_have_exactly_one_winner(vec![Arc::new(a), Arc::new(b)]).await;
    }

    #[tokio::test]
    async fn outbox_and_message_queue_pass_their_suites() {
        let (_dir, path) = temp_db();
        let store = SqliteSessionStore::open(&path).await.unwrap();
        outbox_store::run_all(&store.outbox()).await;
        message_queue::run_all(&store.message_queue(), &StoreSessions(&store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_outbox_claims_and_message_takes_never_overlap() {
        // Two independent stores on one file: two nodes (or processes) sharing it.
        let (_dir, path) = temp_db();
        let a = SqliteSessionStore::open(&path).await.unwrap();
        let b = SqliteSessionStore::open(&path).await.unwrap();
        outbox_store::concurrent_claims_never_overlap(&[&a.outbox(), &b.outbox()]).await;
        message_queue::concurrent_takes_never_overlap(
            &[&a.message_queue(), &b.message_queue()],
            &StoreSessions(&a),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// Postgres: a uniquely named database per test, dropped afterwards (also when the test fails).

mod postgres {
    use super::*;

    /// A fresh database for `test`, dropped afterwards (the workspace's shared helper).
    async fn with_database<F, Fut>(test: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = ()>,
    {
        whatsapp_tests::postgres::with_database("wa_store_test", test).await
    }

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        with_database(|url| async move {
            let store = PostgresSessionStore::connect(&url).await.unwrap();
            run_cases(&store).await;
            store.close().await;
        })
        .await;
    }

    #[tokio::test]
    async fn migrations_are_idempotent_and_from_pool_works() {
        with_database(|url| async move {
            let first = PostgresSessionStore::connect(&url).await.unwrap();
            let r = full_record("kept");
            first.create(&r).await.unwrap();
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let second = PostgresSessionStore::from_pool(pool).await.unwrap();
            assert_eq!(second.get(&r.id).await.unwrap(), Some(truncated(r)));
            first.close().await;
            second.close().await;
        })
        .await;
    }

    #[tokio::test]
    async fn debug_output_hides_the_password() {
        with_database(|url| async move {
            // Trust authentication ignores the password, so the connection still works.
            let mut with_password = url::Url::parse(&url).unwrap();
            with_password.set_password(Some("hunter2-secret")).unwrap();
            let store = PostgresSessionStore::connect(with_password.as_str())
                .await
                .unwrap();
            let debug = format!("{store:?}");
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(debug.contains("***"), "{debug}");
            store.close().await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_transitions_and_claims_have_one_winner() {
        with_database(|url| async move {
            // Two pools: two nodes sharing one database, each with several connections.
            let a = PostgresSessionStore::connect(&url).await.unwrap();
            let b = PostgresSessionStore::connect(&url).await.unwrap();
            races_have_exactly_one_winner(vec![Arc::new(a.clone()), Arc::new(b.clone())]).await;
            a.close().await;
            b.close().await;
        })
        .await;
    }

    #[tokio::test]
    async fn outbox_and_message_queue_pass_their_suites() {
        with_database(|url| async move {
            let stores = store::open(&url).await.unwrap();
            outbox_store::run_all(stores.outbox.as_ref()).await;
            message_queue::run_all(
                stores.messages.as_ref(),
                &StoreSessions(stores.sessions.as_ref()),
            )
            .await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_outbox_claims_and_message_takes_never_overlap() {
        with_database(|url| async move {
            // Two pools: two nodes sharing one database, each with several connections.
            let a = PostgresSessionStore::connect(&url).await.unwrap();
            let b = PostgresSessionStore::connect(&url).await.unwrap();
            outbox_store::concurrent_claims_never_overlap(&[&a.outbox(), &b.outbox()]).await;
            message_queue::concurrent_takes_never_overlap(
                &[&a.message_queue(), &b.message_queue()],
                &StoreSessions(&a),
            )
            .await;
            a.close().await;
            b.close().await;
        })
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// Picking a backend by URL.

#[tokio::test]
async fn unknown_schemes_are_rejected_without_leaking_the_password() {
    for url in [
        "mysql://root:hunter2@127.0.0.1/db",
        "redis://:hunter2@127.0.0.1:6379",
        "not a url",
    ] {
        let err = store::connect(url).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("sqlite://") && msg.contains("postgres://"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}

#[tokio::test]
async fn unreachable_postgres_is_a_transient_error() {
    // Port 1 on loopback: nothing listens there.
    let err = store::connect("postgres://app:hunter2@127.0.0.1:1/app")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Figures, not assertions. Run with:
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//     cargo test -p whatsapp-storage --test store_backends -- --ignored --nocapture throughput
// Prints the mean latency of each operation (one caller, sequential) and writes the figures
// to target/store-throughput.txt.

async fn measure(backend: &str, store: &dyn SessionStore) -> String {
    const N: usize = 300;
    let ids: Vec<SessionId> = (0..N).map(|i| sid(&format!("bench-{i}"))).collect();
    let mut out = String::new();
    let mut time_n = |op: &str, n: usize, elapsed: std::time::Duration| {
        let line = format!(
            "{backend:8} {op:14} {n:4} ops  {:8.1} µs/op\n",
            elapsed.as_secs_f64() * 1e6 / n as f64
        );
        print!("{line}");
        out.push_str(&line);
    };
    let start = std::time::Instant::now();
    for id in &ids {
        store
            .create(&SessionRecord::new(
                id.clone(),
                TenantId::new("t").unwrap(),
                t0(),
            ))
            .await
            .unwrap();
    }
    let mut time = |op: &str, elapsed| time_n(op, N, elapsed);
    time("create", start.elapsed());
    let start = std::time::Instant::now();
    for id in &ids {
        store.get(id).await.unwrap().unwrap();
    }
    time("get", start.elapsed());
    let start = std::time::Instant::now();
    for id in &ids {
        let patch = SessionPatch {
            last_seen_at: Some(t0()),
            ..SessionPatch::default()
        };
        store.update(id, &patch, t0()).await.unwrap();
    }
    time("update", start.elapsed());
    let start = std::time::Instant::now();
    for id in &ids {
        store
            .transition(id, &[SessionStatus::Created], SessionStatus::Starting, t0())
            .await
            .unwrap();
    }
    time("transition", start.elapsed());
    let start = std::time::Instant::now();
    for id in &ids {
        store
            .claim_lease(id, &node("node-a"), t0(), Duration::from_secs(30))
            .await
            .unwrap();
    }
    time("claim_lease", start.elapsed());
    let start = std::time::Instant::now();
    for _ in 0..N / 10 {
        assert_eq!(store.list(&SessionFilter::all()).await.unwrap().len(), N);
    }
    time_n("list 300 rows", N / 10, start.elapsed());
    out
}

#[tokio::test]
#[ignore = "prints figures; run explicitly with --ignored"]
async fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteSessionStore::open(dir.path().join("bench.db"))
        .await
        .unwrap();
    let mut report = measure("sqlite", &sqlite).await;
    let admin = std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set; e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres",
    );
    let name = format!("wa_store_bench_{}", std::process::id());
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&name);
    let pg = PostgresSessionStore::connect(url.as_str()).await.unwrap();
    report.push_str(&measure("postgres", &pg).await);
    pg.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&pool)
        .await
        .unwrap();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/store-throughput.txt");
    std::fs::write(&path, report).unwrap();
    println!("wrote {}", path.display());
}

// ---------------------------------------------------------------------------------------------
// A suite that cannot fail is a defect: the outbox suite against a broken outbox.

/// SQLite's outbox, except that `list` returns the oldest items first.
#[derive(Debug)]
struct OldestFirstOutbox(store::SqliteOutbox);

#[async_trait::async_trait]
impl OutboxStore for OldestFirstOutbox {
    async fn enqueue(
        &self,
        item: &NewOutboxItem,
        now: DateTime<Utc>,
    ) -> whatsapp_core::Result<OutboxItem> {
        self.0.enqueue(item, now).await
    }
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        hold: Duration,
    ) -> whatsapp_core::Result<Vec<OutboxItem>> {
        self.0.claim_due(now, limit, hold).await
    }
    async fn mark_delivered(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> whatsapp_core::Result<OutboxItem> {
        self.0.mark_delivered(id, now).await
    }
    async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> whatsapp_core::Result<OutboxItem> {
        self.0.mark_failed(id, error, retry_at).await
    }
    async fn get(&self, id: i64) -> whatsapp_core::Result<Option<OutboxItem>> {
        self.0.get(id).await
    }
    async fn list(
        &self,
        status: Option<OutboxStatus>,
        limit: u32,
        before_id: Option<i64>,
    ) -> whatsapp_core::Result<Vec<OutboxItem>> {
        let mut items = self.0.list(status, u32::MAX, before_id).await?;
        items.reverse();
        items.truncate(limit as usize);
        Ok(items)
    }
    async fn requeue_dead(&self, id: i64, now: DateTime<Utc>) -> whatsapp_core::Result<OutboxItem> {
        self.0.requeue_dead(id, now).await
    }
    async fn pending_stats(
        &self,
        now: DateTime<Utc>,
    ) -> whatsapp_core::Result<(u64, Option<DateTime<Utc>>)> {
        self.0.pending_stats(now).await
    }
}

#[tokio::test]
async fn the_outbox_suite_names_the_broken_promise() {
    use futures::FutureExt;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteSessionStore::open(dir.path().join("broken.db"))
        .await
        .unwrap();
    let broken = OldestFirstOutbox(store.outbox());
    let outcome = std::panic::AssertUnwindSafe(outbox_store::run_all(&broken))
        .catch_unwind()
        .await;
    let payload = outcome.expect_err("an outbox listing oldest first must fail the suite");
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        msg.contains("outbox_store::list_is_newest_first_filtered_and_paged"),
        "{msg}"
    );
    assert!(
        !msg.contains("outbox_store::enqueue_stores_pending_and_dedupes"),
        "{msg}"
    );
}
