use std::collections::BTreeMap;

use super::*;

fn with(annotations: &[(&str, &str)]) -> (Options, Vec<Problem>) {
    let mut ingress = Ingress::default();
    ingress.metadata.annotations = Some(
        annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    );
    let mut problems = Vec::new();
    let source = ObjectRef::namespaced("Ingress", "default", "a");
    (read(&ingress, &source, &mut problems), problems)
}

fn nginx(name: &str, value: &str) -> (String, String) {
    (format!("{NGINX_PREFIX}{name}"), value.to_owned())
}

fn with_nginx(pairs: &[(&str, &str)]) -> (Options, Vec<Problem>) {
    let owned: Vec<(String, String)> = pairs.iter().map(|(n, v)| nginx(n, v)).collect();
    let refs: Vec<(&str, &str)> = owned
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    with(&refs)
}

fn policy(pairs: &[(&str, &str)]) -> Policy {
    let (o, p) = with_nginx(pairs);
    assert!(p.is_empty(), "{p:?}");
    o.policy.map(|p| (*p).clone()).unwrap_or_default()
}

fn outcome(o: &Options, full: &str) -> Outcome {
    o.report
        .as_ref()
        .and_then(|r| r.annotations.iter().find(|a| a.name == full))
        .map(|a| a.outcome)
        .unwrap_or_else(|| panic!("no outcome for {full}"))
}

#[test]
fn no_annotations_no_policy_no_report() {
    let (o, p) = with(&[]);
    assert!(o.ssl_redirect);
    assert_eq!(o.protocol, None);
    assert_eq!(o.policy, None);
    assert_eq!(o.report, None);
    assert!(p.is_empty());
}

#[test]
fn ssl_redirect_false_from_either_name_and_wicket_wins() {
    assert!(!with_nginx(&[("ssl-redirect", "false")]).0.ssl_redirect);
    assert!(!with(&[("wicket.dev/ssl-redirect", "False")]).0.ssl_redirect);
    assert!(!with_nginx(&[("ssl-redirect", "0")]).0.ssl_redirect);
    let (o, _) = with(&[
        ("wicket.dev/ssl-redirect", "true"),
        ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
    ]);
    assert!(o.ssl_redirect);
    assert_eq!(
        outcome(&o, "nginx.ingress.kubernetes.io/ssl-redirect"),
        Outcome::NoEffectNeeded
    );
    assert_eq!(outcome(&o, "wicket.dev/ssl-redirect"), Outcome::Honoured);
}

#[test]
fn backend_protocols_map_to_upstream_protocols() {
    for (value, protocol) in [
        ("HTTP", UpstreamProtocol::Http1),
        ("https", UpstreamProtocol::Https),
        ("GRPC", UpstreamProtocol::H2c),
        ("GRPCS", UpstreamProtocol::H2),
    ] {
        let (o, p) = with_nginx(&[("backend-protocol", value)]);
        assert_eq!(o.protocol, Some(protocol));
        assert!(p.is_empty());
    }
}

#[test]
fn body_size_and_timeouts_parse_as_nginx_writes_them() {
    let p = policy(&[
        ("proxy-body-size", "8m"),
        ("proxy-connect-timeout", "3"),
        ("proxy-read-timeout", "120"),
        ("proxy-send-timeout", "30"),
    ]);
    assert_eq!(p.body_limit, Some(BodyLimit::Bytes(8 << 20)));
    assert_eq!(p.connect_timeout, Some(Duration::from_secs(3)));
    assert_eq!(p.read_timeout, Some(Duration::from_secs(120)));
    assert_eq!(p.send_timeout, Some(Duration::from_secs(30)));
    assert_eq!(
        policy(&[("proxy-body-size", "0")]).body_limit,
        Some(BodyLimit::Unlimited)
    );
    assert_eq!(
        policy(&[("proxy-body-size", "512K")]).body_limit,
        Some(BodyLimit::Bytes(512 << 10))
    );
    assert_eq!(
        policy(&[("proxy-body-size", "1024")]).body_limit,
        Some(BodyLimit::Bytes(1024))
    );
}

#[test]
fn invalid_tuning_values_are_ignored_with_a_problem() {
    let (o, p) = with_nginx(&[
        ("proxy-body-size", "15r"),
        ("proxy-read-timeout", "50k"),
        ("proxy-next-upstream", "error sometimes"),
    ]);
    assert_eq!(o.policy, None, "the defaults apply");
    assert_eq!(o.blocked, None);
    assert_eq!(p.len(), 3);
    assert!(p.iter().all(|p| p.reason == Reason::InvalidAnnotation));
    assert!(p.iter().any(|p| p.message.contains("\"15r\"")), "{p:?}");
    assert_eq!(
        outcome(&o, "nginx.ingress.kubernetes.io/proxy-read-timeout"),
        Outcome::Invalid
    );
}

#[test]
fn next_upstream_conditions_tries_and_timeout() {
    let p = policy(&[
        (
            "proxy-next-upstream",
            "error timeout http_503 non_idempotent",
        ),
        ("proxy-next-upstream-tries", "5"),
        ("proxy-next-upstream-timeout", "10"),
    ]);
    let n = p.next_upstream.unwrap();
    assert!(n.error && n.timeout && n.non_idempotent);
    assert!(n.statuses.contains(503) && !n.statuses.contains(502));
    assert_eq!(n.tries, 5);
    assert_eq!(n.within, Some(Duration::from_secs(10)));
    let off = policy(&[("proxy-next-upstream", "off")])
        .next_upstream
        .unwrap();
    assert!(!off.error && !off.timeout && off.statuses.is_empty());
    let tries = policy(&[("proxy-next-upstream-tries", "1")])
        .next_upstream
        .unwrap();
    assert!(tries.error && tries.timeout, "the default conditions stay");
    assert_eq!(tries.tries, 1);
}

#[test]
fn redirects_take_their_codes_and_temporal_wins() {
    let p = policy(&[("permanent-redirect", "https://new.example/")]);
    let r = p.redirect.unwrap();
    assert_eq!(
        (r.code, r.location.to_str().unwrap()),
        (301, "https://new.example/")
    );
    let p = policy(&[
        ("permanent-redirect", "/moved"),
        ("permanent-redirect-code", "308"),
    ]);
    assert_eq!(p.redirect.unwrap().code, 308);
    let (o, problems) = with_nginx(&[
        ("permanent-redirect", "https://a.example"),
        ("temporal-redirect", "https://b.example"),
        ("temporal-redirect-code", "308"),
    ]);
    let r = o.policy.unwrap().redirect.clone().unwrap();
    assert_eq!(r.location, "https://b.example");
    assert_eq!(
        r.code, 302,
        "308 is not a temporal code: the default is used"
    );
    assert_eq!(problems.len(), 1);
}

#[test]
fn a_redirect_wicket_cannot_make_blocks_the_routes() {
    let (o, p) = with_nginx(&[("permanent-redirect", "https://x.example/$request_uri")]);
    assert!(o.blocked.is_some());
    assert_eq!(p[0].reason, Reason::InvalidAnnotation);
    let (o, _) = with_nginx(&[("temporal-redirect", "/relative")]);
    assert!(
        o.blocked.is_some(),
        "a temporal redirect needs an http(s) URL"
    );
}

#[test]
fn upstream_vhost_takes_a_host_name_only() {
    let p = policy(&[("upstream-vhost", "internal.example.svc")]);
    assert_eq!(p.upstream_vhost.unwrap(), "internal.example.svc");
    let (o, p) = with_nginx(&[("upstream-vhost", "$service_name.$namespace.svc")]);
    assert_eq!(o.policy, None);
    assert_eq!(p[0].reason, Reason::InvalidAnnotation);
}

#[test]
fn access_guards_block_snippets_are_refused_and_the_rest_reported() {
    let (o, p) = with(&[
        (
            "nginx.ingress.kubernetes.io/whitelist-source-range",
            "10.0.0.0/8, not-an-address",
        ),
        (
            "nginx.ingress.kubernetes.io/configuration-snippet",
            "more_set_headers x;",
        ),
        (
            "nginx.ingress.kubernetes.io/mirror-target",
            "https://m.example/$request_uri",
        ),
        ("nginx.ingress.kubernetes.io/proxy-buffering", "on"),
        ("nginx.ingress.kubernetes.io/no-such-thing", "x"),
        ("wicket.dev/ssl-redirekt", "false"),
        ("example.com/unrelated", "x"),
    ]);
    assert!(o.blocked.unwrap().contains("whitelist-source-range"));
    let reasons: Vec<Reason> = p.iter().map(|p| p.reason).collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == Reason::UnsupportedAnnotation)
            .count(),
        3,
        "snippet, mirror-target, unknown: {p:?}"
    );
    assert!(
        reasons.contains(&Reason::InvalidAnnotation),
        "the wicket.dev typo"
    );
    assert!(p.iter().any(|p| p.message.contains("never supported")));
    let r = o.report.unwrap();
    let of = |n: &str| {
        r.annotations
            .iter()
            .find(|a| a.name.ends_with(n))
            .unwrap()
            .outcome
    };
    assert_eq!(of("whitelist-source-range"), Outcome::Blocks);
    assert_eq!(of("configuration-snippet"), Outcome::Refused);
    assert_eq!(of("mirror-target"), Outcome::Unsupported);
    assert_eq!(of("proxy-buffering"), Outcome::NoEffectNeeded);
    assert_eq!(of("ssl-redirekt"), Outcome::Invalid);
    assert!(r
        .annotations
        .iter()
        .all(|a| !a.name.starts_with("example.com")));
}

#[test]
fn canary_annotations_make_a_rule_only_with_canary_true() {
    let (o, p) = with_nginx(&[
        ("canary", "true"),
        ("canary-weight", "10"),
        ("canary-weight-total", "50"),
        ("canary-by-header", "X-Canary"),
        ("canary-by-cookie", "c"),
        ("affinity-canary-behavior", "legacy"),
    ]);
    assert!(p.is_empty(), "{p:?}");
    let rule = o.canary.unwrap();
    assert_eq!(
        (rule.weight, rule.weight_total),
        (10, 100),
        "a total of 100 or less is 100"
    );
    assert_eq!(rule.header.unwrap().as_str(), "x-canary");
    assert_eq!(rule.cookie.as_deref(), Some("c"));
    assert!(!rule.sticky);
    // Without canary: "true" the settings do nothing, and say so.
    let (o, p) = with_nginx(&[("canary", "false"), ("canary-weight", "10")]);
    assert!(o.canary.is_none());
    assert!(
        p.iter().any(|p| p.message.contains("canary is not")),
        "{p:?}"
    );
    assert_eq!(
        outcome(&o, &format!("{NGINX_PREFIX}canary-weight")),
        Outcome::Invalid
    );
}

#[test]
fn a_canary_reads_only_the_canary_and_traffic_annotations() {
    let (o, p) = with_nginx(&[
        ("canary", "true"),
        ("canary-by-header-value", "v"),
        ("load-balance", "ewma"),
        ("permanent-redirect", "https://example.com"),
        ("whitelist-source-range", "10.0.0.0/8"),
        ("configuration-snippet", "x"),
    ]);
    let rule = o.canary.clone().unwrap();
    assert_eq!(
        rule.header_value, None,
        "a value without a header is not used"
    );
    let policy = o.policy.clone().unwrap();
    assert!(policy.ewma);
    assert!(policy.redirect.is_none());
    assert!(o.blocked.is_none(), "the main Ingress guards the route");
    let of = |n: &str| outcome(&o, &format!("{NGINX_PREFIX}{n}"));
    assert_eq!(of("permanent-redirect"), Outcome::NoEffectNeeded);
    assert_eq!(of("whitelist-source-range"), Outcome::NoEffectNeeded);
    assert_eq!(of("canary-by-header-value"), Outcome::NoEffectNeeded);
    assert_eq!(of("configuration-snippet"), Outcome::Refused);
    assert_eq!(p.len(), 1, "only the snippet is a Problem: {p:?}");
    // A pattern that does not compile is kept, as such.
    let (o, p) = with_nginx(&[
        ("canary", "true"),
        ("canary-by-header", "h"),
        ("canary-by-header-pattern", "[][**da?$&*"),
    ]);
    assert!(matches!(
        o.canary.unwrap().header_pattern,
        Some(crate::model::HeaderPattern::Invalid(_))
    ));
    assert_eq!(p.len(), 1, "{p:?}");
}

#[test]
fn enable_access_log_false_turns_the_log_off() {
    assert!(policy(&[("enable-access-log", "false")]).no_access_log);
    assert!(policy(&[("enable-access-log", "true")]).is_default());
}

#[test]
fn sizes_parse_as_nginx_writes_them() {
    assert_eq!(parse_size("8"), Some(8));
    assert_eq!(parse_size("8k"), Some(8192));
    assert_eq!(parse_size("1M"), Some(1 << 20));
    assert_eq!(parse_size("2g"), Some(2 << 30));
    for bad in ["", "k", "1.5m", "-1", "15r", "1 m"] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
}

#[test]
fn cors_takes_ingress_nginx_defaults_and_only_with_enable_cors() {
    let c = policy(&[("enable-cors", "true")]).cors.unwrap();
    assert_eq!(c.origins, CorsOrigins::Any);
    assert_eq!(c.methods, "GET, PUT, POST, DELETE, PATCH, OPTIONS");
    assert!(c.credentials);
    assert_eq!(c.max_age, "1728000");
    assert_eq!(c.expose, None);
    let (o, p) = with_nginx(&[("cors-allow-origin", "https://a.example")]);
    assert_eq!(o.policy, None, "cors-* alone does nothing");
    assert!(p.is_empty());
    assert_eq!(
        outcome(&o, "nginx.ingress.kubernetes.io/cors-allow-origin"),
        Outcome::NoEffectNeeded
    );
}

#[test]
fn cors_origins_parse_star_lists_wildcards_and_skip_garbage() {
    let c = |origins: &str| {
        let (o, p) = with_nginx(&[("enable-cors", "true"), ("cors-allow-origin", origins)]);
        (o.policy.unwrap().cors.clone().unwrap().origins, p)
    };
    assert_eq!(c("*, https://foo.bar.com").0, CorsOrigins::Any);
    let (origins, problems) =
        c("https://a.example, http://*.b.example:8080, origin.cors.com:8080, ,");
    let CorsOrigins::List(list) = origins else {
        panic!()
    };
    assert_eq!(list.len(), 2);
    assert!(list[1].wildcard && list[1].port == ":8080");
    assert_eq!(problems.len(), 1, "the entry without a scheme is skipped");
    let (o, p) = with_nginx(&[
        ("enable-cors", "true"),
        ("cors-allow-methods", "GET; rm -rf"),
    ]);
    assert_eq!(
        o.policy.unwrap().cors.clone().unwrap().methods,
        "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    );
    assert_eq!(p[0].reason, Reason::InvalidAnnotation);
}

#[test]
fn rewrite_target_takes_paths_urls_and_captures_only() {
    let (o, p) = with_nginx(&[("rewrite-target", "/new/$1"), ("use-regex", "true")]);
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(o.rewrite_target.as_deref(), Some("/new/$1"));
    assert!(o.use_regex);
    let (o, _) = with_nginx(&[("rewrite-target", "https://bar.example.org/$1")]);
    assert_eq!(
        o.rewrite_target.as_deref(),
        Some("https://bar.example.org/$1")
    );
    assert!(
        !o.use_regex,
        "regex mode comes from the rewrite itself, per path"
    );
    // Characters ingress-nginx refuses: ignored, no rewrite.
    for bad in ["/x?y=1", "/a%20b", "relative/path", "/a b"] {
        let (o, p) = with_nginx(&[("rewrite-target", bad)]);
        assert_eq!(o.rewrite_target, None, "{bad}");
        assert_eq!(o.blocked, None, "{bad}");
        assert_eq!(p[0].reason, Reason::InvalidAnnotation, "{bad}");
        assert_eq!(
            outcome(&o, &format!("{NGINX_PREFIX}rewrite-target")),
            Outcome::Invalid
        );
    }
    // An nginx variable: the routes answer 503 rather than go to the wrong path.
    let (o, p) = with_nginx(&[("rewrite-target", "/$host/$1")]);
    assert_eq!(o.rewrite_target, None);
    assert!(o.blocked.unwrap().contains("nginx variable"));
    assert!(o.use_regex);
    assert!(p[0].message.contains("\"/$host/$1\""), "{}", p[0].message);
    // wicket.dev/ wins.
    let (o, _) = with(&[
        ("wicket.dev/rewrite-target", "/w"),
        ("nginx.ingress.kubernetes.io/rewrite-target", "/n"),
    ]);
    assert_eq!(o.rewrite_target.as_deref(), Some("/w"));
}

#[test]
fn x_forwarded_prefix_goes_with_a_rewrite_only() {
    let p = policy(&[("rewrite-target", "/$2"), ("x-forwarded-prefix", "/api")]);
    assert_eq!(p.x_forwarded_prefix.unwrap(), "/api");
    let (o, p) = with_nginx(&[("x-forwarded-prefix", "/api")]);
    assert!(p.is_empty());
    assert_eq!(o.policy, None);
    assert_eq!(
        outcome(&o, &format!("{NGINX_PREFIX}x-forwarded-prefix")),
        Outcome::NoEffectNeeded
    );
    let (o, p) = with_nginx(&[("rewrite-target", "/"), ("x-forwarded-prefix", "/a\"b")]);
    assert_eq!(o.policy, None);
    assert_eq!(p[0].reason, Reason::InvalidAnnotation);
}

#[test]
fn cookie_affinity_takes_ingress_nginx_defaults_and_values() {
    let p = policy(&[("affinity", "cookie")]);
    let a = p.affinity.unwrap();
    assert_eq!(a.name, "INGRESSCOOKIE");
    assert!(!a.persistent && !a.secure && !a.change_on_failure);
    assert_eq!(
        (a.path, a.domain, a.max_age, a.expires, a.same_site),
        (None, None, None, None, None)
    );
    let p = policy(&[
        ("affinity", "cookie"),
        ("affinity-mode", "persistent"),
        ("session-cookie-name", "SERVERID"),
        ("session-cookie-path", "/app"),
        ("session-cookie-samesite", "lax"),
        ("session-cookie-max-age", "3600"),
        ("session-cookie-change-on-failure", "true"),
    ]);
    let a = p.affinity.unwrap();
    assert!(a.persistent && a.change_on_failure);
    assert_eq!(a.name, "SERVERID");
    assert_eq!(a.path.as_deref(), Some("/app"));
    assert_eq!(a.same_site, Some(SameSite::Lax));
    assert_eq!(a.max_age, Some(3600));
}

#[test]
fn bad_affinity_values_fall_back_and_session_cookies_need_affinity() {
    let (o, p) = with_nginx(&[("affinity", "ip")]);
    assert_eq!(o.policy, None);
    assert_eq!(p[0].reason, Reason::InvalidAnnotation);
    let (o, p) = with_nginx(&[
        ("affinity", "cookie"),
        ("session-cookie-name", "a b"),
        ("session-cookie-samesite", "sometimes"),
        ("affinity-mode", "sticky"),
    ]);
    let a = o.policy.unwrap().affinity.clone().unwrap();
    assert_eq!(a.name, "INGRESSCOOKIE");
    assert_eq!(a.same_site, None);
    assert!(!a.persistent);
    assert_eq!(p.len(), 3, "{p:?}");
    let (o, p) = with_nginx(&[("session-cookie-name", "X")]);
    assert!(p.is_empty());
    assert_eq!(
        outcome(&o, &format!("{NGINX_PREFIX}session-cookie-name")),
        Outcome::NoEffectNeeded
    );
    // use-regex without a cookie path: the path pattern would be the cookie's Path.
    let (_, p) = with_nginx(&[("affinity", "cookie"), ("use-regex", "true")]);
    assert!(
        p[0].message.contains("session-cookie-path should be set"),
        "{p:?}"
    );
}

#[test]
fn hash_by_reads_nginx_variables_and_refuses_unknown_ones() {
    let p = policy(&[("upstream-hash-by", "${request_uri}-$http_x_user")]);
    let h = p.hash_by.unwrap();
    assert_eq!(
        h.pieces,
        vec![
            HashPiece::RequestUri,
            HashPiece::Text("-".into()),
            HashPiece::Header(http::HeaderName::from_static("x-user")),
        ]
    );
    assert_eq!(h.subset, None);
    let p = policy(&[
        ("upstream-hash-by", "$remote_addr"),
        ("upstream-hash-by-subset", "true"),
    ]);
    assert_eq!(p.hash_by.unwrap().subset, Some(3));
    for bad in ["$upstream_addr", "constant", "${request_uri"] {
        let (o, p) = with_nginx(&[("upstream-hash-by", bad)]);
        assert_eq!(o.policy, None, "{bad}");
        assert_eq!(p[0].reason, Reason::InvalidAnnotation, "{bad}");
    }
}

#[test]
fn affinity_wins_over_the_hash_which_wins_over_load_balance() {
    let (o, _) = with_nginx(&[
        ("affinity", "cookie"),
        ("upstream-hash-by", "$request_uri"),
        ("load-balance", "ewma"),
    ]);
    let p = o.policy.clone().unwrap();
    assert!(p.affinity.is_some() && p.hash_by.is_none() && !p.ewma);
    assert_eq!(
        outcome(&o, &format!("{NGINX_PREFIX}upstream-hash-by")),
        Outcome::NoEffectNeeded
    );
    assert_eq!(
        outcome(&o, &format!("{NGINX_PREFIX}load-balance")),
        Outcome::NoEffectNeeded
    );
    let (o, _) = with_nginx(&[
        ("upstream-hash-by", "$request_uri"),
        ("load-balance", "ewma"),
    ]);
    let p = o.policy.unwrap();
    assert!(p.hash_by.is_some() && !p.ewma);
    assert!(policy(&[("load-balance", "ewma")]).ewma);
    let (o, p) = with_nginx(&[("load-balance", "chash")]);
    assert_eq!(o.policy, None);
    assert_eq!(p[0].reason, Reason::InvalidAnnotation);
}

#[test]
fn custom_http_errors_are_status_codes_and_default_backend_a_service_name() {
    let errors = |pairs: &[(&str, &str)]| policy(pairs).errors.unwrap_or_default();
    let e = errors(&[("custom-http-errors", "503, 404,404")]);
    assert_eq!(e.codes, vec![404, 503]);
    assert!(e.replaces(404) && !e.replaces(500));
    assert!(
        e.on_unavailable(),
        "503 listed: a Service that cannot answer gets the page"
    );
    let e = errors(&[("default-backend", "errors")]);
    assert_eq!(e.own_backend.as_deref(), Some("errors"));
    assert!(e.codes.is_empty() && e.on_unavailable());
    let (o, p) = with_nginx(&[
        ("custom-http-errors", "404,abc"),
        ("default-backend", "a.b"),
    ]);
    assert!(o.policy.is_none(), "nothing usable is left");
    assert_eq!(p.len(), 2, "{p:?}");
    let (o, _) = with_nginx(&[
        ("custom-http-errors", "404"),
        ("disable-proxy-intercept-errors", "true"),
    ]);
    assert!(o.policy.is_none());
    assert_eq!(
        outcome(&o, &format!("{NGINX_PREFIX}custom-http-errors")),
        Outcome::NoEffectNeeded
    );
}

#[test]
fn source_ranges_parse_or_block_the_routes() {
    let p = policy(&[
        ("denylist-source-range", "18.1.0.0/16"),
        ("whitelist-source-range", "18.0.0.0/8, 2001:db8::/32"),
    ]);
    let source = p.source.unwrap();
    assert!(source.deny.unwrap().contains("18.1.2.3".parse().unwrap()));
    assert!(source
        .allow
        .unwrap()
        .contains("2001:db8::1".parse().unwrap()));
    for bad in ["10.0.0.0/8, nope", "10.0.0.0/40", " , "] {
        let (o, p) = with_nginx(&[("allowlist-source-range", bad)]);
        assert!(o.blocked.is_some(), "{bad:?} must fail closed");
        assert_eq!(p.len(), 1, "{p:?}");
    }
}

#[test]
fn an_ingress_without_our_annotations_gets_what_reading_them_all_gives() {
    // The shortcut for Ingresses without annotations must agree with the full read.
    let (read, problems) = with_nginx(&[("ssl-redirect", "true")]);
    assert!(problems.is_empty());
    let shortcut = Options {
        report: read.report.clone(),
        ..Options::default()
    };
    assert_eq!(read, shortcut);
    assert_eq!(with(&[("example.com/other", "x")]).0, Options::default());
}
