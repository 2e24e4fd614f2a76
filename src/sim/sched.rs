//! The simulator's own scheduler for trace arrivals: FIFO with EASY backfill, one job
//! per node (exclusive nodes), reservations respected as Slurm does.
//!
//! A job starts now on a node only if the node is up, not drained, empty, and no
//! reservation on it overlaps [now, now + the job's limit) (trace jobs belong to no
//! reservation). When the head of the queue cannot start, it gets a shadow time: the
//! earliest moment enough nodes are free for its limit, from the running jobs' limits and
//! the reservations; the nodes giving it that time are its own. A later job may start now
//! (backfill) on other free nodes, and on the head's nodes only if its limit ends by the
//! shadow time, so backfill never delays the head.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};

use super::swf::Arrival;
use super::{Boot, Inner, SimJob, secs};
use crate::slurm::Job;

/// Jobs after the head that backfill looks at per run (Slurm's `bf_max_job_test`).
const BACKFILL_DEPTH: usize = 500;

impl Inner {
    /// Move trace jobs submitted by now into the queue.
    pub(super) fn submit_due(&mut self) {
        while let Some(a) = self.arrivals.last() {
            let at = self.cfg.start + secs(a.submit as u64);
            if at > self.now {
                break;
            }
            let a = self.arrivals.pop().expect("checked");
            self.queue.insert((at, a.id), a);
        }
    }

    /// Up, undrained and running nothing.
    fn schedulable(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.boot == Boot::Up && !n.drain && !self.busy(&n.name)
    }

    /// No reservation on node `i` overlaps [start, start + len).
    fn clear_of_reservations(&self, i: usize, start: Timestamp, len: SignedDuration) -> bool {
        let end = start + len;
        self.resvs_on(&self.nodes[i].name)
            .all(|r| r.end <= start || r.start >= end)
    }

    /// The earliest moment node `i` can run a job of length `len`, from its running jobs'
    /// limits and its reservations; `None` while it is down, drained or rebooting.
    fn available_for(&self, i: usize, len: SignedDuration) -> Option<Timestamp> {
        let n = &self.nodes[i];
        if n.boot != Boot::Up || n.drain {
            return None;
        }
        let mut t = self
            .by_node
            .get(&n.name)
            .into_iter()
            .flatten()
            .filter_map(|id| self.jobs[id].job.end_time)
            .fold(self.now, Timestamp::max);
        let mut resvs: Vec<(Timestamp, Timestamp)> =
            self.resvs_on(&n.name).map(|r| (r.start, r.end)).collect();
        resvs.sort();
        for (s, e) in resvs {
            if s < t + len && e > t {
                t = e;
            }
        }
        Some(t)
    }

    fn start_job(&mut self, a: &Arrival, on: &[usize]) {
        let now = self.now;
        let job = Job {
            id: a.id,
            name: format!("swf{}", a.id),
            user: "user".into(),
            partition: self.cfg.partition.clone(),
            state: "RUNNING".into(),
            nodes: on.iter().map(|&i| self.nodes[i].name.clone()).collect(),
            qos: None,
            start_time: Some(now),
            end_time: Some(now + secs(a.limit)),
            time_limit_secs: Some(a.limit),
            preemptable: false,
        };
        self.add_job(SimJob {
            job,
            true_end: now + secs(a.run.clamp(1, a.limit)),
        });
        self.started.insert(a.id, now);
    }

    /// Start what FIFO with EASY backfill starts now.
    pub(super) fn schedule(&mut self) {
        let now = self.now;
        let mut free: BTreeSet<usize> = (0..self.nodes.len())
            .filter(|&i| self.schedulable(i))
            .collect();
        // FIFO: start the head while it fits.
        let head = loop {
            let Some((&key, a)) = self.queue.first_key_value() else {
                return;
            };
            if free.is_empty() {
                return;
            }
            let len = secs(a.limit);
            let fit: Vec<usize> = free
                .iter()
                .copied()
                .filter(|&i| self.clear_of_reservations(i, now, len))
                .take(a.nodes)
                .collect();
            if fit.len() < a.nodes {
                break key;
            }
            let a = self.queue.remove(&key).expect("listed");
            self.start_job(&a, &fit);
            for i in fit {
                free.remove(&i);
            }
        };
        // The head waits: its shadow time and the nodes that give it.
        let a = &self.queue[&head];
        let (need, len) = (a.nodes, secs(a.limit));
        let mut avail: Vec<(Timestamp, usize)> = (0..self.nodes.len())
            .filter_map(|i| self.available_for(i, len).map(|t| (t, i)))
            .collect();
        avail.sort();
        let (shadow, theirs): (Option<Timestamp>, BTreeSet<usize>) = if avail.len() >= need {
            (
                Some(avail[need - 1].0),
                avail[..need].iter().map(|&(_, i)| i).collect(),
            )
        } else {
            (None, BTreeSet::new())
        };
        let candidates: Vec<(Timestamp, u64)> = self
            .queue
            .keys()
            .skip(1)
            .take(BACKFILL_DEPTH)
            .copied()
            .collect();
        for key in candidates {
            if free.is_empty() {
                break;
            }
            let a = &self.queue[&key];
            if a.nodes > free.len() {
                continue;
            }
            let len = secs(a.limit);
            let by_shadow = shadow.is_some_and(|s| now + len <= s);
            let fit: Vec<usize> = free
                .iter()
                .copied()
                .filter(|i| !theirs.contains(i))
                .chain(
                    free.iter()
                        .copied()
                        .filter(|i| by_shadow && theirs.contains(i)),
                )
                .filter(|&i| self.clear_of_reservations(i, now, len))
                .take(a.nodes)
                .collect();
            if fit.len() < a.nodes {
                continue;
            }
            let a = self.queue.remove(&key).expect("listed");
            self.start_job(&a, &fit);
            for i in fit {
                free.remove(&i);
            }
        }
    }

    /// Add the time from now to `to` to [`super::SimStats::maint_lost_node_secs`].
    pub(super) fn accrue(&mut self, to: Timestamp) {
        if !self.meter || to <= self.now {
            return;
        }
        let now = self.now;
        let (mut out, mut held) = (0usize, 0usize);
        for n in &self.nodes {
            if self.busy(&n.name) {
                continue;
            }
            let s = self.state(n);
            if !s.in_service() || s.is_drained() || s.in_maintenance() {
                out += 1;
            } else if self.resvs_on(&n.name).any(|r| r.end > now) {
                held += 1;
            }
        }
        let dt = to.duration_since(now).as_secs_f64();
        self.stats.maint_lost_node_secs += (out + held) as f64 * dt;
        self.stats.maint_held_node_secs += held as f64 * dt;
    }
}
