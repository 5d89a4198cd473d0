//! TLS termination: rustls, with the certificate for each handshake chosen by SNI from
//! the snapshot current at that moment (exact host, wildcard host, default certificate,
//! self-signed fallback). A rotated Secret is served from the next handshake on; open
//! connections keep the certificate they were made with.
//!
//! The ClientHello is read first (`LazyConfigAcceptor`) so a failed handshake can be logged
//! with the name the client asked for.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;
use tracing::info;

use super::conn::ClientIo;
use crate::controller::publish::SharedSnapshot;

/// A client has this long to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS sessions kept for resumption by session ID / stateful tickets.
const SESSION_CACHE_SIZE: usize = 8192;
/// Common name of the certificate made at start-up when none is configured.
pub const SELF_SIGNED_NAME: &str = "wicket default certificate";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make the self-signed default certificate: {0}")]
    SelfSigned(String),
    #[error("cannot set up TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// Handshakes since start, for `/debug/routes` and `/metrics` (the same counters), and how
/// often each certificate was chosen (the dashboard).
#[derive(Clone, Debug, Default)]
pub struct TlsStats {
    pub handshakes: prometheus_client::metrics::counter::Counter,
    pub failures: prometheus_client::metrics::counter::Counter,
    pub served: Arc<Served>,
}

/// ClientHellos answered with each certificate since start, by the certificate's
/// fingerprint (a rotated Secret's new certificate counts from zero). Bounded: past
/// [`Served::MAX`] certificates, new ones are not counted.
#[derive(Debug, Default)]
pub struct Served(dashmap::DashMap<u64, std::sync::atomic::AtomicU64, foldhash::fast::RandomState>);

impl Served {
    pub const MAX: usize = 4096;

    fn count(&self, fingerprint: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(n) = self.0.get(&fingerprint) {
            n.fetch_add(1, Relaxed);
        } else if self.0.len() < Self::MAX {
            self.0.entry(fingerprint).or_default().fetch_add(1, Relaxed);
        }
    }

    /// How often the certificate with `fingerprint` was served.
    pub fn get(&self, fingerprint: u64) -> u64 {
        self.0
            .get(&fingerprint)
            .map_or(0, |n| n.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Picks the certificate for a ClientHello from the current snapshot.
#[derive(Debug)]
struct SnapshotResolver {
    snapshot: SharedSnapshot,
    fallback: Arc<CertifiedKey>,
    served: Arc<Served>,
}

/// `Foo.Example.COM.` → `foo.example.com`, borrowing when nothing changes.
fn normalize_sni(name: &str) -> Cow<'_, str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

impl ResolvesServerCert for SnapshotResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().map(normalize_sni);
        let snapshot = self.snapshot.load();
        Some(match snapshot.tls.certificate_for(sni.as_deref()) {
            Some(cert) => {
                self.served.count(cert.fingerprint);
                cert.key.clone()
            }
            None => self.fallback.clone(),
        })
    }
}

/// A certificate made at start-up (ECDSA P-256), for when no default is configured.
pub fn self_signed() -> Result<Arc<CertifiedKey>, TlsError> {
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec!["wicket.invalid".to_owned()])
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, SELF_SIGNED_NAME);
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let certified = CertifiedKey::from_der(vec![cert.der().clone()], key_der, &provider)?;
    Ok(Arc::new(certified))
}

/// The cipher suites, in the order the server prefers them: AES-128-GCM first. It is as
/// secure in practice as AES-256-GCM, and its SHA-256 key schedule runs on the SHA
/// instructions of current x86 and ARM CPUs, where the SHA-384 of AES-256-GCM often has
/// no hardware path (aws-lc uses its vector SHA-512 code only on Intel). Clients that
/// prefer ChaCha20 (no AES instructions) still get it when they offer nothing else.
fn cipher_suites() -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}

/// Terminates TLS on accepted connections.
pub struct Terminator {
    config: Arc<ServerConfig>,
    stats: TlsStats,
    /// For the hosts that ask for client certificates (`auth-tls-*`).
    snapshot: SharedSnapshot,
    /// Their configurations (the shared one plus a certificate request), by
    /// [`crate::model::ClientAuth::id`]; dropped whole when it grows past a few hundred.
    client_auth: std::sync::Mutex<std::collections::HashMap<u64, Arc<ServerConfig>>>,
}

impl Terminator {
    /// TLS 1.3 and 1.2, ALPN `h2` then `http/1.1`, resumption by tickets and by cache,
    /// and the server's cipher suite order ([`cipher_suites`]).
    pub fn new(
        snapshot: SharedSnapshot,
        fallback: Arc<CertifiedKey>,
        stats: TlsStats,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::CryptoProvider {
            cipher_suites: cipher_suites(),
            ..rustls::crypto::aws_lc_rs::default_provider()
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SnapshotResolver {
                snapshot: snapshot.clone(),
                fallback,
                served: stats.served.clone(),
            }));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.ignore_client_order = true;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        Ok(Self {
            config: Arc::new(config),
            stats,
            snapshot,
            client_auth: std::sync::Mutex::default(),
        })
    }

    /// The configuration for a ClientHello: the shared one, or, for a host with
    /// `auth-tls-*`, one that asks for the client's certificate.
    fn config_for(&self, sni: Option<&str>) -> Arc<ServerConfig> {
        let Some(sni) = sni else {
            return self.config.clone();
        };
        let snapshot = self.snapshot.load();
        if !snapshot.tls.has_client_auth() {
            return self.config.clone();
        }
        let sni = normalize_sni(sni);
        match snapshot
            .tls
            .client_auth(&sni)
            .and_then(|a| a.checks.as_ref())
        {
            Some(checks) => {
                let id = snapshot.tls.client_auth(&sni).map_or(0, |a| a.id);
                let mut cache = self
                    .client_auth
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(config) = cache.get(&id) {
                    return config.clone();
                }
                let Some(config) = self.with_client_auth(checks) else {
                    return self.config.clone();
                };
                if cache.len() >= 256 {
                    cache.clear();
                }
                cache.insert(id, config.clone());
                config
            }
            None => self.config.clone(),
        }
    }

    /// The shared configuration, asking for a client certificate with `checks`.
    fn with_client_auth(&self, checks: &crate::model::Checks) -> Option<Arc<ServerConfig>> {
        let base = &self.config;
        let mut config = ServerConfig::builder_with_provider(base.crypto_provider().clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .ok()?
            .with_client_cert_verifier(checks.handshake.clone())
            .with_cert_resolver(base.cert_resolver.clone());
        config.alpn_protocols = base.alpn_protocols.clone();
        config.ignore_client_order = base.ignore_client_order;
        config.session_storage = base.session_storage.clone();
        config.ticketer = base.ticketer.clone();
        Some(Arc::new(config))
    }

    /// Completes the handshake, or logs why it failed (peer, SNI, reason) and counts it.
    pub async fn accept(&self, stream: ClientIo, peer: SocketAddr) -> Option<TlsStream<ClientIo>> {
        let handshake = async {
            let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
                .await
                .map_err(|e| (None, e.to_string()))?;
            let sni = start.client_hello().server_name().map(str::to_owned);
            let config = self.config_for(sni.as_deref());
            match start.into_stream(config).await {
                Ok(stream) => Ok(stream),
                Err(e) => Err((sni, e.to_string())),
            }
        };
        let outcome = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(outcome) => outcome,
            Err(_) => Err((
                None,
                format!("no complete handshake within {HANDSHAKE_TIMEOUT:?}"),
            )),
        };
        match outcome {
            Ok(stream) => {
                self.stats.handshakes.inc();
                Some(stream)
            }
            Err((sni, reason)) => {
                self.stats.failures.inc();
                info!(%peer, sni = sni.as_deref().unwrap_or(""), %reason, "tls handshake failed");
                None
            }
        }
    }
}
