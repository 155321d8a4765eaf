//! The suites; see the [parent module](super).

use chrono::{DateTime, Utc};

pub mod message_history;
pub mod message_queue;
pub mod outbox_store;

use whatsapp_core::Error;

/// Panics unless `err` is [`Error::Conflict`] with a message containing `needle`.
pub fn assert_conflict(err: Error, needle: &str) {
    match &err {
        Error::Conflict(msg) => assert!(msg.contains(needle), "{needle:?} not in {msg:?}"),
        other => panic!("expected a conflict naming {needle:?}, got {other:?}"),
    }
}

/// Panics unless `err` is [`Error::NotFound`] naming something that contains `needle`.
pub fn assert_not_found(err: Error, needle: &str) {
    match &err {
        Error::NotFound { what } => assert!(what.contains(needle), "{needle:?} not in {what:?}"),
        other => panic!("expected not found ({needle:?}), got {other:?}"),
    }
}

/// A fixed instant with nanoseconds (so every write has something to truncate), plus
/// `secs`.
fn t(secs: i64) -> DateTime<Utc> {
    let base: DateTime<Utc> = "2026-03-28T12:00:00.123456789Z"
        .parse()
        .expect("valid timestamp");
    base + chrono::Duration::seconds(secs)
}

/// `n` minutes.
fn mins(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}
