//! `whatsapp-server`: the deployable service's binary. It parses the command line and calls
//! the libraries; everything else lives in `whatsapp_server` and the crates it wires.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use whatsapp_emulator::{Emulator, EmulatorConfig};
use whatsapp_server::app::{App, AppParts, ensure_admin_key};
use whatsapp_server::config::ServerConfig;

/// Keeps WhatsApp Web sessions connected around the clock.
///
/// Without a subcommand it runs the service: every setting below comes from its flag, its
/// environment variable, the --config file, or its default, in that order.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ServerConfig,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the WhatsApp Web emulator alone (for tests, demos and your own integration tests).
    ///
    /// With --tls it serves HTTPS with a self-signed certificate for web.whatsapp.com; point
    /// Chromium at it with --host-resolver-rules="MAP web.whatsapp.com ADDR" and
    /// --ignore-certificate-errors. The control API is under /_emulator/ (docs/emulator.md).
    Emulator {
        /// Address to listen on (port 0 picks a free port; the chosen one is printed).
        #[arg(long, default_value = "127.0.0.1:4010")]
        listen: SocketAddr,
        /// Serve HTTPS with a self-signed certificate instead of plain HTTP.
        #[arg(long)]
        tls: bool,
        /// Short QR lifetimes and delays, for tests.
        #[arg(long)]
        fast: bool,
        /// Remember linked devices and accounts in this JSON file across restarts (as the
        /// real server does); without it they are forgotten when the emulator stops.
        #[arg(long, value_name = "PATH")]
        state_file: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    // Before any thread exists: this may re-execute the program.
    whatsapp_server::process::limit_malloc_arenas();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("whatsapp-server: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,chromiumoxide=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Some(Command::Emulator {
            listen,
            tls,
            fast,
            state_file,
        }) => emulator(listen, tls, fast, state_file).await,
        None => {
            if let Err(e) = cli.config.apply_file(&matches) {
                e.exit();
            }
            serve(cli.config).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whatsapp-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the service until SIGINT/SIGTERM, then stops gracefully.
async fn serve(config: ServerConfig) -> std::io::Result<()> {
    let mut config = config
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    if let Some(path) = ensure_admin_key(&mut config).map_err(std::io::Error::other)? {
        println!("admin API key: generated and stored in {}", path.display());
    }
    let parts = AppParts::from_config(&config);
    let app = App::start(config, parts, None)
        .await
        .map_err(std::io::Error::other)?;
    println!("listening on http://{}", app.addr());
    shutdown_signal().await;
    app.shutdown().await;
    Ok(())
}

/// Serves the emulator until SIGINT/SIGTERM.
async fn emulator(
    listen: SocketAddr,
    tls: bool,
    fast: bool,
    state_file: Option<std::path::PathBuf>,
) -> std::io::Result<()> {
    let mut config = if fast {
        EmulatorConfig::fast()
    } else {
        EmulatorConfig::default()
    };
    config.state_file = state_file;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    let emulator = Emulator::try_new(config)?;
    let running = if tls {
        emulator.serve_tls(listener).await?
    } else {
        emulator.serve(listener).await?
    };
    println!("emulator listening on {}", running.url());
    if tls {
        println!(
            "chromium: --host-resolver-rules=\"{}\" --ignore-certificate-errors, then open {}",
            running.host_resolver_rule(),
            running.page_url()
        );
    }
    shutdown_signal().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
