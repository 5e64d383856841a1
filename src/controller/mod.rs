//! Kubernetes controllers: one reconciler per kind, plus the operator runtime.

pub mod membership;
pub mod runtime;

pub use runtime::controllers::run_controllers;
