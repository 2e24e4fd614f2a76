//! `scontrol show job -o` output: never a panic; a job without a time limit has no end.
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
        if let Ok(jobs) = parse::scontrol_jobs(text, tz, &common::preempting()) {
            for j in jobs {
                assert!(j.time_limit_secs.is_some() || j.end_time.is_none(), "{j:?}");
            }
        }
    }
});
