//! Body types of the proxy, without boxing.
//!
//! * [`ProxyBody`]: what goes back to the client — the pod's streamed response, or a short
//!   body wicket wrote itself — counting its bytes for the access log.
//! * [`ResponseBody`]: the pod's response body. It times out when the pod stops sending
//!   (`--upstream-read-timeout`), reports a body cut short to the outlier detector, and
//!   hands a pooled HTTP/1.1 connection back once read to the end.
//! * [`ClientBody`]: the client's request body on its way to the pod: counted against
//!   `--max-request-body`, timed out when the client stops sending
//!   (`--client-body-timeout`), and its errors kept apart from the pod's, so they are the
//!   client's 400/408/413 and not a 502.
//! * [`UpstreamBody`]: what goes to the pod. If the upstream client drops it before reading
//!   a single frame (the connection could not be made), the body is handed back through a
//!   channel so the request can be retried on another endpoint without buffering anything.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;
use tokio::time::Sleep;
use tracing::debug;

use super::conn::Active;
use super::forward::Upstream;
use super::observe::Finish;
use super::outlier::Failure;
use super::pool::Sender;
use crate::model::Backend;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body sent to the client: the pod's streamed response or a short body
/// wicket wrote itself, and (for proxied requests) what to do when it ends — the access-log
/// line and the metric observation, which need the response's size and full duration.
#[derive(Debug)]
pub struct ProxyBody {
    inner: Inner,
    finish: Option<Finish>,
    bytes: u64,
    /// The request this body answers: its connection is busy until the body is done.
    active: Option<Active>,
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
            active: None,
        }
    }

    /// Runs `finish` with the bytes sent once the body ends or is dropped.
    pub fn on_finish(&mut self, finish: Finish) {
        self.finish = Some(finish);
    }

    /// Keeps the request counted as in flight on its connection until this body is done.
    pub fn hold(&mut self, active: Active) {
        self.active = Some(active);
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
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
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
            Poll::Ready(None) => {
                this.finish();
                this.active = None;
            }
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

/// A timeout between pieces of a body, armed only while a read is pending: a body that
/// arrives in one piece never touches the timer wheel, and one timer (reset, not remade)
/// serves every pause of the same body.
#[derive(Debug, Default)]
struct IdleTimer {
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl IdleTimer {
    /// Data arrived: the next pause starts its own count.
    fn progress(&mut self) {
        self.waiting = false;
    }

    /// The read is pending: whether it has been pending for `timeout` (registering the
    /// task to be woken when it will have).
    fn expired(&mut self, cx: &mut Context<'_>, timeout: Duration) -> bool {
        if !self.waiting {
            self.waiting = true;
            let deadline = tokio::time::Instant::now() + timeout;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        self.timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
    }

    /// Whether a pause has begun and not ended.
    fn waiting(&self) -> bool {
        self.waiting
    }
}

/// The pod stopped sending its response body.
#[derive(Debug, thiserror::Error)]
#[error("the pod sent nothing for {0:?} in the middle of its response")]
pub struct ReadTimeout(Duration);

/// A pod's response body, and what depends on how it ends: a pooled HTTP/1.1 connection
/// goes back to the pool once the body has been read to the end (never when the client went
/// away half-way: that connection is mid-response and is closed); a body the pod cut short
/// or stopped sending counts against the endpoint.
pub struct ResponseBody {
    inner: Incoming,
    done: bool,
    upstream: Arc<Upstream>,
    backend: Arc<Backend>,
    /// The pod address (none for ExternalName backends).
    endpoint: Option<SocketAddr>,
    /// The pooled connection the response came on.
    pooled: Option<Sender>,
    idle: IdleTimer,
    /// The longest pause in the body.
    read_timeout: Duration,
    /// Whether reading it to the end counts as the endpoint's success (not after a
    /// 502/503/504 head, which already counted as a failure).
    healthy_head: bool,
}

impl ResponseBody {
    pub(super) fn new(
        inner: Incoming,
        upstream: Arc<Upstream>,
        backend: Arc<Backend>,
        endpoint: Option<SocketAddr>,
        pooled: Option<Sender>,
        healthy_head: bool,
        read_timeout: Duration,
    ) -> Self {
        Self {
            inner,
            done: false,
            upstream,
            backend,
            endpoint,
            pooled,
            idle: IdleTimer::default(),
            read_timeout,
            healthy_head,
        }
    }

    fn failed(&mut self, failure: Failure) {
        self.pooled = None;
        self.healthy_head = false;
        if let Some(endpoint) = self.endpoint {
            self.upstream
                .balancer()
                .outliers()
                .failure(endpoint, &self.backend, failure);
        }
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("done", &self.done)
            .field("endpoint", &self.endpoint)
            .field("pooled", &self.pooled.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // hyper stops asking once the body says it is at its end, so "read to the end" is
        // judged here rather than when a frame says so.
        let whole = self.done || self.inner.is_end_stream();
        let Some(addr) = self.endpoint else {
            return;
        };
        if !whole {
            return;
        }
        // A whole response: the endpoint did its job (unless its head was a 502-504).
        if self.healthy_head {
            self.upstream.balancer().outliers().success(addr);
        }
        if let Some(sender) = self.pooled.take() {
            self.upstream.give_back(addr, sender);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.idle.progress();
                match frame {
                    None => {
                        this.done = true;
                        Poll::Ready(None)
                    }
                    Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
                    Some(Err(error)) => {
                        // Cut short: the connection is in no state to reuse, and the pod
                        // failed this request.
                        debug!(endpoint = ?this.endpoint, %error, "upstream response body failed");
                        this.failed(Failure::Reset);
                        Poll::Ready(Some(Err(error.into())))
                    }
                }
            }
            Poll::Pending => {
                let timeout = this.read_timeout;
                if this.idle.expired(cx, timeout) {
                    this.upstream.metrics().timeout(&this.backend.id);
                    this.failed(Failure::Timeout);
                    return Poll::Ready(Some(Err(Box::new(ReadTimeout(timeout)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why the client's request body could not be sent on: the client's fault, never the pod's.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the client sent no request body data for {0:?}")]
    Timeout(Duration),
    #[error("malformed or incomplete request body")]
    Malformed(#[source] hyper::Error),
}

/// How far sending a request body to the pod has got: the forwarder's deadline while the
/// body is on its way (`--upstream-send-timeout`, then `--upstream-timeout` from its end).
#[derive(Debug, Default)]
pub struct Progress {
    /// Milliseconds since [`epoch`] of the last frame handed to the upstream connection.
    last: AtomicU64,
    state: AtomicU8,
}

/// Where a body on its way to the pod stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sending {
    /// Frames are being written; the pod must keep taking them.
    Sending,
    /// Waiting for the client (its own timeout applies).
    WaitingForClient,
    /// All of it was handed to the connection at `last`.
    Done,
}

/// The process's clock origin for times kept in atomics (milliseconds since it).
pub(super) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds since [`epoch`].
pub(super) fn millis_now() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Progress {
    pub fn new() -> Arc<Self> {
        let progress = Arc::new(Self::default());
        progress.last.store(millis_now(), Ordering::Relaxed);
        progress
    }

    fn note(&self, state: Sending) {
        self.last.store(millis_now(), Ordering::Relaxed);
        self.state.store(state as u8, Ordering::Release);
    }

    /// The state, and when it last changed.
    pub fn get(&self) -> (Sending, Instant) {
        let state = match self.state.load(Ordering::Acquire) {
            0 => Sending::Sending,
            1 => Sending::WaitingForClient,
            _ => Sending::Done,
        };
        let at = epoch() + Duration::from_millis(self.last.load(Ordering::Relaxed));
        (state, at)
    }
}

/// The client's request body with its size limit and idle timeout.
#[derive(Debug)]
pub struct ClientBody {
    /// None: a request wicket makes itself, without a body (an error page).
    inner: Option<Incoming>,
    received: u64,
    limit: u64,
    timeout: Duration,
    idle: IdleTimer,
    progress: Option<Arc<Progress>>,
}

impl ClientBody {
    /// `limit`: most bytes accepted (None: no limit); `idle`: longest pause between data.
    pub fn new(inner: Incoming, limit: Option<u64>, timeout: Duration) -> Self {
        Self {
            inner: Some(inner),
            received: 0,
            limit: limit.unwrap_or(u64::MAX),
            timeout,
            idle: IdleTimer::default(),
            progress: None,
        }
    }

    /// No body at all.
    pub fn empty() -> Self {
        Self {
            inner: None,
            received: 0,
            limit: 0,
            timeout: Duration::ZERO,
            idle: IdleTimer::default(),
            progress: None,
        }
    }

    /// Reports how sending goes to `progress` from now on.
    pub fn watch(&mut self, progress: Arc<Progress>) {
        self.progress = Some(progress);
    }

    fn note(&self, state: Sending) {
        if let Some(p) = &self.progress {
            p.note(state);
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle.progress();
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.received > this.limit {
                        return Poll::Ready(Some(Err(ClientBodyError::TooLarge {
                            limit: this.limit,
                        })));
                    }
                }
                // hyper does not ask for more once the body says it is at its end.
                this.note(if this.inner.as_ref().is_none_or(Body::is_end_stream) {
                    Sending::Done
                } else {
                    Sending::Sending
                });
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                Poll::Ready(Some(Err(ClientBodyError::Malformed(error))))
            }
            Poll::Ready(None) => {
                this.note(Sending::Done);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !this.idle.waiting() {
                    this.note(Sending::WaitingForClient);
                }
                if this.idle.expired(cx, this.timeout) {
                    return Poll::Ready(Some(Err(ClientBodyError::Timeout(this.timeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

/// The request body sent to the pod.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Option<ClientBody>,
    /// Set once a frame was asked for: from then on the body cannot be replayed.
    polled: bool,
    reclaim: Option<oneshot::Sender<ClientBody>>,
}

/// Receives the body back if it was never read.
pub type Reclaim = oneshot::Receiver<ClientBody>;

impl UpstreamBody {
    pub fn empty() -> Self {
        Self {
            inner: None,
            polled: false,
            reclaim: None,
        }
    }

    /// Wraps a client body; the receiver gets it back if the body is dropped unread.
    pub fn reclaimable(body: ClientBody) -> (Self, Reclaim) {
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
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reports_its_state_and_when_it_changed() {
        let p = Progress::new();
        let (state, at) = p.get();
        assert_eq!(state, Sending::Sending);
        assert!(at.elapsed() < Duration::from_secs(5));
        p.note(Sending::WaitingForClient);
        assert_eq!(p.get().0, Sending::WaitingForClient);
        p.note(Sending::Done);
        assert_eq!(p.get().0, Sending::Done);
    }
}
