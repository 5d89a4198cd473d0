//! TLS Secrets: found, of type `kubernetes.io/tls`, PEM that parses, and a key that belongs
//! to the certificate. Each Secret is checked once per build, however many hosts use it.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::controller::index::{Index, Key};
use crate::model::Reason;

pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

pub type Checked = Result<Arc<CertifiedKey>, (Reason, String)>;

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
            Some(secret) => certified_key(secret, &self.provider)
                .map(Arc::new)
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

fn secret_data<'s>(secret: &'s Secret, key: &str) -> Option<&'s [u8]> {
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

fn certified_key(secret: &Secret, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let kind = secret.type_.as_deref().unwrap_or("Opaque");
    if kind != TLS_SECRET_TYPE {
        return Err(format!("type is {kind:?}, expected {TLS_SECRET_TYPE:?}"));
    }
    let crt = secret_data(secret, "tls.crt").ok_or("has no tls.crt")?;
    let key = secret_data(secret, "tls.key").ok_or("has no tls.key")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt is not valid PEM: {e}"))?;
    if chain.is_empty() {
        return Err("tls.crt holds no PEM certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        format!("tls.key holds no usable PEM private key (PKCS#1, PKCS#8 or SEC1): {e}")
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            "tls.key does not belong to the certificate in tls.crt".to_owned()
        }
        other => format!("certificate and key cannot be used: {other}"),
    })
}
