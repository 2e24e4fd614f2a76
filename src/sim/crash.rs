//! Crash points chosen by progress, not by the wall clock: a replica dies at its n-th
//! request to the API server or call to Slurm from the moment the point is armed,
//! wherever that falls in a pass, so a crash test tests the same thing on any machine.
//!
//! From the crash point on, every request of the replica hangs, either before it is sent
//! or after it was carried out (its answer lost), as if the process had died there; the
//! test sees [`Tripwire::tripped`], aborts the replica and starts a new one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::future::BoxFuture;

use crate::agent::api::{Done, PartitionSnapshot};
use crate::plan::{Action, HealthResult};
use crate::slurm::client::{SlurmClient, SlurmError};

/// Counts one replica's calls and trips at the armed one.
#[derive(Debug)]
pub struct Tripwire {
    calls: AtomicU64,
    /// Trip at this call (counted from the start); `u64::MAX`: disarmed.
    at: AtomicU64,
    /// Crash after the call was carried out, instead of before it is sent.
    after: AtomicBool,
    tripped: tokio::sync::watch::Sender<bool>,
}

impl Tripwire {
    /// A disarmed tripwire.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicU64::new(0),
            at: AtomicU64::new(u64::MAX),
            after: AtomicBool::new(false),
            tripped: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Crash at the `n`-th call from now (1: the next one), before it is sent or, with
    /// `after`, once it was carried out.
    pub fn arm(&self, n: u64, after: bool) {
        self.after.store(after, Ordering::SeqCst);
        let now = self.calls.load(Ordering::SeqCst);
        self.at.store(now + n.max(1), Ordering::SeqCst);
    }

    /// Calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Whether the replica has crashed.
    pub fn is_tripped(&self) -> bool {
        *self.tripped.borrow()
    }

    /// Resolves once the replica has crashed.
    pub async fn tripped(&self) {
        let mut rx = self.tripped.subscribe();
        let _ = rx.wait_for(|t| *t).await;
    }

    /// Count one call: `None` when it goes through, else whether it is carried out
    /// before the replica hangs.
    fn hit(&self) -> Option<bool> {
        if self.is_tripped() {
            return Some(false);
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n < self.at.load(Ordering::SeqCst) {
            return None;
        }
        self.tripped.send_replace(true);
        Some(self.after.load(Ordering::SeqCst))
    }
}

/// A client like `inner` whose requests count on `wire`.
pub fn kube_client(inner: kube::Client, wire: Arc<Tripwire>) -> kube::Client {
    let ns = inner.default_namespace().to_string();
    let svc = tower::service_fn(move |req: axum::http::Request<kube::client::Body>| {
        let (inner, wire) = (inner.clone(), wire.clone());
        async move {
            match wire.hit() {
                None => inner.send(req).await,
                Some(carried_out) => {
                    if carried_out {
                        let _ = inner.send(req).await;
                    }
                    std::future::pending().await
                }
            }
        }
    });
    kube::Client::new(svc, ns)
}

/// A Slurm client like `inner` whose calls count on `wire`.
pub struct Slurm {
    pub inner: Arc<dyn SlurmClient>,
    pub wire: Arc<Tripwire>,
}

impl Slurm {
    fn call<'a, T: Send + 'a>(
        &'a self,
        f: impl FnOnce(&'a dyn SlurmClient) -> BoxFuture<'a, Result<T, SlurmError>> + Send + 'a,
    ) -> BoxFuture<'a, Result<T, SlurmError>> {
        Box::pin(async move {
            match self.wire.hit() {
                None => f(self.inner.as_ref()).await,
                Some(carried_out) => {
                    if carried_out {
                        let _ = f(self.inner.as_ref()).await;
                    }
                    std::future::pending().await
                }
            }
        })
    }
}

impl SlurmClient for Slurm {
    fn snapshot<'a>(
        &'a self,
        partition: &'a str,
    ) -> BoxFuture<'a, Result<PartitionSnapshot, SlurmError>> {
        self.call(move |s| s.snapshot(partition))
    }

    fn execute<'a>(&'a self, action: &'a Action) -> BoxFuture<'a, Result<Done, SlurmError>> {
        self.call(move |s| s.execute(action))
    }

    fn health_check<'a>(
        &'a self,
        node: &'a str,
    ) -> BoxFuture<'a, Result<HealthResult, SlurmError>> {
        self.call(move |s| s.health_check(node))
    }

    fn run_check<'a>(
        &'a self,
        node: &'a str,
        check: &'a str,
        fault: Option<&'a str>,
    ) -> BoxFuture<'a, Result<crate::agent::api::CheckReport, SlurmError>> {
        self.call(move |s| s.run_check(node, check, fault))
    }

    fn drain<'a>(
        &'a self,
        node: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<Done, SlurmError>> {
        self.call(move |s| s.drain(node, reason))
    }

    fn resume<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Done, SlurmError>> {
        self.call(move |s| s.resume(node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimCluster, SimConfig};

    #[tokio::test]
    async fn a_replica_hangs_from_its_armed_call_on() {
        let sim = SimCluster::new(SimConfig::default());
        let wire = Tripwire::new();
        let slurm = Slurm {
            inner: Arc::new(sim.clone()),
            wire: wire.clone(),
        };
        slurm.snapshot("batch").await.unwrap();
        wire.arm(2, false);
        slurm.snapshot("batch").await.unwrap();
        assert!(!wire.is_tripped());
        let resume = slurm.resume("node001");
        let hung = tokio::time::timeout(std::time::Duration::from_millis(50), resume).await;
        assert!(hung.is_err(), "the crash point hangs");
        assert!(wire.is_tripped());
        wire.tripped().await;
        assert_eq!(wire.calls(), 3);
        // Crash after the call: it was carried out, its answer lost.
        let wire = Tripwire::new();
        let slurm = Slurm {
            inner: Arc::new(sim.clone()),
            wire: wire.clone(),
        };
        wire.arm(1, true);
        let drain = slurm.drain("node002", "test");
        let hung = tokio::time::timeout(std::time::Duration::from_millis(50), drain).await;
        assert!(hung.is_err());
        let n = sim
            .peek()
            .nodes
            .into_iter()
            .find(|n| n.name == "node002")
            .unwrap();
        assert!(n.state.is_drained(), "{}", n.state);
    }
}
