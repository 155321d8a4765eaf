//! [`Backoff`]: the one retry schedule of the workspace, as a pure function of the attempt
//! number.
//!
//! Every retry — a reconnect, a relaunch after a failed launch, a crash-loop cool-down, a
//! queued text, an outbox delivery, a background e-mail or backup — asks the same two
//! questions: how long to wait after failed attempt `n`, and whether to try again at all.
//! [`Backoff::delay`] answers the first (exponential, capped), [`Backoff::next_delay`] and
//! [`Backoff::retry_after`] the second. Randomness is an input (`unit`, a number in
//! `[0, 1)`), never drawn here, so a test picks the jitter it wants and a seeded random
//! generator replays the same waits. The loops that sleep stay with their owners, in
//! `tokio::time`, so tests pause time around them.
//!
//! Why not the `backoff` or `backon` crates: both are iterators or retry wrappers that draw
//! their own random jitter and own the sleeping loop; here the decision must be a pure
//! function of the attempt number that policy code (table-tested, no runtime) can call.
//!
//! ```
//! use std::time::Duration;
//! use whatsapp_core::backoff::{Backoff, Jitter};
//!
//! let b = Backoff::exponential(Duration::from_secs(5), 2.0, Duration::from_secs(60))
//!     .with_max_attempts(4)
//!     .with_jitter(Jitter::Shorten(0.5));
//! assert_eq!(b.delay(1), Duration::from_secs(5));
//! assert_eq!(b.delay(3), Duration::from_secs(20));
//! assert_eq!(b.delay(10), Duration::from_secs(60));
//! assert_eq!(b.next_delay(2, 1.0), Some(Duration::from_secs(5))); // half of 10 s cut off
//! assert_eq!(b.next_delay(4, 0.0), None); // four attempts made: give up
//! ```

use std::time::Duration;

use crate::Error;

/// How a wait is randomised, so that many sessions or items that failed together do not
/// retry together. The random number is always an argument (`unit` in `[0, 1)`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Jitter {
    /// Every wait is exactly [`Backoff::delay`].
    #[default]
    None,
    /// Up to this fraction (in `[0, 1]`) of the wait is removed: the wait is scaled by
    /// `1 - fraction · unit`, so it lies in `[(1 - fraction) · delay, delay]` and never
    /// exceeds the cap.
    Shorten(f64),
    /// The wait is scaled by a factor in `[1 - fraction, 1 + fraction]` (`fraction` in
    /// `[0, 1)`): `1 + fraction · (2 · unit - 1)`. A jittered wait may exceed the cap by up
    /// to that fraction.
    Spread(f64),
}

/// An exponential retry schedule: after failed attempt `n` (1-based) wait
/// `min(initial · factor^(n-1), max)`, randomised by [`Jitter`]; give up once `max_attempts`
/// attempts have been made.
///
/// The fields are public so that configuration can set them (and checks them: a factor
/// below 1 or a cap below `initial` makes no sense). `max_attempts == u32::MAX` ([`Backoff::exponential`]'s default) means "never give
/// up" in practice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The wait after the first failed attempt.
    pub initial: Duration,
    /// How much each further failure multiplies the wait (≥ 1; 2 doubles it).
    pub factor: f64,
    /// The longest wait (before [`Jitter::Spread`]).
    pub max: Duration,
    /// Attempts after which [`Backoff::next_delay`] gives up (≥ 1).
    pub max_attempts: u32,
    /// How each wait is randomised.
    pub jitter: Jitter,
}

impl Backoff {
    /// `initial · factor^(n-1)` capped at `max`, no jitter, never giving up.
    pub const fn exponential(initial: Duration, factor: f64, max: Duration) -> Self {
        Backoff {
            initial,
            factor,
            max,
            max_attempts: u32::MAX,
            jitter: Jitter::None,
        }
    }

    /// The same schedule, giving up after `max_attempts` attempts.
    pub const fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The same schedule, randomised by `jitter`.
    pub const fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The wait after failed attempt `attempt` (1-based; 0 counts as 1), without jitter:
    /// `min(initial · factor^(attempt-1), max)`. Computed in nanoseconds, so whole
    /// multiples are exact; an overflowing product is `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        if self.initial.is_zero() {
            return Duration::ZERO;
        }
        let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let nanos = self.initial.as_nanos() as f64 * self.factor.powi(exp);
        // Infinity is caught by the comparison, NaN (0 · ∞ cannot happen: `initial` > 0) too.
        if nanos.is_nan() || nanos >= self.max.as_nanos() as f64 {
            return self.max;
        }
        Duration::from_nanos(nanos.max(0.0).round() as u64)
    }

    /// [`Backoff::delay`] randomised by [`Backoff::jitter`] with `unit`, a number in
    /// `[0, 1)` (clamped to `[0, 1]` for [`Jitter::Shorten`]).
    pub fn jittered(&self, attempt: u32, unit: f64) -> Duration {
        let delay = self.delay(attempt);
        let scale = match self.jitter {
            Jitter::None => return delay,
            Jitter::Shorten(fraction) => 1.0 - fraction * unit.clamp(0.0, 1.0),
            Jitter::Spread(fraction) => 1.0 + fraction * (2.0 * unit - 1.0),
        };
        Duration::from_secs_f64((delay.as_secs_f64() * scale).max(0.0))
    }

    /// What follows failed attempt `attempt` (1-based, the attempts made so far): the
    /// jittered wait before the next one, or `None` when `max_attempts` have been made.
    pub fn next_delay(&self, attempt: u32, unit: f64) -> Option<Duration> {
        (attempt < self.max_attempts).then(|| self.jittered(attempt, unit))
    }

    /// Like [`Backoff::next_delay`], but `None` at once for a permanent `error`
    /// ([`Error::is_transient`]): retrying decides by type, never by message.
    pub fn retry_after(&self, error: &Error, attempt: u32, unit: f64) -> Option<Duration> {
        if error.is_transient() {
            self.next_delay(attempt, unit)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn grows_by_the_factor_then_caps() {
        let b = Backoff::exponential(secs(10), 3.0, secs(100));
        let table = [
            (0, 10),
            (1, 10),
            (2, 30),
            (3, 90),
            (4, 100),
            (u32::MAX, 100),
        ];
        for (attempt, want) in table {
            assert_eq!(b.delay(attempt), secs(want), "attempt {attempt}");
        }
        let doubling = Backoff::exponential(Duration::from_millis(100), 2.0, secs(600));
        assert_eq!(doubling.delay(4), Duration::from_millis(800));
        // Whole multiples stay exact even where seconds as f64 would not be.
        let thirds = Backoff::exponential(Duration::from_millis(100), 3.0, secs(600));
        assert_eq!(thirds.delay(2), Duration::from_millis(300));
        let zero = Backoff::exponential(Duration::ZERO, 2.0, secs(1));
        assert_eq!(zero.delay(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn jitter_is_an_input() {
        let base = Backoff::exponential(secs(10), 2.0, secs(100));
        assert_eq!(base.jittered(2, 0.7), secs(20), "no jitter: unit ignored");
        let shorten = base.with_jitter(Jitter::Shorten(0.5));
        assert_eq!(shorten.jittered(2, 0.0), secs(20));
        assert_eq!(shorten.jittered(2, 0.5), Duration::from_secs(15));
        assert_eq!(shorten.jittered(2, 1.0), secs(10));
        assert_eq!(shorten.jittered(9, 0.0), secs(100), "never above the cap");
        let spread = base.with_jitter(Jitter::Spread(0.2));
        assert_eq!(spread.jittered(1, 0.0), secs(8));
        assert_eq!(spread.jittered(1, 0.5), secs(10));
        assert!(spread.jittered(1, 0.999_999) <= secs(12));
        assert!(
            spread.jittered(9, 0.999_999) > secs(100),
            "may pass the cap"
        );
    }

    #[test]
    fn gives_up_after_max_attempts_and_on_permanent_errors() {
        let b = Backoff::exponential(secs(5), 2.0, secs(600)).with_max_attempts(3);
        assert_eq!(b.next_delay(1, 0.0), Some(secs(5)));
        assert_eq!(b.next_delay(2, 0.0), Some(secs(10)));
        assert_eq!(b.next_delay(3, 0.0), None);
        let transient = Error::unavailable("browser", "down");
        assert_eq!(b.retry_after(&transient, 2, 0.0), Some(secs(10)));
        assert_eq!(b.retry_after(&Error::LoggedOut, 1, 0.0), None);
        let forever = Backoff::exponential(secs(5), 2.0, secs(600));
        assert_eq!(forever.next_delay(1_000_000, 0.0), Some(secs(600)));
    }
}
