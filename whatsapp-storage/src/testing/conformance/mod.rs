//! The suites; see the [parent module](super).

use chrono::{DateTime, Utc};

pub mod message_queue;
pub mod outbox_store;

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
