//! What a Gateway API rule's match looks at: the path (Exact, PathPrefix, RegularExpression),
//! headers, query parameters, method, and whether a request is gRPC.

use http::{HeaderMap, HeaderName, Method};
use regex::Regex;

use crate::model::path_table::collapse_slashes;

/// A regular expression, compared by its text (the snapshot must compare equal to itself).
#[derive(Clone, Debug)]
pub struct Pattern(pub Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}
impl Eq for Pattern {}

impl Pattern {
    /// Compiles `pattern` anchored at both ends (Gateway API regular expressions match the
    /// whole value). The regex crate runs in linear time whatever the pattern.
    pub fn full(pattern: &str) -> Result<Self, String> {
        crate::model::regex_paths::compile(&format!("^(?:{pattern})$")).map(Pattern)
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        let s = self.0.as_str();
        s.strip_prefix("^(?:")
            .and_then(|s| s.strip_suffix(")$"))
            .unwrap_or(s)
    }
}

/// A rule's path match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    /// Byte-equal to the request path.
    Exact(String),
    /// Element-wise prefix, stored normalised (`/a/b`, never a trailing `/`; `/` for all).
    Prefix(String),
    /// The whole path matches the pattern.
    Regex(Pattern),
}

impl PathMatch {
    pub fn kind(&self) -> &'static str {
        match self {
            PathMatch::Exact(_) => "Exact",
            PathMatch::Prefix(_) => "PathPrefix",
            PathMatch::Regex(_) => "RegularExpression",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
            PathMatch::Regex(r) => r.source(),
        }
    }

    /// Whether the request path (no query) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => {
                let path = collapse_slashes(path);
                p == "/"
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            PathMatch::Regex(r) => r.0.is_match(path),
        }
    }
}

/// An exact value or a pattern, for header and query-parameter matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueMatch {
    Exact(String),
    Regex(Pattern),
}

impl ValueMatch {
    fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueMatch::Exact(v) => v.as_bytes() == value,
            ValueMatch::Regex(r) => std::str::from_utf8(value).is_ok_and(|v| r.0.is_match(v)),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            ValueMatch::Exact(v) => v.clone(),
            ValueMatch::Regex(r) => format!("~{}", r.source()),
        }
    }
}

/// What a match asks beyond the path; all must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    pub method: Option<Method>,
    /// The first value of each header counts (names are case-insensitive by type).
    pub headers: Vec<(HeaderName, ValueMatch)>,
    /// The first occurrence of each parameter counts; names are case-sensitive; names and
    /// values are compared percent-decoded.
    pub query: Vec<(String, ValueMatch)>,
}

/// What [`Conditions`] look at in a request.
#[derive(Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
}

impl Conditions {
    pub fn holds(&self, req: &RequestFacts<'_>) -> bool {
        if self.method.as_ref().is_some_and(|m| m != req.method) {
            return false;
        }
        for (name, want) in &self.headers {
            match req.headers.get(name) {
                Some(v) if want.matches(v.as_bytes()) => {}
                _ => return false,
            }
        }
        for (name, want) in &self.query {
            let first = req.query.and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v)
            });
            match first {
                Some(v) if want.matches(v.as_bytes()) => {}
                _ => return false,
            }
        }
        true
    }
}

/// Whether a request is gRPC: its `content-type` is `application/grpc` or
/// `application/grpc+...`.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= 16
            && v[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(v.get(16), None | Some(b'+' | b';'))
    })
}
