//! The agent's wire types (JSON, camelCase), shared with the controller-side client.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::slurm::{Job, Node, Partition, Reservation};

/// `GET /v1/partitions/{p}/snapshot`: one partition as Slurm sees it now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    /// Nodes of the partition.
    pub nodes: Vec<Node>,
    /// Active jobs on those nodes (any partition), with their preemptable flag.
    pub jobs: Vec<Job>,
    /// All reservations.
    pub reservations: Vec<Reservation>,
    /// All partitions (nodes are often shared between them).
    pub partitions: Vec<Partition>,
    /// The network topology (switches, blocks), when Slurm has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<crate::slurm::topology::Topology>,
}

/// When a reservation starts: `"now"` or an RFC 3339 instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StartTime {
    #[default]
    Now,
    At(Timestamp),
}

impl StartTime {
    /// `At(t)` with `t` not after `now` is `Now`: Slurm refuses starts in the past.
    pub fn not_before(self, now: Timestamp) -> Self {
        match self {
            Self::At(t) if t > now => self,
            _ => Self::Now,
        }
    }
}

impl From<Option<Timestamp>> for StartTime {
    fn from(t: Option<Timestamp>) -> Self {
        t.map_or(Self::Now, Self::At)
    }
}

impl fmt::Display for StartTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Now => f.write_str("now"),
            Self::At(t) => write!(f, "{t}"),
        }
    }
}

impl FromStr for StartTime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("now") {
            return Ok(Self::Now);
        }
        s.parse()
            .map(Self::At)
            .map_err(|e| format!("start {s:?} is neither \"now\" nor an RFC 3339 time: {e}"))
    }
}

impl TryFrom<String> for StartTime {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<StartTime> for String {
    fn from(s: StartTime) -> Self {
        s.to_string()
    }
}

/// `POST /v1/reservations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateReservation {
    /// Must start with the agent's owned prefix (`slurm-maint-…`).
    pub name: String,
    /// Node names or hostlist expressions.
    pub nodes: Vec<String>,
    #[serde(default)]
    pub start: StartTime,
    pub duration_minutes: u64,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Slurm flags, e.g. `MAINT`, `IGNORE_JOBS`.
    #[serde(default)]
    pub flags: Vec<String>,
}

/// `PATCH /v1/reservations/{name}`: fields left out are not changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateReservation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<u64>,
    /// Node names or hostlist expressions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
}

/// `POST /v1/nodes/{node}/drain`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainRequest {
    /// Gets the agent's reason prefix (`slurm-maint: `) if it lacks it.
    pub reason: String,
}

/// State a node takes after a reboot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum NextState {
    /// Back in service (drain cleared).
    #[default]
    #[serde(alias = "resume", alias = "Resume")]
    Resume,
    /// Left DOWN.
    #[serde(alias = "down", alias = "Down")]
    Down,
}

impl fmt::Display for NextState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Resume => "RESUME",
            Self::Down => "DOWN",
        })
    }
}

/// `POST /v1/nodes/{node}/reboot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RebootRequest {
    pub reason: String,
    #[serde(default)]
    pub next_state: NextState,
}

/// `POST /v1/nodes/{node}/checks/{name}`: the fault the check is for, if any
/// (`{fault}` in its argv).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// What one named check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub name: String,
    pub passed: bool,
    /// Attempts made (1 + the retries used).
    pub attempts: u32,
    /// All attempts and pauses together.
    pub duration_ms: u64,
    /// `passed`, or why the last attempt failed.
    pub message: String,
    /// The end of the last attempt's output (at most [`super::checks::MAX_OUTPUT_TAIL`] bytes).
    pub output: String,
}

/// A successful write, or a write found unnecessary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// Whether Slurm was changed.
    pub changed: bool,
    /// Slurm's output, or why nothing was done.
    pub message: String,
}

/// Every error response: a message for people and a code for programs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    /// `Unauthorized`, `InvalidName`, `InvalidValue`, `BadRequest`, `NotOwned`,
    /// `NotFound`, `NotPreemptable`, `ForeignDrain`, `AlreadyExists`, `SlurmFailed`,
    /// `SlurmTimeout`, `SlurmUnavailable`, `SlurmOutput`, `SlurmctldDown`,
    /// `PayloadTooLarge`, `RequestTimeout`, `UnknownCheck`.
    pub code: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_wire_form() {
        let t: Timestamp = "2026-12-01T06:00:00Z".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&StartTime::At(t)).unwrap(),
            r#""2026-12-01T06:00:00Z""#
        );
        assert_eq!(serde_json::to_string(&StartTime::Now).unwrap(), r#""now""#);
        let parsed: StartTime = serde_json::from_str(r#""2026-12-01T07:00:00+01:00""#).unwrap();
        assert_eq!(parsed, StartTime::At(t));
        assert!(serde_json::from_str::<StartTime>(r#""tomorrow""#).is_err());
        assert_eq!(StartTime::At(t).not_before(t), StartTime::Now);
    }

    #[test]
    fn requests_default_sensibly() {
        let c: CreateReservation = serde_json::from_str(
            r#"{"name":"slurm-maint-n1","nodes":["n1"],"durationMinutes":60}"#,
        )
        .unwrap();
        assert_eq!((c.start, c.users.len()), (StartTime::Now, 0));
        let r: RebootRequest = serde_json::from_str(r#"{"reason":"x"}"#).unwrap();
        assert_eq!(r.next_state, NextState::Resume);
        let r: RebootRequest =
            serde_json::from_str(r#"{"reason":"x","nextState":"DOWN"}"#).unwrap();
        assert_eq!(r.next_state, NextState::Down);
    }
}
