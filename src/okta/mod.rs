//! Client for the Okta Management API. Knows nothing of Kubernetes.
//!
//! - [`auth`]: the API token and the `Authorization` header.
//! - [`domain`]: validation of the org domain.
//! - [`client`]: typed operations, lazy pagination, pacing, retries.
//! - [`models`]: serde models with the spec's field names.
//! - [`stats`]: request counters.

pub mod auth;
pub mod client;
pub mod domain;
pub mod error;
pub mod models;
mod paging;
mod ratelimit;
pub mod stats;

pub use auth::{ApiToken, Auth, SswsAuth};
pub use client::{ClientOptions, OktaClient, Pages};
pub use domain::{DomainError, DomainPolicy, OrgDomain};
pub use error::{Error, OktaErrorInfo, Result};
pub use models::*;
pub use stats::ClientStats;
