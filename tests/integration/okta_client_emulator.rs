//! The Okta client against the emulator over real HTTP: pagination of every list, search and
//! filter rules, rate limits, fault retries and token redaction.

use crate::log_capture;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use log_capture::CapturedLogs;
use okta_ciam_operator::okta::{
    ApiToken, ClientOptions, DomainPolicy, Error, GroupQuery, GroupType, OktaClient, OrgDomain,
    RoleAssignee, SswsAuth, User, UserQuery,
};
use okta_emulator as emulator;
use okta_emulator::{EmulatorConfig, EmulatorHandle, Faults, Fixture, GenerateSpec, RateLimits};
use serde_json::Value;

fn generated(users: usize) -> Fixture {
    let spec: GenerateSpec = format!(
        "users={users},groups=25,memberships-per-user=3,admins=12,custom-roles=3,domains=example.com:example.com.evil.io:example.community:corp.example.net"
    )
    .parse()
    .unwrap();
    Fixture::generate(&spec, 7)
}

async fn start(fixture: Fixture, rate_limits: RateLimits) -> EmulatorHandle {
    emulator::start(EmulatorConfig {
        fixture,
        rate_limits,
    })
    .await
    .unwrap()
}

fn client_for(emu: &EmulatorHandle, token: &str, options: ClientOptions) -> OktaClient {
    client_at(&emu.domain(), token, options)
}

/// A client for the org at `domain` (a loopback `host:port`, over plain HTTP).
fn client_at(domain: &str, token: &str, options: ClientOptions) -> OktaClient {
    let policy = DomainPolicy {
        insecure_loopback_http: true,
        ..DomainPolicy::default()
    };
    let domain = OrgDomain::parse(domain, &policy).unwrap();
    let auth = Arc::new(SswsAuth::new(ApiToken::new(token.to_owned())));
    OktaClient::new(domain, auth, options).unwrap()
}

/// Every page of the plain user list, `limit` users a page.
async fn user_pages(client: &OktaClient, limit: u32) -> Vec<Vec<User>> {
    client
        .list_users(&UserQuery {
            limit: Some(limit),
            ..UserQuery::default()
        })
        .try_collect()
        .await
        .unwrap()
}

/// Every page of the role assignees, `limit` a page.
async fn assignee_pages(client: &OktaClient, limit: u32) -> Vec<Vec<RoleAssignee>> {
    client
        .list_role_assignees(Some(limit))
        .try_collect()
        .await
        .unwrap()
}

fn fast() -> ClientOptions {
    ClientOptions {
        retry_base_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(200),
        request_timeout: Duration::from_secs(10),
        max_rate_limit_wait: Duration::from_secs(30),
        ..ClientOptions::default()
    }
}

fn state_users(emu: &EmulatorHandle) -> Vec<Value> {
    emu.state_json()["users"].as_array().unwrap().clone()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn ids<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    items.into_iter().map(str::to_owned).collect()
}

#[tokio::test]
async fn every_list_paginates_across_many_pages() {
    let emu = start(generated(450), RateLimits::default()).await;
    let client = client_for(&emu, &emu.token(), fast());
    let state = emu.state_json();

    // Users: plain list omits DEPROVISIONED.
    let pages = user_pages(&client, 7).await;
    let listed: Vec<String> = pages.iter().flatten().map(|u| u.id.clone()).collect();
    let expected = ids(state["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| s(u, "status") != "DEPROVISIONED")
        .map(|u| s(u, "id")));
    assert!(pages.len() > 50, "{} pages", pages.len());
    assert!(pages.iter().all(|p| p.len() <= 7));
    assert_eq!(listed.len(), expected.len(), "no duplicates, none missing");
    assert_eq!(ids(listed.iter().map(String::as_str)), expected);

    // Groups with stats, and each group's members.
    let groups: Vec<_> = client
        .list_groups(&GroupQuery {
            limit: Some(4),
            expand_stats: true,
            ..GroupQuery::default()
        })
        .try_concat()
        .await
        .unwrap();
    let state_groups = state["groups"].as_array().unwrap();
    assert_eq!(groups.len(), state_groups.len());
    for g in &groups {
        let members = emu.members_of(&g.id);
        assert_eq!(
            g.users_count(),
            Some(members.len() as u64),
            "{}",
            g.profile.name
        );
    }
    let everyone = groups
        .iter()
        .find(|g| g.group_type == GroupType::BuiltIn)
        .unwrap();
    let member_pages: Vec<_> = client
        .list_group_members(&everyone.id, Some(40))
        .try_collect()
        .await
        .unwrap();
    assert!(member_pages.len() >= 12);
    let members: Vec<_> = member_pages.into_iter().flatten().map(|u| u.id).collect();
    assert_eq!(members, emu.members_of(&everyone.id));

    // A user's groups (not paged by the emulator, but read through the same stream).
    let some_user = s(&state["users"][3], "id").to_owned();
    let user_groups: BTreeSet<String> = client
        .list_user_groups(&some_user)
        .try_concat()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    let expected_groups: BTreeSet<String> = state_groups
        .iter()
        .filter(|g| {
            g["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m == &some_user)
        })
        .map(|g| s(g, "id").to_owned())
        .collect();
    assert_eq!(user_groups, expected_groups);

    // Role assignees through the body cursor, then their roles.
    let role_pages = assignee_pages(&client, 5).await;
    assert!(role_pages.len() >= 3, "{} pages", role_pages.len());
    let assignees: Vec<_> = role_pages.into_iter().flatten().collect();
    let unique = ids(assignees.iter().map(|a| a.id.as_str()));
    assert_eq!(unique.len(), assignees.len());
    for a in assignees.iter().take(5) {
        let roles = client.list_user_roles(&a.id).await.unwrap();
        assert!(!roles.is_empty(), "assignee {} holds a role", a.id);
    }

    // Custom roles and permissions; group-held roles.
    let roles = client.list_custom_roles().try_concat().await.unwrap();
    assert_eq!(roles.len(), 3);
    for r in &roles {
        let perms = client
            .list_custom_role_permissions(&r.id)
            .try_concat()
            .await
            .unwrap();
        assert_eq!(perms.len(), 3);
    }
    let group_held: Vec<_> = state["roleAssignments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["group"].as_str())
        .collect();
    let group_roles = client.list_group_roles(group_held[0]).await.unwrap();
    assert!(!group_roles.is_empty());
    if let Some(custom) = group_roles.iter().find(|r| r.role_type == "CUSTOM") {
        assert!(roles.iter().any(|r| Some(&r.id) == custom.role.as_ref()));
    }

    assert_eq!(client.stats().rate_limited, 0);
    assert_eq!(client.stats().requests, emu.stats().requests.total);
    emu.shutdown().await;
}

/// Links follow the `Host` the client used, not the address the emulator bound: bound to
/// 127.0.0.1 and reached as `localhost`, as an emulator bound to 0.0.0.0 is reached under
/// another name. Both cursor kinds (the `Link` header and a body's `_links.next`) are walked.
#[tokio::test]
async fn links_point_at_the_host_the_client_used() {
    let emu = start(generated(60), RateLimits::default()).await;
    let domain = format!("localhost:{}", emu.addr().port());
    let client = client_at(&domain, &emu.token(), fast());
    let users = user_pages(&client, 7).await;
    assert!(users.len() > 3, "{} pages", users.len());
    let listed = users.iter().flatten().count();
    let active = state_users(&emu)
        .iter()
        .filter(|u| s(u, "status") != "DEPROVISIONED")
        .count();
    assert_eq!(listed, active);
    let assignees = assignee_pages(&client, 5).await;
    assert!(assignees.len() >= 3, "{} pages", assignees.len());
    emu.shutdown().await;
}

#[tokio::test]
async fn search_and_filter_rules() {
    let emu = start(generated(300), RateLimits::default()).await;
    let client = client_for(&emu, &emu.token(), fast());
    let users = state_users(&emu);
    let search = |expr: &str| {
        client
            .list_users(&UserQuery {
                search: Some(expr.to_owned()),
                limit: Some(50),
                ..UserQuery::default()
            })
            .try_concat()
    };
    let expect =
        |pred: &dyn Fn(&Value) -> bool| ids(users.iter().filter(|u| pred(u)).map(|u| s(u, "id")));
    let got = |list: Vec<User>| ids(list.iter().map(|u| u.id.as_str()));

    // `co` on email matches look-alike domains too; the exact domain check is the caller's.
    let found = search(r#"profile.email co "@example.com""#).await.unwrap();
    assert_eq!(
        got(found.clone()),
        expect(&|u| s(u, "email").to_lowercase().contains("@example.com"))
    );
    assert!(found.iter().any(|u| {
        u.profile
            .email
            .as_deref()
            .unwrap()
            .ends_with("@example.com.evil.io")
    }));
    assert!(
        found.iter().any(|u| u.status.is_disabled()),
        "search includes disabled users"
    );

    let found = search(r#"status eq "SUSPENDED" or status eq "deprovisioned""#)
        .await
        .unwrap();
    assert_eq!(
        got(found),
        expect(&|u| matches!(s(u, "status"), "SUSPENDED" | "DEPROVISIONED"))
    );

    let found = search(
        r#"(profile.firstName sw "al" and status eq "ACTIVE") or profile.lastName eq "Smith""#,
    )
    .await
    .unwrap();
    assert_eq!(
        got(found),
        expect(&|u| (s(u, "firstName").to_lowercase().starts_with("al")
            && s(u, "status") == "ACTIVE")
            || s(u, "lastName").eq_ignore_ascii_case("smith"))
    );

    let found = search("profile.secondEmail pr").await.unwrap();
    assert_eq!(got(found), expect(&|u| !u["secondEmail"].is_null()));

    let found = search(r#"created gt "2000-01-01T00:00:00.000Z""#)
        .await
        .unwrap();
    assert_eq!(found.len(), users.len());

    let filtered = client
        .list_users(&UserQuery {
            filter: Some(r#"status eq "DEPROVISIONED""#.into()),
            ..UserQuery::default()
        })
        .try_concat()
        .await
        .unwrap();
    assert_eq!(
        got(filtered),
        expect(&|u| s(u, "status") == "DEPROVISIONED")
    );

    let prefix = client
        .list_users(&UserQuery {
            q: Some("ali".into()),
            ..UserQuery::default()
        })
        .try_concat()
        .await
        .unwrap();
    assert!(!prefix.is_empty() && prefix.len() <= 10);
    for u in &prefix {
        let p = &u.profile;
        assert!(
            [
                p.first_name.as_deref(),
                p.last_name.as_deref(),
                p.email.as_deref()
            ]
            .iter()
            .any(|v| v.is_some_and(|v| v.to_lowercase().starts_with("ali")))
        );
    }

    let err = client
        .list_users(&UserQuery {
            search: Some(r#"status eq "ACTIVE""#.into()),
            filter: Some(r#"status eq "ACTIVE""#.into()),
            ..UserQuery::default()
        })
        .try_concat()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidRequest(i) if i.error_code.as_deref() == Some("E0000033")),
        "{err:?}"
    );
    let err = search(r#"profile.email ew "example.com""#)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidRequest(i) if i.error_code.as_deref() == Some("E0000031")),
        "{err:?}"
    );

    // Groups: `co` on the name with stats, and a type filter.
    let groups = emu.state_json()["groups"].as_array().unwrap().clone();
    let found = client
        .list_groups(&GroupQuery {
            search: Some(r#"profile.name co "engineering""#.into()),
            limit: Some(2),
            expand_stats: true,
            ..GroupQuery::default()
        })
        .try_concat()
        .await
        .unwrap();
    assert_eq!(
        ids(found.iter().map(|g| g.id.as_str())),
        ids(groups
            .iter()
            .filter(|g| s(g, "name").to_lowercase().contains("engineering"))
            .map(|g| s(g, "id")))
    );
    assert!(found.iter().all(|g| g.users_count().is_some()));
    let app_groups = client
        .list_groups(&GroupQuery {
            filter: Some(r#"type eq "APP_GROUP""#.into()),
            ..GroupQuery::default()
        })
        .try_concat()
        .await
        .unwrap();
    assert!(
        app_groups
            .iter()
            .all(|g| g.group_type == GroupType::AppGroup)
    );
    assert_eq!(
        app_groups.len(),
        groups
            .iter()
            .filter(|g| s(g, "type") == "APP_GROUP")
            .count()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn memberships_and_error_codes() {
    let emu = start(generated(40), RateLimits::default()).await;
    let client = client_for(&emu, &emu.token(), fast());
    let state = emu.state_json();
    let group_of = |t: &str| {
        state["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| s(g, "type") == t)
            .map(|g| s(g, "id").to_owned())
            .unwrap()
    };
    let okta_group = group_of("OKTA_GROUP");
    let user = s(&state["users"][0], "id").to_owned();
    emu.remove_membership(&okta_group, &user).unwrap();
    client.add_group_member(&okta_group, &user).await.unwrap();
    client.add_group_member(&okta_group, &user).await.unwrap();
    assert!(emu.members_of(&okta_group).contains(&user));
    client
        .remove_group_member(&okta_group, &user)
        .await
        .unwrap();
    assert!(!emu.members_of(&okta_group).contains(&user));

    let err = client
        .add_group_member(&group_of("BUILT_IN"), &user)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden(i) if i.error_code.as_deref() == Some("E0000006")),
        "{err:?}"
    );
    let err = client.get_group("00gdoesnotexist").await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(i) if i.error_code.as_deref() == Some("E0000007") && i.request_id.is_some()),
        "{err:?}"
    );
    let login = s(&state["users"][1], "login").to_owned();
    assert_eq!(client.get_user(&login).await.unwrap().profile.login, login);
    assert_eq!(client.stats().retries, 0);
    emu.shutdown().await;
}

fn tight(users: u32) -> RateLimits {
    RateLimits {
        window: Duration::from_secs(1),
        users,
        ..RateLimits::default()
    }
}

/// Reads the users bucket's `Remaining` without consuming it: the emulator reports the
/// bucket on a refused (bad token) request without counting it.
async fn probe_remaining(http: &reqwest::Client, emu: &EmulatorHandle) -> u32 {
    let resp = http
        .get(emu.url().join("api/v1/users").unwrap())
        .header("authorization", "SSWS not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    resp.headers()["x-rate-limit-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn pacing_keeps_the_users_bucket_above_the_reserve() {
    let emu = start(generated(60), tight(10)).await;
    let client = client_for(&emu, &emu.token(), fast());
    let http = reqwest::Client::new();
    let mut pages = client.list_users(&UserQuery {
        limit: Some(5),
        ..UserQuery::default()
    });
    let mut min_remaining = u32::MAX;
    let mut count = 0;
    while let Some(page) = pages.next().await {
        count += page.unwrap().len();
        min_remaining = min_remaining.min(probe_remaining(&http, &emu).await);
    }
    assert!(count > 40);
    assert!(
        min_remaining >= 5,
        "50% reserve kept, min remaining {min_remaining}"
    );
    assert_eq!(emu.stats().rate_limited, 0);
    assert_eq!(client.stats().rate_limited, 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_429_is_waited_out_once_and_never_repeated() {
    let emu = start(generated(60), tight(6)).await;
    // Another integration drains the users bucket first.
    let greedy = client_for(
        &emu,
        &emu.token(),
        ClientOptions {
            budget_percent: 100,
            ..fast()
        },
    );
    for _ in 0..6 {
        greedy
            .list_users(&UserQuery {
                limit: Some(1),
                ..UserQuery::default()
            })
            .next()
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(emu.stats().rate_limited, 0);
    let client = client_for(
        &emu,
        &emu.token(),
        ClientOptions {
            budget_percent: 100,
            ..fast()
        },
    );
    let users = client
        .list_users(&UserQuery {
            limit: Some(4),
            ..UserQuery::default()
        })
        .try_concat()
        .await
        .unwrap();
    assert!(users.len() > 40);
    let stats = client.stats();
    assert_eq!(stats.rate_limited, 1, "one 429, then paced: {stats:?}");
    assert_eq!(stats.retries, 1);
    assert_eq!(emu.stats().rate_limited, 1);
    assert!(stats.rate_limit_wait > Duration::ZERO);
    emu.shutdown().await;
}

#[tokio::test]
async fn emulator_faults_are_retried() {
    let emu = start(generated(20), RateLimits::default()).await;
    let client = client_for(
        &emu,
        &emu.token(),
        ClientOptions {
            request_timeout: Duration::from_millis(800),
            ..fast()
        },
    );
    emu.set_faults(Faults {
        fail_next: 2,
        error_status: Some(503),
        ..Faults::default()
    });
    assert!(client.get_org().await.unwrap().id.is_some());
    assert_eq!(client.stats().retries, 2);
    emu.set_faults(Faults {
        drop_next: 2,
        ..Faults::default()
    });
    let users = client
        .list_users(&UserQuery::default())
        .try_concat()
        .await
        .unwrap();
    assert!(!users.is_empty());
    assert_eq!(client.stats().retries, 4);
    emu.set_faults(Faults {
        stall_next: 1,
        stall_ms: 0,
        ..Faults::default()
    });
    client.get_user(&users[0].id).await.unwrap();
    assert_eq!(client.stats().retries, 5);
    emu.set_faults(Faults {
        fail_next: 100,
        ..Faults::default()
    });
    let err = client.get_org().await.unwrap_err();
    assert!(
        matches!(err, Error::Server(ref i) if i.status == 500),
        "{err:?}"
    );
    assert!(err.is_transient());
    emu.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn token_never_reaches_logs_or_errors_through_retries_and_revocation() {
    let captured = CapturedLogs::start();

    let emu = start(generated(10), RateLimits::default()).await;
    let token = "00secret-token-for-redaction-test";
    emu.add_token(token);
    let client = client_for(
        &emu,
        token,
        ClientOptions {
            max_retries: 2,
            ..fast()
        },
    );
    client.get_org().await.unwrap();

    // Faults fire only for accepted tokens (the emulator checks auth first), so the retry
    // path runs while the token is still valid: every attempt fails, then the client gives up.
    emu.set_faults(Faults {
        fail_next: 3,
        error_status: Some(503),
        ..Faults::default()
    });
    let retried = client.get_org().await.unwrap_err();
    assert!(
        matches!(&retried, Error::Server(i) if i.status == 503),
        "{retried:?}"
    );
    assert_eq!(emu.faults().fail_next, 0, "every injected fault fired");
    assert_eq!(client.stats().retries, 2);

    // Then the token is revoked: a 401, not retried.
    emu.revoke_token(token);
    let rejected = client.get_org().await.unwrap_err();
    assert!(
        matches!(&rejected, Error::Unauthorized(i) if i.error_code.as_deref() == Some("E0000011")),
        "{rejected:?}"
    );
    assert_eq!(client.stats().retries, 2);
    emu.shutdown().await;

    let logs = captured.text();
    assert!(logs.contains("okta response"), "logs were captured");
    assert_eq!(
        logs.matches("retrying Okta request").count(),
        2,
        "the retries were logged"
    );
    assert!(!logs.contains(token), "token leaked into logs");
    for text in [
        retried.to_string(),
        format!("{retried:?}"),
        rejected.to_string(),
        format!("{rejected:?}"),
        format!("{client:?}"),
    ] {
        assert!(!text.contains(token), "token leaked: {text}");
    }
}
