//! `GroupMembership`: declares that some users belong to one Okta group, optionally until a
//! point in time, provisioned through an `OktaCiamConnector` in the same namespace.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::connector::DURATION_PATTERN;

/// The most users one `GroupMembership` may declare.
pub const MAX_USERS: usize = 1000;

/// Desired state of a `GroupMembership`: these users are members of this group.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "oktaciam.io",
    version = "v1alpha1",
    kind = "GroupMembership",
    namespaced,
    status = "MembershipStatus",
    shortname = "gm",
    category = "okta",
    doc = "GroupMembership declares that users are members of an Okta group, optionally until an expiry, provisioned through an OktaCiamConnector in the same namespace. The operator only ever revokes memberships it granted and that no other GroupMembership still declares.",
    printcolumn(
        name = "Group",
        type_ = "string",
        json_path = ".spec.group.name",
        description = "Okta group name (empty when the group is given by id)"
    ),
    printcolumn(
        name = "Users",
        type_ = "string",
        json_path = ".status.readyUsers",
        description = "Declared users that are members in Okta, as ready/declared"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every declared user is a member in Okta"
    ),
    printcolumn(
        name = "Expires",
        // A string, not a date: kubectl prints date columns as an age, which is `<invalid>`
        // for every future instant, i.e. for every grant that has not expired yet.
        type_ = "string",
        json_path = ".status.expiresAt",
        description = "When the grant expires"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!(has(self.expiresAt) && has(self.duration))").message("set at most one of expiresAt and duration"))]
#[serde(rename_all = "camelCase")]
pub struct GroupMembershipSpec {
    /// The `OktaCiamConnector` in this namespace whose org and scope this membership uses.
    pub connector_ref: ConnectorRef,

    /// The Okta group, by exactly one of name or id. It must be an `OKTA_GROUP` within the
    /// connector's group-name filter.
    pub group: GroupRef,

    /// Users to make members, each by login, primary email or Okta user id. Each must be in
    /// one of the connector's email domains. 1 to 1000 entries, no duplicates.
    #[schemars(length(min = 1, max = 1000), inner(length(min = 1, max = 320)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub users: Vec<String>,

    /// When the grant ends (RFC 3339). At that time the operator revokes the memberships it
    /// granted and keeps this object, with condition `Expired`, as a record. Editing it later
    /// extends or shortens the grant. Mutually exclusive with `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// How long the grant lasts, counted from when it first became effective, such as `8h`.
    /// Mutually exclusive with `expiresAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("duration must be positive"))]
    pub duration: Option<String>,

    /// What happens to the memberships this object granted when it is deleted: `Revoke`
    /// removes them (unless another GroupMembership still declares them), `Retain` leaves them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// A reference to an `OktaCiamConnector` in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ConnectorRef {
    /// Name of the OktaCiamConnector.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// An Okta group, by exactly one of name or id.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[x_kube(validation = Rule::new("has(self.name) != has(self.id)").message("set exactly one of group.name and group.id"))]
pub struct GroupRef {
    /// The group's name (`profile.name`), matched exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub name: Option<String>,

    /// The group's Okta id, such as `00g1abcd2EFGH3ijk4x7`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub id: Option<String>,
}

/// What deleting a `GroupMembership` does to the memberships it granted.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeletionPolicy {
    /// Revoke the memberships this object granted that no other GroupMembership declares.
    #[default]
    Revoke,
    /// Leave every membership in Okta.
    Retain,
}

/// Observed state of a `GroupMembership`, written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MembershipStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current state: `Ready` (every declared user is a member in Okta) and `Expired` (the
    /// grant expired and was revoked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The Okta id of the resolved group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,

    /// When the grant expires, resolved from `expiresAt` or from `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// When the grant first became effective (the first declared user became a member);
    /// a `duration` counts from here, across operator restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_since: Option<Time>,

    /// Declared users that are members in Okta, as `ready/declared`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_users: Option<String>,

    /// Per declared (or formerly declared, until revoked) user: where its membership stands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["user".into()]))]
    pub users: Vec<UserMembershipStatus>,
}

/// Where one user's membership stands.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UserMembershipStatus {
    /// The user as written in `spec.users`.
    pub user: String,

    /// The user's Okta id, once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,

    /// Where the membership stands.
    pub state: UserMembershipState,

    /// Who made the membership, once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<MembershipOrigin>,

    /// Machine-readable reason for the state, such as `UserNotFound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,

    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// When `state` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// Where one user's membership stands.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserMembershipState {
    /// Not yet a member; the operator is working on it.
    Pending,
    /// A member in Okta.
    Granted,
    /// Refused by a guard rail or failed in Okta; `reason` says which.
    Failed,
    /// The grant expired and the membership was revoked (or left, if not the operator's).
    Expired,
    /// The user was removed from `spec.users` and the membership revoked.
    Revoked,
}

/// Who made the membership: `Granted` by this operator, or `Preexisting` in Okta before it was
/// declared (the operator never removes those).
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MembershipOrigin {
    /// This operator added it, so it may remove it.
    Granted,
    /// It existed in Okta before it was declared; the operator never removes it.
    Preexisting,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_spec_takes_defaults_and_round_trips() {
        let spec: GroupMembershipSpec = serde_json::from_value(serde_json::json!({
            "connectorRef": {"name": "acme"},
            "group": {"name": "Engineering On-Call"},
            "users": ["alice@example.com"],
            "expiresAt": "2026-12-01T08:00:00Z",
        }))
        .unwrap();
        assert_eq!(spec.deletion_policy, DeletionPolicy::Revoke);
        assert_eq!(spec.duration, None);
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["expiresAt"], "2026-12-01T08:00:00Z");
        assert_eq!(back["deletionPolicy"], "Revoke");
        assert!(back.get("duration").is_none());
    }

    #[test]
    fn user_status_serialises_in_camel_case_with_enum_names() {
        let u = UserMembershipStatus {
            user: "alice@example.com".into(),
            user_id: Some("00u1".into()),
            state: UserMembershipState::Granted,
            origin: Some(MembershipOrigin::Preexisting),
            reason: None,
            message: None,
            last_transition_time: None,
        };
        assert_eq!(
            serde_json::to_value(&u).unwrap(),
            serde_json::json!({"user": "alice@example.com", "userId": "00u1", "state": "Granted", "origin": "Preexisting"})
        );
    }
}
