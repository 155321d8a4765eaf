//! The in-process server of the black-box tests: a configuration from flags alone, and
//! [`App::start`] on a loopback listener.
//!
//! Include it from a test file with `#[path = "common/inproc.rs"] mod inproc;`. Only flags
//! go in (never `ServerConfig`'s fields), so a test says what it runs on the way an operator
//! would.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use tokio::net::TcpListener;
use whatsapp_core::{BrowserDriver, Clock};
use whatsapp_server::app::{App, AppParts, RunningApp};
use whatsapp_server::config::{CheckedServerConfig, ServerConfig};

/// The checked configuration `args` (flags, without the program name) give, as the binary
/// builds it (a `--config` file included). The command's environment bindings are removed:
/// variables the test runner exports (`DATABASE_URL`, `REDIS_URL`, `ADMIN_API_KEY`, …) must
/// not change what a test runs on. Panics if the flags do not parse or do not validate.
pub(crate) fn checked_config(args: &[&str]) -> CheckedServerConfig {
    let command = ServerConfig::command().mut_args(|a| a.env(None::<&str>));
    let matches = command
        .try_get_matches_from(std::iter::once("whatsapp-server").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("the flags {args:?} do not parse: {e}"));
    let mut config = ServerConfig::from_arg_matches(&matches)
        .unwrap_or_else(|e| panic!("the flags {args:?} do not parse: {e}"));
    config
        .apply_file(&matches)
        .unwrap_or_else(|e| panic!("the configuration file does not apply: {e}"));
    config
        .validate()
        .unwrap_or_else(|e| panic!("the flags {args:?} are not a valid configuration: {e}"))
}

/// Starts the app with `driver` and `clock` on a fresh `127.0.0.1:0` listener; returns it
/// and its base URL (`http://127.0.0.1:<port>`).
pub(crate) async fn start_app(
    config: CheckedServerConfig,
    driver: Arc<dyn BrowserDriver>,
    clock: Arc<dyn Clock>,
) -> (RunningApp, String) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the server on loopback");
    let app = App::start(config, AppParts { driver, clock }, Some(listener))
        .await
        .expect("the server starts");
    let base = format!("http://{}", app.addr());
    (app, base)
}

/// An HTTP client of the test server. Its pooled connections are dropped after 5 s, below
/// the server's idle time-out (`HTTP_HEADER_TIMEOUT`, 10 s): a connection the server is
/// closing must not be reused.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client")
}

/// A temporary home for one in-process server: its data directory, its profiles and a
/// SQLite database, all inside one temporary directory (deleted on drop).
pub(crate) struct Home {
    /// The temporary directory.
    pub(crate) dir: tempfile::TempDir,
    /// `--data-dir`.
    pub(crate) data: std::path::PathBuf,
    /// `--sessions-path`.
    pub(crate) sessions: std::path::PathBuf,
    /// `--database-url`.
    pub(crate) database_url: String,
}

impl Home {
    /// A fresh home.
    pub(crate) fn new() -> Home {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = dir.path().join("data");
        let sessions = dir.path().join("sessions");
        let database_url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        Home {
            dir,
            data,
            sessions,
            database_url,
        }
    }

    /// The checked configuration of a server in this home, with `admin_key`, keepalive
    /// messages off, schedules in UTC, listening on loopback, and the `extra` flags.
    pub(crate) fn config(&self, admin_key: &str, extra: &[&str]) -> CheckedServerConfig {
        let mut args = vec![
            "--data-dir",
            self.data.to_str().expect("a UTF-8 path"),
            "--sessions-path",
            self.sessions.to_str().expect("a UTF-8 path"),
            "--database-url",
            &self.database_url,
            "--admin-api-key",
            admin_key,
            "--keepalive-target",
            "off",
            "--time-zone",
            "UTC",
            "--host",
            "127.0.0.1",
        ];
        args.extend_from_slice(extra);
        checked_config(&args)
    }
}
