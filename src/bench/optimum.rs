//! The best possible campaign for a trace.
//!
//! Each node needing maintenance is a job with a release time r_j (when its running job
//! ends; 0 when idle or its job is preemptable and may be ended) and a processing time
//! p_j (its reboot). k = allowed − down machines. With equal p, earliest-release-first
//! list scheduling is optimal for makespan (P|r_j, p_j=p|Cmax): exchanging two jobs
//! started out of release order never helps, and with equal lengths the greedy keeps
//! every machine's free time as early as possible. When reboot times differ the problem
//! is NP-hard; [`lower_bound`] gives a bound no schedule can beat.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// One node's maintenance, in seconds from the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    pub release: i64,
    pub length: i64,
}

/// Makespan of earliest-release-first list scheduling on `k` machines (each job starts
/// on the machine free earliest, not before its release). Optimal for equal lengths.
pub fn erf_makespan(jobs: &[Job], k: usize) -> i64 {
    if jobs.is_empty() {
        return 0;
    }
    assert!(k > 0, "no capacity");
    let mut sorted = jobs.to_vec();
    sorted.sort_by_key(|j| (j.release, j.length));
    let mut free: BinaryHeap<Reverse<i64>> = (0..k.min(jobs.len())).map(|_| Reverse(0)).collect();
    let mut end = 0;
    for j in sorted {
        let Reverse(f) = free.pop().expect("k > 0");
        let finish = f.max(j.release) + j.length;
        end = end.max(finish);
        free.push(Reverse(finish));
    }
    end
}

/// A lower bound on the makespan of any schedule of `jobs` on `k` machines:
/// the exact optimum with every length shortened to the shortest (shortening never
/// lengthens the optimum), the latest release plus its length, and the work bound
/// (earliest release + total length / k).
pub fn lower_bound(jobs: &[Job], k: usize) -> i64 {
    if jobs.is_empty() {
        return 0;
    }
    let pmin = jobs.iter().map(|j| j.length).min().unwrap_or(0);
    let equal: Vec<Job> = jobs
        .iter()
        .map(|j| Job {
            release: j.release,
            length: pmin,
        })
        .collect();
    let tail = jobs.iter().map(|j| j.release + j.length).max().unwrap_or(0);
    let r0 = jobs.iter().map(|j| j.release).min().unwrap_or(0);
    let total: i64 = jobs.iter().map(|j| j.length).sum();
    let work = r0 + (total + k as i64 - 1) / k as i64;
    erf_makespan(&equal, k).max(tail).max(work)
}

/// The exact optimum by brute force: every order × every assignment to machines (each
/// machine runs its jobs in the order's sequence, as early as allowed). Tiny inputs only.
pub fn brute_force(jobs: &[Job], k: usize) -> i64 {
    fn permute(items: &mut Vec<Job>, at: usize, k: usize, best: &mut i64) {
        if at == items.len() {
            assign(items, 0, &mut vec![0; k], 0, best);
            return;
        }
        for i in at..items.len() {
            items.swap(at, i);
            permute(items, at + 1, k, best);
            items.swap(at, i);
        }
    }
    fn assign(order: &[Job], at: usize, free: &mut Vec<i64>, end: i64, best: &mut i64) {
        if at == order.len() {
            *best = (*best).min(end);
            return;
        }
        let j = order[at];
        for m in 0..free.len() {
            let before = free[m];
            let finish = before.max(j.release) + j.length;
            free[m] = finish;
            assign(order, at + 1, free, end.max(finish), best);
            free[m] = before;
        }
    }
    let mut best = i64::MAX;
    permute(&mut jobs.to_vec(), 0, k, &mut best);
    if jobs.is_empty() { 0 } else { best }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Rng;

    fn random_jobs(rng: &mut Rng, n: usize, equal: bool) -> Vec<Job> {
        let p = rng.range(1, 5) as i64;
        (0..n)
            .map(|_| Job {
                release: rng.range(0, 12) as i64,
                length: if equal { p } else { rng.range(1, 6) as i64 },
            })
            .collect()
    }

    #[test]
    fn erf_is_optimal_for_equal_lengths() {
        let mut rng = Rng::new(1);
        for case in 0..400 {
            let n = 1 + case % 7;
            let k = 1 + (case / 7) % 3;
            let jobs = random_jobs(&mut rng, n, true);
            assert_eq!(
                erf_makespan(&jobs, k),
                brute_force(&jobs, k),
                "{jobs:?} on {k}"
            );
        }
    }

    #[test]
    fn the_lower_bound_never_exceeds_the_optimum() {
        let mut rng = Rng::new(2);
        let mut tight = 0;
        for case in 0..400 {
            let n = 1 + case % 7;
            let k = 1 + (case / 7) % 3;
            let jobs = random_jobs(&mut rng, n, false);
            let opt = brute_force(&jobs, k);
            let lb = lower_bound(&jobs, k);
            assert!(lb <= opt, "{jobs:?} on {k}: {lb} > {opt}");
            // ERF with real lengths is a feasible schedule: never below the optimum.
            assert!(erf_makespan(&jobs, k) >= opt);
            tight += usize::from(lb == opt);
        }
        assert!(
            tight > 200,
            "the bound is tight on most small cases ({tight})"
        );
    }

    #[test]
    fn by_hand() {
        let j = |release, length| Job { release, length };
        // Two slots, four nodes free now and one at 10: 0-5, 0-5, 5-10, 5-10, 10-15.
        let jobs = [j(0, 5), j(0, 5), j(0, 5), j(0, 5), j(10, 5)];
        assert_eq!(erf_makespan(&jobs, 2), 15);
        assert_eq!(brute_force(&jobs, 2), 15);
        assert_eq!(erf_makespan(&[], 3), 0);
        assert_eq!(lower_bound(&[j(3, 4)], 2), 7);
    }
}
