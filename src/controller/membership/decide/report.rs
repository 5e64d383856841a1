//! What a round reports: reasons, per-user states, conditions, Events and write failures.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// How many users a message names before it says "and N more".
const NAMED_USERS: usize = 10;

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
    /// With `run --require-policy`, no `AccessPolicy` allows this namespace to grant the
    /// group (see [`check_grant_policy`](super::check_grant_policy)).
    NotAllowedByPolicy,
    /// The group holds an Okta admin role and no `AccessPolicy` names it exactly with
    /// `allowPrivileged: true`.
    GroupHoldsAdminRole,
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
    /// A grant of the operator's is to be revoked but cannot be yet: the connector is
    /// suspended, missing, or has no working Okta client (the message says which).
    RevocationWaiting,
    /// A revocation is held by the connector's mass-revocation circuit breaker
    /// (`spec.safety.maxRevocationsPerHour`) until a person releases it.
    RevocationHeld,
    /// The group's ownership record lost grants this object's status shows as made by the
    /// operator (record deleted or restored from an old backup); they were recorded again.
    OwnershipRecordLost,
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
            Reason::NotAllowedByPolicy => "NotAllowedByPolicy",
            Reason::GroupHoldsAdminRole => "GroupHoldsAdminRole",
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
            Reason::RevocationWaiting => "RevocationWaiting",
            Reason::RevocationHeld => "RevocationHeld",
            Reason::OwnershipRecordLost => "OwnershipRecordLost",
        }
    }
}

impl Reason {
    /// Every reason, for documentation and exhaustive tests (the Argo CD health check's).
    pub const ALL: [Reason; 29] = [
        Reason::InvalidSpec,
        Reason::ConnectorNotFound,
        Reason::ConnectorNotReady,
        Reason::ProvisioningDisabled,
        Reason::ConnectorSuspended,
        Reason::GroupNotFound,
        Reason::GroupRenamed,
        Reason::GroupNotOktaManaged,
        Reason::GroupOutOfScope,
        Reason::NotAllowedByPolicy,
        Reason::GroupHoldsAdminRole,
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
        Reason::RevocationWaiting,
        Reason::RevocationHeld,
        Reason::OwnershipRecordLost,
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
            | Reason::NotAllowedByPolicy
            | Reason::GroupHoldsAdminRole
            | Reason::UserOutOfScope
            | Reason::UserNotFound
            | Reason::UserAmbiguous
            | Reason::UserInactive
            | Reason::RevocationWaiting
            | Reason::RevocationHeld
            | Reason::OwnershipRecordLost => true,
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
    pub(super) fn new(reason: Reason, message: String) -> Self {
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

/// "a, b, c and 4 more".
pub(super) fn name_a_few<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
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

/// The longest per-user message in status, in bytes. A row's message explains one user's
/// state; bounding it keeps the whole status of a 1,000-user membership far below etcd's
/// object limit whatever the messages quote (connector email domains, Okta's error texts).
pub const MAX_USER_MESSAGE: usize = 256;

/// `message` cut to [`MAX_USER_MESSAGE`] bytes (at a character boundary), marked with "...".
pub(super) fn bounded(message: &str) -> String {
    if message.len() <= MAX_USER_MESSAGE {
        return message.to_owned();
    }
    let mut end = MAX_USER_MESSAGE - 3;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

/// "UserNotFound: a, b; GrantFailed: c", most important reason first.
pub(super) fn summarize<'a>(
    rows: impl IntoIterator<Item = &'a UserStatus>,
) -> (Option<Reason>, String) {
    let mut by_reason: BTreeMap<Reason, Vec<&str>> = BTreeMap::new();
    for row in rows {
        by_reason.entry(row.reason).or_default().push(&row.user);
    }
    let text = by_reason
        .iter()
        .map(|(reason, users)| format!("{reason}: {}", name_a_few(users.iter().copied())))
        .collect::<Vec<_>>()
        .join("; ");
    (by_reason.keys().next().copied(), text)
}
