//! Host and path validation, as the Kubernetes API server validates Ingress v1.
//!
//! Manifests never went through an API server, so wicket checks what it would have
//! refused and says why, instead of routing something surprising.

use std::net::IpAddr;

use crate::model::{HostMatch, PathType};

/// A DNS-1123 subdomain: lowercase labels of `[a-z0-9-]`, each 1–63 characters, not
/// starting or ending with `-`, 253 characters in all.
pub fn dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err("must be at most 253 characters".into());
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("must be lowercase".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("must not have empty labels (no leading, trailing or double dots)".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "label {label:?} may only hold lowercase letters, digits and '-'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} must not start or end with '-'"));
        }
    }
    Ok(())
}

/// `spec.rules[].host`: a DNS name, optionally with `*` as the whole first label.
pub fn host(host: &str) -> Result<HostMatch, String> {
    if let Some(suffix) = host.strip_prefix("*.") {
        dns_subdomain(suffix).map_err(|e| format!("wildcard suffix {e}"))?;
        return Ok(HostMatch::Wildcard(suffix.to_owned()));
    }
    if host.contains('*') {
        return Err("a wildcard must be the whole first label, as in *.example.com".into());
    }
    if host.parse::<IpAddr>().is_ok() {
        return Err("must be a DNS name, not an IP address".into());
    }
    if host.contains(':') {
        return Err("must not contain a port".into());
    }
    dns_subdomain(host)?;
    Ok(HostMatch::Exact(host.to_owned()))
}

const INVALID_SEQUENCES: [&str; 5] = ["//", "/./", "/../", "%2f", "%2F"];
const INVALID_SUFFIXES: [&str; 2] = ["/..", "/."];

/// `spec.rules[].http.paths[].path` for its `pathType`; returns the path to route.
/// `regex`: the path is a regular expression (`use-regex`, `rewrite-target`), where `?`
/// is a quantifier, not a query string.
pub fn path(path: Option<&str>, path_type: PathType, regex: bool) -> Result<String, String> {
    let path = path.unwrap_or("");
    if path_type == PathType::ImplementationSpecific && path.is_empty() {
        return Ok("/".to_owned());
    }
    if !path.starts_with('/') {
        return Err(format!(
            "path {path:?} must be an absolute path (start with '/')"
        ));
    }
    if path_type != PathType::ImplementationSpecific {
        for seq in INVALID_SEQUENCES {
            if path.contains(seq) {
                return Err(format!("path {path:?} must not contain {seq:?}"));
            }
        }
        for suffix in INVALID_SUFFIXES {
            if path.ends_with(suffix) {
                return Err(format!("path {path:?} must not end with {suffix:?}"));
            }
        }
    }
    if let Some(c) = path
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || (*c == '?' && !regex) || *c == '#')
    {
        return Err(format!(
            "path {path:?} contains {c:?}, which never appears in a request path (rules match the path only, without query or fragment)"
        ));
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_exact_or_single_label_wildcards() {
        assert_eq!(
            host("foo.bar.com"),
            Ok(HostMatch::Exact("foo.bar.com".into()))
        );
        assert_eq!(host("*.foo.com"), Ok(HostMatch::Wildcard("foo.com".into())));
        assert!(host("foo.*.com").is_err());
        assert!(host("*foo.com").is_err());
        assert!(host("*").is_err());
    }

    #[test]
    fn hosts_that_the_api_server_refuses_are_refused() {
        for bad in [
            "10.0.0.1",
            "::1",
            "Foo.com",
            "foo.com.",
            "foo..com",
            "-foo.com",
            "foo_bar.com",
            "foo.com:80",
            "",
            "bücher.de",
        ] {
            assert!(host(bad).is_err(), "{bad} should be refused");
        }
        assert!(host(&format!("{}.com", "a".repeat(64))).is_err());
        assert!(host(&format!("{}.com", "a".repeat(63))).is_ok());
    }

    #[test]
    fn exact_and_prefix_paths_follow_api_validation() {
        use PathType::*;
        assert_eq!(path(Some("/foo"), Prefix, false), Ok("/foo".into()));
        assert_eq!(path(Some("/"), Exact, false), Ok("/".into()));
        for bad in [
            "foo", "", "/a//b", "/a/./b", "/a/../b", "/a%2fb", "/a%2Fb", "/a/..", "/a/.",
        ] {
            assert!(path(Some(bad), Prefix, false).is_err(), "{bad}");
            assert!(path(Some(bad), Exact, false).is_err(), "{bad}");
        }
        assert!(path(None, Prefix, false).is_err());
    }

    #[test]
    fn implementation_specific_allows_an_empty_path_as_root() {
        assert_eq!(
            path(None, PathType::ImplementationSpecific, false),
            Ok("/".into())
        );
        assert_eq!(
            path(Some(""), PathType::ImplementationSpecific, false),
            Ok("/".into())
        );
        assert!(path(Some("api"), PathType::ImplementationSpecific, false).is_err());
    }

    #[test]
    fn paths_with_query_or_spaces_are_refused() {
        assert!(path(Some("/a?b=1"), PathType::Prefix, false).is_err());
        assert!(path(Some("/a/?(.*)"), PathType::ImplementationSpecific, true).is_ok());
        assert!(path(Some("/a b"), PathType::Prefix, false).is_err());
        assert!(path(Some("/a#x"), PathType::ImplementationSpecific, true).is_err());
    }
}
