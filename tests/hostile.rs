//! The hostile-request corpus (`tests/hostile/*.yaml`): raw HTTP/1.1 bytes and raw HTTP/2
//! frames sent to a wicket whose pods record exactly what they receive. Each case asserts
//! both what the client got and what the pod got, so a request that is answered correctly
//! but also half-forwarded (or forwarded with another host, another framing, a spoofed
//! header) fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use serde::Deserialize;
use support::h2raw::{Outcome, RawH2};
use support::pod::{Behaviour, Received, RecordingPod};
use support::*;
use wicket::app::Config;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct H1Case {
    name: String,
    send: String,
    status: u16,
    #[serde(flatten)]
    pod: PodExpectation,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct H2Case {
    name: String,
    headers: Vec<(String, String)>,
    #[serde(default)]
    data: Option<String>,
    /// Leave the request body open: HEADERS without END_STREAM, and nothing after.
    #[serde(default)]
    open: bool,
    outcome: H2Expected,
    #[serde(default)]
    pod: Option<String>,
    #[serde(default)]
    line: Option<String>,
    #[serde(default)]
    request_headers: BTreeMap<String, Option<String>>,
}

/// A response status, or `refused`: the stream reset or the connection closed with an
/// error (RFC 9113 §8.1.1 lets a server treat a malformed request either way).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum H2Expected {
    Status(u16),
    Other(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PodExpectation {
    /// `none`, `a` or `b`.
    pod: String,
    #[serde(default)]
    line: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, Option<String>>,
    #[serde(default)]
    body: Option<String>,
    /// false: the pod may see the start of the request, never all of it.
    #[serde(default)]
    complete: Option<bool>,
}

/// `{x*N}` is the character x, N times.
fn expand(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let parsed = after.find('}').and_then(|end| {
            let inner = &after[1..end];
            let (c, n) = inner.split_once('*')?;
            let mut chars = c.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return None;
            };
            Some((c, n.parse::<usize>().ok()?, end))
        });
        match parsed {
            Some((c, n, end)) => {
                out.extend(std::iter::repeat_n(c, n));
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

struct World {
    w: Wicket,
    a: RecordingPod,
    b: RecordingPod,
}

impl World {
    async fn start() -> World {
        let a = RecordingPod::start(Behaviour::Ok).await;
        let b = RecordingPod::start(Behaviour::Ok).await;
        let manifests = format!(
            "{CLASS}{}{}{}{}{}",
            svc("a"),
            slice("a", "a-1", a.addr.port(), &[a.addr.ip().to_string()]),
            svc("b"),
            slice("b", "b-1", b.addr.port(), &[b.addr.ip().to_string()]),
            ingress(
                "site",
                &[
                    ("a.test", "/", "Prefix", "a"),
                    ("b.test", "/", "Prefix", "b")
                ]
            ),
        );
        let mut config = Config::local();
        config.proxy.max_request_body = Some(1024);
        let w = Wicket::start_with(&manifests, config).await;
        World { w, a, b }
    }

    /// Waits until both pods have seen a marker request sent after the case, so whatever
    /// the case forwarded has arrived; returns what each pod got before its marker.
    async fn settle(&self) -> (Vec<Received>, Vec<Received>) {
        let mut out = Vec::new();
        for (host, pod) in [("a.test", &self.a), ("b.test", &self.b)] {
            let reply = self.w.get(host, "/__marker").await;
            assert_eq!(reply.status, 200, "marker through {host}");
            let got = eventually("the marker", || async {
                let got = pod.received();
                got.iter()
                    .any(|r| r.line().starts_with("GET /__marker "))
                    .then_some(got)
            })
            .await;
            out.push(
                got.into_iter()
                    .filter(|r| !r.line().starts_with("GET /__marker "))
                    .collect(),
            );
        }
        let b = out.pop().unwrap();
        let a = out.pop().unwrap();
        (a, b)
    }

    fn clear(&self) {
        self.a.clear();
        self.b.clear();
    }

    /// Checks what the pods got against the expectation; an error says what differs.
    async fn check_pods(
        &self,
        pod: &str,
        line: Option<&str>,
        headers: &BTreeMap<String, Option<String>>,
        body: Option<&str>,
        complete: Option<bool>,
    ) -> Result<(), String> {
        let (a, b) = self.settle().await;
        let (target, other) = match pod {
            "a" => (a, b),
            "b" => (b, a),
            _ => {
                if a.is_empty() && b.is_empty() {
                    return Ok(());
                }
                return Err(format!(
                    "no pod should get anything; a got {a:?}, b got {b:?}"
                ));
            }
        };
        if !other.is_empty() {
            return Err(format!("the other pod got {other:?}"));
        }
        if complete == Some(false) {
            // Whether the head reached the pod before wicket cut the request depends on
            // timing; that it never arrives whole does not.
            return match target.iter().find(|r| r.complete) {
                Some(whole) => Err(format!("pod {pod} got the whole request: {whole:?}")),
                None => Ok(()),
            };
        }
        let [got] = target.as_slice() else {
            return Err(format!("pod {pod} should get one request, got {target:?}"));
        };
        if !got.complete {
            return Err(format!("pod {pod} got an incomplete request: {got:?}"));
        }
        if let Some(line) = line {
            if got.line() != line {
                return Err(format!("request line {:?}, expected {line:?}", got.line()));
            }
        }
        for (name, want) in headers {
            let values = got.header_values(name);
            match want {
                None if !values.is_empty() => {
                    return Err(format!("{name} should be absent, got {values:?}"))
                }
                Some(v) if values != [v.clone()] => {
                    return Err(format!("{name}: expected exactly [{v:?}], got {values:?}"))
                }
                _ => {}
            }
        }
        if let Some(body) = body {
            if got.body != body.as_bytes() {
                return Err(format!(
                    "body {:?}, expected {body:?}",
                    String::from_utf8_lossy(&got.body)
                ));
            }
        }
        Ok(())
    }
}

fn assert_all_passed(failures: &[String], cases: usize) {
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn every_hostile_http1_request_gets_its_answer_and_the_pod_exactly_what_it_should() {
    let cases: Vec<H1Case> =
        serde_yaml_ng::from_str(include_str!("hostile/http1.yaml")).expect("corpus parses");
    assert!(cases.len() >= 50, "the corpus lost cases: {}", cases.len());
    let world = World::start().await;
    let mut failures = Vec::new();
    for case in &cases {
        world.clear();
        let response = world.w.raw(expand(&case.send).as_bytes()).await;
        let status = status_of(&response);
        if status != case.status {
            failures.push(format!(
                "{}: client got {status} ({:?}), expected {}",
                case.name,
                response.lines().next().unwrap_or(""),
                case.status
            ));
            continue;
        }
        let p = &case.pod;
        if let Err(why) = world
            .check_pods(
                &p.pod,
                p.line.as_deref(),
                &p.headers,
                p.body.as_deref().map(expand).as_deref(),
                p.complete,
            )
            .await
        {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert_all_passed(&failures, cases.len());
    world.w.stop().await;
}

#[tokio::test]
async fn every_hostile_http2_request_gets_its_answer_and_the_pod_exactly_what_it_should() {
    let cases: Vec<H2Case> =
        serde_yaml_ng::from_str(include_str!("hostile/http2.yaml")).expect("corpus parses");
    assert!(cases.len() >= 20, "the corpus lost cases: {}", cases.len());
    let world = World::start().await;
    let mut failures = Vec::new();
    for case in &cases {
        world.clear();
        let mut h2 = RawH2::connect(world.w.http).await;
        let fields: Vec<(String, String)> = case
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), expand(v)))
            .collect();
        let refs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        h2.headers(1, &refs, case.data.is_none() && !case.open)
            .await;
        if let Some(data) = &case.data {
            h2.data(1, data.as_bytes(), true).await;
        }
        let outcome = h2.outcome(1).await;
        let as_expected = match (&case.outcome, &outcome) {
            (H2Expected::Status(want), Outcome::Response { status, .. }) => want == status,
            (H2Expected::Other(w), Outcome::Reset(_) | Outcome::GoAway(_)) => w == "refused",
            _ => false,
        };
        if !as_expected {
            failures.push(format!(
                "{}: got {outcome:?}, expected {:?}",
                case.name, case.outcome
            ));
            continue;
        }
        if let Some(pod) = &case.pod {
            if let Err(why) = world
                .check_pods(pod, case.line.as_deref(), &case.request_headers, None, None)
                .await
            {
                failures.push(format!("{}: {why}", case.name));
            }
        }
    }
    assert_all_passed(&failures, cases.len());
    world.w.stop().await;
}

#[test]
fn repetitions_expand() {
    assert_eq!(expand("a{x*3}b{y*0}c"), "axxxbc");
    assert_eq!(expand("{not a repeat}"), "{not a repeat}");
}
