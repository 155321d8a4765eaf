//! The session stores against real databases: SQLite in a temp file per test, Postgres in a
//! fresh database per test.
//!
//! The Postgres tests need `DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`,
//! a role that may `CREATE DATABASE`); without it they fail, saying so.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::FutureExt;
use whatsapp_core::types::truncate_micros;
use whatsapp_core::{
    EmailAddress, Error, Lease, NodeId, SessionFilter, SessionId, SessionPatch, SessionRecord,
    SessionStatus, SessionStore, TenantId, Wid,
};
use whatsapp_storage::store::{self, PostgresSessionStore, SqliteSessionStore};

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

async fn round_trip_keeps_every_field(store: &dyn SessionStore) {
    let r = full_record("full");
    store.create(&r).await.unwrap();
    let back = store
        .get(&r.id)
        .await
        .unwrap()
        .expect("record just created");
    assert_eq!(back, truncated(r.clone()));
    assert_eq!(
        back.last_connected_at.unwrap(),
        Utc.timestamp_opt(-1, 999_999_000).unwrap(),
        "times before 1970 truncate towards the past"
    );
    let listed = store.list(&SessionFilter::all()).await.unwrap();
    assert_eq!(listed, vec![truncated(r)]);
}

async fn create_twice_is_a_conflict_and_changes_nothing(store: &dyn SessionStore) {
    let r = full_record("dup");
    store.create(&r).await.unwrap();
    let mut other = SessionRecord::new(sid("dup"), TenantId::new("other").unwrap(), t0());
    other.status = SessionStatus::Stopped;
    let err = store.create(&other).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains("dup"), "{err}");
    assert_eq!(store.get(&r.id).await.unwrap().unwrap(), truncated(r));
}

async fn missing_ids_are_not_found(store: &dyn SessionStore) {
    let id = sid("ghost");
    assert_eq!(store.get(&id).await.unwrap(), None);
    let now = t0();
    let errs = [
        store
            .update(&id, &SessionPatch::default(), now)
            .await
            .unwrap_err(),
        store
            .transition(&id, &[SessionStatus::Created], SessionStatus::Starting, now)
            .await
            .unwrap_err(),
        store
            .claim_lease(&id, &node("n1"), now, Duration::from_secs(30))
            .await
            .unwrap_err(),
        store.release_lease(&id, &node("n1")).await.unwrap_err(),
    ];
    for err in errs {
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("ghost"), "{err}");
    }
    assert!(!store.delete(&id).await.unwrap());
}

async fn list_filters_and_orders_by_id_bytewise(store: &dyn SessionStore) {
    // Byte order: '-' < '0' < '_' < 'a'. A locale collation would ignore the punctuation.
    let ids = ["b", "a_b", "a-c", "a0", "ab", "a-b"];
    for (i, id) in ids.iter().enumerate() {
        let tenant = if i % 2 == 0 { "t1" } else { "t2" };
        let mut r = SessionRecord::new(sid(id), TenantId::new(tenant).unwrap(), t0());
        r.status = if i < 3 {
            SessionStatus::Ready
        } else {
            SessionStatus::Stopped
        };
        store.create(&r).await.unwrap();
    }
    let names = |v: Vec<SessionRecord>| v.into_iter().map(|r| r.id.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(store.list(&SessionFilter::all()).await.unwrap()),
        ["a-b", "a-c", "a0", "a_b", "ab", "b"]
    );
    let ready = SessionFilter::with_status([SessionStatus::Ready]);
    assert_eq!(
        names(store.list(&ready).await.unwrap()),
        ["a-c", "a_b", "b"]
    );
    let t1_stopped = SessionFilter {
        tenant: Some(TenantId::new("t1").unwrap()),
        statuses: vec![SessionStatus::Stopped, SessionStatus::Error],
    };
    assert_eq!(names(store.list(&t1_stopped).await.unwrap()), ["ab"]);
    let nobody = SessionFilter {
        tenant: Some(TenantId::new("nobody").unwrap()),
        statuses: vec![],
    };
    assert!(store.list(&nobody).await.unwrap().is_empty());
}

async fn update_touches_only_patched_fields(store: &dyn SessionStore) {
    let r = full_record("patchy");
    store.create(&r).await.unwrap();
    let later = t0() + chrono::TimeDelta::seconds(60);
    let seen = later + chrono::TimeDelta::nanoseconds(5);
    let patch = SessionPatch {
        push_name: Some(None),
        last_seen_at: Some(seen),
        expires_at: Some(None),
        reconnects: Some(8),
        ..SessionPatch::default()
    };
    let updated = store.update(&r.id, &patch, later).await.unwrap();
    let mut want = truncated(r.clone());
    patch.apply(&mut want);
    want.updated_at = truncate_micros(later);
    assert_eq!(updated, want);
    assert_eq!(store.get(&r.id).await.unwrap().unwrap(), want);
    // An empty patch still stamps updated_at, and leaves status and lease alone.
    let again = store
        .update(
            &r.id,
            &SessionPatch::default(),
            later + chrono::TimeDelta::seconds(1),
        )
        .await
        .unwrap();
    assert_eq!(again.status, SessionStatus::Ready);
    assert_eq!(again.lease, want.lease);
    assert_eq!(
        again.updated_at,
        truncate_micros(later + chrono::TimeDelta::seconds(1))
    );
}

async fn transition_is_compare_and_set(store: &dyn SessionStore) {
    let id = sid("cas");
    store
        .create(&SessionRecord::new(
            id.clone(),
            TenantId::new("t").unwrap(),
            t0(),
        ))
        .await
        .unwrap();
    let t1 = t0() + chrono::TimeDelta::seconds(1);
    let r = store
        .transition(
            &id,
            &[SessionStatus::Created, SessionStatus::Stopped],
            SessionStatus::Starting,
            t1,
        )
        .await
        .unwrap();
    assert_eq!(r.status, SessionStatus::Starting);
    assert_eq!(r.updated_at, truncate_micros(t1));

    let err = store
        .transition(&id, &[SessionStatus::Created], SessionStatus::Qr, t1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(
        err.to_string().contains("starting"),
        "names the actual status: {err}"
    );
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().status,
        SessionStatus::Starting
    );

    // An empty `from` accepts any status.
    let r = store
        .transition(&id, &[], SessionStatus::Error, t1)
        .await
        .unwrap();
    assert_eq!(r.status, SessionStatus::Error);
}

async fn leases_claim_renew_expire_release(store: &dyn SessionStore) {
    let id = sid("leased");
    store
        .create(&SessionRecord::new(
            id.clone(),
            TenantId::new("t").unwrap(),
            t0(),
        ))
        .await
        .unwrap();
    let (a, b) = (node("node-a"), node("node-b"));
    let ttl = Duration::from_secs(30);
    let now = t0();

    let lease = store.claim_lease(&id, &a, now, ttl).await.unwrap();
    assert_eq!(lease.node, a);
    assert_eq!(
        lease.expires_at,
        truncate_micros(now + chrono::TimeDelta::seconds(30))
    );
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().lease,
        Some(lease.clone())
    );

    // Held by a: b is refused and nothing changes.
    let err = store
        .claim_lease(&id, &b, now + chrono::TimeDelta::seconds(29), ttl)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains("node-a"), "{err}");
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().lease,
        Some(lease.clone())
    );

    // a renews, even with a shorter ttl.
    let renewed = store
        .claim_lease(
            &id,
            &a,
            now + chrono::TimeDelta::seconds(10),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(
        renewed.expires_at,
        truncate_micros(now + chrono::TimeDelta::seconds(15))
    );

    // At the very instant of expiry the lease is free.
    let expiry = renewed.expires_at;
    let taken = store.claim_lease(&id, &b, expiry, ttl).await.unwrap();
    assert_eq!(taken.node, b);

    // a no longer holds it: releasing is a no-op.
    store.release_lease(&id, &a).await.unwrap();
    assert_eq!(store.get(&id).await.unwrap().unwrap().lease, Some(taken));
    store.release_lease(&id, &b).await.unwrap();
    assert_eq!(store.get(&id).await.unwrap().unwrap().lease, None);
    // Releasing twice is fine; a can claim again.
    store.release_lease(&id, &b).await.unwrap();
    store.claim_lease(&id, &a, expiry, ttl).await.unwrap();

    // Status and lease are independent.
    let r = store
        .transition(
            &id,
            &[SessionStatus::Created],
            SessionStatus::Starting,
            expiry,
        )
        .await
        .unwrap();
    assert_eq!(r.lease.unwrap().node, a);
    let err = store
        .claim_lease(&id, &a, expiry, Duration::MAX)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
}

async fn delete_reports_existence(store: &dyn SessionStore) {
    let r = full_record("gone");
    store.create(&r).await.unwrap();
    assert!(store.delete(&r.id).await.unwrap());
    assert!(!store.delete(&r.id).await.unwrap());
    assert_eq!(store.get(&r.id).await.unwrap(), None);
    // The id can be reused.
    store.create(&r).await.unwrap();
}

async fn run_cases(store: &dyn SessionStore) {
    round_trip_keeps_every_field(store).await;
    create_twice_is_a_conflict_and_changes_nothing(store).await;
    missing_ids_are_not_found(store).await;
    update_touches_only_patched_fields(store).await;
    transition_is_compare_and_set(store).await;
    leases_claim_renew_expire_release(store).await;
    delete_reports_existence(store).await;
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
    async fn contract_cases() {
        let (_dir, path) = temp_db();
        let store = SqliteSessionStore::open(&path).await.unwrap();
        run_cases(&store).await;
    }

    #[tokio::test]
    async fn list_order_and_filters() {
        let (_dir, path) = temp_db();
        let store = SqliteSessionStore::open(&path).await.unwrap();
        list_filters_and_orders_by_id_bytewise(&store).await;
    }

    #[tokio::test]
    async fn creates_the_file_in_wal_mode_and_keeps_data_across_reopen() {
        let (_dir, path) = temp_db();
        let store = SqliteSessionStore::open(&path).await.unwrap();
        assert!(path.exists());
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(store.pool())
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
}

// ---------------------------------------------------------------------------------------------
// Postgres: a uniquely named database per test, dropped afterwards (also when the test fails).

mod postgres {
    use super::*;

    fn admin_url() -> String {
        std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "DATABASE_URL is not set. The Postgres store tests need a running server and a \
                 role allowed to CREATE DATABASE, e.g.\n    \
                 DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo test -p whatsapp-storage"
            )
        })
    }

    /// Creates a fresh database, runs `test` with its URL, drops the database.
    async fn with_database<F, Fut>(test: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = ()>,
    {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let admin_url = admin_url();
        let admin = sqlx::PgPool::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("cannot connect to DATABASE_URL (is Postgres running on 127.0.0.1:5432?): {e}")
        });
        let name = format!(
            "wa_store_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            Utc::now().timestamp_micros()
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&name);
        let outcome = AssertUnwindSafe(test(url.to_string())).catch_unwind().await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    #[tokio::test]
    async fn contract_cases() {
        with_database(|url| async move {
            let store = PostgresSessionStore::connect(&url).await.unwrap();
            run_cases(&store).await;
            store.close().await;
        })
        .await;
    }

    #[tokio::test]
    async fn list_order_and_filters() {
        with_database(|url| async move {
            let store = store::connect(&url).await.unwrap();
            list_filters_and_orders_by_id_bytewise(store.as_ref()).await;
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
