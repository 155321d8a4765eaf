//! The main job end to end on embedded defaults: the emulator plays WhatsApp, real Chromium
//! runs WhatsApp Web, SQLite holds the sessions and backups go to local disk under `./data`.
//! No Redis, no network beyond loopback.
//!
//! Run with: `cargo run --release -p whatsapp-examples --example demo` (or `scripts/demo.sh`).
//!
//! It links a session by "scanning" its QR through the emulator, lets the keepalive engine
//! run every layer at demo speed (seconds instead of minutes), survives a network drop and a
//! browser crash, backs the profile up, simulates a lost disk and a server restart, and shows
//! that the session comes back `CONNECTED` without a new QR.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use whatsapp_chromium::{ChromiumConfig, ChromiumDriver};
use whatsapp_core::profile::profile_dir;
use whatsapp_core::{
    Clock, ConnectionState, PhoneNumber, SessionId, SessionRecord, SessionStatus, SessionStore,
    SystemClock, TenantId,
};
use whatsapp_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use whatsapp_keepalive::{
    EngineDeps, EngineEvent, KeepaliveConfig, KeepaliveEngine, KeepaliveTarget,
};
use whatsapp_server::backup::ManagedBackup;
use whatsapp_server::notify::LogNotifier;
use whatsapp_storage::backup::{BackupConfig, BackupManager, LocalBackupSink};
use whatsapp_storage::store::sqlite::SqliteSessionStore;

type DemoResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How long any one step may take before the demo fails.
const STEP: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> DemoResult {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,chromiumoxide=off".into()),
        )
        .init();
    let data = PathBuf::from(std::env::var("DEMO_DATA_DIR").unwrap_or_else(|_| "data/demo".into()));
    std::fs::create_dir_all(&data)?;
    let sessions_path = data.join("sessions");
    let id = SessionId::new("demo")?;
    let phone = PhoneNumber::new("34600000000")?; // a fake number the emulator links
    let target = PhoneNumber::new("34600000099")?; // where keepalive texts go

    step("1. starting the WhatsApp emulator (HTTPS, as web.whatsapp.com) on loopback");
    let emulator = Emulator::new(EmulatorConfig::fast())
        .serve_tls(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let control = emulator.client();
    control.add_account(target.digits()).await?;
    println!("   emulator at {}", emulator.url());

    step("2. opening SQLite and the local backup sink under the data directory");
    let store: Arc<dyn SessionStore> =
        Arc::new(SqliteSessionStore::open(data.join("whatsapp.db")).await?);
    let manager = Arc::new(BackupManager::new(
        Arc::new(LocalBackupSink::new(data.join("backups"))),
        Arc::new(SystemClock),
        BackupConfig::new(data.join("backup-work")),
    ));
    // A clean start for the demo session.
    store.delete(&id).await?;
    let _ = std::fs::remove_dir_all(profile_dir(&sessions_path, &id));
    let record = SessionRecord::new(id.clone(), TenantId::new("demo-tenant")?, SystemClock.now());
    store.create(&record).await?;
    println!("   session {id} created ({})", data.display());

    step("3. starting the keepalive engine (demo-speed periods) and the session");
    let engine = start_engine(&emulator, &store, &manager, &sessions_path, &target)?;
    let mut events = engine.subscribe();
    engine.start(&id).await?;
    let qr = wait_event(&mut events, |e| match e {
        EngineEvent::Qr { payload, .. } => Some(payload.clone()),
        _ => None,
    })
    .await?;
    print_qr(qr.as_str());
    println!("   QR payload has 5 fields; ref = {}", qr.reference());

    step("4. the phone scans the QR (through the emulator's control API)");
    control.scan(qr.reference(), phone.digits()).await?;
    wait_status(&mut events, SessionStatus::Ready).await?;
    let browser = engine.browser(&id).ok_or("no browser after ready")?;
    let info = browser.account_info().await?.ok_or("no account info")?;
    println!("   ready: linked to {} ({:?})", info.wid, info.push_name);

    step("5. keepalive layers at work: presence, simulated activity, keepalive text");
    let sent = poll("a keepalive text at the emulator", || async {
        let msgs = control.messages().await.ok()?;
        msgs.into_iter().find(|m| m.to.starts_with(target.digits()))
    })
    .await?;
    println!("   keepalive text sent to {}: {:?}", sent.to, sent.body);
    let device = control
        .wait_for("activity and presence at the emulator", STEP, |devices| {
            devices
                .iter()
                .find(|d| d.activity.mousemove > 0 && d.presence_count > 0)
                .cloned()
        })
        .await?;
    println!(
        "   the page saw {} mousemove / {} Shift keydown, {} presence announcements",
        device.activity.mousemove, device.activity.keydown_shift, device.presence_count
    );

    step("6. network drop of 3 s: detected by event, reconnected by itself");
    control
        .drop_device(&device.id, Duration::from_secs(3))
        .await?;
    wait_state(&mut events, |s| !s.is_connected()).await?;
    println!("   drop detected");
    wait_state(&mut events, ConnectionState::is_connected).await?;
    println!("   CONNECTED again");

    step("7. backup of the running session (archive, verify)");
    let backup = manager
        .backup_session(&id, &profile_dir(&sessions_path, &id))
        .await?;
    println!(
        "   {} ({} bytes, {} files, verified: {})",
        backup.key,
        backup.archive_size,
        backup.manifest.files.len(),
        backup.verified
    );

    step("8. server stops gracefully; then the disk is lost (profile deleted)");
    engine.shutdown().await;
    std::fs::remove_dir_all(profile_dir(&sessions_path, &id))?;
    println!(
        "   profile deleted; stored status is still {:?}",
        store.get(&id).await?.map(|r| r.status)
    );

    step(
        "9. server starts again: the engine restores the profile from the newest backup, relaunches, CONNECTED without a QR",
    );
    let engine = start_engine(&emulator, &store, &manager, &sessions_path, &target)?;
    let mut events = engine.subscribe();
    let restored = engine.restore().await?;
    println!("   restoring {restored:?}");
    wait_connected_no_qr(&mut events).await?;
    let back = manager.newest_verified(&id).await?.ok_or("no backup")?;
    println!("   {id} is ready again from {}, no QR was shown", back.key);

    engine.shutdown().await;
    println!(
        "\nDemo finished: link, keepalive, drop, backup, lost disk, restart — all without a second scan."
    );
    println!("Data left in {}", data.display());
    Ok(())
}

fn start_engine(
    emulator: &RunningEmulator,
    store: &Arc<dyn SessionStore>,
    manager: &Arc<BackupManager>,
    sessions_path: &std::path::Path,
    target: &PhoneNumber,
) -> DemoResult<KeepaliveEngine> {
    let driver = ChromiumDriver::new(
        ChromiumConfig::default()
            .arg(format!(
                "host-resolver-rules={}",
                emulator.host_resolver_rule()
            ))
            .arg("ignore-certificate-errors"),
    );
    // Demo speed: the seed's minutes become seconds so every layer shows up in a minute.
    let mut config = KeepaliveConfig {
        heartbeat_interval: Duration::from_secs(4),
        watchdog_interval: Duration::from_secs(2),
        activity_interval: Duration::from_secs(1),
        ..KeepaliveConfig::default()
    };
    config.keepalive.target = KeepaliveTarget::Number(target.clone());
    config.keepalive.min_interval = Duration::from_secs(3);
    config.keepalive.max_interval = Duration::from_secs(5);
    config.runtime.start_stagger = Duration::from_secs(1);
    let deps = EngineDeps {
        driver: Arc::new(driver),
        store: Arc::clone(store),
        notifier: Arc::new(LogNotifier),
        clock: Arc::new(SystemClock),
        backup: Arc::new(ManagedBackup::new(Arc::clone(manager), sessions_path)),
        sender: Arc::new(whatsapp_keepalive::DirectSender),
        sessions_path: sessions_path.to_path_buf(),
        seed: 42,
    };
    Ok(KeepaliveEngine::new(config, deps)?)
}

/// Polls `check` every 200 ms until it yields, for at most [`STEP`].
async fn poll<T, F, Fut>(what: &str, mut check: F) -> DemoResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("no {what} within {STEP:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn step(title: &str) {
    println!("\n{title}");
}

fn print_qr(payload: &str) {
    match qrcode::QrCode::new(payload.as_bytes()) {
        Ok(code) => {
            let text = code
                .render::<qrcode::render::unicode::Dense1x2>()
                .quiet_zone(true)
                .build();
            println!("{text}");
        }
        Err(e) => println!("   (cannot render the QR: {e})"),
    }
}

async fn wait_event<T>(
    events: &mut broadcast::Receiver<EngineEvent>,
    mut pick: impl FnMut(&EngineEvent) -> Option<T>,
) -> DemoResult<T> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(ev)) => {
                if let EngineEvent::GaveUp { reason, .. } = &ev {
                    return Err(format!("the engine gave up: {reason}").into());
                }
                if let Some(v) = pick(&ev) {
                    return Ok(v);
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(format!("nothing happened within {STEP:?}").into()),
        }
    }
}

async fn wait_status(
    events: &mut broadcast::Receiver<EngineEvent>,
    want: SessionStatus,
) -> DemoResult {
    wait_event(events, |e| {
        matches!(e, EngineEvent::Status { status, .. } if *status == want).then_some(())
    })
    .await
}

async fn wait_connected_no_qr(events: &mut broadcast::Receiver<EngineEvent>) -> DemoResult {
    let mut qr_seen = false;
    wait_event(events, |e| match e {
        EngineEvent::Qr { .. } => {
            qr_seen = true;
            None
        }
        EngineEvent::State { state, .. } if state.is_connected() => Some(()),
        _ => None,
    })
    .await?;
    if qr_seen {
        return Err("a QR was shown: the login did not survive".into());
    }
    Ok(())
}

async fn wait_state(
    events: &mut broadcast::Receiver<EngineEvent>,
    want: impl Fn(&ConnectionState) -> bool,
) -> DemoResult {
    wait_event(events, |e| match e {
        EngineEvent::State { state, .. } if want(state) => Some(()),
        _ => None,
    })
    .await
}
