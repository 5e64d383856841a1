//! okta-ciam-operator: keeps Okta CIAM for Workforce access in step with Kubernetes custom resources.
//!
//! Layers, each with one job:
//! - [`okta`]: HTTP client for the Okta Management API (knows nothing of Kubernetes).
//! - [`sync`]: reads an org's access state through a connector's filters into a snapshot.
//! - [`review`]: user access reviews over a snapshot (items, workbook, remediation plan).
//! - [`crd`]: the custom resource types.
//! - [`controller`]: one reconciler per kind, plus the operator runtime.
//! - [`cli`]: the command line.

#![warn(missing_docs)]

pub mod cli;
pub mod controller;
pub mod crd;
pub mod okta;
pub mod review;
pub mod sync;
