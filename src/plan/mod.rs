//! Pure planning: from the facts of one pass — a snapshot of the partition, the known
//! NodeMaintenances with what OCI said of their events, health results — the intended
//! status transitions and side effects of one pass. No I/O; time is an input.
//!
//! A pass ([`plan`]): in-flight work moves through the one state machine
//! ([`machine`], with the action's parts in [`reboot`] and [`oci`]); budget is given
//! back if nodes went down elsewhere and the campaign's new work is found
//! ([`campaign`]); then pending work is admitted under one budget ([`admission`]).
//! Where the seeds' rules live: the budget that counts nodes Slurm has down
//! ([`budget`], [`index`]); release times and preemption ([`release`]); windows
//! ([`window`]); retries people ask for ([`retry`]); status and conditions ([`status`]).
//!
//! The caller writes each [`WorkUpdate::status`] before executing its
//! [`WorkUpdate::actions`]; every action is idempotent (reservations are named after node
//! and campaign and checked against the snapshot), so a pass killed anywhere is finished
//! by the next one. A dry run computes the same plan and executes none of it.

mod admission;
pub mod budget;
mod campaign;
mod index;
mod machine;
mod oci;
mod reboot;
pub mod release;
mod retime;
pub mod retry;
pub mod status;
pub mod timeline;
pub mod topology;
mod transition;
mod wake;
pub mod window;

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::api::node_maintenance::{MaintenanceAction, NodeMaintenanceStatus};
use crate::api::policy::{MaintenancePolicySpec, PlannedNode};
use crate::slurm::{Job, Node, Reservation, hostlist};

pub use budget::{BudgetFigures, BudgetLimit};
pub use release::Release;

use crate::oci::workflow::{EventState, Timing};

/// Start of every drain reason we write; the agent resumes only nodes drained with it.
pub const REASON_PREFIX: &str = "slurm-maint: ";
/// How far a node's clock (its BootTime) may lag the controller's (the reboot's issue time).
pub const BOOT_CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(300);
/// Most transitions kept in a NodeMaintenance's status.
pub const MAX_TRANSITIONS: usize = 32;
/// A reservation's start is moved earlier only by more than this.
pub const RETIME_TOLERANCE: SignedDuration = SignedDuration::from_secs(10);
/// Most nodes shown in the plan preview.
pub const PREVIEW_LEN: usize = 10;

/// Reservation parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReservationTemplate {
    pub prefix: String,
    pub duration: SignedDuration,
    pub users: Vec<String>,
    pub accounts: Vec<String>,
    pub flags: Vec<String>,
}

/// Policy settings the planner needs, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub partition: String,
    /// Nodes the policy may act on; `None`: the whole partition.
    pub scope: Option<BTreeSet<String>>,
    pub limit: BudgetLimit,
    pub lead_time: SignedDuration,
    pub reservations_enabled: bool,
    pub reboots_enabled: bool,
    pub terminate_preemptable: bool,
    pub preemptable_qos: Vec<String>,
    pub paused: bool,
    /// A maintenance window is open now (computed by the caller from the policy).
    pub window_open: bool,
    pub reboot_timeout: SignedDuration,
    /// The policy's pass interval: the longest a pass waits for the next.
    #[serde(default)]
    pub interval: SignedDuration,
    pub max_attempts: u32,
    pub health_check: bool,
    pub settle_time: SignedDuration,
    pub reservation: ReservationTemplate,
    /// The campaign: nodes booted before this need a reboot.
    pub reboot_required_before: Option<Timestamp>,
    /// Work (by resource name) a person asked to expedite ([`EXPEDITE_ANNOTATION`]): it
    /// goes first and does not wait for a maintenance window; budget, pause and
    /// monitor-only still hold.
    #[serde(default)]
    pub expedited: BTreeSet<String>,
    /// When OCI windows are asked for and nodes taken for them.
    pub oci: Timing,
    /// What Prometheus said of `spec.blockers` this pass (gathered by the caller).
    #[serde(default)]
    pub blockers: Blockers,
    /// `spec.budget.topology`: domains the budget respects; `None`: nodes only.
    #[serde(default)]
    pub topology: Option<topology::TopologySettings>,
}

/// What Prometheus said, this pass, of the alerts in `spec.blockers`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Blockers {
    /// The spec names no blockers.
    #[default]
    Unset,
    /// Prometheus answered: the named alerts firing now (none: new work may start).
    Firing(Vec<String>),
    /// Prometheus was not reached (or not in time): new work waits.
    Unreachable(String),
    /// Prometheus answered with something else than its alerts: new work waits.
    Error(String),
}

impl Blockers {
    /// Why new work may not start now, if it may not.
    pub fn hold(&self) -> Option<String> {
        match self {
            Self::Unset => None,
            Self::Firing(a) if a.is_empty() => None,
            Self::Firing(a) => Some(format!("blocked by firing alert(s): {}", a.join(", "))),
            Self::Unreachable(e) => Some(format!(
                "blocked: Prometheus not reachable, so the blocking alerts are unknown: {e}"
            )),
            Self::Error(e) => Some(format!(
                "blocked: Prometheus did not give its alerts, so the blocking alerts are unknown: {e}"
            )),
        }
    }
}

/// The annotation on a Pending NodeMaintenance that expedites it.
pub const EXPEDITE_ANNOTATION: &str = "slurm-maint.io/expedite";

/// A spec the planner cannot act on (beyond what the CRD schema catches).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("spec.nodelist: {0}")]
    Nodelist(String),
    #[error("spec.budget: set either maxUnavailable or maxUnavailablePercent, not both")]
    BothLimits,
    #[error("spec.budget.maxUnavailablePercent must be greater than 0 and at most 100, got {0}")]
    Percent(f64),
    #[error("spec.budget.maxUnavailable must be at least 1")]
    Count,
    #[error("spec.reboots.enabled requires spec.reservations.enabled")]
    RebootsWithoutReservations,
    #[error("spec.reservations: Slurm needs at least one user or account")]
    NoUsers,
    #[error("spec.campaign.windows: {0}")]
    Window(String),
    #[error("spec.reboots.maxAttempts must be at least 1")]
    MaxAttempts,
    #[error("spec.budget.topology: {0}")]
    Topology(&'static str),
}

impl Settings {
    /// Validate a policy spec into settings; `window_open` is evaluated at `now`.
    pub fn from_spec(spec: &MaintenancePolicySpec, now: Timestamp) -> Result<Self, SpecError> {
        let limit = match (
            spec.budget.max_unavailable_percent,
            spec.budget.max_unavailable,
        ) {
            (Some(_), Some(_)) => return Err(SpecError::BothLimits),
            (Some(p), None) if !(p > 0.0 && p <= 100.0) => return Err(SpecError::Percent(p)),
            (Some(p), None) => BudgetLimit::Percent(p),
            (None, Some(0)) => return Err(SpecError::Count),
            (None, Some(n)) => BudgetLimit::Count(n),
            (None, None) => BudgetLimit::default(),
        };
        if spec.reboots.enabled && !spec.reservations.enabled {
            return Err(SpecError::RebootsWithoutReservations);
        }
        if spec.reservations.users.is_empty() && spec.reservations.accounts.is_empty() {
            return Err(SpecError::NoUsers);
        }
        if spec.reboots.max_attempts == 0 {
            return Err(SpecError::MaxAttempts);
        }
        let scope = match spec.nodelist.as_deref() {
            None => None,
            Some(expr) => Some(
                hostlist::expand(expr)
                    .map_err(|e| SpecError::Nodelist(e.to_string()))?
                    .into_iter()
                    .collect(),
            ),
        };
        window::validate(&spec.campaign.windows).map_err(|e| SpecError::Window(e.to_string()))?;
        let window_open = window::is_open(&spec.campaign.windows, now)
            .map_err(|e| SpecError::Window(e.to_string()))?;
        let mut flags: Vec<String> = spec
            .reservations
            .flags
            .iter()
            .map(|f| f.to_ascii_uppercase())
            .collect();
        if !flags.iter().any(|f| f == "MAINT") {
            flags.insert(0, "MAINT".into());
        }
        flags.dedup();
        Ok(Self {
            partition: spec.partition.clone(),
            scope,
            limit,
            lead_time: spec.budget.reservation_lead_time.as_span(),
            reservations_enabled: spec.reservations.enabled,
            reboots_enabled: spec.reboots.enabled,
            terminate_preemptable: spec.preemption.terminate_preemptable_jobs,
            preemptable_qos: spec.preemption.preemptable_qos.clone(),
            paused: spec.paused,
            window_open,
            reboot_timeout: spec.reboots.timeout.as_span(),
            interval: spec.interval.as_span(),
            max_attempts: spec.reboots.max_attempts,
            health_check: spec.reboots.health_check,
            settle_time: spec.reboots.settle_time.as_span(),
            reservation: ReservationTemplate {
                prefix: spec.reservations.name_prefix.clone(),
                duration: spec.reservations.duration.as_span(),
                users: spec.reservations.users.clone(),
                accounts: spec.reservations.accounts.clone(),
                flags,
            },
            reboot_required_before: spec.campaign.reboot_required_before,
            expedited: BTreeSet::new(),
            oci: Timing {
                lead: spec.oci.schedule_lead_time.as_span(),
                drain_ahead: spec.oci.drain_ahead.as_span(),
            },
            blockers: Blockers::Unset,
            topology: spec
                .budget
                .topology
                .as_ref()
                .map(topology::TopologySettings::from_spec)
                .transpose()?,
        })
    }

    fn in_scope(&self, node: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| s.contains(node))
    }
}

/// Result of a health check the caller ran for a node in the HealthCheck phase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResult {
    pub healthy: bool,
    pub message: String,
    /// The named checks run (empty for the agent's single health check); recorded on
    /// the work's status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::api::node_maintenance::HealthCheckResult>,
}

/// What Slurm said, once per pass, about one partition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every node of the partition.
    pub nodes: Vec<Node>,
    /// Jobs on those nodes (inactive ones are ignored).
    pub jobs: Vec<Job>,
    /// All reservations.
    pub reservations: Vec<Reservation>,
    /// Health-check results for nodes in the HealthCheck phase.
    pub health: BTreeMap<String, HealthResult>,
    /// Slurm's topology, when the agent read one.
    #[serde(default)]
    pub topology: Option<crate::slurm::topology::Topology>,
}

/// One NodeMaintenance as the planner sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Work {
    /// Resource name.
    pub name: String,
    pub node: String,
    pub action: MaintenanceAction,
    pub campaign: Option<String>,
    pub status: NodeMaintenanceStatus,
    /// For OCI maintenance: its event.
    pub oci: Option<OciFacts>,
}

/// What OCI maintenance work knows of its event in a pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OciFacts {
    pub event_id: String,
    /// What its drain says after our prefix (the event's fault summary).
    pub reason: Option<String>,
    /// What OCI said of the event this pass; `None` when it was not read (its poll was
    /// not due, or OCI did not answer): only phases past the event move.
    pub state: Option<EventState>,
}

/// A side effect in Slurm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    CreateReservation {
        name: String,
        node: String,
        /// The other nodes of a domain taken whole (`WholeDomain`): one reservation over
        /// them all.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        with: Vec<String>,
        /// `None`: now.
        start: Option<Timestamp>,
        duration: SignedDuration,
        users: Vec<String>,
        accounts: Vec<String>,
        flags: Vec<String>,
    },
    UpdateReservationStart {
        name: String,
        start: Option<Timestamp>,
    },
    DeleteReservation {
        name: String,
    },
    /// End a preemptable job (the agent re-checks preemptability at the moment of cancel).
    CancelJob {
        job_id: u64,
        node: String,
    },
    Drain {
        node: String,
        reason: String,
    },
    Reboot {
        node: String,
        reason: String,
    },
    /// Retire our reason on a node back in service (Slurm 24.11 without accounting
    /// storage keeps it after a resume or a reboot), so no old reason of ours outlives the
    /// work it described; the agent replaces it with one that claims nothing.
    ClearReason {
        node: String,
    },
    /// Return a node we drained to service (OCI maintenance done).
    Resume {
        node: String,
    },
    /// Move an OCI maintenance event's window to `start`; OCI then carries it out.
    ScheduleOciEvent {
        event_id: String,
        start: Timestamp,
    },
}

impl Action {
    /// One line for logs, Events and the policy's `plannedActions`.
    pub fn describe(&self) -> String {
        let when = |s: &Option<Timestamp>| s.map_or("now".to_string(), |t| t.to_string());
        match self {
            Self::CreateReservation {
                name, node, start, ..
            } => {
                format!(
                    "create reservation {name} on {node} starting {}",
                    when(start)
                )
            }
            Self::UpdateReservationStart { name, start } => {
                format!("move reservation {name} to start {}", when(start))
            }
            Self::DeleteReservation { name } => format!("delete reservation {name}"),
            Self::CancelJob { job_id, node } => {
                format!("cancel preemptable job {job_id} on {node}")
            }
            Self::Drain { node, reason } => format!("drain {node}: {reason}"),
            Self::Reboot { node, reason } => format!("reboot {node}: {reason}"),
            Self::ClearReason { node } => format!("retire slurm-maint's old reason on {node}"),
            Self::Resume { node } => format!("resume {node}"),
            Self::ScheduleOciEvent { event_id, start } => {
                format!("schedule OCI event {event_id} for {start}")
            }
        }
    }
}

/// A NodeMaintenance to create (phase Pending).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewWork {
    pub name: String,
    pub node: String,
    pub campaign: String,
    pub reason: String,
}

/// New status and side effects for one NodeMaintenance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkUpdate {
    pub name: String,
    pub node: String,
    /// The status to write before the actions (unchanged if only actions are repeated).
    pub status: NodeMaintenanceStatus,
    pub actions: Vec<Action>,
}

/// The outcome of one pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Budget after this pass's decisions.
    pub budget: BudgetFigures,
    /// Budget as observed, before this pass's decisions.
    pub observed: BudgetFigures,
    pub new_work: Vec<NewWork>,
    pub updates: Vec<WorkUpdate>,
    /// Next nodes to start, earliest release first.
    pub preview: Vec<PlannedNode>,
    /// Nodes that need work but cannot start, and why.
    pub waiting: BTreeMap<String, String>,
    /// Nodes needing work that someone else holds (down, drained, gone from the
    /// partition): left alone until they are back in service.
    pub blocked: BTreeSet<String>,
    /// Admission stopped because the budget is full.
    pub budget_exhausted: bool,
    /// Nodes in the campaign (needing or done with work).
    pub nodes_needing_work: usize,
    /// Release times of every node still waiting to start, earliest first.
    pub queue: Vec<Release>,
    /// `spec.nodelist` is set and names no node of the partition.
    pub scope_matches_nothing: bool,
    /// The blockers admission held (or did not hold) new work for.
    pub blockers: Blockers,
    /// The earliest moment something is due (a reservation starts, a node is expected
    /// back, a timeout expires; `now` when a step of this pass can be followed at once):
    /// the next pass should not wait longer.
    pub next_due: Option<Timestamp>,
    /// How long one node is typically out, learned from this campaign's completed nodes.
    pub per_node: SignedDuration,
    /// The most nodes out at any moment from now on, committed reservations included.
    pub peak_out: usize,
    /// Per-domain figures, with `budget.topology`.
    #[serde(default)]
    pub topology: Option<crate::api::policy::TopologyStatus>,
}

impl Plan {
    /// Every action of the pass, in execution order.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.updates.iter().flat_map(|u| u.actions.iter())
    }
}

/// Campaign id of a `rebootRequiredBefore` instant: `c<unix seconds>`.
pub fn campaign_id(before: Timestamp) -> String {
    format!("c{}", before.as_second())
}

/// Reservation name for a node's work: `<prefix>-<node>-<campaign>`. Deterministic, so a
/// repeated pass finds the reservation instead of creating a second one.
pub fn reservation_name(prefix: &str, node: &str, campaign: Option<&str>) -> String {
    match campaign {
        Some(c) => format!("{prefix}-{node}-{c}"),
        None => format!("{prefix}-{node}"),
    }
}

/// NodeMaintenance resource name: `<policy>-<node>-<campaign>`, lower-cased and made a
/// valid DNS subdomain; a hash keeps distinct node names distinct after mangling.
pub fn work_name(policy: &str, node: &str, campaign: &str) -> String {
    let raw = format!("{policy}-{node}-{campaign}");
    let clean: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    if clean == raw && clean.len() <= 200 {
        return clean;
    }
    // FNV-1a: stable across versions and platforms.
    let hash = raw.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    let mut cut: String = clean.chars().take(180).collect();
    cut = cut.trim_end_matches(['-', '.']).to_string();
    format!("{cut}-{:08x}", hash as u32)
}

/// Whether `node` needs a reboot in the campaign: booted before `before` (or boot time unknown).
pub fn needs_reboot(node: &Node, before: Option<Timestamp>) -> bool {
    match before {
        None => false,
        Some(b) => node.boot_time.is_none_or(|t| t < b),
    }
}

/// The plan as if this pass's new NodeMaintenances already existed: what a dry run
/// shows, since a dry run creates none and would otherwise never plan an action.
pub fn plan_as_if_created(
    policy: &str,
    s: &Settings,
    snapshot: &Snapshot,
    work: &[Work],
    now: Timestamp,
) -> Plan {
    let first = plan(policy, s, snapshot, work, now);
    if first.new_work.is_empty() {
        return first;
    }
    let mut all = work.to_vec();
    all.extend(first.new_work.iter().map(|nw| Work {
        name: nw.name.clone(),
        node: nw.node.clone(),
        action: MaintenanceAction::Reboot,
        campaign: Some(nw.campaign.clone()),
        status: NodeMaintenanceStatus::default(),
        oci: None,
    }));
    let mut p = plan(policy, s, snapshot, &all, now);
    p.new_work = first.new_work;
    p
}

/// Plan one pass for `policy` over `snapshot`, given its NodeMaintenances `work`.
pub fn plan(
    policy: &str,
    s: &Settings,
    snapshot: &Snapshot,
    work: &[Work],
    now: Timestamp,
) -> Plan {
    let mut ctx = index::Ctx::new(s, snapshot, now);
    // Work sorted by name, so input order never changes the plan.
    let mut work: Vec<&Work> = work.iter().collect();
    work.sort_by(|a, b| a.name.cmp(&b.name));
    ctx.share(&work);
    let ctx = ctx;
    let mut statuses: BTreeMap<&str, NodeMaintenanceStatus> = work
        .iter()
        .map(|w| (w.name.as_str(), w.status.clone()))
        .collect();
    let observed = ctx.figures(&work, &statuses);

    let mut updates: Vec<WorkUpdate> = vec![];
    for w in &work {
        let mut status = w.status.clone();
        if s.topology.is_some() && !status.phase.is_terminal() {
            status.domain = ctx.domain_of.get(&w.node).cloned();
        }
        let actions = machine::step(&ctx, w, &mut status);
        if status != w.status || !actions.is_empty() {
            statuses.insert(w.name.as_str(), status.clone());
            // The first update of each work: nothing to merge with yet.
            updates.push(WorkUpdate {
                name: w.name.clone(),
                node: w.node.clone(),
                status,
                actions,
            });
        }
    }
    reboot::release_returned_domains(&ctx, &work, &statuses, &mut updates);
    campaign::clear_stale_reasons(&ctx, &work, &statuses, &mut updates);
    let (new_work, nodes_needing_work) =
        campaign::new_work(policy, &ctx, snapshot, &work, &statuses);
    let (safe, typical) = timeline::expected_duration(&ctx, &work);
    let mut tl = timeline::build(&ctx, &work, &statuses, safe);
    retime::follow(&ctx, &work, &mut statuses, &mut updates, &mut tl, safe);
    let before = ctx.figures(&work, &statuses);
    let a = admission::admit(
        &ctx,
        &work,
        &mut statuses,
        &mut updates,
        before,
        &mut tl,
        safe,
    );
    let next_due = if new_work.is_empty() {
        wake::next_due(&ctx, &work, &statuses, &updates, &a.not_started, typical)
    } else {
        Some(now)
    };

    // Nodes about to get a NodeMaintenance are previewed too.
    let mut not_started: Vec<(Release, String)> = new_work
        .iter()
        .filter(|nw| {
            ctx.nodes
                .get(nw.node.as_str())
                .is_some_and(|n| n.state.in_service())
        })
        .map(|nw| (ctx.release(&nw.node), nw.node.clone()))
        .chain(a.not_started)
        .collect();
    not_started.sort();
    let queue = not_started.iter().map(|(r, _)| *r).collect();
    let preview = not_started
        .into_iter()
        .take(PREVIEW_LEN)
        .map(|(r, node)| PlannedNode {
            waiting: a.waiting.get(&node).cloned(),
            node,
            release_time: r.time(),
        })
        .collect();
    let topology = s
        .topology
        .as_ref()
        .map(|t| topology::figures(t, &ctx.domain_of, snapshot, &a.budget));
    Plan {
        budget: a.budget,
        observed,
        new_work,
        updates,
        preview,
        waiting: a.waiting,
        blocked: a.blocked,
        budget_exhausted: a.budget_exhausted,
        nodes_needing_work,
        queue,
        scope_matches_nothing: s.scope.is_some()
            && !snapshot.nodes.iter().any(|n| s.in_scope(&n.name)),
        blockers: s.blockers.clone(),
        next_due,
        per_node: typical,
        peak_out: tl.peak(now),
        topology,
    }
}

/// A reboot the agent or Slurm refused (it was not issued): the attempt fails now instead
/// of after the reboot timeout — another one next pass, or `Failed` (drained) after the
/// last. Returns the status to write and the actions to carry out then.
pub fn reboot_refused(
    w: &Work,
    st: &NodeMaintenanceStatus,
    max_attempts: u32,
    why: &str,
    now: Timestamp,
) -> (NodeMaintenanceStatus, Vec<Action>) {
    let mut st = st.clone();
    let actions = reboot::fail_attempt(
        &mut st,
        w,
        now,
        max_attempts,
        format!("reboot refused: {why}"),
        None,
    );
    (st, actions)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod oci_tests;
