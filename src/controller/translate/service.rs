//! From a Service port to pod addresses: the Service semantics kube-proxy users expect.
//!
//! The pod port is never computed from `targetPort`. The Service's EndpointSlices (label
//! `kubernetes.io/service-name`) list ports named after the Service port, with the container
//! port already resolved — that is what makes a named `targetPort` work. Slices are merged
//! and de-duplicated; `Endpoints` objects from manifest files count as the slice the cluster
//! would mirror from them.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use foldhash::fast::RandomState;
use k8s_openapi::api::core::v1::{Endpoints, ObjectReference, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::validate;
use crate::controller::index::Index;
use crate::controller::Settings;
use crate::model::{
    select, select_usable, Backend, Destination, Endpoint, ObjectRef, PortRef, Problem, Reason,
    Selection, Target, TrafficPolicy, UpstreamProtocol,
};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `sessionAffinityConfig.clientIP.timeoutSeconds` when unset (Kubernetes' default, 3 h).
const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10_800);
/// The largest timeout the API accepts (1 day).
const MAX_AFFINITY_SECONDS: u64 = 86_400;

/// A resolved backend, or why it cannot be used (reported on each Ingress that uses it).
#[derive(Clone)]
pub struct Resolved {
    pub target: Target,
    pub problem: Option<(Reason, String)>,
}

impl Resolved {
    fn unavailable(reason: Reason, message: String) -> Self {
        Self {
            target: Target::Unavailable(Arc::from(message.as_str())),
            problem: Some((reason, message)),
        }
    }
}

/// (namespace, name), borrowed from the index.
type Name<'a> = (&'a str, &'a str);

pub struct Resolver<'a> {
    settings: &'a Settings,
    /// Services, EndpointSlices (by the service they label, in slice-name order) and
    /// Endpoints by (namespace, name): built once so lookups allocate nothing.
    services: HashMap<Name<'a>, &'a Service, RandomState>,
    slices: HashMap<Name<'a>, Vec<&'a EndpointSlice>, RandomState>,
    endpoints: HashMap<Name<'a>, &'a Endpoints, RandomState>,
    cache: HashMap<(Name<'a>, PortRef), Resolved, RandomState>,
    /// Problems about EndpointSlices and Endpoints themselves (bad addresses).
    endpoint_problems: BTreeSet<Problem>,
}

impl<'a> Resolver<'a> {
    pub fn new(index: &'a Index, settings: &'a Settings) -> Self {
        let services = index
            .services
            .iter()
            .map(|(k, v)| ((k.namespace.as_str(), k.name.as_str()), v.as_ref()))
            .collect();
        let endpoints = index
            .endpoints
            .iter()
            .map(|(k, v)| ((k.namespace.as_str(), k.name.as_str()), v.as_ref()))
            .collect();
        let mut slices: HashMap<Name<'a>, Vec<&EndpointSlice>, RandomState> = HashMap::default();
        for (key, slice) in &index.slices {
            let service = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let Some(service) = service {
                slices
                    .entry((key.namespace.as_str(), service.as_str()))
                    .or_default()
                    .push(slice);
            }
        }
        Self {
            settings,
            services,
            slices,
            endpoints,
            cache: HashMap::default(),
            endpoint_problems: BTreeSet::new(),
        }
    }

    pub fn into_problems(self) -> impl Iterator<Item = Problem> {
        self.endpoint_problems.into_iter()
    }

    /// Resolves `namespace/service` port `port`; the same triple is resolved once per build.
    pub fn resolve(&mut self, namespace: &'a str, service: &'a str, port: PortRef) -> Resolved {
        let key = ((namespace, service), port);
        if let Some(hit) = self.cache.get(&key) {
            return hit.clone();
        }
        let resolved = self.resolve_uncached(namespace, service, &key.1);
        self.cache.insert(key, resolved.clone());
        resolved
    }

    /// `service-upstream`: the Service's cluster IP and port as the one endpoint, so
    /// kube-proxy picks the pod. A Service without a cluster IP (headless, or a manifest
    /// that leaves it out) and an ExternalName Service resolve as usual.
    pub fn resolve_cluster_ip(
        &mut self,
        namespace: &'a str,
        service: &'a str,
        port: PortRef,
    ) -> Resolved {
        let Some(&svc) = self.services.get(&(namespace, service)) else {
            return self.resolve(namespace, service, port);
        };
        let spec = svc.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            return self.resolve(namespace, service, port);
        }
        let ip = spec
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        let Some(ip) = ip else {
            let mut resolved = self.resolve(namespace, service, port);
            if resolved.problem.is_none() {
                resolved.problem = Some((
                    Reason::InvalidAnnotation,
                    format!("service-upstream: Service {namespace}/{service} has no cluster IP (headless, or none in the manifest); its endpoints are used"),
                ));
            }
            return resolved;
        };
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or(&[]);
        let svc_port = service_port(ports, &port);
        let Some((svc_port, number)) =
            svc_port.and_then(|p| u16::try_from(p.port).ok().map(|n| (p, n)))
        else {
            return self.resolve(namespace, service, port);
        };
        let mut endpoints = vec![Endpoint::new(
            SocketAddr::new(ip, number),
            true,
            true,
            false,
        )];
        let (usable, fallback) = select_usable(&mut endpoints);
        let backend = Backend {
            id: Arc::from(format!("{namespace}/{service}:{number}@{ip}")),
            namespace: Arc::from(namespace),
            service: Arc::from(service),
            port,
            service_port: number,
            protocol: upstream_protocol(svc_port.app_protocol.as_deref()),
            // kube-proxy applies the Service's own sessionAffinity behind the cluster IP.
            affinity: None,
            destination: Destination::Endpoints {
                endpoints,
                usable,
                fallback,
                selection: Selection::default(),
            },
            derived: Default::default(),
        };
        Resolved {
            target: Target::Backend(Arc::new(backend)),
            problem: None,
        }
    }

    /// [`Resolver::resolve`] for names that do not live as long as the index (an
    /// annotation's value): not cached.
    pub fn resolve_owned(&mut self, namespace: &str, service: &str, port: PortRef) -> Resolved {
        self.resolve_uncached(namespace, service, &port)
    }

    /// The Service's first port, for `--default-backend-service`.
    pub fn first_port(&self, namespace: &str, service: &str) -> Option<PortRef> {
        let svc = self.services.get(&(namespace, service))?;
        let port = svc.spec.as_ref()?.ports.as_ref()?.first()?;
        u16::try_from(port.port).ok().map(PortRef::Number)
    }

    fn resolve_uncached(&mut self, namespace: &str, name: &str, port: &PortRef) -> Resolved {
        let Some(&svc) = self.services.get(&(namespace, name)) else {
            return Resolved::unavailable(
                Reason::BackendNotFound,
                format!("Service {namespace}/{name} not found"),
            );
        };
        let spec = svc.spec.as_ref();
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or(&[]);
        let svc_port = service_port(ports, port);

        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            return self.external_name(namespace, name, svc, port, svc_port);
        }

        let Some(svc_port) = svc_port else {
            return Resolved::unavailable(
                Reason::PortNotFound,
                format!(
                    "Service {namespace}/{name} has no port {port} (it has: {})",
                    describe_ports(ports)
                ),
            );
        };
        if let Some(protocol) = svc_port.protocol.as_deref().filter(|p| *p != "TCP") {
            return Resolved::unavailable(
                Reason::PortNotFound,
                format!(
                    "Service {namespace}/{name} port {port} is {protocol}; HTTP needs a TCP port"
                ),
            );
        }
        let Ok(service_port) = u16::try_from(svc_port.port) else {
            return Resolved::unavailable(
                Reason::PortNotFound,
                format!(
                    "Service {namespace}/{name} port {} is out of range",
                    svc_port.port
                ),
            );
        };

        // Slices name their ports after the Service port ("" for a single unnamed port).
        let port_name = svc_port.name.as_deref().unwrap_or("");
        let collected = self.collect_endpoints(namespace, name, port_name);
        let mut endpoints = collected.endpoints;
        if endpoints.is_empty() && !collected.any_source {
            let message = format!(
                "Service {namespace}/{name} has no endpoints: no EndpointSlice labelled {SERVICE_NAME_LABEL}={name} and no Endpoints object"
            );
            return Resolved::unavailable(Reason::NoEndpoints, message);
        }
        let problem = if endpoints.is_empty() && !collected.port_found {
            Some((
                Reason::NoEndpoints,
                format!(
                    "no EndpointSlice of Service {namespace}/{name} lists a port named {port_name:?} (the name of Service port {port})"
                ),
            ))
        } else {
            None
        };
        let policy = self.traffic_policy(namespace, name, svc);
        let selected = select(&mut endpoints, &policy, &self.settings.locality);
        let app_protocol = collected
            .app_protocol
            .or_else(|| svc_port.app_protocol.clone());
        let backend = Backend {
            id: Arc::from(format!("{namespace}/{name}:{service_port}")),
            namespace: Arc::from(namespace),
            service: Arc::from(name),
            port: port.clone(),
            service_port,
            protocol: upstream_protocol(app_protocol.as_deref()),
            affinity: client_ip_affinity(svc),
            destination: Destination::Endpoints {
                endpoints,
                usable: selected.usable,
                fallback: selected.fallback,
                selection: selected.selection,
            },
            derived: Default::default(),
        };
        Resolved {
            target: Target::Backend(Arc::new(backend)),
            problem,
        }
    }

    /// The Service's `internalTrafficPolicy` and `trafficDistribution`. Values Kubernetes
    /// does not know are Problems and count as unset (as kube-proxy treats them); so is a
    /// node-local Service wicket cannot serve as meant (no node name; a Deployment).
    fn traffic_policy(&mut self, namespace: &str, name: &str, svc: &Service) -> TrafficPolicy {
        let spec = svc.spec.as_ref();
        let object = || ObjectRef::namespaced("Service", namespace, name);
        let node_local = match spec.and_then(|s| s.internal_traffic_policy.as_deref()) {
            None | Some("Cluster") => false,
            Some("Local") => true,
            Some(other) => {
                self.endpoint_problems.insert(Problem::new(
                    object(),
                    Reason::TrafficPolicy,
                    format!("internalTrafficPolicy {other:?} is neither Cluster nor Local; treated as Cluster"),
                ));
                false
            }
        };
        let distribution = match spec.and_then(|s| s.traffic_distribution.as_deref()) {
            None => None,
            Some(d @ ("PreferClose" | "PreferSameZone" | "PreferSameNode")) => Some(Arc::from(d)),
            Some(other) => {
                self.endpoint_problems.insert(Problem::new(
                    object(),
                    Reason::TrafficPolicy,
                    format!("trafficDistribution {other:?} is not PreferClose, PreferSameZone or PreferSameNode; treated as unset, as kube-proxy does"),
                ));
                None
            }
        };
        let here = &self.settings.locality;
        if node_local && here.node.is_none() {
            self.endpoint_problems.insert(Problem::new(
                object(),
                Reason::TrafficPolicy,
                "internalTrafficPolicy is Local, but wicket does not know its node name (set NODE_NAME from the downward API, or --node-name): its routes answer 503",
            ));
        } else if node_local && here.deployment {
            self.endpoint_problems.insert(Problem::new(
                object(),
                Reason::TrafficPolicy,
                "internalTrafficPolicy is Local and wicket runs as a Deployment: replicas on nodes without an endpoint of this Service answer 503; run wicket as a DaemonSet (chart: kind=DaemonSet)",
            ));
        }
        TrafficPolicy {
            node_local,
            distribution,
        }
    }

    fn external_name(
        &self,
        namespace: &str,
        name: &str,
        svc: &Service,
        port: &PortRef,
        svc_port: Option<&ServicePort>,
    ) -> Resolved {
        let spec = svc.spec.as_ref();
        let external = spec
            .and_then(|s| s.external_name.as_deref())
            .unwrap_or("")
            .trim_end_matches('.');
        if !self.settings.allow_external_name {
            return Resolved::unavailable(
                Reason::ExternalNameDisabled,
                format!(
                    "Service {namespace}/{name} is of type ExternalName ({external:?}); start wicket with --allow-external-name to route to it"
                ),
            );
        }
        if let Err(e) = validate::dns_subdomain(external) {
            return Resolved::unavailable(
                Reason::BackendNotFound,
                format!("Service {namespace}/{name}: externalName {external:?} {e}"),
            );
        }
        // ExternalName: the port is the Ingress's port number (or the named Service port's).
        let number = match (port, svc_port) {
            (PortRef::Number(n), _) => *n,
            (PortRef::Name(_), Some(p)) => u16::try_from(p.port).unwrap_or_default(),
            (PortRef::Name(_), None) => 0,
        };
        if number == 0 {
            return Resolved::unavailable(
                Reason::PortNotFound,
                format!("Service {namespace}/{name} has no port {port}"),
            );
        }
        let destination = match Destination::external_name(external.to_owned(), number) {
            Ok(d) => d,
            Err(e) => {
                return Resolved::unavailable(
                    Reason::BackendNotFound,
                    format!("Service {namespace}/{name}: externalName {external:?}: {e}"),
                )
            }
        };
        let backend = Backend {
            id: Arc::from(format!("{namespace}/{name}:{number}")),
            namespace: Arc::from(namespace),
            service: Arc::from(name),
            port: port.clone(),
            service_port: number,
            protocol: upstream_protocol(svc_port.and_then(|p| p.app_protocol.as_deref())),
            affinity: None,
            destination,
            derived: Default::default(),
        };
        Resolved {
            target: Target::Backend(Arc::new(backend)),
            problem: None,
        }
    }

    fn collect_endpoints(&mut self, namespace: &str, service: &str, port_name: &str) -> Collected {
        let mut out = Collected::default();
        let mut found: Vec<Endpoint> = Vec::new();

        let slices = self
            .slices
            .get(&(namespace, service))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for slice in slices {
            out.any_source = true;
            let slice_name = slice.metadata.name.as_deref().unwrap_or("");
            let object = || ObjectRef::namespaced("EndpointSlice", namespace, slice_name);
            let family = match slice.address_type.as_str() {
                "IPv4" => Family::V4,
                "IPv6" => Family::V6,
                // FQDN slices are deprecated and not something a proxy can use.
                _ => continue,
            };
            let Some(port) = slice.ports.iter().flatten().find(|p| {
                p.name.as_deref().unwrap_or("") == port_name
                    && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
            }) else {
                continue;
            };
            let Some(number) = port
                .port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
            else {
                self.endpoint_problems.insert(Problem::new(
                    object(),
                    Reason::InvalidEndpoint,
                    format!("port {port_name:?} has no usable port number"),
                ));
                continue;
            };
            out.port_found = true;
            if out.app_protocol.is_none() {
                out.app_protocol = port.app_protocol.clone();
            }
            for (i, ep) in slice.endpoints.iter().enumerate() {
                let conditions = ep.conditions.as_ref();
                // Missing conditions: ready = true, serving = ready, terminating = false.
                let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
                // Every address of an endpoint takes traffic, with the endpoint's conditions
                // (a hand-written slice may list several; the EndpointSlice controller
                // writes one per endpoint).
                for (a, address) in ep.addresses.iter().enumerate() {
                    let ip = match parse_ip(address, family) {
                        Ok(ip) => ip,
                        Err(why) => {
                            self.endpoint_problems.insert(Problem::new(
                                object(),
                                Reason::InvalidEndpoint,
                                format!("endpoints[{i}].addresses[{a}] {address:?} {why}; skipped"),
                            ));
                            continue;
                        }
                    };
                    let mut endpoint =
                        Endpoint::new(SocketAddr::new(ip, number), ready, serving, terminating);
                    endpoint.pod = pod_name(ep.target_ref.as_ref());
                    endpoint.node = non_empty(ep.node_name.as_deref());
                    endpoint.zone = non_empty(ep.zone.as_deref());
                    if let Some(hints) = &ep.hints {
                        endpoint.hints.for_zones = hints
                            .for_zones
                            .iter()
                            .flatten()
                            .filter_map(|z| non_empty(Some(&z.name)))
                            .collect();
                        endpoint.hints.for_nodes = hints
                            .for_nodes
                            .iter()
                            .flatten()
                            .filter_map(|n| non_empty(Some(&n.name)))
                            .collect();
                    }
                    found.push(endpoint);
                }
            }
        }

        if let Some(endpoints) = self.endpoints.get(&(namespace, service)).copied() {
            out.any_source = true;
            let object = || ObjectRef::namespaced("Endpoints", namespace, service);
            for (si, subset) in endpoints.subsets.iter().flatten().enumerate() {
                let Some(port) = subset.ports.iter().flatten().find(|p| {
                    p.name.as_deref().unwrap_or("") == port_name
                        && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
                }) else {
                    continue;
                };
                let Some(number) = u16::try_from(port.port).ok().filter(|p| *p > 0) else {
                    self.endpoint_problems.insert(Problem::new(
                        object(),
                        Reason::InvalidEndpoint,
                        format!(
                            "subsets[{si}] port {port_name:?} number {} is out of range",
                            port.port
                        ),
                    ));
                    continue;
                };
                out.port_found = true;
                if out.app_protocol.is_none() {
                    out.app_protocol = port.app_protocol.clone();
                }
                let ready = subset
                    .addresses
                    .iter()
                    .flatten()
                    .map(|a| (a, true, "addresses"));
                let not_ready = subset
                    .not_ready_addresses
                    .iter()
                    .flatten()
                    .map(|a| (a, false, "notReadyAddresses"));
                for (ai, (address, is_ready, field)) in ready.chain(not_ready).enumerate() {
                    let ip = match parse_ip(&address.ip, Family::Any) {
                        Ok(ip) => ip,
                        Err(why) => {
                            self.endpoint_problems.insert(Problem::new(
                                object(),
                                Reason::InvalidEndpoint,
                                format!(
                                    "subsets[{si}].{field} entry {ai}: ip {:?} {why}; skipped",
                                    address.ip
                                ),
                            ));
                            continue;
                        }
                    };
                    // What the mirroring controller writes: not-ready addresses are neither
                    // ready nor serving.
                    let mut endpoint =
                        Endpoint::new(SocketAddr::new(ip, number), is_ready, is_ready, false);
                    endpoint.pod = pod_name(address.target_ref.as_ref());
                    endpoint.node = non_empty(address.node_name.as_deref());
                    found.push(endpoint);
                }
            }
        }

        // Merge: one entry per address, the first seen (slices in name order) wins.
        found.sort_by_key(|e| e.addr);
        found.dedup_by_key(|e| e.addr);
        out.endpoints = found;
        out
    }
}

#[derive(Default)]
struct Collected {
    endpoints: Vec<Endpoint>,
    /// Whether any slice or Endpoints object exists for the Service.
    any_source: bool,
    /// Whether any of them lists the port.
    port_found: bool,
    app_protocol: Option<String>,
}

#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
    Any,
}

fn parse_ip(address: &str, family: Family) -> Result<IpAddr, &'static str> {
    let ip: IpAddr = address.parse().map_err(|_| "is not an IP address")?;
    match (family, ip) {
        (Family::V4, IpAddr::V6(_)) => Err("is IPv6 in an IPv4 slice"),
        (Family::V6, IpAddr::V4(_)) => Err("is IPv4 in an IPv6 slice"),
        _ if ip.is_unspecified() => Err("is the unspecified address"),
        _ if ip.is_multicast() => Err("is a multicast address"),
        _ => Ok(ip),
    }
}

/// A name, unless it is missing or empty.
fn non_empty(v: Option<&str>) -> Option<Arc<str>> {
    v.filter(|v| !v.is_empty()).map(Arc::from)
}

/// The pod behind an endpoint, when its `targetRef` names one.
fn pod_name(target: Option<&ObjectReference>) -> Option<String> {
    target
        .filter(|r| r.kind.as_deref() == Some("Pod"))
        .and_then(|r| r.name.clone())
}

fn upstream_protocol(app_protocol: Option<&str>) -> UpstreamProtocol {
    match app_protocol {
        Some("kubernetes.io/h2c") => UpstreamProtocol::H2c,
        Some(p) if p.eq_ignore_ascii_case("https") => UpstreamProtocol::Https,
        _ => UpstreamProtocol::Http1,
    }
}

fn client_ip_affinity(svc: &Service) -> Option<Duration> {
    let spec = svc.spec.as_ref()?;
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return None;
    }
    let seconds = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds);
    Some(match seconds {
        Some(s) if s > 0 => Duration::from_secs((s as u64).min(MAX_AFFINITY_SECONDS)),
        _ => DEFAULT_AFFINITY_TIMEOUT,
    })
}

/// The Service port an Ingress names, by number or by name.
fn service_port<'s>(ports: &'s [ServicePort], port: &PortRef) -> Option<&'s ServicePort> {
    ports.iter().find(|p| match port {
        PortRef::Number(n) => p.port == i32::from(*n),
        PortRef::Name(want) => p.name.as_deref() == Some(want.as_str()),
    })
}

fn describe_ports(ports: &[ServicePort]) -> String {
    if ports.is_empty() {
        return "no ports".to_owned();
    }
    ports
        .iter()
        .map(|p| match &p.name {
            Some(name) => format!("{}/{name}", p.port),
            None => p.port.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
