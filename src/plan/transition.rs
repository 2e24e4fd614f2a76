//! How a status moves, for every part of the planner: a transition (bounded history),
//! a failure that keeps the node drained, an update merged into the pass's list.

use jiff::Timestamp;

use super::{Action, MAX_TRANSITIONS, Work, WorkUpdate};
use crate::api::node_maintenance::{
    NodeMaintenancePhase as Phase, NodeMaintenanceStatus, Transition,
};

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
