//! Carrying out a plan: each update's status first, then the side effects it guards, in
//! Slurm (through the agent) or in OCI. A failed action is recorded in `lastError` and a
//! Warning Event; the next pass retries what is still needed.

use std::collections::BTreeMap;
use std::time::Instant;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::facts::work_of;
use super::write::{
    create_node_maintenance, publish, record_transition, truncate, write_work_status,
};
use super::{Context, Error};
use crate::api::node_maintenance::NodeMaintenancePhase as Phase;
use crate::api::{
    MaintenanceAction, MaintenancePolicy, NodeMaintenance, NodeMaintenanceSpec,
    NodeMaintenanceStatus, OciMaintenanceEvent,
};
use crate::oci::OciClient;
use crate::oci::model::UpdateInstanceMaintenanceEventDetails;
use crate::plan::retry::{RETRY_ANNOTATION, Retry, retry};
use crate::plan::{self, Action, NewWork, Plan, WorkUpdate};
use crate::slurm::client::{SlurmClient, SlurmError};

/// Where a pass's side effects go.
pub struct Effects<'a> {
    pub slurm: &'a dyn SlurmClient,
    /// Present when the policy has unfinished OCI work.
    pub oci: Option<&'a OciClient>,
    pub max_attempts: u32,
    pub policy: &'a MaintenancePolicy,
    /// The URL of the policy's health-check webhook, or why it is unknown.
    pub webhook: Option<Result<&'a str, &'a str>>,
}

/// Carry out `plan`: its new work created, then each update.
pub async fn carry_out(
    ctx: &Context,
    policy: &MaintenancePolicy,
    objects: &BTreeMap<String, NodeMaintenance>,
    plan: &Plan,
    effects: &Effects<'_>,
    now: Timestamp,
) -> Result<(), Error> {
    let ns = super::write::namespace(policy)?;
    for nw in &plan.new_work {
        create_work(ctx, policy, &ns, nw, now).await?;
    }
    for u in &plan.updates {
        apply_update(ctx, &objects[&u.name], u, effects).await?;
    }
    Ok(())
}

/// Carry out the retries people asked for with the [`RETRY_ANNOTATION`]: the status
/// first, then the node's resume, then the annotation goes. A retry that does not apply
/// is reported in a Warning Event and its annotation removed too.
pub async fn retries(
    ctx: &Context,
    objects: &mut BTreeMap<String, NodeMaintenance>,
    nodes: &[crate::slurm::Node],
    slurm: &dyn SlurmClient,
    now: Timestamp,
) -> Result<(), Error> {
    let asked: Vec<String> = objects
        .iter()
        .filter(|(_, nm)| nm.annotations().contains_key(RETRY_ANNOTATION))
        .map(|(n, _)| n.clone())
        .collect();
    for name in asked {
        let nm = objects[&name].clone();
        let node = nodes.iter().find(|n| n.name == nm.spec.node_name);
        let event_state = match &nm.spec.oci_event {
            Some(e) => oci_event_state(ctx, &nm, e).await,
            None => None,
        };
        let current = match retry(&work_of(&nm), node, event_state.as_deref(), now) {
            Retry::Restart { status, resume } => {
                let mut status = *status;
                status.observed_generation = nm.metadata.generation;
                let before = nm.status.clone().unwrap_or_default();
                let current = record_transition(ctx, &nm, &before, &status).await?;
                if resume && let Err(e) = slurm.resume(&nm.spec.node_name).await {
                    tracing::warn!(node = %nm.spec.node_name, error = %e, "resume for a retry failed");
                    publish(
                        ctx,
                        &nm.object_ref(&()),
                        EventType::Warning,
                        "ActionFailed",
                        "Retry",
                        format!("resume {}: {e}", nm.spec.node_name),
                    )
                    .await;
                }
                current
            }
            Retry::Refused(why) => {
                publish(
                    ctx,
                    &nm.object_ref(&()),
                    EventType::Warning,
                    "RetryRefused",
                    "Retry",
                    why,
                )
                .await;
                nm
            }
        };
        let api: Api<NodeMaintenance> = Api::namespaced(
            ctx.client.clone(),
            current.namespace().as_deref().unwrap_or_default(),
        );
        let patch = json!({"metadata": {"annotations": {RETRY_ANNOTATION: null}}});
        let updated = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        objects.insert(name, updated);
    }
    Ok(())
}

/// What the mirrored `OciMaintenanceEvent` of OCI work last said of its event.
async fn oci_event_state(
    ctx: &Context,
    nm: &NodeMaintenance,
    e: &crate::api::node_maintenance::OciEventRef,
) -> Option<String> {
    let name = e.resource_name.as_ref()?;
    let api: Api<crate::api::OciMaintenanceEvent> = Api::namespaced(
        ctx.client.clone(),
        nm.namespace().as_deref().unwrap_or_default(),
    );
    match api.get_opt(name).await {
        Ok(o) => o.map(|o| o.spec.lifecycle_state),
        Err(err) => {
            tracing::warn!(event = %name, error = %err, "OCI event mirror not readable");
            None
        }
    }
}

/// Create the NodeMaintenance of a node new to the campaign, then write its Pending status.
async fn create_work(
    ctx: &Context,
    policy: &MaintenancePolicy,
    ns: &str,
    nw: &NewWork,
    now: Timestamp,
) -> Result<(), Error> {
    let spec = NodeMaintenanceSpec {
        node_name: nw.node.clone(),
        policy: policy.name_any(),
        action: MaintenanceAction::Reboot,
        oci_event: None,
        campaign: Some(nw.campaign.clone()),
        requested_at: now,
        reason: nw.reason.clone(),
    };
    if let Some(created) = create_node_maintenance(ctx, policy, ns, &nw.name, spec, now).await? {
        publish(
            ctx,
            &created.object_ref(&()),
            EventType::Normal,
            "Pending",
            "Plan",
            format!("{} needs maintenance: {}", nw.node, nw.reason),
        )
        .await;
    }
    Ok(())
}

/// A failed side effect.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Slurm(#[from] SlurmError),
    #[error("{0}")]
    Oci(String),
}

/// Status first, then the side effects it guards. A reboot refused outright fails its
/// attempt at once; a scheduled OCI event's work request is recorded on the
/// NodeMaintenance and its `OciMaintenanceEvent`, and so is the outcome of OCI work.
async fn apply_update(
    ctx: &Context,
    nm: &NodeMaintenance,
    u: &WorkUpdate,
    effects: &Effects<'_>,
) -> Result<(), Error> {
    let before = nm.status.clone().unwrap_or_default();
    let mut status = u.status.clone();
    status.observed_generation = nm.metadata.generation;
    let mut current = record_transition(ctx, nm, &before, &status).await?;
    let reference = nm.object_ref(&());
    let mut errors = vec![];
    let mut refused_reboot = None;
    for a in &u.actions {
        match execute(ctx, nm, &status, a, effects).await {
            Ok(Some(work_request)) => {
                status.work_request_id = Some(work_request.clone());
                current = write_work_status(ctx, &current, &status).await?;
                mirror(ctx, nm, json!({"workRequestId": work_request})).await;
            }
            Ok(None) => {}
            Err(e) => {
                action_failed(ctx, &reference, &u.node, a, &e).await;
                errors.push(format!("{}: {e}", a.describe()));
                // Refused outright (not a timeout or an unreachable agent, after which the
                // reboot may have been issued): the attempt fails now.
                if let (Action::Reboot { .. }, Failure::Slurm(e)) = (a, &e)
                    && matches!(e, SlurmError::Refused { .. } | SlurmError::Slurm { .. })
                    && !e.is_transient()
                {
                    refused_reboot = Some(e.to_string());
                }
            }
        }
    }
    if let Some(why) = refused_reboot {
        return reboot_refused(ctx, &current, &status, &why, effects).await;
    }
    if !errors.is_empty() {
        status.last_error = Some(truncate(&errors.join("; "), 1024));
        current = write_work_status(ctx, &current, &status).await?;
    }
    // A failed health check ended the work: its webhook, once (this transition happens
    // once per HealthCheck phase).
    if let (Some(url), Some(failed)) = (effects.webhook, super::checks::failure(&before, &status)) {
        let failed = failed.clone();
        status.notification =
            Some(super::checks::notify(ctx, effects.policy, nm, &failed, url).await);
        write_work_status(ctx, &current, &status).await?;
    }
    if status.phase.is_terminal() && before.phase != status.phase {
        let outcome = match status.phase {
            Phase::Completed => "Completed".to_string(),
            _ => format!("Failed: {}", status.last_error.clone().unwrap_or_default()),
        };
        mirror(ctx, nm, json!({"outcome": outcome})).await;
    }
    Ok(())
}

/// A reboot the agent or Slurm refused: the attempt fails now ([`plan::reboot_refused`]).
async fn reboot_refused(
    ctx: &Context,
    current: &NodeMaintenance,
    status: &NodeMaintenanceStatus,
    why: &str,
    effects: &Effects<'_>,
) -> Result<(), Error> {
    let (next, actions) = plan::reboot_refused(
        &work_of(current),
        status,
        effects.max_attempts,
        why,
        (ctx.clock)(),
    );
    record_transition(ctx, current, status, &next).await?;
    let reference = current.object_ref(&());
    for a in &actions {
        if let Err(e) = effects.slurm.execute(a).await {
            action_failed(ctx, &reference, &current.spec.node_name, a, &e.into()).await;
        }
    }
    Ok(())
}

/// Carry out one action; an OCI schedule returns its work request.
async fn execute(
    ctx: &Context,
    nm: &NodeMaintenance,
    status: &NodeMaintenanceStatus,
    a: &Action,
    effects: &Effects<'_>,
) -> Result<Option<String>, Failure> {
    if let Action::ScheduleOciEvent { event_id, start } = a {
        let oci = effects.oci.ok_or(Failure::Oci("no OCI client".into()))?;
        let details = UpdateInstanceMaintenanceEventDetails {
            time_window_start: Some(*start),
            ..Default::default()
        };
        // One token per attempt and window: a repeated call is the same request.
        let hash = nm.name_any().bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
        let token = format!(
            "slurm-maint-{hash:016x}-{}-{}",
            status.attempts,
            start.as_second()
        );
        return oci
            .update_instance_maintenance_event(event_id, &details, None, Some(token))
            .await
            .map(Some)
            .map_err(|e| Failure::Oci(e.to_string()));
    }
    let t = Instant::now();
    let r = effects.slurm.execute(a).await;
    ctx.metrics.slurm_call(
        verb(a),
        r.as_ref().map_or_else(|e| e.metric_label(), |_| "ok"),
        t.elapsed().as_secs_f64(),
    );
    let done = r?;
    tracing::info!(node = %nm.spec.node_name, action = %a.describe(), changed = done.changed, "{}", done.message);
    Ok(None)
}

/// Merge `fields` into the status of OCI work's `OciMaintenanceEvent` (best effort: the
/// mirror is a view; the NodeMaintenance holds the truth).
async fn mirror(ctx: &Context, nm: &NodeMaintenance, fields: serde_json::Value) {
    let Some(r) = nm
        .spec
        .oci_event
        .as_ref()
        .and_then(|e| e.resource_name.as_ref())
    else {
        return;
    };
    let events: Api<OciMaintenanceEvent> = Api::namespaced(
        ctx.client.clone(),
        nm.namespace().as_deref().unwrap_or_default(),
    );
    let patch = json!({ "status": fields });
    if let Err(e) = events
        .patch_status(r, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(event = %r, error = %e, "OCI event mirror not updated");
    }
}

/// A failed action: a log line and a Warning Event on the NodeMaintenance.
async fn action_failed(
    ctx: &Context,
    reference: &ObjectReference,
    node: &str,
    a: &Action,
    e: &Failure,
) {
    tracing::warn!(node = %node, action = %a.describe(), error = %e, "action failed");
    publish(
        ctx,
        reference,
        EventType::Warning,
        "ActionFailed",
        verb(a),
        format!("{}: {e}", a.describe()),
    )
    .await;
}

fn verb(a: &Action) -> &'static str {
    match a {
        Action::CreateReservation { .. } => "create_reservation",
        Action::UpdateReservationStart { .. } => "update_reservation",
        Action::DeleteReservation { .. } => "delete_reservation",
        Action::CancelJob { .. } => "cancel_job",
        Action::Drain { .. } => "drain",
        Action::Reboot { .. } => "reboot",
        Action::ClearReason { .. } => "clear_reason",
        Action::Resume { .. } => "resume",
        Action::ScheduleOciEvent { .. } => "schedule_oci_event",
    }
}
