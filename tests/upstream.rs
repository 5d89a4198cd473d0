//! What happens when pods fail: retries before the first byte, 502, 504; and protocol
//! upgrades passing through.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wicket::app::Config;

#[tokio::test]
async fn a_pod_that_refuses_connections_is_skipped_even_for_requests_with_a_body() {
    let live = pods("web", 1).await;
    let dead = dead_address().await;
    let manifests = format!(
        "{CLASS}{}{}{}{}",
        svc("web"),
        slice("web", "web-live", live[0].addr.port(), &ips(&live)),
        slice("web", "web-dead", dead.port(), &[dead.ip().to_string()]),
        ingress("site", &[("a.test", "/", "Prefix", "web")])
    );
    let w = Wicket::start(&manifests).await;
    for i in 0..10 {
        let req = w
            .request(Method::POST, "a.test", "/submit")
            .body(Full::new(Bytes::from(format!("payload-{i}"))))
            .unwrap();
        let reply = w.send(req).await;
        assert_eq!(reply.status, StatusCode::OK, "request {i}: {}", reply.body);
        assert_eq!(reply.pod(), "web-0");
        assert!(reply.body.contains("body: 9 bytes"), "{}", reply.body);
    }
    w.stop().await;
}

#[tokio::test]
async fn every_pod_refusing_gives_502() {
    let dead = dead_address().await;
    let manifests = format!(
        "{CLASS}{}{}{}",
        svc("web"),
        slice("web", "web-dead", dead.port(), &[dead.ip().to_string()]),
        ingress("site", &[("a.test", "/", "Prefix", "web")])
    );
    let w = Wicket::start(&manifests).await;
    let reply = w.get("a.test", "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.body, "502 bad gateway\n");
    w.stop().await;
}

/// Accepts connections, reads the request, then does `behaviour`.
async fn misbehaving_pod(behaviour: &'static str) -> SocketAddr {
    let ip = format!("127.{}.{}.7", fastrand::u8(1..=250), fastrand::u8(1..=250));
    let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                match behaviour {
                    "silent" => {
                        let _ = stream.read(&mut buf).await; // never answers
                    }
                    "garbage" => {
                        let _ = stream.write_all(b"this is not http\r\n\r\n").await;
                    }
                    _ => {} // "close": hang up without a response
                }
            });
        }
    });
    addr
}

async fn one_pod_world(addr: SocketAddr, config: Config) -> Wicket {
    let manifests = format!(
        "{CLASS}{}{}{}",
        svc("web"),
        slice("web", "web-1", addr.port(), &[addr.ip().to_string()]),
        ingress("site", &[("a.test", "/", "Prefix", "web")])
    );
    Wicket::start_with(&manifests, config).await
}

#[tokio::test]
async fn a_pod_that_never_answers_gives_504_after_the_upstream_timeout() {
    let addr = misbehaving_pod("silent").await;
    let mut config = Config::local();
    config.proxy.upstream.response_timeout = Duration::from_millis(300);
    let w = one_pod_world(addr, config).await;
    let reply = w.get("a.test", "/").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(reply.body, "504 gateway timeout\n");
    w.stop().await;
}

#[tokio::test]
async fn a_pod_that_answers_garbage_or_hangs_up_gives_502() {
    for behaviour in ["garbage", "close"] {
        let addr = misbehaving_pod(behaviour).await;
        let w = one_pod_world(addr, Config::local()).await;
        let reply = w.get("a.test", "/").await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{behaviour}");
        w.stop().await;
    }
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let pods = pods("web", 1).await;
    let w = Wicket::start(&site(&pods)).await;
    for i in 0..20 {
        let reply = w.get("a.test", &format!("/n/{i}")).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    // A request with a body, and a HEAD (a response with no body to read).
    let req = w
        .request(Method::POST, "a.test", "/submit")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    assert_eq!(w.send(req).await.status, StatusCode::OK);
    let req = w
        .request(Method::HEAD, "a.test", "/")
        .body(Full::default())
        .unwrap();
    assert_eq!(w.send(req).await.status, StatusCode::OK);
    assert_eq!(w.get("a.test", "/last").await.status, StatusCode::OK);
    assert_eq!(
        pods[0].connections(),
        1,
        "one upstream connection for every request"
    );
    w.stop().await;
}

/// Answers each request on a connection with a keep-alive response, then closes the
/// connection (`then`: "close" at once, "close-chunked" after a chunked response, or
/// "connection-close" saying so in a header).
async fn one_request_per_connection_pod(then: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    counting_pod(8, move |mut stream| async move {
        let mut buf = [0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let response: &[u8] = match then {
            "close-chunked" => {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
            }
            "connection-close" => {
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            }
            _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        };
        let _ = stream.write_all(response).await;
        // Hang up without saying so (except "connection-close"): the proxy finds out
        // when it next uses the connection, or just before.
    })
    .await
}

/// A pod on 127.x.y.`last` serving each connection with `serve`; counts connections.
async fn counting_pod<F, Fut>(last: u8, serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let ip = format!(
        "127.{}.{}.{last}",
        fastrand::u8(1..=250),
        fastrand::u8(1..=250)
    );
    let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(serve(stream));
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_pod_that_closes_keep_alive_connections_costs_no_request() {
    for then in ["close", "close-chunked", "connection-close"] {
        let (addr, accepted) = one_request_per_connection_pod(then).await;
        let w = one_pod_world(addr, Config::local()).await;
        for i in 0..10 {
            let reply = w.get("a.test", "/").await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{then}, request {i}: {}",
                reply.body
            );
            assert_eq!(reply.body, "ok");
        }
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            10,
            "{then}: a new connection per request"
        );
        w.stop().await;
    }
}

/// A pod that accepts an HTTP/1.1 upgrade and then echoes bytes.
async fn upgrading_pod() -> SocketAddr {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let ip = format!("127.{}.{}.5", fastrand::u8(1..=250), fastrand::u8(1..=250));
    let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service =
                    service_fn(|mut req: http::Request<hyper::body::Incoming>| async move {
                        let upgrade = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            if let Ok(upgraded) = upgrade.await {
                                let mut io = TokioIo::new(upgraded);
                                let mut buf = [0u8; 64];
                                while let Ok(n) = io.read(&mut buf).await {
                                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        });
                        let response = http::Response::builder()
                            .status(StatusCode::SWITCHING_PROTOCOLS)
                            .header("connection", "upgrade")
                            .header("upgrade", "websocket")
                            .body(Full::<Bytes>::default())
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Opens a WebSocket through wicket: the stream and the response head (lowercase).
async fn websocket_handshake(w: &Wicket) -> (tokio::net::TcpStream, String) {
    let mut stream = tokio::net::TcpStream::connect(w.http).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    (
        stream,
        String::from_utf8(head).unwrap().to_ascii_lowercase(),
    )
}

#[tokio::test]
async fn websocket_upgrades_pass_through_both_ways() {
    let addr = upgrading_pod().await;
    let w = one_pod_world(addr, Config::local()).await;
    let (mut stream, head) = websocket_handshake(&w).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for message in [&b"ping"[..], b"hello through the tunnel"] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(DEADLINE, stream.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed, message);
    }
    // An open tunnel would hold shutdown up to its deadline.
    drop(stream);
    w.stop().await;
}

#[tokio::test]
async fn a_websocket_opened_during_the_shutdown_delay_upgrades_and_is_cut_at_the_deadline() {
    let addr = upgrading_pod().await;
    let mut config = Config::local();
    config.shutdown_delay = Duration::from_millis(500);
    config.shutdown_timeout = Duration::from_millis(500);
    let mut w = one_pod_world(addr, config).await;
    let shutdown = tokio::spawn(w.running.take().unwrap().shutdown());
    eventually("not ready", || async {
        (w.admin_get("/readyz").await.status == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    let (mut stream, head) = websocket_handshake(&w).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    stream.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
    // The tunnel is open and busy: shutdown waits for it until its deadline, then cuts it.
    shutdown.await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the tunnel is closed at the shutdown deadline"
    );
}

#[tokio::test]
async fn a_websocket_tunnel_is_closed_after_the_idle_timeout_but_not_while_it_talks() {
    let addr = upgrading_pod().await;
    let mut config = Config::local();
    config.proxy.upstream.read_timeout = Duration::from_millis(400);
    let w = one_pod_world(addr, config).await;
    let (mut stream, head) = websocket_handshake(&w).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // Talking every 100 ms for well over the idle timeout keeps it open.
    for _ in 0..10 {
        stream.write_all(b"ping").await.unwrap();
        let mut echoed = [0u8; 4];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"ping");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Silence closes it.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "an idle tunnel is closed");
    w.stop().await;
}

/// A pod that answers every request on a connection with `answer`, which carries more
/// than one response (a desync attempt); counts connections.
async fn smuggling_pod(answer: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    counting_pod(6, move |mut stream| async move {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_pod_that_answers_more_than_once_never_answers_the_next_client() {
    for answer in [
        // A whole response with a second one glued to it.
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED"[..],
        // Content-Length and chunked: framed by chunked, and the connection is dropped.
        b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED",
    ] {
        let (addr, accepted) = smuggling_pod(answer).await;
        let w = one_pod_world(addr, Config::local()).await;
        for _ in 0..3 {
            let reply = w.get("a.test", "/").await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.body, "ok", "{}", String::from_utf8_lossy(answer));
        }
        // Requests with a body take hyper's client: the same answer there.
        for _ in 0..2 {
            let req = w
                .request(Method::POST, "a.test", "/")
                .body(Full::new(Bytes::from_static(b"x")))
                .unwrap();
            let reply = w.send(req).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.body, "ok", "{}", String::from_utf8_lossy(answer));
        }
        // Every request got a connection of its own: none was trusted after the extra bytes.
        assert_eq!(accepted.load(Ordering::Relaxed), 5);
        w.stop().await;
    }
}
