//! When the next pass is due: the earliest known event, so a node is reserved, rebooted
//! and returned within moments of it becoming possible, whatever the policy's interval
//! (which stays the longest wait: jobs that end before their limits are seen only by
//! looking).
//!
//! - a step taken this pass: at once (the next step may already be possible);
//! - a reservation of ours ahead: shortly before it starts (to move it if the budget no
//!   longer has room) and when it starts;
//! - jobs holding a node being taken out, or a waiting node's release time: their ends;
//! - a node rebooting: when it is expected back (learned from this campaign), then every
//!   few seconds, and at the reboot timeout;
//! - the health check's settle time, a node not responding's timeout.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::index::Ctx;
use super::release::Release;
use super::{Work, WorkUpdate};
use crate::api::NodeMaintenanceStatus;
use crate::api::node_maintenance::{MaintenanceAction, NodeMaintenancePhase as Phase};

/// How long before a reservation of ours starts its budget is checked once more.
pub const BEFORE_START: SignedDuration = SignedDuration::from_secs(5);
/// How often a node past its expected return is looked at.
pub const RETURN_POLL: SignedDuration = SignedDuration::from_secs(2);

/// The earliest moment after this pass something is due, `now` for at once.
pub(super) fn next_due(
    ctx: &Ctx<'_>,
    work: &[&Work],
    statuses: &BTreeMap<&str, NodeMaintenanceStatus>,
    updates: &[WorkUpdate],
    not_started: &[(Release, String)],
    per_node: SignedDuration,
) -> Option<Timestamp> {
    let now = ctx.now;
    let stepped = updates.iter().any(|u| {
        work.iter()
            .find(|w| w.name == u.name)
            .is_some_and(|w| w.status.phase != u.status.phase)
    });
    if stepped {
        return Some(now);
    }
    let reboot = reboot_duration(work).unwrap_or(per_node);
    let mut due: Vec<Timestamp> = vec![];
    for w in work
        .iter()
        .filter(|w| w.action == MaintenanceAction::Reboot)
    {
        let st = &statuses[w.name.as_str()];
        due.extend(of_work(ctx, w, st, reboot));
    }
    let horizon = now + ctx.s.lead_time;
    for (r, _) in not_started {
        if let Some(t) = r.time() {
            due.push(if t > horizon { t - ctx.s.lead_time } else { t });
        }
    }
    due.into_iter().filter(|t| *t > now).min()
}

fn of_work(
    ctx: &Ctx<'_>,
    w: &Work,
    st: &NodeMaintenanceStatus,
    reboot: SignedDuration,
) -> Vec<Timestamp> {
    let now = ctx.now;
    let s = ctx.s;
    let job_ends = || {
        ctx.jobs_on(&w.node)
            .filter_map(|j| j.end_time)
            .collect::<Vec<_>>()
    };
    match st.phase {
        Phase::Reserved => match st.reservation_start {
            Some(t) if t > now => vec![t - BEFORE_START, t],
            _ => job_ends(),
        },
        Phase::PendingReboot => {
            let mut due = job_ends();
            due.extend(st.phase_since.map(|t| t + s.reboot_timeout));
            due
        }
        Phase::Rebooting | Phase::Recovering => {
            let Some(issued) = st.reboot_issued_at else {
                return vec![];
            };
            let back = issued + reboot;
            let look = if back > now { back } else { now + RETURN_POLL };
            vec![
                look,
                issued + s.reboot_timeout + SignedDuration::from_secs(1),
            ]
        }
        Phase::HealthCheck => st
            .phase_since
            .map(|t| t + s.settle_time)
            .into_iter()
            .collect(),
        _ => vec![],
    }
}

/// The shortest reboot seen in the campaign: reboot issued to back in service.
fn reboot_duration(work: &[&Work]) -> Option<SignedDuration> {
    work.iter()
        .filter(|w| w.action == MaintenanceAction::Reboot && w.status.phase == Phase::Completed)
        .filter_map(|w| {
            let tr = &w.status.transitions;
            let issued = tr.iter().rev().find(|t| t.phase == Phase::Rebooting)?.time;
            let back = tr
                .iter()
                .find(|t| {
                    matches!(t.phase, Phase::HealthCheck | Phase::Completed) && t.time >= issued
                })?
                .time;
            Some(back.duration_since(issued))
        })
        .min()
}
