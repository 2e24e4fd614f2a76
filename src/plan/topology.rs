//! Topology-aware budgets (`spec.budget.topology`): which domain each node is in, from
//! Slurm's switches or blocks or a node feature, and how the budget treats domains —
//! `Spread` caps the nodes out in any one domain, `WholeDomain` takes a domain's nodes
//! together under one reservation and returns the domain whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SpecError;
use crate::api::policy::{
    BudgetTopology, DomainFigures, DomainSourceKind, TopologyModeKind, TopologyStatus,
};
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

impl TopologySettings {
    /// Validate `spec.budget.topology` (the CRD's CEL rules, again for any other caller).
    pub fn from_spec(t: &BudgetTopology) -> Result<Self, SpecError> {
        let source = match (t.source, t.switch_level, t.feature_prefix.as_deref()) {
            (DomainSourceKind::SlurmSwitches, level, None) => DomainSource::SlurmSwitches {
                level: level.unwrap_or(0),
            },
            (DomainSourceKind::SlurmBlocks, None, None) => DomainSource::SlurmBlocks,
            (DomainSourceKind::NodeFeature, None, Some(p)) if !p.is_empty() => {
                DomainSource::NodeFeature { prefix: p.into() }
            }
            (DomainSourceKind::NodeFeature, _, _) => {
                return Err(SpecError::Topology(
                    "source NodeFeature needs featurePrefix (and no switchLevel)",
                ));
            }
            (_, Some(_), _) => {
                return Err(SpecError::Topology(
                    "switchLevel applies to source SlurmSwitches only",
                ));
            }
            (_, _, Some(_)) => {
                return Err(SpecError::Topology(
                    "featurePrefix applies to source NodeFeature only",
                ));
            }
        };
        let mode = match (t.mode, t.max_unavailable_per_domain) {
            (TopologyModeKind::Spread, Some(0)) => {
                return Err(SpecError::Topology(
                    "maxUnavailablePerDomain must be at least 1",
                ));
            }
            (TopologyModeKind::Spread, n) => TopologyMode::Spread {
                max_per_domain: n.unwrap_or(1),
            },
            (TopologyModeKind::WholeDomain, None) => TopologyMode::WholeDomain,
            (TopologyModeKind::WholeDomain, Some(_)) => {
                return Err(SpecError::Topology(
                    "maxUnavailablePerDomain applies to mode Spread only",
                ));
            }
        };
        Ok(Self { source, mode })
    }

    /// What the source found nothing of, for the message that holds new work.
    pub fn nothing_found(&self) -> String {
        match &self.source {
            DomainSource::SlurmSwitches { level } => {
                format!("Slurm reports no switch at level {level} (topology/tree)")
            }
            DomainSource::SlurmBlocks => "Slurm reports no blocks (topology/block)".into(),
            DomainSource::NodeFeature { prefix } => {
                format!("no node of the partition has a feature starting with {prefix:?}")
            }
        }
    }
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

/// Most domains listed by name in status.
const LISTED: usize = 64;

/// Per-domain figures for status: out now (maintenance ∪ down) and committed ahead.
pub fn figures(
    t: &TopologySettings,
    domain_of: &BTreeMap<String, String>,
    snapshot: &super::Snapshot,
    b: &super::BudgetFigures,
) -> TopologyStatus {
    let mut per: BTreeMap<&str, DomainFigures> = BTreeMap::new();
    let mut unplaced = 0;
    let out = b.combined();
    for n in &snapshot.nodes {
        let Some(d) = domain_of.get(&n.name) else {
            unplaced += 1;
            continue;
        };
        let f = per.entry(d.as_str()).or_insert_with(|| DomainFigures {
            name: d.clone(),
            ..Default::default()
        });
        f.total += 1;
        if out.contains(&n.name) {
            f.out += 1;
        } else if b.reserved_ahead.contains(&n.name) {
            f.committed += 1;
        }
    }
    let (mode, allowed_per_domain) = match t.mode {
        TopologyMode::Spread { max_per_domain } => ("Spread", max_per_domain),
        TopologyMode::WholeDomain => (
            "WholeDomain",
            per.values().map(|f| f.total).max().unwrap_or(0),
        ),
    };
    TopologyStatus {
        mode: mode.into(),
        domains: per.len() as u32,
        domains_out: per.values().filter(|f| f.out > 0).count() as u32,
        max_out_in_a_domain: per.values().map(|f| f.out).max().unwrap_or(0),
        allowed_per_domain,
        unplaced,
        busy: per
            .into_values()
            .filter(|f| f.out > 0 || f.committed > 0)
            .take(LISTED)
            .collect(),
    }
}
