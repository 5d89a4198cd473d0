//! HTTPRoutes and GRPCRoutes: their rules compiled, attached to listeners (sectionName,
//! port, allowedRoutes, hostname intersection), and each parent's status.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::rules;
use super::{age, Candidate, FromNamespaces, OurGateway, GRPC_ROUTE, HTTP_ROUTE};
use crate::controller::gateway_api::{GrpcRoute, HttpRoute, ParentReference, GROUP};
use crate::controller::index::Key;
use crate::controller::translate::{validate, Translator};
use crate::model::gateway::{Entry, GatewayRule, GatewayTableBuilder, Hostname};
use crate::model::gateway_status::{Condition, ObjectStatus, ParentRef};
use crate::model::{HostMatch, ObjectRef, Owner, Problem, Reason};

/// A served rule of a route and its matches.
type CompiledRule = (
    Arc<GatewayRule>,
    Vec<(
        crate::model::gateway::PathMatch,
        Option<crate::model::gateway::Conditions>,
    )>,
);

/// An HTTPRoute or a GRPCRoute: what attachment and status need from either.
#[derive(Clone, Copy)]
enum AnyRoute<'a> {
    Http(&'a HttpRoute),
    Grpc(&'a GrpcRoute),
}

impl<'a> AnyRoute<'a> {
    fn meta(self) -> &'a ObjectMeta {
        match self {
            AnyRoute::Http(r) => &r.metadata,
            AnyRoute::Grpc(r) => &r.metadata,
        }
    }

    fn kind(self) -> &'static str {
        match self {
            AnyRoute::Http(_) => HTTP_ROUTE,
            AnyRoute::Grpc(_) => GRPC_ROUTE,
        }
    }

    fn parent_refs(self) -> &'a [ParentReference] {
        match self {
            AnyRoute::Http(r) => r.spec.parent_refs.as_deref(),
            AnyRoute::Grpc(r) => r.spec.parent_refs.as_deref(),
        }
        .unwrap_or(&[])
    }

    fn hostnames(self) -> &'a [String] {
        match self {
            AnyRoute::Http(r) => r.spec.hostnames.as_deref(),
            AnyRoute::Grpc(r) => r.spec.hostnames.as_deref(),
        }
        .unwrap_or(&[])
    }

    /// Each rule: its index, name, and compiled form or why it is refused.
    fn compile(self, cx: &mut rules::Context<'a, '_>) -> Vec<CompiledOrRefused> {
        match self {
            AnyRoute::Http(r) => each_rule(
                r.spec.rules.as_deref(),
                cx,
                |rule| &rule.name,
                rules::compile,
            ),
            AnyRoute::Grpc(r) => each_rule(
                r.spec.rules.as_deref(),
                cx,
                |rule| &rule.name,
                rules::compile_grpc,
            ),
        }
    }
}

/// A rule's index, name, and compiled form or why it is refused.
type CompiledOrRefused = (
    usize,
    Option<String>,
    Result<rules::Compiled, rules::Refused>,
);

fn each_rule<'a, R>(
    list: Option<&[R]>,
    cx: &mut rules::Context<'a, '_>,
    name: impl Fn(&R) -> &Option<String>,
    compile: impl Fn(&mut rules::Context<'a, '_>, &R, &str) -> Result<rules::Compiled, rules::Refused>,
) -> Vec<CompiledOrRefused> {
    list.unwrap_or(&[])
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            (
                i,
                name(rule).clone(),
                compile(cx, rule, &format!("spec.rules[{i}]")),
            )
        })
        .collect()
}

impl<'a> Translator<'a> {
    pub(super) fn http_routes(
        &mut self,
        gateways: &BTreeMap<Key, OurGateway<'a>>,
        builder: &mut GatewayTableBuilder,
        statuses: &mut Vec<ObjectStatus>,
    ) {
        let index = self.index;
        let mut routes: Vec<AnyRoute<'a>> = index
            .http_routes
            .values()
            .map(|r| AnyRoute::Http(r))
            .chain(index.grpc_routes.values().map(|r| AnyRoute::Grpc(r)))
            .collect();
        routes.sort_by(|a, b| age(a.meta()).cmp(&age(b.meta())));
        for (order, route) in routes.into_iter().enumerate() {
            self.route(route, order as u32, gateways, builder, statuses);
        }
    }

    fn route(
        &mut self,
        route: AnyRoute<'a>,
        order: u32,
        gateways: &BTreeMap<Key, OurGateway<'a>>,
        builder: &mut GatewayTableBuilder,
        statuses: &mut Vec<ObjectStatus>,
    ) {
        let meta = route.meta();
        let namespace = meta.namespace.as_deref().unwrap_or("default");
        let name = meta.name.as_deref().unwrap_or("");
        let kind = route.kind();
        // Only parentRefs to Gateways of ours get a status entry from us.
        let parents: Vec<(&ParentReference, &OurGateway<'a>)> = route
            .parent_refs()
            .iter()
            .filter(|p| {
                p.group.as_deref().unwrap_or(GROUP) == GROUP
                    && p.kind.as_deref().unwrap_or("Gateway") == "Gateway"
            })
            .filter_map(|p| {
                let ns = p.namespace.as_deref().unwrap_or(namespace);
                gateways.get(&Key::new(ns, &p.name)).map(|g| (p, g))
            })
            .collect();
        if parents.is_empty() {
            return;
        }
        let object = Arc::new(ObjectRef::namespaced(kind, namespace, name));
        let mut status = ObjectStatus::new((*object).clone(), meta.generation);
        // Hostnames.
        let mut hostnames = Vec::new();
        let mut bad_hostname = None;
        for h in route.hostnames() {
            match validate::host(&h.to_ascii_lowercase()) {
                Ok(_) => hostnames.push(Hostname::parse(h)),
                Err(why) => bad_hostname = Some(format!("spec.hostnames: {h:?}: {why}")),
            }
        }
        // Rules.
        let mut compiled = Vec::new();
        let mut dropped = Vec::new();
        let mut unresolved = Vec::new();
        let mut cx = rules::Context {
            index: self.index,
            services: &mut self.services,
            namespace,
            route: name,
            kind,
        };
        for (i, rule_name, outcome) in route.compile(&mut cx) {
            match outcome {
                Ok(c) => {
                    unresolved.extend(c.unresolved.iter().map(|u| (u.reason, u.message.clone())));
                    let service = match &c.action {
                        crate::model::gateway::Action::Forward(f) => f
                            .backends
                            .first()
                            .map(|b| b.owner.service.clone())
                            .unwrap_or_else(|| Arc::from("")),
                        crate::model::gateway::Action::Redirect(_) => Arc::from(""),
                    };
                    let rule = Arc::new(GatewayRule {
                        route: object.clone(),
                        index: i,
                        name: rule_name,
                        action: c.action,
                        owner: Arc::new(Owner::new(Arc::from(namespace), Arc::from(name), service)),
                        grpc: matches!(route, AnyRoute::Grpc(_)),
                    });
                    compiled.push((rule, c.matches));
                }
                Err(refused) => dropped.push((i, refused)),
            }
        }
        for (parent, gateway) in parents {
            let parent_ref = ParentRef {
                group: GROUP.to_owned(),
                kind: "Gateway".to_owned(),
                namespace: parent
                    .namespace
                    .clone()
                    .unwrap_or_else(|| namespace.to_owned()),
                name: parent.name.clone(),
                section_name: parent.section_name.clone(),
                port: parent.port,
            };
            let mut conditions = Vec::new();
            let accepted = self.attach(
                kind,
                namespace,
                parent,
                gateway,
                &hostnames,
                bad_hostname.as_deref(),
                &compiled,
                &dropped,
                order,
                builder,
                statuses,
            );
            match accepted {
                Ok(()) => conditions.push(Condition::yes(
                    "Accepted",
                    "Accepted",
                    "the route is attached to the Gateway",
                )),
                Err((reason, why)) => conditions.push(Condition::no("Accepted", reason, why)),
            }
            if unresolved.is_empty() {
                conditions.push(Condition::yes(
                    "ResolvedRefs",
                    "ResolvedRefs",
                    "all references resolved",
                ));
            } else {
                let words: Vec<&str> = unresolved.iter().map(|(_, m)| m.as_str()).collect();
                conditions.push(Condition::no(
                    "ResolvedRefs",
                    unresolved[0].0,
                    format!("{}; requests for these backends get 500", words.join("; ")),
                ));
            }
            if !dropped.is_empty() && !compiled.is_empty() {
                let words: Vec<String> = dropped
                    .iter()
                    .map(|(i, r)| format!("Dropped Rule {i}: {}", r.message))
                    .collect();
                conditions.push(Condition::yes(
                    "PartiallyInvalid",
                    dropped[0].1.reason,
                    words.join("; "),
                ));
            }
            status
                .parents
                .push(crate::model::gateway_status::ParentStatus {
                    parent_ref,
                    conditions,
                });
        }
        statuses.push(status);
    }

    /// Attaches a route to the listeners of one parentRef; the `Accepted` outcome.
    #[allow(clippy::too_many_arguments)]
    fn attach(
        &self,
        kind: &'static str,
        namespace: &str,
        parent: &ParentReference,
        gateway: &OurGateway<'a>,
        hostnames: &[Hostname],
        bad_hostname: Option<&str>,
        compiled: &[CompiledRule],
        dropped: &[(usize, rules::Refused)],
        order: u32,
        builder: &mut GatewayTableBuilder,
        statuses: &mut [ObjectStatus],
    ) -> Result<(), (&'static str, String)> {
        if let Some(why) = bad_hostname {
            return Err(("UnsupportedValue", why.to_owned()));
        }
        if compiled.is_empty() {
            let (reason, why) = match dropped.first() {
                Some((i, r)) => (
                    r.reason,
                    format!("no rule can be served; rule {i}: {}", r.message),
                ),
                None => ("UnsupportedValue", "the route has no rules".to_owned()),
            };
            return Err((reason, why));
        }
        let selected: Vec<&Candidate<'a>> = gateway
            .listeners
            .iter()
            .filter(|l| parent.section_name.as_deref().is_none_or(|s| s == l.name))
            .filter(|l| parent.port.is_none_or(|p| p == l.port))
            .collect();
        if selected.is_empty() {
            return Err((
                "NoMatchingParent",
                "no listener of the Gateway has this sectionName and port".into(),
            ));
        }
        let allowed: Vec<&Candidate<'a>> = selected
            .into_iter()
            .filter(|l| {
                let takes = if kind == GRPC_ROUTE {
                    l.takes_grpc_routes
                } else {
                    l.takes_http_routes
                };
                takes && self.namespace_allowed(l, gateway.namespace, namespace)
            })
            .collect();
        if allowed.is_empty() {
            return Err((
                "NotAllowedByListeners",
                format!("the listeners do not allow {kind}s from namespace {namespace}"),
            ));
        }
        let mut attached = false;
        for l in allowed {
            let common = intersect(hostnames, &l.hostname);
            if common.is_empty() {
                continue;
            }
            attached = true;
            let (g, li) = l.status;
            if let Some(s) = statuses.get_mut(g).and_then(|s| s.listeners.get_mut(li)) {
                s.attached_routes += 1;
            }
            let Some(id) = l.served else { continue };
            for hostname in common {
                for (rule, matches) in compiled {
                    for (mi, (path, conditions)) in matches.iter().enumerate() {
                        builder.add(
                            id,
                            hostname.clone(),
                            Entry {
                                path: path.clone(),
                                conditions: conditions.clone().map(Box::new),
                                rule: rule.clone(),
                                match_index: mi,
                                route_order: order,
                            },
                        );
                    }
                }
            }
        }
        if attached {
            Ok(())
        } else {
            Err((
                "NoMatchingListenerHostname",
                "no hostname of the route intersects a hostname of the listeners".into(),
            ))
        }
    }

    fn namespace_allowed(&self, l: &Candidate<'_>, gateway_ns: &str, route_ns: &str) -> bool {
        match &l.namespaces {
            FromNamespaces::Same => gateway_ns == route_ns,
            FromNamespaces::All => true,
            FromNamespaces::Selector(selector) => {
                let labels = self
                    .index
                    .namespaces
                    .get(&Key::new("", route_ns))
                    .and_then(|n| n.metadata.labels.clone())
                    .unwrap_or_default();
                selects(selector, &labels, route_ns)
            }
        }
    }
}

/// Ingress rules a Gateway API rule takes the requests of: for each Ingress route, the
/// request for exactly its host and path (GET, no headers), over plain HTTP and HTTPS. The
/// Gateway API rule answers it (README, "Gateway API and Ingress together"); the Ingress
/// rule keeps only the requests no Gateway API rule matches. Wildcard Ingress hosts are
/// tried with one name under them.
pub(in crate::controller::translate) fn shadowed_ingress_rules(
    table: &crate::model::RouteTable,
    gateway: &crate::model::gateway::GatewayTable,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let method = http::Method::GET;
    let headers = http::HeaderMap::new();
    let facts = crate::model::gateway::RequestFacts {
        method: &method,
        headers: &headers,
        query: None,
    };
    for vhost in table.virtual_hosts() {
        let host = match &vhost.host {
            HostMatch::Exact(h) => h.clone(),
            HostMatch::Wildcard(suffix) => format!("any.{suffix}"),
            HostMatch::Any => continue,
        };
        for route in &vhost.routes {
            if route.regex {
                continue;
            }
            let taken = [false, true].into_iter().find_map(|tls| {
                gateway
                    .lookup(tls, &host, &route.path, &facts)
                    .map(|m| (tls, m))
            });
            if let Some((tls, m)) = taken {
                let rule = &m.entry.rule;
                out.push(Problem::new(
                    (*route.ingress).clone(),
                    Reason::PathConflict,
                    format!(
                        "host {} path {}: rule {} of {} {}/{} answers these requests first over {} (Gateway API routes are matched before Ingress rules); this rule gets only what no Gateway API rule matches",
                        vhost.host,
                        route.path,
                        rule.index,
                        rule.route.kind,
                        rule.route.namespace.as_deref().unwrap_or(""),
                        rule.route.name,
                        if tls { "HTTPS" } else { "HTTP" }
                    ),
                ));
            }
        }
    }
    out
}

/// The hostnames a route serves on a listener (GATEWAY-API.md, hostname intersection).
pub(super) fn intersect(route: &[Hostname], listener: &Hostname) -> Vec<Hostname> {
    if route.is_empty() {
        return vec![listener.clone()];
    }
    let mut out = Vec::new();
    for r in route {
        let common = match (r, listener) {
            (_, Hostname::Any) => Some(r.clone()),
            (Hostname::Exact(a), Hostname::Exact(b)) => (a == b).then(|| r.clone()),
            (Hostname::Exact(a), Hostname::Wildcard(_)) => listener.matches(a).then(|| r.clone()),
            (Hostname::Wildcard(_), Hostname::Exact(b)) => r.matches(b).then(|| listener.clone()),
            (Hostname::Wildcard(a), Hostname::Wildcard(b)) => {
                if a == b || a.ends_with(&format!(".{b}")) {
                    Some(r.clone())
                } else if b.ends_with(&format!(".{a}")) {
                    Some(listener.clone())
                } else {
                    None
                }
            }
            (Hostname::Any, _) => Some(listener.clone()),
        };
        if let Some(h) = common {
            if !out.contains(&h) {
                out.push(h);
            }
        }
    }
    out
}

/// A label selector against a namespace's labels (`kubernetes.io/metadata.name` is always
/// there, as the API server sets it), with kube's own selector matching. A selector that
/// does not parse selects nothing (fail closed).
pub(super) fn selects(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
    namespace: &str,
) -> bool {
    use kube::core::SelectorExt as _;
    let mut labels = labels.clone();
    labels.insert(
        "kubernetes.io/metadata.name".to_owned(),
        namespace.to_owned(),
    );
    kube::core::Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(&labels))
}
