//! Body types of the proxy, without boxing.
//!
//! * [`ProxyBody`]: what goes back to the client — the pod's streamed response, or a short
//!   body wicket wrote itself — counting its bytes for the access log.
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

use super::observe::Finish;
use super::pool::Loan;

/// The response body sent to the client: the pod's streamed response or a short body
/// wicket wrote itself, and (for proxied requests) what to do when it ends — the access-log
/// line and the metric observation, which need the response's size and full duration.
#[derive(Debug)]
pub struct ProxyBody {
    inner: Inner,
    finish: Option<Finish>,
    bytes: u64,
}

#[derive(Debug)]
enum Inner {
    Upstream(ResponseBody),
    Full(Option<Bytes>),
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self::new(Inner::Full((!bytes.is_empty()).then_some(bytes)))
    }

    pub fn empty() -> Self {
        Self::new(Inner::Full(None))
    }

    pub fn upstream(body: ResponseBody) -> Self {
        Self::new(Inner::Upstream(body))
    }

    fn new(inner: Inner) -> Self {
        Self {
            inner,
            finish: None,
            bytes: 0,
        }
    }

    /// Runs `finish` with the bytes sent once the body ends or is dropped.
    pub fn on_finish(&mut self, finish: Finish) {
        self.finish = Some(finish);
    }

    fn finish(&mut self) {
        if let Some(finish) = self.finish.take() {
            finish.run(self.bytes);
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = match &mut this.inner {
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        };
        match &frame {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(data) = f.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => this.finish(),
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(body) => body.is_end_stream(),
            Inner::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(body) => body.size_hint(),
            Inner::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// A pod's response body. When it came over a pooled HTTP/1.1 connection, the connection
/// goes back to the pool once the body has been read to the end (never when the client
/// went away half-way: that connection is mid-response and is closed).
pub struct ResponseBody {
    inner: Incoming,
    done: bool,
    loan: Option<Loan>,
}

impl ResponseBody {
    pub fn new(inner: Incoming, loan: Option<Loan>) -> Self {
        Self {
            inner,
            done: false,
            loan,
        }
    }

    pub fn plain(inner: Incoming) -> Self {
        Self::new(inner, None)
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("done", &self.done)
            .field("pooled", &self.loan.is_some())
            .finish()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(loan) = self.loan.take() {
            if self.done || self.inner.is_end_stream() {
                loan.give_back();
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.done = true,
            // A broken body leaves the connection in no state to reuse.
            Poll::Ready(Some(Err(_))) => this.loan = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
