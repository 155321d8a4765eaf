//! The archive format: a tar stream compressed with zstd, whose first entry is a JSON
//! [`Manifest`] (files, sizes, sha256, creation time, origin, format version).
//!
//! Both directions stream: [`create_archive`] writes into any [`Write`], [`extract_archive`]
//! reads from any [`Read`]; neither holds the archive in memory.
//!
//! Extraction treats every archive as hostile. An entry with an absolute path or a `..`
//! component, a link (symbolic or hard), a device, FIFO or sparse file, more files or more
//! uncompressed bytes than [`Limits`] allow, or anything that disagrees with the manifest is
//! an [`Error::Corrupt`] naming the problem, and nothing is written outside the target
//! directory (which must be new or empty; [`restore`](super::BackupManager::restore)
//! extracts into a temporary directory and renames it into place).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use whatsapp_core::{Error, Result};

use super::profile::{self, io_err};

/// The version of the archive format written by this code.
pub const FORMAT_VERSION: u32 = 1;

/// The name of the manifest entry, always the first entry of an archive.
pub const MANIFEST_NAME: &str = "wa-backup-manifest.json";

/// Describes the contents of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// When the archive was created.
    pub created_at: DateTime<Utc>,
    /// The WhatsApp origin whose storage the archive holds.
    pub origin: String,
    /// Every file, in archive order.
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    /// The sum of the file sizes (the uncompressed payload).
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// One file of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// The path relative to the profile directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex sha256 of the contents.
    pub sha256: String,
}

/// What [`create_archive`] takes and how it compresses.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// The WhatsApp origin (default [`profile::DEFAULT_ORIGIN`]).
    pub origin: String,
    /// Include templates (default [`profile::DEFAULT_INCLUDE`]).
    pub include: Vec<String>,
    /// zstd level (default 6: close to the best ratio for LevelDB tables at a fraction of
    /// the time of 19).
    pub compression_level: i32,
    /// The creation time written in the manifest (from the injected clock).
    pub created_at: DateTime<Utc>,
}

impl ArchiveOptions {
    /// The defaults, created at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        ArchiveOptions {
            origin: profile::DEFAULT_ORIGIN.to_string(),
            include: profile::DEFAULT_INCLUDE
                .iter()
                .map(|s| s.to_string())
                .collect(),
            compression_level: 6,
            created_at: now,
        }
    }
}

/// Bounds on what extraction accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most files (the manifest excluded). Default 100 000.
    pub max_files: u64,
    /// Most uncompressed bytes in total. Default 1 GiB.
    pub max_total_bytes: u64,
    /// Largest manifest. Default 16 MiB.
    pub max_manifest_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_files: 100_000,
            max_total_bytes: 1 << 30,
            max_manifest_bytes: 16 << 20,
        }
    }
}

/// Archives the selected part of `dir` (a profile, or a snapshot of one) into `out` as
/// tar + zstd, manifest first. Returns the manifest.
///
/// `dir` should not change while this runs (take a snapshot of a live profile with
/// [`profile::snapshot_profile`]); a file that changes between hashing and archiving is an
/// [`Error::Conflict`].
pub fn create_archive<W: Write>(dir: &Path, opts: &ArchiveOptions, out: W) -> Result<Manifest> {
    let include = profile::resolve_include(&opts.origin, &opts.include)?;
    let selected = profile::list_selection(dir, &include)?;
    let mut files = Vec::with_capacity(selected.len());
    for f in &selected {
        let (sha256, size) =
            profile::sha256_file(&f.abs).map_err(|e| io_err("hashing", &f.abs, e))?;
        files.push(ManifestFile {
            path: slash_path(&f.rel)?,
            size,
            sha256,
        });
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        created_at: opts.created_at,
        origin: opts.origin.clone(),
        files,
    };
    let manifest_json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::backend("json", false, e))?;

    let enc = zstd::stream::write::Encoder::new(out, opts.compression_level)
        .map_err(|e| Error::backend("zstd", false, e))?;
    let mut tar = tar::Builder::new(enc);
    let mtime = opts.created_at.timestamp().max(0) as u64;
    let w = |e: io::Error| from_io(e, "writing the archive");

    let mut h = file_header(manifest_json.len() as u64, mtime);
    tar.append_data(&mut h, MANIFEST_NAME, manifest_json.as_slice())
        .map_err(w)?;
    for (f, m) in selected.iter().zip(&manifest.files) {
        let file = fs::File::open(&f.abs).map_err(|e| io_err("opening", &f.abs, e))?;
        let mut reader = HashingReader::new(ExactReader {
            inner: file,
            left: m.size,
        });
        let mut h = file_header(m.size, mtime);
        tar.append_data(&mut h, &m.path, &mut reader).map_err(w)?;
        if reader.hex_digest() != m.sha256 {
            return Err(Error::Conflict(format!(
                "{} changed while it was archived; archive a snapshot",
                m.path
            )));
        }
    }
    let enc = tar.into_inner().map_err(w)?;
    let mut out = enc.finish().map_err(w)?;
    out.flush().map_err(w)?;
    Ok(manifest)
}

fn file_header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn slash_path(rel: &Path) -> Result<String> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(
                s.to_str()
                    .ok_or_else(|| Error::invalid("profile file name", "must be UTF-8"))?
                    .to_string(),
            ),
            _ => return Err(Error::invalid("profile path", "must be plain and relative")),
        }
    }
    Ok(parts.join("/"))
}

/// Extracts an archive into `target`, a directory that must not exist or be empty, checking
/// every entry against `limits` and the manifest. Returns the manifest.
///
/// On error, `target` may hold part of the archive (the caller extracts into a temporary
/// directory and deletes it), but nothing is ever written outside `target`.
pub fn extract_archive<R: Read>(reader: R, target: &Path, limits: &Limits) -> Result<Manifest> {
    if target.exists() {
        let mut rd = fs::read_dir(target).map_err(|e| io_err("reading", target, e))?;
        if rd.next().is_some() {
            return Err(Error::invalid(
                "restore target",
                format!("{} must be empty", target.display()),
            ));
        }
    } else {
        fs::create_dir_all(target).map_err(|e| io_err("creating", target, e))?;
    }
    walk_archive(reader, Some(target), limits)
}

/// Reads a whole archive and checks it as [`extract_archive`] does, writing nothing.
/// Returns the manifest.
pub fn verify_archive<R: Read>(reader: R, limits: &Limits) -> Result<Manifest> {
    walk_archive(reader, None, limits)
}

fn hostile(msg: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("hostile or damaged backup archive: {msg}"))
}

fn walk_archive<R: Read>(reader: R, target: Option<&Path>, limits: &Limits) -> Result<Manifest> {
    let r = |e: io::Error| from_io(e, "reading the archive");
    let dec = zstd::stream::read::Decoder::new(reader).map_err(r)?;
    let mut archive = tar::Archive::new(dec);
    let mut manifest: Option<Manifest> = None;
    let mut expected: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut files = 0u64;
    let mut total = 0u64;

    for entry in archive.entries().map_err(r)? {
        let mut entry = entry.map_err(r)?;
        let raw_path = entry.path().map_err(r)?.into_owned();
        let shown = raw_path.display().to_string();
        let kind = entry.header().entry_type();
        check_path(&raw_path)?;
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Directory => {
                if manifest.is_none() {
                    return Err(hostile("the first entry is not the manifest"));
                }
                if let Some(t) = target {
                    let d = t.join(&raw_path);
                    fs::create_dir_all(&d).map_err(|e| io_err("creating", &d, e))?;
                }
                continue;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default();
                let outside = Path::new(&link).is_absolute()
                    || Path::new(&link)
                        .components()
                        .any(|c| c == Component::ParentDir);
                return Err(hostile(format!(
                    "{shown:?} is a {} to {link:?}{}; links are not allowed",
                    if kind == tar::EntryType::Link {
                        "hard link"
                    } else {
                        "symbolic link"
                    },
                    if outside { " (outside the target)" } else { "" }
                )));
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                return Err(hostile(format!(
                    "{shown:?} is a device or FIFO; only regular files are allowed"
                )));
            }
            tar::EntryType::GNUSparse => {
                return Err(hostile(format!("{shown:?} is a sparse file; not allowed")));
            }
            other => {
                return Err(hostile(format!(
                    "{shown:?} has unsupported entry type {:?}",
                    other.as_byte() as char
                )));
            }
        }
        let size = entry.header().size().map_err(r)?;

        if manifest.is_none() {
            if raw_path != Path::new(MANIFEST_NAME) {
                return Err(hostile(format!(
                    "the first entry is {shown:?}, not the manifest {MANIFEST_NAME}"
                )));
            }
            if size > limits.max_manifest_bytes {
                return Err(hostile(format!(
                    "the manifest declares {size} bytes (limit {})",
                    limits.max_manifest_bytes
                )));
            }
            let mut buf = Vec::with_capacity(size as usize);
            (&mut entry)
                .take(limits.max_manifest_bytes)
                .read_to_end(&mut buf)
                .map_err(r)?;
            let parsed: Manifest = serde_json::from_slice(&buf)
                .map_err(|e| hostile(format!("the manifest does not parse: {e}")))?;
            if parsed.format_version != FORMAT_VERSION {
                return Err(Error::Corrupt(format!(
                    "backup format version {} is not supported (this build reads {FORMAT_VERSION})",
                    parsed.format_version
                )));
            }
            if parsed.files.len() as u64 > limits.max_files {
                return Err(hostile(format!(
                    "too many files: the manifest lists {} (limit {})",
                    parsed.files.len(),
                    limits.max_files
                )));
            }
            let declared: u64 = parsed
                .files
                .iter()
                .fold(0u64, |a, f| a.saturating_add(f.size));
            if declared > limits.max_total_bytes {
                return Err(hostile(format!(
                    "too many uncompressed bytes: the manifest declares {declared} (limit {}; a decompression bomb?)",
                    limits.max_total_bytes
                )));
            }
            for f in &parsed.files {
                check_path(Path::new(&f.path))?;
                expected.insert(f.path.clone(), (f.size, f.sha256.clone()));
            }
            manifest = Some(parsed);
            continue;
        }

        files += 1;
        if files > limits.max_files {
            return Err(hostile(format!(
                "too many files: more than {}",
                limits.max_files
            )));
        }
        total = total.saturating_add(size);
        if total > limits.max_total_bytes {
            return Err(hostile(format!(
                "too many uncompressed bytes: more than {} (a decompression bomb?)",
                limits.max_total_bytes
            )));
        }
        let key = slash_path(&raw_path).map_err(|_| hostile(format!("{shown:?} is not UTF-8")))?;
        let Some((want_size, want_sha)) = expected.remove(&key) else {
            return Err(hostile(format!(
                "{shown:?} is not in the manifest, or appears twice"
            )));
        };
        if want_size != size {
            return Err(hostile(format!(
                "{shown:?} is {size} bytes, the manifest says {want_size}"
            )));
        }
        let mut hashing = HashingReader::new(&mut entry);
        let copied = match target {
            Some(t) => {
                let dst = t.join(&raw_path);
                if let Some(parent) = dst.parent() {
                    fs::create_dir_all(parent).map_err(|e| io_err("creating", parent, e))?;
                }
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&dst)
                    .map_err(|e| io_err("creating", &dst, e))?;
                let n = io::copy(&mut hashing, &mut out).map_err(r)?;
                out.flush().map_err(|e| io_err("writing", &dst, e))?;
                n
            }
            None => io::copy(&mut hashing, &mut io::sink()).map_err(r)?,
        };
        if copied != size {
            return Err(hostile(format!("{shown:?} is truncated")));
        }
        if hashing.hex_digest() != want_sha {
            return Err(Error::Corrupt(format!(
                "backup archive damaged: the sha256 of {shown:?} does not match the manifest"
            )));
        }
    }
    let manifest = manifest.ok_or_else(|| hostile("the archive is empty (no manifest)"))?;
    if let Some(missing) = expected.keys().next() {
        return Err(Error::Corrupt(format!(
            "backup archive damaged: {missing:?} is listed in the manifest but missing ({} missing in all)",
            expected.len()
        )));
    }
    Ok(manifest)
}

fn check_path(p: &Path) -> Result<()> {
    if p.as_os_str().is_empty() {
        return Err(hostile("an entry has an empty path"));
    }
    for c in p.components() {
        match c {
            Component::Normal(_) => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(hostile(format!(
                    "{:?} is an absolute path",
                    p.display().to_string()
                )));
            }
            Component::ParentDir => {
                return Err(hostile(format!(
                    "{:?} contains '..'",
                    p.display().to_string()
                )));
            }
            Component::CurDir => {
                return Err(hostile(format!(
                    "{:?} contains '.'",
                    p.display().to_string()
                )));
            }
        }
    }
    Ok(())
}

/// Converts an I/O error met while streaming an archive: an [`Error`] carried inside (a
/// decryption failure, a sink failure) comes back out unchanged; anything else from the
/// decoder means damaged data.
pub(crate) fn from_io(e: io::Error, ctx: &str) -> Error {
    let kind = e.kind();
    match e.into_inner() {
        Some(inner) => match inner.downcast::<Error>() {
            Ok(err) => *err,
            Err(other) => match kind {
                io::ErrorKind::InvalidData
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::Other => Error::Corrupt(format!("{ctx}: {other}")),
                _ => Error::backend("filesystem", false, format!("{ctx}: {other}")),
            },
        },
        None => match kind {
            io::ErrorKind::UnexpectedEof => Error::Corrupt(format!("{ctx}: unexpected end")),
            _ => Error::backend("filesystem", false, format!("{ctx}: {kind}")),
        },
    }
}

/// A reader that yields exactly `left` bytes, failing if the source ends sooner.
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::other(Error::Conflict(
                "a file shrank while it was archived; archive a snapshot".into(),
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A reader that hashes what passes through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    /// Bytes read so far.
    pub(crate) count: u64,
}

impl<R> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    pub(crate) fn hex_digest(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
#[derive(Debug)]
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// (inner writer, hex sha256, bytes written)
    pub(crate) fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The files of an extracted tree, for tests: relative `/` paths.
#[doc(hidden)]
pub fn list_tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(root) {
                    out.push(rel.to_path_buf());
                }
            }
        }
    }
    out.sort();
    out
}
