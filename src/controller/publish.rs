//! The handoff: the newest complete snapshot, published atomically.
//!
//! Readers (`load` on the request path) never block and never see a half-built table.
//! An unchanged rebuild is not published and wakes nobody. Each publish logs what changed
//! and every Problem that is new since the previous snapshot — once per change, never per
//! request.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::admin::metrics::Metrics;
use crate::model::{HostMatch, Problem, Snapshot};

/// Where the data plane reads the current snapshot.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// The single writer of the shared snapshot.
pub struct Publisher {
    current: SharedSnapshot,
    generation: watch::Sender<u64>,
    metrics: Option<Arc<Metrics>>,
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

impl Publisher {
    /// Starts with the empty, not-ready snapshot (generation 0).
    pub fn new() -> Self {
        let (generation, _) = watch::channel(0);
        Self {
            current: Arc::new(ArcSwap::from_pointee(Snapshot::empty())),
            generation,
            metrics: None,
        }
    }

    /// Keeps the snapshot gauges (generation, publish time, endpoints, Problems) and the
    /// propagation histogram of `metrics` up to date.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// [`Publisher::publish`] for a change first noticed at `seen`: records how long it
    /// took to reach the data plane.
    pub fn publish_seen(&self, snapshot: Snapshot, seen: Instant) -> bool {
        let published = self.publish(snapshot);
        if let (true, Some(metrics)) = (published, &self.metrics) {
            metrics.propagated(seen.elapsed());
        }
        published
    }

    pub fn shared(&self) -> SharedSnapshot {
        self.current.clone()
    }

    /// Wakes on every publish with the new generation.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Publishes `snapshot` unless it is the same as the current one. Returns whether it was.
    pub fn publish(&self, mut snapshot: Snapshot) -> bool {
        let previous = self.current.load_full();
        if previous.is_ready() && previous.same_content(&snapshot) {
            return false;
        }
        snapshot.generation = previous.generation + 1;
        snapshot.published_at = Some(SystemTime::now());
        log_changes(&previous, &snapshot);
        let generation = snapshot.generation;
        let snapshot = Arc::new(snapshot);
        self.current.store(snapshot.clone());
        if let Some(metrics) = &self.metrics {
            metrics.snapshot(&snapshot);
        }
        self.generation.send_replace(generation);
        true
    }
}

fn log_changes(previous: &Snapshot, next: &Snapshot) {
    let before: BTreeSet<&Problem> = previous.problems.iter().collect();
    let after: BTreeSet<&Problem> = next.problems.iter().collect();
    for problem in after.difference(&before) {
        warn!(
            kind = %problem.object.kind,
            namespace = problem.object.namespace.as_deref().unwrap_or(""),
            name = %problem.object.name,
            reason = %problem.reason,
            "{}", problem.message
        );
    }
    let resolved = before.difference(&after).count();
    let hosts_before = host_names(previous);
    let hosts_after = host_names(next);
    info!(
        generation = next.generation,
        hosts = hosts_after.len(),
        routes = next.table.route_count(),
        hosts_added = hosts_after.difference(&hosts_before).count(),
        hosts_removed = hosts_before.difference(&hosts_after).count(),
        problems = next.problems.len(),
        problems_resolved = resolved,
        "routing table published"
    );
}

/// The hosts of a snapshot, borrowed: a publish allocates no string per host.
fn host_names(snapshot: &Snapshot) -> BTreeSet<&HostMatch> {
    snapshot
        .table
        .virtual_hosts()
        .into_iter()
        .map(|v| &v.host)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ObjectRef, Reason};

    fn with_problem(message: &str) -> Snapshot {
        Snapshot {
            problems: vec![Problem::new(
                ObjectRef::new("File", None, "x"),
                Reason::InvalidManifest,
                message,
            )],
            ..Snapshot::empty()
        }
    }

    #[test]
    fn the_first_publish_makes_generation_one_even_when_empty() {
        let p = Publisher::new();
        assert!(!p.shared().load().is_ready());
        assert!(p.publish(Snapshot::empty()));
        let current = p.shared().load_full();
        assert_eq!(current.generation, 1);
        assert!(current.published_at.is_some());
    }

    #[test]
    fn an_unchanged_rebuild_is_not_published_and_wakes_nobody() {
        let p = Publisher::new();
        let mut rx = p.subscribe();
        assert!(p.publish(with_problem("a")));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert!(!p.publish(with_problem("a")));
        assert!(!rx.has_changed().unwrap());
        assert_eq!(p.shared().load().generation, 1);
        assert!(p.publish(with_problem("b")));
        assert_eq!(*rx.borrow_and_update(), 2);
    }

    #[test]
    fn a_reader_keeps_the_snapshot_it_loaded_across_a_swap() {
        let p = Publisher::new();
        p.publish(with_problem("a"));
        let held = p.shared().load_full();
        p.publish(with_problem("b"));
        assert_eq!(held.problems[0].message, "a");
        assert_eq!(p.shared().load().problems[0].message, "b");
    }

    /// Captures what `f` logs, as text.
    fn logs_of(f: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn each_problem_is_logged_once_when_it_appears_not_on_every_rebuild() {
        let p = Publisher::new();
        let logs = logs_of(|| {
            p.publish(with_problem("port 8080 missing"));
            // Rebuilds that change nothing, or change something else, do not repeat it.
            for _ in 0..5 {
                p.publish(with_problem("port 8080 missing"));
            }
            let mut both = with_problem("port 8080 missing");
            both.problems.push(Problem::new(
                ObjectRef::new("File", None, "y"),
                Reason::InvalidManifest,
                "another",
            ));
            p.publish(both);
        });
        assert_eq!(logs.matches("port 8080 missing").count(), 1, "{logs}");
        assert_eq!(logs.matches("another").count(), 1, "{logs}");
        assert_eq!(logs.matches("routing table published").count(), 2, "{logs}");
    }
}
