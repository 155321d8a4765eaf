//! `whatsapp-emulator`: runs the WhatsApp Web emulator alone until SIGINT/SIGTERM, for tests,
//! demos and your own integration tests. Everything it serves lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use whatsapp_emulator::{Emulator, EmulatorConfig};

/// Runs the WhatsApp Web emulator alone (for tests, demos and your own integration tests).
///
/// With --tls it serves HTTPS with a self-signed certificate for web.whatsapp.com; point
/// Chromium at it with --host-resolver-rules="MAP web.whatsapp.com ADDR" and
/// --ignore-certificate-errors. The control API is under /_emulator/ (docs/emulator.md).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
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
    state_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whatsapp-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves the emulator until SIGINT/SIGTERM. The first line on stdout is
/// `emulator listening on URL` (scripts and tests parse it).
async fn run(cli: Cli) -> std::io::Result<()> {
    let mut config = if cli.fast {
        EmulatorConfig::fast()
    } else {
        EmulatorConfig::default()
    };
    config.state_file = cli.state_file;
    let listen = cli.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    let emulator = Emulator::try_new(config)?;
    let running = if cli.tls {
        emulator.serve_tls(listener).await?
    } else {
        emulator.serve(listener).await?
    };
    println!("emulator listening on {}", running.url());
    if cli.tls {
        println!(
            "chromium: --host-resolver-rules=\"{}\" --ignore-certificate-errors, then open {}",
            running.host_resolver_rule(),
            running.page_url()
        );
    }
    shutdown_signal().await
}

async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}
