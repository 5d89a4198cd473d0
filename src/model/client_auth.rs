//! Client certificates (`auth-tls-*`, INGRESS-NGINX.md §C2): per host, from the oldest
//! Ingress of the host that sets `auth-tls-secret`.
//!
//! As nginx does, the handshake asks for a certificate but never fails for the lack of
//! one (a signature from the client's key is still required when it sends one); the check
//! is made once per connection after the handshake, against the CA bundle of the host the
//! request is for, and answered in HTTP: 400 without a valid certificate, 403 when
//! `auth-tls-match-cn` does not match. The pod is told the outcome in `ssl-client-verify`,
//! `ssl-client-subject-dn`, `ssl-client-issuer-dn` (and `ssl-client-cert` when asked).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::Serialize;

use super::problem::ObjectRef;

/// `auth-tls-verify-client`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyClient {
    /// A valid certificate is required (the default).
    On,
    /// A certificate, if sent, must be valid.
    Optional,
    /// A certificate is asked for and passed on, never checked.
    OptionalNoCa,
}

/// The client-certificate settings of one host.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientAuth {
    /// Unique per build: what a connection's remembered check was made against.
    #[serde(skip)]
    pub id: u64,
    /// The Ingress they come from.
    pub ingress: ObjectRef,
    /// `namespace/name` of the CA Secret.
    pub secret: String,
    pub verify: VerifyClient,
    /// `auth-tls-verify-depth`: CA certificates allowed above the client's (1: signed by a
    /// CA of the bundle directly).
    pub depth: u32,
    /// `auth-tls-pass-certificate-to-upstream`.
    pub pass_certificate: bool,
    /// `auth-tls-match-cn`, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_cn: Option<String>,
    /// `auth-tls-error-page`: a 302 there instead of the 400.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_page: Option<String>,
    /// Why the settings cannot be used (a missing Secret, ...): requests for the host answer
    /// 503.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<Arc<str>>,
    #[serde(skip)]
    pub checks: Option<Checks>,
}

/// The compiled parts: the CA verifier, the one the handshake uses, the CN pattern.
#[derive(Clone)]
pub struct Checks {
    /// Checks a certificate chain against the CA bundle (and its CRL).
    pub chain: Arc<dyn ClientCertVerifier>,
    /// For the handshake: asks for a certificate, accepts any.
    pub handshake: Arc<dyn ClientCertVerifier>,
    pub match_cn: Option<regex::Regex>,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("ingress", &self.ingress)
            .field("secret", &self.secret)
            .field("verify", &self.verify)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ClientAuth {
    fn eq(&self, other: &Self) -> bool {
        self.ingress == other.ingress
            && self.secret == other.secret
            && self.verify == other.verify
            && self.depth == other.depth
            && self.pass_certificate == other.pass_certificate
            && self.match_cn == other.match_cn
            && self.error_page == other.error_page
            && self.broken == other.broken
    }
}

/// What the check of a connection's certificate found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No certificate was sent.
    None,
    Success,
    /// Sent, but not valid for the host's CA bundle: why.
    Failed(String),
}

impl Verdict {
    /// The `ssl-client-verify` value (nginx's `$ssl_client_verify`).
    pub fn header(&self) -> String {
        match self {
            Verdict::None => "NONE".into(),
            Verdict::Success => "SUCCESS".into(),
            Verdict::Failed(why) => format!("FAILED:{why}"),
        }
    }
}

impl ClientAuth {
    /// A new [`ClientAuth::id`].
    pub fn next_id() -> u64 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Checks a connection's certificate chain (leaf first) against the host's bundle.
    pub fn check(&self, chain: &[CertificateDer<'static>]) -> Verdict {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Verdict::None;
        };
        let Some(checks) = &self.checks else {
            return Verdict::Failed("no CA".into());
        };
        if intermediates.len() >= self.depth.max(1) as usize {
            return Verdict::Failed("certificate chain too long".into());
        }
        match checks
            .chain
            .verify_client_cert(leaf, intermediates, UnixTime::now())
        {
            Ok(_) => Verdict::Success,
            Err(e) => Verdict::Failed(e.to_string()),
        }
    }
}

/// The handshake's verifier: asks for a certificate (naming the bundle's CAs), accepts the
/// lack of one and any chain; the client must still prove it holds the key.
#[derive(Debug)]
pub struct AskForCertificate(pub Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for AskForCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Subject or issuer as nginx's `$ssl_client_s_dn` writes it (RFC 2253: most specific
/// first, comma-separated).
pub fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for rdn in name.iter() {
        let attrs: Vec<String> = rdn
            .iter()
            .map(|a| {
                let key = x509_parser::objects::oid2abbrev(
                    a.attr_type(),
                    x509_parser::objects::oid_registry(),
                )
                .map(str::to_owned)
                .unwrap_or_else(|_| a.attr_type().to_id_string());
                let value = a.as_str().unwrap_or("");
                let mut escaped = String::with_capacity(value.len());
                for c in value.chars() {
                    if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
                        escaped.push('\\');
                    }
                    escaped.push(c);
                }
                format!("{key}={escaped}")
            })
            .collect();
        parts.push(attrs.join("+"));
    }
    parts.reverse();
    parts.join(",")
}
