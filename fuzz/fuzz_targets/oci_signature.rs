//! The OCI request-signature header parser, HTTP dates, JWTs and the OCI config file:
//! never a panic; parsed dates print and parse back to the same instant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slurm_maint::oci::{auth, config, sign};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = sign::parse_authorization(s) {
        for h in &parsed.headers {
            assert!(
                !h.is_empty() && !h.contains(char::is_whitespace) && *h == h.to_ascii_lowercase(),
                "{h:?}"
            );
        }
    }
    if let Some(t) = sign::parse_http_date(s) {
        let printed = sign::http_date(t);
        assert_eq!(
            sign::parse_http_date(&printed),
            Some(t),
            "{s:?} → {printed:?}"
        );
    }
    let _ = auth::parse_jwt(s);
    let _ = config::profile_entries(s, "DEFAULT");
});
