//! The deployable service: REST API, real-time events, scheduled jobs and dashboard wired
//! around the keepalive engine.
//!
//! # Layout
//!
//! - [`backup`]: the keepalive engine's backup hook on top of `whatsapp-storage`'s
//!   [`whatsapp_storage::backup::BackupManager`].
//! - [`notify`]: the [`whatsapp_core::Notifier`] that POSTs e-mails to the frontend's
//!   `/api/send-email` endpoint.

pub mod backup;
pub mod notify;
