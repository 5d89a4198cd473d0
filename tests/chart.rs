//! The Helm chart, linted and rendered by the real Helm engine (helm-python-sdk, through
//! tests/chart/helm.py), for every documented value set. Every rendered document must
//! parse as its Kubernetes type with no unknown field; the flags the chart passes must
//! parse with wicket's own command line; RBAC and the security context are exactly as
//! documented; values that make no sense are refused with a message naming them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use clap::Parser;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

const HELM_SDK: &str = "helm-python-sdk==0.2.2";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// PYTHONPATH that provides `helm_python`: the interpreter's own if it has it (.ci/run
/// installs it), else a copy installed once under target/.
fn python_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let has = |path: &str| {
            Command::new("python3")
                .args(["-c", "import helm_python"])
                .env("PYTHONPATH", path)
                .status()
                .is_ok_and(|s| s.success())
        };
        if has("") {
            return String::new();
        }
        let local = root().join("target").join("helm-python");
        let local = local.to_str().unwrap().to_owned();
        if !has(&local) {
            let status = Command::new("python3")
                .args([
                    "-m", "pip", "install", "--quiet", "--target", &local, HELM_SDK,
                ])
                .status()
                .expect("python3 with pip");
            assert!(status.success(), "cannot install {HELM_SDK}");
        }
        local
    })
}

fn helm(command: &str, values: &Value, namespace: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.json");
    std::fs::write(&file, values.to_string()).unwrap();
    let out = Command::new("python3")
        .arg(root().join("tests/chart/helm.py"))
        .args([command, file.to_str().unwrap(), namespace])
        .env("PYTHONPATH", python_path())
        .output()
        .expect("run tests/chart/helm.py");
    assert!(
        out.status.success(),
        "helm {command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value sets the README documents.
fn value_sets() -> Vec<(&'static str, Value)> {
    let kind: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("examples/kind/values.yaml")).unwrap(),
    )
    .unwrap();
    vec![
        ("default", json!({})),
        ("daemonset", json!({ "kind": "DaemonSet" })),
        (
            "nodeport",
            json!({ "service": { "type": "NodePort", "externalTrafficPolicy": "Cluster",
                                 "nodePorts": { "http": 30080, "https": 30443 } } }),
        ),
        ("kind", kind),
        (
            "namespaced",
            json!({ "controller": { "watchNamespaces": ["shop", "blog"] } }),
        ),
        (
            "proxied",
            json!({
                "controller": {
                    "proxyProtocol": true,
                    "trustedProxies": ["10.0.0.0/8", "fd00::/8"],
                    "allowedResponseHeaders": ["X-Frame-Options", "Content-Security-Policy"],
                    "enableSslPassthrough": true,
                    "ignoreSnippets": true,
                    "limitStatusCode": 429,
                    "allowlistSourceRange": ["10.0.0.0/8"],
                    "denylistSourceRange": ["10.6.6.0/24", "fd00::/8"],
                    "maxRequestBody": "8m",
                    "outlier": { "consecutiveFailures": 0 }
                },
                "service": { "annotations": {
                    "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol": "*"
                } }
            }),
        ),
        (
            "everything",
            json!({
                "autoscaling": { "enabled": true },
                "serviceMonitor": { "enabled": true, "labels": { "release": "prometheus" } },
                "ingressClass": { "default": true },
                "controller": {
                    "hsts": { "enabled": true, "includeSubdomains": true },
                    "defaultCertificate": "ingress/wildcard",
                    "defaultBackendService": "ingress/errors",
                    "watchIngressWithoutClass": true,
                    "sslRedirect": false
                },
                "podAnnotations": { "example.com/team": "edge" },
                "gatewayAPI": { "enabled": true, "gatewayClass": { "create": true } },
                "priorityClassName": "system-cluster-critical"
            }),
        ),
    ]
}

/// Rendered documents (template comments and empty documents dropped).
fn render(values: &Value) -> Vec<Value> {
    let rendered = helm("render", values, "ingress");
    let mut docs = Vec::new();
    for (template, text) in rendered.as_object().unwrap() {
        if template.ends_with("NOTES.txt") {
            continue;
        }
        for doc in serde_yaml_ng::Deserializer::from_str(text.as_str().unwrap()) {
            let value: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{template}: not YAML: {e}"));
            if !value.is_null() {
                docs.push(value);
            }
        }
    }
    docs
}

/// Deserializes `doc` as `T`, failing on any field `T` does not have.
fn typed<T: DeserializeOwned>(doc: &Value) -> T {
    let mut unknown = Vec::new();
    let t = serde_ignored::deserialize(doc, |path| unknown.push(path.to_string()))
        .unwrap_or_else(|e| panic!("{} {}: {e}", doc["kind"], doc["metadata"]["name"]));
    assert!(
        unknown.is_empty(),
        "{} {}: unknown fields {unknown:?}",
        doc["kind"],
        doc["metadata"]["name"]
    );
    t
}

/// Checks every document against its Kubernetes type.
fn check_types(set: &str, docs: &[Value]) {
    use k8s_openapi::api::{
        apps::v1 as apps, autoscaling::v2 as autoscaling, core::v1 as core,
        networking::v1 as networking, policy::v1 as policy, rbac::v1 as rbac,
    };
    for doc in docs {
        match doc["kind"].as_str().unwrap() {
            "Deployment" => drop(typed::<apps::Deployment>(doc)),
            "DaemonSet" => drop(typed::<apps::DaemonSet>(doc)),
            "Service" => drop(typed::<core::Service>(doc)),
            "ServiceAccount" => drop(typed::<core::ServiceAccount>(doc)),
            "Secret" => drop(typed::<core::Secret>(doc)),
            "ClusterRole" => drop(typed::<rbac::ClusterRole>(doc)),
            "ClusterRoleBinding" => drop(typed::<rbac::ClusterRoleBinding>(doc)),
            "Role" => drop(typed::<rbac::Role>(doc)),
            "RoleBinding" => drop(typed::<rbac::RoleBinding>(doc)),
            "IngressClass" => drop(typed::<networking::IngressClass>(doc)),
            "PodDisruptionBudget" => drop(typed::<policy::PodDisruptionBudget>(doc)),
            "HorizontalPodAutoscaler" => drop(typed::<autoscaling::HorizontalPodAutoscaler>(doc)),
            // Gateway API: wicket's own types for it (the fields it reads).
            "GatewayClass" => {
                let class = typed::<wicket::controller::gateway_api::GatewayClass>(doc);
                assert_eq!(
                    doc["apiVersion"],
                    wicket::controller::gateway_api::API_VERSION
                );
                assert_eq!(class.spec.controller_name, "wicket.dev/gateway-controller");
            }
            // A CRD of the Prometheus Operator: not in k8s-openapi; its shape is checked below.
            "ServiceMonitor" => {
                assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1");
                assert_eq!(doc["spec"]["endpoints"][0]["path"], "/metrics");
            }
            other => panic!("{set}: unexpected kind {other}"),
        }
    }
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = find(docs, kind);
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn workload(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| d["kind"] == "Deployment" || d["kind"] == "DaemonSet")
        .expect("a workload")
}

fn args(docs: &[Value]) -> Vec<String> {
    workload(docs)["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// (namespace or "*", apiGroup, resource, verb) for every rule of every (Cluster)Role.
fn permissions(docs: &[Value]) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for doc in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        let scope = doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("*")
            .to_owned();
        for rule in doc["rules"].as_array().unwrap() {
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        out.insert((
                            scope.clone(),
                            group.as_str().unwrap().to_owned(),
                            resource.as_str().unwrap().to_owned(),
                            verb.as_str().unwrap().to_owned(),
                        ));
                    }
                }
            }
        }
    }
    out
}

fn expected_permissions(read_scopes: &[&str]) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    let mut add = |scope: &str, group: &str, resources: &[&str], verbs: &[&str]| {
        for r in resources {
            for v in verbs {
                out.insert((scope.into(), group.into(), (*r).into(), (*v).into()));
            }
        }
    };
    add(
        "*",
        "networking.k8s.io",
        &["ingressclasses"],
        &["get", "list", "watch"],
    );
    for scope in read_scopes {
        add(
            scope,
            "networking.k8s.io",
            &["ingresses"],
            &["get", "list", "watch"],
        );
        add(
            scope,
            "",
            &["services", "secrets", "configmaps"],
            &["get", "list", "watch"],
        );
        add(
            scope,
            "discovery.k8s.io",
            &["endpointslices"],
            &["get", "list", "watch"],
        );
        add(
            scope,
            "networking.k8s.io",
            &["ingresses/status"],
            &["update", "patch"],
        );
        add(scope, "events.k8s.io", &["events"], &["create", "patch"]);
    }
    add(
        "ingress",
        "coordination.k8s.io",
        &["leases"],
        &["get", "create", "update"],
    );
    // This replica's zone label, read once from its own Node.
    add("*", "", &["nodes"], &["get"]);
    out
}

#[test]
fn the_chart_lints_clean_for_every_documented_value_set() {
    for (set, values) in value_sets() {
        let report = helm("lint", &values, "ingress");
        assert_eq!(report["errors"], json!([]), "{set}: {report}");
        assert_eq!(report["messages"], json!([]), "{set}: {report}");
    }
}

#[test]
fn every_rendered_document_is_a_valid_kubernetes_object() {
    for (set, values) in value_sets() {
        let docs = render(&values);
        check_types(set, &docs);
        // Every flag the chart passes is one wicket accepts.
        let mut argv = vec!["wicket".to_owned()];
        argv.extend(args(&docs));
        if let Err(e) = wicket::cli::Cli::try_parse_from(&argv) {
            panic!("{set}: wicket refuses the chart's arguments {argv:?}: {e}");
        }
    }
}

#[test]
fn rbac_is_exactly_what_wicket_uses() {
    let docs = render(&json!({}));
    assert_eq!(permissions(&docs), expected_permissions(&["*"]));
    let docs = render(&json!({ "controller": { "watchNamespaces": ["shop", "blog"] } }));
    assert_eq!(
        permissions(&docs),
        expected_permissions(&["blog", "ingress", "shop"])
    );
    assert!(args(&docs).contains(&"--watch-namespace=shop,blog".to_owned()));
    // No Node read, no permission to read Nodes: a zone given, or reading turned off.
    let no_nodes = |mut p: BTreeSet<(String, String, String, String)>| {
        p.remove(&("*".into(), "".into(), "nodes".into(), "get".into()));
        p
    };
    for topology in [
        json!({ "zone": "eu-west-1a" }),
        json!({ "readNodeZone": false }),
    ] {
        let docs = render(&json!({ "controller": { "topology": topology } }));
        assert_eq!(
            permissions(&docs),
            no_nodes(expected_permissions(&["*"])),
            "{topology}"
        );
        let zone = run_args(&docs).controller.zone;
        assert_eq!(zone.as_deref(), topology["zone"].as_str(), "{topology}");
    }
    // Gateway API: nothing unless enabled; then reads, status writes and Namespaces, in the
    // watched namespaces only.
    assert!(args(&render(&json!({}))).contains(&"--no-gateway-api".to_owned()));
    for (values, scopes) in [
        (json!({ "gatewayAPI": { "enabled": true } }), vec!["*"]),
        (
            json!({ "gatewayAPI": { "enabled": true }, "controller": { "watchNamespaces": ["shop"] } }),
            vec!["ingress", "shop"],
        ),
    ] {
        let docs = render(&values);
        let mut want = expected_permissions(&scopes);
        let mut add = |scope: &str, group: &str, resource: &str, verbs: &[&str]| {
            for v in verbs {
                want.insert((scope.into(), group.into(), resource.into(), (*v).into()));
            }
        };
        let gw = "gateway.networking.k8s.io";
        add("*", gw, "gatewayclasses", &["get", "list", "watch"]);
        add("*", gw, "gatewayclasses/status", &["update", "patch"]);
        add("*", "", "namespaces", &["get", "list", "watch"]);
        for scope in &scopes {
            for r in ["gateways", "httproutes", "grpcroutes", "referencegrants"] {
                add(scope, gw, r, &["get", "list", "watch"]);
            }
            for r in ["gateways/status", "httproutes/status", "grpcroutes/status"] {
                add(scope, gw, r, &["update", "patch"]);
            }
        }
        assert_eq!(permissions(&docs), want, "{values}");
        let args = args(&docs);
        assert!(
            args.contains(&"--gateway-controller-name=wicket.dev/gateway-controller".to_owned())
        );
        assert!(!args.contains(&"--no-gateway-api".to_owned()));
        assert!(
            find(&docs, "GatewayClass").is_empty(),
            "created only when asked"
        );
    }
    // Every binding names the chart's ServiceAccount.
    let sa = one(&docs, "ServiceAccount")["metadata"]["name"].clone();
    for binding in docs
        .iter()
        .filter(|d| d["kind"].as_str().unwrap().ends_with("Binding"))
    {
        assert_eq!(
            binding["subjects"],
            json!([{ "kind": "ServiceAccount", "name": sa, "namespace": "ingress" }])
        );
    }
}

#[test]
fn the_pod_runs_locked_down_with_probes_and_its_identity() {
    for (set, values) in value_sets() {
        let docs = render(&values);
        let pod = &workload(&docs)["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{set}");
        assert_eq!(pod["securityContext"]["runAsUser"], 65532, "{set}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{set}"
        );
        let sc = &container["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{set}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{set}");
        assert_eq!(sc["capabilities"], json!({ "drop": ["ALL"] }), "{set}");
        // The API token: not automounted anywhere; one short-lived projected token here.
        assert_eq!(pod["automountServiceAccountToken"], false, "{set}");
        assert_eq!(
            one(&docs, "ServiceAccount")["automountServiceAccountToken"],
            false
        );
        let sources = &pod["volumes"][0]["projected"]["sources"];
        assert_eq!(
            sources[0]["serviceAccountToken"]["expirationSeconds"], 3607,
            "{set}"
        );
        assert_eq!(
            container["volumeMounts"][0]["mountPath"],
            "/var/run/secrets/kubernetes.io/serviceaccount"
        );
        assert_eq!(container["volumeMounts"][0]["readOnly"], true);

        assert_eq!(
            container["livenessProbe"]["httpGet"],
            json!({ "path": "/healthz", "port": "admin" }),
            "{set}"
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"],
            json!({ "path": "/readyz", "port": "admin" }),
            "{set}"
        );
        let env: Vec<(&str, &str)> = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| {
                Some((
                    e["name"].as_str().unwrap(),
                    e["valueFrom"]["fieldRef"]["fieldPath"].as_str()?,
                ))
            })
            .collect();
        assert!(
            env.contains(&("POD_NAME", "metadata.name"))
                && env.contains(&("POD_NAMESPACE", "metadata.namespace"))
                && env.contains(&("NODE_NAME", "spec.nodeName")),
            "{set}"
        );
        // wicket knows how it is deployed (node-local Services behind a Deployment warn).
        let kind = workload(&docs)["kind"].as_str().unwrap().to_owned();
        assert!(
            args(&docs).contains(&format!("--workload-kind={kind}")),
            "{set}"
        );
        // Every replica keys persistent session cookies alike: one Secret, in the env.
        let key = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "WICKET_SESSION_COOKIE_KEY")
            .unwrap_or_else(|| panic!("{set}: no session cookie key"));
        let secret_name = key["valueFrom"]["secretKeyRef"]["name"].as_str().unwrap();
        let secret = one(&docs, "Secret");
        assert_eq!(secret["metadata"]["name"], secret_name, "{set}");
        let data = secret["data"]["key"].as_str().unwrap();
        assert!(data.len() >= 48, "{set}: a long random key, base64");

        // Kubernetes must not kill wicket while it drains.
        let run = run_args(&docs);
        let drain = run.proxy.shutdown_delay + run.proxy.shutdown_timeout;
        assert!(
            pod["terminationGracePeriodSeconds"].as_u64().unwrap() > drain.as_secs(),
            "{set}"
        );
        assert!(
            container["resources"]["requests"]["cpu"].is_string(),
            "{set}"
        );
    }
}

/// The controller as the rendered arguments configure it.
fn run_args(docs: &[Value]) -> Box<wicket::cli::RunArgs> {
    let cli =
        wicket::cli::Cli::try_parse_from(std::iter::once("wicket".to_owned()).chain(args(docs)))
            .unwrap();
    let wicket::cli::Command::Run(run) = cli.command else {
        panic!()
    };
    run
}

#[test]
fn edge_settings_reach_the_controller() {
    let sets: std::collections::BTreeMap<&str, Value> = value_sets().into_iter().collect();
    let defaults = run_args(&render(&sets["default"]));
    let p = defaults.proxy.settings();
    assert!(!defaults.proxy.proxy_protocol);
    assert!(p.trusted_proxies.is_empty());
    assert_eq!(p.max_request_body, Some(1024 * 1024));
    assert_eq!(defaults.proxy.client_header_timeout.as_secs(), 60);
    assert_eq!(defaults.proxy.keepalive_timeout.as_secs(), 75);
    assert_eq!(defaults.proxy.client_send_timeout.as_secs(), 60);
    assert_eq!(defaults.proxy.max_connections, 16_384);
    assert_eq!(defaults.proxy.outliers().consecutive_failures, 5);

    let docs = render(&sets["proxied"]);
    let proxied = run_args(&docs);
    let p = proxied.proxy.settings();
    assert!(proxied.proxy.proxy_protocol);
    assert!(p.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
    assert!(p.trusted_proxies.contains("fd00::7".parse().unwrap()));
    assert!(!p.trusted_proxies.contains("192.0.2.1".parse().unwrap()));
    assert_eq!(
        proxied.controller.settings().allowed_response_headers,
        ["x-frame-options", "content-security-policy"]
    );
    assert!(defaults
        .controller
        .settings()
        .allowed_response_headers
        .is_empty());
    assert!(proxied.controller.settings().ssl_passthrough);
    assert!(proxied.controller.settings().ignore_snippets);
    assert!(!defaults.controller.settings().ignore_snippets);
    let source = p.source.clone().expect("the chart's allow and deny lists");
    let (allow, deny) = (source.allow.clone().unwrap(), source.deny.clone().unwrap());
    assert!(allow.contains("10.1.2.3".parse().unwrap()));
    assert!(deny.contains("10.6.6.6".parse().unwrap()));
    assert!(deny.contains("fd00::1".parse().unwrap()));
    assert!(defaults.proxy.settings().source.is_none());
    assert!(!defaults.controller.settings().ssl_passthrough);
    assert_eq!(p.max_request_body, Some(8 * 1024 * 1024));
    assert_eq!(p.limit_status, 429);
    assert_eq!(defaults.proxy.settings().limit_status, 503);
    assert_eq!(proxied.proxy.outliers().consecutive_failures, 0);
    let svc = one(&docs, "Service");
    assert_eq!(
        svc["metadata"]["annotations"]
            ["service.beta.kubernetes.io/aws-load-balancer-proxy-protocol"],
        "*"
    );
}

#[test]
fn service_modes_render_as_documented() {
    let sets: std::collections::BTreeMap<&str, Value> = value_sets().into_iter().collect();

    // Default: a LoadBalancer keeping client IPs, published into Ingress status.
    let docs = render(&sets["default"]);
    let svc = one(&docs, "Service");
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Local");
    let ports: Vec<&Value> = svc["spec"]["ports"].as_array().unwrap().iter().collect();
    assert_eq!(
        ports
            .iter()
            .map(|p| p["port"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![80, 443]
    );
    assert!(
        ports.iter().all(|p| p["targetPort"] != "admin"),
        "the admin port is never exposed"
    );
    assert!(args(&docs).contains(&format!(
        "--publish-service=ingress/{}",
        svc["metadata"]["name"].as_str().unwrap()
    )));
    let deployment = one(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(deployment["spec"]["template"]["spec"]["topologySpreadConstraints"].is_array());
    assert_eq!(one(&docs, "PodDisruptionBudget")["spec"]["minAvailable"], 1);
    assert_eq!(
        one(&docs, "IngressClass")["spec"]["controller"],
        "wicket.dev/ingress-controller"
    );

    // DaemonSet: no replicas, no spread constraint.
    let docs = render(&sets["daemonset"]);
    let ds = one(&docs, "DaemonSet");
    assert!(ds["spec"]["replicas"].is_null() && find(&docs, "Deployment").is_empty());

    // NodePort with fixed ports.
    let docs = render(&sets["nodeport"]);
    let svc = one(&docs, "Service");
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
    let node_ports: Vec<u64> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["nodePort"].as_u64().unwrap())
        .collect();
    assert_eq!(node_ports, vec![30080, 30443]);

    // kind: node ports 80/443 on the ingress-ready node, one replica replaced in place.
    let docs = render(&sets["kind"]);
    let deployment = one(&docs, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let host_ports: Vec<u64> = pod["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["hostPort"].as_u64())
        .collect();
    assert_eq!(host_ports, vec![80, 443]);
    assert_eq!(pod["nodeSelector"]["ingress-ready"], "true");
    assert_eq!(
        pod["tolerations"][0]["key"],
        "node-role.kubernetes.io/control-plane"
    );
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"],
        json!({ "maxSurge": 0, "maxUnavailable": 1 })
    );
    assert_eq!(one(&docs, "Service")["spec"]["type"], "ClusterIP");
    assert!(args(&docs).contains(&"--publish-status-address=127.0.0.1".to_owned()));
    assert_eq!(pod["containers"][0]["imagePullPolicy"], "Never");

    // Everything optional on.
    let docs = render(&sets["everything"]);
    assert!(
        one(&docs, "Deployment")["spec"]["replicas"].is_null(),
        "the HPA owns replicas"
    );
    assert_eq!(
        one(&docs, "HorizontalPodAutoscaler")["spec"]["maxReplicas"],
        10
    );
    let monitor = one(&docs, "ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    let class = one(&docs, "GatewayClass");
    assert_eq!(class["metadata"]["name"], "wicket");
    assert_eq!(
        class["spec"]["controllerName"],
        "wicket.dev/gateway-controller"
    );
    let admin = find(&docs, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"].as_str().unwrap().ends_with("-admin"))
        .expect("admin Service");
    assert_eq!(admin["spec"]["type"], "ClusterIP");
    assert_eq!(
        admin["spec"]["ports"][0]["name"],
        monitor["spec"]["endpoints"][0]["port"]
    );
    assert_eq!(
        one(&docs, "IngressClass")["metadata"]["annotations"]
            ["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );
    let a = args(&docs);
    for flag in [
        "--hsts",
        "--hsts-include-subdomains",
        "--no-ssl-redirect",
        "--watch-ingress-without-class",
        "--default-certificate=ingress/wildcard",
    ] {
        assert!(a.contains(&flag.to_owned()), "{flag} in {a:?}");
    }
}

#[test]
fn values_that_make_no_sense_are_refused_with_a_clear_message() {
    let cases = [
        (json!({ "replicaCount": -1 }), "/replicaCount"),
        (
            json!({ "kind": "StatefulSet" }),
            "'Deployment', 'DaemonSet'",
        ),
        (
            json!({ "hostPort": { "enabled": true } }),
            "'NodePort', 'ClusterIP'",
        ),
        (json!({ "replicaCont": 3 }), "'replicaCont' not allowed"),
        (json!({ "service": { "type": "Ingress" } }), "/service/type"),
        (
            json!({ "controller": { "defaultCertificate": "no-namespace" } }),
            "/controller/defaultCertificate",
        ),
        (
            json!({ "controller": { "shutdownTimeout": "a while" } }),
            "/controller/shutdownTimeout",
        ),
        (
            json!({ "terminationGracePeriodSeconds": 10 }),
            "must be more than controller.shutdownDelay + controller.shutdownTimeout",
        ),
        (
            json!({ "service": { "type": "ClusterIP", "nodePorts": { "http": 30080 } } }),
            "/service/nodePorts/http",
        ),
    ];
    for (values, message) in cases {
        let answer = helm("validate", &values, "ingress");
        let error = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{values} was accepted"));
        assert!(
            error.contains(message),
            "{values}: {error:?} should mention {message:?}"
        );
    }
}

#[test]
fn the_chart_readme_documents_every_value() {
    let readme = std::fs::read_to_string(root().join("charts/wicket/README.md")).unwrap();
    let values: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("charts/wicket/values.yaml")).unwrap(),
    )
    .unwrap();
    fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v.as_object() {
            Some(map)
                if !map.is_empty()
                    && ![
                        "resources",
                        "nodeSelector",
                        "affinity",
                        "podAnnotations",
                        "podLabels",
                        "annotations",
                        "labels",
                    ]
                    .iter()
                    .any(|k| prefix.ends_with(k)) =>
            {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&key, v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    let mut keys = Vec::new();
    leaves("", &values, &mut keys);
    for key in keys {
        assert!(
            readme.contains(&format!("`{key}`")),
            "charts/wicket/README.md does not document `{key}`"
        );
    }
}

#[test]
fn the_image_runs_as_the_user_the_chart_expects() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(last_stage.contains("distroless"), "a minimal final stage");
    assert!(last_stage.contains("USER 65532:65532"));
    assert!(last_stage.contains("ENTRYPOINT [\"/wicket\"]"));
    let docs = render(&json!({}));
    let pod = &workload(&docs)["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["runAsGroup"], 65532);
    // The chart passes the subcommand: the entrypoint is the binary itself.
    assert_eq!(args(&docs)[0], "run");
}
