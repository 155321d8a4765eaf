//! Settings of the server's own process that must be in place before it starts.

/// The environment variable glibc's malloc reads, once, when a program starts.
pub const MALLOC_ARENA_MAX: &str = "MALLOC_ARENA_MAX";

/// The number of malloc arenas the server runs with.
///
/// glibc gives each thread that allocates an arena of its own, up to eight per core, and
/// returns freed memory to the system only from the top of each one: with tokio's workers,
/// its blocking threads and SQLite's connection threads, the resident memory creeps up with
/// the thread count. Two arenas cost nothing measurable in speed here and cut the
/// anonymous memory of a server with 10 sessions from 19.2 to 13.6 MiB
/// (`cargo bench -p whatsapp-tests --bench e2e`, docs/benchmarks.md).
pub const ARENAS: &str = "2";

/// Makes the process run with [`MALLOC_ARENA_MAX`] = [`ARENAS`] unless the variable is
/// already set (by the operator, who may choose another value, or by an earlier call).
///
/// glibc reads the variable only at start-up, so this re-executes the running program
/// (`/proc/self/exe`, same arguments, same PID) with the variable added; the new image sees
/// it set and this returns at once. Call it first thing in `main`, before any thread or
/// file is opened. Returns only when nothing had to be done, or when the re-execution
/// failed (then it says so on stderr and the process goes on with glibc's defaults). Does
/// nothing on other C libraries.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;

        if std::env::var_os(MALLOC_ARENA_MAX).is_some() {
            return;
        }
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new("/proc/self/exe");
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        let error = command.args(args).env(MALLOC_ARENA_MAX, ARENAS).exec();
        eprintln!(
            "whatsapp-server: could not re-execute with {MALLOC_ARENA_MAX}={ARENAS} ({error}); \
             running with glibc's default malloc arenas"
        );
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`, chromiumoxide's own chatter off).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,chromiumoxide=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C): the platform's and the operator's ways
/// to ask for a graceful stop.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops gracefully");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
