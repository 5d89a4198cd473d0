//! Requests over real sockets, routed by host and path straight to pod addresses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use support::*;

#[tokio::test]
async fn hosts_and_paths_route_to_the_right_pods() {
    let web = pods("web", 2).await;
    let api = pods("api", 1).await;
    let manifests = format!(
        "{CLASS}{}{}{}",
        service("web", &web),
        service("api", &api),
        ingress(
            "site",
            &[
                ("shop.example.com", "/", "Prefix", "web"),
                ("shop.example.com", "/api", "Prefix", "api"),
                ("shop.example.com", "/api/login", "Exact", "web"),
                ("*.apps.example.com", "/", "Prefix", "api"),
            ]
        )
    );
    let w = Wicket::start(&manifests).await;

    assert!(w
        .get("shop.example.com", "/")
        .await
        .pod()
        .starts_with("web-"));
    assert!(w
        .get("shop.example.com", "/api/orders")
        .await
        .pod()
        .starts_with("api-"));
    assert!(w
        .get("SHOP.Example.com.:8080", "/api")
        .await
        .pod()
        .starts_with("api-"));
    assert!(w
        .get("shop.example.com", "/api/login")
        .await
        .pod()
        .starts_with("web-"));
    assert!(w
        .get("shop.example.com", "/apiary")
        .await
        .pod()
        .starts_with("web-"));
    assert!(w
        .get("x.apps.example.com", "/")
        .await
        .pod()
        .starts_with("api-"));

    let miss = w.get("y.x.apps.example.com", "/").await;
    assert_eq!(miss.status, StatusCode::NOT_FOUND);
    assert_eq!(miss.headers["server"], "wicket");
    assert_eq!(
        w.get("other.example.com", "/").await.status,
        StatusCode::NOT_FOUND
    );
    w.stop().await;
}

#[tokio::test]
async fn the_pod_receives_the_request_unchanged_plus_forwarding_headers() {
    let web = pods("web", 1).await;
    let w = Wicket::start(&site(&web)).await;
    let req = w
        .request(Method::POST, "a.test:8080", "/orders/7?expand=items&x=%2F")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-request-id", "trace-42")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "drop me")
        .header("proxy-authorization", "Basic Zm9v")
        .header("te", "trailers")
        .header("x-custom", "kept")
        .body(Full::new(Bytes::from_static(b"hello body")))
        .unwrap();
    let reply = w.send(req).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .body
            .contains("request: POST /orders/7?expand=items&x=%2F HTTP/1.1"),
        "{}",
        reply.body
    );
    assert_eq!(reply.seen("host").as_deref(), Some("a.test:8080"));
    assert_eq!(reply.seen("x-custom").as_deref(), Some("kept"));
    // The client is not a trusted proxy: its X-Forwarded-For is replaced, not extended.
    assert_eq!(reply.seen("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(reply.seen("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(reply.seen("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        reply.seen("x-forwarded-host").as_deref(),
        Some("a.test:8080")
    );
    assert_eq!(
        reply.seen("x-forwarded-port"),
        Some(w.http.port().to_string())
    );
    assert_eq!(reply.seen("x-request-id").as_deref(), Some("trace-42"));
    for gone in ["x-hop", "proxy-authorization", "te", "connection"] {
        assert_eq!(reply.seen(gone), None, "{gone} must not reach the pod");
    }
    assert!(reply.body.contains("body: 10 bytes"));
    // The pod sent no Server header: wicket adds its own.
    assert_eq!(reply.headers["server"], "wicket");
    w.stop().await;
}

#[tokio::test]
async fn round_robin_spreads_requests_over_every_ready_pod_over_pooled_connections() {
    let web = pods("web", 3).await;
    let w = Wicket::start(&site(&web)).await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..30 {
        *counts
            .entry(w.get("a.test", "/").await.pod().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![10, 10, 10],
        "{counts:?}"
    );
    // Sequential requests reuse the upstream connections instead of opening new ones.
    let opened: usize = web.iter().map(|p| p.connections()).sum();
    assert!(
        opened <= 6,
        "opened {opened} upstream connections for 30 requests"
    );
    w.stop().await;
}

#[tokio::test]
async fn client_ip_affinity_keeps_a_client_on_one_pod() {
    let web = pods("web", 3).await;
    let manifests = format!(
        "{CLASS}{}{}",
        service("web", &web).replace("  selector:", "  sessionAffinity: ClientIP\n  selector:"),
        ingress("site", &[("a.test", "/", "Prefix", "web")])
    );
    let w = Wicket::start(&manifests).await;
    let first = w.get("a.test", "/").await.pod().to_owned();
    for _ in 0..10 {
        assert_eq!(w.get("a.test", "/").await.pod(), first);
    }
    w.stop().await;
}

#[tokio::test]
async fn only_ready_endpoints_get_traffic_and_terminating_ones_when_none_is_ready() {
    let web = pods("web", 2).await;
    let port = web[0].addr.port();
    let ips = ips(&web);
    let slice_with = |conditions: [&str; 2]| {
        format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-x\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports:\n- {{name: http, port: {port}}}\nendpoints:\n- addresses: [\"{}\"]\n  conditions: {}\n- addresses: [\"{}\"]\n  conditions: {}\n",
            ips[0], conditions[0], ips[1], conditions[1]
        )
    };
    let svc = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{name: http, port: 80}]\n";
    let ing = ingress("site", &[("a.test", "/", "Prefix", "web")]);
    let w = Wicket::start(&format!(
        "{CLASS}{svc}{ing}{}",
        slice_with([
            "{ready: true}",
            "{ready: false, serving: true, terminating: true}"
        ])
    ))
    .await;
    for _ in 0..6 {
        assert_eq!(w.get("a.test", "/").await.pod(), "web-0");
    }
    // Rolling update: nothing ready, the serving+terminating pod keeps the site up.
    w.apply(
        "main.yaml",
        &format!(
            "{CLASS}{svc}{ing}{}",
            slice_with([
                "{ready: false, serving: false}",
                "{ready: false, serving: true, terminating: true}"
            ])
        ),
    )
    .await;
    for _ in 0..6 {
        assert_eq!(w.get("a.test", "/").await.pod(), "web-1");
    }
    // Nothing serves: 503 from wicket.
    w.apply(
        "main.yaml",
        &format!(
            "{CLASS}{svc}{ing}{}",
            slice_with([
                "{ready: false, serving: false}",
                "{ready: false, serving: false, terminating: true}"
            ])
        ),
    )
    .await;
    let reply = w.get("a.test", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "503 service unavailable: no ready endpoint\n");
    w.stop().await;
}

#[tokio::test]
async fn named_target_ports_multi_port_services_and_endpoints_objects_reach_the_pods() {
    let web = pods("web", 1).await;
    let metrics = pods("metrics", 1).await;
    let legacy = pods("legacy", 2).await;
    let manifests = format!(
        "{CLASS}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  ports:\n  - {{name: http, port: 80, targetPort: http-web}}\n  - {{name: metrics, port: 9090, targetPort: prom}}\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports:\n- {{name: http, port: {}}}\nendpoints:\n- addresses: [\"{}\"]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-2\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports:\n- {{name: metrics, port: {}}}\nendpoints:\n- addresses: [\"{}\"]\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {{name: legacy}}\nspec:\n  ports: [{{name: http, port: 80}}]\n\
         ---\napiVersion: v1\nkind: Endpoints\nmetadata: {{name: legacy}}\nsubsets:\n- addresses: [{{ip: \"{}\"}}, {{ip: \"not-an-address\"}}]\n  notReadyAddresses: [{{ip: \"{}\"}}]\n  ports: [{{name: http, port: {}}}]\n\
         ---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: site}}\nspec:\n  ingressClassName: wicket\n  rules:\n  - host: a.test\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n      - {{path: /metrics, pathType: Prefix, backend: {{service: {{name: web, port: {{name: metrics}}}}}}}}\n      - {{path: /legacy, pathType: Prefix, backend: {{service: {{name: legacy, port: {{number: 80}}}}}}}}\n",
        web[0].addr.port(), web[0].addr.ip(),
        metrics[0].addr.port(), metrics[0].addr.ip(),
        legacy[0].addr.ip(), legacy[1].addr.ip(), legacy[0].addr.port(),
    );
    let w = Wicket::start(&manifests).await;
    assert_eq!(w.get("a.test", "/").await.pod(), "web-0");
    assert_eq!(w.get("a.test", "/metrics").await.pod(), "metrics-0");
    for _ in 0..4 {
        // The not-ready address never gets traffic; the garbage one is skipped.
        assert_eq!(w.get("a.test", "/legacy/x").await.pod(), "legacy-0");
    }
    let routes = w.routes().await;
    let problems = routes["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["reason"] == "InvalidEndpoint"
        && p["message"].as_str().unwrap().contains("not-an-address")));
    w.stop().await;
}

#[tokio::test]
async fn default_backend_missing_service_and_missing_port_answer_as_documented() {
    let web = pods("web", 1).await;
    let fallback = pods("fallback", 1).await;
    let manifests = format!(
        "{CLASS}{}{}---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: site}}\nspec:\n  ingressClassName: wicket\n  defaultBackend: {{service: {{name: fallback, port: {{name: http}}}}}}\n  rules:\n  - host: a.test\n    http:\n      paths:\n      - {{path: /gone, pathType: Prefix, backend: {{service: {{name: nope, port: {{number: 80}}}}}}}}\n      - {{path: /badport, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 81}}}}}}}}\n      - {{path: /, pathType: Exact, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n",
        service("web", &web),
        service("fallback", &fallback)
    );
    let w = Wicket::start(&manifests).await;
    assert_eq!(w.get("a.test", "/").await.pod(), "web-0");
    // The host was chosen; no path matched: the default backend, not a 404.
    assert_eq!(w.get("a.test", "/other").await.pod(), "fallback-0");
    assert_eq!(w.get("unknown.test", "/").await.pod(), "fallback-0");
    let gone = w.get("a.test", "/gone").await;
    assert_eq!(gone.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(gone.body, "503 service unavailable: backend unavailable\n");
    assert_eq!(
        w.get("a.test", "/badport").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    w.stop().await;
}

#[tokio::test]
async fn hostile_requests_get_400_and_the_server_keeps_serving() {
    let web = pods("web", 1).await;
    let manifests = format!(
        "{CLASS}{}{}",
        service("web", &web),
        ingress("site", &[("", "/", "Prefix", "web")])
    );
    let w = Wicket::start(&manifests).await;
    let huge = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", "a".repeat(4000));
    let cases: Vec<(String, &str)> = vec![
        ("GET / HTTP/1.1\r\nHost: \r\n\r\n".into(), "400"),
        ("GET / HTTP/1.1\r\n\r\n".into(), "400"),
        (
            "GET / HTTP/1.1\r\nHost: user:pw@a.test\r\n\r\n".into(),
            "400",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n".into(),
            "400",
        ),
        (
            "GET / HTTP/1.1\r\nHost: b\u{fc}cher.test\r\n\r\n".into(),
            "400",
        ),
        (huge, "400"),
        (
            "GET /a/../../etc/passwd HTTP/1.1\r\nHost: a.test\r\n\r\n".into(),
            "400",
        ),
        (
            "GET /a/%2e%2e/admin HTTP/1.1\r\nHost: a.test\r\n\r\n".into(),
            "400",
        ),
        (
            "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n".into(),
            "405",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: ".to_owned()
                + &"x".repeat(70_000)
                + "\r\n\r\n",
            "431",
        ),
    ];
    for (request, status) in cases {
        let response = w.raw(request.as_bytes()).await;
        let first = response.lines().next().unwrap_or("");
        assert!(
            first.contains(status),
            "{:?} got {first:?}",
            &request[..request.len().min(60)]
        );
    }
    // HTTP/1.0 without Host goes to the rules without a host.
    let response = w.raw(b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    assert_eq!(w.get("a.test", "/").await.status, StatusCode::OK);
    w.stop().await;
}

#[tokio::test]
async fn http2_prior_knowledge_routes_by_authority() {
    let web = pods("web", 1).await;
    let api = pods("api", 1).await;
    let manifests = format!(
        "{CLASS}{}{}{}",
        service("web", &web),
        service("api", &api),
        ingress(
            "site",
            &[
                ("a.test", "/", "Prefix", "web"),
                ("b.test", "/", "Prefix", "api")
            ]
        )
    );
    let w = Wicket::start(&manifests).await;
    let reply = w.h2_get("b.test", "/x").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.pod(), "api-0");
    // The pod speaks HTTP/1.1 and sees a Host header made from :authority.
    assert!(
        reply.body.contains("request: GET /x HTTP/1.1"),
        "{}",
        reply.body
    );
    assert_eq!(reply.seen("host").as_deref(), Some("b.test"));
    assert_eq!(w.h2_get("a.test", "/").await.pod(), "web-0");
    w.stop().await;
}

#[tokio::test]
async fn debug_routes_lists_each_route_with_its_source_and_pods() {
    let web = pods("web", 2).await;
    let w = Wicket::start(&site(&web)).await;
    let routes = w.routes().await;
    let host = &routes["hosts"][0];
    assert_eq!(host["host"], "a.test");
    let route = &host["routes"][0];
    assert_eq!(route["pathType"], "Prefix");
    assert_eq!(route["ingress"]["name"], "site");
    let endpoints: BTreeSet<String> = route["backend"]["destination"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["address"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = web.iter().map(|p| p.addr.to_string()).collect();
    assert_eq!(endpoints, expected);
    w.stop().await;
}

/// A Service `name` (port 80, `spec` lines added) and its slice: each pod placed on a node
/// and zone, with the hints given ("" for none).
fn placed_service(
    name: &str,
    spec: &str,
    pods: &[wicket::echo::EchoServer],
    placement: &[(&str, &str, &str)],
) -> String {
    let port = pods[0].addr.port();
    let mut s = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 80}}]\n{spec}---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports:\n- {{name: http, port: {port}}}\nendpoints:\n"
    );
    for (pod, (node, zone, hint)) in pods.iter().zip(placement) {
        s.push_str(&format!(
            "- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n  nodeName: {node}\n  zone: {zone}\n",
            pod.addr.ip()
        ));
        if !hint.is_empty() {
            s.push_str(&format!("  hints: {{forZones: [{{name: {hint}}}]}}\n"));
        }
    }
    s
}

/// Which pods answer `n` requests for `host`.
async fn answering(w: &Wicket, host: &str, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let r = w.get(host, "/").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        seen.insert(r.pod().to_owned());
    }
    seen
}

fn at(node: &str, zone: &str) -> wicket::app::Config {
    let mut config = wicket::app::Config::local();
    config.settings.locality = wicket::model::Locality::new(Some(node), Some(zone), "--zone");
    config
}

#[tokio::test]
async fn topology_hints_keep_requests_in_this_zone_until_the_hints_go() {
    let web = pods("web", 4).await;
    let placement = [
        ("n1", "zone-a", "zone-a"),
        ("n2", "zone-a", "zone-a"),
        ("n3", "zone-b", "zone-b"),
        ("n4", "zone-b", "zone-b"),
    ];
    let manifests = |placement: &[(&str, &str, &str)]| {
        format!(
            "{CLASS}{}{}",
            placed_service(
                "web",
                "  trafficDistribution: PreferClose\n",
                &web,
                placement
            ),
            ingress("site", &[("a.test", "/", "Prefix", "web")])
        )
    };
    let w = Wicket::start_with(&manifests(&placement), at("n1", "zone-a")).await;
    let seen = answering(&w, "a.test", 20).await;
    assert_eq!(seen, BTreeSet::from(["web-0".into(), "web-1".into()]));
    let left = "wicket_upstream_cross_zone_requests_total{backend=\"default/web:80\"}";
    assert_eq!(w.metric(left).await, 0.0);

    // /debug/routes says where this replica is and where each endpoint is.
    let routes = w.routes().await;
    assert_eq!(routes["locality"]["node"], "n1");
    assert_eq!(routes["locality"]["zone"], "zone-a");
    let backend = &routes["hosts"][0]["routes"][0]["backend"];
    let text = backend.to_string();
    assert!(text.contains("\"preference\":\"sameZone\""), "{text}");
    assert!(text.contains("\"otherZone\":true"), "{text}");
    // explain says why the other zone's pods are not used.
    let why = w
        .admin_get("/debug/explain?host=a.test&path=/&format=text")
        .await
        .body;
    assert!(
        why.contains("endpoints hinted for this zone (zone-a)"),
        "{why}"
    );
    assert!(why.contains("not hinted for this zone"), "{why}");

    // One pod loses its hint: kube-proxy then uses every endpoint, and requests leave the
    // zone (counted).
    let mut unhinted = placement;
    unhinted[3].2 = "";
    w.apply("main.yaml", &manifests(&unhinted)).await;
    let seen = answering(&w, "a.test", 40).await;
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(w.metric(left).await > 0.0);
    w.stop().await;
}

#[tokio::test]
async fn local_internal_traffic_policy_stays_on_this_node_or_answers_503() {
    let near = pods("near", 3).await;
    let far = pods("far", 1).await;
    let local = "  internalTrafficPolicy: Local\n";
    let manifests = format!(
        "{CLASS}{}{}{}",
        placed_service(
            "near",
            local,
            &near,
            &[("n1", "z", ""), ("n2", "z", ""), ("n1", "z", "")]
        ),
        placed_service("far", local, &far, &[("n3", "z", "")]),
        ingress(
            "site",
            &[
                ("near.test", "/", "Prefix", "near"),
                ("far.test", "/", "Prefix", "far")
            ]
        )
    );
    let w = Wicket::start_with(&manifests, at("n1", "z")).await;
    let seen = answering(&w, "near.test", 20).await;
    assert_eq!(seen, BTreeSet::from(["near-0".into(), "near-2".into()]));
    // No endpoint on this node: 503, never a pod on another node.
    let r = w.get("far.test", "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let why = w
        .admin_get("/debug/explain?host=far.test&path=/&format=text")
        .await
        .body;
    assert!(why.contains("no endpoint runs on this node (n1)"), "{why}");
    assert!(
        why.contains("internalTrafficPolicy Local uses this node's endpoints only"),
        "{why}"
    );
    w.stop().await;
}
