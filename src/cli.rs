//! Command line: `wicket run`, `wicket demo`, `wicket check`. Every flag has a default and
//! an environment variable (`WICKET_...`); tools outside this repository depend on the names.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::controller::cluster::status::{Address, PublishFrom};
use crate::controller::index::Key;
use crate::controller::{Settings, DEFAULT_CONTROLLER_NAME, DEFAULT_INGRESS_CLASS};
use crate::model::{IpSet, SourceRanges};
use crate::proxy::conn::ClientTimeouts;
use crate::proxy::observe::AccessLogFormat;
use crate::proxy::outlier::OutlierSettings;
use crate::proxy::trust::TrustedProxies;
use crate::proxy::{Hsts, ProxySettings, UpstreamSettings};
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "wicket", version, about = "Kubernetes Ingress controller and HTTP reverse proxy", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter: a level (error, warn, info, debug, trace) or per-module directives.
    #[arg(long, global = true, env = "WICKET_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log line format (logs go to stderr).
    #[arg(
        long,
        global = true,
        env = "WICKET_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Threads serving traffic; 0 = the CPUs this process may use (affinity and cgroup
    /// quota). With 1, a single-threaded runtime is used, which is faster on one CPU.
    #[arg(
        long,
        global = true,
        env = "WICKET_WORKER_THREADS",
        default_value_t = 0
    )]
    pub worker_threads: usize,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy: from a manifests directory (--manifests), or in a cluster.
    Run(Box<RunArgs>),
    /// Run a self-contained demo: example manifests and echo pods on loopback addresses.
    Demo(DemoArgs),
    /// Load and translate a manifests directory, print the routing table and its problems;
    /// exit 1 if there are problems.
    Check(CheckArgs),
    /// Before switching from ingress-nginx: every Ingress of its class with what wicket does
    /// with each annotation, the ingress-nginx ConfigMap as flags, and the steps; exit 1 if
    /// anything would be refused.
    Migrate(MigrateArgs),
    /// Print the routing table of a running wicket (from its admin endpoint).
    Routes(RoutesArgs),
    /// Explain where a request would go on a running wicket, and why.
    Explain(ExplainArgs),
    /// Serve the echo "pod" of the demo: every request is answered with the pod's name and
    /// the request it received (the example app of the kind walkthrough).
    Echo(EchoArgs),
}

/// Where a running wicket's admin endpoint is.
#[derive(Debug, Clone, Args)]
pub struct AdminUrl {
    /// The admin endpoint of the running wicket.
    #[arg(
        long = "admin",
        env = "WICKET_ADMIN_URL",
        default_value = "http://127.0.0.1:10254"
    )]
    pub url: String,
}

#[derive(Debug, Clone, Args)]
pub struct RoutesArgs {
    #[command(flatten)]
    pub admin: AdminUrl,
    /// Only the virtual host a request for this host would get.
    #[arg(long)]
    pub host: Option<String>,
    /// Print the /debug/routes JSON instead of the table.
    #[arg(long, default_value_t = false)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub admin: AdminUrl,
    /// The request's Host.
    #[arg(long)]
    pub host: String,
    /// The request's path.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Print JSON instead of text.
    #[arg(long, default_value_t = false)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct EchoArgs {
    /// Listen address.
    #[arg(long, env = "WICKET_ECHO_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,
    /// The name it answers with (in a pod: the pod name, from the downward API).
    #[arg(long, env = "POD_NAME", default_value = "echo")]
    pub name: String,
}

#[derive(Debug, Clone, Args)]
pub struct ControllerArgs {
    /// IngressClass.spec.controller value that makes a class ours.
    #[arg(long, env = "WICKET_CONTROLLER_NAME", default_value = DEFAULT_CONTROLLER_NAME)]
    pub controller_name: String,
    /// Class name accepted in the legacy kubernetes.io/ingress.class annotation.
    #[arg(long, env = "WICKET_INGRESS_CLASS", default_value = DEFAULT_INGRESS_CLASS)]
    pub ingress_class: String,
    /// Also serve Ingresses that name no ingress class.
    #[arg(
        long,
        env = "WICKET_WATCH_INGRESS_WITHOUT_CLASS",
        default_value_t = false
    )]
    pub watch_ingress_without_class: bool,
    /// Allow backends on ExternalName Services (an Ingress author could then point the
    /// proxy at any host).
    #[arg(long, env = "WICKET_ALLOW_EXTERNAL_NAME", default_value_t = false)]
    pub allow_external_name: bool,
    /// NAMESPACE/NAME of a Service answering requests no rule matches, unless an Ingress
    /// sets spec.defaultBackend.
    #[arg(long, env = "WICKET_DEFAULT_BACKEND_SERVICE", value_parser = parse_key)]
    pub default_backend_service: Option<Key>,
    /// NAMESPACE/NAME of a kubernetes.io/tls Secret served to clients without SNI and to
    /// TLS hosts without a usable certificate (default: a self-signed one made at start-up).
    #[arg(long, env = "WICKET_DEFAULT_CERTIFICATE", value_parser = parse_key)]
    pub default_certificate: Option<Key>,
    /// Response header names a custom-headers ConfigMap may set, comma-separated
    /// (ingress-nginx's global-allowed-response-headers); any other makes the Ingress's
    /// routes answer 503.
    #[arg(
        long,
        env = "WICKET_ALLOWED_RESPONSE_HEADERS",
        value_delimiter = ',',
        value_parser = parse_header_name
    )]
    pub allowed_response_headers: Vec<String>,
    /// Honour the ssl-passthrough annotation: TLS connections whose SNI names such a host
    /// are relayed to its pods without being terminated (every HTTPS connection's SNI is
    /// then read before the handshake).
    #[arg(long, env = "WICKET_ENABLE_SSL_PASSTHROUGH", default_value_t = false)]
    pub enable_ssl_passthrough: bool,
    /// Serve Ingresses that carry snippet annotations (configuration-snippet, ...), without
    /// the snippet; by default they are not served, as ingress-nginx does.
    #[arg(long, env = "WICKET_IGNORE_SNIPPETS", default_value_t = false)]
    pub ignore_snippets: bool,
    /// The node this replica runs on (the chart sets NODE_NAME from the downward API).
    /// Services with internalTrafficPolicy: Local use only endpoints on this node, and
    /// topology hints for this node are honoured.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// This replica's zone, for topology hints (trafficDistribution PreferClose,
    /// PreferSameZone). In a cluster it defaults to the topology.kubernetes.io/zone label
    /// of the node --node-name names (one read of that Node: RBAC get on nodes).
    #[arg(long, env = "WICKET_ZONE")]
    pub zone: Option<String>,
    /// How wicket is deployed (the chart sets it): Deployment or DaemonSet. A Service with
    /// internalTrafficPolicy: Local behind a Deployment is reported as a Problem.
    #[arg(long, env = "WICKET_WORKLOAD_KIND", value_parser = ["Deployment", "DaemonSet"])]
    pub workload_kind: Option<String>,
    /// GatewayClasses whose spec.controllerName is this are wicket's: their Gateways'
    /// listeners and the HTTPRoutes attached to them are served.
    #[arg(long, env = "WICKET_GATEWAY_CONTROLLER_NAME", default_value = crate::controller::DEFAULT_GATEWAY_CONTROLLER_NAME)]
    pub gateway_controller_name: String,
    /// The Gateway listener port served on the plain-HTTP socket: HTTP listeners with this
    /// port are served there (other ports are refused with PortUnavailable).
    #[arg(long, env = "WICKET_GATEWAY_HTTP_PORT", default_value_t = 80)]
    pub gateway_http_port: u16,
    /// The Gateway listener port served on the TLS socket (HTTPS listeners).
    #[arg(long, env = "WICKET_GATEWAY_HTTPS_PORT", default_value_t = 443)]
    pub gateway_https_port: u16,
}

fn parse_limit_status(v: &str) -> Result<u16, String> {
    match v.trim().parse::<u16>() {
        Ok(code) if (400..=599).contains(&code) => Ok(code),
        _ => Err(format!("{v:?} is not a 4xx or 5xx status (503 or 429)")),
    }
}

/// A header name, lowercased.
fn parse_header_name(v: &str) -> Result<String, String> {
    let v = v.trim();
    http::HeaderName::from_bytes(v.as_bytes())
        .map(|n| n.as_str().to_owned())
        .map_err(|_| format!("{v:?} is not a header name"))
}

impl ControllerArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            controller_name: self.controller_name.clone(),
            ingress_class: self.ingress_class.clone(),
            watch_ingress_without_class: self.watch_ingress_without_class,
            allow_external_name: self.allow_external_name,
            default_backend_service: self.default_backend_service.clone(),
            default_certificate: self.default_certificate.clone(),
            allowed_response_headers: self.allowed_response_headers.clone(),
            ssl_passthrough: self.enable_ssl_passthrough,
            ignore_snippets: self.ignore_snippets,
            limit_zones: crate::model::Zones::default(),
            locality: self.locality(),
            gateway_controller_name: self.gateway_controller_name.clone(),
            gateway_http_port: self.gateway_http_port,
            gateway_https_port: self.gateway_https_port,
        }
    }

    /// The node and zone as the flags give them; in a cluster, a missing zone is read
    /// from the Node later.
    fn locality(&self) -> crate::model::Locality {
        let source = if self.zone.as_deref().is_some_and(|z| !z.trim().is_empty()) {
            "--zone"
        } else {
            "no --zone given"
        };
        let mut here =
            crate::model::Locality::new(self.node_name.as_deref(), self.zone.as_deref(), source);
        here.deployment = self.workload_kind.as_deref() == Some("Deployment");
        here
    }
}

#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Time to open a TCP connection to a pod before trying another.
    #[arg(long, env = "WICKET_UPSTREAM_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub upstream_connect_timeout: Duration,
    /// Time to wait for a pod's response head once the request is sent (504 after it).
    #[arg(long, env = "WICKET_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub upstream_timeout: Duration,
    /// Longest pause in the middle of a pod's response body; after it the client's
    /// connection is closed (the response is cut) and the endpoint counts a failure. Also
    /// the longest a WebSocket tunnel may stay silent both ways.
    #[arg(long, env = "WICKET_UPSTREAM_READ_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub upstream_read_timeout: Duration,
    /// Longest a pod may leave a request body untaken (504 after it).
    #[arg(long, env = "WICKET_UPSTREAM_SEND_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub upstream_send_timeout: Duration,
    /// Largest request body: 1m, 512k, 10485760; 0 means no limit. A larger declared
    /// Content-Length gets 413 before anything is sent; a larger chunked body is cut.
    #[arg(long, env = "WICKET_MAX_REQUEST_BODY", default_value = "1m", value_parser = parse_size)]
    pub max_request_body: u64,
    /// Longest pause while a client sends its request body (408 after it).
    #[arg(long, env = "WICKET_CLIENT_BODY_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub client_body_timeout: Duration,
    /// Proxies in front of wicket (CIDR ranges or addresses, comma-separated) whose
    /// X-Forwarded-For, X-Forwarded-Proto/-Host/-Port and Forwarded headers are believed.
    /// From anyone else those headers are replaced by wicket's own.
    #[arg(long, env = "WICKET_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: TrustedProxies,
    /// Client addresses (CIDRs, comma-separated) allowed on every route; others get 403.
    /// A route's allowlist-source-range annotation replaces it (ingress-nginx's
    /// whitelist-source-range ConfigMap key). Empty: everyone.
    #[arg(long, env = "WICKET_ALLOWLIST_SOURCE_RANGE", default_value = "")]
    pub allowlist_source_range: IpSet,
    /// Client addresses (CIDRs, comma-separated) refused (403) on every route, checked
    /// before the allow list. A route's denylist-source-range annotation replaces it.
    #[arg(long, env = "WICKET_DENYLIST_SOURCE_RANGE", default_value = "")]
    pub denylist_source_range: IpSet,
    /// The status of a request refused by a limit-rps, limit-rpm or limit-connections
    /// annotation: 503 as ingress-nginx (limit-req-status-code), or 429.
    #[arg(long, env = "WICKET_LIMIT_STATUS_CODE", default_value_t = 503, value_parser = parse_limit_status)]
    pub limit_status_code: u16,
    /// How long an auth service (auth-url annotation) may take to answer, connecting
    /// included; after it the client gets 500, never a pass.
    #[arg(long, env = "WICKET_AUTH_TIMEOUT", default_value = "15s", value_parser = parse_timeout)]
    pub auth_timeout: Duration,
    /// The secret that persistent session cookies (`affinity-mode: persistent`) name pods
    /// with, so a cookie never reveals a pod's address. Give every replica the same one
    /// (the chart does); unset, each process makes its own and clients are re-pinned
    /// when another replica answers them.
    #[arg(long, env = "WICKET_SESSION_COOKIE_KEY", hide_env_values = true)]
    pub session_cookie_key: Option<String>,
    /// Every connection to the HTTP and HTTPS listeners starts with a PROXY protocol
    /// header (v1 or v2) from a load balancer, whose source address is the client.
    /// Connections without one are closed.
    #[arg(long, env = "WICKET_PROXY_PROTOCOL", default_value_t = false)]
    pub proxy_protocol: bool,
    /// Keep request header names that contain `_` (dropped by default, as nginx does: many
    /// frameworks read X_Forwarded_For as X-Forwarded-For).
    #[arg(
        long,
        env = "WICKET_ALLOW_UNDERSCORES_IN_HEADERS",
        default_value_t = false
    )]
    pub allow_underscores_in_headers: bool,
    /// Gateway failures in a row (connect error, reset, timeout, 502/503/504) that take an
    /// endpoint out of rotation; 0 turns passive health checks off.
    #[arg(long, env = "WICKET_OUTLIER_CONSECUTIVE_FAILURES", default_value_t = 5)]
    pub outlier_consecutive_failures: u32,
    /// How long the first ejection lasts; the n-th lasts n times as long.
    #[arg(long, env = "WICKET_OUTLIER_BASE_EJECTION", default_value = "30s", value_parser = parse_timeout)]
    pub outlier_base_ejection: Duration,
    /// The longest ejection.
    #[arg(long, env = "WICKET_OUTLIER_MAX_EJECTION", default_value = "5m", value_parser = parse_timeout)]
    pub outlier_max_ejection: Duration,
    /// The most of a backend's endpoints ejected at once, in percent.
    #[arg(long, env = "WICKET_OUTLIER_MAX_EJECTED_PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub outlier_max_ejected_percent: u8,
    /// Most client connections open at once (HTTP and HTTPS together). At the limit the longest-idle
    /// connections are closed to serve new clients; when none is idle, new clients wait in
    /// the listen backlog.
    #[arg(long, env = "WICKET_MAX_CONNECTIONS", default_value_t = 16_384)]
    pub max_connections: usize,
    /// A new connection must send its first complete request head within this time, or it
    /// is closed (silent and slow clients).
    #[arg(long, env = "WICKET_CLIENT_HEADER_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub client_header_timeout: Duration,
    /// An idle keep-alive connection (no request in flight) is closed after this time.
    #[arg(long, env = "WICKET_KEEPALIVE_TIMEOUT", default_value = "75s", value_parser = parse_timeout)]
    pub keepalive_timeout: Duration,
    /// A client that takes nothing of its response for this long (a write to it stays
    /// blocked) has its connection closed.
    #[arg(long, env = "WICKET_CLIENT_SEND_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub client_send_timeout: Duration,
    /// On SIGTERM: report not-ready and keep serving this long, so load balancers stop
    /// sending new connections, before closing the listeners.
    #[arg(long, env = "WICKET_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
    /// After the listeners close: how long open connections get to finish.
    #[arg(long, env = "WICKET_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Do not redirect plain-HTTP requests for TLS hosts to HTTPS (on by default; an
    /// Ingress can also opt out with wicket.dev/ssl-redirect: "false").
    #[arg(long, env = "WICKET_NO_SSL_REDIRECT", default_value_t = false)]
    pub no_ssl_redirect: bool,
    /// The public HTTPS port written into redirects (left out of the URL when 443).
    #[arg(long, env = "WICKET_HTTPS_REDIRECT_PORT", default_value_t = 443)]
    pub https_redirect_port: u16,
    /// Send Strict-Transport-Security on HTTPS responses of TLS hosts.
    #[arg(long, env = "WICKET_HSTS", default_value_t = false)]
    pub hsts: bool,
    /// HSTS max-age in seconds.
    #[arg(long, env = "WICKET_HSTS_MAX_AGE", default_value_t = 31_536_000)]
    pub hsts_max_age: u64,
    /// Add includeSubDomains to HSTS.
    #[arg(long, env = "WICKET_HSTS_INCLUDE_SUBDOMAINS", default_value_t = false)]
    pub hsts_include_subdomains: bool,
    /// One line per request on stdout: json, text, or off.
    #[arg(long, env = "WICKET_ACCESS_LOG", value_enum, default_value = "json")]
    pub access_log: AccessLogFormat,
}

impl ProxyArgs {
    pub fn outliers(&self) -> OutlierSettings {
        OutlierSettings {
            consecutive_failures: self.outlier_consecutive_failures,
            base_ejection: self.outlier_base_ejection,
            max_ejection: self.outlier_max_ejection,
            max_ejected_percent: self.outlier_max_ejected_percent,
        }
    }

    pub fn client_timeouts(&self) -> ClientTimeouts {
        ClientTimeouts {
            header: self.client_header_timeout,
            keepalive: self.keepalive_timeout,
            send: self.client_send_timeout,
        }
    }

    pub fn settings(&self) -> ProxySettings {
        ProxySettings {
            upstream: UpstreamSettings {
                connect_timeout: self.upstream_connect_timeout,
                response_timeout: self.upstream_timeout,
                read_timeout: self.upstream_read_timeout,
                send_timeout: self.upstream_send_timeout,
            },
            ssl_redirect: !self.no_ssl_redirect,
            https_redirect_port: self.https_redirect_port,
            hsts: self.hsts.then_some(Hsts {
                max_age: self.hsts_max_age,
                include_subdomains: self.hsts_include_subdomains,
            }),
            max_request_body: (self.max_request_body > 0).then_some(self.max_request_body),
            client_body_timeout: self.client_body_timeout,
            allow_underscores_in_headers: self.allow_underscores_in_headers,
            trusted_proxies: Arc::new(self.trusted_proxies.clone()),
            source: {
                let deny = (!self.denylist_source_range.is_empty())
                    .then(|| self.denylist_source_range.clone());
                let allow = (!self.allowlist_source_range.is_empty())
                    .then(|| self.allowlist_source_range.clone());
                (deny.is_some() || allow.is_some()).then(|| Arc::new(SourceRanges { deny, allow }))
            },
            limit_status: self.limit_status_code,
            auth_timeout: self.auth_timeout,
            session_cookie_key: self
                .session_cookie_key
                .as_deref()
                .filter(|k| !k.is_empty())
                .map(|k| Arc::from(k.as_bytes())),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Directory of Kubernetes manifests (*.yaml, *.yml, *.json, recursively) to serve
    /// instead of a cluster; edits apply live.
    #[arg(long, env = "WICKET_MANIFESTS")]
    pub manifests: Option<PathBuf>,
    /// Plain HTTP listener.
    #[arg(long, env = "WICKET_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// HTTPS listener (HTTP/1.1 and HTTP/2 by ALPN).
    #[arg(long, env = "WICKET_HTTPS_ADDR", default_value = "0.0.0.0:8443")]
    pub https_addr: SocketAddr,
    /// Admin listener: /healthz, /readyz, /debug/routes.
    #[arg(long, env = "WICKET_ADMIN_ADDR", default_value = "127.0.0.1:10254")]
    pub admin_addr: SocketAddr,
    #[command(flatten)]
    pub controller: ControllerArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

/// Cluster mode only (`wicket run` without `--manifests`).
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Watch Ingresses, Services, EndpointSlices and Secrets in this namespace only
    /// (repeatable, or comma-separated; default: all namespaces).
    #[arg(long, env = "WICKET_WATCH_NAMESPACE", value_delimiter = ',')]
    pub watch_namespace: Vec<String>,
    /// NAMESPACE/NAME of the Service in front of wicket; its load-balancer addresses (else
    /// its external IPs, else its cluster IP) are written into the status of our Ingresses.
    #[arg(long, env = "WICKET_PUBLISH_SERVICE", value_parser = parse_key, conflicts_with = "publish_status_address")]
    pub publish_service: Option<Key>,
    /// IPs or hostnames to write into the status of our Ingresses (comma-separated),
    /// instead of a Service's.
    #[arg(long, env = "WICKET_PUBLISH_STATUS_ADDRESS", value_delimiter = ',')]
    pub publish_status_address: Vec<String>,
    /// Name of the coordination.k8s.io Lease that elects the replica writing status and
    /// Events (in the namespace POD_NAMESPACE names).
    #[arg(long, env = "WICKET_ELECTION_ID", default_value = "wicket-leader")]
    pub election_id: String,
    /// How long the leader's Lease holds without renewal; another replica takes over after
    /// it. The leader renews every 2/15 of it and steps down after 2/3 without success.
    #[arg(long, env = "WICKET_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = parse_lease_duration)]
    pub election_lease_duration: Duration,
    /// Do not watch Gateway API objects even when their CRDs are installed (the chart sets
    /// it when gatewayAPI.enabled is false: there is no RBAC to read them then).
    #[arg(long, env = "WICKET_NO_GATEWAY_API", default_value_t = false)]
    pub no_gateway_api: bool,
}

impl ClusterArgs {
    pub fn publish(&self) -> PublishFrom {
        if let Some(key) = &self.publish_service {
            return PublishFrom::Service(key.clone());
        }
        let addresses: Vec<Address> = self
            .publish_status_address
            .iter()
            .map(|a| a.trim())
            .filter(|a| !a.is_empty())
            .map(Address::parse)
            .collect();
        if addresses.is_empty() {
            PublishFrom::Nothing
        } else {
            PublishFrom::Addresses(addresses)
        }
    }
}

/// A size in bytes, nginx style: `1048576`, `512k`, `1m`, `2g` (case-insensitive).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_lowercase()),
        _ => (s, 'b'),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (like 1m, 512k or 1048576)"))?;
    let factor: u64 = match unit {
        'b' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return Err(format!("{s:?}: the unit must be k, m or g")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A timeout: a duration of at least 1 ms (0 would close every connection at once).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(1) {
        return Err("a timeout must be at least 1ms".into());
    }
    Ok(d)
}

fn parse_lease_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) {
        return Err("the lease duration must be at least 1s".into());
    }
    Ok(d)
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Plain HTTP listener of the demo proxy.
    #[arg(long, env = "WICKET_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// HTTPS listener of the demo proxy.
    #[arg(long, env = "WICKET_HTTPS_ADDR", default_value = "127.0.0.1:8443")]
    pub https_addr: SocketAddr,
    /// Admin listener of the demo proxy.
    #[arg(long, env = "WICKET_ADMIN_ADDR", default_value = "127.0.0.1:10254")]
    pub admin_addr: SocketAddr,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The manifests directory to check.
    pub dir: PathBuf,
    /// Print the routing table as JSON (the /debug/routes format) instead of text.
    #[arg(long, env = "WICKET_CHECK_JSON", default_value_t = false)]
    pub json: bool,
    #[command(flatten)]
    pub controller: ControllerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// A directory of manifests to read; without it, the cluster (KUBECONFIG or the
    /// in-cluster service account).
    #[arg(long, env = "WICKET_MANIFESTS")]
    pub manifests: Option<PathBuf>,
    /// The ingress-nginx ConfigMap to translate into flags: NAMESPACE/NAME (in the
    /// manifests or the cluster), or a YAML file.
    #[arg(long)]
    pub nginx_configmap: Option<String>,
    /// The IngressClass being left; Ingresses without a class are included too.
    #[arg(long, default_value = "nginx")]
    pub from_class: String,
    /// Print JSON instead of the table.
    #[arg(long, default_value_t = false)]
    pub json: bool,
    #[command(flatten)]
    pub controller: ControllerArgs,
}

fn parse_key(s: &str) -> Result<Key, String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(Key::new(ns, name))
        }
        _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn node_zone_and_workload_kind_flags_say_where_this_replica_runs() {
        let cli = Cli::try_parse_from([
            "wicket",
            "run",
            "--node-name",
            "worker-1",
            "--zone",
            " eu-west-1a ",
            "--workload-kind",
            "Deployment",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!()
        };
        let here = run.controller.settings().locality;
        assert_eq!(here.node.as_deref(), Some("worker-1"));
        assert_eq!(here.zone.as_deref(), Some("eu-west-1a"));
        assert_eq!(here.zone_source, "--zone");
        assert!(here.deployment);
        // Only the two kinds the chart renders are accepted.
        assert!(Cli::try_parse_from(["wicket", "run", "--workload-kind", "Pod"]).is_err());
    }

    #[test]
    fn run_defaults_match_the_documented_ones() {
        let cli = Cli::try_parse_from(["wicket", "run", "--manifests", "/m"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!()
        };
        assert_eq!(run.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(run.https_addr.to_string(), "0.0.0.0:8443");
        assert_eq!(run.admin_addr.to_string(), "127.0.0.1:10254");
        let s = run.controller.settings();
        assert_eq!(s.ingress_class, "wicket");
        assert_eq!(s.controller_name, "wicket.dev/ingress-controller");
        assert!(!s.watch_ingress_without_class && !s.allow_external_name);
        assert_eq!(run.proxy.upstream_timeout, Duration::from_secs(60));
        let p = run.proxy.settings();
        assert!(p.ssl_redirect);
        assert_eq!(p.https_redirect_port, 443);
        assert_eq!(p.hsts, None);
    }

    #[test]
    fn tls_flags_parse() {
        let cli = Cli::try_parse_from([
            "wicket",
            "run",
            "--no-ssl-redirect",
            "--https-redirect-port",
            "8443",
            "--hsts",
            "--hsts-max-age",
            "600",
            "--hsts-include-subdomains",
            "--default-certificate",
            "infra/wildcard",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!()
        };
        let p = run.proxy.settings();
        assert!(!p.ssl_redirect);
        assert_eq!(p.https_redirect_port, 8443);
        assert_eq!(
            p.hsts,
            Some(Hsts {
                max_age: 600,
                include_subdomains: true
            })
        );
        assert_eq!(
            run.controller.settings().default_certificate,
            Some(Key::new("infra", "wildcard"))
        );
    }

    #[test]
    fn flags_parse_and_bad_values_are_refused() {
        let cli = Cli::try_parse_from([
            "wicket",
            "run",
            "--watch-ingress-without-class",
            "--allow-external-name",
            "--default-backend-service",
            "infra/errors",
            "--upstream-timeout",
            "1500ms",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!()
        };
        let s = run.controller.settings();
        assert!(s.watch_ingress_without_class && s.allow_external_name);
        assert_eq!(s.default_backend_service, Some(Key::new("infra", "errors")));
        assert_eq!(run.proxy.upstream_timeout, Duration::from_millis(1500));
        assert!(
            Cli::try_parse_from(["wicket", "run", "--default-backend-service", "errors"]).is_err()
        );
        assert!(Cli::try_parse_from(["wicket", "run", "--http-addr", "nowhere"]).is_err());
    }

    #[test]
    fn cluster_flags_parse() {
        let run = |args: &[&str]| {
            let mut all = vec!["wicket", "run"];
            all.extend_from_slice(args);
            match Cli::try_parse_from(all).map(|c| c.command) {
                Ok(Command::Run(run)) => Ok(run.cluster),
                Ok(_) => panic!(),
                Err(e) => Err(e),
            }
        };
        let c = run(&[]).unwrap();
        assert!(c.watch_namespace.is_empty());
        assert_eq!(c.publish(), PublishFrom::Nothing);
        assert_eq!(c.election_id, "wicket-leader");
        assert_eq!(c.election_lease_duration, Duration::from_secs(15));

        let c = run(&["--watch-namespace", "a,b", "--watch-namespace", "c"]).unwrap();
        assert_eq!(c.watch_namespace, vec!["a", "b", "c"]);
        let c = run(&["--publish-service", "ingress/wicket"]).unwrap();
        assert_eq!(
            c.publish(),
            PublishFrom::Service(Key::new("ingress", "wicket"))
        );
        let c = run(&["--publish-status-address", "203.0.113.7,lb.example.com"]).unwrap();
        assert_eq!(
            c.publish(),
            PublishFrom::Addresses(vec![
                Address::Ip("203.0.113.7".into()),
                Address::Hostname("lb.example.com".into())
            ])
        );
        assert!(run(&[
            "--publish-service",
            "a/b",
            "--publish-status-address",
            "1.2.3.4"
        ])
        .is_err());
        assert!(run(&["--election-lease-duration", "10ms"]).is_err());
    }
}
