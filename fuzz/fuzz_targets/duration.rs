//! Policy durations (`1h30m`): never a panic; what parses prints in a canonical form that
//! parses back to the same value, as JSON too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slurm_maint::api::duration::Duration;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(d) = s.parse::<Duration>() else {
        return;
    };
    let printed = d.to_string();
    assert_eq!(
        printed.parse::<Duration>(),
        Ok(d),
        "{s:?} printed {printed:?}"
    );
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(
        serde_json::from_str::<Duration>(&json).unwrap(),
        d,
        "{json}"
    );
});
