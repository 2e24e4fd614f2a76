//! The controllers: a reconciler per `MaintenancePolicy` that runs one planning pass per
//! interval (snapshot → plan → status → side effects), Lease-based leader election, and
//! the Slurm connections of each policy.
//!
//! The reconciler is thin: every decision is made by [`crate::plan`]; this module fetches,
//! writes what the plan says to status (before the side effects it guards), and executes.

mod act;
mod blockers;
mod checks;
pub mod cli;
pub mod connect;
pub mod discovery;
mod facts;
pub mod leader;
pub mod metrics;
pub mod oci;
pub mod oci_work;
pub mod policy;
mod write;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::api::{MaintenancePolicy, NodeMaintenance};
use crate::slurm::client::SlurmError;

pub use connect::{AgentConnector, Connector, FixedConnector};
pub use leader::{Leadership, LeaseConfig};

/// Label on every NodeMaintenance: the policy it belongs to.
pub const POLICY_LABEL: &str = "slurm-maint.io/policy";
/// Label on every NodeMaintenance: the Slurm node.
pub const NODE_LABEL: &str = "slurm-maint.io/node";
/// Label on every NodeMaintenance of a campaign: the campaign id.
pub const CAMPAIGN_LABEL: &str = "slurm-maint.io/campaign";
/// Reporting controller name in Events.
pub const CONTROLLER_NAME: &str = "slurm-maint-controller";

/// What can go wrong in a pass.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Slurm: {0}")]
    Slurm(#[from] SlurmError),
    #[error("agent token: {0}")]
    Token(String),
    #[error("invalid resource: {0}")]
    Invalid(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// Short label for the `errors` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Self::Kube(_) => "kube",
            Self::Slurm(e) => e.metric_label(),
            Self::Token(_) => "token",
            Self::Invalid(_) => "invalid",
            Self::Finalizer(_) => "finalizer",
        }
    }
}

/// Source of "now": the wall clock, or the simulator's virtual clock.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// A source of environment variables.
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The wall clock.
pub fn wall_clock() -> Clock {
    Arc::new(Timestamp::now)
}

/// Converts the policy's (possibly virtual) durations into real waits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pace {
    /// Real seconds per virtual second (1 in production).
    pub scale: f64,
}

impl Default for Pace {
    fn default() -> Self {
        Self { scale: 1.0 }
    }
}

impl Pace {
    /// The real wait for a virtual duration (at least 10 ms).
    pub fn real(&self, d: SignedDuration) -> Duration {
        let secs = d.as_secs_f64().max(0.0) * self.scale;
        Duration::from_secs_f64(secs).max(Duration::from_millis(10))
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub connector: Arc<dyn Connector>,
    pub clock: Clock,
    pub pace: Pace,
    pub leadership: Leadership,
    pub recorder: Recorder,
    pub metrics: Arc<metrics::Metrics>,
    /// Last OCI discovery per policy (`namespace/name`); lost on restart, which only
    /// means one early discovery.
    pub oci_discovered: std::sync::Mutex<std::collections::HashMap<String, Timestamp>>,
    /// When this replica last ran a pass per policy, and for which generation.
    pub last_pass: std::sync::Mutex<std::collections::HashMap<String, (Timestamp, Option<i64>)>>,
    /// When each policy's last pass said something is next due (`namespace/name`): its
    /// next pass comes then if sooner than the interval.
    pub next_due: std::sync::Mutex<std::collections::HashMap<String, Timestamp>>,
    /// The controller's environment, where OCI workload identity and instance principals
    /// find their settings (tests give their own).
    pub env: Env,
    /// Last read of each OCI event (by event id), for the poll back-off.
    pub oci_polls: std::sync::Mutex<std::collections::BTreeMap<String, crate::oci::poll::Polled>>,
    /// The (possibly virtual) time of the last pass this replica finished, successful or
    /// not: a driver of a virtual clock waits for it before moving the clock on.
    pub passes: tokio::sync::watch::Sender<Option<Timestamp>>,
    /// Every send makes the controller look at every policy at once (instead of at its
    /// next requeue); sent by the discovery loop after the look a tick asked for.
    pub clock_moved: tokio::sync::watch::Sender<u64>,
    /// Every send makes the discovery loop look at once ([`Context::tick`]).
    pub discovery_ticks: tokio::sync::watch::Sender<u64>,
    /// Held for writing by a discovery look, for reading by a pass reading the mirrors:
    /// a pass sees a whole round of decisions, never half of one.
    pub mirrors: tokio::sync::RwLock<()>,
}

impl Context {
    /// A context reporting Events as `instance`.
    pub fn new(
        client: Client,
        connector: Arc<dyn Connector>,
        clock: Clock,
        pace: Pace,
        leadership: Leadership,
        instance: &str,
    ) -> Self {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: Some(instance.into()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            connector,
            clock,
            pace,
            leadership,
            metrics: Arc::new(metrics::Metrics::default()),
            oci_discovered: Default::default(),
            last_pass: Default::default(),
            next_due: Default::default(),
            oci_polls: Default::default(),
            env: Arc::new(|k| std::env::var(k).ok()),
            passes: tokio::sync::watch::Sender::new(None),
            clock_moved: tokio::sync::watch::Sender::new(0),
            discovery_ticks: tokio::sync::watch::Sender::new(0),
            mirrors: tokio::sync::RwLock::new(()),
        }
    }

    /// The virtual clock moved: OCI discovery looks at once, then every policy's pass.
    pub fn tick(&self) {
        self.discovery_ticks.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wait until this replica has finished a pass at or after `at`; false when the
    /// controller is gone.
    pub async fn wait_for_pass(&self, at: Timestamp) -> bool {
        let mut rx = self.passes.subscribe();
        rx.wait_for(|t| t.is_some_and(|t| t >= at)).await.is_ok()
    }
}

/// Run the policy controller and the OCI discovery loop until `shutdown` resolves;
/// `namespace` limits them to one namespace (all otherwise).
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (policies, works): (Api<MaintenancePolicy>, Api<NodeMaintenance>) =
        match namespace.as_deref() {
            Some(ns) => (
                Api::namespaced(ctx.client.clone(), ns),
                Api::namespaced(ctx.client.clone(), ns),
            ),
            None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
        };
    // Ticks of a virtual clock (never sent in production), after discovery's look.
    let ticks = futures::stream::unfold(ctx.clock_moved.subscribe(), |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let discovery = tokio::spawn(discovery::run(ctx.clone(), policies.clone(), {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    }));
    Controller::new(policies, watcher::Config::default())
        .owns(works, watcher::Config::default())
        .reconcile_all_on(ticks)
        .graceful_shutdown_on(shutdown)
        .run(policy::reconcile, policy::error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(policy = %obj.name, "reconciled"),
                Err(e) if is_gone(&e) => tracing::debug!(error = %e, "policy gone"),
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
        })
        .await;
    let _ = stop.send(true);
    let _ = discovery.await;
}

/// A reconcile scheduled for a policy deleted since (its NodeMaintenances going with it
/// schedule some): a normal deletion, not worth a warning.
fn is_gone<A, B>(e: &kube::runtime::controller::Error<A, B>) -> bool {
    matches!(e, kube::runtime::controller::Error::ObjectNotFound(_))
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::ObjectRef;

    use super::*;

    #[test]
    fn a_deleted_policy_is_no_warning() {
        let gone: kube::runtime::controller::Error<Error, watcher::Error> =
            kube::runtime::controller::Error::ObjectNotFound(Box::new(
                ObjectRef::<MaintenancePolicy>::new("roll")
                    .within("slurm")
                    .erase(),
            ));
        assert!(is_gone(&gone));
        let failed: kube::runtime::controller::Error<Error, watcher::Error> =
            kube::runtime::controller::Error::ReconcilerFailed(
                Error::Invalid("x".into()),
                Box::new(ObjectRef::<MaintenancePolicy>::new("roll").erase()),
            );
        assert!(!is_gone(&failed));
    }
}
