//! The Chromium command line.

use std::path::Path;

use crate::config::ChromiumConfig;

/// Switches every session gets, besides the profile, DevTools port and user agent.
///
/// Why each one:
/// - `disable-blink-features=AutomationControlled`: no `navigator.webdriver`, as the spec says.
/// - `disable-gpu`, `disable-dev-shm-usage`: containers have neither a GPU nor a big `/dev/shm`.
/// - `no-first-run`, `no-default-browser-check`, `disable-background-networking`,
///   `disable-component-update`, `disable-sync`, `disable-domain-reliability`,
///   `metrics-recording-only`, `disable-breakpad`, `password-store=basic`,
///   `use-mock-keychain`: no calls home, no dialogs, no keyring; a machine without internet
///   otherwise fills the log with refused connections.
/// - `disable-background-timer-throttling`, `disable-backgrounding-occluded-windows`,
///   `disable-renderer-backgrounding`: the page is never visible; WhatsApp Web's timers
///   (keepalive pings) must not be throttled.
/// - `disable-extensions`, `disable-default-apps`, `mute-audio`, `disable-features=…`: less
///   memory per session (see the `launch` benchmark).
/// - `disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup`: Chromium preloads the
///   address bar's drop-down (`chrome://omnibox-popup.top-chrome/`) as WebUI pages in a
///   renderer of their own, even headless, where there is no address bar. Measured on one
///   browser loading one page: that renderer costs about 0.6 CPU-seconds at every launch and
///   ~50 MiB of PSS.
/// - `disable-features=SpareRendererForSitePerProcess`: no spare renderer kept warm for a
///   next navigation (WhatsApp Web navigates once; its reloads stay on the same site).
/// - `enable-features=NetworkServiceInProcess2`, `in-process-gpu`: the network service and
///   the (software) GPU thread run inside the browser process instead of a process each
///   (~30 MiB PSS together). A crash there ends the whole browser, which the keepalive
///   engine relaunches like any other crash.
///
/// Together, on one browser loading one page: 5 processes instead of 9, 0.43 instead of
/// 1.1 CPU-seconds until loaded, 192 instead of 283 MiB PSS.
pub const BASE_FLAGS: &[&str] = &[
    "--disable-blink-features=AutomationControlled",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--metrics-recording-only",
    "--disable-breakpad",
    "--password-store=basic",
    "--use-mock-keychain",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication,CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions,CalculateNativeWinOcclusion,WebUIOmniboxPopup,WebUIOmniboxAimPopup,SpareRendererForSitePerProcess",
    "--enable-features=NetworkServiceInProcess2",
    "--in-process-gpu",
    "--window-size=1280,800",
];

/// Adds the leading `--` to a switch written without it. chromiumoxide's own launcher does
/// this silently and ignores dashed switches; we accept both spellings instead.
pub(crate) fn normalise(arg: &str) -> String {
    if arg.starts_with('-') {
        arg.to_owned()
    } else {
        format!("--{arg}")
    }
}

/// The whole command line (without the executable) for a profile.
///
/// `minimal` leaves out [`BASE_FLAGS`]: only what is needed to run at all (headless, sandbox,
/// profile, DevTools). The benchmark uses it to measure Chromium's defaults.
pub fn command_line(
    config: &ChromiumConfig,
    profile_dir: &Path,
    user_agent: Option<&str>,
    minimal: bool,
) -> Vec<String> {
    let mut args = Vec::new();
    if config.headless {
        args.push("--headless=new".to_owned());
    }
    if config.no_sandbox {
        args.push("--no-sandbox".to_owned());
    }
    if !minimal {
        args.extend(BASE_FLAGS.iter().map(|s| (*s).to_owned()));
    }
    args.push(whatsapp_core::profile::user_data_dir_switch(profile_dir));
    args.push("--remote-debugging-port=0".to_owned());
    if let Some(ua) = user_agent {
        args.push(format!("--user-agent={ua}"));
    }
    args.extend(config.extra_args.iter().map(|a| normalise(a)));
    let mut args = merge_feature_lists(args);
    // No first tab: the driver creates the one page it uses. A first tab that is then
    // replaced or closed costs a renderer start (about 0.4 CPU-seconds per launch).
    args.push("--no-startup-window".to_owned());
    args
}

/// Chromium reads only the last `--disable-features=` (and `--enable-features=`): merge
/// every occurrence into one, so that extra arguments add to ours instead of replacing them.
fn merge_feature_lists(args: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(args.len());
    for arg in args {
        let merged = ["--disable-features=", "--enable-features="]
            .into_iter()
            .find(|prefix| arg.starts_with(prefix))
            .and_then(|prefix| {
                let pos = out.iter().position(|a| a.starts_with(prefix))?;
                Some((pos, prefix))
            });
        match merged {
            Some((pos, prefix)) => {
                let extra = &arg[prefix.len()..];
                if !extra.is_empty() {
                    out[pos].push(',');
                    out[pos].push_str(extra);
                }
            }
            None => out.push(arg),
        }
    }
    out
}

/// A desktop Chrome user agent (macOS, as the reference client uses) for a Chromium major
/// version.
pub fn desktop_user_agent(major: u32) -> String {
    format!(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.0.0 Safari/537.36"
    )
}

/// Parses the major version out of `chromium --version` output
/// (`Chromium 156.0.8078.108 built on Debian…`).
pub(crate) fn parse_major_version(output: &str) -> Option<u32> {
    output.split_whitespace().find_map(|word| {
        word.split('.')
            .next()?
            .parse()
            .ok()
            .filter(|_| word.contains('.'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_get_their_dashes() {
        assert_eq!(
            normalise("ignore-certificate-errors"),
            "--ignore-certificate-errors"
        );
        assert_eq!(
            normalise("--ignore-certificate-errors"),
            "--ignore-certificate-errors"
        );
        let cfg = ChromiumConfig {
            no_sandbox: true,
            ..ChromiumConfig::default()
        }
        .arg("host-resolver-rules=MAP web.whatsapp.com 127.0.0.1:8443");
        let args = command_line(&cfg, Path::new("/data/s/alice"), Some("UA"), false);
        for want in [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-blink-features=AutomationControlled",
            "--user-data-dir=/data/s/alice",
            "--remote-debugging-port=0",
            "--user-agent=UA",
            "--host-resolver-rules=MAP web.whatsapp.com 127.0.0.1:8443",
        ] {
            assert!(
                args.iter().any(|a| a == want),
                "{want} missing from {args:?}"
            );
        }
        assert!(args.iter().all(|a| a.starts_with("--")), "{args:?}");
        assert_eq!(args.last().unwrap(), "--no-startup-window");
    }

    #[test]
    fn feature_lists_are_merged_not_replaced() {
        let cfg = ChromiumConfig::default()
            .arg("disable-features=LocalNetworkAccessChecks")
            .arg("--enable-features=A")
            .arg("--enable-features=B");
        let args = command_line(&cfg, Path::new("/p"), None, false);
        let disabled: Vec<_> = args
            .iter()
            .filter(|a| a.starts_with("--disable-features="))
            .collect();
        assert_eq!(disabled.len(), 1, "{args:?}");
        assert!(
            disabled[0].contains("Translate") && disabled[0].ends_with(",LocalNetworkAccessChecks")
        );
        assert!(
            args.contains(&"--enable-features=NetworkServiceInProcess2,A,B".to_owned()),
            "{args:?}"
        );
    }

    #[test]
    fn minimal_command_line_has_only_the_essentials() {
        let cfg = ChromiumConfig {
            no_sandbox: false,
            headless: false,
            ..ChromiumConfig::default()
        };
        let args = command_line(&cfg, Path::new("/p"), None, true);
        assert_eq!(
            args,
            [
                "--user-data-dir=/p",
                "--remote-debugging-port=0",
                "--no-startup-window"
            ]
        );
    }

    #[test]
    fn user_agent_is_a_desktop_chrome() {
        assert_eq!(
            parse_major_version("Chromium 156.0.8078.108 built on Debian GNU/Linux 12 (bookworm)"),
            Some(156)
        );
        assert_eq!(
            parse_major_version("Google Chrome 131.0.6778.85 "),
            Some(131)
        );
        assert_eq!(parse_major_version("garbage"), None);
        let ua = desktop_user_agent(156);
        assert!(ua.contains("Chrome/156.0.0.0") && ua.contains("Macintosh"));
        assert!(!ua.contains("Headless"));
    }
}
