//! `GroupMembership` provisioning.
//!
//! [`decide`] holds the pure decision layer (guard rails, ownership, expiry, drift); the
//! reconciler that performs Kubernetes and Okta I/O is built on top of it.

pub mod decide;
