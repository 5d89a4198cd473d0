//! `/debug/explain?host=H&path=P` and `wicket explain`: which virtual host and rule a
//! request would get and why, which rules were considered and rejected, which backend,
//! which of its endpoints take traffic and why the others do not.
//!
//! The answer is the proxy's own lookup ([`RouteTable::lookup`]); the rest is the reasoning
//! around it, so the explanation can never disagree with what the proxy does.

use std::fmt::Write as _;

use serde::Serialize;

use crate::model::{
    collapse_slashes, normalize_prefix, segment_count, Backend, Destination, Endpoint, Lookup,
    PathType, Policy, Preference, Route, RouteTable, Snapshot, Target, VirtualHost,
};
use crate::proxy::outlier::Outliers;
use crate::proxy::route::normalize_host;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub host: String,
    pub path: String,
    /// The host as the proxy compares it (lowercase, no port, no trailing dot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalized_host: Option<String>,
    /// Why the Host would be refused (400), when it would.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_error: Option<String>,
    /// How the virtual host was chosen, step by step.
    pub host_steps: Vec<String>,
    /// The virtual host chosen, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_host: Option<String>,
    /// Every rule of that host, with whether it matches and why (not).
    pub rules: Vec<RuleCheck>,
    /// What answers: `route`, `defaultBackend`, `redirect`, `notFound` or `badRequest`.
    pub outcome: String,
    /// One sentence.
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendCheck>,
    /// What the answering Ingress's annotations ask of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// What the host's HTTPS certificate is, when it is a TLS host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// The route's canary: its backend, and which requests it takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryCheck>,
    /// Gateway API, per socket: tried before the Ingress rules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gateway_api: Vec<super::explain_gateway::GatewayCheck>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryCheck {
    pub ingress: String,
    /// In the order they are applied; the first that decides wins.
    pub rules: Vec<String>,
    pub backend: BackendCheck,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleCheck {
    pub path: String,
    pub path_type: PathType,
    pub ingress: String,
    pub matches: bool,
    pub chosen: bool,
    pub why: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendCheck {
    /// `namespace/service:port`, or why it cannot be used.
    pub backend: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// How this replica chose among the endpoints (internalTrafficPolicy, topology hints).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection: Option<String>,
    pub endpoints: Vec<EndpointCheck>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointCheck {
    pub address: String,
    pub usable: bool,
    pub why: String,
}

/// Explains `host` + `path` against `snapshot`; `outliers`, when given, says which
/// endpoints are out of rotation for failing.
pub fn explain(
    snapshot: &Snapshot,
    host: &str,
    path: &str,
    outliers: Option<&Outliers>,
) -> Explanation {
    explain_request(
        snapshot,
        host,
        path,
        &http::Method::GET,
        &http::HeaderMap::new(),
        outliers,
    )
}

/// [`explain`] for a request with this method and these headers (Gateway API rules match
/// on them).
pub fn explain_request(
    snapshot: &Snapshot,
    host: &str,
    path: &str,
    method: &http::Method,
    headers: &http::HeaderMap,
    outliers: Option<&Outliers>,
) -> Explanation {
    let mut e = explain_ingress(snapshot, host, path, outliers);
    let (Some(table), Some(normalized)) = (snapshot.gateway.as_deref(), e.normalized_host.clone())
    else {
        return e;
    };
    let path = if path.is_empty() { "/" } else { path };
    let (path_only, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let facts = crate::model::gateway::RequestFacts {
        method,
        headers,
        query,
    };
    for tls in [false, true] {
        if let Some(check) =
            super::explain_gateway::check(table, tls, &normalized, path_only, &facts)
        {
            e.gateway_api.push(check);
        }
    }
    if let Some(plain) = e
        .gateway_api
        .iter()
        .find(|c| c.socket == "http" && c.answers)
    {
        e.summary = format!(
            "{}; the Ingress rules are not consulted (without Gateway API: {})",
            plain.summary, e.summary
        );
        e.outcome = "gatewayRoute".into();
    } else if e.gateway_api.iter().any(|c| c.answers) {
        let _ = write!(
            e.summary,
            " (over plain HTTP; over HTTPS a Gateway API rule answers, see gatewayApi)"
        );
    }
    e
}

fn explain_ingress(
    snapshot: &Snapshot,
    host: &str,
    path: &str,
    outliers: Option<&Outliers>,
) -> Explanation {
    let mut e = Explanation {
        host: host.to_owned(),
        path: path.to_owned(),
        normalized_host: None,
        host_error: None,
        host_steps: Vec::new(),
        virtual_host: None,
        rules: Vec::new(),
        outcome: String::new(),
        summary: String::new(),
        backend: None,
        policy: None,
        tls: None,
        canary: None,
        gateway_api: Vec::new(),
    };
    let path = if path.is_empty() { "/" } else { path };
    let normalized = match normalize_host(host) {
        Ok(h) => h.into_owned(),
        Err(why) => {
            e.host_error = Some(why.to_owned());
            e.outcome = "badRequest".into();
            e.summary = format!("400: the Host {host:?} is refused ({why})");
            return e;
        }
    };
    e.normalized_host = Some(normalized.clone());
    if !path.starts_with('/') {
        e.outcome = "badRequest".into();
        e.summary = "400: a request path starts with /".into();
        return e;
    }
    if let Some(to) = snapshot.table.www_redirect(&normalized) {
        e.outcome = "redirect".into();
        e.summary = format!("308 to {to}: an Ingress of {to} sets from-to-www-redirect");
        return e;
    }
    host_steps(&snapshot.table, &normalized, &mut e.host_steps);

    let lookup = snapshot.table.lookup(&normalized, path);
    if path == "/" {
        if let Some(root) = lookup.vhost().and_then(|v| v.app_root.as_ref()) {
            e.virtual_host = lookup.vhost().map(|v| v.host.to_string());
            e.outcome = "redirect".into();
            e.summary = format!(
                "302 to {}: app-root of Ingress {}",
                root.path,
                display_ref(&root.ingress)
            );
            return e;
        }
    }
    e.policy = lookup.policy().map(|p| (**p).clone());
    let (vhost, chosen) = match &lookup {
        Lookup::Route { vhost, route } => (Some(*vhost), Some(*route)),
        Lookup::Default { vhost, .. } | Lookup::NotFound { vhost } => (*vhost, None),
    };
    if let Some(vhost) = vhost {
        e.virtual_host = Some(vhost.host.to_string());
        e.rules = rule_checks(vhost, path, chosen);
    }
    match lookup {
        Lookup::Route { route, .. } => {
            e.outcome = "route".into();
            e.summary = format!(
                "{} {} of Ingress {} answers",
                route.path_type.as_str(),
                route.path,
                ingress_name(route)
            );
            if let Some(rewrite) = &route.rewrite {
                let (p, q) = match path.split_once('?') {
                    Some((p, q)) => (p, Some(q)),
                    None => (path, None),
                };
                match rewrite.apply(&collapse_slashes(p), q) {
                    Some(to) if rewrite.is_redirect() => {
                        e.outcome = "redirect".into();
                        e.summary = format!(
                            "302 to {to}: rewrite-target {} of Ingress {}",
                            rewrite.target(),
                            ingress_name(route)
                        );
                        return e;
                    }
                    Some(to) => {
                        let _ = write!(
                            e.summary,
                            "; rewrite-target {}: the pod gets {to}",
                            rewrite.target()
                        );
                    }
                    None => {
                        let _ = write!(
                            e.summary,
                            "; rewrite-target {}: its pattern does not match, the path goes unchanged",
                            rewrite.target()
                        );
                    }
                }
            }
            e.backend = Some(backend_check(&route.target, outliers));
            if let Some(c) = &route.canary {
                let _ = write!(
                    e.summary,
                    "; canary Ingress {} takes some of its requests (see canary)",
                    display_ref(&c.ingress)
                );
                e.canary = Some(CanaryCheck {
                    ingress: display_ref(&c.ingress),
                    rules: c.rule.describe(),
                    backend: backend_check(&c.target, outliers),
                });
            }
        }
        Lookup::Default { backend, .. } => {
            e.outcome = "defaultBackend".into();
            let whose = backend.ingress.as_ref().map_or_else(
                || "--default-backend-service".to_owned(),
                |i| format!("spec.defaultBackend of Ingress {}", display_ref(i)),
            );
            e.summary = format!("no rule matches; the default backend ({whose}) answers");
            if let Some(f) = vhost.and_then(|v| v.fallback.as_ref()) {
                let _ = write!(
                    e.summary,
                    "; the annotations of Ingress {} (the host's oldest) apply, as ingress-nginx applies them to the host's implicit location /",
                    display_ref(&f.ingress)
                );
            }
            e.backend = Some(backend_check(&backend.target, outliers));
        }
        Lookup::NotFound { .. } => {
            e.outcome = "notFound".into();
            e.summary = "404: no rule matches and there is no default backend".into();
            if let Some(f) = vhost.and_then(|v| v.fallback.as_ref()) {
                let _ = write!(
                    e.summary,
                    "; the annotations of Ingress {} (the host's oldest) apply first, as ingress-nginx applies them to the host's implicit location /",
                    display_ref(&f.ingress)
                );
            }
        }
    }
    if let Some(p) = snapshot.table.passthrough(&normalized) {
        let to = match &p.target {
            Target::Backend(b) => format!("{}/{}:{}", b.namespace, b.service, b.port),
            Target::Unavailable(why) => format!("nowhere ({why}): the connection is closed"),
        };
        let _ = write!(
            e.summary,
            "; HTTPS connections for {normalized} are relayed unterminated to {to} (ssl-passthrough of Ingress {})",
            display_ref(&p.ingress)
        );
    }
    e.tls = snapshot.tls.host(&normalized).map(|t| match &t.binding {
        crate::model::TlsBinding::Secret(c) => format!(
            "HTTPS uses Secret {} ({}), not after {}",
            display_ref(&c.secret),
            c.names.join(", "),
            humantime::format_rfc3339_seconds(c.not_after)
        ),
        crate::model::TlsBinding::Default(reason) => {
            format!("HTTPS uses the default certificate: {reason}")
        }
    });
    e
}

fn display_ref(o: &crate::model::ObjectRef) -> String {
    match &o.namespace {
        Some(ns) => format!("{ns}/{}", o.name),
        None => o.name.clone(),
    }
}

fn ingress_name(route: &Route) -> String {
    display_ref(&route.ingress)
}

fn host_steps(table: &RouteTable, host: &str, steps: &mut Vec<String>) {
    let c = table.host_candidates(host);
    if c.exact.is_some() {
        steps.push(format!("exact host {host}: configured, chosen"));
        return;
    }
    steps.push(format!("exact host {host}: no rule has this host"));
    match &c.wildcard {
        Some((suffix, Some(_))) => {
            steps.push(format!("wildcard *.{suffix}: configured, chosen"));
            return;
        }
        Some((suffix, None)) => steps.push(format!("wildcard *.{suffix}: no rule has this host")),
        None => steps.push(format!(
            "wildcard: {host:?} has no first label to replace, so no wildcard can match"
        )),
    }
    match c.catch_all {
        Some(_) => steps.push("rules without a host: present, chosen".into()),
        None => steps.push("rules without a host: none".into()),
    }
}

/// Whether `route` alone would match `path`, and why (not).
fn matches(route: &Route, path: &str) -> (bool, String) {
    match route.path_type {
        PathType::Exact => {
            if path == route.path {
                (true, "the path is exactly this".into())
            } else {
                (
                    false,
                    format!("Exact: the path is not exactly {}", route.path),
                )
            }
        }
        PathType::Prefix | PathType::ImplementationSpecific => {
            let prefix = normalize_prefix(&route.path);
            let request = normalize_prefix(path);
            let ok = prefix == "/"
                || request == prefix
                || request
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('/'));
            if ok {
                (
                    true,
                    format!(
                        "the path is under {prefix} ({} segment(s))",
                        segment_count(&prefix)
                    ),
                )
            } else if request.starts_with(prefix.as_str()) {
                (
                    false,
                    format!("Prefix matches whole segments: {path} is not under {prefix}"),
                )
            } else {
                (false, format!("the path is not under {prefix}"))
            }
        }
    }
}

fn rule_checks(vhost: &VirtualHost, path: &str, chosen: Option<&Route>) -> Vec<RuleCheck> {
    if let Some(regex) = vhost.regex_matches(path) {
        return regex_rule_checks(vhost, regex, chosen);
    }
    vhost
        .routes
        .iter()
        .map(|route| {
            let (ok, mut why) = matches(route, path);
            let is_chosen = chosen.is_some_and(|c| std::ptr::eq(c, route));
            if ok && !is_chosen {
                why = match chosen {
                    Some(c) if c.path_type == PathType::Exact => {
                        format!("{why}, but the Exact rule {} wins", c.path)
                    }
                    Some(c) => format!("{why}, but the longer prefix {} wins", c.path),
                    None => why,
                };
            }
            RuleCheck {
                path: route.path.clone(),
                path_type: route.path_type,
                ingress: ingress_name(route),
                matches: ok,
                chosen: is_chosen,
                why,
            }
        })
        .collect()
}

/// Regex mode: every path a pattern, tried in order, the first match wins.
fn regex_rule_checks(
    vhost: &VirtualHost,
    regex: Vec<(bool, &str)>,
    chosen: Option<&Route>,
) -> Vec<RuleCheck> {
    vhost
        .routes
        .iter()
        .zip(regex)
        .map(|(route, (ok, pattern))| {
            let is_chosen = chosen.is_some_and(|c| std::ptr::eq(c, route));
            let why = match (ok, chosen) {
                (true, Some(c)) if !is_chosen => format!(
                    "regex mode: matches {pattern}, but {} comes first (longer path text is tried first)",
                    c.path
                ),
                (true, _) => format!("regex mode: matches {pattern}, the first that does"),
                (false, _) => format!("regex mode: does not match {pattern}"),
            };
            RuleCheck {
                path: route.path.clone(),
                path_type: route.path_type,
                ingress: ingress_name(route),
                matches: ok,
                chosen: is_chosen,
                why,
            }
        })
        .collect()
}

fn backend_check(target: &Target, outliers: Option<&Outliers>) -> BackendCheck {
    match target {
        Target::Unavailable(why) => BackendCheck {
            backend: String::new(),
            unavailable: Some(format!("{why}; requests get 503")),
            selection: None,
            endpoints: Vec::new(),
        },
        Target::Backend(b) => BackendCheck {
            backend: b.id.to_string(),
            unavailable: unusable_backend(b),
            selection: match &b.destination {
                Destination::Endpoints { selection, .. } => selection.note.clone(),
                Destination::ExternalName { .. } => None,
            },
            endpoints: match &b.destination {
                Destination::Endpoints { endpoints, .. } => endpoints
                    .iter()
                    .map(|e| endpoint_check(b, e, outliers))
                    .collect(),
                Destination::ExternalName { authority, .. } => vec![EndpointCheck {
                    address: authority.to_string(),
                    usable: true,
                    why: "ExternalName: resolved by DNS when connecting".into(),
                }],
            },
        },
    }
}

fn unusable_backend(b: &Backend) -> Option<String> {
    match &b.destination {
        Destination::Endpoints { endpoints, .. } if endpoints.is_empty() => {
            Some("the Service has no endpoints; requests get 503".into())
        }
        Destination::Endpoints { selection, .. }
            if b.usable().next().is_none() && selection.preference == Preference::NodeLocal =>
        {
            selection.note.clone()
        }
        Destination::Endpoints { .. } if b.usable().next().is_none() => {
            Some("no endpoint is ready or serving; requests get 503".into())
        }
        _ => None,
    }
}

fn endpoint_check(b: &Backend, e: &Endpoint, outliers: Option<&Outliers>) -> EndpointCheck {
    let any_ready = b.usable().any(|u| u.ready);
    let ejection = outliers
        .filter(|_| e.usable)
        .and_then(|o| o.ejection(e.addr));
    if let Some(ejection) = ejection {
        return EndpointCheck {
            address: e.addr.to_string(),
            // On trial, it takes the next request.
            usable: ejection.seconds_left == 0,
            why: ejection.describe(),
        };
    }
    let preference = match &b.destination {
        Destination::Endpoints { selection, .. } => selection.preference,
        Destination::ExternalName { .. } => Preference::All,
    };
    let mut why = if e.usable && e.ready {
        "ready".to_owned()
    } else if e.usable {
        "serving while terminating: used because no endpoint is ready".to_owned()
    } else if (e.ready || (e.serving && e.terminating)) && preference != Preference::All {
        let state = if e.ready {
            "ready"
        } else {
            "serving while terminating"
        };
        match preference {
            Preference::NodeLocal => format!(
                "{state}, not on this node: internalTrafficPolicy Local uses this node's endpoints only"
            ),
            Preference::SameNode => format!(
                "{state}, not hinted for this node: the endpoints hinted for it are preferred"
            ),
            _ => format!(
                "{state}, not hinted for this zone: the endpoints hinted for it are preferred"
            ),
        }
    } else if e.ready {
        "ready, but not used".to_owned()
    } else if e.serving && e.terminating && any_ready {
        "terminating: not used while ready endpoints exist".to_owned()
    } else if e.terminating {
        "terminating and not serving".to_owned()
    } else {
        "not ready".to_owned()
    };
    let place: Vec<String> = [
        e.node.as_deref().map(|n| format!("node {n}")),
        e.zone.as_deref().map(|z| {
            if e.remote_zone {
                format!("zone {z}, another zone than this replica's")
            } else {
                format!("zone {z}")
            }
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !place.is_empty() {
        let _ = write!(why, " ({})", place.join(", "));
    }
    EndpointCheck {
        address: e.addr.to_string(),
        usable: e.usable,
        why,
    }
}

/// The explanation as text, for people.
pub fn to_text(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} {}", e.host, e.path);
    let _ = writeln!(out, "  => {}", e.summary);
    if let Some(h) = e.normalized_host.as_ref().filter(|h| **h != e.host) {
        let _ = writeln!(out, "host compared as {h}");
    }
    if !e.host_steps.is_empty() {
        let _ = writeln!(out, "\nVirtual host:");
        for step in &e.host_steps {
            let _ = writeln!(out, "  {step}");
        }
    }
    if !e.rules.is_empty() {
        let _ = writeln!(
            out,
            "\nRules of {}:",
            e.virtual_host.as_deref().unwrap_or("?")
        );
        for r in &e.rules {
            let mark = mark(r.chosen, r.matches);
            let _ = writeln!(
                out,
                "  {mark} {} {} ({}): {}",
                r.path_type.as_str(),
                r.path,
                r.ingress,
                r.why
            );
        }
    }
    if let Some(b) = &e.backend {
        backend_text(&mut out, "Backend", b);
    }
    if let Some(c) = &e.canary {
        let _ = writeln!(out, "\nCanary (Ingress {}), in this order:", c.ingress);
        for (i, rule) in c.rules.iter().enumerate() {
            let _ = writeln!(out, "  {}. {rule}", i + 1);
        }
        backend_text(&mut out, "Canary backend", &c.backend);
    }
    if let Some(policy) = &e.policy {
        let _ = writeln!(out, "\nPolicy (annotations):");
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(policy) {
            for (name, value) in fields {
                let _ = writeln!(out, "  {name}: {value}");
            }
        }
    }
    if let Some(tls) = &e.tls {
        let _ = writeln!(out, "\nTLS: {tls}");
    }
    super::explain_gateway::to_text(&mut out, &e.gateway_api);
    out
}

/// A candidate rule's mark in the text form: `=>` chosen, `~` matches too, else blank.
pub(super) fn mark(chosen: bool, matches: bool) -> &'static str {
    if chosen {
        "=>"
    } else if matches {
        " ~"
    } else {
        "  "
    }
}

fn backend_text(out: &mut String, title: &str, b: &BackendCheck) {
    let _ = writeln!(
        out,
        "\n{title} {}:",
        if b.backend.is_empty() {
            "-"
        } else {
            &b.backend
        }
    );
    if let Some(why) = &b.unavailable {
        let _ = writeln!(out, "  {why}");
    }
    if let Some(how) = b
        .selection
        .as_ref()
        .filter(|h| Some(*h) != b.unavailable.as_ref())
    {
        let _ = writeln!(out, "  {how}");
    }
    for ep in &b.endpoints {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            if ep.usable { "+" } else { "-" },
            ep.address,
            ep.why
        );
    }
}
