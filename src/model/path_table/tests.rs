use super::*;

/// The obviously-correct matcher the table is checked against: the Ingress specification
/// written out literally, with no cleverness and no speed.
fn reference(rules: &[(PathKind, String, u32)], request: &str) -> Option<u32> {
    if let Some((_, _, v)) = rules
        .iter()
        .find(|(kind, path, _)| *kind == PathKind::Exact && path == request)
    {
        return Some(*v);
    }
    if !request.starts_with('/') {
        return None;
    }
    let request_segments: Vec<&str> = request.split('/').filter(|s| !s.is_empty()).collect();
    rules
        .iter()
        .filter(|(kind, _, _)| *kind == PathKind::Prefix)
        .filter_map(|(_, path, v)| {
            let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let matches = segments.len() <= request_segments.len()
                && segments[..] == request_segments[..segments.len()];
            matches.then_some((segments.len(), *v))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, v)| v)
}

fn table(rules: &[(PathKind, &str)]) -> PathTable {
    let mut t = PathTable::new();
    for (i, (kind, path)) in rules.iter().enumerate() {
        t.insert(*kind, path, i as u32).unwrap();
    }
    t
}

use PathKind::{Exact, Prefix};

/// Every row of the path-matching table in the Kubernetes Ingress documentation.
/// `expected` is the index of the rule that must win, or None for "no match".
#[test]
fn kubernetes_documentation_examples() {
    type Case<'a> = (&'a [(PathKind, &'a str)], &'a str, Option<u32>);
    let cases: &[Case<'_>] = &[
        (&[(Prefix, "/")], "/", Some(0)),
        (&[(Prefix, "/")], "/anything/at/all", Some(0)),
        (&[(Exact, "/foo")], "/foo", Some(0)),
        (&[(Exact, "/foo")], "/bar", None),
        (&[(Exact, "/foo")], "/foo/", None),
        (&[(Exact, "/foo/")], "/foo", None),
        (&[(Prefix, "/foo")], "/foo", Some(0)),
        (&[(Prefix, "/foo")], "/foo/", Some(0)),
        (&[(Prefix, "/foo/")], "/foo", Some(0)),
        (&[(Prefix, "/foo/")], "/foo/", Some(0)),
        (&[(Prefix, "/aaa/bb")], "/aaa/bbb", None),
        (&[(Prefix, "/aaa/bbb")], "/aaa/bbb", Some(0)),
        (&[(Prefix, "/aaa/bbb/")], "/aaa/bbb", Some(0)),
        (&[(Prefix, "/aaa/bbb")], "/aaa/bbb/", Some(0)),
        (&[(Prefix, "/aaa/bbb")], "/aaa/bbb/ccc", Some(0)),
        (&[(Prefix, "/aaa/bbb")], "/aaa/bbbxyz", None),
        (&[(Prefix, "/"), (Prefix, "/aaa")], "/aaa/ccc", Some(1)),
        (
            &[(Prefix, "/"), (Prefix, "/aaa"), (Prefix, "/aaa/bbb")],
            "/aaa/bbb",
            Some(2),
        ),
        (
            &[(Prefix, "/"), (Prefix, "/aaa"), (Prefix, "/aaa/bbb")],
            "/ccc",
            Some(0),
        ),
        (&[(Prefix, "/aaa")], "/ccc", None),
        (&[(Prefix, "/foo"), (Exact, "/foo")], "/foo", Some(1)),
    ];
    for (rules, request, expected) in cases {
        let t = table(rules);
        assert_eq!(
            t.lookup(request),
            *expected,
            "rules {rules:?}, request {request}"
        );
    }
}

#[test]
fn prefix_rule_does_not_match_longer_segment() {
    let t = table(&[(Prefix, "/aaa")]);
    assert_eq!(t.lookup("/aaaccc"), None);
    assert_eq!(t.lookup("/aaa/ccc"), Some(0));
}

#[test]
fn exact_is_case_sensitive_and_never_decoded() {
    let t = table(&[(Exact, "/Foo"), (Prefix, "/a%2Fb")]);
    assert_eq!(t.lookup("/foo"), None);
    assert_eq!(t.lookup("/Foo"), Some(0));
    assert_eq!(t.lookup("/a/b"), None);
    assert_eq!(t.lookup("/a%2Fb/c"), Some(1));
}

#[test]
fn empty_request_segments_are_ignored_for_prefix_but_not_exact() {
    let t = table(&[(Prefix, "/a/b"), (Exact, "/x/y")]);
    assert_eq!(t.lookup("//a///b//c"), Some(0));
    assert_eq!(t.lookup("/x//y"), None);
}

#[test]
fn braces_in_paths_are_literal() {
    let t = table(&[(Prefix, "/{id}"), (Prefix, "/{*rest}")]);
    assert_eq!(t.lookup("/{id}/x"), Some(0));
    assert_eq!(t.lookup("/123"), None);
    assert_eq!(t.lookup("/{*rest}"), Some(1));
}

#[test]
fn duplicate_prefixes_are_refused_whatever_their_spelling() {
    let mut t = PathTable::new();
    t.insert(Prefix, "/foo", 0).unwrap();
    assert!(matches!(
        t.insert(Prefix, "/foo/", 1),
        Err(PathTableError::Duplicate)
    ));
    assert!(matches!(
        t.insert(Prefix, "//foo", 1),
        Err(PathTableError::Duplicate)
    ));
    // The refused rule changed nothing.
    assert_eq!(t.lookup("/foo/x"), Some(0));
    t.insert(Exact, "/foo", 2).unwrap();
    assert!(matches!(
        t.insert(Exact, "/foo", 3),
        Err(PathTableError::Duplicate)
    ));
}

#[test]
fn requests_not_starting_with_a_slash_match_only_exact_rules() {
    let t = table(&[(Prefix, "/"), (Exact, "*")]);
    assert_eq!(t.lookup("*"), Some(1));
    assert_eq!(t.lookup("x/y"), None);
}

const SEGMENTS: &[&str] = &[
    "a", "b", "aa", "ab", "ba", "a.b", "{x}", "{*y}", "%2F", "é", "A", "ab-c", "_",
];

fn random_path(rng: &mut fastrand::Rng, max_segments: usize) -> String {
    let n = rng.usize(0..=max_segments);
    let mut p = String::new();
    for _ in 0..n {
        p.push('/');
        if rng.u8(0..10) == 0 {
            p.push('/');
        }
        p.push_str(SEGMENTS[rng.usize(0..SEGMENTS.len())]);
    }
    if p.is_empty() || rng.bool() {
        p.push('/');
    }
    p
}

/// Thousands of random rule sets, each checked against the reference on many requests.
#[test]
fn table_agrees_with_reference_matcher_on_generated_inputs() {
    let mut rng = fastrand::Rng::with_seed(0x005e_ed0f_70a7);
    let mut compared = 0usize;
    for _ in 0..3_000 {
        let mut t = PathTable::new();
        let mut accepted = Vec::new();
        for i in 0..rng.usize(1..12) {
            let kind = if rng.u8(0..3) == 0 { Exact } else { Prefix };
            let path = random_path(&mut rng, 4);
            match t.insert(kind, &path, i as u32) {
                Ok(()) => accepted.push((kind, path, i as u32)),
                Err(PathTableError::Duplicate) => {
                    // The reference must agree that it is a duplicate.
                    let dup = accepted.iter().any(|(k, p, _)| {
                        *k == kind
                            && match kind {
                                Exact => *p == path,
                                Prefix => normalize_prefix(p) == normalize_prefix(&path),
                            }
                    });
                    assert!(dup, "refused {kind:?} {path} as duplicate of nothing");
                }
                Err(e) => panic!("insert {kind:?} {path}: {e}"),
            }
        }
        for _ in 0..20 {
            let request = random_path(&mut rng, 6);
            assert_eq!(
                t.lookup(&request),
                reference(&accepted, &request),
                "rules {accepted:?}, request {request}"
            );
            compared += 1;
        }
        // Requests built from the rules themselves hit the interesting boundaries.
        for (_, path, _) in &accepted {
            for request in [
                path.clone(),
                format!("{path}x"),
                format!("{path}/x"),
                path.trim_end_matches('/').to_owned(),
            ] {
                assert_eq!(
                    t.lookup(&request),
                    reference(&accepted, &request),
                    "rules {accepted:?}, request {request}"
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 60_000);
}
