//! [`MemoryBackupSink`]: a [`BackupSink`] in a `BTreeMap`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::backup::{BackupKey, BackupSink, ByteStream, ObjectMeta, SinkCapabilities};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};

/// Size of the chunks [`MemoryBackupSink::get`](BackupSink::get) streams.
const CHUNK: usize = 64 * 1024;

/// A [`BackupSink`] kept in memory, honouring the whole contract (it passes
/// [`crate::testing::conformance::backup_sink`]).
///
/// A `put` collects the body and stores it only once the stream ended without error, so
/// readers never see a partial object. `last_modified` comes from the sink's [`Clock`]
/// ([`MemoryBackupSink::with_clock`]). [`MemoryBackupSink::with_capabilities`] makes a sink
/// that cannot list or delete (those calls then fail with [`Error::Unavailable`]), and
/// [`MemoryBackupSink::fail_next_puts`] injects failures. Clones share the objects.
#[derive(Debug, Clone)]
pub struct MemoryBackupSink {
    inner: Arc<Mutex<Inner>>,
    clock: Arc<dyn Clock>,
    capabilities: SinkCapabilities,
}

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<BackupKey, Stored>,
    put_failures: VecDeque<Error>,
    puts: usize,
}

#[derive(Debug, Clone)]
struct Stored {
    bytes: Bytes,
    last_modified: DateTime<Utc>,
}

impl Stored {
    fn meta(&self, key: &BackupKey) -> ObjectMeta {
        ObjectMeta {
            key: key.clone(),
            size: self.bytes.len() as u64,
            last_modified: self.last_modified,
        }
    }
}

impl Default for MemoryBackupSink {
    fn default() -> Self {
        Self::new()
    }
}

fn missing(key: &BackupKey) -> Error {
    Error::not_found(format!("backup object {key}"))
}

impl MemoryBackupSink {
    /// An empty sink that can list and delete, timestamping with the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty sink that timestamps objects with `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemoryBackupSink {
            inner: Arc::default(),
            clock,
            capabilities: SinkCapabilities {
                list: true,
                delete: true,
            },
        }
    }

    /// The same objects, with other capabilities: what the sink says it cannot do fails with
    /// [`Error::Unavailable`].
    pub fn with_capabilities(mut self, capabilities: SinkCapabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Makes the next `n` puts fail with a transient [`Error::Unavailable`] (nothing stored).
    pub fn fail_next_puts(&self, n: usize) {
        let mut inner = self.inner.lock().unwrap();
        for _ in 0..n {
            inner.put_failures.push_back(Error::unavailable(
                "memory sink",
                "injected failure (MemoryBackupSink::fail_next_puts)",
            ));
        }
    }

    /// Makes the next put (after those already scripted) fail with `error`.
    pub fn fail_next_put_with(&self, error: Error) {
        self.inner.lock().unwrap().put_failures.push_back(error);
    }

    /// Every stored key, ordered.
    pub fn keys(&self) -> Vec<BackupKey> {
        self.inner.lock().unwrap().objects.keys().cloned().collect()
    }

    /// The bytes stored under `key`, if any.
    pub fn bytes(&self, key: &BackupKey) -> Option<Bytes> {
        self.inner
            .lock()
            .unwrap()
            .objects
            .get(key)
            .map(|s| s.bytes.clone())
    }

    /// Stores `bytes` under `key` directly, with an explicit `last_modified` (to set up
    /// retention tests).
    pub fn insert(&self, key: BackupKey, bytes: impl Into<Bytes>, last_modified: DateTime<Utc>) {
        self.inner.lock().unwrap().objects.insert(
            key,
            Stored {
                bytes: bytes.into(),
                last_modified,
            },
        );
    }

    /// The total size of the stored objects.
    pub fn total_bytes(&self) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .objects
            .values()
            .map(|s| s.bytes.len() as u64)
            .sum()
    }

    /// How many puts completed successfully.
    pub fn put_count(&self) -> usize {
        self.inner.lock().unwrap().puts
    }

    fn unsupported(&self, what: &str) -> Error {
        Error::unavailable(
            "memory sink",
            format!("{what} is not supported by this sink (see capabilities)"),
        )
    }
}

#[async_trait]
impl BackupSink for MemoryBackupSink {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> SinkCapabilities {
        self.capabilities
    }

    async fn put(&self, key: &BackupKey, mut body: ByteStream) -> Result<ObjectMeta> {
        if let Some(err) = self.inner.lock().unwrap().put_failures.pop_front() {
            return Err(err);
        }
        let mut buf = BytesMut::new();
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk?);
        }
        let stored = Stored {
            bytes: buf.freeze(),
            last_modified: self.clock.now(),
        };
        let meta = stored.meta(key);
        let mut inner = self.inner.lock().unwrap();
        inner.objects.insert(key.clone(), stored);
        inner.puts += 1;
        Ok(meta)
    }

    async fn get(&self, key: &BackupKey) -> Result<ByteStream> {
        let bytes = self
            .inner
            .lock()
            .unwrap()
            .objects
            .get(key)
            .map(|s| s.bytes.clone())
            .ok_or_else(|| missing(key))?;
        let chunks: Vec<Result<Bytes>> = (0..bytes.len())
            .step_by(CHUNK)
            .map(|at| Ok(bytes.slice(at..bytes.len().min(at + CHUNK))))
            .collect();
        Ok(futures::stream::iter(chunks).boxed())
    }

    async fn head(&self, key: &BackupKey) -> Result<ObjectMeta> {
        self.inner
            .lock()
            .unwrap()
            .objects
            .get(key)
            .map(|s| s.meta(key))
            .ok_or_else(|| missing(key))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        if !self.capabilities.list {
            return Err(self.unsupported("list"));
        }
        Ok(self
            .inner
            .lock()
            .unwrap()
            .objects
            .iter()
            .filter(|(k, _)| k.as_str().starts_with(prefix))
            .map(|(k, s)| s.meta(k))
            .collect())
    }

    async fn delete(&self, key: &BackupKey) -> Result<()> {
        if !self.capabilities.delete {
            return Err(self.unsupported("delete"));
        }
        self.inner.lock().unwrap().objects.remove(key);
        Ok(())
    }
}
