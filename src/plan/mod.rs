//! Pure planning: from one snapshot of a partition and the known NodeMaintenances, the
//! intended status transitions and Slurm actions of one pass. No I/O; time is an input.
//!
//! Order of a pass: in-flight work first (it may free budget), then — if reservations are
//! enabled, the policy is not paused and a window is open — admission of pending nodes,
//! earliest release first, while the budget has room. Earliest-release-first list
//! scheduling is optimal for makespan when reboots take equal time (P|r_j, p_j=p|Cmax).
//!
//! The caller writes each [`WorkUpdate::status`] before executing its
//! [`WorkUpdate::actions`]; every action is idempotent (reservations are named after node
//! and campaign and checked against the snapshot), so a pass killed anywhere is finished
//! by the next one. A dry run computes the same plan and executes none of it.

pub mod budget;
pub mod release;
pub mod retry;
pub mod status;
pub mod window;

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::api::node_maintenance::{
    MaintenanceAction, NodeMaintenancePhase as Phase, NodeMaintenanceStatus, Transition,
};
use crate::api::policy::{MaintenancePolicySpec, PlannedNode};
use crate::slurm::{Job, Node, Reservation, hostlist};

pub use budget::{BudgetFigures, BudgetLimit};
pub use release::Release;

/// Start of every drain reason we write; the agent resumes only nodes drained with it.
pub const REASON_PREFIX: &str = "slurm-maint: ";
/// How far a node's clock (its BootTime) may lag the controller's (the reboot's issue time).
pub const BOOT_CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(300);
/// Most transitions kept in a NodeMaintenance's status.
pub const MAX_TRANSITIONS: usize = 32;
/// A reservation's start is moved only when the release time differs by more than this.
pub const RETIME_TOLERANCE: SignedDuration = SignedDuration::from_secs(60);
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
    /// Budget slots held back from rolling reboots this pass for OCI maintenance work
    /// ready to start (see [`crate::oci::workflow::ready_to_start`]).
    #[serde(default)]
    pub held_for_oci: usize,
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
            held_for_oci: 0,
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
}

/// A side effect in Slurm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    CreateReservation {
        name: String,
        node: String,
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

struct Ctx<'a> {
    s: &'a Settings,
    now: Timestamp,
    nodes: BTreeMap<&'a str, &'a Node>,
    jobs: BTreeMap<&'a str, Vec<&'a Job>>,
    reservations: BTreeMap<&'a str, &'a Reservation>,
    all_reservations: &'a [Reservation],
    /// Reservations not ours, by node.
    foreign: BTreeMap<&'a str, Vec<&'a Reservation>>,
    health: &'a BTreeMap<String, HealthResult>,
}

impl<'a> Ctx<'a> {
    fn jobs_on(&self, node: &str) -> impl Iterator<Item = &'a Job> + '_ {
        self.jobs
            .get(node)
            .into_iter()
            .flatten()
            .copied()
            .filter(|j| j.is_active())
    }

    fn release(&self, node: &str) -> Release {
        release::release_time(
            self.jobs_on(node),
            self.now,
            self.s.terminate_preemptable,
            &self.s.preemptable_qos,
        )
    }

    fn cancellable(&self, node: &str) -> Vec<u64> {
        release::jobs_to_cancel(
            self.jobs_on(node),
            self.s.terminate_preemptable,
            &self.s.preemptable_qos,
        )
    }

    fn reservation_for(&self, w: &Work) -> String {
        w.status.reservation_name.clone().unwrap_or_else(|| {
            reservation_name(&self.s.reservation.prefix, &w.node, w.campaign.as_deref())
        })
    }

    /// Someone else's reservation on `node` that ours (starting at `release`) would
    /// overlap. Such nodes are left alone: Slurm would refuse the overlap, and another
    /// party is working on the node.
    fn foreign_conflict(&self, node: &str, release: Release) -> Option<&'a Reservation> {
        let start = release.time().unwrap_or(self.now).max(self.now);
        let end = start + self.s.reservation.duration;
        self.foreign
            .get(node)
            .into_iter()
            .flatten()
            .copied()
            .filter(|r| r.start < end && start < r.end)
            .min_by(|a, b| (a.start, &a.name).cmp(&(b.start, &b.name)))
    }

    fn create_reservation(&self, name: String, node: &str, release: Release) -> Action {
        let start = release.time().filter(|t| *t > self.now);
        let mut flags = self.s.reservation.flags.clone();
        // Starting now over running jobs (jobs being cancelled, or with no time limit):
        // Slurm needs IGNORE_JOBS; the jobs keep running and nothing new lands.
        if start.is_none()
            && self.jobs_on(node).next().is_some()
            && !flags.iter().any(|f| f == "IGNORE_JOBS")
        {
            flags.push("IGNORE_JOBS".into());
        }
        Action::CreateReservation {
            name,
            node: node.to_string(),
            start,
            duration: self.s.reservation.duration,
            users: self.s.reservation.users.clone(),
            accounts: self.s.reservation.accounts.clone(),
            flags,
        }
    }
}

fn transition(
    status: &mut NodeMaintenanceStatus,
    phase: Phase,
    now: Timestamp,
    message: impl Into<String>,
) {
    status.phase = phase;
    status.phase_since = Some(now);
    status.transitions.push(Transition {
        phase,
        time: now,
        message: message.into(),
    });
    if status.transitions.len() > MAX_TRANSITIONS {
        let excess = status.transitions.len() - MAX_TRANSITIONS;
        status.transitions.drain(..excess);
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
    let mut ctx = Ctx {
        s,
        now,
        nodes: BTreeMap::new(),
        jobs: BTreeMap::new(),
        reservations: BTreeMap::new(),
        all_reservations: &snapshot.reservations,
        foreign: BTreeMap::new(),
        health: &snapshot.health,
    };
    let ours = format!("{}-", s.reservation.prefix);
    for r in snapshot
        .reservations
        .iter()
        .filter(|r| !r.name.starts_with(&ours))
    {
        for n in &r.nodes {
            ctx.foreign.entry(n.as_str()).or_default().push(r);
        }
    }
    for n in &snapshot.nodes {
        ctx.nodes.insert(n.name.as_str(), n);
    }
    for j in &snapshot.jobs {
        for n in &j.nodes {
            ctx.jobs.entry(n.as_str()).or_default().push(j);
        }
    }
    for r in &snapshot.reservations {
        ctx.reservations.insert(r.name.as_str(), r);
    }

    // Work sorted by name, so input order never changes the plan.
    let mut work: Vec<&Work> = work.iter().collect();
    work.sort_by(|a, b| a.name.cmp(&b.name));
    let mut statuses: BTreeMap<&str, NodeMaintenanceStatus> = work
        .iter()
        .map(|w| (w.name.as_str(), w.status.clone()))
        .collect();

    let observed = figures(&ctx, &work, &statuses);
    let mut updates: Vec<WorkUpdate> = vec![];

    // 1. In-flight work, in state-machine order.
    for w in &work {
        if w.action != MaintenanceAction::Reboot {
            continue;
        }
        let mut status = w.status.clone();
        let actions = step(&ctx, w, &mut status);
        if status != w.status || !actions.is_empty() {
            statuses.insert(w.name.as_str(), status.clone());
            updates.push(WorkUpdate {
                name: w.name.clone(),
                node: w.node.clone(),
                status,
                actions,
            });
        }
    }

    clear_stale_reasons(&ctx, &work, &statuses, &mut updates);

    // 2. Give budget back if nodes went down elsewhere: reservations not yet started are
    //    withdrawn, latest release first, until the committed set fits again.
    let mut b = figures(&ctx, &work, &statuses);
    if b.occupied().len() > b.allowed {
        let mut ahead: Vec<(&&Work, Timestamp)> = work
            .iter()
            .filter(|w| statuses[w.name.as_str()].phase == Phase::Reserved)
            .filter_map(|w| {
                let st = &statuses[w.name.as_str()];
                let start = st.reservation_start?;
                (start > now && !b.down.contains(&w.node)).then_some((w, start))
            })
            .collect();
        ahead.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.name.cmp(&a.0.name)));
        for (w, _) in ahead {
            if b.occupied().len() <= b.allowed {
                break;
            }
            let mut status = statuses[w.name.as_str()].clone();
            let name = ctx.reservation_for(w);
            transition(
                &mut status,
                Phase::Pending,
                now,
                "budget exceeded by nodes down elsewhere: reservation withdrawn",
            );
            status.reservation_name = None;
            status.reservation_start = None;
            statuses.insert(w.name.as_str(), status.clone());
            push_update(
                &mut updates,
                w,
                status,
                vec![Action::DeleteReservation { name }],
            );
            b = figures(&ctx, &work, &statuses);
        }
    }

    // 3. The campaign: which nodes need work, which NodeMaintenances to create.
    let mut waiting = BTreeMap::new();
    let mut blocked = BTreeSet::new();
    let mut new_work = vec![];
    let mut campaign_nodes = BTreeSet::new();
    let mut has_work: BTreeSet<&str> = BTreeSet::new();
    for w in &work {
        let st = &statuses[w.name.as_str()];
        let current = w.campaign.as_deref() == s.reboot_required_before.map(campaign_id).as_deref();
        if !st.phase.is_terminal() || (w.action == MaintenanceAction::Reboot && current) {
            has_work.insert(w.node.as_str());
        }
        if w.action == MaintenanceAction::Reboot && current {
            campaign_nodes.insert(w.node.as_str());
        }
    }
    if let Some(before) = s.reboot_required_before {
        let campaign = campaign_id(before);
        for n in &snapshot.nodes {
            if !s.in_scope(&n.name) || !needs_reboot(n, Some(before)) {
                continue;
            }
            campaign_nodes.insert(n.name.as_str());
            if !has_work.contains(n.name.as_str()) {
                new_work.push(NewWork {
                    name: work_name(policy, &n.name, &campaign),
                    node: n.name.clone(),
                    campaign: campaign.clone(),
                    reason: format!("booted before {before}"),
                });
            }
        }
        new_work.sort_by(|a, b| a.name.cmp(&b.name));
    }

    // 4. Admission: pending nodes, earliest release first, while the budget has room.
    let mut candidates: Vec<(Release, &Work)> = vec![];
    for w in &work {
        if w.action != MaintenanceAction::Reboot
            || statuses[w.name.as_str()].phase != Phase::Pending
        {
            continue;
        }
        let Some(node) = ctx.nodes.get(w.node.as_str()) else {
            waiting.insert(w.node.clone(), "node is not in the partition".into());
            blocked.insert(w.node.clone());
            continue;
        };
        if !node.state.in_service() {
            blocked.insert(w.node.clone());
            let reason = node.reason.as_deref().unwrap_or("no reason");
            waiting.insert(
                w.node.clone(),
                format!(
                    "node is {} ({reason}); it is left alone until back in service",
                    node.state
                ),
            );
            continue;
        }
        let release = ctx.release(&w.node);
        if let Some(r) = ctx.foreign_conflict(&w.node, release) {
            waiting.insert(
                w.node.clone(),
                format!(
                    "node is in reservation {} (not ours) from {} to {}",
                    r.name, r.start, r.end
                ),
            );
            continue;
        }
        candidates.push((release, w));
    }
    // Nodes about to get a NodeMaintenance are previewed too.
    let preview_only: Vec<(Release, String)> = new_work
        .iter()
        .filter(|nw| {
            ctx.nodes
                .get(nw.node.as_str())
                .is_some_and(|n| n.state.in_service())
        })
        .map(|nw| (ctx.release(&nw.node), nw.node.clone()))
        .collect();
    // Expedited work first, then earliest release.
    candidates.sort_by(|a, b| {
        let (ea, eb) = (
            s.expedited.contains(&a.1.name),
            s.expedited.contains(&b.1.name),
        );
        eb.cmp(&ea)
            .then(a.0.cmp(&b.0))
            .then(a.1.node.cmp(&b.1.node))
    });

    let gate_for = |w: &Work| {
        if !s.reservations_enabled {
            Some("reservations are disabled (monitor only)")
        } else if s.paused {
            Some("policy is paused")
        } else if !s.window_open && !s.expedited.contains(&w.name) {
            Some("outside the maintenance windows")
        } else {
            None
        }
    };
    let mut budget_exhausted = false;
    let mut not_started: Vec<(Release, String)> = preview_only;
    // |occupied| only changes when a node is admitted: computed once per change, not per
    // candidate (a set union over the partition; thousands of candidates at 10k nodes).
    let mut occupied = b.occupied().len();
    let mut full_note: Option<String> = None;
    for (release, w) in &candidates {
        if let Some(why) = gate_for(w) {
            waiting.insert(w.node.clone(), why.to_string());
        } else if occupied + s.held_for_oci < b.allowed {
            let mut status = statuses[w.name.as_str()].clone();
            let name = ctx.reservation_for(w);
            let mut actions = vec![ctx.create_reservation(name.clone(), &w.node, *release)];
            actions.extend(
                ctx.cancellable(&w.node)
                    .into_iter()
                    .map(|job_id| Action::CancelJob {
                        job_id,
                        node: w.node.clone(),
                    }),
            );
            let when = match release.time() {
                None => "now, over jobs without a time limit".to_string(),
                Some(t) if t > now => t.to_string(),
                Some(_) => "now".to_string(),
            };
            transition(
                &mut status,
                Phase::Reserved,
                now,
                format!("reservation {name} starts {when}"),
            );
            status.reservation_name = Some(name);
            status.reservation_start = Some(release.time().unwrap_or(now).max(now));
            status.last_error = None;
            statuses.insert(w.name.as_str(), status.clone());
            push_update(&mut updates, w, status, actions);
            b = figures(&ctx, &work, &statuses);
            occupied = b.occupied().len();
            full_note = None;
            continue;
        } else {
            budget_exhausted = true;
            // The same for every candidate until the budget changes: made once.
            let why = full_note.get_or_insert_with(|| {
                let held = match s.held_for_oci {
                    0 => String::new(),
                    n => format!(", {n} held for OCI maintenance"),
                };
                format!(
                    "budget full: {occupied} of {} allowed nodes out{held}{}",
                    b.allowed,
                    held_by_others(&ctx, &b)
                )
            });
            waiting.insert(w.node.clone(), why.clone());
        }
        not_started.push((*release, w.node.clone()));
    }
    not_started.sort();
    let queue = not_started.iter().map(|(r, _)| *r).collect();
    let preview = not_started
        .into_iter()
        .take(PREVIEW_LEN)
        .map(|(r, node)| PlannedNode {
            waiting: waiting.get(&node).cloned(),
            node,
            release_time: r.time(),
        })
        .collect();

    Plan {
        budget: b,
        observed,
        new_work,
        updates,
        preview,
        waiting,
        blocked,
        budget_exhausted,
        nodes_needing_work: campaign_nodes.len(),
        queue,
        scope_matches_nothing: s.scope.is_some()
            && !snapshot.nodes.iter().any(|n| s.in_scope(&n.name)),
    }
}

fn push_update(
    updates: &mut Vec<WorkUpdate>,
    w: &Work,
    status: NodeMaintenanceStatus,
    actions: Vec<Action>,
) {
    match updates.iter_mut().find(|u| u.name == w.name) {
        Some(u) => {
            u.status = status;
            u.actions.extend(actions);
        }
        None => updates.push(WorkUpdate {
            name: w.name.clone(),
            node: w.node.clone(),
            status,
            actions,
        }),
    }
}

/// Budget figures given the planned statuses.
/// Which slots of a full budget nodes down or drained by others (not by our work) hold,
/// and why Slurm has them out: `""` when none does.
fn held_by_others(ctx: &Ctx<'_>, b: &BudgetFigures) -> String {
    let others: Vec<&String> = b
        .down
        .iter()
        .filter(|n| !b.unavailable.contains(*n))
        .collect();
    if others.is_empty() {
        return String::new();
    }
    let mut named: Vec<String> = others
        .iter()
        .take(3)
        .map(|n| {
            let node = ctx.nodes.get(n.as_str());
            match (node, node.and_then(|x| x.reason.as_deref())) {
                (Some(x), Some(r)) => format!("{n} ({}: {r})", x.state),
                (Some(x), None) => format!("{n} ({})", x.state),
                (None, _) => n.to_string(),
            }
        })
        .collect();
    if others.len() > 3 {
        named.push(format!("{} more", others.len() - 3));
    }
    format!(
        "; {} of them down or drained by others: {}",
        others.len(),
        named.join(", ")
    )
}

fn figures(
    ctx: &Ctx<'_>,
    work: &[&Work],
    statuses: &BTreeMap<&str, NodeMaintenanceStatus>,
) -> BudgetFigures {
    let s = ctx.s;
    let now = ctx.now;
    let horizon = now + s.lead_time;
    let in_partition = |n: &str| ctx.nodes.contains_key(n);
    let mut unavailable = BTreeSet::new();
    // MAINT reservations active or starting within the lead time — anyone's.
    for r in ctx.all_reservations {
        if r.is_maint() && r.start <= horizon && now < r.end {
            unavailable.extend(r.nodes.iter().filter(|n| in_partition(n)).cloned());
        }
    }
    let mut reserved_ahead = BTreeSet::new();
    for w in work {
        let st = &statuses[w.name.as_str()];
        if !in_partition(&w.node) {
            continue;
        }
        match st.phase {
            Phase::Reserved => {
                if st.reservation_start.is_none_or(|t| t <= horizon) {
                    unavailable.insert(w.node.clone());
                } else {
                    reserved_ahead.insert(w.node.clone());
                }
            }
            p if p.holds_node() => {
                unavailable.insert(w.node.clone());
            }
            _ => {}
        }
    }
    let down = ctx
        .nodes
        .values()
        .filter(|n| !n.state.in_service())
        .map(|n| n.name.clone())
        .collect();
    reserved_ahead.retain(|n| !unavailable.contains(n));
    BudgetFigures {
        total: ctx.nodes.len(),
        allowed: s.limit.allowed(ctx.nodes.len()),
        unavailable,
        down,
        reserved_ahead,
    }
}

/// Advance one in-flight NodeMaintenance; returns the actions to execute after its status
/// is written.
fn step(ctx: &Ctx<'_>, w: &Work, st: &mut NodeMaintenanceStatus) -> Vec<Action> {
    let s = ctx.s;
    let now = ctx.now;
    let resv_name = ctx.reservation_for(w);
    let resv = ctx.reservations.get(resv_name.as_str()).copied();
    let Some(node) = ctx.nodes.get(w.node.as_str()).copied() else {
        if st.phase.is_terminal() {
            return vec![];
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
        return resv
            .map(|_| Action::DeleteReservation { name: resv_name })
            .into_iter()
            .collect();
    };
    let delete_resv = || {
        resv.map(|_| Action::DeleteReservation {
            name: resv_name.clone(),
        })
    };
    let timed_out = st
        .reboot_issued_at
        .is_some_and(|t| now.duration_since(t) > s.reboot_timeout);
    let slurm_gave_up = node.state.base == "DOWN"
        && !node.state.is_rebooting()
        && node
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("reboot timed out"));
    // A new boot is newer than the one before and not older than the reboot (within the
    // clocks' skew): Slurm moves a BootTime by a second when a slurmd registers again
    // without rebooting (seen on 24.11), which is no reboot.
    let rebooted = match (st.boot_time_before, node.boot_time) {
        (Some(before), Some(after)) => {
            after > before
                && st
                    .reboot_issued_at
                    .is_none_or(|t| after + BOOT_CLOCK_SKEW >= t)
        }
        (None, Some(after)) => st.reboot_issued_at.is_some_and(|t| after >= t),
        _ => false,
    };

    // A campaign moved or withdrawn: work not yet started is no longer needed.
    if matches!(st.phase, Phase::Pending | Phase::Reserved)
        && !needs_reboot(node, s.reboot_required_before)
    {
        let why = match s.reboot_required_before {
            None => "campaign withdrawn (no rebootRequiredBefore)".to_string(),
            Some(_) => "node already booted after rebootRequiredBefore".to_string(),
        };
        transition(st, Phase::Completed, now, why);
        return delete_resv().into_iter().collect();
    }
    match st.phase {
        Phase::Pending | Phase::Completed | Phase::Failed => {
            // Terminal work keeps no reservation of ours behind.
            if st.phase.is_terminal() {
                delete_resv().into_iter().collect()
            } else {
                vec![]
            }
        }
        Phase::Reserved => {
            let release = ctx.release(&w.node);
            let mut actions = vec![];
            match resv {
                None => {
                    // Status said Reserved but Slurm has no reservation (a pass died between
                    // the two, or someone deleted it): create it again, same name.
                    actions.push(ctx.create_reservation(resv_name.clone(), &w.node, release));
                    st.reservation_start = Some(release.time().unwrap_or(now).max(now));
                    return actions;
                }
                Some(r) if r.start > now => {
                    let want = release.time().unwrap_or(now).max(now);
                    if want.duration_since(r.start).abs() > RETIME_TOLERANCE {
                        let start = (want > now).then_some(want);
                        actions.push(Action::UpdateReservationStart {
                            name: resv_name.clone(),
                            start,
                        });
                        st.reservation_start = Some(want);
                    }
                    return actions;
                }
                Some(_) => {}
            }
            // Reservation active: the node proceeds once its jobs are gone.
            let remaining: Vec<&Job> = ctx.jobs_on(&w.node).collect();
            if remaining.is_empty() {
                if s.reboots_enabled {
                    transition(
                        st,
                        Phase::PendingReboot,
                        now,
                        "reservation active and node empty",
                    );
                }
                return actions;
            }
            actions.extend(
                ctx.cancellable(&w.node)
                    .into_iter()
                    .map(|job_id| Action::CancelJob {
                        job_id,
                        node: w.node.clone(),
                    }),
            );
            actions
        }
        Phase::PendingReboot => {
            if !s.reboots_enabled {
                return vec![];
            }
            if ctx.jobs_on(&w.node).next().is_some() {
                // Someone started a job inside our reservation: wait for it.
                return vec![];
            }
            // A reboot already under way (one that was refused but ran anyway, or a
            // person's): never a second one on top.
            if node.state.is_rebooting() {
                return vec![];
            }
            // Slurm cannot reboot a node whose slurmd does not answer: wait for it to come
            // back by itself, then give up rather than spend attempts on it.
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
                st.last_error = Some(why.clone());
                let reason = format!("{REASON_PREFIX}{why}");
                transition(st, Phase::Failed, now, reason.clone());
                let mut actions = vec![Action::Drain {
                    node: w.node.clone(),
                    reason,
                }];
                actions.extend(delete_resv());
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
        Phase::Rebooting | Phase::Recovering => {
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
                return complete(st, now, delete_resv());
            }
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
                return fail_attempt(st, w, now, s.max_attempts, why, delete_resv());
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
        Phase::HealthCheck => match ctx.health.get(&w.node) {
            None => vec![],
            Some(h) if h.healthy => {
                let since = st.phase_since.unwrap_or(now);
                if now.duration_since(since) >= s.settle_time {
                    complete(st, now, delete_resv())
                } else {
                    vec![]
                }
            }
            Some(h) => {
                let reason = format!(
                    "slurm-maint: health check failed after reboot: {}",
                    h.message
                );
                st.last_error = Some(reason.clone());
                transition(st, Phase::Failed, now, reason.clone());
                let mut actions = vec![Action::Drain {
                    node: w.node.clone(),
                    reason,
                }];
                actions.extend(delete_resv());
                actions
            }
        },
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
    let actions = fail_attempt(
        &mut st,
        w,
        now,
        max_attempts,
        format!("reboot refused: {why}"),
        None,
    );
    (st, actions)
}

/// When all work on a node has ended and some of it completed, no reason of ours stays on
/// the node once it is back in service (Slurm 24.11 keeps the reason of a reboot or a
/// drain after the node returns). The action rides on the node's last completed work.
fn clear_stale_reasons(
    ctx: &Ctx<'_>,
    work: &[&Work],
    statuses: &BTreeMap<&str, NodeMaintenanceStatus>,
    updates: &mut Vec<WorkUpdate>,
) {
    let mut last_completed: BTreeMap<&str, &Work> = BTreeMap::new();
    let mut active: BTreeSet<&str> = BTreeSet::new();
    for w in work {
        match statuses[w.name.as_str()].phase {
            Phase::Completed => {
                last_completed.insert(w.node.as_str(), w);
            }
            Phase::Failed => {}
            _ => {
                active.insert(w.node.as_str());
            }
        }
    }
    for (node, w) in last_completed {
        let stale = ctx
            .nodes
            .get(node)
            .is_some_and(|n| carries_our_stale_reason(n));
        if active.contains(node) || !stale {
            continue;
        }
        let action = Action::ClearReason {
            node: node.to_string(),
        };
        match updates.iter_mut().find(|u| u.name == w.name) {
            Some(u) => u.actions.push(action),
            None => updates.push(WorkUpdate {
                name: w.name.clone(),
                node: w.node.clone(),
                status: statuses[w.name.as_str()].clone(),
                actions: vec![action],
            }),
        }
    }
}

/// A node in service (not drained, not down) whose reason is still ours.
fn carries_our_stale_reason(node: &Node) -> bool {
    node.state.in_service()
        && !node.state.is_drained()
        && node
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with(REASON_PREFIX))
}

fn complete(st: &mut NodeMaintenanceStatus, now: Timestamp, delete: Option<Action>) -> Vec<Action> {
    transition(st, Phase::Completed, now, "rebooted and healthy");
    st.last_error = None;
    delete.into_iter().collect()
}

fn fail_attempt(
    st: &mut NodeMaintenanceStatus,
    w: &Work,
    now: Timestamp,
    max_attempts: u32,
    why: String,
    delete: Option<Action>,
) -> Vec<Action> {
    st.last_error = Some(why.clone());
    st.reboot_issued_at = None;
    if st.attempts < max_attempts {
        transition(
            st,
            Phase::PendingReboot,
            now,
            format!("attempt {} failed: {why}", st.attempts),
        );
        return vec![];
    }
    let reason = format!(
        "slurm-maint: reboot failed after {} attempts: {why}",
        st.attempts
    );
    transition(st, Phase::Failed, now, reason.clone());
    let mut actions = vec![Action::Drain {
        node: w.node.clone(),
        reason,
    }];
    actions.extend(delete);
    actions
}

#[cfg(test)]
mod tests;
