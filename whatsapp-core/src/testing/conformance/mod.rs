//! Conformance suites: one `pub async fn` per promise of a trait's `# Contract`.
//!
//! Every backend runs the whole suite of its trait from its own tests:
//!
//! ```no_run
//! # async fn demo() {
//! use whatsapp_core::testing::{InMemorySessionStore, MemoryBackupSink, conformance};
//!
//! conformance::session_store::run_all(&InMemorySessionStore::new()).await;
//! conformance::backup_sink::run_all(&MemoryBackupSink::new()).await;
//! # }
//! ```
//!
//! `run_all` runs every case, even after a failure, then panics naming each failed case
//! (`session_store::round_trip_equals: …`). The cases can also be called one by one.
//!
//! Cases are backend-neutral and safe on a shared, persistent backend (a real database or
//! bucket): each creates its own ids or keys with a prefix unique to the case and the run,
//! never assumes the backend is empty, and deletes what it created when it passes. They
//! need no particular runtime flavour and do not pause time, so they suit real I/O.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::FutureExt;

pub mod backup_sink;
pub mod browser_driver;
pub mod notifier;
pub mod session_store;

/// A token unique to this process and call: wall-clock nanoseconds, process id and a
/// counter, in base 36 (lower case, so it fits session ids and keys). Suites in other
/// crates use it for their ids and key prefixes too.
pub fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}{}{}",
        base36(nanos),
        base36(u64::from(std::process::id())),
        base36(n)
    )
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked with a non-string payload".to_owned()
    }
}

/// Collects the failures of a suite's cases: what every `run_all` is built on, here and in
/// the suites of other crates (`whatsapp_storage::testing::conformance`, …).
///
/// ```
/// # async fn demo() {
/// use whatsapp_core::testing::conformance::Runner;
///
/// let mut r = Runner::new("my_trait");
/// r.case("holds_a_promise", async { assert_eq!(1 + 1, 2) }).await;
/// r.finish(); // panics naming `my_trait::holds_a_promise` if it failed
/// # }
/// ```
#[derive(Debug)]
pub struct Runner {
    suite: &'static str,
    failures: Vec<String>,
}

impl Runner {
    /// A runner for the suite named `suite` (the prefix of every failure it reports).
    pub fn new(suite: &'static str) -> Self {
        Runner {
            suite,
            failures: Vec::new(),
        }
    }

    /// Runs one case, recording its panic instead of unwinding.
    pub async fn case(&mut self, name: &'static str, case: impl Future<Output = ()>) {
        if let Err(payload) = AssertUnwindSafe(case).catch_unwind().await {
            self.failures.push(format!(
                "{}::{name}: {}",
                self.suite,
                panic_message(payload)
            ));
        }
    }

    /// Panics listing every failed case, if any.
    pub fn finish(self) {
        if !self.failures.is_empty() {
            panic!(
                "{} conformance: {} case(s) failed:\n  - {}",
                self.suite,
                self.failures.len(),
                self.failures.join("\n  - ")
            );
        }
    }
}

#[cfg(test)]
mod tests;
