//! Tenants, API keys and the number-check cache against real databases (the outbox has its own
//! conformance suite): SQLite in a temp file per test, Postgres in a fresh
//! database per test.
//!
//! The Postgres tests need `DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`,
//! a role that may `CREATE DATABASE`); without it they fail, saying so.

use std::future::Future;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use whatsapp_core::types::truncate_micros;
use whatsapp_core::{Error, PhoneNumber, SessionId, SessionRecord, SessionStore, TenantId, Wid};
use whatsapp_storage::store::{self, CachedNumber, NewTenant, NumberCache, Stores, TenantStore};
use whatsapp_storage::testing::conformance::{assert_conflict, assert_not_found};

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

/// Every case, each on a fresh database opened with `url` through [`store::open`]. (The
/// outbox and the message queue have their conformance suites, run in `store_backends.rs`.)
async fn run_case(stores: &Stores, case: &str) {
    match case {
        "tenants" => tenants_lifecycle(stores.tenants.as_ref()).await,
        "api_keys" => api_keys_lifecycle(stores.tenants.as_ref()).await,
        "numbers" => {
            number_cache_lifecycle(stores.sessions.as_ref(), stores.numbers.as_ref()).await
        }
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
