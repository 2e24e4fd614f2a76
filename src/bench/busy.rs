//! `bench busy`: a rolling-reboot campaign on a busy cluster. Jobs keep arriving from an
//! SWF trace and the simulator schedules them itself (FIFO + EASY backfill, see
//! `crate::sim`); at `start` every node needs a reboot. Each policy runs over the same
//! trace, and is compared with the same trace run without maintenance.

use std::collections::HashMap;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};

use super::campaign::{BUDGET_PCT, Ours, REBOOT_TIMEOUT};
use super::optimum::{self, Job as OptJob};
use super::seed::{RebootGate, SeedConfig, SeedPolicy};
use super::{Table, f1};
use crate::plan::{Action, BudgetLimit};
use crate::sim::swf::SwfTrace;
use crate::sim::{SimCluster, SimConfig};

/// Give up on a campaign after this much virtual time.
pub const LIMIT: SignedDuration = SignedDuration::from_hours(24 * 30);
/// Reboot durations, seconds, drawn once per node (as `bench campaign`'s traces).
pub const REBOOT_SECS: (u64, u64) = (480, 900);

/// What a run is about.
#[derive(Clone, Debug, PartialEq)]
pub struct BusyParams {
    pub nodes: usize,
    pub seed: u64,
    /// When the campaign starts, from the trace's time 0.
    pub start: SignedDuration,
    /// Virtual time between passes of a policy.
    pub step: SignedDuration,
}

/// Who runs the maintenance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// No maintenance: the reference for waits.
    None,
    /// `plan::plan`, driven as `bench campaign` drives it.
    Ours,
    /// The seed's policy (6 h reservations, the kinder reboot gate).
    Seed,
    /// `scontrol reboot ASAP nextstate=RESUME` of every node at the start.
    Asap,
}

impl Policy {
    fn label(self) -> &'static str {
        match self {
            Policy::None => "no maintenance",
            Policy::Ours => "ours",
            Policy::Seed => "seed, kinder gate",
            Policy::Asap => "reboot ASAP, all nodes",
        }
    }
}

/// One run's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Run {
    pub policy: String,
    /// `None`: not finished within [`LIMIT`].
    pub makespan_h: Option<f64>,
    /// Node-hours lost to maintenance (see `SimStats::maint_lost_node_secs`).
    pub lost_nh: f64,
    /// The part of `lost_nh` held empty in service by reservations still to start.
    pub held_nh: f64,
    pub max_out: usize,
    pub allowed: usize,
    /// Sampled steps with more nodes out than allowed.
    pub violations: u64,
    pub passes: u64,
    pub non_preemptable_killed: u64,
    /// When each trace job started.
    pub starts: HashMap<u64, Timestamp>,
    /// Busy nodes and waiting jobs at the start of the campaign.
    pub busy_at_start: usize,
    pub queued_at_start: usize,
    /// Per node at the start: seconds until its running jobs really end, reboot seconds.
    pub releases: Vec<(i64, i64)>,
    pub wall_s: f64,
    /// When the campaign started, and how far into the trace that is.
    pub start: Timestamp,
    pub start_offset: SignedDuration,
}

/// The simulated cluster for `trace`.
pub fn cluster(trace: &SwfTrace, p: &BusyParams) -> SimCluster {
    SimCluster::new(SimConfig {
        nodes: p.nodes,
        seed: p.seed,
        reboot_secs: REBOOT_SECS,
        arrivals: Some(
            trace
                .jobs
                .iter()
                .filter(|a| a.nodes <= p.nodes)
                .cloned()
                .collect(),
        ),
        refill: false,
        coarse: false,
        ..SimConfig::default()
    })
}

/// Whether every node was rebooted after `start` and is back in service.
fn all_rebooted(sim: &SimCluster, start: Timestamp) -> bool {
    sim.peek().nodes.iter().all(|n| {
        n.boot_time.is_some_and(|b| b >= start) && n.state.in_service() && !n.state.is_drained()
    })
}

/// Run `policy` over `trace`: warm up to the campaign's start, a pass every step until
/// the campaign is done and its reservations and drains are gone, then the rest of the
/// trace until every job has started.
pub fn run(trace: &SwfTrace, p: &BusyParams, policy: Policy) -> Run {
    let wall = Instant::now();
    let sim = cluster(trace, p);
    let t0 = sim.now();
    sim.advance_to(t0 + p.start);
    let start = sim.now();
    let allowed = BudgetLimit::Percent(BUDGET_PCT).allowed(p.nodes);
    let mut r = Run {
        policy: policy.label().into(),
        allowed,
        start,
        start_offset: p.start,
        busy_at_start: sim.busy_nodes(),
        queued_at_start: sim.backlog().0,
        releases: sim
            .releases()
            .into_iter()
            .map(|(end, reboot)| (end.duration_since(start).as_secs(), reboot as i64))
            .collect(),
        ..Default::default()
    };
    let mut ours = Ours::new(start, p.nodes);
    let mut seed = SeedPolicy::new(SeedConfig {
        partition: "batch".into(),
        max_down_percentage: BUDGET_PCT,
        duration: SignedDuration::from_hours(6),
        terminate_preemptable: true,
        reboot_timeout: REBOOT_TIMEOUT,
        reboot_gate: RebootGate::InFlight,
        ..SeedConfig::default()
    });
    sim.meter(true);
    let mut done_at = None;
    while policy != Policy::None && sim.now().duration_since(start) < LIMIT {
        let now = sim.now();
        let done = match policy {
            Policy::None => true,
            Policy::Ours => ours.pass(&sim),
            Policy::Seed => {
                let snap = sim.take_snapshot();
                for a in seed.pass(&snap, now) {
                    let _ = sim.exec(&a);
                }
                seed.finished(p.nodes)
            }
            Policy::Asap => {
                if now == start {
                    // One command for every node, as `scontrol reboot ASAP nextstate=RESUME ALL`.
                    let all: Vec<Action> = sim
                        .peek()
                        .nodes
                        .into_iter()
                        .map(|n| Action::Reboot {
                            node: n.name,
                            reason: "slurm-maint: reboot ASAP nextstate=RESUME".into(),
                        })
                        .collect();
                    sim.exec_all(&all);
                }
                all_rebooted(&sim, start)
            }
        };
        r.passes += 1;
        if done && done_at.is_none() {
            done_at = Some(now);
        }
        if done_at.is_some() && sim.maintenance_clear() {
            break;
        }
        // Ours wakes when its plan says something is due, as the controller does.
        let dt = match policy {
            Policy::Ours => ours.wait(now, p.step),
            _ => p.step,
        };
        sim.advance(dt);
        sim.sample_for(dt, allowed);
    }
    sim.meter(false);
    if policy == Policy::Ours {
        r.passes = ours.passes;
    }
    r.makespan_h = done_at.map(|t| t.duration_since(start).as_secs_f64() / 3600.0);
    // The rest of the trace, until every job has run.
    while sim.backlog() != (0, 0) {
        sim.advance(SignedDuration::from_hours(24));
    }
    let st = sim.stats();
    r.lost_nh = st.maint_lost_node_secs / 3600.0;
    r.held_nh = st.maint_held_node_secs / 3600.0;
    r.max_out = st.max_unavailable_or_down;
    r.violations = st.over_limit_samples;
    r.non_preemptable_killed = st.non_preemptable_killed;
    r.starts = sim.start_times();
    r.wall_s = wall.elapsed().as_secs_f64();
    r
}

/// The lower bound for the campaign of `releases` (seconds until each node's running
/// jobs end, its reboot seconds) under `allowed` nodes out at once: no node can reboot
/// before its jobs end (none may be killed), each is out at least its reboot, at most
/// `allowed` reboot at once. Makespan: `optimum::lower_bound` over those releases and
/// lengths; capacity lost: the sum of the reboots. Hours both.
pub fn lower_bound(releases: &[(i64, i64)], allowed: usize) -> (f64, f64) {
    let jobs: Vec<OptJob> = releases
        .iter()
        .map(|&(release, length)| OptJob { release, length })
        .collect();
    let makespan = optimum::lower_bound(&jobs, allowed.max(1));
    let lost: i64 = releases.iter().map(|&(_, l)| l).sum();
    (makespan as f64 / 3600.0, lost as f64 / 3600.0)
}

/// Added waits of `run` against `base`, hours: over the jobs of `trace` not started at
/// the campaign's start and submitted before its end (`run`'s makespan), mean and 95th
/// percentile of (start with maintenance − start without); and how many jobs that is.
pub fn added_waits(trace: &SwfTrace, run: &Run, base: &Run) -> (f64, f64, usize) {
    let t0 = run.start - run.start_offset;
    let until = run.start
        + run
            .makespan_h
            .map_or(LIMIT, |h| SignedDuration::from_secs_f64(h * 3600.0));
    let mut d: Vec<f64> = trace
        .jobs
        .iter()
        .filter(|a| t0 + SignedDuration::from_secs(a.submit) <= until)
        .filter_map(|a| {
            let b = *base.starts.get(&a.id)?;
            let s = *run.starts.get(&a.id)?;
            (b >= run.start).then(|| s.duration_since(b).as_secs_f64() / 3600.0)
        })
        .collect();
    if d.is_empty() {
        return (0.0, 0.0, 0);
    }
    d.sort_by(f64::total_cmp);
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let p95 = d[((d.len() as f64 * 0.95).ceil() as usize).clamp(1, d.len()) - 1];
    (mean, p95, d.len())
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

/// The `bench busy` report for a trace file's text.
pub fn report(
    name: &str,
    text: &str,
    nodes: Option<usize>,
    p: BusyParams,
) -> Result<String, String> {
    let trace = crate::sim::swf::parse(text, p.seed).map_err(|e| format!("{name}: {e}"))?;
    let nodes = nodes
        .or(trace.max_nodes)
        .unwrap_or_else(|| trace.jobs.iter().map(|a| a.nodes).max().unwrap_or(1));
    let p = BusyParams { nodes, ..p };
    let wide = trace.jobs.iter().filter(|a| a.nodes > nodes).count();
    let span_h = trace.jobs.last().map_or(0, |a| a.submit) as f64 / 3600.0;
    let work: f64 = trace
        .jobs
        .iter()
        .filter(|a| a.nodes <= nodes)
        .map(|a| a.run as f64 * a.nodes as f64)
        .sum();
    let load = work / (nodes as f64 * span_h.max(1e-9) * 3600.0);
    let base = run(&trace, &p, Policy::None);
    let rows = [
        run(&trace, &p, Policy::Ours),
        run(&trace, &p, Policy::Seed),
        run(&trace, &p, Policy::Asap),
    ];
    let allowed = base.allowed;
    let (lb_m, lb_lost) = lower_bound(&base.releases, allowed);
    let mut out = format!(
        "Busy-cluster benchmark: {name}: {} jobs over {span_h:.0} h ({} skipped as never run, {wide} wider than the \
         {nodes} nodes left out; {} time limits drawn by the limit rule: run time × U[1, 3) rounded up to \
         15m/30m/1h/2h/4h/8h/12h/24h/36h/48h/72h/whole days), offered load {load:.2}. Scheduler FIFO + EASY backfill, \
         exclusive nodes. Campaign at {:.0} h (busy {}/{nodes} nodes, {} jobs waiting): every node needs a reboot \
         ({}–{} s each, drawn per node, seed {}); budget {BUDGET_PCT}% = {allowed} nodes; a pass every {} s.\n",
        trace.jobs.len() - wide,
        trace.skipped,
        trace.limits_drawn,
        p.start.as_secs_f64() / 3600.0,
        base.busy_at_start,
        base.queued_at_start,
        REBOOT_SECS.0,
        REBOOT_SECS.1,
        p.seed,
        p.step.as_secs(),
    );
    let mut t = Table::new(&[
        "policy",
        "makespan h",
        "/ bound",
        "lost nh",
        "/ bound",
        "held empty nh",
        "added wait mean h",
        "p95 h",
        "max out/allowed",
        "violations",
        "passes",
        "wall s",
    ]);
    t.row(vec![
        format!("lower bound, {allowed} out"),
        format!("{lb_m:.2}"),
        "1.00".into(),
        f1(lb_lost),
        "1.00".into(),
        "0.0".into(),
        "≥ 0".into(),
        "≥ 0".into(),
        format!("-/{allowed}"),
        "0".into(),
    ]);
    for r in &rows {
        let (mean, p95, n) = added_waits(&trace, r, &base);
        t.row(vec![
            r.policy.clone(),
            r.makespan_h
                .map_or("unfinished".into(), |m| format!("{m:.2}")),
            r.makespan_h.map_or("-".into(), |m| ratio(m, lb_m)),
            f1(r.lost_nh),
            ratio(r.lost_nh, lb_lost),
            f1(r.held_nh),
            format!("{mean:.2} ({n} jobs)"),
            format!("{p95:.2}"),
            format!("{}/{}", r.max_out, r.allowed),
            r.violations.to_string(),
            r.passes.to_string(),
            format!("{:.1}", r.wall_s),
        ]);
    }
    out.push_str(&t.render());
    let (ours, seed) = (&rows[0], &rows[1]);
    out.push_str(&format!(
        "Columns: lost = node-hours with no job running while down, rebooting, drained, in an active reservation \
         or held empty by a reservation still to start (held empty: that last part), from the campaign's start \
         until its reservations and drains are gone; added wait = start with maintenance − start without, over \
         the jobs not started at the campaign's start and submitted before its end; violations = sampled steps \
         with more nodes out (down, drained, rebooting, in a MAINT reservation) than allowed. Lower bound: no \
         node reboots before its running jobs really end, each is out at least its reboot, at most {allowed} \
         at once (makespan: the campaign benchmark's bound over those releases; lost: the sum of the reboots); \
         without the budget the makespan bound is {:.2} h (the last release plus its reboot), which only \
         reboot ASAP may use.\n\
         Goals: ours lost / seed lost {} (≤ 0.5), ours lost / bound {} (≤ 1.2), violations {} (0); \
         non-preemptable jobs killed: ours {}, seed {}. Wall {:.1} s without maintenance.\n",
        base.releases.iter().map(|&(r, l)| r + l).max().unwrap_or(0) as f64 / 3600.0,
        ratio(ours.lost_nh, seed.lost_nh),
        ratio(ours.lost_nh, lb_lost),
        ours.violations,
        ours.non_preemptable_killed,
        seed.non_preemptable_killed,
        base.wall_s,
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Rng;
    use crate::sim::swf::{Arrival, limit_rule};

    fn trace(jobs: Vec<Arrival>) -> SwfTrace {
        SwfTrace {
            jobs,
            max_nodes: None,
            skipped: 0,
            limits_drawn: 0,
        }
    }

    fn params(nodes: usize, start_secs: i64) -> BusyParams {
        BusyParams {
            nodes,
            seed: 3,
            start: SignedDuration::from_secs(start_secs),
            step: SignedDuration::from_secs(60),
        }
    }

    #[test]
    fn lower_bound_by_hand() {
        // One node out at a time: 0–600, 600–1200, then the last waits for its release.
        let (m, lost) = lower_bound(&[(0, 600), (100, 600), (5000, 600)], 1);
        assert_eq!((m * 3600.0, lost * 3600.0), (5600.0, 1800.0));
        // Two at once: the work bound (0 + 2400 / 2) beats every release.
        let (m, _) = lower_bound(&[(0, 600), (0, 600), (0, 600), (100, 600)], 2);
        assert_eq!(m * 3600.0, 1200.0);
    }

    #[test]
    fn reboot_asap_and_the_bound_on_two_nodes() {
        // node001 runs job 1 to t=300; node002 is idle. The campaign starts at t=60; job 2
        // arrives at t=70 and, without maintenance, starts at once on node002.
        let t = trace(vec![
            Arrival {
                id: 1,
                submit: 0,
                nodes: 1,
                run: 300,
                limit: 900,
            },
            Arrival {
                id: 2,
                submit: 70,
                nodes: 1,
                run: 100,
                limit: 900,
            },
        ]);
        let p = params(2, 60);
        let base = run(&t, &p, Policy::None);
        let asap = run(&t, &p, Policy::Asap);
        assert_eq!(base.releases.len(), 2);
        let (p1, p2) = (base.releases[0].1, base.releases[1].1);
        assert_eq!(base.releases, vec![(240, p1), (0, p2)]);
        assert!((480..=900).contains(&p1) && (480..=900).contains(&p2));
        // Both reboot as soon as they are empty; the campaign is seen done at the first
        // pass after the last one is back.
        let last = p2.max(240 + p1);
        let seen = (last + 59) / 60 * 60;
        assert_eq!(asap.makespan_h, Some(seen as f64 / 3600.0));
        // Capacity lost: only the reboots (node001 drains while its job runs).
        assert!(
            (asap.lost_nh * 3600.0 - (p1 + p2) as f64).abs() < 1e-6,
            "{asap:?}"
        );
        // Job 2 waits for the first node back.
        let back = 60 + p2.min(240 + p1);
        let (mean, p95, n) = added_waits(&t, &asap, &base);
        assert_eq!(n, 1);
        assert!((mean * 3600.0 - (back - 70) as f64).abs() < 1e-6, "{mean}");
        assert_eq!(mean, p95);
        // Both nodes out at once with one allowed.
        assert_eq!((asap.max_out, asap.allowed), (2, 1));
        assert!(asap.violations > 0);
        // The bound: one at a time, the idle node first, then node001 (released at 240
        // < p2): p1 + p2 for both figures.
        let (m, lost) = lower_bound(&base.releases, 1);
        assert_eq!(
            (m * 3600.0, lost * 3600.0),
            ((p1 + p2) as f64, (p1 + p2) as f64)
        );
        let ours = run(&t, &p, Policy::Ours);
        assert!(ours.makespan_h.unwrap() >= m, "{ours:?}");
        assert!(ours.lost_nh >= lost - 1e-9, "{ours:?}");
        assert_eq!(ours.violations, 0, "{ours:?}");
    }

    #[test]
    fn ours_keeps_the_budget_on_a_busy_cluster() {
        let mut rng = Rng::new(11);
        let mut submit = 0;
        let jobs: Vec<Arrival> = (1..=500)
            .map(|id| {
                submit += rng.range(0, 400) as i64;
                let run = rng.range(300, 4 * 3600);
                Arrival {
                    id,
                    submit,
                    nodes: rng.range(1, 6) as usize,
                    run,
                    limit: limit_rule(3, id, run),
                }
            })
            .collect();
        let t = trace(jobs);
        let p = params(20, 6 * 3600);
        let base = run(&t, &p, Policy::None);
        assert!(base.busy_at_start >= 15, "{}", base.busy_at_start);
        let (m, lost) = lower_bound(&base.releases, base.allowed);
        let ours = run(&t, &p, Policy::Ours);
        assert!(ours.makespan_h.is_some_and(|h| h >= m), "{ours:?}");
        assert!(ours.lost_nh >= lost - 1e-9);
        assert_eq!(ours.violations, 0);
        assert!(ours.max_out <= ours.allowed && ours.allowed == 2);
        assert_eq!(ours.non_preemptable_killed, 0);
        // Every job still runs once.
        assert_eq!(ours.starts.len(), 500);
        let asap = run(&t, &p, Policy::Asap);
        assert!(asap.violations > 0 && asap.lost_nh >= lost - 1e-9);
    }
}
