//! `bench campaign --topology`: a rolling-reboot campaign on a partition cut into blocks
//! (`topology/block`), busy with jobs that each need a whole block. Every node needs a
//! reboot at the campaign's start; the planner runs it topology-blind, with `Spread`
//! (one node out per block) and with `WholeDomain` (a block's nodes together), under the
//! same partition budget, against the same workload without maintenance.
//!
//! A block job can only start on a block whose every node is in service, so one node out
//! for maintenance takes the whole block from those jobs: the figure that matters is the
//! block-hours in which a block had at least one node out for maintenance.

use std::time::Instant;

use jiff::SignedDuration;

use super::busy::{self, REBOOT_SECS};
use super::campaign::{Ours, spec};
use super::{Table, f1};
use crate::api::policy::{BudgetTopology, DomainSourceKind, TopologyModeKind};
use crate::sim::swf::{Arrival, SwfTrace, limit_rule};
use crate::sim::{Rng, SimCluster, SimConfig};
use crate::slurm::topology::{Block, Topology};

/// Give up on a campaign after this much virtual time.
pub const LIMIT: SignedDuration = SignedDuration::from_hours(24 * 30);
/// Block jobs run 1–8 h (uniform), seconds.
pub const RUN_SECS: (u64, u64) = (3600, 8 * 3600);

/// What a run is about.
#[derive(Clone, Debug, PartialEq)]
pub struct TopoParams {
    pub nodes: usize,
    pub block_size: usize,
    pub seed: u64,
    /// Offered load: block-hours of work submitted per block-hour of the partition.
    pub load: f64,
    /// Nodes out at once (the partition budget), the same for every policy.
    pub budget: usize,
    /// Jobs arrive from 0 to `start + days`; the campaign starts at `start`.
    pub start: SignedDuration,
    pub days: f64,
    /// Virtual time between passes (and samples).
    pub step: SignedDuration,
}

impl TopoParams {
    /// The defaults of `bench campaign --topology` for `nodes` in blocks of `block_size`:
    /// load 0.85, one block's worth of budget, a 48 h warm-up, 5 days of arrivals after it.
    pub fn new(nodes: usize, block_size: usize, seed: u64) -> Self {
        Self {
            nodes,
            block_size,
            seed,
            load: 0.85,
            budget: block_size,
            start: SignedDuration::from_hours(48),
            days: 5.0,
            step: SignedDuration::from_secs(60),
        }
    }

    pub fn blocks(&self) -> usize {
        self.nodes / self.block_size.max(1)
    }

    pub fn describe(&self) -> String {
        format!(
            "{} nodes in {} blocks of {} (topology/block); block jobs (each on every node of one block) \
             run {}–{} h uniform, time limits by the limit rule (run × U[1, 3) rounded up to the tiers), \
             Poisson arrivals at offered load {:.2} of the blocks, FIFO + EASY backfill on whole blocks; \
             campaign at {:.0} h, arrivals until {:.0} h; every node needs a reboot ({}–{} s each, drawn \
             per node, seed {}); budget {} nodes out at once ({:.1}%) for every policy; a pass every {} s",
            self.nodes,
            self.blocks(),
            self.block_size,
            RUN_SECS.0 / 3600,
            RUN_SECS.1 / 3600,
            self.load,
            self.start.as_secs_f64() / 3600.0,
            self.start.as_secs_f64() / 3600.0 + self.days * 24.0,
            REBOOT_SECS.0,
            REBOOT_SECS.1,
            self.seed,
            self.budget,
            100.0 * self.budget as f64 / self.nodes.max(1) as f64,
            self.step.as_secs(),
        )
    }
}

/// The partition's blocks, `b01`, `b02`, …: consecutive nodes `block_size` at a time
/// (nodes past the last whole block are in none).
pub fn topology(p: &TopoParams) -> Topology {
    Topology {
        switches: vec![],
        blocks: (0..p.blocks())
            .map(|b| Block {
                name: format!("b{:02}", b + 1),
                nodes: (0..p.block_size)
                    .map(|i| format!("node{:03}", b * p.block_size + i + 1))
                    .collect(),
            })
            .collect(),
    }
}

/// The block jobs, seeded: Poisson arrivals at `p.load`, runs uniform in [`RUN_SECS`],
/// limits by [`limit_rule`].
pub fn workload(p: &TopoParams) -> Vec<Arrival> {
    let mut rng = Rng::new(p.seed ^ 0x7090_1061);
    let mean_run = (RUN_SECS.0 + RUN_SECS.1) as f64 / 2.0;
    let mean_gap = mean_run / (p.load.max(1e-3) * p.blocks().max(1) as f64);
    let until = (p.start.as_secs_f64() + p.days * 86_400.0) as i64;
    let mut jobs = vec![];
    let mut t = 0.0;
    for id in 1.. {
        t += -mean_gap * (1.0 - rng.unit()).ln();
        if t as i64 > until {
            break;
        }
        let run = rng.range(RUN_SECS.0, RUN_SECS.1);
        jobs.push(Arrival {
            id,
            submit: t as i64,
            nodes: p.block_size,
            run,
            limit: limit_rule(p.seed, id, run),
        });
    }
    jobs
}

/// Who runs the maintenance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// No maintenance: the reference for waits.
    None,
    /// Ours without `budget.topology`.
    Blind,
    /// `budget.topology` Spread over the blocks, one node out per block.
    Spread,
    /// `budget.topology` WholeDomain over the blocks.
    Whole,
}

impl Policy {
    pub fn label(self) -> &'static str {
        match self {
            Policy::None => "no maintenance",
            Policy::Blind => "topology-blind",
            Policy::Spread => "Spread, 1 per block",
            Policy::Whole => "WholeDomain",
        }
    }

    fn topology(self) -> Option<BudgetTopology> {
        let (mode, per) = match self {
            Policy::None | Policy::Blind => return None,
            Policy::Spread => (TopologyModeKind::Spread, Some(1)),
            Policy::Whole => (TopologyModeKind::WholeDomain, None),
        };
        Some(BudgetTopology {
            source: DomainSourceKind::SlurmBlocks,
            switch_level: None,
            feature_prefix: None,
            mode,
            max_unavailable_per_domain: per,
        })
    }
}

/// One run's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Run {
    pub policy: String,
    /// `None`: not finished within [`LIMIT`] (or no maintenance).
    pub makespan_h: Option<f64>,
    /// Block-hours in which a block had at least one node out for maintenance.
    pub unusable_bh: f64,
    /// Block-hours in which a block ran no job while block jobs waited, from the
    /// campaign's start until every job has started.
    pub idle_queued_bh: f64,
    /// Sampled minutes in which a block had a node out for maintenance while another of
    /// its nodes ran a job.
    pub split_mins: u64,
    /// Most nodes out at once in one block, and sampled minutes with more than one out
    /// in a block.
    pub max_out_in_block: usize,
    pub multi_out_mins: u64,
    pub max_out: usize,
    pub allowed: usize,
    /// Sampled steps with more nodes out than the budget.
    pub violations: u64,
    pub non_preemptable_killed: u64,
    pub passes: u64,
    /// Block jobs not started at the campaign's start, submitted before its end: mean
    /// added wait against no maintenance, hours, and how many.
    pub added_wait_h: f64,
    pub waited: usize,
    pub busy_at_start: usize,
    pub queued_at_start: usize,
    pub wall_s: f64,
    /// For [`busy::added_waits`].
    pub base: busy::Run,
}

/// The simulated partition for `p` with `jobs` arriving.
pub fn cluster(p: &TopoParams, jobs: &[Arrival]) -> SimCluster {
    SimCluster::new(SimConfig {
        nodes: p.nodes,
        seed: p.seed,
        reboot_secs: REBOOT_SECS,
        arrivals: Some(jobs.to_vec()),
        topology: Some(topology(p)),
        block_jobs: true,
        refill: false,
        coarse: false,
        ..SimConfig::default()
    })
}

/// Per-block figures from a sample, integrated over `dt` into `r`.
fn sample_blocks(sim: &SimCluster, topo: &Topology, dt: SignedDuration, r: &mut Run) {
    let snap = sim.peek();
    let out: std::collections::HashSet<&str> = snap
        .nodes
        .iter()
        .filter(|n| !n.state.in_service() || n.state.is_drained() || n.state.in_maintenance())
        .map(|n| n.name.as_str())
        .collect();
    let busy: std::collections::HashSet<&str> = snap
        .jobs
        .iter()
        .flat_map(|j| j.nodes.iter().map(String::as_str))
        .collect();
    let queued = sim.backlog().0 > 0;
    let h = dt.as_secs_f64() / 3600.0;
    let mins = (dt.as_secs() as u64).div_ceil(60);
    for b in &topo.blocks {
        let o = b.nodes.iter().filter(|n| out.contains(n.as_str())).count();
        let running = b.nodes.iter().any(|n| busy.contains(n.as_str()));
        if o > 0 {
            r.unusable_bh += h;
            if running {
                r.split_mins += mins;
            }
        }
        if o > 1 {
            r.multi_out_mins += mins;
        }
        r.max_out_in_block = r.max_out_in_block.max(o);
        if queued && !running {
            r.idle_queued_bh += h;
        }
    }
}

/// Run `policy` over `jobs`: warm up to the campaign's start, a pass every step (or
/// sooner when the plan says so) until the campaign is done and its reservations and
/// drains are gone, then the rest of the workload until every job has started.
pub fn run(p: &TopoParams, jobs: &[Arrival], policy: Policy) -> Run {
    let wall = Instant::now();
    let sim = cluster(p, jobs);
    let topo = topology(p);
    let t0 = sim.now();
    sim.advance_to(t0 + p.start);
    let start = sim.now();
    let mut r = Run {
        policy: policy.label().into(),
        allowed: p.budget,
        busy_at_start: sim.busy_nodes(),
        queued_at_start: sim.backlog().0,
        ..Default::default()
    };
    let mut spec = spec(start);
    spec.budget.max_unavailable_percent = None;
    spec.budget.max_unavailable = Some(p.budget as u32);
    spec.budget.topology = policy.topology();
    let mut ours = Ours::with_spec(spec, p.nodes);
    sim.meter(true);
    let mut done_at = None;
    while policy != Policy::None && sim.now().duration_since(start) < LIMIT {
        let now = sim.now();
        if ours.pass(&sim) && done_at.is_none() {
            done_at = Some(now);
        }
        if done_at.is_some() && sim.maintenance_clear() {
            break;
        }
        let dt = ours.wait(now, p.step);
        sim.advance(dt);
        sim.sample_for(dt, p.budget);
        sample_blocks(&sim, &topo, dt, &mut r);
    }
    sim.meter(false);
    r.passes = ours.passes;
    r.makespan_h = done_at.map(|t| t.duration_since(start).as_secs_f64() / 3600.0);
    // The rest of the workload, until every job has started.
    while sim.backlog() != (0, 0) {
        sim.advance(p.step);
        sample_blocks(&sim, &topo, p.step, &mut r);
    }
    let st = sim.stats();
    r.max_out = st.max_unavailable_or_down;
    r.violations = st.over_limit_samples;
    r.non_preemptable_killed = st.non_preemptable_killed;
    r.base = busy::Run {
        policy: r.policy.clone(),
        makespan_h: r.makespan_h,
        starts: sim.start_times(),
        start,
        start_offset: p.start,
        ..Default::default()
    };
    r.wall_s = wall.elapsed().as_secs_f64();
    r
}

/// The four runs over the workload of `p`: no maintenance, blind, Spread, WholeDomain,
/// with the added waits filled in.
pub fn runs(p: &TopoParams) -> Vec<Run> {
    let jobs = workload(p);
    let trace = SwfTrace {
        jobs: jobs.clone(),
        max_nodes: Some(p.nodes),
        skipped: 0,
        limits_drawn: jobs.len(),
    };
    let mut rows: Vec<Run> = [Policy::None, Policy::Blind, Policy::Spread, Policy::Whole]
        .into_iter()
        .map(|policy| run(p, &jobs, policy))
        .collect();
    let base = rows[0].base.clone();
    for r in rows.iter_mut().skip(1) {
        let (mean, _, n) = busy::added_waits(&trace, &r.base, &base);
        r.added_wait_h = mean;
        r.waited = n;
    }
    rows
}

/// The `bench campaign --topology` report.
pub fn report(p: &TopoParams) -> Result<String, String> {
    if p.block_size == 0 || p.nodes < p.block_size {
        return Err(format!(
            "--nodes {} --block-size {}: need at least one whole block",
            p.nodes, p.block_size
        ));
    }
    if p.budget < p.block_size {
        return Err(format!(
            "--budget {} is smaller than a block ({}): WholeDomain could never take one",
            p.budget, p.block_size
        ));
    }
    let wall = Instant::now();
    let rows = runs(p);
    let mut out = format!("Topology benchmark: {}.\n", p.describe());
    let base = &rows[0];
    out.push_str(&format!(
        "At the campaign's start: {}/{} nodes busy, {} block jobs waiting.\n",
        base.busy_at_start, p.nodes, base.queued_at_start
    ));
    let mut t = Table::new(&[
        "policy",
        "makespan h",
        "unusable bh",
        "idle while queued bh",
        "added wait mean h",
        "max out/allowed",
        "violations",
        "max out in a block",
        ">1 out in a block min",
        "split block min",
        "non-preempt killed",
        "passes",
        "wall s",
    ]);
    for r in &rows {
        let maint = r.policy != base.policy;
        t.row(vec![
            r.policy.clone(),
            match (maint, r.makespan_h) {
                (false, _) => "-".into(),
                (true, Some(m)) => format!("{m:.2}"),
                (true, None) => "unfinished".into(),
            },
            f1(r.unusable_bh),
            f1(r.idle_queued_bh),
            if maint {
                format!("{:.2} ({} jobs)", r.added_wait_h, r.waited)
            } else {
                "0".into()
            },
            format!("{}/{}", r.max_out, r.allowed),
            r.violations.to_string(),
            r.max_out_in_block.to_string(),
            r.multi_out_mins.to_string(),
            r.split_mins.to_string(),
            r.non_preemptable_killed.to_string(),
            r.passes.to_string(),
            format!("{:.1}", r.wall_s),
        ]);
    }
    out.push_str(&t.render());
    let (blind, spread, whole) = (&rows[1], &rows[2], &rows[3]);
    let less = |a: &Run, b: &Run| {
        if b.unusable_bh > 0.0 {
            format!(
                "{:.1} bh fewer ({:.0}% less)",
                b.unusable_bh - a.unusable_bh,
                100.0 * (1.0 - a.unusable_bh / b.unusable_bh)
            )
        } else {
            "-".into()
        }
    };
    out.push_str(&format!(
        "Columns: unusable = block-hours in which a block had at least one node out for maintenance \
         (drained, rebooting, down, or in an active MAINT reservation), so no block job could start on it \
         (0 without maintenance by definition); idle while queued = block-hours in which a block ran no job \
         while block jobs waited (also counts blocks held empty ahead of a reservation), from the campaign's \
         start until every job has started; added wait = start with maintenance − start without, over the \
         block jobs not started at the campaign's start and submitted before its end; violations = sampled \
         steps with more nodes out than the budget; >1 out in a block = sampled minutes in which a block had \
         more than one node out (Spread's per-domain violations: Spread allows 1); split block = sampled \
         minutes in which a block had a node out for maintenance while another of its nodes ran a job.\n\
         WholeDomain against topology-blind: {}; against Spread: {}. Idle while queued, WholeDomain − none: \
         {:.1} bh, blind − none: {:.1} bh, Spread − none: {:.1} bh. Wall {:.1} s.\n",
        less(whole, blind),
        less(whole, spread),
        whole.idle_queued_bh - base.idle_queued_bh,
        blind.idle_queued_bh - base.idle_queued_bh,
        spread.idle_queued_bh - base.idle_queued_bh,
        wall.elapsed().as_secs_f64(),
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> TopoParams {
        TopoParams {
            start: SignedDuration::from_hours(12),
            days: 1.0,
            ..TopoParams::new(16, 4, seed)
        }
    }

    #[test]
    fn the_workload_is_block_jobs_at_the_load_asked() {
        let p = TopoParams::new(64, 8, 3);
        let jobs = workload(&p);
        assert_eq!(jobs, workload(&p), "deterministic for a seed");
        assert_ne!(jobs, workload(&TopoParams::new(64, 8, 4)));
        assert!(jobs.iter().all(|a| a.nodes == 8
            && (RUN_SECS.0..=RUN_SECS.1).contains(&a.run)
            && a.limit >= a.run));
        let span = (p.start.as_secs_f64() + p.days * 86_400.0) / 3600.0;
        let work: f64 = jobs.iter().map(|a| a.run as f64 / 3600.0).sum();
        let load = work / (span * p.blocks() as f64);
        assert!((0.7..1.0).contains(&load), "offered load {load}");
        let t = topology(&p);
        assert_eq!(t.blocks.len(), 8);
        assert_eq!(t.blocks[1].nodes[0], "node009");
        assert_eq!(t.block_domains().len(), 64);
    }

    #[test]
    fn whole_domain_loses_the_fewest_block_hours() {
        let p = small(2);
        let rows = runs(&p);
        // Wall times differ from run to run; all else is the same for a seed.
        let strip = |v: &[Run]| -> Vec<Run> {
            v.iter()
                .map(|r| Run {
                    wall_s: 0.0,
                    ..r.clone()
                })
                .collect()
        };
        assert_eq!(strip(&rows), strip(&runs(&p)));
        let (none, blind, spread, whole) = (&rows[0], &rows[1], &rows[2], &rows[3]);
        assert_eq!((none.unusable_bh, none.split_mins), (0.0, 0));
        for r in [blind, spread, whole] {
            let m = r.makespan_h.unwrap_or_else(|| panic!("{r:?}"));
            assert!(m.is_finite() && m > 0.0, "{r:?}");
            assert_eq!(r.violations, 0, "{r:?}");
            assert!(r.max_out <= r.allowed, "{r:?}");
            assert_eq!(r.non_preemptable_killed, 0, "{r:?}");
            // Every node was rebooted, so every block was out for at least one reboot.
            assert!(r.unusable_bh >= p.blocks() as f64 * 480.0 / 3600.0, "{r:?}");
        }
        assert_eq!(spread.multi_out_mins, 0, "{spread:?}");
        assert_eq!(spread.max_out_in_block, 1, "{spread:?}");
        assert_eq!(whole.split_mins, 0, "{whole:?}");
        // Sums of the same block-hours in another order differ in the last bits.
        let at_most = |a: f64, b: f64| a <= b + 1e-9;
        assert!(
            at_most(whole.unusable_bh, spread.unusable_bh),
            "{whole:?} {spread:?}"
        );
        assert!(
            at_most(whole.unusable_bh, blind.unusable_bh),
            "{whole:?} {blind:?}"
        );
    }
}
