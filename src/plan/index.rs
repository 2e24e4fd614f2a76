//! The facts of one pass, indexed for the planner: nodes, jobs and reservations by name,
//! and the budget figures they give with a set of planned statuses.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::release::{self, Release};
use super::{Action, BudgetFigures, HealthResult, Settings, Snapshot, Work, reservation_name};
use crate::api::NodeMaintenanceStatus;
use crate::api::node_maintenance::{MaintenanceAction, NodeMaintenancePhase as Phase};
use crate::slurm::{Job, Node, Reservation};

/// One pass's facts, indexed.
pub(super) struct Ctx<'a> {
    pub s: &'a Settings,
    pub now: Timestamp,
    pub nodes: BTreeMap<&'a str, &'a Node>,
    jobs: BTreeMap<&'a str, Vec<&'a Job>>,
    pub reservations: BTreeMap<&'a str, &'a Reservation>,
    all_reservations: &'a [Reservation],
    /// Reservations not ours, by node.
    foreign: BTreeMap<&'a str, Vec<&'a Reservation>>,
    pub health: &'a BTreeMap<String, HealthResult>,
    /// `<prefix>-`: the start of our reservations' names.
    ours: String,
    /// Node → domain under `budget.topology` (nodes the source places).
    pub domain_of: BTreeMap<String, String>,
    /// `budget.topology` is set but its source found no domain: why.
    pub topology_gap: Option<String>,
    /// Our reservations held by several works (a domain taken whole): name → the
    /// works' nodes and whether each has ended.
    pub shared: BTreeMap<String, Vec<(String, bool)>>,
}

impl<'a> Ctx<'a> {
    pub fn new(s: &'a Settings, snapshot: &'a Snapshot, now: Timestamp) -> Self {
        let mut ctx = Ctx {
            s,
            now,
            nodes: BTreeMap::new(),
            jobs: BTreeMap::new(),
            reservations: BTreeMap::new(),
            all_reservations: &snapshot.reservations,
            foreign: BTreeMap::new(),
            health: &snapshot.health,
            ours: format!("{}-", s.reservation.prefix),
            domain_of: BTreeMap::new(),
            topology_gap: None,
            shared: BTreeMap::new(),
        };
        if let Some(t) = &s.topology {
            ctx.domain_of =
                super::topology::domains(&t.source, snapshot.topology.as_ref(), &snapshot.nodes);
            if ctx.domain_of.is_empty() {
                ctx.topology_gap = Some(t.nothing_found());
            }
        }
        for r in &snapshot.reservations {
            ctx.reservations.insert(r.name.as_str(), r);
            if !r.name.starts_with(&ctx.ours) {
                for n in &r.nodes {
                    ctx.foreign.entry(n.as_str()).or_default().push(r);
                }
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
        ctx
    }

    /// Every reservation Slurm has, ours and others'.
    pub fn all_reservations(&self) -> &'a [Reservation] {
        self.all_reservations
    }

    pub fn jobs_on(&self, node: &str) -> impl Iterator<Item = &'a Job> + '_ {
        self.jobs
            .get(node)
            .into_iter()
            .flatten()
            .copied()
            .filter(|j| j.is_active())
    }

    pub fn busy(&self, node: &str) -> bool {
        self.jobs_on(node).next().is_some()
    }

    pub fn release(&self, node: &str) -> Release {
        release::release_time(
            self.jobs_on(node),
            self.now,
            self.s.terminate_preemptable,
            &self.s.preemptable_qos,
        )
    }

    /// Cancels of the preemptable jobs holding `node` (none unless termination is on).
    pub fn cancels(&self, node: &str) -> Vec<Action> {
        release::jobs_to_cancel(
            self.jobs_on(node),
            self.s.terminate_preemptable,
            &self.s.preemptable_qos,
        )
        .into_iter()
        .map(|job_id| Action::CancelJob {
            job_id,
            node: node.to_string(),
        })
        .collect()
    }

    /// Note which of our reservations several works hold (`WholeDomain`).
    pub fn share(&mut self, work: &[&Work]) {
        let mut by: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
        for w in work {
            if let Some(name) = &w.status.reservation_name {
                by.entry(name.clone())
                    .or_default()
                    .push((w.node.clone(), w.status.phase.is_terminal()));
            }
        }
        by.retain(|_, v| v.len() > 1);
        for v in by.values_mut() {
            v.sort();
        }
        self.shared = by;
    }

    /// The other nodes of the work's reservation, when a domain shares it.
    pub fn sharing(&self, w: &Work) -> Option<&[(String, bool)]> {
        let name = w.status.reservation_name.as_deref()?;
        self.shared.get(name).map(Vec::as_slice)
    }

    /// The domain of `node` under `budget.topology`, if any places it.
    pub fn domain(&self, node: &str) -> Option<&str> {
        self.domain_of.get(node).map(String::as_str)
    }

    /// Our reservation over a whole domain's `nodes` (the first named `node` in the
    /// action, the rest `with`).
    pub fn create_domain_reservation(
        &self,
        name: String,
        nodes: &[&str],
        release: Release,
    ) -> Action {
        let mut a = self.create_reservation(name, nodes[0], release);
        if let Action::CreateReservation {
            with, flags, start, ..
        } = &mut a
        {
            with.extend(nodes[1..].iter().map(|n| n.to_string()));
            let busy = start.is_none() && nodes.iter().any(|n| self.busy(n));
            if busy && !flags.iter().any(|f| f == "IGNORE_JOBS") {
                flags.push("IGNORE_JOBS".into());
            }
        }
        a
    }

    pub fn reservation_for(&self, w: &Work) -> String {
        w.status.reservation_name.clone().unwrap_or_else(|| {
            reservation_name(&self.s.reservation.prefix, &w.node, w.campaign.as_deref())
        })
    }

    /// Someone else's reservation on `node` that ours (starting at `release`) would
    /// overlap. Such nodes are left alone: Slurm would refuse the overlap, and another
    /// party is working on the node.
    pub fn foreign_conflict(&self, node: &str, release: Release) -> Option<&'a Reservation> {
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

    pub fn create_reservation(&self, name: String, node: &str, release: Release) -> Action {
        let start = release.time().filter(|t| *t > self.now);
        let mut flags = self.s.reservation.flags.clone();
        // Over running jobs (with no time limit, or preemptable ones cancelled when it
        // starts — which may land before it does, and a move must not be refused for
        // them): Slurm needs IGNORE_JOBS; the jobs keep running, nothing new lands.
        let over_jobs = (start.is_none() && self.busy(node)) || self.s.terminate_preemptable;
        if over_jobs && !flags.iter().any(|f| f == "IGNORE_JOBS") {
            flags.push("IGNORE_JOBS".into());
        }
        Action::CreateReservation {
            name,
            node: node.to_string(),
            with: vec![],
            start,
            duration: self.s.reservation.duration,
            users: self.s.reservation.users.clone(),
            accounts: self.s.reservation.accounts.clone(),
            flags,
        }
    }

    /// Budget figures given the planned statuses: nodes out now, and nodes committed to
    /// a MAINT reservation that has not started (ours, or anyone's within the lead time).
    pub fn figures(
        &self,
        work: &[&Work],
        statuses: &BTreeMap<&str, NodeMaintenanceStatus>,
    ) -> BudgetFigures {
        let now = self.now;
        let horizon = now + self.s.lead_time;
        let in_partition = |n: &str| self.nodes.contains_key(n);
        let mut unavailable = BTreeSet::new();
        let mut reserved_ahead = BTreeSet::new();
        for r in self.all_reservations {
            if !r.is_maint() || now >= r.end {
                continue;
            }
            let nodes = r.nodes.iter().filter(|n| in_partition(n)).cloned();
            if r.start <= now {
                unavailable.extend(nodes);
            } else if r.start <= horizon && !r.name.starts_with(&self.ours) {
                reserved_ahead.extend(nodes);
            }
        }
        for w in work.iter().filter(|w| in_partition(&w.node)) {
            let st = &statuses[w.name.as_str()];
            match st.phase {
                Phase::Reserved if st.reservation_start.is_some_and(|t| t > now) => {
                    reserved_ahead.insert(w.node.clone());
                }
                p if p.holds_node() || p == Phase::Reserved => {
                    unavailable.insert(w.node.clone());
                }
                // Ended: its reservation, if still there, counts above as it stands.
                _ => {}
            }
        }
        let down = self
            .nodes
            .values()
            .filter(|n| !n.state.in_service())
            .map(|n| n.name.clone())
            .collect();
        reserved_ahead.retain(|n| !unavailable.contains(n));
        BudgetFigures {
            total: self.nodes.len(),
            allowed: self.s.limit.allowed(self.nodes.len()),
            unavailable,
            down,
            reserved_ahead,
        }
    }

    /// Why a full budget is full, past the count: how many of the nodes out OCI work holds,
    /// and which nodes down or drained by others (not by our work) hold slots.
    pub fn full_note(
        &self,
        b: &BudgetFigures,
        work: &[&Work],
        statuses: &BTreeMap<&str, NodeMaintenanceStatus>,
    ) -> String {
        let oci = work
            .iter()
            .filter(|w| w.action == MaintenanceAction::OciMaintenance)
            .filter(|w| b.unavailable.contains(&w.node))
            .filter(|w| !statuses[w.name.as_str()].phase.is_terminal())
            .count();
        let held = match oci {
            0 => String::new(),
            n => format!(", {n} held for OCI maintenance"),
        };
        format!("{held}{}", self.held_by_others(b))
    }

    fn held_by_others(&self, b: &BudgetFigures) -> String {
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
                let node = self.nodes.get(n.as_str());
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
}
