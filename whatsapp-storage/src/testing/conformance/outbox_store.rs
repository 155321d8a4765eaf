//! The [`OutboxStore`] conformance suite: one case per promise of its `# Contract`.
//!
//! Run everything with [`run_all`]; each case is also public. Cases use fixed timestamps
//! with nanoseconds (so they check truncation to microseconds) and de-duplication keys
//! unique to the case and run.
//!
//! An outbox has no delete, and `claim_due` and `pending_stats` see every item. So each case
//! starts by settling whatever is still pending (it claims every item, due or not, and
//! marks it dead), and looks only at the items it enqueued itself (ids above those of
//! earlier cases). Run the suite on an outbox nobody else uses during the run.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;
use whatsapp_core::testing::conformance::{Runner, unique_token};
use whatsapp_core::types::truncate_micros;

use super::{assert_conflict, assert_not_found, mins, t};
use crate::store::{NewOutboxItem, OutboxItem, OutboxKind, OutboxStatus, OutboxStore};

/// Runs every case against `outbox`, then panics naming each case that failed.
pub async fn run_all(outbox: &dyn OutboxStore) {
    let mut r = Runner::new("outbox_store");
    r.case(
        "enqueue_stores_pending_and_dedupes",
        enqueue_stores_pending_and_dedupes(outbox),
    )
    .await;
    r.case(
        "claim_due_takes_the_oldest_due_and_hides_them",
        claim_due_takes_the_oldest_due_and_hides_them(outbox),
    )
    .await;
    r.case(
        "concurrent_claims_never_overlap",
        concurrent_claims_never_overlap(&[outbox]),
    )
    .await;
    r.case(
        "marks_apply_to_pending_items_only",
        marks_apply_to_pending_items_only(outbox),
    )
    .await;
    r.case(
        "mark_failed_retries_or_kills",
        mark_failed_retries_or_kills(outbox),
    )
    .await;
    r.case(
        "list_is_newest_first_filtered_and_paged",
        list_is_newest_first_filtered_and_paged(outbox),
    )
    .await;
    r.case(
        "requeue_dead_resets_attempts_and_keeps_the_error",
        requeue_dead_resets_attempts_and_keeps_the_error(outbox),
    )
    .await;
    r.case(
        "pending_stats_count_pending_and_cap_at_now",
        pending_stats_count_pending_and_cap_at_now(outbox),
    )
    .await;
    r.finish();
}

/// An id no outbox in a test has handed out.
const MISSING_ID: i64 = 987_654_321_012;

/// Far enough ahead that every pending item is due and every claim has run out.
fn far_future() -> DateTime<Utc> {
    t(0) + TimeDelta::days(3650)
}

/// Marks every pending item dead, so that a case starts with nothing pending (an outbox
/// cannot delete).
async fn settle_pending(outbox: &dyn OutboxStore) {
    loop {
        let batch = outbox
            .claim_due(far_future(), 100, Duration::from_secs(1))
            .await
            .expect("claim_due");
        if batch.is_empty() {
            break;
        }
        for item in batch {
            outbox
                .mark_failed(item.id, "settled by the conformance suite", None)
                .await
                .expect("mark_failed");
        }
    }
    assert_eq!(
        outbox.pending_stats(t(0)).await.unwrap(),
        (0, None),
        "nothing is pending once settled"
    );
}

fn email(to: &str) -> NewOutboxItem {
    NewOutboxItem {
        kind: OutboxKind::Email,
        payload: serde_json::json!({ "to": to, "subject": "QR needed", "n": [1, 2.5, null] }),
        dedupe_key: None,
    }
}

fn ids(items: &[OutboxItem]) -> Vec<i64> {
    items.iter().map(|i| i.id).collect()
}

/// The items of `items` from `first` on (this case's own, the newest ones).
fn ours(items: Vec<OutboxItem>, first: i64) -> Vec<OutboxItem> {
    items.into_iter().filter(|i| i.id >= first).collect()
}

/// `enqueue` stores a pending item due at `now` (no attempt yet, payload as given); with a
/// `dedupe_key` already stored it stores nothing and returns the existing item.
pub async fn enqueue_stores_pending_and_dedupes(outbox: &dyn OutboxStore) {
    settle_pending(outbox).await;
    let now = t(0);
    let first = outbox
        .enqueue(&email("owner@example.com"), now)
        .await
        .unwrap();
    assert_eq!(first.status, OutboxStatus::Pending);
    assert_eq!(first.kind, OutboxKind::Email);
    assert_eq!(first.attempts, 0);
    assert_eq!(first.next_attempt_at, truncate_micros(now));
    assert_eq!(first.created_at, truncate_micros(now));
    assert_eq!(first.payload, email("owner@example.com").payload);
    assert_eq!((&first.last_error, first.delivered_at), (&None, None));
    assert_eq!(outbox.get(first.id).await.unwrap(), Some(first.clone()));

    // The same dedupe key stores one item and returns the first one.
    let key = format!("qr:alice:{}", unique_token());
    let mut hook = NewOutboxItem {
        kind: OutboxKind::Webhook,
        payload: serde_json::json!({ "url": "https://example.com/hook" }),
        dedupe_key: Some(key.clone()),
    };
    let a = outbox.enqueue(&hook, now).await.unwrap();
    hook.payload = serde_json::json!({ "url": "https://example.com/other" });
    let b = outbox.enqueue(&hook, now + mins(1)).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a.kind, OutboxKind::Webhook);
    assert_eq!(a.dedupe_key.as_deref(), Some(key.as_str()));
    assert!(a.id > first.id, "ids increase");
    // Without a key, the same item twice is two items.
    let again = outbox
        .enqueue(&email("owner@example.com"), now)
        .await
        .unwrap();
    assert_ne!(again.id, first.id);
    assert_eq!(outbox.pending_stats(now).await.unwrap().0, 3);
}

/// `claim_due` takes up to `limit` pending items due at `now`, oldest due first, counts an
/// attempt on each and hides them until `now + hold`; then they are claimed again (the
/// worker that held them is presumed dead).
pub async fn claim_due_takes_the_oldest_due_and_hides_them(outbox: &dyn OutboxStore) {
    settle_pending(outbox).await;
    let now = t(0);
    let first = outbox
        .enqueue(&email("owner@example.com"), now)
        .await
        .unwrap();
    let hook = NewOutboxItem {
        kind: OutboxKind::Webhook,
        payload: serde_json::json!({ "url": "https://example.com/hook" }),
        dedupe_key: Some(format!("qr:alice:{}", unique_token())),
    };
    let a = outbox.enqueue(&hook, now).await.unwrap();
    let not_yet = outbox
        .enqueue(&email("later@example.com"), now + mins(30))
        .await
        .unwrap();

    // Both are due; a claim takes them (oldest first), counts an attempt and hides them.
    let claimed = outbox
        .claim_due(now, 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(ids(&claimed), [first.id, a.id]);
    assert!(claimed.iter().all(|i| i.attempts == 1));
    assert!(
        outbox
            .claim_due(now + mins(0), 10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );

    // The e-mail fails, to be retried at +5 min.
    outbox
        .mark_failed(first.id, "smtp 451 try later", Some(now + mins(5)))
        .await
        .unwrap();
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
    // The one enqueued for +30 min (enqueued at that `now`) waits until then.
    outbox.mark_delivered(a.id, now + mins(6)).await.unwrap();
    outbox
        .mark_delivered(first.id, now + mins(6))
        .await
        .unwrap();
    let last = outbox
        .claim_due(now + mins(30), 10, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(ids(&last), [not_yet.id]);
}

/// Concurrent claims never return the same item: workers on `outboxes` (round-robin: one
/// outbox, or several handles on one backend, such as two nodes' pools) drain 24 items,
/// and each is claimed exactly once.
pub async fn concurrent_claims_never_overlap(outboxes: &[&dyn OutboxStore]) {
    const ITEMS: usize = 24;
    const WORKERS: usize = 6;
    settle_pending(outboxes[0]).await;
    for i in 0..ITEMS {
        outboxes[0]
            .enqueue(&email(&format!("u{i}@example.com")), t(0))
            .await
            .unwrap();
    }
    let workers = (0..WORKERS).map(|w| {
        let outbox = outboxes[w % outboxes.len()];
        async move {
            let mut mine = Vec::new();
            loop {
                let batch = outbox
                    .claim_due(t(0), 3, Duration::from_secs(600))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    break mine;
                }
                mine.extend(batch.into_iter().map(|i| i.id));
            }
        }
    });
    let mut all: Vec<i64> = join_all(workers).await.into_iter().flatten().collect();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "an item was claimed twice");
    assert_eq!(all.len(), ITEMS, "every item was claimed once");
}

/// `mark_delivered` / `mark_failed` apply to pending items only (otherwise
/// [`Error::Conflict`](whatsapp_core::Error::Conflict), naming the status; a missing id is [`Error::NotFound`](whatsapp_core::Error::NotFound)). A delivery
/// records its time and clears the last error.
pub async fn marks_apply_to_pending_items_only(outbox: &dyn OutboxStore) {
    settle_pending(outbox).await;
    let now = t(0);
    let first = outbox
        .enqueue(&email("owner@example.com"), now)
        .await
        .unwrap();
    outbox
        .claim_due(now, 10, Duration::from_secs(60))
        .await
        .unwrap();
    outbox
        .mark_failed(first.id, "smtp 451 try later", Some(now + mins(5)))
        .await
        .unwrap();
    outbox
        .claim_due(now + mins(5), 10, Duration::from_secs(60))
        .await
        .unwrap();
    let done = outbox
        .mark_delivered(first.id, now + mins(6))
        .await
        .unwrap();
    assert_eq!(done.status, OutboxStatus::Delivered);
    assert_eq!(done.delivered_at, Some(truncate_micros(now + mins(6))));
    assert_eq!(done.last_error, None);
    assert_eq!(done.attempts, 2);
    assert_eq!(outbox.get(first.id).await.unwrap(), Some(done.clone()));
    let err = outbox
        .mark_delivered(first.id, now + mins(7))
        .await
        .unwrap_err();
    assert_conflict(err, "delivered");
    let err = outbox
        .mark_failed(first.id, "x", Some(now + mins(8)))
        .await
        .unwrap_err();
    assert_conflict(err, "delivered");
    assert_eq!(
        outbox.get(first.id).await.unwrap(),
        Some(done),
        "refused marks change nothing"
    );

    assert_not_found(
        outbox.mark_failed(MISSING_ID, "x", None).await.unwrap_err(),
        "outbox item",
    );
    assert_not_found(
        outbox.mark_delivered(MISSING_ID, now).await.unwrap_err(),
        "outbox item",
    );
    assert_eq!(outbox.get(MISSING_ID).await.unwrap(), None);
}

/// `mark_failed` with a `retry_at` keeps the item pending until then, with the reason;
/// without one the item is dead and never claimed again.
pub async fn mark_failed_retries_or_kills(outbox: &dyn OutboxStore) {
    settle_pending(outbox).await;
    let now = t(0);
    let first = outbox
        .enqueue(&email("owner@example.com"), now)
        .await
        .unwrap();
    let second = outbox
        .enqueue(&email("other@example.com"), now)
        .await
        .unwrap();
    outbox
        .claim_due(now, 10, Duration::from_secs(60))
        .await
        .unwrap();

    // A failure with a retry time keeps it pending until then.
    let failed = outbox
        .mark_failed(first.id, "smtp 451 try later", Some(now + mins(5)))
        .await
        .unwrap();
    assert_eq!(failed.status, OutboxStatus::Pending);
    assert_eq!(failed.last_error.as_deref(), Some("smtp 451 try later"));
    assert_eq!(failed.next_attempt_at, truncate_micros(now + mins(5)));
    assert!(
        outbox
            .claim_due(now + mins(4), 10, Duration::from_secs(600))
            .await
            .unwrap()
            .iter()
            .all(|i| i.id != first.id),
        "not before its retry time"
    );

    // Giving up: dead, never claimed again.
    let dead = outbox
        .mark_failed(second.id, "410 gone", None)
        .await
        .unwrap();
    assert_eq!(dead.status, OutboxStatus::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("410 gone"));
    let retried = outbox
        .claim_due(now + mins(5), 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(ids(&retried), [first.id]);
    outbox
        .mark_failed(first.id, "550 no such user", None)
        .await
        .unwrap();
    assert!(
        outbox
            .claim_due(now + mins(600), 10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Six items, created a minute apart from `now`: 0 and 3 delivered, 1 and 4 dead, 2 and 5
/// pending (retry at `later + 1 min`). Returns them and `later`.
async fn six_items(outbox: &dyn OutboxStore) -> (Vec<OutboxItem>, DateTime<Utc>) {
    let now = t(0);
    let mut items = Vec::new();
    for n in 0..6 {
        items.push(
            outbox
                .enqueue(
                    &email(&format!("user{n}@example.com")),
                    now + mins(i64::from(n)),
                )
                .await
                .unwrap(),
        );
    }
    let all = ids(&items);
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
    (items, later)
}

/// `list` returns items newest first (id descending), optionally of one status, at most
/// `limit`; with `before_id` only lower ids, so that paging walks every item exactly once.
pub async fn list_is_newest_first_filtered_and_paged(outbox: &dyn OutboxStore) {
    settle_pending(outbox).await;
    let (items, _) = six_items(outbox).await;
    let all = ids(&items);
    let first = all[0];

    // Newest first; filtered by status; limited.
    let newest_first: Vec<i64> = all.iter().rev().copied().collect();
    assert_eq!(
        ids(&ours(outbox.list(None, 100, None).await.unwrap(), first)),
        newest_first
    );
    assert_eq!(
        ids(&outbox.list(None, 6, None).await.unwrap()),
        newest_first
    );
    let dead = ours(
        outbox
            .list(Some(OutboxStatus::Dead), 100, None)
            .await
            .unwrap(),
        first,
    );
    assert_eq!(ids(&dead), [all[4], all[1]]);
    assert!(
        outbox
            .list(Some(OutboxStatus::Dead), 100, None)
            .await
            .unwrap()
            .iter()
            .all(|i| i.status == OutboxStatus::Dead)
    );
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
        assert!(page.len() <= 4);
        let done = page.is_empty() || page.iter().any(|i| i.id < first);
        before = page.last().map(|i| i.id);
        paged.extend(ids(&ours(page, first)));
        if done {
            break;
        }
    }
    assert_eq!(paged, newest_first);
    assert_eq!(
        ids(&outbox
            .list(Some(OutboxStatus::Pending), 10, Some(all[5]))
            .await
            .unwrap()),
        [all[2]]
    );
}

/// `requeue_dead` puts a dead item back to pending, due at `now`, attempts reset to 0 and
/// the last error kept; any other status is [`Error::Conflict`](whatsapp_core::Error::Conflict) naming it, a missing id
/// [`Error::NotFound`](whatsapp_core::Error::NotFound).
pub async fn requeue_dead_resets_attempts_and_keeps_the_error(outbox: &dyn OutboxStore) {
    settle_pending(outbox).await;
    let (items, later) = six_items(outbox).await;
    let all = ids(&items);
    let now = t(0);

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
            .requeue_dead(MISSING_ID, requeue_at)
            .await
            .unwrap_err(),
        "outbox item",
    );
    assert_eq!(
        ours(
            outbox
                .list(Some(OutboxStatus::Dead), 10, None)
                .await
                .unwrap(),
            all[0]
        )
        .len(),
        1,
        "the failed requeues changed nothing"
    );
}

/// `pending_stats` counts the pending items (claimed ones included) and gives the
/// `created_at` of the oldest, never later than `now`.
pub async fn pending_stats_count_pending_and_cap_at_now(outbox: &dyn OutboxStore) {
    settle_pending(outbox).await;
    let now = t(0);
    assert_eq!(outbox.pending_stats(now).await.unwrap(), (0, None));
    let (_, later) = six_items(outbox).await;
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
    // Claimed items are still pending.
    let claimed = outbox
        .claim_due(later + mins(1), 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(outbox.pending_stats(later).await.unwrap().0, 2);
}
