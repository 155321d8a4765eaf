//! The engine's public API on fakes, in paused time: first link, stop, logout, hung
//! browsers, bounded launch concurrency and staggered starts, status events.

mod common;

use std::time::Duration;

use common::{HOUR, MINUTE, World, quiet};
use whatsapp_core::{
    ConnectionState, NotificationKind as N, PhoneNumber, SessionId, SessionStatus as St,
    SessionStore,
};
use whatsapp_keepalive::{EngineEvent, KeepaliveConfig};

const PHONE: &str = "34600000000";

/// A new session shows a QR (pushed as an event), and the scan sends `whatsapp_connected`
/// once and stores the account.
#[tokio::test(start_paused = true)]
async fn a_first_link_shows_a_qr_then_emails_connected_once() {
    let w = World::new(KeepaliveConfig::default(), "2026-03-02T12:00:00Z");
    let id = w.fresh("bob").await;
    let mut events = w.engine.subscribe();
    w.engine.start(&id).await.unwrap();
    let qr = tokio::time::timeout(MINUTE, async {
        loop {
            if let Ok(EngineEvent::Qr { session, payload }) = events.recv().await {
                assert_eq!(session, id);
                return payload;
            }
        }
    })
    .await
    .expect("a QR event");
    assert_eq!(w.engine.snapshot(&id).unwrap().qr, Some(qr));
    w.wait_status(&id, St::Qr, MINUTE).await;

    w.browser.link(&id, &PhoneNumber::new(PHONE).unwrap());
    w.wait_status(&id, St::Ready, MINUTE).await;
    tokio::time::sleep(HOUR).await;
    assert_eq!(w.notifier.count(&N::WhatsappConnected), 1);
    assert_eq!(w.notifier.sent().len(), 1);
    let r = w.store.get(&id).await.unwrap().unwrap();
    assert_eq!(r.wid.unwrap().user(), PHONE);
    assert!(r.last_connected_at.is_some());
    assert_eq!(w.engine.snapshot(&id).unwrap().qr, None);
    w.engine.shutdown().await;
}

/// A profile lost while the session runs is restored from its backup before the relaunch
/// (the seed's "restore from backup when the files are missing"): no QR, no new scan.
#[tokio::test(start_paused = true)]
async fn a_lost_profile_is_restored_from_backup_before_the_relaunch() {
    let w = World::new(quiet(), "2026-03-02T12:00:00Z");
    let id = w.linked("carol", PHONE).await;
    w.backups
        .saved
        .lock()
        .unwrap()
        .insert(id.clone(), PhoneNumber::new(PHONE).unwrap());
    let mut events = w.engine.subscribe();
    w.engine.start(&id).await.unwrap();
    w.wait_connected(&id).await;

    // The browser dies and the disk loses the profile before anything else runs.
    w.browser.crash(&id);
    std::fs::remove_dir_all(w.dir.path().join("carol")).unwrap();
    w.wait_browser(MINUTE, |b| b.launches(&id) == 2).await;
    w.wait_connected(&id).await;
    w.wait_status(&id, St::Ready, MINUTE).await;

    let prepared: Vec<&str> = w
        .backups
        .prepared
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p)| *p)
        .collect();
    assert_eq!(prepared, ["disk", "backup"], "checked before each launch");
    while let Ok(ev) = events.try_recv() {
        assert!(
            !matches!(ev, EngineEvent::Qr { .. }),
            "no QR after the restore: {ev:?}"
        );
    }
    w.engine.shutdown().await;
}

/// A linked session whose page asks for a QR without having been unlinked (its credentials
/// were damaged on disk) gets its login back from the newest backup: no QR, no e-mail.
#[tokio::test(start_paused = true)]
async fn a_damaged_login_is_restored_from_backup_instead_of_asking_for_a_qr() {
    let w = World::new(quiet(), "2026-03-02T12:00:00Z");
    let id = w.linked("dave", PHONE).await;
    w.backups
        .saved
        .lock()
        .unwrap()
        .insert(id.clone(), PhoneNumber::new(PHONE).unwrap());
    w.engine.start(&id).await.unwrap();
    w.wait_connected(&id).await;
    w.wait_status(&id, St::Ready, MINUTE).await;

    // The page loses its credentials (as after a damaged IndexedDB) and shows a QR.
    w.browser
        .set_state(&id, whatsapp_core::ConnectionState::Unpaired);
    w.wait_browser(MINUTE, |b| b.launches(&id) == 2).await;
    w.wait_connected(&id).await;
    w.wait_status(&id, St::Ready, MINUTE).await;
    assert_eq!(
        *w.backups.login_restores.lock().unwrap(),
        [(id.clone(), true)],
        "one restore of the login"
    );
    assert_eq!(w.notifier.count(&N::WhatsappManualDisconnect), 0);
    w.engine.shutdown().await;
}

/// Without a backup holding the login, the same loss ends in `logged_out` after one try,
/// with one e-mail, and no relaunch loop.
#[tokio::test(start_paused = true)]
async fn a_lost_login_without_backup_is_logged_out_after_one_try() {
    let w = World::new(quiet(), "2026-03-02T12:00:00Z");
    let id = w.linked("erin", PHONE).await;
    w.engine.start(&id).await.unwrap();
    w.wait_connected(&id).await;
    // The credentials on disk are damaged, and the page shows a QR.
    std::fs::write(
        w.dir
            .path()
            .join("erin")
            .join(whatsapp_core::testing::LOGIN_MARKER),
        b"\x00garbage",
    )
    .unwrap();
    w.browser
        .set_state(&id, whatsapp_core::ConnectionState::Unpaired);
    w.wait_status(&id, St::LoggedOut, MINUTE).await;
    tokio::time::sleep(HOUR).await;
    assert_eq!(
        *w.backups.login_restores.lock().unwrap(),
        [(id.clone(), false)]
    );
    assert_eq!(
        w.browser.launches(&id),
        2,
        "one relaunch, then it waits for a scan"
    );
    assert_eq!(w.notifier.count(&N::WhatsappManualDisconnect), 1);
    assert_eq!(w.status(&id).await, St::LoggedOut);
    w.engine.shutdown().await;
}

/// `stop` closes the browser and keeps the login; `start` brings it back without a QR.
#[tokio::test(start_paused = true)]
async fn stop_closes_the_browser_and_start_brings_it_back() {
    let w = World::new(KeepaliveConfig::default(), "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    w.wait_connected(&id).await;
    assert!(w.engine.start(&id).await.is_err(), "already running");
    w.engine.stop(&id).await.unwrap();
    assert!(!w.browser.live(&id));
    assert_eq!(w.status(&id).await, St::Stopped);
    assert!(w.engine.snapshot(&id).is_none());
    let activity = w.browser.activity_count(&id);
    tokio::time::sleep(HOUR).await;
    assert_eq!(w.browser.activity_count(&id), activity, "nothing runs");
    w.engine.start(&id).await.unwrap();
    w.wait_status(&id, St::Ready, MINUTE).await;
    assert!(w.notifier.sent().is_empty());
    w.engine.shutdown().await;
}

/// `logout` unlinks the device and sends `whatsapp_manual_disconnect`.
#[tokio::test(start_paused = true)]
async fn logout_unlinks_and_emails_manual_disconnect() {
    let w = World::new(KeepaliveConfig::default(), "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    w.wait_connected(&id).await;
    w.engine.logout(&id).await.unwrap();
    assert_eq!(w.browser.logout_calls(&id), 1);
    assert!(!w.browser.live(&id));
    assert_eq!(w.status(&id).await, St::LoggedOut);
    tokio::time::sleep(MINUTE).await;
    assert_eq!(w.notifier.count(&N::WhatsappManualDisconnect), 1);
    w.engine.shutdown().await;
}

/// Unlinked from the phone: status `logged_out`, one e-mail, and no reconnect storm.
#[tokio::test(start_paused = true)]
async fn an_unlink_from_the_phone_is_reported_once() {
    let w = World::new(KeepaliveConfig::default(), "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    w.wait_connected(&id).await;
    w.browser.unlink(&id);
    w.wait_status(&id, St::LoggedOut, MINUTE).await;
    tokio::time::sleep(6 * HOUR).await;
    assert_eq!(w.notifier.count(&N::WhatsappManualDisconnect), 1);
    assert_eq!(w.notifier.sent().len(), 1);
    assert_eq!(w.browser.reconnect_calls(&id), 0);
    assert_eq!(w.browser.launches(&id), 1);
    w.engine.shutdown().await;
}

/// A browser that stops answering is relaunched by the health check (every call times out
/// instead of hanging the session).
#[tokio::test(start_paused = true)]
async fn a_hung_browser_is_relaunched() {
    let w = World::new(KeepaliveConfig::default(), "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    w.wait_connected(&id).await;
    w.browser.hang(&id);
    w.wait_browser(10 * MINUTE, |b| b.launches(&id) == 2).await;
    w.wait_connected(&id).await;
    w.wait_status(&id, St::Ready, MINUTE).await;
    assert_eq!(w.notifier.count(&N::SessionError), 0);
    w.engine.shutdown().await;
}

/// `CONFLICT` is answered with a takeover.
#[tokio::test(start_paused = true)]
async fn a_conflict_is_taken_over() {
    let w = World::new(KeepaliveConfig::default(), "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    w.wait_connected(&id).await;
    w.browser.conflict(&id);
    w.wait_browser(Duration::from_secs(1), |b| {
        b.takeover_calls(&id) == 1 && b.state(&id) == Some(ConnectionState::Connected)
    })
    .await;
    w.engine.shutdown().await;
}

/// Many sessions started together: at most `launch_concurrency` launches at a time.
#[tokio::test(start_paused = true)]
async fn launches_are_bounded() {
    let mut c = quiet();
    c.runtime.launch_concurrency = 2;
    c.runtime.start_stagger = Duration::ZERO;
    let w = World::new(c, "2026-03-02T12:00:00Z");
    let mut ids = vec![];
    for i in 0..10 {
        let id = w.linked(&format!("s{i}"), &format!("3460000010{i}")).await;
        w.browser.hang_launches(&id);
        ids.push(id);
    }
    assert_eq!(w.engine.start_many(&ids).await.unwrap(), 10);
    let total = |b: &whatsapp_core::testing::FakeBrowser| -> usize {
        ids.iter().map(|id| b.launches(id)).sum()
    };
    w.wait_browser(MINUTE, |b| total(b) == 2).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(total(&w.browser), 2, "the others wait for a permit");
    for id in &ids {
        w.browser.unhang(id);
    }
    w.wait_browser(MINUTE, |b| ids.iter().all(|id| b.live(id)))
        .await;
    assert_eq!(total(&w.browser), 10);
    w.engine.shutdown().await;
    assert_eq!(w.browser.live_count(), 0, "shutdown closes every browser");
    for id in &ids {
        assert_eq!(
            w.status(id).await,
            St::Ready,
            "shutdown keeps statuses for restore"
        );
    }
}

/// Launches start at least `start_stagger` apart, even with permits to spare: a restore of
/// 20 sessions with a 1 s stagger launches one per second.
#[tokio::test(start_paused = true)]
async fn starts_are_staggered() {
    let mut c = quiet();
    c.runtime.start_stagger = Duration::from_secs(1);
    c.runtime.launch_concurrency = 100;
    let w = World::new(c, "2026-03-02T12:00:00Z");
    let mut ids: Vec<SessionId> = vec![];
    for i in 0..20 {
        ids.push(
            w.linked(&format!("s{i}"), &format!("346000001{i:02}"))
                .await,
        );
    }
    let restored = w.engine.restore().await.unwrap();
    assert_eq!(restored.len(), 20);
    let launched = || ids.iter().map(|id| w.browser.launches(id)).sum::<usize>();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(
        launched(),
        5,
        "one launch per second: at 0, 1, 2, 3 and 4 s"
    );
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(launched(), 20, "the twentieth at 19 s");
    for id in &ids {
        assert_eq!(w.browser.launches(id), 1, "{id} launched once");
    }
    w.engine.shutdown().await;
}

/// The start-up restore starts every session that was running when the server stopped —
/// including one killed mid-launch or right after its scan — and none stopped on purpose.
#[tokio::test(start_paused = true)]
async fn restore_starts_every_session_that_was_running() {
    let w = World::new(quiet(), "2026-03-02T12:00:00Z");
    let mut expected = Vec::new();
    for (name, status) in [
        ("a-ready", St::Ready),
        ("b-reconnecting", St::Reconnecting),
        ("c-disconnected", St::Disconnected),
        ("d-error", St::Error),
        ("e-starting", St::Starting),
        ("f-qr", St::Qr),
        ("g-authenticating", St::Authenticating),
        ("h-created", St::Created),
        ("i-stopped", St::Stopped),
        ("j-logged-out", St::LoggedOut),
    ] {
        let id = w.fresh(name).await;
        w.store
            .transition(&id, &[], status, whatsapp_core::Clock::now(&w.clock))
            .await
            .unwrap();
        if status.restores_at_start() {
            expected.push(id);
        }
    }
    let mut started = w.engine.restore().await.unwrap();
    started.sort();
    assert_eq!(started, expected);
    assert_eq!(w.engine.running(), expected);
    w.engine.shutdown().await;
}
