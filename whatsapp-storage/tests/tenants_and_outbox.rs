//! Tenants, API keys, the number-check cache, outbox listing and requeueing, and queue
//! depth, against real databases: SQLite in a temp file per test, Postgres in a fresh
//! database per test.
//!
//! The Postgres tests need `DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`,
//! a role that may `CREATE DATABASE`); without it they fail, saying so.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use whatsapp_core::types::truncate_micros;
use whatsapp_core::{
    Error, MessageId, PhoneNumber, SessionId, SessionRecord, SessionStore, TenantId, Wid,
};
use whatsapp_storage::store::{
    self, CachedNumber, MessageQueue, NewOutboxItem, NewQueuedMessage, NewTenant, NumberCache,
    OutboxKind, OutboxStatus, OutboxStore, Stores, TenantStore,
};

// ---------------------------------------------------------------------------------------------
// Shared cases, run against both backends.

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

/// A time with nanoseconds, so every write has something to truncate.
fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000, 123_456_789).unwrap()
}

fn mins(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

/// A well-formed key hash (64 lower-case hex digits), distinct per `n`.
fn hash(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

async fn create_session(sessions: &dyn SessionStore, id: &str) {
    sessions
        .create(&SessionRecord::new(sid(id), tid("acme"), t0()))
        .await
        .unwrap();
}

fn assert_conflict(err: Error, needle: &str) {
    match &err {
        Error::Conflict(msg) => assert!(msg.contains(needle), "{needle:?} not in {msg:?}"),
        other => panic!("expected a conflict naming {needle:?}, got {other:?}"),
    }
}

fn assert_not_found(err: Error, needle: &str) {
    match &err {
        Error::NotFound { what } => assert!(what.contains(needle), "{needle:?} not in {what:?}"),
        other => panic!("expected not found ({needle:?}), got {other:?}"),
    }
}

async fn tenants_lifecycle(tenants: &dyn TenantStore) {
    assert!(tenants.list_tenants().await.unwrap().is_empty());
    assert_eq!(tenants.get_tenant(&tid("acme")).await.unwrap(), None);

    let acme = tenants
        .create_tenant(
            &NewTenant {
                id: tid("acme"),
                name: Some("Acme — ✓ 'quoted'".into()),
            },
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(acme.id, tid("acme"));
    assert_eq!(acme.name.as_deref(), Some("Acme — ✓ 'quoted'"));
    assert_eq!(acme.created_at, truncate_micros(t0()));
    assert_eq!(
        (acme.webhook_url.clone(), acme.webhook_secret.clone()),
        (None, None)
    );
    assert_eq!(
        tenants.get_tenant(&acme.id).await.unwrap(),
        Some(acme.clone())
    );

    // A duplicate id is a conflict and changes nothing.
    let err = tenants
        .create_tenant(
            &NewTenant {
                id: tid("acme"),
                name: Some("other".into()),
            },
            t0() + mins(1),
        )
        .await
        .unwrap_err();
    assert_conflict(err, "acme");
    assert_eq!(
        tenants.get_tenant(&acme.id).await.unwrap(),
        Some(acme.clone())
    );

    // Listed by id, byte-wise ('-' < '_' < letters), whatever the database's collation.
    for id in ["ab", "a_b", "a-b"] {
        tenants
            .create_tenant(
                &NewTenant {
                    id: tid(id),
                    name: None,
                },
                t0(),
            )
            .await
            .unwrap();
    }
    let ids: Vec<String> = tenants
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(ids, ["a-b", "a_b", "ab", "acme"]);

    // Webhooks: set, replaced, cleared; the secret never shows in Debug.
    let with_hook = tenants
        .set_webhook(
            &acme.id,
            Some("https://example.com/hook"),
            Some("whsec-hunter2"),
        )
        .await
        .unwrap();
    assert_eq!(
        with_hook.webhook_url.as_deref(),
        Some("https://example.com/hook")
    );
    assert_eq!(with_hook.webhook_secret.as_deref(), Some("whsec-hunter2"));
    assert_eq!(with_hook.created_at, acme.created_at);
    assert_eq!(
        tenants.get_tenant(&acme.id).await.unwrap(),
        Some(with_hook.clone())
    );
    let debug = format!("{with_hook:?}");
    assert!(
        !debug.contains("hunter2") && debug.contains("***"),
        "{debug}"
    );
    let cleared = tenants.set_webhook(&acme.id, None, None).await.unwrap();
    assert_eq!(cleared, acme);
    let err = tenants
        .set_webhook(&tid("nobody"), Some("https://example.com"), None)
        .await
        .unwrap_err();
    assert_not_found(err, "tenant nobody");

    assert!(tenants.delete_tenant(&tid("ab")).await.unwrap());
    assert!(!tenants.delete_tenant(&tid("ab")).await.unwrap());
    assert_eq!(tenants.get_tenant(&tid("ab")).await.unwrap(), None);
}

async fn api_keys_lifecycle(tenants: &dyn TenantStore) {
    for id in ["acme", "beta"] {
        tenants
            .create_tenant(
                &NewTenant {
                    id: tid(id),
                    name: None,
                },
                t0(),
            )
            .await
            .unwrap();
    }
    let acme = tid("acme");
    let first = tenants
        .add_api_key(&acme, "wak_first", &hash(1), Some("CI"), t0())
        .await
        .unwrap();
    assert_eq!(first.id, "wak_first");
    assert_eq!(first.tenant, acme);
    assert_eq!(first.label.as_deref(), Some("CI"));
    assert_eq!(first.created_at, truncate_micros(t0()));
    assert_eq!(first.revoked_at, None);
    let second = tenants
        .add_api_key(&acme, "wak_second", &hash(2), None, t0() + mins(1))
        .await
        .unwrap();
    let beta_key = tenants
        .add_api_key(&tid("beta"), "wak_beta", &hash(3), None, t0())
        .await
        .unwrap();

    // Found by hash, and only by the exact hash.
    assert_eq!(
        tenants.find_api_key(&hash(1)).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        tenants.find_api_key(&hash(3)).await.unwrap(),
        Some(beta_key.clone())
    );
    assert_eq!(tenants.find_api_key(&hash(9)).await.unwrap(), None);

    // Unknown tenant, duplicate id or hash, malformed input.
    let err = tenants
        .add_api_key(&tid("nobody"), "wak_x", &hash(4), None, t0())
        .await
        .unwrap_err();
    assert_not_found(err, "tenant nobody");
    let err = tenants
        .add_api_key(&acme, "wak_first", &hash(5), None, t0())
        .await
        .unwrap_err();
    assert_conflict(err, "wak_first");
    let err = tenants
        .add_api_key(&tid("beta"), "wak_other", &hash(1), None, t0())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    let err = tenants
        .add_api_key(&acme, "wak_plain", "wak_plain-secret-key", None, t0())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidInput {
                field: "api key hash",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("secret-key"), "{err}");
    let err = tenants
        .add_api_key(&acme, "has space", &hash(6), None, t0())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidInput {
                field: "api key id",
                ..
            }
        ),
        "{err:?}"
    );
    let listed = tenants.list_api_keys(&acme).await.unwrap();
    assert_eq!(
        listed,
        [first.clone(), second.clone()],
        "oldest first, nothing else stored"
    );

    // Revoked keys are listed but not found; a second revocation keeps the first time.
    let revoked_at = t0() + mins(5) + TimeDelta::nanoseconds(999);
    assert!(
        tenants
            .revoke_api_key("wak_first", revoked_at)
            .await
            .unwrap()
    );
    assert_eq!(tenants.find_api_key(&hash(1)).await.unwrap(), None);
    assert!(
        tenants
            .revoke_api_key("wak_first", t0() + mins(9))
            .await
            .unwrap()
    );
    assert!(!tenants.revoke_api_key("wak_missing", t0()).await.unwrap());
    let listed = tenants.list_api_keys(&acme).await.unwrap();
    assert_eq!(listed[0].revoked_at, Some(truncate_micros(revoked_at)));
    assert_eq!(listed[1], second);
    assert_eq!(
        tenants.find_api_key(&hash(2)).await.unwrap(),
        Some(second.clone())
    );
    // A revoked key's id and hash stay taken.
    let err = tenants
        .add_api_key(&acme, "wak_again", &hash(1), None, t0())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(
        tenants
            .list_api_keys(&tid("nobody"))
            .await
            .unwrap()
            .is_empty()
    );

    // Deleting the tenant deletes its keys, and only its keys.
    assert!(tenants.delete_tenant(&acme).await.unwrap());
    assert_eq!(tenants.find_api_key(&hash(2)).await.unwrap(), None);
    assert!(tenants.list_api_keys(&acme).await.unwrap().is_empty());
    assert_eq!(
        tenants.find_api_key(&hash(3)).await.unwrap(),
        Some(beta_key)
    );
    // The rows are gone: their id and hash can be used again.
    let reused = tenants
        .add_api_key(&tid("beta"), "wak_second", &hash(2), None, t0())
        .await
        .unwrap();
    assert_eq!(reused.tenant, tid("beta"));
}

async fn number_cache_lifecycle(sessions: &dyn SessionStore, numbers: &dyn NumberCache) {
    create_session(sessions, "s1").await;
    create_session(sessions, "s2").await;
    let phone = PhoneNumber::new("+34 600 000 001").unwrap();
    let other = PhoneNumber::new("34600000002").unwrap();
    assert_eq!(numbers.get(&sid("s1"), &phone).await.unwrap(), None);

    let entry = CachedNumber {
        session_id: sid("s1"),
        phone: phone.clone(),
        exists: true,
        wid: Some(phone.wid()),
        checked_at: t0(),
    };
    numbers.put(&entry).await.unwrap();
    let want = CachedNumber {
        checked_at: truncate_micros(t0()),
        ..entry.clone()
    };
    assert_eq!(numbers.get(&sid("s1"), &phone).await.unwrap(), Some(want));
    // Per session: the same number through another session is another entry.
    assert_eq!(numbers.get(&sid("s2"), &phone).await.unwrap(), None);

    // Upsert: a later check replaces the earlier one.
    let recheck = CachedNumber {
        exists: false,
        wid: None,
        checked_at: t0() + mins(60),
        ..entry.clone()
    };
    numbers.put(&recheck).await.unwrap();
    assert_eq!(
        numbers.get(&sid("s1"), &phone).await.unwrap(),
        Some(CachedNumber {
            checked_at: truncate_micros(recheck.checked_at),
            ..recheck.clone()
        })
    );

    // A session that does not exist.
    let err = numbers
        .put(&CachedNumber {
            session_id: sid("ghost"),
            ..entry.clone()
        })
        .await
        .unwrap_err();
    assert_not_found(err, "session ghost");

    // Purge is strictly before the cut-off.
    let old = CachedNumber {
        session_id: sid("s2"),
        phone: other.clone(),
        exists: true,
        wid: Some(Wid::parse("34600000002@c.us").unwrap()),
        checked_at: t0() - mins(24 * 60),
    };
    numbers.put(&old).await.unwrap();
    let at_cutoff = CachedNumber {
        session_id: sid("s2"),
        phone: phone.clone(),
        checked_at: t0(),
        ..old.clone()
    };
    numbers.put(&at_cutoff).await.unwrap();
    assert_eq!(
        numbers
            .purge_checked_before(truncate_micros(t0()))
            .await
            .unwrap(),
        1
    );
    assert_eq!(numbers.get(&sid("s2"), &other).await.unwrap(), None);
    assert!(numbers.get(&sid("s2"), &phone).await.unwrap().is_some());
    assert!(numbers.get(&sid("s1"), &phone).await.unwrap().is_some());
    assert_eq!(
        numbers
            .purge_checked_before(truncate_micros(t0()))
            .await
            .unwrap(),
        0
    );

    // Deleting a session deletes its entries, and only its entries.
    assert!(sessions.delete(&sid("s2")).await.unwrap());
    assert_eq!(numbers.get(&sid("s2"), &phone).await.unwrap(), None);
    assert!(numbers.get(&sid("s1"), &phone).await.unwrap().is_some());
    assert_eq!(
        numbers
            .purge_checked_before(t0() + mins(24 * 60))
            .await
            .unwrap(),
        1,
        "only s1's entry was left"
    );
}

fn email(n: u32) -> NewOutboxItem {
    NewOutboxItem {
        kind: OutboxKind::Email,
        payload: serde_json::json!({ "to": format!("user{n}@example.com") }),
        dedupe_key: None,
    }
}

fn ids(items: &[whatsapp_storage::store::OutboxItem]) -> Vec<i64> {
    items.iter().map(|i| i.id).collect()
}

async fn outbox_list_requeue_and_stats(outbox: &dyn OutboxStore) {
    let now = t0();
    assert_eq!(outbox.pending_stats(now).await.unwrap(), (0, None));
    assert!(outbox.list(None, 10, None).await.unwrap().is_empty());

    // Six items, created a minute apart: 0 and 3 delivered, 1 and 4 dead, 2 and 5 pending.
    let mut items = Vec::new();
    for n in 0..6 {
        items.push(
            outbox
                .enqueue(&email(n), now + mins(i64::from(n)))
                .await
                .unwrap(),
        );
    }
    let all: Vec<i64> = ids(&items);
    let later = now + mins(10);
    let claimed = outbox
        .claim_due(later, 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(ids(&claimed), all);
    for i in [0, 3] {
        outbox.mark_delivered(all[i], later).await.unwrap();
    }
    for i in [1, 4] {
        outbox
            .mark_failed(all[i], &format!("smtp said no ({i})"), None)
            .await
            .unwrap();
    }
    for i in [2, 5] {
        outbox
            .mark_failed(all[i], "timeout", Some(later + mins(1)))
            .await
            .unwrap();
    }

    // Newest first; filtered by status; limited.
    let newest_first: Vec<i64> = all.iter().rev().copied().collect();
    assert_eq!(
        ids(&outbox.list(None, 100, None).await.unwrap()),
        newest_first
    );
    let dead = outbox
        .list(Some(OutboxStatus::Dead), 100, None)
        .await
        .unwrap();
    assert_eq!(ids(&dead), [all[4], all[1]]);
    assert!(dead.iter().all(|i| i.status == OutboxStatus::Dead));
    assert_eq!(
        ids(&outbox
            .list(Some(OutboxStatus::Delivered), 1, None)
            .await
            .unwrap()),
        [all[3]]
    );
    assert!(outbox.list(None, 0, None).await.unwrap().is_empty());

    // Paging with before_id walks every item exactly once.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = outbox.list(None, 4, before).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4);
        before = page.last().map(|i| i.id);
        paged.extend(ids(&page));
    }
    assert_eq!(paged, newest_first);
    assert_eq!(
        ids(&outbox
            .list(Some(OutboxStatus::Pending), 10, Some(all[5]))
            .await
            .unwrap()),
        [all[2]]
    );

    // Pending: items 2 and 5; the oldest was created at now + 2 min.
    assert_eq!(
        outbox.pending_stats(later).await.unwrap(),
        (2, Some(truncate_micros(now + mins(2))))
    );
    // Never later than `now` (a caller whose clock is behind the writer's).
    assert_eq!(
        outbox.pending_stats(now).await.unwrap(),
        (2, Some(truncate_micros(now)))
    );

    // requeue_dead: back to pending, due now, attempts reset, last error kept.
    let requeue_at = later + mins(30) + TimeDelta::nanoseconds(1_999);
    let back = outbox.requeue_dead(all[1], requeue_at).await.unwrap();
    assert_eq!(back.status, OutboxStatus::Pending);
    assert_eq!(back.attempts, 0);
    assert_eq!(back.next_attempt_at, truncate_micros(requeue_at));
    assert_eq!(back.last_error.as_deref(), Some("smtp said no (1)"));
    assert_eq!(back.created_at, items[1].created_at);
    assert_eq!(back.payload, items[1].payload);
    assert_eq!(outbox.get(all[1]).await.unwrap(), Some(back.clone()));
    assert_eq!(
        outbox.pending_stats(requeue_at).await.unwrap(),
        (3, Some(truncate_micros(now + mins(1))))
    );
    // It is due again: claimed with the other due items.
    let claimed = outbox
        .claim_due(requeue_at, 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(ids(&claimed), [all[1], all[2], all[5]]);
    assert_eq!(claimed[0].attempts, 1);

    // Only dead items can be requeued; the error names the actual status.
    assert_conflict(
        outbox.requeue_dead(all[1], requeue_at).await.unwrap_err(),
        "pending",
    );
    assert_conflict(
        outbox.requeue_dead(all[0], requeue_at).await.unwrap_err(),
        "delivered",
    );
    assert_not_found(
        outbox
            .requeue_dead(all[5] + 1000, requeue_at)
            .await
            .unwrap_err(),
        "outbox item",
    );
    assert_eq!(
        outbox
            .list(Some(OutboxStatus::Dead), 10, None)
            .await
            .unwrap()
            .len(),
        1,
        "the failed requeues changed nothing"
    );
}

fn msg(session: &str, n: u32) -> NewQueuedMessage {
    NewQueuedMessage {
        session_id: sid(session),
        idempotency_key: Some(format!("k{n}")),
        recipient: Wid::parse("34600000000@c.us").unwrap(),
        body: format!("message {n}"),
        not_before: t0(),
    }
}

async fn queue_depth(sessions: &dyn SessionStore, queue: &dyn MessageQueue) {
    create_session(sessions, "qa").await;
    create_session(sessions, "qb").await;
    assert_eq!(queue.depth().await.unwrap(), 0);
    queue.enqueue(&msg("qa", 1), t0()).await.unwrap();
    queue.enqueue(&msg("qa", 2), t0()).await.unwrap();
    queue.enqueue(&msg("qb", 3), t0()).await.unwrap();
    // A duplicate idempotency key adds nothing.
    queue.enqueue(&msg("qb", 3), t0()).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 3);

    let taken = queue.take_next(&sid("qa"), t0()).await.unwrap().unwrap();
    assert_eq!(queue.depth().await.unwrap(), 3, "sending still counts");
    queue
        .mark_sent(taken.id, &MessageId("wamid-1".into()), t0())
        .await
        .unwrap();
    assert_eq!(queue.depth().await.unwrap(), 2);
    let taken = queue.take_next(&sid("qb"), t0()).await.unwrap().unwrap();
    queue.mark_failed(taken.id, "blocked", None).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 1);
    let taken = queue.take_next(&sid("qa"), t0()).await.unwrap().unwrap();
    queue
        .mark_failed(taken.id, "later", Some(t0() + mins(5)))
        .await
        .unwrap();
    assert_eq!(queue.depth().await.unwrap(), 1, "queued for a retry counts");
    assert!(sessions.delete(&sid("qa")).await.unwrap());
    assert_eq!(queue.depth().await.unwrap(), 0);
}

/// Every case, each on a fresh database opened with `url` through [`store::open`].
async fn run_case(stores: &Stores, case: &str) {
    match case {
        "tenants" => tenants_lifecycle(stores.tenants.as_ref()).await,
        "api_keys" => api_keys_lifecycle(stores.tenants.as_ref()).await,
        "numbers" => {
            number_cache_lifecycle(stores.sessions.as_ref(), stores.numbers.as_ref()).await
        }
        "outbox" => outbox_list_requeue_and_stats(stores.outbox.as_ref()).await,
        "depth" => queue_depth(stores.sessions.as_ref(), stores.messages.as_ref()).await,
        other => panic!("unknown case {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite: a temp file per test.

mod sqlite {
    use super::*;

    async fn with_sqlite(case: &str) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db/whatsapp.db").display());
        let stores = store::open(&url).await.unwrap();
        run_case(&stores, case).await;
    }

    #[tokio::test]
    async fn tenants() {
        with_sqlite("tenants").await;
    }

    #[tokio::test]
    async fn api_keys() {
        with_sqlite("api_keys").await;
    }

    #[tokio::test]
    async fn number_cache() {
        with_sqlite("numbers").await;
    }

    #[tokio::test]
    async fn outbox_list_requeue_and_stats() {
        with_sqlite("outbox").await;
    }

    #[tokio::test]
    async fn message_queue_depth() {
        with_sqlite("depth").await;
    }

    #[tokio::test]
    async fn the_store_hands_out_the_same_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::SqliteSessionStore::open(dir.path().join("w.db"))
            .await
            .unwrap();
        store
            .tenants()
            .create_tenant(
                &NewTenant {
                    id: tid("acme"),
                    name: None,
                },
                t0(),
            )
            .await
            .unwrap();
        let again = store::open(&format!("sqlite://{}", dir.path().join("w.db").display()))
            .await
            .unwrap();
        assert!(
            again
                .tenants
                .get_tenant(&tid("acme"))
                .await
                .unwrap()
                .is_some()
        );
        create_session(&store, "s1").await;
        let entry = CachedNumber {
            session_id: sid("s1"),
            phone: PhoneNumber::new("34600000001").unwrap(),
            exists: false,
            wid: None,
            checked_at: t0(),
        };
        store.numbers().put(&entry).await.unwrap();
        assert!(
            again
                .numbers
                .get(&entry.session_id, &entry.phone)
                .await
                .unwrap()
                .is_some()
        );
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
        whatsapp_tests::postgres::with_database("wa_tenants_test", test).await
    }

    async fn with_postgres(case: &'static str) {
        with_database(|url| async move {
            let stores = store::open(&url).await.unwrap();
            run_case(&stores, case).await;
        })
        .await;
    }

    #[tokio::test]
    async fn tenants() {
        with_postgres("tenants").await;
    }

    #[tokio::test]
    async fn api_keys() {
        with_postgres("api_keys").await;
    }

    #[tokio::test]
    async fn number_cache() {
        with_postgres("numbers").await;
    }

    #[tokio::test]
    async fn outbox_list_requeue_and_stats() {
        with_postgres("outbox").await;
    }

    #[tokio::test]
    async fn message_queue_depth() {
        with_postgres("depth").await;
    }

    #[tokio::test]
    async fn new_tables_have_row_level_security() {
        with_database(|url| async move {
            let store = store::PostgresSessionStore::connect(&url).await.unwrap();
            let rows: Vec<(String, bool)> = sqlx::query_as(
                "SELECT relname::text, relrowsecurity FROM pg_class \
                 WHERE relname IN ('tenants', 'api_keys', 'number_checks') ORDER BY relname",
            )
            .fetch_all(store.pool())
            .await
            .unwrap();
            assert_eq!(
                rows,
                [
                    ("api_keys".to_owned(), true),
                    ("number_checks".to_owned(), true),
                    ("tenants".to_owned(), true)
                ]
            );
            store.close().await;
        })
        .await;
    }
}
