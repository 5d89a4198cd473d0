//! What a Gateway API rule does with a request it matches: redirect it, or forward it to a
//! weighted backendRef with header and path edits; and how that is shown.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use crate::model::backend::Backend;
use crate::model::path_table::collapse_slashes;
use crate::model::policy::Policy;
use crate::model::table::Owner;

/// How a filter changes a path (RequestRedirect and URLRewrite).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRewrite {
    /// `ReplaceFullPath`.
    Full(String),
    /// `ReplacePrefixMatch`: the rule's one `PathPrefix` (normalised) is replaced.
    Prefix { matched: String, with: String },
}

impl PathRewrite {
    /// The new path for a request path (no query).
    pub fn apply(&self, path: &str) -> String {
        match self {
            PathRewrite::Full(to) => to.clone(),
            PathRewrite::Prefix { matched, with } => {
                let path = collapse_slashes(path);
                let rest = if matched == "/" {
                    &path[..]
                } else {
                    path.get(matched.len()..).unwrap_or("")
                };
                let mut out = with.trim_end_matches('/').to_owned();
                out.push_str(rest);
                if out.is_empty() {
                    out.push('/');
                }
                if !out.starts_with('/') {
                    out.insert(0, '/');
                }
                out
            }
        }
    }
}

/// RequestHeaderModifier / ResponseHeaderModifier: `set` replaces, `add` appends to the
/// value (joined with `,`), `remove` drops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Applies the edits to a header map in place.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name, value.clone());
        }
        for (name, value) in &self.add {
            let joined = match headers.get(name) {
                Some(existing) => {
                    let mut v = Vec::with_capacity(existing.len() + 1 + value.len());
                    for (i, each) in headers.get_all(name).iter().enumerate() {
                        if i > 0 {
                            v.push(b',');
                        }
                        v.extend_from_slice(each.as_bytes());
                    }
                    v.push(b',');
                    v.extend_from_slice(value.as_bytes());
                    HeaderValue::from_bytes(&v).unwrap_or_else(|_| value.clone())
                }
                None => value.clone(),
            };
            headers.insert(name, joined);
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

impl Serialize for HeaderEdits {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
        let mut map = s.serialize_map(None)?;
        if !self.set.is_empty() {
            let set: BTreeMap<&str, String> = self
                .set
                .iter()
                .map(|(n, v)| (n.as_str(), text(v)))
                .collect();
            map.serialize_entry("set", &set)?;
        }
        if !self.add.is_empty() {
            let add: BTreeMap<&str, String> = self
                .add
                .iter()
                .map(|(n, v)| (n.as_str(), text(v)))
                .collect();
            map.serialize_entry("add", &add)?;
        }
        if !self.remove.is_empty() {
            let remove: Vec<&str> = self.remove.iter().map(HeaderName::as_str).collect();
            map.serialize_entry("remove", &remove)?;
        }
        map.end()
    }
}

/// RequestRedirect: the `Location` is built from the request and these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectTo {
    /// `http` or `https`; None: the request's.
    pub scheme: Option<&'static str>,
    /// None: the request's host, without its port.
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathRewrite>,
    pub status: u16,
}

impl RedirectTo {
    /// The `Location` for a request. `listener_port` is the Gateway listener's port (not
    /// the socket's), used when neither a port nor a scheme is set.
    pub fn location(
        &self,
        tls: bool,
        host: &str,
        path: &str,
        query: Option<&str>,
        listener_port: u16,
    ) -> String {
        let scheme = self.scheme.unwrap_or(if tls { "https" } else { "http" });
        let port = match (self.port, self.scheme) {
            (Some(p), _) => p,
            (None, Some("https")) => 443,
            (None, Some(_)) => 80,
            (None, None) => listener_port,
        };
        let default_port = if scheme == "https" { 443 } else { 80 };
        let host = self.hostname.as_deref().unwrap_or(host);
        let path = match &self.path {
            Some(rewrite) => rewrite.apply(path),
            None => path.to_owned(),
        };
        let mut out = format!("{scheme}://{host}");
        if port != default_port {
            out.push(':');
            out.push_str(&port.to_string());
        }
        out.push_str(&path);
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// Where one share of a rule's traffic goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendTarget {
    Backend(Arc<Backend>),
    /// An invalid reference (missing Service, unknown kind, no ReferenceGrant): its share
    /// of the requests is answered 500, as the spec asks.
    Invalid(Arc<str>),
}

/// One backendRef of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedBackend {
    pub weight: u32,
    /// The running total of weights up to and including this one.
    pub upto: u64,
    pub target: BackendTarget,
    /// The backendRef's own RequestHeaderModifier / ResponseHeaderModifier.
    pub request: Option<HeaderEdits>,
    pub response: Option<HeaderEdits>,
    /// The Service it names, for the access log and metrics.
    pub owner: Arc<Owner>,
}

/// What a rule does with the requests it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Redirect(RedirectTo),
    Forward(Box<ForwardTo>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardTo {
    pub request: Option<HeaderEdits>,
    pub response: Option<HeaderEdits>,
    /// URLRewrite: the path the pod gets.
    pub path: Option<PathRewrite>,
    /// URLRewrite `hostname`, as the route policy's upstream `Host` (None: no rewrite).
    pub policy: Option<Arc<Policy>>,
    pub backends: Vec<WeightedBackend>,
    /// Sum of the weights: 0 means every request gets 500.
    pub total: u64,
    /// When `backends` is empty or all weights are 0: why requests get 500.
    pub none: Option<Arc<str>>,
}

impl ForwardTo {
    /// The backendRef for one request: weighted random, each share kept (an invalid
    /// reference answers its share with 500). None: every weight is 0 or there is none.
    pub fn pick(&self) -> Option<(usize, &WeightedBackend)> {
        let i = match self.backends.len() {
            0 => return None,
            _ if self.total == 0 => return None,
            1 => 0,
            _ => {
                let n = fastrand::u64(0..self.total);
                self.backends.partition_point(|b| b.upto <= n)
            }
        };
        self.backends.get(i).map(|b| (i, b))
    }
}

pub(super) struct RedirectView<'a>(pub(super) &'a RedirectTo);

impl Serialize for RedirectView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("statusCode", &r.status)?;
        if let Some(v) = r.scheme {
            map.serialize_entry("scheme", v)?;
        }
        if let Some(v) = &r.hostname {
            map.serialize_entry("hostname", v)?;
        }
        if let Some(v) = r.port {
            map.serialize_entry("port", &v)?;
        }
        if let Some(p) = &r.path {
            map.serialize_entry("path", &describe_rewrite(p))?;
        }
        map.end()
    }
}

fn describe_rewrite(p: &PathRewrite) -> String {
    match p {
        PathRewrite::Full(to) => format!("ReplaceFullPath {to}"),
        PathRewrite::Prefix { matched, with } => format!("ReplacePrefixMatch {matched} → {with}"),
    }
}

pub(super) struct ForwardView<'a>(pub(super) &'a ForwardTo);

impl Serialize for ForwardView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        let mut map = s.serialize_map(None)?;
        if let Some(e) = &f.request {
            map.serialize_entry("requestHeaders", e)?;
        }
        if let Some(e) = &f.response {
            map.serialize_entry("responseHeaders", e)?;
        }
        if let Some(p) = &f.path {
            map.serialize_entry("rewritePath", &describe_rewrite(p))?;
        }
        if let Some(host) = f.policy.as_ref().and_then(|p| p.upstream_vhost.as_ref()) {
            map.serialize_entry("rewriteHostname", &String::from_utf8_lossy(host.as_bytes()))?;
        }
        if let Some(why) = &f.none {
            map.serialize_entry("answers500", &**why)?;
        }
        map.serialize_entry("backends", &BackendsView(&f.backends))?;
        map.end()
    }
}

struct BackendsView<'a>(&'a [WeightedBackend]);

impl Serialize for BackendsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for b in self.0 {
            seq.serialize_element(&BackendView(b))?;
        }
        seq.end()
    }
}

struct BackendView<'a>(&'a WeightedBackend);

impl Serialize for BackendView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("weight", &b.weight)?;
        match &b.target {
            BackendTarget::Backend(backend) => map.serialize_entry("backend", &**backend)?,
            BackendTarget::Invalid(why) => map.serialize_entry("answers500", &**why)?,
        }
        if let Some(e) = &b.request {
            map.serialize_entry("requestHeaders", e)?;
        }
        if let Some(e) = &b.response {
            map.serialize_entry("responseHeaders", e)?;
        }
        map.end()
    }
}
