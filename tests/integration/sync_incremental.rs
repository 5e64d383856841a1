//! Incremental sync over real HTTP: after API writes and `/__emulator/` changes (both logged
//! to the emulator's System Log), applying the log to the previous snapshot reaches exactly
//! the snapshot a full sync reads, with few requests, and names who made each change.

use crate::sync_support;

use okta_ciam_operator::okta::OktaClient;
use okta_ciam_operator::sync::engine::SyncConfig;
use okta_ciam_operator::sync::incremental::{self, Fallback};
use okta_ciam_operator::sync::progress::NoProgress;
use okta_ciam_operator::sync::snapshot::{Grant, Snapshot, SyncMode};
use okta_emulator::{EmulatorHandle, Fixture};
use sync_support::{client, config, start, sync};

fn fixture() -> Fixture {
    Fixture::from_yaml(
        "tokens: [test-token]\n\
         users:\n\
         \x20 - {login: alice@example.com, email: alice@example.com}\n\
         \x20 - {login: bob@example.com, email: bob@example.com}\n\
         \x20 - {login: carol@example.com, email: carol@example.com}\n\
         \x20 - {login: dave@other.org, email: dave@other.org}\n\
         \x20 - {login: erin@example.com, email: erin@example.com}\n\
         groups:\n\
         \x20 - {name: Engineering, type: OKTA_GROUP, members: [alice@example.com, bob@example.com, dave@other.org]}\n\
         \x20 - {name: Platform Eng, type: OKTA_GROUP, members: [carol@example.com]}\n\
         \x20 - {name: Sales, type: OKTA_GROUP, members: [alice@example.com]}\n\
         \x20 - {name: Marketing, type: OKTA_GROUP, members: [erin@example.com]}\n\
         roleAssignments:\n\
         \x20 - {user: alice@example.com, role: ORG_ADMIN}\n\
         \x20 - {user: dave@other.org, role: REPORT_ADMIN}\n\
         \x20 - {group: Platform Eng, role: HELP_DESK_ADMIN}\n\
         \x20 - {group: Marketing, role: APP_ADMIN}\n",
    )
    .expect("fixture")
}

/// The parts two syncs of the same org must agree on.
fn access(s: &Snapshot) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "users": s.users, "groups": s.groups, "roles": s.roles,
        "customRoles": s.custom_roles, "grants": s.grants,
    }))
    .unwrap()
}

/// An incremental sync from `before` (which must not fall back), the requests the emulator
/// served for it, and a full sync after it, checked to agree with it.
async fn incremental_then_full(
    h: &EmulatorHandle,
    c: &OktaClient,
    cfg: &SyncConfig,
    before: &Snapshot,
) -> (Snapshot, u64, Snapshot) {
    let served_before = h.stats().requests.total;
    let inc = incremental::sync_incremental(c, cfg, before, 1000, &NoProgress)
        .await
        .expect("no Okta failure")
        .expect("the log can be trusted");
    let inc_requests = h.stats().requests.total - served_before;
    let full = sync(c, cfg).await;
    assert_eq!(access(&inc), access(&full));
    assert_eq!(inc.stats.mode, SyncMode::Incremental);
    (inc, inc_requests, full)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_the_log_reaches_the_full_snapshot_with_few_requests() {
    let h = start(fixture()).await;
    let c = client(&h);
    let cfg = config("example.com", "eng");
    let before = sync(&c, &cfg).await;
    let id = |login: &str| h.user_id(login).unwrap();
    let gid = |name: &str| h.group_id(name).unwrap();
    let (eng, platform, marketing, sales) = (
        gid("Engineering"),
        gid("Platform Eng"),
        gid("Marketing"),
        gid("Sales"),
    );

    // Through the API (as provisioning would): Carol joins Engineering, Bob leaves it.
    c.add_group_member(&eng, &id("carol@example.com"))
        .await
        .unwrap();
    c.remove_group_member(&eng, &id("bob@example.com"))
        .await
        .unwrap();
    // Outside the API: Dave moves into scope (with his membership and admin role), Bob out of
    // it, Alice is suspended, Carol locked out, Marketing is renamed into the filter (with its
    // member and role), Platform Eng out of it, and a change to an out-of-scope group.
    h.set_user_profile(
        &id("dave@other.org"),
        "dave@example.com",
        "dave@example.com",
    )
    .unwrap();
    h.set_user_profile(&id("bob@example.com"), "bob@other.org", "bob@other.org")
        .unwrap();
    h.set_user_status(&id("alice@example.com"), "SUSPENDED")
        .unwrap();
    h.set_user_status(&id("carol@example.com"), "LOCKED_OUT")
        .unwrap();
    h.rename_group(&marketing, "Marketing Eng").unwrap();
    h.rename_group(&platform, "Platform").unwrap();
    h.add_membership(&sales, &id("erin@example.com")).unwrap();

    let (inc, inc_requests, full) = incremental_then_full(&h, &c, &cfg, &before).await;
    assert_eq!(inc.stats.requests, inc_requests);
    assert_eq!(inc.stats.log_events, 9);
    // One log page, one search of changed users, one of changed groups; Dave's groups and
    // roles; Marketing Eng's members and roles.
    assert_eq!(
        inc_requests,
        3 + 2 + 2,
        "{:?}",
        inc.stats.requests_by_endpoint
    );
    assert!(full.stats.requests > inc_requests);

    // The change log names who did what.
    let changes = inc.changes.as_ref().expect("changes");
    let carol_in = changes
        .grants_added
        .iter()
        .find(|g| g.grant == Grant::membership(id("carol@example.com"), eng.clone()))
        .expect("Carol's membership");
    assert_eq!(
        carol_in.by.as_ref().unwrap().actor,
        "api-admin@emulator.invalid"
    );
    let bob_out = changes
        .users_removed
        .iter()
        .find(|u| u.id == id("bob@other.org"))
        .expect("Bob left scope");
    assert_eq!(
        bob_out.by.as_ref().unwrap().actor,
        "console-admin@emulator.invalid"
    );
    assert!(changes.groups_added.iter().any(|g| g.id == marketing));
    assert!(changes.groups_removed.iter().any(|g| g.id == platform));

    // Nothing changed since: the next incremental sync reads only the log (the overlap's
    // events are recognised and not applied again) and agrees with a full sync.
    let again = incremental::sync_incremental(&c, &cfg, &inc, 1000, &NoProgress)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(access(&again), access(&full));
    assert_eq!(again.stats.requests, 1);
    assert!(again.changes.unwrap().is_empty());
    h.shutdown().await;
}

/// Admin roles granted and revoked in the console, to users and to groups, reach the
/// snapshot through their System Log events: only the named principals' role lists are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_grants_and_revokes_in_the_log_reach_the_full_snapshot() {
    let h = start(fixture()).await;
    let c = client(&h);
    let cfg = config("example.com", "eng");
    let before = sync(&c, &cfg).await;
    let id = |login: &str| h.user_id(login).unwrap();
    let gid = |name: &str| h.group_id(name).unwrap();

    assert!(
        h.set_standard_role(&id("erin@example.com"), "SUPER_ADMIN", true)
            .unwrap()
    );
    assert!(
        h.set_standard_role(&id("alice@example.com"), "ORG_ADMIN", false)
            .unwrap()
    );
    assert!(
        h.set_standard_role(&gid("Engineering"), "READ_ONLY_ADMIN", true)
            .unwrap()
    );
    assert!(
        h.set_standard_role(&gid("Platform Eng"), "HELP_DESK_ADMIN", false)
            .unwrap()
    );
    // Assigning what is held, or unassigning what is not, changes (and logs) nothing.
    assert!(
        !h.set_standard_role(&id("erin@example.com"), "SUPER_ADMIN", true)
            .unwrap()
    );
    assert!(
        !h.set_standard_role(&id("bob@example.com"), "ORG_ADMIN", false)
            .unwrap()
    );

    let (inc, inc_requests, full) = incremental_then_full(&h, &c, &cfg, &before).await;
    assert_ne!(access(&before), access(&full), "the roles did change");
    assert_eq!(inc.stats.log_events, 4);
    // The log page (no user or group changed, so no searches), then the role lists of the two
    // users and the two groups the events name.
    assert_eq!(inc_requests, 1 + 4, "{:?}", inc.stats.requests_by_endpoint);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_log_falls_back_to_a_full_sync_and_says_why() {
    let h = start(fixture()).await;
    let c = client(&h);
    let cfg = config("example.com", "eng");
    let before = sync(&c, &cfg).await;
    for name in ["Engineering", "Sales"] {
        let g = h.group_id(name).unwrap();
        h.add_membership(&g, &h.user_id("erin@example.com").unwrap())
            .unwrap();
    }
    // More events than allowed.
    let too_many = incremental::sync_incremental(&c, &cfg, &before, 1, &NoProgress)
        .await
        .unwrap();
    assert_eq!(too_many.unwrap_err(), Fallback::TooManyEvents(1));
    let s = incremental::sync_auto(&c, &cfg, Some(&before), None, 1, &NoProgress)
        .await
        .unwrap();
    assert_eq!(s.stats.mode, SyncMode::Full);
    assert_eq!(
        s.stats.full_sync_reason.as_deref(),
        Some("more than 1 System Log events since the last sync")
    );
    assert_eq!(s.changes.unwrap().counts().memberships_added, 1);
    // Another scope, or no previous snapshot at all.
    let other = config("example.org", "eng");
    let err = incremental::sync_incremental(&c, &other, &before, 1000, &NoProgress)
        .await
        .unwrap();
    assert_eq!(err.unwrap_err(), Fallback::OtherScope);
    let first = incremental::sync_auto(&c, &cfg, None, None, 1000, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        first.stats.full_sync_reason.as_deref(),
        Some("no previous snapshot with a System Log cursor")
    );
    h.shutdown().await;
}
