//! The [`SessionStore`] conformance suite: one case per promise of its `# Contract`.
//!
//! Run everything with [`run_all`]; each case is also public. Cases use fixed timestamps
//! with nanoseconds (the `now` arguments), so they check truncation to microseconds and
//! never depend on the wall clock. Ids look like `ct-<case>-<unique token>-<suffix>`.
//!
//! Notes for SQL backends: `list` must order ids by bytes (`COLLATE "C"` in Postgres; a
//! locale collation orders `a-x`, `a9`, `a_y`, `ab` differently), and counters hold the full
//! `u32` range (`BIGINT` in Postgres).

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;

use super::{Runner, unique_token};
use crate::error::Error;
use crate::store::SessionStore;
use crate::types::{
    EmailAddress, Lease, NodeId, SessionFilter, SessionId, SessionPatch, SessionRecord,
    SessionStatus, TenantId, Wid, truncate_micros,
};

/// Runs every case against `store`, then panics naming each case that failed.
pub async fn run_all(store: &dyn SessionStore) {
    let mut r = Runner::new("session_store");
    r.case(
        "create_conflicts_on_duplicate",
        create_conflicts_on_duplicate(store),
    )
    .await;
    r.case("get_missing_is_none", get_missing_is_none(store))
        .await;
    r.case(
        "missing_ids_are_not_found",
        missing_ids_are_not_found(store),
    )
    .await;
    r.case(
        "names_are_unique_per_tenant",
        names_are_unique_per_tenant(store),
    )
    .await;
    r.case("round_trip_equals", round_trip_equals(store)).await;
    r.case("list_filters_and_orders", list_filters_and_orders(store))
        .await;
    r.case(
        "update_applies_only_patch",
        update_applies_only_patch(store),
    )
    .await;
    r.case(
        "transition_is_compare_and_set",
        transition_is_compare_and_set(store),
    )
    .await;
    r.case(
        "concurrent_transitions_one_wins",
        concurrent_transitions_one_wins(store),
    )
    .await;
    r.case(
        "lease_claim_renew_expire_release",
        lease_claim_renew_expire_release(store),
    )
    .await;
    r.case(
        "concurrent_claims_one_wins",
        concurrent_claims_one_wins(store),
    )
    .await;
    r.case("delete_is_idempotent", delete_is_idempotent(store))
        .await;
    r.finish();
}

/// `record` as the contract says it reads back: every timestamp truncated to microseconds.
pub fn as_stored(record: &SessionRecord) -> SessionRecord {
    let mut r = record.clone();
    r.created_at = truncate_micros(r.created_at);
    r.updated_at = truncate_micros(r.updated_at);
    r.last_seen_at = r.last_seen_at.map(truncate_micros);
    r.last_connected_at = r.last_connected_at.map(truncate_micros);
    r.last_activity_at = r.last_activity_at.map(truncate_micros);
    r.last_backup_at = r.last_backup_at.map(truncate_micros);
    r.expires_at = r.expires_at.map(truncate_micros);
    r.linked_at = r.linked_at.map(truncate_micros);
    if let Some(lease) = &mut r.lease {
        lease.expires_at = truncate_micros(lease.expires_at);
    }
    r
}

/// A fixed instant with nanoseconds, plus `secs`.
fn t(secs: i64) -> DateTime<Utc> {
    let base: DateTime<Utc> = "2026-03-28T12:00:00.123456789Z"
        .parse()
        .expect("valid timestamp");
    base + chrono::Duration::seconds(secs)
}

fn node(name: &str) -> NodeId {
    NodeId::new(name).expect("valid node id")
}

/// Ids and tenants unique to one case and run.
struct Keys {
    prefix: String,
}

impl Keys {
    fn new(case: &str) -> Self {
        Keys {
            prefix: format!("ct-{case}-{}", unique_token()),
        }
    }

    fn id(&self, suffix: &str) -> SessionId {
        SessionId::new(format!("{}-{suffix}", self.prefix)).expect("valid session id")
    }

    fn tenant(&self, suffix: &str) -> TenantId {
        TenantId::new(format!("{}-{suffix}", self.prefix)).expect("valid tenant id")
    }

    fn ours(&self, records: &[SessionRecord]) -> Vec<SessionRecord> {
        records
            .iter()
            .filter(|r| r.id.as_str().starts_with(&self.prefix))
            .cloned()
            .collect()
    }
}

/// A record with every field set, timestamps with nanoseconds, awkward text.
fn full_record(id: SessionId, tenant: TenantId, status: SessionStatus) -> SessionRecord {
    SessionRecord {
        name: id.clone(),
        id,
        tenant,
        owner_email: Some(EmailAddress::new("owner@example.com").expect("valid e-mail")),
        status,
        wid: Some(Wid::parse("34600000000@c.us").expect("valid wid")),
        push_name: Some("Zoë \"O'Brien\" 🚀 ✓".to_owned()),
        created_at: t(0),
        updated_at: t(1),
        last_seen_at: Some(t(2)),
        last_connected_at: Some(t(3)),
        last_activity_at: Some(t(4)),
        last_backup_at: Some(t(5)),
        expires_at: Some(t(30 * 86_400)),
        last_error: Some("line 1\nline 2: it's \"broken\"; -- %_\\".to_owned()),
        restarts: u32::MAX,
        reconnects: 7,
        linked_at: Some(t(6)),
        lease: None,
    }
}

async fn cleanup(store: &dyn SessionStore, ids: &[SessionId]) {
    for id in ids {
        let _ = store.delete(id).await;
    }
}

async fn must_get(store: &dyn SessionStore, id: &SessionId) -> SessionRecord {
    store
        .get(id)
        .await
        .unwrap_or_else(|e| panic!("get({id}) failed: {e}"))
        .unwrap_or_else(|| panic!("get({id}) returned None for a record that exists"))
}

fn assert_not_found<T: std::fmt::Debug>(what: &str, r: crate::Result<T>) {
    match r {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{what} on a missing id: expected Err(NotFound), got {other:?}"),
    }
}

fn assert_conflict<T: std::fmt::Debug>(what: &str, r: &crate::Result<T>) {
    match r {
        Err(Error::Conflict(_)) => {}
        other => panic!("{what}: expected Err(Conflict), got {other:?}"),
    }
}

/// **Create** fails with `Conflict` when the id exists, and changes nothing.
pub async fn create_conflicts_on_duplicate(store: &dyn SessionStore) {
    let k = Keys::new("dup");
    let id = k.id("a");
    let original = full_record(id.clone(), k.tenant("t"), SessionStatus::Ready);
    store.create(&original).await.expect("create a new record");

    let mut other = SessionRecord::new(id.clone(), k.tenant("other"), t(100));
    other.push_name = Some("someone else".to_owned());
    other.status = SessionStatus::Stopped;
    let r = store.create(&other).await;
    assert_conflict("create of an existing id", &r);
    assert_eq!(
        must_get(store, &id).await,
        as_stored(&original),
        "a create that failed with Conflict must change nothing"
    );
    cleanup(store, &[id]).await;
}

/// **Get** of a missing id returns `Ok(None)`.
pub async fn get_missing_is_none(store: &dyn SessionStore) {
    let k = Keys::new("getnone");
    let r = store.get(&k.id("never")).await;
    assert!(
        matches!(r, Ok(None)),
        "get of a missing id: expected Ok(None), got {r:?}"
    );
}

/// Every method but `get` and `delete` fails with `NotFound` on a missing id; `delete`
/// returns `Ok(false)`.
pub async fn missing_ids_are_not_found(store: &dyn SessionStore) {
    let k = Keys::new("missing");
    let id = k.id("never");
    let patch = SessionPatch {
        restarts: Some(1),
        ..SessionPatch::default()
    };
    assert_not_found("update", store.update(&id, &patch, t(1)).await);
    assert_not_found(
        "transition",
        store
            .transition(&id, &[], SessionStatus::Starting, t(1))
            .await,
    );
    assert_not_found(
        "transition with a from-list",
        store
            .transition(
                &id,
                &[SessionStatus::Created],
                SessionStatus::Starting,
                t(1),
            )
            .await,
    );
    assert_not_found(
        "claim_lease",
        store
            .claim_lease(&id, &node("node-a"), t(1), Duration::from_secs(30))
            .await,
    );
    assert_not_found(
        "release_lease",
        store.release_lease(&id, &node("node-a")).await,
    );
    let r = store.delete(&id).await;
    assert!(
        matches!(r, Ok(false)),
        "delete of a missing id: expected Ok(false), got {r:?}"
    );
    assert!(
        matches!(store.get(&id).await, Ok(None)),
        "the failed calls must not have created {id}"
    );
}

/// **Round trip**: a record reads back equal to what was written, timestamps truncated to
/// microseconds — for every status, with every field set, with none set, and with a lease.
pub async fn round_trip_equals(store: &dyn SessionStore) {
    let k = Keys::new("roundtrip");
    let tenant = k.tenant("t");
    let mut written = Vec::new();
    for (i, status) in SessionStatus::ALL.into_iter().enumerate() {
        written.push(full_record(
            k.id(&format!("s{i:02}")),
            tenant.clone(),
            status,
        ));
    }
    let mut minimal =
        SessionRecord::named(k.id("minimal"), k.id("minimal-name"), tenant.clone(), t(0));
    minimal.created_at = t(0);
    minimal.updated_at = t(0);
    written.push(minimal);
    let mut leased = full_record(k.id("leased"), tenant.clone(), SessionStatus::Ready);
    leased.lease = Some(Lease {
        node: node("node-a"),
        expires_at: t(60),
    });
    leased.restarts = 0;
    leased.reconnects = u32::MAX;
    written.push(leased);

    for r in &written {
        store
            .create(r)
            .await
            .unwrap_or_else(|e| panic!("create({}) failed: {e}", r.id));
    }
    for r in &written {
        assert_eq!(
            must_get(store, &r.id).await,
            as_stored(r),
            "record {} read back differs from what was written (timestamps truncated to µs)",
            r.id
        );
    }
    let mut expected: Vec<SessionRecord> = written.iter().map(as_stored).collect();
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    let listed = store
        .list(&SessionFilter {
            tenant: Some(tenant),
            name: None,
            statuses: vec![],
        })
        .await
        .expect("list the tenant");
    assert_eq!(
        listed, expected,
        "list must return the same records as get, ordered by id"
    );
    let ids: Vec<SessionId> = written.iter().map(|r| r.id.clone()).collect();
    cleanup(store, &ids).await;
}

/// **Create** refuses a second session of one tenant with the same name (whatever its id),
/// accepts the same name in another tenant, and **list** finds a session by tenant and name.
/// After a delete the name is free again for a new instance.
pub async fn names_are_unique_per_tenant(store: &dyn SessionStore) {
    let k = Keys::new("names");
    let (ta, tb) = (k.tenant("ta"), k.tenant("tb"));
    let name = k.id("shop");
    let first = SessionRecord::named(k.id("i1"), name.clone(), ta.clone(), t(0));
    store
        .create(&first)
        .await
        .expect("create the first instance");
    let again = SessionRecord::named(k.id("i2"), name.clone(), ta.clone(), t(1));
    match store.create(&again).await {
        Err(Error::Conflict(_)) => {}
        other => panic!("a second {name} in tenant {ta} must conflict, got {other:?}"),
    }
    assert!(
        store.get(&again.id).await.expect("get").is_none(),
        "a refused create must store nothing"
    );
    let other_tenant = SessionRecord::named(k.id("i3"), name.clone(), tb.clone(), t(2));
    store
        .create(&other_tenant)
        .await
        .expect("the same name in another tenant is no conflict");
    let by_name = store
        .list(&SessionFilter {
            tenant: Some(ta.clone()),
            name: Some(name.clone()),
            statuses: vec![],
        })
        .await
        .expect("list by tenant and name");
    assert_eq!(by_name, vec![as_stored(&first)], "list by tenant and name");
    store.delete(&first.id).await.expect("delete");
    store
        .create(&again)
        .await
        .expect("after a delete the name is free for a new instance");
    cleanup(store, &[again.id, other_tenant.id]).await;
}

/// **List** returns the records matching the filter (tenant, any of the statuses), ordered
/// by id in byte order.
pub async fn list_filters_and_orders(store: &dyn SessionStore) {
    use SessionStatus as S;
    let k = Keys::new("list");
    let (ta, tb) = (k.tenant("ta"), k.tenant("tb"));
    // Created out of order; in byte order: a-x < a9 < a_y < ab < b.
    let spec = [
        ("ab", &ta, S::Ready),
        ("a-x", &ta, S::Qr),
        ("b", &tb, S::Ready),
        ("a_y", &ta, S::Stopped),
        ("a9", &tb, S::Error),
    ];
    let mut written = Vec::new();
    for (suffix, tenant, status) in spec {
        let mut r = full_record(k.id(suffix), tenant.clone(), status);
        r.push_name = Some(format!("record {suffix}"));
        store
            .create(&r)
            .await
            .unwrap_or_else(|e| panic!("create({}) failed: {e}", r.id));
        written.push(as_stored(&r));
    }
    let by_suffix = |s: &str| {
        written
            .iter()
            .find(|r| r.id == k.id(s))
            .cloned()
            .expect("written")
    };
    let expect = |suffixes: &[&str]| suffixes.iter().map(|s| by_suffix(s)).collect::<Vec<_>>();
    let list = |tenant: Option<&TenantId>, statuses: Vec<SessionStatus>| {
        let filter = SessionFilter {
            tenant: tenant.cloned(),
            name: None,
            statuses,
        };
        async move {
            store
                .list(&filter)
                .await
                .unwrap_or_else(|e| panic!("list({filter:?}) failed: {e}"))
        }
    };

    assert_eq!(
        list(Some(&ta), vec![]).await,
        expect(&["a-x", "a_y", "ab"]),
        "list by tenant, ordered by id in byte order"
    );
    assert_eq!(
        list(Some(&ta), vec![S::Ready, S::Stopped]).await,
        expect(&["a_y", "ab"]),
        "list by tenant and any of two statuses"
    );
    assert_eq!(
        list(Some(&tb), vec![S::Ready]).await,
        expect(&["b"]),
        "list by tenant and status"
    );
    let errors = list(None, vec![S::Error]).await;
    assert!(
        errors.iter().all(|r| r.status == S::Error),
        "list by status returned other statuses"
    );
    assert_eq!(
        k.ours(&errors),
        expect(&["a9"]),
        "list by status alone (any tenant)"
    );
    assert_eq!(
        list(Some(&k.tenant("nobody")), vec![]).await,
        vec![],
        "a tenant without sessions lists nothing"
    );
    let all = list(None, vec![]).await;
    assert_eq!(
        k.ours(&all),
        expect(&["a-x", "a9", "a_y", "ab", "b"]),
        "list of everything, ordered by id in byte order"
    );
    assert!(
        all.windows(2).all(|w| w[0].id < w[1].id),
        "list of everything must be strictly ordered by id (byte order)"
    );
    let ids: Vec<SessionId> = written.iter().map(|r| r.id.clone()).collect();
    cleanup(store, &ids).await;
}

/// **Update** applies only the fields set in the patch (`Some(None)` clears), sets
/// `updated_at`, returns the new record, and never changes `status` or `lease`.
pub async fn update_applies_only_patch(store: &dyn SessionStore) {
    let k = Keys::new("update");
    let id = k.id("a");
    store
        .create(&full_record(
            id.clone(),
            k.tenant("t"),
            SessionStatus::Ready,
        ))
        .await
        .expect("create");
    store
        .claim_lease(&id, &node("node-a"), t(10), Duration::from_secs(3600))
        .await
        .expect("claim a lease");
    let mut current = must_get(store, &id).await;
    assert!(current.lease.is_some(), "the lease was stored");

    let patches = [
        // A few fields, clearing two nullable ones.
        SessionPatch {
            last_seen_at: Some(t(20)),
            push_name: Some(Some("New name".to_owned())),
            restarts: Some(3),
            owner_email: Some(None),
            expires_at: Some(None),
            ..SessionPatch::default()
        },
        // Every field.
        SessionPatch {
            owner_email: Some(Some(
                EmailAddress::new("other@example.com").expect("valid e-mail"),
            )),
            wid: Some(Some(Wid::parse("34600000001@c.us").expect("valid wid"))),
            push_name: Some(None),
            last_seen_at: Some(t(41)),
            last_connected_at: Some(t(42)),
            last_activity_at: Some(t(43)),
            last_backup_at: Some(t(44)),
            expires_at: Some(Some(t(45))),
            last_error: Some(Some("went wrong".to_owned())),
            restarts: Some(0),
            reconnects: Some(u32::MAX),
            linked_at: Some(Some(t(46))),
        },
        // Clearing the rest of the nullable fields.
        SessionPatch {
            wid: Some(None),
            last_error: Some(None),
            linked_at: Some(None),
            ..SessionPatch::default()
        },
        // Nothing: only updated_at moves.
        SessionPatch::default(),
    ];
    for (i, patch) in patches.iter().enumerate() {
        let now = t(100 + i as i64);
        let mut expected = current.clone();
        patch.apply(&mut expected);
        expected.updated_at = truncate_micros(now);
        let returned = store
            .update(&id, patch, now)
            .await
            .unwrap_or_else(|e| panic!("update #{i} failed: {e}"));
        assert_eq!(
            returned, expected,
            "update #{i} ({patch:?}) must apply exactly the patch and set updated_at"
        );
        assert_eq!(
            must_get(store, &id).await,
            expected,
            "update #{i}: the stored record must equal the returned one"
        );
        assert_eq!(
            returned.status,
            SessionStatus::Ready,
            "update never changes status"
        );
        assert_eq!(
            returned.lease, current.lease,
            "update never changes the lease"
        );
        current = returned;
    }
    cleanup(store, &[id]).await;
}

/// **Transition** is a compare-and-set on `status`: it succeeds only from one of `from`
/// (an empty `from` accepts any), sets `updated_at`, and otherwise fails with `Conflict`
/// naming the actual status, changing nothing.
pub async fn transition_is_compare_and_set(store: &dyn SessionStore) {
    use SessionStatus as S;
    let k = Keys::new("cas");
    let id = k.id("a");
    let mut written = full_record(id.clone(), k.tenant("t"), S::Created);
    written.lease = Some(Lease {
        node: node("node-a"),
        expires_at: t(3600),
    });
    store.create(&written).await.expect("create");
    let mut current = as_stored(&written);

    let r = store
        .transition(&id, &[S::Created], S::Starting, t(10))
        .await;
    let mut expected = current.clone();
    expected.status = S::Starting;
    expected.updated_at = truncate_micros(t(10));
    assert_eq!(
        r.as_ref().ok(),
        Some(&expected),
        "transition from the current status must succeed and set status and updated_at only (got {r:?})"
    );
    assert_eq!(must_get(store, &id).await, expected);
    current = expected;

    let r = store
        .transition(&id, &[S::Created, S::Qr], S::Ready, t(20))
        .await;
    match &r {
        Err(Error::Conflict(msg)) => assert!(
            msg.contains(S::Starting.as_str()),
            "the Conflict must name the actual status {:?}: {msg:?}",
            S::Starting.as_str()
        ),
        other => panic!(
            "transition from a status the session is not in: expected Conflict, got {other:?}"
        ),
    }
    assert_eq!(
        must_get(store, &id).await,
        current,
        "a failed transition must change nothing"
    );

    let r = store
        .transition(&id, &[S::Created, S::Starting], S::Qr, t(30))
        .await;
    assert_eq!(
        r.as_ref().map(|r| r.status).ok(),
        Some(S::Qr),
        "transition from one of several statuses: {r:?}"
    );
    let r = store.transition(&id, &[], S::Stopped, t(40)).await;
    assert_eq!(
        r.as_ref().map(|r| r.status).ok(),
        Some(S::Stopped),
        "an empty from-list accepts any status: {r:?}"
    );
    let r = store
        .transition(&id, &[S::Stopped], S::Stopped, t(50))
        .await;
    let got = r.unwrap_or_else(|e| panic!("transition to the same status failed: {e}"));
    assert_eq!(got.status, S::Stopped);
    assert_eq!(got.updated_at, truncate_micros(t(50)));
    assert_eq!(
        got.lease, current.lease,
        "transition never changes the lease"
    );
    assert_eq!(got.push_name, current.push_name);
    assert_eq!(got.restarts, current.restarts);
    assert_eq!(must_get(store, &id).await, got);
    cleanup(store, &[id]).await;
}

/// Of concurrent transitions from the same status, exactly one succeeds; the others fail
/// with `Conflict`.
pub async fn concurrent_transitions_one_wins(store: &dyn SessionStore) {
    use SessionStatus as S;
    let k = Keys::new("cas2");
    let targets = [
        S::Starting,
        S::Qr,
        S::Authenticating,
        S::Ready,
        S::Reconnecting,
        S::Disconnected,
        S::Error,
        S::Stopped,
    ];
    let mut ids = Vec::new();
    for round in 0..5 {
        let id = k.id(&format!("r{round}"));
        store
            .create(&SessionRecord::new(id.clone(), k.tenant("t"), t(0)))
            .await
            .expect("create");
        ids.push(id.clone());
        let results = join_all(
            targets
                .iter()
                .map(|to| store.transition(&id, &[S::Created], *to, t(1))),
        )
        .await;
        let winners: Vec<&SessionStatus> = targets
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(to, _)| to)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one of {} concurrent transitions from created must win; results: {results:?}",
            targets.len()
        );
        for r in &results {
            if r.is_err() {
                assert_conflict("a losing concurrent transition", r);
            }
        }
        assert_eq!(
            must_get(store, &id).await.status,
            *winners[0],
            "round {round}: the stored status must be the winner's"
        );
    }
    cleanup(store, &ids).await;
}

/// **Leases**: a claim succeeds with no lease, once the lease expired (`expires_at <= now`),
/// or as a renewal by the holder, storing `now + ttl`; otherwise `Conflict`. `release_lease`
/// clears only the holder's lease.
pub async fn lease_claim_renew_expire_release(store: &dyn SessionStore) {
    let k = Keys::new("lease");
    let id = k.id("a");
    let (a, b) = (node("node-a"), node("node-b"));
    store
        .create(&full_record(
            id.clone(),
            k.tenant("t"),
            SessionStatus::Ready,
        ))
        .await
        .expect("create");
    let before = must_get(store, &id).await;
    let ttl = Duration::from_millis(30_500);
    let ttl_c = chrono::Duration::milliseconds(30_500);

    let lease = store
        .claim_lease(&id, &a, t(0), ttl)
        .await
        .expect("claim of a session without a lease");
    let want = Lease {
        node: a.clone(),
        expires_at: truncate_micros(t(0) + ttl_c),
    };
    assert_eq!(
        lease, want,
        "the lease expires at now + ttl (truncated to µs)"
    );
    let stored = must_get(store, &id).await;
    assert_eq!(stored.lease, Some(want.clone()), "the claim is stored");
    let mut unchanged = stored.clone();
    unchanged.lease = before.lease.clone();
    assert_eq!(unchanged, before, "a claim changes only the lease");

    let r = store.claim_lease(&id, &b, t(10), ttl).await;
    assert_conflict("claim of a lease another node holds", &r);
    assert_eq!(must_get(store, &id).await.lease, Some(want));

    let renewed = store
        .claim_lease(&id, &a, t(10), ttl)
        .await
        .expect("renewal by the holder");
    assert_eq!(
        renewed,
        Lease {
            node: a.clone(),
            expires_at: truncate_micros(t(10) + ttl_c),
        },
        "a renewal moves expires_at to now + ttl"
    );
    let r = store.claim_lease(&id, &b, t(40), ttl).await;
    assert_conflict("claim before the renewed lease expired", &r);

    // The renewed lease ends at t(10) + ttl: still held 1 µs before, free at that instant.
    let end = truncate_micros(t(10) + ttl_c);
    let r = store
        .claim_lease(&id, &b, end - chrono::Duration::microseconds(1), ttl)
        .await;
    assert_conflict("claim 1 µs before the lease expires", &r);
    let taken = store
        .claim_lease(&id, &b, end, Duration::from_secs(60))
        .await
        .expect("claim at the instant the lease expires (expired at now: expires_at <= now)");
    assert_eq!(taken.node, b);
    assert_eq!(
        taken.expires_at,
        truncate_micros(end + chrono::Duration::seconds(60))
    );

    store
        .release_lease(&id, &a)
        .await
        .expect("release by a node that does not hold the lease");
    assert_eq!(
        must_get(store, &id).await.lease,
        Some(taken),
        "release by a non-holder does nothing"
    );
    store
        .release_lease(&id, &b)
        .await
        .expect("release by the holder");
    assert_eq!(
        must_get(store, &id).await.lease,
        None,
        "release by the holder clears the lease"
    );
    store
        .release_lease(&id, &b)
        .await
        .expect("release when there is no lease");
    let again = store
        .claim_lease(&id, &a, t(50), ttl)
        .await
        .expect("claim after release");
    assert_eq!(again.node, a);
    cleanup(store, &[id]).await;
}

/// Of concurrent claims, exactly one wins — on a free session and on an expired lease.
pub async fn concurrent_claims_one_wins(store: &dyn SessionStore) {
    let k = Keys::new("claims");
    let nodes: Vec<NodeId> = (0..8).map(|i| node(&format!("node-{i}"))).collect();
    let ttl = Duration::from_secs(30);
    let mut ids = Vec::new();
    for round in 0..6 {
        let id = k.id(&format!("r{round}"));
        store
            .create(&SessionRecord::new(id.clone(), k.tenant("t"), t(0)))
            .await
            .expect("create");
        ids.push(id.clone());
        let at = if round % 2 == 1 {
            // A dead node's lease, long expired.
            store
                .claim_lease(&id, &node("node-dead"), t(0), Duration::from_secs(1))
                .await
                .expect("claim by the soon-dead node");
            t(100)
        } else {
            t(0)
        };
        let results = join_all(nodes.iter().map(|n| store.claim_lease(&id, n, at, ttl))).await;
        let winners: Vec<&Lease> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one of {} concurrent claims must win; results: {results:?}",
            nodes.len()
        );
        for r in &results {
            if r.is_err() {
                assert_conflict("a losing concurrent claim", r);
            }
        }
        assert_eq!(
            must_get(store, &id).await.lease.as_ref(),
            Some(winners[0]),
            "round {round}: the stored lease must be the winner's"
        );
    }
    cleanup(store, &ids).await;
}

/// **Delete** removes the record and returns whether it existed; the id can be created again.
pub async fn delete_is_idempotent(store: &dyn SessionStore) {
    let k = Keys::new("delete");
    let id = k.id("a");
    let r = full_record(id.clone(), k.tenant("t"), SessionStatus::Ready);
    store.create(&r).await.expect("create");
    assert!(
        matches!(store.delete(&id).await, Ok(true)),
        "delete of an existing record returns Ok(true)"
    );
    assert!(
        matches!(store.get(&id).await, Ok(None)),
        "a deleted record is gone"
    );
    let listed = store
        .list(&SessionFilter {
            tenant: Some(k.tenant("t")),
            name: None,
            statuses: vec![],
        })
        .await
        .expect("list");
    assert!(listed.is_empty(), "a deleted record is not listed");
    assert!(
        matches!(store.delete(&id).await, Ok(false)),
        "a second delete returns Ok(false)"
    );
    store
        .create(&r)
        .await
        .expect("the id can be created again after delete");
    assert_eq!(must_get(store, &id).await, as_stored(&r));
    cleanup(store, &[id]).await;
}
