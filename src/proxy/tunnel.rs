//! WebSocket tunnels: bytes both ways between the client and the pod once both have
//! switched protocols, until either side closes, nothing has moved either way for the idle
//! timeout (`--upstream-read-timeout`, as nginx applies `proxy_read_timeout` to upgraded
//! connections: applications ping more often), or shutdown's deadline closes it.
//!
//! The tunnel counts as a request in flight on its client connection, so the connection
//! is neither idle nor evictable while it lasts, and shutdown waits for it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

use super::body::{epoch, millis_now};
use super::conn::Active;

/// Relays between the client's and the pod's upgraded connections.
pub async fn run(downstream: OnUpgrade, upstream: OnUpgrade, active: Active, idle: Duration) {
    let closed = active.conn().closed();
    let relay = async {
        match tokio::try_join!(downstream, upstream) {
            Ok((down, up)) => {
                relay_idle(&mut TokioIo::new(down), &mut TokioIo::new(up), idle).await;
            }
            Err(error) => debug!(%error, "protocol upgrade failed"),
        }
    };
    tokio::select! {
        () = relay => {}
        () = closed => {}
    }
    drop(active);
}

/// Copies bytes both ways until either side closes or nothing has moved for `idle`.
pub async fn relay_idle<A, B>(a: &mut A, b: &mut B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let last = Arc::new(AtomicU64::new(millis_now()));
    let relay = async {
        let mut a = Moving::new(a, last.clone());
        let mut b = Moving::new(b, last.clone());
        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    };
    let quiet = async {
        loop {
            let deadline = epoch() + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
            if tokio::time::Instant::now() >= deadline.into() {
                debug!(?idle, "tunnel idle; closing it");
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    };
    tokio::select! {
        () = relay => {}
        () = quiet => {}
    }
}

/// One side of a tunnel, noting when bytes last moved.
struct Moving<T> {
    inner: T,
    last: Arc<AtomicU64>,
}

impl<T> Moving<T> {
    fn new(inner: T, last: Arc<AtomicU64>) -> Self {
        Self { inner, last }
    }

    fn moved(&self) {
        self.last.store(millis_now(), Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Moving<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.moved();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Moving<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.moved();
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
