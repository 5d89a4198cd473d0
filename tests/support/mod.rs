//! End-to-end test harness: wicket started in-process on 127.0.0.1:0, echo pods on their
//! own loopback addresses sharing one port (as pods do), a temporary manifests directory,
//! and a client that sets any Host. Nothing sleeps to synchronise: `eventually` polls
//! with a deadline.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod apiserver;
pub mod h2raw;
pub mod pod;

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
use wicket::controller::cluster::lease::ElectionSettings;
use wicket::controller::cluster::status::{Address, PublishFrom};
use wicket::controller::cluster::ClusterOptions;
use wicket::echo::EchoServer;

/// The address cluster-mode tests publish into Ingress status.
pub const PUBLISHED_IP: &str = "203.0.113.10";
/// The Lease duration of cluster-mode tests: short, so takeovers are quick.
pub const LEASE: Duration = Duration::from_secs(3);

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

/// A loopback address nothing listens on (bound, then closed): a pod that died.
pub async fn dead_address() -> SocketAddr {
    let ip = format!("127.{}.{}.9", fastrand::u8(1..=250), fastrand::u8(1..=250));
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    listener.local_addr().unwrap()
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

/// A selector-less Service with one port named `http` (port 80): its endpoints come from
/// hand-written slices.
pub fn svc(name: &str) -> String {
    format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{name: http, port: 80}}]\n")
}

/// Service `web` over one recording pod (its own slice), Ingress `site` routing all of
/// `a.test` to it, started with `config`.
pub async fn one_pod(pod: &pod::RecordingPod, config: Config) -> Wicket {
    pod_world(
        pod,
        &[ingress("site", &[("a.test", "/", "Prefix", "web")])],
        config,
    )
    .await
}

/// Service `web` over one recording pod (its own slice), and `objects`, started with
/// `config`.
pub async fn pod_world(pod: &pod::RecordingPod, objects: &[String], config: Config) -> Wicket {
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

/// An Ingress routing all of `host` to `service`, with `nginx.ingress.kubernetes.io/`
/// annotations (names without the prefix).
pub fn nginx_annotated(
    name: &str,
    host: &str,
    service: &str,
    annotations: &[(&str, &str)],
) -> String {
    let full: Vec<(String, &str)> = annotations
        .iter()
        .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), *v))
        .collect();
    let pairs: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    annotated(name, &pairs, &[(host, "/", "Prefix", service)])
}

/// The smallest world: Service `web` over `pods`, and Ingress `site` routing all of
/// `a.test` to it.
pub fn site(pods: &[EchoServer]) -> String {
    format!(
        "{CLASS}{}{}",
        service("web", pods),
        ingress("site", &[("a.test", "/", "Prefix", "web")])
    )
}

/// An EndpointSlice of `service`, port `http` = `port`, all endpoints ready.
pub fn slice(service: &str, name: &str, port: u16, ips: &[String]) -> String {
    let mut s = format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\nports:\n- {{name: http, port: {port}}}\nendpoints:"
    );
    s.push_str(if ips.is_empty() { " []\n" } else { "\n" });
    for ip in ips {
        s.push_str(&format!(
            "- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n"
        ));
    }
    s
}

/// An Ingress of class wicket: `rules` are (host, path, pathType, service).
pub fn ingress(name: &str, rules: &[(&str, &str, &str, &str)]) -> String {
    annotated(name, &[], rules)
}

/// [`ingress`] with annotations (name, value).
pub fn annotated(
    name: &str,
    annotations: &[(&str, &str)],
    rules: &[(&str, &str, &str, &str)],
) -> String {
    let mut metadata = format!("  name: {name}\n");
    if !annotations.is_empty() {
        metadata.push_str("  annotations:\n");
        for (k, v) in annotations {
            metadata.push_str(&format!("    {k}: {}\n", serde_json::to_string(v).unwrap()));
        }
    }
    let mut s = format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n{metadata}spec:\n  ingressClassName: wicket\n  rules:\n"
    );
    for (host, path, path_type, service) in rules {
        let host_line = if host.is_empty() {
            String::new()
        } else {
            format!("    host: \"{host}\"\n")
        };
        s.push_str(&format!(
            "  - http:\n      paths:\n      - path: {}\n        pathType: {path_type}\n        backend: {{service: {{name: {service}, port: {{name: http}}}}}}\n{host_line}",
            serde_json::to_string(path).unwrap()
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

    /// Starts wicket in cluster mode against the API server double as `instance` (its
    /// Lease identity and `x-instance` header), without waiting for readiness.
    pub async fn launch_cluster(
        api: &apiserver::ApiServer,
        instance: &str,
        tune: impl FnOnce(&mut ClusterOptions),
    ) -> Wicket {
        Self::launch_cluster_with(api, instance, Config::local(), tune).await
    }

    /// [`Wicket::launch_cluster`] with `config`.
    pub async fn launch_cluster_with(
        api: &apiserver::ApiServer,
        instance: &str,
        config: Config,
        tune: impl FnOnce(&mut ClusterOptions),
    ) -> Wicket {
        let mut options = ClusterOptions {
            client: api.client(instance),
            namespaces: Vec::new(),
            publish: PublishFrom::Addresses(vec![Address::parse(PUBLISHED_IP)]),
            election: ElectionSettings {
                name: "wicket-leader".into(),
                namespace: "ingress".into(),
                identity: instance.into(),
                lease_duration: LEASE,
            },
            controller_name: "wicket.dev/ingress-controller".into(),
            gateway_api_recheck: Some(std::time::Duration::from_millis(200)),
        };
        tune(&mut options);
        let running = app::start(config, Source::Cluster(Box::new(options)))
            .await
            .expect("wicket starts");
        Wicket {
            http: running.http_addr,
            admin: running.admin_addr,
            running: Some(running),
            dir: tempfile::tempdir().unwrap(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Like [`Wicket::launch_cluster`], and waits until it is ready.
    pub async fn start_cluster(api: &apiserver::ApiServer, instance: &str) -> Wicket {
        let w = Self::launch_cluster(api, instance, |_| {}).await;
        w.ready().await;
        w
    }

    pub async fn ready(&self) {
        eventually("readiness", || async {
            (self.admin_get("/readyz").await.status == StatusCode::OK).then_some(())
        })
        .await;
    }

    /// The HTTPS listener's address.
    pub fn https(&self) -> SocketAddr {
        self.running.as_ref().unwrap().https_addr
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

    /// The value of one `/metrics` series (the exact text before the value), 0 if absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.admin_get("/metrics").await.body;
        text.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
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
        let req = Request::get(format!("http://{authority}{path}"))
            .body(Full::<Bytes>::default())
            .unwrap();
        self.h2_send(req).await
    }

    /// One HTTP/2 (prior knowledge, cleartext) request on a new connection.
    pub async fn h2_send(&self, req: Request<Full<Bytes>>) -> Reply {
        let stream = tokio::net::TcpStream::connect(self.http).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
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

// ---------------------------------------------------------------------------------------
// TLS

/// A certificate made at test time: PEM for Secrets, DER to compare with what is served.
pub struct TestCert {
    pub pem: String,
    pub key_pem: String,
    pub der: rustls::pki_types::CertificateDer<'static>,
    pub key_der: rustls::pki_types::PrivateKeyDer<'static>,
}

pub fn test_cert(names: &[&str]) -> TestCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCert {
        pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
        key_der: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    }
}

/// A kubernetes.io/tls Secret holding `cert`.
pub fn tls_secret(name: &str, cert: &TestCert) -> String {
    let indent = |t: &str| t.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert.pem),
        indent(&cert.key_pem)
    )
}

/// Accepts any server certificate: the tests look at which one was served.
#[derive(Debug)]
struct AcceptAny(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub type TlsClientStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS acceptor for a test pod serving `cert`, offering `alpn`.
pub fn tls_acceptor(cert: &TestCert, alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], cert.key_der.clone_key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}

/// A TLS connection to `addr` with `sni` (None: no SNI is sent) offering `alpn`.
pub async fn tls_connect(addr: SocketAddr, sni: Option<&str>, alpn: &[&[u8]]) -> TlsClientStream {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tls_handshake(tcp, sni, alpn).await
}

/// TLS with `sni`, offering HTTP/1.1, over a connection already made (after a PROXY header).
pub async fn tls_over(tcp: tokio::net::TcpStream, sni: &str) -> TlsClientStream {
    tls_handshake(tcp, Some(sni), &[b"http/1.1"]).await
}

async fn tls_handshake(
    tcp: tokio::net::TcpStream,
    sni: Option<&str>,
    alpn: &[&[u8]],
) -> TlsClientStream {
    tls_handshake_as(tcp, sni, alpn, None).await
}

/// A TLS connection to `addr` with `sni`, HTTP/1.1, presenting `client` (chain, leaf
/// first) when the server asks for a certificate.
pub async fn tls_connect_as(
    addr: SocketAddr,
    sni: &str,
    client: Option<(&[&TestCert], &TestCert)>,
) -> TlsClientStream {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tls_handshake_as(tcp, Some(sni), &[b"http/1.1"], client).await
}

async fn tls_handshake_as(
    tcp: tokio::net::TcpStream,
    sni: Option<&str>,
    alpn: &[&[u8]],
    client: Option<(&[&TestCert], &TestCert)>,
) -> TlsClientStream {
    let addr = tcp.peer_addr().unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAny(provider)));
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(
                chain.iter().map(|c| c.der.clone()).collect(),
                key.key_der.clone_key(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = match sni {
        Some(name) => rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap(),
        // An IP address as the name: rustls then sends no SNI.
        None => rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
    };
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// The certificate the server presented.
pub fn served(stream: &TlsClientStream) -> rustls::pki_types::CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// HTTP/1.1 over an established stream; `send` keeps the connection for more requests.
pub struct H1 {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl H1 {
    pub async fn over<IO>(io: IO) -> H1
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        H1 { sender }
    }

    pub async fn get(&mut self, host: &str, path: &str) -> Reply {
        let req = Request::get(path)
            .header("host", host)
            .body(Full::default())
            .unwrap();
        self.send(req).await
    }

    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Reply {
        self.sender.ready().await.unwrap();
        let response = self.sender.send_request(req).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}
