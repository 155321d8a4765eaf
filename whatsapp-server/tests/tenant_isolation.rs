//! One tenant can never reach another tenant's WhatsApp login, end to end: the real
//! `whatsapp-server` binary, the emulator and real Chromium.
//!
//! The attack this closes: tenant B links session `victim`, takes a backup and deletes the
//! session; tenant A then creates a session with the same id. Before session names were
//! scoped per tenant and logins keyed by the session *instance*, A's new session came up
//! `ready` on B's number without a QR (restored from B's backup), and A could list and
//! restore B's leftover backups.
//!
//! Needs Chromium (`CHROMIUM_PATH`, default `/usr/bin/chromium`); never skips.

#[path = "common/faults.rs"]
mod faults;

use std::time::Duration;

use faults::{ADMIN_KEY, Api, Server, ServerSettings, Workspace, start_emulator};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use whatsapp_core::testing::eventually;

/// Generous bound for anything that involves a browser (never a speed assertion).
const WITHIN: Duration = Duration::from_secs(90);

async fn tenant_key(api: &Api, tenant: &str) -> String {
    api.expect(
        Method::POST,
        "/api/tenants",
        ADMIN_KEY,
        Some(json!({"id": tenant, "name": tenant})),
        StatusCode::CREATED,
    )
    .await;
    let v = api
        .expect(
            Method::POST,
            &format!("/api/tenants/{tenant}/keys"),
            ADMIN_KEY,
            Some(json!({"label": "isolation test"})),
            StatusCode::CREATED,
        )
        .await;
    v["key"].as_str().expect("key").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_session_id_never_reaches_another_tenants_login() {
    let emulator = start_emulator().await;
    let emu = emulator.client();
    let ws = Workspace::new();
    let settings = ServerSettings::new(&ws, &emulator);
    let api = Api::new(settings.base_url());
    let mut server = Server::spawn(&ws, &settings);
    server.wait_ready(&api).await;
    let key_a = tenant_key(&api, "tenant-a").await;
    let key_b = tenant_key(&api, "tenant-b").await;

    // Ids are per tenant: A's `victim` neither collides with nor reveals B's.
    let (status, v) = api
        .call(
            Method::POST,
            "/api/sessions",
            &key_b,
            Some(json!({"id": "victim"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "B creates victim: {v}");
    let b_instance = v["instance_id"].as_str().expect("instance_id").to_owned();
    let (status, v) = api
        .call(
            Method::POST,
            "/api/sessions",
            &key_a,
            Some(json!({"id": "victim", "start": false})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "A creates its own victim while B's exists: {v}"
    );
    assert_ne!(v["instance_id"], b_instance.as_str());
    let (status, v) = api
        .call(Method::DELETE, "/api/sessions/victim", &key_a, None)
        .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "A deletes its own victim: {v}"
    );

    // B links victim on its phone and backs it up.
    let device = api.link("tenant-b:victim", &emu).await;
    api.wait_connected("tenant-b:victim", WITHIN).await;
    let (status, backup) = api
        .call(Method::POST, "/api/sessions/victim/backups", &key_b, None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "B's backup: {backup}");
    assert_eq!(backup["verified"], true, "{backup}");

    // A cannot see B's session under any spelling.
    for path in ["/api/sessions/victim", "/api/sessions/tenant-b:victim"] {
        let (status, v) = api.get(path, &key_a).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "A GET {path}: {v}");
    }
    let (_, listed) = api.get("/api/sessions", &key_a).await;
    assert_eq!(listed, json!([]), "A lists none of B's sessions");

    // B deletes victim: its device is logged out at WhatsApp, its profile is gone.
    let (status, v) = api
        .call(Method::DELETE, "/api/sessions/victim", &key_b, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "B deletes victim: {v}");
    let d = emu.device(&device).await.expect("the emulator's device");
    assert!(
        !d.linked,
        "deleting a linked session logs its device out: {d:#?}"
    );
    assert!(
        !ws.profile_dir(&b_instance).exists(),
        "the deleted session's profile is removed"
    );

    // A creates victim again: a new instance that starts without any login.
    let (status, v) = api
        .call(
            Method::POST,
            "/api/sessions",
            &key_a,
            Some(json!({"id": "victim"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "A creates victim: {v}");
    assert_ne!(v["instance_id"], b_instance.as_str());
    let a_view = eventually("A's new victim to show a QR", WITHIN, || async {
        let (status, v) = api.get("/api/sessions/victim", &key_a).await;
        let settled = v["running"] == true && (v["status"] == "qr" || v["status"] == "ready");
        if status == StatusCode::OK && settled {
            Ok(v)
        } else {
            Err(format!("{status} {v}"))
        }
    })
    .await;
    assert_eq!(
        a_view["status"], "qr",
        "A's session must need a QR scan, never come up on B's login: {a_view}"
    );
    assert_eq!(a_view["phone"], Value::Null, "{a_view}");
    let (status, qr) = api.get("/api/sessions/victim/qr", &key_a).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "A's session waits for its own scan: {qr}"
    );

    // B's backups are out of A's reach: none listed, none restorable.
    let (status, backups) = api.get("/api/sessions/victim/backups", &key_a).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(backups, json!([]), "A lists none of B's backups");
    let (status, v) = api
        .call(
            Method::POST,
            "/api/sessions/victim/restore",
            &key_a,
            Some(json!({})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "A cannot restore B's backup: {v}"
    );
    let (status, v) = api
        .call(
            Method::POST,
            "/api/sessions/victim/restore",
            &key_a,
            Some(json!({"backup_id": backup["backup_id"]})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "A cannot restore B's backup by its id: {v}"
    );

    // Only the admin sees B's quarantined backups.
    let (status, v) = api.get("/api/admin/deleted-sessions", &key_a).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, deleted) = api.get("/api/admin/deleted-sessions", ADMIN_KEY).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    let entry = deleted
        .as_array()
        .expect("a list")
        .iter()
        .find(|d| d["instance_id"] == b_instance.as_str())
        .unwrap_or_else(|| panic!("B's deleted session is in quarantine: {deleted}"));
    assert_eq!(entry["tenant"], "tenant-b");
    assert_eq!(entry["name"], "victim");
    assert!(entry["objects"].as_u64().unwrap() >= 2, "{entry}");

    // A's session is still waiting for its own scan, not on B's number.
    let d = emu.device(&device).await.expect("the emulator's device");
    assert!(!d.linked, "B's device stays logged out: {d:#?}");
    let (_, v) = api.get("/api/sessions/victim", &key_a).await;
    assert_ne!(v["status"], "ready", "{v}");

    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "server exit: {status:?}");
}
