//! End-to-end tests, fault-injection suite and benchmarks of the WhatsApp Web keepalive
//! service: the real components together (real Chromium, the emulator, real databases, a
//! real S3-compatible server), all on loopback.
//!
//! # Layout
//!
//! - [`stack`]: the emulator served over TLS as `web.whatsapp.com` plus a [`ChromiumDriver`]
//!   pointed at it, and helpers to link a session and wait for states.
//! - [`postgres`]: a fresh Postgres database per test (used by the server's tests too).
//! - [`s3`]: a `moto_server` on a free loopback port, for S3 backups.
//! - [`smallfs`]: a small tmpfs the test mounts itself, to fill up or make read-only.
//! - `tests/`: the end-to-end tests.
//!
//! [`ChromiumDriver`]: whatsapp_chromium::ChromiumDriver

pub mod postgres;
pub mod s3;
pub mod smallfs;
pub mod stack;
