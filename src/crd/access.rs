//! Just-in-time access: `AccessPolicy` (who may ask for which Okta groups, for how long, and
//! who approves), `AccessRequest` (a person asks for membership in one group for a while) and
//! `AccessApproval` (an approver's immutable decision on one request).
//!
//! Who asked and who approved is checked at admission by the shipped
//! `ValidatingAdmissionPolicy` (`manifests/install/access-admission.yaml`): the identities in
//! these specs equal the authenticated user. The operator honours approvals only while that
//! policy is installed and enforcing (see `docs/access-requests.md`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::connector::DURATION_PATTERN;
use super::membership::ConnectorRef;

/// Cluster-wide rules a platform team sets and tenants cannot edit: which groups may be asked
/// for through `AccessRequest`s (`requests`), and which namespaces may declare standing
/// `GroupMembership`s in which groups of which Okta org (`standing`).
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "oktaciam.io",
    version = "v1alpha1",
    kind = "AccessPolicy",
    shortname = "ap",
    category = "okta",
    doc = "AccessPolicy is a cluster-wide grant policy. Its requests section says which Okta groups of which connector may be requested through AccessRequests, by whom, for how long, and how many approvals a request needs; approvers are people allowed the RBAC verb `approve` on this AccessPolicy (optionally narrowed to listed users or groups). Its standing section says which namespaces may declare standing GroupMemberships in which groups of which Okta org (enforced with `run --require-policy`), and which groups holding Okta admin roles may be granted at all.",
    printcolumn(
        name = "Connector",
        type_ = "string",
        json_path = ".spec.requests.connectorRef.name",
        description = "The connector, in the requesting namespace"
    ),
    printcolumn(
        name = "Org",
        type_ = "string",
        json_path = ".spec.standing.domain",
        description = "The Okta org its standing rules cover"
    ),
    printcolumn(
        name = "Approvals",
        type_ = "integer",
        json_path = ".spec.requests.approvals",
        description = "Distinct approvers a request needs"
    ),
    printcolumn(
        name = "Max",
        type_ = "string",
        json_path = ".spec.requests.maxDuration",
        description = "Longest grant"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("has(self.requests) ? true : has(self.standing)").message("set requests, standing or both"))]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicySpec {
    /// Rules for `AccessRequest`s naming this policy. Unset: no request may name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestRules>,

    /// Rules for standing `GroupMembership`s: which namespaces may declare memberships in
    /// which groups of which Okta org. Unset: this policy allows no standing membership.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing: Option<StandingRules>,
}

/// Which namespaces may declare standing `GroupMembership`s in which groups of one Okta org.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StandingRules {
    /// The namespaces (by their labels) whose `GroupMembership`s these rules allow. `{}`
    /// selects every namespace; a selector the API server would reject selects none.
    pub namespace_selector: LabelSelector,

    /// The Okta org, as the connectors' `domain` (such as `acme.okta.com`; compared after the
    /// same normalisation), so one rule covers every namespace's connector for that org.
    #[schemars(length(min = 1, max = 253))]
    pub domain: String,

    /// Narrows the rules to connectors of this name. Unset: any connector for the org.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub connector_name: Option<String>,

    /// The groups that may be granted. 1 to 100 entries.
    #[schemars(length(min = 1, max = 100))]
    pub groups: Vec<GroupRule>,
}

/// Okta groups a standing rule allows: one exact name, one id, or every name with a prefix.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.name), has(self.id), has(self.namePrefix)].filter(x, x).size() == 1").message("set exactly one of name, id and namePrefix"))]
#[x_kube(validation = Rule::new("!(self.allowPrivileged && has(self.namePrefix))").message("allowPrivileged needs an exact name or id, not a namePrefix"))]
pub struct GroupRule {
    /// The group's name (`profile.name`), matched exactly, case included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub name: Option<String>,

    /// The group's Okta id, such as `00g1abcd2EFGH3ijk4x7`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub id: Option<String>,

    /// Every group whose name starts with this text, case included (a pattern anchored at
    /// the start; `team-a-` never matches `Steam-a-Admins`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub name_prefix: Option<String>,

    /// Whether the group may be granted although it holds an Okta admin role (standard or
    /// custom). Only with an exact `name` or `id`.
    #[serde(default)]
    pub allow_privileged: bool,
}

/// Who may request which groups, for how long, and how requests are approved.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.defaultDuration) ? duration(self.defaultDuration) <= duration(self.maxDuration) : true").message("defaultDuration must not exceed maxDuration"))]
pub struct RequestRules {
    /// The `OktaCiamConnector` that grants, looked up in the namespace of each request.
    pub connector_ref: ConnectorRef,

    /// Namespaces whose `AccessRequest`s may name this policy. 1 to 100 entries.
    #[schemars(length(min = 1, max = 100), inner(length(min = 1, max = 63)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub namespaces: Vec<String>,

    /// Okta group names (matched exactly) that may be requested. 1 to 100 entries.
    #[schemars(length(min = 1, max = 100), inner(length(min = 1, max = 255)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub groups: Vec<String>,

    /// Who may request. Unset: anyone allowed to create `AccessRequest`s in the namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requesters: Option<Subjects>,

    /// Whether a request may be for another Okta user than the requester's own. Default false:
    /// the Okta user is the requester's Kubernetes username.
    #[serde(default)]
    pub allow_requests_for_others: bool,

    /// The longest grant, such as `8h`. Longer requests are capped to it.
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("maxDuration must be positive"))]
    pub max_duration: String,

    /// The grant's length when a request names none. Unset: `maxDuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("defaultDuration must be positive"))]
    pub default_duration: Option<String>,

    /// Distinct approvers (never the requester) a request needs. 1 to 10, default 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10))]
    pub approvals: i32,

    /// Narrows who may approve: besides RBAC verb `approve` on this AccessPolicy, the approver
    /// must be one of these users or in one of these groups. Unset: RBAC alone decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Subjects>,

    /// Whether a request must give a reason.
    #[serde(default)]
    pub require_reason: bool,

    /// Whether the listed groups may be granted although they hold an Okta admin role
    /// (standard or custom). Default false: such a group is refused (`GroupHoldsAdminRole`).
    #[serde(default)]
    pub allow_privileged: bool,

    /// Break-glass: requests are approved without approvers, still recorded with a Warning
    /// Event. Identities are still checked at admission.
    #[serde(default)]
    pub auto_approve: bool,

    /// How long a request may wait for its approvals before it expires. Default `24h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("pendingTimeout must be positive"))]
    pub pending_timeout: Option<String>,
}

fn one() -> i32 {
    1
}

/// Kubernetes users and groups, as the API server authenticates them.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Subjects {
    /// Kubernetes usernames, such as `alice@example.com`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 320)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub users: Vec<String>,

    /// Kubernetes groups, such as `oncall-leads`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 253)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub groups: Vec<String>,
}

/// An authenticated Kubernetes identity recorded in a spec. Admission checks that `username`
/// is the creating user and every entry of `groups` is one of that user's groups.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The Kubernetes username (with OIDC, usually the email).
    #[schemars(length(min = 1, max = 320))]
    pub username: String,

    /// Some or all of the user's Kubernetes groups, as authenticated when the object was made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 253)))]
    pub groups: Vec<String>,
}

/// A person asks for membership in one Okta group for a while.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "oktaciam.io",
    version = "v1alpha1",
    kind = "AccessRequest",
    namespaced,
    status = "AccessRequestStatus",
    shortname = "areq",
    category = "okta",
    doc = "AccessRequest asks for membership of one Okta user in one Okta group for a while, under an AccessPolicy. Once approved the operator grants it through a GroupMembership owned by this request; the grant is revoked when it expires or when the request is deleted. The spec is immutable.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Approved, Denied, Active, Expired, Revoked or Failed"
    ),
    printcolumn(
        name = "Group",
        type_ = "string",
        json_path = ".spec.group",
        description = "The Okta group"
    ),
    printcolumn(
        name = "User",
        type_ = "string",
        json_path = ".status.oktaUser",
        description = "The Okta user it is for"
    ),
    printcolumn(
        name = "Approvals",
        type_ = "string",
        json_path = ".status.approvals",
        description = "Counted approvals, as counted/required"
    ),
    printcolumn(
        name = "Expires",
        // A string: kubectl prints date columns as an age, `<invalid>` for future instants.
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
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestSpec {
    /// The `AccessPolicy` this request is made under.
    #[schemars(length(min = 1, max = 253))]
    pub policy: String,

    /// Who asks: must be the authenticated user creating the object (checked at admission).
    pub requester: Identity,

    /// The Okta user (login or primary email) to add. Unset: the requester's username. Another
    /// user only where the policy has `allowRequestsForOthers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 320))]
    pub user: Option<String>,

    /// The Okta group's name, one of the policy's `groups`.
    #[schemars(length(min = 1, max = 255))]
    pub group: String,

    /// How long the membership lasts once granted, such as `2h`. Unset: the policy's
    /// `defaultDuration`. Capped to the policy's `maxDuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("duration must be positive"))]
    pub duration: Option<String>,

    /// Why the access is needed (shown to approvers and in Events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,

    /// A ticket or incident reference, such as `INC-1234`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub ticket: Option<String>,
}

/// Where an `AccessRequest` stands.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessPhase {
    /// Waiting for approvals (or for the admission policy to be verifiable).
    Pending,
    /// Approved; the GroupMembership is being created.
    Approved,
    /// Denied by an approver. Final.
    Denied,
    /// The user is a member in Okta.
    Active,
    /// The grant ran out and was revoked, or the request waited longer than the policy's
    /// `pendingTimeout`. Final.
    Expired,
    /// The request was deleted before the grant ran out; the grant was revoked. Final.
    Revoked,
    /// The request cannot be granted under its policy; the condition says why. Final.
    Failed,
}

/// Observed state of an `AccessRequest`, written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestStatus {
    /// Where the request stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AccessPhase>,

    /// `Approved` (the decision) and `Ready` (the user is a member in Okta), with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The Okta user the request is for (the spec's `user`, else the requester's username).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub okta_user: Option<String>,

    /// Approvals counted so far, as `counted/required`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<String>,

    /// The distinct approvers whose approvals were counted at the decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,

    /// The approver whose denial decided the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_by: Option<String>,

    /// The granted duration, after the policy's cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,

    /// When the request was decided (approved, denied or expired while pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Time>,

    /// When the grant expires, as the GroupMembership reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// The GroupMembership (same namespace, owned by this request) that grants the access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<String>,
}

/// An approver's decision on one `AccessRequest`. Immutable.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "oktaciam.io",
    version = "v1alpha1",
    kind = "AccessApproval",
    namespaced,
    shortname = "aapr",
    category = "okta",
    doc = "AccessApproval records one approver's decision (Approve or Deny) on an AccessRequest in the same namespace. The approver must be the authenticated user creating it and be allowed the RBAC verb `approve` on the request's AccessPolicy (both checked at admission, the latter again by the operator at decision time). Immutable.",
    printcolumn(
        name = "Request",
        type_ = "string",
        json_path = ".spec.request.name",
        description = "The AccessRequest decided on"
    ),
    printcolumn(
        name = "Decision",
        type_ = "string",
        json_path = ".spec.decision",
        description = "Approve or Deny"
    ),
    printcolumn(
        name = "Approver",
        type_ = "string",
        json_path = ".spec.approver.username",
        description = "Who decided"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct AccessApprovalSpec {
    /// The `AccessRequest`, in this namespace, by name and uid (so a request re-created
    /// under the same name is not approved by an old approval).
    pub request: RequestRef,

    /// The request's `AccessPolicy`; admission checks the approver's RBAC verb `approve` on it.
    #[schemars(length(min = 1, max = 253))]
    pub policy: String,

    /// `Approve` or `Deny`. One counted `Deny` is final.
    pub decision: Decision,

    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,

    /// Who decides: must be the authenticated user creating the object (checked at admission).
    pub approver: Identity,
}

/// An `AccessRequest` by name and uid.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RequestRef {
    /// Name of the AccessRequest in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Its `metadata.uid`.
    #[schemars(length(min = 1, max = 64))]
    pub uid: String,
}

/// An approver's decision.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Counts towards the policy's `approvals`.
    Approve,
    /// Denies the request; final.
    Deny,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_defaults_and_round_trips() {
        let spec: AccessPolicySpec = serde_json::from_value(serde_json::json!({"requests": {
            "connectorRef": {"name": "acme"},
            "namespaces": ["identity"],
            "groups": ["Eng On-Call"],
            "maxDuration": "8h",
        }}))
        .unwrap();
        let requests = spec.requests.as_ref().unwrap();
        assert_eq!(requests.approvals, 1);
        assert!(!requests.auto_approve && !requests.allow_requests_for_others);
        assert!(!requests.allow_privileged && spec.standing.is_none());
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["requests"]["approvals"], 1);
        assert!(back["requests"].get("approvers").is_none());
        assert!(back.get("standing").is_none());
    }

    #[test]
    fn standing_rules_round_trip() {
        let spec: AccessPolicySpec = serde_json::from_value(serde_json::json!({"standing": {
            "namespaceSelector": {"matchLabels": {"tenant": "team-a"}},
            "domain": "acme.okta.com",
            "groups": [{"namePrefix": "team-a-"}, {"name": "Team A Admins", "allowPrivileged": true}],
        }}))
        .unwrap();
        let standing = spec.standing.as_ref().unwrap();
        assert!(spec.requests.is_none() && standing.connector_name.is_none());
        assert!(!standing.groups[0].allow_privileged && standing.groups[1].allow_privileged);
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            back["standing"]["groups"][0],
            serde_json::json!({"namePrefix": "team-a-", "allowPrivileged": false})
        );
    }

    #[test]
    fn phase_and_decision_serialise_as_their_names() {
        assert_eq!(
            serde_json::to_value(AccessPhase::Revoked).unwrap(),
            "Revoked"
        );
        assert_eq!(serde_json::to_value(Decision::Deny).unwrap(), "Deny");
    }
}
