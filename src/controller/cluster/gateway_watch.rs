//! Gateway API watchers: started once discovery finds the CRDs (absent CRDs turn Gateway
//! API off with one info line; installed later, they are picked up without a restart),
//! and the wrappers that keep only what translation reads.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::watch::{follow, run, strip, Change, Scope};
use crate::controller::gateway_api::{
    self, Gateway, GatewayClass, GrpcRoute, HttpRoute, ReferenceGrant,
};
use crate::controller::index::{Kind, Object};

pub(super) fn namespace(mut o: Namespace) -> Object {
    // Only the labels are read (listeners select route namespaces by them).
    strip(&mut o.metadata, |_| false);
    o.spec = None;
    o.status = None;
    Object::Namespace(Arc::new(o))
}

pub(super) fn gateway_class(mut o: GatewayClass) -> Object {
    strip(&mut o.metadata, |_| false);
    Object::GatewayClass(Arc::new(o))
}

pub(super) fn gateway(mut o: Gateway) -> Object {
    strip(&mut o.metadata, |_| false);
    Object::Gateway(Arc::new(o))
}

pub(super) fn grpc_route(mut o: GrpcRoute) -> Object {
    strip(&mut o.metadata, |_| false);
    Object::GrpcRoute(Arc::new(o))
}

pub(super) fn http_route(mut o: HttpRoute) -> Object {
    strip(&mut o.metadata, |_| false);
    Object::HttpRoute(Arc::new(o))
}

/// What discovery found of Gateway API in a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    /// The version ReferenceGrants are served at (`v1` since Gateway API 1.5, `v1beta1`
    /// before); None when they are not.
    pub grants: Option<&'static str>,
    /// GRPCRoute is served (standard since Gateway API 1.1).
    pub grpc_routes: bool,
}

/// The Gateway API kinds a cluster serves, found by discovery: `None` when its CRDs are
/// not installed.
pub async fn discover_gateway_api(client: &Client) -> Result<Option<Served>, kube::Error> {
    let has = |list: &k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList,
               plural: &str| { list.resources.iter().any(|r| r.name == plural) };
    let v1 = match client
        .list_api_group_resources(gateway_api::API_VERSION)
        .await
    {
        Ok(list) => list,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(e),
    };
    if !["gatewayclasses", "gateways", "httproutes"]
        .iter()
        .all(|p| has(&v1, p))
    {
        return Ok(None);
    }
    let grpc_routes = has(&v1, "grpcroutes");
    if has(&v1, "referencegrants") {
        return Ok(Some(Served {
            grants: Some("v1"),
            grpc_routes,
        }));
    }
    let grants = match client
        .list_api_group_resources(gateway_api::API_VERSION_V1BETA1)
        .await
    {
        Ok(list) if has(&list, "referencegrants") => Some("v1beta1"),
        Ok(_) => None,
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => return Err(e),
    };
    Ok(Some(Served {
        grants,
        grpc_routes,
    }))
}

/// Watches the Gateway API kinds once their CRDs are installed: until then one info line,
/// and a discovery request every `recheck` (no error loop, no restart needed when they are
/// installed later). `stream` is its slot among the watchers readiness waits for: it says
/// `Listed` once the first discovery finds no CRDs, or once all its watchers have listed,
/// so a restart with Gateway API in use is not ready before its routes are.
pub async fn follow_gateway_api(
    client: Client,
    namespaces: Vec<String>,
    stream: usize,
    tx: mpsc::Sender<Change>,
    recheck: std::time::Duration,
) {
    let mut said = false;
    let mut listed = false;
    let served = loop {
        match discover_gateway_api(&client).await {
            Ok(Some(served)) => break served,
            Ok(None) if !said => {
                info!(recheck = ?recheck, "Gateway API CRDs are not installed: Gateway API is off until they are (checked again periodically)");
                said = true;
            }
            Err(e) if !said => {
                warn!(error = %e, "cannot discover the Gateway API group; Gateway API is off, retrying periodically");
                said = true;
            }
            _ => {}
        }
        if !listed {
            // Nothing to wait for: readiness goes on without Gateway API.
            listed = true;
            if tx.send(Change::Listed(stream)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(recheck) => {}
            () = tx.closed() => return,
        }
    };
    info!(reference_grants = served.grants.unwrap_or("not served"), grpc_routes = served.grpc_routes, "Gateway API CRDs found: watching GatewayClasses, Gateways, HTTPRoutes, ReferenceGrants and Namespaces");
    let mut scopes = vec![
        Scope {
            kind: Kind::GatewayClass,
            namespace: None,
        },
        Scope {
            kind: Kind::Namespace,
            namespace: None,
        },
    ];
    let spaces: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    for ns in &spaces {
        for kind in [Kind::Gateway, Kind::HttpRoute] {
            scopes.push(Scope {
                kind,
                namespace: ns.clone(),
            });
        }
        if served.grpc_routes {
            scopes.push(Scope {
                kind: Kind::GrpcRoute,
                namespace: ns.clone(),
            });
        }
    }
    // The watchers report here; their changes are passed on, and the first time all of
    // them have listed, this stream counts as listed.
    let (sub_tx, mut sub_rx) = mpsc::channel(256);
    let mut tasks = Vec::new();
    let mut next = 0;
    for scope in scopes {
        tasks.push(tokio::spawn(follow(
            client.clone(),
            scope,
            next,
            sub_tx.clone(),
        )));
        next += 1;
    }
    if let Some(version) = served.grants {
        for ns in spaces {
            tasks.push(tokio::spawn(follow_grants(
                client.clone(),
                ns,
                version,
                next,
                sub_tx.clone(),
            )));
            next += 1;
        }
    }
    drop(sub_tx);
    // Dropping this task must stop its watchers too.
    struct AbortAll(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for AbortAll {
        fn drop(&mut self) {
            for t in &self.0 {
                t.abort();
            }
        }
    }
    let _all = AbortAll(tasks);
    let mut done = vec![false; next];
    while let Some(change) = sub_rx.recv().await {
        let change = match change {
            Change::Reset {
                stream: sub,
                kind,
                namespace,
                objects,
            } => {
                if let Some(d) = done.get_mut(sub) {
                    *d = true;
                }
                Change::Reset {
                    stream: usize::MAX,
                    kind,
                    namespace,
                    objects,
                }
            }
            other => other,
        };
        if tx.send(change).await.is_err() {
            return;
        }
        if !listed && done.iter().all(|d| *d) {
            listed = true;
            if tx.send(Change::Listed(stream)).await.is_err() {
                return;
            }
        }
    }
}

/// ReferenceGrants at the version the cluster serves them (v1 or v1beta1; same fields).
async fn follow_grants(
    client: Client,
    namespace: Option<String>,
    version: &'static str,
    stream: usize,
    tx: mpsc::Sender<Change>,
) {
    let resource = kube::discovery::ApiResource {
        group: gateway_api::GROUP.into(),
        version: version.into(),
        api_version: format!("{}/{version}", gateway_api::GROUP),
        kind: "ReferenceGrant".into(),
        plural: "referencegrants".into(),
    };
    let api: Api<kube::core::DynamicObject> = match &namespace {
        Some(ns) => Api::namespaced_with(client, ns, &resource),
        None => Api::all_with(client, &resource),
    };
    let scope = Scope {
        kind: Kind::ReferenceGrant,
        namespace,
    };
    run(api, watcher::Config::default(), scope, stream, tx, grant).await;
}

fn grant(o: kube::core::DynamicObject) -> Object {
    let mut metadata = o.metadata;
    strip(&mut metadata, |_| false);
    // A grant whose spec does not read as one grants nothing.
    let spec =
        serde_json::from_value(o.data.get("spec").cloned().unwrap_or_default()).unwrap_or_default();
    Object::ReferenceGrant(Arc::new(ReferenceGrant {
        metadata,
        spec,
        ..ReferenceGrant::default()
    }))
}
