//! Private, disposable instances of the server's infrastructure for the fault-injection
//! tests: a Postgres cluster, a Redis and an S3 server (`moto_server`), each on its own free
//! loopback port and temporary directory, so that restarting or pausing one never touches
//! the shared Postgres (5432) and Redis (6379) other tests use. Plus an HTTP receiver whose
//! answer can be switched at run time (200, 500, or never answering).
//!
//! Include it from a test file with `#[path = "common/infra.rs"] mod infra;`. Every signal
//! goes to one positive PID this module started: never a process group, never a name. Each
//! instance is stopped when dropped, also when the test panics.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::time::Instant;
use whatsapp_core::testing::eventually;

/// A free loopback port (bound, then released for the instance to take).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

/// Sends `signal` to one process by its (positive) PID.
fn signal(pid: u32, signal: rustix::process::Signal) -> rustix::io::Result<()> {
    let raw = i32::try_from(pid).expect("PID fits in i32");
    assert!(raw > 0, "refusing to signal a non-positive PID {raw}");
    let pid = rustix::process::Pid::from_raw(raw).expect("a positive PID");
    rustix::process::kill_process(pid, signal)
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// The last `n` bytes of a text file (for failure messages).
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
    let start = text.len().saturating_sub(n);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

// ------------------------------------------------------------------------------------------
// Postgres
// ------------------------------------------------------------------------------------------

/// A private Postgres cluster (initdb in a temporary directory, trust auth, listening on
/// `127.0.0.1:<free port>` with its socket in the directory). Postgres refuses to run as
/// root, so `initdb` and `pg_ctl` run as the `postgres` user through `runuser` when the tests
/// run as root. Stopped (`pg_ctl stop -m immediate`) when dropped.
pub(crate) struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// Creates and starts the cluster; panics naming what is missing.
    pub(crate) async fn start() -> PrivatePostgres {
        let bin = postgres_bin_dir();
        let as_postgres = rustix::process::geteuid().is_root();
        let dir = tempfile::Builder::new()
            .prefix("faults-pg-")
            .tempdir()
            .expect("temporary directory for Postgres");
        if as_postgres {
            let (uid, gid) = postgres_user();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("chown the Postgres directory to postgres");
        }
        let pg = PrivatePostgres {
            dir,
            bin,
            port: free_port(),
            as_postgres,
        };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )
        .await;
        pg.start_again().await;
        pg
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The server's log (the last 20 kB).
    pub(crate) fn log_tail(&self) -> String {
        tail(&self.log_path(), 20_000)
    }

    /// Starts the (stopped) cluster and waits until it accepts connections.
    pub(crate) async fn start_again(&self) {
        let data = self.data_dir().display().to_string();
        let log = self.log_path().display().to_string();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
        )
        .await;
    }

    /// Stops the cluster (`-m fast`: sessions are disconnected, the data is kept) and waits
    /// until it no longer listens.
    pub(crate) async fn stop(&self) {
        let data = self.data_dir().display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-m", "fast", "-w", "-t", "60", "stop"],
        )
        .await;
        let port = self.port;
        eventually(
            "Postgres to stop listening",
            Duration::from_secs(30),
            || async move { !accepts(port) },
        )
        .await;
    }

    /// Runs one Postgres tool (as `postgres` when needed); panics with its output on failure.
    async fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            tokio::process::Command::new(&program)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed ({}):\n{}\n{}\nlog:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== private Postgres log =====\n{}",
                tail(&self.log_path(), 8_000)
            );
        }
        let program = self.bin.join("pg_ctl");
        let data = self.data_dir().display().to_string();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        // Already stopped is fine: the directory goes away with the TempDir.
        let _ = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The directory holding `initdb` and `pg_ctl`: on `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn postgres_bin_dir() -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for d in std::env::split_paths(&path) {
        if d.join("initdb").is_file() && d.join("pg_ctl").is_file() {
            return d;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|d| d.join("initdb").is_file());
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!(
            "initdb/pg_ctl not found on PATH nor in /usr/lib/postgresql/*/bin: install Postgres \
             (scripts/install-deps.sh)"
        )
    })
}

/// The uid and gid of the `postgres` user (from `/etc/passwd`).
fn postgres_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres") && f.len() > 3)
                .then(|| (f[2].parse().ok(), f[3].parse().ok()))
                .and_then(|(u, g)| Some((u?, g?)))
        })
        .unwrap_or_else(|| {
            panic!(
                "no `postgres` user: Postgres refuses to run as root; install Postgres (it \
                 creates the user) or run the tests as another user"
            )
        })
}

// ------------------------------------------------------------------------------------------
// Redis
// ------------------------------------------------------------------------------------------

/// A private `redis-server` child with an append-only file fsynced on every write
/// (`--appendonly yes --appendfsync always`, no RDB snapshots). Restarting it (SIGTERM, then
/// a new process on the same port and directory) keeps every acknowledged write: that is
/// what a production Redis carrying the message queue needs too — without persistence a
/// Redis restart loses the queued messages (see the `redis_queue` module docs).
pub(crate) struct PrivateRedis {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    starts: u32,
}

impl PrivateRedis {
    /// Starts Redis and waits until it answers `PING`.
    pub(crate) async fn start() -> PrivateRedis {
        let dir = tempfile::Builder::new()
            .prefix("faults-redis-")
            .tempdir()
            .expect("temporary directory for Redis");
        let mut r = PrivateRedis {
            dir,
            port: free_port(),
            child: None,
            starts: 0,
        };
        r.spawn().await;
        r
    }

    /// `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The current process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("Redis runs").id()
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let log = self.dir.path().join(format!("redis-{}.log", self.starts));
        let out = std::fs::File::create(&log).expect("create the Redis log");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                &self.dir.path().display().to_string(),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--protected-mode",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install it (scripts/install-deps.sh)")
            });
        self.child = Some(child);
        let port = self.port;
        eventually(
            "Redis to answer PING",
            Duration::from_secs(30),
            || async move { redis_ping(port) },
        )
        .await;
    }

    /// SIGTERM (Redis flushes its AOF and exits), waits for the exit; the port is free.
    pub(crate) async fn stop(&mut self) {
        let mut child = self.child.take().expect("Redis runs");
        signal(child.id(), rustix::process::Signal::TERM).expect("SIGTERM Redis");
        eventually("Redis to exit", Duration::from_secs(30), || {
            std::future::ready(child.try_wait().expect("poll Redis").is_some())
        })
        .await;
        let port = self.port;
        eventually(
            "Redis's port to close",
            Duration::from_secs(10),
            || async move { !accepts(port) },
        )
        .await;
    }

    /// Starts a new process on the same port and directory (it loads the AOF).
    pub(crate) async fn start_again(&mut self) {
        assert!(self.child.is_none(), "Redis still runs");
        self.spawn().await;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a Redis answers `PING` with `+PONG` on `127.0.0.1:port` (and has loaded its data:
/// a loading Redis answers `-LOADING`).
fn redis_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

// ------------------------------------------------------------------------------------------
// S3 (moto)
// ------------------------------------------------------------------------------------------

/// A `moto_server` child on a free loopback port: an S3 that keeps its objects in memory.
/// "Stopped for a minute" is [`Moto::pause`] (SIGSTOP) then [`Moto::resume`] (SIGCONT): the
/// process keeps its data, a real restart would lose it. Killed (after a SIGCONT) when
/// dropped.
pub(crate) struct Moto {
    port: u16,
    child: Child,
    paused: bool,
}

/// The bucket the tests use.
pub(crate) const BUCKET: &str = "faults-backups";

impl Moto {
    /// Starts moto, waits until it answers, creates [`BUCKET`].
    pub(crate) async fn start() -> Moto {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run moto_server ({e}): install it with scripts/install-deps.sh \
                     (pip install 'moto[server]')"
                )
            });
        let moto = Moto {
            port,
            child,
            paused: false,
        };
        eventually("moto_server to answer", Duration::from_secs(60), || async {
            moto.request("GET", "/").is_some()
        })
        .await;
        let status = moto.request("PUT", &format!("/{BUCKET}"));
        assert!(
            matches!(status, Some(200) | Some(409)),
            "creating bucket {BUCKET} answered {status:?}"
        );
        moto
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's settings for this S3 (`BACKUP_SINK=s3`, path style, dummy keys).
    pub(crate) fn server_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("BACKUP_SINK", "s3".into()),
            ("S3_ENDPOINT", self.endpoint()),
            ("S3_BUCKET", BUCKET.into()),
            ("S3_REGION", "us-east-1".into()),
            ("S3_ACCESS_KEY_ID", "test".into()),
            ("S3_SECRET_ACCESS_KEY", "test-secret".into()),
            ("S3_PATH_STYLE", "true".into()),
        ]
    }

    /// SIGSTOP: the port still accepts connections (the kernel's backlog) but nothing
    /// answers — what a hung S3 looks like.
    pub(crate) fn pause(&mut self) {
        signal(self.child.id(), rustix::process::Signal::STOP).expect("SIGSTOP moto");
        self.paused = true;
    }

    /// SIGCONT.
    pub(crate) fn resume(&mut self) {
        signal(self.child.id(), rustix::process::Signal::CONT).expect("SIGCONT moto");
        self.paused = false;
    }

    /// The names of the objects in [`BUCKET`] (a bare `ListObjects` request; moto accepts
    /// it unsigned).
    pub(crate) fn object_keys(&self) -> Vec<String> {
        let body = self
            .request_body("GET", &format!("/{BUCKET}?list-type=2"))
            .unwrap_or_default();
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }

    fn request(&self, method: &str, path: &str) -> Option<u16> {
        whatsapp_tests::s3::status_of(&self.request_raw(method, path)?)
    }

    fn request_body(&self, method: &str, path: &str) -> Option<String> {
        let response = self.request_raw(method, path)?;
        Some(response.split_once("\r\n\r\n")?.1.to_owned())
    }

    fn request_raw(&self, method: &str, path: &str) -> Option<String> {
        whatsapp_tests::s3::bare_request(&format!("127.0.0.1:{}", self.port), method, path)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if self.paused {
            let _ = signal(self.child.id(), rustix::process::Signal::CONT);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------------
// A switchable HTTP receiver
// ------------------------------------------------------------------------------------------

/// How a [`Receiver`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Answer {
    /// 200.
    Ok = 0,
    /// 500.
    Fail = 1,
    /// Never answers (the request hangs until the client gives up).
    Hang = 2,
}

/// One POST a receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// When it arrived.
    pub at: Instant,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
    /// How it was answered.
    pub answer: Answer,
}

impl Received {
    /// The body as JSON (`Null` when it is not JSON).
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Clone, Default)]
struct ReceiverState {
    inbox: Arc<Mutex<Vec<Received>>>,
    answer: Arc<AtomicU8>,
}

/// A loopback HTTP server recording the POSTs to one path and answering them as told.
#[derive(Clone)]
pub(crate) struct Receiver {
    url: String,
    state: ReceiverState,
}

impl Receiver {
    /// Starts a receiver of POSTs to `path`, answering `answer`.
    pub(crate) async fn start(path: &'static str, answer: Answer) -> Receiver {
        async fn record(
            State(state): State<ReceiverState>,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            let answer = match state.answer.load(Ordering::SeqCst) {
                1 => Answer::Fail,
                2 => Answer::Hang,
                _ => Answer::Ok,
            };
            state.inbox.lock().unwrap().push(Received {
                at: Instant::now(),
                headers,
                body,
                answer,
            });
            match answer {
                Answer::Ok => StatusCode::OK,
                Answer::Fail => StatusCode::INTERNAL_SERVER_ERROR,
                Answer::Hang => {
                    // Longer than any client waits; the client's time-out ends it.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    StatusCode::OK
                }
            }
        }
        let state = ReceiverState::default();
        state.answer.store(answer as u8, Ordering::SeqCst);
        let app = axum::Router::new()
            .route(path, post(record))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a receiver");
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
        Receiver { url, state }
    }

    /// `http://127.0.0.1:<port>` (without the path).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Changes how the next requests are answered.
    pub(crate) fn answer(&self, answer: Answer) {
        self.state.answer.store(answer as u8, Ordering::SeqCst);
    }

    /// Everything received so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.state.inbox.lock().unwrap().clone()
    }

    /// The requests whose JSON body satisfies `pred`.
    pub(crate) fn matching(&self, pred: impl Fn(&serde_json::Value) -> bool) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| pred(&r.json()))
            .collect()
    }

    /// Polls until at least `n` requests satisfy `pred` (or panics after `within`).
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        n: usize,
        within: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<Received> {
        eventually(&format!("{n} of {what}"), within, || async {
            let got = self.matching(&pred);
            if got.len() >= n {
                Ok(got)
            } else {
                Err(format!(
                    "{} of {n}; received {:?}",
                    got.len(),
                    self.received()
                        .iter()
                        .map(|r| (r.answer, r.json()))
                        .collect::<Vec<_>>()
                ))
            }
        })
        .await
    }
}
