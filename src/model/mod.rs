//! The snapshot: everything the data plane needs, in plain Rust types that know nothing of
//! Kubernetes. The control plane builds one, the handoff publishes it whole, the proxy
//! reads it. A snapshot is immutable once published.

mod backend;
mod basic_auth;
mod bounded;
mod canary;
mod client_auth;
mod external_auth;
pub mod gateway;
pub mod gateway_status;
mod ip_set;
mod path_table;
mod policy;
mod problem;
mod rate_limit;
mod regex_paths;
mod ring;
mod table;
mod tls;
mod topology;

use std::time::SystemTime;

use serde::Serialize;

pub use backend::{select_usable, Backend, Destination, Endpoint, PortRef, UpstreamProtocol};
pub use basic_auth::{md5_crypt, PasswordHash, Users, UsersError};
pub use bounded::BoundedMap;
pub use canary::{Canary, CanaryRule, Decided, HeaderPattern};
pub use client_auth::{rfc2253, AskForCertificate, Checks, ClientAuth, Verdict, VerifyClient};
pub use external_auth::{escape_into, AuthCache, ExternalAuth, RequestVars, UrlTemplate};
pub use ip_set::IpSet;
pub(crate) use path_table::collapse_slashes;
pub use path_table::{normalize_prefix, segment_count, PathKind, PathTable, PathTableError};
pub use policy::{
    AnnotationOutcome, BasicAuth, BodyLimit, CookieAffinity, Cors, CorsOrigins, ErrorPages, HashBy,
    HashPiece, IngressAnnotations, NextUpstream, OriginPattern, Outcome, Policy, Redirect,
    SameSite, SourceRanges, StatusSet,
};
pub use problem::{ObjectRef, Problem, Reason};
pub use rate_limit::{InFlight, Limits, RateLimit, Refused, Zone, Zones};
pub use regex_paths::{check_pattern, location_pattern, Rewrite, RewriteError};
pub use ring::{stable_hash, Ring, Subsets};
pub use table::{
    AppRoot, DefaultBackend, Fallback, HostCandidates, HostMatch, Lookup, Owner, PassthroughHost,
    PathType, Rejected, Route, RouteTable, RouteTableBuilder, Target, VirtualHost,
};
pub use tls::{Certificate, TlsBinding, TlsHost, TlsTable, TlsTableBuilder};
pub use topology::{select, Hints, Locality, Preference, Selected, Selection, TrafficPolicy};

/// An Ingress we saw but do not serve, and why (shown in `/debug/routes`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Ignored {
    pub ingress: ObjectRef,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// 0 for the empty snapshot in place before the first publish, then 1, 2, ...
    pub generation: u64,
    pub published_at: Option<SystemTime>,
    pub table: RouteTable,
    pub tls: TlsTable,
    pub problems: Vec<Problem>,
    pub ignored: Vec<Ignored>,
    /// The annotations of our Ingresses and what became of each.
    pub annotations: Vec<IngressAnnotations>,
    /// The node and zone the endpoint choices were made for.
    pub locality: Locality,
    /// Gateway API routes (None: no Gateway of ours has a listener served).
    pub gateway: Option<std::sync::Arc<gateway::GatewayTable>>,
    /// The status of every Gateway API object of ours, as written to the API server.
    pub gateway_status: Vec<gateway_status::ObjectStatus>,
}

impl Snapshot {
    /// The placeholder before anything was built; the proxy answers 503 while it is current.
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn is_ready(&self) -> bool {
        self.generation > 0
    }

    /// Whether two snapshots would route, report and explain identically (generation and
    /// time aside): an unchanged rebuild is not published.
    pub fn same_content(&self, other: &Snapshot) -> bool {
        self.table == other.table
            && self.tls == other.tls
            && self.problems == other.problems
            && self.ignored == other.ignored
            && self.annotations == other.annotations
            && self.locality == other.locality
            && self.gateway == other.gateway
            && self.gateway_status == other.gateway_status
    }
}
