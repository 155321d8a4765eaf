use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;

/// A wall clock for tests.
///
/// Two modes:
/// - [`FakeClock::new`]: stands still until [`FakeClock::advance`] or [`FakeClock::set`].
/// - [`FakeClock::following_tokio`]: moves with `tokio::time` — under
///   `#[tokio::test(start_paused = true)]`, `tokio::time::advance` (or auto-advance while all
///   tasks sleep) moves this clock by the same amount, so timers and wall-clock decisions stay
///   in step. `advance`/`set` still work on top (they shift the base).
///
/// Clones share the same time.
#[derive(Debug, Clone)]
pub struct FakeClock {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    base: DateTime<Utc>,
    follow: Option<tokio::time::Instant>,
}

impl FakeClock {
    /// A clock standing still at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        FakeClock {
            inner: Arc::new(Mutex::new(Inner {
                base: start,
                follow: None,
            })),
        }
    }

    /// A clock that reads `start` now and then moves with `tokio::time::Instant`.
    pub fn following_tokio(start: DateTime<Utc>) -> Self {
        FakeClock {
            inner: Arc::new(Mutex::new(Inner {
                base: start,
                follow: Some(tokio::time::Instant::now()),
            })),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut inner = self.inner.lock().unwrap();
        inner.base += chrono::Duration::from_std(by).expect("duration out of range");
    }

    /// Jumps the clock to `to` (backwards too — to test tolerance of clock steps).
    pub fn set(&self, to: DateTime<Utc>) {
        let mut inner = self.inner.lock().unwrap();
        inner.base = to;
        if inner.follow.is_some() {
            inner.follow = Some(tokio::time::Instant::now());
        }
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        let inner = self.inner.lock().unwrap();
        match inner.follow {
            None => inner.base,
            Some(origin) => {
                let elapsed = tokio::time::Instant::now().saturating_duration_since(origin);
                inner.base + chrono::Duration::from_std(elapsed).expect("duration out of range")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        "2026-03-28T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn stands_still_until_advanced() {
        let c = FakeClock::new(t0());
        assert_eq!(c.now(), t0());
        c.advance(Duration::from_secs(90));
        assert_eq!(c.now(), t0() + chrono::Duration::seconds(90));
        let shared = c.clone();
        shared.set(t0());
        assert_eq!(c.now(), t0());
    }

    #[tokio::test(start_paused = true)]
    async fn follows_paused_tokio_time() {
        let c = FakeClock::following_tokio(t0());
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(c.now(), t0() + chrono::Duration::hours(1));
        c.advance(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(c.now(), t0() + chrono::Duration::minutes(62));
    }
}
