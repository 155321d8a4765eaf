//! The `whatsapp-emulator` binary, as an operator or a test suite runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Kills the child by PID when the test ends, whatever happens.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn emulator_binary_serves_the_control_api() {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_whatsapp-emulator"))
            .args(["--listen", "127.0.0.1:0", "--fast"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run whatsapp-emulator"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .next()
            .expect("a line on stdout")
            .unwrap()
    })
    .await
    .unwrap();
    let url = line
        .strip_prefix("emulator listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let devices = whatsapp_emulator::EmulatorClient::new(url)
        .devices()
        .await
        .expect("the control API answers");
    assert!(devices.is_empty());
}

#[test]
fn help_documents_the_emulator_and_bad_arguments_name_the_problem() {
    let out = Command::new(env!("CARGO_BIN_EXE_whatsapp-emulator"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--listen") && help.contains("--tls"),
        "{help}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_whatsapp-emulator"))
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--listen"), "{err}");
}
