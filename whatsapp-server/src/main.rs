//! `whatsapp-server`: the deployable service's binary. It parses the command line and calls
//! the libraries; everything else lives in `whatsapp_server` and the crates it wires.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use whatsapp_server::app::{App, AppParts, ensure_admin_key};
use whatsapp_server::config::{ServerConfig, ignore_empty_env};

/// Keeps WhatsApp Web sessions connected around the clock.
///
/// Every setting below comes from its flag, its environment variable, the --config file, or
/// its default, in that order.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: ServerConfig,
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
    whatsapp_server::process::init_tracing();
    let matches = ignore_empty_env(Cli::command()).get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(e) = cli.config.apply_file(&matches) {
        e.exit();
    }
    let result = serve(cli.config).await;
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
    whatsapp_server::process::shutdown_signal().await;
    app.shutdown().await;
    Ok(())
}
