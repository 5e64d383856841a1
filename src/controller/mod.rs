//! Reconcilers, one per kind, and the decisions they drive.

pub mod membership;
