//! Incremental sync: the previous snapshot with the changes the System Log names applied,
//! reaching the snapshot a full sync would (tests compare the two).
//!
//! What each event leads to ([`plan_from_log`], pure):
//! - `group.user_membership.add` / `.remove`: the pair is added or removed, in log order
//!   (replaying an event already reflected is a no-op, so overlapping reads are safe).
//! - `user.lifecycle.*`, `user.account.update_profile`, lock and password events: the user is
//!   read again (one `search=lastUpdated gt` list for all of them); a user entering scope gets
//!   their groups and roles read, one leaving it loses every grant; `user.lifecycle.delete.*`
//!   removes the user.
//! - `group.lifecycle.*`, `group.profile.update` and membership changes: the groups changed
//!   since the cursor are read again (one `lastUpdated`/`lastMembershipUpdated` search, with
//!   member counts); a group entering scope gets its members and roles read, one leaving it
//!   loses every grant.
//! - `user.account.privilege.grant/revoke`, `group.privilege.grant/revoke`: that principal's
//!   role list is read again. `iam.*` role and resource-set changes: custom roles are read
//!   again and every in-scope admin's and group's role list is rebuilt by a full sync.
//!
//! A full sync is done instead when the log cannot be trusted: no cursor, a cursor older than
//! Okta's 90-day retention, more events than the limit, or an event type that could change
//! scope and is not understood.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use futures::TryStreamExt;

use super::changes::{self, Attribution, ChangeKey};
use super::engine::{self, Reporter};
use super::plan;
use super::progress::{Phase, Progress};
use super::roles::{self, Holder, RoleFact};
use super::snapshot::{
    Grant, GrantKind, LogCursor, PrincipalType, Snapshot, SnapshotGroup, SyncMode,
};
use super::{Result, engine::SyncConfig};
use crate::okta::{GroupQuery, LogEvent, LogQuery, OktaClient, UserQuery};

/// Events read again before the cursor, for the log's few seconds of lag.
pub const OVERLAP: std::time::Duration = std::time::Duration::from_secs(60);
/// Okta keeps the System Log for 90 days.
pub const RETENTION: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);
/// Events per log page (Okta's maximum).
pub const LOG_PAGE: u32 = 1000;

/// Why a full sync was done instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fallback {
    /// The previous snapshot has no log cursor (or none was given).
    #[error("no previous snapshot with a System Log cursor")]
    NoCursor,
    /// The previous snapshot is of another org or scope.
    #[error("the previous snapshot is of another org or scope")]
    OtherScope,
    /// The cursor is older than the log's retention: events may be gone.
    #[error("the System Log cursor {0} is older than the log's 90-day retention")]
    TooOld(String),
    /// More events than an incremental sync applies.
    #[error("more than {0} System Log events since the last sync")]
    TooManyEvents(usize),
    /// An event type that could change scope and is not understood.
    #[error("System Log event type {0:?} is not understood and could change what is in scope")]
    UnknownEvent(String),
    /// Custom roles or resource sets changed.
    #[error("custom roles or resource sets changed ({0})")]
    CustomRolesChanged(String),
    /// The cursor is not a time.
    #[error("the System Log cursor {0:?} is not a time")]
    BadCursor(String),
}

/// What the log says must be applied or read again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPlan {
    /// `(added, user id, group id)` in log order.
    pub memberships: Vec<(bool, String, String)>,
    /// Users whose rows must be read again.
    pub users: BTreeSet<String>,
    /// Users deleted from the org.
    pub deleted_users: BTreeSet<String>,
    /// Whether groups changed (created, renamed, deleted, memberships changed).
    pub groups_changed: bool,
    /// Groups deleted from the org.
    pub deleted_groups: BTreeSet<String>,
    /// Users whose role lists must be read again.
    pub user_roles: BTreeSet<String>,
    /// Groups whose role lists must be read again.
    pub group_roles: BTreeSet<String>,
    /// Who made each change and when, by event target.
    pub attribution: HashMap<(String, Option<String>), Attribution>,
}

/// Event types that never change users, groups, memberships or roles (sessions, sign-ins,
/// factors). Other `user.`/`group.`/`iam.` types that are not handled below make the sync
/// fall back to a full one.
const IGNORED_PREFIXES: [&str; 3] = ["user.session.", "user.authentication.", "user.mfa."];

/// `user.account.*` types that can change a user's row (profile, or a status such as
/// `LOCKED_OUT`, `PASSWORD_EXPIRED`, `RECOVERY`): the user is read again.
const USER_ACCOUNT_CHANGES: [&str; 6] = [
    "user.account.update_profile",
    "user.account.lock",
    "user.account.unlock",
    "user.account.expire_password",
    "user.account.reset_password",
    "user.account.update_password",
];

fn target<'a>(e: &'a LogEvent, kind: &str) -> Option<&'a str> {
    e.target
        .iter()
        .find(|t| t.party_type == kind)
        .map(|t| t.id.as_str())
}

/// Reads `events` (oldest first) into what must change. Events in `seen` (already applied)
/// and failed ones are skipped.
pub fn plan_from_log(
    events: &[LogEvent],
    seen: &HashSet<&str>,
    max_events: usize,
) -> Result<LogPlan, Fallback> {
    if events.len() > max_events {
        return Err(Fallback::TooManyEvents(max_events));
    }
    let mut plan = LogPlan::default();
    for e in events {
        if seen.contains(e.uuid.as_str()) {
            continue;
        }
        let ok = e
            .outcome
            .as_ref()
            .and_then(|o| o.result.as_deref())
            .is_none_or(|r| r == "SUCCESS");
        if !ok {
            continue;
        }
        let by = Attribution {
            actor: e
                .actor
                .as_ref()
                .and_then(|a| a.alternate_id.clone())
                .unwrap_or_else(|| "unknown".into()),
            published: e.published.clone(),
        };
        let t = e.event_type.as_str();
        let user = target(e, "User").map(str::to_owned);
        let group = target(e, "UserGroup").map(str::to_owned);
        let unknown = || Err(Fallback::UnknownEvent(t.to_owned()));
        match t {
            "group.user_membership.add" | "group.user_membership.remove" => {
                let (Some(u), Some(g)) = (user, group) else {
                    return unknown();
                };
                plan.attribution
                    .insert((u.clone(), Some(g.clone())), by.clone());
                plan.memberships.push((t.ends_with(".add"), u, g));
                plan.groups_changed = true;
            }
            "user.account.privilege.grant" | "user.account.privilege.revoke" => {
                let Some(u) = user else { return unknown() };
                plan.user_roles.insert(u);
            }
            "group.privilege.grant" | "group.privilege.revoke" => {
                let Some(g) = group else { return unknown() };
                plan.group_roles.insert(g);
            }
            _ if t.starts_with("user.lifecycle.delete") => {
                let Some(u) = user else { return unknown() };
                plan.attribution.insert((u.clone(), None), by);
                plan.deleted_users.insert(u);
            }
            _ if IGNORED_PREFIXES.iter().any(|p| t.starts_with(p)) => {}
            _ if t.starts_with("user.lifecycle.")
                || USER_ACCOUNT_CHANGES.iter().any(|p| t.starts_with(p)) =>
            {
                let Some(u) = user else { return unknown() };
                plan.attribution.insert((u.clone(), None), by);
                plan.users.insert(u);
            }
            "group.lifecycle.delete" => {
                let Some(g) = group else { return unknown() };
                plan.attribution.insert((g.clone(), None), by);
                plan.deleted_groups.insert(g);
                plan.groups_changed = true;
            }
            "group.lifecycle.create" | "group.profile.update" => {
                if let Some(g) = group {
                    plan.attribution.insert((g, None), by);
                }
                plan.groups_changed = true;
            }
            _ if t.starts_with("iam.") => return Err(Fallback::CustomRolesChanged(t.to_owned())),
            _ if t.starts_with("user.") || t.starts_with("group.") => return unknown(),
            // Other families (apps, policies, system) do not change this snapshot.
            _ => {}
        }
    }
    Ok(plan)
}

/// Runs an incremental sync from `previous`, or says why a full one is needed. Requests are
/// the log pages, one search of changed users, one of changed groups, and reads for what
/// entered scope or changed roles.
pub async fn sync_incremental(
    client: &OktaClient,
    config: &SyncConfig,
    previous: &Snapshot,
    max_events: usize,
    progress: &dyn Progress,
) -> Result<Result<Snapshot, Fallback>> {
    let started = Instant::now();
    let before = client.stats();
    let reporter = Reporter {
        client,
        before: &before,
        progress,
    };
    let Some(cursor) = &previous.log_cursor else {
        return Ok(Err(Fallback::NoCursor));
    };
    let same_scope = previous.domain == client.domain().to_string()
        && previous.email_domains == config.email_domains.as_slice()
        && previous.group_name_filter.as_deref()
            == config.group_name_filter.as_ref().map(|f| f.as_str());
    if !same_scope {
        return Ok(Err(Fallback::OtherScope));
    }
    let Ok(through) = cursor.through.parse::<jiff::Timestamp>() else {
        return Ok(Err(Fallback::BadCursor(cursor.through.clone())));
    };
    // Okta's timestamps have milliseconds: the bound is rounded up to the next one, so events
    // published in the current millisecond are included (`until` is exclusive).
    let now = ceil_ms(jiff::Timestamp::now());
    let span = |d: std::time::Duration| jiff::SignedDuration::try_from(d).unwrap_or_default();
    if now.duration_since(through) > span(RETENTION) {
        return Ok(Err(Fallback::TooOld(cursor.through.clone())));
    }
    let since = through - span(OVERLAP);
    let query = LogQuery {
        since: Some(okta_time(since)),
        until: Some(okta_time(now)),
        filter: None,
        limit: Some(LOG_PAGE),
    };
    let mut events = Vec::new();
    let mut pages = client.list_log_events(&query);
    while let Some(page) = pages.try_next().await? {
        events.extend(page);
        reporter.report(Phase::Log, events.len() as u64, false);
        if events.len() > max_events {
            return Ok(Err(Fallback::TooManyEvents(max_events)));
        }
    }
    let seen: HashSet<&str> = cursor.applied.iter().map(String::as_str).collect();
    let plan = match plan_from_log(&events, &seen, max_events) {
        Ok(p) => p,
        Err(f) => return Ok(Err(f)),
    };
    let mut next = previous.clone();
    next.changes = None;
    apply(client, config, &mut next, &plan, since, &reporter).await?;

    // Events published in the overlap before the new cursor are read again next time: their
    // uuids say they were applied.
    let keep_after = now - span(OVERLAP);
    let mut applied: Vec<String> = events
        .iter()
        .filter(|e| {
            e.published
                .parse::<jiff::Timestamp>()
                .is_ok_and(|p| p >= keep_after)
        })
        .map(|e| e.uuid.clone())
        .collect();
    applied.sort();
    applied.dedup();
    next.log_cursor = Some(LogCursor {
        through: okta_time(now),
        applied,
    });
    next.synced_at = jiff::Timestamp::now().to_string();
    next.notes.clear();
    next.canonicalize();
    next.changes = Some(changes::diff(previous.access(), next.access(), &|k| {
        attribution(&plan, k)
    }));
    let spent = client.stats().since(&before);
    next.stats = super::snapshot::SyncStats {
        requests: spent.requests,
        requests_by_endpoint: spent.requests_by_endpoint.clone(),
        rate_limited: spent.rate_limited,
        retries: spent.retries,
        rate_limit_wait_seconds: spent.rate_limit_wait.as_secs_f64(),
        duration_seconds: started.elapsed().as_secs_f64(),
        mode: SyncMode::Incremental,
        log_events: events.len() as u64,
        ..Default::default()
    };
    Ok(Ok(next))
}

/// `t` as Okta writes times: UTC with milliseconds.
fn okta_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `t` rounded up to a whole millisecond.
fn ceil_ms(t: jiff::Timestamp) -> jiff::Timestamp {
    let ms = t.as_millisecond() + i64::from(t.subsec_nanosecond() % 1_000_000 != 0);
    jiff::Timestamp::from_millisecond(ms).unwrap_or(t)
}

/// Who made a change, from the events that named its principal.
fn attribution(plan: &LogPlan, key: ChangeKey<'_>) -> Option<Attribution> {
    let look = |a: &str, b: Option<&str>| {
        plan.attribution
            .get(&(a.to_owned(), b.map(str::to_owned)))
            .cloned()
    };
    match key {
        ChangeKey::User { id, .. } | ChangeKey::Group { id, .. } => look(id, None),
        ChangeKey::Grant { grant, .. } if grant.kind == GrantKind::GroupMembership => {
            look(&grant.principal_id, Some(&grant.target_id))
                .or_else(|| look(&grant.principal_id, None))
        }
        ChangeKey::Grant { grant, .. } => look(&grant.principal_id, None),
    }
}

/// Applies `plan` to `s` with the reads it needs.
async fn apply(
    client: &OktaClient,
    config: &SyncConfig,
    s: &mut Snapshot,
    plan: &LogPlan,
    since: jiff::Timestamp,
    reporter: &Reporter<'_>,
) -> Result<()> {
    let since_text = format!("\"{}\"", okta_time(since));
    let mut grants: BTreeSet<Grant> = std::mem::take(&mut s.grants).into_iter().collect();
    let mut users: BTreeMap<String, super::snapshot::SnapshotUser> = std::mem::take(&mut s.users)
        .into_iter()
        .map(|u| (u.id.clone(), u))
        .collect();
    let mut groups: BTreeMap<String, SnapshotGroup> = std::mem::take(&mut s.groups)
        .into_iter()
        .map(|g| (g.id.clone(), g))
        .collect();
    let mut new_users = Vec::new();
    let mut new_groups = Vec::new();
    let mut user_roles = plan.user_roles.clone();
    let mut group_roles = plan.group_roles.clone();

    // Users: one search of everyone changed since the cursor (deprovisioned included).
    if !plan.users.is_empty() {
        let query = UserQuery {
            search: Some(format!("lastUpdated gt {since_text}")),
            limit: Some(plan::USERS_PAGE),
            ..UserQuery::default()
        };
        let mut pages = client.list_users(&query);
        while let Some(page) = pages.try_next().await? {
            for u in page {
                let in_scope = config
                    .email_domains
                    .user_in_scope(&u.profile.login, u.profile.email.as_deref());
                let row = engine::snapshot_user(u);
                if in_scope {
                    if !users.contains_key(&row.id) {
                        new_users.push(row.id.clone());
                    }
                    users.insert(row.id.clone(), row);
                } else if users.remove(&row.id).is_some() {
                    drop_principal(&mut grants, PrincipalType::User, &row.id);
                }
            }
        }
    }
    for id in &plan.deleted_users {
        if users.remove(id).is_some() {
            drop_principal(&mut grants, PrincipalType::User, id);
        }
    }

    // Groups: one search of every group changed since the cursor, member counts included.
    if plan.groups_changed {
        let query = GroupQuery {
            search: Some(format!(
                "lastUpdated gt {since_text} or lastMembershipUpdated gt {since_text}"
            )),
            limit: Some(plan::GROUPS_PAGE),
            expand_stats: true,
            ..GroupQuery::default()
        };
        let mut pages = client.list_groups(&query);
        while let Some(page) = pages.try_next().await? {
            for g in page {
                let in_scope = config
                    .group_name_filter
                    .as_ref()
                    .is_none_or(|f| f.matches(&g.profile.name));
                let row = engine::group_row(g);
                if in_scope {
                    if !groups.contains_key(&row.group.id) {
                        new_groups.push(row.group.id.clone());
                    }
                    groups.insert(row.group.id.clone(), row.group);
                } else if groups.remove(&row.group.id).is_some() {
                    drop_group(&mut grants, &row.group.id);
                }
            }
        }
    }
    for id in &plan.deleted_groups {
        if groups.remove(id).is_some() {
            drop_group(&mut grants, id);
        }
    }

    // Memberships in log order, between principals in scope (new ones are read below).
    for (added, u, g) in &plan.memberships {
        if !users.contains_key(u) || !groups.contains_key(g) {
            continue;
        }
        let grant = Grant::membership(u.clone(), g.clone());
        if *added {
            grants.insert(grant);
        } else {
            grants.remove(&grant);
        }
    }

    // New users: their groups and roles; new groups: their members and roles.
    for id in &new_users {
        let mut pages = client.list_user_groups(id);
        while let Some(page) = pages.try_next().await? {
            for g in page.into_iter().filter(|g| groups.contains_key(&g.id)) {
                grants.insert(Grant::membership(id.clone(), g.id));
            }
        }
        user_roles.insert(id.clone());
    }
    for id in &new_groups {
        let mut pages = client.list_group_members(id, Some(plan::MEMBERS_PAGE));
        while let Some(page) = pages.try_next().await? {
            for u in page.into_iter().filter(|u| users.contains_key(&u.id)) {
                grants.insert(Grant::membership(u.id, id.clone()));
            }
        }
        group_roles.insert(id.clone());
    }
    reporter.report(Phase::Memberships, grants.len() as u64, true);

    // Role lists of principals whose roles changed or who entered scope.
    let group_in_scope = |g: &str| groups.contains_key(g);
    for id in user_roles.iter().filter(|u| users.contains_key(*u)) {
        let facts: Vec<RoleFact> = client
            .list_user_roles(id)
            .await?
            .into_iter()
            .map(engine::role_fact)
            .collect();
        grants.retain(|g| {
            !(g.principal_type == PrincipalType::User
                && &g.principal_id == id
                && g.kind != GrantKind::GroupMembership)
        });
        let mut out = BTreeSet::new();
        // Only the user's own grants: group-held ones come from the group's list.
        let own: Vec<RoleFact> = facts
            .into_iter()
            .filter(|f| f.holder == Holder::User)
            .collect();
        roles::derive_role_grants(id, &own, true, group_in_scope, &mut out);
        grants.extend(out);
    }
    for id in group_roles.iter().filter(|g| groups.contains_key(*g)) {
        let facts: Vec<RoleFact> = client
            .list_group_roles(id)
            .await?
            .into_iter()
            .map(|a| RoleFact {
                holder: Holder::Group(id.clone()),
                ..engine::role_fact(a)
            })
            .collect();
        grants.retain(|g| {
            !(g.principal_type == PrincipalType::Group
                && &g.principal_id == id
                && g.kind != GrantKind::GroupMembership)
        });
        let mut out = BTreeSet::new();
        roles::derive_role_grants("", &facts, false, group_in_scope, &mut out);
        grants.extend(out);
    }
    reporter.report(Phase::Roles, grants.len() as u64, true);

    s.users = users.into_values().collect();
    s.groups = groups.into_values().collect();
    s.grants = grants.into_iter().collect();
    Ok(())
}

/// Removes every grant held by the principal.
fn drop_principal(grants: &mut BTreeSet<Grant>, kind: PrincipalType, id: &str) {
    grants.retain(|g| !(g.principal_type == kind && g.principal_id == id));
}

/// Removes every grant held by or targeting the group.
fn drop_group(grants: &mut BTreeSet<Grant>, id: &str) {
    grants.retain(|g| {
        !(g.principal_type == PrincipalType::Group && g.principal_id == id
            || g.kind == GrantKind::GroupMembership && g.target_id == id)
    });
}

/// An incremental sync when `previous` allows one and `full_due` is false, otherwise (or when
/// the log cannot be trusted) a full one, with the reason in `stats.fullSyncReason`. The
/// snapshot's `changes` are against `previous` either way.
pub async fn sync_auto(
    client: &OktaClient,
    config: &SyncConfig,
    previous: Option<&Snapshot>,
    full_due: Option<&str>,
    max_events: usize,
    progress: &dyn Progress,
) -> Result<Snapshot> {
    let reason = match (previous, full_due) {
        (_, Some(why)) => why.to_owned(),
        (None, None) => Fallback::NoCursor.to_string(),
        (Some(prev), None) => {
            match sync_incremental(client, config, prev, max_events, progress).await? {
                Ok(s) => return Ok(s),
                Err(f) => f.to_string(),
            }
        }
    };
    let mut s = engine::sync(client, config, progress).await?;
    s.stats.full_sync_reason = Some(reason);
    if let Some(prev) = previous.filter(|p| p.same_scope(&s)) {
        s.changes = Some(changes::diff(prev.access(), s.access(), &|_| None));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::okta::{LogOutcome, LogParty};

    fn party(kind: &str, id: &str) -> LogParty {
        LogParty {
            id: id.into(),
            party_type: kind.into(),
            alternate_id: Some(format!("{id}@example.com")),
            display_name: None,
        }
    }

    fn event(uuid: &str, event_type: &str, targets: Vec<LogParty>) -> LogEvent {
        LogEvent {
            uuid: uuid.into(),
            published: "2026-12-01T00:00:00.000Z".into(),
            event_type: event_type.into(),
            actor: Some(party("User", "00uadmin")),
            target: targets,
            outcome: Some(LogOutcome {
                result: Some("SUCCESS".into()),
            }),
        }
    }

    #[test]
    fn events_become_ordered_memberships_and_reads_of_what_changed() {
        let events = vec![
            event(
                "e1",
                "group.user_membership.add",
                vec![party("User", "u1"), party("UserGroup", "g1")],
            ),
            event(
                "e2",
                "group.user_membership.remove",
                vec![party("User", "u1"), party("UserGroup", "g1")],
            ),
            event("e3", "user.lifecycle.suspend", vec![party("User", "u2")]),
            event(
                "e4",
                "user.account.update_profile",
                vec![party("User", "u3")],
            ),
            event("e5", "user.session.start", vec![party("User", "u4")]),
            event("e5b", "user.account.lock", vec![party("User", "u7")]),
            event(
                "e6",
                "user.lifecycle.delete.completed",
                vec![party("User", "u5")],
            ),
            event(
                "e7",
                "group.privilege.grant",
                vec![party("UserGroup", "g2")],
            ),
            event(
                "e8",
                "user.account.privilege.revoke",
                vec![party("User", "u6")],
            ),
            event(
                "e9",
                "group.lifecycle.delete",
                vec![party("UserGroup", "g3")],
            ),
            event("e10", "app.oauth2.token.grant", vec![]),
        ];
        let seen: HashSet<&str> = ["e1"].into_iter().collect();
        let plan = plan_from_log(&events, &seen, 100).unwrap();
        // e1 was applied by the previous read: only the removal is left.
        assert_eq!(plan.memberships, [(false, "u1".into(), "g1".into())]);
        assert_eq!(
            plan.users.iter().map(String::as_str).collect::<Vec<_>>(),
            ["u2", "u3", "u7"]
        );
        assert!(plan.deleted_users.contains("u5"));
        assert!(plan.group_roles.contains("g2") && plan.user_roles.contains("u6"));
        assert!(plan.deleted_groups.contains("g3") && plan.groups_changed);
        let by = &plan.attribution[&("u1".to_string(), Some("g1".to_string()))];
        assert_eq!(by.actor, "00uadmin@example.com");
    }

    #[test]
    fn an_untrusted_log_asks_for_a_full_sync() {
        let seen = HashSet::new();
        let unknown = [event(
            "e1",
            "group.user_membership.rule.evaluated",
            vec![party("UserGroup", "g1")],
        )];
        assert_eq!(
            plan_from_log(&unknown, &seen, 10),
            Err(Fallback::UnknownEvent(
                "group.user_membership.rule.evaluated".into()
            ))
        );
        let custom = [event("e1", "iam.role.create", vec![])];
        assert!(matches!(
            plan_from_log(&custom, &seen, 10),
            Err(Fallback::CustomRolesChanged(_))
        ));
        let many = vec![event("e", "user.session.start", vec![]); 11];
        assert_eq!(
            plan_from_log(&many, &seen, 10),
            Err(Fallback::TooManyEvents(10))
        );
        // A membership event without its user cannot be applied.
        let partial = [event(
            "e1",
            "group.user_membership.add",
            vec![party("UserGroup", "g1")],
        )];
        assert!(plan_from_log(&partial, &seen, 10).is_err());
        // Failed attempts change nothing.
        let mut failed = event(
            "e1",
            "group.user_membership.add",
            vec![party("User", "u1"), party("UserGroup", "g1")],
        );
        failed.outcome = Some(LogOutcome {
            result: Some("FAILURE".into()),
        });
        assert!(
            plan_from_log(&[failed], &seen, 10)
                .unwrap()
                .memberships
                .is_empty()
        );
    }
}
