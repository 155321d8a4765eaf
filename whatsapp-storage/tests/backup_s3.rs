//! S3BackupSink against a real S3-compatible server on loopback: the BackupSink conformance
//! suite, and BackupManager end to end (encrypted backup, verification, restore, retention).
//!
//! The server: `S3_TEST_ENDPOINT` if set (with `S3_TEST_ACCESS_KEY`, `S3_TEST_SECRET_KEY`,
//! `S3_TEST_REGION`, defaults `test`/`test`/`us-east-1`), otherwise a `moto_server` started
//! by the test on a free 127.0.0.1 port and killed (by PID) when the test ends. Neither →
//! the test fails, naming `scripts/s3-server.sh`.
#![cfg(feature = "s3")]

#[path = "backup_support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use whatsapp_core::testing::FakeClock;
use whatsapp_core::{BackupKey, BackupSink, SessionId};
use whatsapp_storage::backup::{
    BackupConfig, BackupManager, EncryptionKey, RestoreOutcome, S3BackupSink, S3Config,
};

struct S3Server {
    endpoint: String,
    child: Option<Child>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const HINT: &str = "start one with `scripts/s3-server.sh <port>` and set \
S3_TEST_ENDPOINT=http://127.0.0.1:<port>, or put moto_server on PATH (`pip install 'moto[server]'`)";

fn s3_server() -> S3Server {
    if let Ok(endpoint) = std::env::var("S3_TEST_ENDPOINT") {
        return S3Server {
            endpoint,
            child: None,
        };
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("no S3 test server: cannot run moto_server ({e}); {HINT}"));
    let server = S3Server {
        endpoint: format!("http://127.0.0.1:{port}"),
        child: Some(child),
    };
    // Wait (bounded) until it answers HTTP.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http(&server.endpoint, "GET", "/").is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not start within 60 s; {HINT}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// A bare HTTP/1.1 request (moto accepts unsigned bucket creation). Returns the status.
fn http(endpoint: &str, method: &str, path: &str) -> Option<u16> {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    resp.split_whitespace().nth(1)?.parse().ok()
}

fn sink(server: &S3Server, bucket: &str, prefix: &str) -> S3BackupSink {
    let status = http(&server.endpoint, "PUT", &format!("/{bucket}"));
    if std::env::var("S3_TEST_ENDPOINT").is_err() {
        assert_eq!(status, Some(200), "creating bucket {bucket}");
    }
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    S3BackupSink::new(S3Config {
        endpoint: Some(server.endpoint.clone()),
        region: env("S3_TEST_REGION", "us-east-1"),
        bucket: bucket.into(),
        prefix: prefix.into(),
        access_key_id: env("S3_TEST_ACCESS_KEY", "test"),
        secret_access_key: env("S3_TEST_SECRET_KEY", "test"),
        session_token: None,
        path_style: true,
        allow_http: true,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_sink_passes_the_conformance_suite() {
    let server = s3_server();
    let plain = sink(&server, "conformance", "");
    whatsapp_core::testing::conformance::backup_sink::run_all(&plain).await;
    let prefixed = sink(&server, "conformance", "whatsapp/prod");
    whatsapp_core::testing::conformance::backup_sink::run_all(&prefixed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_isolate_and_debug_hides_secrets() {
    let server = s3_server();
    let a = sink(&server, "isolation", "tenant-a");
    let b = sink(&server, "isolation", "tenant-b/backups");
    let key = BackupKey::new("alice/x.json").unwrap();
    a.put(
        &key,
        futures::stream::once(async { Ok(Bytes::from_static(b"a")) }).boxed(),
    )
    .await
    .unwrap();
    assert_eq!(a.list("").await.unwrap().len(), 1);
    assert!(b.list("").await.unwrap().is_empty());
    assert!(b.get(&key).await.is_err());
    // A string prefix that is not a whole segment.
    assert_eq!(a.list("ali").await.unwrap().len(), 1);
    assert!(a.list("alicex").await.unwrap().is_empty());

    let cfg = S3Config {
        endpoint: None,
        region: "eu-west-1".into(),
        bucket: "b".into(),
        prefix: String::new(),
        access_key_id: "AKIAFAKE".into(),
        secret_access_key: "super-secret-value".into(),
        session_token: Some("token-value".into()),
        path_style: false,
        allow_http: false,
    };
    let shown = format!("{:?}", S3BackupSink::new(cfg.clone()).unwrap());
    assert!(
        !shown.contains("super-secret-value") && !shown.contains("token-value"),
        "{shown}"
    );
    assert!(shown.contains("AKIAFAKE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_backs_up_verifies_restores_and_expires_on_s3() {
    let server = s3_server();
    let s3: Arc<dyn BackupSink> = Arc::new(sink(&server, "whatsapp-backups", "e2e"));
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new("2026-03-01T02:00:00Z".parse().unwrap());
    let mut cfg = BackupConfig::new(dir.path().join("work"));
    cfg.encryption_key = Some(EncryptionKey::generate());
    let m = BackupManager::new(s3.clone(), Arc::new(clock.clone()), cfg);
    let id = SessionId::new("alice").unwrap();
    let profile = dir.path().join("sessions/alice");
    support::fake_profile(&profile, 5);
    let original = support::snapshot_tree(&profile);

    let first = m.backup_session(&id, &profile).await.unwrap();
    assert!(first.verified && first.encrypted);
    assert_eq!(s3.head(&first.key).await.unwrap().size, first.archive_size);
    clock.advance(Duration::from_secs(40 * 24 * 3600));
    let second = m.backup_session(&id, &profile).await.unwrap();

    fs_remove(&profile.join(support::IDB));
    match m.restore(&id, &profile).await.unwrap() {
        RestoreOutcome::Backup { key, .. } => assert_eq!(key, second.key),
        other => panic!("{other:?}"),
    }
    for (rel, data) in support::snapshot_tree(&profile) {
        let was = original.iter().find(|(r, _)| *r == rel).unwrap();
        assert_eq!(was.1, data, "{}", rel.display());
    }

    let report = m.apply_retention(None).await.unwrap();
    assert_eq!(
        report.deleted,
        vec![first.key.clone(), first.record_key.clone()]
    );
    let left: Vec<_> = m
        .list(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(left, vec![second.key]);
}

fn fs_remove(p: &std::path::Path) {
    std::fs::remove_dir_all(p).unwrap();
}
