//! Translate-level rules of GATEWAY-API.md: hostname intersection, ReferenceGrant
//! matching, listener conflicts and the status that results, on objects read from YAML.

use super::*;
use crate::controller::gateway_api::GROUP;
use crate::controller::index::Index;
use crate::controller::manifest;
use crate::controller::translate::build;
use crate::controller::Settings;
use crate::model::Snapshot;

fn snapshot(yaml: &str) -> Snapshot {
    let parsed = manifest::parse("test.yaml", yaml, false);
    assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    build(&Index::from_objects(parsed.objects), &Settings::default())
}

fn h(s: &str) -> Hostname {
    Hostname::parse(s)
}

#[test]
fn hostname_intersection_follows_the_spec_table() {
    let both = |route: &[&str], listener: &str| -> Vec<String> {
        let route: Vec<Hostname> = route.iter().map(|r| h(r)).collect();
        intersect(&route, &h(listener))
            .iter()
            .map(Hostname::to_string)
            .collect()
    };
    // Either side empty: the other applies.
    assert_eq!(both(&[], "a.example.com"), ["a.example.com"]);
    assert_eq!(
        both(&["a.example.com", "*.x.org"], ""),
        ["a.example.com", "*.x.org"]
    );
    assert_eq!(both(&[], ""), ["*"]);
    // Exact against exact or wildcard listeners.
    assert_eq!(both(&["a.example.com"], "a.example.com"), ["a.example.com"]);
    assert!(both(&["b.example.com"], "a.example.com").is_empty());
    assert_eq!(
        both(&["a.b.example.com"], "*.example.com"),
        ["a.b.example.com"]
    );
    assert!(both(&["example.com"], "*.example.com").is_empty());
    // A wildcard route on an exact listener serves the listener's name only.
    assert_eq!(
        both(&["*.specific.com"], "very.specific.com"),
        ["very.specific.com"]
    );
    // Wildcard against wildcard: the narrower one.
    assert_eq!(
        both(&["*.a.example.com"], "*.example.com"),
        ["*.a.example.com"]
    );
    assert_eq!(
        both(&["*.example.com"], "*.a.example.com"),
        ["*.a.example.com"]
    );
    assert!(both(&["*.example.org"], "*.example.com").is_empty());
    // Only the intersecting names count.
    assert_eq!(
        both(&["a.example.com", "b.other.org"], "*.example.com"),
        ["a.example.com"]
    );
}

const GRANT: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: target}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: source}]\n  to: [{group: \"\", kind: Service, name: only}]\n";

#[test]
fn a_reference_grant_names_referrer_and_target_exactly() {
    let parsed = manifest::parse("g.yaml", GRANT, false);
    let index = Index::from_objects(parsed.objects);
    let allows = |from_kind: &str, from_ns: &str, to_kind: &str, to_ns: &str, name: &str| {
        granted(
            &index, GROUP, from_kind, from_ns, GROUP_CORE, to_kind, to_ns, name,
        )
    };
    assert!(allows("HTTPRoute", "source", "Service", "target", "only"));
    assert!(
        !allows("HTTPRoute", "source", "Service", "target", "other"),
        "the grant names one Service"
    );
    assert!(!allows(
        "HTTPRoute",
        "elsewhere",
        "Service",
        "target",
        "only"
    ));
    assert!(!allows("GRPCRoute", "source", "Service", "target", "only"));
    assert!(!allows("HTTPRoute", "source", "Secret", "target", "only"));
    assert!(
        !allows("HTTPRoute", "source", "Service", "source", "only"),
        "grants live in the target namespace"
    );
}

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: wicket}\nspec: {controllerName: wicket.dev/gateway-controller}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: theirs}\nspec: {controllerName: example.com/other}\n";

fn object<'a>(s: &'a Snapshot, kind: &str, name: &str) -> Option<&'a ObjectStatus> {
    s.gateway_status
        .iter()
        .find(|o| o.object.kind == kind && o.object.name == name)
}

#[test]
fn only_classes_of_our_controller_and_their_gateways_get_status() {
    let s = snapshot(&format!(
        "{CLASS}---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: other}}\nspec:\n  gatewayClassName: theirs\n  listeners: [{{name: http, protocol: HTTP, port: 80}}]\n"
    ));
    let ours = object(&s, "GatewayClass", "wicket").expect("our class");
    assert_eq!(
        ours.condition("Accepted").map(|c| c.status),
        Some(ConditionStatus::True)
    );
    assert!(object(&s, "GatewayClass", "theirs").is_none());
    assert!(
        object(&s, "Gateway", "other").is_none(),
        "another controller's Gateway"
    );
    assert!(s.gateway.is_none(), "nothing served");
}

#[test]
fn indistinct_listeners_of_one_gateway_are_all_conflicted() {
    let s = snapshot(&format!(
        "{CLASS}---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  gatewayClassName: wicket\n  listeners:\n  - {{name: a, protocol: HTTP, port: 80, hostname: x.test}}\n  - {{name: b, protocol: HTTP, port: 80, hostname: x.test}}\n  - {{name: c, protocol: HTTP, port: 80, hostname: y.test}}\n"
    ));
    let gw = object(&s, "Gateway", "gw").expect("status");
    let conflicted: Vec<&str> = gw
        .listeners
        .iter()
        .filter(|l| {
            l.conditions
                .iter()
                .any(|c| c.type_ == "Conflicted" && c.status == ConditionStatus::True)
        })
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(conflicted, ["a", "b"]);
    let accepted = gw.condition("Accepted").expect("Accepted");
    assert_eq!(
        (accepted.status, accepted.reason),
        (ConditionStatus::True, "ListenersNotValid")
    );
    assert!(s
        .problems
        .iter()
        .any(|p| p.reason == Reason::GatewayNotAccepted && p.message.contains("listener a")));
}

#[test]
fn a_class_with_parameters_is_not_accepted_and_its_gateways_wait() {
    let s = snapshot(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: wicket}\nspec:\n  controllerName: wicket.dev/gateway-controller\n  parametersRef: {group: example.com, kind: Config, name: c}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  gatewayClassName: wicket\n  listeners: [{name: http, protocol: HTTP, port: 80}]\n",
    );
    let class = object(&s, "GatewayClass", "wicket").expect("status");
    assert_eq!(
        class.condition("Accepted").map(|c| c.reason),
        Some("InvalidParameters")
    );
    let gw = object(&s, "Gateway", "gw").expect("status");
    assert_eq!(
        gw.condition("Accepted").map(|c| c.status),
        Some(ConditionStatus::Unknown)
    );
    assert!(s.gateway.is_none());
}

#[test]
fn status_carries_the_generation_it_was_computed_for() {
    let s = snapshot(&format!(
        "{CLASS}---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, generation: 7}}\nspec:\n  gatewayClassName: wicket\n  listeners: [{{name: http, protocol: HTTP, port: 80}}]\n"
    ));
    assert_eq!(
        object(&s, "Gateway", "gw").and_then(|g| g.observed_generation),
        Some(7)
    );
}

#[test]
fn grpc_methods_become_paths_and_http_only_filters_are_refused() {
    let s = snapshot(&format!(
        "{CLASS}---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  gatewayClassName: wicket\n  listeners: [{{name: http, protocol: HTTP, port: 80}}]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: rpc}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n  - matches:\n    - method: {{service: pkg.Svc, method: Get}}\n    - method: {{service: pkg.Other}}\n    - method: {{method: Ping}}\n    - method: {{type: RegularExpression, service: \"pkg\\\\..*\", method: \"List.*\"}}\n  - matches: [{{method: {{service: pkg.Svc}}}}]\n    filters: [{{type: RequestRedirect, requestRedirect: {{hostname: x.test}}}}]\n"
    ));
    let table = s.gateway.as_deref().expect("served");
    let (_, levels) = table.http.listeners().next().expect("a listener");
    let summaries: Vec<String> = levels[0]
        .1
        .grpc_entries()
        .iter()
        .map(|e| e.summary())
        .collect();
    assert_eq!(
        summaries,
        [
            "gRPC Exact /pkg.Svc/Get",
            "gRPC RegularExpression /(?:pkg\\..*)/(?:List.*)",
            "gRPC RegularExpression /[^/]+/Ping",
            "gRPC PathPrefix /pkg.Other",
        ]
    );
    assert!(levels[0].1.entries.is_empty(), "no HTTPRoute rules");
    let route = object(&s, "GRPCRoute", "rpc").expect("status");
    let partly = route.parents[0]
        .conditions
        .iter()
        .find(|c| c.type_ == "PartiallyInvalid")
        .expect("rule 1 dropped");
    assert!(
        partly
            .message
            .contains("RequestRedirect is not a GRPCRoute filter"),
        "{}",
        partly.message
    );
}

#[test]
fn namespace_selectors_match_labels_and_the_namespace_name_and_fail_closed() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
    let labels = std::collections::BTreeMap::from([("team".to_owned(), "blue".to_owned())]);
    let expr = |key: &str, operator: &str, values: &[&str]| LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }]),
        ..LabelSelector::default()
    };
    assert!(selects(
        &expr("team", "In", &["blue", "red"]),
        &labels,
        "shop"
    ));
    assert!(!selects(&expr("team", "NotIn", &["blue"]), &labels, "shop"));
    assert!(selects(
        &expr("kubernetes.io/metadata.name", "In", &["shop"]),
        &labels,
        "shop"
    ));
    assert!(!selects(
        &expr("kubernetes.io/metadata.name", "In", &["shop"]),
        &labels,
        "blog"
    ));
    // An operator the API does not define selects nothing.
    assert!(!selects(&expr("team", "Near", &["blue"]), &labels, "shop"));
}
