//! The `MaintenancePolicy` reconciler: fetch → validate → plan → status → side effects.
//!
//! One pass per policy per `spec.interval` (a spec change runs one at once; the
//! controller's own status writes do not). NodeMaintenances are listed from the API server
//! at every pass, not read from a cache, so a pass never acts on a transition it cannot
//! see. Each status write carries the resourceVersion it was planned from: a concurrent
//! writer makes it fail with 409 and the pass stops before any side effect.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{CAMPAIGN_LABEL, Context, Error, NODE_LABEL, POLICY_LABEL};
use crate::api::node_maintenance::{NodeMaintenancePhase as Phase, Transition};
use crate::api::policy::MaintenancePolicyStatus;
use crate::api::{
    FIELD_MANAGER, MaintenanceAction, MaintenancePolicy, NodeMaintenance, NodeMaintenanceSpec,
    NodeMaintenanceStatus,
};
use crate::plan::retry::{RETRY_ANNOTATION, Retry, retry};
use crate::plan::status::{Mode, condition_type, degraded_status, policy_status, reason};
use crate::plan::{self, Action, NewWork, Settings, Snapshot, Work, WorkUpdate};
use crate::slurm::client::{SlurmClient, SlurmError};

const CONTROLLER: &str = "policy";

/// Expected time of one node's maintenance, for the ETA: reboot plus settle, at least.
fn per_node_estimate(policy: &MaintenancePolicy) -> jiff::SignedDuration {
    let r = &policy.spec.reboots;
    (r.timeout.as_span() / 2) + r.settle_time.as_span()
}

/// Finalizer on every policy: its reservations in Slurm are withdrawn before it goes.
pub const FINALIZER: &str = "slurm-maint.io/cleanup";

/// One reconcile of a policy.
pub async fn reconcile(
    policy: Arc<MaintenancePolicy>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    if !ctx.leadership.is_leader() {
        return Ok(Requeue::requeue(std::time::Duration::from_secs(2)));
    }
    let api: Api<MaintenancePolicy> = Api::namespaced(ctx.client.clone(), &namespace(&policy)?);
    finalizer(&api, FINALIZER, policy, |event| async {
        match event {
            FinalizerEvent::Apply(p) => apply(p, &ctx).await,
            FinalizerEvent::Cleanup(p) => cleanup(&p, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

async fn apply(policy: Arc<MaintenancePolicy>, ctx: &Context) -> Result<Requeue, Error> {
    let now = (ctx.clock)();
    let interval = policy.spec.interval.as_span();
    let status = policy.status.as_ref();
    let generation = policy.metadata.generation;
    // The cached object may not show the status this replica just wrote: its own record
    // of the last pass counts too, so a pass's own writes never trigger another at once.
    let key = format!(
        "{}/{}",
        policy.namespace().unwrap_or_default(),
        policy.name_any()
    );
    if crate::plan::status::spec_rejected(status, generation) {
        return Ok(Requeue::await_change());
    }
    let remembered = ctx.last_pass.lock().expect("lock").get(&key).copied();
    let last = [
        status
            .and_then(|s| s.last_pass)
            .filter(|_| status.and_then(|s| s.observed_generation) == generation),
        remembered.filter(|(_, g)| *g == generation).map(|(t, _)| t),
    ]
    .into_iter()
    .flatten()
    .max();
    if let Some(last) = last {
        let next = last + interval;
        if next > now {
            return Ok(Requeue::requeue(ctx.pace.real(next.duration_since(now))));
        }
    }
    ctx.last_pass
        .lock()
        .expect("lock")
        .insert(key, (now, generation));
    let started = Instant::now();
    let result = pass(&policy, ctx, now).await;
    ctx.passes.send_replace(Some(now));
    let secs = started.elapsed().as_secs_f64();
    ctx.metrics.reconciled(
        CONTROLLER,
        secs,
        result.as_ref().err().map(Error::metric_label),
    );
    result
}

/// The policy is being deleted: withdraw every reservation of its unfinished work.
/// Nodes already rebooting finish on their own (Slurm resumes them); nothing new starts.
/// If Slurm cannot be reached the policy stays (retried every interval); removing the
/// finalizer by hand leaves the reservations to expire.
async fn cleanup(policy: &MaintenancePolicy, ctx: &Context) -> Result<Requeue, Error> {
    let ns = namespace(policy)?;
    let name = policy.name_any();
    let api: Api<NodeMaintenance> = Api::namespaced(ctx.client.clone(), &ns);
    let holding: Vec<(String, String)> = api
        .list(&policy_selector(&name))
        .await?
        .into_iter()
        .filter(|nm| nm.spec.policy == name)
        .filter_map(|nm| {
            let st = nm.status.as_ref()?;
            let resv = st.reservation_name.clone()?;
            (st.phase != Phase::Completed).then_some((nm.spec.node_name.clone(), resv))
        })
        .collect();
    let mut withdrawn = vec![];
    // Slurm is asked only if some work may still hold a reservation, so a policy that
    // never made one (monitor only) goes even when its agent is unreachable.
    if !holding.is_empty() {
        let slurm = ctx.connector.connect(policy).await?;
        let snap = slurm.snapshot(&policy.spec.partition).await?;
        let existing: std::collections::BTreeSet<&str> =
            snap.reservations.iter().map(|r| r.name.as_str()).collect();
        for (node, resv) in holding {
            if existing.contains(resv.as_str()) {
                let action = Action::DeleteReservation { name: resv };
                slurm.execute(&action).await?;
                withdrawn.push(node);
            }
        }
    }
    ctx.metrics.forget(&ns, &name, &policy.spec.partition);
    publish(
        ctx,
        &policy.object_ref(&()),
        EventType::Normal,
        "CleanedUp",
        "Delete",
        if withdrawn.is_empty() {
            "policy deleted: no reservation to withdraw".into()
        } else {
            format!(
                "policy deleted: reservations withdrawn from {}",
                withdrawn.join(", ")
            )
        },
    )
    .await;
    Ok(Requeue::await_change())
}

/// Retry a failed pass after the policy's interval: never a storm.
pub fn error_policy(policy: Arc<MaintenancePolicy>, error: &Error, ctx: Arc<Context>) -> Requeue {
    tracing::warn!(policy = %policy.name_any(), %error, "pass failed");
    Requeue::requeue(ctx.pace.real(policy.spec.interval.as_span()))
}

/// The reason a pass that could not get its Slurm client reports.
fn connect_error_reason(e: &Error) -> &'static str {
    match e {
        Error::Token(_) => reason::AGENT_TOKEN_MISSING,
        Error::Slurm(e) => crate::plan::status::slurm_error_reason(e),
        _ => reason::SLURM_UNREACHABLE,
    }
}

fn namespace(policy: &MaintenancePolicy) -> Result<String, Error> {
    policy
        .namespace()
        .ok_or_else(|| Error::Invalid("MaintenancePolicy has no namespace".into()))
}

async fn pass(policy: &MaintenancePolicy, ctx: &Context, now: Timestamp) -> Result<Requeue, Error> {
    let ns = namespace(policy)?;
    let name = policy.name_any();
    let generation = policy.metadata.generation;
    let previous = policy.status.as_ref();
    let requeue = Requeue::requeue(ctx.pace.real(policy.spec.interval.as_span()));

    let mut settings = match Settings::from_spec(&policy.spec, now) {
        Ok(s) => s,
        Err(e) => {
            // A malformed spec waits for the next change: no retries.
            degrade(ctx, policy, reason::INVALID_SPEC, e.to_string(), now).await?;
            return Ok(Requeue::await_change());
        }
    };
    if policy.spec.oci.enabled {
        discover_oci(ctx, policy, &ns, &name, now).await;
    }
    let slurm = match ctx.connector.connect(policy).await {
        Ok(c) => c,
        Err(e) => {
            let why = connect_error_reason(&e);
            tracing::warn!(policy = %name, reason = why, error = %e, "Slurm agent not reached");
            degrade(ctx, policy, why, e.to_string(), now).await?;
            return Ok(requeue);
        }
    };
    let t = Instant::now();
    let snap = slurm.snapshot(&settings.partition).await;
    ctx.metrics.slurm_call(
        "snapshot",
        snap.as_ref().map_or_else(|e| e.metric_label(), |_| "ok"),
        t.elapsed().as_secs_f64(),
    );
    let snap = match snap {
        Ok(s) => s,
        Err(e) => {
            let why = crate::plan::status::slurm_error_reason(&e);
            tracing::warn!(policy = %name, partition = %settings.partition, reason = why, error = %e, "no snapshot of the partition");
            degrade(ctx, policy, why, e.to_string(), now).await?;
            return Ok(requeue);
        }
    };

    let api: Api<NodeMaintenance> = Api::namespaced(ctx.client.clone(), &ns);
    let mut objects: BTreeMap<String, NodeMaintenance> = BTreeMap::new();
    for nm in api.list(&policy_selector(&name)).await? {
        if nm.spec.policy == name && nm.meta().deletion_timestamp.is_none() {
            objects.insert(nm.name_any(), nm);
        }
    }
    if !policy.spec.dry_run {
        retries(ctx, &mut objects, &snap.nodes, slurm.as_ref(), now).await?;
    }
    let work: Vec<Work> = objects.values().map(work_of).collect();
    settings.expedited = objects
        .iter()
        .filter(|(_, nm)| nm.annotations().contains_key(plan::EXPEDITE_ANNOTATION))
        .map(|(n, _)| n.clone())
        .collect();

    // OCI: approved events become work (a dry run only plans it); unfinished OCI work
    // reads its events' states when their poll is due.
    let mut oci_work = super::oci_work::events_of(&objects);
    let mut oci_reasons = super::oci_work::reasons_of(&objects);
    let mut oci_planned: Vec<Work> = vec![];
    let mut oci_states = BTreeMap::new();
    if policy.spec.oci.enabled {
        if policy.spec.dry_run {
            match super::oci_work::mirrored(ctx, &ns).await {
                Ok(events) => {
                    for new in super::oci_work::new_oci_work(&name, &events, &objects) {
                        oci_planned.push(super::oci_work::as_planned(&new, now));
                        oci_work.insert(new.name.clone(), new.event.event_id.clone());
                        oci_reasons.insert(new.name.clone(), new.reason.clone());
                        oci_states.insert(new.event.event_id.clone(), new.state.clone());
                    }
                }
                Err(e) => tracing::warn!(policy = %name, error = %e, "OCI events not listed"),
            }
        } else if let Err(e) = super::oci_work::spawn(ctx, policy, &ns, &objects, now).await {
            tracing::warn!(policy = %name, error = %e, "OCI work not created");
        }
    }
    {
        let mut polls = ctx.oci_polls.lock().expect("lock");
        for nm in objects.values() {
            if let (Some(e), Some(st)) = (&nm.spec.oci_event, &nm.status)
                && st.phase.is_terminal()
            {
                polls.remove(&e.event_id);
            }
        }
    }
    let mut oci_client = None;
    if !oci_work.is_empty() {
        match super::oci::client_for_policy(&ctx.client, policy, ctx.env.as_ref()).await {
            Ok(c) => {
                let metrics = ctx.metrics.clone();
                let c = c.with_observer(Arc::new(move |verb: &str, outcome: &str, secs: f64| {
                    metrics.oci_call(verb, outcome, secs)
                }));
                let read = poll_oci_events(ctx, policy, &work, &oci_work, &c, now).await;
                oci_states.extend(read);
                oci_client = Some(c);
            }
            Err(e) => tracing::warn!(policy = %name, error = %e, "no OCI client"),
        }
    }

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
            // Unknown health: the node waits in HealthCheck for the next pass.
            Err(e) => tracing::warn!(node = %w.node, error = %e, "health check could not run"),
        }
    }
    let snapshot = Snapshot {
        nodes: snap.nodes,
        jobs: snap.jobs,
        reservations: snap.reservations,
        health,
    };
    // OCI work ready to start goes before rolling reboots: the plan holds its slots.
    let oci_all: Vec<Work> = work.iter().chain(&oci_planned).cloned().collect();
    let timing = crate::oci::workflow::Timing {
        lead: policy.spec.oci.schedule_lead_time.as_span(),
        drain_ahead: policy.spec.oci.drain_ahead.as_span(),
    };
    settings.held_for_oci = crate::oci::workflow::ready_to_start(
        &settings,
        &snapshot,
        &oci_all,
        &oci_work,
        &oci_states,
        &timing,
        now,
    );
    let plan = if policy.spec.dry_run {
        plan::plan_as_if_created(&name, &settings, &snapshot, &work, now)
    } else {
        plan::plan(&name, &settings, &snapshot, &work, now)
    };

    let oci_updates = if oci_work.is_empty() {
        vec![]
    } else {
        crate::oci::workflow::plan_oci(
            &settings,
            &snapshot,
            &oci_all,
            &oci_work,
            &oci_reasons,
            &oci_states,
            &plan.budget,
            &timing,
            now,
        )
    };

    if !policy.spec.dry_run {
        for u in &oci_updates {
            let nm = &objects[&u.name];
            super::oci_work::apply(ctx, nm, u, slurm.as_ref(), oci_client.as_ref()).await?;
        }
        for nw in &plan.new_work {
            create_work(ctx, policy, &ns, nw, now).await?;
        }
        for u in &plan.updates {
            let nm = &objects[&u.name];
            apply_update(ctx, nm, u, slurm.as_ref(), settings.max_attempts).await?;
        }
    }

    let mode = Mode {
        paused: policy.spec.paused,
        dry_run: policy.spec.dry_run,
        acting: settings.reservations_enabled,
        per_node: per_node_estimate(policy),
    };
    let mut status = policy_status(
        previous,
        generation,
        &settings.partition,
        &work,
        &plan,
        mode,
        now,
    );
    status.planned_actions.extend(
        oci_updates
            .iter()
            .flat_map(|u| u.steps.iter().map(super::oci_work::describe)),
    );
    announce_conditions(ctx, policy, previous, &status).await;
    write_policy_status(ctx, policy, &status).await?;
    ctx.metrics.policy(&ns, &name, &status);
    Ok(requeue)
}

fn work_of(nm: &NodeMaintenance) -> Work {
    Work {
        name: nm.name_any(),
        node: nm.spec.node_name.clone(),
        action: nm.spec.action,
        campaign: nm.spec.campaign.clone(),
        status: nm.status.clone().unwrap_or_default(),
    }
}

/// Carry out the retries people asked for with the [`RETRY_ANNOTATION`]: the status
/// first, then the node's resume, then the annotation goes. A retry that does not apply
/// is reported in a Warning Event and its annotation removed too.
async fn retries(
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

/// Read the events of `work` whose poll is due ([`crate::oci::poll`]) and record the
/// reads.
async fn poll_oci_events(
    ctx: &Context,
    policy: &MaintenancePolicy,
    work: &[Work],
    events: &BTreeMap<String, String>,
    oci: &crate::oci::OciClient,
    now: Timestamp,
) -> BTreeMap<String, crate::oci::workflow::EventState> {
    use crate::oci::poll;
    let intervals = poll::PollIntervals {
        drain: policy.spec.oci.drain_poll_interval.as_span(),
        maintenance: policy.spec.oci.maintenance_poll_interval.as_span(),
    };
    let due = {
        let polls = ctx.oci_polls.lock().expect("lock");
        poll::due_events(work, events, &polls, &intervals, now)
    };
    let wanted: BTreeMap<String, String> = events
        .iter()
        .filter(|(_, e)| due.contains(*e))
        .map(|(n, e)| (n.clone(), e.clone()))
        .collect();
    let mut states = super::oci_work::event_states(oci, &wanted).await;
    super::oci_work::check_reschedules(oci, work, &wanted, &mut states).await;
    let mut polls = ctx.oci_polls.lock().expect("lock");
    for w in work {
        let Some(event) = wanted.get(&w.name) else {
            continue;
        };
        if let Some(state) = states.get(event) {
            let next = poll::record(
                polls.get(event),
                w.status.phase,
                &state.lifecycle_state,
                &intervals,
                now,
            );
            polls.insert(event.clone(), next);
        }
    }
    states
}

/// Mirror the policy's OCI maintenance events, once per `spec.oci.discoveryInterval`.
/// A failure is reported (log, Warning Event) and retried next interval; it never stops
/// the rolling-reboot pass.
async fn discover_oci(
    ctx: &Context,
    policy: &MaintenancePolicy,
    ns: &str,
    name: &str,
    now: Timestamp,
) {
    let key = format!("{ns}/{name}");
    let every = policy.spec.oci.discovery_interval.as_span();
    let last = ctx.oci_discovered.lock().expect("lock").get(&key).copied();
    if last.is_some_and(|t| t + every > now) {
        return;
    }
    ctx.oci_discovered.lock().expect("lock").insert(key, now);
    let result = async {
        let metrics = ctx.metrics.clone();
        let client = super::oci::client_for_policy(&ctx.client, policy, ctx.env.as_ref())
            .await?
            .with_observer(Arc::new(move |verb: &str, outcome: &str, secs: f64| {
                metrics.oci_call(verb, outcome, secs)
            }));
        let report =
            super::oci::discover(&ctx.client, Some(&ctx.recorder), &client, policy, now).await?;
        let mirrored: Api<crate::api::OciMaintenanceEvent> =
            Api::namespaced(ctx.client.clone(), ns);
        let items = mirrored.list(&ListParams::default()).await?.items;
        ctx.metrics.oci_events(
            ns,
            name,
            items.iter().filter(|o| o.spec.policy == name).map(|o| {
                let approved = o
                    .status
                    .as_ref()
                    .and_then(|s| s.approval.as_ref())
                    .is_some_and(|a| a.approved);
                (o.spec.lifecycle_state.as_str(), approved)
            }),
        );
        ctx.metrics.oci_hard_due_dates(
            ns,
            name,
            items
                .iter()
                .filter(|o| o.spec.policy == name)
                .filter(|o| !crate::oci::approve::is_terminal(&o.spec.lifecycle_state))
                .filter_map(|o| Some((o.name_any(), o.spec.time_hard_due_date?))),
        );
        Ok::<_, super::oci::DiscoveryError>(report)
    }
    .await;
    match result {
        Ok(r) => {
            tracing::info!(policy = %name, events = r.events, created = r.created, approved = r.approved, "OCI discovery")
        }
        Err(e) => {
            tracing::warn!(policy = %name, error = %e, "OCI discovery failed");
            publish(
                ctx,
                &policy.object_ref(&()),
                EventType::Warning,
                "OciDiscoveryFailed",
                "Discover",
                e.to_string(),
            )
            .await;
        }
    }
}

/// The NodeMaintenances labelled with the policy (every one it created carries the label
/// when the name is a valid label value); callers still check `spec.policy`.
fn policy_selector(policy: &str) -> ListParams {
    let lp = ListParams::default();
    if label_value_ok(policy) {
        lp.labels(&format!("{POLICY_LABEL}={policy}"))
    } else {
        lp
    }
}

fn label_value_ok(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric())
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

/// Create a NodeMaintenance owned by `policy` (labels: policy, node, campaign) and write
/// its Pending status. `None` when it exists already: a pass killed after creating it
/// left it for the next pass to find.
pub(super) async fn create_node_maintenance(
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
pub(super) async fn write_work_status(
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
pub(super) async fn record_transition(
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

/// Status first, then the side effects it guards. A failed action is recorded in
/// `lastError` and an Event; the next pass retries what is still needed.
async fn apply_update(
    ctx: &Context,
    nm: &NodeMaintenance,
    u: &WorkUpdate,
    slurm: &dyn SlurmClient,
    max_attempts: u32,
) -> Result<(), Error> {
    let before = nm.status.clone().unwrap_or_default();
    let mut status = u.status.clone();
    status.observed_generation = nm.metadata.generation;
    let current = record_transition(ctx, nm, &before, &status).await?;
    let reference = nm.object_ref(&());
    let mut errors = vec![];
    let mut refused_reboot = None;
    for a in &u.actions {
        let t = Instant::now();
        let r = slurm.execute(a).await;
        ctx.metrics.slurm_call(
            verb(a),
            r.as_ref().map_or_else(|e| e.metric_label(), |_| "ok"),
            t.elapsed().as_secs_f64(),
        );
        match r {
            Ok(done) => {
                tracing::info!(node = %u.node, action = %a.describe(), changed = done.changed, "{}", done.message)
            }
            Err(e) => {
                action_failed(ctx, &reference, &u.node, a, &e).await;
                errors.push(format!("{}: {e}", a.describe()));
                // Refused outright (not a timeout or an unreachable agent, after which the
                // reboot may have been issued): the attempt fails now.
                if matches!(a, Action::Reboot { .. })
                    && matches!(e, SlurmError::Refused { .. } | SlurmError::Slurm { .. })
                    && !e.is_transient()
                {
                    refused_reboot = Some(e.to_string());
                }
            }
        }
    }
    if let Some(why) = refused_reboot {
        let (next, actions) = plan::reboot_refused(
            &work_of(&current),
            &status,
            max_attempts,
            &why,
            (ctx.clock)(),
        );
        record_transition(ctx, &current, &status, &next).await?;
        for a in &actions {
            if let Err(e) = slurm.execute(a).await {
                action_failed(ctx, &reference, &u.node, a, &e).await;
            }
        }
        return Ok(());
    }
    if !errors.is_empty() {
        status.last_error = Some(truncate(&errors.join("; "), 1024));
        write_work_status(ctx, &current, &status).await?;
    }
    Ok(())
}

/// A failed Slurm action: a log line and a Warning Event on the NodeMaintenance.
async fn action_failed(
    ctx: &Context,
    reference: &ObjectReference,
    node: &str,
    a: &Action,
    e: &SlurmError,
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

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
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
    }
}

async fn write_policy_status(
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
async fn degrade(
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
async fn announce_conditions(
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

pub(super) async fn publish(
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
