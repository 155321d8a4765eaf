//! [`ServerConfig`]: every setting of the server, from flags, the environment and an
//! optional TOML file.
//!
//! # Precedence
//!
//! For each setting the first of these that is given wins:
//!
//! 1. the command-line flag (`--port 4000`);
//! 2. the environment variable (`PORT=4000`);
//! 3. the configuration file given with `--config` / `CONFIG_FILE`;
//! 4. the built-in default (the seed's where it has one: port 4000, backups `0 2 * * *`
//!    kept 30 days in the `whatsapp-backups` bucket).
//!
//! # The configuration file
//!
//! A TOML table whose keys are the settings' flag names, with `-` or `_` (`port`,
//! `database-url`, `s3_bucket`) or their environment variable names (`DATABASE_URL`).
//! Values are strings, integers or booleans; `keepalive_texts` and `chromium_args` may also be
//! arrays of strings:
//!
//! ```toml
//! port = 4000
//! database_url = "postgres://app@db/app"
//! keepalive_target = "own"
//! keepalive_texts = ["Connection check", "Status update"]   # … at least 15
//! ```
//!
//! Only [`ServerConfig::try_load_from`] reads the file; a plain `try_parse_from` ignores it.
//!
//! # Validation
//!
//! [`ServerConfig::validate`] checks every setting and returns a [`CheckedServerConfig`]
//! holding the parsed pieces the server needs, or a [`ConfigError`] naming the setting by its
//! environment variable and the rule that was broken.
//!
//! # Secrets
//!
//! `ADMIN_API_KEY`, `SUPABASE_JWT_SECRET`, `EMAIL_API_TOKEN`, `S3_SECRET_ACCESS_KEY`,
//! `BACKUP_ENCRYPTION_KEY` and `METRICS_TOKEN` print as `***` in `Debug`; the passwords inside `DATABASE_URL` and
//! `REDIS_URL` are masked with [`RedactedUrl`].

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono_tz::Tz;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use whatsapp_chromium::ChromiumConfig;
use whatsapp_core::{EmailAddress, NodeId, PhoneNumber};
use whatsapp_keepalive::config::MIN_KEEPALIVE_TEXTS;
use whatsapp_keepalive::{KeepaliveConfig, KeepaliveTarget};
use whatsapp_storage::backup::{EncryptionKey, S3Config};
use whatsapp_storage::store::RedactedUrl;

use crate::messaging::Pacing;
use crate::outbox::OutboxConfig;
use crate::serve::HttpLimits;

/// The Chromium executable used when neither `CHROMIUM_PATH` nor `PUPPETEER_EXECUTABLE_PATH`
/// is set.
pub const DEFAULT_CHROMIUM_PATH: &str = "/usr/bin/chromium";

/// Every setting of the server, as given (see the [module docs](self) for precedence).
///
/// Parse with [`ServerConfig::try_load_from`] (flags, environment and file) and check with
/// [`ServerConfig::validate`].
#[derive(Clone, Parser)]
#[command(
    name = "whatsapp-server",
    about = "Keeps WhatsApp Web sessions connected around the clock.",
    after_long_help = "Precedence: command-line flag > environment variable > --config file > default."
)]
pub struct ServerConfig {
    /// A TOML configuration file; its values apply where neither a flag nor an environment
    /// variable is given. Keys are the flag names (`port`, `database_url`, …).
    #[arg(long, env = "CONFIG_FILE", value_name = "CONFIG_FILE")]
    pub config: Option<PathBuf>,

    /// The HTTP port.
    #[arg(long, env = "PORT", default_value_t = 4000)]
    pub port: u16,

    /// The address to listen on (an IP address).
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// Where the sessions' Chromium profiles live (one directory per session).
    #[arg(
        long,
        env = "SESSIONS_PATH",
        default_value = "./data/whatsapp-sessions"
    )]
    pub sessions_path: PathBuf,

    /// The data directory (default database file, local backups).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The database: `postgres://…` or `sqlite://…`. Default: `sqlite://<DATA_DIR>/whatsapp.db`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Redis (`redis://…`) for the message queue and rate limiter; without it the database
    /// queue is used.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// The frontend's URL: e-mails are POSTed to `<FRONTEND_URL>/api/send-email`, and it is
    /// the allowed CORS origin.
    #[arg(long, env = "FRONTEND_URL")]
    pub frontend_url: Option<String>,

    /// Bearer token sent to the frontend's e-mail endpoint (secret).
    #[arg(long, env = "EMAIL_API_TOKEN", hide_env_values = true)]
    pub email_api_token: Option<String>,

    /// The Chromium executable. Falls back to PUPPETEER_EXECUTABLE_PATH, then
    /// /usr/bin/chromium.
    #[arg(long, env = "CHROMIUM_PATH")]
    pub chromium_path: Option<PathBuf>,

    /// The Chromium executable under the seed's name; used when CHROMIUM_PATH is not set.
    #[arg(long, env = "PUPPETEER_EXECUTABLE_PATH")]
    pub puppeteer_executable_path: Option<PathBuf>,

    /// Extra Chromium arguments. Separated by whitespace, or by a comma followed by `--`;
    /// quote with '…' or "…" to keep spaces (a backslash escapes the next character inside
    /// "…"). Example: `--host-resolver-rules="MAP web.whatsapp.com 127.0.0.1:4010",
    /// --ignore-certificate-errors`. `--disable-features=A,B` stays one argument.
    #[arg(long, env = "CHROMIUM_ARGS", allow_hyphen_values = true)]
    pub chromium_args: Option<String>,

    /// The WhatsApp Web page to open.
    #[arg(
        long,
        env = "WHATSAPP_WEB_URL",
        default_value = "https://web.whatsapp.com/"
    )]
    pub whatsapp_web_url: String,

    /// The administrator's API key (secret). Absent: one is generated at first start.
    #[arg(long, env = "ADMIN_API_KEY", hide_env_values = true)]
    pub admin_api_key: Option<String>,

    /// The Supabase JWT secret used to verify users' tokens (secret).
    #[arg(long, env = "SUPABASE_JWT_SECRET", hide_env_values = true)]
    pub supabase_jwt_secret: Option<String>,

    /// Where backups go: `local` (BACKUP_DIR) or `s3` (the S3_* settings; Supabase Storage
    /// speaks S3).
    #[arg(long, env = "BACKUP_SINK", default_value = "local")]
    pub backup_sink: String,

    /// The local backup directory. Default: `<DATA_DIR>/backups`.
    #[arg(long, env = "BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,

    /// The S3 endpoint URL (MinIO, Supabase Storage `…/storage/v1/s3`); absent for AWS.
    #[arg(long, env = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

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
    pub s3_secret_access_key: Option<String>,

    /// Path-style S3 requests (`true` for MinIO and Supabase).
    #[arg(long, env = "S3_PATH_STYLE", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_path_style: bool,

    /// Encrypts backups: 32 bytes as 64 hex digits or base64 (`openssl rand -base64 32`)
    /// (secret).
    #[arg(long, env = "BACKUP_ENCRYPTION_KEY", hide_env_values = true)]
    pub backup_encryption_key: Option<String>,

    /// When backups are taken (cron, in TIME_ZONE).
    #[arg(long, env = "BACKUP_CRON", default_value = "0 2 * * *")]
    pub backup_cron: String,

    /// How many days backups are kept.
    #[arg(long, env = "BACKUP_RETENTION_DAYS", default_value_t = 30)]
    pub backup_retention_days: u32,

    /// How many days a deleted session's backups stay in quarantine (recoverable by the
    /// admin only) before they are purged.
    #[arg(long, env = "DELETED_BACKUP_RETENTION_DAYS", default_value_t = 7)]
    pub deleted_backup_retention_days: u32,

    /// The time zone of schedules (an IANA name such as `Europe/Madrid`). Default: TZ, then UTC.
    #[arg(long, env = "TIME_ZONE")]
    pub time_zone: Option<String>,

    /// The time zone under its POSIX name; used when TIME_ZONE is not set.
    #[arg(long, env = "TZ")]
    pub tz: Option<String>,

    /// Where keepalive messages go: a phone number (country code first), `own` (the linked
    /// account's own number) or `off`.
    #[arg(long, env = "KEEPALIVE_TARGET", default_value = "off")]
    pub keepalive_target: String,

    /// The keepalive texts: a file (one text per line) or a `|`-separated list; at least 15
    /// when a target is set. Default: the seed's 15 texts.
    #[arg(long, env = "KEEPALIVE_TEXTS")]
    pub keepalive_texts: Option<String>,

    /// This node's id for session ownership leases (`[a-z0-9_-]`, 1–64). Default: derived
    /// from the host name.
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,

    /// The steady spacing between two messages of one session (`4s`, `1m`, …): WhatsApp
    /// bans accounts that send in bursts. Keepalive texts are paced with the rest.
    #[arg(long, env = "MESSAGE_INTERVAL", default_value = "4s")]
    pub message_interval: String,

    /// How many messages of one session may go out back to back after an idle spell.
    #[arg(long, env = "MESSAGE_BURST", default_value_t = 2)]
    pub message_burst: u32,

    /// Renewal reminders go to owners of sessions whose `expires_at` is within this many days.
    #[arg(long, env = "RENEWAL_REMINDER_DAYS", default_value_t = 7)]
    pub renewal_reminder_days: u32,

    /// The operator's e-mail address for `service_alert` e-mails (the database, Redis or the
    /// backup store unreachable for a minute, and their recovery), sent through the e-mail
    /// endpoint. Without it alerts are logged and exported as metrics only.
    #[arg(long, env = "ALERT_EMAIL")]
    pub alert_email: Option<String>,

    /// At most this many Chromium launches at once (start-up restore, relaunches). Each
    /// launch takes most of a core for a second or two.
    #[arg(long, env = "LAUNCH_CONCURRENCY", default_value_t = 2)]
    pub launch_concurrency: usize,

    /// Minimum time between two Chromium launches (the restore after a restart,
    /// relaunches): the sessions' connections to WhatsApp open at least this far apart
    /// (`0s`: only LAUNCH_CONCURRENCY spaces them).
    #[arg(long, env = "START_STAGGER", default_value = "250ms")]
    pub start_stagger: String,

    /// E-mails and webhooks are dead-lettered after this many failed delivery attempts.
    #[arg(long, env = "OUTBOX_MAX_ATTEMPTS", default_value_t = 10)]
    pub outbox_max_attempts: u32,

    /// The wait before the first retry of a failed e-mail or webhook; it doubles up to 1 h.
    #[arg(long, env = "OUTBOX_RETRY_BASE", default_value = "30s")]
    pub outbox_retry_base: String,

    /// How long one e-mail or webhook delivery may take before it counts as failed.
    #[arg(long, env = "OUTBOX_REQUEST_TIMEOUT", default_value = "15s")]
    pub outbox_request_timeout: String,

    /// HTTP: longest wait for a complete request head, counted from the connection's start
    /// and, on a kept-alive connection, from the end of the previous response (so it is
    /// also the idle time-out). Silent, half-sent and idle connections are closed after it.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT", default_value = "10s")]
    pub http_header_timeout: String,

    /// HTTP: longest wait for the next piece of a request body.
    #[arg(long, env = "HTTP_BODY_TIMEOUT", default_value = "10s")]
    pub http_body_timeout: String,

    /// HTTP: longest time to answer a request, its body included (408 after it); not
    /// applied to Socket.IO.
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT", default_value = "30s")]
    pub http_request_timeout: String,

    /// HTTP: most connections open at once (WebSockets included); further ones wait to be
    /// accepted.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub http_max_connections: usize,

    /// A bearer token for `GET /metrics` (secret); the admin key is accepted too.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// An extra address (`127.0.0.1:9100`) serving `/metrics` without a key, for a
    /// Prometheus scraper on a private network. Default: none.
    #[arg(long, env = "METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Internal webhook targets to allow, comma-separated: host names (exact), addresses or
    /// CIDR ranges, e.g. `127.0.0.0/8,localhost`. Without it webhooks to loopback, private,
    /// link-local and other internal addresses (checked on the resolved address at every
    /// delivery) are refused.
    #[arg(long, env = "WEBHOOK_ALLOW_HOSTS")]
    pub webhook_allow_hosts: Option<String>,
}

/// A setting that is invalid: which one (by its environment variable) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting, by its environment variable name (e.g. `"PORT"`).
    pub setting: &'static str,
    /// The rule that was broken, for a human.
    pub message: String,
}

impl ConfigError {
    fn new(setting: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            setting,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.setting, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Where backups go, once checked.
#[derive(Debug, Clone)]
pub enum BackupTarget {
    /// A local directory.
    Local(PathBuf),
    /// An S3-compatible bucket.
    S3(S3Config),
}

/// A [`ServerConfig`] whose settings all passed [`ServerConfig::validate`], parsed.
#[derive(Clone)]
pub struct CheckedServerConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The sessions' profile directory.
    pub sessions_path: PathBuf,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The database URL (`postgres://…` or `sqlite://…`).
    pub database_url: String,
    /// The Redis URL, if any.
    pub redis_url: Option<String>,
    /// The frontend's URL (also the CORS origin), if any.
    pub frontend_url: Option<url::Url>,
    /// The e-mail endpoint's bearer token, if any (secret).
    pub email_api_token: Option<String>,
    /// The administrator's API key; `None`: generate one at first start (secret).
    pub admin_api_key: Option<String>,
    /// The Supabase JWT secret, if any (secret).
    pub supabase_jwt_secret: Option<String>,
    /// Where backups go.
    pub backup: BackupTarget,
    /// The backup encryption key, if any (secret).
    pub backup_encryption_key: Option<EncryptionKey>,
    /// The schedules' time zone.
    pub time_zone: Tz,
    /// This node's id.
    pub node_id: NodeId,
    /// Per-session message pacing.
    pub pacing: Pacing,
    /// Renewal reminders' horizon, in days.
    pub renewal_reminder_days: u32,
    /// How long a deleted session's backups stay in quarantine.
    pub deleted_backup_retention: Duration,
    /// Where `service_alert` e-mails go.
    pub alert_email: Option<EmailAddress>,
    /// Delivery of e-mails and webhooks: retries, dead letters, time-outs.
    pub outbox: OutboxConfig,
    /// The HTTP listener's time-outs and connection limit.
    pub http: HttpLimits,
    /// The bearer token that may read `/metrics` besides the admin key (secret).
    pub metrics_token: Option<String>,
    /// Where `/metrics` is also served without a key, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    keepalive: KeepaliveConfig,
    chromium: ChromiumConfig,
}

impl CheckedServerConfig {
    /// The keepalive engine's configuration: the seed's defaults with the keepalive target
    /// and texts, the backup cron, time zone and retention from this configuration.
    pub fn keepalive_config(&self) -> KeepaliveConfig {
        self.keepalive.clone()
    }

    /// The S3 configuration when `BACKUP_SINK=s3`.
    pub fn s3_config(&self) -> Option<S3Config> {
        match &self.backup {
            BackupTarget::S3(c) => Some(c.clone()),
            BackupTarget::Local(_) => None,
        }
    }

    /// The Chromium configuration: executable, extra arguments and WhatsApp Web URL.
    pub fn chromium_config(&self) -> ChromiumConfig {
        self.chromium.clone()
    }

    /// The allowed CORS origin (the frontend's origin), if a frontend is configured.
    pub fn cors_origin(&self) -> Option<String> {
        self.frontend_url
            .as_ref()
            .map(|u| u.origin().ascii_serialization())
    }
}

fn secret<T>(v: &Option<T>) -> Option<&'static str> {
    v.as_ref().map(|_| "***")
}

fn redacted(v: &Option<String>) -> Option<RedactedUrl> {
    v.as_deref().map(RedactedUrl::new)
}

impl fmt::Debug for CheckedServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckedServerConfig")
            .field("listen", &self.listen)
            .field("sessions_path", &self.sessions_path)
            .field("data_dir", &self.data_dir)
            .field("database_url", &RedactedUrl::new(&self.database_url))
            .field("redis_url", &redacted(&self.redis_url))
            .field(
                "frontend_url",
                &self.frontend_url.as_ref().map(|u| u.as_str()),
            )
            .field("email_api_token", &secret(&self.email_api_token))
            .field("admin_api_key", &secret(&self.admin_api_key))
            .field("supabase_jwt_secret", &secret(&self.supabase_jwt_secret))
            .field("backup", &self.backup)
            .field(
                "backup_encryption_key",
                &secret(&self.backup_encryption_key),
            )
            .field("time_zone", &self.time_zone)
            .field("node_id", &self.node_id)
            .field("pacing", &self.pacing)
            .field("renewal_reminder_days", &self.renewal_reminder_days)
            .field("deleted_backup_retention", &self.deleted_backup_retention)
            .field("alert_email", &self.alert_email)
            .field("outbox", &self.outbox)
            .field("http", &self.http)
            .field("metrics_token", &secret(&self.metrics_token))
            .field("metrics_listen", &self.metrics_listen)
            .field("keepalive", &self.keepalive)
            .field("chromium", &self.chromium)
            .finish()
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("config", &self.config)
            .field("port", &self.port)
            .field("host", &self.host)
            .field("sessions_path", &self.sessions_path)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redacted(&self.database_url))
            .field("redis_url", &redacted(&self.redis_url))
            .field("frontend_url", &redacted(&self.frontend_url))
            .field("email_api_token", &secret(&self.email_api_token))
            .field("chromium_path", &self.chromium_path)
            .field("puppeteer_executable_path", &self.puppeteer_executable_path)
            .field(
                "chromium_args",
                // A proxy switch may carry `user:password@`: hide the whole value then.
                &self
                    .chromium_args
                    .as_deref()
                    .map(|a| if a.contains('@') { "***" } else { a }),
            )
            .field(
                "whatsapp_web_url",
                &RedactedUrl::new(&self.whatsapp_web_url),
            )
            .field("admin_api_key", &secret(&self.admin_api_key))
            .field("supabase_jwt_secret", &secret(&self.supabase_jwt_secret))
            .field("backup_sink", &self.backup_sink)
            .field("backup_dir", &self.backup_dir)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_region", &self.s3_region)
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_prefix", &self.s3_prefix)
            .field("s3_access_key_id", &self.s3_access_key_id)
            .field("s3_secret_access_key", &secret(&self.s3_secret_access_key))
            .field("s3_path_style", &self.s3_path_style)
            .field(
                "backup_encryption_key",
                &secret(&self.backup_encryption_key),
            )
            .field("backup_cron", &self.backup_cron)
            .field("backup_retention_days", &self.backup_retention_days)
            .field(
                "deleted_backup_retention_days",
                &self.deleted_backup_retention_days,
            )
            .field("time_zone", &self.time_zone)
            .field("tz", &self.tz)
            .field("keepalive_target", &self.keepalive_target)
            .field("keepalive_texts", &self.keepalive_texts)
            .field("node_id", &self.node_id)
            .field("message_interval", &self.message_interval)
            .field("message_burst", &self.message_burst)
            .field("renewal_reminder_days", &self.renewal_reminder_days)
            .field("alert_email", &self.alert_email)
            .field("launch_concurrency", &self.launch_concurrency)
            .field("start_stagger", &self.start_stagger)
            .field("outbox_max_attempts", &self.outbox_max_attempts)
            .field("outbox_retry_base", &self.outbox_retry_base)
            .field("outbox_request_timeout", &self.outbox_request_timeout)
            .field("http_header_timeout", &self.http_header_timeout)
            .field("http_body_timeout", &self.http_body_timeout)
            .field("http_request_timeout", &self.http_request_timeout)
            .field("http_max_connections", &self.http_max_connections)
            .field("metrics_token", &secret(&self.metrics_token))
            .field("metrics_listen", &self.metrics_listen)
            .field("webhook_allow_hosts", &self.webhook_allow_hosts)
            .finish()
    }
}

/// The Chromium executable: `CHROMIUM_PATH`, else `PUPPETEER_EXECUTABLE_PATH`, else
/// [`DEFAULT_CHROMIUM_PATH`].
pub fn resolve_chromium_path(
    chromium_path: Option<&Path>,
    puppeteer_executable_path: Option<&Path>,
) -> PathBuf {
    chromium_path
        .or(puppeteer_executable_path)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM_PATH))
}

/// Splits `CHROMIUM_ARGS` into arguments (syntax on [`ServerConfig::chromium_args`]):
/// whitespace separates, as does a comma followed (after optional spaces) by `-`; '…' and
/// "…" keep spaces and commas; inside "…" a backslash escapes the next character.
pub fn split_chromium_args(input: &str) -> Result<Vec<String>, ConfigError> {
    let chars: Vec<char> = input.chars().collect();
    let mut args = Vec::new();
    let mut current = String::new();
    let mut started = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                started = true;
                let quote = c;
                i += 1;
                loop {
                    let Some(&q) = chars.get(i) else {
                        return Err(ConfigError::new(
                            "CHROMIUM_ARGS",
                            format!("unterminated {quote} quote"),
                        ));
                    };
                    if q == quote {
                        break;
                    }
                    if q == '\\' && quote == '"' {
                        i += 1;
                        match chars.get(i) {
                            Some(&e) => current.push(e),
                            None => {
                                return Err(ConfigError::new(
                                    "CHROMIUM_ARGS",
                                    "a backslash ends the value",
                                ));
                            }
                        }
                    } else {
                        current.push(q);
                    }
                    i += 1;
                }
            }
            c if c.is_whitespace() => {
                if started {
                    args.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            ',' if chars[i + 1..]
                .iter()
                .find(|c| !c.is_whitespace())
                .is_none_or(|&c| c == '-') =>
            {
                if started {
                    args.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                started = true;
                current.push(c);
            }
        }
        i += 1;
    }
    if started {
        args.push(current);
    }
    Ok(args)
}

/// A node id from a host name: lower case, every character outside `[a-z0-9_-]` becomes
/// `-`, at most 64 characters; `node` when nothing is left.
pub fn node_id_from_hostname(hostname: &str) -> NodeId {
    let mut id: String = hostname
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if id.is_empty() {
        id = "node".to_owned();
    }
    NodeId::new(id).unwrap_or_else(|_| NodeId::new("node").expect("`node` is a valid node id"))
}

fn check_url(
    setting: &'static str,
    value: &str,
    schemes: &[&str],
) -> Result<url::Url, ConfigError> {
    let parsed = url::Url::parse(value).map_err(|e| {
        ConfigError::new(
            setting,
            format!("`{}` is not a URL ({e})", RedactedUrl::new(value)),
        )
    })?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(ConfigError::new(
            setting,
            format!(
                "the scheme must be one of {} (got `{}`)",
                schemes.join(", "),
                parsed.scheme()
            ),
        ));
    }
    Ok(parsed)
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl ServerConfig {
    /// Parses `args` (the first is the program name) with the environment, then applies the
    /// `--config` file under them (see the [module docs](self)). The errors are clap's
    /// (`.exit()` prints them, `--help` included).
    pub fn try_load_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Self::command().try_get_matches_from(args)?;
        let mut config = Self::from_arg_matches(&matches)?;
        config.apply_file(&matches)?;
        Ok(config)
    }

    /// Applies the `--config` file (if one was given) to the settings that `matches` got
    /// neither from the command line nor from the environment. `matches` are the ones this
    /// configuration was parsed from; use this when `ServerConfig` is flattened into a
    /// subcommand (`#[command(flatten)]`), passing the subcommand's matches.
    pub fn apply_file(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        let Some(path) = self.config.clone() else {
            return Ok(());
        };
        let mut command = Self::command();
        let file_args = file_arguments(&command, matches, &path)
            .map_err(|e| command.error(clap::error::ErrorKind::ValueValidation, e))?;
        if file_args.is_empty() {
            return Ok(());
        }
        // Parse the file's values alone: no environment, no defaults, so that only the
        // settings the file gives are present and updated.
        let mut file_command = command.mut_args(|a| a.env(None).default_value(None));
        let file_matches = file_command
            .try_get_matches_from_mut(std::iter::once("config-file".to_owned()).chain(file_args))?;
        self.update_from_arg_matches(&file_matches)
    }

    /// [`ServerConfig::try_load_from`] on this process's arguments; prints the error and
    /// exits on failure (as `clap::Parser::parse` does).
    pub fn load() -> Self {
        Self::try_load_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Checks every setting; the error names the first invalid one by its environment
    /// variable.
    pub fn validate(&self) -> Result<CheckedServerConfig, ConfigError> {
        if self.port == 0 {
            return Err(ConfigError::new("PORT", "must be 1–65535"));
        }
        let host: IpAddr = self.host.trim().parse().map_err(|_| {
            ConfigError::new(
                "HOST",
                format!("`{}` is not an IP address", self.host.trim()),
            )
        })?;
        let listen = SocketAddr::new(host, self.port);

        let database_url = match non_empty(&self.database_url) {
            Some(url) => {
                if !(url.starts_with("postgres://")
                    || url.starts_with("postgresql://")
                    || url.starts_with("sqlite:"))
                {
                    return Err(ConfigError::new(
                        "DATABASE_URL",
                        "must start with postgres://, postgresql:// or sqlite:",
                    ));
                }
                if !url.starts_with("sqlite:") {
                    check_url("DATABASE_URL", url, &["postgres", "postgresql"])?;
                }
                url.to_owned()
            }
            None => format!("sqlite://{}", self.data_dir.join("whatsapp.db").display()),
        };
        let redis_url = match non_empty(&self.redis_url) {
            Some(url) => {
                check_url("REDIS_URL", url, &["redis", "rediss", "redis+unix", "unix"])?;
                Some(url.to_owned())
            }
            None => None,
        };
        let frontend_url = match non_empty(&self.frontend_url) {
            Some(url) => {
                let parsed = check_url("FRONTEND_URL", url, &["http", "https"])?;
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(ConfigError::new("FRONTEND_URL", "must have a host"));
                }
                Some(parsed)
            }
            None => None,
        };
        check_url(
            "WHATSAPP_WEB_URL",
            self.whatsapp_web_url.trim(),
            &["http", "https"],
        )?;

        let mut chromium = ChromiumConfig {
            executable: resolve_chromium_path(
                self.chromium_path.as_deref(),
                self.puppeteer_executable_path.as_deref(),
            ),
            url: self.whatsapp_web_url.trim().to_owned(),
            ..ChromiumConfig::default()
        };
        if chromium.executable.as_os_str().is_empty() {
            return Err(ConfigError::new("CHROMIUM_PATH", "must not be empty"));
        }
        if let Some(args) = &self.chromium_args {
            chromium.extra_args = split_chromium_args(args)?;
        }

        let backup_encryption_key = match non_empty(&self.backup_encryption_key) {
            Some(k) => Some(EncryptionKey::parse(k).map_err(|_| {
                ConfigError::new(
                    "BACKUP_ENCRYPTION_KEY",
                    "must be 32 bytes as 64 hex digits or base64 (e.g. `openssl rand -base64 32`)",
                )
            })?),
            None => None,
        };
        let backup = match self.backup_sink.trim().to_ascii_lowercase().as_str() {
            "local" => BackupTarget::Local(
                self.backup_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("backups")),
            ),
            "s3" => BackupTarget::S3(self.build_s3()?),
            other => {
                return Err(ConfigError::new(
                    "BACKUP_SINK",
                    format!("must be `local` or `s3` (got `{other}`)"),
                ));
            }
        };

        let time_zone = self.resolve_time_zone()?;
        croner::Cron::from_str(self.backup_cron.trim()).map_err(|e| {
            ConfigError::new(
                "BACKUP_CRON",
                format!("`{}` is not a cron pattern ({e})", self.backup_cron.trim()),
            )
        })?;
        if self.backup_retention_days == 0 {
            return Err(ConfigError::new(
                "BACKUP_RETENTION_DAYS",
                "must be at least 1",
            ));
        }
        if self.deleted_backup_retention_days == 0 {
            return Err(ConfigError::new(
                "DELETED_BACKUP_RETENTION_DAYS",
                "must be at least 1",
            ));
        }

        let mut keepalive = KeepaliveConfig::default();
        keepalive.backup.cron = self.backup_cron.trim().to_owned();
        keepalive.backup.time_zone = time_zone;
        keepalive.backup.retention =
            Duration::from_secs(u64::from(self.backup_retention_days) * 24 * 60 * 60);
        keepalive.keepalive.target = self.resolve_keepalive_target()?;
        if self.launch_concurrency == 0 {
            return Err(ConfigError::new("LAUNCH_CONCURRENCY", "must be at least 1"));
        }
        keepalive.runtime.launch_concurrency = self.launch_concurrency;
        keepalive.runtime.start_stagger = humantime::parse_duration(self.start_stagger.trim())
            .map_err(|e| {
                ConfigError::new(
                    "START_STAGGER",
                    format!(
                        "`{}` is not a duration like 2s or 0s: {e}",
                        self.start_stagger
                    ),
                )
            })?;
        if let Some(texts) = &self.keepalive_texts {
            keepalive.keepalive.texts = read_keepalive_texts(texts)?;
        }
        if keepalive.keepalive.target != KeepaliveTarget::Off {
            let n = keepalive.keepalive.texts.len();
            if n < MIN_KEEPALIVE_TEXTS {
                return Err(ConfigError::new(
                    "KEEPALIVE_TEXTS",
                    format!(
                        "needs at least {MIN_KEEPALIVE_TEXTS} non-empty texts when KEEPALIVE_TARGET is set (got {n})"
                    ),
                ));
            }
        }
        keepalive
            .clone()
            .check()
            .map_err(|e| ConfigError::new("KEEPALIVE", e.to_string()))?;

        let node_id = match non_empty(&self.node_id) {
            Some(id) => NodeId::new(id).map_err(|_| {
                ConfigError::new(
                    "NODE_ID",
                    format!("`{id}` must be 1–64 characters of [a-z0-9_-]"),
                )
            })?,
            None => node_id_from_hostname(&whatsapp_core::profile::hostname()),
        };

        let interval = humantime::parse_duration(self.message_interval.trim()).map_err(|e| {
            ConfigError::new(
                "MESSAGE_INTERVAL",
                format!(
                    "`{}` is not a duration like 4s or 1m: {e}",
                    self.message_interval
                ),
            )
        })?;
        let pacing = Pacing {
            interval,
            burst: self.message_burst,
        };
        pacing.validate().map_err(|_| {
            if interval.is_zero() {
                ConfigError::new("MESSAGE_INTERVAL", "must be more than zero")
            } else {
                ConfigError::new("MESSAGE_BURST", "must be at least 1")
            }
        })?;
        if self.renewal_reminder_days == 0 {
            return Err(ConfigError::new(
                "RENEWAL_REMINDER_DAYS",
                "must be at least 1",
            ));
        }

        let alert_email = non_empty(&self.alert_email)
            .map(|e| {
                EmailAddress::new(e).map_err(|_| {
                    ConfigError::new("ALERT_EMAIL", format!("`{e}` is not an e-mail address"))
                })
            })
            .transpose()?;

        let duration = |setting: &'static str, value: &str| {
            humantime::parse_duration(value.trim()).map_err(|e| {
                ConfigError::new(
                    setting,
                    format!("`{value}` is not a duration like 30s or 2m: {e}"),
                )
            })
        };
        let mut outbox = OutboxConfig::default();
        outbox.retry.max_attempts = self.outbox_max_attempts;
        outbox.retry.initial = duration("OUTBOX_RETRY_BASE", &self.outbox_retry_base)?;
        outbox.request_timeout = duration("OUTBOX_REQUEST_TIMEOUT", &self.outbox_request_timeout)?;
        if outbox.retry.max < outbox.retry.initial {
            outbox.retry.max = outbox.retry.initial;
        }
        if self.outbox_max_attempts == 0 {
            return Err(ConfigError::new(
                "OUTBOX_MAX_ATTEMPTS",
                "must be at least 1",
            ));
        }
        if outbox.retry.initial.is_zero() {
            return Err(ConfigError::new(
                "OUTBOX_RETRY_BASE",
                "must be more than zero",
            ));
        }
        if outbox.request_timeout.is_zero() {
            return Err(ConfigError::new(
                "OUTBOX_REQUEST_TIMEOUT",
                "must be more than zero",
            ));
        }
        outbox
            .validate()
            .map_err(|e| ConfigError::new("OUTBOX_MAX_ATTEMPTS", e.to_string()))?;
        let http = self.http_limits()?;
        let metrics_listen = match non_empty(&self.metrics_listen) {
            Some(addr) => Some(addr.parse::<SocketAddr>().map_err(|_| {
                ConfigError::new(
                    "METRICS_LISTEN",
                    format!("`{addr}` is not an address like 127.0.0.1:9100"),
                )
            })?),
            None => None,
        };
        if metrics_listen.is_some_and(|m| m == listen) {
            return Err(ConfigError::new(
                "METRICS_LISTEN",
                "must differ from HOST:PORT (the API's address)",
            ));
        }
        if let Some(list) = &self.webhook_allow_hosts {
            outbox.webhook_allow = crate::outbox::WebhookAllowList::parse(list)
                .map_err(|e| ConfigError::new("WEBHOOK_ALLOW_HOSTS", e))?;
        }

        Ok(CheckedServerConfig {
            listen,
            sessions_path: self.sessions_path.clone(),
            data_dir: self.data_dir.clone(),
            database_url,
            redis_url,
            frontend_url,
            email_api_token: non_empty(&self.email_api_token).map(str::to_owned),
            admin_api_key: non_empty(&self.admin_api_key).map(str::to_owned),
            supabase_jwt_secret: non_empty(&self.supabase_jwt_secret).map(str::to_owned),
            backup,
            backup_encryption_key,
            time_zone,
            node_id,
            pacing,
            renewal_reminder_days: self.renewal_reminder_days,
            deleted_backup_retention: Duration::from_secs(
                u64::from(self.deleted_backup_retention_days) * 24 * 60 * 60,
            ),
            alert_email,
            outbox,
            http,
            metrics_token: non_empty(&self.metrics_token).map(str::to_owned),
            metrics_listen,
            keepalive,
            chromium,
        })
    }

    /// The `HTTP_*` settings: durations above zero, at least one connection.
    fn http_limits(&self) -> Result<HttpLimits, ConfigError> {
        let positive = |setting: &'static str, value: &str| {
            let d = humantime::parse_duration(value.trim()).map_err(|e| {
                ConfigError::new(
                    setting,
                    format!("`{value}` is not a duration like 10s or 1m: {e}"),
                )
            })?;
            if d.is_zero() {
                return Err(ConfigError::new(setting, "must be more than zero"));
            }
            Ok(d)
        };
        let limits = HttpLimits {
            header_timeout: positive("HTTP_HEADER_TIMEOUT", &self.http_header_timeout)?,
            body_timeout: positive("HTTP_BODY_TIMEOUT", &self.http_body_timeout)?,
            request_timeout: positive("HTTP_REQUEST_TIMEOUT", &self.http_request_timeout)?,
            max_connections: self.http_max_connections,
        };
        // tokio's semaphore holds at most `usize::MAX >> 3` permits.
        if limits.max_connections == 0 || limits.max_connections > 1 << 24 {
            return Err(ConfigError::new(
                "HTTP_MAX_CONNECTIONS",
                "must be 1–16777216",
            ));
        }
        Ok(limits)
    }

    fn build_s3(&self) -> Result<S3Config, ConfigError> {
        let bucket = self.s3_bucket.trim();
        if bucket.is_empty() {
            return Err(ConfigError::new(
                "S3_BUCKET",
                "must be set when BACKUP_SINK=s3",
            ));
        }
        let endpoint = match non_empty(&self.s3_endpoint) {
            Some(e) => {
                check_url("S3_ENDPOINT", e, &["http", "https"])?;
                Some(e.to_owned())
            }
            None => None,
        };
        let access_key_id = non_empty(&self.s3_access_key_id).ok_or_else(|| {
            ConfigError::new("S3_ACCESS_KEY_ID", "must be set when BACKUP_SINK=s3")
        })?;
        let secret_access_key = non_empty(&self.s3_secret_access_key).ok_or_else(|| {
            ConfigError::new("S3_SECRET_ACCESS_KEY", "must be set when BACKUP_SINK=s3")
        })?;
        let region = self.s3_region.trim();
        if region.is_empty() {
            return Err(ConfigError::new("S3_REGION", "must not be empty"));
        }
        Ok(S3Config {
            allow_http: endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
            endpoint,
            region: region.to_owned(),
            bucket: bucket.to_owned(),
            prefix: self.s3_prefix.trim().trim_matches('/').to_owned(),
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            session_token: None,
            path_style: self.s3_path_style,
        })
    }

    fn resolve_time_zone(&self) -> Result<Tz, ConfigError> {
        let (setting, value) = match (non_empty(&self.time_zone), non_empty(&self.tz)) {
            (Some(v), _) => ("TIME_ZONE", v),
            (None, Some(v)) => ("TZ", v.strip_prefix(':').unwrap_or(v)),
            (None, None) => return Ok(Tz::UTC),
        };
        value.parse::<Tz>().map_err(|_| {
            ConfigError::new(
                setting,
                format!("`{value}` is not an IANA time zone name (e.g. `Europe/Madrid`)"),
            )
        })
    }

    fn resolve_keepalive_target(&self) -> Result<KeepaliveTarget, ConfigError> {
        let value = self.keepalive_target.trim();
        match value.to_ascii_lowercase().as_str() {
            "" | "off" | "none" => Ok(KeepaliveTarget::Off),
            "own" | "self" => Ok(KeepaliveTarget::OwnNumber),
            _ => PhoneNumber::new(value)
                .map(KeepaliveTarget::Number)
                .map_err(|e| {
                    ConfigError::new(
                        "KEEPALIVE_TARGET",
                        format!("must be a phone number, `own` or `off` ({e})"),
                    )
                }),
        }
    }
}

/// The keepalive texts from `KEEPALIVE_TEXTS`: an existing file (one text per line, blank
/// lines ignored) or a `|`-separated list (blank items ignored).
pub fn read_keepalive_texts(value: &str) -> Result<Vec<String>, ConfigError> {
    let path = Path::new(value.trim());
    let looks_like_path = !value.contains('|') && value.contains('/');
    if looks_like_path && !path.is_file() {
        return Err(ConfigError::new(
            "KEEPALIVE_TEXTS",
            format!("{} is not a readable file", path.display()),
        ));
    }
    let (content, separator) = if !value.contains('|') && path.is_file() {
        let content = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                "KEEPALIVE_TEXTS",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        (content, '\n')
    } else {
        (value.to_owned(), '|')
    };
    Ok(content
        .split(separator)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The flags (`--name=value`) that the configuration file adds: one per key whose setting
/// was given neither on the command line nor in the environment.
fn file_arguments(
    command: &clap::Command,
    matches: &clap::ArgMatches,
    path: &Path,
) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("CONFIG_FILE: cannot read {}: {e}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("CONFIG_FILE: {} is not valid TOML: {e}", path.display()))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let id = key.to_ascii_lowercase().replace('-', "_");
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_id().as_str() == id && id != "config")
        else {
            return Err(format!(
                "CONFIG_FILE: unknown setting `{key}` in {}",
                path.display()
            ));
        };
        if matches!(
            matches.value_source(&id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let long = arg.get_long().unwrap_or(&id);
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Array(items) if id == "keepalive_texts" || id == "chromium_args" => {
                let items = items
                    .into_iter()
                    .map(|v| match v {
                        toml::Value::String(s) => Ok(s),
                        _ => Err(format!("CONFIG_FILE: `{key}` must hold strings")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if id == "keepalive_texts" {
                    items.join("|")
                } else {
                    items
                        .iter()
                        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            }
            _ => {
                return Err(format!(
                    "CONFIG_FILE: `{key}` must be a string, number or boolean"
                ));
            }
        };
        out.push(format!("--{long}={value}"));
    }
    Ok(out)
}
