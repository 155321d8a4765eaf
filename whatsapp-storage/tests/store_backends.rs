//! The session stores against real databases: SQLite in a temp file per test, Postgres in a
//! fresh database per test.
//!
//! The Postgres tests need `DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`,
//! a role that may `CREATE DATABASE`); without it they fail, saying so.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use whatsapp_core::MessageId;
use whatsapp_core::testing::conformance;
use whatsapp_core::types::truncate_micros;
use whatsapp_core::{
    EmailAddress, Error, Lease, NodeId, SessionFilter, SessionId, SessionPatch, SessionRecord,
    SessionStatus, SessionStore, TenantId, Wid,
};
use whatsapp_storage::store::{
    self, MessageQueue, NewOutboxItem, NewQueuedMessage, OutboxKind, OutboxStatus, OutboxStore,
    PostgresSessionStore, QueueStatus, QueuedMessage, SqliteSessionStore,
};

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
// Outbox and message queue, shared cases (each test has a database of its own).

fn mins(n: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::minutes(n)
}

fn email(to: &str) -> NewOutboxItem {
    NewOutboxItem {
        kind: OutboxKind::Email,
        payload: serde_json::json!({ "to": to, "subject": "QR needed", "n": [1, 2.5, null] }),
        dedupe_key: None,
    }
}

async fn outbox_lifecycle(outbox: &dyn OutboxStore) {
    let now = t0();
    let first = outbox
        .enqueue(&email("owner@example.com"), now)
        .await
        .unwrap();
    assert_eq!(first.status, OutboxStatus::Pending);
    assert_eq!(first.attempts, 0);
    assert_eq!(first.next_attempt_at, truncate_micros(now));
    assert_eq!(first.created_at, truncate_micros(now));
    assert_eq!(first.payload, email("owner@example.com").payload);
    assert_eq!(outbox.get(first.id).await.unwrap(), Some(first.clone()));

    // The same dedupe key stores one item and returns the first one.
    let mut hook = NewOutboxItem {
        kind: OutboxKind::Webhook,
        payload: serde_json::json!({ "url": "https://example.com/hook" }),
        dedupe_key: Some("qr:alice:1".into()),
    };
    let a = outbox.enqueue(&hook, now).await.unwrap();
    hook.payload = serde_json::json!({ "url": "https://example.com/other" });
    let b = outbox.enqueue(&hook, now + mins(1)).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a.kind, OutboxKind::Webhook);

    // Both are due; a claim takes them (oldest first), counts an attempt and hides them.
    let claimed = outbox
        .claim_due(now, 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|i| i.id).collect::<Vec<_>>(),
        [first.id, a.id]
    );
    assert!(claimed.iter().all(|i| i.attempts == 1));
    assert!(
        outbox
            .claim_due(now + mins(0), 10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );

    // A failure with a retry time keeps it pending until then.
    let failed = outbox
        .mark_failed(first.id, "smtp 451 try later", Some(now + mins(5)))
        .await
        .unwrap();
    assert_eq!(failed.status, OutboxStatus::Pending);
    assert_eq!(failed.last_error.as_deref(), Some("smtp 451 try later"));
    assert_eq!(failed.next_attempt_at, truncate_micros(now + mins(5)));
    // The webhook's hold (60 s) ran out at +1 min: a worker died, it is claimed again.
    let again = outbox
        .claim_due(now + mins(2), 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|i| (i.id, i.attempts)).collect::<Vec<_>>(),
        [(a.id, 2)]
    );
    // At +5 min both are due: the webhook (due since +3 min) first, and the limit holds.
    let later = outbox
        .claim_due(now + mins(5), 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        later.iter().map(|i| (i.id, i.attempts)).collect::<Vec<_>>(),
        [(a.id, 3)]
    );
    let later = outbox
        .claim_due(now + mins(5), 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        later.iter().map(|i| (i.id, i.attempts)).collect::<Vec<_>>(),
        [(first.id, 2)]
    );

    let done = outbox
        .mark_delivered(first.id, now + mins(6))
        .await
        .unwrap();
    assert_eq!(done.status, OutboxStatus::Delivered);
    assert_eq!(done.delivered_at, Some(truncate_micros(now + mins(6))));
    assert_eq!(done.last_error, None);
    let err = outbox
        .mark_delivered(first.id, now + mins(7))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains("delivered"), "{err}");

    // Giving up: dead, never claimed again.
    let dead = outbox.mark_failed(a.id, "410 gone", None).await.unwrap();
    assert_eq!(dead.status, OutboxStatus::Dead);
    assert!(
        outbox
            .claim_due(now + mins(600), 10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );

    let err = outbox.mark_failed(999_999, "x", None).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(outbox.get(999_999).await.unwrap(), None);
}

/// Workers on `outboxes` (round-robin) drain 24 items concurrently: each item is claimed
/// exactly once.
async fn outbox_claims_never_overlap(outboxes: Vec<Arc<dyn OutboxStore>>) {
    const ITEMS: usize = 24;
    for i in 0..ITEMS {
        outboxes[0]
            .enqueue(&email(&format!("u{i}@example.com")), t0())
            .await
            .unwrap();
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(6));
    let mut workers = Vec::new();
    for w in 0..6 {
        let outbox = outboxes[w % outboxes.len()].clone();
        let barrier = barrier.clone();
        workers.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut mine = Vec::new();
            loop {
                let batch = outbox
                    .claim_due(t0(), 3, Duration::from_secs(600))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    break mine;
                }
                mine.extend(batch.into_iter().map(|i| i.id));
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "an item was claimed twice");
    assert_eq!(all.len(), ITEMS);
}

fn msg(
    session: &SessionId,
    key: Option<&str>,
    body: &str,
    not_before: DateTime<Utc>,
) -> NewQueuedMessage {
    NewQueuedMessage {
        session_id: session.clone(),
        idempotency_key: key.map(str::to_owned),
        recipient: Wid::parse("34600000000@c.us").unwrap(),
        body: body.to_owned(),
        not_before,
    }
}

async fn message_queue_lifecycle(sessions: &dyn SessionStore, queue: &dyn MessageQueue) {
    let now = t0();
    let (s1, s2) = (sid("q-one"), sid("q-two"));
    let err = queue
        .enqueue(&msg(&s1, None, "hi", now), now)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    for s in [&s1, &s2] {
        sessions
            .create(&SessionRecord::new(
                s.clone(),
                TenantId::new("t").unwrap(),
                now,
            ))
            .await
            .unwrap();
    }

    let m1 = queue
        .enqueue(&msg(&s1, Some("k1"), "first", now), now)
        .await
        .unwrap();
    assert!(m1.created);
    assert_eq!(m1.message.status, QueueStatus::Queued);
    assert_eq!(m1.message.body, "first");
    let dup = queue
        .enqueue(&msg(&s1, Some("k1"), "changed", now), now)
        .await
        .unwrap();
    assert!(!dup.created);
    assert_eq!(
        dup.message, m1.message,
        "a duplicate key returns the first message"
    );
    // The key is per session; no key never deduplicates.
    assert!(
        queue
            .enqueue(&msg(&s2, Some("k1"), "other session", now), now)
            .await
            .unwrap()
            .created
    );
    let m2 = queue
        .enqueue(&msg(&s1, None, "second", now), now)
        .await
        .unwrap();
    let m3 = queue
        .enqueue(&msg(&s1, None, "second", now), now)
        .await
        .unwrap();
    assert_ne!(m2.message.id, m3.message.id);
    let future = queue
        .enqueue(&msg(&s1, None, "later", now + mins(10)), now)
        .await
        .unwrap();

    // Oldest due first; the future one waits.
    let taken = queue.take_next(&s1, now).await.unwrap().unwrap();
    assert_eq!(
        (taken.id, taken.status, taken.attempts),
        (m1.message.id, QueueStatus::Sending, 1)
    );
    let sent = queue
        .mark_sent(
            taken.id,
            &MessageId("true_34600000000@c.us_3EB0ABC".into()),
            now + mins(1),
        )
        .await
        .unwrap();
    assert_eq!(sent.status, QueueStatus::Sent);
    assert_eq!(sent.sent_at, Some(truncate_micros(now + mins(1))));
    assert_eq!(
        sent.message_id.as_ref().unwrap().0,
        "true_34600000000@c.us_3EB0ABC"
    );
    let err = queue
        .mark_sent(taken.id, &MessageId("x".into()), now)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");

    let t2 = queue.take_next(&s1, now).await.unwrap().unwrap();
    assert_eq!(t2.id, m2.message.id);
    let retry = queue
        .mark_failed(t2.id, "not connected", Some(now + mins(2)))
        .await
        .unwrap();
    assert_eq!(
        (retry.status, retry.not_before),
        (QueueStatus::Queued, truncate_micros(now + mins(2)))
    );
    let t3 = queue.take_next(&s1, now).await.unwrap().unwrap();
    assert_eq!(t3.id, m3.message.id);
    assert_eq!(
        queue.take_next(&s1, now).await.unwrap(),
        None,
        "m2 waits, m4 is in the future"
    );

    // The sender died with m3 in flight: the next owner requeues it.
    assert_eq!(queue.requeue_sending(&s1).await.unwrap(), 1);
    let t3 = queue.take_next(&s1, now + mins(2)).await.unwrap().unwrap();
    assert_eq!(
        (t3.id, t3.attempts),
        (m2.message.id, 2),
        "m2 is due again and older than m3"
    );
    let gave_up = queue
        .mark_failed(t3.id, "invalid recipient", None)
        .await
        .unwrap();
    assert_eq!(gave_up.status, QueueStatus::Failed);
    assert_eq!(gave_up.error.as_deref(), Some("invalid recipient"));

    let ids = |v: Vec<QueuedMessage>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(
        ids(queue.list(&s1, &[QueueStatus::Queued]).await.unwrap()),
        [m3.message.id, future.message.id]
    );
    assert_eq!(queue.list(&s1, &[]).await.unwrap().len(), 4);
    assert_eq!(
        ids(queue
            .list(&s1, &[QueueStatus::Sent, QueueStatus::Failed])
            .await
            .unwrap()),
        [m1.message.id, m2.message.id]
    );
    let err = queue.mark_failed(424_242, "x", None).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

    // Deleting the session deletes its messages.
    assert!(sessions.delete(&s1).await.unwrap());
    assert!(queue.list(&s1, &[]).await.unwrap().is_empty());
    assert_eq!(queue.get(m1.message.id).await.unwrap(), None);
    assert_eq!(queue.list(&s2, &[]).await.unwrap().len(), 1);
}

/// Takers on `queues` (round-robin) drain one session's 16 messages concurrently: each is
/// taken exactly once.
async fn message_takes_never_overlap(
    sessions: &dyn SessionStore,
    queues: Vec<Arc<dyn MessageQueue>>,
) {
    const MESSAGES: usize = 16;
    let s = sid("q-race");
    sessions
        .create(&SessionRecord::new(
            s.clone(),
            TenantId::new("t").unwrap(),
            t0(),
        ))
        .await
        .unwrap();
    for i in 0..MESSAGES {
        queues[0]
            .enqueue(&msg(&s, None, &format!("m{i}"), t0()), t0())
            .await
            .unwrap();
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(6));
    let mut takers = Vec::new();
    for w in 0..6 {
        let (queue, barrier, s) = (queues[w % queues.len()].clone(), barrier.clone(), s.clone());
        takers.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut mine = Vec::new();
            while let Some(m) = queue.take_next(&s, t0()).await.unwrap() {
                mine.push(m.id);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in takers {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a message was taken twice");
    assert_eq!(all.len(), MESSAGES);
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
    async fn outbox_and_message_queue() {
        let (_dir, path) = temp_db();
        let store = SqliteSessionStore::open(&path).await.unwrap();
        outbox_lifecycle(&store.outbox()).await;
        message_queue_lifecycle(&store, &store.message_queue()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_outbox_claims_and_message_takes_never_overlap() {
        let (_dir, path) = temp_db();
        let a = SqliteSessionStore::open(&path).await.unwrap();
        let b = SqliteSessionStore::open(&path).await.unwrap();
        outbox_claims_never_overlap(vec![Arc::new(a.outbox()), Arc::new(b.outbox())]).await;
        message_takes_never_overlap(
            &a,
            vec![Arc::new(a.message_queue()), Arc::new(b.message_queue())],
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
    async fn outbox_and_message_queue() {
        with_database(|url| async move {
            let stores = store::open(&url).await.unwrap();
            outbox_lifecycle(stores.outbox.as_ref()).await;
            message_queue_lifecycle(stores.sessions.as_ref(), stores.messages.as_ref()).await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_outbox_claims_and_message_takes_never_overlap() {
        with_database(|url| async move {
            let a = PostgresSessionStore::connect(&url).await.unwrap();
            let b = PostgresSessionStore::connect(&url).await.unwrap();
            outbox_claims_never_overlap(vec![Arc::new(a.outbox()), Arc::new(b.outbox())]).await;
            message_takes_never_overlap(
                &a,
                vec![Arc::new(a.message_queue()), Arc::new(b.message_queue())],
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
