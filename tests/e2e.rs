//! End to end: the real controllers, a simulated Slurm partition on a virtual clock, and
//! an API server — the embedded one, or a real cluster when `SLURM_MAINT_E2E_KUBECONFIG`
//! names a kubeconfig (each test uses a fresh namespace).
//!
//! The driver runs in lockstep with the controller: virtual time moves one minute only
//! after the controller has finished a pass at the current minute, so a slow API server
//! can never make a reboot look timed out.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use slurm_maint::api::condition::ConditionStatus;
use slurm_maint::api::{MaintenancePolicy, NodeMaintenance, NodeMaintenancePhase as Phase};
use slurm_maint::apiserver::harness::TestCluster;
use slurm_maint::controller::{self, Context, FixedConnector, Leadership, LeaseConfig, Pace};
use slurm_maint::plan::status::reason;
use slurm_maint::sim::crash::{self, Tripwire};
use slurm_maint::sim::{JobMix, RebootFate, SimCluster, SimConfig, TraceNode};
use slurm_maint::slurm::client::{SlurmClient, SlurmError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod common;

const START: &str = "2026-12-01T00:00:00Z";

fn sim(nodes: usize, seed: u64) -> SimCluster {
    SimCluster::new(SimConfig {
        nodes,
        seed,
        down_at_start: 1,
        job_mix: JobMix {
            short: 0.9,
            long: 0.05,
        },
        ..SimConfig::default()
    })
}

fn policy(name: &str, spec: serde_json::Value) -> MaintenancePolicy {
    let mut base = json!({
        "partition": "batch",
        "agent": {"url": "http://agent.invalid:8080", "tokenSecretRef": {"name": "agent-token"}},
        "budget": {"maxUnavailablePercent": 25},
        "reservations": {"enabled": true, "duration": "6h"},
        "reboots": {"enabled": true, "timeout": "10m"},
        "preemption": {"terminatePreemptableJobs": true},
        "interval": "1m",
        "campaign": {"rebootRequiredBefore": START},
    });
    merge(&mut base, spec);
    serde_json::from_value(json!({
        "apiVersion": "slurm-maint.io/v1alpha1",
        "kind": "MaintenancePolicy",
        "metadata": {"name": name},
        "spec": base,
    }))
    .expect("valid policy")
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

struct Controller {
    ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Controller {
    /// The real controller on `c`'s namespace, talking to `sim`, acting as `identity`;
    /// with a Lease when `lease` is set, otherwise always leader.
    fn start(c: &TestCluster, sim: &SimCluster, identity: &str, lease: bool) -> Self {
        Self::start_with(c, sim, Arc::new(sim.clone()), identity, lease)
    }

    /// As [`Controller::start`], its API requests and Slurm calls counted on `wire`: the
    /// replica hangs at the crash point armed there.
    fn start_crashing(
        c: &TestCluster,
        sim: &SimCluster,
        identity: &str,
        wire: &Arc<Tripwire>,
    ) -> Self {
        let slurm = crash::Slurm {
            inner: Arc::new(sim.clone()),
            wire: wire.clone(),
        };
        let client = crash::kube_client(c.client.clone(), wire.clone());
        Self::start_on(c, client, sim, Arc::new(slurm), identity, false)
    }

    /// As [`Controller::start`], with Slurm reached through `slurm` (on `sim`'s clock).
    fn start_with(
        c: &TestCluster,
        sim: &SimCluster,
        slurm: Arc<dyn SlurmClient>,
        identity: &str,
        lease: bool,
    ) -> Self {
        Self::start_on(c, c.client.clone(), sim, slurm, identity, lease)
    }

    /// As [`Controller::start_with`], reaching the API server through `client`.
    fn start_on(
        c: &TestCluster,
        client: kube::Client,
        sim: &SimCluster,
        slurm: Arc<dyn SlurmClient>,
        identity: &str,
        lease: bool,
    ) -> Self {
        let clock_sim = sim.clone();
        let leadership = if lease {
            Leadership::default()
        } else {
            Leadership::always()
        };
        let ctx = Arc::new(Context::new(
            client.clone(),
            Arc::new(FixedConnector(slurm)),
            Arc::new(move || clock_sim.now()),
            // One virtual minute = 5 ms: passes run as soon as the clock moves.
            Pace {
                scale: 0.005 / 60.0,
            },
            leadership.clone(),
            identity,
        ));
        let (stop, rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut tasks = vec![tokio::spawn(controller::run(
            ctx.clone(),
            Some(c.namespace.clone()),
            stopped(rx.clone()),
        ))];
        if lease {
            let mut cfg = LeaseConfig::new(&c.namespace, "slurm-maint-controller", identity);
            cfg.lease_duration = Duration::from_secs(3);
            cfg.renew_every = Duration::from_millis(500);
            tasks.push(tokio::spawn(controller::leader::run(
                client,
                cfg,
                leadership,
                stopped(rx),
            )));
        }
        Self { ctx, stop, tasks }
    }

    /// Graceful stop (SIGTERM path): the lease is released.
    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// A crash: tasks aborted wherever they are.
    fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn apply_policy(c: &TestCluster, p: &MaintenancePolicy) -> MaintenancePolicy {
    let api: Api<MaintenancePolicy> = Api::namespaced(c.client.clone(), &c.namespace);
    api.patch(
        &p.name_any(),
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(p),
    )
    .await
    .expect("policy applied")
}

async fn get_policy(c: &TestCluster, name: &str) -> MaintenancePolicy {
    Api::<MaintenancePolicy>::namespaced(c.client.clone(), &c.namespace)
        .get(name)
        .await
        .expect("policy")
}

async fn works(c: &TestCluster) -> Vec<NodeMaintenance> {
    Api::<NodeMaintenance>::namespaced(c.client.clone(), &c.namespace)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
}

fn progressing(p: &MaintenancePolicy) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == "Progressing")
        .map(|c| c.reason.clone())
}

/// Wait (real time) until the controller has passed at the current virtual minute: one
/// GET, then a watch on the policy from that version (polling would load the server more
/// than the controller does).
async fn wait_for_pass(c: &TestCluster, sim: &SimCluster, name: &str) -> MaintenancePolicy {
    wait_for_pass_or(c, sim, name, || {}).await
}

/// As [`wait_for_pass`], calling `meanwhile` at least every 100 ms while it waits.
async fn wait_for_pass_or(
    c: &TestCluster,
    sim: &SimCluster,
    name: &str,
    mut meanwhile: impl FnMut(),
) -> MaintenancePolicy {
    use futures::TryStreamExt;
    use kube::api::{WatchEvent, WatchParams};
    let api: Api<MaintenancePolicy> = Api::namespaced(c.client.clone(), &c.namespace);
    let now = sim.now();
    let passed = |p: &MaintenancePolicy| {
        p.status
            .as_ref()
            .and_then(|s| s.last_pass)
            .is_some_and(|t| t >= now)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let fields = format!("metadata.name={name}");
    loop {
        let p = get_policy(c, name).await;
        if passed(&p) {
            return p;
        }
        meanwhile();
        let rv = p.resource_version().expect("resourceVersion");
        let wp = WatchParams::default().fields(&fields).timeout(10);
        let slice = deadline.min(tokio::time::Instant::now() + Duration::from_millis(100));
        // A watch that fails or ends (expired version, timeout) is opened again after a GET.
        if let Ok(stream) = api.watch(&wp, &rv).await {
            let mut stream = Box::pin(stream);
            while let Ok(Ok(Some(event))) = tokio::time::timeout_at(slice, stream.try_next()).await
            {
                match event {
                    WatchEvent::Modified(p) if passed(&p) => return p,
                    WatchEvent::Error(_) => break,
                    _ => {}
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no pass at {now} within 30 s"
        );
    }
}

/// Step virtual time a minute per pass until `done` or `max` virtual hours.
async fn drive(
    c: &TestCluster,
    sim: &SimCluster,
    name: &str,
    max: i64,
    mut on_step: impl FnMut(usize),
    done: impl Fn(&MaintenancePolicy) -> bool,
) -> MaintenancePolicy {
    let end = sim.now() + SignedDuration::from_hours(max);
    let mut step = 0;
    loop {
        let p = wait_for_pass(c, sim, name).await;
        sim.sample();
        if done(&p) {
            return p;
        }
        assert!(sim.now() < end, "not done after {max} virtual hours");
        on_step(step);
        step += 1;
        sim.advance(SignedDuration::from_mins(1));
        sim.sample();
    }
}

fn campaign_over(p: &MaintenancePolicy) -> bool {
    matches!(
        progressing(p).as_deref(),
        Some(reason::CAMPAIGN_COMPLETE | reason::WAITING_FOR_BLOCKED_NODES)
    )
}

/// Every node done once, never past the budget, no user job killed.
fn assert_campaign(sim: &SimCluster, items: &[NodeMaintenance], allowed: usize) {
    let stats = sim.stats();
    let drained_by_ops: BTreeSet<&str> = items
        .iter()
        .filter(|nm| {
            nm.status
                .as_ref()
                .is_some_and(|s| s.phase == Phase::Pending)
        })
        .map(|nm| nm.spec.node_name.as_str())
        .collect();
    assert_eq!(
        drained_by_ops.len(),
        1,
        "only the node drained by ops waits"
    );
    for nm in items {
        let st = nm.status.clone().unwrap_or_default();
        if !drained_by_ops.contains(nm.spec.node_name.as_str()) {
            assert_eq!(st.phase, Phase::Completed, "{}: {st:?}", nm.name_any());
            assert_eq!(
                stats.reboots_per_node.get(&nm.spec.node_name),
                Some(&1),
                "{} rebooted exactly once",
                nm.spec.node_name
            );
        }
    }
    // The node drained by ops counts as down: with it, at most `allowed` out.
    assert!(
        stats.max_unavailable_or_down <= allowed,
        "{} out at once, {allowed} allowed",
        stats.max_unavailable_or_down
    );
    assert_eq!(stats.non_preemptable_killed, 0);
}

#[tokio::test]
async fn a_campaign_runs_to_the_end_within_the_budget() {
    let c = TestCluster::start("campaign").await;
    let sim = sim(12, 11);
    let ctl = Controller::start(&c, &sim, "e2e-1", false);
    apply_policy(&c, &policy("roll", json!({}))).await;
    let p = drive(&c, &sim, "roll", 96, |_| {}, campaign_over).await;
    let items = works(&c).await;
    assert_eq!(items.len(), 12);
    assert_campaign(&sim, &items, 3);

    let st = p.status.clone().unwrap();
    assert_eq!(st.phases.completed, 11);
    assert_eq!(st.nodes_needing_work, 12);
    assert_eq!(st.observed_generation, p.metadata.generation);
    let b = st.budget.unwrap();
    assert_eq!((b.total, b.allowed, b.down), (12, 3, 1));
    assert_eq!(
        progressing(&p).as_deref(),
        Some(reason::WAITING_FOR_BLOCKED_NODES)
    );
    // NodeMaintenances: owned by the policy, labelled, transitions recorded.
    for nm in &items {
        let owner = &nm.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("MaintenancePolicy", "roll")
        );
        assert_eq!(owner.uid, p.uid().unwrap());
        assert_eq!(nm.labels()["slurm-maint.io/policy"], "roll");
        let st = nm.status.clone().unwrap();
        if st.phase == Phase::Completed {
            let phases: Vec<Phase> = st.transitions.iter().map(|t| t.phase).collect();
            assert_eq!(
                phases,
                [
                    Phase::Pending,
                    Phase::Reserved,
                    Phase::PendingReboot,
                    Phase::Rebooting,
                    Phase::Recovering,
                    Phase::HealthCheck,
                    Phase::Completed
                ],
                "{}",
                nm.name_any()
            );
            assert!(st.reservation_name.is_some() && st.last_error.is_none());
            // Conditions for `kubectl wait --for=condition=Complete`.
            let cond = |ty: &str| {
                st.conditions
                    .iter()
                    .find(|c| c.r#type == ty)
                    .map(|c| c.status)
            };
            assert_eq!(cond("Complete"), Some(ConditionStatus::True));
            assert_eq!(cond("Progressing"), Some(ConditionStatus::False));
            assert_eq!(cond("Failed"), Some(ConditionStatus::False));
        }
    }
    // No reservation of ours is left behind.
    assert!(
        sim.peek()
            .reservations
            .iter()
            .all(|r| !r.name.starts_with("slurm-maint-")),
        "{:?}",
        sim.peek().reservations
    );
    // Events were recorded for the transitions.
    let events: Api<K8sEvent> = Api::namespaced(c.client.clone(), &c.namespace);
    let events = events.list(&ListParams::default()).await.unwrap().items;
    let reasons: BTreeSet<&str> = events.iter().filter_map(|e| e.reason.as_deref()).collect();
    for r in ["Pending", "Reserved", "Rebooting", "Completed"] {
        assert!(reasons.contains(r), "no {r} event in {reasons:?}");
    }
    let reconciles = ctl.ctx.metrics.encode();
    assert!(reconciles.contains("slurm_maint_reconciles_total{controller=\"policy\"}"));
    assert!(reconciles.contains("slurm_maint_budget_nodes{"));
    ctl.stop().await;
    c.cleanup().await;
}

/// Every seventh virtual minute the controller dies at a point chosen by progress: its
/// 1st to 11th API request or Slurm call from then, before the call is sent or after it
/// was carried out (the answer lost). A new replica takes over each time.
#[tokio::test]
async fn crashes_at_any_point_resume_without_double_effects() {
    let c = TestCluster::start("crash").await;
    let sim = sim(10, 5);
    apply_policy(&c, &policy("roll", json!({}))).await;
    let mut wire = Tripwire::new();
    let mut ctl = Controller::start_crashing(&c, &sim, "e2e-0", &wire);
    let mut restarts = 0;
    let end = sim.now() + SignedDuration::from_hours(96);
    let mut step = 0u64;
    loop {
        // A pass at this minute: the replica's own, or one a crashed replica finished
        // (its status written) before it died.
        let p = wait_for_pass_or(&c, &sim, "roll", || {
            if wire.is_tripped() {
                ctl.abort();
                restarts += 1;
                wire = Tripwire::new();
                ctl = Controller::start_crashing(&c, &sim, &format!("e2e-{restarts}"), &wire);
            }
        })
        .await;
        sim.sample();
        if campaign_over(&p) {
            break;
        }
        assert!(sim.now() < end);
        step += 1;
        if step.is_multiple_of(7) {
            let k = step / 7;
            wire.arm(1 + k % 11, k % 2 == 1);
        }
        sim.advance(SignedDuration::from_mins(1));
        sim.sample();
        ctl.ctx.tick();
    }
    assert!(restarts > 5, "only {restarts} restarts");
    assert_campaign(&sim, &works(&c).await, 2);
    ctl.stop().await;
    c.cleanup().await;
}

#[tokio::test]
async fn two_replicas_never_act_at_once_and_the_second_takes_over() {
    let c = TestCluster::start("lease").await;
    let sim = sim(8, 3);
    let a = Controller::start(&c, &sim, "replica-a", true);
    let b = Controller::start(&c, &sim, "replica-b", true);
    apply_policy(&c, &policy("roll", json!({}))).await;
    let (la, lb) = (a.ctx.leadership.clone(), b.ctx.leadership.clone());
    let mut both = 0;
    let p = drive(
        &c,
        &sim,
        "roll",
        8,
        |_| both += usize::from(la.is_leader() && lb.is_leader()),
        |p| p.status.as_ref().is_some_and(|s| s.phases.completed >= 2),
    )
    .await;
    assert_eq!(both, 0, "both replicas led at once");
    assert_ne!(la.is_leader(), lb.is_leader(), "one leader");
    // The leader shuts down (SIGTERM path: lease released); the other takes over.
    let (leader, follower) = if la.is_leader() { (a, b) } else { (b, a) };
    let done_before = p.status.unwrap().phases.completed;
    leader.stop().await;
    let fl = follower.ctx.leadership.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !fl.is_leader() {
        assert!(tokio::time::Instant::now() < deadline, "no takeover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = drive(&c, &sim, "roll", 96, |_| {}, campaign_over).await;
    assert!(p.status.unwrap().phases.completed > done_before);
    assert_campaign(&sim, &works(&c).await, 2);
    follower.stop().await;
    c.cleanup().await;
}

#[tokio::test]
async fn pause_stops_new_work_and_lets_in_flight_nodes_finish() {
    let c = TestCluster::start("pause").await;
    // Short jobs only: the test is about pausing, not about waiting out a 96-hour job
    // that holds the one free budget slot.
    let sim = SimCluster::new(SimConfig {
        nodes: 10,
        seed: 17,
        down_at_start: 1,
        job_mix: JobMix {
            short: 1.0,
            long: 0.0,
        },
        ..SimConfig::default()
    });
    let ctl = Controller::start(&c, &sim, "e2e", false);
    apply_policy(&c, &policy("roll", json!({}))).await;
    drive(
        &c,
        &sim,
        "roll",
        48,
        |_| {},
        |p| p.status.as_ref().is_some_and(|s| s.phases.completed >= 2),
    )
    .await;
    apply_policy(&c, &policy("roll", json!({"paused": true}))).await;
    // The next pass sees the new generation.
    let generation = get_policy(&c, "roll").await.metadata.generation;
    let mut p = wait_for_pass(&c, &sim, "roll").await;
    while p.status.as_ref().unwrap().observed_generation != generation {
        sim.advance(SignedDuration::from_mins(1));
        p = wait_for_pass(&c, &sim, "roll").await;
    }
    let pending: BTreeSet<String> = works(&c)
        .await
        .into_iter()
        .filter(|nm| {
            nm.status
                .as_ref()
                .is_some_and(|s| s.phase == Phase::Pending)
        })
        .map(|nm| nm.name_any())
        .collect();
    assert!(pending.len() > 1, "some nodes still to start");
    let paused = p
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.r#type == "Paused")
        .cloned()
        .unwrap();
    assert_eq!(paused.reason, reason::PAUSED_BY_SPEC);
    assert_eq!(paused.status, ConditionStatus::True);
    let completed = |items: &[NodeMaintenance]| {
        items
            .iter()
            .filter(|nm| {
                nm.status
                    .as_ref()
                    .is_some_and(|s| s.phase == Phase::Completed)
            })
            .count()
    };
    let done_before = completed(&works(&c).await);
    let in_flight_before = 10 - pending.len() - done_before;
    // Four paused hours: nothing new starts; what was in flight moves on.
    for _ in 0..4 * 60 {
        sim.advance(SignedDuration::from_mins(1));
        wait_for_pass(&c, &sim, "roll").await;
        sim.sample();
    }
    let items = works(&c).await;
    for nm in items.iter().filter(|nm| pending.contains(&nm.name_any())) {
        let st = nm.status.as_ref().unwrap();
        assert_eq!(
            st.phase,
            Phase::Pending,
            "{} started while paused",
            nm.name_any()
        );
    }
    if in_flight_before > 0 {
        assert!(completed(&items) > done_before, "in-flight nodes finished");
    }
    // Resumed: the campaign runs to its end.
    apply_policy(&c, &policy("roll", json!({"paused": false}))).await;
    drive(&c, &sim, "roll", 120, |_| {}, campaign_over).await;
    assert_campaign(&sim, &works(&c).await, 2);
    ctl.stop().await;
    c.cleanup().await;
}

#[tokio::test]
async fn monitor_only_and_dry_run_change_nothing_in_slurm() {
    let c = TestCluster::start("safe").await;
    let sim = sim(8, 2);
    let before = sim.peek();
    let ctl = Controller::start(&c, &sim, "e2e", false);
    // Safe by default: reservations and reboots are off unless enabled.
    let monitor = policy(
        "monitor",
        json!({"reservations": {"enabled": false}, "reboots": {"enabled": false}}),
    );
    apply_policy(&c, &monitor).await;
    let dry = policy("dry", json!({"dryRun": true}));
    apply_policy(&c, &dry).await;
    for _ in 0..5 {
        wait_for_pass(&c, &sim, "monitor").await;
        wait_for_pass(&c, &sim, "dry").await;
        sim.advance(SignedDuration::from_mins(1));
    }
    let after = sim.peek();
    assert_eq!(
        after.reservations, before.reservations,
        "no reservation made"
    );
    assert!(sim.stats().reboots_per_node.is_empty());
    assert_eq!(sim.stats().preemptable_cancelled, 0);

    let m = get_policy(&c, "monitor").await.status.unwrap();
    let paused = m.conditions.iter().find(|c| c.r#type == "Paused").unwrap();
    assert_eq!(paused.reason, reason::MONITOR_ONLY);
    assert_eq!(m.nodes_needing_work, 8);
    assert!(!m.next.is_empty(), "the plan preview is shown");
    assert!(m.planned_actions.is_empty());

    let d = get_policy(&c, "dry").await.status.unwrap();
    let paused = d.conditions.iter().find(|c| c.r#type == "Paused").unwrap();
    assert_eq!(paused.reason, reason::DRY_RUN);
    assert!(
        d.planned_actions
            .iter()
            .any(|a| a.starts_with("create reservation")),
        "{:?}",
        d.planned_actions
    );
    // Monitor mode lists the campaign's nodes; a dry run writes nothing at all.
    let items = works(&c).await;
    assert!(items.iter().all(|nm| nm.spec.policy == "monitor"));
    assert_eq!(items.len(), 8);
    assert!(items.iter().all(|nm| {
        nm.status
            .as_ref()
            .is_some_and(|s| s.phase == Phase::Pending)
    }));
    ctl.stop().await;
    c.cleanup().await;
}

#[tokio::test]
async fn a_spec_the_planner_cannot_use_is_degraded_without_a_retry_storm() {
    let c = TestCluster::start("degraded").await;
    let sim = sim(4, 1);
    let ctl = Controller::start(&c, &sim, "e2e", false);
    // A valid policy beside it, on the same controller: its passes show that the
    // controller looked at the time, minute by minute.
    apply_policy(&c, &policy("good", json!({"nodelist": "node[003-004]"}))).await;
    // Passes the CRD schema, but is not a valid hostlist.
    let bad = apply_policy(&c, &policy("bad", json!({"nodelist": "node[001-"}))).await;
    let p = wait_for_pass(&c, &sim, "bad").await;
    let cond = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Degraded"))
        .cloned()
        .expect("Degraded condition");
    assert_eq!(cond.reason, reason::INVALID_SPEC);
    assert!(cond.message.contains("spec.nodelist"), "{}", cond.message);
    assert_eq!(
        p.status.as_ref().unwrap().observed_generation,
        bad.metadata.generation
    );
    let rejected = p.resource_version();
    wait_for_pass(&c, &sim, "good").await;
    let commands = sim.stats().commands;
    // Time passes, in lockstep with the good policy's passes: not one pass of the bad one
    // while its spec stays the same (each would write its status: a retry at every
    // interval, or faster, shows here).
    for _ in 0..30 {
        sim.advance(SignedDuration::from_mins(1));
        ctl.ctx.tick();
        wait_for_pass(&c, &sim, "good").await;
    }
    let p = get_policy(&c, "bad").await;
    assert_eq!(p.resource_version(), rejected, "{:?}", p.status);
    // Slurm was asked for the good policy only: once a pass.
    assert_eq!(sim.stats().commands, commands + 30 * 4);
    assert!(works(&c).await.iter().all(|nm| nm.spec.policy == "good"));
    // A fix is picked up at once: the first pass of the new generation is Reconciled.
    let fixed = apply_policy(&c, &policy("bad", json!({"nodelist": "node[001-002]"}))).await;
    let mut p = wait_for_pass(&c, &sim, "bad").await;
    for _ in 0..5 {
        if p.status.as_ref().unwrap().observed_generation == fixed.metadata.generation {
            break;
        }
        sim.advance(SignedDuration::from_mins(1));
        ctl.ctx.tick();
        p = wait_for_pass(&c, &sim, "bad").await;
    }
    let d = p.status.unwrap();
    assert_eq!(d.observed_generation, fixed.metadata.generation);
    let degraded = d
        .conditions
        .iter()
        .find(|c| c.r#type == "Degraded")
        .unwrap();
    assert_eq!(degraded.reason, reason::RECONCILED);
    assert_eq!(d.nodes_needing_work, 2);
    ctl.stop().await;
    c.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_agent_or_a_missing_token_degrades_the_policy() {
    let c = TestCluster::start("agent").await;
    let ctx = Arc::new(Context::new(
        c.client.clone(),
        Arc::new(controller::AgentConnector::new(
            c.client.clone(),
            Duration::from_millis(300),
            None,
            None,
        )),
        controller::wall_clock(),
        Pace::default(),
        Leadership::always(),
        "e2e",
    ));
    let (stop, mut rx) = watch::channel(false);
    let task = tokio::spawn(controller::run(
        ctx,
        Some(c.namespace.clone()),
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    let p = policy(
        "p",
        json!({"interval": "5s", "agent": {"url": "http://127.0.0.1:9"}}),
    );
    apply_policy(&c, &p).await;
    let degraded = |want: &'static str| {
        let c = &c;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let p = get_policy(c, "p").await;
                if let Some(d) = p.status.as_ref().and_then(|s| {
                    s.conditions
                        .iter()
                        .find(|c| c.r#type == "Degraded" && c.message.contains(want))
                }) {
                    return d.clone();
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no Degraded: {want}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // The token Secret is missing: said so, not taken for an unreachable agent.
    let d = degraded("not found").await;
    assert_eq!(d.reason, reason::AGENT_TOKEN_MISSING);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "agent-token"},
        "stringData": {"token": "t0ken"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(c.client.clone(), &c.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let d = degraded("unreachable").await;
    assert_eq!(d.reason, reason::SLURM_UNREACHABLE);
    // Nothing was ever reserved: the policy goes although its agent is unreachable.
    let policies = Api::<MaintenancePolicy>::namespaced(c.client.clone(), &c.namespace);
    policies
        .delete("p", &DeleteParams::background())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while policies.get_opt("p").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "policy kept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    let _ = task.await;
    c.cleanup().await;
}

#[tokio::test]
async fn deleting_the_policy_withdraws_its_reservations_and_collects_its_work() {
    let c = TestCluster::start("gc").await;
    let sim = sim(6, 9);
    let ctl = Controller::start(&c, &sim, "e2e", false);
    apply_policy(
        &c,
        &policy("roll", json!({"budget": {"maxUnavailablePercent": 50}})),
    )
    .await;
    wait_for_pass(&c, &sim, "roll").await;
    sim.advance(SignedDuration::from_mins(1));
    let p = wait_for_pass(&c, &sim, "roll").await;
    assert_eq!(p.finalizers(), ["slurm-maint.io/cleanup"]);
    let ours = |sim: &SimCluster| {
        sim.peek()
            .reservations
            .iter()
            .filter(|r| r.name.starts_with("slurm-maint-"))
            .count()
    };
    assert!(ours(&sim) > 0, "reservations were made");
    assert_eq!(works(&c).await.len(), 6);
    Api::<MaintenancePolicy>::namespaced(c.client.clone(), &c.namespace)
        .delete("roll", &DeleteParams::background())
        .await
        .unwrap();
    // The controller withdraws the reservations, then lets the policy go; the garbage
    // collector (kube-controller-manager on a real cluster) takes the NodeMaintenances.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let gone = Api::<MaintenancePolicy>::namespaced(c.client.clone(), &c.namespace)
            .get_opt("roll")
            .await
            .unwrap()
            .is_none();
        if gone && works(&c).await.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "policy or NodeMaintenances not collected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ours(&sim), 0, "{:?}", sim.peek().reservations);
    ctl.stop().await;
    c.cleanup().await;
}

#[tokio::test]
async fn invalid_policies_are_refused_at_apply_time() {
    let c = TestCluster::start("refuse").await;
    let api: Api<MaintenancePolicy> = Api::namespaced(c.client.clone(), &c.namespace);
    // OpenAPI: a partition name with a space (every server version checks patterns).
    let bad = policy("p1", json!({"partition": "bad name"}));
    let e = api.create(&PostParams::default(), &bad).await.unwrap_err();
    match e {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422, "{s:?}");
            assert!(s.message.contains("partition"), "{}", s.message);
        }
        e => panic!("{e}"),
    }
    // OpenAPI bounds of spec.blockers: an empty alert name, a scheme other than http(s),
    // more than 32 alerts, none at all.
    let many: Vec<String> = (0..33).map(|i| format!("Alert{i}")).collect();
    for (i, blockers) in [
        json!({"prometheusUrl": "http://p:9090", "alerts": [""]}),
        json!({"prometheusUrl": "ftp://p:9090", "alerts": ["A"]}),
        json!({"prometheusUrl": "http://p:9090", "alerts": many}),
        json!({"prometheusUrl": "http://p:9090", "alerts": []}),
    ]
    .into_iter()
    .enumerate()
    {
        let bad = policy(&format!("b{i}"), json!({"blockers": blockers}));
        match api.create(&PostParams::default(), &bad).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{blockers}: {s:?}");
                assert!(
                    s.message.contains("spec.blockers"),
                    "{blockers}: {}",
                    s.message
                );
            }
            other => panic!("{blockers}: {other:?}"),
        }
    }
    // CEL rules (servers ≥ 1.25 and the embedded one).
    let version = c.client.apiserver_version().await.unwrap();
    let minor: u32 = version.minor.trim_end_matches('+').parse().unwrap_or(0);
    if minor >= 25 {
        let bad = policy(
            "p2",
            json!({"budget": {"maxUnavailablePercent": 10, "maxUnavailable": 2}}),
        );
        let e = api.create(&PostParams::default(), &bad).await.unwrap_err();
        match e {
            kube::Error::Api(s) => assert_eq!(s.code, 422, "{s:?}"),
            e => panic!("{e}"),
        }
        let bad = policy(
            "p3",
            json!({"blockers": {"prometheusUrl": "http://p:9090/?q=1", "alerts": ["A"]}}),
        );
        match api.create(&PostParams::default(), &bad).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{s:?}");
                assert!(s.message.contains("no query or fragment"), "{}", s.message);
            }
            other => panic!("{other:?}"),
        }
        // budget.topology: each field only with the source or mode it belongs to.
        for (i, (topology, want)) in [
            (
                json!({"source": "NodeFeature", "mode": "Spread"}),
                "featurePrefix is required",
            ),
            (
                json!({"source": "SlurmBlocks", "mode": "Spread", "featurePrefix": "rack-"}),
                "featurePrefix is required",
            ),
            (
                json!({"source": "SlurmBlocks", "mode": "Spread", "switchLevel": 1}),
                "switchLevel applies",
            ),
            (
                json!({"source": "SlurmBlocks", "mode": "WholeDomain", "maxUnavailablePerDomain": 1}),
                "maxUnavailablePerDomain applies",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let bad = policy(
                &format!("t{i}"),
                json!({"budget": {"topology": topology}}),
            );
            match api.create(&PostParams::default(), &bad).await {
                Err(kube::Error::Api(s)) => {
                    assert_eq!(s.code, 422, "{topology}: {s:?}");
                    assert!(s.message.contains(want), "{topology}: {}", s.message);
                }
                other => panic!("{topology}: {other:?}"),
            }
        }
    }
    // budget.topology OpenAPI: an unknown source or mode, a per-domain limit of 0.
    for (i, topology) in [
        json!({"source": "Racks", "mode": "Spread"}),
        json!({"source": "SlurmBlocks", "mode": "Half"}),
        json!({"source": "SlurmSwitches", "mode": "Spread", "maxUnavailablePerDomain": 0}),
    ]
    .into_iter()
    .enumerate()
    {
        // Not a MaintenancePolicy the Rust types can hold: sent as JSON.
        let mut bad = serde_json::to_value(policy(&format!("o{i}"), json!({}))).unwrap();
        bad["spec"]["budget"]["topology"] = topology.clone();
        let bad: kube::api::DynamicObject = serde_json::from_value(bad).unwrap();
        let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
            c.client.clone(),
            &c.namespace,
            &kube::api::ApiResource::erase::<MaintenancePolicy>(&()),
        );
        match raw.create(&PostParams::default(), &bad).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{topology}: {s:?}");
                assert!(s.message.contains("topology"), "{topology}: {}", s.message);
            }
            other => panic!("{topology}: {other:?}"),
        }
    }
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // The valid combinations are taken.
    for (i, topology) in [
        json!({"source": "SlurmSwitches", "switchLevel": 1, "mode": "Spread", "maxUnavailablePerDomain": 2}),
        json!({"source": "SlurmBlocks", "mode": "WholeDomain"}),
        json!({"source": "NodeFeature", "featurePrefix": "rack-", "mode": "Spread"}),
    ]
    .into_iter()
    .enumerate()
    {
        let ok = policy(&format!("v{i}"), json!({"budget": {"topology": topology}}));
        api.create(&PostParams::default(), &ok)
            .await
            .unwrap_or_else(|e| panic!("{topology}: {e}"));
    }
    c.cleanup().await;
}

/// A node whose reboot failed stays drained with our reason until a person asks for a
/// retry with the annotation; then it starts afresh (attempts reset, our drain lifted)
/// and completes; the annotation is gone.
#[tokio::test]
async fn a_failed_node_is_retried_when_a_person_asks() {
    let c = TestCluster::start("retry").await;
    let node = |fate| TraceNode {
        job_end: None,
        preemptable: false,
        reboot_secs: 120,
        fate,
        down: false,
    };
    let sim = SimCluster::new(SimConfig {
        trace: Some(vec![
            node(RebootFate::FailOnce),
            node(RebootFate::Ok),
            node(RebootFate::Ok),
        ]),
        refill: false,
        ..SimConfig::default()
    });
    let ctl = Controller::start(&c, &sim, "e2e-retry", false);
    apply_policy(&c, &policy("retry", json!({"reboots": {"maxAttempts": 1}}))).await;
    let phase_of = |items: &[NodeMaintenance], node: &str| {
        items
            .iter()
            .find(|nm| nm.spec.node_name == node)
            .and_then(|nm| nm.status.as_ref())
            .map(|s| s.phase)
    };
    let api: Api<NodeMaintenance> = Api::namespaced(c.client.clone(), &c.namespace);
    let mut asked = false;
    let end = sim.now() + SignedDuration::from_hours(12);
    let items = loop {
        wait_for_pass(&c, &sim, "retry").await;
        sim.sample();
        let items = works(&c).await;
        let phases: Vec<Option<Phase>> = ["node001", "node002", "node003"]
            .iter()
            .map(|n| phase_of(&items, n))
            .collect();
        if !asked && phases[0] == Some(Phase::Failed) {
            // Failed: kept out of service with our reason, and nothing moves by itself.
            let n = sim
                .peek()
                .nodes
                .into_iter()
                .find(|n| n.name == "node001")
                .unwrap();
            assert!(!n.state.in_service(), "{}", n.state);
            assert!(
                n.reason
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("slurm-maint: "),
                "{:?}",
                n.reason
            );
            let failed = items
                .iter()
                .find(|nm| nm.spec.node_name == "node001")
                .unwrap();
            api.patch(
                &failed.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"annotations": {"slurm-maint.io/retry": "fixed the BMC"}}})),
            )
            .await
            .unwrap();
            asked = true;
        }
        if asked && phases.iter().all(|p| *p == Some(Phase::Completed)) {
            break items;
        }
        assert!(sim.now() < end, "not done: {phases:?}");
        sim.advance(SignedDuration::from_mins(1));
        sim.sample();
    };
    let retried = items
        .iter()
        .find(|nm| nm.spec.node_name == "node001")
        .unwrap();
    assert!(
        !retried.annotations().contains_key("slurm-maint.io/retry"),
        "the annotation is removed"
    );
    let st = retried.status.clone().unwrap();
    assert_eq!(st.attempts, 1, "attempts start over");
    let phases: Vec<Phase> = st.transitions.iter().map(|t| t.phase).collect();
    let failed_at = phases.iter().position(|p| *p == Phase::Failed).unwrap();
    assert_eq!(phases[failed_at + 1], Phase::Pending);
    assert!(
        st.transitions[failed_at + 1]
            .message
            .starts_with("retry requested (was: "),
        "{:?}",
        st.transitions[failed_at + 1]
    );
    assert_eq!(*phases.last().unwrap(), Phase::Completed);
    let stats = sim.stats();
    assert_eq!(stats.reboots_per_node.get("node001"), Some(&2));
    assert_eq!(stats.reboots_per_node.get("node002"), Some(&1));
    assert!(
        stats.max_unavailable_or_down <= 1,
        "{}",
        stats.max_unavailable_or_down
    );
    assert!(sim.peek().nodes.iter().all(|n| n.state.in_service()));
    ctl.stop().await;
    c.cleanup().await;
}

/// Outside the maintenance windows nothing starts, except the NodeMaintenance a person
/// expedites with the annotation: it goes ahead (under the budget) and completes.
#[tokio::test]
async fn an_expedited_node_goes_ahead_outside_the_windows() {
    let c = TestCluster::start("expedite").await;
    let node = |job_end: Option<i64>| TraceNode {
        job_end: job_end.map(SignedDuration::from_mins),
        preemptable: false,
        reboot_secs: 120,
        fate: RebootFate::Ok,
        down: false,
    };
    let sim = SimCluster::new(SimConfig {
        trace: Some(vec![node(None), node(Some(30)), node(None), node(Some(90))]),
        refill: false,
        ..SimConfig::default()
    });
    let ctl = Controller::start(&c, &sim, "e2e-expedite", false);
    // Windows on Saturdays only; the campaign starts on a Tuesday.
    apply_policy(
        &c,
        &policy(
            "expedite",
            json!({"campaign": {"windows": [{"days": ["Sat"], "start": "10:00", "end": "12:00"}]}}),
        ),
    )
    .await;
    let api: Api<NodeMaintenance> = Api::namespaced(c.client.clone(), &c.namespace);
    let mut asked = false;
    let end = sim.now() + SignedDuration::from_hours(8);
    let items = loop {
        wait_for_pass(&c, &sim, "expedite").await;
        sim.sample();
        let items = works(&c).await;
        if !asked && items.len() == 4 {
            let target = items
                .iter()
                .find(|nm| nm.spec.node_name == "node002")
                .unwrap();
            api.patch(
                &target.name_any(),
                &PatchParams::default(),
                &Patch::Merge(
                    &json!({"metadata": {"annotations": {"slurm-maint.io/expedite": "security fix"}}}),
                ),
            )
            .await
            .unwrap();
            asked = true;
        }
        let done = items.iter().any(|nm| {
            nm.spec.node_name == "node002"
                && nm
                    .status
                    .as_ref()
                    .is_some_and(|s| s.phase == Phase::Completed)
        });
        if done {
            break items;
        }
        assert!(sim.now() < end, "node002 not done in 8 h");
        sim.advance(SignedDuration::from_mins(1));
        sim.sample();
    };
    for nm in &items {
        let phase = nm.status.as_ref().map(|s| s.phase);
        if nm.spec.node_name == "node002" {
            continue;
        }
        assert_eq!(
            phase,
            Some(Phase::Pending),
            "{} waits for the window",
            nm.spec.node_name
        );
    }
    let stats = sim.stats();
    assert_eq!(stats.reboots_per_node.get("node002"), Some(&1));
    assert_eq!(
        stats.reboots_per_node.len(),
        1,
        "{:?}",
        stats.reboots_per_node
    );
    assert_eq!(stats.non_preemptable_killed, 0);
    // The preview says why the others wait.
    let p = get_policy(&c, "expedite").await;
    let preview = p.status.unwrap().next;
    assert_eq!(preview.len(), 3, "{preview:?}");
    assert!(
        preview.iter().all(|n| n
            .waiting
            .as_deref()
            .is_some_and(|w| w.contains("outside the maintenance windows"))),
        "{preview:?}"
    );
    ctl.stop().await;
    c.cleanup().await;
}

/// Slurm as the simulator has it, except that one node's reboots are refused, as a site
/// reboot command (a pre-reboot hook) that exits non-zero makes them.
struct RefuseReboots {
    sim: SimCluster,
    node: &'static str,
}

impl SlurmClient for RefuseReboots {
    fn snapshot<'a>(
        &'a self,
        partition: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<slurm_maint::agent::api::PartitionSnapshot, SlurmError>,
    > {
        self.sim.snapshot(partition)
    }
    fn execute<'a>(
        &'a self,
        action: &'a slurm_maint::plan::Action,
    ) -> futures::future::BoxFuture<'a, Result<slurm_maint::agent::api::Done, SlurmError>> {
        match action {
            slurm_maint::plan::Action::Reboot { node, .. } if node == self.node => {
                Box::pin(async {
                    Err(SlurmError::Slurm {
                        status: 502,
                        code: "CommandFailed".into(),
                        message: "pre-reboot: /scratch still mounted".into(),
                    })
                })
            }
            _ => self.sim.execute(action),
        }
    }
    fn health_check<'a>(
        &'a self,
        node: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<slurm_maint::plan::HealthResult, SlurmError>> {
        self.sim.health_check(node)
    }
    fn run_check<'a>(
        &'a self,
        node: &'a str,
        check: &'a str,
        fault: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Result<slurm_maint::agent::api::CheckReport, SlurmError>>
    {
        self.sim.run_check(node, check, fault)
    }
    fn drain<'a>(
        &'a self,
        node: &'a str,
        reason: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<slurm_maint::agent::api::Done, SlurmError>> {
        self.sim.drain(node, reason)
    }
    fn resume<'a>(
        &'a self,
        node: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<slurm_maint::agent::api::Done, SlurmError>> {
        self.sim.resume(node)
    }
}

/// A reboot refused outright (a failing pre-reboot hook) fails its attempt at once, not
/// after the reboot timeout: after `maxAttempts` the node is Failed, drained with the
/// reason, within minutes; it is never rebooted; the other nodes complete.
#[tokio::test]
async fn a_refused_reboot_fails_fast_and_is_never_issued() {
    let c = TestCluster::start("refused").await;
    let node = || TraceNode {
        job_end: None,
        preemptable: false,
        reboot_secs: 120,
        fate: RebootFate::Ok,
        down: false,
    };
    let sim = SimCluster::new(SimConfig {
        trace: Some(vec![node(), node(), node(), node()]),
        refill: false,
        ..SimConfig::default()
    });
    let slurm = Arc::new(RefuseReboots {
        sim: sim.clone(),
        node: "node002",
    });
    let ctl = Controller::start_with(&c, &sim, slurm, "e2e-refused", false);
    // 50 % of 4: the failed node, kept drained, holds one of the two slots.
    apply_policy(
        &c,
        &policy(
            "refused",
            json!({"reboots": {"timeout": "1h"}, "budget": {"maxUnavailablePercent": 50}}),
        ),
    )
    .await;
    let start = sim.now();
    let p = drive(
        &c,
        &sim,
        "refused",
        12,
        |_| {},
        |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.phases.completed == 3 && s.phases.failed == 1)
        },
    )
    .await;
    let items = works(&c).await;
    let refused = items
        .iter()
        .find(|nm| nm.spec.node_name == "node002")
        .unwrap();
    let st = refused.status.clone().unwrap();
    assert_eq!(st.phase, Phase::Failed, "{st:?}");
    assert_eq!(st.attempts, 3);
    assert!(
        st.last_error
            .as_deref()
            .unwrap()
            .contains("reboot refused: Slurm failed (CommandFailed"),
        "{st:?}"
    );
    // Three refusals, a pass apart, well inside one reboot timeout.
    let failed_at = st.phase_since.unwrap();
    assert!(
        failed_at.duration_since(start) < SignedDuration::from_hours(1),
        "failed {} after the start",
        failed_at.duration_since(start)
    );
    let stats = sim.stats();
    assert_eq!(
        stats.reboots_per_node.get("node002"),
        None,
        "never rebooted"
    );
    for n in ["node001", "node003", "node004"] {
        assert_eq!(stats.reboots_per_node.get(n), Some(&1), "{n}");
    }
    let n2 = sim
        .peek()
        .nodes
        .into_iter()
        .find(|n| n.name == "node002")
        .unwrap();
    assert!(
        n2.reason
            .as_deref()
            .unwrap_or("")
            .starts_with("slurm-maint: reboot failed after 3 attempts: reboot refused"),
        "{:?}",
        n2.reason
    );
    assert_eq!(p.status.unwrap().phases.failed, 1);
    ctl.stop().await;
    c.cleanup().await;
}

fn condition(p: &MaintenancePolicy, ty: &str) -> slurm_maint::api::condition::Condition {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == ty))
        .cloned()
        .unwrap_or_else(|| panic!("no {ty} condition: {:?}", p.status))
}

/// Slurm answered, and the policy is what is wrong: the reasons say which mistake.
#[tokio::test]
async fn what_slurm_answered_is_told_by_the_reason() {
    let c = TestCluster::start("reasons").await;
    let sim = sim(4, 1);
    let ctl = Controller::start(&c, &sim, "e2e", false);
    apply_policy(&c, &policy("nopart", json!({"partition": "gpu"}))).await;
    apply_policy(&c, &policy("scope", json!({"nodelist": "gpu[1-4]"}))).await;
    let p = wait_for_pass(&c, &sim, "nopart").await;
    let d = condition(&p, "Degraded");
    assert_eq!(d.reason, reason::PARTITION_NOT_FOUND);
    assert!(
        d.message.contains("partition gpu not found"),
        "{}",
        d.message
    );
    assert_eq!(condition(&p, "Ready").status, ConditionStatus::False);
    let p = wait_for_pass(&c, &sim, "scope").await;
    for ty in ["Ready", "Progressing"] {
        let r = condition(&p, ty);
        assert_eq!(r.status, ConditionStatus::False, "{ty}");
        assert_eq!(r.reason, reason::NODELIST_MATCHES_NO_NODE, "{ty}");
        assert!(
            r.message.contains("none of the 4 nodes of partition batch"),
            "{}",
            r.message
        );
    }
    assert!(works(&c).await.is_empty());
    ctl.stop().await;
    c.cleanup().await;
}

/// The agent as it answers a token it does not know.
struct WrongToken;

impl SlurmClient for WrongToken {
    fn snapshot<'a>(
        &'a self,
        _partition: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<slurm_maint::agent::api::PartitionSnapshot, SlurmError>,
    > {
        Box::pin(async { Err(unauthorized()) })
    }
    fn execute<'a>(
        &'a self,
        _action: &'a slurm_maint::plan::Action,
    ) -> futures::future::BoxFuture<'a, Result<slurm_maint::agent::api::Done, SlurmError>> {
        Box::pin(async { Err(unauthorized()) })
    }
    fn health_check<'a>(
        &'a self,
        _node: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<slurm_maint::plan::HealthResult, SlurmError>> {
        Box::pin(async { Err(unauthorized()) })
    }
    fn run_check<'a>(
        &'a self,
        _node: &'a str,
        _check: &'a str,
        _fault: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Result<slurm_maint::agent::api::CheckReport, SlurmError>>
    {
        Box::pin(async { Err(unauthorized()) })
    }
    fn drain<'a>(
        &'a self,
        _node: &'a str,
        _reason: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<slurm_maint::agent::api::Done, SlurmError>> {
        Box::pin(async { Err(unauthorized()) })
    }
    fn resume<'a>(
        &'a self,
        _node: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<slurm_maint::agent::api::Done, SlurmError>> {
        Box::pin(async { Err(unauthorized()) })
    }
}

/// What the agent client makes of the agent's 401 answer.
fn unauthorized() -> SlurmError {
    SlurmError::Refused {
        status: 401,
        code: "Unauthorized".into(),
        message: "missing or wrong bearer token".into(),
    }
}

#[tokio::test]
async fn a_wrong_agent_token_is_told_by_the_reason() {
    let c = TestCluster::start("token").await;
    let sim = sim(4, 1);
    let ctl = Controller::start_with(&c, &sim, Arc::new(WrongToken), "e2e", false);
    apply_policy(&c, &policy("roll", json!({}))).await;
    let p = wait_for_pass(&c, &sim, "roll").await;
    let d = condition(&p, "Degraded");
    assert_eq!(d.reason, reason::AGENT_UNAUTHORIZED);
    assert!(d.message.contains("wrong bearer token"), "{}", d.message);
    // Said once in a Warning Event, in words.
    let events: Api<K8sEvent> = Api::namespaced(c.client.clone(), &c.namespace);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .any(|e| {
                e.reason.as_deref() == Some(reason::AGENT_UNAUTHORIZED)
                    && e.type_.as_deref() == Some("Warning")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("wrong bearer token"))
            });
        if found {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no Warning Event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ctl.stop().await;
    c.cleanup().await;
}

/// Named health checks chosen by the policy: a node whose check fails ends Failed and
/// stays drained with a reason naming the check, gets one Event and one webhook call
/// (retried past a 503), and passes after a fix and a retry; every check runs once per
/// HealthCheck phase, and only then.
#[tokio::test]
async fn a_failed_health_check_keeps_its_node_drained_and_calls_the_webhook_once() {
    let c = TestCluster::start("checks").await;
    let node = || TraceNode {
        job_end: None,
        preemptable: false,
        reboot_secs: 120,
        fate: RebootFate::Ok,
        down: false,
    };
    let sim = SimCluster::new(SimConfig {
        trace: Some(vec![node(), node(), node()]),
        refill: false,
        ..SimConfig::default()
    });
    sim.fail_check("node002", "gpu-ecc", "GPU 1: 2 uncorrected ECC errors");
    let hook = common::WebhookReceiver::start(vec![503]).await;
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "tickets"},
        "data": {"url": base64_encode(hook.url.as_bytes())},
    }))
    .unwrap();
    Api::<Secret>::namespaced(c.client.clone(), &c.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let ctl = Controller::start(&c, &sim, "e2e-checks", false);
    apply_policy(
        &c,
        &policy(
            "checks",
            json!({
                "healthChecks": {
                    "readiness": "ready",
                    "reboot": ["gpu-ecc"],
                    "webhook": {"secretName": "tickets"},
                },
            }),
        ),
    )
    .await;
    let status_of = |items: &[NodeMaintenance], node: &str| {
        items
            .iter()
            .find(|nm| nm.spec.node_name == node)
            .and_then(|nm| nm.status.clone())
            .unwrap_or_default()
    };
    let api: Api<NodeMaintenance> = Api::namespaced(c.client.clone(), &c.namespace);
    let mut asked = false;
    let end = sim.now() + SignedDuration::from_hours(12);
    loop {
        wait_for_pass(&c, &sim, "checks").await;
        sim.sample();
        let items = works(&c).await;
        // Checks ran only for nodes whose work was in HealthCheck at that pass.
        let phases: Vec<Phase> = ["node001", "node002", "node003"]
            .iter()
            .map(|n| status_of(&items, n).phase)
            .collect();
        let failed = status_of(&items, "node002");
        if !asked && failed.phase == Phase::Failed {
            let n = sim
                .peek()
                .nodes
                .into_iter()
                .find(|n| n.name == "node002")
                .unwrap();
            assert!(n.state.is_drained(), "{}", n.state);
            let reason = n.reason.unwrap_or_default();
            assert!(
                reason.starts_with("slurm-maint: health check failed after reboot: check gpu-ecc failed: exit code 1"),
                "{reason}"
            );
            let names: Vec<(&str, bool)> = failed
                .health_checks
                .iter()
                .map(|r| (r.name.as_str(), r.passed))
                .collect();
            assert_eq!(names, [("ready", true), ("gpu-ecc", false)]);
            assert_eq!(
                failed.health_checks[1].output,
                "GPU 1: 2 uncorrected ECC errors"
            );
            assert_eq!(
                failed.notification.as_deref(),
                Some("webhook answered 200 (attempt 2)")
            );
            let got = hook.received();
            assert_eq!(got.len(), 2, "one 503, then the delivery: {got:?}");
            assert_eq!(got[0], got[1]);
            assert_eq!(got[1]["node"], "node002");
            assert_eq!(got[1]["check"], "gpu-ecc");
            assert_eq!(got[1]["output"], "GPU 1: 2 uncorrected ECC errors");
            assert_eq!(got[1]["fault"], serde_json::Value::Null);
            // Fixed; a person asks for a retry.
            sim.fix_check("node002", "gpu-ecc");
            let nm = items
                .iter()
                .find(|nm| nm.spec.node_name == "node002")
                .unwrap();
            api.patch(
                &nm.name_any(),
                &PatchParams::default(),
                &Patch::Merge(
                    &json!({"metadata": {"annotations": {"slurm-maint.io/retry": "GPU replaced"}}}),
                ),
            )
            .await
            .unwrap();
            asked = true;
        }
        if asked && phases.iter().all(|p| *p == Phase::Completed) {
            break;
        }
        assert!(sim.now() < end, "not done: {phases:?}");
        sim.advance(SignedDuration::from_mins(1));
        sim.sample();
    }
    let runs = sim.checks_run();
    let count = |node: &str, check: &str| {
        runs.iter()
            .filter(|(n, c, _)| n == node && c == check)
            .count()
    };
    for n in ["node001", "node003"] {
        assert_eq!(
            (count(n, "ready"), count(n, "gpu-ecc")),
            (1, 1),
            "{n}: {runs:?}"
        );
    }
    assert_eq!(
        (count("node002", "ready"), count("node002", "gpu-ecc")),
        (2, 2),
        "once per HealthCheck phase: {runs:?}"
    );
    assert_eq!(hook.received().len(), 2, "no call for a pass");
    assert!(sim.peek().nodes.iter().all(|n| n.state.in_service()));
    let events: Api<K8sEvent> = Api::namespaced(c.client.clone(), &c.namespace);
    let failures: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("HealthCheckFailed"))
        .filter_map(|e| e.note)
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with("check gpu-ecc failed on node002: exit code 1"),
        "{failures:?}"
    );
    let metrics = ctl.ctx.metrics.encode();
    assert!(
        metrics.contains(&format!(
            r#"slurm_maint_health_checks_total{{namespace="{}",policy="checks",check="gpu-ecc",outcome="failed"}} 1"#,
            c.namespace
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"slurm_maint_health_webhook_calls_total{outcome="sent"} 1"#),
        "{metrics}"
    );
    ctl.stop().await;
    c.cleanup().await;
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
