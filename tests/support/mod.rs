//! End-to-end test harness: wicket started in-process on 127.0.0.1:0, echo pods on their
//! own loopback addresses sharing one port (as pods do), a temporary manifests directory,
//! and a client that sets any Host. Nothing sleeps to synchronise: `eventually` polls
//! with a deadline.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tempfile::TempDir;
use wicket::app::{self, Config, Running, Source};
use wicket::echo::EchoServer;

/// How long `eventually` waits before failing a test.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `check` until it returns `Some`, or panics with `what` after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Echo pods named `{prefix}-0..n` on 127.x.y.z addresses that share one port.
pub async fn pods(prefix: &str, n: usize) -> Vec<EchoServer> {
    'attempt: for _ in 0..20 {
        let base = [127, fastrand::u8(1..=250), fastrand::u8(1..=250)];
        let mut port = 0;
        let mut out = Vec::new();
        for i in 0..n {
            let ip = IpAddr::V4(Ipv4Addr::new(base[0], base[1], base[2], 1 + i as u8));
            match EchoServer::start(&format!("{prefix}-{i}"), SocketAddr::new(ip, port)).await {
                Ok(s) => {
                    port = s.addr.port();
                    out.push(s);
                }
                Err(_) => continue 'attempt,
            }
        }
        return out;
    }
    panic!("no free loopback addresses for {prefix}");
}

pub fn ips(pods: &[EchoServer]) -> Vec<String> {
    pods.iter().map(|p| p.addr.ip().to_string()).collect()
}

// ---------------------------------------------------------------------------------------
// Manifests

pub const CLASS: &str = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: wicket\nspec:\n  controller: wicket.dev/ingress-controller\n";

/// A Service with one port named `http` (port 80) and its EndpointSlice listing `pods`.
pub fn service(name: &str, pods: &[EchoServer]) -> String {
    let port = pods.first().map(|p| p.addr.port()).unwrap_or(8080);
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {name}}}\n  ports:\n  - {{name: http, port: 80, targetPort: http-web}}\n{}",
        slice(name, &format!("{name}-slice"), port, &ips(pods))
    )
}

/// An EndpointSlice of `service`, port `http` = `port`, all endpoints ready.
pub fn slice(service: &str, name: &str, port: u16, ips: &[String]) -> String {
    let mut s = format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\nports:\n- {{name: http, port: {port}}}\nendpoints:\n"
    );
    if ips.is_empty() {
        s.push_str("[]\n");
    }
    for ip in ips {
        s.push_str(&format!(
            "- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n"
        ));
    }
    s
}

/// An Ingress of class wicket: `rules` are (host, path, pathType, service).
pub fn ingress(name: &str, rules: &[(&str, &str, &str, &str)]) -> String {
    let mut s = format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}}}\nspec:\n  ingressClassName: wicket\n  rules:\n"
    );
    for (host, path, path_type, service) in rules {
        let host_line = if host.is_empty() {
            String::new()
        } else {
            format!("    host: \"{host}\"\n")
        };
        s.push_str(&format!(
            "  - http:\n      paths:\n      - path: {path}\n        pathType: {path_type}\n        backend: {{service: {{name: {service}, port: {{name: http}}}}}}\n{host_line}"
        ));
    }
    s
}

// ---------------------------------------------------------------------------------------
// wicket under test

pub struct Wicket {
    pub dir: TempDir,
    pub running: Option<Running>,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The echo pod that answered (`x-pod`), or "" when wicket answered itself.
    pub fn pod(&self) -> &str {
        self.headers
            .get("x-pod")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// A request header as the pod saw it (from the echo body), lowercase name.
    pub fn seen(&self, header: &str) -> Option<String> {
        let prefix = format!("{header}: ");
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
    }
}

impl Wicket {
    /// Starts wicket on `manifests` (one file, main.yaml) and waits until it is ready.
    pub async fn start(manifests: &str) -> Wicket {
        Self::start_with(manifests, Config::local()).await
    }

    pub async fn start_with(manifests: &str, config: Config) -> Wicket {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.yaml"), manifests).unwrap();
        let running = app::start(config, Source::Manifests(dir.path().to_owned()))
            .await
            .expect("wicket starts");
        let w = Wicket {
            http: running.http_addr,
            admin: running.admin_addr,
            running: Some(running),
            dir,
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        eventually("readiness", || async {
            (w.admin_get("/readyz").await.status == StatusCode::OK).then_some(())
        })
        .await;
        w
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, file: &str, text: &str) {
        std::fs::write(self.dir.path().join(file), text).unwrap();
    }

    pub fn generation(&self) -> u64 {
        self.running.as_ref().unwrap().snapshot().load().generation
    }

    /// Writes a file and waits until a new snapshot is published.
    pub async fn apply(&self, file: &str, text: &str) {
        let before = self.generation();
        self.write(file, text);
        eventually("a new snapshot", || async {
            (self.generation() > before).then_some(())
        })
        .await;
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Reply {
        let response = self.client.request(req).await.expect("response");
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub fn request(&self, method: Method, host: &str, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.http))
            .header("host", host)
    }

    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.send(
            self.request(Method::GET, host, path)
                .body(Full::default())
                .unwrap(),
        )
        .await
    }

    pub async fn admin_get(&self, path: &str) -> Reply {
        let req = Request::get(format!("http://{}{path}", self.admin))
            .body(Full::default())
            .unwrap();
        self.send(req).await
    }

    pub async fn routes(&self) -> serde_json::Value {
        serde_json::from_str(&self.admin_get("/debug/routes").await.body).unwrap()
    }

    /// Raw bytes over a fresh TCP connection; returns what was read up to the end of the
    /// first response head (or the close of the connection).
    pub async fn raw(&self, bytes: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.http).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let read = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
                if out.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DEADLINE, read).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// One HTTP/2 (prior knowledge, cleartext) request with `:authority` = `authority`.
    pub async fn h2_get(&self, authority: &str, path: &str) -> Reply {
        let stream = tokio::net::TcpStream::connect(self.http).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get(format!("http://{authority}{path}"))
            .body(Full::<Bytes>::default())
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}
