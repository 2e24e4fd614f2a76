//! Oracle Cloud Infrastructure: a signed REST client for Compute instance maintenance
//! events, work requests and Identity compartments; an emulator of those APIs; and the
//! pure approval logic of the event workflow.

pub mod approve;
pub mod auth;
pub mod client;
pub mod config;
pub mod emulator;
pub mod error;
pub mod model;
pub mod poll;
pub mod retry;
pub mod sign;
pub mod workflow;

#[cfg(test)]
pub(crate) mod tests;

pub use auth::Credentials;
pub use client::{Endpoints, OciClient, Page};
pub use config::ApiKey;
pub use error::OciError;
pub use sign::RequestSigner;
