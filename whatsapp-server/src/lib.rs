//! The deployable service: REST API, real-time events, scheduled jobs and dashboard wired
//! around the keepalive engine.
//!
//! # Layout
//!
//! - [`backup`]: the keepalive engine's backup hook on top of `whatsapp-storage`'s
//!   [`whatsapp_storage::backup::BackupManager`].
//! - [`config`]: [`config::ServerConfig`], every setting from flags, environment and a TOML
//!   file, validated into [`config::CheckedServerConfig`].
//! - [`messaging`]: the durable, paced outgoing message queue and its worker.
//! - [`outbox`]: durable delivery of e-mails and signed webhooks (retries, dead letters).
//! - [`notify`]: the [`whatsapp_core::Notifier`] that POSTs e-mails to the frontend's
//!   `/api/send-email` endpoint.
//! - [`realtime`]: the Socket.IO endpoint pushing `qr`/`authenticated`/`ready`/`status`/
//!   `disconnected` events to the tenant that owns the session.

pub mod backup;
pub mod config;
pub mod messaging;
pub mod notify;
pub mod outbox;
pub mod realtime;
