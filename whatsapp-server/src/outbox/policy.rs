//! The retry policy: how long to wait after a failed attempt, and when to give up.

use std::time::Duration;

use whatsapp_core::{Error, Result};

/// Exponential backoff with jitter, and a cap on attempts.
///
/// After attempt `n` (1-based) fails transiently, the next attempt waits
/// `min(max, base × factor^(n-1))`, shortened by a random fraction of up to `jitter` so that
/// items that failed together do not retry together. After `max_attempts` attempts, or at
/// once for a permanent failure, the item is dead.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The wait after the first failure.
    pub base: Duration,
    /// How much each further failure multiplies the wait (≥ 1).
    pub factor: f64,
    /// The longest wait.
    pub max: Duration,
    /// Attempts before a transient failure becomes a dead letter (≥ 1).
    pub max_attempts: u32,
    /// The largest fraction of a wait removed at random, in `[0, 1]`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 30 s, 1 min, 2 min, … up to 1 h; dead after 10 attempts (about 4 h in all).
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(30),
            factor: 2.0,
            max: Duration::from_secs(3600),
            max_attempts: 10,
            jitter: 0.2,
        }
    }
}

/// What to do with an item whose delivery attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again after this long.
    Retry(Duration),
    /// Give up: the item becomes a dead letter.
    Dead,
}

impl RetryPolicy {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.max_attempts == 0 {
            return Err(Error::invalid("outbox max attempts", "must be at least 1"));
        }
        if !(self.factor >= 1.0 && self.factor.is_finite()) {
            return Err(Error::invalid(
                "outbox backoff factor",
                "must be a finite number ≥ 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(Error::invalid("outbox jitter", "must be between 0 and 1"));
        }
        if self.max < self.base {
            return Err(Error::invalid(
                "outbox backoff",
                "the maximum wait is shorter than the base wait",
            ));
        }
        Ok(())
    }

    /// The wait after failed attempt `attempt` (1-based) before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.base.as_secs_f64() * self.factor.powi(exp);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// Decides what follows failed attempt `attempts` (1-based, as counted by the store).
    /// `unit` is a random number in `[0, 1)` that picks the jitter.
    pub fn after_failure(&self, attempts: u32, transient: bool, unit: f64) -> Verdict {
        if !transient || attempts >= self.max_attempts {
            return Verdict::Dead;
        }
        let wait = self.backoff(attempts);
        let cut = self.jitter * unit.clamp(0.0, 1.0);
        Verdict::Retry(wait.mul_f64(1.0 - cut))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(10),
            factor: 3.0,
            max: Duration::from_secs(100),
            max_attempts: 4,
            jitter: 0.5,
        }
    }

    #[test]
    fn waits_grow_then_cap_then_die() {
        let p = policy();
        let table = [
            (1, true, 0.0, Verdict::Retry(Duration::from_secs(10))),
            (2, true, 0.0, Verdict::Retry(Duration::from_secs(30))),
            (3, true, 0.0, Verdict::Retry(Duration::from_secs(90))),
            (4, true, 0.0, Verdict::Dead),
            (1, false, 0.0, Verdict::Dead),
            // Jitter removes up to half of the wait.
            (2, true, 0.5, Verdict::Retry(Duration::from_millis(22_500))),
            (2, true, 1.0, Verdict::Retry(Duration::from_secs(15))),
        ];
        for (attempts, transient, unit, want) in table {
            assert_eq!(
                p.after_failure(attempts, transient, unit),
                want,
                "attempts {attempts}, transient {transient}, unit {unit}"
            );
        }
        let long = RetryPolicy {
            max_attempts: u32::MAX,
            ..p
        };
        assert_eq!(long.backoff(4), Duration::from_secs(100));
        assert_eq!(long.backoff(u32::MAX), Duration::from_secs(100));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(policy().validate().is_ok());
        assert!(RetryPolicy::default().validate().is_ok());
        for bad in [
            RetryPolicy {
                max_attempts: 0,
                ..policy()
            },
            RetryPolicy {
                factor: 0.5,
                ..policy()
            },
            RetryPolicy {
                factor: f64::NAN,
                ..policy()
            },
            RetryPolicy {
                jitter: 1.5,
                ..policy()
            },
            RetryPolicy {
                max: Duration::from_secs(1),
                ..policy()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
