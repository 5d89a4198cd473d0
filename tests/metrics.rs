//! `/metrics` end to end: what a Prometheus scrape sees after real traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::StatusCode;
use support::*;

/// The value of the series `name{labels}` (labels as printed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_scrape_shows_requests_backends_connections_and_the_table() {
    let pods = pods("web", 2).await;
    let manifests = format!(
        "{}{}",
        site(&pods),
        ingress("broken", &[("b.test", "/", "Prefix", "missing")])
    );
    let w = Wicket::start(&manifests).await;
    for _ in 0..3 {
        assert_eq!(w.get("a.test", "/").await.status, StatusCode::OK);
    }
    // Hosts nobody configured: one series however many there are.
    for i in 0..50 {
        assert_eq!(
            w.get(&format!("random-{i}.example"), "/").await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        w.get("b.test", "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let reply = w.admin_get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let m = reply.body;
    assert!(m.ends_with("# EOF\n"));
    let routed = r#"wicket_requests_total{namespace="default",ingress="site",service="web",method="GET",status="2xx"}"#;
    assert_eq!(value(&m, routed), Some(3.0), "{m}");
    let unrouted =
        r#"wicket_requests_total{namespace="",ingress="",service="",method="GET",status="4xx"}"#;
    assert_eq!(value(&m, unrouted), Some(50.0), "{m}");
    // A Service that cannot be used is still named: the operator sees which one.
    let broken = r#"wicket_requests_total{namespace="default",ingress="broken",service="missing",method="GET",status="5xx"}"#;
    assert_eq!(value(&m, broken), Some(1.0), "{m}");
    assert!(!m.contains("random-"), "no request text in labels");
    assert_eq!(
        value(
            &m,
            r#"wicket_request_duration_seconds_count{namespace="default",ingress="site",service="web"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &m,
            r#"wicket_backend_usable_endpoints{backend="default/web:80"}"#
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        value(&m, r#"wicket_problems{reason="BackendNotFound"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        value(&m, "wicket_snapshot_generation"),
        Some(w.generation() as f64)
    );
    assert!(value(&m, "wicket_snapshot_last_publish_timestamp_seconds").unwrap() > 1.7e9);
    assert!(value(&m, "wicket_snapshot_propagation_seconds_count").unwrap() >= 1.0);
    // The client's keep-alive connection is open while we scrape.
    assert!(
        value(&m, r#"wicket_open_connections{listener="http"}"#).unwrap() >= 1.0,
        "{m}"
    );
    w.stop().await;
}

#[tokio::test]
async fn upstream_failures_and_tls_handshakes_are_counted() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let live = pods("web", 1).await;
    let manifests = format!(
        "{CLASS}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  ports: [{{name: http, port: 80}}]\n{}{}{}",
        slice("web", "web-live", live[0].addr.port(), &ips(&live)),
        slice("web", "web-dead", dead.port(), &[dead.ip().to_string()]),
        ingress("site", &[("a.test", "/", "Prefix", "web")])
    );
    let w = Wicket::start(&manifests).await;
    // Round robin reaches the dead endpoint at least once in a few requests; every request
    // still succeeds by retrying on the live one.
    for _ in 0..6 {
        assert_eq!(w.get("a.test", "/").await.status, StatusCode::OK);
    }
    let stream = tls_connect(w.https(), Some("a.test"), &[b"http/1.1"]).await;
    drop(stream);
    let m = eventually("the handshake to be counted", || async {
        let m = w.admin_get("/metrics").await.body;
        (value(&m, "wicket_tls_handshakes_total").unwrap_or(0.0) >= 1.0).then_some(m)
    })
    .await;
    assert!(
        value(
            &m,
            r#"wicket_upstream_connect_errors_total{backend="default/web:80"}"#
        )
        .unwrap()
            >= 1.0,
        "{m}"
    );
    assert!(
        value(
            &m,
            r#"wicket_upstream_retries_total{backend="default/web:80"}"#
        )
        .unwrap()
            >= 1.0,
        "{m}"
    );
    w.stop().await;
}
