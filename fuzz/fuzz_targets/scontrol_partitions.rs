//! `scontrol show partition -o` output: never a panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use slurm_maint::slurm::parse;

fuzz_target!(|data: &[u8]| {
    let Some(text) = common::text(data) else {
        return;
    };
    if let Ok(partitions) = parse::scontrol_partitions(text) {
        for p in &partitions {
            assert!(!p.name.is_empty(), "{p:?}");
        }
        let preempting = parse::preempting_partitions(&partitions);
        assert!(preempting.len() <= partitions.len());
    }
});
