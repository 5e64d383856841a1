//! Kubernetes controllers: one reconciler per kind, the decisions they drive, and the operator
//! runtime around them.

pub mod membership;
pub mod runtime;

pub use runtime::controllers::run_controllers;
