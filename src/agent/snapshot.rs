//! The partition snapshot: nodes, jobs and reservations are read fresh every time;
//! partitions come from a short-lived cache ([`PartitionCache`]) when it can vouch for them.
//!
//! The partition query gives two things: which nodes a partition has, and which partitions
//! preempt (what makes a job preemptable). Membership is taken from the fresh node listing
//! (every node names its partitions). Cached partitions are refreshed before answering when:
//!
//! - the requested partition, or a partition some node names, is unknown to the cache;
//! - the cached member list of the requested partition disagrees with the nodes;
//! - an active job on the partition would be preemptable only because the cache says its
//!   partition preempts. A PreemptMode may have been set to OFF since; no Slurm output read
//!   fresh shows it, so a cached PreemptMode is never trusted to make a job preemptable.
//!
//! A stale cache can therefore only leave out partitions that began to preempt since it was
//! filled (their jobs look non-preemptable: the safe side) until it expires.
//!
//! The topology (`scontrol show topology`: switches, blocks) is cached beside the partitions
//! for the same TTL: Slurm changes it only on a reconfigure, so a pass runs that command at
//! most once per TTL. Without a topology Slurm prints nothing and the snapshot has none.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;

use super::api::PartitionSnapshot;
use super::commands::{self, Argv};
use super::runner::SlurmError;
use super::server::ApiError;
use crate::slurm::parse;
use crate::slurm::topology::Topology;
use crate::slurm::{Job, Node, Partition};

/// Default time `scontrol show partition` output is reused.
pub const DEFAULT_PARTITION_TTL: Duration = Duration::from_secs(300);

/// A value as last read, reused for `ttl` (never with a zero `ttl`).
#[derive(Debug)]
struct Ttl<T> {
    ttl: Duration,
    entry: Mutex<Option<(Instant, Arc<T>)>>,
}

impl<T> Ttl<T> {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entry: Mutex::default(),
        }
    }

    fn get(&self) -> Option<Arc<T>> {
        let entry = self.entry.lock().expect("cache lock");
        entry
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, value: T) -> Arc<T> {
        let value = Arc::new(value);
        if !self.ttl.is_zero() {
            *self.entry.lock().expect("cache lock") = Some((Instant::now(), value.clone()));
        }
        value
    }
}

/// Partitions and the topology as last read, each reused for `ttl` (never with a zero
/// `ttl`).
#[derive(Debug)]
pub struct PartitionCache {
    partitions: Ttl<Vec<Partition>>,
    topology: Ttl<Topology>,
}

impl PartitionCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            partitions: Ttl::new(ttl),
            topology: Ttl::new(ttl),
        }
    }

    /// The cached partitions, if read less than `ttl` ago.
    pub fn get(&self) -> Option<Arc<Vec<Partition>>> {
        self.partitions.get()
    }

    /// Remember partitions just read.
    pub fn put(&self, partitions: Vec<Partition>) -> Arc<Vec<Partition>> {
        self.partitions.put(partitions)
    }

    /// The cached topology, if read less than `ttl` ago.
    pub fn topology(&self) -> Option<Arc<Topology>> {
        self.topology.get()
    }

    /// Remember a topology just read.
    pub fn put_topology(&self, topology: Topology) -> Arc<Topology> {
        self.topology.put(topology)
    }
}

/// What to know besides Slurm's output to build a snapshot.
pub struct Inputs<'a> {
    pub partition: &'a str,
    /// The zone Slurm's local times are in.
    pub tz: &'a TimeZone,
    /// Jobs with these QOS are preemptable whatever their partition.
    pub preemptable_qos: &'a [String],
}

/// Why cached partitions cannot answer a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Doubt {
    UnknownPartition(String),
    Membership(String),
    /// This job would be preemptable only by its partition's cached PreemptMode.
    Preemption(u64),
}

impl std::fmt::Display for Doubt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownPartition(p) => write!(f, "partition {p} is not in the cache"),
            Self::Membership(p) => write!(f, "nodes of partition {p} changed"),
            Self::Preemption(id) => write!(
                f,
                "job {id} is preemptable only by its partition's cached PreemptMode"
            ),
        }
    }
}

fn qos_preemptable(job: &Job, preemptable_qos: &[String]) -> bool {
    job.qos
        .as_ref()
        .is_some_and(|q| preemptable_qos.contains(q))
}

/// Nodes of `partition`: those naming it, and those its record lists.
fn members<'a>(
    partition: &str,
    nodes: &'a [Node],
    record: Option<&Partition>,
) -> BTreeSet<&'a str> {
    let listed: BTreeSet<&str> = record
        .map(|p| p.nodes.iter().map(String::as_str).collect())
        .unwrap_or_default();
    nodes
        .iter()
        .filter(|n| listed.contains(n.name.as_str()) || n.partitions.iter().any(|p| p == partition))
        .map(|n| n.name.as_str())
        .collect()
}

fn active_on<'j>(jobs: &'j [Job], members: &BTreeSet<&str>) -> impl Iterator<Item = &'j Job> {
    jobs.iter()
        .filter(move |j| j.is_active() && j.nodes.iter().any(|n| members.contains(n.as_str())))
}

/// Why `partitions`, read some time ago, cannot be used with these fresh nodes and jobs;
/// `None` when they can.
pub fn doubt(
    inputs: &Inputs,
    nodes: &[Node],
    jobs: &[Job],
    partitions: &[Partition],
) -> Option<Doubt> {
    let known: BTreeSet<&str> = partitions.iter().map(|p| p.name.as_str()).collect();
    let unknown = std::iter::once(inputs.partition)
        .chain(
            nodes
                .iter()
                .flat_map(|n| n.partitions.iter().map(String::as_str)),
        )
        .find(|p| !known.contains(p));
    if let Some(p) = unknown {
        return Some(Doubt::UnknownPartition(p.to_string()));
    }
    let record = partitions.iter().find(|p| p.name == inputs.partition);
    let naming: BTreeSet<&str> = nodes
        .iter()
        .filter(|n| n.partitions.iter().any(|p| p == inputs.partition))
        .map(|n| n.name.as_str())
        .collect();
    // A record may list names that are no nodes (`Nodes=ALL`): only nodes are compared.
    let exists: BTreeSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let listed: BTreeSet<&str> = record
        .map(|p| {
            p.nodes
                .iter()
                .map(String::as_str)
                .filter(|n| exists.contains(n))
                .collect()
        })
        .unwrap_or_default();
    if !listed.is_empty() && listed != naming {
        return Some(Doubt::Membership(inputs.partition.to_string()));
    }
    let preempting = parse::preempting_partitions(partitions);
    let by_partition = |j: &Job| {
        j.partition
            .split(',')
            .any(|p| preempting.iter().any(|x| x == p))
    };
    active_on(jobs, &naming)
        .find(|j| by_partition(j) && !qos_preemptable(j, inputs.preemptable_qos))
        .map(|j| Doubt::Preemption(j.id))
}

/// The snapshot of `inputs.partition` from parsed output: its nodes, the active jobs on
/// them with their preemptable flag, every reservation and partition, the topology when
/// Slurm has one (all of it: domains span partitions).
pub fn assemble(
    inputs: &Inputs,
    nodes: Vec<Node>,
    jobs: Vec<Job>,
    reservations: Vec<crate::slurm::Reservation>,
    partitions: &[Partition],
    topology: &Topology,
) -> Result<PartitionSnapshot, ApiError> {
    let Some(record) = partitions.iter().find(|p| p.name == inputs.partition) else {
        return Err(ApiError::NotFound(format!(
            "partition {} not found",
            inputs.partition
        )));
    };
    let members: BTreeSet<String> = members(inputs.partition, &nodes, Some(record))
        .into_iter()
        .map(String::from)
        .collect();
    let nodes: Vec<Node> = nodes
        .into_iter()
        .filter(|n| members.contains(&n.name))
        .collect();
    let preempting = parse::preempting_partitions(partitions);
    let jobs = jobs
        .into_iter()
        .filter(|j| j.is_active() && j.nodes.iter().any(|n| members.contains(n)))
        .map(|mut j| {
            j.preemptable = j
                .partition
                .split(',')
                .any(|p| preempting.iter().any(|x| x == p))
                || qos_preemptable(&j, inputs.preemptable_qos);
            j
        })
        .collect();
    Ok(PartitionSnapshot {
        nodes,
        jobs,
        reservations,
        partitions: partitions.to_vec(),
        topology: (*topology != Topology::default()).then(|| topology.clone()),
    })
}

/// `scontrol show topology`'s stdout; Slurm's "no topology" message, should a version exit
/// non-zero with it, is no topology.
async fn read_topology<F, Fut>(run: &F) -> Result<String, SlurmError>
where
    F: Fn(Argv) -> Fut,
    Fut: Future<Output = Result<String, SlurmError>>,
{
    match run(commands::show_topology()).await {
        Err(SlurmError::Failed { message, .. })
            if message.contains("No topology information available") =>
        {
            Ok(String::new())
        }
        other => other,
    }
}

/// Take a snapshot, running commands with `run`: three commands while `cache` can vouch
/// for its partitions and topology, one more for each it cannot (see the module
/// documentation).
pub async fn take<F, Fut>(
    run: F,
    cache: &PartitionCache,
    inputs: &Inputs<'_>,
) -> Result<PartitionSnapshot, ApiError>
where
    F: Fn(Argv) -> Fut,
    Fut: Future<Output = Result<String, SlurmError>>,
{
    let cached_topology = cache.topology();
    let topology_text = async {
        match &cached_topology {
            Some(_) => Ok(None),
            None => read_topology(&run).await.map(Some),
        }
    };
    let (nodes, jobs, reservations, partitions, topology_text) = match cache.get() {
        Some(cached) => {
            let (n, j, r, t) = tokio::try_join!(
                run(commands::show_nodes()),
                run(commands::squeue_jobs()),
                run(commands::show_reservations()),
                topology_text,
            )?;
            (n, j, r, Ok(cached), t)
        }
        None => {
            let (n, j, r, p, t) = tokio::try_join!(
                run(commands::show_nodes()),
                run(commands::squeue_jobs()),
                run(commands::show_reservations()),
                run(commands::show_partitions()),
                topology_text,
            )?;
            (n, j, r, Err(p), t)
        }
    };
    let topology = match topology_text {
        Some(text) => cache.put_topology(parse::scontrol_topology(&text)?),
        None => cached_topology.unwrap_or_default(),
    };
    let nodes = parse::scontrol_nodes(&nodes, inputs.tz)?;
    let jobs = parse::squeue_narrow(&jobs, inputs.tz, &[])?;
    let reservations = parse::scontrol_reservations(&reservations, inputs.tz)?;
    // Ok: cached partitions; Err: partitions just read.
    let partitions = match partitions {
        Err(text) => cache.put(parse::scontrol_partitions(&text)?),
        Ok(cached) => match doubt(inputs, &nodes, &jobs, &cached) {
            None => cached,
            Some(why) => {
                tracing::info!(partition = inputs.partition, %why, "reading partitions again");
                let text = run(commands::show_partitions()).await?;
                cache.put(parse::scontrol_partitions(&text)?)
            }
        },
    };
    assemble(inputs, nodes, jobs, reservations, &partitions, &topology)
}

#[cfg(test)]
mod tests;
