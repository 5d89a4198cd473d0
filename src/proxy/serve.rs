//! Serving connections with hyper-util's auto builder (HTTP/1.1 and HTTP/2 with prior
//! knowledge on one port), upgrades on, each connection supervised by its listener's
//! registry (`conn.rs`): requests in flight are counted, idle and silent connections are
//! closed, and shutdown drains (HTTP/2 gets GOAWAY, HTTP/1.1 responses `Connection: close`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, CONNECTION};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::body::ProxyBody;
use super::conn::{signal, ConnInfo, Supervised};

/// Largest HTTP/1.1 request head hyper buffers before answering 431. Above the 64 KiB that
/// wicket accepts (`limits.rs`) so that a request line too long for hyper's own URI limit
/// (64 KiB) still gets the 414 it deserves rather than 431.
const MAX_HEAD_BUFFER: usize = 96 * 1024;
/// HTTP/2 streams a client may have open at once (nginx: 128).
const MAX_CONCURRENT_STREAMS: u32 = 256;
/// HTTP/2 header block limit, the same as HTTP/1.1's head limit.
const MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;
/// HTTP/2 ping interval and timeout, to drop dead clients with streams open.
const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Streams a client may reset before they are accepted, and streams wicket may reset for a
/// client's errors, before the connection is closed (rapid reset, CVE-2023-44487).
const H2_MAX_PENDING_RESETS: usize = 20;
const H2_MAX_ERROR_RESETS: usize = 256;
/// Response bytes buffered per HTTP/2 connection for a client that does not read.
const H2_MAX_SEND_BUFFER: usize = 256 * 1024;

pub struct Server {
    builder: auto::Builder<TokioExecutor>,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    pub fn new() -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            // The listener's registry times out silent and idle connections; no timer per
            // request head here.
            .header_read_timeout(None)
            .max_buf_size(MAX_HEAD_BUFFER)
            // Copy the response head and body into one buffer and write once: cheaper than
            // a vectored write for the small responses most requests get (measured: ~1.4%
            // fewer instructions per request), and one TLS record instead of two slices.
            .writev(false)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_header_list_size(MAX_HEADER_LIST_SIZE)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
            .max_local_error_reset_streams(H2_MAX_ERROR_RESETS)
            .max_send_buf_size(H2_MAX_SEND_BUFFER)
            .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
            .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
        Self { builder }
    }

    /// Serves one connection until it closes (HTTP/1.1 or HTTP/2, by its preface), or
    /// its listener closes it.
    pub async fn serve<IO, H, Fut>(&self, io: IO, conn: Arc<ConnInfo>, handler: H)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Arc<ConnInfo>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
    {
        let peer = conn.peer;
        let tracked = conn.tracked().clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let active = conn.tracked().begin(req.version() == Version::HTTP_2);
            // Boxed once: hyper keeps the request future in place, and a pointer is all
            // that moves, instead of the whole (several KiB) future.
            let response = Box::pin(handler(conn.clone(), req));
            async move {
                let mut response = response.await;
                // Shutting down: this client should go elsewhere for its next request (an
                // upgrade is let through: its connection becomes the tunnel).
                let upgrade = response.status() == StatusCode::SWITCHING_PROTOCOLS;
                if active.conn().draining() && !upgrade {
                    if active.conn().is_h2() {
                        active.conn().signal(signal::GO_AWAY);
                    } else {
                        response
                            .headers_mut()
                            .insert(CONNECTION, HeaderValue::from_static("close"));
                    }
                }
                response.body_mut().hold(active);
                Ok::<_, Infallible>(response)
            }
        });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let mut shutting_down = false;
        let supervised = Supervised::new(tracked, connection, move |connection, conn, bits| {
            let drain = bits & signal::DRAIN != 0 || (bits & signal::GO_AWAY != 0 && conn.is_h2());
            if drain && !shutting_down {
                shutting_down = true;
                connection.graceful_shutdown();
            }
        });
        match supervised.await {
            Some(Err(error)) => debug!(%peer, %error, "connection ended with an error"),
            None => debug!(%peer, "connection closed by wicket"),
            Some(Ok(())) => {}
        }
    }
}
