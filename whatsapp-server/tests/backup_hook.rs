//! `ManagedBackup`: the keepalive engine's backup hook on top of `BackupManager`.

use std::sync::Arc;
use std::time::Duration;

use whatsapp_core::testing::{FakeClock, MemoryBackupSink};
use whatsapp_core::{Clock, SessionId};
use whatsapp_keepalive::SessionBackup;
use whatsapp_server::backup::ManagedBackup;
use whatsapp_storage::backup::leveldb::write_fake_db;
use whatsapp_storage::backup::{BackupConfig, BackupManager};

/// A profile that passes the critical-files check: WhatsApp's IndexedDB and Local Storage.
fn logged_in_profile(dir: &std::path::Path) {
    write_fake_db(
        &dir.join("Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb"),
        &[(5, b"keys".repeat(500))],
        b"idb-log",
    )
    .unwrap();
    write_fake_db(
        &dir.join("Default/Local Storage/leveldb"),
        &[(3, b"ls".repeat(100))],
        b"ls-log",
    )
    .unwrap();
}

#[tokio::test]
async fn backs_up_verified_and_prunes_by_the_engines_cut_off_keeping_the_newest() {
    let root = tempfile::tempdir().unwrap();
    let sessions = root.path().join("sessions");
    let clock = FakeClock::new("2026-03-01T02:00:00Z".parse().unwrap());
    let clock_dyn: Arc<dyn Clock> = Arc::new(clock.clone());
    let sink = Arc::new(MemoryBackupSink::with_clock(Arc::clone(&clock_dyn)));
    let manager = Arc::new(BackupManager::new(
        sink,
        clock_dyn,
        BackupConfig::new(root.path().join("work")),
    ));
    let hook = ManagedBackup::new(Arc::clone(&manager), &sessions);
    let id = SessionId::new("alice").unwrap();
    logged_in_profile(&sessions.join("alice"));

    hook.backup(&id).await.expect("first backup");
    clock.advance(Duration::from_secs(40 * 86_400));
    hook.backup(&id).await.expect("second backup");
    let all = manager.list(&id).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|r| r.verified));

    // The engine's cut-off (30 days before now) removes the old one only.
    let cut = clock.now() - chrono::Duration::days(30);
    assert_eq!(
        hook.prune(&id, cut).await.unwrap(),
        2,
        "archive + record of the old backup"
    );
    let left = manager.list(&id).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].created_at, clock.now());

    // Even a cut-off after every backup keeps the newest verified one.
    let later = clock.now() + chrono::Duration::days(1);
    assert_eq!(hook.prune(&id, later).await.unwrap(), 0);
    assert_eq!(manager.list(&id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_missing_profile_is_an_error_not_a_backup() {
    let root = tempfile::tempdir().unwrap();
    let manager = Arc::new(BackupManager::new(
        Arc::new(MemoryBackupSink::new()),
        Arc::new(FakeClock::new("2026-03-01T02:00:00Z".parse().unwrap())),
        BackupConfig::new(root.path().join("work")),
    ));
    let hook = ManagedBackup::new(Arc::clone(&manager), root.path().join("sessions"));
    let id = SessionId::new("ghost").unwrap();
    assert!(hook.backup(&id).await.is_err());
    assert!(manager.list(&id).await.unwrap().is_empty());
}
