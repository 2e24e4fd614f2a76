//! `scontrol show reservation -o` output: never a panic; every reservation has a name.
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
        if let Ok(reservations) = parse::scontrol_reservations(text, tz) {
            for r in reservations {
                assert!(!r.name.is_empty(), "{r:?}");
                let _ = (r.is_maint(), r.is_active_at(jiff::Timestamp::UNIX_EPOCH));
            }
        }
    }
});
