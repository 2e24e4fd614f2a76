//! The facts of a pass, gathered: the policy's NodeMaintenances, one Slurm snapshot, the
//! states of the OCI events whose poll is due, and health results. Nothing here writes
//! to the API server or acts on Slurm.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Resource, ResourceExt};

use super::write::label_value_ok;
use super::{Context, Error, POLICY_LABEL};
use crate::agent::api::PartitionSnapshot;
use crate::api::node_maintenance::NodeMaintenancePhase as Phase;
use crate::api::{MaintenanceAction, MaintenancePolicy, NodeMaintenance};
use crate::oci::OciClient;
use crate::oci::workflow::{EventState, FailedReschedule};
use crate::plan::{HealthResult, OciFacts, Work};
use crate::slurm::client::{SlurmClient, SlurmError};

/// The NodeMaintenances labelled with the policy (every one it created carries the label
/// when the name is a valid label value); callers still check `spec.policy`.
pub fn policy_selector(policy: &str) -> ListParams {
    let lp = ListParams::default();
    if label_value_ok(policy) {
        lp.labels(&format!("{POLICY_LABEL}={policy}"))
    } else {
        lp
    }
}

/// The policy's NodeMaintenances not being deleted, by name, listed from the API server
/// (not a cache), so a pass never acts on a transition it cannot see.
pub async fn work_objects(
    ctx: &Context,
    ns: &str,
    policy: &str,
) -> Result<BTreeMap<String, NodeMaintenance>, Error> {
    let api: Api<NodeMaintenance> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api
        .list(&policy_selector(policy))
        .await?
        .into_iter()
        .filter(|nm| nm.spec.policy == policy && nm.meta().deletion_timestamp.is_none())
        .map(|nm| (nm.name_any(), nm))
        .collect())
}

/// A NodeMaintenance as the planner sees it (its event's state not read yet).
pub fn work_of(nm: &NodeMaintenance) -> Work {
    let oci = nm
        .spec
        .oci_event
        .as_ref()
        .filter(|_| nm.spec.action == MaintenanceAction::OciMaintenance)
        .map(|e| OciFacts {
            event_id: e.event_id.clone(),
            reason: Some(nm.spec.reason.clone()),
            state: None,
        });
    Work {
        name: nm.name_any(),
        node: nm.spec.node_name.clone(),
        action: nm.spec.action,
        campaign: nm.spec.campaign.clone(),
        status: nm.status.clone().unwrap_or_default(),
        oci,
    }
}

/// One snapshot of the partition, timed in the metrics.
pub async fn snapshot(
    ctx: &Context,
    slurm: &dyn SlurmClient,
    partition: &str,
) -> Result<PartitionSnapshot, SlurmError> {
    let t = Instant::now();
    let snap = slurm.snapshot(partition).await;
    ctx.metrics.slurm_call(
        "snapshot",
        snap.as_ref().map_or_else(|e| e.metric_label(), |_| "ok"),
        t.elapsed().as_secs_f64(),
    );
    snap
}

/// Health results of the nodes whose work is in HealthCheck; a check that could not run
/// leaves its node waiting for the next pass.
pub async fn health(
    ctx: &Context,
    slurm: &dyn SlurmClient,
    work: &[Work],
) -> BTreeMap<String, HealthResult> {
    let mut health = BTreeMap::new();
    for w in work.iter().filter(|w| w.status.phase == Phase::HealthCheck) {
        let t = Instant::now();
        let r = slurm.health_check(&w.node).await;
        ctx.metrics.slurm_call(
            "health",
            r.as_ref().map_or_else(|e| e.metric_label(), |_| "ok"),
            t.elapsed().as_secs_f64(),
        );
        match r {
            Ok(h) => {
                health.insert(w.node.clone(), h);
            }
            Err(e) => tracing::warn!(node = %w.node, error = %e, "health check could not run"),
        }
    }
    health
}

/// The policy's OCI client, its calls counted in the metrics.
pub async fn oci_client(ctx: &Context, policy: &MaintenancePolicy) -> Option<OciClient> {
    match super::oci::client_for_policy(&ctx.client, policy, ctx.env.as_ref()).await {
        Ok(c) => {
            let metrics = ctx.metrics.clone();
            Some(
                c.with_observer(Arc::new(move |verb: &str, outcome: &str, secs: f64| {
                    metrics.oci_call(verb, outcome, secs)
                })),
            )
        }
        Err(e) => {
            tracing::warn!(policy = %policy.name_any(), error = %e, "no OCI client");
            None
        }
    }
}

/// Event id of each unfinished OCI work (by work name).
fn unfinished_events(work: &[Work]) -> BTreeMap<String, String> {
    work.iter()
        .filter(|w| !w.status.phase.is_terminal())
        .filter_map(|w| Some((w.name.clone(), w.oci.as_ref()?.event_id.clone())))
        .collect()
}

/// Read the events of `work` whose poll is due ([`crate::oci::poll`]) into their
/// [`OciFacts`], and record the reads. Returns the OCI client when there is unfinished
/// OCI work (it schedules events too).
pub async fn read_oci_events(
    ctx: &Context,
    policy: &MaintenancePolicy,
    work: &mut [Work],
    now: Timestamp,
) -> Option<OciClient> {
    use crate::oci::poll;
    let events = unfinished_events(work);
    {
        let mut polls = ctx.oci_polls.lock().expect("lock");
        for w in work.iter().filter(|w| w.status.phase.is_terminal()) {
            if let Some(f) = &w.oci {
                polls.remove(&f.event_id);
            }
        }
    }
    if events.is_empty() {
        return None;
    }
    let oci = oci_client(ctx, policy).await?;
    let intervals = poll::PollIntervals {
        drain: policy.spec.oci.drain_poll_interval.as_span(),
        maintenance: policy.spec.oci.maintenance_poll_interval.as_span(),
    };
    let due = {
        let polls = ctx.oci_polls.lock().expect("lock");
        poll::due_events(work, &events, &polls, &intervals, now)
    };
    let mut states = event_states(&oci, &due).await;
    check_reschedules(&oci, work, &mut states).await;
    let mut polls = ctx.oci_polls.lock().expect("lock");
    for w in work.iter_mut().filter(|w| !w.status.phase.is_terminal()) {
        let Some(f) = w.oci.as_mut().filter(|f| due.contains(&f.event_id)) else {
            continue;
        };
        if let Some(state) = states.get(&f.event_id) {
            let next = poll::record(
                polls.get(&f.event_id),
                w.status.phase,
                &state.lifecycle_state,
                &intervals,
                now,
            );
            polls.insert(f.event_id.clone(), next);
            f.state = Some(state.clone());
        }
    }
    Some(oci)
}

/// What OCI says now of each event (one GET each; an unreadable event is left out and
/// its work waits).
async fn event_states(
    oci: &OciClient,
    events: &std::collections::BTreeSet<String>,
) -> BTreeMap<String, EventState> {
    let mut out = BTreeMap::new();
    for id in events {
        match oci.get_instance_maintenance_event(id).await {
            Ok((e, _)) => {
                let state = EventState {
                    lifecycle_state: e.lifecycle_state,
                    time_window_start: e.time_window_start,
                    can_reschedule: e.can_reschedule,
                    time_hard_due_date: e.time_hard_due_date,
                    failed_reschedule: None,
                };
                out.insert(id.clone(), state);
            }
            Err(e) => tracing::warn!(event = %id, error = %e, "OCI event not readable"),
        }
    }
    out
}

/// For work whose reschedule OCI accepted while its event is still SCHEDULED, reads the
/// work request; one that ended without success is noted in the event's state (with its
/// errors), for the state machine to ask again or give up.
async fn check_reschedules(
    oci: &OciClient,
    work: &[Work],
    states: &mut BTreeMap<String, EventState>,
) {
    for w in work.iter().filter(|w| w.status.phase == Phase::Rebooting) {
        let (Some(f), Some(wr)) = (&w.oci, &w.status.work_request_id) else {
            continue;
        };
        let Some(state) = states
            .get_mut(&f.event_id)
            .filter(|s| s.lifecycle_state == "SCHEDULED")
        else {
            continue;
        };
        let request = match oci.get_work_request(wr).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(work_request = %wr, error = %e, "OCI work request not readable");
                continue;
            }
        };
        if !matches!(request.status.as_str(), "FAILED" | "CANCELED") {
            continue;
        }
        let message = match oci.list_work_request_errors(wr).await {
            Ok(errors) if !errors.is_empty() => errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            Ok(_) => "no error reported".to_string(),
            Err(e) => format!("errors not readable: {e}"),
        };
        state.failed_reschedule = Some(FailedReschedule {
            id: wr.clone(),
            status: request.status,
            message,
        });
    }
}

/// The OCI work a dry run would create, as the planner sees it: Pending, with its event
/// as last mirrored.
pub async fn planned_oci_work(
    ctx: &Context,
    policy: &MaintenancePolicy,
    ns: &str,
    objects: &BTreeMap<String, NodeMaintenance>,
    now: Timestamp,
) -> Vec<Work> {
    match super::oci_work::mirrored(ctx, ns).await {
        Ok(events) => super::oci_work::new_oci_work(&policy.name_any(), &events, objects)
            .iter()
            .map(|new| super::oci_work::as_planned(new, now))
            .collect(),
        Err(e) => {
            tracing::warn!(policy = %policy.name_any(), error = %e, "OCI events not listed");
            vec![]
        }
    }
}
