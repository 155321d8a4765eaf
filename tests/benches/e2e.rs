//! End-to-end benchmark: our server against whatsapp-web.js 1.34.7, on the same emulator and
//! the same Chromium, in the same run.
//!
//! ```sh
//! cargo bench -p whatsapp-tests --bench e2e                      # 10 sessions, 50 drops
//! cargo bench -p whatsapp-tests --bench e2e -- --sessions 2 --drops 10 --only ours
//! ```
//!
//! Options: `--sessions N` (default 10), `--drops M` (drops per side, default 50),
//! `--only ours|wwebjs`, `--set KEY=VALUE` (repeatable: one more setting for our manager,
//! e.g. `--set LAUNCH_CONCURRENCY=4`; recorded in the JSON). It prints the machine, a Markdown table and writes the raw numbers
//! to `target/bench/e2e.json` (`$CARGO_TARGET_DIR/bench/e2e.json` when that is set). Logs and
//! profiles of the last run stay in `target/bench/e2e-work/`.
//!
//! # Processes
//!
//! The bench binary re-executes itself in two child modes so that every figure belongs to
//! one process:
//!
//! - `e2e --emulator STATE_FILE`: the WhatsApp Web emulator (real-site timings, HTTPS as
//!   `web.whatsapp.com`), alive for the whole run and shared by both sides;
//! - `e2e --serve`: our manager, exactly what the `whatsapp-server` binary runs
//!   (settings from the environment, `App::start`, SIGTERM → graceful shutdown), compiled
//!   with the bench profile. It launches one Chromium per session.
//!
//! The whatsapp-web.js side is `node tests/benches/e2e/wwebjs-bench.js`: N `Client`s with
//! `LocalAuth` in one Node process, driven over stdin/stdout (JSON lines).
//!
//! Children watch their stdin and stop when it closes, so none outlives the bench; any
//! Chromium left under the run's profile directories is killed (by PID, found by its
//! `--user-data-dir`) when a side ends, even on a panic.
//!
//! # Figures (each measured on both sides)
//!
//! - link: wall time from the first create/start until all N are ready (QR read, scanned
//!   at the emulator, `ready`);
//! - backup: per session, our `POST /api/sessions/{id}/backups` against RemoteAuth's zip of
//!   the profile (whatsapp-web.js has no backup with `LocalAuth`), bytes and seconds;
//! - drop detection: the emulator drops a device; from just before the drop request to the
//!   first `GET /api/sessions/{id}` (polled every 10 ms) whose `state` is not `CONNECTED`,
//!   and to whatsapp-web.js's `change_state` event (its own `Date.now()`, same clock);
//! - memory: the manager's RSS (`/proc/PID/status`) against the Node process's, and each
//!   session's Chromium PSS (`/proc/PID/smaps_rollup`, summed over the browser process whose
//!   command line has `--user-data-dir=PROFILE` and its descendants);
//! - recovery: `kill -9` of one session's browser process until it is ready again (the
//!   emulator saw a new connection and the API says ready/`CONNECTED`, or whatsapp-web.js
//!   emits `ready`); whatsapp-web.js itself does nothing, so the Node script does what a
//!   gateway does: on puppeteer's `disconnected`, `destroy()` and `initialize()` again;
//! - restart: graceful stop, then from the new process's spawn until all N are ready again
//!   (a QR on the way is reported);
//! - restore from backup: graceful stop, the N profile directories deleted, then from the
//!   spawn until all N are ready (ours restores from its backups by itself; the Node script
//!   unzips each RemoteAuth archive before `initialize()`).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use whatsapp_emulator::{EmulatorClient, EmulatorConfig};

/// How to call it.
const USAGE: &str = "usage: cargo bench -p whatsapp-tests --bench e2e -- \
                     [--sessions N] [--drops M] [--only ours|wwebjs] [--set KEY=VALUE]...";
/// The administrator key our manager is given.
const ADMIN_KEY: &str = "wa_admin_e2e_bench_key_0123456789abcdef";
/// How long linking, a restart or a restore may take before the bench gives up.
const PHASE: Duration = Duration::from_secs(300);
/// How long a drop may go unnoticed before it counts as missed.
const DETECT: Duration = Duration::from_secs(15);
/// How long a session may take to reconnect after a drop.
const RECONNECT: Duration = Duration::from_secs(90);
/// How long whatsapp-web.js gets to emit `ready` once the emulator saw every device
/// `CONNECTED`, before the missing ones count as stuck.
const STUCK: Duration = Duration::from_secs(30);
/// How many times stuck whatsapp-web.js clients are initialized again while linking.
const REINIT_ROUNDS: u32 = 5;
/// How long a session may take to come back after its browser was killed.
const RECOVER: Duration = Duration::from_secs(120);
/// The drop lengths, used in turn (2–3 s).
const DROP_MS: [u64; 3] = [2000, 2500, 3000];
/// How often our API is polled while a drop is awaited.
const DETECT_POLL: Duration = Duration::from_millis(10);
/// How often our API is polled otherwise.
const POLL: Duration = Duration::from_millis(20);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--serve") => {
            // As the `whatsapp-server` binary does first thing.
            whatsapp_server::process::limit_malloc_arenas();
            return child_runtime(serve_mode());
        }
        Some("--emulator") => {
            let Some(state) = args.get(1) else {
                eprintln!("e2e --emulator: give the state file");
                return ExitCode::from(2);
            };
            return child_runtime(emulator_mode(PathBuf::from(state)));
        }
        _ => {}
    }
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("e2e: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if opts.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if !opts.bench {
        // `cargo test --benches` runs bench targets without `--bench`: do not start a
        // half-hour benchmark then.
        println!("e2e: skipped (not run by `cargo bench`); {USAGE}");
        return ExitCode::SUCCESS;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a child mode's future on its own runtime.
fn child_runtime(f: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e child: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves when stdin closes (the bench went away), on SIGTERM or on SIGINT.
async fn until_told_to_stop() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install the SIGTERM handler");
    let stdin_closed = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        _ = stdin_closed => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `e2e --serve`: what the `whatsapp-server` binary runs, settings from the environment.
async fn serve_mode() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,chromiumoxide=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = whatsapp_server::config::ServerConfig::try_load_from(["whatsapp-server"])
        .map_err(|e| e.to_string())?;
    let mut config = config.validate().map_err(|e| e.to_string())?;
    whatsapp_server::app::ensure_admin_key(&mut config).map_err(|e| e.to_string())?;
    let parts = whatsapp_server::app::AppParts::from_config(&config);
    let app = whatsapp_server::app::App::start(config, parts, None)
        .await
        .map_err(|e| e.to_string())?;
    println!("listening on http://{}", app.addr());
    until_told_to_stop().await;
    app.shutdown().await;
    Ok(())
}

/// `e2e --emulator STATE_FILE`: the emulator on a free loopback port, printed first.
async fn emulator_mode(state_file: PathBuf) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind the emulator: {e}"))?;
    let emulator =
        whatsapp_emulator::Emulator::try_new(EmulatorConfig::default().with_state_file(state_file))
            .map_err(|e| e.to_string())?;
    let running = emulator
        .serve_tls(listener)
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", running.addr());
    until_told_to_stop().await;
    drop(running);
    Ok(())
}

/// Which side(s) to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    Both,
    Ours,
    Wwebjs,
}

/// The command line.
#[derive(Debug)]
struct Options {
    sessions: usize,
    drops: usize,
    only: Only,
    /// Extra settings for our manager (environment variables), in order.
    set: Vec<(String, String)>,
    bench: bool,
    help: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            sessions: 10,
            drops: 50,
            only: Only::Both,
            set: Vec::new(),
            bench: false,
            help: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match a.as_str() {
                "--bench" => o.bench = true,
                "--help" | "-h" => o.help = true,
                "--sessions" => {
                    let v = value("--sessions")?;
                    o.sessions = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=50).contains(n))
                        .ok_or_else(|| format!("--sessions must be 1–50 (got {v:?})"))?;
                }
                "--drops" => {
                    let v = value("--drops")?;
                    o.drops = v
                        .parse()
                        .map_err(|_| format!("--drops must be a number (got {v:?})"))?;
                }
                "--only" => {
                    let v = value("--only")?;
                    o.only = match v.as_str() {
                        "ours" => Only::Ours,
                        "wwebjs" => Only::Wwebjs,
                        _ => return Err(format!("--only must be ours or wwebjs (got {v:?})")),
                    };
                }
                "--set" => {
                    let v = value("--set")?;
                    let (k, val) = v
                        .split_once('=')
                        .filter(|(k, _)| !k.is_empty())
                        .ok_or_else(|| format!("--set wants KEY=VALUE (got {v:?})"))?;
                    o.set.push((k.to_owned(), val.to_owned()));
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers: time, paths, /proc.
// ---------------------------------------------------------------------------------------

/// Milliseconds since the epoch (the clock Node's `Date.now()` reads).
fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// The workspace root (this crate's parent).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `$CARGO_TARGET_DIR` or `<workspace>/target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace().join(d)
            }
        }
        _ => workspace().join("target"),
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

/// Every PID in /proc.
fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// A `kB` field of a /proc file, in bytes.
fn kb_field(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn rss_bytes(pid: u32) -> Option<u64> {
    kb_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// `RssAnon`, `RssFile` (bytes) and `Threads` of a process.
fn rss_detail(pid: u32) -> Option<(u64, u64, u64)> {
    let status = format!("/proc/{pid}/status");
    let threads = std::fs::read_to_string(&status)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()?;
    Some((
        kb_field(&status, "RssAnon:")?,
        kb_field(&status, "RssFile:")?,
        threads,
    ))
}

fn pss_bytes(pid: u32) -> Option<u64> {
    kb_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// The browser process of `profile`: `--user-data-dir=PROFILE` and no `--type=`.
fn browser_pid(profile: &Path) -> Option<u32> {
    let want = format!("--user-data-dir={}", profile.display());
    all_pids().into_iter().find(|&pid| {
        let args = cmdline(pid);
        args.contains(&want) && !args.iter().any(|a| a.starts_with("--type="))
    })
}

/// `root` and all its descendants.
fn process_tree(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, ppid(p)?)))
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// The PSS of `profile`'s Chromium (browser and descendants), in bytes, and how many
/// processes that is.
fn chromium_pss(profile: &Path) -> Option<(u64, usize)> {
    let root = browser_pid(profile)?;
    let tree = process_tree(root);
    Some((tree.iter().copied().filter_map(pss_bytes).sum(), tree.len()))
}

/// SIGKILL to one positive PID.
fn sigkill(pid: u32) -> Result<(), String> {
    let raw = i32::try_from(pid).map_err(|_| format!("PID {pid} out of range"))?;
    let pid = rustix::process::Pid::from_raw(raw).ok_or("refusing to signal PID 0")?;
    rustix::process::kill_process(pid, rustix::process::Signal::KILL)
        .map_err(|e| format!("kill -9 {raw}: {e}"))
}

/// SIGTERM to one positive PID.
fn sigterm(pid: u32) -> Result<(), String> {
    let raw = i32::try_from(pid).map_err(|_| format!("PID {pid} out of range"))?;
    let pid = rustix::process::Pid::from_raw(raw).ok_or("refusing to signal PID 0")?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)
        .map_err(|e| format!("kill -TERM {raw}: {e}"))
}

/// Processes (Chromium and its helpers) whose `--user-data-dir` lies under `root`.
fn chromium_under(root: &Path) -> Vec<u32> {
    let prefix = format!("--user-data-dir={}/", root.display());
    all_pids()
        .into_iter()
        .filter(|&pid| cmdline(pid).iter().any(|a| a.starts_with(&prefix)))
        .collect()
}

/// Chromium processes on the machine that are not under any of `ours` (other people's).
fn foreign_chromium(ours: &[PathBuf]) -> usize {
    all_pids()
        .into_iter()
        .filter(|&pid| {
            let args = cmdline(pid);
            let is_browser = args.first().is_some_and(|a| a.contains("chrom"))
                && args.iter().any(|a| a.starts_with("--user-data-dir="))
                && !args.iter().any(|a| a.starts_with("--type="));
            is_browser
                && !ours.iter().any(|root| {
                    let prefix = format!("--user-data-dir={}/", root.display());
                    args.iter().any(|a| a.starts_with(&prefix))
                })
        })
        .count()
}

/// Kills whatever Chromium is left under its roots when dropped (also on a panic).
struct Sweeper {
    roots: Vec<PathBuf>,
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        for root in &self.roots {
            for pid in chromium_under(root) {
                let _ = sigkill(pid);
            }
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn session_id(i: usize) -> String {
    format!("s{:02}", i + 1)
}

/// The phone that links session `i` of a side (each session its own account).
fn phone(side: u32, i: usize) -> String {
    format!("346{side}{:07}", i + 1)
}

// ---------------------------------------------------------------------------------------
// Results.
// ---------------------------------------------------------------------------------------

/// A restart or a restore: from the spawn until every session is usable again.
#[derive(Debug, Default)]
struct Comeback {
    /// Until all are ready (ours: status `ready` and state `CONNECTED`; whatsapp-web.js:
    /// every client emitted `ready`); `None` if some never were.
    ready_s: Option<f64>,
    /// whatsapp-web.js only: until the emulator saw every device `CONNECTED`.
    emulator_s: Option<f64>,
    /// Whether a QR was shown on the way.
    qr: bool,
    /// whatsapp-web.js only: clients `CONNECTED` at the emulator that never emitted `ready`
    /// (within [`STUCK`] of the last one connecting).
    stuck: Vec<String>,
}

impl Comeback {
    /// The figure: the ready time, or when some clients never became ready, the emulator's.
    fn figure(&self) -> Option<f64> {
        if self.stuck.is_empty() {
            self.ready_s
        } else {
            self.emulator_s
        }
    }

    fn note(&self) -> String {
        let mut note = String::new();
        if self.qr {
            note.push_str(" (a QR was shown!)");
        }
        if !self.stuck.is_empty() {
            let _ = write!(
                note,
                " ({} never emitted ready: {}; the figure is the emulator's CONNECTED)",
                self.stuck.len(),
                self.stuck.join(", ")
            );
        }
        note
    }

    fn json(&self) -> Value {
        json!({
            "ready_s": self.ready_s,
            "emulator_connected_s": self.emulator_s,
            "qr_seen": self.qr,
            "never_ready": self.stuck,
        })
    }
}

/// What one side measured. Times in seconds unless named `_ms`.
#[derive(Debug, Default)]
struct SideResult {
    link_s: Option<f64>,
    /// whatsapp-web.js: until the emulator saw all devices `CONNECTED`.
    link_emulator_s: Option<f64>,
    /// whatsapp-web.js: clients that never emitted `ready` after the scan.
    link_stuck: Vec<String>,
    backup_bytes: Vec<u64>,
    backup_s: Vec<f64>,
    drop_ms: Vec<f64>,
    drops_missed: usize,
    manager_rss: Option<u64>,
    /// The manager's `RssAnon`, `RssFile` and `Threads` from /proc/PID/status.
    manager_detail: Option<(u64, u64, u64)>,
    chromium_pss: Vec<u64>,
    chromium_processes: Vec<usize>,
    recovery_s: Vec<Option<f64>>,
    restart: Comeback,
    restore: Comeback,
    load: Vec<(String, String, usize)>,
    errors: Vec<String>,
}

impl SideResult {
    fn note_load(&mut self, phase: &str, roots: &[PathBuf]) {
        self.load
            .push((phase.to_owned(), loadavg(), foreign_chromium(roots)));
    }

    fn sorted_drops(&self) -> Vec<f64> {
        let mut v = self.drop_ms.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    fn recovery_worst(&self) -> Option<f64> {
        if self.recovery_s.is_empty() || self.recovery_s.iter().any(Option::is_none) {
            return None;
        }
        self.recovery_s.iter().flatten().copied().reduce(f64::max)
    }

    fn json(&self) -> Value {
        let drops = self.sorted_drops();
        json!({
            "link_s": self.link_s,
            "link_emulator_connected_s": self.link_emulator_s,
            "link_never_ready": self.link_stuck,
            "backup_bytes": self.backup_bytes,
            "backup_s": self.backup_s,
            "drop_detection_ms": self.drop_ms,
            "drop_detection_p50_ms": percentile(&drops, 0.5),
            "drop_detection_p99_ms": percentile(&drops, 0.99),
            "drops_missed": self.drops_missed,
            "manager_rss_bytes": self.manager_rss,
            "manager_rss_anon_bytes": self.manager_detail.map(|d| d.0),
            "manager_rss_file_bytes": self.manager_detail.map(|d| d.1),
            "manager_threads": self.manager_detail.map(|d| d.2),
            "chromium_pss_bytes": self.chromium_pss,
            "chromium_processes": self.chromium_processes,
            "recovery_s": self.recovery_s,
            "restart": self.restart.json(),
            "restore": self.restore.json(),
            "load": self.load.iter().map(|(phase, load, foreign)| json!({
                "phase": phase, "loadavg": load, "foreign_chromium": foreign,
            })).collect::<Vec<_>>(),
            "errors": self.errors,
        })
    }
}

// ---------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------

/// What both sides share.
struct Ctx {
    opts: Options,
    emu: EmulatorClient,
    emu_addr: String,
    work: PathBuf,
    chromium: String,
}

async fn run(opts: Options) -> Result<(), String> {
    let chromium = std::env::var("CHROMIUM_PATH")
        .unwrap_or_else(|_| whatsapp_chromium::DEFAULT_EXECUTABLE.to_owned());
    if !Path::new(&chromium).exists() {
        return Err(format!(
            "Chromium not found at {chromium}: run scripts/install-deps.sh or set CHROMIUM_PATH"
        ));
    }
    let node_modules = workspace().join("whatsapp-emulator/compat/node_modules");
    if opts.only != Only::Ours && !node_modules.join("whatsapp-web.js").is_dir() {
        return Err(format!(
            "whatsapp-web.js is not installed in {}: run scripts/install-deps.sh \
             (npm ci in whatsapp-emulator/compat)",
            node_modules.display()
        ));
    }
    let bench_dir = target_dir().join("bench");
    let work = bench_dir.join("e2e-work");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| format!("clear {}: {e}", work.display()))?;
    }
    std::fs::create_dir_all(&work).map_err(|e| format!("create {}: {e}", work.display()))?;
    let work = work
        .canonicalize()
        .map_err(|e| format!("{}: {e}", work.display()))?;

    let machine = machine_info(&chromium).await;
    println!("{}", machine.1);

    // The emulator, alive for the whole run.
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let emu_log = std::fs::File::create(work.join("emulator.log")).map_err(|e| e.to_string())?;
    let mut emulator = Command::new(&exe)
        .arg("--emulator")
        .arg(work.join("emulator-state.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(emu_log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("start the emulator: {e}"))?;
    let mut emu_out = BufReader::new(emulator.stdout.take().expect("piped stdout")).lines();
    let emu_addr = tokio::time::timeout(Duration::from_secs(30), emu_out.next_line())
        .await
        .map_err(|_| "the emulator did not print its address within 30 s".to_owned())?
        .map_err(|e| e.to_string())?
        .ok_or("the emulator exited before printing its address")?;
    let emu = EmulatorClient::new(format!("https://{emu_addr}"));
    emu.devices()
        .await
        .map_err(|e| format!("emulator control API: {e}"))?;

    let ctx = Ctx {
        opts,
        emu,
        emu_addr,
        work: work.clone(),
        chromium,
    };
    println!(
        "sessions {}, drops {} per side; logs in {}",
        ctx.opts.sessions,
        ctx.opts.drops,
        work.display()
    );
    for (k, v) in &ctx.opts.set {
        println!("our manager: {k}={v}");
    }
    println!();

    let mut ours = SideResult::default();
    let mut theirs = SideResult::default();
    if ctx.opts.only != Only::Wwebjs {
        println!("== ours");
        if let Err(e) = run_ours(&ctx, &mut ours).await {
            eprintln!("ours: {e}");
            ours.errors.push(e);
        }
    }
    if ctx.opts.only != Only::Ours {
        println!("== whatsapp-web.js");
        if let Err(e) = run_wwebjs(&ctx, &node_modules, &mut theirs).await {
            eprintln!("whatsapp-web.js: {e}");
            theirs.errors.push(e);
        }
    }
    drop(emulator.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(5), emulator.wait()).await;

    let table = table(&ctx, &ours, &theirs);
    println!("\n{}\n{table}", machine.1);
    for (name, side) in [("ours", &ours), ("whatsapp-web.js", &theirs)] {
        for e in &side.errors {
            println!("error ({name}): {e}");
        }
    }
    let report = json!({
        "sessions": ctx.opts.sessions,
        "drops": ctx.opts.drops,
        "ours_settings": ctx.opts.set.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "machine": machine.0,
        "ours": ours.json(),
        "wwebjs": theirs.json(),
        "table": table,
    });
    let path = bench_dir.join("e2e.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap())
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    println!("raw numbers: {}", path.display());
    if ours.errors.is_empty() && theirs.errors.is_empty() {
        Ok(())
    } else {
        Err("some figures are missing (errors above)".into())
    }
}

/// The machine (JSON and text).
async fn machine_info(chromium: &str) -> (Value, String) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let mem = kb_field("/proc/meminfo", "MemTotal:").unwrap_or(0);
    let version = Command::new(chromium)
        .arg("--version")
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("({e})"));
    let node = Command::new("node")
        .arg("--version")
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("({e})"));
    let load = loadavg();
    let foreign = foreign_chromium(&[]);
    let load1: f64 = load
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0);
    let busy = foreign > 0 || load1 > 1.0;
    let text = format!(
        "machine: {cpus} CPUs ({model}), {:.1} GiB RAM, {version}, node {node}; \
         load average at start {load}; Chromium processes of others at start: {foreign}{}",
        mem as f64 / (1u64 << 30) as f64,
        if busy {
            " (the machine is NOT quiet: numbers are under load)"
        } else {
            " (quiet)"
        }
    );
    let value = json!({
        "cpus": cpus, "cpu_model": model, "mem_total_bytes": mem, "chromium": version,
        "node": node, "loadavg_start": load, "foreign_chromium_start": foreign,
        "busy_at_start": busy,
    });
    (value, text)
}

// ---------------------------------------------------------------------------------------
// Our side.
// ---------------------------------------------------------------------------------------

/// Our manager process and its REST API.
struct Ours {
    http: reqwest::Client,
    base: String,
    envs: Vec<(String, String)>,
    sessions_path: PathBuf,
    work: PathBuf,
    logs: usize,
    child: Option<Child>,
}

impl Ours {
    fn new(ctx: &Ctx) -> Result<Ours, String> {
        let root = ctx.work.join("ours");
        let data = root.join("data");
        let home = root.join("home");
        let sessions_path = root.join("sessions");
        for d in [&data, &home, &sessions_path] {
            std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
        }
        let port = free_port();
        let envs: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), home.display().to_string()),
            ("RUST_LOG".into(), "warn,chromiumoxide=off".into()),
            ("HOST".into(), "127.0.0.1".into()),
            ("PORT".into(), port.to_string()),
            ("DATA_DIR".into(), data.display().to_string()),
            ("SESSIONS_PATH".into(), sessions_path.display().to_string()),
            (
                "DATABASE_URL".into(),
                format!("sqlite://{}", data.join("db.sqlite").display()),
            ),
            ("ADMIN_API_KEY".into(), ADMIN_KEY.into()),
            ("KEEPALIVE_TARGET".into(), "off".into()),
            ("NODE_ID".into(), "e2e-bench".into()),
            ("TIME_ZONE".into(), "UTC".into()),
            ("CHROMIUM_PATH".into(), ctx.chromium.clone()),
            (
                "CHROMIUM_ARGS".into(),
                format!(
                    "--host-resolver-rules=\"MAP web.whatsapp.com {}\" --ignore-certificate-errors",
                    ctx.emu_addr
                ),
            ),
        ];
        // `--set` comes last, so it can also replace one of the above.
        let mut envs = envs;
        envs.extend(ctx.opts.set.iter().cloned());
        let http = reqwest::Client::builder()
            // Below the server's idle time-out (HTTP_HEADER_TIMEOUT, 10 s): a pooled connection
            // the server is closing must not be reused.
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Ours {
            http,
            base: format!("http://127.0.0.1:{port}"),
            envs,
            sessions_path,
            work: root,
            logs: 0,
            child: None,
        })
    }

    fn profile(&self, id: &str) -> PathBuf {
        self.sessions_path.join(id)
    }

    /// Starts the manager; returns the instant just before the spawn.
    fn spawn(&mut self) -> Result<Instant, String> {
        self.logs += 1;
        let log = self.work.join(format!("manager-{}.log", self.logs));
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let started = Instant::now();
        let child = Command::new(exe)
            .arg("--serve")
            .env_clear()
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.work)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("start the manager: {e}"))?;
        self.child = Some(child);
        Ok(started)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "the manager exited with {status} before /readyz; see {}",
                    self.work.display()
                ));
            }
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the manager's /readyz not 200 within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGTERM and wait for a graceful exit (its browsers closed).
    async fn stop(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            sigterm(pid)?;
        }
        match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("the manager exited with {status} on SIGTERM")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the manager did not exit within 60 s of SIGTERM".into()),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(ADMIN_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    async fn session(&self, id: &str) -> Result<Value, String> {
        let (status, v) = self
            .call(reqwest::Method::GET, &format!("/api/sessions/{id}"), None)
            .await?;
        if status != 200 {
            return Err(format!("GET /api/sessions/{id}: {status} {v}"));
        }
        Ok(v)
    }

    /// All sessions by id.
    async fn sessions(&self) -> Result<HashMap<String, Value>, String> {
        let (status, v) = self
            .call(reqwest::Method::GET, "/api/sessions", None)
            .await?;
        let list = match (status, v) {
            (200, Value::Array(list)) => list,
            (200, Value::Object(mut o)) => match o.remove("sessions").or(o.remove("items")) {
                Some(Value::Array(list)) => list,
                other => return Err(format!("GET /api/sessions: unexpected {other:?}")),
            },
            (s, v) => return Err(format!("GET /api/sessions: {s} {v}")),
        };
        Ok(list
            .into_iter()
            .filter_map(|s| Some((s["id"].as_str()?.to_owned(), s)))
            .collect())
    }

    /// Polls until every one of `ids` is ready and `CONNECTED`; reports whether a QR was
    /// seen on the way.
    async fn wait_all_connected(&self, ids: &[String], within: Duration) -> Result<bool, String> {
        let deadline = Instant::now() + within;
        let mut qr = false;
        loop {
            let all = self.sessions().await?;
            qr |= all.values().any(|s| s["status"] == "qr");
            let pending: Vec<String> = ids
                .iter()
                .filter(|id| !all.get(*id).is_some_and(is_connected))
                .map(|id| {
                    let s = all.get(id);
                    format!(
                        "{id}: {}/{}",
                        s.map_or(Value::Null, |s| s["status"].clone()),
                        s.map_or(Value::Null, |s| s["state"].clone())
                    )
                })
                .collect();
            if pending.is_empty() {
                return Ok(qr);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not all ready within {within:?}; still {}",
                    pending.join(", ")
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn is_connected(s: &Value) -> bool {
    s["status"] == "ready" && s["state"] == "CONNECTED"
}

async fn run_ours(ctx: &Ctx, r: &mut SideResult) -> Result<(), String> {
    let n = ctx.opts.sessions;
    let ids: Vec<String> = (0..n).map(session_id).collect();
    let mut ours = Ours::new(ctx)?;
    let roots = [ours.sessions_path.clone()];
    let _sweeper = Sweeper {
        roots: roots.to_vec(),
    };

    // Link.
    r.note_load("link", &roots);
    ours.spawn()?;
    ours.wait_ready().await?;
    let t0 = Instant::now();
    for id in &ids {
        let (status, v) = ours
            .call(
                reqwest::Method::POST,
                "/api/sessions",
                Some(json!({ "id": id })),
            )
            .await?;
        if status != 201 {
            return Err(format!("POST /api/sessions {id}: {status} {v}"));
        }
    }
    let mut devices: HashMap<String, String> = HashMap::new();
    let deadline = Instant::now() + PHASE;
    while devices.len() < n {
        for (i, id) in ids.iter().enumerate() {
            if devices.contains_key(id) {
                continue;
            }
            let (status, v) = ours
                .call(
                    reqwest::Method::GET,
                    &format!("/api/sessions/{id}/qr"),
                    None,
                )
                .await?;
            if status == 200
                && let Some(reference) = v["qr"].as_str().and_then(|q| q.split(',').next())
            {
                match ctx.emu.scan(reference, &phone(1, i)).await {
                    Ok(scan) => {
                        devices.insert(id.clone(), scan.device);
                    }
                    Err(e) => eprintln!("  scan for {id} failed, retrying: {e}"),
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {n} sessions showed a QR within {PHASE:?}",
                devices.len()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    ours.wait_all_connected(&ids, PHASE).await?;
    let link = t0.elapsed().as_secs_f64();
    r.link_s = Some(link);
    println!("  link {n}: {link:.2} s");

    // Backups.
    r.note_load("backup", &roots);
    for id in &ids {
        let t = Instant::now();
        let (status, v) = ours
            .call(
                reqwest::Method::POST,
                &format!("/api/sessions/{id}/backups"),
                None,
            )
            .await?;
        let secs = t.elapsed().as_secs_f64();
        if status != 201 || v["verified"] != true {
            return Err(format!("backup of {id}: {status} {v}"));
        }
        r.backup_s.push(secs);
        r.backup_bytes.push(v["size"].as_u64().unwrap_or(0));
    }
    println!(
        "  backup: mean {:.0} bytes, {:.3} s",
        mean(&r.backup_bytes.iter().map(|b| *b as f64).collect::<Vec<_>>()).unwrap_or(0.0),
        mean(&r.backup_s).unwrap_or(0.0)
    );

    // Drops.
    r.note_load("drops", &roots);
    let mut k = 0;
    while k < ctx.opts.drops {
        for id in ids.iter().take(ctx.opts.drops - k) {
            let device = &devices[id];
            wait_device_connected(&ctx.emu, device, RECONNECT).await?;
            wait_ours_connected(&ours, id, RECONNECT).await?;
            let t_drop = epoch_ms();
            let started = Instant::now();
            ctx.emu
                .drop_device(device, Duration::from_millis(DROP_MS[k % DROP_MS.len()]))
                .await
                .map_err(|e| format!("drop {device}: {e}"))?;
            let mut seen = None;
            while started.elapsed() < DETECT {
                let s = ours.session(id).await?;
                if s["state"] != "CONNECTED" {
                    seen = Some(epoch_ms() - t_drop);
                    break;
                }
                tokio::time::sleep(DETECT_POLL).await;
            }
            match seen {
                Some(ms) => r.drop_ms.push(ms),
                None => r.drops_missed += 1,
            }
            k += 1;
        }
        for id in &ids {
            wait_device_connected(&ctx.emu, &devices[id], RECONNECT).await?;
            wait_ours_connected(&ours, id, RECONNECT).await?;
        }
    }
    print_drops(r);

    // Memory.
    r.note_load("memory", &roots);
    let pid = ours.pid().ok_or("the manager is not running")?;
    r.manager_rss = rss_bytes(pid);
    r.manager_detail = rss_detail(pid);
    for id in &ids {
        match chromium_pss(&ours.profile(id)) {
            Some((pss, count)) => {
                r.chromium_pss.push(pss);
                r.chromium_processes.push(count);
            }
            None => r.errors.push(format!("no Chromium found for {id}")),
        }
    }
    print_memory(r);

    // Recovery after kill -9 of a browser.
    r.note_load("recovery", &roots);
    for id in ids.iter().take(3) {
        let device = &devices[id];
        wait_device_connected(&ctx.emu, device, RECONNECT).await?;
        wait_ours_connected(&ours, id, RECONNECT).await?;
        let before = ctx.emu.device(device).await.map_err(|e| e.to_string())?;
        let pid = browser_pid(&ours.profile(id)).ok_or(format!("no browser for {id}"))?;
        let t0 = Instant::now();
        sigkill(pid)?;
        let mut back = None;
        while t0.elapsed() < RECOVER {
            let d = ctx.emu.device(device).await.map_err(|e| e.to_string())?;
            if d.connected
                && d.state == "CONNECTED"
                && d.connections > before.connections
                && is_connected(&ours.session(id).await?)
            {
                back = Some(t0.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        println!("  recovery of {id} after kill -9 of its browser: {back:?} s");
        r.recovery_s.push(back);
    }

    // Restart.
    ours.wait_all_connected(&ids, RECONNECT).await?;
    ours.stop().await?;
    r.note_load("restart", &roots);
    let t0 = ours.spawn()?;
    r.restart.qr = ours.wait_all_connected_after_ready(&ids).await?;
    r.restart.ready_s = Some(t0.elapsed().as_secs_f64());
    println!(
        "  restart: {:.2} s{}",
        t0.elapsed().as_secs_f64(),
        r.restart.note()
    );

    // Restore from backup.
    ours.stop().await?;
    for id in &ids {
        let p = ours.profile(id);
        std::fs::remove_dir_all(&p).map_err(|e| format!("delete {}: {e}", p.display()))?;
    }
    r.note_load("restore", &roots);
    let t0 = ours.spawn()?;
    r.restore.qr = ours.wait_all_connected_after_ready(&ids).await?;
    r.restore.ready_s = Some(t0.elapsed().as_secs_f64());
    println!(
        "  restore from backup: {:.2} s{}",
        t0.elapsed().as_secs_f64(),
        r.restore.note()
    );
    ours.stop().await?;
    Ok(())
}

impl Ours {
    /// After a spawn: waits for `/readyz`, then for all of `ids`.
    async fn wait_all_connected_after_ready(&mut self, ids: &[String]) -> Result<bool, String> {
        self.wait_ready().await?;
        self.wait_all_connected(ids, PHASE).await
    }
}

async fn wait_ours_connected(ours: &Ours, id: &str, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let s = ours.session(id).await?;
        if is_connected(&s) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{id} not ready/CONNECTED within {within:?}: {s}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_device_connected(
    emu: &EmulatorClient,
    device: &str,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let d = emu
            .device(device)
            .await
            .map_err(|e| format!("emulator device {device}: {e}"))?;
        if d.connected && d.state == "CONNECTED" {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "emulator device {device} not CONNECTED within {within:?}: {}",
                d.state
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn print_drops(r: &SideResult) {
    let d = r.sorted_drops();
    println!(
        "  drop detection over {} drops: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms, missed {}",
        d.len(),
        percentile(&d, 0.5).unwrap_or(f64::NAN),
        percentile(&d, 0.99).unwrap_or(f64::NAN),
        d.last().copied().unwrap_or(f64::NAN),
        r.drops_missed
    );
}

fn print_memory(r: &SideResult) {
    let (anon, file, threads) = r.manager_detail.unwrap_or_default();
    println!(
        "  memory: manager RSS {:.1} MiB (anon {:.1}, file {:.1}; {threads} threads), \
         Chromium PSS per session mean {:.1} MiB ({:?} processes per browser)",
        r.manager_rss.unwrap_or(0) as f64 / MIB,
        anon as f64 / MIB,
        file as f64 / MIB,
        mean(&r.chromium_pss.iter().map(|b| *b as f64).collect::<Vec<_>>()).unwrap_or(0.0) / MIB,
        r.chromium_processes
    );
}

const MIB: f64 = 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------
// The whatsapp-web.js side.
// ---------------------------------------------------------------------------------------

/// Events the Node process printed, with the instant each line was read.
#[derive(Default)]
struct Events {
    list: Mutex<Vec<(Instant, Value)>>,
}

impl Events {
    /// Events from `*cursor` on; advances the cursor.
    fn take(&self, cursor: &mut usize) -> Vec<(Instant, Value)> {
        let list = self.list.lock().unwrap();
        let new = list[(*cursor).min(list.len())..].to_vec();
        *cursor = list.len();
        new
    }

    /// Waits for the first event from `*cursor` on for which `f` answers.
    async fn wait<T>(
        &self,
        cursor: &mut usize,
        within: Duration,
        what: &str,
        mut f: impl FnMut(Instant, &Value) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + within;
        loop {
            // One event at a time: those after a hit stay for the next wait.
            loop {
                let next = self.list.lock().unwrap().get(*cursor).cloned();
                let Some((at, ev)) = next else { break };
                *cursor += 1;
                if let Some(t) = f(at, &ev) {
                    return Ok(t);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no {what} within {within:?}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The Node process running `wwebjs-bench.js`.
struct Node {
    child: Child,
    stdin: ChildStdin,
    events: Arc<Events>,
    pid: u32,
}

struct Wwebjs {
    script: PathBuf,
    node_modules: PathBuf,
    data: PathBuf,
    backups: PathBuf,
    work: PathBuf,
    home: PathBuf,
    emu_addr: String,
    chromium: String,
    logs: usize,
    node: Option<Node>,
}

impl Wwebjs {
    fn profile(&self, id: &str) -> PathBuf {
        self.data.join(format!("session-{id}"))
    }

    /// Starts Node; returns the instant just before the spawn.
    async fn spawn(&mut self) -> Result<Instant, String> {
        self.logs += 1;
        let log_path = self.work.join(format!("node-{}.log", self.logs));
        let err = std::fs::File::create(self.work.join(format!("node-{}.stderr", self.logs)))
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut child = Command::new("node")
            .arg(&self.script)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("NODE_PATH", &self.node_modules)
            .env("EMULATOR_ADDR", &self.emu_addr)
            .env("CHROMIUM", &self.chromium)
            .env("DATA_PATH", &self.data)
            .env("BACKUP_PATH", &self.backups)
            .env("PUPPETEER_SKIP_DOWNLOAD", "1")
            .current_dir(&self.work)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("start node: {e}"))?;
        let pid = child.id().ok_or("node exited at once")?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let events = Arc::new(Events::default());
        let sink = events.clone();
        tokio::spawn(async move {
            let mut log = tokio::fs::File::create(&log_path).await.ok();
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let at = Instant::now();
                if let Some(f) = log.as_mut() {
                    let _ = f.write_all(format!("{line}\n").as_bytes()).await;
                }
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["event"] == "error" {
                    eprintln!("  whatsapp-web.js: {}", v);
                }
                sink.list.lock().unwrap().push((at, v));
            }
        });
        self.node = Some(Node {
            child,
            stdin,
            events,
            pid,
        });
        Ok(started)
    }

    fn node(&mut self) -> Result<&mut Node, String> {
        self.node
            .as_mut()
            .ok_or_else(|| "node is not running".into())
    }

    async fn send(&mut self, cmd: Value) -> Result<(), String> {
        let node = self.node()?;
        node.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .map_err(|e| format!("write to node: {e}"))
    }

    /// `stop`: every client destroyed, then Node exits.
    async fn stop(&mut self) -> Result<(), String> {
        let Some(mut node) = self.node.take() else {
            return Ok(());
        };
        let _ = node.stdin.write_all(b"{\"cmd\":\"stop\"}\n").await;
        match tokio::time::timeout(Duration::from_secs(60), node.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("node exited with {status} on stop")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("node did not exit within 60 s of stop".into()),
        }
    }

    /// Sends `start` for every id (with `restore`) and waits until all are `ready`, or
    /// until [`STUCK`] after the emulator saw them all `CONNECTED`. Times from `t0`.
    async fn start_all(
        &mut self,
        t0: Instant,
        ids: &[String],
        restore: bool,
        emu: &EmulatorClient,
        devices: &HashMap<String, String>,
    ) -> Result<Comeback, String> {
        let events = self.node()?.events.clone();
        let mut cursor = 0;
        for id in ids {
            self.send(json!({"cmd": "start", "id": id, "restore": restore}))
                .await?;
        }
        let mine: HashSet<&str> = devices.values().map(String::as_str).collect();
        let mut ready: HashSet<String> = HashSet::new();
        let mut out = Comeback::default();
        let mut connected_at: Option<Instant> = None;
        let deadline = Instant::now() + PHASE;
        loop {
            for (at, ev) in events.take(&mut cursor) {
                match ev["event"].as_str() {
                    Some("ready") => {
                        ready.insert(ev["id"].as_str().unwrap_or_default().to_owned());
                        if ready.len() == ids.len() {
                            out.ready_s = Some(at.duration_since(t0).as_secs_f64());
                        }
                    }
                    Some("qr") => out.qr = true,
                    _ => {}
                }
            }
            if connected_at.is_none() {
                let list = emu.devices().await.map_err(|e| e.to_string())?;
                let up = list
                    .iter()
                    .filter(|d| mine.contains(d.id.as_str()) && d.connected)
                    .filter(|d| d.state == "CONNECTED")
                    .count();
                if up == mine.len() {
                    let now = Instant::now();
                    connected_at = Some(now);
                    out.emulator_s = Some(now.duration_since(t0).as_secs_f64());
                }
            }
            if out.ready_s.is_some() {
                return Ok(out);
            }
            if let Some(at) = connected_at
                && at.elapsed() > STUCK
            {
                out.stuck = ids
                    .iter()
                    .filter(|id| !ready.contains(*id))
                    .cloned()
                    .collect();
                return Ok(out);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not all clients ready within {PHASE:?}; ready: {ready:?}"
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

async fn run_wwebjs(ctx: &Ctx, node_modules: &Path, r: &mut SideResult) -> Result<(), String> {
    let n = ctx.opts.sessions;
    let ids: Vec<String> = (0..n).map(session_id).collect();
    let root = ctx.work.join("wwebjs");
    let data = root.join("data");
    let backups = root.join("backups");
    let home = root.join("home");
    for d in [&data, &backups, &home] {
        std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    let mut w = Wwebjs {
        script: workspace().join("tests/benches/e2e/wwebjs-bench.js"),
        node_modules: node_modules.to_path_buf(),
        data: data.clone(),
        backups,
        work: root,
        home,
        emu_addr: ctx.emu_addr.clone(),
        chromium: ctx.chromium.clone(),
        logs: 0,
        node: None,
    };
    let roots = [data.clone()];
    let _sweeper = Sweeper {
        roots: roots.to_vec(),
    };

    // Link.
    r.note_load("link", &roots);
    w.spawn().await?;
    let events = w.node()?.events.clone();
    let mut cursor = 0;
    events
        .wait(
            &mut cursor,
            Duration::from_secs(30),
            "start of node",
            |_, ev| (ev["event"] == "started").then_some(()),
        )
        .await?;
    let t0 = Instant::now();
    for id in &ids {
        w.send(json!({"cmd": "start", "id": id})).await?;
    }
    let mut devices: HashMap<String, String> = HashMap::new();
    let mut ready: HashSet<String> = HashSet::new();
    let deadline = Instant::now() + PHASE;
    let mut all_ready_at = None;
    let mut connected_at: Option<Instant> = None;
    let mut last_check = Instant::now();
    let mut reinit_rounds = 0;
    while ready.len() < n {
        // whatsapp-web.js misses `ready` when the page synced before its listener was
        // attached: clients CONNECTED at the emulator for STUCK without `ready` are noted
        // and initialized once more (what an operator would do), so the run can go on. A
        // client initialized again can miss it again: up to REINIT_ROUNDS rounds.
        if connected_at.is_none() && devices.len() == n && last_check.elapsed() > POLL * 5 {
            last_check = Instant::now();
            let mine: HashSet<&str> = devices.values().map(String::as_str).collect();
            let list = ctx.emu.devices().await.map_err(|e| e.to_string())?;
            let up = list
                .iter()
                .filter(|d| mine.contains(d.id.as_str()) && d.connected && d.state == "CONNECTED")
                .count();
            if up == n {
                connected_at = Some(Instant::now());
                r.link_emulator_s.get_or_insert(t0.elapsed().as_secs_f64());
            }
        }
        if let Some(at) = connected_at
            && at.elapsed() > STUCK
            && reinit_rounds < REINIT_ROUNDS
        {
            reinit_rounds += 1;
            connected_at = None;
            let stuck: Vec<String> = ids
                .iter()
                .filter(|id| !ready.contains(*id))
                .cloned()
                .collect();
            eprintln!(
                "  whatsapp-web.js: {stuck:?} CONNECTED at the emulator for {STUCK:?} without \
                 `ready`; initializing them again (round {reinit_rounds})"
            );
            for id in &stuck {
                w.send(json!({"cmd": "reinit", "id": id})).await?;
                if !r.link_stuck.contains(id) {
                    r.link_stuck.push(id.clone());
                }
            }
        }
        for (at, ev) in events.take(&mut cursor) {
            let id = ev["id"].as_str().unwrap_or_default().to_owned();
            match ev["event"].as_str() {
                Some("qr") if !devices.contains_key(&id) => {
                    let i = ids.iter().position(|x| *x == id).unwrap_or(0);
                    let reference = ev["qr"].as_str().and_then(|q| q.split(',').next());
                    if let Some(reference) = reference {
                        match ctx.emu.scan(reference, &phone(2, i)).await {
                            Ok(scan) => {
                                devices.insert(id, scan.device);
                            }
                            Err(e) => eprintln!("  scan for {id} failed, retrying: {e}"),
                        }
                    }
                }
                Some("ready") => {
                    ready.insert(id);
                    if ready.len() == n {
                        all_ready_at = Some(at);
                    }
                }
                _ => {}
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {n} clients ready within {PHASE:?} ({} scanned)",
                ready.len(),
                devices.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let link = all_ready_at.map_or(0.0, |at| at.duration_since(t0).as_secs_f64());
    r.link_s = Some(link);
    println!(
        "  link {n}: {link:.2} s (all CONNECTED at the emulator after {:?} s; never ready \
         before a second initialize: {:?})",
        r.link_emulator_s, r.link_stuck
    );

    // Backups: RemoteAuth's zip.
    r.note_load("backup", &roots);
    for id in &ids {
        let t = Instant::now();
        w.send(json!({"cmd": "zip", "id": id})).await?;
        let bytes = events
            .wait(&mut cursor, Duration::from_secs(60), "zipped", |_, ev| {
                (ev["event"] == "zipped" && ev["id"] == id.as_str())
                    .then(|| ev["bytes"].as_u64().unwrap_or(0))
            })
            .await?;
        r.backup_s.push(t.elapsed().as_secs_f64());
        r.backup_bytes.push(bytes);
    }
    println!(
        "  backup (RemoteAuth zip): mean {:.0} bytes, {:.3} s",
        mean(&r.backup_bytes.iter().map(|b| *b as f64).collect::<Vec<_>>()).unwrap_or(0.0),
        mean(&r.backup_s).unwrap_or(0.0)
    );

    // Drops. The client's state: CONNECTED after `ready`, then its last `change_state`.
    r.note_load("drops", &roots);
    let mut state: HashMap<String, String> = ids
        .iter()
        .map(|id| (id.clone(), "CONNECTED".to_owned()))
        .collect();
    let mut k = 0;
    while k < ctx.opts.drops {
        for id in ids.iter().take(ctx.opts.drops - k) {
            let device = &devices[id];
            wait_device_connected(&ctx.emu, device, RECONNECT).await?;
            wait_wwebjs_state(&events, &mut cursor, &mut state, id).await?;
            let t_drop = epoch_ms();
            ctx.emu
                .drop_device(device, Duration::from_millis(DROP_MS[k % DROP_MS.len()]))
                .await
                .map_err(|e| format!("drop {device}: {e}"))?;
            let seen = events
                .wait(&mut cursor, DETECT, "change_state", |_, ev| {
                    if ev["event"] == "change_state"
                        && let Some(who) = ev["id"].as_str()
                    {
                        let s = ev["state"].as_str().unwrap_or_default().to_owned();
                        let hit = who == id && s != "CONNECTED";
                        state.insert(who.to_owned(), s);
                        if hit {
                            return Some(ev["t"].as_f64().unwrap_or(0.0) - t_drop);
                        }
                    }
                    None
                })
                .await;
            match seen {
                Ok(ms) => r.drop_ms.push(ms),
                Err(_) => r.drops_missed += 1,
            }
            k += 1;
        }
        for id in &ids {
            wait_device_connected(&ctx.emu, &devices[id], RECONNECT).await?;
            wait_wwebjs_state(&events, &mut cursor, &mut state, id).await?;
        }
    }
    print_drops(r);

    // Memory.
    r.note_load("memory", &roots);
    let pid = w.node()?.pid;
    r.manager_rss = rss_bytes(pid);
    r.manager_detail = rss_detail(pid);
    for id in &ids {
        match chromium_pss(&w.profile(id)) {
            Some((pss, count)) => {
                r.chromium_pss.push(pss);
                r.chromium_processes.push(count);
            }
            None => r.errors.push(format!("no Chromium found for {id}")),
        }
    }
    print_memory(r);

    // Recovery: kill -9 of a browser; the gateway code relaunches the client.
    r.note_load("recovery", &roots);
    for id in ids.iter().take(3) {
        let device = &devices[id];
        wait_device_connected(&ctx.emu, device, RECONNECT).await?;
        let pid = browser_pid(&w.profile(id)).ok_or(format!("no browser for {id}"))?;
        let t0 = Instant::now();
        sigkill(pid)?;
        let back = events
            .wait(&mut cursor, RECOVER, "ready after the kill", |at, ev| {
                (ev["event"] == "ready" && ev["id"] == id.as_str())
                    .then(|| at.duration_since(t0).as_secs_f64())
            })
            .await
            .ok();
        state.insert(id.clone(), "CONNECTED".to_owned());
        println!("  recovery of {id} after kill -9 of its browser: {back:?} s");
        r.recovery_s.push(back);
    }

    // Restart.
    w.stop().await?;
    r.note_load("restart", &roots);
    let t0 = w.spawn().await?;
    r.restart = w.start_all(t0, &ids, false, &ctx.emu, &devices).await?;
    println!("  restart: {:?} s{}", r.restart.figure(), r.restart.note());

    // Restore from backup: profiles deleted, each unzipped before initialize().
    w.stop().await?;
    for id in &ids {
        let p = w.profile(id);
        std::fs::remove_dir_all(&p).map_err(|e| format!("delete {}: {e}", p.display()))?;
    }
    r.note_load("restore", &roots);
    let t0 = w.spawn().await?;
    r.restore = w.start_all(t0, &ids, true, &ctx.emu, &devices).await?;
    println!(
        "  restore from backup: {:?} s{}",
        r.restore.figure(),
        r.restore.note()
    );
    w.stop().await?;
    Ok(())
}

/// Waits until whatsapp-web.js's last known state of `id` is `CONNECTED`.
async fn wait_wwebjs_state(
    events: &Events,
    cursor: &mut usize,
    state: &mut HashMap<String, String>,
    id: &str,
) -> Result<(), String> {
    let apply = |state: &mut HashMap<String, String>, ev: &Value| {
        if let Some(who) = ev["id"].as_str() {
            match ev["event"].as_str() {
                Some("change_state") => {
                    state.insert(
                        who.to_owned(),
                        ev["state"].as_str().unwrap_or_default().to_owned(),
                    );
                }
                Some("ready") => {
                    state.insert(who.to_owned(), "CONNECTED".to_owned());
                }
                _ => {}
            }
        }
    };
    for (_, ev) in events.take(cursor) {
        apply(state, &ev);
    }
    if state.get(id).is_some_and(|s| s == "CONNECTED") {
        return Ok(());
    }
    events
        .wait(cursor, RECONNECT, "CONNECTED again", |_, ev| {
            apply(state, ev);
            state
                .get(id)
                .is_some_and(|s| s == "CONNECTED")
                .then_some(())
        })
        .await
        .map_err(|e| format!("{id}: {e}"))
}

// ---------------------------------------------------------------------------------------
// The table.
// ---------------------------------------------------------------------------------------

fn table(ctx: &Ctx, ours: &SideResult, theirs: &SideResult) -> String {
    let n = ctx.opts.sessions;
    let fmt = |v: Option<f64>, unit: &str, prec: usize| {
        v.map_or("—".to_owned(), |v| format!("{v:.prec$} {unit}"))
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let met = |ok: Option<bool>| match ok {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "—",
    };
    let mut out = String::new();
    out.push_str(
        "| figure | ours | whatsapp-web.js | ratio (ours / wwebjs) | target | met? |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut row = |figure: String,
                   a: Option<f64>,
                   b: Option<f64>,
                   unit: &str,
                   prec: usize,
                   target: &str,
                   ok: Option<bool>| {
        let r = ratio(a, b);
        let _ = writeln!(
            out,
            "| {figure} | {} | {} | {} | {target} | {} |",
            fmt(a, unit, prec),
            fmt(b, unit, prec),
            r.map_or("—".to_owned(), |r| format!("{r:.2}")),
            if target.is_empty() { "" } else { met(ok) },
        );
    };
    let link_theirs = if theirs.link_stuck.is_empty() {
        theirs.link_s
    } else {
        theirs.link_emulator_s
    };
    row(
        format!(
            "link {n} sessions (QR → scan → ready), wall{}",
            if theirs.link_stuck.is_empty() {
                String::new()
            } else {
                format!(
                    " — wwebjs: {} never emitted ready ({}); the figure is the emulator's \
                     CONNECTED",
                    theirs.link_stuck.len(),
                    theirs.link_stuck.join(", ")
                )
            }
        ),
        ours.link_s,
        link_theirs,
        "s",
        2,
        "",
        None,
    );
    let notes = |a: &Comeback, b: &Comeback| {
        let (a, b) = (a.note(), b.note());
        match (a.is_empty(), b.is_empty()) {
            (true, true) => String::new(),
            (false, true) => format!(" — ours:{a}"),
            (true, false) => format!(" — wwebjs:{b}"),
            (false, false) => format!(" — ours:{a}; wwebjs:{b}"),
        }
    };
    row(
        format!(
            "restart: process start → all {n} CONNECTED, no QR{}",
            notes(&ours.restart, &theirs.restart)
        ),
        ours.restart.figure(),
        theirs.restart.figure(),
        "s",
        2,
        "",
        None,
    );
    let restore_ok = ours
        .restore
        .figure()
        .map(|o| o <= 10.0 && ratio(Some(o), theirs.restore.figure()).is_none_or(|r| r <= 0.5));
    row(
        format!(
            "restore from backup: {n} profiles deleted → all CONNECTED{}",
            notes(&ours.restore, &theirs.restore)
        ),
        ours.restore.figure(),
        theirs.restore.figure(),
        "s",
        2,
        "≤ 10 s (for 10) and ≤ 0.5×",
        restore_ok,
    );
    let (od, td) = (ours.sorted_drops(), theirs.sorted_drops());
    let drops_label = |r: &SideResult| {
        format!(
            "{}{}",
            r.drop_ms.len(),
            if r.drops_missed > 0 {
                format!(", {} missed", r.drops_missed)
            } else {
                String::new()
            }
        )
    };
    row(
        format!(
            "drop detection p50 (drops: ours {}, wwebjs {})",
            drops_label(ours),
            drops_label(theirs)
        ),
        percentile(&od, 0.5),
        percentile(&td, 0.5),
        "ms",
        0,
        "",
        None,
    );
    let p99 = percentile(&od, 0.99);
    row(
        "drop detection p99".to_owned(),
        p99,
        percentile(&td, 0.99),
        "ms",
        0,
        "≤ 1000 ms",
        p99.map(|p| p <= 1000.0 && ours.drops_missed == 0),
    );
    let rec = ours.recovery_worst();
    let rec_label = |r: &SideResult| {
        if !r.recovery_s.is_empty() && r.recovery_worst().is_none() {
            " (no recovery)"
        } else {
            ""
        }
    };
    row(
        format!(
            "recovery: kill -9 of a session's Chromium → CONNECTED (worst of {}){}{}",
            ours.recovery_s.len().max(theirs.recovery_s.len()),
            rec_label(ours),
            rec_label(theirs),
        ),
        rec,
        theirs.recovery_worst(),
        "s",
        2,
        "≤ 5 s",
        rec.map(|s| s <= 5.0),
    );
    let rss = |r: &SideResult| r.manager_rss.map(|b| b as f64 / MIB);
    let rss_ratio = ratio(rss(ours), rss(theirs));
    row(
        "manager RSS (ours: server process; wwebjs: Node process)".to_owned(),
        rss(ours),
        rss(theirs),
        "MiB",
        1,
        "≤ 0.2×",
        rss_ratio.map(|r| r <= 0.2),
    );
    let pss = |r: &SideResult| {
        mean(&r.chromium_pss.iter().map(|b| *b as f64).collect::<Vec<_>>()).map(|m| m / MIB)
    };
    row(
        "Chromium PSS per session (mean)".to_owned(),
        pss(ours),
        pss(theirs),
        "MiB",
        1,
        "",
        None,
    );
    let bytes = |r: &SideResult| {
        mean(&r.backup_bytes.iter().map(|b| *b as f64).collect::<Vec<_>>()).map(|m| m / 1024.0)
    };
    row(
        "backup size per session (mean; wwebjs: RemoteAuth zip)".to_owned(),
        bytes(ours),
        bytes(theirs),
        "KiB",
        1,
        "",
        None,
    );
    row(
        "backup time per session (mean)".to_owned(),
        mean(&ours.backup_s),
        mean(&theirs.backup_s),
        "s",
        3,
        "",
        None,
    );
    out
}
