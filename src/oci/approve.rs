//! Pure decisions about OCI maintenance events: fault codes from `additionalDetails`,
//! the instance → Slurm host mapping, enum sanity, and approval (exact fault-code match,
//! excluded hosts, a daily schedule cap, not redoing processed events). No I/O.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::model::{Instance, InstanceMaintenanceEvent};
use crate::api::policy::{HostMapping, HostMappingSource, OciSettings};

/// Approval reasons (the `status.approval.reason` vocabulary).
pub mod reason {
    /// An approved fault code matched.
    pub const APPROVED_FAULT_CODE: &str = "ApprovedFaultCode";
    /// No fault code of the event is approved.
    pub const NO_APPROVED_FAULT_CODE: &str = "NoApprovedFaultCode";
    /// The host is on the excluded list.
    pub const EXCLUDED_HOST: &str = "ExcludedHost";
    /// The daily schedule cap is used up.
    pub const DAILY_CAP_REACHED: &str = "DailyCapReached";
    /// The instance maps to no Slurm host.
    pub const NO_HOST_MAPPING: &str = "NoHostMapping";
    /// The event is not (any more) SCHEDULED.
    pub const NOT_SCHEDULED: &str = "NotScheduled";
    /// The event already has its work; not redone.
    pub const ALREADY_PROCESSED: &str = "AlreadyProcessed";
}

/// Fault data of one event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Fault ids in order of appearance, without duplicates.
    pub ids: Vec<String>,
    /// `id: description; …`, at most [`SUMMARY_MAX`] characters (a Slurm drain reason).
    pub summary: Option<String>,
    /// Problems with the data (reported in status, never fatal).
    pub warnings: Vec<String>,
}

/// Longest fault summary.
pub const SUMMARY_MAX: usize = 200;

/// Reads `additionalDetails.faultDetails`: a JSON-encoded string holding a list of
/// `{faultId, customerDescription, …}` (a single object is taken as a list of one).
/// Absent or malformed data gives no fault ids, with a warning when malformed.
pub fn parse_faults(additional: Option<&BTreeMap<String, String>>) -> Faults {
    let mut out = Faults::default();
    let Some(raw) = additional.and_then(|a| a.get("faultDetails")) else {
        return out;
    };
    let value: serde_json::Value = match serde_json::from_str(raw) {
        Ok(v) => v,
        Err(e) => {
            out.warnings.push(format!(
                "additionalDetails.faultDetails is not JSON ({e}); no fault codes taken"
            ));
            return out;
        }
    };
    let items = match value {
        serde_json::Value::Array(a) => a,
        o @ serde_json::Value::Object(_) => vec![o],
        other => {
            out.warnings.push(format!(
                "additionalDetails.faultDetails is a JSON {}, not a list; no fault codes taken",
                json_kind(&other)
            ));
            return out;
        }
    };
    let mut parts = vec![];
    for (i, item) in items.iter().enumerate() {
        let id = item
            .get("faultId")
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let Some(id) = id else {
            out.warnings
                .push(format!("faultDetails[{i}] has no faultId; skipped"));
            continue;
        };
        if out.ids.iter().any(|x| x == id) {
            continue;
        }
        out.ids.push(id.to_string());
        let desc = item
            .get("customerDescription")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .trim();
        parts.push(if desc.is_empty() {
            id.to_string()
        } else {
            format!("{id}: {desc}")
        });
    }
    if !parts.is_empty() {
        out.summary = Some(truncate(&parts.join("; "), SUMMARY_MAX));
    }
    out
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Values the API documents; others are kept but reported.
pub const CATEGORIES: [&str; 5] = [
    "EMERGENCY",
    "MANDATORY",
    "FLEXIBLE",
    "OPTIONAL",
    "NOTIFICATION",
];
/// Documented maintenance reasons.
pub const REASONS: [&str; 6] = [
    "EVACUATION",
    "ENVIRONMENTAL_FACTORS",
    "DECOMMISSION",
    "HARDWARE_REPLACEMENT",
    "FIRMWARE_UPDATE",
    "SECURITY_UPDATE",
];
/// Documented instance actions.
pub const ACTIONS: [&str; 4] = ["REBOOT_MIGRATION", "TERMINATE", "STOP", "NONE"];
/// Documented lifecycle states (there is no COMPLETED).
pub const STATES: [&str; 6] = [
    "SCHEDULED",
    "STARTED",
    "PROCESSING",
    "SUCCEEDED",
    "FAILED",
    "CANCELED",
];

/// Warnings for enum values the API does not document.
pub fn unknown_values(e: &InstanceMaintenanceEvent) -> Vec<String> {
    let mut w = vec![];
    let mut check = |field: &str, v: &str, known: &[&str]| {
        if !known.contains(&v) {
            w.push(format!("unknown {field} {v:?}"));
        }
    };
    check("maintenanceCategory", &e.maintenance_category, &CATEGORIES);
    check("maintenanceReason", &e.maintenance_reason, &REASONS);
    check("instanceAction", &e.instance_action, &ACTIONS);
    check("lifecycleState", &e.lifecycle_state, &STATES);
    w
}

/// Whether a lifecycle state is final.
pub fn is_terminal(state: &str) -> bool {
    matches!(state, "SUCCEEDED" | "FAILED" | "CANCELED")
}

/// Whether `name` can be a Slurm node name here: the agent's own rule
/// ([`crate::agent::validate::node_name`]), so no host is mapped that the agent refuses.
pub fn valid_node_name(name: &str) -> bool {
    crate::agent::validate::node_name(name).is_ok()
}

/// The Slurm host of an instance, per the policy's mapping. `instance` is the instance
/// (for DisplayName and FreeformTag), `config_map` the ConfigMap's data (for ConfigMap).
/// `Err` says why there is none.
pub fn map_host(
    mapping: &HostMapping,
    instance_id: &str,
    instance: Option<&Instance>,
    config_map: Option<&BTreeMap<String, String>>,
) -> Result<String, String> {
    let found = match mapping.source {
        HostMappingSource::DisplayName => {
            let i = instance.ok_or_else(|| format!("instance {instance_id} not found"))?;
            i.display_name
                .clone()
                .ok_or_else(|| format!("instance {instance_id} has no displayName"))?
        }
        HostMappingSource::FreeformTag => {
            let key = mapping.tag_key.as_deref().unwrap_or_default();
            let i = instance.ok_or_else(|| format!("instance {instance_id} not found"))?;
            i.freeform_tags
                .get(key)
                .cloned()
                .ok_or_else(|| format!("instance {instance_id} has no freeform tag {key:?}"))?
        }
        HostMappingSource::ConfigMap => {
            let name = mapping.config_map_name.as_deref().unwrap_or_default();
            let data = config_map.ok_or_else(|| format!("ConfigMap {name} not found"))?;
            data.get(instance_id)
                .cloned()
                .ok_or_else(|| format!("ConfigMap {name} has no entry for {instance_id}"))?
        }
    };
    let found = found.trim().to_string();
    if valid_node_name(&found) {
        Ok(found)
    } else {
        Err(format!(
            "instance {instance_id} maps to {found:?}, not a valid Slurm node name"
        ))
    }
}

/// The UTC day of a timestamp (the daily cap's unit).
pub fn utc_day(ts: Timestamp) -> Date {
    ts.to_zoned(TimeZone::UTC).date()
}

/// How many of `decisions` (approved-at timestamps) fall on `now`'s UTC day.
pub fn scheduled_on_day(now: Timestamp, approvals: impl IntoIterator<Item = Timestamp>) -> u32 {
    let day = utc_day(now);
    approvals.into_iter().filter(|t| utc_day(*t) == day).count() as u32
}

/// What is known about one event when deciding.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Candidate<'a> {
    /// The event's lifecycle state.
    pub lifecycle_state: &'a str,
    /// Its fault ids.
    pub fault_ids: &'a [String],
    /// Its Slurm host, if mapped.
    pub host: Option<&'a str>,
    /// It already has its NodeMaintenance (or an outcome): never redone.
    pub already_processed: bool,
    /// Events already approved for scheduling on this UTC day.
    pub approved_today: u32,
}

/// A decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The event will be acted on.
    pub approved: bool,
    /// One of [`reason`].
    pub reason: &'static str,
    /// Detail for humans.
    pub message: String,
}

/// Decides about one event. Order: already processed, not SCHEDULED, no host, excluded
/// host, no approved fault code, daily cap; else approved.
pub fn decide(settings: &OciSettings, c: &Candidate<'_>) -> Decision {
    let no = |reason, message: String| Decision {
        approved: false,
        reason,
        message,
    };
    if c.already_processed {
        return Decision {
            approved: true,
            reason: reason::ALREADY_PROCESSED,
            message: "the event's maintenance is already under way or done; not redone".into(),
        };
    }
    if c.lifecycle_state != "SCHEDULED" {
        return no(
            reason::NOT_SCHEDULED,
            format!("the event is {}, not SCHEDULED", c.lifecycle_state),
        );
    }
    let Some(host) = c.host else {
        return no(
            reason::NO_HOST_MAPPING,
            "the instance maps to no Slurm node".into(),
        );
    };
    if settings.excluded_hosts.iter().any(|h| h == host) {
        return no(
            reason::EXCLUDED_HOST,
            format!("{host} is on the excluded host list"),
        );
    }
    let matched: Vec<&str> = c
        .fault_ids
        .iter()
        .filter(|f| settings.approved_fault_codes.contains(f))
        .map(String::as_str)
        .collect();
    if matched.is_empty() {
        let found = if c.fault_ids.is_empty() {
            "none".to_string()
        } else {
            c.fault_ids.join(", ")
        };
        return no(
            reason::NO_APPROVED_FAULT_CODE,
            format!("no approved fault code (event fault codes: {found})"),
        );
    }
    if settings.daily_schedule_cap > 0 && c.approved_today >= settings.daily_schedule_cap {
        return no(
            reason::DAILY_CAP_REACHED,
            format!(
                "{} events already approved today (cap {})",
                c.approved_today, settings.daily_schedule_cap
            ),
        );
    }
    Decision {
        approved: true,
        reason: reason::APPROVED_FAULT_CODE,
        message: format!("approved fault code {} on {host}", matched.join(", ")),
    }
}

/// A Kubernetes object name for an event: `ome-<tail of the OCID>-<hash>`, lower-case
/// DNS-1123, at most 63 characters.
pub fn resource_name(event_id: &str) -> String {
    let tail: String = event_id
        .rsplit('.')
        .find(|s| !s.is_empty())
        .unwrap_or("event")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let tail: String = tail
        .chars()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let hash = event_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    if tail.is_empty() {
        format!("ome-{:016x}", hash)
    } else {
        format!("ome-{tail}-{:08x}", hash as u32)
    }
}

#[cfg(test)]
mod tests;
