//! The facts the reconciler gathers for one round ([`Input`]).

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{GroupRecord, PolicyFacts, UserStatus};

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
    /// This process holds the connector's Okta client (its credentials were read and a
    /// client built): all a revocation needs besides not being suspended
    /// ([`check_revocation`](super::check_revocation)).
    pub has_client: bool,
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
pub(super) fn is_expired(
    expiry: Expiry,
    effective_since: Option<Timestamp>,
    now: Timestamp,
) -> bool {
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
    /// What the grant-policy gates look at ([`check_grant_policy`]).
    pub policy: PolicyFacts,
}
