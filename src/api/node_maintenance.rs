//! `NodeMaintenance`: one node, one piece of work, its state machine in status.

use jiff::Timestamp;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// Maintenance of one Slurm node. Created by the policy controller; its status is the
/// node's state machine, so a restarted controller resumes exactly where it was.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "slurm-maint.io",
    version = "v1alpha1",
    kind = "NodeMaintenance",
    namespaced,
    status = "NodeMaintenanceStatus",
    shortname = "snm",
    category = "slurm-maint",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.nodeName"}"#,
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Domain","type":"string","jsonPath":".status.domain","description":"The node's domain under the policy's budget.topology"}"#,
    printcolumn = r#"{"name":"Attempts","type":"integer","jsonPath":".status.attempts"}"#,
    printcolumn = r#"{"name":"Reservation Start","type":"string","jsonPath":".status.reservationStart","description":"When the node's maintenance reservation starts (UTC)"}"#,
    printcolumn = r#"{"name":"Policy","type":"string","jsonPath":".spec.policy","priority":1}"#,
    printcolumn = r#"{"name":"Last Error","type":"string","jsonPath":".status.lastError","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.action != 'OciMaintenance' || has(self.ociEvent)").message("action OciMaintenance requires ociEvent"))]
#[x_kube(validation = Rule::new("self.action != 'Reboot' || !has(self.ociEvent)").message("ociEvent is only valid with action OciMaintenance"))]
pub struct NodeMaintenanceSpec {
    /// Slurm NodeName. Immutable.
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("nodeName is immutable"))]
    pub node_name: String,
    /// The MaintenancePolicy (same namespace) this work belongs to. Immutable.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("policy is immutable"))]
    pub policy: String,
    /// What to do to the node.
    #[x_kube(validation = Rule::new("self == oldSelf").message("action is immutable"))]
    pub action: MaintenanceAction,
    /// The OCI event this work serves (action OciMaintenance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci_event: Option<OciEventRef>,
    /// Campaign this reboot belongs to (the policy's `rebootRequiredBefore`); part of the
    /// reservation name so a new campaign never reuses an old reservation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), regex(pattern = r"^[A-Za-z0-9_.:-]*$"))]
    pub campaign: Option<String>,
    /// When the work was requested.
    pub requested_at: Timestamp,
    /// Why (shown in Slurm reasons and Events).
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub reason: String,
}

/// What a NodeMaintenance does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MaintenanceAction {
    /// Reboot through Slurm (or the site command) after the node's reservation starts.
    Reboot,
    /// Drain, schedule the OCI maintenance event, wait for it, health-check, resume.
    OciMaintenance,
}

/// Reference to an OCI maintenance event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OciEventRef {
    /// Instance maintenance event OCID.
    #[schemars(
        length(min = 1, max = 255),
        regex(pattern = r"^ocid1\.[a-z0-9]+\.[a-z0-9]+\.[a-z0-9-]*\.[A-Za-z0-9._-]+$")
    )]
    pub event_id: String,
    /// Instance OCID.
    #[schemars(
        length(min = 1, max = 255),
        regex(pattern = r"^ocid1\.instance\.[a-z0-9]+\.[a-z0-9-]*\.[A-Za-z0-9._-]+$")
    )]
    pub instance_id: String,
    /// Name of the OciMaintenanceEvent resource mirroring it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub resource_name: Option<String>,
    /// The event's fault ids (they choose its health checks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 64)))]
    pub fault_ids: Vec<String>,
    /// The event's maintenance category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub category: Option<String>,
}

/// Phase of a node's maintenance.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
    Default,
)]
pub enum NodeMaintenancePhase {
    /// Waiting for its turn under the budget.
    #[default]
    Pending,
    /// Reservation created (or node draining, for OCI work); waiting for jobs to end.
    Reserved,
    /// Node empty; waiting for budget to reboot.
    PendingReboot,
    /// Reboot issued (OCI: maintenance scheduled and running).
    Rebooting,
    /// Waiting for the node to come back into service.
    Recovering,
    /// Running the health check.
    HealthCheck,
    /// Done; reservation removed, node in service.
    Completed,
    /// Gave up after max attempts (or a failed health check); node kept drained.
    Failed,
}

impl NodeMaintenancePhase {
    /// Completed or Failed.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }

    /// The node counts as unavailable in this phase (work in flight).
    pub fn holds_node(self) -> bool {
        matches!(
            self,
            Self::PendingReboot | Self::Rebooting | Self::Recovering | Self::HealthCheck
        )
    }

    /// All phases, in state-machine order.
    pub const ALL: [Self; 8] = [
        Self::Pending,
        Self::Reserved,
        Self::PendingReboot,
        Self::Rebooting,
        Self::Recovering,
        Self::HealthCheck,
        Self::Completed,
        Self::Failed,
    ];
}

impl std::fmt::Display for NodeMaintenancePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// The node's state machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeMaintenanceStatus {
    /// Current phase.
    #[serde(default)]
    pub phase: NodeMaintenancePhase,
    /// When the current phase was entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<Timestamp>,
    /// Reboot (or OCI scheduling) attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Every transition, oldest first (bounded).
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub transitions: Vec<Transition>,
    /// Slurm reservation emptying the node (with `WholeDomain`, its domain's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_name: Option<String>,
    /// The node's domain under the policy's `budget.topology`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub domain: Option<String>,
    /// When that reservation starts (the node's release time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_start: Option<Timestamp>,
    /// Slurm BootTime when the reboot was issued; recovery needs a later one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_time_before: Option<Timestamp>,
    /// When the current reboot was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_issued_at: Option<Timestamp>,
    /// OCI work request of the scheduling call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_request_id: Option<String>,
    /// Last error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Results of the named health checks of the last HealthCheck phase, in the order run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 17))]
    pub health_checks: Vec<HealthCheckResult>,
    /// What became of the webhook call for a failed check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub notification: Option<String>,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// What one named health check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckResult {
    /// The check's name in the agent's checks file.
    #[schemars(length(max = 64))]
    pub name: String,
    /// The fault it ran for (`{fault}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub fault: Option<String>,
    /// Whether it passed.
    pub passed: bool,
    /// Attempts the agent made (1 + retries used).
    pub attempts: u32,
    /// Wall time of all attempts, in milliseconds.
    pub duration_ms: u64,
    /// `passed`, or why it failed.
    #[serde(default)]
    #[schemars(length(max = 512))]
    pub message: String,
    /// The end of its output.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub output: String,
    /// When it finished.
    pub time: Timestamp,
}

/// One recorded transition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// Phase entered.
    pub phase: NodeMaintenancePhase,
    /// When.
    pub time: Timestamp,
    /// Why.
    #[serde(default)]
    pub message: String,
}
