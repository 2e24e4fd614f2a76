//! Writes every part of the controller shares: NodeMaintenance creation and status (by
//! server-side apply, conditional on the resourceVersion read), the policy's status and
//! conditions, and Events.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{CAMPAIGN_LABEL, Context, Error, NODE_LABEL, POLICY_LABEL};
use crate::api::node_maintenance::{NodeMaintenancePhase as Phase, Transition};
use crate::api::policy::MaintenancePolicyStatus;
use crate::api::{
    FIELD_MANAGER, MaintenancePolicy, NodeMaintenance, NodeMaintenanceSpec, NodeMaintenanceStatus,
};
use crate::plan::status::{condition_type, degraded_status};

/// The policy's namespace (a namespaced resource always has one).
pub fn namespace(policy: &MaintenancePolicy) -> Result<String, Error> {
    policy
        .namespace()
        .ok_or_else(|| Error::Invalid("MaintenancePolicy has no namespace".into()))
}

/// Whether `v` is a valid label value.
pub fn label_value_ok(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Create a NodeMaintenance owned by `policy` (labels: policy, node, campaign) and write
/// its Pending status. `None` when it exists already: a pass killed after creating it
/// left it for the next pass to find.
pub async fn create_node_maintenance(
    ctx: &Context,
    policy: &MaintenancePolicy,
    ns: &str,
    name: &str,
    spec: NodeMaintenanceSpec,
    now: Timestamp,
) -> Result<Option<NodeMaintenance>, Error> {
    let api: Api<NodeMaintenance> = Api::namespaced(ctx.client.clone(), ns);
    let mut labels = BTreeMap::new();
    for (k, v) in [
        (POLICY_LABEL, Some(policy.name_any())),
        (NODE_LABEL, Some(spec.node_name.clone())),
        (CAMPAIGN_LABEL, spec.campaign.clone()),
    ] {
        if let Some(v) = v.filter(|v| label_value_ok(v)) {
            labels.insert(k.to_string(), v);
        }
    }
    let message = spec.reason.clone();
    let nm = NodeMaintenance {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: Some(labels),
            owner_references: policy.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec,
        status: None,
    };
    let created = match api.create(&PostParams::default(), &nm).await {
        Ok(c) => c,
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let status = NodeMaintenanceStatus {
        phase: Phase::Pending,
        phase_since: Some(now),
        transitions: vec![Transition {
            phase: Phase::Pending,
            time: now,
            message,
        }],
        observed_generation: created.metadata.generation,
        ..Default::default()
    };
    Ok(Some(write_work_status(ctx, &created, &status).await?))
}

/// Write a NodeMaintenance's status by server-side apply, conditional on the
/// resourceVersion it was read at.
pub async fn write_work_status(
    ctx: &Context,
    nm: &NodeMaintenance,
    status: &NodeMaintenanceStatus,
) -> Result<NodeMaintenance, Error> {
    let api: Api<NodeMaintenance> = Api::namespaced(
        ctx.client.clone(),
        nm.namespace().as_deref().unwrap_or_default(),
    );
    let mut status = status.clone();
    status.conditions = nm
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    crate::plan::status::set_work_conditions(&mut status, (ctx.clock)(), nm.metadata.generation);
    let mut patch = json!({
        "apiVersion": "slurm-maint.io/v1alpha1",
        "kind": "NodeMaintenance",
        "metadata": {"name": nm.name_any()},
        "status": status,
    });
    if let Some(rv) = nm.resource_version() {
        patch["metadata"]["resourceVersion"] = json!(rv);
    }
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api
        .patch_status(&nm.name_any(), &pp, &Patch::Apply(&patch))
        .await?)
}

/// Write a planned status (when it changed) and announce a phase change: an Event and a
/// JSON audit line. Returns the object as stored now.
pub async fn record_transition(
    ctx: &Context,
    nm: &NodeMaintenance,
    before: &NodeMaintenanceStatus,
    status: &NodeMaintenanceStatus,
) -> Result<NodeMaintenance, Error> {
    let current = if status != before {
        write_work_status(ctx, nm, status).await?
    } else {
        nm.clone()
    };
    if status.phase != before.phase {
        let message = status
            .transitions
            .last()
            .map(|t| t.message.clone())
            .unwrap_or_default();
        tracing::info!(
            target: "audit",
            node = %nm.spec.node_name,
            work = %nm.name_any(),
            action = ?nm.spec.action,
            event_id = nm.spec.oci_event.as_ref().map_or("", |e| e.event_id.as_str()),
            from = %before.phase,
            to = %status.phase,
            %message,
            "maintenance transition"
        );
        let ty = if status.phase == Phase::Failed {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(
            ctx,
            &nm.object_ref(&()),
            ty,
            &status.phase.to_string(),
            "Transition",
            message,
        )
        .await;
    }
    Ok(current)
}

/// Write the policy's status by server-side apply.
pub async fn write_policy_status(
    ctx: &Context,
    policy: &MaintenancePolicy,
    status: &MaintenancePolicyStatus,
) -> Result<(), Error> {
    let ns = namespace(policy)?;
    let api: Api<MaintenancePolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({
        "apiVersion": "slurm-maint.io/v1alpha1",
        "kind": "MaintenancePolicy",
        "metadata": {"name": policy.name_any()},
        "status": status,
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&policy.name_any(), &pp, &Patch::Apply(&patch))
        .await?;
    Ok(())
}

/// Mark the policy Degraded (status kept otherwise) and say so once in an Event.
pub async fn degrade(
    ctx: &Context,
    policy: &MaintenancePolicy,
    why: &str,
    message: String,
    now: Timestamp,
) -> Result<(), Error> {
    let previous = policy.status.as_ref();
    let status = degraded_status(previous, policy.metadata.generation, why, message, now);
    announce_conditions(ctx, policy, previous, &status).await;
    write_policy_status(ctx, policy, &status).await
}

/// Events for conditions that changed reason (not for every pass).
pub async fn announce_conditions(
    ctx: &Context,
    policy: &MaintenancePolicy,
    previous: Option<&MaintenancePolicyStatus>,
    status: &MaintenancePolicyStatus,
) {
    let reference = policy.object_ref(&());
    for ty in [
        condition_type::DEGRADED,
        condition_type::PROGRESSING,
        condition_type::BUDGET_EXHAUSTED,
        condition_type::PAUSED,
    ] {
        let Some(now) = status.conditions.iter().find(|c| c.r#type == ty) else {
            continue;
        };
        let before = previous.and_then(|p| p.conditions.iter().find(|c| c.r#type == ty));
        if before.is_some_and(|b| b.reason == now.reason && b.status == now.status) {
            continue;
        }
        if before.is_none() && crate::plan::status::is_quiet_start(now) {
            continue;
        }
        publish(
            ctx,
            &reference,
            if crate::plan::status::is_warning(ty, now) {
                EventType::Warning
            } else {
                EventType::Normal
            },
            &now.reason,
            ty,
            crate::plan::status::condition_note(ty, before, now),
        )
        .await;
    }
}

/// Publish an Event about `reference` (a failure to publish is only logged).
pub async fn publish(
    ctx: &Context,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(&note, 1000)),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, reference).await {
        tracing::debug!(error = %e, "event not published");
    }
}

/// `s` cut to at most `max` bytes on a character boundary, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
