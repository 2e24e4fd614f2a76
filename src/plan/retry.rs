//! A retry asked for by a person: `kubectl annotate nodemaintenance X
//! slurm-maint.io/retry=<anything>` on a Failed reboot starts it afresh, once the cause
//! is fixed. Pure: the caller writes the status, resumes the node when told to, then
//! removes the annotation.

use jiff::Timestamp;

use super::transition::transition;
use super::{REASON_PREFIX, Work};
use crate::api::node_maintenance::{
    MaintenanceAction, NodeMaintenancePhase as Phase, NodeMaintenanceStatus,
};
use crate::slurm::Node;

/// The annotation that asks for a retry.
pub const RETRY_ANNOTATION: &str = "slurm-maint.io/retry";

/// What a retry does.
#[derive(Clone, Debug, PartialEq)]
pub enum Retry {
    /// Back to Pending with its attempts reset; `resume`: the node is drained by us (our
    /// reason) and is put back into service first, so admission can take it.
    Restart {
        status: Box<NodeMaintenanceStatus>,
        resume: bool,
    },
    /// Nothing to do; the annotation is removed and the reason reported.
    Refused(String),
}

/// The retry of `w`, whose node is `node` (absent: not in the partition). For OCI work,
/// `event_state` is what OCI last said of its event: the work picks up where the event
/// is (SCHEDULED: drained, to be scheduled again; STARTED/PROCESSING: followed;
/// SUCCEEDED: the node is resumed and checked once it responds); an event that ended
/// otherwise cannot be carried out again.
pub fn retry(w: &Work, node: Option<&Node>, event_state: Option<&str>, now: Timestamp) -> Retry {
    if w.status.phase != Phase::Failed {
        return Retry::Refused(format!(
            "retry applies to Failed work; this one is {}",
            w.status.phase
        ));
    }
    let Some(node) = node else {
        return Retry::Refused(format!("node {} is not in the partition", w.node));
    };
    let mut status = w.status.clone();
    let previous = status.last_error.take().unwrap_or_default();
    let message = format!("retry requested (was: {previous})");
    if w.action == MaintenanceAction::OciMaintenance {
        let phase = match event_state {
            Some("SCHEDULED") => Phase::Reserved,
            Some("STARTED" | "PROCESSING") => Phase::Rebooting,
            Some("SUCCEEDED") => Phase::Recovering,
            other => {
                return Retry::Refused(format!(
                    "the OCI event is {}: it cannot be carried out again; resume {} yourself \
                     (scontrol update nodename={} state=resume) and delete this NodeMaintenance",
                    other.unwrap_or("unknown"),
                    w.node,
                    w.node
                ));
            }
        };
        if phase == Phase::Reserved {
            status.attempts = 1;
            status.work_request_id = None;
            status.reboot_issued_at = None;
        }
        transition(&mut status, phase, now, message);
        return Retry::Restart {
            status: Box::new(status),
            resume: false,
        };
    }
    // A reboot that came back but failed its health check: the node is checked again
    // (a new reboot would be no test of the fix, and one already booted completes).
    let failed_its_checks = status
        .transitions
        .iter()
        .rev()
        .nth(1)
        .is_some_and(|t| t.phase == Phase::HealthCheck);
    if failed_its_checks {
        transition(&mut status, Phase::HealthCheck, now, message);
    } else {
        status.attempts = 0;
        status.reboot_issued_at = None;
        status.boot_time_before = None;
        status.reservation_name = None;
        status.reservation_start = None;
        transition(&mut status, Phase::Pending, now, message);
    }
    let resume = node.state.is_drained()
        && node
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with(REASON_PREFIX));
    Retry::Restart {
        status: Box::new(status),
        resume,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::NodeState;

    fn t(min: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + min * 60).unwrap()
    }

    fn failed(action: MaintenanceAction) -> Work {
        Work {
            name: "w".into(),
            node: "n1".into(),
            action,
            campaign: Some("c1".into()),
            status: NodeMaintenanceStatus {
                phase: Phase::Failed,
                attempts: 3,
                last_error: Some("reboot timed out".into()),
                reservation_name: Some("slurm-maint-n1-c1".into()),
                reboot_issued_at: Some(t(1)),
                ..Default::default()
            },
            oci: None,
        }
    }

    fn node(state: &str, reason: Option<&str>) -> Node {
        Node {
            name: "n1".into(),
            state: NodeState::parse(state).unwrap(),
            reason: reason.map(Into::into),
            boot_time: Some(t(-10)),
            partitions: vec!["p".into()],
            reservation: None,
            features: vec![],
        }
    }

    #[test]
    fn a_failed_reboot_starts_afresh_and_our_drain_is_lifted() {
        let n = node(
            "IDLE+DRAIN",
            Some("slurm-maint: reboot failed after 3 attempts"),
        );
        let Retry::Restart { status, resume } =
            retry(&failed(MaintenanceAction::Reboot), Some(&n), None, t(5))
        else {
            panic!("refused")
        };
        assert!(resume);
        assert_eq!(status.phase, Phase::Pending);
        assert_eq!(status.phase_since, Some(t(5)));
        assert_eq!(status.attempts, 0);
        assert_eq!(status.last_error, None);
        assert_eq!(status.reservation_name, None);
        assert_eq!(status.reboot_issued_at, None);
        assert_eq!(
            status.transitions.last().unwrap().message,
            "retry requested (was: reboot timed out)"
        );
    }

    #[test]
    fn a_reboot_that_failed_its_health_check_is_checked_again() {
        let mut w = failed(MaintenanceAction::Reboot);
        w.status.attempts = 1;
        for phase in [Phase::HealthCheck, Phase::Failed] {
            transition(&mut w.status, phase, t(2), "x");
        }
        let n = node(
            "IDLE+DRAIN",
            Some("slurm-maint: health check failed after reboot: check gpu-ecc failed"),
        );
        let Retry::Restart { status, resume } = retry(&w, Some(&n), None, t(5)) else {
            panic!("refused")
        };
        assert!(resume);
        assert_eq!(status.phase, Phase::HealthCheck);
        assert_eq!(status.phase_since, Some(t(5)));
        assert_eq!(status.attempts, 1, "no new reboot");
    }

    #[test]
    fn a_drain_by_someone_else_is_left_alone() {
        for n in [
            node("IDLE+DRAIN", Some("bad DIMM, ticket 42")),
            node("IDLE", None),
        ] {
            let Retry::Restart { resume, .. } =
                retry(&failed(MaintenanceAction::Reboot), Some(&n), None, t(5))
            else {
                panic!("refused")
            };
            assert!(!resume, "{}", n.state);
        }
    }

    #[test]
    fn only_failed_work_of_present_nodes_is_retried() {
        let n = node("IDLE", None);
        let mut running = failed(MaintenanceAction::Reboot);
        running.status.phase = Phase::Rebooting;
        for (w, node, why) in [
            (running, Some(&n), "Failed work"),
            (
                failed(MaintenanceAction::Reboot),
                None,
                "not in the partition",
            ),
        ] {
            match retry(&w, node, None, t(5)) {
                Retry::Refused(m) => assert!(m.contains(why), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    /// Failed OCI work picks up where its event is; an event that ended otherwise is
    /// refused with what to do instead.
    #[test]
    fn oci_work_picks_up_where_its_event_is() {
        let n = node("IDLE+DRAIN", Some("slurm-maint: health check failed"));
        let mut w = failed(MaintenanceAction::OciMaintenance);
        w.status.work_request_id = Some("wr".into());
        for (state, phase) in [
            ("SCHEDULED", Phase::Reserved),
            ("STARTED", Phase::Rebooting),
            ("PROCESSING", Phase::Rebooting),
            ("SUCCEEDED", Phase::Recovering),
        ] {
            let Retry::Restart { status, resume } = retry(&w, Some(&n), Some(state), t(5)) else {
                panic!("{state}: refused")
            };
            assert_eq!(status.phase, phase, "{state}");
            assert!(!resume, "the workflow resumes the node itself");
            assert_eq!(status.last_error, None);
            if phase == Phase::Reserved {
                assert_eq!(
                    (status.attempts, status.work_request_id.as_deref()),
                    (1, None)
                );
            } else {
                assert_eq!(status.work_request_id.as_deref(), Some("wr"));
            }
        }
        for state in [Some("FAILED"), Some("CANCELED"), None] {
            match retry(&w, Some(&n), state, t(5)) {
                Retry::Refused(m) => assert!(m.contains("cannot be carried out again"), "{m}"),
                other => panic!("{state:?}: {other:?}"),
            }
        }
    }
}
