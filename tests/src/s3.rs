//! A real S3-compatible server on loopback for the tests: `moto_server` from PyPI.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use whatsapp_storage::backup::S3Config;

const HINT: &str = "install it with `scripts/install-deps.sh` (pip install 'moto[server]'), or \
start one with `scripts/s3-server.sh <port>` and set S3_TEST_ENDPOINT=http://127.0.0.1:<port>";

/// A `moto_server` child process on a free loopback port (or the server named by
/// `S3_TEST_ENDPOINT`). The child is killed, by PID, when this is dropped.
pub struct MotoServer {
    endpoint: String,
    child: Option<Child>,
}

impl MotoServer {
    /// Starts the server and waits (bounded) until it answers. Panics with an install hint
    /// when no server can be had: S3 tests never skip.
    pub fn start() -> MotoServer {
        if let Ok(endpoint) = std::env::var("S3_TEST_ENDPOINT") {
            return MotoServer {
                endpoint,
                child: None,
            };
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free loopback port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("no S3 test server: cannot run moto_server ({e}); {HINT}"));
        let server = MotoServer {
            endpoint: format!("http://127.0.0.1:{port}"),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.request("GET", "/").is_none() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer within 60 s; {HINT}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The server's URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Creates `bucket` (moto accepts an unsigned request) and returns a sink configuration
    /// for it under `prefix`.
    pub fn bucket(&self, bucket: &str, prefix: &str) -> S3Config {
        let status = self.request("PUT", &format!("/{bucket}"));
        assert!(
            matches!(status, Some(200) | Some(409)),
            "creating bucket {bucket} answered {status:?}"
        );
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
            session_token: None,
            path_style: true,
            allow_http: true,
        }
    }

    /// One bare HTTP/1.1 request; the status code, or `None` if the server is not there.
    fn request(&self, method: &str, path: &str) -> Option<u16> {
        let host = self.endpoint.trim_start_matches("http://");
        status_of(&bare_request(host, method, path)?)
    }
}

/// One bare HTTP/1.1 request without a body to `host` (`127.0.0.1:PORT`), without a proxy
/// or an HTTP client (so it works from `Drop` and from synchronous code): the whole
/// response, or `None` if nothing answered within 10 s.
pub fn bare_request(host: &str, method: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(host).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).ok()?;
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}

/// The status code of a whole HTTP response as [`bare_request`] returns it.
pub fn status_of(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
