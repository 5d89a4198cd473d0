//! Translation: `Index` + `Settings` → `Snapshot`, a pure and deterministic function.
//!
//! It never fails as a whole. Anything invalid or dangling — a bad host, a path the API
//! server would refuse, a missing Service or port, a conflicting rule, a broken Secret —
//! becomes a [`Problem`] naming the object, and every valid route is still built.
//!
//! Precedence is decided here by the order routes are added: Ingresses oldest first
//! (`creationTimestamp`, then namespace/name), so the older claimant of a host + path wins.

pub mod annotations;
mod gateway;
mod service;
mod tls;
pub mod validate;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use k8s_openapi::jiff::Timestamp;

use super::class::{Classes, Decision};
use super::index::Index;
use super::Settings;
use crate::model::{
    check_pattern, AppRoot, Canary, CanaryRule, DefaultBackend, HostMatch, Ignored,
    IngressAnnotations, ObjectRef, Owner, PassthroughHost, PathType, Policy, PortRef, Problem,
    Reason, Rejected, Rewrite, RewriteError, Route, RouteTableBuilder, Snapshot, Target,
    TlsBinding, TlsHost, TlsTableBuilder,
};

pub use service::SERVICE_NAME_LABEL;
pub use tls::TLS_SECRET_TYPE;

/// Builds the snapshot (generation 0: the publisher numbers it).
pub fn build(index: &Index, settings: &Settings) -> Snapshot {
    build_reusing(index, settings, None)
}

/// [`build`], sharing with `previous` (the snapshot in force) the parts that come out the
/// same, so a rebuild after an edit keeps the memory of what did not change.
pub fn build_reusing(index: &Index, settings: &Settings, previous: Option<&Snapshot>) -> Snapshot {
    let mut t = Translator {
        settings,
        index,
        problems: BTreeSet::new(),
        services: service::Resolver::new(index, settings),
        secrets: tls::SecretChecker::new(index),
        table: RouteTableBuilder::new(),
        tls: TlsTableBuilder::new(),
        annotations: Vec::new(),
        canaries: Vec::new(),
    };

    let classes = Classes::new(index, settings);
    let mut ours = Vec::new();
    let mut ignored = Vec::new();
    let mut class_problems = Vec::new();
    for ingress in index.ingresses.values() {
        match classes.decide(ingress, &mut class_problems) {
            Decision::Ours => ours.push(ingress.as_ref()),
            Decision::NotOurs(reason) => ignored.push(Ignored {
                ingress: ingress_ref(ingress),
                reason,
            }),
        }
    }
    t.problems.extend(class_problems);
    ours.sort_by(|a, b| age_key(a).cmp(&age_key(b)));
    for ingress in ours {
        t.ingress(ingress);
    }
    // Canaries attach to the routes of the main Ingresses, so they come after all of them.
    for (ingress, rule, policy, source) in std::mem::take(&mut t.canaries) {
        t.canary(ingress, rule, policy, &source);
    }
    t.global_default_backend();
    t.default_certificate();
    t.tls_hosts_without_rules();
    let (gateway, gateway_status) = t.gateway_api();

    let Translator {
        mut problems,
        services,
        table,
        tls,
        mut annotations,
        ..
    } = t;
    annotations.sort();
    let (table, literal_paths) = table.build_reusing(previous.map(|p| &p.table));
    for (ingress, reason, message) in literal_paths {
        problems.insert(Problem::new((*ingress).clone(), reason, message));
    }
    if let Some(gateway) = gateway.as_deref() {
        problems.extend(gateway::shadowed_ingress_rules(&table, gateway));
    }
    problems.extend(services.into_problems());
    problems.extend(index.source_problems.iter().cloned());
    ignored.sort();
    Snapshot {
        generation: 0,
        published_at: None,
        table,
        tls: tls.build(),
        problems: problems.into_iter().collect(),
        ignored,
        annotations,
        locality: settings.locality.clone(),
        gateway,
        gateway_status,
    }
}

/// The Service a target names, for metric and log names ("" when unavailable).
fn service_of(target: &Target) -> Arc<str> {
    match target {
        Target::Backend(backend) => backend.service.clone(),
        Target::Unavailable(_) => Arc::from(""),
    }
}

/// Oldest first; objects without a creation time (hand-written manifests) after those with
/// one; then namespace/name.
fn age_key(ingress: &Ingress) -> (bool, Option<Timestamp>, &str, &str) {
    let created = ingress.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (
        created.is_none(),
        created,
        ingress.metadata.namespace.as_deref().unwrap_or(""),
        ingress.metadata.name.as_deref().unwrap_or(""),
    )
}

fn ingress_ref(ingress: &Ingress) -> ObjectRef {
    ObjectRef::new(
        "Ingress",
        ingress.metadata.namespace.as_deref(),
        ingress.metadata.name.as_deref().unwrap_or(""),
    )
}

struct Translator<'a> {
    settings: &'a Settings,
    index: &'a Index,
    problems: BTreeSet<Problem>,
    services: service::Resolver<'a>,
    secrets: tls::SecretChecker<'a>,
    table: RouteTableBuilder,
    tls: TlsTableBuilder,
    annotations: Vec<IngressAnnotations>,
    /// Canary Ingresses (oldest first), their rule and traffic policy, attached last.
    canaries: Vec<CanaryIngress<'a>>,
}

type CanaryIngress<'a> = (&'a Ingress, CanaryRule, Option<Arc<Policy>>, Arc<ObjectRef>);

impl<'a> Translator<'a> {
    fn problem(&mut self, object: &ObjectRef, reason: Reason, message: String) {
        self.problems
            .insert(Problem::new(object.clone(), reason, message));
    }

    fn ingress(&mut self, ingress: &'a Ingress) {
        let source = Arc::new(ingress_ref(ingress));
        let namespace = ingress.metadata.namespace.as_deref().unwrap_or("default");
        let Some(spec) = ingress.spec.as_ref() else {
            self.problem(&source, Reason::InvalidIngress, "has no spec".into());
            return;
        };
        let mut annotation_problems = Vec::new();
        let mut options = annotations::read(ingress, &source, &mut annotation_problems);
        self.problems.extend(annotation_problems);
        self.custom_headers(namespace, &mut options, &source);
        self.basic_auth(namespace, &mut options, &source);
        self.auth_proxy_headers(namespace, &mut options, &source);
        self.client_auth(
            namespace,
            spec.rules.as_deref().unwrap_or(&[]),
            &mut options,
            &source,
        );
        if let Some((limits, exempt)) = options.limits.take() {
            // One zone per Ingress, as ingress-nginx (`<ns>_<name>_<uid>`).
            let owner = format!(
                "{namespace}/{}/{}",
                ingress.metadata.name.as_deref().unwrap_or(""),
                ingress.metadata.uid.as_deref().unwrap_or("")
            );
            let zone = self.settings.limit_zones.zone(&owner, &limits);
            let mut policy = options.policy.as_deref().cloned().unwrap_or_default();
            policy.rate_limit = Some(crate::model::RateLimit {
                limits,
                exempt,
                zone,
            });
            options.policy = Some(Arc::new(policy));
        }
        if options.ssl_passthrough && !self.settings.ssl_passthrough {
            self.overrule(
                &mut options,
                &source,
                "ssl-passthrough",
                crate::model::Outcome::Unsupported,
                Reason::UnsupportedAnnotation,
                "ssl-passthrough needs --enable-ssl-passthrough (as in ingress-nginx); TLS to its hosts is terminated as usual".to_owned(),
            );
            options.ssl_passthrough = false;
        }
        self.error_pages(namespace, &mut options, &source);
        if let Some(mut report) = options.report.clone() {
            report.refused = if !options.snippets.is_empty() && !self.settings.ignore_snippets {
                Some(format!(
                    "not served: it carries {} (snippets are never supported; --ignore-snippets serves it without them)",
                    options.snippets.join(", ")
                ))
            } else {
                options
                    .blocked
                    .as_ref()
                    .map(|why| format!("its routes answer 503: {why}"))
            };
            self.annotations.push(report);
        }
        if !options.snippets.is_empty() && !self.settings.ignore_snippets {
            self.problem(
                &source,
                Reason::SnippetRefused,
                format!(
                    "carries {}: snippets are never supported (raw configuration text is how ingress-nginx became an injection target); the Ingress is not served, as ingress-nginx does by default. Express what the snippet did with annotations wicket honours, or run with --ignore-snippets to serve the Ingress without it",
                    options.snippets.join(", ")
                ),
            );
            return;
        }
        if let Some(rule) = options.canary {
            // Never served alone: it only adds a backend to the main Ingress's routes.
            self.canaries.push((ingress, rule, options.policy, source));
            return;
        }
        let rules = spec.rules.as_deref().unwrap_or(&[]);
        if rules.is_empty() && spec.default_backend.is_none() {
            self.problem(
                &source,
                Reason::InvalidIngress,
                "has neither rules nor spec.defaultBackend; it routes nothing".into(),
            );
        }

        // Metric and log names of this Ingress's routes.
        let owner_ns: Arc<str> = Arc::from(namespace);
        let owner_ingress: Arc<str> = Arc::from(source.name.as_str());
        // A backend that cannot be used still names the Service it asked for.
        let owner = |target: &Target, asked: &IngressBackend| {
            let service = match (target, &asked.service) {
                (Target::Unavailable(_), Some(s)) => Arc::from(s.name.as_str()),
                _ => service_of(target),
            };
            Arc::new(Owner::new(owner_ns.clone(), owner_ingress.clone(), service))
        };
        // An Ingress whose annotations cannot be honoured safely answers 503 on all it routes,
        // and on the paths of its hosts no rule matches, which get its policy (§A4).
        if let Some(why) = &options.blocked {
            let mut policy = options.policy.as_deref().cloned().unwrap_or_default();
            policy.blocked = Some(Arc::from(why.as_str()));
            options.policy = Some(Arc::new(policy));
        }
        let blocked = |target: Target| match &options.blocked {
            Some(why) => Target::Unavailable(Arc::from(why.as_str())),
            None => target,
        };
        if let Some(backend) = &spec.default_backend {
            let target = blocked(self.target(
                namespace,
                backend,
                &source,
                "spec.defaultBackend",
                options.service_upstream,
            ));
            let candidate = DefaultBackend {
                ingress: Some(source.clone()),
                owner: owner(&target, backend),
                target,
                protocol: options.protocol,
                policy: options.policy.clone(),
            };
            if let Err(existing) = self.table.set_default_backend(candidate) {
                let owner = existing
                    .ingress
                    .as_ref()
                    .map(|o| o.to_string())
                    .unwrap_or_else(|| "--default-backend-service".into());
                self.problem(
                    &source,
                    Reason::DefaultBackendConflict,
                    format!("spec.defaultBackend is ignored: {owner} (older) already sets the default backend"),
                );
            }
        }

        for (ri, rule) in rules.iter().enumerate() {
            let Some(host) = self.rule_host(rule.host.as_deref(), &source, ri) else {
                continue;
            };
            self.host_options(&host, &options.hosts, &source, ri);
            let Some(http) = &rule.http else {
                // A host without paths still claims the host: its requests go to the
                // default backend, never to the rules without a host.
                self.table.ensure_host(host);
                continue;
            };
            for (pi, path) in http.paths.iter().enumerate() {
                let field = format!("spec.rules[{ri}].http.paths[{pi}]");
                let Some(path_type) = self.path_type(&path.path_type, &source, &field) else {
                    continue;
                };
                let regex_paths = options.use_regex || options.rewrite_target.is_some();
                let path_value = match validate::path(path.path.as_deref(), path_type, regex_paths)
                {
                    Ok(p) => p,
                    Err(why) => {
                        self.problem(
                            &source,
                            Reason::InvalidPath,
                            format!("{field}: {why}; path ignored"),
                        );
                        continue;
                    }
                };
                let Some((rewrite, regex)) = self.rewrite(&options, &path_value, &source, &field)
                else {
                    continue;
                };
                let target = blocked(self.target(
                    namespace,
                    &path.backend,
                    &source,
                    &field,
                    options.service_upstream,
                ));
                let route = Route {
                    path: path_value,
                    path_type,
                    ingress: source.clone(),
                    owner: owner(&target, &path.backend),
                    target,
                    ssl_redirect: options.ssl_redirect,
                    protocol: options.protocol,
                    policy: options.policy.clone(),
                    rewrite,
                    regex,
                    canary: None,
                };
                let message = match self.table.add(host.clone(), route) {
                    Ok(()) => None,
                    Err(Rejected { route, existing }) => {
                        let what = format!(
                            "{field}: {} {} on host {host}",
                            path_type.as_str(),
                            route.path
                        );
                        Some(if existing.ingress == source {
                            format!("{what} is listed twice in this Ingress; the first one is used")
                        } else {
                            format!(
                                "{what} is already routed by {} (older); this rule is ignored",
                                existing.ingress
                            )
                        })
                    }
                };
                if let Some(message) = message {
                    self.problem(&source, Reason::PathConflict, message);
                }
            }
        }

        if options.ssl_passthrough {
            self.ssl_passthrough(rules, namespace, &options, &source);
        }
        self.tls_sections(ingress, namespace, &source, options.ssl_redirect);
    }

    /// An annotation found unusable only here, where other objects are known: a Problem,
    /// and its outcome in the Ingress's report.
    /// An access annotation that cannot be used: its outcome, a Problem, and the Ingress's
    /// routes answer 503 (the first reason given stays).
    fn block(
        &mut self,
        options: &mut annotations::Options,
        source: &ObjectRef,
        name: &str,
        reason: Reason,
        message: String,
    ) {
        self.overrule(
            options,
            source,
            name,
            crate::model::Outcome::Blocks,
            reason,
            message.clone(),
        );
        if options.blocked.is_none() {
            options.blocked = Some(message);
        }
    }

    fn overrule(
        &mut self,
        options: &mut annotations::Options,
        source: &ObjectRef,
        name: &str,
        outcome: crate::model::Outcome,
        reason: Reason,
        message: String,
    ) {
        if let Some(report) = options.report.as_mut() {
            let suffix = format!("/{name}");
            for a in report
                .annotations
                .iter_mut()
                .filter(|a| a.name.ends_with(&suffix))
            {
                a.outcome = outcome;
                a.note.clone_from(&message);
            }
        }
        self.problem(source, reason, message);
    }

    /// `ssl-passthrough`: each exact host's `/` rule takes the host's TLS connections,
    /// unterminated (INGRESS-NGINX.md §C2).
    /// An Ingress whose routes are blocked (an access guard wicket cannot honour) has its
    /// connections refused too, never relayed around the guard.
    fn ssl_passthrough(
        &mut self,
        rules: &'a [k8s_openapi::api::networking::v1::IngressRule],
        namespace: &'a str,
        options: &annotations::Options,
        source: &Arc<ObjectRef>,
    ) {
        let mut reported_guard = false;
        for (ri, rule) in rules.iter().enumerate() {
            let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) else {
                continue;
            };
            let host = match validate::host(host) {
                Ok(HostMatch::Exact(h)) => h,
                Ok(_) => {
                    self.problem(
                        source,
                        Reason::UnsupportedAnnotation,
                        format!("ssl-passthrough: spec.rules[{ri}].host {host} is a wildcard; only exact hosts are passed through, this one is served as usual"),
                    );
                    continue;
                }
                Err(_) => continue,
            };
            let root = rule.http.as_ref().and_then(|http| {
                http.paths.iter().enumerate().find(|(_, p)| {
                    matches!(p.path.as_deref(), Some("/"))
                        || (p.path.as_deref().unwrap_or("").is_empty()
                            && p.path_type == "ImplementationSpecific")
                })
            });
            let Some((pi, root)) = root else {
                self.problem(
                    source,
                    Reason::UnsupportedAnnotation,
                    format!("ssl-passthrough: host {host} has no / rule, whose backend would take its TLS connections; served as usual"),
                );
                continue;
            };
            let field = format!("spec.rules[{ri}].http.paths[{pi}]");
            // A relayed connection is never seen as HTTP nor terminated: a guard that checks
            // requests (passwords, an auth service, request limits) or the client's
            // certificate cannot apply, so the host's connections are refused rather than
            // relayed around it (ingress-nginx relays).
            let http_guard = options
                .policy
                .as_deref()
                .and_then(Policy::request_guard)
                .or(options.client_auth.as_ref().map(|_| "auth-tls-secret"));
            if let Some(guard) = http_guard {
                if !reported_guard {
                    reported_guard = true;
                    self.problem(
                        source,
                        Reason::InvalidAnnotation,
                        format!("ssl-passthrough with {guard}: a relayed TLS connection carries no request wicket could check; the hosts' connections are refused rather than relayed unchecked"),
                    );
                }
            }
            let target = match (&options.blocked, http_guard) {
                (Some(why), _) => Target::Unavailable(Arc::from(why.as_str())),
                (None, Some(guard)) => {
                    Target::Unavailable(Arc::from(format!("ssl-passthrough cannot honour {guard}")))
                }
                (None, None) => self.target(namespace, &root.backend, source, &field, false),
            };
            let to = PassthroughHost {
                ingress: source.clone(),
                target,
                source: options.policy.as_ref().and_then(|p| p.source.clone()),
            };
            if let Err(existing) = self.table.add_passthrough(host.clone(), to) {
                let message = format!(
                    "ssl-passthrough: host {host} is already passed through by {} (older); ignored",
                    existing.ingress
                );
                self.problem(source, Reason::PathConflict, message);
            }
        }
    }

    /// `custom-headers`: the ConfigMap's data become the routes' response headers. As in
    /// ingress-nginx, a ConfigMap that is missing, in another namespace, or with a header
    /// that is malformed or not in `--allowed-response-headers` makes the Ingress's routes
    /// answer 503 (with a Problem) rather than serve without the headers.
    fn custom_headers(
        &mut self,
        namespace: &str,
        options: &mut annotations::Options,
        source: &ObjectRef,
    ) {
        let Some(value) = options.custom_headers.clone() else {
            return;
        };
        let headers = match self.read_header_map(
            namespace,
            &value,
            Some(&self.settings.allowed_response_headers),
        ) {
            Ok(headers) => headers,
            Err(why) => {
                let message =
                    format!("custom-headers {value:?}: {why}; the Ingress's routes answer 503");
                self.block(
                    options,
                    source,
                    "custom-headers",
                    Reason::InvalidAnnotation,
                    message.clone(),
                );
                return;
            }
        };
        let mut policy = options.policy.as_deref().cloned().unwrap_or_default();
        policy.response_headers = headers;
        options.policy = Some(Arc::new(policy));
    }

    /// `auth-type: basic`: the users of the `auth-secret` go into the policy. A Secret that
    /// is missing, in another namespace, without the `auth` key, or with a line wicket
    /// cannot check makes the routes answer 503 (INGRESS-NGINX.md §A2), never open.
    fn basic_auth(
        &mut self,
        namespace: &str,
        options: &mut annotations::Options,
        source: &ObjectRef,
    ) {
        let Some(spec) = options.basic_auth.clone() else {
            return;
        };
        let (table, secret) = match self.read_users(namespace, &spec) {
            Ok(found) => found,
            Err(why) => {
                let message = format!(
                    "auth-secret {:?}: {why}; the Ingress's routes answer 503 rather than serve without the password check",
                    spec.secret
                );
                self.block(
                    options,
                    source,
                    "auth-secret",
                    Reason::AuthSecretInvalid,
                    message.clone(),
                );
                return;
            }
        };
        let challenge = http::HeaderValue::try_from(format!("Basic realm=\"{}\"", spec.realm))
            .unwrap_or_else(|_| http::HeaderValue::from_static("Basic realm=\"\""));
        let mut policy = options.policy.as_deref().cloned().unwrap_or_default();
        policy.basic_auth = Some(crate::model::BasicAuth {
            secret,
            realm: spec.realm,
            challenge,
            table: Arc::new(table),
        });
        options.policy = Some(Arc::new(policy));
    }

    /// `auth-tls-*`: the client-certificate settings of the Ingress's rule hosts (the
    /// oldest Ingress of a host that sets them wins). A CA Secret wicket cannot use makes
    /// the hosts and the Ingress's routes answer 503.
    fn client_auth(
        &mut self,
        namespace: &str,
        rules: &[k8s_openapi::api::networking::v1::IngressRule],
        options: &mut annotations::Options,
        source: &Arc<ObjectRef>,
    ) {
        let Some(spec) = options.client_auth.clone() else {
            return;
        };
        let (ns, name) = spec
            .secret
            .split_once('/')
            .unwrap_or((namespace, &spec.secret));
        let chain = if ns == namespace {
            match self
                .index
                .secret(&crate::controller::index::Key::new(ns, name))
            {
                Some(secret) => {
                    tls::client_ca(secret, &rustls::crypto::aws_lc_rs::default_provider())
                        .map_err(|why| format!("Secret {ns}/{name} {why}"))
                }
                None => Err(format!("Secret {ns}/{name} not found")),
            }
        } else {
            Err(format!(
                "only a Secret of the Ingress's own namespace ({namespace}) can be used"
            ))
        };
        let (checks, broken) = match chain {
            Ok(chain) => (
                Some(crate::model::Checks {
                    handshake: Arc::new(crate::model::AskForCertificate(chain.clone())),
                    chain,
                    match_cn: spec
                        .match_cn
                        .as_deref()
                        .and_then(|p| regex::Regex::new(p).ok()),
                }),
                None,
            ),
            Err(why) => {
                let message = format!(
                    "auth-tls-secret {:?}: {why}; the Ingress's hosts answer 503 rather than serve without the certificate check",
                    spec.secret
                );
                self.block(
                    options,
                    source,
                    "auth-tls-secret",
                    Reason::AuthSecretInvalid,
                    message.clone(),
                );
                (None, Some(Arc::from(message.as_str())))
            }
        };
        let auth = Arc::new(crate::model::ClientAuth {
            id: crate::model::ClientAuth::next_id(),
            ingress: (**source).clone(),
            secret: format!("{ns}/{name}"),
            verify: spec.verify,
            depth: spec.depth,
            pass_certificate: spec.pass_certificate,
            match_cn: spec.match_cn,
            error_page: spec.error_page,
            broken,
            checks,
        });
        for rule in rules {
            let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) else {
                continue;
            };
            let Ok(host) = validate::host(host) else {
                continue;
            };
            if let Err(existing) = self.tls.add_client_auth(host.clone(), auth.clone()) {
                let message = format!(
                    "auth-tls-secret for host {host} is already set by {} (older, Secret {}); ignored for this Ingress",
                    existing.ingress, existing.secret
                );
                self.problem(source, Reason::TLSHostConflict, message);
            }
        }
    }

    fn read_users(
        &self,
        namespace: &str,
        spec: &annotations::BasicAuthSpec,
    ) -> Result<(crate::model::Users, String), String> {
        let (ns, name) = spec
            .secret
            .split_once('/')
            .unwrap_or((namespace, &spec.secret));
        if ns != namespace {
            return Err(format!(
                "only a Secret of the Ingress's own namespace ({namespace}) can be used"
            ));
        }
        let key = crate::controller::index::Key::new(ns, name);
        let Some(secret) = self.index.secret(&key) else {
            return Err(format!("Secret {ns}/{name} not found"));
        };
        let users = if spec.map {
            let mut entries: Vec<(String, String)> = Vec::new();
            let keys: BTreeSet<&String> = secret
                .data
                .iter()
                .flatten()
                .map(|(k, _)| k)
                .chain(secret.string_data.iter().flatten().map(|(k, _)| k))
                .collect();
            for k in keys {
                let value = tls::secret_data(secret, k).unwrap_or_default();
                let Ok(value) = std::str::from_utf8(value) else {
                    return Err(format!(
                        "Secret {ns}/{name}: the value of {k:?} is not text"
                    ));
                };
                entries.push((k.clone(), value.to_owned()));
            }
            crate::model::Users::from_map(entries.iter().map(|(u, h)| (u.as_str(), h.as_str())))
        } else {
            let Some(data) = tls::secret_data(secret, "auth") else {
                return Err(format!("Secret {ns}/{name} has no key \"auth\""));
            };
            let Ok(text) = std::str::from_utf8(data) else {
                return Err(format!("Secret {ns}/{name}: \"auth\" is not text"));
            };
            crate::model::Users::from_htpasswd(text)
        };
        let users = users.map_err(|e| format!("Secret {ns}/{name}: {}", e.0))?;
        Ok((users, format!("{ns}/{name}")))
    }

    /// `auth-proxy-set-headers`: the ConfigMap's data go with every auth request. A
    /// ConfigMap that is missing, of another namespace or not made of headers makes the
    /// routes answer 503: the auth service would not get what it was set up to get.
    fn auth_proxy_headers(
        &mut self,
        namespace: &str,
        options: &mut annotations::Options,
        source: &ObjectRef,
    ) {
        let Some(value) = options.auth_proxy_headers.clone() else {
            return;
        };
        let Some(external) = options
            .policy
            .as_ref()
            .and_then(|p| p.external_auth.clone())
        else {
            return;
        };
        match self.read_header_map(namespace, &value, None) {
            Ok(headers) => {
                let mut external = (*external).clone();
                external.extra_headers = headers;
                let mut policy = options.policy.as_deref().cloned().unwrap_or_default();
                policy.external_auth = Some(Arc::new(external));
                options.policy = Some(Arc::new(policy));
            }
            Err(why) => {
                let message = format!(
                    "auth-proxy-set-headers {value:?}: {why}; the Ingress's routes answer 503"
                );
                self.block(
                    options,
                    source,
                    "auth-proxy-set-headers",
                    Reason::InvalidAnnotation,
                    message.clone(),
                );
            }
        }
    }

    /// The headers a ConfigMap of the Ingress's namespace holds (`custom-headers`,
    /// `auth-proxy-set-headers`); with `allowed`, only those names.
    fn read_header_map(
        &self,
        namespace: &str,
        value: &str,
        allowed: Option<&[String]>,
    ) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
        let (ns, name) = value.split_once('/').unwrap_or((namespace, value));
        if ns != namespace {
            return Err(format!(
                "only a ConfigMap of the Ingress's own namespace ({namespace}) can be used"
            ));
        }
        let key = crate::controller::index::Key::new(ns, name);
        let Some(map) = self.index.config_maps.get(&key) else {
            return Err(format!("ConfigMap {ns}/{name} not found"));
        };
        let mut headers = Vec::new();
        for (k, v) in map.data.iter().flatten() {
            let name_ok = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let header = http::HeaderName::from_bytes(k.as_bytes())
                .ok()
                .filter(|_| name_ok);
            let Some(header) = header else {
                return Err(format!("ConfigMap {ns}/{name}: {k:?} is not a header name"));
            };
            let value_ok = !v.is_empty() && v.bytes().all(|b| (0x20..0x7f).contains(&b));
            let value = http::HeaderValue::from_str(v).ok().filter(|_| value_ok);
            let Some(value) = value else {
                return Err(format!(
                    "ConfigMap {ns}/{name}: the value of {k} is not a header value"
                ));
            };
            if let Some(allowed) = allowed.filter(|a| !a.iter().any(|a| a == header.as_str())) {
                return Err(format!(
                    "ConfigMap {ns}/{name}: header {k} is not in --allowed-response-headers ({})",
                    if allowed.is_empty() {
                        "empty".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                ));
            }
            headers.push((header, value));
        }
        Ok(headers)
    }

    /// `custom-http-errors` / `default-backend`: resolves the error backend into the
    /// policy: the Ingress's own Service (its first port), else `--default-backend-service`.
    /// An Ingress whose routes are blocked gets none: its 503 stays.
    fn error_pages(
        &mut self,
        namespace: &'a str,
        options: &mut annotations::Options,
        source: &ObjectRef,
    ) {
        let Some(policy) = options.policy.as_mut() else {
            return;
        };
        let Some(pages) = policy.errors.as_ref() else {
            return;
        };
        let mut pages = pages.clone();
        let named = match &pages.own_backend {
            Some(name) => Some((namespace.to_owned(), name.clone(), true)),
            None => self
                .settings
                .default_backend_service
                .as_ref()
                .map(|k| (k.namespace.clone(), k.name.clone(), false)),
        };
        if let Some((ns, name, own)) = named {
            let target = match self.services.first_port(&ns, &name) {
                Some(port) => {
                    let shown = format!("{ns}/{name}:{port}");
                    let resolved = self.services.resolve_owned(&ns, &name, port);
                    if let (Some((reason, message)), true) = (resolved.problem, own) {
                        self.problem(
                            source,
                            reason,
                            format!("default-backend: {message}; its error pages are 503"),
                        );
                    }
                    pages.from = Some(shown);
                    resolved.target
                }
                None => {
                    let message = format!("Service {ns}/{name} not found or has no ports");
                    if own {
                        self.problem(
                            source,
                            Reason::BackendNotFound,
                            format!("default-backend: {message}; its error pages are 503"),
                        );
                    }
                    pages.from = Some(format!("{ns}/{name}"));
                    Target::Unavailable(Arc::from(message.as_str()))
                }
            };
            pages.target = Some(target);
        }
        let mut changed = (**policy).clone();
        changed.errors = options.blocked.is_none().then_some(pages);
        *policy = Arc::new(changed);
    }

    /// A canary Ingress: each of its paths becomes the alternative backend of the main
    /// Ingress's route with the same host, path and `pathType` (INGRESS-NGINX.md §C4).
    fn canary(
        &mut self,
        ingress: &'a Ingress,
        rule: CanaryRule,
        own: Option<Arc<Policy>>,
        source: &Arc<ObjectRef>,
    ) {
        let namespace = ingress.metadata.namespace.as_deref().unwrap_or("default");
        let Some(spec) = ingress.spec.as_ref() else {
            self.problem(source, Reason::InvalidIngress, "has no spec".into());
            return;
        };
        if spec.default_backend.is_some() {
            self.problem(
                source,
                Reason::CanaryUnused,
                "spec.defaultBackend of a canary Ingress is not used; only its rules take traffic from the main Ingress's routes".into(),
            );
        }
        let own = own.as_deref().cloned().unwrap_or_default();
        for (ri, r) in spec.rules.as_deref().unwrap_or(&[]).iter().enumerate() {
            let Some(host) = self.rule_host(r.host.as_deref(), source, ri) else {
                continue;
            };
            let Some(http) = &r.http else { continue };
            for (pi, path) in http.paths.iter().enumerate() {
                let field = format!("spec.rules[{ri}].http.paths[{pi}]");
                let Some(path_type) = self.path_type(&path.path_type, source, &field) else {
                    continue;
                };
                let written = match path.path.as_deref() {
                    None | Some("") if path_type == PathType::ImplementationSpecific => "/",
                    p => p.unwrap_or(""),
                };
                let target = self.target(namespace, &path.backend, source, &field, false);
                let what = format!("{field}: {} {written} on host {host}", path_type.as_str());
                let Some(route) = self.table.route_mut(&host, written, path_type) else {
                    self.problem(
                        source,
                        Reason::CanaryUnused,
                        format!("{what}: no main Ingress routes this host, path and pathType, so the canary takes no traffic there"),
                    );
                    continue;
                };
                if let Some(existing) = &route.canary {
                    let message = format!(
                        "{what} already has the canary of {} (older); this one takes no traffic there",
                        existing.ingress
                    );
                    self.problem(source, Reason::CanaryUnused, message);
                    continue;
                }
                if let Target::Unavailable(why) = &route.target {
                    let message = format!(
                        "{what}: the main route cannot be served ({why}), so neither can its canary"
                    );
                    self.problem(source, Reason::CanaryUnused, message);
                    continue;
                }
                let same = matches!((&route.target, &target),
                    (Target::Backend(a), Target::Backend(b)) if a.id == b.id);
                if same {
                    let message = format!(
                        "{what}: the canary's backend is the main route's own; nothing to split"
                    );
                    self.problem(source, Reason::CanaryUnused, message);
                    continue;
                }
                // The main route's policy, with the canary's traffic settings; in sticky
                // mode the canary shares the main route's cookie affinity.
                let mut policy = route.policy.as_deref().cloned().unwrap_or_default();
                if !rule.sticky {
                    policy.affinity = own.affinity.clone();
                }
                policy.hash_by = own.hash_by.clone();
                policy.ewma = own.ewma;
                let owner = Arc::new(Owner::new(
                    Arc::from(namespace),
                    Arc::from(source.name.as_str()),
                    service_of(&target),
                ));
                route.canary = Some(Arc::new(Canary {
                    ingress: source.clone(),
                    protocol: route.protocol,
                    target,
                    rule: rule.clone(),
                    policy: (!policy.is_default()).then(|| Arc::new(policy)),
                    owner,
                }));
            }
        }
    }

    /// A rule's host (none: the rules without a host), or None (reported) when invalid.
    fn rule_host(
        &mut self,
        host: Option<&str>,
        source: &ObjectRef,
        ri: usize,
    ) -> Option<HostMatch> {
        match host {
            None | Some("") => Some(HostMatch::Any),
            Some(h) => match validate::host(h) {
                Ok(host) => Some(host),
                Err(why) => {
                    self.problem(
                        source,
                        Reason::InvalidHost,
                        format!("spec.rules[{ri}].host {h:?} {why}; rule ignored"),
                    );
                    None
                }
            },
        }
    }

    /// A path's `pathType`, or None (reported) when it is none of the three.
    fn path_type(&mut self, written: &str, source: &ObjectRef, field: &str) -> Option<PathType> {
        match written {
            "Exact" => Some(PathType::Exact),
            "Prefix" => Some(PathType::Prefix),
            "ImplementationSpecific" => Some(PathType::ImplementationSpecific),
            other => {
                self.problem(
                    source,
                    Reason::InvalidPath,
                    format!("{field}.pathType {other:?} is not one of Exact, Prefix, ImplementationSpecific; path ignored"),
                );
                None
            }
        }
    }

    /// `use-regex` and `rewrite-target` for one path: the rewrite (if the target differs
    /// from the path) and whether the path puts its host in regex mode (INGRESS-NGINX.md
    /// §B2). None: the path is no pattern wicket can use, and is left out (reported).
    fn rewrite(
        &mut self,
        options: &annotations::Options,
        path: &str,
        source: &Arc<ObjectRef>,
        field: &str,
    ) -> Option<(Option<Arc<Rewrite>>, bool)> {
        let target = options
            .rewrite_target
            .as_deref()
            .filter(|target| *target != path);
        if !options.use_regex && target.is_none() {
            return Some((None, false));
        }
        let not_a_pattern = |why: &str| {
            format!("{field}: path {path:?} is not a regular expression wicket can use ({why}); path ignored")
        };
        let Some(target) = target else {
            if let Err(why) = check_pattern(path) {
                self.problem(source, Reason::InvalidPath, not_a_pattern(&why));
                return None;
            }
            return Some((None, true));
        };
        // Rewrite::new checks the pattern too (parsing it once is what costs).
        match Rewrite::new(path, target) {
            Ok((rewrite, unknown)) => {
                if !unknown.is_empty() {
                    let groups: Vec<String> = unknown.iter().map(|n| format!("${n}")).collect();
                    self.problem(
                        source,
                        Reason::InvalidAnnotation,
                        format!(
                            "{field}: rewrite-target {target:?} uses {} but path {path:?} has no such capture group; it is filled in empty, as nginx does",
                            groups.join(", ")
                        ),
                    );
                }
                Some((Some(Arc::new(rewrite)), true))
            }
            Err(RewriteError::Pattern(why)) => {
                self.problem(source, Reason::InvalidPath, not_a_pattern(&why));
                None
            }
            // The target's variables were refused with the annotation; should it still
            // fail, the path is left out, loudly.
            Err(why) => {
                self.problem(
                    source,
                    Reason::InvalidAnnotation,
                    format!("{field}: rewrite-target {target:?}: {why}; path ignored"),
                );
                None
            }
        }
    }

    /// An Ingress's host-wide settings for one of its rule hosts: `app-root` (the oldest
    /// Ingress of the host that sets one wins), `server-alias`, `from-to-www-redirect`.
    fn host_options(
        &mut self,
        host: &HostMatch,
        options: &annotations::HostOptions,
        source: &Arc<ObjectRef>,
        ri: usize,
    ) {
        if let Some((path, keep_query)) = &options.app_root {
            let root = AppRoot {
                path: path.clone(),
                keep_query: *keep_query,
                ingress: source.clone(),
            };
            if let Err(existing) = self.table.set_app_root(host.clone(), root) {
                if existing.ingress != *source {
                    let message = format!(
                        "app-root of host {host} is already set by {} (older); this one is ignored",
                        existing.ingress
                    );
                    self.problem(source, Reason::InvalidAnnotation, message);
                }
            }
        }
        for alias in &options.aliases {
            self.table.add_alias(alias.clone(), host.clone());
        }
        if let (true, HostMatch::Exact(name)) = (options.from_to_www, host) {
            let other = match name.strip_prefix("www.") {
                Some(apex) => apex.to_owned(),
                None => format!("www.{name}"),
            };
            self.table.add_www_redirect(other, name.clone());
        } else if options.from_to_www {
            let message = format!(
                "spec.rules[{ri}]: from-to-www-redirect does not apply to {host}: only to host names, not wildcards"
            );
            self.problem(source, Reason::InvalidAnnotation, message);
        }
    }

    /// `spec.tls`: each host bound to its Secret's certificate, or to the default one with
    /// the reason. A section without hosts covers the hosts of this Ingress's rules.
    fn tls_sections(
        &mut self,
        ingress: &'a Ingress,
        namespace: &str,
        source: &Arc<ObjectRef>,
        redirect: bool,
    ) {
        let Some(spec) = ingress.spec.as_ref() else {
            return;
        };
        let rule_hosts: Vec<&str> = spec
            .rules
            .iter()
            .flatten()
            .filter_map(|r| r.host.as_deref())
            .filter(|h| !h.is_empty())
            .collect();
        for (ti, tls) in spec.tls.iter().flatten().enumerate() {
            let binding = match tls.secret_name.as_deref().filter(|n| !n.is_empty()) {
                None => TlsBinding::Default(format!("spec.tls[{ti}] names no Secret")),
                Some(secret) => match self.secrets.check(namespace, secret) {
                    Ok(cert) => {
                        if cert.is_expired(SystemTime::now()) {
                            self.problem(
                                source,
                                Reason::TLSCertificateExpired,
                                format!(
                                    "spec.tls[{ti}]: the certificate in Secret {namespace}/{secret} expired on {}; it is still served",
                                    humantime::format_rfc3339_seconds(cert.not_after)
                                ),
                            );
                        }
                        TlsBinding::Secret(cert)
                    }
                    Err((reason, why)) => {
                        self.problem(
                            source,
                            reason,
                            format!("spec.tls[{ti}]: {why}; its hosts get the default certificate"),
                        );
                        TlsBinding::Default(why)
                    }
                },
            };
            let listed: Vec<&str> = match tls.hosts.as_deref() {
                Some(hosts) if !hosts.is_empty() => hosts.iter().map(String::as_str).collect(),
                _ => rule_hosts.clone(),
            };
            for host in listed {
                let host_match = match validate::host(host) {
                    Ok(h) => h,
                    Err(why) => {
                        self.problem(
                            source,
                            Reason::InvalidHost,
                            format!("spec.tls[{ti}].hosts: {host:?} {why}"),
                        );
                        continue;
                    }
                };
                if let TlsBinding::Secret(cert) = &binding {
                    if !cert.covers(&host_match) {
                        self.problem(
                            source,
                            Reason::TLSHostNotCovered,
                            format!(
                                "spec.tls[{ti}]: the certificate in Secret {} is for {} and does not cover {host}; clients will reject it",
                                cert.secret.name,
                                cert.names.join(", ")
                            ),
                        );
                    }
                }
                let entry = TlsHost {
                    host: host_match,
                    ingress: source.clone(),
                    binding: binding.clone(),
                    redirect,
                };
                if let Err(existing) = self.tls.add(entry) {
                    let holder = match &existing.binding {
                        TlsBinding::Secret(cert) => format!("Secret {}", cert.secret.name),
                        TlsBinding::Default(_) => "the default certificate".to_owned(),
                    };
                    let message = format!(
                        "spec.tls[{ti}]: host {host} already uses {holder} from {} (older); this entry is ignored",
                        existing.ingress
                    );
                    self.problem(source, Reason::TLSHostConflict, message);
                }
            }
        }
    }

    /// A TLS host that no rule routes is almost always a typo (`www.` in one, not the other).
    fn tls_hosts_without_rules(&mut self) {
        let orphans: Vec<(Arc<ObjectRef>, String)> = self
            .tls
            .hosts()
            .filter(|h| !self.table.routes_host(&h.host))
            .map(|h| (h.ingress.clone(), h.host.to_string()))
            .collect();
        for (ingress, host) in orphans {
            self.problem(
                &ingress,
                Reason::TLSHostWithoutRule,
                format!("TLS host {host} has no rule with that host; its requests go to the rules without a host, else the default backend"),
            );
        }
    }

    /// `--default-certificate`: served without SNI and to TLS hosts without their own.
    fn default_certificate(&mut self) {
        let Some(key) = self.settings.default_certificate.as_ref() else {
            return;
        };
        let object = ObjectRef::namespaced("Secret", &key.namespace, &key.name);
        match self.secrets.check(&key.namespace, &key.name) {
            Ok(cert) => {
                if cert.is_expired(SystemTime::now()) {
                    self.problem(
                        &object,
                        Reason::TLSCertificateExpired,
                        "--default-certificate: the certificate has expired; it is still served"
                            .into(),
                    );
                }
                self.tls.set_default(cert);
            }
            Err((reason, why)) => self.problem(
                &object,
                reason,
                format!(
                    "--default-certificate: {why}; the self-signed certificate is served instead"
                ),
            ),
        }
    }

    /// An Ingress backend to a route target; problems are reported against `source`.
    /// `service_upstream`: the Service's cluster IP instead of its endpoints.
    fn target(
        &mut self,
        namespace: &'a str,
        backend: &'a IngressBackend,
        source: &ObjectRef,
        field: &str,
        service_upstream: bool,
    ) -> Target {
        let service = match (&backend.service, &backend.resource) {
            (Some(service), None) => service,
            (None, Some(resource)) => {
                let message = format!(
                    "{field}: resource backends ({} {}) are not supported; requests get 503",
                    resource.kind, resource.name
                );
                self.problem(source, Reason::ResourceBackendUnsupported, message.clone());
                return Target::Unavailable(Arc::from(message.as_str()));
            }
            _ => {
                let message =
                    format!("{field}: a backend needs exactly one of service and resource");
                self.problem(source, Reason::InvalidIngress, message.clone());
                return Target::Unavailable(Arc::from(message.as_str()));
            }
        };
        let port = service.port.as_ref();
        let port = match (
            port.and_then(|p| p.number),
            port.and_then(|p| p.name.as_deref()),
        ) {
            (Some(n), None) => match u16::try_from(n) {
                Ok(n) if n > 0 => PortRef::Number(n),
                _ => {
                    return self.invalid(
                        source,
                        format!("{field}.service.port.number {n} is not a port number"),
                    )
                }
            },
            (None, Some(name)) if !name.is_empty() => PortRef::Name(name.to_owned()),
            _ => {
                return self.invalid(
                    source,
                    format!("{field}.service.port needs exactly one of number and name"),
                )
            }
        };
        let resolved = if service_upstream {
            self.services
                .resolve_cluster_ip(namespace, &service.name, port)
        } else {
            self.services.resolve(namespace, &service.name, port)
        };
        if let Some((reason, message)) = resolved.problem {
            self.problem(source, reason, format!("{field}: {message}"));
        }
        resolved.target
    }

    fn invalid(&mut self, source: &ObjectRef, message: String) -> Target {
        self.problem(source, Reason::InvalidIngress, message.clone());
        Target::Unavailable(Arc::from(message.as_str()))
    }

    /// `--default-backend-service`, used only when no Ingress of ours sets one.
    fn global_default_backend(&mut self) {
        let Some(key) = self.settings.default_backend_service.as_ref() else {
            return;
        };
        let object = ObjectRef::namespaced("Service", &key.namespace, &key.name);
        let target = match self.services.first_port(&key.namespace, &key.name) {
            Some(port) => {
                let resolved = self.services.resolve(&key.namespace, &key.name, port);
                if let Some((reason, message)) = resolved.problem {
                    self.problem(
                        &object,
                        reason,
                        format!("--default-backend-service: {message}"),
                    );
                }
                resolved.target
            }
            None => {
                let message =
                    format!("--default-backend-service: Service {key} not found or has no ports");
                self.problem(&object, Reason::BackendNotFound, message.clone());
                Target::Unavailable(Arc::from(message.as_str()))
            }
        };
        // An Ingress's default backend wins over the flag.
        let _ = self.table.set_default_backend(DefaultBackend {
            ingress: None,
            owner: Arc::new(Owner::new(
                Arc::from(key.namespace.as_str()),
                Arc::from(""),
                service_of(&target),
            )),
            target,
            protocol: None,
            policy: None,
        });
    }
}

#[cfg(test)]
mod tests;
