//! A simulated Slurm partition on a virtual clock, implementing [`SlurmClient`].
//!
//! Used by `slurm-maint demo`, benchmarks and restart tests. Everything is deterministic
//! for a seed: a busy workload keeps every free node running jobs, so maintenance has to
//! go through reservations, exactly as on a real cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};

pub mod crash;
mod sched;
pub mod swf;

use crate::agent::api::{Done, PartitionSnapshot};
use crate::plan::{Action, HealthResult};
use crate::slurm::client::{SlurmClient, SlurmError};
use crate::slurm::{Job, Node, NodeState, Partition, Reservation};

/// Owned reservation name prefix.
const OWNED_PREFIX: &str = "slurm-maint-";
/// Owned drain reason prefix.
const REASON_PREFIX: &str = "slurm-maint: ";
/// Partition of preemptable jobs.
const SCAVENGER: &str = "scavenger";

/// SplitMix64: a small deterministic PRNG.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi] (inclusive).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi.saturating_sub(lo) + 1)
    }
}

/// Workload mix: fractions of short (10 min–2 h) and long (24–48 h) jobs; the rest have
/// no time limit (their hidden true end is 24–96 h away).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JobMix {
    pub short: f64,
    pub long: f64,
}

impl Default for JobMix {
    fn default() -> Self {
        Self {
            short: 0.8,
            long: 0.15,
        }
    }
}

/// Parameters of a simulated partition.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    pub nodes: usize,
    pub partition: String,
    pub seed: u64,
    /// Virtual time at creation.
    pub start: Timestamp,
    /// Reboot duration, seconds, drawn uniformly in this inclusive range.
    pub reboot_secs: (u64, u64),
    /// Fraction of nodes whose first reboot times out (the next one succeeds).
    pub reboot_fail_once_pct: f64,
    /// Fraction of nodes that never come back from a reboot.
    pub reboot_never_pct: f64,
    /// Nodes drained by ops (not by us) at the start: the last `down_at_start` nodes.
    pub down_at_start: usize,
    /// Fraction of jobs that are preemptable (partition scavenger).
    pub preemptable_pct: f64,
    /// Fraction of nodes idle at the start.
    pub idle_pct: f64,
    pub job_mix: JobMix,
    /// Nodes given one by one instead of drawn (`nodes`, `down_at_start`, the fates,
    /// `idle_pct` and the first jobs are then taken from the trace).
    pub trace: Option<Vec<TraceNode>>,
    /// Land new jobs on free nodes (a busy cluster). Off: the workload is only the
    /// first jobs, so every node's release time is known from the start.
    pub refill: bool,
    /// Process events once per `advance` (at its end) instead of one by one at their
    /// own instants: much faster for big partitions, accurate to the step.
    pub coarse: bool,
    /// Jobs arriving from a trace (submit times from `start`), scheduled FIFO with EASY
    /// backfill by the simulator itself: the partition starts empty, nothing is drawn,
    /// each node's reboot duration is drawn once at creation.
    pub arrivals: Option<Vec<swf::Arrival>>,
    /// What the snapshot reports as `scontrol show topology` (`None`: no topology).
    pub topology: Option<crate::slurm::topology::Topology>,
    /// Trace arrivals are block jobs: each runs on every node of one block of
    /// `topology` (exclusive), and starts only on a block whose every node is up,
    /// undrained, empty and clear of reservations for its limit (see `sched`).
    pub block_jobs: bool,
}

/// One node of a trace-driven partition.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceNode {
    /// When its running job ends, from the start; `None`: idle.
    pub job_end: Option<SignedDuration>,
    pub preemptable: bool,
    /// How long each of its reboots takes, seconds.
    pub reboot_secs: u64,
    pub fate: RebootFate,
    /// Drained by ops at the start.
    pub down: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 20,
            partition: "batch".into(),
            seed: 1,
            start: "2026-12-01T00:00:00Z".parse().expect("valid timestamp"),
            reboot_secs: (120, 400),
            reboot_fail_once_pct: 0.0,
            reboot_never_pct: 0.0,
            down_at_start: 0,
            preemptable_pct: 0.2,
            idle_pct: 0.05,
            job_mix: JobMix::default(),
            trace: None,
            refill: true,
            coarse: false,
            arrivals: None,
            topology: None,
            block_jobs: false,
        }
    }
}

/// Counters for invariant checks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimStats {
    pub preemptable_cancelled: u64,
    /// Non-preemptable jobs killed by maintenance: must stay 0.
    pub non_preemptable_killed: u64,
    pub reboots_per_node: BTreeMap<String, u32>,
    /// Most nodes down, drained, rebooting or in an active MAINT reservation at a sample.
    pub max_unavailable_or_down: usize,
    pub samples: u64,
    /// Slurm commands the real agent would have run (4 per snapshot).
    pub commands: u64,
    /// Node-seconds out of service (down, drained, rebooting or in an active MAINT
    /// reservation), nodes drained by ops at the start excepted; see [`SimCluster::sample_for`].
    pub out_node_secs: f64,
    /// Node-seconds out of service while up and running no job (held idle).
    pub idle_out_node_secs: f64,
    /// Samples at which more nodes were out than the given limit.
    pub over_limit_samples: u64,
    /// Node-seconds of capacity lost to maintenance, integrated exactly between events
    /// once [`SimCluster::meter`] is on: nodes running no job while down, rebooting,
    /// drained, in an active reservation, or held empty by a reservation still to start.
    pub maint_lost_node_secs: f64,
    /// The part of [`SimStats::maint_lost_node_secs`] on nodes in service and undrained,
    /// empty only because a reservation is still to start.
    pub maint_held_node_secs: f64,
}

/// How a node's next reboot ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootFate {
    Ok,
    FailOnce,
    Never,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Boot {
    Up,
    /// `scontrol reboot ASAP`: waiting for jobs to end.
    Requested,
    /// Rebooting until `until`; `fail` ends it DOWN "reboot timed out" 60 s later.
    Issued {
        until: Timestamp,
        fail: bool,
    },
    /// Down after a timed-out reboot, or never back.
    Dead {
        not_responding: bool,
    },
}

#[derive(Clone, Debug)]
struct SimNode {
    name: String,
    boot_time: Timestamp,
    drain: bool,
    reason: Option<String>,
    boot: Boot,
    fate: RebootFate,
    /// Fixed reboot duration (trace), else drawn per reboot.
    reboot_secs: Option<u64>,
    /// Drained by ops at the start.
    ops: bool,
}

#[derive(Clone, Debug)]
struct SimJob {
    job: Job,
    /// When it really ends (hidden for jobs without a limit).
    true_end: Timestamp,
}

#[derive(Debug)]
struct Inner {
    cfg: SimConfig,
    rng: Rng,
    now: Timestamp,
    nodes: Vec<SimNode>,
    jobs: BTreeMap<u64, SimJob>,
    /// Job ids by node.
    by_node: HashMap<String, BTreeSet<u64>>,
    /// (true end, id) of every job.
    ends: BTreeSet<(Timestamp, u64)>,
    reservations: BTreeMap<String, Reservation>,
    /// Reservation names by node.
    resv_by_node: HashMap<String, BTreeSet<String>>,
    next_job: u64,
    stats: SimStats,
    /// Trace jobs not yet submitted, latest first.
    arrivals: Vec<swf::Arrival>,
    /// Submitted trace jobs waiting, in FIFO order (submit time, id).
    queue: BTreeMap<(Timestamp, u64), swf::Arrival>,
    /// When each trace job started.
    started: HashMap<u64, Timestamp>,
    /// Integrate [`SimStats::maint_lost_node_secs`].
    meter: bool,
    /// Inside [`SimCluster::exec_all`]: schedule once at its end.
    batch: bool,
    /// Simulated named checks that fail: (node, check) → their output.
    failing_checks: BTreeMap<(String, String), String>,
    /// Named checks run: (node, check, fault).
    checks_run: Vec<(String, String, Option<String>)>,
}

/// A simulated Slurm partition; clones share state.
#[derive(Clone, Debug)]
pub struct SimCluster(Arc<Mutex<Inner>>);

fn refused(status: u16, code: &str, message: String) -> SlurmError {
    SlurmError::Refused {
        status,
        code: code.into(),
        message,
    }
}

fn done(changed: bool, message: impl Into<String>) -> Done {
    Done {
        changed,
        message: message.into(),
    }
}

fn secs(s: u64) -> SignedDuration {
    SignedDuration::from_secs(s as i64)
}

impl Inner {
    fn node(&self, name: &str) -> Result<usize, SlurmError> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| refused(404, "NotFound", format!("node {name} not found")))
    }

    fn busy(&self, node: &str) -> bool {
        self.by_node.get(node).is_some_and(|j| !j.is_empty())
    }

    fn add_job(&mut self, j: SimJob) {
        let id = j.job.id;
        for n in &j.job.nodes {
            self.by_node.entry(n.clone()).or_default().insert(id);
        }
        self.ends.insert((j.true_end, id));
        self.jobs.insert(id, j);
    }

    fn remove_job(&mut self, id: u64) -> Option<SimJob> {
        let j = self.jobs.remove(&id)?;
        for n in &j.job.nodes {
            if let Some(ids) = self.by_node.get_mut(n) {
                ids.remove(&id);
            }
        }
        self.ends.remove(&(j.true_end, id));
        Some(j)
    }

    fn remove_jobs_on(&mut self, node: &str) -> Vec<SimJob> {
        let ids: Vec<u64> = self
            .by_node
            .get(node)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        ids.into_iter()
            .filter_map(|id| self.remove_job(id))
            .collect()
    }

    fn add_resv(&mut self, r: Reservation) {
        for n in &r.nodes {
            self.resv_by_node
                .entry(n.clone())
                .or_default()
                .insert(r.name.clone());
        }
        self.reservations.insert(r.name.clone(), r);
    }

    fn remove_resv(&mut self, name: &str) -> Option<Reservation> {
        let r = self.reservations.remove(name)?;
        for n in &r.nodes {
            if let Some(s) = self.resv_by_node.get_mut(n) {
                s.remove(name);
            }
        }
        Some(r)
    }

    fn resvs_on(&self, node: &str) -> impl Iterator<Item = &Reservation> {
        self.resv_by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|name| self.reservations.get(name))
    }

    fn active_resv(&self, node: &str) -> Option<&Reservation> {
        self.resvs_on(node).find(|r| r.is_active_at(self.now))
    }

    fn state(&self, n: &SimNode) -> NodeState {
        let mut flags = BTreeSet::new();
        let busy = self.busy(&n.name);
        let mut base = if busy { "ALLOCATED" } else { "IDLE" };
        match n.boot {
            Boot::Up => {}
            Boot::Requested => {
                flags.insert("REBOOT_REQUESTED");
            }
            Boot::Issued { .. } => {
                base = "DOWN";
                flags.insert("REBOOT_ISSUED");
            }
            Boot::Dead { not_responding } => {
                base = "DOWN";
                if not_responding {
                    flags.insert("NOT_RESPONDING");
                }
            }
        }
        if n.drain {
            flags.insert("DRAIN");
        }
        if let Some(r) = self.active_resv(&n.name) {
            flags.insert("RESERVED");
            if r.is_maint() {
                flags.insert("MAINTENANCE");
            }
        }
        NodeState {
            base: base.into(),
            flags: flags.into_iter().map(String::from).collect(),
        }
    }

    /// A job of the configured mix on `node`, started up to `max_elapsed` seconds ago
    /// (always at least a minute left).
    fn draw_job(&mut self, node: &str, max_elapsed: u64) -> SimJob {
        let r = self.rng.unit();
        let mix = self.cfg.job_mix;
        let (limit, run) = if r < mix.short {
            let l = self.rng.range(600, 7200);
            (Some(l), l)
        } else if r < mix.short + mix.long {
            let l = self.rng.range(24 * 3600, 48 * 3600);
            (Some(l), l)
        } else {
            (None, self.rng.range(24 * 3600, 96 * 3600))
        };
        let elapsed = secs(self.rng.range(0, max_elapsed.min(run - 60)));
        let preemptable = self.rng.unit() < self.cfg.preemptable_pct;
        let start = self.now - elapsed;
        self.next_job += 1;
        let id = self.next_job;
        let partition = if preemptable {
            SCAVENGER.to_string()
        } else {
            self.cfg.partition.clone()
        };
        SimJob {
            job: Job {
                id,
                name: format!("job{id}"),
                user: "user".into(),
                partition,
                state: "RUNNING".into(),
                nodes: vec![node.to_string()],
                qos: None,
                start_time: Some(start),
                end_time: limit.map(|l| start + secs(l)),
                time_limit_secs: limit,
                preemptable,
            },
            true_end: start + secs(run),
        }
    }

    /// Land a new job on every free, schedulable node whose reservations allow it.
    fn fill(&mut self) {
        if self.batch {
            return;
        }
        if self.cfg.arrivals.is_some() {
            self.schedule();
            return;
        }
        if !self.cfg.refill {
            return;
        }
        for i in 0..self.nodes.len() {
            let n = &self.nodes[i];
            if n.drain || n.boot != Boot::Up || self.busy(&n.name) {
                continue;
            }
            let name = n.name.clone();
            if self.active_resv(&name).is_some() {
                continue;
            }
            let job = self.draw_job(&name, 0);
            let end = job.job.end_time;
            let blocked = self
                .resvs_on(&name)
                .any(|r| r.end > self.now && end.is_none_or(|e| r.start < e));
            if !blocked {
                self.add_job(job);
            }
        }
    }

    /// Begin the reboot of an empty node.
    fn issue_reboot(&mut self, i: usize) {
        let (lo, hi) = self.cfg.reboot_secs;
        let d = match self.nodes[i].reboot_secs {
            Some(d) => d,
            None => self.rng.range(lo, hi),
        };
        let until = self.now + secs(d);
        let n = &mut self.nodes[i];
        *self
            .stats
            .reboots_per_node
            .entry(n.name.clone())
            .or_default() += 1;
        n.drain = true;
        n.boot = match n.fate {
            RebootFate::Never => Boot::Issued { until, fail: true },
            RebootFate::FailOnce => {
                n.fate = RebootFate::Ok;
                Boot::Issued { until, fail: true }
            }
            RebootFate::Ok => Boot::Issued { until, fail: false },
        };
        let name = n.name.clone();
        // A reboot never waits for jobs: any still running would be killed.
        for j in self.remove_jobs_on(&name) {
            if j.job.preemptable {
                self.stats.preemptable_cancelled += 1;
            } else {
                self.stats.non_preemptable_killed += 1;
            }
        }
    }

    /// The earliest pending event after now, if any.
    fn next_event(&self) -> Option<Timestamp> {
        let jobs = self.ends.first().map(|(t, _)| *t).into_iter();
        let resv = self
            .reservations
            .values()
            .flat_map(|r| [r.start, r.end])
            .filter(|t| *t > self.now);
        let boots = self.nodes.iter().filter_map(|n| match n.boot {
            Boot::Issued { until, fail: true } => Some(until + secs(60)),
            Boot::Issued { until, .. } => Some(until),
            _ => None,
        });
        let arrival = self
            .arrivals
            .last()
            .map(|a| self.cfg.start + secs(a.submit as u64));
        jobs.chain(resv).chain(boots).chain(arrival).min()
    }

    /// Process everything due at or before now.
    fn settle(&mut self) {
        let now = self.now;
        while let Some(&(end, id)) = self.ends.first() {
            if end > now {
                break;
            }
            self.remove_job(id);
        }
        self.submit_due();
        let expired: Vec<String> = self
            .reservations
            .values()
            .filter(|r| r.end <= now)
            .map(|r| r.name.clone())
            .collect();
        for name in expired {
            self.remove_resv(&name);
        }
        for i in 0..self.nodes.len() {
            let busy = self.busy(&self.nodes[i].name);
            let n = &mut self.nodes[i];
            match n.boot.clone() {
                Boot::Requested if !busy => self.issue_reboot(i),
                Boot::Issued { until, fail: false } if until <= now => {
                    // As Slurm 24.11 does, the reboot's reason stays after the node returns.
                    n.boot = Boot::Up;
                    n.boot_time = until;
                    n.drain = false;
                }
                Boot::Issued { until, fail: true } if until + secs(60) <= now => {
                    let never = n.fate == RebootFate::Never;
                    n.boot = Boot::Dead {
                        not_responding: never,
                    };
                    n.reason = Some(if never {
                        "Not responding".into()
                    } else {
                        "reboot timed out".into()
                    });
                }
                _ => {}
            }
        }
        self.fill();
    }

    fn advance_to(&mut self, t: Timestamp) {
        if self.cfg.coarse {
            self.accrue(t);
            self.now = self.now.max(t);
            self.settle();
            return;
        }
        while let Some(e) = self.next_event().filter(|e| *e <= t) {
            self.accrue(e);
            self.now = self.now.max(e);
            self.settle();
        }
        self.accrue(t);
        self.now = self.now.max(t);
        self.settle();
    }

    fn snapshot(&mut self) -> PartitionSnapshot {
        self.stats.commands += 4;
        let all: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let nodes = self
            .nodes
            .iter()
            .map(|n| Node {
                name: n.name.clone(),
                state: self.state(n),
                reason: n.reason.clone(),
                boot_time: Some(n.boot_time),
                partitions: vec![self.cfg.partition.clone(), SCAVENGER.into()],
                reservation: self.active_resv(&n.name).map(|r| r.name.clone()),
                features: vec![],
            })
            .collect();
        let partition = |name: &str, mode: &str, tier| Partition {
            name: name.into(),
            nodes: all.clone(),
            preempt_mode: mode.into(),
            priority_tier: tier,
            state: "UP".into(),
        };
        PartitionSnapshot {
            nodes,
            jobs: self.jobs.values().map(|j| j.job.clone()).collect(),
            reservations: self.reservations.values().cloned().collect(),
            partitions: vec![
                partition(&self.cfg.partition, "OFF", 10),
                partition(SCAVENGER, "CANCEL", 1),
            ],
            topology: self.cfg.topology.clone(),
        }
    }

    /// Slurm's refusal of a reservation over running jobs it may not end.
    fn check_busy(&self, node: &str, start: Timestamp, flags: &[String]) -> Result<(), SlurmError> {
        if flags.iter().any(|f| f == "IGNORE_JOBS") {
            return Ok(());
        }
        let busy = self.by_node.get(node).into_iter().flatten().any(|id| {
            let j = &self.jobs[id];
            !j.job.preemptable && j.job.end_time.is_none_or(|e| e > start)
        });
        if busy {
            return Err(SlurmError::Slurm {
                status: 502,
                code: "SlurmFailed".into(),
                message: "Error creating the reservation: Requested nodes are busy".into(),
            });
        }
        Ok(())
    }

    fn execute(&mut self, action: &Action) -> Result<Done, SlurmError> {
        let now = self.now;
        let owned = |name: &str| {
            if name.starts_with(OWNED_PREFIX) {
                Ok(())
            } else {
                Err(refused(
                    403,
                    "NotOwned",
                    format!("reservation {name} is not ours"),
                ))
            }
        };
        let out = match action {
            Action::CreateReservation {
                name,
                node,
                with,
                start,
                duration,
                users,
                accounts,
                flags,
            } => {
                owned(name)?;
                let nodes: Vec<String> = std::iter::once(node).chain(with).cloned().collect();
                for n in &nodes {
                    self.node(n)?;
                }
                if self.reservations.contains_key(name) {
                    return Err(refused(
                        409,
                        "AlreadyExists",
                        format!("reservation {name} exists"),
                    ));
                }
                let start = start.filter(|t| *t > now).unwrap_or(now);
                for n in &nodes {
                    self.check_busy(n, start, flags)?;
                }
                let end = start + (*duration).max(SignedDuration::from_secs(60));
                self.add_resv(Reservation {
                    name: name.clone(),
                    start,
                    end,
                    nodes,
                    flags: flags.clone(),
                    users: users.clone(),
                    accounts: accounts.clone(),
                    partition: None,
                });
                done(true, format!("Reservation created: {name}"))
            }
            Action::UpdateReservationStart { name, start } => {
                owned(name)?;
                let r = self.reservations.get(name).ok_or_else(|| {
                    refused(404, "NotFound", format!("reservation {name} not found"))
                })?;
                let start = start.filter(|t| *t > now).unwrap_or(now);
                let len = r.end.duration_since(r.start);
                let (nodes, flags) = (r.nodes.clone(), r.flags.clone());
                for n in &nodes {
                    self.check_busy(n, start, &flags)?;
                }
                let r = self.reservations.get_mut(name).expect("checked");
                r.start = start;
                r.end = start + len;
                done(true, format!("Reservation updated: {name}"))
            }
            Action::DeleteReservation { name } => {
                owned(name)?;
                let gone = self.remove_resv(name).is_some();
                done(gone, format!("reservation {name} deleted"))
            }
            Action::CancelJob { job_id, .. } => match self.jobs.get(job_id) {
                None => done(false, format!("job {job_id} already gone")),
                Some(j) if !j.job.preemptable => {
                    return Err(refused(
                        409,
                        "NotPreemptable",
                        format!("job {job_id} is not preemptable"),
                    ));
                }
                Some(_) => {
                    self.remove_job(*job_id);
                    self.stats.preemptable_cancelled += 1;
                    done(true, format!("job {job_id} cancelled"))
                }
            },
            Action::Drain { node, reason } => self.drain(node, reason)?,
            Action::Resume { node } => self.resume(node)?,
            Action::ScheduleOciEvent { event_id, .. } => {
                return Err(SlurmError::Protocol(format!(
                    "scheduling OCI event {event_id} is not a Slurm action"
                )));
            }
            Action::ClearReason { node } => {
                let i = self.node(node)?;
                let n = &mut self.nodes[i];
                let ours = n
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with(REASON_PREFIX));
                if !ours || n.drain || n.boot != Boot::Up {
                    return Err(refused(
                        409,
                        "NotOurs",
                        format!("{node}'s reason {:?} is not ours to clear", n.reason),
                    ));
                }
                n.reason = Some(crate::agent::commands::DONE_REASON.into());
                done(true, format!("reason of {node} retired"))
            }
            Action::Reboot { node, reason } => {
                let i = self.node(node)?;
                let busy = self.busy(node);
                let n = &mut self.nodes[i];
                if matches!(n.boot, Boot::Requested | Boot::Issued { .. }) {
                    return Ok(done(false, format!("{node} is already rebooting")));
                }
                n.reason = Some(reason.clone());
                if busy {
                    n.boot = Boot::Requested;
                    n.drain = true;
                } else {
                    self.issue_reboot(i);
                }
                done(true, format!("reboot of {node} requested"))
            }
        };
        self.fill();
        Ok(out)
    }

    fn drain(&mut self, node: &str, reason: &str) -> Result<Done, SlurmError> {
        let i = self.node(node)?;
        let n = &mut self.nodes[i];
        n.drain = true;
        n.reason = Some(if reason.starts_with(REASON_PREFIX) {
            reason.to_string()
        } else {
            format!("{REASON_PREFIX}{reason}")
        });
        Ok(done(true, format!("{node} drained")))
    }

    fn resume(&mut self, node: &str) -> Result<Done, SlurmError> {
        let i = self.node(node)?;
        let n = &mut self.nodes[i];
        if !n.drain {
            return Ok(done(false, format!("{node} is not drained")));
        }
        if !n
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with(REASON_PREFIX))
        {
            return Err(refused(
                409,
                "ForeignDrain",
                format!("{node} was drained by someone else: {:?}", n.reason),
            ));
        }
        n.drain = false;
        n.reason = None;
        // Slurm takes a DOWN node whose slurmd responds back into service on resume.
        if n.boot
            == (Boot::Dead {
                not_responding: false,
            })
        {
            n.boot = Boot::Up;
        }
        self.fill();
        Ok(done(true, format!("{node} resumed")))
    }
}

impl SimCluster {
    /// A partition as `cfg` describes it, at `cfg.start`.
    pub fn new(mut cfg: SimConfig) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let now = cfg.start;
        let trace = cfg.trace.take();
        if let Some(t) = &trace {
            cfg.nodes = t.len();
            cfg.down_at_start = t.iter().filter(|n| n.down).count();
        }
        let mut arrivals = cfg.arrivals.clone().unwrap_or_default();
        arrivals.sort_by_key(|a| std::cmp::Reverse((a.submit, a.id)));
        let mut nodes = Vec::with_capacity(cfg.nodes);
        for i in 0..cfg.nodes {
            let r = rng.unit();
            let mut fate = if r < cfg.reboot_never_pct {
                RebootFate::Never
            } else if r < cfg.reboot_never_pct + cfg.reboot_fail_once_pct {
                RebootFate::FailOnce
            } else {
                RebootFate::Ok
            };
            let mut ops = i + cfg.down_at_start >= cfg.nodes;
            let mut reboot_secs = None;
            if let Some(t) = &trace {
                fate = t[i].fate;
                ops = t[i].down;
                reboot_secs = Some(t[i].reboot_secs);
            }
            if cfg.arrivals.is_some() {
                reboot_secs = Some(rng.range(cfg.reboot_secs.0, cfg.reboot_secs.1));
            }
            nodes.push(SimNode {
                name: format!("node{:03}", i + 1),
                boot_time: now - secs(rng.range(86_400, 60 * 86_400)),
                drain: ops,
                reason: ops.then(|| "ops: bad DIMM".to_string()),
                boot: Boot::Up,
                fate,
                reboot_secs,
                ops,
            });
        }
        let mut inner = Inner {
            cfg,
            rng,
            now,
            nodes,
            jobs: BTreeMap::new(),
            by_node: HashMap::new(),
            ends: BTreeSet::new(),
            reservations: BTreeMap::new(),
            resv_by_node: HashMap::new(),
            next_job: 1000,
            stats: SimStats::default(),
            arrivals,
            queue: BTreeMap::new(),
            started: HashMap::new(),
            meter: false,
            batch: false,
            failing_checks: BTreeMap::new(),
            checks_run: vec![],
        };
        for i in 0..inner.nodes.len() {
            let name = inner.nodes[i].name.clone();
            if let Some(t) = &trace {
                let (Some(end), false) = (t[i].job_end, t[i].down) else {
                    continue;
                };
                let end = end.max(SignedDuration::from_secs(1));
                inner.next_job += 1;
                let id = inner.next_job;
                let start = now - SignedDuration::from_hours(1);
                let partition = if t[i].preemptable {
                    SCAVENGER.to_string()
                } else {
                    inner.cfg.partition.clone()
                };
                inner.add_job(SimJob {
                    job: Job {
                        id,
                        name: format!("job{id}"),
                        user: "user".into(),
                        partition,
                        state: "RUNNING".into(),
                        nodes: vec![name],
                        qos: None,
                        start_time: Some(start),
                        end_time: Some(now + end),
                        time_limit_secs: Some((end.as_secs() + 3600) as u64),
                        preemptable: t[i].preemptable,
                    },
                    true_end: now + end,
                });
                continue;
            }
            if inner.cfg.arrivals.is_some()
                || inner.nodes[i].drain
                || inner.rng.unit() < inner.cfg.idle_pct
            {
                continue;
            }
            let job = inner.draw_job(&name, 3600);
            inner.add_job(job);
        }
        Self(Arc::new(Mutex::new(inner)))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The virtual now.
    pub fn now(&self) -> Timestamp {
        self.lock().now
    }

    /// Move the clock forward by `d`, processing events in time order.
    pub fn advance(&self, d: SignedDuration) {
        let mut g = self.lock();
        let t = g.now + d;
        g.advance_to(t);
    }

    /// Move the clock forward to `t` (never back).
    pub fn advance_to(&self, t: Timestamp) {
        self.lock().advance_to(t);
    }

    /// Record how many nodes are down, drained, rebooting or in an active MAINT
    /// reservation; call after every advance.
    pub fn sample(&self) -> usize {
        let mut g = self.lock();
        let count = g
            .nodes
            .iter()
            .filter(|n| {
                let s = g.state(n);
                !s.in_service() || s.is_drained() || s.in_maintenance()
            })
            .count();
        g.stats.samples += 1;
        g.stats.max_unavailable_or_down = g.stats.max_unavailable_or_down.max(count);
        count
    }

    /// [`SimCluster::sample`], and integrate over the `dt` since the last sample the
    /// nodes out (and out while up and idle), nodes drained by ops at the start excepted;
    /// counts a sample with more than `limit` nodes out.
    pub fn sample_for(&self, dt: SignedDuration, limit: usize) -> usize {
        let count = self.sample();
        let mut g = self.lock();
        let (mut out, mut idle) = (0usize, 0usize);
        for n in &g.nodes {
            let s = g.state(n);
            if n.ops || !(!s.in_service() || s.is_drained() || s.in_maintenance()) {
                continue;
            }
            out += 1;
            if n.boot == Boot::Up && !g.busy(&n.name) {
                idle += 1;
            }
        }
        let dt = dt.as_secs_f64();
        g.stats.out_node_secs += out as f64 * dt;
        g.stats.idle_out_node_secs += idle as f64 * dt;
        if count > limit {
            g.stats.over_limit_samples += 1;
        }
        count
    }

    /// When the last of the jobs running now really ends (the end Slurm does not know
    /// for jobs without a time limit); now when none runs.
    pub fn busy_until(&self) -> Timestamp {
        let g = self.lock();
        g.ends.last().map_or(g.now, |(t, _)| *t).max(g.now)
    }

    /// Start or stop integrating [`SimStats::maint_lost_node_secs`].
    pub fn meter(&self, on: bool) {
        self.lock().meter = on;
    }

    /// When each trace job started so far, by job id.
    pub fn start_times(&self) -> HashMap<u64, Timestamp> {
        self.lock().started.clone()
    }

    /// Trace jobs submitted and waiting, and those not submitted yet.
    pub fn backlog(&self) -> (usize, usize) {
        let g = self.lock();
        (g.queue.len(), g.arrivals.len())
    }

    /// Per node: when the last job running on it now really ends (now when idle), and
    /// how long its reboots take (0 where drawn per reboot).
    pub fn releases(&self) -> Vec<(Timestamp, u64)> {
        let g = self.lock();
        g.nodes
            .iter()
            .map(|n| {
                let end = g
                    .by_node
                    .get(&n.name)
                    .into_iter()
                    .flatten()
                    .map(|id| g.jobs[id].true_end)
                    .fold(g.now, Timestamp::max);
                (end, n.reboot_secs.unwrap_or(0))
            })
            .collect()
    }

    /// Nodes running a job now.
    pub fn busy_nodes(&self) -> usize {
        let g = self.lock();
        g.nodes.iter().filter(|n| g.busy(&n.name)).count()
    }

    /// Whether maintenance has left no trace: every node up and undrained, no
    /// reservation left, no reboot pending.
    pub fn maintenance_clear(&self) -> bool {
        let g = self.lock();
        g.reservations.is_empty() && g.nodes.iter().all(|n| n.boot == Boot::Up && !n.drain)
    }

    /// Counters so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    /// The partition now, counting the agent's 4 commands (synchronous
    /// [`SlurmClient::snapshot`]).
    pub fn take_snapshot(&self) -> PartitionSnapshot {
        self.lock().snapshot()
    }

    /// Execute `actions` now as one Slurm command: nothing is scheduled between them.
    pub fn exec_all(&self, actions: &[Action]) -> Vec<Result<Done, SlurmError>> {
        let mut g = self.lock();
        g.batch = true;
        let out = actions.iter().map(|a| g.execute(a)).collect();
        g.batch = false;
        g.fill();
        out
    }

    /// Execute an action now (synchronous [`SlurmClient::execute`]).
    pub fn exec(&self, action: &Action) -> Result<Done, SlurmError> {
        self.lock().execute(action)
    }

    /// Whether `node` is back in service (synchronous [`SlurmClient::health_check`]).
    pub fn healthy(&self, node: &str) -> Option<HealthResult> {
        let g = self.lock();
        g.node(node).ok().map(|i| {
            let s = g.state(&g.nodes[i]);
            HealthResult {
                healthy: s.in_service(),
                message: format!("{node} is {s}"),
                checks: vec![],
            }
        })
    }

    /// Make the named check `check` fail on `node`, printing `output` (a simulated site
    /// check: it passes everywhere else once the node is in service).
    pub fn fail_check(&self, node: &str, check: &str, output: &str) {
        self.lock()
            .failing_checks
            .insert((node.into(), check.into()), output.into());
    }

    /// Let the named check `check` pass on `node` again (the fault was fixed).
    pub fn fix_check(&self, node: &str, check: &str) {
        self.lock()
            .failing_checks
            .remove(&(node.to_string(), check.to_string()));
    }

    /// The named checks run so far: (node, check, fault).
    pub fn checks_run(&self) -> Vec<(String, String, Option<String>)> {
        self.lock().checks_run.clone()
    }

    /// Run a simulated named check (synchronous [`SlurmClient::run_check`]): it fails
    /// where [`SimCluster::fail_check`] said, and on a node not in service.
    pub fn check(
        &self,
        node: &str,
        check: &str,
        fault: Option<&str>,
    ) -> Result<crate::agent::api::CheckReport, SlurmError> {
        let mut g = self.lock();
        let i = g.node(node)?;
        let state = g.state(&g.nodes[i]);
        g.checks_run
            .push((node.into(), check.into(), fault.map(String::from)));
        let failing = g.failing_checks.get(&(node.into(), check.into())).cloned();
        let (passed, message, output) = match failing {
            _ if !state.in_service() => (false, "exit code 1".into(), format!("{node} is {state}")),
            Some(output) => (false, "exit code 1".into(), output),
            None => (true, "passed".into(), format!("{check}: ok")),
        };
        Ok(crate::agent::api::CheckReport {
            name: check.into(),
            passed,
            attempts: 1,
            duration_ms: 0,
            message,
            output,
        })
    }

    /// The partition now, without counting commands.
    pub fn peek(&self) -> PartitionSnapshot {
        let mut g = self.lock();
        let snap = g.snapshot();
        g.stats.commands -= 4;
        snap
    }
}

impl SlurmClient for SimCluster {
    /// As the agent: a partition Slurm does not have is refused (404 `NotFound`).
    fn snapshot<'a>(
        &'a self,
        partition: &'a str,
    ) -> BoxFuture<'a, Result<PartitionSnapshot, SlurmError>> {
        let mut g = self.lock();
        let snap = if partition == g.cfg.partition || partition == SCAVENGER {
            Ok(g.snapshot())
        } else {
            Err(refused(
                404,
                "NotFound",
                format!("partition {partition} not found"),
            ))
        };
        Box::pin(async move { snap })
    }

    fn execute<'a>(&'a self, action: &'a Action) -> BoxFuture<'a, Result<Done, SlurmError>> {
        let out = self.lock().execute(action);
        Box::pin(async move { out })
    }

    fn health_check<'a>(
        &'a self,
        node: &'a str,
    ) -> BoxFuture<'a, Result<HealthResult, SlurmError>> {
        let g = self.lock();
        let out = g.node(node).map(|i| {
            let s = g.state(&g.nodes[i]);
            HealthResult {
                healthy: s.in_service(),
                message: format!("{node} is {s}"),
                checks: vec![],
            }
        });
        Box::pin(async move { out })
    }

    fn run_check<'a>(
        &'a self,
        node: &'a str,
        check: &'a str,
        fault: Option<&'a str>,
    ) -> BoxFuture<'a, Result<crate::agent::api::CheckReport, SlurmError>> {
        let out = self.check(node, check, fault);
        Box::pin(async move { out })
    }

    fn drain<'a>(
        &'a self,
        node: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<Done, SlurmError>> {
        let out = self.lock().drain(node, reason);
        Box::pin(async move { out })
    }

    fn resume<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Done, SlurmError>> {
        let out = self.lock().resume(node);
        Box::pin(async move { out })
    }
}

#[cfg(test)]
mod tests;
