//! The `wicket` binary as a user runs it: check, run, demo, signals, exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wicket");
const DEADLINE: Duration = Duration::from_secs(20);
/// Every listener on a free loopback port.
const ANY_LOOPBACK_PORTS: [&str; 6] = [
    "--http-addr",
    "127.0.0.1:0",
    "--https-addr",
    "127.0.0.1:0",
    "--admin-addr",
    "127.0.0.1:0",
];

fn wicket(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("WICKET_LOG_FORMAT")
        .output()
        .expect("run wicket")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const GOOD: &str = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: wicket}\nspec: {controller: wicket.dev/ingress-controller}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  ports: [{name: http, port: 80}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: shop\n  labels: {kubernetes.io/service-name: web}\naddressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints:\n- addresses: [\"10.1.2.3\"]\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: site, namespace: shop}\nspec:\n  ingressClassName: wicket\n  rules:\n  - host: shop.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n";

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[test]
fn check_prints_the_routing_table_and_exits_0_when_all_is_well() {
    let dir = dir_with(&[("app.yaml", GOOD)]);
    let out = wicket(&["check", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("shop.example.com"), "{text}");
    assert!(text.contains("shop/site"));
    assert!(text.contains("10.1.2.3:8080"));
    assert!(text.contains("No problems."));
}

#[test]
fn check_lists_problems_and_exits_1() {
    let broken = GOOD.replace("path: /,", "path: api,").replace(
        "name: web, port: {number: 80}",
        "name: missing, port: {number: 80}",
    );
    let dir = dir_with(&[
        ("app.yaml", GOOD),
        ("broken.yaml", "kind: [\n"),
        ("more.yaml", &broken.replace("name: site", "name: other")),
    ]);
    let out = wicket(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("Problems ("), "{text}");
    assert!(text.contains("InvalidManifest"), "{text}");
    assert!(text.contains("broken.yaml"), "{text}");
    assert!(text.contains("InvalidPath"), "{text}");
    // The good file is still routed.
    assert!(text.contains("shop.example.com"));
}

#[test]
fn check_json_is_the_debug_routes_document() {
    let dir = dir_with(&[("app.yaml", GOOD)]);
    let out = wicket(&["check", "--json", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["hosts"][0]["host"], "shop.example.com");
    assert_eq!(doc["problems"].as_array().unwrap().len(), 0);
}

/// `wicket run` in cluster mode with `kubeconfig` as KUBECONFIG, outside any pod.
fn run_in_cluster_mode(kubeconfig: &std::path::Path) -> Output {
    Command::new(BIN)
        .arg("run")
        .args(ANY_LOOPBACK_PORTS)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("WICKET_MANIFESTS")
        .output()
        .expect("run wicket")
}

#[test]
fn cluster_mode_without_a_kubeconfig_explains_and_fails() {
    let out = run_in_cluster_mode(std::path::Path::new("/no/such/kubeconfig"));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no Kubernetes configuration"), "{err}");
    assert!(
        err.contains("KUBECONFIG") && err.contains("--manifests DIR"),
        "{err}"
    );
}

#[test]
fn cluster_mode_with_an_unreachable_api_server_explains_and_fails() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = dir_with(&[(
        "config",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\ncontexts:\n- name: gone\n  context: {{cluster: gone, user: nobody}}\ncurrent-context: gone\nusers:\n- name: nobody\n  user: {{}}\n"
        ),
    )]);
    let out = run_in_cluster_mode(&dir.path().join("config"));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the Kubernetes API server"),
        "{err}"
    );
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) || err.contains("onnection refused"),
        "{err}"
    );
}

#[test]
fn run_with_a_missing_directory_says_which() {
    let out = wicket(&["run", "--manifests", "/no/such/place"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/no/such/place"), "{}", stderr(&out));
}

#[test]
fn a_busy_port_is_a_clear_start_up_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = dir_with(&[("app.yaml", GOOD)]);
    let out = wicket(&[
        "run",
        "--manifests",
        dir.path().to_str().unwrap(),
        "--http-addr",
        &addr,
        "--admin-addr",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot listen on {addr} (HTTP)")),
        "{err}"
    );
}

/// Reads a child's stdout/stderr lines on threads, so tests can wait for a line.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(child: &mut Child) -> Lines {
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for reader in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    fn until(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if done(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no {what} within {DEADLINE:?}; output:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "wicket did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn run_takes_its_flags_from_wicket_environment_variables_and_stops_on_sigterm() {
    let dir = dir_with(&[("app.yaml", GOOD)]);
    let mut child = Command::new(BIN)
        .arg("run")
        .env("WICKET_MANIFESTS", dir.path())
        .env("WICKET_HTTP_ADDR", "127.0.0.1:0")
        .env("WICKET_ADMIN_ADDR", "127.0.0.1:0")
        .env("WICKET_HTTPS_ADDR", "127.0.0.1:0")
        // One worker: the single-threaded runtime serves everything below.
        .env("WICKET_WORKER_THREADS", "1")
        .env("WICKET_LOG_FORMAT", "json")
        .env("WICKET_WATCH_INGRESS_WITHOUT_CLASS", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(&mut child);
    let listening = lines.until("the listening log line", |l| l.contains("\"listening\""));
    let fields: serde_json::Value = serde_json::from_str(&listening).expect("JSON log line");
    let admin = fields["admin"].as_str().unwrap().to_owned();
    let http = fields["http"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + DEADLINE;
    while !Command::new("curl")
        .args(["-sf", &format!("http://{admin}/readyz")])
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(curl(&[&format!("http://{admin}/readyz")]), "ready\n");
    // The Ingress in GOOD names a class; one without a class is served because of the env var.
    let classless = GOOD
        .replace("  ingressClassName: wicket\n", "")
        .replace("name: site", "name: plain")
        .replace("shop.example.com", "plain.example.com");
    std::fs::write(dir.path().join("plain.yaml"), classless).unwrap();
    lines.until("the second publish", |l| {
        l.contains("routing table published") && l.contains("\"generation\":2")
    });
    let table = curl(&[&format!("http://{admin}/debug/routes?format=text")]);
    assert!(table.contains("plain.example.com"), "{table}");
    // 10.1.2.3 is not reachable from here: the request is routed, the connection fails.
    let status = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Host: unknown.example",
        &format!("http://{http}/"),
    ]);
    assert_eq!(status, "404");
    signal(&child, "TERM");
    assert!(wait_exit(&mut child).success());
    lines.until("the stop log line", |l| l.contains("\"stopped\""));
}

#[test]
fn demo_answers_the_commands_it_prints_and_exits_on_ctrl_c() {
    let mut child = Command::new(BIN)
        .arg("demo")
        .args(ANY_LOOPBACK_PORTS)
        .env("WICKET_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(&mut child);
    lines.until("the demo instructions", |l| l.contains("Ctrl-C to stop"));
    let commands: Vec<String> = lines
        .seen
        .iter()
        .filter_map(|l| {
            l.trim_start()
                .strip_prefix("curl ")
                .map(|c| c.split("   #").next().unwrap().trim().to_owned())
        })
        .collect();
    assert!(commands.len() >= 5, "{:?}", lines.seen);
    let manifests = lines
        .seen
        .iter()
        .find_map(|l| l.trim().strip_prefix("Manifests: "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .unwrap();
    assert!(Path::new(&manifests).exists());
    let mut pods = std::collections::BTreeSet::new();
    for command in &commands {
        let out = Command::new("sh")
            .args(["-c", &format!("curl -f {command}")])
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "curl {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!body.is_empty(), "curl {command} printed nothing");
        if let Some(pod) = body.lines().next().and_then(|l| l.strip_prefix("pod: ")) {
            pods.insert(pod.split(' ').next().unwrap().to_owned());
        }
    }
    // The commands reach web, api and the default backend.
    for service in ["web-", "api-", "fallback-"] {
        assert!(
            pods.iter().any(|p| p.starts_with(service)),
            "{service} not reached: {pods:?}"
        );
    }
    signal(&child, "INT");
    assert!(wait_exit(&mut child).success());
    // The demo removes its temporary manifests on the way out.
    assert!(!Path::new(&manifests).exists());
}

#[test]
fn the_quickstart_example_checks_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let out = wicket(&["check", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    for expected in [
        "www.example.test",
        "*.preview.example.test",
        "127.0.0.1:9001",
        "127.0.0.1:9002",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}

/// The README's Gateway API example, with the certificate the README makes with openssl.
#[test]
fn the_gateway_example_checks_clean() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["www.example.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let indent = |t: &str| t.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: www-tls, namespace: shop}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert.pem()),
        indent(&key.serialize_pem())
    );
    let mut files = vec![("secret.yaml".to_owned(), secret)];
    for name in ["gateway.yaml", "routes.yaml", "services.yaml"] {
        files.push((
            name.to_owned(),
            std::fs::read_to_string(example.join(name)).unwrap(),
        ));
    }
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let dir = dir_with(&borrowed);
    let out = wicket(&["check", dir.path().to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for expected in [
        "listener http of Gateway shop/shop (HTTP 80, hostname *, on the plain socket)",
        "www.example.test  PathPrefix /  shop/www-redirect rule 0  → redirect 301",
        "listener https of Gateway shop/shop (HTTPS 443, hostname www.example.test, on the TLS socket)",
        "www.example.test  PathPrefix /docs  shop/www rule 0  → shop/docs:80",
        "www.example.test  PathPrefix /  shop/www rule 1  → shop/web:80 ×90, shop/web-canary:80 ×10",
        "No problems.",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}

#[test]
fn echo_answers_with_its_pod_name_and_the_request_and_stops_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut command = Command::new(BIN);
    command
        .args(["echo", "--addr", &addr])
        .env("POD_NAME", "echo-7c9d-x2x4q");
    let (mut child, _lines) = started(command, "echo server listening");
    let body = curl(&[
        "-H",
        "Host: echo.local",
        &format!("http://{addr}/api/orders?id=7"),
    ]);
    assert!(
        body.starts_with(&format!("pod: echo-7c9d-x2x4q ({addr})")),
        "{body}"
    );
    assert!(
        body.contains("request: GET /api/orders?id=7 HTTP/1.1"),
        "{body}"
    );
    assert!(body.contains("host: echo.local"), "{body}");
    signal(&child, "TERM");
    assert!(wait_exit(&mut child).success());
}

/// The kind walkthrough's app, with what the cluster adds (the chart's IngressClass, the
/// EndpointSlices the EndpointSlice controller writes, the TLS Secret), routes as the
/// README says: named targetPorts resolve, two hosts, /api to the api pods.
#[test]
fn the_kind_walkthrough_app_routes_as_documented() {
    let app = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/echo/echo.yaml"),
    )
    .unwrap();
    let cluster_side = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: wicket}\nspec: {controller: wicket.dev/ingress-controller}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-abc12, namespace: echo, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints:\n- addresses: [\"10.244.0.7\"]\n- addresses: [\"10.244.0.8\"]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: api-def34, namespace: echo, labels: {kubernetes.io/service-name: api}}\naddressType: IPv4\nports: [{name: http, port: 9090}]\nendpoints:\n- addresses: [\"10.244.0.9\"]\n";
    let cert = "apiVersion: v1\nkind: Secret\nmetadata: {name: echo-tls, namespace: echo}\ntype: kubernetes.io/tls\ndata: {tls.crt: \"\", tls.key: \"\"}\n";
    let dir = dir_with(&[
        ("echo.yaml", &app),
        ("cluster.yaml", cluster_side),
        ("secret.yaml", cert),
    ]);
    let out = wicket(&["check", dir.path().to_str().unwrap()]);
    let text = stdout(&out);
    let rows: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for expected in [
        "api.echo.local / Prefix echo/echo echo/api:http 1/1 ready: 10.244.0.9:9090",
        "echo.local /api Prefix echo/echo echo/api:80 1/1 ready: 10.244.0.9:9090",
        "echo.local / Prefix echo/echo echo/web:http 2/2 ready: 10.244.0.7:8080, 10.244.0.8:8080",
    ] {
        assert!(
            rows.iter().any(|r| r == expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    // The only Problem is the placeholder Secret (the README makes a real one with openssl).
    assert!(
        text.contains("Problems (1)") && text.contains("TLSSecretInvalid"),
        "{text}"
    );
}

/// The README's Gateway API step on kind: the echo app through examples/gateway/kind.yaml.
#[test]
fn the_kind_gateway_example_routes_as_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let app = std::fs::read_to_string(root.join("examples/echo/echo.yaml")).unwrap();
    let gateway = std::fs::read_to_string(root.join("examples/gateway/kind.yaml")).unwrap();
    // What the cluster adds: the chart's GatewayClass, the slices, the walkthrough's Secret.
    let cluster_side = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: wicket}\nspec: {controllerName: wicket.dev/gateway-controller}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-abc12, namespace: echo, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints:\n- addresses: [\"10.244.0.7\"]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: api-def34, namespace: echo, labels: {kubernetes.io/service-name: api}}\naddressType: IPv4\nports: [{name: http, port: 9090}]\nendpoints:\n- addresses: [\"10.244.0.9\"]\n";
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["echo.local".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let indent = |t: &str| t.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: echo-tls, namespace: echo}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert.pem()),
        indent(&key.serialize_pem())
    );
    // The Ingress of the walkthrough is left out: only the Gateway API objects route here.
    let app: String = app
        .split("\n---")
        .filter(|doc| !doc.contains("kind: Ingress"))
        .collect::<Vec<_>>()
        .join("\n---");
    let dir = dir_with(&[
        ("echo.yaml", &app),
        ("gateway.yaml", &gateway),
        ("cluster.yaml", cluster_side),
        ("secret.yaml", &secret),
    ]);
    let out = wicket(&["check", dir.path().to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for expected in [
        "listener http of Gateway echo/echo (HTTP 80, hostname gw.echo.local, on the plain socket)",
        "listener https of Gateway echo/echo (HTTPS 443, hostname gw.echo.local, on the TLS socket)",
        "gw.echo.local  PathPrefix /api  echo/echo rule 0  → echo/api:80",
        "gw.echo.local  PathPrefix /  echo/echo rule 1  → echo/web:80",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `wicket run` with an echo pod behind a.test; returns (wicket, echo, http addr, lines).
fn run_with_access_log(format: &str) -> (Child, Child, String, Lines) {
    let pod_port = free_port();
    let echo = Command::new(BIN)
        .args([
            "echo",
            "--addr",
            &format!("127.0.0.1:{pod_port}"),
            "--name",
            "web-1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let manifests = format!(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: wicket}}\nspec: {{controller: wicket.dev/ingress-controller}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec:\n  ports: [{{name: http, port: 80}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: shop\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{{name: http, port: {pod_port}}}]\nendpoints:\n- addresses: [\"127.0.0.1\"]\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: site, namespace: shop}}\nspec:\n  ingressClassName: wicket\n  rules:\n  - host: a.test\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
    );
    let dir = dir_with(&[("app.yaml", &manifests)]);
    let http = format!("127.0.0.1:{}", free_port());
    let (child, lines) = spawn_run(&dir, &["--http-addr", &http, "--access-log", format]);
    // The directory must outlive the process's first load; it has been read now.
    drop(dir);
    (child, echo, http, lines)
}

/// `wicket run --manifests DIR ARGS` (listeners not in ARGS on free ports), once its
/// first routing table is published.
fn spawn_run(dir: &tempfile::TempDir, args: &[&str]) -> (Child, Lines) {
    let mut command = Command::new(BIN);
    command.args(["run", "--manifests", dir.path().to_str().unwrap()]);
    command.args(args);
    for flag in ["--http-addr", "--https-addr", "--admin-addr"] {
        if !args.contains(&flag) {
            command.args([flag, "127.0.0.1:0"]);
        }
    }
    started(command, "routing table published")
}

/// Spawns `command` (text logs, output captured) and waits for a line containing `needle`.
fn started(mut command: Command, needle: &str) -> (Child, Lines) {
    let mut child = command
        .env_remove("WICKET_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(&mut child);
    lines.until(needle, |l| l.contains(needle));
    (child, lines)
}

#[test]
fn the_access_log_has_one_json_line_per_request_with_every_field() {
    let (mut child, mut echo, http, mut lines) = run_with_access_log("json");
    let body = curl(&[
        "-H",
        "Host: a.test",
        "-H",
        "x-request-id: req-42",
        &format!("http://{http}/shop?item=7"),
    ]);
    assert!(body.contains("pod: web-1"), "{body}");
    curl(&["-H", "Host: unknown.test", &format!("http://{http}/")]);
    let first = lines.until("the access line", |l| {
        l.contains("\"requestId\":\"req-42\"")
    });
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["host"], "a.test");
    assert_eq!(v["path"], "/shop?item=7");
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["status"], 200);
    assert_eq!(v["upstreamStatus"], 200);
    assert!(v["upstream"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(
        (
            v["namespace"].as_str(),
            v["ingress"].as_str(),
            v["service"].as_str()
        ),
        (Some("shop"), Some("site"), Some("web"))
    );
    assert_eq!(v["bytesOut"].as_u64().unwrap() as usize, body.len());
    assert!(v["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(v["durationMs"].as_f64().unwrap() > 0.0);
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
    let second = lines.until("the 404 line", |l| l.contains("unknown.test"));
    let v: serde_json::Value = serde_json::from_str(&second).unwrap();
    assert_eq!(v["status"], 404);
    assert!(v["upstream"].is_null() && v["ingress"] == "");
    signal(&child, "TERM");
    assert!(wait_exit(&mut child).success());
    let _ = echo.kill();
    let _ = echo.wait();
}

#[test]
fn the_text_access_log_reads_like_nginx_and_off_prints_nothing() {
    let (mut child, mut echo, http, mut lines) = run_with_access_log("text");
    curl(&["-H", "Host: a.test", &format!("http://{http}/x")]);
    let line = lines.until("the access line", |l| l.contains("\"GET /x HTTP/1.1\""));
    assert!(line.starts_with("127.0.0.1 - ["), "{line}");
    assert!(line.contains("\" 200 in=- out="), "{line}");
    assert!(
        line.contains("host=\"a.test\"") && line.contains("route=shop/site/web"),
        "{line}"
    );
    signal(&child, "TERM");
    assert!(wait_exit(&mut child).success());

    let _ = echo.kill();
    let _ = echo.wait();
    let (mut child, mut echo, http2, mut lines) = run_with_access_log("off");
    curl(&["-H", "Host: a.test", &format!("http://{http2}/quiet")]);
    signal(&child, "TERM");
    lines.until("the stop line", |l| l.contains("stopped"));
    assert!(wait_exit(&mut child).success());
    assert!(
        !lines.seen.iter().any(|l| l.contains("/quiet")),
        "{:?}",
        lines.seen
    );
    let _ = echo.kill();
    let _ = echo.wait();
}

#[test]
fn routes_and_explain_ask_a_running_wicket() {
    let dir = dir_with(&[("app.yaml", GOOD)]);
    let admin = format!("127.0.0.1:{}", free_port());
    let (mut child, _lines) = spawn_run(&dir, &["--admin-addr", &admin]);
    let url = format!("http://{admin}");

    let out = wicket(&["routes", "--admin", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("shop.example.com  /     Prefix  shop/site  shop/web:80"),
        "{}",
        stdout(&out)
    );

    let out = wicket(&[
        "routes",
        "--admin",
        &url,
        "--host",
        "nowhere.test",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["hosts"], serde_json::json!([]));

    let out = wicket(&[
        "explain",
        "--admin",
        &url,
        "--host",
        "shop.example.com",
        "--path",
        "/cart?x=1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("=> Prefix / of Ingress shop/site answers"),
        "{text}"
    );
    assert!(text.contains("10.1.2.3:8080: ready"), "{text}");

    signal(&child, "TERM");
    assert!(wait_exit(&mut child).success());

    // Nothing listening: a clear message, exit 1.
    let out = wicket(&["explain", "--admin", &url, "--host", "a"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot reach wicket's admin endpoint"),
        "{}",
        stderr(&out)
    );
}

/// The migration corpus: a dozen Ingresses shaped like real ones, over the annotation
/// table, with the ingress-nginx ConfigMap.
const MIGRATE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/migrate");

#[test]
fn migrate_reports_every_ingress_nginx_annotation_and_exits_1_when_something_is_refused() {
    let out = wicket(&[
        "migrate",
        "--manifests",
        MIGRATE_DIR,
        "--nginx-configmap",
        "ingress-nginx/ingress-nginx-controller",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let ingress = |name: &str| {
        report["ingresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {report:#}"))
            .clone()
    };
    let verdict = |name: &str, annotation: &str| {
        let i = ingress(name);
        i["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == format!("nginx.ingress.kubernetes.io/{annotation}"))
            .unwrap_or_else(|| panic!("{name}/{annotation} in {i:#}"))["verdict"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Served as they are.
    for (name, annotation, expected) in [
        ("storefront", "proxy-body-size", "honoured"),
        ("storefront", "rewrite-target", "differs"),
        ("storefront-canary", "canary-weight", "honoured"),
        ("admin", "whitelist-source-range", "honoured"),
        ("admin", "auth-type", "differs"),
        ("dashboard", "auth-url", "differs"),
        ("dashboard", "auth-signin", "honoured"),
        ("sticky", "session-cookie-name", "honoured"),
        ("partner", "auth-tls-secret", "differs"),
        ("grpc", "backend-protocol", "differs"),
        ("grpc", "mirror-target", "ignored"),
        ("moved", "permanent-redirect", "honoured"),
        ("no-class", "app-root", "differs"),
    ] {
        assert_eq!(verdict(name, annotation), expected, "{name}/{annotation}");
    }
    for name in [
        "storefront",
        "admin",
        "dashboard",
        "sticky",
        "partner",
        "grpc",
        "moved",
    ] {
        assert!(ingress(name)["refused"].is_null(), "{name} is served");
    }
    // Refused: a snippet (not served), and access guards wicket cannot use (503).
    assert_eq!(verdict("legacy", "configuration-snippet"), "refused");
    assert!(ingress("legacy")["refused"]
        .as_str()
        .unwrap()
        .starts_with("not served"));
    assert_eq!(verdict("forgotten-secret", "auth-secret"), "refused");
    assert_eq!(verdict("bad-limit", "limit-whitelist"), "refused");
    assert_eq!(verdict("bad-limit", "enable-modsecurity"), "ignored");
    for name in ["forgotten-secret", "bad-limit"] {
        assert!(
            ingress(name)["refused"]
                .as_str()
                .unwrap()
                .contains("answer 503"),
            "{name}"
        );
    }
    // Another controller's Ingress is none of migrate's business.
    assert!(!stdout(&out).contains("traefik-app"));
    // The ConfigMap as flags.
    let flags: Vec<String> = report["config"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["flags"].as_array().unwrap().clone())
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    for flag in [
        "--max-request-body=20m",
        "--upstream-timeout=120s",
        "--keepalive-timeout=75s",
        "--no-ssl-redirect",
        "--trusted-proxies=10.0.0.0/8",
        "--hsts",
    ] {
        assert!(flags.iter().any(|f| f == flag), "{flag} in {flags:?}");
    }
    assert!(report["steps"][3]
        .as_str()
        .unwrap()
        .contains("--controller-name k8s.io/ingress-nginx --ingress-class nginx"));

    // The table for people: every Ingress with its state, and the summary.
    let out = wicket(&["migrate", "--manifests", MIGRATE_DIR]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("shop/legacy  REFUSED: not served"), "{text}");
    assert!(text.contains("shop/admin  served"), "{text}");
    assert!(text.contains("13 Ingress(es):"), "{text}");
    assert!(!text.contains("ConfigMap as wicket flags"), "{text}");

    // Fixing what is refused turns the exit code to 0: only the served Ingresses.
    let dir = dir_with(&[]);
    for file in [
        "00-cluster.yaml",
        "01-storefront.yaml",
        "04-admin.yaml",
        "09-grpc.yaml",
    ] {
        std::fs::copy(Path::new(MIGRATE_DIR).join(file), dir.path().join(file)).unwrap();
    }
    let out = wicket(&["migrate", "--manifests", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // A ConfigMap that is not there is an error, not an empty translation.
    let out = wicket(&[
        "migrate",
        "--manifests",
        MIGRATE_DIR,
        "--nginx-configmap",
        "ingress-nginx/nope",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("ConfigMap ingress-nginx/nope not found"),
        "{}",
        stderr(&out)
    );
}
