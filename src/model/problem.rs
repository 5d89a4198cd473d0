//! Problems: what is wrong with the input, said so a user can fix it.
//!
//! A Problem never stops a build. It names the object at fault (kind, namespace, name),
//! a stable reason (the same words become Kubernetes Event reasons in cluster mode) and a
//! sentence a user understands.

use std::fmt;

use serde::Serialize;

/// The object a problem (or a route) comes from. `kind` is the Kubernetes kind, or `File`
/// for a manifest file that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, namespace: Option<&str>, name: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    pub fn namespaced(kind: &str, namespace: &str, name: &str) -> Self {
        Self::new(kind, Some(namespace), name)
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Why something is a problem. The names are stable: they are shown to users, used as
/// Event reasons and as metric labels, so never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Reason {
    /// A manifest file or document that cannot be read as Kubernetes objects.
    InvalidManifest,
    /// A field the object's type does not have (usually a typo); the object is still used.
    UnknownField,
    /// The same object defined twice in the manifests directory.
    DuplicateObject,
    /// An Ingress names an IngressClass that does not exist.
    IngressClassNotFound,
    /// The `kubernetes.io/ingress.class` annotation and `spec.ingressClassName` disagree.
    IngressClassConflict,
    /// An Ingress that is structurally wrong (no rules and no default backend, bad backend shape).
    InvalidIngress,
    InvalidHost,
    InvalidPath,
    /// Two Ingresses route the same host, path and path type; the older one wins.
    PathConflict,
    /// Several Ingresses set `spec.defaultBackend`; the oldest wins.
    DefaultBackendConflict,
    /// The Service a backend names does not exist.
    BackendNotFound,
    /// The Service exists but has no such port.
    PortNotFound,
    /// `ExternalName` Services are refused unless `--allow-external-name` is set.
    ExternalNameDisabled,
    /// `resource` backends are not supported.
    ResourceBackendUnsupported,
    /// The backend has no endpoints at all (no EndpointSlice, no Endpoints).
    NoEndpoints,
    /// An EndpointSlice or Endpoints object with an address or port that cannot be used.
    InvalidEndpoint,
    TLSSecretNotFound,
    TLSSecretInvalid,
    /// The same TLS host with different Secrets in two Ingresses; the older one wins.
    TLSHostConflict,
    /// The certificate has expired; it is still served.
    TLSCertificateExpired,
    /// The certificate's names do not cover the TLS host; it is still served.
    TLSHostNotCovered,
    /// A TLS host that no rule routes.
    TLSHostWithoutRule,
    /// An annotation wicket reads, with a value it cannot use.
    InvalidAnnotation,
    /// An ingress-nginx annotation wicket does not implement: it has no effect.
    UnsupportedAnnotation,
    /// A path of a canary Ingress that takes no traffic: no main Ingress routes the same
    /// host, path and `pathType`, or the route already has an (older) canary.
    CanaryUnused,
    /// The Ingress carries a `*-snippet` annotation: it is not served (`--ignore-snippets`
    /// serves it without the snippet).
    SnippetRefused,
    /// The Secret an access guard names (`auth-secret`) is missing, in another namespace,
    /// or unreadable: the Ingress's routes answer 503.
    AuthSecretInvalid,
    /// A Service traffic policy (`internalTrafficPolicy`, `trafficDistribution`) with a
    /// value wicket does not know, or that cannot work where wicket runs.
    TrafficPolicy,
    /// A GatewayClass, Gateway or listener of ours that is not (wholly) served: its status
    /// conditions say why.
    GatewayNotAccepted,
    /// A Gateway API route not accepted by a parent Gateway, or with rules dropped.
    RouteNotAccepted,
    /// A route's backendRef that cannot be used: its share of requests gets 500.
    BackendRefInvalid,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidManifest => "InvalidManifest",
            Reason::UnknownField => "UnknownField",
            Reason::DuplicateObject => "DuplicateObject",
            Reason::IngressClassNotFound => "IngressClassNotFound",
            Reason::IngressClassConflict => "IngressClassConflict",
            Reason::InvalidIngress => "InvalidIngress",
            Reason::InvalidHost => "InvalidHost",
            Reason::InvalidPath => "InvalidPath",
            Reason::PathConflict => "PathConflict",
            Reason::DefaultBackendConflict => "DefaultBackendConflict",
            Reason::BackendNotFound => "BackendNotFound",
            Reason::PortNotFound => "PortNotFound",
            Reason::ExternalNameDisabled => "ExternalNameDisabled",
            Reason::ResourceBackendUnsupported => "ResourceBackendUnsupported",
            Reason::NoEndpoints => "NoEndpoints",
            Reason::InvalidEndpoint => "InvalidEndpoint",
            Reason::TLSSecretNotFound => "TLSSecretNotFound",
            Reason::TLSSecretInvalid => "TLSSecretInvalid",
            Reason::TLSHostConflict => "TLSHostConflict",
            Reason::TLSCertificateExpired => "TLSCertificateExpired",
            Reason::TLSHostNotCovered => "TLSHostNotCovered",
            Reason::TLSHostWithoutRule => "TLSHostWithoutRule",
            Reason::InvalidAnnotation => "InvalidAnnotation",
            Reason::UnsupportedAnnotation => "UnsupportedAnnotation",
            Reason::CanaryUnused => "CanaryUnused",
            Reason::SnippetRefused => "SnippetRefused",
            Reason::AuthSecretInvalid => "AuthSecretInvalid",
            Reason::TrafficPolicy => "TrafficPolicy",
            Reason::GatewayNotAccepted => "GatewayNotAccepted",
            Reason::RouteNotAccepted => "RouteNotAccepted",
            Reason::BackendRefInvalid => "BackendRefInvalid",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Problem {
    pub object: ObjectRef,
    pub reason: Reason,
    pub message: String,
}

impl Problem {
    pub fn new(object: ObjectRef, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            object,
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.reason, self.message)
    }
}
