//! Shared helpers for fault-injection tests of the real `whatsapp-server` binary: a seeded
//! random source, a workspace that prints the server logs on failure, starting and killing
//! the server process (kill -9, SIGTERM), a REST client, the in-process emulator, and
//! `/proc` scans (Chromium processes of a profile, a process's open files and memory).
//!
//! Include it from a test file with `#[path = "common/faults.rs"] mod faults;`. Every signal
//! goes to one positive PID this test started (or a Chromium of this test's own profile
//! directory): never a process group, never a process by name.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::process::{Child, Command};
use whatsapp_core::testing::eventually;
use whatsapp_emulator::{Emulator, EmulatorClient, EmulatorConfig, RunningEmulator};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_whatsapp-server");
/// The administrator's key given to the server.
pub(crate) const ADMIN_KEY: &str = "wa_admin_fault_test_key_0123456789ab";
/// The phone that links the sessions.
pub(crate) const PHONE: &str = "34600000001";
/// The phone texts are sent to.
pub(crate) const RECIPIENT: &str = "34600000002";
/// How long a step that involves a browser may take (generous: CI has 2 cores).
pub(crate) const STEP: Duration = Duration::from_secs(60);
/// The seed used when `FAULT_SEED` is not set.
pub(crate) const DEFAULT_SEED: u64 = 0x5eed_fa17;

/// The run's seed: `FAULT_SEED` (decimal or `0x…` hex) or [`DEFAULT_SEED`]; printed so that
/// a failure can be replayed with `FAULT_SEED=<seed>`.
pub(crate) fn seed(test: &str) -> u64 {
    let seed = match std::env::var("FAULT_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("FAULT_SEED={s:?} is not a u64 ({e})"))
        }
        Err(_) => DEFAULT_SEED,
    };
    eprintln!("{test}: FAULT_SEED={seed} (set FAULT_SEED to replay another run)");
    seed
}

/// A small seeded random source (SplitMix64): the same seed gives the same choices on every
/// platform and every version of the `rand` crate.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A source seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        self.next_u64() % n
    }

    /// One element of `items` (not empty).
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A duration in `0..=max`, by whole milliseconds.
    pub(crate) fn millis_up_to(&mut self, max: Duration) -> Duration {
        let max = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.below(max.saturating_add(1)))
    }
}

/// The Chromium executable, or a panic naming how to install it.
pub(crate) fn chromium_path() -> String {
    let executable = std::env::var("CHROMIUM_PATH")
        .unwrap_or_else(|_| whatsapp_chromium::DEFAULT_EXECUTABLE.to_owned());
    assert!(
        Path::new(&executable).exists(),
        "Chromium not found at {executable}: install it (`apt-get install -y chromium`, done by \
         scripts/install-deps.sh) or set CHROMIUM_PATH"
    );
    executable
}

/// A free loopback port (bound, then released for the server to take).
pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

/// Starts the emulator (fast timings, TLS) on a loopback port.
pub(crate) async fn start_emulator() -> RunningEmulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the emulator on loopback");
    Emulator::new(EmulatorConfig::fast())
        .serve_tls(listener)
        .await
        .expect("start the emulator")
}

/// A temporary root holding the server's data, sessions and logs; prints the server logs
/// (the last `tail` bytes of each) when the test fails.
pub(crate) struct Workspace {
    root: tempfile::TempDir,
    logs: Mutex<Vec<PathBuf>>,
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace::new()
    }
}

impl Workspace {
    /// A fresh workspace with `data/` and `sessions/`.
    pub(crate) fn new() -> Workspace {
        let root = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir_all(root.path().join("data")).expect("create the data dir");
        std::fs::create_dir_all(root.path().join("sessions")).expect("create the sessions dir");
        Workspace {
            root,
            logs: Mutex::new(Vec::new()),
        }
    }

    /// The workspace's root directory.
    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    /// `DATA_DIR`.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// The SQLite database file the server uses.
    pub(crate) fn database_path(&self) -> PathBuf {
        self.data_dir().join("db.sqlite")
    }

    /// `SESSIONS_PATH`.
    pub(crate) fn sessions_path(&self) -> PathBuf {
        self.root.path().join("sessions")
    }

    /// The profile directory of session instance `instance_id` (a session's profile is
    /// named by its instance id, not by its name: see [`Api::profile_dir`]).
    pub(crate) fn profile_dir(&self, instance_id: &str) -> PathBuf {
        self.sessions_path().join(instance_id)
    }

    /// A new log file for the next server process.
    pub(crate) fn new_log(&self) -> PathBuf {
        let mut logs = self.logs.lock().unwrap();
        let path = self
            .root
            .path()
            .join(format!("server-{}.log", logs.len() + 1));
        logs.push(path.clone());
        path
    }
}

/// How much of each server log is printed when a test fails.
const LOG_TAIL: usize = 60_000;

impl Drop for Workspace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for path in self.logs.lock().unwrap().iter() {
                let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
                let start = text.len().saturating_sub(LOG_TAIL);
                let start = (start..text.len())
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(text.len());
                eprintln!(
                    "===== {} (last {LOG_TAIL} bytes) =====\n{}",
                    path.display(),
                    &text[start..]
                );
            }
        }
    }
}

/// How a server process is started; the same settings start it again on the same data.
#[derive(Clone, Debug)]
pub(crate) struct ServerSettings {
    /// The HTTP port.
    pub port: u16,
    /// The whole environment of the process (nothing is inherited).
    pub envs: Vec<(String, String)>,
}

impl ServerSettings {
    /// SQLite under the workspace's data dir, profiles under its sessions dir, Chromium
    /// pointed at `emulator`, keepalive texts off, the admin key [`ADMIN_KEY`].
    pub(crate) fn new(ws: &Workspace, emulator: &RunningEmulator) -> Self {
        let port = free_port();
        let home = ws.root().join("home");
        std::fs::create_dir_all(&home).expect("create HOME");
        let envs: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), home.display().to_string()),
            ("RUST_LOG".into(), "info,chromiumoxide=off".into()),
            ("HOST".into(), "127.0.0.1".into()),
            ("PORT".into(), port.to_string()),
            ("DATA_DIR".into(), ws.data_dir().display().to_string()),
            (
                "SESSIONS_PATH".into(),
                ws.sessions_path().display().to_string(),
            ),
            (
                "DATABASE_URL".into(),
                format!("sqlite://{}", ws.database_path().display()),
            ),
            ("ADMIN_API_KEY".into(), ADMIN_KEY.into()),
            ("KEEPALIVE_TARGET".into(), "off".into()),
            ("NODE_ID".into(), "fault-test".into()),
            ("TIME_ZONE".into(), "UTC".into()),
            ("CHROMIUM_PATH".into(), chromium_path()),
            (
                "CHROMIUM_ARGS".into(),
                format!(
                    "--host-resolver-rules=\"{}\" --ignore-certificate-errors",
                    emulator.host_resolver_rule()
                ),
            ),
        ];
        ServerSettings { port, envs }
    }

    /// Sets (or replaces) one environment variable.
    pub(crate) fn with_env(mut self, key: &str, value: &str) -> Self {
        self.envs.retain(|(k, _)| k != key);
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Sends `signal` to one process by its (positive) PID.
pub(crate) fn signal_pid(pid: u32, signal: rustix::process::Signal) -> rustix::io::Result<()> {
    let raw = i32::try_from(pid).expect("PID fits in i32");
    assert!(raw > 0, "refusing to signal a non-positive PID {raw}");
    let pid = rustix::process::Pid::from_raw(raw).expect("a positive PID");
    rustix::process::kill_process(pid, signal)
}

/// The server process. Dropping it kills it (SIGKILL to its own PID only).
pub(crate) struct Server {
    child: Child,
    log: PathBuf,
    pid: u32,
}

impl Server {
    /// Starts the binary with exactly `settings`' environment (nothing inherited: no
    /// `DATABASE_URL`/`REDIS_URL` from CI), output to a fresh log in the workspace.
    pub(crate) fn spawn(ws: &Workspace, settings: &ServerSettings) -> Server {
        let log = ws.new_log();
        let out = File::create(&log).expect("create the server log");
        let err = out.try_clone().expect("clone the log handle");
        let child = Command::new(BIN)
            .env_clear()
            .envs(settings.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(ws.root())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let pid = child.id().expect("a just-started child has a PID");
        Server { child, log, pid }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// This process's log file.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// Waits until `/readyz` answers 200; panics (naming the log) if the process exits first.
    pub(crate) async fn wait_ready(&mut self, api: &Api) {
        let url = format!("{}/readyz", api.base);
        eventually("/readyz to answer 200", STEP, || {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                panic!(
                    "the server exited with {status} before it was ready; log {}",
                    self.log.display()
                );
            }
            let answer = api.http.get(&url).send();
            async move {
                match answer.await {
                    Ok(r) if r.status() == StatusCode::OK => Ok(()),
                    Ok(r) => Err(r.status().to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await
    }

    /// The exit status if the process already exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll the server")
    }

    /// kill -9 (`Child::kill` is SIGKILL to this PID), then reaps it.
    pub(crate) async fn kill9(mut self) {
        self.child.kill().await.expect("SIGKILL the server");
    }

    /// SIGTERM to this PID; returns the exit status, or panics after `within`.
    pub(crate) async fn terminate(mut self, within: Duration) -> ExitStatus {
        signal_pid(self.pid, rustix::process::Signal::TERM).expect("send SIGTERM");
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the server did not exit within {within:?} of SIGTERM"))
            .expect("wait for the server")
    }
}

/// A small REST client of the server.
#[derive(Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// A client of the server at `base` (no proxy, 30 s per request).
    pub(crate) fn new(base: String) -> Api {
        let http = reqwest::Client::builder()
            // Below the server's idle time-out (HTTP_HEADER_TIMEOUT, 10 s): a pooled connection
            // the server is closing must not be reused.
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        Api { http, base }
    }

    /// The underlying HTTP client.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The server's base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// One request; a transport error is returned, not a panic (the server may be down).
    pub(crate) async fn try_call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> reqwest::Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// One request; panics on a transport error.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.try_call(method.clone(), path, key, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Writes a bodiless `POST path` straight onto a new connection and returns once the
    /// request has left (without waiting for the answer): the moment "a request was sent".
    /// The answer (or the error, when the server dies first) is the task's result.
    pub(crate) async fn post_sent(&self, path: &str, key: &str) -> tokio::task::JoinHandle<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = self
            .base
            .strip_prefix("http://")
            .expect("an http:// base URL")
            .to_owned();
        let mut stream = tokio::net::TcpStream::connect(&authority)
            .await
            .unwrap_or_else(|e| panic!("connect to {authority}: {e}"));
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {key}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("send POST {path}: {e}"));
        stream.flush().await.expect("flush the request");
        tokio::spawn(async move {
            let mut answer = Vec::new();
            match stream.read_to_end(&mut answer).await {
                Ok(_) => String::from_utf8_lossy(&answer)
                    .lines()
                    .next()
                    .unwrap_or("(no answer)")
                    .to_owned(),
                Err(e) => format!("(connection error: {e})"),
            }
        })
    }

    /// GET `path`.
    pub(crate) async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, key, None).await
    }

    /// POST `body` to `path`.
    pub(crate) async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, key, Some(body)).await
    }

    /// `path` must answer `want`; returns the body.
    pub(crate) async fn expect(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
        want: StatusCode,
    ) -> Value {
        let (status, value) = self.call(method.clone(), path, key, body).await;
        assert_eq!(status, want, "{method} {path} answered {value}");
        value
    }

    /// `GET /api/sessions/{id}` (must answer 200).
    pub(crate) async fn session(&self, session: &str) -> Value {
        self.expect(
            Method::GET,
            &format!("/api/sessions/{session}"),
            ADMIN_KEY,
            None,
            StatusCode::OK,
        )
        .await
    }

    /// The profile directory of the session named `session` in `ws` (looked up by its
    /// instance id).
    pub(crate) async fn profile_dir(&self, ws: &Workspace, session: &str) -> PathBuf {
        let v = self.session(session).await;
        let instance = v["instance_id"].as_str().expect("instance_id");
        ws.profile_dir(instance)
    }

    /// Creates (and starts) a session of the default tenant.
    pub(crate) async fn create_session(&self, session: &str) -> Value {
        self.expect(
            Method::POST,
            "/api/sessions",
            ADMIN_KEY,
            Some(serde_json::json!({"id": session})),
            StatusCode::CREATED,
        )
        .await
    }

    /// Reads the QR over REST and scans it at the emulator with [`PHONE`]; retries when a
    /// QR rotated between reading and scanning. Returns the linked device's id.
    pub(crate) async fn link(&self, session: &str, emulator: &EmulatorClient) -> String {
        eventually(&format!("{session} to be linked"), STEP, || async {
            let (status, v) = self
                .get(&format!("/api/sessions/{session}/qr"), ADMIN_KEY)
                .await;
            if status == StatusCode::OK {
                let payload = v["qr"].as_str().expect("qr is a string");
                let reference = payload.split(',').next().expect("QR has a ref field");
                match emulator.scan(reference, PHONE).await {
                    Ok(scan) => return Ok(scan.device),
                    Err(e) => eprintln!("scan of {reference} failed (retrying): {e}"),
                }
            } else {
                assert_eq!(status, StatusCode::CONFLICT, "GET qr of {session}: {v}");
            }
            Err(format!("last answer {status} {v}"))
        })
        .await
    }

    /// Polls until the session runs, its stored status is `ready` and WhatsApp Web's live
    /// state is `CONNECTED`, within `within`. Returns every distinct status seen on the way
    /// (a status of `qr` or `logged_out` among them means a QR was needed).
    pub(crate) async fn wait_connected(&self, session: &str, within: Duration) -> Vec<String> {
        self.wait_view(
            session,
            &format!("{session} ready and CONNECTED"),
            within,
            is_connected,
        )
        .await
    }

    /// Polls `GET /api/sessions/{session}` until `done` holds for the view, within `within`
    /// (panicking with `what`); returns every distinct status seen on the way.
    pub(crate) async fn wait_view(
        &self,
        session: &str,
        what: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Vec<String> {
        let seen = Mutex::new(Vec::<String>::new());
        eventually(what, within, || async {
            let v = self.session(session).await;
            let status = v["status"].as_str().unwrap_or_default().to_owned();
            let mut seen = seen.lock().unwrap();
            if seen.last() != Some(&status) {
                seen.push(status);
            }
            if done(&v) {
                Ok(())
            } else {
                Err(format!("statuses seen {seen:?}; last view {v}"))
            }
        })
        .await;
        seen.into_inner().unwrap()
    }

    /// Polls until the message's status is `want` (or panics after `within`).
    pub(crate) async fn wait_message(
        &self,
        session: &str,
        id: &str,
        want: &str,
        within: Duration,
    ) -> Value {
        eventually(
            &format!("message {id} of {session} to be {want}"),
            within,
            || async {
                let (status, v) = self
                    .get(&format!("/api/sessions/{session}/messages/{id}"), ADMIN_KEY)
                    .await;
                assert_eq!(status, StatusCode::OK, "GET message {id}: {v}");
                if v["status"] == want {
                    Ok(v)
                } else {
                    Err(v.to_string())
                }
            },
        )
        .await
    }
}

/// Whether a session view (`GET /api/sessions/{id}`) shows it running, `ready` and
/// `CONNECTED`.
pub(crate) fn is_connected(view: &Value) -> bool {
    view["running"] == true && view["status"] == "ready" && view["state"] == "CONNECTED"
}

/// Whether any of `statuses` means the session asked for a new QR scan.
pub(crate) fn needed_qr(statuses: &[String]) -> bool {
    statuses.iter().any(|s| s == "qr" || s == "logged_out")
}

/// One process's command line (the library's own reader).
pub(crate) use whatsapp_core::profile::cmdline;

/// Every process id in `/proc`.
pub(crate) fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .collect()
}

/// Processes (the wrapper shells included) whose profile is under `sessions`
/// (`--user-data-dir=<sessions>/…`), with their command lines.
pub(crate) fn chromium_under(sessions: &Path) -> Vec<(u32, String)> {
    let prefix = format!("--user-data-dir={}", sessions.display());
    all_pids()
        .into_iter()
        .filter_map(|pid| {
            let args = cmdline(pid);
            args.iter()
                .any(|a| a.starts_with(&prefix))
                .then(|| (pid, args.join(" ")))
        })
        .collect()
}

/// The main browser process of the profile `profile_dir`: its command line holds exactly
/// `--user-data-dir=<profile_dir>`, no `--type=` (renderers, zygotes, GPU, utilities have
/// one) and it is not the `/bin/sh` wrapper or watchdog. Zombies are skipped.
pub(crate) fn browser_pids(profile_dir: &Path) -> Vec<u32> {
    let want = format!("--user-data-dir={}", profile_dir.display());
    all_pids()
        .into_iter()
        .filter(|pid| {
            let args = cmdline(*pid);
            let Some(program) = args.first() else {
                return false;
            };
            let base = Path::new(program)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            !matches!(base, "sh" | "bash" | "dash")
                && args.contains(&want)
                && !args.iter().any(|a| a.starts_with("--type="))
                && process_state(*pid).is_some_and(|s| s != 'Z' && s != 'X')
        })
        .collect()
}

/// Waits (at most `within`) for exactly one main browser process of `profile_dir` that is
/// not `not`; returns its PID.
pub(crate) async fn wait_browser(profile_dir: &Path, not: Option<u32>, within: Duration) -> u32 {
    let what = format!(
        "a single browser process for {} (excluding {not:?})",
        profile_dir.display()
    );
    eventually(&what, within, || async {
        let pids: Vec<u32> = browser_pids(profile_dir)
            .into_iter()
            .filter(|p| Some(*p) != not)
            .collect();
        if let [pid] = pids[..] {
            Ok(pid)
        } else {
            Err(pids)
        }
    })
    .await
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `Z`, …), if the process exists.
pub(crate) fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S …`: comm may hold spaces and parentheses; the state follows the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// How many file descriptors `pid` has open.
pub(crate) fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
        .count()
}

/// `VmRSS` of `pid` in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Panics unless a Chromium runs on a profile under `sessions` (so that the checks that
/// none is left are not vacuous).
pub(crate) fn assert_chromium_running(sessions: &Path, when: &str) {
    assert!(
        !chromium_under(sessions).is_empty(),
        "no Chromium with --user-data-dir under {} {when}",
        sessions.display()
    );
}

/// Waits (at most `within`) until no process uses a profile under `sessions`.
pub(crate) async fn assert_no_chromium(sessions: &Path, within: Duration, when: &str) {
    eventually(&format!("no Chromium {when}"), within, || async {
        let left = chromium_under(sessions);
        if left.is_empty() { Ok(()) } else { Err(left) }
    })
    .await
}

/// The stored status of every queued message of `sessions`, read straight from the SQLite
/// database (use it while no server runs: after a kill it is the state at the kill).
pub(crate) async fn message_statuses(database: &Path, sessions: &[&str]) -> HashMap<i64, String> {
    use whatsapp_storage::store::{MessageQueue, SqliteSessionStore};
    let store = SqliteSessionStore::open(database)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", database.display()));
    let queue = store.message_queue();
    let mut statuses = HashMap::new();
    for s in sessions {
        let id = whatsapp_core::SessionId::new(*s).expect("a valid session id");
        for m in queue.list(&id, &[]).await.expect("list the queue") {
            statuses.insert(m.id, m.status.as_str().to_owned());
        }
    }
    store.close().await;
    statuses
}
