//! `hostlist::expand` never panics; what it accepts compresses to a canonical hostlist
//! that expands to the same names.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use slurm_maint::slurm::hostlist::{MAX_HOSTS, compress, expand};

fuzz_target!(|data: &[u8]| {
    let Ok(expr) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(names) = expand(expr) else {
        return;
    };
    assert!(names.len() <= MAX_HOSTS, "{} names", names.len());
    for n in &names {
        assert!(
            !n.is_empty() && !n.contains([',', '[', ']']),
            "{expr:?} gave name {n:?}"
        );
    }
    let compressed = compress(&names);
    let again = expand(&compressed)
        .unwrap_or_else(|e| panic!("compress({expr:?}) = {compressed:?} does not expand: {e}"));
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(
        set(&names),
        set(&again),
        "{expr:?} → {compressed:?} names differ"
    );
    assert_eq!(
        compress(&again),
        compressed,
        "compress is not canonical for {expr:?}"
    );
});
