//! The Gateway API part of `/debug/explain`: per socket (plain HTTP, HTTPS), which
//! listener takes the host, the route hostnames tried in order, every candidate rule in
//! precedence order with whether it matches and why not, and what the chosen rule does
//! (filters, weighted backends). The choice itself is the proxy's
//! ([`GatewayTable::lookup`]); the rest is reasoning around it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::model::gateway::{
    is_grpc, Action, BackendTarget, Entry, GatewayTable, PathRewrite, RequestFacts,
};

/// At most this many candidate rules are listed per socket.
const MAX_LISTED: usize = 200;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayCheck {
    /// `http` (the plain socket) or `https` (the TLS socket).
    pub socket: &'static str,
    pub steps: Vec<String>,
    pub rules: Vec<RuleCheck>,
    /// One sentence: which rule answers, or that the Ingress rules decide.
    pub summary: String,
    /// What the chosen rule does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// Whether a Gateway API rule answers (the Ingress rules are then not consulted).
    pub answers: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleCheck {
    pub hostname: String,
    pub route: String,
    pub rule: usize,
    #[serde(rename = "match")]
    pub what: String,
    pub matches: bool,
    pub chosen: bool,
    pub why: String,
}

/// Explains one request on one socket; None when no Gateway API listener is served there.
pub fn check(
    table: &GatewayTable,
    tls: bool,
    host: &str,
    path: &str,
    req: &RequestFacts<'_>,
) -> Option<GatewayCheck> {
    let socket = table.socket(tls);
    if socket.is_empty() {
        return None;
    }
    let name = if tls { "https" } else { "http" };
    let mut out = GatewayCheck {
        socket: name,
        steps: Vec::new(),
        rules: Vec::new(),
        summary: String::new(),
        actions: Vec::new(),
        answers: false,
    };
    let Some(found) = socket.host(host) else {
        out.summary = format!("no Gateway API listener on the {name} socket takes host {host}: the Ingress rules decide");
        return Some(out);
    };
    let l = &found.listener;
    out.steps.push(format!(
        "listener {} of {} ({} {}, hostname {}) takes {host}: the most specific listener hostname that matches; only the routes attached to it are tried",
        l.name, l.gateway, l.protocol, l.port, l.hostname
    ));
    let order: Vec<String> = found.levels.iter().map(|(h, _)| h.to_string()).collect();
    out.steps.push(if order.is_empty() {
        "no route attached to that listener has a hostname matching the request".to_owned()
    } else {
        format!(
            "route hostnames tried in this order (exact, longer wildcards, none): {}",
            order.join(", ")
        )
    });
    let chosen = table
        .lookup(tls, host, path, req)
        .map(|m| m.entry as *const Entry);
    'levels: for (hostname, set) in &found.levels {
        // GRPCRoute rules are tried first, for gRPC requests.
        for entry in set.grpc_entries().iter().chain(&set.entries) {
            if out.rules.len() >= MAX_LISTED {
                break 'levels;
            }
            let path_ok = entry.path.matches(path);
            let holds = entry.conditions.as_deref().is_none_or(|c| c.holds(req));
            let grpc_only = entry.rule.grpc && !is_grpc(req.headers);
            let is_chosen = chosen == Some(entry as *const Entry);
            let why = match (grpc_only, path_ok, holds) {
                (true, ..) => "a GRPCRoute rule: it takes gRPC requests only (content-type application/grpc; explain one with header=content-type:application/grpc)".to_owned(),
                (false, false, _) => format!(
                    "the path does not match {} {}",
                    entry.path.kind(),
                    entry.path.value()
                ),
                (false, true, false) => {
                    "the path matches, but not its method, headers or query parameters".to_owned()
                }
                (false, true, true) if is_chosen => {
                    "matches, and comes first in precedence order".to_owned()
                }
                (false, true, true) => {
                    "matches, but a rule before it in precedence order answers".to_owned()
                }
            };
            out.rules.push(RuleCheck {
                hostname: hostname.to_string(),
                route: format!(
                    "{}/{}",
                    entry.rule.route.namespace.as_deref().unwrap_or(""),
                    entry.rule.route.name
                ),
                rule: entry.rule.index,
                what: entry.summary(),
                matches: !grpc_only && path_ok && holds,
                chosen: is_chosen,
                why,
            });
        }
    }
    match table.lookup(tls, host, path, req) {
        None => {
            out.summary = format!(
                "no Gateway API rule of listener {} matches: the Ingress rules decide (the spec would answer 404; wicket lets Ingresses serve what Gateway API routes do not)",
                l.name
            );
        }
        Some(m) => {
            out.answers = true;
            let route = &m.entry.rule.route;
            out.summary = format!(
                "rule {} of HTTPRoute {}/{} answers over {name} (listener {} of {})",
                m.entry.rule.index,
                route.namespace.as_deref().unwrap_or(""),
                route.name,
                l.name,
                l.gateway
            );
            out.actions = actions(m.entry, host, path, tls, l.port);
        }
    }
    Some(out)
}

fn rewrite_text(p: &PathRewrite, path: &str) -> String {
    match p {
        PathRewrite::Full(to) => format!("ReplaceFullPath: the path becomes {to}"),
        PathRewrite::Prefix { matched, with } => format!(
            "ReplacePrefixMatch {matched} → {with:?}: the path becomes {}",
            p.apply(path)
        ),
    }
}

fn actions(entry: &Entry, host: &str, path: &str, tls: bool, port: u16) -> Vec<String> {
    let mut out = Vec::new();
    let (path_only, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    match &entry.rule.action {
        Action::Redirect(r) => {
            out.push(format!(
                "RequestRedirect: {} to {}",
                r.status,
                r.location(tls, host, path_only, query, port)
            ));
        }
        Action::Forward(f) => {
            if let Some(e) = &f.request {
                out.push(format!(
                    "RequestHeaderModifier: {}",
                    serde_json::to_string(e).unwrap_or_default()
                ));
            }
            if let Some(h) = f.policy.as_ref().and_then(|p| p.upstream_vhost.as_ref()) {
                out.push(format!(
                    "URLRewrite: the pod gets Host {}",
                    String::from_utf8_lossy(h.as_bytes())
                ));
            }
            if let Some(p) = &f.path {
                out.push(format!("URLRewrite {}", rewrite_text(p, path_only)));
            }
            if let Some(e) = &f.response {
                out.push(format!(
                    "ResponseHeaderModifier: {}",
                    serde_json::to_string(e).unwrap_or_default()
                ));
            }
            if let Some(why) = &f.none {
                out.push(format!("every request gets 500: {why}"));
            }
            for b in &f.backends {
                let share = if f.total == 0 {
                    "never".to_owned()
                } else {
                    format!("{}/{} of requests", b.weight, f.total)
                };
                let mut line = match &b.target {
                    BackendTarget::Backend(backend) => format!(
                        "backend {} ({share}; {} of {} endpoints usable)",
                        backend.id,
                        backend.usable_count(),
                        backend.endpoint_count()
                    ),
                    BackendTarget::Invalid(why) => format!("500 for {share}: {why}"),
                };
                if b.request.is_some() || b.response.is_some() {
                    let _ = write!(line, "; with its own header modifiers");
                }
                out.push(line);
            }
        }
    }
    out
}

/// The checks as text lines for `wicket explain` and the HTML page.
pub fn to_text(out: &mut String, checks: &[GatewayCheck]) {
    for c in checks {
        let _ = writeln!(out, "\nGateway API ({} socket):", c.socket);
        let _ = writeln!(out, "  => {}", c.summary);
        for s in &c.steps {
            let _ = writeln!(out, "  {s}");
        }
        for r in &c.rules {
            let mark = super::explain::mark(r.chosen, r.matches);
            let _ = writeln!(
                out,
                "  {mark} [{}] {} rule {}: {}: {}",
                r.hostname, r.route, r.rule, r.what, r.why
            );
        }
        for a in &c.actions {
            let _ = writeln!(out, "  {a}");
        }
    }
}
