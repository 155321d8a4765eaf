//! Session stores (SQLite, Postgres) and backups (tar + zstd archives on local disk or S3).
//!
//! # Layout
//!
//! - [`store`]: [`whatsapp_core::SessionStore`] implementations, one module per backend.
//! - [`backup`]: the archive format, the [`whatsapp_core::BackupSink`] implementations, and
//!   restore.
//! - `testing` (feature `testing`): the conformance suites of [`store::OutboxStore`] and
//!   [`store::MessageQueue`].

pub mod backup;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
