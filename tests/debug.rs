//! `/debug/explain` and the other faces of `/debug/routes` (text, HTML, one host).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use support::*;

async fn explain(w: &Wicket, query: &str) -> (StatusCode, Value) {
    let reply = w.admin_get(&format!("/debug/explain?{query}")).await;
    let json = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    (reply.status, json)
}

async fn world() -> (Wicket, Vec<wicket::echo::EchoServer>) {
    let pods = pods("web", 2).await;
    let port = pods[0].addr.port();
    let mut manifests = format!(
        "{CLASS}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  ports: [{{name: http, port: 80}}]\n"
    );
    // One ready pod, one not ready.
    manifests.push_str(&format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints:\n- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n- addresses: [\"{}\"]\n  conditions: {{ready: false}}\n",
        pods[0].addr.ip(),
        pods[1].addr.ip()
    ));
    manifests.push_str(&ingress(
        "shop",
        &[
            ("shop.test", "/", "Prefix", "web"),
            ("shop.test", "/api", "Prefix", "web"),
            ("shop.test", "/api/v1", "Prefix", "web"),
            ("shop.test", "/health", "Exact", "web"),
            ("*.apps.test", "/", "Prefix", "web"),
        ],
    ));
    (Wicket::start(&manifests).await, pods)
}

#[tokio::test]
async fn explain_names_the_rule_the_ones_it_beat_and_the_endpoints() {
    let (w, _pods) = world().await;
    let (status, e) = explain(&w, "host=SHOP.test:8080&path=/api/v1/orders").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(e["outcome"], "route");
    assert_eq!(e["normalizedHost"], "shop.test");
    assert_eq!(e["virtualHost"], "shop.test");
    let rules = e["rules"].as_array().unwrap();
    let rule = |path: &str| rules.iter().find(|r| r["path"] == path).unwrap();
    assert_eq!(rule("/api/v1")["chosen"], true);
    assert_eq!(rule("/api")["matches"], true);
    assert!(rule("/api")["why"]
        .as_str()
        .unwrap()
        .contains("longer prefix /api/v1 wins"));
    assert_eq!(rule("/health")["matches"], false);
    assert!(rule("/health")["why"]
        .as_str()
        .unwrap()
        .contains("not exactly"));
    let endpoints = e["backend"]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2);
    assert!(endpoints
        .iter()
        .any(|ep| ep["usable"] == true && ep["why"] == "ready"));
    assert!(endpoints
        .iter()
        .any(|ep| ep["usable"] == false && ep["why"] == "not ready"));

    // Segment boundaries are explained.
    let (_, e) = explain(&w, "host=shop.test&path=/apix").await;
    let rules = e["rules"].as_array().unwrap();
    let api = rules.iter().find(|r| r["path"] == "/api").unwrap();
    assert!(
        api["why"].as_str().unwrap().contains("whole segments"),
        "{api}"
    );

    // A wildcard host, step by step.
    let (_, e) = explain(&w, "host=pr-7.apps.test&path=/").await;
    let steps: Vec<&str> = e["hostSteps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        vec![
            "exact host pr-7.apps.test: no rule has this host",
            "wildcard *.apps.test: configured, chosen"
        ]
    );
    w.stop().await;
}

#[tokio::test]
async fn unknown_and_bad_input_get_useful_answers_not_errors() {
    let (w, _pods) = world().await;
    let (status, e) = explain(&w, "host=nowhere.example&path=/x").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(e["outcome"], "notFound");
    assert!(e["summary"].as_str().unwrap().contains("404"));
    assert_eq!(e["hostSteps"].as_array().unwrap().len(), 3);

    let (status, e) = explain(&w, "host=a%20b&path=/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(e["outcome"], "badRequest");
    assert!(e["hostError"].is_string(), "{e}");

    let reply = w.admin_get("/debug/explain?path=/x").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.body.contains("/debug/explain?host="),
        "{}",
        reply.body
    );

    let text = w
        .admin_get("/debug/explain?host=shop.test&path=/health&format=text")
        .await
        .body;
    assert!(text.contains("=> Exact /health (default/shop)"), "{text}");
    w.stop().await;
}

#[tokio::test]
async fn routes_for_one_host_and_as_html_for_browsers() {
    let (w, _pods) = world().await;
    let text = w
        .admin_get("/debug/routes?format=text&host=pr-1.apps.test")
        .await
        .body;
    assert!(text.contains("*.apps.test"), "{text}");
    assert!(!text.contains("shop.test"), "{text}");
    let json: Value =
        serde_json::from_str(&w.admin_get("/debug/routes?host=shop.test").await.body).unwrap();
    assert_eq!(json["hosts"].as_array().unwrap().len(), 1);

    let req = Request::get(format!("http://{}/debug/routes", w.admin))
        .header("accept", "text/html,application/xhtml+xml")
        .body(Full::default())
        .unwrap();
    let reply = w.send(req).await;
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(reply.body.starts_with("<!doctype html>"));
    assert!(
        reply.body.contains("shop.test") && reply.body.contains("<form action=\"/debug/explain\"")
    );
    // Request text is escaped, never markup.
    let page = w
        .admin_get("/debug/explain?host=%3Cscript%3E&path=/&format=html")
        .await
        .body;
    assert!(
        !page.contains("<script>") && page.contains("&lt;script&gt;"),
        "{page}"
    );
    w.stop().await;
}
