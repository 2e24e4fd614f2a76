//! The OCI part of the state machine, driven through [`plan`] (moved here from
//! `oci/workflow.rs` with the workflow's own planner). `plan_oci` below gives these tests
//! the view they had: the OCI work's updates, the budget's nodes held by someone else.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::api::MaintenancePolicySpec;
use crate::api::node_maintenance::NodeMaintenancePhase as Phase;
use crate::oci::workflow::{EventState, FailedReschedule, Timing, window_start};
use crate::slurm::{Job, Node, NodeState, Reservation};

/// The OCI work's part of a plan.
#[derive(Debug)]
struct OciUpdate {
    node: String,
    status: NodeMaintenanceStatus,
    steps: Vec<OciStep>,
}

/// An action of OCI work.
#[derive(Debug, PartialEq)]
enum OciStep {
    Drain { node: String, reason: String },
    Schedule { event_id: String, start: Timestamp },
    Resume { node: String },
}

/// Plan a pass and keep the OCI work's updates. `events` and `reasons` become the
/// work's [`OciFacts`], `states` what OCI said this pass; each node `budget` names as
/// unavailable is held by someone else's MAINT reservation.
#[allow(clippy::too_many_arguments)]
fn plan_oci(
    s: &Settings,
    snapshot: &Snapshot,
    work: &[Work],
    events: &BTreeMap<String, String>,
    reasons: &BTreeMap<String, String>,
    states: &BTreeMap<String, EventState>,
    budget: &BudgetFigures,
    timing: &Timing,
    now: Timestamp,
) -> Vec<OciUpdate> {
    let mut s = s.clone();
    s.oci = *timing;
    s.limit = BudgetLimit::Count(budget.allowed as u32);
    let mut snapshot = snapshot.clone();
    for n in &budget.unavailable {
        snapshot.reservations.push(Reservation {
            name: format!("ops-{n}"),
            start: now - SignedDuration::from_hours(1),
            end: now + SignedDuration::from_hours(24),
            nodes: vec![n.clone()],
            flags: vec!["MAINT".into()],
            users: vec!["root".into()],
            accounts: vec![],
            partition: None,
        });
    }
    let work: Vec<Work> = work
        .iter()
        .map(|w| {
            let mut w = w.clone();
            w.oci = events.get(&w.name).map(|e| OciFacts {
                event_id: e.clone(),
                reason: reasons.get(&w.name).cloned(),
                state: states.get(e).cloned(),
            });
            w
        })
        .collect();
    let oci: Vec<&str> = work
        .iter()
        .filter(|w| w.action == MaintenanceAction::OciMaintenance)
        .map(|w| w.name.as_str())
        .collect();
    plan("p", &s, &snapshot, &work, now)
        .updates
        .into_iter()
        .filter(|u| oci.contains(&u.name.as_str()))
        .map(|u| OciUpdate {
            node: u.node,
            status: u.status,
            steps: u
                .actions
                .into_iter()
                .filter(|a| !matches!(a, Action::ClearReason { .. }))
                .map(|a| match a {
                    Action::Drain { node, reason } => OciStep::Drain { node, reason },
                    Action::ScheduleOciEvent { event_id, start } => {
                        OciStep::Schedule { event_id, start }
                    }
                    Action::Resume { node } => OciStep::Resume { node },
                    other => panic!("not an action of OCI work: {other:?}"),
                })
                .collect(),
        })
        .collect()
}

const NONE: BTreeMap<String, String> = BTreeMap::new();
const LEAD: SignedDuration = SignedDuration::from_mins(2);
const TIMING: Timing = Timing {
    lead: LEAD,
    drain_ahead: SignedDuration::from_hours(12),
};

fn t(min: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + min * 60).unwrap()
}

fn settings() -> Settings {
    let spec: MaintenancePolicySpec = serde_json::from_value(serde_json::json!({
        "partition": "gpu",
        "agent": {"url": "http://a", "tokenSecretRef": {"name": "t"}},
        "budget": {"maxUnavailable": 2},
        "reservations": {"enabled": true},
    }))
    .unwrap();
    Settings::from_spec(&spec, t(0)).unwrap()
}

fn node(name: &str, state: &str) -> Node {
    Node {
        name: name.into(),
        state: NodeState::parse(state).unwrap(),
        reason: None,
        boot_time: Some(t(-1000)),
        partitions: vec!["gpu".into()],
        reservation: None,
        features: vec![],
    }
}

fn job(node: &str) -> Job {
    serde_json::from_value(serde_json::json!({
        "id": 7, "name": "train", "user": "u", "partition": "gpu", "state": "RUNNING",
        "nodes": [node], "preemptable": false
    }))
    .unwrap()
}

fn oci_work(node: &str, phase: Phase) -> Work {
    Work {
        name: format!("w-{node}"),
        node: node.into(),
        action: MaintenanceAction::OciMaintenance,
        campaign: None,
        status: NodeMaintenanceStatus {
            phase,
            ..Default::default()
        },
        oci: None,
    }
}

fn events(work: &[Work]) -> BTreeMap<String, String> {
    work.iter()
        .map(|w| (w.name.clone(), format!("ev-{}", w.node)))
        .collect()
}

fn states(work: &[Work], state: &str) -> BTreeMap<String, EventState> {
    work.iter()
        .enumerate()
        .map(|(i, w)| {
            (
                format!("ev-{}", w.node),
                EventState {
                    lifecycle_state: state.into(),
                    time_window_start: Some(t(100 - i as i64)),
                    can_reschedule: true,
                    time_hard_due_date: None,
                    failed_reschedule: None,
                },
            )
        })
        .collect()
}

fn budget(total: usize, allowed: usize, out: &[&str]) -> BudgetFigures {
    BudgetFigures {
        total,
        allowed,
        unavailable: out.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn snap(nodes: Vec<Node>, jobs: Vec<Job>) -> Snapshot {
    Snapshot {
        nodes,
        jobs,
        ..Default::default()
    }
}

#[test]
fn admission_shares_the_budget_earliest_window_first() {
    let work = vec![
        oci_work("g1", Phase::Pending),
        oci_work("g2", Phase::Pending),
        oci_work("g3", Phase::Pending),
    ];
    let sn = snap(
        vec![
            node("g1", "IDLE"),
            node("g2", "IDLE"),
            node("g3", "IDLE"),
            node("g4", "IDLE"),
        ],
        vec![],
    );
    // g3's window is earliest (see `states`); one slot is taken by a rolling reboot.
    let u = plan_oci(
        &settings(),
        &sn,
        &work,
        &events(&work),
        &NONE,
        &states(&work, "SCHEDULED"),
        &budget(4, 2, &["g4"]),
        &TIMING,
        t(0),
    );
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].node, "g3");
    assert_eq!(u[0].status.phase, Phase::Reserved);
    assert_eq!(u[0].status.attempts, 1);
    assert!(
        matches!(&u[0].steps[..], [OciStep::Drain { node, reason }] if node == "g3" && reason.starts_with("slurm-maint: OCI maintenance ev-g3"))
    );
    // Budget full: nothing.
    let u = plan_oci(
        &settings(),
        &sn,
        &work,
        &events(&work),
        &NONE,
        &states(&work, "SCHEDULED"),
        &budget(4, 2, &["g4", "g1"]),
        &TIMING,
        t(0),
    );
    assert!(u.is_empty());
}

#[test]
fn nothing_starts_while_paused_on_nodes_out_of_service_or_for_unknown_events() {
    let work = vec![
        oci_work("g1", Phase::Pending),
        oci_work("g2", Phase::Pending),
    ];
    let sn = snap(vec![node("g1", "IDLE"), node("g2", "IDLE+DRAIN")], vec![]);
    let mut s = settings();
    s.paused = true;
    let b = budget(4, 2, &[]);
    assert!(
        plan_oci(
            &s,
            &sn,
            &work,
            &events(&work),
            &NONE,
            &states(&work, "SCHEDULED"),
            &b,
            &TIMING,
            t(0)
        )
        .is_empty()
    );
    s.paused = false;
    let u = plan_oci(
        &s,
        &sn,
        &work,
        &events(&work),
        &NONE,
        &states(&work, "SCHEDULED"),
        &b,
        &TIMING,
        t(0),
    );
    assert_eq!(
        u.iter().map(|u| u.node.as_str()).collect::<Vec<_>>(),
        ["g1"]
    );
    assert!(
        plan_oci(
            &s,
            &sn,
            &work,
            &events(&work),
            &NONE,
            &BTreeMap::new(),
            &b,
            &TIMING,
            t(0)
        )
        .is_empty()
    );
}

#[test]
fn the_whole_walk() {
    let s = settings();
    let b = budget(4, 2, &[]);
    let mut w = vec![oci_work("g1", Phase::Reserved)];
    let ev = events(&w);
    let step = |w: &[Work], sn: &Snapshot, state: &str, now| {
        plan_oci(&s, sn, w, &ev, &NONE, &states(w, state), &b, &TIMING, now)
    };
    // Drain not yet visible: drained again (idempotent), nothing else.
    let u = step(
        &w,
        &snap(vec![node("g1", "MIXED")], vec![job("g1")]),
        "SCHEDULED",
        t(1),
    );
    assert_eq!(u[0].status.phase, Phase::Reserved);
    assert!(matches!(u[0].steps[..], [OciStep::Drain { .. }]));
    // Drained but a job still runs: wait.
    assert!(
        step(
            &w,
            &snap(vec![node("g1", "MIXED+DRAIN")], vec![job("g1")]),
            "SCHEDULED",
            t(2)
        )
        .is_empty()
    );
    // Empty: schedule.
    let u = step(
        &w,
        &snap(vec![node("g1", "IDLE+DRAIN")], vec![]),
        "SCHEDULED",
        t(3),
    );
    assert_eq!(u[0].status.phase, Phase::Rebooting);
    assert_eq!(
        u[0].steps,
        [OciStep::Schedule {
            event_id: "ev-g1".into(),
            start: t(3) + LEAD
        }]
    );
    w[0].status = u[0].status.clone();
    // Running: wait; done: recovering.
    let down = snap(vec![node("g1", "DOWN+DRAIN+NOT_RESPONDING")], vec![]);
    assert!(step(&w, &down, "PROCESSING", t(10)).is_empty());
    let u = step(&w, &down, "SUCCEEDED", t(20));
    assert_eq!(u[0].status.phase, Phase::Recovering);
    w[0].status = u[0].status.clone();
    // Not responding yet: wait; responding: resume, then health check.
    assert!(step(&w, &down, "SUCCEEDED", t(21)).is_empty());
    let u = step(
        &w,
        &snap(vec![node("g1", "IDLE+DRAIN")], vec![]),
        "SUCCEEDED",
        t(22),
    );
    assert_eq!(u[0].status.phase, Phase::HealthCheck);
    assert_eq!(u[0].steps, [OciStep::Resume { node: "g1".into() }]);
    w[0].status = u[0].status.clone();
    let mut healthy = snap(vec![node("g1", "IDLE")], vec![]);
    assert!(
        step(&w, &healthy, "SUCCEEDED", t(23)).is_empty(),
        "no result yet"
    );
    healthy.health.insert(
        "g1".into(),
        HealthResult {
            healthy: true,
            message: "ok".into(),
            checks: vec![],
        },
    );
    let u = step(&w, &healthy, "SUCCEEDED", t(24));
    assert_eq!(u[0].status.phase, Phase::Completed);
    assert!(u[0].steps.is_empty());
    let phases: Vec<Phase> = u[0].status.transitions.iter().map(|t| t.phase).collect();
    assert_eq!(
        phases,
        [
            Phase::Rebooting,
            Phase::Recovering,
            Phase::HealthCheck,
            Phase::Completed
        ]
    );
}

#[test]
fn failures_keep_the_node_drained() {
    let s = settings();
    let b = budget(4, 2, &[]);
    let w = vec![oci_work("g1", Phase::Rebooting)];
    let ev = events(&w);
    let sn = snap(vec![node("g1", "IDLE+DRAIN")], vec![]);
    for end in ["FAILED", "CANCELED"] {
        let u = plan_oci(&s, &sn, &w, &ev, &NONE, &states(&w, end), &b, &TIMING, t(5));
        assert_eq!(u[0].status.phase, Phase::Failed);
        assert!(u[0].status.last_error.as_deref().unwrap().contains(end));
        assert!(u[0].steps.is_empty(), "no resume");
    }
    let w = vec![oci_work("g1", Phase::HealthCheck)];
    let mut sn = snap(vec![node("g1", "IDLE")], vec![]);
    sn.health.insert(
        "g1".into(),
        HealthResult {
            healthy: false,
            message: "GPU missing".into(),
            checks: vec![],
        },
    );
    let u = plan_oci(
        &s,
        &sn,
        &w,
        &ev,
        &NONE,
        &states(&w, "SUCCEEDED"),
        &b,
        &TIMING,
        t(5),
    );
    assert_eq!(u[0].status.phase, Phase::Failed);
    assert!(
        matches!(&u[0].steps[..], [OciStep::Drain { reason, .. }] if reason.contains("GPU missing"))
    );
}

#[test]
fn an_event_started_by_oci_itself_is_followed() {
    let w = vec![oci_work("g1", Phase::Reserved)];
    let u = plan_oci(
        &settings(),
        &snap(vec![node("g1", "MIXED+DRAIN")], vec![job("g1")]),
        &w,
        &events(&w),
        &NONE,
        &states(&w, "STARTED"),
        &budget(4, 2, &[]),
        &TIMING,
        t(0),
    );
    assert_eq!(u[0].status.phase, Phase::Rebooting);
    assert!(u[0].steps.is_empty());
}

#[test]
fn after_a_restart_events_are_picked_up_where_they_are() {
    let w = vec![oci_work("g1", Phase::Pending)];
    let sn = snap(vec![node("g1", "DOWN+NOT_RESPONDING")], vec![]);
    let b = budget(4, 2, &[]);
    let ev = events(&w);
    let u = plan_oci(
        &settings(),
        &sn,
        &w,
        &ev,
        &NONE,
        &states(&w, "PROCESSING"),
        &b,
        &TIMING,
        t(0),
    );
    assert_eq!(u[0].status.phase, Phase::Rebooting);
    assert!(
        matches!(u[0].steps[..], [OciStep::Drain { .. }]),
        "kept off after it returns"
    );
    assert!(
        !u[0]
            .steps
            .iter()
            .any(|s| matches!(s, OciStep::Schedule { .. }))
    );
    let u = plan_oci(
        &settings(),
        &sn,
        &w,
        &ev,
        &NONE,
        &states(&w, "SUCCEEDED"),
        &b,
        &TIMING,
        t(0),
    );
    assert_eq!(u[0].status.phase, Phase::Recovering);
    assert!(u[0].steps.is_empty());
    let u = plan_oci(
        &settings(),
        &sn,
        &w,
        &ev,
        &NONE,
        &states(&w, "CANCELED"),
        &b,
        &TIMING,
        t(0),
    );
    assert_eq!(u[0].status.phase, Phase::Failed);
}

/// A crash between writing HealthCheck and resuming the node leaves it drained by us:
/// the next pass resumes it again rather than failing its health check.
#[test]
fn a_lost_resume_is_asked_again() {
    let s = settings();
    let w = vec![oci_work("g1", Phase::HealthCheck)];
    let ev = events(&w);
    let mut drained = node("g1", "IDLE+DRAIN");
    drained.reason = Some(format!("{REASON_PREFIX}OCI maintenance: fault"));
    let mut sn = snap(vec![drained.clone()], vec![]);
    sn.health.insert(
        "g1".into(),
        HealthResult {
            healthy: false,
            message: "g1 is IDLE+DRAIN".into(),
            checks: vec![],
        },
    );
    let b = budget(4, 2, &[]);
    let states = states(&w, "SUCCEEDED");
    let u = plan_oci(&s, &sn, &w, &ev, &NONE, &states, &b, &TIMING, t(5));
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].status.phase, Phase::HealthCheck);
    assert!(matches!(&u[0].steps[..], [OciStep::Resume { node }] if node == "g1"));
    // Drained by someone else: that is the health check's verdict to give.
    drained.reason = Some("ops: bad DIMM".into());
    sn.nodes = vec![drained];
    let u = plan_oci(&s, &sn, &w, &ev, &NONE, &states, &b, &TIMING, t(5));
    assert_eq!(u[0].status.phase, Phase::Failed);
}

#[test]
fn the_health_check_waits_for_the_node_to_respond() {
    let s = settings();
    let mut w = vec![oci_work("g1", Phase::HealthCheck)];
    w[0].status.phase_since = Some(t(0));
    let ev = events(&w);
    let mut sn = snap(vec![node("g1", "IDLE+NOT_RESPONDING")], vec![]);
    sn.health.insert(
        "g1".into(),
        HealthResult {
            healthy: false,
            message: "not in service".into(),
            checks: vec![],
        },
    );
    let b = budget(4, 2, &[]);
    assert!(
        plan_oci(
            &s,
            &sn,
            &w,
            &ev,
            &NONE,
            &states(&w, "SUCCEEDED"),
            &b,
            &TIMING,
            t(1)
        )
        .is_empty()
    );
    let late = t(0) + s.reboot_timeout;
    let u = plan_oci(
        &s,
        &sn,
        &w,
        &ev,
        &NONE,
        &states(&w, "SUCCEEDED"),
        &b,
        &TIMING,
        late,
    );
    assert_eq!(u[0].status.phase, Phase::Failed);
    assert!(
        u[0].status
            .last_error
            .as_deref()
            .unwrap()
            .contains("not responding")
    );
}

#[test]
fn rolling_reboot_work_is_not_touched() {
    let mut w = oci_work("g1", Phase::Pending);
    w.action = MaintenanceAction::Reboot;
    let w = vec![w];
    let u = plan_oci(
        &settings(),
        &snap(vec![node("g1", "IDLE")], vec![]),
        &w,
        &events(&w),
        &NONE,
        &states(&w, "SCHEDULED"),
        &budget(4, 2, &[]),
        &TIMING,
        t(0),
    );
    assert!(u.is_empty());
}

/// A schedule OCI never confirmed (the request failed, or the controller stopped
/// between the status write and the request) is asked again, for the same window
/// while it is ahead; confirmed work only waits.
#[test]
fn an_unconfirmed_schedule_is_asked_again() {
    let s = settings();
    let b = budget(4, 2, &[]);
    let mut w = vec![oci_work("g1", Phase::Rebooting)];
    w[0].status.reboot_issued_at = Some(t(3));
    let ev = events(&w);
    let sn = snap(vec![node("g1", "IDLE+DRAIN")], vec![]);
    let u = plan_oci(
        &s,
        &sn,
        &w,
        &ev,
        &NONE,
        &states(&w, "SCHEDULED"),
        &b,
        &TIMING,
        t(4),
    );
    assert_eq!(u[0].status, w[0].status, "no transition, the request only");
    assert_eq!(
        u[0].steps,
        [OciStep::Schedule {
            event_id: "ev-g1".into(),
            start: t(3) + LEAD
        }]
    );
    // Later than the first window: lead from now.
    let u = plan_oci(
        &s,
        &sn,
        &w,
        &ev,
        &NONE,
        &states(&w, "SCHEDULED"),
        &b,
        &TIMING,
        t(30),
    );
    assert!(matches!(&u[0].steps[..], [OciStep::Schedule { start, .. }] if *start == t(30) + LEAD));
    // Confirmed by a work request: wait for OCI.
    w[0].status.work_request_id = Some("wr".into());
    assert!(
        plan_oci(
            &s,
            &sn,
            &w,
            &ev,
            &NONE,
            &states(&w, "SCHEDULED"),
            &b,
            &TIMING,
            t(5)
        )
        .is_empty()
    );
}

/// An event OCI will not reschedule keeps its own window: the drained node waits for
/// OCI to start it; a window is never asked past the hard due date.
#[test]
fn windows_respect_can_reschedule_and_the_hard_due_date() {
    let s = settings();
    let b = budget(4, 2, &[]);
    let w = vec![oci_work("g1", Phase::Reserved)];
    let ev = events(&w);
    let sn = snap(vec![node("g1", "IDLE+DRAIN")], vec![]);
    let mut st = states(&w, "SCHEDULED");
    st.get_mut("ev-g1").unwrap().can_reschedule = false;
    let u = plan_oci(&s, &sn, &w, &ev, &NONE, &st, &b, &TIMING, t(3));
    assert_eq!(u[0].status.phase, Phase::Rebooting);
    assert!(u[0].steps.is_empty(), "{:?}", u[0].steps);
    assert!(
        u[0].status.transitions[0]
            .message
            .contains("keeps its window")
    );
    let mut w2 = w.clone();
    w2[0].status = u[0].status.clone();
    assert!(plan_oci(&s, &sn, &w2, &ev, &NONE, &st, &b, &TIMING, t(4)).is_empty());

    let e = |due: Option<i64>| EventState {
        lifecycle_state: "SCHEDULED".into(),
        time_window_start: Some(t(100)),
        can_reschedule: true,
        time_hard_due_date: due.map(t),
        failed_reschedule: None,
    };
    assert_eq!(window_start(&e(None), None, LEAD, t(3)), Some(t(5)));
    assert_eq!(window_start(&e(Some(4)), None, LEAD, t(3)), Some(t(4)));
    assert_eq!(window_start(&e(Some(3)), None, LEAD, t(3)), None);
    assert_eq!(window_start(&e(None), Some(t(2)), LEAD, t(3)), Some(t(4)));
    assert_eq!(window_start(&e(None), Some(t(0)), LEAD, t(3)), Some(t(5)));
}

/// An event that keeps OCI's window takes its node only `drainAhead` before the
/// window; one OCI will move is taken as soon as the budget allows.
#[test]
fn a_fixed_window_takes_the_node_only_drain_ahead_before_it() {
    let s = settings();
    let b = budget(4, 2, &[]);
    let w = vec![oci_work("g1", Phase::Pending)];
    let ev = events(&w);
    let sn = snap(vec![node("g1", "MIXED")], vec![job("g1")]);
    let mut st = states(&w, "SCHEDULED");
    let e = st.get_mut("ev-g1").unwrap();
    e.time_window_start = Some(t(24 * 60));
    e.can_reschedule = false;
    let at = |st: &BTreeMap<String, EventState>, now| {
        plan_oci(&s, &sn, &w, &ev, &NONE, st, &b, &TIMING, now)
    };
    assert!(at(&st, t(0)).is_empty(), "a day ahead: not yet");
    assert!(at(&st, t(12 * 60 - 1)).is_empty());
    let u = at(&st, t(12 * 60));
    assert_eq!(u[0].status.phase, Phase::Reserved);
    assert!(matches!(u[0].steps[..], [OciStep::Drain { .. }]));
    // Past its hard due date, an event OCI would otherwise move keeps its window too.
    let e = st.get_mut("ev-g1").unwrap();
    e.can_reschedule = true;
    e.time_hard_due_date = Some(t(-1));
    assert!(at(&st, t(0)).is_empty());
    // A movable event is taken at once.
    st.get_mut("ev-g1").unwrap().time_hard_due_date = None;
    assert_eq!(at(&st, t(0))[0].status.phase, Phase::Reserved);
}

/// A reschedule whose work request failed is asked again as a new attempt; after the
/// last attempt the work fails with OCI's message and the node stays drained.
#[test]
fn a_failed_reschedule_is_asked_again_then_fails() {
    let s = settings();
    let b = budget(4, 2, &[]);
    let mut w = vec![oci_work("g1", Phase::Rebooting)];
    w[0].status.attempts = 1;
    w[0].status.work_request_id = Some("wr-1".into());
    let ev = events(&w);
    let sn = snap(vec![node("g1", "IDLE+DRAIN")], vec![]);
    let mut st = states(&w, "SCHEDULED");
    // Still running, or another work request's failure: wait.
    assert!(plan_oci(&s, &sn, &w, &ev, &NONE, &st, &b, &TIMING, t(5)).is_empty());
    st.get_mut("ev-g1").unwrap().failed_reschedule = Some(FailedReschedule {
        id: "wr-0".into(),
        status: "FAILED".into(),
        message: "old".into(),
    });
    assert!(plan_oci(&s, &sn, &w, &ev, &NONE, &st, &b, &TIMING, t(5)).is_empty());
    st.get_mut("ev-g1").unwrap().failed_reschedule = Some(FailedReschedule {
        id: "wr-1".into(),
        status: "FAILED".into(),
        message: "InternalError: could not be rescheduled".into(),
    });
    let u = plan_oci(&s, &sn, &w, &ev, &NONE, &st, &b, &TIMING, t(5));
    assert_eq!(u[0].status.phase, Phase::Rebooting);
    assert_eq!(u[0].status.attempts, 2);
    assert_eq!(u[0].status.work_request_id, None);
    assert!(
        u[0].status
            .last_error
            .as_deref()
            .unwrap()
            .contains("could not be rescheduled")
    );
    assert_eq!(
        u[0].steps,
        [OciStep::Schedule {
            event_id: "ev-g1".into(),
            start: t(5) + LEAD
        }]
    );
    // The last attempt: Failed, kept drained.
    w[0].status.attempts = s.max_attempts;
    let u = plan_oci(&s, &sn, &w, &ev, &NONE, &st, &b, &TIMING, t(9));
    assert_eq!(u[0].status.phase, Phase::Failed);
    assert!(
        matches!(&u[0].steps[..], [OciStep::Drain { reason, .. }] if reason.contains("not rescheduled after"))
    );
}

/// Pending work whose event can be taken now is admitted first, under the budget;
/// work whose node is out of service, whose event is not SCHEDULED, or a paused policy
/// is not.
#[test]
fn oci_work_ready_to_start_takes_its_node_before_rolling_reboots() {
    let mut s = settings();
    let w = vec![
        oci_work("g1", Phase::Pending),
        oci_work("g2", Phase::Pending),
        oci_work("g3", Phase::Pending),
        oci_work("g4", Phase::Reserved),
    ];
    let ev = events(&w);
    let mut st = states(&w, "SCHEDULED");
    st.get_mut("ev-g2").unwrap().lifecycle_state = "STARTED".into();
    let sn = snap(
        vec![
            node("g1", "IDLE"),
            node("g2", "IDLE"),
            node("g3", "DOWN+DRAIN"),
            node("g4", "IDLE+DRAIN"),
        ],
        vec![],
    );
    let b = budget(4, 4, &[]);
    let admitted = |u: Vec<OciUpdate>| {
        u.into_iter()
            .filter(|u| u.status.phase == Phase::Reserved && u.status.attempts == 1)
            .map(|u| u.node)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        admitted(plan_oci(&s, &sn, &w, &ev, &NONE, &st, &b, &TIMING, t(0))),
        ["g1"]
    );
    s.paused = true;
    assert!(admitted(plan_oci(&s, &sn, &w, &ev, &NONE, &st, &b, &TIMING, t(0))).is_empty());
}
