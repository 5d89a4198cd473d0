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
    pod_world(pod, objects, config).await
}

/// Fail closed: each of `hosts` answers 503, `open.test` is still served, and the Problems
/// say each of `words`.
async fn assert_fail_closed(w: &Wicket, hosts: &[&str], words: &[&str]) {
    for host in hosts {
        assert_eq!(
            w.get(host, "/").await.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{host}: fail closed"
        );
    }
    assert_eq!(w.get("open.test", "/").await.status, StatusCode::OK);
    let problems = w.routes().await["problems"].to_string();
    for word in words {
        assert!(problems.contains(word), "{word}: {problems}");
    }
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
    let mut annotations: std::collections::BTreeMap<&str, &str> =
        [("auth-type", "basic"), ("auth-realm", "test auth")].into();
    annotations.extend(extra.iter().copied());
    let pairs: Vec<(&str, &str)> = annotations.into_iter().collect();
    nginx_annotated(name, host, "web", &pairs)
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
    assert!(
        report.contains("\"users\":5"),
        "the users are counted: {report}"
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
    nginx_annotated(name, host, "web", limits)
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
    assert_fail_closed(
        &w,
        &["words.test", "cidr.test"],
        &["limit-rps", "not a whole number", "limit-whitelist"],
    )
    .await;
    w.stop().await;
}

// ---------------------------------------------------------------------------------------
// External auth: an auth service double that answers by path, and records what it got.

mod auth_service {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;

    pub struct AuthService {
        pub addr: SocketAddr,
        pub seen: Arc<Mutex<Vec<Request<()>>>>,
        task: tokio::task::JoinHandle<()>,
        /// Its connections: dropped, the service is gone, kept-alive connections too.
        connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    }

    impl Drop for AuthService {
        fn drop(&mut self) {
            self.task.abort();
            for c in self.connections.lock().unwrap().drain(..) {
                c.abort();
            }
        }
    }

    fn answer(req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let mut r = Response::builder();
        let cookie = req
            .headers()
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let status = match req.uri().path() {
            "/ok" => {
                r = r
                    .header("x-auth-user", "alice")
                    .header("x-auth-role", "admin")
                    .header("set-cookie", "auth_seen=1; Path=/");
                200
            }
            "/session" if cookie.contains("session=good") => {
                r = r.header("x-auth-user", "bob");
                202
            }
            "/session" => {
                r = r
                    .header("www-authenticate", "Bearer realm=\"apps\"")
                    .header("set-cookie", "csrf=abc; Path=/");
                401
            }
            "/forbid" => 403,
            "/boom" => 500,
            "/moved" => {
                r = r.header("location", "/elsewhere");
                302
            }
            "/missing" => 404,
            _ => 200,
        };
        r.status(StatusCode::from_u16(status).unwrap())
            .body(Full::new(Bytes::from_static(b"auth says so")))
            .unwrap()
    }

    /// Started on its own loopback address; `delay` before every answer.
    pub async fn start(delay: Duration) -> AuthService {
        let ip = format!("127.{}.{}.9", fastrand::u8(1..=250), fastrand::u8(1..=250));
        let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Request<()>>>> = Arc::default();
        let log = seen.clone();
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let tasks = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                let connection = tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let mut copy = Request::builder()
                                .method(req.method())
                                .uri(req.uri())
                                .body(())
                                .unwrap();
                            *copy.headers_mut() = req.headers().clone();
                            log.lock().unwrap().push(copy);
                            tokio::time::sleep(delay).await;
                            Ok::<_, Infallible>(answer(&req))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
                tasks.lock().unwrap().push(connection.abort_handle());
            }
        });
        AuthService {
            addr,
            seen,
            task,
            connections,
        }
    }
}

fn external(name: &str, host: &str, annotations: &[(&str, String)]) -> String {
    let pairs: Vec<(&str, &str)> = annotations.iter().map(|(k, v)| (*k, v.as_str())).collect();
    nginx_annotated(name, host, "web", &pairs)
}

async fn get_with(w: &Wicket, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = w.request(Method::GET, host, path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    w.send(req.body(Full::default()).unwrap()).await
}

#[tokio::test]
async fn external_auth_asks_the_auth_service_and_passes_its_headers_on() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let auth = auth_service::start(std::time::Duration::ZERO).await;
    let url = |path: &str| format!("http://{}{path}", auth.addr);
    let w = world(
        &pod,
        &[
            external(
                "ok",
                "ok.test",
                &[
                    ("auth-url", url("/ok")),
                    (
                        "auth-response-headers",
                        "X-Auth-User, X-Auth-Role, X-Absent".into(),
                    ),
                    ("auth-proxy-set-headers", "auth-headers".into()),
                ],
            ),
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: auth-headers}\ndata: {X-Tenant: shop}\n".to_owned(),
            external("forbid", "forbid.test", &[("auth-url", url("/forbid"))]),
            external("boom", "boom.test", &[("auth-url", url("/boom"))]),
            external("moved", "moved.test", &[("auth-url", url("/moved"))]),
            external("missing", "missing.test", &[("auth-url", url("/missing"))]),
            external(
                "session",
                "session.test",
                &[
                    ("auth-url", url("/session")),
                    ("auth-method", "POST".into()),
                    ("auth-request-redirect", "https://session.test/after".into()),
                ],
            ),
        ],
        Config::local(),
    )
    .await;
    // 2xx: through, with the listed headers replacing the client's (a spoofing attempt).
    let reply = get_with(
        &w,
        "ok.test",
        "/page?x=1",
        &[
            ("x-auth-user", "mallory"),
            ("x-absent", "spoof"),
            ("x-unlisted", "kept"),
            ("cookie", "a=b"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["set-cookie"], "auth_seen=1; Path=/");
    let upstream = pod.complete().pop().unwrap();
    assert_eq!(upstream.header("x-auth-user").as_deref(), Some("alice"));
    assert_eq!(upstream.header("x-auth-role").as_deref(), Some("admin"));
    assert_eq!(
        upstream.header("x-absent"),
        None,
        "listed but not answered: removed"
    );
    assert_eq!(upstream.header("x-unlisted").as_deref(), Some("kept"));
    // What the auth service was asked (INGRESS-NGINX.md §C3).
    let asked = auth.seen.lock().unwrap().pop().unwrap();
    assert_eq!(asked.method(), Method::GET);
    assert_eq!(asked.uri().path(), "/ok");
    let h = asked.headers();
    assert_eq!(h["host"], auth.addr.to_string());
    assert_eq!(h["x-original-url"], "http://ok.test/page?x=1");
    assert_eq!(h["x-original-method"], "GET");
    assert_eq!(h["x-auth-request-redirect"], "/page?x=1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["cookie"], "a=b", "the client's headers go along");
    assert_eq!(h["x-tenant"], "shop", "auth-proxy-set-headers");
    assert!(h.get("x-forwarded-proto").is_none());
    assert!(h.get("content-length").is_none());
    assert_eq!(
        h["x-request-id"],
        upstream.header("x-request-id").unwrap().as_str(),
        "one request ID for the auth service and the pod"
    );
    // 401 relayed with the auth service's challenge; cookies only on success by default.
    let reply = get_with(&w, "session.test", "/", &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.headers["www-authenticate"], "Bearer realm=\"apps\"");
    assert!(reply.headers.get("set-cookie").is_none());
    let asked = auth.seen.lock().unwrap().pop().unwrap();
    assert_eq!(asked.method(), Method::POST, "auth-method");
    assert_eq!(asked.headers()["x-original-uri"], "/");
    assert_eq!(asked.headers()["x-scheme"], "http");
    assert_eq!(
        asked.headers()["x-auth-request-redirect"],
        "https://session.test/after"
    );
    let reply = get_with(&w, "session.test", "/", &[("cookie", "session=good")]).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "any 2xx lets the request through"
    );
    // 403 relayed; anything else is a 500, never a pass.
    assert_eq!(
        get_with(&w, "forbid.test", "/", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    for host in ["boom.test", "moved.test", "missing.test"] {
        assert_eq!(
            get_with(&w, host, "/", &[]).await.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{host}"
        );
    }
    assert_eq!(
        pod.complete().len(),
        2,
        "only the two allowed requests reached the pod"
    );
    w.stop().await;
}

#[tokio::test]
async fn external_auth_sends_signed_out_clients_to_sign_in_like_oauth2_proxy() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let auth = auth_service::start(std::time::Duration::ZERO).await;
    let w = world(
        &pod,
        &[
            external(
                "app",
                "auth",
                &[
                    ("auth-url", format!("http://{}/session", auth.addr)),
                    ("auth-signin", "http://$host/auth/start".into()),
                ],
            ),
            external(
                "param",
                "param.test",
                &[
                    ("auth-url", format!("http://{}/session", auth.addr)),
                    ("auth-signin", "https://$host/oauth2/start".into()),
                    ("auth-signin-redirect-param", "orig".into()),
                    ("auth-always-set-cookie", "true".into()),
                ],
            ),
        ],
        Config::local(),
    )
    .await;
    // e2e auth.go "should redirect to signin url when not signed in".
    let reply = get_with(&w, "auth", "/?a=b&c=d", &[]).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(
        reply.headers["location"],
        "http://auth/auth/start?rd=http://auth%2F%3Fa%3Db%26c%3Dd"
    );
    // A 302 counts as success for the auth service's cookies (ingress-nginx).
    assert_eq!(reply.headers["set-cookie"], "csrf=abc; Path=/");
    let reply = get_with(&w, "param.test", "/x", &[]).await;
    assert_eq!(
        reply.headers["location"],
        "https://param.test/oauth2/start?orig=http://param.test%2Fx"
    );
    // Signed in: through.
    let reply = get_with(&w, "auth", "/", &[("cookie", "session=good")]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(pod.complete().len(), 1);
    w.stop().await;
}

#[tokio::test]
async fn an_auth_service_that_is_down_slow_or_misnamed_never_lets_a_request_through() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let slow = auth_service::start(std::time::Duration::from_secs(5)).await;
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut config = Config::local();
    config.proxy.auth_timeout = std::time::Duration::from_millis(300);
    let w = world(
        &pod,
        &[
            external(
                "down",
                "down.test",
                &[("auth-url", format!("http://{closed}/auth"))],
            ),
            external(
                "slow",
                "slow.test",
                &[("auth-url", format!("http://{}/ok", slow.addr))],
            ),
            external(
                "bad-host",
                "bad.test",
                &[("auth-url", "https://invalid..auth.url".into())],
            ),
            external(
                "variable",
                "var.test",
                &[("auth-url", "https://$remote_user.example/".into())],
            ),
            external(
                "bad-method",
                "method.test",
                &[
                    ("auth-url", "http://auth.example/".into()),
                    ("auth-method", "BREW".into()),
                ],
            ),
            external(
                "bad-header",
                "header.test",
                &[
                    ("auth-url", "http://auth.example/".into()),
                    ("auth-response-headers", "X-Ok, Bad Header".into()),
                ],
            ),
            external(
                "no-config-map",
                "cm.test",
                &[
                    ("auth-url", "http://auth.example/".into()),
                    ("auth-proxy-set-headers", "not-there".into()),
                ],
            ),
            ingress("open", &[("open.test", "/", "Prefix", "web")]),
        ],
        config,
    )
    .await;
    assert_eq!(
        get_with(&w, "down.test", "/", &[]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let started = std::time::Instant::now();
    assert_eq!(
        get_with(&w, "slow.test", "/", &[]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "bounded by --auth-timeout"
    );
    // e2e auth.go "should return 503 (location was denied)", and wicket's other refusals.
    assert_fail_closed(
        &w,
        &[
            "bad.test",
            "var.test",
            "method.test",
            "header.test",
            "cm.test",
        ],
        &[
            "no valid host",
            "$remote_user",
            "BREW",
            "Bad Header",
            "not-there not found",
        ],
    )
    .await;
    assert_eq!(pod.complete().len(), 1, "nothing guarded reached the pod");
    w.stop().await;
}

// ---------------------------------------------------------------------------------------
// Client certificates (auth-tls-*), made at test time.

struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    cert: TestCert,
}

fn ca(name: &str) -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert = TestCert {
        pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
        key_der: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    };
    Ca { params, key, cert }
}

/// A client certificate `CN=<cn>, O=Wicket Test` signed by `ca`; `expired`: it ended in 2020.
fn client_cert(ca: &Ca, cn: &str, expired: bool) -> TestCert {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    // The usual order, most general first: nginx (RFC 2253) writes it CN first.
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Wicket Test");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    if expired {
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    TestCert {
        pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
        key_der: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    }
}

/// GET `/` of `host` over HTTPS, presenting `cert` if given.
async fn https_get(w: &Wicket, host: &str, cert: Option<&TestCert>) -> Reply {
    let chain: Vec<&TestCert> = cert.into_iter().collect();
    let tls = tls_connect_as(w.https(), host, cert.map(|c| (chain.as_slice(), c))).await;
    H1::over(tls).await.get(host, "/").await
}

#[tokio::test]
async fn client_certificates_are_checked_per_host_as_ingress_nginx() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let good_ca = ca("wicket test CA");
    let other_ca = ca("someone else's CA");
    let valid = client_cert(&good_ca, "authtls", false);
    let other = client_cert(&good_ca, "notgonnamatch", false);
    let wrong_ca = client_cert(&other_ca, "authtls", false);
    let expired = client_cert(&good_ca, "authtls", true);
    let site = test_cert(&[
        "mtls.test",
        "optional.test",
        "cn.test",
        "page.test",
        "open.test",
    ]);
    let with_tls = |ingress: String, host: &str| {
        format!("{ingress}  tls:\n  - hosts: [{host}]\n    secretName: site-tls\n")
    };
    let w = world(
        &pod,
        &[
            tls_secret("site-tls", &site),
            secret("client-ca", &[("ca.crt", &good_ca.cert.pem)]),
            with_tls(
                external(
                    "mtls",
                    "mtls.test",
                    &[
                        ("auth-tls-secret", "default/client-ca".into()),
                        ("auth-tls-pass-certificate-to-upstream", "true".into()),
                    ],
                ),
                "mtls.test",
            ),
            with_tls(
                external(
                    "optional",
                    "optional.test",
                    &[
                        ("auth-tls-secret", "default/client-ca".into()),
                        ("auth-tls-verify-client", "optional".into()),
                    ],
                ),
                "optional.test",
            ),
            with_tls(
                external(
                    "cn",
                    "cn.test",
                    &[
                        ("auth-tls-secret", "default/client-ca".into()),
                        (
                            "auth-tls-match-cn",
                            "CN=(itwillmatch|withthenextoption|authtls)".into(),
                        ),
                    ],
                ),
                "cn.test",
            ),
            with_tls(
                external(
                    "page",
                    "page.test",
                    &[
                        ("auth-tls-secret", "default/client-ca".into()),
                        (
                            "auth-tls-error-page",
                            "http://page.test/error-cert.html".into(),
                        ),
                    ],
                ),
                "page.test",
            ),
            with_tls(
                ingress("open", &[("open.test", "/", "Prefix", "web")]),
                "open.test",
            ),
        ],
        Config::local(),
    )
    .await;
    // e2e authtls.go: no certificate → 400; signed by the CA → 200.
    let reply = https_get(&w, "mtls.test", None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.body.contains("no required SSL certificate"),
        "{}",
        reply.body
    );
    let reply = https_get(&w, "mtls.test", Some(&valid)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = pod.complete().pop().unwrap();
    assert_eq!(seen.header("ssl-client-verify").as_deref(), Some("SUCCESS"));
    assert_eq!(
        seen.header("ssl-client-subject-dn").as_deref(),
        Some("CN=authtls,O=Wicket Test")
    );
    assert_eq!(
        seen.header("ssl-client-issuer-dn").as_deref(),
        Some("CN=wicket test CA")
    );
    // "should pass URL-encoded certificate to upstream".
    assert!(seen
        .header("ssl-client-cert")
        .unwrap()
        .starts_with("-----BEGIN%20CERTIFICATE-----%0A"));
    // Another CA's certificate, or an expired one: 400.
    for (what, cert) in [("wrong CA", &wrong_ca), ("expired", &expired)] {
        let reply = https_get(&w, "mtls.test", Some(cert)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}");
        assert!(
            reply.body.contains("SSL certificate error"),
            "{what}: {}",
            reply.body
        );
    }
    // optional: none is fine, a bad one is not.
    assert_eq!(
        https_get(&w, "optional.test", None).await.status,
        StatusCode::OK
    );
    let seen = pod.complete().pop().unwrap();
    assert_eq!(seen.header("ssl-client-verify").as_deref(), Some("NONE"));
    assert_eq!(
        https_get(&w, "optional.test", Some(&wrong_ca)).await.status,
        StatusCode::BAD_REQUEST
    );
    // match-cn: 403 for another CN, 200 when an alternative matches.
    assert_eq!(
        https_get(&w, "cn.test", Some(&other)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        https_get(&w, "cn.test", Some(&valid)).await.status,
        StatusCode::OK
    );
    // error page: a 302 instead of the 400.
    let reply = https_get(&w, "page.test", None).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(
        reply.headers["location"],
        "http://page.test/error-cert.html"
    );
    // What the client sends under those names never reaches the pod.
    let tls = tls_connect_as(w.https(), "mtls.test", Some((&[&valid], &valid))).await;
    let reply = H1::over(tls)
        .await
        .send(
            http::Request::get("/")
                .header("host", "mtls.test")
                .header("ssl-client-subject-dn", "CN=admin")
                .header("ssl-client-verify", "SUCCESS")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = pod.complete().pop().unwrap();
    assert_eq!(
        seen.header_values("ssl-client-subject-dn"),
        ["CN=authtls,O=Wicket Test"]
    );
    // A host without auth-tls asks for nothing.
    assert_eq!(
        https_get(&w, "open.test", None).await.status,
        StatusCode::OK
    );
    // A connection made for open.test cannot use mtls.test by its Host header.
    let tls = tls_connect_as(w.https(), "open.test", Some((&[&valid], &valid))).await;
    let reply = H1::over(tls).await.get("mtls.test", "/").await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "no certificate was asked for"
    );
    // Plain HTTP to an mTLS host: redirected to HTTPS first (tls section), never served.
    assert_eq!(
        w.get("mtls.test", "/").await.status,
        StatusCode::PERMANENT_REDIRECT
    );
    let routes = w.routes().await;
    let mtls = &routes["clientCertificates"]["mtls.test"];
    assert_eq!(mtls["secret"], "default/client-ca", "{routes}");
    assert_eq!(mtls["verify"], "on");
    assert_eq!(
        routes["clientCertificates"]["optional.test"]["verify"],
        "optional"
    );
    w.stop().await;
}

#[tokio::test]
async fn a_client_ca_wicket_cannot_read_makes_the_host_answer_503() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = world(
        &pod,
        &[
            secret("no-ca-key", &[("tls.crt", "x")]),
            secret("not-pem", &[("ca.crt", "not a certificate")]),
            external(
                "missing",
                "missing.test",
                &[("auth-tls-secret", "default/nothing".into())],
            ),
            external(
                "no-key",
                "no-key.test",
                &[("auth-tls-secret", "default/no-ca-key".into())],
            ),
            external(
                "not-pem",
                "not-pem.test",
                &[("auth-tls-secret", "default/not-pem".into())],
            ),
            external(
                "other-ns",
                "other-ns.test",
                &[("auth-tls-secret", "kube-system/ca".into())],
            ),
            external(
                "bad-cn",
                "bad-cn.test",
                &[
                    ("auth-tls-secret", "default/not-pem".into()),
                    ("auth-tls-match-cn", "O=not-a-cn".into()),
                ],
            ),
            ingress("open", &[("open.test", "/", "Prefix", "web")]),
        ],
        Config::local(),
    )
    .await;
    let hosts = [
        "missing.test",
        "no-key.test",
        "not-pem.test",
        "other-ns.test",
        "bad-cn.test",
    ];
    // Over HTTPS too: the handshake for those hosts asks for nothing, the request gets 503.
    for host in hosts {
        let reply = https_get(&w, host, None).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{host}");
    }
    assert_fail_closed(
        &w,
        &hosts,
        &[
            "nothing not found",
            "no key \\\"ca.crt\\\"",
            "holds no certificate",
            "own namespace",
            "does not start with CN=",
        ],
    )
    .await;
    w.stop().await;
}

#[tokio::test]
async fn auth_cache_key_remembers_answers_even_with_the_auth_service_gone() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let auth = auth_service::start(std::time::Duration::ZERO).await;
    let w = world(
        &pod,
        &[external(
            "cached",
            "cached.test",
            &[
                ("auth-url", format!("http://{}/session", auth.addr)),
                ("auth-cache-key", "$cookie_session".into()),
                ("auth-cache-duration", "202 401 1m".into()),
            ],
        )],
        Config::local(),
    )
    .await;
    let asked = || auth.seen.lock().unwrap().len();
    let signed_in = [("cookie", "session=good")];
    assert_eq!(
        get_with(&w, "cached.test", "/", &signed_in).await.status,
        StatusCode::OK
    );
    assert_eq!(asked(), 1);
    for _ in 0..5 {
        assert_eq!(
            get_with(&w, "cached.test", "/other", &signed_in)
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(asked(), 1, "answered from the cache");
    // Another key is another answer (401, remembered too).
    let stranger = [("cookie", "session=forged")];
    assert_eq!(
        get_with(&w, "cached.test", "/", &stranger).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(asked(), 2);
    // e2e auth.go "should return status code 200 when signed in after auth backend is
    // deleted" — and a key never seen gets 500, not a pass.
    drop(auth);
    assert_eq!(
        get_with(&w, "cached.test", "/", &signed_in).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_with(&w, "cached.test", "/", &[("cookie", "session=new")])
            .await
            .status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let routes = w.routes().await.to_string();
    assert!(routes.contains("\"key\":\"$cookie_session\""), "{routes}");
    w.stop().await;
}
