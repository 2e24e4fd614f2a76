//! When OCI maintenance takes its node and which window it asks for, pure: the rules of
//! the OCI seed about events (`canReschedule`, the hard due date, `drainAhead`,
//! `scheduleLeadTime`). The state machine that applies them is
//! [`crate::plan`] (OCI's part: `plan/oci.rs`), under the same budget as rolling reboots.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// What OCI says of an event, for one pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// When windows are asked for and nodes taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
