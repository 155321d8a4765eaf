//! Backup size and time per logged-in profile, and restore time, against a zip of the whole
//! profile. Not a test: it prints a table and writes `target/bench/backup.json`.
//!
//! Run with: `cargo bench -p whatsapp-storage --bench backup`
//! (`BENCH_RUNS=n` repeats each measurement n times and reports the median; default 3.)
//!
//! The profile is synthetic but shaped like a logged-in WhatsApp Web profile: an IndexedDB
//! of ~40 MB in 2 MB LevelDB tables (Snappy-compressed data in real life, so only partly
//! compressible), ~5 MB of blobs (media thumbnails, incompressible), Local and Session
//! Storage, and ~280 MB of caches (HTTP cache, code cache, the service worker's cache
//! storage, GPU cache) that a whole-profile zip carries and our backup leaves out.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use whatsapp_core::{SessionId, SystemClock};
use whatsapp_storage::backup::leveldb::write_fake_db;
use whatsapp_storage::backup::{
    BackupConfig, BackupManager, EncryptionKey, LocalBackupSink, RestoreOutcome,
};

const MB: usize = 1 << 20;

/// Deterministic bytes; `text` of every 64 bytes is drawn from 10 letters, the rest noise.
fn filler(seed: u64, len: usize, text_per_64: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 64 < text_per_64 {
                b"abcdefghij"[(x % 10) as usize]
            } else {
                x as u8
            }
        })
        .collect()
}

fn write(p: &Path, data: &[u8]) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn build_profile(root: &Path) {
    let idb = root.join("Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb");
    let tables: Vec<(u64, Vec<u8>)> = (0..20)
        .map(|i| (100 + i as u64, filler(i as u64, 2 * MB, 40)))
        .collect();
    write_fake_db(&idb, &tables, &filler(99, 2 * MB, 48)).unwrap();
    let blob = root.join("Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.blob/1/00");
    for i in 0..50 {
        write(
            &blob.join(format!("{i:x}")),
            &filler(200 + i, 100 * 1024, 0),
        );
    }
    write_fake_db(
        &root.join("Default/Local Storage/leveldb"),
        &[(5, filler(300, 2 * MB, 56))],
        &filler(301, 64 * 1024, 56),
    )
    .unwrap();
    write_fake_db(
        &root.join("Default/Session Storage"),
        &[(3, filler(302, 200 * 1024, 56))],
        b"",
    )
    .unwrap();
    write(
        &root.join("Default/Preferences"),
        &filler(303, 60 * 1024, 60),
    );
    write(&root.join("Local State"), &filler(304, 8 * 1024, 60));
    // What a whole-profile zip carries and the backup leaves out.
    for i in 0..1500u64 {
        write(
            &root.join(format!("Default/Cache/Cache_Data/f_{i:06x}")),
            &filler(1000 + i, 100 * 1024, 8),
        );
    }
    for i in 0..400u64 {
        write(
            &root.join(format!("Default/Code Cache/js/{i:016x}_0")),
            &filler(3000 + i, 100 * 1024, 32),
        );
    }
    for i in 0..200u64 {
        write(
            &root.join(format!("Default/Service Worker/CacheStorage/5f3c/{i:x}_0")),
            &filler(5000 + i, 400 * 1024, 24),
        );
    }
    for i in 0..4u64 {
        write(
            &root.join(format!("Default/GPUCache/data_{i}")),
            &filler(7000 + i, 2 * MB, 16),
        );
    }
    write(&root.join("Default/History"), &filler(8000, 2 * MB, 48));
    write(&root.join("Default/Favicons"), &filler(8001, MB, 16));
}

fn dir_size(p: &Path) -> u64 {
    whatsapp_storage::backup::archive::list_tree(p)
        .iter()
        .map(|r| fs::metadata(p.join(r)).map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn zip_dir(src: &Path, out: &Path) -> u64 {
    let f = fs::File::create(out).unwrap();
    let mut z = zip::ZipWriter::new(io::BufWriter::new(f));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(false);
    for rel in whatsapp_storage::backup::archive::list_tree(src) {
        z.start_file(rel.to_string_lossy(), opts).unwrap();
        let mut r = fs::File::open(src.join(&rel)).unwrap();
        io::copy(&mut r, &mut z).unwrap();
    }
    z.finish().unwrap().flush().unwrap();
    fs::metadata(out).unwrap().len()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct Row {
    name: &'static str,
    size: u64,
    backup_s: f64,
    restore_s: f64,
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("sessions/bench");
    eprintln!("building a synthetic profile …");
    build_profile(&profile);
    let profile_bytes = dir_size(&profile);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let id = SessionId::new("bench").unwrap();
    let mut rows = Vec::new();

    for (name, key) in [
        ("tar+zstd selection (plain)", None),
        (
            "tar+zstd selection (encrypted)",
            Some(EncryptionKey::generate()),
        ),
    ] {
        let mut backup_t = Vec::new();
        let mut restore_t = Vec::new();
        let mut size = 0;
        for run in 0..runs {
            let sinkdir = tmp.path().join(format!("sink-{}-{run}", key.is_some()));
            let mut cfg = BackupConfig::new(tmp.path().join("work"));
            cfg.encryption_key = key.clone();
            let m = BackupManager::new(
                Arc::new(LocalBackupSink::new(&sinkdir)),
                Arc::new(SystemClock),
                cfg,
            );
            // Backup = snapshot + archive + upload + read-back verification.
            let t = Instant::now();
            let rec = rt.block_on(m.backup_session(&id, &profile)).unwrap();
            backup_t.push(t.elapsed().as_secs_f64());
            size = rec.archive_size;
            // Restore into a missing profile = download + decrypt + extract + verify + swap.
            let target = tmp.path().join(format!("restored/bench-{run}"));
            let t = Instant::now();
            let out = rt.block_on(m.restore(&id, &target)).unwrap();
            restore_t.push(t.elapsed().as_secs_f64());
            assert!(matches!(out, RestoreOutcome::Backup { .. }), "{out:?}");
            fs::remove_dir_all(&sinkdir).unwrap();
            fs::remove_dir_all(tmp.path().join("restored")).unwrap();
        }
        rows.push(Row {
            name,
            size,
            backup_s: median(backup_t),
            restore_s: median(restore_t),
        });
    }

    let mut backup_t = Vec::new();
    let mut restore_t = Vec::new();
    let mut size = 0;
    for _ in 0..runs {
        let out = tmp.path().join("profile.zip");
        let t = Instant::now();
        size = zip_dir(&profile, &out);
        backup_t.push(t.elapsed().as_secs_f64());
        let target = tmp.path().join("unzipped");
        let t = Instant::now();
        zip::ZipArchive::new(fs::File::open(&out).unwrap())
            .unwrap()
            .extract(&target)
            .unwrap();
        restore_t.push(t.elapsed().as_secs_f64());
        fs::remove_dir_all(&target).unwrap();
        fs::remove_file(&out).unwrap();
    }
    rows.push(Row {
        name: "zip (deflate) of the whole profile",
        size,
        backup_s: median(backup_t),
        restore_s: median(restore_t),
    });

    println!(
        "\nprofile: {:.1} MiB on disk; median of {runs} run(s)\n",
        profile_bytes as f64 / MB as f64
    );
    println!(
        "{:<36} {:>12} {:>12} {:>12}",
        "method", "size (MiB)", "backup (s)", "restore (s)"
    );
    for r in &rows {
        println!(
            "{:<36} {:>12.2} {:>12.2} {:>12.2}",
            r.name,
            r.size as f64 / MB as f64,
            r.backup_s,
            r.restore_s
        );
    }
    let json = serde_json::json!({
        "profile_bytes": profile_bytes,
        "runs": runs,
        "results": rows.iter().map(|r| serde_json::json!({
            "method": r.name,
            "archive_bytes": r.size,
            "backup_seconds": r.backup_s,
            "restore_seconds": r.restore_s,
        })).collect::<Vec<_>>(),
        "notes": "backup = snapshot + tar/zstd(-6) + sha256 + put to LocalBackupSink + read-back verification; restore = get + decrypt + extract + verify + rename; zip = deflate of every file, unzip = extract",
    });
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("bench");
    fs::create_dir_all(&dir).unwrap();
    let out = dir.join("backup.json");
    fs::write(&out, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    println!("\nwritten to {}", out.display());
}
