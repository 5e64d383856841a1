//! Role grants from the role lists of admin users: direct grants for in-scope users, group-held
//! grants for in-scope groups, never a group-inherited role reported as a direct user grant.

use std::collections::BTreeSet;

use super::snapshot::{Grant, GrantKind, PrincipalType};

/// The role type Okta uses for custom-role assignments.
pub const CUSTOM_ROLE_TYPE: &str = "CUSTOM";

/// Who an assignment in a user's role list belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Assigned to the user directly (`assignmentType: USER`).
    User,
    /// Inherited from this group (`assignmentType: GROUP`, group from `_links.assignee`).
    Group(String),
    /// Anything else (a client app, or a group assignment without a group link): not reported.
    Other,
}

/// One role-list item, reduced to what the snapshot needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleFact {
    /// Standard role type, or `CUSTOM`.
    pub role_type: String,
    /// For `CUSTOM`: the custom role's id (Okta's `role` field; `type` is always `CUSTOM`).
    pub custom_role_id: Option<String>,
    /// For `CUSTOM`: the resource set id (`resource-set`).
    pub resource_set: Option<String>,
    /// Who holds it.
    pub holder: Holder,
}

impl RoleFact {
    /// Reads the holder from Okta's `assignmentType` and the assignee group id (if any).
    pub fn holder_from(assignment_type: Option<&str>, assignee_group: Option<String>) -> Holder {
        match (assignment_type, assignee_group) {
            (Some(t), Some(g)) if t.eq_ignore_ascii_case("GROUP") => Holder::Group(g),
            // A group assignment whose group we cannot name must not become a user grant.
            (Some(t), None) if t.eq_ignore_ascii_case("GROUP") => Holder::Other,
            (Some(t), _) if t.eq_ignore_ascii_case("USER") => Holder::User,
            // Older answers omit assignmentType on direct assignments; a group link still wins.
            (None, Some(g)) => Holder::Group(g),
            (None, None) => Holder::User,
            (Some(_), _) => Holder::Other,
        }
    }

    /// The grant target and resource set, or `None` for a custom assignment without a role id
    /// (it could not be matched to a custom role).
    fn target(&self) -> Option<(GrantKind, String, Option<String>)> {
        if self.role_type.eq_ignore_ascii_case(CUSTOM_ROLE_TYPE) {
            let role = self.custom_role_id.clone()?;
            Some((
                GrantKind::CustomRoleAssignment,
                role,
                self.resource_set.clone(),
            ))
        } else {
            Some((GrantKind::RoleAssignment, self.role_type.clone(), None))
        }
    }
}

/// Adds the grants one admin user's role list proves: direct ones when the user is in scope,
/// group-held ones when the group is in scope. Returns how many items were unusable (custom
/// assignments without a role id), for the snapshot's notes.
pub fn derive_role_grants(
    user_id: &str,
    facts: &[RoleFact],
    user_in_scope: bool,
    group_in_scope: impl Fn(&str) -> bool,
    out: &mut BTreeSet<Grant>,
) -> usize {
    let mut unusable = 0;
    for fact in facts {
        let (principal_type, principal_id) = match &fact.holder {
            Holder::User if user_in_scope => (PrincipalType::User, user_id),
            Holder::Group(g) if group_in_scope(g) => (PrincipalType::Group, g.as_str()),
            _ => continue,
        };
        let Some((kind, target_id, resource_set)) = fact.target() else {
            unusable += 1;
            continue;
        };
        out.insert(Grant {
            kind,
            principal_type,
            principal_id: principal_id.to_string(),
            target_id,
            resource_set,
        });
    }
    unusable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard(role: &str, holder: Holder) -> RoleFact {
        RoleFact {
            role_type: role.into(),
            custom_role_id: None,
            resource_set: None,
            holder,
        }
    }

    fn custom(role: Option<&str>, set: &str, holder: Holder) -> RoleFact {
        RoleFact {
            role_type: "CUSTOM".into(),
            custom_role_id: role.map(String::from),
            resource_set: Some(set.into()),
            holder,
        }
    }

    #[test]
    fn holder_follows_assignment_type_and_never_turns_group_into_user() {
        assert_eq!(RoleFact::holder_from(Some("USER"), None), Holder::User);
        assert_eq!(
            RoleFact::holder_from(Some("GROUP"), Some("00g1".into())),
            Holder::Group("00g1".into())
        );
        assert_eq!(RoleFact::holder_from(Some("GROUP"), None), Holder::Other);
        assert_eq!(RoleFact::holder_from(Some("CLIENT"), None), Holder::Other);
        assert_eq!(RoleFact::holder_from(None, None), Holder::User);
        assert_eq!(
            RoleFact::holder_from(None, Some("00g2".into())),
            Holder::Group("00g2".into())
        );
    }

    #[test]
    fn direct_and_group_held_roles_are_kept_apart() {
        let facts = [
            standard("ORG_ADMIN", Holder::User),
            standard("HELP_DESK_ADMIN", Holder::Group("00gIn".into())),
            standard("APP_ADMIN", Holder::Group("00gOut".into())),
            custom(Some("cr01"), "iam1", Holder::User),
            custom(Some("cr02"), "iam2", Holder::Group("00gIn".into())),
        ];
        let mut out = BTreeSet::new();
        let bad = derive_role_grants("00u1", &facts, true, |g| g == "00gIn", &mut out);
        assert_eq!(bad, 0);
        let got: Vec<_> = out
            .iter()
            .map(|g| {
                (
                    g.kind,
                    g.principal_type,
                    g.principal_id.as_str(),
                    g.target_id.as_str(),
                    g.resource_set.as_deref(),
                )
            })
            .collect();
        use GrantKind::*;
        use PrincipalType::*;
        assert_eq!(
            got,
            [
                (RoleAssignment, User, "00u1", "ORG_ADMIN", None),
                (RoleAssignment, Group, "00gIn", "HELP_DESK_ADMIN", None),
                (CustomRoleAssignment, User, "00u1", "cr01", Some("iam1")),
                (CustomRoleAssignment, Group, "00gIn", "cr02", Some("iam2")),
            ]
        );
    }

    #[test]
    fn out_of_scope_users_contribute_only_their_groups_roles() {
        let facts = [
            standard("ORG_ADMIN", Holder::User),
            standard("HELP_DESK_ADMIN", Holder::Group("00g1".into())),
        ];
        let mut out = BTreeSet::new();
        derive_role_grants("00uOut", &facts, false, |_| true, &mut out);
        assert_eq!(out.len(), 1);
        let g = out.first().unwrap();
        assert_eq!(g.principal_type, PrincipalType::Group);
        assert_eq!(g.target_id, "HELP_DESK_ADMIN");
    }

    #[test]
    fn group_roles_seen_through_many_members_are_reported_once() {
        let facts = [standard("HELP_DESK_ADMIN", Holder::Group("00g1".into()))];
        let mut out = BTreeSet::new();
        for user in ["00u1", "00u2", "00u3"] {
            derive_role_grants(user, &facts, true, |_| true, &mut out);
        }
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn custom_assignments_are_keyed_by_role_id_not_type() {
        let mut out = BTreeSet::new();
        let bad = derive_role_grants(
            "00u1",
            &[
                custom(Some("cr01"), "iam1", Holder::User),
                custom(None, "iam1", Holder::User),
            ],
            true,
            |_| true,
            &mut out,
        );
        assert_eq!(bad, 1);
        assert_eq!(out.len(), 1);
        assert_eq!(out.first().unwrap().target_id, "cr01");
        assert!(out.iter().all(|g| g.target_id != "CUSTOM"));
    }
}
