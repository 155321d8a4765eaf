//! Runs the emulator alone, the way `whatsapp-server emulator` will.
//!
//! Run with: cargo run -p whatsapp-emulator --example emulator -- --listen 127.0.0.1:4010 [--tls] [--fast]

use std::net::SocketAddr;

use whatsapp_emulator::{EmulatorConfig, run_with};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 4010).into();
    let mut tls = false;
    let mut config = EmulatorConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args.next().expect("--listen needs an address");
                listen = value
                    .parse()
                    .expect("--listen: not an address like 127.0.0.1:4010");
            }
            "--tls" => tls = true,
            "--fast" => config = EmulatorConfig::fast(),
            other => panic!("unknown argument {other}; use --listen ADDR [--tls] [--fast]"),
        }
    }
    let scheme = if tls { "https" } else { "http" };
    println!("emulator listening on {scheme}://{listen}");
    if tls {
        println!(
            "chromium: --host-resolver-rules=\"MAP web.whatsapp.com {listen}\" --ignore-certificate-errors"
        );
    }
    run_with(listen, tls, config).await
}
