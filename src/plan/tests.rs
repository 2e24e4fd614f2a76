use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::api::node_maintenance::NodeMaintenancePhase as Phase;
use crate::api::policy::{AgentRef, SecretKeyRef};
use crate::slurm::NodeState;

fn t(min: i64) -> Timestamp {
    Timestamp::from_second(1_767_225_600 + min * 60).unwrap() // 2026-01-01T00:00Z + min
}

const NOW: i64 = 600;

fn spec() -> MaintenancePolicySpec {
    MaintenancePolicySpec {
        partition: "batch".into(),
        nodelist: None,
        agent: AgentRef {
            url: "http://agent".into(),
            token_secret_ref: SecretKeyRef {
                name: "tok".into(),
                key: "token".into(),
            },
        },
        budget: Default::default(),
        reservations: Default::default(),
        reboots: Default::default(),
        preemption: Default::default(),
        campaign: Default::default(),
        oci: Default::default(),
        blockers: None,
        health_checks: None,
        paused: false,
        dry_run: false,
        interval: crate::api::Duration::secs(60),
    }
}

/// Enabled settings: percent budget, campaign at t(NOW).
fn settings(pct: f64) -> Settings {
    let mut sp = spec();
    sp.budget.max_unavailable_percent = Some(pct);
    sp.reservations.enabled = true;
    sp.reboots.enabled = true;
    sp.campaign.reboot_required_before = Some(t(NOW));
    Settings::from_spec(&sp, t(NOW)).unwrap()
}

fn node(name: &str, state: &str, boot_min: i64) -> Node {
    Node {
        name: name.into(),
        state: NodeState::parse(state).unwrap(),
        reason: None,
        boot_time: Some(t(boot_min)),
        partitions: vec!["batch".into()],
        reservation: None,
        features: vec![],
    }
}

fn job(id: u64, node: &str, end_min: Option<i64>, preemptable: bool) -> Job {
    Job {
        id,
        name: format!("j{id}"),
        user: "alice".into(),
        partition: "batch".into(),
        state: "RUNNING".into(),
        nodes: vec![node.into()],
        qos: None,
        start_time: Some(t(0)),
        end_time: end_min.map(t),
        time_limit_secs: end_min.map(|m| (m * 60) as u64),
        preemptable,
    }
}

fn work_for(node: &str, phase: Phase) -> Work {
    let campaign = campaign_id(t(NOW));
    Work {
        name: work_name("p", node, &campaign),
        node: node.into(),
        action: MaintenanceAction::Reboot,
        campaign: Some(campaign),
        status: NodeMaintenanceStatus {
            phase,
            ..Default::default()
        },
        oci: None,
    }
}

fn pending(nodes: &[&str]) -> Vec<Work> {
    nodes.iter().map(|n| work_for(n, Phase::Pending)).collect()
}

/// The reservations the plan creates: node and start (`None`: now).
fn reservation_starts(p: &Plan) -> Vec<(String, Option<Timestamp>)> {
    p.actions()
        .filter_map(|a| match a {
            Action::CreateReservation { node, start, .. } => Some((node.clone(), *start)),
            _ => None,
        })
        .collect()
}

fn admitted(p: &Plan) -> Vec<&str> {
    p.updates
        .iter()
        .filter(|u| u.status.phase == Phase::Reserved)
        .map(|u| u.node.as_str())
        .collect()
}

fn snapshot(nodes: Vec<Node>, jobs: Vec<Job>) -> Snapshot {
    Snapshot {
        nodes,
        jobs,
        ..Default::default()
    }
}

/// Apply a plan's status updates to the work list (as the controller would).
fn apply(work: &mut Vec<Work>, p: &Plan) {
    for nw in &p.new_work {
        work.push(Work {
            name: nw.name.clone(),
            node: nw.node.clone(),
            action: MaintenanceAction::Reboot,
            campaign: Some(nw.campaign.clone()),
            status: Default::default(),
            oci: None,
        });
    }
    for u in &p.updates {
        let w = work.iter_mut().find(|w| w.name == u.name).unwrap();
        w.status = u.status.clone();
    }
}

#[test]
fn creates_work_for_nodes_booted_before_the_campaign() {
    let s = settings(50.0);
    let snap = snapshot(
        vec![
            node("n1", "IDLE", 0),
            node("n2", "IDLE", NOW + 1),
            node("n3", "IDLE+DRAIN", 0),
        ],
        vec![],
    );
    let p = plan("p", &s, &snap, &[], t(NOW));
    let nodes: Vec<_> = p.new_work.iter().map(|w| w.node.as_str()).collect();
    assert_eq!(nodes, ["n1", "n3"]);
    assert_eq!(p.nodes_needing_work, 2);
    assert_eq!(p.new_work[0].name, format!("p-n1-{}", campaign_id(t(NOW))));
    // No campaign, no work.
    let mut s2 = s.clone();
    s2.reboot_required_before = None;
    assert!(plan("p", &s2, &snap, &[], t(NOW)).new_work.is_empty());
}

#[test]
fn a_dry_run_plans_as_if_the_work_existed() {
    let s = settings(50.0);
    let snap = snapshot(
        vec![
            node("n1", "IDLE", 0),
            node("n2", "IDLE", 0),
            node("n3", "IDLE", 0),
            node("n4", "IDLE", 0),
        ],
        vec![],
    );
    let first = plan("p", &s, &snap, &[], t(NOW));
    assert_eq!(first.new_work.len(), 4);
    assert_eq!(first.actions().count(), 0, "nothing to act on without work");
    let dry = plan_as_if_created("p", &s, &snap, &[], t(NOW));
    assert_eq!(dry.new_work, first.new_work);
    let reserved: Vec<&str> = dry
        .actions()
        .filter_map(|a| match a {
            Action::CreateReservation { node, .. } => Some(node.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reserved, ["n1", "n2"], "the budget allows 2");
    assert_eq!(dry.budget, {
        let mut work = vec![];
        apply(&mut work, &first);
        plan("p", &s, &snap, &work, t(NOW)).budget
    });
}

#[test]
fn nodelist_narrows_the_scope_but_not_the_budget() {
    let mut sp = spec();
    sp.nodelist = Some("n[1-2]".into());
    sp.reservations.enabled = true;
    sp.budget.max_unavailable = Some(1);
    sp.campaign.reboot_required_before = Some(t(NOW));
    let s = Settings::from_spec(&sp, t(NOW)).unwrap();
    let snap = snapshot(
        (1..=4).map(|i| node(&format!("n{i}"), "IDLE", 0)).collect(),
        vec![],
    );
    let p = plan("p", &s, &snap, &[], t(NOW));
    assert_eq!(
        p.new_work
            .iter()
            .map(|w| w.node.as_str())
            .collect::<Vec<_>>(),
        ["n1", "n2"]
    );
    assert_eq!(p.budget.total, 4);
}

#[test]
fn earliest_release_first_under_the_budget() {
    let s = settings(50.0); // 4 nodes → 2 allowed
    let snap = snapshot(
        (1..=4)
            .map(|i| node(&format!("n{i}"), "ALLOCATED", 0))
            .collect(),
        vec![
            job(1, "n1", Some(NOW + 300), false),
            job(2, "n2", Some(NOW + 30), false),
            job(3, "n3", Some(NOW + 120), false),
            job(4, "n4", Some(NOW + 10), false),
        ],
    );
    let p = plan("p", &s, &snap, &pending(&["n1", "n2", "n3", "n4"]), t(NOW));
    // n4 and n2 are released within the lead time, n3 and n1 beyond it, where the
    // budget still takes as many reservations ahead as it allows (2): all at their
    // release times, none overlapping more than two.
    assert_eq!(admitted(&p), ["n4", "n2", "n3", "n1"]);
    assert!(!p.budget_exhausted);
    assert!(p.preview.is_empty());
    assert_eq!(
        reservation_starts(&p),
        [
            ("n4".into(), Some(t(NOW + 10))),
            ("n2".into(), Some(t(NOW + 30))),
            ("n3".into(), Some(t(NOW + 120))),
            ("n1".into(), Some(t(NOW + 300)))
        ]
    );
    let Action::CreateReservation {
        start, name, flags, ..
    } = &p.updates[0].actions[0]
    else {
        panic!("{:?}", p.updates[0].actions)
    };
    assert_eq!(*start, Some(t(NOW + 10)));
    assert_eq!(name, &format!("slurm-maint-n4-{}", campaign_id(t(NOW))));
    assert_eq!(flags, &["MAINT"]);
}

#[test]
fn down_nodes_count_against_the_budget_and_are_left_alone() {
    let s = settings(50.0); // 2 allowed
    let mut drained = node("n1", "IDLE+DRAIN", 0);
    drained.reason = Some("bad DIMM".into());
    let snap = snapshot(
        vec![
            drained,
            node("n2", "IDLE", 0),
            node("n3", "IDLE", 0),
            node("n4", "IDLE", 0),
        ],
        vec![],
    );
    let p = plan("p", &s, &snap, &pending(&["n1", "n2", "n3", "n4"]), t(NOW));
    assert_eq!(admitted(&p), ["n2"]);
    assert!(p.waiting["n1"].contains("bad DIMM"), "{:?}", p.waiting);
    assert!(p.waiting["n3"].contains("budget full"));
    assert_eq!(p.blocked.iter().collect::<Vec<_>>(), ["n1"]);
    assert_eq!(p.budget.occupied().len(), 2);
}

#[test]
fn one_node_always_proceeds_in_a_small_partition() {
    // The seed deadlocked here: 25 % of 4 nodes.
    let s = settings(25.0);
    let snap = snapshot(
        (1..=4).map(|i| node(&format!("n{i}"), "IDLE", 0)).collect(),
        vec![],
    );
    let p = plan("p", &s, &snap, &pending(&["n1", "n2", "n3", "n4"]), t(NOW));
    assert_eq!(admitted(&p), ["n1"]);
}

/// The budget is a timeline: a reservation ahead holds a slot only over its expected
/// interval, reservations are made at most the lead time ahead, and anyone's MAINT
/// reservation counts from its start.
#[test]
fn reservations_ahead_hold_the_budget_only_over_their_interval() {
    let s = settings(25.0); // 1 of 4, lead 60 min, a node expected out 10 min
    let snap = snapshot(
        (1..=4)
            .map(|i| node(&format!("n{i}"), "ALLOCATED", 0))
            .collect(),
        (1..=4)
            .map(|i| job(i, &format!("n{i}"), Some(NOW + 15 * i as i64), false))
            .collect(),
    );
    let p = plan("p", &s, &snap, &pending(&["n1", "n2", "n3", "n4"]), t(NOW));
    // Releases at +15, +30, +45 min: one node out at a time, all within the lead time;
    // +60 min is the lead time itself; nothing out now.
    assert_eq!(admitted(&p), ["n1", "n2", "n3", "n4"]);
    assert_eq!(p.budget.unavailable.len(), 0);
    assert_eq!(p.budget.reserved_ahead.len(), 4);
    assert_eq!(p.peak_out, 1);
    assert!(!p.budget_exhausted);

    // Someone else's MAINT reservation on n3 from +30 to +600 min takes the one slot
    // from +30 on: only n1 fits, before it.
    let mut snap2 = snap.clone();
    snap2.reservations.push(Reservation {
        name: "admin-maint".into(),
        start: t(NOW + 30),
        end: t(NOW + 600),
        nodes: vec!["n3".into()],
        flags: vec!["MAINT".into()],
        users: vec!["root".into()],
        accounts: vec![],
        partition: None,
    });
    let p2 = plan("p", &s, &snap2, &pending(&["n1", "n2", "n3", "n4"]), t(NOW));
    assert_eq!(admitted(&p2), ["n1"], "{:#?}", p2.budget);
    assert!(p2.budget.reserved_ahead.contains("n3"));
    assert!(p2.waiting["n2"].starts_with("budget full: 0 of 1 allowed nodes out now"));

    // Reboots of 20 min: n1 [15, 35) leaves no room for n2 at its release (30), and n2
    // is not held empty for a later slot; n3 fits at 45, n4 not at 60.
    let mut s3 = s.clone();
    s3.reboot_timeout = SignedDuration::from_mins(20);
    let p3 = plan("p", &s3, &snap, &pending(&["n1", "n2", "n3", "n4"]), t(NOW));
    assert_eq!(
        reservation_starts(&p3),
        [
            ("n1".into(), Some(t(NOW + 15))),
            ("n3".into(), Some(t(NOW + 45)))
        ]
    );
    assert!(p3.waiting["n2"].starts_with("budget full"));
}

#[test]
fn preemptable_jobs_are_waited_for_or_cancelled() {
    let mut s = settings(100.0);
    let snap = snapshot(
        vec![node("n1", "ALLOCATED", 0), node("n2", "ALLOCATED", 0)],
        vec![
            job(1, "n1", Some(NOW + 60), true),
            job(2, "n2", Some(NOW + 30), false),
            job(3, "n2", Some(NOW + 90), true),
        ],
    );
    s.lead_time = SignedDuration::from_hours(2);
    let p = plan("p", &s, &snap, &pending(&["n1", "n2"]), t(NOW));
    let starts = reservation_starts(&p);
    assert_eq!(
        starts,
        [
            ("n1".into(), Some(t(NOW + 60))),
            ("n2".into(), Some(t(NOW + 90)))
        ]
    );
    assert!(!p.actions().any(|a| matches!(a, Action::CancelJob { .. })));

    s.terminate_preemptable = true;
    let p = plan("p", &s, &snap, &pending(&["n1", "n2"]), t(NOW));
    let acts: Vec<_> = p.actions().cloned().collect();
    assert!(acts.contains(&Action::CancelJob {
        job_id: 1,
        node: "n1".into()
    }));
    // n2's reservation starts when its non-preemptable job ends (+30): its preemptable
    // job is cancelled then, not now; the non-preemptable one never.
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, Action::CancelJob { job_id: 2 | 3, .. }))
    );
    let Action::CreateReservation { start, flags, .. } = &acts[2] else {
        panic!("{acts:?}")
    };
    assert_eq!(*start, Some(t(NOW + 30)));
    assert!(
        flags.contains(&"IGNORE_JOBS".to_string()),
        "it overlaps job 3"
    );
    let mut resv = snap.clone();
    resv.reservations.push(Reservation {
        name: reservation_name("slurm-maint", "n2", Some(&campaign_id(t(NOW)))),
        start: t(NOW + 30),
        end: t(NOW + 400),
        nodes: vec!["n2".into()],
        flags: vec!["MAINT".into(), "IGNORE_JOBS".into()],
        users: vec!["root".into()],
        accounts: vec![],
        partition: None,
    });
    resv.jobs.retain(|j| j.id != 2);
    let mut w = work_for("n2", Phase::Reserved);
    w.status.reservation_name = Some(resv.reservations[0].name.clone());
    w.status.reservation_start = Some(t(NOW + 30));
    let p2 = plan("p", &s, &resv, &[w], t(NOW + 30));
    assert!(
        p2.actions().any(|a| *a
            == Action::CancelJob {
                job_id: 3,
                node: "n2".into()
            }),
        "{:?}",
        p2.updates
    );
    // n1 starts now, over its running job: IGNORE_JOBS is needed.
    let Action::CreateReservation {
        start: None, flags, ..
    } = &acts[0]
    else {
        panic!("{acts:?}")
    };
    assert!(flags.contains(&"IGNORE_JOBS".to_string()));
}

#[test]
fn unlimited_jobs_go_last_and_reserve_now_over_the_job() {
    let mut s = settings(100.0);
    s.lead_time = SignedDuration::from_hours(10);
    let snap = snapshot(
        vec![node("n1", "ALLOCATED", 0), node("n2", "ALLOCATED", 0)],
        vec![
            job(1, "n1", None, false),
            job(2, "n2", Some(NOW + 500), false),
        ],
    );
    let p = plan("p", &s, &snap, &pending(&["n1", "n2"]), t(NOW));
    assert_eq!(admitted(&p), ["n2", "n1"]);
    let create_n1 = p
        .actions()
        .find(|a| matches!(a, Action::CreateReservation { node, .. } if node == "n1"))
        .unwrap();
    let Action::CreateReservation { start, flags, .. } = create_n1 else {
        unreachable!()
    };
    assert_eq!(*start, None);
    assert!(flags.contains(&"IGNORE_JOBS".into()));
}

#[test]
fn safe_by_default_monitor_only_and_pause_and_windows() {
    let mut sp = spec();
    sp.campaign.reboot_required_before = Some(t(NOW));
    let s = Settings::from_spec(&sp, t(NOW)).unwrap();
    let snap = snapshot(vec![node("n1", "IDLE", 0)], vec![]);
    let p = plan("p", &s, &snap, &pending(&["n1"]), t(NOW));
    assert!(p.updates.is_empty() && p.actions().next().is_none());
    assert!(p.waiting["n1"].contains("monitor only"));
    assert_eq!(p.preview.len(), 1, "the plan is still shown");

    let mut s = settings(100.0);
    s.paused = true;
    let p = plan("p", &s, &snap, &pending(&["n1"]), t(NOW));
    assert!(p.actions().next().is_none());
    assert!(p.waiting["n1"].contains("paused"));

    let mut s = settings(100.0);
    s.window_open = false;
    let p = plan("p", &s, &snap, &pending(&["n1"]), t(NOW));
    assert!(p.actions().next().is_none());
}

/// Expedited work goes first and does not wait for a window; the budget, pause and
/// monitor-only still hold.
#[test]
fn expedited_work_goes_first_and_skips_the_window_not_the_budget() {
    let mut s = settings(50.0); // 4 nodes → 2 allowed
    let snap = snapshot(
        (1..=4)
            .map(|i| node(&format!("n{i}"), "ALLOCATED", 0))
            .collect(),
        vec![
            job(1, "n1", Some(NOW + 10), false),
            job(2, "n2", Some(NOW + 10), false),
            job(3, "n3", Some(NOW + 10), false),
            job(4, "n4", Some(NOW + 10), false),
        ],
    );
    let work = pending(&["n1", "n2", "n3", "n4"]);
    s.expedited.insert(work[3].name.clone());
    // Window open: the expedited node first, then by name; the two that do not fit at
    // their release time wait for room then (no node is held empty for a later slot).
    let p = plan("p", &s, &snap, &work, t(NOW));
    assert_eq!(admitted(&p), ["n4", "n1"]);
    assert_eq!(
        reservation_starts(&p),
        [
            ("n4".into(), Some(t(NOW + 10))),
            ("n1".into(), Some(t(NOW + 10)))
        ]
    );
    assert!(
        p.waiting["n2"].starts_with("budget full"),
        "{:?}",
        p.waiting
    );
    // Window closed: only the expedited node.
    s.window_open = false;
    let p = plan("p", &s, &snap, &work, t(NOW));
    assert_eq!(admitted(&p), ["n4"]);
    assert!(p.waiting["n1"].contains("outside the maintenance windows"));
    // The budget still holds: with 2 nodes down, nothing starts.
    let mut full = snap.clone();
    for n in full.nodes.iter_mut().take(2) {
        n.state = NodeState::parse("DOWN+DRAIN").unwrap();
    }
    let p = plan("p", &s, &full, &work, t(NOW));
    assert!(admitted(&p).is_empty());
    assert!(p.waiting["n4"].contains("budget full"));
    // Paused: nothing.
    s.paused = true;
    let p = plan("p", &s, &snap, &work, t(NOW));
    assert!(admitted(&p).is_empty());
    assert!(p.waiting["n4"].contains("paused"));
}

/// OCI work ready to start takes its slots before rolling reboots do.
#[test]
fn slots_held_for_oci_work_are_not_admitted() {
    let s = settings(40.0); // 6 nodes → 2 allowed
    let snap = snapshot(
        ["n1", "n2", "n3", "n4", "g1", "g2"]
            .iter()
            .map(|n| node(n, "IDLE", 0))
            .collect(),
        vec![],
    );
    let oci = |node: &str| Work {
        name: format!("oci-{node}"),
        node: node.into(),
        action: MaintenanceAction::OciMaintenance,
        campaign: None,
        status: NodeMaintenanceStatus::default(),
        oci: Some(OciFacts {
            event_id: format!("ev-{node}"),
            reason: None,
            state: Some(crate::oci::workflow::EventState {
                lifecycle_state: "SCHEDULED".into(),
                time_window_start: Some(t(NOW + 600)),
                can_reschedule: true,
                time_hard_due_date: None,
                failed_reschedule: None,
            }),
        }),
    };
    let rolling = |p: &Plan| {
        admitted(p)
            .into_iter()
            .filter(|n| n.starts_with('n'))
            .count()
    };
    let mut work = pending(&["n1", "n2", "n3", "n4"]);
    work.push(oci("g1"));
    let p = plan("p", &s, &snap, &work, t(NOW));
    assert_eq!(rolling(&p), 1);
    assert!(
        p.waiting
            .values()
            .any(|w| w.contains("1 held for OCI maintenance"))
    );
    work.push(oci("g2"));
    assert_eq!(rolling(&plan("p", &s, &snap, &work, t(NOW))), 0);
}

#[test]
fn paused_policies_finish_in_flight_nodes() {
    let mut s = settings(100.0);
    s.paused = true;
    let snap = snapshot(vec![node("n1", "IDLE", 0)], vec![]);
    let mut w = work_for("n1", Phase::PendingReboot);
    w.status.reservation_name = Some(reservation_name("slurm-maint", "n1", w.campaign.as_deref()));
    let p = plan("p", &s, &snap, &[w], t(NOW));
    assert!(matches!(p.updates[0].actions[..], [Action::Reboot { .. }]));
}

/// `spec.blockers`: while a named alert fires, or Prometheus cannot say, no new work
/// starts (rolling or OCI), each waiting node says why; in-flight work goes on; the
/// plan carries the fact for the status.
#[test]
fn blockers_hold_new_work_not_work_in_flight() {
    let mut s = settings(100.0);
    let snap = snapshot(
        vec![
            node("n1", "IDLE", 0),
            node("n2", "IDLE", 0),
            node("g1", "IDLE", 0),
        ],
        vec![],
    );
    let mut rebooting = work_for("n2", Phase::PendingReboot);
    rebooting.status.reservation_name = Some(reservation_name(
        "slurm-maint",
        "n2",
        rebooting.campaign.as_deref(),
    ));
    let oci = Work {
        name: "oci-g1".into(),
        node: "g1".into(),
        action: MaintenanceAction::OciMaintenance,
        campaign: None,
        status: NodeMaintenanceStatus::default(),
        oci: Some(OciFacts {
            event_id: "ev-g1".into(),
            reason: None,
            state: Some(crate::oci::workflow::EventState {
                lifecycle_state: "SCHEDULED".into(),
                time_window_start: Some(t(NOW + 600)),
                can_reschedule: true,
                time_hard_due_date: None,
                failed_reschedule: None,
            }),
        }),
    };
    let work = vec![work_for("n1", Phase::Pending), rebooting, oci];
    let oci_started = |p: &Plan| p.updates.iter().any(|u| u.name == "oci-g1");
    let reboots = |p: &Plan| {
        p.actions()
            .filter(|a| matches!(a, Action::Reboot { node, .. } if node == "n2"))
            .count()
    };

    // No blockers in the spec, or none firing: everything starts.
    for b in [Blockers::Unset, Blockers::Firing(vec![])] {
        s.blockers = b.clone();
        let p = plan("p", &s, &snap, &work, t(NOW));
        assert_eq!(admitted(&p), ["g1", "n1"], "{b:?}");
        assert!(oci_started(&p), "{b:?}");
        assert_eq!(p.blockers, b);
    }
    for (b, says) in [
        (
            Blockers::Firing(vec!["NodeDown".into(), "DiskFull".into()]),
            "blocked by firing alert(s): NodeDown, DiskFull",
        ),
        (
            Blockers::Unreachable("connection refused".into()),
            "Prometheus not reachable, so the blocking alerts are unknown: connection refused",
        ),
        (
            Blockers::Error("HTTP 503".into()),
            "Prometheus did not give its alerts, so the blocking alerts are unknown: HTTP 503",
        ),
    ] {
        s.blockers = b.clone();
        let p = plan("p", &s, &snap, &work, t(NOW));
        assert!(admitted(&p).is_empty(), "{b:?}: {:?}", p.updates);
        assert!(!oci_started(&p), "{b:?}");
        assert!(p.waiting["n1"].contains(says), "{b:?}: {}", p.waiting["n1"]);
        assert!(
            p.preview
                .iter()
                .any(|n| n.node == "n1" && n.waiting.as_deref().is_some_and(|w| w.contains(says))),
            "{:?}",
            p.preview
        );
        assert!(!p.budget_exhausted, "held by the blockers, not the budget");
        assert_eq!(reboots(&p), 1, "{b:?}: in-flight work goes on");
        assert_eq!(p.blockers, b);
    }
    // Pause and monitor-only keep their own reasons first.
    s.blockers = Blockers::Firing(vec!["NodeDown".into()]);
    s.paused = true;
    let p = plan("p", &s, &snap, &work, t(NOW));
    assert!(p.waiting["n1"].contains("paused"));
}

/// Drive one node through every phase with a scripted Slurm.
#[test]
fn full_state_machine_of_one_node() {
    let s = settings(100.0);
    let resv = reservation_name("slurm-maint", "n1", Some(&campaign_id(t(NOW))));
    let mut snap = snapshot(
        vec![node("n1", "ALLOCATED", 0)],
        vec![job(1, "n1", Some(NOW + 30), false)],
    );
    let mut work = vec![];
    let mut now = NOW;

    let pass = |snap: &Snapshot, work: &mut Vec<Work>, now: i64| {
        let p = plan("p", &s, snap, work, t(now));
        apply(work, &p);
        p
    };
    let p = pass(&snap, &mut work, now);
    assert_eq!(p.new_work.len(), 1);
    let p = pass(&snap, &mut work, now);
    assert_eq!(work[0].status.phase, Phase::Reserved);
    assert!(
        matches!(&p.updates[0].actions[0], Action::CreateReservation { start: Some(x), .. } if *x == t(NOW + 30))
    );

    // The pass died before the reservation was created: the next pass creates it again.
    let p = pass(&snap, &mut work, now);
    assert!(
        matches!(&p.updates[0].actions[0], Action::CreateReservation { name, .. } if *name == resv)
    );
    snap.reservations.push(Reservation {
        name: resv.clone(),
        start: t(NOW + 30),
        end: t(NOW + 30 + 360),
        nodes: vec!["n1".into()],
        flags: vec!["MAINT".into()],
        users: vec!["root".into()],
        accounts: vec![],
        partition: None,
    });
    // Nothing to do while waiting.
    let p = pass(&snap, &mut work, now);
    assert!(p.updates.is_empty(), "{:?}", p.updates);

    // The job ended early: the reservation moves to now.
    snap.jobs.clear();
    now += 5;
    let p = pass(&snap, &mut work, now);
    assert_eq!(
        p.updates[0].actions,
        [Action::UpdateReservationStart {
            name: resv.clone(),
            start: None
        }]
    );
    snap.reservations[0].start = t(now);
    now += 1;
    pass(&snap, &mut work, now);
    assert_eq!(work[0].status.phase, Phase::PendingReboot);
    let p = pass(&snap, &mut work, now);
    assert!(matches!(p.updates[0].actions[..], [Action::Reboot { .. }]));
    assert_eq!(work[0].status.phase, Phase::Rebooting);
    assert_eq!(work[0].status.attempts, 1);
    assert_eq!(work[0].status.boot_time_before, Some(t(0)));

    snap.nodes[0].state = NodeState::parse("DOWN+DRAIN+REBOOT_ISSUED").unwrap();
    now += 1;
    pass(&snap, &mut work, now);
    assert_eq!(work[0].status.phase, Phase::Recovering);
    snap.nodes[0].state = NodeState::parse("IDLE+MAINTENANCE+RESERVED").unwrap();
    snap.nodes[0].boot_time = Some(t(now));
    now += 1;
    pass(&snap, &mut work, now);
    assert_eq!(work[0].status.phase, Phase::HealthCheck);
    // Waits for the health result.
    assert!(pass(&snap, &mut work, now).updates.is_empty());
    snap.health.insert(
        "n1".into(),
        HealthResult {
            healthy: true,
            message: "ok".into(),
            checks: vec![],
        },
    );
    let p = pass(&snap, &mut work, now);
    assert_eq!(work[0].status.phase, Phase::Completed);
    assert_eq!(
        p.updates[0].actions,
        [Action::DeleteReservation { name: resv.clone() }]
    );
    // Reservation still there (the delete was lost): deleted again; once gone, nothing.
    assert_eq!(pass(&snap, &mut work, now).updates[0].actions.len(), 1);
    snap.reservations.clear();
    let p = pass(&snap, &mut work, now);
    assert!(p.updates.is_empty() && p.new_work.is_empty());
    let phases: Vec<Phase> = work[0].status.transitions.iter().map(|t| t.phase).collect();
    assert_eq!(
        phases,
        [
            Phase::Reserved,
            Phase::PendingReboot,
            Phase::Rebooting,
            Phase::Recovering,
            Phase::HealthCheck,
            Phase::Completed
        ]
    );
}

#[test]
fn timeouts_retry_then_fail_and_keep_the_node_drained() {
    let s = settings(100.0);
    let snap = snapshot(vec![node("n1", "DOWN+DRAIN+REBOOT_ISSUED", 0)], vec![]);
    let mut w = work_for("n1", Phase::Rebooting);
    w.status.attempts = 1;
    w.status.boot_time_before = Some(t(0));
    w.status.reboot_issued_at = Some(t(NOW));
    // Within the timeout: still rebooting.
    let p = plan("p", &s, &snap, std::slice::from_ref(&w), t(NOW + 5));
    assert_eq!(p.updates[0].status.phase, Phase::Recovering);
    // Past it: back to PendingReboot for another attempt.
    let p = plan("p", &s, &snap, std::slice::from_ref(&w), t(NOW + 11));
    assert_eq!(p.updates[0].status.phase, Phase::PendingReboot);
    assert!(
        p.updates[0]
            .status
            .last_error
            .as_deref()
            .unwrap()
            .contains("not back in service")
    );
    // The last attempt: Failed, drained with a reason.
    w.status.attempts = 3;
    let p = plan("p", &s, &snap, std::slice::from_ref(&w), t(NOW + 11));
    assert_eq!(p.updates[0].status.phase, Phase::Failed);
    assert!(
        matches!(&p.updates[0].actions[0], Action::Drain { reason, .. } if reason.contains("after 3 attempts"))
    );
}

/// A node that does not respond is not rebooted again through Slurm (it cannot be): it
/// gets the reboot timeout to come back by itself, then fails with a clear reason.
#[test]
fn a_node_that_does_not_respond_is_not_rebooted_again() {
    let s = settings(100.0);
    let dead = snapshot(vec![node("n1", "DOWN+DRAIN+NOT_RESPONDING", 0)], vec![]);
    let mut w = work_for("n1", Phase::PendingReboot);
    w.status.attempts = 1;
    w.status.phase_since = Some(t(NOW));
    let p = plan("p", &s, &dead, std::slice::from_ref(&w), t(NOW + 5));
    assert!(p.updates.is_empty(), "{:?}", p.updates);
    let p = plan("p", &s, &dead, std::slice::from_ref(&w), t(NOW + 11));
    let u = &p.updates[0];
    assert_eq!(u.status.phase, Phase::Failed);
    assert_eq!(u.status.attempts, 1, "no attempt spent");
    assert!(
        u.status
            .last_error
            .as_deref()
            .unwrap()
            .contains("not responding")
    );
    assert!(
        matches!(&u.actions[0], Action::Drain { reason, .. } if reason.starts_with("slurm-maint: node not responding")),
        "{:?}",
        u.actions
    );
    assert!(!u.actions.iter().any(|a| matches!(a, Action::Reboot { .. })));
    // Back by itself in time: the next attempt goes ahead.
    let back = snapshot(vec![node("n1", "IDLE+DRAIN", 0)], vec![]);
    let p = plan("p", &s, &back, std::slice::from_ref(&w), t(NOW + 6));
    assert!(matches!(p.updates[0].actions[..], [Action::Reboot { .. }]));
    assert_eq!(p.updates[0].status.attempts, 2);
}

/// A refused reboot fails its attempt at once: another next pass, the last one Failed
/// and drained. A node already rebooting is never rebooted again.
#[test]
fn a_refused_reboot_fails_the_attempt_at_once() {
    let s = settings(100.0);
    let mut w = work_for("n1", Phase::Rebooting);
    w.status.attempts = 1;
    w.status.reboot_issued_at = Some(t(NOW));
    let (st, actions) = reboot_refused(&w, &w.status, 3, "pre-reboot hook failed", t(NOW));
    assert_eq!(st.phase, Phase::PendingReboot);
    assert_eq!(st.reboot_issued_at, None);
    assert!(actions.is_empty());
    assert!(
        st.last_error
            .as_deref()
            .unwrap()
            .contains("reboot refused: pre-reboot hook failed")
    );
    // The next pass asks again (attempt 2).
    let idle = snapshot(vec![node("n1", "IDLE+MAINTENANCE+RESERVED", 0)], vec![]);
    let mut again = w.clone();
    again.status = st;
    let p = plan("p", &s, &idle, std::slice::from_ref(&again), t(NOW + 1));
    assert!(matches!(p.updates[0].actions[..], [Action::Reboot { .. }]));
    assert_eq!(p.updates[0].status.attempts, 2);
    // ... unless a reboot is under way after all.
    let rebooting = snapshot(vec![node("n1", "IDLE+REBOOT_REQUESTED", 0)], vec![]);
    let p = plan(
        "p",
        &s,
        &rebooting,
        std::slice::from_ref(&again),
        t(NOW + 1),
    );
    assert!(p.actions().next().is_none(), "{:?}", p.updates);
    // The last attempt: Failed, drained.
    w.status.attempts = 3;
    let (st, actions) = reboot_refused(&w, &w.status, 3, "pre-reboot hook failed", t(NOW));
    assert_eq!(st.phase, Phase::Failed);
    assert!(
        matches!(&actions[..], [Action::Drain { reason, .. }] if reason.contains("reboot refused"))
    );
}

#[test]
fn slurm_reboot_timeout_fails_the_attempt_at_once() {
    let s = settings(100.0);
    let mut n = node("n1", "DOWN+DRAIN", 0);
    n.reason = Some("slurm-maint: x : reboot timed out".into());
    let mut w = work_for("n1", Phase::Recovering);
    w.status.attempts = 1;
    w.status.boot_time_before = Some(t(0));
    w.status.reboot_issued_at = Some(t(NOW));
    let p = plan("p", &s, &snapshot(vec![n], vec![]), &[w], t(NOW + 2));
    assert_eq!(p.updates[0].status.phase, Phase::PendingReboot);
}

#[test]
fn failed_health_check_fails_and_drains() {
    let s = settings(100.0);
    let mut snap = snapshot(vec![node("n1", "IDLE", NOW)], vec![]);
    snap.health.insert(
        "n1".into(),
        HealthResult {
            healthy: false,
            message: "GPU 3 missing".into(),
            checks: vec![],
        },
    );
    let p = plan(
        "p",
        &s,
        &snap,
        &[work_for("n1", Phase::HealthCheck)],
        t(NOW),
    );
    assert_eq!(p.updates[0].status.phase, Phase::Failed);
    assert!(
        matches!(&p.updates[0].actions[0], Action::Drain { reason, .. } if reason.contains("GPU 3 missing"))
    );
}

#[test]
fn withdrawing_the_campaign_releases_unstarted_nodes() {
    let mut s = settings(100.0);
    s.reboot_required_before = None;
    let snap = snapshot(vec![node("n1", "IDLE", 0), node("n2", "IDLE", 0)], vec![]);
    let mut reserved = work_for("n1", Phase::Reserved);
    let resv = reservation_name("slurm-maint", "n1", reserved.campaign.as_deref());
    reserved.status.reservation_name = Some(resv.clone());
    let mut snap2 = snap.clone();
    snap2.reservations.push(Reservation {
        name: resv.clone(),
        start: t(NOW + 100),
        end: t(NOW + 400),
        nodes: vec!["n1".into()],
        flags: vec!["MAINT".into()],
        users: vec![],
        accounts: vec![],
        partition: None,
    });
    let p = plan(
        "p",
        &s,
        &snap2,
        &[reserved, work_for("n2", Phase::Pending)],
        t(NOW),
    );
    assert!(p.updates.iter().all(|u| u.status.phase == Phase::Completed));
    assert_eq!(
        p.actions().cloned().collect::<Vec<_>>(),
        [Action::DeleteReservation { name: resv }]
    );
}

/// Our reservations ahead, n1 at +200 and n2 at +205 min, and `down` nodes down.
fn reserved_ahead_world(down: &[&str]) -> (Snapshot, Vec<Work>) {
    let mut work = vec![];
    for (n, start) in [("n1", NOW + 200), ("n2", NOW + 205)] {
        let mut w = work_for(n, Phase::Reserved);
        w.status.reservation_name = Some(reservation_name("slurm-maint", n, w.campaign.as_deref()));
        w.status.reservation_start = Some(t(start));
        work.push(w);
    }
    let state = |n: &str| if down.contains(&n) { "DOWN*" } else { "IDLE" };
    let mut snap = snapshot(
        vec![
            node("n1", "ALLOCATED", 0),
            node("n2", "ALLOCATED", 0),
            node("n3", state("n3"), 0),
            node("n4", state("n4"), 0),
        ],
        vec![
            job(1, "n1", Some(NOW + 200), false),
            job(2, "n2", Some(NOW + 205), false),
        ],
    );
    for w in &work {
        snap.reservations.push(Reservation {
            name: w.status.reservation_name.clone().unwrap(),
            start: w.status.reservation_start.unwrap(),
            end: t(NOW + 1000),
            nodes: vec![w.node.clone()],
            flags: vec!["MAINT".into()],
            users: vec![],
            accounts: vec![],
            partition: None,
        });
    }
    (snap, work)
}

#[test]
fn nodes_going_down_elsewhere_move_or_withdraw_future_reservations() {
    let s = settings(50.0); // 4 nodes → 2 allowed; a node expected out 10 min
    // Nothing down: n1 [200, 210) and n2 [205, 215) fit together; nothing moves.
    let (snap, work) = reserved_ahead_world(&[]);
    assert!(plan("p", &s, &snap, &work, t(NOW)).updates.is_empty());

    // n3 went down: at 205 three would be out; n2, the later, moves to n1's end.
    let (snap, work) = reserved_ahead_world(&["n3"]);
    let p = plan("p", &s, &snap, &work, t(NOW));
    let [u] = &p.updates[..] else {
        panic!("{:?}", p.updates)
    };
    assert_eq!(u.node, "n2");
    assert_eq!(u.status.phase, Phase::Reserved);
    assert_eq!(u.status.reservation_start, Some(t(NOW + 210)));
    assert!(
        matches!(&u.actions[..], [Action::UpdateReservationStart { start: Some(x), .. }] if *x == t(NOW + 210))
    );
    assert_eq!(p.peak_out, 2);

    // n3 and n4 down: no room at all while they are; both reservations are withdrawn.
    let (snap, work) = reserved_ahead_world(&["n3", "n4"]);
    let p = plan("p", &s, &snap, &work, t(NOW));
    let withdrawn: Vec<_> = p
        .updates
        .iter()
        .filter(|u| u.status.phase == Phase::Pending)
        .map(|u| u.node.as_str())
        .collect();
    assert_eq!(withdrawn, ["n1", "n2"]);
    assert!(
        p.updates
            .iter()
            .all(|u| matches!(&u.actions[..], [Action::DeleteReservation { .. }]))
    );
    assert_eq!(p.budget.occupied().len(), 2);
}

#[test]
fn vanished_nodes_fail_and_leave_nothing_behind() {
    let s = settings(100.0);
    let mut w = work_for("gone", Phase::Reserved);
    let resv = reservation_name("slurm-maint", "gone", w.campaign.as_deref());
    w.status.reservation_name = Some(resv.clone());
    let mut snap = snapshot(vec![node("n1", "IDLE", NOW)], vec![]);
    snap.reservations.push(Reservation {
        name: resv.clone(),
        start: t(0),
        end: t(NOW + 100),
        nodes: vec!["gone".into()],
        flags: vec!["MAINT".into()],
        users: vec![],
        accounts: vec![],
        partition: None,
    });
    let p = plan("p", &s, &snap, &[w], t(NOW));
    assert_eq!(p.updates[0].status.phase, Phase::Failed);
    assert_eq!(
        p.updates[0].actions,
        [Action::DeleteReservation { name: resv }]
    );
}

#[test]
fn spec_errors_are_clear() {
    let mut sp = spec();
    sp.nodelist = Some("n[3-1]".into());
    let e = Settings::from_spec(&sp, t(0)).unwrap_err();
    assert!(e.to_string().starts_with("spec.nodelist:"), "{e}");
    let mut sp = spec();
    sp.reboots.enabled = true;
    assert_eq!(
        Settings::from_spec(&sp, t(0)),
        Err(SpecError::RebootsWithoutReservations)
    );
    let mut sp = spec();
    sp.budget.max_unavailable = Some(1);
    sp.budget.max_unavailable_percent = Some(5.0);
    assert_eq!(Settings::from_spec(&sp, t(0)), Err(SpecError::BothLimits));
    let mut sp = spec();
    sp.reservations.users.clear();
    assert_eq!(Settings::from_spec(&sp, t(0)), Err(SpecError::NoUsers));
}

#[test]
fn work_names_are_valid_and_distinct() {
    assert_eq!(work_name("pol", "node001", "c1"), "pol-node001-c1");
    let a = work_name("pol", "Node_A", "c1");
    let b = work_name("pol", "node-a", "c1");
    assert_ne!(a, b);
    assert!(
        a.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    );
    let long = work_name(&"p".repeat(250), "n", "c1");
    assert!(long.len() <= 253);
}

// ---- properties ----

#[derive(Clone, Debug)]
struct World {
    states: Vec<&'static str>,
    jobs: Vec<(usize, Option<i64>, bool)>,
    phases: Vec<Option<(Phase, i64)>>,
    foreign_resv: Vec<(usize, i64)>,
    pct: f64,
    terminate: bool,
}

const STATES: &[&str] = &[
    "IDLE",
    "IDLE",
    "IDLE",
    "ALLOCATED",
    "MIXED",
    "IDLE+DRAIN",
    "DOWN*",
    "ALLOCATED+DRAIN",
    "DOWN+DRAIN+REBOOT_ISSUED",
    "IDLE+MAINTENANCE+RESERVED",
    "IDLE+NOT_RESPONDING",
];

fn world() -> impl Strategy<Value = World> {
    (1usize..24).prop_flat_map(|n| {
        (
            prop::collection::vec(prop::sample::select(STATES), n),
            prop::collection::vec(
                (
                    0..n,
                    prop::option::weighted(0.9, -30i64..600),
                    any::<bool>(),
                ),
                0..40,
            ),
            prop::collection::vec(
                prop::option::of((prop::sample::select(Phase::ALL.to_vec()), -100i64..400)),
                n,
            ),
            prop::collection::vec((0..n, -60i64..300), 0..3),
            prop::sample::select(vec![1.0, 5.0, 10.0, 25.0, 33.0, 50.0, 100.0]),
            any::<bool>(),
        )
            .prop_map(
                |(states, jobs, phases, foreign_resv, pct, terminate)| World {
                    states,
                    jobs,
                    phases,
                    foreign_resv,
                    pct,
                    terminate,
                },
            )
    })
}

fn build(w: &World) -> (Settings, Snapshot, Vec<Work>) {
    let mut s = settings(w.pct);
    s.terminate_preemptable = w.terminate;
    let nodes: Vec<Node> = w
        .states
        .iter()
        .enumerate()
        .map(|(i, st)| node(&format!("n{i:02}"), st, 0))
        .collect();
    let jobs = w
        .jobs
        .iter()
        .enumerate()
        .map(|(i, (n, end, pre))| {
            job(
                i as u64 + 1,
                &format!("n{n:02}"),
                end.map(|e| NOW + e),
                *pre,
            )
        })
        .collect();
    let mut reservations: Vec<Reservation> = w
        .foreign_resv
        .iter()
        .enumerate()
        .map(|(i, (n, start))| Reservation {
            name: format!("admin-{i}"),
            start: t(NOW + start),
            end: t(NOW + start + 120),
            nodes: vec![format!("n{n:02}")],
            flags: vec!["MAINT".into()],
            users: vec!["root".into()],
            accounts: vec![],
            partition: None,
        })
        .collect();
    let mut work = vec![];
    for (i, ph) in w.phases.iter().enumerate() {
        let Some((phase, start)) = ph else { continue };
        let mut wk = work_for(&format!("n{i:02}"), *phase);
        if *phase != Phase::Pending {
            let name = reservation_name("slurm-maint", &wk.node, wk.campaign.as_deref());
            wk.status.reservation_name = Some(name.clone());
            wk.status.reservation_start = Some(t(NOW + start));
            wk.status.attempts = 1;
            wk.status.reboot_issued_at = Some(t(NOW - 1));
            reservations.push(Reservation {
                name,
                start: t(NOW + start),
                end: t(NOW + start + 360),
                nodes: vec![wk.node.clone()],
                flags: vec!["MAINT".into()],
                users: vec!["root".into()],
                accounts: vec![],
                partition: None,
            });
        }
        work.push(wk);
    }
    (
        s,
        snapshot(nodes, jobs).with_reservations(reservations),
        work,
    )
}

impl Snapshot {
    fn with_reservations(mut self, r: Vec<Reservation>) -> Self {
        self.reservations = r;
        self
    }
}

/// Most nodes out at any moment from `now` on (within `node`'s span only, when given),
/// given the work's statuses after `updates`: each node once, over the hull of what
/// holds it.
fn independent_peak(
    s: &Settings,
    snap: &Snapshot,
    work: &[Work],
    updates: &[WorkUpdate],
    now: Timestamp,
    node: Option<&str>,
) -> usize {
    let d = s.reboot_timeout + s.settle_time;
    let far = now + SignedDuration::from_hours(24 * 365);
    let mut spans: BTreeMap<String, (Timestamp, Timestamp)> = BTreeMap::new();
    let mut hold = |n: &str, a: Timestamp, b: Timestamp| {
        let e = spans.entry(n.to_string()).or_insert((a, b));
        *e = (e.0.min(a), e.1.max(b));
    };
    for n in snap.nodes.iter().filter(|n| !n.state.in_service()) {
        hold(&n.name, now, far);
    }
    let status = |w: &Work| {
        updates
            .iter()
            .find(|u| u.name == w.name)
            .map_or(w.status.clone(), |u| u.status.clone())
    };
    let live: BTreeSet<String> = work
        .iter()
        .filter(|w| !status(w).phase.is_terminal())
        .filter_map(|w| status(w).reservation_name)
        .collect();
    let deleted: BTreeSet<&String> = updates
        .iter()
        .flat_map(|u| &u.actions)
        .filter_map(|a| match a {
            Action::DeleteReservation { name } => Some(name),
            _ => None,
        })
        .collect();
    for r in &snap.reservations {
        if r.is_maint() && r.end > now && !live.contains(&r.name) && !deleted.contains(&r.name) {
            for n in r
                .nodes
                .iter()
                .filter(|n| snap.nodes.iter().any(|x| &x.name == *n))
            {
                hold(n, r.start.max(now), r.end);
            }
        }
    }
    for w in work {
        let st = status(w);
        match st.phase {
            Phase::Pending | Phase::Completed | Phase::Failed => {}
            Phase::Reserved if st.reservation_start.is_some_and(|x| x > now) => {
                let from = st.reservation_start.unwrap();
                hold(&w.node, from, from + d);
            }
            // In flight: out from now until its expected time out has passed since it
            // went out (when it last became PendingReboot, else since its reservation
            // started; reserved: now or when its jobs end); past that, or over a job
            // with no end, with no end known; and at least past the next pass.
            _ => {
                let mut out = st
                    .transitions
                    .iter()
                    .rev()
                    .find(|t| t.phase == Phase::PendingReboot)
                    .map(|t| t.time)
                    .or(st.reservation_start)
                    .unwrap_or(now)
                    .min(now);
                let mut open = false;
                if st.phase == Phase::Reserved {
                    // Taken out only once empty, which is now at the earliest.
                    out = now;
                    for j in snap
                        .jobs
                        .iter()
                        .filter(|j| j.nodes.contains(&w.node) && j.is_active())
                    {
                        if s.terminate_preemptable && j.preemptable {
                            continue;
                        }
                        match j.end_time {
                            Some(e) => out = out.max(e),
                            None => open = true,
                        }
                    }
                }
                let end = out + d;
                let end = if open || end <= now {
                    far
                } else {
                    end.max(now + s.interval + SignedDuration::from_secs(10))
                };
                hold(&w.node, now, end)
            }
        }
    }
    // The admitted node's own interval: from its reservation's start, for the expected
    // time out (the hull with what held it before may begin earlier).
    let within = node.and_then(|n| {
        let w = work.iter().find(|w| w.node == n)?;
        let from = status(w).reservation_start?.max(now);
        Some((from, spans.get(n).map_or(from + d, |(_, b)| *b)))
    });
    let moments: Vec<Timestamp> = std::iter::once(now)
        .chain(spans.values().map(|(a, _)| *a))
        .map(|m| within.map_or(m, |(a, _)| m.max(a)))
        .filter(|m| within.is_none_or(|(_, b)| *m < b))
        .collect();
    moments
        .iter()
        .map(|m| spans.values().filter(|(a, b)| a <= m && m < b).count())
        .max()
        .unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Admission never takes the partition past its budget: every node admitted found
    /// room, and afterwards |occupied| ≤ max(allowed, what it was before).
    #[test]
    fn never_plans_past_the_budget(w in world()) {
        let (s, snap, work) = build(&w);
        let p = plan("p", &s, &snap, &work, t(NOW));
        let admitted = admitted_nodes(&p, &work);
        // Out now, counted from the plan's own figures.
        let before = p.observed.combined().len();
        let after = p.budget.combined().len();
        prop_assert!(after <= before.max(p.budget.allowed));
        // And at every moment of every admitted node's interval, counted independently
        // of the planner's timeline (nodes down, anyone's MAINT reservation, ours in
        // flight for their expected time out, ours reserved ahead from their start):
        // within the budget.
        for n in &admitted {
            let over = independent_peak(&s, &snap, &work, &p.updates, t(NOW), Some(n.as_str()));
            prop_assert!(over <= p.budget.allowed, "{over} out over {n}'s interval > allowed {}", p.budget.allowed);
        }
        // No node that Slurm has down is ever admitted.
        for n in admitted {
            prop_assert!(!p.observed.down.contains(n));
        }
    }

    /// Only preemptable jobs are ever cancelled, and only when the policy allows it.
    #[test]
    fn never_plans_ending_a_non_preemptable_job(w in world()) {
        let (s, snap, work) = build(&w);
        let p = plan("p", &s, &snap, &work, t(NOW));
        for a in p.actions() {
            if let Action::CancelJob { job_id, node } = a {
                prop_assert!(s.terminate_preemptable);
                let j = snap.jobs.iter().find(|j| j.id == *job_id).unwrap();
                prop_assert!(j.preemptable, "job {job_id} on {node} is not preemptable");
                prop_assert!(j.nodes.contains(node));
            }
            // A reservation never starts before a job it may not end.
            if let Action::CreateReservation { node, start, .. } = a {
                // ...unless a job without a time limit makes the release time unknown:
                // then it starts now with IGNORE_JOBS, and running jobs are left to finish.
                let t0 = start.unwrap_or(t(NOW));
                let on_node: Vec<&Job> = snap.jobs.iter().filter(|j| j.nodes.contains(node) && j.is_active()).collect();
                let kept = |j: &&&Job| !(s.terminate_preemptable && j.preemptable);
                let unknown = on_node.iter().filter(kept).any(|j| j.end_time.is_none());
                if let Action::CreateReservation { flags, .. } = a && unknown {
                    prop_assert!(start.is_none() && flags.iter().any(|f| f == "IGNORE_JOBS"));
                    continue;
                }
                for j in on_node.iter().filter(kept) {
                    if let Some(end) = j.end_time {
                        prop_assert!(t0 >= end || end <= t(NOW), "reservation on {node} at {t0} overlaps job {}", j.id);
                    }
                }
            }
        }
    }

    /// The plan depends on the input, not its order.
    #[test]
    fn deterministic_and_order_independent(w in world(), seed in any::<u64>()) {
        let (s, snap, work) = build(&w);
        let p1 = plan("p", &s, &snap, &work, t(NOW));
        let p2 = plan("p", &s, &snap, &work, t(NOW));
        prop_assert_eq!(&p1, &p2);
        let mut shuffled = snap.clone();
        let mut work2 = work.clone();
        let rot = |len: usize| if len == 0 { 0 } else { (seed as usize) % len };
        let k = rot(shuffled.nodes.len());
        shuffled.nodes.rotate_left(k);
        shuffled.nodes.reverse();
        let k = rot(shuffled.jobs.len());
        shuffled.jobs.rotate_left(k);
        shuffled.reservations.reverse();
        work2.reverse();
        let p3 = plan("p", &s, &shuffled, &work2, t(NOW));
        prop_assert_eq!(p1, p3);
    }

    /// Rebooting is issued only for empty nodes in an active reservation of ours, and the
    /// same work is never rebooted twice in one pass.
    #[test]
    fn reboots_only_empty_reserved_nodes(w in world()) {
        let (s, snap, work) = build(&w);
        let p = plan("p", &s, &snap, &work, t(NOW));
        let mut seen = BTreeSet::new();
        for a in p.actions() {
            if let Action::Reboot { node, .. } = a {
                prop_assert!(seen.insert(node.clone()), "double reboot of {node}");
                prop_assert!(snap.jobs.iter().all(|j| !j.is_active() || !j.nodes.contains(node)));
                let wk = work.iter().find(|wk| &wk.node == node).unwrap();
                prop_assert_eq!(wk.status.phase, Phase::PendingReboot);
            }
        }
    }
}

/// Nodes moved from Pending to Reserved by this plan.
fn admitted_nodes<'a>(p: &'a Plan, work: &[Work]) -> Vec<&'a String> {
    p.updates
        .iter()
        .filter(|u| u.status.phase == Phase::Reserved)
        .filter(|u| {
            work.iter()
                .any(|w| w.name == u.name && w.status.phase == Phase::Pending)
        })
        .map(|u| &u.node)
        .collect()
}

/// The occupied count is computed once per admission, not per candidate, and other
/// parties' reservations are looked up by node: many waiting candidates all see the
/// count as it stands after the last admission, and a foreign reservation still keeps
/// exactly its node out, wherever it sits among thousands.
#[test]
fn many_candidates_see_the_budget_after_the_last_admission() {
    let mut s = settings(10.0); // 200 nodes → 20 allowed
    // Every node's expected time out (2 h) overlapping all the others'.
    s.reboot_timeout = SignedDuration::from_hours(2);
    let mut nodes: Vec<Node> = (0..200)
        .map(|i| node(&format!("n{i:03}"), "ALLOCATED", 0))
        .collect();
    nodes[199].state = NodeState::parse("IDLE+DRAIN").unwrap();
    let jobs = (0..199)
        .map(|i| job(i as u64, &format!("n{i:03}"), Some(NOW + 10 + i), false))
        .collect();
    let mut snap = snapshot(nodes, jobs);
    snap.reservations.push(Reservation {
        name: "ops_firmware".into(),
        start: t(NOW),
        end: t(NOW + 600),
        nodes: vec!["n002".into(), "x999".into()],
        flags: vec![],
        users: vec!["root".into()],
        accounts: vec![],
        partition: None,
    });
    let names: Vec<String> = (0..200).map(|i| format!("n{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let p = plan("p", &s, &snap, &pending(&refs), t(NOW));
    // 19 admitted at their releases within the lead time (one slot is the drained
    // node), earliest release first, n002 skipped; beyond the lead time, as many more
    // as the budget allows, where the first 19 are back (+130 min on).
    let got = admitted(&p);
    let starts = reservation_starts(&p);
    let within = starts
        .iter()
        .filter(|(_, s)| *s <= Some(t(NOW + 60)))
        .count();
    assert_eq!(within, 19);
    assert!(
        starts
            .iter()
            .skip(19)
            .all(|(_, s)| *s >= Some(t(NOW + 130))),
        "{starts:?}"
    );
    assert_eq!(got.len(), 19 + 19);
    assert_eq!(got[..3], ["n000", "n001", "n003"]);
    assert!(
        p.waiting["n002"].contains("ops_firmware"),
        "{}",
        p.waiting["n002"]
    );
    assert!(p.budget_exhausted);
    let full: Vec<&String> = p
        .waiting
        .values()
        .filter(|w| w.starts_with("budget full"))
        .collect();
    // Released within the lead time (+60 min: n000–n050), not n002, not admitted; the
    // rest are released beyond it.
    assert_eq!(full.len(), 51 - 1 - 19);
    // The drained node's slot is named, with its state in Slurm.
    assert!(
        full.iter().all(|w| w
            .starts_with("budget full: 1 of 20 allowed nodes out now, the rest committed until ")
            && w.contains("(19 reserved ahead); 1 of them down or drained by others: n199 (")
            && w.contains("DRAIN")),
        "{full:?}"
    );
    // Out now or committed: the drained node and the 38 reservations ahead.
    assert_eq!(p.budget.occupied().len(), 1 + 38);
}

/// Slurm 26.05 returned a rebooted node whose slurmd never reported a boot to service
/// with its old BootTime: that is no reboot, and the attempt fails by timeout.
#[test]
fn a_node_back_in_service_with_its_old_boot_time_is_not_rebooted() {
    let s = settings(100.0);
    let snap = snapshot(vec![node("n1", "IDLE", 0)], vec![]);
    let mut w = work_for("n1", Phase::Rebooting);
    w.status.attempts = 1;
    w.status.boot_time_before = Some(t(0));
    w.status.reboot_issued_at = Some(t(NOW));
    let p = plan("p", &s, &snap, std::slice::from_ref(&w), t(NOW + 2));
    assert!(
        p.updates.iter().all(|u| u.status.phase == Phase::Rebooting),
        "{:?}",
        p.updates
    );
    let p = plan("p", &s, &snap, std::slice::from_ref(&w), t(NOW + 11));
    assert_eq!(p.updates[0].status.phase, Phase::PendingReboot);
    assert!(
        p.updates[0]
            .status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("not back in service")),
        "{:?}",
        p.updates[0].status.last_error
    );
    // A BootTime moved by a second on re-registration (24.11) is no reboot either.
    let snap = snapshot(
        vec![Node {
            boot_time: Some(t(0) + SignedDuration::from_secs(1)),
            ..node("n1", "IDLE", 0)
        }],
        vec![],
    );
    let p = plan("p", &s, &snap, std::slice::from_ref(&w), t(NOW + 2));
    assert!(
        p.updates.iter().all(|u| u.status.phase == Phase::Rebooting),
        "{:?}",
        p.updates
    );
    // The same node with a newer BootTime is recovered.
    let snap = snapshot(vec![node("n1", "IDLE", NOW + 1)], vec![]);
    let p = plan("p", &s, &snap, std::slice::from_ref(&w), t(NOW + 2));
    assert_eq!(p.updates[0].status.phase, Phase::HealthCheck);
}

/// Slurm 24.11 keeps a reboot's reason after the node returns: completed work clears
/// ours, and only ours, once nothing else of ours is under way on the node and it is back
/// in service.
#[test]
fn completed_work_leaves_no_reason_of_ours_behind() {
    let s = settings(100.0);
    let with_reason = |state: &str, reason: &str| Node {
        reason: Some(reason.into()),
        ..node("n1", state, NOW + 1)
    };
    let done = work_for("n1", Phase::Completed);
    let clears = |p: &Plan| {
        p.actions()
            .filter(|a| matches!(a, Action::ClearReason { node } if node == "n1"))
            .count()
    };
    let ours = "slurm-maint: p-n1 attempt 1/3 : reboot issued";
    let p = plan(
        "p",
        &s,
        &snapshot(vec![with_reason("IDLE", ours)], vec![]),
        std::slice::from_ref(&done),
        t(NOW + 20),
    );
    assert_eq!(clears(&p), 1, "{:?}", p.updates);
    assert_eq!(p.updates[0].status, done.status, "status unchanged");
    for (state, reason) in [
        ("IDLE", "ops: bad DIMM"),
        ("IDLE+DRAIN", ours),
        ("DOWN+NOT_RESPONDING", ours),
        ("IDLE+REBOOT_ISSUED", ours),
    ] {
        let snap = snapshot(vec![with_reason(state, reason)], vec![]);
        let p = plan("p", &s, &snap, std::slice::from_ref(&done), t(NOW + 20));
        assert_eq!(clears(&p), 0, "{state} {reason}");
    }
    // Other work of ours still under way on the node keeps its reason.
    let mut active = work_for("n1", Phase::Recovering);
    active.name = "p-n1-other".into();
    active.status.reboot_issued_at = Some(t(NOW + 15));
    let snap = snapshot(vec![with_reason("IDLE", ours)], vec![]);
    let p = plan("p", &s, &snap, &[done.clone(), active], t(NOW + 20));
    assert_eq!(clears(&p), 0);
    // Failed work keeps its drain and reason.
    let failed = work_for("n1", Phase::Failed);
    let snap = snapshot(vec![with_reason("IDLE", ours)], vec![]);
    let p = plan("p", &s, &snap, &[failed], t(NOW + 20));
    assert_eq!(clears(&p), 0);
}

/// A nodelist that names none of the partition's nodes is told apart from a campaign
/// with nothing to do.
#[test]
fn a_nodelist_matching_no_node_of_the_partition_is_reported() {
    let snap = snapshot(vec![node("n1", "IDLE", 0), node("n2", "IDLE", 0)], vec![]);
    let mut s = settings(50.0);
    s.scope = Some(["gpu[1-2]".to_string()].into());
    let p = plan("p", &s, &snap, &[], t(NOW));
    assert!(p.scope_matches_nothing);
    assert_eq!(p.nodes_needing_work, 0);
    s.scope = Some(["n2".to_string(), "x9".to_string()].into());
    let p = plan("p", &s, &snap, &[], t(NOW));
    assert!(!p.scope_matches_nothing);
    assert_eq!(p.nodes_needing_work, 1);
    s.scope = None;
    assert!(!plan("p", &s, &snap, &[], t(NOW)).scope_matches_nothing);
}

/// The next pass is due at once after a step, shortly before a reservation of ours
/// starts, when a rebooting node is expected back, and at a waiting node's release.
#[test]
fn the_plan_says_when_the_next_pass_is_due() {
    let s = settings(25.0); // 1 of 4; reboot timeout 10 min → typical 5 min
    let idle = snapshot(
        (1..=4).map(|i| node(&format!("n{i}"), "IDLE", 0)).collect(),
        vec![],
    );
    // A step (Pending → Reserved): at once.
    let p = plan("p", &s, &idle, &pending(&["n1"]), t(NOW));
    assert_eq!(admitted(&p), ["n1"]);
    assert_eq!(p.next_due, Some(t(NOW)));

    // Reserved ahead at +30 min, nothing to do now: 5 s before it starts.
    let mut w = work_for("n1", Phase::Reserved);
    let resv = reservation_name("slurm-maint", "n1", w.campaign.as_deref());
    w.status.reservation_name = Some(resv.clone());
    w.status.reservation_start = Some(t(NOW + 30));
    // Only the node under test needs a reboot (no new work for the others).
    let only = |subject: &str, state: &str| -> Vec<Node> {
        (1..=4)
            .map(|i| format!("n{i}"))
            .map(|n| node(&n, state, if n == subject { 0 } else { NOW + 1 }))
            .collect()
    };
    let mut busy = snapshot(
        only("n1", "ALLOCATED"),
        vec![job(1, "n1", Some(NOW + 30), false)],
    );
    busy.reservations.push(Reservation {
        name: resv,
        start: t(NOW + 30),
        end: t(NOW + 400),
        nodes: vec!["n1".into()],
        flags: vec!["MAINT".into()],
        users: vec!["root".into()],
        accounts: vec![],
        partition: None,
    });
    let p = plan("p", &s, &busy, std::slice::from_ref(&w), t(NOW));
    assert!(p.updates.is_empty(), "{:?}", p.updates);
    assert_eq!(p.next_due, Some(t(NOW + 30) - super::wake::BEFORE_START));

    // Rebooting for a minute, none back yet in this campaign: when the typical node is
    // back (5 min after the reboot), then every few seconds past it.
    let mut r = work_for("n2", Phase::Rebooting);
    r.status.reboot_issued_at = Some(t(NOW - 1));
    r.status.boot_time_before = Some(t(0));
    let down = {
        let mut x = snapshot(only("n2", "IDLE"), vec![]);
        x.nodes[1].state = NodeState::parse("DOWN+REBOOT_ISSUED").unwrap();
        x
    };
    let p = plan("p", &s, &down, std::slice::from_ref(&r), t(NOW));
    let p = if p.updates.is_empty() {
        p
    } else {
        // Rebooting → Recovering is a step; the pass after it waits for the node.
        let mut r2 = r.clone();
        r2.status = p.updates[0].status.clone();
        plan("p", &s, &down, &[r2], t(NOW))
    };
    assert_eq!(p.next_due, Some(t(NOW + 4)));
    let p = plan("p", &s, &down, std::slice::from_ref(&r), t(NOW + 6));
    let p = if p.updates.is_empty() {
        p
    } else {
        let mut r2 = r.clone();
        r2.status = p.updates[0].status.clone();
        plan("p", &s, &down, &[r2], t(NOW + 6))
    };
    assert_eq!(p.next_due, Some(t(NOW + 6) + super::wake::RETURN_POLL));

    // A node released at +90 min, beyond the lead time (60 min) but within what the
    // budget takes that far ahead: reserved at its release now (a step).
    let far = snapshot(
        only("n2", "ALLOCATED"),
        vec![job(2, "n2", Some(NOW + 90), false)],
    );
    let p = plan("p", &s, &far, &pending(&["n2"]), t(NOW));
    assert_eq!(reservation_starts(&p), [("n2".into(), Some(t(NOW + 90)))]);
    assert_eq!(p.next_due, Some(t(NOW)));
}

/// The trace of the real-clock issue, termination on: at t=0 node4 is idle and node3
/// runs only a preemptable job; both are free now, and the idle one goes first (nothing
/// to cancel); node3 gets the next room (its job cancelled only then); node1 and node2,
/// whose jobs end in 2 min, wait for room at that time. A job past its end releases its
/// node now, like an idle node, and not before it.
#[test]
fn free_nodes_go_first_and_idle_before_cancelling() {
    let mut s = settings(25.0); // 1 of 4
    s.terminate_preemptable = true;
    let mut snap = snapshot(
        vec![
            node("node1", "ALLOCATED", 0),
            node("node2", "ALLOCATED", 0),
            node("node3", "ALLOCATED", 0),
            node("node4", "IDLE", 0),
        ],
        vec![
            job(1, "node1", Some(NOW + 2), false),
            job(2, "node2", Some(NOW + 2), false),
            job(3, "node3", Some(NOW + 11), true),
        ],
    );
    let all = ["node1", "node2", "node3", "node4"];
    let p = plan("p", &s, &snap, &pending(&all), t(NOW));
    assert_eq!(admitted(&p), ["node4", "node3"]);
    assert_eq!(
        reservation_starts(&p),
        [("node4".into(), None), ("node3".into(), Some(t(NOW + 10)))]
    );
    // node1 and node2 wait for room at their release, not held empty for later.
    assert!(p.waiting["node1"].starts_with("budget full"));
    // node3's job is cancelled when its reservation starts, not for a slot to come.
    assert!(!p.actions().any(|a| matches!(a, Action::CancelJob { .. })));

    // node1's job is past its end (completing): node1 is free now and ranks with
    // node4 by name; node4, free now with nothing to cancel, waits in service rather
    // than be held for later; node3 goes next.
    snap.jobs[0].end_time = Some(t(NOW - 1));
    let p = plan("p", &s, &snap, &pending(&all), t(NOW));
    assert_eq!(admitted(&p), ["node1", "node3"]);
    assert_eq!(reservation_starts(&p)[0], ("node1".into(), None));
    assert!(p.waiting["node4"].starts_with("budget full"));
}

mod topology;
