//! Gateway API status: the leader writes what translation computed (`Snapshot::
//! gateway_status`) into GatewayClasses, Gateways and HTTPRoutes of ours, through the
//! status subresource, and only when it differs from what the object carries.
//!
//! Conditions keep their `lastTransitionTime` while their status does not change, and
//! carry the `observedGeneration` they were computed for. A route's `status.parents`
//! entries of other controllers are kept as they are; ours (by `controllerName`) are
//! replaced, and removed when the route no longer names that Gateway.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::status::Address;
use super::View;
use crate::controller::gateway_api::{Gateway, GatewayClass, GrpcRoute, HttpRoute, GROUP};
use crate::controller::index::{Index, Key, Kind};
use crate::model::gateway_status::{Condition, ConditionStatus, ObjectStatus};
use crate::model::Snapshot;

/// How long after a failed write the status is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// One object's status as it should be.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub kind: Kind,
    pub key: Key,
    pub resource_version: Option<String>,
    pub status: Value,
}

/// The status writes a build asks for: objects whose status differs from what they carry
/// (transition times aside).
pub fn desired(
    index: &Index,
    snapshot: &Snapshot,
    controller: &str,
    addresses: Option<&[Address]>,
) -> Vec<Desired> {
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let mut out = Vec::new();
    for object in &snapshot.gateway_status {
        let ns = object.object.namespace.as_deref().unwrap_or("");
        let key = Key::new(ns, &object.object.name);
        let (kind, current, rv) = match object.object.kind.as_str() {
            "GatewayClass" => match index.gateway_classes.get(&key) {
                Some(o) => (
                    Kind::GatewayClass,
                    o.status.as_ref(),
                    &o.metadata.resource_version,
                ),
                None => continue,
            },
            "Gateway" => match index.gateways.get(&key) {
                Some(o) => (
                    Kind::Gateway,
                    o.status.as_ref(),
                    &o.metadata.resource_version,
                ),
                None => continue,
            },
            "HTTPRoute" => match index.http_routes.get(&key) {
                Some(o) => (
                    Kind::HttpRoute,
                    o.status.as_ref(),
                    &o.metadata.resource_version,
                ),
                None => continue,
            },
            "GRPCRoute" => match index.grpc_routes.get(&key) {
                Some(o) => (
                    Kind::GrpcRoute,
                    o.status.as_ref(),
                    &o.metadata.resource_version,
                ),
                None => continue,
            },
            _ => continue,
        };
        let status = match kind {
            Kind::HttpRoute | Kind::GrpcRoute => route_status(object, current, controller, &now),
            Kind::Gateway => gateway_status(object, current, addresses, &now),
            _ => {
                json!({ "conditions": conditions(&object.conditions, object.observed_generation, current.and_then(|c| c.get("conditions")), &now) })
            }
        };
        if current.is_some_and(|c| same(c, &status)) {
            continue;
        }
        out.push(Desired {
            kind,
            key,
            resource_version: rv.clone(),
            status,
        });
    }
    out
}

/// Equal once transition times are left out: what a rewrite would change nothing of.
fn same(current: &Value, desired: &Value) -> bool {
    without_times(current) == without_times(desired)
}

fn without_times(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "lastTransitionTime")
                .map(|(k, v)| (k.clone(), without_times(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_times).collect()),
        other => other.clone(),
    }
}

fn conditions(
    list: &[Condition],
    generation: Option<i64>,
    current: Option<&Value>,
    now: &str,
) -> Value {
    Value::Array(
        list.iter()
            .map(|c| {
                let status = match c.status {
                    ConditionStatus::True => "True",
                    ConditionStatus::False => "False",
                    ConditionStatus::Unknown => "Unknown",
                };
                // The time it last changed: kept while the status stays the same.
                let since = current
                    .and_then(Value::as_array)
                    .and_then(|cs| cs.iter().find(|x| x["type"] == c.type_))
                    .filter(|x| x["status"] == status)
                    .and_then(|x| x["lastTransitionTime"].as_str())
                    .unwrap_or(now);
                let mut v = json!({
                    "type": c.type_,
                    "status": status,
                    "reason": c.reason,
                    "message": c.message,
                    "lastTransitionTime": since,
                });
                if let Some(g) = generation {
                    v["observedGeneration"] = json!(g);
                }
                v
            })
            .collect(),
    )
}

fn gateway_status(
    object: &ObjectStatus,
    current: Option<&Value>,
    addresses: Option<&[Address]>,
    now: &str,
) -> Value {
    let generation = object.observed_generation;
    let listeners: Vec<Value> = object
        .listeners
        .iter()
        .map(|l| {
            let was = current
                .and_then(|c| c["listeners"].as_array())
                .and_then(|ls| ls.iter().find(|x| x["name"] == l.name.as_str()))
                .and_then(|x| x.get("conditions"));
            let kinds: Vec<Value> = l
                .supported_kinds
                .iter()
                .map(|k| {
                    let (group, kind) = k.rsplit_once('/').unwrap_or((GROUP, k));
                    json!({ "group": group, "kind": kind })
                })
                .collect();
            json!({
                "name": l.name,
                "supportedKinds": kinds,
                "attachedRoutes": l.attached_routes,
                "conditions": conditions(&l.conditions, generation, was, now),
            })
        })
        .collect();
    let mut status = json!({
        "conditions": conditions(&object.conditions, generation, current.and_then(|c| c.get("conditions")), now),
        "listeners": listeners,
    });
    if let Some(addresses) = addresses.filter(|a| !a.is_empty()) {
        status["addresses"] = Value::Array(
            addresses
                .iter()
                .map(|a| match a {
                    Address::Ip(ip) => json!({ "type": "IPAddress", "value": ip }),
                    Address::Hostname(h) => json!({ "type": "Hostname", "value": h }),
                })
                .collect(),
        );
    }
    status
}

fn route_status(
    object: &ObjectStatus,
    current: Option<&Value>,
    controller: &str,
    now: &str,
) -> Value {
    let generation = object.observed_generation;
    let existing: Vec<Value> = current
        .and_then(|c| c["parents"].as_array())
        .cloned()
        .unwrap_or_default();
    let ours: Vec<(Value, Value)> = object
        .parents
        .iter()
        .map(|p| {
            let mut parent_ref = json!({
                "group": p.parent_ref.group,
                "kind": p.parent_ref.kind,
                "namespace": p.parent_ref.namespace,
                "name": p.parent_ref.name,
            });
            if let Some(s) = &p.parent_ref.section_name {
                parent_ref["sectionName"] = json!(s);
            }
            if let Some(port) = p.parent_ref.port {
                parent_ref["port"] = json!(port);
            }
            let was = existing
                .iter()
                .find(|e| {
                    e["controllerName"] == controller && same_parent(&e["parentRef"], &parent_ref)
                })
                .and_then(|e| e.get("conditions"));
            let entry = json!({
                "parentRef": parent_ref.clone(),
                "controllerName": controller,
                "conditions": conditions(&p.conditions, generation, was, now),
            });
            (parent_ref, entry)
        })
        .collect();
    let mut parents: Vec<Value> = Vec::new();
    let mut placed = vec![false; ours.len()];
    for e in &existing {
        if e["controllerName"] != controller {
            parents.push(e.clone());
            continue;
        }
        // Ours: replaced in place, or dropped when no longer computed.
        if let Some(i) = ours
            .iter()
            .position(|(r, _)| same_parent(&e["parentRef"], r))
        {
            if !placed[i] {
                placed[i] = true;
                parents.push(ours[i].1.clone());
            }
        }
    }
    for (i, (_, entry)) in ours.into_iter().enumerate() {
        if !placed[i] {
            parents.push(entry);
        }
    }
    json!({ "parents": parents })
}

/// Two parentRefs name the same parent (defaults filled in: group, kind).
fn same_parent(a: &Value, b: &Value) -> bool {
    let field = |v: &Value, k: &str, default: &str| v[k].as_str().unwrap_or(default).to_owned();
    field(a, "group", GROUP) == field(b, "group", GROUP)
        && field(a, "kind", "Gateway") == field(b, "kind", "Gateway")
        && field(a, "namespace", "") == field(b, "namespace", "")
        && field(a, "name", "") == field(b, "name", "")
        && a["sectionName"] == b["sectionName"]
        && a["port"] == b["port"]
}

/// Writes status while this replica leads; idle otherwise.
pub async fn run(
    client: Client,
    views: watch::Receiver<Arc<View>>,
    leader: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
) {
    // What we last wrote per object, at which resourceVersion: until the watch shows our
    // write, a rebuild does not write the same again.
    let mut written: HashMap<(Kind, Key), (Option<String>, Value)> = HashMap::new();
    let mut turns = super::Turns::new(views, leader, stop);
    while let Some(turn) = turns.next().await {
        let view = match turn {
            super::Turn::NotLeading => {
                written.clear();
                continue;
            }
            super::Turn::Write(view) => view,
        };
        let mut ok = true;
        for d in &view.gateway {
            let id = (d.kind, d.key.clone());
            if let Some((rv, value)) = written.get(&id) {
                if *rv == d.resource_version && same(value, &d.status) {
                    continue;
                }
            }
            match super::while_leader(turns.leader(), patch(&client, d)).await {
                Ok(()) => {
                    info!(kind = %d.kind, object = %d.key, "Gateway API status updated");
                    written.insert(id, (d.resource_version.clone(), d.status.clone()));
                }
                Err(super::WriteError::Api(kube::Error::Api(s))) if s.code == 404 => {
                    debug!(kind = %d.kind, object = %d.key, "object gone before its status was written");
                }
                Err(super::WriteError::NotLeader) => break,
                Err(e) => {
                    warn!(kind = %d.kind, object = %d.key, error = %e, "cannot update Gateway API status; retrying");
                    ok = false;
                }
            }
        }
        written.retain(|(k, key), _| view.gateway.iter().any(|d| d.kind == *k && d.key == *key));
        if !ok {
            turns.retry_after(RETRY);
        }
    }
}

async fn patch(client: &Client, d: &Desired) -> Result<(), kube::Error> {
    let patch = json!({ "status": d.status });
    let params = PatchParams::default();
    let patch = Patch::Merge(&patch);
    match d.kind {
        Kind::GatewayClass => {
            let api: Api<GatewayClass> = Api::all(client.clone());
            api.patch_status(&d.key.name, &params, &patch)
                .await
                .map(|_| ())
        }
        Kind::Gateway => {
            let api: Api<Gateway> = Api::namespaced(client.clone(), &d.key.namespace);
            api.patch_status(&d.key.name, &params, &patch)
                .await
                .map(|_| ())
        }
        Kind::GrpcRoute => {
            let api: Api<GrpcRoute> = Api::namespaced(client.clone(), &d.key.namespace);
            api.patch_status(&d.key.name, &params, &patch)
                .await
                .map(|_| ())
        }
        _ => {
            let api: Api<HttpRoute> = Api::namespaced(client.clone(), &d.key.namespace);
            api.patch_status(&d.key.name, &params, &patch)
                .await
                .map(|_| ())
        }
    }
}
