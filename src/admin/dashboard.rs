//! The dashboard at `/` on the admin listener: the state of the whole proxy on one page,
//! for the person who has to find the one broken backend among two hundred.
//!
//! Built from what the other admin pages show — the snapshot in force, the outlier
//! detector, the last minute of traffic per pod address ([`super::traffic`]) — into a
//! [`View`], which is served as HTML (rendered here, complete without JavaScript; a small
//! embedded script refreshes it, sorts and filters), as JSON (`?format=json`) and as text
//! (`?format=text`). Every name from the cluster is HTML-escaped and long ones are cut;
//! the tables show at most [`MAX_ROWS`] rows each (unhealthy first; `?q=` filters), so the
//! page costs the same with 10,000 routes as with 500.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use super::report::rfc3339;
use super::traffic::{Summary, Traffic};
use crate::model::{
    Backend, Destination, Endpoint, ObjectRef, Outcome, Policy, Preference, Snapshot, Target,
    TlsBinding,
};
use crate::proxy::outlier::Outliers;

/// Rows per table at most.
pub const MAX_ROWS: usize = 500;
/// Longest name shown in full; longer ones are cut with an ellipsis.
const MAX_NAME: usize = 120;
/// Longest message or note shown in full (a Problem can quote a hostile value).
const MAX_TEXT: usize = 600;
/// Certificates expiring within this many days are flagged.
const WARN_DAYS: i64 = 14;

/// What the admin listener knows about the process it belongs to.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    /// "manifests DIR" or "cluster".
    pub mode: String,
    /// (name, address) of each listener.
    pub listeners: Vec<(&'static str, SocketAddr)>,
    /// In cluster mode: whether this replica holds the leader Lease now.
    pub leader: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Everything the dashboard shows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub version: &'static str,
    pub generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<u64>,
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<bool>,
    pub ready: bool,
    pub readiness: String,
    pub listeners: Vec<ListenerView>,
    pub filter: Option<String>,
    pub problems: Vec<ProblemView>,
    pub backends: Vec<BackendView>,
    pub backends_total: usize,
    pub routes: Vec<RouteView>,
    pub routes_total: usize,
    pub certificates: Vec<CertificateView>,
}

#[derive(Debug, Serialize)]
pub struct ListenerView {
    pub name: &'static str,
    pub address: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProblemView {
    pub object: String,
    pub reason: String,
    pub message: String,
    /// `/debug/explain` for a request the object's routes take, when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendView {
    pub id: String,
    /// `up`, `degraded`, `down` or `dns` (ExternalName).
    pub state: &'static str,
    pub usable: usize,
    pub total: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub traffic: Summary,
    pub endpoints: Vec<EndpointView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    /// `ready`, `terminating` (serving while terminating, used), `ejected`, `unused`
    /// (ready but not chosen: topology, traffic policy) or `not-ready`.
    pub state: &'static str,
    pub detail: String,
    pub traffic: Summary,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteView {
    pub host: String,
    pub path: String,
    pub path_type: &'static str,
    pub ingress: String,
    pub backend: String,
    /// The backend's state (`up`, `degraded`, `down`, `dns`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_state: Option<&'static str>,
    /// The backend cannot be used: why (the route answers 503).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    pub badges: Vec<&'static str>,
    pub annotations: Vec<AnnotationView>,
}

#[derive(Debug, Serialize)]
pub struct AnnotationView {
    pub name: String,
    pub outcome: &'static str,
    /// Whether the outcome deserves attention (not supported, invalid, blocks).
    pub warn: bool,
    pub note: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateView {
    pub host: String,
    pub secret: String,
    pub not_after: String,
    pub days_left: i64,
    pub warn: bool,
    /// TLS handshakes it was chosen for since start.
    pub served: u64,
}

/// What [`view`] reads.
pub struct Sources<'a> {
    pub snapshot: &'a Snapshot,
    pub outliers: Option<&'a Outliers>,
    pub traffic: Option<&'a Traffic>,
    pub info: &'a RunInfo,
    pub shutting_down: bool,
    /// How often each certificate was served.
    pub served: Option<&'a crate::proxy::tls::Served>,
}

/// Builds the view; `filter` keeps the backends, routes and Problems whose text contains it.
pub fn view(src: &Sources<'_>, filter: Option<&str>) -> View {
    let snapshot = src.snapshot;
    let filter = filter
        .map(|f| f.trim().to_lowercase())
        .filter(|f| !f.is_empty());
    let keep = |text: &str| {
        filter
            .as_deref()
            .is_none_or(|f| text.to_lowercase().contains(f))
    };
    let (ready, readiness) = if src.shutting_down {
        (false, "not ready: shutting down".to_owned())
    } else if !snapshot.is_ready() {
        (
            false,
            "not ready: no routing table published yet".to_owned(),
        )
    } else {
        (true, "ready".to_owned())
    };

    // Every backend once, by id, and a request that reaches each route's Ingress.
    let mut backends: BTreeMap<&str, &Arc<Backend>> = BTreeMap::new();
    let mut first_request: BTreeMap<(Option<&str>, &str), (String, String)> = BTreeMap::new();
    let mut routes = Vec::new();
    let mut routes_total = 0;
    for vhost in snapshot.table.virtual_hosts() {
        let host = vhost.host.to_string();
        let tls = snapshot.tls.entry(&vhost.host).is_some();
        for route in &vhost.routes {
            routes_total += 1;
            let targets =
                std::iter::once(&route.target).chain(route.canary.as_deref().map(|c| &c.target));
            for target in targets {
                if let Target::Backend(b) = target {
                    backends.insert(&b.id, b);
                }
            }
            first_request
                .entry((
                    route.ingress.namespace.as_deref(),
                    route.ingress.name.as_str(),
                ))
                .or_insert_with(|| (host.clone(), example_path(&route.path)));
            let ingress = object_name(&route.ingress);
            let backend = target_name(&route.target);
            let text = format!("{host} {} {ingress} {backend}", route.path);
            if routes.len() < MAX_ROWS && keep(&text) {
                routes.push(RouteView {
                    host: host.clone(),
                    path: route.path.clone(),
                    path_type: route.path_type.as_str(),
                    ingress,
                    backend,
                    backend_state: None,
                    unavailable: match &route.target {
                        Target::Unavailable(why) => Some(why.to_string()),
                        Target::Backend(_) => None,
                    },
                    badges: badges(tls, route),
                    annotations: annotations(snapshot, &route.ingress),
                });
            }
        }
    }
    if let Some(Target::Backend(b)) = snapshot.table.default_backend().map(|d| &d.target) {
        backends.insert(&b.id, b);
    }
    for (_, p) in snapshot.table.passthrough_hosts() {
        if let Target::Backend(b) = &p.target {
            backends.insert(&b.id, b);
        }
    }

    let backends_total = backends.len();
    let mut backend_views: Vec<BackendView> = backends
        .values()
        .filter(|b| keep(&b.id))
        .map(|b| backend_view(b, src.outliers, src.traffic))
        .collect();
    // The broken ones first, then the busiest.
    backend_views.sort_by(|a, b| {
        state_rank(a.state)
            .cmp(&state_rank(b.state))
            .then(b.traffic.requests.cmp(&a.traffic.requests))
            .then(a.id.cmp(&b.id))
    });
    let states: BTreeMap<&str, &'static str> = backend_views
        .iter()
        .map(|b| (b.id.as_str(), b.state))
        .collect();
    for r in &mut routes {
        r.backend_state = states.get(r.backend.as_str()).copied();
    }
    backend_views.truncate(MAX_ROWS);

    let problems = snapshot
        .problems
        .iter()
        .filter(|p| keep(&format!("{} {} {}", p.object, p.reason, p.message)))
        .take(MAX_ROWS)
        .map(|p| ProblemView {
            object: p.object.to_string(),
            reason: p.reason.to_string(),
            message: p.message.clone(),
            explain: (p.object.kind == "Ingress")
                .then(|| {
                    first_request.get(&(p.object.namespace.as_deref(), p.object.name.as_str()))
                })
                .flatten()
                .map(|(host, path)| explain_link(host, path)),
        })
        .collect();

    let now = SystemTime::now();
    let certificates = snapshot
        .tls
        .hosts()
        .into_iter()
        .filter_map(|t| match &t.binding {
            TlsBinding::Secret(cert) => Some((t.host.to_string(), cert)),
            _ => None,
        })
        .filter(|(host, cert)| keep(&format!("{host} {}", cert.secret)))
        .take(MAX_ROWS)
        .map(|(host, cert)| {
            let left = match cert.not_after.duration_since(now) {
                Ok(d) => (d.as_secs() / 86_400) as i64,
                Err(e) => -((e.duration().as_secs() / 86_400) as i64) - 1,
            };
            CertificateView {
                host,
                secret: object_name(&cert.secret),
                not_after: rfc3339(cert.not_after),
                days_left: left,
                warn: left < WARN_DAYS,
                served: src.served.map_or(0, |s| s.get(cert.fingerprint)),
            }
        })
        .collect();

    View {
        version: env!("CARGO_PKG_VERSION"),
        generation: snapshot.generation,
        age_seconds: snapshot
            .published_at
            .and_then(|t| now.duration_since(t).ok())
            .map(|d| d.as_secs()),
        mode: src.info.mode.clone(),
        leader: src.info.leader.as_ref().map(|l| *l.borrow()),
        ready,
        readiness,
        listeners: src
            .info
            .listeners
            .iter()
            .map(|(name, addr)| ListenerView {
                name,
                address: addr.to_string(),
            })
            .collect(),
        filter,
        problems,
        backends: backend_views,
        backends_total,
        routes,
        routes_total,
        certificates,
    }
}

fn state_rank(state: &str) -> u8 {
    match state {
        "down" => 0,
        "degraded" => 1,
        "up" => 2,
        _ => 3,
    }
}

/// A path a request could take for a route's path (regex and wildcard parts dropped).
fn example_path(path: &str) -> String {
    let cut = path
        .find(|c: char| "*([{^$\\|?+".contains(c))
        .unwrap_or(path.len());
    let p = &path[..cut];
    if p.is_empty() {
        "/".to_owned()
    } else {
        p.to_owned()
    }
}

fn explain_link(host: &str, path: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("host", host)
        .append_pair("path", path)
        .append_pair("format", "html")
        .finish();
    format!("/debug/explain?{query}")
}

fn object_name(o: &ObjectRef) -> String {
    match o.namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", o.name),
        None => o.name.clone(),
    }
}

fn target_name(t: &Target) -> String {
    match t {
        Target::Backend(b) => b.id.to_string(),
        Target::Unavailable(_) => "-".to_owned(),
    }
}

fn backend_view(
    b: &Backend,
    outliers: Option<&Outliers>,
    traffic: Option<&Traffic>,
) -> BackendView {
    let (endpoints, fallback, selection) = match &b.destination {
        Destination::Endpoints {
            endpoints,
            fallback,
            selection,
            ..
        } => (endpoints.as_slice(), *fallback, Some(selection)),
        Destination::ExternalName { host, port, .. } => {
            return BackendView {
                id: b.id.to_string(),
                state: "dns",
                usable: 0,
                total: 0,
                note: Some(format!(
                    "ExternalName {host}:{port}, resolved when connecting"
                )),
                traffic: Summary::default(),
                endpoints: Vec::new(),
            }
        }
    };
    let figures = |addrs: &mut dyn Iterator<Item = SocketAddr>| {
        traffic
            .map(|t| t.figures(addrs).summary())
            .unwrap_or_default()
    };
    let mut ejected = 0;
    let views: Vec<EndpointView> = endpoints
        .iter()
        .take(MAX_ROWS)
        .map(|e| {
            let ejection = outliers
                .filter(|_| e.usable)
                .and_then(|o| o.ejection(e.addr));
            let (state, detail) = match (&ejection, e) {
                (Some(j), _) => {
                    ejected += 1;
                    ("ejected", j.describe())
                }
                (None, e) if e.usable && e.ready => ("ready", "ready".to_owned()),
                (None, e) if e.usable => (
                    "terminating",
                    "serving while terminating: used because no endpoint is ready".to_owned(),
                ),
                (None, e) if e.ready || (e.serving && e.terminating) => (
                    "unused",
                    unused_why(selection.map(|s| s.preference)).to_owned(),
                ),
                (None, e) if e.terminating => ("not-ready", "terminating".to_owned()),
                (None, _) => ("not-ready", "not ready".to_owned()),
            };
            EndpointView {
                address: e.addr.to_string(),
                pod: e.pod.clone(),
                place: place(e),
                state,
                detail,
                traffic: figures(&mut std::iter::once(e.addr)),
            }
        })
        .collect();
    let usable = b.usable_count();
    let state = if usable == 0 || ejected >= usable {
        "down"
    } else if ejected > 0 || fallback {
        "degraded"
    } else {
        "up"
    };
    let note = if usable == 0 {
        Some(match selection.and_then(|s| s.note.clone()) {
            Some(n) if selection.is_some_and(|s| s.preference == Preference::NodeLocal) => n,
            _ if endpoints.is_empty() => "the Service has no endpoints: requests get 503".into(),
            _ => "no endpoint is ready or serving: requests get 503".into(),
        })
    } else {
        selection.and_then(|s| s.note.clone())
    };
    BackendView {
        id: b.id.to_string(),
        state,
        usable,
        total: endpoints.len(),
        note,
        traffic: figures(&mut endpoints.iter().map(|e| e.addr)),
        endpoints: views,
    }
}

fn unused_why(preference: Option<Preference>) -> &'static str {
    match preference {
        Some(Preference::NodeLocal) => "not on this node (internalTrafficPolicy: Local)",
        Some(Preference::SameNode) => "not hinted for this node (topology)",
        Some(Preference::SameZone) => "not hinted for this zone (topology)",
        _ => "ready, but not used",
    }
}

fn place(e: &Endpoint) -> Option<String> {
    match (&e.node, &e.zone) {
        (Some(n), Some(z)) => Some(format!("{n} / {z}")),
        (Some(n), None) => Some(n.to_string()),
        (None, Some(z)) => Some(z.to_string()),
        (None, None) => None,
    }
}

fn badges(tls: bool, route: &crate::model::Route) -> Vec<&'static str> {
    let mut out = Vec::new();
    if tls {
        out.push("TLS");
    }
    if matches!(route.target, Target::Unavailable(_)) {
        out.push("503");
    }
    if route.canary.is_some() {
        out.push("canary");
    }
    if route.rewrite.is_some() {
        out.push("rewrite");
    }
    if let Some(p) = route.policy.as_deref() {
        policy_badges(p, &mut out);
    }
    out
}

fn policy_badges(p: &Policy, out: &mut Vec<&'static str>) {
    let flags: [(bool, &'static str); 11] = [
        (p.blocked.is_some(), "blocked"),
        (p.redirect.is_some() || p.force_ssl_redirect, "redirect"),
        (p.basic_auth.is_some(), "basic-auth"),
        (p.external_auth.is_some(), "auth-url"),
        (p.source.is_some(), "source-range"),
        (p.rate_limit.is_some(), "rate-limit"),
        (p.cors.is_some(), "cors"),
        (
            p.affinity.is_some() || p.hash_by.is_some() || p.ewma,
            "balancing",
        ),
        (p.errors.is_some(), "error-pages"),
        (!p.response_headers.is_empty(), "headers"),
        (
            p.connect_timeout.is_some() || p.read_timeout.is_some() || p.send_timeout.is_some(),
            "timeouts",
        ),
    ];
    out.extend(flags.iter().filter(|(on, _)| *on).map(|(_, name)| *name));
}

fn annotations(snapshot: &Snapshot, ingress: &ObjectRef) -> Vec<AnnotationView> {
    snapshot
        .annotations
        .iter()
        .find(|a| a.ingress == *ingress)
        .map(|a| {
            a.annotations
                .iter()
                .map(|o| AnnotationView {
                    name: o.name.clone(),
                    outcome: o.outcome.as_str(),
                    warn: matches!(
                        o.outcome,
                        Outcome::Unsupported
                            | Outcome::Invalid
                            | Outcome::Blocks
                            | Outcome::Refused
                    ),
                    note: o.note.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// HTML

/// HTML-escapes `s`, cut to [`MAX_NAME`] characters.
pub fn esc(s: &str) -> String {
    esc_cut(s, MAX_NAME)
}

/// HTML-escapes `s` whole (text and attribute values alike).
pub fn escape(s: &str) -> String {
    esc_cut(s, usize::MAX)
}

/// HTML-escapes a message or note, cut to [`MAX_TEXT`] characters.
fn esc_all(s: &str) -> String {
    esc_cut(s, MAX_TEXT)
}

fn esc_cut(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max.saturating_mul(2)));
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ms(v: Option<u32>, requests: u64) -> String {
    match (v, requests) {
        (_, 0) => "–".to_owned(),
        (Some(ms), _) => format!("≤{ms} ms"),
        (None, _) => ">10 s".to_owned(),
    }
}

fn figures_cells(out: &mut String, t: &Summary) {
    let _ = write!(
        out,
        "<td class=num data-v=\"{}\">{}</td><td class=num data-v=\"{}\">{}</td><td class=num data-v=\"{}\">{}</td><td class=\"num{}\" data-v=\"{}\">{}</td><td class=\"num{}\" data-v=\"{}\">{}</td><td class=num data-v=\"{}\">{}</td><td class=num data-v=\"{}\">{}</td><td class=\"num{}\" data-v=\"{}\">{}</td>",
        t.per_second,
        t.per_second,
        t.ok,
        t.ok,
        t.redirects,
        t.redirects,
        if t.client_errors > 0 { " warn" } else { "" },
        t.client_errors,
        t.client_errors,
        if t.server_errors > 0 { " bad" } else { "" },
        t.server_errors,
        t.server_errors,
        t.p50_ms.unwrap_or(u32::MAX),
        ms(t.p50_ms, t.requests),
        t.p99_ms.unwrap_or(u32::MAX),
        ms(t.p99_ms, t.requests),
        if t.connect_errors > 0 { " bad" } else { "" },
        t.connect_errors,
        t.connect_errors,
    );
}

/// The part of the page the script refreshes.
pub fn live_html(v: &View) -> String {
    let mut out = String::with_capacity(16 * 1024);
    // Header figures.
    let _ = write!(
        out,
        "<section id=summary><span class=\"pill {}\" id=readiness>{}</span> <span>generation <b id=generation>{}</b>{}</span> <span id=mode>{}{}</span> <span>listeners: {}</span></section>",
        if v.ready { "up" } else { "down" },
        esc(&v.readiness),
        v.generation,
        v.age_seconds
            .map(|a| format!(", published {} ago", age(a)))
            .unwrap_or_default(),
        esc(&v.mode),
        match v.leader {
            Some(true) => " · leader",
            Some(false) => " · follower",
            None => "",
        },
        v.listeners
            .iter()
            .map(|l| format!("{} {}", l.name, esc(&l.address)))
            .collect::<Vec<_>>()
            .join(", "),
    );

    if !v.problems.is_empty() {
        let _ = write!(
            out,
            "<section id=problems><h2>Problems <span class=count>{}</span></h2><table><thead><tr><th>Object</th><th>Reason</th><th>Message</th><th></th></tr></thead><tbody>",
            v.problems.len()
        );
        for p in &v.problems {
            let _ = write!(
                out,
                "<tr class=problem><td><a href=\"/debug/routes?format=html\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.object),
                esc(&p.reason),
                esc_all(&p.message),
                p.explain
                    .as_ref()
                    .map(|l| format!("<a href=\"{}\">explain</a>", esc_all(l)))
                    .unwrap_or_default(),
            );
        }
        out.push_str("</tbody></table></section>");
    }

    let _ = write!(
        out,
        "<section id=backends><h2>Backends <span class=count>{}</span>{}</h2><table class=sortable><thead><tr><th data-sort=text>Backend</th><th data-sort=text>State</th><th data-sort=num>Endpoints</th><th data-sort=num>req/s</th><th data-sort=num>2xx</th><th data-sort=num>3xx</th><th data-sort=num>4xx</th><th data-sort=num>5xx</th><th data-sort=num>p50</th><th data-sort=num>p99</th><th data-sort=num>connect errors</th></tr></thead><tbody>",
        v.backends_total,
        shown(v.backends.len(), v.backends_total),
    );
    for b in &v.backends {
        let _ = write!(
            out,
            "<tr class=\"backend {}\" data-id=\"{}\"><td><details{}><summary>{}</summary>{}<table class=endpoints{}><thead><tr><th>Endpoint</th><th>Pod</th><th>Node / zone</th><th>State</th><th>req/s</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th><th>p50</th><th>p99</th><th>connect errors</th></tr></thead><tbody>",
            b.state,
            esc_all(&b.id),
            // The broken ones open, so what is wrong shows without a click.
            if matches!(b.state, "down" | "degraded") { " open" } else { "" },
            esc(&b.id),
            b.note
                .as_ref()
                .map(|n| format!("<p class=note>{}</p>", esc_all(n)))
                .unwrap_or_default(),
            if b.endpoints.is_empty() { " hidden" } else { "" },
        );
        for e in &b.endpoints {
            let _ = write!(
                out,
                "<tr class=\"endpoint {}\"><td>{}</td><td>{}</td><td>{}</td><td title=\"{}\">{}</td>",
                e.state,
                esc(&e.address),
                esc(e.pod.as_deref().unwrap_or("")),
                esc(e.place.as_deref().unwrap_or("")),
                esc_all(&e.detail),
                esc(&e.detail),
            );
            figures_cells(&mut out, &e.traffic);
            out.push_str("</tr>");
        }
        let _ = write!(
            out,
            "</tbody></table></details></td><td class=state data-v=\"{}\"><span class=\"pill {}\">{}</span></td><td class=num data-v=\"{}\">{}/{}</td>",
            state_rank(b.state),
            b.state,
            b.state,
            b.usable,
            b.usable,
            b.total
        );
        figures_cells(&mut out, &b.traffic);
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></section>");

    let _ = write!(
        out,
        "<section id=routes><h2>Routes <span class=count>{}</span>{}</h2><table class=sortable><thead><tr><th data-sort=text>Host</th><th data-sort=text>Path</th><th data-sort=text>Type</th><th data-sort=text>Ingress</th><th data-sort=text>Backend</th><th>Policies</th><th>Annotations</th></tr></thead><tbody>",
        v.routes_total,
        shown(v.routes.len(), v.routes_total),
    );
    for r in &v.routes {
        let _ = write!(
            out,
            "<tr class=route><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>",
            esc(&r.host),
            esc(&r.path),
            r.path_type,
            esc(&r.ingress),
            match (&r.unavailable, r.backend_state) {
                (Some(why), _) => format!("<span class=\"pill down\" title=\"{}\">503</span>", esc_all(why)),
                (None, Some(state)) if state != "up" => format!("{} <span class=\"pill {state}\">{state}</span>", esc(&r.backend)),
                (None, _) => esc(&r.backend),
            },
            r.badges
                .iter()
                .map(|b| format!("<span class=\"badge {b}\">{b}</span>"))
                .collect::<String>(),
        );
        if !r.annotations.is_empty() {
            let warn = r.annotations.iter().filter(|a| a.warn).count();
            let _ = write!(
                out,
                "<details><summary>{}{}</summary><ul>",
                r.annotations.len(),
                if warn > 0 {
                    format!(" <span class=\"pill degraded\">{warn} to check</span>")
                } else {
                    String::new()
                }
            );
            for a in &r.annotations {
                let _ = write!(
                    out,
                    "<li class=\"{}\"><code>{}</code>: {}{}</li>",
                    if a.warn { "warn" } else { "" },
                    esc(&a.name),
                    a.outcome,
                    if a.note.is_empty() {
                        String::new()
                    } else {
                        format!(" — {}", esc_all(&a.note))
                    }
                );
            }
            out.push_str("</ul></details>");
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table></section>");

    if !v.certificates.is_empty() {
        let _ = write!(
            out,
            "<section id=certificates><h2>Certificates <span class=count>{}</span></h2><table class=sortable><thead><tr><th data-sort=text>Host</th><th data-sort=text>Secret</th><th data-sort=text>Not after</th><th data-sort=num>Days left</th><th data-sort=num>Served</th></tr></thead><tbody>",
            v.certificates.len()
        );
        for c in &v.certificates {
            let _ = write!(
                out,
                "<tr class=\"certificate{}\"><td>{}</td><td>{}</td><td>{}</td><td class=num data-v=\"{}\">{}</td><td class=num data-v=\"{}\">{}</td></tr>",
                if c.warn { " warn" } else { "" },
                esc(&c.host),
                esc(&c.secret),
                c.not_after,
                c.days_left,
                c.days_left,
                c.served,
                c.served
            );
        }
        out.push_str("</tbody></table></section>");
    }
    out
}

fn shown(rows: usize, total: usize) -> String {
    if rows < total {
        format!(" <small>{rows} shown; narrow with the filter</small>")
    } else {
        String::new()
    }
}

fn age(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        _ => format!("{} h", secs / 3600),
    }
}

/// The whole page.
pub fn page(v: &View) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>wicket</title><style>{STYLE}</style></head><body>\
         <header><h1>wicket <small>{}</small></h1><nav><a href=\"/debug/routes?format=html\">routing table</a> · <a href=\"/?format=json\">JSON</a> · <a href=\"/?format=text\">text</a> · <a href=\"/metrics\">metrics</a></nav>\
         <form id=filter method=get action=\"/\"><input name=q id=q placeholder=\"filter: host, path, Service, Ingress\" value=\"{}\"><button>Filter</button></form>\
         <form id=explain method=get action=\"/debug/explain\"><input type=hidden name=format value=html>Explain a request: <input name=host placeholder=host required> <input name=path value=\"/\"> <button>Explain</button></form></header>\
         <main id=live>{}</main><script>{SCRIPT}</script></body></html>\n",
        v.version,
        esc_all(v.filter.as_deref().unwrap_or("")),
        live_html(v),
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 1.5em 2em;color:#222}\
header{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd;z-index:1}\
h1{margin:.2em 0;font-size:1.4em}h1 small{font-weight:normal;color:#777}h2{font-size:1.15em;margin:1.2em 0 .4em}\
header form{display:inline-block;margin:.3em 1.5em .3em 0}nav{display:inline-block;margin-right:1.5em}\
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{text-align:left;padding:.25em .5em;border-bottom:1px solid #eee;vertical-align:top}\
th[data-sort]{cursor:pointer}th[data-sort]:hover{text-decoration:underline}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
.pill{display:inline-block;padding:0 .5em;border-radius:.8em;font-size:.85em;color:#fff;background:#888}\
.pill.up{background:#2e8b3a}.pill.degraded{background:#d98200}.pill.down{background:#c62828}.pill.dns{background:#4a6fa5}\
tr.backend.down>td{background:#fdecea}tr.backend.degraded>td{background:#fff6e5}\
tr.endpoint.ready td:first-child{border-left:4px solid #2e8b3a}tr.endpoint.ejected td{background:#fdecea}tr.endpoint.ejected td:first-child{border-left:4px solid #c62828}\
tr.endpoint.terminating td:first-child{border-left:4px solid #d98200}tr.endpoint.not-ready td,tr.endpoint.unused td{color:#888}tr.endpoint.not-ready td:first-child,tr.endpoint.unused td:first-child{border-left:4px solid #bbb}\
td.bad{color:#c62828;font-weight:bold}td.warn,li.warn,tr.certificate.warn td{color:#b06000}\
#problems table{background:#fdecea}.count{color:#777;font-weight:normal}.note{margin:.3em 0;color:#555}\
.badge{display:inline-block;border:1px solid #bbb;border-radius:.3em;padding:0 .3em;margin:0 .2em .1em 0;font-size:.8em}.badge.blocked,.badge.\\35 03{border-color:#c62828;color:#c62828}\
table.endpoints{margin:.3em 0 .6em;font-size:.95em}summary{cursor:pointer}#summary span{margin-right:1.2em}";

/// Refreshes `#live` every 5 s (keeping open rows, the sort and the filter), sorts a table
/// by a clicked header, filters rows as one types. The page works without it.
const SCRIPT: &str = r#"(function(){
var sortBy={};
function applyFilter(){var q=document.getElementById('q').value.toLowerCase();
document.querySelectorAll('#live tbody>tr.backend,#live tbody>tr.route,#live tbody>tr.problem,#live tbody>tr.certificate').forEach(function(r){r.style.display=(!q||r.textContent.toLowerCase().indexOf(q)>=0)?'':'none';});}
function sortTable(t,i,kind,desc){var b=t.tBodies[0];var rows=Array.prototype.slice.call(b.rows);
rows.sort(function(x,y){var a=x.cells[i],c=y.cells[i];var va=a.dataset.v!==undefined?a.dataset.v:a.textContent,vc=c.dataset.v!==undefined?c.dataset.v:c.textContent;
var r=kind==='num'?(parseFloat(va)-parseFloat(vc)):va.localeCompare(vc);return desc?-r:r;});rows.forEach(function(r){b.appendChild(r);});}
function wire(){document.querySelectorAll('#live table.sortable').forEach(function(t,ti){var hs=t.tHead.rows[0].cells;
Array.prototype.forEach.call(hs,function(h,i){if(!h.dataset.sort)return;h.onclick=function(){var s=sortBy[ti];var desc=s&&s.i===i?!s.desc:false;sortBy[ti]={i:i,desc:desc};sortTable(t,i,h.dataset.sort,desc);};});
var s=sortBy[ti];if(s)sortTable(t,s.i,hs[s.i].dataset.sort,s.desc);});applyFilter();}
document.getElementById('q').addEventListener('input',applyFilter);
document.getElementById('filter').addEventListener('submit',function(e){e.preventDefault();applyFilter();});
function key(d){var r=d.closest('tr');return r?(r.dataset.id||r.textContent.slice(0,80)):'';}
function refresh(){var open={};document.querySelectorAll('#live details').forEach(function(d){open[key(d)]=d.open;});
fetch('/?fragment=1',{cache:'no-store'}).then(function(r){return r.ok?r.text():null;}).then(function(h){if(h===null)return;var l=document.getElementById('live');l.innerHTML=h;
l.querySelectorAll('details').forEach(function(d){var k=key(d);if(k in open)d.open=open[k];});l.dataset.refreshed=(+l.dataset.refreshed||0)+1;wire();}).catch(function(){});}
wire();setInterval(refresh,5000);})();"#;

// ---------------------------------------------------------------------------------------
// Text

/// The dashboard for terminals.
pub fn text(v: &View) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "wicket {} · generation {}{} · {}{} · {}",
        v.version,
        v.generation,
        v.age_seconds
            .map(|a| format!(" (published {} ago)", age(a)))
            .unwrap_or_default(),
        v.mode,
        match v.leader {
            Some(true) => " (leader)",
            Some(false) => " (follower)",
            None => "",
        },
        v.readiness
    );
    if !v.problems.is_empty() {
        let _ = writeln!(out, "\nProblems ({}):", v.problems.len());
        for p in &v.problems {
            let _ = writeln!(out, "  {}: {}: {}", p.object, p.reason, p.message);
        }
    }
    let _ = writeln!(
        out,
        "\nBackends ({} of {}):\n  {:<40} {:<9} {:>9} {:>8} {:>6} {:>6} {:>6} {:>9} {:>9} {:>8}",
        v.backends.len(),
        v.backends_total,
        "BACKEND",
        "STATE",
        "ENDPOINTS",
        "REQ/S",
        "2XX",
        "4XX",
        "5XX",
        "P50",
        "P99",
        "CONNERR"
    );
    for b in &v.backends {
        let t = &b.traffic;
        let _ = writeln!(
            out,
            "  {:<40} {:<9} {:>9} {:>8} {:>6} {:>6} {:>6} {:>9} {:>9} {:>8}",
            b.id,
            b.state,
            format!("{}/{}", b.usable, b.total),
            t.per_second,
            t.ok,
            t.client_errors,
            t.server_errors,
            ms(t.p50_ms, t.requests),
            ms(t.p99_ms, t.requests),
            t.connect_errors
        );
        for e in b.endpoints.iter().filter(|e| e.state != "ready") {
            let _ = writeln!(out, "    {} {}: {}", e.address, e.state, e.detail);
        }
    }
    if !v.certificates.is_empty() {
        let _ = writeln!(out, "\nCertificates:");
        for c in &v.certificates {
            let _ = writeln!(
                out,
                "  {} {} not after {} ({} days, served {}){}",
                c.host,
                c.secret,
                c.not_after,
                c.days_left,
                c.served,
                if c.warn { "  << renew" } else { "" }
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_cut() {
        assert_eq!(esc("<script>\"&'"), "&lt;script&gt;&quot;&amp;&#39;");
        let long = "a".repeat(500);
        let cut = esc(&long);
        assert_eq!(cut.chars().count(), MAX_NAME + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn messages_are_escaped_and_cut_longer() {
        let hostile = format!("<img src=x onerror=alert(1)>{}", "x".repeat(5000));
        let shown = esc_all(&hostile);
        assert!(shown.starts_with("&lt;img src=x onerror=alert(1)&gt;"));
        assert_eq!(shown.chars().filter(|c| *c == '<').count(), 0);
        assert!(shown.chars().count() < MAX_TEXT + 20, "{}", shown.len());
    }

    #[test]
    fn example_paths_drop_patterns() {
        assert_eq!(example_path("/api/v[0-9]+"), "/api/v");
        assert_eq!(example_path("/"), "/");
        assert_eq!(example_path("(/|$)(.*)"), "/");
    }
}
