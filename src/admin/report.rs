//! The routing table for people: JSON for `/debug/routes`, and a text table for
//! `wicket check` and `/debug/routes?format=text`. Both say where every host and path goes,
//! which endpoints take the traffic, what is wrong, and which Ingresses are not ours.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::SystemTime;

use serde::Serialize;

use crate::model::{
    Backend, Certificate, DefaultBackend, Destination, Ignored, IngressAnnotations, Locality,
    PassthroughHost, Preference, Problem, Snapshot, Target, TlsBinding, TlsHost, VirtualHost,
};
use crate::proxy::outlier::Outliers;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutesView<'a> {
    generation: u64,
    published_at: Option<String>,
    hosts: Vec<HostView<'a>>,
    default_backend: Option<&'a DefaultBackend>,
    /// Every TLS host, with or without rules.
    tls_hosts: Vec<&'a TlsHost>,
    default_certificate: DefaultCertificate<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_handshakes: Option<Handshakes>,
    problems: &'a [Problem],
    /// The node and zone this replica's endpoint choices are made for (traffic policies,
    /// topology hints).
    locality: &'a Locality,
    ignored_ingresses: &'a [Ignored],
    /// Every annotation of our Ingresses and what became of it.
    annotations: &'a [IngressAnnotations],
    /// `ssl-passthrough` hosts: their TLS connections are relayed unterminated.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    ssl_passthrough: BTreeMap<&'a str, &'a PassthroughHost>,
    /// Hosts that ask for client certificates (`auth-tls-*`), and how they check them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    client_certificates: BTreeMap<String, &'a crate::model::ClientAuth>,
    /// Gateway API: the listeners served with their rules in precedence order, and the
    /// status of every object of ours (what cluster mode writes to the API server).
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway_api: Option<GatewayApiView<'a>>,
}

#[derive(Serialize)]
struct GatewayApiView<'a> {
    routes: Option<&'a crate::model::gateway::GatewayTable>,
    status: &'a [crate::model::gateway_status::ObjectStatus],
}

/// A virtual host with the certificate its name gets over HTTPS.
#[derive(Serialize)]
struct HostView<'a> {
    #[serde(flatten)]
    vhost: &'a VirtualHost,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<&'a TlsHost>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum DefaultCertificate<'a> {
    Secret(&'a Certificate),
    SelfSigned {
        #[serde(rename = "selfSigned")]
        self_signed: bool,
    },
}

/// TLS handshakes since start.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Handshakes {
    pub completed: u64,
    pub failed: u64,
}

pub fn view(snapshot: &Snapshot) -> RoutesView<'_> {
    RoutesView {
        generation: snapshot.generation,
        published_at: snapshot.published_at.map(rfc3339),
        hosts: snapshot
            .table
            .virtual_hosts()
            .into_iter()
            .map(|vhost| HostView {
                tls: snapshot.tls.entry(&vhost.host),
                vhost,
            })
            .collect(),
        default_backend: snapshot.table.default_backend(),
        tls_hosts: snapshot.tls.hosts(),
        default_certificate: match snapshot.tls.default_certificate() {
            Some(cert) => DefaultCertificate::Secret(cert),
            None => DefaultCertificate::SelfSigned { self_signed: true },
        },
        tls_handshakes: None,
        problems: &snapshot.problems,
        locality: &snapshot.locality,
        ignored_ingresses: &snapshot.ignored,
        annotations: &snapshot.annotations,
        ssl_passthrough: snapshot.table.passthrough_hosts().into_iter().collect(),
        client_certificates: snapshot
            .tls
            .client_auth_hosts()
            .into_iter()
            .map(|(host, auth)| (host, &**auth))
            .collect(),
        gateway_api: (snapshot.gateway.is_some() || !snapshot.gateway_status.is_empty()).then(
            || GatewayApiView {
                routes: snapshot.gateway.as_deref(),
                status: &snapshot.gateway_status,
            },
        ),
    }
}

pub(super) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn to_json(snapshot: &Snapshot, handshakes: Option<Handshakes>) -> Vec<u8> {
    to_json_for(snapshot, handshakes, None, None)
}

/// [`to_json`], with only the virtual host `host` would get when given, and each ejected
/// endpoint's `ejection` (reason, failures, time left) when `outliers` is given.
pub fn to_json_for(
    snapshot: &Snapshot,
    handshakes: Option<Handshakes>,
    host: Option<&str>,
    outliers: Option<&Outliers>,
) -> Vec<u8> {
    let mut view = view(snapshot);
    view.tls_handshakes = handshakes;
    if host.is_some() {
        let keep = shown(snapshot, host);
        view.hosts
            .retain(|h| keep.iter().any(|k| std::ptr::eq(*k, h.vhost)));
    }
    let mut value = serde_json::to_value(&view).unwrap_or_default();
    if let Some(outliers) = outliers {
        annotate_ejections(&mut value, outliers);
    }
    let mut out = serde_json::to_vec_pretty(&value).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Adds `ejection` to every endpoint object (one with an `address` and a `usable`) that the
/// outlier detector has out of rotation. The snapshot does not hold this state — it lives
/// beside it, like the balancer's — so it is joined in here.
fn annotate_ejections(value: &mut serde_json::Value, outliers: &Outliers) {
    match value {
        serde_json::Value::Object(map) => {
            if map.contains_key("usable") {
                let ejection = map
                    .get("address")
                    .and_then(|a| a.as_str())
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                    .and_then(|addr| outliers.ejection(addr));
                if let Some(ejection) = ejection {
                    map.insert(
                        "ejection".into(),
                        serde_json::to_value(&ejection).unwrap_or_default(),
                    );
                }
            }
            for v in map.values_mut() {
                annotate_ejections(v, outliers);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                annotate_ejections(v, outliers);
            }
        }
        _ => {}
    }
}

/// Endpoint summary for one target: "2/3 ready: 10.0.0.1:8080, 10.0.0.2:8080", and the
/// endpoints out of rotation: "; ejected: 10.0.0.3:8080 (answered 503, 25 s left)".
fn describe(target: &Target, outliers: Option<&Outliers>) -> (String, String) {
    match target {
        Target::Unavailable(why) => ("-".to_owned(), format!("503: {why}")),
        Target::Backend(backend) => {
            let mut eps = endpoints(backend);
            let ejected: Vec<String> = outliers
                .map(|o| {
                    backend
                        .usable()
                        .filter_map(|e| {
                            o.ejection(e.addr).map(|j| {
                                let left = if j.seconds_left == 0 {
                                    "on trial".to_owned()
                                } else {
                                    format!("{} s left", j.seconds_left)
                                };
                                format!("{} ({}, {left})", e.addr, j.reason.describe())
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            if !ejected.is_empty() {
                let _ = write!(eps, "; ejected: {}", ejected.join(", "));
            }
            (backend_name(backend), eps)
        }
    }
}

fn backend_name(b: &Backend) -> String {
    format!("{}/{}:{}", b.namespace, b.service, b.port)
}

/// How many endpoints are listed by address before "+N more".
const LISTED_ENDPOINTS: usize = 3;

fn endpoints(b: &Backend) -> String {
    match &b.destination {
        Destination::ExternalName { host, port, .. } => format!("ExternalName {host}:{port}"),
        Destination::Endpoints {
            endpoints,
            usable,
            fallback,
            selection,
        } => {
            if usable.is_empty() {
                return match selection.preference {
                    Preference::NodeLocal => format!(
                        "503: none of {} endpoint(s) on this node (internalTrafficPolicy Local)",
                        endpoints.len()
                    ),
                    _ => format!("503: none of {} endpoint(s) ready", endpoints.len()),
                };
            }
            let state = if *fallback { "terminating" } else { "ready" };
            let scope = match selection.preference {
                Preference::All => "",
                Preference::SameNode => " for this node",
                Preference::SameZone => " for this zone",
                Preference::NodeLocal => " on this node",
            };
            let mut s = format!("{}/{} {state}{scope}: ", usable.len(), endpoints.len());
            let listed: Vec<String> = b
                .usable()
                .take(LISTED_ENDPOINTS)
                .map(|e| e.addr.to_string())
                .collect();
            s.push_str(&listed.join(", "));
            if usable.len() > LISTED_ENDPOINTS {
                let _ = write!(s, " +{} more", usable.len() - LISTED_ENDPOINTS);
            }
            s
        }
    }
}

/// The routing table as aligned text columns, then the Problems and ignored Ingresses.
pub fn to_text(snapshot: &Snapshot) -> String {
    to_text_for(snapshot, None, None)
}

/// The virtual hosts to show: all, or only the one a request for `host` would get.
fn shown<'a>(snapshot: &'a Snapshot, host: Option<&str>) -> Vec<&'a VirtualHost> {
    let all = snapshot.table.virtual_hosts();
    let Some(host) = host else {
        return all;
    };
    let chosen = crate::proxy::route::normalize_host(host)
        .ok()
        .and_then(|h| snapshot.table.virtual_host(&h));
    all.into_iter()
        .filter(|v| chosen.is_some_and(|c| std::ptr::eq(*v, c)))
        .collect()
}

/// [`to_text`], with only the virtual host `host` would get when given, and the ejected
/// endpoints when `outliers` is given.
pub fn to_text_for(snapshot: &Snapshot, host: Option<&str>, outliers: Option<&Outliers>) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "HOST".into(),
        "PATH".into(),
        "TYPE".into(),
        "INGRESS".into(),
        "BACKEND".into(),
        "ENDPOINTS".into(),
    ]];
    for vhost in shown(snapshot, host) {
        let host = vhost.host.to_string();
        if vhost.routes.is_empty() {
            rows.push([
                host.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "(default backend)".into(),
                String::new(),
            ]);
        }
        for route in &vhost.routes {
            let (backend, eps) = describe(&route.target, outliers);
            rows.push([
                host.clone(),
                route.path.clone(),
                route.path_type.as_str().into(),
                format!(
                    "{}/{}",
                    route.ingress.namespace.as_deref().unwrap_or(""),
                    route.ingress.name
                ),
                backend,
                eps,
            ]);
            if let Some(c) = &route.canary {
                let (backend, eps) = describe(&c.target, outliers);
                rows.push([
                    host.clone(),
                    route.path.clone(),
                    route.path_type.as_str().into(),
                    format!(
                        "{}/{} (canary: {})",
                        c.ingress.namespace.as_deref().unwrap_or(""),
                        c.ingress.name,
                        c.rule.summary()
                    ),
                    backend,
                    eps,
                ]);
            }
        }
    }
    if let Some(default) = snapshot.table.default_backend() {
        let (backend, eps) = describe(&default.target, outliers);
        let source = match &default.ingress {
            Some(i) => format!("{}/{}", i.namespace.as_deref().unwrap_or(""), i.name),
            None => "--default-backend-service".into(),
        };
        rows.push([
            "(default backend)".into(),
            "-".into(),
            "-".into(),
            source,
            backend,
            eps,
        ]);
    }

    let mut out = String::new();
    if rows.len() == 1 {
        out.push_str(if snapshot.gateway.is_some() {
            "No Ingress routes.\n"
        } else {
            "No routes.\n"
        });
    } else {
        let widths: Vec<usize> = (0..6)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }

    if let Some(gateway) = snapshot.gateway.as_deref() {
        gateway_text(&mut out, gateway);
    }
    let here = &snapshot.locality;
    if here.is_known() {
        let _ = writeln!(
            out,
            "\nThis replica: node {}, zone {} ({}); endpoints are chosen for them (internalTrafficPolicy, topology hints)",
            here.node.as_deref().unwrap_or("unknown"),
            here.zone.as_deref().unwrap_or("unknown"),
            here.zone_source
        );
    }
    let passthrough = snapshot.table.passthrough_hosts();
    if !passthrough.is_empty() {
        let _ = writeln!(
            out,
            "\nSSL passthrough ({}): TLS relayed unterminated to the pods",
            passthrough.len()
        );
        for (host, p) in passthrough {
            let (backend, eps) = describe(&p.target, outliers);
            let _ = writeln!(out, "  {host}  {backend}  {eps}  (Ingress {})", p.ingress);
        }
    }
    let tls_hosts = snapshot.tls.hosts();
    if !tls_hosts.is_empty() {
        let _ = writeln!(out, "\nTLS hosts ({}):", tls_hosts.len());
        for t in tls_hosts {
            let served = match &t.binding {
                TlsBinding::Secret(cert) => format!(
                    "Secret {}/{} ({}; until {})",
                    cert.secret.namespace.as_deref().unwrap_or(""),
                    cert.secret.name,
                    cert.names.join(", "),
                    humantime::format_rfc3339_seconds(cert.not_after)
                ),
                TlsBinding::Default(why) => format!("default certificate: {why}"),
            };
            let _ = writeln!(out, "  {}  {served}", t.host);
        }
    }
    let client_auth = snapshot.tls.client_auth_hosts();
    if !client_auth.is_empty() {
        let _ = writeln!(out, "\nClient certificates ({}):", client_auth.len());
        for (host, auth) in client_auth {
            let state = match &auth.broken {
                Some(why) => format!("answers 503: {why}"),
                None => format!("verify {:?}, CA Secret {}", auth.verify, auth.secret),
            };
            let _ = writeln!(out, "  {host}  {state}  (Ingress {})", auth.ingress);
        }
    }
    if !snapshot.problems.is_empty() {
        let _ = writeln!(out, "\nProblems ({}):", snapshot.problems.len());
        for p in &snapshot.problems {
            let _ = writeln!(out, "  {}  {}  {}", p.object, p.reason, p.message);
        }
    }
    if !snapshot.annotations.is_empty() {
        let _ = writeln!(out, "\nAnnotations:");
        for ingress in &snapshot.annotations {
            let _ = writeln!(out, "  {}", ingress.ingress);
            for a in &ingress.annotations {
                let note = if a.note.is_empty() {
                    String::new()
                } else {
                    format!(": {}", a.note)
                };
                let _ = writeln!(out, "    {}  {}{note}", a.name, a.outcome);
            }
        }
    }
    if !snapshot.ignored.is_empty() {
        let _ = writeln!(
            out,
            "\nIngresses not served by wicket ({}):",
            snapshot.ignored.len()
        );
        for i in &snapshot.ignored {
            let _ = writeln!(out, "  {}  {}", i.ingress, i.reason);
        }
    }
    out
}

/// The Gateway API listeners and their rules, in the order a request tries them.
fn gateway_text(out: &mut String, gateway: &crate::model::gateway::GatewayTable) {
    for (tls, socket) in [(false, &gateway.http), (true, &gateway.https)] {
        for (listener, levels) in socket.listeners() {
            let _ = writeln!(
                out,
                "\nGateway API: listener {} of {} ({} {}, hostname {}, on the {} socket)",
                listener.name,
                listener.gateway,
                listener.protocol,
                listener.port,
                listener.hostname,
                if tls { "TLS" } else { "plain" }
            );
            if levels.is_empty() {
                let _ = writeln!(out, "  no routes attached");
            }
            for (hostname, set) in levels {
                for entry in set.grpc_entries().iter().chain(&set.entries) {
                    let _ = writeln!(
                        out,
                        "  {hostname}  {}  {}/{} rule {}  → {}",
                        entry.summary(),
                        entry.rule.route.namespace.as_deref().unwrap_or(""),
                        entry.rule.route.name,
                        entry.rule.index,
                        entry.outcome()
                    );
                }
            }
        }
    }
}
