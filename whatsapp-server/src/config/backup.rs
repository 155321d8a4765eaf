//! Backups: where they go (a local directory or an S3 bucket), their encryption, schedule
//! and retention.

use std::path::PathBuf;
use std::time::Duration;

use whatsapp_storage::backup::{EncryptionKey, S3Config};

use super::ConfigError;
use super::parse::{self, Quiet};
use super::secret::Secret;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Where backups go (`BACKUP_SINK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackupSink {
    /// A local directory (`BACKUP_DIR`).
    Local,
    /// An S3-compatible bucket (the `S3_*` settings).
    S3,
}

/// The backup settings, as given.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Backups")]
pub struct BackupSettings {
    /// Where backups go: `local` (BACKUP_DIR) or `s3` (the S3_* settings; Supabase Storage
    /// speaks S3).
    #[arg(
        long,
        env = "BACKUP_SINK",
        default_value = "local",
        value_enum,
        ignore_case = true
    )]
    pub backup_sink: BackupSink,

    /// The local backup directory. Default: `<DATA_DIR>/backups`.
    #[arg(long, env = "BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,

    /// The S3 endpoint URL (MinIO, Supabase Storage `…/storage/v1/s3`); absent for AWS.
    #[arg(long, env = "S3_ENDPOINT", value_parser = parse::http_url)]
    pub s3_endpoint: Option<url::Url>,

    /// The S3 region.
    #[arg(long, env = "S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// The S3 bucket.
    #[arg(long, env = "S3_BUCKET", default_value = "whatsapp-backups")]
    pub s3_bucket: String,

    /// The key prefix inside the bucket (empty for none).
    #[arg(long, env = "S3_PREFIX", default_value = "")]
    pub s3_prefix: String,

    /// The S3 access key id.
    #[arg(long, env = "S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,

    /// The S3 secret access key (secret).
    #[arg(long, env = "S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<Secret<String>>,

    /// Path-style S3 requests (`true` for MinIO and Supabase).
    #[arg(long, env = "S3_PATH_STYLE", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_path_style: bool,

    /// Encrypts backups: 32 bytes as 64 hex digits or base64 (`openssl rand -base64 32`)
    /// (secret).
    #[arg(
        long,
        env = "BACKUP_ENCRYPTION_KEY",
        hide_env_values = true,
        value_parser = Quiet(encryption_key)
    )]
    pub backup_encryption_key: Option<Secret<EncryptionKey>>,

    /// When backups are taken (cron, in TIME_ZONE).
    #[arg(long, env = "BACKUP_CRON", default_value = "0 2 * * *", value_parser = parse::cron)]
    pub backup_cron: String,

    /// How many days backups are kept.
    #[arg(
        long,
        env = "BACKUP_RETENTION_DAYS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub backup_retention_days: u32,

    /// How many days a deleted session's backups stay in quarantine (recoverable by the
    /// admin only) before they are purged.
    #[arg(
        long,
        env = "DELETED_BACKUP_RETENTION_DAYS",
        default_value_t = 7,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub deleted_backup_retention_days: u32,
}

fn encryption_key(value: &str) -> Result<Secret<EncryptionKey>, String> {
    EncryptionKey::parse(value.trim())
        .map(Secret::new)
        .map_err(|_| {
            "must be 32 bytes as 64 hex digits or base64 (e.g. `openssl rand -base64 32`)".into()
        })
}

/// Where backups go, once checked.
#[derive(Debug, Clone)]
pub enum BackupTarget {
    /// A local directory.
    Local(PathBuf),
    /// An S3-compatible bucket.
    S3(S3Config),
}

/// The backup settings, checked.
#[derive(Debug, Clone)]
pub struct BackupsConfig {
    /// Where backups go.
    pub target: BackupTarget,
    /// The encryption key, if backups are encrypted.
    pub encryption_key: Option<Secret<EncryptionKey>>,
    /// When backups are taken (cron, in the configured time zone).
    pub cron: String,
    /// How long backups are kept.
    pub retention: Duration,
    /// How long a deleted session's backups stay in quarantine.
    pub deleted_retention: Duration,
    /// The WhatsApp Web origin whose profile storage a backup must hold (from
    /// `WHATSAPP_WEB_URL`).
    pub origin: String,
}

impl BackupSettings {
    /// Checks the sink's settings (the S3 ones when `BACKUP_SINK=s3`). `data_dir` holds the
    /// default local directory; `origin` is the WhatsApp Web page's.
    pub fn check(
        &self,
        data_dir: &std::path::Path,
        origin: String,
    ) -> Result<BackupsConfig, ConfigError> {
        let target = match self.backup_sink {
            BackupSink::Local => BackupTarget::Local(
                self.backup_dir
                    .clone()
                    .unwrap_or_else(|| data_dir.join("backups")),
            ),
            BackupSink::S3 => BackupTarget::S3(self.s3()?),
        };
        Ok(BackupsConfig {
            target,
            encryption_key: self.backup_encryption_key.clone(),
            cron: self.backup_cron.clone(),
            retention: DAY * self.backup_retention_days,
            deleted_retention: DAY * self.deleted_backup_retention_days,
            origin,
        })
    }

    fn s3(&self) -> Result<S3Config, ConfigError> {
        let bucket = self.s3_bucket.trim();
        if bucket.is_empty() {
            return Err(ConfigError::new(
                "S3_BUCKET",
                "must be set when BACKUP_SINK=s3",
            ));
        }
        let access_key_id = super::non_empty(&self.s3_access_key_id).ok_or_else(|| {
            ConfigError::new("S3_ACCESS_KEY_ID", "must be set when BACKUP_SINK=s3")
        })?;
        let secret_access_key = super::present(&self.s3_secret_access_key).ok_or_else(|| {
            ConfigError::new("S3_SECRET_ACCESS_KEY", "must be set when BACKUP_SINK=s3")
        })?;
        let region = self.s3_region.trim();
        if region.is_empty() {
            return Err(ConfigError::new("S3_REGION", "must not be empty"));
        }
        // As given, without the slash `Url` adds to a bare host (the client appends paths).
        let endpoint = self
            .s3_endpoint
            .as_ref()
            .map(|e| e.as_str().trim_end_matches('/').to_owned());
        Ok(S3Config {
            allow_http: self
                .s3_endpoint
                .as_ref()
                .is_some_and(|e| e.scheme() == "http"),
            endpoint,
            region: region.to_owned(),
            bucket: bucket.to_owned(),
            prefix: self.s3_prefix.trim().trim_matches('/').to_owned(),
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.into_inner(),
            session_token: None,
            path_style: self.s3_path_style,
        })
    }
}
