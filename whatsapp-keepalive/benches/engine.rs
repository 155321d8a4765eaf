//! Benchmark (not a test): the engine's own CPU time and memory per session, for 1 000 fake
//! sessions over one simulated day in paused tokio time.
//!
//! Run with: `cargo bench -p whatsapp-keepalive --bench engine`
//!
//! Every layer runs at the seed's periods (heartbeat 2 min, watchdog 1 min, activity 30 s,
//! keepalive 55–65 min, monitoring 1 h, health 5 min, backup 02:00). The browser is
//! `whatsapp_core::testing::FakeBrowser`, so the CPU measured is the engine's (plus the
//! fake's bookkeeping, which is a mutex and a counter per call): what one session costs the
//! server besides its Chromium. CPU time comes from `/proc/thread-self/schedstat` (the
//! runtime is single-threaded, so this is all of it) and `/proc/self/stat`; memory from
//! `VmRSS` in `/proc/self/status`. The figures are printed and written to
//! `target/bench/keepalive-engine.json`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use whatsapp_core::testing::{FakeBrowser, FakeClock, InMemorySessionStore, RecordingNotifier};
use whatsapp_core::{
    Clock, PhoneNumber, Result, SessionId, SessionRecord, SessionStatus, SessionStore, TenantId,
};
use whatsapp_keepalive::{
    DirectSender, EngineDeps, KeepaliveConfig, KeepaliveEngine, KeepaliveTarget, LayerStats,
    SessionBackup,
};

const SESSIONS: usize = 1_000;
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Backups that cost nothing, so the figure is the engine's.
#[derive(Debug)]
struct NullBackup;

#[async_trait]
impl SessionBackup for NullBackup {
    async fn backup(&self, _session: &SessionId) -> Result<()> {
        Ok(())
    }
    async fn prune(&self, _session: &SessionId, _before: DateTime<Utc>) -> Result<usize> {
        Ok(0)
    }
}

/// CPU time of the calling thread, in nanoseconds (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time of the process in clock ticks (`/proc/self/stat`, fields 14–15).
fn process_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces; count fields after its closing ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12) // utime, stime (fields 14 and 15 overall)
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100)
}

/// A line of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let v = l.strip_prefix(key)?.strip_prefix(':')?;
            v.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .unwrap_or(0)
}

fn add(a: &mut LayerStats, b: LayerStats) {
    a.heartbeats += b.heartbeats;
    a.watchdogs += b.watchdogs;
    a.activities += b.activities;
    a.keepalives += b.keepalives;
    a.monitorings += b.monitorings;
    a.health_checks += b.health_checks;
    a.backups += b.backups;
    a.reconnects += b.reconnects;
    a.relaunches += b.relaunches;
    a.notifications += b.notifications;
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = FakeClock::following_tokio("2026-03-02T12:00:00Z".parse().unwrap());
    let browser = FakeBrowser::new(1);
    let store = Arc::new(InMemorySessionStore::new());
    let mut config = KeepaliveConfig::default();
    config.keepalive.target = KeepaliveTarget::Number(PhoneNumber::new("34600000001").unwrap());
    config.runtime.launch_concurrency = 4;
    let engine = KeepaliveEngine::new(
        config,
        EngineDeps {
            driver: Arc::new(browser.clone()),
            store: store.clone(),
            notifier: Arc::new(RecordingNotifier::new()),
            clock: Arc::new(clock.clone()),
            backup: Arc::new(NullBackup),
            sender: Arc::new(DirectSender),
            sessions_path: dir.path().to_owned(),
            seed: 1,
        },
    )
    .expect("engine");

    // Set-up (not measured): 1 000 linked sessions, their records and profiles.
    let mut ids = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let id = SessionId::new(format!("s{i:04}")).unwrap();
        let phone = PhoneNumber::new(format!("3460{i:07}")).unwrap();
        let mut r = SessionRecord::new(id.clone(), TenantId::new("bench").unwrap(), clock.now());
        r.status = SessionStatus::Ready;
        r.last_connected_at = Some(clock.now());
        r.wid = Some(phone.wid());
        store.create(&r).await.unwrap();
        FakeBrowser::write_login(&dir.path().join(id.as_str()), &phone).unwrap();
        ids.push(id);
    }

    let rss_before = status_kib("VmRSS");
    let cpu_before = thread_cpu_ns();
    let ticks_before = process_cpu_ticks();
    let wall_before = WallInstant::now();

    engine.start_many(&ids).await.unwrap();
    // Every session is up after the staggered start (launches 250 ms apart: 250 s)…
    let up = config_stagger() * SESSIONS as u32 + Duration::from_secs(60);
    tokio::time::sleep(up).await;
    let rss_running = status_kib("VmRSS");
    // …then the rest of the day.
    tokio::time::sleep(DAY - up).await;

    let cpu_ns = thread_cpu_ns() - cpu_before;
    let ticks = process_cpu_ticks() - ticks_before;
    let wall = wall_before.elapsed();
    let rss_after = status_kib("VmRSS");
    let hwm = status_kib("VmHWM");

    let mut total = LayerStats::default();
    let mut ready = 0;
    for id in &ids {
        let s = engine.snapshot(id).expect("running");
        if s.status == SessionStatus::Ready {
            ready += 1;
        }
        add(&mut total, s.stats);
    }
    engine.shutdown().await;

    let actions = total.heartbeats
        + total.watchdogs
        + total.activities
        + total.keepalives
        + total.monitorings
        + total.health_checks
        + total.backups;
    let tck = clock_ticks_per_second();
    let process_cpu_s = ticks as f64 / tck as f64;
    let cpu_s = cpu_ns as f64 / 1e9;
    let per_session_cpu_ms = cpu_s * 1e3 / SESSIONS as f64;
    let day_share = cpu_s / SESSIONS as f64 / DAY.as_secs_f64() * 100.0;
    let mem_per_session_kib = rss_after.saturating_sub(rss_before) as f64 / SESSIONS as f64;
    let mem_running_kib = rss_running.saturating_sub(rss_before) as f64 / SESSIONS as f64;
    let per_action_us = cpu_ns as f64 / 1e3 / actions.max(1) as f64;

    println!("keepalive engine: {SESSIONS} fake sessions, 1 simulated day, seed periods");
    println!("  sessions ready at the end       {ready}");
    println!(
        "  layer actions                   {actions} (heartbeat {}, watchdog {}, activity {}, keepalive {}, monitoring {}, health {}, backup {})",
        total.heartbeats,
        total.watchdogs,
        total.activities,
        total.keepalives,
        total.monitorings,
        total.health_checks,
        total.backups
    );
    println!("  CPU, engine thread              {cpu_s:.3} s ({per_action_us:.2} µs per action)");
    println!("  CPU, whole process (utime+stime) {process_cpu_s:.2} s");
    println!(
        "  CPU per session per day         {per_session_cpu_ms:.2} ms ({day_share:.6} % of one core)"
    );
    println!(
        "  wall time of the simulation     {:.2} s",
        wall.as_secs_f64()
    );
    println!(
        "  RSS: before {rss_before} KiB, running {rss_running} KiB, after {rss_after} KiB, peak {hwm} KiB"
    );
    println!(
        "  memory per session              {mem_per_session_kib:.1} KiB after a day ({mem_running_kib:.1} KiB once started; includes the fake browser's handle and 128-slot event channel)"
    );

    let json = serde_json::json!({
        "benchmark": "keepalive-engine",
        "sessions": SESSIONS,
        "simulated_seconds": DAY.as_secs(),
        "sessions_ready_at_end": ready,
        "layer_actions": actions,
        "actions": {
            "heartbeat": total.heartbeats,
            "watchdog": total.watchdogs,
            "activity": total.activities,
            "keepalive": total.keepalives,
            "monitoring": total.monitorings,
            "health_check": total.health_checks,
            "backup": total.backups,
        },
        "cpu_engine_thread_seconds": cpu_s,
        "cpu_process_seconds": process_cpu_s,
        "cpu_per_session_per_day_ms": per_session_cpu_ms,
        "cpu_per_session_share_of_one_core_percent": day_share,
        "cpu_per_action_microseconds": per_action_us,
        "wall_seconds": wall.as_secs_f64(),
        "rss_kib": {"before": rss_before, "running": rss_running, "after": rss_after, "peak": hwm},
        "memory_per_session_kib": mem_per_session_kib,
        "memory_per_session_running_kib": mem_running_kib,
    });
    let out = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")))
        .join("bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    let path = out.join("keepalive-engine.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).expect("write figures");
    println!("  figures written to {}", path.display());
}

/// The default launch stagger the engine runs with.
fn config_stagger() -> Duration {
    KeepaliveConfig::default().runtime.start_stagger
}
