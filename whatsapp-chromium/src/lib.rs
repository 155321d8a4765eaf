//! [`ChromiumDriver`]: the [`whatsapp_core::BrowserDriver`] that runs WhatsApp Web in real
//! Chromium, talking to it over the DevTools protocol (chromiumoxide).
//!
//! The driver knows WhatsApp Web only through the surface described in
//! `shared/spec/wa-web-surface.md`: `window.Debug.VERSION`, `window.require(module)` and the
//! Backbone-style models it returns. Events reach the driver by a CDP binding the moment
//! the page raises them; there is no polling of the connection state.
//!
//! ```no_run
//! # async fn demo() -> whatsapp_core::Result<()> {
//! use whatsapp_chromium::{ChromiumConfig, ChromiumDriver};
//! use whatsapp_core::{BrowserDriver, LaunchSpec, SessionId};
//!
//! let driver = ChromiumDriver::new(ChromiumConfig::default());
//! let session = driver
//!     .launch(LaunchSpec {
//!         session: SessionId::new("alice")?,
//!         profile_dir: "/data/whatsapp-sessions/alice".into(),
//!     })
//!     .await?;
//! let mut events = session.subscribe(); // subscribe first ...
//! let state = session.state().await?; // ... then read the current value
//! # let _ = (&mut events, state);
//! session.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`config`]: [`ChromiumConfig`] (executable, flags, URL, user agent, timeouts, pinned
//!   HTML). Its `Debug` masks credentials.
//! - [`flags`]: the command line, with a comment on why each switch is there.
//! - [`profile`]: stopping a browser of ours that still holds a profile, and clearing the
//!   lock files ([`whatsapp_core::profile`] knows what they are and who holds them).
//! - [`process`]: [`BrowserProcess`], one Chromium in its own process group.
//! - `js`: the scripts evaluated in the page (the event bridge and one per operation).
//! - `driver` and `session`: [`ChromiumDriver`] and [`ChromiumSession`], the trait
//!   implementations.
//!
//! ## The process model, and why
//!
//! One Chromium per session, each with its own profile directory (the login lives there)
//! and its own `TMPDIR` (Chromium otherwise leaves `/tmp/org.chromium.Chromium.*` behind;
//! ours is removed when the session ends). A session that misbehaves — a leak, a crash, a
//! hung renderer — then takes nothing else down, and a relaunch is a clean restart.
//!
//! Chromium is started through a tiny `/bin/sh` wrapper that leads a new **process group**:
//!
//! ```text
//! our process ─ sh (group leader, TMPDIR=…) ─┬─ chromium ─ zygotes, renderers, utilities
//!                                             └─ sh watchdog (reads a pipe from us)
//! ```
//!
//! - **Crash detection without polling**: the wrapper reaps the browser and exits with its
//!   status; we await the wrapper, so a `kill -9` of Chromium is reported at once as
//!   [`whatsapp_core::DriverEvent::Crashed`]. A renderer crash arrives as
//!   `Inspector.targetCrashed`.
//! - **No orphans, even when we are killed**: the watchdog blocks on a pipe whose only
//!   writer is our process. When we die — even by `SIGKILL`, which runs no destructor — the
//!   kernel closes the pipe and the watchdog kills the whole group. No `unsafe`
//!   (`PR_SET_PDEATHSIG`) is needed.
//! - **Stale browsers from a previous run**: before each launch, the PID in the profile's
//!   lock ([`whatsapp_core::profile::lock_owner`]) is checked; if it is alive on this host
//!   and its command line has exactly our `--user-data-dir`, it gets `SIGTERM`, then its
//!   process group `SIGKILL`. Then the lock files ([`whatsapp_core::profile::LOCK_FILES`])
//!   are removed (root and `Default/`), so a lock from another host (exit code 21: a
//!   profile restored from a backup) never blocks a launch.
//! - **Graceful close**: CDP `Browser.close` (Chromium flushes IndexedDB and Local Storage,
//!   where the login lives), then after [`ChromiumConfig::close_grace`] `SIGTERM` and a
//!   `SIGKILL` of the group. We reap the wrapper; the wrapper reaps Chromium. Helpers that
//!   Chromium had not reaped when it died are re-parented to PID 1: run the service under an
//!   init that reaps (`docker --init`, tini) to keep zombies from accumulating.
//! - The DevTools endpoint listens on a random port of 127.0.0.1 (`--remote-debugging-port=0`),
//!   read from Chromium's stderr.

pub mod config;
mod driver;
pub mod flags;
mod js;
pub mod process;
pub mod profile;
mod session;

pub use config::{ChromiumConfig, DEFAULT_EXECUTABLE, WHATSAPP_WEB_URL};
pub use driver::ChromiumDriver;
pub use process::{BrowserProcess, ExitReport};
pub use session::ChromiumSession;
