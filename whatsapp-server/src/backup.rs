//! [`ManagedBackup`]: the keepalive engine's [`SessionBackup`] hook, backed by a
//! [`BackupManager`] (archive, encrypt, upload, verify, retention). With
//! [`ManagedBackup::with_metrics`] each attempt is counted in [`Metrics`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use whatsapp_core::profile::profile_dir;
use whatsapp_core::{Error, Result, SessionId, SessionStore};
use whatsapp_keepalive::SessionBackup;
use whatsapp_storage::backup::{BackupManager, BackupOwner};

use crate::metrics::Metrics;

/// Backs up each session's profile ([`profile_dir`]: `<sessions_path>/<session>`) through a
/// [`BackupManager`].
///
/// With [`ManagedBackup::with_store`] each backup records the session's tenant and a restore
/// takes only backups of the same instance and tenant, taken since the current link
/// ([`BackupOwner::of`]); without it only the instance id is checked.
#[derive(Debug, Clone)]
pub struct ManagedBackup {
    manager: Arc<BackupManager>,
    sessions_path: PathBuf,
    metrics: Option<Metrics>,
    store: Option<Arc<dyn SessionStore>>,
}

impl ManagedBackup {
    /// Backs up the profiles under `sessions_path` with `manager`.
    pub fn new(manager: Arc<BackupManager>, sessions_path: impl Into<PathBuf>) -> Self {
        ManagedBackup {
            manager,
            sessions_path: sessions_path.into(),
            metrics: None,
            store: None,
        }
    }

    /// Reads each session's record from `store` to know its tenant and link time.
    pub fn with_store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Who owns `session`'s backups: from its record when a store is set. A session whose
    /// record is gone has no owner to restore for ([`Error::NotFound`]).
    async fn owner(&self, session: &SessionId) -> Result<BackupOwner> {
        match &self.store {
            None => Ok(BackupOwner::session(session)),
            Some(store) => store
                .get(session)
                .await?
                .map(|r| BackupOwner::of(&r))
                .ok_or_else(|| Error::not_found(format!("session {session}"))),
        }
    }

    /// Records every backup attempt (result, archive size, duration) in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The manager (for restores and listings).
    pub fn manager(&self) -> &Arc<BackupManager> {
        &self.manager
    }
}

#[async_trait]
impl SessionBackup for ManagedBackup {
    async fn backup(&self, session: &SessionId) -> Result<()> {
        let started = Instant::now();
        let owner = self.owner(session).await?;
        let outcome = self
            .manager
            .backup_owned(&owner, &profile_dir(&self.sessions_path, session))
            .await;
        if let Some(m) = &self.metrics {
            let (ok, bytes) = match &outcome {
                Ok(r) => (r.verified, r.archive_size),
                Err(_) => (false, 0),
            };
            m.record_backup(session, ok, bytes, started.elapsed());
        }
        let record = outcome?;
        if record.verified {
            Ok(())
        } else {
            Err(Error::Corrupt(format!(
                "backup {} of {session} failed verification: {}",
                record.key,
                record.failure.as_deref().unwrap_or("unknown reason")
            )))
        }
    }

    async fn restore_login(&self, session: &SessionId) -> Result<bool> {
        let owner = self.owner(session).await?;
        let Some(record) = self.manager.newest_restorable(&owner).await? else {
            return Ok(false);
        };
        self.manager
            .restore_from(&record, &profile_dir(&self.sessions_path, session))
            .await?;
        tracing::info!(session = %session, backup = %record.key, "login restored from backup");
        Ok(true)
    }

    async fn prepare_profile(&self, session: &SessionId) -> Result<&'static str> {
        let owner = self.owner(session).await?;
        let outcome = self
            .manager
            .restore_owned(&owner, &profile_dir(&self.sessions_path, session))
            .await?;
        Ok(outcome.path())
    }

    async fn prune(&self, session: &SessionId, before: DateTime<Utc>) -> Result<usize> {
        let report = self.manager.prune_before(Some(session), before).await?;
        Ok(report.deleted.len())
    }
}
