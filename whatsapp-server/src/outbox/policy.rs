//! The outbox's retry rule: how long to wait after a failed delivery, and when an item is
//! dead. The schedule is a [`Backoff`]; this module adds the outbox's defaults, its checks
//! and the [`Verdict`].

use std::time::Duration;

use whatsapp_core::{Backoff, Error, Jitter, Result};

/// The outbox's default schedule: 30 s, 1 min, 2 min, … up to 1 h, each wait shortened by a
/// random fraction of up to 20 % so that items that failed together do not retry together;
/// dead after 10 attempts (about 4 h in all).
pub const DEFAULT_RETRY: Backoff =
    Backoff::exponential(Duration::from_secs(30), 2.0, Duration::from_secs(3600))
        .with_max_attempts(10)
        .with_jitter(Jitter::Shorten(0.2));

/// What to do with an item whose delivery attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again after this long.
    Retry(Duration),
    /// Give up: the item becomes a dead letter.
    Dead,
}

/// Checks an outbox schedule: at least one attempt, a finite factor ≥ 1, a jitter that only
/// shortens waits (a fraction in `[0, 1]`, or none), and a cap not below the first wait.
pub fn validate(retry: &Backoff) -> Result<()> {
    if retry.max_attempts == 0 {
        return Err(Error::invalid("outbox max attempts", "must be at least 1"));
    }
    if !(retry.factor >= 1.0 && retry.factor.is_finite()) {
        return Err(Error::invalid(
            "outbox backoff factor",
            "must be a finite number ≥ 1",
        ));
    }
    let jitter_ok = match retry.jitter {
        Jitter::None => true,
        Jitter::Shorten(fraction) => (0.0..=1.0).contains(&fraction),
        Jitter::Spread(_) => false,
    };
    if !jitter_ok {
        return Err(Error::invalid("outbox jitter", "must be between 0 and 1"));
    }
    if retry.max < retry.initial {
        return Err(Error::invalid(
            "outbox backoff",
            "the maximum wait is shorter than the base wait",
        ));
    }
    Ok(())
}

/// Decides what follows failed attempt `attempts` (1-based, as counted by the store): after
/// attempt `n` fails transiently the next waits [`Backoff::jittered`]`(n, unit)`; after
/// `max_attempts` attempts, or at once for a permanent failure, the item is dead. `unit` is
/// a random number in `[0, 1)` that picks the jitter.
pub fn after_failure(retry: &Backoff, attempts: u32, transient: bool, unit: f64) -> Verdict {
    match retry.next_delay(attempts, unit) {
        Some(wait) if transient => Verdict::Retry(wait),
        _ => Verdict::Dead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Backoff {
        Backoff {
            initial: Duration::from_secs(10),
            factor: 3.0,
            max: Duration::from_secs(100),
            max_attempts: 4,
            jitter: Jitter::Shorten(0.5),
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
                after_failure(&p, attempts, transient, unit),
                want,
                "attempts {attempts}, transient {transient}, unit {unit}"
            );
        }
        let long = p.with_max_attempts(u32::MAX);
        assert_eq!(long.delay(4), Duration::from_secs(100));
        assert_eq!(long.delay(u32::MAX), Duration::from_secs(100));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(validate(&policy()).is_ok());
        assert!(validate(&DEFAULT_RETRY).is_ok());
        for bad in [
            policy().with_max_attempts(0),
            Backoff {
                factor: 0.5,
                ..policy()
            },
            Backoff {
                factor: f64::NAN,
                ..policy()
            },
            policy().with_jitter(Jitter::Shorten(1.5)),
            Backoff {
                max: Duration::from_secs(1),
                ..policy()
            },
        ] {
            assert!(validate(&bad).is_err(), "{bad:?}");
        }
    }
}
