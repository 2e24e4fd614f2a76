//! The emulator's scenario: tenancy, compartments, instances, events (from a YAML or
//! JSON file, or generated), lifecycle timing, outcomes and fault injection.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::oci::model::{Instance, InstanceMaintenanceEvent};

/// A scenario file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scenario {
    /// Tenancy OCID (the root compartment).
    #[serde(default = "default_tenancy")]
    pub tenancy: String,
    /// Tenancy name (`GetTenancy`, and the root compartment's name).
    #[serde(default = "default_tenancy_name")]
    pub tenancy_name: String,
    /// Region reported on instances.
    #[serde(default = "default_region")]
    pub region: String,
    /// Compartments below the tenancy.
    #[serde(default)]
    pub compartments: Vec<ScenarioCompartment>,
    /// Instances.
    #[serde(default)]
    pub instances: Vec<Instance>,
    /// Maintenance events.
    #[serde(default)]
    pub events: Vec<ScenarioEvent>,
    /// Generated data added to the above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<Generate>,
    /// Seconds of emulator clock per lifecycle step (work request ACCEPTED→IN_PROGRESS→
    /// done; event STARTED→PROCESSING→done).
    #[serde(default = "default_step")]
    pub step_seconds: f64,
    /// Events not rescheduled by the customer start by themselves at their window.
    #[serde(default)]
    pub auto_start_at_window: bool,
    /// Largest accepted difference between a request's `date` and the real clock.
    #[serde(default = "default_skew")]
    pub max_clock_skew_seconds: i64,
    /// Default page size of list calls.
    #[serde(default = "default_page")]
    pub default_page_size: usize,
    /// Fault injection.
    #[serde(default)]
    pub faults: Faults,
}

/// The tenancy OCID of a scenario that names none.
pub const DEFAULT_TENANCY: &str = "ocid1.tenancy.oc1..emulator";

fn default_tenancy() -> String {
    DEFAULT_TENANCY.into()
}
fn default_tenancy_name() -> String {
    "emulator".into()
}
fn default_region() -> String {
    "us-ashburn-1".into()
}
fn default_step() -> f64 {
    1.0
}
fn default_skew() -> i64 {
    300
}
fn default_page() -> usize {
    100
}

impl Default for Scenario {
    fn default() -> Self {
        serde_json::from_str("{}").expect("the empty scenario parses")
    }
}

/// A compartment below the tenancy.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioCompartment {
    /// OCID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Parent OCID; the tenancy when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// ACTIVE unless said otherwise.
    #[serde(default = "active")]
    pub lifecycle_state: String,
    /// `compartment <name>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The emulator's start when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_created: Option<Timestamp>,
}

fn active() -> String {
    "ACTIVE".into()
}

/// An event with the emulator's script for it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioEvent {
    /// The event as the API shows it.
    #[serde(flatten)]
    pub event: InstanceMaintenanceEvent,
    /// How the maintenance ends once started: SUCCEEDED (default), FAILED or CANCELED.
    #[serde(default = "succeeded")]
    pub outcome: String,
    /// How the work request of a reschedule ends: SUCCEEDED (default) or FAILED.
    #[serde(default = "succeeded")]
    pub work_request_outcome: String,
}

fn succeeded() -> String {
    "SUCCEEDED".into()
}

/// Generated instances and events.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Generate {
    /// Compartments to create below the tenancy.
    #[serde(default = "one")]
    pub compartments: usize,
    /// Instances, spread over the compartments, named `<hostPrefix><n>`.
    #[serde(default)]
    pub instances: usize,
    /// Events, one per instance from the first on.
    #[serde(default)]
    pub events: usize,
    /// Host name prefix.
    #[serde(default = "prefix")]
    pub host_prefix: String,
    /// Fault ids, assigned round-robin.
    #[serde(default = "fault_ids")]
    pub fault_ids: Vec<String>,
}

fn one() -> usize {
    1
}
fn prefix() -> String {
    "gpu-".into()
}
fn fault_ids() -> Vec<String> {
    vec!["HPCRDMA-0002-02".into(), "HPCGPU-0001-01".into()]
}

/// Fault injection.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    /// Share of API requests answered 429 or 500 (half each) instead, in [0, 1].
    #[serde(default)]
    pub error_rate: f64,
    /// Added latency of every API request.
    #[serde(default)]
    pub latency_ms: u64,
    /// Seed of the fault dice.
    #[serde(default)]
    pub seed: u64,
}

/// The first key of `given` (a parsed file) that `understood` (the same file read into
/// the scenario's types and written back) lacks: a key no type knows.
fn unknown_key(
    given: &serde_json::Value,
    understood: &serde_json::Value,
    path: String,
) -> Option<String> {
    use serde_json::Value;
    match (given, understood) {
        (Value::Object(g), Value::Object(u)) => g.iter().find_map(|(k, v)| {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match u.get(k) {
                Some(w) => unknown_key(v, w, here),
                // An explicit null is an absent optional field.
                None if v.is_null() => None,
                None => Some(here),
            }
        }),
        (Value::Array(g), Value::Array(u)) => g
            .iter()
            .zip(u)
            .enumerate()
            .find_map(|(i, (v, w))| unknown_key(v, w, format!("{path}[{i}]"))),
        _ => None,
    }
}

/// The enum values of OCI's API reference (as the official SDK's models list them).
pub mod enums {
    /// `InstanceMaintenanceEvent.maintenanceCategory`.
    pub const CATEGORIES: &[&str] = &[
        "EMERGENCY",
        "MANDATORY",
        "FLEXIBLE",
        "OPTIONAL",
        "NOTIFICATION",
    ];
    /// `InstanceMaintenanceEvent.maintenanceReason`.
    pub const REASONS: &[&str] = &[
        "EVACUATION",
        "ENVIRONMENTAL_FACTORS",
        "DECOMMISSION",
        "HARDWARE_REPLACEMENT",
        "FIRMWARE_UPDATE",
        "SECURITY_UPDATE",
    ];
    /// `InstanceMaintenanceEvent.instanceAction`.
    pub const INSTANCE_ACTIONS: &[&str] = &["REBOOT_MIGRATION", "TERMINATE", "STOP", "NONE"];
    /// `alternativeResolutionActions` items and `alternativeResolutionAction`.
    pub const RESOLUTION_ACTIONS: &[&str] = &["REBOOT_MIGRATION", "TERMINATE"];
    /// `InstanceMaintenanceEvent.lifecycleState`.
    pub const EVENT_STATES: &[&str] = &[
        "SCHEDULED",
        "STARTED",
        "PROCESSING",
        "SUCCEEDED",
        "FAILED",
        "CANCELED",
    ];
    /// `InstanceMaintenanceEvent.createdBy`.
    pub const CREATED_BY: &[&str] = &["CUSTOMER", "SYSTEM"];
    /// `Instance.lifecycleState`.
    pub const INSTANCE_STATES: &[&str] = &[
        "MOVING",
        "PROVISIONING",
        "RUNNING",
        "STARTING",
        "STOPPING",
        "STOPPED",
        "CREATING_IMAGE",
        "TERMINATING",
        "TERMINATED",
    ];
    /// `Compartment.lifecycleState`.
    pub const COMPARTMENT_STATES: &[&str] =
        &["CREATING", "ACTIVE", "INACTIVE", "DELETING", "DELETED"];
}

/// `additionalDetails.faultDetails` as the API encodes it: a JSON string holding a list.
pub fn fault_details(ids: &[&str]) -> BTreeMap<String, String> {
    let list: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            serde_json::json!({
                "faultId": id,
                "faultComponent": "GPU",
                "customerDescription": format!("fault {id} detected"),
                "impactDescription": "the instance must be reboot-migrated",
                "impactType": "PERFORMANCE",
                "recommendedAction": "reboot-migrate the instance",
            })
        })
        .collect();
    BTreeMap::from([(
        "faultDetails".to_string(),
        serde_json::Value::Array(list).to_string(),
    )])
}

impl Scenario {
    /// Parses YAML or JSON. A key the format does not know (a misspelt `evnts:`) and a
    /// value outside an OCI enum are refused, with their path.
    pub fn parse(text: &str) -> Result<Self, String> {
        let scenario: Self = serde_yaml::from_str(text).map_err(|e| format!("scenario: {e}"))?;
        let given: serde_json::Value =
            serde_yaml::from_str(text).map_err(|e| format!("scenario: {e}"))?;
        let understood = serde_json::to_value(&scenario).map_err(|e| format!("scenario: {e}"))?;
        if let Some(path) = unknown_key(&given, &understood, String::new()) {
            return Err(format!("scenario: unknown key {path}"));
        }
        scenario.check_enums()?;
        Ok(scenario)
    }

    fn check_enums(&self) -> Result<(), String> {
        let check = |path: String, v: &str, allowed: &[&str]| {
            if v.is_empty() || allowed.contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "scenario: {path}: {v} is not one of {}",
                    allowed.join(", ")
                ))
            }
        };
        for (i, c) in self.compartments.iter().enumerate() {
            check(
                format!("compartments[{i}].lifecycleState"),
                &c.lifecycle_state,
                enums::COMPARTMENT_STATES,
            )?;
        }
        for (i, inst) in self.instances.iter().enumerate() {
            check(
                format!("instances[{i}].lifecycleState"),
                &inst.lifecycle_state,
                enums::INSTANCE_STATES,
            )?;
        }
        for (i, e) in self.events.iter().enumerate() {
            let p = |f: &str| format!("events[{i}].{f}");
            let ev = &e.event;
            check(
                p("maintenanceCategory"),
                &ev.maintenance_category,
                enums::CATEGORIES,
            )?;
            check(
                p("maintenanceReason"),
                &ev.maintenance_reason,
                enums::REASONS,
            )?;
            check(
                p("instanceAction"),
                &ev.instance_action,
                enums::INSTANCE_ACTIONS,
            )?;
            check(
                p("lifecycleState"),
                &ev.lifecycle_state,
                enums::EVENT_STATES,
            )?;
            check(p("createdBy"), &ev.created_by, enums::CREATED_BY)?;
            for (j, a) in ev.alternative_resolution_actions.iter().enumerate() {
                check(
                    p(&format!("alternativeResolutionActions[{j}]")),
                    a,
                    enums::RESOLUTION_ACTIONS,
                )?;
            }
            check(
                p("outcome"),
                &e.outcome,
                &["SUCCEEDED", "FAILED", "CANCELED"],
            )?;
            check(
                p("workRequestOutcome"),
                &e.work_request_outcome,
                &["SUCCEEDED", "FAILED"],
            )?;
        }
        Ok(())
    }

    /// Adds the generated data (relative to `now`) to the explicit data.
    pub fn expand(&mut self, now: Timestamp) {
        let Some(g) = self.generate.take() else {
            return;
        };
        let comps: Vec<String> = (0..g.compartments.max(1))
            .map(|i| format!("ocid1.compartment.oc1..gen{i}"))
            .collect();
        for (i, id) in comps.iter().enumerate() {
            if !self.compartments.iter().any(|c| &c.id == id) {
                self.compartments.push(ScenarioCompartment {
                    id: id.clone(),
                    name: format!("generated-{i}"),
                    parent: None,
                    lifecycle_state: active(),
                    description: None,
                    time_created: Some(now - SignedDuration::from_hours(24 * 30)),
                });
            }
        }
        for i in 0..g.instances {
            let host = format!("{}{:03}", g.host_prefix, i + 1);
            self.instances.push(Instance {
                id: format!("ocid1.instance.oc1..gen{i}"),
                compartment_id: comps[i % comps.len()].clone(),
                availability_domain: "AD-1".into(),
                display_name: Some(host.clone()),
                lifecycle_state: "RUNNING".into(),
                region: self.region.clone(),
                shape: "BM.GPU.H100.8".into(),
                time_created: Some(now),
                freeform_tags: BTreeMap::from([("slurm-node".to_string(), host)]),
                ..Instance::default()
            });
        }
        for i in 0..g.events.min(g.instances) {
            let fault = g
                .fault_ids
                .get(i % g.fault_ids.len().max(1))
                .cloned()
                .unwrap_or_default();
            let host = format!("{}{:03}", g.host_prefix, i + 1);
            self.events.push(ScenarioEvent {
                event: InstanceMaintenanceEvent {
                    id: format!("ocid1.instancemaintenanceevent.oc1..gen{i}"),
                    instance_id: format!("ocid1.instance.oc1..gen{i}"),
                    compartment_id: comps[i % comps.len()].clone(),
                    maintenance_category: "FLEXIBLE".into(),
                    maintenance_reason: "HARDWARE_REPLACEMENT".into(),
                    instance_action: "REBOOT_MIGRATION".into(),
                    alternative_resolution_actions: vec!["REBOOT_MIGRATION".into()],
                    time_window_start: Some(now + SignedDuration::from_hours(24 * 7)),
                    time_created: Some(
                        now - SignedDuration::from_hours(1) + SignedDuration::from_secs(i as i64),
                    ),
                    can_reschedule: true,
                    lifecycle_state: "SCHEDULED".into(),
                    created_by: "SYSTEM".into(),
                    display_name: Some(format!("maintenance {i}")),
                    description: Some(format!(
                        "Hardware replacement: the host of instance {host} must be \
                         reboot-migrated ({fault})"
                    )),
                    start_window_duration: Some("PT2H".into()),
                    estimated_duration: Some("PT30M".into()),
                    time_hard_due_date: Some(now + SignedDuration::from_hours(24 * 14)),
                    additional_details: (!fault.is_empty()).then(|| fault_details(&[&fault])),
                    ..Default::default()
                },
                outcome: succeeded(),
                work_request_outcome: succeeded(),
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The YAML block under "A full example" in docs/oci-emulator.md.
    pub(crate) fn docs_example() -> String {
        let doc = include_str!("../../../docs/oci-emulator.md");
        let (_, rest) = doc.split_once("## A full example").expect("the section");
        let (_, block) = rest.split_once("```yaml\n").expect("a yaml block");
        block.split_once("```").expect("its end").0.to_string()
    }

    #[test]
    fn the_documented_example_loads() {
        let sc = Scenario::parse(&docs_example()).unwrap();
        assert_eq!(sc.tenancy, "ocid1.tenancy.oc1..aaaaaaaaexample");
        assert_eq!(
            (sc.compartments.len(), sc.instances.len(), sc.events.len()),
            (2, 2, 2)
        );
        assert_eq!(sc.events[1].outcome, "FAILED");
        assert_eq!(
            sc.events[0].event.alternative_resolution_actions,
            ["REBOOT_MIGRATION", "TERMINATE"]
        );
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_path() {
        let err = Scenario::parse("tenancy: t\nevnts: []\n").unwrap_err();
        assert_eq!(err, "scenario: unknown key evnts");
        let err = Scenario::parse(
            "events:\n  - {id: e, instanceId: i, compartmentId: c}\n  - {id: f, instanceId: i, compartmentId: c, timeWindowStrat: x}\n",
        )
        .unwrap_err();
        assert_eq!(err, "scenario: unknown key events[1].timeWindowStrat");
        let err = Scenario::parse("faults: {errorRate: 0.1, latency: 5}\n").unwrap_err();
        assert_eq!(err, "scenario: unknown key faults.latency");
        let err = Scenario::parse("generate: {instances: 2, event: 1}\n").unwrap_err();
        assert_eq!(err, "scenario: unknown key generate.event");
        // Free-form maps take any key; an explicit null is an absent field.
        Scenario::parse(
            "instances: [{id: i, compartmentId: c, freeformTags: {anything: x}, displayName: null}]\n",
        )
        .unwrap();
    }

    #[test]
    fn a_value_outside_an_oci_enum_is_refused_with_its_path() {
        let err = Scenario::parse(
            "events: [{id: e, instanceId: i, compartmentId: c, maintenanceCategory: SOMEDAY}]\n",
        )
        .unwrap_err();
        assert!(
            err.starts_with("scenario: events[0].maintenanceCategory: SOMEDAY is not one of"),
            "{err}"
        );
        let err = Scenario::parse(
            "events: [{id: e, instanceId: i, compartmentId: c, alternativeResolutionActions: [REBOOT_MIGRATION, STOP]}]\n",
        )
        .unwrap_err();
        assert!(
            err.starts_with("scenario: events[0].alternativeResolutionActions[1]: STOP"),
            "{err}"
        );
    }

    #[test]
    fn generated_events_carry_what_oci_always_sends() {
        let now: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let mut sc = Scenario::parse("generate: {instances: 3, events: 3}\n").unwrap();
        sc.expand(now);
        for e in &sc.events {
            let e = &e.event;
            assert!(e.description.as_deref().is_some_and(|d| !d.is_empty()));
            assert!(e.time_created.is_some_and(|t| t < now));
            assert!(e.time_window_start.is_some_and(|t| t > now));
            assert!(!e.alternative_resolution_actions.is_empty());
        }
        let created: Vec<_> = sc.events.iter().map(|e| e.event.time_created).collect();
        assert!(
            created.windows(2).all(|w| w[0] < w[1]),
            "distinct, in order"
        );
    }
}
