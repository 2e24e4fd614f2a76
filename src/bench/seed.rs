//! The seed's policy (`../shared/seeds/000_…`, `maint_operator.py`), implemented from its
//! text as a baseline strategy over the same [`PartitionSnapshot`] and [`Action`]s.
//!
//! Each iteration (every `--interval`, 60 s):
//! 1. update existing reservations to the current job schedule;
//! 2. create a reservation for every node without one, starting when its jobs allow
//!    (no jobs: now; only preemptable: now if terminating them, else after the longest;
//!    non-preemptable: after the longest non-preemptable) — only while the partition's
//!    combined |unavailable ∪ down| / total × 100 < max-down-percentage;
//! 3. nodes in an active maintenance reservation become PENDING_REBOOT; one goes to
//!    REBOOTING (reboot issued) while capacity permits;
//! 4. REBOOTING → RECOVERING when the node goes down; RECOVERING → COMPLETED when Slurm
//!    reports it up; a step over `--reboot-timeout` retries (PENDING_REBOOT) up to 3
//!    attempts, then FAILED.
//!
//! Unavailable = nodes in an active MAINT reservation, in a reservation starting within
//! the lead time, or PENDING_REBOOT/REBOOTING/RECOVERING; down = Slurm's DOWN, DRAIN,
//! FAIL, NOT_RESPONDING, POWER_* states; both counted per partition.
//!
//! Where the text is silent the kinder reading is taken, so the baseline is not a
//! strawman: nodes already down are not reserved (they count as down); the reboot gate
//! does not count the candidate itself (it is already counted through its reservation,
//! and counting it twice would deadlock whenever the partition is at its limit);
//! COMPLETED/FAILED nodes are not reserved again. Reservations are never deleted (the
//! text never deletes one: they expire after `--reservation-duration`).

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

use crate::agent::api::PartitionSnapshot;
use crate::plan::Action;
use crate::slurm::{Job, Node};

/// The seed's options that matter here.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedConfig {
    pub partition: String,
    pub max_down_percentage: f64,
    pub lead_time: SignedDuration,
    pub duration: SignedDuration,
    pub terminate_preemptable: bool,
    pub reboot_timeout: SignedDuration,
    pub max_attempts: u32,
    /// Reservation names are `<prefix><node>`.
    pub prefix: String,
    pub reboot_gate: RebootGate,
}

/// What the gate before a reboot counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootGate {
    /// As written: the combined |unavailable ∪ down| (reservations, PENDING_REBOOT…),
    /// the candidate itself excepted. Deadlocks once the partition is over its limit
    /// with nodes that all wait for a reboot.
    AsWritten,
    /// Kinder: only reboots in flight (REBOOTING, RECOVERING) and down nodes; reserved
    /// and pending nodes are already out of service, rebooting them changes nothing.
    InFlight,
}

impl Default for SeedConfig {
    fn default() -> Self {
        Self {
            partition: "batch".into(),
            max_down_percentage: 10.0,
            lead_time: SignedDuration::from_mins(60),
            duration: SignedDuration::from_hours(6),
            terminate_preemptable: false,
            reboot_timeout: SignedDuration::from_secs(600),
            max_attempts: 3,
            prefix: "slurm-maint-seed-".into(),
            reboot_gate: RebootGate::AsWritten,
        }
    }
}

/// The seed's per-node reboot state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedState {
    PendingReboot,
    Rebooting,
    Recovering,
    Completed,
    Failed,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SeedNode {
    pub state: SeedState,
    pub attempts: u32,
    pub step_since: Timestamp,
    pub boot_before: Option<Timestamp>,
}

/// When a node's maintenance reservation should start, and which jobs to terminate.
pub fn reservation_start(
    jobs: &[&Job],
    now: Timestamp,
    terminate_preemptable: bool,
) -> (Timestamp, Vec<u64>) {
    let end = |j: &&Job| j.end_time.unwrap_or(now).max(now);
    let (pre, non): (Vec<&Job>, Vec<&Job>) = jobs.iter().partition(|j| j.preemptable);
    let cancel: Vec<u64> = if terminate_preemptable {
        pre.iter().map(|j| j.id).collect()
    } else {
        vec![]
    };
    let start = if !non.is_empty() {
        non.iter().map(end).max().unwrap_or(now)
    } else if pre.is_empty() || terminate_preemptable {
        now
    } else {
        pre.iter().map(end).max().unwrap_or(now)
    };
    (start, cancel)
}

/// `(combined / total × 100) < max`: the seed's only gate.
pub fn can_proceed(combined: usize, total: usize, max_down_percentage: f64) -> bool {
    total > 0 && (combined as f64 / total as f64 * 100.0) < max_down_percentage
}

/// One partition's figures as the seed computes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeedFigures {
    pub total: usize,
    pub unavailable: BTreeSet<String>,
    pub down: BTreeSet<String>,
}

impl SeedFigures {
    pub fn combined(&self) -> usize {
        self.unavailable.union(&self.down).count()
    }
}

/// The seed's policy and its state file.
#[derive(Clone, Debug, Default)]
pub struct SeedPolicy {
    pub cfg: SeedConfig,
    pub nodes: BTreeMap<String, SeedNode>,
}

impl SeedPolicy {
    pub fn new(cfg: SeedConfig) -> Self {
        Self {
            cfg,
            nodes: BTreeMap::new(),
        }
    }

    fn members<'a>(&self, snap: &'a PartitionSnapshot) -> Vec<&'a Node> {
        snap.nodes
            .iter()
            .filter(|n| n.partitions.contains(&self.cfg.partition))
            .collect()
    }

    /// Unavailable and down in the seed's partition, at `now`.
    pub fn figures(&self, snap: &PartitionSnapshot, now: Timestamp) -> SeedFigures {
        let members = self.members(snap);
        let names: BTreeSet<&str> = members.iter().map(|n| n.name.as_str()).collect();
        let mut f = SeedFigures {
            total: members.len(),
            ..Default::default()
        };
        let horizon = now + self.cfg.lead_time;
        for r in &snap.reservations {
            if r.is_maint() && r.start <= horizon && now < r.end {
                f.unavailable.extend(
                    r.nodes
                        .iter()
                        .filter(|n| names.contains(n.as_str()))
                        .cloned(),
                );
            }
        }
        for (name, st) in &self.nodes {
            if names.contains(name.as_str())
                && matches!(
                    st.state,
                    SeedState::PendingReboot | SeedState::Rebooting | SeedState::Recovering
                )
            {
                f.unavailable.insert(name.clone());
            }
        }
        f.down = members
            .iter()
            .filter(|n| n.state.is_down())
            .map(|n| n.name.clone())
            .collect();
        f
    }

    /// Every node is done (COMPLETED or FAILED) but those down from the start.
    pub fn finished(&self, wanted: usize) -> bool {
        self.nodes
            .values()
            .filter(|n| matches!(n.state, SeedState::Completed | SeedState::Failed))
            .count()
            >= wanted
    }

    /// One iteration: the actions to execute, in order.
    pub fn pass(&mut self, snap: &PartitionSnapshot, now: Timestamp) -> Vec<Action> {
        let cfg = self.cfg.clone();
        let mut actions = vec![];
        let mut jobs: BTreeMap<&str, Vec<&Job>> = BTreeMap::new();
        for j in snap.jobs.iter().filter(|j| j.is_active()) {
            for n in &j.nodes {
                jobs.entry(n.as_str()).or_default().push(j);
            }
        }
        let jobs_on = |n: &str| jobs.get(n).cloned().unwrap_or_default();
        let ours: BTreeMap<&str, &crate::slurm::Reservation> = snap
            .reservations
            .iter()
            .filter(|r| r.name.starts_with(&cfg.prefix) && r.end > now)
            .map(|r| (r.nodes[0].as_str(), r))
            .collect();
        let members = self.members(snap);

        // 1. Update existing reservations to the current job schedule.
        for (node, r) in &ours {
            if r.start <= now {
                continue;
            }
            let (start, _) = reservation_start(&jobs_on(node), now, cfg.terminate_preemptable);
            if start.duration_since(r.start).abs() > SignedDuration::from_secs(60) {
                actions.push(Action::UpdateReservationStart {
                    name: r.name.clone(),
                    start: (start > now).then_some(start),
                });
            }
        }

        // 2. Create reservations while the combined percentage is under the limit.
        let mut f = self.figures(snap, now);
        for n in &members {
            if ours.contains_key(n.name.as_str())
                || self.nodes.contains_key(&n.name)
                || n.state.is_down()
            {
                continue;
            }
            if !can_proceed(f.combined(), f.total, cfg.max_down_percentage) {
                break;
            }
            let (start, cancel) =
                reservation_start(&jobs_on(&n.name), now, cfg.terminate_preemptable);
            for job_id in cancel {
                actions.push(Action::CancelJob {
                    job_id,
                    node: n.name.clone(),
                });
            }
            actions.push(Action::CreateReservation {
                name: format!("{}{}", cfg.prefix, n.name),
                node: n.name.clone(),
                with: vec![],
                start: (start > now).then_some(start),
                duration: cfg.duration,
                users: vec!["root".into()],
                accounts: vec![],
                flags: vec!["MAINT".into(), "IGNORE_JOBS".into()],
            });
            if start <= now + cfg.lead_time {
                f.unavailable.insert(n.name.clone());
            }
        }

        // 3. Discover nodes in active reservations; start reboots while capacity permits.
        for (node, r) in &ours {
            if r.start <= now && !self.nodes.contains_key(*node) {
                self.nodes.insert(
                    node.to_string(),
                    SeedNode {
                        state: SeedState::PendingReboot,
                        attempts: 0,
                        step_since: now,
                        boot_before: None,
                    },
                );
                f.unavailable.insert(node.to_string());
            }
        }
        let by_name: BTreeMap<&str, &Node> =
            members.iter().map(|n| (n.name.as_str(), *n)).collect();
        let pending: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, s)| s.state == SeedState::PendingReboot)
            .map(|(n, _)| n.clone())
            .collect();
        let mut flying: BTreeSet<String> = self
            .nodes
            .iter()
            .filter(|(_, s)| matches!(s.state, SeedState::Rebooting | SeedState::Recovering))
            .map(|(n, _)| n.clone())
            .chain(f.down.iter().cloned())
            .collect();
        for name in pending {
            let others = match cfg.reboot_gate {
                RebootGate::AsWritten => {
                    f.unavailable.union(&f.down).filter(|n| **n != name).count()
                }
                RebootGate::InFlight => flying.len() - usize::from(flying.contains(&name)),
            };
            if !can_proceed(others, f.total, cfg.max_down_percentage) {
                continue;
            }
            let st = self.nodes.get_mut(&name).expect("listed");
            st.state = SeedState::Rebooting;
            st.attempts += 1;
            st.step_since = now;
            st.boot_before = by_name.get(name.as_str()).and_then(|n| n.boot_time);
            flying.insert(name.clone());
            actions.push(Action::Reboot {
                node: name.clone(),
                reason: format!("maint_operator attempt {}", st.attempts),
            });
        }

        // 4. Monitor recovery.
        for (name, st) in self.nodes.iter_mut() {
            let Some(node) = by_name.get(name.as_str()) else {
                continue;
            };
            let rebooted = node.boot_time > st.boot_before;
            match st.state {
                SeedState::Rebooting if rebooted && node.state.in_service() => {
                    st.state = SeedState::Completed;
                    continue;
                }
                SeedState::Rebooting if node.state.is_down() || node.state.is_rebooting() => {
                    st.state = SeedState::Recovering;
                }
                SeedState::Recovering if rebooted && node.state.in_service() => {
                    st.state = SeedState::Completed;
                    continue;
                }
                _ => {}
            }
            if matches!(st.state, SeedState::Rebooting | SeedState::Recovering)
                && now.duration_since(st.step_since) > cfg.reboot_timeout
            {
                st.state = if st.attempts < cfg.max_attempts {
                    SeedState::PendingReboot
                } else {
                    SeedState::Failed
                };
                st.step_since = now;
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::{NodeState, Partition, Reservation};

    fn t(m: i64) -> Timestamp {
        Timestamp::from_second(1_767_225_600 + m * 60).unwrap()
    }

    fn node(name: &str, state: &str, partition: &str) -> Node {
        Node {
            name: name.into(),
            state: NodeState::parse(state).unwrap(),
            reason: None,
            boot_time: Some(t(-10_000)),
            partitions: vec![partition.into()],
            reservation: None,
            features: vec![],
        }
    }

    fn job(id: u64, node: &str, end_min: i64, preemptable: bool) -> Job {
        Job {
            id,
            name: format!("j{id}"),
            user: "u".into(),
            partition: "batch".into(),
            state: "RUNNING".into(),
            nodes: vec![node.into()],
            qos: None,
            start_time: Some(t(-60)),
            end_time: Some(t(end_min)),
            time_limit_secs: Some(3600),
            preemptable,
        }
    }

    fn resv(name: &str, node: &str, start: i64, end: i64) -> Reservation {
        Reservation {
            name: name.into(),
            start: t(start),
            end: t(end),
            nodes: vec![node.into()],
            flags: vec!["MAINT".into()],
            users: vec!["root".into()],
            accounts: vec![],
            partition: None,
        }
    }

    fn snap(nodes: Vec<Node>, jobs: Vec<Job>, reservations: Vec<Reservation>) -> PartitionSnapshot {
        PartitionSnapshot {
            nodes,
            jobs,
            reservations,
            partitions: Vec::<Partition>::new(),
            topology: None,
        }
    }

    fn creations(actions: &[Action]) -> Vec<(String, Option<Timestamp>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::CreateReservation { node, start, .. } => Some((node.clone(), *start)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn preemptable_handling_sets_the_start() {
        let (p, q, n) = (
            job(1, "a", 30, true),
            job(2, "a", 90, true),
            job(3, "a", 50, false),
        );
        // No jobs: now.
        assert_eq!(reservation_start(&[], t(0), false), (t(0), vec![]));
        // Only preemptable: now when terminating them (both cancelled), else after the longest.
        assert_eq!(reservation_start(&[&p, &q], t(0), true), (t(0), vec![1, 2]));
        assert_eq!(reservation_start(&[&p, &q], t(0), false), (t(90), vec![]));
        // Non-preemptable present: after the longest non-preemptable, whatever the flag.
        assert_eq!(reservation_start(&[&p, &q, &n], t(0), false).0, t(50));
        assert_eq!(
            reservation_start(&[&p, &q, &n], t(0), true),
            (t(50), vec![1, 2])
        );
    }

    #[test]
    fn combined_percentage_gate() {
        // The seed's example: 100 nodes, 5 unavailable, 8 down, 2 both: 11 % ≥ 10 %.
        assert!(!can_proceed(11, 100, 10.0));
        assert!(!can_proceed(10, 100, 10.0));
        assert!(can_proceed(9, 100, 10.0));
        // A float comparison: 1 of 15 is 6.7 % < 10 %.
        assert!(can_proceed(1, 15, 10.0));
        let mut nodes: Vec<Node> = (0..100)
            .map(|i| node(&format!("n{i:03}"), "IDLE", "batch"))
            .collect();
        for n in nodes.iter_mut().skip(3).take(8) {
            n.state = NodeState::parse("IDLE+DRAIN").unwrap();
        }
        let reservations = (0..5)
            .map(|i| resv(&format!("m{i}"), &format!("n{i:03}"), -5, 300))
            .collect();
        let mut seed = SeedPolicy::new(SeedConfig::default());
        let s = snap(nodes, vec![], reservations);
        let f = seed.figures(&s, t(0));
        assert_eq!(
            (f.unavailable.len(), f.down.len(), f.combined()),
            (5, 8, 11)
        );
        assert!(
            creations(&seed.pass(&s, t(0))).is_empty(),
            "no new reservation at 11 %"
        );
    }

    #[test]
    fn lead_time_counts_reservations_starting_soon() {
        // 20 nodes, 10 %: 2 allowed. n0 has a job ending in 30 min (inside the 60 min lead
        // time: counts at once); n1 and n2 end in 5 h (outside: do not count).
        let nodes: Vec<Node> = (0..20)
            .map(|i| node(&format!("n{i:02}"), "ALLOCATED", "batch"))
            .collect();
        let mut jobs = vec![
            job(1, "n00", 30, false),
            job(2, "n01", 300, false),
            job(3, "n02", 300, false),
        ];
        jobs.extend((3..20).map(|i| job(10 + i, &format!("n{i:02}"), 20, false)));
        let mut seed = SeedPolicy::new(SeedConfig::default());
        let s = snap(nodes, jobs, vec![]);
        let made = creations(&seed.pass(&s, t(0)));
        // n00 (counted), n01, n02 (not counted), n03 (counted: 2 of 20 = 10 %, stop).
        assert_eq!(
            made,
            vec![
                ("n00".into(), Some(t(30))),
                ("n01".into(), Some(t(300))),
                ("n02".into(), Some(t(300))),
                ("n03".into(), Some(t(20))),
            ]
        );
        // At 4 h 30 the two far reservations enter the lead time and count.
        let r = vec![
            resv("slurm-maint-seed-n01", "n01", 300, 660),
            resv("slurm-maint-seed-n02", "n02", 300, 660),
        ];
        let s = snap(s.nodes.clone(), vec![], r);
        assert_eq!(seed.figures(&s, t(239)).unavailable.len(), 0);
        assert_eq!(seed.figures(&s, t(240)).unavailable.len(), 2);
    }

    #[test]
    fn limits_are_per_partition() {
        // 10 nodes in batch, 10 in gpu; every gpu node is down: batch still proceeds.
        let mut nodes: Vec<Node> = (0..10)
            .map(|i| node(&format!("b{i}"), "IDLE", "batch"))
            .collect();
        nodes.extend((0..10).map(|i| node(&format!("g{i}"), "DOWN", "gpu")));
        let mut seed = SeedPolicy::new(SeedConfig {
            max_down_percentage: 20.0,
            ..SeedConfig::default()
        });
        let s = snap(nodes, vec![], vec![]);
        let f = seed.figures(&s, t(0));
        assert_eq!((f.total, f.down.len()), (10, 0));
        let made = creations(&seed.pass(&s, t(0)));
        assert_eq!(made.len(), 2, "20 % of batch's 10 nodes: {made:?}");
        assert!(made.iter().all(|(n, _)| n.starts_with('b')));
    }

    #[test]
    fn reboots_gate_on_capacity_and_retry_then_fail() {
        let nodes: Vec<Node> = (0..10)
            .map(|i| node(&format!("n{i}"), "IDLE", "batch"))
            .collect();
        let mut seed = SeedPolicy::new(SeedConfig {
            max_down_percentage: 20.0,
            ..SeedConfig::default()
        });
        // Three active reservations of ours (an over-full partition: 3 > 2 allowed).
        let r: Vec<Reservation> = (0..3)
            .map(|i| resv(&format!("slurm-maint-seed-n{i}"), &format!("n{i}"), -1, 300))
            .collect();
        let s = snap(nodes.clone(), vec![], r.clone());
        let a = seed.pass(&s, t(0));
        assert!(
            !a.iter().any(|a| matches!(a, Action::Reboot { .. })),
            "3 out, 2 allowed: {a:?}"
        );
        assert!(
            seed.nodes
                .values()
                .all(|n| n.state == SeedState::PendingReboot)
        );
        // One reservation gone: two left, each reboots while the other counts (1 < 2).
        let s = snap(nodes.clone(), vec![], r[..2].to_vec());
        seed.nodes.remove("n2");
        let a = seed.pass(&s, t(1));
        let reboots = a
            .iter()
            .filter(|a| matches!(a, Action::Reboot { .. }))
            .count();
        assert_eq!(reboots, 2);
        // n0 never comes back: retried after the timeout, FAILED after 3 attempts.
        let mut down = nodes.clone();
        down[0].state = NodeState::parse("DOWN+NOT_RESPONDING").unwrap();
        let s = snap(down, vec![], r[..2].to_vec());
        let mut m = 2;
        for _ in 0..40 {
            seed.pass(&s, t(m));
            m += 5;
        }
        assert_eq!(seed.nodes["n0"].state, SeedState::Failed);
        assert_eq!(seed.nodes["n0"].attempts, 3);
    }

    #[test]
    fn the_kinder_reboot_gate_counts_only_reboots_in_flight() {
        let nodes: Vec<Node> = (0..10)
            .map(|i| node(&format!("n{i}"), "IDLE", "batch"))
            .collect();
        let r: Vec<Reservation> = (0..3)
            .map(|i| resv(&format!("slurm-maint-seed-n{i}"), &format!("n{i}"), -1, 300))
            .collect();
        let mut seed = SeedPolicy::new(SeedConfig {
            max_down_percentage: 20.0,
            reboot_gate: RebootGate::InFlight,
            ..SeedConfig::default()
        });
        let a = seed.pass(&snap(nodes, vec![], r), t(0));
        // Three reserved (over the limit as written), but reboots go one… two at a time:
        // n0 (0 in flight), n1 (1 in flight: 10 % < 20 %), not n2 (2: 20 %).
        let reboots: Vec<&Action> = a
            .iter()
            .filter(|a| matches!(a, Action::Reboot { .. }))
            .collect();
        assert_eq!(reboots.len(), 2, "{a:?}");
        assert_eq!(seed.nodes["n2"].state, SeedState::PendingReboot);
    }
}
