//! The sync engine: the Okta reads of one sync, streamed page by page into compact tables.
//!
//! Four reads run at once (they mostly draw on different rate-limit buckets): in-scope users,
//! in-scope groups, admin users with their role lists, and custom roles with their
//! permissions. As soon as users and groups are known, memberships are read the cheaper way
//! (per group or per user, see [`plan::choose_membership_plan`]) with bounded concurrency,
//! keeping only `(user, group)` index pairs between in-scope principals.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt, stream};

use super::plan::{self, FloorInputs, MembershipStrategy};
use super::progress::{Phase, Progress, ProgressUpdate};
use super::roles::{self, RoleFact};
use super::scope::{EmailDomains, GroupNameFilter};
use super::snapshot::{
    Grant, LogCursor, Snapshot, SnapshotCustomRole, SnapshotGroup, SnapshotRole, SnapshotUser,
    SyncMode, SyncStats,
};
use super::{Error, Result};
use crate::okta::{
    self, ClientStats, Group, GroupQuery, GroupType, OktaClient, RoleAssignment, User, UserQuery,
    UserStatus,
};

/// What a sync covers and how hard it may push.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Users are in scope by these email domains.
    pub email_domains: EmailDomains,
    /// Groups are in scope by this name filter (all groups without one).
    pub group_name_filter: Option<GroupNameFilter>,
    /// Per-group / per-user / per-admin reads in flight at once (the client also bounds
    /// concurrency and paces on rate limits; this only bounds how much work is queued).
    pub concurrency: usize,
}

/// Runs one sync: reads users, groups, memberships, roles and custom roles in scope and returns
/// the canonical snapshot. The client's counters are reported as the difference over this
/// sync (requests of other work sharing the client at the same time are included).
///
/// The future is `Send`, so the connector controller runs it inside its reconcile; dropping
/// it cancels the reads in flight.
pub async fn sync(
    client: &OktaClient,
    config: &SyncConfig,
    progress: &dyn Progress,
) -> Result<Snapshot> {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now();
    let before = client.stats();
    let reporter = Reporter {
        client,
        before: &before,
        progress,
    };
    let concurrency = config.concurrency.max(1);

    // Users, groups and the admin list first (mostly different buckets); memberships next;
    // role lists last, because the role plan counts groups without in-scope members.
    let principals = async {
        let (users, groups, admins) = futures::try_join!(
            read_users(client, &config.email_domains, &reporter),
            read_groups(client, config.group_name_filter.as_ref(), &reporter),
            read_admins(client),
        )?;
        let membership_plan = plan::choose_membership_plan(
            groups.iter().map(|g| g.member_count_hint()),
            users.len() as u64,
        );
        let pairs = read_memberships(
            client,
            &users,
            &groups,
            membership_plan.strategy,
            concurrency,
            &reporter,
        )
        .await?;
        let role_reads = plan_role_reads(&users, &groups, &admins, &pairs);
        let role_lists = read_role_lists(client, &role_reads, concurrency, &reporter).await?;
        Ok::<_, Error>((
            users,
            groups,
            membership_plan,
            pairs,
            role_reads,
            role_lists,
        ))
    };
    let ((users, groups, membership_plan, pairs, role_reads, role_lists), custom_roles) = futures::try_join!(
        principals,
        read_custom_roles(client, concurrency, &reporter)
    )?;

    let user_index: HashMap<&str, u32> = index_by_id(users.iter().map(|u| u.id.as_str()));
    let group_index: HashMap<&str, u32> = index_by_id(groups.iter().map(|g| g.group.id.as_str()));

    let mut role_grants = BTreeSet::new();
    let mut unusable = 0;
    for (holder, facts) in &role_lists {
        let (user_id, user_in_scope) = match holder {
            RoleHolder::User(id) => (id.as_str(), user_index.contains_key(id.as_str())),
            // A group's own list: its items are all `Holder::Group`, no user is involved.
            RoleHolder::Group(_) => ("", false),
        };
        unusable += roles::derive_role_grants(
            user_id,
            facts,
            user_in_scope,
            |g| group_index.contains_key(g),
            &mut role_grants,
        );
    }
    let mut grants: Vec<Grant> = Vec::with_capacity(pairs.len() + role_grants.len());
    grants.extend(pairs.iter().map(|&(u, g)| {
        Grant::membership(
            users[u as usize].id.clone(),
            groups[g as usize].group.id.clone(),
        )
    }));
    drop(pairs);
    grants.extend(role_grants);

    let mut notes = Vec::new();
    if unusable > 0 {
        notes.push(format!(
            "{unusable} custom-role assignments without a role id were skipped."
        ));
    }
    let floor_inputs = FloorInputs {
        users: users.len() as u64,
        groups: groups.len() as u64,
        membership_requests: membership_plan.requests(),
        membership_strategy: membership_plan.strategy,
        admins: role_reads.counts.admins,
        role_requests: role_reads.plan.requests(),
        custom_roles: custom_roles.len() as u64,
    };
    let spent = client.stats().since(&before);
    let mut snapshot = Snapshot {
        domain: client.domain().to_string(),
        synced_at: jiff::Timestamp::now().to_string(),
        email_domains: config.email_domains.as_slice().to_vec(),
        group_name_filter: config
            .group_name_filter
            .as_ref()
            .map(|f| f.as_str().to_string()),
        users,
        groups: groups.into_iter().map(|g| g.group).collect(),
        roles: okta::STANDARD_ROLE_TYPES
            .iter()
            .map(|t| SnapshotRole {
                role_type: (*t).to_string(),
                label: okta::standard_role_label(t),
            })
            .collect(),
        custom_roles,
        grants,
        notes,
        changes: None,
        // Events from the sync's start on may or may not be in what it read; the next
        // incremental sync applies them again, which is harmless (see `incremental`).
        log_cursor: Some(LogCursor {
            through: started_at.to_string(),
            applied: Vec::new(),
        }),
        stats: SyncStats {
            requests: spent.requests,
            requests_by_endpoint: spent.requests_by_endpoint.clone(),
            rate_limited: spent.rate_limited,
            retries: spent.retries,
            rate_limit_wait_seconds: spent.rate_limit_wait.as_secs_f64(),
            duration_seconds: started.elapsed().as_secs_f64(),
            membership_plan: Some(membership_plan),
            role_plan: Some(role_reads.plan),
            mode: SyncMode::Full,
            full_sync_reason: None,
            log_events: 0,
            request_floor: plan::request_floor(&floor_inputs),
            floor_inputs,
        },
    };
    snapshot.canonicalize();
    Ok(snapshot)
}

/// Sends progress with the client's counters since the sync began.
pub(super) struct Reporter<'a> {
    pub(super) client: &'a OktaClient,
    pub(super) before: &'a ClientStats,
    pub(super) progress: &'a dyn Progress,
}

impl Reporter<'_> {
    pub(super) fn report(&self, phase: Phase, items: u64, done: bool) {
        let spent = self.client.stats().since(self.before);
        self.progress.report(&ProgressUpdate {
            phase,
            items,
            requests: spent.requests,
            rate_limited: spent.rate_limited,
            rate_limit_wait: spent.rate_limit_wait,
            done,
        });
    }
}

fn index_by_id<'a>(ids: impl Iterator<Item = &'a str>) -> HashMap<&'a str, u32> {
    ids.enumerate()
        .map(|(i, id)| (id, table_index(i)))
        .collect()
}

/// A row's position in the user or group table, in the compact form pairs use.
fn table_index(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 4 billion items")
}

/// An in-scope group in the sorted table, with Okta's member count if it sent one.
pub(super) struct GroupRow {
    pub(super) group: SnapshotGroup,
    pub(super) count_known: bool,
}

impl GroupRow {
    /// The member count for planning; an unknown count is planned as one page.
    fn member_count_hint(&self) -> u64 {
        if self.count_known {
            self.group.member_count
        } else {
            1
        }
    }
}

async fn read_users(
    client: &OktaClient,
    domains: &EmailDomains,
    reporter: &Reporter<'_>,
) -> Result<Vec<SnapshotUser>> {
    let mut rows = Vec::new();
    for search in domains.user_search_expressions() {
        let query = UserQuery {
            search: Some(search),
            limit: Some(plan::USERS_PAGE),
            ..UserQuery::default()
        };
        let mut pages = client.list_users(&query);
        while let Some(page) = pages.try_next().await? {
            rows.extend(
                page.into_iter()
                    .filter(|u| domains.user_in_scope(&u.profile.login, u.profile.email.as_deref()))
                    .map(snapshot_user),
            );
            reporter.report(Phase::Users, rows.len() as u64, false);
        }
    }
    // Several searches can return the same user; ids are unique, so sort + dedup merges them.
    rows.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    rows.dedup_by(|a, b| a.id == b.id);
    reporter.report(Phase::Users, rows.len() as u64, true);
    Ok(rows)
}

pub(super) fn snapshot_user(u: User) -> SnapshotUser {
    let p = u.profile;
    let display_name = p
        .display_name
        .filter(|d| !d.trim().is_empty())
        .or_else(|| {
            let full = [p.first_name.as_deref(), p.last_name.as_deref()]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            (!full.is_empty()).then_some(full)
        })
        .unwrap_or_else(|| p.login.clone());
    SnapshotUser {
        id: u.id,
        disabled: u.status.is_disabled(),
        status: user_status_name(&u.status).to_string(),
        login: p.login,
        email: p.email,
        display_name,
    }
}

fn user_status_name(s: &UserStatus) -> &'static str {
    match s {
        UserStatus::Staged => "STAGED",
        UserStatus::Provisioned => "PROVISIONED",
        UserStatus::Active => "ACTIVE",
        UserStatus::Recovery => "RECOVERY",
        UserStatus::PasswordExpired => "PASSWORD_EXPIRED",
        UserStatus::LockedOut => "LOCKED_OUT",
        UserStatus::Suspended => "SUSPENDED",
        UserStatus::Deprovisioned => "DEPROVISIONED",
        UserStatus::Unknown => "UNKNOWN",
    }
}

fn group_type_name(t: &GroupType) -> &'static str {
    match t {
        GroupType::OktaGroup => "OKTA_GROUP",
        GroupType::AppGroup => "APP_GROUP",
        GroupType::BuiltIn => "BUILT_IN",
        GroupType::Unknown => "UNKNOWN",
    }
}

async fn read_groups(
    client: &OktaClient,
    filter: Option<&GroupNameFilter>,
    reporter: &Reporter<'_>,
) -> Result<Vec<GroupRow>> {
    let query = GroupQuery {
        search: filter.map(GroupNameFilter::search_expression),
        limit: Some(plan::GROUPS_PAGE),
        expand_stats: true,
        ..GroupQuery::default()
    };
    let mut rows = Vec::new();
    let mut pages = client.list_groups(&query);
    while let Some(page) = pages.try_next().await? {
        rows.extend(
            page.into_iter()
                // `co` also searches descriptions; the exact rule is on the name only.
                .filter(|g| filter.is_none_or(|f| f.matches(&g.profile.name)))
                .map(group_row),
        );
        reporter.report(Phase::Groups, rows.len() as u64, false);
    }
    rows.sort_unstable_by(|a, b| a.group.id.cmp(&b.group.id));
    rows.dedup_by(|a, b| a.group.id == b.group.id);
    reporter.report(Phase::Groups, rows.len() as u64, true);
    Ok(rows)
}

pub(super) fn group_row(g: Group) -> GroupRow {
    let count = g.users_count();
    GroupRow {
        group: SnapshotGroup {
            group_type: group_type_name(&g.group_type).to_string(),
            id: g.id,
            name: g.profile.name,
            member_count: count.unwrap_or(0),
        },
        count_known: count.is_some(),
    }
}

/// Ids of the users `/iam/assignees/users` lists (every user holding an admin role, directly
/// or through a group), sorted.
async fn read_admins(client: &OktaClient) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut pages = client.list_role_assignees(Some(plan::ASSIGNEES_PAGE));
    while let Some(page) = pages.try_next().await? {
        ids.extend(page.into_iter().map(|a| a.id));
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Whose role list is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RoleHolder {
    /// `GET /users/{id}/roles`.
    User(String),
    /// `GET /groups/{id}/roles`.
    Group(String),
}

/// The role plan with the lists it reads.
struct RoleReads {
    counts: plan::RoleCounts,
    plan: plan::RolePlan,
    lists: Vec<RoleHolder>,
}

/// Decides which role lists to read (see [`plan::RoleStrategy`]) from the in-scope users and
/// groups, the admin ids and the in-scope membership pairs.
fn plan_role_reads(
    users: &[SnapshotUser],
    groups: &[GroupRow],
    admins: &[String],
    pairs: &[(u32, u32)],
) -> RoleReads {
    let user_ids: std::collections::HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let mut with_in_scope_members = vec![false; groups.len()];
    for &(_, g) in pairs {
        with_in_scope_members[g as usize] = true;
    }
    let without_in_scope_members: Vec<&GroupRow> = groups
        .iter()
        .zip(&with_in_scope_members)
        .filter(|(_, has)| !**has)
        .map(|(g, _)| g)
        .collect();
    // An unknown count may hide an empty group, so it is read too.
    let without_members: Vec<&GroupRow> = groups
        .iter()
        .filter(|g| !g.count_known || g.group.member_count == 0)
        .collect();
    let admins_in_scope: Vec<&String> = admins
        .iter()
        .filter(|a| user_ids.contains(a.as_str()))
        .collect();
    let counts = plan::RoleCounts {
        admins: admins.len() as u64,
        admins_in_scope: admins_in_scope.len() as u64,
        groups_without_in_scope_members: without_in_scope_members.len() as u64,
        groups_without_members: without_members.len() as u64,
    };
    let plan = plan::choose_role_plan(&counts);
    let (admin_lists, group_lists): (Vec<&String>, Vec<&GroupRow>) = match plan.strategy {
        plan::RoleStrategy::GroupLists => (admins_in_scope, without_in_scope_members),
        plan::RoleStrategy::AssigneeLists => (admins.iter().collect(), without_members),
    };
    let lists = admin_lists
        .into_iter()
        .map(|id| RoleHolder::User(id.clone()))
        .chain(
            group_lists
                .into_iter()
                .map(|g| RoleHolder::Group(g.group.id.clone())),
        )
        .collect();
    RoleReads {
        counts,
        plan,
        lists,
    }
}

/// Reads the planned role lists, reduced to facts; a group's own list makes every item a
/// grant of that group.
async fn read_role_lists(
    client: &OktaClient,
    reads: &RoleReads,
    concurrency: usize,
    reporter: &Reporter<'_>,
) -> Result<Vec<(RoleHolder, Vec<RoleFact>)>> {
    let done = AtomicU64::new(0);
    let out: Vec<(RoleHolder, Vec<RoleFact>)> = stream::iter(reads.lists.iter().cloned())
        .map(|holder| {
            let done = &done;
            async move {
                let facts = match &holder {
                    RoleHolder::User(id) => client
                        .list_user_roles(id)
                        .await?
                        .into_iter()
                        .map(role_fact)
                        .collect(),
                    RoleHolder::Group(id) => client
                        .list_group_roles(id)
                        .await?
                        .into_iter()
                        .map(|a| RoleFact {
                            holder: roles::Holder::Group(id.clone()),
                            ..role_fact(a)
                        })
                        .collect(),
                };
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                reporter.report(Phase::Roles, n, false);
                Ok::<_, Error>((holder, facts))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    reporter.report(Phase::Roles, out.len() as u64, true);
    Ok(out)
}

pub(super) fn role_fact(a: RoleAssignment) -> RoleFact {
    let holder = RoleFact::holder_from(a.assignment_type.as_deref(), a.assignee_group_id());
    RoleFact {
        role_type: a.role_type,
        custom_role_id: a.role,
        resource_set: a.resource_set,
        holder,
    }
}

pub(super) async fn read_custom_roles(
    client: &OktaClient,
    concurrency: usize,
    reporter: &Reporter<'_>,
) -> Result<Vec<SnapshotCustomRole>> {
    let mut listed = Vec::new();
    let mut pages = client.list_custom_roles();
    while let Some(page) = pages.try_next().await? {
        listed.extend(page);
    }
    let out: Vec<SnapshotCustomRole> = stream::iter(listed)
        .map(|role| async move {
            let permissions: Vec<Vec<okta::Permission>> = client
                .list_custom_role_permissions(&role.id)
                .try_collect()
                .await?;
            Ok::<_, Error>(SnapshotCustomRole {
                id: role.id,
                label: role.label,
                permissions: permissions.into_iter().flatten().map(|p| p.label).collect(),
            })
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    reporter.report(Phase::CustomRoles, out.len() as u64, true);
    Ok(out)
}

/// In-scope `(user, group)` index pairs, read the way `strategy` says.
async fn read_memberships(
    client: &OktaClient,
    users: &[SnapshotUser],
    groups: &[GroupRow],
    strategy: MembershipStrategy,
    concurrency: usize,
    reporter: &Reporter<'_>,
) -> Result<Vec<(u32, u32)>> {
    match strategy {
        // Members of each in-scope group that has members, keeping in-scope users only.
        MembershipStrategy::PerGroup => {
            let user_index = index_by_id(users.iter().map(|u| u.id.as_str()));
            let with_members: Vec<u32> = (0..groups.len())
                .filter(|&gi| groups[gi].member_count_hint() > 0)
                .map(table_index)
                .collect();
            read_pairs(
                with_members,
                |gi| {
                    client
                        .list_group_members(&groups[gi as usize].group.id, Some(plan::MEMBERS_PAGE))
                },
                |gi, member: &User| user_index.get(member.id.as_str()).map(|&ui| (ui, gi)),
                concurrency,
                reporter,
            )
            .await
        }
        // Groups of each in-scope user, keeping in-scope groups only.
        MembershipStrategy::PerUser => {
            let group_index = index_by_id(groups.iter().map(|g| g.group.id.as_str()));
            read_pairs(
                (0..users.len()).map(table_index).collect(),
                |ui| client.list_user_groups(&users[ui as usize].id),
                |ui, group: &Group| group_index.get(group.id.as_str()).map(|&gi| (ui, gi)),
                concurrency,
                reporter,
            )
            .await
        }
    }
}

/// Lists each owner's (a group's or a user's) pages with bounded concurrency and keeps the
/// pairs `pair` makes of the listed items.
///
/// Owners are passed as plain indices, not borrowed rows: a stream closure taking a borrowed
/// item is generic over that borrow's lifetime, which keeps the sync future from being proven
/// `Send` (rust-lang/rust#64552) and so from running directly in the controller.
async fn read_pairs<T>(
    owners: Vec<u32>,
    list: impl Fn(u32) -> okta::Pages<T>,
    pair: impl Fn(u32, &T) -> Option<(u32, u32)>,
    concurrency: usize,
    reporter: &Reporter<'_>,
) -> Result<Vec<(u32, u32)>> {
    let found = AtomicU64::new(0);
    let (list, pair, found) = (&list, &pair, &found);
    let per_owner: Vec<Vec<(u32, u32)>> = stream::iter(owners)
        .map(|owner| async move {
            let mut pairs = Vec::new();
            let mut pages = list(owner);
            while let Some(page) = pages.try_next().await? {
                let before = pairs.len();
                pairs.extend(page.iter().filter_map(|item| pair(owner, item)));
                let added = (pairs.len() - before) as u64;
                // fetch_add returns the count before this page: report the count after it.
                let n = found.fetch_add(added, Ordering::Relaxed) + added;
                reporter.report(Phase::Memberships, n, false);
            }
            Ok::<_, Error>(pairs)
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    Ok(finish_pairs(per_owner, reporter))
}

/// Flattens per-task pairs into one deduplicated list (a page boundary can repeat an item
/// when the org changes during the sync).
fn finish_pairs(parts: Vec<Vec<(u32, u32)>>, reporter: &Reporter<'_>) -> Vec<(u32, u32)> {
    let mut pairs: Vec<(u32, u32)> = parts.into_iter().flatten().collect();
    pairs.sort_unstable();
    pairs.dedup();
    reporter.report(Phase::Memberships, pairs.len() as u64, true);
    pairs
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::okta::{ApiToken, ClientOptions, DomainPolicy, OrgDomain, SswsAuth};

    #[derive(Default)]
    struct Recording(Mutex<Vec<ProgressUpdate>>);

    impl Progress for Recording {
        fn report(&self, update: &ProgressUpdate) {
            self.0.lock().unwrap().push(update.clone());
        }
    }

    #[tokio::test]
    async fn membership_progress_counts_each_page_when_it_arrives() {
        // No request is made: the pages come from memory, the client only supplies counters.
        let domain = OrgDomain::parse("acme.okta.com", &DomainPolicy::default()).unwrap();
        let auth = Arc::new(SswsAuth::new(ApiToken::new("unused".into())));
        let client = OktaClient::new(domain, auth, ClientOptions::default()).unwrap();
        let before = client.stats();
        let recording = Recording::default();
        let reporter = Reporter {
            client: &client,
            before: &before,
            progress: &recording,
        };
        // Owner 0 has pages of 2 and 1 members, owner 1 pages of 2 and 1; one owner at a
        // time, so the order is fixed.
        let list = |owner: u32| -> okta::Pages<u32> {
            let base = owner * 10;
            stream::iter([Ok(vec![base, base + 1]), Ok(vec![base + 2])]).boxed()
        };
        let pairs = read_pairs(vec![0, 1], list, |o, m| Some((*m, o)), 1, &reporter)
            .await
            .unwrap();
        assert_eq!(pairs.len(), 6);
        let updates = recording.0.into_inner().unwrap();
        let items: Vec<(u64, bool)> = updates.iter().map(|u| (u.items, u.done)).collect();
        assert_eq!(
            items,
            [(2, false), (3, false), (5, false), (6, false), (6, true)]
        );
        assert!(updates.iter().all(|u| u.phase == Phase::Memberships));
    }
}
