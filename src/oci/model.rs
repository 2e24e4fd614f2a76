//! Wire types of the OCI Compute, Work Requests and Identity APIs (the fields this
//! project uses; enum-valued fields are kept as strings so unknown values never fail).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An instance maintenance event (`InstanceMaintenanceEvent`); list calls return the
/// same fields without `additionalDetails` (`InstanceMaintenanceEventSummary`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceMaintenanceEvent {
    pub id: String,
    pub instance_id: String,
    pub compartment_id: String,
    /// EMERGENCY, MANDATORY, FLEXIBLE, OPTIONAL, NOTIFICATION.
    #[serde(default)]
    pub maintenance_category: String,
    /// EVACUATION, ENVIRONMENTAL_FACTORS, DECOMMISSION, HARDWARE_REPLACEMENT, …
    #[serde(default)]
    pub maintenance_reason: String,
    /// REBOOT_MIGRATION, TERMINATE, STOP, NONE.
    #[serde(default)]
    pub instance_action: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub alternative_resolution_actions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window_start: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_created: Option<Timestamp>,
    #[serde(default)]
    pub can_reschedule: bool,
    /// SCHEDULED, STARTED, PROCESSING, SUCCEEDED, FAILED, CANCELED.
    #[serde(default)]
    pub lifecycle_state: String,
    /// CUSTOMER, SYSTEM.
    #[serde(default)]
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_details: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_token: Option<String>,
    /// ISO 8601 duration, e.g. `PT2H`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_window_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_hard_due_date: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_started: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_finished: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_delete_local_storage: Option<bool>,
    /// Free-form string map; `faultDetails` holds a JSON-encoded list in the wild.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_details: Option<BTreeMap<String, String>>,
    /// OCI sends `{}` when there are none; missing or `null` reads as empty too.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub freeform_tags: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub defined_tags: BTreeMap<String, BTreeMap<String, Value>>,
}

/// A map or list that may come as missing, `null` or empty: all three read as empty.
fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `UpdateInstanceMaintenanceEventDetails`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateInstanceMaintenanceEventDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window_start: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternative_resolution_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_delete_local_storage: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeform_tags: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defined_tags: Option<BTreeMap<String, BTreeMap<String, Value>>>,
}

/// A Compute instance (the fields used here).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub id: String,
    pub compartment_id: String,
    #[serde(default)]
    pub availability_domain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// RUNNING, STOPPED, STARTING, STOPPING, …
    #[serde(default)]
    pub lifecycle_state: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub shape: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_created: Option<Timestamp>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub freeform_tags: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub defined_tags: BTreeMap<String, BTreeMap<String, Value>>,
}

/// A resource touched by a work request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkRequestResource {
    pub entity_type: String,
    pub action_type: String,
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_uri: Option<String>,
}

/// A work request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkRequest {
    pub id: String,
    #[serde(default)]
    pub operation_type: String,
    /// ACCEPTED, IN_PROGRESS, FAILED, SUCCEEDED, CANCELING, CANCELED.
    pub status: String,
    #[serde(default)]
    pub compartment_id: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub resources: Vec<WorkRequestResource>,
    #[serde(default)]
    pub percent_complete: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_accepted: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_started: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_finished: Option<Timestamp>,
}

impl WorkRequest {
    /// FAILED, SUCCEEDED or CANCELED.
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "FAILED" | "SUCCEEDED" | "CANCELED")
    }
}

/// One error of a work request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkRequestError {
    pub code: String,
    pub message: String,
    pub timestamp: Timestamp,
}

/// One log entry of a work request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkRequestLogEntry {
    pub message: String,
    pub timestamp: Timestamp,
}

/// An Identity compartment (the tenancy is represented as one too).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compartment {
    pub id: String,
    /// The parent compartment (for the tenancy: itself).
    pub compartment_id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_created: Option<Timestamp>,
    /// CREATING, ACTIVE, INACTIVE, DELETING, DELETED.
    #[serde(default)]
    pub lifecycle_state: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub freeform_tags: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub defined_tags: BTreeMap<String, BTreeMap<String, Value>>,
}

/// An Identity tenancy (`GetTenancy`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenancy {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Region key of the home region, e.g. `IAD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_region_key: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub freeform_tags: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub defined_tags: BTreeMap<String, BTreeMap<String, Value>>,
}

/// Filters of `ListInstanceMaintenanceEvents` (`compartmentId` is required).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListEventsFilter {
    pub compartment_id: String,
    pub instance_id: Option<String>,
    pub lifecycle_state: Option<String>,
    pub correlation_token: Option<String>,
    pub instance_action: Option<String>,
    pub time_window_start_gte: Option<Timestamp>,
    pub time_window_start_lte: Option<Timestamp>,
    /// Page size.
    pub limit: Option<u32>,
    /// TIMECREATED or DISPLAYNAME.
    pub sort_by: Option<String>,
    /// ASC or DESC.
    pub sort_order: Option<String>,
}

impl ListEventsFilter {
    /// All events of one compartment.
    pub fn compartment(id: impl Into<String>) -> Self {
        Self {
            compartment_id: id.into(),
            ..Self::default()
        }
    }

    /// The query parameters, in a stable order.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![("compartmentId", self.compartment_id.clone())];
        let opt = |q: &mut Vec<(&'static str, String)>, k, v: &Option<String>| {
            if let Some(v) = v {
                q.push((k, v.clone()));
            }
        };
        opt(&mut q, "instanceId", &self.instance_id);
        opt(&mut q, "lifecycleState", &self.lifecycle_state);
        opt(&mut q, "correlationToken", &self.correlation_token);
        opt(&mut q, "instanceAction", &self.instance_action);
        if let Some(t) = self.time_window_start_gte {
            q.push(("timeWindowStartGreaterThanOrEqualTo", t.to_string()));
        }
        if let Some(t) = self.time_window_start_lte {
            q.push(("timeWindowStartLessThanOrEqualTo", t.to_string()));
        }
        if let Some(l) = self.limit {
            q.push(("limit", l.to_string()));
        }
        opt(&mut q, "sortBy", &self.sort_by);
        opt(&mut q, "sortOrder", &self.sort_order);
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"id": "e", "instanceId": "i", "compartmentId": "c",
        "maintenanceCategory": "FLEXIBLE", "maintenanceReason": "EVACUATION",
        "instanceAction": "REBOOT_MIGRATION", "canReschedule": true,
        "lifecycleState": "SCHEDULED", "createdBy": "SYSTEM""#;

    /// OCI sends `{}` for no tags; a missing map or a `null` reads the same, so a change
    /// in what OCI sends never breaks a read.
    #[test]
    fn maps_and_lists_read_the_same_missing_null_or_empty() {
        let read = |extra: &str| -> InstanceMaintenanceEvent {
            serde_json::from_str(&format!("{EVENT}{extra}}}")).unwrap()
        };
        let missing = read("");
        let null = read(
            r#", "freeformTags": null, "definedTags": null, "alternativeResolutionActions": null"#,
        );
        let empty =
            read(r#", "freeformTags": {}, "definedTags": {}, "alternativeResolutionActions": []"#);
        assert_eq!(missing, null);
        assert_eq!(missing, empty);
        assert!(missing.freeform_tags.is_empty() && missing.defined_tags.is_empty());
        let tagged = read(r#", "freeformTags": {"a": "b"}, "definedTags": {"ns": {"k": 1}}"#);
        assert_eq!(tagged.freeform_tags["a"], "b");
        assert_eq!(tagged.defined_tags["ns"]["k"], 1);

        for body in [
            r#"{"id": "i", "compartmentId": "c"}"#,
            r#"{"id": "i", "compartmentId": "c", "freeformTags": null, "definedTags": {}}"#,
        ] {
            let i: Instance = serde_json::from_str(body).unwrap();
            assert!(i.freeform_tags.is_empty() && i.defined_tags.is_empty());
        }
        for body in [
            r#"{"id": "c", "compartmentId": "t", "name": "n"}"#,
            r#"{"id": "c", "compartmentId": "t", "name": "n", "freeformTags": {}, "definedTags": null}"#,
        ] {
            let c: Compartment = serde_json::from_str(body).unwrap();
            assert!(c.freeform_tags.is_empty() && c.defined_tags.is_empty());
        }
        let w: WorkRequest =
            serde_json::from_str(r#"{"id": "w", "status": "ACCEPTED", "resources": null}"#)
                .unwrap();
        assert!(w.resources.is_empty());
    }

    /// The emulator writes empty tag maps as `{}`, as OCI does.
    #[test]
    fn empty_tags_are_written_as_empty_maps() {
        let v = serde_json::to_value(InstanceMaintenanceEvent::default()).unwrap();
        assert_eq!(v["freeformTags"], serde_json::json!({}));
        assert_eq!(v["definedTags"], serde_json::json!({}));
        assert_eq!(v["alternativeResolutionActions"], serde_json::json!([]));
        let v = serde_json::to_value(Instance::default()).unwrap();
        assert_eq!(v["freeformTags"], serde_json::json!({}));
    }
}
