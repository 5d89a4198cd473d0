//! Canary Ingresses (`canary: "true"`, INGRESS-NGINX.md §C4): a second backend for a
//! route of a main Ingress, chosen per request by header, cookie or weight.
//!
//! The canary is attached to the main Ingress's route at translation time (same host, path
//! and `pathType`); the request path asks [`CanaryRule::decide`] which backend answers.
//! Everything else about the request (redirects, body limit, rewrites, timeouts) stays the
//! main Ingress's, as in ingress-nginx, where a canary only adds an upstream.

use std::sync::Arc;

use http::{HeaderMap, HeaderName};
use serde::{Serialize, Serializer};

use super::backend::UpstreamProtocol;
use super::policy::Policy;
use super::problem::ObjectRef;
use super::table::{Owner, Target};

/// The alternative backend of a route, and when it is used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    /// The canary Ingress.
    pub ingress: Arc<ObjectRef>,
    #[serde(flatten)]
    pub target: Target,
    /// The upstream protocol when the main Ingress sets none (`appProtocol`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<UpstreamProtocol>,
    pub rule: CanaryRule,
    /// The policy of requests sent to the canary: the main route's, with the canary's own
    /// `load-balance`, `upstream-hash-by` and (with `affinity-canary-behavior: legacy`)
    /// cookie affinity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Arc<Policy>>,
    #[serde(skip)]
    pub owner: Arc<Owner>,
}

/// `canary-by-header-pattern`: a regular expression, or one that did not compile (a request
/// with the header then goes to the main backend, and nothing else is consulted).
#[derive(Clone, Debug)]
pub enum HeaderPattern {
    Valid(regex::Regex),
    Invalid(String),
}

impl PartialEq for HeaderPattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for HeaderPattern {}

impl HeaderPattern {
    pub fn as_str(&self) -> &str {
        match self {
            HeaderPattern::Valid(r) => r.as_str(),
            HeaderPattern::Invalid(p) => p,
        }
    }
}

impl Serialize for HeaderPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The `canary-*` annotations: which requests go to the canary, in ingress-nginx's order
/// (`balancer.lua route_to_alternative_balancer`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryRule {
    #[serde(
        rename = "byHeader",
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_header_name"
    )]
    pub header: Option<HeaderName>,
    #[serde(rename = "byHeaderValue", skip_serializing_if = "Option::is_none")]
    pub header_value: Option<String>,
    #[serde(rename = "byHeaderPattern", skip_serializing_if = "Option::is_none")]
    pub header_pattern: Option<HeaderPattern>,
    #[serde(rename = "byCookie", skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// Out of [`CanaryRule::total`].
    pub weight: u32,
    /// `canary-weight-total` when above 100, else 100 (as ingress-nginx).
    pub weight_total: u32,
    /// `affinity-canary-behavior: sticky` (default): the canary shares the main Ingress's
    /// cookie affinity, so a client sent to the canary stays there.
    pub sticky: bool,
}

fn opt_header_name<S: Serializer>(v: &Option<HeaderName>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(name) => s.serialize_str(name.as_str()),
        None => s.serialize_none(),
    }
}

/// Which backend answers a request, and the rule that decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decided {
    /// The request's affinity cookie belongs to the main backend or the canary.
    Affinity,
    Header,
    /// The `canary-by-header-pattern` does not compile: main, nothing else consulted.
    BrokenPattern,
    Cookie,
    Weight,
}

impl CanaryRule {
    /// Whether the request goes to the canary, and which rule decided. `cookie` reads a
    /// cookie of the request by name; `affinity` is the answer of the session cookies
    /// (main's or canary's), consulted first.
    pub fn decide<'h>(
        &self,
        headers: &'h HeaderMap,
        affinity: Option<bool>,
        cookie: impl Fn(&'h HeaderMap, &str) -> Option<&'h str>,
    ) -> (bool, Decided) {
        if let Some(canary) = affinity {
            return (canary, Decided::Affinity);
        }
        if let Some(value) = self.header.as_ref().and_then(|h| headers.get(h)) {
            let value = value.as_bytes();
            if let Some(wanted) = &self.header_value {
                if value == wanted.as_bytes() {
                    return (true, Decided::Header);
                }
            } else if let Some(pattern) = &self.header_pattern {
                match pattern {
                    HeaderPattern::Valid(re) => {
                        if std::str::from_utf8(value).is_ok_and(|v| re.is_match(v)) {
                            return (true, Decided::Header);
                        }
                    }
                    HeaderPattern::Invalid(_) => return (false, Decided::BrokenPattern),
                }
            } else if value == b"always" {
                return (true, Decided::Header);
            } else if value == b"never" {
                return (false, Decided::Header);
            }
        }
        if let Some(value) = self.cookie.as_deref().and_then(|c| cookie(headers, c)) {
            match value {
                "always" => return (true, Decided::Cookie),
                "never" => return (false, Decided::Cookie),
                _ => {}
            }
        }
        let canary = match self.weight {
            0 => false,
            w if w >= self.weight_total => true,
            w => fastrand::u32(1..=self.weight_total) <= w,
        };
        (canary, Decided::Weight)
    }

    /// The rule in a few words: "header canary, cookie c, weight 10/100".
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.header {
            parts.push(format!("header {h}"));
        }
        if let Some(c) = &self.cookie {
            parts.push(format!("cookie {c}"));
        }
        parts.push(format!(
            "weight {}/{}",
            self.weight.min(self.weight_total),
            self.weight_total
        ));
        parts.join(", ")
    }

    /// The rule in words, in the order it is applied (for `/debug/explain`).
    pub fn describe(&self) -> Vec<String> {
        let mut steps = Vec::new();
        if self.sticky {
            steps.push(
                "a request with the main Ingress's session cookie stays on the main backend, one with the canary's stays on the canary (affinity-canary-behavior: sticky)".to_owned(),
            );
        }
        if let Some(h) = &self.header {
            steps.push(match (&self.header_value, &self.header_pattern) {
                (Some(v), _) => format!("header {h}: exactly {v:?} → canary; otherwise go on"),
                (None, Some(HeaderPattern::Valid(p))) => {
                    format!("header {h}: matches /{}/ → canary; otherwise go on", p.as_str())
                }
                (None, Some(HeaderPattern::Invalid(p))) => format!(
                    "header {h}: its pattern {p:?} does not compile, so a request with the header goes to the main backend and nothing else is consulted"
                ),
                (None, None) => {
                    format!("header {h}: \"always\" → canary, \"never\" → main; otherwise go on")
                }
            });
        }
        if let Some(c) = &self.cookie {
            steps.push(format!(
                "cookie {c}: \"always\" → canary, \"never\" → main; otherwise go on"
            ));
        }
        steps.push(format!(
            "weight: {} in {} requests → canary",
            self.weight.min(self.weight_total),
            self.weight_total
        ));
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
        headers
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("; ").find_map(|p| p.strip_prefix(name)))
            .and_then(|v| v.strip_prefix('='))
    }

    fn with(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn rule() -> CanaryRule {
        CanaryRule {
            header: Some(HeaderName::from_static("canary")),
            cookie: Some("Canary-By-Cookie".into()),
            weight_total: 100,
            ..CanaryRule::default()
        }
    }

    #[test]
    fn header_always_and_never_then_cookie_then_weight() {
        let r = rule();
        let d = |pairs: &[(&str, &str)]| r.decide(&with(pairs), None, cookie).0;
        assert!(d(&[("canary", "always")]));
        assert!(!d(&[
            ("canary", "never"),
            ("cookie", "Canary-By-Cookie=always")
        ]));
        assert!(d(&[
            ("canary", "other"),
            ("cookie", "Canary-By-Cookie=always")
        ]));
        assert!(!d(&[("cookie", "Canary-By-Cookie=never")]));
        // Weight 0: everything else goes to main.
        assert!(!d(&[("canary", "badheadervalue")]));
    }

    #[test]
    fn value_wins_over_pattern_and_a_broken_pattern_stops_at_main() {
        let mut r = rule();
        r.header_value = Some("DoCanary".into());
        r.header_pattern = Some(HeaderPattern::Valid(regex::Regex::new("^Do").unwrap()));
        let d = |pairs: &[(&str, &str)]| r.decide(&with(pairs), None, cookie);
        assert!(d(&[("canary", "DoCanary")]).0);
        assert!(!d(&[("canary", "DoSomething")]).0);
        assert!(
            !d(&[("canary", "always")]).0,
            "with a value, always is a value like any other"
        );
        r.header_value = None;
        r.header_pattern = Some(HeaderPattern::Invalid("[][**da?$&*".into()));
        r.weight = 100;
        let d = |pairs: &[(&str, &str)]| r.decide(&with(pairs), None, cookie);
        assert_eq!(
            d(&[("canary", "x"), ("cookie", "Canary-By-Cookie=always")]),
            (false, Decided::BrokenPattern)
        );
        // Without the header the pattern is not consulted: the weight decides.
        assert_eq!(d(&[]), (true, Decided::Weight));
    }

    #[test]
    fn weights_and_totals() {
        // Seeded: the count below is the same on every run.
        fastrand::seed(0x0000_6361_6e61_7279);
        let mut r = rule();
        r.weight = 1000;
        r.weight_total = 1000;
        assert!((0..50).all(|_| r.decide(&HeaderMap::new(), None, cookie).0));
        r.weight = 50;
        r.weight_total = 100;
        let canary = (0..2000)
            .filter(|_| r.decide(&HeaderMap::new(), None, cookie).0)
            .count();
        assert!((800..1200).contains(&canary), "{canary} of 2000");
    }

    #[test]
    fn affinity_comes_first() {
        let r = rule();
        let h = with(&[("canary", "never")]);
        assert_eq!(r.decide(&h, Some(true), cookie), (true, Decided::Affinity));
    }
}
