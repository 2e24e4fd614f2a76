//! Whole campaigns on the simulated partition, on a virtual clock: our planner, the
//! seed's policy and the optimum over the same trace.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};

use super::optimum::{self, Job as OptJob};
use super::seed::{RebootGate, SeedConfig, SeedPolicy, SeedState};
use crate::api::MaintenanceAction;
use crate::api::MaintenancePolicySpec;
use crate::api::node_maintenance::NodeMaintenancePhase as Phase;
use crate::plan::{self, BudgetLimit, Settings, Snapshot, Work};
use crate::sim::{RebootFate, SimCluster, SimConfig, TraceNode};

/// Budget of every campaign, percent.
pub const BUDGET_PCT: f64 = 10.0;
/// Reboot timeout of both policies (reboots take 8–15 min).
pub const REBOOT_TIMEOUT: SignedDuration = SignedDuration::from_mins(20);
/// Give up after this much virtual time.
pub const LIMIT: SignedDuration = SignedDuration::from_hours(24 * 30);

/// The figures of one policy on one trace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub policy: String,
    pub nodes: usize,
    /// `None`: did not finish within [`LIMIT`].
    pub makespan_h: Option<f64>,
    pub idle_drained_nh: f64,
    pub lost_nh: f64,
    pub max_out: usize,
    pub allowed: usize,
    /// Sampled minutes with more nodes out than allowed.
    pub violations: u64,
    pub preemptable_cancelled: u64,
    pub non_preemptable_killed: u64,
    pub failed: usize,
    pub wall_s: f64,
    pub passes: u64,
    /// Stopped: no progress for two virtual days (a deadlock).
    pub stalled: bool,
}

/// The optimum's figures for a trace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Optimum {
    /// Capacity: allowed − down at the start.
    pub k: usize,
    /// Lower bound on any policy's makespan, hours.
    pub lower_bound_h: f64,
    /// Exact optimum if every reboot took the shortest reboot time, hours.
    pub equal_p_h: f64,
    /// Earliest-release-first with the real reboot times (a feasible schedule), hours.
    pub erf_h: f64,
}

/// The optimum of a trace: releases are job ends (0 when idle or preemptable, since
/// both policies end preemptable jobs); a reboot that fails once costs two reboots plus
/// the minute Slurm takes to report it; a node that never returns costs one attempt
/// (the earliest its failure can be known).
pub fn optimum(trace: &[TraceNode], pct: f64) -> Optimum {
    let down = trace.iter().filter(|n| n.down).count();
    let allowed = BudgetLimit::Percent(pct).allowed(trace.len());
    let k = allowed.saturating_sub(down).max(1);
    let jobs: Vec<OptJob> = trace
        .iter()
        .filter(|n| !n.down)
        .map(|n| OptJob {
            release: match (n.job_end, n.preemptable) {
                (Some(e), false) => e.as_secs(),
                _ => 0,
            },
            length: match n.fate {
                RebootFate::Ok => n.reboot_secs as i64,
                RebootFate::FailOnce => 2 * n.reboot_secs as i64 + 60,
                RebootFate::Never => n.reboot_secs as i64 + 60,
            },
        })
        .collect();
    let pmin = jobs.iter().map(|j| j.length).min().unwrap_or(0);
    let equal: Vec<OptJob> = jobs.iter().map(|j| OptJob { length: pmin, ..*j }).collect();
    let h = |s: i64| s as f64 / 3600.0;
    Optimum {
        k,
        lower_bound_h: h(optimum::lower_bound(&jobs, k)),
        equal_p_h: h(optimum::erf_makespan(&equal, k)),
        erf_h: h(optimum::erf_makespan(&jobs, k)),
    }
}

fn sim_for(trace: &[TraceNode], seed: u64) -> SimCluster {
    SimCluster::new(SimConfig {
        seed,
        trace: Some(trace.to_vec()),
        refill: false,
        coarse: true,
        ..SimConfig::default()
    })
}

pub(crate) fn spec(start: Timestamp) -> MaintenancePolicySpec {
    let mut spec: MaintenancePolicySpec = serde_json::from_value(serde_json::json!({
        "partition": "batch",
        "agent": {"url": "http://agent", "tokenSecretRef": {"name": "t"}},
        "budget": {"maxUnavailablePercent": BUDGET_PCT},
        "reservations": {"enabled": true},
        "reboots": {"enabled": true, "timeout": "20m"},
        "preemption": {"terminatePreemptableJobs": true},
    }))
    .expect("valid spec");
    spec.campaign.reboot_required_before = Some(start);
    spec
}

fn finish(
    sim: &SimCluster,
    mut o: Outcome,
    start: Timestamp,
    done: bool,
    wall: Instant,
) -> Outcome {
    let st = sim.stats();
    o.makespan_h = done.then(|| sim.now().duration_since(start).as_secs_f64() / 3600.0);
    o.idle_drained_nh = st.idle_out_node_secs / 3600.0;
    o.lost_nh = st.out_node_secs / 3600.0;
    o.max_out = st.max_unavailable_or_down;
    o.violations = st.over_limit_samples;
    o.preemptable_cancelled = st.preemptable_cancelled;
    o.non_preemptable_killed = st.non_preemptable_killed;
    o.wall_s = wall.elapsed().as_secs_f64();
    o
}

/// Our planner over a simulated partition, one pass per [`Ours::pass`], as the
/// controller runs one per interval: the snapshot, `plan::plan`, the new work and status
/// updates kept, the actions executed (a refused one is retried by a later pass).
pub struct Ours {
    spec: MaintenancePolicySpec,
    work: Vec<Work>,
    index: HashMap<String, usize>,
    /// Nodes whose work must end for the campaign to be done.
    wanted: usize,
    pub passes: u64,
    /// What the last pass said is next due.
    next_due: Option<Timestamp>,
    /// The campaign's end as the last pass's status would say (`status.eta`).
    pub eta: Option<Timestamp>,
}

impl Ours {
    /// A campaign that wants every node booted before `start` rebooted.
    pub fn new(start: Timestamp, wanted: usize) -> Self {
        Self::with_spec(spec(start), wanted)
    }

    /// A campaign run by `spec` (its `campaign.rebootRequiredBefore` says which nodes).
    pub fn with_spec(spec: MaintenancePolicySpec, wanted: usize) -> Self {
        Self {
            spec,
            work: vec![],
            index: HashMap::new(),
            wanted,
            passes: 0,
            next_due: None,
            eta: None,
        }
    }

    /// How long until the next pass, as the controller waits: `step` (its interval), or
    /// less when the last pass said something is due sooner (at least 1 s).
    pub fn wait(&self, now: Timestamp, step: SignedDuration) -> SignedDuration {
        crate::controller::policy::wait_after(step, now, self.next_due)
    }

    /// One pass at the simulator's now; whether the campaign is done.
    pub fn pass(&mut self, sim: &SimCluster) -> bool {
        let now = sim.now();
        let s = Settings::from_spec(&self.spec, now).expect("valid settings");
        let snap = sim.take_snapshot();
        let mut health = BTreeMap::new();
        for w in self
            .work
            .iter()
            .filter(|w| w.status.phase == Phase::HealthCheck)
        {
            if let Some(h) = sim.healthy(&w.node) {
                health.insert(w.node.clone(), h);
            }
        }
        let snapshot = Snapshot {
            nodes: snap.nodes,
            jobs: snap.jobs,
            reservations: snap.reservations,
            health,
            topology: snap.topology,
        };
        let p = plan::plan("bench", &s, &snapshot, &self.work, now);
        self.passes += 1;
        self.next_due = p.next_due;
        self.eta = plan::status::estimate_eta(&p, &self.work, now, p.per_node);
        for nw in &p.new_work {
            self.index.insert(nw.name.clone(), self.work.len());
            self.work.push(Work {
                name: nw.name.clone(),
                node: nw.node.clone(),
                action: MaintenanceAction::Reboot,
                campaign: Some(nw.campaign.clone()),
                status: Default::default(),
                oci: None,
            });
        }
        for u in &p.updates {
            self.work[self.index[&u.name]].status = u.status.clone();
            for a in &u.actions {
                let _ = sim.exec(a);
            }
        }
        let terminal = self
            .work
            .iter()
            .filter(|w| w.status.phase.is_terminal())
            .count();
        terminal >= self.wanted
    }

    /// Nodes whose work failed.
    pub fn failed(&self) -> usize {
        self.work
            .iter()
            .filter(|w| w.status.phase == Phase::Failed)
            .count()
    }
}

/// Our planner over the simulated trace: a pass every `step` of virtual time, as the
/// controller runs one per interval.
pub fn run_ours(trace: &[TraceNode], seed: u64, step: SignedDuration) -> Outcome {
    let wall = Instant::now();
    let sim = sim_for(trace, seed);
    let start = sim.now();
    let allowed = BudgetLimit::Percent(BUDGET_PCT).allowed(trace.len());
    let wanted = trace.iter().filter(|n| !n.down).count();
    let mut ours = Ours::new(start, wanted);
    let mut o = Outcome {
        policy: "ours".into(),
        nodes: trace.len(),
        allowed,
        ..Default::default()
    };
    let mut done = false;
    while sim.now().duration_since(start) < LIMIT {
        if ours.pass(&sim) {
            done = true;
            break;
        }
        sim.advance(step);
        sim.sample_for(step, allowed);
    }
    o.passes = ours.passes;
    o.failed = ours.failed();
    finish(&sim, o, start, done, wall)
}

/// The seed's policy over the same trace, an iteration every `step`.
pub fn run_seed(
    trace: &[TraceNode],
    seed: u64,
    step: SignedDuration,
    duration: SignedDuration,
    reboot_gate: RebootGate,
    label: &str,
) -> Outcome {
    let wall = Instant::now();
    let sim = sim_for(trace, seed);
    let start = sim.now();
    let allowed = BudgetLimit::Percent(BUDGET_PCT).allowed(trace.len());
    let wanted = trace.iter().filter(|n| !n.down).count();
    let mut policy = SeedPolicy::new(SeedConfig {
        partition: "batch".into(),
        max_down_percentage: BUDGET_PCT,
        duration,
        terminate_preemptable: true,
        reboot_timeout: REBOOT_TIMEOUT,
        reboot_gate,
        ..SeedConfig::default()
    });
    let mut o = Outcome {
        policy: label.into(),
        nodes: trace.len(),
        allowed,
        ..Default::default()
    };
    let mut done = false;
    let mut last_change = start;
    let mut last_states: Vec<SeedState> = vec![];
    while sim.now().duration_since(start) < LIMIT {
        let now = sim.now();
        let snap = sim.take_snapshot();
        let actions = policy.pass(&snap, now);
        for a in &actions {
            let _ = sim.exec(a);
        }
        o.passes += 1;
        if policy.finished(wanted) {
            done = true;
            break;
        }
        // Stalled: nothing done and no state moved for two virtual days.
        let states: Vec<SeedState> = policy.nodes.values().map(|n| n.state).collect();
        if !actions.is_empty() || states != last_states {
            last_change = now;
            last_states = states;
        } else if now.duration_since(last_change) > SignedDuration::from_hours(48) {
            o.stalled = true;
            break;
        }
        sim.advance(step);
        sim.sample_for(step, allowed);
    }
    o.failed = policy
        .nodes
        .values()
        .filter(|n| n.state == SeedState::Failed)
        .count();
    finish(&sim, o, start, done, wall)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::trace::{TraceParams, generate};

    /// The ETA status shows, from the plan (release times and the time out learned from
    /// the nodes done), against when the simulated campaign really ends: asked once a
    /// quarter of the nodes are done, within a fifth of the campaign's length.
    #[test]
    fn the_eta_is_close_to_the_real_end() {
        for seed in [1, 2, 3] {
            let trace = generate(&TraceParams::new(60, seed));
            let sim = sim_for(&trace, seed);
            let start = sim.now();
            let wanted = trace.iter().filter(|n| !n.down).count();
            let mut ours = Ours::new(start, wanted);
            let mut asked = None;
            while !ours.pass(&sim) {
                let done = ours
                    .work
                    .iter()
                    .filter(|w| w.status.phase.is_terminal())
                    .count();
                if asked.is_none() && done * 4 >= wanted {
                    asked = ours.eta;
                }
                sim.advance(SignedDuration::from_mins(1));
                assert!(
                    sim.now().duration_since(start) < LIMIT,
                    "campaign did not end"
                );
            }
            let end = sim.now();
            let eta = asked.expect("an ETA once a quarter is done");
            let off = eta.duration_since(end).as_secs_f64().abs();
            let length = end.duration_since(start).as_secs_f64();
            assert!(
                off <= length / 5.0,
                "seed {seed}: ETA {eta}, ended {end}, {off:.0} s off over {length:.0} s"
            );
        }
    }

    #[test]
    fn small_campaigns_finish_within_the_budget() {
        let trace = generate(&TraceParams::new(60, 3));
        let opt = optimum(&trace, BUDGET_PCT);
        let one = SignedDuration::from_mins(1);
        let ours = run_ours(&trace, 3, one);
        let seed = run_seed(
            &trace,
            3,
            one,
            SignedDuration::from_hours(6),
            RebootGate::InFlight,
            "seed",
        );
        for o in [&ours, &seed] {
            let m = o.makespan_h.unwrap_or_else(|| panic!("{o:?}"));
            assert!(m >= opt.lower_bound_h - 1e-9, "{o:?} beats {opt:?}");
            assert_eq!(o.non_preemptable_killed, 0, "{o:?}");
        }
        assert_eq!(ours.violations, 0, "{ours:?}");
        assert!(ours.max_out <= ours.allowed, "{ours:?}");
    }
}
