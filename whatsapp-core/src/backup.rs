//! [`BackupSink`]: where backup archives are kept (local disk, S3-compatible storage, memory).
//!
//! The sink is a deliberately small object store: keys and bytes. What goes into an archive,
//! its manifest, verification and retention live in `whatsapp-storage`, on top of any sink.

use std::fmt::{self, Debug};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A stream of byte chunks: how archives move in and out of a sink without being held whole
/// in memory.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// A key in a backup sink: `/`-separated segments of `[A-Za-z0-9._-]`, no empty, `.` or `..`
/// segment, at most 512 bytes. Local sinks map it to a path, so the rule keeps every key
/// inside the sink's directory.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupKey(String);

impl BackupKey {
    /// Validates a key.
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = key.into();
        let rule = "must be '/'-separated segments of A-Z, a-z, 0-9, '.', '_' or '-', without empty, '.' or '..' segments, at most 512 bytes";
        if key.is_empty() || key.len() > 512 {
            return Err(Error::invalid("backup key", rule));
        }
        for seg in key.split('/') {
            let seg_ok = !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !seg_ok {
                return Err(Error::invalid("backup key", format!("{key:?} {rule}")));
            }
        }
        Ok(BackupKey(key))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Debug for BackupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackupKey({:?})", self.0)
    }
}

impl TryFrom<String> for BackupKey {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<BackupKey> for String {
    fn from(k: BackupKey) -> String {
        k.0
    }
}

/// What a sink knows about one stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: BackupKey,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub last_modified: DateTime<Utc>,
}

/// What a sink can do beyond `put` and `get` (opendal-style capabilities, so callers do not
/// guess).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkCapabilities {
    /// `list` works.
    pub list: bool,
    /// `delete` works (retention needs it).
    pub delete: bool,
}

/// Stores backup archives and their manifests.
///
/// # Contract
///
/// - **Atomic put**: after `put` returns `Ok`, `get` returns exactly the bytes written; while
///   it runs, or if it fails (including a body stream that yields an error), readers see the
///   previous object or none — never a partial one.
/// - **Overwrite**: `put` on an existing key replaces it.
/// - **Missing keys**: `get` and `head` of a missing key fail with [`Error::NotFound`].
/// - **Delete** is idempotent: deleting a missing key is `Ok`.
/// - **List** returns every object whose key starts with `prefix` (`""` lists all), ordered by
///   key, with sizes equal to what was written.
/// - Unsupported operations (see [`BackupSink::capabilities`]) fail with
///   [`Error::Unavailable`].
/// - Bodies are streamed: a sink never needs the whole object in memory.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait BackupSink: Send + Sync + Debug + 'static {
    /// A short name for logs and metrics: `"local"`, `"s3"`, `"memory"`.
    fn name(&self) -> &'static str;

    /// What this sink supports.
    fn capabilities(&self) -> SinkCapabilities;

    /// Stores `body` under `key`, atomically.
    async fn put(&self, key: &BackupKey, body: ByteStream) -> Result<ObjectMeta>;

    /// Streams the object stored under `key`.
    async fn get(&self, key: &BackupKey) -> Result<ByteStream>;

    /// Describes the object stored under `key`.
    async fn head(&self, key: &BackupKey) -> Result<ObjectMeta>;

    /// Lists objects whose key starts with `prefix`, ordered by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Deletes the object under `key`, if any.
    async fn delete(&self, key: &BackupKey) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape() {
        assert!(BackupKey::new("alice/2026-01-01T02-00-00Z-abc.tar.zst").is_ok());
        for bad in [
            "", "/abs", "a//b", "../x", "a/../b", "a/./b", "a\\b", "a b", "a/",
        ] {
            assert!(BackupKey::new(bad).is_err(), "{bad:?}");
        }
    }
}
