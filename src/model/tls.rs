//! TLS in the snapshot: which certificate each SNI name gets, and why.
//!
//! TLS hosts come from the Ingresses' `spec.tls[].hosts`; each is bound to the certificate
//! of its Secret, or to the default certificate with the reason. An SNI name looks up its
//! exact host, then a wildcard host (`*.example.com` covers one extra label), then the
//! default certificate (`--default-certificate`, else the self-signed one made at start-up,
//! which lives outside the snapshot).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use foldhash::fast::RandomState;
use rustls::sign::CertifiedKey;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::client_auth::ClientAuth;
use super::problem::ObjectRef;
use super::table::{wildcard_suffix, HostMatch};

/// A certificate and key from a Secret, checked and ready to serve.
pub struct Certificate {
    pub secret: ObjectRef,
    pub key: Arc<CertifiedKey>,
    /// DNS names of the end-entity certificate (subjectAltName, else the CN).
    pub names: Vec<String>,
    pub not_after: SystemTime,
    /// Identifies the bytes of the chain and key: a rotated Secret compares unequal, so the
    /// new certificate is published.
    pub fingerprint: u64,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("secret", &self.secret)
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.secret == other.secret && self.fingerprint == other.fingerprint
    }
}

impl Eq for Certificate {}

impl Certificate {
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.not_after <= now
    }

    /// Whether one of the certificate's names covers `host` (exact, or a `*.` name one
    /// label up). A wildcard TLS host is covered by the same wildcard name.
    pub fn covers(&self, host: &HostMatch) -> bool {
        let wanted = match host {
            HostMatch::Exact(h) => h.as_str(),
            HostMatch::Wildcard(suffix) => {
                return self.names.iter().any(|n| {
                    n.strip_prefix("*.")
                        .is_some_and(|s| s.eq_ignore_ascii_case(suffix))
                });
            }
            HostMatch::Any => return true,
        };
        self.names.iter().any(|name| {
            if let Some(suffix) = name.strip_prefix("*.") {
                wildcard_suffix(wanted).is_some_and(|rest| rest.eq_ignore_ascii_case(suffix))
            } else {
                name.eq_ignore_ascii_case(wanted)
            }
        })
    }
}

impl Serialize for Certificate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry(
            "secret",
            &format!(
                "{}/{}",
                self.secret.namespace.as_deref().unwrap_or(""),
                self.secret.name
            ),
        )?;
        map.serialize_entry("names", &self.names)?;
        map.serialize_entry(
            "notAfter",
            &humantime::format_rfc3339_seconds(self.not_after).to_string(),
        )?;
        map.serialize_entry("expired", &self.is_expired(SystemTime::now()))?;
        map.end()
    }
}

/// What a TLS host is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsBinding {
    Secret(Arc<Certificate>),
    /// The default certificate, and why the host's own is not used.
    Default(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsHost {
    pub host: HostMatch,
    /// The Ingress whose `spec.tls` lists this host (the oldest, when several do).
    pub ingress: Arc<ObjectRef>,
    pub binding: TlsBinding,
    /// Whether that Ingress allows the plain-HTTP → HTTPS redirect.
    pub redirect: bool,
}

impl Serialize for TlsHost {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("host", &self.host.to_string())?;
        map.serialize_entry("ingress", self.ingress.as_ref())?;
        match &self.binding {
            TlsBinding::Secret(cert) => map.serialize_entry("certificate", cert.as_ref())?,
            TlsBinding::Default(why) => map.serialize_entry("defaultCertificateBecause", why)?,
        }
        map.serialize_entry("sslRedirect", &self.redirect)?;
        map.end()
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsTable {
    exact: HashMap<Box<str>, TlsHost, RandomState>,
    wildcard: HashMap<Box<str>, TlsHost, RandomState>,
    default: Option<Arc<Certificate>>,
    /// Client-certificate settings by host (`auth-tls-*`): exact names, then wildcards.
    client_auth: HashMap<Box<str>, Arc<ClientAuth>, RandomState>,
    client_auth_wildcard: HashMap<Box<str>, Arc<ClientAuth>, RandomState>,
}

impl TlsTable {
    /// The TLS host entry for a normalised host name: exact, then wildcard.
    pub fn host(&self, host: &str) -> Option<&TlsHost> {
        if let Some(entry) = self.exact.get(host) {
            return Some(entry);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        self.wildcard.get(wildcard_suffix(host)?)
    }

    /// The entry for a TLS host exactly as listed (`*.foo.com` finds the wildcard entry).
    pub fn entry(&self, host: &HostMatch) -> Option<&TlsHost> {
        match host {
            HostMatch::Exact(name) => self.exact.get(name.as_str()),
            HostMatch::Wildcard(suffix) => self.wildcard.get(suffix.as_str()),
            HostMatch::Any => None,
        }
    }

    /// The certificate for a (normalised) SNI name: its host's own, else the configured
    /// default; `None` means the self-signed fallback.
    pub fn certificate_for(&self, sni: Option<&str>) -> Option<&Arc<Certificate>> {
        match sni.and_then(|name| self.host(name)).map(|h| &h.binding) {
            Some(TlsBinding::Secret(cert)) => Some(cert),
            _ => self.default.as_ref(),
        }
    }

    /// The client-certificate settings of a normalised host name, if it has any.
    pub fn client_auth(&self, host: &str) -> Option<&Arc<ClientAuth>> {
        if let Some(auth) = self.client_auth.get(host) {
            return Some(auth);
        }
        if self.client_auth_wildcard.is_empty() {
            return None;
        }
        self.client_auth_wildcard.get(wildcard_suffix(host)?)
    }

    /// Whether any host asks for client certificates.
    pub fn has_client_auth(&self) -> bool {
        !self.client_auth.is_empty() || !self.client_auth_wildcard.is_empty()
    }

    /// Every host with client-certificate settings (`*.` for wildcards), in name order.
    pub fn client_auth_hosts(&self) -> Vec<(String, &Arc<ClientAuth>)> {
        let mut all: Vec<(String, &Arc<ClientAuth>)> = self
            .client_auth
            .iter()
            .map(|(h, a)| (h.to_string(), a))
            .chain(
                self.client_auth_wildcard
                    .iter()
                    .map(|(h, a)| (format!("*.{h}"), a)),
            )
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub fn default_certificate(&self) -> Option<&Arc<Certificate>> {
        self.default.as_ref()
    }

    /// TLS hosts in display order: exact by name, then wildcards.
    pub fn hosts(&self) -> Vec<&TlsHost> {
        let mut exact: Vec<&TlsHost> = self.exact.values().collect();
        exact.sort_by(|a, b| a.host.cmp(&b.host));
        let mut wildcard: Vec<&TlsHost> = self.wildcard.values().collect();
        wildcard.sort_by(|a, b| a.host.cmp(&b.host));
        exact.extend(wildcard);
        exact
    }
}

/// Builds a [`TlsTable`]; the first Ingress to list a host wins it.
#[derive(Default)]
pub struct TlsTableBuilder {
    hosts: BTreeMap<HostMatch, TlsHost>,
    default: Option<Arc<Certificate>>,
    client_auth: BTreeMap<HostMatch, Arc<ClientAuth>>,
}

impl TlsTableBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a TLS host; if the host is already bound to a different certificate (or
    /// reason), returns the entry that holds it. The same binding twice is fine.
    pub fn add(&mut self, entry: TlsHost) -> Result<(), &TlsHost> {
        use std::collections::btree_map::Entry;
        match self.hosts.entry(entry.host.clone()) {
            Entry::Vacant(v) => {
                v.insert(entry);
                Ok(())
            }
            Entry::Occupied(o) => {
                let existing = o.into_mut();
                if existing.binding == entry.binding {
                    Ok(())
                } else {
                    Err(existing)
                }
            }
        }
    }

    pub fn hosts(&self) -> impl Iterator<Item = &TlsHost> {
        self.hosts.values()
    }

    /// Client-certificate settings for a host; the first (oldest Ingress) wins: a later,
    /// different one gets the holder back.
    pub fn add_client_auth(
        &mut self,
        host: HostMatch,
        auth: Arc<ClientAuth>,
    ) -> Result<(), &Arc<ClientAuth>> {
        use std::collections::btree_map::Entry;
        match self.client_auth.entry(host) {
            Entry::Vacant(v) => {
                v.insert(auth);
                Ok(())
            }
            Entry::Occupied(o) => {
                let existing = o.into_mut();
                if existing.secret == auth.secret && existing.ingress == auth.ingress {
                    Ok(())
                } else {
                    Err(existing)
                }
            }
        }
    }

    pub fn set_default(&mut self, cert: Arc<Certificate>) {
        self.default = Some(cert);
    }

    pub fn build(self) -> TlsTable {
        let mut table = TlsTable {
            default: self.default,
            ..TlsTable::default()
        };
        for (host, auth) in self.client_auth {
            match host {
                HostMatch::Exact(name) => {
                    table.client_auth.insert(name.into_boxed_str(), auth);
                }
                HostMatch::Wildcard(suffix) => {
                    table
                        .client_auth_wildcard
                        .insert(suffix.into_boxed_str(), auth);
                }
                HostMatch::Any => {}
            }
        }
        for (host, entry) in self.hosts {
            match host {
                HostMatch::Exact(name) => {
                    table.exact.insert(name.into_boxed_str(), entry);
                }
                HostMatch::Wildcard(suffix) => {
                    table.wildcard.insert(suffix.into_boxed_str(), entry);
                }
                HostMatch::Any => {}
            }
        }
        table
    }
}
