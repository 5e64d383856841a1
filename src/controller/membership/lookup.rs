//! Okta reads and writes of one round, through the connector's shared client (one rate-limit
//! budget with the sync). Transient failures become "not looked up" facts, so the decision
//! waits instead of reading an outage as "not found". Lookups take the connector's index
//! first ([`indexed`]) and ask Okta only where it has no exact answer.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;

use super::decide::{DeclaredUser, GroupLookup, OktaGroup, OktaUser, UserLookup, WriteError};
use super::indexed;
use crate::controller::connector::index::ConnectorIndex;
use crate::crd::GroupRef;
use crate::okta::{self, GroupQuery, GroupType, OktaClient, UserQuery};

/// Okta's maximum page size for group members.
const MEMBERS_PAGE: u32 = 1000;

/// Quotes a value for a `search` expression.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn group_type(t: GroupType) -> &'static str {
    match t {
        GroupType::OktaGroup => "OKTA_GROUP",
        GroupType::AppGroup => "APP_GROUP",
        GroupType::BuiltIn => "BUILT_IN",
        GroupType::Unknown => "UNKNOWN",
    }
}

fn to_group(g: okta::Group) -> OktaGroup {
    OktaGroup {
        group_type: group_type(g.group_type).to_owned(),
        id: g.id,
        name: g.profile.name,
    }
}

fn to_user(u: okta::User) -> OktaUser {
    OktaUser {
        status: status_text(u.status),
        id: u.id,
        login: u.profile.login,
        email: u.profile.email,
    }
}

fn status_text(s: okta::UserStatus) -> String {
    // The enum serialises to Okta's SCREAMING_SNAKE_CASE names.
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "UNKNOWN".to_owned())
}

/// Looks the declared group up ([`find_declared`]). A name that matches nothing while the
/// status already resolved the group (`known_id`) may be a rename: the group is then looked up
/// by that id, and only a 404 for it means the group is gone ([`GroupLookup::Renamed`] when
/// it still exists under another name). Only non-404 errors are returned.
pub async fn find_group(
    client: &OktaClient,
    index: Option<&ConnectorIndex>,
    group: &GroupRef,
    known_id: Option<&str>,
) -> okta::Result<GroupLookup> {
    let found = find_declared(client, index, group).await?;
    let (GroupLookup::NotFound, Some(declared), Some(id)) = (&found, &group.name, known_id) else {
        return Ok(found);
    };
    let by_id = GroupRef {
        name: None,
        id: Some(id.to_owned()),
    };
    Ok(match find_declared(client, index, &by_id).await? {
        // Seen by name just now: the name was out of date only in the index.
        GroupLookup::Found(g) if &g.name == declared => GroupLookup::Found(g),
        GroupLookup::Found(g) => GroupLookup::Renamed {
            group: g,
            declared: declared.clone(),
        },
        other => other,
    })
}

/// Looks the declared group up in the index, else in Okta: by id, or by exact `profile.name`
/// (Okta keeps `OKTA_GROUP` names unique; if imported groups share the name, the `OKTA_GROUP`
/// one is chosen, else the first, whose type then refuses it). Only non-404 errors are
/// returned.
async fn find_declared(
    client: &OktaClient,
    index: Option<&ConnectorIndex>,
    group: &GroupRef,
) -> okta::Result<GroupLookup> {
    if let Some(found) = index.and_then(|ix| indexed::group_lookup(ix, group)) {
        return Ok(found);
    }
    if let Some(id) = &group.id {
        return match client.get_group(id).await {
            Ok(g) => Ok(GroupLookup::Found(to_group(g))),
            Err(okta::Error::NotFound(_)) => Ok(GroupLookup::NotFound),
            Err(e) => Err(e),
        };
    }
    let name = group.name.as_deref().unwrap_or_default();
    let query = GroupQuery {
        search: Some(format!("profile.name eq {}", quoted(name))),
        limit: Some(200),
        ..GroupQuery::default()
    };
    let found: Vec<okta::Group> = client.list_groups(&query).try_concat().await?;
    // `eq` is case-insensitive in Okta; the spec promises an exact match.
    let mut exact: Vec<okta::Group> = found
        .into_iter()
        .filter(|g| g.profile.name == name)
        .collect();
    exact.sort_by_key(|g| g.group_type != GroupType::OktaGroup);
    Ok(exact
        .into_iter()
        .next()
        .map_or(GroupLookup::NotFound, |g| GroupLookup::Found(to_group(g))))
}

/// Resolves one entry (id, login or primary email) with one search; several distinct users
/// matching (e.g. one's login is another's email) is ambiguous.
pub async fn find_user(client: &OktaClient, entry: &str) -> okta::Result<UserLookup> {
    let q = quoted(entry);
    let query = UserQuery {
        search: Some(format!(
            "id eq {q} or profile.login eq {q} or profile.email eq {q}"
        )),
        limit: Some(200),
        ..UserQuery::default()
    };
    let found: Vec<okta::User> = client.list_users(&query).try_concat().await?;
    let mut by_id: BTreeMap<String, okta::User> =
        found.into_iter().map(|u| (u.id.clone(), u)).collect();
    Ok(match by_id.len() {
        0 => UserLookup::NotFound,
        1 => {
            let (_, u) = by_id.pop_first().expect("one entry");
            UserLookup::Found(to_user(u))
        }
        matches => UserLookup::Ambiguous { matches },
    })
}

/// The declared users of one round, resolved.
#[derive(Debug, Default)]
pub struct FoundUsers {
    /// Every entry with its lookup; `NotLookedUp` where the lookup failed.
    pub users: Vec<DeclaredUser>,
    /// Ids of the users Okta itself returned this round for every entry naming them (the
    /// others answered from the index, for at least one entry).
    pub fresh: BTreeSet<String>,
    /// Whether any lookup failed (the round then retries).
    pub failed: bool,
}

/// Resolves every entry, from the index where it answers exactly, else with one Okta search
/// each; an entry whose lookup failed is `NotLookedUp`.
pub async fn find_users(
    client: &OktaClient,
    index: Option<&ConnectorIndex>,
    entries: &[String],
) -> FoundUsers {
    let mut found = FoundUsers {
        users: Vec::with_capacity(entries.len()),
        ..FoundUsers::default()
    };
    let mut from_index = BTreeSet::new();
    // Sequential on purpose: the client paces on the shared bucket, and one membership must
    // not take the whole concurrency budget from the others.
    for entry in entries {
        if let Some(lookup) = index.and_then(|ix| indexed::user_lookup(ix, entry)) {
            if let UserLookup::Found(u) = &lookup {
                from_index.insert(u.id.clone());
            }
            found.users.push(DeclaredUser {
                user: entry.clone(),
                lookup,
            });
            continue;
        }
        let lookup = match find_user(client, entry).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(user = %entry, error = %e, "user lookup failed");
                found.failed = true;
                UserLookup::NotLookedUp
            }
        };
        if let UserLookup::Found(u) = &lookup {
            found.fresh.insert(u.id.clone());
        }
        found.users.push(DeclaredUser {
            user: entry.clone(),
            lookup,
        });
    }
    found.fresh.retain(|id| !from_index.contains(id));
    found
}

/// Reads each user by id (`GET /api/v1/users/{id}`, on Okta's user-by-id bucket, not the
/// groups bucket): `Found` as Okta has it now, `NotFound` on a 404, `NotLookedUp` when the
/// read failed. Returns whether any read failed (the round then retries).
pub async fn reread_users(
    client: &OktaClient,
    ids: &[&str],
) -> (BTreeMap<String, UserLookup>, bool) {
    let mut failed = false;
    let mut reread = BTreeMap::new();
    // Sequential, as the lookups.
    for id in ids {
        let lookup = match client.get_user(id).await {
            Ok(u) => UserLookup::Found(to_user(u)),
            Err(okta::Error::NotFound(_)) => UserLookup::NotFound,
            Err(e) => {
                tracing::warn!(user = %id, error = %e, "re-reading a user failed");
                failed = true;
                UserLookup::NotLookedUp
            }
        };
        reread.insert((*id).to_owned(), lookup);
    }
    (reread, failed)
}

/// The user ids currently in the group.
pub async fn members(client: &OktaClient, group_id: &str) -> okta::Result<BTreeSet<String>> {
    let pages: Vec<okta::User> = client
        .list_group_members(group_id, Some(MEMBERS_PAGE))
        .try_concat()
        .await?;
    Ok(pages.into_iter().map(|u| u.id).collect())
}

/// What goes into status about a failed write: the same text for the same failure, so a
/// standing failure does not rewrite the status every round. Okta's per-response ids
/// (`errorId`, `X-Okta-Request-Id`) are left out; the caller logs them.
fn stable_message(e: &okta::Error) -> String {
    if let okta::Error::InsufficientScope { .. } | okta::Error::ScopeNotGranted(_) = e {
        // The text names the scope.
        return e.stable_text();
    }
    match e.okta_info() {
        Some(info) => {
            let mut text = format!("HTTP {}", info.status);
            if let Some(code) = &info.error_code {
                text.push_str(&format!(" {code}"));
            }
            if let Some(summary) = &info.error_summary {
                text.push_str(&format!(": {summary}"));
            }
            text
        }
        None => match e {
            // The request id is per response.
            okta::Error::Decode { .. } => "cannot decode Okta's response".to_owned(),
            e => e.to_string(),
        },
    }
}

fn write_error(e: &okta::Error) -> WriteError {
    let message = stable_message(e);
    match e {
        okta::Error::NotFound(_) => WriteError::NotFound(message),
        // Okta answered no: nothing changed. 429 and 5xx are transient, and a transport or
        // decoding failure leaves the outcome unknown.
        okta::Error::Unauthorized(_)
        | okta::Error::Forbidden(_)
        | okta::Error::InsufficientScope { .. }
        | okta::Error::ScopeNotGranted(_)
        | okta::Error::InvalidRequest(_) => WriteError::Refused(message),
        _ => WriteError::Failed(message),
    }
}

/// PUTs every grant and DELETEs every revoke; returns the failures by user id.
pub async fn write_memberships(
    client: &OktaClient,
    group_id: &str,
    grants: &[String],
    revokes: &[String],
) -> BTreeMap<String, WriteError> {
    let mut failures = BTreeMap::new();
    for user_id in grants {
        if let Err(e) = client.add_group_member(group_id, user_id).await {
            tracing::warn!(group = %group_id, user = %user_id, error = %e, "adding a member failed");
            failures.insert(user_id.clone(), write_error(&e));
        }
    }
    for user_id in revokes {
        if let Err(e) = client.remove_group_member(group_id, user_id).await {
            tracing::warn!(group = %group_id, user = %user_id, error = %e, "removing a member failed");
            failures.insert(user_id.clone(), write_error(&e));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_values_are_quoted_and_escaped() {
        assert_eq!(quoted("a@example.com"), r#""a@example.com""#);
        assert_eq!(quoted(r#"x"y\z"#), r#""x\"y\\z""#);
    }

    #[test]
    fn write_errors_keep_per_response_ids_out_and_tell_refusals_apart() {
        let info = |status| okta::OktaErrorInfo {
            status,
            error_code: Some("E0000006".into()),
            error_summary: Some("You do not have permission".into()),
            error_id: Some("oaeVolatile1".into()),
            request_id: Some("req-volatile-1".into()),
        };
        let forbidden = okta::Error::Forbidden(info(403));
        let WriteError::Refused(text) = write_error(&forbidden) else {
            panic!("a 403 is a refusal");
        };
        assert_eq!(text, "HTTP 403 E0000006: You do not have permission");
        let again = okta::Error::Forbidden(okta::OktaErrorInfo {
            error_id: Some("oaeVolatile2".into()),
            request_id: Some("req-volatile-2".into()),
            ..info(403)
        });
        assert_eq!(write_error(&again), WriteError::Refused(text));
        let scope = okta::Error::InsufficientScope {
            scope: "okta.groups.manage".into(),
            info: Box::new(info(403)),
        };
        let WriteError::Refused(text) = write_error(&scope) else {
            panic!("a missing scope is a refusal");
        };
        assert!(text.contains("lacks scope okta.groups.manage"), "{text}");
        assert!(!text.contains("volatile"), "{text}");
        assert!(matches!(
            write_error(&okta::Error::NotFound(info(404))),
            WriteError::NotFound(t) if !t.contains("oae") && !t.contains("req-")
        ));
        for transient in [
            okta::Error::RateLimited(info(429)),
            okta::Error::Server(info(503)),
            okta::Error::Transport {
                message: "connection reset".into(),
            },
            okta::Error::Decode {
                message: "eof".into(),
                request_id: Some("req-volatile-3".into()),
            },
        ] {
            let WriteError::Failed(text) = write_error(&transient) else {
                panic!("{transient} is not a definite refusal");
            };
            assert!(!text.contains("volatile"), "{text}");
        }
    }

    #[test]
    fn statuses_and_types_use_okta_names() {
        assert_eq!(
            status_text(okta::UserStatus::Deprovisioned),
            "DEPROVISIONED"
        );
        assert_eq!(status_text(okta::UserStatus::LockedOut), "LOCKED_OUT");
        assert_eq!(group_type(GroupType::AppGroup), "APP_GROUP");
    }
}
