//! Slurm's network topology: the switches of `topology/tree` and the blocks of
//! `topology/block` (23.11+), as `scontrol show topology` prints them. Jobs that need a
//! whole domain (an NVLink rack, a leaf switch, a block) lose it when one node is out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What `scontrol show topology` said: switches and/or blocks (empty with
/// `topology/flat` or no topology configured).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub switches: Vec<Switch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<Block>,
}

/// One switch of `topology/tree`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Switch {
    pub name: String,
    /// 0 for a leaf switch, one more per level up.
    pub level: u32,
    /// Nodes as Slurm lists them for the switch, expanded (for upper levels, Slurm
    /// may list every node below, or none).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Child switches, expanded.
    #[serde(default)]
    pub switches: Vec<String>,
}

/// One block of `topology/block`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    pub name: String,
    /// Nodes of the block, expanded.
    pub nodes: Vec<String>,
}

impl Topology {
    /// Node → the switch at `level` above it: the nodes of a switch at that level are
    /// those it lists, and those of every switch below it.
    pub fn switch_domains(&self, level: u32) -> BTreeMap<String, String> {
        let by_name: BTreeMap<&str, &Switch> =
            self.switches.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut out = BTreeMap::new();
        for s in self.switches.iter().filter(|s| s.level == level) {
            let mut stack = vec![s];
            let mut seen = std::collections::BTreeSet::new();
            while let Some(sw) = stack.pop() {
                if !seen.insert(sw.name.as_str()) {
                    continue;
                }
                for n in &sw.nodes {
                    out.entry(n.clone()).or_insert_with(|| s.name.clone());
                }
                stack.extend(sw.switches.iter().filter_map(|c| by_name.get(c.as_str())));
            }
        }
        out
    }

    /// Node → its block.
    pub fn block_domains(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for b in &self.blocks {
            for n in &b.nodes {
                out.entry(n.clone()).or_insert_with(|| b.name.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sw(name: &str, level: u32, nodes: &[&str], switches: &[&str]) -> Switch {
        Switch {
            name: name.into(),
            level,
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            switches: switches.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_switch_level_groups_every_node_below_it() {
        let t = Topology {
            switches: vec![
                sw("s0", 0, &["n1", "n2"], &[]),
                sw("s1", 0, &["n3", "n4"], &[]),
                sw("s2", 0, &["n5"], &[]),
                sw("top", 1, &[], &["s0", "s1"]),
                sw("top2", 1, &[], &["s2"]),
            ],
            blocks: vec![],
        };
        let leaf = t.switch_domains(0);
        assert_eq!(leaf["n1"], "s0");
        assert_eq!(leaf["n4"], "s1");
        let up = t.switch_domains(1);
        assert_eq!(up["n1"], "top");
        assert_eq!(up["n4"], "top");
        assert_eq!(up["n5"], "top2");
        assert!(t.switch_domains(2).is_empty());
    }

    #[test]
    fn blocks_map_their_nodes() {
        let t = Topology {
            switches: vec![],
            blocks: vec![Block {
                name: "b1".into(),
                nodes: vec!["n1".into(), "n2".into()],
            }],
        };
        assert_eq!(t.block_domains()["n2"], "b1");
    }
}
