//! Admission (`Pending → Reserved`): every candidate, whatever its action, under one
//! budget, in one order — OCI work whose event is due first (earliest window first: a
//! campaign never starves work on faulty hardware), then rolling reboots, expedited work
//! first, then earliest release (seed: "earliest release first"; list scheduling by
//! release time is optimal for makespan when reboots take equal time, P|r_j, p_j=p|Cmax).
//! Rolling reboots also wait for a window, for reservations to be enabled and for no
//! one else's reservation on the node; OCI work only for the policy not to be paused.
//! Neither starts while a blocking alert fires or Prometheus cannot say (`spec.blockers`).

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

use super::index::Ctx;
use super::release::Release;
use super::timeline::{OPEN, Span, Timeline};
use super::topology::{TopologyMode, TopologySettings};
use super::transition::{push_update, transition};
use super::{BudgetFigures, Work, WorkUpdate, oci, reservation_name};
use crate::api::NodeMaintenanceStatus;
use crate::api::node_maintenance::{MaintenanceAction, NodeMaintenancePhase as Phase};

/// What admission decided, beside the updates it added.
pub(super) struct Admitted {
    /// Budget after the admissions.
    pub budget: BudgetFigures,
    pub waiting: BTreeMap<String, String>,
    pub blocked: BTreeSet<String>,
    pub budget_exhausted: bool,
    /// Rolling-reboot nodes that did not start, with their release times.
    pub not_started: Vec<(Release, String)>,
}

/// A candidate's place in the order.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Oci(Option<Timestamp>),
    /// Expedited work first (`false` sorts first).
    /// Among equal release times, nodes with no job to cancel first.
    Reboot {
        not_expedited: bool,
        release: Release,
        cancels: usize,
    },
}

/// Admit what the budget allows; `b` is the budget before admission, `tl` its timeline
/// (every node out, now and committed ahead), `d` how long a node is expected to be out.
pub(super) fn admit<'w>(
    ctx: &Ctx<'_>,
    work: &[&'w Work],
    statuses: &mut BTreeMap<&'w str, NodeMaintenanceStatus>,
    updates: &mut Vec<WorkUpdate>,
    b: BudgetFigures,
    tl: &mut Timeline,
    d: SignedDuration,
) -> Admitted {
    let mut out = Admitted {
        budget: b,
        waiting: BTreeMap::new(),
        blocked: BTreeSet::new(),
        budget_exhausted: false,
        not_started: vec![],
    };
    let candidates = candidates(ctx, work, statuses, &mut out);
    let horizon = ctx.now + ctx.s.lead_time;
    let mut full_note: Option<String> = None;
    let held = ctx.s.blockers.hold();
    let mut domains_ahead = domains_reserved_beyond(statuses, horizon);
    for unit in units(ctx, candidates) {
        let (rank, w) = match unit {
            Unit::One(rank, w) => (rank, w),
            Unit::Domain(rank, domain, members) => {
                let Rank::Reboot { release, .. } = rank else {
                    continue;
                };
                let why = members.iter().find_map(|w| gate(ctx, w, held.as_deref()));
                let why = why.map(str::to_string).or_else(|| {
                    domain_room(ctx, tl, &domain, &members, release, d, domains_ahead)
                        .map(|start| {
                            if start > horizon {
                                domains_ahead += 1;
                            }
                            reserve_domain(
                                ctx, &domain, &members, release, start, statuses, updates, tl, d,
                            );
                        })
                        .err()
                });
                if let Some(why) = why {
                    if why.starts_with("budget full") {
                        out.budget_exhausted = true;
                    }
                    for w in &members {
                        out.waiting.insert(w.node.clone(), why.clone());
                        out.not_started.push((release, w.node.clone()));
                    }
                }
                continue;
            }
        };
        let release = match rank {
            Rank::Oci(_) if ctx.s.paused || held.is_some() => continue,
            Rank::Oci(_) => None,
            Rank::Reboot { release, .. } => Some(release),
        };
        let gap = ctx
            .topology_gap
            .as_ref()
            .map(|g| format!("spec.budget.topology: {g}; new rolling reboots wait"));
        if let Some(why) = release.and(gap) {
            out.waiting.insert(w.node.clone(), why);
        } else if let Some(why) = release.and(gate(ctx, w, held.as_deref())) {
            out.waiting.insert(w.node.clone(), why.to_string());
        } else if let Some(start) = room(ctx, tl, w, release, d) {
            let mut status = statuses[w.name.as_str()].clone();
            let actions = match release {
                None => oci::admit(ctx, w, &mut status),
                Some(r) if r.time().is_some_and(|t| t < start) => {
                    reserve(ctx, w, Release::At(start), &mut status)
                }
                Some(r) => reserve(ctx, w, r, &mut status),
            };
            // Reserved now over a job with no time limit: out until it ends, unknown.
            let to = release
                .filter(|r| *r != Release::Unknown)
                .map(|_| start + d);
            tl.hold(&w.node, Span { from: start, to });
            statuses.insert(w.name.as_str(), status.clone());
            push_update(updates, w, status, actions);
            // The figures are made once, after the loop: thousands of admissions at
            // 10 000 nodes would each rebuild them.
            full_note = None;
            continue;
        } else if let Some(r) = release {
            let why = match r.time() {
                Some(t) if t > horizon && tl.open_ended() < tl.allowed => format!(
                    "released at {t}, beyond the reservation lead time ({})",
                    ctx.s.lead_time
                ),
                _ => {
                    out.budget_exhausted = true;
                    // The same for every candidate until the budget changes: made once.
                    full_note
                        .get_or_insert_with(|| {
                            let now = ctx.figures(work, statuses);
                            full(ctx, &now, work, statuses, tl, horizon)
                        })
                        .clone()
                }
            };
            out.waiting.insert(w.node.clone(), why);
        }
        if let Some(r) = release {
            out.not_started.push((r, w.node.clone()));
        }
    }
    out.budget = ctx.figures(work, statuses);
    out
}

/// When `w` may start, if the timeline has room for it: OCI work now, for as long as OCI
/// takes; a rolling reboot over jobs without a time limit now, until they end; any
/// other at its release time if there is room then (within the lead time, or beyond it
/// while fewer than `allowed` reservations are that far ahead) — never later, so no
/// node stands empty waiting for a slot — except a node freed by cancelling its
/// preemptable jobs, which takes the first room after it: its jobs run until then and
/// are cancelled only when its reservation starts.
fn room(
    ctx: &Ctx<'_>,
    tl: &Timeline,
    w: &Work,
    release: Option<Release>,
    d: SignedDuration,
) -> Option<Timestamp> {
    // The candidate is counted like any other node, even one already out by another's
    // reservation: admission never starts work on a full budget.
    let now = ctx.now;
    let Some(release) = release else {
        return tl.fits(&w.node, false, now, OPEN).then_some(now);
    };
    if release == Release::Unknown {
        return tl.fits(&w.node, false, now, OPEN).then_some(now);
    }
    let want = release.time().unwrap_or(now).max(now);
    let horizon = now + ctx.s.lead_time.max(FAR);
    let start = if ctx.cancels(&w.node).is_empty() {
        (want <= horizon && tl.fits(&w.node, false, want, d)).then_some(want)?
    } else {
        tl.first_fit(&w.node, false, want, d, horizon)?
    };
    let lead = now + ctx.s.lead_time;
    if start > lead && tl.begins_after(lead) >= tl.allowed {
        return None;
    }
    Some(start)
}

/// Candidates as admission takes them: one node, or under `WholeDomain` a domain's
/// rolling reboots together.
enum Unit<'w> {
    One(Rank, &'w Work),
    Domain(Rank, String, Vec<&'w Work>),
}

impl Unit<'_> {
    fn key(&self) -> (&Rank, &str) {
        match self {
            Unit::One(r, w) => (r, &w.node),
            Unit::Domain(r, d, _) => (r, d),
        }
    }
}

/// The candidates in admission's order. A domain ranks by the latest release of its
/// nodes (its jobs have all ended then), expedited if any of its work is.
fn units<'w>(ctx: &Ctx<'_>, mut candidates: Vec<(Rank, &'w Work)>) -> Vec<Unit<'w>> {
    candidates.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.node.cmp(&b.1.node)));
    let whole = matches!(
        &ctx.s.topology,
        Some(TopologySettings {
            mode: TopologyMode::WholeDomain,
            ..
        })
    );
    if !whole || ctx.topology_gap.is_some() {
        return candidates
            .into_iter()
            .map(|(r, w)| Unit::One(r, w))
            .collect();
    }
    let mut units = vec![];
    let mut domains: BTreeMap<&str, Vec<(Rank, &'w Work)>> = BTreeMap::new();
    for (rank, w) in candidates {
        match (&rank, ctx.domain(&w.node)) {
            (Rank::Reboot { .. }, Some(d)) => domains.entry(d).or_default().push((rank, w)),
            _ => units.push(Unit::One(rank, w)),
        }
    }
    for (domain, members) in domains {
        let mut not_expedited = true;
        let mut release = Release::At(ctx.now);
        let mut cancels = 0;
        for (r, _) in &members {
            if let Rank::Reboot {
                not_expedited: n,
                release: r,
                cancels: c,
            } = r
            {
                not_expedited &= *n;
                release = release.max(*r);
                cancels += c;
            }
        }
        let rank = Rank::Reboot {
            not_expedited,
            release,
            cancels,
        };
        let members = members.into_iter().map(|(_, w)| w).collect();
        units.push(Unit::Domain(rank, domain.to_string(), members));
    }
    units.sort_by(|a, b| a.key().cmp(&b.key()));
    units
}

/// Domains whose one reservation begins beyond `lead`.
fn domains_reserved_beyond(
    statuses: &BTreeMap<&str, NodeMaintenanceStatus>,
    lead: Timestamp,
) -> usize {
    statuses
        .values()
        .filter(|s| s.phase == Phase::Reserved && s.domain.is_some())
        .filter(|s| s.reservation_start.is_some_and(|t| t > lead))
        .filter_map(|s| s.reservation_name.as_deref())
        .collect::<BTreeSet<_>>()
        .len()
}

/// When a whole domain may start: where the timeline has room for all of its nodes
/// together at the domain's release (the first room after it when jobs are to be
/// cancelled), within the lead time or while fewer than `allowed` domains (`ahead`) are
/// reserved beyond it — a domain's one reservation counts once, as a node's does, so a
/// budget of one domain still holds the next domains for their turns; otherwise why not.
fn domain_room(
    ctx: &Ctx<'_>,
    tl: &Timeline,
    domain: &str,
    members: &[&Work],
    release: Release,
    d: SignedDuration,
    ahead: usize,
) -> Result<Timestamp, String> {
    let now = ctx.now;
    let nodes: Vec<&str> = members.iter().map(|w| w.node.as_str()).collect();
    if nodes.len() > tl.allowed {
        return Err(format!(
            "domain {domain} has {} nodes to take whole, more than the {} the budget allows out at once",
            nodes.len(),
            tl.allowed
        ));
    }
    let full = || {
        format!(
            "budget full for domain {domain}: its {} nodes do not fit together at {}",
            nodes.len(),
            release
                .time()
                .map_or("now".to_string(), |t| t.max(now).to_string())
        )
    };
    let Some(want) = release.time() else {
        return tl
            .fits_all(&nodes, false, now, OPEN)
            .then_some(now)
            .ok_or_else(full);
    };
    let want = want.max(now);
    let horizon = now + ctx.s.lead_time.max(FAR);
    let cancels = nodes.iter().any(|n| !ctx.cancels(n).is_empty());
    let start = if cancels {
        tl.first_fit_all(&nodes, false, want, d, horizon)
    } else {
        (want <= horizon && tl.fits_all(&nodes, false, want, d)).then_some(want)
    };
    let start = start.ok_or_else(full)?;
    let lead = now + ctx.s.lead_time;
    if start > lead && ahead >= tl.allowed {
        return Err(format!(
            "domain {domain} released at {start}, beyond the reservation lead time ({})",
            ctx.s.lead_time
        ));
    }
    Ok(start)
}

/// Pending → Reserved for a whole domain: one reservation over its nodes from `start`.
#[allow(clippy::too_many_arguments)]
fn reserve_domain<'w>(
    ctx: &Ctx<'_>,
    domain: &str,
    members: &[&'w Work],
    release: Release,
    start: Timestamp,
    statuses: &mut BTreeMap<&'w str, NodeMaintenanceStatus>,
    updates: &mut Vec<WorkUpdate>,
    tl: &mut Timeline,
    d: SignedDuration,
) {
    let now = ctx.now;
    let name = reservation_name(
        &ctx.s.reservation.prefix,
        &domain_token(domain),
        members[0].campaign.as_deref(),
    );
    let nodes: Vec<&str> = members.iter().map(|w| w.node.as_str()).collect();
    let at = match release {
        Release::Unknown => Release::Unknown,
        Release::At(_) => Release::At(start),
    };
    let to = (release != Release::Unknown).then_some(start + d);
    let when = match at.time() {
        None => "now, over jobs without a time limit".to_string(),
        Some(t) if t > now => t.to_string(),
        Some(_) => "now".to_string(),
    };
    for (i, w) in members.iter().enumerate() {
        let mut status = statuses[w.name.as_str()].clone();
        let mut actions = vec![];
        if i == 0 {
            actions.push(ctx.create_domain_reservation(name.clone(), &nodes, at));
        }
        if start <= now {
            actions.extend(ctx.cancels(&w.node));
        }
        transition(
            &mut status,
            Phase::Reserved,
            now,
            format!("reservation {name} over domain {domain} starts {when}"),
        );
        status.reservation_name = Some(name.clone());
        status.reservation_start = Some(start.max(now));
        status.domain = Some(domain.to_string());
        status.last_error = None;
        tl.hold(&w.node, Span { from: start, to });
        statuses.insert(w.name.as_str(), status.clone());
        push_update(updates, w, status, actions);
    }
}

/// A domain's name as it goes into a reservation's name (Slurm's and the agent's
/// characters).
pub(super) fn domain_token(domain: &str) -> String {
    domain
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '.' | '-' => c,
            _ => '_',
        })
        .collect()
}

/// How far ahead a reservation may be made: beyond the lead time, at most as many as
/// the budget allows, so a busy node is held for its turn without thousands of
/// reservations ahead.
const FAR: SignedDuration = SignedDuration::from_hours(24 * 7);

/// Why a full budget is full.
fn full(
    ctx: &Ctx<'_>,
    b: &BudgetFigures,
    work: &[&Work],
    statuses: &BTreeMap<&str, NodeMaintenanceStatus>,
    tl: &Timeline,
    horizon: Timestamp,
) -> String {
    let out_now = tl.out_at(ctx.now).max(b.combined().len());
    let note = ctx.full_note(b, work, statuses);
    if out_now >= b.allowed {
        return format!(
            "budget full: {out_now} of {} allowed nodes out{note}",
            b.allowed
        );
    }
    format!(
        "budget full: {out_now} of {} allowed nodes out now, the rest committed until {horizon} \
         ({} reserved ahead){note}",
        b.allowed,
        tl.begins_after(ctx.now)
    )
}

/// Pending work that could start: OCI work whose event is due and whose node is in
/// service; rolling reboots whose node is in service and free of others' reservations
/// (the rest are noted as waiting or blocked).
fn candidates<'w>(
    ctx: &Ctx<'_>,
    work: &[&'w Work],
    statuses: &BTreeMap<&str, NodeMaintenanceStatus>,
    out: &mut Admitted,
) -> Vec<(Rank, &'w Work)> {
    let mut candidates = vec![];
    for w in work.iter().copied() {
        if statuses[w.name.as_str()].phase != Phase::Pending {
            continue;
        }
        if w.action == MaintenanceAction::OciMaintenance {
            let in_service = ctx
                .nodes
                .get(w.node.as_str())
                .is_some_and(|n| n.state.in_service());
            if in_service && oci::ready(ctx, w) {
                let window = w.oci.as_ref().and_then(|f| f.state.as_ref());
                candidates.push((Rank::Oci(window.and_then(|e| e.time_window_start)), w));
            }
            continue;
        }
        let Some(node) = ctx.nodes.get(w.node.as_str()) else {
            out.waiting
                .insert(w.node.clone(), "node is not in the partition".into());
            out.blocked.insert(w.node.clone());
            continue;
        };
        if !node.state.in_service() {
            out.blocked.insert(w.node.clone());
            let reason = node.reason.as_deref().unwrap_or("no reason");
            let why = format!(
                "node is {} ({reason}); it is left alone until back in service",
                node.state
            );
            out.waiting.insert(w.node.clone(), why);
            continue;
        }
        let release = ctx.release(&w.node);
        if let Some(r) = ctx.foreign_conflict(&w.node, release) {
            let why = format!(
                "node is in reservation {} (not ours) from {} to {}",
                r.name, r.start, r.end
            );
            out.waiting.insert(w.node.clone(), why);
            continue;
        }
        let not_expedited = !ctx.s.expedited.contains(&w.name);
        let rank = Rank::Reboot {
            not_expedited,
            release,
            cancels: ctx.cancels(&w.node).len(),
        };
        candidates.push((rank, w));
    }
    candidates
}

/// Why a rolling reboot may not start now, whatever the budget; `held`: why the
/// blockers hold new work, if they do.
fn gate<'a>(ctx: &Ctx<'_>, w: &Work, held: Option<&'a str>) -> Option<&'a str> {
    let s = ctx.s;
    if !s.reservations_enabled {
        Some("reservations are disabled (monitor only)")
    } else if s.paused {
        Some("policy is paused")
    } else if held.is_some() {
        held
    } else if !s.window_open && !s.expedited.contains(&w.name) {
        Some("outside the maintenance windows")
    } else {
        None
    }
}

/// Pending → Reserved for a rolling reboot: a reservation from the release time, and
/// the cancels of preemptable jobs when termination is on.
fn reserve(
    ctx: &Ctx<'_>,
    w: &Work,
    release: Release,
    status: &mut NodeMaintenanceStatus,
) -> Vec<super::Action> {
    let now = ctx.now;
    let name = ctx.reservation_for(w);
    let mut actions = vec![ctx.create_reservation(name.clone(), &w.node, release)];
    if release.time().is_none_or(|t| t <= now) {
        actions.extend(ctx.cancels(&w.node));
    }
    let when = match release.time() {
        None => "now, over jobs without a time limit".to_string(),
        Some(t) if t > now => t.to_string(),
        Some(_) => "now".to_string(),
    };
    transition(
        status,
        Phase::Reserved,
        now,
        format!("reservation {name} starts {when}"),
    );
    status.reservation_name = Some(name);
    status.reservation_start = Some(release.time().unwrap_or(now).max(now));
    status.last_error = None;
    actions
}
