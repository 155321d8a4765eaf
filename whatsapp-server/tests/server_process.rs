//! The real `whatsapp-server` binary, run as a process against the emulator and real
//! Chromium: the whole journey a customer makes (tenant, key, webhook, real-time client,
//! QR, scan, e-mail, signed webhook, a text delivered), and crash safety (kill -9 with a
//! text queued, restart on the same data: no QR, the text goes out exactly once, then a
//! SIGTERM stops it cleanly with no Chromium left behind).
//!
//! Needs Chromium (`CHROMIUM_PATH`, default `/usr/bin/chromium`), node and `npm ci` in
//! `whatsapp-server/tests/socketio-client` (all done by `scripts/install-deps.sh`). These
//! tests never skip: they fail naming what is missing. The tests run one at a time (each
//! drives its own browsers on a small machine).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use whatsapp_core::testing::eventually;
use whatsapp_emulator::{Emulator, EmulatorClient, EmulatorConfig, RunningEmulator};
use whatsapp_server::outbox::verify_signature;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_whatsapp-server");
/// The administrator's key given to the server.
const ADMIN_KEY: &str = "wa_admin_process_test_key_0123456789";
/// The phone that links the sessions.
const PHONE: &str = "34600000001";
/// The phone texts are sent to.
const RECIPIENT: &str = "34600000002";
/// How long a step that involves a browser may take.
const STEP: Duration = Duration::from_secs(60);

/// One test at a time: each runs its own server and browsers.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The Chromium executable, or a panic naming how to install it.
fn chromium_path() -> String {
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
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

/// A temporary root holding the server's data, sessions and logs; prints the server logs
/// when the test fails.
struct Workspace {
    root: tempfile::TempDir,
    logs: Mutex<Vec<PathBuf>>,
}

impl Workspace {
    fn new() -> Workspace {
        let root = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir_all(root.path().join("data")).expect("create the data dir");
        std::fs::create_dir_all(root.path().join("sessions")).expect("create the sessions dir");
        Workspace {
            root,
            logs: Mutex::new(Vec::new()),
        }
    }

    fn sessions_path(&self) -> PathBuf {
        self.root.path().join("sessions")
    }

    fn new_log(&self) -> PathBuf {
        let mut logs = self.logs.lock().unwrap();
        let path = self
            .root
            .path()
            .join(format!("server-{}.log", logs.len() + 1));
        logs.push(path.clone());
        path
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for path in self.logs.lock().unwrap().iter() {
                let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
                eprintln!("===== {} =====\n{text}", path.display());
            }
        }
    }
}

/// How a server process is started; the same settings start it again on the same data.
#[derive(Clone)]
struct ServerSettings {
    port: u16,
    envs: Vec<(String, String)>,
}

impl ServerSettings {
    fn new(ws: &Workspace, emulator: &RunningEmulator, frontend: Option<&str>) -> Self {
        let port = free_port();
        let data = ws.root.path().join("data");
        let home = ws.root.path().join("home");
        std::fs::create_dir_all(&home).expect("create HOME");
        let mut envs: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), home.display().to_string()),
            ("RUST_LOG".into(), "info,chromiumoxide=off".into()),
            ("HOST".into(), "127.0.0.1".into()),
            ("PORT".into(), port.to_string()),
            ("DATA_DIR".into(), data.display().to_string()),
            (
                "SESSIONS_PATH".into(),
                ws.sessions_path().display().to_string(),
            ),
            (
                "DATABASE_URL".into(),
                format!("sqlite://{}", data.join("db.sqlite").display()),
            ),
            ("ADMIN_API_KEY".into(), ADMIN_KEY.into()),
            ("KEEPALIVE_TARGET".into(), "off".into()),
            ("NODE_ID".into(), "process-test".into()),
            ("TIME_ZONE".into(), "UTC".into()),
            // The tests' webhook receivers listen on loopback, an internal target.
            ("WEBHOOK_ALLOW_HOSTS".into(), "127.0.0.1".into()),
            ("CHROMIUM_PATH".into(), chromium_path()),
            (
                "CHROMIUM_ARGS".into(),
                format!(
                    "--host-resolver-rules=\"{}\" --ignore-certificate-errors",
                    emulator.host_resolver_rule()
                ),
            ),
        ];
        if let Some(url) = frontend {
            envs.push(("FRONTEND_URL".into(), url.to_owned()));
        }
        ServerSettings { port, envs }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The server process. Dropping it kills it (SIGKILL to its own PID only).
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts the binary with exactly `settings`' environment (nothing inherited: no
    /// `DATABASE_URL`/`REDIS_URL` from CI), output to a fresh log in the workspace.
    fn spawn(ws: &Workspace, settings: &ServerSettings) -> Server {
        let log = ws.new_log();
        let out = File::create(&log).expect("create the server log");
        let err = out.try_clone().expect("clone the log handle");
        let child = Command::new(BIN)
            .env_clear()
            .envs(settings.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(ws.root.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        Server { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("the server is still running")
    }

    /// Waits until `/readyz` answers 200; panics (with the log) if the process exits first.
    async fn wait_ready(&mut self, api: &Api) {
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

    /// kill -9 (`Child::kill` is SIGKILL to this PID), then reaps it.
    async fn kill9(mut self) {
        self.child.kill().await.expect("SIGKILL the server");
    }

    /// SIGTERM to this PID; returns the exit status, or panics after `within`.
    async fn terminate(mut self, within: Duration) -> ExitStatus {
        let raw = i32::try_from(self.pid()).expect("PID fits in i32");
        assert!(raw > 0, "refusing to signal a non-positive PID");
        let pid = rustix::process::Pid::from_raw(raw).expect("a positive PID");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("send SIGTERM");
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the server did not exit within {within:?} of SIGTERM"))
            .expect("wait for the server")
    }
}

/// A small REST client of the server.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(base: String) -> Api {
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

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, key, None).await
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, key, Some(body))
            .await
    }

    /// `path` must answer `want`; returns the body.
    async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
        want: StatusCode,
    ) -> Value {
        let (status, value) = self.call(method.clone(), path, key, body).await;
        assert_eq!(status, want, "{method} {path} answered {value}");
        value
    }

    async fn status(&self, session: &str, key: &str) -> String {
        let v = self
            .expect(
                reqwest::Method::GET,
                &format!("/api/sessions/{session}"),
                key,
                None,
                StatusCode::OK,
            )
            .await;
        v["status"].as_str().expect("status is a string").to_owned()
    }

    /// Polls until the session's status is `want`, returning every status seen on the way.
    async fn wait_status(&self, session: &str, key: &str, want: &str) -> Vec<String> {
        let seen = Mutex::new(Vec::<String>::new());
        eventually(&format!("session {session} to be {want}"), STEP, || async {
            let s = self.status(session, key).await;
            let mut seen = seen.lock().unwrap();
            if seen.last() != Some(&s) {
                seen.push(s.clone());
            }
            if s == want {
                Ok(())
            } else {
                Err(format!("statuses seen {seen:?}"))
            }
        })
        .await;
        seen.into_inner().unwrap()
    }

    /// Polls until the message's status is `want`.
    async fn wait_message(&self, session: &str, id: &str, key: &str, want: &str) -> Value {
        eventually(&format!("message {id} to be {want}"), STEP, || async {
            let (status, v) = self
                .get(&format!("/api/sessions/{session}/messages/{id}"), key)
                .await;
            assert_eq!(status, StatusCode::OK, "GET message {id}: {v}");
            if v["status"] == want {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        })
        .await
    }

    /// Reads the QR over REST and scans it at the emulator with [`PHONE`]; retries when a
    /// QR rotated between reading and scanning. Returns the linked device's id.
    async fn link(&self, session: &str, key: &str, emulator: &EmulatorClient) -> String {
        eventually(&format!("{session} to be linked"), STEP, || async {
            let (status, v) = self.get(&format!("/api/sessions/{session}/qr"), key).await;
            if status == StatusCode::OK {
                let payload = v["qr"].as_str().expect("qr is a string");
                let reference = payload.split(',').next().expect("QR has a ref field");
                match emulator.scan(reference, PHONE).await {
                    Ok(scan) => return Ok(scan.device),
                    Err(e) => eprintln!("scan of {reference} failed (retrying): {e}"),
                }
            } else {
                assert_eq!(status, StatusCode::CONFLICT, "GET qr: {v}");
            }
            Err(format!("last answer {status} {v}"))
        })
        .await
    }
}

/// One POST a receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// A loopback HTTP server answering 200 to POSTs on `path` and recording them.
async fn receiver(path: &'static str) -> (String, Inbox) {
    async fn record(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
        inbox.lock().unwrap().push(Received { headers, body });
        StatusCode::OK
    }
    let inbox: Inbox = Arc::default();
    let app = axum::Router::new()
        .route(path, post(record))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a receiver");
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
    (url, inbox)
}

/// Polls `inbox` until `pred` holds for one request.
async fn wait_received(inbox: &Inbox, what: &str, pred: impl Fn(&Received) -> bool) -> Received {
    eventually(what, STEP, || async {
        let got = inbox.lock().unwrap();
        got.iter()
            .find(|r| pred(r))
            .cloned()
            .ok_or_else(|| format!("got {got:?}"))
    })
    .await
}

fn json_of(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// The npm socket.io-client (`tests/socketio-client/client.js`, one JSON line per event),
/// killed by PID when dropped (its stdin closing also makes it exit).
struct NodeClient {
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl NodeClient {
    fn start(url: &str, specs: &[String]) -> NodeClient {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/socketio-client");
        assert!(
            dir.join("node_modules/socket.io-client").is_dir(),
            "socket.io-client is not installed: run `(cd {} && npm ci)` (or scripts/install-deps.sh)",
            dir.display()
        );
        let mut child = Command::new("node")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .arg(dir.join("client.js"))
            .arg(url)
            .args(specs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node must be installed to run the socket.io-client");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("bad line from client.js {line:?}: {e}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        NodeClient {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until `pred` holds for one of them (earlier ones included).
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) {
        if self.seen.iter().any(&pred) {
            return;
        }
        let deadline = Instant::now() + STEP;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}; saw {:#?}", self.seen))
                .unwrap_or_else(|| panic!("client.js exited before {what}; saw {:#?}", self.seen));
            let hit = pred(&line);
            self.seen.push(line);
            if hit {
                return;
            }
        }
    }

    /// The (event, session_id) pairs `client` received so far.
    fn events_of(&self, client: &str) -> Vec<(String, String)> {
        self.seen
            .iter()
            .filter(|l| l["client"] == client && l.get("data").is_some())
            .map(|l| {
                (
                    l["event"].as_str().unwrap_or_default().to_owned(),
                    l["data"]["session_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for NodeClient {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn event(client: &str, name: &str, session: &str) -> impl Fn(&Value) -> bool {
    let (client, name, session) = (client.to_owned(), name.to_owned(), session.to_owned());
    move |l| l["client"] == client && l["event"] == name && l["data"]["session_id"] == session
}

/// Chromium processes whose profile is under `sessions` (`--user-data-dir=<sessions>/…`).
fn chromium_under(sessions: &Path) -> Vec<(u32, String)> {
    let prefix = format!("--user-data-dir={}", sessions.display());
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a.starts_with(&prefix)) {
            found.push((pid, args.join(" ")));
        }
    }
    found
}

/// Panics unless a Chromium runs on a profile under `sessions` (so that the checks that
/// none is left are not vacuous).
fn assert_chromium_running(sessions: &Path, when: &str) {
    assert!(
        !chromium_under(sessions).is_empty(),
        "no Chromium with --user-data-dir under {} {when}",
        sessions.display()
    );
}

/// Waits (at most `within`) until no Chromium uses a profile under `sessions`.
async fn assert_no_chromium(sessions: &Path, within: Duration, when: &str) {
    eventually(&format!("no Chromium {when}"), within, || async {
        let left = chromium_under(sessions);
        if left.is_empty() { Ok(()) } else { Err(left) }
    })
    .await
}

async fn start_emulator() -> RunningEmulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the emulator on loopback");
    Emulator::new(EmulatorConfig::fast())
        .serve_tls(listener)
        .await
        .expect("start the emulator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_journey_tenant_realtime_email_webhook_and_a_text() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let emulator = start_emulator().await;
    let emu = emulator.client();
    emu.add_account(RECIPIENT).await.expect("add the recipient");
    let (frontend, emails) = receiver("/api/send-email").await;
    let (hooks_base, hooks) = receiver("/hook").await;

    let ws = Workspace::new();
    let settings = ServerSettings::new(&ws, &emulator, Some(&frontend));
    let api = Api::new(settings.base_url());
    let mut server = Server::spawn(&ws, &settings);
    server.wait_ready(&api).await;

    // The tenant, its key and its webhook.
    use reqwest::Method;
    api.expect(
        Method::POST,
        "/api/tenants",
        ADMIN_KEY,
        Some(json!({"id": "acme", "name": "Acme"})),
        StatusCode::CREATED,
    )
    .await;
    api.expect(
        Method::POST,
        "/api/tenants",
        ADMIN_KEY,
        Some(json!({"id": "globex"})),
        StatusCode::CREATED,
    )
    .await;
    let key = api
        .expect(
            Method::POST,
            "/api/tenants/acme/keys",
            ADMIN_KEY,
            Some(json!({"label": "process test"})),
            StatusCode::CREATED,
        )
        .await["key"]
        .as_str()
        .expect("the key")
        .to_owned();
    let secret = api
        .expect(
            Method::PUT,
            "/api/tenants/acme/webhook",
            ADMIN_KEY,
            Some(json!({"url": format!("{hooks_base}/hook")})),
            StatusCode::OK,
        )
        .await["secret"]
        .as_str()
        .expect("the webhook secret")
        .to_owned();

    // The real-time clients: the tenant's and the admin's.
    let mut node = NodeClient::start(
        &settings.base_url(),
        &[
            format!("acme=auth:{key}"),
            format!("admin=auth:{ADMIN_KEY}"),
        ],
    );
    node.wait_for("acme connects", |l| {
        l["client"] == "acme" && l["event"] == "connect"
    })
    .await;
    node.wait_for("admin connects", |l| {
        l["client"] == "admin" && l["event"] == "connect"
    })
    .await;

    // Another tenant's session, made by the admin: it shows a QR the acme client must not
    // see. Its QR is published before anything of acme's session, so by the time the acme
    // client has seen acme's `ready` it would have seen this one's `qr` too.
    let other = api
        .expect(
            Method::POST,
            "/api/sessions",
            ADMIN_KEY,
            Some(json!({"id": "globex-1", "tenant": "globex"})),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(other["tenant"], "globex");
    node.wait_for("admin sees globex-1's qr", event("admin", "qr", "globex-1"))
        .await;
    api.expect(
        Method::POST,
        "/api/sessions/globex-1/stop",
        ADMIN_KEY,
        None,
        StatusCode::OK,
    )
    .await;

    // The tenant creates its session with its own key, reads the QR over REST, the phone
    // scans it.
    let created = api
        .expect(
            Method::POST,
            "/api/sessions",
            &key,
            Some(json!({"id": "s1", "owner_email": "owner@example.com"})),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(created["tenant"], "acme");
    let (status, v) = api.get("/api/sessions/globex-1", &key).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a tenant must not see another tenant's session: {v}"
    );
    api.link("s1", &key, &emu).await;
    api.wait_status("s1", &key, "ready").await;
    let linked_at = started.elapsed();

    // Real-time: qr and ready for s1, nothing of globex-1.
    node.wait_for("acme's qr for s1", event("acme", "qr", "s1"))
        .await;
    node.wait_for("acme's ready for s1", event("acme", "ready", "s1"))
        .await;
    node.wait_for("admin's ready for s1", event("admin", "ready", "s1"))
        .await;
    let acme_events = node.events_of("acme");
    assert!(
        acme_events.iter().all(|(_, s)| s == "s1"),
        "the acme client got events of a session not its own: {acme_events:?}"
    );
    let qr_line = node
        .seen
        .iter()
        .find(|l| event("acme", "qr", "s1")(l))
        .expect("seen above");
    assert!(
        qr_line["data"]["qr"]
            .as_str()
            .is_some_and(|q| q.contains(',')),
        "the qr event carries the payload: {qr_line}"
    );

    // The e-mail to the owner, through the frontend's endpoint.
    let mail = wait_received(&emails, "whatsapp_connected e-mail", |r| {
        json_of(r)["type"] == "whatsapp_connected"
    })
    .await;
    let mail = json_of(&mail);
    assert_eq!(mail["to"], "owner@example.com", "{mail}");
    assert!(mail["data"].is_object(), "{mail}");
    assert_eq!(mail["data"]["session_id"], "s1", "{mail}");

    // The signed webhook.
    let hook = wait_received(&hooks, "session.ready webhook", |r| {
        let v = json_of(r);
        v["type"] == "session.ready" && v["data"]["session_id"] == "s1"
    })
    .await;
    let header = |name: &str| {
        hook.headers
            .get(name)
            .unwrap_or_else(|| panic!("webhook without {name}: {:?}", hook.headers))
            .to_str()
            .expect("ASCII header")
            .to_owned()
    };
    verify_signature(
        &secret,
        &header("X-Webhook-Timestamp"),
        &hook.body,
        &header("X-Webhook-Signature"),
        chrono::Utc::now(),
        Duration::from_secs(300),
    )
    .expect("the webhook signature verifies with the tenant's secret");
    assert!(
        verify_signature(
            "not-the-secret-0123456789",
            &header("X-Webhook-Timestamp"),
            &hook.body,
            &header("X-Webhook-Signature"),
            chrono::Utc::now(),
            Duration::from_secs(300),
        )
        .is_err(),
        "a wrong secret must not verify"
    );
    let body = json_of(&hook);
    assert_eq!(body["tenant"], "acme", "{body}");
    assert_eq!(
        header("X-Webhook-Id"),
        body["id"].as_str().unwrap_or_default()
    );
    assert!(
        hooks
            .lock()
            .unwrap()
            .iter()
            .all(|r| json_of(r)["data"]["session_id"] != "globex-1"),
        "acme's webhook got another tenant's events"
    );

    // A text, delivered at the emulator.
    let text = "hello from the process test";
    let (status, accepted) = api
        .post(
            "/api/sessions/s1/messages",
            &key,
            json!({"to": RECIPIENT, "text": text}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["message_id"]
        .as_str()
        .expect("message_id")
        .to_owned();
    let sent = api.wait_message("s1", &id, &key, "sent").await;
    assert!(sent["whatsapp_id"].is_string(), "{sent}");
    let delivered: Vec<_> = emu
        .messages()
        .await
        .expect("emulator messages")
        .into_iter()
        .filter(|m| m.body == text)
        .collect();
    assert_eq!(delivered.len(), 1, "{delivered:#?}");
    assert_eq!(delivered[0].from, PHONE);
    assert_eq!(delivered[0].to, RECIPIENT);

    drop(node);
    assert_chromium_running(&ws.sessions_path(), "before SIGTERM");
    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM: the server exited with {status}");
    assert_no_chromium(&ws.sessions_path(), Duration::from_secs(5), "after SIGTERM").await;
    eprintln!(
        "full journey: linked after {linked_at:?}, done in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_with_a_text_queued_then_restart_sends_it_once_without_a_qr() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let emulator = start_emulator().await;
    let emu = emulator.client();
    emu.add_account(RECIPIENT).await.expect("add the recipient");

    let ws = Workspace::new();
    let settings = ServerSettings::new(&ws, &emulator, None);
    let api = Api::new(settings.base_url());
    let mut server = Server::spawn(&ws, &settings);
    server.wait_ready(&api).await;
    // The binary re-executed itself (same PID) to run with two malloc arenas.
    let environ = std::fs::read(format!("/proc/{}/environ", server.pid())).unwrap();
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == b"MALLOC_ARENA_MAX=2"),
        "the server runs without MALLOC_ARENA_MAX=2"
    );

    use reqwest::Method;
    api.expect(
        Method::POST,
        "/api/sessions",
        ADMIN_KEY,
        Some(json!({"id": "crash", "owner_email": "owner@example.com"})),
        StatusCode::CREATED,
    )
    .await;
    let device = api.link("crash", ADMIN_KEY, &emu).await;
    api.wait_status("crash", ADMIN_KEY, "ready").await;
    let before = emu.device(&device).await.expect("the device");
    assert!(before.linked, "{before:?}");

    // The phone's connection drops; a text is queued meanwhile and cannot go out.
    emu.drop_device(&device, Duration::from_secs(20))
        .await
        .expect("drop the device");
    eventually(
        "the server to notice the dropped connection",
        STEP,
        || async { api.status("crash", ADMIN_KEY).await != "ready" },
    )
    .await;
    let text = "queued before the crash";
    let request = json!({"to": RECIPIENT, "text": text, "idempotency_key": "crash-1"});
    let (status, accepted) = api
        .post("/api/sessions/crash/messages", ADMIN_KEY, request.clone())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["message_id"]
        .as_str()
        .expect("message_id")
        .to_owned();
    let (_, queued) = api
        .get(&format!("/api/sessions/crash/messages/{id}"), ADMIN_KEY)
        .await;
    assert_ne!(
        queued["status"], "sent",
        "sent while disconnected: {queued}"
    );

    // kill -9: no graceful anything. The browsers must not outlive it.
    assert_chromium_running(&ws.sessions_path(), "before kill -9");
    let server_pid = server.pid();
    server.kill9().await;
    let killed_at = Instant::now();
    assert_no_chromium(
        &ws.sessions_path(),
        Duration::from_secs(10),
        "after kill -9",
    )
    .await;
    let orphans_gone_after = killed_at.elapsed();
    assert!(
        emu.messages()
            .await
            .expect("emulator messages")
            .iter()
            .all(|m| m.body != text),
        "the text went out before the crash, so the crash proves nothing"
    );

    // Restart on the same data: the session comes back without a QR and sends the text.
    let mut server = Server::spawn(&ws, &settings);
    assert_ne!(server.pid(), server_pid);
    server.wait_ready(&api).await;
    let restarted_at = Instant::now();
    // The client retries the same request (it never saw the answer, say): nothing new.
    let (status, again) = api
        .post("/api/sessions/crash/messages", ADMIN_KEY, request)
        .await;
    assert!(status.is_success(), "{status} {again}");
    assert_eq!(again["message_id"], id.as_str(), "{again}");
    assert_eq!(again["duplicate"], true, "{again}");

    let statuses = Mutex::new(Vec::<String>::new());
    eventually(
        "ready again after the restart",
        Duration::from_secs(90),
        || async {
            let s = api.status("crash", ADMIN_KEY).await;
            {
                let mut statuses = statuses.lock().unwrap();
                if statuses.last() != Some(&s) {
                    statuses.push(s.clone());
                }
            }
            let (qr_status, qr) = api.get("/api/sessions/crash/qr", ADMIN_KEY).await;
            let statuses = statuses.lock().unwrap();
            assert_ne!(
                qr_status,
                StatusCode::OK,
                "the restarted session asks for a QR again: {qr}; statuses {statuses:?}"
            );
            if s == "ready" {
                Ok(())
            } else {
                Err(format!("statuses {statuses:?}"))
            }
        },
    )
    .await;
    let statuses = statuses.into_inner().unwrap();
    assert!(
        !statuses.iter().any(|s| s == "qr"),
        "statuses after the restart: {statuses:?}"
    );
    let ready_after = restarted_at.elapsed();
    let sent = api.wait_message("crash", &id, ADMIN_KEY, "sent").await;
    assert!(sent["whatsapp_id"].is_string(), "{sent}");

    let devices = emu.devices().await.expect("emulator devices");
    let linked: Vec<_> = devices.iter().filter(|d| d.linked).collect();
    assert_eq!(linked.len(), 1, "{devices:#?}");
    assert_eq!(
        linked[0].id, device,
        "a new device was linked: {devices:#?}"
    );
    assert_eq!(
        linked[0].refs_issued, 0,
        "the reconnected page was given QR refs: {:#?}",
        linked[0]
    );
    assert!(
        linked[0].connections > before.connections,
        "{:#?}",
        linked[0]
    );

    let delivered: Vec<_> = emu
        .messages()
        .await
        .expect("emulator messages")
        .into_iter()
        .filter(|m| m.body == text)
        .collect();
    assert_eq!(delivered.len(), 1, "exactly once: {delivered:#?}");
    assert_eq!(delivered[0].to, RECIPIENT);

    // SIGTERM: exit 0 within 30 s, browsers closed.
    assert_chromium_running(&ws.sessions_path(), "before SIGTERM");
    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM: the server exited with {status}");
    assert_no_chromium(&ws.sessions_path(), Duration::from_secs(5), "after SIGTERM").await;
    let delivered = emu
        .messages()
        .await
        .expect("emulator messages")
        .into_iter()
        .filter(|m| m.body == text)
        .count();
    assert_eq!(delivered, 1, "exactly once, still");
    eprintln!(
        "crash safety: orphans gone {orphans_gone_after:?} after kill -9, ready {ready_after:?} \
         after the restart, done in {:?}",
        started.elapsed()
    );
}
