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
//! then each user ([`check_user`]: not found, ambiguous, outside the email domains,
//! suspended or deprovisioned). A connector or group refusal stops every write for the
//! group; a user refusal stops writes for that user only.
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
//! is allowed even if the user has since left the email domains (the connector and group
//! guard rails still apply). A declared user whose lookup fails keeps its claim through
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
//! Crashing anywhere converges on the next round: before 3 nothing happened; between 3
//! and 4 the intent is re-planned (a grant still missing is granted again, a membership
//! already gone is released without a write); between 4 and 5 a granted membership is
//! found in Okta with a `Granted` record, a revoked one is absent and its claim released.
//! The one ambiguity no protocol removes: if an intent was recorded, the PUT never ran,
//! and someone added the same membership by hand before the next round, the operator
//! treats it as its own. Membership writes are idempotent, so no step has a double effect.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::sync::scope::{EmailDomains, GroupNameFilter};

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

/// How many users a message names before it says "and N more".
const NAMED_USERS: usize = 10;

// ---------------------------------------------------------------------------------------
// Facts the reconciler gathers
// ---------------------------------------------------------------------------------------

/// What the decision needs to know about the referenced `OktaCiamConnector`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorFacts {
    /// Connector name, for messages.
    pub name: String,
    /// The connector's `Ready` condition is True.
    pub ready: bool,
    /// `spec.provisioning` is true (membership writes allowed).
    pub provisioning: bool,
    /// The connector is suspended.
    pub suspended: bool,
    /// The connector's email domains: the tenant boundary for users.
    pub email_domains: Vec<String>,
    /// The connector's group-name filter (case-insensitive "contains"); `None` = all groups.
    pub group_name_filter: Option<String>,
}

/// An Okta group as looked up by id or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OktaGroup {
    /// Okta group id (`00g...`).
    pub id: String,
    /// `profile.name`.
    pub name: String,
    /// `type`: `OKTA_GROUP`, `APP_GROUP`, `BUILT_IN`.
    pub group_type: String,
}

/// Result of looking the declared group up in Okta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupLookup {
    /// Not looked up (the connector was refused, so there was no client to ask).
    NotLookedUp,
    /// No such group (404 by id, or no exact name match).
    NotFound,
    /// Found.
    Found(OktaGroup),
    /// The declared name matches no group, but the id recorded in status does: the group
    /// was renamed since it was resolved.
    Renamed {
        /// The group as Okta now has it.
        group: OktaGroup,
        /// The name the spec declares.
        declared: String,
    },
}

/// An Okta user as found for a declared entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OktaUser {
    /// Okta user id (`00u...`).
    pub id: String,
    /// `profile.login`.
    pub login: String,
    /// `profile.email` (`profile.secondEmail` never counts).
    pub email: Option<String>,
    /// Okta status, e.g. `ACTIVE`, `SUSPENDED`, `DEPROVISIONED`.
    pub status: String,
}

/// Result of resolving one declared entry (login, email or id) to an Okta user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserLookup {
    /// Not looked up (connector or group refused).
    NotLookedUp,
    /// No user matches.
    NotFound,
    /// Several users match (e.g. the value is one user's login and another's email).
    Ambiguous {
        /// How many users matched.
        matches: usize,
    },
    /// Exactly one user.
    Found(OktaUser),
}

/// One entry of `spec.users` with its lookup result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredUser {
    /// The entry as written in the spec.
    pub user: String,
    /// What Okta says about it.
    pub lookup: UserLookup,
}

/// `spec.deletionPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeletionPolicy {
    /// Revoke the memberships this object owns (default).
    Revoke,
    /// Leave memberships in Okta and only drop this object's claims.
    Retain,
}

/// Whether the `GroupMembership` is live or being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Not being deleted.
    Live,
    /// `metadata.deletionTimestamp` is set.
    Deleting(DeletionPolicy),
}

/// `spec.expiresAt` / `spec.duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Never expires.
    Never,
    /// Expires at this instant (editing it extends or shortens the grant).
    At(Timestamp),
    /// Expires this long after the grant first became effective.
    After(SignedDuration),
}

impl Expiry {
    /// The resolved expiry instant, given when the grant first became effective.
    pub fn resolve(self, effective_since: Option<Timestamp>) -> Option<Timestamp> {
        match self {
            Expiry::Never => None,
            Expiry::At(at) => Some(at),
            // An overflowing duration means "effectively never".
            Expiry::After(d) => effective_since.and_then(|s| s.checked_add(d).ok()),
        }
    }
}

/// Whether a declaration's grant has expired at `now`.
fn is_expired(expiry: Expiry, effective_since: Option<Timestamp>, now: Timestamp) -> bool {
    expiry.resolve(effective_since).is_some_and(|at| now >= at)
}

/// Whether a `GroupMembership` counts as a live declaration for [`Input::others`]: not
/// being deleted and not expired. Use it when building `others` from the other objects.
pub fn is_live(
    lifecycle: Lifecycle,
    expiry: Expiry,
    effective_since: Option<Timestamp>,
    now: Timestamp,
) -> bool {
    lifecycle == Lifecycle::Live && !is_expired(expiry, effective_since, now)
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone)]
pub struct Input {
    /// The operator-wide provisioning switch ([`check_operator`]); false refuses every write.
    pub provisioning: bool,
    /// This object's key in ownership records (e.g. `namespace/name`; stable across restarts).
    pub owner: String,
    /// The referenced connector; `None` when it does not exist.
    pub connector: Option<ConnectorFacts>,
    /// The declared group.
    pub group: GroupLookup,
    /// `spec.users` in spec order, resolved.
    pub users: Vec<DeclaredUser>,
    /// User ids currently members of the group in Okta (ignored unless the group was found).
    pub members: BTreeSet<String>,
    /// The ownership record of the group, read fresh.
    pub record: GroupRecord,
    /// Whether [`Input::record`] was read from the cluster (a connector domain and a group
    /// id were known). When it was not, each row keeps the origin the previous status
    /// showed, so a later deletion still sees (and reports) the claim.
    pub record_located: bool,
    /// The group id the record was located by: this round's lookup, else the previous
    /// `status.groupId`. While the group is not looked up ([`GroupLookup::NotLookedUp`]:
    /// the operator or the connector refused, or a lookup failed) it stays
    /// `status.groupId`, so the next round, and a deletion, still find the record.
    pub group_id: Option<String>,
    /// Other *live* ([`is_live`]) `GroupMembership`s of the same group: owner key -> the
    /// user ids they declare (their `status.users[].userId`; claims they already hold are
    /// in the record anyway).
    pub others: BTreeMap<String, BTreeSet<String>>,
    /// Live or being deleted.
    pub lifecycle: Lifecycle,
    /// Expiry as declared.
    pub expiry: Expiry,
    /// From status: when the grant first became effective (first user Granted).
    pub effective_since: Option<Timestamp>,
    /// From status: the per-user rows of the previous round.
    pub previous: Vec<UserStatus>,
    /// The current time.
    pub now: Timestamp,
}

// ---------------------------------------------------------------------------------------
// Reasons, states, conditions, events
// ---------------------------------------------------------------------------------------

/// Condition and per-user reasons. Declaration order is importance: the most important
/// reason among a set is the smallest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// The spec cannot be acted on (see [`validate`](super::status::validate)): nothing is
    /// looked up or written until it changes.
    InvalidSpec,
    /// The referenced connector does not exist.
    ConnectorNotFound,
    /// The connector is not Ready.
    ConnectorNotReady,
    /// The connector has `provisioning: false`.
    ProvisioningDisabled,
    /// The connector is suspended.
    ConnectorSuspended,
    /// The group does not exist in Okta.
    GroupNotFound,
    /// The group found by its recorded id no longer has the declared name: nothing is
    /// granted until the spec names it again, but the operator still lets go of its grants.
    GroupRenamed,
    /// The group is not an `OKTA_GROUP`, so its membership is owned elsewhere.
    GroupNotOktaManaged,
    /// The group's name is outside the connector's group-name filter.
    GroupOutOfScope,
    /// The user is outside the connector's email domains.
    UserOutOfScope,
    /// No Okta user matches the entry.
    UserNotFound,
    /// Several Okta users match the entry.
    UserAmbiguous,
    /// The user is suspended or deprovisioned.
    UserInactive,
    /// Okta refused or failed a DELETE.
    RevokeFailed,
    /// Okta refused or failed a PUT.
    GrantFailed,
    /// Waiting for something (e.g. a lookup) before acting.
    Pending,
    /// The object is being deleted.
    Deleting,
    /// The grant has expired.
    Expired,
    /// The expiry is in the future.
    NotExpired,
    /// No expiry is set (or a duration has not started yet).
    NoExpiry,
    /// The membership was revoked.
    Revoked,
    /// The membership was left in Okta (preexisting, shared, or `Retain`).
    Retained,
    /// The membership existed before it was declared.
    Preexisting,
    /// The membership was granted by the operator.
    Granted,
}

impl Reason {
    /// The CamelCase string used in conditions and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidSpec => "InvalidSpec",
            Reason::ConnectorNotFound => "ConnectorNotFound",
            Reason::ConnectorNotReady => "ConnectorNotReady",
            Reason::ProvisioningDisabled => "ProvisioningDisabled",
            Reason::ConnectorSuspended => "ConnectorSuspended",
            Reason::GroupNotFound => "GroupNotFound",
            Reason::GroupRenamed => "GroupRenamed",
            Reason::GroupNotOktaManaged => "GroupNotOktaManaged",
            Reason::GroupOutOfScope => "GroupOutOfScope",
            Reason::UserOutOfScope => "UserOutOfScope",
            Reason::UserNotFound => "UserNotFound",
            Reason::UserAmbiguous => "UserAmbiguous",
            Reason::UserInactive => "UserInactive",
            Reason::RevokeFailed => "RevokeFailed",
            Reason::GrantFailed => "GrantFailed",
            Reason::Pending => "Pending",
            Reason::Deleting => "Deleting",
            Reason::Expired => "Expired",
            Reason::NotExpired => "NotExpired",
            Reason::NoExpiry => "NoExpiry",
            Reason::Revoked => "Revoked",
            Reason::Retained => "Retained",
            Reason::Preexisting => "Preexisting",
            Reason::Granted => "Granted",
        }
    }
}

impl Reason {
    /// Every reason, for documentation and exhaustive tests (the Argo CD health check's).
    pub const ALL: [Reason; 24] = [
        Reason::InvalidSpec,
        Reason::ConnectorNotFound,
        Reason::ConnectorNotReady,
        Reason::ProvisioningDisabled,
        Reason::ConnectorSuspended,
        Reason::GroupNotFound,
        Reason::GroupRenamed,
        Reason::GroupNotOktaManaged,
        Reason::GroupOutOfScope,
        Reason::UserOutOfScope,
        Reason::UserNotFound,
        Reason::UserAmbiguous,
        Reason::UserInactive,
        Reason::RevokeFailed,
        Reason::GrantFailed,
        Reason::Pending,
        Reason::Deleting,
        Reason::Expired,
        Reason::NotExpired,
        Reason::NoExpiry,
        Reason::Revoked,
        Reason::Retained,
        Reason::Preexisting,
        Reason::Granted,
    ];

    /// Whether `Ready=False` with this reason waits for a person to change something (Argo
    /// CD: Degraded) rather than for the operator's own retries, an intended suspension or
    /// the passing of time. The match has no wildcard so a new reason must be placed here.
    pub fn needs_attention(self) -> bool {
        match self {
            Reason::InvalidSpec
            | Reason::ConnectorNotFound
            | Reason::ProvisioningDisabled
            | Reason::GroupNotFound
            | Reason::GroupRenamed
            | Reason::GroupNotOktaManaged
            | Reason::GroupOutOfScope
            | Reason::UserOutOfScope
            | Reason::UserNotFound
            | Reason::UserAmbiguous
            | Reason::UserInactive => true,
            Reason::ConnectorNotReady
            | Reason::ConnectorSuspended
            | Reason::RevokeFailed
            | Reason::GrantFailed
            | Reason::Pending
            | Reason::Deleting
            | Reason::Expired
            | Reason::NotExpired
            | Reason::NoExpiry
            | Reason::Revoked
            | Reason::Retained
            | Reason::Preexisting
            | Reason::Granted => false,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A guard-rail refusal: why no write is made, for a user or a whole group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Machine reason.
    pub reason: Reason,
    /// Human message.
    pub message: String,
}

impl Refusal {
    fn new(reason: Reason, message: String) -> Self {
        Refusal { reason, message }
    }
}

/// Per-user provisioning state (`status.users[].state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserState {
    /// Not yet a member (waiting for a write or a lookup).
    Pending,
    /// A member in Okta.
    Granted,
    /// Refused by a guard rail, or a write failed.
    Failed,
    /// The grant expired and was let go.
    Expired,
    /// Let go because the object is being deleted.
    Revoked,
}

/// Where a membership came from (`status.users[].origin`, and the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// Created by the operator: revocable once nobody declares it.
    Granted,
    /// Existed before it was declared: never removed by the operator.
    Preexisting,
}

/// One row of `status.users` (also the previous round's rows in [`Input::previous`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserStatus {
    /// The entry as declared (or the user id for a removed entry still being let go).
    pub user: String,
    /// Resolved Okta user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// State.
    pub state: UserState,
    /// Origin of the membership, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Reason.
    pub reason: Reason,
    /// Human message.
    pub message: String,
    /// When `state` last changed.
    pub last_transition_time: Timestamp,
}

/// A status condition as decided (the reconciler keeps its own transition times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `True` or `False`.
    pub status: bool,
    /// Reason.
    pub reason: Reason,
    /// Human message, naming users.
    pub message: String,
}

/// Kubernetes Event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something went as intended.
    Normal,
    /// A guard rail refused, or a write failed.
    Warning,
}

/// Reasons of Events beyond [`Reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventReason {
    /// A condition/user reason (refusals, failures, Granted, Revoked, Expired).
    Reason(Reason),
    /// A declared membership removed outside the operator was granted again.
    DriftCorrected,
}

impl EventReason {
    /// The CamelCase string for the Event's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::Reason(r) => r.as_str(),
            EventReason::DriftCorrected => "DriftCorrected",
        }
    }
}

/// An Event to emit on the `GroupMembership`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub event_type: EventType,
    /// Reason.
    pub reason: EventReason,
    /// Message naming the users concerned.
    pub message: String,
}

/// Why a membership write failed, keyed by user id in [`Plan::settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// 404: the user or group no longer exists (a revoke then counts as done).
    NotFound(String),
    /// A definite refusal (a 4xx other than 404 and 429): Okta did not make the change.
    Refused(String),
    /// Any other failure after the client's own retries: the outcome is unknown.
    Failed(String),
}

// ---------------------------------------------------------------------------------------
// Ownership record
// ---------------------------------------------------------------------------------------

/// Current encoding version of [`GroupRecord`].
pub const RECORD_VERSION: u32 = 1;

/// Who holds one membership of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    /// Granted by the operator or preexisting.
    pub origin: Origin,
    /// Owner keys of the `GroupMembership`s holding it.
    pub claimants: BTreeSet<String>,
}

/// The ownership record of one Okta group: user id -> ownership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Memberships the operator granted or adopted as preexisting.
    pub members: BTreeMap<String, Ownership>,
}

#[derive(Serialize)]
struct EncodedRef<'a> {
    v: u32,
    members: &'a BTreeMap<String, Ownership>,
}

#[derive(Deserialize)]
struct Encoded {
    v: u32,
    #[serde(default)]
    members: BTreeMap<String, Ownership>,
}

impl GroupRecord {
    /// Compact, deterministic JSON (sorted keys) for an annotation or ConfigMap value.
    pub fn encode(&self) -> String {
        let encoded = EncodedRef {
            v: RECORD_VERSION,
            members: &self.members,
        };
        serde_json::to_string(&encoded).expect("a map of strings always serialises")
    }

    /// Parses [`GroupRecord::encode`] output; an empty string is an empty record.
    pub fn decode(text: &str) -> Result<Self> {
        if text.trim().is_empty() {
            return Ok(GroupRecord::default());
        }
        let encoded: Encoded = serde_json::from_str(text)?;
        if encoded.v > RECORD_VERSION {
            return Err(Error::UnsupportedVersion {
                found: encoded.v,
                supported: RECORD_VERSION,
            });
        }
        Ok(GroupRecord {
            members: encoded.members,
        })
    }

    /// Whether `owner` holds any membership of this group.
    pub fn claimed_by(&self, owner: &str) -> bool {
        self.members.values().any(|o| o.claimants.contains(owner))
    }

    /// Drops `owner`'s claim on `user_id` and any other live declarers join; an entry left
    /// without claimants is removed.
    fn release(&mut self, user_id: &str, owner: &str, declarers: &BTreeSet<&str>) {
        if let Some(entry) = self.members.get_mut(user_id) {
            entry.claimants.remove(owner);
            entry
                .claimants
                .extend(declarers.iter().map(|d| d.to_string()));
            if entry.claimants.is_empty() {
                self.members.remove(user_id);
            }
        }
    }

    fn claim(&mut self, user_id: &str, owner: &str, origin: Origin) {
        let entry = self
            .members
            .entry(user_id.to_string())
            .or_insert_with(|| Ownership {
                origin,
                claimants: BTreeSet::new(),
            });
        entry.origin = origin;
        entry.claimants.insert(owner.to_string());
    }
}

// ---------------------------------------------------------------------------------------
// Guard rails
// ---------------------------------------------------------------------------------------

/// Whether a user is inside the email domains: the sync's rule
/// ([`EmailDomains::user_in_scope`]: the exact, case-insensitive domain after the last `@` of
/// `profile.email`, or of `profile.login` when it contains `@`; `secondEmail` never counts).
/// One implementation for the sync and the guard rail, so a user the snapshot lists is a
/// user provisioning admits. A list with no valid domain admits nobody.
pub fn user_in_scope(user: &OktaUser, email_domains: &[String]) -> bool {
    EmailDomains::new(email_domains)
        .is_ok_and(|domains| domains.user_in_scope(&user.login, user.email.as_deref()))
}

/// Whether a group name passes the connector's filter: the sync's rule
/// ([`GroupNameFilter::matches`]: case-insensitive, anywhere). No filter or an empty one
/// admits every group; a filter the sync would refuse admits none.
pub fn group_in_scope(name: &str, filter: Option<&str>) -> bool {
    match GroupNameFilter::new(filter.unwrap_or_default()) {
        Ok(None) => true,
        Ok(Some(f)) => f.matches(name),
        Err(_) => false,
    }
}

/// The operator-wide switch (`run --provisioning`, `OKTA_CIAM_PROVISIONING`,
/// `BATON_PROVISIONING`): when off, every write is refused before any connector check.
pub fn check_operator(provisioning: bool) -> Result<(), Refusal> {
    if provisioning {
        Ok(())
    } else {
        Err(Refusal::new(
            Reason::ProvisioningDisabled,
            "provisioning is disabled operator-wide (run --provisioning=false, \
             OKTA_CIAM_PROVISIONING or BATON_PROVISIONING)"
                .into(),
        ))
    }
}

/// Connector guard rails: it must exist, be Ready, allow provisioning and not be suspended.
pub fn check_connector(connector: Option<&ConnectorFacts>) -> Result<&ConnectorFacts, Refusal> {
    let Some(c) = connector else {
        return Err(Refusal::new(
            Reason::ConnectorNotFound,
            "the referenced OktaCiamConnector does not exist".into(),
        ));
    };
    let name = &c.name;
    if !c.ready {
        Err(Refusal::new(
            Reason::ConnectorNotReady,
            format!("connector {name} is not Ready"),
        ))
    } else if !c.provisioning {
        Err(Refusal::new(
            Reason::ProvisioningDisabled,
            format!("connector {name} has provisioning: false"),
        ))
    } else if c.suspended {
        Err(Refusal::new(
            Reason::ConnectorSuspended,
            format!("connector {name} is suspended"),
        ))
    } else {
        Ok(c)
    }
}

/// Group guard rails: it must exist, be an `OKTA_GROUP` and pass the group-name filter.
/// A renamed group is refused ([`Reason::GroupRenamed`]); see [`check_group_for`].
pub fn check_group<'a>(
    group: &'a GroupLookup,
    connector: &ConnectorFacts,
) -> Result<&'a OktaGroup, Refusal> {
    check_group_for(group, connector, false)
}

/// [`check_group`] for a round that may be letting go (`letting_go`: expired or being
/// deleted): a renamed group is then the group the grants were made in, so the operator may
/// still revoke them there; a live declaration is refused until its spec names the group.
pub fn check_group_for<'a>(
    group: &'a GroupLookup,
    connector: &ConnectorFacts,
    letting_go: bool,
) -> Result<&'a OktaGroup, Refusal> {
    match group {
        GroupLookup::Renamed { group: g, .. } if letting_go => {
            check_okta_group(g, connector).map(|()| g)
        }
        GroupLookup::Renamed { group: g, declared } => Err(Refusal::new(
            Reason::GroupRenamed,
            format!(
                "group {} is now named {:?}, not the declared {declared:?}; update spec.group",
                g.id, g.name
            ),
        )),
        GroupLookup::NotLookedUp => Err(Refusal::new(
            Reason::Pending,
            "the group has not been looked up yet".into(),
        )),
        GroupLookup::NotFound => Err(Refusal::new(
            Reason::GroupNotFound,
            "the group does not exist in Okta".into(),
        )),
        GroupLookup::Found(g) => check_okta_group(g, connector).map(|()| g),
    }
}

/// The type and name-filter rails of a group that exists.
fn check_okta_group(g: &OktaGroup, connector: &ConnectorFacts) -> Result<(), Refusal> {
    if g.group_type != "OKTA_GROUP" {
        Err(Refusal::new(
            Reason::GroupNotOktaManaged,
            format!(
                "group {} ({}) is of type {}: only OKTA_GROUP membership is managed in Okta",
                g.name, g.id, g.group_type
            ),
        ))
    } else if !group_in_scope(&g.name, connector.group_name_filter.as_deref()) {
        Err(Refusal::new(
            Reason::GroupOutOfScope,
            format!(
                "group {} ({}) is outside connector {}'s group-name filter {:?}",
                g.name,
                g.id,
                connector.name,
                connector.group_name_filter.as_deref().unwrap_or_default()
            ),
        ))
    } else {
        Ok(())
    }
}

/// User guard rails: exactly one user, inside the email domains, not suspended or
/// deprovisioned.
pub fn check_user<'a>(
    entry: &str,
    lookup: &'a UserLookup,
    connector: &ConnectorFacts,
) -> Result<&'a OktaUser, Refusal> {
    match lookup {
        UserLookup::NotLookedUp => Err(Refusal::new(
            Reason::Pending,
            format!("{entry} has not been looked up yet"),
        )),
        UserLookup::NotFound => Err(Refusal::new(
            Reason::UserNotFound,
            format!("no Okta user matches {entry}"),
        )),
        UserLookup::Ambiguous { matches } => Err(Refusal::new(
            Reason::UserAmbiguous,
            format!("{matches} Okta users match {entry}; use the user id"),
        )),
        UserLookup::Found(u) if !user_in_scope(u, &connector.email_domains) => Err(Refusal::new(
            Reason::UserOutOfScope,
            format!(
                "{entry} ({}) is outside connector {}'s email domains {}",
                u.id,
                connector.name,
                connector.email_domains.join(", ")
            ),
        )),
        UserLookup::Found(u)
            if u.status.eq_ignore_ascii_case("SUSPENDED")
                || u.status.eq_ignore_ascii_case("DEPROVISIONED") =>
        {
            Err(Refusal::new(
                Reason::UserInactive,
                format!("{entry} ({}) is {}", u.id, u.status),
            ))
        }
        UserLookup::Found(u) => Ok(u),
    }
}

/// The users `plan` would PUT whose lookup did not come from Okta this round (`fresh`: ids
/// read from Okta by this round's searches or re-reads): they answered from the connector's
/// index, i.e. as of its last sync, and must be read again before any write.
pub fn unconfirmed_grants<'a>(plan: &'a Plan, fresh: &BTreeSet<String>) -> Vec<&'a str> {
    plan.grants
        .iter()
        .map(String::as_str)
        .filter(|id| !fresh.contains(*id))
        .collect()
}

/// The declared users with Okta's current answer (`reread`, by user id: what a read by id
/// returned, [`UserLookup::NotLookedUp`] when it failed) in place of the index's, for every
/// entry on which the user guard rails ([`check_user`]) now answer differently; `None` when
/// no answer changed (the plan stands).
pub fn reconfirm(
    users: &[DeclaredUser],
    reread: &BTreeMap<String, UserLookup>,
    connector: &ConnectorFacts,
) -> Option<Vec<DeclaredUser>> {
    let verdict = |d: &DeclaredUser, lookup: &UserLookup| {
        check_user(&d.user, lookup, connector)
            .map(|_| ())
            .map_err(|r| r.reason)
    };
    let mut changed = false;
    let users = users
        .iter()
        .map(|d| {
            let UserLookup::Found(u) = &d.lookup else {
                return d.clone();
            };
            match reread.get(&u.id) {
                Some(now) if verdict(d, now) != verdict(d, &d.lookup) => {
                    changed = true;
                    DeclaredUser {
                        user: d.user.clone(),
                        lookup: now.clone(),
                    }
                }
                _ => d.clone(),
            }
        })
        .collect();
    changed.then_some(users)
}

// ---------------------------------------------------------------------------------------
// The decision
// ---------------------------------------------------------------------------------------

/// What the plan does for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// No Okta write.
    Keep,
    /// PUT; `drift` when the membership was confirmed before and vanished outside the operator.
    Grant { drift: bool },
    /// DELETE.
    Revoke,
}

/// One status row as planned: `state` is what holds once `action` succeeds.
#[derive(Debug, Clone)]
struct Row {
    user: String,
    user_id: Option<String>,
    /// False for a removed entry still being let go.
    declared: bool,
    state: UserState,
    origin: Option<Origin>,
    reason: Reason,
    message: String,
    action: Action,
}

/// The writes one round must make, and the record to persist before making them.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The resolved Okta group id (for `status.groupId`), when the group was found.
    pub group_id: Option<String>,
    /// User ids to add: `PUT /api/v1/groups/{groupId}/users/{userId}`.
    pub grants: Vec<String>,
    /// User ids to remove: `DELETE /api/v1/groups/{groupId}/users/{userId}`.
    pub revokes: Vec<String>,
    /// The ownership record to persist **before** any write when it differs from the input.
    pub record: GroupRecord,
    rows: Vec<Row>,
    group_label: String,
    owner: String,
    deleting: bool,
    expiry: Expiry,
    expired: bool,
    effective_since: Option<Timestamp>,
    previous: Vec<UserStatus>,
    now: Timestamp,
}

impl Plan {
    /// Whether the round makes any Okta write.
    pub fn has_writes(&self) -> bool {
        !self.grants.is_empty() || !self.revokes.is_empty()
    }
}

/// Everything the reconciler writes back after a round.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `status.groupId`.
    pub group_id: Option<String>,
    /// The ownership record to persist when it differs from [`Plan::record`].
    pub record: GroupRecord,
    /// `status.users`: declared entries in spec order, then removed entries still being let go.
    pub users: Vec<UserStatus>,
    /// The `Ready` condition.
    pub ready: Condition,
    /// The `Expired` condition.
    pub expired: Condition,
    /// Events to emit.
    pub events: Vec<Event>,
    /// `status.expiresAt` (resolved).
    pub expires_at: Option<Timestamp>,
    /// When the grant first became effective (store it in status; feed it back next round).
    pub effective_since: Option<Timestamp>,
    /// Requeue exactly at this instant (the expiry), if set.
    pub requeue_at: Option<Timestamp>,
    /// A write failed: requeue with backoff.
    pub retry: bool,
    /// The object is being deleted and holds no claim any more: remove the finalizer
    /// (after the record write succeeded).
    pub remove_finalizer: bool,
}

/// A declared entry with what the gates say about it.
struct Resolved<'a> {
    user: &'a str,
    /// The user id: from the lookup, or from the previous status when the lookup failed
    /// (so a transient lookup failure never reads as "no longer declared").
    id: Option<&'a str>,
    verdict: Result<&'a OktaUser, Refusal>,
}

fn refused_state(refusal: &Refusal) -> UserState {
    if refusal.reason == Reason::Pending {
        UserState::Pending
    } else {
        UserState::Failed
    }
}

/// Decides one round for one `GroupMembership`. See the module docs for the protocol.
pub fn decide(input: &Input) -> Plan {
    let owner = input.owner.as_str();
    let expired = is_expired(input.expiry, input.effective_since, input.now);
    let deleting = matches!(input.lifecycle, Lifecycle::Deleting(_));
    let retain = input.lifecycle == Lifecycle::Deleting(DeletionPolicy::Retain);
    // When set, this object lets go of everything and declared rows end in this state.
    let letting_go = if expired {
        Some(UserState::Expired)
    } else if deleting {
        Some(UserState::Revoked)
    } else {
        None
    };

    let gate = check_operator(input.provisioning)
        .and_then(|()| check_connector(input.connector.as_ref()))
        .and_then(|c| check_group_for(&input.group, c, letting_go.is_some()).map(|g| (c, g)));
    let empty = BTreeSet::new();
    // Membership is known when the group passed the gates; a vanished group has none.
    let observed: Option<&BTreeSet<String>> = match (&gate, &input.group) {
        (Ok(_), _) => Some(&input.members),
        (Err(_), GroupLookup::NotFound) => Some(&empty),
        (Err(_), _) => None,
    };
    let (group_id, group_label) = match &input.group {
        GroupLookup::Found(g) | GroupLookup::Renamed { group: g, .. } => {
            (Some(g.id.clone()), format!("{} ({})", g.name, g.id))
        }
        // Not looked up this round: what the group was resolved to stays known.
        GroupLookup::NotLookedUp => (input.group_id.clone(), "the group".to_string()),
        GroupLookup::NotFound => (None, "the group".to_string()),
    };

    let previous_by_entry: BTreeMap<&str, &UserStatus> = input
        .previous
        .iter()
        .map(|p| (p.user.as_str(), p))
        .collect();
    let previous_by_id: BTreeMap<&str, &UserStatus> = input
        .previous
        .iter()
        .filter_map(|p| p.user_id.as_deref().map(|id| (id, p)))
        .collect();

    let resolved: Vec<Resolved<'_>> = input
        .users
        .iter()
        .map(|d| {
            let id = match &d.lookup {
                UserLookup::Found(u) => Some(u.id.as_str()),
                _ => previous_by_entry
                    .get(d.user.as_str())
                    .and_then(|p| p.user_id.as_deref()),
            };
            let verdict = match &gate {
                Err(refusal) => Err(refusal.clone()),
                Ok((c, _)) => check_user(&d.user, &d.lookup, c),
            };
            Resolved {
                user: &d.user,
                id,
                verdict,
            }
        })
        .collect();

    let held: BTreeSet<&str> = if letting_go.is_some() {
        BTreeSet::new()
    } else {
        resolved.iter().filter_map(|r| r.id).collect()
    };

    // An entry whose lookup has not answered may name any user, including a claim that the
    // previous status never tied to it (a crash after the write-ahead record, an edited
    // entry): while one is open, a live round revokes nothing it cannot match to an entry.
    // (A closed gate revokes nothing anyway, and says why.)
    let unresolved: Vec<&str> = if letting_go.is_none() && gate.is_ok() {
        input
            .users
            .iter()
            .filter(|d| d.lookup == UserLookup::NotLookedUp)
            .map(|d| d.user.as_str())
            .collect()
    } else {
        Vec::new()
    };

    let mut record = input.record.clone();
    let mut grants = BTreeSet::new();
    let mut revokes = BTreeSet::new();
    // Per user id: the planned row fields (state, origin, reason, message, action).
    let mut by_id: BTreeMap<&str, (UserState, Option<Origin>, Reason, String, Action)> =
        BTreeMap::new();

    // Let go of every claim this object holds on a user it no longer holds.
    for (user_id, ownership) in &input.record.members {
        let user_id = user_id.as_str();
        if !ownership.claimants.contains(owner) || held.contains(user_id) {
            continue;
        }
        let declarers: BTreeSet<&str> = input
            .others
            .iter()
            .filter(|(o, ids)| o.as_str() != owner && ids.contains(user_id))
            .map(|(o, _)| o.as_str())
            .collect();
        let co_claimants: Vec<&str> = ownership
            .claimants
            .iter()
            .map(String::as_str)
            .filter(|c| *c != owner)
            .chain(declarers.iter().copied())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let member = observed.map(|m| m.contains(user_id));
        let end_state = letting_go.unwrap_or(UserState::Revoked);
        let origin = Some(ownership.origin);
        let must_delete = !retain
            && ownership.origin == Origin::Granted
            && co_claimants.is_empty()
            && member != Some(false);
        let planned = if must_delete && !unresolved.is_empty() {
            let message = format!(
                "revocation waits until {} is looked up",
                name_users(unresolved.iter().copied())
            );
            (
                UserState::Pending,
                origin,
                Reason::Pending,
                message,
                Action::Keep,
            )
        } else if !must_delete {
            let message = if retain {
                "left in Okta (deletionPolicy: Retain)".to_string()
            } else if ownership.origin == Origin::Preexisting {
                "preexisting membership left in Okta".to_string()
            } else if !co_claimants.is_empty() {
                format!(
                    "left in Okta: still held by {}",
                    name_users(co_claimants.iter().copied())
                )
            } else {
                "no longer a member in Okta".to_string()
            };
            let reason = if member == Some(false) {
                Reason::Revoked
            } else {
                Reason::Retained
            };
            record.release(user_id, owner, &declarers);
            (end_state, origin, reason, message, Action::Keep)
        } else {
            match &gate {
                Ok(_) => {
                    revokes.insert(user_id.to_string());
                    let reason = if expired {
                        Reason::Expired
                    } else {
                        Reason::Revoked
                    };
                    let message = format!("removed from {group_label}");
                    (end_state, origin, reason, message, Action::Revoke)
                }
                Err(refusal) => {
                    let message = format!("revocation waits: {}", refusal.message);
                    let reason = refusal.reason;
                    (UserState::Failed, origin, reason, message, Action::Keep)
                }
            }
        };
        by_id.insert(user_id, planned);
    }

    // Hold, grant or adopt every declared user the gates admit.
    if letting_go.is_none() {
        for r in &resolved {
            let (Some(user_id), Ok(user)) = (r.id, &r.verdict) else {
                continue;
            };
            if by_id.contains_key(user_id) {
                continue;
            }
            let planned = if input.members.contains(&user.id) {
                let origin = record
                    .members
                    .get(user_id)
                    .map_or(Origin::Preexisting, |o| o.origin);
                record.claim(user_id, owner, origin);
                let (reason, message) = match origin {
                    Origin::Granted => (
                        Reason::Granted,
                        format!("member of {group_label}, granted by the operator"),
                    ),
                    Origin::Preexisting => (
                        Reason::Preexisting,
                        format!(
                            "member of {group_label} before it was declared; never removed by the operator"
                        ),
                    ),
                };
                (
                    UserState::Granted,
                    Some(origin),
                    reason,
                    message,
                    Action::Keep,
                )
            } else {
                let drift = previous_by_id
                    .get(user_id)
                    .is_some_and(|p| p.state == UserState::Granted);
                // Write-ahead intent: claimed as Granted before the PUT is made.
                record.claim(user_id, owner, Origin::Granted);
                grants.insert(user_id.to_string());
                let message = if drift {
                    format!("added to {group_label} again after a removal outside the operator")
                } else {
                    format!("added to {group_label}")
                };
                (
                    UserState::Granted,
                    Some(Origin::Granted),
                    Reason::Granted,
                    message,
                    Action::Grant { drift },
                )
            };
            by_id.insert(user_id, planned);
        }
    }

    let mut rows = Vec::with_capacity(resolved.len());
    let mut listed: BTreeSet<&str> = BTreeSet::new();
    for r in &resolved {
        let planned = r.id.and_then(|id| by_id.get(id)).cloned();
        let (state, origin, reason, message, action) = match (planned, &r.verdict, letting_go) {
            (Some(p), _, _) => p,
            (None, _, Some(end_state)) => match previous_by_entry.get(r.user) {
                // Already let go in an earlier round: keep what was reported then.
                Some(p) if p.state == end_state => (
                    end_state,
                    p.origin,
                    p.reason,
                    p.message.clone(),
                    Action::Keep,
                ),
                _ => {
                    let reason = if expired {
                        Reason::Expired
                    } else {
                        Reason::Deleting
                    };
                    (
                        end_state,
                        None,
                        reason,
                        "no membership held".into(),
                        Action::Keep,
                    )
                }
            },
            (None, Err(refusal), None) => {
                // Without the record (no connector, or no group id to locate it by) keep
                // what the previous status knew, so a later deletion still sees (and
                // reports) the claim.
                let unlocated = !input.record_located || input.connector.is_none();
                let origin =
                    r.id.and_then(|id| record.members.get(id))
                        .map(|o| o.origin)
                        .or_else(|| {
                            previous_by_entry
                                .get(r.user)
                                .filter(|_| unlocated)
                                .and_then(|p| p.origin)
                        });
                let state = refused_state(refusal);
                (
                    state,
                    origin,
                    refusal.reason,
                    refusal.message.clone(),
                    Action::Keep,
                )
            }
            (None, Ok(_), None) => unreachable!("an admitted user always has a plan"),
        };
        listed.extend(r.id);
        rows.push(Row {
            user: r.user.to_string(),
            user_id: r.id.map(str::to_string),
            declared: true,
            state,
            origin,
            reason,
            message,
            action,
        });
    }
    // Removed entries still being let go, named as they were declared.
    for (user_id, (state, origin, reason, message, action)) in by_id {
        if listed.contains(user_id) {
            continue;
        }
        let user = previous_by_id
            .get(user_id)
            .map_or(user_id, |p| p.user.as_str());
        rows.push(Row {
            user: user.to_string(),
            user_id: Some(user_id.to_string()),
            declared: false,
            state,
            origin,
            reason,
            message,
            action,
        });
    }

    Plan {
        group_id,
        grants: grants.into_iter().collect(),
        revokes: revokes.into_iter().collect(),
        record,
        rows,
        group_label,
        owner: input.owner.clone(),
        deleting,
        expiry: input.expiry,
        expired,
        effective_since: input.effective_since,
        previous: input.previous.clone(),
        now: input.now,
    }
}

/// "a, b, c and 4 more".
fn name_users<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    let mut text = names
        .iter()
        .take(NAMED_USERS)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMED_USERS {
        text.push_str(&format!(" and {} more", names.len() - NAMED_USERS));
    }
    text
}

/// "UserNotFound: a, b; GrantFailed: c", most important reason first.
fn summarize<'a>(rows: impl IntoIterator<Item = &'a UserStatus>) -> (Option<Reason>, String) {
    let mut by_reason: BTreeMap<Reason, Vec<&str>> = BTreeMap::new();
    for row in rows {
        by_reason.entry(row.reason).or_default().push(&row.user);
    }
    let text = by_reason
        .iter()
        .map(|(reason, users)| format!("{reason}: {}", name_users(users.iter().copied())))
        .collect::<Vec<_>>()
        .join("; ");
    (by_reason.keys().next().copied(), text)
}

impl Plan {
    /// Completes the round once the writes were attempted. `failures` maps user ids whose
    /// PUT or DELETE failed to the error; every other planned write counts as done. Pass
    /// an empty map when the plan had no writes.
    pub fn settle(&self, failures: &BTreeMap<String, WriteError>) -> Outcome {
        let owner = self.owner.as_str();
        let mut record = self.record.clone();
        let mut granted = Vec::new();
        let mut drifted = Vec::new();
        let mut revoked = Vec::new();
        let mut retry = false;
        let mut rows = Vec::with_capacity(self.rows.len());
        for planned in &self.rows {
            let mut row = planned.clone();
            let failure = row.user_id.as_deref().and_then(|id| failures.get(id));
            match (row.action, failure) {
                (Action::Grant { .. }, Some(WriteError::Failed(m))) => {
                    // The outcome is unknown, so the intent stays recorded: the next round
                    // finds the membership (and keeps it) or grants again.
                    row.state = UserState::Failed;
                    row.reason = Reason::GrantFailed;
                    row.message = format!("adding to {} failed: {m}", self.group_label);
                    retry = true;
                }
                (Action::Grant { .. }, Some(WriteError::NotFound(m) | WriteError::Refused(m))) => {
                    // Okta definitely did not add it: drop the intent, so a membership
                    // someone adds by hand later is never taken for the operator's own.
                    let id = row.user_id.as_deref().expect("a grant has a user id");
                    record.release(id, owner, &BTreeSet::new());
                    row.state = UserState::Failed;
                    row.origin = None;
                    row.reason = Reason::GrantFailed;
                    row.message = format!("adding to {} was refused: {m}", self.group_label);
                    retry = true;
                }
                (Action::Grant { drift: true }, None) => drifted.push(row.user.clone()),
                (Action::Grant { drift: false }, None) => granted.push(row.user.clone()),
                (Action::Revoke, Some(WriteError::Failed(m) | WriteError::Refused(m))) => {
                    row.state = UserState::Failed;
                    row.reason = Reason::RevokeFailed;
                    row.message = format!("removing from {} failed: {m}", self.group_label);
                    retry = true;
                }
                (Action::Revoke, None | Some(WriteError::NotFound(_))) => {
                    let id = row.user_id.as_deref().expect("a revoke has a user id");
                    record.release(id, owner, &BTreeSet::new());
                    revoked.push(row.user.clone());
                }
                (Action::Keep, _) => {}
            }
            // A removed entry leaves the status once its claim is gone.
            if !row.declared && row.state != UserState::Failed {
                continue;
            }
            rows.push(row);
        }

        let previous: BTreeMap<&str, &UserStatus> =
            self.previous.iter().map(|p| (p.user.as_str(), p)).collect();
        let users: Vec<UserStatus> = rows
            .iter()
            .map(|row| {
                let since = previous
                    .get(row.user.as_str())
                    .filter(|p| p.state == row.state)
                    .map_or(self.now, |p| p.last_transition_time);
                UserStatus {
                    user: row.user.clone(),
                    user_id: row.user_id.clone(),
                    state: row.state,
                    origin: row.origin,
                    reason: row.reason,
                    message: row.message.clone(),
                    last_transition_time: since,
                }
            })
            .collect();

        let mut events = Vec::new();
        let mut normal = |reason: EventReason, verb: &str, names: &[String]| {
            if !names.is_empty() {
                events.push(Event {
                    event_type: EventType::Normal,
                    reason,
                    message: format!(
                        "{verb} {}: {}",
                        self.group_label,
                        name_users(names.iter().map(String::as_str))
                    ),
                });
            }
        };
        normal(EventReason::Reason(Reason::Granted), "added to", &granted);
        normal(EventReason::DriftCorrected, "added again to", &drifted);
        normal(
            EventReason::Reason(Reason::Revoked),
            "removed from",
            &revoked,
        );
        // Transitions only, so a standing refusal is not repeated every round.
        let changed = |u: &&UserStatus| {
            previous
                .get(u.user.as_str())
                .is_none_or(|p| p.state != u.state || p.reason != u.reason)
        };
        let newly_expired: Vec<String> = users
            .iter()
            .filter(|u| u.state == UserState::Expired)
            .filter(|u| {
                previous
                    .get(u.user.as_str())
                    .is_none_or(|p| p.state != UserState::Expired)
            })
            .map(|u| u.user.clone())
            .collect();
        normal(
            EventReason::Reason(Reason::Expired),
            "expired in",
            &newly_expired,
        );
        let mut warnings: BTreeMap<Reason, Vec<&UserStatus>> = BTreeMap::new();
        for u in users.iter().filter(changed) {
            if u.state == UserState::Failed {
                warnings.entry(u.reason).or_default().push(u);
            }
        }
        for (reason, affected) in warnings {
            let first = affected[0].message.as_str();
            let names = name_users(affected.iter().map(|u| u.user.as_str()));
            let message = if affected.len() == 1 {
                format!("{}: {first}", affected[0].user)
            } else {
                format!("{names}: {first} (and similar)")
            };
            events.push(Event {
                event_type: EventType::Warning,
                reason: EventReason::Reason(reason),
                message,
            });
        }

        let live = !self.deleting && !self.expired;
        let declared_granted = users
            .iter()
            .zip(&rows)
            .any(|(u, row)| row.declared && u.state == UserState::Granted);
        let effective_since = self
            .effective_since
            .or_else(|| (live && declared_granted).then_some(self.now));
        let expires_at = self.expiry.resolve(effective_since);
        let still_claimed = record.claimed_by(owner);
        let not_granted: Vec<&UserStatus> = users
            .iter()
            .filter(|u| u.state != UserState::Granted)
            .collect();

        let ready = if self.deleting {
            let message = if still_claimed {
                format!(
                    "being deleted; waiting to let go of {}",
                    summarize(not_granted.iter().copied()).1
                )
            } else {
                "being deleted".to_string()
            };
            Condition {
                status: false,
                reason: Reason::Deleting,
                message,
            }
        } else if self.expired {
            Condition {
                status: false,
                reason: Reason::Expired,
                message: format!("the grant to {} has expired", self.group_label),
            }
        } else if let (Some(reason), text) = summarize(not_granted.iter().copied()) {
            Condition {
                status: false,
                reason,
                message: text,
            }
        } else {
            Condition {
                status: true,
                reason: Reason::Granted,
                message: format!(
                    "all {} users are members of {}",
                    users.len(),
                    self.group_label
                ),
            }
        };

        let expired = match expires_at {
            None => Condition {
                status: false,
                reason: Reason::NoExpiry,
                message: match self.expiry {
                    Expiry::After(d) => {
                        format!("expires {d:#} after the grant first becomes effective")
                    }
                    _ => "no expiry set".to_string(),
                },
            },
            Some(at) if !self.expired => Condition {
                status: false,
                reason: Reason::NotExpired,
                message: format!("expires at {at}"),
            },
            Some(at) if !still_claimed => Condition {
                status: true,
                reason: Reason::Expired,
                message: format!("expired at {at}; memberships let go"),
            },
            Some(at) => {
                let failed = users.iter().filter(|u| u.state == UserState::Failed);
                let (reason, text) = summarize(failed);
                Condition {
                    status: false,
                    reason: reason.unwrap_or(Reason::Pending),
                    message: format!("expired at {at}; revocation pending: {text}"),
                }
            }
        };

        Outcome {
            group_id: self.group_id.clone(),
            record,
            users,
            ready,
            expired,
            events,
            expires_at,
            effective_since,
            requeue_at: if live { expires_at } else { None },
            retry,
            remove_finalizer: self.deleting && !still_claimed,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Retries and deletions without a record
// ---------------------------------------------------------------------------------------

/// The per-object back-off both reconcilers use, here after rounds that failed or left
/// writes pending.
pub use crate::controller::retry_delay;

/// How long until the next round: the back-off delay when the round must retry, else the
/// resync period; in both cases no later than the exact expiry `requeue_at` (a failing
/// write of one user must not keep the others' access past expiry). Tokio timers may fire
/// a hair early, so the expiry wait gets one millisecond more, landing at or past it.
pub fn requeue_after(
    backoff: Option<Duration>,
    requeue_at: Option<Timestamp>,
    now: Timestamp,
    resync: Duration,
) -> Duration {
    let wait = backoff.unwrap_or(resync);
    match requeue_at {
        Some(at) => {
            let ms = (at.as_millisecond() - now.as_millisecond()).max(0);
            wait.min(Duration::from_millis(ms.unsigned_abs() + 1))
        }
        None => wait,
    }
}

/// Whether a round waits quietly for the connector's client (the connector is Ready in the
/// cluster but this process has not built its client yet: a restart or a new leadership
/// term) rather than reporting `ConnectorNotReady`.
///
/// Only while the term is younger than `limit`: a client that never comes (the connector
/// reconciler keeps failing without rewriting a stale `Ready`) must surface as a refusal,
/// not freeze a deletion or hide an expiry forever. And never for a deletion whose status
/// holds no grant of the operator: there is nothing to revoke, so it can finish at once.
pub fn await_client(
    term_age: Duration,
    limit: Duration,
    lifecycle: Lifecycle,
    previous: &[UserStatus],
) -> bool {
    let holds_grants = previous.iter().any(|p| p.origin == Some(Origin::Granted));
    term_age < limit && (lifecycle == Lifecycle::Live || holds_grants)
}

/// The group to let go in first when the declared group now resolves to another group than
/// the one `status.groupId` recorded (`spec.group` was changed to an existing group).
///
/// Acting in the new group at once would orphan the grants in the old one: its record would
/// never be visited again. So the round lets go in the recorded group as a deletion with the
/// object's `deletionPolicy` would (same ownership rules: preexisting memberships and those
/// still held by others stay), and acts in the new group only once this object claims
/// nothing there. A rename keeps the id ([`GroupLookup::Renamed`]) and is no move.
pub fn moved_from<'a>(group: &GroupLookup, recorded: Option<&'a str>) -> Option<&'a str> {
    match (group, recorded) {
        (GroupLookup::Found(g), Some(old)) if g.id != old => Some(old),
        _ => None,
    }
}

/// The `Ready` condition of a round that lets go in the old group of a move
/// ([`moved_from`]), from the condition the letting-go round produced.
pub fn moving_condition(letting_go: &Condition, from: &str, to: &str, done: bool) -> Condition {
    let message = if done {
        format!("spec.group changed from {from} to {to}: let go in {from}")
    } else {
        let waiting = letting_go
            .message
            .strip_prefix("being deleted; ")
            .unwrap_or("waiting to let go");
        format!("spec.group changed from {from} to {to}: {waiting} in {from} first")
    };
    Condition {
        status: false,
        reason: Reason::Pending,
        message,
    }
}

/// Whether a deletion whose ownership record cannot be located (no connector to name the
/// org, or no group id) may finish, and the Events saying so. `Some`: remove the finalizer.
///
/// Without the connector nothing can be revoked, ever: the memberships stay in Okta (nothing
/// is lost) and a Warning says how many grants of this object were left. With `Retain`
/// nothing would be revoked anyway. Otherwise (`Revoke`, connector present) the round waits
/// for the record to be locatable, as a claim in it may still have to be revoked.
pub fn finish_unlocated(
    policy: DeletionPolicy,
    connector: Option<&ConnectorFacts>,
    connector_name: &str,
    previous: &[UserStatus],
) -> Option<Vec<Event>> {
    if connector.is_some() {
        return (policy == DeletionPolicy::Retain).then(Vec::new);
    }
    let grants = previous
        .iter()
        .filter(|p| p.origin == Some(Origin::Granted))
        .count();
    Some(vec![Event {
        event_type: EventType::Warning,
        reason: EventReason::Reason(Reason::ConnectorNotFound),
        message: format!(
            "connector {connector_name} does not exist: deleted leaving in Okta the {grants} \
             membership(s) this object granted"
        ),
    }])
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
