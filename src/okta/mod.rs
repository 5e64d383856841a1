//! Client for the Okta Management API. Knows nothing of Kubernetes.
//!
//! - [`auth`]: the [`Auth`] trait and SSWS API tokens.
//! - [`oauth`]: OAuth 2.0 service apps (`private_key_jwt`, DPoP).
//! - [`domain`]: validation of the org domain.
//! - [`client`]: typed operations, lazy pagination, pacing, retries.
//! - [`budget`]: an org's rate-limit state and concurrency bound, shareable by its clients.
//! - [`models`]: serde models with the spec's field names.
//! - [`stats`]: request counters.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use futures::TryStreamExt;
//! use okta_ciam_operator::okta::*;
//!
//! let domain = OrgDomain::parse("acme.okta.com", &DomainPolicy::default())?;
//! let auth = Arc::new(SswsAuth::new(ApiToken::new(std::env::var("OKTA_API_TOKEN")?)));
//! let client = OktaClient::new(domain, auth, ClientOptions::default())?;
//! client.get_org().await?; // validates the credentials
//! let query = UserQuery { search: Some(r#"profile.email co "@example.com""#.into()), limit: Some(200), ..Default::default() };
//! let mut pages = client.list_users(&query);
//! while let Some(page) = pages.try_next().await? {
//!     for user in page { println!("{}", user.profile.login); }
//! }
//! println!("{:?}", client.stats());
//! # Ok(()) }
//! ```

pub mod auth;
pub mod budget;
pub mod client;
pub mod domain;
pub mod error;
pub mod models;
pub mod oauth;
mod paging;
mod ratelimit;
pub mod stats;

pub use auth::{ApiToken, Auth, Credentials, RequestAuth, SswsAuth};
pub use budget::OrgBudget;
pub use client::{ClientOptions, MAX_PAGES, MAX_RESPONSE_BYTES, OktaClient, Pages};
pub use domain::{DomainError, DomainPolicy, OrgDomain};
pub use error::{Error, OktaErrorInfo, Result};
pub use models::*;
pub use oauth::{OAuthAuth, OAuthConfig, PrivateKey};
pub use stats::ClientStats;
