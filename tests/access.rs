//! The access guards a migrating ingress-nginx user relies on (INGRESS-NGINX.md §C3–C4):
//! basic auth, rate and connection limits. Each test sends what a client would and checks
//! what the client gets and what reaches the pod; every broken guard must answer 503.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine as _;
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

/// An Opaque Secret of the default namespace, written with `stringData`.
fn secret(name: &str, data: &[(&str, &str)]) -> String {
    let mut s = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: Opaque\nstringData:\n"
    );
    for (k, v) in data {
        s.push_str(&format!("  {k}: {}\n", serde_json::to_string(v).unwrap()));
    }
    s
}

/// Service `web` over `pod`, and `objects`.
async fn world(pod: &RecordingPod, objects: &[String], config: Config) -> Wicket {
    let manifests = format!(
        "{CLASS}{}{}{}",
        svc("web"),
        slice(
            "web",
            "web-1",
            pod.addr.port(),
            &[pod.addr.ip().to_string()]
        ),
        objects.concat()
    );
    Wicket::start_with(&manifests, config).await
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn with_auth(w: &Wicket, host: &str, authorization: Option<&str>) -> Reply {
    let mut req = w.request(Method::GET, host, "/");
    if let Some(v) = authorization {
        req = req.header("authorization", v);
    }
    w.send(req.body(Full::default()).unwrap()).await
}

fn protected(name: &str, host: &str, extra: &[(&str, &str)]) -> String {
    // The extras win over the defaults.
    let mut annotations: std::collections::BTreeMap<String, String> = [
        (a("auth-type"), "basic".to_owned()),
        (a("auth-realm"), "test auth".to_owned()),
    ]
    .into();
    annotations.extend(extra.iter().map(|(k, v)| (a(k), (*v).to_owned())));
    let pairs: Vec<(&str, &str)> = annotations
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    annotated(name, &pairs, &[(host, "/", "Prefix", "web")])
}

#[tokio::test]
async fn basic_auth_asks_for_a_password_and_lets_each_hash_format_in() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let bcrypt = bcrypt::hash("b-secret", 4).unwrap();
    let htpasswd = format!(
        "# made with htpasswd -B, -m, -s and by hand\nbob:{bcrypt}\napr:$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00\nsha:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nplain:{{PLAIN}}p-secret\nlocked:\n"
    );
    let w = world(
        &pod,
        &[
            secret("htpasswd", &[("auth", &htpasswd)]),
            secret("users", &[("alice", "{PLAIN}a-secret")]),
            protected("file", "file.test", &[("auth-secret", "htpasswd")]),
            protected(
                "map",
                "map.test",
                &[("auth-secret", "users"), ("auth-secret-type", "auth-map")],
            ),
            ingress("open", &[("open.test", "/", "Prefix", "web")]),
        ],
        Config::local(),
    )
    .await;
    // e2e auth.go: no Authorization → 401 with the realm.
    let reply = with_auth(&w, "file.test", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.headers["www-authenticate"],
        "Basic realm=\"test auth\""
    );
    assert!(reply.body.contains("401"), "{}", reply.body);
    for (user, password) in [
        ("bob", "b-secret"),
        ("apr", "password"),
        ("sha", "password"),
        ("plain", "p-secret"),
    ] {
        let reply = with_auth(&w, "file.test", Some(&basic(user, password))).await;
        assert_eq!(reply.status, StatusCode::OK, "{user}");
        // Twice: the second is answered from the remembered check.
        let reply = with_auth(&w, "file.test", Some(&basic(user, password))).await;
        assert_eq!(reply.status, StatusCode::OK, "{user}, again");
        let wrong = with_auth(&w, "file.test", Some(&basic(user, "wrong"))).await;
        assert_eq!(
            wrong.status,
            StatusCode::UNAUTHORIZED,
            "{user}, wrong password"
        );
    }
    for refused in [
        basic("nobody", "b-secret"),
        basic("locked", ""),
        "Bearer abc".to_owned(),
        "Basic not-base64!".to_owned(),
    ] {
        let reply = with_auth(&w, "file.test", Some(&refused)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{refused}");
    }
    // auth-map: one key per user.
    assert_eq!(
        with_auth(&w, "map.test", Some(&basic("alice", "a-secret")))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        with_auth(&w, "map.test", Some(&basic("bob", "b-secret")))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Other Ingresses are not guarded.
    assert_eq!(
        with_auth(&w, "open.test", None).await.status,
        StatusCode::OK
    );
    // Only the admitted requests reached the pod, and without the password.
    let seen = pod.complete();
    assert_eq!(seen.len(), 4 * 2 + 1 + 1);
    assert!(seen.iter().all(|r| r.header("authorization").is_none()));
    let routes = w.routes().await;
    let report = routes.to_string();
    assert!(
        !report.contains("b-secret") && !report.contains("$2"),
        "no secret in the report"
    );
    w.stop().await;
}

#[tokio::test]
async fn a_broken_basic_auth_setup_answers_503_and_says_why() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &pod,
        &[
            secret("no-auth-key", &[("users", "foo:{PLAIN}bar")]),
            secret("des", &[("auth", "foo:abJnggxhB/yWI")]),
            protected(
                "missing",
                "missing.test",
                &[("auth-secret", "nothing-here")],
            ),
            protected("no-key", "no-key.test", &[("auth-secret", "no-auth-key")]),
            protected(
                "other-ns",
                "other-ns.test",
                &[("auth-secret", "kube-system/admin")],
            ),
            protected("des", "des.test", &[("auth-secret", "des")]),
            protected("no-secret", "no-secret.test", &[]),
            protected(
                "digest",
                "digest.test",
                &[("auth-type", "digest"), ("auth-secret", "des")],
            ),
            protected(
                "bad-type",
                "bad-type.test",
                &[("auth-secret", "des"), ("auth-secret-type", "auth-list")],
            ),
            ingress("open", &[("open.test", "/", "Prefix", "web")]),
        ],
        Config::local(),
    )
    .await;
    for host in [
        "missing.test",
        "no-key.test",
        "other-ns.test",
        "des.test",
        "no-secret.test",
        "digest.test",
        "bad-type.test",
    ] {
        let reply = with_auth(&w, host, Some(&basic("foo", "bar"))).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{host}: fail closed"
        );
    }
    assert_eq!(
        with_auth(&w, "open.test", None).await.status,
        StatusCode::OK
    );
    assert_eq!(pod.complete().len(), 1, "nothing guarded reached the pod");
    let routes = w.routes().await;
    let problems: Vec<String> = routes["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{} {} {}", p["object"]["name"], p["reason"], p["message"]))
        .collect();
    let about = |name: &str, words: &[&str]| {
        assert!(
            problems
                .iter()
                .any(|p| p.contains(&format!("\"{name}\"")) && words.iter().all(|w| p.contains(w))),
            "{name}: {words:?} in {problems:#?}"
        );
    };
    about(
        "missing",
        &["AuthSecretInvalid", "default/nothing-here not found", "503"],
    );
    about("no-key", &["AuthSecretInvalid", "no key \\\"auth\\\""]);
    about("other-ns", &["AuthSecretInvalid", "own namespace"]);
    about("des", &["AuthSecretInvalid", "htpasswd -B"]);
    about("no-secret", &["InvalidAnnotation", "without auth-secret"]);
    about("digest", &["InvalidAnnotation", "basic only"]);
    about("bad-type", &["InvalidAnnotation", "auth-file or auth-map"]);
    // The DES hash itself is never repeated.
    assert!(!routes.to_string().contains("abJnggxhB"));
    w.stop().await;
}

#[tokio::test]
async fn basic_auth_comes_after_redirects_and_keeps_cors_headers() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &pod,
        &[
            secret("htpasswd", &[("auth", "foo:{PLAIN}bar")]),
            protected(
                "cors",
                "cors.test",
                &[("auth-secret", "htpasswd"), ("enable-cors", "true")],
            ),
            protected(
                "moved",
                "moved.test",
                &[("auth-secret", "htpasswd"), ("force-ssl-redirect", "true")],
            ),
        ],
        Config::local(),
    )
    .await;
    // e2e auth.go: 401 with the CORS headers.
    let reply = with_auth(&w, "cors.test", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
    // Redirects run before the access phase (INGRESS-NGINX.md §A6).
    let reply = with_auth(&w, "moved.test", None).await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert!(pod.complete().is_empty());
    w.stop().await;
}

/// GET `host` with `authorization` over a connection made from `source` (a loopback
/// address).
async fn from_source(w: &Wicket, host: &str, source: &str, authorization: &str) -> StatusCode {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(w.http).await.unwrap();
    let mut h1 = H1::over(tcp).await;
    h1.send(
        http::Request::get("/")
            .header("host", host)
            .header("authorization", authorization)
            .body(Full::<Bytes>::default())
            .unwrap(),
    )
    .await
    .status
}

#[tokio::test]
async fn guessing_passwords_runs_out_of_checks_and_others_keep_their_access() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let bcrypt = bcrypt::hash("right", 4).unwrap();
    let w = world(
        &pod,
        &[
            secret("htpasswd", &[("auth", &format!("foo:{bcrypt}"))]),
            protected("guarded", "guarded.test", &[("auth-secret", "htpasswd")]),
        ],
        Config::local(),
    )
    .await;
    let mut statuses = Vec::new();
    for i in 0..40 {
        statuses.push(
            from_source(
                &w,
                "guarded.test",
                "127.0.0.2",
                &basic("foo", &format!("guess{i}")),
            )
            .await,
        );
    }
    let unauthorized = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(unauthorized + limited, 40, "{statuses:?}");
    // The burst of 20 checks, and the few refilled at 5 a second while this ran.
    assert!((20..=30).contains(&unauthorized), "{statuses:?}");
    assert!(limited >= 10, "{statuses:?}");
    // The budget refills: the right password gets in after a pause, and is remembered.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        from_source(&w, "guarded.test", "127.0.0.2", &basic("foo", "right")).await,
        StatusCode::OK
    );
    // Another client is not affected.
    assert_eq!(
        from_source(&w, "guarded.test", "127.0.0.3", &basic("foo", "right")).await,
        StatusCode::OK
    );
    w.stop().await;
}

fn limited(name: &str, host: &str, limits: &[(&str, &str)]) -> String {
    let pairs: Vec<(String, &str)> = limits.iter().map(|(k, v)| (a(k), *v)).collect();
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    annotated(name, &pairs, &[(host, "/", "Prefix", "web")])
}

/// GET `host` `/` from `source` (a loopback address), on a new connection.
async fn get_from(w: &Wicket, host: &str, source: &str) -> StatusCode {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(w.http).await.unwrap();
    H1::over(tcp).await.get(host, "/").await.status
}

#[tokio::test]
async fn limit_rps_lets_the_burst_through_then_refuses_per_client() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &pod,
        &[
            limited("one-rps", "rps.test", &[("limit-rps", "1")]),
            limited(
                "exempt",
                "exempt.test",
                &[("limit-rps", "1"), ("limit-whitelist", "127.0.0.3/32")],
            ),
            limited(
                "small-burst",
                "burst.test",
                &[("limit-rpm", "2"), ("limit-burst-multiplier", "1")],
            ),
        ],
        Config::local(),
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(get_from(&w, "rps.test", "127.0.0.2").await);
    }
    // nginx limit_req burst=5 nodelay: the first and 5 more, then 503 (one more may have
    // dripped in at 1 a second while this ran).
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!((6..=7).contains(&ok), "{statuses:?}");
    assert!(
        statuses[ok..]
            .iter()
            .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    // Another client has its own budget.
    assert_eq!(get_from(&w, "rps.test", "127.0.0.4").await, StatusCode::OK);
    // limit-whitelist: exempt from the limit.
    for _ in 0..20 {
        assert_eq!(
            get_from(&w, "exempt.test", "127.0.0.3").await,
            StatusCode::OK
        );
    }
    // limit-rpm 2 × 1: three back to back, then refused.
    let burst: Vec<StatusCode> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(get_from(&w, "burst.test", "127.0.0.5").await);
        }
        v
    };
    assert_eq!(
        burst,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE
        ]
    );
    // A rebuilt table keeps counting: the client is still refused after an edit.
    w.apply(
        "more.yaml",
        &ingress("other", &[("other.test", "/", "Prefix", "web")]),
    )
    .await;
    assert_eq!(
        get_from(&w, "burst.test", "127.0.0.5").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    w.stop().await;
}

#[tokio::test]
async fn limit_connections_refuses_what_is_over_the_limit_in_flight() {
    let pod = RecordingPod::start(Behaviour::Slow(1_500)).await;
    let mut config = Config::local();
    config.proxy.limit_status = 429;
    let w = world(
        &pod,
        &[limited(
            "conns",
            "conns.test",
            &[("limit-connections", "8")],
        )],
        config,
    )
    .await;
    // e2e limitconnections.go: limit 8, 20 at once → 8 served, 12 refused, nothing else.
    let requests = (0..20).map(|_| get_from(&w, "conns.test", "127.0.0.2"));
    let statuses = futures::future::join_all(requests).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((ok, refused), (8, 12), "{statuses:?}");
    // Done: the connections are free again.
    assert_eq!(
        get_from(&w, "conns.test", "127.0.0.2").await,
        StatusCode::OK
    );
    w.stop().await;
}

#[tokio::test]
async fn a_limit_wicket_cannot_read_answers_503_not_unlimited() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &pod,
        &[
            limited("words", "words.test", &[("limit-rps", "ten")]),
            limited(
                "bad-cidr",
                "cidr.test",
                &[("limit-rpm", "100"), ("limit-whitelist", "10.0.0.0/33")],
            ),
            ingress("open", &[("open.test", "/", "Prefix", "web")]),
        ],
        Config::local(),
    )
    .await;
    for host in ["words.test", "cidr.test"] {
        assert_eq!(
            w.get(host, "/").await.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{host}"
        );
    }
    assert_eq!(w.get("open.test", "/").await.status, StatusCode::OK);
    let problems = w.routes().await["problems"].to_string();
    assert!(
        problems.contains("limit-rps") && problems.contains("not a whole number"),
        "{problems}"
    );
    assert!(problems.contains("limit-whitelist"), "{problems}");
    w.stop().await;
}
