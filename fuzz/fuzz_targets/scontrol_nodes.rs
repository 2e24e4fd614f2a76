//! `scontrol show node -o` output: never a panic; every node has a name.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use slurm_maint::slurm::parse;

fuzz_target!(|data: &[u8]| {
    let Some(text) = common::text(data) else {
        return;
    };
    for tz in common::zones() {
        if let Ok(nodes) = parse::scontrol_nodes(text, tz) {
            for n in nodes {
                assert!(!n.name.is_empty() && !parse::is_null(&n.name), "{n:?}");
            }
        }
    }
});
