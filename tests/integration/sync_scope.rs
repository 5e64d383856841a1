//! Scoping rules of a sync, proven against the emulator with an adversarial org: mixed case,
//! subdomains, look-alike domains, secondEmail-only matches, deprovisioned and suspended users,
//! a filter matching mid-name, more than 300 matching groups, a group over 1000 members,
//! custom-role assignments and group-held roles.

use crate::sync_support;

use std::collections::BTreeSet;

use okta_ciam_operator::okta::OktaClient;
use okta_ciam_operator::sync::plan::{MembershipStrategy, RoleStrategy};
use okta_ciam_operator::sync::snapshot::{Grant, GrantKind, PrincipalType, Snapshot};
use okta_emulator::{EmulatorHandle, Fixture};
use sync_support::{client, config, start, sync};

const BULK: usize = 1100;
const TEAMS: usize = 320;

/// The adversarial org. Users in scope for `example.com,company.com` are marked `in`.
/// Short rate-limit windows let repeated syncs pace without waiting a whole minute.
fn fixture() -> Fixture {
    let mut y = String::from("tokens: [test-token]\nusers:\n");
    for line in [
        // in: mixed-case domain
        "{login: alice@Example.COM, email: alice@Example.COM, firstName: Alice, lastName: Adams}",
        // out: subdomain
        "{login: bob@eng.example.com, email: bob@eng.example.com}",
        // out: look-alikes
        "{login: carol@example.community, email: carol@example.community}",
        "{login: dave@example.com.evil.io, email: dave@example.com.evil.io}",
        "{login: xavier@xexample.com, email: xavier@xexample.com}",
        // out: only secondEmail matches
        "{login: erin@other.org, email: erin@other.org, secondEmail: erin@example.com}",
        // in: login matches, email does not
        "{login: frank@example.com, email: frank@personal.io}",
        // in: email matches (upper case), login does not
        "{login: gina@other.org, email: gina@EXAMPLE.com}",
        // in, disabled
        "{login: henry@example.com, email: henry@example.com, status: DEPROVISIONED}",
        "{login: ivan@example.com, email: ivan@example.com, status: SUSPENDED}",
        // in: second domain
        "{login: judy@company.com, email: judy@company.com}",
        // out, but an admin and a member of in-scope groups
        "{login: kim@other.org, email: kim@other.org}",
    ] {
        y.push_str(&format!("  - {line}\n"));
    }
    for i in 0..BULK {
        y.push_str(&format!(
            "  - {{login: bulk{i}@example.com, email: bulk{i}@example.com}}\n"
        ));
    }
    y.push_str("groups:\n");
    y.push_str("  - {name: Platform Engineering, type: OKTA_GROUP, members: [alice@Example.COM, bob@eng.example.com, kim@other.org, henry@example.com]}\n");
    y.push_str("  - {name: ENG-Ops, type: APP_GROUP, members: [gina@other.org, erin@other.org]}\n");
    y.push_str("  - {name: Strength, type: OKTA_GROUP, members: [alice@Example.COM]}\n");
    y.push_str("  - {name: Sales, type: OKTA_GROUP, description: engineering-adjacent, members: [alice@Example.COM, judy@company.com]}\n");
    y.push_str("  - {name: Marketing, type: OKTA_GROUP, members: [alice@Example.COM]}\n");
    y.push_str("  - {name: Everyone, type: BUILT_IN, members: [alice@Example.COM, kim@other.org, judy@company.com]}\n");
    let bulk: Vec<String> = (0..BULK).map(|i| format!("bulk{i}@example.com")).collect();
    y.push_str(&format!(
        "  - {{name: Big Engineering, type: OKTA_GROUP, members: [kim@other.org, {}]}}\n",
        bulk.join(", ")
    ));
    for i in 0..TEAMS {
        // Odd teams have Judy; even ones are empty (skipped by the member reads).
        let members = if i % 2 == 1 {
            "[judy@company.com]"
        } else {
            "[]"
        };
        y.push_str(&format!(
            "  - {{name: Team eng {i:03}, type: OKTA_GROUP, members: {members}}}\n"
        ));
    }
    y.push_str(
        "customRoles:\n\
         \x20 - {label: Helpdesk Lite, permissions: [okta.users.read, okta.groups.read]}\n\
         \x20 - {label: Auditor, permissions: [okta.users.read]}\n\
         roleAssignments:\n\
         \x20 - {user: alice@Example.COM, role: ORG_ADMIN}\n\
         \x20 - {user: kim@other.org, role: SUPER_ADMIN}\n\
         \x20 - {user: judy@company.com, customRole: Auditor, resourceSet: Audit Set}\n\
         \x20 - {group: Platform Engineering, role: HELP_DESK_ADMIN}\n\
         \x20 - {group: Platform Engineering, customRole: Helpdesk Lite, resourceSet: Support}\n\
         \x20 - {group: Sales, role: APP_ADMIN}\n\
         \x20 - {group: Team eng 000, role: USER_ADMIN}\n\
         rateLimits: {windowSeconds: 2}\n",
    );
    Fixture::from_yaml(&y).expect("fixture parses")
}

fn uid(h: &EmulatorHandle, login: &str) -> String {
    h.user_id(login)
        .unwrap_or_else(|| panic!("no user {login}"))
}

fn gid(h: &EmulatorHandle, name: &str) -> String {
    h.group_id(name)
        .unwrap_or_else(|| panic!("no group {name}"))
}

fn role_grant(
    kind: GrantKind,
    pt: PrincipalType,
    who: &str,
    target: &str,
    set: Option<&str>,
) -> Grant {
    Grant {
        kind,
        principal_type: pt,
        principal_id: who.into(),
        target_id: target.into(),
        resource_set: set.map(String::from),
    }
}

/// The custom-role id and resource set of the one `CUSTOM` assignment a principal holds,
/// read from Okta's own per-principal role lists.
async fn custom_assignment(
    client: &OktaClient,
    user: Option<&str>,
    group: Option<&str>,
) -> (String, String) {
    let roles = match (user, group) {
        (Some(u), _) => client.list_user_roles(u).await.unwrap(),
        (_, Some(g)) => client.list_group_roles(g).await.unwrap(),
        _ => unreachable!(),
    };
    let custom = roles
        .into_iter()
        .find(|r| {
            r.role_type == "CUSTOM"
                && (group.is_some() || r.assignment_type.as_deref() == Some("USER"))
        })
        .expect("a custom assignment");
    (
        custom.role.expect("role id"),
        custom.resource_set.expect("resource set"),
    )
}

fn memberships(s: &Snapshot) -> BTreeSet<(String, String)> {
    s.grants
        .iter()
        .filter(|g| g.kind == GrantKind::GroupMembership)
        .map(|g| (g.principal_id.clone(), g.target_id.clone()))
        .collect()
}

fn role_grants(s: &Snapshot) -> BTreeSet<Grant> {
    s.grants
        .iter()
        .filter(|g| g.kind != GrantKind::GroupMembership)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_sync_applies_every_scoping_rule() {
    let h = start(fixture()).await;
    let c = client(&h);
    let s = sync(&c, &config("example.com,company.com", "eng")).await;
    // Counted before the test's own role reads below.
    let served = h.stats();

    // Users: exact, case-insensitive domain of email or login; never secondEmail.
    let mut expected_users: BTreeSet<String> = [
        "alice@Example.COM",
        "frank@example.com",
        "gina@other.org",
        "henry@example.com",
        "ivan@example.com",
        "judy@company.com",
    ]
    .iter()
    .map(|l| uid(&h, l))
    .collect();
    expected_users.extend((0..BULK).map(|i| uid(&h, &format!("bulk{i}@example.com"))));
    let got_users: BTreeSet<String> = s.users.iter().map(|u| u.id.clone()).collect();
    assert_eq!(got_users, expected_users);
    let by_login = |l: &str| s.users.iter().find(|u| u.login == l).unwrap();
    assert!(by_login("henry@example.com").disabled);
    assert_eq!(by_login("henry@example.com").status, "DEPROVISIONED");
    assert!(by_login("ivan@example.com").disabled);
    assert!(!by_login("alice@Example.COM").disabled);
    assert_eq!(by_login("alice@Example.COM").display_name, "Alice Adams");

    // Groups: name contains "eng" anywhere, any case, any type, more than 300 of them.
    let mut expected_groups: BTreeSet<String> = [
        "Platform Engineering",
        "ENG-Ops",
        "Strength",
        "Big Engineering",
    ]
    .iter()
    .map(|n| gid(&h, n))
    .collect();
    expected_groups.extend((0..TEAMS).map(|i| gid(&h, &format!("Team eng {i:03}"))));
    let got_groups: BTreeSet<String> = s.groups.iter().map(|g| g.id.clone()).collect();
    assert_eq!(got_groups, expected_groups);
    let ops = s.groups.iter().find(|g| g.name == "ENG-Ops").unwrap();
    assert_eq!(ops.group_type, "APP_GROUP");

    // Memberships: only in-scope users in in-scope groups; Big Engineering spans two pages.
    let mut expected_members = BTreeSet::new();
    let pe = gid(&h, "Platform Engineering");
    for l in ["alice@Example.COM", "henry@example.com"] {
        expected_members.insert((uid(&h, l), pe.clone()));
    }
    expected_members.insert((uid(&h, "gina@other.org"), gid(&h, "ENG-Ops")));
    expected_members.insert((uid(&h, "alice@Example.COM"), gid(&h, "Strength")));
    let big = gid(&h, "Big Engineering");
    for i in 0..BULK {
        expected_members.insert((uid(&h, &format!("bulk{i}@example.com")), big.clone()));
    }
    for i in (1..TEAMS).step_by(2) {
        expected_members.insert((
            uid(&h, "judy@company.com"),
            gid(&h, &format!("Team eng {i:03}")),
        ));
    }
    assert_eq!(memberships(&s), expected_members);

    // Roles: direct for in-scope users, group-held for in-scope groups, custom ones keyed by
    // role id; Kim's (out of scope) and Sales' (filtered out) roles are absent, and nobody gets
    // Platform Engineering's roles as a direct grant.
    let (lite, support) = custom_assignment(&c, None, Some(&pe)).await;
    let judy = uid(&h, "judy@company.com");
    let (auditor, audit_set) = custom_assignment(&c, Some(&judy), None).await;
    use GrantKind::*;
    use PrincipalType::*;
    let expected_roles: BTreeSet<Grant> = [
        role_grant(
            RoleAssignment,
            User,
            &uid(&h, "alice@Example.COM"),
            "ORG_ADMIN",
            None,
        ),
        role_grant(RoleAssignment, Group, &pe, "HELP_DESK_ADMIN", None),
        role_grant(CustomRoleAssignment, Group, &pe, &lite, Some(&support)),
        role_grant(
            CustomRoleAssignment,
            User,
            &judy,
            &auditor,
            Some(&audit_set),
        ),
        // A group without members still reports its role.
        role_grant(
            RoleAssignment,
            Group,
            &gid(&h, "Team eng 000"),
            "USER_ADMIN",
            None,
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(role_grants(&s), expected_roles);
    assert!(s.notes.is_empty(), "{:?}", s.notes);

    // Role lists: in-scope admins (Alice, Henry, Judy) plus the 160 groups without an
    // in-scope member, versus all 5 admins plus the 160 empty groups.
    let roles = s.stats.role_plan.unwrap();
    assert_eq!(roles.strategy, RoleStrategy::GroupLists);
    assert_eq!(
        (roles.group_lists_requests, roles.assignee_lists_requests),
        (3 + 160, 5 + 160)
    );
    assert_eq!(s.stats.floor_inputs.role_requests, 163);
    let by_route = &served.requests.by_route;
    assert_eq!(by_route["GET /api/v1/users/{userId}/roles"], 3);
    assert_eq!(by_route["GET /api/v1/groups/{groupId}/roles"], 160);

    // Custom roles with permissions; every standard role type.
    let lite_role = s.custom_roles.iter().find(|r| r.id == lite).unwrap();
    assert_eq!(lite_role.label, "Helpdesk Lite");
    assert_eq!(
        lite_role.permissions,
        ["okta.groups.read", "okta.users.read"]
    );
    assert_eq!(
        s.roles.len(),
        okta_ciam_operator::okta::STANDARD_ROLE_TYPES.len()
    );

    // The cheaper membership way was chosen: 165 member pages versus 1106 users.
    let plan = s.stats.membership_plan.unwrap();
    assert_eq!(plan.strategy, MembershipStrategy::PerGroup);
    assert_eq!(plan.per_group_requests, 1 + 1 + 1 + 2 + (TEAMS as u64 / 2));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn few_users_read_memberships_per_user_and_keep_group_roles_of_all_groups() {
    let h = start(fixture()).await;
    let c = client(&h);
    let s = sync(&c, &config("company.com", "")).await;
    let judy = uid(&h, "judy@company.com");
    assert_eq!(s.users.len(), 1);
    assert_eq!(s.users[0].id, judy);
    // Without a filter every group is in scope.
    assert_eq!(s.groups.len(), 7 + TEAMS);
    let plan = s.stats.membership_plan.unwrap();
    assert_eq!(plan.strategy, MembershipStrategy::PerUser);
    assert_eq!(plan.per_user_requests, 1);

    let mut expected = BTreeSet::new();
    for g in ["Sales", "Everyone"] {
        expected.insert((judy.clone(), gid(&h, g)));
    }
    for i in (1..TEAMS).step_by(2) {
        expected.insert((judy.clone(), gid(&h, &format!("Team eng {i:03}"))));
    }
    assert_eq!(memberships(&s), expected);

    let pe = gid(&h, "Platform Engineering");
    let targets: BTreeSet<(PrincipalType, String, String)> = role_grants(&s)
        .into_iter()
        .map(|g| (g.principal_type, g.principal_id, g.target_id))
        .collect();
    assert!(targets.contains(&(PrincipalType::Group, gid(&h, "Sales"), "APP_ADMIN".into())));
    assert!(targets.contains(&(PrincipalType::Group, pe.clone(), "HELP_DESK_ADMIN".into())));
    let empty_team = gid(&h, "Team eng 000");
    assert!(targets.contains(&(PrincipalType::Group, empty_team, "USER_ADMIN".into())));
    assert_eq!(targets.len(), 5, "{targets:?}");
    // One in-scope admin but 165 groups without Judy: reading all 5 admins' lists and the
    // 160 empty groups' is cheaper, and Kim's own SUPER_ADMIN is still not reported.
    let roles = s.stats.role_plan.unwrap();
    assert_eq!(roles.strategy, RoleStrategy::AssigneeLists);
    assert_eq!(
        (roles.group_lists_requests, roles.assignee_lists_requests),
        (1 + 165, 5 + 160)
    );
    // Nothing about users outside company.com.
    assert!(
        s.grants
            .iter()
            .all(|g| g.principal_type == PrincipalType::Group || g.principal_id == judy)
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_syncs_are_byte_identical() {
    let h = start(fixture()).await;
    let c = client(&h);
    let cfg = config("example.com,company.com", "eng");
    let a = sync(&c, &cfg).await;
    let b = sync(&c, &cfg).await;
    let lists = |s: &Snapshot| {
        serde_json::to_string(&(&s.users, &s.groups, &s.roles, &s.custom_roles, &s.grants)).unwrap()
    };
    assert_eq!(lists(&a), lists(&b));
    // The written files differ only in times (the log cursor's too) and counters.
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.json"), dir.path().join("b.json"));
    a.write_atomic(&pa).unwrap();
    b.write_atomic(&pb).unwrap();
    let strip = |p: &std::path::Path| {
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("syncedAt");
        v.as_object_mut().unwrap().remove("stats");
        v.as_object_mut().unwrap().remove("logCursor");
        v
    };
    assert_eq!(strip(&pa), strip(&pb));
    h.shutdown().await;
}
