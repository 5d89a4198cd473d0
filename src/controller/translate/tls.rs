//! TLS Secrets to certificates: found, of type `kubernetes.io/tls`, PEM that parses (RSA,
//! ECDSA; PKCS#1, PKCS#8, SEC1 keys), and a key that belongs to the certificate. Each
//! Secret is checked once per build, however many hosts use it.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::controller::index::{Index, Key};
use crate::model::{Certificate, ObjectRef, Reason};

pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

pub type Checked = Result<Arc<Certificate>, (Reason, String)>;

pub struct SecretChecker<'a> {
    index: &'a Index,
    provider: CryptoProvider,
    cache: HashMap<Key, Checked>,
}

impl<'a> SecretChecker<'a> {
    pub fn new(index: &'a Index) -> Self {
        Self {
            index,
            provider: rustls::crypto::aws_lc_rs::default_provider(),
            cache: HashMap::new(),
        }
    }

    pub fn check(&mut self, namespace: &str, name: &str) -> Checked {
        let key = Key::new(namespace, name);
        if let Some(hit) = self.cache.get(&key) {
            return hit.clone();
        }
        let checked = match self.index.secrets.get(&key) {
            None => Err((
                Reason::TLSSecretNotFound,
                format!("Secret {namespace}/{name} not found"),
            )),
            Some(secret) => certificate(secret, &self.provider)
                .map(|(key, names, not_after, fingerprint)| {
                    Arc::new(Certificate {
                        secret: ObjectRef::namespaced("Secret", namespace, name),
                        key: Arc::new(key),
                        names,
                        not_after,
                        fingerprint,
                    })
                })
                .map_err(|why| {
                    (
                        Reason::TLSSecretInvalid,
                        format!("Secret {namespace}/{name}: {why}"),
                    )
                }),
        };
        self.cache.insert(key, checked.clone());
        checked
    }
}

pub(super) fn secret_data<'s>(secret: &'s Secret, key: &str) -> Option<&'s [u8]> {
    // `stringData` is write-only in a cluster but common in manifest files; it wins, as
    // the API server would merge it over `data`.
    if let Some(s) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(s.as_bytes());
    }
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.as_slice())
}

type Parsed = (CertifiedKey, Vec<String>, SystemTime, u64);

fn certificate(secret: &Secret, provider: &CryptoProvider) -> Result<Parsed, String> {
    let kind = secret.type_.as_deref().unwrap_or("Opaque");
    if kind != TLS_SECRET_TYPE {
        return Err(format!("type is {kind:?}, expected {TLS_SECRET_TYPE:?}"));
    }
    let crt = secret_data(secret, "tls.crt").ok_or("has no tls.crt")?;
    let key = secret_data(secret, "tls.key").ok_or("has no tls.key")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt is not valid PEM: {e}"))?;
    let Some(leaf) = chain.first() else {
        return Err("tls.crt holds no PEM certificate".into());
    };
    let (names, not_after) = describe(leaf)?;
    let key_der = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        format!("tls.key holds no usable PEM private key (PKCS#1, PKCS#8 or SEC1): {e}")
    })?;
    let mut hasher = std::hash::DefaultHasher::new();
    for cert in &chain {
        cert.as_ref().hash(&mut hasher);
    }
    key_der.secret_der().hash(&mut hasher);
    let fingerprint = hasher.finish();
    let certified = CertifiedKey::from_der(chain, key_der, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            "tls.key does not belong to the certificate in tls.crt".to_owned()
        }
        other => format!("certificate and key cannot be used: {other}"),
    })?;
    Ok((certified, names, not_after, fingerprint))
}

/// The end-entity certificate's DNS names (subjectAltName, else the CN) and expiry.
fn describe(leaf: &CertificateDer<'_>) -> Result<(Vec<String>, SystemTime), String> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| format!("tls.crt is not an X.509 certificate: {e}"))?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_ascii_lowercase))
            .collect();
    }
    let seconds = cert.validity().not_after.timestamp();
    let not_after = if seconds >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds as u64)
    } else {
        SystemTime::UNIX_EPOCH
    };
    Ok((names, not_after))
}

/// The CA bundle of an `auth-tls-secret` (`ca.crt`, and `ca.crl` if present) as a chain
/// verifier; the error never quotes the Secret.
pub fn client_ca(
    secret: &Secret,
    provider: &CryptoProvider,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    use rustls::pki_types::CertificateRevocationListDer;
    let Some(pem) = secret_data(secret, "ca.crt") else {
        return Err("has no key \"ca.crt\"".into());
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|_| "ca.crt is not PEM certificates".to_owned())?;
        roots
            .add(cert)
            .map_err(|e| format!("ca.crt holds a certificate that cannot be a CA ({e})"))?;
    }
    if roots.is_empty() {
        return Err("ca.crt holds no certificate".into());
    }
    let mut crls = Vec::new();
    if let Some(pem) = secret_data(secret, "ca.crl") {
        for crl in CertificateRevocationListDer::pem_slice_iter(pem) {
            crls.push(crl.map_err(|_| "ca.crl is not a PEM CRL".to_owned())?);
        }
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(provider.clone()),
    )
    .with_crls(crls)
    .allow_unauthenticated()
    .build()
    .map_err(|e| format!("the CA bundle cannot be used ({e})"))
}
