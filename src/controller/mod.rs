//! The control plane: Kubernetes objects in (from manifest files or the API server),
//! one immutable snapshot out. Only this module knows Kubernetes types.

pub mod class;
pub mod cluster;
pub mod files;
pub mod gateway_api;
pub mod index;
pub mod manifest;
pub mod publish;
pub mod translate;

use index::Key;

/// What translation needs from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `IngressClass.spec.controller` value that makes a class ours.
    pub controller_name: String,
    /// Class name accepted in the legacy `kubernetes.io/ingress.class` annotation.
    pub ingress_class: String,
    /// Serve Ingresses that name no class at all.
    pub watch_ingress_without_class: bool,
    /// Allow backends on `ExternalName` Services (they can point the proxy anywhere).
    pub allow_external_name: bool,
    /// The default backend when no Ingress of ours sets `spec.defaultBackend`.
    pub default_backend_service: Option<Key>,
    /// The Secret served to clients without SNI and to TLS hosts without a usable
    /// certificate; `None` means the self-signed certificate made at start-up.
    pub default_certificate: Option<Key>,
    /// The response headers a `custom-headers` ConfigMap may set, lowercase (ingress-nginx's
    /// `global-allowed-response-headers`); any other makes the Ingress's routes answer 503.
    pub allowed_response_headers: Vec<String>,
    /// `--enable-ssl-passthrough`: honour `ssl-passthrough` (TLS relayed by SNI).
    pub ssl_passthrough: bool,
    /// `--ignore-snippets`: serve Ingresses with snippet annotations, without the snippet
    /// (by default they are not served, as ingress-nginx does).
    pub ignore_snippets: bool,
    /// The rate-limit zones of the tables built so far: a rebuilt table keeps counting
    /// where the last one was (compares equal always).
    pub limit_zones: crate::model::Zones,
    /// The node and zone this replica runs in: `internalTrafficPolicy: Local` and topology
    /// hints are judged against them.
    pub locality: crate::model::Locality,
    /// `GatewayClass.spec.controllerName` value that makes a class ours.
    pub gateway_controller_name: String,
    /// The Gateway listener port served on the plain-HTTP socket (HTTP listeners).
    pub gateway_http_port: u16,
    /// The Gateway listener port served on the TLS socket (HTTPS listeners).
    pub gateway_https_port: u16,
}

pub const DEFAULT_CONTROLLER_NAME: &str = "wicket.dev/ingress-controller";
pub const DEFAULT_INGRESS_CLASS: &str = "wicket";
pub const DEFAULT_GATEWAY_CONTROLLER_NAME: &str = "wicket.dev/gateway-controller";

impl Default for Settings {
    fn default() -> Self {
        Self {
            controller_name: DEFAULT_CONTROLLER_NAME.to_owned(),
            ingress_class: DEFAULT_INGRESS_CLASS.to_owned(),
            watch_ingress_without_class: false,
            allow_external_name: false,
            default_backend_service: None,
            default_certificate: None,
            allowed_response_headers: Vec::new(),
            ssl_passthrough: false,
            ignore_snippets: false,
            limit_zones: crate::model::Zones::default(),
            locality: crate::model::Locality::default(),
            gateway_controller_name: DEFAULT_GATEWAY_CONTROLLER_NAME.to_owned(),
            gateway_http_port: 80,
            gateway_https_port: 443,
        }
    }
}
