//! Real Chromium, no WhatsApp: launch failures, lock files, crashes, process clean-up.

mod common;

use std::time::Duration;

use whatsapp_chromium::{ChromiumConfig, ChromiumDriver};
use whatsapp_core::{BrowserDriver, Error};

use common::*;

#[tokio::test]
async fn a_page_without_whatsapp_times_out_naming_debug_version() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ChromiumDriver::new(ChromiumConfig {
        url: blank_page(),
        ready_timeout: Duration::from_secs(3),
        ..config(dir.path())
    });
    let spec = spec(dir.path(), "no-whatsapp");
    let err = driver.launch(spec.clone()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("window.Debug.VERSION"), "{err}");
    assert_no_chromium(&spec.profile_dir).await;
}

#[tokio::test]
async fn a_renamed_module_is_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ChromiumDriver::new(ChromiumConfig {
        url: page_without_modules(),
        ready_timeout: Duration::from_secs(3),
        ..config(dir.path())
    });
    let spec = spec(dir.path(), "renamed");
    let err = driver.launch(spec.clone()).await.unwrap_err();
    match &err {
        Error::ModuleMissing { module, .. } => assert_eq!(module, "WAWebSocketModel"),
        other => panic!("expected ModuleMissing, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "module WAWebSocketModel not found after 3s"
    );
    assert_no_chromium(&spec.profile_dir).await;
}
