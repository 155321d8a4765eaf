//! [`Clock`]: the wall clock, injected so tests can move it.
//!
//! Monotonic time (periods, timeouts, backoff) comes from `tokio::time`, which tests pause and
//! advance. Wall-clock time (the 02:00 backup, last-seen, inactivity, retention) comes from a
//! `Clock`, because pausing tokio does not stop `SystemTime`.

use std::fmt::Debug;

use chrono::{DateTime, Utc};

/// A source of wall-clock time.
///
/// # Contract
///
/// - `now` never fails and is cheap.
/// - Successive calls never go backwards within one clock instance (a system clock stepped
///   back by NTP is the one accepted exception, and consumers must tolerate it).
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current time in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}
