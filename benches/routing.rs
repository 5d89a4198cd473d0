//! Routing core benchmarks.
//!
//! * `translate/full`: 2,000 hosts × 5 paths plus 100 wildcard hosts × 5 paths (10,500
//!   rules), 10,000 Services, 10,000 EndpointSlices with 5 endpoints each (50,000
//!   endpoints): one complete build of the snapshot. Target ≤ 150 ms.
//! * `translate/annotated`: the same world where every third Ingress carries
//!   ingress-nginx annotations (body size, timeouts, CORS, cookie affinity, and on every
//!   ninth a rewrite-target that puts its host in regex mode). Target ≤ 150 ms.
//! * `translate/gateway_2000x5`: the Gateway API counterpart of `translate/full`: one
//!   GatewayClass, one Gateway (an HTTP listener on port 80 taking routes from every
//!   namespace), 2,000 HTTPRoutes of one hostname each and 5 rules (PathPrefix `/`, an
//!   Exact path, two longer PathPrefixes, a PathPrefix with a header match: 10,000 rules),
//!   over the same 10,000 Services and 50,000 endpoints, no Ingress. Target: the Ingress
//!   build target, ≤ 150 ms.
//! * `lookup/*`: normalise the Host and find the route: hit, miss, wildcard. Target
//!   ≤ 300 ns median. `lookup/gateway_hit`: the same host and path as `lookup/hit` found
//!   in the `translate/gateway_2000x5` world's Gateway API table (`GatewayTable::lookup`).
//!   `lookup/allowlist_1000_ranges`: one client address checked against an allow list of
//!   1,000 CIDR ranges.
//!
//! * `access/basic_auth_remembered`: a request whose credentials were checked before (the
//!   common case: no bcrypt). `access/bcrypt_cost_10_check`: one check that is not
//!   remembered, with `htpasswd -B`'s default cost. `access/rate_limit_admit`: one
//!   `limit-rps` decision for a known client.
//!
//! * `dashboard/*`: the admin dashboard of the `translate/full` world (10,500 routes,
//!   10,000 backends, 50,000 endpoints, traffic on 1,000 pod addresses): building its view
//!   (`view`), the whole HTML page (`html`). Target ≤ 100 ms each: it runs on the blocking
//!   pool, never on a proxy worker, but an operator's refresh should stay quick.
//!
//! Run: `cargo bench --bench routing`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec,
    IngressRule, IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wicket::admin::dashboard;
use wicket::controller::gateway_api::{
    AllowedRoutes, Gateway, GatewayClass, GatewayClassSpec, GatewaySpec, HttpBackendRef,
    HttpPathMatch, HttpRoute, HttpRouteMatch, HttpRouteRule, HttpRouteSpec, Listener,
    ParentReference, RouteNamespaces, ValueMatch,
};
use wicket::controller::index::{Index, Object};
use wicket::controller::{translate, Settings};
use wicket::model::gateway::RequestFacts;
use wicket::model::{Lookup, Snapshot};
use wicket::proxy::route::normalize_host;

const HOSTS: usize = 2_000;
const WILDCARD_HOSTS: usize = 100;
const PATHS_PER_HOST: usize = 5;
const SERVICES: usize = 10_000;
const ENDPOINTS_PER_SLICE: usize = 5;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.to_owned()),
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

fn path(p: String, service: usize) -> HTTPIngressPath {
    HTTPIngressPath {
        path: Some(p),
        path_type: "Prefix".to_owned(),
        backend: IngressBackend {
            service: Some(IngressServiceBackend {
                name: format!("svc-{service}"),
                port: Some(ServiceBackendPort {
                    name: Some("http".to_owned()),
                    number: None,
                }),
            }),
            resource: None,
        },
    }
}

/// The annotations of every third Ingress in the annotated world.
fn annotations(i: usize) -> Option<BTreeMap<String, String>> {
    if i % 3 != 0 {
        return None;
    }
    let nginx = |k: &str, v: &str| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_owned());
    let mut map: BTreeMap<String, String> = [
        nginx("proxy-body-size", "8m"),
        nginx("proxy-read-timeout", "120"),
        nginx("enable-cors", "true"),
        nginx(
            "cors-allow-origin",
            "https://app.example.com, https://*.example.org",
        ),
        nginx("affinity", "cookie"),
        nginx("session-cookie-name", "route"),
        nginx("session-cookie-path", "/"),
    ]
    .into_iter()
    .collect();
    if i % 9 == 0 {
        map.extend([nginx("rewrite-target", "/v2"), nginx("use-regex", "true")]);
    }
    Some(map)
}

fn ingress(i: usize, host: String, annotated: bool) -> Object {
    let paths = (0..PATHS_PER_HOST)
        .map(|p| {
            let service = (i * PATHS_PER_HOST + p) % SERVICES;
            let route = if p == 0 {
                "/".to_owned()
            } else {
                format!("/api/v{p}/items")
            };
            path(route, service)
        })
        .collect();
    let mut metadata = meta("bench", &format!("ing-{i}"));
    if annotated {
        metadata.annotations = annotations(i);
    }
    Object::Ingress(Arc::new(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: Some("wicket".to_owned()),
            rules: Some(vec![IngressRule {
                host: Some(host),
                http: Some(HTTPIngressRuleValue { paths }),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// The Services, each with one EndpointSlice of 5 ready endpoints, that both worlds route to.
fn services() -> Vec<Object> {
    let mut objects = Vec::with_capacity(2 * SERVICES);
    for s in 0..SERVICES {
        objects.push(Object::Service(Arc::new(Service {
            metadata: meta("bench", &format!("svc-{s}")),
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    name: Some("http".to_owned()),
                    port: 80,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })));
        let endpoints = (0..ENDPOINTS_PER_SLICE)
            .map(|e| Endpoint {
                addresses: vec![format!("10.{}.{}.{}", s / 250, s % 250, e + 1)],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                ..Default::default()
            })
            .collect();
        let mut labels = BTreeMap::new();
        labels.insert("kubernetes.io/service-name".to_owned(), format!("svc-{s}"));
        objects.push(Object::EndpointSlice(Arc::new(EndpointSlice {
            metadata: ObjectMeta {
                labels: Some(labels),
                ..meta("bench", &format!("svc-{s}-abcde"))
            },
            address_type: "IPv4".to_owned(),
            endpoints,
            ports: Some(vec![EndpointPort {
                name: Some("http".to_owned()),
                port: Some(8080),
                ..Default::default()
            }]),
        })));
    }
    objects
}

fn world(annotated: bool) -> Index {
    let mut objects = vec![Object::IngressClass(Arc::new(IngressClass {
        metadata: ObjectMeta {
            name: Some("wicket".to_owned()),
            ..Default::default()
        },
        spec: Some(IngressClassSpec {
            controller: Some("wicket.dev/ingress-controller".to_owned()),
            parameters: None,
        }),
    }))];
    for i in 0..HOSTS {
        objects.push(ingress(i, format!("host-{i}.example.com"), annotated));
    }
    for i in 0..WILDCARD_HOSTS {
        objects.push(ingress(
            HOSTS + i,
            format!("*.tenant-{i}.example.com"),
            annotated,
        ));
    }
    objects.extend(services());
    Index::from_objects(objects)
}

/// One rule of a bench HTTPRoute: a path match (`Exact` or `PathPrefix`), optionally a
/// header match, to one Service's port 80.
fn gateway_rule(
    kind: &str,
    path: &str,
    header: Option<(&str, &str)>,
    service: usize,
) -> HttpRouteRule {
    HttpRouteRule {
        matches: Some(vec![HttpRouteMatch {
            path: Some(HttpPathMatch {
                type_: Some(kind.to_owned()),
                value: Some(path.to_owned()),
            }),
            headers: header.map(|(name, value)| {
                vec![ValueMatch {
                    type_: None,
                    name: name.to_owned(),
                    value: value.to_owned(),
                }]
            }),
            ..Default::default()
        }]),
        backend_refs: Some(vec![HttpBackendRef {
            name: format!("svc-{service}"),
            port: Some(80),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// HTTPRoute `route-{i}` for `host-{i}.example.com`, attached to Gateway bench/gw, with 5
/// rules to the same Services as Ingress `ing-{i}` of the Ingress world.
fn http_route(i: usize) -> Object {
    let service = |p: usize| (i * PATHS_PER_HOST + p) % SERVICES;
    let rules = vec![
        gateway_rule("PathPrefix", "/", None, service(0)),
        gateway_rule("Exact", "/api/v1/items", None, service(1)),
        gateway_rule("PathPrefix", "/api/v2/items", None, service(2)),
        gateway_rule("PathPrefix", "/api/v3/items", None, service(3)),
        gateway_rule(
            "PathPrefix",
            "/api/v4/items",
            Some(("x-version", "4")),
            service(4),
        ),
    ];
    Object::HttpRoute(Arc::new(HttpRoute {
        metadata: meta("bench", &format!("route-{i}")),
        spec: HttpRouteSpec {
            parent_refs: Some(vec![ParentReference {
                name: "gw".to_owned(),
                namespace: Some("bench".to_owned()),
                ..Default::default()
            }]),
            hostnames: Some(vec![format!("host-{i}.example.com")]),
            rules: Some(rules),
        },
        ..Default::default()
    }))
}

/// The Gateway API world: GatewayClass wicket, Gateway bench/gw (HTTP on port 80, routes
/// from all namespaces), `HOSTS` HTTPRoutes of `PATHS_PER_HOST` rules, the Services.
fn gateway_world() -> Index {
    let mut objects = vec![
        Object::GatewayClass(Arc::new(GatewayClass {
            metadata: ObjectMeta {
                name: Some("wicket".to_owned()),
                ..Default::default()
            },
            spec: GatewayClassSpec {
                controller_name: "wicket.dev/gateway-controller".to_owned(),
                ..Default::default()
            },
            ..Default::default()
        })),
        Object::Gateway(Arc::new(Gateway {
            metadata: meta("bench", "gw"),
            spec: GatewaySpec {
                gateway_class_name: "wicket".to_owned(),
                listeners: vec![Listener {
                    name: "http".to_owned(),
                    port: 80,
                    protocol: "HTTP".to_owned(),
                    allowed_routes: Some(AllowedRoutes {
                        namespaces: Some(RouteNamespaces {
                            from: Some("All".to_owned()),
                            selector: None,
                        }),
                        kinds: None,
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        })),
    ];
    objects.extend((0..HOSTS).map(http_route));
    objects.extend(services());
    Index::from_objects(objects)
}

/// The Gateway API rule a plain-HTTP GET without headers finds: its backend's Service.
fn gateway_lookup(
    snapshot: &Snapshot,
    raw_host: &str,
    path: &str,
    headers: &http::HeaderMap,
) -> Option<String> {
    let host = normalize_host(raw_host).ok()?;
    let facts = RequestFacts {
        method: &http::Method::GET,
        headers,
        query: None,
    };
    let matched = snapshot
        .gateway
        .as_deref()?
        .lookup(false, &host, path, &facts)?;
    Some(matched.entry.outcome())
}

fn lookup(snapshot: &Snapshot, raw_host: &str, path: &str) -> bool {
    let Ok(host) = normalize_host(raw_host) else {
        return false;
    };
    matches!(snapshot.table.lookup(&host, path), Lookup::Route { .. })
}

fn benches(c: &mut Criterion) {
    let index = world(false);
    let annotated = world(true);
    let settings = Settings::default();
    let snapshot = translate::build(&index, &settings);
    assert!(
        snapshot.problems.is_empty(),
        "{:?}",
        &snapshot.problems[..3.min(snapshot.problems.len())]
    );
    assert_eq!(
        snapshot.table.route_count(),
        (HOSTS + WILDCARD_HOSTS) * PATHS_PER_HOST
    );

    let mut group = c.benchmark_group("translate");
    group.sample_size(20);
    group.bench_function("full", |b| {
        b.iter(|| translate::build(black_box(&index), &settings))
    });
    let built = translate::build(&annotated, &settings);
    assert!(
        built.problems.is_empty(),
        "{:?}",
        &built.problems[..3.min(built.problems.len())]
    );
    assert!(built.annotations.len() >= (HOSTS + WILDCARD_HOSTS) / 3);
    group.bench_function("annotated", |b| {
        b.iter(|| translate::build(black_box(&annotated), &settings))
    });
    let gateway_index = gateway_world();
    let gateway_snapshot = translate::build(&gateway_index, &settings);
    assert!(
        gateway_snapshot.problems.is_empty(),
        "{:?}",
        &gateway_snapshot.problems[..3.min(gateway_snapshot.problems.len())]
    );
    let gateway_table = gateway_snapshot
        .gateway
        .as_deref()
        .expect("the Gateway API world has a Gateway API table");
    let (listener, levels) = gateway_table.http.listeners().next().unwrap();
    assert_eq!(listener.port, 80);
    assert_eq!(levels.len(), HOSTS);
    assert_eq!(
        levels
            .iter()
            .map(|(_, set)| set.entries.len())
            .sum::<usize>(),
        HOSTS * PATHS_PER_HOST
    );
    assert_eq!(gateway_snapshot.table.route_count(), 0);
    group.bench_function("gateway_2000x5", |b| {
        b.iter(|| translate::build(black_box(&gateway_index), &settings))
    });
    group.finish();

    assert!(lookup(
        &snapshot,
        "host-1234.example.com",
        "/api/v3/items/42"
    ));
    assert!(lookup(
        &snapshot,
        "x.tenant-42.example.com",
        "/api/v2/items"
    ));
    assert!(!lookup(&snapshot, "nobody.example.org", "/"));
    // The Gateway API world's rules: the same Services as the Ingress world's paths.
    let no_headers = http::HeaderMap::new();
    let found = |host: &str, path: &str, headers: &http::HeaderMap| {
        gateway_lookup(&gateway_snapshot, host, path, headers)
    };
    let service = |i: usize, p: usize| format!("svc-{}", (i * PATHS_PER_HOST + p) % SERVICES);
    let outcome = found("host-1234.example.com", "/api/v3/items/42", &no_headers).unwrap();
    assert!(outcome.contains(&service(1234, 3)), "{outcome}");
    let outcome = found("host-1234.example.com", "/api/v1/items", &no_headers).unwrap();
    assert!(outcome.contains(&service(1234, 1)), "{outcome}");
    let outcome = found("host-1234.example.com", "/api/v1/items/42", &no_headers).unwrap();
    assert!(outcome.contains(&service(1234, 0)), "Exact: {outcome}");
    let outcome = found("host-1234.example.com", "/api/v4/items/42", &no_headers).unwrap();
    assert!(outcome.contains(&service(1234, 0)), "no header: {outcome}");
    let mut versioned = http::HeaderMap::new();
    versioned.insert("x-version", http::HeaderValue::from_static("4"));
    let outcome = found("Host-1234.Example.com:8080", "/api/v4/items/42", &versioned).unwrap();
    assert!(outcome.contains(&service(1234, 4)), "header: {outcome}");
    assert!(found("nobody.example.org", "/", &no_headers).is_none());

    let traffic = wicket::admin::traffic::Traffic::new();
    let now = std::time::Instant::now();
    for i in 0..1000u32 {
        let addr = std::net::SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 8080));
        traffic.answered(
            addr,
            http::StatusCode::OK,
            std::time::Duration::from_millis(3),
            now,
        );
    }
    let info = dashboard::RunInfo::default();
    let sources = dashboard::Sources {
        snapshot: &snapshot,
        outliers: None,
        traffic: Some(&traffic),
        info: &info,
        shutting_down: false,
        served: None,
    };
    let view = dashboard::view(&sources, None);
    assert_eq!(view.routes.len(), dashboard::MAX_ROWS);
    assert_eq!(view.routes_total, (HOSTS + WILDCARD_HOSTS) * PATHS_PER_HOST);
    let mut group = c.benchmark_group("dashboard");
    group.sample_size(20);
    group.bench_function("view", |b| {
        b.iter(|| dashboard::view(black_box(&sources), None))
    });
    group.bench_function("html", |b| {
        b.iter(|| dashboard::page(&dashboard::view(black_box(&sources), None)))
    });
    group.finish();
    let mut group = c.benchmark_group("lookup");
    group.bench_function("hit", |b| {
        b.iter(|| {
            lookup(
                &snapshot,
                black_box("host-1234.example.com"),
                black_box("/api/v3/items/42"),
            )
        })
    });
    let gateway_table = gateway_snapshot.gateway.as_deref().unwrap();
    group.bench_function("gateway_hit", |b| {
        b.iter(|| {
            let Ok(host) = normalize_host(black_box("host-1234.example.com")) else {
                return false;
            };
            let facts = RequestFacts {
                method: &http::Method::GET,
                headers: &no_headers,
                query: None,
            };
            gateway_table
                .lookup(false, &host, black_box("/api/v3/items/42"), &facts)
                .is_some()
        })
    });
    group.bench_function("hit_mixed_case_with_port", |b| {
        b.iter(|| {
            lookup(
                &snapshot,
                black_box("Host-1234.Example.com:8080"),
                black_box("/api/v3/items/42"),
            )
        })
    });
    group.bench_function("wildcard", |b| {
        b.iter(|| {
            lookup(
                &snapshot,
                black_box("shop.tenant-42.example.com"),
                black_box("/api/v2/items"),
            )
        })
    });
    // An allow list of 1,000 ranges (allowlist-source-range): one check per request.
    let ranges: String = (0..1000u32)
        // Every other /24, so that no two ranges merge.
        .map(|i| format!("10.{}.{}.0/24", (2 * i) / 256, (2 * i) % 256))
        .collect::<Vec<_>>()
        .join(",");
    let allow: wicket::model::IpSet = ranges.parse().unwrap();
    let inside: std::net::IpAddr = "10.3.230.7".parse().unwrap();
    let outside: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    assert!(allow.contains(inside) && !allow.contains(outside));
    group.bench_function("allowlist_1000_ranges", |b| {
        b.iter(|| black_box(&allow).contains(black_box(inside)))
    });
    group.bench_function("miss", |b| {
        b.iter(|| {
            lookup(
                &snapshot,
                black_box("nobody.example.org"),
                black_box("/index.html"),
            )
        })
    });
    group.finish();
}

fn access(c: &mut Criterion) {
    use base64::Engine as _;
    let hash = bcrypt::hash("s3cret", 10).unwrap();
    let table = wicket::model::Users::from_htpasswd(&format!("alice:{hash}")).unwrap();
    let auth = wicket::model::BasicAuth {
        secret: "ns/htpasswd".into(),
        realm: String::new(),
        challenge: http::HeaderValue::from_static("Basic realm=\"\""),
        table: Arc::new(table),
    };
    let mut headers = http::HeaderMap::new();
    let credentials = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Basic {credentials}").parse().unwrap(),
    );
    let client: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let authenticator = wicket::proxy::auth::Authenticator::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pending = authenticator
        .check(&auth, &headers, client)
        .unwrap()
        .unwrap();
    runtime.block_on(authenticator.verify(pending)).unwrap();
    let mut group = c.benchmark_group("access");
    group.bench_function("basic_auth_remembered", |b| {
        b.iter(|| {
            assert!(authenticator
                .check(black_box(&auth), black_box(&headers), client)
                .unwrap()
                .is_none())
        })
    });
    let stored = wicket::model::PasswordHash::parse(&hash).unwrap();
    group.sample_size(10);
    group.bench_function("bcrypt_cost_10_check", |b| {
        b.iter(|| assert!(stored.verify(black_box(b"s3cret"))))
    });
    group.sample_size(100);
    let zones = wicket::model::Zones::default();
    let limits = wicket::model::Limits {
        rps: std::num::NonZeroU32::new(1_000_000_000),
        rpm: None,
        burst_multiplier: 5,
        connections: None,
    };
    let zone = zones.zone("ns/bench/uid", &limits);
    group.bench_function("rate_limit_admit", |b| {
        b.iter(|| assert!(zone.admit(black_box(client)).is_ok()))
    });
    group.finish();
}

criterion_group!(routing, benches, access);
criterion_main!(routing);
