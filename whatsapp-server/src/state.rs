//! The shared state of one running server: the handles the HTTP handlers, the jobs and the
//! forwarders use. Built once by [`crate::app::App::start`]; defined here, apart from the
//! composition root, so that handlers and jobs depend on the state and not on the code that
//! assembles it (no module cycle between `app` and `api`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use whatsapp_core::Clock;
use whatsapp_storage::backup::BackupManager;
use whatsapp_storage::store::{MessageQueue, Stores};

use crate::auth::Auth;
use crate::config::CheckedServerConfig;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::realtime::RealtimeHub;
use crate::sessions::SessionService;

/// Everything the HTTP handlers, the jobs and the forwarders share. Built once by
/// [`crate::app::App::start`]; handlers get it as `State<AppState>`.
pub type AppState = Arc<Services>;

/// The wired services of one running server, grouped: the configuration, the stores, the
/// session lifecycle and backups, the outlets (outbox, Socket.IO), the callers' identity,
/// the clock, and the server's own health.
#[derive(Debug)]
pub struct Services {
    /// The checked configuration.
    pub config: CheckedServerConfig,
    /// The database's stores: session records, tenants and keys, the number cache, the
    /// outbox, and the write probe. (`stores.messages` is the database's message queue; the
    /// one in use, Redis's when configured, is [`Services::queue`].)
    pub stores: Stores,
    /// The message queue behind the workers (Redis or the database).
    pub queue: Arc<dyn MessageQueue>,
    /// The session lifecycle: the keepalive engine (one task and one browser per running
    /// session) paired with the message workers, and the profiles' location.
    pub lifecycle: SessionService,
    /// Backups of session profiles.
    pub backups: Arc<BackupManager>,
    /// Durable e-mails and webhooks.
    pub outbox: Outbox,
    /// The Socket.IO hub.
    pub realtime: RealtimeHub,
    /// Who is calling.
    pub auth: Auth,
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// The server's own health: the start-up restore and the dependencies.
    pub health: Health,
}

/// What `/readyz`, the metrics and the dependency watcher read about the server itself.
#[derive(Debug)]
pub struct Health {
    /// Whether the start-up restore has been handed to the engine (`/readyz`).
    pub restored: AtomicBool,
    /// The Redis connection, when `REDIS_URL` is set.
    pub redis: Option<crate::deps::RedisHandle>,
    /// The health of the database, Redis and the backup store ([`crate::deps`]).
    pub deps: crate::deps::Dependencies,
}
