//! slurm-maint: budgeted rolling reboots, Slurm maintenance reservations and OCI
//! maintenance events, driven from Kubernetes custom resources.

pub mod agent;
pub mod api;
pub mod apiserver;
pub mod bench;
pub mod controller;
pub mod demo;
pub mod oci;
pub mod plan;
pub mod sim;
pub mod slurm;
pub mod tls;
