//! The browser: which Chromium, its extra arguments, and the WhatsApp Web page it opens.

use std::fmt;
use std::path::{Path, PathBuf};

use whatsapp_chromium::ChromiumConfig;

use super::ConfigError;
use super::parse::{self, Quiet};

/// The Chromium executable used when neither `CHROMIUM_PATH` nor `PUPPETEER_EXECUTABLE_PATH`
/// is set.
pub const DEFAULT_CHROMIUM_PATH: &str = "/usr/bin/chromium";

/// The browser settings, as given.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Browser")]
pub struct BrowserSettings {
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
    #[arg(
        long,
        env = "CHROMIUM_ARGS",
        allow_hyphen_values = true,
        value_parser = Quiet(chromium_args)
    )]
    pub chromium_args: Option<ChromiumArgs>,

    /// The WhatsApp Web page to open. Its origin is also the one whose storage backups keep.
    #[arg(
        long,
        env = "WHATSAPP_WEB_URL",
        default_value = "https://web.whatsapp.com/",
        value_parser = parse::http_url
    )]
    pub whatsapp_web_url: url::Url,
}

/// `CHROMIUM_ARGS`, split into arguments. `Debug` hides an argument that holds `@` (a proxy
/// switch may carry `user:password@`).
#[derive(Clone, PartialEq, Eq)]
pub struct ChromiumArgs(pub Vec<String>);

impl fmt::Debug for ChromiumArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.0
                    .iter()
                    .map(|a| if a.contains('@') { "***" } else { a.as_str() }),
            )
            .finish()
    }
}

fn chromium_args(value: &str) -> Result<ChromiumArgs, String> {
    split_chromium_args(value)
        .map(ChromiumArgs)
        .map_err(|e| e.message)
}

impl BrowserSettings {
    /// The Chromium configuration: executable, extra arguments and WhatsApp Web URL.
    pub fn check(&self) -> Result<ChromiumConfig, ConfigError> {
        let executable = resolve_chromium_path(
            self.chromium_path.as_deref(),
            self.puppeteer_executable_path.as_deref(),
        );
        if executable.as_os_str().is_empty() {
            return Err(ConfigError::new("CHROMIUM_PATH", "must not be empty"));
        }
        Ok(ChromiumConfig {
            executable,
            url: self.whatsapp_web_url.to_string(),
            extra_args: self
                .chromium_args
                .as_ref()
                .map(|a| a.0.clone())
                .unwrap_or_default(),
            ..ChromiumConfig::default()
        })
    }

    /// The origin of `WHATSAPP_WEB_URL` (`https://web.whatsapp.com`): the profile storage
    /// that backups must hold is this origin's.
    pub fn origin(&self) -> String {
        self.whatsapp_web_url.origin().ascii_serialization()
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

/// Splits `CHROMIUM_ARGS` into arguments (syntax on [`BrowserSettings::chromium_args`]):
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
