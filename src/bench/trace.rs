//! Campaign traces: per node, when its running job ends, whether that job is preemptable,
//! how long its reboots take and how they end. Seeded and reproducible, or read from a
//! CSV file (`node,job_end_hours,preemptable`) so real logs can be replayed.

use jiff::SignedDuration;

use crate::sim::{RebootFate, Rng, TraceNode};

/// Parameters of a generated trace (the defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct TraceParams {
    pub nodes: usize,
    pub seed: u64,
    /// Fraction of nodes idle at the start.
    pub idle: f64,
    /// Fraction of jobs that are preemptable.
    pub preemptable: f64,
    /// Reboot time range, seconds (uniform per node: the jitter).
    pub reboot_secs: (u64, u64),
    /// Fraction of nodes whose first reboot fails.
    pub fail_once: f64,
    /// Fraction of nodes that never come back.
    pub never: f64,
    /// Fraction of nodes already DOWN/DRAIN at the start.
    pub down: f64,
}

impl TraceParams {
    /// The mix for `nodes` nodes.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seed,
            idle: 0.05,
            preemptable: 0.20,
            reboot_secs: (480, 900),
            fail_once: 0.01,
            never: 0.002,
            down: 0.02,
        }
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        format!(
            "seed {}: {} nodes; jobs left: {:.0}% idle, else 60% 10m–4h (log-uniform), 25% 4–24h, 15% 24–48h; \
             {:.0}% preemptable; reboot {}–{} min; {:.1}% fail once, {:.1}% never back; {:.0}% down at start",
            self.seed,
            self.nodes,
            self.idle * 100.0,
            self.preemptable * 100.0,
            self.reboot_secs.0 / 60,
            self.reboot_secs.1 / 60,
            self.fail_once * 100.0,
            self.never * 100.0,
            self.down * 100.0
        )
    }
}

fn fate(rng: &mut Rng, p: &TraceParams) -> RebootFate {
    let r = rng.unit();
    if r < p.never {
        RebootFate::Never
    } else if r < p.never + p.fail_once {
        RebootFate::FailOnce
    } else {
        RebootFate::Ok
    }
}

/// Remaining job time, heavy-tailed: many short, some 24–48 h.
fn job_left(rng: &mut Rng) -> SignedDuration {
    let r = rng.unit();
    let (lo, hi): (f64, f64) = if r < 0.60 {
        (600.0, 4.0 * 3600.0)
    } else if r < 0.85 {
        (4.0 * 3600.0, 24.0 * 3600.0)
    } else {
        (24.0 * 3600.0, 48.0 * 3600.0)
    };
    // log-uniform in [lo, hi]
    let x = (lo.ln() + rng.unit() * (hi.ln() - lo.ln())).exp();
    SignedDuration::from_secs(x.round() as i64)
}

/// A seeded trace.
pub fn generate(p: &TraceParams) -> Vec<TraceNode> {
    let mut rng = Rng::new(p.seed ^ 0x7ace_0000);
    let down = (p.nodes as f64 * p.down).round() as usize;
    (0..p.nodes)
        .map(|i| {
            let idle = rng.unit() < p.idle;
            let left = job_left(&mut rng);
            let preemptable = rng.unit() < p.preemptable;
            let reboot_secs = rng.range(p.reboot_secs.0, p.reboot_secs.1);
            let fate = fate(&mut rng, p);
            TraceNode {
                job_end: (!idle).then_some(left),
                preemptable: !idle && preemptable,
                reboot_secs,
                fate,
                // Spread over the partition, deterministically.
                down: down > 0
                    && i % (p.nodes / down).max(1) == 0
                    && i / (p.nodes / down).max(1) < down,
            }
        })
        .collect()
}

/// A trace from CSV lines `node,job_end_hours,preemptable` (header optional; `#`
/// comments; an empty or 0 end: idle; `down` as the end: drained at the start). Node
/// names are kept only for their order; reboot times and fates are drawn from `p`.
pub fn read_csv(text: &str, p: &TraceParams) -> Result<Vec<TraceNode>, String> {
    let mut rng = Rng::new(p.seed ^ 0x7ace_0000);
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if cols.len() < 2 {
            return Err(format!(
                "line {}: expected node,job_end_hours,preemptable",
                i + 1
            ));
        }
        if i == 0 && cols[1].parse::<f64>().is_err() && cols[1] != "down" && !cols[1].is_empty() {
            continue; // header
        }
        let down = cols[1].eq_ignore_ascii_case("down");
        let hours: f64 = if down || cols[1].is_empty() {
            0.0
        } else {
            cols[1]
                .parse()
                .map_err(|_| format!("line {}: bad job_end_hours {:?}", i + 1, cols[1]))?
        };
        if !(0.0..=24.0 * 365.0).contains(&hours) {
            return Err(format!("line {}: job_end_hours out of range", i + 1));
        }
        let preemptable = match cols.get(2).copied().unwrap_or("false") {
            "1" | "true" | "yes" | "y" => true,
            "0" | "false" | "no" | "n" | "" => false,
            other => return Err(format!("line {}: bad preemptable {other:?}", i + 1)),
        };
        let reboot_secs = rng.range(p.reboot_secs.0, p.reboot_secs.1);
        out.push(TraceNode {
            job_end: (hours > 0.0).then(|| SignedDuration::from_secs((hours * 3600.0) as i64)),
            preemptable,
            reboot_secs,
            fate: fate(&mut rng, p),
            down,
        });
    }
    if out.is_empty() {
        return Err("the trace has no nodes".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_traces_are_reproducible_and_follow_the_mix() {
        let p = TraceParams::new(10_000, 7);
        let t = generate(&p);
        assert_eq!(t, generate(&p));
        assert_ne!(t, generate(&TraceParams::new(10_000, 8)));
        let frac = |f: &dyn Fn(&TraceNode) -> bool| {
            t.iter().filter(|n| f(n)).count() as f64 / t.len() as f64
        };
        assert!((frac(&|n| n.job_end.is_none()) - 0.05).abs() < 0.01);
        assert!((frac(&|n| n.preemptable) - 0.19).abs() < 0.02);
        assert_eq!(t.iter().filter(|n| n.down).count(), 200);
        assert!((frac(&|n| n.fate == RebootFate::Never) - 0.002).abs() < 0.002);
        let long = frac(&|n| {
            n.job_end
                .is_some_and(|e| e >= SignedDuration::from_hours(24))
        });
        assert!((long - 0.14).abs() < 0.02, "{long}");
        assert!(t.iter().all(|n| {
            (480..=900).contains(&n.reboot_secs)
                && n.job_end
                    .is_none_or(|e| e <= SignedDuration::from_hours(48))
        }));
    }

    #[test]
    fn csv_traces() {
        let p = TraceParams::new(0, 1);
        let t = read_csv(
            "node,job_end_hours,preemptable\nn1,2.5,false\nn2,,\n# c\nn3,down\nn4,1,true\n",
            &p,
        )
        .unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].job_end, Some(SignedDuration::from_mins(150)));
        assert!(t[1].job_end.is_none() && !t[1].down);
        assert!(t[2].down);
        assert!(t[3].preemptable);
        assert!(read_csv("n1,abc,false", &p).is_err());
        assert!(read_csv("n1,1,maybe", &p).is_err());
        assert!(read_csv("", &p).is_err());
    }
}
