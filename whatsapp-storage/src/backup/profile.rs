//! What a login needs from a Chromium profile: the include list, the origin's directory
//! name, the critical-files rule, lock-file clean-up, and the consistent snapshot of a
//! profile that a running browser may be writing to.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use whatsapp_core::profile::LOCK_FILES;
use whatsapp_core::{Error, Result};

use super::leveldb;

/// The WhatsApp Web origin, used when none is configured.
pub const DEFAULT_ORIGIN: &str = "https://web.whatsapp.com";

/// What a backup takes from a profile, relative to the profile directory.
///
/// `{origin}` stands for the origin's storage directory stem (see [`origin_stem`]): for
/// `https://web.whatsapp.com` it is `https_web.whatsapp.com_0`. An entry that is a directory
/// is taken whole (minus [`EXCLUDED_NAMES`]); an entry that is a file is taken as is;
/// entries missing from a profile are skipped (the manifest lists what was found).
///
/// To extend the selection (for instance if an end-to-end test shows that cookies are
/// needed), add an entry here, or pass extra entries in
/// [`ArchiveOptions::include`](super::archive::ArchiveOptions::include).
pub const DEFAULT_INCLUDE: &[&str] = &[
    // The origin's IndexedDB: WhatsApp Web keeps its keys and the signal session here.
    "Default/IndexedDB/{origin}.indexeddb.leveldb",
    // Blobs of the same database (media thumbnails, sometimes key material).
    "Default/IndexedDB/{origin}.indexeddb.blob",
    // Local Storage: one LevelDB shared by every origin of the profile.
    "Default/Local Storage/leveldb",
    // Session Storage: restored tabs' sessionStorage; small.
    "Default/Session Storage",
    // Profile preferences (exit type, content settings); small.
    "Default/Preferences",
    // Browser-wide state (profile list, os_crypt key on some platforms); small.
    "Local State",
];

/// File names never archived, wherever they are: LevelDB `LOCK` files (LevelDB re-creates
/// them on open, and a stale one only confuses), LevelDB's human-readable `LOG`/`LOG.old`,
/// and Chromium's singleton files that mark a running browser
/// ([`whatsapp_core::profile::LOCK_FILES`]).
pub const EXCLUDED_NAMES: &[&str] = &[
    "LOCK",
    "LOG",
    "LOG.old",
    LOCK_FILES[0],
    LOCK_FILES[1],
    LOCK_FILES[2],
];

/// Chromium's storage directory stem for an origin: `scheme_host_port`, where the port is
/// `0` when it is the scheme's default. `https://web.whatsapp.com` → `https_web.whatsapp.com_0`,
/// `http://127.0.0.1:8080` → `http_127.0.0.1_8080`.
pub fn origin_stem(origin: &str) -> Result<String> {
    let url = url::Url::parse(origin).map_err(|e| Error::invalid("origin", e.to_string()))?;
    let scheme = url.scheme();
    if scheme != "http" && scheme != "https" {
        return Err(Error::invalid("origin", "must be an http or https origin"));
    }
    let host = url
        .host_str()
        .ok_or_else(|| Error::invalid("origin", "must have a host"))?;
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(Error::invalid(
            "origin",
            "must be scheme://host[:port] without a path",
        ));
    }
    // `Url::port` is `None` when the port is the scheme's default.
    let port = url.port().unwrap_or(0);
    let stem = format!("{scheme}_{host}_{port}");
    if stem.contains(['/', '\\']) || host.contains("..") {
        return Err(Error::invalid("origin", "host is not a plain name"));
    }
    Ok(stem)
}

/// The include list with `{origin}` replaced, as relative paths.
pub fn resolve_include(origin: &str, include: &[String]) -> Result<Vec<PathBuf>> {
    let stem = origin_stem(origin)?;
    include
        .iter()
        .map(|tpl| {
            let p = PathBuf::from(tpl.replace("{origin}", &stem));
            if p.is_absolute()
                || p.components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(Error::invalid(
                    "backup include list",
                    format!("{tpl:?} must be a plain relative path"),
                ));
            }
            Ok(p)
        })
        .collect()
}

/// The relative directory of the origin's IndexedDB LevelDB inside a profile.
pub fn indexeddb_dir(origin: &str) -> Result<PathBuf> {
    Ok(PathBuf::from(format!(
        "Default/IndexedDB/{}.indexeddb.leveldb",
        origin_stem(origin)?
    )))
}

/// The relative directory of the profile's Local Storage LevelDB.
pub const LOCAL_STORAGE_DIR: &str = "Default/Local Storage/leveldb";

/// Checks that a profile holds what a login needs.
///
/// The rule: the origin's IndexedDB LevelDB (`Default/IndexedDB/<stem>.indexeddb.leveldb`)
/// and the Local Storage LevelDB (`Default/Local Storage/leveldb`) each pass
/// [`leveldb::check_db`]: a `CURRENT` file naming a `MANIFEST-*` that exists and parses, and
/// every table file that manifest lists present with its recorded size; the IndexedDB
/// directory also holds at least one `.ldb` or `.log` file (an empty database is no
/// login).
///
/// Returns `Ok(())` or the list of problems, phrased for the operator.
pub fn critical_files_ok(profile: &Path, origin: &str) -> std::result::Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let idb = match indexeddb_dir(origin) {
        Ok(d) => d,
        Err(e) => return Err(vec![e.to_string()]),
    };
    for rel in [idb.as_path(), Path::new(LOCAL_STORAGE_DIR)] {
        let dir = profile.join(rel);
        if !dir.is_dir() {
            problems.push(format!("{} is missing", rel.display()));
            continue;
        }
        if let Err(e) = leveldb::check_db(&dir) {
            problems.push(format!("{}: {e}", rel.display()));
        }
    }
    let idb_dir = profile.join(&idb);
    if idb_dir.is_dir() {
        let has_data = fs::read_dir(&idb_dir)
            .map(|rd| {
                rd.flatten().any(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.ends_with(".ldb") || n.ends_with(".log")
                })
            })
            .unwrap_or(false);
        if !has_data {
            problems.push(format!("{} holds no .ldb or .log file", idb.display()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Removes Chromium's stale lock files ([`whatsapp_core::profile::remove_lock_files`]: the
/// root's and `Default/`'s) from a profile. Returns the ones removed, relative to the
/// profile. Call it only when no browser runs on the profile.
pub fn clean_lock_files(profile: &Path) -> Result<Vec<PathBuf>> {
    whatsapp_core::profile::remove_lock_files(profile).map_err(|e| {
        // The message already names the file.
        Error::backend("filesystem", is_transient_io(e.kind()), e.to_string())
    })
}

/// One file of a profile selection: its path relative to the profile, size and sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SelectedFile {
    pub rel: PathBuf,
    pub abs: PathBuf,
    pub size: u64,
    pub mtime: Option<SystemTime>,
}

/// Lists the files of `profile` selected by `include` (sorted, without excluded names,
/// without symlinks or special files).
pub(crate) fn list_selection(profile: &Path, include: &[PathBuf]) -> Result<Vec<SelectedFile>> {
    let mut out = BTreeMap::new();
    for rel in include {
        let abs = profile.join(rel);
        let meta = match fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("reading", &abs, e)),
        };
        if meta.is_dir() {
            walk(&abs, rel, &mut out)?;
        } else if meta.is_file() && !is_excluded(rel) {
            out.insert(
                rel.clone(),
                SelectedFile {
                    rel: rel.clone(),
                    abs,
                    size: meta.len(),
                    mtime: meta.modified().ok(),
                },
            );
        }
    }
    Ok(out.into_values().collect())
}

fn is_excluded(rel: &Path) -> bool {
    rel.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| EXCLUDED_NAMES.contains(&n))
}

fn walk(abs: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, SelectedFile>) -> Result<()> {
    let rd = match fs::read_dir(abs) {
        Ok(rd) => rd,
        // A directory removed while we walk (LevelDB compaction) is a change the snapshot
        // loop notices; here it simply has no files.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("listing", abs, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| io_err("listing", abs, e))?;
        let name = entry.file_name();
        let child_rel = rel.join(&name);
        let child_abs = entry.path();
        let meta = match fs::symlink_metadata(&child_abs) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("reading", &child_abs, e)),
        };
        if meta.is_dir() {
            walk(&child_abs, &child_rel, out)?;
        } else if meta.is_file() && !is_excluded(&child_rel) {
            out.insert(
                child_rel.clone(),
                SelectedFile {
                    rel: child_rel,
                    abs: child_abs,
                    size: meta.len(),
                    mtime: meta.modified().ok(),
                },
            );
        }
        // Symlinks, sockets, devices: never part of a login, never archived.
    }
    Ok(())
}

/// How [`snapshot_profile`] copies a profile that may be in use.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// The WhatsApp origin.
    pub origin: String,
    /// Include templates (see [`DEFAULT_INCLUDE`]).
    pub include: Vec<String>,
    /// How many copy attempts before giving up on a profile that keeps changing.
    pub attempts: u32,
    /// Pause between attempts (lets a LevelDB compaction finish).
    pub retry_pause: Duration,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            origin: DEFAULT_ORIGIN.to_string(),
            include: DEFAULT_INCLUDE.iter().map(|s| s.to_string()).collect(),
            attempts: 5,
            retry_pause: Duration::from_millis(300),
        }
    }
}

/// Copies the selected part of `profile` into `staging` (which must be empty or absent) so
/// that the copy is a consistent state even while a browser writes to the profile.
///
/// The method relies on how LevelDB writes: table files (`*.ldb`) are immutable once
/// written and only ever deleted; the manifest and the logs (`*.log`) are append-only; a
/// reader that finds a torn record at the end of either treats it as the end. So, for each
/// LevelDB directory of the selection:
/// 1. read `CURRENT` and copy the manifest it names, cut after its last complete record;
/// 2. from that copy, compute the live tables and the oldest log still needed, and copy
///    exactly those tables;
/// 3. copy the logs from that number on (a prefix of each is fine).
///
/// If a file needed in 2 or 3 has vanished, a compaction or memtable flush ran meanwhile:
/// the whole copy starts again. Files outside LevelDB directories (preferences, IndexedDB
/// blobs, which are written once) are copied afterwards, so that every blob an IndexedDB
/// record refers to is already on disk. Finally every copied LevelDB is checked with
/// [`leveldb::check_db`].
///
/// After [`SnapshotOptions::attempts`] failures: [`Error::Unavailable`] (transient).
pub fn snapshot_profile(profile: &Path, staging: &Path, opts: &SnapshotOptions) -> Result<usize> {
    let include = resolve_include(&opts.origin, &opts.include)?;
    let mut last_problem = String::new();
    for attempt in 0..opts.attempts.max(1) {
        if attempt > 0 {
            std::thread::sleep(opts.retry_pause);
        }
        if staging.exists() {
            fs::remove_dir_all(staging).map_err(|e| io_err("clearing", staging, e))?;
        }
        fs::create_dir_all(staging).map_err(|e| io_err("creating", staging, e))?;
        match copy_selection(profile, staging, &include)? {
            Err(changed) => last_problem = changed,
            Ok(copied) => match check_all_leveldbs(staging) {
                Ok(()) => return Ok(copied),
                Err(e) => last_problem = e,
            },
        }
    }
    Err(Error::unavailable(
        "profile snapshot",
        format!(
            "the profile kept changing during {} copy attempts (last: {last_problem})",
            opts.attempts.max(1)
        ),
    ))
}

/// `Ok(Err(reason))`: something changed under our feet, try again.
fn copy_selection(
    profile: &Path,
    staging: &Path,
    include: &[PathBuf],
) -> Result<std::result::Result<usize, String>> {
    let files = list_selection(profile, include)?;
    let db_dirs: std::collections::BTreeSet<PathBuf> = files
        .iter()
        .filter(|f| f.rel.file_name().is_some_and(|n| n == "CURRENT"))
        .filter_map(|f| f.rel.parent().map(Path::to_path_buf))
        .collect();
    let mut copied = 0;
    for rel in &db_dirs {
        match copy_leveldb(&profile.join(rel), &staging.join(rel))? {
            Ok(n) => copied += n,
            Err(changed) => return Ok(Err(format!("{}: {changed}", rel.display()))),
        }
    }
    for f in &files {
        if f.rel.parent().is_some_and(|p| db_dirs.contains(p)) {
            continue;
        }
        let dst = staging.join(&f.rel);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(|e| io_err("creating", parent, e))?;
        }
        match copy_file(&f.abs, &dst) {
            Ok(_) => copied += 1,
            // Deleted since the listing (a blob collected, a temporary file): not needed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("copying", &f.abs, e)),
        }
    }
    Ok(Ok(copied))
}

fn copy_leveldb(src: &Path, dst: &Path) -> Result<std::result::Result<usize, String>> {
    fs::create_dir_all(dst).map_err(|e| io_err("creating", dst, e))?;
    let gone = |what: &str| Ok(Err(format!("{what} vanished during the copy")));
    let current = match fs::read(src.join("CURRENT")) {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return gone("CURRENT"),
        Err(e) => return Err(io_err("reading", &src.join("CURRENT"), e)),
    };
    let name = String::from_utf8_lossy(&current).trim_end().to_string();
    if !name.starts_with("MANIFEST-") || name.contains(['/', '\\']) {
        return Ok(Err(format!("CURRENT names {name:?}")));
    }
    let manifest = match fs::read(src.join(&name)) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return gone(&name),
        Err(e) => return Err(io_err("reading", &src.join(&name), e)),
    };
    let state = match leveldb::manifest_state(&manifest) {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("{name}: {e}"))),
    };
    let w = |p: &Path, data: &[u8]| fs::write(p, data).map_err(|e| io_err("writing", p, e));
    w(&dst.join(&name), &manifest[..state.complete_len])?;
    w(&dst.join("CURRENT"), &current)?;
    let mut copied = 2;
    for (number, _) in &state.tables {
        let mut done = false;
        for ext in ["ldb", "sst"] {
            let file = format!("{number:06}.{ext}");
            match copy_file(&src.join(&file), &dst.join(&file)) {
                Ok(_) => {
                    done = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("copying", &src.join(&file), e)),
            }
        }
        if !done {
            return gone(&format!("table {number:06}.ldb"));
        }
        copied += 1;
    }
    let rd = fs::read_dir(src).map_err(|e| io_err("listing", src, e))?;
    for entry in rd.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let Some(number) = file
            .strip_suffix(".log")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if number < state.min_log {
            continue;
        }
        match copy_file(&src.join(file), &dst.join(file)) {
            Ok(_) => copied += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return gone(file),
            Err(e) => return Err(io_err("copying", &src.join(file), e)),
        }
    }
    Ok(Ok(copied))
}

/// Checks every LevelDB (a directory with a `CURRENT` file) under `root`.
fn check_all_leveldbs(root: &Path) -> std::result::Result<(), String> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in rd.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
        if dir.join("CURRENT").is_file() {
            leveldb::check_db(&dir).map_err(|e| {
                format!("{}: {e}", dir.strip_prefix(root).unwrap_or(&dir).display())
            })?;
        }
    }
    Ok(())
}

fn copy_file(src: &Path, dst: &Path) -> io::Result<u64> {
    let mut r = fs::File::open(src)?;
    let mut w = fs::File::create(dst)?;
    let n = io::copy(&mut r, &mut w)?;
    w.flush()?;
    Ok(n)
}

/// Hashes a file with sha256, returning (hex digest, size).
pub(crate) fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

pub(crate) fn io_err(what: &str, path: &Path, e: io::Error) -> Error {
    Error::backend(
        "filesystem",
        is_transient_io(e.kind()),
        format!("{what} {}: {e}", path.display()),
    )
}

fn is_transient_io(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_stems_follow_chromium() {
        assert_eq!(
            origin_stem("https://web.whatsapp.com").unwrap(),
            "https_web.whatsapp.com_0"
        );
        assert_eq!(
            origin_stem("https://web.whatsapp.com:443").unwrap(),
            "https_web.whatsapp.com_0"
        );
        assert_eq!(
            origin_stem("http://127.0.0.1:8080").unwrap(),
            "http_127.0.0.1_8080"
        );
        assert!(origin_stem("file:///etc").is_err());
        assert!(origin_stem("https://web.whatsapp.com/x").is_err());
        assert!(origin_stem("not a url").is_err());
    }
}
