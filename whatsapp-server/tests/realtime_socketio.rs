//! The real-time endpoint driven by the npm `socket.io-client` v4, unchanged
//! (`tests/socketio-client/client.js`): tenant isolation, admin scope, refused keys, and the
//! engine-event forwarder.
//!
//! Needs node and `npm ci` in `whatsapp-server/tests/socketio-client` (done by
//! `scripts/install-deps.sh`); fails with that command if it is missing.

use std::{collections::HashSet, path::PathBuf, process::Stdio, sync::Arc, time::Duration};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::{broadcast, mpsc},
};
use whatsapp_core::{Ack, MessageId, QrPayload, SessionId, SessionStatus, TenantId, Wid};
use whatsapp_keepalive::EngineEvent;
use whatsapp_server::realtime::{RealtimeAuthenticator, RealtimeHub, TenantScope, UNAUTHORIZED};

const WAIT: Duration = Duration::from_secs(30);

struct Keys;

#[async_trait::async_trait]
impl RealtimeAuthenticator for Keys {
    async fn tenant_for(&self, token: &str) -> Option<TenantScope> {
        match token {
            "key-a" => Some(TenantScope::Tenant(TenantId::new("tenant-a").unwrap())),
            "key-b" => Some(TenantScope::Tenant(TenantId::new("tenant-b").unwrap())),
            "key-admin" => Some(TenantScope::Admin),
            _ => None,
        }
    }
}

/// The node child; killed by PID (through tokio's `Child`) when dropped.
struct NodeClient {
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Drop for NodeClient {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl NodeClient {
    fn start(url: &str, specs: &[&str]) -> NodeClient {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/socketio-client");
        assert!(
            dir.join("node_modules/socket.io-client").is_dir(),
            "socket.io-client is not installed: run `(cd {} && npm ci)` (or scripts/install-deps.sh)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("client.js"))
            .arg(url)
            .args(specs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node must be installed to run the socket.io-client test");
        let stdout = child.stdout.take().unwrap();
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

    /// Reads lines until `pred` holds for one of them (already seen ones included).
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) {
        if self.seen.iter().any(&pred) {
            return;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
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

    /// The events (name, session_id) a client received.
    fn events_of(&self, client: &str) -> Vec<(String, String)> {
        self.seen
            .iter()
            .filter(|l| l["client"] == client && l.get("data").is_some())
            .map(|l| {
                (
                    l["event"].as_str().unwrap().to_owned(),
                    l["data"]["session_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

fn is(client: &'static str, event: &'static str) -> impl Fn(&Value) -> bool {
    move |l| l["client"] == client && l["event"] == event
}

fn is_event(
    client: &'static str,
    event: &'static str,
    session: &'static str,
) -> impl Fn(&Value) -> bool {
    move |l| l["client"] == client && l["event"] == event && l["data"]["session_id"] == session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_receives_only_its_tenants_sessions() {
    let (layer, hub) = RealtimeHub::new(Arc::new(Keys));
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut node = NodeClient::start(
        &url,
        &[
            "a=auth:key-a",
            "b=auth:key-b",
            "admin=auth:key-admin",
            "bearer_b=bearer:key-b",
            "apikey_a=apikey:key-a",
            "bad=auth:wrong-key",
            "none=auth:",
        ],
    );
    for c in ["a", "b", "admin", "bearer_b", "apikey_a"] {
        node.wait_for(&format!("{c} connected"), move |l| {
            l["client"] == c && l["event"] == "connect"
        })
        .await;
    }
    node.wait_for("bad refused", is("bad", "connect_error"))
        .await;
    node.wait_for("none refused", is("none", "connect_error"))
        .await;
    for c in ["bad", "none"] {
        let err = node
            .seen
            .iter()
            .find(|l| l["client"] == c && l["event"] == "connect_error")
            .unwrap();
        assert_eq!(err["message"], UNAUTHORIZED);
        assert!(
            !node
                .seen
                .iter()
                .any(|l| l["client"] == c && l["event"] == "connect"),
            "{c} must not connect"
        );
    }

    // The engine's events go through the forwarder; the tenant lookup stands in for the store.
    let (tx, rx) = broadcast::channel(64);
    let forwarder = hub.forward(rx, |s: SessionId| async move {
        let tenant = match s.as_ref() {
            "s-a" => TenantId::new("tenant-a").unwrap(),
            "s-b" => TenantId::new("tenant-b").unwrap(),
            _ => return None,
        };
        Some((tenant, s))
    });
    let sa = SessionId::new("s-a").unwrap();
    let sb = SessionId::new("s-b").unwrap();
    let nobody = SessionId::new("s-orphan").unwrap();
    let qr = QrPayload::parse("ref,static,identity,adv,1").unwrap();
    let message_id = MessageId("false_34600000061@c.us_3EB0AAAAAAAAAAAAAAAAAA".into());
    for event in [
        EngineEvent::Qr {
            session: sa.clone(),
            payload: qr.clone(),
        },
        EngineEvent::Qr {
            session: sb.clone(),
            payload: qr.clone(),
        },
        EngineEvent::Qr {
            session: nobody.clone(),
            payload: qr.clone(),
        },
        EngineEvent::Status {
            session: sa.clone(),
            status: SessionStatus::Ready,
        },
        EngineEvent::Status {
            session: sb.clone(),
            status: SessionStatus::Ready,
        },
        EngineEvent::Message {
            session: sa.clone(),
            id: message_id.clone(),
            from: Wid::parse("34600000061@c.us").unwrap(),
            body: "hello bot".into(),
            at: chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap(),
        },
        EngineEvent::Ack {
            session: sa.clone(),
            id: message_id.clone(),
            ack: Ack::READ,
        },
        // Barriers: each client's last event; anything misrouted before it has arrived by then.
        EngineEvent::Status {
            session: sa.clone(),
            status: SessionStatus::Stopped,
        },
        EngineEvent::Status {
            session: sb.clone(),
            status: SessionStatus::Stopped,
        },
    ] {
        tx.send(event).unwrap();
    }

    for (c, s) in [
        ("a", "s-a"),
        ("apikey_a", "s-a"),
        ("b", "s-b"),
        ("bearer_b", "s-b"),
        ("admin", "s-a"),
        ("admin", "s-b"),
    ] {
        let c: &'static str = c;
        let s: &'static str = s;
        node.wait_for(&format!("{c} stopped {s}"), move |l| {
            l["client"] == c
                && l["event"] == "status"
                && l["data"]["session_id"] == s
                && l["data"]["status"] == "stopped"
        })
        .await;
    }
    node.wait_for("a's qr", is_event("a", "qr", "s-a")).await;

    let expected = |s: &str, messages: bool| {
        let mut events = vec![
            ("qr".to_owned(), s.to_owned()),
            ("status".to_owned(), s.to_owned()),
            ("ready".to_owned(), s.to_owned()),
        ];
        if messages {
            events.push(("message".to_owned(), s.to_owned()));
            events.push(("message.ack".to_owned(), s.to_owned()));
        }
        events.push(("status".to_owned(), s.to_owned()));
        events
    };
    assert_eq!(node.events_of("a"), expected("s-a", true));
    assert_eq!(node.events_of("apikey_a"), expected("s-a", true));
    assert_eq!(node.events_of("b"), expected("s-b", false));
    assert_eq!(node.events_of("bearer_b"), expected("s-b", false));
    let message = node
        .seen
        .iter()
        .find(|l| is_event("a", "message", "s-a")(l))
        .unwrap();
    assert_eq!(message["data"]["id"], message_id.0.as_str());
    assert_eq!(message["data"]["from"], "34600000061@c.us");
    assert_eq!(message["data"]["body"], "hello bot");
    let ack = node
        .seen
        .iter()
        .find(|l| is_event("a", "message.ack", "s-a")(l))
        .unwrap();
    assert_eq!(ack["data"]["ack"], 3);
    assert_eq!(ack["data"]["ack_name"], "READ");
    let admin: HashSet<String> = node
        .events_of("admin")
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(admin, HashSet::from(["s-a".to_owned(), "s-b".to_owned()]));
    assert_eq!(node.events_of("admin").len(), 10);
    let qr_line = node
        .seen
        .iter()
        .find(|l| is_event("a", "qr", "s-a")(l))
        .unwrap();
    assert_eq!(qr_line["data"]["qr"], qr.as_str());
    assert!(node.events_of("bad").is_empty() && node.events_of("none").is_empty());

    drop(tx);
    tokio::time::timeout(WAIT, forwarder)
        .await
        .expect("the forwarder ends when the engine's sender is dropped")
        .unwrap();
    drop(node);
    server.abort();
}
