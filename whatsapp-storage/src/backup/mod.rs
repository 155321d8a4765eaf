//! Backups: the archive format, sinks, verification, retention and restore.
//!
//! # Layout
//!
//! - [`profile`]: what a login needs from a Chromium profile ([`profile::DEFAULT_INCLUDE`]),
//!   the critical-files rule, lock-file clean-up, and the consistent snapshot of a profile
//!   in use.
//! - [`leveldb`]: a read-only consistency check of a LevelDB directory.
//! - [`archive`]: tar + zstd with a manifest; hostile-archive-proof extraction.
//! - [`crypto`]: streamed XChaCha20-Poly1305 encryption at rest.
//! - [`local`], [`s3`]: the [`whatsapp_core::BackupSink`] implementations.
//! - [`manager`]: [`BackupManager`], which backs up, verifies, lists, applies retention
//!   and restores on top of any sink.
//!
//! The operator's runbook is the "Backups and restore" section of `docs/operations.md`.

pub mod archive;
pub mod crypto;
pub mod leveldb;
pub mod local;
pub mod manager;
pub mod profile;
#[cfg(feature = "s3")]
pub mod s3;

pub use archive::{
    ArchiveOptions, Limits, Manifest, ManifestFile, create_archive, extract_archive,
};
pub use crypto::EncryptionKey;
pub use local::LocalBackupSink;
pub use manager::{
    BackupConfig, BackupManager, BackupOwner, BackupRecord, QUARANTINE_PREFIX, QuarantinedSession,
    RestoreOutcome, RetentionReport,
};
pub use profile::{DEFAULT_INCLUDE, DEFAULT_ORIGIN, clean_lock_files, critical_files_ok};
#[cfg(feature = "s3")]
pub use s3::{S3BackupSink, S3Config};
