//! The Ingress annotations wicket reads, parsed into typed values; nothing in an
//! annotation ever becomes configuration text.
//!
//! Each setting has a `wicket.dev/` name and, for migration, the ingress-nginx name; the
//! `wicket.dev/` one wins when both are set. Any other `nginx.ingress.kubernetes.io/`
//! annotation is reported as unsupported, so users moving from ingress-nginx learn which
//! of theirs no longer does anything.

use k8s_openapi::api::networking::v1::Ingress;

use crate::model::{ObjectRef, Problem, Reason, UpstreamProtocol};

const SSL_REDIRECT: [&str; 2] = [
    "wicket.dev/ssl-redirect",
    "nginx.ingress.kubernetes.io/ssl-redirect",
];
const BACKEND_PROTOCOL: [&str; 2] = [
    "wicket.dev/backend-protocol",
    "nginx.ingress.kubernetes.io/backend-protocol",
];
const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// What an Ingress's annotations ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Plain-HTTP requests to its TLS hosts are redirected (default: yes).
    pub ssl_redirect: bool,
    /// The upstream protocol for all its backends, winning over `appProtocol`.
    pub protocol: Option<UpstreamProtocol>,
}

pub fn read(ingress: &Ingress, source: &ObjectRef, problems: &mut Vec<Problem>) -> Options {
    let mut options = Options {
        ssl_redirect: true,
        protocol: None,
    };
    let Some(annotations) = ingress.metadata.annotations.as_ref() else {
        return options;
    };
    let first = |names: [&'static str; 2]| {
        names
            .into_iter()
            .find_map(|n| annotations.get(n).map(|v| (n, v.trim())))
    };

    if let Some((name, value)) = first(SSL_REDIRECT) {
        match value.to_ascii_lowercase().as_str() {
            "true" => options.ssl_redirect = true,
            "false" => options.ssl_redirect = false,
            _ => problems.push(Problem::new(
                source.clone(),
                Reason::InvalidAnnotation,
                format!("{name}: {value:?} is not \"true\" or \"false\"; the redirect stays on"),
            )),
        }
    }
    if let Some((name, value)) = first(BACKEND_PROTOCOL) {
        options.protocol = match value.to_ascii_uppercase().as_str() {
            "HTTP" => Some(UpstreamProtocol::Http1),
            "HTTPS" => Some(UpstreamProtocol::Https),
            "GRPC" => Some(UpstreamProtocol::H2c),
            "GRPCS" => Some(UpstreamProtocol::H2),
            _ => {
                problems.push(Problem::new(
                    source.clone(),
                    Reason::InvalidAnnotation,
                    format!(
                        "{name}: {value:?} is not supported (HTTP, HTTPS, GRPC or GRPCS); the Service's appProtocol is used"
                    ),
                ));
                None
            }
        };
    }
    for name in annotations.keys() {
        let Some(setting) = name.strip_prefix(NGINX_PREFIX) else {
            continue;
        };
        if SSL_REDIRECT.contains(&name.as_str()) || BACKEND_PROTOCOL.contains(&name.as_str()) {
            continue;
        }
        let message = if setting.ends_with("snippet") {
            format!("{name} is never supported: wicket's configuration is typed, with no snippets or templates; it has no effect")
        } else {
            format!("{name} is not supported by wicket and has no effect")
        };
        problems.push(Problem::new(
            source.clone(),
            Reason::UnsupportedAnnotation,
            message,
        ));
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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

    #[test]
    fn defaults_are_redirect_on_and_no_protocol_override() {
        let (o, p) = with(&[]);
        assert!(o.ssl_redirect);
        assert_eq!(o.protocol, None);
        assert!(p.is_empty());
    }

    #[test]
    fn ssl_redirect_false_from_either_name_and_wicket_wins() {
        assert!(
            !with(&[("nginx.ingress.kubernetes.io/ssl-redirect", "false")])
                .0
                .ssl_redirect
        );
        assert!(!with(&[("wicket.dev/ssl-redirect", "False")]).0.ssl_redirect);
        let (o, _) = with(&[
            ("wicket.dev/ssl-redirect", "true"),
            ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
        ]);
        assert!(o.ssl_redirect);
    }

    #[test]
    fn backend_protocols_map_to_upstream_protocols() {
        for (value, protocol) in [
            ("HTTP", UpstreamProtocol::Http1),
            ("https", UpstreamProtocol::Https),
            ("GRPC", UpstreamProtocol::H2c),
            ("GRPCS", UpstreamProtocol::H2),
        ] {
            let (o, p) = with(&[("nginx.ingress.kubernetes.io/backend-protocol", value)]);
            assert_eq!(o.protocol, Some(protocol));
            assert!(p.is_empty());
        }
    }

    #[test]
    fn bad_values_and_unsupported_annotations_are_reported() {
        let (o, p) = with(&[
            ("nginx.ingress.kubernetes.io/backend-protocol", "FCGI"),
            ("nginx.ingress.kubernetes.io/ssl-redirect", "yes please"),
            ("nginx.ingress.kubernetes.io/rewrite-target", "/$2"),
            (
                "nginx.ingress.kubernetes.io/configuration-snippet",
                "more_set_headers x;",
            ),
            ("example.com/unrelated", "x"),
        ]);
        assert_eq!(o.protocol, None);
        assert!(o.ssl_redirect);
        let reasons: Vec<Reason> = p.iter().map(|p| p.reason).collect();
        assert_eq!(
            reasons,
            vec![
                Reason::InvalidAnnotation,
                Reason::InvalidAnnotation,
                Reason::UnsupportedAnnotation,
                Reason::UnsupportedAnnotation
            ]
        );
        assert!(p.iter().any(|p| p.message.contains("never supported")));
    }
}
