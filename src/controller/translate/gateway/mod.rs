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

mod listeners;
mod routes;
mod rules;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::Timestamp;

use super::Translator;
use crate::controller::gateway_api::Gateway;
use crate::controller::index::{Index, Key};
use crate::model::gateway::{GatewayTable, GatewayTableBuilder, Hostname};
use crate::model::gateway_status::{Condition, ConditionStatus, ObjectStatus};
use crate::model::{ObjectRef, Problem, Reason};

/// The core API group, as references spell it.
pub(super) const GROUP_CORE: &str = "";
const HTTP_ROUTE: &str = "HTTPRoute";
const GRPC_ROUTE: &str = "GRPCRoute";

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

pub(super) use routes::shadowed_ingress_rules;
#[cfg(test)]
use routes::{intersect, selects};
