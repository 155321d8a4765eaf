//! A self-signed certificate for `web.whatsapp.com` and `localhost`, made at start-up, so a
//! browser pointed at the emulator with `--host-resolver-rules` and
//! `--ignore-certificate-errors` loads `https://web.whatsapp.com/` from it.

use std::io;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The host names the generated certificate covers.
pub const CERT_NAMES: [&str; 4] = ["web.whatsapp.com", "localhost", "127.0.0.1", "::1"];

/// Builds a rustls server config (ring provider, HTTP/1.1 only so WebSockets upgrade the
/// classic way) with a fresh self-signed certificate.
pub(crate) fn self_signed_config() -> io::Result<Arc<ServerConfig>> {
    let names: Vec<String> = CERT_NAMES.iter().map(|s| (*s).to_owned()).collect();
    let certified = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
