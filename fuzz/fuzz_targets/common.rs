//! Shared by the targets (each includes it with `#[path]`).
#![allow(dead_code)]

use std::sync::OnceLock;

use jiff::tz::TimeZone;

/// UTC, and a zone with daylight saving time (its gaps and folds are where local times
/// go wrong).
pub fn zones() -> &'static [TimeZone] {
    static ZONES: OnceLock<Vec<TimeZone>> = OnceLock::new();
    ZONES.get_or_init(|| {
        let mut zones = vec![TimeZone::UTC];
        zones.extend(TimeZone::get("America/New_York").ok());
        zones
    })
}

/// Partitions whose jobs are preemptable, as the agent passes them.
pub fn preempting() -> Vec<String> {
    vec!["scavenger".into()]
}

/// The input as text, if it is UTF-8 (Slurm's output reaches the parsers as `String`).
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
