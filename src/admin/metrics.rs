//! Prometheus metrics (`GET /metrics` on the admin port, OpenMetrics text).
//!
//! Every name starts with `wicket_` and follows Prometheus conventions (`_total` counters,
//! `_seconds` units). Label values are bounded by configuration, never by traffic: a request
//! that matched no route is counted with empty namespace, ingress and service; methods
//! outside the standard ones are `OTHER`; statuses are classes (`2xx` ...). So the size of
//! `/metrics` depends on the number of routes and backends, whatever clients send.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::model::{Owner, Snapshot};

/// Request duration buckets: 1 ms to ~16 s.
fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 15)
}

/// Who a request went to: labels `namespace`, `ingress`, `service` (empty when unrouted).
/// The names and their hash come from the routing table, made once per table.
#[derive(Clone, Debug, Default)]
pub struct RouteLabels(Option<Arc<Owner>>);

impl RouteLabels {
    pub fn new(owner: Option<&Arc<Owner>>) -> Self {
        Self(owner.cloned())
    }

    pub fn namespace(&self) -> &str {
        self.0.as_ref().map_or("", |o| &o.namespace)
    }

    pub fn ingress(&self) -> &str {
        self.0.as_ref().map_or("", |o| &o.ingress)
    }

    pub fn service(&self) -> &str {
        self.0.as_ref().map_or("", |o| &o.service)
    }

    fn hash_value(&self) -> u64 {
        self.0.as_ref().map_or(0, |o| o.hash)
    }
}

impl PartialEq for RouteLabels {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            (None, None) => true,
            _ => false,
        }
    }
}
impl Eq for RouteLabels {}
impl Hash for RouteLabels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash_value());
    }
}

impl EncodeLabelSet for RouteLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        [
            ("namespace", self.namespace()),
            ("ingress", self.ingress()),
            ("service", self.service()),
        ]
        .encode(encoder)
    }
}

/// A request's labels: its route, method and status class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLabels {
    pub route: RouteLabels,
    pub method: &'static str,
    pub status: &'static str,
}

impl Hash for RequestLabels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // One number: the route's precomputed hash mixed with the (static) label strings'
        // addresses, which are fixed for the life of the process.
        let method = self.method.as_ptr() as u64;
        let status = self.status.as_ptr() as u64;
        state.write_u64(self.route.hash_value() ^ method.rotate_left(17) ^ status.rotate_left(41));
    }
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        self.route.encode(encoder)?;
        [("method", self.method), ("status", self.status)].encode(encoder)
    }
}

/// The standard methods by name; anything else is `OTHER` (a client cannot create series).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

pub fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BackendLabel {
    backend: Arc<str>,
}

impl EncodeLabelSet for BackendLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        [("backend", self.backend.as_ref())].encode(encoder)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ListenerLabel {
    listener: &'static str,
}

impl EncodeLabelSet for ListenerLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        [("listener", self.listener)].encode(encoder)
    }
}

/// One endpoint of a backend out of rotation, and why.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EjectedLabels {
    backend: Arc<str>,
    endpoint: SocketAddr,
    reason: &'static str,
}

impl EncodeLabelSet for EjectedLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        let endpoint = self.endpoint.to_string();
        [
            ("backend", self.backend.as_ref()),
            ("endpoint", endpoint.as_str()),
            ("reason", self.reason),
        ]
        .encode(encoder)
    }
}

/// Why wicket closed a client connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClosedLabels {
    listener: &'static str,
    reason: &'static str,
}

impl EncodeLabelSet for ClosedLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        [("listener", self.listener), ("reason", self.reason)].encode(encoder)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ReasonLabel {
    reason: &'static str,
}

impl EncodeLabelSet for ReasonLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        [("reason", self.reason)].encode(encoder)
    }
}

/// Every metric family, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    connect_errors: Family<BackendLabel, Counter>,
    retries: Family<BackendLabel, Counter>,
    cross_zone: Family<BackendLabel, Counter>,
    timeouts: Family<BackendLabel, Counter>,
    endpoints: Family<BackendLabel, Gauge>,
    pub tls_handshakes: Counter,
    pub tls_handshake_failures: Counter,
    connections: Family<ListenerLabel, Gauge>,
    connections_closed: Family<ClosedLabels, Counter>,
    ejections: Family<BackendLabel, Counter>,
    ejected: Family<EjectedLabels, Gauge>,
    generation: Gauge,
    last_publish: Gauge<f64, std::sync::atomic::AtomicU64>,
    propagation: Histogram,
    problems: Family<ReasonLabel, Gauge>,
    /// The last minute per pod address, for the dashboard.
    traffic: super::traffic::Traffic,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wicket");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route (namespace, ingress, service), method and status class",
            requests.clone(),
        );
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(duration_buckets())
        });
        registry.register_with_unit(
            "request_duration",
            "Time from the request head to the end of the response body",
            Unit::Seconds,
            duration.clone(),
        );
        let connect_errors = Family::<BackendLabel, Counter>::default();
        registry.register(
            "upstream_connect_errors",
            "Connections to a pod that failed (refused, unreachable, timed out)",
            connect_errors.clone(),
        );
        let retries = Family::<BackendLabel, Counter>::default();
        registry.register(
            "upstream_retries",
            "Requests sent again to another endpoint after a connect failure",
            retries.clone(),
        );
        let cross_zone = Family::<BackendLabel, Counter>::default();
        registry.register(
            "upstream_cross_zone_requests",
            "Requests sent to an endpoint in another zone than this replica's (both zones known)",
            cross_zone.clone(),
        );
        let timeouts = Family::<BackendLabel, Counter>::default();
        registry.register(
            "upstream_timeouts",
            "Requests whose pod did not answer in time (504)",
            timeouts.clone(),
        );
        let endpoints = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "backend_usable_endpoints",
            "Endpoints of a backend that may take traffic now",
            endpoints.clone(),
        );
        let tls_handshakes = Counter::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes completed",
            tls_handshakes.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed",
            tls_handshake_failures.clone(),
        );
        let connections = Family::<ListenerLabel, Gauge>::default();
        registry.register(
            "open_connections",
            "Client connections open now, by listener",
            connections.clone(),
        );
        let connections_closed = Family::<ClosedLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Client connections wicket closed, by listener and reason (header_timeout, keepalive_timeout, send_timeout, evicted, proxy_protocol)",
            connections_closed.clone(),
        );
        let ejections = Family::<BackendLabel, Counter>::default();
        registry.register(
            "endpoint_ejections",
            "Endpoints taken out of rotation after consecutive gateway failures",
            ejections.clone(),
        );
        let ejected = Family::<EjectedLabels, Gauge>::default();
        registry.register(
            "endpoint_ejected",
            "1 for each endpoint out of rotation (or on its trial request), with the last failure",
            ejected.clone(),
        );
        let generation = Gauge::default();
        registry.register(
            "snapshot_generation",
            "Generation of the routing table in force",
            generation.clone(),
        );
        let last_publish = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "snapshot_last_publish_timestamp_seconds",
            "When the routing table in force was published (Unix time)",
            last_publish.clone(),
        );
        let propagation = Histogram::new(duration_buckets());
        registry.register_with_unit(
            "snapshot_propagation",
            "Time from an object change being seen to the routing table with it being published",
            Unit::Seconds,
            propagation.clone(),
        );
        let problems = Family::<ReasonLabel, Gauge>::default();
        registry.register(
            "problems",
            "Problems in the routing table in force, by reason",
            problems.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            connect_errors,
            retries,
            cross_zone,
            timeouts,
            endpoints,
            tls_handshakes,
            tls_handshake_failures,
            connections,
            connections_closed,
            ejections,
            ejected,
            generation,
            last_publish,
            propagation,
            problems,
            traffic: super::traffic::Traffic::new(),
        }
    }

    /// The last minute of traffic per pod address (the dashboard's figures).
    pub fn traffic(&self) -> &super::traffic::Traffic {
        &self.traffic
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One answered request.
    pub fn request(
        &self,
        route: &RouteLabels,
        method: &Method,
        status: StatusCode,
        took: Duration,
    ) {
        let labels = RequestLabels {
            route: route.clone(),
            method: method_label(method),
            status: status_class(status),
        };
        self.requests.get_or_create(&labels).inc();
        self.duration
            .get_or_create(route)
            .observe(took.as_secs_f64());
    }

    pub fn connect_error(&self, backend: &Arc<str>) {
        self.connect_errors
            .get_or_create(&BackendLabel {
                backend: backend.clone(),
            })
            .inc();
    }

    pub fn retry(&self, backend: &Arc<str>) {
        self.retries
            .get_or_create(&BackendLabel {
                backend: backend.clone(),
            })
            .inc();
    }

    /// A request (attempt) sent to an endpoint in another zone.
    pub fn cross_zone(&self, backend: &Arc<str>) {
        self.cross_zone
            .get_or_create(&BackendLabel {
                backend: backend.clone(),
            })
            .inc();
    }

    pub fn timeout(&self, backend: &Arc<str>) {
        self.timeouts
            .get_or_create(&BackendLabel {
                backend: backend.clone(),
            })
            .inc();
    }

    /// The open-connections gauge of one listener (`http`, `https`, `admin`).
    pub fn connections(&self, listener: &'static str) -> Gauge {
        self.connections
            .get_or_create(&ListenerLabel { listener })
            .clone()
    }

    /// A client connection closed by wicket (`header_timeout`, `keepalive_timeout`,
    /// `evicted`, `proxy_protocol`).
    pub fn connection_closed(&self, listener: &'static str, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ClosedLabels { listener, reason })
            .inc();
    }

    /// An endpoint of `backend` was ejected for `reason`.
    pub fn endpoint_ejected(&self, backend: &Arc<str>, endpoint: SocketAddr, reason: &'static str) {
        self.ejections
            .get_or_create(&BackendLabel {
                backend: backend.clone(),
            })
            .inc();
        self.ejected
            .get_or_create(&EjectedLabels {
                backend: backend.clone(),
                endpoint,
                reason,
            })
            .set(1);
    }

    /// An ejected endpoint is back in rotation.
    pub fn endpoint_restored(
        &self,
        backend: &Arc<str>,
        endpoint: SocketAddr,
        reason: &'static str,
    ) {
        self.ejected.remove(&EjectedLabels {
            backend: backend.clone(),
            endpoint,
            reason,
        });
    }

    /// A change seen at `seen` was published now.
    pub fn propagated(&self, took: Duration) {
        self.propagation.observe(took.as_secs_f64());
    }

    /// Gauges that describe the table in force: generation, publish time, usable endpoints
    /// per backend, Problems per reason. Backends and reasons no longer present are removed.
    pub fn snapshot(&self, snapshot: &Snapshot) {
        self.generation
            .set(i64::try_from(snapshot.generation).unwrap_or(i64::MAX));
        if let Some(at) = snapshot.published_at {
            let unix = at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.last_publish.set(unix);
        }
        self.endpoints.clear();
        for backend in snapshot.table.backends() {
            let usable = backend.usable().count();
            self.endpoints
                .get_or_create(&BackendLabel {
                    backend: backend.id.clone(),
                })
                .set(i64::try_from(usable).unwrap_or(i64::MAX));
        }
        self.problems.clear();
        for problem in &snapshot.problems {
            self.problems
                .get_or_create(&ReasonLabel {
                    reason: problem.reason.as_str(),
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_never_come_from_the_request() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
        assert_eq!(status_class(StatusCode::NOT_FOUND), "4xx");
        assert_eq!(status_class(StatusCode::SWITCHING_PROTOCOLS), "1xx");

        let m = Metrics::new();
        for i in 0..1000 {
            let method = Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
            m.request(
                &RouteLabels::default(),
                &method,
                StatusCode::NOT_FOUND,
                Duration::from_millis(1),
            );
        }
        let text = m.encode();
        let series = text
            .lines()
            .filter(|l| l.starts_with("wicket_requests_total{"))
            .count();
        assert_eq!(series, 1, "{text}");
        assert!(text.contains(
            "wicket_requests_total{namespace=\"\",ingress=\"\",service=\"\",method=\"OTHER\",status=\"4xx\"} 1000"
        ), "{text}");
        assert!(text.ends_with("# EOF\n"), "OpenMetrics text");
    }
}
