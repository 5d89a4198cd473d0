//! Leader election with a `coordination.k8s.io/v1` Lease, the way client-go's
//! leaderelection does it: every retry period the leader renews the Lease (an update with
//! the resourceVersion it read, so two writers cannot both win: the loser gets 409); the
//! others take it over once its record has not changed for a whole lease duration, measured
//! on their own clock (so clock skew between nodes does not matter). A leader that cannot
//! renew for the renew deadline (shorter than the lease duration) steps down before anyone
//! else can take over, so two replicas never write at the same time. On shutdown the
//! leader releases the Lease, and another replica takes over at its next retry.
//!
//! Hand-written rather than a crate: kube-runtime has no leader election, and this is
//! the one place where the exact timing rules matter; they are tested against the API
//! server double.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

/// Where the Lease lives and who we are.
#[derive(Clone, Debug)]
pub struct ElectionSettings {
    /// Lease name (`--election-id`).
    pub name: String,
    /// Lease namespace (`POD_NAMESPACE`).
    pub namespace: String,
    /// This replica's identity in `holderIdentity` (`POD_NAME`).
    pub identity: String,
    /// How long a Lease that is not renewed stays held (`--election-lease-duration`).
    pub lease_duration: Duration,
}

impl ElectionSettings {
    /// How often the leader renews and the others look: client-go's 2 s for a 15 s lease.
    pub fn retry_period(&self) -> Duration {
        self.lease_duration * 2 / 15
    }

    /// A leader that could not renew for this long stops acting as leader: client-go's
    /// 10 s for a 15 s lease, leaving a margin before another replica may take over.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }
}

/// Runs the election until `stop`; `leader` says whether this replica leads right now.
pub async fn run(
    client: Client,
    settings: ElectionSettings,
    leader: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let mut elector = Elector {
        api,
        settings,
        observed: None,
        last_renewed: None,
    };
    let mut tick = tokio::time::interval(elector.settings.retry_period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let leads = elector.step().await;
        if leads != *leader.borrow() {
            if leads {
                info!(lease = %elector.settings.name, identity = %elector.settings.identity, "became the leader: writing Ingress status and Events");
            } else {
                warn!(lease = %elector.settings.name, identity = %elector.settings.identity, "no longer the leader: stopped writing Ingress status and Events");
            }
            leader.send_replace(leads);
        }
    }
    if *leader.borrow() {
        leader.send_replace(false);
        let limit = elector.settings.retry_period() * 2;
        if tokio::time::timeout(limit, elector.release())
            .await
            .is_err()
        {
            warn!(lease = %elector.settings.name, "cannot release the leader Lease in time; another replica takes over when it expires");
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("no answer in time")]
    Timeout,
}

struct Elector {
    api: Api<Lease>,
    settings: ElectionSettings,
    /// The last Lease record seen (holder, renew time, transitions) and when we saw it change.
    observed: Option<(Record, Instant)>,
    /// When we last renewed successfully (while leading).
    last_renewed: Option<Instant>,
}

#[derive(Clone, Debug, PartialEq)]
struct Record {
    holder: String,
    renew_time: Option<Timestamp>,
    transitions: i32,
}

impl Record {
    fn of(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        Self {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default(),
            renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            transitions: spec.and_then(|s| s.lease_transitions).unwrap_or(0),
        }
    }
}

impl Elector {
    /// One attempt to acquire or renew; returns whether we lead afterwards.
    async fn step(&mut self) -> bool {
        // kube's client retries 503s with backoff for minutes; an attempt that takes longer
        // than two retry periods counts as failed, so the renew deadline is kept.
        let attempt = tokio::time::timeout(
            self.settings.retry_period() * 2,
            self.try_acquire_or_renew(),
        )
        .await
        .unwrap_or_else(|_| Err(StepError::Timeout));
        match attempt {
            Ok(true) => {
                self.last_renewed = Some(Instant::now());
                true
            }
            Ok(false) => {
                self.last_renewed = None;
                false
            }
            Err(e) => {
                // Keep leading through short API trouble, but not past the renew deadline.
                let leads = self
                    .last_renewed
                    .is_some_and(|t| t.elapsed() < self.settings.renew_deadline());
                warn!(lease = %self.settings.name, error = %e, still_leader = leads, "cannot read or renew the leader Lease");
                if !leads {
                    self.last_renewed = None;
                }
                leads
            }
        }
    }

    async fn try_acquire_or_renew(&mut self) -> Result<bool, StepError> {
        let now = Timestamp::now();
        let me = self.settings.identity.clone();
        let Some(current) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observed = Some((Record::of(&created), Instant::now()));
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };

        let record = Record::of(&current);
        let seen_at = match &self.observed {
            Some((r, at)) if *r == record => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((record.clone(), at));
                at
            }
        };
        let held_by_other = !record.holder.is_empty() && record.holder != me;
        if held_by_other && seen_at.elapsed() < self.lease_duration_of(&current) {
            return Ok(false);
        }

        let spec = current.spec.clone().unwrap_or_default();
        let (acquired, transitions) = if record.holder == me {
            (spec.acquire_time.map_or(now, |t| t.0), record.transitions)
        } else {
            (now, record.transitions + 1)
        };
        let mut updated = current;
        updated.spec = Some(self.spec(acquired, now, transitions));
        // `replace` sends the resourceVersion we read: if anyone wrote in between, 409.
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &updated)
            .await
        {
            Ok(written) => {
                if held_by_other || record.holder.is_empty() {
                    info!(lease = %self.settings.name, previous = %record.holder, "took over the leader Lease");
                }
                self.observed = Some((Record::of(&written), Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The holder's own lease duration, which may differ from ours during a rollout.
    fn lease_duration_of(&self, lease: &Lease) -> Duration {
        lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.settings.lease_duration, Duration::from_secs)
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.settings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Gives the Lease up (empty holder), so another replica takes over at once instead
    /// of after a lease duration.
    async fn release(&mut self) {
        let current = match self.api.get_opt(&self.settings.name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(e) => {
                warn!(lease = %self.settings.name, error = %e, "cannot release the leader Lease; another replica takes over when it expires");
                return;
            }
        };
        if Record::of(&current).holder != self.settings.identity {
            return;
        }
        let mut released = current;
        if let Some(spec) = released.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &released)
            .await
        {
            Ok(_) => info!(lease = %self.settings.name, "released the leader Lease"),
            Err(e) => {
                warn!(lease = %self.settings.name, error = %e, "cannot release the leader Lease; another replica takes over when it expires");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_follow_client_go_proportions() {
        let s = ElectionSettings {
            name: "wicket-leader".into(),
            namespace: "ingress".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(15),
        };
        assert_eq!(s.retry_period(), Duration::from_secs(2));
        assert_eq!(s.renew_deadline(), Duration::from_secs(10));
        assert!(s.renew_deadline() < s.lease_duration);
    }
}
