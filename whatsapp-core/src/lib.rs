//! The contracts of the WhatsApp Web keepalive service.
//!
//! Everything else plugs into the five traits defined here: [`BrowserDriver`] (with its
//! per-session handle [`BrowserSession`]), [`SessionStore`], [`BackupSink`], [`Notifier`] and
//! [`Clock`]. Implementations live elsewhere (Chromium in `whatsapp-chromium`, SQLite, Postgres,
//! local disk and S3 in `whatsapp-storage`, the HTTP e-mail notifier in `whatsapp-server`);
//! `whatsapp-keepalive` composes them into the policy engine.
//!
//! # Layout
//!
//! - [`error`]: the one [`Error`] type, with [`Error::is_transient`] for retry decisions.
//! - [`types`]: identifiers ([`SessionId`], [`PhoneNumber`], [`Wid`]), WhatsApp's
//!   [`ConnectionState`], our [`SessionStatus`] and the [`SessionRecord`].
//! - [`driver`], [`store`], [`backup`], [`notify`], [`clock`]: one trait each, with a
//!   `# Contract` section that every implementation must honour.
//! - [`backoff`]: [`Backoff`], the one retry schedule (a pure function of the attempt).
//! - [`profile`]: Chromium-profile facts every crate shares: the path rule
//!   ([`profile::profile_dir`]), the `Singleton*` lock files and their owner, the host name,
//!   and the browser processes on a profile (from `/proc`).
//! - `testing` (feature `testing`): in-memory implementations, fakes, mockall mocks, and the
//!   conformance suites that every backend runs.

pub mod backoff;
pub mod backup;
pub mod clock;
pub mod driver;
pub mod error;
pub mod notify;
pub mod profile;
pub mod store;
pub mod types;

#[cfg(feature = "testing")]
pub mod testing;

pub use backoff::{Backoff, Jitter};
pub use backup::{BackupKey, BackupSink, ByteStream, ObjectMeta, SinkCapabilities};
pub use clock::{Clock, SystemClock};
pub use driver::{BrowserDriver, BrowserSession, DriverEvent, LaunchSpec};
pub use error::{BoxError, Error, Result};
pub use notify::{Notification, NotificationKind, Notifier};
pub use store::SessionStore;
pub use types::{
    AccountInfo, Ack, ConnectionState, EmailAddress, Lease, MessageId, NodeId, PhoneNumber,
    QrPayload, SessionFilter, SessionId, SessionPatch, SessionRecord, SessionStatus, TenantId, Wid,
};
