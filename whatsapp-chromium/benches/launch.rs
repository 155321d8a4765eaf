//! Launch-to-`CONNECTED` for 1 and 10 sessions, and memory (PSS) per session, with our
//! Chromium switches and with Chromium's defaults. Not a test: it prints a table and writes
//! `target/bench/chromium-launch.json`.
//!
//! Run with: `cargo bench -p whatsapp-chromium --bench launch`
//! (`LAUNCH_BENCH_SESSIONS=N` changes the 10.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use whatsapp_chromium::{ChromiumConfig, ChromiumDriver, ChromiumSession};
use whatsapp_core::{BrowserSession, ConnectionState, DriverEvent, LaunchSpec, SessionId};
use whatsapp_emulator::{EmulatorClient, EmulatorConfig, RunningEmulator};

const PHONE: &str = "34600000000";

#[derive(Debug, serde::Serialize)]
struct Run {
    flags: &'static str,
    sessions: usize,
    /// Launch → `CONNECTED`, per session (ms), sessions launched together.
    launch_to_connected_ms: Vec<f64>,
    /// First launch → last `CONNECTED` (ms).
    wall_ms: f64,
    /// PSS per session (MiB), summed over each browser's process group, 3 s after connect.
    pss_mib: Vec<f64>,
}

impl Run {
    fn mean(v: &[f64]) -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v.iter().sum::<f64>() / v.len() as f64
    }
    fn max(v: &[f64]) -> f64 {
        v.iter().cloned().fold(0.0, f64::max)
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let executable = PathBuf::from(
        std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    assert!(
        executable.exists(),
        "Chromium not found at {}: the benchmark needs a real Chromium",
        executable.display()
    );
    let many: usize = std::env::var("LAUNCH_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server: RunningEmulator = whatsapp_emulator::Emulator::new(EmulatorConfig::fast())
        .serve_tls(listener)
        .await
        .unwrap();
    let client = server.client();
    let dir = tempfile::tempdir().unwrap();
    let config = |tuned: bool| {
        ChromiumConfig {
            executable: executable.clone(),
            tuned_flags: tuned,
            ready_timeout: Duration::from_secs(60),
            call_timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(60),
            temp_root: dir.path().join("tmp"),
            ..ChromiumConfig::default()
        }
        .arg(format!(
            "host-resolver-rules={}",
            server.host_resolver_rule()
        ))
        .arg("ignore-certificate-errors")
    };

    // Link `many` profiles once (with our flags); every measured launch is a restore.
    println!("linking {many} profiles…");
    let ours = ChromiumDriver::new(config(true));
    let defaults = ChromiumDriver::new(config(false));
    let specs: Vec<LaunchSpec> = (0..many)
        .map(|i| LaunchSpec {
            session: SessionId::new(format!("bench-{i}")).unwrap(),
            profile_dir: dir.path().join(format!("bench-{i}")),
        })
        .collect();
    for spec in &specs {
        link(&ours, &client, spec).await;
    }

    let mut runs = Vec::new();
    for (name, driver) in [("ours", &ours), ("chromium defaults", &defaults)] {
        for n in [1, many] {
            runs.push(measure(name, driver, &specs[..n]).await);
        }
    }

    println!();
    println!(
        "{:<18} {:>8} {:>14} {:>14} {:>12} {:>14}",
        "flags", "sessions", "mean to CONN", "max to CONN", "wall", "PSS/session"
    );
    for r in &runs {
        println!(
            "{:<18} {:>8} {:>11.0} ms {:>11.0} ms {:>9.0} ms {:>10.1} MiB",
            r.flags,
            r.sessions,
            Run::mean(&r.launch_to_connected_ms),
            Run::max(&r.launch_to_connected_ms),
            r.wall_ms,
            Run::mean(&r.pss_mib)
        );
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let report = serde_json::json!({
        "what": "launch on a linked profile -> CONNECTED, and PSS per browser process group",
        "chromium": std::process::Command::new(&executable).arg("--version").output().ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "runs": runs,
        "measured_at": chrono::Utc::now().to_rfc3339(),
    });
    let path = out.join("chromium-launch.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("\nwritten to {}", path.display());
}

async fn link(driver: &ChromiumDriver, client: &EmulatorClient, spec: &LaunchSpec) {
    let session = driver.launch_session(spec.clone()).await.unwrap();
    let mut events = session.subscribe();
    let qr = match session.qr().await.unwrap() {
        Some(qr) => qr,
        None => loop {
            if let DriverEvent::Qr { payload } = events.recv().await.unwrap() {
                break payload;
            }
        },
    };
    client.scan(qr.reference(), PHONE).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        while events.recv().await.unwrap() != DriverEvent::Ready {}
    })
    .await
    .expect("linked");
    session.close().await.unwrap();
}

async fn measure(flags: &'static str, driver: &ChromiumDriver, specs: &[LaunchSpec]) -> Run {
    println!("{flags}: {} session(s)…", specs.len());
    let started = Instant::now();
    let launches = specs.iter().map(|spec| async move {
        let t0 = Instant::now();
        let session = driver.launch_session(spec.clone()).await.unwrap();
        wait_connected(&session).await;
        (session, t0.elapsed())
    });
    let done: Vec<(Arc<ChromiumSession>, Duration)> = futures::future::join_all(launches).await;
    let wall = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await; // let the pages settle before measuring
    let pss = done
        .iter()
        .map(|(s, _)| pss_of_group(s.process_group()) as f64 / 1024.0)
        .collect();
    let times = done.iter().map(|(_, d)| d.as_secs_f64() * 1000.0).collect();
    for (s, _) in &done {
        s.close().await.unwrap();
    }
    Run {
        flags,
        sessions: specs.len(),
        launch_to_connected_ms: times,
        wall_ms: wall.as_secs_f64() * 1000.0,
        pss_mib: pss,
    }
}

async fn wait_connected(session: &ChromiumSession) {
    let mut rx = session.subscribe();
    if session.state().await.unwrap() == ConnectionState::Connected {
        return;
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let DriverEvent::StateChanged {
                state: ConnectionState::Connected,
            } = rx.recv().await.unwrap()
            {
                return;
            }
        }
    })
    .await
    .expect("CONNECTED");
}

/// Sum of `Pss` (KiB) in `/proc/<pid>/smaps_rollup` over every process of group `pgid`.
fn pss_of_group(pgid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(2)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(pgid)
        })
        .filter_map(|pid| {
            let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
            rollup
                .lines()
                .find(|l| l.starts_with("Pss:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .sum()
}
