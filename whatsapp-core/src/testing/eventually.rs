//! [`eventually`]: waits for a condition by polling, the one way tests wait for state they
//! cannot subscribe to.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] probes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// What a probe of [`eventually`] returns: either the value waited for, or an observation
/// of how things are now (shown if the wait times out).
pub trait Probe {
    /// What [`eventually`] returns once the probe succeeds.
    type Output;

    /// `Ok(value)` when the condition holds, otherwise `Err(observation)`.
    fn check(self) -> Result<Self::Output, String>;
}

impl Probe for bool {
    type Output = ();

    fn check(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("false".into()) }
    }
}

impl<T> Probe for Option<T> {
    type Output = T;

    fn check(self) -> Result<T, String> {
        self.ok_or_else(|| "None".into())
    }
}

/// `Err(observation)`: the probe says what it saw, and a time-out shows it.
impl<T, E: Debug> Probe for Result<T, E> {
    type Output = T;

    fn check(self) -> Result<T, String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

/// Polls `probe` every [`POLL_INTERVAL`] until it succeeds (`true`, `Some(value)` or
/// `Ok(value)`) and returns the value; panics after `within`, naming `what` and the last
/// observation (`false`, `None` or the `Err`'s `Debug`).
///
/// Time is `tokio::time`'s, so it works in real time and under paused time alike (the
/// runtime's auto-advance moves the clock while the probe waits). The probe is always run
/// at least once, and once more at the deadline, so a condition that holds when the time
/// runs out still counts.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use whatsapp_core::testing::eventually;
///
/// let calls = AtomicU32::new(0);
/// let n = eventually("the third call", Duration::from_secs(5), || async {
///     let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
///     if n >= 3 { Ok(n) } else { Err(format!("call {n}")) }
/// })
/// .await;
/// assert_eq!(n, 3);
/// # }
/// ```
///
/// # Panics
///
/// When `within` passes without the probe succeeding:
/// `timed out after 5s waiting for <what>; last observation: <…>`.
pub async fn eventually<P, F, Fut>(what: &str, within: Duration, mut probe: F) -> P::Output
where
    P: Probe,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = match probe().await.check() {
            Ok(value) => return value,
            Err(observation) => observation,
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            panic!("timed out after {within:?} waiting for {what}; last observation: {last}");
        }
        tokio::time::sleep_until((now + POLL_INTERVAL).min(deadline)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use futures::FutureExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_the_value_once_the_probe_succeeds_under_paused_time() {
        let start = tokio::time::Instant::now();
        let calls = AtomicU32::new(0);
        let got = eventually("five calls", Duration::from_secs(60), || async {
            let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
            (n == 5).then_some(n)
        })
        .await;
        assert_eq!(got, 5);
        assert_eq!(start.elapsed(), POLL_INTERVAL * 4, "probes every interval");
    }

    #[tokio::test(start_paused = true)]
    async fn a_bool_probe_returns_unit() {
        let calls = AtomicU32::new(0);
        eventually("a true", Duration::from_secs(1), || async {
            calls.fetch_add(1, Ordering::Relaxed) == 2
        })
        .await;
        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_out_names_what_and_the_last_observation() {
        let calls = AtomicU32::new(0);
        let outcome = std::panic::AssertUnwindSafe(eventually(
            "the answer",
            Duration::from_secs(2),
            || async {
                let n = calls.fetch_add(1, Ordering::Relaxed);
                Err::<(), _>(format!("still {n}"))
            },
        ))
        .catch_unwind()
        .await;
        let payload = outcome.expect_err("must time out");
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        let n = calls.load(Ordering::Relaxed);
        assert!(msg.contains("waiting for the answer"), "{msg}");
        assert!(msg.contains(&format!("\"still {}\"", n - 1)), "{msg}");
        // 2 s of 10 ms intervals, plus the first probe.
        assert_eq!(n, 201);
    }

    #[tokio::test]
    async fn works_in_real_time() {
        let start = std::time::Instant::now();
        eventually("30 ms", Duration::from_secs(10), || async {
            start.elapsed() >= Duration::from_millis(30)
        })
        .await;
    }
}
