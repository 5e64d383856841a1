//! User access reviews in the cluster (`AccessReview`, `AccessReviewChunk`,
//! `AccessReviewDecision`; see `docs/reviews.md`).
//!
//! - [`decide`]: the pure decisions (declared memberships, the tally of decisions, what
//!   remediation does with an item).
//! - [`recurrence`]: when a recurring campaign's next period comes, its name and spec.
//! - [`reconcile`]: the `AccessReview` controller that freezes, tallies and remediates
//!   ([`run`]). Decisions are authenticated as approvals are, through
//!   [`admission`](crate::controller::admission).
//! - [`report`]: `okta-ciam-operator review report`, the campaign's evidence from the cluster.

pub mod decide;
pub mod reconcile;
pub mod recurrence;
pub mod report;

pub use reconcile::{Settings, run, run_with};
