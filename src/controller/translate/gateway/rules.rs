//! One HTTPRoute rule → its matches and its action, or the reason it is refused.
//!
//! A rule is refused whole (never half-applied) when a field holds a value the spec does
//! not define or wicket does not serve yet (`UnsupportedValue`), or its filters cannot go
//! together (`IncompatibleFilters`). Backend references that cannot be used do not refuse
//! the rule: their share of the requests is answered 500 and the route's `ResolvedRefs`
//! says why.

use std::collections::HashSet;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};

use super::super::service::Resolver;
use super::super::validate;
use super::{granted, GROUP_CORE};
use crate::controller::gateway_api::{
    GrpcMethodMatch, GrpcRouteRule, HeaderFilter, HttpBackendRef, HttpRouteFilter, HttpRouteMatch,
    HttpRouteRule, PathModifier, ValueMatch as ValueMatchSpec, GROUP,
};
use crate::controller::index::Index;
use crate::model::gateway::{
    Action, BackendTarget, Conditions, ForwardTo, HeaderEdits, PathMatch, PathRewrite, Pattern,
    RedirectTo, ValueMatch, WeightedBackend,
};
use crate::model::{normalize_prefix, Owner, Policy, PortRef, Reason, Target};

/// Why a rule is refused: the spec's reason and words.
pub struct Refused {
    pub reason: &'static str,
    pub message: String,
}

fn unsupported(message: impl Into<String>) -> Refused {
    Refused {
        reason: "UnsupportedValue",
        message: message.into(),
    }
}

/// A backendRef that cannot be used: the route's `ResolvedRefs` reason and words.
pub struct Unresolved {
    pub reason: &'static str,
    pub message: String,
}

pub struct Compiled {
    pub matches: Vec<(PathMatch, Option<Conditions>)>,
    pub action: Action,
    pub unresolved: Vec<Unresolved>,
}

/// What compiling a rule needs besides the rule.
pub struct Context<'a, 'r> {
    pub index: &'a Index,
    pub services: &'r mut Resolver<'a>,
    /// The route's namespace and name.
    pub namespace: &'a str,
    pub route: &'a str,
    /// `HTTPRoute` or `GRPCRoute`, for ReferenceGrant `from` entries.
    pub kind: &'static str,
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
const MAX_WEIGHT: i32 = 1_000_000;

pub fn compile(
    cx: &mut Context<'_, '_>,
    rule: &HttpRouteRule,
    at: &str,
) -> Result<Compiled, Refused> {
    if rule.retry.is_some() {
        return Err(unsupported(format!(
            "{at}.retry: retries are in Gateway API's experimental channel, which wicket does not serve"
        )));
    }
    if rule.session_persistence.is_some() {
        return Err(unsupported(format!(
            "{at}.sessionPersistence: session persistence is in Gateway API's experimental channel, which wicket does not serve"
        )));
    }
    if rule.timeouts.is_some() {
        return Err(unsupported(format!(
            "{at}.timeouts: HTTPRoute timeouts are not supported by wicket yet"
        )));
    }
    let spec_matches = rule.matches.as_deref().unwrap_or(&[]);
    let mut matches = Vec::new();
    for (i, m) in spec_matches.iter().enumerate() {
        matches.push(one_match(m, &format!("{at}.matches[{i}]"))?);
    }
    if matches.is_empty() {
        matches.push((PathMatch::Prefix("/".into()), None));
    }
    // ReplacePrefixMatch needs the one PathPrefix it replaces.
    let only_prefix = match matches.as_slice() {
        [(PathMatch::Prefix(p), _)] => Some(p.clone()),
        _ => None,
    };
    let filters = rule.filters.as_deref().unwrap_or(&[]);
    let rule_filters = filters_of(
        filters,
        &format!("{at}.filters"),
        only_prefix.as_deref(),
        true,
    )?;
    let refs = rule.backend_refs.as_deref().unwrap_or(&[]);
    if let Some(redirect) = rule_filters.redirect {
        if !refs.is_empty() {
            return Err(unsupported(format!(
                "{at}: a RequestRedirect filter and backendRefs cannot be used together"
            )));
        }
        return Ok(Compiled {
            matches,
            action: Action::Redirect(redirect),
            unresolved: Vec::new(),
        });
    }
    forward(cx, refs, at, rule_filters, matches)
}

/// A rule that forwards: its backendRefs with their weights and own filters.
fn forward(
    cx: &mut Context<'_, '_>,
    refs: &[HttpBackendRef],
    at: &str,
    rule_filters: Filters,
    matches: Vec<(PathMatch, Option<Conditions>)>,
) -> Result<Compiled, Refused> {
    let mut unresolved = Vec::new();
    let mut backends = Vec::new();
    let mut total = 0u64;
    for (i, backend_ref) in refs.iter().enumerate() {
        let field = format!("{at}.backendRefs[{i}]");
        let weight = backend_ref.weight.unwrap_or(1);
        if !(0..=MAX_WEIGHT).contains(&weight) {
            return Err(unsupported(format!(
                "{field}.weight {weight} is outside 0 to {MAX_WEIGHT}"
            )));
        }
        let own = filters_of(
            backend_ref.filters.as_deref().unwrap_or(&[]),
            &format!("{field}.filters"),
            None,
            false,
        )?;
        let (target, service) = backend(cx, backend_ref, &field, &mut unresolved);
        total += weight as u64;
        backends.push(WeightedBackend {
            weight: weight as u32,
            upto: total,
            target,
            request: own.request,
            response: own.response,
            owner: Arc::new(Owner::new(
                Arc::from(cx.namespace),
                Arc::from(cx.route),
                Arc::from(service),
            )),
        });
    }
    let none = if refs.is_empty() {
        Some(Arc::from("the rule has no backendRefs"))
    } else if total == 0 {
        Some(Arc::from("every backendRef of the rule has weight 0"))
    } else {
        None
    };
    let policy = rule_filters.host.map(|host| {
        Arc::new(Policy {
            upstream_vhost: Some(host),
            ..Policy::default()
        })
    });
    Ok(Compiled {
        matches,
        action: Action::Forward(Box::new(ForwardTo {
            request: rule_filters.request,
            response: rule_filters.response,
            path: rule_filters.path,
            policy,
            backends,
            total,
            none,
        })),
        unresolved,
    })
}

/// A GRPCRoute rule: its matches become paths (`/service/method`) matched only for gRPC
/// requests; filters are the header modifiers; backends as for HTTPRoute.
pub fn compile_grpc(
    cx: &mut Context<'_, '_>,
    rule: &GrpcRouteRule,
    at: &str,
) -> Result<Compiled, Refused> {
    if rule.session_persistence.is_some() {
        return Err(unsupported(format!(
            "{at}.sessionPersistence: session persistence is in Gateway API's experimental channel, which wicket does not serve"
        )));
    }
    let mut matches = Vec::new();
    for (i, m) in rule.matches.as_deref().unwrap_or(&[]).iter().enumerate() {
        let field = format!("{at}.matches[{i}]");
        let path = grpc_path(m.method.as_ref(), &field)?;
        let spec = HttpRouteMatch {
            headers: m.headers.clone(),
            ..HttpRouteMatch::default()
        };
        let (_, conditions) = one_match(&spec, &field)?;
        matches.push((path, conditions));
    }
    if matches.is_empty() {
        matches.push((PathMatch::Prefix("/".into()), None));
    }
    let filters = rule.filters.as_deref().unwrap_or(&[]);
    for (i, f) in filters.iter().enumerate() {
        if matches!(f.type_.as_str(), "RequestRedirect" | "URLRewrite") {
            return Err(unsupported(format!(
                "{at}.filters[{i}].type {} is not a GRPCRoute filter",
                f.type_
            )));
        }
    }
    let rule_filters = filters_of(filters, &format!("{at}.filters"), None, true)?;
    let refs = rule.backend_refs.as_deref().unwrap_or(&[]);
    forward(cx, refs, at, rule_filters, matches)
}

/// A gRPC method match as a path: service and method → Exact `/service/method`; service
/// only → PathPrefix `/service`; method only → any service; `RegularExpression` → a path
/// pattern of both.
fn grpc_path(m: Option<&GrpcMethodMatch>, at: &str) -> Result<PathMatch, Refused> {
    let Some(m) = m else {
        return Ok(PathMatch::Prefix("/".into()));
    };
    let service = m.service.as_deref().filter(|s| !s.is_empty());
    let method = m.method.as_deref().filter(|s| !s.is_empty());
    match m.type_.as_deref().unwrap_or("Exact") {
        "Exact" => {
            for (what, value) in [("service", service), ("method", method)] {
                if let Some(v) = value {
                    let ok = v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
                        && !(what == "method" && v.contains('.'));
                    if !ok {
                        return Err(unsupported(format!(
                            "{at}.method.{what} {v:?} is not a gRPC {what} name"
                        )));
                    }
                }
            }
            Ok(match (service, method) {
                (Some(s), Some(m)) => PathMatch::Exact(format!("/{s}/{m}")),
                (Some(s), None) => PathMatch::Prefix(normalize_prefix(&format!("/{s}"))),
                (None, Some(m)) => PathMatch::Regex(
                    Pattern::full(&format!("/[^/]+/{}", regex::escape(m)))
                        .map_err(|why| unsupported(format!("{at}.method.method: {why}")))?,
                ),
                (None, None) => {
                    return Err(unsupported(format!(
                        "{at}.method needs a service or a method"
                    )))
                }
            })
        }
        "RegularExpression" => {
            let pattern = format!(
                "/(?:{})/(?:{})",
                service.unwrap_or("[^/]+"),
                method.unwrap_or("[^/]+")
            );
            Pattern::full(&pattern)
                .map(PathMatch::Regex)
                .map_err(|why| {
                    unsupported(format!(
                        "{at}.method is not a pair of regular expressions wicket can use: {why}"
                    ))
                })
        }
        other => Err(unsupported(format!(
            "{at}.method.type {other:?} is not one of Exact, RegularExpression"
        ))),
    }
}

fn one_match(m: &HttpRouteMatch, at: &str) -> Result<(PathMatch, Option<Conditions>), Refused> {
    let path = match &m.path {
        None => PathMatch::Prefix("/".into()),
        Some(p) => {
            let value = p.value.as_deref().unwrap_or("/");
            let kind = p.type_.as_deref().unwrap_or("PathPrefix");
            match kind {
                "Exact" | "PathPrefix" => {
                    validate_path(value).map_err(|why| unsupported(format!("{at}.path.value {value:?}: {why}")))?;
                    if kind == "Exact" {
                        PathMatch::Exact(value.to_owned())
                    } else {
                        PathMatch::Prefix(normalize_prefix(value))
                    }
                }
                "RegularExpression" => PathMatch::Regex(Pattern::full(value).map_err(|why| {
                    unsupported(format!(
                        "{at}.path.value {value:?} is not a regular expression wicket can use: {why}"
                    ))
                })?),
                other => {
                    return Err(unsupported(format!(
                        "{at}.path.type {other:?} is not one of Exact, PathPrefix, RegularExpression"
                    )))
                }
            }
        }
    };
    let mut c = Conditions::default();
    if let Some(method) = &m.method {
        if !METHODS.contains(&method.as_str()) {
            return Err(unsupported(format!(
                "{at}.method {method:?} is not one of {}",
                METHODS.join(", ")
            )));
        }
        c.method = Method::from_bytes(method.as_bytes()).ok();
    }
    let mut seen = HashSet::new();
    for (i, h) in m.headers.as_deref().unwrap_or(&[]).iter().enumerate() {
        let field = format!("{at}.headers[{i}]");
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| unsupported(format!("{field}.name {:?} is not a header name", h.name)))?;
        let want = value_match(h, &field)?;
        // The first of duplicate names counts; later ones are ignored (the spec's rule).
        if seen.insert(name.clone()) {
            c.headers.push((name, want));
        }
    }
    let mut seen = HashSet::new();
    for (i, q) in m.query_params.as_deref().unwrap_or(&[]).iter().enumerate() {
        let field = format!("{at}.queryParams[{i}]");
        if q.name.is_empty() {
            return Err(unsupported(format!("{field}.name is empty")));
        }
        let want = value_match(q, &field)?;
        if seen.insert(q.name.clone()) {
            c.query.push((q.name.clone(), want));
        }
    }
    let conditions = (c != Conditions::default()).then_some(c);
    Ok((path, conditions))
}

fn value_match(m: &ValueMatchSpec, at: &str) -> Result<ValueMatch, Refused> {
    match m.type_.as_deref().unwrap_or("Exact") {
        "Exact" => Ok(ValueMatch::Exact(m.value.clone())),
        "RegularExpression" => Pattern::full(&m.value)
            .map(ValueMatch::Regex)
            .map_err(|why| {
                unsupported(format!(
                    "{at}.value {:?} is not a regular expression wicket can use: {why}",
                    m.value
                ))
            }),
        other => Err(unsupported(format!(
            "{at}.type {other:?} is not one of Exact, RegularExpression"
        ))),
    }
}

/// A path value as the API server accepts it: the checks of an Ingress `Exact` path
/// (absolute, no `//` or dot segments, no query or fragment), and at most 1,024 characters.
fn validate_path(value: &str) -> Result<(), String> {
    if value.len() > 1024 {
        return Err("is longer than 1024 characters".into());
    }
    validate::path(Some(value), crate::model::PathType::Exact, false).map(|_| ())
}

#[derive(Default)]
struct Filters {
    request: Option<HeaderEdits>,
    response: Option<HeaderEdits>,
    redirect: Option<RedirectTo>,
    host: Option<HeaderValue>,
    path: Option<PathRewrite>,
}

/// The filters of a rule (`rule`) or of a backendRef; `prefix` is the rule's only
/// PathPrefix match, which ReplacePrefixMatch needs.
fn filters_of(
    filters: &[HttpRouteFilter],
    at: &str,
    prefix: Option<&str>,
    rule: bool,
) -> Result<Filters, Refused> {
    let mut out = Filters::default();
    let mut seen = HashSet::new();
    for (i, f) in filters.iter().enumerate() {
        let field = format!("{at}[{i}]");
        if !seen.insert(f.type_.as_str()) {
            return Err(unsupported(format!(
                "{field}: a second {} filter (each type may appear once)",
                f.type_
            )));
        }
        match f.type_.as_str() {
            "RequestHeaderModifier" => {
                out.request = Some(header_edits(
                    f.request_header_modifier.as_ref(),
                    &format!("{field}.requestHeaderModifier"),
                )?)
            }
            "ResponseHeaderModifier" => {
                out.response = Some(header_edits(
                    f.response_header_modifier.as_ref(),
                    &format!("{field}.responseHeaderModifier"),
                )?)
            }
            "RequestRedirect" if rule => {
                let Some(r) = &f.request_redirect else {
                    return Err(unsupported(format!("{field}: type RequestRedirect without requestRedirect")));
                };
                let scheme = match r.scheme.as_deref() {
                    None => None,
                    Some("http") => Some("http"),
                    Some("https") => Some("https"),
                    Some(other) => {
                        return Err(unsupported(format!(
                            "{field}.requestRedirect.scheme {other:?} is not http or https"
                        )))
                    }
                };
                let hostname = match r.hostname.as_deref() {
                    None => None,
                    Some(h) => Some(plain_hostname(h).map_err(|why| {
                        unsupported(format!("{field}.requestRedirect.hostname {h:?}: {why}"))
                    })?),
                };
                let port = match r.port {
                    None => None,
                    Some(p) => Some(u16::try_from(p).ok().filter(|&p| p > 0).ok_or_else(|| {
                        unsupported(format!("{field}.requestRedirect.port {p} is not a port number"))
                    })?),
                };
                let status = match r.status_code.unwrap_or(302) {
                    s @ (301 | 302 | 303 | 307 | 308) => s as u16,
                    other => {
                        return Err(unsupported(format!(
                            "{field}.requestRedirect.statusCode {other} is not one of 301, 302, 303, 307, 308"
                        )))
                    }
                };
                let path = match &r.path {
                    None => None,
                    Some(p) => Some(path_modifier(p, prefix, &format!("{field}.requestRedirect.path"))?),
                };
                out.redirect = Some(RedirectTo {
                    scheme,
                    hostname,
                    port,
                    path,
                    status,
                });
            }
            "URLRewrite" if rule => {
                let Some(r) = &f.url_rewrite else {
                    return Err(unsupported(format!("{field}: type URLRewrite without urlRewrite")));
                };
                if let Some(h) = r.hostname.as_deref() {
                    let h = plain_hostname(h).map_err(|why| {
                        unsupported(format!("{field}.urlRewrite.hostname {h:?}: {why}"))
                    })?;
                    out.host = HeaderValue::from_str(&h).ok();
                }
                if let Some(p) = &r.path {
                    out.path = Some(path_modifier(p, prefix, &format!("{field}.urlRewrite.path"))?);
                }
            }
            "RequestRedirect" | "URLRewrite" => {
                return Err(unsupported(format!(
                    "{field}: {} on a backendRef is not supported by wicket (use it on the rule)",
                    f.type_
                )))
            }
            "RequestMirror" | "CORS" | "ExtensionRef" | "ExternalAuth" => {
                return Err(unsupported(format!(
                    "{field}: the {} filter is not supported by wicket yet; the rule is not served rather than served without it",
                    f.type_
                )))
            }
            other => {
                return Err(unsupported(format!(
                    "{field}.type {other:?} is not a filter type wicket knows"
                )))
            }
        }
    }
    if out.redirect.is_some() && (out.host.is_some() || out.path.is_some()) {
        return Err(Refused {
            reason: "IncompatibleFilters",
            message: format!("{at}: RequestRedirect and URLRewrite cannot be used together"),
        });
    }
    Ok(out)
}

fn plain_hostname(h: &str) -> Result<String, String> {
    let lower = h.to_ascii_lowercase();
    match validate::host(&lower)? {
        crate::model::HostMatch::Exact(h) => Ok(h),
        _ => Err("must be a DNS name without a wildcard".into()),
    }
}

fn path_modifier(p: &PathModifier, prefix: Option<&str>, at: &str) -> Result<PathRewrite, Refused> {
    match p.type_.as_str() {
        "ReplaceFullPath" => {
            let to = p.replace_full_path.clone().unwrap_or_else(|| "/".into());
            validate_path(&to)
                .map_err(|why| unsupported(format!("{at}.replaceFullPath {to:?}: {why}")))?;
            Ok(PathRewrite::Full(to))
        }
        "ReplacePrefixMatch" => {
            let with = p.replace_prefix_match.clone().unwrap_or_default();
            if !with.is_empty() {
                validate_path(&with).map_err(|why| {
                    unsupported(format!("{at}.replacePrefixMatch {with:?}: {why}"))
                })?;
            }
            let Some(matched) = prefix else {
                return Err(unsupported(format!(
                    "{at}: ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix"
                )));
            };
            Ok(PathRewrite::Prefix {
                matched: matched.to_owned(),
                with,
            })
        }
        other => Err(unsupported(format!(
            "{at}.type {other:?} is not ReplaceFullPath or ReplacePrefixMatch"
        ))),
    }
}

fn header_edits(f: Option<&HeaderFilter>, at: &str) -> Result<HeaderEdits, Refused> {
    let Some(f) = f else {
        return Err(unsupported(format!("{at} is missing")));
    };
    let mut edits = HeaderEdits::default();
    let mut names = HashSet::new();
    let mut name = |n: &str, field: &str| -> Result<HeaderName, Refused> {
        let parsed = HeaderName::from_bytes(n.as_bytes())
            .map_err(|_| unsupported(format!("{field}: {n:?} is not a header name")))?;
        if !names.insert(parsed.clone()) {
            return Err(unsupported(format!(
                "{field}: header {n:?} is named twice in one filter"
            )));
        }
        Ok(parsed)
    };
    let value = |v: &str, field: &str| {
        HeaderValue::from_str(v)
            .map_err(|_| unsupported(format!("{field}: {v:?} is not a header value")))
    };
    for (i, h) in f.set.as_deref().unwrap_or(&[]).iter().enumerate() {
        let field = format!("{at}.set[{i}]");
        edits
            .set
            .push((name(&h.name, &field)?, value(&h.value, &field)?));
    }
    for (i, h) in f.add.as_deref().unwrap_or(&[]).iter().enumerate() {
        let field = format!("{at}.add[{i}]");
        edits
            .add
            .push((name(&h.name, &field)?, value(&h.value, &field)?));
    }
    for (i, n) in f.remove.as_deref().unwrap_or(&[]).iter().enumerate() {
        edits.remove.push(name(n, &format!("{at}.remove[{i}]"))?);
    }
    Ok(edits)
}

/// A backendRef to its target; an unusable one is recorded in `unresolved` and answers
/// its share with 500. Returns the Service name for metrics.
fn backend(
    cx: &mut Context<'_, '_>,
    r: &HttpBackendRef,
    at: &str,
    unresolved: &mut Vec<Unresolved>,
) -> (BackendTarget, String) {
    let mut fail = |reason: &'static str, message: String| {
        let target = BackendTarget::Invalid(Arc::from(message.as_str()));
        unresolved.push(Unresolved { reason, message });
        target
    };
    let group = r.group.as_deref().unwrap_or(GROUP_CORE);
    let kind = r.kind.as_deref().unwrap_or("Service");
    if group != GROUP_CORE || kind != "Service" {
        let shown = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        return (
            fail(
                "InvalidKind",
                format!("{at}: {shown} is not a kind wicket can send requests to (Service only)"),
            ),
            r.name.clone(),
        );
    }
    let namespace = r.namespace.as_deref().unwrap_or(cx.namespace);
    if namespace != cx.namespace
        && !granted(
            cx.index,
            GROUP,
            cx.kind,
            cx.namespace,
            GROUP_CORE,
            "Service",
            namespace,
            &r.name,
        )
    {
        return (
            fail(
                "RefNotPermitted",
                format!(
                    "{at}: Service {namespace}/{} is in another namespace and no ReferenceGrant there allows {} from {}",
                    r.name, cx.kind, cx.namespace
                ),
            ),
            r.name.clone(),
        );
    }
    let Some(port) = r
        .port
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p > 0)
    else {
        return (
            fail(
                "BackendNotFound",
                format!("{at}: a Service backendRef needs a port"),
            ),
            r.name.clone(),
        );
    };
    // Borrowed from the index for the resolver's cache.
    let Some((ns, name)) = cx
        .index
        .services
        .get_key_value(&crate::controller::index::Key::new(namespace, &r.name))
        .map(|(k, _)| (k.namespace.as_str(), k.name.as_str()))
    else {
        return (
            fail(
                "BackendNotFound",
                format!("{at}: Service {namespace}/{} not found", r.name),
            ),
            r.name.clone(),
        );
    };
    let resolved = cx.services.resolve(ns, name, PortRef::Number(port));
    match resolved.target {
        Target::Backend(b) => (BackendTarget::Backend(b), r.name.clone()),
        Target::Unavailable(why) => {
            let reason = match resolved.problem.as_ref().map(|(r, _)| *r) {
                Some(Reason::ExternalNameDisabled) => "UnsupportedProtocol",
                _ => "BackendNotFound",
            };
            (fail(reason, format!("{at}: {why}")), r.name.clone())
        }
    }
}
