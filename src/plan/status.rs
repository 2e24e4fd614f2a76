//! The policy's status from one pass's plan: budget figures, counts by phase, the plan
//! preview and conditions with reasons as constants.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use jiff::{SignedDuration, Timestamp};

use super::{Plan, Release, Work};
use crate::api::condition::{Condition, set_condition};
use crate::api::node_maintenance::NodeMaintenancePhase as Phase;
use crate::api::policy::{MaintenancePolicyStatus, PhaseCounts};

/// Condition types of a MaintenancePolicy.
pub mod condition_type {
    pub const READY: &str = "Ready";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
    pub const BUDGET_EXHAUSTED: &str = "BudgetExhausted";
    pub const PAUSED: &str = "Paused";
    /// New work held by `spec.blockers`: an alert firing, or Prometheus unable to say.
    pub const BLOCKED: &str = "Blocked";
}

/// Condition reasons.
pub mod reason {
    pub const RECONCILED: &str = "Reconciled";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const SLURM_UNREACHABLE: &str = "SlurmUnreachable";
    pub const CAMPAIGN_RUNNING: &str = "CampaignRunning";
    pub const CAMPAIGN_COMPLETE: &str = "CampaignComplete";
    pub const WAITING_FOR_BLOCKED_NODES: &str = "WaitingForBlockedNodes";
    pub const NO_CAMPAIGN: &str = "NoCampaign";
    pub const NODES_FAILED: &str = "NodesFailed";
    pub const BUDGET_FULL: &str = "BudgetFull";
    pub const BUDGET_AVAILABLE: &str = "BudgetAvailable";
    pub const PAUSED_BY_SPEC: &str = "PausedBySpec";
    pub const RUNNING: &str = "Running";
    pub const MONITOR_ONLY: &str = "MonitorOnly";
    pub const DRY_RUN: &str = "DryRun";
    /// The agent answered: Slurm has no partition of that name.
    pub const PARTITION_NOT_FOUND: &str = "PartitionNotFound";
    /// The agent refused the token (HTTP 401/403).
    pub const AGENT_UNAUTHORIZED: &str = "AgentUnauthorized";
    /// The token Secret is missing, lacks the key, or holds no token.
    pub const AGENT_TOKEN_MISSING: &str = "AgentTokenMissing";
    /// The agent answered with something else than a snapshot.
    pub const AGENT_ERROR: &str = "AgentError";
    /// `spec.nodelist` names no node of the partition.
    pub const NODELIST_MATCHES_NO_NODE: &str = "NodelistMatchesNoNode";
    /// A blocking alert is firing in Prometheus.
    pub const ALERTS_FIRING: &str = "AlertsFiring";
    /// Prometheus answered and no blocking alert is firing.
    pub const NO_ALERTS_FIRING: &str = "NoAlertsFiring";
    /// Prometheus was not reached in time: the blockers are unknown, new work waits.
    pub const PROMETHEUS_UNREACHABLE: &str = "PrometheusUnreachable";
    /// Prometheus answered with an error or something else than its alerts.
    pub const PROMETHEUS_ERROR: &str = "PrometheusError";
}

/// The reason a pass that could not read Slurm reports: whether Slurm was reached at all
/// and, if the agent answered, what it said.
pub fn slurm_error_reason(e: &crate::slurm::client::SlurmError) -> &'static str {
    use crate::slurm::client::SlurmError as E;
    match e {
        E::Unreachable(_) => reason::SLURM_UNREACHABLE,
        E::Refused {
            status: 401 | 403, ..
        } => reason::AGENT_UNAUTHORIZED,
        E::Refused { status: 404, .. } => reason::PARTITION_NOT_FOUND,
        E::Refused { .. } | E::Protocol(_) => reason::AGENT_ERROR,
        // The agent answered, but Slurm did not (slurmctld down, a timeout, …).
        E::Slurm { .. } => reason::SLURM_UNREACHABLE,
    }
}

/// The note of the Event announcing that a condition changed, in words: its message
/// when it has one, otherwise what the change means.
pub fn condition_note(ty: &str, before: Option<&Condition>, now: &Condition) -> String {
    use crate::api::condition::ConditionStatus::True;
    if !now.message.is_empty() {
        return now.message.clone();
    }
    let was = before.map_or(String::new(), |b| format!(" (was {})", b.reason));
    match (ty, now.status == True) {
        (condition_type::PAUSED, false) => format!("not paused: new work may start{was}"),
        (condition_type::DEGRADED, false) => format!("no longer degraded{was}"),
        (condition_type::BUDGET_EXHAUSTED, false) => format!("budget has room again{was}"),
        (condition_type::PROGRESSING, false) => format!("no campaign in progress{was}"),
        (condition_type::BLOCKED, false) => format!("no blocking alert firing{was}"),
        (ty, true) => format!("{ty}: {}{was}", now.reason),
        (ty, false) => format!("no longer {ty}{was}"),
    }
}

/// Whether a condition's new state is worth a Warning Event rather than a Normal one.
pub fn is_warning(ty: &str, c: &Condition) -> bool {
    use crate::api::condition::ConditionStatus::True;
    (ty == condition_type::DEGRADED && c.status == True)
        || c.reason == reason::NODELIST_MATCHES_NO_NODE
        || c.reason == reason::PROMETHEUS_UNREACHABLE
        || c.reason == reason::PROMETHEUS_ERROR
}

/// Whether the last pass found this generation's spec unusable: then only a change of
/// the spec can help, and no pass runs until one comes (no retries).
pub fn spec_rejected(status: Option<&MaintenancePolicyStatus>, generation: Option<i64>) -> bool {
    use crate::api::condition::ConditionStatus::True;
    status.is_some_and(|s| {
        s.observed_generation == generation
            && s.conditions.iter().any(|c| {
                c.r#type == condition_type::DEGRADED
                    && c.status == True
                    && c.reason == reason::INVALID_SPEC
            })
    })
}

/// Whether a condition's first appearance is the normal state and needs no Event.
pub fn is_quiet_start(c: &Condition) -> bool {
    c.reason == reason::RECONCILED || c.reason == reason::RUNNING
}

/// Condition types of a NodeMaintenance, as a Job has them: `kubectl wait
/// --for=condition=Complete nodemaintenance/<name>` waits for a node to be done.
pub mod work_condition {
    pub const PROGRESSING: &str = "Progressing";
    pub const COMPLETE: &str = "Complete";
    pub const FAILED: &str = "Failed";
}

/// Fill a NodeMaintenance's conditions from its phase (steady ones keep their
/// `lastTransitionTime`): `Progressing` while not finished, its reason the phase;
/// `Complete` and `Failed` once it ends, the latter with the last error.
pub fn set_work_conditions(
    st: &mut crate::api::NodeMaintenanceStatus,
    now: Timestamp,
    generation: Option<i64>,
) {
    let at = st.phase_since.unwrap_or(now);
    let message = st
        .transitions
        .last()
        .map(|t| t.message.clone())
        .unwrap_or_default();
    let phase = st.phase.to_string();
    let done = st.phase == Phase::Completed;
    let failed = st.phase == Phase::Failed;
    let mut conditions = std::mem::take(&mut st.conditions);
    for (ty, status, reason, msg) in [
        (
            work_condition::PROGRESSING,
            !st.phase.is_terminal(),
            phase.as_str(),
            message.clone(),
        ),
        (
            work_condition::COMPLETE,
            done,
            if done { "Completed" } else { "NotCompleted" },
            if done { message.clone() } else { String::new() },
        ),
        (
            work_condition::FAILED,
            failed,
            if failed { "Failed" } else { "NotFailed" },
            if failed {
                st.last_error.clone().unwrap_or(message.clone())
            } else {
                String::new()
            },
        ),
    ] {
        set_condition(
            &mut conditions,
            Condition::new(ty, status, reason, msg, at, generation),
        );
    }
    st.conditions = conditions;
}

/// Counts of work items by phase, after the plan's updates.
pub fn phase_counts(work: &[Work], plan: &Plan) -> PhaseCounts {
    let mut c = PhaseCounts::default();
    let phase_of = |w: &Work| {
        plan.updates
            .iter()
            .find(|u| u.name == w.name)
            .map_or(w.status.phase, |u| u.status.phase)
    };
    let phases = work
        .iter()
        .map(phase_of)
        .chain(plan.new_work.iter().map(|_| Phase::Pending));
    for p in phases {
        *match p {
            Phase::Pending => &mut c.pending,
            Phase::Reserved => &mut c.reserved,
            Phase::PendingReboot => &mut c.pending_reboot,
            Phase::Rebooting => &mut c.rebooting,
            Phase::Recovering => &mut c.recovering,
            Phase::HealthCheck => &mut c.health_check,
            Phase::Completed => &mut c.completed,
            Phase::Failed => &mut c.failed,
        } += 1;
    }
    c
}

fn phase_after(plan: &Plan, w: &Work) -> Phase {
    plan.updates
        .iter()
        .find(|u| u.name == w.name)
        .map_or(w.status.phase, |u| u.status.phase)
}

/// When the campaign should end: the waiting nodes list-scheduled, earliest release first,
/// on the budget's free slots after the nodes in flight, each taking `per_node`.
/// `None` when nothing is left, when no slot is free, or when a release time is unknown.
pub fn estimate_eta(
    plan: &Plan,
    work: &[Work],
    now: Timestamp,
    per_node: SignedDuration,
) -> Option<Timestamp> {
    let mut ours = BTreeSet::new();
    let mut busy: Vec<Timestamp> = vec![];
    for w in work {
        let phase = phase_after(plan, w);
        if phase.is_terminal() || phase == Phase::Pending {
            continue;
        }
        ours.insert(w.node.as_str());
        let start = match phase {
            Phase::Reserved => plan
                .updates
                .iter()
                .find(|u| u.name == w.name)
                .map_or(&w.status, |u| &u.status)
                .reservation_start
                .unwrap_or(now)
                .max(now),
            _ => now,
        };
        busy.push(start + per_node);
    }
    let others = plan
        .budget
        .occupied()
        .iter()
        .filter(|n| !ours.contains(n.as_str()))
        .count();
    let slots = plan.budget.allowed.saturating_sub(others).max(busy.len());
    if slots == 0 || (busy.is_empty() && plan.queue.is_empty()) {
        return None;
    }
    let mut free: BinaryHeap<Reverse<Timestamp>> = busy.iter().copied().map(Reverse).collect();
    while free.len() < slots {
        free.push(Reverse(now));
    }
    let mut end = busy.iter().copied().max().unwrap_or(now);
    for release in &plan.queue {
        let Release::At(r) = release else { return None };
        let Reverse(f) = free.pop()?;
        let finish = f.max(*r) + per_node;
        end = end.max(finish);
        free.push(Reverse(finish));
    }
    Some(end)
}

/// What the policy is asked to do, and how long one node's maintenance is expected to
/// take (for the ETA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    pub paused: bool,
    pub dry_run: bool,
    pub acting: bool,
    pub per_node: SignedDuration,
}

/// The policy status after a successful pass. `previous` keeps steady conditions'
/// transition times.
pub fn policy_status(
    previous: Option<&MaintenancePolicyStatus>,
    generation: Option<i64>,
    partition: &str,
    work: &[Work],
    plan: &Plan,
    mode: Mode,
    now: Timestamp,
) -> MaintenancePolicyStatus {
    use condition_type as t;
    let phases = phase_counts(work, plan);
    let in_flight = phases.pending
        + phases.reserved
        + phases.pending_reboot
        + phases.rebooting
        + phases.recovering
        + phases.health_check;
    let mut conditions = previous.map(|p| p.conditions.clone()).unwrap_or_default();
    let cond = |ty: &str, ok: bool, reason: &str, msg: String| {
        Condition::new(ty, ok, reason, msg, now, generation)
    };

    set_condition(
        &mut conditions,
        cond(t::DEGRADED, false, reason::RECONCILED, String::new()),
    );
    let (progressing, why, msg) = progressing(plan, &phases, in_flight, partition);
    set_condition(&mut conditions, cond(t::PROGRESSING, progressing, why, msg));
    let b = &plan.budget;
    let (full, why) = if plan.budget_exhausted {
        (true, reason::BUDGET_FULL)
    } else {
        (false, reason::BUDGET_AVAILABLE)
    };
    set_condition(
        &mut conditions,
        cond(
            t::BUDGET_EXHAUSTED,
            full,
            why,
            format!("{} of {} allowed nodes out", b.occupied().len(), b.allowed),
        ),
    );
    let (why, msg) = paused(mode);
    set_condition(
        &mut conditions,
        cond(t::PAUSED, mode.paused, why, msg.to_string()),
    );
    match blocked(&plan.blockers) {
        Some((held, why)) => {
            let msg = plan
                .blockers
                .hold()
                .unwrap_or_else(|| "no blocking alert is firing".into());
            set_condition(&mut conditions, cond(t::BLOCKED, held, why, msg));
        }
        None => conditions.retain(|c| c.r#type != t::BLOCKED),
    }
    let (ready, ready_reason, ready_msg) = if plan.scope_matches_nothing {
        // A policy that can act on no node is not ready, whatever else holds.
        let c = conditions.iter().find(|c| c.r#type == t::PROGRESSING);
        (
            false,
            reason::NODELIST_MATCHES_NO_NODE,
            c.map(|c| c.message.clone()).unwrap_or_default(),
        )
    } else if phases.failed > 0 {
        (
            true,
            reason::NODES_FAILED,
            format!("{} node(s) failed and are kept drained", phases.failed),
        )
    } else {
        (true, reason::RECONCILED, String::new())
    };
    set_condition(
        &mut conditions,
        cond(t::READY, ready, ready_reason, ready_msg),
    );

    MaintenancePolicyStatus {
        observed_generation: generation,
        budget: Some(crate::api::policy::BudgetStatus {
            peak: plan.peak_out as u32,
            topology: plan.topology.clone(),
            ..b.to_status(partition)
        }),
        nodes_needing_work: plan.nodes_needing_work as u32,
        phases,
        next: plan.preview.clone(),
        planned_actions: plan.actions().map(|a| a.describe()).collect(),
        eta: estimate_eta(plan, work, now, mode.per_node),
        last_pass: Some(now),
        conditions,
    }
}

/// The Progressing condition: whether the campaign moves, why, and how far it is.
fn progressing(
    plan: &Plan,
    phases: &PhaseCounts,
    in_flight: u32,
    partition: &str,
) -> (bool, &'static str, String) {
    if plan.scope_matches_nothing {
        (
            false,
            reason::NODELIST_MATCHES_NO_NODE,
            format!(
                "spec.nodelist matches none of the {} nodes of partition {partition}",
                plan.budget.total
            ),
        )
    } else if plan.nodes_needing_work == 0 {
        (
            false,
            reason::NO_CAMPAIGN,
            "no node needs maintenance".to_string(),
        )
    } else if in_flight == 0 {
        (
            false,
            reason::CAMPAIGN_COMPLETE,
            format!("{} completed, {} failed", phases.completed, phases.failed),
        )
    } else if in_flight as usize == plan.blocked.len() {
        // Only nodes someone else holds are left: nothing this operator can do moves.
        let names: Vec<&str> = plan.blocked.iter().take(10).map(String::as_str).collect();
        (
            false,
            reason::WAITING_FOR_BLOCKED_NODES,
            format!(
                "{} completed, {} failed; {} node(s) down or drained by others wait until back in service: {}",
                phases.completed,
                phases.failed,
                plan.blocked.len(),
                names.join(", ")
            ),
        )
    } else {
        (
            true,
            reason::CAMPAIGN_RUNNING,
            format!(
                "{in_flight} of {} nodes still in progress",
                plan.nodes_needing_work
            ),
        )
    }
}

/// The Blocked condition's status and reason; `None` when the spec names no blockers.
fn blocked(b: &super::Blockers) -> Option<(bool, &'static str)> {
    use super::Blockers as B;
    match b {
        B::Unset => None,
        B::Firing(a) if a.is_empty() => Some((false, reason::NO_ALERTS_FIRING)),
        B::Firing(_) => Some((true, reason::ALERTS_FIRING)),
        B::Unreachable(_) => Some((true, reason::PROMETHEUS_UNREACHABLE)),
        B::Error(_) => Some((true, reason::PROMETHEUS_ERROR)),
    }
}

/// The Paused condition's reason and message.
fn paused(mode: Mode) -> (&'static str, &'static str) {
    if mode.paused {
        (reason::PAUSED_BY_SPEC, "spec.paused: no new work starts")
    } else if mode.dry_run {
        (reason::DRY_RUN, "dry run: actions are shown, not executed")
    } else if !mode.acting {
        (
            reason::MONITOR_ONLY,
            "reservations disabled: monitoring only",
        )
    } else {
        (reason::RUNNING, "")
    }
}

/// The status when a pass could not plan: Degraded with the reason; everything else kept.
pub fn degraded_status(
    previous: Option<&MaintenancePolicyStatus>,
    generation: Option<i64>,
    why: &str,
    message: String,
    now: Timestamp,
) -> MaintenancePolicyStatus {
    let mut status = previous.cloned().unwrap_or_default();
    set_condition(
        &mut status.conditions,
        Condition::new(
            condition_type::DEGRADED,
            true,
            why,
            message.clone(),
            now,
            generation,
        ),
    );
    set_condition(
        &mut status.conditions,
        Condition::new(condition_type::READY, false, why, message, now, generation),
    );
    status.observed_generation = generation;
    status.last_pass = Some(now);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::condition::ConditionStatus;
    use crate::plan::{BudgetFigures, PlannedNode};

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_767_225_600 + s).unwrap()
    }

    fn plan_with(needing: usize, exhausted: bool) -> Plan {
        Plan {
            budget: BudgetFigures {
                total: 10,
                allowed: 1,
                ..Default::default()
            },
            observed: BudgetFigures::default(),
            new_work: vec![],
            updates: vec![],
            preview: vec![PlannedNode {
                node: "n1".into(),
                release_time: Some(t(60)),
                waiting: None,
            }],
            waiting: Default::default(),
            blocked: Default::default(),
            budget_exhausted: exhausted,
            nodes_needing_work: needing,
            queue: vec![],
            scope_matches_nothing: false,
            blockers: Default::default(),
            next_due: None,
            per_node: SignedDuration::from_mins(10),
            peak_out: 0,
            topology: None,
        }
    }

    fn work(name: &str, phase: Phase) -> Work {
        Work {
            name: name.into(),
            node: name.into(),
            action: crate::api::MaintenanceAction::Reboot,
            campaign: None,
            status: crate::api::NodeMaintenanceStatus {
                phase,
                ..Default::default()
            },
            oci: None,
        }
    }

    fn get<'a>(s: &'a MaintenancePolicyStatus, ty: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.r#type == ty).unwrap()
    }

    const MIN10: SignedDuration = SignedDuration::from_mins(10);
    const ACTING: Mode = Mode {
        paused: false,
        dry_run: false,
        acting: true,
        per_node: MIN10,
    };

    #[test]
    fn running_campaign() {
        let w = [
            work("a", Phase::Rebooting),
            work("b", Phase::Completed),
            work("c", Phase::Failed),
        ];
        let s = policy_status(
            None,
            Some(3),
            "batch",
            &w,
            &plan_with(3, true),
            ACTING,
            t(0),
        );
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(
            (s.phases.rebooting, s.phases.completed, s.phases.failed),
            (1, 1, 1)
        );
        assert_eq!(get(&s, "Progressing").status, ConditionStatus::True);
        assert_eq!(get(&s, "BudgetExhausted").reason, reason::BUDGET_FULL);
        assert_eq!(get(&s, "Ready").reason, reason::NODES_FAILED);
        assert_eq!(get(&s, "Degraded").status, ConditionStatus::False);
        assert_eq!(s.budget.as_ref().unwrap().allowed, 1);
        assert_eq!(s.next.len(), 1);
    }

    /// The Blocked condition follows the blockers: which alerts, or Prometheus's error;
    /// a Warning Event only when Prometheus cannot say; gone once the spec has none.
    #[test]
    fn blocked_condition_names_the_alerts_or_the_error() {
        use crate::plan::Blockers;
        let w = [work("a", Phase::Pending)];
        let mut p = plan_with(1, false);
        let s = policy_status(None, Some(1), "batch", &w, &p, ACTING, t(0));
        assert!(s.conditions.iter().all(|c| c.r#type != "Blocked"));

        p.blockers = Blockers::Firing(vec!["NodeDown".into()]);
        let s = policy_status(None, Some(1), "batch", &w, &p, ACTING, t(0));
        let c = get(&s, "Blocked");
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::True, reason::ALERTS_FIRING)
        );
        assert!(c.message.contains("NodeDown"), "{}", c.message);
        assert!(!is_warning("Blocked", c));

        p.blockers = Blockers::Unreachable("GET http://p/api/v1/alerts: refused".into());
        let s = policy_status(Some(&s), Some(1), "batch", &w, &p, ACTING, t(1));
        let c = get(&s, "Blocked");
        assert_eq!(c.reason, reason::PROMETHEUS_UNREACHABLE);
        assert!(c.message.contains("refused"), "{}", c.message);
        assert!(is_warning("Blocked", c));

        p.blockers = Blockers::Error("HTTP 500".into());
        let s = policy_status(Some(&s), Some(1), "batch", &w, &p, ACTING, t(2));
        assert_eq!(get(&s, "Blocked").reason, reason::PROMETHEUS_ERROR);

        p.blockers = Blockers::Firing(vec![]);
        let s = policy_status(Some(&s), Some(1), "batch", &w, &p, ACTING, t(3));
        let c = get(&s, "Blocked");
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::False, reason::NO_ALERTS_FIRING)
        );

        p.blockers = Blockers::Unset;
        let s = policy_status(Some(&s), Some(1), "batch", &w, &p, ACTING, t(4));
        assert!(s.conditions.iter().all(|c| c.r#type != "Blocked"));
    }

    #[test]
    fn only_nodes_held_by_others_left() {
        let w = [work("a", Phase::Completed), work("b", Phase::Pending)];
        let mut p = plan_with(2, false);
        p.blocked.insert("b".into());
        let s = policy_status(None, Some(1), "batch", &w, &p, ACTING, t(0));
        let c = get(&s, "Progressing");
        assert_eq!(c.status, ConditionStatus::False);
        assert_eq!(c.reason, reason::WAITING_FOR_BLOCKED_NODES);
        assert!(
            c.message.contains("1 completed") && c.message.ends_with(": b"),
            "{}",
            c.message
        );
        // Another pending node that is not blocked keeps the campaign running.
        let w = [w[0].clone(), w[1].clone(), work("c", Phase::Pending)];
        let s = policy_status(None, Some(1), "batch", &w, &p, ACTING, t(0));
        assert_eq!(get(&s, "Progressing").reason, reason::CAMPAIGN_RUNNING);
    }

    #[test]
    fn complete_campaign_and_modes() {
        let w = [work("a", Phase::Completed)];
        let paused = Mode {
            paused: true,
            ..ACTING
        };
        let s = policy_status(
            None,
            Some(1),
            "batch",
            &w,
            &plan_with(1, false),
            paused,
            t(0),
        );
        assert_eq!(get(&s, "Progressing").reason, reason::CAMPAIGN_COMPLETE);
        assert_eq!(get(&s, "Paused").status, ConditionStatus::True);
        let monitor = Mode {
            acting: false,
            ..ACTING
        };
        let s2 = policy_status(
            Some(&s),
            Some(2),
            "batch",
            &w,
            &plan_with(0, false),
            monitor,
            t(10),
        );
        assert_eq!(get(&s2, "Paused").reason, reason::MONITOR_ONLY);
        assert_eq!(get(&s2, "Progressing").reason, reason::NO_CAMPAIGN);
        // Progressing stayed False: its transition time is kept.
        assert_eq!(get(&s2, "Progressing").last_transition_time, t(0));
    }

    #[test]
    fn eta_list_schedules_the_queue_on_free_slots() {
        let ten = SignedDuration::from_mins(10);
        let mut p = plan_with(3, false);
        p.budget.allowed = 2;
        p.queue = vec![Release::At(t(0)), Release::At(t(0)), Release::At(t(3600))];
        // Two slots: two nodes now (done at +10m), the third at its release (+1h10m).
        assert_eq!(estimate_eta(&p, &[], t(0), ten), Some(t(4200)));
        // One slot held by a node rebooting now.
        let mut w = work("a", Phase::Rebooting);
        w.node = "a".into();
        p.budget.allowed = 1;
        p.budget.unavailable.insert("a".into());
        p.queue = vec![Release::At(t(0))];
        assert_eq!(estimate_eta(&p, &[w], t(0), ten), Some(t(1200)));
        // A node down elsewhere takes the only slot: no estimate.
        p.budget.down.insert("z".into());
        p.budget.unavailable.clear();
        assert_eq!(estimate_eta(&p, &[], t(0), ten), None);
        // Unknown release: no estimate; nothing left: none either.
        p.budget.down.clear();
        p.queue = vec![Release::Unknown];
        assert_eq!(estimate_eta(&p, &[], t(0), ten), None);
        p.queue.clear();
        assert_eq!(estimate_eta(&p, &[], t(0), ten), None);
    }

    #[test]
    fn slurm_errors_say_whether_slurm_answered() {
        use crate::slurm::client::SlurmError as E;
        let refused = |status: u16, code: &str| E::Refused {
            status,
            code: code.into(),
            message: "m".into(),
        };
        let cases = [
            (
                E::Unreachable("connection refused".into()),
                reason::SLURM_UNREACHABLE,
            ),
            (refused(401, "Unauthorized"), reason::AGENT_UNAUTHORIZED),
            (refused(403, "Forbidden"), reason::AGENT_UNAUTHORIZED),
            (refused(404, "NotFound"), reason::PARTITION_NOT_FOUND),
            (refused(400, "InvalidName"), reason::AGENT_ERROR),
            (E::Protocol("not JSON".into()), reason::AGENT_ERROR),
            (
                E::Slurm {
                    status: 502,
                    code: "SlurmctldDown".into(),
                    message: "m".into(),
                },
                reason::SLURM_UNREACHABLE,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(slurm_error_reason(&e), want, "{e}");
        }
    }

    #[test]
    fn a_nodelist_that_matches_nothing_is_not_ready() {
        let mut p = plan_with(0, false);
        p.budget.total = 40;
        p.scope_matches_nothing = true;
        let s = policy_status(None, Some(1), "batch", &[], &p, ACTING, t(0));
        for ty in ["Ready", "Progressing"] {
            let c = get(&s, ty);
            assert_eq!(c.status, ConditionStatus::False, "{ty}");
            assert_eq!(c.reason, reason::NODELIST_MATCHES_NO_NODE, "{ty}");
            assert_eq!(
                c.message,
                "spec.nodelist matches none of the 40 nodes of partition batch"
            );
        }
        assert!(is_warning("Progressing", get(&s, "Progressing")));
        // A nodelist that matches: the usual NoCampaign, Ready.
        p.scope_matches_nothing = false;
        let s = policy_status(None, Some(1), "batch", &[], &p, ACTING, t(0));
        assert_eq!(get(&s, "Progressing").reason, reason::NO_CAMPAIGN);
        assert_eq!(get(&s, "Ready").status, ConditionStatus::True);
        assert!(!is_warning("Progressing", get(&s, "Progressing")));
    }

    #[test]
    fn events_say_what_changed_in_words() {
        let c = |ty: &str, status: bool, reason: &str, msg: &str| {
            Condition::new(ty, status, reason, msg, t(0), Some(1))
        };
        let paused = c(
            "Paused",
            true,
            reason::PAUSED_BY_SPEC,
            "spec.paused: no new work starts",
        );
        let running = c("Paused", false, reason::RUNNING, "");
        assert_eq!(
            condition_note("Paused", Some(&paused), &running),
            "not paused: new work may start (was PausedBySpec)"
        );
        assert_eq!(
            condition_note("Paused", None, &paused),
            "spec.paused: no new work starts"
        );
        let down = c(
            "Degraded",
            true,
            reason::SLURM_UNREACHABLE,
            "agent unreachable",
        );
        let ok = c("Degraded", false, reason::RECONCILED, "");
        assert_eq!(
            condition_note("Degraded", Some(&down), &ok),
            "no longer degraded (was SlurmUnreachable)"
        );
        assert!(is_warning("Degraded", &down) && !is_warning("Degraded", &ok));
        // Nothing reads "X is False".
        for (ty, b, n) in [("Paused", &paused, &running), ("Degraded", &down, &ok)] {
            let note = condition_note(ty, Some(b), n);
            assert!(!note.contains("is False"), "{note}");
        }
        // A policy's first pass announces no normal state.
        assert!(is_quiet_start(&running) && is_quiet_start(&ok));
        assert!(!is_quiet_start(&paused));
    }

    #[test]
    fn a_rejected_spec_waits_for_its_next_generation() {
        let s = policy_status(
            None,
            Some(1),
            "batch",
            &[],
            &plan_with(0, false),
            ACTING,
            t(0),
        );
        assert!(!spec_rejected(Some(&s), Some(1)));
        let d = degraded_status(Some(&s), Some(2), reason::INVALID_SPEC, "bad".into(), t(5));
        assert!(spec_rejected(Some(&d), Some(2)));
        assert!(!spec_rejected(Some(&d), Some(3)), "a new spec is tried");
        let u = degraded_status(
            Some(&s),
            Some(2),
            reason::SLURM_UNREACHABLE,
            "x".into(),
            t(5),
        );
        assert!(!spec_rejected(Some(&u), Some(2)), "Slurm is retried");
        assert!(!spec_rejected(None, Some(1)));
    }

    #[test]
    fn degraded_keeps_the_rest() {
        let s = policy_status(
            None,
            Some(1),
            "batch",
            &[],
            &plan_with(0, false),
            ACTING,
            t(0),
        );
        let d = degraded_status(
            Some(&s),
            Some(2),
            reason::INVALID_SPEC,
            "spec.nodelist: bad".into(),
            t(5),
        );
        assert_eq!(get(&d, "Degraded").status, ConditionStatus::True);
        assert_eq!(get(&d, "Ready").status, ConditionStatus::False);
        assert_eq!(get(&d, "Ready").message, "spec.nodelist: bad");
        assert_eq!(d.budget, s.budget);
        assert_eq!(d.observed_generation, Some(2));
    }

    #[test]
    fn work_conditions_follow_the_phase() {
        use crate::api::NodeMaintenanceStatus;
        use crate::api::condition::ConditionStatus;
        use crate::api::node_maintenance::Transition;
        let get = |st: &NodeMaintenanceStatus, ty: &str| {
            st.conditions
                .iter()
                .find(|c| c.r#type == ty)
                .map(|c| (c.status, c.reason.clone(), c.last_transition_time))
                .unwrap()
        };
        let mut st = NodeMaintenanceStatus {
            phase: Phase::Rebooting,
            phase_since: Some(t(10)),
            transitions: vec![Transition {
                phase: Phase::Rebooting,
                time: t(10),
                message: "reboot issued, attempt 1".into(),
            }],
            ..Default::default()
        };
        set_work_conditions(&mut st, t(11), Some(1));
        assert_eq!(
            get(&st, work_condition::PROGRESSING),
            (ConditionStatus::True, "Rebooting".into(), t(10))
        );
        assert_eq!(get(&st, work_condition::COMPLETE).0, ConditionStatus::False);
        assert_eq!(get(&st, work_condition::FAILED).0, ConditionStatus::False);
        // A later phase: still progressing, since the first time.
        st.phase = Phase::HealthCheck;
        st.phase_since = Some(t(20));
        set_work_conditions(&mut st, t(21), Some(1));
        assert_eq!(
            get(&st, work_condition::PROGRESSING),
            (ConditionStatus::True, "HealthCheck".into(), t(10))
        );
        // Failed: the error is the message; Complete stays False since the start.
        st.phase = Phase::Failed;
        st.phase_since = Some(t(30));
        st.last_error = Some("node not back".into());
        set_work_conditions(&mut st, t(31), Some(1));
        assert_eq!(
            get(&st, work_condition::PROGRESSING),
            (ConditionStatus::False, "Failed".into(), t(30))
        );
        let failed = st
            .conditions
            .iter()
            .find(|c| c.r#type == work_condition::FAILED)
            .unwrap();
        assert_eq!(
            (
                failed.status,
                failed.message.as_str(),
                failed.last_transition_time
            ),
            (ConditionStatus::True, "node not back", t(30))
        );
        assert_eq!(get(&st, work_condition::COMPLETE).2, t(10));
        assert_eq!(st.conditions.len(), 3);
    }
}
