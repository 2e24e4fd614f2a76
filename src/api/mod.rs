//! Custom resources of group `slurm-maint.io`, version `v1alpha1`.

#[cfg(test)]
mod cel_bounds;
pub mod condition;
pub mod duration;
pub mod node_maintenance;
pub mod oci_event;
pub mod policy;

pub use condition::Condition;
pub use duration::Duration;
pub use node_maintenance::{
    MaintenanceAction, NodeMaintenance, NodeMaintenancePhase, NodeMaintenanceSpec,
    NodeMaintenanceStatus,
};
pub use oci_event::{OciMaintenanceEvent, OciMaintenanceEventSpec, OciMaintenanceEventStatus};
pub use policy::{MaintenancePolicy, MaintenancePolicySpec, MaintenancePolicyStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every kind here.
pub const GROUP: &str = "slurm-maint.io";
/// Field manager for server-side apply.
pub const FIELD_MANAGER: &str = "slurm-maint";

/// All CRDs, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        MaintenancePolicy::crd(),
        NodeMaintenance::crd(),
        OciMaintenanceEvent::crd(),
    ]
}

/// One CRD as YAML, as written to `crds/<plural>.yaml`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    serde_yaml::to_string(crd).expect("CRD serialises to YAML")
}

/// All CRDs as one YAML stream (what `slurm-maint crds` prints).
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|c| format!("---\n{}", crd_yaml(c)))
        .collect()
}

/// File name of a CRD under `crds/`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("crd"))
}
