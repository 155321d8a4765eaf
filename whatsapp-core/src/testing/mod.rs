//! Test doubles and conformance suites (feature `testing`).
//!
//! - [`FakeClock`]: a wall clock that moves only when told to, or follows tokio's paused time.
//! - [`RecordingNotifier`]: records every notification; can be told to fail.
//! - mockall mocks of every trait: `MockBrowserDriver`, `MockBrowserSession`,
//!   `MockSessionStore`, `MockBackupSink`, `MockNotifier` (re-exported here).

mod clock;
mod notifier;

pub use clock::FakeClock;
pub use notifier::RecordingNotifier;

pub use crate::backup::MockBackupSink;
pub use crate::driver::{MockBrowserDriver, MockBrowserSession};
pub use crate::notify::MockNotifier;
pub use crate::store::MockSessionStore;
