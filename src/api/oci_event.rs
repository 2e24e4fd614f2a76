//! `OciMaintenanceEvent`: a mirror of one OCI instance maintenance event.

use jiff::Timestamp;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// One OCI Compute instance maintenance event, as last seen by discovery, with the
/// operator's decision about it in status.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "slurm-maint.io",
    version = "v1alpha1",
    kind = "OciMaintenanceEvent",
    namespaced,
    status = "OciMaintenanceEventStatus",
    shortname = "ome",
    category = "slurm-maint",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.slurmNode"}"#,
    printcolumn = r#"{"name":"Category","type":"string","jsonPath":".spec.maintenanceCategory"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".spec.lifecycleState"}"#,
    printcolumn = r#"{"name":"Approved","type":"boolean","jsonPath":".status.approval.approved"}"#,
    printcolumn = r#"{"name":"Decision","type":"string","jsonPath":".status.approval.reason"}"#,
    printcolumn = r#"{"name":"Window","type":"string","jsonPath":".spec.timeWindowStart","description":"Start of the maintenance window (UTC)"}"#,
    printcolumn = r#"{"name":"Due","type":"string","jsonPath":".spec.timeHardDueDate","priority":1,"description":"OCI's hard due date (UTC)"}"#,
    printcolumn = r#"{"name":"Instance","type":"string","jsonPath":".spec.instanceId","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct OciMaintenanceEventSpec {
    /// Event OCID. Immutable.
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("eventId is immutable"))]
    pub event_id: String,
    /// Instance OCID.
    #[schemars(length(min = 1, max = 255))]
    pub instance_id: String,
    /// Instance display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
    /// Compartment OCID.
    #[schemars(length(min = 1, max = 255))]
    pub compartment_id: String,
    /// The MaintenancePolicy that discovered it.
    #[schemars(length(min = 1, max = 253))]
    pub policy: String,
    /// Slurm node the instance maps to; unset when no mapping was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_node: Option<String>,
    /// Fault ids from `additionalDetails.faultDetails`.
    #[serde(default)]
    pub fault_ids: Vec<String>,
    /// Human summary of the faults (used as the Slurm drain reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_summary: Option<String>,
    /// EMERGENCY, MANDATORY, FLEXIBLE, OPTIONAL or NOTIFICATION (unknown values kept as sent).
    #[serde(default)]
    pub maintenance_category: String,
    /// EVACUATION, ENVIRONMENTAL_FACTORS, DECOMMISSION, HARDWARE_REPLACEMENT, FIRMWARE_UPDATE, SECURITY_UPDATE…
    #[serde(default)]
    pub maintenance_reason: String,
    /// REBOOT_MIGRATION, TERMINATE, STOP, NONE…
    #[serde(default)]
    pub instance_action: String,
    /// SCHEDULED, STARTED, PROCESSING, SUCCEEDED, FAILED or CANCELED.
    #[serde(default)]
    pub lifecycle_state: String,
    /// Whether the window can be moved.
    #[serde(default)]
    pub can_reschedule: bool,
    /// Start of the maintenance window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window_start: Option<Timestamp>,
    /// Latest time the maintenance may be scheduled for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_hard_due_date: Option<Timestamp>,
    /// When OCI created the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_created: Option<Timestamp>,
}

/// The operator's handling of the event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct OciMaintenanceEventStatus {
    /// The approval decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// The NodeMaintenance carrying the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_maintenance: Option<String>,
    /// Work request of the scheduling call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_request_id: Option<String>,
    /// Final outcome: Succeeded, Failed, Canceled, HealthCheckFailed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Problems with the event's data (malformed details, unknown enum values, no host).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Why an event was or was not approved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// The event will be acted on.
    pub approved: bool,
    /// ApprovedFaultCode, NoApprovedFaultCode, ExcludedHost, DailyCapReached, NoHostMapping,
    /// NotScheduled, AlreadyProcessed.
    pub reason: String,
    /// Detail.
    #[serde(default)]
    pub message: String,
    /// When decided.
    pub decided_at: Timestamp,
}
