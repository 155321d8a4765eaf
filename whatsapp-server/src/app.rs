//! The service assembled: [`App::start`] runs the seed's start-up sequence on a checked
//! configuration and serves HTTP until [`RunningApp::shutdown`].
//!
//! # Start-up order
//!
//! [`App::start`] runs the seed's steps, each one function of this module:
//!
//! 1. databases, `open_databases`: the session store, outbox, message queue, tenants and
//!    number cache ([`whatsapp_storage::store::open`]); Redis when `REDIS_URL` is set.
//!    Then `wire` composes the services without starting anything: the outbox, backups, the
//!    session lifecycle ([`SessionService`]), authentication, the real-time hub;
//! 2. the real-time channel's forwarders, `forward_events`: engine events to Socket.IO,
//!    webhooks and metrics;
//! 3. scheduled jobs and workers, `spawn_jobs_and_workers`: the outbox worker, the cron
//!    jobs ([`crate::jobs`]), the dependency watcher ([`crate::deps`]);
//! 4. restore, `restore_sessions`: every session whose status says it should run is
//!    started, staggered, with bounded concurrent launches; each launch restores its profile
//!    from disk, or from the newest verified backup when the disk lost it
//!    ([`ManagedBackup`]);
//! 5. monitoring: the engine's (each session's policy runs the hourly monitoring and the
//!    health check) and the jobs'; nothing more starts for it;
//! 6. HTTP, `serve_http`: [`crate::api::router`]. `/readyz` answers 200 once the restore
//!    has been handed to the engine.
//!
//! # Shutdown
//!
//! [`RunningApp::shutdown`]: stop accepting connections, stop the jobs, let the message
//! workers finish the send in flight, close every browser gracefully (profiles flushed; the
//! stored statuses are kept so the next start restores them), drain the outbox worker, then
//! close the database pools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use socketioxide::layer::SocketIoLayer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use whatsapp_chromium::ChromiumDriver;
use whatsapp_core::{BrowserDriver, Clock, Error, Result, SystemClock, TenantId};
use whatsapp_keepalive::{EngineDeps, EngineEvent};
use whatsapp_storage::backup::{BackupConfig, BackupManager, LocalBackupSink, S3BackupSink};
use whatsapp_storage::store::{MessageQueue, Stores};

use crate::auth::Auth;
use crate::backup::ManagedBackup;
use crate::config::{BackupTarget, CheckedServerConfig, Secret};
use crate::messaging::{Messaging, RateLimiter, WorkerConfig, backends};
use crate::metrics::Metrics;
use crate::notify::{HttpEmailNotifier, LogNotifier};
use crate::outbox::{Outbox, OutboxNotifier, OutboxWorker, WebhookEvent};
use crate::realtime::RealtimeHub;
use crate::sessions::SessionService;
use crate::tenants::StoreWebhookDirectory;

use crate::state::Health;
pub use crate::state::{AppState, Services};

/// A new session instance id (see [`crate::sessions::new_instance_id`]).
pub use crate::sessions::new_instance_id;

/// What the server is built on beyond its configuration: the browser driver and the clock
/// (tests inject a driver pointed at the emulator, or a fake).
#[derive(Debug, Clone)]
pub struct AppParts {
    /// Launches browsers.
    pub driver: Arc<dyn BrowserDriver>,
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
}

impl AppParts {
    /// Real Chromium configured from `config`, and the system clock.
    pub fn from_config(config: &CheckedServerConfig) -> Self {
        AppParts {
            driver: Arc::new(ChromiumDriver::new(config.chromium_config())),
            clock: Arc::new(SystemClock),
        }
    }
}

/// The service builder.
#[derive(Debug)]
pub struct App;

/// A started server. Dropping it does not stop it: call [`RunningApp::shutdown`].
#[derive(Debug)]
pub struct RunningApp {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    state: AppState,
    cancel: CancellationToken,
    http: JoinHandle<std::io::Result<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl App {
    /// Runs the start-up sequence (see the [module docs](self)) and serves HTTP on
    /// `listener` (or on the configured address when `None`).
    pub async fn start(
        config: CheckedServerConfig,
        parts: AppParts,
        listener: Option<TcpListener>,
    ) -> Result<RunningApp> {
        let cancel = CancellationToken::new();
        let databases = open_databases(&config).await?;
        let Wired {
            state,
            outbox_worker,
            direct_emails,
            socket_layer,
        } = wire(config, parts, databases)?;
        let mut workers = forward_events(&state);
        workers.extend(spawn_jobs_and_workers(
            &state,
            outbox_worker,
            direct_emails,
            &cancel,
        ));
        restore_sessions(&state).await?;
        // Step 5, monitoring, is the engine's (hourly monitoring and the health check in
        // each session's policy) and the jobs'; nothing more to start for it.
        let http = serve_http(&state, listener, socket_layer, &cancel).await?;
        workers.extend(http.metrics);
        Ok(RunningApp {
            addr: http.addr,
            metrics_addr: http.metrics_addr,
            state,
            cancel,
            http: http.server,
            workers,
        })
    }
}

/// What step 1 opens.
struct Databases {
    stores: Stores,
    redis: Option<redis::aio::ConnectionManager>,
    queue: Arc<dyn MessageQueue>,
    limiter: Arc<dyn RateLimiter>,
}

/// Step 1, the databases: the sessions directory, the session store, outbox, message queue,
/// tenants and number cache ([`whatsapp_storage::store::open`]); Redis when `REDIS_URL` is
/// set, which then carries the message queue and the rate limiter.
async fn open_databases(config: &CheckedServerConfig) -> Result<Databases> {
    std::fs::create_dir_all(&config.storage.sessions_path).map_err(|e| {
        Error::unavailable(
            "sessions directory",
            format!(
                "cannot create {}: {e}",
                config.storage.sessions_path.display()
            ),
        )
    })?;
    let stores = whatsapp_storage::store::open(config.storage.database_url.expose()).await?;
    let redis = match &config.storage.redis_url {
        Some(url) => Some(connect_redis(url.expose()).await?),
        None => None,
    };
    let (queue, limiter) = backends(
        redis.clone(),
        "whatsapp",
        stores.messages.clone(),
        config.pacing,
    )?;

    Ok(Databases {
        stores,
        redis,
        queue,
        limiter,
    })
}

/// The services wired together, before anything runs.
struct Wired {
    state: AppState,
    outbox_worker: OutboxWorker,
    direct_emails: Option<Arc<dyn whatsapp_core::Notifier>>,
    socket_layer: SocketIoLayer,
}

/// The composition (no task started yet): the outbox and its worker, backups, the session
/// lifecycle (the keepalive engine paired with the message workers), authentication, the
/// real-time hub, and the shared [`Services`].
fn wire(config: CheckedServerConfig, parts: AppParts, databases: Databases) -> Result<Wired> {
    let Databases {
        stores,
        redis,
        queue,
        limiter,
    } = databases;
    let clock = parts.clock.clone();
    // Outbox: the engine's e-mails and the webhooks go through it.
    let direct_emails: Option<Arc<dyn whatsapp_core::Notifier>> =
        match &config.delivery.frontend_url {
            Some(url) => {
                let mut n = HttpEmailNotifier::for_frontend(url, Duration::from_secs(15))?;
                if let Some(token) = &config.delivery.email_api_token {
                    n = n.with_bearer(token.expose().clone());
                }
                Some(Arc::new(n))
            }
            None => None,
        };
    let emails: Arc<dyn whatsapp_core::Notifier> = direct_emails
        .clone()
        .unwrap_or_else(|| Arc::new(LogNotifier));
    let outbox_worker = OutboxWorker::new(
        stores.outbox.clone(),
        emails,
        clock.clone(),
        config.delivery.outbox.clone(),
    )?
    .with_webhooks(Arc::new(StoreWebhookDirectory::new(stores.tenants.clone())));
    let outbox =
        Outbox::new(stores.outbox.clone(), clock.clone()).with_waker(outbox_worker.waker());

    // Backups.
    let sink: Arc<dyn whatsapp_core::BackupSink> = match &config.backups.target {
        BackupTarget::Local(dir) => Arc::new(LocalBackupSink::new(dir)),
        BackupTarget::S3(s3) => Arc::new(S3BackupSink::new(s3.clone())?),
    };
    let mut backup_config = BackupConfig::new(config.storage.data_dir.join("backup-work"));
    backup_config.encryption_key = config
        .backups
        .encryption_key
        .as_ref()
        .map(|k| k.expose().clone());
    backup_config.retention = config.backups.retention;
    backup_config.origin = config.backups.origin.clone();
    let backups = Arc::new(BackupManager::new(sink, clock.clone(), backup_config));

    // The session lifecycle: the engine paired with the message workers.
    let metrics = Metrics::new();
    let lifecycle = SessionService::build(
        config.keepalive_config(),
        |sender| {
            Messaging::new(
                queue.clone(),
                limiter,
                sender,
                clock.clone(),
                WorkerConfig::default(),
            )
            .with_sessions(stores.sessions.clone())
            .with_history(stores.history.clone())
        },
        |sender| EngineDeps {
            driver: parts.driver.clone(),
            store: stores.sessions.clone(),
            notifier: Arc::new(OutboxNotifier::new(outbox.clone()).dedupe_by_content()),
            clock: clock.clone(),
            backup: Arc::new(
                ManagedBackup::new(backups.clone(), &config.storage.sessions_path)
                    .with_store(stores.sessions.clone())
                    .with_metrics(metrics.clone()),
            ),
            sender,
            sessions_path: config.storage.sessions_path.clone(),
            seed: rand::random(),
        },
        backups.clone(),
        &config.storage.sessions_path,
    )?;

    let auth = Auth::new(
        config
            .auth
            .admin_api_key
            .as_ref()
            .map(|k| k.expose().clone()),
        config
            .auth
            .supabase_jwt_secret
            .as_ref()
            .map(|s| s.expose().as_str()),
        stores.tenants.clone(),
    )?;
    // The real-time channel (its forwarders start in step 2).
    let (socket_layer, realtime) = RealtimeHub::new(Arc::new(auth.clone()));

    let deps = crate::deps::Dependencies::new(&crate::deps::names(redis.is_some()));
    let state: AppState = Arc::new(Services {
        config,
        stores: stores.clone(),
        queue,
        lifecycle,
        backups,
        outbox,
        realtime,
        auth,
        clock,
        metrics,
        health: Health {
            restored: AtomicBool::new(false),
            redis: redis.map(crate::deps::RedisHandle),
            deps,
        },
    });

    Ok(Wired {
        state,
        outbox_worker,
        direct_emails,
        socket_layer,
    })
}

/// Step 2, the real-time channel's forwarders: engine events to Socket.IO rooms, to
/// webhooks (through the outbox), to the metrics and to the message history, each from
/// [`crate::events`].
fn forward_events(state: &AppState) -> Vec<JoinHandle<()>> {
    let mut workers = Vec::new();
    let sessions = state.stores.sessions.clone();
    workers.push(
        state
            .realtime
            .forward(state.lifecycle.engine().subscribe(), move |id| {
                let sessions = sessions.clone();
                async move {
                    let r = sessions.get(&id).await.ok().flatten()?;
                    Some((r.tenant, r.name))
                }
            }),
    );
    workers.push(tokio::spawn(forward_webhooks(
        state.clone(),
        state.lifecycle.engine().subscribe(),
    )));
    workers.push(state.metrics.follow(state.lifecycle.engine().subscribe()));
    workers.push(tokio::spawn(crate::history::record(
        state.clone(),
        state.lifecycle.engine().subscribe(),
    )));

    workers
}

/// Step 3, scheduled jobs and workers: the outbox worker, the cron jobs ([`crate::jobs`])
/// and the dependency watcher ([`crate::deps`]).
fn spawn_jobs_and_workers(
    state: &AppState,
    outbox_worker: OutboxWorker,
    direct_emails: Option<Arc<dyn whatsapp_core::Notifier>>,
    cancel: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut workers = Vec::new();
    workers.push(tokio::spawn(outbox_worker.run(cancel.clone())));
    workers.extend(crate::jobs::spawn(state.clone(), cancel.clone()));
    workers.push(crate::deps::spawn(
        state.clone(),
        direct_emails,
        cancel.clone(),
    ));

    workers
}

/// Step 4, restore: every session whose status says it should run is started, staggered,
/// with bounded concurrent launches ([`SessionService::restore_all`]); `/readyz` turns ready
/// once that is handed to the engine.
async fn restore_sessions(state: &AppState) -> Result<()> {
    let restored = state.lifecycle.restore_all().await?;
    tracing::info!(
        sessions = restored.len(),
        "start-up restore handed to the engine"
    );
    state.health.restored.store(true, Ordering::SeqCst);

    Ok(())
}

/// What step 6 serves.
struct Http {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    server: JoinHandle<std::io::Result<()>>,
    metrics: Option<JoinHandle<()>>,
}

/// Step 6, HTTP: [`crate::api::router`] with the Socket.IO layer on `listener` (or on
/// `HOST:PORT`), and `/metrics` alone on `METRICS_LISTEN` when set.
async fn serve_http(
    state: &AppState,
    listener: Option<TcpListener>,
    socket_layer: SocketIoLayer,
    cancel: &CancellationToken,
) -> Result<Http> {
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(state.config.http.listen)
            .await
            .map_err(|e| {
                Error::unavailable(
                    "HTTP listener",
                    format!("cannot listen on {}: {e}", state.config.http.listen),
                )
            })?,
    };
    let addr = listener
        .local_addr()
        .map_err(|e| Error::unavailable("HTTP listener", e.to_string()))?;
    let limits = state.config.http.limits;
    // The body time-out wraps Socket.IO too (its polling POSTs have bodies; its held
    // GETs and WebSocket upgrades have none); the request time-out is inside
    // `api::router`, so Socket.IO's held long-polling requests are not cut.
    let router = crate::api::router(state.clone()).layer(socket_layer).layer(
        tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_timeout),
    );
    let mut metrics_addr = None;
    let mut metrics_worker = None;
    if let Some(wanted) = state.config.http.metrics_listen {
        let metrics_listener = TcpListener::bind(wanted).await.map_err(|e| {
            Error::unavailable(
                "metrics listener",
                format!("cannot listen on {wanted}: {e}"),
            )
        })?;
        let bound = metrics_listener
            .local_addr()
            .map_err(|e| Error::unavailable("metrics listener", e.to_string()))?;
        metrics_addr = Some(bound);
        let metrics_router = crate::api::metrics_router(state.clone());
        let metrics_cancel = cancel.clone();
        metrics_worker = Some(tokio::spawn(async move {
            if let Err(e) =
                crate::serve::serve(metrics_listener, metrics_router, limits, metrics_cancel).await
            {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        }));
        tracing::info!(addr = %bound, "metrics listening without a key");
    }
    let http = tokio::spawn(crate::serve::serve(
        listener,
        router,
        limits,
        cancel.clone(),
    ));
    tracing::info!(%addr, node = %state.config.node_id.as_str(), "HTTP listening");
    Ok(Http {
        addr,
        metrics_addr,
        server: http,
        metrics: metrics_worker,
    })
}

impl RunningApp {
    /// The address HTTP listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address `/metrics` is served on without a key (`METRICS_LISTEN`), if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The shared services.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops gracefully (see the [module docs](self)).
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.cancel.cancel();
        // Bounded: open Socket.IO/WebSocket connections would otherwise hold it forever.
        let _ = tokio::time::timeout(Duration::from_secs(10), self.http).await;
        self.state.lifecycle.shutdown().await;
        for w in self.workers {
            w.abort();
            let _ = w.await;
        }
        tracing::info!("stopped");
    }
}

async fn connect_redis(url: &str) -> Result<redis::aio::ConnectionManager> {
    let redacted = whatsapp_storage::store::RedactedUrl::new(url);
    let client = redis::Client::open(url)
        .map_err(|e| Error::invalid("REDIS_URL", format!("{redacted}: {e}")))?;
    tokio::time::timeout(
        Duration::from_secs(10),
        redis::aio::ConnectionManager::new_with_config(client, crate::messaging::redis_config()),
    )
    .await
    .map_err(|_| Error::unavailable("redis", format!("no answer from {redacted} within 10s")))?
    .map_err(|e| Error::unavailable("redis", format!("{redacted}: {e}")))
}

/// Turns engine events into webhook events for the session's tenant (only tenants with a
/// webhook endpoint get them), in [`crate::events`]' vocabulary: `session.status`,
/// `session.ready`, `session.disconnected`.
async fn forward_webhooks(
    state: AppState,
    mut events: tokio::sync::broadcast::Receiver<EngineEvent>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "webhook forwarder lagged behind the engine");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        for e in crate::events::from_engine(&event) {
            // Cheap first: most events carry no webhook.
            if e.event.webhook(&e.session).is_none() {
                continue;
            }
            let Ok(Some(record)) = state.stores.sessions.get(&e.session).await else {
                continue;
            };
            if !tenant_has_webhook(&state, &record.tenant).await {
                continue;
            }
            // The tenant knows its session by name; the instance id stays internal.
            let Some((kind, data)) = e.event.webhook(&record.name) else {
                continue;
            };
            let mut webhook = WebhookEvent::new(kind, data);
            if let Some(id) = e.event.webhook_id(&e.session) {
                webhook = webhook.with_id(id);
            }
            if let Err(err) = state.outbox.enqueue_webhook(&record.tenant, &webhook).await {
                tracing::warn!(session = %e.session, error = %err, "could not queue a webhook");
            }
        }
    }
}

async fn tenant_has_webhook(state: &Services, tenant: &TenantId) -> bool {
    matches!(state.stores.tenants.get_tenant(tenant).await, Ok(Some(t)) if t.webhook_url.is_some())
}

/// The file under `DATA_DIR` holding the generated admin key.
pub const ADMIN_KEY_FILE: &str = "admin-api-key";

/// Makes sure there is an admin key: with `ADMIN_API_KEY` unset, reads
/// `<DATA_DIR>/admin-api-key`, or generates a random key and writes it there (mode 0600).
/// Returns the file's path when the key came from it (the key itself is never logged).
pub fn ensure_admin_key(config: &mut CheckedServerConfig) -> Result<Option<PathBuf>> {
    if config.auth.admin_api_key.is_some() {
        return Ok(None);
    }
    let path = config.storage.data_dir.join(ADMIN_KEY_FILE);
    let io = |e: std::io::Error| {
        Error::unavailable("admin key file", format!("{}: {e}", path.display()))
    };
    match std::fs::read_to_string(&path) {
        Ok(key) if !key.trim().is_empty() => {
            config.auth.admin_api_key = Some(Secret::new(key.trim().to_owned()));
            return Ok(Some(path));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::create_dir_all(&config.storage.data_dir).map_err(io)?;
    let key = crate::auth::generate_key().replacen(crate::auth::TENANT_KEY_PREFIX, "wa_admin_", 1);
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        writeln!(f, "{key}").map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    config.auth.admin_api_key = Some(Secret::new(key));
    Ok(Some(path))
}
