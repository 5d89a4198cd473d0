//! `wicket demo`: the whole product in one command, with no cluster.
//!
//! Six echo "pods" start on their own loopback addresses with one shared port (as pods
//! have their own IPs), example manifests describing them are written to a temporary
//! directory, and wicket serves that directory exactly as `wicket run --manifests` would —
//! so editing the file changes the routes live.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use tracing::info;

use crate::app::{self, Config, Source, StartError};
use crate::cli::DemoArgs;
use crate::echo::EchoServer;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot make the demo's certificate: {0}")]
    Certificate(String),
    #[error("cannot start the demo's echo pods: {0}")]
    Pods(#[source] std::io::Error),
    #[error("cannot write the demo manifests: {0}")]
    Manifests(#[source] std::io::Error),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// The demo's Services and their pods.
const SERVICES: [(&str, &[&str]); 3] = [
    (
        "web",
        &["web-6c9f4-2xkqp", "web-6c9f4-8hzvn", "web-6c9f4-tm5rd"],
    ),
    ("api", &["api-7b5d9-4jw2c", "api-7b5d9-q8rxl"]),
    ("fallback", &["fallback-5f6b8-zr7mt"]),
];

/// Attempts at finding one port free on every pod address.
const PORT_ATTEMPTS: usize = 5;

struct Pod {
    service: &'static str,
    server: EchoServer,
}

/// Pods on 127.0.0.2, .3, ... sharing one port; where the platform has no such addresses
/// (macOS), on 127.0.0.1 with a port each.
async fn start_pods() -> std::io::Result<Vec<Pod>> {
    let names: Vec<(&'static str, &'static str)> = SERVICES
        .iter()
        .flat_map(|(svc, pods)| pods.iter().map(move |p| (*svc, *p)))
        .collect();
    'attempt: for _ in 0..PORT_ATTEMPTS {
        let mut pods = Vec::new();
        let mut port = 0;
        for (i, (service, name)) in names.iter().enumerate() {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8));
            match EchoServer::start(name, SocketAddr::new(ip, port)).await {
                Ok(server) => {
                    port = server.addr.port();
                    pods.push(Pod { service, server });
                }
                Err(_) if i == 0 => break 'attempt,
                Err(_) => continue 'attempt,
            }
        }
        return Ok(pods);
    }
    let mut pods = Vec::new();
    for (service, name) in names {
        let server = EchoServer::start(name, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        pods.push(Pod { service, server });
    }
    Ok(pods)
}

/// The host served over HTTPS in the demo, with a certificate made at start.
const SECURE_HOST: &str = "secure.localhost";

/// A self-signed certificate and key (PEM) for the demo's HTTPS host.
fn demo_certificate() -> Result<(String, String), DemoError> {
    let key = rcgen::KeyPair::generate().map_err(|e| DemoError::Certificate(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec![SECURE_HOST.to_owned()])
        .map_err(|e| DemoError::Certificate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| DemoError::Certificate(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

/// The example manifests for `pods`.
fn manifests(pods: &[Pod], (crt, key): &(String, String)) -> String {
    let mut y = String::from(
        "# wicket demo manifests. Edit and save: the routing table changes live, no reload.\n\
         # See it with: curl 'http://ADMIN/debug/routes?format=text'\n\
         apiVersion: networking.k8s.io/v1\n\
         kind: IngressClass\n\
         metadata:\n  name: wicket\n  annotations:\n    ingressclass.kubernetes.io/is-default-class: \"true\"\n\
         spec:\n  controller: wicket.dev/ingress-controller\n",
    );
    let services = [
        ("web", "  - name: http\n    port: 80\n    targetPort: http-web   # named container port, resolved through the EndpointSlice\n", ""),
        ("api", "  - name: http\n    port: 8080\n    targetPort: 8080\n", "  sessionAffinity: ClientIP   # each client stays on one pod\n"),
        ("fallback", "  - name: http\n    port: 80\n    targetPort: 8080\n", ""),
    ];
    for (service, ports, extra) in services {
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {service}\n  namespace: demo\nspec:\n  selector:\n    app: {service}\n{extra}  ports:\n{ports}"
        );
        // One EndpointSlice per distinct pod port (one in all, where pods share a port).
        let mine: Vec<&Pod> = pods.iter().filter(|p| p.service == service).collect();
        let mut ports: Vec<u16> = mine.iter().map(|p| p.server.addr.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        for (i, port) in ports.iter().enumerate() {
            let _ = write!(
                y,
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-{i}\n  namespace: demo\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nports:\n- name: http\n  port: {port}\nendpoints:\n"
            );
            for pod in mine.iter().filter(|p| p.server.addr.port() == *port) {
                let _ = write!(
                    y,
                    "- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n  targetRef: {{kind: Pod, name: {}}}\n",
                    pod.server.addr.ip(),
                    pod.server.name
                );
            }
        }
    }
    y.push_str(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: demo\n  namespace: demo\nspec:\n  defaultBackend:\n    service: {name: fallback, port: {number: 80}}\n  rules:\n  - host: web.localhost\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}\n      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}\n  - host: \"*.apps.localhost\"\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n  - host: api.localhost\n    http:\n      paths:\n      - {path: /healthz, pathType: Exact, backend: {service: {name: api, port: {name: http}}}}\n      - {path: /v1, pathType: Prefix, backend: {service: {name: api, port: {name: http}}}}\n",
    );
    let _ = write!(
        y,
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: secure-tls\n  namespace: demo\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}\
         ---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: secure\n  namespace: demo\nspec:\n  tls:\n  - hosts: [{SECURE_HOST}]\n    secretName: secure-tls\n  rules:\n  - host: {SECURE_HOST}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{name: http}}}}}}}}\n",
        indent(crt, "    "),
        indent(key, "    ")
    );
    y
}

fn instructions(running: &app::Running, pods: &[Pod], file: &std::path::Path) -> String {
    let (http, https, admin) = (running.http_addr, running.https_addr, running.admin_addr);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "wicket demo: proxy on http://{http} and https://{https}, admin on http://{admin}"
    );
    for (service, _) in SERVICES {
        let addrs: Vec<String> = pods
            .iter()
            .filter(|p| p.service == service)
            .map(|p| p.server.addr.to_string())
            .collect();
        let _ = writeln!(
            s,
            "  Service demo/{service}: {} pod(s) at {}",
            addrs.len(),
            addrs.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "  Manifests: {} (edit and save: routes change live)",
        file.display()
    );
    let _ = writeln!(
        s,
        "  Dashboard: http://{admin}/ (open it in a browser: backends, traffic, routes, Problems)"
    );
    let _ = writeln!(s, "\nTry:");
    let (port, ip) = (https.port(), https.ip());
    let commands = [
        (
            format!("curl -s -H 'Host: web.localhost' http://{http}/"),
            "round robin over the 3 web pods",
        ),
        (
            format!("curl -s -H 'Host: web.localhost' 'http://{http}/api/orders?id=7'"),
            "Prefix /api goes to api (sticky: ClientIP)",
        ),
        (
            format!("curl -s -H 'Host: shop.apps.localhost' http://{http}/"),
            "wildcard host *.apps.localhost",
        ),
        (
            format!("curl -s -H 'Host: api.localhost' http://{http}/healthz"),
            "Exact /healthz",
        ),
        (
            format!("curl -s -H 'Host: nowhere.example' http://{http}/"),
            "no rule matches: the default backend",
        ),
        (
            format!("curl -si -H 'Host: {SECURE_HOST}' http://{http}/"),
            "a TLS host over plain HTTP: 308 to HTTPS",
        ),
        (
            format!("curl -sk --resolve {SECURE_HOST}:{port}:{ip} https://{SECURE_HOST}:{port}/"),
            "HTTPS, certificate chosen by SNI (self-signed: -k)",
        ),
        (
            format!("curl -s 'http://{admin}/?format=text'"),
            "the dashboard, for a terminal",
        ),
        (
            format!("curl -s 'http://{admin}/debug/routes?format=text'"),
            "the routing table",
        ),
        (
            format!("curl -s http://{admin}/debug/routes"),
            "the same as JSON",
        ),
    ];
    let width = commands.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (command, why) in &commands {
        let _ = writeln!(s, "  {command:<width$}   # {why}");
    }
    let _ = writeln!(s, "\nCtrl-C to stop.");
    s
}

pub async fn run(args: &DemoArgs) -> Result<(), DemoError> {
    let pods = start_pods().await.map_err(DemoError::Pods)?;
    let dir = tempfile::Builder::new()
        .prefix("wicket-demo-")
        .tempdir()
        .map_err(DemoError::Manifests)?;
    let file: PathBuf = dir.path().join("demo.yaml");
    std::fs::write(&file, manifests(&pods, &demo_certificate()?)).map_err(DemoError::Manifests)?;

    let mut config = Config {
        http_addr: args.http_addr,
        https_addr: args.https_addr,
        admin_addr: args.admin_addr,
        // Each request the printed commands make shows up as a line.
        access_log: crate::proxy::observe::AccessLogFormat::Text,
        ..Config::local()
    };
    // Redirects point at the demo's own HTTPS port.
    config.proxy.https_redirect_port = 0;
    let running = app::start(config, Source::Manifests(dir.path().to_owned())).await?;
    // The commands printed next must work at once: wait for the first routing table.
    if !running.ready(std::time::Duration::from_secs(10)).await {
        tracing::warn!("the routing table is not loaded yet; the commands answer 503 until it is");
    }
    print!("{}", instructions(&running, &pods, &file));
    app::shutdown_signal().await;
    info!("shutting the demo down");
    running.shutdown().await;
    drop(pods);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::manifest;

    #[tokio::test]
    async fn the_demo_manifests_parse_without_problems() {
        let pods = start_pods().await.unwrap();
        let parsed = manifest::parse(
            "demo.yaml",
            &manifests(&pods, &demo_certificate().unwrap()),
            false,
        );
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert!(!parsed.unreadable);
        // IngressClass, 3 Services, their slices, the Ingress.
        assert!(parsed.objects.len() >= 8);
    }
}
