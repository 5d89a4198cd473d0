//! Backends and endpoints: where a matched request goes.
//!
//! A backend is one Service port, resolved to the pod addresses that serve it (or, for an
//! `ExternalName` Service, to a DNS name). Which endpoints may take traffic is decided here,
//! once per snapshot, so the request path only picks among `usable` ones.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use serde::{Serialize, Serializer};

use super::ring::{Derived, Ring, Subsets};
use super::topology::{self, Hints, Locality, Selection, TrafficPolicy};

/// How the proxy talks to the pods of a backend (`appProtocol` on the Service port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 over TCP: the default.
    Http1,
    /// HTTP/2 with prior knowledge over TCP (`kubernetes.io/h2c`).
    H2c,
    /// HTTP/1.1 over TLS to the pod (`https`, backend-protocol `HTTPS`).
    Https,
    /// HTTP/2 over TLS to the pod (backend-protocol `GRPCS`).
    H2,
}

/// The Service port as the Ingress names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(name) => f.write_str(name),
        }
    }
}

impl Serialize for PortRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PortRef::Number(n) => s.serialize_u16(*n),
            PortRef::Name(name) => s.serialize_str(name),
        }
    }
}

/// One pod address of a backend with its EndpointSlice conditions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    #[serde(rename = "address")]
    pub addr: SocketAddr,
    /// `addr` as a URI authority, made once here so the request path does not format it.
    #[serde(skip)]
    pub authority: Authority,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// Whether this endpoint gets traffic now (see [`Backend::usable`]).
    pub usable: bool,
    /// The pod behind the address, from the slice's `targetRef`, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The node it runs on (`nodeName`), when known.
    #[serde(rename = "nodeName", skip_serializing_if = "Option::is_none")]
    pub node: Option<Arc<str>>,
    /// Its zone (the slice's `zone`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<Arc<str>>,
    /// The slice's topology hints for it.
    #[serde(skip_serializing_if = "Hints::is_empty")]
    pub hints: Hints,
    /// In another zone than this replica (both zones known): a request to it leaves the
    /// zone, and is counted.
    #[serde(rename = "otherZone", skip_serializing_if = "std::ops::Not::not")]
    pub remote_zone: bool,
}

impl Endpoint {
    pub fn new(addr: SocketAddr, ready: bool, serving: bool, terminating: bool) -> Self {
        Self {
            authority: authority_of(addr),
            addr,
            ready,
            serving,
            terminating,
            usable: false,
            pod: None,
            node: None,
            zone: None,
            hints: Hints::default(),
            remote_zone: false,
        }
    }
}

/// `SocketAddr`'s display form (`1.2.3.4:80`, `[::1]:80`) is always a valid authority.
/// One allocation: the text is handed to the authority without a copy.
fn authority_of(addr: SocketAddr) -> Authority {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(48);
    let _ = write!(text, "{addr}");
    match Authority::from_maybe_shared(bytes::Bytes::from(text)) {
        Ok(authority) => authority,
        // Unreachable: a socket address always prints as host:port.
        Err(_) => Authority::from_static("0.0.0.0:0"),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Destination {
    /// Pod addresses from the Service's EndpointSlices (or Endpoints).
    Endpoints {
        endpoints: Vec<Endpoint>,
        /// Indexes into `endpoints` of those that take traffic: the ready ones, else the
        /// serving-and-terminating ones (what kube-proxy does during a rolling update).
        #[serde(skip)]
        usable: Vec<u32>,
        /// True when `usable` holds terminating endpoints because none is ready.
        #[serde(rename = "terminatingFallback")]
        fallback: bool,
        /// Which endpoints this replica prefers (traffic policy, topology hints), and why.
        selection: Selection,
    },
    /// An `ExternalName` Service: a DNS name resolved at connect time.
    ExternalName {
        host: String,
        port: u16,
        #[serde(skip)]
        authority: Authority,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// `namespace/service:port`: the stable key for balancer state kept across snapshots.
    pub id: Arc<str>,
    pub namespace: Arc<str>,
    pub service: Arc<str>,
    /// The port as the Ingress wrote it.
    pub port: PortRef,
    /// The Service port number it resolved to.
    pub service_port: u16,
    pub protocol: UpstreamProtocol,
    /// `sessionAffinity: ClientIP` and its timeout.
    #[serde(serialize_with = "ser_affinity", rename = "clientIPAffinitySeconds")]
    pub affinity: Option<Duration>,
    pub destination: Destination,
    /// Hash rings and cookie tokens, built on first use by the routes that need them.
    #[serde(skip)]
    pub derived: Arc<Derived>,
}

fn ser_affinity<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_some(&d.as_secs()),
        None => s.serialize_none(),
    }
}

impl Backend {
    /// Endpoints that may take traffic now, in a stable order.
    pub fn usable(&self) -> impl Iterator<Item = &Endpoint> + '_ {
        let (endpoints, usable): (&[Endpoint], &[u32]) = match &self.destination {
            Destination::Endpoints {
                endpoints, usable, ..
            } => (endpoints, usable),
            Destination::ExternalName { .. } => (&[], &[]),
        };
        usable
            .iter()
            .filter_map(move |&i| endpoints.get(i as usize))
    }

    /// The `n`th usable endpoint (wrapping), for round robin without collecting.
    pub fn usable_nth(&self, n: usize) -> Option<&Endpoint> {
        match &self.destination {
            Destination::Endpoints {
                endpoints, usable, ..
            } if !usable.is_empty() => endpoints.get(usable[n % usable.len()] as usize),
            _ => None,
        }
    }

    /// The usable endpoints' hash ring (built on first use).
    pub fn ring(&self) -> &Ring {
        self.derived.ring.get_or_init(|| match &self.destination {
            Destination::Endpoints {
                endpoints, usable, ..
            } => Ring::new(endpoints, usable),
            Destination::ExternalName { .. } => Ring::new(&[], &[]),
        })
    }

    /// The usable endpoints in groups of `size` (built on first use; another size is
    /// built on each call, which only a second route asking another size of the same
    /// Service does).
    pub fn subsets(&self, size: usize) -> std::borrow::Cow<'_, Subsets> {
        let build = || match &self.destination {
            Destination::Endpoints {
                endpoints, usable, ..
            } => Subsets::new(endpoints, usable, size),
            Destination::ExternalName { .. } => Subsets::new(&[], &[], size),
        };
        let cached = self.derived.subsets.get_or_init(build);
        if cached.size == size.clamp(1, self.usable_count().max(1)) {
            std::borrow::Cow::Borrowed(cached)
        } else {
            std::borrow::Cow::Owned(build())
        }
    }

    /// The endpoint at `index` of `endpoints`.
    pub fn endpoint(&self, index: u32) -> Option<&Endpoint> {
        match &self.destination {
            Destination::Endpoints { endpoints, .. } => endpoints.get(index as usize),
            Destination::ExternalName { .. } => None,
        }
    }

    /// All endpoints, usable or not.
    pub fn endpoint_count(&self) -> usize {
        match &self.destination {
            Destination::Endpoints { endpoints, .. } => endpoints.len(),
            Destination::ExternalName { .. } => 0,
        }
    }

    /// Indexes of the usable endpoints.
    pub fn usable_indexes(&self) -> &[u32] {
        match &self.destination {
            Destination::Endpoints { usable, .. } => usable,
            Destination::ExternalName { .. } => &[],
        }
    }

    pub fn usable_count(&self) -> usize {
        match &self.destination {
            Destination::Endpoints { usable, .. } => usable.len(),
            Destination::ExternalName { .. } => 0,
        }
    }
}

/// Marks the usable endpoints: ready ones; when none is ready, the ones that are serving
/// and terminating. Returns the indexes and whether the fallback was used. (No traffic
/// policy and no topology: [`topology::select`] has those.)
pub fn select_usable(endpoints: &mut [Endpoint]) -> (Vec<u32>, bool) {
    let s = topology::select(endpoints, &TrafficPolicy::default(), &Locality::default());
    (s.usable, s.fallback)
}

impl Destination {
    pub fn external_name(host: String, port: u16) -> Result<Self, http::uri::InvalidUri> {
        let authority = Authority::try_from(format!("{host}:{port}").as_str())?;
        Ok(Destination::ExternalName {
            host,
            port,
            authority,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(last: u8, ready: bool, serving: bool, terminating: bool) -> Endpoint {
        Endpoint::new(
            SocketAddr::from(([10, 0, 0, last], 8080)),
            ready,
            serving,
            terminating,
        )
    }

    #[test]
    fn ready_endpoints_are_used_and_terminating_ones_are_not() {
        let mut eps = vec![ep(1, true, true, false), ep(2, false, true, true)];
        let (usable, fallback) = select_usable(&mut eps);
        assert_eq!(usable, vec![0]);
        assert!(!fallback);
        assert!(eps[0].usable && !eps[1].usable);
    }

    #[test]
    fn serving_terminating_endpoints_are_used_when_none_is_ready() {
        let mut eps = vec![
            ep(1, false, false, false),
            ep(2, false, true, true),
            ep(3, false, false, true),
        ];
        let (usable, fallback) = select_usable(&mut eps);
        assert_eq!(usable, vec![1]);
        assert!(fallback);
    }

    #[test]
    fn no_usable_endpoint_when_nothing_serves() {
        let mut eps = vec![ep(1, false, false, true)];
        let (usable, fallback) = select_usable(&mut eps);
        assert!(usable.is_empty());
        assert!(!fallback);
    }

    #[test]
    fn ipv6_endpoint_authority_is_bracketed() {
        let e = Endpoint::new("[fd00::1]:80".parse().unwrap(), true, true, false);
        assert_eq!(e.authority.as_str(), "[fd00::1]:80");
    }
}
