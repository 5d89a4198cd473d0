//! The index: the Kubernetes objects translation reads, by kind, keyed by namespace/name.
//!
//! Sources (the manifests directory, the API server) change it with three verbs only:
//! `apply` (add or replace one object), `delete` (remove one), and `reset` (replace every
//! object of one kind at once, after a re-list, so objects deleted while a watch was down do
//! not linger). The index itself is plain data; it never fails.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::gateway_api::{Gateway, GatewayClass, GrpcRoute, HttpRoute, ReferenceGrant};
use crate::model::Problem;

/// The kinds wicket reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    Endpoints,
    Secret,
    /// Read for `custom-headers` only.
    ConfigMap,
    /// Read for their labels: Gateway listeners select route namespaces by them.
    Namespace,
    GatewayClass,
    Gateway,
    HttpRoute,
    GrpcRoute,
    ReferenceGrant,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Ingress,
        Kind::IngressClass,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Endpoints,
        Kind::Secret,
        Kind::ConfigMap,
        Kind::Namespace,
        Kind::GatewayClass,
        Kind::Gateway,
        Kind::HttpRoute,
        Kind::GrpcRoute,
        Kind::ReferenceGrant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ingress => "Ingress",
            Kind::IngressClass => "IngressClass",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Endpoints => "Endpoints",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::Namespace => "Namespace",
            Kind::GatewayClass => "GatewayClass",
            Kind::Gateway => "Gateway",
            Kind::HttpRoute => "HTTPRoute",
            Kind::GrpcRoute => "GRPCRoute",
            Kind::ReferenceGrant => "ReferenceGrant",
        }
    }

    pub fn is_namespaced(self) -> bool {
        !matches!(
            self,
            Kind::IngressClass | Kind::Namespace | Kind::GatewayClass
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// namespace/name; the namespace is empty for cluster-scoped kinds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn of(meta: &ObjectMeta) -> Self {
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// One object of a kind we read.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Ingress(Arc<Ingress>),
    IngressClass(Arc<IngressClass>),
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Endpoints(Arc<Endpoints>),
    Secret(Arc<Secret>),
    ConfigMap(Arc<ConfigMap>),
    Namespace(Arc<Namespace>),
    GatewayClass(Arc<GatewayClass>),
    Gateway(Arc<Gateway>),
    HttpRoute(Arc<HttpRoute>),
    GrpcRoute(Arc<GrpcRoute>),
    ReferenceGrant(Arc<ReferenceGrant>),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Ingress(_) => Kind::Ingress,
            Object::IngressClass(_) => Kind::IngressClass,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Endpoints(_) => Kind::Endpoints,
            Object::Secret(_) => Kind::Secret,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::Namespace(_) => Kind::Namespace,
            Object::GatewayClass(_) => Kind::GatewayClass,
            Object::Gateway(_) => Kind::Gateway,
            Object::HttpRoute(_) => Kind::HttpRoute,
            Object::GrpcRoute(_) => Kind::GrpcRoute,
            Object::ReferenceGrant(_) => Kind::ReferenceGrant,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Ingress(o) => &o.metadata,
            Object::IngressClass(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Endpoints(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
            Object::GatewayClass(o) => &o.metadata,
            Object::Gateway(o) => &o.metadata,
            Object::HttpRoute(o) => &o.metadata,
            Object::GrpcRoute(o) => &o.metadata,
            Object::ReferenceGrant(o) => &o.metadata,
        }
    }

    pub fn key(&self) -> Key {
        Key::of(self.meta())
    }
}

/// Objects by kind. Ordered maps, so translation visits them in a stable order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Index {
    pub ingresses: BTreeMap<Key, Arc<Ingress>>,
    pub classes: BTreeMap<Key, Arc<IngressClass>>,
    pub services: BTreeMap<Key, Arc<Service>>,
    pub slices: BTreeMap<Key, Arc<EndpointSlice>>,
    pub endpoints: BTreeMap<Key, Arc<Endpoints>>,
    pub secrets: BTreeMap<Key, Arc<Secret>>,
    /// Cluster mode: the Secrets an Ingress names for an access guard (`auth-secret`),
    /// each watched by name (the Secret watch above sees TLS Secrets only). Manifests mode
    /// keeps every Secret in `secrets`.
    pub named_secrets: BTreeMap<Key, Arc<Secret>>,
    pub config_maps: BTreeMap<Key, Arc<ConfigMap>>,
    pub namespaces: BTreeMap<Key, Arc<Namespace>>,
    pub gateway_classes: BTreeMap<Key, Arc<GatewayClass>>,
    pub gateways: BTreeMap<Key, Arc<Gateway>>,
    pub http_routes: BTreeMap<Key, Arc<HttpRoute>>,
    pub grpc_routes: BTreeMap<Key, Arc<GrpcRoute>>,
    pub reference_grants: BTreeMap<Key, Arc<ReferenceGrant>>,
    /// Problems found by the source itself (a manifest that does not parse, say); carried
    /// into the snapshot next to the problems translation finds.
    pub source_problems: Vec<Problem>,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces one object.
    pub fn apply(&mut self, object: Object) {
        let key = object.key();
        match object {
            Object::Ingress(o) => {
                self.ingresses.insert(key, o);
            }
            Object::IngressClass(o) => {
                self.classes.insert(key, o);
            }
            Object::Service(o) => {
                self.services.insert(key, o);
            }
            Object::EndpointSlice(o) => {
                self.slices.insert(key, o);
            }
            Object::Endpoints(o) => {
                self.endpoints.insert(key, o);
            }
            Object::Secret(o) => {
                self.secrets.insert(key, o);
            }
            Object::ConfigMap(o) => {
                self.config_maps.insert(key, o);
            }
            Object::Namespace(o) => {
                self.namespaces.insert(key, o);
            }
            Object::GatewayClass(o) => {
                self.gateway_classes.insert(key, o);
            }
            Object::Gateway(o) => {
                self.gateways.insert(key, o);
            }
            Object::HttpRoute(o) => {
                self.http_routes.insert(key, o);
            }
            Object::GrpcRoute(o) => {
                self.grpc_routes.insert(key, o);
            }
            Object::ReferenceGrant(o) => {
                self.reference_grants.insert(key, o);
            }
        }
    }

    /// Removes one object; removing what is not there is not an error.
    pub fn delete(&mut self, kind: Kind, key: &Key) {
        match kind {
            Kind::Ingress => {
                self.ingresses.remove(key);
            }
            Kind::IngressClass => {
                self.classes.remove(key);
            }
            Kind::Service => {
                self.services.remove(key);
            }
            Kind::EndpointSlice => {
                self.slices.remove(key);
            }
            Kind::Endpoints => {
                self.endpoints.remove(key);
            }
            Kind::Secret => {
                self.secrets.remove(key);
            }
            Kind::ConfigMap => {
                self.config_maps.remove(key);
            }
            Kind::Namespace => {
                self.namespaces.remove(key);
            }
            Kind::GatewayClass => {
                self.gateway_classes.remove(key);
            }
            Kind::Gateway => {
                self.gateways.remove(key);
            }
            Kind::HttpRoute => {
                self.http_routes.remove(key);
            }
            Kind::GrpcRoute => {
                self.grpc_routes.remove(key);
            }
            Kind::ReferenceGrant => {
                self.reference_grants.remove(key);
            }
        }
    }

    /// Replaces every object of `kind` with `objects` in one step. Objects of other kinds
    /// in `objects` are ignored.
    pub fn reset(&mut self, kind: Kind, objects: impl IntoIterator<Item = Object>) {
        self.clear(kind);
        for object in objects {
            if object.kind() == kind {
                self.apply(object);
            }
        }
    }

    /// Like [`Index::reset`], for the objects of `kind` in one namespace only: what a
    /// re-list of a namespaced watch (`--watch-namespace`) replaces.
    pub fn reset_namespace(
        &mut self,
        kind: Kind,
        namespace: &str,
        objects: impl IntoIterator<Item = Object>,
    ) {
        let keep = |key: &Key| key.namespace != namespace;
        match kind {
            Kind::Ingress => self.ingresses.retain(|k, _| keep(k)),
            Kind::IngressClass => self.classes.retain(|k, _| keep(k)),
            Kind::Service => self.services.retain(|k, _| keep(k)),
            Kind::EndpointSlice => self.slices.retain(|k, _| keep(k)),
            Kind::Endpoints => self.endpoints.retain(|k, _| keep(k)),
            Kind::Secret => self.secrets.retain(|k, _| keep(k)),
            Kind::ConfigMap => self.config_maps.retain(|k, _| keep(k)),
            Kind::Namespace => self.namespaces.retain(|k, _| keep(k)),
            Kind::GatewayClass => self.gateway_classes.retain(|k, _| keep(k)),
            Kind::Gateway => self.gateways.retain(|k, _| keep(k)),
            Kind::HttpRoute => self.http_routes.retain(|k, _| keep(k)),
            Kind::GrpcRoute => self.grpc_routes.retain(|k, _| keep(k)),
            Kind::ReferenceGrant => self.reference_grants.retain(|k, _| keep(k)),
        }
        for object in objects {
            if object.kind() == kind && object.meta().namespace.as_deref() == Some(namespace) {
                self.apply(object);
            }
        }
    }

    fn clear(&mut self, kind: Kind) {
        match kind {
            Kind::Ingress => self.ingresses.clear(),
            Kind::IngressClass => self.classes.clear(),
            Kind::Service => self.services.clear(),
            Kind::EndpointSlice => self.slices.clear(),
            Kind::Endpoints => self.endpoints.clear(),
            Kind::Secret => self.secrets.clear(),
            Kind::ConfigMap => self.config_maps.clear(),
            Kind::Namespace => self.namespaces.clear(),
            Kind::GatewayClass => self.gateway_classes.clear(),
            Kind::Gateway => self.gateways.clear(),
            Kind::HttpRoute => self.http_routes.clear(),
            Kind::GrpcRoute => self.grpc_routes.clear(),
            Kind::ReferenceGrant => self.reference_grants.clear(),
        }
    }

    /// The Secret `key`, from either map.
    pub fn secret(&self, key: &Key) -> Option<&Arc<Secret>> {
        self.named_secrets
            .get(key)
            .or_else(|| self.secrets.get(key))
    }

    /// Builds an index holding exactly `objects`.
    pub fn from_objects(objects: impl IntoIterator<Item = Object>) -> Self {
        let mut index = Self::new();
        for object in objects {
            index.apply(object);
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(ns: &str, name: &str) -> Object {
        Object::Service(Arc::new(Service {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }))
    }

    #[test]
    fn apply_replaces_and_delete_removes() {
        let mut index = Index::new();
        index.apply(service("a", "web"));
        index.apply(service("a", "web"));
        index.apply(service("b", "web"));
        assert_eq!(index.services.len(), 2);
        index.delete(Kind::Service, &Key::new("a", "web"));
        assert_eq!(
            index.services.keys().collect::<Vec<_>>(),
            vec![&Key::new("b", "web")]
        );
        index.delete(Kind::Service, &Key::new("a", "missing"));
    }

    #[test]
    fn reset_drops_objects_missing_from_the_relist() {
        let mut index = Index::new();
        index.apply(service("a", "old"));
        index.apply(service("a", "kept"));
        index.reset(
            Kind::Service,
            vec![service("a", "kept"), service("a", "new")],
        );
        let names: Vec<&str> = index.services.keys().map(|k| k.name.as_str()).collect();
        assert_eq!(names, vec!["kept", "new"]);
    }

    #[test]
    fn a_namespace_reset_replaces_that_namespace_only() {
        let mut index = Index::new();
        index.apply(service("a", "gone"));
        index.apply(service("b", "web"));
        index.reset_namespace(
            Kind::Service,
            "a",
            vec![service("a", "new"), service("b", "stray")],
        );
        let keys: Vec<String> = index.services.keys().map(Key::to_string).collect();
        assert_eq!(keys, vec!["a/new", "b/web"]);
    }

    #[test]
    fn reset_of_one_kind_leaves_the_others() {
        let mut index = Index::new();
        index.apply(service("a", "web"));
        index.reset(Kind::Ingress, Vec::new());
        assert_eq!(index.services.len(), 1);
    }
}
