//! The custom resource types (`oktaciam.io/v1alpha1`): `OktaCiamConnector`, `GroupMembership`,
//! for just-in-time access `AccessPolicy`, `AccessRequest` and `AccessApproval`, and for user
//! access reviews `AccessReview`, `AccessReviewChunk` and `AccessReviewDecision`.
//!
//! Types only, plus pure spec validation and condition helpers. The YAML under `crds/` is
//! generated from these types by `okta-ciam-operator crdgen` and checked by `tests/integration/crd_drift.rs`.

pub mod access;
pub mod cli;
pub mod condition;
pub mod connector;
pub mod membership;
pub mod review;

use std::path::PathBuf;

pub use access::{
    AccessApproval, AccessApprovalSpec, AccessPhase, AccessPolicy, AccessPolicySpec, AccessRequest,
    AccessRequestSpec, AccessRequestStatus, Decision, Identity, RequestRef, RequestRules, Subjects,
};
pub use condition::{ConditionStatus, ConditionType};
pub use connector::{
    ConnectorReason, ConnectorStatus, OktaCiamConnector, OktaCiamConnectorSpec, OktaRequestStats,
    RateLimitSpec, SecretKeyRef, SyncCounts, ValidConnectorSpec,
};
pub use membership::{
    ConnectorRef, DeletionPolicy, GroupMembership, GroupMembershipSpec, GroupRef, MembershipOrigin,
    MembershipStatus, UserMembershipState, UserMembershipStatus,
};
pub use review::{
    AccessReview, AccessReviewChunk, AccessReviewChunkSpec, AccessReviewChunkStatus,
    AccessReviewDecision, AccessReviewDecisionSpec, AccessReviewSpec, AccessReviewStatus,
    Recurrence,
};

/// The API group of every kind.
pub const GROUP: &str = "oktaciam.io";
/// The served and stored API version of every kind.
pub const VERSION: &str = "v1alpha1";
/// The field manager the operator uses for every server-side apply.
pub const FIELD_MANAGER: &str = "okta-ciam-operator";

/// Failures of this layer: an invalid spec, or writing the generated CRDs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec breaks one or more rules; each entry names the field and what is wrong.
    #[error("invalid spec: {}", .0.join("; "))]
    InvalidSpec(Vec<String>),
    /// A CRD could not be rendered as YAML.
    #[error("cannot render CRD as YAML: {0}")]
    Render(#[from] serde_yaml::Error),
    /// A generated CRD could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file that could not be written.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

/// Result type of this layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
