//! Ingress status: the leader writes `status.loadBalancer.ingress` of every Ingress that
//! is ours (Argo CD, Flux and external-dns wait for it), through the status subresource
//! and only when the value differs. An Ingress that stops being ours, and still carries
//! exactly our addresses, gets them cleared; an address another controller wrote is left
//! alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::View;
use crate::controller::index::Key;

/// How long after a failed write the status is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// One entry of a load-balancer status: an IP address or a DNS name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Address {
    Ip(String),
    Hostname(String),
}

impl Address {
    /// `--publish-status-address` values: an IP address, else a hostname.
    pub fn parse(s: &str) -> Self {
        if s.parse::<std::net::IpAddr>().is_ok() {
            Address::Ip(s.to_owned())
        } else {
            Address::Hostname(s.to_owned())
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            Address::Ip(ip) => json!({ "ip": ip }),
            Address::Hostname(h) => json!({ "hostname": h }),
        }
    }
}

/// Where the addresses written into Ingress status come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishFrom {
    /// Neither flag given: status is not written.
    Nothing,
    /// `--publish-service NAMESPACE/NAME`.
    Service(Key),
    /// `--publish-status-address A,B`.
    Addresses(Vec<Address>),
}

/// The addresses of an Ingress's current status, sorted.
pub fn ingress_addresses(ingress: &Ingress) -> Vec<Address> {
    let mut out: Vec<Address> = ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|list| {
            list.iter()
                .filter_map(|e| lb_entry(&e.ip, &e.hostname))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

/// One load-balancer status entry (an Ingress's or a Service's): its IP, else its hostname.
fn lb_entry(ip: &Option<String>, hostname: &Option<String>) -> Option<Address> {
    match (ip, hostname) {
        (Some(ip), _) if !ip.is_empty() => Some(Address::Ip(ip.clone())),
        (_, Some(h)) if !h.is_empty() => Some(Address::Hostname(h.clone())),
        _ => None,
    }
}

/// The addresses of the publish Service: its load-balancer status, else its external IPs,
/// else its cluster IP. `None` while it has none of them.
pub fn service_addresses(service: &Service) -> Option<Vec<Address>> {
    let from_lb: Vec<Address> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|list| {
            list.iter()
                .filter_map(|e| lb_entry(&e.ip, &e.hostname))
                .collect()
        })
        .unwrap_or_default();
    let spec = service.spec.as_ref();
    let external: Vec<Address> = spec
        .and_then(|s| s.external_ips.as_ref())
        .map(|ips| ips.iter().map(|ip| Address::Ip(ip.clone())).collect())
        .unwrap_or_default();
    let cluster: Vec<Address> = spec
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(|ip| vec![Address::Ip(ip.to_owned())])
        .unwrap_or_default();
    let mut chosen = [from_lb, external, cluster]
        .into_iter()
        .find(|v| !v.is_empty())?;
    chosen.sort();
    chosen.dedup();
    Some(chosen)
}

/// Writes status while this replica leads; idle otherwise.
pub async fn run(
    client: Client,
    views: watch::Receiver<Arc<View>>,
    leader: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
) {
    let mut writer = Writer {
        client,
        written: HashMap::new(),
    };
    let mut turns = super::Turns::new(views, leader, stop);
    while let Some(turn) = turns.next().await {
        match turn {
            super::Turn::NotLeading => writer.written.clear(),
            super::Turn::Write(view) => {
                if !writer.sync(&view, turns.leader()).await {
                    turns.retry_after(RETRY);
                }
            }
        }
    }
}

struct Writer {
    client: Client,
    /// What we last wrote per Ingress, and the resourceVersion we saw then: until the watch
    /// shows our write, a rebuild does not write the same value again.
    written: HashMap<Key, (Option<String>, Vec<Address>)>,
}

impl Writer {
    /// Brings every Ingress's status in line with `view`; false if a write failed.
    async fn sync(&mut self, view: &View, leader: &watch::Receiver<bool>) -> bool {
        let Some(addresses) = view.addresses.as_ref() else {
            return true;
        };
        let mut ok = true;
        for ingress in &view.ingresses {
            let desired: &[Address] = if ingress.ours {
                addresses
            } else if !ingress.status.is_empty() && ingress.status == *addresses {
                // Ours before, and the addresses are still the ones we wrote: clear them.
                &[]
            } else {
                continue;
            };
            if ingress.status == desired {
                self.written.remove(&ingress.key);
                continue;
            }
            if let Some((rv, value)) = self.written.get(&ingress.key) {
                if *rv == ingress.resource_version && value == desired {
                    continue;
                }
            }
            let write = super::while_leader(leader, self.patch(&ingress.key, desired));
            match write.await {
                Ok(()) => {
                    info!(ingress = %ingress.key, addresses = ?desired, "Ingress status updated");
                    self.written.insert(
                        ingress.key.clone(),
                        (ingress.resource_version.clone(), desired.to_vec()),
                    );
                }
                Err(super::WriteError::Api(kube::Error::Api(s))) if s.code == 404 => {
                    debug!(ingress = %ingress.key, "Ingress gone before its status was written");
                }
                Err(super::WriteError::NotLeader) => return true,
                Err(e) => {
                    warn!(ingress = %ingress.key, error = %e, "cannot update Ingress status; retrying");
                    ok = false;
                }
            }
        }
        self.written
            .retain(|k, _| view.ingresses.iter().any(|i| i.key == *k));
        ok
    }

    async fn patch(&self, key: &Key, addresses: &[Address]) -> Result<(), kube::Error> {
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &key.namespace);
        // A JSON merge patch replaces the list whole; null removes it.
        let list = if addresses.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::Array(addresses.iter().map(Address::to_json).collect())
        };
        let patch = json!({ "status": { "loadBalancer": { "ingress": list } } });
        api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus,
    };

    fn service(lb: &[&str], external: &[&str], cluster: &str) -> Service {
        Service {
            spec: Some(ServiceSpec {
                cluster_ip: Some(cluster.into()),
                external_ips: Some(external.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(
                        lb.iter()
                            .map(|s| LoadBalancerIngress {
                                ip: s.parse::<std::net::IpAddr>().is_ok().then(|| s.to_string()),
                                hostname: s
                                    .parse::<std::net::IpAddr>()
                                    .is_err()
                                    .then(|| s.to_string()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_load_balancer_wins_then_external_ips_then_the_cluster_ip() {
        assert_eq!(
            service_addresses(&service(
                &["lb.example.com", "203.0.113.9"],
                &["198.51.100.1"],
                "10.0.0.1"
            )),
            Some(vec![
                Address::Ip("203.0.113.9".into()),
                Address::Hostname("lb.example.com".into())
            ])
        );
        assert_eq!(
            service_addresses(&service(&[], &["198.51.100.1"], "10.0.0.1")),
            Some(vec![Address::Ip("198.51.100.1".into())])
        );
        assert_eq!(
            service_addresses(&service(&[], &[], "10.0.0.1")),
            Some(vec![Address::Ip("10.0.0.1".into())])
        );
        assert_eq!(service_addresses(&service(&[], &[], "None")), None);
    }

    #[test]
    fn publish_status_addresses_are_ips_or_hostnames() {
        assert_eq!(Address::parse("10.1.2.3"), Address::Ip("10.1.2.3".into()));
        assert_eq!(
            Address::parse("2001:db8::1"),
            Address::Ip("2001:db8::1".into())
        );
        assert_eq!(
            Address::parse("lb.example.com"),
            Address::Hostname("lb.example.com".into())
        );
    }
}
