//! Just-in-time access requests with authenticated approvals.
//!
//! - [`decide`]: the pure decisions (allowed under the policy, vote counting, phases).
//! - [`admission`](crate::controller::admission): the fail-closed check of the shipped
//!   ValidatingAdmissionPolicy, shared with user access reviews.
//! - [`reconcile`]: the `AccessRequest` controller that ties them together ([`run`]).
//! - [`cli`]: `okta-ciam-operator access ...` / `kubectl okta ...` for people.

pub mod cli;
pub mod decide;
pub mod reconcile;

pub use reconcile::{FINALIZER, Settings, run, run_with};
