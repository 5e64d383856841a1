//! The emulated org in memory: compact records sorted by id (so `after` cursors are binary
//! searches), members as user indices, and the mutations the API and the test controls make.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Value as Json, json};

use super::fixture::{Fixture, Member, STANDARD_ROLES};
use super::search::{self, Record, Value};
use super::syslog::{Actor, Entry, SystemLog, Target};
use super::{Error, Result};

/// Okta's user statuses.
pub const USER_STATUSES: &[&str] = &[
    "STAGED",
    "PROVISIONED",
    "ACTIVE",
    "RECOVERY",
    "PASSWORD_EXPIRED",
    "LOCKED_OUT",
    "SUSPENDED",
    "DEPROVISIONED",
];

const GROUP_TYPES: &[&str] = &["OKTA_GROUP", "APP_GROUP", "BUILT_IN"];

/// A user record.
#[derive(Debug, Clone)]
pub struct User {
    pub(crate) id: Box<str>,
    pub(crate) status: &'static str,
    pub(crate) login: Box<str>,
    pub(crate) email: Box<str>,
    pub(crate) second_email: Option<Box<str>>,
    pub(crate) first_name: Option<Box<str>>,
    pub(crate) last_name: Option<Box<str>>,
    pub(crate) created: i64,
    pub(crate) last_updated: i64,
    pub(crate) status_changed: i64,
}

/// A group record; `members` are user indices, sorted, which is also user-id order.
#[derive(Debug, Clone)]
pub struct Group {
    pub(crate) id: Box<str>,
    pub(crate) group_type: &'static str,
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) members: Vec<u32>,
    pub(crate) created: i64,
    pub(crate) last_updated: i64,
    pub(crate) last_membership_updated: i64,
}

/// A custom admin role.
#[derive(Debug, Clone)]
pub struct CustomRole {
    pub(crate) id: String,
    pub(crate) label: String,
    pub(crate) description: String,
    pub(crate) permissions: Vec<String>,
    pub(crate) created: i64,
}

/// Who holds a role assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignee {
    /// A user, by index.
    User(u32),
    /// A group, by index.
    Group(u32),
}

/// What role an assignment grants.
#[derive(Debug, Clone)]
pub enum RoleRef {
    /// A standard role type.
    Standard(&'static str),
    /// A custom role (index) over a resource set (id).
    Custom {
        /// Index into the custom roles.
        role: usize,
        /// Resource set id.
        resource_set: String,
    },
}

/// One admin role assignment.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub(crate) id: String,
    pub(crate) assignee: Assignee,
    pub(crate) role: RoleRef,
    pub(crate) created: i64,
}

/// The whole emulated org.
#[derive(Debug)]
pub struct Org {
    pub(crate) company_name: String,
    pub(crate) subdomain: String,
    pub(crate) org_id: String,
    pub(crate) tokens: HashSet<String>,
    pub(crate) users: Vec<User>,
    by_login: HashMap<Box<str>, u32>,
    pub(crate) groups: Vec<Group>,
    pub(crate) roles: Vec<CustomRole>,
    pub(crate) assignments: Vec<Assignment>,
    /// Every change since the emulator started, as Okta's System Log has it.
    pub(crate) log: SystemLog,
}

/// FNV-1a: a stable hash (unlike std's, guaranteed not to change between releases), used to
/// derive ids and timestamps from names so fixtures without ids stay deterministic.
fn fnv(salt: u64, text: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ salt;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// An Okta-looking id: a 3-character prefix and 17 base-62 characters derived from `key`.
pub(crate) fn okta_id(prefix: &str, key: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(20);
    out.push_str(prefix);
    let (mut a, mut b) = (fnv(1, key), fnv(2, key));
    for i in 0..17 {
        let src = if i < 9 { &mut a } else { &mut b };
        out.push(ALPHABET[(*src % 62) as usize] as char);
        *src /= 62;
    }
    out
}

/// The System Log event type and message of a status change. Okta's catalogue names these
/// for the lifecycle transitions; where a status is reached some other way (a lock-out, an
/// expired password) the closest documented `user.account.*` type is used.
fn lifecycle_event(before: &str, after: &str) -> (&'static str, &'static str) {
    match (before, after) {
        ("SUSPENDED", "ACTIVE") => ("user.lifecycle.unsuspend", "Unsuspend Okta user"),
        (_, "ACTIVE") => ("user.lifecycle.activate", "Activate Okta user"),
        (_, "SUSPENDED") => ("user.lifecycle.suspend", "Suspend Okta user"),
        (_, "DEPROVISIONED") => ("user.lifecycle.deactivate", "Deactivate Okta user"),
        (_, "LOCKED_OUT") => ("user.account.lock", "Max sign in attempts exceeded"),
        (_, "PASSWORD_EXPIRED") => ("user.account.expire_password", "Expire user password"),
        (_, "RECOVERY") => ("user.account.reset_password", "Reset user password"),
        _ => ("user.lifecycle.create", "Create Okta user"),
    }
}

const BASE_TIME_MS: i64 = 1_577_836_800_000; // 2020-01-01T00:00:00Z
const YEAR_MS: i64 = 365 * 24 * 3600 * 1000;

fn derived_time(key: &str, salt: u64, span_ms: i64) -> i64 {
    // Whole seconds, like Okta's timestamps in practice.
    (fnv(salt, key) % (span_ms as u64 / 1000)) as i64 * 1000
}

fn parse_time(what: &str, raw: &Option<String>) -> Result<Option<i64>> {
    raw.as_deref()
        .map(|r| {
            search::parse_time(r).ok_or_else(|| Error::Fixture(format!("{what}: bad time '{r}'")))
        })
        .transpose()
}

/// Formats epoch milliseconds as Okta does: `2026-01-02T03:04:05.000Z`.
pub(crate) fn format_time(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => "1970-01-01T00:00:00.000Z".into(),
    }
}

fn status_of(raw: &str) -> Result<&'static str> {
    USER_STATUSES
        .iter()
        .copied()
        .find(|s| s.eq_ignore_ascii_case(raw))
        .ok_or_else(|| Error::InvalidStatus(raw.into()))
}

impl Org {
    /// Builds the org from a fixture, deriving missing ids and timestamps and resolving
    /// members and role assignments.
    pub fn from_fixture(fixture: &Fixture) -> Result<Org> {
        // Users, sorted by id; `order[i]` is the final index of fixture user i.
        let mut users = Vec::with_capacity(fixture.users.len());
        for u in &fixture.users {
            let id = u.id.clone().unwrap_or_else(|| okta_id("00u", &u.login));
            let created = parse_time(&u.login, &u.created)?
                .unwrap_or_else(|| BASE_TIME_MS + derived_time(&id, 3, 4 * YEAR_MS));
            let last_updated = parse_time(&u.login, &u.last_updated)?
                .unwrap_or_else(|| created + derived_time(&id, 4, YEAR_MS));
            users.push(User {
                id: id.into(),
                status: status_of(&u.status)?,
                login: u.login.as_str().into(),
                email: u.email.as_deref().unwrap_or(&u.login).into(),
                second_email: u.second_email.as_deref().map(Into::into),
                first_name: u.first_name.as_deref().map(Into::into),
                last_name: u.last_name.as_deref().map(Into::into),
                created,
                last_updated,
                status_changed: last_updated,
            });
        }
        let mut order: Vec<u32> = (0..users.len() as u32).collect();
        order.sort_by(|a, b| users[*a as usize].id.cmp(&users[*b as usize].id));
        let mut position = vec![0u32; users.len()];
        for (new, old) in order.iter().enumerate() {
            position[*old as usize] = new as u32;
        }
        let mut slots: Vec<Option<User>> = users.into_iter().map(Some).collect();
        let users: Vec<User> = order
            .iter()
            .map(|old| slots[*old as usize].take().expect("each user moved once"))
            .collect();
        let mut by_login = HashMap::with_capacity(users.len());
        for (i, u) in users.iter().enumerate() {
            if i > 0 && users[i - 1].id == u.id {
                return Err(Error::Fixture(format!("duplicate user id {}", u.id)));
            }
            if by_login
                .insert(u.login.to_lowercase().into_boxed_str(), i as u32)
                .is_some()
            {
                return Err(Error::Fixture(format!("duplicate login {}", u.login)));
            }
        }

        let mut groups = Vec::with_capacity(fixture.groups.len());
        for g in &fixture.groups {
            let id = g.id.clone().unwrap_or_else(|| okta_id("00g", &g.name));
            let group_type = GROUP_TYPES
                .iter()
                .copied()
                .find(|t| *t == g.group_type)
                .ok_or_else(|| Error::Fixture(format!("bad group type {}", g.group_type)))?;
            let mut members = Vec::with_capacity(g.members.len());
            for m in &g.members {
                members.push(match m {
                    Member::Index(i) => *position
                        .get(*i as usize)
                        .ok_or_else(|| Error::Fixture(format!("{}: no user #{i}", g.name)))?,
                    Member::Login(login) => *by_login
                        .get(login.to_lowercase().as_str())
                        .ok_or_else(|| Error::Fixture(format!("{}: no user {login}", g.name)))?,
                });
            }
            members.sort_unstable();
            members.dedup();
            let created = BASE_TIME_MS + derived_time(&id, 5, 2 * YEAR_MS);
            let last_updated = created + derived_time(&id, 6, YEAR_MS);
            groups.push(Group {
                id: id.into(),
                group_type,
                name: g.name.clone(),
                description: g.description.clone(),
                members,
                created,
                last_updated,
                last_membership_updated: last_updated,
            });
        }
        groups.sort_by(|a, b| a.id.cmp(&b.id));
        if groups.windows(2).any(|w| w[0].id == w[1].id) {
            return Err(Error::Fixture("duplicate group id".into()));
        }

        let mut roles: Vec<CustomRole> = fixture
            .custom_roles
            .iter()
            .map(|r| {
                let id = r.id.clone().unwrap_or_else(|| okta_id("cr0", &r.label));
                CustomRole {
                    created: BASE_TIME_MS + derived_time(&id, 7, YEAR_MS),
                    id,
                    label: r.label.clone(),
                    description: r.description.clone().unwrap_or_default(),
                    permissions: r.permissions.clone(),
                }
            })
            .collect();
        roles.sort_by(|a, b| a.id.cmp(&b.id));

        let mut org = Org {
            company_name: fixture
                .org
                .company_name
                .clone()
                .unwrap_or_else(|| "Emulated Org".into()),
            subdomain: fixture
                .org
                .subdomain
                .clone()
                .unwrap_or_else(|| "emulated".into()),
            org_id: String::new(),
            tokens: fixture.tokens.iter().cloned().collect(),
            users,
            by_login,
            groups,
            roles,
            assignments: Vec::new(),
            log: SystemLog::default(),
        };
        org.org_id = okta_id("00o", &org.subdomain);
        for (n, a) in fixture.role_assignments.iter().enumerate() {
            let assignee = match (&a.user, &a.group) {
                (Some(login), None) => Assignee::User(
                    org.user_index(login)
                        .ok_or_else(|| Error::Fixture(format!("role for unknown user {login}")))?,
                ),
                (None, Some(name)) => Assignee::Group(
                    org.group_index_by_name(name)
                        .ok_or_else(|| Error::Fixture(format!("role for unknown group {name}")))?,
                ),
                _ => {
                    return Err(Error::Fixture(format!(
                        "role assignment #{n} needs exactly one of user/group"
                    )));
                }
            };
            let role = match (&a.role, &a.custom_role) {
                (Some(t), None) => RoleRef::Standard(
                    STANDARD_ROLES
                        .iter()
                        .map(|(role_type, _)| *role_type)
                        .find(|s| s == t)
                        .ok_or_else(|| Error::Fixture(format!("unknown role type {t}")))?,
                ),
                (None, Some(label)) => RoleRef::Custom {
                    role: org
                        .roles
                        .iter()
                        .position(|r| &r.label == label)
                        .ok_or_else(|| Error::Fixture(format!("unknown custom role {label}")))?,
                    resource_set: okta_id(
                        "iam",
                        a.resource_set.as_deref().unwrap_or("Default Resource Set"),
                    ),
                },
                _ => {
                    return Err(Error::Fixture(format!(
                        "role assignment #{n} needs exactly one of role/customRole"
                    )));
                }
            };
            let key = format!("{n}:{assignee:?}");
            let id = match role {
                RoleRef::Standard(_) => okta_id("ra1", &key),
                RoleRef::Custom { .. } => okta_id("irb", &key),
            };
            org.assignments.push(Assignment {
                created: BASE_TIME_MS + derived_time(&id, 8, YEAR_MS),
                id,
                assignee,
                role,
            });
        }
        Ok(org)
    }

    /// Index of the user with this id, or this login (case-insensitive).
    pub fn user_index(&self, id_or_login: &str) -> Option<u32> {
        self.user_index_by_id(id_or_login).or_else(|| {
            self.by_login
                .get(id_or_login.to_lowercase().as_str())
                .copied()
        })
    }

    /// Index of the user with exactly this id.
    pub fn user_index_by_id(&self, id: &str) -> Option<u32> {
        self.users
            .binary_search_by(|u| u.id.as_ref().cmp(id))
            .ok()
            .map(|i| i as u32)
    }

    /// Index of the group with this id.
    pub fn group_index(&self, id: &str) -> Option<u32> {
        self.groups
            .binary_search_by(|g| g.id.as_ref().cmp(id))
            .ok()
            .map(|i| i as u32)
    }

    /// Index of the first group with this exact name.
    pub fn group_index_by_name(&self, name: &str) -> Option<u32> {
        self.groups
            .iter()
            .position(|g| g.name == name)
            .map(|i| i as u32)
    }

    /// The System Log target of a user.
    fn user_target(&self, user: u32) -> Target {
        let u = &self.users[user as usize];
        let name = [u.first_name.as_deref(), u.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        Target {
            id: u.id.to_string(),
            target_type: "User",
            alternate_id: u.login.to_string(),
            display_name: if name.is_empty() {
                u.login.to_string()
            } else {
                name
            },
        }
    }

    /// The System Log target of a group (Okta's `UserGroup`; its `alternateId` is often
    /// `unknown` in real events, the name is used here).
    fn group_target(&self, group: u32) -> Target {
        let g = &self.groups[group as usize];
        Target {
            id: g.id.to_string(),
            target_type: "UserGroup",
            alternate_id: g.name.clone(),
            display_name: g.name.clone(),
        }
    }

    /// Appends one System Log event by `actor` about `targets`.
    fn log_event(
        &mut self,
        event_type: &'static str,
        display_message: &'static str,
        actor: &Actor,
        targets: Vec<Target>,
        now_ms: i64,
    ) {
        let entry = Entry {
            event_type,
            display_message,
            actor: actor.clone(),
            targets,
        };
        self.log.write(entry, now_ms);
    }

    /// Adds a member; returns whether anything changed.
    pub fn add_member(&mut self, group: u32, user: u32, actor: &Actor, now_ms: i64) -> bool {
        let g = &mut self.groups[group as usize];
        match g.members.binary_search(&user) {
            Ok(_) => false,
            Err(at) => {
                g.members.insert(at, user);
                g.last_membership_updated = now_ms;
                self.write_membership_event(group, user, true, actor, now_ms);
                true
            }
        }
    }

    /// Removes a member; returns whether anything changed.
    pub fn remove_member(&mut self, group: u32, user: u32, actor: &Actor, now_ms: i64) -> bool {
        let g = &mut self.groups[group as usize];
        match g.members.binary_search(&user) {
            Ok(at) => {
                g.members.remove(at);
                g.last_membership_updated = now_ms;
                self.write_membership_event(group, user, false, actor, now_ms);
                true
            }
            Err(_) => false,
        }
    }

    fn write_membership_event(
        &mut self,
        group: u32,
        user: u32,
        added: bool,
        actor: &Actor,
        now_ms: i64,
    ) {
        let (event_type, display_message) = if added {
            ("group.user_membership.add", "Add user to group membership")
        } else {
            (
                "group.user_membership.remove",
                "Remove user from group membership",
            )
        };
        let targets = vec![self.user_target(user), self.group_target(group)];
        self.log_event(event_type, display_message, actor, targets, now_ms);
    }

    /// Sets a user's status (validated against Okta's statuses).
    pub fn set_user_status(
        &mut self,
        user: u32,
        status: &str,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<()> {
        let status = status_of(status)?;
        let u = &mut self.users[user as usize];
        let before = u.status;
        u.status = status;
        u.status_changed = now_ms;
        u.last_updated = now_ms;
        let (event_type, display_message) = lifecycle_event(before, status);
        let targets = vec![self.user_target(user)];
        self.log_event(event_type, display_message, actor, targets, now_ms);
        Ok(())
    }

    /// Changes a user's `profile.login` and `profile.email`, as an admin edit would.
    pub fn set_user_profile(
        &mut self,
        user: u32,
        login: &str,
        email: &str,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<()> {
        let key = login.to_lowercase();
        if self.by_login.get(key.as_str()).is_some_and(|u| *u != user) {
            return Err(Error::LoginTaken(login.into()));
        }
        let u = &mut self.users[user as usize];
        self.by_login.remove(u.login.to_lowercase().as_str());
        self.by_login.insert(key.into_boxed_str(), user);
        u.login = login.into();
        u.email = email.into();
        u.last_updated = now_ms;
        let targets = vec![self.user_target(user)];
        self.log_event(
            "user.account.update_profile",
            "Update user profile for Okta",
            actor,
            targets,
            now_ms,
        );
        Ok(())
    }

    /// Renames a group.
    pub fn rename_group(&mut self, group: u32, name: &str, actor: &Actor, now_ms: i64) {
        let g = &mut self.groups[group as usize];
        g.name = name.to_string();
        g.last_updated = now_ms;
        let targets = vec![self.group_target(group)];
        self.log_event(
            "group.profile.update",
            "Update group profile",
            actor,
            targets,
            now_ms,
        );
    }

    /// Assigns (`assign`) or unassigns a standard admin role of a user or group, as an admin
    /// does in the console; returns whether anything changed. Writes the System Log event
    /// Okta names for it: `user.account.privilege.grant`/`.revoke` for a user,
    /// `group.privilege.grant`/`.revoke` for a group, targeting the user or group.
    pub fn set_standard_role(
        &mut self,
        assignee: Assignee,
        role_type: &str,
        assign: bool,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<bool> {
        let role = STANDARD_ROLES
            .iter()
            .map(|(t, _)| *t)
            .find(|t| *t == role_type)
            .ok_or_else(|| Error::UnknownRole(role_type.to_owned()))?;
        let held = self.assignments.iter().position(|a| {
            a.assignee == assignee && matches!(a.role, RoleRef::Standard(t) if t == role)
        });
        match (held, assign) {
            (Some(_), true) | (None, false) => return Ok(false),
            (None, true) => {
                let id = okta_id(
                    "ra1",
                    &format!("{assignee:?}:{role}:{now_ms}:{}", self.assignments.len()),
                );
                self.assignments.push(Assignment {
                    id,
                    assignee,
                    role: RoleRef::Standard(role),
                    created: now_ms,
                });
            }
            (Some(at), false) => {
                self.assignments.remove(at);
            }
        }
        let (event_type, display_message, target) = match (assignee, assign) {
            (Assignee::User(u), true) => (
                "user.account.privilege.grant",
                "Grant user privilege",
                self.user_target(u),
            ),
            (Assignee::User(u), false) => (
                "user.account.privilege.revoke",
                "Revoke user privilege",
                self.user_target(u),
            ),
            (Assignee::Group(g), true) => (
                "group.privilege.grant",
                "Grant group privilege",
                self.group_target(g),
            ),
            (Assignee::Group(g), false) => (
                "group.privilege.revoke",
                "Revoke group privilege",
                self.group_target(g),
            ),
        };
        self.log_event(event_type, display_message, actor, vec![target], now_ms);
        Ok(true)
    }

    /// Indices of the groups `user` belongs to, in group-id order.
    pub fn groups_of(&self, user: u32) -> Vec<u32> {
        (0..self.groups.len() as u32)
            .filter(|g| {
                self.groups[*g as usize]
                    .members
                    .binary_search(&user)
                    .is_ok()
            })
            .collect()
    }

    /// The assignments a user holds, directly and through groups, in that order.
    pub fn roles_of_user(&self, user: u32) -> Vec<&Assignment> {
        let direct = self
            .assignments
            .iter()
            .filter(|a| a.assignee == Assignee::User(user));
        let inherited = self.assignments.iter().filter(|a| match a.assignee {
            Assignee::Group(g) => self.groups[g as usize].members.binary_search(&user).is_ok(),
            Assignee::User(_) => false,
        });
        direct.chain(inherited).collect()
    }

    /// Every user holding an admin role (directly or through a group), sorted by id.
    pub fn role_assignees(&self) -> Vec<u32> {
        let mut set = BTreeSet::new();
        for a in &self.assignments {
            match a.assignee {
                Assignee::User(u) => {
                    set.insert(u);
                }
                Assignee::Group(g) => set.extend(self.groups[g as usize].members.iter().copied()),
            }
        }
        set.into_iter().collect()
    }

    /// The whole org as JSON, for assertions (`GET /__emulator/state`). Tokens are left out.
    pub fn state_json(&self) -> Json {
        let users: Vec<Json> = self
            .users
            .iter()
            .map(|u| {
                json!({
                    "id": u.id, "status": u.status, "login": u.login, "email": u.email,
                    "secondEmail": u.second_email, "firstName": u.first_name,
                    "lastName": u.last_name, "created": format_time(u.created),
                    "lastUpdated": format_time(u.last_updated),
                })
            })
            .collect();
        let groups: Vec<Json> = self
            .groups
            .iter()
            .map(|g| {
                json!({
                    "id": g.id, "type": g.group_type, "name": g.name,
                    "description": g.description,
                    "members": g.members.iter().map(|m| &self.users[*m as usize].id).collect::<Vec<_>>(),
                })
            })
            .collect();
        let roles: Vec<Json> = self
            .roles
            .iter()
            .map(|r| json!({"id": r.id, "label": r.label, "description": r.description, "permissions": r.permissions}))
            .collect();
        let assignments: Vec<Json> = self
            .assignments
            .iter()
            .map(|a| {
                let mut v = match a.assignee {
                    Assignee::User(u) => json!({"id": a.id, "user": self.users[u as usize].id}),
                    Assignee::Group(g) => json!({"id": a.id, "group": self.groups[g as usize].id}),
                };
                match &a.role {
                    RoleRef::Standard(t) => v["type"] = json!(t),
                    RoleRef::Custom { role, resource_set } => {
                        v["type"] = json!("CUSTOM");
                        v["role"] = json!(self.roles[*role].id);
                        v["resourceSet"] = json!(resource_set);
                    }
                }
                v
            })
            .collect();
        json!({
            "org": {"id": self.org_id, "companyName": self.company_name, "subdomain": self.subdomain},
            "users": users, "groups": groups, "customRoles": roles, "roleAssignments": assignments,
        })
    }
}

impl Record for User {
    fn value(&self, prop: &str) -> Option<Value<'_>> {
        Some(match prop {
            "id" => Value::Text(&self.id),
            "status" => Value::Text(self.status),
            "type.id" => Value::Text(USER_TYPE_ID),
            "created" => Value::Time(self.created),
            "activated" => Value::Time(self.activated()?),
            "statusChanged" => Value::Time(self.status_changed),
            "lastUpdated" => Value::Time(self.last_updated),
            "profile.login" => Value::Text(&self.login),
            "profile.email" => Value::Text(&self.email),
            "profile.secondEmail" => Value::Text(self.second_email.as_deref()?),
            "profile.firstName" => Value::Text(self.first_name.as_deref()?),
            "profile.lastName" => Value::Text(self.last_name.as_deref()?),
            _ => return None,
        })
    }
}

/// The id of the default user type every emulated user has.
pub(crate) const USER_TYPE_ID: &str = "oty1emulatordefault0";

impl User {
    /// Users that never left STAGED have no activation time.
    pub(crate) fn activated(&self) -> Option<i64> {
        (self.status != "STAGED").then_some(self.created)
    }
}

impl Record for Group {
    fn value(&self, prop: &str) -> Option<Value<'_>> {
        Some(match prop {
            "id" => Value::Text(&self.id),
            "type" => Value::Text(self.group_type),
            "created" => Value::Time(self.created),
            "lastUpdated" => Value::Time(self.last_updated),
            "lastMembershipUpdated" => Value::Time(self.last_membership_updated),
            "profile.name" => Value::Text(&self.name),
            "profile.description" => Value::Text(self.description.as_deref()?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_okta_shaped_and_stable() {
        let id = okta_id("00u", "alice@example.com");
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("00u"));
        assert_eq!(id, okta_id("00u", "alice@example.com"));
        assert_ne!(id, okta_id("00u", "bob@example.com"));
    }

    #[test]
    fn times_format_like_okta() {
        assert_eq!(format_time(BASE_TIME_MS), "2020-01-01T00:00:00.000Z");
    }

    #[test]
    fn fixture_resolution_and_membership_changes() {
        let fixture = Fixture::from_yaml(
            r#"
users:
  - {login: a@x.com}
  - {login: b@x.com, status: suspended}
groups:
  - {name: G, members: [A@X.com, 1]}
roleAssignments:
  - {group: G, role: ORG_ADMIN}
"#,
        )
        .unwrap();
        let mut org = Org::from_fixture(&fixture).unwrap();
        let a = org.user_index("a@x.com").unwrap();
        let b = org.user_index("B@x.com").unwrap();
        assert_eq!(org.users[b as usize].status, "SUSPENDED");
        let g = org.group_index_by_name("G").unwrap();
        assert_eq!(org.groups[g as usize].members.len(), 2);
        assert_eq!(org.role_assignees().len(), 2);
        assert_eq!(org.roles_of_user(a).len(), 1);
        assert!(org.remove_member(g, a, &Actor::control(), 0));
        assert!(!org.remove_member(g, a, &Actor::control(), 0));
        assert!(org.roles_of_user(a).is_empty());
        assert!(org.add_member(g, a, &Actor::control(), 0));
        assert!(!org.add_member(g, a, &Actor::control(), 0));
        assert_eq!(org.groups_of(a), vec![g]);
        assert!(
            org.set_user_status(a, "BOGUS", &Actor::control(), 0)
                .is_err()
        );
        assert!(
            org.set_user_profile(a, "B@X.com", "a@y.org", &Actor::control(), 0)
                .is_err()
        );
        org.set_user_profile(a, "a@y.org", "a@y.org", &Actor::control(), 0)
            .unwrap();
        assert_eq!(org.user_index("A@y.org"), Some(a));
        assert_eq!(org.user_index("a@x.com"), None);
        assert_eq!(&*org.users[a as usize].email, "a@y.org");
    }

    #[test]
    fn bad_fixtures_are_refused() {
        for yaml in [
            "users: [{login: a@x.com}, {login: A@x.com}]",
            "groups: [{name: G, members: [nobody@x.com]}]",
            "groups: [{name: G, type: WEIRD}]",
            "users: [{login: a@x.com, status: NAPPING}]",
            "users: [{login: a@x.com}]\nroleAssignments: [{user: a@x.com}]",
            "users: [{login: a@x.com}]\nroleAssignments: [{user: a@x.com, role: CUSTOM}]",
        ] {
            let f = Fixture::from_yaml(yaml).unwrap();
            assert!(Org::from_fixture(&f).is_err(), "{yaml}");
        }
    }
}
