use super::*;
use crate::model::normalize_prefix;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

fn owner() -> Arc<Owner> {
    Arc::new(Owner::new(
        Arc::from("ns"),
        Arc::from("r"),
        Arc::from("svc"),
    ))
}

fn rule(route: &str, index: usize) -> Arc<GatewayRule> {
    Arc::new(GatewayRule {
        route: Arc::new(ObjectRef::namespaced("HTTPRoute", "ns", route)),
        index,
        name: None,
        action: Action::Redirect(RedirectTo {
            scheme: None,
            hostname: None,
            port: None,
            path: None,
            status: 302,
        }),
        owner: owner(),
        grpc: false,
    })
}

fn entry(path: PathMatch, conditions: Option<Conditions>, route_order: u32, index: usize) -> Entry {
    Entry {
        path,
        conditions: conditions.map(Box::new),
        rule: rule(&format!("r{route_order}"), index),
        match_index: 0,
        route_order,
    }
}

fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(normalize_prefix(p))
}

fn facts<'a>(
    method: &'a Method,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> RequestFacts<'a> {
    RequestFacts {
        method,
        headers,
        query,
    }
}

fn listener(name: &str, hostname: &str) -> ListenerRef {
    ListenerRef {
        gateway: ObjectRef::namespaced("Gateway", "ns", "gw"),
        name: name.into(),
        port: 80,
        protocol: "HTTP",
        hostname: Hostname::parse(hostname),
    }
}

/// The spec's precedence between two matching entries, written out rule by rule (not via
/// `Entry::rank`): true when `a` wins over `b`.
fn wins(a: &Entry, b: &Entry) -> bool {
    use std::cmp::Ordering::*;
    let kind = |e: &Entry| match e.path {
        PathMatch::Exact(_) => 0,
        PathMatch::Regex(_) => 1,
        PathMatch::Prefix(_) => 2,
    };
    let len = |e: &Entry| match &e.path {
        PathMatch::Prefix(p) if p == "/" => 0,
        p => p.value().len(),
    };
    let method = |e: &Entry| e.conditions.as_ref().is_some_and(|c| c.method.is_some());
    let headers = |e: &Entry| e.conditions.as_ref().map_or(0, |c| c.headers.len());
    let query = |e: &Entry| e.conditions.as_ref().map_or(0, |c| c.query.len());
    let order = kind(a)
        .cmp(&kind(b))
        .then(len(b).cmp(&len(a)))
        .then(method(b).cmp(&method(a)))
        .then(headers(b).cmp(&headers(a)))
        .then(query(b).cmp(&query(a)))
        .then(a.route_order.cmp(&b.route_order))
        .then(a.rule.index.cmp(&b.rule.index))
        .then(a.match_index.cmp(&b.match_index));
    order == Less
}

/// The slow way: every entry that matches, the best by the spec's rules; for a gRPC
/// request the GRPCRoute rules first, and only for one.
fn reference<'a>(entries: &'a [Entry], path: &str, req: &RequestFacts<'_>) -> Option<&'a Entry> {
    let best_of = |grpc: bool| {
        let mut best: Option<&Entry> = None;
        for e in entries
            .iter()
            .filter(|e| e.rule.grpc == grpc && e.matches(path, req))
        {
            if best.is_none_or(|b| wins(e, b)) {
                best = Some(e);
            }
        }
        best
    };
    let grpc = if is_grpc(req.headers) {
        best_of(true)
    } else {
        None
    };
    grpc.or_else(|| best_of(false))
}

#[test]
fn the_index_finds_what_the_reference_matcher_finds_on_generated_rules() {
    fastrand::seed(0x6761_7465_7761_7921);
    let segments = ["a", "b", "ab", "c"];
    let random_path = |max: usize| {
        let n = fastrand::usize(0..=max);
        let mut p = String::new();
        for _ in 0..n {
            p.push('/');
            p.push_str(segments[fastrand::usize(0..segments.len())]);
        }
        if p.is_empty() || fastrand::u8(0..6) == 0 {
            p.push('/');
        }
        p
    };
    let methods = [Method::GET, Method::POST];
    for round in 0..300 {
        let mut entries = Vec::new();
        for i in 0..fastrand::usize(1..14) {
            let path = match fastrand::u8(0..10) {
                0..=2 => PathMatch::Exact(random_path(3)),
                3 => PathMatch::Regex(Pattern::full("/a(/.*)?").unwrap()),
                4 => PathMatch::Regex(Pattern::full("/[ab]+/c").unwrap()),
                _ => prefix(&random_path(3)),
            };
            let mut c = Conditions::default();
            if fastrand::u8(0..3) == 0 {
                c.method = Some(methods[fastrand::usize(0..2)].clone());
            }
            for _ in 0..fastrand::usize(0..3) {
                let name = ["x-a", "x-b"][fastrand::usize(0..2)];
                c.headers.push((
                    HeaderName::from_static(name),
                    ValueMatch::Exact(["1", "2"][fastrand::usize(0..2)].into()),
                ));
            }
            if fastrand::u8(0..4) == 0 {
                c.query.push(("q".into(), ValueMatch::Exact("1".into())));
            }
            let conditions = (c != Conditions::default()).then_some(c);
            let mut e = entry(path, conditions, fastrand::u32(0..4), i);
            if fastrand::u8(0..4) == 0 {
                let mut rule = (*e.rule).clone();
                rule.grpc = true;
                e.rule = Arc::new(rule);
            }
            entries.push(e);
        }
        let set = RuleSet::new(entries.clone());
        for _ in 0..60 {
            let path = random_path(4);
            let method = &methods[fastrand::usize(0..2)];
            let mut headers = HeaderMap::new();
            for name in ["x-a", "x-b"] {
                if fastrand::bool() {
                    headers.insert(
                        name,
                        HeaderValue::from_static(["1", "2"][fastrand::usize(0..2)]),
                    );
                }
            }
            let query =
                [None, Some("q=1"), Some("q=2&q=1"), Some("p=1&q=1")][fastrand::usize(0..4)];
            let req = facts(method, &headers, query);
            let fast = set
                .first(&path, &req)
                .map(|e| (e.route_order, e.rule.index));
            let slow = reference(&entries, &path, &req).map(|e| (e.route_order, e.rule.index));
            assert_eq!(
                fast, slow,
                "round {round}: {path} {method} {headers:?} {query:?}\n{entries:#?}"
            );
        }
    }
}

#[test]
fn exact_beats_regex_beats_prefix_and_longer_prefix_wins() {
    let set = RuleSet::new(vec![
        entry(prefix("/"), None, 0, 0),
        entry(prefix("/api"), None, 0, 1),
        entry(
            PathMatch::Regex(Pattern::full("/api/v[0-9]+").unwrap()),
            None,
            0,
            2,
        ),
        entry(PathMatch::Exact("/api/v1".into()), None, 0, 3),
    ]);
    let (m, h) = (Method::GET, HeaderMap::new());
    let req = facts(&m, &h, None);
    let pick = |p: &str| set.first(p, &req).map(|e| e.rule.index);
    assert_eq!(pick("/api/v1"), Some(3));
    assert_eq!(pick("/api/v2"), Some(2));
    assert_eq!(pick("/api/x"), Some(1));
    assert_eq!(pick("/apix"), Some(0), "prefixes match whole segments");
    assert_eq!(pick("/api/"), Some(1));
}

#[test]
fn a_prefix_whose_conditions_fail_falls_through_to_a_shorter_one() {
    let only_post = Conditions {
        method: Some(Method::POST),
        ..Conditions::default()
    };
    let set = RuleSet::new(vec![
        entry(prefix("/a/b"), Some(only_post), 0, 0),
        entry(prefix("/a"), None, 0, 1),
    ]);
    let h = HeaderMap::new();
    assert_eq!(
        set.first("/a/b/c", &facts(&Method::POST, &h, None))
            .map(|e| e.rule.index),
        Some(0)
    );
    assert_eq!(
        set.first("/a/b/c", &facts(&Method::GET, &h, None))
            .map(|e| e.rule.index),
        Some(1)
    );
}

#[test]
fn ties_go_to_more_conditions_then_the_older_route_then_rule_order() {
    let mut header = Conditions::default();
    header.headers.push((
        HeaderName::from_static("x-v"),
        ValueMatch::Exact("1".into()),
    ));
    let set = RuleSet::new(vec![
        entry(prefix("/"), None, 1, 0),
        entry(prefix("/"), None, 0, 5),
        entry(prefix("/"), Some(header), 2, 0),
    ]);
    let m = Method::GET;
    let mut h = HeaderMap::new();
    assert_eq!(
        set.first("/", &facts(&m, &h, None)).map(|e| e.route_order),
        Some(0)
    );
    h.insert("x-v", HeaderValue::from_static("1"));
    assert_eq!(
        set.first("/", &facts(&m, &h, None)).map(|e| e.route_order),
        Some(2)
    );
}

#[test]
fn query_parameters_compare_the_first_occurrence_case_sensitively() {
    let mut c = Conditions::default();
    c.query
        .push(("animal".into(), ValueMatch::Exact("whale".into())));
    let (m, h) = (Method::GET, HeaderMap::new());
    assert!(c.holds(&facts(&m, &h, Some("animal=whale"))));
    assert!(c.holds(&facts(&m, &h, Some("x=1&animal=whale&animal=dolphin"))));
    assert!(!c.holds(&facts(&m, &h, Some("animal=dolphin&animal=whale"))));
    assert!(!c.holds(&facts(&m, &h, Some("ANIMAL=whale"))));
    assert!(!c.holds(&facts(&m, &h, None)));
}

#[test]
fn header_matches_use_the_first_value_and_regexes_match_whole_values() {
    let mut c = Conditions::default();
    c.headers.push((
        HeaderName::from_static("version"),
        ValueMatch::Regex(Pattern::full("v[0-9]").unwrap()),
    ));
    let m = Method::GET;
    let mut h = HeaderMap::new();
    h.append("version", HeaderValue::from_static("v2"));
    h.append("version", HeaderValue::from_static("x"));
    assert!(c.holds(&facts(&m, &h, None)));
    let mut h = HeaderMap::new();
    h.insert("version", HeaderValue::from_static("v22"));
    assert!(!c.holds(&facts(&m, &h, None)), "anchored at both ends");
}

#[test]
fn replace_prefix_match_follows_the_spec_examples() {
    let r = |matched: &str, with: &str, path: &str| {
        PathRewrite::Prefix {
            matched: normalize_prefix(matched),
            with: with.into(),
        }
        .apply(path)
    };
    assert_eq!(r("/foo", "/xyz", "/foo/bar"), "/xyz/bar");
    assert_eq!(r("/foo", "/xyz/", "/foo/bar"), "/xyz/bar");
    assert_eq!(r("/foo", "", "/foo/bar"), "/bar");
    assert_eq!(r("/foo", "/xyz", "/foo"), "/xyz");
    assert_eq!(r("/foo", "/xyz", "/foo/"), "/xyz/");
    assert_eq!(r("/foo", "", "/foo"), "/");
    assert_eq!(r("/foo", "/", "/foo"), "/");
    assert_eq!(r("/foo/", "/xyz", "/foo/bar"), "/xyz/bar");
    assert_eq!(r("/", "/xyz", "/bar"), "/xyz/bar");
    assert_eq!(PathRewrite::Full("/one".into()).apply("/foo/bar"), "/one");
}

#[test]
fn redirect_locations_take_the_listener_port_unless_a_scheme_or_port_is_set() {
    let base = RedirectTo {
        scheme: None,
        hostname: None,
        port: None,
        path: None,
        status: 302,
    };
    assert_eq!(
        base.location(false, "a.com", "/x", Some("q=1"), 80),
        "http://a.com/x?q=1"
    );
    assert_eq!(
        base.location(false, "a.com", "/x", None, 8080),
        "http://a.com:8080/x"
    );
    let https = RedirectTo {
        scheme: Some("https"),
        ..base.clone()
    };
    assert_eq!(
        https.location(false, "a.com", "/x", None, 80),
        "https://a.com/x"
    );
    let port = RedirectTo {
        port: Some(8443),
        scheme: Some("https"),
        hostname: Some("b.org".into()),
        ..base.clone()
    };
    assert_eq!(
        port.location(false, "a.com", "/", None, 80),
        "https://b.org:8443/"
    );
    let http_443 = RedirectTo {
        port: Some(443),
        scheme: Some("http"),
        ..base
    };
    assert_eq!(
        http_443.location(true, "a.com", "/", None, 443),
        "http://a.com:443/"
    );
}

#[test]
fn add_appends_to_the_value_set_replaces_remove_drops() {
    let edits = HeaderEdits {
        set: vec![(
            HeaderName::from_static("x-set"),
            HeaderValue::from_static("new"),
        )],
        add: vec![(
            HeaderName::from_static("x-add"),
            HeaderValue::from_static("two"),
        )],
        remove: vec![HeaderName::from_static("x-gone")],
    };
    let mut h = HeaderMap::new();
    h.insert("x-set", HeaderValue::from_static("old"));
    h.insert("x-add", HeaderValue::from_static("one"));
    h.insert("x-gone", HeaderValue::from_static("bye"));
    edits.apply(&mut h);
    assert_eq!(h["x-set"], "new");
    assert_eq!(h["x-add"], "one,two");
    assert!(h.get("x-gone").is_none());
    let mut empty = HeaderMap::new();
    edits.apply(&mut empty);
    assert_eq!(empty["x-add"], "two");
}

#[test]
fn wildcard_hostnames_take_any_number_of_labels_but_not_the_bare_suffix() {
    let w = Hostname::parse("*.Example.com");
    assert!(w.matches("a.example.com"));
    assert!(w.matches("a.b.example.com"));
    assert!(!w.matches("example.com"));
    assert!(!w.matches("aexample.com"));
}

#[test]
fn a_request_is_served_only_by_the_most_specific_listener_and_its_routes() {
    let mut b = GatewayTableBuilder::new();
    let wild = b.listener(false, listener("wild", "*.example.com"));
    let any = b.listener(false, listener("any", ""));
    let exact = b.listener(false, listener("exact", "foo.example.com"));
    b.add(
        wild,
        Hostname::parse("*.example.com"),
        entry(prefix("/"), None, 0, 0),
    );
    b.add(
        wild,
        Hostname::parse("bar.example.com"),
        entry(prefix("/"), None, 0, 1),
    );
    b.add(any, Hostname::Any, entry(prefix("/"), None, 1, 2));
    // A route on the catch-all listener naming a host another listener takes: never used.
    b.add(
        any,
        Hostname::parse("foo.example.com"),
        entry(prefix("/"), None, 1, 3),
    );
    b.add(
        exact,
        Hostname::parse("foo.example.com"),
        entry(prefix("/only"), None, 2, 4),
    );
    let table = b.build();
    let (m, h) = (Method::GET, HeaderMap::new());
    let req = facts(&m, &h, None);
    let pick = |host: &str, path: &str| {
        table
            .lookup(false, host, path, &req)
            .map(|r| (r.listener.name.clone(), r.entry.rule.index))
    };
    assert_eq!(pick("bar.example.com", "/"), Some(("wild".into(), 1)));
    assert_eq!(pick("x.y.example.com", "/"), Some(("wild".into(), 0)));
    assert_eq!(pick("other.org", "/"), Some(("any".into(), 2)));
    assert_eq!(
        pick("foo.example.com", "/only/x"),
        Some(("exact".into(), 4))
    );
    // Isolation: the exact listener has no rule for `/`, and nothing else is tried.
    assert_eq!(pick("foo.example.com", "/"), None);
    assert!(
        table.lookup(true, "other.org", "/", &req).is_none(),
        "nothing on TLS"
    );
}

#[test]
fn weights_split_requests_and_zero_weights_get_none() {
    let backend = |weight: u32, upto: u64, why: &str| WeightedBackend {
        weight,
        upto,
        target: BackendTarget::Invalid(Arc::from(why)),
        request: None,
        response: None,
        owner: owner(),
    };
    let f = ForwardTo {
        request: None,
        response: None,
        path: None,
        policy: None,
        backends: vec![
            backend(1, 1, "a"),
            backend(0, 1, "zero"),
            backend(3, 4, "b"),
        ],
        total: 4,
        none: None,
    };
    fastrand::seed(7);
    let mut counts = HashMap::<String, u32>::new();
    for _ in 0..4000 {
        let BackendTarget::Invalid(why) = &f.pick().unwrap().1.target else {
            unreachable!()
        };
        *counts.entry(why.to_string()).or_default() += 1;
    }
    assert!(!counts.contains_key("zero"));
    let a = counts["a"];
    assert!((850..1150).contains(&a), "a got {a} of 4000");
    let none = ForwardTo { total: 0, ..f };
    assert!(none.pick().is_none());
}

#[test]
fn grpc_requests_are_recognised_by_their_content_type() {
    let with = |v: &'static str| {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static(v));
        is_grpc(&h)
    };
    assert!(with("application/grpc"));
    assert!(with("application/grpc+proto"));
    assert!(with("Application/GRPC"));
    assert!(!with("application/grpc-web"));
    assert!(!with("application/json"));
    assert!(!is_grpc(&HeaderMap::new()));
}
