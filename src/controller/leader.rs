//! Leader election with a `coordination.k8s.io/v1` Lease, so two replicas never act at
//! once. Writes use the Lease's resourceVersion: of two replicas racing for it, one gets a
//! 409 and stays a follower. A leader trusts its lease only until `renewed + duration −
//! margin` by its own monotonic clock, so it stops acting before anyone may take over.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// Whether this replica may act now.
#[derive(Clone, Debug, Default)]
pub struct Leadership(Arc<Mutex<Option<Instant>>>);

impl Leadership {
    /// Always leader (a single replica without election, e.g. the demo).
    pub fn always() -> Self {
        let l = Self::default();
        l.hold_until(Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600));
        l
    }

    /// True while the lease is held.
    pub fn is_leader(&self) -> bool {
        self.0
            .lock()
            .expect("leadership lock")
            .is_some_and(|until| Instant::now() < until)
    }

    fn hold_until(&self, until: Instant) {
        *self.0.lock().expect("leadership lock") = Some(until);
    }

    fn drop_lead(&self) {
        *self.0.lock().expect("leadership lock") = None;
    }
}

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// The usual timings: 15 s lease, renewed every 5 s.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// What to do with the lease as found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Ours: renew it.
    Renew,
    /// Free or expired: take it.
    Acquire,
    /// Someone else holds it.
    Follow,
}

/// Decide from the lease's spec at `now`.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    match spec.holder_identity.as_deref() {
        Some(h) if h == me => Decision::Renew,
        None | Some("") => Decision::Acquire,
        Some(_) => {
            let duration =
                SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(15) as i64);
            match spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
                Some(t) if t.0 + duration > now => Decision::Follow,
                _ => Decision::Acquire,
            }
        }
    }
}

fn held_spec(cfg: &LeaseConfig, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
    let renewing =
        previous.and_then(|p| p.holder_identity.as_deref()) == Some(cfg.identity.as_str());
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs() as i32),
        acquire_time: if renewing {
            previous.and_then(|p| p.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if renewing || previous.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..Default::default()
    }
}

/// One round: acquire or renew. `Ok(true)` when this replica holds the lease now.
pub async fn try_lead(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&cfg.name).await?;
    let decision = decide(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &cfg.identity,
        now,
    );
    let result = match (decision, current) {
        (Decision::Follow, _) => return Ok(false),
        (_, None) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(held_spec(cfg, None, now)),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        (_, Some(mut lease)) => {
            lease.spec = Some(held_spec(cfg, lease.spec.as_ref(), now));
            api.replace(&cfg.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Give the lease up (on shutdown), so a successor need not wait for it to expire.
pub async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    spec.acquire_time = None;
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Keep trying to lead until `stop` resolves, then release the lease if held.
pub async fn run(
    client: Client,
    cfg: LeaseConfig,
    leadership: Leadership,
    stop: impl std::future::Future<Output = ()>,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let margin = Duration::from_secs(2).min(cfg.lease_duration / 4);
    let mut stop = std::pin::pin!(stop);
    loop {
        let started = Instant::now();
        match try_lead(&api, &cfg).await {
            Ok(true) => {
                if !leadership.is_leader() {
                    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
                }
                leadership.hold_until(started + cfg.lease_duration - margin);
            }
            Ok(false) => {
                if leadership.is_leader() {
                    tracing::warn!(lease = %cfg.name, "lost the lease");
                }
                leadership.drop_lead();
            }
            Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(cfg.renew_every) => {}
        }
    }
    let held = leadership.is_leader();
    leadership.drop_lead();
    if held && let Err(e) = release(&api, &cfg).await {
        tracing::warn!(error = %e, "could not release the lease");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn held_by(who: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(who.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(t(renewed))),
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(decide(None, "a", t(0)), Decision::Acquire);
        assert_eq!(decide(Some(&held_by("a", 0)), "a", t(100)), Decision::Renew);
        assert_eq!(decide(Some(&held_by("b", 0)), "a", t(14)), Decision::Follow);
        assert_eq!(
            decide(Some(&held_by("b", 0)), "a", t(15)),
            Decision::Acquire
        );
        assert_eq!(decide(Some(&held_by("", 0)), "a", t(1)), Decision::Acquire);
        let released = LeaseSpec {
            holder_identity: None,
            ..held_by("b", 0)
        };
        assert_eq!(decide(Some(&released), "a", t(1)), Decision::Acquire);
    }

    #[test]
    fn acquire_counts_a_transition_and_renew_keeps_acquire_time() {
        let cfg = LeaseConfig::new("ns", "l", "a");
        let first = held_spec(&cfg, None, t(0));
        assert_eq!(first.lease_transitions, Some(0));
        let renewed = held_spec(&cfg, Some(&first), t(5));
        assert_eq!(renewed.acquire_time, first.acquire_time);
        assert_eq!(renewed.renew_time, Some(MicroTime(t(5))));
        let taken = held_spec(&LeaseConfig::new("ns", "l", "b"), Some(&renewed), t(30));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(t(30))));
    }

    #[test]
    fn leadership_expires() {
        let l = Leadership::default();
        assert!(!l.is_leader());
        l.hold_until(Instant::now() + Duration::from_secs(60));
        assert!(l.is_leader());
        l.hold_until(Instant::now() - Duration::from_millis(1));
        assert!(!l.is_leader());
        assert!(Leadership::always().is_leader());
    }
}
