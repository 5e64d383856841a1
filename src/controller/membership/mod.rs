//! `GroupMembership` provisioning.
//!
//! - [`decide`]: the pure decision layer (guard rails, ownership, expiry, drift).
//! - [`status`]: pure translation between the resource and the decision layer.
//! - [`record`]: ownership records, one ConfigMap per (Okta org, group).
//! - [`lookup`]: the round's Okta reads and writes through the connector's shared client.
//! - [`reconcile`]: the controller that ties them together ([`run`]).

pub mod decide;
pub mod lookup;
pub mod reconcile;
pub mod record;
pub mod status;

pub use reconcile::{FINALIZER, Settings, run, run_with};
