//! The keepalive policy engine: the seed's protection layers as a pure decision function plus
//! a short runtime that executes it for many sessions.
//!
//! Every decision — when to read the state, when to reconnect or relaunch, when to give up,
//! which e-mail to send and when not to — is made by [`SessionPolicy`], a synchronous state
//! machine that is given inputs, a monotonic time, a wall time and a seeded random number
//! generator, and returns [`Action`]s. [`KeepaliveEngine`] runs one small task per session
//! that executes those actions against the `whatsapp-core` traits ([`whatsapp_core::BrowserDriver`],
//! [`whatsapp_core::SessionStore`], [`whatsapp_core::Notifier`], [`whatsapp_core::Clock`]) and the two
//! hooks the server provides ([`SessionBackup`], [`KeepaliveSender`]).
//!
//! # Layout
//!
//! - [`config`]: [`KeepaliveConfig`] — every period and limit, defaults exactly the seed's,
//!   validated by [`KeepaliveConfig::check`] into a [`CheckedConfig`].
//! - [`policy`]: [`SessionPolicy`], its [`Input`]s and [`Action`]s, and the rules in one
//!   place (see the module docs).
//! - [`engine`]: [`KeepaliveEngine`] — per-session tasks (`select!` on the next deadline, the
//!   driver's events and commands), bounded launch concurrency, staggered starts, driver
//!   time-outs, status events for the real-time channel.
//! - [`hooks`]: [`SessionBackup`] and [`KeepaliveSender`], implemented by the server.
//!
//! Time: periods use `tokio::time` (tests pause it), wall-clock decisions use the injected
//! [`whatsapp_core::Clock`].

pub mod config;
pub mod engine;
pub mod hooks;
pub mod policy;

pub use config::{
    BackupSchedule, CheckedConfig, CrashLoopGuard, KeepaliveConfig, KeepaliveMessages,
    KeepaliveTarget, NotificationPolicy, ReconnectPolicy, RuntimeLimits,
};
pub use engine::{EngineDeps, EngineEvent, KeepaliveEngine, SessionSnapshot};
pub use hooks::{DirectSender, KeepaliveSender, NoBackup, SessionBackup};
pub use policy::{Action, Call, Check, Failure, Input, LayerStats, SessionHealth, SessionPolicy};
