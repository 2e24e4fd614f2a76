//! When a node's jobs release it: the start time of its maintenance reservation.
//!
//! - no jobs → now;
//! - only preemptable jobs → now if terminating them is allowed, else when the longest ends;
//! - any non-preemptable job → when the longest non-preemptable job ends (and, when
//!   preemptable jobs may not be terminated, not before the preemptable ones end either,
//!   so the reservation never overlaps a job it may not end).
//!
//! A job's end is its EndTime (start + time limit). A job without a time limit has no
//! known end: the node's release time is unknown until the job actually ends.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::slurm::Job;

/// When a node becomes free for maintenance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Release {
    /// At this instant (never before the `now` it was computed at).
    At(Timestamp),
    /// Some job has no time limit.
    Unknown,
}

impl Release {
    /// The instant, if known.
    pub fn time(self) -> Option<Timestamp> {
        match self {
            Self::At(t) => Some(t),
            Self::Unknown => None,
        }
    }
}

/// Whether `job` may be ended to free its node, by Slurm's own marking or by QOS.
pub fn is_preemptable(job: &Job, preemptable_qos: &[String]) -> bool {
    job.preemptable
        || job
            .qos
            .as_deref()
            .is_some_and(|q| preemptable_qos.iter().any(|p| p == q))
}

/// Release time of a node running `jobs` (only its active jobs matter).
pub fn release_time<'a>(
    jobs: impl IntoIterator<Item = &'a Job>,
    now: Timestamp,
    terminate_preemptable: bool,
    preemptable_qos: &[String],
) -> Release {
    let mut release = now;
    for job in jobs.into_iter().filter(|j| j.is_active()) {
        if terminate_preemptable && is_preemptable(job, preemptable_qos) {
            continue;
        }
        match job.end_time {
            // A job past its end (completing, or in its kill grace period) ends now.
            Some(end) => release = release.max(end),
            None => return Release::Unknown,
        }
    }
    Release::At(release)
}

/// Jobs to cancel so the node is free at its release time: the active preemptable jobs,
/// only when terminating is allowed. Never a non-preemptable job.
pub fn jobs_to_cancel<'a>(
    jobs: impl IntoIterator<Item = &'a Job>,
    terminate_preemptable: bool,
    preemptable_qos: &[String],
) -> Vec<u64> {
    if !terminate_preemptable {
        return vec![];
    }
    let mut ids: Vec<u64> = jobs
        .into_iter()
        .filter(|j| j.is_active() && is_preemptable(j, preemptable_qos))
        .map(|j| j.id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        format!("2026-01-01T{s}Z").parse().unwrap()
    }

    fn job(id: u64, end: Option<&str>, preemptable: bool) -> Job {
        Job {
            id,
            name: format!("j{id}"),
            user: "u".into(),
            partition: "batch".into(),
            state: "RUNNING".into(),
            nodes: vec!["n1".into()],
            qos: None,
            start_time: Some(t("00:00:00")),
            end_time: end.map(t),
            time_limit_secs: end.map(|_| 3600),
            preemptable,
        }
    }

    const NOW: &str = "01:00:00";

    fn rel(jobs: &[Job], terminate: bool) -> Release {
        release_time(jobs, t(NOW), terminate, &[])
    }

    #[test]
    fn no_jobs_is_now() {
        assert_eq!(rel(&[], false), Release::At(t(NOW)));
    }

    #[test]
    fn only_preemptable() {
        let jobs = [
            job(1, Some("03:00:00"), true),
            job(2, Some("05:00:00"), true),
        ];
        assert_eq!(rel(&jobs, true), Release::At(t(NOW)));
        assert_eq!(rel(&jobs, false), Release::At(t("05:00:00")));
        assert_eq!(jobs_to_cancel(&jobs, true, &[]), vec![1, 2]);
        assert!(jobs_to_cancel(&jobs, false, &[]).is_empty());
    }

    #[test]
    fn non_preemptable_sets_the_time() {
        let jobs = [
            job(1, Some("03:00:00"), false),
            job(2, Some("02:00:00"), false),
            job(3, Some("09:00:00"), true),
        ];
        assert_eq!(rel(&jobs, true), Release::At(t("03:00:00")));
        // Not allowed to end job 3: wait for it too, rather than reserve over it.
        assert_eq!(rel(&jobs, false), Release::At(t("09:00:00")));
        assert_eq!(jobs_to_cancel(&jobs, true, &[]), vec![3]);
    }

    #[test]
    fn unlimited_jobs_make_release_unknown() {
        let jobs = [job(1, None, false), job(2, Some("03:00:00"), false)];
        assert_eq!(rel(&jobs, true), Release::Unknown);
        // An unlimited preemptable job does not matter when it may be ended.
        let jobs = [job(1, None, true), job(2, Some("03:00:00"), false)];
        assert_eq!(rel(&jobs, true), Release::At(t("03:00:00")));
        assert_eq!(rel(&jobs, false), Release::Unknown);
        assert!(Release::At(t("23:00:00")) < Release::Unknown);
    }

    #[test]
    fn overdue_jobs_end_now_and_finished_jobs_are_ignored() {
        let jobs = [job(1, Some("00:30:00"), false)];
        assert_eq!(rel(&jobs, false), Release::At(t(NOW)));
        let mut done = job(2, Some("09:00:00"), false);
        done.state = "COMPLETED".into();
        assert_eq!(rel(&[done], false), Release::At(t(NOW)));
    }

    #[test]
    fn qos_marks_preemptable() {
        let mut j = job(1, Some("05:00:00"), false);
        j.qos = Some("preemptable".into());
        let qos = vec!["preemptable".to_string()];
        assert!(is_preemptable(&j, &qos));
        assert!(!is_preemptable(&j, &[]));
        assert_eq!(release_time([&j], t(NOW), true, &qos), Release::At(t(NOW)));
    }
}
