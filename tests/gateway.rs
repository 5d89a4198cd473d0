//! Gateway API end to end in manifests mode: GatewayClass, Gateway, HTTPRoute and
//! ReferenceGrant files served by a running wicket, checked with real requests against
//! echo pods (JSON answers, `X-Echo-Set-Header`), and the status shown in /debug/routes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use support::*;
use wicket::app::Config;

const CLASS: &str = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: wicket}\nspec: {controllerName: wicket.dev/gateway-controller}\n";

/// A Gateway of class wicket in `namespace` with `listeners` (YAML list items, indented
/// by two spaces).
fn gateway(namespace: &str, name: &str, listeners: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  gatewayClassName: wicket\n  listeners:\n{listeners}"
    )
}

/// One HTTP listener on port 80 taking routes from every namespace.
const HTTP_ALL: &str = "  - name: http\n    protocol: HTTP\n    port: 80\n    allowedRoutes: {namespaces: {from: All}}\n";

/// An HTTPRoute in `namespace` attached to Gateway default/gw; `spec` is the rest of
/// its spec (indented by two spaces).
fn route(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  parentRefs: [{{name: gw, namespace: default}}]\n{spec}"
    )
}

/// A Service `name` in `namespace` over `pods` (port 80).
fn service_in(namespace: &str, name: &str, pods: &[wicket::echo::EchoServer]) -> String {
    service(name, pods)
        .replace(
            &format!("metadata: {{name: {name}}}"),
            &format!("metadata: {{name: {name}, namespace: {namespace}}}"),
        )
        .replace(
            &format!("  name: {name}-slice\n"),
            &format!("  name: {name}-slice\n  namespace: {namespace}\n"),
        )
}

async fn json(
    w: &Wicket,
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (Reply, Value) {
    let mut req = w
        .request(method, host, path)
        .header("accept", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let reply = w.send(req.body(Full::<Bytes>::default()).unwrap()).await;
    let value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    (reply, value)
}

/// The status wicket computed for one object (kind, namespace/name).
fn status<'a>(routes: &'a Value, kind: &str, name: &str) -> &'a Value {
    routes["gatewayApi"]["status"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["object"]["kind"] == kind
                && format!(
                    "{}/{}",
                    s["object"]["namespace"].as_str().unwrap_or(""),
                    s["object"]["name"].as_str().unwrap()
                ) == name
        })
        .unwrap_or_else(|| panic!("no status for {kind} {name}: {routes:#}"))
}

/// (status, reason) of a condition in a list of conditions.
fn condition(conditions: &Value, type_: &str) -> (String, String) {
    let c = conditions
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {conditions:#}"));
    (
        c["status"].as_str().unwrap().to_owned(),
        c["reason"].as_str().unwrap().to_owned(),
    )
}

fn parent_condition(routes: &Value, route: &str, type_: &str) -> (String, String) {
    condition(
        &status(routes, "HTTPRoute", route)["parents"][0]["conditions"],
        type_,
    )
}

#[tokio::test]
async fn matching_precedence_and_listener_hostnames_across_routes() {
    let (web, api, v2, exact) = (
        pods("web", 1).await,
        pods("api", 1).await,
        pods("v2", 1).await,
        pods("exact", 1).await,
    );
    let manifests = format!(
        "{CLASS}{}{}{}{}{}{}{}{}",
        gateway("default", "gw", HTTP_ALL),
        service("web", &web),
        service("api", &api),
        service("v2", &v2),
        service("exact", &exact),
        route("default", "site", "  hostnames: [shop.test]\n  rules:\n  - backendRefs: [{name: web, port: 80}]\n  - matches: [{path: {type: PathPrefix, value: /api}}]\n    backendRefs: [{name: api, port: 80}]\n"),
        // Newer route, same host: a more specific match wins whatever the age.
        route("default", "v2", "  hostnames: [shop.test]\n  rules:\n  - matches:\n    - path: {value: /api}\n      headers: [{name: version, value: two}]\n    - path: {value: /api}\n      queryParams: [{name: v, value: \"2\"}]\n    - path: {value: /api}\n      method: DELETE\n    backendRefs: [{name: v2, port: 80}]\n  - matches: [{path: {type: Exact, value: /api/exact}}, {path: {type: RegularExpression, value: \"/re/[0-9]+\"}}]\n    backendRefs: [{name: exact, port: 80}]\n"),
        // A wildcard route: shop.test's exact-hostname rules come first.
        route("default", "wild", "  hostnames: [\"*.test\"]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /wild}}]\n    backendRefs: [{name: exact, port: 80}]\n"),
    );
    let w = Wicket::start(&manifests).await;
    let pod = |r: &Reply| r.pod().to_owned();
    assert_eq!(pod(&w.get("shop.test", "/").await), "web-0");
    assert_eq!(pod(&w.get("shop.test", "/api/x").await), "api-0");
    assert_eq!(
        pod(&w.get("shop.test", "/apix").await),
        "web-0",
        "prefixes match whole segments"
    );
    let (r, _) = json(
        &w,
        Method::GET,
        "shop.test",
        "/api/x",
        &[("version", "two")],
    )
    .await;
    assert_eq!(
        pod(&r),
        "v2-0",
        "a header match beats a plain prefix of the same length"
    );
    assert_eq!(pod(&w.get("shop.test", "/api/x?v=2").await), "v2-0");
    assert_eq!(
        pod(&w.get("shop.test", "/api/x?V=2").await),
        "api-0",
        "query names are case-sensitive"
    );
    let del = w
        .send(
            w.request(Method::DELETE, "shop.test", "/api/x")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(pod(&del), "v2-0");
    assert_eq!(pod(&w.get("shop.test", "/api/exact").await), "exact-0");
    assert_eq!(
        pod(&w.get("shop.test", "/api/exact/").await),
        "api-0",
        "Exact is byte-equal"
    );
    assert_eq!(pod(&w.get("shop.test", "/re/42").await), "exact-0");
    assert_eq!(
        pod(&w.get("shop.test", "/re/42x").await),
        "web-0",
        "regular expressions match the whole path"
    );
    // shop.test has its own rule for /: the wildcard route's /wild is still tried after it
    // only when no exact-hostname rule matches, so `/` wins here.
    assert_eq!(pod(&w.get("shop.test", "/wild").await), "web-0");
    assert_eq!(pod(&w.get("other.test", "/wild").await), "exact-0");
    assert_eq!(w.get("other.test", "/").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        w.get("shop.example", "/").await.status,
        StatusCode::NOT_FOUND
    );
    // The echo pod saw the request as sent (Host unchanged).
    let (_, seen) = json(&w, Method::GET, "shop.test", "/api/x?y=1", &[]).await;
    assert_eq!(seen["host"], "shop.test");
    assert_eq!(seen["path"], "/api/x?y=1");

    let routes = w.routes().await;
    assert_eq!(
        parent_condition(&routes, "default/site", "Accepted"),
        ("True".into(), "Accepted".into())
    );
    let gw = status(&routes, "Gateway", "default/gw");
    assert_eq!(gw["listeners"][0]["attachedRoutes"], 3);
    assert_eq!(condition(&gw["conditions"], "Programmed").0, "True");
    w.stop().await;
}

#[tokio::test]
async fn filters_modify_headers_redirect_and_rewrite() {
    let web = pods("web", 1).await;
    let manifests = format!(
        "{CLASS}{}{}{}",
        gateway("default", "gw", HTTP_ALL),
        service("web", &web),
        route("default", "filters", concat!(
            "  hostnames: [f.test]\n  rules:\n",
            "  - matches: [{path: {value: /headers}}]\n",
            "    filters:\n",
            "    - type: RequestHeaderModifier\n",
            "      requestHeaderModifier:\n",
            "        set: [{name: X-Set, value: set}]\n",
            "        add: [{name: X-Add, value: added}]\n",
            "        remove: [X-Gone]\n",
            "    - type: ResponseHeaderModifier\n",
            "      responseHeaderModifier:\n",
            "        set: [{name: X-Resp, value: new}]\n",
            "        add: [{name: X-Resp-Add, value: two}]\n",
            "        remove: [X-Drop]\n",
            "    backendRefs: [{name: web, port: 80}]\n",
            "  - matches: [{path: {value: /moved}}]\n",
            "    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 301}}]\n",
            "  - matches: [{path: {value: /secure}}]\n",
            "    filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]\n",
            "  - matches: [{path: {value: /port}}]\n",
            "    filters: [{type: RequestRedirect, requestRedirect: {port: 8080, statusCode: 308}}]\n",
            "  - matches: [{path: {value: /old}}]\n",
            "    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}]\n",
            "  - matches: [{path: {value: /prefix}}]\n",
            "    filters: [{type: URLRewrite, urlRewrite: {hostname: rewritten.test, path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}]\n",
            "    backendRefs: [{name: web, port: 80}]\n",
            "  - matches: [{path: {value: /full}}]\n",
            "    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /whole}}}]\n",
            "    backendRefs: [{name: web, port: 80}]\n",
        )),
    );
    let w = Wicket::start(&manifests).await;
    let (r, seen) = json(
        &w,
        Method::GET,
        "f.test",
        "/headers",
        &[
            ("x-set", "client"),
            ("x-add", "client"),
            ("x-gone", "bye"),
            (
                "x-echo-set-header",
                "X-Resp:old,X-Resp-Add:one,X-Drop:x,X-Kept:k",
            ),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(seen["headers"]["x-set"], serde_json::json!(["set"]));
    assert_eq!(
        seen["headers"]["x-add"],
        serde_json::json!(["client,added"])
    );
    assert!(seen["headers"].get("x-gone").is_none());
    assert_eq!(r.headers["x-resp"], "new");
    assert_eq!(r.headers["x-resp-add"], "one,two");
    assert!(r.headers.get("x-drop").is_none());
    assert_eq!(r.headers["x-kept"], "k");

    let r = w.get("f.test", "/moved/a?q=1").await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.headers["location"], "http://example.org/moved/a?q=1");
    let r = w.get("f.test:8000", "/secure").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(
        r.headers["location"], "https://f.test/secure",
        "the port of a changed scheme is its default"
    );
    let r = w.get("f.test", "/port").await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers["location"], "http://f.test:8080/port");
    let r = w.get("f.test", "/old/page").await;
    assert_eq!(r.headers["location"], "http://f.test/new/page");

    let (_, seen) = json(&w, Method::GET, "f.test", "/prefix/x?k=v", &[]).await;
    assert_eq!(seen["path"], "/one/x?k=v");
    assert_eq!(seen["host"], "rewritten.test");
    let (_, seen) = json(&w, Method::GET, "f.test", "/full/x", &[]).await;
    assert_eq!(seen["path"], "/whole");
    w.stop().await;
}

#[tokio::test]
async fn weights_split_traffic_and_invalid_refs_keep_their_share_as_500() {
    let (a, b) = (pods("a", 1).await, pods("b", 1).await);
    let manifests = format!(
        "{CLASS}{}{}{}{}",
        gateway("default", "gw", HTTP_ALL),
        service("a", &a),
        service("b", &b),
        route("default", "split", concat!(
            "  rules:\n",
            "  - matches: [{path: {value: /weighted}}]\n",
            "    backendRefs: [{name: a, port: 80, weight: 3}, {name: b, port: 80, weight: 1}, {name: a, port: 80, weight: 0}]\n",
            "  - matches: [{path: {value: /half}}]\n",
            "    backendRefs: [{name: a, port: 80}, {name: missing, port: 80}]\n",
            "  - matches: [{path: {value: /kind}}]\n",
            "    backendRefs: [{group: example.com, kind: Bucket, name: a}]\n",
            "  - matches: [{path: {value: /none}}]\n",
        )),
    );
    let w = Wicket::start(&manifests).await;
    let (mut to_a, mut errors) = (0, 0);
    for _ in 0..400 {
        if w.get("any.test", "/weighted").await.pod() == "a-0" {
            to_a += 1;
        }
        if w.get("any.test", "/half").await.status == StatusCode::INTERNAL_SERVER_ERROR {
            errors += 1;
        }
    }
    assert!(
        (255..345).contains(&to_a),
        "3:1 split sent {to_a} of 400 to a"
    );
    assert!(
        (150..250).contains(&errors),
        "the missing Service's half got {errors} of 400 as 500"
    );
    assert_eq!(
        w.get("any.test", "/kind").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        w.get("any.test", "/none").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    let routes = w.routes().await;
    assert_eq!(
        parent_condition(&routes, "default/split", "Accepted").0,
        "True"
    );
    let (st, reason) = parent_condition(&routes, "default/split", "ResolvedRefs");
    assert_eq!((st.as_str(), reason.as_str()), ("False", "BackendNotFound"));
    let problems = routes["problems"].to_string();
    assert!(
        problems.contains("BackendRefInvalid") && problems.contains("Bucket"),
        "{problems}"
    );
    w.stop().await;
}

#[tokio::test]
async fn cross_namespace_backends_need_a_reference_grant_and_lose_it_at_once() {
    let web = pods("web", 1).await;
    let grant = "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: allow, namespace: backends}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]\n  to: [{group: \"\", kind: Service}]\n";
    let manifests = format!(
        "{CLASS}{}{}{}",
        gateway("default", "gw", HTTP_ALL),
        service_in("backends", "web", &web),
        route(
            "default",
            "cross",
            "  rules:\n  - backendRefs: [{name: web, namespace: backends, port: 80}]\n"
        ),
    );
    let w = Wicket::start(&manifests).await;
    assert_eq!(
        w.get("x.test", "/").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let routes = w.routes().await;
    assert_eq!(
        parent_condition(&routes, "default/cross", "ResolvedRefs"),
        ("False".into(), "RefNotPermitted".into())
    );
    w.apply("grant.yaml", grant).await;
    assert_eq!(w.get("x.test", "/").await.pod(), "web-0");
    let routes = w.routes().await;
    assert_eq!(
        parent_condition(&routes, "default/cross", "ResolvedRefs").0,
        "True"
    );
    // A grant for another kind allows nothing; removing the grant revokes at once.
    w.apply(
        "grant.yaml",
        &grant.replace("kind: Service", "kind: Secret"),
    )
    .await;
    assert_eq!(
        w.get("x.test", "/").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    w.stop().await;
}

#[tokio::test]
async fn routes_attach_only_where_listeners_allow_and_hostnames_meet() {
    let web = pods("web", 1).await;
    let listeners = concat!(
        "  - {name: same, protocol: HTTP, port: 80, hostname: same.test}\n",
        "  - {name: wild, protocol: HTTP, port: 80, hostname: \"*.wild.test\", allowedRoutes: {namespaces: {from: All}}}\n",
        "  - name: team\n    protocol: HTTP\n    port: 80\n    hostname: team.test\n    allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: blue}}}}\n",
        "  - {name: tcp, protocol: TCP, port: 9000}\n",
        "  - {name: other-port, protocol: HTTP, port: 8080}\n",
    );
    let namespaces = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: blue, labels: {team: blue}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: red}\n";
    let manifests = format!(
        "{CLASS}{}{namespaces}{}{}{}{}{}{}{}",
        gateway("default", "gw", listeners),
        service("web", &web),
        service_in("blue", "web", &web),
        service_in("red", "web", &web),
        route("default", "home", "  rules: [{backendRefs: [{name: web, port: 80}]}]\n"),
        route("red", "intruder", "  parentRefs: [{name: gw, namespace: default, sectionName: same}]\n  rules: [{backendRefs: [{name: web, port: 80}]}]\n")
            .replace("  parentRefs: [{name: gw, namespace: default}]\n", ""),
        route("blue", "teamroute", "  rules: [{backendRefs: [{name: web, port: 80}]}]\n"),
        route("default", "nomatch", "  hostnames: [elsewhere.test]\n  parentRefs: [{name: gw, namespace: default, sectionName: wild}]\n  rules: [{backendRefs: [{name: web, port: 80}]}]\n")
            .replace("  parentRefs: [{name: gw, namespace: default}]\n", ""),
    );
    let manifests = format!(
        "{manifests}{}",
        route("default", "badsection", "  parentRefs: [{name: gw, namespace: default, sectionName: nope}]\n  rules: [{backendRefs: [{name: web, port: 80}]}]\n")
            .replace("  parentRefs: [{name: gw, namespace: default}]\n", "")
    );
    let w = Wicket::start(&manifests).await;
    assert_eq!(w.get("same.test", "/").await.pod(), "web-0");
    assert_eq!(w.get("a.b.wild.test", "/").await.pod(), "web-0");
    assert_eq!(w.get("team.test", "/").await.pod(), "web-0");
    assert_eq!(w.get("wild.test", "/").await.status, StatusCode::NOT_FOUND);

    let routes = w.routes().await;
    let reason = |r: &str| parent_condition(&routes, r, "Accepted");
    assert_eq!(reason("default/home"), ("True".into(), "Accepted".into()));
    assert_eq!(
        reason("red/intruder"),
        ("False".into(), "NotAllowedByListeners".into())
    );
    assert_eq!(reason("blue/teamroute"), ("True".into(), "Accepted".into()));
    assert_eq!(
        reason("default/nomatch"),
        ("False".into(), "NoMatchingListenerHostname".into())
    );
    assert_eq!(
        reason("default/badsection"),
        ("False".into(), "NoMatchingParent".into())
    );

    let gw = status(&routes, "Gateway", "default/gw");
    let listener = |name: &str| {
        gw["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(listener("same")["attachedRoutes"], 1);
    assert_eq!(
        listener("team")["attachedRoutes"],
        1,
        "only blue's route: {gw:#}"
    );
    assert_eq!(
        condition(&listener("tcp")["conditions"], "Accepted"),
        ("False".into(), "UnsupportedProtocol".into())
    );
    assert_eq!(
        condition(&listener("other-port")["conditions"], "Accepted"),
        ("False".into(), "PortUnavailable".into())
    );
    assert_eq!(
        condition(&gw["conditions"], "Accepted"),
        ("True".into(), "ListenersNotValid".into())
    );
    w.stop().await;
}

#[tokio::test]
async fn invalid_rules_are_dropped_whole_and_the_rest_is_served() {
    let web = pods("web", 1).await;
    let manifests = format!(
        "{CLASS}{}{}{}{}",
        gateway("default", "gw", HTTP_ALL),
        service("web", &web),
        route("default", "partly", concat!(
            "  rules:\n",
            "  - matches: [{path: {type: RegularExpression, value: \"/(unclosed\"}}]\n",
            "    backendRefs: [{name: web, port: 80}]\n",
            "  - matches: [{path: {value: /mirror}}]\n",
            "    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web, port: 80}}}]\n",
            "    backendRefs: [{name: web, port: 80}]\n",
            "  - matches: [{path: {value: /ok}}]\n",
            "    backendRefs: [{name: web, port: 80}]\n",
        )),
        route("default", "broken", "  rules:\n  - matches: [{path: {type: Fuzzy, value: /x}}]\n    backendRefs: [{name: web, port: 80}]\n"),
    );
    let w = Wicket::start(&manifests).await;
    assert_eq!(w.get("p.test", "/ok").await.pod(), "web-0");
    assert_eq!(
        w.get("p.test", "/mirror").await.status,
        StatusCode::NOT_FOUND,
        "never served without its mirror"
    );
    let routes = w.routes().await;
    assert_eq!(
        parent_condition(&routes, "default/partly", "Accepted").0,
        "True"
    );
    let (st, reason) = parent_condition(&routes, "default/partly", "PartiallyInvalid");
    assert_eq!((st.as_str(), reason.as_str()), ("True", "UnsupportedValue"));
    assert_eq!(
        parent_condition(&routes, "default/broken", "Accepted"),
        ("False".into(), "UnsupportedValue".into())
    );
    w.stop().await;
}

#[tokio::test]
async fn https_listeners_serve_their_certificate_by_sni_and_isolate_routes() {
    let (web, secure) = (pods("web", 1).await, pods("secure", 1).await);
    let cert = test_cert(&["secure.test"]);
    let listeners = concat!(
        "  - {name: http, protocol: HTTP, port: 80}\n",
        "  - name: https\n    protocol: HTTPS\n    port: 443\n    hostname: secure.test\n    tls: {certificateRefs: [{name: secure-cert}]}\n",
        "  - name: borrowed\n    protocol: HTTPS\n    port: 443\n    hostname: borrowed.test\n    tls: {certificateRefs: [{name: theirs, namespace: certs}]}\n",
        "  - name: other\n    protocol: HTTPS\n    port: 443\n    hostname: other.test\n    tls: {certificateRefs: [{name: secure-cert}]}\n",
    );
    let manifests = format!(
        "{CLASS}{}{}{}{}{}{}",
        gateway("default", "gw", listeners),
        tls_secret("secure-cert", &cert),
        service("web", &web),
        service("secure", &secure),
        route("default", "plain", "  parentRefs: [{name: gw, sectionName: http}]\n  rules: [{backendRefs: [{name: web, port: 80}]}]\n")
            .replace("  parentRefs: [{name: gw, namespace: default}]\n", ""),
        route("default", "tls", "  parentRefs: [{name: gw, sectionName: https}, {name: gw, sectionName: other}]\n  rules: [{backendRefs: [{name: secure, port: 80}]}]\n")
            .replace("  parentRefs: [{name: gw, namespace: default}]\n", ""),
    );
    let w = Wicket::start_with(&manifests, Config::local()).await;
    let stream = tls_connect(w.https(), Some("secure.test"), &[b"http/1.1"]).await;
    assert_eq!(served(&stream), cert.der);
    assert_eq!(
        H1::over(stream).await.get("secure.test", "/").await.pod(),
        "secure-0"
    );
    // Over plain HTTP the same host is the HTTP listener's, with its own routes.
    assert_eq!(w.get("secure.test", "/").await.pod(), "web-0");
    // A Host of another HTTPS listener on a connection made for this one: 421.
    let stream = tls_connect(w.https(), Some("secure.test"), &[b"http/1.1"]).await;
    let reply = H1::over(stream).await.get("other.test", "/").await;
    assert_eq!(reply.status, StatusCode::MISDIRECTED_REQUEST);
    let stream = tls_connect(w.https(), Some("other.test"), &[b"http/1.1"]).await;
    assert_eq!(
        H1::over(stream).await.get("other.test", "/").await.pod(),
        "secure-0"
    );

    let routes = w.routes().await;
    let gw = status(&routes, "Gateway", "default/gw");
    let borrowed = gw["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "borrowed")
        .unwrap();
    assert_eq!(
        condition(&borrowed["conditions"], "ResolvedRefs"),
        ("False".into(), "RefNotPermitted".into())
    );
    assert_eq!(condition(&borrowed["conditions"], "Programmed").0, "False");
    w.stop().await;
}

#[tokio::test]
async fn gateway_routes_come_first_and_unmatched_requests_go_on_to_ingresses() {
    let (web, legacy) = (pods("web", 1).await, pods("legacy", 1).await);
    let manifests = format!(
        "{}{CLASS}{}{}{}{}{}",
        support::CLASS,
        gateway("default", "gw", HTTP_ALL),
        service("web", &web),
        service("legacy", &legacy),
        route("default", "new", "  hostnames: [both.test]\n  rules: [{matches: [{path: {value: /new}}], backendRefs: [{name: web, port: 80}]}]\n"),
        ingress(
            "old",
            &[
                ("both.test", "/", "Prefix", "legacy"),
                ("both.test", "/new/page", "Exact", "legacy"),
                ("only-ingress.test", "/", "Prefix", "legacy")
            ]
        ),
    );
    let w = Wicket::start(&manifests).await;
    assert_eq!(w.get("both.test", "/new/x").await.pod(), "web-0");
    assert_eq!(w.get("both.test", "/other").await.pod(), "legacy-0");
    assert_eq!(w.get("only-ingress.test", "/").await.pod(), "legacy-0");
    // Gateway API wins an overlap, and says so on the Ingress that loses.
    assert_eq!(w.get("both.test", "/new/page").await.pod(), "web-0");
    let problems: Vec<String> = w.routes().await["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap().to_owned())
        .collect();
    let shadowed: Vec<&String> = problems
        .iter()
        .filter(|m| m.contains("Gateway API routes are matched before Ingress rules"))
        .collect();
    assert_eq!(shadowed.len(), 1, "{problems:#?}");
    assert!(
        shadowed[0].starts_with("host both.test path /new/page: rule 0 of HTTPRoute default/new answers these requests first over HTTP"),
        "{shadowed:?}"
    );
    let text = w.admin_get("/debug/routes?format=text").await.body;
    assert!(
        text.contains("Gateway API: listener http of Gateway default/gw"),
        "{text}"
    );
    assert!(
        text.contains("PathPrefix /new  default/new rule 0"),
        "{text}"
    );
    w.stop().await;
}

#[tokio::test]
async fn listeners_conflicting_across_gateways_leave_the_older_one_serving() {
    let (a, b) = (pods("a", 1).await, pods("b", 1).await);
    let older = gateway("default", "gw", HTTP_ALL).replace(
        "metadata: {name: gw, namespace: default}",
        "metadata: {name: gw, namespace: default, creationTimestamp: \"2026-01-01T00:00:00Z\"}",
    );
    let newer = gateway("default", "gw2", HTTP_ALL).replace(
        "metadata: {name: gw2, namespace: default}",
        "metadata: {name: gw2, namespace: default, creationTimestamp: \"2026-02-01T00:00:00Z\"}",
    );
    let manifests = format!(
        "{CLASS}{older}{newer}{}{}{}{}",
        service("a", &a),
        service("b", &b),
        route(
            "default",
            "to-a",
            "  rules: [{backendRefs: [{name: a, port: 80}]}]\n"
        ),
        route(
            "default",
            "to-b",
            "  rules: [{backendRefs: [{name: b, port: 80}]}]\n"
        )
        .replace(
            "name: gw, namespace: default}",
            "name: gw2, namespace: default}"
        ),
    );
    let w = Wicket::start(&manifests).await;
    for _ in 0..5 {
        assert_eq!(w.get("c.test", "/").await.pod(), "a-0");
    }
    let routes = w.routes().await;
    let gw2 = status(&routes, "Gateway", "default/gw2");
    assert_eq!(
        condition(&gw2["listeners"][0]["conditions"], "Conflicted"),
        ("True".into(), "HostnameConflict".into())
    );
    assert_eq!(
        condition(&gw2["conditions"], "Programmed"),
        ("False".into(), "Invalid".into())
    );
    // The route is accepted by its parent (attachment does not depend on the listener
    // being served) and counted on the listener.
    assert_eq!(gw2["listeners"][0]["attachedRoutes"], 1);
    w.stop().await;
}

// ---------------------------------------------------------------------------------------
// Cluster mode, against the API server double

fn gateway_api_objects() -> String {
    format!(
        "{CLASS}{}{}{}",
        gateway("default", "gw", HTTP_ALL),
        route(
            "default",
            "site",
            "  hostnames: [gw.test]\n  rules: [{backendRefs: [{name: web, port: 80}]}]\n"
        ),
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: rpc, namespace: default}\nspec:\n  parentRefs: [{name: gw}]\n  hostnames: [gw.test]\n  rules: [{matches: [{method: {service: pkg.Svc}}], backendRefs: [{name: web, port: 80}]}]\n",
    )
}

fn gateway_status_writes(api: &support::apiserver::ApiServer) -> Vec<support::apiserver::Write> {
    api.writes()
        .into_iter()
        .filter(|w| {
            ["gatewayclasses", "gateways", "httproutes", "grpcroutes"]
                .contains(&w.resource.as_str())
                && w.subresource.as_deref() == Some("status")
        })
        .collect()
}

#[tokio::test]
async fn cluster_mode_turns_gateway_api_on_when_the_crds_appear_and_only_the_leader_writes_status()
{
    let web = pods("web", 1).await;
    let api = support::apiserver::ApiServer::start().await;
    api.apply_yaml(&site(&web));
    // CRDs absent: Ingresses are served, Gateway API is off, nothing fails.
    let (a, b) = tokio::join!(
        Wicket::start_cluster(&api, "a"),
        Wicket::start_cluster(&api, "b")
    );
    assert_eq!(a.get("a.test", "/").await.pod(), "web-0");
    assert!(a.routes().await.get("gatewayApi").is_none());

    // Installed later: picked up without a restart.
    api.install_gateway_api();
    api.apply_yaml(&gateway_api_objects());
    for w in [&a, &b] {
        eventually("the HTTPRoute served", || async {
            (w.get("gw.test", "/").await.pod() == "web-0").then_some(())
        })
        .await;
    }
    eventually("route status written", || async {
        let route = api.get("HTTPRoute", "default", "site")?;
        let parent = route["status"]["parents"].get(0)?.clone();
        (parent["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Accepted" && c["status"] == "True"))
        .then_some(())
    })
    .await;
    let route = api.get("HTTPRoute", "default", "site").unwrap();
    let parent = &route["status"]["parents"][0];
    assert_eq!(parent["controllerName"], "wicket.dev/gateway-controller");
    assert_eq!(parent["parentRef"]["name"], "gw");
    let gw = eventually("Gateway status", || async {
        let gw = api.get("Gateway", "default", "gw")?;
        (gw["status"]["listeners"][0]["attachedRoutes"] == 2).then_some(gw)
    })
    .await;
    assert_eq!(
        gw["status"]["addresses"],
        serde_json::json!([{"type": "IPAddress", "value": PUBLISHED_IP}])
    );
    let class = api.get("GatewayClass", "", "wicket").unwrap();
    assert_eq!(
        condition(&class["status"]["conditions"], "Accepted").0,
        "True"
    );

    // One replica writes, and once settled writes nothing more.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let writes = gateway_status_writes(&api);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        gateway_status_writes(&api).len(),
        writes.len(),
        "no rewrites once settled"
    );
    let writers: std::collections::BTreeSet<&str> =
        writes.iter().map(|w| w.instance.as_str()).collect();
    assert_eq!(writers.len(), 1, "{writers:?}");
    let mut objects: Vec<(&str, &str)> = writes
        .iter()
        .map(|w| (w.resource.as_str(), w.name.as_str()))
        .collect();
    objects.sort();
    objects.dedup();
    assert_eq!(
        objects,
        [
            ("gatewayclasses", "wicket"),
            ("gateways", "gw"),
            ("grpcroutes", "rpc"),
            ("httproutes", "site")
        ]
    );

    // Another controller's parent entry survives our writes.
    let mut route = api.get("HTTPRoute", "default", "site").unwrap();
    route["status"]["parents"].as_array_mut().unwrap().push(serde_json::json!({
        "parentRef": {"name": "other-gw"}, "controllerName": "example.com/other", "conditions": []
    }));
    route["spec"]["hostnames"] = serde_json::json!(["gw.test", "also.test"]);
    route["metadata"]["generation"] = serde_json::json!(2);
    api.apply(route);
    eventually("the new hostname served", || async {
        (a.get("also.test", "/").await.pod() == "web-0").then_some(())
    })
    .await;
    let parents = eventually("status for generation 2", || async {
        let route = api.get("HTTPRoute", "default", "site")?;
        let parents = route["status"]["parents"].as_array()?.clone();
        parents
            .iter()
            .any(|p| {
                p["controllerName"] == "wicket.dev/gateway-controller"
                    && p["conditions"][0]["observedGeneration"] == 2
            })
            .then_some(parents)
    })
    .await;
    assert!(
        parents
            .iter()
            .any(|p| p["controllerName"] == "example.com/other"),
        "{parents:#?}"
    );
    assert_eq!(parents.len(), 2);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn cluster_mode_with_gateway_api_installed_is_ready_only_with_its_routes() {
    let web = pods("web", 1).await;
    let api = support::apiserver::ApiServer::start().await;
    api.install_gateway_api();
    api.apply_yaml(&format!(
        "{}{}",
        service("web", &web),
        gateway_api_objects()
    ));
    // HTTPRoutes cannot be listed for a while: readiness waits for them.
    api.fail_lists("HTTPRoute", true);
    let w = Wicket::launch_cluster(&api, "a", |_| {}).await;
    eventually("the HTTPRoute list tried", || async {
        (api.lists("HTTPRoute") > 0).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        w.admin_get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    api.fail_lists("HTTPRoute", false);
    w.ready().await;
    // No polling: the first table after readiness already has the HTTPRoute.
    assert_eq!(w.get("gw.test", "/").await.pod(), "web-0");
    w.stop().await;
}

#[tokio::test]
async fn explain_walks_listener_hostnames_precedence_and_filters() {
    let (web, v2) = (pods("web", 1).await, pods("v2", 1).await);
    let manifests = format!(
        "{CLASS}{}{}{}{}{}",
        gateway("default", "gw", HTTP_ALL),
        service("web", &web),
        service("v2", &v2),
        route("default", "site", "  hostnames: [shop.test]\n  rules:\n  - backendRefs: [{name: web, port: 80}]\n"),
        route("default", "v2", concat!(
            "  hostnames: [\"*.test\"]\n  rules:\n",
            "  - matches: [{path: {value: /api}, headers: [{name: version, value: two}]}]\n",
            "    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}]\n",
            "    backendRefs: [{name: v2, port: 80, weight: 3}, {name: gone, port: 80}]\n",
        )),
    );
    let w = Wicket::start(&manifests).await;
    let text = w
        .admin_get("/debug/explain?host=api.test&path=/api/x&header=version:%20two&format=text")
        .await
        .body;
    assert!(text.contains("=> rule 0 of HTTPRoute default/v2 answers over http (listener http of Gateway default/gw)"), "{text}");
    assert!(
        text.contains("ReplacePrefixMatch /api → \"/v2\": the path becomes /v2/x"),
        "{text}"
    );
    assert!(
        text.contains("backend default/v2:80 (3/4 of requests; 1 of 1 endpoints usable)"),
        "{text}"
    );
    assert!(text.contains("500 for 1/4 of requests"), "{text}");
    // Without the header the rule does not match, and says why.
    let e: Value = serde_json::from_str(
        &w.admin_get("/debug/explain?host=shop.test&path=/api/x")
            .await
            .body,
    )
    .unwrap();
    let http = &e["gatewayApi"][0];
    assert_eq!(http["socket"], "http");
    let rules = http["rules"].as_array().unwrap();
    assert_eq!(
        rules[0]["hostname"], "shop.test",
        "the exact hostname first: {rules:#?}"
    );
    assert_eq!(rules[0]["chosen"], true);
    assert_eq!(rules[1]["hostname"], "*.test");
    assert_eq!(
        rules[1]["why"],
        "the path matches, but not its method, headers or query parameters"
    );
    assert_eq!(e["outcome"], "gatewayRoute");
    w.stop().await;
}

/// One gRPC-shaped call (HTTP/2 prior knowledge, `content-type: application/grpc`, an
/// empty message) to wicket's plain socket.
async fn grpc_call(w: &Wicket, authority: &str, path: &str) -> Reply {
    let req = http::Request::post(format!("http://{authority}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    w.h2_send(req).await
}

#[tokio::test]
async fn grpc_routes_match_service_and_method_over_h2c_and_answer_errors_as_grpc_statuses() {
    let (say, other, web) = (
        pods("say", 1).await,
        pods("other", 1).await,
        pods("web", 1).await,
    );
    let grpc_route = concat!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: rpc, namespace: default}\nspec:\n  parentRefs: [{name: gw}]\n  hostnames: [grpc.test]\n  rules:\n",
                "  - matches: [{method: {service: pkg.Echo, method: Say}}]\n",
                "    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-route, value: rpc}]}}]\n",
                "    backendRefs: [{name: say, port: 80}]\n",
                "  - matches: [{method: {service: pkg.Other}}]\n",
                "    backendRefs: [{name: other, port: 80}]\n",
                "  - matches: [{method: {service: pkg.Broken}}]\n",
                "    backendRefs: [{name: missing, port: 80}]\n",
    );
    let manifests = format!(
        "{CLASS}{}{}{}{}{grpc_route}{}",
        gateway("default", "gw", HTTP_ALL),
        service("say", &say),
        service("other", &other),
        service("web", &web),
        route("default", "site", "  hostnames: [grpc.test]\n  rules: [{matches: [{path: {value: /web}}], backendRefs: [{name: web, port: 80}]}]\n"),
    );
    let w = Wicket::start(&manifests).await;
    let r = grpc_call(&w, "grpc.test", "/pkg.Echo/Say").await;
    assert_eq!(r.pod(), "say-0");
    assert!(
        r.body.contains("/pkg.Echo/Say HTTP/2.0"),
        "the pod gets HTTP/2: {}",
        r.body
    );
    assert_eq!(r.headers["x-route"], "rpc");
    assert_eq!(
        grpc_call(&w, "grpc.test", "/pkg.Other/Anything")
            .await
            .pod(),
        "other-0"
    );
    // No GRPCRoute rule: the HTTPRoute rules of the listener still apply to gRPC calls.
    assert_eq!(grpc_call(&w, "grpc.test", "/web/x").await.pod(), "web-0");
    // Nothing at all: UNIMPLEMENTED, as a gRPC client reads it.
    let r = grpc_call(&w, "grpc.test", "/pkg.Echo/Nope").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/grpc");
    assert_eq!(r.headers["grpc-status"], "12");
    // An invalid backendRef: UNAVAILABLE.
    assert_eq!(
        grpc_call(&w, "grpc.test", "/pkg.Broken/Call").await.headers["grpc-status"],
        "14"
    );
    // A GRPCRoute rule takes gRPC requests only.
    assert_eq!(
        w.get("grpc.test", "/pkg.Echo/Say").await.status,
        StatusCode::NOT_FOUND
    );

    let routes = w.routes().await;
    let grpc = status(&routes, "GRPCRoute", "default/rpc");
    assert_eq!(
        condition(&grpc["parents"][0]["conditions"], "Accepted").0,
        "True"
    );
    assert_eq!(
        condition(&grpc["parents"][0]["conditions"], "ResolvedRefs"),
        ("False".into(), "BackendNotFound".into())
    );
    let gw = status(&routes, "Gateway", "default/gw");
    assert_eq!(gw["listeners"][0]["attachedRoutes"], 2);
    assert_eq!(
        gw["listeners"][0]["supportedKinds"],
        serde_json::json!([
            "gateway.networking.k8s.io/HTTPRoute",
            "gateway.networking.k8s.io/GRPCRoute"
        ])
    );
    w.stop().await;
}

#[tokio::test]
async fn listener_kinds_and_certificate_grants_are_honoured() {
    let web = pods("web", 1).await;
    let cert = test_cert(&["granted.test"]);
    let listeners = concat!(
        "  - {name: grpc-only, protocol: HTTP, port: 80, hostname: grpc.test, allowedRoutes: {kinds: [{kind: GRPCRoute}]}}\n",
        "  - {name: odd-kinds, protocol: HTTP, port: 80, hostname: odd.test, allowedRoutes: {kinds: [{kind: TCPRoute}, {kind: HTTPRoute}]}}\n",
        "  - name: granted\n    protocol: HTTPS\n    port: 443\n    hostname: granted.test\n    tls: {certificateRefs: [{name: shared, namespace: certs}]}\n",
    );
    let secret = tls_secret("shared", &cert).replace(
        "metadata: {name: shared}",
        "metadata: {name: shared, namespace: certs}",
    );
    let grant = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: {name: gateways, namespace: certs}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: default}]\n  to: [{group: \"\", kind: Secret, name: shared}]\n";
    let manifests = format!(
        "{CLASS}{}{secret}{grant}{}{}{}",
        gateway("default", "gw", listeners),
        service("web", &web),
        route(
            "default",
            "to-grpc-only",
            "  parentRefs: [{name: gw, sectionName: grpc-only}]\n  rules: [{backendRefs: [{name: web, port: 80}]}]\n"
        )
        .replace("  parentRefs: [{name: gw, namespace: default}]\n", ""),
        route(
            "default",
            "secure",
            "  parentRefs: [{name: gw, sectionName: granted}]\n  rules: [{backendRefs: [{name: web, port: 80}]}]\n"
        )
        .replace("  parentRefs: [{name: gw, namespace: default}]\n", ""),
    );
    let w = Wicket::start(&manifests).await;
    let routes = w.routes().await;
    assert_eq!(
        parent_condition(&routes, "default/to-grpc-only", "Accepted"),
        ("False".into(), "NotAllowedByListeners".into())
    );
    let gw = status(&routes, "Gateway", "default/gw");
    let listener = |name: &str| {
        gw["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        listener("grpc-only")["supportedKinds"],
        serde_json::json!(["gateway.networking.k8s.io/GRPCRoute"])
    );
    let odd = listener("odd-kinds");
    assert_eq!(
        condition(&odd["conditions"], "ResolvedRefs"),
        ("False".into(), "InvalidRouteKinds".into())
    );
    assert_eq!(
        odd["supportedKinds"],
        serde_json::json!(["gateway.networking.k8s.io/HTTPRoute"]),
        "the kinds it can take are still listed and served"
    );
    assert_eq!(condition(&odd["conditions"], "Programmed").0, "True");
    // The Secret in another namespace is served: the grant allows this Gateway's namespace.
    assert_eq!(
        condition(&listener("granted")["conditions"], "ResolvedRefs").0,
        "True"
    );
    let stream = tls_connect(w.https(), Some("granted.test"), &[b"http/1.1"]).await;
    assert_eq!(served(&stream), cert.der);
    assert_eq!(
        H1::over(stream).await.get("granted.test", "/").await.pod(),
        "web-0"
    );
    // Revoked: the listener loses the certificate with the next table.
    std::fs::write(w.path().join("main.yaml"), manifests.replace(grant, "")).unwrap();
    eventually("the grant revoked", || async {
        let routes = w.routes().await;
        let gw = status(&routes, "Gateway", "default/gw").clone();
        let l = gw["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "granted")
            .unwrap()
            .clone();
        (condition(&l["conditions"], "ResolvedRefs") == ("False".into(), "RefNotPermitted".into()))
            .then_some(())
    })
    .await;
    let stream = tls_connect(w.https(), Some("granted.test"), &[b"http/1.1"]).await;
    assert_ne!(
        served(&stream),
        cert.der,
        "no longer served with the revoked certificate"
    );
    w.stop().await;
}
