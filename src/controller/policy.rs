//! The `MaintenancePolicy` reconciler: validate → facts → plan → write and act → status.
//!
//! One pass per policy per `spec.interval` (a spec change runs one at once; the
//! controller's own status writes do not). The facts are gathered by [`super::facts`],
//! the decisions made by [`crate::plan::plan`] with no client, and carried out by
//! [`super::act`]: each status write carries the resourceVersion it was planned from, so
//! a concurrent writer makes it fail with 409 and the pass stops before any side effect.
//! OCI discovery runs in its own loop ([`super::discovery`]); a pass reads its mirrors.

use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use kube::{Api, Resource, ResourceExt};

use super::write::{announce_conditions, degrade, namespace, publish, write_policy_status};
use super::{Context, Error, act, blockers, checks, facts, oci_work};
use crate::api::node_maintenance::NodeMaintenancePhase as Phase;
use crate::api::{MaintenancePolicy, NodeMaintenance};
use crate::plan::status::{Mode, policy_status, reason};
use crate::plan::{self, Action, Plan, Settings, Snapshot, Work};

const CONTROLLER: &str = "policy";

/// The shortest wait between two passes of a policy, however soon something is due.
pub const MIN_WAKE: jiff::SignedDuration = jiff::SignedDuration::from_secs(1);

/// The wait after a pass at `now`: the interval, or less when the plan says something
/// is due sooner (never under [`MIN_WAKE`]).
pub fn wait_after(
    interval: jiff::SignedDuration,
    now: Timestamp,
    due: Option<Timestamp>,
) -> jiff::SignedDuration {
    due.map_or(interval, |d| {
        d.duration_since(now)
            .clamp(MIN_WAKE, interval.max(MIN_WAKE))
    })
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
        let due = ctx.next_due.lock().expect("lock").get(&key).copied();
        let next = last + wait_after(interval, last, due);
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
        .list(&facts::policy_selector(&name))
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

async fn pass(policy: &MaintenancePolicy, ctx: &Context, now: Timestamp) -> Result<Requeue, Error> {
    let (ns, name) = (namespace(policy)?, policy.name_any());
    let requeue = Requeue::requeue(ctx.pace.real(policy.spec.interval.as_span()));
    // What a good pass said is due does not outlive it: a pass that cannot see Slurm
    // waits the interval.
    let key = format!("{ns}/{name}");
    ctx.next_due.lock().expect("lock").remove(&key);
    let mut settings = match Settings::from_spec(&policy.spec, now) {
        Ok(s) => s,
        Err(e) => {
            // A malformed spec waits for the next change: no retries.
            degrade(ctx, policy, reason::INVALID_SPEC, e.to_string(), now).await?;
            return Ok(Requeue::await_change());
        }
    };
    let slurm = match ctx.connector.connect(policy).await {
        Ok(c) => c,
        Err(e) => {
            let why = connect_error_reason(&e);
            tracing::warn!(policy = %name, reason = why, error = %e, "Slurm agent not reached");
            degrade(ctx, policy, why, e.to_string(), now).await?;
            return Ok(requeue);
        }
    };
    let snap = match facts::snapshot(ctx, slurm.as_ref(), &settings.partition).await {
        Ok(s) => s,
        Err(e) => {
            let why = crate::plan::status::slurm_error_reason(&e);
            tracing::warn!(policy = %name, partition = %settings.partition, reason = why, error = %e, "no snapshot of the partition");
            degrade(ctx, policy, why, e.to_string(), now).await?;
            return Ok(requeue);
        }
    };
    let mut objects = facts::work_objects(ctx, &ns, &name).await?;
    let dry_run = policy.spec.dry_run;
    if !dry_run {
        act::retries(ctx, &mut objects, &snap.nodes, slurm.as_ref(), now).await?;
    }
    settings.expedited = expedited(&objects);
    settings.blockers = blockers::gather(ctx, policy).await;
    let mut work: Vec<Work> = objects.values().map(facts::work_of).collect();
    let oci = facts::read_oci_events(ctx, policy, &mut work, now).await;
    let health = match &policy.spec.health_checks {
        Some(_) if !dry_run => {
            checks::run(
                ctx,
                slurm.as_ref(),
                policy,
                &objects,
                &work,
                &snap.nodes,
                now,
            )
            .await
        }
        Some(_) => Default::default(),
        None => facts::health(ctx, slurm.as_ref(), &work).await,
    };
    let snapshot = Snapshot {
        health,
        nodes: snap.nodes,
        jobs: snap.jobs,
        reservations: snap.reservations,
        topology: snap.topology,
    };

    let plan = if dry_run {
        let mut all = work.clone();
        if policy.spec.oci.enabled {
            let _round = ctx.mirrors.read().await;
            all.extend(facts::planned_oci_work(ctx, policy, &ns, &objects, now).await);
        }
        plan::plan_as_if_created(&name, &settings, &snapshot, &all, now)
    } else {
        plan::plan(&name, &settings, &snapshot, &work, now)
    };

    if !dry_run {
        let webhook = match policy
            .spec
            .health_checks
            .as_ref()
            .and_then(|h| h.webhook.as_ref())
        {
            Some(hook) => Some(checks::webhook_url(ctx, policy, hook).await),
            None => None,
        };
        let effects = act::Effects {
            slurm: slurm.as_ref(),
            oci: oci.as_ref(),
            max_attempts: settings.max_attempts,
            policy,
            webhook: webhook
                .as_ref()
                .map(|r| r.as_deref().map_err(String::as_str)),
        };
        act::carry_out(ctx, policy, &objects, &plan, &effects, now).await?;
        if policy.spec.oci.enabled {
            let _round = ctx.mirrors.read().await;
            if let Err(e) = oci_work::spawn(ctx, policy, &ns, &objects, now).await {
                tracing::warn!(policy = %name, error = %e, "OCI work not created");
            }
        }
    }
    report(ctx, policy, &settings, &work, &plan, now).await?;
    // A dry run changes nothing, so nothing it plans comes due.
    let due = plan.next_due.filter(|_| !dry_run);
    match due {
        Some(d) => ctx.next_due.lock().expect("lock").insert(key, d),
        None => ctx.next_due.lock().expect("lock").remove(&key),
    };
    let wait = wait_after(policy.spec.interval.as_span(), now, due);
    Ok(Requeue::requeue(ctx.pace.real(wait)))
}

/// Work (by resource name) a person asked to expedite.
fn expedited(
    objects: &std::collections::BTreeMap<String, NodeMaintenance>,
) -> std::collections::BTreeSet<String> {
    objects
        .iter()
        .filter(|(_, nm)| nm.annotations().contains_key(plan::EXPEDITE_ANNOTATION))
        .map(|(n, _)| n.clone())
        .collect()
}

/// The policy's status from the plan, its changed conditions announced, its metrics.
async fn report(
    ctx: &Context,
    policy: &MaintenancePolicy,
    settings: &Settings,
    work: &[Work],
    plan: &Plan,
    now: Timestamp,
) -> Result<(), Error> {
    let previous = policy.status.as_ref();
    let mode = Mode {
        paused: policy.spec.paused,
        dry_run: policy.spec.dry_run,
        acting: settings.reservations_enabled,
        per_node: plan.per_node,
    };
    let generation = policy.metadata.generation;
    let status = policy_status(
        previous,
        generation,
        &settings.partition,
        work,
        plan,
        mode,
        now,
    );
    announce_conditions(ctx, policy, previous, &status).await;
    write_policy_status(ctx, policy, &status).await?;
    let ns = namespace(policy)?;
    ctx.metrics.policy(&ns, &policy.name_any(), &status);
    Ok(())
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration as D, Timestamp};

    #[test]
    fn the_next_pass_comes_when_something_is_due_within_the_interval() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let i = D::from_secs(60);
        assert_eq!(super::wait_after(i, now, None), i);
        assert_eq!(
            super::wait_after(i, now, Some(now + D::from_secs(7))),
            D::from_secs(7)
        );
        assert_eq!(super::wait_after(i, now, Some(now)), super::MIN_WAKE);
        assert_eq!(
            super::wait_after(i, now, Some(now - D::from_secs(5))),
            super::MIN_WAKE
        );
        assert_eq!(super::wait_after(i, now, Some(now + D::from_hours(2))), i);
    }
}
