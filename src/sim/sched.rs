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
//!
//! With `SimConfig::block_jobs`, every job runs on all the nodes of one block of the
//! topology (Slurm's `topology/block` with a job that asks for a whole block): it starts
//! only on a block whose every node is schedulable as above, and its shadow time is the
//! earliest moment a whole block is, the same rule for backfill holding on that block.

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

    /// The topology's blocks as node indices (nodes the partition lacks left out).
    fn block_nodes(&self) -> Vec<Vec<usize>> {
        let Some(t) = &self.cfg.topology else {
            return vec![];
        };
        t.blocks
            .iter()
            .map(|b| {
                b.nodes
                    .iter()
                    .filter_map(|n| self.node(n).ok())
                    .collect::<Vec<usize>>()
            })
            .filter(|b| !b.is_empty())
            .collect()
    }

    /// Whether every node of `block` can start a job of length `len` now.
    fn block_fits(&self, block: &[usize], len: SignedDuration) -> bool {
        block
            .iter()
            .all(|&i| self.schedulable(i) && self.clear_of_reservations(i, self.now, len))
    }

    /// The earliest moment every node of `block` can run a job of length `len` at once;
    /// `None` while one of them is down, drained or rebooting.
    fn block_available_for(&self, block: &[usize], len: SignedDuration) -> Option<Timestamp> {
        let mut t = self.now;
        for &i in block {
            t = t.max(self.available_for(i, len)?);
        }
        let mut resvs: Vec<(Timestamp, Timestamp)> = block
            .iter()
            .flat_map(|&i| self.resvs_on(&self.nodes[i].name).map(|r| (r.start, r.end)))
            .collect();
        resvs.sort();
        loop {
            let before = t;
            for &(s, e) in &resvs {
                if s < t + len && e > t {
                    t = e;
                }
            }
            if t == before {
                return Some(t);
            }
        }
    }

    /// FIFO with EASY backfill for block jobs (see the module's comment).
    fn schedule_blocks(&mut self) {
        let now = self.now;
        let blocks = self.block_nodes();
        let pick = |s: &Self, a: &Arrival, skip: Option<usize>| {
            (0..blocks.len()).find(|&k| {
                Some(k) != skip
                    && blocks[k].len() >= a.nodes
                    && s.block_fits(&blocks[k], secs(a.limit))
            })
        };
        let head = loop {
            let Some((&key, a)) = self.queue.first_key_value() else {
                return;
            };
            let Some(k) = pick(self, a, None) else {
                break key;
            };
            let a = self.queue.remove(&key).expect("listed");
            self.start_job(&a, &blocks[k]);
        };
        // The head waits: the block that frees first for it is its own until then.
        let a = &self.queue[&head];
        let (need, len) = (a.nodes, secs(a.limit));
        let theirs: Option<(Timestamp, usize)> = (0..blocks.len())
            .filter(|&k| blocks[k].len() >= need)
            .filter_map(|k| self.block_available_for(&blocks[k], len).map(|t| (t, k)))
            .min();
        let candidates = self.backfill_candidates();
        for key in candidates {
            let a = &self.queue[&key];
            let by_shadow = theirs.is_some_and(|(s, _)| now + secs(a.limit) <= s);
            let skip = theirs.filter(|_| !by_shadow).map(|(_, k)| k);
            let Some(k) = pick(self, a, skip) else {
                continue;
            };
            let a = self.queue.remove(&key).expect("listed");
            self.start_job(&a, &blocks[k]);
        }
    }

    /// The queued jobs behind the head that backfill may start, in queue order.
    fn backfill_candidates(&self) -> Vec<(Timestamp, u64)> {
        self.queue
            .keys()
            .skip(1)
            .take(BACKFILL_DEPTH)
            .copied()
            .collect()
    }

    /// Start what FIFO with EASY backfill starts now.
    pub(super) fn schedule(&mut self) {
        if self.cfg.block_jobs {
            self.schedule_blocks();
            return;
        }
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
        let candidates = self.backfill_candidates();
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

#[cfg(test)]
mod tests {
    use super::super::{Rng, SimCluster, SimConfig};
    use super::*;
    use crate::plan::Action;

    fn job(id: u64, submit: i64, nodes: usize, run: u64, limit: u64) -> Arrival {
        Arrival {
            id,
            submit,
            nodes,
            run,
            limit,
        }
    }

    fn cluster(nodes: usize, jobs: Vec<Arrival>) -> SimCluster {
        SimCluster::new(SimConfig {
            nodes,
            arrivals: Some(jobs),
            ..SimConfig::default()
        })
    }

    fn started(sim: &SimCluster, id: u64) -> Option<i64> {
        let t0 = SimConfig::default().start;
        sim.start_times()
            .get(&id)
            .map(|t| t.duration_since(t0).as_secs())
    }

    #[test]
    fn fifo_with_backfill_that_never_delays_the_head() {
        for a_run in [1000, 800] {
            let sim = cluster(
                2,
                vec![
                    job(1, 0, 1, a_run, 1000),
                    // The head from t=1: both nodes, shadow time 1000 (job 1's limit).
                    job(2, 1, 2, 500, 500),
                    // Ends by the shadow: backfills at once.
                    job(3, 2, 1, 300, 300),
                    // Would run past the shadow on the head's node: waits.
                    job(4, 3, 1, 2000, 2000),
                    // Ends by the shadow: backfills when job 3's node frees.
                    job(5, 310, 1, 600, 600),
                ],
            );
            sim.advance(SignedDuration::from_hours(2));
            let s: Vec<Option<i64>> = (1..=5).map(|id| started(&sim, id)).collect();
            // Job 5 (limit to 910) may hold the head past job 1's early end, never past 1000.
            let head = (a_run as i64).max(910);
            assert_eq!(
                s,
                vec![Some(0), Some(head), Some(2), Some(head + 500), Some(310)],
                "job 1 runs {a_run} s"
            );
            assert_eq!(sim.backlog(), (0, 0));
        }
    }

    #[test]
    fn fifo_waits_for_the_head() {
        // No backfill past a head that fits soon: job 3 is short but arrives behind job 2,
        // and its limit runs past job 2's shadow time on the only free node.
        let sim = cluster(
            2,
            vec![
                job(1, 0, 1, 100, 100),
                job(2, 1, 2, 100, 100),
                job(3, 2, 1, 50, 900),
            ],
        );
        sim.advance(SignedDuration::from_mins(10));
        let s: Vec<Option<i64>> = (1..=3).map(|id| started(&sim, id)).collect();
        assert_eq!(s, vec![Some(0), Some(100), Some(200)]);
    }

    #[test]
    fn jobs_go_around_reservations() {
        let sim = cluster(1, vec![job(1, 0, 1, 50, 150), job(2, 0, 1, 30, 60)]);
        let t0 = sim.now();
        sim.exec(&Action::CreateReservation {
            name: "slurm-maint-node001-c1".into(),
            node: "node001".into(),
            with: vec![],
            start: Some(t0 + SignedDuration::from_secs(100)),
            duration: SignedDuration::from_secs(100),
            users: vec!["root".into()],
            accounts: vec![],
            flags: vec!["MAINT".into()],
        })
        .unwrap();
        sim.advance(SignedDuration::from_mins(10));
        // Job 1's limit would overlap [100, 200): it waits for the reservation's end;
        // job 2 fits before it.
        assert_eq!((started(&sim, 1), started(&sim, 2)), (Some(200), Some(0)));
    }

    #[test]
    fn no_job_ever_overlaps_a_reservation_on_its_nodes() {
        let mut rng = Rng::new(5);
        let jobs: Vec<Arrival> = (1..=150)
            .map(|id| {
                let run = rng.range(120, 4 * 3600);
                job(
                    id,
                    rng.range(0, 12 * 3600) as i64,
                    rng.range(1, 3) as usize,
                    run,
                    run + rng.range(0, 3600),
                )
            })
            .collect();
        let sim = cluster(6, jobs);
        let t0 = sim.now();
        for (k, node) in [1, 2, 2, 4, 6].iter().enumerate() {
            sim.exec(&Action::CreateReservation {
                name: format!("slurm-maint-r{k}"),
                node: format!("node{node:03}"),
                with: vec![],
                start: Some(t0 + SignedDuration::from_mins(rng.range(30, 600) as i64)),
                duration: SignedDuration::from_mins(rng.range(10, 120) as i64),
                users: vec!["root".into()],
                accounts: vec![],
                flags: vec!["MAINT".into()],
            })
            .unwrap();
        }
        let resvs = sim.peek().reservations;
        let mut seen = 0;
        for _ in 0..(10 * 24 * 60) {
            sim.advance(SignedDuration::from_mins(1));
            let jobs = sim.peek().jobs;
            if jobs.is_empty() && sim.backlog() == (0, 0) {
                break;
            }
            for j in jobs {
                seen += 1;
                let (s, e) = (j.start_time.unwrap(), j.end_time.unwrap());
                for r in resvs
                    .iter()
                    .filter(|r| r.nodes.iter().any(|n| j.nodes.contains(n)))
                {
                    assert!(r.end <= s || r.start >= e, "job {j:?} overlaps {r:?}");
                }
            }
        }
        assert!(seen > 150 && sim.backlog() == (0, 0), "{seen}");
    }

    #[test]
    fn a_block_job_takes_a_whole_block_with_every_node_free() {
        use crate::slurm::topology::{Block, Topology};
        let block = |name: &str, nodes: [&str; 2]| Block {
            name: name.into(),
            nodes: nodes.map(String::from).to_vec(),
        };
        let sim = SimCluster::new(SimConfig {
            nodes: 4,
            arrivals: Some(vec![job(1, 0, 2, 100, 100), job(2, 0, 2, 100, 100)]),
            topology: Some(Topology {
                switches: vec![],
                blocks: vec![
                    block("b1", ["node001", "node002"]),
                    block("b2", ["node003", "node004"]),
                ],
            }),
            block_jobs: true,
            ..SimConfig::default()
        });
        let t0 = sim.now();
        // One node of b1 out for an hour: b1 takes no block job, though node002 is free.
        sim.exec(&Action::CreateReservation {
            name: "slurm-maint-node001-c1".into(),
            node: "node001".into(),
            with: vec![],
            start: Some(t0),
            duration: SignedDuration::from_hours(1),
            users: vec!["root".into()],
            accounts: vec![],
            flags: vec!["MAINT".into()],
        })
        .unwrap();
        sim.advance(SignedDuration::from_secs(1));
        let jobs = sim.peek().jobs;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].nodes, ["node003", "node004"]);
        sim.advance(SignedDuration::from_hours(2));
        assert_eq!((started(&sim, 1), started(&sim, 2)), (Some(0), Some(100)));
        // The snapshot carries the topology, as the agent's does.
        assert_eq!(sim.peek().topology.map(|t| t.blocks.len()), Some(2));
    }
}
