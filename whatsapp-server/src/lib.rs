//! The deployable service: REST API, real-time events, scheduled jobs and dashboard wired
//! around the keepalive engine.
//!
//! # Layout
//!
//! - [`notify`]: the [`whatsapp_core::Notifier`] that POSTs e-mails to the frontend's
//!   `/api/send-email` endpoint.

pub mod notify;
