//! The watchers: one kube-runtime watcher per kind (and per namespace with
//! `--watch-namespace`), each turned into index changes.
//!
//! A watcher (re-)lists, then watches. Its `Init … InitApply … InitDone` sequence is buffered
//! here and handed on as one `Reset`, so the index never sees the half-listed state of a
//! re-list, and objects deleted while the watch was down disappear in the same step. Errors
//! are retried with kube's exponential backoff (0.8 s doubling to 30 s), never in a busy loop.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::gateway_watch;
use crate::controller::class::{CLASS_ANNOTATION, DEFAULT_CLASS_ANNOTATION};
use crate::controller::gateway_api::{Gateway, GatewayClass, GrpcRoute, HttpRoute};
use crate::controller::index::{Key, Kind, Object};
use crate::controller::translate::TLS_SECRET_TYPE;

/// Annotation prefixes of the Ingress annotations translation reads (or reports as unsupported).
const INGRESS_ANNOTATION_PREFIXES: [&str; 2] = ["wicket.dev/", "nginx.ingress.kubernetes.io/"];

/// What one watcher tells the index.
#[derive(Debug)]
pub enum Change {
    Apply(Object),
    Delete(Kind, Key),
    /// Every object of `kind` (in `namespace`, or everywhere) after a (re-)list; also says
    /// that watcher `stream` has finished a list.
    Reset {
        stream: usize,
        kind: Kind,
        namespace: Option<String>,
        objects: Vec<Object>,
    },
    /// A Secret watched by name because an Ingress names it for an access guard: what it
    /// is now (None: it does not exist). The first one after a watcher starts also says it
    /// has listed.
    Named(Key, Option<Object>),
    /// Stream `usize` has listed what it had to (the Gateway API follower: its CRDs are
    /// absent, or every one of its watchers has listed once).
    Listed(usize),
}

/// The Secrets the Ingresses name for access guards (`auth-secret`, `auth-tls-secret`), in
/// their own namespace only: the ones [`follow_named`] watches.
pub fn named_secrets(ingresses: &BTreeMap<Key, Arc<Ingress>>) -> std::collections::BTreeSet<Key> {
    let mut wanted = std::collections::BTreeSet::new();
    for (key, ingress) in ingresses {
        let Some(annotations) = ingress.metadata.annotations.as_ref() else {
            continue;
        };
        let get = |name: &str| {
            INGRESS_ANNOTATION_PREFIXES
                .iter()
                .find_map(|p| annotations.get(&format!("{p}{name}")))
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let basic = get("auth-type").and_then(|_| get("auth-secret"));
        for value in [basic, get("auth-tls-secret")].into_iter().flatten() {
            let (ns, name) = value.split_once('/').unwrap_or((&key.namespace, value));
            // Another namespace's Secret is refused by translation: never read.
            if ns == key.namespace && !name.is_empty() {
                wanted.insert(Key::new(ns, name));
            }
        }
    }
    wanted
}

/// Watches one Secret by name (a field selector: no other Secret of the namespace is
/// listed) until aborted.
pub async fn follow_named(client: Client, key: Key, tx: mpsc::Sender<Change>) {
    let api: Api<Secret> = Api::namespaced(client, &key.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
    let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
    let mut listed = None;
    let mut failing = false;
    while let Some(event) = events.next().await {
        let change = match event {
            Err(e) => {
                if !failing {
                    warn!(secret = %key, error = %e, "watching a Secret an Ingress names failed; retrying with backoff");
                }
                failing = true;
                continue;
            }
            Ok(Event::Init) => {
                listed = None;
                None
            }
            Ok(Event::InitApply(o)) => {
                listed = Some(named_secret(o));
                None
            }
            Ok(Event::InitDone) => Some(Change::Named(key.clone(), listed.take())),
            Ok(Event::Apply(o)) => Some(Change::Named(key.clone(), Some(named_secret(o)))),
            Ok(Event::Delete(_)) => Some(Change::Named(key.clone(), None)),
        };
        failing = false;
        if let Some(change) = change {
            if tx.send(change).await.is_err() {
                return;
            }
        }
    }
}

/// A Secret an access guard reads: its data (every key: `auth-map` has one per user).
fn named_secret(mut o: Secret) -> Object {
    strip(&mut o.metadata, |_| false);
    o.string_data = None;
    Object::Secret(Arc::new(o))
}

/// One watcher to run: a kind, in one namespace or all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub kind: Kind,
    pub namespace: Option<String>,
}

/// The watchers for `namespaces` (empty: all namespaces). `extra` namespaces get Service,
/// EndpointSlice and Secret watchers only: they hold the objects named on the command line
/// (`--default-backend-service`, `--default-certificate`, `--publish-service`).
pub fn scopes(namespaces: &[String], extra: &[String]) -> Vec<Scope> {
    let mut scopes = vec![Scope {
        kind: Kind::IngressClass,
        namespace: None,
    }];
    let namespaced = [
        Kind::Ingress,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Secret,
        Kind::ConfigMap,
    ];
    if namespaces.is_empty() {
        scopes.extend(namespaced.iter().map(|&kind| Scope {
            kind,
            namespace: None,
        }));
        return scopes;
    }
    let mut all: Vec<&String> = namespaces.iter().collect();
    all.sort();
    all.dedup();
    for ns in &all {
        scopes.extend(namespaced.iter().map(|&kind| Scope {
            kind,
            namespace: Some((*ns).clone()),
        }));
    }
    let mut more: Vec<&String> = extra.iter().filter(|ns| !all.contains(ns)).collect();
    more.sort();
    more.dedup();
    for ns in more {
        scopes.extend(
            [Kind::Service, Kind::EndpointSlice, Kind::Secret]
                .iter()
                .map(|&kind| Scope {
                    kind,
                    namespace: Some(ns.clone()),
                }),
        );
    }
    scopes
}

/// Runs the watcher for `scope` until the receiver is gone.
pub async fn follow(client: Client, scope: Scope, stream: usize, tx: mpsc::Sender<Change>) {
    let ns = scope.namespace.as_deref();
    match scope.kind {
        Kind::Ingress => {
            run::<Ingress>(
                api(client, ns),
                watcher::Config::default(),
                scope,
                stream,
                tx,
                ingress,
            )
            .await
        }
        Kind::IngressClass => {
            run::<IngressClass>(
                Api::all(client),
                watcher::Config::default(),
                scope,
                stream,
                tx,
                class,
            )
            .await
        }
        Kind::Service => {
            run::<Service>(
                api(client, ns),
                watcher::Config::default(),
                scope,
                stream,
                tx,
                service,
            )
            .await
        }
        Kind::EndpointSlice => {
            run::<EndpointSlice>(
                api(client, ns),
                watcher::Config::default(),
                scope,
                stream,
                tx,
                slice,
            )
            .await
        }
        Kind::Secret => {
            // Only TLS Secrets: wicket never sees (or keeps in memory) any other Secret.
            let config = watcher::Config::default().fields(&format!("type={TLS_SECRET_TYPE}"));
            run::<Secret>(api(client, ns), config, scope, stream, tx, secret).await
        }
        Kind::ConfigMap => {
            run::<ConfigMap>(
                api(client, ns),
                watcher::Config::default(),
                scope,
                stream,
                tx,
                config_map,
            )
            .await
        }
        // Endpoints objects come from manifest files only; in a cluster the EndpointSlice
        // mirroring controller already turns them into slices.
        Kind::Endpoints => {}
        Kind::Namespace => {
            run::<Namespace>(
                Api::all(client),
                watcher::Config::default(),
                scope,
                stream,
                tx,
                gateway_watch::namespace,
            )
            .await
        }
        Kind::GatewayClass => {
            run::<GatewayClass>(
                Api::all(client),
                watcher::Config::default(),
                scope,
                stream,
                tx,
                gateway_watch::gateway_class,
            )
            .await
        }
        Kind::Gateway => {
            run::<Gateway>(
                api(client, ns),
                watcher::Config::default(),
                scope,
                stream,
                tx,
                gateway_watch::gateway,
            )
            .await
        }
        Kind::HttpRoute => {
            run::<HttpRoute>(
                api(client, ns),
                watcher::Config::default(),
                scope,
                stream,
                tx,
                gateway_watch::http_route,
            )
            .await
        }
        Kind::GrpcRoute => {
            run::<GrpcRoute>(
                api(client, ns),
                watcher::Config::default(),
                scope,
                stream,
                tx,
                gateway_watch::grpc_route,
            )
            .await
        }
        // Watched by `gateway_watch::follow_grants`, at the version the cluster serves.
        Kind::ReferenceGrant => {}
    }
}

fn api<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

pub(super) async fn run<K>(
    api: Api<K>,
    config: watcher::Config,
    scope: Scope,
    stream: usize,
    tx: mpsc::Sender<Change>,
    wrap: fn(K) -> Object,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let kind = scope.kind;
    let namespace = scope.namespace.as_deref().unwrap_or("*");
    let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
    let mut listing = Vec::new();
    let mut failing = false;
    while let Some(event) = events.next().await {
        let change = match event {
            Err(e) => {
                warn!(%kind, namespace, error = %e, "watch failed; retrying with backoff, the last routing table stays in force");
                failing = true;
                continue;
            }
            Ok(Event::Init) => {
                listing.clear();
                None
            }
            Ok(Event::InitApply(o)) => {
                listing.push(wrap(o));
                None
            }
            Ok(Event::InitDone) => Some(Change::Reset {
                stream,
                kind,
                namespace: scope.namespace.clone(),
                objects: std::mem::take(&mut listing),
            }),
            Ok(Event::Apply(o)) => Some(Change::Apply(wrap(o))),
            Ok(Event::Delete(o)) => Some(Change::Delete(kind, Key::of(o.meta()))),
        };
        if failing {
            failing = false;
            info!(%kind, namespace, "watch resumed");
        }
        if let Some(change) = change {
            if tx.send(change).await.is_err() {
                return;
            }
        }
    }
}

/// Drops what translation never reads: managed fields, and annotations other than `keep`.
/// (`kubectl apply` alone stores a full copy of the object in an annotation.)
pub(super) fn strip(meta: &mut ObjectMeta, keep: impl Fn(&str) -> bool) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| keep(k));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

fn ingress(mut o: Ingress) -> Object {
    strip(&mut o.metadata, |k| {
        k == CLASS_ANNOTATION || INGRESS_ANNOTATION_PREFIXES.iter().any(|p| k.starts_with(p))
    });
    Object::Ingress(Arc::new(o))
}

fn class(mut o: IngressClass) -> Object {
    strip(&mut o.metadata, |k| k == DEFAULT_CLASS_ANNOTATION);
    Object::IngressClass(Arc::new(o))
}

fn service(mut o: Service) -> Object {
    strip(&mut o.metadata, |_| false);
    Object::Service(Arc::new(o))
}

fn slice(mut o: EndpointSlice) -> Object {
    strip(&mut o.metadata, |_| false);
    Object::EndpointSlice(Arc::new(o))
}

/// Keeps the text data only (`custom-headers` reads nothing else).
fn config_map(mut o: ConfigMap) -> Object {
    strip(&mut o.metadata, |_| false);
    o.binary_data = None;
    Object::ConfigMap(Arc::new(o))
}

/// Keeps the certificate and key only (a TLS Secret may carry more, `ca.crt` say).
fn secret(mut o: Secret) -> Object {
    strip(&mut o.metadata, |_| false);
    if let Some(data) = o.data.take() {
        let kept: BTreeMap<String, ByteString> = data
            .into_iter()
            .filter(|(k, _)| k == "tls.crt" || k == "tls.key")
            .collect();
        o.data = Some(kept);
    }
    o.string_data = None;
    Object::Secret(Arc::new(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_namespaces_means_one_watcher_per_kind() {
        let s = scopes(&[], &["infra".into()]);
        assert_eq!(s.len(), 6);
        assert!(s.iter().all(|s| s.namespace.is_none()));
    }

    #[test]
    fn watched_namespaces_get_every_kind_and_extra_ones_only_backends_and_secrets() {
        let s = scopes(
            &["b".into(), "a".into(), "a".into()],
            &["infra".into(), "a".into()],
        );
        let described: Vec<String> = s
            .iter()
            .map(|s| format!("{}@{}", s.kind, s.namespace.as_deref().unwrap_or("*")))
            .collect();
        assert_eq!(
            described,
            vec![
                "IngressClass@*",
                "Ingress@a",
                "Service@a",
                "EndpointSlice@a",
                "Secret@a",
                "ConfigMap@a",
                "Ingress@b",
                "Service@b",
                "EndpointSlice@b",
                "Secret@b",
                "ConfigMap@b",
                "Service@infra",
                "EndpointSlice@infra",
                "Secret@infra",
            ]
        );
    }

    #[test]
    fn stripping_keeps_only_what_translation_reads() {
        let mut o = Ingress::default();
        o.metadata.annotations = Some(
            [
                ("kubectl.kubernetes.io/last-applied-configuration", "{...}"),
                ("kubernetes.io/ingress.class", "wicket"),
                ("wicket.dev/ssl-redirect", "false"),
                ("nginx.ingress.kubernetes.io/rewrite-target", "/"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        o.metadata.managed_fields = Some(vec![Default::default()]);
        let Object::Ingress(o) = ingress(o) else {
            panic!()
        };
        assert!(o.metadata.managed_fields.is_none());
        let kept: Vec<&String> = o.metadata.annotations.as_ref().unwrap().keys().collect();
        assert_eq!(
            kept,
            vec![
                "kubernetes.io/ingress.class",
                "nginx.ingress.kubernetes.io/rewrite-target",
                "wicket.dev/ssl-redirect"
            ]
        );

        let s = Secret {
            data: Some(
                ["tls.crt", "tls.key", "ca.crt"]
                    .into_iter()
                    .map(|k| (k.to_owned(), ByteString(b"x".to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        let Object::Secret(s) = secret(s) else {
            panic!()
        };
        let kept: Vec<&String> = s.data.as_ref().unwrap().keys().collect();
        assert_eq!(kept, vec!["tls.crt", "tls.key"]);
    }
}
