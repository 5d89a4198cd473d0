//! Translation fed with objects, asserted on the snapshot: one test per rule of
//! shared/design/SEMANTICS.md (Ingress classes, hosts, paths, default backend, Services).

use std::sync::Arc;

use serde_json::{json, Value};

use super::build;
use crate::controller::index::{Index, Key, Object};
use crate::controller::Settings;
use crate::model::{
    Destination, Lookup, Problem, Reason, Snapshot, Target, TlsBinding, UpstreamProtocol,
};

// ---------------------------------------------------------------------------------------
// Builders

fn obj<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("test object")
}

fn mk_class(name: &str, controller: &str, default: bool) -> Object {
    let annotations = if default {
        json!({"ingressclass.kubernetes.io/is-default-class": "true"})
    } else {
        json!({})
    };
    Object::IngressClass(Arc::new(obj(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"controller": controller}
    }))))
}

fn wicket_class() -> Object {
    mk_class("wicket", "wicket.dev/ingress-controller", false)
}

/// An Ingress of class `wicket` with the given spec fields merged in.
fn mk_ingress(ns: &str, name: &str, spec: Value) -> Object {
    mk_ingress_full(ns, name, None, json!({}), spec)
}

fn mk_ingress_full(
    ns: &str,
    name: &str,
    created: Option<&str>,
    annotations: Value,
    spec: Value,
) -> Object {
    let mut spec = spec;
    if spec.get("ingressClassName").is_none()
        && annotations.get("kubernetes.io/ingress.class").is_none()
    {
        spec["ingressClassName"] = json!("wicket");
    }
    if spec["ingressClassName"].is_null() {
        spec.as_object_mut().map(|m| m.remove("ingressClassName"));
    }
    let mut metadata = json!({"namespace": ns, "name": name, "annotations": annotations});
    if let Some(ts) = created {
        metadata["creationTimestamp"] = json!(ts);
    }
    Object::Ingress(Arc::new(obj(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": metadata, "spec": spec
    }))))
}

fn rule(host: &str, paths: Value) -> Value {
    let mut r = json!({"http": {"paths": paths}});
    if !host.is_empty() {
        r["host"] = json!(host);
    }
    r
}

fn path(p: &str, path_type: &str, service: &str, port: Value) -> Value {
    json!({"path": p, "pathType": path_type, "backend": {"service": {"name": service, "port": port}}})
}

fn prefix(p: &str, service: &str) -> Value {
    path(p, "Prefix", service, json!({"number": 80}))
}

fn mk_service(ns: &str, name: &str, ports: Value) -> Object {
    mk_service_spec(ns, name, json!({"selector": {"app": name}, "ports": ports}))
}

fn mk_service_spec(ns: &str, name: &str, spec: Value) -> Object {
    Object::Service(Arc::new(obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": ns, "name": name},
        "spec": spec
    }))))
}

fn web_service(ns: &str, name: &str) -> Object {
    mk_service(
        ns,
        name,
        json!([{"name": "http", "port": 80, "targetPort": "http-web-svc"}]),
    )
}

/// An EndpointSlice; endpoints are (ip, ready, serving, terminating).
/// (ip, ready, serving, terminating); `None` leaves the condition out.
type Ep<'a> = (&'a str, Option<bool>, Option<bool>, Option<bool>);

fn mk_slice(ns: &str, name: &str, service: &str, ports: Value, endpoints: &[Ep<'_>]) -> Object {
    mk_slice_typed(ns, name, service, "IPv4", ports, endpoints)
}

fn mk_slice_typed(
    ns: &str,
    name: &str,
    service: &str,
    address_type: &str,
    ports: Value,
    endpoints: &[Ep<'_>],
) -> Object {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, ready, serving, terminating)| {
            let mut conditions = json!({});
            if let Some(v) = ready {
                conditions["ready"] = json!(v);
            }
            if let Some(v) = serving {
                conditions["serving"] = json!(v);
            }
            if let Some(v) = terminating {
                conditions["terminating"] = json!(v);
            }
            json!({"addresses": [ip], "conditions": conditions,
                   "targetRef": {"kind": "Pod", "name": format!("pod-{ip}")}})
        })
        .collect();
    Object::EndpointSlice(Arc::new(obj(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": ns, "name": name,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints
    }))))
}

fn ready(ip: &str) -> Ep<'_> {
    (ip, Some(true), Some(true), Some(false))
}

fn http_slice(ns: &str, name: &str, service: &str, ips: &[&str]) -> Object {
    let eps: Vec<_> = ips.iter().map(|ip| ready(ip)).collect();
    mk_slice(
        ns,
        name,
        service,
        json!([{"name": "http", "port": 8080}]),
        &eps,
    )
}

fn settings() -> Settings {
    Settings::default()
}

fn snapshot(objects: Vec<Object>) -> Snapshot {
    build(&Index::from_objects(objects), &settings())
}

// ---------------------------------------------------------------------------------------
// Assertions

/// What a request to host+path reaches: "ingress-name -> backend-id", "ingress-name -> 503",
/// "default -> ...", or None for 404.
fn reach(s: &Snapshot, host: &str, path: &str) -> Option<String> {
    let describe = |target: &Target| match target {
        Target::Backend(b) => b.id.to_string(),
        Target::Unavailable(_) => "503".to_owned(),
    };
    match s.table.lookup(host, path) {
        Lookup::Route { route, .. } => Some(format!(
            "{} -> {}",
            route.ingress.name,
            describe(&route.target)
        )),
        Lookup::Default { backend, .. } => {
            Some(format!("default -> {}", describe(&backend.target)))
        }
        Lookup::NotFound { .. } => None,
    }
}

/// Usable endpoint addresses for host+path.
fn usable(s: &Snapshot, host: &str, path: &str) -> Vec<String> {
    let target = match s.table.lookup(host, path) {
        Lookup::Route { route, .. } => route.target.clone(),
        Lookup::Default { backend, .. } => backend.target.clone(),
        Lookup::NotFound { .. } => panic!("no route for {host}{path}"),
    };
    match target {
        Target::Backend(b) => b.usable().map(|e| e.addr.to_string()).collect(),
        Target::Unavailable(why) => panic!("unavailable: {why}"),
    }
}

fn reasons(s: &Snapshot) -> Vec<(Reason, String)> {
    s.problems
        .iter()
        .map(|p| {
            (
                p.reason,
                format!(
                    "{}/{}",
                    p.object.namespace.clone().unwrap_or_default(),
                    p.object.name
                ),
            )
        })
        .collect()
}

fn problem(s: &Snapshot, reason: Reason) -> &Problem {
    s.problems
        .iter()
        .find(|p| p.reason == reason)
        .unwrap_or_else(|| panic!("no {reason} problem in {:#?}", s.problems))
}

/// A small valid world: class, Service web with a ready endpoint.
fn base() -> Vec<Object> {
    vec![
        wicket_class(),
        web_service("default", "web"),
        http_slice("default", "web-abc", "web", &["10.0.0.1"]),
    ]
}

// ---------------------------------------------------------------------------------------
// Which Ingresses are ours

#[test]
fn ingress_naming_our_class_is_routed() {
    let mut objects = base();
    objects.push(mk_ingress(
        "default",
        "site",
        json!({"rules": [rule("a.com", json!([prefix("/", "web")]))]}),
    ));
    let s = snapshot(objects);
    assert_eq!(
        reach(&s, "a.com", "/x").as_deref(),
        Some("site -> default/web:80")
    );
    assert!(s.problems.is_empty(), "{:#?}", s.problems);
}

#[test]
fn ingress_of_another_controllers_class_is_ignored_with_a_reason() {
    let mut objects = base();
    objects.push(mk_class("nginx", "k8s.io/ingress-nginx", false));
    objects.push(mk_ingress(
        "default",
        "theirs",
        json!({"ingressClassName": "nginx", "rules": [rule("a.com", json!([prefix("/", "web")]))]}),
    ));
    let s = snapshot(objects);
    assert_eq!(reach(&s, "a.com", "/"), None);
    assert_eq!(s.ignored.len(), 1);
    assert!(s.ignored[0].reason.contains("k8s.io/ingress-nginx"));
    assert!(s.problems.is_empty());
}

#[test]
fn ingress_naming_a_missing_class_is_not_ours_and_our_name_is_reported() {
    let objects = vec![
        web_service("default", "web"),
        mk_ingress(
            "default",
            "a",
            json!({"ingressClassName": "wicket", "rules": [rule("a.com", json!([prefix("/", "web")]))]}),
        ),
        mk_ingress(
            "default",
            "b",
            json!({"ingressClassName": "other", "rules": [rule("b.com", json!([prefix("/", "web")]))]}),
        ),
    ];
    let s = snapshot(objects);
    assert_eq!(reach(&s, "a.com", "/"), None);
    assert_eq!(reach(&s, "b.com", "/"), None);
    // Only the one that names our --ingress-class gets a Problem.
    assert_eq!(
        reasons(&s),
        vec![(Reason::IngressClassNotFound, "default/a".to_owned())]
    );
}

#[test]
fn legacy_annotation_wins_over_the_field_with_a_warning() {
    let mut objects = base();
    objects.push(mk_class("nginx", "k8s.io/ingress-nginx", false));
    objects.push(mk_ingress_full(
        "default",
        "annotated",
        None,
        json!({"kubernetes.io/ingress.class": "wicket"}),
        json!({"ingressClassName": "nginx", "rules": [rule("a.com", json!([prefix("/", "web")]))]}),
    ));
    objects.push(mk_ingress_full(
        "default",
        "annotated-other",
        None,
        json!({"kubernetes.io/ingress.class": "nginx"}),
        json!({"ingressClassName": "wicket", "rules": [rule("b.com", json!([prefix("/", "web")]))]}),
    ));
    let s = snapshot(objects);
    assert_eq!(
        reach(&s, "a.com", "/").as_deref(),
        Some("annotated -> default/web:80")
    );
    assert_eq!(reach(&s, "b.com", "/"), None);
    let conflicts: Vec<_> = s
        .problems
        .iter()
        .filter(|p| p.reason == Reason::IngressClassConflict)
        .collect();
    assert_eq!(conflicts.len(), 2);
}

#[test]
fn annotation_with_the_ingress_class_flag_value_is_ours_without_any_class_object() {
    let objects = vec![
        web_service("default", "web"),
        http_slice("default", "web-1", "web", &["10.0.0.1"]),
        mk_ingress_full(
            "default",
            "legacy",
            None,
            json!({"kubernetes.io/ingress.class": "wicket"}),
            json!({"ingressClassName": null, "rules": [rule("a.com", json!([prefix("/", "web")]))]}),
        ),
    ];
    let s = snapshot(objects);
    assert_eq!(
        reach(&s, "a.com", "/").as_deref(),
        Some("legacy -> default/web:80")
    );
}

#[test]
fn ingress_without_class_needs_a_default_class_of_ours_or_the_flag() {
    let classless = mk_ingress(
        "default",
        "plain",
        json!({"ingressClassName": null, "rules": [rule("a.com", json!([prefix("/", "web")]))]}),
    );
    let world = |class: Object| {
        vec![
            class,
            web_service("default", "web"),
            http_slice("default", "w", "web", &["10.0.0.1"]),
            classless.clone(),
        ]
    };

    let s = snapshot(world(wicket_class()));
    assert_eq!(reach(&s, "a.com", "/"), None, "no default class: not ours");

    let s = snapshot(world(mk_class(
        "wicket",
        "wicket.dev/ingress-controller",
        true,
    )));
    assert_eq!(
        reach(&s, "a.com", "/").as_deref(),
        Some("plain -> default/web:80")
    );

    let s = snapshot(world(mk_class("nginx", "k8s.io/ingress-nginx", true)));
    assert_eq!(
        reach(&s, "a.com", "/"),
        None,
        "a default class of another controller"
    );

    let flag = Settings {
        watch_ingress_without_class: true,
        ..settings()
    };
    let s = build(&Index::from_objects(world(wicket_class())), &flag);
    assert_eq!(
        reach(&s, "a.com", "/").as_deref(),
        Some("plain -> default/web:80")
    );
}

#[test]
fn controller_name_flag_decides_which_classes_are_ours() {
    let objects = vec![
        mk_class("mine", "example.com/custom", false),
        web_service("default", "web"),
        mk_ingress(
            "default",
            "a",
            json!({"ingressClassName": "mine", "rules": [rule("a.com", json!([prefix("/", "web")]))]}),
        ),
    ];
    let custom = Settings {
        controller_name: "example.com/custom".into(),
        ..settings()
    };
    let s = build(&Index::from_objects(objects.clone()), &custom);
    assert!(reach(&s, "a.com", "/").is_some());
    let s = snapshot(objects);
    assert!(reach(&s, "a.com", "/").is_none());
}

// ---------------------------------------------------------------------------------------
// Hosts

#[test]
fn rules_for_one_host_merge_across_ingresses_and_namespaces() {
    let mut objects = base();
    objects.push(web_service("shop", "cart"));
    objects.push(http_slice("shop", "cart-1", "cart", &["10.0.1.1"]));
    objects.push(mk_ingress(
        "default",
        "site",
        json!({"rules": [rule("a.com", json!([prefix("/", "web")]))]}),
    ));
    objects.push(mk_ingress(
        "shop",
        "cart",
        json!({"rules": [rule("a.com", json!([prefix("/cart", "cart")]))]}),
    ));
    let s = snapshot(objects);
    assert_eq!(
        reach(&s, "a.com", "/cart/items").as_deref(),
        Some("cart -> shop/cart:80")
    );
    assert_eq!(
        reach(&s, "a.com", "/other").as_deref(),
        Some("site -> default/web:80")
    );
    assert_eq!(s.table.virtual_hosts().len(), 1);
}

#[test]
fn wildcard_exact_and_hostless_rules_choose_one_virtual_host() {
    let mut objects = base();
    objects.push(mk_ingress(
        "default",
        "site",
        json!({"rules": [
            rule("foo.bar.com", json!([prefix("/exact", "web")])),
            rule("*.bar.com", json!([prefix("/wild", "web")])),
            rule("", json!([prefix("/", "web")])),
        ]}),
    ));
    let s = snapshot(objects);
    assert!(reach(&s, "foo.bar.com", "/exact").is_some());
    // The exact host was chosen; its paths do not match and there is no fall-through.
    assert_eq!(reach(&s, "foo.bar.com", "/wild"), None);
    assert!(reach(&s, "x.bar.com", "/wild").is_some());
    assert_eq!(reach(&s, "x.bar.com", "/"), None);
    assert!(
        reach(&s, "x.y.bar.com", "/anything").is_some(),
        "two labels: catch-all"
    );
    assert!(
        reach(&s, "bar.com", "/").is_some(),
        "no extra label: catch-all"
    );
}

#[test]
fn a_host_without_paths_claims_the_host_for_the_default_backend() {
    let mut objects = base();
    objects.push(web_service("default", "fallback"));
    objects.push(http_slice("default", "fb", "fallback", &["10.0.9.9"]));
    objects.push(mk_ingress(
        "default",
        "site",
        json!({
            "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
            "rules": [{"host": "tls-only.com"}, rule("", json!([prefix("/", "web")]))]
        }),
    ));
    let s = snapshot(objects);
    assert_eq!(
        reach(&s, "tls-only.com", "/").as_deref(),
        Some("default -> default/fallback:80")
    );
    assert_eq!(
        reach(&s, "other.com", "/").as_deref(),
        Some("site -> default/web:80")
    );
}

#[test]
fn an_invalid_host_is_a_problem_and_other_rules_still_work() {
    let mut objects = base();
    objects.push(mk_ingress(
        "default",
        "site",
        json!({"rules": [
            rule("Bad_Host.com", json!([prefix("/", "web")])),
            rule("10.1.2.3", json!([prefix("/", "web")])),
            rule("good.com", json!([prefix("/", "web")])),
        ]}),
    ));
    let s = snapshot(objects);
    assert!(reach(&s, "good.com", "/").is_some());
    let invalid: Vec<_> = s
        .problems
        .iter()
        .filter(|p| p.reason == Reason::InvalidHost)
        .collect();
    assert_eq!(invalid.len(), 2, "{:#?}", s.problems);
    assert!(invalid
        .iter()
        .any(|p| p.message.contains("not an IP address")));
}

// ---------------------------------------------------------------------------------------
// Paths

#[test]
fn same_host_and_path_in_two_ingresses_the_older_wins_and_the_newer_is_reported() {
    let mut objects = base();
    objects.push(web_service("default", "other"));
    objects.push(http_slice("default", "o", "other", &["10.0.0.2"]));
    objects.push(mk_ingress_full("default", "a-newer", Some("2026-01-02T00:00:00Z"), json!({}),
        json!({"ingressClassName": "wicket", "rules": [rule("a.com", json!([prefix("/api", "other")]))]})));
    objects.push(mk_ingress_full("default", "z-older", Some("2026-01-01T00:00:00Z"), json!({}),
        json!({"ingressClassName": "wicket", "rules": [rule("a.com", json!([prefix("/api", "web")]))]})));
    let s = snapshot(objects);
    assert_eq!(
        reach(&s, "a.com", "/api").as_deref(),
        Some("z-older -> default/web:80")
    );
    let p = problem(&s, Reason::PathConflict);
    assert_eq!(p.object.name, "a-newer");
    assert!(
        p.message
            .contains("already routed by Ingress default/z-older"),
        "{}",
        p.message
    );
}

#[test]
fn without_creation_times_the_conflict_goes_to_namespace_then_name() {
    let mut objects = base();
    objects.push(web_service("b", "web"));
    objects.push(http_slice("b", "w", "web", &["10.0.2.1"]));
    objects.push(mk_ingress(
        "b",
        "first",
        json!({"rules": [rule("a.com", json!([prefix("/", "web")]))]}),
    ));
    objects.push(mk_ingress(
        "default",
        "second",
        json!({"rules": [rule("a.com", json!([prefix("/", "web")]))]}),
    ));
    let s = snapshot(objects);
    assert_eq!(
        reach(&s, "a.com", "/").as_deref(),
        Some("first -> b/web:80")
    );
    assert_eq!(problem(&s, Reason::PathConflict).object.name, "second");
}

#[test]
fn implementation_specific_is_prefix_and_conflicts_with_the_same_prefix() {
    let mut objects = base();
    objects.push(mk_ingress(
        "default",
        "a",
        json!({"rules": [rule("a.com", json!([
            path("/docs", "ImplementationSpecific", "web", json!({"number": 80})),
            path("/docs/", "Prefix", "web", json!({"number": 80})),
        ]))]}),
    ));
    let s = snapshot(objects);
    assert!(reach(&s, "a.com", "/docs/intro").is_some());
    assert_eq!(reach(&s, "a.com", "/docsintro"), None);
    assert!(problem(&s, Reason::PathConflict)
        .message
        .contains("listed twice"));
}

#[test]
fn exact_beats_prefix_and_longer_prefix_beats_shorter() {
    let mut objects = base();
    objects.push(web_service("default", "api"));
    objects.push(http_slice("default", "api-1", "api", &["10.0.3.1"]));
    objects.push(web_service("default", "login"));
    objects.push(http_slice("default", "login-1", "login", &["10.0.3.2"]));
    objects.push(mk_ingress(
        "default",
        "a",
        json!({"rules": [rule("a.com", json!([
            prefix("/", "web"),
            prefix("/api", "api"),
            path("/api/login", "Exact", "login", json!({"number": 80})),
        ]))]}),
    ));
    let s = snapshot(objects);
    assert_eq!(
        reach(&s, "a.com", "/api/login").as_deref(),
        Some("a -> default/login:80")
    );
    assert_eq!(
        reach(&s, "a.com", "/api/login/x").as_deref(),
        Some("a -> default/api:80")
    );
    assert_eq!(
        reach(&s, "a.com", "/apix").as_deref(),
        Some("a -> default/web:80")
    );
}

#[test]
fn invalid_paths_are_problems_and_valid_siblings_still_route() {
    let mut objects = base();
    objects.push(mk_ingress(
        "default",
        "a",
        json!({"rules": [rule("a.com", json!([
            path("no-slash", "Prefix", "web", json!({"number": 80})),
            path("/a//b", "Exact", "web", json!({"number": 80})),
            path("/x", "Regex", "web", json!({"number": 80})),
            prefix("/ok", "web"),
        ]))]}),
    ));
    let s = snapshot(objects);
    assert!(reach(&s, "a.com", "/ok").is_some());
    assert_eq!(reach(&s, "a.com", "/x"), None);
    let invalid = s
        .problems
        .iter()
        .filter(|p| p.reason == Reason::InvalidPath)
        .count();
    assert_eq!(invalid, 3, "{:#?}", s.problems);
}

// ---------------------------------------------------------------------------------------
// Default backend

#[test]
fn oldest_default_backend_wins_and_the_others_are_reported() {
    let mut objects = base();
    objects.push(web_service("default", "fallback"));
    objects.push(http_slice("default", "fb", "fallback", &["10.0.9.9"]));
    let default_to =
        |svc: &str| json!({"defaultBackend": {"service": {"name": svc, "port": {"number": 80}}}});
    objects.push(mk_ingress_full(
        "default",
        "old",
        Some("2025-01-01T00:00:00Z"),
        json!({}),
        {
            let mut s = default_to("fallback");
            s["ingressClassName"] = json!("wicket");
            s
        },
    ));
    objects.push(mk_ingress_full(
        "default",
        "new",
        Some("2025-06-01T00:00:00Z"),
        json!({}),
        {
            let mut s = default_to("web");
            s["ingressClassName"] = json!("wicket");
            s
        },
    ));
    let s = snapshot(objects);
    assert_eq!(
        reach(&s, "any.host", "/any").as_deref(),
        Some("default -> default/fallback:80")
    );
    assert_eq!(
        problem(&s, Reason::DefaultBackendConflict).object.name,
        "new"
    );
}

#[test]
fn no_match_and_no_default_backend_is_not_found() {
    let mut objects = base();
    objects.push(mk_ingress(
        "default",
        "a",
        json!({"rules": [rule("a.com", json!([prefix("/api", "web")]))]}),
    ));
    let s = snapshot(objects);
    assert_eq!(reach(&s, "a.com", "/web"), None);
    assert_eq!(reach(&s, "b.com", "/api"), None);
}

#[test]
fn default_backend_service_flag_applies_unless_an_ingress_sets_one() {
    let mut objects = base();
    objects.push(web_service("infra", "errors"));
    objects.push(http_slice("infra", "e", "errors", &["10.0.8.8"]));
    let flag = Settings {
        default_backend_service: Some(Key::new("infra", "errors")),
        ..settings()
    };
    let s = build(&Index::from_objects(objects.clone()), &flag);
    assert_eq!(
        reach(&s, "x.com", "/").as_deref(),
        Some("default -> infra/errors:80")
    );

    objects.push(mk_ingress(
        "default",
        "own",
        json!({"defaultBackend": {"service": {"name": "web", "port": {"name": "http"}}}}),
    ));
    let s = build(&Index::from_objects(objects), &flag);
    assert_eq!(
        reach(&s, "x.com", "/").as_deref(),
        Some("default -> default/web:80")
    );
    assert!(s.problems.is_empty(), "{:#?}", s.problems);
}

#[test]
fn resource_backends_are_unsupported_and_answer_503() {
    let mut objects = base();
    objects.push(mk_ingress("default", "a", json!({"rules": [rule("a.com", json!([
        {"path": "/static", "pathType": "Prefix", "backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "assets"}}},
        prefix("/", "web"),
    ]))]})));
    let s = snapshot(objects);
    assert_eq!(reach(&s, "a.com", "/static/x").as_deref(), Some("a -> 503"));
    assert_eq!(
        reach(&s, "a.com", "/").as_deref(),
        Some("a -> default/web:80")
    );
    problem(&s, Reason::ResourceBackendUnsupported);
}

// ---------------------------------------------------------------------------------------
// From a backend to pod addresses

#[test]
fn service_port_by_number_and_by_name_reach_the_same_pods() {
    let mut objects = base();
    objects.push(mk_ingress(
        "default",
        "a",
        json!({"rules": [rule("a.com", json!([
            path("/by-number", "Prefix", "web", json!({"number": 80})),
            path("/by-name", "Prefix", "web", json!({"name": "http"})),
        ]))]}),
    ));
    let s = snapshot(objects);
    assert_eq!(usable(&s, "a.com", "/by-number"), vec!["10.0.0.1:8080"]);
    assert_eq!(usable(&s, "a.com", "/by-name"), vec!["10.0.0.1:8080"]);
}

#[test]
fn named_target_port_resolves_through_the_slice_port_of_the_same_name() {
    // Service port "http" (80) -> targetPort "http-web-svc"; the slice, written by the
    // cluster, already says port "http" is 8080 on the pods.
    let objects = vec![
        wicket_class(),
        mk_service(
            "default",
            "web",
            json!([
                {"name": "http", "port": 80, "targetPort": "http-web-svc"},
                {"name": "metrics", "port": 9090, "targetPort": 9100},
            ]),
        ),
        mk_slice(
            "default",
            "web-x",
            "web",
            json!([{"name": "metrics", "port": 9100}, {"name": "http", "port": 8080}]),
            &[ready("10.0.0.1"), ready("10.0.0.2")],
        ),
        mk_ingress(
            "default",
            "a",
            json!({"rules": [rule("a.com", json!([
                path("/", "Prefix", "web", json!({"number": 80})),
                path("/metrics", "Prefix", "web", json!({"name": "metrics"})),
            ]))]}),
        ),
    ];
    let s = snapshot(objects);
    assert_eq!(
        usable(&s, "a.com", "/"),
        vec!["10.0.0.1:8080", "10.0.0.2:8080"]
    );
    // Multi-port Service: each Service port is its own backend.
    assert_eq!(
        usable(&s, "a.com", "/metrics"),
        vec!["10.0.0.1:9100", "10.0.0.2:9100"]
    );
    assert_eq!(
        reach(&s, "a.com", "/metrics").as_deref(),
        Some("a -> default/web:9090")
    );
}

#[test]
fn single_unnamed_service_port_matches_the_unnamed_slice_port() {
    let objects = vec![
        wicket_class(),
        mk_service("default", "web", json!([{"port": 80, "targetPort": 3000}])),
        mk_slice(
            "default",
            "web-x",
            "web",
            json!([{"port": 3000, "protocol": "TCP"}]),
            &[ready("10.0.0.7")],
        ),
        mk_ingress(
            "default",
            "a",
            json!({"rules": [rule("a.com", json!([prefix("/", "web")]))]}),
        ),
    ];
    let s = snapshot(objects);
    assert_eq!(usable(&s, "a.com", "/"), vec!["10.0.0.7:3000"]);
}

#[test]
fn missing_service_and_missing_port_are_problems_and_answer_503() {
    let mut objects = base();
    objects.push(mk_ingress(
        "default",
        "a",
        json!({"rules": [rule("a.com", json!([
            prefix("/gone", "no-such-service"),
            path("/wrong-port", "Prefix", "web", json!({"number": 8443})),
            path("/wrong-name", "Prefix", "web", json!({"name": "grpc"})),
            prefix("/", "web"),
        ]))]}),
    ));
    let s = snapshot(objects);
    assert_eq!(reach(&s, "a.com", "/gone").as_deref(), Some("a -> 503"));
    assert_eq!(
        reach(&s, "a.com", "/wrong-port").as_deref(),
        Some("a -> 503")
    );
    assert_eq!(
        reach(&s, "a.com", "/wrong-name").as_deref(),
        Some("a -> 503")
    );
    assert_eq!(
        reach(&s, "a.com", "/").as_deref(),
        Some("a -> default/web:80")
    );
    assert!(problem(&s, Reason::BackendNotFound)
        .message
        .contains("Service default/no-such-service not found"));
    let ports: Vec<_> = s
        .problems
        .iter()
        .filter(|p| p.reason == Reason::PortNotFound)
        .collect();
    assert_eq!(ports.len(), 2);
    assert!(
        ports[0].message.contains("it has: 80/http"),
        "{}",
        ports[0].message
    );
}

#[test]
fn a_service_in_another_namespace_is_not_used() {
    let objects = vec![
        wicket_class(),
        web_service("other", "web"),
        http_slice("other", "w", "web", &["10.0.0.1"]),
        mk_ingress(
            "default",
            "a",
            json!({"rules": [rule("a.com", json!([prefix("/", "web")]))]}),
        ),
    ];
    let s = snapshot(objects);
    assert_eq!(reach(&s, "a.com", "/").as_deref(), Some("a -> 503"));
    problem(&s, Reason::BackendNotFound);
}

#[test]
fn every_address_of_an_endpoint_takes_traffic_with_its_conditions() {
    let slice = Object::EndpointSlice(Arc::new(obj(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": "web-manual",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [
            {"addresses": ["10.4.5.6", "10.1.2.3", "bad"], "conditions": {"ready": true}},
            {"addresses": ["10.7.7.7", "10.8.8.8"], "conditions": {"ready": false}}
        ]
    }))));
    let objects = vec![
        wicket_class(),
        web_service("default", "web"),
        slice,
        mk_ingress(
            "default",
            "a",
            json!({"rules": [rule("a.com", json!([prefix("/", "web")]))]}),
        ),
    ];
    let s = snapshot(objects);
    assert_eq!(
        usable(&s, "a.com", "/"),
        vec!["10.1.2.3:8080", "10.4.5.6:8080"]
    );
    let p = problem(&s, Reason::InvalidEndpoint);
    assert!(p.message.contains("addresses[2]"), "{}", p.message);
    // The not-ready endpoint's addresses are listed, not used.
    let Lookup::Route { route, .. } = s.table.lookup("a.com", "/") else {
        panic!()
    };
    let Target::Backend(b) = &route.target else {
        panic!()
    };
    let Destination::Endpoints { endpoints, .. } = &b.destination else {
        panic!()
    };
    assert_eq!(endpoints.len(), 4);
}

#[test]
fn slices_are_merged_deduplicated_and_fqdn_slices_skipped() {
    let objects = vec![
        wicket_class(),
        web_service("default", "web"),
        http_slice("default", "web-a", "web", &["10.0.0.1", "10.0.0.2"]),
        http_slice("default", "web-b", "web", &["10.0.0.2", "10.0.0.3"]),
        mk_slice_typed(
            "default",
            "web-v6",
            "web",
            "IPv6",
            json!([{"name": "http", "port": 8080}]),
            &[ready("fd00::1")],
        ),
        mk_slice_typed(
            "default",
            "web-fqdn",
            "web",
            "FQDN",
            json!([{"name": "http", "port": 8080}]),
            &[ready("pod.example.com")],
        ),
        // A slice of another Service is not ours to merge.
        http_slice("default", "api-a", "api", &["10.9.9.9"]),
        mk_ingress(
            "default",
            "a",
            json!({"rules": [rule("a.com", json!([prefix("/", "web")]))]}),
        ),
    ];
    let s = snapshot(objects);
    assert_eq!(
        usable(&s, "a.com", "/"),
        vec![
            "10.0.0.1:8080",
            "10.0.0.2:8080",
            "10.0.0.3:8080",
            "[fd00::1]:8080"
        ]
    );
    assert!(s.problems.is_empty(), "{:#?}", s.problems);
}

#[test]
fn ready_endpoints_only_then_serving_terminating_then_none() {
    let ingress = mk_ingress(
        "default",
        "a",
        json!({"rules": [rule("a.com", json!([prefix("/", "web")]))]}),
    );
    let world = |eps: &[Ep<'_>]| {
        snapshot(vec![
            wicket_class(),
            web_service("default", "web"),
            mk_slice(
                "default",
                "w",
                "web",
                json!([{"name": "http", "port": 8080}]),
                eps,
            ),
            ingress.clone(),
        ])
    };
    // Missing conditions mean ready.
    let s = world(&[
        ("10.0.0.1", None, None, None),
        ("10.0.0.2", Some(false), Some(true), Some(true)),
    ]);
    assert_eq!(usable(&s, "a.com", "/"), vec!["10.0.0.1:8080"]);
    // During a rolling update nothing is ready: the serving, terminating ones are used.
    let s = world(&[
        ("10.0.0.1", Some(false), Some(true), Some(true)),
        ("10.0.0.2", Some(false), Some(false), Some(true)),
    ]);
    assert_eq!(usable(&s, "a.com", "/"), vec!["10.0.0.1:8080"]);
    // Nothing serves: no usable endpoint (503 at request time), not a Problem.
    let s = world(&[("10.0.0.1", Some(false), Some(false), Some(false))]);
    assert!(usable(&s, "a.com", "/").is_empty());
    assert!(s.problems.is_empty());
}

#[test]
fn selector_less_service_uses_hand_written_slices() {
    let objects = vec![
        wicket_class(),
        mk_service_spec(
            "default",
            "external-db-ui",
            json!({"ports": [{"name": "web", "port": 80}]}),
        ),
        mk_slice(
            "default",
            "external-db-ui-1",
            "external-db-ui",
            json!([{"name": "web", "port": 80}]),
            &[ready("192.168.10.5")],
        ),
        mk_ingress(
            "default",
            "a",
            json!({"rules": [rule("a.com", json!([prefix("/", "external-db-ui")]))]}),
        ),
    ];
    let s = snapshot(objects);
    assert_eq!(usable(&s, "a.com", "/"), vec!["192.168.10.5:80"]);
}

#[test]
fn endpoints_objects_count_as_mirrored_slices_and_bad_addresses_are_reported() {
    let endpoints = Object::Endpoints(Arc::new(obj(json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"namespace": "default", "name": "legacy"},
        "subsets": [{
            "addresses": [{"ip": "10.1.0.1"}, {"ip": "not-an-ip"}, {"ip": "10.1.0.2"}],
            "notReadyAddresses": [{"ip": "10.1.0.3"}],
            "ports": [{"name": "http", "port": 8000}]
        }]
    }))));
    let objects = vec![
        wicket_class(),
        mk_service_spec(
            "default",
            "legacy",
            json!({"ports": [{"name": "http", "port": 80}]}),
        ),
        endpoints,
        mk_ingress(
            "default",
            "a",
            json!({"rules": [rule("a.com", json!([prefix("/", "legacy")]))]}),
        ),
    ];
    let s = snapshot(objects);
    assert_eq!(
        usable(&s, "a.com", "/"),
        vec!["10.1.0.1:8000", "10.1.0.2:8000"]
    );
    let p = problem(&s, Reason::InvalidEndpoint);
    assert_eq!(p.object.kind, "Endpoints");
    assert!(p.message.contains("not-an-ip"));
    // The not-ready address is listed, but not usable.
    match s.table.lookup("a.com", "/") {
        Lookup::Route { route, .. } => match &route.target.backend().unwrap().destination {
            Destination::Endpoints { endpoints, .. } => assert_eq!(endpoints.len(), 3),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_in_a_slice_skips_that_endpoint_only() {
    let objects = vec![
        wicket_class(),
        web_service("default", "web"),
        mk_slice(
            "default",
            "w",
            "web",
            json!([{"name": "http", "port": 8080}]),
            &[ready("10.0.0.1"), ready("999.0.0.1"), ready("fd00::9")],
        ),
        mk_ingress(
            "default",
            "a",
            json!({"rules": [rule("a.com", json!([prefix("/", "web")]))]}),
        ),
    ];
    let s = snapshot(objects);
    assert_eq!(usable(&s, "a.com", "/"), vec!["10.0.0.1:8080"]);
    let bad: Vec<_> = s
        .problems
        .iter()
        .filter(|p| p.reason == Reason::InvalidEndpoint)
        .collect();
    assert_eq!(bad.len(), 2);
    assert!(bad.iter().all(|p| p.object.kind == "EndpointSlice"));
}

#[test]
fn a_service_without_any_endpoints_source_is_reported() {
    let objects = vec![
        wicket_class(),
        web_service("default", "web"),
        mk_ingress(
            "default",
            "a",
            json!({"rules": [rule("a.com", json!([prefix("/", "web")]))]}),
        ),
    ];
    let s = snapshot(objects);
    assert_eq!(reach(&s, "a.com", "/").as_deref(), Some("a -> 503"));
    assert!(problem(&s, Reason::NoEndpoints)
        .message
        .contains("kubernetes.io/service-name=web"));
}

#[test]
fn external_name_is_refused_unless_allowed() {
    let objects = vec![
        wicket_class(),
        mk_service_spec(
            "default",
            "ext",
            json!({"type": "ExternalName", "externalName": "api.example.org."}),
        ),
        mk_ingress(
            "default",
            "a",
            json!({"rules": [rule("a.com", json!([path("/", "Prefix", "ext", json!({"number": 443}))]))]}),
        ),
    ];
    let s = snapshot(objects.clone());
    assert_eq!(reach(&s, "a.com", "/").as_deref(), Some("a -> 503"));
    assert!(problem(&s, Reason::ExternalNameDisabled)
        .message
        .contains("--allow-external-name"));

    let allow = Settings {
        allow_external_name: true,
        ..settings()
    };
    let s = build(&Index::from_objects(objects), &allow);
    let Lookup::Route { route, .. } = s.table.lookup("a.com", "/") else {
        panic!()
    };
    match &route.target.backend().unwrap().destination {
        Destination::ExternalName {
            host,
            port,
            authority,
        } => {
            assert_eq!((host.as_str(), *port), ("api.example.org", 443));
            assert_eq!(authority.as_str(), "api.example.org:443");
        }
        other => panic!("{other:?}"),
    }
    assert!(s.problems.is_empty(), "{:#?}", s.problems);
}

#[test]
fn headless_services_use_their_endpoints() {
    let objects = vec![
        wicket_class(),
        mk_service_spec(
            "default",
            "db",
            json!({"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "http", "port": 80}]}),
        ),
        http_slice("default", "db-1", "db", &["10.0.5.1"]),
        mk_ingress(
            "default",
            "a",
            json!({"rules": [rule("a.com", json!([prefix("/", "db")]))]}),
        ),
    ];
    assert_eq!(
        usable(&snapshot(objects), "a.com", "/"),
        vec!["10.0.5.1:8080"]
    );
}

#[test]
fn session_affinity_client_ip_carries_its_timeout() {
    let backend_of = |spec: Value| {
        let s = snapshot(vec![
            wicket_class(),
            mk_service_spec("default", "web", spec),
            http_slice("default", "w", "web", &["10.0.0.1"]),
            mk_ingress(
                "default",
                "a",
                json!({"rules": [rule("a.com", json!([prefix("/", "web")]))]}),
            ),
        ]);
        let Lookup::Route { route, .. } = s.table.lookup("a.com", "/") else {
            panic!()
        };
        route.target.backend().unwrap().clone()
    };
    let ports = json!([{"name": "http", "port": 80}]);
    assert_eq!(backend_of(json!({"ports": ports})).affinity, None);
    assert_eq!(
        backend_of(json!({"ports": ports, "sessionAffinity": "ClientIP"})).affinity,
        Some(std::time::Duration::from_secs(10_800))
    );
    assert_eq!(
        backend_of(json!({"ports": ports, "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}))
        .affinity,
        Some(std::time::Duration::from_secs(60))
    );
}

#[test]
fn app_protocol_chooses_the_upstream_protocol() {
    let objects = vec![
        wicket_class(),
        mk_service(
            "default",
            "grpc",
            json!([{"name": "grpc", "port": 50051, "appProtocol": "kubernetes.io/h2c"}]),
        ),
        mk_slice(
            "default",
            "g",
            "grpc",
            json!([{"name": "grpc", "port": 50051}]),
            &[ready("10.0.0.1")],
        ),
        mk_service("default", "secure", json!([{"name": "https", "port": 443}])),
        mk_slice(
            "default",
            "s",
            "secure",
            json!([{"name": "https", "port": 8443, "appProtocol": "https"}]),
            &[ready("10.0.0.2")],
        ),
        mk_ingress(
            "default",
            "a",
            json!({"rules": [rule("a.com", json!([
                path("/grpc", "Prefix", "grpc", json!({"number": 50051})),
                path("/secure", "Prefix", "secure", json!({"name": "https"})),
                prefix("/", "grpc"),
            ]))]}),
        ),
    ];
    let s = snapshot(objects);
    let protocol = |p: &str| {
        let Lookup::Route { route, .. } = s.table.lookup("a.com", p) else {
            panic!()
        };
        route.target.backend().unwrap().protocol
    };
    assert_eq!(protocol("/grpc"), UpstreamProtocol::H2c);
    assert_eq!(protocol("/secure"), UpstreamProtocol::Https);
}

#[test]
fn the_same_backend_is_shared_by_every_route_that_uses_it() {
    let mut objects = base();
    objects.push(mk_ingress(
        "default",
        "a",
        json!({"rules": [
            rule("a.com", json!([prefix("/", "web")])),
            rule("b.com", json!([path("/", "Prefix", "web", json!({"name": "http"}))])),
        ]}),
    ));
    let s = snapshot(objects);
    let backend = |h: &str| {
        let Lookup::Route { route, .. } = s.table.lookup(h, "/") else {
            panic!()
        };
        route.target.backend().unwrap().clone()
    };
    // Same Service port by number and by name: same balancer identity.
    assert_eq!(backend("a.com").id, backend("b.com").id);
}

// ---------------------------------------------------------------------------------------
// TLS

fn tls_secret(ns: &str, name: &str, crt: &str, key: &str, kind: &str) -> Object {
    Object::Secret(Arc::new(obj(json!({
        "apiVersion": "v1", "kind": "Secret", "type": kind,
        "metadata": {"namespace": ns, "name": name},
        "stringData": {"tls.crt": crt, "tls.key": key}
    }))))
}

/// A self-signed certificate for `names`, valid until `not_after_year`.
fn cert_for(names: &[&str], not_after_year: i32) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn good_secret(ns: &str, name: &str, names: &[&str]) -> Object {
    let (crt, key) = cert_for(names, 2099);
    tls_secret(ns, name, &crt, &key, "kubernetes.io/tls")
}

/// Rules for every host, so TLS hosts are never "without rule" unless a test wants it.
fn routed(hosts: &[&str]) -> Value {
    Value::Array(
        hosts
            .iter()
            .map(|h| rule(h, json!([prefix("/", "web")])))
            .collect(),
    )
}

fn served_secret(s: &Snapshot, sni: &str) -> Option<String> {
    s.tls
        .certificate_for(Some(sni))
        .map(|c| c.secret.name.clone())
}

#[test]
fn tls_secrets_are_checked_and_each_failure_is_reported() {
    let (crt, key) = cert_for(&["a.com"], 2099);
    let (_, other_key) = cert_for(&["b.com"], 2099);
    let mut objects = base();
    objects.push(tls_secret(
        "default",
        "good",
        &crt,
        &key,
        "kubernetes.io/tls",
    ));
    objects.push(tls_secret("default", "opaque", &crt, &key, "Opaque"));
    objects.push(tls_secret(
        "default",
        "garbage",
        "not pem",
        "not pem",
        "kubernetes.io/tls",
    ));
    objects.push(tls_secret(
        "default",
        "mismatch",
        &crt,
        &other_key,
        "kubernetes.io/tls",
    ));
    objects.push(mk_ingress(
        "default",
        "a",
        json!({
            "tls": [
                {"hosts": ["a.com"], "secretName": "good"},
                {"hosts": ["b.com"], "secretName": "missing"},
                {"hosts": ["c.com"], "secretName": "opaque"},
                {"hosts": ["d.com"], "secretName": "garbage"},
                {"hosts": ["e.com"], "secretName": "mismatch"},
            ],
            "rules": routed(&["a.com", "b.com", "c.com", "d.com", "e.com"])
        }),
    ));
    let s = snapshot(objects);
    assert!(
        reach(&s, "a.com", "/").is_some(),
        "TLS problems never remove routes"
    );
    let messages: Vec<(Reason, &str)> = s
        .problems
        .iter()
        .map(|p| (p.reason, p.message.as_str()))
        .collect();
    assert_eq!(messages.len(), 4, "{messages:#?}");
    assert!(messages
        .iter()
        .any(|(r, m)| *r == Reason::TLSSecretNotFound && m.contains("default/missing")));
    assert!(messages
        .iter()
        .any(|(r, m)| *r == Reason::TLSSecretInvalid && m.contains("\"Opaque\"")));
    assert!(messages
        .iter()
        .any(|(r, m)| *r == Reason::TLSSecretInvalid && m.contains("default/garbage")));
    assert!(messages
        .iter()
        .any(|(r, m)| *r == Reason::TLSSecretInvalid && m.contains("does not belong")));
    // Each broken host gets the default certificate (none configured: the fallback).
    assert_eq!(served_secret(&s, "a.com").as_deref(), Some("good"));
    for host in ["b.com", "c.com", "d.com", "e.com"] {
        assert_eq!(served_secret(&s, host), None, "{host}");
        match &s.tls.host(host).unwrap().binding {
            TlsBinding::Default(why) => assert!(!why.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn sni_picks_the_exact_host_then_the_wildcard_then_the_default() {
    let mut objects = base();
    objects.push(good_secret("default", "exact", &["www.shop.com"]));
    objects.push(good_secret("default", "wild", &["*.shop.com"]));
    objects.push(good_secret("default", "fallback", &["fallback.example"]));
    objects.push(mk_ingress(
        "default",
        "a",
        json!({
            "tls": [
                {"hosts": ["www.shop.com"], "secretName": "exact"},
                {"hosts": ["*.shop.com"], "secretName": "wild"},
            ],
            "rules": routed(&["www.shop.com", "*.shop.com"])
        }),
    ));
    let with_default = Settings {
        default_certificate: Some(Key::new("default", "fallback")),
        ..settings()
    };
    let s = build(&Index::from_objects(objects), &with_default);
    assert!(s.problems.is_empty(), "{:#?}", s.problems);
    assert_eq!(served_secret(&s, "www.shop.com").as_deref(), Some("exact"));
    assert_eq!(served_secret(&s, "api.shop.com").as_deref(), Some("wild"));
    assert_eq!(
        served_secret(&s, "a.b.shop.com").as_deref(),
        Some("fallback")
    );
    assert_eq!(served_secret(&s, "shop.com").as_deref(), Some("fallback"));
    assert_eq!(
        s.tls.certificate_for(None).map(|c| c.secret.name.as_str()),
        Some("fallback")
    );
}

#[test]
fn an_expired_certificate_is_served_and_reported() {
    let (crt, key) = cert_for(&["old.com"], 2021);
    let mut objects = base();
    objects.push(tls_secret(
        "default",
        "old",
        &crt,
        &key,
        "kubernetes.io/tls",
    ));
    objects.push(mk_ingress(
        "default",
        "a",
        json!({
            "tls": [{"hosts": ["old.com"], "secretName": "old"}],
            "rules": routed(&["old.com"])
        }),
    ));
    let s = snapshot(objects);
    assert_eq!(served_secret(&s, "old.com").as_deref(), Some("old"));
    assert!(problem(&s, Reason::TLSCertificateExpired)
        .message
        .contains("2021-01-01"));
}

#[test]
fn a_certificate_that_does_not_cover_its_host_is_reported() {
    let mut objects = base();
    objects.push(good_secret("default", "s", &["other.com", "*.other.com"]));
    objects.push(mk_ingress(
        "default",
        "a",
        json!({
            "tls": [{"hosts": ["x.other.com", "mine.com"], "secretName": "s"}],
            "rules": routed(&["x.other.com", "mine.com"])
        }),
    ));
    let s = snapshot(objects);
    let p = problem(&s, Reason::TLSHostNotCovered);
    assert!(
        p.message.contains("does not cover mine.com"),
        "{}",
        p.message
    );
    assert_eq!(s.problems.len(), 1, "{:#?}", s.problems);
}

#[test]
fn the_same_tls_host_with_another_secret_goes_to_the_older_ingress() {
    let mut objects = base();
    objects.push(good_secret("default", "first", &["a.com"]));
    objects.push(good_secret("default", "second", &["a.com"]));
    let tls = |secret: &str| json!({"ingressClassName": "wicket", "tls": [{"hosts": ["a.com"], "secretName": secret}], "rules": routed(&["a.com"])});
    objects.push(mk_ingress_full(
        "default",
        "new",
        Some("2026-02-01T00:00:00Z"),
        json!({}),
        tls("second"),
    ));
    objects.push(mk_ingress_full(
        "default",
        "old",
        Some("2026-01-01T00:00:00Z"),
        json!({}),
        tls("first"),
    ));
    let s = snapshot(objects);
    assert_eq!(served_secret(&s, "a.com").as_deref(), Some("first"));
    let p = problem(&s, Reason::TLSHostConflict);
    assert_eq!(p.object.name, "new");
    assert!(
        p.message.contains("Secret first from Ingress default/old"),
        "{}",
        p.message
    );
}

#[test]
fn a_tls_section_without_hosts_covers_the_rule_hosts() {
    let mut objects = base();
    objects.push(good_secret("default", "s", &["a.com", "b.com"]));
    objects.push(mk_ingress(
        "default",
        "a",
        json!({
            "tls": [{"secretName": "s"}],
            "rules": routed(&["a.com", "b.com"])
        }),
    ));
    let s = snapshot(objects);
    assert_eq!(served_secret(&s, "a.com").as_deref(), Some("s"));
    assert_eq!(served_secret(&s, "b.com").as_deref(), Some("s"));
    assert!(s.problems.is_empty(), "{:#?}", s.problems);
}

#[test]
fn a_tls_host_without_any_rule_is_reported() {
    let mut objects = base();
    objects.push(good_secret(
        "default",
        "s",
        &["www.a.com", "a.com", "x.w.com"],
    ));
    objects.push(mk_ingress(
        "default",
        "a",
        json!({
            "tls": [{"hosts": ["www.a.com", "x.w.com"], "secretName": "s"}],
            "rules": routed(&["a.com", "*.w.com"])
        }),
    ));
    let s = snapshot(objects);
    // x.w.com is routed by the wildcard rule; www.a.com by nothing.
    let orphans: Vec<&str> = s
        .problems
        .iter()
        .filter(|p| p.reason == Reason::TLSHostWithoutRule)
        .map(|p| p.message.as_str())
        .collect();
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert!(orphans[0].contains("www.a.com"));
    assert_eq!(
        served_secret(&s, "www.a.com").as_deref(),
        Some("s"),
        "still served"
    );
}

#[test]
fn a_broken_default_certificate_falls_back_to_self_signed_with_a_problem() {
    let mut objects = base();
    objects.push(tls_secret(
        "infra",
        "default-cert",
        "nope",
        "nope",
        "kubernetes.io/tls",
    ));
    let flag = Settings {
        default_certificate: Some(Key::new("infra", "default-cert")),
        ..settings()
    };
    let s = build(&Index::from_objects(objects), &flag);
    assert!(s.tls.default_certificate().is_none());
    let p = problem(&s, Reason::TLSSecretInvalid);
    assert_eq!(p.object.kind, "Secret");
    assert!(p.message.contains("self-signed"));
}

#[test]
fn a_rotated_secret_makes_a_different_snapshot() {
    let ingress = mk_ingress(
        "default",
        "a",
        json!({"tls": [{"hosts": ["a.com"], "secretName": "s"}], "rules": routed(&["a.com"])}),
    );
    let world = |secret: Object| {
        let mut objects = base();
        objects.push(secret);
        objects.push(ingress.clone());
        snapshot(objects)
    };
    let before = world(good_secret("default", "s", &["a.com"]));
    let again = before.clone();
    let after = world(good_secret("default", "s", &["a.com"]));
    assert!(before.same_content(&again));
    assert!(
        !before.same_content(&after),
        "a new certificate in the same Secret must be published"
    );
}

#[test]
fn annotations_set_the_redirect_and_protocol_of_every_route_of_the_ingress() {
    let mut objects = base();
    objects.push(mk_ingress_full(
        "default",
        "grpc",
        None,
        json!({"nginx.ingress.kubernetes.io/backend-protocol": "GRPC", "wicket.dev/ssl-redirect": "false"}),
        json!({"ingressClassName": "wicket", "rules": routed(&["g.com"]),
               "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}),
    ));
    objects.push(mk_ingress(
        "default",
        "plain",
        json!({"rules": routed(&["p.com"])}),
    ));
    let s = snapshot(objects);
    let route = |h: &str| match s.table.lookup(h, "/") {
        Lookup::Route { route, .. } => route.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(route("g.com").protocol, Some(UpstreamProtocol::H2c));
    assert!(!route("g.com").ssl_redirect);
    assert_eq!(route("p.com").protocol, None);
    assert!(route("p.com").ssl_redirect);
    assert_eq!(
        s.table.default_backend().unwrap().protocol,
        Some(UpstreamProtocol::H2c)
    );
}

// ---------------------------------------------------------------------------------------
// Whole-build properties

#[test]
fn translation_is_deterministic() {
    let mut objects = base();
    for i in 0..20 {
        objects.push(mk_ingress("default", &format!("ing-{i}"), json!({"rules": [
            rule(&format!("h{}.com", i % 3), json!([prefix(&format!("/p{}", i % 4), "web"), prefix("/missing", "nope")]))
        ]})));
    }
    let a = snapshot(objects.clone());
    objects.reverse();
    let b = snapshot(objects);
    assert!(a.same_content(&b));
    assert_eq!(
        serde_json::to_string(&a.table).unwrap(),
        serde_json::to_string(&b.table).unwrap()
    );
    assert_eq!(a.problems, b.problems);
}

#[test]
fn an_ingress_with_nothing_to_route_is_reported() {
    let mut objects = base();
    objects.push(mk_ingress("default", "empty", json!({})));
    let s = snapshot(objects);
    assert_eq!(problem(&s, Reason::InvalidIngress).object.name, "empty");
}

#[test]
fn source_problems_are_carried_into_the_snapshot() {
    let mut index = Index::from_objects(base());
    index.source_problems.push(Problem::new(
        crate::model::ObjectRef::new("File", None, "bad.yaml"),
        Reason::InvalidManifest,
        "oops",
    ));
    let s = build(&index, &settings());
    assert_eq!(s.problems.len(), 1);
    assert_eq!(s.problems[0].object.name, "bad.yaml");
}

// ---------------------------------------------------------------------------------------
// use-regex and rewrite-target (INGRESS-NGINX.md §B2–B3, §C1)

fn regex_world(annotations: Value, paths: Value) -> Vec<Object> {
    let mut objects = base();
    objects.push(mk_ingress_full(
        "default",
        "plain",
        Some("2026-01-01T00:00:00Z"),
        json!({}),
        json!({"rules": [rule("a.com", json!([prefix("/foo", "web")]))]}),
    ));
    objects.push(mk_ingress_full(
        "default",
        "regex",
        Some("2026-01-02T00:00:00Z"),
        annotations,
        json!({"rules": [rule("a.com", paths)]}),
    ));
    objects
}

fn rewritten(s: &Snapshot, host: &str, path: &str) -> Option<String> {
    match s.table.lookup(host, path) {
        Lookup::Route { route, .. } => route.rewrite.as_ref().and_then(|r| r.apply(path, None)),
        _ => None,
    }
}

#[test]
fn a_rewrite_puts_every_path_of_the_host_in_regex_mode() {
    let s = snapshot(regex_world(
        json!({"nginx.ingress.kubernetes.io/rewrite-target": "/new/backend"}),
        json!([path(
            "/foo.+",
            "ImplementationSpecific",
            "web",
            json!({"number": 80})
        )]),
    ));
    // The plain Ingress's Prefix /foo is now a case-insensitive prefix pattern.
    assert_eq!(
        reach(&s, "a.com", "/foo").as_deref(),
        Some("plain -> default/web:80")
    );
    assert_eq!(
        reach(&s, "a.com", "/FOO").as_deref(),
        Some("plain -> default/web:80")
    );
    assert_eq!(
        reach(&s, "a.com", "/foo/bar").as_deref(),
        Some("regex -> default/web:80")
    );
    assert_eq!(
        rewritten(&s, "a.com", "/foo/bar").as_deref(),
        Some("/new/backend")
    );
    assert_eq!(rewritten(&s, "a.com", "/foo"), None);
    assert!(s.problems.is_empty(), "{:#?}", s.problems);
}

#[test]
fn use_regex_false_does_not_stop_a_rewrite_from_switching_the_host() {
    let s = snapshot(regex_world(
        json!({"nginx.ingress.kubernetes.io/rewrite-target": "/rewritten", "nginx.ingress.kubernetes.io/use-regex": "false"}),
        json!([path("/", "Prefix", "web", json!({"number": 80}))]),
    ));
    assert_eq!(rewritten(&s, "a.com", "/").as_deref(), Some("/rewritten"));
    assert_eq!(
        reach(&s, "a.com", "/foobar").as_deref(),
        Some("plain -> default/web:80")
    );
}

#[test]
fn use_regex_alone_switches_the_host_and_a_target_equal_to_the_path_does_not() {
    let s = snapshot(regex_world(
        json!({"nginx.ingress.kubernetes.io/use-regex": "true"}),
        json!([path(
            "/api/v[0-9]+/?(.*)",
            "ImplementationSpecific",
            "web",
            json!({"number": 80})
        )]),
    ));
    assert_eq!(
        reach(&s, "a.com", "/API/V2/users").as_deref(),
        Some("regex -> default/web:80")
    );
    assert_eq!(rewritten(&s, "a.com", "/api/v2/users"), None);
    let s = snapshot(regex_world(
        json!({"nginx.ingress.kubernetes.io/rewrite-target": "/bar"}),
        json!([prefix("/bar", "web")]),
    ));
    assert_eq!(reach(&s, "a.com", "/foobar"), None, "no regex mode");
}

#[test]
fn other_hosts_keep_the_ingress_matching_rules() {
    let mut objects = regex_world(
        json!({"nginx.ingress.kubernetes.io/use-regex": "true"}),
        json!([prefix("/x", "web")]),
    );
    objects.push(mk_ingress(
        "default",
        "other",
        json!({"rules": [rule("b.com", json!([prefix("/foo", "web")]))]}),
    ));
    let s = snapshot(objects);
    assert_eq!(
        reach(&s, "a.com", "/foobar").as_deref(),
        Some("plain -> default/web:80")
    );
    assert_eq!(reach(&s, "b.com", "/foobar"), None);
}

#[test]
fn a_path_that_does_not_compile_is_reported_and_the_rest_served() {
    let s = snapshot(regex_world(
        json!({"nginx.ingress.kubernetes.io/use-regex": "true"}),
        json!([
            path(
                "/(?=look)ahead",
                "ImplementationSpecific",
                "web",
                json!({"number": 80})
            ),
            path(
                "/ok/(.*)",
                "ImplementationSpecific",
                "web",
                json!({"number": 80})
            ),
        ]),
    ));
    let p = problem(&s, Reason::InvalidPath);
    assert_eq!(p.object.name, "regex");
    assert!(
        p.message.contains("/(?=look)ahead") && p.message.contains("path ignored"),
        "{}",
        p.message
    );
    assert_eq!(
        reach(&s, "a.com", "/ok/x").as_deref(),
        Some("regex -> default/web:80")
    );
    assert_eq!(
        reach(&s, "a.com", "/foo").as_deref(),
        Some("plain -> default/web:80")
    );
}

#[test]
fn an_unknown_capture_is_reported_and_filled_in_empty() {
    let s = snapshot(regex_world(
        json!({"nginx.ingress.kubernetes.io/rewrite-target": "/x/$1/$2"}),
        json!([path(
            "/api/(.*)",
            "ImplementationSpecific",
            "web",
            json!({"number": 80})
        )]),
    ));
    let p = problem(&s, Reason::InvalidAnnotation);
    assert!(p.message.contains("$2"), "{}", p.message);
    assert_eq!(
        rewritten(&s, "a.com", "/api/users").as_deref(),
        Some("/x/users/")
    );
}

#[test]
fn a_rewrite_with_an_nginx_variable_blocks_the_ingress() {
    let s = snapshot(regex_world(
        json!({"nginx.ingress.kubernetes.io/rewrite-target": "/$host/$1"}),
        json!([path(
            "/api/(.*)",
            "ImplementationSpecific",
            "web",
            json!({"number": 80})
        )]),
    ));
    assert_eq!(
        reach(&s, "a.com", "/api/users").as_deref(),
        Some("regex -> 503")
    );
    assert!(problem(&s, Reason::InvalidAnnotation)
        .message
        .contains("nginx variable"));
    // A target with characters ingress-nginx refuses is ignored: no rewrite, no regex mode.
    let s = snapshot(regex_world(
        json!({"nginx.ingress.kubernetes.io/rewrite-target": "/x?y=1"}),
        json!([prefix("/api", "web")]),
    ));
    assert_eq!(
        reach(&s, "a.com", "/api/users").as_deref(),
        Some("regex -> default/web:80")
    );
    assert_eq!(rewritten(&s, "a.com", "/api/users"), None);
    assert_eq!(reach(&s, "a.com", "/foobar"), None);
}

#[test]
fn in_regex_mode_a_slash_variant_of_a_prefix_is_its_own_pattern() {
    // ingress-path-matching.md: /foo/bar/(.+) (rewrite), Prefix /foo/bar, Prefix /foo/bar/.
    let mut objects = base();
    objects.push(mk_service("default", "two", json!([{"port": 80}])));
    objects.push(mk_service("default", "three", json!([{"port": 80}])));
    objects.push(mk_ingress_full(
        "default",
        "rewrite",
        Some("2026-01-01T00:00:00Z"),
        json!({"nginx.ingress.kubernetes.io/rewrite-target": "/$1"}),
        json!({"rules": [rule("a.com", json!([path("/foo/bar/(.+)", "ImplementationSpecific", "three", json!({"number": 80}))]))]}),
    ));
    objects.push(mk_ingress_full(
        "default",
        "one",
        Some("2026-01-02T00:00:00Z"),
        json!({}),
        json!({"rules": [rule("a.com", json!([prefix("/foo/bar", "web")]))]}),
    ));
    objects.push(mk_ingress_full(
        "default",
        "two",
        Some("2026-01-03T00:00:00Z"),
        json!({}),
        json!({"rules": [rule("a.com", json!([prefix("/foo/bar/", "two")]))]}),
    ));
    let s = snapshot(objects);
    assert!(reach(&s, "a.com", "/foo/bar/1")
        .unwrap()
        .starts_with("rewrite -> "));
    assert!(reach(&s, "a.com", "/foo/bar/")
        .unwrap()
        .starts_with("two -> "));
    assert!(reach(&s, "a.com", "/foo/bar")
        .unwrap()
        .starts_with("one -> "));
    assert!(
        s.problems.iter().all(|p| p.reason != Reason::PathConflict),
        "{:#?}",
        s.problems
    );
}

// ---------------------------------------------------------------------------------------
// Service traffic policies and topology (kube-proxy's CategorizeEndpoints)

/// (ip, nodeName, zone, hints.forZones, hints.forNodes) of a ready endpoint.
type Placed<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], &'a [&'a str]);

/// A replica on `node` in `zone`.
fn settings_at(node: Option<&str>, zone: Option<&str>) -> Settings {
    Settings {
        locality: crate::model::Locality::new(node, zone, "--zone"),
        ..settings()
    }
}

/// Service web (with `extra` merged into its spec), and one slice whose endpoints are
/// (ip, node, zone, forZones, forNodes), all ready.
fn topology_world(extra: Value, eps: &[Placed<'_>]) -> Index {
    let mut spec = json!({"selector": {"app": "web"},
                          "ports": [{"name": "http", "port": 80, "targetPort": 8080}]});
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|(ip, node, zone, zones, nodes)| {
            let mut e = json!({"addresses": [ip], "conditions": {"ready": true}});
            if !node.is_empty() {
                e["nodeName"] = json!(node);
            }
            if !zone.is_empty() {
                e["zone"] = json!(zone);
            }
            let mut hints = json!({});
            if !zones.is_empty() {
                hints["forZones"] =
                    json!(zones.iter().map(|z| json!({"name": z})).collect::<Vec<_>>());
            }
            if !nodes.is_empty() {
                hints["forNodes"] =
                    json!(nodes.iter().map(|n| json!({"name": n})).collect::<Vec<_>>());
            }
            if hints.as_object().is_some_and(|h| !h.is_empty()) {
                e["hints"] = hints;
            }
            e
        })
        .collect();
    let slice = Object::EndpointSlice(Arc::new(obj(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": "web-1",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": endpoints
    }))));
    Index::from_objects(vec![
        wicket_class(),
        mk_service_spec("default", "web", spec),
        slice,
        mk_ingress(
            "default",
            "a",
            json!({"rules": [rule("a.com", json!([prefix("/", "web")]))]}),
        ),
    ])
}

#[test]
fn zone_hints_send_traffic_to_this_zone_and_mark_the_others() {
    let index = topology_world(
        json!({"trafficDistribution": "PreferClose"}),
        &[
            ("10.0.0.1", "n1", "a", &["a"], &[]),
            ("10.0.0.2", "n2", "b", &["b"], &[]),
            ("10.0.0.3", "n3", "a", &["a"], &[]),
        ],
    );
    let s = build(&index, &settings_at(Some("n1"), Some("a")));
    assert_eq!(
        usable(&s, "a.com", "/"),
        vec!["10.0.0.1:8080", "10.0.0.3:8080"]
    );
    let s = build(&index, &settings_at(Some("n2"), Some("b")));
    assert_eq!(usable(&s, "a.com", "/"), vec!["10.0.0.2:8080"]);
    // A replica that does not know its zone uses them all.
    let s = build(&index, &settings_at(Some("n1"), None));
    assert_eq!(usable(&s, "a.com", "/").len(), 3);
    assert!(s.problems.is_empty(), "{:#?}", s.problems);
}

#[test]
fn hints_are_ignored_when_one_ready_endpoint_lacks_them() {
    let index = topology_world(
        json!({}),
        &[
            ("10.0.0.1", "n1", "a", &["a"], &[]),
            ("10.0.0.2", "n2", "b", &[], &[]),
        ],
    );
    let s = build(&index, &settings_at(Some("n1"), Some("a")));
    assert_eq!(usable(&s, "a.com", "/").len(), 2);
}

#[test]
fn node_hints_prefer_this_node_then_fall_back_to_the_zone() {
    let eps: &[Placed<'_>] = &[
        ("10.0.0.1", "n1", "a", &["a"], &["n1"]),
        ("10.0.0.2", "n2", "a", &["a"], &["n2"]),
        ("10.0.0.3", "n3", "b", &["b"], &["n3"]),
    ];
    let index = topology_world(json!({"trafficDistribution": "PreferSameNode"}), eps);
    let s = build(&index, &settings_at(Some("n1"), Some("a")));
    assert_eq!(usable(&s, "a.com", "/"), vec!["10.0.0.1:8080"]);
    // A node with no endpoint of its own: its zone's.
    let s = build(&index, &settings_at(Some("n9"), Some("a")));
    assert_eq!(
        usable(&s, "a.com", "/"),
        vec!["10.0.0.1:8080", "10.0.0.2:8080"]
    );
}

#[test]
fn local_internal_traffic_policy_uses_this_nodes_endpoints_or_none() {
    let index = topology_world(
        json!({"internalTrafficPolicy": "Local"}),
        &[
            ("10.0.0.1", "n1", "a", &["a"], &[]),
            ("10.0.0.2", "n2", "a", &["a"], &[]),
            ("10.0.0.3", "", "a", &["a"], &[]),
        ],
    );
    let s = build(&index, &settings_at(Some("n2"), Some("a")));
    assert_eq!(usable(&s, "a.com", "/"), vec!["10.0.0.2:8080"]);
    assert!(s.problems.is_empty(), "{:#?}", s.problems);
    // No endpoint on this node: none at all (503), no fallback to other nodes.
    let s = build(&index, &settings_at(Some("n7"), Some("a")));
    assert!(usable(&s, "a.com", "/").is_empty());
    // Without a node name nothing is local, and the Service says why.
    let s = build(&index, &settings_at(None, Some("a")));
    assert!(usable(&s, "a.com", "/").is_empty());
    let p = problem(&s, Reason::TrafficPolicy);
    assert_eq!(p.object.name, "web");
    assert!(p.message.contains("node name"), "{}", p.message);
}

#[test]
fn local_policy_behind_a_deployment_is_a_problem() {
    let index = topology_world(
        json!({"internalTrafficPolicy": "Local"}),
        &[("10.0.0.1", "n1", "", &[], &[])],
    );
    let mut settings = settings_at(Some("n1"), None);
    settings.locality.deployment = true;
    let s = build(&index, &settings);
    assert_eq!(usable(&s, "a.com", "/"), vec!["10.0.0.1:8080"]);
    assert!(problem(&s, Reason::TrafficPolicy)
        .message
        .contains("DaemonSet"));
}

#[test]
fn unknown_policy_values_are_problems_and_count_as_unset() {
    let index = topology_world(
        json!({"internalTrafficPolicy": "Nearby", "trafficDistribution": "PreferFar"}),
        &[
            ("10.0.0.1", "n1", "a", &[], &[]),
            ("10.0.0.2", "n2", "b", &[], &[]),
        ],
    );
    let s = build(&index, &settings_at(Some("n1"), Some("a")));
    assert_eq!(usable(&s, "a.com", "/").len(), 2);
    let messages: Vec<&str> = s
        .problems
        .iter()
        .filter(|p| p.reason == Reason::TrafficPolicy)
        .map(|p| p.message.as_str())
        .collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("\"Nearby\"")));
    assert!(messages.iter().any(|m| m.contains("\"PreferFar\"")));
}

#[test]
fn endpoints_objects_in_manifests_carry_their_node() {
    let endpoints = Object::Endpoints(Arc::new(obj(json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"namespace": "default", "name": "web"},
        "subsets": [{"addresses": [{"ip": "10.0.0.1", "nodeName": "n1"},
                                   {"ip": "10.0.0.2", "nodeName": "n2"}],
                     "ports": [{"name": "http", "port": 8080}]}]
    }))));
    let index = Index::from_objects(vec![
        wicket_class(),
        mk_service_spec(
            "default",
            "web",
            json!({"internalTrafficPolicy": "Local",
                   "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}),
        ),
        endpoints,
        mk_ingress(
            "default",
            "a",
            json!({"rules": [rule("a.com", json!([prefix("/", "web")]))]}),
        ),
    ]);
    let s = build(&index, &settings_at(Some("n2"), None));
    assert_eq!(usable(&s, "a.com", "/"), vec!["10.0.0.2:8080"]);
}
