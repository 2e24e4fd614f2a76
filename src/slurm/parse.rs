//! Parsers for what Slurm 22.05 prints.
//!
//! - `scontrol show node|job|reservation|partition -o`: one record per line, `Key=Value`
//!   pairs; values may hold spaces (`Reason=disk failure on sda [root@…]`); `(null)`,
//!   `None`, `N/A`, `Unknown` mean "no value"; times are local, without a zone.
//! - `sinfo --json` (nodes only in 22.05) and `squeue --json`: epochs in UTC.
//! - `squeue -o` with [`SQUEUE_FORMAT`]: the agent's narrow job listing; local times.
//!
//! Local times are interpreted in the time zone Slurm runs in, passed by the caller
//! (the seed tool parsed them as UTC and was off by the host's offset).

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde_json::Value;

use super::topology::{Block, Switch, Topology};
use super::{Job, Node, NodeState, Partition, Reservation, hostlist};

/// Slurm output that cannot be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid JSON from {what}: {message}")]
    Json { what: &'static str, message: String },
    #[error("{what}: record {index} lacks {field}")]
    Missing {
        what: &'static str,
        index: usize,
        field: &'static str,
    },
    #[error("{what}: bad {field} {value:?}: {message}")]
    Value {
        what: &'static str,
        field: &'static str,
        value: String,
        message: String,
    },
}

/// Values Slurm prints for "nothing".
pub fn is_null(v: &str) -> bool {
    matches!(
        v,
        "" | "(null)" | "None" | "N/A" | "n/a" | "Unknown" | "(none)"
    )
}

/// One `-o` record: keys in order, values with the spaces they had.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record(pub Vec<(String, String)>);

impl Record {
    /// The value of `key`, `None` if absent or a null word.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !is_null(v))
    }

    /// Whether `key` appears at all (even with a null value).
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
}

fn starts_pair(token: &str) -> Option<(&str, &str)> {
    let (k, v) = token.split_once('=')?;
    let mut chars = k.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '/' | '.')))
    .then_some((k, v))
}

/// Keys Slurm 24.11+ prints after a node's `Reason=`.
const AFTER_NODE_REASON: &[&str] = &["ReservationName"];

/// Split one `-o` line into pairs. A space-separated token that is not `Key=…` continues
/// the previous value (`Reason=disk failure on sda`). A node's `Reason=` is free text
/// (`=` included): it runs until scontrol's ` [user@time]` stamp ends it, or, for a reason
/// without a stamp, until a key that follows it (24.11+ print `ReservationName=` after
/// it; 22.05 printed `Reason=` last). A job's `Reason=` is a single word.
pub fn parse_record(line: &str) -> Record {
    let node = line.starts_with("NodeName=");
    let mut pairs: Vec<(String, String)> = vec![];
    let mut in_reason = false;
    for token in line.split(' ').filter(|t| !t.is_empty()) {
        let pair = starts_pair(token);
        let ends_reason = pair.is_some_and(|(k, _)| AFTER_NODE_REASON.contains(&k));
        match pair {
            Some((k, v)) if !in_reason || ends_reason => {
                in_reason = node && k == "Reason";
                pairs.push((k.to_string(), v.to_string()));
            }
            _ => {
                if let Some((_, v)) = pairs.last_mut() {
                    v.push(' ');
                    v.push_str(token);
                }
            }
        }
        if in_reason && is_reason_stamp(token) {
            in_reason = false;
        }
    }
    Record(pairs)
}

/// scontrol's `[user@2026-12-03T07:19:19]` after a node's reason.
fn is_reason_stamp(token: &str) -> bool {
    token
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.rsplit_once('@'))
        .is_some_and(|(user, time)| {
            !user.is_empty() && time.len() >= 19 && time.as_bytes()[10] == b'T'
        })
}

/// Records of `scontrol show … -o` output (one per non-empty line; "No … in the system"
/// means none).
pub fn parse_records(output: &str) -> Vec<Record> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("No ") && l.contains('='))
        .map(parse_record)
        .collect()
}

/// A Slurm local time (`2026-11-22T06:10:00`), or an epoch, in `tz`.
pub fn parse_time(value: &str, tz: &TimeZone) -> Result<Option<Timestamp>, String> {
    if is_null(value) {
        return Ok(None);
    }
    if let Ok(secs) = value.parse::<i64>() {
        return Timestamp::from_second(secs)
            .map(Some)
            .map_err(|e| e.to_string());
    }
    if let Ok(ts) = value.parse::<Timestamp>() {
        return Ok(Some(ts));
    }
    let dt: DateTime = value.parse().map_err(|e: jiff::Error| e.to_string())?;
    dt.to_zoned(tz.clone())
        .map(|z| Some(z.timestamp()))
        .map_err(|e| e.to_string())
}

/// A Slurm duration: `[days-]hours:minutes:seconds`, `minutes:seconds`, `minutes`;
/// `UNLIMITED`/`INFINITE`, and squeue's `NOT_SET`/`INVALID` (no usable limit) → `None`.
pub fn parse_time_limit(value: &str) -> Result<Option<u64>, String> {
    let v = value.trim();
    if matches!(
        v,
        "UNLIMITED" | "INFINITE" | "Partition_Limit" | "NONE" | "NOT_SET" | "INVALID"
    ) || is_null(v)
    {
        return Ok(None);
    }
    let bad = || format!("unrecognised time limit {v:?}");
    let (days, rest) = match v.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().map_err(|_| bad())?, r),
        None => (0, v),
    };
    let parts: Vec<u64> = rest
        .split(':')
        .map(|p| p.parse::<u64>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let (h, m, s) = match (days > 0 || v.contains('-'), parts.as_slice()) {
        (true, [h]) => (*h, 0, 0),
        (true, [h, m]) => (*h, *m, 0),
        (_, [h, m, s]) => (*h, *m, *s),
        (false, [m, s]) => (0, *m, *s),
        (false, [m]) => (0, *m, 0),
        _ => return Err(bad()),
    };
    // Checked: a limit beyond u64 seconds is no limit Slurm printed, not one to wrap.
    [(days, 86_400), (h, 3600), (m, 60), (s, 1)]
        .into_iter()
        .try_fold(0u64, |total, (n, unit)| {
            total.checked_add(n.checked_mul(unit)?)
        })
        .map(Some)
        .ok_or_else(|| format!("time limit {v:?} is out of range"))
}

fn value_err(
    what: &'static str,
    field: &'static str,
    value: &str,
    message: impl Into<String>,
) -> ParseError {
    ParseError::Value {
        what,
        field,
        value: value.to_string(),
        message: message.into(),
    }
}

fn expand(
    what: &'static str,
    field: &'static str,
    value: Option<&str>,
) -> Result<Vec<String>, ParseError> {
    match value {
        None => Ok(vec![]),
        Some(v) => hostlist::expand(v).map_err(|e| value_err(what, field, v, e.to_string())),
    }
}

fn time_field(
    what: &'static str,
    field: &'static str,
    r: &Record,
    tz: &TimeZone,
) -> Result<Option<Timestamp>, ParseError> {
    match r.get(field) {
        None => Ok(None),
        Some(v) => parse_time(v, tz).map_err(|m| value_err(what, field, v, m)),
    }
}

fn list(v: Option<&str>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .filter(|x| !x.is_empty() && !is_null(x))
            .map(String::from)
            .collect()
    })
    .unwrap_or_default()
}

/// scontrol appends ` [user@time]` to a node's Reason; `sinfo --json` keeps those apart.
/// The reason proper is what ownership checks and the operator's status compare.
pub fn strip_reason_stamp(reason: &str) -> String {
    if let Some(open) = reason.rfind(" [")
        && reason.ends_with(']')
        && reason[open..].contains('@')
    {
        return reason[..open].to_string();
    }
    reason.to_string()
}

/// `scontrol show node -o`.
pub fn scontrol_nodes(output: &str, tz: &TimeZone) -> Result<Vec<Node>, ParseError> {
    const W: &str = "scontrol show node";
    parse_records(output)
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let name = r.get("NodeName").ok_or(ParseError::Missing {
                what: W,
                index: i,
                field: "NodeName",
            })?;
            let state_s = r.get("State").ok_or(ParseError::Missing {
                what: W,
                index: i,
                field: "State",
            })?;
            let state = NodeState::parse(state_s)
                .map_err(|e| value_err(W, "State", state_s, e.to_string()))?;
            Ok(Node {
                name: name.to_string(),
                state,
                reason: r.get("Reason").map(strip_reason_stamp),
                boot_time: time_field(W, "BootTime", r, tz)?,
                partitions: list(r.get("Partitions")),
                reservation: r.get("ReservationName").map(String::from),
                features: list(r.get("AvailableFeatures")),
            })
        })
        .collect()
}

/// `scontrol show job -o`. A job is preemptable when `PreemptEligibleTime` is present or
/// its partition preempts (`preempting` lists those partitions).
pub fn scontrol_jobs(
    output: &str,
    tz: &TimeZone,
    preempting: &[String],
) -> Result<Vec<Job>, ParseError> {
    const W: &str = "scontrol show job";
    parse_records(output)
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let missing = |field| ParseError::Missing {
                what: W,
                index: i,
                field,
            };
            let id_s = r.get("JobId").ok_or(missing("JobId"))?;
            let id = id_s
                .parse()
                .map_err(|_| value_err(W, "JobId", id_s, "not a number"))?;
            let partition = r.get("Partition").unwrap_or_default().to_string();
            let limit = match r.get("TimeLimit") {
                None => None,
                Some(v) => parse_time_limit(v).map_err(|m| value_err(W, "TimeLimit", v, m))?,
            };
            let start = time_field(W, "StartTime", r, tz)?;
            // Slurm gives unlimited jobs an EndTime a year out: that is not an end.
            let end = match limit {
                None => None,
                Some(secs) => time_field(W, "EndTime", r, tz)?.or_else(|| {
                    start.and_then(|s| {
                        s.checked_add(jiff::SignedDuration::from_secs(secs as i64))
                            .ok()
                    })
                }),
            };
            let preemptable = r.get("PreemptEligibleTime").is_some()
                || partition
                    .split(',')
                    .any(|p| preempting.iter().any(|x| x == p));
            Ok(Job {
                id,
                name: r.get("JobName").unwrap_or_default().to_string(),
                user: r
                    .get("UserId")
                    .map(|u| u.split('(').next().unwrap_or(u).to_string())
                    .unwrap_or_default(),
                partition,
                state: r.get("JobState").unwrap_or("UNKNOWN").to_string(),
                nodes: expand(W, "NodeList", r.get("NodeList"))?,
                qos: r.get("QOS").map(String::from),
                start_time: start,
                end_time: end,
                time_limit_secs: limit,
                preemptable,
            })
        })
        .collect()
}

/// `scontrol show reservation -o`.
pub fn scontrol_reservations(output: &str, tz: &TimeZone) -> Result<Vec<Reservation>, ParseError> {
    const W: &str = "scontrol show reservation";
    parse_records(output)
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let missing = |field| ParseError::Missing {
                what: W,
                index: i,
                field,
            };
            Ok(Reservation {
                name: r
                    .get("ReservationName")
                    .ok_or(missing("ReservationName"))?
                    .to_string(),
                start: time_field(W, "StartTime", r, tz)?.ok_or(missing("StartTime"))?,
                end: time_field(W, "EndTime", r, tz)?.ok_or(missing("EndTime"))?,
                nodes: expand(W, "Nodes", r.get("Nodes"))?,
                flags: list(r.get("Flags"))
                    .into_iter()
                    .map(|f| f.to_ascii_uppercase())
                    .collect(),
                users: list(r.get("Users")),
                accounts: list(r.get("Accounts")),
                partition: r.get("PartitionName").map(String::from),
            })
        })
        .collect()
}

/// `scontrol show partition -o`.
pub fn scontrol_partitions(output: &str) -> Result<Vec<Partition>, ParseError> {
    const W: &str = "scontrol show partition";
    parse_records(output)
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let missing = |field| ParseError::Missing {
                what: W,
                index: i,
                field,
            };
            let tier_s = r.get("PriorityTier").unwrap_or("1");
            Ok(Partition {
                name: r
                    .get("PartitionName")
                    .ok_or(missing("PartitionName"))?
                    .to_string(),
                nodes: expand(W, "Nodes", r.get("Nodes"))?,
                preempt_mode: r.get("PreemptMode").unwrap_or("OFF").to_string(),
                priority_tier: tier_s
                    .parse()
                    .map_err(|_| value_err(W, "PriorityTier", tier_s, "not a number"))?,
                state: r.get("State").unwrap_or("UP").to_string(),
            })
        })
        .collect()
}

/// `scontrol show topology`: one `SwitchName=` line per switch (`topology/tree`), one
/// `BlockName=` line per block (`topology/block`). Without a topology Slurm prints nothing
/// on stdout (22.05 says `No topology information available` on stderr, exit 0; 24.11+ say
/// nothing): an empty [`Topology`]. Lines of other kinds are left out.
pub fn scontrol_topology(output: &str) -> Result<Topology, ParseError> {
    const W: &str = "scontrol show topology";
    let mut topology = Topology::default();
    for (i, r) in parse_records(output).iter().enumerate() {
        let missing = |field| ParseError::Missing {
            what: W,
            index: i,
            field,
        };
        if r.has("SwitchName") {
            let name = r.get("SwitchName").ok_or(missing("SwitchName"))?;
            let level = r.get("Level").ok_or(missing("Level"))?;
            topology.switches.push(Switch {
                name: name.to_string(),
                level: level
                    .parse()
                    .map_err(|_| value_err(W, "Level", level, "not a number"))?,
                nodes: expand(W, "Nodes", r.get("Nodes"))?,
                switches: expand(W, "Switches", r.get("Switches"))?,
            });
        } else if r.has("BlockName") {
            let name = r.get("BlockName").ok_or(missing("BlockName"))?;
            topology.blocks.push(Block {
                name: name.to_string(),
                nodes: expand(W, "Nodes", r.get("Nodes"))?,
            });
        }
    }
    Ok(topology)
}

fn json(what: &'static str, output: &str) -> Result<Value, ParseError> {
    serde_json::from_str(output).map_err(|e| ParseError::Json {
        what,
        message: e.to_string(),
    })
}

/// The top-level array `key` of a JSON document from `what`.
fn json_array(
    what: &'static str,
    output: &str,
    key: &'static str,
) -> Result<Vec<Value>, ParseError> {
    match json(what, output)?.get_mut(key).map(Value::take) {
        Some(Value::Array(a)) => Ok(a),
        _ => Err(ParseError::Missing {
            what,
            index: 0,
            field: key,
        }),
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !is_null(s))
}

/// An epoch field; Slurm 22.05 prints numbers, later versions `{"set":…,"number":…}`.
fn epoch_of(v: &Value, key: &str) -> Option<Timestamp> {
    let n = match v.get(key)? {
        Value::Number(n) => n.as_i64()?,
        Value::Object(o) if o.get("set").and_then(Value::as_bool) != Some(false) => {
            o.get("number")?.as_i64()?
        }
        _ => return None,
    };
    (n > 0).then(|| Timestamp::from_second(n).ok()).flatten()
}

fn u64_of(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::Object(o) if o.get("set").and_then(Value::as_bool) != Some(false) => {
            if o.get("infinite").and_then(Value::as_bool) == Some(true) {
                return None;
            }
            o.get("number")?.as_u64()
        }
        _ => None,
    }
}

/// Slurm's "infinite" and "not set" 32-bit sentinels.
const NO_VAL: u64 = 0xffff_fffe;
const INFINITE: u64 = 0xffff_ffff;

/// `sinfo --json` (22.05: nodes only).
pub fn sinfo_json(output: &str) -> Result<Vec<Node>, ParseError> {
    const W: &str = "sinfo --json";
    if json(W, output)?.get("sinfo").is_some() {
        return sinfo_json_grouped(output);
    }
    let nodes = json_array(W, output, "nodes")?;
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let name = str_of(n, "name").ok_or(ParseError::Missing {
                what: W,
                index: i,
                field: "name",
            })?;
            let base = match n.get("state") {
                Some(Value::String(s)) => s.clone(),
                // Later versions print the state as a list of words.
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("+"),
                _ => {
                    return Err(ParseError::Missing {
                        what: W,
                        index: i,
                        field: "state",
                    });
                }
            };
            let flags: Vec<&str> = n
                .get("state_flags")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let state = NodeState::from_parts(&base, &flags)
                .map_err(|e| value_err(W, "state", &base, e.to_string()))?;
            Ok(Node {
                name: name.to_string(),
                state,
                reason: str_of(n, "reason").map(String::from),
                boot_time: epoch_of(n, "boot_time"),
                partitions: n
                    .get("partitions")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
                reservation: str_of(n, "reservation").map(String::from),
                features: list(str_of(n, "features")),
            })
        })
        .collect()
}

/// `sinfo --json` of 24.11 and later: groups of nodes per partition and state (as plain
/// `sinfo` prints them), each node given once, with its first group's state and reason.
/// A group has no boot time, and its reason is the first member's; only a group of one
/// node vouches for that node's reason. Features likewise: 24.11 and 26.05 group nodes of
/// different features together and print the first member's (seen in
/// `tests/fixtures/slurm-24.11/topology-tree/sinfo.json`).
fn sinfo_json_grouped(output: &str) -> Result<Vec<Node>, ParseError> {
    const W: &str = "sinfo --json";
    let groups = json_array(W, output, "sinfo")?;
    let mut nodes: Vec<Node> = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let words: Vec<&str> = g["node"]["state"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let joined = words.join("+");
        let state =
            NodeState::parse(&joined).map_err(|e| value_err(W, "state", &joined, e.to_string()))?;
        let names: Vec<&str> = g["nodes"]["nodes"]
            .as_array()
            .ok_or(ParseError::Missing {
                what: W,
                index: i,
                field: "nodes.nodes",
            })?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let reason = (names.len() == 1)
            .then(|| g["reason"]["description"].as_str())
            .flatten()
            .filter(|r| !r.is_empty())
            .map(String::from);
        let features = if names.len() == 1 {
            list(g["features"]["total"].as_str())
        } else {
            vec![]
        };
        let partition = g["partition"]["name"].as_str();
        for name in names {
            match nodes.iter_mut().find(|n| n.name == name) {
                Some(n) => {
                    n.partitions.extend(partition.map(String::from));
                    if n.reason.is_none() {
                        n.reason.clone_from(&reason);
                    }
                    if n.features.is_empty() {
                        n.features.clone_from(&features);
                    }
                }
                None => nodes.push(Node {
                    name: name.to_string(),
                    state: state.clone(),
                    reason: reason.clone(),
                    boot_time: None,
                    partitions: partition.map(String::from).into_iter().collect(),
                    reservation: None,
                    features: features.clone(),
                }),
            }
        }
    }
    Ok(nodes)
}

/// `squeue --json`. 22.05 ignores `-p`/`-t` with `--json` and includes finished jobs;
/// callers filter with [`Job::is_active`] and by node. `preempting` lists partitions
/// whose PreemptMode is not OFF.
pub fn squeue_json(output: &str, preempting: &[String]) -> Result<Vec<Job>, ParseError> {
    const W: &str = "squeue --json";
    let jobs = json_array(W, output, "jobs")?;
    jobs.iter()
        .enumerate()
        .map(|(i, j)| {
            let id = u64_of(j, "job_id").ok_or(ParseError::Missing {
                what: W,
                index: i,
                field: "job_id",
            })?;
            let partition = str_of(j, "partition").unwrap_or_default().to_string();
            // time_limit is in minutes; INFINITE/NO_VAL mean no limit.
            let limit = u64_of(j, "time_limit")
                .filter(|m| *m != INFINITE && *m != NO_VAL)
                .map(|m| m * 60);
            let start = epoch_of(j, "start_time");
            let end = limit.and(epoch_of(j, "end_time"));
            let state = match j.get("job_state") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(a)) => a
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or("UNKNOWN")
                    .to_string(),
                _ => "UNKNOWN".into(),
            };
            let nodes = expand(W, "nodes", str_of(j, "nodes"))?;
            let preemptable = epoch_of(j, "preemptable_time").is_some()
                || partition
                    .split(',')
                    .any(|p| preempting.iter().any(|x| x == p));
            Ok(Job {
                id,
                name: str_of(j, "name").unwrap_or_default().to_string(),
                user: str_of(j, "user_name").unwrap_or_default().to_string(),
                partition,
                state,
                nodes,
                qos: str_of(j, "qos").map(String::from),
                start_time: start,
                end_time: end,
                time_limit_secs: limit,
                preemptable,
            })
        })
        .collect()
}

/// `squeue -o` format of the agent's job listing: job id, partition, state, node list,
/// start, end, time limit, QOS, user, name. Fields are separated by US (0x1f), a byte no
/// Slurm name, hostlist or time contains; the name, free text that may hold anything but
/// that pair, comes last, and each record ends with RS (0x1e) before squeue's newline, so a
/// newline in a name does not end a record.
pub const SQUEUE_FORMAT: &str =
    "%A\u{1f}%P\u{1f}%T\u{1f}%N\u{1f}%S\u{1f}%e\u{1f}%l\u{1f}%q\u{1f}%u\u{1f}%j\u{1e}";

const SQUEUE_FIELDS: usize = 10;
const RECORD_END: &str = "\u{1e}\n";

/// A local time as squeue prints it, memoised: jobs started together share their times.
struct Times<'a> {
    tz: &'a TimeZone,
    seen: HashMap<&'a str, Timestamp>,
}

impl<'a> Times<'a> {
    fn parse(&mut self, field: &'static str, v: &'a str) -> Result<Option<Timestamp>, ParseError> {
        // squeue prints NONE as the end of a job without a limit.
        if is_null(v) || v == "NONE" {
            return Ok(None);
        }
        if let Some(t) = self.seen.get(v) {
            return Ok(Some(*t));
        }
        let t = match v.parse::<DateTime>() {
            Ok(dt) => self
                .tz
                .to_ambiguous_timestamp(dt)
                .compatible()
                .map_err(|e| e.to_string()),
            Err(_) => parse_time(v, self.tz).and_then(|t| t.ok_or_else(|| "no time".into())),
        }
        .map_err(|m| value_err(SQUEUE, field, v, m))?;
        self.seen.insert(v, t);
        Ok(Some(t))
    }
}

const SQUEUE: &str = "squeue";

/// `squeue -h -o` with [`SQUEUE_FORMAT`], times local to `tz`. Same jobs and fields as
/// [`squeue_json`] on 22.05: `%A` is the unique id of each array task and het component;
/// no end without a time limit; `preempting` lists partitions whose PreemptMode is not
/// OFF. Callers filter with [`Job::is_active`] and by node.
pub fn squeue_narrow(
    output: &str,
    tz: &TimeZone,
    preempting: &[String],
) -> Result<Vec<Job>, ParseError> {
    const W: &str = SQUEUE;
    let mut times = Times {
        tz,
        seen: HashMap::new(),
    };
    let mut rest = output;
    let mut jobs = vec![];
    while !rest.trim().is_empty() {
        let index = jobs.len();
        let (record, tail) = match rest.find(RECORD_END) {
            Some(at) => (&rest[..at], &rest[at + RECORD_END.len()..]),
            None => match rest.trim_end_matches('\n').strip_suffix('\u{1e}') {
                Some(last) => (last, ""),
                None => {
                    return Err(value_err(
                        W,
                        "record",
                        rest.lines().next().unwrap_or_default(),
                        "not in the agent's format (no record end)",
                    ));
                }
            },
        };
        rest = tail;
        let f: Vec<&str> = record.splitn(SQUEUE_FIELDS, '\u{1f}').collect();
        let [
            id_s,
            partition,
            state,
            nodes,
            start,
            end,
            limit,
            qos,
            user,
            name,
        ] = f[..]
        else {
            return Err(ParseError::Missing {
                what: W,
                index,
                field: "name (too few fields)",
            });
        };
        let id = id_s
            .parse()
            .map_err(|_| value_err(W, "job id", id_s, "not a number"))?;
        let limit = parse_time_limit(limit).map_err(|m| value_err(W, "time limit", limit, m))?;
        let start = times.parse("start time", start)?;
        let end = match limit {
            Some(_) => times.parse("end time", end)?,
            None => None,
        };
        let nodes = if is_null(nodes) {
            vec![]
        } else {
            hostlist::expand(nodes).map_err(|e| value_err(W, "node list", nodes, e.to_string()))?
        };
        let preemptable = partition
            .split(',')
            .any(|p| preempting.iter().any(|x| x == p));
        let text = |v: &str| {
            if is_null(v) {
                String::new()
            } else {
                v.to_string()
            }
        };
        jobs.push(Job {
            id,
            name: text(name),
            user: text(user),
            partition: text(partition),
            state: state.to_string(),
            nodes,
            qos: (!is_null(qos)).then(|| qos.to_string()),
            start_time: start,
            end_time: end,
            time_limit_secs: limit,
            preemptable,
        });
    }
    Ok(jobs)
}

/// Partitions among `partitions` whose jobs can be preempted.
pub fn preempting_partitions(partitions: &[Partition]) -> Vec<String> {
    partitions
        .iter()
        .filter(|p| p.preempts())
        .map(|p| p.name.clone())
        .collect()
}

/// Index records by a key (e.g. node name), for tests and diagnostics.
pub fn index_by<'a>(records: &'a [Record], key: &str) -> BTreeMap<&'a str, &'a Record> {
    records
        .iter()
        .filter_map(|r| r.get(key).map(|k| (k, r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    #[test]
    fn records_keep_spaces_in_free_text() {
        let r = parse_record(
            "NodeName=node3 State=IDLE+DRAIN Partitions=batch,scavenger BootTime=2026-11-22T06:00:00 Reason=disk failure on sda [root@2026-11-22T06:10:00]",
        );
        assert_eq!(
            r.get("Reason"),
            Some("disk failure on sda [root@2026-11-22T06:10:00]")
        );
        assert_eq!(r.get("State"), Some("IDLE+DRAIN"));
        let r = parse_record("NodeName=n1 State=IDLE Reason=x=1 y [root@2026-01-01T00:00:00]");
        assert_eq!(r.get("Reason"), Some("x=1 y [root@2026-01-01T00:00:00]"));
        // 24.11 and 26.05 print ReservationName= after the reason (captured on 24.11.5).
        let r = parse_record(
            "NodeName=node6 State=DOWN+DRAIN+MAINT+RESERVED Partitions=batch Reason=firmware update : reboot issued : reboot timed out [root@2026-12-03T07:19:19] ReservationName=maint_node6",
        );
        assert_eq!(
            r.get("Reason"),
            Some("firmware update : reboot issued : reboot timed out [root@2026-12-03T07:19:19]")
        );
        assert_eq!(r.get("ReservationName"), Some("maint_node6"));
        // A reason without a stamp still ends at a key that follows it.
        let r = parse_record("NodeName=n1 State=IDLE Reason=a b=c ReservationName=r1");
        assert_eq!(r.get("Reason"), Some("a b=c"));
        assert_eq!(r.get("ReservationName"), Some("r1"));
        // A stamp-like text inside the reason only ends it when it is a whole stamp.
        let r =
            parse_record("NodeName=n1 Reason=see [ticket] x=1 [root@2026-01-01T00:00:00] Extra=y");
        assert_eq!(
            r.get("Reason"),
            Some("see [ticket] x=1 [root@2026-01-01T00:00:00]")
        );
        assert_eq!(r.get("Extra"), Some("y"));
        let r = parse_record(
            "JobId=1 JobState=RUNNING Reason=None Dependency=(null) AllocNode:Sid=localhost:99 Comment=(null) NodeList=n1",
        );
        assert_eq!(r.get("AllocNode:Sid"), Some("localhost:99"));
        assert_eq!(r.get("Comment"), None);
        assert!(r.has("Comment"));
        assert_eq!(r.get("Reason"), None);
        assert_eq!(r.get("NodeList"), Some("n1"));
    }

    #[test]
    fn null_words() {
        for v in ["(null)", "None", "N/A", "Unknown", "", "(none)"] {
            assert!(is_null(v), "{v}");
        }
        assert!(!is_null("node1"));
    }

    #[test]
    fn local_times_use_the_given_zone() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let t = parse_time("2026-01-15T10:30:00", &tz).unwrap().unwrap();
        assert_eq!(t.to_string(), "2026-01-15T09:30:00Z");
        assert_eq!(
            parse_time("2026-01-15T10:30:00", &utc())
                .unwrap()
                .unwrap()
                .to_string(),
            "2026-01-15T10:30:00Z"
        );
        assert_eq!(
            parse_time("1767225600", &tz).unwrap().unwrap().to_string(),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(parse_time("Unknown", &tz).unwrap(), None);
        assert!(parse_time("yesterday", &tz).is_err());
    }

    #[test]
    fn time_limits() {
        for (s, want) in [
            ("UNLIMITED", None),
            ("INFINITE", None),
            ("NOT_SET", None),
            ("INVALID", None),
            ("01:00:00", Some(3600)),
            ("1-00:00:00", Some(86_400)),
            ("2-03:04:05", Some(2 * 86_400 + 3 * 3600 + 4 * 60 + 5)),
            ("1-02", Some(86_400 + 7200)),
            ("05:00", Some(300)),
            ("30", Some(1800)),
        ] {
            assert_eq!(parse_time_limit(s).unwrap(), want, "{s}");
        }
        assert!(parse_time_limit("soon").is_err());
    }

    /// Found by fuzzing (fuzz/ squeue_narrow): a huge limit overflowed the multiplication
    /// (a panic with overflow checks, a wrapped limit without).
    #[test]
    fn time_limits_out_of_range_are_errors() {
        for s in [
            "7622222222222222222250",
            "762222222222222222:00",
            "213503982334602-00:00:00",
            "1-5124095576030431:00:00",
        ] {
            let e = parse_time_limit(s).unwrap_err();
            assert!(
                e.contains("out of range") || e.contains("unrecognised"),
                "{s}: {e}"
            );
        }
        let max = format!("{}", u64::MAX / 60);
        assert_eq!(parse_time_limit(&max).unwrap(), Some(u64::MAX / 60 * 60));
        let narrow = "10\u{1f}batch\u{1f}RUNNING\u{1f}node1\u{1f}2026-12-03T09:00:00\u{1f}2026-12-03T10:00:00\u{1f}762222222222222222:00\u{1f}(null)\u{1f}root\u{1f}x\u{1e}\n";
        assert!(squeue_narrow(narrow, &TimeZone::UTC, &[]).is_err());
    }

    #[test]
    fn nodes_from_scontrol() {
        let out = "NodeName=node1 Arch=x86_64 State=IDLE Partitions=batch,scavenger BootTime=2026-11-22T06:00:00 SlurmdStartTime=2026-11-22T06:00:01 Reason=(null)\n\
NodeName=node2 State=DOWN+DRAIN+REBOOT_ISSUED Partitions=batch BootTime=None Reason=maint : reboot issued [root@2026-11-22T06:10:00]\n";
        let nodes = scontrol_nodes(out, &utc()).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].partitions, ["batch", "scavenger"]);
        assert_eq!(
            nodes[0].boot_time.unwrap().to_string(),
            "2026-11-22T06:00:00Z"
        );
        assert_eq!(nodes[0].reason, None);
        assert!(nodes[1].state.is_rebooting());
        assert_eq!(nodes[1].boot_time, None);
        assert_eq!(nodes[1].reason.as_deref(), Some("maint : reboot issued"));
        assert_eq!(strip_reason_stamp("a [b] c"), "a [b] c");
        assert_eq!(strip_reason_stamp("x [root@2026-01-01T00:00:00]"), "x");
    }

    #[test]
    fn jobs_from_scontrol() {
        let out = "JobId=7 JobName=wrap UserId=alice(1000) JobState=RUNNING TimeLimit=UNLIMITED StartTime=2026-11-22T06:00:00 EndTime=2027-11-22T06:00:00 Partition=batch NodeList=node[1-2] QOS=normal\n\
JobId=8 JobName=low UserId=bob(1001) JobState=RUNNING TimeLimit=00:10:00 StartTime=2026-11-22T06:00:00 EndTime=2026-11-22T06:10:00 PreemptEligibleTime=2026-11-22T06:00:00 Partition=scavenger NodeList=node3\n\
JobId=9 JobName=pend UserId=bob(1001) JobState=PENDING TimeLimit=01:00:00 StartTime=Unknown EndTime=Unknown Partition=batch NodeList=(null)\n";
        let jobs = scontrol_jobs(out, &utc(), &[]).unwrap();
        assert_eq!(jobs[0].end_time, None, "unlimited jobs have no end");
        assert_eq!(jobs[0].nodes, ["node1", "node2"]);
        assert_eq!(jobs[0].user, "alice");
        assert!(!jobs[0].preemptable);
        assert!(jobs[1].preemptable);
        assert_eq!(
            jobs[1].end_time.unwrap().to_string(),
            "2026-11-22T06:10:00Z"
        );
        assert!(!jobs[2].is_active() && jobs[2].nodes.is_empty());
        let jobs = scontrol_jobs(out, &utc(), &["batch".into()]).unwrap();
        assert!(
            jobs[0].preemptable,
            "partition PreemptMode makes it preemptable"
        );
    }

    #[test]
    fn reservations_and_partitions() {
        let r = scontrol_reservations(
            "ReservationName=slurm-maint-node1-c1 StartTime=2026-11-22T06:00:00 EndTime=2026-11-22T12:00:00 Duration=06:00:00 Nodes=node1 NodeCnt=1 CoreCnt=2 Features=(null) PartitionName=(null) Flags=MAINT,SPEC_NODES TRES=cpu=2 Users=root Groups=(null) Accounts=(null) Licenses=(null) State=ACTIVE BurstBuffer=(null) Watts=n/a MaxStartDelay=(null)\n",
            &utc(),
        )
        .unwrap();
        assert_eq!(r[0].flags, ["MAINT", "SPEC_NODES"]);
        assert_eq!(r[0].users, ["root"]);
        assert!(r[0].accounts.is_empty());
        assert!(r[0].is_maint());
        assert!(
            scontrol_reservations("No reservations in the system\n", &utc())
                .unwrap()
                .is_empty()
        );
        let p = scontrol_partitions(
            "PartitionName=batch AllowGroups=ALL Default=YES Nodes=node[1-6] PriorityTier=10 PreemptMode=OFF State=UP\nPartitionName=scavenger Nodes=node[1-6] PriorityTier=1 PreemptMode=CANCEL State=UP\n",
        )
        .unwrap();
        assert_eq!(preempting_partitions(&p), ["scavenger"]);
        assert_eq!(p[0].nodes.len(), 6);
    }

    const NARROW_06: &str =
        include_str!("../../tests/fixtures/slurm-22.05/06-squeue-narrow/squeue-narrow.txt");
    const JSON_06: &str =
        include_str!("../../tests/fixtures/slurm-22.05/06-squeue-narrow/squeue.json");
    const PARTITIONS_06: &str = include_str!(
        "../../tests/fixtures/slurm-22.05/06-squeue-narrow/scontrol-show-partition.txt"
    );

    /// Real 22.05 output: the narrow listing says exactly what `squeue --json` said at the
    /// same moment (the host runs in UTC), for every job and field.
    #[test]
    fn narrow_squeue_matches_json_on_real_output() {
        let preempting = preempting_partitions(&scontrol_partitions(PARTITIONS_06).unwrap());
        assert_eq!(preempting, ["scavenger"]);
        let mut narrow = squeue_narrow(NARROW_06, &utc(), &preempting).unwrap();
        let mut json = squeue_json(JSON_06, &preempting).unwrap();
        narrow.sort_by_key(|j| j.id);
        json.sort_by_key(|j| j.id);
        assert_eq!(narrow.len(), 13);
        assert_eq!(narrow, json);

        let job = |id: u64| narrow.iter().find(|j| j.id == id).unwrap();
        assert_eq!(job(8).name, "odd\u{1f}name|with\nnewline");
        assert_eq!(job(4).name, "scav | with spaces");
        assert!(job(4).preemptable && !job(1).preemptable);
        let unlimited = job(2);
        assert_eq!(unlimited.state, "SUSPENDED");
        assert!(unlimited.is_active());
        assert_eq!(
            (unlimited.time_limit_secs, unlimited.end_time),
            (None, None)
        );
        assert_eq!(job(3).nodes, ["node3", "node4"]);
        assert_eq!(job(3).time_limit_secs, Some(2 * 86_400));
        assert_eq!(
            job(3).end_time.unwrap().to_string(),
            "2026-11-28T16:44:30Z",
            "local time read in the given zone"
        );
        // Het components (6+0, 6+1) and array tasks (5_1, 5_2) are jobs of their own.
        assert_eq!(
            (job(6).nodes.clone(), job(7).nodes.clone()),
            (vec!["node6".to_string()], vec!["node4".to_string()])
        );
        assert_eq!(job(11).name, "arr");
        // The pending rest of the array: no nodes, no start (N/A).
        let pending = job(5);
        assert_eq!(pending.state, "PENDING");
        assert!(pending.nodes.is_empty() && pending.start_time.is_none());
        assert!(!pending.is_active() && !job(10).is_active() && !job(13).is_active());
        assert_eq!(job(1).qos, None, "(null) QOS");

        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let shifted = squeue_narrow(NARROW_06, &berlin, &preempting).unwrap();
        assert_eq!(
            shifted
                .iter()
                .find(|j| j.id == 3)
                .unwrap()
                .end_time
                .unwrap()
                .to_string(),
            "2026-11-28T15:44:30Z"
        );
    }

    fn rec(fields: &[&str]) -> String {
        format!("{}\u{1e}\n", fields.join("\u{1f}"))
    }

    #[test]
    fn narrow_squeue_nasty_records() {
        let out = [
            rec(&[
                "41",
                "batch",
                "RUNNING",
                "n[1-3,7]",
                "2026-11-22T06:00:00",
                "2026-11-22T07:00:00",
                "1:00:00",
                "normal",
                "alice",
                "a\u{1f}b|c d\nnext line",
            ]),
            rec(&[
                "42",
                "batch,debug",
                "PENDING",
                "",
                "N/A",
                "N/A",
                "10:00",
                "(null)",
                "bob",
                "",
            ]),
            rec(&[
                "43",
                "scavenger",
                "RUNNING",
                "n2",
                "2026-11-22T06:00:00",
                "NONE",
                "UNLIMITED",
                "spot",
                "bob",
                "long",
            ]),
            rec(&[
                "44",
                "batch",
                "RUNNING",
                "n4",
                "2026-11-22T06:00:00",
                "2026-11-22T06:30:00",
                "NOT_SET",
                "normal",
                "bob",
                "x",
            ]),
            rec(&[
                "45",
                "batch",
                "RUNNING",
                "n5",
                "2026-11-22T06:00:00",
                "Unknown",
                "INVALID",
                "normal",
                "bob",
                "x",
            ]),
            rec(&[
                "46",
                "batch",
                "COMPLETING",
                "n6",
                "2026-11-22T06:00:00",
                "2026-11-22T06:05:00",
                "5:00",
                "normal",
                "bob",
                "\u{1e}",
            ]),
        ]
        .concat();
        let jobs = squeue_narrow(&out, &utc(), &["scavenger".into()]).unwrap();
        assert_eq!(jobs.len(), 6);
        assert_eq!(jobs[0].name, "a\u{1f}b|c d\nnext line");
        assert_eq!(jobs[0].nodes, ["n1", "n2", "n3", "n7"]);
        assert_eq!(jobs[0].time_limit_secs, Some(3600));
        assert_eq!(
            jobs[0].end_time.unwrap().to_string(),
            "2026-11-22T07:00:00Z"
        );
        assert_eq!(jobs[1].partition, "batch,debug");
        assert!(
            jobs[1].nodes.is_empty() && jobs[1].start_time.is_none() && jobs[1].end_time.is_none()
        );
        assert_eq!(jobs[1].qos, None);
        assert_eq!(jobs[1].name, "");
        assert!(jobs[2].preemptable && jobs[2].end_time.is_none());
        for j in &jobs[3..5] {
            assert_eq!(
                (j.time_limit_secs, j.end_time),
                (None, None),
                "no usable limit, no end"
            );
        }
        assert!(jobs[5].is_active());
        assert_eq!(jobs[5].name, "\u{1e}", "RS alone does not end a record");
        assert!(squeue_narrow("", &utc(), &[]).unwrap().is_empty());
        assert!(squeue_narrow("\n", &utc(), &[]).unwrap().is_empty());
        // The last record may lack its newline.
        assert_eq!(
            squeue_narrow(out.trim_end_matches('\n'), &utc(), &[])
                .unwrap()
                .len(),
            6
        );

        let bad = |out: String| squeue_narrow(&out, &utc(), &[]).unwrap_err().to_string();
        assert!(
            bad("JOBID PARTITION NAME\n1 batch x\n".into()).contains("not in the agent's format")
        );
        assert!(bad(rec(&["1", "batch", "RUNNING"])).contains("too few fields"));
        let mut f = [
            "7",
            "batch",
            "RUNNING",
            "n1",
            "2026-11-22T06:00:00",
            "N/A",
            "5:00",
            "q",
            "u",
            "n",
        ];
        f[0] = "7_1";
        assert!(bad(rec(&f)).contains("bad job id \"7_1\""));
        f[0] = "7";
        f[3] = "n[1-";
        assert!(bad(rec(&f)).contains("bad node list"));
        f[3] = "n1";
        f[4] = "yesterday";
        assert!(bad(rec(&f)).contains("bad start time"));
        f[4] = "N/A";
        f[6] = "soon";
        assert!(bad(rec(&f)).contains("bad time limit"));
    }

    /// squeue's time limit: `[d-]h:mm:ss`, or `m:ss` under an hour.
    fn squeue_limit(mins: u64) -> String {
        let (d, h, m) = (mins / 1440, mins / 60 % 24, mins % 60);
        match (d, h) {
            (0, 0) => format!("{m}:00"),
            (0, _) => format!("{h}:{m:02}:00"),
            _ => format!("{d}-{h:02}:{m:02}:00"),
        }
    }

    proptest::proptest! {
        /// What squeue would print for any job reads back as that job.
        #[test]
        fn narrow_squeue_round_trips(
            jobs in proptest::collection::vec((
                1u64..u64::from(u32::MAX),
                proptest::sample::select(vec!["batch", "scavenger", "gpu-a100"]),
                proptest::sample::select(vec!["RUNNING", "PENDING", "COMPLETING", "SUSPENDED"]),
                proptest::collection::btree_set(0u32..40, 0..5),
                proptest::option::of(1_700_000_000i64..1_900_000_000),
                proptest::option::of(1u64..600_000),
                proptest::option::of("[a-z]{1,8}"),
                "[\\PC\u{1f}\n|]{0,20}",
            ), 0..20),
            offset_hours in -12i8..14,
        ) {
            let tz = TimeZone::fixed(jiff::tz::Offset::constant(offset_hours));
            let mut out = String::new();
            let mut want = vec![];
            for (id, partition, state, nodes, start, limit, qos, name) in jobs {
                let name = name.replace('\u{1e}', "");
                let nodes: Vec<String> = nodes.iter().map(|i| format!("gpu{i:03}")).collect();
                let start = start.map(|s| Timestamp::from_second(s).unwrap());
                let end = limit.and_then(|m| start.map(|s| s + jiff::SignedDuration::from_mins(m as i64)));
                let local = |t: Option<Timestamp>| t.map_or("N/A".to_string(), |t| {
                    t.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S").to_string()
                });
                out.push_str(&rec(&[
                    &id.to_string(), partition, state, &hostlist::compress(&nodes),
                    &local(start),
                    &if limit.is_some() { local(end) } else { "NONE".into() },
                    &limit.map_or("UNLIMITED".into(), squeue_limit),
                    qos.as_deref().unwrap_or("(null)"), "alice", &name,
                ]));
                want.push(Job {
                    id,
                    name: if is_null(&name) { String::new() } else { name },
                    user: "alice".into(),
                    partition: partition.into(),
                    state: state.into(),
                    nodes,
                    qos,
                    start_time: start,
                    end_time: end,
                    time_limit_secs: limit.map(|m| m * 60),
                    preemptable: partition == "scavenger",
                });
            }
            let got = squeue_narrow(&out, &tz, &["scavenger".into()]).unwrap();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn json_errors_are_clear() {
        let e = sinfo_json("{not json").unwrap_err();
        assert!(e.to_string().starts_with("invalid JSON from sinfo --json"));
        let e = squeue_json("{}", &[]).unwrap_err();
        assert_eq!(e.to_string(), "squeue --json: record 0 lacks jobs");
    }

    #[test]
    fn bad_states_name_the_field() {
        let e = scontrol_nodes("NodeName=n1 State=SLEEPY\n", &utc()).unwrap_err();
        assert!(e.to_string().contains("bad State \"SLEEPY\""), "{e}");
    }

    #[test]
    fn topology_of_switches_and_blocks() {
        let t = scontrol_topology(
            "SwitchName=s1 Level=0 LinkSpeed=1 Nodes=gpu[01-02]\n\
             SwitchName=s2 Level=0 LinkSpeed=1 Nodes=gpu03\n\
             SwitchName=top Level=1 LinkSpeed=1 Nodes=gpu[01-03] Switches=s[1-2]\n\
             BlockName=b1 BlockIndex=0 Nodes=gpu[01-02] BlockSize=2\n",
        )
        .unwrap();
        assert_eq!(t.switches.len(), 3);
        assert_eq!(t.switches[1].nodes, ["gpu03"]);
        assert_eq!(t.switches[2].level, 1);
        assert_eq!(t.switches[2].switches, ["s1", "s2"]);
        assert!(t.switches[0].switches.is_empty());
        assert_eq!(t.blocks[0].nodes, ["gpu01", "gpu02"]);
        assert_eq!(t.switch_domains(0)["gpu03"], "s2");
    }

    #[test]
    fn no_topology_is_empty_and_other_kinds_are_left_out() {
        assert_eq!(scontrol_topology("").unwrap(), Topology::default());
        assert_eq!(scontrol_topology("\n  \n").unwrap(), Topology::default());
        let t =
            scontrol_topology("AggregatedBlock=b[1-2] Nodes=n[1-4]\nBlockName=b1 Nodes=(null)\n")
                .unwrap();
        assert!(t.switches.is_empty());
        assert_eq!(t.blocks.len(), 1);
        assert!(t.blocks[0].nodes.is_empty());
    }

    #[test]
    fn topology_errors_name_the_field() {
        let e = scontrol_topology("SwitchName=s1 Level=top Nodes=n1\n").unwrap_err();
        assert!(e.to_string().contains("bad Level \"top\""), "{e}");
        let e = scontrol_topology("SwitchName=s1 Nodes=n1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "scontrol show topology: record 0 lacks Level"
        );
        let e = scontrol_topology("BlockName=b1 Nodes=n[3-1]\n").unwrap_err();
        assert!(e.to_string().contains("bad Nodes \"n[3-1]\""), "{e}");
        let e = scontrol_topology("BlockName=(null) Nodes=n1\n").unwrap_err();
        assert!(e.to_string().contains("lacks BlockName"), "{e}");
    }
}
