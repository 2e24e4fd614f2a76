//! Job arrivals from a Standard Workload Format trace (Parallel Workloads Archive,
//! huji.ac.il/labs/parallel/workload/swf.html) for the simulator's own scheduler.
//!
//! One job per line, 18 whitespace-separated numeric fields; `;` lines are the header.
//! Used: 1 job id, 2 submit time, 4 run time, 5 allocated processors, 8 requested
//! processors, 9 requested time (seconds; -1 = unknown). A processor is a node here.

use super::Rng;

/// One job of a trace, as the simulator's scheduler receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The trace's job id (also the simulated Slurm job id).
    pub id: u64,
    /// Seconds from the start of the trace.
    pub submit: i64,
    pub nodes: usize,
    /// How long it really runs, seconds (at least 1, at most `limit`).
    pub run: u64,
    /// Its time limit, seconds: what Slurm and every policy see.
    pub limit: u64,
}

/// A parsed trace.
#[derive(Clone, Debug, PartialEq)]
pub struct SwfTrace {
    /// Arrivals sorted by submit time, then id.
    pub jobs: Vec<Arrival>,
    /// `MaxNodes` (else `MaxProcs`) from the header, if given.
    pub max_nodes: Option<usize>,
    /// Lines whose job cannot run: run time or size unknown or not positive (cancelled
    /// before starting, in archive traces).
    pub skipped: usize,
    /// Jobs whose time limit came from [`limit_rule`] (the trace gave none).
    pub limits_drawn: usize,
}

/// Time limits users pick, seconds: 15 and 30 min, 1, 2, 4, 8, 12, 24, 36, 48, 72 h, then
/// whole days.
const TIERS: [u64; 11] = [
    900, 1800, 3600, 7200, 14_400, 28_800, 43_200, 86_400, 129_600, 172_800, 259_200,
];

/// The time limit of a job whose trace gives none: its run time times a factor drawn
/// uniformly in [1, 3) (seeded by `seed` and the job id, so independent of order), rounded
/// up to the next of the tiers users pick (see [`TIERS`]); users overestimate, and pick
/// round values (Tsafrir, Etsion & Feitelson, "Modeling user runtime estimates", 2005).
pub fn limit_rule(seed: u64, id: u64, run: u64) -> u64 {
    let mut rng = Rng::new(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let want = (run as f64 * (1.0 + 2.0 * rng.unit())).ceil() as u64;
    TIERS
        .iter()
        .copied()
        .find(|t| *t >= want)
        .unwrap_or_else(|| want.div_ceil(86_400) * 86_400)
}

/// Parse an SWF trace; limits missing from it come from [`limit_rule`] with `seed`.
/// A malformed line is an error naming its line number.
pub fn parse(text: &str, seed: u64) -> Result<SwfTrace, String> {
    let mut t = SwfTrace {
        jobs: vec![],
        max_nodes: None,
        skipped: 0,
        limits_drawn: 0,
    };
    let mut max_procs = None;
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(h) = line.strip_prefix(';') {
            if let Some((k, v)) = h.split_once(':') {
                let v = v.trim().parse::<usize>().ok();
                match k.trim() {
                    "MaxNodes" => t.max_nodes = v.or(t.max_nodes),
                    "MaxProcs" => max_procs = v.or(max_procs),
                    _ => {}
                }
            }
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 18 {
            return Err(format!(
                "line {no}: {} fields, SWF has 18: {line:?}",
                fields.len()
            ));
        }
        let mut v = [0i64; 18];
        for (k, f) in fields.iter().enumerate() {
            // Archive traces write some fields (average CPU time, memory) as decimals.
            v[k] = match f.parse::<i64>() {
                Ok(x) => x,
                Err(_) => match f.parse::<f64>() {
                    Ok(x) if x.is_finite() && k >= 5 && k != 7 && k != 8 => x as i64,
                    _ => {
                        return Err(format!(
                            "line {no}: field {} is {f:?}, not {}: {line:?}",
                            k + 1,
                            if k >= 5 && k != 7 && k != 8 {
                                "a number"
                            } else {
                                "an integer"
                            }
                        ));
                    }
                },
            };
        }
        let (id, submit, run, alloc, req_procs, req_time) = (v[0], v[1], v[3], v[4], v[7], v[8]);
        if id < 0 || submit < 0 {
            return Err(format!(
                "line {no}: job id {id} and submit time {submit} must not be negative: {line:?}"
            ));
        }
        let nodes = if alloc > 0 { alloc } else { req_procs };
        if run <= 0 || nodes <= 0 {
            t.skipped += 1;
            continue;
        }
        let run = run as u64;
        let limit = if req_time > 0 {
            (req_time as u64).max(run)
        } else {
            t.limits_drawn += 1;
            limit_rule(seed, id as u64, run)
        };
        t.jobs.push(Arrival {
            id: id as u64,
            submit,
            nodes: nodes as usize,
            run,
            limit: limit.max(60),
        });
    }
    if t.jobs.is_empty() {
        return Err("no runnable job in the trace".into());
    }
    t.max_nodes = t.max_nodes.or(max_procs);
    let mut ids = std::collections::HashSet::new();
    if let Some(a) = t.jobs.iter().find(|a| !ids.insert(a.id)) {
        return Err(format!("job id {} appears twice", a.id));
    }
    t.jobs.sort_by_key(|a| (a.submit, a.id));
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = include_str!("../../tests/fixtures/swf/lublin_256.swf");

    fn line(id: u64, submit: i64, run: i64, procs: i64, req_time: i64) -> String {
        format!("{id} {submit} -1 {run} {procs} -1 -1 -1 {req_time} -1 1 -1 -1 -1 0 -1 -1 -1")
    }

    #[test]
    fn reads_the_real_trace() {
        let t = parse(REAL, 1).unwrap();
        assert_eq!(t.jobs.len(), 10_000);
        assert_eq!(t.max_nodes, Some(256));
        assert_eq!((t.skipped, t.limits_drawn), (0, 10_000));
        assert!(t.jobs.windows(2).all(|w| w[0].submit <= w[1].submit));
        assert!(
            t.jobs
                .iter()
                .all(|a| a.run <= a.limit && (1..=256).contains(&a.nodes))
        );
        let first = &t.jobs[0];
        assert_eq!(
            (first.id, first.submit, first.run, first.nodes),
            (1, 5094, 12072, 16)
        );
        assert_eq!(first.limit, limit_rule(1, 1, 12072));
        // The limit rule overestimates: on average a job uses well under its limit.
        let used: f64 = t
            .jobs
            .iter()
            .map(|a| a.run as f64 / a.limit as f64)
            .sum::<f64>()
            / 10_000.0;
        assert!((0.2..0.8).contains(&used), "{used}");
        assert_eq!(parse(REAL, 1).unwrap(), t, "deterministic");
    }

    #[test]
    fn limit_rule_rounds_up_to_a_tier() {
        for run in [1, 59, 900, 3601, 100_000, 300_000] {
            let l = limit_rule(7, 42, run);
            assert!(
                l >= run && (TIERS.contains(&l) || l.is_multiple_of(86_400)),
                "{run} → {l}"
            );
            assert!(l < 3 * run.max(900) + 86_400, "{run} → {l}");
        }
    }

    #[test]
    fn given_limits_headers_and_odd_lines() {
        let text = format!(
            "; MaxProcs: 64\r\n\n{}\r\n{}\n\t{}  \n{}\n",
            line(1, 0, 100, 4, 600),
            line(2, 5, 700, 2, 600),
            line(3, 9, -1, 2, 600),
            // Archive traces write averages as decimals.
            "4 10 -1 50 1 12.5 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1",
        );
        let t = parse(&text, 1).unwrap();
        assert_eq!(t.max_nodes, Some(64));
        assert_eq!(t.skipped, 1);
        assert_eq!(t.limits_drawn, 1);
        let limits: Vec<(u64, u64)> = t.jobs.iter().map(|a| (a.id, a.limit)).collect();
        // A run over its requested time keeps its run time as the limit.
        assert_eq!(limits, vec![(1, 600), (2, 700), (4, limit_rule(1, 4, 50))]);
    }

    #[test]
    fn malformed_lines_name_their_number() {
        let good = line(1, 0, 100, 4, 600);
        let cases = [
            (format!("; x\n{good}\n1 2 3\n"), "line 3: 3 fields"),
            (
                format!(
                    "{good}\n{}\n",
                    line(2, 0, 100, 4, 600).replace(" 0 ", " zero ")
                ),
                "line 2: field 2 is \"zero\"",
            ),
            (
                format!(
                    "{good}\n{}\n",
                    line(2, 0, 100, 4, 600).replacen("100", "1.5", 1)
                ),
                "line 2: field 4 is \"1.5\", not an integer",
            ),
            (
                format!("{}\n", line(3, -4, 100, 4, 600)),
                "line 1: job id 3",
            ),
            (format!("{good}\n{good}\n"), "job id 1 appears twice"),
            ("; only a header\n".to_string(), "no runnable job"),
        ];
        for (text, want) in cases {
            let e = parse(&text, 1).unwrap_err();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        }
    }
}
