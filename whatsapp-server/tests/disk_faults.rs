//! The API on a full or read-only data disk: a real in-process server ([`App::start`]) with
//! [`FakeBrowser`] and its SQLite database on a small tmpfs the test mounts itself
//! ([`SmallFs`]), called over HTTP on 127.0.0.1.
//!
//! - A full disk: every write route answers 507 `insufficient_storage` (never a 2xx for
//!   something that was not committed), `/readyz` says so, and once space is freed the server
//!   recovers by itself and new ids never repeat one returned earlier.
//! - A read-only disk: `/readyz` is 503, writes answer 503 `read_only`; after `remount,rw`
//!   writes succeed again and `/readyz` is 200, without a restart.
//!
//! Mounting needs root; without it these tests fail (they never skip).

#[path = "common/inproc.rs"]
mod inproc;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use whatsapp_core::testing::{FakeBrowser, eventually};
use whatsapp_core::{Clock, PhoneNumber, SessionId, SystemClock};
use whatsapp_server::app::RunningApp;
use whatsapp_storage::backup::leveldb::write_fake_db;
use whatsapp_storage::store::{NewOutboxItem, OutboxKind};
use whatsapp_tests::smallfs::SmallFs;

const ADMIN: &str = "test-admin-key-0123456789abcdef";

/// How long an asynchronous outcome may take.
const DEADLINE: Duration = Duration::from_secs(15);

struct Server {
    app: RunningApp,
    browser: FakeBrowser,
    base: String,
    http: reqwest::Client,
    sessions_path: PathBuf,
    _home: inproc::Home,
}

struct Answer {
    status: StatusCode,
    text: String,
    json: Value,
}

impl Answer {
    /// Asserts an error answer with `status` and `code`; returns its message.
    #[track_caller]
    fn error(&self, what: &str, status: u16, code: &str) -> String {
        assert_eq!(
            (self.status.as_u16(), self.json["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: expected {status} {code}, got {}: {}",
            self.status,
            self.text
        );
        self.json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    #[track_caller]
    fn ok(&self, what: &str, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{what}: expected {status}, got {}: {}",
            self.status,
            self.text
        );
        &self.json
    }
}

impl Server {
    /// A server whose SQLite database lives in `db_dir`; everything else in a temporary
    /// directory on the ordinary disk.
    async fn start(db_dir: &Path) -> Server {
        let mut home = inproc::Home::new();
        home.database_url = format!("sqlite://{}", db_dir.join("db.sqlite").display());
        let browser = FakeBrowser::new(23);
        let (app, base) = inproc::start_app(
            home.config(ADMIN, &[]),
            Arc::new(browser.clone()),
            Arc::new(SystemClock),
        )
        .await;
        Server {
            app,
            browser,
            base,
            http: inproc::http_client(),
            sessions_path: home.sessions.clone(),
            _home: home,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN);
        if let Some(body) = body {
            r = r.json(&body);
        }
        let resp = r.send().await.expect("the server answers");
        let status = resp.status();
        let text = resp.text().await.expect("a body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, text, json }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Polls until `done` holds for `GET path`'s answer (any status); panics naming `what`
    /// and the last answer after [`DEADLINE`].
    async fn poll(&self, path: &str, what: &str, done: impl Fn(&Answer) -> bool) -> Answer {
        eventually(what, DEADLINE, || async {
            let a = self.get(path).await;
            if done(&a) {
                Ok(a)
            } else {
                Err(format!("{}: {}", a.status, a.text))
            }
        })
        .await
    }

    async fn wait_status(&self, id: &str, status: &str) {
        self.poll(
            &format!("/api/sessions/{id}"),
            &format!("session {id} {status}"),
            |a| a.status == StatusCode::OK && a.json["status"] == status,
        )
        .await;
    }

    /// Creates session `id` (owner e-mail set, started), links it and waits for `ready`.
    async fn linked_session(&self, id: &str, phone: &str) {
        self.post(
            "/api/sessions",
            json!({ "id": id, "owner_email": "owner@example.com" }),
        )
        .await
        .ok("create session", 201);
        self.wait_status(id, "qr").await;
        let instance = self.instance(id).await;
        self.browser
            .link(&instance, &PhoneNumber::new(phone).unwrap());
        self.wait_status(id, "ready").await;
    }

    /// The instance id of session `id` (what profiles and the browser are keyed by).
    async fn instance(&self, id: &str) -> SessionId {
        let a = self.get(&format!("/api/sessions/{id}")).await;
        SessionId::new(a.json["instance_id"].as_str().expect("instance_id")).unwrap()
    }

    /// Writes the LevelDBs a backup needs into the profile of `id` (FakeBrowser writes
    /// only a marker file).
    async fn fake_profile(&self, id: &str) {
        let profile = self.sessions_path.join(self.instance(id).await.as_str());
        write_fake_db(
            &profile.join("Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb"),
            &[(5, b"keys".repeat(500))],
            b"idb-log",
        )
        .unwrap();
        write_fake_db(
            &profile.join("Default/Local Storage/leveldb"),
            &[(3, b"ls".repeat(100))],
            b"ls-log",
        )
        .unwrap();
    }

    /// Makes sure not even the smallest commit fits. A failed commit of several pages
    /// leaves the WAL file longer than its last commit, and a later smaller commit fits in
    /// that room (and is durable: a 2xx for it is right); one-row probe writes use it up
    /// until one fails, so that every route meets a really full disk.
    async fn exhaust(&self, fs: &SmallFs) {
        let probe = self.app.state().stores.probe.clone();
        for _ in 0..1000 {
            fs.fill();
            match probe.probe_write(SystemClock.now()).await {
                Ok(()) => continue,
                Err(whatsapp_core::Error::StorageFull { .. }) => return,
                Err(e) => panic!("the probe write failed otherwise than with a full disk: {e}"),
            }
        }
        panic!("1000 probe writes still fit on the \"full\" disk");
    }

    async fn send_text(&self, session: &str, text: &str) -> Answer {
        self.post(
            &format!("/api/sessions/{session}/messages"),
            json!({ "to": "15550001111", "text": text }),
        )
        .await
    }
}

fn id_of(v: &Value, field: &str) -> i64 {
    match &v[field] {
        Value::String(s) => s.parse().expect("a numeric id"),
        Value::Number(n) => n.as_i64().expect("an integer id"),
        other => panic!("no {field} in {other}"),
    }
}

/// Every write route of the API, on a prepared server: `(what, method, path, body)`.
/// `POST …/pairing-code` is not here: it asks the browser for a code and stores nothing.
fn write_routes(
    key_id: &str,
    dead_item: i64,
    backup_id: &str,
) -> Vec<(String, Method, String, Option<Value>)> {
    let text = json!({ "to": "15550001111", "text": "while full" });
    vec![
        (
            "create session".into(),
            Method::POST,
            "/api/sessions".into(),
            Some(json!({ "id": "gamma", "start": false })),
        ),
        (
            "send message 1".into(),
            Method::POST,
            "/api/sessions/alpha/messages".into(),
            Some(text.clone()),
        ),
        (
            "send message 2".into(),
            Method::POST,
            "/api/sessions/alpha/messages".into(),
            Some(text.clone()),
        ),
        (
            "send message 3".into(),
            Method::POST,
            "/api/sessions/alpha/messages".into(),
            Some(text),
        ),
        (
            "fallback e-mail".into(),
            Method::POST,
            "/api/sessions/alpha/fallback".into(),
            Some(json!({ "reason": "needs a human" })),
        ),
        (
            "create tenant".into(),
            Method::POST,
            "/api/tenants".into(),
            Some(json!({ "id": "newco" })),
        ),
        (
            "create key".into(),
            Method::POST,
            "/api/tenants/acme/keys".into(),
            Some(json!({ "label": "while full" })),
        ),
        (
            "revoke key".into(),
            Method::DELETE,
            format!("/api/tenants/acme/keys/{key_id}"),
            None,
        ),
        (
            "set webhook".into(),
            Method::PUT,
            "/api/tenants/acme/webhook".into(),
            Some(
                json!({ "url": "https://hooks.example.com/wa", "secret": "0123456789abcdef0123" }),
            ),
        ),
        (
            "clear webhook".into(),
            Method::DELETE,
            "/api/tenants/acme/webhook".into(),
            None,
        ),
        (
            "delete tenant".into(),
            Method::DELETE,
            "/api/tenants/acme".into(),
            None,
        ),
        (
            "replay outbox item".into(),
            Method::POST,
            format!("/api/outbox/{dead_item}/replay"),
            None,
        ),
        (
            "start session".into(),
            Method::POST,
            "/api/sessions/beta/start".into(),
            None,
        ),
        (
            "stop session".into(),
            Method::POST,
            "/api/sessions/alpha/stop".into(),
            None,
        ),
        (
            "restart session".into(),
            Method::POST,
            "/api/sessions/alpha/restart".into(),
            None,
        ),
        (
            "logout session".into(),
            Method::POST,
            "/api/sessions/alpha/logout".into(),
            None,
        ),
        (
            "backup now".into(),
            Method::POST,
            "/api/sessions/alpha/backups".into(),
            None,
        ),
        (
            "restore".into(),
            Method::POST,
            "/api/sessions/alpha/restore".into(),
            Some(json!({ "backup_id": backup_id })),
        ),
        (
            "delete session".into(),
            Method::DELETE,
            "/api/sessions/beta".into(),
            None,
        ),
    ]
}

/// What the write routes need: a linked session `alpha` with an owner e-mail, a backup and
/// two sent texts; a stopped session `beta`; tenant `acme` with a key and a webhook; a dead
/// outbox item.
/// Returns (key id, dead outbox item, backup id, ids handed out so far).
async fn prepare(s: &Server) -> (String, i64, String, BTreeSet<i64>, BTreeSet<i64>) {
    s.linked_session("alpha", "15557770000").await;
    s.post("/api/sessions", json!({ "id": "beta", "start": false }))
        .await
        .ok("create beta", 201);
    s.post("/api/tenants", json!({ "id": "acme", "name": "Acme" }))
        .await
        .ok("create tenant", 201);
    let key = s
        .post("/api/tenants/acme/keys", json!({ "label": "ops" }))
        .await;
    let key_id = key.ok("create key", 201)["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A webhook to clear (clearing none would change no byte, and SQLite then rightly
    // commits nothing without touching the disk).
    s.call(
        Method::PUT,
        "/api/tenants/acme/webhook",
        Some(json!({ "url": "https://hooks.example.com/first", "secret": "0123456789abcdef0123" })),
    )
    .await
    .ok("set webhook", 200);
    s.fake_profile("alpha").await;
    let backup = s.post("/api/sessions/alpha/backups", json!(null)).await;
    let backup_id = backup.ok("backup", 201)["backup_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut message_ids = BTreeSet::new();
    for text in ["one", "two"] {
        let a = s.send_text("alpha", text).await;
        message_ids.insert(id_of(a.ok("send", 202), "message_id"));
    }
    let mut outbox_ids = BTreeSet::new();
    let f = s.post("/api/sessions/alpha/fallback", json!({})).await;
    outbox_ids.insert(id_of(f.ok("fallback", 202), "outbox_id"));
    // A dead letter due tomorrow (the worker leaves it alone), for the replay route.
    let store = s.app.state().stores.outbox.clone();
    let tomorrow = SystemClock.now() + chrono::TimeDelta::days(1);
    let item = NewOutboxItem {
        kind: OutboxKind::Email,
        payload: json!({ "type": "fallback_notification", "to": "owner@example.com", "data": {} }),
        dedupe_key: None,
    };
    let dead = store.enqueue(&item, tomorrow).await.unwrap();
    store
        .mark_failed(dead.id, "refused: 400", None)
        .await
        .unwrap();
    outbox_ids.insert(dead.id);
    (key_id, dead.id, backup_id, message_ids, outbox_ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_every_write_with_507_and_recovers_without_reusing_ids() {
    let fs = SmallFs::mount(4096);
    let s = Server::start(fs.path()).await;
    let (key_id, dead, backup_id, mut message_ids, mut outbox_ids) = prepare(&s).await;

    let filled = fs.fill();
    assert!(filled > 0, "the filler took the free space");
    // Every route is called, then every wrong answer is reported at once.
    let mut wrong = Vec::new();
    for (what, method, path, body) in write_routes(&key_id, dead, &backup_id) {
        s.exhaust(&fs).await;
        let a = s.call(method, &path, body).await;
        let message = a.json["error"]["message"].as_str().unwrap_or_default();
        if a.status.as_u16() != 507
            || a.json["error"]["code"] != "insufficient_storage"
            || !message.contains("full")
        {
            wrong.push(format!("{what}: {} {}", a.status, a.text));
        }
    }
    assert!(
        wrong.is_empty(),
        "on a full disk every write must answer 507 insufficient_storage naming the cause:\n{}",
        wrong.join("\n")
    );
    let ready = s.get("/readyz").await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text
    );
    assert_eq!(ready.json["database"], "full", "{}", ready.text);

    // Nothing refused was stored.
    s.get("/api/sessions/gamma")
        .await
        .error("gamma", 404, "not_found");
    s.get("/api/tenants/newco")
        .await
        .error("newco", 404, "not_found");
    let keys = s.get("/api/tenants/acme/keys").await;
    assert_eq!(
        keys.ok("keys", 200).as_array().unwrap().len(),
        1,
        "{}",
        keys.text
    );

    // Space is back: the very next writes land, with ids never handed out before.
    fs.free();
    let a = s.send_text("alpha", "after").await;
    let m = id_of(a.ok("send after freeing", 202), "message_id");
    assert!(
        m > *message_ids.last().unwrap(),
        "message id {m} repeats or precedes one returned earlier ({message_ids:?})"
    );
    message_ids.insert(m);
    let f = s.post("/api/sessions/alpha/fallback", json!({})).await;
    let o = id_of(f.ok("fallback after freeing", 202), "outbox_id");
    assert!(
        o > *outbox_ids.last().unwrap(),
        "outbox id {o} reused ({outbox_ids:?})"
    );
    outbox_ids.insert(o);
    s.post("/api/tenants", json!({ "id": "newco" }))
        .await
        .ok("create tenant after freeing", 201);
    s.poll("/readyz", "ready again", |a| a.status == StatusCode::OK)
        .await;

    // Deleting a session deletes its messages; their ids still never come back.
    let gone = s.call(Method::DELETE, "/api/sessions/alpha", None).await;
    gone.ok("delete alpha", 204);
    s.post("/api/sessions", json!({ "id": "delta", "start": false }))
        .await
        .ok("create delta", 201);
    let a = s.send_text("delta", "fresh").await;
    let m = id_of(a.ok("send to delta", 202), "message_id");
    assert!(
        m > *message_ids.last().unwrap(),
        "message id {m} reuses an id of a deleted message ({message_ids:?})"
    );

    s.app.shutdown().await;
    drop(fs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_disk_is_not_ready_refuses_writes_and_recovers_after_remount_rw() {
    let fs = SmallFs::mount(8192);
    // The database exists, with the WAL and wal-index files a running server keeps, before
    // its disk turns read-only. The kernel refuses `remount,ro` while a file on the disk is
    // open for writing, so the files are copied from an open database and the server starts
    // on the read-only disk: every connection its pool opens is then read-only — what used
    // to stay broken until a restart.
    let elsewhere = tempfile::tempdir().unwrap();
    let store =
        whatsapp_storage::store::SqliteSessionStore::open(elsewhere.path().join("db.sqlite"))
            .await
            .expect("create the database");
    for name in ["db.sqlite", "db.sqlite-wal", "db.sqlite-shm"] {
        std::fs::copy(elsewhere.path().join(name), fs.path().join(name))
            .unwrap_or_else(|e| panic!("copy {name}: {e}"));
    }
    store.close().await;
    fs.remount_ro()
        .expect("remount the database's disk read-only (nothing has a file on it open)");
    let s = Server::start(fs.path()).await;

    let ready = s.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.json["database"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("read_only")),
        "readyz on a read-only disk: {}",
        ready.text
    );
    let mut wrong = Vec::new();
    for (what, path, body) in [
        ("create tenant", "/api/tenants", json!({ "id": "acme" })),
        (
            "create session",
            "/api/sessions",
            json!({ "id": "ro", "start": false }),
        ),
    ] {
        let a = s.post(path, body).await;
        let message = a.json["error"]["message"].as_str().unwrap_or_default();
        if a.status != StatusCode::SERVICE_UNAVAILABLE
            || a.json["error"]["code"] != "read_only"
            || !message.contains("read-only")
        {
            wrong.push(format!("{what}: {} {}", a.status, a.text));
        }
    }
    assert!(
        wrong.is_empty(),
        "on a read-only disk writes must answer 503 read_only naming the cause:\n{}",
        wrong.join("\n")
    );

    // Writable again: the same process takes writes (a read-only connection opened in
    // between may refuse one more, and is replaced then).
    fs.remount_rw();
    eventually("writes after remount,rw", DEADLINE, || async {
        let a = s.post("/api/tenants", json!({ "id": "acme" })).await;
        if a.status == StatusCode::CREATED {
            return Ok(());
        }
        a.error("create tenant after remount,rw", 503, "read_only");
        Err(format!(
            "still read-only: {} ({:?})",
            a.text,
            s.app.state().stores.probe
        ))
    })
    .await;
    s.post("/api/sessions", json!({ "id": "rw", "start": false }))
        .await
        .ok("create session after remount,rw", 201);
    let a = s.send_text("rw", "writable again").await;
    a.ok("send after remount,rw", 202);
    s.poll("/readyz", "ready after remount,rw", |a| {
        a.status == StatusCode::OK
    })
    .await;

    s.app.shutdown().await;
    drop(fs);
}
