//! `scontrol show topology` output: never a panic; the domain maps name only switches,
//! blocks and nodes the output lists, even for switches that list each other in a cycle.
#![no_main]

#[path = "common.rs"]
mod common;

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use slurm_maint::slurm::parse;

fuzz_target!(|data: &[u8]| {
    let Some(text) = common::text(data) else {
        return;
    };
    let Ok(t) = parse::scontrol_topology(text) else {
        return;
    };
    let mut nodes: BTreeSet<&str> = BTreeSet::new();
    for s in &t.switches {
        assert!(!s.name.is_empty(), "{s:?}");
        nodes.extend(s.nodes.iter().map(String::as_str));
    }
    for b in &t.blocks {
        assert!(!b.name.is_empty(), "{b:?}");
    }
    let levels: BTreeSet<u32> = t.switches.iter().map(|s| s.level).collect();
    for level in levels {
        for (node, switch) in t.switch_domains(level) {
            assert!(nodes.contains(node.as_str()), "{node} is in no switch");
            assert!(
                t.switches
                    .iter()
                    .any(|s| s.name == switch && s.level == level),
                "{switch} is no switch of level {level}"
            );
        }
    }
    for (node, block) in t.block_domains() {
        assert!(
            t.blocks
                .iter()
                .any(|b| b.name == block && b.nodes.contains(&node)),
            "{node} not in {block}"
        );
    }
});
