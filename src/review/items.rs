//! A review campaign's items, frozen from a snapshot: one item per user and group membership,
//! and per user and admin role (held directly or through a group), each saying how the user
//! came to hold it. Pure: no I/O.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

pub use crate::crd::review::{GrantSource, ItemKind, ReviewItem};
use crate::sync::snapshot::{GrantKind, PrincipalType, Snapshot};

/// Which grants a campaign covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReviewScope {
    /// Groups by exact id or by name (case-insensitive, as Okta compares names); empty means
    /// every group in the snapshot.
    pub groups: Vec<String>,
    /// Whether admin roles (standard and custom) are reviewed too.
    pub include_roles: bool,
}

/// `sha256:<hex>` of a snapshot file's bytes: what an auditor can recompute with `sha256sum`.
pub fn snapshot_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The items of a campaign over `snapshot` within `scope`, sorted by user login, kind, target
/// and the group a role comes through. Only in-scope users appear (the snapshot holds no
/// others); a group-held role becomes one item per in-scope member of that group.
pub fn freeze(snapshot: &Snapshot, scope: &ReviewScope) -> Vec<ReviewItem> {
    let index = snapshot.index();
    let selected = |group_id: &str| -> bool {
        scope.groups.is_empty()
            || index.group(group_id).is_some_and(|g| {
                scope
                    .groups
                    .iter()
                    .any(|s| s == &g.id || s.eq_ignore_ascii_case(&g.name))
            })
    };
    let role_labels: BTreeMap<&str, &str> = snapshot
        .roles
        .iter()
        .map(|r| (r.role_type.as_str(), r.label.as_str()))
        .chain(
            snapshot
                .custom_roles
                .iter()
                .map(|r| (r.id.as_str(), r.label.as_str())),
        )
        .collect();

    let mut items = Vec::new();
    for grant in &snapshot.grants {
        match grant.kind {
            GrantKind::GroupMembership => {
                let (Some(user), Some(group)) = (
                    index.user(&grant.principal_id),
                    index.group(&grant.target_id),
                ) else {
                    continue;
                };
                if !selected(&group.id) {
                    continue;
                }
                let source = match group.group_type.as_str() {
                    "APP_GROUP" => GrantSource::Imported,
                    "BUILT_IN" => GrantSource::BuiltIn,
                    _ => GrantSource::Direct,
                };
                items.push(item(
                    ItemKind::GroupMembership,
                    user,
                    (&group.id, &group.name),
                    None,
                    None,
                    source,
                    Some(group.group_type.clone()),
                ));
            }
            GrantKind::RoleAssignment | GrantKind::CustomRoleAssignment if scope.include_roles => {
                let kind = if grant.kind == GrantKind::RoleAssignment {
                    ItemKind::AdminRole
                } else {
                    ItemKind::CustomRole
                };
                let label = role_labels
                    .get(grant.target_id.as_str())
                    .copied()
                    .unwrap_or(&grant.target_id);
                let target = (grant.target_id.as_str(), label);
                let resource_set = grant.resource_set.as_deref();
                match grant.principal_type {
                    PrincipalType::User => {
                        if let Some(user) = index.user(&grant.principal_id) {
                            items.push(item(
                                kind,
                                user,
                                target,
                                resource_set,
                                None,
                                GrantSource::Direct,
                                None,
                            ));
                        }
                    }
                    PrincipalType::Group => {
                        let Some(group) = index.group(&grant.principal_id) else {
                            continue;
                        };
                        for member in index.members(&group.id) {
                            if let Some(user) = index.user(member) {
                                items.push(item(
                                    kind,
                                    user,
                                    target,
                                    resource_set,
                                    Some((&group.id, &group.name)),
                                    GrantSource::ViaGroup,
                                    None,
                                ));
                            }
                        }
                    }
                }
            }
            GrantKind::RoleAssignment | GrantKind::CustomRoleAssignment => {}
        }
    }
    items.sort_by(|a, b| {
        (
            &a.user_login,
            a.kind,
            &a.target_name,
            &a.via_group_name,
            &a.id,
        )
            .cmp(&(
                &b.user_login,
                b.kind,
                &b.target_name,
                &b.via_group_name,
                &b.id,
            ))
    });
    items
}

fn item(
    kind: ItemKind,
    user: &crate::sync::snapshot::SnapshotUser,
    (target_id, target_name): (&str, &str),
    resource_set: Option<&str>,
    via_group: Option<(&str, &str)>,
    source: GrantSource,
    group_type: Option<String>,
) -> ReviewItem {
    let key = [
        format!("{kind:?}"),
        user.id.clone(),
        target_id.to_owned(),
        resource_set.unwrap_or_default().to_owned(),
        via_group.map(|(id, _)| id).unwrap_or_default().to_owned(),
    ]
    .join("\u{1f}");
    let digest = Sha256::digest(key.as_bytes());
    ReviewItem {
        // 64 bits of the hash: unique across any campaign this could hold, short in a sheet.
        id: format!("{:x}", digest)[..16].to_owned(),
        kind,
        user_id: user.id.clone(),
        user_login: user.login.clone(),
        user_email: user.email.clone(),
        user_name: user.display_name.clone(),
        target_id: target_id.to_owned(),
        target_name: target_name.to_owned(),
        resource_set: resource_set.map(str::to_owned),
        via_group_id: via_group.map(|(id, _)| id.to_owned()),
        via_group_name: via_group.map(|(_, name)| name.to_owned()),
        source,
        group_type,
        declared_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::snapshot::{
        Grant, SnapshotCustomRole, SnapshotGroup, SnapshotRole, SnapshotUser,
    };

    fn user(id: &str, login: &str) -> SnapshotUser {
        SnapshotUser::active_for_tests(id, login)
    }

    fn group(id: &str, name: &str, group_type: &str) -> SnapshotGroup {
        SnapshotGroup {
            id: id.into(),
            name: name.into(),
            group_type: group_type.into(),
            member_count: 0,
        }
    }

    fn role(
        principal_type: PrincipalType,
        principal: &str,
        kind: GrantKind,
        target: &str,
    ) -> Grant {
        Grant {
            kind,
            principal_type,
            principal_id: principal.into(),
            target_id: target.into(),
            resource_set: (kind == GrantKind::CustomRoleAssignment).then(|| "iamRS".to_owned()),
        }
    }

    /// Alice is in Engineering (OKTA_GROUP), an imported group and Everyone; Everyone holds
    /// READ_ONLY_ADMIN (so every member does, through it), Bob holds SUPER_ADMIN himself and a
    /// custom role through Engineering.
    fn org() -> Snapshot {
        let mut s = Snapshot::empty_for_tests("acme.okta.com", &["example.com"]);
        s.users = vec![
            user("00ua", "Alice@Example.com"),
            user("00ub", "bob@example.com"),
        ];
        s.groups = vec![
            group("00g1", "Engineering", "OKTA_GROUP"),
            group("00g2", "AD Staff", "APP_GROUP"),
            group("00g3", "Everyone", "BUILT_IN"),
        ];
        s.roles = vec![
            SnapshotRole {
                role_type: "READ_ONLY_ADMIN".into(),
                label: "Read-Only Administrator".into(),
            },
            SnapshotRole {
                role_type: "SUPER_ADMIN".into(),
                label: "Super Administrator".into(),
            },
        ];
        s.custom_roles = vec![SnapshotCustomRole {
            id: "cr0".into(),
            label: "Helpdesk Lite".into(),
            permissions: vec![],
        }];
        s.grants = vec![
            Grant::membership("00ua", "00g1"),
            Grant::membership("00ua", "00g2"),
            Grant::membership("00ua", "00g3"),
            Grant::membership("00ub", "00g1"),
            Grant::membership("00ub", "00g3"),
            role(
                PrincipalType::Group,
                "00g3",
                GrantKind::RoleAssignment,
                "READ_ONLY_ADMIN",
            ),
            role(
                PrincipalType::User,
                "00ub",
                GrantKind::RoleAssignment,
                "SUPER_ADMIN",
            ),
            role(
                PrincipalType::Group,
                "00g1",
                GrantKind::CustomRoleAssignment,
                "cr0",
            ),
        ];
        s.canonicalize();
        s
    }

    fn summary(items: &[ReviewItem]) -> Vec<String> {
        items
            .iter()
            .map(|i| {
                let via = i
                    .via_group_name
                    .as_deref()
                    .map(|g| format!(" via {g}"))
                    .unwrap_or_default();
                format!(
                    "{} {:?} {}{via} {:?}",
                    i.user_id, i.kind, i.target_name, i.source
                )
            })
            .collect()
    }

    #[test]
    fn memberships_only_unless_roles_are_asked_for() {
        let items = freeze(&org(), &ReviewScope::default());
        assert_eq!(
            summary(&items),
            [
                "00ua GroupMembership AD Staff Imported",
                "00ua GroupMembership Engineering Direct",
                "00ua GroupMembership Everyone BuiltIn",
                "00ub GroupMembership Engineering Direct",
                "00ub GroupMembership Everyone BuiltIn",
            ]
        );
    }

    #[test]
    fn a_group_held_role_is_one_item_per_member_with_the_group_named() {
        let scope = ReviewScope {
            include_roles: true,
            ..ReviewScope::default()
        };
        let roles: Vec<String> = summary(&freeze(&org(), &scope))
            .into_iter()
            .filter(|s| !s.contains("GroupMembership"))
            .collect();
        assert_eq!(
            roles,
            [
                "00ua AdminRole Read-Only Administrator via Everyone ViaGroup",
                "00ua CustomRole Helpdesk Lite via Engineering ViaGroup",
                "00ub AdminRole Read-Only Administrator via Everyone ViaGroup",
                "00ub AdminRole Super Administrator Direct",
                "00ub CustomRole Helpdesk Lite via Engineering ViaGroup",
            ]
        );
    }

    #[test]
    fn groups_are_chosen_by_exact_id_or_name_ignoring_case() {
        for chosen in ["00g1", "engineering", "ENGINEERING"] {
            let scope = ReviewScope {
                groups: vec![chosen.into()],
                include_roles: false,
            };
            assert_eq!(
                summary(&freeze(&org(), &scope)),
                [
                    "00ua GroupMembership Engineering Direct",
                    "00ub GroupMembership Engineering Direct"
                ],
                "{chosen}"
            );
        }
        // A name is compared whole: a look-alike or a part selects nothing.
        for chosen in ["Engineer", "Engineering Admins", "00g"] {
            let scope = ReviewScope {
                groups: vec![chosen.into()],
                include_roles: false,
            };
            assert!(freeze(&org(), &scope).is_empty(), "{chosen}");
        }
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let scope = ReviewScope {
            include_roles: true,
            ..ReviewScope::default()
        };
        let first = freeze(&org(), &scope);
        let mut reordered = org();
        reordered.grants.reverse();
        reordered.users.reverse();
        assert_eq!(
            first,
            freeze(&reordered, &scope),
            "order of the snapshot does not matter"
        );
        let mut ids: Vec<&str> = first.iter().map(|i| i.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), first.len());
    }

    #[test]
    fn the_digest_is_sha256_of_the_bytes() {
        assert_eq!(
            snapshot_digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
