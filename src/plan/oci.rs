//! How OCI maintenance moves through the state machine ([`super::machine`]), from the
//! OCI seed: the node is taken out by a drain (its jobs finish), "rebooted" by scheduling
//! the event's window (OCI carries it out), back once the event SUCCEEDED and the node
//! responds (then resumed), and health-checked. Events OCI started or ended on its own
//! are followed where they are, never scheduled again. An event's state is known only in
//! the passes that read it ([`crate::oci::poll`]); without one, only phases past the
//! event move.

use super::index::Ctx;
use super::transition::{fail_drained, transition};
use super::{Action, OciFacts, REASON_PREFIX, Work};
use crate::api::node_maintenance::{NodeMaintenancePhase as Phase, NodeMaintenanceStatus};
use crate::oci::workflow::{EventState, window_start};

/// OCI work without its event's id waits.
pub(super) fn precheck(w: &Work) -> Option<Vec<Action>> {
    w.oci.is_none().then(Vec::new)
}

fn facts(w: &Work) -> &OciFacts {
    w.oci.as_ref().expect("checked by precheck")
}

fn state(w: &Work) -> Option<&EventState> {
    facts(w).state.as_ref()
}

/// The drain reason: our prefix and the event's fault summary (its id when missing).
pub(super) fn drain_reason(w: &Work) -> String {
    let f = facts(w);
    let r = match &f.reason {
        Some(r) => format!("{REASON_PREFIX}{r}"),
        None => format!("{REASON_PREFIX}OCI maintenance {}", f.event_id),
    };
    r.chars().take(crate::agent::validate::MAX_REASON).collect()
}

fn drain(w: &Work) -> Action {
    Action::Drain {
        node: w.node.clone(),
        reason: drain_reason(w),
    }
}

/// Pending: events OCI started (or ended) before their work left Pending.
pub(super) fn catch_up(ctx: &Ctx<'_>, w: &Work, st: &mut NodeMaintenanceStatus) -> Vec<Action> {
    let event = &facts(w).event_id;
    match state(w).map(|e| e.lifecycle_state.as_str()) {
        Some("STARTED" | "PROCESSING") => {
            let why = format!("OCI event {event} already running");
            transition(st, Phase::Rebooting, ctx.now, why);
            vec![drain(w)]
        }
        Some("SUCCEEDED") => {
            let why = format!("OCI event {event} already succeeded");
            transition(st, Phase::Recovering, ctx.now, why);
            vec![]
        }
        Some(s @ ("FAILED" | "CANCELED")) => {
            let why = format!("OCI event {event} ended {s} before it was scheduled");
            st.last_error = Some(why.clone());
            transition(st, Phase::Failed, ctx.now, why);
            vec![]
        }
        _ => vec![],
    }
}

/// Reserved: drained until the node is empty, then the event is scheduled (or keeps
/// OCI's window when it cannot move).
pub(super) fn taken_out(ctx: &Ctx<'_>, w: &Work, st: &mut NodeMaintenanceStatus) -> Vec<Action> {
    let (now, event) = (ctx.now, &facts(w).event_id);
    let Some(e) = state(w) else { return vec![] };
    match e.lifecycle_state.as_str() {
        "STARTED" | "PROCESSING" | "SUCCEEDED" => {
            transition(
                st,
                Phase::Rebooting,
                now,
                format!("OCI event {event} is running"),
            );
            return vec![];
        }
        s @ ("FAILED" | "CANCELED") => {
            let why = format!("OCI event {event} ended {s} before it was scheduled");
            st.last_error = Some(why.clone());
            transition(st, Phase::Failed, now, why);
            return vec![];
        }
        _ => {}
    }
    match ctx.nodes.get(w.node.as_str()) {
        None => return vec![],
        Some(n) if !n.state.is_drained() => return vec![drain(w)],
        Some(_) if ctx.busy(&w.node) => return vec![],
        Some(_) => {}
    }
    st.reboot_issued_at = Some(now);
    match window_start(e, None, ctx.s.oci.lead, now) {
        Some(start) => {
            let why = format!("node empty: OCI event {event} scheduled for {start}");
            transition(st, Phase::Rebooting, now, why);
            vec![Action::ScheduleOciEvent {
                event_id: event.clone(),
                start,
            }]
        }
        None => {
            let window = e
                .time_window_start
                .map_or("not set".to_string(), |t| t.to_string());
            let why = format!("node empty: OCI event {event} keeps its window ({window})");
            transition(st, Phase::Rebooting, now, why);
            vec![]
        }
    }
}

/// Rebooting: OCI works; a schedule OCI never confirmed is asked again, a reschedule
/// whose work request failed is a new attempt (up to the policy's), an event that ended
/// moves the work on.
pub(super) fn rebooting(ctx: &Ctx<'_>, w: &Work, st: &mut NodeMaintenanceStatus) -> Vec<Action> {
    let (now, event) = (ctx.now, &facts(w).event_id);
    let Some(e) = state(w) else { return vec![] };
    let schedule = |start| Action::ScheduleOciEvent {
        event_id: event.clone(),
        start,
    };
    match e.lifecycle_state.as_str() {
        "SCHEDULED" => {
            if let Some(f) = e
                .failed_reschedule
                .as_ref()
                .filter(|f| st.work_request_id.as_deref() == Some(f.id.as_str()))
            {
                let why = format!(
                    "OCI reschedule of event {event} {} (work request {}): {}",
                    f.status, f.id, f.message
                );
                st.last_error = Some(why.clone());
                st.work_request_id = None;
                if st.attempts >= ctx.s.max_attempts {
                    let reason = format!(
                        "{REASON_PREFIX}OCI maintenance not rescheduled after {} attempts",
                        st.attempts
                    );
                    transition(st, Phase::Failed, now, why);
                    return vec![Action::Drain {
                        node: w.node.clone(),
                        reason,
                    }];
                }
                let Some(start) = window_start(e, None, ctx.s.oci.lead, now) else {
                    return vec![];
                };
                st.attempts += 1;
                st.reboot_issued_at = Some(now);
                return vec![schedule(start)];
            }
            if st.work_request_id.is_some() {
                return vec![];
            }
            // Scheduled, but OCI has not confirmed it (the request failed, or the pass
            // stopped before it): ask again, for the same window while it is ahead.
            window_start(e, st.reboot_issued_at, ctx.s.oci.lead, now)
                .map(schedule)
                .into_iter()
                .collect()
        }
        "SUCCEEDED" => {
            let why = format!("OCI event {event} succeeded");
            transition(st, Phase::Recovering, now, why);
            vec![]
        }
        s @ ("FAILED" | "CANCELED") => {
            let why = format!("OCI event {event} ended {s}; node kept drained");
            st.last_error = Some(why.clone());
            transition(st, Phase::Failed, now, why);
            vec![]
        }
        _ => vec![],
    }
}

/// Recovering: the event is done; once the node responds it is resumed.
pub(super) fn returned(ctx: &Ctx<'_>, w: &Work, st: &mut NodeMaintenanceStatus) -> Vec<Action> {
    match ctx.nodes.get(w.node.as_str()) {
        Some(n)
            if n.state.base != "DOWN"
                && !n.state.has("NOT_RESPONDING")
                && !n.state.is_rebooting() =>
        {
            let why = format!("node responds ({}); resumed", n.state);
            transition(st, Phase::HealthCheck, ctx.now, why);
            vec![Action::Resume {
                node: w.node.clone(),
            }]
        }
        _ => vec![],
    }
}

/// HealthCheck: Slurm briefly flags a resumed node NOT_RESPONDING until its next ping, so
/// the check counts only once the node responds (or fails after the reboot timeout). A
/// node still drained by us lost the resume that began this phase (a crash between the
/// status and the call): it is asked again.
pub(super) fn health_check(ctx: &Ctx<'_>, w: &Work, st: &mut NodeMaintenanceStatus) -> Vec<Action> {
    let (s, now) = (ctx.s, ctx.now);
    let node = ctx.nodes.get(w.node.as_str());
    if node.is_none_or(|n| n.state.base == "DOWN" || n.state.has("NOT_RESPONDING")) {
        let since = st.phase_since.unwrap_or(now);
        if now.duration_since(since) < s.reboot_timeout {
            return vec![];
        }
        let why = format!(
            "{REASON_PREFIX}node not responding {} after OCI maintenance",
            s.reboot_timeout
        );
        return fail_drained(st, w, now, why);
    }
    let ours = |r: &str| r.starts_with(REASON_PREFIX);
    if node.is_some_and(|n| n.state.is_drained() && n.reason.as_deref().is_some_and(ours)) {
        return vec![Action::Resume {
            node: w.node.clone(),
        }];
    }
    if let Some(h) = ctx.health.get(&w.node)
        && !h.checks.is_empty()
    {
        st.health_checks = h.checks.clone();
    }
    match ctx.health.get(&w.node) {
        Some(h) if h.healthy => {
            st.last_error = None;
            transition(
                st,
                Phase::Completed,
                now,
                "OCI maintenance done, node healthy",
            );
            vec![]
        }
        Some(h) => {
            let why = format!(
                "{REASON_PREFIX}health check failed after OCI maintenance: {}",
                h.message
            );
            fail_drained(st, w, now, why)
        }
        None => vec![],
    }
}

/// Whether Pending OCI work may be admitted now: its event SCHEDULED and due to take
/// its node ([`crate::oci::workflow::may_take_node`]).
pub(super) fn ready(ctx: &Ctx<'_>, w: &Work) -> bool {
    w.oci
        .as_ref()
        .and_then(|f| f.state.as_ref())
        .is_some_and(|e| {
            e.lifecycle_state == "SCHEDULED"
                && crate::oci::workflow::may_take_node(e, &ctx.s.oci, ctx.now)
        })
}

/// Pending → Reserved: the node is drained for its event.
pub(super) fn admit(ctx: &Ctx<'_>, w: &Work, st: &mut NodeMaintenanceStatus) -> Vec<Action> {
    st.attempts += 1;
    let why = format!("draining for OCI event {}", facts(w).event_id);
    transition(st, Phase::Reserved, ctx.now, why);
    vec![drain(w)]
}
