//! The budget as a timeline: each node out of service over an interval, and a new
//! interval admitted only when, at every moment of it, the nodes out stay within the
//! budget. A node committed to a reservation hours ahead holds no slot until then.
//!
//! Intervals, per node (a node counts once, over the hull of what holds it):
//! - down or drained by others, and ours in flight past the expected end: from now, open;
//! - anyone's MAINT reservation (ours only when its work has ended): its start to its end;
//! - ours in flight: from now to the expected end (taken out + the expected duration),
//!   and at least to the next pass (a return counts once seen);
//! - ours reserved ahead: the reservation's start, for the expected duration;
//! - OCI work in flight: from now, open (OCI's repair takes what it takes).
//!
//! The expected duration is learned from the campaign's completed nodes (the longest
//! seen, so the guarantee errs on the safe side); before any has completed it is one
//! attempt's worst case, the reboot timeout plus the settle time.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

use super::Work;
use super::index::Ctx;
use super::topology::{TopologyMode, TopologySettings};
use crate::api::NodeMaintenanceStatus;
use crate::api::node_maintenance::{MaintenanceAction, NodeMaintenancePhase as Phase};

/// How far past the next pass an in-flight node counts at least: a reservation never
/// starts at the very moment the pass that would move it runs.
pub const NEXT_PASS_GUARD: SignedDuration = SignedDuration::from_secs(10);

/// Long enough to stand for "until it ends" in a fit.
pub const OPEN: SignedDuration = SignedDuration::from_hours(24 * 366);

/// One node's time out of service: `[from, to)`, `to = None` when open-ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub from: Timestamp,
    pub to: Option<Timestamp>,
}

impl Span {
    fn covers(&self, t: Timestamp) -> bool {
        self.from <= t && self.to.is_none_or(|e| t < e)
    }

    fn hull(self, o: Span) -> Span {
        let to = match (self.to, o.to) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        Span {
            from: self.from.min(o.from),
            to,
        }
    }
}

/// Nodes out over time, and how many may be out at once. Begins and ends are kept
/// sorted, so a count at a moment is two binary searches: a pass over thousands of
/// candidates stays linear in them. With a `Spread` topology each domain keeps a
/// timeline of its own, and a node fits only where both have room.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub allowed: usize,
    spans: BTreeMap<String, Span>,
    /// Every span's `from`, sorted.
    froms: Vec<Timestamp>,
    /// Every bounded span's `to`, sorted.
    tos: Vec<Timestamp>,
    open: usize,
    domains: Option<Box<Domains>>,
}

/// Per-domain timelines of a `Spread` budget.
#[derive(Clone, Debug, Default)]
struct Domains {
    of: BTreeMap<String, String>,
    per: BTreeMap<String, Timeline>,
    allowed: usize,
}

fn insert_sorted(v: &mut Vec<Timestamp>, t: Timestamp) {
    let i = v.partition_point(|x| *x <= t);
    v.insert(i, t);
}

fn remove_sorted(v: &mut Vec<Timestamp>, t: Timestamp) {
    let i = v.partition_point(|x| *x < t);
    if v.get(i) == Some(&t) {
        v.remove(i);
    }
}

impl Timeline {
    pub fn new(allowed: usize) -> Self {
        Self {
            allowed,
            ..Default::default()
        }
    }

    /// Also at most `allowed` nodes out at once in each domain (`of`: node → domain;
    /// a node in none constrains only the partition).
    pub fn with_domains(mut self, of: BTreeMap<String, String>, allowed: usize) -> Self {
        self.domains = Some(Box::new(Domains {
            of,
            per: BTreeMap::new(),
            allowed,
        }));
        self
    }

    /// `node` is out over `span` (merged with what already holds it).
    pub fn hold(&mut self, node: &str, span: Span) {
        if let Some(d) = self.domains.as_deref_mut()
            && let Some(dom) = d.of.get(node)
        {
            let allowed = d.allowed;
            d.per
                .entry(dom.clone())
                .or_insert_with(|| Timeline::new(allowed))
                .hold(node, span);
        }
        let merged = match self.spans.get(node).copied() {
            Some(old) => {
                self.unindex(old);
                old.hull(span)
            }
            None => span,
        };
        insert_sorted(&mut self.froms, merged.from);
        match merged.to {
            Some(t) => insert_sorted(&mut self.tos, t),
            None => self.open += 1,
        }
        self.spans.insert(node.to_string(), merged);
    }

    fn unindex(&mut self, s: Span) {
        remove_sorted(&mut self.froms, s.from);
        match s.to {
            Some(t) => remove_sorted(&mut self.tos, t),
            None => self.open -= 1,
        }
    }

    pub fn span(&self, node: &str) -> Option<Span> {
        self.spans.get(node).copied()
    }

    /// Nodes out at `t`: begun by then, and not ended by then.
    pub fn out_at(&self, t: Timestamp) -> usize {
        let begun = self.froms.partition_point(|x| *x <= t);
        let ended = self.tos.partition_point(|x| *x <= t);
        begun - ended
    }

    /// The timeline of `node`'s domain under a `Spread` budget, with its limit.
    fn domain_of(&self, node: &str) -> Option<(Option<&Timeline>, usize)> {
        let d = self.domains.as_deref()?;
        let dom = d.of.get(node)?;
        Some((d.per.get(dom), d.allowed))
    }

    /// Whether `k` more nodes may be out over `[start, start + d)`, the spans of
    /// `except` (nodes being moved) left out of the count.
    fn fits_in(&self, except: &[&str], k: usize, start: Timestamp, d: SignedDuration) -> bool {
        let end = start + d;
        let own: Vec<Span> = except.iter().filter_map(|n| self.span(n)).collect();
        let count = |t: Timestamp| self.out_at(t) - own.iter().filter(|s| s.covers(t)).count();
        // The count only rises where a span begins: check the start and every later begin.
        let lo = self.froms.partition_point(|x| *x <= start);
        let hi = self.froms.partition_point(|x| *x < end);
        std::iter::once(start)
            .chain(self.froms[lo..hi.max(lo)].iter().copied())
            .all(|t| count(t) + k <= self.allowed)
    }

    /// Whether `node` may be out over `[start, start + d)`, in the partition and in its
    /// domain; `moving`: its own span (a reservation being moved) is left out.
    pub fn fits(&self, node: &str, moving: bool, start: Timestamp, d: SignedDuration) -> bool {
        let ok = |tl: &Timeline| {
            // A node counts once over the hull of what holds it: held already (another's
            // reservation ends before), it is out from then on; and, not being moved, it
            // counts again over its new interval, so nothing starts on a full budget.
            let new = Span {
                from: start,
                to: Some(start + d),
            };
            let hull = tl.span(node).map_or(new, |o| o.hull(new));
            let len = hull.to.map_or(OPEN, |e| e.duration_since(hull.from));
            tl.fits_in(&[node], 1, hull.from, len) && (moving || tl.fits_in(&[], 1, start, d))
        };
        ok(self) && self.domain_of(node).and_then(|(tl, _)| tl).is_none_or(ok)
    }

    /// Whether all of `nodes` may be out together over `[start, start + d)` (a whole
    /// domain); `moving`: their own spans are left out.
    pub fn fits_all(
        &self,
        nodes: &[&str],
        moving: bool,
        start: Timestamp,
        d: SignedDuration,
    ) -> bool {
        let except: &[&str] = if moving { nodes } else { &[] };
        self.fits_in(except, nodes.len(), start, d)
    }

    /// Nodes out with no known end among the spans (`except`'s own left out).
    fn open_except(&self, except: &[&str]) -> usize {
        let own = except
            .iter()
            .filter(|n| self.span(n).is_some_and(|s| s.to.is_none()))
            .count();
        self.open - own
    }

    /// The earliest start at or after `from`, and no later than `horizon`, at which
    /// `node` fits for `d` (see [`Self::fits`]): `from` itself, or a moment another node
    /// of the partition or of its domain comes back.
    pub fn first_fit(
        &self,
        node: &str,
        moving: bool,
        from: Timestamp,
        d: SignedDuration,
        horizon: Timestamp,
    ) -> Option<Timestamp> {
        let except: &[&str] = if moving { &[node] } else { &[] };
        if from > horizon {
            return None;
        }
        // Nodes out with no known end fill a budget everywhere: nothing later fits.
        if self.open_except(except) >= self.allowed {
            return self.fits(node, moving, from, d).then_some(from);
        }
        let mut ends = self.ends_within(from, horizon);
        if let Some((Some(tl), allowed)) = self.domain_of(node) {
            if tl.open_except(except) >= allowed {
                return None;
            }
            ends.extend(tl.ends_within(from, horizon));
            ends.sort_unstable();
            ends.dedup();
        }
        self.earliest(from, horizon, &ends, |t| self.fits(node, moving, t, d))
    }

    /// The earliest start at or after `from`, and no later than `horizon`, at which all
    /// of `nodes` fit together for `d` (see [`Self::fits_all`]).
    pub fn first_fit_all(
        &self,
        nodes: &[&str],
        moving: bool,
        from: Timestamp,
        d: SignedDuration,
        horizon: Timestamp,
    ) -> Option<Timestamp> {
        let except: &[&str] = if moving { nodes } else { &[] };
        if self.open_except(except) + nodes.len() > self.allowed {
            return None;
        }
        let ends = self.ends_within(from, horizon);
        self.earliest(from, horizon, &ends, |t| self.fits_all(nodes, moving, t, d))
    }

    /// Distinct span ends in `(from, horizon]`, sorted.
    fn ends_within(&self, from: Timestamp, horizon: Timestamp) -> Vec<Timestamp> {
        let lo = self.tos.partition_point(|x| *x <= from);
        let hi = self.tos.partition_point(|x| *x <= horizon);
        let mut v = self.tos[lo..hi.max(lo)].to_vec();
        v.dedup();
        v
    }

    fn earliest(
        &self,
        from: Timestamp,
        horizon: Timestamp,
        ends: &[Timestamp],
        ok: impl Fn(Timestamp) -> bool,
    ) -> Option<Timestamp> {
        if from > horizon {
            return None;
        }
        std::iter::once(from)
            .chain(ends.iter().copied())
            .find(|t| ok(*t))
    }

    /// Per domain (of a `Spread` budget): nodes out at `t`.
    pub fn domain_out_at(&self, t: Timestamp) -> BTreeMap<&str, usize> {
        self.domains
            .as_deref()
            .map(|d| {
                d.per
                    .iter()
                    .map(|(k, tl)| (k.as_str(), tl.out_at(t)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Nodes out with no known end: while they fill the budget, nothing fits anywhere.
    pub fn open_ended(&self) -> usize {
        self.open
    }

    /// Spans that begin after `t`.
    pub fn begins_after(&self, t: Timestamp) -> usize {
        self.froms.len() - self.froms.partition_point(|x| *x <= t)
    }

    /// The most nodes out at any moment from `now` on.
    pub fn peak(&self, now: Timestamp) -> usize {
        let lo = self.froms.partition_point(|x| *x <= now);
        std::iter::once(now)
            .chain(self.froms[lo..].iter().copied())
            .map(|t| self.out_at(t))
            .max()
            .unwrap_or(0)
    }

    /// Every span, by node.
    pub fn spans(&self) -> impl Iterator<Item = (&str, Span)> {
        self.spans.iter().map(|(n, s)| (n.as_str(), *s))
    }
}

/// How long a node is expected to be out, from the moment it is taken out to completed:
/// `(safe, typical)` — the longest and the median seen among `work` completed in this
/// campaign, or one attempt's worst case (and half of it) before any has completed.
pub(super) fn expected_duration(ctx: &Ctx<'_>, work: &[&Work]) -> (SignedDuration, SignedDuration) {
    let mut seen: Vec<SignedDuration> = work
        .iter()
        .filter(|w| w.action == MaintenanceAction::Reboot)
        .filter(|w| w.status.phase == Phase::Completed)
        .filter_map(|w| time_out(&w.status))
        .collect();
    if seen.is_empty() {
        let worst = ctx.s.reboot_timeout + ctx.s.settle_time;
        return (worst, ctx.s.reboot_timeout / 2 + ctx.s.settle_time);
    }
    seen.sort_unstable();
    (seen[seen.len() - 1], seen[seen.len() / 2])
}

/// Taken out (first PendingReboot) to Completed, from the recorded transitions.
fn time_out(st: &NodeMaintenanceStatus) -> Option<SignedDuration> {
    let out = st
        .transitions
        .iter()
        .find(|t| t.phase == Phase::PendingReboot)?
        .time;
    let done = st
        .transitions
        .iter()
        .rev()
        .find(|t| t.phase == Phase::Completed)?
        .time;
    (done >= out).then(|| done.duration_since(out))
}

/// When the work's node was taken out (its reservation active and the node empty).
fn taken_out_at(st: &NodeMaintenanceStatus, now: Timestamp) -> Timestamp {
    st.transitions
        .iter()
        .rev()
        .find(|t| t.phase == Phase::PendingReboot)
        .map(|t| t.time)
        .or(st.reservation_start)
        .unwrap_or(now)
        .min(now)
}

/// The timeline of everything but Pending work and ours reserved ahead (which
/// [`super::retime`] adds one by one), given the planned statuses.
pub(super) fn build(
    ctx: &Ctx<'_>,
    work: &[&Work],
    statuses: &BTreeMap<&str, NodeMaintenanceStatus>,
    safe: SignedDuration,
) -> Timeline {
    let now = ctx.now;
    let mut tl = Timeline::new(ctx.s.limit.allowed(ctx.nodes.len()));
    if let Some(TopologySettings {
        mode: TopologyMode::Spread { max_per_domain },
        ..
    }) = &ctx.s.topology
    {
        tl = tl.with_domains(ctx.domain_of.clone(), *max_per_domain as usize);
    }
    let open = Span {
        from: now,
        to: None,
    };
    for n in ctx.nodes.values().filter(|n| !n.state.in_service()) {
        tl.hold(&n.name, open);
    }
    // Our reservations count through their work, unless their work has ended (a delete
    // not yet carried out): then as they stand, like anyone's.
    let live: BTreeSet<String> = work
        .iter()
        .filter(|w| !statuses[w.name.as_str()].phase.is_terminal())
        .map(|w| ctx.reservation_for(w))
        .collect();
    for r in ctx.all_reservations() {
        if !r.is_maint() || r.end <= now || live.contains(&r.name) {
            continue;
        }
        for n in r
            .nodes
            .iter()
            .filter(|n| ctx.nodes.contains_key(n.as_str()))
        {
            let span = Span {
                from: r.start.max(now),
                to: Some(r.end),
            };
            tl.hold(n, span);
        }
    }
    for w in work
        .iter()
        .filter(|w| ctx.nodes.contains_key(w.node.as_str()))
    {
        let st = &statuses[w.name.as_str()];
        if st.phase == Phase::Pending || st.phase.is_terminal() {
            continue;
        }
        // Taken out once its jobs end, at the earliest; no known end over jobs
        // without a time limit.
        let release = ctx.release(&w.node).time();
        if let Some(span) = in_flight(w, st, now, release, safe, ctx.s.interval) {
            tl.hold(&w.node, span);
        }
    }
    // A domain's node whose work has ended stays in the domain's reservation until the
    // last of its works ends: out as long as the longest of them.
    for members in ctx.shared.values() {
        let live: Vec<Span> = members
            .iter()
            .filter(|(n, _)| {
                work.iter()
                    .any(|w| w.node == *n && !statuses[w.name.as_str()].phase.is_terminal())
            })
            .filter_map(|(n, _)| tl.span(n))
            .collect();
        let Some(hull) = live.into_iter().reduce(Span::hull) else {
            continue;
        };
        for (n, _) in members {
            let ended = work
                .iter()
                .any(|w| w.node == *n && statuses[w.name.as_str()].phase.is_terminal());
            if ended && ctx.nodes.contains_key(n.as_str()) {
                tl.hold(n, hull);
            }
        }
    }
    tl
}

/// The span of work already out (in flight, or reserved with its reservation started);
/// `None` for work reserved ahead.
fn in_flight(
    w: &Work,
    st: &NodeMaintenanceStatus,
    now: Timestamp,
    release: Option<Timestamp>,
    safe: SignedDuration,
    interval: SignedDuration,
) -> Option<Span> {
    if w.action == MaintenanceAction::OciMaintenance {
        return Some(Span {
            from: now,
            to: None,
        });
    }
    if st.phase == Phase::Reserved && st.reservation_start.is_some_and(|t| t > now) {
        return None;
    }
    // Past its expected end it has no known end; before, it counts at least until the
    // next pass can have seen it back, so nothing starts on a return not yet seen.
    let out = match (st.phase, release) {
        (Phase::Reserved, None) => {
            return Some(Span {
                from: now,
                to: None,
            });
        }
        (Phase::Reserved, Some(r)) => taken_out_at(st, now).max(r),
        _ => taken_out_at(st, now),
    };
    let end = out + safe;
    Some(Span {
        from: now,
        to: (end > now).then_some(end.max(now + interval + NEXT_PASS_GUARD)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn span(from: i64, to: Option<i64>) -> Span {
        Span {
            from: t(from),
            to: to.map(t),
        }
    }

    const D: SignedDuration = SignedDuration::from_secs(100);

    #[test]
    fn an_interval_fits_only_where_every_moment_has_room() {
        let mut tl = Timeline::new(1);
        tl.hold("a", span(0, Some(50)));
        assert!(!tl.fits("b", true, t(0), D));
        assert!(!tl.fits("b", true, t(49), D));
        assert!(tl.fits("b", true, t(50), D));
        // A node's own span is left out of its count.
        assert!(tl.fits("a", true, t(0), D));
        // A span that begins inside the interval counts there.
        tl.hold("c", span(200, Some(300)));
        assert!(!tl.fits("b", true, t(150), D));
        assert!(tl.fits("b", true, t(300), D));
        assert_eq!(tl.first_fit("b", true, t(0), D, t(1000)), Some(t(50)));
        assert_eq!(tl.first_fit("b", true, t(120), D, t(1000)), Some(t(300)));
        assert_eq!(tl.first_fit("b", true, t(120), D, t(250)), None);
    }

    #[test]
    fn open_spans_never_end_and_two_slots_hold_two() {
        let mut tl = Timeline::new(2);
        tl.hold("down", span(0, None));
        tl.hold("a", span(10, Some(60)));
        assert!(!tl.fits("b", true, t(20), D));
        assert!(tl.fits("b", true, t(60), D));
        assert_eq!(tl.first_fit("b", true, t(0), D, t(10_000)), Some(t(60)));
        assert_eq!(tl.peak(t(0)), 2);
        tl.hold("b", span(60, Some(160)));
        assert_eq!(tl.peak(t(0)), 2);
        assert_eq!(tl.out_at(t(100)), 2);
        assert_eq!(tl.out_at(t(200)), 1);
    }

    #[test]
    fn a_node_counts_once_over_the_hull_of_its_spans() {
        let mut tl = Timeline::new(1);
        tl.hold("a", span(0, Some(10)));
        tl.hold("a", span(50, Some(60)));
        assert_eq!(tl.span("a"), Some(span(0, Some(60))));
        tl.hold("a", span(5, None));
        assert_eq!(tl.span("a"), Some(span(0, None)));
        assert_eq!(tl.out_at(t(1_000_000)), 1);
    }
}
