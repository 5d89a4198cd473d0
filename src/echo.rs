//! A tiny HTTP echo server that stands in for a pod (demo and tests): it answers every
//! request with who it is and what it received, so routing and header rewriting can be
//! seen with `curl`.
//!
//! The response carries `x-pod: NAME`, and a text body: the pod, the request line, then
//! every request header, then the body size. A request that accepts `application/json`
//! gets the same as JSON (`pod`, `method`, `path`, `host`, `proto`, `headers` with every
//! value of each name), as Gateway API conformance's echo backend answers; and
//! `X-Echo-Set-Header: name:value,name2:value2` puts those headers on the response.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running echo pod. Dropping it stops the server.
pub struct EchoServer {
    pub name: String,
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoServer {
    /// Binds `addr` (port 0 picks one) and serves until dropped.
    pub async fn start(name: &str, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let pod: Arc<str> = Arc::from(name);
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let pod = pod.clone();
                // The address this connection came in on: the pod IP even when listening
                // on 0.0.0.0.
                let addr = stream.local_addr().unwrap_or(addr);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let pod = pod.clone();
                        async move { Ok::<_, Infallible>(echo(&pod, addr, req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            name: name.to_owned(),
            addr,
            connections,
            task,
        })
    }

    /// TCP connections accepted so far (shows whether the proxy reuses connections).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

async fn echo(pod: &str, addr: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let received = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let wants_json = parts
        .headers
        .get_all(http::header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("application/json")));
    let mut response = if wants_json {
        json(pod, &parts, received)
    } else {
        text(pod, addr, &parts, received)
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(pod) {
        headers.insert("x-pod", v);
    }
    for set in parts.headers.get_all("x-echo-set-header") {
        for pair in set.to_str().unwrap_or("").split(',') {
            let Some((name, value)) = pair.split_once(':') else {
                continue;
            };
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.trim().as_bytes()),
                HeaderValue::from_str(value.trim()),
            ) {
                headers.append(name, value);
            }
        }
    }
    response
}

fn json(pod: &str, parts: &http::request::Parts, received: usize) -> Response<Full<Bytes>> {
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let values: Vec<serde_json::Value> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned().into())
            .collect();
        headers.insert(name.as_str().to_owned(), values.into());
    }
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        })
        .unwrap_or_default();
    let body = serde_json::json!({
        "pod": pod,
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "host": host,
        "proto": format!("{:?}", parts.version),
        "headers": headers,
        "bodyBytes": received,
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(
    pod: &str,
    addr: SocketAddr,
    parts: &http::request::Parts,
    received: usize,
) -> Response<Full<Bytes>> {
    let mut text = String::new();
    let _ = writeln!(text, "pod: {pod} ({addr})");
    let _ = writeln!(
        text,
        "request: {} {} {:?}",
        parts.method, parts.uri, parts.version
    );
    for (name, value) in &parts.headers {
        let _ = writeln!(text, "{name}: {}", value.to_str().unwrap_or("<binary>"));
    }
    let _ = writeln!(text, "body: {received} bytes");
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
