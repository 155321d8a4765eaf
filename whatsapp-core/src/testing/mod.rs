//! Test doubles and conformance suites (feature `testing`).
//!
//! - [`FakeClock`]: a wall clock that moves only when told to, or follows tokio's paused time.
//! - [`RecordingNotifier`]: records every notification; can be told to fail.
//! - [`FakeBrowser`]: a scriptable, deterministic [`crate::BrowserDriver`]; the login lives
//!   in the profile directory ([`LOGIN_MARKER`]), faults are scripted per session or drawn
//!   from a seed. [`SentText`] records what it sent.
//! - [`InMemorySessionStore`]: a [`crate::SessionStore`] in memory (timestamps truncated to
//!   microseconds like the SQL stores), with injectable failures.
//! - [`MemoryBackupSink`]: a [`crate::BackupSink`] in memory, with configurable capabilities,
//!   an injectable clock and injectable failures.
//! - [`conformance`]: the suites every backend runs, one case per promise of a trait's
//!   `# Contract`: [`conformance::session_store`], [`conformance::backup_sink`],
//!   [`conformance::notifier`] and [`conformance::browser_driver`], each with a `run_all`,
//!   and the [`conformance::Runner`] that suites of other crates are built on.
//! - [`eventually`]: the one polling wait of every crate's tests (real or paused time).
//! - mockall mocks of every trait: `MockBrowserDriver`, `MockBrowserSession`,
//!   `MockSessionStore`, `MockBackupSink`, `MockNotifier` (re-exported here).

mod browser;
mod clock;
pub mod conformance;
mod eventually;
mod memory_sink;
mod memory_store;
mod notifier;

pub use browser::{
    EVENT_CAPACITY, FAKE_PLATFORM, FAKE_PUSH_NAME, FakeBrowser, LOGIN_MARKER, SentText,
};
pub use clock::FakeClock;
pub use eventually::{POLL_INTERVAL, Probe, eventually};
pub use memory_sink::MemoryBackupSink;
pub use memory_store::InMemorySessionStore;
pub use notifier::RecordingNotifier;

pub use crate::backup::MockBackupSink;
pub use crate::driver::{MockBrowserDriver, MockBrowserSession};
pub use crate::notify::MockNotifier;
pub use crate::store::MockSessionStore;
