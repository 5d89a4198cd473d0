//! Gateway API routing in the snapshot: the rules of HTTPRoutes, compiled per listener and
//! hostname into lists in the spec's precedence order, with indexes that find the first
//! matching rule without trying them all. Nothing here knows Kubernetes types.
//!
//! A request on a socket (plain or TLS) picks **one listener** by its hostname (exact, then
//! the longest wildcard, then the listener without a hostname) and is matched only against
//! the routes attached to that listener (listener isolation). Within it, rules are tried
//! **level by level**: the rules whose route hostname equals the request host, then those
//! of wildcard route hostnames (longest first), then those of routes without hostnames.
//! Within a level, the first rule in precedence order whose match holds wins:
//!
//! 1. `Exact` path, then `RegularExpression` (longer pattern first), then `PathPrefix`
//!    (longer first) — where regular expressions rank is implementation-specific; wicket
//!    puts them between the two, as Envoy Gateway does;
//! 2. a match with a `method`; 3. more header matches; 4. more query-parameter matches;
//! 5. the older route (then namespace/name, as the translator orders routes);
//! 6. rule order, then match order, within one route.
//!
//! The index: exact paths in a hash map, regular expressions in a list, prefixes in a
//! [`PathTable`] whose groups know their next shorter prefix, so a prefix whose rules all
//! fail their header or method conditions falls through to the next one.

mod action;
mod matching;

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use foldhash::fast::RandomState;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

pub use action::{
    Action, BackendTarget, ForwardTo, HeaderEdits, PathRewrite, RedirectTo, WeightedBackend,
};
use action::{ForwardView, RedirectView};
pub use matching::{is_grpc, Conditions, PathMatch, Pattern, RequestFacts, ValueMatch};

use super::path_table::{PathKind, PathTable};
use super::problem::ObjectRef;
use super::table::Owner;

/// One rule of one route, shared by its matches (and by every listener it attaches to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayRule {
    pub route: Arc<ObjectRef>,
    /// Its index in `spec.rules`, and its `name` if it has one.
    pub index: usize,
    pub name: Option<String>,
    pub action: Action,
    /// Names the rule in metrics and the access log: namespace, route, first Service.
    pub owner: Arc<Owner>,
    /// A GRPCRoute rule: it takes gRPC requests only (`content-type: application/grpc*`),
    /// before any HTTPRoute rule; its upstream speaks HTTP/2; errors are gRPC statuses.
    pub grpc: bool,
}

/// One match of one rule: where the rule's matches meet the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: PathMatch,
    pub conditions: Option<Box<Conditions>>,
    pub rule: Arc<GatewayRule>,
    /// Its index in the rule's `matches` (0 for a rule without matches).
    pub match_index: usize,
    /// The route's place in age order (oldest first, then namespace/name).
    pub route_order: u32,
}

impl Entry {
    /// The precedence key: smaller wins.
    fn rank(&self) -> impl Ord {
        let (kind, length) = match &self.path {
            PathMatch::Exact(p) => (0u8, p.len()),
            PathMatch::Regex(r) => (1, r.source().len()),
            PathMatch::Prefix(p) => (2, if p == "/" { 0 } else { p.len() }),
        };
        let c = self.conditions.as_deref();
        (
            kind,
            Reverse(length),
            c.is_none_or(|c| c.method.is_none()),
            Reverse(c.map_or(0, |c| c.headers.len())),
            Reverse(c.map_or(0, |c| c.query.len())),
            self.route_order,
            self.rule.index,
            self.match_index,
        )
    }

    /// The whole match, path included: what the index answers, the slow way.
    pub fn matches(&self, path: &str, req: &RequestFacts<'_>) -> bool {
        self.path.matches(path) && self.holds(req)
    }

    fn holds(&self, req: &RequestFacts<'_>) -> bool {
        self.conditions.as_deref().is_none_or(|c| c.holds(req))
    }
}

impl Entry {
    /// The match in a few words: `PathPrefix /api GET x-v=1 ?q=1`; `gRPC Exact /pkg.S/M`.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{}{} {}",
            if self.rule.grpc { "gRPC " } else { "" },
            self.path.kind(),
            self.path.value()
        );
        if let Some(c) = self.conditions.as_deref() {
            if let Some(m) = &c.method {
                out.push(' ');
                out.push_str(m.as_str());
            }
            for (n, v) in &c.headers {
                out.push_str(&format!(" {n}={}", v.describe()));
            }
            for (n, v) in &c.query {
                out.push_str(&format!(" ?{n}={}", v.describe()));
            }
        }
        out
    }

    /// What the rule does, in a few words: `302 → https://...` or the backends.
    pub fn outcome(&self) -> String {
        match &self.rule.action {
            Action::Redirect(r) => format!("redirect {}", r.status),
            Action::Forward(f) => {
                if let Some(why) = &f.none {
                    return format!("500: {why}");
                }
                let parts: Vec<String> = f
                    .backends
                    .iter()
                    .map(|b| {
                        let what = match &b.target {
                            BackendTarget::Backend(backend) => backend.id.to_string(),
                            BackendTarget::Invalid(_) => "500 (invalid backendRef)".to_owned(),
                        };
                        if f.backends.len() > 1 {
                            format!("{what} ×{}", b.weight)
                        } else {
                            what
                        }
                    })
                    .collect();
                parts.join(", ")
            }
        }
    }
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry(
            "path",
            &format!("{} {}", self.path.kind(), self.path.value()),
        )?;
        if let Some(c) = self.conditions.as_deref() {
            if let Some(m) = &c.method {
                map.serialize_entry("method", m.as_str())?;
            }
            if !c.headers.is_empty() {
                let h: BTreeMap<&str, String> = c
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.describe()))
                    .collect();
                map.serialize_entry("headers", &h)?;
            }
            if !c.query.is_empty() {
                let q: BTreeMap<&str, String> = c
                    .query
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.describe()))
                    .collect();
                map.serialize_entry("queryParams", &q)?;
            }
        }
        map.serialize_entry("route", &*self.rule.route)?;
        map.serialize_entry("rule", &self.rule.index)?;
        if let Some(name) = &self.rule.name {
            map.serialize_entry("ruleName", name)?;
        }
        if self.match_index > 0 {
            map.serialize_entry("match", &self.match_index)?;
        }
        match &self.rule.action {
            Action::Redirect(r) => map.serialize_entry("redirect", &RedirectView(r))?,
            Action::Forward(f) => map.serialize_entry("forward", &ForwardView(f))?,
        }
        map.end()
    }
}

/// A route hostname as attached to a listener: exact, `*.suffix` (any number of extra
/// labels), or none (every host the listener takes).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hostname {
    Exact(String),
    /// The suffix without `*.`.
    Wildcard(String),
    Any,
}

impl Hostname {
    /// `*.example.com` → Wildcard("example.com"); `` → Any; else Exact, lowercase.
    pub fn parse(text: &str) -> Self {
        let text = text.to_ascii_lowercase();
        if text.is_empty() {
            Hostname::Any
        } else if let Some(suffix) = text.strip_prefix("*.") {
            Hostname::Wildcard(suffix.to_owned())
        } else {
            Hostname::Exact(text)
        }
    }

    /// Whether a request host (normalised) is one this hostname takes.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Hostname::Exact(h) => h == host,
            Hostname::Wildcard(s) => host
                .strip_suffix(s.as_str())
                .is_some_and(|label| label.len() > 1 && label.ends_with('.')),
            Hostname::Any => true,
        }
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hostname::Exact(h) => f.write_str(h),
            Hostname::Wildcard(s) => write!(f, "*.{s}"),
            Hostname::Any => f.write_str("*"),
        }
    }
}

/// The listener a request was taken by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerRef {
    pub gateway: ObjectRef,
    pub name: String,
    /// The listener's port as the Gateway says (80, 443), whatever socket serves it.
    pub port: u16,
    pub protocol: &'static str,
    #[serde(serialize_with = "display")]
    pub hostname: Hostname,
}

fn display<S: Serializer, T: fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The rules of one listener for one route hostname, in precedence order, indexed.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub entries: Vec<Entry>,
    /// The GRPCRoute rules of this listener and hostname: tried first, for gRPC requests.
    grpc: Option<Box<RuleSet>>,
    exact: HashMap<Box<str>, Vec<u32>, RandomState>,
    regex: Vec<u32>,
    prefix: PathTable,
    groups: Vec<PrefixGroup>,
}

#[derive(Clone, Debug, Default)]
struct PrefixGroup {
    entries: Vec<u32>,
    /// The group of the next shorter prefix that also matches every path this one does.
    parent: Option<u32>,
}

impl PartialEq for RuleSet {
    fn eq(&self, other: &Self) -> bool {
        // The indexes are derived from the entries.
        self.entries == other.entries && self.grpc == other.grpc
    }
}
impl Eq for RuleSet {}

impl RuleSet {
    fn new(entries: Vec<Entry>) -> Self {
        let (grpc, http): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(|e| e.rule.grpc);
        let mut set = Self::indexed(http);
        if !grpc.is_empty() {
            set.grpc = Some(Box::new(Self::indexed(grpc)));
        }
        set
    }

    /// The GRPCRoute rules, in precedence order (tried before `entries` for gRPC requests).
    pub fn grpc_entries(&self) -> &[Entry] {
        self.grpc.as_deref().map_or(&[], |g| g.entries.as_slice())
    }

    fn indexed(mut entries: Vec<Entry>) -> Self {
        entries.sort_by_cached_key(|e| e.rank());
        let mut set = RuleSet::default();
        let mut prefix_groups: HashMap<String, u32, RandomState> = HashMap::default();
        for (i, entry) in entries.iter().enumerate() {
            let i = i as u32;
            match &entry.path {
                PathMatch::Exact(p) => set.exact.entry(p.as_str().into()).or_default().push(i),
                PathMatch::Regex(_) => set.regex.push(i),
                PathMatch::Prefix(p) => {
                    let group = *prefix_groups.entry(p.clone()).or_insert_with(|| {
                        set.groups.push(PrefixGroup::default());
                        (set.groups.len() - 1) as u32
                    });
                    set.groups[group as usize].entries.push(i);
                }
            }
        }
        for (path, &group) in &prefix_groups {
            // Inserting a normalised prefix twice cannot happen: one group per prefix.
            let _ = set.prefix.insert(PathKind::Prefix, path, group);
            set.groups[group as usize].parent =
                shorter_prefixes(path).find_map(|shorter| prefix_groups.get(shorter).copied());
        }
        set.entries = entries;
        set
    }

    /// The first entry, in precedence order, that matches the request: for a gRPC
    /// request, the GRPCRoute rules first.
    pub fn first(&self, path: &str, req: &RequestFacts<'_>) -> Option<&Entry> {
        if let Some(grpc) = &self.grpc {
            if is_grpc(req.headers) {
                if let Some(e) = grpc.first_indexed(path, req) {
                    return Some(e);
                }
            }
        }
        self.first_indexed(path, req)
    }

    fn first_indexed(&self, path: &str, req: &RequestFacts<'_>) -> Option<&Entry> {
        if !self.exact.is_empty() {
            if let Some(list) = self.exact.get(path) {
                if let Some(e) = self.first_holding(list, req) {
                    return Some(e);
                }
            }
        }
        for &i in &self.regex {
            let e = &self.entries[i as usize];
            if e.matches(path, req) {
                return Some(e);
            }
        }
        let mut group = self.prefix.lookup(path);
        while let Some(g) = group {
            let g = &self.groups[g as usize];
            if let Some(e) = self.first_holding(&g.entries, req) {
                return Some(e);
            }
            group = g.parent;
        }
        None
    }

    fn first_holding(&self, list: &[u32], req: &RequestFacts<'_>) -> Option<&Entry> {
        list.iter()
            .map(|&i| &self.entries[i as usize])
            .find(|e| e.holds(req))
    }
}

/// `/a/b/c` → `/a/b`, `/a`, `/`; `/` → nothing.
fn shorter_prefixes(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = if path == "/" { None } else { Some(path) };
    std::iter::from_fn(move || {
        let current = rest?;
        let cut = current.rfind('/')?;
        let shorter = if cut == 0 { "/" } else { &current[..cut] };
        rest = (shorter != "/").then_some(shorter);
        Some(shorter)
    })
}

/// What a request host finds on a socket: the listener that takes it, and the rule sets
/// to try, most specific route hostname first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRoutes {
    pub listener: Arc<ListenerRef>,
    pub levels: Vec<(Hostname, Arc<RuleSet>)>,
}

/// The routes of one socket (plain or TLS), by request host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketRoutes {
    exact: HashMap<Box<str>, Arc<HostRoutes>, RandomState>,
    wildcard: HashMap<Box<str>, Arc<HostRoutes>, RandomState>,
    any: Option<Arc<HostRoutes>>,
    /// Every listener with its rule sets, for display.
    listeners: Vec<ListenerView>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ListenerView {
    listener: Arc<ListenerRef>,
    levels: Vec<(Hostname, Arc<RuleSet>)>,
}

impl SocketRoutes {
    /// The listener and rule sets for a normalised host: exact, then the longest wildcard
    /// suffix, then the listener without a hostname.
    pub fn host(&self, host: &str) -> Option<&HostRoutes> {
        if let Some(h) = self.exact.get(host) {
            return Some(h);
        }
        if !self.wildcard.is_empty() {
            let mut rest = host;
            while let Some((_, suffix)) = rest.split_once('.') {
                if let Some(h) = self.wildcard.get(suffix) {
                    return Some(h);
                }
                rest = suffix;
            }
        }
        self.any.as_deref()
    }

    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    /// Every listener of the socket with its rule sets, most specific route hostname
    /// first, for display.
    pub fn listeners(&self) -> impl Iterator<Item = (&ListenerRef, &[(Hostname, Arc<RuleSet>)])> {
        self.listeners
            .iter()
            .map(|l| (&*l.listener, l.levels.as_slice()))
    }
}

/// A Gateway API rule that matched a request.
pub struct Matched<'a> {
    pub listener: &'a ListenerRef,
    pub hostname: &'a Hostname,
    pub entry: &'a Entry,
}

/// Gateway API routing: one [`SocketRoutes`] per socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayTable {
    pub http: SocketRoutes,
    pub https: SocketRoutes,
}

impl GatewayTable {
    pub fn is_empty(&self) -> bool {
        self.http.is_empty() && self.https.is_empty()
    }

    pub fn socket(&self, tls: bool) -> &SocketRoutes {
        if tls {
            &self.https
        } else {
            &self.http
        }
    }

    /// The rule that takes a request, if a Gateway API route does.
    pub fn lookup<'a>(
        &'a self,
        tls: bool,
        host: &str,
        path: &str,
        req: &RequestFacts<'_>,
    ) -> Option<Matched<'a>> {
        let found = self.socket(tls).host(host)?;
        found.levels.iter().find_map(|(hostname, set)| {
            set.first(path, req).map(|entry| Matched {
                listener: &found.listener,
                hostname,
                entry,
            })
        })
    }
}

impl Serialize for GatewayTable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("http", &SocketView(&self.http))?;
        map.serialize_entry("https", &SocketView(&self.https))?;
        map.end()
    }
}

struct SocketView<'a>(&'a SocketRoutes);

impl Serialize for SocketView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.listeners.len()))?;
        for l in &self.0.listeners {
            seq.serialize_element(&ListenerOut(l))?;
        }
        seq.end()
    }
}

struct ListenerOut<'a>(&'a ListenerView);

impl Serialize for ListenerOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("listener", &*self.0.listener)?;
        let levels: Vec<LevelOut<'_>> = self.0.levels.iter().map(LevelOut).collect();
        map.serialize_entry("hostnames", &levels)?;
        map.end()
    }
}

struct LevelOut<'a>(&'a (Hostname, Arc<RuleSet>));

impl Serialize for LevelOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("hostname", &self.0 .0.to_string())?;
        if !self.0 .1.grpc_entries().is_empty() {
            map.serialize_entry("grpcRules", self.0 .1.grpc_entries())?;
        }
        map.serialize_entry("rules", &self.0 .1.entries)?;
        map.end()
    }
}

/// A listener being built: TLS socket or not, the listener, its entries by hostname.
type PendingListener = (bool, Arc<ListenerRef>, BTreeMap<Hostname, Vec<Entry>>);

/// Builds a [`GatewayTable`] from listeners and the entries attached to each.
#[derive(Default)]
pub struct GatewayTableBuilder {
    listeners: Vec<PendingListener>,
}

impl GatewayTableBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a listener served on the TLS socket (`tls`) or the plain one; returns its id.
    /// Listeners of one socket must have distinct hostnames (the translator refuses the
    /// conflicting ones first).
    pub fn listener(&mut self, tls: bool, listener: ListenerRef) -> usize {
        self.listeners
            .push((tls, Arc::new(listener), BTreeMap::new()));
        self.listeners.len() - 1
    }

    /// Attaches one match of a rule to a listener under a route hostname (the intersection
    /// of the route's and the listener's).
    pub fn add(&mut self, listener: usize, hostname: Hostname, entry: Entry) {
        if let Some((_, _, levels)) = self.listeners.get_mut(listener) {
            levels.entry(hostname).or_default().push(entry);
        }
    }

    pub fn build(self) -> GatewayTable {
        let mut http = Vec::new();
        let mut https = Vec::new();
        for (tls, listener, levels) in self.listeners {
            let levels: Vec<(Hostname, Arc<RuleSet>)> = levels
                .into_iter()
                .map(|(h, entries)| (h, Arc::new(RuleSet::new(entries))))
                .collect();
            let view = ListenerView { listener, levels };
            if tls {
                https.push(view);
            } else {
                http.push(view);
            }
        }
        GatewayTable {
            http: socket(http),
            https: socket(https),
        }
    }
}

/// Precomputes, for every hostname any listener or route of the socket names, what a
/// request for it finds (see [`SocketRoutes::host`]).
fn socket(listeners: Vec<ListenerView>) -> SocketRoutes {
    let mut keys: Vec<Hostname> = listeners
        .iter()
        .flat_map(|l| {
            std::iter::once(l.listener.hostname.clone())
                .chain(l.levels.iter().map(|(h, _)| h.clone()))
        })
        .collect();
    keys.sort();
    keys.dedup();
    // Listener hostnames are distinct on one socket (the translator refuses the rest).
    let by_hostname: HashMap<&Hostname, &ListenerView, RandomState> = listeners
        .iter()
        .map(|l| (&l.listener.hostname, l))
        .collect();
    let levels_of: Vec<HashMap<&Hostname, &Arc<RuleSet>, RandomState>> = listeners
        .iter()
        .map(|l| l.levels.iter().map(|(h, set)| (h, set)).collect())
        .collect();
    let index_of: HashMap<*const ListenerView, usize, RandomState> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (l as *const ListenerView, i))
        .collect();
    let mut out = SocketRoutes::default();
    for key in keys {
        // Every hostname that takes this key's hosts, most specific first: the key itself,
        // the wildcards of its shorter suffixes, none. Lookups, not a scan: linear in the
        // number of hostnames.
        let covering = covering(&key);
        // The listener: the most specific hostname that takes this key's hosts.
        let Some(view) = covering.iter().find_map(|h| by_hostname.get(h).copied()) else {
            continue;
        };
        let own = &levels_of[index_of[&(view as *const ListenerView)]];
        let levels: Vec<(Hostname, Arc<RuleSet>)> = covering
            .iter()
            .filter_map(|h| own.get(h).map(|set| (h.clone(), Arc::clone(set))))
            .collect();
        let found = Arc::new(HostRoutes {
            listener: view.listener.clone(),
            levels,
        });
        match key {
            Hostname::Exact(h) => {
                out.exact.insert(h.into_boxed_str(), found);
            }
            Hostname::Wildcard(s) => {
                out.wildcard.insert(s.into_boxed_str(), found);
            }
            Hostname::Any => out.any = Some(found),
        }
    }
    out.listeners = listeners;
    out
}

/// The hostnames that take every host `key` takes, most specific first: `a.b.c` →
/// `a.b.c`, `*.b.c`, `*.c`, none; `*.b.c` → `*.b.c`, `*.c`, none.
fn covering(key: &Hostname) -> Vec<Hostname> {
    let mut out = vec![key.clone()];
    let mut rest = match key {
        Hostname::Exact(h) | Hostname::Wildcard(h) => h.as_str(),
        Hostname::Any => return out,
    };
    while let Some((_, suffix)) = rest.split_once('.') {
        out.push(Hostname::Wildcard(suffix.to_owned()));
        rest = suffix;
    }
    out.push(Hostname::Any);
    out
}

#[cfg(test)]
mod tests;
