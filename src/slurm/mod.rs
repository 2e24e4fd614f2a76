//! The Slurm domain: hostlists, node states, and parsers for what Slurm 22.05 prints.

pub mod client;
pub mod hostlist;
pub mod parse;
pub mod state;
pub mod topology;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use state::{NodeState, StateClass};

/// One Slurm node as seen by the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Slurm NodeName (not the hostname).
    pub name: String,
    pub state: NodeState,
    /// Reason set with the last drain/down, if any.
    pub reason: Option<String>,
    /// When slurmd last reported a boot.
    pub boot_time: Option<Timestamp>,
    /// Partitions the node belongs to.
    pub partitions: Vec<String>,
    /// Reservation the node is currently in, if Slurm reports one.
    pub reservation: Option<String>,
    /// Features Slurm lists for the node (`AvailableFeatures`), e.g. `rack-a1`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// A running (or pending) Slurm job, reduced to what maintenance planning needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub name: String,
    pub user: String,
    pub partition: String,
    /// Slurm job state, upper case (RUNNING, PENDING, COMPLETING, ...).
    pub state: String,
    /// Nodes the job runs on, expanded.
    pub nodes: Vec<String>,
    pub qos: Option<String>,
    pub start_time: Option<Timestamp>,
    /// Expected end: EndTime, or start + time limit. `None` when the limit is UNLIMITED.
    pub end_time: Option<Timestamp>,
    /// Time limit in seconds; `None` for UNLIMITED.
    pub time_limit_secs: Option<u64>,
    /// Slurm would let a higher-priority job preempt this one
    /// (`PreemptEligibleTime` present, or the partition's PreemptMode is not OFF).
    pub preemptable: bool,
}

impl Job {
    /// Whether the job holds its nodes now (running, suspended or completing).
    pub fn is_active(&self) -> bool {
        matches!(
            self.state.as_str(),
            "RUNNING" | "SUSPENDED" | "COMPLETING" | "CONFIGURING" | "STOPPED" | "SIGNALING"
        )
    }
}

/// A Slurm advanced reservation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub name: String,
    pub start: Timestamp,
    pub end: Timestamp,
    /// Nodes in the reservation, expanded.
    pub nodes: Vec<String>,
    /// Flags as Slurm prints them, upper case (MAINT, IGNORE_JOBS, SPEC_NODES, ...).
    pub flags: Vec<String>,
    pub users: Vec<String>,
    pub accounts: Vec<String>,
    pub partition: Option<String>,
}

impl Reservation {
    /// A MAINT reservation.
    pub fn is_maint(&self) -> bool {
        self.flags.iter().any(|f| f == "MAINT")
    }

    /// Active at `now` (start ≤ now < end).
    pub fn is_active_at(&self, now: Timestamp) -> bool {
        self.start <= now && now < self.end
    }
}

/// A Slurm partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub name: String,
    /// Nodes in the partition, expanded.
    pub nodes: Vec<String>,
    /// PreemptMode as Slurm prints it (OFF, CANCEL, REQUEUE, SUSPEND, ...).
    pub preempt_mode: String,
    pub priority_tier: u32,
    pub state: String,
}

impl Partition {
    /// Jobs in this partition can be preempted.
    pub fn preempts(&self) -> bool {
        !self.preempt_mode.eq_ignore_ascii_case("OFF") && !self.preempt_mode.is_empty()
    }
}
