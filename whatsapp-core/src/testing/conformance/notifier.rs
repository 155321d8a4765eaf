//! The [`Notifier`] conformance suite: one case per promise of its `# Contract`.
//!
//! A notifier is judged by what its receiving end saw, so the suite takes, next to the
//! notifier, a [`NotifierEnd`]: the receiving end (an HTTP endpoint, a log, a recorder)
//! that reports what it accepted and can be made to fail. Run everything with [`run_all`];
//! each case is also public.
//!
//! The receiving end may be shared by several cases and runs: each case compares what was
//! accepted before and after its own calls, and its notifications carry a token unique to
//! the case and run.

use std::time::Duration;

use async_trait::async_trait;

use super::{Runner, unique_token};
use crate::notify::{Notification, NotificationKind, Notifier};
use crate::types::EmailAddress;

/// A failure the receiving end can be told to show on the next delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The end is down or answers with a server error (5xx): it may come back.
    Unavailable,
    /// The end refuses the notification (4xx): trying again will not help.
    Refused,
    /// The end accepts the connection and never answers.
    Hang,
}

/// What the receiving end accepted of one notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The notification's `type`.
    pub kind: NotificationKind,
    /// The recipient, or `None` when the end does not see it (the log notifier keeps
    /// addresses out of the log).
    pub to: Option<EmailAddress>,
    /// The template data.
    pub data: serde_json::Value,
}

impl Received {
    /// What an end that sees everything receives for `n`.
    pub fn of(n: &Notification) -> Self {
        Received {
            kind: n.kind.clone(),
            to: Some(n.to.clone()),
            data: n.data.clone(),
        }
    }

    /// Whether this is what was sent as `n` (the recipient compared when the end saw it).
    pub fn matches(&self, n: &Notification) -> bool {
        self.kind == n.kind && self.data == n.data && self.to.as_ref().is_none_or(|to| *to == n.to)
    }
}

/// The receiving end of the notifier under test, as the suite sees it.
#[async_trait]
pub trait NotifierEnd: Send + Sync {
    /// Every notification the end accepted so far, in order.
    async fn accepted(&self) -> Vec<Received>;

    /// Makes the end show `fault` on the next delivery only. Returns `false` when this end
    /// cannot fail that way (a log is never down); the case that needs it then checks only
    /// what still applies.
    async fn inject(&self, fault: Fault) -> bool;

    /// The longest a `notify` may take when the end hangs: the notifier's own time-out plus
    /// some slack.
    fn time_limit(&self) -> Duration;
}

/// Runs every case against `notifier` and its receiving `end`, then panics naming each case
/// that failed.
pub async fn run_all(notifier: &dyn Notifier, end: &dyn NotifierEnd) {
    let mut r = Runner::new("notifier");
    r.case("ok_means_accepted", ok_means_accepted(notifier, end))
        .await;
    r.case(
        "no_deduplication_in_the_notifier",
        no_deduplication_in_the_notifier(notifier, end),
    )
    .await;
    r.case(
        "unavailable_is_transient_and_not_retried",
        unavailable_is_transient_and_not_retried(notifier, end),
    )
    .await;
    r.case(
        "refusals_are_permanent",
        refusals_are_permanent(notifier, end),
    )
    .await;
    r.case("never_hangs", never_hangs(notifier, end)).await;
    r.finish();
}

/// A notification unique to `case` and this run, with awkward data.
fn notification(case: &str, kind: NotificationKind) -> Notification {
    Notification {
        kind,
        to: EmailAddress::new("owner@example.com").expect("valid e-mail"),
        data: serde_json::json!({
            "case": format!("{case}-{}", unique_token()),
            "session_id": "alice",
            "text": "Zoë \"O'Brien\" 🚀 ✓ <b>&amp;</b>",
            "n": [1, 2.5, null, true],
        }),
    }
}

/// What the end accepted after the first `before` entries.
async fn accepted_since(end: &dyn NotifierEnd, before: usize) -> Vec<Received> {
    end.accepted().await.into_iter().skip(before).collect()
}

/// `notify` returns `Ok` only once the receiving end accepted the notification: each one is
/// there, as sent, as soon as the call returns.
pub async fn ok_means_accepted(notifier: &dyn Notifier, end: &dyn NotifierEnd) {
    let before = end.accepted().await.len();
    let sent = [
        notification("ok", NotificationKind::WhatsappConnected),
        notification("ok", NotificationKind::SessionError),
        notification("ok", NotificationKind::Custom("brand_new_kind".into())),
    ];
    for (i, n) in sent.iter().enumerate() {
        notifier
            .notify(n)
            .await
            .unwrap_or_else(|e| panic!("notify {}: {e}", n.kind));
        let got = accepted_since(end, before).await;
        assert_eq!(
            got.len(),
            i + 1,
            "after {} Ok answer(s) the end accepted: {got:?}",
            i + 1
        );
        assert!(
            got[i].matches(n),
            "accepted {:?}, sent {:?}",
            got[i],
            Received::of(n)
        );
    }
}

/// De-duplication belongs to the caller: the same notification twice is delivered twice.
pub async fn no_deduplication_in_the_notifier(notifier: &dyn Notifier, end: &dyn NotifierEnd) {
    let before = end.accepted().await.len();
    let n = notification("twice", NotificationKind::WhatsappDisconnected);
    notifier.notify(&n).await.expect("first notify");
    notifier.notify(&n).await.expect("second notify");
    let got = accepted_since(end, before).await;
    assert_eq!(got.len(), 2, "both deliveries reach the end: {got:?}");
    assert!(got.iter().all(|r| r.matches(&n)), "{got:?}");
}

/// A failure that may pass is a transient error, nothing is accepted, and the notifier does
/// not retry by itself: the next call delivers only its own notification.
pub async fn unavailable_is_transient_and_not_retried(
    notifier: &dyn Notifier,
    end: &dyn NotifierEnd,
) {
    if !end.inject(Fault::Unavailable).await {
        return;
    }
    let before = end.accepted().await.len();
    let failed = notification("down", NotificationKind::WhatsappReconnected);
    let err = notifier
        .notify(&failed)
        .await
        .expect_err("the end is unavailable");
    assert!(err.is_transient(), "unavailable must be transient: {err:?}");
    assert!(
        accepted_since(end, before).await.is_empty(),
        "nothing accepted"
    );
    let next = notification("after-down", NotificationKind::WhatsappReconnected);
    notifier.notify(&next).await.expect("the end is back");
    let got = accepted_since(end, before).await;
    assert_eq!(got.len(), 1, "no retry of the failed one: {got:?}");
    assert!(got[0].matches(&next), "{got:?}");
}

/// A refusal is not transient, and nothing is accepted.
pub async fn refusals_are_permanent(notifier: &dyn Notifier, end: &dyn NotifierEnd) {
    if !end.inject(Fault::Refused).await {
        return;
    }
    let before = end.accepted().await.len();
    let n = notification("refused", NotificationKind::RenewalReminder);
    let err = notifier.notify(&n).await.expect_err("the end refuses");
    assert!(!err.is_transient(), "a refusal is permanent: {err:?}");
    assert!(
        accepted_since(end, before).await.is_empty(),
        "nothing accepted"
    );
}

/// `notify` never hangs: against an end that never answers it returns (a transient error)
/// within the notifier's time-out; an end that cannot hang is still answered in time.
pub async fn never_hangs(notifier: &dyn Notifier, end: &dyn NotifierEnd) {
    let hangs = end.inject(Fault::Hang).await;
    let before = end.accepted().await.len();
    let n = notification("hang", NotificationKind::WhatsappInactivityWarning);
    let limit = end.time_limit();
    let outcome = tokio::time::timeout(limit, notifier.notify(&n))
        .await
        .unwrap_or_else(|_| panic!("notify still running after {limit:?}"));
    if hangs {
        let err = outcome.expect_err("an end that never answers is not a success");
        assert!(err.is_transient(), "a time-out is transient: {err:?}");
        assert!(
            accepted_since(end, before).await.is_empty(),
            "nothing accepted"
        );
    } else {
        outcome.expect("an end that cannot hang answers");
    }
}
