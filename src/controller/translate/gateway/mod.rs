//! Gateway API → the snapshot: GatewayClasses of our controller, their Gateways'
//! listeners, the HTTPRoutes attached to them, and the status of each (GATEWAY-API.md).
//!
//! Listener ports map onto wicket's two sockets: an `HTTP` listener on the Gateway API
//! HTTP port (80 unless `--gateway-http-port` says otherwise) is served on the plain
//! listener, an `HTTPS` listener on the HTTPS port (443) on the TLS listener; any other
//! port or protocol is refused with the spec's listener conditions. All Gateways of our
//! classes share those sockets, so their listeners must be distinct by hostname across
//! Gateways too: the older Gateway keeps a hostname, the newer listener is `Conflicted`.
//! Within one Gateway, indistinct listeners are all `Conflicted`, as the spec says.

mod rules;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::Timestamp;

use super::validate;
use super::Translator;
use crate::controller::gateway_api::{
    Gateway, GrpcRoute, HttpRoute, Listener, ParentReference, GROUP,
};
use crate::controller::index::{Index, Key};
use crate::model::gateway::{
    Entry, GatewayRule, GatewayTable, GatewayTableBuilder, Hostname, ListenerRef,
};
use crate::model::gateway_status::ConditionStatus;
use crate::model::gateway_status::{Condition, ListenerStatus, ObjectStatus, ParentRef};
use crate::model::{HostMatch, ObjectRef, Owner, Problem, Reason, TlsBinding, TlsHost};

/// A served rule of a route and its matches.
type CompiledRule = (
    Arc<GatewayRule>,
    Vec<(
        crate::model::gateway::PathMatch,
        Option<crate::model::gateway::Conditions>,
    )>,
);

/// The core API group, as references spell it.
pub(super) const GROUP_CORE: &str = "";
const HTTP_ROUTE: &str = "HTTPRoute";
const GRPC_ROUTE: &str = "GRPCRoute";

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
    fn compile(
        self,
        cx: &mut rules::Context<'a, '_>,
    ) -> Vec<(
        usize,
        Option<String>,
        Result<rules::Compiled, rules::Refused>,
    )> {
        match self {
            AnyRoute::Http(r) => r
                .spec
                .rules
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .enumerate()
                .map(|(i, rule)| {
                    let at = format!("spec.rules[{i}]");
                    (i, rule.name.clone(), rules::compile(cx, rule, &at))
                })
                .collect(),
            AnyRoute::Grpc(r) => r
                .spec
                .rules
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .enumerate()
                .map(|(i, rule)| {
                    let at = format!("spec.rules[{i}]");
                    (i, rule.name.clone(), rules::compile_grpc(cx, rule, &at))
                })
                .collect(),
        }
    }
}

/// Whether a ReferenceGrant in `to_namespace` lets a `from_kind` in `from_namespace`
/// refer to the `to_kind` named `to_name` there.
#[allow(clippy::too_many_arguments)]
pub(super) fn granted(
    index: &Index,
    from_group: &str,
    from_kind: &str,
    from_namespace: &str,
    to_group: &str,
    to_kind: &str,
    to_namespace: &str,
    to_name: &str,
) -> bool {
    index
        .reference_grants
        .iter()
        .filter(|(k, _)| k.namespace == to_namespace)
        .any(|(_, grant)| {
            grant.spec.from.iter().any(|f| {
                f.group == from_group && f.kind == from_kind && f.namespace == from_namespace
            }) && grant.spec.to.iter().any(|t| {
                t.group == to_group
                    && t.kind == to_kind
                    && t.name
                        .as_deref()
                        .is_none_or(|n| n.is_empty() || n == to_name)
            })
        })
}

/// Oldest first (objects without a creation time after), then namespace/name.
fn age(meta: &ObjectMeta) -> (bool, Option<Timestamp>, &str, &str) {
    let created = meta.creation_timestamp.as_ref().map(|t| t.0);
    (
        created.is_none(),
        created,
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or(""),
    )
}

/// Which namespaces' routes a listener takes.
enum FromNamespaces<'a> {
    Same,
    All,
    Selector(&'a LabelSelector),
}

/// A listener as routes see it.
struct Candidate<'a> {
    name: &'a str,
    port: i32,
    hostname: Hostname,
    namespaces: FromNamespaces<'a>,
    /// HTTPRoute is among its supported kinds.
    takes_http_routes: bool,
    /// GRPCRoute is among its supported kinds.
    takes_grpc_routes: bool,
    /// Its id in the table builder, when it is served.
    served: Option<usize>,
    /// Where its status is: (gateway status, listener status).
    status: (usize, usize),
}

struct OurGateway<'a> {
    namespace: &'a str,
    listeners: Vec<Candidate<'a>>,
}

impl<'a> Translator<'a> {
    /// Builds the Gateway API part of the snapshot and the status of every object of ours.
    /// Runs after the Ingresses: a TLS host an Ingress already holds keeps its certificate.
    pub(super) fn gateway_api(&mut self) -> (Option<Arc<GatewayTable>>, Vec<ObjectStatus>) {
        let index = self.index;
        if index.gateway_classes.is_empty() {
            return (None, Vec::new());
        }
        let mut statuses = Vec::new();
        let classes = self.gateway_classes(&mut statuses);
        if classes.is_empty() {
            return (None, statuses);
        }
        let mut builder = GatewayTableBuilder::new();
        let mut gateways: BTreeMap<Key, OurGateway<'a>> = BTreeMap::new();
        let mut ordered: Vec<&'a Gateway> = index
            .gateways
            .values()
            .map(|g| g.as_ref())
            .filter(|g| classes.contains_key(g.spec.gateway_class_name.as_str()))
            .collect();
        ordered.sort_by(|a, b| age(&a.metadata).cmp(&age(&b.metadata)));
        // (TLS socket, hostname) → the listener holding it.
        let mut claimed: HashMap<(bool, Hostname), String> = HashMap::new();
        for gateway in ordered {
            let accepted = classes
                .get(gateway.spec.gateway_class_name.as_str())
                .copied()
                .unwrap_or(false);
            let ours = self.gateway(gateway, accepted, &mut builder, &mut claimed, &mut statuses);
            if let Some(ours) = ours {
                gateways.insert(Key::of(&gateway.metadata), ours);
            }
        }
        self.http_routes(&gateways, &mut builder, &mut statuses);
        for status in &statuses {
            self.status_problems(status);
        }
        let table = builder.build();
        let table = (!table.is_empty()).then(|| Arc::new(table));
        (table, statuses)
    }

    /// The classes of our controller, and whether each is accepted.
    fn gateway_classes(&mut self, statuses: &mut Vec<ObjectStatus>) -> HashMap<&'a str, bool> {
        let mut ours = HashMap::new();
        for class in self.index.gateway_classes.values() {
            if class.spec.controller_name != self.settings.gateway_controller_name {
                continue;
            }
            let name = class.metadata.name.as_deref().unwrap_or("");
            let mut status = ObjectStatus::new(
                ObjectRef::new("GatewayClass", None, name),
                class.metadata.generation,
            );
            let accepted = match &class.spec.parameters_ref {
                Some(p) => {
                    status.conditions.push(Condition::no(
                        "Accepted",
                        "InvalidParameters",
                        format!(
                            "parametersRef {}/{} {}: wicket takes no parameters from a GatewayClass (its settings are command-line flags)",
                            p.group, p.kind, p.name
                        ),
                    ));
                    false
                }
                None => {
                    status.conditions.push(Condition::yes(
                        "Accepted",
                        "Accepted",
                        format!("served by {}", self.settings.gateway_controller_name),
                    ));
                    true
                }
            };
            status.conditions.push(Condition::yes(
                "SupportedVersion",
                "SupportedVersion",
                "wicket reads the v1 standard-channel fields of Gateway API v1.6",
            ));
            ours.insert(name, accepted);
            statuses.push(status);
        }
        ours
    }

    /// One Gateway of our classes: its listeners checked, served ones added to `builder`
    /// (and their certificates to the TLS table), its status pushed.
    fn gateway(
        &mut self,
        gateway: &'a Gateway,
        class_accepted: bool,
        builder: &mut GatewayTableBuilder,
        claimed: &mut HashMap<(bool, Hostname), String>,
        statuses: &mut Vec<ObjectStatus>,
    ) -> Option<OurGateway<'a>> {
        let namespace = gateway.metadata.namespace.as_deref().unwrap_or("default");
        let name = gateway.metadata.name.as_deref().unwrap_or("");
        let object = ObjectRef::namespaced("Gateway", namespace, name);
        let mut status = ObjectStatus::new(object.clone(), gateway.metadata.generation);
        if !class_accepted {
            status.conditions.push(Condition::new(
                "Accepted",
                ConditionStatus::Unknown,
                "Pending",
                format!(
                    "GatewayClass {} is not accepted",
                    gateway.spec.gateway_class_name
                ),
            ));
            statuses.push(status);
            return None;
        }
        let at = statuses.len();
        let specs = &gateway.spec.listeners;
        // Indistinct listeners of this Gateway: same port and protocol, same hostname.
        let mut seen: HashMap<(i32, &str, Hostname), usize> = HashMap::new();
        let mut protocol_by_port: HashMap<i32, &str> = HashMap::new();
        let mut conflicts: HashMap<usize, &'static str> = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for (i, l) in specs.iter().enumerate() {
            let hostname = Hostname::parse(l.hostname.as_deref().unwrap_or(""));
            if !names.insert(l.name.as_str()) {
                conflicts.insert(i, "HostnameConflict");
            }
            if let Some(first) = seen.insert((l.port, l.protocol.as_str(), hostname), i) {
                conflicts.insert(first, "HostnameConflict");
                conflicts.insert(i, "HostnameConflict");
            }
            match protocol_by_port.get(&l.port) {
                Some(p) if *p != l.protocol.as_str() => {
                    conflicts.insert(i, "ProtocolConflict");
                }
                Some(_) => {}
                None => {
                    protocol_by_port.insert(l.port, l.protocol.as_str());
                }
            }
        }
        let mut ours = OurGateway {
            namespace,
            listeners: Vec::new(),
        };
        let mut invalid = Vec::new();
        for (i, l) in specs.iter().enumerate() {
            let (listener_status, candidate) = self.listener(
                gateway,
                &object,
                l,
                conflicts.get(&i).copied(),
                builder,
                claimed,
                (at, i),
            );
            let programmed = listener_status
                .conditions
                .iter()
                .any(|c| c.type_ == "Programmed" && c.status == ConditionStatus::True);
            if !programmed {
                invalid.push(l.name.clone());
            }
            status.listeners.push(listener_status);
            ours.listeners.push(candidate);
        }
        let accepted_listeners = specs.len() - invalid.len();
        if gateway
            .spec
            .addresses
            .as_ref()
            .is_some_and(|a| !a.is_empty())
        {
            status.conditions.push(Condition::no(
                "Accepted",
                "UnsupportedAddress",
                "spec.addresses: wicket serves every Gateway on the addresses of its own Service; it cannot take addresses asked for here",
            ));
        } else if invalid.is_empty() {
            status.conditions.push(Condition::yes(
                "Accepted",
                "Accepted",
                "all listeners are served",
            ));
        } else {
            status.conditions.push(Condition::new(
                "Accepted",
                if accepted_listeners > 0 {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                },
                "ListenersNotValid",
                format!("listeners not served: {}", invalid.join(", ")),
            ));
        }
        if accepted_listeners > 0 {
            status.conditions.push(Condition::yes(
                "Programmed",
                "Programmed",
                "routes of its served listeners are in the routing table",
            ));
        } else {
            status.conditions.push(Condition::no(
                "Programmed",
                "Invalid",
                "no listener of this Gateway is served",
            ));
        }
        statuses.push(status);
        Some(ours)
    }

    #[allow(clippy::too_many_arguments)]
    fn listener(
        &mut self,
        gateway: &'a Gateway,
        object: &ObjectRef,
        l: &'a Listener,
        conflict: Option<&'static str>,
        builder: &mut GatewayTableBuilder,
        claimed: &mut HashMap<(bool, Hostname), String>,
        place: (usize, usize),
    ) -> (ListenerStatus, Candidate<'a>) {
        let namespace = object.namespace.as_deref().unwrap_or("default");
        let mut accepted: Result<(), (&'static str, String)> = Ok(());
        let mut resolved: Result<(), (&'static str, String)> = Ok(());
        let hostname = Hostname::parse(l.hostname.as_deref().unwrap_or(""));
        let tls = match l.protocol.as_str() {
            "HTTP" => {
                if l.port != i32::from(self.settings.gateway_http_port) {
                    accepted = Err(("PortUnavailable", format!(
                        "wicket serves HTTP listeners on port {} (its plain-HTTP listener); port {} is not served",
                        self.settings.gateway_http_port, l.port
                    )));
                }
                if l.tls.is_some() {
                    accepted = Err((
                        "UnsupportedValue",
                        "tls is not allowed on an HTTP listener".into(),
                    ));
                }
                false
            }
            "HTTPS" => {
                if l.port != i32::from(self.settings.gateway_https_port) {
                    accepted = Err(("PortUnavailable", format!(
                        "wicket serves HTTPS listeners on port {} (its TLS listener); port {} is not served",
                        self.settings.gateway_https_port, l.port
                    )));
                }
                true
            }
            "TLS" | "TCP" | "UDP" => {
                accepted = Err((
                    "UnsupportedProtocol",
                    format!(
                        "protocol {} is not supported by wicket yet (HTTP and HTTPS are)",
                        l.protocol
                    ),
                ));
                false
            }
            other => {
                accepted = Err((
                    "UnsupportedProtocol",
                    format!("protocol {other:?} is not one wicket serves (HTTP, HTTPS)"),
                ));
                false
            }
        };
        if let Some(h) = l.hostname.as_deref().filter(|h| !h.is_empty()) {
            if let Err(why) = validate::host(&h.to_ascii_lowercase()) {
                accepted = Err(("UnsupportedValue", format!("hostname {h:?}: {why}")));
            }
        }
        // Route kinds.
        let mut supported = Vec::new();
        let mut takes_http_routes = false;
        let mut takes_grpc_routes = false;
        match l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) {
            Some(kinds) if !kinds.is_empty() => {
                let mut refused = Vec::new();
                for k in kinds {
                    let group = k.group.as_deref().unwrap_or(GROUP);
                    if group == GROUP && k.kind == HTTP_ROUTE {
                        takes_http_routes = true;
                        supported.push(format!("{GROUP}/{HTTP_ROUTE}"));
                    } else if group == GROUP && k.kind == GRPC_ROUTE {
                        takes_grpc_routes = true;
                        supported.push(format!("{GROUP}/{GRPC_ROUTE}"));
                    } else {
                        refused.push(format!("{group}/{}", k.kind));
                    }
                }
                if !refused.is_empty() {
                    resolved = Err((
                        "InvalidRouteKinds",
                        format!("route kinds wicket does not serve: {}", refused.join(", ")),
                    ));
                }
            }
            _ => {
                takes_http_routes = true;
                takes_grpc_routes = true;
                supported.push(format!("{GROUP}/{HTTP_ROUTE}"));
                supported.push(format!("{GROUP}/{GRPC_ROUTE}"));
            }
        }
        // Certificates.
        let mut certificate = None;
        if tls && accepted.is_ok() {
            match self.listener_certificate(gateway, l) {
                Ok(cert) => certificate = Some(cert),
                Err(e) => resolved = Err(e),
            }
        }
        let namespaces = match l
            .allowed_routes
            .as_ref()
            .and_then(|a| a.namespaces.as_ref())
        {
            None => FromNamespaces::Same,
            Some(n) => {
                match (n.from.as_deref().unwrap_or("Same"), &n.selector) {
                    ("Same", _) => FromNamespaces::Same,
                    ("All", _) => FromNamespaces::All,
                    ("Selector", Some(s)) => FromNamespaces::Selector(s),
                    ("Selector", None) => {
                        accepted = Err((
                            "UnsupportedValue",
                            "allowedRoutes.namespaces.from is Selector without a selector".into(),
                        ));
                        FromNamespaces::Same
                    }
                    (other, _) => {
                        accepted = Err((
                        "UnsupportedValue",
                        format!("allowedRoutes.namespaces.from {other:?} is not Same, All or Selector"),
                    ));
                        FromNamespaces::Same
                    }
                }
            }
        };
        // Conflicts: within the Gateway (given), then with older Gateways on this socket.
        let mut conflicted = conflict.map(|reason| {
            (
                reason,
                match reason {
                    "ProtocolConflict" => format!("another listener of this Gateway uses port {} with another protocol", l.port),
                    _ => "another listener of this Gateway has the same port, protocol and hostname (or name)".to_owned(),
                },
            )
        });
        let usable = accepted.is_ok()
            && conflicted.is_none()
            && !matches!(resolved, Err((r, _)) if r != "InvalidRouteKinds");
        if usable {
            let key = (tls, hostname.clone());
            match claimed.get(&key) {
                Some(holder) => {
                    conflicted = Some((
                        "HostnameConflict",
                        format!("{holder} (older) already serves hostname {hostname} on this port; all Gateways of wicket share its listeners"),
                    ));
                }
                None => {
                    claimed.insert(key, format!("listener {} of {object}", l.name));
                }
            }
        }
        let served = if usable && conflicted.is_none() {
            if let Some(cert) = certificate {
                self.listener_tls(object, &hostname, cert);
            }
            Some(builder.listener(
                tls,
                ListenerRef {
                    gateway: object.clone(),
                    name: l.name.clone(),
                    port: u16::try_from(l.port).unwrap_or(0),
                    protocol: if tls { "HTTPS" } else { "HTTP" },
                    hostname: hostname.clone(),
                },
            ))
        } else {
            None
        };
        let mut conditions = Vec::new();
        match &accepted {
            Ok(()) => conditions.push(Condition::yes(
                "Accepted",
                "Accepted",
                "the listener is valid",
            )),
            Err((reason, why)) => conditions.push(Condition::no("Accepted", reason, why.clone())),
        }
        match &resolved {
            Ok(()) => conditions.push(Condition::yes(
                "ResolvedRefs",
                "ResolvedRefs",
                "all references resolved",
            )),
            Err((reason, why)) => {
                conditions.push(Condition::no("ResolvedRefs", reason, why.clone()))
            }
        }
        match &conflicted {
            None => conditions.push(Condition::no("Conflicted", "NoConflicts", "no conflicts")),
            Some((reason, why)) => {
                conditions.push(Condition::yes("Conflicted", reason, why.clone()))
            }
        }
        if served.is_some() {
            conditions.push(Condition::yes(
                "Programmed",
                "Programmed",
                format!(
                    "served on wicket's {} listener",
                    if tls { "TLS" } else { "plain-HTTP" }
                ),
            ));
        } else {
            conditions.push(Condition::no(
                "Programmed",
                "Invalid",
                "the listener is not served: see its other conditions",
            ));
        }
        let _ = namespace;
        (
            ListenerStatus {
                name: l.name.clone(),
                supported_kinds: supported,
                attached_routes: 0,
                conditions,
            },
            Candidate {
                name: &l.name,
                port: l.port,
                hostname,
                namespaces,
                takes_http_routes,
                takes_grpc_routes,
                served,
                status: place,
            },
        )
    }

    /// The first certificateRef of an HTTPS listener, checked; refs beyond the first are
    /// not used (one certificate per listener is what Core asks).
    fn listener_certificate(
        &mut self,
        gateway: &Gateway,
        l: &Listener,
    ) -> Result<Arc<crate::model::Certificate>, (&'static str, String)> {
        let namespace = gateway.metadata.namespace.as_deref().unwrap_or("default");
        let Some(tls) = &l.tls else {
            return Err((
                "InvalidCertificateRef",
                "an HTTPS listener needs tls.certificateRefs".into(),
            ));
        };
        if let Some(mode) = tls.mode.as_deref().filter(|m| *m != "Terminate") {
            return Err((
                "InvalidCertificateRef",
                format!(
                    "tls.mode {mode}: HTTPS listeners terminate TLS (Passthrough is for TLSRoute)"
                ),
            ));
        }
        let Some(first) = tls.certificate_refs.as_deref().and_then(|r| r.first()) else {
            return Err((
                "InvalidCertificateRef",
                "an HTTPS listener needs tls.certificateRefs".into(),
            ));
        };
        let group = first.group.as_deref().unwrap_or(GROUP_CORE);
        let kind = first.kind.as_deref().unwrap_or("Secret");
        if group != GROUP_CORE || kind != "Secret" {
            return Err((
                "InvalidCertificateRef",
                format!("certificateRefs[0]: {kind} in group {group:?} is not a Secret"),
            ));
        }
        let secret_ns = first.namespace.as_deref().unwrap_or(namespace);
        if secret_ns != namespace
            && !granted(
                self.index,
                GROUP,
                "Gateway",
                namespace,
                GROUP_CORE,
                "Secret",
                secret_ns,
                &first.name,
            )
        {
            return Err((
                "RefNotPermitted",
                format!(
                    "certificateRefs[0]: Secret {secret_ns}/{} is in another namespace and no ReferenceGrant there allows Gateways from {namespace}",
                    first.name
                ),
            ));
        }
        self.secrets
            .check(secret_ns, &first.name)
            .map_err(|(_, why)| {
                (
                    "InvalidCertificateRef",
                    format!("certificateRefs[0]: {why}"),
                )
            })
    }

    /// Puts a served HTTPS listener's certificate in the TLS table (SNI), as an Ingress's
    /// `spec.tls` does; a listener without a hostname gives the default certificate unless
    /// `--default-certificate` names one.
    fn listener_tls(
        &mut self,
        object: &ObjectRef,
        hostname: &Hostname,
        cert: Arc<crate::model::Certificate>,
    ) {
        let host = match hostname {
            Hostname::Exact(h) => HostMatch::Exact(h.clone()),
            Hostname::Wildcard(s) => HostMatch::Wildcard(s.clone()),
            Hostname::Any => {
                if self.settings.default_certificate.is_none() {
                    self.tls.set_default(cert);
                }
                return;
            }
        };
        let entry = TlsHost {
            host,
            ingress: Arc::new(object.clone()),
            binding: TlsBinding::Secret(cert),
            redirect: false,
        };
        if let Err(existing) = self.tls.add(entry) {
            let message = format!(
                "TLS host {hostname} already has a certificate from {} (Ingresses and older Gateways first); the listener's is not used for it",
                existing.ingress
            );
            self.problem(object, Reason::TLSHostConflict, message);
        }
    }

    fn http_routes(
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

    /// Reports what the status says is wrong as Problems, so it shows with the rest.
    fn status_problems(&mut self, status: &ObjectStatus) {
        let object = &status.object;
        let mut out = Vec::new();
        for c in &status.conditions {
            let bad = match c.type_ {
                "Accepted" | "Programmed" => {
                    c.status != ConditionStatus::True || c.reason == "ListenersNotValid"
                }
                _ => false,
            };
            if bad {
                out.push((
                    Reason::GatewayNotAccepted,
                    format!("{} {}: {}", c.type_, c.reason, c.message),
                ));
            }
        }
        for l in &status.listeners {
            for c in &l.conditions {
                let bad = match c.type_ {
                    "Conflicted" => c.status == ConditionStatus::True,
                    "Programmed" => false,
                    _ => c.status != ConditionStatus::True,
                };
                if bad {
                    out.push((
                        Reason::GatewayNotAccepted,
                        format!(
                            "listener {}: {} {}: {}",
                            l.name, c.type_, c.reason, c.message
                        ),
                    ));
                }
            }
        }
        for p in &status.parents {
            for c in &p.conditions {
                let (bad, reason) = match c.type_ {
                    "Accepted" => (c.status != ConditionStatus::True, Reason::RouteNotAccepted),
                    "ResolvedRefs" => {
                        (c.status != ConditionStatus::True, Reason::BackendRefInvalid)
                    }
                    "PartiallyInvalid" => (true, Reason::RouteNotAccepted),
                    _ => (false, Reason::RouteNotAccepted),
                };
                if bad {
                    out.push((
                        reason,
                        format!(
                            "parent Gateway {}/{}: {} {}: {}",
                            p.parent_ref.namespace, p.parent_ref.name, c.type_, c.reason, c.message
                        ),
                    ));
                }
            }
        }
        for (reason, message) in out {
            self.problems
                .insert(Problem::new(object.clone(), reason, message));
        }
    }
}

/// Ingress rules a Gateway API rule takes the requests of: for each Ingress route, the
/// request for exactly its host and path (GET, no headers), over plain HTTP and HTTPS. The
/// Gateway API rule answers it (README, "Gateway API and Ingress together"); the Ingress
/// rule keeps only the requests no Gateway API rule matches. Wildcard Ingress hosts are
/// tried with one name under them.
pub(super) fn shadowed_ingress_rules(
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
pub(crate) fn intersect(route: &[Hostname], listener: &Hostname) -> Vec<Hostname> {
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
/// there, as the API server sets it).
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>, namespace: &str) -> bool {
    let get = |k: &str| -> Option<&str> {
        if k == "kubernetes.io/metadata.name" {
            return Some(namespace);
        }
        labels.get(k).map(String::as_str)
    };
    let labels_ok = selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.iter().all(|(k, v)| get(k) == Some(v.as_str())));
    let expressions_ok = selector.match_expressions.as_ref().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let values = e.values.as_deref().unwrap_or(&[]);
            match e.operator.as_str() {
                "In" => get(&e.key).is_some_and(|v| values.iter().any(|x| x == v)),
                "NotIn" => get(&e.key).is_none_or(|v| !values.iter().any(|x| x == v)),
                "Exists" => get(&e.key).is_some(),
                "DoesNotExist" => get(&e.key).is_none(),
                // An operator the API does not define selects nothing (fail closed).
                _ => false,
            }
        })
    });
    labels_ok && expressions_ok
}
