//! Failing pods taken out of rotation (passive health checks), trial requests that bring
//! them back, and retries of idempotent requests whose connection was reset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::pod::{Behaviour, RecordingPod};
use support::*;
use wicket::app::Config;
use wicket::proxy::outlier::OutlierSettings;

/// Service `web` over three recording pods (each its own slice and port).
async fn three_pods(behaviours: [Behaviour; 3], config: Config) -> (Wicket, Vec<RecordingPod>) {
    let mut pods = Vec::new();
    for b in behaviours {
        pods.push(RecordingPod::start(b).await);
    }
    let slices: String = pods
        .iter()
        .enumerate()
        .map(|(i, p)| {
            slice(
                "web",
                &format!("web-{i}"),
                p.addr.port(),
                &[p.addr.ip().to_string()],
            )
        })
        .collect();
    let manifests = format!(
        "{CLASS}{}{slices}{}",
        svc("web"),
        ingress("site", &[("a.test", "/", "Prefix", "web")])
    );
    (Wicket::start_with(&manifests, config).await, pods)
}

/// GETs `n` times; returns how many did not come back 200 with a whole body.
async fn failures(w: &Wicket, n: usize) -> usize {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut failed = 0;
    for i in 0..n {
        let req = w
            .request(Method::GET, "a.test", &format!("/r{i}"))
            .body(Full::default())
            .unwrap();
        let ok = match client.request(req).await {
            Ok(response) => {
                let status = response.status();
                let body = response.into_body().collect().await;
                status == StatusCode::OK && body.is_ok()
            }
            Err(_) => false,
        };
        if !ok {
            failed += 1;
        }
    }
    failed
}

#[tokio::test]
async fn a_pod_answering_503_is_ejected_and_stops_costing_requests() {
    let (w, pods) = three_pods(
        [Behaviour::Ok, Behaviour::Status(503), Behaviour::Ok],
        Config::local(),
    )
    .await;
    let early = failures(&w, 30).await;
    assert_eq!(early, 5, "five 503s in a row eject the pod");
    let later = failures(&w, 60).await;
    assert_eq!(later, 0, "an ejected pod gets no traffic");
    assert_eq!(pods[1].complete().len(), 5);

    // Operators can see it, and why.
    let routes = w.routes().await;
    let endpoints = routes["hosts"][0]["routes"][0]["backend"]["destination"]["endpoints"]
        .as_array()
        .unwrap()
        .clone();
    let ejected: Vec<_> = endpoints
        .iter()
        .filter(|e| !e["ejection"].is_null())
        .collect();
    assert_eq!(ejected.len(), 1, "{endpoints:#?}");
    assert_eq!(ejected[0]["address"], pods[1].addr.to_string());
    assert_eq!(ejected[0]["ejection"]["reason"]["kind"], "status");
    assert_eq!(ejected[0]["ejection"]["reason"]["status"], 503);
    let explain = w
        .admin_get("/debug/explain?host=a.test&path=/&format=text")
        .await
        .body;
    assert!(
        explain.contains("ejected after 5 gateway failures in a row"),
        "{explain}"
    );
    let metrics = w.admin_get("/metrics").await.body;
    assert!(
        metrics.contains(&format!(
            "wicket_endpoint_ejected{{backend=\"default/web:80\",endpoint=\"{}\",reason=\"503\"}} 1",
            pods[1].addr
        )),
        "{metrics}"
    );
    assert!(metrics.contains("wicket_endpoint_ejections_total{backend=\"default/web:80\"} 1"));
    w.stop().await;
}

#[tokio::test]
async fn a_pod_that_cuts_its_responses_short_is_ejected() {
    let (w, _pods) = three_pods(
        [Behaviour::Ok, Behaviour::Ok, Behaviour::CutBody],
        Config::local(),
    )
    .await;
    let early = failures(&w, 30).await;
    assert!((1..=5).contains(&early), "{early} failures before ejection");
    assert_eq!(failures(&w, 60).await, 0);
    w.stop().await;
}

#[tokio::test]
async fn an_ejected_pod_gets_a_trial_and_comes_back_when_healthy() {
    let mut config = Config::local();
    config.outliers = OutlierSettings {
        base_ejection: Duration::from_millis(300),
        ..OutlierSettings::default()
    };
    let (w, pods) = three_pods(
        [Behaviour::Ok, Behaviour::Status(502), Behaviour::Ok],
        config,
    )
    .await;
    failures(&w, 20).await;
    let seen = pods[1].complete().len();
    assert_eq!(seen, 5);
    pods[1].set(Behaviour::Ok);
    // After the ejection, one trial request; it succeeds, and the pod is back in turn.
    eventually("the healed pod back in rotation", || async {
        failures(&w, 6).await;
        (pods[1].complete().len() >= seen + 2).then_some(())
    })
    .await;
    let routes = w.routes().await;
    let endpoints = &routes["hosts"][0]["routes"][0]["backend"]["destination"]["endpoints"];
    assert!(endpoints
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["ejection"].is_null()));
    w.stop().await;
}

#[tokio::test]
async fn idempotent_requests_reset_by_a_pod_are_retried_elsewhere() {
    let mut config = Config::local();
    // Keep the resetting pod in rotation: every request must still succeed by retries.
    config.outliers.consecutive_failures = 0;
    let (w, pods) = three_pods([Behaviour::Ok, Behaviour::Reset, Behaviour::Ok], config).await;
    assert_eq!(
        failures(&w, 30).await,
        0,
        "every GET succeeds on another pod"
    );
    assert!(
        pods[1].complete().len() >= 5,
        "the resetting pod did get requests"
    );
    let metrics = w.admin_get("/metrics").await.body;
    let retries: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wicket_upstream_retries_total{backend=\"default/web:80\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert_eq!(retries, pods[1].complete().len(), "one retry per reset");
    w.stop().await;
}

#[tokio::test]
async fn a_post_that_reached_a_pod_is_never_sent_again() {
    let mut config = Config::local();
    config.outliers.consecutive_failures = 0;
    let (w, pods) = three_pods(
        [Behaviour::Reset, Behaviour::Reset, Behaviour::Reset],
        config,
    )
    .await;
    let reply = w
        .send(
            w.request(Method::POST, "a.test", "/orders")
                .body(Full::new(Bytes::from_static(b"buy one")))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let reached: usize = pods.iter().map(|p| p.complete().len()).sum();
    assert_eq!(reached, 1, "the POST reached exactly one pod, once");
    // A GET is retried, up to three endpoints in all.
    let reply = w.get("a.test", "/orders").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let reached: usize = pods.iter().map(|p| p.complete().len()).sum();
    assert_eq!(reached, 1 + 3);
    w.stop().await;
}
