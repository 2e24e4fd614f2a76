//! The OCI JSON models: never a panic; whatever deserializes serializes and deserializes
//! back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use slurm_maint::oci::approve;
use slurm_maint::oci::model::{
    Compartment, Instance, InstanceMaintenanceEvent, UpdateInstanceMaintenanceEventDetails,
    WorkRequest, WorkRequestError, WorkRequestLogEntry,
};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let json = serde_json::to_vec(&value).unwrap();
    let again: T = serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("{} does not read back: {e}", String::from_utf8_lossy(&json)));
    assert_eq!(again, value);
}

fuzz_target!(|data: &[u8]| {
    round_trip::<InstanceMaintenanceEvent>(data);
    round_trip::<Vec<InstanceMaintenanceEvent>>(data);
    round_trip::<UpdateInstanceMaintenanceEventDetails>(data);
    round_trip::<Instance>(data);
    round_trip::<WorkRequest>(data);
    round_trip::<Vec<WorkRequestError>>(data);
    round_trip::<Vec<WorkRequestLogEntry>>(data);
    round_trip::<Vec<Compartment>>(data);
    if let Ok(w) = serde_json::from_slice::<WorkRequest>(data) {
        let _ = w.is_terminal();
    }
    if let Ok(e) = serde_json::from_slice::<InstanceMaintenanceEvent>(data) {
        let faults = approve::parse_faults(e.additional_details.as_ref());
        let _ = (faults, approve::unknown_values(&e));
        let name = approve::resource_name(&e.id);
        assert!(
            name.len() <= 63
                && name.starts_with("ome-")
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !name.ends_with('-'),
            "event {:?} named {name:?}: not a DNS-1123 label",
            e.id
        );
    }
});
