//! LocalBackupSink: the BackupSink conformance suite, plus what is specific to files.

use std::fs;

use bytes::Bytes;
use futures::StreamExt;
use whatsapp_core::{BackupKey, BackupSink, Error};
use whatsapp_storage::backup::LocalBackupSink;

#[tokio::test]
async fn local_sink_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalBackupSink::new(dir.path().join("backups"));
    whatsapp_core::testing::conformance::backup_sink::run_all(&sink).await;
}

#[tokio::test]
async fn temporary_files_are_never_listed_and_a_failed_put_leaves_none() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalBackupSink::new(dir.path());
    let key = BackupKey::new("alice/a.tar.zst").unwrap();
    sink.put(
        &key,
        futures::stream::once(async { Ok(Bytes::from_static(b"v1")) }).boxed(),
    )
    .await
    .unwrap();
    // A stranger file whose name is not a valid key (like a temporary file) is not listed.
    fs::write(dir.path().join("alice/a.tar.zst~tmp~123"), b"partial").unwrap();
    fs::write(dir.path().join("alice/has space"), b"x").unwrap();
    let listed: Vec<_> = sink
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(listed, vec![key.clone()]);
    fs::remove_file(dir.path().join("alice/a.tar.zst~tmp~123")).unwrap();

    let failing = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"v2 part")),
        Err(Error::unavailable("upload body", "connection reset")),
    ])
    .boxed();
    assert!(sink.put(&key, failing).await.is_err());
    let mut names: Vec<_> = fs::read_dir(dir.path().join("alice"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["a.tar.zst", "has space"],
        "no temporary file left"
    );
    let mut body = sink.get(&key).await.unwrap();
    assert_eq!(
        body.next().await.unwrap().unwrap(),
        Bytes::from_static(b"v1")
    );
}

#[tokio::test]
async fn deleting_the_last_object_tidies_empty_directories() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    let sink = LocalBackupSink::new(&root);
    let key = BackupKey::new("alice/deep/x.json").unwrap();
    sink.put(
        &key,
        futures::stream::once(async { Ok(Bytes::from_static(b"{}")) }).boxed(),
    )
    .await
    .unwrap();
    sink.delete(&key).await.unwrap();
    assert!(!root.join("alice").exists());
    assert!(root.exists());
    assert!(matches!(
        sink.get(&key).await.err().unwrap(),
        Error::NotFound { .. }
    ));
}
