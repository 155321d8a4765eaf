//! The deployable service: REST API, real-time events, scheduled jobs and dashboard wired
//! around the keepalive engine.
//!
//! # Layout
//!
//! - [`app`]: [`app::App::start`] runs the start-up sequence and serves HTTP;
//!   [`app::RunningApp::shutdown`] stops gracefully. The binary only parses configuration
//!   and calls these.
//! - [`api`]: the REST API (OpenAPI at `/api/openapi.json`), health, metrics.
//! - [`auth`]: admin key, tenant keys, Supabase JWTs.
//! - [`backup`]: the keepalive engine's backup hook on top of `whatsapp-storage`'s
//!   [`whatsapp_storage::backup::BackupManager`].
//! - [`config`]: [`config::ServerConfig`], every setting from flags, environment and a TOML
//!   file, validated into [`config::CheckedServerConfig`].
//! - [`dashboard`]: the web page at `/`.
//! - [`events`]: the one vocabulary of session events, from the engine to Socket.IO,
//!   webhooks and metrics.
//! - [`deps`]: probes of the database, Redis and the backup store; alerts.
//! - [`history`]: records incoming messages and their acks in the message history.
//! - [`jobs`]: scheduled jobs (cache clean-up, renewal reminders, health check, clean-up).
//! - [`messaging`]: the durable, paced outgoing message queue and its worker.
//! - [`metrics`]: Prometheus metrics.
//! - [`outbox`]: durable delivery of e-mails and signed webhooks (retries, dead letters).
//! - [`notify`]: the [`whatsapp_core::Notifier`] that POSTs e-mails to the frontend's
//!   `/api/send-email` endpoint.
//! - [`process`]: settings of the process itself (malloc arenas), applied before start-up.
//! - [`qr`]: QR images.
//! - [`realtime`]: the Socket.IO endpoint pushing `qr`/`authenticated`/`ready`/`status`/
//!   `disconnected` events to the tenant that owns the session.
//! - [`serve`]: the HTTP listener: connection limit and time-outs.
//! - [`sessions`]: the session lifecycle (create, start, stop, restart, log out, delete,
//!   restore), pairing the engine with the message workers; owns the profiles' location.
//! - [`state`]: [`state::Services`], the handles every handler, job and forwarder shares.
//! - [`tenants`]: tenants' webhook endpoints.

pub mod api;
pub mod app;
pub mod auth;
pub mod backup;
pub mod config;
pub mod dashboard;
pub mod deps;
pub mod events;
pub mod history;
pub mod jobs;
pub mod messaging;
pub mod metrics;
pub mod notify;
pub mod outbox;
pub mod process;
pub mod qr;
pub mod realtime;
pub mod serve;
pub mod sessions;
pub mod state;
pub mod tenants;
