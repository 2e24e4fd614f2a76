//! slurm-maint: budgeted rolling reboots, Slurm maintenance reservations and OCI
//! maintenance events, driven from Kubernetes custom resources.

pub mod agent;
pub mod api;
pub mod apiserver;
pub mod plan;
pub mod slurm;
pub mod tls;
