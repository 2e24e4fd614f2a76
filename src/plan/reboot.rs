//! How a rolling reboot moves through the state machine ([`super::machine`]): the node is
//! taken out by a MAINT reservation that starts when its jobs end (seed: "reservation at
//! the end of the running jobs"), rebooted by Slurm (`scontrol reboot`, resumed by
//! Slurm), and back once its BootTime is newer than the reboot and it is in service;
//! then the health check and the settle time.

use super::index::Ctx;
use std::collections::BTreeMap;

use super::transition::{fail_drained, push_update, transition};
use super::{Action, BOOT_CLOCK_SKEW, REASON_PREFIX, Work, WorkUpdate, needs_reboot};
use crate::api::node_maintenance::{NodeMaintenancePhase as Phase, NodeMaintenanceStatus};
use crate::slurm::Node;

/// Our reservation of the work, when Slurm has it. A domain's reservation goes with
/// the last of its works to end, so the domain returns whole.
fn delete_reservation(ctx: &Ctx<'_>, w: &Work) -> Option<Action> {
    let name = ctx.reservation_for(w);
    if let Some(members) = ctx.sharing(w) {
        let others_ended = members.iter().all(|(n, ended)| *n == w.node || *ended);
        let ended_before = w.status.phase.is_terminal();
        let first = members.first().is_some_and(|(n, _)| *n == w.node);
        if !others_ended || (ended_before && !first) {
            return None;
        }
    }
    ctx.reservations
        .contains_key(name.as_str())
        .then_some(Action::DeleteReservation { name })
}

/// What holds for every phase: a node gone from the partition fails its work; a campaign
/// moved or withdrawn ends work not yet started.
pub(super) fn precheck(
    ctx: &Ctx<'_>,
    w: &Work,
    st: &mut NodeMaintenanceStatus,
) -> Option<Vec<Action>> {
    let (s, now) = (ctx.s, ctx.now);
    let Some(node) = ctx.nodes.get(w.node.as_str()).copied() else {
        if st.phase.is_terminal() {
            return Some(vec![]);
        }
        transition(
            st,
            Phase::Failed,
            now,
            format!("node {} is no longer in partition {}", w.node, s.partition),
        );
        st.last_error = Some(format!(
            "node {} vanished from partition {}",
            w.node, s.partition
        ));
        return Some(delete_reservation(ctx, w).into_iter().collect());
    };
    if matches!(st.phase, Phase::Pending | Phase::Reserved)
        && !needs_reboot(node, s.reboot_required_before)
    {
        let why = match s.reboot_required_before {
            None => "campaign withdrawn (no rebootRequiredBefore)",
            Some(_) => "node already booted after rebootRequiredBefore",
        };
        transition(st, Phase::Completed, now, why);
        return Some(delete_reservation(ctx, w).into_iter().collect());
    }
    None
}

fn node<'a>(ctx: &Ctx<'a>, w: &Work) -> &'a Node {
    ctx.nodes[w.node.as_str()]
}

/// A domain whose last works all end in one pass: none of them saw the others ended, so
/// its reservation goes here, in that pass, once (on the update of the domain's first node).
pub(super) fn release_returned_domains(
    ctx: &Ctx<'_>,
    work: &[&Work],
    statuses: &BTreeMap<&str, NodeMaintenanceStatus>,
    updates: &mut Vec<WorkUpdate>,
) {
    for name in ctx.shared.keys() {
        if !ctx.reservations.contains_key(name.as_str()) {
            continue;
        }
        let holders: Vec<&Work> = work
            .iter()
            .copied()
            .filter(|w| w.status.reservation_name.as_deref() == Some(name.as_str()))
            .collect();
        let all_ended = holders.iter().all(|w| {
            statuses
                .get(w.name.as_str())
                .is_some_and(|s| s.phase.is_terminal())
        });
        let deleted = updates
            .iter()
            .flat_map(|u| &u.actions)
            .any(|a| matches!(a, Action::DeleteReservation { name: n } if n == name));
        let Some(first) = holders.iter().min_by(|a, b| a.node.cmp(&b.node)) else {
            continue;
        };
        if all_ended && !deleted {
            let status = statuses[first.name.as_str()].clone();
            push_update(
                updates,
                first,
                status,
                vec![Action::DeleteReservation { name: name.clone() }],
            );
        }
    }
}

/// Terminal work keeps no reservation of ours behind.
pub(super) fn ended(ctx: &Ctx<'_>, w: &Work) -> Vec<Action> {
    delete_reservation(ctx, w).into_iter().collect()
}

/// Reserved: the reservation exists; once it is active and the node empty, the node
/// waits for its reboot.
pub(super) fn taken_out(ctx: &Ctx<'_>, w: &Work, st: &mut NodeMaintenanceStatus) -> Vec<Action> {
    let now = ctx.now;
    let name = ctx.reservation_for(w);
    let release = ctx.release(&w.node);
    match ctx.reservations.get(name.as_str()) {
        None => {
            // Status said Reserved but Slurm has no reservation (a pass died between the
            // two, or someone deleted it): create it again, same name.
            st.reservation_start = Some(release.time().unwrap_or(now).max(now));
            let Some(members) = ctx.sharing(w) else {
                return vec![ctx.create_reservation(name, &w.node, release)];
            };
            // A domain's: made again once, by its first work, over every work not ended.
            let live: Vec<&str> = members
                .iter()
                .filter(|(_, ended)| !ended)
                .map(|(n, _)| n.as_str())
                .collect();
            if live.first() != Some(&w.node.as_str()) {
                return vec![];
            }
            let release = live.iter().map(|n| ctx.release(n)).max().unwrap_or(release);
            st.reservation_start = Some(release.time().unwrap_or(now).max(now));
            return vec![ctx.create_domain_reservation(name, &live, release)];
        }
        // Not started yet: [`super::retime`] moves it with the jobs and the budget.
        Some(r) if r.start > now => return vec![],
        Some(_) => {}
    }
    if !ctx.busy(&w.node) {
        if ctx.s.reboots_enabled {
            transition(
                st,
                Phase::PendingReboot,
                now,
                "reservation active and node empty",
            );
        }
        return vec![];
    }
    ctx.cancels(&w.node)
}

/// PendingReboot: issue the reboot once the node is empty and answering.
pub(super) fn reboot(ctx: &Ctx<'_>, w: &Work, st: &mut NodeMaintenanceStatus) -> Vec<Action> {
    let (s, now, node) = (ctx.s, ctx.now, node(ctx, w));
    // Someone started a job inside our reservation: wait for it. A reboot already under
    // way (one that was refused but ran anyway, or a person's): never a second one.
    if !s.reboots_enabled || ctx.busy(&w.node) || node.state.is_rebooting() {
        return vec![];
    }
    // Slurm cannot reboot a node whose slurmd does not answer: wait for it to come back
    // by itself, then give up rather than spend attempts on it.
    if node.state.has("NOT_RESPONDING") {
        let since = st.phase_since.unwrap_or(now);
        if now.duration_since(since) <= s.reboot_timeout {
            return vec![];
        }
        let why = format!(
            "node not responding for {} (state {}); Slurm cannot reboot it: \
             power-cycle it, then ask for a retry",
            s.reboot_timeout, node.state
        );
        let mut actions = fail_drained(st, w, now, format!("{REASON_PREFIX}{why}"));
        st.last_error = Some(why);
        actions.extend(delete_reservation(ctx, w));
        return actions;
    }
    st.attempts += 1;
    st.boot_time_before = node.boot_time;
    st.reboot_issued_at = Some(now);
    let reason = format!(
        "slurm-maint: {} attempt {}/{}",
        w.name, st.attempts, s.max_attempts
    );
    transition(
        st,
        Phase::Rebooting,
        now,
        format!("reboot issued, attempt {}", st.attempts),
    );
    vec![Action::Reboot {
        node: w.node.clone(),
        reason,
    }]
}

/// A new boot is newer than the one before and not older than the reboot (within the
/// clocks' skew): Slurm moves a BootTime by a second when a slurmd registers again
/// without rebooting (seen on 24.11), which is no reboot.
fn rebooted(st: &NodeMaintenanceStatus, node: &Node) -> bool {
    match (st.boot_time_before, node.boot_time) {
        (Some(before), Some(after)) => {
            after > before
                && st
                    .reboot_issued_at
                    .is_none_or(|t| after + BOOT_CLOCK_SKEW >= t)
        }
        (None, Some(after)) => st.reboot_issued_at.is_some_and(|t| after >= t),
        _ => false,
    }
}

/// Rebooting and Recovering: back once rebooted and in service; an attempt fails after
/// the timeout or when Slurm gives up on the node.
pub(super) fn returned(ctx: &Ctx<'_>, w: &Work, st: &mut NodeMaintenanceStatus) -> Vec<Action> {
    let (s, now, node) = (ctx.s, ctx.now, node(ctx, w));
    let rebooted = rebooted(st, node);
    if rebooted && node.state.in_service() {
        if s.health_check {
            transition(
                st,
                Phase::HealthCheck,
                now,
                "node rebooted and back in service",
            );
            return vec![];
        }
        return complete(ctx, w, st);
    }
    let timed_out = st
        .reboot_issued_at
        .is_some_and(|t| now.duration_since(t) > s.reboot_timeout);
    let slurm_gave_up = node.state.base == "DOWN"
        && !node.state.is_rebooting()
        && node
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("reboot timed out"));
    if timed_out || slurm_gave_up {
        let why = if slurm_gave_up {
            format!(
                "Slurm reports {}: {}",
                node.state,
                node.reason.as_deref().unwrap_or("")
            )
        } else {
            format!(
                "node not back in service {} after the reboot was issued (state {})",
                s.reboot_timeout, node.state
            )
        };
        return fail_attempt(st, w, now, s.max_attempts, why, delete_reservation(ctx, w));
    }
    if st.phase == Phase::Rebooting
        && (rebooted || node.state.is_rebooting() || node.state.base == "DOWN")
    {
        transition(
            st,
            Phase::Recovering,
            now,
            format!("node is {}", node.state),
        );
    }
    vec![]
}

/// HealthCheck: healthy for the settle time completes; unhealthy fails and drains.
pub(super) fn health_check(ctx: &Ctx<'_>, w: &Work, st: &mut NodeMaintenanceStatus) -> Vec<Action> {
    let now = ctx.now;
    if let Some(h) = ctx.health.get(&w.node)
        && !h.checks.is_empty()
    {
        st.health_checks = h.checks.clone();
    }
    match ctx.health.get(&w.node) {
        None => vec![],
        Some(h) if h.healthy => {
            let since = st.phase_since.unwrap_or(now);
            if now.duration_since(since) >= ctx.s.settle_time {
                complete(ctx, w, st)
            } else {
                vec![]
            }
        }
        Some(h) => {
            let reason = format!(
                "{REASON_PREFIX}health check failed after reboot: {}",
                h.message
            );
            let mut actions = fail_drained(st, w, now, reason);
            actions.extend(delete_reservation(ctx, w));
            actions
        }
    }
}

fn complete(ctx: &Ctx<'_>, w: &Work, st: &mut NodeMaintenanceStatus) -> Vec<Action> {
    transition(st, Phase::Completed, ctx.now, "rebooted and healthy");
    st.last_error = None;
    delete_reservation(ctx, w).into_iter().collect()
}

/// One attempt failed: another one (PendingReboot), or `Failed` with the node drained
/// after the last.
pub(super) fn fail_attempt(
    st: &mut NodeMaintenanceStatus,
    w: &Work,
    now: jiff::Timestamp,
    max_attempts: u32,
    why: String,
    delete: Option<Action>,
) -> Vec<Action> {
    st.reboot_issued_at = None;
    if st.attempts < max_attempts {
        st.last_error = Some(why.clone());
        transition(
            st,
            Phase::PendingReboot,
            now,
            format!("attempt {} failed: {why}", st.attempts),
        );
        return vec![];
    }
    let reason = format!(
        "{REASON_PREFIX}reboot failed after {} attempts: {why}",
        st.attempts
    );
    let mut actions = fail_drained(st, w, now, reason);
    st.last_error = Some(why);
    actions.extend(delete);
    actions
}
