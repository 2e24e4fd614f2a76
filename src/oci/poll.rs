//! When the workflow reads an event from OCI again, pure: a node waiting for its event
//! (Pending, or draining) is checked every `drainPollInterval`; a running maintenance
//! every `maintenancePollInterval` at first, doubling while OCI reports no change, up
//! to 4× that. A change of phase or of the event's state starts over from the first
//! interval. Phases past the event (Recovering, HealthCheck, done) never poll.
//!
//! The record is kept in memory: after a restart every event is read at once, which
//! is what catch-up needs.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

use crate::api::node_maintenance::NodeMaintenancePhase as Phase;
use crate::plan::Work;

/// How far a running maintenance's poll interval backs off, as a multiple of the first.
pub const MAX_BACKOFF: i32 = 4;

/// The poll intervals of a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollIntervals {
    /// While the node waits for budget or drains.
    pub drain: SignedDuration,
    /// First interval of a running maintenance.
    pub maintenance: SignedDuration,
}

/// The last read of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Polled {
    /// When it was read.
    pub at: Timestamp,
    /// Phase of its work then.
    pub phase: Phase,
    /// What OCI said.
    pub state: String,
    /// Wait before the next read.
    pub interval: SignedDuration,
}

/// The first interval for work in `phase`, or `None` when it needs no event state.
pub fn base_interval(phase: Phase, p: &PollIntervals) -> Option<SignedDuration> {
    match phase {
        Phase::Pending | Phase::Reserved | Phase::PendingReboot => Some(p.drain),
        Phase::Rebooting => Some(p.maintenance),
        Phase::Recovering | Phase::HealthCheck | Phase::Completed | Phase::Failed => None,
    }
}

/// Whether work in `phase` reads its event now, given the last read.
pub fn due(phase: Phase, last: Option<&Polled>, p: &PollIntervals, now: Timestamp) -> bool {
    if base_interval(phase, p).is_none() {
        return false;
    }
    match last {
        None => true,
        Some(l) if l.phase != phase => true,
        Some(l) => now >= l.at + l.interval,
    }
}

/// The record after reading `state` for work in `phase` at `now`: the interval
/// doubles (Rebooting only, up to [`MAX_BACKOFF`]×) when nothing changed since `last`.
pub fn record(
    last: Option<&Polled>,
    phase: Phase,
    state: &str,
    p: &PollIntervals,
    now: Timestamp,
) -> Polled {
    let base = base_interval(phase, p).unwrap_or(p.maintenance);
    let interval = match last {
        Some(l) if phase == Phase::Rebooting && l.phase == phase && l.state == state => {
            (l.interval * 2).min(base * MAX_BACKOFF)
        }
        _ => base,
    };
    Polled {
        at: now,
        phase,
        state: state.to_string(),
        interval,
    }
}

/// The event ids to read this pass: those of `work` (with their events in `events`,
/// by work name) whose read is due.
pub fn due_events(
    work: &[Work],
    events: &BTreeMap<String, String>,
    polls: &BTreeMap<String, Polled>,
    p: &PollIntervals,
    now: Timestamp,
) -> BTreeSet<String> {
    work.iter()
        .filter_map(|w| {
            let event = events.get(&w.name)?;
            due(w.status.phase, polls.get(event), p, now).then(|| event.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MaintenanceAction;
    use crate::api::node_maintenance::NodeMaintenanceStatus;

    const P: PollIntervals = PollIntervals {
        drain: SignedDuration::from_secs(30),
        maintenance: SignedDuration::from_secs(60),
    };

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    /// Drive one running maintenance whose event never changes: the reads come at
    /// 60, 120, 240, 240… seconds apart.
    #[test]
    fn a_running_maintenance_backs_off_to_four_times_the_first_interval() {
        let mut last: Option<Polled> = None;
        let mut reads = vec![];
        for s in 0..=1200 {
            if due(Phase::Rebooting, last.as_ref(), &P, t(s)) {
                reads.push(s);
                last = Some(record(last.as_ref(), Phase::Rebooting, "STARTED", &P, t(s)));
            }
        }
        assert_eq!(reads, [0, 60, 180, 420, 660, 900, 1140]);
    }

    #[test]
    fn a_change_of_state_or_phase_starts_over() {
        let l = record(None, Phase::Rebooting, "STARTED", &P, t(0));
        let l = record(Some(&l), Phase::Rebooting, "STARTED", &P, t(60));
        assert_eq!(l.interval, SignedDuration::from_secs(120));
        let changed = record(Some(&l), Phase::Rebooting, "PROCESSING", &P, t(180));
        assert_eq!(changed.interval, SignedDuration::from_secs(60));
        // The work moved on (e.g. it was scheduled): read at once, whatever the interval.
        assert!(due(
            Phase::Rebooting,
            Some(&record(None, Phase::Reserved, "SCHEDULED", &P, t(0))),
            &P,
            t(1)
        ));
    }

    #[test]
    fn waiting_nodes_poll_at_the_drain_interval_without_backoff() {
        let mut last: Option<Polled> = None;
        let mut reads = vec![];
        for s in 0..=120 {
            if due(Phase::Reserved, last.as_ref(), &P, t(s)) {
                reads.push(s);
                last = Some(record(
                    last.as_ref(),
                    Phase::Reserved,
                    "SCHEDULED",
                    &P,
                    t(s),
                ));
            }
        }
        assert_eq!(reads, [0, 30, 60, 90, 120]);
        assert!(due(Phase::Pending, None, &P, t(0)));
    }

    #[test]
    fn phases_past_the_event_never_poll() {
        for phase in [
            Phase::Recovering,
            Phase::HealthCheck,
            Phase::Completed,
            Phase::Failed,
        ] {
            assert!(!due(phase, None, &P, t(0)), "{phase:?}");
        }
    }

    #[test]
    fn due_events_picks_by_work_phase() {
        let work = |name: &str, phase| Work {
            name: name.into(),
            node: name.into(),
            action: MaintenanceAction::OciMaintenance,
            campaign: None,
            status: NodeMaintenanceStatus {
                phase,
                ..Default::default()
            },
            oci: None,
        };
        let all = [
            work("a", Phase::Rebooting),
            work("b", Phase::Rebooting),
            work("c", Phase::HealthCheck),
            work("d", Phase::Pending),
        ];
        let events: BTreeMap<String, String> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| (n.to_string(), format!("ev-{n}")))
            .collect();
        let polls = BTreeMap::from([(
            "ev-a".to_string(),
            record(None, Phase::Rebooting, "STARTED", &P, t(0)),
        )]);
        let due = due_events(&all, &events, &polls, &P, t(10));
        assert_eq!(
            due.into_iter().collect::<Vec<_>>(),
            ["ev-b".to_string(), "ev-d".to_string()]
        );
    }
}
