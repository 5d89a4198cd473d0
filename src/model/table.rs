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
use super::path_table::{normalize_prefix, PathKind, PathTable};
use super::policy::Policy;
use super::problem::ObjectRef;

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
}

impl PartialEq for VirtualHost {
    fn eq(&self, other: &Self) -> bool {
        // The path table is derived from `routes`.
        self.host == other.host
            && self.routes == other.routes
            && self.app_root == other.app_root
            && self.alias_of == other.alias_of
    }
}

impl VirtualHost {
    fn new(host: HostMatch) -> Self {
        Self {
            host,
            routes: Vec::new(),
            paths: PathTable::new(),
            app_root: None,
            alias_of: None,
        }
    }

    pub fn lookup(&self, path: &str) -> Option<&Route> {
        self.paths
            .lookup(path)
            .and_then(|i| self.routes.get(i as usize))
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
            Lookup::Default { backend, .. } => backend.policy.as_ref(),
            Lookup::NotFound { .. } => None,
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

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteTable {
    exact: HashMap<Box<str>, VirtualHost, RandomState>,
    wildcard: HashMap<Box<str>, VirtualHost, RandomState>,
    catch_all: Option<VirtualHost>,
    default_backend: Option<DefaultBackend>,
    /// `from-to-www-redirect`: a host no rule has, redirected to one that has rules.
    www_redirects: HashMap<Box<str>, Box<str>, RandomState>,
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
        self.catch_all.as_ref()
    }

    /// The three places [`RouteTable::virtual_host`] looks, in order, for explaining a
    /// choice: the exact host, the wildcard for its suffix (if it has one), the catch-all.
    pub fn host_candidates(&self, host: &str) -> HostCandidates<'_> {
        HostCandidates {
            exact: self.exact.get(host),
            wildcard: wildcard_suffix(host).map(|s| (s.to_owned(), self.wildcard.get(s))),
            catch_all: self.catch_all.as_ref(),
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
        let mut exact: Vec<&VirtualHost> = self.exact.values().collect();
        exact.sort_by(|a, b| a.host.cmp(&b.host));
        let mut wildcard: Vec<&VirtualHost> = self.wildcard.values().collect();
        wildcard.sort_by(|a, b| a.host.cmp(&b.host));
        exact.extend(wildcard);
        exact.extend(self.catch_all.as_ref());
        exact
    }

    /// Every backend the table can send traffic to (duplicates possible).
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> + '_ {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain(self.catch_all.as_ref())
            .flat_map(|v| v.routes.iter().map(|r| &r.target))
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
    app_root: Option<AppRoot>,
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
    pub fn add(&mut self, host: HostMatch, route: Route) -> Result<(), Rejected<'_>> {
        let pending = self.hosts.entry(host).or_default();
        let kind = route.path_type.kind();
        let key = match kind {
            PathKind::Exact => route.path.clone(),
            PathKind::Prefix => normalize_prefix(&route.path),
        };
        if let Some(&existing) = pending.claimed.get(&(kind, key.clone())) {
            return Err(Rejected {
                route,
                existing: &pending.routes[existing],
            });
        }
        pending.claimed.insert((kind, key), pending.routes.len());
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
        let mut table = RouteTable {
            default_backend: self.default_backend,
            ..RouteTable::default()
        };
        for (host, pending) in self.hosts {
            let mut routes = pending.routes;
            routes.sort_by(display_order);
            let mut vhost = VirtualHost::new(host);
            vhost.app_root = pending.app_root;
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
            match vhost.host.clone() {
                HostMatch::Exact(name) => {
                    table.exact.insert(name.into_boxed_str(), vhost);
                }
                HostMatch::Wildcard(suffix) => {
                    table.wildcard.insert(suffix.into_boxed_str(), vhost);
                }
                HostMatch::Any => table.catch_all = Some(vhost),
            }
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
            if let Some(original) = original.cloned() {
                let mut vhost = original;
                vhost.host = HostMatch::Exact(alias.clone());
                vhost.alias_of = Some(of);
                table.exact.insert(alias.into_boxed_str(), vhost);
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
        table
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
            route("/x/", PathType::ImplementationSpecific, "new"),
        ) {
            Err(rejected) => {
                assert_eq!(rejected.existing.ingress.name, "old");
                assert_eq!(rejected.route.ingress.name, "new");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        // Same path but another kind is not a conflict.
        b.add(host, route("/x", PathType::Exact, "exact")).unwrap();
        let t = b.build();
        assert_eq!(matched(&t, "a.com", "/x"), Some("exact"));
        assert_eq!(matched(&t, "a.com", "/x/y"), Some("old"));
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
}
