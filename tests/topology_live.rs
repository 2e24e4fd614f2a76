//! Topology on real Slurm: the agent's snapshot carries the topology of the cluster
//! `tests/slurm/cluster.sh` (22.05) or `tests/slurm/chroot.sh` (24.11, 26.05) started with
//! `SLURM_TOPOLOGY=tree|block` (domains of 2 nodes: leaf1..leaf3 under spine, or
//! block1..block3; Features rack-a..rack-c). Runs when `SLURM_MAINT_LIVE=1`; the topology
//! expected is the one `SLURM_TOPOLOGY` names (none when unset).

use std::collections::BTreeMap;

mod common;

use slurm_maint::slurm::client::SlurmClient;

const TOKEN: &str = "topology-live-token";

/// `SLURM_TOPOLOGY` as the cluster was started with it.
fn topology_kind() -> String {
    std::env::var("SLURM_TOPOLOGY").unwrap_or_default()
}

/// node1..node6 → the cluster's domain of each, named `{prefix}1..3` or `rack-a..c`.
fn pairs(name: impl Fn(usize) -> String) -> BTreeMap<String, String> {
    (1..=6usize)
        .map(|i| (format!("node{i}"), name(i.div_ceil(2))))
        .collect()
}

#[tokio::test]
async fn the_agents_snapshot_has_slurms_topology() {
    if !common::live() {
        return;
    }
    let kind = topology_kind();
    let (_agent, _url, client) = common::start_agent(TOKEN).await;
    let snap = client.snapshot("batch").await.unwrap();
    let features: BTreeMap<String, String> = snap
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.features.join(",")))
        .collect();
    match kind.as_str() {
        "" => {
            assert_eq!(snap.topology, None, "a cluster without a topology");
            assert!(features.values().all(String::is_empty), "{features:?}");
            return;
        }
        "tree" | "block" => {}
        other => panic!("SLURM_TOPOLOGY={other}: tree, block or unset"),
    }
    let t = snap
        .topology
        .clone()
        .unwrap_or_else(|| panic!("SLURM_TOPOLOGY={kind} but the snapshot has no topology"));
    assert_eq!(
        features,
        pairs(|d| format!("rack-{}", (b'a' + d as u8 - 1) as char))
    );
    if kind == "tree" {
        assert!(t.blocks.is_empty(), "{t:?}");
        assert_eq!(t.switch_domains(0), pairs(|d| format!("leaf{d}")), "{t:?}");
        assert_eq!(t.switch_domains(1), pairs(|_| "spine".into()), "{t:?}");
    } else {
        assert!(t.switches.is_empty(), "{t:?}");
        assert_eq!(t.block_domains(), pairs(|d| format!("block{d}")), "{t:?}");
    }
    // Cached: the next snapshots read no topology, and give the same.
    for partition in ["batch", "debug"] {
        let again = client.snapshot(partition).await.unwrap();
        assert_eq!(again.topology.as_ref(), Some(&t), "{partition}");
    }
}
