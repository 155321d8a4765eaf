//! The session lifecycle: the one place that creates, starts, stops, restarts, logs out,
//! deletes and restores sessions, pairs the keepalive engine with the message worker, and
//! knows where a session's profile lives.
//!
//! Handlers, jobs and the start-up restore call [`SessionService`]; none of them drives the
//! engine and the message worker separately, so a session can never run without its worker
//! (or the reverse), and a new step (a node taking a session over) has one place to go.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use whatsapp_core::{Error, Result, SessionId, SessionRecord, SessionStatus, SessionStore};
use whatsapp_keepalive::{EngineDeps, KeepaliveConfig, KeepaliveEngine, KeepaliveSender};
use whatsapp_storage::backup::{BackupManager, BackupOwner, BackupRecord};

use crate::messaging::{BrowserSender, MessageSender, Messaging, QueueSender};

/// Creates, starts, stops, restarts, logs out, deletes and restores sessions.
#[derive(Debug, Clone)]
pub struct SessionService {
    store: Arc<dyn SessionStore>,
    engine: KeepaliveEngine,
    messaging: Messaging,
    backups: Arc<BackupManager>,
    sessions_path: PathBuf,
}

/// Why a restore from a backup did not happen.
#[derive(Debug)]
pub enum RestoreError {
    /// No such backup (or none restorable): names what was looked for.
    NotFound(String),
    /// The backup exists but may not be restored into this session (another instance or
    /// tenant, taken before the current link, or failed verification).
    Refused(String),
    /// The restore itself failed.
    Failed(Error),
}

impl From<Error> for RestoreError {
    fn from(e: Error) -> Self {
        RestoreError::Failed(e)
    }
}

impl SessionService {
    /// Builds the engine and the message worker, paired: the worker sends through the
    /// engine's browsers (`messaging` gets that sender), the engine's keepalive texts go
    /// through the worker's queue (`engine_deps` gets that sender).
    pub fn build(
        config: KeepaliveConfig,
        messaging: impl FnOnce(Arc<dyn MessageSender>) -> Messaging,
        engine_deps: impl FnOnce(Arc<dyn KeepaliveSender>) -> EngineDeps,
        backups: Arc<BackupManager>,
        sessions_path: impl Into<PathBuf>,
    ) -> Result<Self> {
        // The worker needs the engine and the engine the worker: the worker's sender reads
        // the engine from this slot, filled as soon as the engine exists.
        let slot = Arc::new(OnceLock::new());
        let messaging = messaging(Arc::new(BrowserSender::from_engine_slot(slot.clone())));
        let deps = engine_deps(Arc::new(QueueSender::new(messaging.clone())));
        let store = deps.store.clone();
        let engine = KeepaliveEngine::new(config, deps)?;
        let _ = slot.set(engine.clone());
        Ok(SessionService {
            store,
            engine,
            messaging,
            backups,
            sessions_path: sessions_path.into(),
        })
    }

    /// The engine (snapshots, browsers, events).
    pub fn engine(&self) -> &KeepaliveEngine {
        &self.engine
    }

    /// The message worker.
    pub fn messaging(&self) -> &Messaging {
        &self.messaging
    }

    /// The directory under which every profile lives.
    pub fn sessions_path(&self) -> &Path {
        &self.sessions_path
    }

    /// The profile directory of the session instance `id`.
    pub fn profile_dir(&self, id: &SessionId) -> PathBuf {
        whatsapp_core::profile::profile_dir(&self.sessions_path, id)
    }

    /// Stores `record` (a new instance) and, with `start`, starts it. Returns the record as
    /// stored after the start. A name taken in the tenant is [`Error::Conflict`].
    pub async fn create(&self, record: SessionRecord, start: bool) -> Result<SessionRecord> {
        self.store.create(&record).await?;
        if start {
            self.start(&record.id).await?;
        }
        Ok(self.store.get(&record.id).await?.unwrap_or(record))
    }

    /// Starts every session whose stored status says it should run (the start-up restore),
    /// with its message worker. Returns the ids started.
    pub async fn restore_all(&self) -> Result<Vec<SessionId>> {
        let restored = self.engine.restore().await?;
        for id in &restored {
            self.messaging.start(id);
        }
        Ok(restored)
    }

    /// Stops every session for a shutdown: the message workers finish the send in flight,
    /// then every browser closes gracefully (profiles flushed; the stored statuses are kept,
    /// so the next start restores them).
    pub async fn shutdown(&self) {
        self.messaging.shutdown().await;
        self.engine.shutdown().await;
    }

    /// Starts `id` in the engine and its message worker. A session that already runs is
    /// left alone (`Ok(false)`), except one the engine holds but no longer drives: logged
    /// out (its device was unlinked; the start relaunches it for a new QR) or given up on
    /// (a crash loop or a fatal state): those are restarted (`Ok(true)`).
    pub async fn start(&self, id: &SessionId) -> Result<bool> {
        match self.engine.start(id).await {
            Ok(()) => {
                self.messaging.start(id);
                Ok(true)
            }
            Err(Error::Conflict(_)) => {
                let stuck = self
                    .engine
                    .snapshot(id)
                    .is_some_and(|s| s.gave_up || s.status == SessionStatus::LoggedOut);
                if stuck {
                    self.engine.restart(id).await?;
                }
                self.messaging.start(id);
                Ok(stuck)
            }
            Err(e) => Err(e),
        }
    }

    /// Stops `id`'s message worker and browser (the login stays in the profile). A session
    /// that does not run is [`Error::NotFound`].
    pub async fn stop(&self, id: &SessionId) -> Result<()> {
        self.messaging.stop(id).await;
        self.engine.stop(id).await
    }

    /// Relaunches `id`'s browser (forgetting its crash-loop history), starting it if it does
    /// not run, with its message worker.
    pub async fn restart(&self, id: &SessionId) -> Result<()> {
        self.engine.restart(id).await?;
        self.messaging.start(id);
        Ok(())
    }

    /// Logs `id` out: unlinks the device from the phone and closes the browser; its message
    /// worker stops. A session that does not run is [`Error::NotFound`].
    pub async fn logout(&self, id: &SessionId) -> Result<()> {
        self.messaging.stop(id).await;
        self.engine.logout(id).await
    }

    /// Deletes `record`'s session for good: logs its device out if it runs (so the phone
    /// unlinks it), stops it, removes the record, the profile directory and quarantines its
    /// backups ([`BackupManager::quarantine`]). The record goes first, so nothing can start
    /// the session again meanwhile; a quarantine that fails now (backup store down) is
    /// finished by the daily sweep of orphaned backups ([`crate::jobs`]).
    pub async fn delete(&self, record: &SessionRecord) -> Result<()> {
        let id = &record.id;
        self.messaging.stop(id).await;
        let linked_and_running = self.engine.snapshot(id).is_some()
            && matches!(
                record.status,
                SessionStatus::Ready
                    | SessionStatus::Reconnecting
                    | SessionStatus::Disconnected
                    | SessionStatus::Authenticating
            );
        let closed = if linked_and_running {
            self.engine.logout(id).await
        } else {
            self.engine.stop(id).await
        };
        match closed {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        self.store.delete(id).await?;
        let dir = self.profile_dir(id);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(session = %id, error = %e, "could not remove the profile directory");
        }
        // What a restore may have put aside holds the same login.
        let aside = whatsapp_core::profile::set_aside_dir(&dir);
        let _ = tokio::fs::remove_dir_all(&aside).await;
        if let Err(e) = self
            .backups
            .quarantine(id, Some(&record.tenant), Some(&record.name))
            .await
        {
            tracing::warn!(session = %id, error = %e, "could not quarantine the backups of a deleted session; the daily sweep retries");
        }
        tracing::info!(session = %id, logged_out = linked_and_running, "session deleted");
        Ok(())
    }

    /// Restores `record`'s profile from the backup `key` (or the newest restorable one). Only
    /// a verified backup of this very instance and tenant, taken since its current login was
    /// linked, is restored. A running session is stopped first and started again after.
    /// Returns the backup restored and whether the session was restarted.
    pub async fn restore_backup(
        &self,
        record: &SessionRecord,
        key: Option<&str>,
    ) -> std::result::Result<(BackupRecord, bool), RestoreError> {
        let owner = BackupOwner::of(record);
        let backup = match key {
            Some(key) => self
                .backups
                .list(&record.id)
                .await?
                .into_iter()
                .find(|b| b.key.as_str() == key)
                .ok_or_else(|| {
                    RestoreError::NotFound(format!("backup {key} of session {}", record.name))
                })?,
            None => self
                .backups
                .newest_restorable(&owner)
                .await?
                .ok_or_else(|| {
                    RestoreError::NotFound(format!(
                        "a verified backup of session {} taken since its current link",
                        record.name
                    ))
                })?,
        };
        owner
            .admits(&backup)
            .map_err(|e| RestoreError::Refused(e.to_string()))?;
        if !backup.verified {
            return Err(RestoreError::Refused(format!(
                "backup {} failed verification and is never restored",
                backup.key
            )));
        }
        let was_running = self.engine.snapshot(&record.id).is_some();
        if was_running {
            match self.stop(&record.id).await {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let result = self
            .backups
            .restore_from(&backup, &self.profile_dir(&record.id))
            .await;
        if was_running {
            self.start(&record.id).await?;
        }
        result?;
        Ok((backup, was_running))
    }
}

/// A new session instance id: random, never reused (`s` and 16 hex digits). Short on
/// purpose: Chromium's runtime directory is named after it and the singleton socket inside
/// must fit a Unix socket path (108 bytes).
pub fn new_instance_id() -> SessionId {
    let bits: u64 = rand::random();
    SessionId::new(format!("s{bits:016x}")).expect("s + 16 hex digits is a valid session id")
}
