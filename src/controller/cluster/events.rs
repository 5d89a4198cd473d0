//! Kubernetes Events, so `kubectl describe ingress` tells a user what is wrong.
//!
//! The leader turns each Problem about an object in the cluster into one `Warning` Event
//! on that object (reason = the Problem's stable reason), once for as long as the Problem
//! lasts: a rebuild, a resync or a restart of the watch does not repeat it; if the Problem
//! goes away and comes back, it is told again. An Ingress that is newly ours gets one
//! `Normal` `Sync` Event. Events are sent at most [`RATE`] per second after a burst of
//! [`BURST`]; beyond [`QUEUE`] waiting, the oldest are dropped (and counted in the log).
//!
//! Written with the events.k8s.io/v1 API directly rather than kube-runtime's `Recorder`,
//! whose de-duplication key leaves out the message: two different Problems with one
//! reason on one Ingress would show as one Event with the first message.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::View;

pub const BURST: usize = 25;
pub const RATE: u32 = 5;
pub const QUEUE: usize = 1000;
/// The Event API refuses notes over 1 kB.
const NOTE_LIMIT: usize = 1024;

/// Who reports (`reportingController`, `reportingInstance`).
#[derive(Clone, Debug)]
pub struct Reporter {
    pub controller: String,
    pub instance: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Told {
    uid: String,
    reason: String,
    message: String,
}

struct Pending {
    regarding: ObjectReference,
    warning: bool,
    reason: String,
    action: &'static str,
    note: String,
}

/// Sends Events while this replica leads.
pub async fn run(
    client: Client,
    reporter: Reporter,
    mut views: watch::Receiver<Arc<View>>,
    mut leader: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut told: HashSet<Told> = HashSet::new();
    // Ingresses admitted (by uid) during this leadership term.
    let mut admitted: Option<HashSet<String>> = None;
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut dropped = 0usize;
    let mut bucket = Bucket::new();
    loop {
        let next_send = async {
            if queue.is_empty() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep_until(bucket.ready_at()).await;
        };
        let send_next = tokio::select! {
            changed = views.changed() => if changed.is_err() { return } else { false },
            changed = leader.changed() => if changed.is_err() { return } else { false },
            () = next_send => true,
            _ = stop.wait_for(|s| *s) => return,
        };
        if send_next {
            if let Some(event) = queue.pop_front() {
                bucket.take();
                send(&client, &reporter, event, &leader).await;
            }
            continue;
        }
        if !*leader.borrow_and_update() {
            told.clear();
            admitted = None;
            queue.clear();
            continue;
        }
        let view = views.borrow_and_update().clone();

        // Warnings: each Problem once while it lasts.
        let mut now_present = HashSet::new();
        for p in &view.problems {
            let told_key = Told {
                uid: p.regarding.uid.clone().unwrap_or_default(),
                reason: p.reason.clone(),
                message: p.message.clone(),
            };
            if !told.contains(&told_key) {
                queue.push_back(Pending {
                    regarding: p.regarding.clone(),
                    warning: true,
                    reason: p.reason.clone(),
                    action: "Translate",
                    note: p.message.clone(),
                });
            }
            now_present.insert(told_key);
        }
        told = now_present;

        // Sync: an Ingress that became ours during this term; at the start of a term, the
        // ones without a status yet (new, never admitted by any replica).
        let first_view = admitted.is_none();
        let seen = admitted.get_or_insert_with(HashSet::new);
        for ingress in view.ingresses.iter().filter(|i| i.ours) {
            let Some(uid) = ingress.reference.uid.clone() else {
                continue;
            };
            if seen.insert(uid) && (!first_view || ingress.status.is_empty()) {
                queue.push_back(Pending {
                    regarding: ingress.reference.clone(),
                    warning: false,
                    reason: "Sync".into(),
                    action: "Admit",
                    note: format!("admitted by {}", reporter.controller),
                });
            }
        }
        seen.retain(|uid| {
            view.ingresses
                .iter()
                .any(|i| i.ours && i.reference.uid.as_deref() == Some(uid))
        });

        if queue.len() > QUEUE {
            let excess = queue.len() - QUEUE;
            queue.drain(..excess);
            dropped += excess;
            warn!(dropped, "too many Events at once; the oldest were not sent");
        }
    }
}

async fn send(client: &Client, reporter: &Reporter, p: Pending, leader: &watch::Receiver<bool>) {
    let namespace = p
        .regarding
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let now = Timestamp::now();
    let mut note = p.note;
    if note.len() > NOTE_LIMIT {
        let mut cut = NOTE_LIMIT - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}.{:x}",
                p.regarding.name.as_deref().unwrap_or("wicket"),
                now.as_nanosecond()
            )),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(if p.warning { "Warning" } else { "Normal" }.to_owned()),
        reason: Some(p.reason.clone()),
        action: Some(p.action.to_owned()),
        note: Some(note),
        regarding: Some(p.regarding),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    match super::while_leader(leader, api.create(&PostParams::default(), &event)).await {
        Ok(_) => debug!(reason = %p.reason, "Event sent"),
        Err(e) => warn!(reason = %p.reason, error = %e, "cannot send an Event"),
    }
}

/// A token bucket: [`BURST`] at once, then [`RATE`] per second.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new() -> Self {
        Self {
            tokens: BURST as f64,
            at: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.at).as_secs_f64() * f64::from(RATE);
        self.tokens = (self.tokens + earned).min(BURST as f64);
        self.at = now;
    }

    fn ready_at(&mut self) -> Instant {
        self.refill();
        if self.tokens >= 1.0 {
            Instant::now()
        } else {
            Instant::now() + Duration::from_secs_f64((1.0 - self.tokens) / f64::from(RATE))
        }
    }

    fn take(&mut self) {
        self.refill();
        self.tokens -= 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket::new();
        for _ in 0..BURST {
            assert!(b.ready_at() <= Instant::now());
            b.take();
        }
        let wait = b.ready_at() - Instant::now();
        assert!(
            wait > Duration::from_millis(150) && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..RATE {
            assert!(b.ready_at() <= Instant::now());
            b.take();
        }
        assert!(b.ready_at() > Instant::now());
    }
}
