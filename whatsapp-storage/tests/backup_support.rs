//! Shared helpers of the backup tests (included with `#[path]`; compiled alone it only runs
//! its own sanity test).
#![allow(dead_code, missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};

use whatsapp_storage::backup::leveldb::write_fake_db;

pub(crate) const IDB: &str = "Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb";
pub(crate) const LS: &str = "Default/Local Storage/leveldb";

/// Deterministic filler: `len` bytes from `seed`, half text-like, half noise.
pub(crate) fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (i / 64) % 2 == 0 {
                b"abcdefghij"[(x % 10) as usize]
            } else {
                x as u8
            }
        })
        .collect()
}

/// A small logged-in-looking profile: WhatsApp's IndexedDB, Local Storage, Session Storage,
/// preferences, plus everything a backup must leave out (caches, another origin, lock files).
pub(crate) fn fake_profile(root: &Path, seed: u64) {
    write_fake_db(
        &root.join(IDB),
        &[(5, filler(seed, 20_000)), (9, filler(seed + 1, 7_000))],
        &filler(seed + 2, 3_000),
    )
    .unwrap();
    let blob = root.join("Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.blob/1/00");
    fs::create_dir_all(&blob).unwrap();
    fs::write(blob.join("3"), filler(seed + 3, 1_000)).unwrap();
    write_fake_db(&root.join(LS), &[(3, filler(seed + 4, 2_000))], b"ls-log").unwrap();
    write_fake_db(
        &root.join("Default/Session Storage"),
        &[],
        b"session-storage-log",
    )
    .unwrap();
    fs::write(
        root.join("Default/Preferences"),
        br#"{"profile":{"exit_type":"Normal"}}"#,
    )
    .unwrap();
    fs::write(root.join("Local State"), br#"{"browser":{}}"#).unwrap();

    // Never archived:
    for (p, n) in [
        ("Default/Cache/Cache_Data/f_000001", 5_000),
        ("Default/Code Cache/js/index-dir/the-real-index", 100),
        ("Default/GPUCache/data_0", 100),
        ("Default/Service Worker/CacheStorage/abc/index", 100),
        ("ShaderCache/data_1", 100),
        (
            "Default/IndexedDB/https_other.example_0.indexeddb.leveldb/000003.log",
            100,
        ),
    ] {
        let f = root.join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, filler(seed + 9, n)).unwrap();
    }
    fs::write(root.join("SingletonCookie"), b"1").unwrap();
    fs::write(root.join("Default/SingletonSocket"), b"").unwrap();
    #[cfg(unix)]
    {
        let _ = std::os::unix::fs::symlink("host-12345", root.join("SingletonLock"));
    }
}

/// The files a backup of [`fake_profile`] must contain, sorted.
pub(crate) fn expected_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = [
        format!("{IDB}/000005.ldb"),
        format!("{IDB}/000009.ldb"),
        format!("{IDB}/000010.log"),
        format!("{IDB}/MANIFEST-000011"),
        format!("{IDB}/CURRENT"),
        "Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.blob/1/00/3".into(),
        format!("{LS}/000003.ldb"),
        format!("{LS}/000004.log"),
        format!("{LS}/MANIFEST-000005"),
        format!("{LS}/CURRENT"),
        "Default/Session Storage/000002.log".into(),
        "Default/Session Storage/MANIFEST-000003".into(),
        "Default/Session Storage/CURRENT".into(),
        "Default/Preferences".into(),
        "Local State".into(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect();
    v.sort();
    v
}

/// Every file under `root` with its contents, for before/after comparisons.
pub(crate) fn snapshot_tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    whatsapp_storage::backup::archive::list_tree(root)
        .into_iter()
        .map(|rel| {
            let full = root.join(&rel);
            let data = fs::read(&full).unwrap_or_default();
            (rel, data)
        })
        .collect()
}

#[test]
fn fake_profile_is_a_login() {
    let d = tempfile::tempdir().unwrap();
    fake_profile(d.path(), 1);
    whatsapp_storage::backup::critical_files_ok(d.path(), "https://web.whatsapp.com").unwrap();
}
