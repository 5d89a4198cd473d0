//! A Kubernetes API server double, spoken to over HTTP by the real `kube::Client`.
//!
//! It keeps objects as JSON with a global resourceVersion and a history of watch events,
//! and answers what wicket asks: `/version`; list (with `fieldSelector` on plain fields);
//! watch from a resourceVersion (the history after it, then live events, a BOOKMARK at the
//! start, a `410 Gone` ERROR event when the version was compacted away); get, create,
//! replace (409 on a stale resourceVersion), and JSON merge patches, also on the `status`
//! subresource. Every write is recorded for assertions, with the `x-instance` header of
//! the client that made it (each wicket under test gets its own).
//!
//! Faults to inject: [`ApiServer::set_down`] (every connection dropped, new ones refused:
//! the API server is gone), [`ApiServer::drop_watches`] (open watch streams end mid-way),
//! [`ApiServer::compact`] (old resourceVersions expire, forcing a re-list) and
//! [`ApiServer::partition`] (every request of one instance fails).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;

type Body = BoxBody<Bytes, Infallible>;

/// A resource the double serves: plural, API prefix, kind, namespaced.
type Resource = (&'static str, &'static str, &'static str, bool);

const RESOURCES: &[Resource] = &[
    ("ingresses", "/apis/networking.k8s.io/v1", "Ingress", true),
    (
        "ingressclasses",
        "/apis/networking.k8s.io/v1",
        "IngressClass",
        false,
    ),
    ("services", "/api/v1", "Service", true),
    (
        "endpointslices",
        "/apis/discovery.k8s.io/v1",
        "EndpointSlice",
        true,
    ),
    ("secrets", "/api/v1", "Secret", true),
    ("configmaps", "/api/v1", "ConfigMap", true),
    ("nodes", "/api/v1", "Node", false),
    ("namespaces", "/api/v1", "Namespace", false),
    ("leases", "/apis/coordination.k8s.io/v1", "Lease", true),
    (
        "gatewayclasses",
        "/apis/gateway.networking.k8s.io/v1",
        "GatewayClass",
        false,
    ),
    (
        "gateways",
        "/apis/gateway.networking.k8s.io/v1",
        "Gateway",
        true,
    ),
    (
        "httproutes",
        "/apis/gateway.networking.k8s.io/v1",
        "HTTPRoute",
        true,
    ),
    (
        "grpcroutes",
        "/apis/gateway.networking.k8s.io/v1",
        "GRPCRoute",
        true,
    ),
    (
        "referencegrants",
        "/apis/gateway.networking.k8s.io/v1",
        "ReferenceGrant",
        true,
    ),
    ("events", "/apis/events.k8s.io/v1", "Event", true),
];

fn resource_of_kind(kind: &str) -> &'static str {
    RESOURCES
        .iter()
        .find(|r| r.2 == kind)
        .unwrap_or_else(|| panic!("the double does not serve {kind}"))
        .0
}

/// A write someone made, for assertions.
#[derive(Clone, Debug)]
pub struct Write {
    pub at: Instant,
    pub instance: String,
    pub method: Method,
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub subresource: Option<String>,
    pub body: Value,
}

#[derive(Clone, Debug)]
struct Stored {
    rv: u64,
    resource: &'static str,
    namespace: String,
    kind: &'static str,
    object: Value,
    at: Instant,
}

#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<(&'static str, String, String), Value>,
    history: Vec<Stored>,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted: u64,
    writes: Vec<Write>,
    partitioned: HashSet<String>,
    lists: BTreeMap<&'static str, usize>,
    failing_lists: HashSet<&'static str>,
    /// The Gateway API CRDs are installed: their group is served.
    gateway_api: bool,
}

pub struct ApiServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    live: broadcast::Sender<Stored>,
    /// Bumped to end every open watch stream.
    watches: watch::Sender<u64>,
    down: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    pub async fn start() -> ApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            rv: 100,
            ..State::default()
        }));
        let (live, _) = broadcast::channel(4096);
        let (watches, _) = watch::channel(0);
        let (down, _) = watch::channel(false);
        let shared = Shared {
            state: state.clone(),
            live: live.clone(),
            watches: watches.clone(),
        };
        let task = tokio::spawn(serve(listener, shared, down.subscribe()));
        ApiServer {
            addr,
            state,
            live,
            watches,
            down,
            task,
        }
    }

    /// Installs the Gateway API CRDs: their group is served from now on.
    pub fn install_gateway_api(&self) {
        self.state.lock().unwrap().gateway_api = true;
    }

    /// A kube client for this double; its requests carry `x-instance: instance`.
    pub fn client(&self, instance: &str) -> kube::Client {
        let mut config = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        config.headers.push((
            http::HeaderName::from_static("x-instance"),
            HeaderValue::from_str(instance).unwrap(),
        ));
        config.connect_timeout = Some(Duration::from_secs(1));
        kube::Client::try_from(config).unwrap()
    }

    /// Adds or replaces every object of a YAML stream (namespace `default` unless given);
    /// returns the resourceVersion of the last write.
    pub fn apply_yaml(&self, yaml: &str) -> u64 {
        let mut rv = 0;
        for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap();
            if value.is_null() {
                continue;
            }
            rv = self.apply(value);
        }
        rv
    }

    /// Adds or replaces one object; returns its new resourceVersion.
    pub fn apply(&self, mut object: Value) -> u64 {
        let kind = object["kind"].as_str().unwrap().to_owned();
        let resource = resource_of_kind(&kind);
        let namespaced = RESOURCES.iter().any(|r| r.0 == resource && r.3);
        if namespaced && object["metadata"]["namespace"].is_null() {
            object["metadata"]["namespace"] = json!("default");
        }
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        // stringData is write-only: the API server merges it into data.
        if let Some(Value::Object(strings)) =
            object.as_object_mut().and_then(|o| o.remove("stringData"))
        {
            use base64::Engine as _;
            for (k, v) in strings {
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or(""));
                object["data"][k] = json!(encoded);
            }
        }
        let mut state = self.state.lock().unwrap();
        let existing = state
            .objects
            .get(&(resource, namespace.clone(), name.clone()))
            .cloned();
        if let Some(old) = &existing {
            // Server-owned fields survive a client's replace, as in a real cluster.
            object["metadata"]["uid"] = old["metadata"]["uid"].clone();
            object["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
            if object.get("status").is_none() && old.get("status").is_some() {
                object["status"] = old["status"].clone();
            }
        }
        store(
            &mut state,
            &self.live,
            resource,
            namespace,
            name,
            object,
            existing.is_none(),
        )
    }

    /// Deletes one object (a DELETED watch event); returns whether it existed.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> bool {
        let resource = resource_of_kind(kind);
        let mut state = self.state.lock().unwrap();
        let Some(mut object) =
            state
                .objects
                .remove(&(resource, namespace.to_owned(), name.to_owned()))
        else {
            return false;
        };
        state.rv += 1;
        let rv = state.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let event = Stored {
            rv,
            resource,
            namespace: namespace.to_owned(),
            kind: "DELETED",
            object,
            at: Instant::now(),
        };
        state.history.push(event.clone());
        let _ = self.live.send(event);
        true
    }

    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let resource = resource_of_kind(kind);
        self.state
            .lock()
            .unwrap()
            .objects
            .get(&(resource, namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Objects of one kind (all namespaces).
    pub fn list(&self, kind: &str) -> Vec<Value> {
        let resource = resource_of_kind(kind);
        self.state
            .lock()
            .unwrap()
            .objects
            .iter()
            .filter(|(k, _)| k.0 == resource)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// When the watch event of resourceVersion `rv` was sent out.
    pub fn event_time(&self, rv: u64) -> Option<Instant> {
        self.state
            .lock()
            .unwrap()
            .history
            .iter()
            .find(|e| e.rv == rv)
            .map(|e| e.at)
    }

    pub fn writes(&self) -> Vec<Write> {
        self.state.lock().unwrap().writes.clone()
    }

    /// How many list requests a resource got.
    pub fn lists(&self, kind: &str) -> usize {
        let resource = resource_of_kind(kind);
        self.state
            .lock()
            .unwrap()
            .lists
            .get(resource)
            .copied()
            .unwrap_or(0)
    }

    /// Down: every open connection is dropped and new ones are closed at once. Up again:
    /// served as before, with the history intact (watches resume where they were).
    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
        if down {
            self.drop_watches();
        }
    }

    /// Ends every open watch stream, as a load balancer in front of the API server might.
    pub fn drop_watches(&self) {
        self.watches.send_modify(|n| *n += 1);
    }

    /// Forgets the history: a watch from any resourceVersion seen so far gets 410 Gone,
    /// so watchers must re-list.
    pub fn compact(&self) {
        let mut state = self.state.lock().unwrap();
        state.compacted = state.rv + 1;
        state.history.clear();
    }

    /// List requests of one kind fail with 503 (or work again).
    pub fn fail_lists(&self, kind: &str, fail: bool) {
        let resource = resource_of_kind(kind);
        let mut state = self.state.lock().unwrap();
        if fail {
            state.failing_lists.insert(resource);
        } else {
            state.failing_lists.remove(resource);
        }
    }

    /// Every request of `instance` fails with 503 (it lost its network path to the API
    /// server), or works again.
    pub fn partition(&self, instance: &str, cut: bool) {
        let mut state = self.state.lock().unwrap();
        if cut {
            state.partitioned.insert(instance.to_owned());
        } else {
            state.partitioned.remove(instance);
        }
    }
}

fn store(
    state: &mut State,
    live: &broadcast::Sender<Stored>,
    resource: &'static str,
    namespace: String,
    name: String,
    mut object: Value,
    added: bool,
) -> u64 {
    state.rv += 1;
    let rv = state.rv;
    let meta = &mut object["metadata"];
    meta["resourceVersion"] = json!(rv.to_string());
    if meta["uid"].is_null() {
        meta["uid"] = json!(format!("uid-{resource}-{namespace}-{name}-{rv}"));
    }
    if meta["creationTimestamp"].is_null() {
        meta["creationTimestamp"] = json!(k8s_openapi::jiff::Timestamp::now()
            .round(k8s_openapi::jiff::Unit::Second)
            .unwrap()
            .to_string());
    }
    state
        .objects
        .insert((resource, namespace.clone(), name), object.clone());
    let event = Stored {
        rv,
        resource,
        namespace,
        kind: if added { "ADDED" } else { "MODIFIED" },
        object,
        at: Instant::now(),
    };
    state.history.push(event.clone());
    let _ = live.send(event);
    rv
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<State>>,
    live: broadcast::Sender<Stored>,
    watches: watch::Sender<u64>,
}

async fn serve(listener: tokio::net::TcpListener, shared: Shared, mut down: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                if *down.borrow() {
                    drop(stream);
                    continue;
                }
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            changed = down.changed() => {
                if changed.is_err() { return }
                if *down.borrow_and_update() {
                    connections.abort_all();
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

fn full(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    full(
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
        }),
    )
}

/// `/api/v1/...` or `/apis/G/V/...` → (resource, namespace, name, subresource).
type Routed = (&'static Resource, String, Option<String>, Option<String>);

fn route(path: &str) -> Option<Routed> {
    for r in RESOURCES {
        let Some(rest) = path.strip_prefix(r.1) else {
            continue;
        };
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let (namespace, tail) = match parts.as_slice() {
            ["namespaces", ns, tail @ ..] if r.3 => (ns.to_string(), tail),
            tail => (String::new(), tail),
        };
        match tail {
            [res] if *res == r.0 => return Some((r, namespace, None, None)),
            [res, name] if *res == r.0 => {
                return Some((r, namespace, Some(name.to_string()), None))
            }
            [res, name, sub] if *res == r.0 => {
                return Some((r, namespace, Some(name.to_string()), Some(sub.to_string())))
            }
            _ => {}
        }
    }
    None
}

fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    req.uri().query().map(url_decode_pairs).unwrap_or_default()
}

fn url_decode_pairs(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `fieldSelector=a.b=value,...` on plain fields.
fn selected(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| {
        let Some((path, want)) = term.split_once('=') else {
            return true;
        };
        let mut v = object;
        for part in path.split('.') {
            v = &v[part];
        }
        v.as_str() == Some(want)
    })
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let instance = req
        .headers()
        .get("x-instance")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if shared.state.lock().unwrap().partitioned.contains(&instance) {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "partitioned",
        );
    }
    if req.uri().path() == "/version" {
        return full(
            StatusCode::OK,
            json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-double",
                "gitCommit": "0", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
            }),
        );
    }
    if let Some(rest) = req
        .uri()
        .path()
        .strip_prefix("/apis/gateway.networking.k8s.io")
    {
        if !shared.state.lock().unwrap().gateway_api {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
        if rest == "/v1" {
            let resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|r| r.1 == "/apis/gateway.networking.k8s.io/v1")
                .map(|r| {
                    json!({
                        "name": r.0, "singularName": "", "namespaced": r.3, "kind": r.2,
                        "verbs": ["get", "list", "watch", "patch"],
                    })
                })
                .collect();
            return full(
                StatusCode::OK,
                json!({
                    "kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": "gateway.networking.k8s.io/v1", "resources": resources,
                }),
            );
        }
    }
    let Some((resource, namespace, name, sub)) = route(req.uri().path()) else {
        return status(StatusCode::NOT_FOUND, "NotFound", "no such path");
    };
    let q = query(&req);
    let method = req.method().clone();
    let body: Value = if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
        let bytes = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    let (plural, _, kind, _) = *resource;
    if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
        let name = name
            .clone()
            .or_else(|| body["metadata"]["name"].as_str().map(str::to_owned))
            .unwrap_or_default();
        shared.state.lock().unwrap().writes.push(Write {
            at: Instant::now(),
            instance: instance.clone(),
            method: method.clone(),
            resource: plural.to_owned(),
            namespace: namespace.clone(),
            name,
            subresource: sub.clone(),
            body: body.clone(),
        });
    }
    match (method.clone(), name) {
        (Method::GET, None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch_response(shared, plural, namespace, q)
        }
        (Method::GET, None) => {
            let mut state = shared.state.lock().unwrap();
            *state.lists.entry(plural).or_default() += 1;
            if state.failing_lists.contains(plural) {
                return status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "list refused",
                );
            }
            let items: Vec<Value> = state
                .objects
                .iter()
                .filter(|((r, ns, _), _)| {
                    *r == plural && (namespace.is_empty() || *ns == namespace)
                })
                .filter(|(_, v)| selected(v, q.get("fieldSelector")))
                .map(|(_, v)| v.clone())
                .collect();
            full(
                StatusCode::OK,
                json!({
                    "kind": format!("{kind}List"), "apiVersion": "v1",
                    "metadata": { "resourceVersion": state.rv.to_string() },
                    "items": items,
                }),
            )
        }
        (Method::GET, Some(name)) => {
            let state = shared.state.lock().unwrap();
            match state.objects.get(&(plural, namespace, name.clone())) {
                Some(o) => full(StatusCode::OK, o.clone()),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{plural} {name:?} not found"),
                ),
            }
        }
        (Method::POST, None) => {
            let name = body["metadata"]["name"].as_str().unwrap_or("").to_owned();
            let mut state = shared.state.lock().unwrap();
            if state
                .objects
                .contains_key(&(plural, namespace.clone(), name.clone()))
            {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("{plural} {name:?} already exists"),
                );
            }
            let mut object = body;
            object["metadata"]["namespace"] = json!(namespace);
            store(
                &mut state,
                &shared.live,
                plural,
                namespace.clone(),
                name.clone(),
                object,
                true,
            );
            let stored = state.objects[&(plural, namespace, name)].clone();
            full(StatusCode::CREATED, stored)
        }
        (Method::PUT, Some(name)) => {
            let mut state = shared.state.lock().unwrap();
            let key = (plural, namespace.clone(), name.clone());
            let Some(current) = state.objects.get(&key).cloned() else {
                return status(StatusCode::NOT_FOUND, "NotFound", "not found");
            };
            if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            let mut object = body;
            object["metadata"]["uid"] = current["metadata"]["uid"].clone();
            object["metadata"]["creationTimestamp"] =
                current["metadata"]["creationTimestamp"].clone();
            updated(&mut state, &shared.live, key, object)
        }
        (Method::PATCH, Some(name)) => {
            let mut state = shared.state.lock().unwrap();
            let key = (plural, namespace.clone(), name.clone());
            let Some(mut object) = state.objects.get(&key).cloned() else {
                return status(StatusCode::NOT_FOUND, "NotFound", "not found");
            };
            match sub.as_deref() {
                // The status subresource changes status only.
                Some("status") => merge(&mut object["status"], &body["status"]),
                _ => merge(&mut object, &body),
            }
            updated(&mut state, &shared.live, key, object)
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "not supported by the double",
        ),
    }
}

/// Stores a changed object (MODIFIED) and answers with it.
fn updated(
    state: &mut State,
    live: &broadcast::Sender<Stored>,
    key: (&'static str, String, String),
    object: Value,
) -> Response<Body> {
    let (resource, namespace, name) = key.clone();
    store(state, live, resource, namespace, name, object, false);
    full(StatusCode::OK, state.objects[&key].clone())
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let Value::Object(t) = target else { return };
    for (k, v) in patch {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn watch_response(
    shared: &Shared,
    resource: &'static str,
    namespace: String,
    q: BTreeMap<String, String>,
) -> Response<Body> {
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let selector = q.get("fieldSelector").cloned();
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let mut live = shared.live.subscribe();
    let mut ended = shared.watches.subscribe();
    let (backlog, current, gone) = {
        let state = shared.state.lock().unwrap();
        let gone = from < state.compacted;
        let backlog: Vec<Stored> = state
            .history
            .iter()
            .filter(|e| e.rv > from)
            .cloned()
            .collect();
        (backlog, state.rv, gone)
    };
    let kind = RESOURCES.iter().find(|r| r.0 == resource).unwrap().2;
    let api_version = RESOURCES.iter().find(|r| r.0 == resource).unwrap().1;
    let api_version = api_version
        .trim_start_matches("/apis/")
        .trim_start_matches("/api/")
        .to_owned();
    let matches = move |e: &Stored| {
        e.resource == resource
            && (namespace.is_empty() || e.namespace == namespace)
            && selected(&e.object, selector.as_ref())
    };
    let line = |kind: &str, object: &Value| {
        Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
    };
    tokio::spawn(async move {
        if gone {
            let status = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {from}"), "reason": "Expired", "code": 410,
            });
            let _ = tx.send(line("ERROR", &status)).await;
            return;
        }
        for e in backlog.iter().filter(|e| matches(e)) {
            if tx.send(line(e.kind, &e.object)).await.is_err() {
                return;
            }
        }
        // Every event up to `current` was in the backlog; later ones come live (and may
        // have been in the backlog too: skipped by version).
        let mut last = current.max(from);
        if bookmarks {
            let bookmark = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last.to_string()}});
            if tx.send(line("BOOKMARK", &bookmark)).await.is_err() {
                return;
            }
        }
        ended.borrow_and_update();
        loop {
            tokio::select! {
                event = live.recv() => match event {
                    Ok(e) => {
                        if e.rv <= last || !matches(&e) { continue }
                        last = e.rv;
                        if tx.send(line(e.kind, &e.object)).await.is_err() { return }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ended.changed() => return,
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(ChannelBody(rx).boxed())
        .unwrap()
}

/// A streaming body fed by a channel: the watch stream.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}
