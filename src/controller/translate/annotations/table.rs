//! Every `nginx.ingress.kubernetes.io/*` annotation, and what wicket does with it: the one
//! answer to "is this supported?", used by translation (Problems and per-Ingress outcomes),
//! `/debug/routes`, `wicket check` and the README's migration table (a test keeps them
//! equal).
//!
//! Each name is also read as `wicket.dev/<name>`; the `wicket.dev/` one wins.

/// What wicket does with an annotation when it is set to a valid value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Honoured as ingress-nginx does.
    Honoured,
    /// Honoured, with this difference.
    Differs(&'static str),
    /// Accepted; wicket already behaves as asked, for this reason.
    NoEffectNeeded(&'static str),
    /// Not supported: ignored, for this reason.
    Unsupported(&'static str),
    /// A snippet: never supported.
    Refused,
}

const GLOBAL_RATE_LIMITS: Support = Support::Unsupported(
    "limits shared by all replicas through memcached are not supported (limit-rps and limit-rpm count per replica): requests are not limited by it",
);
const NOT_YET: Support = Support::Unsupported("not supported yet");

/// The annotations, by name without the `nginx.ingress.kubernetes.io/` prefix.
pub const ANNOTATIONS: &[(&str, Support)] = &[
    // Routing, rewriting, redirects
    ("rewrite-target", Support::Differs("captures $1 to $9 only (an nginx variable such as $host is refused and the routes answer 503); the pattern matches the path as the client sent it, percent-encoding included, where nginx decodes it first")),
    ("use-regex", Support::Differs("patterns are the regex crate's (RE2 syntax, linear time): look-around and back-references do not compile, and such a path is left out with a Problem; the path as the client sent it is matched, percent-encoding included")),
    ("app-root", Support::Differs("a path; of nginx's variables only $is_args$args (keep the query string) is understood")),
    ("x-forwarded-prefix", Support::Honoured),
    ("enable-rewrite-log", Support::NoEffectNeeded("wicket has no rewrite log; /debug/explain shows how a request is routed")),
    ("ssl-redirect", Support::Honoured),
    ("force-ssl-redirect", Support::Honoured),
    ("preserve-trailing-slash", Support::Honoured),
    ("permanent-redirect", Support::Honoured),
    ("permanent-redirect-code", Support::Honoured),
    ("temporal-redirect", Support::Honoured),
    ("temporal-redirect-code", Support::Honoured),
    ("relative-redirects", Support::Honoured),
    ("from-to-www-redirect", Support::Differs("the Location carries port 80 for HTTP and --https-redirect-port for HTTPS, the public ports, where nginx writes its own listening port; wildcard hosts are not redirected")),
    ("server-alias", Support::Differs("host names only: nginx server_name wildcards and regular expressions are skipped")),
    ("upstream-vhost", Support::Differs("a plain host name; nginx variables ($service_name, ...) are not expanded and such a value is refused")),
    // TLS and backend protocol
    ("backend-protocol", Support::Differs("HTTP, HTTPS, GRPC and GRPCS; AUTO_HTTP and FCGI are not supported")),
    ("ssl-passthrough", Support::Differs("needs --enable-ssl-passthrough, as in ingress-nginx; exact hosts only (a wildcard host is reported and served as usual); the connection goes to the pods of the host's / rule, chosen by the balancer, rather than to the Service's cluster IP")),
    ("proxy-ssl-secret", NOT_YET),
    ("proxy-ssl-verify", NOT_YET),
    ("proxy-ssl-verify-depth", NOT_YET),
    ("proxy-ssl-ciphers", NOT_YET),
    ("proxy-ssl-protocols", NOT_YET),
    ("proxy-ssl-name", NOT_YET),
    ("proxy-ssl-server-name", NOT_YET),
    ("ssl-ciphers", Support::Unsupported("wicket serves one modern cipher list for every host")),
    ("ssl-prefer-server-ciphers", Support::NoEffectNeeded("wicket always prefers its own cipher order")),
    // Access control
    ("whitelist-source-range", Support::Honoured),
    ("allowlist-source-range", Support::Honoured),
    ("denylist-source-range", Support::Honoured),
    ("auth-type", Support::Differs("basic only: digest is not supported and makes the routes answer 503; successful checks are cached (a client does not pay a bcrypt per request) and each client address gets a budget of password checks")),
    ("auth-url", Support::Differs("http(s) URLs with the variables $host, $scheme, $request_uri, $escaped_request_uri, $uri and $args (any other makes the routes answer 503); an https auth service's certificate is verified against the Mozilla roots, where ingress-nginx does not verify it; the auth service has --auth-timeout (15 s) to answer, then the client gets 500")),
    ("auth-tls-secret", Support::Differs("a Secret of the Ingress's own namespace with ca.crt (and optionally ca.crl); per host, from the host's oldest Ingress that sets it. A request without a valid certificate gets 400 as from ingress-nginx, on plain HTTP too (ingress-nginx checks only HTTPS); a missing or unreadable Secret makes the host answer 503 where ingress-nginx answers 403")),
    ("auth-secret", Support::Differs("a Secret of the Ingress's own namespace; hashes bcrypt, apr1/MD5-crypt, {SHA}, {SSHA} and {PLAIN}: a line in another format (DES crypt, $5$, $6$) makes the routes answer 503 with a Problem")),
    ("auth-secret-type", Support::Honoured),
    ("auth-realm", Support::Honoured),
    ("auth-signin", Support::Honoured),
    ("auth-signin-redirect-param", Support::Honoured),
    ("auth-response-headers", Support::Honoured),
    ("auth-method", Support::Honoured),
    ("auth-request-redirect", Support::Honoured),
    ("auth-cache-key", Support::Differs("the variables upstream-hash-by takes ($cookie_*, $http_*, $remote_addr, ...; not $remote_user); answers are remembered per replica, in a bounded cache, keyed by a SHA-256 of the auth URL and the key")),
    ("auth-cache-duration", Support::Honoured),
    ("auth-keepalive", Support::NoEffectNeeded("connections to auth services are always pooled")),
    ("auth-keepalive-share-vars", Support::NoEffectNeeded("each auth request is independent; nothing is shared between requests")),
    ("auth-keepalive-requests", Support::NoEffectNeeded("connections to auth services are always pooled")),
    ("auth-keepalive-timeout", Support::NoEffectNeeded("connections to auth services are always pooled (idle for at most 90 s)")),
    ("auth-proxy-set-headers", Support::Differs("a ConfigMap of the Ingress's own namespace; one that is missing or holds something that is not a header makes the routes answer 503")),
    ("auth-always-set-cookie", Support::Honoured),
    ("auth-tls-verify-client", Support::Honoured),
    ("auth-tls-verify-depth", Support::Honoured),
    ("auth-tls-error-page", Support::Honoured),
    ("auth-tls-pass-certificate-to-upstream", Support::Honoured),
    ("auth-tls-match-cn", Support::Differs("the regex crate's syntax (RE2); matched, unanchored, against the subject DN as nginx writes it (RFC 2253, CN first)")),
    ("enable-global-auth", Support::NoEffectNeeded("wicket has no global external auth to opt out of")),
    ("satisfy", Support::Differs("every check configured must pass, as with satisfy: all; with satisfy: any, a client that passes only one of them is refused where ingress-nginx lets it in")),
    // Rate limits
    ("limit-rps", Support::Differs("per client address, per replica, one budget per Ingress as in ingress-nginx; refused requests get --limit-status-code (503 by default); a value that is not a whole number makes the routes answer 503, where ingress-nginx drops the Ingress")),
    ("limit-rpm", Support::Differs("as limit-rps, per minute")),
    ("limit-connections", Support::Differs("requests in flight per client address (nginx limit_conn counts the same); refused with --limit-status-code")),
    ("limit-burst-multiplier", Support::Honoured),
    ("limit-whitelist", Support::Honoured),
    ("limit-allowlist", Support::Honoured),
    ("limit-rate", Support::Unsupported("response bandwidth limits are not supported")),
    ("limit-rate-after", Support::Unsupported("response bandwidth limits are not supported")),
    ("global-rate-limit", GLOBAL_RATE_LIMITS),
    ("global-rate-limit-window", GLOBAL_RATE_LIMITS),
    ("global-rate-limit-key", GLOBAL_RATE_LIMITS),
    ("global-rate-limit-ignored-cidrs", GLOBAL_RATE_LIMITS),
    // Traffic management
    ("canary", Support::Differs("the canary's rules are attached to the main Ingress's routes with the same host, path and pathType; a canary's spec.defaultBackend and tls sections are not used")),
    ("canary-by-header", Support::Honoured),
    ("canary-by-header-value", Support::Honoured),
    ("canary-by-header-pattern", Support::Differs("the regex crate's syntax (RE2, linear time) where nginx uses PCRE: look-around and back-references do not compile, and a pattern that does not compile sends requests with the header to the main backend, as ingress-nginx does")),
    ("canary-by-cookie", Support::Honoured),
    ("canary-weight", Support::Honoured),
    ("canary-weight-total", Support::Honoured),
    ("affinity", Support::Differs("scoped to the Ingress's routes, where ingress-nginx keeps one setting per Service (the last Ingress processed wins); a cookie ingress-nginx set is not recognised and the client is pinned anew")),
    ("affinity-mode", Support::Differs("balanced: the cookie holds a random key hashed onto the pods (some sessions move when pods are added); persistent: a keyed hash of the pod, which never reveals its address")),
    ("affinity-canary-behavior", Support::Honoured),
    ("session-cookie-name", Support::Honoured),
    ("session-cookie-path", Support::Honoured),
    ("session-cookie-domain", Support::Honoured),
    ("session-cookie-max-age", Support::Honoured),
    ("session-cookie-expires", Support::Honoured),
    ("session-cookie-secure", Support::Honoured),
    ("session-cookie-samesite", Support::Differs("a lowercase value (lax) is sent as Lax, where ingress-nginx drops it silently")),
    ("session-cookie-conditional-samesite-none", Support::Honoured),
    ("session-cookie-change-on-failure", Support::Honoured),
    ("upstream-hash-by", Support::Differs("variables: request_uri, uri, args, remote_addr, host, request_method, scheme, http_*, cookie_*, arg_*; another is refused and requests are balanced without it; the hash ring is wicket's, so a key lands on another pod than under ingress-nginx, consistently")),
    ("upstream-hash-by-subset", Support::Honoured),
    ("upstream-hash-by-subset-size", Support::Honoured),
    ("load-balance", Support::Differs("round_robin and ewma (peak EWMA of response time, best of two random pods); the internal names chash and sticky_* are refused")),
    ("service-upstream", Support::Differs("a Service without a cluster IP (headless) is reached through its endpoints, with a Problem; cookie affinity, upstream-hash-by and retries then choose among one address, as in ingress-nginx")),
    ("proxy-next-upstream", Support::Differs("a request body already sent is never sent again (wicket streams bodies instead of buffering them)")),
    ("proxy-next-upstream-tries", Support::Honoured),
    ("proxy-next-upstream-timeout", Support::Honoured),
    // Proxy tuning
    ("proxy-body-size", Support::Honoured),
    ("proxy-connect-timeout", Support::Honoured),
    ("proxy-read-timeout", Support::Differs("also the longest pause in the middle of a response body, as nginx's proxy_read_timeout")),
    ("proxy-send-timeout", Support::Honoured),
    ("proxy-buffering", Support::NoEffectNeeded("wicket streams responses to clients as they arrive; buffering changes nothing a client can rely on")),
    ("proxy-buffer-size", Support::NoEffectNeeded("wicket accepts response heads up to hyper's limit, far above nginx's 4k")),
    ("proxy-buffers-number", Support::NoEffectNeeded("wicket does not buffer responses in fixed buffers")),
    ("proxy-busy-buffers-size", Support::NoEffectNeeded("wicket does not buffer responses in fixed buffers")),
    ("proxy-max-temp-file-size", Support::NoEffectNeeded("wicket never writes bodies to disk")),
    ("proxy-request-buffering", Support::Differs("wicket always streams request bodies to the pod; a body already sent is never retried")),
    ("client-body-buffer-size", Support::NoEffectNeeded("wicket streams request bodies and never writes them to disk")),
    ("proxy-http-version", Support::Differs("HTTP/1.1 to pods (the default); 1.0 is not supported")),
    ("connection-proxy-header", Support::Unsupported("wicket manages upstream connections itself (keep-alive pool)")),
    ("proxy-redirect-from", Support::Unsupported("Location headers from pods are passed unchanged")),
    ("proxy-redirect-to", Support::Unsupported("Location headers from pods are passed unchanged")),
    ("proxy-cookie-domain", Support::Unsupported("Set-Cookie headers from pods are passed unchanged")),
    ("proxy-cookie-path", Support::Unsupported("Set-Cookie headers from pods are passed unchanged")),
    // Errors and headers
    ("custom-http-errors", Support::Differs("the error backend gets a GET (HEAD for HEAD) of / without the request body, where nginx keeps the method")),
    ("default-backend", Support::Honoured),
    ("disable-proxy-intercept-errors", Support::Honoured),
    ("custom-headers", Support::Differs("header names are checked against --allowed-response-headers (ingress-nginx's global-allowed-response-headers) case-insensitively, where ingress-nginx compares them as written")),
    ("enable-cors", Support::Honoured),
    ("cors-allow-origin", Support::Differs("an Origin must equal an allowed origin (ingress-nginx only anchors the end of its match)")),
    ("cors-allow-methods", Support::Honoured),
    ("cors-allow-headers", Support::Honoured),
    ("cors-expose-headers", Support::Honoured),
    ("cors-allow-credentials", Support::Honoured),
    ("cors-max-age", Support::Honoured),
    // Observability
    ("enable-access-log", Support::Honoured),
    ("enable-opentelemetry", Support::Unsupported("no tracing yet")),
    ("opentelemetry-trust-incoming-span", Support::Unsupported("no tracing yet")),
    ("opentelemetry-operation-name", Support::Unsupported("no tracing yet")),
    ("enable-opentracing", Support::Unsupported("no tracing yet")),
    ("opentracing-trust-incoming-span", Support::Unsupported("no tracing yet")),
    // The rest
    ("mirror-target", Support::Unsupported("request mirroring is not supported")),
    ("mirror-request-body", Support::Unsupported("request mirroring is not supported")),
    ("mirror-host", Support::Unsupported("request mirroring is not supported")),
    ("http2-push-preload", Support::NoEffectNeeded("HTTP/2 server push no longer exists in browsers or nginx")),
    ("fastcgi-index", Support::Unsupported("FastCGI backends are not supported")),
    ("fastcgi-params-configmap", Support::Unsupported("FastCGI backends are not supported")),
    ("enable-modsecurity", Support::Unsupported("no web application firewall")),
    ("enable-owasp-core-rules", Support::Unsupported("no web application firewall")),
    ("modsecurity-transaction-id", Support::Unsupported("no web application firewall")),
    ("configuration-snippet", Support::Refused),
    ("server-snippet", Support::Refused),
    ("auth-snippet", Support::Refused),
    ("stream-snippet", Support::Refused),
    ("modsecurity-snippet", Support::Refused),
];

/// What wicket does with `name` (without prefix), if it is an annotation it knows.
pub fn support(name: &str) -> Option<Support> {
    ANNOTATIONS
        .iter()
        .find_map(|(n, s)| (*n == name).then_some(*s))
}

/// The sentence a user reads about an annotation that is not honoured.
pub fn explain(support: Support) -> String {
    match support {
        Support::Honoured => String::new(),
        Support::Differs(why) => why.to_owned(),
        Support::NoEffectNeeded(why) => why.to_owned(),
        Support::Unsupported(why) => format!("{why}; it has no effect"),
        Support::Refused => "never supported: wicket's configuration is typed, with no snippets or templates; the Ingress is not served (as ingress-nginx by default), or with --ignore-snippets served without the snippet".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's migration table, one row per annotation.
    fn markdown_rows() -> Vec<String> {
        ANNOTATIONS
            .iter()
            .map(|(name, support)| {
                let outcome = match support {
                    Support::Honoured => "honoured",
                    Support::Differs(_) => "honoured, differs",
                    Support::NoEffectNeeded(_) => "no effect needed",
                    Support::Unsupported(_) => "not supported",
                    Support::Refused => "refused",
                };
                format!("| `{name}` | {outcome} | {} |", explain(*support))
            })
            .collect()
    }

    #[test]
    fn the_readme_lists_every_annotation_with_its_outcome() {
        let readme = include_str!("../../../../README.md");
        let rows = markdown_rows();
        if std::env::var_os("WICKET_PRINT_ANNOTATION_TABLE").is_some() {
            println!("{}", rows.join("\n"));
        }
        let missing: Vec<&String> = rows
            .iter()
            .filter(|r| !readme.contains(r.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "README.md's annotation table differs from the code (WICKET_PRINT_ANNOTATION_TABLE=1 prints it):\n{}",
            missing.iter().map(|r| r.as_str()).collect::<Vec<_>>().join("\n")
        );
    }

    #[test]
    fn every_name_is_listed_once() {
        let mut names: Vec<&str> = ANNOTATIONS.iter().map(|(n, _)| *n).collect();
        let total = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), total, "a name is listed twice");
    }

    #[test]
    fn every_snippet_is_refused_and_every_access_guard_is_honoured_or_blocks() {
        for (name, support) in ANNOTATIONS {
            if name.ends_with("snippet") {
                assert_eq!(*support, Support::Refused, "{name}");
            }
        }
        for guard in [
            "whitelist-source-range",
            "allowlist-source-range",
            "denylist-source-range",
        ] {
            assert_eq!(support(guard), Some(Support::Honoured), "{guard}");
        }
        // Every access guard is honoured: none is merely reported while the route serves.
        for guard in [
            "auth-type",
            "auth-url",
            "auth-tls-secret",
            "limit-rps",
            "limit-connections",
        ] {
            assert!(
                matches!(
                    support(guard),
                    Some(Support::Honoured | Support::Differs(_))
                ),
                "{guard}"
            );
        }
        assert_eq!(support("no-such-annotation"), None);
    }
}
