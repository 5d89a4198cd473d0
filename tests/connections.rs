//! Client connections as an attacker and a flaky network hold them: silent and slow
//! clients, idle keep-alive connections, a full listener, and the shutdown sequence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use support::h2raw::{self, RawH2};
use support::pod::{Behaviour, RecordingPod};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wicket::app::Config;
use wicket::proxy::conn::ClientTimeouts;

fn timeouts(header_ms: u64, keepalive_ms: u64) -> ClientTimeouts {
    ClientTimeouts {
        header: Duration::from_millis(header_ms),
        keepalive: Duration::from_millis(keepalive_ms),
        ..ClientTimeouts::default()
    }
}

/// Reads until the peer closes the connection (true) or `DEADLINE` passes (false);
/// whatever was read is returned too.
async fn until_closed(stream: &mut TcpStream) -> (bool, Vec<u8>) {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(DEADLINE, read).await.is_ok();
    (closed, got)
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_client_header_timeout() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.client_timeouts = timeouts(300, 60_000);
    let w = one_pod(&pod, config).await;
    let mut silent = TcpStream::connect(w.http).await.unwrap();
    let (closed, got) = until_closed(&mut silent).await;
    assert!(closed, "a silent connection must not stay open");
    assert!(got.is_empty(), "nothing is answered to nothing");
    assert_eq!(
        w.metric("wicket_connections_closed_total{listener=\"http\",reason=\"header_timeout\"}")
            .await,
        1.0
    );
    w.stop().await;
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_cut_off_at_the_header_timeout() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.client_timeouts = timeouts(400, 60_000);
    let w = one_pod(&pod, config).await;
    let mut slow = TcpStream::connect(w.http).await.unwrap();
    let started = Instant::now();
    let drip = async {
        for b in b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: ".iter().cycle() {
            if slow.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let _ = tokio::time::timeout(DEADLINE, drip).await;
    assert!(
        started.elapsed() < DEADLINE,
        "a slowloris client must be disconnected"
    );
    assert!(pod.received().is_empty());
    w.stop().await;
}

#[tokio::test]
async fn an_idle_keepalive_connection_is_closed_but_a_slow_request_is_not() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.client_timeouts = timeouts(60_000, 300);
    let w = one_pod(&pod, config).await;
    let mut conn = TcpStream::connect(w.http).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let (closed, got) = until_closed(&mut conn).await;
    assert!(closed, "the idle connection must be closed");
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");

    // A request that takes longer than the keep-alive timeout is not idle.
    pod.set(Behaviour::Slow(800));
    let reply = w.get("a.test", "/slow").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        w.metric("wicket_connections_closed_total{listener=\"http\",reason=\"keepalive_timeout\"}")
            .await
            >= 1.0
    );
    w.stop().await;
}

#[tokio::test]
async fn silent_sockets_cannot_starve_a_real_client() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.max_connections = 8;
    let w = one_pod(&pod, config).await;
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(w.http).await.unwrap());
    }
    // Let the listener register all eight before the real client comes.
    eventually("eight open connections", || async {
        (w.metric("wicket_open_connections{listener=\"http\"}").await >= 8.0).then_some(())
    })
    .await;
    let reply = w.get("a.test", "/").await;
    assert_eq!(reply.status, StatusCode::OK, "the real client is served");
    let (closed, _) = until_closed(&mut silent[0]).await;
    assert!(closed, "the longest-idle silent socket made room");
    assert!(
        w.metric("wicket_connections_closed_total{listener=\"http\",reason=\"evicted\"}")
            .await
            >= 1.0
    );
    w.stop().await;
}

#[tokio::test]
async fn a_full_listener_never_cuts_a_request_in_flight() {
    let pod = RecordingPod::start(Behaviour::Slow(600)).await;
    let mut config = Config::local();
    config.max_connections = 2;
    let w = one_pod(&pod, config).await;
    let busy: Vec<_> = (0..2)
        .map(|i| {
            let req = w.request(http::Method::GET, "a.test", &format!("/busy-{i}"));
            let client = support_client();
            tokio::spawn(async move {
                client
                    .request(req.body(http_body_util::Full::default()).unwrap())
                    .await
            })
        })
        .collect();
    eventually("two requests at the pod", || async {
        (pod.received().len() >= 2).then_some(())
    })
    .await;
    // The third client waits for a slot rather than taking one from a busy connection.
    let third = w.get("a.test", "/third").await;
    assert_eq!(third.status, StatusCode::OK);
    for handle in busy {
        let response = handle.await.unwrap().expect("the busy requests complete");
        assert_eq!(response.status(), StatusCode::OK);
    }
    w.stop().await;
}

fn support_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

#[tokio::test]
async fn during_the_shutdown_delay_clients_are_told_to_go_elsewhere() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.shutdown_delay = Duration::from_secs(2);
    let mut w = one_pod(&pod, config).await;
    // Connections made before SIGTERM: one HTTP/1.1 keep-alive, one HTTP/2.
    let mut h1 = TcpStream::connect(w.http).await.unwrap();
    h1.write_all(b"GET /before HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 4096];
    let n = h1.read(&mut first).await.unwrap();
    assert!(!String::from_utf8_lossy(&first[..n]).contains("connection: close"));
    let mut h2 = RawH2::connect(w.http).await;
    h2.headers(
        1,
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "a.test"),
            (":path", "/h2"),
        ],
        true,
    )
    .await;
    assert!(matches!(
        h2.outcome(1).await,
        h2raw::Outcome::Response { status: 200, .. }
    ));

    let running = w.running.take().unwrap();
    let shutdown = tokio::spawn(running.shutdown());
    eventually("not ready", || async {
        (w.admin_get("/readyz").await.status == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    // Still served, but told to close.
    h1.write_all(b"GET /during HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let (closed, got) = until_closed(&mut h1).await;
    let got = String::from_utf8_lossy(&got).to_lowercase();
    assert!(got.starts_with("http/1.1 200"), "{got}");
    assert!(got.contains("connection: close"), "{got}");
    assert!(closed, "the client's connection closes after the response");
    // HTTP/2 gets GOAWAY; the client keeps reading (acknowledging the server's PING) until
    // the connection closes, as real clients do.
    let mut goaway = false;
    while let Some(frame) = h2.next_frame().await {
        goaway |= frame.kind == h2raw::GOAWAY;
    }
    assert!(goaway);
    shutdown.await.unwrap();
}

#[tokio::test]
async fn shutdown_ends_when_the_last_request_does_not_at_the_deadline() {
    let pod = RecordingPod::start(Behaviour::Slow(500)).await;
    let mut config = Config::local();
    config.shutdown_timeout = Duration::from_secs(30);
    let mut w = one_pod(&pod, config).await;
    // A silent connection, a half-sent head and an idle keep-alive connection must not
    // hold the exit up; the request in flight must finish.
    let _silent = TcpStream::connect(w.http).await.unwrap();
    let mut partial = TcpStream::connect(w.http).await.unwrap();
    partial.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let in_flight = {
        let req = w
            .request(http::Method::GET, "a.test", "/slow")
            .body(http_body_util::Full::default())
            .unwrap();
        let client = support_client();
        tokio::spawn(async move { client.request(req).await })
    };
    eventually("the request at the pod", || async {
        (!pod.received().is_empty()).then_some(())
    })
    .await;
    let started = Instant::now();
    w.running.take().unwrap().shutdown().await;
    let took = started.elapsed();
    let response = in_flight
        .await
        .unwrap()
        .expect("the request in flight finishes");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        took < Duration::from_secs(10),
        "shutdown waited {took:?}: it should end with the last request, not at the 30 s deadline"
    );
}

#[tokio::test]
async fn at_the_shutdown_deadline_stuck_requests_are_cut() {
    let pod = RecordingPod::start(Behaviour::NoRead).await;
    let mut config = Config::local();
    config.shutdown_timeout = Duration::from_millis(300);
    let mut w = one_pod(&pod, config).await;
    let mut stuck = TcpStream::connect(w.http).await.unwrap();
    stuck
        .write_all(b"GET /stuck HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    eventually("the request at the pod", || async {
        (!pod.received().is_empty()).then_some(())
    })
    .await;
    w.running.take().unwrap().shutdown().await;
    let (closed, _) = until_closed(&mut stuck).await;
    assert!(closed);
}

/// Writes `frame` over and over without reading; returns the bytes written before a write
/// stalled for a second (the server stopped reading), or None if 64 MiB went through.
async fn flood_until_held_back(h2: &mut RawH2, kind: u8, payload: &[u8]) -> Option<usize> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(&[kind, 0, 0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    let batch: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * 1024)
        .collect();
    let mut written = 0;
    while written < 64 << 20 {
        match tokio::time::timeout(Duration::from_secs(1), h2.stream_mut().write_all(&batch)).await
        {
            Ok(Ok(())) => written += batch.len(),
            Ok(Err(_)) | Err(_) => return Some(written),
        }
    }
    None
}

#[tokio::test]
async fn http2_ping_and_settings_floods_from_a_client_that_never_reads_are_held_back() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let w = one_pod(&pod, Config::local()).await;
    for (kind, payload) in [
        (h2raw::PING, &[7u8; 8][..]),
        (h2raw::SETTINGS, &[0u8, 3, 0, 0, 0, 100][..]),
    ] {
        let mut h2 = RawH2::connect(w.http).await;
        let held = flood_until_held_back(&mut h2, kind, payload).await;
        assert!(
            held.is_some(),
            "frame type {kind}: 64 MiB of frames went in without wicket pushing back"
        );
    }
    // Other clients are served meanwhile.
    assert_eq!(w.get("a.test", "/").await.status, StatusCode::OK);
    w.stop().await;
}

#[tokio::test]
async fn http2_streams_beyond_the_concurrency_limit_are_refused() {
    let pod = RecordingPod::start(Behaviour::Slow(2_000)).await;
    let w = one_pod(&pod, Config::local()).await;
    let mut h2 = RawH2::connect(w.http).await;
    // Wait for the server's SETTINGS before opening streams.
    while let Some(frame) = h2.next_frame().await {
        if frame.kind == h2raw::SETTINGS {
            break;
        }
    }
    for i in 0..300u32 {
        h2.headers(
            1 + 2 * i,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "a.test"),
                (":path", "/"),
            ],
            true,
        )
        .await;
    }
    let mut refused = 0;
    let read = async {
        while let Some(frame) = h2.next_frame().await {
            if frame.kind == h2raw::RST_STREAM && frame.payload == [0, 0, 0, 7] {
                refused += 1;
                if refused == 300 - 256 {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DEADLINE, read).await;
    assert_eq!(
        refused,
        300 - 256,
        "streams past 256 are refused (REFUSED_STREAM)"
    );
    // A client that stops reading would hold the drain up to the shutdown deadline.
    drop(h2);
    w.stop().await;
}

#[tokio::test]
async fn the_connection_limit_counts_http_and_https_together() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.max_connections = 4;
    let w = one_pod(&pod, config).await;
    let mut plain = Vec::new();
    for _ in 0..4 {
        plain.push(TcpStream::connect(w.http).await.unwrap());
    }
    eventually("four open connections", || async {
        (w.metric("wicket_open_connections{listener=\"http\"}").await >= 4.0).then_some(())
    })
    .await;
    // A TLS client on the other listener makes room by closing a silent plain one.
    let tls = tls_connect(w.https(), Some("a.test"), &[b"http/1.1"]).await;
    let mut h1 = H1::over(tls).await;
    assert_eq!(h1.get("a.test", "/").await.status, StatusCode::OK);
    let (closed, _) = until_closed(&mut plain[0]).await;
    assert!(closed, "the longest-idle plain connection made room");
    w.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_its_response_is_cut_off_at_the_send_timeout() {
    let size = 64 << 20;
    let pod = RecordingPod::start(Behaviour::Large(size)).await;
    let mut config = Config::local();
    config.client_timeouts.send = Duration::from_millis(300);
    let w = one_pod(&pod, config).await;
    let mut reader = TcpStream::connect(w.http).await.unwrap();
    reader
        .write_all(b"GET /big HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    // Read nothing until well past the send timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (closed, got) = until_closed(&mut reader).await;
    assert!(
        closed,
        "a client that does not read must not hold its connection"
    );
    assert!(got.len() < size, "the response cannot have been sent whole");
    assert_eq!(
        w.metric("wicket_connections_closed_total{listener=\"http\",reason=\"send_timeout\"}")
            .await,
        1.0
    );
    // A client that reads gets the whole of it.
    pod.set(Behaviour::Large(1 << 20));
    let reply = w.get("a.test", "/big").await;
    assert_eq!(reply.body.len(), 1 << 20);
    w.stop().await;
}
