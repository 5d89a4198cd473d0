//! TLS termination end to end: certificates by SNI from Secrets, rotation without touching
//! open connections, the HTTPS redirect, HSTS, HTTP/2 by ALPN, and h2c / TLS upstreams.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::net::TcpListener;
use wicket::app::Config;
use wicket::proxy::Hsts;

/// An Ingress of class wicket with a TLS section and rules routing `hosts` to `service`.
fn tls_ingress(
    name: &str,
    tls: &[(&[&str], &str)],
    hosts: &[&str],
    service: &str,
    annotations: &str,
) -> String {
    let mut s = format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\nspec:\n  ingressClassName: wicket\n  tls:\n"
    );
    for (tls_hosts, secret) in tls {
        let list: Vec<String> = tls_hosts.iter().map(|h| format!("\"{h}\"")).collect();
        s.push_str(&format!(
            "  - hosts: [{}]\n    secretName: {secret}\n",
            list.join(", ")
        ));
    }
    s.push_str("  rules:\n");
    for host in hosts {
        s.push_str(&format!(
            "  - host: \"{host}\"\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {service}, port: {{name: http}}}}}}}}\n"
        ));
    }
    s
}

#[tokio::test]
async fn sni_chooses_exact_then_wildcard_then_default_certificates() {
    let web = pods("web", 1).await;
    let exact = test_cert(&["www.shop.test"]);
    let wild = test_cert(&["*.shop.test"]);
    let fallback = test_cert(&["fallback.test"]);
    let manifests = format!(
        "{CLASS}{}{}{}{}{}",
        service("web", &web),
        tls_secret("exact", &exact),
        tls_secret("wild", &wild),
        tls_secret("fallback", &fallback),
        tls_ingress(
            "shop",
            &[(&["www.shop.test"], "exact"), (&["*.shop.test"], "wild")],
            &["www.shop.test", "*.shop.test"],
            "web",
            ""
        )
    );
    let mut config = Config::local();
    config.settings.default_certificate =
        Some(wicket::controller::index::Key::new("default", "fallback"));
    let w = Wicket::start_with(&manifests, config).await;
    let https = w.https();

    let cases: [(Option<&str>, &TestCert); 5] = [
        (Some("www.shop.test"), &exact),
        (Some("WWW.Shop.Test"), &exact),
        (Some("api.shop.test"), &wild),
        (Some("deep.api.shop.test"), &fallback),
        (None, &fallback),
    ];
    for (sni, expected) in cases {
        let stream = tls_connect(https, sni, &[b"http/1.1"]).await;
        assert_eq!(served(&stream), expected.der, "SNI {sni:?}");
    }
    // Routing after the handshake is by Host, and works over TLS.
    let stream = tls_connect(https, Some("api.shop.test"), &[b"http/1.1"]).await;
    let reply = H1::over(stream).await.get("api.shop.test", "/x").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.pod(), "web-0");
    assert_eq!(reply.seen("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        reply.seen("x-forwarded-port"),
        Some(https.port().to_string())
    );
    w.stop().await;
}

#[tokio::test]
async fn without_a_configured_default_the_self_signed_certificate_is_served() {
    let web = pods("web", 1).await;
    let w = Wicket::start(&site(&web)).await;
    let https = w.https();
    let stream = tls_connect(https, Some("a.test"), &[b"http/1.1"]).await;
    let der = served(&stream);
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let cn: Vec<&str> = cert
        .subject()
        .iter_common_name()
        .filter_map(|c| c.as_str().ok())
        .collect();
    assert_eq!(cn, vec![wicket::proxy::tls::SELF_SIGNED_NAME]);
    // And HTTPS serves requests for hosts without a TLS section too.
    assert_eq!(
        H1::over(stream).await.get("a.test", "/").await.pod(),
        "web-0"
    );
    let routes = w.routes().await;
    assert_eq!(routes["defaultCertificate"]["selfSigned"], true);
    w.stop().await;
}

#[tokio::test]
async fn broken_and_missing_secrets_get_the_default_certificate_without_affecting_others() {
    let web = pods("web", 1).await;
    let good = test_cert(&["good.test"]);
    let other = test_cert(&["other.test"]);
    let garbage = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: garbage}\ntype: kubernetes.io/tls\nstringData: {tls.crt: \"-----BEGIN CERTIFICATE-----\\nnope\\n-----END CERTIFICATE-----\\n\", tls.key: nope}\n";
    let mismatched = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: mismatched}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        good.pem.lines().map(|l| format!("    {l}\n")).collect::<String>(),
        other.key_pem.lines().map(|l| format!("    {l}\n")).collect::<String>(),
    );
    let manifests = format!(
        "{CLASS}{}{}{garbage}{mismatched}{}",
        service("web", &web),
        tls_secret("good", &good),
        tls_ingress(
            "site",
            &[
                (&["good.test"], "good"),
                (&["garbage.test"], "garbage"),
                (&["mismatch.test"], "mismatched"),
                (&["missing.test"], "missing")
            ],
            &["good.test", "garbage.test", "mismatch.test", "missing.test"],
            "web",
            ""
        )
    );
    let w = Wicket::start(&manifests).await;
    let https = w.https();
    assert_eq!(
        served(&tls_connect(https, Some("good.test"), &[]).await),
        good.der
    );
    for host in ["garbage.test", "mismatch.test", "missing.test"] {
        let stream = tls_connect(https, Some(host), &[b"http/1.1"]).await;
        assert_ne!(served(&stream), good.der);
        // The host still works over HTTPS, with the default certificate.
        assert_eq!(
            H1::over(stream).await.get(host, "/").await.status,
            StatusCode::OK,
            "{host}"
        );
    }
    let routes = w.routes().await;
    let reasons: Vec<&str> = routes["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "TLSSecretInvalid").count(),
        2,
        "{reasons:?}"
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == "TLSSecretNotFound")
            .count(),
        1,
        "{reasons:?}"
    );
    // /debug/routes says, per host, what is served and why.
    let hosts = routes["tlsHosts"].as_array().unwrap();
    let good_entry = hosts.iter().find(|h| h["host"] == "good.test").unwrap();
    assert_eq!(good_entry["certificate"]["secret"], "default/good");
    assert_eq!(good_entry["certificate"]["names"][0], "good.test");
    assert!(good_entry["certificate"]["notAfter"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let missing = hosts.iter().find(|h| h["host"] == "missing.test").unwrap();
    assert!(missing["defaultCertificateBecause"]
        .as_str()
        .unwrap()
        .contains("not found"));
    let vhost = routes["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "good.test")
        .unwrap();
    assert_eq!(vhost["tls"]["certificate"]["secret"], "default/good");
    w.stop().await;
}

#[tokio::test]
async fn a_rotated_certificate_serves_new_handshakes_and_open_connections_keep_working() {
    let web = pods("web", 1).await;
    let first = test_cert(&["a.test"]);
    let second = test_cert(&["a.test"]);
    let world = |cert: &TestCert| {
        format!(
            "{CLASS}{}{}{}",
            service("web", &web),
            tls_secret("a-tls", cert),
            tls_ingress("site", &[(&["a.test"], "a-tls")], &["a.test"], "web", "")
        )
    };
    let w = Wicket::start(&world(&first)).await;
    let https = w.https();
    let stream = tls_connect(https, Some("a.test"), &[b"http/1.1"]).await;
    assert_eq!(served(&stream), first.der);
    let mut long_lived = H1::over(stream).await;
    assert_eq!(long_lived.get("a.test", "/").await.status, StatusCode::OK);

    w.apply("main.yaml", &world(&second)).await;
    assert_eq!(
        served(&tls_connect(https, Some("a.test"), &[]).await),
        second.der
    );
    // The connection made before the rotation is untouched and keeps serving.
    for _ in 0..3 {
        assert_eq!(long_lived.get("a.test", "/").await.pod(), "web-0");
    }
    w.stop().await;
}

#[tokio::test]
async fn plain_http_to_a_tls_host_is_redirected_unless_turned_off() {
    let web = pods("web", 1).await;
    let cert = test_cert(&["secure.test", "optout.test"]);
    let manifests = format!(
        "{CLASS}{}{}{}{}{}",
        service("web", &web),
        tls_secret("s", &cert),
        tls_ingress(
            "secure",
            &[(&["secure.test"], "s")],
            &["secure.test"],
            "web",
            ""
        ),
        tls_ingress(
            "optout",
            &[(&["optout.test"], "s")],
            &["optout.test"],
            "web",
            "nginx.ingress.kubernetes.io/ssl-redirect: \"false\""
        ),
        ingress("plain", &[("plain.test", "/", "Prefix", "web")])
    );
    let w = Wicket::start(&manifests).await;
    let reply = w.get("secure.test", "/cart/items?page=2&sort=asc").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        reply.headers["location"],
        "https://secure.test/cart/items?page=2&sort=asc"
    );
    // As ingress-nginx, one trailing slash is left out.
    assert_eq!(
        w.get("SECURE.test:8080", "/").await.headers["location"],
        "https://secure.test"
    );
    // ACME HTTP-01 challenges stay on plain HTTP (cert-manager).
    assert_eq!(
        w.get("secure.test", "/.well-known/acme-challenge/token")
            .await
            .pod(),
        "web-0"
    );
    assert_eq!(w.get("optout.test", "/").await.pod(), "web-0");
    assert_eq!(w.get("plain.test", "/").await.pod(), "web-0");
    w.stop().await;

    // A public HTTPS port other than 443 goes into the URL; the global switch turns it off.
    let mut config = Config::local();
    config.proxy.https_redirect_port = 8443;
    let w = Wicket::start_with(&manifests, config).await;
    assert_eq!(
        w.get("secure.test", "/x").await.headers["location"],
        "https://secure.test:8443/x"
    );
    w.stop().await;
    let mut config = Config::local();
    config.proxy.ssl_redirect = false;
    let w = Wicket::start_with(&manifests, config).await;
    assert_eq!(w.get("secure.test", "/x").await.pod(), "web-0");
    w.stop().await;
}

#[tokio::test]
async fn hsts_is_sent_on_https_responses_of_tls_hosts_when_enabled() {
    let web = pods("web", 1).await;
    let cert = test_cert(&["secure.test"]);
    let manifests = format!(
        "{CLASS}{}{}{}{}",
        service("web", &web),
        tls_secret("s", &cert),
        tls_ingress(
            "secure",
            &[(&["secure.test"], "s")],
            &["secure.test"],
            "web",
            ""
        ),
        ingress("plain", &[("plain.test", "/", "Prefix", "web")])
    );
    let mut config = Config::local();
    config.proxy.hsts = Some(Hsts {
        max_age: 600,
        include_subdomains: true,
    });
    let w = Wicket::start_with(&manifests, config).await;
    let https = w.https();
    let mut client = H1::over(tls_connect(https, Some("secure.test"), &[b"http/1.1"]).await).await;
    let reply = client.get("secure.test", "/").await;
    assert_eq!(
        reply.headers["strict-transport-security"],
        "max-age=600; includeSubDomains"
    );
    let reply = client.get("plain.test", "/").await;
    assert!(!reply.headers.contains_key("strict-transport-security"));
    // Never over plain HTTP, even for a TLS host's request that is not redirected.
    let reply = w
        .get("secure.test", "/.well-known/acme-challenge/token")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.headers.contains_key("strict-transport-security"));
    w.stop().await;
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn_and_http11_clients_still_work() {
    let web = pods("web", 1).await;
    let cert = test_cert(&["a.test"]);
    let manifests = format!(
        "{CLASS}{}{}{}",
        service("web", &web),
        tls_secret("a", &cert),
        tls_ingress("site", &[(&["a.test"], "a")], &["a.test"], "web", "")
    );
    let w = Wicket::start(&manifests).await;
    let https = w.https();
    let stream = tls_connect(https, Some("a.test"), &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for i in 0..3 {
        let req = Request::get(format!("https://a.test/stream/{i}"))
            .body(Full::<Bytes>::default())
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(
            body.contains(&format!("request: GET /stream/{i} HTTP/1.1")),
            "{body}"
        );
        assert!(body.contains("host: a.test"), "{body}");
        assert!(body.contains("x-forwarded-proto: https"), "{body}");
    }
    let stream = tls_connect(https, Some("a.test"), &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        H1::over(stream).await.get("a.test", "/").await.pod(),
        "web-0"
    );
    w.stop().await;
}

/// A body of fixed frames, trailers included.
struct Frames(VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// A gRPC-like server: HTTP/2 only (cleartext, or TLS with ALPN h2), answers with a
/// length-prefixed message and `grpc-status` trailers, and echoes what it saw in headers.
async fn grpc_pod(tls: Option<&TestCert>) -> SocketAddr {
    let ip = format!("127.{}.{}.8", fastrand::u8(1..=250), fastrand::u8(1..=250));
    let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(|cert| tls_acceptor(cert, &[b"h2"]));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let te = req
                            .headers()
                            .get("te")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let version = format!("{:?}", req.version());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let mut trailers = HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        trailers.insert("grpc-message", "ok".parse().unwrap());
                        let message = &body[5.min(body.len())..];
                        let mut reply = vec![0u8, 0, 0, 0, message.len() as u8];
                        reply.extend_from_slice(message);
                        let frames = Frames(VecDeque::from([
                            Frame::data(Bytes::from(reply)),
                            Frame::trailers(trailers),
                        ]));
                        let response = Response::builder()
                            .header("content-type", "application/grpc")
                            .header("x-seen-te", te)
                            .header("x-seen-version", version)
                            .body(frames)
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    });
                let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        let tls = acceptor.accept(stream).await.unwrap();
                        let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
    addr
}

fn grpc_world(addr: SocketAddr, app_protocol: &str, annotations: &str, cert: &TestCert) -> String {
    format!(
        "{CLASS}---\napiVersion: v1\nkind: Service\nmetadata: {{name: greeter}}\nspec:\n  ports: [{{name: http, port: 50051{app_protocol}}}]\n{}{}{}",
        slice("greeter", "greeter-1", addr.port(), &[addr.ip().to_string()]),
        tls_secret("g", cert),
        tls_ingress("grpc", &[(&["grpc.test"], "g")], &["grpc.test"], "greeter", annotations)
    )
}

/// A gRPC-style call from an HTTP/2 client over TLS; returns the response head and trailers.
async fn grpc_call(https: SocketAddr) -> (http::response::Parts, Bytes, Option<HeaderMap>) {
    let stream = tls_connect(https, Some("grpc.test"), &[b"h2"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let message = Bytes::from_static(b"\x00\x00\x00\x00\x05hello");
    let req = Request::post("https://grpc.test/helloworld.Greeter/SayHello")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(message))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (parts, collected.to_bytes(), trailers)
}

#[tokio::test]
async fn grpc_reaches_an_h2c_pod_with_te_and_trailers_intact() {
    let cert = test_cert(&["grpc.test"]);
    let pod = grpc_pod(None).await;
    let w = Wicket::start(&grpc_world(
        pod,
        ", appProtocol: kubernetes.io/h2c",
        "",
        &cert,
    ))
    .await;
    let https = w.https();
    let (head, body, trailers) = grpc_call(https).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["x-seen-version"], "HTTP/2.0");
    assert_eq!(head.headers["x-seen-te"], "trailers");
    assert_eq!(&body[..], b"\x00\x00\x00\x00\x05hello");
    let trailers = trailers.expect("trailers reach the client");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "ok");
    w.stop().await;
}

#[tokio::test]
async fn the_backend_protocol_annotation_wins_and_grpcs_speaks_tls_to_the_pod() {
    let cert = test_cert(&["grpc.test"]);
    let pod_cert = test_cert(&["pod.internal"]);
    let pod = grpc_pod(Some(&pod_cert)).await;
    // appProtocol says h2c; the annotation says GRPCS (HTTP/2 over TLS) and wins.
    let w = Wicket::start(&grpc_world(
        pod,
        ", appProtocol: kubernetes.io/h2c",
        "nginx.ingress.kubernetes.io/backend-protocol: GRPCS",
        &cert,
    ))
    .await;
    let https = w.https();
    let (head, _, trailers) = grpc_call(https).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
    w.stop().await;
}

/// An HTTP/1.1 pod behind TLS with its own (unverifiable) certificate.
async fn https_pod(cert: &TestCert) -> SocketAddr {
    let ip = format!("127.{}.{}.6", fastrand::u8(1..=250), fastrand::u8(1..=250));
    let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls_acceptor(cert, &[]);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let host = req.headers().get("host").cloned();
                        let mut response =
                            Response::new(Full::new(Bytes::from_static(b"secure pod")));
                        if let Some(host) = host {
                            response.headers_mut().insert("x-seen-host", host);
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn app_protocol_https_speaks_tls_to_the_pod() {
    let pod = https_pod(&test_cert(&["pod.internal"])).await;
    let manifests = format!(
        "{CLASS}---\napiVersion: v1\nkind: Service\nmetadata: {{name: secure}}\nspec:\n  ports: [{{name: http, port: 443, appProtocol: https}}]\n{}{}",
        slice("secure", "secure-1", pod.port(), &[pod.ip().to_string()]),
        ingress("site", &[("a.test", "/", "Prefix", "secure")])
    );
    let w = Wicket::start(&manifests).await;
    let reply = w.get("a.test", "/").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "secure pod");
    assert_eq!(reply.headers["x-seen-host"], "a.test");
    w.stop().await;
}

#[tokio::test]
async fn handshake_failures_are_counted_and_do_not_disturb_other_clients() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let web = pods("web", 1).await;
    let w = Wicket::start(&site(&web)).await;
    let https = w.https();
    // Not TLS at all; then a ClientHello-looking record with garbage inside.
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"[..],
        b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\xff",
    ] {
        let mut s = tokio::net::TcpStream::connect(https).await.unwrap();
        s.write_all(junk).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf)).await;
    }
    let stream = tls_connect(https, Some("a.test"), &[b"http/1.1"]).await;
    assert_eq!(
        H1::over(stream).await.get("a.test", "/").await.status,
        StatusCode::OK
    );
    let routes = w.routes().await;
    assert_eq!(
        routes["tlsHandshakes"]["failed"], 2,
        "{}",
        routes["tlsHandshakes"]
    );
    assert!(routes["tlsHandshakes"]["completed"].as_u64().unwrap() >= 1);
    w.stop().await;
}
