//! The two hooks the server plugs into the engine: how a session's profile is backed up, and
//! how a keepalive text is sent.
//!
//! Both are traits so that the engine stays free of storage and queueing: the server backs
//! up through `whatsapp-storage` (archive, verify, upload to a sink, prune) and routes
//! keepalive texts through its durable, rate-limited message queue.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use whatsapp_core::{BrowserSession, Result, SessionId, Wid};

/// Backs up one session's browser profile and applies retention.
///
/// # Contract
///
/// - `backup` archives the profile of `session` (at `<sessions_path>/<session>`) and stores
///   it; it returns `Ok` only once the backup is stored and verified.
/// - `prune` deletes the backups of `session` taken before `before`, and returns how many it
///   deleted. It never deletes the newest backup, whatever its age (a session whose backups
///   stopped must keep its last good one).
/// - `backup` and `prune` may be called while the session's browser runs; `prepare_profile`
///   is called only while no browser of ours runs on the profile.
#[async_trait]
pub trait SessionBackup: Send + Sync + Debug + 'static {
    /// Backs up the profile of `session`.
    async fn backup(&self, session: &SessionId) -> Result<()>;

    /// Replaces the profile of `session` with the newest verified backup even though the
    /// disk still has a profile: the engine calls it when a linked session asks for a QR
    /// without having been unlinked (credentials lost or damaged on disk). Returns whether a
    /// backup was restored; `Ok(false)` when there is none. The browser is closed during the
    /// call.
    ///
    /// The default restores nothing.
    async fn restore_login(&self, session: &SessionId) -> Result<bool> {
        let _ = session;
        Ok(false)
    }

    /// Makes the profile of `session` ready for a launch: keeps it when it is intact,
    /// otherwise restores it from the newest verified backup (the seed's start-up steps
    /// "check the critical files; if they are missing, restore from the backup"). Called by
    /// the engine before every launch, so a profile lost or damaged while the service runs
    /// comes back too. Returns which way the profile came (`"disk"`, `"backup"`, or
    /// `"none"` when neither holds a login and a QR will be needed). A transient error (the
    /// backup store unreachable) makes the launch fail and be retried, rather than launching
    /// on an empty profile and asking for a new QR.
    ///
    /// The default keeps whatever is on disk.
    async fn prepare_profile(&self, session: &SessionId) -> Result<&'static str> {
        let _ = session;
        Ok("disk")
    }

    /// Deletes the backups of `session` older than `before` (keeping the newest).
    async fn prune(&self, session: &SessionId, before: DateTime<Utc>) -> Result<usize>;
}

/// A [`SessionBackup`] that does nothing: for deployments (and tests) without backups.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBackup;

#[async_trait]
impl SessionBackup for NoBackup {
    async fn backup(&self, _session: &SessionId) -> Result<()> {
        Ok(())
    }

    async fn prune(&self, _session: &SessionId, _before: DateTime<Utc>) -> Result<usize> {
        Ok(0)
    }
}

/// Sends one keepalive text.
///
/// # Contract
///
/// - `send` returns `Ok` once the text is accepted for delivery (sent by the browser, or
///   durably queued). The engine calls it with a time-out.
/// - `browser` is the session's current handle; an implementation that queues may ignore it.
#[async_trait]
pub trait KeepaliveSender: Send + Sync + Debug + 'static {
    /// Sends `text` to `to` from `session`.
    async fn send(
        &self,
        session: &SessionId,
        browser: &Arc<dyn BrowserSession>,
        to: &Wid,
        text: &str,
    ) -> Result<()>;
}

/// The default [`KeepaliveSender`]: calls the handle's `send_text` directly.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectSender;

#[async_trait]
impl KeepaliveSender for DirectSender {
    async fn send(
        &self,
        _session: &SessionId,
        browser: &Arc<dyn BrowserSession>,
        to: &Wid,
        text: &str,
    ) -> Result<()> {
        browser.send_text(to, text).await.map(|_| ())
    }
}
