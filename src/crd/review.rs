//! User access reviews in the cluster: `AccessReview` (a campaign over one connector's
//! snapshot), `AccessReviewChunk` (the campaign's frozen items, a bounded number per object,
//! written by the operator only) and `AccessReviewDecision` (a reviewer's immutable decision
//! on many items at once).
//!
//! Who decided is checked at admission by the shipped `ValidatingAdmissionPolicy`
//! (`manifests/install/access-admission.yaml`), as for `AccessApproval`s: the reviewer in a
//! decision is the authenticated user. See `docs/reviews.md`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::access::{Identity, Subjects};
use super::membership::{ConnectorRef, MembershipOrigin};

/// Most items one `AccessReviewChunk` holds. An item serialises to about 600 bytes and its
/// per-item status to about 300, so a full chunk stays near 0.5 MiB, a third of etcd's
/// 1.5 MiB object limit, whatever the campaign's size.
pub const ITEMS_PER_CHUNK: usize = 500;

/// A user access review campaign.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "oktaciam.io",
    version = "v1alpha1",
    kind = "AccessReview",
    namespaced,
    status = "AccessReviewStatus",
    shortname = "arev",
    category = "okta",
    doc = "AccessReview is a user access review campaign over one connector's snapshot: at startAt the operator freezes every in-scope group membership (and optionally admin role) into items held in AccessReviewChunks, listed reviewers decide them with AccessReviewDecisions until dueAt, and then Revoke decisions are remediated or reported. The spec is immutable.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Scheduled, Open, Remediating or Completed"
    ),
    printcolumn(
        name = "Connector",
        type_ = "string",
        json_path = ".spec.connectorRef.name",
        description = "The connector whose snapshot is reviewed"
    ),
    printcolumn(
        name = "Items",
        type_ = "integer",
        json_path = ".status.items",
        description = "Frozen items"
    ),
    printcolumn(
        name = "Undecided",
        type_ = "integer",
        json_path = ".status.decisions.undecided",
        description = "Items nobody has decided"
    ),
    printcolumn(
        name = "Due",
        // A string: kubectl prints date columns as an age, `<invalid>` for future instants.
        type_ = "string",
        json_path = ".spec.dueAt",
        description = "When decisions close"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable"))]
#[x_kube(validation = Rule::new("!has(self.startAt) || timestamp(self.startAt) < timestamp(self.dueAt)").message("startAt must be before dueAt"))]
#[x_kube(validation = Rule::new("!has(self.recurrence) || has(self.startAt)").message("a recurring campaign needs startAt, the start of its first period"))]
#[serde(rename_all = "camelCase")]
pub struct AccessReviewSpec {
    /// The `OktaCiamConnector` in this namespace whose last snapshot is reviewed.
    pub connector_ref: ConnectorRef,

    /// Groups to review, each by exact Okta id or by name (ignoring case). Empty: every group
    /// in the connector's scope. At most 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 255)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub groups: Vec<String>,

    /// Whether admin roles (standard and custom, held directly or through a group) are
    /// reviewed too. Revoked roles are always reported, never removed.
    #[serde(default)]
    pub include_roles: bool,

    /// Who reviews every item that no `groupReviewers` entry covers.
    #[x_kube(validation = Rule::new("(has(self.users) && size(self.users) > 0) || (has(self.groups) && size(self.groups) > 0)").message("name at least one reviewer user or group"))]
    pub reviewers: Subjects,

    /// Reviewers of single groups (such as each group's owner): the items of a listed group
    /// (its memberships, and roles held through it) are decided by these reviewers only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub group_reviewers: Vec<GroupReviewers>,

    /// When the items are frozen and decisions open. Unset: as soon as the object exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<Time>,

    /// When decisions close. Decisions made later are refused; remediation starts then.
    pub due_at: Time,

    /// What happens to items decided (or, with `unanswered: Revoke`, left) `Revoke`:
    /// `Revoke` removes what the operator may remove and marks the rest; `Report` only
    /// records them. Default `Report`.
    #[serde(default)]
    pub remediation: RemediationMode,

    /// What happens to items nobody decided by `dueAt`: `None` keeps them, `Revoke` treats
    /// them as revoked. Default `None`.
    #[serde(default)]
    pub unanswered: UnansweredPolicy,

    /// Makes the campaign recurring: at `startAt` + one period the operator creates the next
    /// campaign, a new `AccessReview` with this spec and `startAt`/`dueAt` one period later,
    /// whatever this one's phase. Needs `startAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<Recurrence>,
}

/// The allowed syntax of [`Recurrence::every`]: whole days, hours, minutes and seconds.
pub const PERIOD_PATTERN: &str = r"^([0-9]+(d|h|m|s))+$";

/// How often a campaign recurs.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Recurrence {
    /// The period, in days (of 24 hours), hours, minutes and seconds: `91d` (about a
    /// quarter), `30d`, `1d12h`. At least `dueAt - startAt`, so campaigns of one series never
    /// overlap.
    #[schemars(length(min = 2, max = 32), regex(pattern = PERIOD_PATTERN))]
    pub every: String,
}

/// The reviewers of one group's items.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct GroupReviewers {
    /// The group, by exact Okta id or by name (ignoring case).
    #[schemars(length(min = 1, max = 255))]
    pub group: String,

    /// Who reviews it.
    #[x_kube(validation = Rule::new("(has(self.users) && size(self.users) > 0) || (has(self.groups) && size(self.groups) > 0)").message("name at least one reviewer user or group"))]
    pub reviewers: Subjects,
}

/// What happens to revoked items.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RemediationMode {
    /// Remove revoked memberships the operator may remove; mark the rest.
    Revoke,
    /// Record the decisions only; change nothing.
    #[default]
    Report,
}

/// What happens to items nobody decided.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UnansweredPolicy {
    /// Keep them.
    #[default]
    None,
    /// Treat them as revoked.
    Revoke,
}

/// Where a campaign stands.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewPhase {
    /// Waiting for `startAt`, or for the connector's snapshot.
    Scheduled,
    /// Items frozen; decisions are counted until `dueAt`.
    Open,
    /// Past `dueAt`: revoked items are being remediated.
    Remediating,
    /// Every item has its outcome. Final.
    Completed,
}

/// Observed state of an `AccessReview`, written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccessReviewStatus {
    /// Where the campaign stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ReviewPhase>,

    /// `Frozen` (the items are stored), `Overdue` (past `dueAt` with items undecided),
    /// `Remediated` (every revoked item has its outcome), `Recurring` (a recurring campaign's
    /// next campaign is created), with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// `sha256:<hex>` of the snapshot the items were frozen from (its JSON as the operator
    /// serialises it), so evidence names the exact data reviewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_digest: Option<String>,

    /// When the frozen snapshot's sync finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_synced_at: Option<Time>,

    /// When the items were frozen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_at: Option<Time>,

    /// Number of frozen items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<i64>,

    /// Number of `AccessReviewChunk`s holding them (named `<review>-<index>`, from 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<i32>,

    /// Items per counted decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decisions: Option<DecisionCounts>,

    /// Items each reviewer decided (their latest decision per item), by username.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["reviewer".into()]))]
    pub reviewers: Vec<ReviewerCounts>,

    /// Decisions that were not counted, and why (at most 100, newest first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub refused_decisions: Vec<RefusedDecision>,

    /// Items per remediation outcome, once remediation started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<OutcomeCounts>,

    /// When every item had its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,

    /// A recurring campaign's successor: the `AccessReview` the operator created for the next
    /// period (labelled with the series, not owned by this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Items per decision.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecisionCounts {
    /// Items decided `Keep`.
    pub keep: i64,
    /// Items decided `Revoke`.
    pub revoke: i64,
    /// Items nobody decided.
    pub undecided: i64,
}

/// What one reviewer decided.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ReviewerCounts {
    /// The reviewer's Kubernetes username.
    pub reviewer: String,
    /// Items this reviewer's counted decisions keep.
    pub keep: i64,
    /// Items this reviewer's counted decisions revoke.
    pub revoke: i64,
}

/// A decision that was not counted.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RefusedDecision {
    /// The `AccessReviewDecision`'s name.
    pub name: String,
    /// Why, machine-readable: `NotAReviewer`, `SelfReview`, `NoItems`, `Late`,
    /// `WrongReview` or `NotAuthorized`.
    pub reason: String,
    /// Why, for people.
    pub message: String,
}

/// Items per remediation outcome.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeCounts {
    /// Kept, or left undecided under `unanswered: None`.
    pub kept: i64,
    /// Revoked under `remediation: Report`: recorded only.
    pub reported: i64,
    /// Removed from the Okta group by the operator.
    pub removed: i64,
    /// Already gone from the group when the operator looked.
    pub already_removed: i64,
    /// Declared by a GroupMembership: change the declaration in Git.
    pub change_declaration: i64,
    /// A person must act (roles, imported or built-in groups).
    pub manual: i64,
    /// A guard rail stopped the removal (connector suspended, no credentials, not an
    /// `OKTA_GROUP`).
    pub refused: i64,
    /// Okta refused or failed the removal; retried on the next round.
    pub failed: i64,
    /// Held by the connector's mass-revocation circuit breaker; retried on the next round.
    #[serde(default)]
    pub held: i64,
}

/// One chunk of an `AccessReview`'s frozen items. Written by the operator only.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "oktaciam.io",
    version = "v1alpha1",
    kind = "AccessReviewChunk",
    namespaced,
    status = "AccessReviewChunkStatus",
    shortname = "arevc",
    category = "okta",
    doc = "AccessReviewChunk holds up to 500 frozen items of an AccessReview (owned by it) and, in its status, each item's counted decision and remediation outcome. Written by the operator only; people read it through `okta-ciam-operator review report`. The spec is immutable.",
    printcolumn(
        name = "Review",
        type_ = "string",
        json_path = ".spec.review",
        description = "The AccessReview"
    ),
    printcolumn(
        name = "Index",
        type_ = "integer",
        json_path = ".spec.index",
        description = "Position in the campaign"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct AccessReviewChunkSpec {
    /// The `AccessReview` in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub review: String,

    /// The chunk's position in the campaign, from 0.
    #[schemars(range(min = 0))]
    pub index: i32,

    /// The snapshot the items were frozen from.
    #[schemars(length(max = 80))]
    pub snapshot_digest: String,

    /// The items, in campaign order.
    #[schemars(length(max = 500))]
    pub items: Vec<ReviewItem>,
}

/// Each item's counted decision and outcome, written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccessReviewChunkStatus {
    /// One entry per decided or remediated item, in item order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub items: Vec<ItemStatus>,
}

/// What was decided on one item and what became of it.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ItemStatus {
    /// The item's id.
    pub id: String,

    /// The counted decision, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<ReviewDecision>,

    /// Who made it (Kubernetes username).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<String>,

    /// When (the decision object's creation time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Time>,

    /// The `AccessReviewDecision` counted, whose note explains it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,

    /// What remediation did, once it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ItemOutcome>,

    /// Detail of the outcome: the GroupMembership to change, the manual step, the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What remediation did with one item.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemOutcome {
    /// Kept (decided `Keep`, or undecided under `unanswered: None`).
    Kept,
    /// Revoked under `remediation: Report`; nothing changed.
    Reported,
    /// The operator removed the membership in Okta.
    Removed,
    /// The membership was already gone.
    AlreadyRemoved,
    /// Declared by a GroupMembership: remove the user from it in Git.
    ChangeDeclaration,
    /// A person must remove it (roles, `APP_GROUP`, `BUILT_IN`).
    Manual,
    /// A guard rail stopped the removal.
    Refused,
    /// The removal failed; retried.
    Failed,
    /// The connector's mass-revocation circuit breaker holds the removal
    /// (`spec.safety.maxRevocationsPerHour`); retried, and released by a new value of the
    /// connector's `oktaciam.io/release-revocations` annotation.
    Held,
}

impl ItemOutcome {
    /// Whether the outcome is settled: `Failed` and `Held` items are tried again.
    pub fn is_final(self) -> bool {
        !matches!(self, ItemOutcome::Failed | ItemOutcome::Held)
    }
}

/// A reviewer's decision on many items of an `AccessReview`. Immutable.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "oktaciam.io",
    version = "v1alpha1",
    kind = "AccessReviewDecision",
    namespaced,
    shortname = "arevd",
    category = "okta",
    doc = "AccessReviewDecision records one reviewer's decision (Keep or Revoke) on the items of an AccessReview in the same namespace that its selector matches. The reviewer must be the authenticated user creating it and be allowed the RBAC verb `review` on the AccessReview (both checked at admission, the latter again by the operator), be a reviewer the campaign names for every matched item, and hold none of them. Immutable.",
    printcolumn(
        name = "Review",
        type_ = "string",
        json_path = ".spec.review.name",
        description = "The AccessReview"
    ),
    printcolumn(
        name = "Decision",
        type_ = "string",
        json_path = ".spec.decision",
        description = "Keep or Revoke"
    ),
    printcolumn(
        name = "Reviewer",
        type_ = "string",
        json_path = ".spec.reviewer.username",
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
pub struct AccessReviewDecisionSpec {
    /// The `AccessReview`, in this namespace, by name and uid (so a campaign re-created under
    /// the same name is not decided by old decisions).
    pub review: ReviewRef,

    /// Who decides: must be the authenticated user creating the object (checked at admission).
    pub reviewer: Identity,

    /// `Keep` or `Revoke`, for every matched item.
    pub decision: ReviewDecision,

    /// Which items: those matching every selector that is set.
    pub items: ItemSelector,

    /// Why (shown in the report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub note: Option<String>,
}

/// An `AccessReview` by name and uid.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ReviewRef {
    /// Name of the AccessReview in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Its `metadata.uid`.
    #[schemars(length(min = 1, max = 64))]
    pub uid: String,
}

/// Which items a decision covers: an item matches when it matches every list that is set
/// (and any entry within a list). At least one list must be set.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[x_kube(validation = Rule::new("(has(self.ids) && size(self.ids) > 0) || (has(self.users) && size(self.users) > 0) || (has(self.groups) && size(self.groups) > 0)").message("select items by ids, users or groups"))]
pub struct ItemSelector {
    /// Item ids, as in the report or workbook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 64)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub ids: Vec<String>,

    /// Okta users, by id or login (ignoring case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500), inner(length(min = 1, max = 320)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub users: Vec<String>,

    /// Okta groups, by id or name (ignoring case): memberships of the group, and roles held
    /// through it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 255)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub groups: Vec<String>,
}

/// A reviewer's decision on an item.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewDecision {
    /// The user keeps the grant.
    Keep,
    /// The grant is to be removed.
    Revoke,
}

/// What an item grants.
#[derive(
    JsonSchema, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum ItemKind {
    /// The user is a member of a group.
    GroupMembership,
    /// The user holds a standard admin role.
    AdminRole,
    /// The user holds a custom admin role on a resource set.
    CustomRole,
}

/// How the user came to hold the grant, as far as the snapshot shows.
#[derive(
    JsonSchema, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum GrantSource {
    /// Held by the user itself: a membership of an `OKTA_GROUP`, or a role assigned to the user.
    Direct,
    /// A role the user holds because a group it is a member of holds it.
    ViaGroup,
    /// A membership of an `APP_GROUP`: owned by the directory or app it was imported from.
    Imported,
    /// A membership of a `BUILT_IN` group (such as Everyone): Okta manages it.
    BuiltIn,
}

/// The `GroupMembership` that declares a membership, as the operator's status records it.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DeclaredBy {
    /// The GroupMembership's name, in the review's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub membership: String,

    /// `Granted` (the operator added it) or `Preexisting` (it was there before).
    pub origin: MembershipOrigin,
}

/// One thing a reviewer keeps or revokes.
#[derive(KubeSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewItem {
    /// Stable id: the same grant in the same snapshot always gets the same id.
    #[schemars(length(max = 64))]
    pub id: String,
    /// What is granted.
    pub kind: ItemKind,
    /// Okta user id.
    pub user_id: String,
    /// The user's login.
    pub user_login: String,
    /// The user's primary email, when Okta has one (who counts as the user when checking
    /// that nobody reviews their own access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
    /// The user's display name.
    pub user_name: String,
    /// Group id, standard role type or custom role id.
    pub target_id: String,
    /// Group name or role label.
    pub target_name: String,
    /// The resource set of a custom role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_set: Option<String>,
    /// The group a role comes through ([`GrantSource::ViaGroup`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via_group_id: Option<String>,
    /// That group's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via_group_name: Option<String>,
    /// How the user holds it.
    pub source: GrantSource,
    /// The group's Okta type for memberships (`OKTA_GROUP`, `APP_GROUP`, `BUILT_IN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_type: Option<String>,
    /// The GroupMembership declaring this membership (cluster state; unknown from a
    /// snapshot file alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_by: Option<DeclaredBy>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_report_and_keep_unanswered() {
        let spec: AccessReviewSpec = serde_json::from_value(serde_json::json!({
            "connectorRef": {"name": "acme"},
            "reviewers": {"users": ["carol@example.com"]},
            "dueAt": "2026-12-31T00:00:00Z",
        }))
        .unwrap();
        assert_eq!(spec.remediation, RemediationMode::Report);
        assert_eq!(spec.unanswered, UnansweredPolicy::None);
        assert_eq!(
            serde_json::to_value(UnansweredPolicy::None).unwrap(),
            "None"
        );
    }
}
