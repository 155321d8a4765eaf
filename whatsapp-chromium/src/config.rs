//! [`ChromiumConfig`]: how the driver launches Chromium and how long it waits.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The WhatsApp Web address the driver opens by default.
pub const WHATSAPP_WEB_URL: &str = "https://web.whatsapp.com/";

/// The Chromium executable used when none is configured.
pub const DEFAULT_EXECUTABLE: &str = "/usr/bin/chromium";

/// How [`crate::ChromiumDriver`] launches and talks to Chromium.
///
/// Every field has a sensible default ([`ChromiumConfig::default`]); tests against the
/// emulator typically add `host-resolver-rules=MAP web.whatsapp.com 127.0.0.1:PORT` and
/// `ignore-certificate-errors` to [`ChromiumConfig::extra_args`].
#[derive(Clone)]
pub struct ChromiumConfig {
    /// The Chromium executable (default `/usr/bin/chromium`).
    pub executable: PathBuf,
    /// Run headless (`--headless=new`). Default `true`.
    pub headless: bool,
    /// Pass `--no-sandbox` (needed when running as root, e.g. in most containers). Default:
    /// `true` when this process runs as root.
    pub no_sandbox: bool,
    /// Add the switches of [`crate::flags::BASE_FLAGS`] (default `true`). `false` runs
    /// Chromium with its own defaults plus only what is needed to run at all (headless,
    /// sandbox, profile, DevTools, user agent, [`ChromiumConfig::extra_args`]); the `launch`
    /// benchmark compares the two.
    pub tuned_flags: bool,
    /// More Chromium switches, appended after ours. Written with or without the leading `--`
    /// (`ignore-certificate-errors` and `--ignore-certificate-errors` are the same switch).
    pub extra_args: Vec<String>,
    /// The page to open (default [`WHATSAPP_WEB_URL`]).
    pub url: String,
    /// The user agent. `None` (the default): a desktop Chrome on macOS with the major version
    /// of the installed Chromium, as the reference client does — a headless user agent is
    /// refused by WhatsApp Web.
    pub user_agent: Option<String>,
    /// How long Chromium may take to open its DevTools endpoint. Default 20 s.
    pub start_timeout: Duration,
    /// How long the page may take until WhatsApp Web is loaded and its modules answer
    /// (`window.Debug.VERSION`, `WAWebSocketModel`). Default 30 s.
    pub ready_timeout: Duration,
    /// The timeout of every call into the page (state, send, number check…). Default 30 s.
    pub call_timeout: Duration,
    /// How long a graceful close may take (the browser flushes the profile) before the
    /// process group is killed. Default 10 s.
    pub close_grace: Duration,
    /// Where per-session temporary directories (`TMPDIR`) are created. Default: the system
    /// temporary directory joined with `whatsapp-chromium`.
    pub temp_root: PathBuf,
    /// A saved copy of WhatsApp Web's HTML, served for exactly [`ChromiumConfig::url`]
    /// through request interception (`Fetch.enable` + `Fetch.fulfillRequest`) to pin a
    /// version; every other request still goes to the network. Default `None` (the live
    /// page). A document served this way has no IP address space of its own: against a test
    /// server on 127.0.0.1, add `disable-features=LocalNetworkAccessChecks` or Chromium
    /// refuses the page's WebSocket.
    pub pinned_html: Option<Arc<str>>,
}

impl Default for ChromiumConfig {
    fn default() -> Self {
        ChromiumConfig {
            executable: PathBuf::from(DEFAULT_EXECUTABLE),
            headless: true,
            no_sandbox: rustix::process::getuid().is_root(),
            tuned_flags: true,
            extra_args: Vec::new(),
            url: WHATSAPP_WEB_URL.to_owned(),
            user_agent: None,
            start_timeout: Duration::from_secs(20),
            ready_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(30),
            close_grace: Duration::from_secs(10),
            temp_root: std::env::temp_dir().join("whatsapp-chromium"),
            pinned_html: None,
        }
    }
}

impl ChromiumConfig {
    /// Adds one Chromium switch (with or without the leading `--`).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }
}

/// Masks `user:password@` in anything that looks like a URL with credentials (a proxy
/// switch, say), so that `Debug` never prints them.
pub(crate) fn redact(arg: &str) -> String {
    let Some(scheme_end) = arg.find("://") else {
        return arg.to_owned();
    };
    let rest = &arg[scheme_end + 3..];
    let authority_end = rest.find(['/', ' ', ',', ';']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &arg[..scheme_end + 3], &rest[at + 1..]),
        None => arg.to_owned(),
    }
}

impl fmt::Debug for ChromiumConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let args: Vec<String> = self.extra_args.iter().map(|a| redact(a)).collect();
        f.debug_struct("ChromiumConfig")
            .field("executable", &self.executable)
            .field("headless", &self.headless)
            .field("no_sandbox", &self.no_sandbox)
            .field("tuned_flags", &self.tuned_flags)
            .field("extra_args", &args)
            .field("url", &redact(&self.url))
            .field("user_agent", &self.user_agent)
            .field("start_timeout", &self.start_timeout)
            .field("ready_timeout", &self.ready_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("close_grace", &self.close_grace)
            .field("temp_root", &self.temp_root)
            .field(
                "pinned_html",
                &self
                    .pinned_html
                    .as_ref()
                    .map(|h| format!("<{} bytes>", h.len())),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_credentials_and_page_copies() {
        let cfg = ChromiumConfig {
            pinned_html: Some(Arc::from("<html>secret build</html>")),
            ..ChromiumConfig::default()
        }
        .arg("proxy-server=http://user:hunter2@proxy.example.com:3128");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("http://***@proxy.example.com:3128"), "{dbg}");
        assert!(!dbg.contains("secret build"), "{dbg}");
        assert!(dbg.contains("<25 bytes>"), "{dbg}");
    }

    #[test]
    fn redact_leaves_plain_arguments_alone() {
        assert_eq!(
            redact("host-resolver-rules=MAP web.whatsapp.com 127.0.0.1:8443"),
            "host-resolver-rules=MAP web.whatsapp.com 127.0.0.1:8443"
        );
        assert_eq!(
            redact("https://web.whatsapp.com/"),
            "https://web.whatsapp.com/"
        );
        assert_eq!(
            redact("https://a:b@x.example/p@q"),
            "https://***@x.example/p@q"
        );
    }

    #[test]
    fn defaults_match_the_spec() {
        let cfg = ChromiumConfig::default();
        assert_eq!(cfg.executable, PathBuf::from("/usr/bin/chromium"));
        assert_eq!(cfg.url, "https://web.whatsapp.com/");
        assert_eq!(cfg.ready_timeout, Duration::from_secs(30));
        assert!(cfg.headless);
    }
}
