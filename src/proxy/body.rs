//! Body types of the proxy, without boxing.
//!
//! * [`ProxyBody`]: what goes back to the client — the pod's streamed response, or a short
//!   body wicket wrote itself.
//! * [`UpstreamBody`]: what goes to the pod — the client's request body. If the upstream
//!   client drops it before reading a single frame (the connection could not be made),
//!   the body is handed back through a channel so the request can be retried on another
//!   endpoint without buffering anything.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;

/// The response body sent to the client.
#[derive(Debug)]
pub enum ProxyBody {
    Upstream(Incoming),
    Full(Option<Bytes>),
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ProxyBody::Full((!bytes.is_empty()).then_some(bytes))
    }

    pub fn empty() -> Self {
        ProxyBody::Full(None)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(body) => body.is_end_stream(),
            ProxyBody::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(body) => body.size_hint(),
            ProxyBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// The request body sent to the pod.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Option<Incoming>,
    /// Set once a frame was asked for: from then on the body cannot be replayed.
    polled: bool,
    reclaim: Option<oneshot::Sender<Incoming>>,
}

/// Receives the body back if it was never read.
pub type Reclaim = oneshot::Receiver<Incoming>;

impl UpstreamBody {
    pub fn empty() -> Self {
        Self {
            inner: None,
            polled: false,
            reclaim: None,
        }
    }

    /// Wraps a client body; the receiver gets it back if the body is dropped unread.
    pub fn reclaimable(body: Incoming) -> (Self, Reclaim) {
        let (tx, rx) = oneshot::channel();
        (
            Self {
                inner: Some(body),
                polled: false,
                reclaim: Some(tx),
            },
            rx,
        )
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if !self.polled {
            if let (Some(body), Some(tx)) = (self.inner.take(), self.reclaim.take()) {
                let _ = tx.send(body);
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        this.polled = true;
        match this.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
