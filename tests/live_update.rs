//! Manifests change while traffic flows: no reload, no failed request on routes that did
//! not change, and a request in flight finishes on the snapshot it started with.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::Notify;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_change_under_load_with_zero_failed_requests_on_unchanged_routes() {
    let web = pods("web", 2).await;
    let more_web = pods("webnew", 1).await;
    let api = pods("api", 1).await;
    let base = format!(
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
    let w = Wicket::start(&base).await;

    // Steady load on a.test from four concurrent clients.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let url = format!("http://{}/page", w.http);
        load.push(tokio::spawn(async move {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            while !stop.load(Ordering::Relaxed) {
                let req = Request::get(&url)
                    .header("host", "a.test")
                    .body(Full::default())
                    .unwrap();
                let good = match client.request(req).await {
                    Ok(r) => {
                        let status = r.status();
                        let pod = r.headers().get("x-pod").cloned();
                        let body = r.into_body().collect().await;
                        status == StatusCode::OK && body.is_ok() && pod.is_some()
                    }
                    Err(_) => false,
                };
                if good { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let served = || ok.load(Ordering::Relaxed);
    let wait_for_traffic = |after: usize| {
        let ok = ok.clone();
        async move {
            eventually("traffic", || async {
                (ok.load(Ordering::Relaxed) > after + 20).then_some(())
            })
            .await;
        }
    };

    let extra = ingress("extra", &[("c.test", "/", "Prefix", "api")]);
    // 1. A new route in a new file.
    w.apply("extra.yaml", &extra).await;
    assert_eq!(w.get("c.test", "/").await.pod(), "api-0");
    wait_for_traffic(served()).await;
    // 2. An existing route moves to another Service.
    w.apply(
        "main.yaml",
        &base.replace("name: api, port", "name: web, port"),
    )
    .await;
    assert!(w.get("b.test", "/").await.pod().starts_with("web-"));
    wait_for_traffic(served()).await;
    // 3. The new file breaks: its routes stay as they were.
    w.apply(
        "extra.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: [oops\n",
    )
    .await;
    assert_eq!(w.get("c.test", "/").await.pod(), "api-0");
    let routes = w.routes().await;
    assert!(routes["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["object"]["name"] == "extra.yaml"));
    wait_for_traffic(served()).await;
    // 4. An invalid Ingress in a third file: a Problem, nothing else changes.
    w.apply(
        "bad.yaml",
        &ingress("bad", &[("d.test", "no-slash", "Prefix", "web")]),
    )
    .await;
    wait_for_traffic(served()).await;
    // 5. More pods for a.test.
    w.apply(
        "pods.yaml",
        &slice("web", "web-more", more_web[0].addr.port(), &ips(&more_web)),
    )
    .await;
    wait_for_traffic(served()).await;
    // 6. The new file goes away, and its route with it.
    let before = w.generation();
    std::fs::remove_file(w.path().join("extra.yaml")).unwrap();
    eventually("extra.yaml removal", || async {
        (w.generation() > before).then_some(())
    })
    .await;
    assert_eq!(w.get("c.test", "/").await.status, StatusCode::NOT_FOUND);
    wait_for_traffic(served()).await;

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} failed requests out of {}", ok + failed);
    assert!(
        ok > 120,
        "only {ok} requests were served during the changes"
    );
    // Traffic reached the added pod too.
    assert!(more_web[0].connections() > 0);
    w.stop().await;
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_snapshot_it_started_with() {
    // A pod that holds its response until released.
    let ip = format!("127.{}.{}.3", fastrand::u8(1..=250), fastrand::u8(1..=250));
    let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    {
        let (received, release) = (received.clone(), release.clone());
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(move |_req| {
                let (received, release) = (received.clone(), release.clone());
                async move {
                    received.notify_one();
                    release.notified().await;
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"late but fine"),
                    )))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
    let manifests = format!(
        "{CLASS}---\napiVersion: v1\nkind: Service\nmetadata: {{name: slow}}\nspec:\n  ports: [{{name: http, port: 80}}]\n{}{}",
        slice("slow", "slow-1", addr.port(), &[addr.ip().to_string()]),
        ingress("site", &[("slow.test", "/", "Prefix", "slow")])
    );
    let w = Arc::new(Wicket::start(&manifests).await);
    let in_flight = {
        let w = w.clone();
        tokio::spawn(async move { w.get("slow.test", "/").await })
    };
    received.notified().await;
    // The route disappears while the request is at the pod.
    w.apply("main.yaml", CLASS).await;
    assert_eq!(w.get("slow.test", "/").await.status, StatusCode::NOT_FOUND);
    release.notify_one();
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "late but fine");
}
