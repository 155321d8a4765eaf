//! The REST API, black box: a real in-process server ([`App::start`]) on a temporary SQLite
//! database, local backups and [`FakeBrowser`] as the driver, called over HTTP on 127.0.0.1
//! with reqwest. Every test starts its own server.
//!
//! Time is real: outcomes that the engine or the message worker reach asynchronously (status
//! `ready`, a message `sent`) are polled for with a deadline.

#[path = "common/inproc.rs"]
mod inproc;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use whatsapp_core::testing::{FakeBrowser, LOGIN_MARKER, eventually};
use whatsapp_core::{Clock, PhoneNumber, SessionId, SystemClock};
use whatsapp_server::app::RunningApp;
use whatsapp_storage::backup::leveldb::write_fake_db;
use whatsapp_storage::store::{NewOutboxItem, OutboxKind};

/// The admin key every test server is configured with.
const ADMIN: &str = "test-admin-key-0123456789abcdef";

/// How long an asynchronous outcome may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// A running server and what the test needs around it.
struct Server {
    app: RunningApp,
    browser: FakeBrowser,
    base: String,
    http: reqwest::Client,
    sessions_path: PathBuf,
    _home: inproc::Home,
}

/// An HTTP answer: status, headers and body (JSON when it parses, `Null` otherwise).
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
    json: Value,
}

impl Answer {
    /// Asserts the error body `{"error": {"code", "message"}}` with `status` and `code`;
    /// returns the message.
    #[track_caller]
    fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status} {code}, got {}: {}",
            self.status,
            self.text
        );
        assert_eq!(
            self.json["error"]["code"], code,
            "error code in {}",
            self.text
        );
        let message = self.json["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {}", self.text))
            .to_owned();
        assert!(!message.is_empty());
        message
    }

    /// Asserts `status` and returns the JSON body.
    #[track_caller]
    fn ok(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status}, got {}: {}",
            self.status,
            self.text
        );
        &self.json
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_owned())
    }
}

/// How a request presents its key.
#[derive(Clone, Copy)]
enum Key<'a> {
    None,
    Bearer(&'a str),
    Header(&'a str),
}

const AS_ADMIN: Key<'static> = Key::Bearer(ADMIN);

impl Server {
    /// A server with the standard settings and `extra` flags.
    async fn start_with(extra: &[&str]) -> Server {
        let home = inproc::Home::new();
        let browser = FakeBrowser::new(11);
        let (app, base) = inproc::start_app(
            home.config(ADMIN, extra),
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

    async fn start() -> Server {
        Server::start_with(&[]).await
    }

    async fn shutdown(self) {
        self.app.shutdown().await;
    }

    fn request(&self, method: Method, path: &str, key: Key<'_>) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match key {
            Key::None => r,
            Key::Bearer(k) => r.bearer_auth(k),
            Key::Header(k) => r.header("x-api-key", k),
        }
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> Answer {
        let resp = r.send().await.expect("the server answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("a body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    async fn get(&self, path: &str, key: Key<'_>) -> Answer {
        self.send(self.request(Method::GET, path, key)).await
    }

    async fn delete(&self, path: &str, key: Key<'_>) -> Answer {
        self.send(self.request(Method::DELETE, path, key)).await
    }

    async fn post(&self, path: &str, key: Key<'_>, body: Value) -> Answer {
        self.send(self.request(Method::POST, path, key).json(&body))
            .await
    }

    /// POST without a body.
    async fn post_empty(&self, path: &str, key: Key<'_>) -> Answer {
        self.send(self.request(Method::POST, path, key)).await
    }

    /// Polls `GET path` until `done` holds for the JSON answer; panics naming `what` and the
    /// last answer after [`DEADLINE`].
    async fn poll(
        &self,
        path: &str,
        key: Key<'_>,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(what, DEADLINE, || async {
            let a = self.get(path, key).await;
            if a.status == StatusCode::OK && done(&a.json) {
                Ok(a.json)
            } else {
                Err(format!("{}: {}", a.status, a.text))
            }
        })
        .await
    }

    /// Waits until session `id` has `status`.
    async fn wait_status(&self, id: &str, key: Key<'_>, status: &str) -> Value {
        self.poll(
            &format!("/api/sessions/{id}"),
            key,
            &format!("session {id} status {status}"),
            |v| v["status"] == status,
        )
        .await
    }

    /// The instance id of the session the admin calls `id` (what the browser, the profile
    /// and the backups are keyed by).
    async fn instance(&self, id: &str) -> SessionId {
        let answer = self.get(&format!("/api/sessions/{id}"), AS_ADMIN).await;
        let v = answer.ok(200);
        sid(v["instance_id"].as_str().expect("instance_id"))
    }

    /// Creates (as the admin) and starts session `id`, waits for its QR, links it to `phone`
    /// and waits until it is `ready`.
    async fn linked_session(&self, id: &str, phone: &str) -> Value {
        self.post("/api/sessions", AS_ADMIN, json!({ "id": id }))
            .await
            .ok(201);
        self.wait_status(id, AS_ADMIN, "qr").await;
        let instance = self.instance(id).await;
        self.browser
            .link(&instance, &PhoneNumber::new(phone).unwrap());
        self.wait_status(id, AS_ADMIN, "ready").await
    }

    /// Creates tenant `tenant` and returns a new key of it.
    async fn tenant_key(&self, tenant: &str) -> (String, String) {
        self.post(
            "/api/tenants",
            AS_ADMIN,
            json!({ "id": tenant, "name": tenant }),
        )
        .await
        .ok(201);
        let k = self
            .post(
                &format!("/api/tenants/{tenant}/keys"),
                AS_ADMIN,
                json!({ "label": "tests" }),
            )
            .await;
        let v = k.ok(201);
        assert_eq!(v["tenant"], tenant);
        let key = v["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("wk_"), "{key}");
        (key, v["key_id"].as_str().unwrap().to_owned())
    }
}

fn sid(id: &str) -> SessionId {
    SessionId::new(id).unwrap()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Authentication

#[tokio::test]
async fn auth_admin_key_tenant_keys_and_revocation() {
    let s = Server::start().await;

    let a = s.get("/api/sessions", Key::None).await;
    let m = a.error(401, "unauthorized");
    assert!(m.contains("X-Api-Key"), "{m}");
    s.get("/api/sessions", Key::Bearer("wrong"))
        .await
        .error(401, "unauthorized");
    s.get("/api/sessions", Key::Header("wrong"))
        .await
        .error(401, "unauthorized");
    s.get("/api/sessions", Key::Bearer("wk_unknownunknownunknown"))
        .await
        .error(401, "unauthorized");

    // The admin key, both ways.
    assert_eq!(s.get("/api/sessions", AS_ADMIN).await.ok(200), &json!([]));
    assert_eq!(
        s.get("/api/sessions", Key::Header(ADMIN)).await.ok(200),
        &json!([])
    );

    // A tenant key works, both ways, until revoked.
    let (key, key_id) = s.tenant_key("acme").await;
    let created = s
        .post(
            "/api/sessions",
            Key::Bearer(&key),
            json!({ "id": "acme-one", "start": false }),
        )
        .await;
    assert_eq!(created.ok(201)["tenant"], "acme");
    assert_eq!(
        ids(s.get("/api/sessions", Key::Header(&key)).await.ok(200)),
        ["acme-one"]
    );
    let keys = s.get("/api/tenants/acme/keys", Key::Bearer(&key)).await;
    assert_eq!(keys.ok(200)[0]["key_id"], key_id.as_str());
    assert!(!keys.text.contains(&key), "the key itself is never listed");

    s.delete(&format!("/api/tenants/acme/keys/{key_id}"), AS_ADMIN)
        .await
        .ok(204);
    s.get("/api/sessions", Key::Bearer(&key))
        .await
        .error(401, "unauthorized");
    s.get("/api/sessions", Key::Header(&key))
        .await
        .error(401, "unauthorized");
    // Revoking twice: the key is gone.
    s.delete(&format!("/api/tenants/acme/keys/{key_id}"), AS_ADMIN)
        .await
        .error(404, "not_found");
    s.shutdown().await;
}

#[derive(serde::Serialize)]
struct Claims {
    sub: String,
    exp: i64,
}

fn jwt(secret: &str, sub: &str, exp: i64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims {
            sub: sub.to_owned(),
            exp,
        },
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn auth_supabase_jwt_gives_the_tenant_of_sub() {
    const SECRET: &str = "super-secret-jwt-signing-key-for-tests";
    let s = Server::start_with(&["--supabase-jwt-secret", SECRET]).await;
    let now = SystemClock.now().timestamp();
    let acme = jwt(SECRET, "acme", now + 3600);

    // The admin's session of another tenant.
    s.post(
        "/api/sessions",
        AS_ADMIN,
        json!({ "id": "other-one", "tenant": "other", "start": false }),
    )
    .await
    .ok(201);

    let created = s
        .post(
            "/api/sessions",
            Key::Bearer(&acme),
            json!({ "id": "acme-one", "start": false }),
        )
        .await;
    assert_eq!(created.ok(201)["tenant"], "acme");
    assert_eq!(
        ids(s.get("/api/sessions", Key::Bearer(&acme)).await.ok(200)),
        ["acme-one"]
    );
    assert_eq!(
        s.get("/api/sessions/acme-one", Key::Header(&acme))
            .await
            .ok(200)["id"],
        "acme-one"
    );
    s.get("/api/sessions/other-one", Key::Bearer(&acme))
        .await
        .error(404, "not_found");
    s.post("/api/tenants", Key::Bearer(&acme), json!({ "id": "evil" }))
        .await
        .error(403, "forbidden");

    // Expired (well past the default leeway), wrong secret, garbage.
    let expired = jwt(SECRET, "acme", now - 3600);
    s.get("/api/sessions", Key::Bearer(&expired))
        .await
        .error(401, "unauthorized");
    let forged = jwt("another-secret-entirely-0123456789", "acme", now + 3600);
    s.get("/api/sessions", Key::Bearer(&forged))
        .await
        .error(401, "unauthorized");
    s.get("/api/sessions", Key::Bearer("a.b.c"))
        .await
        .error(401, "unauthorized");
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Tenant isolation

#[tokio::test]
async fn tenants_see_only_their_own_sessions() {
    let s = Server::start().await;
    let (a, _) = s.tenant_key("tenant-a").await;
    let (b, _) = s.tenant_key("tenant-b").await;
    let (a, b) = (Key::Bearer(&a), Key::Bearer(&b));

    s.post(
        "/api/sessions",
        a,
        json!({ "id": "a-one", "owner_email": "a@example.com" }),
    )
    .await
    .ok(201);
    s.post("/api/sessions", b, json!({ "id": "b-one", "start": false }))
        .await
        .ok(201);
    s.wait_status("a-one", a, "qr").await;

    let p = "/api/sessions/a-one";
    for (method, path) in [
        (Method::GET, p.to_owned()),
        (Method::POST, format!("{p}/start")),
        (Method::POST, format!("{p}/stop")),
        (Method::POST, format!("{p}/restart")),
        (Method::POST, format!("{p}/logout")),
        (Method::GET, format!("{p}/qr")),
        (Method::GET, format!("{p}/qr?format=png")),
        (Method::GET, format!("{p}/messages/1")),
        (Method::GET, format!("{p}/numbers/15550001111")),
        (Method::GET, format!("{p}/backups")),
        (Method::POST, format!("{p}/backups")),
        (Method::POST, format!("{p}/restore")),
        (Method::POST, format!("{p}/fallback")),
        (Method::DELETE, p.to_owned()),
    ] {
        let answer = s.send(s.request(method.clone(), &path, b)).await;
        let m = answer.error(404, "not_found");
        assert!(m.contains("a-one"), "{method} {path}: {m}");
    }
    s.post(
        &format!("{p}/messages"),
        b,
        json!({ "to": "+1 555 000 1111", "text": "hi" }),
    )
    .await
    .error(404, "not_found");
    s.post(
        &format!("{p}/pairing-code"),
        b,
        json!({ "phone": "15550001111" }),
    )
    .await
    .error(404, "not_found");

    // Still there, untouched, for its owner.
    let v = s.get(p, a).await;
    assert_eq!(v.ok(200)["status"], "qr");
    assert_eq!(v.json["running"], true);

    assert_eq!(ids(s.get("/api/sessions", a).await.ok(200)), ["a-one"]);
    assert_eq!(ids(s.get("/api/sessions", b).await.ok(200)), ["b-one"]);
    let mut all = ids(s.get("/api/sessions", AS_ADMIN).await.ok(200));
    all.sort();
    assert_eq!(all, ["a-one", "b-one"]);
    s.get("/api/sessions/b-one", AS_ADMIN).await.ok(200);

    // A tenant creates only for itself (naming itself is fine).
    s.post(
        "/api/sessions",
        a,
        json!({ "id": "a-for-b", "tenant": "tenant-b", "start": false }),
    )
    .await
    .error(403, "forbidden");
    let own = s
        .post(
            "/api/sessions",
            a,
            json!({ "id": "a-two", "tenant": "tenant-a", "start": false }),
        )
        .await;
    assert_eq!(own.ok(201)["tenant"], "tenant-a");

    // Admin routes.
    s.post("/api/tenants", a, json!({ "id": "evil" }))
        .await
        .error(403, "forbidden");
    s.get("/api/tenants", a).await.error(403, "forbidden");
    s.get("/api/outbox", a).await.error(403, "forbidden");
    s.post_empty("/api/outbox/1/replay", a)
        .await
        .error(403, "forbidden");
    s.post_empty("/api/tenants/tenant-a/keys", a)
        .await
        .error(403, "forbidden");
    // Another tenant's keys are invisible.
    s.get("/api/tenants/tenant-b/keys", a)
        .await
        .error(404, "not_found");
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Session lifecycle

#[tokio::test]
async fn session_lifecycle_create_qr_link_stop_start_restart_logout_delete() {
    let s = Server::start().await;
    let created = s
        .post("/api/sessions", AS_ADMIN, json!({ "id": "life" }))
        .await;
    let v = created.ok(201);
    assert_eq!(v["id"], "life");
    assert_eq!(v["tenant"], "default");
    assert_eq!(v["running"], true);
    assert!(v["status"].is_string(), "{v}");
    s.wait_status("life", AS_ADMIN, "qr").await;

    // The QR, as JSON, PNG and SVG.
    let life = s.instance("life").await;
    let qr = s.get("/api/sessions/life/qr", AS_ADMIN).await;
    let payload = qr.ok(200)["qr"].as_str().unwrap().to_owned();
    assert_eq!(payload.split(',').count(), 5, "{payload}");
    assert_eq!(
        Some(payload.as_str()),
        s.browser.qr(&life).as_ref().map(|q| q.as_str())
    );

    let png = s
        .request(Method::GET, "/api/sessions/life/qr?format=png", AS_ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(png.status(), StatusCode::OK);
    assert_eq!(png.headers()["content-type"], "image/png");
    let bytes = png.bytes().await.unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "PNG magic bytes");

    let svg = s.get("/api/sessions/life/qr?format=svg", AS_ADMIN).await;
    svg.ok(200);
    assert_eq!(svg.header("content-type").unwrap(), "image/svg+xml");
    assert!(svg.text.contains("<svg"), "{}", svg.text);
    assert!(svg.text.contains("width=\""), "width attribute");
    assert!(svg.text.contains("height=\""), "height attribute");

    let m = s
        .get("/api/sessions/life/qr?format=gif", AS_ADMIN)
        .await
        .error(400, "invalid_query");
    assert!(m.contains("gif"), "{m}");
    s.get("/api/sessions/life/qr?size=3", AS_ADMIN)
        .await
        .error(400, "invalid_query");

    // Linking.
    s.browser
        .link(&life, &PhoneNumber::new("+1 555 123 4567").unwrap());
    // The account's number is written just after the status turns `ready` (a separate
    // update): wait for both.
    let ready = s
        .poll(
            "/api/sessions/life",
            AS_ADMIN,
            "session life ready with its number",
            |v| v["status"] == "ready" && !v["phone"].is_null(),
        )
        .await;
    assert_eq!(ready["phone"], "15551234567");
    assert_eq!(ready["wid"], "15551234567@c.us");
    assert_eq!(ready["running"], true);
    let m = s
        .get("/api/sessions/life/qr", AS_ADMIN)
        .await
        .error(409, "no_qr");
    assert!(m.contains("ready"), "{m}");

    // Stop, twice.
    let stopped = s.post_empty("/api/sessions/life/stop", AS_ADMIN).await;
    assert_eq!(stopped.ok(200)["status"], "stopped");
    assert_eq!(stopped.json["running"], false);
    s.post_empty("/api/sessions/life/stop", AS_ADMIN)
        .await
        .error(409, "wrong_state");

    // Start: the login is in the profile, no QR needed.
    let started = s.post_empty("/api/sessions/life/start", AS_ADMIN).await;
    assert_eq!(started.ok(202)["running"], true);
    s.wait_status("life", AS_ADMIN, "ready").await;
    s.post_empty("/api/sessions/life/start", AS_ADMIN)
        .await
        .error(409, "wrong_state");

    let launches = s.browser.launches(&life);
    s.post_empty("/api/sessions/life/restart", AS_ADMIN)
        .await
        .ok(202);
    eventually("restart to relaunch the browser", DEADLINE, || async {
        s.browser.launches(&life) != launches
    })
    .await;
    s.wait_status("life", AS_ADMIN, "ready").await;

    // Log out: unlinked.
    let out = s.post_empty("/api/sessions/life/logout", AS_ADMIN).await;
    assert_eq!(out.ok(200)["status"], "logged_out");
    assert_eq!(s.browser.logout_calls(&life), 1);

    // Delete: the record and the profile go.
    assert!(s.sessions_path.join(life.as_str()).is_dir());
    s.delete("/api/sessions/life", AS_ADMIN).await.ok(204);
    s.get("/api/sessions/life", AS_ADMIN)
        .await
        .error(404, "not_found");
    s.delete("/api/sessions/life", AS_ADMIN)
        .await
        .error(404, "not_found");
    assert!(
        !s.sessions_path.join(life.as_str()).exists(),
        "the profile directory is removed"
    );
    assert!(!s.browser.live(&life));
    assert_eq!(s.get("/api/sessions", AS_ADMIN).await.ok(200), &json!([]));
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Messages

#[tokio::test]
async fn messages_are_queued_sent_once_and_validated() {
    let s = Server::start().await;
    s.linked_session("sender", "+44 7700 900000").await;
    s.post(
        "/api/sessions",
        AS_ADMIN,
        json!({ "id": "other", "start": false }),
    )
    .await
    .ok(201);
    let path = "/api/sessions/sender/messages";

    // A text to a number written with + and spaces.
    let a = s
        .post(
            path,
            AS_ADMIN,
            json!({ "to": "+1 555 000 1111", "text": "hello there" }),
        )
        .await;
    let v = a.ok(202);
    assert_eq!(v["duplicate"], false);
    let id = v["message_id"].as_str().unwrap().to_owned();
    let sent = s
        .poll(&format!("{path}/{id}"), AS_ADMIN, "message sent", |m| {
            m["status"] == "sent"
        })
        .await;
    assert_eq!(sent["session_id"], "sender");
    assert_eq!(sent["to"], "15550001111@c.us");
    assert!(sent["whatsapp_id"].is_string(), "{sent}");
    let texts = s.browser.sent_by(&s.instance("sender").await);
    assert_eq!(texts.len(), 1);
    assert_eq!(texts[0].body, "hello there");
    assert_eq!(texts[0].to.to_string(), "15550001111@c.us");

    // The same idempotency key twice: one message.
    let body = json!({ "to": "15550002222", "text": "once only", "idempotency_key": "order-42" });
    let first = s.post(path, AS_ADMIN, body.clone()).await;
    let first_id = first.ok(202)["message_id"].as_str().unwrap().to_owned();
    assert_eq!(first.json["duplicate"], false);
    let second = s.post(path, AS_ADMIN, body).await;
    assert_eq!(second.ok(202)["message_id"], first_id.as_str());
    assert_eq!(second.json["duplicate"], true);
    let m = s
        .poll(
            &format!("{path}/{first_id}"),
            AS_ADMIN,
            "idempotent message sent",
            |m| m["status"] == "sent",
        )
        .await;
    assert_eq!(m["idempotency_key"], "order-42");
    let once: Vec<_> = s
        .browser
        .sent()
        .into_iter()
        .filter(|t| t.body == "once only")
        .collect();
    assert_eq!(once.len(), 1, "sent exactly once");

    // Unknown ids, another session's message.
    s.get(&format!("{path}/999999"), AS_ADMIN)
        .await
        .error(404, "not_found");
    s.get(&format!("{path}/not-a-number"), AS_ADMIN)
        .await
        .error(404, "not_found");
    s.get(&format!("/api/sessions/other/messages/{id}"), AS_ADMIN)
        .await
        .error(404, "not_found");
    s.post(
        "/api/sessions/nobody/messages",
        AS_ADMIN,
        json!({ "to": "15550001111", "text": "x" }),
    )
    .await
    .error(404, "not_found");

    // Invalid bodies.
    let m = s
        .post(path, AS_ADMIN, json!({ "to": "abc", "text": "x" }))
        .await
        .error(400, "invalid_input");
    assert!(m.contains("phone number"), "{m}");
    let m = s
        .post(path, AS_ADMIN, json!({ "to": "15550001111", "text": "" }))
        .await
        .error(400, "invalid_input");
    assert!(m.contains("text"), "{m}");
    let long = "x".repeat(65_537);
    let m = s
        .post(path, AS_ADMIN, json!({ "to": "15550001111", "text": long }))
        .await
        .error(400, "invalid_input");
    assert!(m.contains("65536"), "{m}");
    let exactly = "y".repeat(65_536);
    s.post(
        path,
        AS_ADMIN,
        json!({ "to": "15550001111", "text": exactly }),
    )
    .await
    .ok(202);
    // Over the text route's body limit (the worst-case JSON of a maximal text): 413.
    let huge = "z".repeat(whatsapp_server::api::MAX_TEXT_BODY_BYTES);
    s.post(path, AS_ADMIN, json!({ "to": "15550001111", "text": huge }))
        .await
        .error(413, "body_too_large");
    let m = s
        .post(
            path,
            AS_ADMIN,
            json!({ "to": "15550001111", "text": "x", "bogus_field": 1 }),
        )
        .await
        .error(400, "invalid_json");
    assert!(m.contains("bogus_field"), "{m}");
    let m = s
        .post(path, AS_ADMIN, json!({ "text": "x" }))
        .await
        .error(400, "invalid_json");
    assert!(m.contains("to"), "{m}");
    s.send(
        s.request(Method::POST, path, AS_ADMIN)
            .header("content-type", "text/plain")
            .body(r#"{"to":"15550001111","text":"x"}"#),
    )
    .await
    .error(415, "unsupported_media_type");
    s.send(
        s.request(Method::POST, path, AS_ADMIN)
            .header("content-type", "application/json")
            .body(r#"{"to": "15550001111", "text": "#),
    )
    .await
    .error(400, "invalid_json");
    s.shutdown().await;
}

/// A text of exactly the maximum length in 4-byte characters (emoji) is accepted whether
/// the client sends it raw or `\u`-escaped (12 bytes per emoji: the worst case); one more
/// character is refused naming the limit; a body over the limit is 413.
#[tokio::test]
async fn texts_of_the_documented_length_are_accepted_in_any_encoding() {
    const MAX: usize = 65_536;
    let s = Server::start().await;
    s.post(
        "/api/sessions",
        AS_ADMIN,
        json!({ "id": "long", "start": false }),
    )
    .await
    .ok(201);
    let path = "/api/sessions/long/messages";
    let raw = "😀".repeat(MAX);
    s.post(path, AS_ADMIN, json!({ "to": "15550001111", "text": raw }))
        .await
        .ok(202);
    let escaped = |n: usize| {
        format!(
            r#"{{"to":"15550001111","text":"{}"}}"#,
            r"\ud83d\ude00".repeat(n)
        )
    };
    let body = escaped(MAX);
    assert!(body.len() > 12 * MAX, "{}", body.len());
    let post_raw = |body: String| {
        s.request(Method::POST, path, AS_ADMIN)
            .header("content-type", "application/json")
            .body(body)
    };
    s.send(post_raw(body)).await.ok(202);
    let m = s
        .send(post_raw(escaped(MAX + 1)))
        .await
        .error(400, "invalid_input");
    assert!(m.contains("65536"), "{m}");
    let m = s
        .post(
            path,
            AS_ADMIN,
            json!({ "to": "15550001111", "text": "😀".repeat(MAX + 1) }),
        )
        .await
        .error(400, "invalid_input");
    assert!(m.contains("65536"), "{m}");
    // Over the body limit: 413, naming the limit.
    let limit = whatsapp_server::api::MAX_TEXT_BODY_BYTES;
    let mut big = r#"{"to":"15550001111","text":"x"}"#.to_owned();
    big.push_str(&" ".repeat(limit + 1 - big.len()));
    let m = s.send(post_raw(big)).await.error(413, "body_too_large");
    assert!(m.contains(&limit.to_string()), "{m}");
    // Other routes keep the small limit.
    let small = whatsapp_server::api::MAX_BODY_BYTES;
    let mut big = r#"{"id":"x"}"#.to_owned();
    big.push_str(&" ".repeat(small + 1 - big.len()));
    s.send(
        s.request(Method::POST, "/api/sessions", AS_ADMIN)
            .header("content-type", "application/json")
            .body(big),
    )
    .await
    .error(413, "body_too_large");
    s.shutdown().await;
}

/// Recipients must be WhatsApp ids: a user `<digits>@c.us` (7–15 digits, no leading 0), a
/// group `<digits>-<digits>@g.us` or `<digits>@g.us`, or a phone number.
#[tokio::test]
async fn recipients_must_be_whatsapp_ids() {
    let s = Server::start().await;
    s.post(
        "/api/sessions",
        AS_ADMIN,
        json!({ "id": "rcpt", "start": false }),
    )
    .await
    .ok(201);
    let path = "/api/sessions/rcpt/messages";
    for bad in [
        "---@c.us",
        ":@c.us",
        "@c.us",
        "123@c.us",
        "0123456789@c.us",
        "1234567890123456@c.us",
        "1555-0001111@c.us",
        "15550001111:2@c.us",
        "-@g.us",
        "123-@g.us",
        "-123@g.us",
        "1-2-3@g.us",
        "12a3@g.us",
        "15550001111@lid",
        "15550001111@example.com",
        "15550001111@",
        "a@b@c.us",
    ] {
        let m = s
            .post(path, AS_ADMIN, json!({ "to": bad, "text": "x" }))
            .await
            .error(400, "invalid_input");
        assert!(m.contains(bad), "{bad}: {m}");
    }
    for (good, wid) in [
        ("15550001111@c.us", "15550001111@c.us"),
        (" 15550001111@c.us ", "15550001111@c.us"),
        ("+1 (555) 000-1111", "15550001111@c.us"),
        ("120363012345678901@g.us", "120363012345678901@g.us"),
        ("15550001111-1600000000@g.us", "15550001111-1600000000@g.us"),
    ] {
        let id = s
            .post(path, AS_ADMIN, json!({ "to": good, "text": "x" }))
            .await
            .ok(202)["message_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let m = s.get(&format!("{path}/{id}"), AS_ADMIN).await;
        assert_eq!(m.ok(200)["to"], wid, "{good}");
    }
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Webhook registration

/// A webhook must be http(s) and, unless the operator allows it, not an internal address:
/// loopback, link-local (cloud metadata), private, unspecified, IPv4-mapped forms of those,
/// `localhost`. Each is refused with a 400 naming the problem.
#[tokio::test]
async fn webhook_registration_refuses_internal_targets() {
    let s = Server::start().await;
    s.tenant_key("acme").await;
    let put = async |url: &str| {
        s.send(
            s.request(Method::PUT, "/api/tenants/acme/webhook", AS_ADMIN)
                .json(&json!({ "url": url })),
        )
        .await
    };
    for (url, names) in [
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254",
        ),
        ("http://[::1]:8080/hook", "::1"),
        ("http://0.0.0.0:4000/hook", "0.0.0.0"),
        ("http://10.0.0.1/hook", "10.0.0.1"),
        ("http://127.0.0.1:4000/api/sessions", "127.0.0.1"),
        ("http://192.168.1.1/hook", "192.168.1.1"),
        ("http://172.16.0.1/hook", "172.16.0.1"),
        ("http://[::ffff:127.0.0.1]/hook", "127.0.0.1"),
        ("http://[fe80::1]/hook", "fe80::1"),
        ("http://[fd00::1]/hook", "fd00::1"),
        ("http://224.0.0.1/hook", "224.0.0.1"),
        ("http://255.255.255.255/hook", "255.255.255.255"),
        ("http://localhost:4000/hook", "localhost"),
    ] {
        let m = put(url).await.error(400, "invalid_input");
        assert!(
            m.contains(names) && m.contains("WEBHOOK_ALLOW_HOSTS"),
            "{url}: {m}"
        );
    }
    let m = put("ftp://hooks.example.com/in")
        .await
        .error(400, "invalid_input");
    assert!(m.contains("http"), "{m}");
    let m = put("file:///etc/passwd").await.error(400, "invalid_input");
    assert!(m.contains("http"), "{m}");
    // A public name is accepted at registration (it is checked again at each delivery).
    put("https://hooks.example.com/in").await.ok(200);
    s.shutdown().await;

    // The operator allows loopback: registration accepts it.
    let s = Server::start_with(&["--webhook-allow-hosts", "127.0.0.0/8,localhost"]).await;
    s.tenant_key("acme").await;
    for url in ["http://127.0.0.1:9/hook", "http://localhost:9/hook"] {
        s.send(
            s.request(Method::PUT, "/api/tenants/acme/webhook", AS_ADMIN)
                .json(&json!({ "url": url })),
        )
        .await
        .ok(200);
    }
    let m = s
        .send(
            s.request(Method::PUT, "/api/tenants/acme/webhook", AS_ADMIN)
                .json(&json!({ "url": "http://169.254.169.254/" })),
        )
        .await
        .error(400, "invalid_input");
    assert!(m.contains("169.254.169.254"), "{m}");
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Number checks

#[tokio::test]
async fn numbers_are_checked_through_a_connected_session_and_cached() {
    let s = Server::start().await;
    s.linked_session("checker", "15551230000").await;
    s.browser
        .add_account(&PhoneNumber::new("+49 151 2345678").unwrap());

    let path = "/api/sessions/checker/numbers/491512345678";
    let first = s.get(path, AS_ADMIN).await;
    let v = first.ok(200);
    assert_eq!(v["exists"], true);
    assert_eq!(v["cached"], false);
    assert_eq!(v["phone"], "491512345678");
    assert_eq!(v["wid"], "491512345678@c.us");
    let again = s.get(path, AS_ADMIN).await;
    assert_eq!(again.ok(200)["exists"], true);
    assert_eq!(again.json["cached"], true);
    // The same check (the database keeps microseconds).
    let at = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["checked_at"].as_str().unwrap())
            .unwrap()
            .timestamp_micros()
    };
    assert_eq!(at(&again.json), at(&first.json));

    let none = "/api/sessions/checker/numbers/15559990000";
    let v = s.get(none, AS_ADMIN).await;
    assert_eq!(v.ok(200)["exists"], false);
    assert_eq!(v.json["cached"], false);
    assert_eq!(v.json["wid"], Value::Null);
    assert_eq!(s.get(none, AS_ADMIN).await.ok(200)["cached"], true);

    let m = s
        .get("/api/sessions/checker/numbers/abc", AS_ADMIN)
        .await
        .error(400, "invalid_input");
    assert!(m.contains("phone number"), "{m}");
    s.get("/api/sessions/checker/numbers/123", AS_ADMIN)
        .await
        .error(400, "invalid_input");

    // Not connected: waiting for a scan, and not running at all.
    s.post("/api/sessions", AS_ADMIN, json!({ "id": "waiting" }))
        .await
        .ok(201);
    s.wait_status("waiting", AS_ADMIN, "qr").await;
    s.get("/api/sessions/waiting/numbers/491512345678", AS_ADMIN)
        .await
        .error(409, "wrong_state");
    s.post(
        "/api/sessions",
        AS_ADMIN,
        json!({ "id": "idle", "start": false }),
    )
    .await
    .ok(201);
    s.get("/api/sessions/idle/numbers/491512345678", AS_ADMIN)
        .await
        .error(409, "wrong_state");
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Bad session input

#[tokio::test]
async fn session_creation_rejects_bad_ids_taken_ids_and_bad_emails() {
    let s = Server::start().await;
    let m = s
        .post(
            "/api/sessions",
            AS_ADMIN,
            json!({ "id": "Bad Id!", "start": false }),
        )
        .await
        .error(400, "invalid_input");
    assert!(m.contains("session id"), "{m}");
    assert!(m.contains("a-z, 0-9"), "names the rule: {m}");
    let long = "a".repeat(65);
    s.post(
        "/api/sessions",
        AS_ADMIN,
        json!({ "id": long, "start": false }),
    )
    .await
    .error(400, "invalid_input");

    s.post(
        "/api/sessions",
        AS_ADMIN,
        json!({ "id": "taken", "start": false }),
    )
    .await
    .ok(201);
    let m = s
        .post(
            "/api/sessions",
            AS_ADMIN,
            json!({ "id": "taken", "start": false }),
        )
        .await
        .error(409, "conflict");
    assert!(m.contains("taken"), "{m}");

    let m = s
        .post(
            "/api/sessions",
            AS_ADMIN,
            json!({ "id": "mailer", "owner_email": "nope", "start": false }),
        )
        .await
        .error(400, "invalid_input");
    assert!(
        m.contains("nope") || m.contains("e-mail") || m.contains("email"),
        "{m}"
    );
    s.get("/api/sessions/mailer", AS_ADMIN)
        .await
        .error(404, "not_found");
    s.post(
        "/api/sessions",
        AS_ADMIN,
        json!({ "id": "bad-tenant", "tenant": "Not Valid", "start": false }),
    )
    .await
    .error(400, "invalid_input");
    s.get("/api/sessions/Bad%20Id!", AS_ADMIN)
        .await
        .error(400, "invalid_input");
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Backups

#[tokio::test]
async fn backups_are_taken_listed_and_restored() {
    let s = Server::start().await;
    s.linked_session("kept", "15557770000").await;
    // FakeBrowser keeps its login in a marker file; the backup wants what Chromium would
    // have written: WhatsApp's IndexedDB and the Local Storage LevelDBs.
    let kept = s.instance("kept").await;
    let profile = s.sessions_path.join(kept.as_str());
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

    let b = s.post_empty("/api/sessions/kept/backups", AS_ADMIN).await;
    let v = b.ok(201);
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["failure"], Value::Null);
    assert!(v["files"].as_u64().unwrap() >= 1, "{v}");
    let backup_id = v["backup_id"].as_str().unwrap().to_owned();

    let list = s.get("/api/sessions/kept/backups", AS_ADMIN).await;
    let list = list.ok(200).as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["backup_id"], backup_id.as_str());
    assert!(
        s.get("/api/sessions/kept", AS_ADMIN).await.ok(200)["last_backup_at"].is_string(),
        "last_backup_at is recorded"
    );

    let r = s
        .post("/api/sessions/kept/restore", AS_ADMIN, json!({}))
        .await;
    assert_eq!(r.ok(200)["backup_id"], backup_id.as_str());
    assert_eq!(r.json["restarted"], true);
    // The backup holds Chromium's databases, not FakeBrowser's login marker: the restored
    // profile has the former, the profile moved aside keeps the latter.
    assert!(!profile.join(LOGIN_MARKER).exists());
    assert!(
        s.sessions_path
            .join(format!(".{kept}.before-restore"))
            .join(LOGIN_MARKER)
            .is_file()
    );
    // It runs again on the restored profile, where the fake finds no login: the engine
    // sees the known account unpaired, i.e. logged out.
    s.poll(
        "/api/sessions/kept",
        AS_ADMIN,
        "running after restore",
        |v| v["running"] == true && v["status"] == "logged_out" && v["state"] == "UNPAIRED",
    )
    .await;
    assert!(
        profile
            .join("Default/Local Storage/leveldb/CURRENT")
            .is_file()
    );

    // That backup held no login the fake could use, so the session ended logged out: its
    // login ended after the backup was taken, and a backup from before is never restored.
    let m = s
        .post(
            "/api/sessions/kept/restore",
            AS_ADMIN,
            json!({ "backup_id": backup_id }),
        )
        .await
        .error(409, "wrong_state");
    assert!(m.contains("earlier login"), "{m}");

    s.post(
        "/api/sessions/kept/restore",
        AS_ADMIN,
        json!({ "backup_id": "no-such-backup" }),
    )
    .await
    .error(404, "not_found");
    s.post(
        "/api/sessions/kept/restore",
        AS_ADMIN,
        json!({ "backup": "typo" }),
    )
    .await
    .error(400, "invalid_json");

    // A session without backups, and one without a profile.
    s.post(
        "/api/sessions",
        AS_ADMIN,
        json!({ "id": "bare", "start": false }),
    )
    .await
    .ok(201);
    s.post_empty("/api/sessions/bare/restore", AS_ADMIN)
        .await
        .error(404, "not_found");
    s.post_empty("/api/sessions/bare/backups", AS_ADMIN)
        .await
        .error(409, "wrong_state");
    assert_eq!(
        s.get("/api/sessions/bare/backups", AS_ADMIN).await.ok(200),
        &json!([])
    );
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Fallback e-mail

#[tokio::test]
async fn fallback_queues_an_email_to_the_owner() {
    let s = Server::start().await;
    s.post(
        "/api/sessions",
        AS_ADMIN,
        json!({ "id": "helpdesk", "owner_email": "owner@example.com", "start": false }),
    )
    .await
    .ok(201);
    let f = s
        .post(
            "/api/sessions/helpdesk/fallback",
            AS_ADMIN,
            json!({ "reason": "customer asks for a human", "contact": "+1 555 000 1111" }),
        )
        .await;
    let outbox_id = f.ok(202)["outbox_id"].as_i64().expect("an outbox id");

    let list = s.get("/api/outbox", AS_ADMIN).await;
    let item = list
        .ok(200)
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == outbox_id)
        .unwrap_or_else(|| panic!("item {outbox_id} listed in {}", list.text))
        .clone();
    assert_eq!(item["kind"], "email");
    assert_eq!(item["event"], "fallback_notification");

    // An empty body is fine too.
    s.post_empty("/api/sessions/helpdesk/fallback", AS_ADMIN)
        .await
        .ok(202);

    s.post(
        "/api/sessions",
        AS_ADMIN,
        json!({ "id": "ownerless", "start": false }),
    )
    .await
    .ok(201);
    let m = s
        .post("/api/sessions/ownerless/fallback", AS_ADMIN, json!({}))
        .await
        .error(409, "wrong_state");
    assert!(m.contains("owner_email"), "{m}");
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Outbox

#[tokio::test]
async fn outbox_listing_is_validated_and_only_dead_items_replay() {
    let s = Server::start().await;
    let m = s
        .get("/api/outbox?status=bogus", AS_ADMIN)
        .await
        .error(400, "invalid_query");
    assert!(m.contains("bogus"), "{m}");
    s.get("/api/outbox?limit=0", AS_ADMIN)
        .await
        .error(400, "invalid_query");
    s.get("/api/outbox?limit=501", AS_ADMIN)
        .await
        .error(400, "invalid_query");
    s.get("/api/outbox?limit=ten", AS_ADMIN)
        .await
        .error(400, "invalid_query");
    s.get("/api/outbox?colour=red", AS_ADMIN)
        .await
        .error(400, "invalid_query");

    // Items due tomorrow: the worker leaves them alone while the test looks at them.
    let store = s.app.state().stores.outbox.clone();
    let tomorrow = SystemClock.now() + chrono::TimeDelta::days(1);
    let email = || NewOutboxItem {
        kind: OutboxKind::Email,
        payload: json!({
            "type": "fallback_notification",
            "to": "owner@example.com",
            "data": { "session_id": "x" },
        }),
        dedupe_key: None,
    };
    let pending = store.enqueue(&email(), tomorrow).await.unwrap();
    let dead = store.enqueue(&email(), tomorrow).await.unwrap();
    store
        .mark_failed(dead.id, "refused: 400", None)
        .await
        .unwrap();

    let listed = s.get("/api/outbox?status=dead", AS_ADMIN).await;
    let listed = listed.ok(200).as_array().unwrap().clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], dead.id);
    assert_eq!(listed[0]["last_error"], "refused: 400");
    let pending_list = s.get("/api/outbox?status=pending&limit=1", AS_ADMIN).await;
    assert_eq!(pending_list.ok(200)[0]["id"], pending.id);

    let m = s
        .post_empty(&format!("/api/outbox/{}/replay", pending.id), AS_ADMIN)
        .await
        .error(409, "conflict");
    assert!(m.contains("pending"), "{m}");
    let r = s
        .post_empty(&format!("/api/outbox/{}/replay", dead.id), AS_ADMIN)
        .await;
    assert_eq!(r.ok(200)["id"], dead.id);
    assert_eq!(r.json["status"], "pending");
    assert_eq!(r.json["attempts"], 0);
    s.post_empty("/api/outbox/987654/replay", AS_ADMIN)
        .await
        .error(404, "not_found");
    s.post_empty("/api/outbox/abc/replay", AS_ADMIN)
        .await
        .error(400, "invalid_path");
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Health, documents, fallbacks, dashboard

#[tokio::test]
async fn health_metrics_openapi_docs_and_dashboard() {
    let s = Server::start().await;
    assert_eq!(s.get("/healthz", Key::None).await.ok(200)["status"], "ok");
    let ready = s.get("/readyz", Key::None).await;
    assert_eq!(ready.ok(200)["database"], "ok");
    assert_eq!(ready.json["status"], "ready");
    assert_eq!(ready.json["restore"], "done");

    // /metrics needs the admin key (or METRICS_TOKEN): tests/http_limits.rs.
    let metrics = s.get("/metrics", AS_ADMIN).await;
    metrics.ok(200);
    assert!(
        metrics.text.contains("whatsapp_sessions"),
        "{}",
        metrics.text
    );

    let doc = s.get("/api/openapi.json", Key::None).await;
    let doc = doc.ok(200);
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/api/sessions"), "{:?}", paths.keys());
    assert!(paths.contains_key("/api/sessions/{id}/messages"));
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    // The docs UI: follow the redirect; every script and style comes from this server.
    let docs = s.get("/api/docs/", Key::None).await;
    docs.ok(200);
    assert!(
        docs.header("content-type")
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        docs.header("content-type")
    );
    let html = &docs.text;
    assert!(html.contains("<script"), "{html}");
    for attr in ["src=\"", "href=\"", "src='", "href='"] {
        for (i, _) in html.match_indices(attr) {
            let value = &html[i + attr.len()..];
            assert!(
                !value.starts_with("http://")
                    && !value.starts_with("https://")
                    && !value.starts_with("//"),
                "an absolute asset URL in the docs page: {}",
                &value[..value.len().min(80)]
            );
        }
    }
    let redirected = s.get("/api/docs", Key::None).await;
    assert_eq!(redirected.status, StatusCode::OK);

    let nf = s.get("/api/no/such/route", AS_ADMIN).await;
    nf.error(404, "not_found");
    assert!(
        nf.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    s.get("/api/no/such/route", Key::None)
        .await
        .error(404, "not_found");

    let dash = s.get("/", Key::None).await;
    dash.ok(200);
    assert!(
        dash.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        dash.text.to_ascii_lowercase().contains("<html"),
        "{}",
        dash.text
    );
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// CORS

#[tokio::test]
async fn cors_allows_only_the_frontend_origin() {
    const FRONTEND: &str = "http://127.0.0.1:9";
    let s = Server::start_with(&["--frontend-url", FRONTEND]).await;
    let preflight = |origin: &'static str| {
        s.request(Method::OPTIONS, "/api/sessions", Key::None)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key,content-type")
    };
    let ok = s.send(preflight(FRONTEND)).await;
    assert!(ok.status.is_success(), "{}", ok.status);
    assert_eq!(
        ok.header("access-control-allow-origin").as_deref(),
        Some(FRONTEND)
    );
    let methods = ok.header("access-control-allow-methods").unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let headers = ok
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("x-api-key"), "{headers}");

    // A plain request from the frontend also carries the header.
    let get = s
        .send(
            s.request(Method::GET, "/api/sessions", AS_ADMIN)
                .header("origin", FRONTEND),
        )
        .await;
    get.ok(200);
    assert_eq!(
        get.header("access-control-allow-origin").as_deref(),
        Some(FRONTEND)
    );
    s.shutdown().await;
}

#[tokio::test]
async fn cors_answers_other_origins_without_an_allow_origin_header() {
    const FRONTEND: &str = "http://127.0.0.1:9";
    let s = Server::start_with(&["--frontend-url", FRONTEND]).await;
    let other = s
        .send(
            s.request(Method::OPTIONS, "/api/sessions", Key::None)
                .header("origin", "http://evil.example")
                .header("access-control-request-method", "POST"),
        )
        .await;
    let allowed = other.header("access-control-allow-origin");
    s.shutdown().await;
    assert_eq!(allowed, None, "a foreign origin gets no CORS grant");
}

// ---------------------------------------------------------------------------------------------
// Issue 10: session ids per tenant, deleted sessions' backups, the logged-out runbook.

#[tokio::test]
async fn session_ids_are_per_tenant_and_the_admin_names_the_tenant_when_ambiguous() {
    let s = Server::start().await;
    let (a, _) = s.tenant_key("tenant-a").await;
    let (b, _) = s.tenant_key("tenant-b").await;
    let (a, b) = (Key::Bearer(&a), Key::Bearer(&b));
    let va = s
        .post("/api/sessions", a, json!({ "id": "shop", "start": false }))
        .await
        .ok(201)
        .clone();
    // The same id in another tenant: no 409, nothing revealed.
    let vb = s
        .post("/api/sessions", b, json!({ "id": "shop", "start": false }))
        .await
        .ok(201)
        .clone();
    assert_eq!(va["id"], "shop");
    assert_eq!(vb["id"], "shop");
    assert_ne!(
        va["instance_id"], vb["instance_id"],
        "each is its own instance"
    );
    // Twice in one tenant is still a conflict.
    s.post("/api/sessions", a, json!({ "id": "shop", "start": false }))
        .await
        .error(409, "conflict");
    assert_eq!(
        s.get("/api/sessions/shop", a).await.ok(200)["tenant"],
        "tenant-a"
    );
    assert_eq!(
        s.get("/api/sessions/shop", b).await.ok(200)["tenant"],
        "tenant-b"
    );
    // A tenant cannot name another tenant's session, under any spelling.
    s.get("/api/sessions/tenant-b:shop", a)
        .await
        .error(404, "not_found");
    // The admin: ambiguous by name alone, found with the tenant.
    let m = s
        .get("/api/sessions/shop", AS_ADMIN)
        .await
        .error(409, "ambiguous");
    assert!(m.contains("tenant-a") && m.contains("tenant-b"), "{m}");
    assert_eq!(
        s.get("/api/sessions/tenant-b:shop", AS_ADMIN).await.ok(200)["instance_id"],
        vb["instance_id"]
    );
    s.delete("/api/sessions/shop", a).await.ok(204);
    assert_eq!(
        s.get("/api/sessions/shop", AS_ADMIN).await.ok(200)["tenant"],
        "tenant-b",
        "one left: the name alone finds it"
    );
    // A's id is free again; the new session is a new instance.
    let again = s
        .post("/api/sessions", a, json!({ "id": "shop", "start": false }))
        .await
        .ok(201)
        .clone();
    assert_ne!(again["instance_id"], va["instance_id"]);
    s.shutdown().await;
}

#[tokio::test]
async fn deleting_a_session_logs_it_out_and_quarantines_its_backups_for_the_admin() {
    let s = Server::start().await;
    let (b, _) = s.tenant_key("tenant-b").await;
    let b = Key::Bearer(&b);
    s.post("/api/sessions", b, json!({ "id": "victim" }))
        .await
        .ok(201);
    s.wait_status("victim", b, "qr").await;
    let victim = s.instance("victim").await;
    s.browser
        .link(&victim, &PhoneNumber::new("15550001111").unwrap());
    s.wait_status("victim", b, "ready").await;
    let profile = s.sessions_path.join(victim.as_str());
    write_fake_db(
        &profile.join("Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb"),
        &[(5, b"keys".repeat(100))],
        b"idb-log",
    )
    .unwrap();
    write_fake_db(
        &profile.join("Default/Local Storage/leveldb"),
        &[(3, b"ls".repeat(50))],
        b"ls-log",
    )
    .unwrap();
    let backup = s
        .post_empty("/api/sessions/victim/backups", b)
        .await
        .ok(201)
        .clone();

    s.delete("/api/sessions/victim", b).await.ok(204);
    assert_eq!(
        s.browser.logout_calls(&victim),
        1,
        "the device is logged out"
    );
    assert!(!profile.exists(), "the profile is removed");

    // The tenant sees nothing of it; the admin sees it in quarantine.
    s.get("/api/admin/deleted-sessions", b)
        .await
        .error(403, "forbidden");
    let deleted = s.get("/api/admin/deleted-sessions", AS_ADMIN).await;
    let list = deleted.ok(200).as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["instance_id"], victim.as_str());
    assert_eq!(list[0]["tenant"], "tenant-b");
    assert_eq!(list[0]["name"], "victim");
    assert_eq!(list[0]["objects"], 2, "archive and record");

    // The same id again: a new instance with no backups of the old one.
    s.post(
        "/api/sessions",
        b,
        json!({ "id": "victim", "start": false }),
    )
    .await
    .ok(201);
    assert_eq!(
        s.get("/api/sessions/victim/backups", b).await.ok(200),
        &json!([])
    );
    s.post("/api/sessions/victim/restore", b, json!({}))
        .await
        .error(404, "not_found");
    s.post(
        "/api/sessions/victim/restore",
        b,
        json!({ "backup_id": backup["backup_id"] }),
    )
    .await
    .error(404, "not_found");

    // The admin gives the old one back under another id; its backup comes with it.
    s.post(
        &format!("/api/admin/deleted-sessions/{victim}/recover"),
        AS_ADMIN,
        json!({}),
    )
    .await
    .error(409, "conflict");
    let recovered = s
        .post(
            &format!("/api/admin/deleted-sessions/{victim}/recover"),
            AS_ADMIN,
            json!({ "id": "victim-old" }),
        )
        .await
        .ok(201)
        .clone();
    assert_eq!(recovered["instance_id"], victim.as_str());
    assert_eq!(recovered["tenant"], "tenant-b");
    assert_eq!(recovered["status"], "stopped");
    let listed = s.get("/api/sessions/victim-old/backups", b).await;
    assert_eq!(listed.ok(200)[0]["backup_id"], backup["backup_id"]);
    assert_eq!(
        s.get("/api/admin/deleted-sessions", AS_ADMIN).await.ok(200),
        &json!([])
    );
    s.shutdown().await;
}

#[tokio::test]
async fn runbook_a_logged_out_session_starts_again_with_a_new_qr() {
    let s = Server::start().await;
    s.linked_session("gone", "15550002222").await;
    let gone = s.instance("gone").await;
    // The phone removes the device: the page shows a QR, the status says logged_out.
    s.browser.unlink(&gone);
    s.wait_status("gone", AS_ADMIN, "logged_out").await;
    // docs/operations.md: "the owner scans a new QR (POST /api/sessions/{id}/start)".
    let launches = s.browser.launches(&gone);
    s.post_empty("/api/sessions/gone/start", AS_ADMIN)
        .await
        .ok(202);
    eventually("start to relaunch the browser", DEADLINE, || async {
        s.browser.launches(&gone) != launches
    })
    .await;
    s.wait_status("gone", AS_ADMIN, "qr").await;
    let qr = s.get("/api/sessions/gone/qr", AS_ADMIN).await;
    let payload = qr.ok(200)["qr"].as_str().unwrap().to_owned();
    assert_eq!(
        Some(payload.as_str()),
        s.browser.qr(&gone).as_ref().map(|q| q.as_str())
    );
    s.browser
        .link(&gone, &PhoneNumber::new("15550002222").unwrap());
    s.wait_status("gone", AS_ADMIN, "ready").await;
    s.shutdown().await;
}
