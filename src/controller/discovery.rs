//! OCI discovery, its own loop: every policy with `spec.oci.enabled` has its tenancy's
//! maintenance events mirrored into `OciMaintenanceEvent`s, with decisions, once per
//! `spec.oci.discoveryInterval` ([`super::oci::discover`]). The policy pass only reads
//! the mirrors. Only the leader discovers.
//!
//! The loop looks at the policies every [`LOOK_EVERY`] (virtual time), so a new policy
//! is discovered within that; a clock that has not moved since the last look is not
//! looked at again. Under a virtual clock ([`Context::tick`]) a tick makes it
//! look at once, and the policy passes of that tick run after it, so a driver of the clock
//! sees one order of events on any machine.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use kube::api::ListParams;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use super::Context;
use super::write::publish;
use crate::api::MaintenancePolicy;

/// How often the loop looks for policies whose discovery is due.
pub const LOOK_EVERY: SignedDuration = SignedDuration::from_secs(30);

/// Run discovery until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    policies: Api<MaintenancePolicy>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut ticks = ctx.discovery_ticks.subscribe();
    tokio::pin!(shutdown);
    let mut ticked = false;
    let mut looked_at: Option<Timestamp> = None;
    loop {
        // A clock that has not moved makes nothing due (under a fast virtual pace the
        // sleep below is 10 ms): no list then.
        let now = (ctx.clock)();
        if ticked || looked_at != Some(now) {
            tokio::select! {
                _ = &mut shutdown => return,
                ran = look(&ctx, &policies, now) => if ran { looked_at = Some(now) },
            }
        }
        if ticked {
            ctx.clock_moved.send_modify(|n| *n = n.wrapping_add(1));
        }
        ticked = tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(ctx.pace.real(LOOK_EVERY)) => false,
            r = ticks.changed() => match r {
                Ok(()) => true,
                Err(_) => return,
            },
        };
    }
}

/// One look at `now`: every policy whose discovery is due is discovered. False when it
/// could not look (not the leader, the policies not listed).
async fn look(ctx: &Context, policies: &Api<MaintenancePolicy>, now: Timestamp) -> bool {
    if !ctx.leadership.is_leader() {
        return false;
    }
    let list = match policies.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            tracing::warn!(error = %e, "policies not listed for OCI discovery");
            return false;
        }
    };
    let _round = ctx.mirrors.write().await;
    for p in list.iter().filter(|p| p.spec.oci.enabled) {
        if p.meta().deletion_timestamp.is_some() {
            continue;
        }
        let (Some(ns), name) = (p.namespace(), p.name_any()) else {
            continue;
        };
        discover_policy(ctx, p, &ns, &name, now).await;
    }
    true
}

/// Mirror the policy's OCI maintenance events when its `spec.oci.discoveryInterval` has
/// passed. A failure is reported (log, Warning Event) and retried next interval.
pub async fn discover_policy(
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
