//! Parsers over real Slurm 22.05, 24.11 and 26.05 output captured by
//! `tests/slurm/capture-fixtures.sh` (see `tests/fixtures/slurm-*/README.md` for what each
//! snapshot shows).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;
use slurm_maint::slurm::{Job, Node, NodeState, Reservation, parse};

/// The Slurm versions with captured fixtures (`tests/fixtures/slurm-VERSION/`).
const VERSIONS: [&str; 3] = ["22.05", "24.11", "26.05"];

fn version_root(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/slurm-{version}"))
}

/// The snapshots the tests below name are 22.05's.
fn root() -> PathBuf {
    version_root("22.05")
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
}

/// Everything one snapshot says, parsed.
struct Parsed {
    nodes: Vec<Node>,
    sinfo: Vec<Node>,
    jobs: Vec<Job>,
    squeue: Vec<Job>,
    reservations: Vec<Reservation>,
    long_states: Vec<(String, NodeState)>,
    short_states: Vec<(String, NodeState)>,
}

fn parse_snapshot(dir: &Path) -> Parsed {
    // The capture host ran in UTC (host-timezone.txt).
    let tz = TimeZone::UTC;
    let partitions = parse::scontrol_partitions(&read(dir, "scontrol-show-partition.txt")).unwrap();
    let preempting = parse::preempting_partitions(&partitions);
    let states = |file: &str, sep: char| -> Vec<(String, NodeState)> {
        read(dir, file)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut parts = l.split(sep);
                let name = parts.next().unwrap().trim().to_string();
                let st = parts.next().unwrap().trim();
                (
                    name,
                    NodeState::parse(st).unwrap_or_else(|e| panic!("{}: {e}", dir.display())),
                )
            })
            .collect()
    };
    Parsed {
        nodes: parse::scontrol_nodes(&read(dir, "scontrol-show-node.txt"), &tz).unwrap(),
        sinfo: parse::sinfo_json(&read(dir, "sinfo.json")).unwrap(),
        jobs: parse::scontrol_jobs(&read(dir, "scontrol-show-job.txt"), &tz, &preempting).unwrap(),
        squeue: parse::squeue_json(&read(dir, "squeue.json"), &preempting).unwrap(),
        reservations: parse::scontrol_reservations(
            &read(dir, "scontrol-show-reservation.txt"),
            &tz,
        )
        .unwrap(),
        long_states: states("sinfo-N-long-state.txt", '|'),
        short_states: states("sinfo-N-short-state.txt", ' '),
    }
}

/// Every snapshot of every version.
fn snapshots() -> Vec<PathBuf> {
    let mut all = Vec::new();
    for version in VERSIONS {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(version_root(version))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("sinfo.json").exists() && p.join("scontrol-show-job.txt").exists())
            .collect();
        dirs.sort();
        assert!(dirs.len() >= 3, "{version} fixtures missing: {dirs:?}");
        all.extend(dirs);
    }
    all
}

/// Every form agrees with every other: scontrol vs sinfo --json on nodes, scontrol vs
/// squeue --json on jobs, sinfo's long and short state columns vs scontrol's State.
#[test]
fn every_snapshot_parses_and_the_forms_agree() {
    for dir in snapshots() {
        let p = parse_snapshot(&dir);
        let d = dir.display();
        assert_eq!(p.nodes.len(), 6, "{d}");
        let by_name: BTreeMap<&str, &Node> = p.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        assert_eq!(p.sinfo.len(), p.nodes.len(), "{d}");
        // 22.05 lists nodes; 24.11+ list groups (no boot time; a state and reason per
        // group, so a node's reason only where it has a group to itself).
        let grouped = p.sinfo.iter().all(|s| s.boot_time.is_none());
        for s in &p.sinfo {
            let n = by_name[s.name.as_str()];
            assert_eq!(s.state.class(), n.state.class(), "{d} {}", s.name);
            if grouped {
                if s.reason.is_some() {
                    assert_eq!(s.reason, n.reason, "{d} {}", s.name);
                }
            } else {
                assert_eq!(s.boot_time, n.boot_time, "{d} {}", s.name);
                assert_eq!(s.state.is_drained(), n.state.is_drained(), "{d} {}", s.name);
                assert_eq!(s.reason, n.reason, "{d} {}", s.name);
                assert!(n.boot_time.is_some(), "{d} {}", n.name);
            }
        }
        // scontrol's own lines: each node's reason is the text between `Reason=` and its
        // stamp, and its reservation the `ReservationName=` wherever it stands.
        for line in read(&dir, "scontrol-show-node.txt")
            .lines()
            .filter(|l| !l.is_empty())
        {
            let name = line
                .split(' ')
                .next()
                .unwrap()
                .trim_start_matches("NodeName=");
            let n = by_name[name];
            let reason = line.split_once(" Reason=").map(|(_, r)| {
                let end = r.rfind(" [").unwrap_or(r.len());
                r[..end].to_string()
            });
            let reason = reason.filter(|r| r != "(null)" && !r.is_empty());
            assert_eq!(n.reason, reason, "{d} {name}");
            let resv = line
                .split(' ')
                .find_map(|t| t.strip_prefix("ReservationName="))
                .map(String::from);
            assert_eq!(n.reservation, resv, "{d} {name}");
        }
        for (name, st) in p.long_states.iter().chain(&p.short_states) {
            let n = by_name[name.as_str()];
            assert_eq!(
                st.class(),
                n.state.class(),
                "{d} {name}: sinfo {st} vs scontrol {}",
                n.state
            );
        }
        let active: BTreeMap<u64, &Job> = p
            .jobs
            .iter()
            .filter(|j| j.is_active())
            .map(|j| (j.id, j))
            .collect();
        let q_active: BTreeMap<u64, &Job> = p
            .squeue
            .iter()
            .filter(|j| j.is_active())
            .map(|j| (j.id, j))
            .collect();
        assert_eq!(
            active.keys().collect::<Vec<_>>(),
            q_active.keys().collect::<Vec<_>>(),
            "{d}"
        );
        for (id, j) in &active {
            let q = q_active[id];
            assert_eq!(
                (
                    &q.nodes,
                    q.end_time,
                    q.preemptable,
                    q.time_limit_secs,
                    &q.partition
                ),
                (
                    &j.nodes,
                    j.end_time,
                    j.preemptable,
                    j.time_limit_secs,
                    &j.partition
                ),
                "{d} job {id}"
            );
        }
        for r in &p.reservations {
            assert!(r.start < r.end && !r.nodes.is_empty(), "{d} {r:?}");
        }
    }
}

fn snap(name: &str) -> Parsed {
    parse_snapshot(&root().join(name))
}

fn node<'a>(p: &'a Parsed, name: &str) -> &'a Node {
    p.nodes.iter().find(|n| n.name == name).unwrap()
}

#[test]
fn states_seen_on_real_slurm() {
    let p = snap("02-jobs-reservations-drain");
    let n5 = node(&p, "node5");
    assert_eq!(n5.state.to_string(), "IDLE+DRAIN");
    assert!(n5.state.is_down());
    assert_eq!(n5.reason.as_deref(), Some("disk failure on sda"));
    let n6 = node(&p, "node6");
    assert!(n6.state.in_maintenance() && n6.state.in_service());

    let p = snap("03-reboot-requested-preempted");
    assert_eq!(
        node(&p, "node2").state.to_string(),
        "ALLOCATED+DRAIN+REBOOT_REQUESTED"
    );
    assert!(node(&p, "node2").state.is_rebooting());

    let p = snap("04-reboot-issued-not-responding");
    assert_eq!(
        node(&p, "node2").state.to_string(),
        "DOWN+DRAIN+REBOOT_ISSUED"
    );
    assert_eq!(
        node(&p, "node2").reason.as_deref(),
        Some("kernel upgrade : reboot issued")
    );
    assert_eq!(node(&p, "node5").state.to_string(), "DOWN+NOT_RESPONDING");

    // After the reboot node2 has a new BootTime; node6 never came back (slurmd without -b).
    let before = snap("03-reboot-requested-preempted");
    let after = snap("05-after-reboot-and-reboot-timeout");
    assert!(node(&after, "node2").boot_time > node(&before, "node2").boot_time);
    assert!(node(&after, "node2").state.in_service());
    let n6 = node(&after, "node6");
    assert_eq!(n6.state.base, "DOWN");
    assert!(n6.reason.as_deref().unwrap().ends_with("reboot timed out"));
}

#[test]
fn jobs_and_reservations_seen_on_real_slurm() {
    let p = snap("02-jobs-reservations-drain");
    let job = |name: &str| p.jobs.iter().find(|j| j.name == name).unwrap();
    assert_eq!(job("limited").time_limit_secs, Some(1800));
    let limited = job("limited");
    assert_eq!(
        limited
            .end_time
            .unwrap()
            .duration_since(limited.start_time.unwrap())
            .as_secs(),
        1800
    );
    assert_eq!(job("unlimited").end_time, None);
    assert!(job("multinode").nodes.len() >= 2);
    assert!(job("scavenge").preemptable && !job("limited").preemptable);
    assert!(!job("pending").is_active());

    let r = |name: &str| p.reservations.iter().find(|r| r.name == name).unwrap();
    assert!(r("maint_node6").is_maint());
    assert_eq!(r("future_maint").nodes, ["node3", "node4"]);
    assert_eq!(
        r("future_maint").flags,
        ["MAINT", "IGNORE_JOBS", "SPEC_NODES"]
    );
    assert!(!r("acct_resv").is_maint());
    assert!(r("acct_resv").accounts.len() >= 2);
}

/// The planner over a real snapshot of each version: the drained node is left alone, the
/// node in someone else's MAINT reservation counts as unavailable, the budget holds.
#[test]
fn planner_over_a_real_snapshot() {
    for version in VERSIONS {
        planner_over(&version_root(version).join("02-jobs-reservations-drain"));
    }
}

fn planner_over(dir: &Path) {
    use slurm_maint::api::MaintenancePolicySpec;
    use slurm_maint::plan::{self, Settings, Snapshot, Work};

    let p = parse_snapshot(dir);
    let now: jiff::Timestamp = read(dir, "captured-at.txt").trim().parse().unwrap();
    let mut spec: MaintenancePolicySpec = serde_json::from_value(serde_json::json!({
        "partition": "batch",
        "agent": {"url": "http://agent", "tokenSecretRef": {"name": "t"}},
        "budget": {"maxUnavailablePercent": 50},
        "reservations": {"enabled": true},
        "reboots": {"enabled": true},
    }))
    .unwrap();
    spec.campaign.reboot_required_before = Some(now);
    let s = Settings::from_spec(&spec, now).unwrap();
    let snapshot = Snapshot {
        nodes: p.nodes.clone(),
        jobs: p.jobs.clone(),
        reservations: p.reservations.clone(),
        health: Default::default(),
        topology: None,
    };
    let first = plan::plan("compute", &s, &snapshot, &[], now);
    assert_eq!(first.new_work.len(), 6);
    let work: Vec<Work> = first
        .new_work
        .iter()
        .map(|w| Work {
            name: w.name.clone(),
            node: w.node.clone(),
            action: slurm_maint::api::MaintenanceAction::Reboot,
            campaign: Some(w.campaign.clone()),
            status: Default::default(),
            oci: None,
        })
        .collect();
    let second = plan::plan("compute", &s, &snapshot, &work, now);
    // 6 nodes at 50 %: 3 allowed; node5 is drained, node6 is in maint_node6 → one more fits.
    assert_eq!(second.budget.allowed, 3);
    assert!(second.observed.down.contains("node5"));
    assert!(second.observed.unavailable.contains("node6"));
    assert!(second.waiting["node5"].contains("disk failure on sda"));
    assert!(
        second.waiting["node6"].contains("maint_node6 (not ours)"),
        "{:?}",
        second.waiting
    );
    // node1's job ends first; nodes 2–4 run jobs without a time limit or later ones.
    let admitted: Vec<_> = second.updates.iter().map(|u| u.node.as_str()).collect();
    assert_eq!(
        admitted,
        ["node1"],
        "{}: {:?}",
        dir.display(),
        second.updates
    );
    assert!(second.budget.occupied().len() <= 3);
}

/// 24.11 and 26.05 print `ReservationName=` after a node's `Reason=`; the reason stops at
/// its stamp and the reservation is the node's.
#[test]
fn reason_then_reservation_on_newer_slurm() {
    for version in ["24.11", "26.05"] {
        let dir = version_root(version).join("04-reboot-issued-not-responding");
        let p = parse_snapshot(&dir);
        let n6 = node(&p, "node6");
        assert_eq!(
            n6.reason.as_deref(),
            Some("firmware update : reboot issued"),
            "{version}"
        );
        assert_eq!(n6.reservation.as_deref(), Some("maint_node6"), "{version}");
    }
}

fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `tests/slurm/capture-topology.sh`: `scontrol show topology` of clusters without a
/// topology, with `topology/tree` (leaf1..3 of 2 nodes under `spine`) and, on 24.11+, with
/// `topology/block` (block1..3 of 2 nodes); nodes carry Features rack-a..rack-c.
#[test]
fn topology_on_every_version() {
    let tz = TimeZone::UTC;
    let pairs = [["node1", "node2"], ["node3", "node4"], ["node5", "node6"]];
    for version in VERSIONS {
        let root = version_root(version);
        let none = root.join("topology-none");
        let t = parse::scontrol_topology(&read(&none, "scontrol-show-topology.txt")).unwrap();
        assert_eq!(t, Default::default(), "{version}: no topology");
        assert!(
            !none.join("scontrol-show-topology.txt.exitcode").exists(),
            "{version}"
        );
        if version == "22.05" {
            assert_eq!(
                read(&none, "scontrol-show-topology.txt.stderr"),
                "scontrol: error: No topology information available\n"
            );
        }
        let nodes = parse::scontrol_nodes(&read(&none, "scontrol-show-node.txt"), &tz).unwrap();
        assert!(nodes.iter().all(|n| n.features.is_empty()), "{version}");

        let mut kinds = vec!["tree"];
        if version != "22.05" {
            kinds.push("block");
        }
        for kind in kinds {
            let dir = root.join(format!("topology-{kind}"));
            let d = dir.display();
            let t = parse::scontrol_topology(&read(&dir, "scontrol-show-topology.txt")).unwrap();
            let (domains, expect_names): (_, Vec<String>) = if kind == "tree" {
                assert!(t.blocks.is_empty(), "{d}");
                assert_eq!(t.switches.len(), 4, "{d}");
                for (i, pair) in pairs.iter().enumerate() {
                    let s = &t.switches[i];
                    assert_eq!(s.name, format!("leaf{}", i + 1), "{d}");
                    assert_eq!(s.level, 0, "{d}");
                    assert_eq!(names(&s.nodes), pair, "{d}");
                    assert!(s.switches.is_empty(), "{d}");
                }
                let spine = &t.switches[3];
                assert_eq!((spine.name.as_str(), spine.level), ("spine", 1), "{d}");
                assert_eq!(names(&spine.switches), ["leaf1", "leaf2", "leaf3"], "{d}");
                assert_eq!(
                    spine.nodes.len(),
                    6,
                    "{d}: 22.05-26.05 list every node below"
                );
                let up = t.switch_domains(1);
                assert_eq!(up.len(), 6, "{d}");
                assert!(up.values().all(|s| s == "spine"), "{d}");
                assert!(t.switch_domains(2).is_empty(), "{d}");
                (
                    t.switch_domains(0),
                    (1..=3).map(|i| format!("leaf{i}")).collect(),
                )
            } else {
                assert!(t.switches.is_empty(), "{d}");
                assert_eq!(t.blocks.len(), 3, "{d}");
                for (i, pair) in pairs.iter().enumerate() {
                    assert_eq!(t.blocks[i].name, format!("block{}", i + 1), "{d}");
                    assert_eq!(names(&t.blocks[i].nodes), pair, "{d}");
                }
                (
                    t.block_domains(),
                    (1..=3).map(|i| format!("block{i}")).collect(),
                )
            };
            let want: BTreeMap<String, String> = pairs
                .iter()
                .zip(&expect_names)
                .flat_map(|(pair, name)| pair.iter().map(|n| (n.to_string(), name.clone())))
                .collect();
            assert_eq!(domains, want, "{d}");

            let nodes = parse::scontrol_nodes(&read(&dir, "scontrol-show-node.txt"), &tz).unwrap();
            let features: BTreeMap<&str, Vec<&str>> = nodes
                .iter()
                .map(|n| (n.name.as_str(), names(&n.features)))
                .collect();
            let racks = ["rack-a", "rack-b", "rack-c"];
            let want: BTreeMap<&str, Vec<&str>> = pairs
                .iter()
                .zip(racks)
                .flat_map(|(pair, rack)| pair.iter().map(move |n| (*n, vec![rack])))
                .collect();
            assert_eq!(features, want, "{d}");
            // sinfo --json: 22.05 lists features per node; 24.11+ group nodes of different
            // features and print the first member's, which vouches for nothing.
            for n in parse::sinfo_json(&read(&dir, "sinfo.json")).unwrap() {
                if version == "22.05" {
                    assert_eq!(names(&n.features), want[n.name.as_str()], "{d}: {}", n.name);
                } else {
                    assert!(n.features.is_empty(), "{d}: {}: {:?}", n.name, n.features);
                }
            }
        }
    }
}
