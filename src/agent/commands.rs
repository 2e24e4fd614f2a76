//! Pure builders of the Slurm command lines the agent runs: argv, never a shell string.
//!
//! Inputs are expected to have passed [`super::validate`]. Times are rendered in the zone
//! Slurm runs in (Slurm reads local times); callers pass it (`TimeZone::system()`).

use jiff::tz::TimeZone;

use super::api::{NextState, StartTime};
use crate::slurm::{hostlist, parse};

/// One command line.
pub type Argv = Vec<String>;

fn argv(parts: &[&str]) -> Argv {
    parts.iter().map(|s| s.to_string()).collect()
}

/// A reservation to create, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReservation {
    pub name: String,
    pub start: StartTime,
    pub duration_minutes: u64,
    /// Node names, expanded.
    pub nodes: Vec<String>,
    pub users: Vec<String>,
    pub accounts: Vec<String>,
    pub flags: Vec<String>,
}

/// Changes to a reservation, validated; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReservationChange {
    pub start: Option<StartTime>,
    pub duration_minutes: Option<u64>,
    /// Node names, expanded.
    pub nodes: Option<Vec<String>>,
}

/// `now`, or a local time `YYYY-MM-DDTHH:MM:SS` in `tz`.
pub fn slurm_time(start: StartTime, tz: &TimeZone) -> String {
    match start {
        StartTime::Now => "now".into(),
        StartTime::At(t) => t
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S")
            .to_string(),
    }
}

/// `sinfo --json`.
pub fn sinfo_json() -> Argv {
    argv(&["sinfo", "--json"])
}

/// `squeue --json` (22.05 lists every job; callers filter).
pub fn squeue_json() -> Argv {
    argv(&["squeue", "--json"])
}

/// `squeue -h -a -t all -o <narrow format>`: every job of every state in every partition,
/// the fields of [`parse::SQUEUE_FORMAT`] (the set `squeue --json` lists; callers filter).
pub fn squeue_jobs() -> Argv {
    argv(&[
        "squeue",
        "-h",
        "-a",
        "-t",
        "all",
        "-o",
        parse::SQUEUE_FORMAT,
    ])
}

/// `scontrol show node -o`: every node.
pub fn show_nodes() -> Argv {
    argv(&["scontrol", "show", "node", "-o"])
}

/// `scontrol show node -o <node>`.
pub fn show_node(node: &str) -> Argv {
    argv(&["scontrol", "show", "node", "-o", node])
}

/// `scontrol show job -o`: every job.
pub fn show_jobs() -> Argv {
    argv(&["scontrol", "show", "job", "-o"])
}

/// `scontrol show job -o <id>`.
pub fn show_job(id: u64) -> Argv {
    argv(&["scontrol", "show", "job", "-o", &id.to_string()])
}

/// `scontrol show reservation -o`.
pub fn show_reservations() -> Argv {
    argv(&["scontrol", "show", "reservation", "-o"])
}

/// `scontrol show partition -o`.
pub fn show_partitions() -> Argv {
    argv(&["scontrol", "show", "partition", "-o"])
}

/// `scontrol show topology`: every switch (`topology/tree`) or block (`topology/block`).
pub fn show_topology() -> Argv {
    argv(&["scontrol", "show", "topology"])
}

/// `scontrol create reservation ReservationName=… StartTime=… Duration=… Nodes=…
/// [Users=…] [Accounts=…] [Flags=…]`; empty lists are left out.
pub fn create_reservation(r: &NewReservation, tz: &TimeZone) -> Argv {
    let mut a = argv(&["scontrol", "create", "reservation"]);
    a.push(format!("ReservationName={}", r.name));
    a.push(format!("StartTime={}", slurm_time(r.start, tz)));
    a.push(format!("Duration={}", r.duration_minutes));
    a.push(format!("Nodes={}", hostlist::compress(&r.nodes)));
    for (key, list) in [
        ("Users", &r.users),
        ("Accounts", &r.accounts),
        ("Flags", &r.flags),
    ] {
        if !list.is_empty() {
            a.push(format!("{key}={}", list.join(",")));
        }
    }
    a
}

/// `scontrol update ReservationName=… [StartTime=…] [Duration=…] [Nodes=…]`.
pub fn update_reservation(name: &str, change: &ReservationChange, tz: &TimeZone) -> Argv {
    let mut a = argv(&["scontrol", "update"]);
    a.push(format!("ReservationName={name}"));
    if let Some(start) = change.start {
        a.push(format!("StartTime={}", slurm_time(start, tz)));
    }
    if let Some(minutes) = change.duration_minutes {
        a.push(format!("Duration={minutes}"));
    }
    if let Some(nodes) = &change.nodes {
        a.push(format!("Nodes={}", hostlist::compress(nodes)));
    }
    a
}

/// `scontrol delete ReservationName=…`.
pub fn delete_reservation(name: &str) -> Argv {
    vec![
        "scontrol".into(),
        "delete".into(),
        format!("ReservationName={name}"),
    ]
}

/// `scontrol update NodeName=… State=DRAIN Reason=…`.
pub fn drain_node(node: &str, reason: &str) -> Argv {
    vec![
        "scontrol".into(),
        "update".into(),
        format!("NodeName={node}"),
        "State=DRAIN".into(),
        format!("Reason={reason}"),
    ]
}

/// `scontrol update NodeName=… State=RESUME`.
pub fn resume_node(node: &str) -> Argv {
    vec![
        "scontrol".into(),
        "update".into(),
        format!("NodeName={node}"),
        "State=RESUME".into(),
    ]
}

/// What replaces a stale reason of ours: it records the end of our work and, lacking our
/// prefix, claims nothing.
pub const DONE_REASON: &str = "maintenance done (slurm-maint)";

/// `scontrol update NodeName=… Reason=maintenance done (slurm-maint)`. Slurm cannot empty
/// a reason (`Reason=` is ignored); only its accounting plugin clears one when a node
/// returns, and 24.11 without accounting storage skips that, keeping ours for good.
pub fn clear_reason(node: &str) -> Argv {
    vec![
        "scontrol".into(),
        "update".into(),
        format!("NodeName={node}"),
        format!("Reason={DONE_REASON}"),
    ]
}

/// `scontrol reboot ASAP nextstate=… reason=… <node>`.
pub fn reboot_node(node: &str, reason: &str, next: NextState) -> Argv {
    vec![
        "scontrol".into(),
        "reboot".into(),
        "ASAP".into(),
        format!("nextstate={next}"),
        format!("reason={reason}"),
        node.into(),
    ]
}

/// `scancel <id>`.
pub fn cancel_job(id: u64) -> Argv {
    vec!["scancel".into(), id.to_string()]
}

/// `scontrol ping`.
pub fn ping() -> Argv {
    argv(&["scontrol", "ping"])
}

/// Split a site command template on whitespace (`/usr/local/bin/check {node}`).
pub fn parse_template(template: &str) -> Option<Vec<String>> {
    let words: Vec<String> = template.split_whitespace().map(String::from).collect();
    (!words.is_empty()).then_some(words)
}

/// A site command (reboot, health check) from its template, `{node}` replaced in every
/// argument.
pub fn site_command(template: &[String], node: &str) -> Argv {
    template.iter().map(|w| w.replace("{node}", node)).collect()
}

/// Metric label for a command line: `scontrol show node`, `scontrol update node`,
/// `scancel`, or the program's file name for site commands.
pub fn verb(argv: &[String]) -> String {
    let program = argv
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p))
        .unwrap_or("");
    let word = |i: usize| argv.get(i).map(String::as_str).unwrap_or("");
    match (program, word(1)) {
        ("scontrol", sub @ ("show" | "create")) => format!("scontrol {sub} {}", word(2)),
        ("scontrol", sub @ ("update" | "delete")) => {
            let object = match word(2).split('=').next() {
                Some("NodeName") => "node",
                Some("ReservationName") => "reservation",
                _ => "other",
            };
            format!("scontrol {sub} {object}")
        }
        ("scontrol", sub) => format!("scontrol {sub}"),
        (p, _) => p.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn s(v: &[&str]) -> Argv {
        argv(v)
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    fn at(t: &str) -> StartTime {
        StartTime::At(t.parse::<Timestamp>().unwrap())
    }

    #[test]
    fn reads() {
        assert_eq!(sinfo_json(), s(&["sinfo", "--json"]));
        assert_eq!(squeue_json(), s(&["squeue", "--json"]));
        assert_eq!(
            squeue_jobs(),
            s(&[
                "squeue",
                "-h",
                "-a",
                "-t",
                "all",
                "-o",
                "%A\u{1f}%P\u{1f}%T\u{1f}%N\u{1f}%S\u{1f}%e\u{1f}%l\u{1f}%q\u{1f}%u\u{1f}%j\u{1e}",
            ])
        );
        assert_eq!(show_nodes(), s(&["scontrol", "show", "node", "-o"]));
        assert_eq!(
            show_node("node3"),
            s(&["scontrol", "show", "node", "-o", "node3"])
        );
        assert_eq!(show_jobs(), s(&["scontrol", "show", "job", "-o"]));
        assert_eq!(show_job(42), s(&["scontrol", "show", "job", "-o", "42"]));
        assert_eq!(
            show_reservations(),
            s(&["scontrol", "show", "reservation", "-o"])
        );
        assert_eq!(
            show_partitions(),
            s(&["scontrol", "show", "partition", "-o"])
        );
        assert_eq!(show_topology(), s(&["scontrol", "show", "topology"]));
        assert_eq!(ping(), s(&["scontrol", "ping"]));
    }

    #[test]
    fn times_are_local_to_slurm() {
        assert_eq!(slurm_time(StartTime::Now, &berlin()), "now");
        assert_eq!(
            slurm_time(at("2026-01-15T09:30:00Z"), &berlin()),
            "2026-01-15T10:30:00"
        );
        assert_eq!(
            slurm_time(at("2026-07-15T09:30:00Z"), &berlin()),
            "2026-07-15T11:30:00"
        );
        assert_eq!(
            slurm_time(at("2026-07-15T09:30:00Z"), &TimeZone::UTC),
            "2026-07-15T09:30:00"
        );
    }

    #[test]
    fn create_reservation_argv() {
        let r = NewReservation {
            name: "slurm-maint-node1-c1".into(),
            start: at("2026-12-01T05:00:00Z"),
            duration_minutes: 360,
            nodes: vec!["node2".into(), "node1".into(), "node3".into()],
            users: vec!["root".into(), "ops".into()],
            accounts: vec![],
            flags: vec!["MAINT".into(), "IGNORE_JOBS".into()],
        };
        assert_eq!(
            create_reservation(&r, &berlin()),
            s(&[
                "scontrol",
                "create",
                "reservation",
                "ReservationName=slurm-maint-node1-c1",
                "StartTime=2026-12-01T06:00:00",
                "Duration=360",
                "Nodes=node[1-3]",
                "Users=root,ops",
                "Flags=MAINT,IGNORE_JOBS",
            ])
        );
        let now = NewReservation {
            start: StartTime::Now,
            nodes: vec!["node1".into()],
            users: vec![],
            accounts: vec!["maint".into()],
            flags: vec![],
            ..r
        };
        assert_eq!(
            create_reservation(&now, &TimeZone::UTC),
            s(&[
                "scontrol",
                "create",
                "reservation",
                "ReservationName=slurm-maint-node1-c1",
                "StartTime=now",
                "Duration=360",
                "Nodes=node1",
                "Accounts=maint",
            ])
        );
    }

    #[test]
    fn update_and_delete_reservation_argv() {
        let change = ReservationChange {
            start: Some(at("2026-12-01T05:00:00Z")),
            ..Default::default()
        };
        assert_eq!(
            update_reservation("slurm-maint-n1", &change, &TimeZone::UTC),
            s(&[
                "scontrol",
                "update",
                "ReservationName=slurm-maint-n1",
                "StartTime=2026-12-01T05:00:00",
            ])
        );
        let change = ReservationChange {
            start: Some(StartTime::Now),
            duration_minutes: Some(90),
            nodes: Some(vec!["n1".into(), "n2".into()]),
        };
        assert_eq!(
            update_reservation("slurm-maint-n1", &change, &TimeZone::UTC),
            s(&[
                "scontrol",
                "update",
                "ReservationName=slurm-maint-n1",
                "StartTime=now",
                "Duration=90",
                "Nodes=n[1-2]",
            ])
        );
        assert_eq!(
            delete_reservation("slurm-maint-n1"),
            s(&["scontrol", "delete", "ReservationName=slurm-maint-n1"])
        );
    }

    #[test]
    fn node_and_job_writes() {
        assert_eq!(
            drain_node("node1", "slurm-maint: disk check"),
            s(&[
                "scontrol",
                "update",
                "NodeName=node1",
                "State=DRAIN",
                "Reason=slurm-maint: disk check",
            ])
        );
        assert_eq!(
            resume_node("node1"),
            s(&["scontrol", "update", "NodeName=node1", "State=RESUME"])
        );
        assert_eq!(
            reboot_node("node1", "slurm-maint: kernel", NextState::Resume),
            s(&[
                "scontrol",
                "reboot",
                "ASAP",
                "nextstate=RESUME",
                "reason=slurm-maint: kernel",
                "node1",
            ])
        );
        assert_eq!(
            reboot_node("node1", "r", NextState::Down)[3],
            "nextstate=DOWN"
        );
        assert_eq!(cancel_job(42), s(&["scancel", "42"]));
    }

    #[test]
    fn site_commands_substitute_the_node() {
        let t = parse_template("  /usr/local/bin/check   {node}\t--host={node}.ipmi ").unwrap();
        assert_eq!(
            site_command(&t, "node7"),
            s(&["/usr/local/bin/check", "node7", "--host=node7.ipmi"])
        );
        assert_eq!(parse_template("   "), None);
    }

    #[test]
    fn verbs() {
        assert_eq!(verb(&show_nodes()), "scontrol show node");
        assert_eq!(verb(&drain_node("n", "r")), "scontrol update node");
        assert_eq!(
            verb(&update_reservation(
                "r",
                &Default::default(),
                &TimeZone::UTC
            )),
            "scontrol update reservation"
        );
        assert_eq!(
            verb(&delete_reservation("r")),
            "scontrol delete reservation"
        );
        assert_eq!(
            verb(&reboot_node("n", "r", NextState::Resume)),
            "scontrol reboot"
        );
        assert_eq!(verb(&cancel_job(1)), "scancel");
        assert_eq!(verb(&s(&["/usr/local/bin/check", "n1"])), "check");
        assert_eq!(verb(&[]), "");
    }
}
