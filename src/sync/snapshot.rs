//! The access snapshot: its JSON shape, deterministic ordering, an index for lookups, and
//! the atomic write.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::plan::{FloorInputs, MembershipPlan, RolePlan};
use super::{Error, Result};

/// An org's access state as seen through a connector's filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The org domain (`host[:port]`).
    pub domain: String,
    /// When the sync finished (RFC 3339, UTC).
    pub synced_at: String,
    /// The normalised email domains that scoped users.
    pub email_domains: Vec<String>,
    /// The group-name filter, if any.
    pub group_name_filter: Option<String>,
    /// In-scope users, sorted by id.
    pub users: Vec<SnapshotUser>,
    /// In-scope groups, sorted by id.
    pub groups: Vec<SnapshotGroup>,
    /// Every standard role type, sorted by type.
    pub roles: Vec<SnapshotRole>,
    /// Every custom role, sorted by id.
    pub custom_roles: Vec<SnapshotCustomRole>,
    /// Memberships and role assignments between in-scope principals and targets, sorted.
    pub grants: Vec<Grant>,
    /// Caveats of this snapshot (what the API did not let it see).
    #[serde(default)]
    pub notes: Vec<String>,
    /// What changed since the previous snapshot of the same scope, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<super::changes::Changes>,
    /// Where the next incremental sync starts reading the System Log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_cursor: Option<LogCursor>,
    /// Request counters and timing.
    pub stats: SyncStats,
}

/// How far the System Log has been applied to a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogCursor {
    /// Events published before this time (RFC 3339) are reflected.
    pub through: String,
    /// Events already applied from the overlap window before `through`, which the next read
    /// covers again because Okta's log can show an event a few seconds late.
    #[serde(default)]
    pub applied: Vec<String>,
}

/// A user in scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotUser {
    /// Okta user id (`00u...`).
    pub id: String,
    /// `profile.login`.
    pub login: String,
    /// `profile.email`.
    pub email: Option<String>,
    /// Okta status, e.g. `ACTIVE`, `DEPROVISIONED`.
    pub status: String,
    /// `SUSPENDED` and `DEPROVISIONED` users are disabled.
    pub disabled: bool,
    /// `profile.displayName`, else first and last name, else the login.
    pub display_name: String,
}

/// A group in scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotGroup {
    /// Okta group id (`00g...`).
    pub id: String,
    /// `profile.name`.
    pub name: String,
    /// `OKTA_GROUP`, `APP_GROUP`, `BUILT_IN` (or `UNKNOWN`).
    #[serde(rename = "type")]
    pub group_type: String,
    /// Okta's member count (`usersCount`, all members, in scope or not).
    pub member_count: u64,
}

/// A standard role type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRole {
    /// The role type, e.g. `ORG_ADMIN`.
    #[serde(rename = "type")]
    pub role_type: String,
    /// Okta's console label.
    pub label: String,
}

/// A custom role with its permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotCustomRole {
    /// Custom role id (`cr0...`).
    pub id: String,
    /// The role's label.
    pub label: String,
    /// Permission names, sorted.
    pub permissions: Vec<String>,
}

/// What a grant gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GrantKind {
    /// A user is a member of a group.
    GroupMembership,
    /// A principal holds a standard role (target: the role type).
    RoleAssignment,
    /// A principal holds a custom role on a resource set (target: the custom role id).
    CustomRoleAssignment,
}

/// Who holds a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalType {
    /// An Okta user.
    User,
    /// An Okta group (its members inherit the grant; those are not listed as direct grants).
    Group,
}

/// One edge of the access graph. Field order is the sort order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// What is granted.
    pub kind: GrantKind,
    /// Whether the principal is a user or a group.
    pub principal_type: PrincipalType,
    /// The user or group id.
    pub principal_id: String,
    /// Group id, role type or custom role id.
    pub target_id: String,
    /// Resource set of a custom-role assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_set: Option<String>,
}

impl Grant {
    /// A user's membership of a group.
    pub fn membership(user_id: impl Into<String>, group_id: impl Into<String>) -> Self {
        Self {
            kind: GrantKind::GroupMembership,
            principal_type: PrincipalType::User,
            principal_id: user_id.into(),
            target_id: group_id.into(),
            resource_set: None,
        }
    }
}

/// How a snapshot was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncMode {
    /// Everything was read.
    #[default]
    Full,
    /// The previous snapshot with the System Log's changes applied.
    Incremental,
}

/// Request counters and timing of one sync.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStats {
    /// Requests sent (retries included).
    pub requests: u64,
    /// Requests per endpoint family.
    pub requests_by_endpoint: BTreeMap<String, u64>,
    /// 429 answers received.
    pub rate_limited: u64,
    /// Retried requests.
    pub retries: u64,
    /// Time spent waiting on rate limits.
    pub rate_limit_wait_seconds: f64,
    /// Wall time of the sync.
    pub duration_seconds: f64,
    /// How memberships were read and what each way would have cost.
    pub membership_plan: Option<MembershipPlan>,
    /// How role lists were read and what each way would have cost.
    #[serde(default)]
    pub role_plan: Option<RolePlan>,
    /// What the request floor was computed from.
    #[serde(default)]
    pub floor_inputs: FloorInputs,
    /// `full`, or `incremental` (changes applied from the System Log).
    #[serde(default)]
    pub mode: SyncMode,
    /// Why a sync that could have been incremental read everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_sync_reason: Option<String>,
    /// System Log events an incremental sync read (including ones seen before).
    #[serde(default)]
    pub log_events: u64,
    /// The fewest requests any client could make for this snapshot (see `plan::request_floor`).
    pub request_floor: u64,
}

impl Snapshot {
    /// Sorts every list into its canonical order and removes duplicate grants, so two syncs of
    /// the same org serialise `users`/`groups`/`roles`/`customRoles`/`grants` byte-identically.
    pub fn canonicalize(&mut self) {
        self.users.sort_by(|a, b| a.id.cmp(&b.id));
        self.groups.sort_by(|a, b| a.id.cmp(&b.id));
        self.roles.sort_by(|a, b| a.role_type.cmp(&b.role_type));
        self.custom_roles.sort_by(|a, b| a.id.cmp(&b.id));
        for role in &mut self.custom_roles {
            role.permissions.sort();
            role.permissions.dedup();
        }
        self.grants.sort_unstable();
        self.grants.dedup();
        self.email_domains.sort();
    }

    /// Writes the snapshot as JSON to `path` atomically: into a temporary file in the same
    /// directory, flushed to disk, then renamed over `path`, so readers never see half a file.
    pub fn write_atomic(&self, path: &Path) -> Result<()> {
        let io_err = |source| Error::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| io_err(std::io::Error::other("the path has no file name")))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            rand::random::<u32>()
        ));
        let result = (|| -> Result<()> {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io_err)?;
            let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
            serde_json::to_writer_pretty(&mut out, self)?;
            out.write_all(b"\n").map_err(io_err)?;
            let file = out.into_inner().map_err(|e| io_err(e.into_error()))?;
            file.sync_all().map_err(io_err)?;
            std::fs::rename(&tmp, path).map_err(io_err)
        })();
        if result.is_err() {
            // Best effort: the temporary file is ours and useless now.
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Reads a snapshot written by [`Self::write_atomic`].
    pub fn read(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(serde_json::from_reader(std::io::BufReader::new(file))?)
    }

    /// Whether `other` was read from the same org through the same filters, so that a diff of
    /// the two is a change log rather than a change of scope.
    pub fn same_scope(&self, other: &Snapshot) -> bool {
        self.domain == other.domain
            && self.email_domains == other.email_domains
            && self.group_name_filter == other.group_name_filter
    }

    /// Builds lookup maps over this snapshot.
    pub fn index(&self) -> SnapshotIndex<'_> {
        SnapshotIndex::new(self)
    }

    /// An empty snapshot of org `domain` scoped to `email_domains`, synced at the epoch of the
    /// tests (2026-01-01); tests fill in the lists they need.
    #[cfg(test)]
    pub(crate) fn empty_for_tests(domain: &str, email_domains: &[&str]) -> Self {
        Self {
            domain: domain.to_owned(),
            synced_at: "2026-01-01T00:00:00Z".to_owned(),
            email_domains: email_domains.iter().map(|d| (*d).to_owned()).collect(),
            group_name_filter: None,
            users: Vec::new(),
            groups: Vec::new(),
            roles: Vec::new(),
            custom_roles: Vec::new(),
            grants: Vec::new(),
            notes: Vec::new(),
            changes: None,
            log_cursor: None,
            stats: SyncStats::default(),
        }
    }
}

impl SnapshotUser {
    /// An active user whose login and email are `login`, for tests.
    #[cfg(test)]
    pub(crate) fn active_for_tests(id: &str, login: &str) -> Self {
        Self {
            id: id.into(),
            login: login.into(),
            email: Some(login.into()),
            status: "ACTIVE".into(),
            disabled: false,
            display_name: login.into(),
        }
    }
}

/// Lookups over a [`Snapshot`] for controllers: users by id, login or email (case-insensitive),
/// groups by id or name (case-insensitive), and the in-scope members of each group.
#[derive(Debug)]
pub struct SnapshotIndex<'a> {
    users_by_id: HashMap<&'a str, &'a SnapshotUser>,
    users_by_address: HashMap<String, &'a SnapshotUser>,
    groups_by_id: HashMap<&'a str, &'a SnapshotGroup>,
    groups_by_name: HashMap<String, Vec<&'a SnapshotGroup>>,
    members: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> SnapshotIndex<'a> {
    fn new(s: &'a Snapshot) -> Self {
        let mut users_by_address = HashMap::new();
        for u in &s.users {
            users_by_address.insert(u.login.to_lowercase(), u);
        }
        // Logins win over emails when an address is both one user's login and another's email.
        for u in &s.users {
            if let Some(email) = &u.email {
                users_by_address.entry(email.to_lowercase()).or_insert(u);
            }
        }
        let mut groups_by_name: HashMap<String, Vec<&SnapshotGroup>> = HashMap::new();
        for g in &s.groups {
            groups_by_name
                .entry(g.name.to_lowercase())
                .or_default()
                .push(g);
        }
        let mut members: HashMap<&str, Vec<&str>> = HashMap::new();
        for g in s
            .grants
            .iter()
            .filter(|g| g.kind == GrantKind::GroupMembership)
        {
            members
                .entry(g.target_id.as_str())
                .or_default()
                .push(g.principal_id.as_str());
        }
        for list in members.values_mut() {
            list.sort_unstable();
            list.dedup();
        }
        Self {
            users_by_id: s.users.iter().map(|u| (u.id.as_str(), u)).collect(),
            users_by_address,
            groups_by_id: s.groups.iter().map(|g| (g.id.as_str(), g)).collect(),
            groups_by_name,
            members,
        }
    }

    /// The user with this id.
    pub fn user(&self, id: &str) -> Option<&'a SnapshotUser> {
        self.users_by_id.get(id).copied()
    }

    /// The user whose login (or, failing that, email) is `address`, ignoring case.
    pub fn user_by_address(&self, address: &str) -> Option<&'a SnapshotUser> {
        self.users_by_address.get(&address.to_lowercase()).copied()
    }

    /// The group with this id.
    pub fn group(&self, id: &str) -> Option<&'a SnapshotGroup> {
        self.groups_by_id.get(id).copied()
    }

    /// Groups with this name, ignoring case (Okta does not make names unique across types).
    pub fn groups_named(&self, name: &str) -> &[&'a SnapshotGroup] {
        self.groups_by_name
            .get(&name.to_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// In-scope member ids of a group, sorted (empty for unknown groups).
    pub fn members(&self, group_id: &str) -> &[&'a str] {
        self.members.get(group_id).map_or(&[], Vec::as_slice)
    }

    /// Whether the user is an in-scope member of the group.
    pub fn is_member(&self, group_id: &str, user_id: &str) -> bool {
        self.members(group_id).binary_search(&user_id).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, login: &str) -> SnapshotUser {
        SnapshotUser::active_for_tests(id, login)
    }

    fn sample() -> Snapshot {
        Snapshot {
            domain: "acme.okta.com".into(),
            synced_at: "2026-01-01T00:00:00Z".into(),
            email_domains: vec!["example.com".into()],
            group_name_filter: Some("eng".into()),
            users: vec![user("00u2", "b@example.com"), user("00u1", "A@example.com")],
            groups: vec![SnapshotGroup {
                id: "00g1".into(),
                name: "Engineering".into(),
                group_type: "OKTA_GROUP".into(),
                member_count: 2,
            }],
            roles: vec![SnapshotRole {
                role_type: "ORG_ADMIN".into(),
                label: "Organizational Administrator".into(),
            }],
            custom_roles: vec![SnapshotCustomRole {
                id: "cr01".into(),
                label: "Lite".into(),
                permissions: vec!["okta.users.read".into(), "okta.groups.read".into()],
            }],
            grants: vec![
                Grant::membership("00u2", "00g1"),
                Grant {
                    kind: GrantKind::CustomRoleAssignment,
                    principal_type: PrincipalType::Group,
                    principal_id: "00g1".into(),
                    target_id: "cr01".into(),
                    resource_set: Some("iam1".into()),
                },
                Grant::membership("00u1", "00g1"),
                Grant::membership("00u1", "00g1"),
            ],
            notes: vec![],
            changes: None,
            log_cursor: None,
            stats: SyncStats::default(),
        }
    }

    #[test]
    fn canonical_order_is_by_id_and_grants_are_deduplicated() {
        let mut s = sample();
        s.canonicalize();
        assert_eq!(s.users[0].id, "00u1");
        assert_eq!(s.grants.len(), 3);
        assert_eq!(s.grants[0], Grant::membership("00u1", "00g1"));
        assert_eq!(s.grants[2].kind, GrantKind::CustomRoleAssignment);
        assert_eq!(s.custom_roles[0].permissions[0], "okta.groups.read");
    }

    #[test]
    fn json_shape_uses_the_documented_names() {
        let mut s = sample();
        s.canonicalize();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["emailDomains"][0], "example.com");
        assert_eq!(v["groupNameFilter"], "eng");
        assert_eq!(v["users"][0]["displayName"], "A@example.com");
        assert_eq!(v["groups"][0]["type"], "OKTA_GROUP");
        assert_eq!(v["groups"][0]["memberCount"], 2);
        assert_eq!(v["roles"][0]["type"], "ORG_ADMIN");
        assert_eq!(v["customRoles"][0]["id"], "cr01");
        assert_eq!(v["grants"][0]["kind"], "groupMembership");
        assert_eq!(v["grants"][0]["principalType"], "user");
        assert!(v["grants"][0].get("resourceSet").is_none());
        assert_eq!(v["grants"][2]["kind"], "customRoleAssignment");
        assert_eq!(v["grants"][2]["resourceSet"], "iam1");
        assert!(v["stats"]["requestsByEndpoint"].is_object());
        assert!(v["stats"]["rateLimitWaitSeconds"].is_number());
    }

    #[test]
    fn atomic_write_round_trips_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.json");
        let mut s = sample();
        s.canonicalize();
        std::fs::write(&path, "old").unwrap();
        s.write_atomic(&path).unwrap();
        assert_eq!(Snapshot::read(&path).unwrap(), s);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the way makes the rename fail.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), "x").unwrap();
        assert!(matches!(
            sample().write_atomic(&path),
            Err(Error::Write { .. })
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn index_looks_up_users_groups_and_members() {
        let mut s = sample();
        s.canonicalize();
        let idx = s.index();
        assert_eq!(idx.user_by_address("a@EXAMPLE.com").unwrap().id, "00u1");
        assert_eq!(idx.user("00u2").unwrap().login, "b@example.com");
        assert_eq!(idx.groups_named("engineering")[0].id, "00g1");
        assert_eq!(idx.group("00g1").unwrap().name, "Engineering");
        assert_eq!(idx.members("00g1"), ["00u1", "00u2"]);
        assert!(idx.is_member("00g1", "00u2"));
        assert!(!idx.is_member("00g1", "00u3"));
        assert!(idx.members("nope").is_empty());
    }
}
