//! The archive format: what goes in, what stays out, and hostile archives of every kind.

#[path = "backup_support.rs"]
mod support;

use std::fs;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use whatsapp_core::Error;
use whatsapp_storage::backup::archive::{MANIFEST_NAME, Manifest, ManifestFile, list_tree};
use whatsapp_storage::backup::{ArchiveOptions, Limits, create_archive, extract_archive};

fn t0() -> DateTime<Utc> {
    "2026-03-28T02:00:00Z".parse().unwrap()
}

#[test]
fn archive_holds_only_what_a_login_needs_and_round_trips() {
    let src = tempfile::tempdir().unwrap();
    support::fake_profile(src.path(), 7);
    let mut buf = Vec::new();
    let m = create_archive(src.path(), &ArchiveOptions::new(t0()), &mut buf).unwrap();
    assert_eq!(m.format_version, 1);
    assert_eq!(m.origin, "https://web.whatsapp.com");
    assert_eq!(m.created_at, t0());
    let listed: Vec<_> = m
        .files
        .iter()
        .map(|f| Path::new(&f.path).to_path_buf())
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, support::expected_files());

    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("profile");
    let m2 = extract_archive(buf.as_slice(), &target, &Limits::default()).unwrap();
    assert_eq!(m, m2);
    assert_eq!(list_tree(&target), support::expected_files());
    for f in support::expected_files() {
        assert_eq!(
            fs::read(src.path().join(&f)).unwrap(),
            fs::read(target.join(&f)).unwrap(),
            "{}",
            f.display()
        );
    }
    whatsapp_storage::backup::critical_files_ok(&target, "https://web.whatsapp.com").unwrap();
}

#[test]
fn another_origin_selects_its_own_indexeddb() {
    let src = tempfile::tempdir().unwrap();
    support::fake_profile(src.path(), 7);
    let mut opts = ArchiveOptions::new(t0());
    opts.origin = "https://other.example".into();
    let m = create_archive(src.path(), &opts, &mut Vec::new()).unwrap();
    assert!(
        m.files
            .iter()
            .any(|f| f.path.contains("https_other.example_0"))
    );
    assert!(!m.files.iter().any(|f| f.path.contains("whatsapp")));
}

// ---- hostile archives ------------------------------------------------------------------

fn raw_header(path: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    let name = &mut h.as_old_mut().name;
    name[..path.len()].copy_from_slice(path);
    h.set_cksum();
    h
}

fn with_link(mut h: tar::Header, target: &[u8]) -> tar::Header {
    h.as_old_mut().linkname[..target.len()].copy_from_slice(target);
    h.set_cksum();
    h
}

fn manifest_json(files: Vec<ManifestFile>) -> Vec<u8> {
    serde_json::to_vec(&Manifest {
        format_version: 1,
        created_at: t0(),
        origin: "https://web.whatsapp.com".into(),
        files,
    })
    .unwrap()
}

/// A tar+zstd archive of raw entries, after a valid manifest listing `listed`.
fn hostile(listed: Vec<ManifestFile>, entries: Vec<(tar::Header, Vec<u8>)>) -> Vec<u8> {
    let enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let mut b = tar::Builder::new(enc);
    let m = manifest_json(listed);
    b.append(
        &raw_header(
            MANIFEST_NAME.as_bytes(),
            tar::EntryType::Regular,
            m.len() as u64,
        ),
        m.as_slice(),
    )
    .unwrap();
    for (h, data) in entries {
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// Extracts into `<tmp>/target`, expects a `Corrupt` error containing `needle`, and checks
/// that nothing appeared beside the target.
fn expect_rejected(archive: &[u8], limits: &Limits, needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let err = extract_archive(archive, &target, limits).unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    let beside: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("target")]);
}

fn file(path: &str, data: &[u8]) -> ManifestFile {
    use sha2::Digest;
    ManifestFile {
        path: path.into(),
        size: data.len() as u64,
        sha256: hex::encode(sha2::Sha256::digest(data)),
    }
}

#[test]
fn parent_dir_component_is_rejected() {
    let a = hostile(
        vec![file("../x", b"pwned")],
        vec![(
            raw_header(b"../x", tar::EntryType::Regular, 5),
            b"pwned".to_vec(),
        )],
    );
    expect_rejected(&a, &Limits::default(), "'..'");
    // The same entry without a manifest listing it.
    let a = hostile(
        vec![],
        vec![(
            raw_header(b"Default/../../x", tar::EntryType::Regular, 5),
            b"pwned".to_vec(),
        )],
    );
    expect_rejected(&a, &Limits::default(), "'..'");
}

#[test]
fn absolute_path_is_rejected() {
    let a = hostile(
        vec![],
        vec![(
            raw_header(b"/tmp/wa-backup-pwned", tar::EntryType::Regular, 5),
            b"pwned".to_vec(),
        )],
    );
    expect_rejected(&a, &Limits::default(), "absolute path");
    assert!(!Path::new("/tmp/wa-backup-pwned").exists());
}

#[test]
fn symlink_out_of_the_target_is_rejected() {
    let a = hostile(
        vec![],
        vec![
            (
                with_link(
                    raw_header(b"Default/etc", tar::EntryType::Symlink, 0),
                    b"/etc",
                ),
                vec![],
            ),
            (
                raw_header(b"Default/etc/passwd", tar::EntryType::Regular, 5),
                b"pwned".to_vec(),
            ),
        ],
    );
    expect_rejected(
        &a,
        &Limits::default(),
        "symbolic link to \"/etc\" (outside the target)",
    );
}

#[test]
fn hard_link_out_of_the_target_is_rejected() {
    let a = hostile(
        vec![],
        vec![(
            with_link(
                raw_header(b"Default/x", tar::EntryType::Link, 0),
                b"../../etc/passwd",
            ),
            vec![],
        )],
    );
    expect_rejected(&a, &Limits::default(), "hard link");
}

#[test]
fn device_files_and_fifos_are_rejected() {
    for kind in [
        tar::EntryType::Char,
        tar::EntryType::Block,
        tar::EntryType::Fifo,
    ] {
        let mut h = raw_header(b"Default/null", kind, 0);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_cksum();
        let a = hostile(vec![], vec![(h, vec![])]);
        expect_rejected(&a, &Limits::default(), "device or FIFO");
    }
}

#[test]
fn too_many_files_is_rejected() {
    let n = 100_001;
    let listed: Vec<_> = (0..n)
        .map(|i| file(&format!("Default/f{i}"), b""))
        .collect();
    let entries: Vec<_> = (0..n)
        .map(|i| {
            (
                raw_header(
                    format!("Default/f{i}").as_bytes(),
                    tar::EntryType::Regular,
                    0,
                ),
                vec![],
            )
        })
        .collect();
    let a = hostile(listed, entries);
    expect_rejected(&a, &Limits::default(), "too many files");

    // A manifest that lies about the count does not help: the entries are counted too.
    let limits = Limits {
        max_files: 10,
        ..Limits::default()
    };
    let listed: Vec<_> = (0..10)
        .map(|i| file(&format!("Default/f{i}"), b""))
        .collect();
    let entries: Vec<_> = (0..11)
        .map(|i| {
            (
                raw_header(
                    format!("Default/f{i}").as_bytes(),
                    tar::EntryType::Regular,
                    0,
                ),
                vec![],
            )
        })
        .collect();
    expect_rejected(&hostile(listed, entries), &limits, "too many files");
}

#[test]
fn a_2_gib_declared_bomb_is_rejected_before_anything_is_written() {
    let two_gib = 2u64 << 30;
    // Declared in the manifest.
    let big = ManifestFile {
        path: "Default/Preferences".into(),
        size: two_gib,
        sha256: "0".repeat(64),
    };
    let a = hostile(vec![big], vec![]);
    assert!(a.len() < 4096, "the bomb is tiny: {} bytes", a.len());
    expect_rejected(&a, &Limits::default(), "too many uncompressed bytes");
    // Declared only in the entry header (the manifest lies): the header is checked before
    // any data is read.
    let a = hostile(
        vec![file("Default/Preferences", b"{}")],
        vec![(
            raw_header(b"Default/Preferences", tar::EntryType::Regular, two_gib),
            vec![0; 4096],
        )],
    );
    expect_rejected(&a, &Limits::default(), "too many uncompressed bytes");
}

#[test]
fn a_real_zero_bomb_is_stopped_by_the_byte_limit() {
    let zeros = vec![0u8; 4 << 20];
    let limits = Limits {
        max_total_bytes: 1 << 20,
        ..Limits::default()
    };
    let a = hostile(
        vec![file("Default/Preferences", b"{}")],
        vec![(
            raw_header(
                b"Default/Preferences",
                tar::EntryType::Regular,
                zeros.len() as u64,
            ),
            zeros,
        )],
    );
    assert!(a.len() < 64 * 1024, "compresses to {} bytes", a.len());
    expect_rejected(&a, &limits, "too many uncompressed bytes");
}

#[test]
fn manifest_must_come_first_and_agree() {
    // No manifest.
    let enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let mut b = tar::Builder::new(enc);
    b.append(
        &raw_header(b"Default/Preferences", tar::EntryType::Regular, 2),
        &b"{}"[..],
    )
    .unwrap();
    let a = b.into_inner().unwrap().finish().unwrap();
    expect_rejected(&a, &Limits::default(), "not the manifest");

    // A file the manifest does not list.
    let a = hostile(
        vec![],
        vec![(
            raw_header(b"Default/Preferences", tar::EntryType::Regular, 2),
            b"{}".to_vec(),
        )],
    );
    expect_rejected(&a, &Limits::default(), "not in the manifest");

    // Contents that do not match the manifest's sha256.
    let tmp = tempfile::tempdir().unwrap();
    let a = hostile(
        vec![file("Default/Preferences", b"{}")],
        vec![(
            raw_header(b"Default/Preferences", tar::EntryType::Regular, 2),
            b"[]".to_vec(),
        )],
    );
    let e = extract_archive(a.as_slice(), &tmp.path().join("t"), &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("sha256"), "{e}");

    // A listed file that is missing.
    let a = hostile(vec![file("Default/Preferences", b"{}")], vec![]);
    let e = extract_archive(a.as_slice(), &tmp.path().join("u"), &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
}

#[test]
fn garbage_and_truncation_are_corrupt_not_panics() {
    let src = tempfile::tempdir().unwrap();
    support::fake_profile(src.path(), 3);
    let mut buf = Vec::new();
    create_archive(src.path(), &ArchiveOptions::new(t0()), &mut buf).unwrap();
    for cut in [0, 10, buf.len() / 2, buf.len() - 3] {
        let tmp = tempfile::tempdir().unwrap();
        let e =
            extract_archive(&buf[..cut], &tmp.path().join("t"), &Limits::default()).unwrap_err();
        assert!(matches!(e, Error::Corrupt(_)), "cut {cut}: {e:?}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let e = extract_archive(
        &b"not an archive at all"[..],
        &tmp.path().join("t"),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
}

#[test]
fn extraction_refuses_a_non_empty_target() {
    let src = tempfile::tempdir().unwrap();
    support::fake_profile(src.path(), 3);
    let mut buf = Vec::new();
    create_archive(src.path(), &ArchiveOptions::new(t0()), &mut buf).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    fs::File::create(tmp.path().join("keep"))
        .unwrap()
        .write_all(b"x")
        .unwrap();
    let e = extract_archive(buf.as_slice(), tmp.path(), &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("must be empty"), "{e}");
    assert_eq!(fs::read(tmp.path().join("keep")).unwrap(), b"x");
}
