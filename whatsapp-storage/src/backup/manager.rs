//! [`BackupManager`]: backup, verification, listing, retention and restore of session
//! profiles on top of any [`BackupSink`] and [`Clock`].
//!
//! # Object layout in the sink
//!
//! ```text
//! <session>/<created, %Y%m%dT%H%M%S%.3fZ>-<random>.tar.zst[.enc]   the archive
//! <session>/<created, %Y%m%dT%H%M%S%.3fZ>-<random>.json            its BackupRecord
//!
//! .deleted/<session>/deleted.json                                   a deleted session's marker
//! .deleted/<session>/<the session's objects, same names>            its quarantined backups
//! ```
//!
//! The record (manifest, archive sha256 and size, encryption key id, `verified`, the owning
//! tenant) is written after the archive has been uploaded and read back; a backup whose
//! record is missing or says `verified: false` is never chosen for a restore.
//!
//! `<session>` is the session *instance* id ([`whatsapp_core::SessionRecord::id`]), never
//! reused, so a new session can never reach an old login by taking an old name. A restore
//! only takes backups that [`BackupOwner::admits`]: the same instance, the same tenant, not
//! older than the current link. Deleted sessions' backups are moved under `.deleted/`
//! ([`BackupManager::quarantine`]), out of every session's reach, until the admin recovers
//! them or [`BackupManager::purge_quarantined`] removes them.

use std::fs;
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use whatsapp_core::{
    BackupKey, BackupSink, ByteStream, Clock, Error, Result, SessionId, SessionRecord, TenantId,
};

use super::archive::{
    self, ArchiveOptions, HashingReader, HashingWriter, Limits, Manifest, from_io,
};
use super::crypto::{DecryptReader, EncryptWriter, EncryptionKey};
use super::local::random_suffix;
use super::profile::{self, SnapshotOptions, io_err};

/// Default retention: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Largest record (JSON) the manager reads.
const MAX_RECORD: usize = 64 << 20;

/// The prefix under which deleted sessions' backups wait ([`BackupManager::quarantine`]).
/// Not a valid session id (it has a dot), so no session's listing can ever reach it.
pub const QUARANTINE_PREFIX: &str = ".deleted";

/// The marker object of a quarantined session.
const QUARANTINE_MARKER: &str = "deleted.json";

/// Whose login a backup holds, and so which backups may come back into a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupOwner {
    /// The session instance.
    pub session: SessionId,
    /// Its tenant, when known (backups record it; one of another tenant is refused).
    pub tenant: Option<TenantId>,
    /// Backups taken before this (the current link) hold an earlier login: refused.
    pub not_before: Option<DateTime<Utc>>,
}

impl BackupOwner {
    /// Only the instance id: no tenant or link-time rule (library use without records).
    pub fn session(id: &SessionId) -> Self {
        BackupOwner {
            session: id.clone(),
            tenant: None,
            not_before: None,
        }
    }

    /// The owner described by a session record: its instance, its tenant, its link time.
    pub fn of(record: &SessionRecord) -> Self {
        BackupOwner {
            session: record.id.clone(),
            tenant: Some(record.tenant.clone()),
            not_before: record.linked_at,
        }
    }

    /// Whether `backup` may be restored into this owner's profile; the error
    /// ([`Error::Conflict`]) says why not.
    pub fn admits(&self, backup: &BackupRecord) -> Result<()> {
        if backup.session != self.session {
            return Err(Error::Conflict(format!(
                "backup {} belongs to another session instance and is never restored into this one",
                backup.key
            )));
        }
        if let (Some(want), Some(have)) = (&self.tenant, &backup.tenant)
            && want != have
        {
            return Err(Error::Conflict(format!(
                "backup {} belongs to another tenant and is never restored into this session",
                backup.key
            )));
        }
        if let Some(linked) = self.not_before
            && backup.created_at < linked
        {
            return Err(Error::Conflict(format!(
                "backup {} was taken at {} , before the session's current login was linked ({}): it holds an earlier login",
                backup.key,
                backup.created_at.to_rfc3339(),
                linked.to_rfc3339()
            )));
        }
        Ok(())
    }
}

/// A deleted session whose backups wait in quarantine ([`BackupManager::quarantine`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedSession {
    /// The deleted session instance.
    pub session: SessionId,
    /// Its tenant.
    pub tenant: Option<TenantId>,
    /// The name its tenant had given it.
    pub name: Option<SessionId>,
    /// When it was deleted (quarantine retention counts from here).
    pub deleted_at: DateTime<Utc>,
    /// How many backup objects wait (archives and records; filled in when listed).
    #[serde(default)]
    pub objects: usize,
}

/// How backups are made and kept.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// The WhatsApp origin whose storage is backed up.
    pub origin: String,
    /// Include templates (see [`profile::DEFAULT_INCLUDE`]).
    pub include: Vec<String>,
    /// Encrypt archives with this key; `None` stores them plain (and warns once).
    pub encryption_key: Option<EncryptionKey>,
    /// Delete backups older than this (never the newest verified one of a session).
    pub retention: Duration,
    /// Where snapshots and archives are staged before upload (a directory on a disk with
    /// room for one profile and its archive).
    pub work_dir: PathBuf,
    /// zstd level.
    pub compression_level: i32,
    /// Bounds on extraction.
    pub limits: Limits,
    /// Copy attempts when snapshotting a profile in use.
    pub snapshot_attempts: u32,
    /// Pause between snapshot attempts.
    pub snapshot_retry_pause: Duration,
}

impl BackupConfig {
    /// Defaults, staging in `work_dir`.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        let snap = SnapshotOptions::default();
        BackupConfig {
            origin: profile::DEFAULT_ORIGIN.to_string(),
            include: snap.include,
            encryption_key: None,
            retention: DEFAULT_RETENTION,
            work_dir: work_dir.into(),
            compression_level: 6,
            limits: Limits::default(),
            snapshot_attempts: snap.attempts,
            snapshot_retry_pause: snap.retry_pause,
        }
    }
}

/// What the sink holds about one backup (stored as JSON next to the archive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// The session instance backed up.
    pub session: SessionId,
    /// The tenant that owned it (absent in backups made before tenants were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    /// The archive's key.
    pub key: BackupKey,
    /// This record's key.
    pub record_key: BackupKey,
    /// When the backup was taken (from the injected clock).
    pub created_at: DateTime<Utc>,
    /// sha256 of the stored archive bytes (after encryption, if any).
    pub archive_sha256: String,
    /// Size of the stored archive.
    pub archive_size: u64,
    /// Whether the archive is encrypted.
    pub encrypted: bool,
    /// The id of the key it was encrypted with.
    pub key_id: Option<String>,
    /// Read back after upload and found to match the manifest.
    pub verified: bool,
    /// Why verification failed.
    pub failure: Option<String>,
    /// The archive's manifest.
    pub manifest: Manifest,
}

/// Which way [`BackupManager::restore`] brought a profile back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// The profile on disk was intact (lock files cleaned).
    Disk,
    /// The profile was replaced by this backup.
    Backup {
        /// The archive restored.
        key: BackupKey,
        /// When it was taken.
        created_at: DateTime<Utc>,
        /// What was wrong with the profile on disk.
        problems: Vec<String>,
    },
    /// Neither the disk nor a backup holds a login: a new QR scan is needed.
    None {
        /// Why, for the operator.
        reason: String,
    },
}

impl RestoreOutcome {
    /// `"disk"`, `"backup"` or `"none"`.
    pub fn path(&self) -> &'static str {
        match self {
            RestoreOutcome::Disk => "disk",
            RestoreOutcome::Backup { .. } => "backup",
            RestoreOutcome::None { .. } => "none",
        }
    }
}

/// What [`BackupManager::apply_retention`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Objects deleted.
    pub deleted: Vec<BackupKey>,
    /// Backups older than the retention kept because each is its session's newest verified
    /// backup.
    pub kept_newest: Vec<BackupKey>,
}

static PLAIN_WARNED: AtomicBool = AtomicBool::new(false);

/// Backs up and restores session profiles.
#[derive(Debug, Clone)]
pub struct BackupManager {
    sink: Arc<dyn BackupSink>,
    clock: Arc<dyn Clock>,
    config: Arc<BackupConfig>,
}

impl BackupManager {
    /// A manager storing into `sink`. Without an encryption key, warns (once per process)
    /// that backups will be stored in plain text.
    pub fn new(sink: Arc<dyn BackupSink>, clock: Arc<dyn Clock>, config: BackupConfig) -> Self {
        if config.encryption_key.is_none() && !PLAIN_WARNED.swap(true, Ordering::Relaxed) {
            warn!(
                sink = sink.name(),
                "no backup encryption key configured: backups are stored unencrypted (they hold the WhatsApp login)"
            );
        }
        BackupManager {
            sink,
            clock,
            config: Arc::new(config),
        }
    }

    /// The sink.
    pub fn sink(&self) -> &Arc<dyn BackupSink> {
        &self.sink
    }

    /// The configuration.
    pub fn config(&self) -> &BackupConfig {
        &self.config
    }

    /// Snapshots `profile_dir`, archives, optionally encrypts, uploads, reads back and
    /// verifies, and stores the record.
    ///
    /// A profile without the critical files (see [`profile::critical_files_ok`]) is not
    /// backed up ([`Error::Conflict`]): it must never become the newest backup. A backup
    /// that fails verification is recorded with `verified: false` and reported as
    /// [`Error::Corrupt`].
    pub async fn backup_session(&self, id: &SessionId, profile_dir: &Path) -> Result<BackupRecord> {
        self.backup_owned(&BackupOwner::session(id), profile_dir)
            .await
    }

    /// [`BackupManager::backup_session`] recording `owner`'s tenant in the backup, so that a
    /// restore can refuse it anywhere else.
    pub async fn backup_owned(
        &self,
        owner: &BackupOwner,
        profile_dir: &Path,
    ) -> Result<BackupRecord> {
        let id = &owner.session;
        let created_at = self.clock.now();
        let stem = format!(
            "{}/{}-{}",
            id,
            created_at.format("%Y%m%dT%H%M%S%.3fZ"),
            random_suffix()
        );
        let encrypted = self.config.encryption_key.is_some();
        let key = BackupKey::new(format!(
            "{stem}.tar.zst{}",
            if encrypted { ".enc" } else { "" }
        ))?;
        let record_key = BackupKey::new(format!("{stem}.json"))?;

        fs::create_dir_all(&self.config.work_dir)
            .map_err(|e| io_err("creating", &self.config.work_dir, e))?;
        let work = tempfile::Builder::new()
            .prefix("backup-")
            .tempdir_in(&self.config.work_dir)
            .map_err(|e| io_err("creating a directory in", &self.config.work_dir, e))?;
        let archive_path = work.path().join("archive");

        // 1. Snapshot + archive (+ encrypt) into a temporary file, hashing the output.
        let (manifest, archive_sha256, archive_size) = {
            let cfg = self.config.clone();
            let profile_dir = profile_dir.to_path_buf();
            let staging = work.path().join("snapshot");
            let archive_path = archive_path.clone();
            blocking(move || make_archive(&cfg, &profile_dir, &staging, &archive_path, created_at))
                .await?
        };

        // 2. Upload, streamed from the file.
        let file = tokio::fs::File::open(&archive_path)
            .await
            .map_err(|e| io_err("opening", &archive_path, e))?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
            .map_err(|e| Error::backend("filesystem", false, format!("reading the archive: {e}")))
            .boxed();
        self.sink.put(&key, body).await?;
        drop(work);

        // 3. Read back and verify against the manifest.
        let failure = match self
            .verify_stored(&key, encrypted, &archive_sha256, archive_size, &manifest)
            .await
        {
            Ok(()) => None,
            Err(e) if e.is_transient() => {
                // Could not read it back right now: not proven good, so not verified.
                Some(format!("read-back failed: {e}"))
            }
            Err(e) => Some(e.to_string()),
        };
        let record = BackupRecord {
            session: id.clone(),
            tenant: owner.tenant.clone(),
            key: key.clone(),
            record_key: record_key.clone(),
            created_at,
            archive_sha256,
            archive_size,
            encrypted,
            key_id: self.config.encryption_key.as_ref().map(|k| k.id()),
            verified: failure.is_none(),
            failure: failure.clone(),
            manifest,
        };
        let json =
            serde_json::to_vec_pretty(&record).map_err(|e| Error::backend("json", false, e))?;
        self.sink.put(&record_key, bytes_stream(json)).await?;
        match failure {
            None => {
                info!(session = %id, key = %key, size = record.archive_size, files = record.manifest.files.len(), "backup verified");
                Ok(record)
            }
            Some(f) => Err(Error::Corrupt(format!(
                "backup {key} failed verification and is marked bad: {f}"
            ))),
        }
    }

    async fn verify_stored(
        &self,
        key: &BackupKey,
        encrypted: bool,
        sha: &str,
        size: u64,
        manifest: &Manifest,
    ) -> Result<()> {
        let stream = self.sink.get(key).await?;
        let reader = sync_reader(stream);
        let cfg = self.config.clone();
        let (got, got_sha, got_size) = blocking(move || {
            let mut hashing = HashingReader::new(reader);
            let m = open_and_walk(&cfg, &mut hashing, encrypted, None)?;
            io::copy(&mut hashing, &mut io::sink())
                .map_err(|e| from_io(e, "reading the stored archive"))?;
            Ok((m, hashing.hex_digest(), hashing.count))
        })
        .await?;
        if got_size != size || got_sha != sha {
            return Err(Error::Corrupt(format!(
                "stored archive differs from the one uploaded ({got_size} bytes, sha256 {got_sha}; expected {size} bytes, sha256 {sha})"
            )));
        }
        if &got != manifest {
            return Err(Error::Corrupt("stored archive's manifest differs".into()));
        }
        Ok(())
    }

    /// Every backup record of a session, oldest first. Unreadable records are skipped
    /// (logged).
    pub async fn list(&self, id: &SessionId) -> Result<Vec<BackupRecord>> {
        let objects = self.sink.list(&format!("{id}/")).await?;
        let mut out = Vec::new();
        for o in objects.iter().filter(|o| o.key.as_str().ends_with(".json")) {
            match self.read_record(&o.key).await {
                Ok(r) => out.push(r),
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => warn!(key = %o.key, error = %e, "skipping unreadable backup record"),
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.key.cmp(&b.key)));
        Ok(out)
    }

    async fn read_record(&self, key: &BackupKey) -> Result<BackupRecord> {
        let buf = self.read_small(key).await?;
        serde_json::from_slice(&buf)
            .map_err(|e| Error::Corrupt(format!("backup record {key} does not parse: {e}")))
    }

    /// The newest verified backup of a session, if any.
    pub async fn newest_verified(&self, id: &SessionId) -> Result<Option<BackupRecord>> {
        Ok(self.list(id).await?.into_iter().rev().find(|r| r.verified))
    }

    /// The newest verified backup that `owner` [admits](BackupOwner::admits), if any.
    pub async fn newest_restorable(&self, owner: &BackupOwner) -> Result<Option<BackupRecord>> {
        Ok(self
            .list(&owner.session)
            .await?
            .into_iter()
            .rev()
            .find(|r| r.verified && owner.admits(r).is_ok()))
    }

    /// Deletes backups older than the retention, for one session or (with `None`) every
    /// session in the sink, never a session's newest verified backup. Archives without a
    /// record (an interrupted backup) are deleted by the same age rule, read from their key.
    pub async fn apply_retention(&self, id: Option<&SessionId>) -> Result<RetentionReport> {
        let cutoff = self.clock.now()
            - chrono::Duration::from_std(self.config.retention)
                .map_err(|_| Error::invalid("backup retention", "out of range"))?;
        self.prune_before(id, cutoff).await
    }

    /// Deletes backups taken before `cutoff`, for one session or (with `None`) every session
    /// in the sink, never a session's newest verified backup (the same rule as
    /// [`BackupManager::apply_retention`], with the cut-off given by the caller — the keepalive
    /// engine's retention setting).
    pub async fn prune_before(
        &self,
        id: Option<&SessionId>,
        cutoff: DateTime<Utc>,
    ) -> Result<RetentionReport> {
        let sessions: Vec<String> = match id {
            Some(id) => vec![id.to_string()],
            None => {
                let s: std::collections::BTreeSet<String> = self
                    .sink
                    .list("")
                    .await?
                    .into_iter()
                    .filter_map(|o| o.key.as_str().split_once('/').map(|(a, _)| a.to_string()))
                    .collect();
                s.into_iter().collect()
            }
        };
        let mut report = RetentionReport::default();
        for s in sessions {
            let Ok(sid) = SessionId::new(&s) else {
                continue; // not ours
            };
            let objects = self.sink.list(&format!("{s}/")).await?;
            let records = self.list(&sid).await?;
            let newest_verified = records
                .iter()
                .rev()
                .find(|r| r.verified)
                .map(|r| r.key.clone());
            let recorded: std::collections::BTreeSet<&str> = records
                .iter()
                .flat_map(|r| [r.key.as_str(), r.record_key.as_str()])
                .collect();
            for r in &records {
                if r.created_at >= cutoff {
                    continue;
                }
                if Some(&r.key) == newest_verified.as_ref() {
                    report.kept_newest.push(r.key.clone());
                    continue;
                }
                // Archive first: a record without its archive is harmless (restore moves on
                // to the next one); the reverse would leave an unlisted archive.
                self.sink.delete(&r.key).await?;
                self.sink.delete(&r.record_key).await?;
                report.deleted.push(r.key.clone());
                report.deleted.push(r.record_key.clone());
            }
            for o in objects {
                if recorded.contains(o.key.as_str()) {
                    continue;
                }
                let when = time_from_key(&o.key).unwrap_or(o.last_modified);
                if when < cutoff {
                    self.sink.delete(&o.key).await?;
                    report.deleted.push(o.key);
                }
            }
        }
        if !report.deleted.is_empty() {
            info!(deleted = report.deleted.len(), "backup retention applied");
        }
        Ok(report)
    }

    /// Brings a session's profile back before a browser is launched on it:
    ///
    /// 1. if the profile passes [`profile::critical_files_ok`], clean its lock files →
    ///    [`RestoreOutcome::Disk`];
    /// 2. otherwise take the newest verified backup, extract it into a temporary directory
    ///    beside the profile, check it against its manifest and the critical-files rule,
    ///    move the old profile aside to `.<name>.before-restore` (replacing an older one),
    ///    rename the new one into place, clean the lock files → [`RestoreOutcome::Backup`].
    ///    A backup that turns out damaged is skipped for the next older verified one;
    /// 3. no usable backup → [`RestoreOutcome::None`]: a new QR scan is needed.
    ///
    /// A failed extraction leaves the existing profile untouched. Transient errors (the
    /// sink unreachable) are returned as errors, not as `None`, so the caller retries
    /// instead of asking for a new QR. Must not run while a browser uses the profile.
    pub async fn restore(&self, id: &SessionId, profile_dir: &Path) -> Result<RestoreOutcome> {
        self.restore_owned(&BackupOwner::session(id), profile_dir)
            .await
    }

    /// [`BackupManager::restore`] taking only backups that `owner`
    /// [admits](BackupOwner::admits) (same instance and tenant, not older than the link).
    pub async fn restore_owned(
        &self,
        owner: &BackupOwner,
        profile_dir: &Path,
    ) -> Result<RestoreOutcome> {
        let id = &owner.session;
        let problems = match profile::critical_files_ok(profile_dir, &self.config.origin) {
            Ok(()) => {
                profile::clean_lock_files(profile_dir)?;
                info!(session = %id, path = "disk", "profile intact");
                return Ok(RestoreOutcome::Disk);
            }
            Err(p) => p,
        };
        warn!(session = %id, problems = ?problems, "profile missing or damaged; looking for a backup");
        let candidates: Vec<BackupRecord> = self
            .list(id)
            .await?
            .into_iter()
            .rev()
            .filter(|r| r.verified)
            .filter(|r| match owner.admits(r) {
                Ok(()) => true,
                Err(e) => {
                    warn!(session = %id, key = %r.key, reason = %e, "backup not restorable here; skipped");
                    false
                }
            })
            .collect();
        let mut failures = Vec::new();
        for r in candidates {
            // A key mismatch is a configuration error, not a damaged backup: report it
            // rather than fall back to "none" (which would ask for a new QR scan).
            self.check_key(&r)?;
            match self.restore_from(&r, profile_dir).await {
                Ok(()) => {
                    profile::clean_lock_files(profile_dir)?;
                    info!(session = %id, key = %r.key, path = "backup", "profile restored from backup");
                    return Ok(RestoreOutcome::Backup {
                        key: r.key,
                        created_at: r.created_at,
                        problems,
                    });
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    warn!(session = %id, key = %r.key, error = %e, "backup unusable; trying an older one");
                    failures.push(format!("{}: {e}", r.key));
                }
            }
        }
        let reason = if failures.is_empty() {
            format!("profile: {}; no verified backup", problems.join("; "))
        } else {
            format!(
                "profile: {}; every verified backup failed: {}",
                problems.join("; "),
                failures.join("; ")
            )
        };
        warn!(session = %id, path = "none", %reason, "a new QR scan is needed");
        Ok(RestoreOutcome::None { reason })
    }

    fn check_key(&self, r: &BackupRecord) -> Result<()> {
        if !r.encrypted {
            return Ok(());
        }
        let configured = self.config.encryption_key.as_ref().map(|k| k.id());
        match (&r.key_id, configured) {
            (_, None) => Err(Error::invalid(
                "backup encryption key",
                format!(
                    "backup {} is encrypted (key id {}) but no key is configured",
                    r.key,
                    r.key_id.as_deref().unwrap_or("unknown")
                ),
            )),
            (Some(want), Some(have)) if *want != have => Err(Error::invalid(
                "backup encryption key",
                format!(
                    "wrong key: backup {} was encrypted with key id {want}, the configured key has id {have}",
                    r.key
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Moves every object of session instance `session` under [`QUARANTINE_PREFIX`], with a
    /// marker naming its tenant, name and the deletion time: no session can list or restore
    /// them any more; the admin can [recover](BackupManager::recover_quarantined) them until
    /// [`BackupManager::purge_quarantined`] removes them. Returns how many objects moved.
    /// Idempotent: a second call (after a partial failure) moves what is left.
    pub async fn quarantine(
        &self,
        session: &SessionId,
        tenant: Option<&TenantId>,
        name: Option<&SessionId>,
    ) -> Result<usize> {
        let objects = self.sink.list(&format!("{session}/")).await?;
        let marker_key =
            BackupKey::new(format!("{QUARANTINE_PREFIX}/{session}/{QUARANTINE_MARKER}"))?;
        if self.sink.head(&marker_key).await.is_err() {
            let marker = QuarantinedSession {
                session: session.clone(),
                tenant: tenant.cloned(),
                name: name.cloned(),
                deleted_at: self.clock.now(),
                objects: 0,
            };
            let json =
                serde_json::to_vec_pretty(&marker).map_err(|e| Error::backend("json", false, e))?;
            self.sink.put(&marker_key, bytes_stream(json)).await?;
        }
        let mut moved = 0;
        for o in objects {
            let to = BackupKey::new(format!("{QUARANTINE_PREFIX}/{}", o.key))?;
            self.move_object(&o.key, &to).await?;
            moved += 1;
        }
        if moved > 0 {
            info!(session = %session, objects = moved, "backups of a deleted session quarantined");
        }
        Ok(moved)
    }

    /// The sessions whose backups wait in quarantine, oldest deletion first.
    pub async fn list_quarantined(&self) -> Result<Vec<QuarantinedSession>> {
        let objects = self.sink.list(&format!("{QUARANTINE_PREFIX}/")).await?;
        let mut out = Vec::new();
        for o in objects
            .iter()
            .filter(|o| o.key.as_str().ends_with(&format!("/{QUARANTINE_MARKER}")))
        {
            let bytes = self.read_small(&o.key).await?;
            let mut q: QuarantinedSession = match serde_json::from_slice(&bytes) {
                Ok(q) => q,
                Err(e) => {
                    warn!(key = %o.key, error = %e, "skipping an unreadable quarantine marker");
                    continue;
                }
            };
            let prefix = format!("{QUARANTINE_PREFIX}/{}/", q.session);
            q.objects = objects
                .iter()
                .filter(|x| x.key.as_str().starts_with(&prefix) && x.key != o.key)
                .count();
            out.push(q);
        }
        out.sort_by_key(|a| a.deleted_at);
        Ok(out)
    }

    /// Moves a quarantined session's backups back under its instance id (for the admin to
    /// give the session back); returns its marker. [`Error::NotFound`] if it is not there.
    pub async fn recover_quarantined(&self, session: &SessionId) -> Result<QuarantinedSession> {
        let marker = self
            .list_quarantined()
            .await?
            .into_iter()
            .find(|q| q.session == *session)
            .ok_or_else(|| Error::not_found(format!("quarantined session {session}")))?;
        let prefix = format!("{QUARANTINE_PREFIX}/{session}/");
        for o in self.sink.list(&prefix).await? {
            let Some(rest) = o.key.as_str().strip_prefix(&prefix) else {
                continue;
            };
            if rest == QUARANTINE_MARKER {
                continue;
            }
            let to = BackupKey::new(format!("{session}/{rest}"))?;
            self.move_object(&o.key, &to).await?;
        }
        self.sink
            .delete(&BackupKey::new(format!("{prefix}{QUARANTINE_MARKER}"))?)
            .await?;
        info!(session = %session, "quarantined backups recovered");
        Ok(marker)
    }

    /// Deletes the quarantined backups of sessions deleted before `cutoff`; returns the
    /// sessions purged.
    pub async fn purge_quarantined(&self, cutoff: DateTime<Utc>) -> Result<Vec<SessionId>> {
        let mut purged = Vec::new();
        for q in self.list_quarantined().await? {
            if q.deleted_at >= cutoff {
                continue;
            }
            let prefix = format!("{QUARANTINE_PREFIX}/{}/", q.session);
            let marker = BackupKey::new(format!("{prefix}{QUARANTINE_MARKER}"))?;
            for o in self.sink.list(&prefix).await? {
                if o.key != marker {
                    self.sink.delete(&o.key).await?;
                }
            }
            // The marker last: a purge cut short is finished by the next one.
            self.sink.delete(&marker).await?;
            info!(session = %q.session, "quarantined backups purged");
            purged.push(q.session);
        }
        Ok(purged)
    }

    /// The session instances that have backups in the sink (not counting quarantine).
    pub async fn sessions_with_backups(&self) -> Result<Vec<SessionId>> {
        let set: std::collections::BTreeSet<SessionId> = self
            .sink
            .list("")
            .await?
            .into_iter()
            .filter_map(|o| {
                o.key
                    .as_str()
                    .split_once('/')
                    .and_then(|(a, _)| SessionId::new(a).ok())
            })
            .collect();
        Ok(set.into_iter().collect())
    }

    async fn move_object(&self, from: &BackupKey, to: &BackupKey) -> Result<()> {
        let body = self.sink.get(from).await?;
        self.sink.put(to, body).await?;
        self.sink.delete(from).await
    }

    async fn read_small(&self, key: &BackupKey) -> Result<Vec<u8>> {
        let mut s = self.sink.get(key).await?;
        let mut buf = Vec::new();
        while let Some(chunk) = s.next().await {
            buf.extend_from_slice(&chunk?);
            if buf.len() > MAX_RECORD {
                return Err(Error::Corrupt(format!("{key} is too large")));
            }
        }
        Ok(buf)
    }

    /// Restores one backup into `profile_dir` (extract beside it, verify, swap).
    pub async fn restore_from(&self, record: &BackupRecord, profile_dir: &Path) -> Result<()> {
        self.check_key(record)?;
        let name = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::invalid("profile dir", "must end in a directory name"))?
            .to_string();
        let parent = match profile_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(|e| io_err("creating", &parent, e))?;
        let tmp = parent.join(format!(".{name}.restore-{}", random_suffix()));
        let stream = self.sink.get(&record.key).await?;
        let reader = sync_reader(stream);
        let cfg = self.config.clone();
        let encrypted = record.encrypted;
        let want = record.manifest.clone();
        let tmp2 = tmp.clone();
        let result = blocking(move || {
            let m = open_and_walk(&cfg, reader, encrypted, Some(&tmp2))?;
            if m != want {
                return Err(Error::Corrupt(
                    "the archive's manifest differs from its record".into(),
                ));
            }
            profile::critical_files_ok(&tmp2, &cfg.origin).map_err(|p| {
                Error::Corrupt(format!(
                    "the restored profile lacks critical files: {}",
                    p.join("; ")
                ))
            })
        })
        .await;
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        // Swap: old profile aside, new one in.
        let aside = whatsapp_core::profile::set_aside_dir(profile_dir);
        if fs::symlink_metadata(&aside).is_ok() {
            fs::remove_dir_all(&aside).map_err(|e| io_err("removing", &aside, e))?;
        }
        let had_old = fs::symlink_metadata(profile_dir).is_ok();
        if had_old && let Err(e) = fs::rename(profile_dir, &aside) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(io_err("moving aside", profile_dir, e));
        }
        if let Err(e) = fs::rename(&tmp, profile_dir) {
            if had_old {
                let _ = fs::rename(&aside, profile_dir);
            }
            let _ = fs::remove_dir_all(&tmp);
            return Err(io_err("renaming into place", &tmp, e));
        }
        Ok(())
    }
}

fn make_archive(
    cfg: &BackupConfig,
    profile_dir: &Path,
    staging: &Path,
    archive_path: &Path,
    created_at: DateTime<Utc>,
) -> Result<(Manifest, String, u64)> {
    if !profile_dir.is_dir() {
        return Err(Error::not_found(format!(
            "profile directory {}",
            profile_dir.display()
        )));
    }
    let snap = SnapshotOptions {
        origin: cfg.origin.clone(),
        include: cfg.include.clone(),
        attempts: cfg.snapshot_attempts,
        retry_pause: cfg.snapshot_retry_pause,
    };
    profile::snapshot_profile(profile_dir, staging, &snap)?;
    if let Err(p) = profile::critical_files_ok(staging, &cfg.origin) {
        return Err(Error::Conflict(format!(
            "the profile holds no complete login ({}); not backed up, so it cannot replace a good backup",
            p.join("; ")
        )));
    }
    let opts = ArchiveOptions {
        origin: cfg.origin.clone(),
        include: cfg.include.clone(),
        compression_level: cfg.compression_level,
        created_at,
    };
    let file = fs::File::create(archive_path).map_err(|e| io_err("creating", archive_path, e))?;
    let mut hashing = HashingWriter::new(BufWriter::with_capacity(256 * 1024, file));
    let w = |e: io::Error| from_io(e, "writing the archive");
    let manifest = match &cfg.encryption_key {
        Some(k) => {
            let mut enc = EncryptWriter::new(&mut hashing, k).map_err(w)?;
            let m = archive::create_archive(staging, &opts, &mut enc)?;
            enc.finish().map_err(w)?;
            m
        }
        None => archive::create_archive(staging, &opts, &mut hashing)?,
    };
    let (buf, sha, size) = hashing.finish();
    let file = buf.into_inner().map_err(|e| w(e.into_error()))?;
    file.sync_all()
        .map_err(|e| io_err("syncing", archive_path, e))?;
    // The snapshot is no longer needed; free the space before the upload.
    let _ = fs::remove_dir_all(staging);
    Ok((manifest, sha, size))
}

/// Decrypts (if needed) and walks an archive: extracts into `target`, or only verifies.
fn open_and_walk<R: Read>(
    cfg: &BackupConfig,
    reader: R,
    encrypted: bool,
    target: Option<&Path>,
) -> Result<Manifest> {
    let reader: Box<dyn Read + '_> = if encrypted {
        let key = cfg.encryption_key.as_ref().ok_or_else(|| {
            Error::invalid(
                "backup encryption key",
                "the backup is encrypted but no key is configured",
            )
        })?;
        Box::new(DecryptReader::new(reader, key)?)
    } else {
        Box::new(reader)
    };
    match target {
        Some(t) => archive::extract_archive(reader, t, &cfg.limits),
        None => archive::verify_archive(reader, &cfg.limits),
    }
}

/// A blocking reader over a sink stream (to be moved into `spawn_blocking`). Sink errors
/// travel inside the `io::Error` and come back out unchanged through [`from_io`].
fn sync_reader(stream: ByteStream) -> impl Read + Send + 'static {
    let s = stream.map_err(io::Error::other);
    tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(s))
}

fn bytes_stream(data: Vec<u8>) -> ByteStream {
    futures::stream::once(async move { Ok(Bytes::from(data)) }).boxed()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend("backup", false, e))?
}

/// Reads the creation time from a key made by [`BackupManager::backup_session`].
fn time_from_key(key: &BackupKey) -> Option<DateTime<Utc>> {
    let name = key.as_str().rsplit('/').next()?;
    let ts = name.split('-').next()?;
    chrono::NaiveDateTime::parse_from_str(ts, "%Y%m%dT%H%M%S%.3fZ")
        .ok()
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_time() {
        let k = BackupKey::new("alice/20260101T020000.123Z-abcdef.tar.zst").unwrap();
        assert_eq!(
            time_from_key(&k).unwrap(),
            "2026-01-01T02:00:00.123Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn restore_outcome_paths() {
        assert_eq!(RestoreOutcome::Disk.path(), "disk");
        assert_eq!(
            RestoreOutcome::None {
                reason: String::new()
            }
            .path(),
            "none"
        );
    }
}
