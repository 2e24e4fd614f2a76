//! The one state machine every piece of work follows, whatever its action:
//!
//! ```text
//! Pending → Reserved → PendingReboot → Rebooting → Recovering → HealthCheck → Completed
//!                                                                           ↘ Failed
//! ```
//!
//! The action decides only how a node is taken out (a reservation at the end of its jobs,
//! or a drain before OCI's window), how it is "rebooted" (Slurm's reboot, or OCI's event
//! scheduled) and how its return is recognised (a new BootTime, or the event SUCCEEDED and
//! the node responding): [`super::reboot`] and [`super::oci`] hold those parts; this file
//! holds the table and what every action shares. Admission (`Pending → Reserved`) is
//! [`super::admission`], under one budget for all work.

use super::index::Ctx;
use super::{Action, Work, oci, reboot};
use crate::api::node_maintenance::{
    MaintenanceAction, NodeMaintenancePhase as Phase, NodeMaintenanceStatus,
};

/// Advance one piece of work by one pass; returns the actions to carry out after its
/// status is written.
pub(super) fn step(ctx: &Ctx<'_>, w: &Work, st: &mut NodeMaintenanceStatus) -> Vec<Action> {
    use MaintenanceAction::{OciMaintenance as Oci, Reboot};
    if let Some(actions) = match w.action {
        Reboot => reboot::precheck(ctx, w, st),
        Oci => oci::precheck(w),
    } {
        return actions;
    }
    match (st.phase, w.action) {
        (Phase::Pending, Reboot) => vec![],
        (Phase::Pending, Oci) => oci::catch_up(ctx, w, st),
        (Phase::Reserved, Reboot) => reboot::taken_out(ctx, w, st),
        (Phase::Reserved | Phase::PendingReboot, Oci) => oci::taken_out(ctx, w, st),
        (Phase::PendingReboot, Reboot) => reboot::reboot(ctx, w, st),
        (Phase::Rebooting | Phase::Recovering, Reboot) => reboot::returned(ctx, w, st),
        (Phase::Rebooting, Oci) => oci::rebooting(ctx, w, st),
        (Phase::Recovering, Oci) => oci::returned(ctx, w, st),
        (Phase::HealthCheck, Reboot) => reboot::health_check(ctx, w, st),
        (Phase::HealthCheck, Oci) => oci::health_check(ctx, w, st),
        (Phase::Completed | Phase::Failed, Reboot) => reboot::ended(ctx, w),
        (Phase::Completed | Phase::Failed, Oci) => vec![],
    }
}
