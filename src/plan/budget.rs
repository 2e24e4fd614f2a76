//! The capacity budget of a partition.
//!
//! allowed = max(1, floor(total × percent / 100)), or an absolute count (capped at the
//! partition size). New work starts only where the budget's timeline
//! ([`super::timeline`]) keeps the nodes out — unavailable ∪ down now, and every
//! committed reservation over its expected interval — within allowed at every moment.
//!
//! The seed tool compared `combined < total × pct / 100` with a float: at 10 % of 15 nodes
//! that lets a second node start (1 < 1.5), i.e. 13.3 % — a fraction of a node over the
//! configured percentage — and at 25 % of 3 nodes it never starts anything (0 < 0.75 lets
//! one node in, but it also counted the candidate itself, deadlocking). Rounding down with
//! a floor of one never exceeds the percentage and never deadlocks a small partition,
//! the way OpenShift's MCO and NVIDIA's Skyhook round.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// How many nodes may be out at once.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum BudgetLimit {
    /// Percent of the partition, 0 < p ≤ 100.
    Percent(f64),
    /// Absolute node count, ≥ 1.
    Count(u32),
}

impl Default for BudgetLimit {
    fn default() -> Self {
        Self::Percent(10.0)
    }
}

impl BudgetLimit {
    /// Nodes allowed out in a partition of `total` nodes.
    pub fn allowed(self, total: usize) -> usize {
        if total == 0 {
            return 0;
        }
        match self {
            Self::Percent(p) => {
                // A tiny epsilon keeps 30 % of 10 at 3 despite 10 * 30.0 / 100.0 rounding.
                let exact = total as f64 * p / 100.0;
                ((exact + 1e-9).floor() as usize).clamp(1, total)
            }
            Self::Count(n) => (n as usize).clamp(1, total),
        }
    }
}

/// Budget figures of one partition at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetFigures {
    pub total: usize,
    /// Nodes out for maintenance now: an active MAINT reservation, or ours in flight.
    pub unavailable: BTreeSet<String>,
    /// Nodes Slurm has down (DOWN, DRAIN, FAIL, NOT_RESPONDING, POWER_*), or rebooting.
    pub down: BTreeSet<String>,
    /// Nodes committed to a MAINT reservation not yet started: ours, and anyone's
    /// starting within the lead time.
    pub reserved_ahead: BTreeSet<String>,
    pub allowed: usize,
}

impl BudgetFigures {
    /// unavailable ∪ down.
    pub fn combined(&self) -> BTreeSet<&String> {
        self.unavailable.union(&self.down).collect()
    }

    /// unavailable ∩ down.
    pub fn overlap(&self) -> usize {
        self.unavailable.intersection(&self.down).count()
    }

    /// unavailable ∪ down ∪ reserved ahead: every node out now or committed (reserved
    /// ahead in intervals the timeline keeps apart, so this may exceed `allowed`).
    pub fn occupied(&self) -> BTreeSet<&String> {
        let mut s = self.combined();
        s.extend(self.reserved_ahead.iter());
        s
    }

    /// Whether one more node may go out now (commitments ahead aside).
    pub fn has_room(&self) -> bool {
        self.combined().len() < self.allowed
    }

    /// Figures for `kubectl get`.
    pub fn to_status(&self, partition: &str) -> crate::api::policy::BudgetStatus {
        crate::api::policy::BudgetStatus {
            partition: partition.to_string(),
            total: self.total as u32,
            unavailable: self.unavailable.len() as u32,
            down: self.down.len() as u32,
            combined: self.combined().len() as u32,
            overlap: self.overlap() as u32,
            committed: self.occupied().len() as u32,
            peak: self.combined().len() as u32,
            allowed: self.allowed as u32,
            topology: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounds_down_with_a_floor_of_one() {
        let cases = [
            (100, 10.0, 10),
            (100, 2.5, 2),
            (15, 10.0, 1),
            (19, 10.0, 1),
            (20, 10.0, 2),
            (4, 25.0, 1),
            (4, 50.0, 2),
            (4, 75.0, 3),
            (3, 25.0, 1),
            (1, 5.0, 1),
            (10, 30.0, 3),
            (10, 100.0, 10),
            (10_000, 10.0, 1000),
            (48, 10.0, 4),
        ];
        for (total, p, want) in cases {
            assert_eq!(
                BudgetLimit::Percent(p).allowed(total),
                want,
                "{p}% of {total}"
            );
        }
    }

    #[test]
    fn never_above_the_percentage_except_the_floor() {
        for total in 1..300usize {
            for p in [
                0.5, 1.0, 5.0, 9.99, 10.0, 12.5, 25.0, 33.3, 50.0, 99.9, 100.0,
            ] {
                let a = BudgetLimit::Percent(p).allowed(total);
                assert!(a >= 1);
                if a > 1 {
                    assert!(
                        a as f64 <= total as f64 * p / 100.0 + 1e-6,
                        "{p}% of {total} gave {a}"
                    );
                }
                // and it is the largest such count
                assert!((a + 1) as f64 > total as f64 * p / 100.0 + 1e-6 || a == total);
            }
        }
    }

    #[test]
    fn counts_are_capped() {
        assert_eq!(BudgetLimit::Count(3).allowed(10), 3);
        assert_eq!(BudgetLimit::Count(30).allowed(10), 10);
        assert_eq!(BudgetLimit::Count(0).allowed(10), 1);
        assert_eq!(BudgetLimit::Count(3).allowed(0), 0);
    }

    #[test]
    fn combined_is_a_union_and_overlap_an_intersection() {
        // The seed's example: 100 nodes, 5 unavailable, 8 down, 2 in both → 11 combined.
        let names =
            |r: std::ops::Range<usize>| r.map(|i| format!("n{i:03}")).collect::<BTreeSet<_>>();
        let b = BudgetFigures {
            total: 100,
            unavailable: names(0..5),
            down: names(3..11),
            reserved_ahead: BTreeSet::new(),
            allowed: BudgetLimit::Percent(10.0).allowed(100),
        };
        assert_eq!(b.combined().len(), 11);
        assert_eq!(b.overlap(), 2);
        assert!(!b.has_room());
        let s = b.to_status("compute");
        assert_eq!(
            (s.unavailable, s.down, s.combined, s.overlap, s.allowed),
            (5, 8, 11, 2, 10)
        );
    }
}
