//! Which endpoints of a Service this replica uses: the endpoint conditions, the Service's
//! `internalTrafficPolicy`, and the topology hints of its EndpointSlices, decided as
//! kube-proxy's `CategorizeEndpoints` decides them for the node it runs on.
//!
//! - `internalTrafficPolicy: Local`: only endpoints on this node (ready ones, else serving
//!   and terminating ones); none → the backend has no usable endpoint (503). No fallback to
//!   other nodes, as in kube-proxy. Topology hints play no part.
//! - `Cluster` (the default): when every ready endpoint carries a `forNodes` hint and one
//!   of them names this node, the endpoints hinted for this node; else, when every ready
//!   endpoint carries a `forZones` hint and one names this zone, those hinted for this
//!   zone; else all of them. Within that set, ready endpoints, else serving and terminating
//!   ones. kube-proxy reads the hints only, never `trafficDistribution` (KEP-3015): the
//!   EndpointSlice controller writes hints for `PreferClose`/`PreferSameZone` (zones) and
//!   `PreferSameNode` (nodes and zones), so hints are what decides here too.
//!
//! Decided once per snapshot: the request path only picks among `usable` endpoints, so
//! none of this costs anything per request.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use super::backend::Endpoint;

/// Where this replica runs: what "this node" and "this zone" mean.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Locality {
    /// The node wicket runs on (`NODE_NAME` from the downward API, or `--node-name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Arc<str>>,
    /// Its zone (`--zone`, else the Node's `topology.kubernetes.io/zone` label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<Arc<str>>,
    /// Where the zone came from, or why it is unknown (for `/debug/routes`).
    pub zone_source: String,
    /// wicket runs as a Deployment (the chart says so): most replicas have no local
    /// endpoint of a node-local Service.
    #[serde(skip)]
    pub deployment: bool,
}

impl Locality {
    pub fn new(node: Option<&str>, zone: Option<&str>, zone_source: impl Into<String>) -> Self {
        let clean = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(Arc::from);
        Self {
            node: clean(node),
            zone: clean(zone),
            zone_source: zone_source.into(),
            deployment: false,
        }
    }

    /// Whether node-local or same-zone preferences can be judged at all.
    pub fn is_known(&self) -> bool {
        self.node.is_some() || self.zone.is_some()
    }
}

/// An endpoint's topology hints (`hints.forZones[].name`, `hints.forNodes[].name`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hints {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub for_zones: Vec<Arc<str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub for_nodes: Vec<Arc<str>>,
}

impl Hints {
    pub fn is_empty(&self) -> bool {
        self.for_zones.is_empty() && self.for_nodes.is_empty()
    }
}

/// A Service's traffic policies, as far as the choice of endpoints goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficPolicy {
    /// `internalTrafficPolicy: Local`.
    pub node_local: bool,
    /// `trafficDistribution`, when it is a value Kubernetes knows (shown, and named in
    /// notes: the hints decide).
    pub distribution: Option<Arc<str>>,
}

/// Which rule chose the usable endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Preference {
    /// Every endpoint (by its conditions).
    #[default]
    All,
    /// Those hinted for this node (`forNodes`).
    SameNode,
    /// Those hinted for this zone (`forZones`).
    SameZone,
    /// `internalTrafficPolicy: Local`: those on this node, and nothing else.
    NodeLocal,
}

/// How the usable endpoints of a backend were chosen, for `/debug/routes` and explain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Selection {
    pub preference: Preference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_distribution: Option<Arc<str>>,
    /// Why, when anything but "all endpoints, no hints" applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What [`select`] decided.
pub struct Selected {
    /// Indexes of the usable endpoints.
    pub usable: Vec<u32>,
    /// True when `usable` holds serving-and-terminating endpoints because none is ready.
    pub fallback: bool,
    pub selection: Selection,
}

/// Marks the usable endpoints (and those in another zone than `here`) and says why.
pub fn select(endpoints: &mut [Endpoint], policy: &TrafficPolicy, here: &Locality) -> Selected {
    for e in endpoints.iter_mut() {
        e.usable = false;
        e.remote_zone = match (&e.zone, &here.zone) {
            (Some(theirs), Some(ours)) => theirs != ours,
            _ => false,
        };
    }
    let (preference, note) = if policy.node_local {
        (Preference::NodeLocal, None)
    } else {
        from_hints(endpoints, here)
    };
    let node = here.node.as_deref();
    let zone = here.zone.as_deref();
    let eligible = |e: &Endpoint| match preference {
        Preference::All => true,
        Preference::SameNode => node.is_some_and(|n| e.hints.for_nodes.iter().any(|h| &**h == n)),
        Preference::SameZone => zone.is_some_and(|z| e.hints.for_zones.iter().any(|h| &**h == z)),
        Preference::NodeLocal => node.is_some_and(|n| e.node.as_deref() == Some(n)),
    };
    let pick = |keep: &dyn Fn(&Endpoint) -> bool| -> Vec<u32> {
        (0..endpoints.len() as u32)
            .filter(|&i| {
                let e = &endpoints[i as usize];
                keep(e) && eligible(e)
            })
            .collect()
    };
    let ready = pick(&|e| e.ready);
    let (usable, fallback) = if ready.is_empty() {
        let draining = pick(&|e| e.serving && e.terminating);
        let fallback = !draining.is_empty();
        (draining, fallback)
    } else {
        (ready, false)
    };
    for &i in &usable {
        endpoints[i as usize].usable = true;
    }
    let note = match preference {
        Preference::NodeLocal => Some(node_local_note(endpoints, here, usable.is_empty())),
        _ => note,
    };
    Selected {
        usable,
        fallback,
        selection: Selection {
            preference,
            traffic_distribution: policy.distribution.clone(),
            note: with_distribution(note, policy, endpoints),
        },
    }
}

/// kube-proxy's `topologyModeFromHints`: judged over the ready endpoints.
fn from_hints(endpoints: &[Endpoint], here: &Locality) -> (Preference, Option<String>) {
    let ready = || endpoints.iter().filter(|e| e.ready);
    if ready().all(|e| e.hints.is_empty()) {
        return (Preference::All, None);
    }
    let node = here.node.as_deref();
    let zone = here.zone.as_deref();
    let all_node_hints = ready().all(|e| !e.hints.for_nodes.is_empty());
    let for_node =
        node.is_some_and(|n| ready().any(|e| e.hints.for_nodes.iter().any(|h| &**h == n)));
    let all_zone_hints = ready().all(|e| !e.hints.for_zones.is_empty());
    let for_zone =
        zone.is_some_and(|z| ready().any(|e| e.hints.for_zones.iter().any(|h| &**h == z)));
    let mut why_not_node = None;
    if all_node_hints {
        if for_node {
            let n = node.unwrap_or_default();
            return (
                Preference::SameNode,
                Some(format!("endpoints hinted for this node ({n})")),
            );
        }
        why_not_node = Some(match node {
            None => "wicket does not know its node name (NODE_NAME or --node-name)".to_owned(),
            Some(n) => format!("no endpoint is hinted for node {n}"),
        });
    }
    let zone_rule = if all_zone_hints {
        if for_zone {
            let z = zone.unwrap_or_default();
            let mut note = format!("endpoints hinted for this zone ({z})");
            if let Some(why) = why_not_node {
                let _ = write!(note, "; node hints not used: {why}");
            }
            return (Preference::SameZone, Some(note));
        }
        match zone {
            None => format!("wicket does not know its zone ({})", here.zone_source),
            Some(z) => format!("no endpoint is hinted for zone {z}"),
        }
    } else {
        "not every ready endpoint has a zone hint".to_owned()
    };
    let mut note = format!("topology hints not used, all endpoints are: {zone_rule}");
    if let Some(why) = why_not_node {
        let _ = write!(note, "; {why}");
    }
    (Preference::All, Some(note))
}

fn node_local_note(endpoints: &[Endpoint], here: &Locality, none: bool) -> String {
    let Some(node) = here.node.as_deref() else {
        return "internalTrafficPolicy is Local, but wicket does not know its node name \
                (NODE_NAME or --node-name): no endpoint counts as local; requests get 503"
            .to_owned();
    };
    if !none {
        return format!("internalTrafficPolicy is Local: only endpoints on this node ({node})");
    }
    let local = endpoints
        .iter()
        .filter(|e| e.node.as_deref() == Some(node))
        .count();
    if local == 0 {
        format!(
            "internalTrafficPolicy is Local and no endpoint runs on this node ({node}): \
             requests get 503 (no fallback to other nodes, as with kube-proxy)"
        )
    } else {
        format!(
            "internalTrafficPolicy is Local and none of the {local} endpoint(s) on this node \
             ({node}) is ready or serving: requests get 503"
        )
    }
}

/// A Service that asks for a distribution its slices carry no hints for: say so (the
/// EndpointSlice controller writes them; hand-written slices must carry their own).
fn with_distribution(
    note: Option<String>,
    policy: &TrafficPolicy,
    endpoints: &[Endpoint],
) -> Option<String> {
    match (&policy.distribution, note) {
        (Some(d), None) if !policy.node_local && endpoints.iter().all(|e| e.hints.is_empty()) => {
            Some(format!(
                "trafficDistribution {d}, but no endpoint carries topology hints (the \
                 EndpointSlice controller writes them; hand-written slices need their own): \
                 all endpoints are used"
            ))
        }
        (_, note) => note,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    /// An endpoint 10.0.0.`last` on `node` in `zone`, hinted for `zones` and `nodes`.
    fn ep(last: u8, node: &str, zone: &str, zones: &[&str], nodes: &[&str]) -> Endpoint {
        let mut e = Endpoint::new(SocketAddr::from(([10, 0, 0, last], 80)), true, true, false);
        e.node = (!node.is_empty()).then(|| Arc::from(node));
        e.zone = (!zone.is_empty()).then(|| Arc::from(zone));
        e.hints.for_zones = zones.iter().map(|z| Arc::from(*z)).collect();
        e.hints.for_nodes = nodes.iter().map(|n| Arc::from(*n)).collect();
        e
    }

    fn here(node: Option<&str>, zone: Option<&str>) -> Locality {
        Locality::new(node, zone, "--zone")
    }

    fn cluster() -> TrafficPolicy {
        TrafficPolicy::default()
    }

    fn local() -> TrafficPolicy {
        TrafficPolicy {
            node_local: true,
            distribution: None,
        }
    }

    fn addrs(eps: &[Endpoint], s: &Selected) -> Vec<u8> {
        s.usable
            .iter()
            .map(|&i| match eps[i as usize].addr.ip() {
                std::net::IpAddr::V4(v4) => v4.octets()[3],
                std::net::IpAddr::V6(_) => 0,
            })
            .collect()
    }

    #[test]
    fn without_hints_every_ready_endpoint_is_used_and_other_zones_are_marked() {
        let mut eps = vec![ep(1, "n1", "a", &[], &[]), ep(2, "n2", "b", &[], &[])];
        let s = select(&mut eps, &cluster(), &here(Some("n1"), Some("a")));
        assert_eq!(addrs(&eps, &s), vec![1, 2]);
        assert_eq!(s.selection.preference, Preference::All);
        assert_eq!(s.selection.note, None);
        assert!(!eps[0].remote_zone && eps[1].remote_zone);
    }

    #[test]
    fn zone_hints_keep_traffic_in_this_zone() {
        let mut eps = vec![
            ep(1, "n1", "a", &["a"], &[]),
            ep(2, "n2", "b", &["b"], &[]),
            ep(3, "n3", "a", &["a"], &[]),
        ];
        let s = select(&mut eps, &cluster(), &here(Some("n1"), Some("a")));
        assert_eq!(addrs(&eps, &s), vec![1, 3]);
        assert_eq!(s.selection.preference, Preference::SameZone);
        assert!(!eps[1].usable);
    }

    #[test]
    fn node_hints_win_over_zone_hints_when_one_names_this_node() {
        let mut eps = vec![
            ep(1, "n1", "a", &["a"], &["n1"]),
            ep(2, "n2", "a", &["a"], &["n2"]),
        ];
        let s = select(&mut eps, &cluster(), &here(Some("n1"), Some("a")));
        assert_eq!(addrs(&eps, &s), vec![1]);
        assert_eq!(s.selection.preference, Preference::SameNode);
    }

    #[test]
    fn node_hints_for_other_nodes_fall_back_to_the_zone() {
        let mut eps = vec![
            ep(1, "n2", "a", &["a"], &["n2"]),
            ep(2, "n3", "b", &["b"], &["n3"]),
        ];
        let s = select(&mut eps, &cluster(), &here(Some("n1"), Some("a")));
        assert_eq!(addrs(&eps, &s), vec![1]);
        assert_eq!(s.selection.preference, Preference::SameZone);
        let note = s.selection.note.unwrap();
        assert!(note.contains("no endpoint is hinted for node n1"), "{note}");
    }

    #[test]
    fn one_ready_endpoint_without_hints_turns_them_all_off() {
        let mut eps = vec![ep(1, "n1", "a", &["a"], &[]), ep(2, "n2", "b", &[], &[])];
        let s = select(&mut eps, &cluster(), &here(Some("n1"), Some("a")));
        assert_eq!(addrs(&eps, &s), vec![1, 2]);
        assert_eq!(s.selection.preference, Preference::All);
        let note = s.selection.note.unwrap();
        assert!(
            note.contains("not every ready endpoint has a zone hint"),
            "{note}"
        );
    }

    #[test]
    fn unready_endpoints_without_hints_do_not_count() {
        let mut eps = vec![ep(1, "n1", "a", &["a"], &[]), ep(2, "n2", "b", &["b"], &[])];
        let mut unhinted = ep(3, "n3", "a", &[], &[]);
        unhinted.ready = false;
        unhinted.serving = false;
        eps.push(unhinted);
        let s = select(&mut eps, &cluster(), &here(None, Some("a")));
        assert_eq!(addrs(&eps, &s), vec![1]);
        assert_eq!(s.selection.preference, Preference::SameZone);
    }

    #[test]
    fn no_endpoint_for_this_zone_uses_all_of_them() {
        let mut eps = vec![ep(1, "n1", "b", &["b"], &[]), ep(2, "n2", "c", &["c"], &[])];
        let s = select(&mut eps, &cluster(), &here(Some("n9"), Some("a")));
        assert_eq!(addrs(&eps, &s), vec![1, 2]);
        let note = s.selection.note.unwrap();
        assert!(note.contains("no endpoint is hinted for zone a"), "{note}");
    }

    #[test]
    fn an_unknown_zone_uses_all_endpoints_and_says_why() {
        let mut eps = vec![ep(1, "n1", "a", &["a"], &[]), ep(2, "n2", "b", &["b"], &[])];
        let here = Locality::new(Some("n1"), None, "the Node could not be read: forbidden");
        let s = select(&mut eps, &cluster(), &here);
        assert_eq!(addrs(&eps, &s), vec![1, 2]);
        let note = s.selection.note.unwrap();
        assert!(note.contains("forbidden"), "{note}");
        // Without a zone of our own, nothing counts as another zone.
        assert!(eps.iter().all(|e| !e.remote_zone));
    }

    #[test]
    fn with_nothing_ready_the_hints_are_not_judged() {
        let mut eps = vec![ep(1, "n1", "a", &["a"], &[]), ep(2, "n2", "b", &["b"], &[])];
        for e in &mut eps {
            e.ready = false;
            e.terminating = true;
        }
        let s = select(&mut eps, &cluster(), &here(Some("n1"), Some("a")));
        // No ready endpoint: the hints are not judged (kube-proxy), every draining one serves.
        assert_eq!(addrs(&eps, &s), vec![1, 2]);
        assert!(s.fallback);
    }

    #[test]
    fn local_policy_uses_this_nodes_endpoints_only() {
        let mut eps = vec![
            ep(1, "n1", "a", &["a"], &[]),
            ep(2, "n2", "a", &["a"], &[]),
            ep(3, "n1", "a", &["a"], &[]),
        ];
        let s = select(&mut eps, &local(), &here(Some("n1"), Some("a")));
        assert_eq!(addrs(&eps, &s), vec![1, 3]);
        assert_eq!(s.selection.preference, Preference::NodeLocal);
    }

    #[test]
    fn local_policy_without_a_local_endpoint_has_none_and_no_fallback() {
        let mut eps = vec![ep(1, "n2", "a", &[], &[]), ep(2, "", "a", &[], &[])];
        let s = select(&mut eps, &local(), &here(Some("n1"), Some("a")));
        assert!(s.usable.is_empty());
        let note = s.selection.note.unwrap();
        assert!(
            note.contains("no endpoint runs on this node (n1)"),
            "{note}"
        );
    }

    #[test]
    fn local_policy_prefers_ready_then_draining_local_endpoints() {
        let mut eps = vec![ep(1, "n1", "", &[], &[]), ep(2, "n2", "", &[], &[])];
        eps[0].ready = false;
        eps[0].terminating = true;
        let s = select(&mut eps, &local(), &here(Some("n1"), None));
        assert_eq!(addrs(&eps, &s), vec![1]);
        assert!(s.fallback);
        eps[0].serving = false;
        let s = select(&mut eps, &local(), &here(Some("n1"), None));
        assert!(s.usable.is_empty());
        let note = s.selection.note.unwrap();
        assert!(
            note.contains("none of the 1 endpoint(s) on this node"),
            "{note}"
        );
    }

    #[test]
    fn local_policy_without_a_node_name_has_no_local_endpoint() {
        let mut eps = vec![ep(1, "n1", "a", &[], &[])];
        let s = select(&mut eps, &local(), &here(None, Some("a")));
        assert!(s.usable.is_empty());
        assert!(s
            .selection
            .note
            .unwrap()
            .contains("does not know its node name"));
    }

    #[test]
    fn a_distribution_without_hints_is_reported() {
        let mut eps = vec![ep(1, "n1", "a", &[], &[])];
        let policy = TrafficPolicy {
            node_local: false,
            distribution: Some(Arc::from("PreferSameZone")),
        };
        let s = select(&mut eps, &policy, &here(Some("n1"), Some("a")));
        assert_eq!(addrs(&eps, &s), vec![1]);
        assert!(s
            .selection
            .note
            .unwrap()
            .contains("no endpoint carries topology hints"));
    }
}
