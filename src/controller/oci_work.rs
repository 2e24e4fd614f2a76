//! The controller side of the OCI workflow: approved `OciMaintenanceEvent`s become
//! NodeMaintenances with action `OciMaintenance`; each pass reads their events' states
//! from OCI, runs [`crate::oci::workflow::plan_oci`] and carries out its steps — status
//! first, then the side effect, as for rolling reboots.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::policy::{publish, record_transition, write_work_status};
use super::{Context, Error, NODE_LABEL, POLICY_LABEL};
use crate::api::node_maintenance::{NodeMaintenancePhase as Phase, OciEventRef, Transition};
use crate::api::{
    MaintenanceAction, MaintenancePolicy, NodeMaintenance, NodeMaintenanceSpec,
    NodeMaintenanceStatus, OciMaintenanceEvent,
};
use crate::oci::OciClient;
use crate::oci::model::UpdateInstanceMaintenanceEventDetails;
use crate::oci::workflow::{EventState, OciStep, OciUpdate};
use crate::plan::{Action, work_name};
use crate::slurm::client::SlurmClient;

/// Create the NodeMaintenance of every approved, still scheduled event that has none,
/// unless its node already has unfinished work; the event records which one serves it.
pub async fn spawn(
    ctx: &Context,
    policy: &MaintenancePolicy,
    ns: &str,
    existing: &BTreeMap<String, NodeMaintenance>,
    now: Timestamp,
) -> Result<usize, Error> {
    let name = policy.name_any();
    let events: Api<OciMaintenanceEvent> = Api::namespaced(ctx.client.clone(), ns);
    let busy: std::collections::BTreeSet<&str> = existing
        .values()
        .filter(|nm| nm.status.as_ref().is_none_or(|s| !s.phase.is_terminal()))
        .map(|nm| nm.spec.node_name.as_str())
        .collect();
    let mut created = 0;
    for ev in events.list(&ListParams::default()).await? {
        let st = ev.status.clone().unwrap_or_default();
        let approved = st.approval.as_ref().is_some_and(|a| a.approved);
        let Some(node) = ev.spec.slurm_node.clone() else {
            continue;
        };
        if ev.spec.policy != name
            || !approved
            || st.node_maintenance.is_some()
            || ev.spec.lifecycle_state != "SCHEDULED"
            || busy.contains(node.as_str())
        {
            continue;
        }
        let hash = ev
            .spec
            .event_id
            .bytes()
            .fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100000001b3)
            });
        let wname = work_name(&name, &node, &format!("oci{:08x}", hash as u32));
        let mut labels = BTreeMap::from([(POLICY_LABEL.to_string(), name.clone())]);
        if node.len() <= 63 {
            labels.insert(NODE_LABEL.to_string(), node.clone());
        }
        let reason = match &ev.spec.fault_summary {
            Some(f) => format!("OCI maintenance event: {f}"),
            None => "OCI maintenance event".to_string(),
        };
        let nm = NodeMaintenance {
            metadata: ObjectMeta {
                name: Some(wname.clone()),
                namespace: Some(ns.into()),
                labels: Some(labels),
                owner_references: policy.controller_owner_ref(&()).map(|o| vec![o]),
                ..Default::default()
            },
            spec: NodeMaintenanceSpec {
                node_name: node.clone(),
                policy: name.clone(),
                action: MaintenanceAction::OciMaintenance,
                oci_event: Some(OciEventRef {
                    event_id: ev.spec.event_id.clone(),
                    instance_id: ev.spec.instance_id.clone(),
                    resource_name: Some(ev.name_any()),
                }),
                campaign: None,
                requested_at: now,
                reason: crate::agent::validate::boring_text(&reason, 256),
            },
            status: None,
        };
        let api: Api<NodeMaintenance> = Api::namespaced(ctx.client.clone(), ns);
        match api.create(&PostParams::default(), &nm).await {
            Ok(c) => {
                let status = NodeMaintenanceStatus {
                    phase: Phase::Pending,
                    phase_since: Some(now),
                    transitions: vec![Transition {
                        phase: Phase::Pending,
                        time: now,
                        message: reason.clone(),
                    }],
                    observed_generation: c.metadata.generation,
                    ..Default::default()
                };
                write_work_status(ctx, &c, &status).await?;
                created += 1;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        events
            .patch_status(
                &ev.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"nodeMaintenance": wname}})),
            )
            .await?;
        publish(
            ctx,
            &ev.object_ref(&()),
            EventType::Normal,
            "Scheduled",
            "Plan",
            format!("NodeMaintenance {wname} will carry out this event on {node}"),
        )
        .await;
    }
    Ok(created)
}

/// Event id of each unfinished OCI NodeMaintenance (by resource name).
pub fn events_of(objects: &BTreeMap<String, NodeMaintenance>) -> BTreeMap<String, String> {
    objects
        .iter()
        .filter(|(_, nm)| nm.spec.action == MaintenanceAction::OciMaintenance)
        .filter(|(_, nm)| nm.status.as_ref().is_none_or(|s| !s.phase.is_terminal()))
        .filter_map(|(n, nm)| Some((n.clone(), nm.spec.oci_event.as_ref()?.event_id.clone())))
        .collect()
}

/// What OCI says now of each event (one GET each; an unreadable event is left out and
/// its work waits).
pub async fn event_states(
    oci: &OciClient,
    events: &BTreeMap<String, String>,
) -> BTreeMap<String, EventState> {
    let mut out = BTreeMap::new();
    for id in events.values() {
        if out.contains_key(id) {
            continue;
        }
        match oci.get_instance_maintenance_event(id).await {
            Ok((e, _)) => {
                out.insert(
                    id.clone(),
                    EventState {
                        lifecycle_state: e.lifecycle_state,
                        time_window_start: e.time_window_start,
                    },
                );
            }
            Err(e) => tracing::warn!(event = %id, error = %e, "OCI event not readable"),
        }
    }
    out
}

/// One line per step, for `plannedActions`.
pub fn describe(step: &OciStep) -> String {
    match step {
        OciStep::Drain { node, reason } => format!("drain {node}: {reason}"),
        OciStep::Schedule { event_id, start } => {
            format!("schedule OCI event {event_id} for {start}")
        }
        OciStep::Resume { node } => format!("resume {node}"),
    }
}

/// Write the update's status, then carry out its steps. A scheduled event's work request
/// is recorded on the NodeMaintenance and the OciMaintenanceEvent.
pub async fn apply(
    ctx: &Context,
    nm: &NodeMaintenance,
    u: &OciUpdate,
    slurm: &dyn SlurmClient,
    oci: Option<&OciClient>,
) -> Result<(), Error> {
    let before = nm.status.clone().unwrap_or_default();
    let mut status = u.status.clone();
    status.observed_generation = nm.metadata.generation;
    let mut current = record_transition(ctx, nm, &before, &status).await?;
    let reference = nm.object_ref(&());
    let resource = nm
        .spec
        .oci_event
        .as_ref()
        .and_then(|e| e.resource_name.clone());
    for step in &u.steps {
        let result: Result<Option<String>, String> = match step {
            OciStep::Drain { node, reason } => slurm
                .execute(&Action::Drain {
                    node: node.clone(),
                    reason: reason.clone(),
                })
                .await
                .map(|_| None)
                .map_err(|e| e.to_string()),
            OciStep::Resume { node } => slurm
                .resume(node)
                .await
                .map(|_| None)
                .map_err(|e| e.to_string()),
            OciStep::Schedule { event_id, start } => match oci {
                None => Err("no OCI client".into()),
                Some(oci) => {
                    let details = UpdateInstanceMaintenanceEventDetails {
                        time_window_start: Some(*start),
                        ..Default::default()
                    };
                    // One token per attempt: a repeated call is the same request to OCI.
                    let hash = nm.name_any().bytes().fold(0xcbf29ce484222325u64, |h, b| {
                        (h ^ b as u64).wrapping_mul(0x100000001b3)
                    });
                    let token = format!("slurm-maint-{hash:016x}-{}", status.attempts);
                    oci.update_instance_maintenance_event(event_id, &details, None, Some(token))
                        .await
                        .map(Some)
                        .map_err(|e| e.to_string())
                }
            },
        };
        match result {
            Ok(Some(work_request)) => {
                status.work_request_id = Some(work_request.clone());
                current = write_work_status(ctx, &current, &status).await?;
                if let Some(r) = &resource {
                    let events: Api<OciMaintenanceEvent> = Api::namespaced(
                        ctx.client.clone(),
                        nm.namespace().as_deref().unwrap_or_default(),
                    );
                    let _ = events
                        .patch_status(
                            r,
                            &PatchParams::default(),
                            &Patch::Merge(&json!({"status": {"workRequestId": work_request}})),
                        )
                        .await;
                }
            }
            Ok(None) => {}
            Err(e) => {
                let what = describe(step);
                tracing::warn!(node = %u.node, action = %what, error = %e, "OCI step failed");
                publish(
                    ctx,
                    &reference,
                    EventType::Warning,
                    "ActionFailed",
                    "Oci",
                    format!("{what}: {e}"),
                )
                .await;
                status.last_error = Some(format!("{what}: {e}"));
                current = write_work_status(ctx, &current, &status).await?;
            }
        }
    }
    if status.phase.is_terminal()
        && before.phase != status.phase
        && let Some(r) = &resource
    {
        let events: Api<OciMaintenanceEvent> = Api::namespaced(
            ctx.client.clone(),
            nm.namespace().as_deref().unwrap_or_default(),
        );
        let outcome = if status.phase == Phase::Completed {
            "Completed".to_string()
        } else {
            format!("Failed: {}", status.last_error.clone().unwrap_or_default())
        };
        let _ = events
            .patch_status(
                r,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"outcome": outcome}})),
            )
            .await;
    }
    let _ = current;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use jiff::SignedDuration;

    use super::*;
    use crate::apiserver::ApiServer;
    use crate::controller::oci::tests::{KEY_PEM, policy};
    use crate::controller::{self, Context, FixedConnector, Leadership, Pace};
    use crate::oci::emulator::{Emulator, Scenario};
    use crate::sim::{JobMix, SimCluster, SimConfig};

    /// Approved events run through the whole workflow: the policy controller, the
    /// simulated partition and the OCI emulator, clocks moving together.
    #[tokio::test]
    async fn approved_events_are_carried_out_under_the_budget() {
        let start = Timestamp::now();
        let mut sc = Scenario::parse(
            "tenancy: ocid1.tenancy.oc1..aaaaaaaatest\n\
             generate: {compartments: 1, instances: 6, events: 3, hostPrefix: node, faultIds: [HPCRDMA-0002-02]}\n",
        )
        .unwrap();
        sc.expand(start);
        let key = crate::oci::config::parse_private_key(KEY_PEM, None).unwrap();
        let emu = Emulator::new(sc, vec![key.to_public_key()]);
        let (addr, _task) = emu.start("127.0.0.1:0").await.unwrap();
        let server = ApiServer::with_crds(&crate::api::crds());
        let kube = server.client();
        policy(&kube, &format!("http://{addr}")).await;
        let sim = SimCluster::new(SimConfig {
            nodes: 10,
            start,
            job_mix: JobMix {
                short: 1.0,
                long: 0.0,
            },
            ..SimConfig::default()
        });
        let clock = sim.clone();
        let ctx = Arc::new(Context::new(
            kube.clone(),
            Arc::new(FixedConnector(Arc::new(sim.clone()))),
            Arc::new(move || clock.now()),
            Pace { scale: 0.01 / 60.0 },
            Leadership::always(),
            "test",
        ));
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(controller::run(ctx, Some("default".into()), async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        let works: Api<NodeMaintenance> = Api::namespaced(kube.clone(), "default");
        let mut most_out = 0;
        let done = 'drive: {
            for _ in 0..(12 * 60) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                sim.advance(SignedDuration::from_mins(1));
                emu.advance(Duration::from_secs(60));
                sim.sample();
                most_out = most_out.max(sim.stats().max_unavailable_or_down);
                let items = works.list(&ListParams::default()).await.unwrap().items;
                let completed = items
                    .iter()
                    .filter(|nm| {
                        nm.status
                            .as_ref()
                            .is_some_and(|s| s.phase == Phase::Completed)
                    })
                    .count();
                if completed >= 2 && completed == items.len() {
                    break 'drive items;
                }
            }
            panic!("the approved events were not carried out");
        };
        let _ = stop.send(true);
        let _ = task.await;
        // The daily cap (2 a UTC day) approved two events a day; each ran, one node at a
        // time (10 % of 10 nodes: 1 allowed).
        assert!(most_out <= 1, "{most_out} nodes out, 1 allowed");
        for nm in &done {
            assert_eq!(nm.spec.action, MaintenanceAction::OciMaintenance);
            let st = nm.status.as_ref().unwrap();
            let phases: Vec<Phase> = st.transitions.iter().map(|t| t.phase).collect();
            assert_eq!(
                phases,
                [
                    Phase::Pending,
                    Phase::Reserved,
                    Phase::Rebooting,
                    Phase::Recovering,
                    Phase::HealthCheck,
                    Phase::Completed
                ]
            );
            assert!(st.work_request_id.is_some());
            let ev = emu
                .event(&nm.spec.oci_event.as_ref().unwrap().event_id)
                .unwrap();
            assert_eq!(ev.lifecycle_state, "SUCCEEDED");
            let node = sim
                .peek()
                .nodes
                .into_iter()
                .find(|n| n.name == nm.spec.node_name)
                .unwrap();
            assert!(
                node.state.in_service(),
                "{} resumed: {}",
                node.name,
                node.state
            );
        }
        let mirrored: Api<OciMaintenanceEvent> = Api::namespaced(kube.clone(), "default");
        let outcomes: Vec<String> = mirrored
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|o| o.status?.outcome)
            .collect();
        assert_eq!(outcomes.len(), done.len());
        assert!(outcomes.iter().all(|o| o == "Completed"), "{outcomes:?}");
    }
}
