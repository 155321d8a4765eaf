//! Where state lives: the profiles' and data directories, the database and Redis.

use std::path::PathBuf;

use super::parse::{self, Quiet};
use super::secret::SecretUrl;

/// The storage settings, as given.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Storage")]
pub struct StorageSettings {
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
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = Quiet(parse::database_url))]
    pub database_url: Option<SecretUrl>,

    /// Redis (`redis://…`) for the message queue and rate limiter; without it the database
    /// queue is used.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_parser = Quiet(parse::redis_url))]
    pub redis_url: Option<SecretUrl>,
}

/// The storage settings, checked.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The sessions' profile directory.
    pub sessions_path: PathBuf,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The database URL (`postgres://…` or `sqlite://…`).
    pub database_url: SecretUrl,
    /// The Redis URL, if any.
    pub redis_url: Option<SecretUrl>,
}

impl StorageSettings {
    /// Fills in the default database (SQLite under the data directory).
    pub fn check(&self) -> StorageConfig {
        StorageConfig {
            sessions_path: self.sessions_path.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone().unwrap_or_else(|| {
                SecretUrl::new(format!(
                    "sqlite://{}",
                    self.data_dir.join("whatsapp.db").display()
                ))
            }),
            redis_url: self.redis_url.clone(),
        }
    }
}
