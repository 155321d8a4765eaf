//! The HTTP listener: accepts connections up to a limit and serves each with hyper's HTTP/1
//! server, with time-outs, so that slow or silent clients cannot hold sockets forever.
//!
//! # What bounds a connection
//!
//! - **Connection count** ([`HttpLimits::max_connections`]): a semaphore around `accept`.
//!   At the limit the server stops accepting; new connections wait in the kernel's backlog
//!   until an open one closes (which the time-outs below guarantee for idle ones). A
//!   connection upgraded to a WebSocket keeps its slot until the WebSocket closes (the slot
//!   travels with the socket).
//! - **Header time-out** ([`HttpLimits::header_timeout`]): hyper's HTTP/1
//!   `header_read_timeout`. Its clock starts whenever hyper waits for a request head: when
//!   the connection opens and again after each response on a kept-alive connection. So it
//!   closes connections that send nothing, stop in the middle of a header, or sit idle
//!   between requests (it is also the keep-alive idle time-out).
//! - **Body time-out** ([`HttpLimits::body_timeout`]): tower-http's
//!   `RequestBodyTimeoutLayer`: the longest wait for the next piece of a request body.
//! - **Request time-out** ([`HttpLimits::request_timeout`]): tower-http's `TimeoutLayer` on
//!   the REST API, the dashboard, health and metrics (not on Socket.IO, whose long-polling
//!   requests are held open on purpose): a request, body included, must be answered within
//!   it, or it gets `408` and the connection is closed. This is what ends a body trickled
//!   one byte at a time.
//!
//! HTTP/2 is not offered on the plain-text listener (hyper's HTTP/1 builder only): browsers
//! speak HTTP/2 only over TLS, which a proxy in front of the server terminates.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The limits of the HTTP listener (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest wait for a complete request head, from the connection's start or the end of
    /// the previous response (`HTTP_HEADER_TIMEOUT`).
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body (`HTTP_BODY_TIMEOUT`).
    pub body_timeout: Duration,
    /// Longest time to answer a request, its body included (`HTTP_REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
    /// Most connections open at once (`HTTP_MAX_CONNECTIONS`).
    pub max_connections: usize,
}

impl Default for HttpLimits {
    /// 10 s to send a request head, 10 s between body pieces, 30 s per request, 10 000
    /// connections.
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `cancel` fires; then stops accepting
/// and lets each connection finish its request in flight. Each request carries
/// `ConnectInfo<SocketAddr>`. The request and body time-outs are layers the caller adds to
/// `router` ([`crate::api::router`], [`crate::app::App::start`]); this function applies the
/// connection limit and the header time-out.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    cancel: CancellationToken,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = cancel.cancelled() => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = cancel.cancelled() => break,
        };
        let io = TokioIo::new(Counted {
            stream,
            _permit: permit,
        });
        let service = router.clone().map_request(
            move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(remote));
                req.map(axum::body::Body::new)
            },
        );
        let cancel = cancel.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = builder
                .serve_connection(io, TowerToHyperService::new(service))
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => log_connection_end(remote, result),
                () = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    log_connection_end(remote, conn.await);
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

fn log_connection_end(remote: SocketAddr, result: hyper::Result<()>) {
    if let Err(e) = result {
        // Time-outs and resets by clients are routine: not worth more than a debug line.
        tracing::debug!(%remote, error = %e, "HTTP connection ended");
    }
}

/// Out of file descriptors (or another accept error): wait a little instead of spinning,
/// as axum's `serve` does.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept an HTTP connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// A TCP stream holding one connection slot: the slot is given back when the stream is
/// dropped, also after an upgrade to a WebSocket moved the stream out of hyper.
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
