//! `GroupMembership` provisioning.
//!
//! - [`decide`]: the pure decision layer (guard rails, ownership, expiry, drift).
//! - [`status`]: pure translation between the resource and the decision layer.
//! - [`record`]: ownership records, one ConfigMap per (Okta org, group).
//! - [`indexed`]: exact answers from the connector's last sync, so lookups skip Okta.
//! - [`lookup`]: the round's Okta reads and writes through the connector's shared client.
//! - [`batch`]: the rounds of one group run in batches that share the record's reads and writes.
//! - [`policies`]: the grant-policy gate's facts (AccessPolicies, namespace labels, the owning
//!   AccessRequest, the group's admin roles).
//! - [`members`]: group member lists shared by the rounds of one group for a short while.
//! - [`reconcile`]: the controller that ties them together ([`run`]).

pub mod batch;
pub mod decide;
pub mod indexed;
pub mod lookup;
pub mod members;
pub mod policies;
pub mod reconcile;
pub mod record;
pub mod status;

pub use reconcile::{FINALIZER, Settings, run, run_with};
