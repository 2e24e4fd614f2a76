//! The OCI maintenance workflow of a NodeMaintenance with action `OciMaintenance`, pure:
//! drain → schedule the event → wait for it → resume → health check, under the same
//! capacity budget as rolling reboots.
//!
//! Phases: `Pending` (waiting for budget) → `Reserved` (draining; jobs finish) →
//! `Rebooting` (event scheduled, OCI working) → `Recovering` (event done; waiting for
//! the node to respond) → `HealthCheck` (resumed; checked) → `Completed`, or `Failed`
//! (kept drained) when the event fails or the node is unhealthy. Run after
//! [`crate::plan::plan`], with the budget it left: rolling reboots and OCI work share it,
//! and every node held here counts in the next pass's figures.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use crate::api::node_maintenance::{
    MaintenanceAction, NodeMaintenancePhase as Phase, NodeMaintenanceStatus, Transition,
};
use crate::plan::{BudgetFigures, MAX_TRANSITIONS, REASON_PREFIX, Settings, Snapshot, Work};

/// What OCI says of an event, for one pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventState {
    pub lifecycle_state: String,
    /// Its window start, earliest first when admitting.
    pub time_window_start: Option<Timestamp>,
    /// Whether OCI accepts a new window; if not, OCI starts it at its own.
    pub can_reschedule: bool,
    /// No window may start later than this.
    pub time_hard_due_date: Option<Timestamp>,
    /// The reschedule's work request, when it ended without success.
    pub failed_reschedule: Option<FailedReschedule>,
}

/// A reschedule OCI accepted, then failed or canceled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedReschedule {
    /// The work request.
    pub id: String,
    /// FAILED or CANCELED.
    pub status: String,
    /// What its errors say.
    pub message: String,
}

/// The window to ask for when the node is ready at `now`: `lead` from then, or from
/// the first request (`issued`) while that is still ahead, so a repeated request asks
/// for the same window; never past the hard due date. `None`: OCI keeps its own window
/// (the event cannot be rescheduled, or its due date has passed).
pub fn window_start(
    e: &EventState,
    issued: Option<Timestamp>,
    lead: SignedDuration,
    now: Timestamp,
) -> Option<Timestamp> {
    if !e.can_reschedule {
        return None;
    }
    let start = issued
        .map(|i| i + lead)
        .filter(|s| *s >= now)
        .unwrap_or(now + lead);
    match e.time_hard_due_date {
        Some(due) if due <= now => None,
        Some(due) => Some(start.min(due)),
        None => Some(start),
    }
}

/// One side effect of the workflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OciStep {
    /// Take the node out of service so its jobs end (Slurm drain, owned reason).
    Drain { node: String, reason: String },
    /// Move the event's window to `start` (OCI then carries it out).
    Schedule { event_id: String, start: Timestamp },
    /// Put the node back into service.
    Resume { node: String },
}

/// New status and side effects of one OCI NodeMaintenance.
#[derive(Clone, Debug, PartialEq)]
pub struct OciUpdate {
    pub name: String,
    pub node: String,
    pub status: NodeMaintenanceStatus,
    pub steps: Vec<OciStep>,
}

fn transition(st: &mut NodeMaintenanceStatus, phase: Phase, now: Timestamp, message: String) {
    st.phase = phase;
    st.phase_since = Some(now);
    st.transitions.push(Transition {
        phase,
        time: now,
        message,
    });
    if st.transitions.len() > MAX_TRANSITIONS {
        let excess = st.transitions.len() - MAX_TRANSITIONS;
        st.transitions.drain(..excess);
    }
}

/// When windows are asked for and nodes taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// A scheduled window starts this long after the node is ready.
    pub lead: SignedDuration,
    /// A node whose event keeps OCI's window is drained no earlier than this before it.
    pub drain_ahead: SignedDuration,
}

/// Whether work for this event may take its node now: an event that keeps OCI's own
/// window waits until that window is `drain_ahead` away.
pub fn may_take_node(e: &EventState, t: &Timing, now: Timestamp) -> bool {
    if window_start(e, None, t.lead, now).is_some() {
        return true;
    }
    e.time_window_start.is_none_or(|w| w <= now + t.drain_ahead)
}

/// How many Pending OCI works could take their node now if the budget had room: their
/// event SCHEDULED and due to be taken, their node in service, the policy not paused.
/// The rolling-reboot plan holds that many slots back ([`Settings::held_for_oci`]), so
/// a campaign never starves work on faulty hardware.
pub fn ready_to_start(
    s: &Settings,
    snapshot: &Snapshot,
    work: &[Work],
    events: &BTreeMap<String, String>,
    states: &BTreeMap<String, EventState>,
    timing: &Timing,
    now: Timestamp,
) -> usize {
    if s.paused {
        return 0;
    }
    work.iter()
        .filter(|w| w.action == MaintenanceAction::OciMaintenance)
        .filter(|w| w.status.phase == Phase::Pending)
        .filter(|w| {
            snapshot
                .nodes
                .iter()
                .any(|n| n.name == w.node && n.state.in_service())
        })
        .filter(|w| {
            events
                .get(&w.name)
                .and_then(|e| states.get(e))
                .is_some_and(|st| {
                    st.lifecycle_state == "SCHEDULED" && may_take_node(st, timing, now)
                })
        })
        .count()
}

/// Plan one pass of every OCI NodeMaintenance in `work`. `events` maps each one's
/// resource name to its event id, `reasons` to what its drain says after our prefix
/// (the event's fault summary; the event id when missing); `states` the event ids to what OCI said this pass
/// (an event missing from it is unknown this pass: nothing moves); `budget` is what the
/// rolling-reboot plan left.
#[allow(clippy::too_many_arguments)]
pub fn plan_oci(
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
    let lead = timing.lead;
    let nodes: BTreeMap<&str, _> = snapshot
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n))
        .collect();
    let busy = |node: &str| {
        snapshot
            .jobs
            .iter()
            .any(|j| j.is_active() && j.nodes.iter().any(|n| n == node))
    };
    let mut work: Vec<&Work> = work
        .iter()
        .filter(|w| w.action == MaintenanceAction::OciMaintenance)
        .collect();
    work.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = vec![];
    let mut occupied: std::collections::BTreeSet<String> =
        budget.occupied().into_iter().cloned().collect();
    let reason = |w: &Work, event: &str| {
        let r = match reasons.get(&w.name) {
            Some(r) => format!("{REASON_PREFIX}{r}"),
            None => format!("{REASON_PREFIX}OCI maintenance {event}"),
        };
        r.chars()
            .take(crate::agent::validate::MAX_REASON)
            .collect::<String>()
    };

    // Admission: earliest window first, while the shared budget has room.
    let mut pending: Vec<(&Work, &str, Option<Timestamp>)> =
        work.iter()
            .filter(|w| w.status.phase == Phase::Pending)
            .filter_map(|w| {
                let event = events.get(&w.name)?;
                let state = states.get(event)?;
                (state.lifecycle_state == "SCHEDULED" && may_take_node(state, timing, now))
                    .then_some((*w, event.as_str(), state.time_window_start))
            })
            .collect();
    pending.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.name.cmp(&b.0.name)));
    let gated = s.paused;
    for (w, event, _) in pending {
        let Some(node) = nodes.get(w.node.as_str()) else {
            continue;
        };
        if gated || !node.state.in_service() || occupied.len() >= budget.allowed {
            continue;
        }
        occupied.insert(w.node.clone());
        let mut st = w.status.clone();
        st.attempts += 1;
        transition(
            &mut st,
            Phase::Reserved,
            now,
            format!("draining for OCI event {event}"),
        );
        out.push(OciUpdate {
            name: w.name.clone(),
            node: w.node.clone(),
            status: st,
            steps: vec![OciStep::Drain {
                node: w.node.clone(),
                reason: reason(w, event),
            }],
        });
    }

    // Catch-up: events OCI started (or ended) before their work left Pending are
    // followed where they are, never scheduled again.
    for w in work.iter().filter(|w| w.status.phase == Phase::Pending) {
        let Some(event) = events.get(&w.name) else {
            continue;
        };
        let Some(state) = states.get(event).map(|s| s.lifecycle_state.as_str()) else {
            continue;
        };
        let mut st = w.status.clone();
        let mut steps = vec![];
        match state {
            "STARTED" | "PROCESSING" => {
                transition(
                    &mut st,
                    Phase::Rebooting,
                    now,
                    format!("OCI event {event} already running"),
                );
                steps.push(OciStep::Drain {
                    node: w.node.clone(),
                    reason: reason(w, event),
                });
            }
            "SUCCEEDED" => {
                transition(
                    &mut st,
                    Phase::Recovering,
                    now,
                    format!("OCI event {event} already succeeded"),
                );
            }
            "FAILED" | "CANCELED" => {
                let why = format!("OCI event {event} ended {state} before it was scheduled");
                st.last_error = Some(why.clone());
                transition(&mut st, Phase::Failed, now, why);
            }
            _ => continue,
        }
        out.push(OciUpdate {
            name: w.name.clone(),
            node: w.node.clone(),
            status: st,
            steps,
        });
    }

    // In-flight work.
    for w in work.iter().filter(|w| w.status.phase != Phase::Pending) {
        let (Some(event), mut st) = (events.get(&w.name), w.status.clone()) else {
            continue;
        };
        let state = states.get(event).map(|s| s.lifecycle_state.as_str());
        let node = nodes.get(w.node.as_str());
        let mut steps = vec![];
        match w.status.phase {
            Phase::Reserved | Phase::PendingReboot => match state {
                Some("STARTED" | "PROCESSING" | "SUCCEEDED") => {
                    transition(
                        &mut st,
                        Phase::Rebooting,
                        now,
                        format!("OCI event {event} is running"),
                    );
                }
                Some("FAILED" | "CANCELED") => {
                    let why = format!(
                        "OCI event {event} ended {} before it was scheduled",
                        state.unwrap_or("?")
                    );
                    st.last_error = Some(why.clone());
                    transition(&mut st, Phase::Failed, now, why);
                }
                Some(_) => match node {
                    Some(n) if !n.state.is_drained() => steps.push(OciStep::Drain {
                        node: w.node.clone(),
                        reason: reason(w, event),
                    }),
                    Some(_) if busy(&w.node) => {}
                    Some(_) => {
                        st.reboot_issued_at = Some(now);
                        let e = &states[event];
                        match window_start(e, None, lead, now) {
                            Some(start) => {
                                transition(
                                    &mut st,
                                    Phase::Rebooting,
                                    now,
                                    format!("node empty: OCI event {event} scheduled for {start}"),
                                );
                                steps.push(OciStep::Schedule {
                                    event_id: event.clone(),
                                    start,
                                });
                            }
                            None => transition(
                                &mut st,
                                Phase::Rebooting,
                                now,
                                format!(
                                    "node empty: OCI event {event} keeps its window ({})",
                                    e.time_window_start
                                        .map_or("not set".to_string(), |t| t.to_string())
                                ),
                            ),
                        }
                    }
                    None => {}
                },
                None => {}
            },
            // The reschedule's work request failed: the event keeps its old window. Ask
            // again (a new attempt), up to the policy's attempts; then the node stays
            // drained and the work fails with OCI's message.
            Phase::Rebooting
                if state == Some("SCHEDULED")
                    && states[event].failed_reschedule.as_ref().is_some_and(|f| {
                        w.status.work_request_id.as_deref() == Some(f.id.as_str())
                    }) =>
            {
                let f = states[event].failed_reschedule.as_ref().expect("checked");
                let why = format!(
                    "OCI reschedule of event {event} {} (work request {}): {}",
                    f.status, f.id, f.message
                );
                st.last_error = Some(why.clone());
                st.work_request_id = None;
                if st.attempts >= s.max_attempts {
                    let reason = format!(
                        "{REASON_PREFIX}OCI maintenance not rescheduled after {} attempts",
                        st.attempts
                    );
                    transition(&mut st, Phase::Failed, now, why);
                    steps.push(OciStep::Drain {
                        node: w.node.clone(),
                        reason,
                    });
                } else if let Some(start) = window_start(&states[event], None, lead, now) {
                    st.attempts += 1;
                    st.reboot_issued_at = Some(now);
                    steps.push(OciStep::Schedule {
                        event_id: event.clone(),
                        start,
                    });
                }
            }
            // Scheduled, but OCI has not confirmed it (the request failed, or the pass
            // stopped before it): ask again, for the same window while it is ahead.
            Phase::Rebooting
                if state == Some("SCHEDULED") && w.status.work_request_id.is_none() =>
            {
                if let Some(start) =
                    window_start(&states[event], w.status.reboot_issued_at, lead, now)
                {
                    steps.push(OciStep::Schedule {
                        event_id: event.clone(),
                        start,
                    });
                }
            }
            Phase::Rebooting => match state {
                Some("SUCCEEDED") => {
                    transition(
                        &mut st,
                        Phase::Recovering,
                        now,
                        format!("OCI event {event} succeeded"),
                    );
                }
                Some(f @ ("FAILED" | "CANCELED")) => {
                    let why = format!("OCI event {event} ended {f}; node kept drained");
                    st.last_error = Some(why.clone());
                    transition(&mut st, Phase::Failed, now, why);
                }
                _ => {}
            },
            Phase::Recovering => {
                if let Some(n) = node
                    && n.state.base != "DOWN"
                    && !n.state.has("NOT_RESPONDING")
                    && !n.state.is_rebooting()
                {
                    transition(
                        &mut st,
                        Phase::HealthCheck,
                        now,
                        format!("node responds ({}); resumed", n.state),
                    );
                    steps.push(OciStep::Resume {
                        node: w.node.clone(),
                    });
                }
            }
            // Slurm briefly flags a resumed node NOT_RESPONDING until its next ping: the
            // health check counts only once the node responds (or fails after the
            // reboot timeout).
            Phase::HealthCheck
                if node.is_none_or(|n| n.state.base == "DOWN" || n.state.has("NOT_RESPONDING")) =>
            {
                let since = st.phase_since.unwrap_or(now);
                if now.duration_since(since) >= s.reboot_timeout {
                    let why = format!(
                        "{REASON_PREFIX}node not responding {} after OCI maintenance",
                        s.reboot_timeout
                    );
                    st.last_error = Some(why.clone());
                    transition(&mut st, Phase::Failed, now, why.clone());
                    steps.push(OciStep::Drain {
                        node: w.node.clone(),
                        reason: why,
                    });
                }
            }
            // Still drained by us: the resume that began this phase was lost (a crash
            // between the status and the call). It is asked again; the health check waits
            // for it instead of failing a node that is only still drained.
            Phase::HealthCheck
                if node.is_some_and(|n| {
                    n.state.is_drained()
                        && n.reason
                            .as_deref()
                            .is_some_and(|r| r.starts_with(REASON_PREFIX))
                }) =>
            {
                steps.push(OciStep::Resume {
                    node: w.node.clone(),
                });
            }
            Phase::HealthCheck => match snapshot.health.get(&w.node) {
                Some(h) if h.healthy => {
                    st.last_error = None;
                    transition(
                        &mut st,
                        Phase::Completed,
                        now,
                        "OCI maintenance done, node healthy".into(),
                    );
                }
                Some(h) => {
                    let why = format!(
                        "{REASON_PREFIX}health check failed after OCI maintenance: {}",
                        h.message
                    );
                    st.last_error = Some(why.clone());
                    transition(&mut st, Phase::Failed, now, why.clone());
                    steps.push(OciStep::Drain {
                        node: w.node.clone(),
                        reason: why,
                    });
                }
                None => {}
            },
            Phase::Pending | Phase::Completed | Phase::Failed => {}
        }
        if st != w.status || !steps.is_empty() {
            out.push(OciUpdate {
                name: w.name.clone(),
                node: w.node.clone(),
                status: st,
                steps,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MaintenancePolicySpec;
    use crate::plan::HealthResult;
    use crate::slurm::{Job, Node, NodeState};

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
        assert!(
            matches!(&u[0].steps[..], [OciStep::Schedule { start, .. }] if *start == t(30) + LEAD)
        );
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

    /// Pending work whose event can be taken now counts as ready; work whose node is out
    /// of service, whose event is not SCHEDULED, or a paused policy does not.
    #[test]
    fn ready_to_start_counts_what_could_take_its_node_now() {
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
        assert_eq!(ready_to_start(&s, &sn, &w, &ev, &st, &TIMING, t(0)), 1);
        s.paused = true;
        assert_eq!(ready_to_start(&s, &sn, &w, &ev, &st, &TIMING, t(0)), 0);
    }
}
