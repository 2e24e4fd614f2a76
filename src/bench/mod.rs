//! `slurm-maint bench`: campaign makespan against the optimum and the seed's policy
//! (`bench campaign`), a campaign on a busy cluster fed by an SWF trace (`bench busy`),
//! and the cost of one reconcile pass at 10 000 nodes (`bench pass`).
//! The benchmarks only report; nothing here asserts a timing.

pub mod busy;
pub mod campaign;
pub mod live;
pub mod optimum;
pub mod pass;
pub mod seed;
pub mod topology;
pub mod trace;

use jiff::SignedDuration;

/// `slurm-maint bench …`
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Whole campaigns on the simulated partition: ours, the seed's policy, the optimum.
    /// With `--topology`: a partition in blocks busy with block-sized jobs, ours
    /// topology-blind, with Spread and with WholeDomain.
    Campaign {
        /// Partition sizes of the generated traces (default 100,1000,10000; with
        /// `--topology`, 64).
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<usize>,
        /// Trace seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also replay this CSV trace (`node,job_end_hours,preemptable`).
        #[arg(long)]
        trace: Option<std::path::PathBuf>,
        /// Virtual minutes between passes at 10 000 nodes and more (1 below).
        #[arg(long, default_value_t = 5)]
        big_step_mins: i64,
        /// The topology benchmark: blocks, block jobs, blind / Spread / WholeDomain.
        #[arg(long)]
        topology: bool,
        /// With `--topology`: nodes per block.
        #[arg(long, default_value_t = 8)]
        block_size: usize,
        /// With `--topology`: offered load of the block jobs (block-hours per block-hour).
        #[arg(long, default_value_t = 0.85)]
        load: f64,
        /// With `--topology`: nodes out at once for every policy (default: one block).
        #[arg(long)]
        budget: Option<usize>,
        /// With `--topology`: days of arrivals after the campaign's start.
        #[arg(long, default_value_t = 5.0)]
        days: f64,
    },
    /// A campaign on the real test cluster (`tests/slurm/cluster.sh up`): the trace of
    /// 4 (or 6) nodes with both termination settings, ours against the exact optimum.
    Live {
        /// Nodes of the trace: 4 or 6.
        #[arg(long, value_delimiter = ',', default_value = "4")]
        nodes: Vec<usize>,
        /// Job run times times this (limits stay whole minutes).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
    },
    /// A campaign on a busy cluster: jobs keep arriving from an SWF trace, scheduled FIFO
    /// with EASY backfill; ours, the seed's policy, `scontrol reboot ASAP` of every node,
    /// a lower bound.
    Busy {
        /// The SWF trace (Standard Workload Format; a processor is a node).
        #[arg(long)]
        trace: std::path::PathBuf,
        /// Nodes of the cluster (default: the header's MaxNodes or MaxProcs, else the
        /// widest job).
        #[arg(long)]
        nodes: Option<usize>,
        /// Seed of reboot durations and of time limits the trace does not give.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// When the campaign starts, hours into the trace.
        #[arg(long, default_value_t = 336.0)]
        start_hours: f64,
        /// Virtual seconds between passes.
        #[arg(long, default_value_t = 60)]
        step_secs: i64,
    },
    /// One reconcile pass at 10 000 nodes, 100 000 jobs, 1 000 NodeMaintenances.
    Pass {
        /// Runs per micro-figure (the median is shown).
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
}

/// A plain-text table with aligned columns.
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&str]) -> Self {
        Self {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows: vec![],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let n = self.head.len();
        let mut w = vec![0; n];
        for r in std::iter::once(&self.head).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(n) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |r: &Vec<String>| {
            let cells: Vec<String> = (0..n)
                .map(|i| {
                    let c = r.get(i).map(String::as_str).unwrap_or("");
                    let pad = w[i] - c.chars().count();
                    if i == 0 {
                        format!("{c}{}", " ".repeat(pad))
                    } else {
                        format!("{}{c}", " ".repeat(pad))
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        };
        let mut out = line(&self.head);
        out.push('\n');
        out.push_str(
            &w.iter()
                .map(|x| "-".repeat(*x))
                .collect::<Vec<_>>()
                .join("  "),
        );
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }
}

/// Run a bench command, printing its table.
pub fn run(args: BenchArgs) -> Result<(), String> {
    match args.what {
        BenchCommand::Campaign {
            nodes,
            seed,
            trace,
            big_step_mins,
            topology,
            block_size,
            load,
            budget,
            days,
        } => {
            if topology {
                if nodes.len() > 1 {
                    return Err("--topology: give one --nodes".into());
                }
                if !(load > 0.0 && load.is_finite() && days > 0.0 && days.is_finite()) {
                    return Err(format!("--load {load} --days {days}: must be positive"));
                }
                let mut p = topology::TopoParams::new(
                    nodes.first().copied().unwrap_or(64),
                    block_size,
                    seed,
                );
                p.load = load;
                p.days = days;
                p.budget = budget.unwrap_or(block_size);
                print!("{}", topology::report(&p)?);
                return Ok(());
            }
            let nodes = if nodes.is_empty() {
                vec![100, 1000, 10000]
            } else {
                nodes
            };
            let file = match trace {
                None => None,
                Some(p) => Some((
                    p.display().to_string(),
                    std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?,
                )),
            };
            let step = SignedDuration::from_mins(big_step_mins.max(1));
            print!("{}", campaign_report(&nodes, seed, file, step)?);
            Ok(())
        }
        BenchCommand::Live { nodes, scale } => {
            if !(scale > 0.0 && scale <= 1.0) {
                return Err(format!("--scale must be in (0, 1], got {scale}"));
            }
            if let Some(n) = nodes.iter().find(|n| **n != 4 && **n != 6) {
                return Err(format!(
                    "--nodes: the live traces have 4 or 6 nodes, not {n}"
                ));
            }
            let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
            for n in nodes {
                print!("{}", rt.block_on(live::report(n, scale))?);
            }
            Ok(())
        }
        BenchCommand::Busy {
            trace,
            nodes,
            seed,
            start_hours,
            step_secs,
        } => {
            let text =
                std::fs::read_to_string(&trace).map_err(|e| format!("{}: {e}", trace.display()))?;
            if !(start_hours.is_finite() && start_hours >= 0.0) {
                return Err(format!("--start-hours {start_hours}: not a time"));
            }
            let p = busy::BusyParams {
                nodes: 0,
                seed,
                start: SignedDuration::from_secs_f64(start_hours * 3600.0),
                step: SignedDuration::from_secs(step_secs.max(1)),
            };
            print!(
                "{}",
                busy::report(&trace.display().to_string(), &text, nodes, p)?
            );
            Ok(())
        }
        BenchCommand::Pass { runs } => {
            print!("{}", pass::report(runs.max(1))?);
            Ok(())
        }
    }
}

fn f1(x: f64) -> String {
    format!("{x:.1}")
}

/// The campaign table for generated traces of `sizes` (and a CSV trace).
pub fn campaign_report(
    sizes: &[usize],
    seed: u64,
    file: Option<(String, String)>,
    big_step: SignedDuration,
) -> Result<String, String> {
    use campaign::*;
    let mut traces = vec![];
    for &n in sizes {
        let p = trace::TraceParams::new(n, seed);
        traces.push((format!("gen-{n}"), p.describe(), trace::generate(&p)));
    }
    if let Some((name, text)) = file {
        let p = trace::TraceParams::new(0, seed);
        let t = trace::read_csv(&text, &p)?;
        traces.push((
            format!("csv-{}", t.len()),
            format!(
                "{name}: {} nodes; reboot times and fates drawn as for generated traces (seed {seed})",
                t.len()
            ),
            t,
        ));
    }
    let mut out = String::new();
    out.push_str(&format!(
        "Campaign benchmark: budget {BUDGET_PCT}%, lead time 60 min, reboot timeout {}m, 3 attempts, \
         preemptable jobs terminated, no new jobs land (the trace's jobs are the workload).\n",
        REBOOT_TIMEOUT.as_secs() / 60
    ));
    out.push_str("Traces:\n");
    for (name, desc, _) in &traces {
        out.push_str(&format!("  {name}: {desc}\n"));
    }
    let mut t = Table::new(&[
        "trace",
        "policy",
        "makespan h",
        "/ optimum",
        "idle-drained nh",
        "lost nh",
        "max out/allowed",
        "violations",
        "preempt cancelled",
        "non-preempt killed",
        "failed",
        "passes",
        "wall s",
    ]);
    let mut notes = vec![];
    for (name, _, tr) in &traces {
        let opt = optimum(tr, BUDGET_PCT);
        let step = if tr.len() >= 10_000 {
            big_step
        } else {
            SignedDuration::from_mins(1)
        };
        let six = SignedDuration::from_hours(6);
        let rows = [
            run_ours(tr, seed, step),
            run_seed(
                tr,
                seed,
                step,
                six,
                seed::RebootGate::AsWritten,
                "seed as written",
            ),
            run_seed(
                tr,
                seed,
                step,
                six,
                seed::RebootGate::InFlight,
                "seed, kinder gate",
            ),
        ];
        t.row(vec![
            name.clone(),
            "optimum (lower bound)".into(),
            format!("{:.2}", opt.lower_bound_h),
            "1.000".into(),
            String::new(),
            String::new(),
            format!("k={}", opt.k),
        ]);
        for o in &rows {
            let m = o.makespan_h;
            t.row(vec![
                name.clone(),
                o.policy.clone(),
                match (m, o.stalled) {
                    (Some(m), _) => format!("{m:.2}"),
                    (None, true) => "deadlock".into(),
                    (None, false) => "unfinished".into(),
                },
                m.map_or("-".into(), |m| format!("{:.3}", m / opt.lower_bound_h)),
                f1(o.idle_drained_nh),
                f1(o.lost_nh),
                format!("{}/{}", o.max_out, o.allowed),
                o.violations.to_string(),
                o.preemptable_cancelled.to_string(),
                o.non_preemptable_killed.to_string(),
                o.failed.to_string(),
                o.passes.to_string(),
                format!("{:.1}", o.wall_s),
            ]);
        }
        let (ours, seed6) = (&rows[0], &rows[2]);
        notes.push(format!(
            "{name}: optimum k={} slots; lower bound {:.2} h, equal-reboot optimum {:.2} h, ERF with real reboot times {:.2} h. \
             Goals: ours/optimum {} (≤ 1.02), ours/seed makespan {} (≤ 0.8), idle-drained ours/seed {} (≤ 0.5) (against the kinder seed), violations {} (0). Step {} min.",
            opt.k,
            opt.lower_bound_h,
            opt.equal_p_h,
            opt.erf_h,
            ratio(ours.makespan_h, Some(opt.lower_bound_h)),
            ratio(ours.makespan_h, seed6.makespan_h),
            ratio(Some(ours.idle_drained_nh), Some(seed6.idle_drained_nh)),
            ours.violations,
            step.as_secs() / 60,
        ));
    }
    out.push_str(&t.render());
    out.push_str(
        "Columns: idle-drained = node-hours out of service while up and running no job; lost = node-hours out \
         of service (down, drained, rebooting or in an active MAINT reservation), both without the nodes down \
         from the start; max out = most nodes out at once (those included); violations = sampled minutes with \
         more nodes out than allowed.\n",
    );
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    Ok(out)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["a", "bb"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), "a    bb\n---  --\nxyz   1\n");
    }
}
