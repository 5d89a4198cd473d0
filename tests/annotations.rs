//! ingress-nginx annotations as a migrating user meets them: each sends the request a user
//! would and asserts what the client and the pod see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use support::pod::{Behaviour, RecordingPod};
use support::*;
use wicket::app::Config;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

fn a(name: &str) -> String {
    format!("{NGINX}{name}")
}

/// Service `web` over `pods` (each its own slice) and `ingresses`.
async fn world(pods: &[&RecordingPod], ingresses: &[String], config: Config) -> Wicket {
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
    let manifests = format!("{CLASS}{}{slices}{}", svc("web"), ingresses.concat());
    Wicket::start_with(&manifests, config).await
}

async fn post(w: &Wicket, host: &str, path: &str, size: usize) -> Reply {
    w.send(
        w.request(Method::POST, host, path)
            .body(Full::new(Bytes::from(vec![b'x'; size])))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn proxy_body_size_is_per_ingress() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.proxy.max_request_body = Some(1024);
    let w = world(
        &[&pod],
        &[
            annotated(
                "uploads",
                &[(&a("proxy-body-size"), "8k")],
                &[("up.test", "/", "Prefix", "web")],
            ),
            annotated(
                "open",
                &[(&a("proxy-body-size"), "0")],
                &[("open.test", "/", "Prefix", "web")],
            ),
            ingress("plain", &[("plain.test", "/", "Prefix", "web")]),
        ],
        config,
    )
    .await;
    assert_eq!(post(&w, "up.test", "/", 4096).await.status, StatusCode::OK);
    assert_eq!(
        post(&w, "up.test", "/", 9000).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        post(&w, "open.test", "/", 2 << 20).await.status,
        StatusCode::OK
    );
    assert_eq!(
        post(&w, "plain.test", "/", 4096).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    w.stop().await;
}

#[tokio::test]
async fn proxy_read_timeout_is_per_ingress() {
    let pod = RecordingPod::start(Behaviour::Slow(1500)).await;
    let w = world(
        &[&pod],
        &[
            annotated(
                "impatient",
                &[(&a("proxy-read-timeout"), "1")],
                &[("fast.test", "/", "Prefix", "web")],
            ),
            ingress("patient", &[("slow.test", "/", "Prefix", "web")]),
        ],
        Config::local(),
    )
    .await;
    assert_eq!(
        w.get("fast.test", "/").await.status,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(w.get("slow.test", "/").await.status, StatusCode::OK);
    w.stop().await;
}

#[tokio::test]
async fn proxy_next_upstream_retries_the_statuses_it_lists() {
    let failing = RecordingPod::start(Behaviour::Status(503)).await;
    let good = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    // Keep the failing pod in rotation: retries alone must hide it.
    config.outliers.consecutive_failures = 0;
    let w = world(
        &[&failing, &good],
        &[
            annotated(
                "retrying",
                &[(&a("proxy-next-upstream"), "error timeout http_503")],
                &[("retry.test", "/", "Prefix", "web")],
            ),
            ingress("plain", &[("plain.test", "/", "Prefix", "web")]),
        ],
        config,
    )
    .await;
    for i in 0..10 {
        let reply = w.get("retry.test", &format!("/{i}")).await;
        assert_eq!(reply.status, StatusCode::OK, "request {i}");
    }
    assert!(failing.complete().len() >= 4, "the 503 pod was tried");
    // Without the annotation a 503 is the pod's answer.
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(w.get("plain.test", &format!("/{i}")).await.status.as_u16());
    }
    assert!(statuses.contains(&503), "{statuses:?}");
    // A POST is not sent again unless non_idempotent is listed.
    let mut posts = Vec::new();
    for _ in 0..4 {
        posts.push(post(&w, "retry.test", "/order", 10).await.status.as_u16());
    }
    assert!(posts.contains(&503), "{posts:?}");
    w.stop().await;
}

#[tokio::test]
async fn proxy_next_upstream_off_sends_nothing_to_another_endpoint() {
    let resetting = RecordingPod::start(Behaviour::Reset).await;
    let good = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.outliers.consecutive_failures = 0;
    let w = world(
        &[&resetting, &good],
        &[
            annotated(
                "once",
                &[(&a("proxy-next-upstream"), "off")],
                &[("once.test", "/", "Prefix", "web")],
            ),
            ingress("plain", &[("plain.test", "/", "Prefix", "web")]),
        ],
        config,
    )
    .await;
    let mut once = Vec::new();
    for i in 0..6 {
        once.push(w.get("once.test", &format!("/{i}")).await.status.as_u16());
    }
    assert!(once.contains(&502), "{once:?}");
    for i in 0..6 {
        assert_eq!(
            w.get("plain.test", &format!("/{i}")).await.status,
            StatusCode::OK
        );
    }
    w.stop().await;
}

#[tokio::test]
async fn permanent_and_temporal_redirects_answer_without_the_pod() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &[&pod],
        &[
            annotated(
                "moved",
                &[(&a("permanent-redirect"), "https://new.example/landing")],
                &[("moved.test", "/", "Prefix", "web")],
            ),
            annotated(
                "relative",
                &[
                    (&a("permanent-redirect"), "/new-location"),
                    (&a("permanent-redirect-code"), "308"),
                ],
                &[("rr.test", "/", "Prefix", "web")],
            ),
            annotated(
                "kept-relative",
                &[
                    (&a("permanent-redirect"), "/new-location"),
                    (&a("relative-redirects"), "true"),
                ],
                &[("kept.test", "/", "Prefix", "web")],
            ),
            annotated(
                "both",
                &[
                    (&a("permanent-redirect"), "https://p.example"),
                    (&a("temporal-redirect"), "https://t.example/"),
                ],
                &[("both.test", "/", "Prefix", "web")],
            ),
        ],
        Config::local(),
    )
    .await;
    let reply = w.get("moved.test", "/anything?x=1").await;
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        reply.headers["location"], "https://new.example/landing",
        "the path is not appended"
    );
    let reply = w.get("rr.test", "/old").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(reply.headers["location"], "http://rr.test/new-location");
    let reply = w.get("kept.test", "/old").await;
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(reply.headers["location"], "/new-location");
    let reply = w.get("both.test", "/").await;
    assert_eq!(reply.status, StatusCode::FOUND, "temporal wins");
    assert_eq!(reply.headers["location"], "https://t.example/");
    assert!(pod.received().is_empty());
    w.stop().await;
}

#[tokio::test]
async fn force_ssl_redirect_needs_no_tls_section_and_can_keep_the_slash() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &[&pod],
        &[
            annotated(
                "forced",
                &[(&a("force-ssl-redirect"), "true")],
                &[("forced.test", "/", "Prefix", "web")],
            ),
            annotated(
                "slash",
                &[
                    (&a("force-ssl-redirect"), "true"),
                    (&a("preserve-trailing-slash"), "true"),
                ],
                &[("slash.test", "/", "Prefix", "web")],
            ),
        ],
        Config::local(),
    )
    .await;
    let reply = w.get("forced.test", "/").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(reply.headers["location"], "https://forced.test");
    let reply = w.get("forced.test", "/docs/?page=2").await;
    assert_eq!(
        reply.headers["location"],
        "https://forced.test/docs/?page=2"
    );
    let reply = w.get("slash.test", "/").await;
    assert_eq!(reply.headers["location"], "https://slash.test/");
    // ACME challenges stay on plain HTTP.
    let reply = w.get("forced.test", "/.well-known/acme-challenge/t").await;
    assert_eq!(reply.status, StatusCode::OK);
    w.stop().await;
}

#[tokio::test]
async fn upstream_vhost_is_the_host_the_pod_gets() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &[&pod],
        &[annotated(
            "vhost",
            &[(&a("upstream-vhost"), "internal.svc.local")],
            &[("a.test", "/", "Prefix", "web")],
        )],
        Config::local(),
    )
    .await;
    assert_eq!(w.get("a.test", "/").await.status, StatusCode::OK);
    let got = &pod.complete()[0];
    assert_eq!(got.header("host").as_deref(), Some("internal.svc.local"));
    assert_eq!(got.header("x-forwarded-host").as_deref(), Some("a.test"));
    w.stop().await;
}

#[tokio::test]
async fn an_access_guard_without_its_secret_blocks_the_ingress_not_the_others() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &[&pod],
        &[
            annotated(
                "admin",
                &[(&a("auth-tls-secret"), "default/client-ca")],
                &[("admin.test", "/", "Prefix", "web")],
            ),
            annotated(
                "private",
                &[(&a("auth-type"), "basic"), (&a("auth-secret"), "htpasswd")],
                &[("private.test", "/", "Prefix", "web")],
            ),
            ingress("public", &[("public.test", "/", "Prefix", "web")]),
        ],
        Config::local(),
    )
    .await;
    for host in ["admin.test", "private.test"] {
        let reply = w.get(host, "/").await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{host}: fail closed"
        );
    }
    assert_eq!(w.get("public.test", "/").await.status, StatusCode::OK);
    assert_eq!(
        pod.complete().len(),
        1,
        "nothing of the guarded hosts reached the pod"
    );
    let routes = w.routes().await;
    let problems = routes["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["reason"] == "AuthSecretInvalid"
        && p["message"].as_str().unwrap().contains("auth-tls-secret")));
    w.stop().await;
}

/// Services `web` (over `main`) and `canary` (over `canary`), and `ingresses`.
async fn canary_world(main: &RecordingPod, canary: &RecordingPod, ingresses: &[String]) -> Wicket {
    let manifests = format!(
        "{CLASS}{}{}{}{}{}",
        svc("web"),
        slice(
            "web",
            "web-1",
            main.addr.port(),
            &[main.addr.ip().to_string()]
        ),
        svc("canary"),
        slice(
            "canary",
            "canary-1",
            canary.addr.port(),
            &[canary.addr.ip().to_string()]
        ),
        ingresses.concat(),
    );
    Wicket::start(&manifests).await
}

/// Sends GET `host` `path` with `headers` and says whether the canary pod answered.
async fn to_canary(
    w: &Wicket,
    pods: [&RecordingPod; 2],
    host: &str,
    headers: &[(&str, &str)],
) -> (bool, Reply) {
    let before = pods.map(|p| p.received().len());
    let mut req = w.request(Method::GET, host, "/");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let reply = w.send(req.body(Full::default()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK, "{host} {headers:?}");
    let after = pods.map(|p| p.received().len());
    let main = after[0] - before[0];
    let canary = after[1] - before[1];
    assert_eq!(main + canary, 1, "exactly one pod answers");
    (canary == 1, reply)
}

fn canary_of(name: &str, host: &str, extra: &[(&str, &str)]) -> String {
    let mut annotations = vec![("canary", "true")];
    annotations.extend(extra.iter().copied());
    nginx_annotated(name, host, "canary", &annotations)
}

#[tokio::test]
async fn a_canary_takes_requests_by_header_cookie_and_weight_as_ingress_nginx() {
    let main = RecordingPod::start(Behaviour::Ok).await;
    let canary = RecordingPod::start(Behaviour::Ok).await;
    let hosts = [
        "h.test",
        "v.test",
        "p.test",
        "w0.test",
        "w100.test",
        "w1000.test",
        "half.test",
    ];
    let mut ingresses: Vec<String> = hosts
        .iter()
        .map(|h| ingress(&format!("main-{h}"), &[(h, "/", "Prefix", "web")]))
        .collect();
    ingresses.push(canary_of(
        "c-header",
        "h.test",
        &[
            ("canary-by-header", "CanaryByHeader"),
            ("canary-by-cookie", "Canary-By-Cookie"),
        ],
    ));
    ingresses.push(canary_of(
        "c-value",
        "v.test",
        &[
            ("canary-by-header", "CanaryByHeader"),
            ("canary-by-header-value", "DoCanary"),
            ("canary-by-header-pattern", "^Do"),
            ("canary-by-cookie", "Canary-By-Cookie"),
        ],
    ));
    ingresses.push(canary_of(
        "c-pattern",
        "p.test",
        &[
            ("canary-by-header", "CanaryByHeader"),
            ("canary-by-header-pattern", "^Do[A-Z][a-z]+y$"),
        ],
    ));
    ingresses.push(canary_of("c-w0", "w0.test", &[("canary-weight", "0")]));
    ingresses.push(canary_of(
        "c-w100",
        "w100.test",
        &[("canary-weight", "100")],
    ));
    ingresses.push(canary_of(
        "c-w1000",
        "w1000.test",
        &[("canary-weight", "1000"), ("canary-weight-total", "1000")],
    ));
    ingresses.push(canary_of(
        "c-half",
        "half.test",
        &[("canary-weight", "100"), ("canary-weight-total", "200")],
    ));
    let w = canary_world(&main, &canary, &ingresses).await;
    let pods = [&main, &canary];
    let go = |host: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let w = &w;
        async move { to_canary(w, pods, host, headers).await.0 }
    };
    // Header only: always → canary, never → main, anything else → on to the cookie.
    assert!(go("h.test", &[("CanaryByHeader", "always")]).await);
    assert!(!go("h.test", &[("CanaryByHeader", "never")]).await);
    assert!(!go("h.test", &[("CanaryByHeader", "badheadervalue")]).await);
    assert!(!go("h.test", &[]).await, "weight 0: no request by weight");
    assert!(go("h.test", &[("cookie", "Canary-By-Cookie=always")]).await);
    assert!(!go("h.test", &[("cookie", "Canary-By-Cookie=never")]).await);
    assert!(!go("h.test", &[("cookie", "Canary-By-Cookie=other")]).await);
    assert!(
        !go(
            "h.test",
            &[
                ("CanaryByHeader", "never"),
                ("cookie", "Canary-By-Cookie=always")
            ]
        )
        .await,
        "the header is consulted before the cookie"
    );
    // Header and value (the value wins over the pattern): only the value is canary.
    assert!(go("v.test", &[("CanaryByHeader", "DoCanary")]).await);
    assert!(!go("v.test", &[("CanaryByHeader", "DoSomething")]).await);
    assert!(!go("v.test", &[("CanaryByHeader", "always")]).await);
    assert!(
        go(
            "v.test",
            &[
                ("CanaryByHeader", "nope"),
                ("cookie", "Canary-By-Cookie=always")
            ]
        )
        .await,
        "a value that does not match goes on to the cookie"
    );
    // Pattern.
    assert!(go("p.test", &[("CanaryByHeader", "DoCanary")]).await);
    assert!(!go("p.test", &[("CanaryByHeader", "Docanary")]).await);
    // Weights.
    for _ in 0..20 {
        assert!(!go("w0.test", &[]).await);
        assert!(go("w100.test", &[]).await);
        assert!(go("w1000.test", &[]).await);
    }
    let mut to = 0;
    for _ in 0..200 {
        to += usize::from(go("half.test", &[]).await);
    }
    assert!(
        (60..=140).contains(&to),
        "100/200: {to} of 200 to the canary"
    );
    w.stop().await;
}

#[tokio::test]
async fn a_broken_header_pattern_keeps_requests_with_the_header_on_main() {
    let main = RecordingPod::start(Behaviour::Ok).await;
    let canary = RecordingPod::start(Behaviour::Ok).await;
    let w = canary_world(
        &main,
        &canary,
        &[
            ingress("main", &[("a.test", "/", "Prefix", "web")]),
            canary_of(
                "broken",
                "a.test",
                &[
                    ("canary-by-header", "CanaryByHeader"),
                    ("canary-by-header-pattern", "[][**da?$&*"),
                    ("canary-by-cookie", "Canary-By-Cookie"),
                ],
            ),
        ],
    )
    .await;
    let pods = [&main, &canary];
    let headers = [
        ("CanaryByHeader", "x"),
        ("cookie", "Canary-By-Cookie=always"),
    ];
    assert!(!to_canary(&w, pods, "a.test", &headers).await.0);
    // Without the header, the cookie decides.
    assert!(to_canary(&w, pods, "a.test", &headers[1..]).await.0);
    let routes = w.routes().await;
    assert!(routes["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["reason"] == "InvalidAnnotation"
            && p["message"]
                .as_str()
                .unwrap()
                .contains("canary-by-header-pattern")));
    w.stop().await;
}

#[tokio::test]
async fn a_canary_alone_serves_nothing_and_says_why() {
    let main = RecordingPod::start(Behaviour::Ok).await;
    let canary = RecordingPod::start(Behaviour::Ok).await;
    let w = canary_world(
        &main,
        &canary,
        &[
            ingress("main", &[("a.test", "/", "Prefix", "web")]),
            canary_of("lonely", "b.test", &[("canary-weight", "100")]),
            // A second canary for the same route: the older one (by name) is used.
            canary_of("a-first", "a.test", &[("canary-weight", "100")]),
            canary_of("b-second", "a.test", &[("canary-weight", "0")]),
        ],
    )
    .await;
    assert_eq!(w.get("b.test", "/").await.status, StatusCode::NOT_FOUND);
    assert!(canary.received().is_empty());
    assert!(to_canary(&w, [&main, &canary], "a.test", &[]).await.0);
    let routes = w.routes().await;
    let unused: Vec<String> = routes["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["reason"] == "CanaryUnused")
        .map(|p| p["object"].to_string() + " " + p["message"].as_str().unwrap())
        .collect();
    assert_eq!(unused.len(), 2, "{unused:?}");
    assert!(
        unused
            .iter()
            .any(|m| m.contains("lonely") && m.contains("no main Ingress")),
        "{unused:?}"
    );
    assert!(
        unused
            .iter()
            .any(|m| m.contains("b-second") && m.contains("a-first")),
        "{unused:?}"
    );
    w.stop().await;
}

#[tokio::test]
async fn a_canary_follows_the_main_ingresss_annotations_and_keeps_its_sessions() {
    let main = RecordingPod::start(Behaviour::Ok).await;
    let canary = RecordingPod::start(Behaviour::Ok).await;
    let w = canary_world(
        &main,
        &canary,
        &[
            annotated(
                "main",
                &[
                    (&a("affinity"), "cookie"),
                    (&a("upstream-vhost"), "internal.test"),
                ],
                &[
                    ("a.test", "/", "Prefix", "web"),
                    ("legacy.test", "/", "Prefix", "web"),
                ],
            ),
            canary_of(
                "sticky",
                "a.test",
                // Ignored on a canary: the main Ingress's upstream-vhost applies.
                &[
                    ("canary-by-header", "canary"),
                    ("upstream-vhost", "other.test"),
                ],
            ),
            annotated(
                "legacy",
                &[
                    (&a("canary"), "true"),
                    (&a("canary-by-header"), "canary"),
                    (&a("affinity-canary-behavior"), "legacy"),
                ],
                &[("legacy.test", "/", "Prefix", "canary")],
            ),
        ],
    )
    .await;
    let pods = [&main, &canary];
    // Forced to the canary by the header: a session cookie for the canary...
    let (to, r) = to_canary(&w, pods, "a.test", &[("canary", "always")]).await;
    assert!(to);
    let cookie = pair(&set_cookie(&r).expect("the canary session gets a cookie"));
    assert!(cookie.starts_with("INGRESSCOOKIE="), "{cookie}");
    assert_eq!(
        canary.received().last().unwrap().header("host").as_deref(),
        Some("internal.test")
    );
    // ...that keeps the client there without the header, with no new cookie.
    for _ in 0..20 {
        let (to, r) = to_canary(&w, pods, "a.test", &[("cookie", &cookie)]).await;
        assert!(to, "{cookie}");
        assert_eq!(set_cookie(&r), None);
    }
    // A main session stays on main even when the header asks for the canary.
    let (to, r) = to_canary(&w, pods, "a.test", &[]).await;
    assert!(!to);
    let main_cookie = pair(&set_cookie(&r).unwrap());
    assert_ne!(main_cookie, cookie);
    let headers = [("canary", "always"), ("cookie", main_cookie.as_str())];
    assert!(!to_canary(&w, pods, "a.test", &headers).await.0);
    // legacy: the canary has no affinity of its own, so it sets no cookie.
    let (to, r) = to_canary(&w, pods, "legacy.test", &[("canary", "always")]).await;
    assert!(to);
    assert_eq!(set_cookie(&r), None);

    // Both backends and the rule, in /debug/explain and /debug/routes.
    let explain = w
        .admin_get("/debug/explain?host=a.test&path=/&format=text")
        .await
        .body;
    assert!(
        explain.contains("Canary (Ingress default/sticky)"),
        "{explain}"
    );
    assert!(
        explain.contains("header canary: \"always\" → canary"),
        "{explain}"
    );
    assert!(
        explain.contains("Canary backend default/canary:80"),
        "{explain}"
    );
    let text = w.admin_get("/debug/routes?format=text").await.body;
    assert!(
        text.contains("default/sticky (canary: header canary, weight 0/100)"),
        "{text}"
    );
    let routes = w.routes().await;
    let listed = routes["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["ingress"]["name"] == "sticky")
        .unwrap()["annotations"]
        .clone();
    let vhost = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == a("upstream-vhost"))
        .unwrap();
    assert_eq!(vhost["outcome"], "noEffectNeeded");
    w.stop().await;
}

#[tokio::test]
async fn every_annotation_has_its_outcome_in_debug_routes_and_check() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    // Served despite its snippet (--ignore-snippets), to list every outcome.
    let mut config = Config::local();
    config.settings.ignore_snippets = true;
    let w = world(
        &[&pod],
        &[annotated(
            "site",
            &[
                (&a("proxy-body-size"), "8m"),
                (&a("proxy-buffering"), "on"),
                (&a("mirror-target"), "https://mirror.example/$request_uri"),
                (&a("configuration-snippet"), "more_set_headers \"X: y\";"),
                (&a("proxy-read-timeout"), "soon"),
            ],
            &[("a.test", "/", "Prefix", "web")],
        )],
        config,
    )
    .await;
    let routes = w.routes().await;
    let listed = routes["annotations"][0]["annotations"].as_array().unwrap();
    let outcome = |n: &str| {
        listed
            .iter()
            .find(|x| x["name"] == format!("{NGINX}{n}"))
            .map(|x| x["outcome"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(outcome("proxy-body-size"), "honoured");
    assert_eq!(outcome("proxy-buffering"), "noEffectNeeded");
    assert_eq!(outcome("mirror-target"), "unsupported");
    assert_eq!(outcome("configuration-snippet"), "refused");
    assert_eq!(outcome("proxy-read-timeout"), "invalid");
    let text = w.admin_get("/debug/routes?format=text").await.body;
    assert!(text.contains("Annotations:"), "{text}");
    assert!(
        text.contains(&format!("{NGINX}configuration-snippet  refused")),
        "{text}"
    );
    let explain = w
        .admin_get("/debug/explain?host=a.test&path=/&format=text")
        .await
        .body;
    assert!(explain.contains("bodyLimit"), "{explain}");
    w.stop().await;
}

#[tokio::test]
async fn cors_with_the_defaults_answers_preflights_and_marks_every_response() {
    let pod = RecordingPod::start(Behaviour::Status(502)).await;
    let w = world(
        &[&pod],
        &[annotated(
            "api",
            &[(&a("enable-cors"), "true")],
            &[("api.test", "/", "Prefix", "web")],
        )],
        Config::local(),
    )
    .await;
    // A preflight never reaches the pod.
    let preflight = w
        .send(
            w.request(Method::OPTIONS, "api.test", "/orders")
                .header("origin", "https://app.example")
                .header("access-control-request-method", "POST")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(preflight.status, StatusCode::NO_CONTENT);
    let h = &preflight.headers;
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(
        h["access-control-allow-methods"],
        "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    );
    assert_eq!(
        h["access-control-allow-headers"],
        "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization"
    );
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "1728000");
    assert!(pod.received().is_empty());
    // Every other response carries them, whatever its status.
    let reply = w.get("api.test", "/orders").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
    w.stop().await;
}

#[tokio::test]
async fn cors_with_listed_origins_echoes_a_match_and_says_nothing_otherwise() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &[&pod],
        &[annotated(
            "api",
            &[
                (&a("enable-cors"), "true"),
                (
                    &a("cors-allow-origin"),
                    "https://app.example, https://*.apps.example:8443",
                ),
                (&a("cors-allow-methods"), "GET, POST"),
                (&a("cors-allow-credentials"), "false"),
                (&a("cors-expose-headers"), "X-Total-Count"),
            ],
            &[("api.test", "/", "Prefix", "web")],
        )],
        Config::local(),
    )
    .await;
    let from = |origin: &'static str, method: Method| {
        w.request(method, "api.test", "/x")
            .header("origin", origin)
            .body(Full::default())
            .unwrap()
    };
    let reply = w.send(from("https://app.example", Method::GET)).await;
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(reply.headers["access-control-allow-methods"], "GET, POST");
    assert_eq!(
        reply.headers["access-control-expose-headers"],
        "X-Total-Count"
    );
    assert!(reply
        .headers
        .get("access-control-allow-credentials")
        .is_none());
    let reply = w
        .send(from("https://eu.apps.example:8443", Method::GET))
        .await;
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://eu.apps.example:8443"
    );
    // Not allowed: served, but without any CORS header; its OPTIONS goes to the pod.
    let reply = w.send(from("https://evil.example", Method::GET)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers.get("access-control-allow-origin").is_none());
    let reply = w.send(from("https://evil.example", Method::OPTIONS)).await;
    assert_eq!(reply.status, StatusCode::OK, "proxied");
    assert!(pod
        .received()
        .iter()
        .any(|r| r.line().starts_with("OPTIONS /x")));
    let reply = w.send(from("https://app.example", Method::OPTIONS)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    w.stop().await;
}

#[tokio::test]
async fn app_root_sends_the_root_of_the_host_to_its_path() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &[&pod],
        &[
            annotated(
                "dash",
                &[(&a("app-root"), "/dashboard")],
                &[("dash.test", "/api", "Prefix", "web")],
            ),
            annotated(
                "login",
                &[(&a("app-root"), "/login$is_args$args")],
                &[("login.test", "/", "Prefix", "web")],
            ),
        ],
        Config::local(),
    )
    .await;
    // Host-wide: `/` is redirected though the Ingress only routes /api.
    let reply = w.get("dash.test:8080", "/?x=1").await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(
        reply.headers["location"], "http://dash.test:8080/dashboard",
        "the query is dropped"
    );
    assert_eq!(w.get("dash.test", "/api/x").await.status, StatusCode::OK);
    let reply = w.get("login.test", "/?foo=bar&baz=qux").await;
    assert_eq!(
        reply.headers["location"],
        "http://login.test/login?foo=bar&baz=qux"
    );
    assert_eq!(w.get("login.test", "/other").await.status, StatusCode::OK);
    w.stop().await;
}

#[tokio::test]
async fn from_to_www_redirect_goes_both_ways_but_never_over_a_real_host() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &[&pod],
        &[
            annotated(
                "apex",
                &[(&a("from-to-www-redirect"), "true")],
                &[("example.test", "/", "Prefix", "web")],
            ),
            annotated(
                "www",
                &[(&a("from-to-www-redirect"), "true")],
                &[("www.other.test", "/", "Prefix", "web")],
            ),
            annotated(
                "both",
                &[(&a("from-to-www-redirect"), "true")],
                &[("both.test", "/", "Prefix", "web")],
            ),
            ingress("both-www", &[("www.both.test", "/", "Prefix", "web")]),
        ],
        Config::local(),
    )
    .await;
    let reply = w.get("www.example.test", "/foo").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(reply.headers["location"], "http://example.test:80/foo");
    let reply = w.get("other.test", "/").await;
    assert_eq!(reply.headers["location"], "http://www.other.test:80");
    assert_eq!(w.get("example.test", "/foo").await.status, StatusCode::OK);
    // www.both.test has its own rules: it is served, not redirected.
    assert_eq!(w.get("www.both.test", "/").await.status, StatusCode::OK);
    w.stop().await;
}

#[tokio::test]
async fn a_server_alias_serves_like_the_host_unless_a_rule_has_it() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let other = RecordingPod::start(Behaviour::Ok).await;
    let manifests = format!(
        "{CLASS}{}{}{}{}{}{}",
        svc("web"),
        slice(
            "web",
            "web-1",
            pod.addr.port(),
            &[pod.addr.ip().to_string()]
        ),
        svc("other"),
        slice(
            "other",
            "other-1",
            other.addr.port(),
            &[other.addr.ip().to_string()]
        ),
        annotated(
            "site",
            &[(&a("server-alias"), "alias.test, taken.test")],
            &[("site.test", "/app", "Prefix", "web")]
        ),
        ingress("taken", &[("taken.test", "/", "Prefix", "other")]),
    );
    let w = Wicket::start(&manifests).await;
    assert_eq!(w.get("alias.test", "/app/x").await.status, StatusCode::OK);
    assert_eq!(
        pod.complete()[0].header("host").as_deref(),
        Some("alias.test")
    );
    assert_eq!(
        w.get("alias.test", "/else").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(w.get("taken.test", "/app/x").await.status, StatusCode::OK);
    assert_eq!(
        other.complete().len(),
        1,
        "the host with its own rule keeps it"
    );
    w.stop().await;
}

#[tokio::test]
async fn rewrite_target_sends_the_pod_the_rewritten_path_and_the_query() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &[&pod],
        &[
            annotated(
                "app",
                &[
                    (&a("rewrite-target"), "/$2"),
                    (&a("use-regex"), "true"),
                    (&a("x-forwarded-prefix"), "/app"),
                ],
                &[("a.test", "/app(/|$)(.*)", "ImplementationSpecific", "web")],
            ),
            ingress("assets", &[("a.test", "/static", "Prefix", "web")]),
        ],
        Config::local(),
    )
    .await;
    for (request, upstream) in [
        ("/app/hello?x=1&y=2", "GET /hello?x=1&y=2 HTTP/1.1"),
        ("/app", "GET / HTTP/1.1"),
        ("/app/", "GET / HTTP/1.1"),
        ("/APP/v1/Users/123", "GET /v1/Users/123 HTTP/1.1"),
        ("/app//a//b", "GET /a/b HTTP/1.1"),
    ] {
        assert_eq!(
            w.get("a.test", request).await.status,
            StatusCode::OK,
            "{request}"
        );
        let got = pod.complete().pop().unwrap();
        assert_eq!(got.line(), upstream, "{request}");
        assert_eq!(got.header("x-forwarded-prefix").as_deref(), Some("/app"));
    }
    // The other Ingress of the host is in regex mode too: case-insensitive, start-anchored,
    // and its path goes unchanged, without the prefix header.
    assert_eq!(
        w.get("a.test", "/STATICfiles/x").await.status,
        StatusCode::OK
    );
    let got = pod.complete().pop().unwrap();
    assert_eq!(got.line(), "GET /STATICfiles/x HTTP/1.1");
    assert_eq!(got.header("x-forwarded-prefix"), None);
    assert_eq!(
        w.get("a.test", "/other").await.status,
        StatusCode::NOT_FOUND
    );

    let explained = w
        .admin_get("/debug/explain?host=a.test&path=/app/hello")
        .await;
    assert!(
        explained.body.contains("the pod gets /hello"),
        "{}",
        explained.body
    );
    assert!(explained.body.contains("regex mode"), "{}", explained.body);
    let routes = w.routes().await.to_string();
    assert!(routes.contains("\"rewriteTarget\":\"/$2\""), "{routes}");
    w.stop().await;
}

#[tokio::test]
async fn a_rewrite_to_a_url_redirects_without_asking_the_pod() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &[&pod],
        &[annotated(
            "moved",
            &[(&a("rewrite-target"), "https://bar.example.org/$1")],
            &[("a.test", "/original/(.*)", "ImplementationSpecific", "web")],
        )],
        Config::local(),
    )
    .await;
    let r = w.get("a.test", "/original/a/b/c?q=1").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(
        r.headers.get("location").unwrap(),
        "https://bar.example.org/a/b/c?q=1"
    );
    assert!(pod.complete().is_empty());
    w.stop().await;
}

#[tokio::test]
async fn a_regex_path_that_does_not_compile_leaves_the_others_serving() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &[&pod],
        &[annotated(
            "lookaround",
            &[(&a("use-regex"), "true")],
            &[
                ("a.test", "/(?!admin).*", "ImplementationSpecific", "web"),
                ("a.test", "/api/[0-9]+", "ImplementationSpecific", "web"),
            ],
        )],
        Config::local(),
    )
    .await;
    assert_eq!(w.get("a.test", "/api/42").await.status, StatusCode::OK);
    assert_eq!(
        w.get("a.test", "/public").await.status,
        StatusCode::NOT_FOUND
    );
    let routes = w.routes().await.to_string();
    assert!(routes.contains("/(?!admin).*"), "{routes}");
    assert!(routes.contains("path ignored"), "{routes}");
    w.stop().await;
}

/// Sends a GET (with `cookie`, if any) and says which of `pods` answered it.
async fn served(
    w: &Wicket,
    pods: &[&RecordingPod],
    host: &str,
    path: &str,
    cookie: Option<&str>,
) -> (Option<usize>, Reply) {
    let before: Vec<usize> = pods.iter().map(|p| p.received().len()).collect();
    let mut req = w.request(Method::GET, host, path);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let reply = w.send(req.body(Full::default()).unwrap()).await;
    let which = pods
        .iter()
        .zip(before)
        .position(|(p, n)| p.received().len() > n);
    (which, reply)
}

fn set_cookie(r: &Reply) -> Option<String> {
    r.headers
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// `NAME=VALUE` of a Set-Cookie.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn cookie_affinity_pins_a_client_to_one_pod() {
    let pods = [
        RecordingPod::start(Behaviour::Ok).await,
        RecordingPod::start(Behaviour::Ok).await,
        RecordingPod::start(Behaviour::Ok).await,
    ];
    let all: Vec<&RecordingPod> = pods.iter().collect();
    let w = world(
        &all,
        &[
            annotated(
                "sticky",
                &[(&a("affinity"), "cookie")],
                &[("a.test", "/", "Prefix", "web")],
            ),
            ingress("plain", &[("a.test", "/static", "Prefix", "web")]),
        ],
        Config::local(),
    )
    .await;
    // Each new client gets a cookie of ingress-nginx's shape.
    let mut sessions = Vec::new();
    for _ in 0..12 {
        let (pod, r) = served(&w, &all, "a.test", "/cart", None).await;
        let c = set_cookie(&r).expect("a new session gets a cookie");
        let value = pair(&c).strip_prefix("INGRESSCOOKIE=").unwrap().to_owned();
        assert_eq!(value.len(), 16, "{c}");
        assert_eq!(c, format!("INGRESSCOOKIE={value}; Path=/; HttpOnly"));
        sessions.push((pod.unwrap(), pair(&c)));
    }
    // Sessions spread over the pods...
    let distinct: std::collections::BTreeSet<usize> = sessions.iter().map(|(p, _)| *p).collect();
    assert!(distinct.len() >= 2, "{sessions:?}");
    // ...and each stays on its pod, with no new cookie.
    for (pod, cookie) in &sessions {
        for _ in 0..5 {
            let (again, r) = served(
                &w,
                &all,
                "a.test",
                "/cart/items",
                Some(&format!("other=1; {cookie}")),
            )
            .await;
            assert_eq!(again, Some(*pod), "{cookie}");
            assert_eq!(set_cookie(&r), None);
        }
    }
    // The other Ingress of the host sets no cookie (affinity is per route).
    let (_, r) = served(&w, &all, "a.test", "/static/x", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(set_cookie(&r), None);
    w.stop().await;
}

#[tokio::test]
async fn session_cookie_attributes_are_as_written_in_ingress_nginx_order() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &[&pod],
        &[annotated(
            "sticky",
            &[
                (&a("affinity"), "cookie"),
                (&a("session-cookie-name"), "SERVERID"),
                (&a("session-cookie-path"), "/app"),
                (&a("session-cookie-samesite"), "Strict"),
                (&a("session-cookie-max-age"), "3600"),
                (&a("session-cookie-expires"), "172800"),
                (&a("session-cookie-domain"), ".example.com"),
                (&a("session-cookie-secure"), "true"),
            ],
            &[("a.test", "/app", "Prefix", "web")],
        )],
        Config::local(),
    )
    .await;
    let r = w.get("a.test", "/app/x").await;
    let c = set_cookie(&r).unwrap();
    let parts: Vec<&str> = c.split("; ").collect();
    assert!(parts[0].starts_with("SERVERID="), "{c}");
    assert!(parts[1].starts_with("Expires="), "{c}");
    // Wdy, DD-Mon-YY HH:MM:SS GMT, two days ahead.
    let expires = parts[1].strip_prefix("Expires=").unwrap();
    assert_eq!(expires.len(), "Wed, 02-Dec-26 10:00:00 GMT".len(), "{c}");
    assert!(
        expires.ends_with(" GMT") && expires.as_bytes()[7] == b'-',
        "{c}"
    );
    assert_eq!(
        parts[2..].to_vec(),
        vec![
            "Max-Age=3600",
            "Domain=.example.com",
            "Path=/app",
            "Secure",
            "HttpOnly",
            "SameSite=Strict"
        ],
        "{c}"
    );
    w.stop().await;
}

#[tokio::test]
async fn persistent_affinity_names_no_address_and_replaces_a_cookie_it_does_not_know() {
    let pods = [
        RecordingPod::start(Behaviour::Ok).await,
        RecordingPod::start(Behaviour::Ok).await,
    ];
    let all: Vec<&RecordingPod> = pods.iter().collect();
    let w = world(
        &all,
        &[annotated(
            "sticky",
            &[
                (&a("affinity"), "cookie"),
                (&a("affinity-mode"), "persistent"),
            ],
            &[("a.test", "/shop", "Prefix", "web")],
        )],
        Config::local(),
    )
    .await;
    let (pod, r) = served(&w, &all, "a.test", "/shop/basket", None).await;
    let c = set_cookie(&r).unwrap();
    // The route's path as written; the value is no address of either pod.
    assert!(c.ends_with("; Path=/shop; HttpOnly"), "{c}");
    for p in &pods {
        assert!(!c.contains(&p.addr.ip().to_string()), "{c}");
        assert!(!c.contains(&p.addr.port().to_string()), "{c}");
    }
    let cookie = pair(&c);
    for _ in 0..10 {
        let (again, r) = served(&w, &all, "a.test", "/shop", Some(&cookie)).await;
        assert_eq!(again, pod);
        assert_eq!(set_cookie(&r), None);
    }
    // A cookie naming no pod that serves (a pod gone, or made up): a new pod, a new cookie.
    let (again, r) = served(
        &w,
        &all,
        "a.test",
        "/shop",
        Some("INGRESSCOOKIE=0123456789abcdef"),
    )
    .await;
    assert!(again.is_some());
    let renewed = pair(&set_cookie(&r).unwrap());
    assert_ne!(renewed, "INGRESSCOOKIE=0123456789abcdef");
    let (stays, _) = served(&w, &all, "a.test", "/shop", Some(&renewed)).await;
    assert_eq!(stays, again);
    w.stop().await;
}

#[tokio::test]
async fn change_on_failure_moves_the_session_only_when_asked() {
    for change in [false, true] {
        let pods = [
            RecordingPod::start(Behaviour::Ok).await,
            RecordingPod::start(Behaviour::Ok).await,
        ];
        let all: Vec<&RecordingPod> = pods.iter().collect();
        let w = world(
            &all,
            &[annotated(
                "sticky",
                &[
                    (&a("affinity"), "cookie"),
                    (&a("proxy-next-upstream"), "error timeout http_503"),
                    (
                        &a("session-cookie-change-on-failure"),
                        if change { "true" } else { "false" },
                    ),
                ],
                &[("a.test", "/", "Prefix", "web")],
            )],
            Config::local(),
        )
        .await;
        let (pod, r) = served(&w, &all, "a.test", "/", None).await;
        let pod = pod.unwrap();
        let cookie = pair(&set_cookie(&r).unwrap());
        // The session's pod starts failing: the request is answered by the other one.
        pods[pod].set(Behaviour::Status(503));
        let (_, r) = served(&w, &all, "a.test", "/", Some(&cookie)).await;
        assert_eq!(r.status, StatusCode::OK);
        let moved = set_cookie(&r);
        assert_eq!(
            moved.is_some(),
            change,
            "change-on-failure {change}: {moved:?}"
        );
        if let Some(moved) = moved {
            pods[pod].set(Behaviour::Ok);
            let (now, _) = served(&w, &all, "a.test", "/", Some(&pair(&moved))).await;
            assert_eq!(
                now,
                Some(1 - pod),
                "the session moved to the pod that answered"
            );
        }
        w.stop().await;
    }
}

#[tokio::test]
async fn upstream_hash_by_sends_a_key_to_one_pod_or_one_subset() {
    let pods = [
        RecordingPod::start(Behaviour::Ok).await,
        RecordingPod::start(Behaviour::Ok).await,
        RecordingPod::start(Behaviour::Ok).await,
        RecordingPod::start(Behaviour::Ok).await,
    ];
    let all: Vec<&RecordingPod> = pods.iter().collect();
    let w = world(
        &all,
        &[
            annotated(
                "hashed",
                &[(&a("upstream-hash-by"), "$request_uri")],
                &[("a.test", "/", "Prefix", "web")],
            ),
            annotated(
                "subset",
                &[
                    (&a("upstream-hash-by"), "$http_x_user"),
                    (&a("upstream-hash-by-subset"), "true"),
                    (&a("upstream-hash-by-subset-size"), "2"),
                ],
                &[("b.test", "/", "Prefix", "web")],
            ),
        ],
        Config::local(),
    )
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(
            served(&w, &all, "a.test", "/item?id=7", None)
                .await
                .0
                .unwrap(),
        );
    }
    assert_eq!(seen.len(), 1, "one key, one pod");
    let mut spread = std::collections::BTreeSet::new();
    for i in 0..40 {
        spread.insert(
            served(&w, &all, "a.test", &format!("/item?id={i}"), None)
                .await
                .0
                .unwrap(),
        );
    }
    assert!(spread.len() >= 3, "keys spread over the pods: {spread:?}");

    let mut group = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let before: Vec<usize> = pods.iter().map(|p| p.received().len()).collect();
        let r = w
            .send(
                w.request(Method::GET, "b.test", "/")
                    .header("x-user", "ann")
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        group.insert(
            pods.iter()
                .zip(before)
                .position(|(p, n)| p.received().len() > n)
                .unwrap(),
        );
    }
    assert_eq!(group.len(), 2, "one key, one group of two pods: {group:?}");
    w.stop().await;
}

#[tokio::test]
async fn ewma_sends_traffic_away_from_a_slow_pod() {
    let pods = [
        RecordingPod::start(Behaviour::Slow(150)).await,
        RecordingPod::start(Behaviour::Ok).await,
    ];
    let all: Vec<&RecordingPod> = pods.iter().collect();
    let w = world(
        &all,
        &[annotated(
            "ewma",
            &[(&a("load-balance"), "ewma")],
            &[("a.test", "/", "Prefix", "web")],
        )],
        Config::local(),
    )
    .await;
    let mut slow = 0;
    for _ in 0..30 {
        if served(&w, &all, "a.test", "/", None).await.0 == Some(0) {
            slow += 1;
        }
    }
    // Until the slow pod's first answer both cost nothing; after it, the fast one wins.
    assert!(slow <= 2, "the slow pod got {slow} of 30");
    w.stop().await;
}

/// Services `web` (over `pod`) and `errors` (over `errors`), a Service `empty` without
/// endpoints, and `ingresses`.
async fn error_world(
    pod: &RecordingPod,
    errors: &RecordingPod,
    ingresses: &[String],
    config: Config,
) -> Wicket {
    let manifests = format!(
        "{CLASS}{}{}{}{}{}{}{}",
        svc("web"),
        slice(
            "web",
            "web-1",
            pod.addr.port(),
            &[pod.addr.ip().to_string()]
        ),
        svc("errors"),
        slice(
            "errors",
            "errors-1",
            errors.addr.port(),
            &[errors.addr.ip().to_string()]
        ),
        svc("empty"),
        slice("empty", "empty-1", 8080, &[]),
        ingresses.concat(),
    );
    Wicket::start_with(&manifests, config).await
}

#[tokio::test]
async fn default_backend_answers_for_a_service_that_cannot_and_is_told_why() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let errors = RecordingPod::start(Behaviour::Status(418)).await;
    let w = error_world(
        &pod,
        &errors,
        &[
            annotated(
                "missing",
                &[(&a("default-backend"), "errors")],
                &[("a.test", "/", "Prefix", "invalid")],
            ),
            annotated(
                "no-endpoints",
                &[(&a("default-backend"), "errors")],
                &[("b.test", "/", "Prefix", "empty")],
            ),
            ingress("plain", &[("c.test", "/", "Prefix", "invalid")]),
        ],
        Config::local(),
    )
    .await;
    let r = w
        .send(
            w.request(Method::POST, "a.test", "/alma/armud?x=1")
                .header("x-request-id", "req-123")
                .header("accept", "text/html")
                .body(Full::new(Bytes::from_static(b"payload")))
                .unwrap(),
        )
        .await;
    // The error backend's status and body reach the client.
    assert_eq!(r.status.as_u16(), 418);
    assert_eq!(r.body, "err");
    let got = errors.received().last().unwrap().clone();
    assert!(got.line().starts_with("GET / "), "{}", got.line());
    let h = |n: &str| got.header(n).unwrap_or_default();
    assert_eq!(h("x-code"), "503");
    assert_eq!(h("x-ingress-name"), "missing");
    assert_eq!(h("x-namespace"), "default");
    assert_eq!(h("x-service-name"), "invalid");
    assert_eq!(h("x-original-uri"), "/alma/armud?x=1");
    assert_eq!(h("x-request-id"), "req-123");
    assert_eq!(h("x-format"), "text/html");
    assert_eq!(h("host"), "a.test");
    // A Service without endpoints: the same.
    let r = w.get("b.test", "/").await;
    assert_eq!(r.status.as_u16(), 418);
    let got = errors.received().last().unwrap().clone();
    assert_eq!(got.header("x-service-name").as_deref(), Some("empty"));
    assert_eq!(got.header("x-service-port").as_deref(), Some("80"));
    // Without the annotation: wicket's 503.
    assert_eq!(
        w.get("c.test", "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(pod.received().is_empty());
    w.stop().await;
}

#[tokio::test]
async fn custom_http_errors_replace_the_listed_answers_of_the_pod() {
    let pod = RecordingPod::start(Behaviour::Status(404)).await;
    let errors = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.settings.default_backend_service =
        Some(wicket::controller::index::Key::new("default", "errors"));
    let w = error_world(
        &pod,
        &errors,
        &[
            annotated(
                "own",
                &[
                    (&a("custom-http-errors"), "404, 503"),
                    (&a("default-backend"), "errors"),
                ],
                &[("own.test", "/", "Prefix", "web")],
            ),
            annotated(
                "unlisted",
                &[(&a("custom-http-errors"), "500")],
                &[("unlisted.test", "/", "Prefix", "web")],
            ),
            annotated(
                "global",
                &[(&a("custom-http-errors"), "404")],
                &[("global.test", "/", "Prefix", "web")],
            ),
            annotated(
                "disabled",
                &[
                    (&a("custom-http-errors"), "404"),
                    (&a("disable-proxy-intercept-errors"), "true"),
                ],
                &[("disabled.test", "/", "Prefix", "web")],
            ),
        ],
        config,
    )
    .await;
    let r = w.get("own.test", "/missing").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ok"));
    let got = errors.received().last().unwrap().clone();
    assert_eq!(got.header("x-code").as_deref(), Some("404"));
    assert_eq!(got.header("x-original-uri").as_deref(), Some("/missing"));
    assert_eq!(pod.received().len(), 1, "the pod was asked first");
    // An unlisted status is the pod's own.
    assert_eq!(
        w.get("unlisted.test", "/").await.status,
        StatusCode::NOT_FOUND
    );
    // Without default-backend, --default-backend-service gives the pages.
    let before = errors.received().len();
    assert_eq!(w.get("global.test", "/").await.status, StatusCode::OK);
    assert_eq!(errors.received().len(), before + 1);
    // disable-proxy-intercept-errors: the pod's 404 passes.
    let r = w.get("disabled.test", "/").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::NOT_FOUND, "err"));
    w.stop().await;
}

#[tokio::test]
async fn custom_http_errors_without_any_error_backend_answer_404() {
    let pod = RecordingPod::start(Behaviour::Status(500)).await;
    let errors = RecordingPod::start(Behaviour::Ok).await;
    let w = error_world(
        &pod,
        &errors,
        &[annotated(
            "site",
            &[(&a("custom-http-errors"), "500")],
            &[("a.test", "/", "Prefix", "web")],
        )],
        Config::local(),
    )
    .await;
    // ingress-nginx's built-in default backend answers 404 for every replaced answer.
    assert_eq!(w.get("a.test", "/").await.status, StatusCode::NOT_FOUND);
    assert!(errors.received().is_empty());
    w.stop().await;
}

#[tokio::test]
async fn service_upstream_sends_requests_to_the_cluster_ip() {
    // `cluster` stands in for kube-proxy behind the cluster IP; `pod` is the endpoint.
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let cluster = RecordingPod::start(Behaviour::Ok).await;
    let service = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  clusterIP: {}\n  ports: [{{name: http, port: {}}}]\n",
        cluster.addr.ip(),
        cluster.addr.port()
    );
    let headless = "---\napiVersion: v1\nkind: Service\nmetadata: {name: headless}\nspec:\n  clusterIP: None\n  ports: [{name: http, port: 80}]\n";
    let manifests = format!(
        "{CLASS}{service}{}{headless}{}{}{}{}",
        slice(
            "web",
            "web-1",
            pod.addr.port(),
            &[pod.addr.ip().to_string()]
        ),
        slice(
            "headless",
            "headless-1",
            pod.addr.port(),
            &[pod.addr.ip().to_string()]
        ),
        annotated(
            "upstream",
            &[(&a("service-upstream"), "true")],
            &[
                ("up.test", "/", "Prefix", "web"),
                ("headless.test", "/", "Prefix", "headless")
            ],
        ),
        annotated(
            "off",
            &[(&a("service-upstream"), "false")],
            &[("off.test", "/", "Prefix", "web")],
        ),
        ingress("plain", &[("plain.test", "/", "Prefix", "web")]),
    );
    let w = Wicket::start(&manifests).await;
    for _ in 0..3 {
        assert_eq!(w.get("up.test", "/").await.status, StatusCode::OK);
    }
    assert_eq!(cluster.received().len(), 3);
    assert!(pod.received().is_empty());
    for host in ["off.test", "plain.test", "headless.test"] {
        assert_eq!(w.get(host, "/").await.status, StatusCode::OK);
    }
    assert_eq!(
        pod.received().len(),
        3,
        "endpoints, as without the annotation"
    );
    assert_eq!(cluster.received().len(), 3);
    let routes = w.routes().await;
    assert!(routes["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["message"]
            .as_str()
            .unwrap()
            .contains("service-upstream: Service default/headless has no cluster IP")));
    w.stop().await;
}

fn config_map(name: &str, data: &[(&str, &str)]) -> String {
    let mut s =
        format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata:\n");
    for (k, v) in data {
        s.push_str(&format!("  {k}: {}\n", serde_json::to_string(v).unwrap()));
    }
    s
}

#[tokio::test]
async fn custom_headers_come_from_a_config_map_and_only_allowed_names() {
    let pod = RecordingPod::start(Behaviour::Status(404)).await;
    let mut config = Config::local();
    config.settings.allowed_response_headers =
        vec!["my-custom-header".into(), "my-custom-header-dollar".into()];
    let manifests = format!(
        "{CLASS}{}{}{}{}{}{}{}{}",
        svc("web"),
        slice(
            "web",
            "web-1",
            pod.addr.port(),
            &[pod.addr.ip().to_string()]
        ),
        config_map(
            "custom-headers",
            &[
                ("My-Custom-Header", "42"),
                ("My-Custom-Header-Dollar", "$remote_addr")
            ],
        ),
        config_map("forbidden", &[("Set-Cookie", "admin=1")]),
        annotated(
            "site",
            &[(&a("custom-headers"), "default/custom-headers")],
            &[("a.test", "/", "Prefix", "web")],
        ),
        annotated(
            "missing",
            &[(&a("custom-headers"), "nowhere")],
            &[("b.test", "/", "Prefix", "web")],
        ),
        annotated(
            "not-allowed",
            &[(&a("custom-headers"), "forbidden")],
            &[("c.test", "/", "Prefix", "web")],
        ),
        ingress("plain", &[("d.test", "/", "Prefix", "web")]),
    );
    let w = Wicket::start_with(&manifests, config).await;
    // On every status, values as written.
    let r = w.get("a.test", "/").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.headers["my-custom-header"], "42");
    assert_eq!(r.headers["my-custom-header-dollar"], "$remote_addr");
    // A ConfigMap that is missing or sets a header not allowed: 503, never served without.
    for host in ["b.test", "c.test"] {
        let r = w.get(host, "/").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{host}");
        assert!(r.headers.get("set-cookie").is_none());
    }
    assert_eq!(pod.received().len(), 1);
    let r = w.get("d.test", "/").await;
    assert!(r.headers.get("my-custom-header").is_none());
    let routes = w.routes().await;
    let messages: Vec<&str> = routes["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["message"].as_str())
        .filter(|m| m.starts_with("custom-headers"))
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("ConfigMap default/nowhere not found")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Set-Cookie is not in --allowed-response-headers")),
        "{messages:?}"
    );
    w.stop().await;
}

/// A pod that terminates TLS itself with `cert` and answers every request with `body`.
async fn tls_pod(cert: &TestCert, body: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor = tls_acceptor(cert, &[b"http/1.1"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    let Ok(n) = tls.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        head.clear();
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if tls.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn ssl_passthrough_relays_tls_to_the_pod_by_sni_when_enabled() {
    let pod_cert = test_cert(&["pass.test"]);
    let tls_pod = tls_pod(&pod_cert, "from the pod's own TLS").await;
    let plain = RecordingPod::start(Behaviour::Ok).await;
    let wicket_cert = test_cert(&["term.test"]);
    let client_ca = test_cert(&["client CA"]);
    let client_ca = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: client-ca}}\nstringData:\n  ca.crt: {}\n",
        serde_json::to_string(&client_ca.pem).unwrap()
    );
    let manifests = format!(
        "{CLASS}{client_ca}{}{}{}{}{}{}{}{}{}{}",
        svc("secure"),
        slice(
            "secure",
            "secure-1",
            tls_pod.port(),
            &[tls_pod.ip().to_string()]
        ),
        svc("web"),
        slice(
            "web",
            "web-1",
            plain.addr.port(),
            &[plain.addr.ip().to_string()]
        ),
        tls_secret("term-tls", &wicket_cert),
        annotated(
            "pass",
            &[(&a("ssl-passthrough"), "true")],
            &[("pass.test", "/", "Prefix", "secure")],
        ),
        // Access guards hold for relayed connections: an allow list that leaves out
        // 127.0.0.1, and a guard that checks requests, which a relayed connection does
        // not carry (fail closed).
        annotated(
            "guarded",
            &[
                (&a("ssl-passthrough"), "true"),
                (&a("allowlist-source-range"), "192.0.2.0/24"),
            ],
            &[("guarded.test", "/", "Prefix", "secure")],
        ),
        annotated(
            "locked",
            &[
                (&a("ssl-passthrough"), "true"),
                (&a("auth-url"), "https://auth.example/check"),
            ],
            &[("locked.test", "/", "Prefix", "secure")],
        ),
        // A client certificate cannot be checked on a connection that is not terminated.
        annotated(
            "certified",
            &[
                (&a("ssl-passthrough"), "true"),
                (&a("auth-tls-secret"), "default/client-ca"),
            ],
            &[("certified.test", "/", "Prefix", "secure")],
        ),
        ingress("term", &[("term.test", "/", "Prefix", "web")]),
    ) + "  tls:\n  - hosts: [term.test]\n    secretName: term-tls\n";
    let mut config = Config::local();
    config.settings.ssl_passthrough = true;
    let w = Wicket::start_with(&manifests, config).await;

    // The client sees the pod's certificate and talks to the pod, through wicket.
    let tls = tls_connect(w.https(), Some("pass.test"), &[b"http/1.1"]).await;
    assert_eq!(support::served(&tls), pod_cert.der);
    let mut h1 = H1::over(tls).await;
    for _ in 0..3 {
        let r = h1.get("pass.test", "/anything").await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::OK, "from the pod's own TLS")
        );
    }
    // A relay is a connection in flight, which shutdown waits for: close it first.
    drop(h1);
    for refused in ["guarded.test", "locked.test", "certified.test"] {
        // The connection is closed before any handshake: tls_connect panics, in its task.
        let https = w.https();
        let handshake =
            tokio::spawn(async move { tls_connect(https, Some(refused), &[b"http/1.1"]).await });
        assert!(
            handshake.await.is_err(),
            "{refused}: relayed around its guard"
        );
    }
    // Any other SNI is terminated by wicket as before.
    let tls = tls_connect(w.https(), Some("term.test"), &[b"http/1.1"]).await;
    assert_eq!(support::served(&tls), wicket_cert.der);
    let r = H1::over(tls).await.get("term.test", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(plain.received().len(), 1);
    // Plain HTTP to the HTTPS port is no ClientHello: the handshake fails and the
    // connection closes, with nothing relayed.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::TcpStream::connect(w.https()).await.unwrap();
        raw.write_all(b"GET / HTTP/1.1\r\nHost: pass.test\r\n\r\n")
            .await
            .unwrap();
        let mut sink = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            raw.read_to_end(&mut sink),
        )
        .await;
        assert!(read.is_ok(), "the connection is closed, not left hanging");
    }
    let routes = w.routes().await;
    assert!(
        routes["sslPassthrough"]["pass.test"]["backend"].is_object(),
        "{routes}"
    );
    w.stop().await;

    // Without --enable-ssl-passthrough the annotation is reported and TLS is terminated.
    let w = Wicket::start(&manifests).await;
    let tls = tls_connect(w.https(), Some("pass.test"), &[b"http/1.1"]).await;
    assert_ne!(support::served(&tls), pod_cert.der);
    let routes = w.routes().await;
    assert!(routes["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["message"]
            .as_str()
            .unwrap()
            .contains("ssl-passthrough needs --enable-ssl-passthrough")));
    w.stop().await;
}

#[tokio::test]
async fn a_path_no_rule_matches_gets_the_annotations_of_the_hosts_oldest_ingress() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &[&pod],
        &[
            // Same age: by name, "a-first" is the oldest Ingress of a.test.
            annotated(
                "a-first",
                &[(&a("enable-cors"), "true"), (&a("proxy-body-size"), "1k")],
                &[("a.test", "/app", "Prefix", "web")],
            ),
            ingress("b-second", &[("a.test", "/api", "Prefix", "web")]),
            ingress("plain", &[("b.test", "/app", "Prefix", "web")]),
            // An access guard wicket cannot read on the host's oldest Ingress: the paths no
            // rule matches answer 503 as its routes do, never the default answer.
            annotated(
                "a-guarded",
                &[(&a("allowlist-source-range"), "10.0.0.0/8, not-an-address")],
                &[("c.test", "/admin", "Prefix", "web")],
            ),
            ingress("c-open", &[("c.test", "/public", "Prefix", "web")]),
        ],
        Config::local(),
    )
    .await;
    assert_eq!(
        w.get("c.test", "/other").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        w.get("c.test", "/admin").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(w.get("c.test", "/public").await.status, StatusCode::OK);
    // ingress-nginx's implicit location / of a.test carries a-first's annotations.
    let r = w.get("a.test", "/other").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    assert_eq!(
        post(&w, "a.test", "/other", 2048).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // b-second's own routes keep their own (no) annotations.
    let r = w.get("a.test", "/api").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("access-control-allow-origin").is_none());
    // A host whose oldest Ingress has none: a plain 404.
    let r = w.get("b.test", "/other").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.headers.get("access-control-allow-origin").is_none());
    let explain = w
        .admin_get("/debug/explain?host=a.test&path=/other&format=text")
        .await
        .body;
    assert!(
        explain.contains("the annotations of Ingress default/a-first (the host's oldest) apply"),
        "{explain}"
    );
    assert_eq!(pod.received().len(), 2);
    w.stop().await;
}

/// GET `host` `/` as `client` (through a trusted proxy: `X-Forwarded-For`).
async fn from(w: &Wicket, host: &str, client: &str) -> StatusCode {
    w.send(
        w.request(Method::GET, host, "/")
            .header("x-forwarded-for", client)
            .body(Full::default())
            .unwrap(),
    )
    .await
    .status
}

/// GET `host` `/` over a connection made from `source` (a loopback address).
async fn from_source(w: &Wicket, host: &str, source: &str) -> StatusCode {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(w.http).await.unwrap();
    H1::over(tcp).await.get(host, "/").await.status
}

#[tokio::test]
async fn allow_and_deny_lists_check_the_client_address_as_ingress_nginx() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.proxy.trusted_proxies = std::sync::Arc::new("127.0.0.1/32".parse().unwrap());
    let w = world(
        &[&pod],
        &[
            annotated(
                "deny-only",
                &[(&a("denylist-source-range"), "18.0.0.0/8, 56.0.0.1")],
                &[("deny.test", "/", "Prefix", "web")],
            ),
            annotated(
                "both",
                &[
                    (&a("denylist-source-range"), "18.1.0.0/16, 56.0.0.0/8"),
                    (&a("whitelist-source-range"), "18.0.0.0/8, 55.0.0.0/8"),
                ],
                &[("both.test", "/", "Prefix", "web")],
            ),
            annotated(
                "allowlist-wins",
                &[
                    (&a("whitelist-source-range"), "0.0.0.0/0"),
                    (&a("allowlist-source-range"), "192.0.2.0/24, 2001:db8::/32"),
                ],
                &[("allow.test", "/", "Prefix", "web")],
            ),
            annotated(
                "broken",
                &[(&a("allowlist-source-range"), "10.0.0.0/8, not-an-address")],
                &[("broken.test", "/", "Prefix", "web")],
            ),
        ],
        config,
    )
    .await;
    // e2e ipdenylist.go, "only deny explicitly denied IPs, allow all others".
    assert_eq!(
        from(&w, "deny.test", "18.0.0.1").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        from(&w, "deny.test", "56.0.0.1").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(from(&w, "deny.test", "56.0.0.2").await, StatusCode::OK);
    // "only allow explicitly allowed IPs, deny all others".
    assert_eq!(
        from(&w, "both.test", "18.1.0.1").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        from(&w, "both.test", "10.10.10.10").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(from(&w, "both.test", "18.4.0.1").await, StatusCode::OK);
    assert_eq!(from(&w, "both.test", "55.55.55.55").await, StatusCode::OK);
    // allowlist-source-range wins over whitelist-source-range; IPv6 too.
    assert_eq!(
        from(&w, "allow.test", "198.51.100.1").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(from(&w, "allow.test", "192.0.2.77").await, StatusCode::OK);
    assert_eq!(from(&w, "allow.test", "2001:db8::5").await, StatusCode::OK);
    // A list that cannot be read: 503 for everyone, never open.
    assert_eq!(
        from(&w, "broken.test", "10.0.0.1").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Only a trusted peer's X-Forwarded-For is believed: 127.0.0.2 is the client itself.
    assert_eq!(
        from_source(&w, "allow.test", "127.0.0.2").await,
        StatusCode::FORBIDDEN
    );
    let spoofed = w
        .send(
            w.request(Method::GET, "deny.test", "/")
                .header("x-forwarded-for", "203.0.113.1, 18.0.0.1")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .status;
    assert_eq!(
        spoofed,
        StatusCode::FORBIDDEN,
        "the right-most untrusted hop is the client"
    );
    w.stop().await;
}

#[tokio::test]
async fn the_proxys_own_lists_apply_where_an_ingress_sets_none() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.proxy.source = Some(std::sync::Arc::new(wicket::model::SourceRanges {
        deny: Some("127.0.0.3".parse().unwrap()),
        allow: Some("127.0.0.0/29".parse().unwrap()),
    }));
    let w = world(
        &[&pod],
        &[
            ingress("plain", &[("a.test", "/", "Prefix", "web")]),
            annotated(
                "own",
                &[(&a("allowlist-source-range"), "127.0.0.9")],
                &[("own.test", "/", "Prefix", "web")],
            ),
        ],
        config,
    )
    .await;
    assert_eq!(from_source(&w, "a.test", "127.0.0.2").await, StatusCode::OK);
    assert_eq!(
        from_source(&w, "a.test", "127.0.0.3").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        from_source(&w, "a.test", "127.0.0.9").await,
        StatusCode::FORBIDDEN
    );
    // Unrouted requests from refused clients get 403 too, not a 404 that says more.
    assert_eq!(
        from_source(&w, "nowhere.test", "127.0.0.9").await,
        StatusCode::FORBIDDEN
    );
    // The Ingress's allow list replaces the proxy's; the proxy's deny list still applies.
    assert_eq!(
        from_source(&w, "own.test", "127.0.0.9").await,
        StatusCode::OK
    );
    assert_eq!(
        from_source(&w, "own.test", "127.0.0.2").await,
        StatusCode::FORBIDDEN
    );
    w.stop().await;
}

#[tokio::test]
async fn an_ingress_with_a_snippet_is_not_served_unless_snippets_are_ignored() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let ingresses = [
        annotated(
            "snippety",
            &[(
                &a("configuration-snippet"),
                "more_set_headers \"X-Owned: yes\";",
            )],
            &[("a.test", "/", "Prefix", "web")],
        ),
        ingress("plain", &[("b.test", "/", "Prefix", "web")]),
    ];
    let w = world(&[&pod], &ingresses, Config::local()).await;
    assert_eq!(w.get("a.test", "/").await.status, StatusCode::NOT_FOUND);
    assert_eq!(w.get("b.test", "/").await.status, StatusCode::OK);
    let routes = w.routes().await;
    let refused: Vec<&str> = routes["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["reason"] == "SnippetRefused")
        .filter_map(|p| p["message"].as_str())
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains("configuration-snippet") && refused[0].contains("--ignore-snippets")
    );
    w.stop().await;

    // --ignore-snippets: served, without the snippet.
    let mut config = Config::local();
    config.settings.ignore_snippets = true;
    let w = world(&[&pod], &ingresses, config).await;
    let r = w.get("a.test", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("x-owned").is_none());
    let routes = w.routes().await;
    assert!(routes["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["reason"] == "UnsupportedAnnotation"
            && p["message"]
                .as_str()
                .unwrap()
                .contains("configuration-snippet")));
    w.stop().await;
}
