//! The campaign around the state machine: which nodes need a NodeMaintenance (seed:
//! "nodes booted before rebootRequiredBefore"), budget given back when nodes go down
//! elsewhere, and no reason of ours left on a node whose work is done.

use std::collections::{BTreeMap, BTreeSet};

use super::index::Ctx;
use super::{
    Action, NewWork, REASON_PREFIX, Snapshot, Work, WorkUpdate, campaign_id, needs_reboot,
    work_name,
};
use crate::api::NodeMaintenanceStatus;
use crate::api::node_maintenance::{MaintenanceAction, NodeMaintenancePhase as Phase};
use crate::slurm::Node;

/// The NodeMaintenances to create for nodes new to the campaign, and how many nodes the
/// campaign has (needing work or done with it).
pub(super) fn new_work(
    policy: &str,
    ctx: &Ctx<'_>,
    snapshot: &Snapshot,
    work: &[&Work],
    statuses: &BTreeMap<&str, NodeMaintenanceStatus>,
) -> (Vec<NewWork>, usize) {
    let s = ctx.s;
    let current_campaign = s.reboot_required_before.map(campaign_id);
    let mut campaign_nodes = BTreeSet::new();
    let mut has_work: BTreeSet<&str> = BTreeSet::new();
    for w in work {
        let current = w.action == MaintenanceAction::Reboot
            && w.campaign.as_deref() == current_campaign.as_deref();
        if !statuses[w.name.as_str()].phase.is_terminal() || current {
            has_work.insert(w.node.as_str());
        }
        if current {
            campaign_nodes.insert(w.node.as_str());
        }
    }
    let mut new_work = vec![];
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
    (new_work, campaign_nodes.len())
}

/// When all work on a node has ended and some of it completed, no reason of ours stays on
/// the node once it is back in service (Slurm 24.11 keeps the reason of a reboot or a
/// drain after the node returns). The action rides on the node's last completed work.
pub(super) fn clear_stale_reasons(
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
