//! The in-memory index of a connector's last successful snapshot, shared with the membership
//! reconciler through the [`ClientRegistry`](crate::controller::runtime::clients::ClientRegistry).
//!
//! The connector reconciler stores a [`ConnectorIndex`] after each successful sync and
//! refreshes its [`ConnectorFacts`] (cheaply: the lookup tables are shared) whenever they
//! change. The membership reconciler reads it with [`lookup`]:
//!
//! ```no_run
//! # fn demo(ctx: &okta_ciam_operator::controller::runtime::Context) {
//! use okta_ciam_operator::controller::connector::index;
//! use okta_ciam_operator::controller::runtime::clients::ConnectorKey;
//! let key = ConnectorKey::new("team-a", "corp");
//! if let Some(ix) = index::lookup(&ctx.clients, &key) {
//!     if ix.facts.ready && ix.facts.provisioning && !ix.facts.suspended {
//!         let user = ix.user_by_address("alice@example.com");
//!         let groups = ix.groups_named("Engineering");
//!         let client = ctx.clients.client(&key); // the same rate-limit budget as the sync
//!     }
//! }
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use crate::controller::runtime::clients::{ClientRegistry, ConnectorKey};
use crate::sync::changes::AccessState;
use crate::sync::scope::{EmailDomains, GroupNameFilter};
use crate::sync::snapshot::{
    Grant, GrantKind, LogCursor, PrincipalType, Snapshot, SnapshotCustomRole, SnapshotGroup,
    SnapshotRole, SnapshotUser,
};

/// What the membership reconciler needs to know about the connector itself, as of its last
/// reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorFacts {
    /// `Ready` is True: credentials valid and the last sync succeeded.
    pub ready: bool,
    /// `spec.provisioning`: memberships may be written through this connector.
    pub provisioning: bool,
    /// `spec.suspend`: nothing may be synced or provisioned.
    pub suspended: bool,
    /// The normalised email domains that scoped the snapshot.
    pub email_domains: EmailDomains,
    /// The group-name filter that scoped the snapshot.
    pub group_name_filter: Option<GroupNameFilter>,
    /// `metadata.generation` of the connector these facts were read from.
    pub generation: Option<i64>,
}

/// Owned lookup tables over one snapshot. Positions index into `users`/`groups`.
#[derive(Debug, Default)]
struct Tables {
    users: Vec<SnapshotUser>,
    groups: Vec<SnapshotGroup>,
    users_by_id: HashMap<String, usize>,
    users_by_address: HashMap<String, usize>,
    /// Every user holding an address as login or email (for ambiguity checks).
    holders_by_address: HashMap<String, Vec<usize>>,
    groups_by_id: HashMap<String, usize>,
    groups_by_name: HashMap<String, Vec<usize>>,
    members: HashMap<String, Vec<String>>,
    /// Per group that holds any: its admin roles, sorted (role types; custom roles by label).
    group_roles: HashMap<String, Vec<String>>,
    /// Every grant of the snapshot, sorted, for the next sync's change log.
    grants: Vec<Grant>,
    /// The snapshot's `syncedAt`, as written.
    synced_at: String,
    /// The rest of the snapshot, so the next sync can start from it (incremental sync).
    rest: SnapshotRest,
}

/// The parts of a snapshot the lookups do not use.
#[derive(Debug, Default)]
struct SnapshotRest {
    email_domains: Vec<String>,
    group_name_filter: Option<String>,
    roles: Vec<SnapshotRole>,
    custom_roles: Vec<SnapshotCustomRole>,
    log_cursor: Option<LogCursor>,
}

/// A connector's last successful snapshot as lookup tables, plus its [`ConnectorFacts`].
/// Cheap to clone (the tables are shared).
#[derive(Debug, Clone)]
pub struct ConnectorIndex {
    /// Facts about the connector, refreshed on every reconcile.
    pub facts: ConnectorFacts,
    /// The Okta org's domain the snapshot was read from.
    pub domain: String,
    /// When the snapshot's sync finished.
    pub synced_at: Timestamp,
    /// When the last full sync (not an incremental one) behind this index finished.
    pub last_full_sync: Timestamp,
    tables: Arc<Tables>,
}

impl ConnectorIndex {
    /// Builds the tables from a snapshot (consumed: users and groups move into the index).
    /// Addresses and group names are keyed case-insensitively; when an address is one user's
    /// login and another's email, the login wins.
    pub fn build(snapshot: Snapshot, facts: ConnectorFacts, synced_at: Timestamp) -> Self {
        let mut t = Tables::default();
        for g in snapshot
            .grants
            .iter()
            .filter(|g| g.kind == GrantKind::GroupMembership)
        {
            t.members
                .entry(g.target_id.clone())
                .or_default()
                .push(g.principal_id.clone());
        }
        for list in t.members.values_mut() {
            list.sort_unstable();
            list.dedup();
        }
        t.group_roles = held_roles(&snapshot.grants, &snapshot.custom_roles);
        for (i, u) in snapshot.users.iter().enumerate() {
            t.users_by_id.insert(u.id.clone(), i);
            t.users_by_address.insert(u.login.to_lowercase(), i);
        }
        for (i, u) in snapshot.users.iter().enumerate() {
            let login = u.login.to_lowercase();
            if let Some(email) = &u.email {
                let email = email.to_lowercase();
                t.users_by_address.entry(email.clone()).or_insert(i);
                if email != login {
                    t.holders_by_address.entry(email).or_default().push(i);
                }
            }
            t.holders_by_address.entry(login).or_default().push(i);
        }
        for (i, g) in snapshot.groups.iter().enumerate() {
            t.groups_by_id.insert(g.id.clone(), i);
            t.groups_by_name
                .entry(g.name.to_lowercase())
                .or_default()
                .push(i);
        }
        t.users = snapshot.users;
        t.groups = snapshot.groups;
        t.grants = snapshot.grants;
        t.synced_at = snapshot.synced_at;
        t.rest = SnapshotRest {
            email_domains: snapshot.email_domains,
            group_name_filter: snapshot.group_name_filter,
            roles: snapshot.roles,
            custom_roles: snapshot.custom_roles,
            log_cursor: snapshot.log_cursor,
        };
        ConnectorIndex {
            facts,
            domain: snapshot.domain,
            synced_at,
            last_full_sync: synced_at,
            tables: Arc::new(t),
        }
    }

    /// The same index, recording that its last full sync finished at `at` (an incremental
    /// sync keeps the time of the full one it started from).
    pub fn with_last_full_sync(mut self, at: Timestamp) -> Self {
        self.last_full_sync = at;
        self
    }

    /// The indexed snapshot again (a copy), as the base of an incremental sync. Its `stats`,
    /// `notes` and `changes` are empty.
    pub fn snapshot(&self) -> Snapshot {
        let t = &self.tables;
        Snapshot {
            domain: self.domain.clone(),
            synced_at: t.synced_at.clone(),
            email_domains: t.rest.email_domains.clone(),
            group_name_filter: t.rest.group_name_filter.clone(),
            users: t.users.clone(),
            groups: t.groups.clone(),
            roles: t.rest.roles.clone(),
            custom_roles: t.rest.custom_roles.clone(),
            grants: t.grants.clone(),
            notes: Vec::new(),
            changes: None,
            log_cursor: t.rest.log_cursor.clone(),
            stats: Default::default(),
        }
    }

    /// The same tables with other facts.
    pub fn with_facts(&self, facts: ConnectorFacts) -> Self {
        ConnectorIndex {
            facts,
            ..self.clone()
        }
    }

    /// Whether the tables were built under the filters in `facts` (same email domains and
    /// group-name filter); if not, the index describes another scope and must be dropped.
    pub fn same_scope(&self, facts: &ConnectorFacts) -> bool {
        self.facts.email_domains == facts.email_domains
            && self.facts.group_name_filter == facts.group_name_filter
    }

    /// The in-scope user with this Okta id.
    pub fn user(&self, id: &str) -> Option<&SnapshotUser> {
        self.tables
            .users_by_id
            .get(id)
            .map(|&i| &self.tables.users[i])
    }

    /// The in-scope user whose login (or, failing that, email) is `address`, ignoring case.
    pub fn user_by_address(&self, address: &str) -> Option<&SnapshotUser> {
        self.tables
            .users_by_address
            .get(&address.to_lowercase())
            .map(|&i| &self.tables.users[i])
    }

    /// Every in-scope user whose login or email is `address`, ignoring case. More than one
    /// means the address is ambiguous (one user's login is another's email).
    pub fn users_holding(&self, address: &str) -> Vec<&SnapshotUser> {
        self.tables
            .holders_by_address
            .get(&address.to_lowercase())
            .map(|ix| ix.iter().map(|&i| &self.tables.users[i]).collect())
            .unwrap_or_default()
    }

    /// The in-scope group with this Okta id.
    pub fn group(&self, id: &str) -> Option<&SnapshotGroup> {
        self.tables
            .groups_by_id
            .get(id)
            .map(|&i| &self.tables.groups[i])
    }

    /// In-scope groups with this name, ignoring case (names are not unique across types).
    pub fn groups_named(&self, name: &str) -> Vec<&SnapshotGroup> {
        self.tables
            .groups_by_name
            .get(&name.to_lowercase())
            .map(|ix| ix.iter().map(|&i| &self.tables.groups[i]).collect())
            .unwrap_or_default()
    }

    /// In-scope member ids of a group at sync time, sorted (empty for unknown groups).
    pub fn members(&self, group_id: &str) -> &[String] {
        self.tables.members.get(group_id).map_or(&[], Vec::as_slice)
    }

    /// Whether the user was an in-scope member of the group at sync time.
    pub fn is_member(&self, group_id: &str, user_id: &str) -> bool {
        self.members(group_id)
            .binary_search_by(|m| m.as_str().cmp(user_id))
            .is_ok()
    }

    /// The admin roles an in-scope group held at sync time (standard role types such as
    /// `SUPER_ADMIN`, custom roles by label), sorted; empty for a group holding none. The
    /// sync reads group-held roles completely (`docs/sync.md`), so this is the privileged-group
    /// guard rail's source; a group the index does not know (see [`Self::group`]) must be
    /// asked about in Okta.
    pub fn group_roles(&self, group_id: &str) -> &[String] {
        self.tables
            .group_roles
            .get(group_id)
            .map_or(&[], Vec::as_slice)
    }

    /// The ids of the in-scope groups that held an admin role (standard or custom) at sync
    /// time, sorted.
    pub fn privileged_groups(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.tables.group_roles.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// The indexed snapshot as the change log's diff sees it.
    pub fn access(&self) -> AccessState<'_> {
        AccessState {
            synced_at: &self.tables.synced_at,
            users: &self.tables.users,
            groups: &self.tables.groups,
            grants: &self.tables.grants,
        }
    }

    /// Number of in-scope users.
    pub fn user_count(&self) -> usize {
        self.tables.users.len()
    }

    /// Number of in-scope groups.
    pub fn group_count(&self) -> usize {
        self.tables.groups.len()
    }
}

/// Per group holding any role grant: its roles, sorted and without duplicates. A custom role
/// is named by its label when the snapshot lists it, else by its id.
fn held_roles(
    grants: &[Grant],
    custom_roles: &[SnapshotCustomRole],
) -> HashMap<String, Vec<String>> {
    let mut held: HashMap<String, Vec<String>> = HashMap::new();
    for g in grants
        .iter()
        .filter(|g| g.principal_type == PrincipalType::Group)
    {
        let role = match g.kind {
            GrantKind::GroupMembership => continue,
            GrantKind::RoleAssignment => g.target_id.clone(),
            GrantKind::CustomRoleAssignment => custom_roles
                .iter()
                .find(|r| r.id == g.target_id)
                .map_or_else(|| g.target_id.clone(), |r| r.label.clone()),
        };
        held.entry(g.principal_id.clone()).or_default().push(role);
    }
    for roles in held.values_mut() {
        roles.sort_unstable();
        roles.dedup();
    }
    held
}

/// The connector's current index: `None` until its first successful sync, after its filters
/// or domain changed (until the next sync), and once it is deleted.
pub fn lookup<C: Clone>(
    registry: &ClientRegistry<C>,
    key: &ConnectorKey,
) -> Option<Arc<ConnectorIndex>> {
    registry.index(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, login: &str, email: Option<&str>) -> SnapshotUser {
        SnapshotUser {
            id: id.into(),
            login: login.into(),
            email: email.map(Into::into),
            status: "ACTIVE".into(),
            disabled: false,
            display_name: login.into(),
        }
    }

    fn group(id: &str, name: &str) -> SnapshotGroup {
        SnapshotGroup {
            id: id.into(),
            name: name.into(),
            group_type: "OKTA_GROUP".into(),
            member_count: 0,
        }
    }

    pub(crate) fn facts(domains: &[&str], filter: Option<&str>) -> ConnectorFacts {
        ConnectorFacts {
            ready: true,
            provisioning: true,
            suspended: false,
            email_domains: EmailDomains::new(domains).unwrap(),
            group_name_filter: filter.and_then(|f| GroupNameFilter::new(f).unwrap()),
            generation: Some(1),
        }
    }

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::empty_for_tests("corp.okta.com", &["example.com"]);
        s.users = vec![
            user("u1", "Alice@Example.com", Some("alice@example.com")),
            user("u2", "bob@example.com", Some("ALICE@example.com")),
            user("u3", "carol@other.org", Some("carol@example.com")),
        ];
        s.groups = vec![group("g1", "Engineering"), group("g2", "engineering")];
        s.grants = vec![
            Grant::membership("u2", "g1"),
            Grant::membership("u1", "g1"),
            Grant::membership("u1", "g1"),
        ];
        s
    }

    #[test]
    fn looks_up_users_by_id_login_and_email_ignoring_case_with_logins_first() {
        let ix = ConnectorIndex::build(
            snapshot(),
            facts(&["example.com"], None),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(ix.user("u3").unwrap().login, "carol@other.org");
        assert_eq!(ix.user_by_address("ALICE@EXAMPLE.COM").unwrap().id, "u1");
        assert_eq!(ix.user_by_address("carol@example.com").unwrap().id, "u3");
        assert!(ix.user_by_address("nobody@example.com").is_none());
        let holders: Vec<&str> = ix
            .users_holding("Alice@example.COM")
            .iter()
            .map(|u| u.id.as_str())
            .collect();
        assert_eq!(holders, ["u1", "u2"], "one user's login, another's email");
        assert_eq!(ix.users_holding("bob@example.com").len(), 1);
        assert!(ix.users_holding("nobody@example.com").is_empty());
        assert_eq!((ix.user_count(), ix.group_count()), (3, 2));
        assert_eq!(ix.domain, "corp.okta.com");
    }

    #[test]
    fn looks_up_groups_by_id_and_name_and_members_sorted_without_duplicates() {
        let ix = ConnectorIndex::build(
            snapshot(),
            facts(&["example.com"], None),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(ix.group("g2").unwrap().name, "engineering");
        let named: Vec<&str> = ix
            .groups_named("ENGINEERING")
            .iter()
            .map(|g| g.id.as_str())
            .collect();
        assert_eq!(named, ["g1", "g2"]);
        assert_eq!(ix.members("g1"), ["u1", "u2"]);
        assert!(ix.is_member("g1", "u2"));
        assert!(!ix.is_member("g2", "u2"));
        assert!(ix.members("missing").is_empty());
    }

    #[test]
    fn group_held_roles_are_exposed_per_group_with_custom_roles_by_label() {
        let mut s = snapshot();
        let group_grant = |kind, group: &str, target: &str| Grant {
            kind,
            principal_type: PrincipalType::Group,
            principal_id: group.into(),
            target_id: target.into(),
            resource_set: None,
        };
        s.grants
            .push(group_grant(GrantKind::RoleAssignment, "g1", "SUPER_ADMIN"));
        s.grants
            .push(group_grant(GrantKind::CustomRoleAssignment, "g1", "cr1"));
        s.grants
            .push(group_grant(GrantKind::RoleAssignment, "g1", "SUPER_ADMIN"));
        s.grants.push(Grant {
            principal_type: PrincipalType::User,
            ..group_grant(GrantKind::RoleAssignment, "u1", "ORG_ADMIN")
        });
        s.custom_roles = vec![SnapshotCustomRole {
            id: "cr1".into(),
            label: "Help Desk Plus".into(),
            permissions: Vec::new(),
        }];
        let ix = ConnectorIndex::build(s, facts(&["example.com"], None), Timestamp::UNIX_EPOCH);
        assert_eq!(ix.group_roles("g1"), ["Help Desk Plus", "SUPER_ADMIN"]);
        assert!(ix.group_roles("g2").is_empty(), "memberships are no roles");
        assert_eq!(
            ix.privileged_groups(),
            ["g1"],
            "a user's own role makes no group privileged"
        );
    }

    #[test]
    fn scope_changes_are_detected_and_new_facts_share_the_tables() {
        let ix = ConnectorIndex::build(
            snapshot(),
            facts(&["example.com"], None),
            Timestamp::UNIX_EPOCH,
        );
        assert!(ix.same_scope(&facts(&["EXAMPLE.com"], None)));
        assert!(!ix.same_scope(&facts(&["example.com", "example.org"], None)));
        assert!(!ix.same_scope(&facts(&["example.com"], Some("eng"))));
        let mut suspended = facts(&["example.com"], None);
        suspended.suspended = true;
        let again = ix.with_facts(suspended);
        assert!(again.facts.suspended);
        assert!(Arc::ptr_eq(&again.tables, &ix.tables));
    }

    #[test]
    fn lookup_reads_the_index_stored_in_the_registry() {
        let reg: ClientRegistry<u8> = ClientRegistry::new();
        let key = ConnectorKey::new("ns", "corp");
        assert!(lookup(&reg, &key).is_none());
        let settings = crate::controller::runtime::clients::ClientSettings {
            domain: "corp.okta.com".into(),
            token: reg.fingerprint("t"),
            max_concurrency: 1,
            budget_percent: 1,
        };
        reg.get_or_build(&key, settings, || Ok::<_, ()>(0)).unwrap();
        let ix = ConnectorIndex::build(
            snapshot(),
            facts(&["example.com"], None),
            Timestamp::UNIX_EPOCH,
        );
        assert!(reg.set_index(&key, Arc::new(ix)));
        assert_eq!(lookup(&reg, &key).unwrap().user_count(), 3);
    }
}
