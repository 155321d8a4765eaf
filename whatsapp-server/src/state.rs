//! The shared state of one running server: the handles the HTTP handlers, the jobs and the
//! forwarders use. Built once by [`crate::app::App::start`]; defined here, apart from the
//! composition root, so that handlers and jobs depend on the state and not on the code that
//! assembles it (no module cycle between `app` and `api`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use whatsapp_core::{Clock, SessionStore};
use whatsapp_storage::backup::BackupManager;
use whatsapp_storage::store::{MessageQueue, NumberCache, OutboxStore, TenantStore};

use crate::auth::Auth;
use crate::config::CheckedServerConfig;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::realtime::RealtimeHub;
use crate::sessions::SessionService;

/// Everything the HTTP handlers, the jobs and the forwarders share. Built once by
/// [`crate::app::App::start`]; handlers get it as `State<AppState>`.
pub type AppState = Arc<Services>;

/// The wired services of one running server.
#[derive(Debug)]
pub struct Services {
    /// The checked configuration.
    pub config: CheckedServerConfig,
    /// Session records.
    pub sessions: Arc<dyn SessionStore>,
    /// Tenants, their API keys and webhook endpoints.
    pub tenants: Arc<dyn TenantStore>,
    /// The phone-number check cache.
    pub numbers: Arc<dyn NumberCache>,
    /// The outbox's store (listing, requeueing dead letters).
    pub outbox_store: Arc<dyn OutboxStore>,
    /// Durable e-mails and webhooks.
    pub outbox: Outbox,
    /// The message queue behind the workers (Redis or the database).
    pub queue: Arc<dyn MessageQueue>,
    /// The session lifecycle: the keepalive engine (one task and one browser per running
    /// session) paired with the message workers, and the profiles' location.
    pub lifecycle: SessionService,
    /// Backups of session profiles.
    pub backups: Arc<BackupManager>,
    /// The Socket.IO hub.
    pub realtime: RealtimeHub,
    /// Who is calling.
    pub auth: Auth,
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Whether the start-up restore has been handed to the engine (`/readyz`).
    pub restored: AtomicBool,
    /// The Redis connection, when `REDIS_URL` is set.
    pub redis: Option<crate::deps::RedisHandle>,
    /// The health of the database, Redis and the backup store ([`crate::deps`]).
    pub deps: crate::deps::Dependencies,
    /// The database's write probe (`/readyz`, and the lifecycle routes whose status writes
    /// happen in the engine).
    pub database: Arc<dyn whatsapp_storage::store::WriteProbe>,
}
