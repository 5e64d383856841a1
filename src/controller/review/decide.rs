//! Pure decisions of the `AccessReview` reconciler: which GroupMembership declares an item,
//! which decisions count and what they decide (the tally), and what remediation does with
//! each item. No I/O; the reconciler gathers the facts and performs the outcome.
//!
//! The tally's rules (see `docs/reviews.md`):
//! - a decision counts only while the shipped admission policy is verified, for the review's
//!   uid, made before `dueAt`, by a reviewer whose RBAC verb `review` on the AccessReview still
//!   holds;
//! - a decision is counted whole or not at all: it is refused when it matches no item, when
//!   the reviewer is not a reviewer of every matched item, or when any matched item is the
//!   reviewer's own access;
//! - per item, the latest counted decision wins (by creation time, then name), so a reviewer
//!   corrects a mistake by creating another decision; older ones stay as evidence.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;

use crate::crd::review::{
    AccessReviewSpec, DecisionCounts, DeclaredBy, ItemKind, ItemOutcome, ItemSelector,
    RefusedDecision, RemediationMode, ReviewDecision, ReviewItem, ReviewerCounts, UnansweredPolicy,
};
use crate::crd::{AccessReviewDecisionSpec, Subjects};
use crate::review::workbook::{self, Remediation};

/// Most refused decisions listed in the status.
pub const MAX_REFUSED_LISTED: usize = 100;

/// Marks each membership item declared by a GroupMembership. `declared` maps
/// `(group id, user id)` to the declaring object, as the GroupMemberships' statuses report it.
pub fn mark_declared(items: &mut [ReviewItem], declared: &HashMap<(String, String), DeclaredBy>) {
    for item in items
        .iter_mut()
        .filter(|i| i.kind == ItemKind::GroupMembership)
    {
        item.declared_by = declared
            .get(&(item.target_id.clone(), item.user_id.clone()))
            .cloned();
    }
}

/// One `AccessReviewDecision`, with what the reconciler found out about it.
#[derive(Debug, Clone)]
pub struct DecisionFacts<'a> {
    /// The object's name.
    pub name: &'a str,
    /// Its creation time.
    pub created: Timestamp,
    /// Its spec.
    pub spec: &'a AccessReviewDecisionSpec,
    /// Whether the reviewer is still allowed the RBAC verb `review` on the AccessReview.
    pub rbac_allowed: bool,
}

/// A decision counted for an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// Keep or Revoke.
    pub decision: ReviewDecision,
    /// The reviewer's username.
    pub reviewer: String,
    /// When it was made.
    pub at: Timestamp,
    /// The decision object.
    pub name: String,
}

/// The tally of a campaign's decisions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tally {
    /// The counted decision per item id.
    pub by_item: HashMap<String, Counted>,
    /// Items per decision.
    pub counts: DecisionCounts,
    /// Per reviewer, sorted by username.
    pub reviewers: Vec<ReviewerCounts>,
    /// Decisions not counted, newest first, at most [`MAX_REFUSED_LISTED`].
    pub refused: Vec<RefusedDecision>,
}

/// Counts `decisions` over `items` of the review with `uid` and `spec`.
pub fn tally(
    spec: &AccessReviewSpec,
    uid: &str,
    items: &[ReviewItem],
    decisions: &[DecisionFacts<'_>],
) -> Tally {
    let due = spec.due_at.0;
    let mut ordered: Vec<&DecisionFacts<'_>> = decisions.iter().collect();
    ordered.sort_by(|a, b| (a.created, a.name).cmp(&(b.created, b.name)));
    let mut by_item: HashMap<String, Counted> = HashMap::new();
    let mut refused = Vec::new();
    for d in ordered {
        match covered(spec, uid, due, items, d) {
            Ok(matched) => {
                for item in matched {
                    by_item.insert(
                        item.id.clone(),
                        Counted {
                            decision: d.spec.decision,
                            reviewer: d.spec.reviewer.username.clone(),
                            at: d.created,
                            name: d.name.to_owned(),
                        },
                    );
                }
            }
            Err((reason, message)) => refused.push(RefusedDecision {
                name: d.name.to_owned(),
                reason: reason.to_owned(),
                message,
            }),
        }
    }
    refused.reverse();
    refused.truncate(MAX_REFUSED_LISTED);
    let mut counts = DecisionCounts::default();
    let mut per_reviewer: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for item in items {
        match by_item.get(&item.id) {
            None => counts.undecided += 1,
            Some(c) => {
                let entry = per_reviewer.entry(&c.reviewer).or_default();
                if c.decision == ReviewDecision::Keep {
                    counts.keep += 1;
                    entry.0 += 1;
                } else {
                    counts.revoke += 1;
                    entry.1 += 1;
                }
            }
        }
    }
    let reviewers = per_reviewer
        .into_iter()
        .map(|(reviewer, (keep, revoke))| ReviewerCounts {
            reviewer: reviewer.to_owned(),
            keep,
            revoke,
        })
        .collect();
    Tally {
        counts,
        reviewers,
        refused,
        by_item,
    }
}

/// The items a decision covers, or why it is refused (reason, message).
fn covered<'i>(
    spec: &AccessReviewSpec,
    uid: &str,
    due: Timestamp,
    items: &'i [ReviewItem],
    d: &DecisionFacts<'_>,
) -> Result<Vec<&'i ReviewItem>, (&'static str, String)> {
    let reviewer = &d.spec.reviewer;
    if d.spec.review.uid != uid {
        return Err((
            "WrongReview",
            format!(
                "made for another AccessReview {} (uid {}), not this one",
                d.spec.review.name, d.spec.review.uid
            ),
        ));
    }
    if d.created >= due {
        return Err((
            "Late",
            format!("made at {} after the review was due at {due}", d.created),
        ));
    }
    if !d.rbac_allowed {
        return Err((
            "NotAuthorized",
            format!(
                "{} is no longer allowed the RBAC verb review on this AccessReview",
                reviewer.username
            ),
        ));
    }
    let matched: Vec<&ReviewItem> = items.iter().filter(|i| selects(&d.spec.items, i)).collect();
    if matched.is_empty() {
        return Err(("NoItems", "the selector matches no item".to_owned()));
    }
    let groups = &reviewer.groups;
    let not_theirs: Vec<&&ReviewItem> = matched
        .iter()
        .filter(|i| !is_reviewer(reviewers_of(spec, i), &reviewer.username, groups))
        .collect();
    if let Some(first) = not_theirs.first() {
        return Err((
            "NotAReviewer",
            format!(
                "{} is not a reviewer of {} of the {} matched items (e.g. item {}: {} in {})",
                reviewer.username,
                not_theirs.len(),
                matched.len(),
                first.id,
                first.user_login,
                first.target_name
            ),
        ));
    }
    if let Some(own) = matched.iter().find(|i| holds(i, &reviewer.username)) {
        return Err((
            "SelfReview",
            format!(
                "{} may not review their own access (item {}: {})",
                reviewer.username, own.id, own.target_name
            ),
        ));
    }
    Ok(matched)
}

/// Whether the item matches every list the selector sets.
fn selects(selector: &ItemSelector, item: &ReviewItem) -> bool {
    let ids = selector.ids.is_empty() || selector.ids.iter().any(|id| id == &item.id);
    let users = selector.users.is_empty()
        || selector
            .users
            .iter()
            .any(|u| u == &item.user_id || u.eq_ignore_ascii_case(&item.user_login));
    let groups = selector.groups.is_empty()
        || item_group(item).is_some_and(|(id, name)| {
            selector
                .groups
                .iter()
                .any(|g| g == id || g.eq_ignore_ascii_case(name))
        });
    ids && users && groups
}

/// The group an item is about: the group of a membership, or the group a role comes through.
fn item_group(item: &ReviewItem) -> Option<(&str, &str)> {
    match item.kind {
        ItemKind::GroupMembership => Some((&item.target_id, &item.target_name)),
        _ => item
            .via_group_id
            .as_deref()
            .zip(item.via_group_name.as_deref()),
    }
}

/// Who reviews an item: the `groupReviewers` entry of its group, else the campaign's.
pub fn reviewers_of<'s>(spec: &'s AccessReviewSpec, item: &ReviewItem) -> &'s Subjects {
    item_group(item)
        .and_then(|(id, name)| {
            spec.group_reviewers
                .iter()
                .find(|g| g.group == id || g.group.eq_ignore_ascii_case(name))
        })
        .map_or(&spec.reviewers, |g| &g.reviewers)
}

fn is_reviewer(subjects: &Subjects, username: &str, groups: &[String]) -> bool {
    subjects.users.iter().any(|u| u == username)
        || subjects.groups.iter().any(|g| groups.contains(g))
}

/// Whether the item is the access of the person with Kubernetes `username`: as for access
/// requests, a Kubernetes username is the person's Okta login or primary email. Compared
/// ignoring ASCII case, as Okta compares logins.
pub fn holds(item: &ReviewItem, username: &str) -> bool {
    item.user_login.eq_ignore_ascii_case(username)
        || item
            .user_email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(username))
}

/// What remediation does with one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// Nothing to do; the outcome is final ([`ItemOutcome::Kept`], `Reported`,
    /// `ChangeDeclaration` or `Manual`), with its detail.
    Record(ItemOutcome, Option<String>),
    /// Remove the membership through the connector.
    Remove,
}

/// The remediation of `item` given its counted decision (if any).
pub fn plan(spec: &AccessReviewSpec, item: &ReviewItem, counted: Option<&Counted>) -> Planned {
    let revoked = match counted {
        Some(c) => c.decision == ReviewDecision::Revoke,
        None => spec.unanswered == UnansweredPolicy::Revoke,
    };
    if !revoked {
        return Planned::Record(ItemOutcome::Kept, None);
    }
    let unanswered = counted
        .is_none()
        .then(|| "nobody decided; unanswered: Revoke".to_owned());
    if spec.remediation == RemediationMode::Report {
        return Planned::Record(ItemOutcome::Reported, unanswered);
    }
    if let Some(declared) = &item.declared_by {
        return Planned::Record(
            ItemOutcome::ChangeDeclaration,
            Some(format!(
                "declared by GroupMembership {} ({:?}): remove {} from its spec.users in Git",
                declared.membership, declared.origin, item.user_login
            )),
        );
    }
    match workbook::remediation(item) {
        Remediation::RemoveMembership => Planned::Remove,
        Remediation::Manual { reason } => Planned::Record(ItemOutcome::Manual, Some(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::review::{GrantSource, ReviewRef};
    use crate::crd::{Identity, MembershipOrigin};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const UID: &str = "uid-1";

    fn spec() -> AccessReviewSpec {
        serde_json::from_value(serde_json::json!({
            "connectorRef": {"name": "acme"},
            "reviewers": {"users": ["carol@example.com", "Alice.Admin@Example.COM"],
                          "groups": ["auditors"]},
            "groupReviewers": [{"group": "payroll", "reviewers": {"users": ["pam@example.com"]}}],
            "dueAt": "2026-12-31T00:00:00Z",
            "remediation": "Revoke",
        }))
        .unwrap()
    }

    fn item(id: &str, login: &str, group: &str, source: GrantSource) -> ReviewItem {
        ReviewItem {
            id: id.into(),
            kind: ItemKind::GroupMembership,
            user_id: format!("00u-{login}"),
            user_login: login.into(),
            user_email: Some(login.to_lowercase()),
            user_name: login.into(),
            target_id: format!("00g-{group}"),
            target_name: group.into(),
            resource_set: None,
            via_group_id: None,
            via_group_name: None,
            source,
            group_type: Some("OKTA_GROUP".into()),
            declared_by: None,
        }
    }

    fn items() -> Vec<ReviewItem> {
        vec![
            item(
                "i1",
                "Alice.Admin@Example.COM",
                "Engineering",
                GrantSource::Direct,
            ),
            item("i2", "dave@example.com", "Engineering", GrantSource::Direct),
            item("i3", "dave@example.com", "Payroll", GrantSource::Direct),
            item("i4", "erin@example.com", "Engineering", GrantSource::Direct),
        ]
    }

    fn decision(
        reviewer: &str,
        groups: &[&str],
        decision: ReviewDecision,
        selector: serde_json::Value,
    ) -> AccessReviewDecisionSpec {
        AccessReviewDecisionSpec {
            review: ReviewRef {
                name: "q4".into(),
                uid: UID.into(),
            },
            reviewer: Identity {
                username: reviewer.into(),
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            },
            decision,
            items: serde_json::from_value(selector).unwrap(),
            note: None,
        }
    }

    fn at(minute: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000 + minute * 60).unwrap()
    }

    fn facts<'a>(
        name: &'a str,
        minute: i64,
        spec: &'a AccessReviewDecisionSpec,
    ) -> DecisionFacts<'a> {
        DecisionFacts {
            name,
            created: at(minute),
            spec,
            rbac_allowed: true,
        }
    }

    #[test]
    fn one_decision_covers_many_items_and_the_latest_per_item_wins() {
        let by_group = decision(
            "carol@example.com",
            &[],
            ReviewDecision::Keep,
            serde_json::json!({"groups": ["engineering"]}),
        );
        let by_user = decision(
            "auditor@example.com",
            &["auditors"],
            ReviewDecision::Revoke,
            serde_json::json!({"users": ["DAVE@example.com"], "groups": ["Engineering"]}),
        );
        let t = tally(
            &spec(),
            UID,
            &items(),
            &[facts("late", 2, &by_user), facts("early", 1, &by_group)],
        );
        assert_eq!(
            t.counts,
            DecisionCounts {
                keep: 2,
                revoke: 1,
                undecided: 1
            }
        );
        assert_eq!(t.by_item["i2"].name, "late");
        assert_eq!(t.by_item["i4"].decision, ReviewDecision::Keep);
        assert!(!t.by_item.contains_key("i3"));
        let reviewers: Vec<(&str, i64, i64)> = t
            .reviewers
            .iter()
            .map(|r| (r.reviewer.as_str(), r.keep, r.revoke))
            .collect();
        assert_eq!(
            reviewers,
            [("auditor@example.com", 0, 1), ("carol@example.com", 2, 0)]
        );
        assert!(t.refused.is_empty());
    }

    #[test]
    fn self_review_is_refused_whole_whatever_the_case_of_the_address() {
        let d = decision(
            "alice.admin@example.com",
            &["auditors"],
            ReviewDecision::Keep,
            serde_json::json!({"groups": ["Engineering"]}),
        );
        let t = tally(&spec(), UID, &items(), &[facts("mine", 1, &d)]);
        assert_eq!(t.counts.undecided, 4);
        assert_eq!(t.refused[0].reason, "SelfReview");
        assert!(t.refused[0].message.contains("item i1"), "{:?}", t.refused);
    }

    #[test]
    fn unlisted_reviewers_and_other_groups_reviewers_are_refused() {
        // Listed for the campaign, but Payroll has its own reviewers.
        let d = decision(
            "carol@example.com",
            &[],
            ReviewDecision::Revoke,
            serde_json::json!({"users": ["dave@example.com"]}),
        );
        let outsider = decision(
            "mallory@example.com",
            &["auditors-not"],
            ReviewDecision::Revoke,
            serde_json::json!({"ids": ["i4"]}),
        );
        let owner = decision(
            "pam@example.com",
            &[],
            ReviewDecision::Revoke,
            serde_json::json!({"ids": ["i3"]}),
        );
        let t = tally(
            &spec(),
            UID,
            &items(),
            &[
                facts("carol", 1, &d),
                facts("mallory", 2, &outsider),
                facts("pam", 3, &owner),
            ],
        );
        let refused: Vec<(&str, &str)> = t
            .refused
            .iter()
            .map(|r| (r.name.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(
            refused,
            [("mallory", "NotAReviewer"), ("carol", "NotAReviewer")]
        );
        assert!(t.refused[1].message.contains("1 of the 2 matched items"));
        assert_eq!(t.counts.revoke, 1);
        assert_eq!(t.by_item["i3"].reviewer, "pam@example.com");
    }

    #[test]
    fn late_other_review_lost_rbac_and_empty_selections_are_refused() {
        let mut s = spec();
        s.due_at = Time(at(10));
        let ok = decision(
            "carol@example.com",
            &[],
            ReviewDecision::Keep,
            serde_json::json!({"ids": ["i4"]}),
        );
        let mut other = ok.clone();
        other.review.uid = "uid-old".into();
        let none = decision(
            "carol@example.com",
            &[],
            ReviewDecision::Keep,
            serde_json::json!({"ids": ["nope"]}),
        );
        let mut lost = facts("lost", 1, &ok);
        lost.rbac_allowed = false;
        let t = tally(
            &s,
            UID,
            &items(),
            &[
                facts("late", 10, &ok),
                facts("old", 2, &other),
                facts("none", 3, &none),
                lost,
            ],
        );
        let reasons: Vec<&str> = t.refused.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons, ["Late", "NoItems", "WrongReview", "NotAuthorized"]);
        assert_eq!(t.counts.undecided, 4);
    }

    #[test]
    fn remediation_keeps_declared_memberships_in_git_and_leaves_manual_work_to_people() {
        let s = spec();
        let revoke = Counted {
            decision: ReviewDecision::Revoke,
            reviewer: "carol@example.com".into(),
            at: at(1),
            name: "d".into(),
        };
        let mut declared = item("i1", "dave@example.com", "Engineering", GrantSource::Direct);
        let mut map = HashMap::new();
        map.insert(
            (declared.target_id.clone(), declared.user_id.clone()),
            DeclaredBy {
                membership: "eng".into(),
                origin: MembershipOrigin::Granted,
            },
        );
        mark_declared(std::slice::from_mut(&mut declared), &map);
        assert!(matches!(
            plan(&s, &declared, Some(&revoke)),
            Planned::Record(ItemOutcome::ChangeDeclaration, Some(m)) if m.contains("GroupMembership eng")
        ));
        let imported = item("i2", "dave@example.com", "AD", GrantSource::Imported);
        assert!(matches!(
            plan(&s, &imported, Some(&revoke)),
            Planned::Record(ItemOutcome::Manual, Some(_))
        ));
        let direct = item("i3", "dave@example.com", "Eng", GrantSource::Direct);
        assert_eq!(plan(&s, &direct, Some(&revoke)), Planned::Remove);
        assert_eq!(
            plan(&s, &direct, None),
            Planned::Record(ItemOutcome::Kept, None)
        );
        let mut unanswered = s.clone();
        unanswered.unanswered = UnansweredPolicy::Revoke;
        assert_eq!(plan(&unanswered, &direct, None), Planned::Remove);
        let mut report = s;
        report.remediation = RemediationMode::Report;
        assert!(matches!(
            plan(&report, &direct, Some(&revoke)),
            Planned::Record(ItemOutcome::Reported, None)
        ));
    }

    #[test]
    fn group_reviewers_cover_roles_held_through_their_group() {
        let mut role = item(
            "r1",
            "dave@example.com",
            "SUPER_ADMIN",
            GrantSource::ViaGroup,
        );
        role.kind = ItemKind::AdminRole;
        role.via_group_id = Some("00g-x".into());
        role.via_group_name = Some("PAYROLL".into());
        let s = spec();
        assert_eq!(reviewers_of(&s, &role).users, ["pam@example.com"]);
    }
}
