//! The HTTP listener under hostile clients, and the protection of `/metrics` and the
//! dashboard (security issue #10, items 3, 10 and 11), black box: the real server
//! ([`App::start`]) on 127.0.0.1:0 with [`FakeBrowser`], raw TCP sockets and reqwest.
//!
//! Closes are awaited with bounded reads (a deadline, never a sleep); no test asserts how
//! fast anything is.

#[path = "common/inproc.rs"]
mod inproc;

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use whatsapp_core::SystemClock;
use whatsapp_core::testing::FakeBrowser;
use whatsapp_server::app::RunningApp;

const ADMIN: &str = "test-admin-key-0123456789abcdef";
const METRICS_TOKEN: &str = "metrics-token-0123456789abcdef";

/// How long the server may take to close a connection its time-outs condemn (generous:
/// the configured time-outs in these tests are below a second).
const CLOSE_WITHIN: Duration = Duration::from_secs(20);

struct Server {
    app: RunningApp,
    base: String,
    http: reqwest::Client,
    _home: inproc::Home,
}

impl Server {
    async fn start(extra: &[&str]) -> Server {
        let home = inproc::Home::new();
        let (app, base) = inproc::start_app(
            home.config(ADMIN, extra),
            Arc::new(FakeBrowser::new(7)),
            Arc::new(SystemClock),
        )
        .await;
        Server {
            app,
            base,
            http: reqwest::Client::builder()
                .timeout(CLOSE_WITHIN)
                .build()
                .unwrap(),
            _home: home,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.app.addr()).await.unwrap()
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> reqwest::Response {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(key) = bearer {
            r = r.bearer_auth(key);
        }
        r.send().await.expect("the server answers")
    }
}

/// Reads until the server closes `stream` (EOF or reset), with a deadline; returns what it
/// sent before closing. Panics naming `what` if the connection is still open at the
/// deadline.
async fn closed_by_server(stream: &mut (impl AsyncRead + Unpin), what: &str) -> Vec<u8> {
    let deadline = Instant::now() + CLOSE_WITHIN;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "{what}: still open {CLOSE_WITHIN:?} later (got {:?})",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Item 3: time-outs and the connection limit

#[tokio::test]
async fn silent_half_sent_and_idle_kept_alive_connections_are_closed() {
    let s = Server::start(&["--http-header-timeout", "300ms"]).await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(s.connect().await);
    }
    let mut half = s.connect().await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    // A complete request, answered, then nothing: the keep-alive idle case.
    let mut kept = s.connect().await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();

    for (i, c) in silent.iter_mut().enumerate() {
        closed_by_server(c, &format!("silent connection {i}")).await;
    }
    closed_by_server(&mut half, "a connection stopped mid-header").await;
    let answered = closed_by_server(&mut kept, "an idle kept-alive connection").await;
    let answered = String::from_utf8_lossy(&answered);
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    // The server still serves.
    assert_eq!(s.get("/healthz", None).await.status(), StatusCode::OK);
    s.app.shutdown().await;
}

#[tokio::test]
async fn stalled_and_trickled_bodies_are_cut() {
    let s = Server::start(&[
        "--http-body-timeout",
        "300ms",
        "--http-request-timeout",
        "1s",
    ])
    .await;
    let head = format!(
        "POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n"
    );

    // Part of the body, then nothing: the body time-out.
    let mut stalled = s.connect().await;
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(b"{\"id\": \"stalled").await.unwrap();
    closed_by_server(&mut stalled, "a stalled body").await;

    // One byte every 50 ms, each well within the body time-out: the request time-out.
    let mut trickle = s.connect().await;
    trickle.write_all(head.as_bytes()).await.unwrap();
    trickle.write_all(b"{\"id\": \"").await.unwrap();
    let (mut reader, mut writer) = trickle.into_split();
    let writing = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        // Bounded: at most the declared length, 500 s worth at this pace.
        for _ in 0..9_000 {
            tick.tick().await;
            if writer.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    let got = closed_by_server(&mut reader, "a trickled body").await;
    writing.abort();
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"request_timeout\""), "{got}");
    s.app.shutdown().await;
}

#[tokio::test]
async fn health_answers_while_more_idle_connections_than_the_limit_are_held() {
    let s = Server::start(&[
        "--http-max-connections",
        "50",
        "--http-header-timeout",
        "300ms",
    ])
    .await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(s.connect().await);
    }
    for _ in 0..3 {
        let r = s.get("/healthz", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
    }
    // Every idle connection was accepted in its turn and closed by the header time-out.
    for (i, c) in idle.iter_mut().enumerate() {
        closed_by_server(c, &format!("idle connection {i} of 200")).await;
    }
    s.app.shutdown().await;
}

/// Socket.IO's WebSocket and its held long-polling requests are not cut by the time-outs:
/// they outlive a connection that the same time-outs close, and still deliver events.
#[tokio::test]
async fn socket_io_websockets_and_long_polling_outlive_the_timeouts() {
    let s = Server::start(&[
        "--http-header-timeout",
        "300ms",
        "--http-body-timeout",
        "300ms",
        "--http-request-timeout",
        "300ms",
    ])
    .await;
    let addr = s.app.addr();

    // WebSocket: Engine.IO open packet, then the namespace connect with the admin key.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{addr}/socket.io/?EIO=4&transport=websocket"
    ))
    .await
    .expect("a WebSocket");
    let open = next_text(&mut ws).await;
    assert!(open.starts_with('0'), "{open}");
    ws.send(Message::text(format!("40{{\"token\":\"{ADMIN}\"}}")))
        .await
        .unwrap();
    let connected = ws_until(&mut ws, "40").await;
    assert!(connected.contains("\"sid\""), "{connected}");

    // Long-polling: handshake, namespace connect, then a poll the server holds open.
    let poll_base = format!("{}/socket.io/?EIO=4&transport=polling", s.base);
    let handshake = s
        .http
        .get(&poll_base)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sid = serde_json::from_str::<Value>(handshake.trim_start_matches('0')).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let poll_url = format!("{poll_base}&sid={sid}");
    let posted = s
        .http
        .post(&poll_url)
        .body(format!("40{{\"token\":\"{ADMIN}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::OK);
    // Each poll is held until the server has something to send; a 408 would mean the
    // request time-out cut it. Pings are answered, as a client does.
    let held = tokio::spawn({
        let http = s.http.clone();
        let url = poll_url.clone();
        async move {
            let mut seen = Vec::new();
            for _ in 0..10 {
                let r = http.get(&url).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK, "a long-polling request was cut");
                let body = r.text().await.unwrap();
                for packet in body.split('\u{1e}') {
                    if packet == "2" {
                        http.post(&url).body("3").send().await.unwrap();
                    }
                    seen.push(packet.to_owned());
                }
                if seen.iter().any(|p| p.starts_with("42[")) {
                    return seen;
                }
            }
            panic!("no event over long-polling: {seen:?}");
        }
    });

    // The time-outs have run out for a connection opened after both (closed by them)…
    let mut idle = s.connect().await;
    closed_by_server(&mut idle, "an idle connection").await;
    // …and both channels still deliver an event.
    let created = s
        .http
        .post(format!("{}/api/sessions", s.base))
        .bearer_auth(ADMIN)
        .json(&json!({ "id": "outlives" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let event = ws_until(&mut ws, "42").await;
    assert!(event.contains("outlives"), "{event}");
    let polled = tokio::time::timeout(CLOSE_WITHIN, held)
        .await
        .expect("the held poll delivers the event")
        .unwrap();
    assert!(polled.iter().any(|p| p.starts_with("40")), "{polled:?}");
    assert!(
        polled
            .iter()
            .any(|p| p.starts_with("42[") && p.contains("outlives")),
        "{polled:?}"
    );
    s.app.shutdown().await;
}

/// The next WebSocket text packet starting with `prefix`; Engine.IO pings (`2`) met on
/// the way are answered (`3`), as a client does. Bounded by [`next_text`]'s deadline per
/// packet and at most 20 packets.
async fn ws_until<S>(ws: &mut S, prefix: &str) -> String
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error>
        + Unpin,
{
    let mut seen = Vec::new();
    for _ in 0..20 {
        let m = next_text(ws).await;
        if m.starts_with(prefix) {
            return m;
        }
        if m == "2" {
            ws.send(Message::text("3")).await.unwrap();
        }
        seen.push(m);
    }
    panic!("no `{prefix}…` packet over the WebSocket: {seen:?}");
}

async fn next_text<S>(ws: &mut S) -> String
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let m = tokio::time::timeout(CLOSE_WITHIN, ws.next())
            .await
            .expect("a WebSocket message in time")
            .expect("the WebSocket is open")
            .expect("a WebSocket message");
        match m {
            Message::Text(t) => return t.to_string(),
            Message::Close(c) => panic!("the server closed the WebSocket: {c:?}"),
            _ => {}
        }
    }
}

// ------------------------------------------------------------------------------------------
// Item 10: /metrics

#[tokio::test]
async fn metrics_need_the_admin_key_or_the_metrics_token() {
    let s = Server::start(&["--metrics-token", METRICS_TOKEN]).await;
    assert_eq!(
        s.get("/metrics", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.get("/metrics", Some("wrong-token")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A tenant's key is no operator's.
    s.http
        .post(format!("{}/api/tenants", s.base))
        .bearer_auth(ADMIN)
        .json(&json!({ "id": "acme", "name": "acme" }))
        .send()
        .await
        .unwrap();
    let key: Value = s
        .http
        .post(format!("{}/api/tenants/acme/keys", s.base))
        .bearer_auth(ADMIN)
        .json(&json!({ "label": "tests" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenant_key = key["key"].as_str().expect("a tenant key");
    assert_eq!(
        s.get("/metrics", Some(tenant_key)).await.status(),
        StatusCode::FORBIDDEN
    );
    for key in [ADMIN, METRICS_TOKEN] {
        let r = s.get("/metrics", Some(key)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let text = r.text().await.unwrap();
        assert!(text.contains("whatsapp_sessions"), "{text}");
    }
    // The metrics token opens nothing else.
    assert_eq!(
        s.get("/api/sessions", Some(METRICS_TOKEN)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    s.app.shutdown().await;
}

#[tokio::test]
async fn metrics_listen_serves_metrics_without_a_key_and_nothing_else() {
    let s = Server::start(&["--metrics-listen", "127.0.0.1:0"]).await;
    let addr = s.app.metrics_addr().expect("a metrics listener");
    assert_ne!(addr, s.app.addr());
    let r = s
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("whatsapp_sessions"));
    for path in ["/api/sessions", "/healthz", "/"] {
        let r = s
            .http
            .get(format!("http://{addr}{path}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // The main listener still wants a key.
    assert_eq!(
        s.get("/metrics", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    s.app.shutdown().await;
}

// ------------------------------------------------------------------------------------------
// Item 11: framing and the other security headers

#[tokio::test]
async fn dashboard_docs_and_api_cannot_be_framed() {
    let s = Server::start(&[]).await;
    for (path, key) in [
        ("/", None),
        ("/dashboard/app.js", None),
        ("/dashboard/style.css", None),
        ("/api/docs/", None),
        ("/api/sessions", Some(ADMIN)),
        ("/healthz", None),
    ] {
        let r = s.get(path, key).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = |name: &str| {
            r.headers()
                .get(name)
                .unwrap_or_else(|| panic!("{path}: no {name}"))
                .to_str()
                .unwrap()
                .to_owned()
        };
        let csp = h("content-security-policy");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(h("x-frame-options"), "DENY", "{path}");
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(h("referrer-policy"), "no-referrer", "{path}");
        if path == "/" {
            for directive in [
                "default-src 'self'",
                "script-src 'self'",
                "style-src 'self'",
                "connect-src 'self'",
                "img-src 'self' data: blob:",
            ] {
                assert!(csp.contains(directive), "{path}: {csp} lacks {directive}");
            }
            assert!(!csp.contains("unsafe-inline"), "{csp}");
        }
    }
    s.app.shutdown().await;
}
