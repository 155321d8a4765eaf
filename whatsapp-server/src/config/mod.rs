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
//! Only [`ServerConfig::try_load_from`] and [`ServerConfig::apply_file`] read the file; a plain `try_parse_from` ignores it.
//!
//! An environment variable that is set but empty counts as unset (platforms such as Railway
//! define variables with empty values).
//!
//! # By subsystem
//!
//! Each subsystem owns its settings, as a `clap::Args` group flattened into
//! [`ServerConfig`], and checks them into its part of [`CheckedServerConfig`]:
//!
//! | module | settings (as given) | checked |
//! |---|---|---|
//! | [`http`] | `PORT`, `HOST`, `HTTP_*`, `METRICS_*` | [`HttpConfig`] |
//! | [`storage`] | `SESSIONS_PATH`, `DATA_DIR`, `DATABASE_URL`, `REDIS_URL` | [`StorageConfig`] |
//! | [`auth`] | `ADMIN_API_KEY`, `SUPABASE_JWT_SECRET` | [`AuthConfig`] |
//! | [`browser`] | `CHROMIUM_*`, `PUPPETEER_EXECUTABLE_PATH`, `WHATSAPP_WEB_URL` | [`ChromiumConfig`] |
//! | [`backup`] | `BACKUP_*`, `S3_*`, `DELETED_BACKUP_RETENTION_DAYS` | [`BackupsConfig`] |
//! | [`keepalive`] | `KEEPALIVE_*`, `TIME_ZONE`/`TZ`, `LAUNCH_CONCURRENCY`, `START_STAGGER` | [`KeepaliveConfig`] |
//! | [`messaging`] | `MESSAGE_INTERVAL`, `MESSAGE_BURST`, `MESSAGE_HISTORY_DAYS` | [`Pacing`], the history's retention |
//! | [`delivery`] | `FRONTEND_URL`, `EMAIL_API_TOKEN`, `ALERT_EMAIL`, `RENEWAL_REMINDER_DAYS`, `OUTBOX_*`, `WEBHOOK_ALLOW_HOSTS` | [`DeliveryConfig`] |
//! | [`node`] | `NODE_ID` | [`NodeId`] |
//!
//! # Validation
//!
//! Every value is parsed by its type's value parser ([`parse`]) when the command line is
//! read, so a malformed value is refused by clap with an error naming the flag and the
//! variable (`invalid value 'soon' for '--message-interval <MESSAGE_INTERVAL>'`).
//! [`ServerConfig::validate`] then checks what spans several values (the S3 settings when
//! `BACKUP_SINK=s3`, enough keepalive texts for a target) and returns a
//! [`CheckedServerConfig`], or a [`ConfigError`] naming the setting by its environment
//! variable.
//!
//! # Secrets
//!
//! `ADMIN_API_KEY`, `SUPABASE_JWT_SECRET`, `EMAIL_API_TOKEN`, `S3_SECRET_ACCESS_KEY`,
//! `BACKUP_ENCRYPTION_KEY` and `METRICS_TOKEN` are [`Secret`]s, which print as `***`; the
//! passwords inside `DATABASE_URL` and `REDIS_URL` ([`SecretUrl`]) are masked, and a
//! `CHROMIUM_ARGS` argument holding `@` is hidden. Their parsers' errors never repeat the
//! value. So every configuration type derives `Debug`.

pub mod auth;
pub mod backup;
pub mod browser;
pub mod delivery;
mod file;
pub mod http;
pub mod keepalive;
pub mod messaging;
pub mod node;
pub mod parse;
mod secret;
pub mod storage;

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use chrono_tz::Tz;
use clap::{CommandFactory, FromArgMatches, Parser};
use whatsapp_chromium::ChromiumConfig;
use whatsapp_core::NodeId;
use whatsapp_keepalive::KeepaliveConfig;
use whatsapp_storage::backup::S3Config;

use crate::messaging::Pacing;

pub use auth::{AuthConfig, AuthSettings};
pub use backup::{BackupSettings, BackupSink, BackupTarget, BackupsConfig};
pub use browser::{
    BrowserSettings, ChromiumArgs, DEFAULT_CHROMIUM_PATH, resolve_chromium_path,
    split_chromium_args,
};
pub use delivery::{DeliveryConfig, DeliverySettings};
pub use http::{HttpConfig, HttpSettings};
pub use keepalive::{KeepaliveSettings, read_keepalive_texts};
pub use messaging::MessagingSettings;
pub use node::{NodeSettings, node_id_from_hostname};
pub use secret::{Secret, SecretUrl};
pub use storage::{StorageConfig, StorageSettings};

/// Every setting of the server, as given (see the [module docs](self) for precedence),
/// grouped by subsystem.
///
/// Parse with [`ServerConfig::try_load_from`] (flags, environment and file) and check with
/// [`ServerConfig::validate`].
#[derive(Debug, Clone, Parser)]
#[command(
    name = "whatsapp-server",
    about = "Keeps WhatsApp Web sessions connected around the clock.",
    after_long_help = "Precedence: command-line flag > environment variable > --config file > default. An empty environment variable counts as unset."
)]
pub struct ServerConfig {
    /// A TOML configuration file; its values apply where neither a flag nor an environment
    /// variable is given. Keys are the flag names (`port`, `database_url`, …).
    #[arg(long, env = "CONFIG_FILE", value_name = "CONFIG_FILE")]
    pub config: Option<PathBuf>,

    /// The HTTP listener.
    #[command(flatten)]
    pub http: HttpSettings,

    /// Directories, the database and Redis.
    #[command(flatten)]
    pub storage: StorageSettings,

    /// The administrator's key and the Supabase JWT secret.
    #[command(flatten)]
    pub auth: AuthSettings,

    /// Chromium and the WhatsApp Web page.
    #[command(flatten)]
    pub browser: BrowserSettings,

    /// Backups.
    #[command(flatten)]
    pub backup: BackupSettings,

    /// The keepalive engine.
    #[command(flatten)]
    pub keepalive: KeepaliveSettings,

    /// Outgoing messages' pacing.
    #[command(flatten)]
    pub messaging: MessagingSettings,

    /// E-mails, alerts and webhooks.
    #[command(flatten)]
    pub delivery: DeliverySettings,

    /// This node.
    #[command(flatten)]
    pub node: NodeSettings,
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
    pub(crate) fn new(setting: &'static str, message: impl Into<String>) -> Self {
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

/// A [`ServerConfig`] whose settings all passed [`ServerConfig::validate`], by subsystem.
#[derive(Debug, Clone)]
pub struct CheckedServerConfig {
    /// The HTTP listener.
    pub http: HttpConfig,
    /// Directories, the database and Redis.
    pub storage: StorageConfig,
    /// Keys and secrets of the callers.
    pub auth: AuthConfig,
    /// Backups.
    pub backups: BackupsConfig,
    /// E-mails, alerts and webhooks.
    pub delivery: DeliveryConfig,
    /// Per-session message pacing.
    pub pacing: Pacing,
    /// How long the message history is kept (`MESSAGE_HISTORY_DAYS`).
    pub history_retention: std::time::Duration,
    /// The keepalive engine (with the backups' schedule and retention).
    pub keepalive: KeepaliveConfig,
    /// Chromium: executable, extra arguments and WhatsApp Web URL.
    pub chromium: ChromiumConfig,
    /// The schedules' time zone.
    pub time_zone: Tz,
    /// This node's id.
    pub node_id: NodeId,
}

impl CheckedServerConfig {
    /// The keepalive engine's configuration: the seed's defaults with the keepalive target
    /// and texts, the backup cron, time zone and retention from this configuration.
    pub fn keepalive_config(&self) -> KeepaliveConfig {
        self.keepalive.clone()
    }

    /// The S3 configuration when `BACKUP_SINK=s3`.
    pub fn s3_config(&self) -> Option<S3Config> {
        match &self.backups.target {
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
        self.delivery
            .frontend_url
            .as_ref()
            .map(|u| u.origin().ascii_serialization())
    }
}

/// The text of a setting that is given and not blank.
fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A secret that is given and not blank, trimmed.
fn present(v: &Option<Secret<String>>) -> Option<Secret<String>> {
    v.as_ref()
        .map(|s| s.expose().trim())
        .filter(|s| !s.is_empty())
        .map(|s| Secret::new(s.to_owned()))
}

/// `command` with the environment bindings of the variables that are set but empty
/// removed, so that they count as unset (their defaults apply).
pub fn ignore_empty_env(command: clap::Command) -> clap::Command {
    command.mut_args(|arg| {
        let empty = arg
            .get_env()
            .and_then(std::env::var_os)
            .is_some_and(|v| v.is_empty());
        if empty { arg.env(None) } else { arg }
    })
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
        let matches = ignore_empty_env(Self::command()).try_get_matches_from(args)?;
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
        let file_args = file::file_arguments(&command, matches, &path)
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

    /// Checks what spans several settings, subsystem by subsystem; the error names the
    /// first invalid setting by its environment variable.
    pub fn validate(&self) -> Result<CheckedServerConfig, ConfigError> {
        let http = self.http.check()?;
        let storage = self.storage.check();
        let auth = self.auth.check();
        let chromium = self.browser.check()?;
        let backups = self
            .backup
            .check(&storage.data_dir, self.browser.origin())?;
        let keepalive = self.keepalive.check(&backups)?;
        let pacing = self.messaging.check();
        let history_retention = self.messaging.history_retention();
        let delivery = self.delivery.check()?;
        Ok(CheckedServerConfig {
            http,
            storage,
            auth,
            backups,
            delivery,
            pacing,
            history_retention,
            keepalive,
            chromium,
            time_zone: self.keepalive.time_zone(),
            node_id: self.node.check(),
        })
    }
}
