//! Request and response bodies at their limits: the size limit, a client that stops
//! sending, a pod that stops reading or stops answering mid-body, and a slow upload that
//! is still moving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::pod::{Behaviour, RecordingPod};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wicket::app::Config;

/// A request body of `chunks` chunks of `size` bytes, `pause` apart.
type Paced = StreamBody<
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>>,
>;

fn paced_body(chunks: usize, size: usize, pause: Duration) -> Paced {
    let stream = futures::stream::unfold(0usize, move |i| async move {
        if i == chunks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        Some((Ok(Frame::data(Bytes::from(vec![b'x'; size]))), i + 1))
    });
    StreamBody::new(Box::pin(stream))
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_gets_413_and_never_completes_at_the_pod() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.proxy.max_request_body = Some(64 * 1024);
    let w = one_pod(&pod, config).await;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(format!("http://{}/upload", w.http))
        .header("host", "a.test")
        .body(paced_body(8, 16 * 1024, Duration::from_millis(5)))
        .unwrap();
    let response = client.request(req).await.expect("an answer, not a reset");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers()["connection"], "close");
    assert!(
        pod.complete().is_empty(),
        "the pod must never get the whole body"
    );
    // Within the limit, a streamed body passes whole.
    let req = Request::post(format!("http://{}/upload", w.http))
        .header("host", "a.test")
        .body(paced_body(4, 16 * 1024, Duration::from_millis(5)))
        .unwrap();
    let response = client.request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let whole = eventually("the whole body at the pod", || async {
        pod.complete()
            .into_iter()
            .find(|r| r.line().starts_with("POST /upload"))
    })
    .await;
    assert_eq!(whole.body.len(), 64 * 1024);
    w.stop().await;
}

#[tokio::test]
async fn no_body_limit_when_it_is_zero() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.proxy.max_request_body = None;
    let w = one_pod(&pod, config).await;
    let body = Bytes::from(vec![b'y'; 3 * 1024 * 1024]);
    let reply = w
        .send(
            w.request(Method::PUT, "a.test", "/big")
                .body(Full::new(body))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(pod.complete()[0].body.len(), 3 * 1024 * 1024);
    w.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_sending_its_body_gets_408_and_the_pod_no_whole_request() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    config.proxy.client_body_timeout = Duration::from_millis(300);
    let w = one_pod(&pod, config).await;
    let mut conn = TcpStream::connect(w.http).await.unwrap();
    conn.write_all(
        b"POST /stalled HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\nonly a part",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, conn.read_to_end(&mut got)).await;
    let got = String::from_utf8_lossy(&got).to_lowercase();
    assert!(got.starts_with("http/1.1 408"), "{got}");
    assert!(got.contains("connection: close"), "{got}");
    assert!(pod.complete().is_empty());
    assert_eq!(
        w.metric("wicket_requests_total{namespace=\"default\",ingress=\"site\",service=\"web\",method=\"POST\",status=\"4xx\"}").await,
        1.0,
        "counted as the client's error"
    );
    w.stop().await;
}

#[tokio::test]
async fn a_slow_upload_that_keeps_moving_outlasts_the_response_timeout() {
    let pod = RecordingPod::start(Behaviour::Ok).await;
    let mut config = Config::local();
    // The whole upload takes ~1.2 s, four times the response timeout: the response
    // timeout counts from the end of the body, and the pod takes every piece at once.
    config.proxy.upstream.response_timeout = Duration::from_millis(300);
    config.proxy.upstream.send_timeout = Duration::from_millis(300);
    let w = one_pod(&pod, config).await;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(format!("http://{}/slow-upload", w.http))
        .header("host", "a.test")
        .body(paced_body(7, 1000, Duration::from_millis(200)))
        .unwrap();
    let response = client.request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(pod.complete()[0].body.len(), 7000);
    w.stop().await;
}

#[tokio::test]
async fn a_pod_that_stops_reading_the_body_gets_504_after_the_send_timeout() {
    let pod = RecordingPod::start(Behaviour::NoRead).await;
    let mut config = Config::local();
    config.proxy.max_request_body = None;
    config.proxy.upstream.send_timeout = Duration::from_millis(300);
    let w = one_pod(&pod, config).await;
    let client = Client::builder(TokioExecutor::new()).build_http();
    // More than the socket buffers between wicket and the pod hold.
    let req = Request::post(format!("http://{}/never-read", w.http))
        .header("host", "a.test")
        .body(paced_body(1024, 64 * 1024, Duration::ZERO))
        .unwrap();
    let response = tokio::time::timeout(DEADLINE, client.request(req))
        .await
        .expect("answered in time");
    match response {
        Ok(response) => assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT),
        // The client may still be writing when the answer comes and the connection closes.
        Err(error) => assert!(!error.is_connect(), "{error}"),
    }
    assert_eq!(
        w.metric("wicket_upstream_timeouts_total{backend=\"default/web:80\"}")
            .await,
        1.0
    );
    w.stop().await;
}

#[tokio::test]
async fn a_pod_that_stalls_mid_response_has_the_client_cut_after_the_read_timeout() {
    let pod = RecordingPod::start(Behaviour::StallBody).await;
    let mut config = Config::local();
    config.proxy.upstream.read_timeout = Duration::from_millis(300);
    let w = one_pod(&pod, config).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = w
        .request(Method::GET, "a.test", "/stall")
        .body(Full::default())
        .unwrap();
    let response = client.request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the head came in time");
    let body = tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .expect("the client is not held for ever");
    assert!(body.is_err(), "the body is cut, not passed off as complete");
    assert_eq!(
        w.metric("wicket_upstream_timeouts_total{backend=\"default/web:80\"}")
            .await,
        1.0
    );
    w.stop().await;
}
