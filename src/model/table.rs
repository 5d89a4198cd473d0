//! The routing table: virtual hosts by exact name, by wildcard suffix, and the catch-all,
//! each with its own path table, plus the default backend.
//!
//! Exactly one virtual host is chosen for a request host (exact, else wildcard, else the
//! rules without a host); the path is then matched inside that one only. A wildcard
//! `*.foo.com` is stored under `foo.com` and matches a host whose first label is dropped
//! to give `foo.com`: exactly one extra, non-empty label.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use foldhash::fast::RandomState;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::backend::{Backend, UpstreamProtocol};
use super::canary::Canary;
use super::path_table::{collapse_slashes, normalize_prefix, PathKind, PathTable};
use super::policy::Policy;
use super::problem::{ObjectRef, Reason};
use super::regex_paths::{location_order, RegexPaths, Rewrite};

/// A rule's host.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostMatch {
    /// `foo.bar.com`
    Exact(String),
    /// `*.foo.com`, stored as the suffix `foo.com`.
    Wildcard(String),
    /// Rules without a host.
    Any,
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostMatch::Exact(h) => f.write_str(h),
            HostMatch::Wildcard(suffix) => write!(f, "*.{suffix}"),
            HostMatch::Any => f.write_str("*"),
        }
    }
}

/// The suffix a wildcard would be stored under for `host`: `a.foo.com` → `foo.com`, the
/// host with its first label dropped. `None` when there is no non-empty first label and
/// non-empty rest (`foo`, `.foo.com`). Wildcards match exactly one extra label, so this is
/// the only suffix a lookup needs to try.
pub fn wildcard_suffix(host: &str) -> Option<&str> {
    match host.split_once('.') {
        Some((label, rest)) if !label.is_empty() && !rest.is_empty() => Some(rest),
        _ => None,
    }
}

impl HostMatch {
    pub fn kind(&self) -> &'static str {
        match self {
            HostMatch::Exact(_) => "exact",
            HostMatch::Wildcard(_) => "wildcard",
            HostMatch::Any => "any",
        }
    }
}

/// `pathType` as written in the Ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PathType {
    Exact,
    Prefix,
    /// Treated as `Prefix`.
    ImplementationSpecific,
}

impl PathType {
    pub fn kind(self) -> PathKind {
        match self {
            PathType::Exact => PathKind::Exact,
            PathType::Prefix | PathType::ImplementationSpecific => PathKind::Prefix,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PathType::Exact => "Exact",
            PathType::Prefix => "Prefix",
            PathType::ImplementationSpecific => "ImplementationSpecific",
        }
    }
}

/// Where a route sends its requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Backend(Arc<Backend>),
    /// The backend cannot be used (missing Service or port, refused ExternalName, resource
    /// backend); requests get 503 and the reason is in the Problems list.
    Unavailable(Arc<str>),
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        match self {
            Target::Backend(b) => map.serialize_entry("backend", b.as_ref())?,
            Target::Unavailable(reason) => map.serialize_entry("unavailable", reason.as_ref())?,
        }
        map.end()
    }
}

impl Target {
    pub fn backend(&self) -> Option<&Arc<Backend>> {
        match self {
            Target::Backend(b) => Some(b),
            Target::Unavailable(_) => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The path as written (an empty `ImplementationSpecific` path is shown as `/`).
    pub path: String,
    pub path_type: PathType,
    /// The Ingress this rule comes from.
    pub ingress: Arc<ObjectRef>,
    #[serde(flatten)]
    pub target: Target,
    /// Plain-HTTP requests to a TLS host are redirected to HTTPS (that Ingress allows it).
    pub ssl_redirect: bool,
    /// The Ingress's backend-protocol annotation, which wins over `appProtocol`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<UpstreamProtocol>,
    /// What the Ingress's annotations ask of this route (none: the defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Arc<Policy>>,
    /// `rewrite-target`: the path the pod gets, or the URL the client is sent to.
    #[serde(rename = "rewriteTarget", skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Arc<Rewrite>>,
    /// Its Ingress puts the host in regex mode (`use-regex`, or a rewrite of this path).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub regex: bool,
    /// A canary Ingress's alternative backend for this route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<Arc<Canary>>,
    #[serde(skip)]
    pub owner: Arc<Owner>,
}

/// Who answers for a route, as metrics and access logs name it (namespace, Ingress,
/// Service; empty when there is none). Built once per table, with its hash, so a request
/// costs an `Arc` clone and one hashed number, never hashing strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub namespace: Arc<str>,
    pub ingress: Arc<str>,
    pub service: Arc<str>,
    pub hash: u64,
}

impl Owner {
    pub fn new(namespace: Arc<str>, ingress: Arc<str>, service: Arc<str>) -> Self {
        use std::hash::BuildHasher;
        let hash = foldhash::fast::FixedState::with_seed(0x77_69_63_6b_65_74).hash_one((
            &*namespace,
            &*ingress,
            &*service,
        ));
        Self {
            namespace,
            ingress,
            service,
            hash,
        }
    }
}

/// The default backend: what answers when no rule matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DefaultBackend {
    /// The Ingress whose `spec.defaultBackend` this is; `None` for `--default-backend-service`.
    pub ingress: Option<Arc<ObjectRef>>,
    #[serde(flatten)]
    pub target: Target,
    /// The Ingress's backend-protocol annotation, which wins over `appProtocol`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<UpstreamProtocol>,
    /// What the Ingress's annotations ask of requests it answers (none: the defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Arc<Policy>>,
    #[serde(skip)]
    pub owner: Arc<Owner>,
}

/// `app-root`: a request for exactly `/` on the host is sent to this path (302).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRoot {
    pub path: String,
    /// The value asked for the query string (`$is_args$args`); else it is dropped.
    pub keep_query: bool,
    /// The Ingress it comes from.
    pub ingress: Arc<ObjectRef>,
}

#[derive(Clone, Debug)]
pub struct VirtualHost {
    pub host: HostMatch,
    pub routes: Vec<Route>,
    paths: PathTable,
    /// The host-wide `app-root`, from the oldest Ingress of the host that sets one.
    pub app_root: Option<AppRoot>,
    /// When this host is a `server-alias`: the host it serves like.
    pub alias_of: Option<HostMatch>,
    /// Regex mode (INGRESS-NGINX.md §B2): every path is a pattern, tried in `routes` order.
    regex: Option<RegexPaths>,
    /// The policy a request no rule matches gets: that of the host's oldest Ingress, as
    /// ingress-nginx applies it to the host's implicit `location /` (INGRESS-NGINX.md §A4).
    pub fallback: Option<Fallback>,
}

/// See [`VirtualHost::fallback`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fallback {
    pub ingress: Arc<ObjectRef>,
    /// The Ingress's policy without what belongs to its backends (affinity, hashing,
    /// balancing), which the default backend does not share.
    pub policy: Arc<Policy>,
}

impl PartialEq for VirtualHost {
    fn eq(&self, other: &Self) -> bool {
        // The path table is derived from `routes`.
        self.host == other.host
            && self.routes == other.routes
            && self.app_root == other.app_root
            && self.alias_of == other.alias_of
            && self.regex.is_some() == other.regex.is_some()
            && self.fallback == other.fallback
    }
}

/// Equal virtual hosts route, report and explain identically; `Eq` also lets comparing two
/// tables skip the hosts they share (`Arc`'s pointer check).
impl Eq for VirtualHost {}

impl VirtualHost {
    fn new(host: HostMatch) -> Self {
        Self {
            host,
            routes: Vec::new(),
            paths: PathTable::new(),
            app_root: None,
            alias_of: None,
            regex: None,
            fallback: None,
        }
    }

    pub fn lookup(&self, path: &str) -> Option<&Route> {
        let index = match &self.regex {
            None => self.paths.lookup(path)? as usize,
            Some(regex) => regex.first(&collapse_slashes(path))?,
        };
        self.routes.get(index)
    }

    /// In regex mode, whether each route's pattern matches `path` and the pattern itself
    /// (for `/debug/explain`); None otherwise.
    pub fn regex_matches(&self, path: &str) -> Option<Vec<(bool, &str)>> {
        let regex = self.regex.as_ref()?;
        let each = regex.each(&collapse_slashes(path));
        Some(
            each.into_iter()
                .enumerate()
                .map(|(i, m)| (m, regex.pattern(i).unwrap_or("")))
                .collect(),
        )
    }

    pub fn is_regex(&self) -> bool {
        self.regex.is_some()
    }
}

impl Serialize for VirtualHost {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("host", &self.host.to_string())?;
        map.serialize_entry("match", self.host.kind())?;
        if let Some(of) = &self.alias_of {
            map.serialize_entry("aliasOf", &of.to_string())?;
        }
        if let Some(root) = &self.app_root {
            map.serialize_entry("appRoot", root)?;
        }
        if let Some(fallback) = &self.fallback {
            map.serialize_entry("unmatchedPathsPolicyFrom", &*fallback.ingress)?;
        }
        if self.regex.is_some() {
            map.serialize_entry(
                "pathMatching",
                "regex: every path is a case-insensitive pattern from the start of the path; the first in this order that matches wins",
            )?;
        }
        map.serialize_entry("routes", &self.routes)?;
        map.end()
    }
}

/// The outcome of a lookup.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// A rule of the chosen virtual host matched.
    Route {
        vhost: &'a VirtualHost,
        route: &'a Route,
    },
    /// No rule matched (or no virtual host was chosen); the default backend answers.
    Default {
        vhost: Option<&'a VirtualHost>,
        backend: &'a DefaultBackend,
    },
    /// Nothing matched and there is no default backend: 404.
    NotFound { vhost: Option<&'a VirtualHost> },
}

impl<'a> Lookup<'a> {
    /// The virtual host chosen, if any.
    pub fn vhost(&self) -> Option<&'a VirtualHost> {
        match self {
            Lookup::Route { vhost, .. } => Some(vhost),
            Lookup::Default { vhost, .. } | Lookup::NotFound { vhost } => *vhost,
        }
    }

    /// The policy of whatever answers: the route's, or the default backend's Ingress's.
    pub fn policy(&self) -> Option<&'a Arc<Policy>> {
        match self {
            Lookup::Route { route, .. } => route.policy.as_ref(),
            Lookup::Default { vhost, backend } => vhost
                .and_then(|v| v.fallback.as_ref())
                .map(|f| &f.policy)
                .or(backend.policy.as_ref()),
            Lookup::NotFound { vhost } => {
                vhost.and_then(|v| v.fallback.as_ref()).map(|f| &f.policy)
            }
        }
    }
}

/// See [`RouteTable::host_candidates`].
pub struct HostCandidates<'a> {
    pub exact: Option<&'a VirtualHost>,
    /// The suffix (`example.com` for `a.example.com`) and the wildcard stored for it.
    pub wildcard: Option<(String, Option<&'a VirtualHost>)>,
    pub catch_all: Option<&'a VirtualHost>,
}

/// Virtual hosts are shared (`Arc`): a rebuild keeps the previous table's own for every
/// host that comes out the same ([`RouteTableBuilder::build_reusing`]), so an edit
/// allocates only what it changed, and the tables before and after it share the rest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteTable {
    exact: HashMap<Arc<str>, Arc<VirtualHost>, RandomState>,
    wildcard: HashMap<Arc<str>, Arc<VirtualHost>, RandomState>,
    catch_all: Option<Arc<VirtualHost>>,
    default_backend: Option<DefaultBackend>,
    /// `from-to-www-redirect`: a host no rule has, redirected to one that has rules.
    www_redirects: HashMap<Box<str>, Box<str>, RandomState>,
    /// `ssl-passthrough`: TLS connections for these hosts (by SNI) are relayed unterminated.
    passthrough: HashMap<Box<str>, PassthroughHost, RandomState>,
}

/// A host whose TLS connections are relayed to its pods without being terminated
/// (`ssl-passthrough`, with `--enable-ssl-passthrough`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassthroughHost {
    /// The Ingress it comes from.
    pub ingress: Arc<ObjectRef>,
    /// The backend of the host's `/` rule.
    #[serde(flatten)]
    pub target: Target,
    /// The Ingress's allow and deny lists: they hold for the relayed connections too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<super::policy::SourceRanges>,
}

impl RouteTable {
    /// The host a request for `host` is redirected to (`from-to-www-redirect`), if any.
    /// One emptiness check when no Ingress asks for it.
    pub fn www_redirect(&self, host: &str) -> Option<&str> {
        if self.www_redirects.is_empty() {
            return None;
        }
        self.www_redirects.get(host).map(|t| &**t)
    }

    /// The `ssl-passthrough` host for a TLS connection's SNI (lowercase), if any.
    pub fn passthrough(&self, sni: &str) -> Option<&PassthroughHost> {
        self.passthrough.get(sni)
    }

    /// Every `ssl-passthrough` host, by name.
    pub fn passthrough_hosts(&self) -> Vec<(&str, &PassthroughHost)> {
        let mut all: Vec<(&str, &PassthroughHost)> =
            self.passthrough.iter().map(|(h, p)| (&**h, p)).collect();
        all.sort_unstable_by_key(|(h, _)| *h);
        all
    }

    /// Whether any host is passed through: TLS listeners read the SNI first only then.
    pub fn has_passthrough(&self) -> bool {
        !self.passthrough.is_empty()
    }

    /// Every `from-to-www-redirect` (from, to), by name.
    pub fn www_redirects(&self) -> Vec<(&str, &str)> {
        let mut all: Vec<(&str, &str)> = self
            .www_redirects
            .iter()
            .map(|(f, t)| (&**f, &**t))
            .collect();
        all.sort_unstable();
        all
    }

    /// The one virtual host for a normalised request host (lowercase, no port, no
    /// trailing dot): exact, else wildcard, else catch-all.
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        if let Some(vhost) = self.exact.get(host) {
            return Some(vhost);
        }
        if !self.wildcard.is_empty() {
            if let Some(vhost) = wildcard_suffix(host).and_then(|s| self.wildcard.get(s)) {
                return Some(vhost);
            }
        }
        self.catch_all.as_deref()
    }

    /// The three places [`RouteTable::virtual_host`] looks, in order, for explaining a
    /// choice: the exact host, the wildcard for its suffix (if it has one), the catch-all.
    pub fn host_candidates(&self, host: &str) -> HostCandidates<'_> {
        HostCandidates {
            exact: self.exact.get(host).map(|v| &**v),
            wildcard: wildcard_suffix(host)
                .map(|s| (s.to_owned(), self.wildcard.get(s).map(|v| &**v))),
            catch_all: self.catch_all.as_deref(),
        }
    }

    pub fn lookup(&self, host: &str, path: &str) -> Lookup<'_> {
        let vhost = self.virtual_host(host);
        if let Some(route) = vhost.and_then(|v| v.lookup(path)) {
            // `vhost` is Some when a route was found.
            if let Some(vhost) = vhost {
                return Lookup::Route { vhost, route };
            }
        }
        match &self.default_backend {
            Some(backend) => Lookup::Default { vhost, backend },
            None => Lookup::NotFound { vhost },
        }
    }

    pub fn default_backend(&self) -> Option<&DefaultBackend> {
        self.default_backend.as_ref()
    }

    /// Virtual hosts in display order: exact by name, wildcards by name, catch-all last.
    pub fn virtual_hosts(&self) -> Vec<&VirtualHost> {
        let mut exact: Vec<&VirtualHost> = self.exact.values().map(|v| &**v).collect();
        exact.sort_by(|a, b| a.host.cmp(&b.host));
        let mut wildcard: Vec<&VirtualHost> = self.wildcard.values().map(|v| &**v).collect();
        wildcard.sort_by(|a, b| a.host.cmp(&b.host));
        exact.extend(wildcard);
        exact.extend(self.catch_all.as_deref());
        exact
    }

    /// Every backend the table can send traffic to (duplicates possible).
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> + '_ {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain(self.catch_all.as_ref())
            .flat_map(|v| {
                v.routes.iter().flat_map(|r| {
                    std::iter::once(&r.target).chain(r.canary.as_ref().map(|c| &c.target))
                })
            })
            .chain(self.default_backend.iter().map(|d| &d.target))
            .filter_map(Target::backend)
    }

    pub fn route_count(&self) -> usize {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain(self.catch_all.as_ref())
            .map(|v| v.routes.len())
            .sum()
    }
}

impl Serialize for RouteTable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("hosts", &self.virtual_hosts())?;
        map.serialize_entry("defaultBackend", &self.default_backend)?;
        if !self.passthrough.is_empty() {
            let hosts: BTreeMap<&str, &PassthroughHost> =
                self.passthrough.iter().map(|(h, p)| (&**h, p)).collect();
            map.serialize_entry("sslPassthrough", &hosts)?;
        }
        let redirects: BTreeMap<&str, &str> = self.www_redirects().into_iter().collect();
        if !redirects.is_empty() {
            map.serialize_entry("wwwRedirects", &redirects)?;
        }
        map.end()
    }
}

/// Builds a [`RouteTable`]; the first claimant of a host + path + kind wins, so callers add
/// routes in precedence order (oldest Ingress first).
#[derive(Default)]
pub struct RouteTableBuilder {
    hosts: BTreeMap<HostMatch, PendingHost>,
    default_backend: Option<DefaultBackend>,
    /// `server-alias` names and the host each serves like, in precedence order.
    aliases: Vec<(String, HostMatch)>,
    /// `from-to-www-redirect` (from, to), in precedence order.
    www_redirects: Vec<(String, String)>,
    passthrough: BTreeMap<String, PassthroughHost>,
}

/// A route refused because `existing` claimed its host, path and kind first.
#[derive(Debug)]
pub struct Rejected<'a> {
    pub route: Route,
    pub existing: &'a Route,
}

/// A virtual host being built: its routes, and which (kind, normalised path) each claims.
#[derive(Default)]
struct PendingHost {
    routes: Vec<Route>,
    claimed: HashMap<(PathKind, String), usize, RandomState>,
    /// Prefix paths normalised (`/a/` → `/a`), and the route holding each.
    normalized: HashMap<(PathKind, String), usize, RandomState>,
    /// Routes whose normalised Prefix path an older route holds (index into `routes`).
    shadowed: Vec<(Route, usize)>,
    app_root: Option<AppRoot>,
    /// The policy of the first route added (the host's oldest Ingress), for requests no
    /// rule matches.
    first: Option<(Arc<ObjectRef>, Option<Arc<Policy>>)>,
    /// A route of the host asks for regex mode.
    regex: bool,
}

impl RouteTableBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes sure the virtual host exists, even without routes (a TLS-only host, say).
    pub fn ensure_host(&mut self, host: HostMatch) {
        self.hosts.entry(host).or_default();
    }

    /// Adds a route; if another route already holds its host, path and kind, gives the
    /// route back with the one that holds them.
    ///
    /// A `Prefix` path equal to an older one only once normalised (`/a/` and `/a`) is kept
    /// aside: in regex mode they are two patterns, otherwise the older one wins, which
    /// [`RouteTableBuilder::build_reporting`] reports.
    pub fn add(&mut self, host: HostMatch, route: Route) -> Result<(), Rejected<'_>> {
        let pending = self.hosts.entry(host).or_default();
        let kind = route.path_type.kind();
        let raw = (kind, route.path.clone());
        if let Some(&existing) = pending.claimed.get(&raw) {
            return Err(Rejected {
                route,
                existing: &pending.routes[existing],
            });
        }
        pending.regex |= route.regex;
        if pending.first.is_none() {
            pending.first = Some((route.ingress.clone(), route.policy.clone()));
        }
        if kind == PathKind::Prefix {
            let normalized = (kind, normalize_prefix(&route.path));
            if let Some(&existing) = pending.normalized.get(&normalized) {
                pending.shadowed.push((route, existing));
                return Ok(());
            }
            pending.normalized.insert(normalized, pending.routes.len());
        }
        pending.claimed.insert(raw, pending.routes.len());
        pending.routes.push(route);
        Ok(())
    }

    /// Whether some rule's virtual host takes requests for this TLS host: the same exact
    /// host, an exact host's wildcard, or the same wildcard.
    pub fn routes_host(&self, host: &HostMatch) -> bool {
        if self.hosts.contains_key(host) {
            return true;
        }
        match host {
            HostMatch::Exact(name) => wildcard_suffix(name).is_some_and(|suffix| {
                self.hosts
                    .contains_key(&HostMatch::Wildcard(suffix.to_owned()))
            }),
            HostMatch::Wildcard(_) | HostMatch::Any => false,
        }
    }

    /// Sets the host's `app-root`; the first one set wins (the oldest Ingress), and the one
    /// already set is returned otherwise.
    pub fn set_app_root(&mut self, host: HostMatch, root: AppRoot) -> Result<(), &AppRoot> {
        let pending = self.hosts.entry(host).or_default();
        if pending.app_root.is_none() {
            pending.app_root = Some(root);
            return Ok(());
        }
        match &pending.app_root {
            Some(existing) => Err(existing),
            None => Ok(()),
        }
    }

    /// `alias` serves like `of` (`server-alias`), unless a rule has `alias` as its host.
    pub fn add_alias(&mut self, alias: String, of: HostMatch) {
        self.aliases.push((alias, of));
    }

    /// Requests for `from` are redirected to `to` (`from-to-www-redirect`), unless a rule
    /// or an alias has `from` as its host.
    pub fn add_www_redirect(&mut self, from: String, to: String) {
        self.www_redirects.push((from, to));
    }

    /// The route of `host` with exactly this path and `pathType`, if one was added (a
    /// canary Ingress attaches its backend to it).
    pub fn route_mut(
        &mut self,
        host: &HostMatch,
        path: &str,
        path_type: PathType,
    ) -> Option<&mut Route> {
        let pending = self.hosts.get_mut(host)?;
        pending
            .routes
            .iter_mut()
            .chain(pending.shadowed.iter_mut().map(|(route, _)| route))
            .find(|r| r.path == path && r.path_type == path_type)
    }

    /// TLS connections for `host` are relayed to `to` (`ssl-passthrough`); the first claim
    /// wins (the oldest Ingress), and the one already set is returned otherwise.
    pub fn add_passthrough(
        &mut self,
        host: String,
        to: PassthroughHost,
    ) -> Result<(), &PassthroughHost> {
        use std::collections::btree_map::Entry;
        match self.passthrough.entry(host) {
            Entry::Vacant(v) => {
                v.insert(to);
                Ok(())
            }
            Entry::Occupied(o) => Err(o.into_mut()),
        }
    }

    /// Whether a rule has this exact host.
    pub fn has_exact_host(&self, host: &str) -> bool {
        self.hosts.contains_key(&HostMatch::Exact(host.to_owned()))
    }

    /// The first default backend set wins; returns the one already set otherwise.
    pub fn set_default_backend(&mut self, backend: DefaultBackend) -> Result<(), &DefaultBackend> {
        if self.default_backend.is_none() {
            self.default_backend = Some(backend);
            return Ok(());
        }
        match &self.default_backend {
            Some(existing) => Err(existing),
            None => Ok(()),
        }
    }

    /// Sorts each host's routes for display (most specific first) and builds its path
    /// table once, in that order.
    pub fn build(self) -> RouteTable {
        self.build_reporting().0
    }

    /// [`RouteTableBuilder::build`], with what to report (Ingress, reason, message): the
    /// paths of hosts in regex mode that are no regular expression and are matched as
    /// plain text instead, and Prefix paths an older route holds once normalised.
    pub fn build_reporting(self) -> (RouteTable, Vec<(Arc<ObjectRef>, Reason, String)>) {
        self.build_reusing(None)
    }

    /// [`RouteTableBuilder::build_reporting`], sharing with `previous` (the table in
    /// force) every virtual host that comes out equal to its own: the new copy is dropped
    /// at once and the old one kept. An edit then leaves only the hosts it changed newly
    /// allocated, and dropping the old table after the swap frees only those, instead of
    /// a whole table's worth of blocks interleaved with the new table's (which the
    /// allocator cannot give back: RSS grew with every edit).
    pub fn build_reusing(
        self,
        previous: Option<&RouteTable>,
    ) -> (RouteTable, Vec<(Arc<ObjectRef>, Reason, String)>) {
        let mut notes = Vec::new();
        let exact = self
            .hosts
            .keys()
            .filter(|h| matches!(h, HostMatch::Exact(_)))
            .count()
            + self.aliases.len();
        let wildcard = self
            .hosts
            .keys()
            .filter(|h| matches!(h, HostMatch::Wildcard(_)))
            .count();
        let mut table = RouteTable {
            exact: HashMap::with_capacity_and_hasher(exact, RandomState::default()),
            wildcard: HashMap::with_capacity_and_hasher(wildcard, RandomState::default()),
            default_backend: self.default_backend,
            passthrough: self
                .passthrough
                .into_iter()
                .map(|(h, p)| (h.into_boxed_str(), p))
                .collect(),
            ..RouteTable::default()
        };
        for (host, pending) in self.hosts {
            let mut routes = pending.routes;
            let mut vhost = VirtualHost::new(host);
            vhost.app_root = pending.app_root;
            if vhost.host != HostMatch::Any {
                vhost.fallback = pending.first.and_then(|(ingress, policy)| {
                    let policy = policy?;
                    if policy.affinity.is_none() && policy.hash_by.is_none() && !policy.ewma {
                        return Some(Fallback { ingress, policy });
                    }
                    let mut policy = (*policy).clone();
                    policy.affinity = None;
                    policy.hash_by = None;
                    policy.ewma = false;
                    (!policy.is_default()).then(|| Fallback {
                        ingress,
                        policy: Arc::new(policy),
                    })
                });
            }
            if !pending.regex {
                for (route, existing) in pending.shadowed {
                    let holder = &routes[existing];
                    let what = format!(
                        "{} {} on host {}",
                        route.path_type.as_str(),
                        route.path,
                        vhost.host
                    );
                    let message = if holder.ingress == route.ingress {
                        format!(
                            "{what} is listed twice in this Ingress (as {}); the first one is used",
                            holder.path
                        )
                    } else {
                        format!(
                            "{what} is already routed by {} (older) as {}; this rule is ignored",
                            holder.ingress, holder.path
                        )
                    };
                    notes.push((route.ingress.clone(), Reason::PathConflict, message));
                }
            } else {
                routes.extend(pending.shadowed.into_iter().map(|(route, _)| route));
            }
            if pending.regex {
                // ingress-nginx's order; the first pattern that matches wins.
                routes.sort_by(|a, b| location_order(&a.path, &b.path));
                let (regex, literal) =
                    RegexPaths::new(routes.iter().map(|r| (r.path.as_str(), r.regex)));
                for (i, why) in literal {
                    let route = &routes[i];
                    notes.push((
                        route.ingress.clone(),
                        Reason::InvalidPath,
                        format!(
                            "{} path {} on host {} (in regex mode: an Ingress of the host sets use-regex or rewrite-target) is not a regular expression ({why}); it is matched as plain text, case-insensitively, from the start of the path",
                            route.path_type.as_str(),
                            route.path,
                            vhost.host
                        ),
                    ));
                }
                vhost.regex = Some(regex);
                vhost.routes = routes;
                insert_host(&mut table, vhost, previous);
                continue;
            }
            routes.sort_by(display_order);
            // Exactly: most hosts have one or two routes, and a Vec grown by push holds four.
            vhost.routes.reserve_exact(routes.len());
            for route in routes {
                let index = vhost.routes.len() as u32;
                match vhost
                    .paths
                    .insert(route.path_type.kind(), &route.path, index)
                {
                    Ok(()) => vhost.routes.push(route),
                    // Claims were checked in `add` and paths are escaped, so matchit has
                    // nothing to refuse; should it ever, the route is left out, loudly.
                    Err(error) => {
                        tracing::error!(host = %vhost.host, path = %route.path, %error, "route left out of the path table")
                    }
                }
            }
            insert_host(&mut table, vhost, previous);
        }
        // Aliases and www redirects never take a host a rule has; the first claim wins.
        for (alias, of) in self.aliases {
            if table.exact.contains_key(alias.as_str()) {
                continue;
            }
            let original = match &of {
                HostMatch::Exact(name) => table.exact.get(name.as_str()),
                HostMatch::Wildcard(suffix) => table.wildcard.get(suffix.as_str()),
                HostMatch::Any => None,
            };
            if let Some(mut vhost) = original.map(|v| VirtualHost::clone(v)) {
                vhost.host = HostMatch::Exact(alias);
                vhost.alias_of = Some(of);
                insert_host(&mut table, vhost, previous);
            }
        }
        for (from, to) in self.www_redirects {
            if !table.exact.contains_key(from.as_str())
                && !table.www_redirects.contains_key(from.as_str())
            {
                table
                    .www_redirects
                    .insert(from.into_boxed_str(), to.into_boxed_str());
            }
        }
        (table, notes)
    }
}

/// Adds `vhost` to `table`, or the equal one `previous` has under the same name; the name
/// is `previous`'s too when it has the host (a new one per host and rebuild, small and
/// long-lived, would pin the pages the rebuild's temporaries are freed from).
fn insert_host(table: &mut RouteTable, vhost: VirtualHost, previous: Option<&RouteTable>) {
    type Entry<'p> = Option<(&'p Arc<str>, &'p Arc<VirtualHost>)>;
    fn shared(vhost: VirtualHost, name: &str, old: Entry<'_>) -> (Arc<str>, Arc<VirtualHost>) {
        match old {
            Some((key, old)) if **old == vhost => (key.clone(), old.clone()),
            Some((key, _)) => (key.clone(), Arc::new(vhost)),
            None => (Arc::from(name), Arc::new(vhost)),
        }
    }
    match &vhost.host {
        HostMatch::Exact(name) => {
            let name = name.clone();
            let old = previous.and_then(|p| p.exact.get_key_value(name.as_str()));
            let (key, vhost) = shared(vhost, &name, old);
            table.exact.insert(key, vhost);
        }
        HostMatch::Wildcard(suffix) => {
            let suffix = suffix.clone();
            let old = previous.and_then(|p| p.wildcard.get_key_value(suffix.as_str()));
            let (key, vhost) = shared(vhost, &suffix, old);
            table.wildcard.insert(key, vhost);
        }
        HostMatch::Any => {
            let old = previous.and_then(|p| p.catch_all.as_ref());
            table.catch_all = Some(match old {
                Some(old) if **old == vhost => old.clone(),
                _ => Arc::new(vhost),
            });
        }
    }
}

/// Exact before Prefix; then more segments first; then by path.
fn display_order(a: &Route, b: &Route) -> std::cmp::Ordering {
    use super::path_table::segment_count;
    let rank = |r: &Route| {
        (
            r.path_type.kind() != PathKind::Exact,
            std::cmp::Reverse(segment_count(&r.path)),
        )
    };
    rank(a).cmp(&rank(b)).then_with(|| a.path.cmp(&b.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, path_type: PathType, ingress: &str) -> Route {
        Route {
            path: path.to_owned(),
            path_type,
            ingress: Arc::new(ObjectRef::namespaced("Ingress", "default", ingress)),
            target: Target::Unavailable(Arc::from("test")),
            ssl_redirect: true,
            protocol: None,
            policy: None,
            rewrite: None,
            regex: false,
            canary: None,
            owner: Arc::new(Owner::new("default".into(), ingress.into(), "".into())),
        }
    }

    fn matched<'a>(table: &'a RouteTable, host: &str, path: &str) -> Option<&'a str> {
        match table.lookup(host, path) {
            Lookup::Route { route, .. } => Some(route.ingress.name.as_str()),
            Lookup::Default { .. } => Some("default"),
            Lookup::NotFound { .. } => None,
        }
    }

    fn sample() -> RouteTable {
        let mut b = RouteTableBuilder::new();
        b.add(
            HostMatch::Exact("foo.bar.com".into()),
            route("/", PathType::Prefix, "exact"),
        )
        .unwrap();
        b.add(
            HostMatch::Wildcard("foo.com".into()),
            route("/", PathType::Prefix, "wild"),
        )
        .unwrap();
        b.add(HostMatch::Any, route("/", PathType::Prefix, "any"))
            .unwrap();
        b.add(
            HostMatch::Exact("only-api.com".into()),
            route("/api", PathType::Prefix, "api"),
        )
        .unwrap();
        b.build()
    }

    #[test]
    fn a_rebuild_shares_the_unchanged_hosts_and_every_name_with_the_previous_table() {
        let build = |path: &str| {
            let mut b = RouteTableBuilder::new();
            b.add(
                HostMatch::Exact("same.com".into()),
                route("/", PathType::Prefix, "same"),
            )
            .unwrap();
            b.add(
                HostMatch::Wildcard("same.com".into()),
                route("/", PathType::Prefix, "wild"),
            )
            .unwrap();
            b.add(
                HostMatch::Exact("edited.com".into()),
                route(path, PathType::Prefix, "edited"),
            )
            .unwrap();
            b
        };
        let first = build("/v1").build();
        let (second, _) = build("/v2").build_reusing(Some(&first));
        assert!(Arc::ptr_eq(
            &first.exact["same.com"],
            &second.exact["same.com"]
        ));
        assert!(Arc::ptr_eq(
            &first.wildcard["same.com"],
            &second.wildcard["same.com"]
        ));
        assert!(!Arc::ptr_eq(
            &first.exact["edited.com"],
            &second.exact["edited.com"]
        ));
        let name = |t: &RouteTable| t.exact.get_key_value("edited.com").unwrap().0.clone();
        assert!(Arc::ptr_eq(&name(&first), &name(&second)));
        assert_eq!(matched(&second, "edited.com", "/v2/x"), Some("edited"));
        assert_eq!(matched(&second, "edited.com", "/v1/x"), None);
        assert_eq!(matched(&second, "a.same.com", "/"), Some("wild"));
        assert_ne!(first, second);
        let (third, _) = build("/v2").build_reusing(Some(&second));
        assert_eq!(second, third);
    }

    #[test]
    fn exact_host_wins_over_wildcard_and_catch_all() {
        let t = sample();
        assert_eq!(matched(&t, "foo.bar.com", "/x"), Some("exact"));
    }

    #[test]
    fn wildcard_matches_exactly_one_extra_label() {
        let t = sample();
        assert_eq!(matched(&t, "bar.foo.com", "/"), Some("wild"));
        assert_eq!(matched(&t, "baz.bar.foo.com", "/"), Some("any"));
        assert_eq!(matched(&t, "foo.com", "/"), Some("any"));
        assert_eq!(matched(&t, ".foo.com", "/"), Some("any"));
    }

    #[test]
    fn unknown_host_goes_to_rules_without_host() {
        let t = sample();
        assert_eq!(matched(&t, "elsewhere.org", "/x"), Some("any"));
    }

    #[test]
    fn no_fall_through_to_a_less_specific_host() {
        // only-api.com is chosen, its one rule does not match, and the catch-all's `/`
        // must not be used: no default backend here, so nothing matches.
        let t = sample();
        assert_eq!(matched(&t, "only-api.com", "/web"), None);
        assert_eq!(matched(&t, "only-api.com", "/api/v1"), Some("api"));
    }

    #[test]
    fn default_backend_answers_when_no_rule_matches() {
        let mut b = RouteTableBuilder::new();
        b.add(
            HostMatch::Exact("a.com".into()),
            route("/x", PathType::Exact, "a"),
        )
        .unwrap();
        b.set_default_backend(DefaultBackend {
            ingress: None,
            target: Target::Unavailable(Arc::from("test")),
            protocol: None,
            policy: None,
            owner: Arc::new(Owner::new("".into(), "".into(), "".into())),
        })
        .unwrap();
        let t = b.build();
        assert_eq!(matched(&t, "a.com", "/x"), Some("a"));
        assert_eq!(matched(&t, "a.com", "/y"), Some("default"));
        assert_eq!(matched(&t, "b.com", "/x"), Some("default"));
    }

    #[test]
    fn the_first_claimant_of_a_path_wins() {
        let mut b = RouteTableBuilder::new();
        let host = HostMatch::Exact("a.com".into());
        b.add(host.clone(), route("/x", PathType::Prefix, "old"))
            .unwrap();
        match b.add(
            host.clone(),
            route("/x", PathType::ImplementationSpecific, "new"),
        ) {
            Err(rejected) => {
                assert_eq!(rejected.existing.ingress.name, "old");
                assert_eq!(rejected.route.ingress.name, "new");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        // The same prefix once normalised loses too, reported when the table is built
        // (in regex mode the two would be different patterns).
        b.add(host.clone(), route("/x/", PathType::Prefix, "newer"))
            .unwrap();
        // Same path but another kind is not a conflict.
        b.add(host, route("/x", PathType::Exact, "exact")).unwrap();
        let (t, notes) = b.build_reporting();
        assert_eq!(matched(&t, "a.com", "/x"), Some("exact"));
        assert_eq!(matched(&t, "a.com", "/x/y"), Some("old"));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].0.name, "newer");
        assert_eq!(notes[0].1, Reason::PathConflict);
        assert!(notes[0].2.contains("already routed by"), "{}", notes[0].2);
    }

    #[test]
    fn routes_are_listed_most_specific_first_and_still_match() {
        let mut b = RouteTableBuilder::new();
        let host = HostMatch::Exact("a.com".into());
        for (p, t) in [
            ("/", PathType::Prefix),
            ("/a/b", PathType::Prefix),
            ("/a", PathType::Exact),
            ("/a", PathType::Prefix),
        ] {
            b.add(host.clone(), route(p, t, p)).unwrap();
        }
        let t = b.build();
        let vhost = t.virtual_host("a.com").unwrap();
        let listed: Vec<(&str, PathType)> = vhost
            .routes
            .iter()
            .map(|r| (r.path.as_str(), r.path_type))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("/a", PathType::Exact),
                ("/a/b", PathType::Prefix),
                ("/a", PathType::Prefix),
                ("/", PathType::Prefix)
            ]
        );
        assert_eq!(vhost.lookup("/a/b/c").unwrap().path, "/a/b");
        assert_eq!(vhost.lookup("/a").unwrap().path_type, PathType::Exact);
        assert_eq!(vhost.lookup("/z").unwrap().path, "/");
    }

    /// A host whose routes are (path, pathType, asks for regex mode), named by index.
    fn regex_host(routes: &[(&str, PathType, bool)]) -> RouteTable {
        let mut b = RouteTableBuilder::new();
        for (i, (path, path_type, regex)) in routes.iter().enumerate() {
            let mut r = route(path, *path_type, &i.to_string());
            r.regex = *regex;
            let _ = b.add(HostMatch::Exact("h.example".into()), r);
        }
        b.build()
    }

    /// The regex-mode cases INGRESS-NGINX.md §B1–B3 records from ingress-nginx's e2e tests
    /// and documentation: the route (by index) that must answer, or None.
    #[test]
    fn regex_mode_matches_as_ingress_nginx() {
        use PathType::*;
        type Case<'a> = (&'a [(&'a str, PathType, bool)], &'a str, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            // rewrite.go: Prefix /foo beside /foo.+ with use-regex.
            (
                &[
                    ("/foo", Prefix, false),
                    ("/foo.+", ImplementationSpecific, true),
                ],
                "/foo",
                Some("0"),
            ),
            (
                &[
                    ("/foo", Prefix, false),
                    ("/foo.+", ImplementationSpecific, true),
                ],
                "/foo/bar",
                Some("1"),
            ),
            // "should fail to use longest match": the longer pattern text wins.
            (
                &[
                    ("/foo/bar/bar", Prefix, false),
                    ("/foo/bar/[a-z]{3}", ImplementationSpecific, true),
                ],
                "/foo/bar/bar",
                Some("1"),
            ),
            // "should use correct longest path match".
            (
                &[
                    ("/.well-known/acme/challenge", Prefix, false),
                    ("/", Prefix, true),
                ],
                "/.well-known/acme/challenge",
                Some("0"),
            ),
            // ingress-path-matching.md.
            (
                &[
                    ("/foo/bar/(.+)", ImplementationSpecific, true),
                    ("/foo/bar", Prefix, false),
                    ("/foo/bar/", Prefix, false),
                ],
                "/foo/bar/1",
                Some("0"),
            ),
            (
                &[
                    ("/foo/bar/(.+)", ImplementationSpecific, true),
                    ("/foo/bar", Prefix, false),
                    ("/foo/bar/", Prefix, false),
                ],
                "/foo/bar/",
                Some("2"),
            ),
            (
                &[
                    ("/foo/bar/(.+)", ImplementationSpecific, true),
                    ("/foo/bar", Prefix, false),
                    ("/foo/bar/", Prefix, false),
                ],
                "/foo/bar",
                Some("1"),
            ),
            // Blog §1: a pattern is a case-insensitive prefix.
            (
                &[("/[A-Z]{3}", ImplementationSpecific, true)],
                "/uuid",
                Some("0"),
            ),
            // §B1: in regex mode Prefix matches /foobar and /FOO, Exact becomes a prefix.
            (
                &[("/foo", Prefix, false), ("/x", Prefix, true)],
                "/foobar",
                Some("0"),
            ),
            (
                &[("/foo", Exact, false), ("/x", Prefix, true)],
                "/FOO/more",
                Some("0"),
            ),
            (
                &[("/foo", Prefix, false), ("/x", Prefix, true)],
                "/bar",
                None,
            ),
            // Runs of / are merged before matching, as nginx does.
            (
                &[("/a/b", Prefix, false), ("/x", Prefix, true)],
                "//a///b",
                Some("0"),
            ),
        ];
        for (routes, request, expected) in cases {
            let table = regex_host(routes);
            assert_eq!(
                matched(&table, "h.example", request),
                *expected,
                "routes {routes:?}, request {request}"
            );
        }
    }

    #[test]
    fn without_a_regex_route_the_host_matches_as_the_ingress_spec_says() {
        use PathType::*;
        let table = regex_host(&[
            ("/foo", Prefix, false),
            ("/foo.+", ImplementationSpecific, false),
        ]);
        assert_eq!(matched(&table, "h.example", "/foobar"), None);
        assert_eq!(matched(&table, "h.example", "/FOO"), None);
        assert_eq!(matched(&table, "h.example", "/foo/x"), Some("0"));
    }

    /// The regex matcher against the rule of §B2–B3 written out literally, with another
    /// regex engine, on generated hosts and requests.
    #[test]
    fn regex_mode_agrees_with_a_reference_matcher_on_generated_inputs() {
        fn reference(routes: &[(String, PathType, bool)], request: &str) -> Option<String> {
            let mut request = request.to_owned();
            while request.contains("//") {
                request = request.replace("//", "/");
            }
            let mut order: Vec<(usize, &String)> =
                routes.iter().map(|(p, _, _)| p).enumerate().collect();
            order.sort_by(|(_, a), (_, b)| {
                b.len().cmp(&a.len()).then(b.as_bytes().cmp(a.as_bytes()))
            });
            order
                .into_iter()
                .find(|(_, path)| {
                    regex_lite::Regex::new(&format!("(?i)^{path}"))
                        .unwrap()
                        .is_match(&request)
                })
                .map(|(i, _)| i.to_string())
        }
        const PIECES: &[&str] = &[
            "/api",
            "/API",
            "/v1",
            "/foo",
            "/bar",
            "/",
            ".+",
            "(/|$)(.*)",
            "/[a-z]{3}",
            "/\\d+",
            "(/.*)?",
            "/users",
            "-x",
            "/(v[12])",
        ];
        const SEGMENTS: &[&str] = &[
            "api", "Api", "v1", "v2", "foo", "bar", "users", "123", "x", "", "-x",
        ];
        let mut rng = fastrand::Rng::with_seed(0x7e6e_7a11);
        for round in 0..300 {
            let mut routes: Vec<(String, PathType, bool)> = Vec::new();
            for _ in 0..rng.usize(1..8) {
                let mut path = String::new();
                for _ in 0..rng.usize(1..4) {
                    path.push_str(PIECES[rng.usize(..PIECES.len())]);
                }
                if !path.starts_with('/') {
                    path.insert(0, '/');
                }
                let path_type = [
                    PathType::Prefix,
                    PathType::Exact,
                    PathType::ImplementationSpecific,
                ][rng.usize(..3)];
                if routes
                    .iter()
                    .any(|(p, t, _)| *p == path && t.kind() == path_type.kind())
                {
                    continue;
                }
                routes.push((path, path_type, rng.u8(..4) == 0));
            }
            if !routes.iter().any(|(_, _, r)| *r) {
                routes[0].2 = true;
            }
            // The generated paths are all valid patterns; duplicates by normalised prefix
            // are refused by the builder, as for any host, so the reference sees only
            // the routes the table kept.
            let mut b = RouteTableBuilder::new();
            let mut kept = Vec::new();
            for (i, (path, path_type, regex)) in routes.iter().enumerate() {
                let mut r = route(path, *path_type, &kept.len().to_string());
                r.regex = *regex;
                if b.add(HostMatch::Exact("h.example".into()), r).is_ok() {
                    kept.push(routes[i].clone());
                }
            }
            let table = b.build();
            for _ in 0..40 {
                let mut request = String::new();
                for _ in 0..rng.usize(1..5) {
                    request.push('/');
                    request.push_str(SEGMENTS[rng.usize(..SEGMENTS.len())]);
                }
                assert_eq!(
                    matched(&table, "h.example", &request).map(str::to_owned),
                    reference(&kept, &request),
                    "round {round}: routes {kept:?}, request {request}"
                );
            }
        }
    }
}
