//! The one state machine every piece of work follows, whatever its action:
//!
//! ```text
//! Pending → Reserved → PendingReboot → Rebooting → Recovering → HealthCheck → Completed
//!                                                                           ↘ Failed
//! ```
//!
//! The action decides only how a node is taken out (a reservation at the end of its jobs,
//! or a drain before OCI's window), how it is "rebooted" (Slurm's reboot, or OCI's event
//! scheduled) and how its return is recognised (a new BootTime, or the event SUCCEEDED and
//! the node responding): [`super::reboot`] and [`super::oci`] hold those parts; this file
//! holds the table and what every action shares. Admission (`Pending → Reserved`) is
//! [`super::admission`], under one budget for all work.

use jiff::Timestamp;

use super::index::Ctx;
use super::{Action, MAX_TRANSITIONS, Work, WorkUpdate, oci, reboot};
use crate::api::node_maintenance::{
    MaintenanceAction, NodeMaintenancePhase as Phase, NodeMaintenanceStatus, Transition,
};

/// Advance one piece of work by one pass; returns the actions to carry out after its
/// status is written.
pub(super) fn step(ctx: &Ctx<'_>, w: &Work, st: &mut NodeMaintenanceStatus) -> Vec<Action> {
    use MaintenanceAction::{OciMaintenance as Oci, Reboot};
    if let Some(actions) = match w.action {
        Reboot => reboot::precheck(ctx, w, st),
        Oci => oci::precheck(w),
    } {
        return actions;
    }
    match (st.phase, w.action) {
        (Phase::Pending, Reboot) => vec![],
        (Phase::Pending, Oci) => oci::catch_up(ctx, w, st),
        (Phase::Reserved, Reboot) => reboot::taken_out(ctx, w, st),
        (Phase::Reserved | Phase::PendingReboot, Oci) => oci::taken_out(ctx, w, st),
        (Phase::PendingReboot, Reboot) => reboot::reboot(ctx, w, st),
        (Phase::Rebooting | Phase::Recovering, Reboot) => reboot::returned(ctx, w, st),
        (Phase::Rebooting, Oci) => oci::rebooting(ctx, w, st),
        (Phase::Recovering, Oci) => oci::returned(ctx, w, st),
        (Phase::HealthCheck, Reboot) => reboot::health_check(ctx, w, st),
        (Phase::HealthCheck, Oci) => oci::health_check(ctx, w, st),
        (Phase::Completed | Phase::Failed, Reboot) => reboot::ended(ctx, w),
        (Phase::Completed | Phase::Failed, Oci) => vec![],
    }
}

/// Move to `phase`, keeping at most [`MAX_TRANSITIONS`] transitions.
pub(super) fn transition(
    status: &mut NodeMaintenanceStatus,
    phase: Phase,
    now: Timestamp,
    message: impl Into<String>,
) {
    status.phase = phase;
    status.phase_since = Some(now);
    status.transitions.push(Transition {
        phase,
        time: now,
        message: message.into(),
    });
    if status.transitions.len() > MAX_TRANSITIONS {
        let excess = status.transitions.len() - MAX_TRANSITIONS;
        status.transitions.drain(..excess);
    }
}

/// End the work `Failed` and keep its node drained with `reason`.
pub(super) fn fail_drained(
    st: &mut NodeMaintenanceStatus,
    w: &Work,
    now: Timestamp,
    reason: String,
) -> Vec<Action> {
    st.last_error = Some(reason.clone());
    transition(st, Phase::Failed, now, reason.clone());
    vec![Action::Drain {
        node: w.node.clone(),
        reason,
    }]
}

/// Add `status` and `actions` to the pass's updates, merging with the work's earlier
/// update of the same pass.
pub(super) fn push_update(
    updates: &mut Vec<WorkUpdate>,
    w: &Work,
    status: NodeMaintenanceStatus,
    actions: Vec<Action>,
) {
    match updates.iter_mut().find(|u| u.name == w.name) {
        Some(u) => {
            u.status = status;
            u.actions.extend(actions);
        }
        None => updates.push(WorkUpdate {
            name: w.name.clone(),
            node: w.node.clone(),
            status,
            actions,
        }),
    }
}
