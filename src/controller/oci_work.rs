//! OCI work from discovery's decisions: approved `OciMaintenanceEvent`s become
//! NodeMaintenances with action `OciMaintenance`, which the one state machine
//! ([`crate::plan`]) then carries like any other work.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::write::{create_node_maintenance, publish};
use super::{Context, Error};
use crate::api::node_maintenance::{NodeMaintenancePhase as Phase, OciEventRef};
use crate::api::{
    MaintenanceAction, MaintenancePolicy, NodeMaintenance, NodeMaintenanceSpec,
    NodeMaintenanceStatus, OciMaintenanceEvent,
};
use crate::oci::workflow::EventState;
use crate::plan::{OciFacts, Work, work_name};

/// The NodeMaintenance an approved event needs.
#[derive(Clone, Debug, PartialEq)]
pub struct NewOciWork {
    /// Name of the NodeMaintenance.
    pub name: String,
    /// Name of the `OciMaintenanceEvent`.
    pub resource: String,
    pub node: String,
    pub event: OciEventRef,
    /// What its drain says after our prefix; its first transition message.
    pub reason: String,
    /// The event as last mirrored.
    pub state: EventState,
}

/// The approved, still scheduled events of `policy` that have no NodeMaintenance yet:
/// one per node, and none on a node with unfinished work.
pub fn new_oci_work(
    policy: &str,
    events: &[OciMaintenanceEvent],
    existing: &BTreeMap<String, NodeMaintenance>,
) -> Vec<NewOciWork> {
    let mut busy: std::collections::BTreeSet<String> = existing
        .values()
        .filter(|nm| nm.status.as_ref().is_none_or(|s| !s.phase.is_terminal()))
        .map(|nm| nm.spec.node_name.clone())
        .collect();
    let mut events: Vec<&OciMaintenanceEvent> = events.iter().collect();
    events.sort_by(|a, b| {
        (a.spec.time_window_start, &a.spec.event_id)
            .cmp(&(b.spec.time_window_start, &b.spec.event_id))
    });
    let mut out = vec![];
    for ev in events {
        let st = ev.status.clone().unwrap_or_default();
        let approved = st.approval.as_ref().is_some_and(|a| a.approved);
        let Some(node) = ev.spec.slurm_node.clone() else {
            continue;
        };
        if ev.spec.policy != policy
            || !approved
            || st.node_maintenance.is_some()
            || ev.spec.lifecycle_state != "SCHEDULED"
            || busy.contains(&node)
        {
            continue;
        }
        busy.insert(node.clone());
        let hash = ev
            .spec
            .event_id
            .bytes()
            .fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100000001b3)
            });
        let reason = super::oci::drain_reason(&ev.spec);
        out.push(NewOciWork {
            name: work_name(policy, &node, &format!("oci{:08x}", hash as u32)),
            resource: ev.name_any(),
            node,
            event: OciEventRef {
                event_id: ev.spec.event_id.clone(),
                instance_id: ev.spec.instance_id.clone(),
                resource_name: Some(ev.name_any()),
                fault_ids: ev
                    .spec
                    .fault_ids
                    .iter()
                    .filter(|f| f.len() <= 64)
                    .take(32)
                    .cloned()
                    .collect(),
                category: Some(ev.spec.maintenance_category.clone())
                    .filter(|c| !c.is_empty() && c.len() <= 64),
            },
            reason,
            state: EventState {
                lifecycle_state: ev.spec.lifecycle_state.clone(),
                time_window_start: ev.spec.time_window_start,
                can_reschedule: ev.spec.can_reschedule,
                time_hard_due_date: ev.spec.time_hard_due_date,
                failed_reschedule: None,
            },
        });
    }
    out
}

/// The mirrored `OciMaintenanceEvent`s of the namespace.
pub async fn mirrored(ctx: &Context, ns: &str) -> Result<Vec<OciMaintenanceEvent>, Error> {
    let api: Api<OciMaintenanceEvent> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api.list(&ListParams::default()).await?.items)
}

/// Create the NodeMaintenance of every event [`new_oci_work`] finds; the event records
/// which one serves it.
pub async fn spawn(
    ctx: &Context,
    policy: &MaintenancePolicy,
    ns: &str,
    existing: &BTreeMap<String, NodeMaintenance>,
    now: Timestamp,
) -> Result<usize, Error> {
    let events: Api<OciMaintenanceEvent> = Api::namespaced(ctx.client.clone(), ns);
    let mut created = 0;
    for new in new_oci_work(&policy.name_any(), &mirrored(ctx, ns).await?, existing) {
        let spec = NodeMaintenanceSpec {
            node_name: new.node.clone(),
            policy: policy.name_any(),
            action: MaintenanceAction::OciMaintenance,
            oci_event: Some(new.event.clone()),
            campaign: None,
            requested_at: now,
            reason: new.reason.clone(),
        };
        if create_node_maintenance(ctx, policy, ns, &new.name, spec, now)
            .await?
            .is_some()
        {
            created += 1;
        }
        let ev = events
            .patch_status(
                &new.resource,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"nodeMaintenance": new.name}})),
            )
            .await?;
        publish(
            ctx,
            &ev.object_ref(&()),
            EventType::Normal,
            "Scheduled",
            "Plan",
            format!(
                "NodeMaintenance {} will carry out this event on {}",
                new.name, new.node
            ),
        )
        .await;
    }
    Ok(created)
}

/// The work a dry run would create for `new`, as the planner sees it: Pending, with its
/// event as last mirrored.
pub fn as_planned(new: &NewOciWork, now: Timestamp) -> Work {
    Work {
        name: new.name.clone(),
        node: new.node.clone(),
        action: MaintenanceAction::OciMaintenance,
        campaign: None,
        status: NodeMaintenanceStatus {
            phase: Phase::Pending,
            phase_since: Some(now),
            ..Default::default()
        },
        oci: Some(OciFacts {
            event_id: new.event.event_id.clone(),
            reason: Some(new.reason.clone()),
            state: Some(new.state.clone()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use jiff::SignedDuration;
    use tokio::sync::watch;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::apiserver::ApiServer;
    use crate::controller::oci::tests::{KEY_PEM, policy};
    use crate::controller::{self, Context, FixedConnector, Leadership, Pace};
    use crate::oci::emulator::{Emulator, Scenario};
    use crate::sim::crash::{self, Tripwire};
    use crate::sim::{JobMix, SimCluster, SimConfig};

    /// The policy controller on the embedded API server, the simulated partition and the
    /// OCI emulator, clocks moving together; `spec` is merged into the policy's spec
    /// before the controller starts.
    struct Rig {
        ctx: Arc<Context>,
        /// The current replica's crash point.
        wire: Arc<Tripwire>,
        /// Replicas that crashed so far.
        crashes: usize,
        emu: Emulator,
        addr: std::net::SocketAddr,
        sim: SimCluster,
        kube: kube::Client,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
        _server: ApiServer,
    }

    impl Rig {
        async fn start(scenario: &str, spec: serde_json::Value) -> Self {
            Self::start_with(scenario, spec, |_| {}).await
        }

        async fn start_with(
            scenario: &str,
            spec: serde_json::Value,
            tweak: impl FnOnce(&mut Scenario),
        ) -> Self {
            let start = Timestamp::now();
            let mut sc = Scenario::parse(scenario).unwrap();
            sc.expand(start);
            tweak(&mut sc);
            let key = crate::oci::config::parse_private_key(KEY_PEM, None).unwrap();
            let emu = Emulator::new(sc, vec![key.to_public_key()]);
            let (addr, _task) = emu.start("127.0.0.1:0").await.unwrap();
            let server = ApiServer::with_crds(&crate::api::crds());
            let kube = server.client();
            policy(&kube, &format!("http://{addr}")).await;
            Api::<MaintenancePolicy>::namespaced(kube.clone(), "default")
                .patch(
                    "compute",
                    &PatchParams::default(),
                    &Patch::Merge(&json!({ "spec": spec })),
                )
                .await
                .unwrap();
            let sim = SimCluster::new(SimConfig {
                nodes: 10,
                partition: "compute".into(),
                start,
                job_mix: JobMix {
                    short: 1.0,
                    long: 0.0,
                },
                ..SimConfig::default()
            });
            let wire = Tripwire::new();
            let (ctx, stop, task) = Self::controller(&kube, &sim, &wire);
            Self {
                ctx,
                wire,
                crashes: 0,
                emu,
                addr,
                sim,
                kube,
                stop,
                task,
                _server: server,
            }
        }

        /// A new controller replica (fresh in-memory state) on the rig's cluster, its
        /// API requests and Slurm calls counted on `wire`.
        fn controller(
            kube: &kube::Client,
            sim: &SimCluster,
            wire: &Arc<Tripwire>,
        ) -> (Arc<Context>, watch::Sender<bool>, JoinHandle<()>) {
            let clock = sim.clone();
            let slurm = crash::Slurm {
                inner: Arc::new(sim.clone()),
                wire: wire.clone(),
            };
            let ctx = Arc::new(Context::new(
                crash::kube_client(kube.clone(), wire.clone()),
                Arc::new(FixedConnector(Arc::new(slurm))),
                Arc::new(move || clock.now()),
                Pace { scale: 0.01 / 60.0 },
                Leadership::always(),
                "test",
            ));
            let (stop, mut rx) = watch::channel(false);
            let run = ctx.clone();
            let task = tokio::spawn(async move {
                let _ = controller::run(run, Some("default".into()), async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
            });
            (ctx, stop, task)
        }

        /// The replica crashed at its crash point: it is gone, a new one takes over.
        async fn restart(&mut self) {
            self.task.abort();
            let _ = (&mut self.task).await;
            self.crashes += 1;
            self.wire = Tripwire::new();
            let (ctx, stop, task) = Self::controller(&self.kube, &self.sim, &self.wire);
            (self.ctx, self.stop, self.task) = (ctx, stop, task);
        }

        /// Whether a pass ran at the current virtual minute: the policy's status says so
        /// (written last in a pass, perhaps by a replica that died just after), or this
        /// replica finished one (a failed pass writes no status).
        async fn passed(&self) -> bool {
            let now = self.sim.now();
            if self.ctx.passes.borrow().is_some_and(|t| t >= now) {
                return true;
            }
            Api::<MaintenancePolicy>::namespaced(self.kube.clone(), "default")
                .get("compute")
                .await
                .ok()
                .and_then(|p| p.status?.last_pass)
                .is_some_and(|t| t >= now)
        }

        /// Wait for a pass at the current virtual minute, restarting crashed replicas.
        async fn settle(&mut self) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while !self.passed().await {
                let now = self.sim.now();
                let crashed = tokio::select! {
                    _ = self.ctx.wait_for_pass(now) => false,
                    _ = self.wire.tripped() => true,
                    // A look at the status now and then: a pass a dead replica finished.
                    _ = tokio::time::sleep(Duration::from_millis(20)) => false,
                };
                if crashed {
                    self.restart().await;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no pass at {now} within 60 s"
                );
            }
        }

        /// Reschedule work requests the emulator received, by event id.
        async fn work_requests(&self) -> BTreeMap<String, usize> {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let state: serde_json::Value =
                reqwest::get(format!("http://{}/_emulator/state", self.addr))
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
            let mut out = BTreeMap::new();
            for wr in state["workRequests"].as_array().unwrap() {
                for r in wr["resources"].as_array().unwrap() {
                    *out.entry(r["identifier"].as_str().unwrap().to_string())
                        .or_default() += 1;
                }
            }
            out
        }

        /// One virtual minute, once the controller has passed at the current one (in
        /// lockstep: a loaded machine only makes it slower).
        async fn step(&mut self) {
            self.settle().await;
            self.sim.advance(SignedDuration::from_mins(1));
            self.emu.advance(Duration::from_secs(60));
            self.sim.sample();
            self.ctx.tick();
        }

        async fn works(&self) -> Vec<NodeMaintenance> {
            Api::<NodeMaintenance>::namespaced(self.kube.clone(), "default")
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
        }

        /// Reads of single events from OCI so far (`GET instanceMaintenanceEvents/{id}`,
        /// discovery's included), from the controller's metrics.
        fn event_reads(&self) -> u64 {
            self.ctx
                .metrics
                .encode()
                .lines()
                .filter(|l| {
                    l.starts_with("slurm_maint_oci_calls_total{")
                        && l.contains("verb=\"GET instanceMaintenanceEvents\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64
        }

        async fn stop(self) {
            let _ = self.stop.send(true);
            let _ = self.task.await;
        }
    }

    /// At least the two approved events' works exist, and every one is Completed.
    fn all_done(items: &[NodeMaintenance]) -> bool {
        let completed = items
            .iter()
            .filter(|nm| {
                nm.status
                    .as_ref()
                    .is_some_and(|s| s.phase == Phase::Completed)
            })
            .count();
        completed >= 2 && completed == items.len()
    }

    const THREE_EVENTS: &str = "tenancy: ocid1.tenancy.oc1..aaaaaaaatest\n\
         generate: {compartments: 1, instances: 6, events: 3, hostPrefix: node, faultIds: [HPCRDMA-0002-02]}\n";

    /// Approved events run through the whole workflow.
    #[tokio::test]
    async fn approved_events_are_carried_out_under_the_budget() {
        let mut rig = Rig::start(THREE_EVENTS, json!({})).await;
        let mut most_out = 0;
        let done = 'drive: {
            for _ in 0..(12 * 60) {
                rig.step().await;
                most_out = most_out.max(rig.sim.stats().max_unavailable_or_down);
                let items = rig.works().await;
                if all_done(&items) {
                    break 'drive items;
                }
            }
            panic!("the approved events were not carried out");
        };
        let (emu, sim) = (&rig.emu, &rig.sim);
        // The daily cap (2 a UTC day) approved two events a day; each ran, one node at a
        // time (10 % of 10 nodes: 1 allowed).
        assert!(most_out <= 1, "{most_out} nodes out, 1 allowed");
        for nm in &done {
            assert_eq!(nm.spec.action, MaintenanceAction::OciMaintenance);
            let st = nm.status.as_ref().unwrap();
            let phases: Vec<Phase> = st.transitions.iter().map(|t| t.phase).collect();
            assert_eq!(
                phases,
                [
                    Phase::Pending,
                    Phase::Reserved,
                    Phase::Rebooting,
                    Phase::Recovering,
                    Phase::HealthCheck,
                    Phase::Completed
                ]
            );
            assert!(st.work_request_id.is_some());
            let ev = emu
                .event(&nm.spec.oci_event.as_ref().unwrap().event_id)
                .unwrap();
            assert_eq!(ev.lifecycle_state, "SUCCEEDED");
            let node = sim
                .peek()
                .nodes
                .into_iter()
                .find(|n| n.name == nm.spec.node_name)
                .unwrap();
            assert!(
                node.state.in_service(),
                "{} resumed: {}",
                node.name,
                node.state
            );
        }
        let mirrored: Api<OciMaintenanceEvent> = Api::namespaced(rig.kube.clone(), "default");
        let outcomes: Vec<String> = mirrored
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|o| o.status?.outcome)
            .collect();
        assert_eq!(outcomes.len(), done.len());
        assert!(outcomes.iter().all(|o| o == "Completed"), "{outcomes:?}");
        rig.stop().await;
    }

    /// A dry run shows the OCI steps it would take in `plannedActions` and takes none:
    /// no NodeMaintenance, no drain, no event rescheduled.
    #[tokio::test]
    async fn a_dry_run_plans_oci_work_and_changes_nothing() {
        let mut rig = Rig::start(THREE_EVENTS, json!({"dryRun": true})).await;
        let policies: Api<MaintenancePolicy> = Api::namespaced(rig.kube.clone(), "default");
        let mut planned = vec![];
        for _ in 0..30 {
            rig.step().await;
            let p = policies.get("compute").await.unwrap();
            planned = p.status.map(|s| s.planned_actions).unwrap_or_default();
            if !planned.is_empty() {
                break;
            }
        }
        let mirrored: Vec<OciMaintenanceEvent> =
            Api::<OciMaintenanceEvent>::namespaced(rig.kube.clone(), "default")
                .list(&ListParams::default())
                .await
                .unwrap()
                .items;
        let approved: Vec<&OciMaintenanceEvent> = mirrored
            .iter()
            .filter(|o| {
                o.status
                    .as_ref()
                    .and_then(|s| s.approval.as_ref())
                    .is_some_and(|a| a.approved)
            })
            .collect();
        assert_eq!(approved.len(), 2, "the daily cap approves two");
        // 10 % of 10 nodes: one drain fits the budget, the earliest window first.
        let first = approved
            .iter()
            .min_by_key(|o| (o.spec.time_window_start, o.spec.event_id.clone()))
            .unwrap();
        assert_eq!(
            planned,
            [format!(
                "drain {}: slurm-maint: OCI maintenance: {}",
                first.spec.slurm_node.as_deref().unwrap(),
                first.spec.fault_summary.as_deref().unwrap()
            )]
        );
        for _ in 0..30 {
            rig.step().await;
        }
        assert!(rig.works().await.is_empty(), "a dry run creates no work");
        assert!(
            rig.sim.peek().nodes.iter().all(|n| n.state.in_service()),
            "a dry run drains nothing"
        );
        for o in &mirrored {
            let ev = rig.emu.event(&o.spec.event_id).unwrap();
            assert_eq!(ev.lifecycle_state, "SCHEDULED");
            assert_eq!(ev.time_window_start, o.spec.time_window_start);
        }
        rig.stop().await;
    }

    /// While OCI carries an event out, its state is read at `maintenancePollInterval`
    /// at first, then less and less often (up to 4× that), not at every pass.
    #[tokio::test]
    async fn a_running_event_is_polled_with_backoff() {
        let mut rig = Rig::start(
            "tenancy: ocid1.tenancy.oc1..aaaaaaaatest\nstepSeconds: 1800\n\
             generate: {compartments: 1, instances: 3, events: 1, hostPrefix: node, faultIds: [HPCRDMA-0002-02]}\n",
            json!({"interval": "1m", "oci": {
                "discoveryInterval": "24h",
                "drainPollInterval": "30s",
                "maintenancePollInterval": "1m"
            }}),
        )
        .await;
        let phase = |items: &[NodeMaintenance]| {
            items
                .first()
                .and_then(|nm| nm.status.as_ref())
                .map(|s| s.phase)
        };
        let mut rebooting: Option<(u64, usize)> = None;
        let mut reads = None;
        for minute in 0..(8 * 60) {
            rig.step().await;
            match (phase(&rig.works().await), rebooting) {
                (Some(Phase::Rebooting), None) => {
                    rebooting = Some((rig.event_reads(), minute));
                }
                (Some(Phase::Recovering | Phase::HealthCheck | Phase::Completed), Some((n, m))) => {
                    reads = Some((rig.event_reads() - n, minute - m));
                    break;
                }
                _ => {}
            }
        }
        let (reads, minutes) = reads.expect("the event was carried out");
        assert!(minutes >= 60, "the event ran {minutes} min");
        // 1, 2, 4, 4, … minutes apart, starting over at each of the event's states
        // (SCHEDULED, STARTED, PROCESSING): about a quarter of the minutes plus the ramps.
        assert!(
            reads as usize <= minutes / 4 + 8,
            "{reads} reads in {minutes} min"
        );
        assert!(reads >= 3, "{reads} reads in {minutes} min");
        rig.stop().await;
    }

    /// OCI accepts the reschedule, then its work request fails, every time: the work asks
    /// again up to the policy's attempts, then fails with OCI's message, the node drained.
    #[tokio::test]
    async fn a_reschedule_that_keeps_failing_ends_failed_with_the_node_drained() {
        let mut rig = Rig::start_with(
            "tenancy: ocid1.tenancy.oc1..aaaaaaaatest\n\
             generate: {compartments: 1, instances: 3, events: 1, hostPrefix: node, faultIds: [HPCRDMA-0002-02]}\n",
            json!({}),
            |sc| sc.events[0].work_request_outcome = "FAILED".into(),
        )
        .await;
        let failed = 'drive: {
            for _ in 0..(3 * 60) {
                rig.step().await;
                if let Some(nm) = rig
                    .works()
                    .await
                    .into_iter()
                    .find(|nm| nm.status.as_ref().is_some_and(|s| s.phase == Phase::Failed))
                {
                    break 'drive nm;
                }
            }
            panic!("not failed: {:#?}", rig.works().await);
        };
        let st = failed.status.clone().unwrap();
        assert_eq!(st.attempts, 3);
        assert!(
            st.last_error
                .as_deref()
                .unwrap()
                .contains("the maintenance could not be rescheduled"),
            "{st:?}"
        );
        let event = failed.spec.oci_event.as_ref().unwrap().event_id.clone();
        assert_eq!(rig.emu.event(&event).unwrap().lifecycle_state, "SCHEDULED");
        let node = rig
            .sim
            .peek()
            .nodes
            .into_iter()
            .find(|n| n.name == failed.spec.node_name)
            .unwrap();
        assert!(node.state.is_drained(), "{}", node.state);
        assert!(
            node.reason
                .as_deref()
                .unwrap()
                .contains("not rescheduled after 3 attempts"),
            "{:?}",
            node.reason
        );

        // A person asks for a retry: the event is still SCHEDULED, so the work goes back
        // to Reserved and asks OCI again, 3 more attempts, then fails again.
        let api: Api<NodeMaintenance> = Api::namespaced(rig.kube.clone(), "default");
        api.patch(
            &failed.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"slurm-maint.io/retry": "OCI support ticket 7"}}})),
        )
        .await
        .unwrap();
        let again = 'drive: {
            for _ in 0..(3 * 60) {
                rig.step().await;
                let nm = api.get(&failed.name_any()).await.unwrap();
                let st = nm.status.clone().unwrap();
                let retried = st
                    .transitions
                    .iter()
                    .any(|t| t.message.starts_with("retry requested"));
                if retried && st.phase == Phase::Failed {
                    break 'drive nm;
                }
            }
            panic!(
                "not retried: {:#?}",
                api.get(&failed.name_any()).await.unwrap().status
            );
        };
        assert!(!again.annotations().contains_key("slurm-maint.io/retry"));
        let phases: Vec<Phase> = again
            .status
            .as_ref()
            .unwrap()
            .transitions
            .iter()
            .map(|t| t.phase)
            .collect();
        let n = phases.len();
        assert_eq!(
            phases[n - 3..],
            [Phase::Reserved, Phase::Rebooting, Phase::Failed],
            "{phases:?}"
        );
        assert_eq!(again.status.unwrap().attempts, 3);
        rig.stop().await;
    }

    /// The controller crashes every two virtual minutes, at a point chosen by progress
    /// (its 1st to 13th API request or Slurm call from then, before the call is sent or
    /// after it was carried out), and a new replica takes over: every approved event is
    /// still rescheduled exactly once and carried out, its node drained and resumed, never
    /// more than the budget out.
    #[tokio::test]
    async fn crashes_at_any_point_never_reschedule_twice() {
        let mut rig = Rig::start(THREE_EVENTS, json!({})).await;
        let mut most_out = 0;
        let done = 'drive: {
            for minute in 0..(12 * 60u64) {
                if minute % 2 == 0 {
                    let k = minute / 2;
                    rig.wire.arm(1 + k % 13, k % 3 == 1);
                }
                rig.step().await;
                most_out = most_out.max(rig.sim.stats().max_unavailable_or_down);
                let items = rig.works().await;
                if all_done(&items) {
                    break 'drive items;
                }
            }
            panic!("not carried out: {:#?}", rig.works().await);
        };
        assert!(rig.crashes >= 20, "only {} crashes", rig.crashes);
        assert!(most_out <= 1, "{most_out} nodes out, 1 allowed");
        let requests = rig.work_requests().await;
        for nm in &done {
            let event = &nm.spec.oci_event.as_ref().unwrap().event_id;
            assert_eq!(requests.get(event), Some(&1), "{event}: {requests:?}");
            assert_eq!(rig.emu.event(event).unwrap().lifecycle_state, "SUCCEEDED");
            let node = rig
                .sim
                .peek()
                .nodes
                .into_iter()
                .find(|n| n.name == nm.spec.node_name)
                .unwrap();
            assert!(node.state.in_service(), "{}: {}", node.name, node.state);
        }
        assert_eq!(requests.len(), done.len(), "{requests:?}");
        rig.stop().await;
    }

    /// A rolling-reboot campaign fills the budget all the time; approved OCI events still
    /// go first when they are ready, instead of waiting for the campaign to end.
    #[tokio::test]
    async fn oci_work_is_not_starved_by_a_rolling_campaign() {
        let start = Timestamp::now();
        let mut rig = Rig::start(
            THREE_EVENTS,
            json!({
                "reservations": {"enabled": true, "duration": "2h"},
                "reboots": {"enabled": true, "timeout": "20m"},
                "campaign": {"rebootRequiredBefore": start.to_string()},
            }),
        )
        .await;
        let is = |nm: &NodeMaintenance, a: MaintenanceAction, p: Phase| {
            nm.spec.action == a && nm.status.as_ref().is_some_and(|s| s.phase == p)
        };
        let mut most_out = 0;
        let rolling_done = 'drive: {
            for _ in 0..(24 * 60) {
                rig.step().await;
                most_out = most_out.max(rig.sim.stats().max_unavailable_or_down);
                let items = rig.works().await;
                let oci_done = items
                    .iter()
                    .filter(|nm| is(nm, MaintenanceAction::OciMaintenance, Phase::Completed))
                    .count();
                if oci_done == 2 {
                    break 'drive items
                        .iter()
                        .filter(|nm| is(nm, MaintenanceAction::Reboot, Phase::Completed))
                        .count();
                }
            }
            panic!("OCI work not done: {:#?}", rig.works().await);
        };
        assert!(
            rolling_done <= 5,
            "OCI work waited for {rolling_done} of 10 rolling reboots"
        );
        assert!(most_out <= 1, "{most_out} nodes out, 1 allowed");
        rig.stop().await;
    }
}
