//! Kubernetes controllers: one reconciler per kind, the decisions they drive, and the operator
//! runtime around them.

pub mod access;
pub mod connector;
pub mod membership;
pub mod runtime;
pub mod wiring;

pub use wiring::{run, run_controllers, run_controllers_with};

use std::time::Duration;

/// Delay before the next attempt on an object after `failures` consecutive failed attempts
/// (1 for the first): `base`, doubled each time, at most `cap`. Both reconcilers back off
/// per object with it.
pub fn retry_delay(base: Duration, cap: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    base.saturating_mul(1 << doublings).min(cap.max(base))
}
