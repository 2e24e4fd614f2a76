//! Reservations follow the jobs and keep the budget: each of our reservations not yet
//! started moves to its node's release time (earlier when the jobs ended before their
//! limits, later when a new job landed first), but only to a start where the timeline
//! has room; one that no longer has room where it is (a reboot ran long, a node went
//! down) moves later, or is withdrawn when nodes down elsewhere fill the budget.
//! Earliest first, so a reservation already committed is never displaced by one behind
//! it.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

use super::index::Ctx;
use super::release::Release;
use super::timeline::{NEXT_PASS_GUARD, OPEN, Span, Timeline};
use super::transition::{push_update, transition};
use super::{Action, RETIME_TOLERANCE, Work, WorkUpdate};
use crate::api::NodeMaintenanceStatus;
use crate::api::node_maintenance::{MaintenanceAction, NodeMaintenancePhase as Phase};

/// Retime our reservations ahead and add each to `tl`.
pub(super) fn follow<'w>(
    ctx: &Ctx<'_>,
    work: &[&'w Work],
    statuses: &mut BTreeMap<&'w str, NodeMaintenanceStatus>,
    updates: &mut Vec<WorkUpdate>,
    tl: &mut Timeline,
    d: SignedDuration,
) {
    let now = ctx.now;
    let mut ahead: Vec<(Timestamp, &Work)> = work
        .iter()
        .copied()
        .filter(|w| w.action == MaintenanceAction::Reboot)
        .filter(|w| statuses[w.name.as_str()].phase == Phase::Reserved)
        .filter_map(|w| {
            let r = ctx.reservations.get(ctx.reservation_for(w).as_str())?;
            (r.start > now && ctx.nodes.contains_key(w.node.as_str())).then_some((r.start, w))
        })
        .collect();
    ahead.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
    // A domain's reservation moves as one, with its works.
    let mut groups: BTreeMap<String, Vec<&Work>> = BTreeMap::new();
    ahead.retain(|(_, w)| {
        let name = ctx.reservation_for(w);
        if ctx.shared.contains_key(&name) {
            groups.entry(name).or_default().push(w);
            return false;
        }
        true
    });
    let ours: BTreeSet<&str> = work.iter().map(|w| w.node.as_str()).collect();
    let down_elsewhere = ctx
        .nodes
        .values()
        .filter(|n| !n.state.in_service() && !ours.contains(n.name.as_str()))
        .count();
    let down_elsewhere_ = down_elsewhere;
    for (name, members) in groups {
        let start = ctx.reservations[name.as_str()].start;
        follow_domain(
            ctx,
            &name,
            &members,
            start,
            statuses,
            updates,
            tl,
            d,
            down_elsewhere_,
        );
    }
    for (start, w) in ahead {
        let mut st = statuses[w.name.as_str()].clone();
        let name = ctx.reservation_for(w);
        let new = start_for(ctx, tl, w, start, d).or_else(|| {
            // No room in sight, because ours run late: out of the next pass's way,
            // where it will be looked at again; or where it is, if not that soon.
            let soon = now + ctx.s.interval + NEXT_PASS_GUARD;
            (down_elsewhere < tl.allowed).then_some(start.max(soon + NEXT_PASS_GUARD))
        });
        let Some(new) = new else {
            // Nodes down elsewhere fill the budget: give the commitment back; the node
            // waits its turn again.
            let why = "budget exceeded by nodes down elsewhere: reservation withdrawn";
            transition(&mut st, Phase::Pending, now, why);
            st.reservation_name = None;
            st.reservation_start = None;
            statuses.insert(w.name.as_str(), st.clone());
            push_update(updates, w, st, vec![Action::DeleteReservation { name }]);
            continue;
        };
        // Over a job without a time limit the node is out until that job ends: unknown.
        let to = (ctx.release(&w.node) != Release::Unknown).then_some(new + d);
        tl.hold(&w.node, Span { from: new, to });
        // Later: always (the budget or a job needs it); earlier: past the tolerance.
        let moved = new <= now || new > start || start.duration_since(new) > RETIME_TOLERANCE;
        if !moved {
            continue;
        }
        st.reservation_start = Some(new);
        let action = Action::UpdateReservationStart {
            name,
            start: (new > now).then_some(new),
        };
        statuses.insert(w.name.as_str(), st.clone());
        push_update(updates, w, st, vec![action]);
    }
}

/// Where the reservation of `w` (now at `start`) should start: its release time or the
/// first room after it; where it is, if there is room there but none earlier in sight;
/// `None` when there is no room at all.
fn start_for(
    ctx: &Ctx<'_>,
    tl: &Timeline,
    w: &Work,
    start: Timestamp,
    d: SignedDuration,
) -> Option<Timestamp> {
    let now = ctx.now;
    let release = ctx.release(&w.node);
    let want = release.time().unwrap_or(now).max(now);
    let d = if release == Release::Unknown { OPEN } else { d };
    // Far enough to find any room there is.
    let horizon = want.max(start) + ctx.s.lead_time + d;
    tl.first_fit(&w.node, true, want, d, horizon)
        .or_else(|| (start >= want && tl.fits(&w.node, true, start, d)).then_some(start))
}

/// Retime a domain's reservation: to the latest release of its nodes (or the first
/// room after it) where all of them fit together.
#[allow(clippy::too_many_arguments)]
fn follow_domain<'w>(
    ctx: &Ctx<'_>,
    name: &str,
    members: &[&'w Work],
    start: Timestamp,
    statuses: &mut BTreeMap<&'w str, NodeMaintenanceStatus>,
    updates: &mut Vec<WorkUpdate>,
    tl: &mut Timeline,
    d: SignedDuration,
    down_elsewhere: usize,
) {
    let now = ctx.now;
    let nodes: Vec<&str> = members.iter().map(|w| w.node.as_str()).collect();
    let release = nodes
        .iter()
        .map(|n| ctx.release(n))
        .max()
        .unwrap_or(Release::At(now));
    let want = release.time().unwrap_or(now).max(now);
    let dd = if release == Release::Unknown { OPEN } else { d };
    let horizon = want.max(start) + ctx.s.lead_time + dd;
    let new = tl
        .first_fit_all(&nodes, true, want, dd, horizon)
        .or_else(|| (start >= want && tl.fits_all(&nodes, true, start, dd)).then_some(start))
        .or_else(|| {
            let soon = now + ctx.s.interval + NEXT_PASS_GUARD;
            (down_elsewhere + nodes.len() <= tl.allowed)
                .then_some(start.max(soon + NEXT_PASS_GUARD))
        });
    let Some(new) = new else {
        let why = "budget exceeded by nodes down elsewhere: the domain's reservation withdrawn";
        for (i, w) in members.iter().enumerate() {
            let mut st = statuses[w.name.as_str()].clone();
            transition(&mut st, Phase::Pending, now, why);
            st.reservation_name = None;
            st.reservation_start = None;
            statuses.insert(w.name.as_str(), st.clone());
            let actions = if i == 0 {
                vec![Action::DeleteReservation { name: name.into() }]
            } else {
                vec![]
            };
            push_update(updates, w, st, actions);
        }
        return;
    };
    let to = (release != Release::Unknown).then_some(new + d);
    for n in &nodes {
        tl.hold(n, Span { from: new, to });
    }
    let moved = new <= now || new > start || start.duration_since(new) > RETIME_TOLERANCE;
    if !moved {
        return;
    }
    for (i, w) in members.iter().enumerate() {
        let mut st = statuses[w.name.as_str()].clone();
        st.reservation_start = Some(new);
        statuses.insert(w.name.as_str(), st.clone());
        let actions = if i == 0 {
            vec![Action::UpdateReservationStart {
                name: name.into(),
                start: (new > now).then_some(new),
            }]
        } else {
            vec![]
        };
        push_update(updates, w, st, actions);
    }
}
