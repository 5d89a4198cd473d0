//! Who the client is, as the pod hears it: forwarding headers from trusted proxies and from
//! anyone else, the PROXY protocol, and upgrades that must never become a tunnel wicket
//! does not route.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use support::pod::{Behaviour, RecordingPod};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wicket::app::Config;

#[tokio::test]
async fn a_trusted_proxys_chain_names_the_client_and_is_extended() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.proxy.trusted_proxies = Arc::new("127.0.0.0/8".parse().unwrap());
    let w = one_pod(&pod, config).await;
    let response = w.raw(
        b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 6.6.6.6, 203.0.113.9, 127.9.9.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let got = &pod.complete()[0];
    // 127.9.9.9 is a trusted hop; 203.0.113.9 the first untrusted one: the client. The
    // spoofable entry left of it changes nothing.
    assert_eq!(got.header("x-real-ip").as_deref(), Some("203.0.113.9"));
    assert_eq!(
        got.header("x-forwarded-for").as_deref(),
        Some("6.6.6.6, 203.0.113.9, 127.9.9.9, 127.0.0.1")
    );
    assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(got.header("x-forwarded-port").as_deref(), Some("443"));
    w.stop().await;
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_its_address() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.proxy.trusted_proxies = Arc::new("10.0.0.0/8".parse().unwrap());
    let w = one_pod(&pod, config).await;
    w.raw(
        b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 203.0.113.9\r\nX-Real-IP: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\r\n",
    )
    .await;
    let got = &pod.complete()[0];
    assert_eq!(got.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("http"));
    w.stop().await;
}

#[tokio::test]
async fn underscored_headers_pass_when_allowed() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.proxy.allow_underscores_in_headers = true;
    let w = one_pod(&pod, config).await;
    w.raw(b"GET / HTTP/1.1\r\nHost: a.test\r\nX_Legacy_Token: abc\r\n\r\n")
        .await;
    assert_eq!(
        pod.complete()[0].header("x_legacy_token").as_deref(),
        Some("abc")
    );
    w.stop().await;
}

fn proxy_v2(source: SocketAddr, destination: SocketAddr, local: bool) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(if local { 0x20 } else { 0x21 });
    h.push(0x11);
    h.extend_from_slice(&12u16.to_be_bytes());
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (source, destination) else {
        panic!()
    };
    h.extend_from_slice(&s.ip().octets());
    h.extend_from_slice(&d.ip().octets());
    h.extend_from_slice(&s.port().to_be_bytes());
    h.extend_from_slice(&d.port().to_be_bytes());
    h
}

#[tokio::test]
async fn the_proxy_protocol_names_the_client_and_its_port() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.proxy_protocol = true;
    let w = one_pod(&pod, config).await;

    let v1 = w.raw(
        b"PROXY TCP4 198.51.100.7 10.0.0.1 40000 443\r\nGET /v1 HTTP/1.1\r\nHost: a.test\r\n\r\n",
    )
    .await;
    assert!(v1.starts_with("HTTP/1.1 200"), "{v1}");
    let mut request = proxy_v2(
        "192.0.2.44:5555".parse().unwrap(),
        "10.0.0.1:8443".parse().unwrap(),
        false,
    );
    request.extend_from_slice(b"GET /v2 HTTP/1.1\r\nHost: a.test\r\n\r\n");
    assert!(w.raw(&request).await.starts_with("HTTP/1.1 200"));
    // The load balancer's own health check keeps the TCP addresses.
    let mut local = proxy_v2(
        "192.0.2.44:5555".parse().unwrap(),
        "10.0.0.1:8443".parse().unwrap(),
        true,
    );
    local.extend_from_slice(b"GET /local HTTP/1.1\r\nHost: a.test\r\n\r\n");
    assert!(w.raw(&local).await.starts_with("HTTP/1.1 200"));

    let got = pod.complete();
    let by_path = |p: &str| got.iter().find(|r| r.line().contains(p)).unwrap().clone();
    let v1 = by_path("/v1");
    assert_eq!(v1.header("x-real-ip").as_deref(), Some("198.51.100.7"));
    assert_eq!(v1.header("x-forwarded-port").as_deref(), Some("443"));
    let v2 = by_path("/v2");
    assert_eq!(v2.header("x-forwarded-for").as_deref(), Some("192.0.2.44"));
    assert_eq!(v2.header("x-forwarded-port").as_deref(), Some("8443"));
    let local = by_path("/local");
    assert_eq!(local.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    w.stop().await;
}

#[tokio::test]
async fn without_a_proxy_header_the_connection_is_refused() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.proxy_protocol = true;
    let w = one_pod(&pod, config).await;
    let response = w.raw(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    assert_eq!(response, "", "closed without an answer");
    assert!(pod.received().is_empty());
    let metrics = w.admin_get("/metrics").await.body;
    assert!(
        metrics.contains(
            "wicket_connections_closed_total{listener=\"http\",reason=\"proxy_protocol\"} 1"
        ),
        "{metrics}"
    );
    w.stop().await;
}

#[tokio::test]
async fn the_proxy_protocol_comes_before_tls() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let cert = test_cert(&["a.test"]);
    let mut config = Config::local();
    config.proxy_protocol = true;
    let manifests =
        format!(
        "{CLASS}{}{}{}{}",
        svc("web"),
        slice("web", "web-1", pod.addr.port(), &[pod.addr.ip().to_string()]),
        tls_secret("a-tls", &cert),
        ingress("site", &[("a.test", "/", "Prefix", "web")]).replace(
            "spec:\n  ingressClassName: wicket\n",
            "spec:\n  ingressClassName: wicket\n  tls: [{hosts: [a.test], secretName: a-tls}]\n"
        )
    );
    let w = Wicket::start_with(&manifests, config).await;
    let mut tcp = TcpStream::connect(w.https()).await.unwrap();
    tcp.write_all(b"PROXY TCP4 198.51.100.8 10.0.0.1 40001 443\r\n")
        .await
        .unwrap();
    let tls = tls_over(tcp, "a.test").await;
    let mut h1 = H1::over(tls).await;
    let reply = h1.get("a.test", "/tls").await;
    assert_eq!(reply.status, StatusCode::OK);
    let got = &pod.complete()[0];
    assert_eq!(got.header("x-real-ip").as_deref(), Some("198.51.100.8"));
    assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("https"));
    w.stop().await;
}

#[tokio::test]
async fn a_switch_to_another_protocol_than_websocket_is_never_relayed() {
    // This pod answers any request with 101 to h2c and then reads whatever comes as
    // tunnel bytes: a second request on that socket would reach it unrouted.
    let pod = RecordingPod::start(Behaviour::SwitchToH2c).await;
    let w = one_pod(&pod, Config::local()).await;
    let mut s = TcpStream::connect(w.http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 502"), "{first}");
    // Whatever the client sends next is a new request that wicket routes (with its own
    // forwarding headers), never raw bytes through a tunnel.
    let _ = s
        .write_all(b"GET /internal/admin HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), s.read(&mut buf)).await;
    for got in pod.received() {
        if got.head.contains("/internal/admin") {
            assert!(
                got.header("x-forwarded-for").is_some(),
                "unrouted bytes reached the pod: {got:?}"
            );
        }
    }
    // A WebSocket request answered with a 101 to h2c is refused as well.
    let ws = w.raw(
        b"GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(ws.starts_with("HTTP/1.1 502"), "{ws}");
    w.stop().await;
}
