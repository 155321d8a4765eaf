//! [`ChromiumDriver`]: the [`BrowserDriver`] that launches one Chromium per session.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chromiumoxide::Browser;
use chromiumoxide::cdp::browser_protocol::fetch::{EnableParams as FetchEnable, RequestPattern};
use chromiumoxide::cdp::browser_protocol::inspector::EnableParams as InspectorEnable;
use chromiumoxide::cdp::browser_protocol::log::DisableParams as LogDisable;
use chromiumoxide::cdp::browser_protocol::network::DisableParams as NetworkDisable;
use chromiumoxide::cdp::browser_protocol::page::{
    AddScriptToEvaluateOnNewDocumentParams, NavigateParams,
};
use chromiumoxide::cdp::browser_protocol::performance::DisableParams as PerformanceDisable;
use chromiumoxide::cdp::browser_protocol::target::{
    CloseTargetParams, CreateTargetParams, GetTargetsParams,
};
use chromiumoxide::cdp::js_protocol::runtime::AddBindingParams;
use chromiumoxide::error::CdpError;
use chromiumoxide::handler::HandlerConfig;
use futures::StreamExt;
use tokio::sync::{OnceCell, watch};
use tokio::time::Instant;
use tracing::{debug, info};
use whatsapp_core::{BrowserDriver, BrowserSession, Error, LaunchSpec, Result};

use crate::config::ChromiumConfig;
use crate::flags;
use crate::js;
use crate::process::{BrowserProcess, temp_dir_for};
use crate::profile;
use crate::session::{ChromiumSession, Parts, Progress};

/// Launches WhatsApp Web in Chromium, one browser and one profile per session.
///
/// See the crate documentation for the process model.
#[derive(Debug)]
pub struct ChromiumDriver {
    config: Arc<ChromiumConfig>,
    user_agent: OnceCell<Option<String>>,
}

impl ChromiumDriver {
    /// A driver with this configuration. Nothing is started until [`ChromiumDriver::launch_session`].
    pub fn new(config: ChromiumConfig) -> Self {
        ChromiumDriver {
            config: Arc::new(config),
            user_agent: OnceCell::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ChromiumConfig {
        &self.config
    }

    /// The user agent sessions get: the configured one, or a desktop Chrome with the installed
    /// Chromium's major version (`None` if the version cannot be read: Chromium's own then).
    pub async fn user_agent(&self) -> Option<String> {
        self.user_agent
            .get_or_init(|| async {
                if let Some(ua) = &self.config.user_agent {
                    return Some(ua.clone());
                }
                let out = crate::process::version_output(&self.config.executable)
                    .await
                    .ok()?;
                flags::parse_major_version(&out).map(flags::desktop_user_agent)
            })
            .await
            .clone()
    }

    /// Like [`BrowserDriver::launch`], with the concrete handle type (PIDs for tests and
    /// monitoring).
    pub async fn launch_session(&self, spec: LaunchSpec) -> Result<Arc<ChromiumSession>> {
        let cfg = &self.config;
        let profile_dir = prepare_profile_dir(&spec.profile_dir).await?;
        profile::prepare(&profile_dir, cfg.close_grace)
            .await
            .map_err(|e| Error::backend("chromium", false, format!("profile lock files: {e}")))?;
        let user_agent = self.user_agent().await;
        let args = flags::command_line(cfg, &profile_dir, user_agent.as_deref(), !cfg.tuned_flags);
        let tmp_dir = temp_dir_for(&cfg.temp_root, &profile_dir);
        info!(session = %spec.session, profile = %profile_dir.display(), "launching chromium");
        let process = Arc::new(
            BrowserProcess::spawn(
                &cfg.executable,
                &args,
                &profile_dir,
                &tmp_dir,
                cfg.start_timeout,
            )
            .await?,
        );
        match self.open(&spec, profile_dir, process.clone()).await {
            Ok(session) => Ok(session),
            Err(e) => {
                process.kill().await;
                Err(e)
            }
        }
    }

    async fn open(
        &self,
        spec: &LaunchSpec,
        profile_dir: PathBuf,
        process: Arc<BrowserProcess>,
    ) -> Result<Arc<ChromiumSession>> {
        let cfg = &self.config;
        let started = Instant::now();
        let cdp = |e: CdpError| Error::backend("chromium", true, e);
        let within = |what: &str| {
            let what = what.to_owned();
            let limit = cfg.start_timeout;
            move |_| Error::Timeout { what, after: limit }
        };

        let handler_config = HandlerConfig {
            viewport: None,
            request_timeout: cfg.call_timeout,
            ..HandlerConfig::default()
        };
        let (browser, mut handler) = tokio::time::timeout(
            cfg.start_timeout,
            Browser::connect_with_config(process.ws_url().to_owned(), handler_config),
        )
        .await
        .map_err(within("the DevTools connection"))?
        .map_err(cdp)?;
        let (lost_tx, lost_rx) = watch::channel(false);
        let handler_task = tokio::spawn(async move {
            while let Some(r) = handler.next().await {
                if let Err(e) = r {
                    if matches!(e, CdpError::Ws(_) | CdpError::Io(_)) {
                        debug!(error = %e, "DevTools connection closed");
                        break;
                    }
                    debug!(error = %e, "DevTools handler error");
                }
            }
            let _ = lost_tx.send(true);
        });
        let browser = Arc::new(browser);

        let page = tokio::time::timeout(
            cfg.start_timeout,
            browser.new_page(CreateTargetParams::new("about:blank")),
        )
        .await
        .map_err(within("a new page"))?
        .map_err(cdp)?;
        // Chromium starts without a tab (`--no-startup-window`); should a wrapper script
        // have opened one anyway, it is closed: one page, one renderer.
        if let Ok(Ok(targets)) = tokio::time::timeout(
            cfg.call_timeout,
            browser.execute(GetTargetsParams::default()),
        )
        .await
        {
            for t in &targets.result.target_infos {
                if t.r#type == "page" && t.target_id != *page.target_id() {
                    let _ = browser
                        .execute(CloseTargetParams::new(t.target_id.clone()))
                        .await;
                }
            }
        }

        let (session, mut progress) = ChromiumSession::start(Parts {
            id: spec.session.clone(),
            profile_dir,
            config: cfg.clone(),
            browser: browser.clone(),
            page: page.clone(),
            process: process.clone(),
            handler_task,
            connection_lost: lost_rx,
        })
        .await?;

        let setup = async {
            page.execute(AddBindingParams::new(js::BINDING)).await?;
            page.execute(AddScriptToEvaluateOnNewDocumentParams::new(
                js::bridge_script(cfg.ready_timeout),
            ))
            .await?;
            // Renderer crashes arrive as Inspector.targetCrashed.
            page.execute(InspectorEnable::default()).await?;
            // chromiumoxide enables these domains on every page; the driver reads none of
            // their events. Left on, every request and every WebSocket frame of WhatsApp
            // Web would be serialised, sent over DevTools and tracked in this process for
            // as long as the session lives.
            page.execute(NetworkDisable::default()).await?;
            page.execute(LogDisable::default()).await?;
            page.execute(PerformanceDisable::default()).await?;
            if cfg.pinned_html.is_some() {
                let pattern = RequestPattern::builder()
                    .url_pattern(cfg.url.clone())
                    .build();
                page.execute(FetchEnable::builder().pattern(pattern).build())
                    .await?;
            }
            Ok::<_, CdpError>(())
        };
        tokio::time::timeout(cfg.call_timeout, setup)
            .await
            .map_err(within("the page set-up"))?
            .map_err(cdp)?;

        let nav = tokio::time::timeout(
            cfg.ready_timeout,
            page.execute(NavigateParams::new(cfg.url.clone())),
        )
        .await
        .map_err(|_| Error::Timeout {
            what: format!("navigation to {}", cfg.url),
            after: cfg.ready_timeout,
        })?
        .map_err(cdp)?;
        if let Some(err) = &nav.result.error_text {
            return Err(Error::unavailable(
                "whatsapp web",
                format!("cannot load {}: {err}", cfg.url),
            ));
        }

        // Wait for the bridge: loaded, subscribed, or dead — until the ready deadline.
        let deadline = started + cfg.ready_timeout;
        let installed = tokio::time::timeout_at(
            deadline,
            progress.wait_for(|p| p.installed || p.dead.is_some()),
        )
        .await
        .is_ok_and(|r| r.is_ok_and(|p| p.installed));
        let last: Progress = progress.borrow().clone();
        match installed {
            true => {
                info!(session = %spec.session, version = ?last.loaded, elapsed = ?started.elapsed(), "WhatsApp Web ready");
                Ok(session)
            }
            _ => {
                session.close().await.ok();
                Err(launch_error(&last, cfg.ready_timeout))
            }
        }
    }
}

/// The error for a launch that did not reach "installed".
fn launch_error(p: &Progress, after: std::time::Duration) -> Error {
    if let Some(reason) = &p.dead {
        return Error::Crashed(reason.clone());
    }
    match (&p.loaded, &p.missing) {
        (Some(_), Some(module)) => Error::ModuleMissing {
            module: module.clone(),
            after,
        },
        (Some(_), None) => Error::Timeout {
            what: "WhatsApp Web's models (WAWebSocketModel)".into(),
            after,
        },
        (None, _) => Error::Timeout {
            what: "window.Debug.VERSION (WhatsApp Web did not load)".into(),
            after,
        },
    }
}

async fn prepare_profile_dir(dir: &Path) -> Result<PathBuf> {
    tokio::fs::create_dir_all(dir).await.map_err(|e| {
        Error::backend(
            "chromium",
            false,
            format!("cannot create profile dir {}: {e}", dir.display()),
        )
    })?;
    let dir = tokio::fs::canonicalize(dir).await.map_err(|e| {
        Error::backend(
            "chromium",
            false,
            format!("profile dir {}: {e}", dir.display()),
        )
    })?;
    check_writable(&dir).await?;
    Ok(dir)
}

/// Chromium cannot create its lock ([`whatsapp_core::profile::SINGLETON_LOCK`]) in a
/// profile it cannot write and then exits with code 21, which it also uses for "profile in
/// use on another computer". A tiny file
/// created and removed first tells the real cause: a read-only or full disk, or no
/// permission.
async fn check_writable(dir: &Path) -> Result<()> {
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    let result = match tokio::fs::write(&probe, b"").await {
        Ok(()) => tokio::fs::remove_file(&probe).await,
        Err(e) => Err(e),
    };
    let Err(e) = result else { return Ok(()) };
    let reason = format!("profile directory {} is not writable: {e}", dir.display());
    Err(match e.raw_os_error() {
        // ENOSPC, EDQUOT
        Some(28 | 122) => Error::StorageFull {
            what: "chromium profile".into(),
            reason,
        },
        // EROFS, EACCES, EPERM
        Some(30 | 13 | 1) => Error::StorageReadOnly {
            what: "chromium profile".into(),
            reason,
        },
        _ => Error::backend("chromium", true, reason),
    })
}

#[async_trait]
impl BrowserDriver for ChromiumDriver {
    async fn launch(&self, spec: LaunchSpec) -> Result<Arc<dyn BrowserSession>> {
        let session: Arc<dyn BrowserSession> = self.launch_session(spec).await?;
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn launch_errors_name_what_was_missing() {
        let after = Duration::from_secs(30);
        let e = launch_error(&Progress::default(), after);
        assert!(matches!(e, Error::Timeout { .. }));
        assert!(e.to_string().contains("window.Debug.VERSION"), "{e}");

        let p = Progress {
            loaded: Some("2.3000.1".into()),
            missing: Some("WAWebSocketModel".into()),
            ..Progress::default()
        };
        let e = launch_error(&p, after);
        assert_eq!(e.to_string(), "module WAWebSocketModel not found after 30s");

        let p = Progress {
            dead: Some("chromium was killed by signal 9".into()),
            ..Progress::default()
        };
        assert!(matches!(launch_error(&p, after), Error::Crashed(_)));
    }
}
