//! The agent's validators: never a panic; what they accept holds nothing a command line
//! could misread; free text made boring is accepted as a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slurm_maint::agent::validate::{self, MAX_NAME, MAX_REASON};
use slurm_maint::oci::approve;

fn name_ok(s: &str) -> bool {
    (1..=MAX_NAME).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !s.starts_with(['-', '.'])
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let s = s.as_ref();
    for check in [
        validate::node_name,
        validate::reservation_name,
        validate::partition_name,
        validate::user_name,
        validate::account_name,
    ] {
        if let Ok(v) = check(s) {
            assert!(name_ok(v), "accepted name {v:?}");
        }
    }
    assert_eq!(
        approve::valid_node_name(s),
        validate::node_name(s).is_ok(),
        "the OCI host mapping and the agent disagree on node name {s:?}"
    );
    if let Ok(names) = validate::hostlist(s) {
        assert!(!names.is_empty());
        assert!(names.iter().all(|n| name_ok(n)), "{s:?} → {names:?}");
    }
    if let Ok(id) = validate::job_id(s) {
        assert!(
            id > 0 && s.trim_start_matches('0') == id.to_string(),
            "{s:?} → {id}"
        );
    }
    if let Ok(f) = validate::flag(s) {
        assert!(
            f.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
            "{f:?}"
        );
    }
    if let Ok(r) = validate::reason(s) {
        assert!(
            r.len() <= MAX_REASON
                && r.bytes().all(|b| (b' '..=b'~').contains(&b))
                && !r.contains(['\'', '"', '`', '$', ';', '|', '&', '\\'])
                && !r.trim().is_empty(),
            "accepted reason {r:?}"
        );
    }
    let boring = validate::boring_text(s, 200);
    assert!(boring.chars().count() <= 200);
    if !boring.is_empty() {
        validate::reason(&boring)
            .unwrap_or_else(|e| panic!("boring_text({s:?}) = {boring:?}: {e}"));
    }
    assert_eq!(
        validate::boring_text(&boring, 200),
        boring,
        "not idempotent on {s:?}"
    );
});
