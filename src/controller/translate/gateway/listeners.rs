//! Gateways and their listeners: which are served on which socket, conflicts, route
//! kinds and namespaces, certificates (with ReferenceGrants), and their status.

use std::collections::HashMap;
use std::sync::Arc;

use super::{granted, Candidate, FromNamespaces, OurGateway, GROUP_CORE, GRPC_ROUTE, HTTP_ROUTE};
use crate::controller::gateway_api::{Gateway, Listener, GROUP};
use crate::controller::translate::{validate, Translator};
use crate::model::gateway::{GatewayTableBuilder, Hostname, ListenerRef};
use crate::model::gateway_status::{Condition, ConditionStatus, ListenerStatus, ObjectStatus};
use crate::model::{HostMatch, ObjectRef, Reason, TlsBinding, TlsHost};

impl<'a> Translator<'a> {
    /// One Gateway of our classes: its listeners checked, served ones added to `builder`
    /// (and their certificates to the TLS table), its status pushed.
    pub(super) fn gateway(
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
}
