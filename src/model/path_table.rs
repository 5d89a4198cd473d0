//! The path table of one virtual host: Ingress `Exact` and `Prefix` matching on top of
//! matchit, which stays private to this file.
//!
//! * `Exact` paths live in a hash map and are compared byte for byte with the request path.
//! * A `Prefix` rule is reduced to its segments (`/aaa//bbb/` → `/aaa/bbb`) and inserted as
//!   three matchit routes: `/aaa/bbb`, `/aaa/bbb/` and `/aaa/bbb/{*rest}` — a catch-all never
//!   matches an empty rest, so the first two are needed. matchit prefers the longest static
//!   prefix and backtracks to shorter ones, which is exactly "most segments wins".
//! * The request path has runs of `/` collapsed before the prefix lookup, so empty segments
//!   are dropped on both sides, as the Ingress specification asks.

use std::borrow::Cow;
use std::collections::HashMap;

use foldhash::fast::RandomState;

/// How a rule's path is compared with the request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    Exact,
    Prefix,
}

#[derive(Debug, thiserror::Error)]
pub enum PathTableError {
    #[error("the same path is already routed on this host")]
    Duplicate,
    #[error("the path cannot be routed: {0}")]
    Router(#[source] matchit::InsertError),
}

/// Maps a request path to the index of the route that wins it.
#[derive(Clone, Debug, Default)]
pub struct PathTable {
    exact: HashMap<Box<str>, u32, RandomState>,
    prefix: matchit::Router<u32>,
    /// Normalised prefixes already inserted, to refuse duplicates before touching matchit
    /// and to say which rule a duplicate collides with.
    prefixes: HashMap<Box<str>, u32, RandomState>,
}

impl PathTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule. Duplicates (same kind and same normalised path) are refused, so the
    /// caller decides which of two claimants wins.
    pub fn insert(&mut self, kind: PathKind, path: &str, value: u32) -> Result<(), PathTableError> {
        match kind {
            PathKind::Exact => {
                if self.exact.contains_key(path) {
                    return Err(PathTableError::Duplicate);
                }
                self.exact.insert(path.into(), value);
                Ok(())
            }
            PathKind::Prefix => {
                let normalized = normalize_prefix(path);
                if self.prefixes.contains_key(normalized.as_str()) {
                    return Err(PathTableError::Duplicate);
                }
                let escaped = escape(&normalized);
                let routes = if normalized == "/" {
                    vec!["/".to_owned(), "/{*rest}".to_owned()]
                } else {
                    vec![
                        escaped.clone(),
                        format!("{escaped}/"),
                        format!("{escaped}/{{*rest}}"),
                    ]
                };
                for (i, route) in routes.iter().enumerate() {
                    if let Err(e) = self.prefix.insert(route.clone(), value) {
                        // Never leave half a rule behind.
                        for inserted in &routes[..i] {
                            self.prefix.remove(inserted.clone());
                        }
                        return Err(match e {
                            matchit::InsertError::Conflict { .. } => PathTableError::Duplicate,
                            other => PathTableError::Router(other),
                        });
                    }
                }
                self.prefixes.insert(normalized.into_boxed_str(), value);
                Ok(())
            }
        }
    }

    /// The route for a request path (no query): an equal `Exact` path first, then the
    /// `Prefix` with the most segments.
    pub fn lookup(&self, path: &str) -> Option<u32> {
        if !self.exact.is_empty() {
            if let Some(&v) = self.exact.get(path) {
                return Some(v);
            }
        }
        if self.prefixes.is_empty() || !path.starts_with('/') {
            return None;
        }
        let path = collapse_slashes(path);
        match self.prefix.at(&path) {
            Ok(matched) => Some(*matched.value),
            Err(matchit::MatchError::NotFound) => None,
        }
    }

    /// The rule already holding this exact kind and (normalised) path, if any.
    pub fn find(&self, kind: PathKind, path: &str) -> Option<u32> {
        match kind {
            PathKind::Exact => self.exact.get(path).copied(),
            PathKind::Prefix => self.prefixes.get(normalize_prefix(path).as_str()).copied(),
        }
    }
}

/// `/aaa//bbb/` → `/aaa/bbb`; `/`, `` and `//` → `/`.
pub fn normalize_prefix(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The number of non-empty segments: the precedence of a `Prefix` rule.
pub fn segment_count(path: &str) -> usize {
    path.split('/').filter(|s| !s.is_empty()).count()
}

/// Collapses runs of `/` so that empty segments in the request do not count.
/// Borrows when there is nothing to collapse, which is almost always.
pub(crate) fn collapse_slashes(path: &str) -> Cow<'_, str> {
    if !path.contains("//") {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let mut previous_slash = false;
    for c in path.chars() {
        if c == '/' {
            if !previous_slash {
                out.push(c);
            }
            previous_slash = true;
        } else {
            out.push(c);
            previous_slash = false;
        }
    }
    Cow::Owned(out)
}

/// matchit gives `{` and `}` meaning; a user's path is always literal.
fn escape(path: &str) -> String {
    path.replace('{', "{{").replace('}', "}}")
}

#[cfg(test)]
mod tests;
