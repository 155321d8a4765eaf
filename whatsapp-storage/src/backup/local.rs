//! [`LocalBackupSink`]: backups as files under a directory (by default `<data dir>/backups`).

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use whatsapp_core::{
    BackupKey, BackupSink, ByteStream, Error, ObjectMeta, Result, SinkCapabilities,
};

use super::profile::io_err;

/// Stores each key as a file `<dir>/<key>`.
///
/// `put` writes to a temporary file in the same directory (its name contains `~`, which no
/// key may contain, so it can never be listed or collide), fsyncs it, renames it over the
/// key and fsyncs the directory: readers see the old object or the new one, never a part.
#[derive(Debug, Clone)]
pub struct LocalBackupSink {
    dir: PathBuf,
}

impl LocalBackupSink {
    /// A sink rooted at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalBackupSink { dir: dir.into() }
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &BackupKey) -> PathBuf {
        // BackupKey's rule (no empty, '.' or '..' segment, no '\\') keeps this inside `dir`.
        self.dir.join(key.as_str())
    }
}

fn not_found_or(e: io::Error, key: &BackupKey, what: &str, path: &Path) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::not_found(format!("backup object {key}"))
    } else {
        io_err(what, path, e)
    }
}

fn meta_of(key: &BackupKey, m: &std::fs::Metadata) -> ObjectMeta {
    let last_modified: DateTime<Utc> = m
        .modified()
        .map(DateTime::<Utc>::from)
        .unwrap_or_else(|_| Utc::now());
    ObjectMeta {
        key: key.clone(),
        size: m.len(),
        last_modified,
    }
}

#[async_trait]
impl BackupSink for LocalBackupSink {
    fn name(&self) -> &'static str {
        "local"
    }

    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities {
            list: true,
            delete: true,
        }
    }

    async fn put(&self, key: &BackupKey, mut body: ByteStream) -> Result<ObjectMeta> {
        let path = self.path(key);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(|e| io_err("creating", &parent, e))?;
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        let tmp = parent.join(format!("{file_name}~tmp~{}", random_suffix()));
        let result: Result<()> = async {
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| io_err("creating", &tmp, e))?;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                f.write_all(&chunk)
                    .await
                    .map_err(|e| io_err("writing", &tmp, e))?;
            }
            f.flush().await.map_err(|e| io_err("writing", &tmp, e))?;
            f.sync_all().await.map_err(|e| io_err("syncing", &tmp, e))?;
            drop(f);
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| io_err("renaming", &tmp, e))?;
            // Make the rename itself durable.
            if let Ok(d) = tokio::fs::File::open(&parent).await {
                let _ = d.sync_all().await;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        self.head(key).await
    }

    async fn get(&self, key: &BackupKey) -> Result<ByteStream> {
        let path = self.path(key);
        let f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| not_found_or(e, key, "opening", &path))?;
        if f.metadata().await.is_ok_and(|m| m.is_dir()) {
            return Err(Error::not_found(format!("backup object {key}")));
        }
        let key_s = key.to_string();
        let stream = tokio_util::io::ReaderStream::with_capacity(f, 64 * 1024).map(move |r| {
            r.map_err(|e| Error::backend("filesystem", false, format!("reading {key_s}: {e}")))
        });
        Ok(stream.boxed())
    }

    async fn head(&self, key: &BackupKey) -> Result<ObjectMeta> {
        let path = self.path(key);
        let m = tokio::fs::metadata(&path)
            .await
            .map_err(|e| not_found_or(e, key, "reading", &path))?;
        if !m.is_file() {
            return Err(Error::not_found(format!("backup object {key}")));
        }
        Ok(meta_of(key, &m))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let dir = self.dir.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || list_blocking(&dir, &prefix))
            .await
            .map_err(|e| Error::backend("filesystem", false, e))?
    }

    async fn delete(&self, key: &BackupKey) -> Result<()> {
        let path = self.path(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("deleting", &path, e)),
        }
        // Tidy now-empty parent directories up to the root (best effort; a concurrent put
        // re-creates what it needs).
        let mut p = path.parent();
        while let Some(d) = p {
            if d == self.dir || !d.starts_with(&self.dir) {
                break;
            }
            if tokio::fs::remove_dir(d).await.is_err() {
                break;
            }
            p = d.parent();
        }
        Ok(())
    }
}

fn list_blocking(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("listing", &d, e)),
        };
        for entry in rd {
            let entry = entry.map_err(|e| io_err("listing", &d, e))?;
            let ft = match entry.file_type() {
                Ok(t) => t,
                Err(_) => continue,
            };
            let p = entry.path();
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let Some(rel) = p.strip_prefix(root).ok().and_then(|r| r.to_str()) else {
                continue;
            };
            let rel = rel.replace(std::path::MAIN_SEPARATOR, "/");
            if !rel.starts_with(prefix) {
                continue;
            }
            // Temporary files and strangers are not valid keys: not listed.
            let Ok(key) = BackupKey::new(rel) else {
                continue;
            };
            match entry.metadata() {
                Ok(m) => out.push(meta_of(&key, &m)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("reading", &p, e)),
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

pub(crate) fn random_suffix() -> String {
    use chacha20poly1305::aead::OsRng;
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut b = [0u8; 6];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}
