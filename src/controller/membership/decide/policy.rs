//! The grant-policy gates: whether a cluster-wide `AccessPolicy` lets this namespace grant
//! the group (`run --require-policy`), and whether a group holding an Okta admin role may be
//! granted at all ([`check_grant_policy`]).
//!
//! Both gate **grants** only. A round that lets go (expired, deleted, `spec.group` moved)
//! never asks them, and a refused declaration keeps the memberships it already holds: the
//! operator neither revokes behind a person's back when a policy is narrowed nor leaves the
//! refusal silent. Its rows and `Ready` condition show the refusal, and the grants go once
//! the declaration does (deleted, expired, or the user removed from `spec.users`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};

use super::report::name_a_few;
use super::{DeclaredUser, OktaGroup, Reason, Refusal};
use crate::crd::access::{GroupRule, RequestRules, StandingRules};

/// What the grant-policy gates look at, gathered by the reconciler.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyFacts {
    /// `run --require-policy`: a grant needs a policy that allows it.
    pub require_policy: bool,
    /// The `GroupMembership`'s namespace.
    pub namespace: String,
    /// That namespace's labels (empty when it could not be read: only `{}` selects it then).
    pub namespace_labels: BTreeMap<String, String>,
    /// The referenced connector's name.
    pub connector: String,
    /// The connector's org domain, normalised as the Okta client does; `None` when unknown.
    pub domain: Option<String>,
    /// The `standing` section of every `AccessPolicy` that has one.
    pub standing: Vec<StandingPolicy>,
    /// The `AccessRequest` that owns the membership (its controller owner reference), if any.
    pub request: Option<RequestGrant>,
    /// The Okta admin roles the declared group holds.
    pub group_roles: GroupRoles,
    /// Why the gate cannot decide this round (the policies are not listed yet, the owning
    /// request could not be read): grants wait ([`Reason::Pending`]), revocations do not.
    pub undecided: Option<String>,
}

/// One policy's `standing` section.
#[derive(Debug, Clone, PartialEq)]
pub struct StandingPolicy {
    /// The `AccessPolicy`'s name, for messages.
    pub policy: String,
    /// `rules.domain` normalised as the Okta client normalises a connector's domain; `None`
    /// when it does not parse (then the rules match no connector).
    pub domain: Option<String>,
    /// The section.
    pub rules: StandingRules,
}

/// The `AccessRequest` owning a `GroupMembership`, as far as the gate trusts it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestGrant {
    /// The request's name.
    pub request: String,
    /// Its phase is `Approved` or `Active` (written by the operator only).
    pub granting: bool,
    /// `spec.group`: the group name it asked for.
    pub group: String,
    /// `status.oktaUser`: the Okta user it is for.
    pub user: Option<String>,
    /// Its policy's `requests` section; `None` when the policy is gone or has none.
    pub rules: Option<RequestRules>,
}

/// The Okta admin roles a group holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GroupRoles {
    /// None: not privileged.
    #[default]
    NoRole,
    /// These roles (standard role types such as `SUPER_ADMIN`, or custom roles by label).
    Held(Vec<String>),
    /// Not known (the group is not in the connector's index and reading its roles failed):
    /// nothing is granted until it is.
    Unknown,
}

/// Whether the grant-policy gates let this round grant `group`'s declared `users`:
/// first the policy requirement (`require_policy`: the owning `AccessRequest`'s policy, or a
/// `standing` rule, must allow it; else [`Reason::NotAllowedByPolicy`]), then the group's
/// admin roles (a group holding one needs an exact rule with `allowPrivileged: true`, or an
/// owning request whose policy has `allowPrivileged: true`; else
/// [`Reason::GroupHoldsAdminRole`]). Checked after the connector and group guard rails and
/// before the user ones; only for grants (see the module docs).
pub fn check_grant_policy(
    facts: &PolicyFacts,
    group: &OktaGroup,
    users: &[DeclaredUser],
) -> Result<(), Refusal> {
    if let Some(why) = &facts.undecided {
        return Err(Refusal::new(Reason::Pending, format!("grants wait: {why}")));
    }
    let by_request = facts
        .request
        .as_ref()
        .and_then(|r| request_allows(r, &facts.namespace, group, users));
    let rules = standing_rules(facts, group);
    let label = format!("{} ({})", group.name, group.id);
    let kept = "memberships it already granted stay until they are no longer declared";
    if facts.require_policy && by_request.is_none() && rules.is_empty() {
        let org = facts.domain.as_deref().unwrap_or("its org");
        return Err(Refusal::new(
            Reason::NotAllowedByPolicy,
            format!(
                "no AccessPolicy allows namespace {} to grant group {label} of {org} \
                 (run --require-policy); {kept}",
                facts.namespace
            ),
        ));
    }
    let roles = match &facts.group_roles {
        GroupRoles::NoRole => return Ok(()),
        GroupRoles::Held(roles) => roles,
        GroupRoles::Unknown => {
            return Err(Refusal::new(
                Reason::Pending,
                format!("waiting to learn whether group {label} holds an Okta admin role"),
            ));
        }
    };
    let explicit = by_request.is_some_and(|r| r.allow_privileged)
        || rules
            .iter()
            .any(|r| r.allow_privileged && r.name_prefix.is_none());
    if explicit {
        return Ok(());
    }
    Err(Refusal::new(
        Reason::GroupHoldsAdminRole,
        format!(
            "group {label} holds the Okta admin role {}; only an AccessPolicy naming it \
             exactly with allowPrivileged: true lets it be granted; {kept}",
            name_a_few(roles.iter().map(String::as_str))
        ),
    ))
}

/// The owning request's policy `requests` section when it allows this membership: the
/// request is approved, the membership declares exactly the request's user in the group it
/// asked for, and the section lists the namespace and the group.
fn request_allows<'a>(
    request: &'a RequestGrant,
    namespace: &str,
    group: &OktaGroup,
    users: &[DeclaredUser],
) -> Option<&'a RequestRules> {
    let rules = request.rules.as_ref()?;
    let same_user = request
        .user
        .as_deref()
        .is_some_and(|user| !users.is_empty() && users.iter().all(|d| d.user == user));
    // The membership names its group as the request did; Okta resolves names ignoring case.
    let same_group = request.group.eq_ignore_ascii_case(&group.name);
    let listed =
        rules.namespaces.iter().any(|n| n == namespace) && rules.groups.contains(&request.group);
    (request.granting && same_user && same_group && listed).then_some(rules)
}

/// The group rules of every `standing` section that covers this namespace and connector and
/// allow `group`.
fn standing_rules<'a>(facts: &'a PolicyFacts, group: &OktaGroup) -> Vec<&'a GroupRule> {
    facts
        .standing
        .iter()
        .filter(|p| covers(p, facts))
        .flat_map(|p| p.rules.groups.iter())
        .filter(|rule| rule_matches(rule, group))
        .collect()
}

/// Whether a `standing` section covers the membership's namespace (its selector) and
/// connector (the org domain, and the name when the section narrows it).
fn covers(policy: &StandingPolicy, facts: &PolicyFacts) -> bool {
    let same_org = policy.domain.is_some() && policy.domain == facts.domain;
    let same_connector = policy
        .rules
        .connector_name
        .as_ref()
        .is_none_or(|name| *name == facts.connector);
    same_org && same_connector && selects(&policy.rules.namespace_selector, &facts.namespace_labels)
}

/// Whether a label selector selects these labels. A selector that does not parse (the API
/// server rejects such selectors elsewhere) selects nothing.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels))
}

/// Whether one group rule allows `group`: its exact name or id, or a name starting with its
/// prefix (case included, anchored at the start).
pub fn rule_matches(rule: &GroupRule, group: &OktaGroup) -> bool {
    rule.name.as_ref().is_some_and(|n| *n == group.name)
        || rule.id.as_ref().is_some_and(|id| *id == group.id)
        || rule
            .name_prefix
            .as_ref()
            .is_some_and(|p| group.name.starts_with(p.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::membership::decide::{
        ConnectorFacts, DeletionPolicy, Expiry, GroupLookup, GroupRecord, Input, Lifecycle,
        OktaUser, Origin, UserLookup, UserState, decide,
    };
    use crate::crd::membership::ConnectorRef;
    use std::collections::BTreeMap;

    const ORG: &str = "acme.okta.com";

    fn group(name: &str) -> OktaGroup {
        OktaGroup {
            id: format!("00g-{name}"),
            name: name.into(),
            group_type: "OKTA_GROUP".into(),
        }
    }

    fn rule(json: serde_json::Value) -> GroupRule {
        serde_json::from_value(json).unwrap()
    }

    fn standing(selector: serde_json::Value, groups: Vec<GroupRule>) -> StandingPolicy {
        StandingPolicy {
            policy: "tenants".into(),
            domain: Some(ORG.into()),
            rules: StandingRules {
                namespace_selector: serde_json::from_value(selector).unwrap(),
                domain: ORG.into(),
                connector_name: None,
                groups,
            },
        }
    }

    fn users(names: &[&str]) -> Vec<DeclaredUser> {
        names
            .iter()
            .map(|n| DeclaredUser {
                user: (*n).into(),
                lookup: UserLookup::Found(OktaUser {
                    id: format!("00u-{n}"),
                    login: (*n).into(),
                    email: Some((*n).into()),
                    status: "ACTIVE".into(),
                }),
            })
            .collect()
    }

    /// A `team-a` namespace (label `tenant: team-a`) with `--require-policy`.
    fn facts(policies: Vec<StandingPolicy>) -> PolicyFacts {
        PolicyFacts {
            require_policy: true,
            namespace: "team-a".into(),
            namespace_labels: BTreeMap::from([("tenant".into(), "team-a".into())]),
            connector: "acme".into(),
            domain: Some(ORG.into()),
            standing: policies,
            request: None,
            group_roles: GroupRoles::NoRole,
            undecided: None,
        }
    }

    fn reason(f: &PolicyFacts, g: &str) -> Option<Reason> {
        check_grant_policy(f, &group(g), &users(&["alice@example.com"]))
            .err()
            .map(|r| r.reason)
    }

    fn team_a_prefix() -> StandingPolicy {
        standing(
            serde_json::json!({"matchLabels": {"tenant": "team-a"}}),
            vec![rule(serde_json::json!({"namePrefix": "team-a-"}))],
        )
    }

    #[test]
    fn without_require_policy_an_unprivileged_group_needs_no_policy() {
        let f = PolicyFacts {
            require_policy: false,
            ..facts(Vec::new())
        };
        assert_eq!(reason(&f, "Sales"), None);
    }

    #[test]
    fn require_policy_refuses_a_group_no_policy_allows_naming_group_and_namespace() {
        let f = facts(vec![team_a_prefix()]);
        let refusal = check_grant_policy(&f, &group("Sales"), &users(&["a"])).unwrap_err();
        assert_eq!(refusal.reason, Reason::NotAllowedByPolicy);
        assert!(
            refusal.message.contains("Sales (00g-Sales)"),
            "{}",
            refusal.message
        );
        assert!(
            refusal.message.contains("namespace team-a"),
            "{}",
            refusal.message
        );
        assert_eq!(reason(&f, "team-a-oncall"), None);
        assert_eq!(
            reason(&facts(Vec::new()), "team-a-oncall"),
            Some(Reason::NotAllowedByPolicy)
        );
    }

    #[test]
    fn patterns_are_anchored_prefixes_and_case_counts() {
        let f = facts(vec![team_a_prefix()]);
        // The connector filter's substring match would admit these; the policy does not.
        assert_eq!(
            reason(&f, "Steam-a-Admins"),
            Some(Reason::NotAllowedByPolicy)
        );
        assert_eq!(
            reason(&f, "x-team-a-oncall"),
            Some(Reason::NotAllowedByPolicy)
        );
        assert_eq!(
            reason(&f, "Team-A-oncall"),
            Some(Reason::NotAllowedByPolicy)
        );
        let by_name = rule(serde_json::json!({"name": "Eng On-Call"}));
        assert!(rule_matches(&by_name, &group("Eng On-Call")));
        assert!(!rule_matches(&by_name, &group("Eng On-Call 2")));
        assert!(!rule_matches(&by_name, &group("eng on-call")));
        let by_id = rule(serde_json::json!({"id": "00g-Sales"}));
        assert!(rule_matches(&by_id, &group("Sales")));
    }

    #[test]
    fn the_namespace_selector_decides_which_namespaces_a_policy_covers() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect()
        };
        let sel = |json| serde_json::from_value::<LabelSelector>(json).unwrap();
        let team = labels(&[("tenant", "team-a"), ("tier", "prod")]);
        assert!(
            selects(&sel(serde_json::json!({})), &labels(&[])),
            "{{}} selects all"
        );
        assert!(selects(
            &sel(serde_json::json!({"matchLabels": {"tenant": "team-a"}})),
            &team
        ));
        assert!(!selects(
            &sel(serde_json::json!({"matchLabels": {"tenant": "team-b"}})),
            &team
        ));
        let expr = |op: &str, values: &[&str]| {
            sel(
                serde_json::json!({"matchExpressions": [{"key": "tier", "operator": op, "values": values}]}),
            )
        };
        assert!(selects(&expr("In", &["prod", "stage"]), &team));
        assert!(!selects(&expr("NotIn", &["prod"]), &team));
        assert!(selects(&expr("Exists", &[]), &team));
        assert!(!selects(&expr("DoesNotExist", &[]), &team));
        assert!(
            !selects(&expr("Bogus", &["x"]), &team),
            "an invalid selector selects none"
        );
        // The same policy from another namespace: refused.
        let other = PolicyFacts {
            namespace: "team-b".into(),
            namespace_labels: labels(&[("tenant", "team-b")]),
            ..facts(vec![team_a_prefix()])
        };
        assert_eq!(
            reason(&other, "team-a-oncall"),
            Some(Reason::NotAllowedByPolicy)
        );
    }

    #[test]
    fn a_policy_covers_its_org_by_domain_and_optionally_one_connector_name() {
        let mut p = team_a_prefix();
        let f = facts(vec![p.clone()]);
        let other_connector = PolicyFacts {
            connector: "acme-2".into(),
            ..f.clone()
        };
        assert_eq!(
            reason(&other_connector, "team-a-x"),
            None,
            "any connector of the org"
        );
        let other_org = PolicyFacts {
            domain: Some("other.okta.com".into()),
            ..f.clone()
        };
        assert_eq!(
            reason(&other_org, "team-a-x"),
            Some(Reason::NotAllowedByPolicy)
        );
        p.rules.connector_name = Some("acme".into());
        let named = facts(vec![p.clone()]);
        assert_eq!(reason(&named, "team-a-x"), None);
        let named_other = PolicyFacts {
            connector: "acme-2".into(),
            ..named
        };
        assert_eq!(
            reason(&named_other, "team-a-x"),
            Some(Reason::NotAllowedByPolicy)
        );
        p.domain = None;
        assert_eq!(
            reason(&facts(vec![p]), "team-a-x"),
            Some(Reason::NotAllowedByPolicy),
            "a domain that does not parse covers nothing"
        );
    }

    #[test]
    fn a_privileged_group_needs_an_exact_entry_with_allow_privileged_with_or_without_require_policy()
     {
        let admin = |f: PolicyFacts| PolicyFacts {
            group_roles: GroupRoles::Held(vec!["ORG_ADMIN".into(), "SUPER_ADMIN".into()]),
            ..f
        };
        for require_policy in [false, true] {
            let base = |policies| PolicyFacts {
                require_policy,
                ..admin(facts(policies))
            };
            let refusal =
                check_grant_policy(&base(Vec::new()), &group("team-a-admins"), &users(&["a"]))
                    .unwrap_err();
            let expected = if require_policy {
                Reason::NotAllowedByPolicy
            } else {
                Reason::GroupHoldsAdminRole
            };
            assert_eq!(refusal.reason, expected, "policy first, then privilege");
            // Allowed by a prefix: still privileged.
            let refusal = check_grant_policy(
                &base(vec![team_a_prefix()]),
                &group("team-a-admins"),
                &users(&["a"]),
            )
            .unwrap_err();
            assert_eq!(refusal.reason, Reason::GroupHoldsAdminRole);
            assert!(
                refusal.message.contains("ORG_ADMIN, SUPER_ADMIN"),
                "{}",
                refusal.message
            );
            // An exact entry without allowPrivileged: still privileged.
            let sel = serde_json::json!({"matchLabels": {"tenant": "team-a"}});
            let exact = |allow| {
                standing(
                    sel.clone(),
                    vec![rule(
                        serde_json::json!({"name": "team-a-admins", "allowPrivileged": allow}),
                    )],
                )
            };
            assert_eq!(
                reason(&base(vec![exact(false)]), "team-a-admins"),
                Some(Reason::GroupHoldsAdminRole)
            );
            assert_eq!(reason(&base(vec![exact(true)]), "team-a-admins"), None);
            let by_id = standing(
                sel.clone(),
                vec![rule(
                    serde_json::json!({"id": "00g-team-a-admins", "allowPrivileged": true}),
                )],
            );
            assert_eq!(reason(&base(vec![by_id]), "team-a-admins"), None);
            // An exact allowPrivileged entry for another namespace does not count.
            let elsewhere = standing(
                serde_json::json!({"matchLabels": {"tenant": "team-b"}}),
                vec![rule(
                    serde_json::json!({"name": "team-a-admins", "allowPrivileged": true}),
                )],
            );
            assert_eq!(
                reason(&base(vec![elsewhere]), "team-a-admins"),
                Some(expected)
            );
        }
        let unknown = PolicyFacts {
            require_policy: false,
            group_roles: GroupRoles::Unknown,
            ..facts(Vec::new())
        };
        assert_eq!(
            reason(&unknown, "Sales"),
            Some(Reason::Pending),
            "unknown roles grant nothing"
        );
        let undecided = PolicyFacts {
            undecided: Some("the AccessPolicies are not listed yet".into()),
            ..facts(vec![team_a_prefix()])
        };
        assert_eq!(reason(&undecided, "team-a-x"), Some(Reason::Pending));
    }

    fn request_rules(groups: &[&str], allow_privileged: bool) -> RequestRules {
        RequestRules {
            connector_ref: ConnectorRef {
                name: "acme".into(),
            },
            namespaces: vec!["team-a".into()],
            groups: groups.iter().map(|g| (*g).into()).collect(),
            requesters: None,
            allow_requests_for_others: false,
            max_duration: "8h".into(),
            default_duration: None,
            approvals: 1,
            approvers: None,
            require_reason: false,
            allow_privileged,
            auto_approve: false,
            pending_timeout: None,
        }
    }

    fn owned_by_request(rules: Option<RequestRules>) -> PolicyFacts {
        PolicyFacts {
            request: Some(RequestGrant {
                request: "jit".into(),
                granting: true,
                group: "Eng On-Call".into(),
                user: Some("alice@example.com".into()),
                rules,
            }),
            ..facts(Vec::new())
        }
    }

    #[test]
    fn a_membership_an_approved_access_request_created_is_allowed_by_that_requests_policy() {
        let f = owned_by_request(Some(request_rules(&["Eng On-Call"], false)));
        assert_eq!(reason(&f, "Eng On-Call"), None);
        // Not what the request asked for, or not listed, or not approved: refused.
        let other_user =
            check_grant_policy(&f, &group("Eng On-Call"), &users(&["mallory@example.com"]));
        assert_eq!(other_user.unwrap_err().reason, Reason::NotAllowedByPolicy);
        let extra_user = check_grant_policy(
            &f,
            &group("Eng On-Call"),
            &users(&["alice@example.com", "eve@example.com"]),
        );
        assert_eq!(extra_user.unwrap_err().reason, Reason::NotAllowedByPolicy);
        assert_eq!(reason(&f, "Sales"), Some(Reason::NotAllowedByPolicy));
        let unlisted = owned_by_request(Some(request_rules(&["Sales"], false)));
        assert_eq!(
            reason(&unlisted, "Eng On-Call"),
            Some(Reason::NotAllowedByPolicy)
        );
        assert_eq!(
            reason(&owned_by_request(None), "Eng On-Call"),
            Some(Reason::NotAllowedByPolicy)
        );
        let mut pending = f.clone();
        pending.request.as_mut().unwrap().granting = false;
        assert_eq!(
            reason(&pending, "Eng On-Call"),
            Some(Reason::NotAllowedByPolicy)
        );
        let mut elsewhere = f.clone();
        elsewhere.namespace = "team-b".into();
        assert_eq!(
            reason(&elsewhere, "Eng On-Call"),
            Some(Reason::NotAllowedByPolicy)
        );
        // A privileged group: only with the request policy's allowPrivileged.
        let admin = |f: PolicyFacts| PolicyFacts {
            group_roles: GroupRoles::Held(vec!["SUPER_ADMIN".into()]),
            ..f
        };
        assert_eq!(
            reason(&admin(f), "Eng On-Call"),
            Some(Reason::GroupHoldsAdminRole)
        );
        let allowed = owned_by_request(Some(request_rules(&["Eng On-Call"], true)));
        assert_eq!(reason(&admin(allowed), "Eng On-Call"), None);
    }

    fn input(policy: PolicyFacts, members: &[&str], record: GroupRecord) -> Input {
        Input {
            provisioning: true,
            owner: "team-a/oncall".into(),
            connector: Some(ConnectorFacts {
                name: "acme".into(),
                ready: true,
                provisioning: true,
                suspended: false,
                has_client: true,
                email_domains: vec!["example.com".into()],
                group_name_filter: None,
            }),
            group: GroupLookup::Found(group("Sales")),
            users: users(&["alice@example.com"]),
            members: members.iter().map(|m| format!("00u-{m}")).collect(),
            record,
            record_located: true,
            group_id: None,
            others: BTreeMap::new(),
            lifecycle: Lifecycle::Live,
            expiry: Expiry::Never,
            effective_since: None,
            previous: Vec::new(),
            now: "2026-06-01T00:00:00Z".parse().unwrap(),
            policy,
        }
    }

    #[test]
    fn in_the_guard_rail_order_the_policy_comes_after_the_connector_and_group_and_before_users() {
        let refused = facts(Vec::new());
        // A connector refusal wins.
        let mut i = input(refused.clone(), &[], GroupRecord::default());
        i.connector.as_mut().unwrap().suspended = true;
        assert_eq!(
            decide(&i).settle(&BTreeMap::new()).ready.reason,
            Reason::ConnectorSuspended
        );
        // A group refusal wins.
        let mut i = input(refused.clone(), &[], GroupRecord::default());
        i.group = GroupLookup::Found(OktaGroup {
            group_type: "APP_GROUP".into(),
            ..group("Sales")
        });
        assert_eq!(
            decide(&i).settle(&BTreeMap::new()).ready.reason,
            Reason::GroupNotOktaManaged
        );
        // Over a user refusal: the policy.
        let mut i = input(refused, &[], GroupRecord::default());
        i.users[0].lookup = UserLookup::NotFound;
        let plan = decide(&i);
        assert!(!plan.has_writes());
        assert_eq!(
            plan.settle(&BTreeMap::new()).ready.reason,
            Reason::NotAllowedByPolicy
        );
    }

    #[test]
    fn a_refusal_gates_grants_but_keeps_what_is_held_and_never_blocks_letting_go() {
        let refused = facts(Vec::new());
        let plan = decide(&input(refused.clone(), &[], GroupRecord::default()));
        assert!(plan.grants.is_empty(), "no PUT");
        let out = plan.settle(&BTreeMap::new());
        assert_eq!(out.ready.reason, Reason::NotAllowedByPolicy);
        assert!(!out.ready.status);
        assert!(
            out.ready.message.contains("namespace team-a"),
            "{}",
            out.ready.message
        );
        // A grant the operator made before the policy narrowed: kept, reported.
        let mut record = GroupRecord::default();
        record.claim("00u-alice@example.com", "team-a/oncall", Origin::Granted);
        let plan = decide(&input(
            refused.clone(),
            &["alice@example.com"],
            record.clone(),
        ));
        assert!(!plan.has_writes(), "neither granted nor revoked");
        assert_eq!(plan.record, record, "the claim stays");
        let out = plan.settle(&BTreeMap::new());
        assert_eq!(out.ready.reason, Reason::NotAllowedByPolicy);
        // Deleted: revoked without asking the policy.
        let mut deleting = input(refused.clone(), &["alice@example.com"], record.clone());
        deleting.lifecycle = Lifecycle::Deleting(DeletionPolicy::Revoke);
        let plan = decide(&deleting);
        assert_eq!(plan.revokes, ["00u-alice@example.com"]);
        // Removed from spec.users while refused: revoked too.
        let mut removed = input(refused, &["alice@example.com"], record);
        removed.users = users(&["bob@example.com"]);
        let plan = decide(&removed);
        assert_eq!(plan.revokes, ["00u-alice@example.com"]);
        assert!(plan.grants.is_empty());
        let out = plan.settle(&BTreeMap::new());
        let bob = out
            .users
            .iter()
            .find(|u| u.user == "bob@example.com")
            .unwrap();
        assert_eq!(
            (bob.state, bob.reason),
            (UserState::Failed, Reason::NotAllowedByPolicy)
        );
    }
}
