//! Client connections: what the handler knows about each one, and the rules that close
//! them.
//!
//! Every accepted connection is registered with a [`Connections`] registry — one for the
//! HTTP and HTTPS listeners together, one for the admin listener — from the moment it is
//! accepted (before any PROXY header or TLS handshake) until its last user
//! lets go of it (a WebSocket tunnel keeps it). The registry closes a connection that
//!
//! * sends no complete request head within `client_header_timeout` of being accepted
//!   (silent and slowloris clients),
//! * stays idle (no request in flight) for `keepalive_timeout` after a request,
//! * is idle when the listener is full and a new client arrives (the oldest idle ones go
//!   first, so clients that hold connections without sending requests cannot starve
//!   others), or
//! * is still open when shutdown drains the listener.
//!
//! The request path pays for this with two atomic counters per request (in flight, last
//! active); one reaper task per registry does the clock work, scanning the registry on a
//! coarse tick instead of arming a timer per connection or per request.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::task::AtomicWaker;
use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::headers;
use crate::admin::metrics::Metrics;

/// Most idle connections closed at once when a full listener makes room for a new client:
/// one scan of the registry then serves several new clients (nginx drains 32 at a time).
const EVICT_BATCH: usize = 32;
/// A small listener closes fewer at a time: one per this many connections of its limit.
const EVICT_SHARE: usize = 512;
/// Bounds of the reaper's tick: fine enough for short test timeouts, never busier than
/// needed for the long production ones.
const MIN_TICK: Duration = Duration::from_millis(5);
const MAX_TICK: Duration = Duration::from_secs(1);

/// The timeouts that close client connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// From accept to the first complete request head.
    pub header: Duration,
    /// From the end of a request to the next request head.
    pub keepalive: Duration,
    /// How long a write to the client may stay blocked (a client that stops reading).
    pub send: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        Self {
            header: Duration::from_secs(60),
            keepalive: Duration::from_secs(75),
            send: Duration::from_secs(60),
        }
    }
}

/// What the handler knows about the downstream connection, with the forwarding header
/// values that depend on it made once per connection rather than once per request.
#[derive(Debug)]
pub struct ConnInfo {
    /// The client: the TCP peer, or the source a PROXY protocol header named.
    pub peer: SocketAddr,
    /// The address the client connected to (a PROXY header's destination, if any).
    pub local: SocketAddr,
    pub tls: bool,
    /// Whether `peer` is a trusted proxy, whose forwarding headers are believed.
    pub trusted: bool,
    /// The client address as header text (X-Real-IP, X-Forwarded-For).
    pub client: HeaderValue,
    /// The port the client connected to (X-Forwarded-Port).
    pub port: HeaderValue,
    /// The certificate the client sent in the handshake (hosts with `auth-tls-*` ask).
    pub peer_cert: Option<Arc<PeerCert>>,
    /// The TLS server name the client asked for (lowercase), if it sent one.
    pub sni: Option<Box<str>>,
    tracked: Arc<Tracked>,
}

/// A client certificate chain, with the last check made of it (per connection, not per
/// request: checking a chain costs tens of microseconds).
#[derive(Debug)]
pub struct PeerCert {
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The subject DN (RFC 2253), for `auth-tls-match-cn`.
    pub subject: String,
    /// `ssl-client-subject-dn` and `ssl-client-issuer-dn`, made once per connection.
    pub subject_header: Option<http::HeaderValue>,
    pub issuer_header: Option<http::HeaderValue>,
    /// `ssl-client-cert`, made the first time a request asks for it.
    escaped: std::sync::OnceLock<Option<http::HeaderValue>>,
    /// The last check: against which settings ([`crate::model::ClientAuth::id`]), and what
    /// it found.
    checked: std::sync::Mutex<Option<(u64, crate::model::Verdict)>>,
}

impl PeerCert {
    pub fn new(chain: &[rustls::pki_types::CertificateDer<'_>]) -> Option<Self> {
        use x509_parser::prelude::FromDer;
        let leaf = chain.first()?;
        let (subject, issuer) = match x509_parser::certificate::X509Certificate::from_der(leaf) {
            Ok((_, cert)) => (
                crate::model::rfc2253(cert.subject()),
                crate::model::rfc2253(cert.issuer()),
            ),
            Err(_) => (String::new(), String::new()),
        };
        Some(Self {
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
            subject_header: http::HeaderValue::from_str(&subject).ok(),
            issuer_header: http::HeaderValue::from_str(&issuer).ok(),
            subject,
            escaped: std::sync::OnceLock::new(),
            checked: std::sync::Mutex::new(None),
        })
    }

    /// The check of this chain against `auth`'s CA bundle, made once per connection.
    pub fn verdict(&self, auth: &crate::model::ClientAuth) -> crate::model::Verdict {
        let mut checked = self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((id, verdict)) = checked.as_ref() {
            if *id == auth.id {
                return verdict.clone();
            }
        }
        let verdict = auth.check(&self.chain);
        *checked = Some((auth.id, verdict.clone()));
        verdict
    }

    /// `ssl-client-cert`: the leaf as PEM, URL-encoded (nginx's `$ssl_client_escaped_cert`),
    /// made once per connection.
    pub fn escaped_pem(&self) -> Option<http::HeaderValue> {
        self.escaped
            .get_or_init(|| http::HeaderValue::from_str(&self.encode_pem()).ok())
            .clone()
    }

    fn encode_pem(&self) -> String {
        use base64::Engine as _;
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let Some(leaf) = self.chain.first() else {
            return String::new();
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(leaf.as_ref());
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or(""));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        let mut out = String::with_capacity(pem.len() * 3 / 2);
        for b in pem.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~/+=".contains(&b) {
                out.push(b as char);
            } else {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
        out
    }
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, local: SocketAddr, tls: bool, tracked: Arc<Tracked>) -> Self {
        Self {
            peer,
            local,
            tls,
            trusted: false,
            client: headers::ip_value(peer.ip()),
            port: HeaderValue::from(local.port()),
            peer_cert: None,
            sni: None,
            tracked,
        }
    }

    /// The server name of a TLS connection.
    pub fn with_sni(mut self, sni: Option<&str>) -> Self {
        self.sni = sni.map(|s| s.to_ascii_lowercase().into_boxed_str());
        self
    }

    /// The client certificate of a TLS connection.
    pub fn with_peer_cert(mut self, cert: Option<PeerCert>) -> Self {
        self.peer_cert = cert.map(Arc::new);
        self
    }

    /// Marks the peer as a trusted proxy (its forwarding headers are believed).
    pub fn with_trust(mut self, trusted: bool) -> Self {
        self.trusted = trusted;
        self
    }

    pub fn tracked(&self) -> &Arc<Tracked> {
        &self.tracked
    }
}

/// A client's TCP stream: bytes already read from it (past a PROXY header) are served
/// first, and a write the client leaves blocked is noted for the send timeout. Without a
/// prefix and with the client reading, it is the stream itself, for a length check per
/// read and a flag check per write.
#[derive(Debug)]
pub struct ClientIo {
    prefix: Bytes,
    inner: TcpStream,
    tracked: Option<Arc<Tracked>>,
    blocked: bool,
}

impl ClientIo {
    pub fn new(inner: TcpStream) -> Self {
        Self::with_prefix(inner, Bytes::new())
    }

    pub fn with_prefix(inner: TcpStream, prefix: Bytes) -> Self {
        Self {
            prefix,
            inner,
            tracked: None,
            blocked: false,
        }
    }

    /// Puts `bytes` back in front of what is still to be read (a ClientHello read to
    /// learn its SNI, for the handshake or the relay to read again).
    pub fn unread(&mut self, bytes: Bytes) {
        if self.prefix.is_empty() {
            self.prefix = bytes;
        } else {
            let mut joined = bytes::BytesMut::with_capacity(bytes.len() + self.prefix.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(&self.prefix);
            self.prefix = joined.freeze();
        }
    }

    /// Reports writes the client leaves blocked to its connection's registry.
    pub fn watch(&mut self, tracked: Arc<Tracked>) {
        self.tracked = Some(tracked);
    }

    fn wrote<T>(&mut self, polled: &Poll<io::Result<T>>) {
        let blocked = polled.is_pending();
        if blocked != self.blocked {
            self.blocked = blocked;
            if let Some(tracked) = &self.tracked {
                tracked.write_blocked(blocked);
            }
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Signals to a connection, as bits: each is acted on once.
pub mod signal {
    /// HTTP/2 only: send GOAWAY, finish open streams, close (the shutdown delay).
    pub const GO_AWAY: u8 = 1;
    /// Finish the request in flight, if any, then close; HTTP/2 sends GOAWAY.
    pub const DRAIN: u8 = 2;
    /// Close now.
    pub const CLOSE: u8 = 4;
}

/// One open connection's state, shared by its task, its requests and the registry.
#[derive(Debug)]
pub struct Tracked {
    id: u64,
    /// The listener it came in on (metrics label).
    listener: &'static str,
    registry: Arc<Connections>,
    in_flight: AtomicU32,
    /// The tick at which the connection last became idle (accept, or a request's end).
    idle_since: AtomicU32,
    /// Whether a request head was ever received (keep-alive timeout) or not (header timeout).
    served: AtomicBool,
    h2: AtomicBool,
    /// Chosen to close by a full listener (counted until it is gone).
    evicted: AtomicBool,
    /// The tick (plus one) since which a write to the client has been blocked; 0: none is.
    write_blocked: AtomicU32,
    signals: AtomicU8,
    waker: AtomicWaker,
}

impl Tracked {
    /// Requests in flight right now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether the listener asked its connections to finish (shutdown is under way).
    pub fn draining(&self) -> bool {
        self.registry.draining.load(Ordering::Relaxed)
    }

    /// Asks this connection to act on `bits` (see [`signal`]).
    pub fn signal(&self, bits: u8) {
        let before = self.signals.fetch_or(bits, Ordering::AcqRel);
        if before | bits != before {
            self.waker.wake();
        }
    }

    /// Signals not yet handled, registering the task for the next ones. `handled` is the
    /// caller's record of the bits it has acted on.
    pub fn poll_signals(&self, cx: &mut Context<'_>, handled: &mut Option<u8>) -> u8 {
        let seen = handled.unwrap_or(0);
        let now = self.signals.load(Ordering::Acquire);
        if handled.is_some() && now == seen {
            return 0;
        }
        // First poll, or a signal arrived (its wake took the waker): register, then look
        // again so a signal sent in between is not lost.
        self.waker.register(cx.waker());
        let now = self.signals.load(Ordering::Acquire);
        *handled = Some(now);
        now & !seen
    }

    /// Whether the connection was told to close now.
    pub fn closing(&self) -> bool {
        self.signals.load(Ordering::Acquire) & signal::CLOSE != 0
    }

    /// A request starts on this connection; it ends when the guard drops.
    pub fn begin(self: &Arc<Self>, h2: bool) -> Active {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if !self.served.load(Ordering::Relaxed) {
            self.served.store(true, Ordering::Relaxed);
        }
        if h2 && !self.h2.load(Ordering::Relaxed) {
            self.h2.store(true, Ordering::Relaxed);
        }
        Active(self.clone())
    }

    pub fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
    }

    /// A write to the client blocked (the client is not reading), or went through.
    fn write_blocked(&self, blocked: bool) {
        let since = if blocked {
            self.registry
                .tick
                .load(Ordering::Relaxed)
                .wrapping_add(1)
                .max(1)
        } else {
            0
        };
        self.write_blocked.store(since, Ordering::Relaxed);
    }

    /// Ticks a write to the client has been blocked, if one is.
    fn blocked_ticks(&self, now: u32) -> Option<u32> {
        match self.write_blocked.load(Ordering::Relaxed) {
            0 => None,
            since => Some(now.wrapping_sub(since.wrapping_sub(1))),
        }
    }

    fn end(&self) {
        self.idle_since.store(
            self.registry.tick.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Ticks idle, or None while a request is in flight.
    fn idle_ticks(&self, now: u32) -> Option<u32> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(now.wrapping_sub(self.idle_since.load(Ordering::Relaxed)))
    }

    /// Resolves when the connection is told to close (WebSocket tunnels wait on it).
    pub fn closed(self: &Arc<Self>) -> Closed {
        Closed(self.clone())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.registry
            .unregister(self.id, self.evicted.load(Ordering::Relaxed));
    }
}

/// A request in flight: the connection is not idle while this lives.
#[derive(Debug)]
pub struct Active(Arc<Tracked>);

impl Active {
    pub fn conn(&self) -> &Arc<Tracked> {
        &self.0
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// See [`Tracked::closed`].
pub struct Closed(Arc<Tracked>);

impl Future for Closed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.closing() {
            return Poll::Ready(());
        }
        self.0.waker.register(cx.waker());
        if self.0.closing() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Runs a connection's future until it ends (`Some(output)`) or the connection is told to
/// close (`None`: the future is dropped, which closes the socket). Any other signal goes to
/// `on_signal`, which passes it on to the future (a hyper connection shuts down gracefully).
pub struct Supervised<F, S> {
    tracked: Arc<Tracked>,
    handled: Option<u8>,
    fut: Pin<Box<F>>,
    on_signal: S,
}

impl<F, S> Supervised<F, S>
where
    F: Future,
    S: FnMut(Pin<&mut F>, &Tracked, u8) + Unpin,
{
    pub fn new(tracked: Arc<Tracked>, fut: F, on_signal: S) -> Self {
        Self {
            tracked,
            handled: None,
            fut: Box::pin(fut),
            on_signal,
        }
    }
}

impl<F, S> Future for Supervised<F, S>
where
    F: Future,
    S: FnMut(Pin<&mut F>, &Tracked, u8) + Unpin,
{
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let new = this.tracked.poll_signals(cx, &mut this.handled);
        if new != 0 {
            if this.tracked.closing() {
                return Poll::Ready(None);
            }
            (this.on_signal)(this.fut.as_mut(), &this.tracked, new);
        }
        this.fut.as_mut().poll(cx).map(Some)
    }
}

/// The open connections of a set of listeners, with their limit.
#[derive(Debug)]
pub struct Connections {
    limit: usize,
    timeouts: ClientTimeouts,
    tick_len: Duration,
    tick: AtomicU32,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Weak<Tracked>, foldhash::fast::RandomState>>,
    count: AtomicUsize,
    /// Connections told to close to make room, not gone yet.
    evicting: AtomicUsize,
    /// Wakes the accept loop when a connection goes, and the drain when the last one does.
    gone: Notify,
    /// Shutdown has begun: HTTP/1.1 responses carry `Connection: close`.
    draining: AtomicBool,
    /// Whether the operator was told the listener is full (once per episode).
    warned_full: AtomicBool,
    /// Where closed connections are counted.
    metrics: Option<Arc<Metrics>>,
}

impl Connections {
    /// At most `limit` connections, closed by `timeouts`; closes are counted in `metrics`.
    pub fn new(limit: usize, timeouts: ClientTimeouts, metrics: Option<Arc<Metrics>>) -> Arc<Self> {
        let shortest = timeouts.header.min(timeouts.keepalive);
        let tick_len = (shortest / 8).clamp(MIN_TICK, MAX_TICK);
        Arc::new(Self {
            limit: limit.max(1),
            timeouts,
            tick_len,
            tick: AtomicU32::new(0),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::default()),
            count: AtomicUsize::new(0),
            evicting: AtomicUsize::new(0),
            gone: Notify::new(),
            draining: AtomicBool::new(false),
            warned_full: AtomicBool::new(false),
            metrics,
        })
    }

    fn closed(&self, tracked: &Tracked, reason: &'static str) {
        debug!(
            listener = tracked.listener,
            reason, "closing a client connection"
        );
        if let Some(metrics) = &self.metrics {
            metrics.connection_closed(tracked.listener, reason);
        }
    }

    /// Registers a connection newly accepted on `listener`.
    pub fn register(self: &Arc<Self>, listener: &'static str) -> Arc<Tracked> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracked = Arc::new(Tracked {
            id,
            listener,
            registry: self.clone(),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU32::new(self.tick.load(Ordering::Relaxed)),
            served: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            write_blocked: AtomicU32::new(0),
            signals: AtomicU8::new(0),
            waker: AtomicWaker::new(),
        });
        self.lock().insert(id, Arc::downgrade(&tracked));
        self.count.fetch_add(1, Ordering::AcqRel);
        tracked
    }

    fn unregister(&self, id: u64, evicted: bool) {
        self.lock().remove(&id);
        if evicted {
            self.evicting.fetch_sub(1, Ordering::AcqRel);
        }
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.gone.notify_waiters();
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<Tracked>, foldhash::fast::RandomState>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn live(&self) -> Vec<Arc<Tracked>> {
        self.lock().values().filter_map(Weak::upgrade).collect()
    }

    /// Whether more connections are open than the limit allows (those being closed to
    /// make room do not count).
    pub fn over_limit(&self) -> bool {
        let open = self.count.load(Ordering::Acquire);
        let leaving = self.evicting.load(Ordering::Acquire);
        open.saturating_sub(leaving) > self.limit
    }

    /// Closes the longest-idle connections (the earliest accepted among equals) to make
    /// room for `newcomer`. Returns how many were chosen.
    pub fn evict_idle(&self, newcomer: &Tracked) -> usize {
        let now = self.tick.load(Ordering::Relaxed);
        let mut idle: Vec<(u32, Arc<Tracked>)> = self
            .live()
            .into_iter()
            .filter(|t| t.id != newcomer.id && !t.evicted.load(Ordering::Relaxed))
            .filter_map(|t| t.idle_ticks(now).map(|ticks| (ticks, t)))
            .collect();
        if idle.is_empty() {
            if !self.warned_full.swap(true, Ordering::Relaxed) {
                warn!(
                    limit = self.limit,
                    "connection limit reached and every connection has a request in flight; new clients wait"
                );
            }
            return 0;
        }
        let batch = (self.limit / EVICT_SHARE).clamp(1, EVICT_BATCH);
        let n = idle.len().min(batch);
        if n < idle.len() {
            idle.select_nth_unstable_by(n - 1, |a, b| b.0.cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
        }
        for (_, tracked) in &idle[..n] {
            if !tracked.evicted.swap(true, Ordering::AcqRel) {
                self.evicting.fetch_add(1, Ordering::AcqRel);
                self.closed(tracked, "evicted");
                tracked.signal(signal::CLOSE);
            }
        }
        if !self.warned_full.swap(true, Ordering::Relaxed) {
            warn!(
                limit = self.limit,
                closed = n,
                "connection limit reached; closing the longest-idle connections for new clients"
            );
        }
        debug!(closed = n, "closed idle connections to make room");
        n
    }

    /// Waits until a connection goes (or `max` passes: connections also become idle).
    pub async fn wait_for_room(&self, max: Duration) {
        let gone = self.gone.notified();
        if !self.over_limit() {
            return;
        }
        let _ = tokio::time::timeout(max, gone).await;
    }

    /// Closes connections that waited too long for a request head or stayed idle too long.
    fn reap(&self) {
        let now = self.tick.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let header = self.ticks(self.timeouts.header);
        let keepalive = self.ticks(self.timeouts.keepalive);
        let send = self.ticks(self.timeouts.send);
        for tracked in self.live() {
            if tracked.closing() {
                continue;
            }
            // A client that stopped reading what it asked for pins the connection, its
            // response and the pod's connection: closed after the send timeout.
            if tracked
                .blocked_ticks(now)
                .is_some_and(|blocked| blocked >= send)
            {
                self.closed(&tracked, "send_timeout");
                tracked.signal(signal::CLOSE);
                continue;
            }
            let Some(idle) = tracked.idle_ticks(now) else {
                continue;
            };
            let served = tracked.served.load(Ordering::Relaxed);
            let (limit, reason) = if served {
                (keepalive, "keepalive_timeout")
            } else {
                (header, "header_timeout")
            };
            // An idle HTTP/2 connection is told with GOAWAY; anything else has nothing to
            // finish and is closed.
            let bits = if tracked.is_h2() {
                signal::DRAIN
            } else {
                signal::CLOSE
            };
            if idle >= limit && tracked.signals.load(Ordering::Acquire) & bits == 0 {
                self.closed(&tracked, reason);
                tracked.signal(bits);
            }
        }
        if !self.over_limit() {
            self.warned_full.store(false, Ordering::Relaxed);
        }
    }

    /// Ticks that cover `d`, rounded up (at least one).
    fn ticks(&self, d: Duration) -> u32 {
        let n = d.as_nanos().div_ceil(self.tick_len.as_nanos().max(1));
        u32::try_from(n).unwrap_or(u32::MAX).max(1)
    }

    /// Runs the timeouts until `stop` resolves.
    pub async fn run_reaper(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.tick_len);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => self.reap(),
                () = &mut stop => return,
            }
        }
    }

    /// The shutdown delay: HTTP/1.1 responses from now on carry `Connection: close`, and
    /// HTTP/2 connections get GOAWAY, so clients move to other replicas.
    pub fn go_away(&self) {
        self.draining.store(true, Ordering::Relaxed);
        for tracked in self.live() {
            if tracked.is_h2() {
                tracked.signal(signal::GO_AWAY);
            }
        }
    }

    /// Lets every connection finish its requests and close: idle ones close at once.
    /// Returns once none is left, or after `timeout` (the rest are closed then); true if
    /// all finished in time.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.draining.store(true, Ordering::Relaxed);
        for tracked in self.live() {
            let idle = tracked.in_flight() == 0 && !tracked.is_h2();
            tracked.signal(if idle { signal::CLOSE } else { signal::DRAIN });
        }
        let finished = tokio::time::timeout(timeout, self.until_empty())
            .await
            .is_ok();
        if !finished {
            for tracked in self.live() {
                tracked.signal(signal::CLOSE);
            }
            // Closed connections go as soon as their tasks run; do not wait on stragglers.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.until_empty()).await;
        }
        finished
    }

    async fn until_empty(&self) {
        loop {
            let gone = self.gone.notified();
            if self.open() == 0 {
                return;
            }
            gone.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts(ms: u64) -> ClientTimeouts {
        ClientTimeouts {
            header: Duration::from_millis(ms),
            keepalive: Duration::from_millis(ms),
            send: Duration::from_millis(ms),
        }
    }

    #[test]
    fn a_connection_is_registered_until_its_last_user_lets_go() {
        let conns = Connections::new(4, ClientTimeouts::default(), None);
        let a = conns.register("test");
        let b = conns.register("test");
        assert_eq!(conns.open(), 2);
        let request = a.begin(false);
        drop(a);
        assert_eq!(
            conns.open(),
            2,
            "a request still holds the first connection"
        );
        drop(request);
        assert_eq!(conns.open(), 1);
        drop(b);
        assert_eq!(conns.open(), 0);
    }

    #[test]
    fn a_full_listener_closes_the_longest_idle_connection_not_busy_ones() {
        let conns = Connections::new(3, timeouts(60_000), None);
        let busy = conns.register("test");
        let _request = busy.begin(false);
        conns.reap();
        let old_idle = conns.register("test");
        conns.reap();
        conns.reap();
        let new_idle = conns.register("test");
        assert!(!conns.over_limit());
        let newcomer = conns.register("test");
        assert!(conns.over_limit());
        assert_eq!(conns.evict_idle(&newcomer), 1);
        assert!(old_idle.closing(), "the longest idle goes first");
        assert!(!new_idle.closing() && !newcomer.closing() && !busy.closing());
        assert!(!conns.over_limit(), "a connection being closed makes room");
        drop(old_idle);
        assert_eq!(conns.open(), 3);
        drop(new_idle);
        drop(newcomer);
        let another = conns.register("test");
        let _second = another.begin(false);
        let third = conns.register("test");
        let _third = third.begin(false);
        let fourth = conns.register("test");
        let _fourth = fourth.begin(false);
        assert!(conns.over_limit());
        assert_eq!(
            conns.evict_idle(&fourth),
            0,
            "busy connections are never chosen"
        );
    }

    #[test]
    fn the_reaper_closes_silent_and_idle_connections_but_not_busy_ones() {
        let conns = Connections::new(8, timeouts(80), None);
        let silent = conns.register("test");
        let busy = conns.register("test");
        let request = busy.begin(false);
        for _ in 0..7 {
            conns.reap();
        }
        assert!(!silent.closing(), "not yet: 80 ms is 8 ticks of 10 ms");
        conns.reap();
        assert!(silent.closing());
        assert!(!busy.closing());
        drop(request);
        for _ in 0..7 {
            conns.reap();
        }
        assert!(
            !busy.closing(),
            "the keep-alive timeout counts from the request's end"
        );
        conns.reap();
        assert!(busy.closing());
    }

    #[test]
    fn an_idle_http2_connection_is_sent_goaway_rather_than_cut() {
        let conns = Connections::new(8, timeouts(80), None);
        let h2 = conns.register("test");
        drop(h2.begin(true));
        for _ in 0..8 {
            conns.reap();
        }
        assert!(!h2.closing());
        assert_eq!(h2.signals.load(Ordering::Relaxed), signal::DRAIN);
    }
}
