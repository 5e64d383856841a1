//! The access change log: what changed between two snapshots of the same scope (users in and
//! out of scope, groups, memberships and role grants added or removed), computed by a pure
//! diff, and its human table.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::snapshot::{Grant, GrantKind, Snapshot, SnapshotGroup, SnapshotUser};

/// Who made a change and when, from the System Log where it is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribution {
    /// The actor's `alternateId` (a login, or an API client's name).
    pub actor: String,
    /// When the event was published (RFC 3339).
    pub published: String,
}

/// A principal entering or leaving scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalChange {
    /// Okta id.
    pub id: String,
    /// A user's login or a group's name.
    pub name: String,
    /// Who and when, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Attribution>,
}

/// A grant added or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantChange {
    /// The grant.
    #[serde(flatten)]
    pub grant: Grant,
    /// Who and when, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Attribution>,
}

/// Everything that changed between two snapshots, each list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Changes {
    /// `syncedAt` of the earlier snapshot.
    pub since: String,
    /// Users that came into scope.
    pub users_added: Vec<PrincipalChange>,
    /// Users that left scope.
    pub users_removed: Vec<PrincipalChange>,
    /// Groups that came into scope.
    pub groups_added: Vec<PrincipalChange>,
    /// Groups that left scope.
    pub groups_removed: Vec<PrincipalChange>,
    /// Memberships and role grants added.
    pub grants_added: Vec<GrantChange>,
    /// Memberships and role grants removed.
    pub grants_removed: Vec<GrantChange>,
}

/// The change counts by kind, for metrics and summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeCounts {
    /// Users into scope.
    pub users_added: u64,
    /// Users out of scope.
    pub users_removed: u64,
    /// Groups into scope.
    pub groups_added: u64,
    /// Groups out of scope.
    pub groups_removed: u64,
    /// Memberships added.
    pub memberships_added: u64,
    /// Memberships removed.
    pub memberships_removed: u64,
    /// Role grants (standard or custom) added.
    pub roles_added: u64,
    /// Role grants (standard or custom) removed.
    pub roles_removed: u64,
}

impl std::fmt::Display for ChangeCounts {
    /// `users +1 -0, groups +0 -0, memberships +3 -1, role grants +0 -0`: the one summary line
    /// the sync's output and the connector's Events share.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "users +{} -{}, groups +{} -{}, memberships +{} -{}, role grants +{} -{}",
            self.users_added,
            self.users_removed,
            self.groups_added,
            self.groups_removed,
            self.memberships_added,
            self.memberships_removed,
            self.roles_added,
            self.roles_removed
        )
    }
}

impl ChangeCounts {
    /// Every change counted once.
    pub fn total(&self) -> u64 {
        self.users_added
            + self.users_removed
            + self.groups_added
            + self.groups_removed
            + self.memberships_added
            + self.memberships_removed
            + self.roles_added
            + self.roles_removed
    }
}

/// The parts of an access state the diff compares; a snapshot or the connector's index.
#[derive(Debug, Clone, Copy)]
pub struct AccessState<'a> {
    /// `syncedAt`.
    pub synced_at: &'a str,
    /// Users, sorted by id.
    pub users: &'a [SnapshotUser],
    /// Groups, sorted by id.
    pub groups: &'a [SnapshotGroup],
    /// Grants, sorted and without duplicates.
    pub grants: &'a [Grant],
}

impl Snapshot {
    /// The snapshot as an [`AccessState`] (it must be canonical, see [`Snapshot::canonicalize`]).
    pub fn access(&self) -> AccessState<'_> {
        AccessState {
            synced_at: &self.synced_at,
            users: &self.users,
            groups: &self.groups,
            grants: &self.grants,
        }
    }
}

/// What changed from `old` to `new`; every list comes out sorted. `attribute` names the
/// actor and time of a change where the System Log told them (`|_| None` when not known).
pub fn diff(
    old: AccessState<'_>,
    new: AccessState<'_>,
    attribute: &dyn Fn(ChangeKey<'_>) -> Option<Attribution>,
) -> Changes {
    let (users_added, users_removed) = sorted_diff(old.users, new.users, |u| &u.id);
    let (groups_added, groups_removed) = sorted_diff(old.groups, new.groups, |g| &g.id);
    let (grants_added, grants_removed) = sorted_diff(old.grants, new.grants, |g| g);
    let user = |u: &SnapshotUser, added| PrincipalChange {
        id: u.id.clone(),
        name: u.login.clone(),
        by: attribute(ChangeKey::User { id: &u.id, added }),
    };
    let group = |g: &SnapshotGroup, added| PrincipalChange {
        id: g.id.clone(),
        name: g.name.clone(),
        by: attribute(ChangeKey::Group { id: &g.id, added }),
    };
    let grant = |g: &Grant, added| GrantChange {
        grant: g.clone(),
        by: attribute(ChangeKey::Grant { grant: g, added }),
    };
    Changes {
        since: old.synced_at.to_owned(),
        users_added: users_added.into_iter().map(|u| user(u, true)).collect(),
        users_removed: users_removed.into_iter().map(|u| user(u, false)).collect(),
        groups_added: groups_added.into_iter().map(|g| group(g, true)).collect(),
        groups_removed: groups_removed
            .into_iter()
            .map(|g| group(g, false))
            .collect(),
        grants_added: grants_added.into_iter().map(|g| grant(g, true)).collect(),
        grants_removed: grants_removed
            .into_iter()
            .map(|g| grant(g, false))
            .collect(),
    }
}

/// One change, as the attribution lookup sees it.
#[derive(Debug, Clone, Copy)]
pub enum ChangeKey<'a> {
    /// A user into (`added`) or out of scope.
    User {
        /// User id.
        id: &'a str,
        /// Into scope.
        added: bool,
    },
    /// A group into or out of scope.
    Group {
        /// Group id.
        id: &'a str,
        /// Into scope.
        added: bool,
    },
    /// A grant added or removed.
    Grant {
        /// The grant.
        grant: &'a Grant,
        /// Added.
        added: bool,
    },
}

/// Items only in `new` (added) and only in `old` (removed) of two lists sorted by `key`.
fn sorted_diff<'a, T, K: Ord + ?Sized>(
    old: &'a [T],
    new: &'a [T],
    key: impl Fn(&T) -> &K,
) -> (Vec<&'a T>, Vec<&'a T>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) => match key(o).cmp(key(n)) {
                std::cmp::Ordering::Less => {
                    removed.push(o);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    added.push(n);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                }
            },
            (Some(o), None) => {
                removed.push(o);
                i += 1;
            }
            (None, Some(n)) => {
                added.push(n);
                j += 1;
            }
            (None, None) => break,
        }
    }
    (added, removed)
}

impl Changes {
    /// Counts by kind.
    pub fn counts(&self) -> ChangeCounts {
        let split = |list: &[GrantChange]| {
            let memberships = list
                .iter()
                .filter(|g| g.grant.kind == GrantKind::GroupMembership)
                .count() as u64;
            (memberships, list.len() as u64 - memberships)
        };
        let (memberships_added, roles_added) = split(&self.grants_added);
        let (memberships_removed, roles_removed) = split(&self.grants_removed);
        ChangeCounts {
            users_added: self.users_added.len() as u64,
            users_removed: self.users_removed.len() as u64,
            groups_added: self.groups_added.len() as u64,
            groups_removed: self.groups_removed.len() as u64,
            memberships_added,
            memberships_removed,
            roles_added,
            roles_removed,
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.counts().total() == 0
    }

    /// Every change as one line each (`+`/`-`, what, who), in a fixed order: users, groups,
    /// then grants; additions before removals within each.
    pub fn lines(&self) -> Vec<String> {
        let by = |b: &Option<Attribution>| {
            b.as_ref().map_or(String::new(), |a| {
                format!(" (by {} at {})", a.actor, a.published)
            })
        };
        let mut out = Vec::new();
        for (sign, list) in [("+", &self.users_added), ("-", &self.users_removed)] {
            for p in list {
                out.push(format!("{sign} user {} {}{}", p.id, p.name, by(&p.by)));
            }
        }
        for (sign, list) in [("+", &self.groups_added), ("-", &self.groups_removed)] {
            for p in list {
                out.push(format!("{sign} group {} {}{}", p.id, p.name, by(&p.by)));
            }
        }
        for (sign, list) in [("+", &self.grants_added), ("-", &self.grants_removed)] {
            for g in list {
                out.push(format!("{sign} {}{}", grant_text(&g.grant), by(&g.by)));
            }
        }
        out
    }

    /// The human table of `okta-ciam-operator diff`: counts by kind, then every change.
    pub fn table(&self) -> String {
        let c = self.counts();
        let rows = [
            ("users", c.users_added, c.users_removed),
            ("groups", c.groups_added, c.groups_removed),
            ("memberships", c.memberships_added, c.memberships_removed),
            ("role grants", c.roles_added, c.roles_removed),
        ];
        let mut out = format!("changes since {}\n", self.since);
        let _ = writeln!(out, "{:<12} {:>8} {:>8}", "", "added", "removed");
        for (what, added, removed) in rows {
            let _ = writeln!(out, "{what:<12} {added:>8} {removed:>8}");
        }
        for line in self.lines() {
            let _ = writeln!(out, "{line}");
        }
        out
    }
}

/// A grant in words, e.g. `membership 00u1 in 00g1` or `role ORG_ADMIN held by group 00g1`.
pub fn grant_text(g: &Grant) -> String {
    let principal = format!("{} {}", principal_word(g), g.principal_id);
    match g.kind {
        GrantKind::GroupMembership => format!("membership {principal} in {}", g.target_id),
        GrantKind::RoleAssignment => format!("role {} held by {principal}", g.target_id),
        GrantKind::CustomRoleAssignment => format!(
            "custom role {} on {} held by {principal}",
            g.target_id,
            g.resource_set.as_deref().unwrap_or("?")
        ),
    }
}

fn principal_word(g: &Grant) -> &'static str {
    match g.principal_type {
        super::snapshot::PrincipalType::User => "user",
        super::snapshot::PrincipalType::Group => "group",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::snapshot::PrincipalType;

    fn user(id: &str) -> SnapshotUser {
        SnapshotUser {
            id: id.into(),
            login: format!("{id}@example.com"),
            email: None,
            status: "ACTIVE".into(),
            disabled: false,
            display_name: id.into(),
        }
    }

    fn group(id: &str) -> SnapshotGroup {
        SnapshotGroup {
            id: id.into(),
            name: format!("Team {id}"),
            group_type: "OKTA_GROUP".into(),
            member_count: 1,
        }
    }

    fn role(principal: &str, role: &str) -> Grant {
        Grant {
            kind: GrantKind::RoleAssignment,
            principal_type: PrincipalType::Group,
            principal_id: principal.into(),
            target_id: role.into(),
            resource_set: None,
        }
    }

    fn snapshot(users: &[&str], groups: &[&str], grants: Vec<Grant>, at: &str) -> Snapshot {
        let mut s = Snapshot::empty_for_tests("acme.okta.com", &["example.com"]);
        s.synced_at = at.into();
        s.users = users.iter().map(|u| user(u)).collect();
        s.groups = groups.iter().map(|g| group(g)).collect();
        s.grants = grants;
        s.canonicalize();
        s
    }

    #[test]
    fn diff_lists_every_addition_and_removal_by_kind() {
        let old = snapshot(
            &["u1", "u2"],
            &["g1", "g2"],
            vec![
                Grant::membership("u1", "g1"),
                Grant::membership("u2", "g1"),
                role("g1", "HELP_DESK_ADMIN"),
            ],
            "2026-12-01T00:00:00Z",
        );
        let new = snapshot(
            &["u1", "u3"],
            &["g1", "g3"],
            vec![
                Grant::membership("u1", "g1"),
                Grant::membership("u3", "g3"),
                role("g3", "ORG_ADMIN"),
            ],
            "2026-12-02T00:00:00Z",
        );
        let c = diff(old.access(), new.access(), &|_| None);
        assert_eq!(c.since, "2026-12-01T00:00:00Z");
        let ids = |l: &[PrincipalChange]| l.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&c.users_added), ["u3"]);
        assert_eq!(ids(&c.users_removed), ["u2"]);
        assert_eq!(ids(&c.groups_added), ["g3"]);
        assert_eq!(ids(&c.groups_removed), ["g2"]);
        assert_eq!(
            c.counts(),
            ChangeCounts {
                users_added: 1,
                users_removed: 1,
                groups_added: 1,
                groups_removed: 1,
                memberships_added: 1,
                memberships_removed: 1,
                roles_added: 1,
                roles_removed: 1,
            }
        );
        assert_eq!(
            c.lines(),
            [
                "+ user u3 u3@example.com",
                "- user u2 u2@example.com",
                "+ group g3 Team g3",
                "- group g2 Team g2",
                "+ membership user u3 in g3",
                "+ role ORG_ADMIN held by group g3",
                "- membership user u2 in g1",
                "- role HELP_DESK_ADMIN held by group g1",
            ]
        );
        assert!(diff(new.access(), new.access(), &|_| None).is_empty());
    }

    #[test]
    fn attribution_is_attached_where_the_lookup_knows_it() {
        let old = snapshot(&["u1"], &["g1"], vec![], "t0");
        let new = snapshot(&["u1"], &["g1"], vec![Grant::membership("u1", "g1")], "t1");
        let c = diff(old.access(), new.access(), &|k| match k {
            ChangeKey::Grant { grant, added: true } if grant.principal_id == "u1" => {
                Some(Attribution {
                    actor: "admin@example.com".into(),
                    published: "2026-12-01T10:00:00Z".into(),
                })
            }
            _ => None,
        });
        assert_eq!(
            c.lines(),
            ["+ membership user u1 in g1 (by admin@example.com at 2026-12-01T10:00:00Z)"]
        );
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["grantsAdded"][0]["kind"], "groupMembership");
        assert_eq!(json["grantsAdded"][0]["by"]["actor"], "admin@example.com");
        assert!(json["grantsRemoved"].as_array().unwrap().is_empty());
    }

    #[test]
    fn table_counts_then_lists() {
        let old = snapshot(&["u1"], &[], vec![], "t0");
        let new = snapshot(&[], &[], vec![], "t1");
        let t = diff(old.access(), new.access(), &|_| None).table();
        assert!(t.starts_with("changes since t0\n"), "{t}");
        assert!(t.contains("users               0        1\n"), "{t}");
        assert!(t.ends_with("- user u1 u1@example.com\n"), "{t}");
    }
}
