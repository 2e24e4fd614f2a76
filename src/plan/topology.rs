//! Topology-aware budgets (`spec.budget.topology`): which domain each node is in, from
//! Slurm's switches or blocks or a node feature, and how the budget treats domains —
//! `Spread` caps the nodes out in any one domain, `WholeDomain` takes a domain's nodes
//! together under one reservation and returns the domain whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::slurm::Node;
use crate::slurm::topology::Topology;

/// Where the domains come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainSource {
    /// `topology/tree`: the switch at this level above each node (0: leaf switches).
    SlurmSwitches { level: u32 },
    /// `topology/block`: each node's block.
    SlurmBlocks,
    /// The node's first feature starting with this prefix (e.g. `rack-`).
    NodeFeature { prefix: String },
}

/// How the budget treats domains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopologyMode {
    /// At most this many nodes out in any one domain, on top of the partition budget.
    Spread { max_per_domain: u32 },
    /// A domain's nodes are taken together, rebooted together and returned whole.
    WholeDomain,
}

/// `spec.budget.topology`, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologySettings {
    pub source: DomainSource,
    pub mode: TopologyMode,
}

/// Node → domain, for the nodes the source places; a node it does not place is a
/// domain of its own (it constrains nothing but itself).
pub fn domains(
    source: &DomainSource,
    topology: Option<&Topology>,
    nodes: &[Node],
) -> BTreeMap<String, String> {
    match source {
        DomainSource::SlurmSwitches { level } => topology
            .map(|t| t.switch_domains(*level))
            .unwrap_or_default(),
        DomainSource::SlurmBlocks => topology.map(Topology::block_domains).unwrap_or_default(),
        DomainSource::NodeFeature { prefix } => nodes
            .iter()
            .filter_map(|n| {
                let f = n.features.iter().find(|f| f.starts_with(prefix.as_str()))?;
                Some((n.name.clone(), f.clone()))
            })
            .collect(),
    }
}
