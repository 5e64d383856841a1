//! The org description the emulator serves: a YAML fixture, a seeded generator, and the
//! built-in demo org.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::ratelimit::RateLimits;
use super::{Error, Result};

/// A whole emulated org. See `docs/emulator.md` for the YAML format.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fixture {
    /// Org settings answered by `GET /api/v1/org`.
    #[serde(default)]
    pub org: FixtureOrg,
    /// API tokens accepted as `Authorization: SSWS <token>`.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Users.
    #[serde(default)]
    pub users: Vec<FixtureUser>,
    /// Groups and their members.
    #[serde(default)]
    pub groups: Vec<FixtureGroup>,
    /// Custom admin roles.
    #[serde(default)]
    pub custom_roles: Vec<FixtureCustomRole>,
    /// Admin role assignments to users and groups.
    #[serde(default)]
    pub role_assignments: Vec<FixtureRoleAssignment>,
    /// Overrides of Okta's default rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<FixtureRateLimits>,
    /// OAuth 2.0 service apps allowed to get access tokens at `/oauth2/v1/token`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_apps: Vec<super::oauth::FixtureServiceApp>,
}

/// Org settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixtureOrg {
    /// `companyName`; defaults to "Emulated Org".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    /// `subdomain`; defaults to "emulated".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
}

/// One user. `id` is derived from the login when absent; `email` defaults to the login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixtureUser {
    /// Okta user id (`00u...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `profile.login`.
    pub login: String,
    /// `profile.email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `profile.secondEmail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_email: Option<String>,
    /// `profile.firstName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// `profile.lastName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// One of Okta's user statuses; defaults to `ACTIVE`.
    #[serde(default = "active")]
    pub status: String,
    /// RFC 3339 creation time; derived from the id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// RFC 3339 last update; derived from the id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
}

fn active() -> String {
    "ACTIVE".into()
}

fn okta_group() -> String {
    "OKTA_GROUP".into()
}

/// A group member: a user's login, or (compact, used by the generator) the zero-based index of
/// a user in the same fixture's `users` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Member {
    /// Index into `users`.
    Index(u32),
    /// A user's login (case-insensitive).
    Login(String),
}

/// One group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixtureGroup {
    /// Okta group id (`00g...`); derived from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `profile.name`.
    pub name: String,
    /// `OKTA_GROUP` (default), `APP_GROUP` or `BUILT_IN`.
    #[serde(rename = "type", default = "okta_group")]
    pub group_type: String,
    /// `profile.description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Members.
    #[serde(default)]
    pub members: Vec<Member>,
}

/// A custom admin role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixtureCustomRole {
    /// Role id (`cr0...`); derived from the label when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Label (unique).
    pub label: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Permission labels such as `okta.users.read`.
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// An admin role assignment: exactly one of `user` (login) / `group` (name), and either `role`
/// (a standard role type) or `customRole` (label) with `resourceSet` (label).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixtureRoleAssignment {
    /// Assignee user's login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Assignee group's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Standard role type, e.g. `ORG_ADMIN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Custom role label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_role: Option<String>,
    /// Resource set label (custom roles only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_set: Option<String>,
}

/// Rate-limit overrides; absent fields keep Okta's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixtureRateLimits {
    /// Window length in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    /// Users list per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<u32>,
    /// User by id per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_by_id: Option<u32>,
    /// Groups list and membership calls per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<u32>,
    /// Group by id per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by_id: Option<u32>,
    /// System Log reads per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<u32>,
    /// Other calls per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<u32>,
    /// Concurrent requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

impl FixtureRateLimits {
    /// `base` with this fixture's overrides applied.
    pub fn apply(&self, base: RateLimits) -> RateLimits {
        RateLimits {
            window: self
                .window_seconds
                .map(Duration::from_secs)
                .unwrap_or(base.window),
            users: self.users.unwrap_or(base.users),
            user_by_id: self.user_by_id.unwrap_or(base.user_by_id),
            groups: self.groups.unwrap_or(base.groups),
            group_by_id: self.group_by_id.unwrap_or(base.group_by_id),
            logs: self.logs.unwrap_or(base.logs),
            default: self.default.unwrap_or(base.default),
            concurrency: self.concurrency.unwrap_or(base.concurrency),
        }
    }
}

impl Fixture {
    /// Parses a YAML fixture.
    pub fn from_yaml(yaml: &str) -> Result<Fixture> {
        serde_yaml::from_str(yaml).map_err(|e| Error::Fixture(e.to_string()))
    }

    /// Reads and parses a YAML fixture file.
    pub fn from_file(path: &Path) -> Result<Fixture> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Fixture::from_yaml(&text)
    }

    /// The rate limits this fixture asks for (Okta's defaults where it says nothing).
    pub fn rate_limits(&self) -> RateLimits {
        match &self.rate_limits {
            Some(r) => r.apply(RateLimits::default()),
            None => RateLimits::default(),
        }
    }

    /// Appends `other` (users, groups, roles, tokens), re-basing its index members; org
    /// settings and rate limits of `self` win where both say something.
    pub fn extend(&mut self, other: Fixture) {
        let offset = u32::try_from(self.users.len()).unwrap_or(u32::MAX);
        self.tokens.extend(other.tokens);
        self.service_apps.extend(other.service_apps);
        self.users.extend(other.users);
        self.groups.extend(other.groups.into_iter().map(|mut g| {
            for m in &mut g.members {
                if let Member::Index(i) = m {
                    *i = i.saturating_add(offset);
                }
            }
            g
        }));
        self.custom_roles.extend(other.custom_roles);
        self.role_assignments.extend(other.role_assignments);
        if self.rate_limits.is_none() {
            self.rate_limits = other.rate_limits;
        }
        self.org.company_name = self.org.company_name.take().or(other.org.company_name);
        self.org.subdomain = self.org.subdomain.take().or(other.org.subdomain);
    }

    /// The built-in demo org for `sync --demo`: 3000 users over several email domains,
    /// including look-alikes of `example.com`, 120 groups of every type, admins, custom roles
    /// and group-held roles. Deterministic.
    pub fn demo() -> Fixture {
        let spec = GenerateSpec {
            users: 3000,
            groups: 120,
            memberships_per_user: 4,
            admins: 15,
            custom_roles: 3,
            domains: [
                "example.com",
                "example.org",
                "corp.example.net",
                "example.com.evil.io",
                "example.community",
            ]
            .map(String::from)
            .to_vec(),
        };
        let mut f = Fixture::generate(&spec, 2026);
        f.org.company_name = Some("Demo Org".into());
        f.org.subdomain = Some("demo".into());
        f
    }

    /// Generates an org from `spec`, deterministically for a given `seed`. Users get
    /// `memberships_per_user` distinct groups each (plus the built-in "Everyone"); members are
    /// stored as user indices so a 100k-user org stays compact.
    pub fn generate(spec: &GenerateSpec, seed: u64) -> Fixture {
        let mut rng = StdRng::seed_from_u64(seed);
        let domains: Vec<&str> = if spec.domains.is_empty() {
            vec!["example.com"]
        } else {
            spec.domains.iter().map(String::as_str).collect()
        };
        let users: Vec<FixtureUser> = (0..spec.users)
            .map(|i| {
                let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
                let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
                let domain = domains[i % domains.len()];
                let login = format!(
                    "{}.{}{i}@{domain}",
                    first.to_lowercase(),
                    last.to_lowercase()
                );
                let status = match rng.random_range(0..100u32) {
                    0..=2 => "SUSPENDED",
                    3..=4 => "DEPROVISIONED",
                    5 => "STAGED",
                    6 => "LOCKED_OUT",
                    7 => "PROVISIONED",
                    8 => "PASSWORD_EXPIRED",
                    _ => "ACTIVE",
                };
                let second_email = rng
                    .random_bool(0.2)
                    .then(|| format!("{}{i}@personal.example", first.to_lowercase()));
                FixtureUser {
                    id: None,
                    email: Some(login.clone()),
                    login,
                    second_email,
                    first_name: Some(first.into()),
                    last_name: Some(last.into()),
                    status: status.into(),
                    created: None,
                    last_updated: None,
                }
            })
            .collect();

        let mut groups = vec![FixtureGroup {
            id: None,
            name: "Everyone".into(),
            group_type: "BUILT_IN".into(),
            description: Some("All users in your organization".into()),
            members: (0..spec.users as u32).map(Member::Index).collect(),
        }];
        for i in 0..spec.groups.saturating_sub(1) {
            let team = TEAMS[i % TEAMS.len()];
            let app = rng.random_bool(0.2);
            groups.push(FixtureGroup {
                id: None,
                name: format!("{team} {i}"),
                group_type: if app { "APP_GROUP" } else { "OKTA_GROUP" }.into(),
                description: Some(if app {
                    format!("{team} imported from the directory")
                } else {
                    format!("{team} team {i}")
                }),
                members: Vec::new(),
            });
        }
        let choosable = groups.len() - 1;
        let per_user = spec.memberships_per_user.min(choosable);
        let mut picked = Vec::with_capacity(per_user);
        for u in 0..spec.users as u32 {
            picked.clear();
            while picked.len() < per_user {
                let g = 1 + rng.random_range(0..choosable);
                if !picked.contains(&g) {
                    picked.push(g);
                }
            }
            for &g in &picked {
                groups[g].members.push(Member::Index(u));
            }
        }

        let custom_roles: Vec<FixtureCustomRole> = (0..spec.custom_roles)
            .map(|i| FixtureCustomRole {
                id: None,
                label: format!("Custom Role {i}"),
                description: Some(format!("Generated custom role {i}")),
                permissions: PERMISSIONS
                    .iter()
                    .skip(i % PERMISSIONS.len())
                    .take(3)
                    .map(|p| p.to_string())
                    .collect(),
            })
            .collect();

        let mut role_assignments = Vec::new();
        // `admins` distinct users (all of them when there are fewer), in random order.
        let admins = rand::seq::index::sample(&mut rng, users.len(), spec.admins.min(users.len()));
        for (a, u) in admins.into_iter().enumerate() {
            role_assignments.push(FixtureRoleAssignment {
                user: Some(users[u].login.clone()),
                role: Some(STANDARD_ROLES[a % STANDARD_ROLES.len()].0.into()),
                ..Default::default()
            });
        }
        // Roles held by groups: one standard and, when custom roles exist, one custom per
        // few admins, on OKTA_GROUP or APP_GROUP groups alike.
        if choosable > 0 {
            for a in 0..spec.admins.div_ceil(4) {
                let group = &groups[1 + rng.random_range(0..choosable)];
                role_assignments.push(FixtureRoleAssignment {
                    group: Some(group.name.clone()),
                    role: Some(STANDARD_ROLES[(a + 3) % STANDARD_ROLES.len()].0.into()),
                    ..Default::default()
                });
                if !custom_roles.is_empty() {
                    role_assignments.push(FixtureRoleAssignment {
                        group: Some(group.name.clone()),
                        custom_role: Some(custom_roles[a % custom_roles.len()].label.clone()),
                        resource_set: Some(format!("Resource Set {a}")),
                        ..Default::default()
                    });
                }
            }
        }

        Fixture {
            org: FixtureOrg::default(),
            tokens: vec!["test-token".into()],
            users,
            groups,
            custom_roles,
            role_assignments,
            rate_limits: None,
            service_apps: Vec::new(),
        }
    }
}

/// The standard admin role types of the spec's `RoleType` enum (without `CUSTOM`) with the
/// label Okta serves for each: the description column of the spec's `RoleType` table. The
/// emulator keeps its own table rather than the operator's so that a wrong label on either
/// side shows up as a difference; the tests of `okta::models` and `spec` check both
/// against the spec.
pub const STANDARD_ROLES: &[(&str, &str)] = &[
    ("SUPER_ADMIN", "Super Administrator"),
    ("ORG_ADMIN", "Organizational Administrator"),
    ("APP_ADMIN", "Application Administrator"),
    ("USER_ADMIN", "User Administrator"),
    ("HELP_DESK_ADMIN", "Help Desk Administrator"),
    ("READ_ONLY_ADMIN", "Read-Only Administrator"),
    (
        "API_ACCESS_MANAGEMENT_ADMIN",
        "Access Management Administrator",
    ),
    ("REPORT_ADMIN", "Report Administrator"),
    ("GROUP_MEMBERSHIP_ADMIN", "Group Membership Administrator"),
    (
        "ACCESS_CERTIFICATIONS_ADMIN",
        "Access Certifications Administrator",
    ),
    ("ACCESS_REQUESTS_ADMIN", "Access Requests Administrator"),
    ("WORKFLOWS_ADMIN", "Workflows Administrator"),
];

/// The label Okta serves for a standard role type, if the emulator knows the type.
pub fn standard_role_label(role_type: &str) -> Option<&'static str> {
    STANDARD_ROLES
        .iter()
        .find(|(t, _)| *t == role_type)
        .map(|(_, label)| *label)
}

const FIRST_NAMES: &[&str] = &[
    "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
    "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Zoe",
];
const LAST_NAMES: &[&str] = &[
    "Smith", "Jones", "Garcia", "Miller", "Davis", "Lopez", "Wilson", "Anderson", "Thomas",
    "Moore", "Martin", "Lee", "Clark", "Lewis", "Walker", "Young",
];
const TEAMS: &[&str] = &[
    "Engineering",
    "Sales",
    "Support",
    "Finance",
    "Marketing",
    "Security",
    "Operations",
    "Legal",
];
const PERMISSIONS: &[&str] = &[
    "okta.users.read",
    "okta.users.manage",
    "okta.groups.read",
    "okta.groups.manage",
    "okta.apps.read",
    "okta.users.userprofile.manage",
];

/// What to generate, parsed from
/// `users=N,groups=G,memberships-per-user=K,admins=A,custom-roles=C,domains=a.com:b.com`
/// (every key optional; defaults 100 users, 10 groups, 3 memberships, 2 admins, 1 custom
/// role, `example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateSpec {
    /// Number of users.
    pub users: usize,
    /// Number of groups, including the built-in "Everyone".
    pub groups: usize,
    /// Groups each user joins besides "Everyone".
    pub memberships_per_user: usize,
    /// Distinct users holding a standard admin role directly (at most `users`).
    pub admins: usize,
    /// Custom roles.
    pub custom_roles: usize,
    /// Email domains, assigned round-robin.
    pub domains: Vec<String>,
}

impl Default for GenerateSpec {
    fn default() -> Self {
        GenerateSpec {
            users: 100,
            groups: 10,
            memberships_per_user: 3,
            admins: 2,
            custom_roles: 1,
            domains: vec!["example.com".into()],
        }
    }
}

impl FromStr for GenerateSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut spec = GenerateSpec::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| Error::GenerateSpec(format!("'{part}' is not key=value")))?;
            let number = || {
                value
                    .parse::<usize>()
                    .map_err(|_| Error::GenerateSpec(format!("'{key}' needs a number")))
            };
            match key.trim() {
                "users" => spec.users = number()?,
                "groups" => spec.groups = number()?,
                "memberships-per-user" => spec.memberships_per_user = number()?,
                "admins" => spec.admins = number()?,
                "custom-roles" => spec.custom_roles = number()?,
                "domains" => {
                    spec.domains = value
                        .split(':')
                        .filter(|d| !d.is_empty())
                        .map(String::from)
                        .collect()
                }
                other => return Err(Error::GenerateSpec(format!("unknown key '{other}'"))),
            }
        }
        if spec.users > u32::MAX as usize / 2 {
            return Err(Error::GenerateSpec("too many users".into()));
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_example() {
        let yaml = r#"
tokens: [test-token]
users:
  - {login: alice@example.com, email: alice@example.com, secondEmail: null, firstName: Alice, lastName: A, status: ACTIVE}
groups:
  - {name: Engineering, type: OKTA_GROUP, description: "", members: [alice@example.com]}
customRoles:
  - {label: Helpdesk Lite, description: "", permissions: [okta.users.read]}
roleAssignments:
  - {user: alice@example.com, role: ORG_ADMIN}
  - {group: Engineering, role: HELP_DESK_ADMIN}
  - {group: Engineering, customRole: Helpdesk Lite, resourceSet: Support}
rateLimits: {windowSeconds: 60, users: 600, groups: 500, default: 1200, concurrency: 75}
"#;
        let f = Fixture::from_yaml(yaml).unwrap();
        assert_eq!(f.users[0].login, "alice@example.com");
        assert_eq!(
            f.groups[0].members,
            vec![Member::Login("alice@example.com".into())]
        );
        assert_eq!(
            f.role_assignments[2].resource_set.as_deref(),
            Some("Support")
        );
        assert_eq!(f.rate_limits(), RateLimits::default());
        assert!(Fixture::from_yaml("users: [{logn: x}]").is_err());
    }

    #[test]
    fn generate_spec_parses_and_rejects() {
        let s: GenerateSpec =
            "users=5,groups=3,memberships-per-user=2,admins=1,custom-roles=0,domains=a.com:b.com"
                .parse()
                .unwrap();
        assert_eq!(s.users, 5);
        assert_eq!(s.domains, ["a.com", "b.com"]);
        assert!("users=x".parse::<GenerateSpec>().is_err());
        assert!("colour=blue".parse::<GenerateSpec>().is_err());
        assert!("users".parse::<GenerateSpec>().is_err());
    }

    #[test]
    fn generation_is_deterministic_and_seed_sensitive() {
        let spec: GenerateSpec = "users=300,groups=20,memberships-per-user=3"
            .parse()
            .unwrap();
        let a = Fixture::generate(&spec, 7);
        assert_eq!(a, Fixture::generate(&spec, 7));
        assert_ne!(a, Fixture::generate(&spec, 8));
        assert_eq!(a.users.len(), 300);
        assert_eq!(a.groups.len(), 20);
        let non_builtin: usize = a.groups[1..].iter().map(|g| g.members.len()).sum();
        assert_eq!(non_builtin, 900);
    }

    #[test]
    fn admins_are_distinct_users() {
        for (spec, expected) in [
            ("users=5,admins=5", 5),
            ("users=40,admins=30", 30),
            ("users=3,admins=10", 3),
        ] {
            let f = Fixture::generate(&spec.parse().unwrap(), 7);
            let direct: Vec<&str> = f
                .role_assignments
                .iter()
                .filter_map(|a| a.user.as_deref())
                .collect();
            let distinct: std::collections::BTreeSet<&str> = direct.iter().copied().collect();
            assert_eq!(direct.len(), expected, "{spec}");
            assert_eq!(distinct.len(), expected, "{spec}: an admin picked twice");
        }
    }

    #[test]
    fn extend_rebases_index_members() {
        let mut a = Fixture::generate(
            &"users=2,groups=2,memberships-per-user=1".parse().unwrap(),
            1,
        );
        let b = Fixture::generate(
            &"users=3,groups=2,memberships-per-user=1".parse().unwrap(),
            1,
        );
        a.extend(b);
        assert_eq!(a.users.len(), 5);
        assert_eq!(a.groups[2].members[0], Member::Index(2));
    }
}
