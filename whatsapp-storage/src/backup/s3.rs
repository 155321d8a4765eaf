//! [`S3BackupSink`]: backups in an S3-compatible bucket (AWS S3, MinIO, Supabase Storage's
//! S3 endpoint), built on `object_store` (feature `s3`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, PutPayload, RetryConfig, WriteMultipart};
use whatsapp_core::{
    BackupKey, BackupSink, ByteStream, Error, ObjectMeta, Result, SinkCapabilities,
};

/// Objects smaller than this go up in one `PUT`; larger ones in a multipart upload
/// (S3's minimum part size is 5 MiB).
const SINGLE_PUT_MAX: usize = 5 << 20;
/// Part size of multipart uploads.
const PART: usize = 8 << 20;

/// Where and how to reach the bucket.
///
/// For Supabase Storage: `endpoint = https://<project>.supabase.co/storage/v1/s3`,
/// `region` as shown in the dashboard, `path_style = true`, and the S3 access keys created
/// there. For MinIO: its URL and `path_style = true`.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Endpoint URL; `None` for AWS (derived from the region).
    pub endpoint: Option<String>,
    /// Region, e.g. `eu-west-1` (MinIO accepts anything, `us-east-1` by convention).
    pub region: String,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (`""` for none), e.g. `whatsapp/prod`.
    pub prefix: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (never printed).
    pub secret_access_key: String,
    /// Optional session token (never printed).
    pub session_token: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted style
    /// (`bucket.endpoint/key`). MinIO and Supabase need `true`.
    pub path_style: bool,
    /// Allow `http://` endpoints (a loopback test server); `false` in production.
    pub allow_http: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .field("path_style", &self.path_style)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// A [`BackupSink`] on an S3-compatible bucket.
///
/// `put` is atomic as S3 makes it: a single `PUT` or a multipart upload that only becomes
/// visible on completion (and is aborted if the body fails).
#[derive(Clone)]
pub struct S3BackupSink {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    config: S3Config,
}

impl fmt::Debug for S3BackupSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3BackupSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl S3BackupSink {
    /// Builds the client (no request is made until the first call).
    pub fn new(config: S3Config) -> Result<Self> {
        if config.bucket.is_empty() {
            return Err(Error::invalid("s3 bucket", "must not be empty"));
        }
        let mut b = AmazonS3Builder::new()
            .with_region(&config.region)
            .with_bucket_name(&config.bucket)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_allow_http(config.allow_http)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(60),
                ..Default::default()
            });
        if let Some(endpoint) = &config.endpoint {
            b = b.with_endpoint(endpoint);
        }
        if let Some(token) = &config.session_token {
            b = b.with_token(token);
        }
        let store = b.build().map_err(map_err)?;
        let prefix = config.prefix.trim_matches('/').to_string();
        Ok(S3BackupSink {
            store: Arc::new(store),
            prefix,
            config,
        })
    }

    fn path(&self, key: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(key)
        } else {
            ObjPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn key_of(&self, location: &ObjPath) -> Option<BackupKey> {
        let s = location.as_ref();
        let rel = if self.prefix.is_empty() {
            s
        } else {
            s.strip_prefix(&self.prefix)?.strip_prefix('/')?
        };
        BackupKey::new(rel).ok()
    }

    fn meta(&self, key: &BackupKey, m: object_store::ObjectMeta) -> ObjectMeta {
        ObjectMeta {
            key: key.clone(),
            size: m.size,
            last_modified: m.last_modified,
        }
    }
}

fn map_err(e: object_store::Error) -> Error {
    use object_store::Error as E;
    match e {
        E::NotFound { path, .. } => Error::not_found(format!("backup object {path}")),
        e @ (E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented
        | E::UnknownConfigurationKey { .. }) => Error::backend("s3", false, e),
        // Network failures and 5xx after object_store's own retries.
        e => Error::backend("s3", true, e),
    }
}

#[async_trait]
impl BackupSink for S3BackupSink {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities {
            list: true,
            delete: true,
        }
    }

    async fn put(&self, key: &BackupKey, mut body: ByteStream) -> Result<ObjectMeta> {
        let path = self.path(key.as_str());
        // Buffer up to SINGLE_PUT_MAX: small objects (manifests) take one request.
        let mut head: Vec<Bytes> = Vec::new();
        let mut buffered = 0usize;
        let mut ended = true;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            buffered += chunk.len();
            head.push(chunk);
            if buffered > SINGLE_PUT_MAX {
                ended = false;
                break;
            }
        }
        if ended {
            let payload: PutPayload = head.into_iter().collect();
            self.store.put(&path, payload).await.map_err(map_err)?;
            return self.head(key).await;
        }
        let upload = self.store.put_multipart(&path).await.map_err(map_err)?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        for chunk in head {
            w.put(chunk);
        }
        let result: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                w.wait_for_capacity(2).await.map_err(map_err)?;
                w.put(chunk);
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                w.finish().await.map_err(map_err)?;
            }
            Err(e) => {
                let _ = w.abort().await;
                return Err(e);
            }
        }
        self.head(key).await
    }

    async fn get(&self, key: &BackupKey) -> Result<ByteStream> {
        let r = self
            .store
            .get(&self.path(key.as_str()))
            .await
            .map_err(map_err)?;
        Ok(r.into_stream().map_err(map_err).boxed())
    }

    async fn head(&self, key: &BackupKey) -> Result<ObjectMeta> {
        let m = self
            .store
            .head(&self.path(key.as_str()))
            .await
            .map_err(map_err)?;
        Ok(self.meta(key, m))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        // object_store lists by whole path segments; list the deepest complete directory
        // of `prefix` and filter by the string prefix.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let list_path = match (self.prefix.is_empty(), dir.is_empty()) {
            (true, true) => None,
            (true, false) => Some(ObjPath::from(dir)),
            (false, true) => Some(ObjPath::from(self.prefix.as_str())),
            (false, false) => Some(ObjPath::from(format!("{}/{dir}", self.prefix))),
        };
        let mut stream = self.store.list(list_path.as_ref());
        let mut out = Vec::new();
        while let Some(m) = stream.next().await {
            let m = m.map_err(map_err)?;
            if let Some(key) = self.key_of(&m.location)
                && key.as_str().starts_with(prefix)
            {
                out.push(self.meta(&key, m));
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &BackupKey) -> Result<()> {
        match self.store.delete(&self.path(key.as_str())).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }
}
