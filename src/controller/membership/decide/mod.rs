//! Pure decisions for `GroupMembership` provisioning: no Kubernetes, no HTTP, no clock.
//!
//! The reconciler gathers facts ([`Input`]), calls [`decide`], performs the writes the
//! [`Plan`] asks for, then calls [`Plan::settle`] with the write failures to get the
//! [`Outcome`]: the ownership record to store, the status to write, the Events to emit,
//! whether the finalizer may go, and when to requeue.
//!
//! # Guard rails
//! Checked before any Okta write, in this order; the first failure decides the reason:
//! connector ([`check_connector`]: missing, not ready, `provisioning: false`, suspended),
//! group ([`check_group`]: not found, renamed since it was resolved, not `OKTA_GROUP`,
//! outside the group-name filter; a renamed group found by its recorded id still admits
//! letting go of the operator's grants, see [`check_group_for`]),
//! then, for grants only, the grant policy ([`check_grant_policy`]: with `--require-policy`
//! no `AccessPolicy` allows the namespace to grant the group, then the group holds an Okta
//! admin role that no policy names exactly with `allowPrivileged`),
//! then each user ([`check_user`]: not found, ambiguous, outside the email domains,
//! not active). A connector or group refusal stops every grant for the group; a grant-policy
//! refusal stops every grant of the group, and the memberships the declaration already holds
//! stay until it lets go of them; a user refusal stops grants for that user only.
//!
//! Revoking the operator's own grants (an expiry, a deletion, an entry removed from the spec)
//! passes far fewer rails ([`check_revocation`], [`check_group_to_let_go`]): the connector
//! must exist, not be suspended, and have a working Okta client, and the group must be found
//! (by name or recorded id) and be an `OKTA_GROUP`. Operator or connector `provisioning`
//! off, a connector that is not Ready, a narrowed group-name filter or email domains never
//! strand a grant. A revocation that cannot be made says why (reason `RevocationWaiting`).
//! Removals are also subject to the connector's circuit breaker, asked by the reconciler after
//! the decision ([`Plan::hold_revocations`], reason `RevocationHeld`).
//!
//! A user looked up in the connector's index is as of its last sync, so before the
//! write-ahead record the reconciler reads every such user the plan would PUT
//! ([`unconfirmed_grants`]) again from Okta, and decides again with Okta's answer wherever
//! [`check_user`] now answers differently ([`reconfirm`]).
//!
//! # Ownership record
//! One [`GroupRecord`] per Okta group (shared by every `GroupMembership` that names the
//! group through connectors of the same org) says, per user id, whether the membership
//! was [`Origin::Granted`] by the operator or [`Origin::Preexisting`], and which
//! `GroupMembership` objects (the *claimants*, keyed by [`Input::owner`]) hold it.
//! A membership is revoked only when it was granted by the operator, is observed in Okta,
//! its last claimant lets go, and no other live declaration ([`Input::others`]) names it.
//! Preexisting memberships are never revoked. Deletion with `Retain` only drops this
//! object's claims: the membership stays in Okta and, once unclaimed, counts as
//! preexisting for any later declaration.
//!
//! Storage (the reconciler's choice, with these requirements): the record lives in the
//! cluster, one object per (Okta org, group id), e.g. a ConfigMap holding
//! [`GroupRecord::encode`]; it is keyed by org and group rather than by connector because
//! two connectors may point at the same org. Owner keys must be stable across restarts
//! (`namespace/name`). `effectiveSince` must be kept in the `GroupMembership` status so a
//! `duration` expiry survives restarts.
//!
//! User guard rails gate grants only: revoking a membership the operator itself granted
//! is allowed even if the user has since left the email domains.
//!
//! A lost record (the ConfigMap deleted, a backup restored from before a grant) would read
//! the operator's grants as preexisting. So each round first compares the record with the
//! object's own previous status ([`lost_grants`]): a row the status shows `Granted` with
//! origin `Granted` that the record no longer gives to this object is recorded again
//! ([`Plan::lost_ownership`], reason `OwnershipRecordLost`), and is revoked at expiry or
//! deletion as before. A declared user whose lookup fails keeps its claim through
//! the `userId` of the previous status, so a flaky lookup never reads as a removal; and
//! while any declared entry is not looked up, a live round revokes no claim it cannot
//! match to a resolved entry (the unresolved entry may name it).
//!
//! # Crash-safety protocol (the reconciler must follow it)
//! 1. Read the record **fresh** (a GET, not an informer cache) and remember its
//!    `resourceVersion`; then read the group's members from Okta.
//! 2. `let plan = decide(&input)`.
//! 3. If `plan.record != input.record`, write `plan.record` with the `resourceVersion`
//!    precondition **before any Okta write**; on a conflict, start again at 1.
//!    This is the write-ahead intent: a grant is recorded as `Granted` and claimed before
//!    the PUT, so a crash after the PUT can never make the membership look preexisting.
//!    A revoked membership stays in the record until the DELETE is confirmed, so a crash
//!    before the DELETE cannot orphan a grant the operator still owns.
//! 4. PUT every [`Plan::grants`] and DELETE every [`Plan::revokes`] (both idempotent in
//!    Okta), collecting failures as [`WriteError`]s keyed by user id. A definite refusal
//!    of a PUT ([`WriteError::Refused`], [`WriteError::NotFound`]) releases the intent; an
//!    unknown outcome ([`WriteError::Failed`]) keeps it. Failure messages must be stable
//!    (no per-response ids), or every retry would rewrite the status.
//! 5. `let out = plan.settle(&failures)`. If `out.record != plan.record`, write it
//!    (precondition again; on conflict just requeue: the next round converges).
//! 6. Write the status from `out` (users, conditions, `groupId`, `expiresAt`,
//!    `effectiveSince`), emit `out.events`, remove the finalizer when
//!    `out.remove_finalizer` (only after the record write succeeded), and requeue at
//!    `out.requeue_at` (exact expiry) or with backoff ([`retry_delay`]) when `out.retry`.
//!    A record that cannot be located lets a deletion finish only as [`finish_unlocated`]
//!    says.
//!
//! Several rounds of one group may run as one batch: each decides on the record as the plans
//! before it left it (so the last plan's record holds every intent of the batch and is written
//! once, before any of their Okta writes), and each settles on the record as the settles
//! before it left it (so the last outcome's record is written once). A round that touches a
//! user another round of the batch writes waits for the next batch.
//!
//! Crashing anywhere converges on the next round: before 3 nothing happened; between 3
//! and 4 the intent is re-planned (a grant still missing is granted again, a membership
//! already gone is released without a write); between 4 and 5 a granted membership is
//! found in Okta with a `Granted` record, a revoked one is absent and its claim released.
//! The one ambiguity no protocol removes: if an intent was recorded, the PUT never ran,
//! and someone added the same membership by hand before the next round, the operator
//! treats it as its own. Its twin, from [`lost_grants`]: if a round recorded a revoke (or a
//! release) and crashed before its status write, and someone added the same membership by hand
//! before the next round, the stale status makes the operator take it for its own grant.
//! Membership writes are idempotent, so no step has a double effect.

mod facts;
mod gates;
mod ownership;
mod plan;
mod policy;
mod report;
mod round;
mod settle;

pub use facts::*;
pub use gates::*;
pub use ownership::*;
pub use plan::*;
pub use policy::*;
pub use report::*;
pub use round::*;
pub use settle::Outcome;

/// Errors of the membership decision layer (only record decoding can fail).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stored ownership record is not valid JSON of the expected shape.
    #[error("ownership record is malformed: {0}")]
    Decode(#[from] serde_json::Error),
    /// The stored ownership record was written by a newer operator.
    #[error("ownership record version {found} is newer than the supported version {supported}")]
    UnsupportedVersion {
        /// Version found in the record.
        found: u32,
        /// Highest version this build understands.
        supported: u32,
    },
}

/// Result type of this layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
