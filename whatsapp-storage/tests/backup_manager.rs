//! BackupManager on a local sink: backup and verification, restore paths (disk, backup,
//! none), failed restores, bad backups, retention with a FakeClock, encryption.

#[path = "backup_support.rs"]
mod support;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use whatsapp_core::Clock;
use whatsapp_core::testing::FakeClock;
use whatsapp_core::{
    BackupKey, BackupSink, ByteStream, Error, ObjectMeta, Result, SessionId, SinkCapabilities,
};
use whatsapp_storage::backup::{
    BackupConfig, BackupManager, BackupOwner, EncryptionKey, LocalBackupSink, RestoreOutcome,
};

fn t0() -> DateTime<Utc> {
    "2026-03-01T02:00:00Z".parse().unwrap()
}

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A local sink whose `get` can be told to flip a byte (a bit rot or a broken upload).
#[derive(Debug)]
struct RottingSink {
    inner: LocalBackupSink,
    rot: AtomicBool,
}

#[async_trait]
impl BackupSink for RottingSink {
    fn name(&self) -> &'static str {
        "rotting"
    }
    fn capabilities(&self) -> SinkCapabilities {
        self.inner.capabilities()
    }
    async fn put(&self, key: &BackupKey, body: ByteStream) -> Result<ObjectMeta> {
        self.inner.put(key, body).await
    }
    async fn get(&self, key: &BackupKey) -> Result<ByteStream> {
        let s = self.inner.get(key).await?;
        if !self.rot.load(Ordering::SeqCst) || key.as_str().ends_with(".json") {
            return Ok(s);
        }
        let mut first = true;
        Ok(s.map(move |c| {
            c.map(|b| {
                if first && b.len() > 100 {
                    first = false;
                    let mut v = b.to_vec();
                    v[100] ^= 0x55;
                    Bytes::from(v)
                } else {
                    b
                }
            })
        })
        .boxed())
    }
    async fn head(&self, key: &BackupKey) -> Result<ObjectMeta> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &BackupKey) -> Result<()> {
        self.inner.delete(key).await
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    sink: Arc<RottingSink>,
    clock: FakeClock,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let sink = Arc::new(RottingSink {
            inner: LocalBackupSink::new(root.join("backups")),
            rot: AtomicBool::new(false),
        });
        Fixture {
            _dir: dir,
            root,
            sink,
            clock: FakeClock::new(t0()),
        }
    }

    fn config(&self) -> BackupConfig {
        BackupConfig::new(self.root.join("work"))
    }

    fn manager(&self, config: BackupConfig) -> BackupManager {
        BackupManager::new(self.sink.clone(), Arc::new(self.clock.clone()), config)
    }

    fn profile(&self, name: &str) -> std::path::PathBuf {
        self.root.join("sessions").join(name)
    }
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

fn damage(profile: &Path) {
    fs::remove_file(profile.join(support::IDB).join("CURRENT")).unwrap();
}

fn assert_same_selection(a: &Path, b: &Path) {
    for f in support::expected_files() {
        assert_eq!(
            fs::read(a.join(&f)).unwrap(),
            fs::read(b.join(&f)).unwrap(),
            "{}",
            f.display()
        );
    }
}

#[tokio::test]
async fn backup_is_verified_and_restore_takes_disk_backup_or_none() {
    let fx = Fixture::new();
    let m = fx.manager(fx.config());
    let id = sid("alice");
    let profile = fx.profile("alice");
    support::fake_profile(&profile, 1);
    let original = tempfile::tempdir().unwrap();
    support::fake_profile(original.path(), 1);

    let rec = m.backup_session(&id, &profile).await.unwrap();
    assert!(rec.verified);
    assert_eq!(rec.created_at, t0());
    assert_eq!(rec.manifest.files.len(), support::expected_files().len());
    assert!(
        rec.key.as_str().starts_with("alice/20260301T020000.000Z-"),
        "{}",
        rec.key
    );
    assert!(rec.key.as_str().ends_with(".tar.zst"));
    assert_eq!(m.newest_verified(&id).await.unwrap().unwrap(), rec);
    // The staging area is cleaned up.
    assert!(fs::read_dir(fx.root.join("work")).unwrap().next().is_none());

    // Intact profile: disk, lock files cleaned, nothing else touched.
    assert_eq!(
        m.restore(&id, &profile).await.unwrap(),
        RestoreOutcome::Disk
    );
    assert!(fs::symlink_metadata(profile.join("SingletonLock")).is_err());
    assert!(!profile.join("SingletonCookie").exists());
    assert!(!profile.join("Default/SingletonSocket").exists());
    assert!(profile.join("Default/Cache/Cache_Data/f_000001").exists());

    // Damaged profile: restored from the backup.
    damage(&profile);
    match m.restore(&id, &profile).await.unwrap() {
        RestoreOutcome::Backup {
            key,
            created_at,
            problems,
        } => {
            assert_eq!(key, rec.key);
            assert_eq!(created_at, t0());
            assert!(
                problems.iter().any(|p| p.contains("CURRENT")),
                "{problems:?}"
            );
        }
        other => panic!("expected a restore from backup, got {other:?}"),
    }
    assert_same_selection(original.path(), &profile);
    whatsapp_storage::backup::critical_files_ok(&profile, "https://web.whatsapp.com").unwrap();
    // The damaged profile was kept aside, no temporary directory left behind.
    let sessions: Vec<String> = fs::read_dir(fx.root.join("sessions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut sessions = sessions;
    sessions.sort();
    assert_eq!(sessions, vec![".alice.before-restore", "alice"]);

    // Missing profile, no backup for that session: none.
    let bob = fx.profile("bob");
    match m.restore(&sid("bob"), &bob).await.unwrap() {
        RestoreOutcome::None { reason } => {
            assert!(reason.contains("no verified backup"), "{reason}")
        }
        other => panic!("expected none, got {other:?}"),
    }
    // Missing profile with a backup: restored into place.
    fs::remove_dir_all(&profile).unwrap();
    assert_eq!(m.restore(&id, &profile).await.unwrap().path(), "backup");
    assert_same_selection(original.path(), &profile);
}

#[tokio::test]
async fn a_profile_without_a_login_is_not_backed_up() {
    let fx = Fixture::new();
    let m = fx.manager(fx.config());
    let profile = fx.profile("alice");
    support::fake_profile(&profile, 1);
    damage(&profile);
    let e = m.backup_session(&sid("alice"), &profile).await.unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e:?}");
    assert!(m.list(&sid("alice")).await.unwrap().is_empty());
    let e = m
        .backup_session(&sid("alice"), &fx.profile("nobody"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
}

#[tokio::test]
async fn a_failed_restore_leaves_the_previous_profile_untouched() {
    let fx = Fixture::new();
    let m = fx.manager(fx.config());
    let id = sid("alice");
    let profile = fx.profile("alice");
    support::fake_profile(&profile, 1);
    let rec = m.backup_session(&id, &profile).await.unwrap();

    // The stored archive is replaced by a hostile one (its record still says verified).
    let evil = {
        let enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        let mut b = tar::Builder::new(enc);
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..7].copy_from_slice(b"../evil");
        h.set_size(4);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &b"evil"[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap()
    };
    fx.sink
        .put(
            &rec.key,
            futures::stream::once(async move { Ok(Bytes::from(evil)) }).boxed(),
        )
        .await
        .unwrap();

    damage(&profile);
    let before = support::snapshot_tree(&profile);
    match m.restore(&id, &profile).await.unwrap() {
        RestoreOutcome::None { reason } => {
            assert!(reason.contains("every verified backup failed"), "{reason}");
            assert!(reason.contains("'..'"), "{reason}");
        }
        other => panic!("expected none, got {other:?}"),
    }
    assert_eq!(
        support::snapshot_tree(&profile),
        before,
        "the profile changed"
    );
    let entries: Vec<_> = fs::read_dir(fx.root.join("sessions"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        entries,
        vec![std::ffi::OsString::from("alice")],
        "leftovers"
    );
    assert!(!fx.root.join("sessions/evil").exists() && !fx.root.join("evil").exists());
}

#[tokio::test]
async fn a_backup_that_fails_verification_is_marked_bad_and_never_restored() {
    let fx = Fixture::new();
    let m = fx.manager(fx.config());
    let id = sid("alice");
    let profile = fx.profile("alice");
    support::fake_profile(&profile, 1);
    let good = m.backup_session(&id, &profile).await.unwrap();

    fx.clock.advance(DAY);
    fx.sink.rot.store(true, Ordering::SeqCst);
    let e = m.backup_session(&id, &profile).await.unwrap_err();
    fx.sink.rot.store(false, Ordering::SeqCst);
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert!(e.to_string().contains("marked bad"), "{e}");

    let all = m.list(&id).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].verified && !all[1].verified);
    assert!(
        all[1].failure.as_deref().unwrap().contains("sha256"),
        "{:?}",
        all[1].failure
    );
    assert_eq!(m.newest_verified(&id).await.unwrap().unwrap().key, good.key);

    damage(&profile);
    match m.restore(&id, &profile).await.unwrap() {
        RestoreOutcome::Backup { key, .. } => assert_eq!(key, good.key),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn restore_falls_back_to_an_older_backup_when_the_newest_is_damaged() {
    let fx = Fixture::new();
    let m = fx.manager(fx.config());
    let id = sid("alice");
    let profile = fx.profile("alice");
    support::fake_profile(&profile, 1);
    let older = m.backup_session(&id, &profile).await.unwrap();
    fx.clock.advance(DAY);
    let newer = m.backup_session(&id, &profile).await.unwrap();
    // Bit rot after verification.
    let path = fx.root.join("backups").join(newer.key.as_str());
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&path, bytes).unwrap();

    damage(&profile);
    match m.restore(&id, &profile).await.unwrap() {
        RestoreOutcome::Backup { key, .. } => assert_eq!(key, older.key),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn retention_deletes_old_backups_but_never_the_newest_verified_one() {
    let fx = Fixture::new();
    let m = fx.manager(fx.config());
    let alice = sid("alice");
    let bob = sid("bob");
    let pa = fx.profile("alice");
    let pb = fx.profile("bob");
    support::fake_profile(&pa, 1);
    support::fake_profile(&pb, 2);

    // alice: day 0, 10, 20, 40. bob: verified on day 0, a bad one on day 5.
    let a0 = m.backup_session(&alice, &pa).await.unwrap();
    let b0 = m.backup_session(&bob, &pb).await.unwrap();
    fx.clock.advance(5 * DAY);
    fx.sink.rot.store(true, Ordering::SeqCst);
    assert!(m.backup_session(&bob, &pb).await.is_err());
    fx.sink.rot.store(false, Ordering::SeqCst);
    fx.clock.advance(5 * DAY);
    let a10 = m.backup_session(&alice, &pa).await.unwrap();
    fx.clock.advance(10 * DAY);
    let a20 = m.backup_session(&alice, &pa).await.unwrap();
    fx.clock.advance(20 * DAY);
    let a40 = m.backup_session(&alice, &pa).await.unwrap();
    // An interrupted backup (archive without a record) from day 1, by its key.
    let orphan = BackupKey::new("alice/20260302T020000.000Z-0a0b0c0d0e0f.tar.zst").unwrap();
    fx.sink
        .put(
            &orphan,
            futures::stream::once(async { Ok(Bytes::from_static(b"partial")) }).boxed(),
        )
        .await
        .unwrap();

    // Day 45: the cutoff is day 15.
    fx.clock.advance(5 * DAY);
    let report = m.apply_retention(None).await.unwrap();
    assert!(report.deleted.contains(&a0.key) && report.deleted.contains(&a0.record_key));
    assert!(report.deleted.contains(&a10.key));
    assert!(report.deleted.contains(&orphan));
    assert_eq!(report.kept_newest, vec![b0.key.clone()]);

    let alice_left: Vec<_> = m
        .list(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(alice_left, vec![a20.key.clone(), a40.key.clone()]);
    let bob_left: Vec<_> = m
        .list(&bob)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(
        bob_left,
        vec![b0.key.clone()],
        "bob's bad backup goes, his only verified one stays"
    );
    let all = fx.sink.list("").await.unwrap();
    assert_eq!(all.len(), 6, "3 archives + 3 records: {all:?}");

    // Running it again changes nothing; one session at a time works too.
    assert!(
        m.apply_retention(Some(&alice))
            .await
            .unwrap()
            .deleted
            .is_empty()
    );
    // Day 75 with a 30-day retention: only the newest verified backups remain.
    fx.clock.advance(30 * DAY);
    m.apply_retention(None).await.unwrap();
    let left: Vec<_> = fx
        .sink
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let mut want = vec![
        a40.key.clone(),
        a40.record_key.clone(),
        b0.key.clone(),
        b0.record_key.clone(),
    ];
    want.sort();
    assert_eq!(left, want);

    // A configurable retention.
    let mut cfg = fx.config();
    cfg.retention = 100 * DAY;
    let m2 = fx.manager(cfg);
    fx.clock.advance(DAY);
    let a76 = m2.backup_session(&alice, &pa).await.unwrap();
    assert!(m2.apply_retention(None).await.unwrap().deleted.is_empty());
    assert_eq!(m2.list(&alice).await.unwrap().len(), 2);
    assert_eq!(
        m2.newest_verified(&alice).await.unwrap().unwrap().key,
        a76.key
    );
}

#[tokio::test]
async fn encrypted_backups_round_trip_and_a_wrong_key_is_a_clear_error() {
    let fx = Fixture::new();
    let key = EncryptionKey::generate();
    let mut cfg = fx.config();
    cfg.encryption_key = Some(key.clone());
    let m = fx.manager(cfg);
    let id = sid("alice");
    let profile = fx.profile("alice");
    support::fake_profile(&profile, 1);
    let marker = b"PLAINTEXT-MARKER-THAT-MUST-NOT-LEAK-0123456789";
    fs::write(profile.join("Local State"), marker).unwrap();

    let rec = m.backup_session(&id, &profile).await.unwrap();
    assert!(rec.encrypted && rec.verified);
    assert!(rec.key.as_str().ends_with(".tar.zst.enc"));
    assert_eq!(rec.key_id, Some(key.id()));
    let stored = fs::read(fx.root.join("backups").join(rec.key.as_str())).unwrap();
    assert!(stored.starts_with(b"WABKENC1"));
    assert!(
        !stored.windows(marker.len()).any(|w| w == marker),
        "plaintext leaked"
    );

    // Same key: restores.
    let original = support::snapshot_tree(&profile);
    damage(&profile);
    assert_eq!(m.restore(&id, &profile).await.unwrap().path(), "backup");
    let restored = support::snapshot_tree(&profile);
    for (rel, data) in &restored {
        let was = original.iter().find(|(r, _)| r == rel).unwrap();
        assert_eq!(&was.1, data, "{}", rel.display());
    }

    // Wrong key: a clear error, not "none" (which would ask for a new QR), profile untouched.
    let mut cfg = fx.config();
    cfg.encryption_key = Some(EncryptionKey::generate());
    let wrong = fx.manager(cfg);
    damage(&profile);
    let before = support::snapshot_tree(&profile);
    let e = wrong.restore(&id, &profile).await.unwrap_err();
    assert!(e.to_string().contains("wrong key"), "{e}");
    assert_eq!(support::snapshot_tree(&profile), before);

    // No key at all.
    let nokey = fx.manager(fx.config());
    let e = nokey.restore(&id, &profile).await.unwrap_err();
    assert!(e.to_string().contains("no key is configured"), "{e}");

    // Below the record check, the decryption itself names the wrong key.
    let mut forged = rec.clone();
    forged.key_id = None;
    let mut cfg = fx.config();
    cfg.encryption_key = Some(EncryptionKey::generate());
    let e = fx
        .manager(cfg)
        .restore_from(&forged, &profile)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert!(e.to_string().contains("wrong key or damaged backup"), "{e}");
    assert_eq!(support::snapshot_tree(&profile), before);
}

#[tokio::test]
async fn a_tampered_encrypted_archive_is_corrupt() {
    let fx = Fixture::new();
    let mut cfg = fx.config();
    cfg.encryption_key = Some(EncryptionKey::generate());
    let m = fx.manager(cfg);
    let id = sid("alice");
    let profile = fx.profile("alice");
    support::fake_profile(&profile, 1);
    let rec = m.backup_session(&id, &profile).await.unwrap();
    let path = fx.root.join("backups").join(rec.key.as_str());
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, bytes).unwrap();
    let e = m.restore_from(&rec, &fx.profile("copy")).await.unwrap_err();
    assert!(e.to_string().contains("wrong key or damaged backup"), "{e}");
    assert!(!fx.profile("copy").exists());
}

fn tenant(t: &str) -> whatsapp_core::TenantId {
    whatsapp_core::TenantId::new(t).unwrap()
}

/// A restore takes only backups of the same instance and tenant taken since the current
/// link; a backup of the same login taken later is still taken.
#[tokio::test]
async fn restore_refuses_other_tenants_other_instances_and_pre_link_backups() {
    let fx = Fixture::new();
    let m = fx.manager(fx.config());
    let id = sid("inst1");
    let profile = fx.profile("inst1");
    support::fake_profile(&profile, 1);
    let owner_b = BackupOwner {
        session: id.clone(),
        tenant: Some(tenant("tenant-b")),
        not_before: None,
    };
    let old = m.backup_owned(&owner_b, &profile).await.unwrap();
    assert_eq!(old.tenant, Some(tenant("tenant-b")));

    // Another tenant claiming the same instance id gets nothing.
    let owner_a = BackupOwner {
        tenant: Some(tenant("tenant-a")),
        ..owner_b.clone()
    };
    let e = owner_a.admits(&old).unwrap_err();
    assert!(e.to_string().contains("another tenant"), "{e}");
    damage(&profile);
    assert_eq!(
        m.restore_owned(&owner_a, &profile).await.unwrap().path(),
        "none"
    );
    // Another instance gets nothing either.
    let other = BackupOwner::session(&sid("inst2"));
    assert!(
        other
            .admits(&old)
            .unwrap_err()
            .to_string()
            .contains("another session instance")
    );

    // Linked again after that backup: the old backup holds an earlier login.
    fx.clock.advance(DAY);
    let relinked = BackupOwner {
        not_before: Some(fx.clock.now()),
        ..owner_b.clone()
    };
    let e = relinked.admits(&old).unwrap_err();
    assert!(
        e.to_string().contains("before the session's current login"),
        "{e}"
    );
    assert_eq!(
        m.restore_owned(&relinked, &profile).await.unwrap().path(),
        "none"
    );
    assert!(m.newest_restorable(&relinked).await.unwrap().is_none());
    // A backup taken since the link is restored.
    support::fake_profile(&profile, 2);
    fx.clock.advance(DAY);
    let new = m.backup_owned(&owner_b, &profile).await.unwrap();
    damage(&profile);
    match m.restore_owned(&relinked, &profile).await.unwrap() {
        RestoreOutcome::Backup { key, .. } => assert_eq!(key, new.key),
        other => panic!("expected the post-link backup, got {other:?}"),
    }
}

/// Quarantine moves a deleted instance's backups out of its listing, keeps them for the
/// admin, gives them back on recovery, and purges them after the retention.
#[tokio::test]
async fn quarantine_hides_recovers_and_purges_a_deleted_sessions_backups() {
    let fx = Fixture::new();
    let m = fx.manager(fx.config());
    let id = sid("gone1");
    let profile = fx.profile("gone1");
    support::fake_profile(&profile, 1);
    let rec = m.backup_session(&id, &profile).await.unwrap();
    let moved = m
        .quarantine(&id, Some(&tenant("tb")), Some(&sid("victim")))
        .await
        .unwrap();
    assert_eq!(moved, 2, "archive and record");
    assert!(m.list(&id).await.unwrap().is_empty(), "no longer listed");
    assert!(m.sessions_with_backups().await.unwrap().is_empty());
    let q = m.list_quarantined().await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].session, id);
    assert_eq!(q[0].tenant, Some(tenant("tb")));
    assert_eq!(q[0].name, Some(sid("victim")));
    assert_eq!(q[0].objects, 2);
    // Retention ignores quarantine; a purge before its time keeps it.
    m.prune_before(None, fx.clock.now() + chrono::Duration::days(100))
        .await
        .unwrap();
    assert!(
        m.purge_quarantined(fx.clock.now())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(m.list_quarantined().await.unwrap().len(), 1);

    // Recovered: listed again, the same backup.
    m.recover_quarantined(&id).await.unwrap();
    assert_eq!(m.newest_verified(&id).await.unwrap().unwrap(), rec);
    assert!(m.list_quarantined().await.unwrap().is_empty());

    // Quarantined again and purged after the retention.
    m.quarantine(&id, None, None).await.unwrap();
    fx.clock.advance(8 * DAY);
    let purged = m
        .purge_quarantined(fx.clock.now() - chrono::Duration::days(7))
        .await
        .unwrap();
    assert_eq!(purged, vec![id.clone()]);
    assert!(m.list_quarantined().await.unwrap().is_empty());
    assert!(m.list(&id).await.unwrap().is_empty());
}
