//! `ServerConfig`: defaults, validation errors naming the setting, secrets kept out of
//! `Debug`, the configuration file under flags, and `--help`.
//!
//! Settings are passed as flags (the environment is shared between test threads and is
//! never changed here). The command's environment bindings are removed before parsing, so
//! variables the test runner itself sets (CI exports `DATABASE_URL`, `REDIS_URL`,
//! `CHROMIUM_PATH`) cannot change what a test sees.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use whatsapp_keepalive::KeepaliveTarget;
use whatsapp_server::config::{
    BackupTarget, ServerConfig, node_id_from_hostname, resolve_chromium_path, split_chromium_args,
};

fn parse(args: &[&str]) -> ServerConfig {
    let mut all = vec!["whatsapp-server"];
    all.extend_from_slice(args);
    let command = ServerConfig::command().mut_args(|a| a.env(None::<&str>));
    let matches = command.try_get_matches_from(all).expect("parses");
    let mut config = ServerConfig::from_arg_matches(&matches).expect("parses");
    config.apply_file(&matches).expect("the file applies");
    config
}

/// Parses `args` (flags only) without panicking: clap's error when a value parser refuses one.
fn try_parse(args: &[&str]) -> Result<ServerConfig, clap::Error> {
    let mut all = vec!["whatsapp-server"];
    all.extend_from_slice(args);
    let command = ServerConfig::command().mut_args(|a| a.env(None::<&str>));
    let matches = command.try_get_matches_from(all)?;
    let mut config = ServerConfig::from_arg_matches(&matches)?;
    config.apply_file(&matches)?;
    Ok(config)
}

/// Asserts that `args` are refused, by the value parser or by validation, with an error
/// naming `setting` (by its environment variable).
fn assert_refused_naming(args: &[&str], setting: &str) {
    match try_parse(args) {
        Err(err) => {
            let text = err.to_string();
            assert!(
                text.contains(&format!("<{setting}>")),
                "the parser's error names {setting}: {text}"
            );
        }
        Ok(config) => {
            let err = config.validate().expect_err("must be invalid");
            assert!(
                err.to_string().contains(err.setting),
                "message names the setting: {err}"
            );
            assert_eq!(err.setting, setting, "for {args:?}: {err}");
        }
    }
}

const TEXTS_15: &str = "t1|t2|t3|t4|t5|t6|t7|t8|t9|t10|t11|t12|t13|t14|t15";
const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

#[test]
fn defaults_are_the_seeds() {
    let c = parse(&[]);
    assert_eq!(c.http.port, 4000);
    assert_eq!(c.backup.backup_cron, "0 2 * * *");
    assert_eq!(c.backup.backup_retention_days, 30);
    assert_eq!(c.backup.s3_bucket, "whatsapp-backups");
    assert_eq!(
        c.browser.whatsapp_web_url.as_str(),
        "https://web.whatsapp.com/"
    );
    assert_eq!(
        c.storage.sessions_path,
        PathBuf::from("./data/whatsapp-sessions")
    );
    let checked = parse(&["--time-zone", "UTC"])
        .validate()
        .expect("defaults valid");
    assert_eq!(checked.http.listen.port(), 4000);
    let k = checked.keepalive_config();
    assert_eq!(k.backup.cron, "0 2 * * *");
    assert_eq!(k.backup.retention, Duration::from_secs(30 * 24 * 3600));
    assert!(checked.s3_config().is_none());
    assert_eq!(
        checked.history_retention,
        Duration::from_secs(30 * 24 * 3600),
        "the message history is kept 30 days"
    );
}

#[test]
fn default_database_is_sqlite_under_data_dir() {
    let checked = parse(&["--data-dir", "/srv/wa", "--time-zone", "UTC"])
        .validate()
        .unwrap();
    assert_eq!(
        checked.storage.database_url.expose(),
        "sqlite:///srv/wa/whatsapp.db"
    );
    assert!(
        matches!(checked.backups.target, BackupTarget::Local(ref p) if p == Path::new("/srv/wa/backups"))
    );
}

#[test]
fn every_invalid_setting_is_named() {
    let cases: &[(&[&str], &str)] = &[
        (&["--port", "0"], "PORT"),
        (&["--host", "not-an-ip"], "HOST"),
        (&["--frontend-url", "not a url"], "FRONTEND_URL"),
        (&["--frontend-url", "ftp://example.com"], "FRONTEND_URL"),
        (&["--database-url", "mysql://x/y"], "DATABASE_URL"),
        (&["--redis-url", "http://x"], "REDIS_URL"),
        (&["--whatsapp-web-url", "nope"], "WHATSAPP_WEB_URL"),
        (&["--time-zone", "Mars/Olympus"], "TIME_ZONE"),
        (&["--tz", "Mars/Olympus"], "TZ"),
        (&["--backup-cron", "every day"], "BACKUP_CRON"),
        (&["--backup-retention-days", "0"], "BACKUP_RETENTION_DAYS"),
        (&["--message-interval", "soon"], "MESSAGE_INTERVAL"),
        (&["--message-interval", "0s"], "MESSAGE_INTERVAL"),
        (&["--message-burst", "0"], "MESSAGE_BURST"),
        (&["--message-history-days", "0"], "MESSAGE_HISTORY_DAYS"),
        (&["--renewal-reminder-days", "0"], "RENEWAL_REMINDER_DAYS"),
        (&["--alert-email", "nobody"], "ALERT_EMAIL"),
        (&["--outbox-max-attempts", "0"], "OUTBOX_MAX_ATTEMPTS"),
        (&["--launch-concurrency", "0"], "LAUNCH_CONCURRENCY"),
        (&["--start-stagger", "soon"], "START_STAGGER"),
        (&["--outbox-retry-base", "later"], "OUTBOX_RETRY_BASE"),
        (
            &["--outbox-request-timeout", "0s"],
            "OUTBOX_REQUEST_TIMEOUT",
        ),
        (&["--keepalive-target", "12ab"], "KEEPALIVE_TARGET"),
        (
            &[
                "--keepalive-target",
                "34600000000",
                "--keepalive-texts",
                "a|b|c",
            ],
            "KEEPALIVE_TEXTS",
        ),
        (
            &["--backup-encryption-key", "short"],
            "BACKUP_ENCRYPTION_KEY",
        ),
        (
            &[
                "--backup-sink",
                "s3",
                "--s3-bucket",
                "",
                "--s3-access-key-id",
                "id",
                "--s3-secret-access-key",
                "x",
            ],
            "S3_BUCKET",
        ),
        (&["--backup-sink", "s3"], "S3_ACCESS_KEY_ID"),
        (&["--backup-sink", "ftp"], "BACKUP_SINK"),
        (&["--node-id", "Bad.Node"], "NODE_ID"),
        (
            &["--keepalive-texts", "/no/such/texts.txt"],
            "KEEPALIVE_TEXTS",
        ),
        (&["--chromium-args", "\"unterminated"], "CHROMIUM_ARGS"),
    ];
    for (args, setting) in cases {
        let mut all = args.to_vec();
        if !args.contains(&"--time-zone") && !args.contains(&"--tz") {
            all.extend(["--time-zone", "UTC"]);
        }
        assert_refused_naming(&all, setting);
    }
}

#[test]
fn a_bad_port_is_refused_by_the_parser_naming_it() {
    let err = ServerConfig::try_load_from(["whatsapp-server", "--port", "99999"]).unwrap_err();
    assert!(err.to_string().contains("PORT"), "{err}");
}

#[test]
fn valid_settings_build_the_pieces() {
    let checked = parse(&[
        "--time-zone",
        "Europe/Madrid",
        "--keepalive-target",
        "+34 600 000 000",
        "--keepalive-texts",
        TEXTS_15,
        "--backup-sink",
        "s3",
        "--s3-endpoint",
        "http://127.0.0.1:9000",
        "--s3-access-key-id",
        "minio",
        "--s3-secret-access-key",
        "minio-secret",
        "--s3-path-style",
        "true",
        "--s3-prefix",
        "/wa/prod/",
        "--backup-encryption-key",
        KEY_HEX,
        "--frontend-url",
        "https://app.example.com/path",
        "--chromium-args",
        "--host-resolver-rules=\"MAP web.whatsapp.com 127.0.0.1:4010\", --ignore-certificate-errors",
        "--node-id",
        "node-1",
    ])
    .validate()
    .expect("valid");
    let k = checked.keepalive_config();
    assert_eq!(k.backup.time_zone, chrono_tz::Europe::Madrid);
    assert!(
        matches!(k.keepalive.target, KeepaliveTarget::Number(ref n) if n.digits() == "34600000000")
    );
    assert_eq!(k.keepalive.texts.len(), 15);
    let s3 = checked.s3_config().expect("s3");
    assert_eq!(s3.bucket, "whatsapp-backups");
    assert_eq!(s3.prefix, "wa/prod");
    assert!(s3.path_style && s3.allow_http);
    let chromium = checked.chromium_config();
    assert_eq!(
        chromium.extra_args,
        vec![
            "--host-resolver-rules=MAP web.whatsapp.com 127.0.0.1:4010".to_owned(),
            "--ignore-certificate-errors".to_owned()
        ]
    );
    assert_eq!(
        checked.cors_origin().as_deref(),
        Some("https://app.example.com")
    );
    assert!(checked.backups.encryption_key.is_some());
    assert_eq!(checked.node_id.as_str(), "node-1");
}

#[test]
fn own_target_and_texts_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("texts.txt");
    let texts: Vec<String> = (1..=16).map(|i| format!("text {i}")).collect();
    std::fs::write(&file, texts.join("\n") + "\n\n").unwrap();
    let checked = parse(&[
        "--time-zone",
        "UTC",
        "--keepalive-target",
        "own",
        "--keepalive-texts",
        file.to_str().unwrap(),
    ])
    .validate()
    .unwrap();
    let k = checked.keepalive_config();
    assert_eq!(k.keepalive.target, KeepaliveTarget::OwnNumber);
    assert_eq!(k.keepalive.texts, texts);
}

#[test]
fn secrets_never_appear_in_debug() {
    let config = parse(&[
        "--time-zone",
        "UTC",
        "--admin-api-key",
        "admin-secret-1",
        "--supabase-jwt-secret",
        "jwt-secret-2",
        "--email-api-token",
        "mail-secret-3",
        "--backup-sink",
        "s3",
        "--s3-access-key-id",
        "id",
        "--s3-secret-access-key",
        "s3-secret-4",
        "--backup-encryption-key",
        KEY_HEX,
        "--database-url",
        "postgres://app:db-secret-5@127.0.0.1/app",
        "--redis-url",
        "redis://:redis-secret-6@127.0.0.1:6379",
        "--chromium-args",
        "--proxy-server=http://user:proxy-secret-7@127.0.0.1:3128",
    ]);
    let checked = config.validate().unwrap();
    for text in [format!("{config:?}"), format!("{checked:?}")] {
        for secret in [
            "admin-secret-1",
            "jwt-secret-2",
            "mail-secret-3",
            "s3-secret-4",
            KEY_HEX,
            "db-secret-5",
            "redis-secret-6",
            "proxy-secret-7",
        ] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        assert!(text.contains("***"));
    }
}

#[test]
fn file_values_apply_under_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.toml");
    std::fs::write(
        &file,
        r#"
port = 5000
s3-bucket = "from-file"
BACKUP_RETENTION_DAYS = 7
s3_path_style = true
keepalive_texts = ["a", "b"]
chromium_args = ["--proxy-server=socks5://127.0.0.1:1080", "--lang=es ES"]
"#,
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let c = parse(&["--config", path, "--port", "6000"]);
    assert_eq!(c.http.port, 6000, "the flag wins over the file");
    assert_eq!(c.backup.s3_bucket, "from-file");
    assert_eq!(c.backup.backup_retention_days, 7);
    assert!(c.backup.s3_path_style);
    assert_eq!(c.keepalive.keepalive_texts.as_deref(), Some("a|b"));
    assert_eq!(
        c.browser.chromium_args.unwrap().0,
        vec!["--proxy-server=socks5://127.0.0.1:1080", "--lang=es ES"]
    );
}

#[test]
fn unknown_file_keys_and_bad_toml_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.toml");
    std::fs::write(&file, "no_such_setting = 1\n").unwrap();
    let err = ServerConfig::try_load_from(["x", "--config", file.to_str().unwrap()]).unwrap_err();
    assert!(err.to_string().contains("no_such_setting"), "{err}");
    std::fs::write(&file, "port = \n").unwrap();
    let err = ServerConfig::try_load_from(["x", "--config", file.to_str().unwrap()]).unwrap_err();
    assert!(err.to_string().contains("CONFIG_FILE"), "{err}");
}

#[test]
fn chromium_path_falls_back_to_puppeteer() {
    let a = Path::new("/opt/chromium");
    let b = Path::new("/opt/puppeteer-chrome");
    assert_eq!(resolve_chromium_path(Some(a), Some(b)), a);
    assert_eq!(resolve_chromium_path(None, Some(b)), b);
    assert_eq!(
        resolve_chromium_path(None, None),
        PathBuf::from("/usr/bin/chromium")
    );
    let checked = parse(&[
        "--time-zone",
        "UTC",
        "--puppeteer-executable-path",
        "/opt/puppeteer-chrome",
    ])
    .validate()
    .unwrap();
    assert_eq!(checked.chromium_config().executable, b);
}

#[test]
fn chromium_args_syntax() {
    assert_eq!(
        split_chromium_args("--a --b=1,--c, --d --disable-features=X,Y 'e f'").unwrap(),
        vec![
            "--a",
            "--b=1",
            "--c",
            "--d",
            "--disable-features=X,Y",
            "e f"
        ]
    );
    assert_eq!(
        split_chromium_args(r#"--x="a \"q\" b""#).unwrap(),
        vec![r#"--x=a "q" b"#]
    );
    assert!(split_chromium_args("").unwrap().is_empty());
}

#[test]
fn node_id_from_hostnames() {
    assert_eq!(
        node_id_from_hostname("Web-01.Example.COM\n").as_str(),
        "web-01-example-com"
    );
    assert_eq!(node_id_from_hostname("").as_str(), "node");
    assert_eq!(node_id_from_hostname(&"a".repeat(100)).as_str().len(), 64);
}

#[test]
fn help_lists_every_env_var() {
    let help = ServerConfig::command().render_long_help().to_string();
    for var in [
        "CONFIG_FILE",
        "PORT",
        "HOST",
        "SESSIONS_PATH",
        "DATA_DIR",
        "DATABASE_URL",
        "REDIS_URL",
        "FRONTEND_URL",
        "EMAIL_API_TOKEN",
        "CHROMIUM_PATH",
        "PUPPETEER_EXECUTABLE_PATH",
        "CHROMIUM_ARGS",
        "WHATSAPP_WEB_URL",
        "ADMIN_API_KEY",
        "SUPABASE_JWT_SECRET",
        "BACKUP_SINK",
        "BACKUP_DIR",
        "S3_ENDPOINT",
        "S3_REGION",
        "S3_BUCKET",
        "S3_PREFIX",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
        "S3_PATH_STYLE",
        "BACKUP_ENCRYPTION_KEY",
        "BACKUP_CRON",
        "BACKUP_RETENTION_DAYS",
        "TIME_ZONE",
        "TZ",
        "KEEPALIVE_TARGET",
        "KEEPALIVE_TEXTS",
        "NODE_ID",
        "MESSAGE_HISTORY_DAYS",
    ] {
        assert!(
            help.contains(&format!("env: {var}=")) || help.contains(&format!("env: {var}]")),
            "--help lacks {var}"
        );
    }
    assert!(help.contains("Precedence"));
}

#[derive(clap::Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Runs the server.
    Serve(ServerConfig),
}

#[test]
fn file_applies_to_a_config_flattened_into_a_subcommand() {
    use clap::FromArgMatches;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.toml");
    std::fs::write(&file, "port = 5000\nnode_id = \"from-file\"\n").unwrap();
    let matches = Cli::command()
        .try_get_matches_from([
            "whatsapp-server",
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--node-id",
            "from-flag",
        ])
        .unwrap();
    let Cmd::Serve(mut config) = Cli::from_arg_matches(&matches).unwrap().command;
    let (_, sub) = matches.subcommand().unwrap();
    config.apply_file(sub).unwrap();
    assert_eq!(config.http.port, 5000);
    assert_eq!(
        config.node.node_id.as_ref().map(|n| n.as_str()),
        Some("from-flag")
    );
}

#[test]
fn webhook_allow_hosts_parse_from_flags_and_file_and_bad_entries_are_named() {
    use std::net::IpAddr;
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let default = parse(&["--time-zone", "UTC"]).validate().unwrap();
    assert!(
        default.delivery.outbox.webhook_allow.is_empty(),
        "internal targets are refused by default"
    );
    let c = parse(&[
        "--time-zone",
        "UTC",
        "--webhook-allow-hosts",
        "127.0.0.0/8, localhost,[::1]",
    ])
    .validate()
    .unwrap();
    let allow = &c.delivery.outbox.webhook_allow;
    assert!(allow.allows_ip(ip("127.0.0.5")) && allow.allows_ip(ip("::1")));
    assert!(allow.allows_host("localhost") && !allow.allows_ip(ip("10.0.0.1")));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.toml");
    std::fs::write(&file, "webhook_allow_hosts = \"10.0.0.0/8\"\n").unwrap();
    let c = parse(&["--config", file.to_str().unwrap(), "--time-zone", "UTC"])
        .validate()
        .unwrap();
    assert!(c.delivery.outbox.webhook_allow.allows_ip(ip("10.1.2.3")));

    for bad in ["127.0.0.0/33", "10.0.0.0/x", "not a host", "1.2.3.4/8/8"] {
        assert_refused_naming(
            &["--time-zone", "UTC", "--webhook-allow-hosts", bad],
            "WEBHOOK_ALLOW_HOSTS",
        );
    }
    let help = ServerConfig::command().render_long_help().to_string();
    assert!(help.contains("env: WEBHOOK_ALLOW_HOSTS"), "--help lists it");
}

#[test]
fn the_parsers_errors_never_repeat_a_secret() {
    for (args, secret, setting) in [
        (
            &["--backup-encryption-key", "not-a-key-secret-1"][..],
            "secret-1",
            "BACKUP_ENCRYPTION_KEY",
        ),
        (
            &["--database-url", "mysql://app:db-secret-2@127.0.0.1/app"][..],
            "db-secret-2",
            "DATABASE_URL",
        ),
        (
            &["--redis-url", "http://:redis-secret-3@127.0.0.1:6379"][..],
            "redis-secret-3",
            "REDIS_URL",
        ),
        (
            &[
                "--chromium-args",
                "--proxy-server=http://u:proxy-secret-4@127.0.0.1:3128 \"unterminated",
            ][..],
            "proxy-secret-4",
            "CHROMIUM_ARGS",
        ),
    ] {
        let err = try_parse(args)
            .expect_err("refused by the parser")
            .to_string();
        assert!(!err.contains(secret), "{secret} leaked in {err}");
        assert!(
            err.contains(&format!("<{setting}>")),
            "names {setting}: {err}"
        );
    }
}

#[test]
fn backups_keep_the_origin_of_the_configured_whatsapp_web_url() {
    let default = parse(&["--time-zone", "UTC"]).validate().unwrap();
    assert_eq!(default.backups.origin, "https://web.whatsapp.com");
    let pointed = parse(&[
        "--time-zone",
        "UTC",
        "--whatsapp-web-url",
        "https://127.0.0.1:4010/",
    ])
    .validate()
    .unwrap();
    assert_eq!(pointed.backups.origin, "https://127.0.0.1:4010");
    assert_eq!(pointed.chromium_config().url, "https://127.0.0.1:4010/");
}

#[test]
fn a_long_outbox_request_timeout_lengthens_the_claim_instead_of_failing() {
    let c = parse(&["--time-zone", "UTC", "--outbox-request-timeout", "10m"])
        .validate()
        .expect("a ten-minute delivery time-out is valid");
    assert_eq!(c.delivery.outbox.request_timeout, Duration::from_secs(600));
    assert!(c.delivery.outbox.claim_hold > Duration::from_secs(601));
}

#[test]
fn every_subsystem_has_its_help_heading() {
    let help = ServerConfig::command().render_long_help().to_string();
    for heading in [
        "HTTP:",
        "Storage:",
        "Authentication:",
        "Browser:",
        "Backups:",
        "Keepalive:",
        "Messages:",
        "E-mails and webhooks:",
        "Node:",
    ] {
        assert!(help.contains(heading), "--help lacks the heading {heading}");
    }
}

/// The binary, with variables set but empty: they count as unset, so the run gets past
/// parsing to validation (which this configuration fails on purpose, before anything
/// starts), instead of refusing `FRONTEND_URL=""` as a URL.
#[test]
fn empty_environment_variables_count_as_unset() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_whatsapp-server"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for var in [
        "FRONTEND_URL",
        "DATABASE_URL",
        "REDIS_URL",
        "BACKUP_ENCRYPTION_KEY",
        "ALERT_EMAIL",
        "NODE_ID",
        "TIME_ZONE",
        "TZ",
        "METRICS_TOKEN",
        "PORT",
    ] {
        command.env(var, "");
    }
    let out = command
        .args(["--host", "127.0.0.1", "--port", "4999"])
        .args(["--metrics-listen", "127.0.0.1:4999"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("the server binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("invalid METRICS_LISTEN"),
        "parsing passed, validation refused: {stderr}"
    );
}
