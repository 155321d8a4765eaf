//! Issue 4's end-to-end promise on real Chromium and the emulator: link a session, back it up
//! while it runs, delete its profile, restore, relaunch → `CONNECTED` without a QR. Once
//! through the local sink and once through S3 (moto on loopback), encrypted.

use std::sync::Arc;

use whatsapp_core::{BackupSink, ConnectionState, PhoneNumber, SessionId, SystemClock};
use whatsapp_storage::backup::{
    BackupConfig, BackupManager, EncryptionKey, LocalBackupSink, RestoreOutcome, S3BackupSink,
};
use whatsapp_tests::s3::MotoServer;
use whatsapp_tests::stack::{Stack, wait_for_state};

async fn backup_running_session_then_restore_without_qr(
    stack: &Stack,
    sink: Arc<dyn BackupSink>,
    id: &str,
) {
    let id = SessionId::new(id).unwrap();
    let phone = PhoneNumber::new("34600000001").unwrap();
    let mut config = BackupConfig::new(stack.root.path().join("backup-work"));
    config.encryption_key = Some(EncryptionKey::generate());
    let manager = BackupManager::new(sink, Arc::new(SystemClock), config);
    let client = stack.client();

    // Link, then back up while the browser is running (the consistency case).
    let session = stack.launch(&id).await;
    stack.link(session.as_ref(), &phone).await;
    let record = manager
        .backup_session(&id, &stack.profile(&id))
        .await
        .expect("backup of a running session");
    assert!(
        record.verified,
        "the backup failed verification: {record:?}"
    );
    assert!(record.encrypted);
    session.close().await.expect("graceful close");

    // Lose the disk: the profile is gone.
    std::fs::remove_dir_all(stack.profile(&id)).expect("delete the profile");
    let scans_before = client.devices().await.unwrap().len();

    let outcome = manager
        .restore(&id, &stack.profile(&id))
        .await
        .expect("restore");
    assert!(
        matches!(outcome, RestoreOutcome::Backup { .. }),
        "expected a restore from the backup, got {outcome:?}"
    );

    // Relaunch: the login comes back from the restored profile, with no scan.
    let session = stack.launch(&id).await;
    let mut events = session.subscribe();
    wait_for_state(session.as_ref(), &mut events, ConnectionState::Connected).await;
    let info = session
        .account_info()
        .await
        .unwrap()
        .expect("account info after restore");
    assert_eq!(info.wid, phone.wid(), "restored into the same account");
    assert!(session.qr().await.unwrap().is_none(), "no QR after restore");
    let devices = client.devices().await.unwrap();
    assert!(
        devices.len() >= scans_before,
        "the emulator lost track of devices"
    );
    session.close().await.unwrap();

    // A second restore with the profile intact takes the disk path.
    let outcome = manager
        .restore(&id, &stack.profile(&id))
        .await
        .expect("second restore");
    assert_eq!(outcome.path(), "disk", "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_from_local_backup_reconnects_without_qr() {
    let stack = Stack::start().await;
    let sink = Arc::new(LocalBackupSink::new(stack.root.path().join("backups")));
    backup_running_session_then_restore_without_qr(&stack, sink, "local-e2e").await;

    // Control: without a restored profile the same launch needs a QR, so the test above
    // really depends on the backup.
    let fresh = SessionId::new("local-e2e-control").unwrap();
    let session = stack.launch(&fresh).await;
    let mut events = session.subscribe();
    wait_for_state(session.as_ref(), &mut events, ConnectionState::Unpaired).await;
    assert!(
        session.qr().await.unwrap().is_some(),
        "a fresh profile shows a QR"
    );
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_from_s3_backup_reconnects_without_qr() {
    let s3 = MotoServer::start();
    let stack = Stack::start().await;
    let sink = Arc::new(
        S3BackupSink::new(s3.bucket("whatsapp-backups", "e2e")).expect("S3 sink configuration"),
    );
    backup_running_session_then_restore_without_qr(&stack, sink, "s3-e2e").await;
}
