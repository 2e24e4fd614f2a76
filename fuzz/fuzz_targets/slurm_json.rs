//! `sinfo --json` and `squeue --json` (every layout from 22.05 to 26.05): never a panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use slurm_maint::slurm::parse;

fuzz_target!(|data: &[u8]| {
    let Some(text) = common::text(data) else {
        return;
    };
    if let Ok(nodes) = parse::sinfo_json(text) {
        for n in nodes {
            let _ = (n.state.in_service(), n.state.is_drained());
        }
    }
    if let Ok(jobs) = parse::squeue_json(text, &common::preempting()) {
        for j in jobs {
            assert!(j.time_limit_secs.is_some() || j.end_time.is_none(), "{j:?}");
        }
    }
});
