//! Cluster mode: the same index as the manifests source, fed by API watchers, plus what only
//! a cluster has: leader election, Ingress status and Events.
//!
//! ```text
//!  watchers (per kind) ──Change──> index loop ──(debounced build)──> Publisher
//!                                       └──View──> status writer ─┐ leader only
//!                                                  event writer  ─┘ (Lease)
//! ```
//!
//! The first snapshot is published only once every watcher has finished its first list,
//! so `/readyz` never turns ready on a partial table. After that, each change is built and
//! published after [`QUIET`] without further changes, and at most [`MAX_DELAY`] after the
//! first one (a rolling update's burst of EndpointSlice changes becomes one build). While
//! the API server is unreachable, the last snapshot stays in force and readiness holds.

pub mod events;
pub mod gateway_status;
pub mod gateway_watch;
pub mod lease;
pub mod status;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use tokio::sync::{mpsc, watch as tokio_watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info};

use super::index::{Index, Key, Object};
use super::publish::Publisher;
use super::{translate, Settings};
use crate::model::Snapshot;
use crate::telemetry::error_chain;
use lease::ElectionSettings;
use status::{Address, PublishFrom};
use watch::Change;

/// How long a build waits for the Secrets an Ingress has just named to be listed (their
/// routes would answer 503 meanwhile), at most.
pub const NAMED_WAIT: Duration = Duration::from_secs(2);

/// A change is built this long after the last change of a burst...
pub const QUIET: Duration = Duration::from_millis(10);
/// ... and never later than this after the first one.
pub const MAX_DELAY: Duration = Duration::from_millis(50);

/// What cluster mode needs besides the translation settings.
#[derive(Clone)]
pub struct ClusterOptions {
    pub client: Client,
    /// `--watch-namespace`; empty: all namespaces.
    pub namespaces: Vec<String>,
    pub publish: PublishFrom,
    pub election: ElectionSettings,
    /// `reportingController` of Events.
    pub controller_name: String,
    /// How often the API server is asked whether the Gateway API CRDs are installed, while
    /// they are not; None: Gateway API objects are not watched at all (`--no-gateway-api`).
    pub gateway_api_recheck: Option<Duration>,
}

/// See [`ClusterOptions::gateway_api_recheck`].
pub const GATEWAY_API_RECHECK: Duration = Duration::from_secs(30);

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("namespaces", &self.namespaces)
            .field("publish", &self.publish)
            .field("election", &self.election)
            .field("controller_name", &self.controller_name)
            .finish_non_exhaustive()
    }
}

/// What the leader's writers need from one build: each Ingress with whether it is ours
/// and its current status, the addresses to publish, and the Problems to report.
#[derive(Debug, Default, PartialEq)]
pub struct View {
    pub ingresses: Vec<IngressState>,
    /// `None`: nothing to publish (no flag, or the publish Service has no address yet).
    pub addresses: Option<Vec<Address>>,
    pub problems: Vec<Reported>,
    /// Gateway API objects whose status should change.
    pub gateway: Vec<gateway_status::Desired>,
}

#[derive(Debug, PartialEq)]
pub struct IngressState {
    pub key: Key,
    pub reference: ObjectReference,
    pub resource_version: Option<String>,
    pub ours: bool,
    pub status: Vec<Address>,
}

/// A Problem about an object that exists in the cluster.
#[derive(Debug, PartialEq)]
pub struct Reported {
    pub regarding: ObjectReference,
    pub reason: String,
    pub message: String,
}

/// Starts the watchers, the index loop, the election and the leader's writers; returns
/// their tasks and whether this replica leads (for the dashboard).
pub fn start(
    options: ClusterOptions,
    settings: Settings,
    publisher: Publisher,
    stop: tokio_watch::Receiver<bool>,
) -> (Vec<JoinHandle<()>>, tokio_watch::Receiver<bool>) {
    let mut extra = Vec::new();
    for key in [
        &settings.default_backend_service,
        &settings.default_certificate,
    ]
    .into_iter()
    .flatten()
    {
        extra.push(key.namespace.clone());
    }
    if let PublishFrom::Service(key) = &options.publish {
        extra.push(key.namespace.clone());
    }
    let scopes = watch::scopes(&options.namespaces, &extra);
    let (tx, rx) = mpsc::channel(1024);
    let mut tasks = Vec::new();
    for (stream, scope) in scopes.iter().enumerate() {
        tasks.push(tokio::spawn(watch::follow(
            options.client.clone(),
            scope.clone(),
            stream,
            tx.clone(),
        )));
    }
    // The Gateway API follower is one more stream readiness waits for.
    let mut streams = scopes.len();
    if let Some(recheck) = options.gateway_api_recheck {
        tasks.push(tokio::spawn(gateway_watch::follow_gateway_api(
            options.client.clone(),
            options.namespaces.clone(),
            streams,
            tx.clone(),
            recheck,
        )));
        streams += 1;
    }
    let named = Named {
        client: options.client.clone(),
        tx,
        running: std::collections::BTreeMap::new(),
        unlisted: std::collections::BTreeSet::new(),
    };
    let watchers: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();

    let (views_tx, views) = tokio_watch::channel(Arc::new(View::default()));
    let (leader_tx, leader) = tokio_watch::channel(false);
    let reporter = events::Reporter {
        controller: options.controller_name.clone(),
        instance: options.election.identity.clone(),
    };
    info!(
        namespaces = ?options.namespaces,
        watchers = scopes.len(),
        lease = %format!("{}/{}", options.election.namespace, options.election.name),
        identity = %options.election.identity,
        "watching the API server"
    );
    let index_loop = tokio::spawn({
        let stop = stop.clone();
        let publish = options.publish.clone();
        let client = options.client.clone();
        async move {
            let mut settings = settings;
            read_zone(&client, &mut settings.locality).await;
            run_index(
                rx, named, streams, settings, publish, publisher, views_tx, stop,
            )
            .await;
            for w in watchers {
                w.abort();
            }
        }
    });
    tasks.push(index_loop);
    tasks.push(tokio::spawn(lease::run(
        options.client.clone(),
        options.election,
        leader_tx,
        stop.clone(),
    )));
    tasks.push(tokio::spawn(status::run(
        options.client.clone(),
        views.clone(),
        leader.clone(),
        stop.clone(),
    )));
    tasks.push(tokio::spawn(gateway_status::run(
        options.client.clone(),
        views.clone(),
        leader.clone(),
        stop.clone(),
    )));
    let leading = leader.clone();
    tasks.push(tokio::spawn(events::run(
        options.client,
        reporter,
        views,
        leader,
        stop,
    )));
    (tasks, leading)
}

/// The label a Node's zone is read from.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// How long start-up waits for this replica's Node.
const NODE_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Without `--zone`, this replica's zone is its Node's [`ZONE_LABEL`]: one read at start-up
/// (RBAC `get` on nodes). A Node that cannot be read turns the zone preference off with one
/// warning; nothing retries per request or per build.
async fn read_zone(client: &Client, here: &mut crate::model::Locality) {
    if here.zone.is_some() {
        return;
    }
    let Some(node) = here.node.clone() else {
        here.zone_source =
            "no --zone, and no node name (NODE_NAME or --node-name) to read it from".to_owned();
        return;
    };
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let read = tokio::time::timeout(NODE_READ_TIMEOUT, nodes.get(&node)).await;
    let outcome = match read {
        Ok(Ok(meta)) => Ok(meta
            .metadata
            .labels
            .and_then(|mut l| l.remove(ZONE_LABEL))
            .filter(|z| !z.trim().is_empty())),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(_) => Err(format!(
            "no answer within {} s",
            NODE_READ_TIMEOUT.as_secs()
        )),
    };
    match outcome {
        Ok(Some(zone)) => {
            info!(%node, %zone, "zone read from the Node's {ZONE_LABEL} label");
            here.zone_source = format!("label {ZONE_LABEL} of Node {node}");
            here.zone = Some(Arc::from(zone.trim()));
        }
        Ok(None) => {
            info!(%node, "the Node has no {ZONE_LABEL} label: zone topology hints are not used");
            here.zone_source = format!("Node {node} has no {ZONE_LABEL} label");
        }
        Err(e) => {
            tracing::warn!(%node, error = %e, "cannot read this replica's Node: zone topology hints are not used (give --zone, or allow get on nodes)");
            here.zone_source = format!("Node {node} could not be read: {e}");
        }
    }
}

/// The watchers of the Secrets Ingresses name (one per Secret), started and stopped as
/// Ingresses come and go.
struct Named {
    client: Client,
    tx: mpsc::Sender<Change>,
    running: std::collections::BTreeMap<Key, tokio::task::AbortHandle>,
    /// Started, not listed yet.
    unlisted: std::collections::BTreeSet<Key>,
}

impl Named {
    /// Watches exactly the Secrets the Ingresses of `index` name; forgets the others.
    fn follow(&mut self, index: &mut Index) {
        let wanted = watch::named_secrets(&index.ingresses);
        self.running.retain(|key, task| {
            let keep = wanted.contains(key);
            if !keep {
                task.abort();
                index.named_secrets.remove(key);
            }
            keep
        });
        self.unlisted.retain(|k| wanted.contains(k));
        for key in wanted {
            if !self.running.contains_key(&key) {
                let task = tokio::spawn(watch::follow_named(
                    self.client.clone(),
                    key.clone(),
                    self.tx.clone(),
                ));
                self.running.insert(key.clone(), task.abort_handle());
                self.unlisted.insert(key);
            }
        }
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        for task in self.running.values() {
            task.abort();
        }
    }
}

/// Applies changes, builds and publishes (debounced), and hands the writers their view.
#[allow(clippy::too_many_arguments)]
async fn run_index(
    mut rx: mpsc::Receiver<Change>,
    mut named: Named,
    streams: usize,
    settings: Settings,
    publish: PublishFrom,
    publisher: Publisher,
    views: tokio_watch::Sender<Arc<View>>,
    mut stop: tokio_watch::Receiver<bool>,
) {
    let mut index = Index::new();
    let mut synced = vec![false; streams];
    let mut all_synced = false;
    // First and last unbuilt change.
    let mut pending: Option<(Instant, Instant)> = None;
    loop {
        let build_at = pending.filter(|_| all_synced).map(|(first, last)| {
            let at = (last + QUIET).min(first + MAX_DELAY);
            if named.unlisted.is_empty() {
                at
            } else {
                // A Secret just named: wait for it (its listing is a change too).
                at.max(first + NAMED_WAIT)
            }
        });
        let due = async {
            match build_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            change = rx.recv() => {
                let Some(change) = change else { return };
                let now = Instant::now();
                // The Secrets to watch by name change only with the Ingresses.
                let mut ingresses = touches_ingresses(&change);
                apply(&mut index, change, &mut synced, &mut named);
                // Take whatever else is already queued in the same step.
                while let Ok(change) = rx.try_recv() {
                    ingresses |= touches_ingresses(&change);
                    apply(&mut index, change, &mut synced, &mut named);
                }
                if ingresses {
                    named.follow(&mut index);
                }
                pending = Some(pending.map_or((now, now), |(first, _)| (first, now)));
                if !all_synced && synced.iter().all(|s| *s) {
                    all_synced = true;
                    info!("initial list complete for every watched kind");
                }
                continue;
            }
            () = due => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let seen = pending.map_or_else(Instant::now, |(first, _)| first);
        pending = None;
        let settings = settings.clone();
        let publish = publish.clone();
        let previous = publisher.shared().load_full();
        let built = tokio::task::spawn_blocking(move || {
            let snapshot = translate::build_reusing(&index, &settings, Some(&previous));
            let view = view_of(
                &index,
                &snapshot,
                &publish,
                &settings.gateway_controller_name,
            );
            (index, snapshot, view)
        })
        .await;
        let (snapshot, view);
        (index, snapshot, view) = match built {
            Ok(built) => built,
            Err(e) => {
                error!(error = %e, "building the routing table failed; the last one stays in force");
                return;
            }
        };
        publisher.publish_seen(snapshot, seen.into_std());
        // The rebuild's temporaries and the old table's replaced parts are free now.
        crate::memory::release_freed();
        views.send_if_modified(|current| {
            if **current == view {
                false
            } else {
                *current = Arc::new(view);
                true
            }
        });
    }
}

fn touches_ingresses(change: &Change) -> bool {
    match change {
        Change::Apply(object) => object.kind() == crate::controller::index::Kind::Ingress,
        Change::Delete(kind, _) | Change::Reset { kind, .. } => {
            *kind == crate::controller::index::Kind::Ingress
        }
        Change::Named(..) | Change::Listed(_) => false,
    }
}

fn apply(index: &mut Index, change: Change, synced: &mut [bool], named: &mut Named) {
    match change {
        Change::Named(key, object) => {
            // A late message from a watcher stopped since is dropped.
            if named.running.contains_key(&key) {
                named.unlisted.remove(&key);
                match object {
                    Some(Object::Secret(secret)) => {
                        index.named_secrets.insert(key, secret);
                    }
                    _ => {
                        index.named_secrets.remove(&key);
                    }
                }
            }
        }
        Change::Listed(stream) => {
            if let Some(s) = synced.get_mut(stream) {
                *s = true;
            }
        }
        Change::Apply(object) => index.apply(object),
        Change::Delete(kind, key) => index.delete(kind, &key),
        Change::Reset {
            stream,
            kind,
            namespace,
            objects,
        } => {
            match namespace {
                Some(ns) => index.reset_namespace(kind, &ns, objects),
                None => index.reset(kind, objects),
            }
            if let Some(s) = synced.get_mut(stream) {
                *s = true;
            }
        }
    }
}

/// The writers' view of one build.
fn view_of(
    index: &Index,
    snapshot: &Snapshot,
    publish: &PublishFrom,
    gateway_controller: &str,
) -> View {
    let not_ours: std::collections::HashSet<(Option<&str>, &str)> = snapshot
        .ignored
        .iter()
        .map(|i| (i.ingress.namespace.as_deref(), i.ingress.name.as_str()))
        .collect();
    let ingresses = index
        .ingresses
        .iter()
        .map(|(key, ingress)| IngressState {
            key: key.clone(),
            reference: reference("networking.k8s.io/v1", "Ingress", &ingress.metadata),
            resource_version: ingress.metadata.resource_version.clone(),
            ours: !not_ours.contains(&(Some(key.namespace.as_str()), key.name.as_str())),
            status: status::ingress_addresses(ingress),
        })
        .collect();
    let addresses = match publish {
        PublishFrom::Nothing => None,
        PublishFrom::Addresses(list) => {
            let mut list = list.clone();
            list.sort();
            list.dedup();
            Some(list)
        }
        PublishFrom::Service(key) => index
            .services
            .get(key)
            .and_then(|s| status::service_addresses(s)),
    };
    let problems = snapshot
        .problems
        .iter()
        .filter_map(|p| {
            let ns = p.object.namespace.as_deref()?;
            let key = Key::new(ns, &p.object.name);
            let meta = match p.object.kind.as_str() {
                "Ingress" => index
                    .ingresses
                    .get(&key)
                    .map(|o| ("networking.k8s.io/v1", &o.metadata)),
                "Service" => index.services.get(&key).map(|o| ("v1", &o.metadata)),
                "Secret" => index.secrets.get(&key).map(|o| ("v1", &o.metadata)),
                "ConfigMap" => index.config_maps.get(&key).map(|o| ("v1", &o.metadata)),
                "EndpointSlice" => index
                    .slices
                    .get(&key)
                    .map(|o| ("discovery.k8s.io/v1", &o.metadata)),
                "Gateway" => index
                    .gateways
                    .get(&key)
                    .map(|o| (crate::controller::gateway_api::API_VERSION, &o.metadata)),
                "HTTPRoute" => index
                    .http_routes
                    .get(&key)
                    .map(|o| (crate::controller::gateway_api::API_VERSION, &o.metadata)),
                "GRPCRoute" => index
                    .grpc_routes
                    .get(&key)
                    .map(|o| (crate::controller::gateway_api::API_VERSION, &o.metadata)),
                _ => None,
            };
            let (api_version, meta) = meta?;
            Some(Reported {
                regarding: reference(api_version, &p.object.kind, meta),
                reason: p.reason.to_string(),
                message: p.message.clone(),
            })
        })
        .collect();
    let gateway =
        gateway_status::desired(index, snapshot, gateway_controller, addresses.as_deref());
    View {
        ingresses,
        addresses,
        problems,
        gateway,
    }
}

fn reference(
    api_version: &str,
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.to_owned()),
        kind: Some(kind.to_owned()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        ..Default::default()
    }
}

/// What wakes a leader-only status writer.
pub(super) enum Turn {
    /// This replica leads: bring the cluster in line with this view.
    Write(Arc<View>),
    /// This replica does not lead (or no longer): forget what was written.
    NotLeading,
}

/// The wake-ups of a leader-only status writer: a new view, a change of leadership, a
/// retry after a failed write, or the stop.
pub(super) struct Turns {
    views: tokio_watch::Receiver<Arc<View>>,
    leader: tokio_watch::Receiver<bool>,
    stop: tokio_watch::Receiver<bool>,
    retry_at: Option<tokio::time::Instant>,
}

impl Turns {
    pub(super) fn new(
        views: tokio_watch::Receiver<Arc<View>>,
        leader: tokio_watch::Receiver<bool>,
        stop: tokio_watch::Receiver<bool>,
    ) -> Self {
        Self {
            views,
            leader,
            stop,
            retry_at: None,
        }
    }

    /// The next thing to do; None once stopped.
    pub(super) async fn next(&mut self) -> Option<Turn> {
        let retry_at = self.retry_at;
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = self.views.changed() => changed.ok()?,
            changed = self.leader.changed() => changed.ok()?,
            () = retry => {}
            _ = self.stop.wait_for(|s| *s) => return None,
        }
        self.retry_at = None;
        if !*self.leader.borrow_and_update() {
            return Some(Turn::NotLeading);
        }
        Some(Turn::Write(self.views.borrow_and_update().clone()))
    }

    /// Whether this replica leads, for [`while_leader`].
    pub(super) fn leader(&self) -> &tokio_watch::Receiver<bool> {
        &self.leader
    }

    /// Wakes the writer again after `after`, unless something else wakes it first.
    pub(super) fn retry_after(&mut self, after: Duration) {
        self.retry_at = Some(tokio::time::Instant::now() + after);
    }
}

/// How long one status or Event write may take (kube's client retries 429/503/504 with
/// backoff; past this the write is given up and tried again later).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("no answer within {WRITE_TIMEOUT:?}")]
    Timeout,
    #[error("no longer the leader")]
    NotLeader,
}

/// Runs a leader-only write, abandoned the moment this replica stops leading, so a write
/// (or kube's retries of it) cannot land after another replica has taken over.
pub async fn while_leader<T>(
    leader: &tokio_watch::Receiver<bool>,
    write: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, WriteError> {
    let mut leader = leader.clone();
    if !*leader.borrow_and_update() {
        return Err(WriteError::NotLeader);
    }
    tokio::select! {
        result = tokio::time::timeout(WRITE_TIMEOUT, write) => match result {
            Ok(r) => r.map_err(WriteError::Api),
            Err(_) => Err(WriteError::Timeout),
        },
        _ = leader.wait_for(|l| !*l) => Err(WriteError::NotLeader),
    }
}

/// Connects with the in-cluster service account, else KUBECONFIG / ~/.kube/config, and
/// checks that the API server answers.
pub async fn connect(timeout: Duration) -> Result<Client, ConnectError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| ConnectError::Config(error_chain(&e)))?;
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| ConnectError::Config(error_chain(&e)))?;
    check(&client, &url, timeout).await?;
    Ok(client)
}

/// Asks the API server for its version: the cheapest request every client may make.
pub async fn check(client: &Client, url: &str, timeout: Duration) -> Result<(), ConnectError> {
    let unreachable = |why: String| ConnectError::Unreachable {
        url: url.to_owned(),
        why,
    };
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(version)) => {
            info!(url, version = %version.git_version, "connected to the Kubernetes API server");
            Ok(())
        }
        Ok(Err(e)) => Err(unreachable(error_chain(&e))),
        Err(_) => Err(unreachable(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        ))),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "no Kubernetes configuration: not running in a cluster (no service account) and no \
         usable KUBECONFIG or ~/.kube/config ({0}); point KUBECONFIG at a cluster, or serve \
         a directory of manifests with `wicket run --manifests DIR`"
    )]
    Config(String),
    #[error(
        "cannot reach the Kubernetes API server at {url}: {why}; check that the cluster is \
         up and that KUBECONFIG (or the in-cluster service account) points at it"
    )]
    Unreachable { url: String, why: String },
}
