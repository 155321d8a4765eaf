//! The HTTP listener's settings: address, time-outs, connection limit, and `/metrics`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::builder::RangedU64ValueParser;

use super::ConfigError;
use super::parse;
use super::secret::Secret;
use crate::serve::HttpLimits;

/// The HTTP settings, as given.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpSettings {
    /// The HTTP port.
    #[arg(long, env = "PORT", default_value_t = 4000, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// The address to listen on (an IP address).
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Longest wait for a complete request head, counted from the connection's start and,
    /// on a kept-alive connection, from the end of the previous response (so it is also the
    /// idle time-out). Silent, half-sent and idle connections are closed after it.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = parse::positive_duration)]
    pub http_header_timeout: Duration,

    /// Longest wait for the next piece of a request body.
    #[arg(long, env = "HTTP_BODY_TIMEOUT", default_value = "10s", value_parser = parse::positive_duration)]
    pub http_body_timeout: Duration,

    /// Longest time to answer a request, its body included (408 after it); not applied to
    /// Socket.IO.
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse::positive_duration)]
    pub http_request_timeout: Duration,

    /// Most connections open at once (WebSockets included); further ones wait to be
    /// accepted. At most 16777216 (tokio's semaphore bounds it).
    #[arg(
        long,
        env = "HTTP_MAX_CONNECTIONS",
        default_value_t = 10_000,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=1 << 24)
    )]
    pub http_max_connections: usize,

    /// A bearer token for `GET /metrics` (secret); the admin key is accepted too.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret<String>>,

    /// An extra address (`127.0.0.1:9100`) serving `/metrics` without a key, for a
    /// Prometheus scraper on a private network. Default: none.
    #[arg(long, env = "METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// The HTTP settings, checked.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The API's address.
    pub listen: SocketAddr,
    /// The listener's time-outs and connection limit.
    pub limits: HttpLimits,
    /// The bearer token that may read `/metrics` besides the admin key.
    pub metrics_token: Option<Secret<String>>,
    /// Where `/metrics` is also served without a key, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
}

impl HttpSettings {
    /// Checks what the parsers could not: the metrics address differs from the API's.
    pub fn check(&self) -> Result<HttpConfig, ConfigError> {
        let listen = SocketAddr::new(self.host, self.port);
        if self.metrics_listen == Some(listen) {
            return Err(ConfigError::new(
                "METRICS_LISTEN",
                "must differ from HOST:PORT (the API's address)",
            ));
        }
        Ok(HttpConfig {
            listen,
            limits: HttpLimits {
                header_timeout: self.http_header_timeout,
                body_timeout: self.http_body_timeout,
                request_timeout: self.http_request_timeout,
                max_connections: self.http_max_connections,
            },
            metrics_token: super::present(&self.metrics_token),
            metrics_listen: self.metrics_listen,
        })
    }
}
