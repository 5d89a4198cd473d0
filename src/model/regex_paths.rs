//! Regex mode (`use-regex`, `rewrite-target`), as ingress-nginx matches (INGRESS-NGINX.md
//! §B1–B3): once any Ingress of a host asks for it, every path of that host is a
//! case-insensitive regular expression anchored at the start only (`(?i)^<path>`), tried
//! longest path text first, and the first that matches wins.
//!
//! Patterns are compiled with the `regex` crate: matching is linear in the length of the
//! request path whatever the pattern, so no Ingress can make a request slow (no
//! backtracking engine ever runs a user's pattern). Look-around and back-references, which
//! need backtracking, do not compile and are reported.

use std::cmp::Ordering;
use std::fmt;

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::{Serialize, Serializer};

/// The compiled size one path's pattern may take (the regex crate's own default is 10 MiB;
/// an Ingress path needs far less, and thousands of them share a process).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// The pattern ingress-nginx writes for a path of a host in regex mode (`~* "^<path>"`).
pub fn location_pattern(path: &str) -> String {
    format!("(?i)^{path}")
}

/// Whether a path compiles as ingress-nginx would use it in regex mode; the error says why
/// not, in the regex crate's words.
pub fn check_pattern(path: &str) -> Result<(), String> {
    parse(&location_pattern(path)).map(|_| ())
}

/// Whether `pattern` is valid syntax for the regex crate, and its number of groups (the
/// whole match included). Parsing only: compiling takes a thousand times longer (the
/// engine builds its automata), and a snapshot compiles each pattern once, where it is
/// matched.
fn parse(pattern: &str) -> Result<usize, String> {
    regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .map(|hir| hir.properties().explicit_captures_len() + 1)
        .map_err(|e| syntax_error(&e.to_string()))
}

/// The regex crate's syntax error spans lines (the pattern, a caret, the error); the last
/// line says what is wrong.
fn syntax_error(message: &str) -> String {
    let last = message
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    last.trim().trim_start_matches("error: ").to_owned()
}

/// Compiles a pattern with the size limit every user pattern gets; the error says why not,
/// in the regex crate's words.
pub(crate) fn compile(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::Syntax(s) => syntax_error(&s),
            regex::Error::CompiledTooBig(_) => "the pattern is too large".to_owned(),
            other => other.to_string(),
        })
}

/// ingress-nginx's location order in regex mode: longer path text first, equal lengths in
/// descending byte order (two stable sorts in its controller).
pub fn location_order(a: &str, b: &str) -> Ordering {
    b.len().cmp(&a.len()).then_with(|| b.cmp(a))
}

/// The matcher of one host in regex mode: pattern `i` belongs to route `i`, routes are in
/// [`location_order`], so the lowest matching index wins. The patterns are checked when the
/// table is built and compiled into one set on the first request for the host: building
/// the automata is what costs, and most hosts of a rebuilt table see no request before the
/// next change.
#[derive(Clone)]
pub struct RegexPaths {
    patterns: Vec<String>,
    set: std::sync::OnceLock<RegexSet>,
}

impl fmt::Debug for RegexPaths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.patterns).finish()
    }
}

impl RegexPaths {
    /// Checks the paths, in their order. A path that does not parse as a pattern (from an
    /// Ingress that never asked for regexes: `/a(b`) is matched as literal text instead;
    /// its index is returned with the reason, for the caller to report.
    /// `checked`: the path was already found to parse (its Ingress asked for regexes).
    pub fn new<'p>(
        paths: impl IntoIterator<Item = (&'p str, bool)>,
    ) -> (Self, Vec<(usize, String)>) {
        let mut patterns = Vec::new();
        let mut literal = Vec::new();
        for (i, (path, checked)) in paths.into_iter().enumerate() {
            let pattern = location_pattern(path);
            match if checked { Ok(0) } else { parse(&pattern) } {
                Ok(_) => patterns.push(pattern),
                Err(why) => {
                    literal.push((i, why));
                    patterns.push(location_pattern(&regex::escape(path)));
                }
            }
        }
        let paths = Self {
            patterns,
            set: std::sync::OnceLock::new(),
        };
        (paths, literal)
    }

    fn set(&self) -> &RegexSet {
        self.set.get_or_init(|| {
            RegexSetBuilder::new(&self.patterns)
                .size_limit(PATTERN_SIZE_LIMIT.saturating_mul(self.patterns.len().max(1)))
                .build()
                .unwrap_or_else(|_| {
                    // Every pattern parses alone; should the set still be refused (too
                    // large), match every path as literal text rather than lose the host.
                    let escaped: Vec<String> = self
                        .patterns
                        .iter()
                        .map(|p| {
                            let path = p.strip_prefix(&location_pattern("")).unwrap_or(p);
                            location_pattern(&regex::escape(path))
                        })
                        .collect();
                    RegexSet::new(escaped).unwrap_or_else(|_| RegexSet::empty())
                })
        })
    }

    /// The index of the first path matching `path` (runs of `/` already collapsed).
    pub fn first(&self, path: &str) -> Option<usize> {
        self.set().matches(path).iter().next()
    }

    /// Whether each path matches `path`, in order (for `/debug/explain`).
    pub fn each(&self, path: &str) -> Vec<bool> {
        let matches = self.set().matches(path);
        (0..self.patterns.len())
            .map(|i| matches.matched(i))
            .collect()
    }

    /// The pattern of path `i`, as compiled.
    pub fn pattern(&self, i: usize) -> Option<&str> {
        self.patterns.get(i).map(String::as_str)
    }
}

/// A piece of a rewrite target.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// `$n`: capture group `n` of the path's pattern (`$0` is the whole match).
    Group(usize),
}

/// `rewrite-target` on one path: nginx's `rewrite "(?i)<path>" <target> break;`. When the
/// pattern matches the request path, the whole path is replaced by the target with the
/// captures filled in and the query string kept; a target that is an http(s) URL is a 302
/// to it instead.
#[derive(Clone)]
pub struct Rewrite {
    target: String,
    pieces: Box<[Piece]>,
    /// `(?i)<path>`, compiled on the first request that needs it (None: it does not
    /// compile after all, too large: the request goes on unchanged).
    pattern: String,
    regex: std::sync::OnceLock<Option<Regex>>,
    redirect: bool,
}

impl fmt::Debug for Rewrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rewrite")
            .field("pattern", &self.pattern)
            .field("target", &self.target)
            .finish()
    }
}

impl PartialEq for Rewrite {
    fn eq(&self, other: &Self) -> bool {
        self.target == other.target && self.pattern == other.pattern
    }
}

impl Eq for Rewrite {}

impl Serialize for Rewrite {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.target)
    }
}

/// Why a rewrite cannot be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("the path is not a regular expression wicket can use: {0}")]
    Pattern(String),
    #[error("${0} is an nginx variable; only capture groups ($1 to $9) are filled in")]
    Variable(String),
}

impl Rewrite {
    /// The rewrite of `path` (the Ingress path, a pattern) to `target` (already checked for
    /// ingress-nginx's characters). Returns the capture numbers the target uses that the
    /// pattern does not have: they are filled in empty, as nginx does.
    pub fn new(path: &str, target: &str) -> Result<(Self, Vec<usize>), RewriteError> {
        let pattern = format!("(?i){path}");
        let groups = parse(&pattern).map_err(RewriteError::Pattern)?;
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = target;
        while let Some(at) = rest.find('$') {
            text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            match after.as_bytes().first() {
                Some(d) if d.is_ascii_digit() => {
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Group(usize::from(d - b'0')));
                    rest = &after[1..];
                }
                _ => {
                    let name: String = after
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    return Err(RewriteError::Variable(name));
                }
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let unknown = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Group(n) if *n >= groups => Some(*n),
                _ => None,
            })
            .collect();
        let redirect = target.starts_with("http://") || target.starts_with("https://");
        Ok((
            Self {
                target: target.to_owned(),
                pieces: pieces.into_boxed_slice(),
                pattern,
                regex: std::sync::OnceLock::new(),
                redirect,
            },
            unknown,
        ))
    }

    /// The target as written.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The target is a URL: the client is redirected (302) instead of proxied.
    pub fn is_redirect(&self) -> bool {
        self.redirect
    }

    /// The new path (or URL) for a request path, with `query` appended; None when the
    /// pattern does not match (the request goes on unchanged).
    pub fn apply(&self, path: &str, query: Option<&str>) -> Option<String> {
        let regex = self.regex.get_or_init(|| compile(&self.pattern).ok());
        let caps = regex.as_ref()?.captures(path)?;
        let mut out = String::with_capacity(self.target.len() + path.len());
        for piece in self.pieces.iter() {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Group(n) => out.push_str(caps.get(*n).map_or("", |m| m.as_str())),
            }
        }
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(path: &str, target: &str, request: &str) -> Option<String> {
        let (r, _) = Rewrite::new(path, target).unwrap();
        let (p, q) = match request.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (request, None),
        };
        r.apply(p, q)
    }

    #[test]
    fn captures_fill_the_target_as_the_ingress_nginx_examples_show() {
        // e2e annotations/rewrite.go and the rewrite example of its docs.
        assert_eq!(
            rewrite("/foo/bar/(.+)", "/new/backend/$1", "/foo/bar/bar").as_deref(),
            Some("/new/backend/bar")
        );
        for (request, expected) in [
            ("/something", "/"),
            ("/something/", "/"),
            ("/something/new", "/new"),
        ] {
            assert_eq!(
                rewrite("/something(/|$)(.*)", "/$2", request).as_deref(),
                Some(expected),
                "{request}"
            );
        }
        for (request, expected) in [
            ("/api/users", "/users"),
            ("/api/", "/"),
            ("/api/v1/users/123", "/v1/users/123"),
        ] {
            assert_eq!(
                rewrite("/api(/|$)(.*)", "/$2", request).as_deref(),
                Some(expected)
            );
        }
    }

    #[test]
    fn the_query_string_is_kept() {
        assert_eq!(
            rewrite("/app(/|$)(.*)", "/$2", "/app/hello?x=1&y").as_deref(),
            Some("/hello?x=1&y")
        );
    }

    #[test]
    fn the_whole_path_is_replaced_even_when_the_match_is_partial() {
        // nginx replaces the URI, not the matched part.
        assert_eq!(
            rewrite("/original", "/rewritten", "/original/more").as_deref(),
            Some("/rewritten")
        );
    }

    #[test]
    fn matching_ignores_case_and_a_missing_group_is_empty() {
        assert_eq!(
            rewrite("/Foo/(.*)", "/x/$1", "/FOO/Bar").as_deref(),
            Some("/x/Bar")
        );
        let (r, unknown) = Rewrite::new("/foo/(.*)", "/x/$1/$3").unwrap();
        assert_eq!(unknown, vec![3]);
        assert_eq!(r.apply("/foo/a", None).as_deref(), Some("/x/a/"));
    }

    #[test]
    fn a_url_target_is_a_redirect() {
        let (r, _) = Rewrite::new("/original/(.*)", "https://bar.example.org/$1").unwrap();
        assert!(r.is_redirect());
        assert_eq!(
            r.apply("/original/a/b/c", None).as_deref(),
            Some("https://bar.example.org/a/b/c")
        );
    }

    #[test]
    fn nginx_variables_and_backtracking_patterns_are_refused() {
        assert_eq!(
            Rewrite::new("/foo", "/$host/x").unwrap_err(),
            RewriteError::Variable("host".into())
        );
        assert!(matches!(
            Rewrite::new("/foo(?=bar)", "/x").unwrap_err(),
            RewriteError::Pattern(_)
        ));
        assert!(check_pattern("/(a)\\1").is_err());
        assert!(check_pattern("/foo/bar/[a-z]{3}").is_ok());
        // Escaped punctuation as PCRE users write it.
        assert!(check_pattern("/api\\/v1\\.json").is_ok());
    }

    #[test]
    fn patterns_are_start_anchored_and_case_insensitive() {
        let (paths, literal) =
            RegexPaths::new([("/foo.+", false), ("/foo", false), ("/[A-Z]{3}", false)]);
        assert!(literal.is_empty());
        assert_eq!(paths.first("/foo/bar"), Some(0));
        assert_eq!(paths.first("/foo"), Some(1));
        assert_eq!(paths.first("/FOObar"), Some(0));
        assert_eq!(paths.first("/uuid"), Some(2));
        assert_eq!(paths.first("/x/foo"), None);
    }

    #[test]
    fn a_path_that_is_no_pattern_matches_as_text() {
        let (paths, literal) = RegexPaths::new([("/a(b", false), ("/", false)]);
        assert_eq!(literal.len(), 1);
        assert_eq!(literal[0].0, 0);
        assert_eq!(paths.first("/a(bc"), Some(0));
        assert_eq!(paths.first("/ab"), Some(1));
    }

    #[test]
    fn locations_are_ordered_longest_first_then_descending() {
        let mut paths = vec![
            "/",
            "/foo",
            "/foo/bar/bar",
            "/foo/bar/[a-z]{3}",
            "/zzz",
            "/aaa",
        ];
        paths.sort_by(|a, b| location_order(a, b));
        assert_eq!(
            paths,
            vec![
                "/foo/bar/[a-z]{3}",
                "/foo/bar/bar",
                "/zzz",
                "/foo",
                "/aaa",
                "/"
            ]
        );
    }
}
