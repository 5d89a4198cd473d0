//! Cluster mode end to end: the real `kube::Client` and kube-runtime watchers against the
//! API server double in tests/support/apiserver.rs, echo pods as the endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{json, Value};
use support::apiserver::ApiServer;
use support::*;

/// A world with Service `web` on `pods` and Ingress `site` for a.test.
async fn api_with_site(pods: &[wicket::echo::EchoServer]) -> ApiServer {
    let api = ApiServer::start().await;
    api.apply_yaml(&site(pods));
    api
}

fn slice_yaml(pods: &[wicket::echo::EchoServer]) -> String {
    slice("web", "web-slice", pods[0].addr.port(), &ips(pods))
}

/// Sends GETs to a.test from `clients` loops until `stop`; returns (ok, failed) counts.
fn load(
    w: &Wicket,
    clients: usize,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    tokio::sync::watch::Sender<bool>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let url = format!("http://{}/", w.http);
        let (ok, failed, stopped) = (ok.clone(), failed.clone(), stopped.clone());
        tasks.push(tokio::spawn(async move {
            while !*stopped.borrow() {
                let req = http::Request::get(&url)
                    .header("host", "a.test")
                    .body(http_body_util::Full::default())
                    .unwrap();
                match client.request(req).await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    (ok, failed, stop, tasks)
}

#[tokio::test]
async fn readiness_waits_until_every_kind_is_listed_and_the_first_table_is_complete() {
    let pods = pods("web", 1).await;
    let api = api_with_site(&pods).await;
    api.fail_lists("EndpointSlice", true);
    let w = Wicket::launch_cluster(&api, "a", |_| {}).await;

    // Ingresses and Services are listed, slices are not: nothing is published yet.
    eventually("the slice list to be refused", || async {
        (api.lists("EndpointSlice") >= 1 && api.lists("Ingress") >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        w.admin_get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(w.generation(), 0, "a partial first table was published");

    api.fail_lists("EndpointSlice", false);
    w.ready().await;
    // The first table published already has the endpoints.
    assert_eq!(w.generation(), 1);
    let r = w.get("a.test", "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.pod(), "web-0");
    w.stop().await;
}

#[tokio::test]
async fn an_endpoint_slice_change_reaches_the_proxy_quickly() {
    let blue = pods("blue", 1).await;
    let green = pods("green", 1).await;
    let api = api_with_site(&blue).await;
    let w = Wicket::start_cluster(&api, "a").await;
    assert_eq!(w.get("a.test", "/").await.pod(), "blue-0");

    // Alternate the slice between the two pods; time from the watch event leaving the API
    // server to the first request answered by the new pod.
    let mut latencies = Vec::new();
    for trial in 0..100 {
        let (to, name) = if trial % 2 == 0 {
            (&green, "green-0")
        } else {
            (&blue, "blue-0")
        };
        let rv = api.apply_yaml(&slice_yaml(to));
        let sent = api.event_time(rv).unwrap();
        // Poll every millisecond (`eventually` polls too slowly to measure this).
        let answered = loop {
            if w.get("a.test", "/").await.pod() == name {
                break Instant::now();
            }
            assert!(
                sent.elapsed() < DEADLINE,
                "trial {trial}: the new endpoint never answered"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        latencies.push(answered - sent);
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "EndpointSlice watch event -> first request on the new endpoint, 100 trials: p50 {p50:?}, p99 {p99:?}, max {:?}",
        latencies.last().unwrap()
    );
    w.stop().await;
}

#[tokio::test]
async fn the_api_server_going_away_fails_no_request_and_the_table_catches_up_after() {
    let blue = pods("blue", 1).await;
    let green = pods("green", 1).await;
    let api = api_with_site(&blue).await;
    let w = Wicket::start_cluster(&api, "a").await;

    let (ok, failed, stop, tasks) = load(&w, 4);
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.set_down(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        w.admin_get("/readyz").await.status,
        StatusCode::OK,
        "stays ready during the outage"
    );
    // Changed while wicket cannot see it.
    api.apply_yaml(&slice_yaml(&green));
    api.set_down(false);
    eventually("the change made during the outage", || async {
        (w.get("a.test", "/").await.pod() == "green-0").then_some(())
    })
    .await;
    stop.send_replace(true);
    for t in tasks {
        t.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("during a 3 s API outage: {ok} requests answered, {failed} failed");
    assert!(ok > 100, "the load ran ({ok} requests)");
    assert_eq!(failed, 0);
    w.stop().await;
}

#[tokio::test]
async fn objects_deleted_during_an_outage_disappear_after_the_relist_with_no_empty_table_between() {
    let pods = pods("web", 1).await;
    let api = api_with_site(&pods).await;
    api.apply_yaml(&ingress("other", &[("b.test", "/", "Prefix", "web")]));
    let w = Wicket::start_cluster(&api, "a").await;
    assert_eq!(w.get("b.test", "/").await.status, StatusCode::OK);
    let lists_before = api.lists("Ingress");

    let (ok, failed, stop, tasks) = load(&w, 2);
    api.set_down(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(api.delete("Ingress", "default", "other"));
    // The history of the deletion is gone: only a re-list can tell.
    api.compact();
    api.set_down(false);
    eventually("b.test to be gone", || async {
        (w.get("b.test", "/").await.status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    stop.send_replace(true);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(api.lists("Ingress") > lists_before, "a re-list happened");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "a.test never failed ({} ok)",
        ok.load(Ordering::Relaxed)
    );
    w.stop().await;
}

#[tokio::test]
async fn a_watch_stream_that_drops_midway_resumes_without_a_relist() {
    let blue = pods("blue", 1).await;
    let green = pods("green", 1).await;
    let api = api_with_site(&blue).await;
    let w = Wicket::start_cluster(&api, "a").await;
    let lists_before = api.lists("EndpointSlice");
    api.drop_watches();
    api.apply_yaml(&slice_yaml(&green));
    eventually("the change after the stream dropped", || async {
        (w.get("a.test", "/").await.pod() == "green-0").then_some(())
    })
    .await;
    assert_eq!(
        api.lists("EndpointSlice"),
        lists_before,
        "resumed from its resourceVersion"
    );
    w.stop().await;
}

fn status_of(api: &ApiServer, name: &str) -> Value {
    api.get("Ingress", "default", name).unwrap()["status"]["loadBalancer"]["ingress"].clone()
}

fn status_writes(api: &ApiServer) -> Vec<support::apiserver::Write> {
    api.writes()
        .into_iter()
        .filter(|w| w.resource == "ingresses" && w.subresource.as_deref() == Some("status"))
        .collect()
}

fn holder(api: &ApiServer) -> Option<String> {
    api.get("Lease", "ingress", "wicket-leader")
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn only_the_leader_writes_status_and_another_replica_takes_over_when_it_stops_renewing() {
    let pods = pods("web", 1).await;
    let api = api_with_site(&pods).await;
    let a = Wicket::start_cluster(&api, "a").await;
    let b = Wicket::start_cluster(&api, "b").await;

    let want = json!([{ "ip": PUBLISHED_IP }]);
    eventually("the status of site", || async {
        (status_of(&api, "site") == want).then_some(())
    })
    .await;
    let leader = holder(&api).unwrap();
    let writers: Vec<String> = status_writes(&api)
        .into_iter()
        .map(|w| w.instance)
        .collect();
    assert_eq!(writers, vec![leader.clone()], "one write, by the leader");

    // The leader loses its path to the API server; the other takes over after the lease
    // duration and writes the status of a new Ingress.
    let follower = if leader == "a" { "b" } else { "a" };
    api.partition(&leader, true);
    let cut = Instant::now();
    api.apply_yaml(&ingress("late", &[("late.test", "/", "Prefix", "web")]));
    eventually("the takeover", || async {
        (holder(&api).as_deref() == Some(follower)).then_some(())
    })
    .await;
    let takeover = cut.elapsed();
    eventually("the status of late", || async {
        (status_of(&api, "late") == want).then_some(())
    })
    .await;
    eprintln!("takeover {takeover:?} after the leader stopped renewing (lease {LEASE:?})");
    assert!(takeover < LEASE * 2, "took {takeover:?}");

    // The old leader is back: it sees the Lease renewed by the new one and stays quiet.
    api.partition(&leader, false);
    api.apply_yaml(&ingress("later", &[("later.test", "/", "Prefix", "web")]));
    eventually("the status of later", || async {
        (status_of(&api, "later") == want).then_some(())
    })
    .await;
    tokio::time::sleep(LEASE).await;
    let after_cut: Vec<String> = status_writes(&api)
        .into_iter()
        .filter(|w| w.at > cut)
        .map(|w| w.instance)
        .collect();
    assert!(
        !after_cut.is_empty() && after_cut.iter().all(|i| i == follower),
        "{after_cut:?} {:?}",
        api.writes()
            .into_iter()
            .map(|w| (
                w.at.saturating_duration_since(cut),
                w.instance,
                w.resource,
                w.method,
                w.body["spec"]["holderIdentity"].clone(),
                w.name
            ))
            .collect::<Vec<_>>()
    );
    assert_eq!(holder(&api).as_deref(), Some(follower));

    // A leader that shuts down releases the Lease: the other takes over at once.
    let (new_leader, old_leader) = if follower == "a" { (a, b) } else { (b, a) };
    let stopped = Instant::now();
    new_leader.stop().await;
    eventually("the takeover after a release", || async {
        (holder(&api).as_deref() == Some(leader.as_str())).then_some(())
    })
    .await;
    let released = stopped.elapsed();
    eprintln!("takeover {released:?} after the leader released the Lease");
    assert!(released < LEASE, "took {released:?}");
    old_leader.stop().await;
}

#[tokio::test]
async fn replicas_started_together_elect_exactly_one_leader_and_write_status_once() {
    let pods = pods("web", 1).await;
    let api = api_with_site(&pods).await;
    let (a, b, c) = tokio::join!(
        Wicket::start_cluster(&api, "a"),
        Wicket::start_cluster(&api, "b"),
        Wicket::start_cluster(&api, "c")
    );
    let want = json!([{ "ip": PUBLISHED_IP }]);
    eventually("the status of site", || async {
        (status_of(&api, "site") == want).then_some(())
    })
    .await;
    // Several renewal rounds.
    tokio::time::sleep(LEASE).await;
    let leader = holder(&api).unwrap();
    let lease_writes: Vec<support::apiserver::Write> = api
        .writes()
        .into_iter()
        .filter(|w| w.resource == "leases")
        .collect();
    let creators: Vec<&str> = lease_writes
        .iter()
        .filter(|w| w.method == http::Method::POST)
        .map(|w| w.instance.as_str())
        .collect();
    assert!(creators.contains(&leader.as_str()), "{creators:?}");
    assert!(
        lease_writes
            .iter()
            .filter(|w| w.method == http::Method::PUT)
            .all(|w| w.instance == leader),
        "only the leader renews: {:?}",
        lease_writes
            .iter()
            .map(|w| (&w.instance, &w.method))
            .collect::<Vec<_>>()
    );
    let writers: Vec<String> = status_writes(&api)
        .into_iter()
        .map(|w| w.instance)
        .collect();
    assert_eq!(writers, vec![leader], "one status write, by the leader");
    for w in [a, b, c] {
        w.stop().await;
    }
}

#[tokio::test]
async fn status_is_cleared_when_an_ingress_stops_being_ours_and_left_alone_if_another_controller_wrote_it(
) {
    let pods = pods("web", 1).await;
    let api = api_with_site(&pods).await;
    api.apply_yaml(
        &ingress("theirs", &[("t.test", "/", "Prefix", "web")])
            .replace("ingressClassName: wicket", "ingressClassName: nginx"),
    );
    let mut theirs = api.get("Ingress", "default", "theirs").unwrap();
    theirs["status"] =
        json!({ "loadBalancer": { "ingress": [{ "hostname": "nginx.example.com" }] } });
    api.apply(theirs);
    let w = Wicket::start_cluster(&api, "a").await;
    let want = json!([{ "ip": PUBLISHED_IP }]);
    eventually("the status of site", || async {
        (status_of(&api, "site") == want).then_some(())
    })
    .await;

    let mut site = api.get("Ingress", "default", "site").unwrap();
    site["spec"]["ingressClassName"] = json!("nginx");
    api.apply(site);
    eventually("site's status to be cleared", || async {
        status_of(&api, "site").is_null().then_some(())
    })
    .await;
    assert_eq!(
        status_of(&api, "theirs"),
        json!([{ "hostname": "nginx.example.com" }]),
        "another controller's status is not ours to touch"
    );
    assert!(status_writes(&api).iter().all(|w| w.name == "site"));
    w.stop().await;
}

#[tokio::test]
async fn the_publish_service_load_balancer_address_is_published() {
    let pods = pods("web", 1).await;
    let api = api_with_site(&pods).await;
    api.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "wicket", "namespace": "ingress" },
        "spec": { "type": "LoadBalancer", "clusterIP": "10.96.0.20", "ports": [{ "name": "http", "port": 80 }] },
        "status": { "loadBalancer": {} },
    }));
    let w = Wicket::launch_cluster(&api, "a", |o| {
        o.namespaces = vec!["default".into()];
        o.publish = wicket::controller::cluster::status::PublishFrom::Service(
            wicket::controller::index::Key::new("ingress", "wicket"),
        );
    })
    .await;
    w.ready().await;
    // No load balancer yet: the cluster IP.
    eventually("the cluster IP", || async {
        (status_of(&api, "site") == json!([{ "ip": "10.96.0.20" }])).then_some(())
    })
    .await;
    // The cloud assigns a hostname: it replaces the cluster IP.
    let mut svc = api.get("Service", "ingress", "wicket").unwrap();
    svc["status"] =
        json!({ "loadBalancer": { "ingress": [{ "hostname": "lb-123.example.com" }] } });
    api.apply(svc);
    eventually("the load balancer hostname", || async {
        (status_of(&api, "site") == json!([{ "hostname": "lb-123.example.com" }])).then_some(())
    })
    .await;
    w.stop().await;
}

fn events_for(api: &ApiServer, name: &str) -> Vec<Value> {
    api.list("Event")
        .into_iter()
        .filter(|e| e["regarding"]["name"] == name)
        .collect()
}

#[tokio::test]
async fn an_invalid_ingress_gets_one_warning_event_not_one_per_resync() {
    let pods = pods("web", 1).await;
    let api = api_with_site(&pods).await;
    api.apply_yaml(&ingress("broken", &[("b.test", "/", "Prefix", "missing")]));
    let w = Wicket::start_cluster(&api, "a").await;
    let uid = api.get("Ingress", "default", "broken").unwrap()["metadata"]["uid"].clone();

    let warning = eventually("the warning", || async {
        events_for(&api, "broken")
            .into_iter()
            .find(|e| e["type"] == "Warning")
    })
    .await;
    assert_eq!(warning["reason"], "BackendNotFound");
    assert_eq!(warning["regarding"]["kind"], "Ingress");
    assert_eq!(
        warning["regarding"]["uid"], uid,
        "kubectl describe finds events by uid"
    );
    assert!(
        warning["note"].as_str().unwrap().contains("missing"),
        "{warning}"
    );
    assert_eq!(
        warning["reportingController"],
        "wicket.dev/ingress-controller"
    );

    // Rebuilds, a dropped watch and a full re-list: no repeat.
    for i in 0..5 {
        api.apply_yaml(&slice(
            "web",
            "web-slice",
            pods[0].addr.port() + (i % 2),
            &ips(&pods),
        ));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let lists = api.lists("Ingress");
    api.drop_watches();
    api.set_down(true);
    api.compact();
    api.set_down(false);
    eventually("the re-list", || async {
        (api.lists("Ingress") > lists).then_some(())
    })
    .await;
    let before = w.generation();
    api.apply_yaml(&slice(
        "web",
        "web-slice",
        pods[0].addr.port() + 1,
        &ips(&pods),
    ));
    eventually("a rebuild after the re-list", || async {
        (w.generation() > before).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warnings: Vec<Value> = events_for(&api, "broken")
        .into_iter()
        .filter(|e| e["type"] == "Warning")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");

    // Each admitted Ingress got one Normal Sync event.
    for name in ["site", "broken"] {
        let syncs: Vec<Value> = events_for(&api, name)
            .into_iter()
            .filter(|e| e["reason"] == "Sync")
            .collect();
        assert_eq!(syncs.len(), 1, "{name}: {syncs:#?}");
        assert_eq!(syncs[0]["type"], "Normal");
    }
    // The only Event writes are creations (no per-resync patches).
    assert!(api
        .writes()
        .iter()
        .filter(|w| w.resource == "events")
        .all(|w| w.method == http::Method::POST));
    w.stop().await;
}

#[tokio::test]
async fn only_tls_secrets_are_watched() {
    let pods = pods("web", 1).await;
    let api = api_with_site(&pods).await;
    api.apply(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": { "name": "db-password" }, "data": { "password": "aHVudGVyMg==" },
    }));
    let cert = test_cert(&["a.test"]);
    api.apply_yaml(&tls_secret("a-tls", &cert));
    let w = Wicket::launch_cluster(&api, "a", |_| {}).await;
    w.ready().await;
    // The Ingress names the Opaque Secret: wicket never received it, so it is "not found".
    let mut site = api.get("Ingress", "default", "site").unwrap();
    site["spec"]["tls"] = json!([{ "hosts": ["a.test"], "secretName": "a-tls" }, { "hosts": ["b.test"], "secretName": "db-password" }]);
    api.apply(site);
    let problems = eventually("the TLS problem", || async {
        let routes = w.routes().await;
        let problems = routes["problems"].as_array().cloned().unwrap_or_default();
        problems
            .iter()
            .any(|p| p["reason"] == "TLSSecretNotFound")
            .then_some(problems)
    })
    .await;
    let text = serde_json::to_string(&problems).unwrap();
    assert!(text.contains("db-password"), "{text}");
    assert!(
        !text.contains("a-tls"),
        "the TLS Secret was not usable: {text}"
    );
    let routes = w.routes().await;
    assert!(
        routes.to_string().contains("default/a-tls"),
        "a.test is served from a-tls: {routes}"
    );
    w.stop().await;
}

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn against_a_real_cluster_it_lists_everything_and_turns_ready() {
    let client = wicket::controller::cluster::connect(Duration::from_secs(10))
        .await
        .expect("a cluster from KUBECONFIG");
    let options = wicket::controller::cluster::ClusterOptions {
        client,
        namespaces: Vec::new(),
        publish: wicket::controller::cluster::status::PublishFrom::Nothing,
        election: wicket::controller::cluster::lease::ElectionSettings {
            name: format!("wicket-test-{}", std::process::id()),
            namespace: "default".into(),
            identity: format!("test-{}", std::process::id()),
            lease_duration: Duration::from_secs(15),
        },
        controller_name: "wicket.dev/ingress-controller-test".into(),
        gateway_api_recheck: Some(wicket::controller::cluster::GATEWAY_API_RECHECK),
    };
    let running = wicket::app::start(
        wicket::app::Config::local(),
        wicket::app::Source::Cluster(Box::new(options)),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !running.snapshot().load().is_ready() {
        assert!(Instant::now() < deadline, "not ready after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.shutdown().await;
}

#[tokio::test]
async fn custom_headers_follow_their_config_map() {
    let pods = pods("web", 1).await;
    let api = api_with_site(&pods).await;
    let mut site = api.get("Ingress", "default", "site").unwrap();
    site["metadata"]["annotations"] =
        json!({ "nginx.ingress.kubernetes.io/custom-headers": "site-headers" });
    api.apply(site);
    let mut config = wicket::app::Config::local();
    config.settings.allowed_response_headers = vec!["x-frame-options".into()];
    let w = Wicket::launch_cluster_with(&api, "a", config, |_| {}).await;
    w.ready().await;
    // No ConfigMap yet: the routes answer 503 rather than go without the headers.
    assert_eq!(
        w.get("a.test", "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    api.apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "site-headers", "namespace": "default" },
        "data": { "X-Frame-Options": "DENY" },
    }));
    eventually("the header", || async {
        let r = w.get("a.test", "/").await;
        (r.status == StatusCode::OK
            && r.headers
                .get("x-frame-options")
                .is_some_and(|v| v == "DENY"))
        .then_some(())
    })
    .await;
    api.apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "site-headers", "namespace": "default" },
        "data": { "X-Frame-Options": "SAMEORIGIN" },
    }));
    eventually("the new value", || async {
        let r = w.get("a.test", "/").await;
        r.headers
            .get("x-frame-options")
            .is_some_and(|v| v == "SAMEORIGIN")
            .then_some(())
    })
    .await;
    w.stop().await;
}

#[tokio::test]
async fn basic_auth_follows_the_one_secret_its_ingress_names() {
    let pods = pods("web", 1).await;
    let api = api_with_site(&pods).await;
    let htpasswd = |line: &str| {
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": { "name": "htpasswd", "namespace": "default" },
            "data": { "auth": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, line) },
        })
    };
    api.apply(htpasswd("foo:{PLAIN}bar"));
    let mut site = api.get("Ingress", "default", "site").unwrap();
    site["metadata"]["annotations"] = json!({
        "nginx.ingress.kubernetes.io/auth-type": "basic",
        "nginx.ingress.kubernetes.io/auth-secret": "htpasswd",
    });
    api.apply(site);
    let w = Wicket::launch_cluster(&api, "a", |_| {}).await;
    w.ready().await;
    let with = |user: &'static str, password: &'static str| {
        let w = &w;
        async move {
            let value = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{user}:{password}"),
            );
            w.send(
                w.request(http::Method::GET, "a.test", "/")
                    .header("authorization", format!("Basic {value}"))
                    .body(http_body_util::Full::default())
                    .unwrap(),
            )
            .await
            .status
        }
    };
    // The first table already has the users: no 503 while the Secret was being read.
    assert_eq!(w.get("a.test", "/").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(with("foo", "bar").await, StatusCode::OK);
    // A new password is used from the next table on.
    api.apply(htpasswd("foo:{PLAIN}changed"));
    eventually("the new password", || async {
        (with("foo", "changed").await == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(with("foo", "bar").await, StatusCode::UNAUTHORIZED);
    // Deleted: the route answers 503, never opens.
    assert!(api.delete("Secret", "default", "htpasswd"));
    eventually("the 503", || async {
        (with("foo", "changed").await == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    assert_eq!(
        w.get("a.test", "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let routes = w.routes().await;
    assert!(routes.to_string().contains("AuthSecretInvalid"), "{routes}");
    // The fail-closed route is a Warning Event on the Ingress (kubectl describe shows it).
    eventually("the Warning Event", || async {
        events_for(&api, "site")
            .iter()
            .any(|e| e["reason"] == "AuthSecretInvalid" && e["type"] == "Warning")
            .then_some(())
    })
    .await;
    w.stop().await;
}

#[tokio::test]
async fn migrate_reads_the_cluster_with_the_secrets_and_config_map_it_names() {
    let api = ApiServer::start().await;
    api.apply_yaml(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/migrate/00-cluster.yaml"
        ))
        .unwrap(),
    );
    for file in [
        "04-admin.yaml",
        "11-forgotten-secret.yaml",
        "14-other-class.yaml",
    ] {
        api.apply_yaml(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/migrate")
                    .join(file),
            )
            .unwrap(),
        );
    }
    let (index, config) = wicket::migrate::load_cluster(
        api.client("migrate"),
        Some("ingress-nginx/ingress-nginx-controller"),
    )
    .await
    .unwrap();
    // Only the Secret an Ingress names was read (and the one that does not exist tried).
    assert_eq!(
        index
            .named_secrets
            .keys()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["shop/admin-htpasswd"]
    );
    assert!(index.secrets.is_empty());
    let report = wicket::migrate::migrate(
        &index,
        &wicket::controller::Settings::default(),
        "nginx",
        config.as_ref(),
    );
    let names: Vec<&str> = report.ingresses.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["admin", "forgotten-secret"]);
    assert!(
        report.ingresses[0].refused.is_none(),
        "the htpasswd Secret was read"
    );
    assert!(report.ingresses[1].refused.is_some());
    assert!(report.refused);
    assert!(report
        .config
        .iter()
        .any(|s| s.flags.iter().any(|f| f == "--max-request-body=20m")));
}

/// Service web over `pods`, two in zone-a and the rest in zone-b, hinted for their zones.
fn zoned_site(pods: &[wicket::echo::EchoServer]) -> String {
    let mut s = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  selector: {{app: web}}\n  ports: [{{name: http, port: 80}}]\n  trafficDistribution: PreferSameZone\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports:\n- {{name: http, port: {}}}\nendpoints:\n",
        pods[0].addr.port()
    );
    for (i, pod) in pods.iter().enumerate() {
        let zone = if i < 2 { "zone-a" } else { "zone-b" };
        s.push_str(&format!(
            "- addresses: [\"{}\"]\n  nodeName: node-{i}\n  zone: {zone}\n  hints: {{forZones: [{{name: {zone}}}]}}\n",
            pod.addr.ip()
        ));
    }
    format!(
        "{CLASS}{s}{}",
        ingress("site", &[("a.test", "/", "Prefix", "web")])
    )
}

fn on_node(node: &str) -> wicket::app::Config {
    let mut config = wicket::app::Config::local();
    config.settings.locality = wicket::model::Locality::new(Some(node), None, "no --zone given");
    config
}

#[tokio::test]
async fn the_zone_is_read_from_this_replicas_node_and_keeps_traffic_in_it() {
    let pods = pods("web", 4).await;
    let api = ApiServer::start().await;
    api.apply_yaml(&zoned_site(&pods));
    api.apply(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-2", "labels": {"topology.kubernetes.io/zone": "zone-b"}}
    }));
    let w = Wicket::launch_cluster_with(&api, "a", on_node("node-2"), |_| {}).await;
    w.ready().await;
    let routes = w.routes().await;
    assert_eq!(routes["locality"]["zone"], "zone-b");
    assert_eq!(
        routes["locality"]["zoneSource"],
        "label topology.kubernetes.io/zone of Node node-2"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let r = w.get("a.test", "/").await;
        assert_eq!(r.status, StatusCode::OK);
        seen.insert(r.pod().to_owned());
    }
    assert_eq!(seen, ["web-2".to_owned(), "web-3".to_owned()].into());
    // The dashboard says cluster mode, and that this (only) replica leads once it holds
    // the Lease.
    eventually("the dashboard to show the leader", || async {
        let view: Value = serde_json::from_str(&w.admin_get("/?format=json").await.body).unwrap();
        (view["mode"] == "cluster" && view["leader"] == true).then_some(())
    })
    .await;
    w.stop().await;
}

#[tokio::test]
async fn a_node_that_cannot_be_read_turns_the_zone_preference_off_and_says_why() {
    let pods = pods("web", 4).await;
    let api = ApiServer::start().await;
    api.apply_yaml(&zoned_site(&pods));
    // No Node object: the read answers 404.
    let w = Wicket::launch_cluster_with(&api, "a", on_node("node-9"), |_| {}).await;
    w.ready().await;
    let routes = w.routes().await;
    assert!(routes["locality"]["zone"].is_null());
    let source = routes["locality"]["zoneSource"].as_str().unwrap();
    assert!(
        source.starts_with("Node node-9 could not be read"),
        "{source}"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(w.get("a.test", "/").await.pod().to_owned());
    }
    assert_eq!(seen.len(), 4, "every endpoint takes traffic: {seen:?}");
    let why = w
        .admin_get("/debug/explain?host=a.test&path=/&format=text")
        .await
        .body;
    assert!(
        why.contains("wicket does not know its zone (Node node-9 could not be read"),
        "{why}"
    );
    w.stop().await;
}
