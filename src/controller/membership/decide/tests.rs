//! Unit and property tests of the membership decisions.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;

const ME: &str = "identity/oncall-alice";
const OTHER: &str = "identity/oncall-bob";
const GROUP_ID: &str = "00gENG";

fn now() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

fn connector() -> ConnectorFacts {
    ConnectorFacts {
        name: "acme".into(),
        ready: true,
        provisioning: true,
        suspended: false,
        has_client: true,
        email_domains: vec!["example.com".into()],
        group_name_filter: Some("engineering".into()),
    }
}

fn group() -> GroupLookup {
    GroupLookup::Found(OktaGroup {
        id: GROUP_ID.into(),
        name: "Engineering On-Call".into(),
        group_type: "OKTA_GROUP".into(),
    })
}

fn id(name: &str) -> String {
    format!("00u{name}")
}

fn okta_user(name: &str) -> OktaUser {
    OktaUser {
        id: id(name),
        login: format!("{name}@example.com"),
        email: Some(format!("{name}@example.com")),
        status: "ACTIVE".into(),
    }
}

fn entry(name: &str) -> String {
    format!("{name}@example.com")
}

fn declared(name: &str) -> DeclaredUser {
    DeclaredUser {
        user: entry(name),
        lookup: UserLookup::Found(okta_user(name)),
    }
}

fn input(users: &[&str]) -> Input {
    Input {
        provisioning: true,
        owner: ME.into(),
        connector: Some(connector()),
        group: group(),
        users: users.iter().map(|u| declared(u)).collect(),
        members: BTreeSet::new(),
        record: GroupRecord::default(),
        record_located: true,
        group_id: None,
        others: BTreeMap::new(),
        lifecycle: Lifecycle::Live,
        expiry: Expiry::Never,
        effective_since: None,
        previous: Vec::new(),
        now: now(),
        policy: PolicyFacts::default(),
    }
}

fn members(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| id(n)).collect()
}

fn ids(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|n| id(n)).collect();
    v.sort();
    v
}

fn ownership(origin: Origin, claimants: &[&str]) -> Ownership {
    Ownership {
        origin,
        claimants: claimants.iter().map(|c| c.to_string()).collect(),
    }
}

fn record(entries: &[(&str, Origin, &[&str])]) -> GroupRecord {
    GroupRecord {
        members: entries
            .iter()
            .map(|(name, origin, claimants)| (id(name), ownership(*origin, claimants)))
            .collect(),
    }
}

fn no_failures() -> BTreeMap<String, WriteError> {
    BTreeMap::new()
}

/// Plays the reconciler without crashes: decide, persist, write into `members`, settle,
/// and feed the outcome back into `input` for the next round.
fn round(input: &mut Input) -> (Plan, Outcome) {
    let plan = decide(input);
    for u in &plan.grants {
        input.members.insert(u.clone());
    }
    for u in &plan.revokes {
        input.members.remove(u);
    }
    let out = plan.settle(&no_failures());
    feed(input, &out);
    (plan, out)
}

fn feed(input: &mut Input, out: &Outcome) {
    input.record = out.record.clone();
    input.previous = out.users.clone();
    input.effective_since = out.effective_since;
}

fn user_row<'a>(out: &'a Outcome, name: &str) -> &'a UserStatus {
    out.users
        .iter()
        .find(|u| u.user == entry(name) || u.user_id.as_deref() == Some(&id(name)))
        .unwrap_or_else(|| panic!("no row for {name}: {:?}", out.users))
}

fn event_reasons(out: &Outcome) -> Vec<(EventType, &'static str)> {
    out.events
        .iter()
        .map(|e| (e.event_type, e.reason.as_str()))
        .collect()
}

// ---- scope rules ----------------------------------------------------------------------

fn scoped(login: &str, email: Option<&str>) -> bool {
    let user = OktaUser {
        id: "00u1".into(),
        login: login.into(),
        email: email.map(str::to_string),
        status: "ACTIVE".into(),
    };
    user_in_scope(&user, &["example.com".into(), "Company.com".into()])
}

#[test]
fn user_scope_is_the_exact_domain_after_the_last_at_case_insensitively() {
    assert!(scoped("alice", Some("alice@Example.COM")));
    assert!(scoped("alice@company.COM", None));
    assert!(scoped("odd@name@example.com", None));
    assert!(!scoped("bob", Some("bob@eng.example.com")));
    assert!(!scoped("x", Some("x@example.community")));
    assert!(!scoped("y", Some("y@example.com.evil.io")));
    assert!(
        !scoped("example.com", None),
        "a login without @ has no domain"
    );
    assert!(!scoped("z@", Some("z@")));
}

#[test]
fn user_scope_accepts_login_domain_when_email_is_outside() {
    assert!(scoped("carol@example.com", Some("carol@gmail.com")));
    assert!(scoped("carol@gmail.com", Some("carol@example.com")));
    assert!(!scoped("carol@gmail.com", Some("carol@gmail.com")));
}

#[test]
fn empty_email_domains_admit_nobody() {
    let user = okta_user("alice");
    assert!(!user_in_scope(&user, &[]));
    assert!(!user_in_scope(&user, &[String::new()]));
}

#[test]
fn group_filter_matches_anywhere_case_insensitively() {
    assert!(group_in_scope("Engineering On-Call", None));
    assert!(group_in_scope("Engineering On-Call", Some("")));
    assert!(group_in_scope("Platform ENG on-call", Some("eng")));
    assert!(group_in_scope("Engineering On-Call", Some("ON-CALL")));
    assert!(!group_in_scope("Sales", Some("eng")));
}

// ---- guard rails ----------------------------------------------------------------------

#[test]
fn connector_guard_rails_in_order() {
    assert_eq!(
        check_connector(None).unwrap_err().reason,
        Reason::ConnectorNotFound
    );
    let mut c = connector();
    c.ready = false;
    c.provisioning = false;
    c.suspended = true;
    assert_eq!(
        check_connector(Some(&c)).unwrap_err().reason,
        Reason::ConnectorNotReady
    );
    c.ready = true;
    assert_eq!(
        check_connector(Some(&c)).unwrap_err().reason,
        Reason::ProvisioningDisabled
    );
    c.provisioning = true;
    let refusal = check_connector(Some(&c)).unwrap_err();
    assert_eq!(refusal.reason, Reason::ConnectorSuspended);
    assert!(refusal.message.contains("acme"));
    c.suspended = false;
    assert!(check_connector(Some(&c)).is_ok());
}

#[test]
fn the_operator_switch_refuses_every_write_first_and_names_the_flag() {
    assert!(check_operator(true).is_ok());
    let refusal = check_operator(false).unwrap_err();
    assert_eq!(refusal.reason, Reason::ProvisioningDisabled);
    assert!(
        refusal.message.contains("--provisioning"),
        "{}",
        refusal.message
    );
    assert!(refusal.message.contains("BATON_PROVISIONING"));

    // Off: nothing is granted, even for a missing connector or a deletion; the operator's
    // own grant that is no longer declared is still revoked through an existing connector.
    let mut held = input(&["alice"]);
    held.members = BTreeSet::from([id("alice")]);
    held.record = GroupRecord::decode(&format!(
        r#"{{"v":1,"members":{{"{}":{{"origin":"Granted","claimants":["{ME}"]}}}}}}"#,
        id("bob")
    ))
    .unwrap();
    held.members.insert(id("bob"));
    for mut case in [input(&["alice", "bob"]), held] {
        case.provisioning = false;
        for connector in [None, case.connector.clone()] {
            let mut case = case.clone();
            case.connector = connector;
            let plan = decide(&case);
            assert!(plan.grants.is_empty(), "{plan:?}");
            let lets_go_of_bob = case.connector.is_some() && case.users.len() == 1;
            let revokes = if lets_go_of_bob {
                ids(&["bob"])
            } else {
                Vec::new()
            };
            assert_eq!(plan.revokes, revokes);
            let out = plan.settle(&BTreeMap::new());
            assert_eq!(out.ready.reason, Reason::ProvisioningDisabled);
            assert!(!out.ready.status);
        }
    }
}

#[test]
fn scope_rules_are_the_syncs() {
    // A leading '@' and blank entries are normalised as the sync does; an invalid list
    // admits nobody rather than part of it.
    let user = okta_user("alice");
    assert!(user_in_scope(&user, &["@Example.com".into(), " ".into()]));
    assert!(!user_in_scope(
        &user,
        &["example.com".into(), "not a domain".into()]
    ));
    // ASCII-only case folding: a Kelvin sign is not a 'k'.
    let kelvin = OktaUser {
        login: "a@\u{212A}.io".into(),
        email: None,
        ..okta_user("a")
    };
    assert!(!user_in_scope(&kelvin, &["k.io".into()]));
    assert!(!group_in_scope("Eng\nOps", Some("g\n")));
}

#[test]
fn group_guard_rails() {
    let c = connector();
    assert_eq!(
        check_group(&GroupLookup::NotFound, &c).unwrap_err().reason,
        Reason::GroupNotFound
    );
    let app = GroupLookup::Found(OktaGroup {
        id: "00gAPP".into(),
        name: "Engineering AD".into(),
        group_type: "APP_GROUP".into(),
    });
    assert_eq!(
        check_group(&app, &c).unwrap_err().reason,
        Reason::GroupNotOktaManaged
    );
    let sales = GroupLookup::Found(OktaGroup {
        id: "00gSALES".into(),
        name: "Sales".into(),
        group_type: "OKTA_GROUP".into(),
    });
    let refusal = check_group(&sales, &c).unwrap_err();
    assert_eq!(refusal.reason, Reason::GroupOutOfScope);
    assert!(refusal.message.contains("Sales"));
    assert_eq!(check_group(&group(), &c).unwrap().id, GROUP_ID);
}

#[test]
fn user_guard_rails() {
    let c = connector();
    let reason = |lookup: UserLookup| check_user("x", &lookup, &c).unwrap_err().reason;
    assert_eq!(reason(UserLookup::NotFound), Reason::UserNotFound);
    assert_eq!(
        reason(UserLookup::Ambiguous { matches: 2 }),
        Reason::UserAmbiguous
    );
    let mut outside = okta_user("eve");
    outside.login = "eve@evil.io".into();
    outside.email = Some("eve@evil.io".into());
    outside.status = "SUSPENDED".into();
    assert_eq!(
        reason(UserLookup::Found(outside)),
        Reason::UserOutOfScope,
        "the tenant boundary is checked before the status"
    );
    for status in [
        "SUSPENDED",
        "DEPROVISIONED",
        "deprovisioned",
        "STAGED",
        "PROVISIONED",
        "LOCKED_OUT",
        "SOME_FUTURE_STATUS",
    ] {
        let mut u = okta_user("dave");
        u.status = status.into();
        assert_eq!(
            reason(UserLookup::Found(u)),
            Reason::UserInactive,
            "{status}"
        );
    }
    for status in ["ACTIVE", "PASSWORD_EXPIRED", "RECOVERY", "active"] {
        let mut u = okta_user("dave");
        u.status = status.into();
        assert!(check_user("x", &UserLookup::Found(u), &c).is_ok());
    }
}

#[test]
fn every_connector_refusal_blocks_every_write_and_warns_once() {
    let cases: Vec<(Option<ConnectorFacts>, Reason)> = vec![
        (None, Reason::ConnectorNotFound),
        (
            Some(ConnectorFacts {
                ready: false,
                ..connector()
            }),
            Reason::ConnectorNotReady,
        ),
        (
            Some(ConnectorFacts {
                provisioning: false,
                ..connector()
            }),
            Reason::ProvisioningDisabled,
        ),
        (
            Some(ConnectorFacts {
                suspended: true,
                ..connector()
            }),
            Reason::ConnectorSuspended,
        ),
    ];
    for (facts, reason) in cases {
        let mut input = input(&["alice", "bob"]);
        input.connector = facts;
        input.group = GroupLookup::NotLookedUp;
        input
            .users
            .iter_mut()
            .for_each(|u| u.lookup = UserLookup::NotLookedUp);
        input.record = record(&[("carol", Origin::Granted, &[ME])]);
        input.members = members(&["carol"]);
        let (plan, out) = round(&mut input);
        assert!(!plan.has_writes(), "{reason}");
        assert_eq!(out.record, input.record, "claims survive a refusal");
        assert!(!out.ready.status);
        assert_eq!(out.ready.reason, reason);
        assert!(out.ready.message.contains("alice@example.com"));
        assert_eq!(user_row(&out, "alice").state, UserState::Failed);
        let carol = user_row(&out, "carol");
        assert_eq!(carol.reason, Reason::RevocationWaiting);
        assert!(
            carol.message.starts_with("revocation waits ("),
            "{}",
            carol.message
        );
        assert_eq!(
            event_reasons(&out),
            vec![
                (EventType::Warning, reason.as_str()),
                (EventType::Warning, "RevocationWaiting")
            ]
        );
        // The same refusal next round is not announced again.
        let (_, again) = round(&mut input);
        assert!(again.events.is_empty(), "{:?}", again.events);
    }
}

#[test]
fn group_refusals_block_writes() {
    for (lookup, reason) in [
        (GroupLookup::NotFound, Reason::GroupNotFound),
        (
            GroupLookup::Found(OktaGroup {
                id: "00gAD".into(),
                name: "Engineering AD".into(),
                group_type: "APP_GROUP".into(),
            }),
            Reason::GroupNotOktaManaged,
        ),
        (
            GroupLookup::Found(OktaGroup {
                id: "00gS".into(),
                name: "Sales".into(),
                group_type: "OKTA_GROUP".into(),
            }),
            Reason::GroupOutOfScope,
        ),
    ] {
        let mut input = input(&["alice"]);
        input.group = lookup;
        let (plan, out) = round(&mut input);
        assert!(!plan.has_writes());
        assert_eq!(out.ready.reason, reason);
        assert!(out.record.members.is_empty());
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.events[0].event_type, EventType::Warning);
    }
}

#[test]
fn refused_users_get_no_write_and_the_rest_proceed() {
    let mut input = input(&["alice", "ghost", "twin", "eve", "dave"]);
    input.users[1].lookup = UserLookup::NotFound;
    input.users[2].lookup = UserLookup::Ambiguous { matches: 2 };
    let mut eve = okta_user("eve");
    eve.email = Some("eve@example.com.evil.io".into());
    eve.login = "eve".into();
    input.users[3].lookup = UserLookup::Found(eve);
    let mut dave = okta_user("dave");
    dave.status = "SUSPENDED".into();
    input.users[4].lookup = UserLookup::Found(dave);
    let (plan, out) = round(&mut input);
    assert_eq!(plan.grants, ids(&["alice"]));
    assert_eq!(user_row(&out, "alice").state, UserState::Granted);
    for (name, reason) in [
        ("ghost", Reason::UserNotFound),
        ("twin", Reason::UserAmbiguous),
        ("eve", Reason::UserOutOfScope),
        ("dave", Reason::UserInactive),
    ] {
        let row = user_row(&out, name);
        assert_eq!(
            (row.state, row.reason),
            (UserState::Failed, reason),
            "{name}"
        );
    }
    assert!(!out.ready.status);
    assert_eq!(out.ready.reason, Reason::UserOutOfScope, "most important");
    for name in ["ghost", "twin", "eve", "dave"] {
        assert!(
            out.ready.message.contains(&entry(name)),
            "{}",
            out.ready.message
        );
    }
    let warnings: Vec<_> = out
        .events
        .iter()
        .filter(|e| e.event_type == EventType::Warning)
        .map(|e| e.reason.as_str())
        .collect();
    assert_eq!(
        warnings,
        [
            "UserOutOfScope",
            "UserNotFound",
            "UserAmbiguous",
            "UserInactive"
        ]
    );
}

#[test]
fn inactive_member_is_reported_and_kept() {
    let mut input = input(&["dave"]);
    let mut dave = okta_user("dave");
    dave.status = "DEPROVISIONED".into();
    input.users[0].lookup = UserLookup::Found(dave);
    input.members = members(&["dave"]);
    input.record = record(&[("dave", Origin::Granted, &[ME])]);
    let (plan, out) = round(&mut input);
    assert!(!plan.has_writes());
    assert_eq!(out.record, record(&[("dave", Origin::Granted, &[ME])]));
    let row = user_row(&out, "dave");
    assert_eq!(
        (row.state, row.reason),
        (UserState::Failed, Reason::UserInactive)
    );
    assert_eq!(row.origin, Some(Origin::Granted));
    assert_eq!(out.ready.reason, Reason::UserInactive);
}

#[test]
fn transient_lookup_failure_keeps_the_claim() {
    let mut input = input(&["alice"]);
    round(&mut input);
    assert_eq!(input.record, record(&[("alice", Origin::Granted, &[ME])]));
    input.users[0].lookup = UserLookup::Ambiguous { matches: 2 };
    let (plan, out) = round(&mut input);
    assert!(!plan.has_writes(), "an ambiguous lookup is not a removal");
    assert_eq!(out.record, record(&[("alice", Origin::Granted, &[ME])]));
    assert_eq!(user_row(&out, "alice").user_id, Some(id("alice")));
}

// ---- users the index answered are read again before a PUT -----------------------------

#[test]
fn only_grants_the_index_answered_are_read_again() {
    let mut input = input(&["alice", "bob", "carol"]);
    // carol is a member already: nothing is written for her, so she is not re-read.
    input.members = members(&["carol"]);
    let plan = decide(&input);
    assert_eq!(plan.grants, ids(&["alice", "bob"]));
    // bob came from an Okta search this round.
    let fresh = BTreeSet::from([id("bob")]);
    assert_eq!(
        unconfirmed_grants(&plan, &fresh),
        vec![id("alice").as_str()]
    );
    let all = BTreeSet::from([id("alice"), id("bob")]);
    assert!(unconfirmed_grants(&plan, &all).is_empty());
}

#[test]
fn a_drift_regrant_is_read_again_too() {
    let mut input = input(&["alice"]);
    round(&mut input);
    input.members.clear();
    let plan = decide(&input);
    assert_eq!(plan.grants, ids(&["alice"]));
    assert_eq!(
        unconfirmed_grants(&plan, &BTreeSet::new()),
        vec![id("alice").as_str()]
    );
}

#[test]
fn okta_answers_that_change_the_guard_rails_replace_the_index_and_stop_the_put() {
    let c = connector();
    let mut input = input(&["alice", "bob", "dave", "erin", "frank"]);
    let plan = decide(&input);
    assert_eq!(plan.grants.len(), 5);
    let mut moved = okta_user("alice");
    moved.login = "alice@elsewhere.org".into();
    moved.email = Some("alice@elsewhere.org".into());
    let mut suspended = okta_user("bob");
    suspended.status = "SUSPENDED".into();
    // dave's login changed inside the domains: the guard rails answer the same.
    let mut renamed = okta_user("dave");
    renamed.login = "david@example.com".into();
    let reread = BTreeMap::from([
        (id("alice"), UserLookup::Found(moved.clone())),
        (id("bob"), UserLookup::Found(suspended)),
        (id("dave"), UserLookup::Found(renamed)),
        (id("erin"), UserLookup::NotLookedUp),
        (id("frank"), UserLookup::NotFound),
    ]);
    let users = reconfirm(&input.users, &reread, &c).expect("answers changed");
    assert_eq!(users[0].lookup, UserLookup::Found(moved));
    assert_eq!(
        users[2], input.users[2],
        "an unchanged answer keeps the index's"
    );
    input.users = users;
    let plan = decide(&input);
    assert_eq!(plan.grants, ids(&["dave"]));
    assert_eq!(plan.record, record(&[("dave", Origin::Granted, &[ME])]));
    let out = plan.settle(&no_failures());
    let reason = |name: &str| {
        let row = user_row(&out, name);
        (row.state, row.reason)
    };
    assert_eq!(reason("alice"), (UserState::Failed, Reason::UserOutOfScope));
    assert_eq!(reason("bob"), (UserState::Failed, Reason::UserInactive));
    assert_eq!(reason("erin"), (UserState::Pending, Reason::Pending));
    assert_eq!(reason("frank"), (UserState::Failed, Reason::UserNotFound));
    assert_eq!(reason("dave"), (UserState::Granted, Reason::Granted));
}

#[test]
fn okta_agreeing_with_the_index_keeps_the_plan() {
    let input = input(&["alice"]);
    let reread = BTreeMap::from([(id("alice"), UserLookup::Found(okta_user("alice")))]);
    assert_eq!(reconfirm(&input.users, &reread, &connector()), None);
    assert_eq!(
        reconfirm(&input.users, &BTreeMap::new(), &connector()),
        None
    );
}

// ---- grant, preexisting, removal ------------------------------------------------------

#[test]
fn grant_records_intent_before_the_write() {
    let input = input(&["alice", "bob"]);
    let plan = decide(&input);
    assert_eq!(plan.grants, ids(&["alice", "bob"]));
    assert!(plan.revokes.is_empty());
    assert_eq!(plan.group_id.as_deref(), Some(GROUP_ID));
    assert_eq!(
        plan.record,
        record(&[
            ("alice", Origin::Granted, &[ME]),
            ("bob", Origin::Granted, &[ME])
        ]),
        "the record to persist before the PUT already owns the grant"
    );
    let out = plan.settle(&no_failures());
    assert!(out.ready.status, "{:?}", out.ready);
    assert_eq!(out.ready.reason, Reason::Granted);
    assert_eq!(out.effective_since, Some(now()));
    assert_eq!(event_reasons(&out), vec![(EventType::Normal, "Granted")]);
    assert!(out.events[0].message.contains("alice@example.com"));
    let row = user_row(&out, "alice");
    assert_eq!(row.origin, Some(Origin::Granted));
    assert_eq!(row.last_transition_time, now());
    assert!(!out.remove_finalizer && !out.retry);
    assert_eq!(out.requeue_at, None);
}

#[test]
fn preexisting_membership_is_adopted_and_never_removed() {
    let mut input = input(&["alice", "bob"]);
    input.members = members(&["alice"]);
    let (plan, out) = round(&mut input);
    assert_eq!(plan.grants, ids(&["bob"]));
    assert_eq!(user_row(&out, "alice").origin, Some(Origin::Preexisting));
    assert_eq!(user_row(&out, "alice").reason, Reason::Preexisting);
    assert_eq!(
        input.record.members[&id("alice")].origin,
        Origin::Preexisting
    );
    // Removing both: bob (granted) is revoked, alice (preexisting) stays.
    input.users.clear();
    let (plan, out) = round(&mut input);
    assert_eq!(plan.revokes, ids(&["bob"]));
    assert!(input.members.contains(&id("alice")));
    assert!(out.record.members.is_empty(), "{:?}", out.record);
    assert_eq!(event_reasons(&out), vec![(EventType::Normal, "Revoked")]);
    assert!(out.users.is_empty(), "released entries leave the status");
}

#[test]
fn removing_a_user_revokes_only_that_grant() {
    let mut input = input(&["alice", "bob"]);
    round(&mut input);
    input.users.retain(|u| u.user != entry("bob"));
    let plan = decide(&input);
    assert_eq!(plan.revokes, ids(&["bob"]));
    assert!(plan.grants.is_empty());
    assert!(
        plan.record.members.contains_key(&id("bob")),
        "ownership is kept until the DELETE is confirmed"
    );
    let out = plan.settle(&no_failures());
    assert_eq!(out.record, record(&[("alice", Origin::Granted, &[ME])]));
    assert_eq!(out.users.len(), 1);
    assert!(out.ready.status);
}

#[test]
fn duplicate_entries_for_one_user_make_one_write() {
    let mut input = input(&["alice"]);
    input.users.push(DeclaredUser {
        user: id("alice"),
        lookup: UserLookup::Found(okta_user("alice")),
    });
    let (plan, out) = round(&mut input);
    assert_eq!(plan.grants, ids(&["alice"]));
    assert_eq!(out.users.len(), 2);
    assert!(out.users.iter().all(|u| u.state == UserState::Granted));
}

#[test]
fn grant_failure_is_reported_and_retried_then_released_if_undeclared() {
    let mut input = input(&["alice"]);
    let plan = decide(&input);
    let failures = BTreeMap::from([(id("alice"), WriteError::Failed("HTTP 503".into()))]);
    let out = plan.settle(&failures);
    assert!(out.retry);
    let row = user_row(&out, "alice");
    assert_eq!(
        (row.state, row.reason),
        (UserState::Failed, Reason::GrantFailed)
    );
    assert!(row.message.contains("HTTP 503"));
    assert_eq!(out.ready.reason, Reason::GrantFailed);
    assert_eq!(out.effective_since, None, "nothing is effective yet");
    assert_eq!(
        event_reasons(&out),
        vec![(EventType::Warning, "GrantFailed")]
    );
    feed(&mut input, &out);
    // The user is dropped before any PUT succeeded: the intent is released, no DELETE.
    input.users.clear();
    let (plan, out) = round(&mut input);
    assert!(!plan.has_writes());
    assert!(out.record.members.is_empty());
}

#[test]
fn last_transition_time_moves_only_with_the_state() {
    let mut input = input(&["alice"]);
    round(&mut input);
    let later = now() + hours(1);
    input.now = later;
    let (_, out) = round(&mut input);
    assert_eq!(user_row(&out, "alice").last_transition_time, now());
    input.members.clear(); // drift
    let (_, out) = round(&mut input);
    assert_eq!(user_row(&out, "alice").last_transition_time, now());
    input.users[0].lookup = UserLookup::NotFound;
    let (_, out) = round(&mut input);
    assert_eq!(user_row(&out, "alice").last_transition_time, later);
}

// ---- shared ownership -----------------------------------------------------------------

fn as_owner(input: &Input, owner: &str) -> Input {
    Input {
        owner: owner.into(),
        ..input.clone()
    }
}

#[test]
fn shared_membership_is_revoked_only_when_the_last_owner_lets_go() {
    let mut a = input(&["alice"]);
    round(&mut a);
    // B declares the same user: it joins the claim without a write.
    let mut b = as_owner(&a, OTHER);
    b.previous.clear();
    let (plan, out) = round(&mut b);
    assert!(!plan.has_writes());
    assert_eq!(user_row(&out, "alice").origin, Some(Origin::Granted));
    assert_eq!(
        out.record,
        record(&[("alice", Origin::Granted, &[ME, OTHER])])
    );
    // A lets go: no DELETE while B holds it.
    a.record = out.record.clone();
    a.users.clear();
    a.others = BTreeMap::from([(OTHER.to_string(), members(&["alice"]))]);
    let (plan, out) = round(&mut a);
    assert!(!plan.has_writes());
    assert_eq!(out.record, record(&[("alice", Origin::Granted, &[OTHER])]));
    // B lets go: it was the last owner, so the grant is revoked.
    b.record = out.record.clone();
    b.users.clear();
    let (plan, out) = round(&mut b);
    assert_eq!(plan.revokes, ids(&["alice"]));
    assert!(out.record.members.is_empty());
}

#[test]
fn a_live_declaration_not_yet_recorded_blocks_the_revoke_and_inherits_the_claim() {
    let mut a = input(&["alice"]);
    round(&mut a);
    a.users.clear();
    a.others = BTreeMap::from([(OTHER.to_string(), members(&["alice"]))]);
    let (plan, out) = round(&mut a);
    assert!(!plan.has_writes());
    assert_eq!(
        out.record,
        record(&[("alice", Origin::Granted, &[OTHER])]),
        "the grant stays owned, so B can revoke it later"
    );
}

#[test]
fn others_claims_are_never_dropped() {
    let mut a = input(&[]);
    a.record = record(&[
        ("alice", Origin::Granted, &[OTHER]),
        ("bob", Origin::Granted, &[ME, OTHER]),
    ]);
    a.members = members(&["alice", "bob"]);
    let (plan, out) = round(&mut a);
    assert!(!plan.has_writes());
    assert_eq!(
        out.record,
        record(&[
            ("alice", Origin::Granted, &[OTHER]),
            ("bob", Origin::Granted, &[OTHER])
        ])
    );
}

// ---- deletion -------------------------------------------------------------------------

#[test]
fn delete_with_revoke_revokes_then_releases_the_finalizer() {
    let mut input = input(&["alice", "bob"]);
    input.members = members(&["bob"]);
    round(&mut input);
    input.lifecycle = Lifecycle::Deleting(DeletionPolicy::Revoke);
    let plan = decide(&input);
    assert_eq!(plan.revokes, ids(&["alice"]), "bob is preexisting");
    let failed = plan.settle(&BTreeMap::from([(
        id("alice"),
        WriteError::Failed("HTTP 500".into()),
    )]));
    assert!(!failed.remove_finalizer && failed.retry);
    assert_eq!(user_row(&failed, "alice").reason, Reason::RevokeFailed);
    assert_eq!(failed.ready.reason, Reason::Deleting);
    let out = plan.settle(&no_failures());
    assert!(out.remove_finalizer);
    assert!(out.record.members.is_empty());
    assert_eq!(user_row(&out, "alice").state, UserState::Revoked);
    assert_eq!(user_row(&out, "bob").reason, Reason::Retained);
}

#[test]
fn revoke_of_a_vanished_user_counts_as_done() {
    let mut input = input(&["alice"]);
    round(&mut input);
    input.lifecycle = Lifecycle::Deleting(DeletionPolicy::Revoke);
    let plan = decide(&input);
    let out = plan.settle(&BTreeMap::from([(
        id("alice"),
        WriteError::NotFound("E0000007".into()),
    )]));
    assert!(out.remove_finalizer && !out.retry);
}

#[test]
fn delete_with_retain_makes_no_write_and_releases_immediately() {
    let mut input = input(&["alice"]);
    round(&mut input);
    input.lifecycle = Lifecycle::Deleting(DeletionPolicy::Retain);
    input.connector = None; // Retain does not even need the connector.
    let (plan, out) = round(&mut input);
    assert!(!plan.has_writes());
    assert!(out.remove_finalizer);
    assert!(out.record.members.is_empty());
    assert_eq!(user_row(&out, "alice").reason, Reason::Retained);
}

#[test]
fn a_refused_grant_releases_its_intent_so_a_later_manual_add_is_never_revoked() {
    let mut input = input(&["alice"]);
    input.record = record(&[("alice", Origin::Granted, &[OTHER])]);
    let plan = decide(&input);
    assert_eq!(plan.grants, ids(&["alice"]));
    assert!(plan.record.members[&id("alice")].claimants.contains(ME));
    let refused = BTreeMap::from([(
        id("alice"),
        WriteError::Refused("HTTP 403 E0000006: You do not have permission".into()),
    )]);
    let out = plan.settle(&refused);
    assert!(out.retry, "a refusal is retried with back-off");
    assert_eq!(
        out.record,
        record(&[("alice", Origin::Granted, &[OTHER])]),
        "only this plan's claim goes"
    );
    let row = user_row(&out, "alice");
    assert_eq!(
        (row.state, row.origin, row.reason),
        (UserState::Failed, None, Reason::GrantFailed)
    );
    assert!(row.message.contains("E0000006"), "{}", row.message);

    // Alone, a refused PUT leaves no record behind; someone then adds alice by hand and the
    // entry is dropped: her membership is preexisting, never revoked.
    let mut input = self::input(&["alice"]);
    let out = decide(&input).settle(&refused);
    assert_eq!(out.record, GroupRecord::default());
    feed(&mut input, &out);
    input.members = members(&["alice"]);
    let (plan, out) = round(&mut input);
    assert!(!plan.has_writes());
    assert_eq!(user_row(&out, "alice").origin, Some(Origin::Preexisting));
    input.users.clear();
    let (plan, _) = round(&mut input);
    assert!(plan.revokes.is_empty(), "{plan:?}");

    // A 5xx leaves the outcome unknown: the intent stays.
    let input = self::input(&["alice"]);
    let failed = BTreeMap::from([(id("alice"), WriteError::Failed("HTTP 503".into()))]);
    let out = decide(&input).settle(&failed);
    assert!(out.record.members[&id("alice")].claimants.contains(ME));
}

#[test]
fn an_unresolved_entry_blocks_revoking_claims_it_may_name() {
    // A crash after the write-ahead record, before the first status: alice's claim has no
    // status row, and her lookup fails this round.
    let mut input = input(&["alice", "bob"]);
    input.record = record(&[("alice", Origin::Granted, &[ME])]);
    input.members = members(&["alice"]);
    input.users[0].lookup = UserLookup::NotLookedUp;
    let (plan, out) = round(&mut input);
    assert!(plan.revokes.is_empty(), "{plan:?}");
    assert_eq!(plan.grants, ids(&["bob"]), "resolved entries still proceed");
    assert_eq!(
        out.record.members[&id("alice")].claimants,
        BTreeSet::from([ME.to_string()])
    );
    assert_eq!(user_row(&out, "alice").state, UserState::Pending);
    // Once the entry resolves, it is hers and stays.
    input.users[0] = declared("alice");
    let (plan, out) = round(&mut input);
    assert!(!plan.has_writes());
    assert_eq!(user_row(&out, "alice").state, UserState::Granted);
    // A definite answer lets go: bob's entry is edited to someone unknown.
    input.users[1].lookup = UserLookup::NotFound;
    input.previous.retain(|p| p.user != entry("bob"));
    let (plan, _) = round(&mut input);
    assert_eq!(plan.revokes, ids(&["bob"]));
}

#[test]
fn a_renamed_group_is_refused_while_live_and_let_go_of_by_id() {
    let mut input = input(&["alice"]);
    round(&mut input);
    let renamed = GroupLookup::Renamed {
        group: OktaGroup {
            id: GROUP_ID.into(),
            name: "Engineering Primary".into(),
            group_type: "OKTA_GROUP".into(),
        },
        declared: "Engineering On-Call".into(),
    };
    input.group = renamed;
    input.users.push(declared("bob"));
    let (plan, out) = round(&mut input);
    assert!(
        !plan.has_writes(),
        "nothing granted into a group the spec no longer names"
    );
    assert_eq!(out.record, record(&[("alice", Origin::Granted, &[ME])]));
    assert_eq!(out.ready.reason, Reason::GroupRenamed);
    let row = user_row(&out, "alice");
    assert_eq!(row.reason, Reason::GroupRenamed);
    assert!(
        row.message.contains("Engineering Primary"),
        "{}",
        row.message
    );
    assert_eq!(out.group_id.as_deref(), Some(GROUP_ID));
    assert!(
        event_reasons(&out).contains(&(EventType::Warning, "GroupRenamed")),
        "{:?}",
        out.events
    );
    // Deleted: the grant is revoked in the group it was made in, then the finalizer goes.
    input.lifecycle = Lifecycle::Deleting(DeletionPolicy::Revoke);
    let (plan, out) = round(&mut input);
    assert_eq!(plan.revokes, ids(&["alice"]));
    assert_eq!(user_row(&out, "alice").reason, Reason::Revoked);
    assert!(out.remove_finalizer);
}

#[test]
fn retry_delay_doubles_up_to_the_cap() {
    let base = std::time::Duration::from_millis(200);
    let cap = std::time::Duration::from_secs(2);
    let delays: Vec<u128> = (1..=6)
        .map(|n| retry_delay(base, cap, n).as_millis())
        .collect();
    assert_eq!(delays, [200, 400, 800, 1600, 2000, 2000]);
    assert_eq!(retry_delay(base, cap, u32::MAX), cap);
    assert_eq!(
        retry_delay(base, base / 2, 3),
        base,
        "the cap is never below the base"
    );
}

#[test]
fn deletion_without_a_record_finishes_only_when_nothing_could_be_revoked() {
    let mut granted = self::input(&["alice", "bob"]);
    granted.members = members(&["bob"]);
    let (_, out) = round(&mut granted);
    let previous = out.users;
    let c = connector();
    assert_eq!(
        finish_unlocated(DeletionPolicy::Revoke, Some(&c), "acme", &previous),
        None,
        "the connector may come back: the record still holds grants to revoke"
    );
    assert_eq!(
        finish_unlocated(DeletionPolicy::Retain, Some(&c), "acme", &previous),
        Some(Vec::new())
    );
    for policy in [DeletionPolicy::Revoke, DeletionPolicy::Retain] {
        let events = finish_unlocated(policy, None, "acme", &previous).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, EventType::Warning);
        assert_eq!(events[0].reason.as_str(), "ConnectorNotFound");
        assert!(
            events[0].message.contains("acme") && events[0].message.contains(" 1 "),
            "alice's grant, not bob's preexisting membership: {}",
            events[0].message
        );
    }
}

#[test]
fn a_vanished_connector_keeps_the_reported_origins_for_the_deletion() {
    let mut input = input(&["alice", "bob"]);
    input.members = members(&["bob"]);
    round(&mut input);
    // The connector is deleted: no domain, so the record cannot be located (read as empty).
    input.connector = None;
    input.record = GroupRecord::default();
    input.group = GroupLookup::NotLookedUp;
    for u in &mut input.users {
        u.lookup = UserLookup::NotLookedUp;
    }
    let (_, out) = round(&mut input);
    assert_eq!(out.ready.reason, Reason::ConnectorNotFound);
    assert_eq!(user_row(&out, "alice").origin, Some(Origin::Granted));
    assert_eq!(user_row(&out, "bob").origin, Some(Origin::Preexisting));
    let events = finish_unlocated(DeletionPolicy::Revoke, None, "acme", &input.previous).unwrap();
    assert!(events[0].message.contains(" 1 "), "{}", events[0].message);
}

/// The connector turns suspended: nothing is looked up in Okta from then on.
fn suspend_connector(input: &mut Input) {
    input.connector = Some(ConnectorFacts {
        suspended: true,
        ..connector()
    });
    input.group = GroupLookup::NotLookedUp;
    for u in &mut input.users {
        u.lookup = UserLookup::NotLookedUp;
    }
}

#[test]
fn a_group_not_looked_up_keeps_its_id_and_an_unlocated_record_keeps_the_origins() {
    let mut input = input(&["alice", "bob"]);
    input.members = members(&["bob"]);
    input.group_id = Some(GROUP_ID.into());
    round(&mut input);
    // The connector is suspended: the group is not looked up, its id comes from status.
    suspend_connector(&mut input);
    let (plan, out) = round(&mut input);
    assert!(!plan.has_writes());
    assert_eq!(plan.group_id.as_deref(), Some(GROUP_ID));
    assert_eq!(
        out.group_id.as_deref(),
        Some(GROUP_ID),
        "status.groupId kept"
    );
    assert_eq!(user_row(&out, "alice").origin, Some(Origin::Granted));
    // Even when the record cannot be located, a present connector keeps the origins the
    // previous status showed (a deletion must not read them as "nothing held").
    input.record_located = false;
    input.record = GroupRecord::default();
    let (_, out) = round(&mut input);
    assert_eq!(user_row(&out, "alice").origin, Some(Origin::Granted));
    assert_eq!(user_row(&out, "bob").origin, Some(Origin::Preexisting));
    // A vanished group is no longer known by its id.
    input.record_located = true;
    input.group = GroupLookup::NotFound;
    assert_eq!(decide(&input).group_id, None);
}

#[test]
fn deletion_while_suspended_keeps_the_claim_and_the_finalizer() {
    let mut input = input(&["alice"]);
    input.group_id = Some(GROUP_ID.into());
    round(&mut input);
    suspend_connector(&mut input);
    input.lifecycle = Lifecycle::Deleting(DeletionPolicy::Revoke);
    let (plan, out) = round(&mut input);
    assert!(!plan.has_writes(), "no write while suspended");
    assert!(!out.remove_finalizer, "the grant is still held");
    assert!(out.record.claimed_by(ME));
    assert_eq!(out.ready.reason, Reason::RevocationWaiting);
    assert!(
        out.ready
            .message
            .starts_with("being deleted; 1 revocation(s) waiting"),
        "{}",
        out.ready.message
    );
    let alice = user_row(&out, "alice");
    assert!(alice.message.contains("suspended"), "{}", alice.message);
    // Resumed: the grant is revoked and the finalizer may go.
    input.connector = Some(connector());
    input.group = group();
    input.users[0].lookup = UserLookup::Found(okta_user("alice"));
    let (plan, out) = round(&mut input);
    assert_eq!(plan.revokes, ids(&["alice"]));
    assert!(out.remove_finalizer);
}

#[test]
fn deletion_is_not_blocked_by_a_vanished_group() {
    let mut input = input(&["alice"]);
    round(&mut input);
    input.lifecycle = Lifecycle::Deleting(DeletionPolicy::Revoke);
    input.group = GroupLookup::NotFound;
    let (plan, out) = round(&mut input);
    assert!(!plan.has_writes());
    assert!(out.remove_finalizer);
}

#[test]
fn deletion_waits_for_the_connector_only_when_something_must_be_revoked() {
    let mut input = input(&["alice"]);
    round(&mut input);
    input.lifecycle = Lifecycle::Deleting(DeletionPolicy::Revoke);
    input.connector = Some(ConnectorFacts {
        ready: false,
        has_client: false,
        ..connector()
    });
    input.group = GroupLookup::NotLookedUp;
    let (plan, out) = round(&mut input);
    assert!(!plan.has_writes());
    assert!(!out.remove_finalizer);
    let alice = user_row(&out, "alice");
    assert_eq!(alice.reason, Reason::RevocationWaiting);
    assert!(
        alice.message.contains("no working Okta client"),
        "{}",
        alice.message
    );
    // Nothing owned: the finalizer goes at once.
    let mut bare = self::input(&["alice"]);
    bare.lifecycle = Lifecycle::Deleting(DeletionPolicy::Revoke);
    bare.connector = None;
    let (_, out) = round(&mut bare);
    assert!(out.remove_finalizer);
}

// ---- expiry ---------------------------------------------------------------------------

#[test]
fn expiry_at_requeues_exactly_then_revokes_and_reports() {
    let at = now() + hours(8);
    let mut input = input(&["alice", "bob"]);
    input.members = members(&["bob"]);
    input.expiry = Expiry::At(at);
    let (_, out) = round(&mut input);
    assert_eq!(out.requeue_at, Some(at));
    assert_eq!(out.expires_at, Some(at));
    assert_eq!(out.expired.reason, Reason::NotExpired);
    assert!(!out.expired.status);
    input.now = at;
    let (plan, out) = round(&mut input);
    assert_eq!(plan.revokes, ids(&["alice"]));
    assert!(out.expired.status, "{:?}", out.expired);
    assert_eq!(out.ready.reason, Reason::Expired);
    assert_eq!(user_row(&out, "alice").state, UserState::Expired);
    assert_eq!(user_row(&out, "bob").state, UserState::Expired);
    assert!(input.members.contains(&id("bob")), "preexisting stays");
    assert_eq!(out.requeue_at, None);
    assert!(!out.remove_finalizer, "the object stays for the record");
    assert!(event_reasons(&out).contains(&(EventType::Normal, "Expired")));
    // Stable afterwards.
    let (plan, again) = round(&mut input);
    assert!(!plan.has_writes());
    assert!(again.events.is_empty());
    // Extending expiresAt grants again.
    input.expiry = Expiry::At(at + hours(1));
    let (plan, out) = round(&mut input);
    assert_eq!(plan.grants, ids(&["alice"]));
    assert_eq!(out.requeue_at, Some(at + hours(1)));
    assert!(out.ready.status);
}

#[test]
fn shortening_expires_at_revokes_now() {
    let mut input = input(&["alice"]);
    input.expiry = Expiry::At(now() + hours(8));
    round(&mut input);
    input.expiry = Expiry::At(now() - hours(1));
    let (plan, out) = round(&mut input);
    assert_eq!(plan.revokes, ids(&["alice"]));
    assert!(out.expired.status);
}

#[test]
fn expiry_waits_for_a_blocked_revoke() {
    let mut input = input(&["alice"]);
    input.expiry = Expiry::At(now() + hours(1));
    round(&mut input);
    input.now = now() + hours(2);
    input.connector = Some(ConnectorFacts {
        suspended: true,
        ..connector()
    });
    let (plan, out) = round(&mut input);
    assert!(!plan.has_writes());
    assert!(!out.expired.status);
    assert_eq!(out.expired.reason, Reason::RevocationWaiting);
    input.connector = Some(connector());
    let (plan, out) = round(&mut input);
    assert_eq!(plan.revokes, ids(&["alice"]));
    assert!(out.expired.status);
}

#[test]
fn duration_counts_from_the_first_grant() {
    let mut input = input(&["alice"]);
    input.expiry = Expiry::After(hours(8));
    input.connector = Some(ConnectorFacts {
        ready: false,
        ..connector()
    });
    let (_, out) = round(&mut input);
    assert_eq!(out.expires_at, None, "not effective yet");
    assert_eq!(out.requeue_at, None);
    assert_eq!(out.expired.reason, Reason::NoExpiry);
    let granted_at = now() + hours(3);
    input.now = granted_at;
    input.connector = Some(connector());
    let (_, out) = round(&mut input);
    assert_eq!(out.effective_since, Some(granted_at));
    assert_eq!(out.requeue_at, Some(granted_at + hours(8)));
    // Drift later does not restart the clock.
    input.members.clear();
    input.now = granted_at + hours(1);
    let (_, out) = round(&mut input);
    assert_eq!(out.effective_since, Some(granted_at));
    input.now = granted_at + hours(8);
    let (plan, out) = round(&mut input);
    assert_eq!(plan.revokes, ids(&["alice"]));
    assert!(out.expired.status);
}

#[test]
fn liveness_excludes_deleting_and_expired_declarations() {
    let t = now();
    assert!(is_live(Lifecycle::Live, Expiry::Never, None, t));
    assert!(is_live(Lifecycle::Live, Expiry::At(t + hours(1)), None, t));
    assert!(!is_live(Lifecycle::Live, Expiry::At(t), None, t));
    assert!(is_live(Lifecycle::Live, Expiry::After(hours(1)), None, t));
    assert!(!is_live(
        Lifecycle::Live,
        Expiry::After(hours(1)),
        Some(t - hours(1)),
        t
    ));
    assert!(!is_live(
        Lifecycle::Deleting(DeletionPolicy::Retain),
        Expiry::Never,
        None,
        t
    ));
}

// ---- drift ----------------------------------------------------------------------------

#[test]
fn drift_is_corrected_with_an_event() {
    let mut input = input(&["alice"]);
    round(&mut input);
    input.members.clear();
    let (plan, out) = round(&mut input);
    assert_eq!(plan.grants, ids(&["alice"]));
    assert_eq!(
        event_reasons(&out),
        vec![(EventType::Normal, "DriftCorrected")]
    );
}

#[test]
fn a_removed_preexisting_membership_is_granted_again_and_owned() {
    let mut input = input(&["alice"]);
    input.members = members(&["alice"]);
    round(&mut input);
    input.members.clear();
    let (plan, out) = round(&mut input);
    assert_eq!(plan.grants, ids(&["alice"]));
    assert_eq!(plan.record.members[&id("alice")].origin, Origin::Granted);
    assert_eq!(user_row(&out, "alice").origin, Some(Origin::Granted));
    assert_eq!(
        event_reasons(&out),
        vec![(EventType::Normal, "DriftCorrected")]
    );
}

// ---- crashes --------------------------------------------------------------------------

#[test]
fn crash_after_the_put_does_not_turn_the_grant_preexisting() {
    let mut input = input(&["alice"]);
    let plan = decide(&input);
    input.record = plan.record.clone(); // step 3 persisted
    input.members.insert(id("alice")); // step 4 happened, then a crash
    let (plan, out) = round(&mut input);
    assert!(!plan.has_writes());
    assert_eq!(user_row(&out, "alice").origin, Some(Origin::Granted));
    input.users.clear();
    let (plan, _) = round(&mut input);
    assert_eq!(plan.revokes, ids(&["alice"]), "still ours to revoke");
}

#[test]
fn crash_before_the_put_grants_again() {
    let mut input = input(&["alice"]);
    input.record = decide(&input).record;
    let (plan, out) = round(&mut input);
    assert_eq!(plan.grants, ids(&["alice"]));
    assert_eq!(event_reasons(&out), vec![(EventType::Normal, "Granted")]);
}

#[test]
fn crash_after_the_delete_releases_without_a_write() {
    let mut input = input(&["alice"]);
    round(&mut input);
    input.users.clear();
    let plan = decide(&input);
    input.record = plan.record.clone();
    input.members.clear(); // DELETE done, crash before settle
    let (plan, out) = round(&mut input);
    assert!(!plan.has_writes());
    assert!(out.record.members.is_empty());
}

#[test]
fn crash_before_the_delete_revokes_again() {
    let mut input = input(&["alice"]);
    round(&mut input);
    input.users.clear();
    input.record = decide(&input).record;
    let (plan, _) = round(&mut input);
    assert_eq!(plan.revokes, ids(&["alice"]));
}

// ---- record encoding ------------------------------------------------------------------

#[test]
fn record_round_trips_compactly_and_deterministically() {
    let r = record(&[
        ("bob", Origin::Preexisting, &[ME]),
        ("alice", Origin::Granted, &[OTHER, ME]),
    ]);
    let text = r.encode();
    assert_eq!(
        text,
        r#"{"v":1,"members":{"00ualice":{"origin":"Granted","claimants":["identity/oncall-alice","identity/oncall-bob"]},"00ubob":{"origin":"Preexisting","claimants":["identity/oncall-alice"]}}}"#
    );
    assert_eq!(GroupRecord::decode(&text).unwrap(), r);
    assert_eq!(GroupRecord::decode("").unwrap(), GroupRecord::default());
    assert_eq!(
        GroupRecord::decode(r#"{"v":1}"#).unwrap(),
        GroupRecord::default()
    );
    assert!(matches!(
        GroupRecord::decode(r#"{"v":2,"members":{}}"#),
        Err(Error::UnsupportedVersion { found: 2, .. })
    ));
    assert!(matches!(
        GroupRecord::decode("{not json"),
        Err(Error::Decode(_))
    ));
}

#[test]
fn status_rows_serialise_in_camel_case() {
    let mut input = input(&["alice"]);
    let (_, out) = round(&mut input);
    let json = serde_json::to_value(&out.users[0]).unwrap();
    assert_eq!(json["userId"], "00ualice");
    assert_eq!(json["state"], "Granted");
    assert_eq!(json["origin"], "Granted");
    assert_eq!(json["reason"], "Granted");
    assert_eq!(json["lastTransitionTime"], "2026-06-01T12:00:00Z");
}

#[test]
fn long_user_lists_are_truncated_in_messages() {
    let names: Vec<String> = (0..25).map(|i| format!("u{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut input = input(&refs);
    input
        .users
        .iter_mut()
        .for_each(|u| u.lookup = UserLookup::NotFound);
    let (_, out) = round(&mut input);
    assert!(
        out.ready.message.ends_with("and 15 more"),
        "{}",
        out.ready.message
    );
}

// ---- properties -----------------------------------------------------------------------

const THIRD: &str = "identity/oncall-carol";
const OWNERS: [&str; 3] = [ME, OTHER, THIRD];
const UNIVERSE: usize = 5;

fn name(i: usize) -> String {
    format!("p{i}")
}

/// Raw choices for one arbitrary [`Input`]; see [`build`] for what each number means.
type Raw = (
    Vec<u8>,
    Vec<bool>,
    Vec<(u8, u8)>,
    Vec<u8>,
    Vec<u8>,
    u8,
    u8,
    u8,
    u8,
);

fn arb_raw() -> impl Strategy<Value = Raw> {
    let n = UNIVERSE;
    (
        prop::collection::vec(0u8..9, n),
        prop::collection::vec(any::<bool>(), n),
        prop::collection::vec((0u8..3, 0u8..8), n),
        prop::collection::vec(0u8..4, n),
        prop::collection::vec(0u8..3, n),
        0u8..8,
        0u8..8,
        0u8..4,
        0u8..6,
    )
}

fn build(raw: Raw) -> Input {
    let (lookups, member, rec, others, previous, conn, grp, life, exp) = raw;
    let mut input = input(&[]);
    input.connector = match conn {
        0 => None,
        1 => Some(ConnectorFacts {
            ready: false,
            ..connector()
        }),
        2 => Some(ConnectorFacts {
            provisioning: false,
            ..connector()
        }),
        3 => Some(ConnectorFacts {
            suspended: true,
            ..connector()
        }),
        _ => Some(connector()),
    };
    input.group = match grp {
        0 => GroupLookup::NotLookedUp,
        1 => GroupLookup::NotFound,
        2 => GroupLookup::Found(OktaGroup {
            id: GROUP_ID.into(),
            name: "Engineering AD".into(),
            group_type: "APP_GROUP".into(),
        }),
        3 => GroupLookup::Found(OktaGroup {
            id: GROUP_ID.into(),
            name: "Sales".into(),
            group_type: "OKTA_GROUP".into(),
        }),
        4 => GroupLookup::Renamed {
            group: OktaGroup {
                id: GROUP_ID.into(),
                name: "Engineering Primary".into(),
                group_type: "OKTA_GROUP".into(),
            },
            declared: "Engineering On-Call".into(),
        },
        _ => group(),
    };
    for i in 0..UNIVERSE {
        let n = name(i);
        let lookup = match lookups[i] {
            0 | 1 => Some(UserLookup::Found(okta_user(&n))),
            2 => Some(UserLookup::Found(OktaUser {
                email: Some(format!("{n}@elsewhere.io")),
                login: n.clone(),
                ..okta_user(&n)
            })),
            3 => Some(UserLookup::Found(OktaUser {
                status: "SUSPENDED".into(),
                ..okta_user(&n)
            })),
            4 => Some(UserLookup::NotFound),
            5 => Some(UserLookup::Ambiguous { matches: 2 }),
            6 => Some(UserLookup::NotLookedUp),
            _ => None,
        };
        if let Some(lookup) = lookup {
            input.users.push(DeclaredUser {
                user: entry(&n),
                lookup,
            });
        }
        if member[i] {
            input.members.insert(id(&n));
        }
        let (kind, mask) = rec[i];
        let claimants: BTreeSet<String> = OWNERS
            .iter()
            .enumerate()
            .filter(|(b, _)| mask & (1 << b) != 0)
            .map(|(_, o)| o.to_string())
            .collect();
        if kind > 0 && !claimants.is_empty() {
            let origin = if kind == 1 {
                Origin::Granted
            } else {
                Origin::Preexisting
            };
            input
                .record
                .members
                .insert(id(&n), Ownership { origin, claimants });
        }
        for (bit, other) in [OTHER, THIRD].iter().enumerate() {
            if others[i] & (1 << bit) != 0 {
                input
                    .others
                    .entry(other.to_string())
                    .or_default()
                    .insert(id(&n));
            }
        }
        if previous[i] > 0 {
            input.previous.push(UserStatus {
                user: entry(&n),
                user_id: Some(id(&n)),
                state: if previous[i] == 1 {
                    UserState::Granted
                } else {
                    UserState::Failed
                },
                origin: None,
                reason: Reason::Pending,
                message: String::new(),
                last_transition_time: now() - hours(1),
            });
        }
    }
    input.lifecycle = match life {
        2 => Lifecycle::Deleting(DeletionPolicy::Revoke),
        3 => Lifecycle::Deleting(DeletionPolicy::Retain),
        _ => Lifecycle::Live,
    };
    (input.expiry, input.effective_since) = match exp {
        0 | 1 => (Expiry::Never, None),
        2 => (Expiry::At(now() - hours(1)), None),
        3 => (Expiry::At(now() + hours(1)), None),
        4 => (Expiry::After(hours(1)), None),
        _ => (Expiry::After(hours(1)), Some(now() - hours(2))),
    };
    input
}

fn letting_go(input: &Input) -> bool {
    input.lifecycle != Lifecycle::Live || is_expired(input.expiry, input.effective_since, input.now)
}

fn gate_open(input: &Input) -> bool {
    check_connector(input.connector.as_ref())
        .and_then(|c| check_group_for(&input.group, c, letting_go(input)))
        .is_ok()
}

/// Whether revoking is possible at all: far less than [`gate_open`] asks.
fn revoke_gate_open(input: &Input) -> bool {
    check_revocation(input.connector.as_ref()).is_ok()
        && check_group_to_let_go(&input.group).is_ok()
}

/// The record as [`decide`] sees it: with the grants [`lost_grants`] finds recorded again.
fn restored(input: &Input) -> GroupRecord {
    let mut record = input.record.clone();
    record.restore(lost_grants(input), &input.owner);
    record
}

/// Whether a live `input` still declares `user_id`: an entry resolved to it, an entry the
/// previous status tied to it, or an entry not looked up (which may name anyone).
fn still_declared(input: &Input, user_id: &str) -> bool {
    !letting_go(input)
        && input.users.iter().any(|d| match &d.lookup {
            UserLookup::Found(f) => f.id == user_id,
            UserLookup::NotLookedUp => true,
            _ => input
                .previous
                .iter()
                .any(|p| p.user == d.user && p.user_id.as_deref() == Some(user_id)),
        })
}

/// Other owners' claims in `before` are all still present in `after`.
fn keeps_others_claims(before: &GroupRecord, after: &GroupRecord, me: &str) -> bool {
    before.members.iter().all(|(u, o)| {
        o.claimants.iter().filter(|c| c.as_str() != me).all(|c| {
            after
                .members
                .get(u)
                .is_some_and(|a| a.claimants.contains(c))
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Never revoke a membership not granted by the operator, held by someone else, still
    /// declared by this object or by another live declaration; preexisting never revoked;
    /// Retain never writes; a refused grant leaves no claim of this object behind.
    #[test]
    fn prop_revokes_only_sole_owned_grants(
        raw in arb_raw(),
        fail_mask in 0u8..32,
        refused in any::<bool>(),
    ) {
        let input = build(raw);
        let plan = decide(&input);
        let record = restored(&input);
        for u in &plan.revokes {
            prop_assert!(!still_declared(&input, u), "revoked {} still declared here", u);
            let e = &record.members[u];
            prop_assert_eq!(e.origin, Origin::Granted);
            prop_assert_eq!(e.claimants.iter().collect::<Vec<_>>(), vec![ME]);
            prop_assert!(!input.others.values().any(|ids| ids.contains(u)));
            prop_assert!(input.members.contains(u));
            prop_assert!(revoke_gate_open(&input));
        }
        for u in &plan.grants {
            prop_assert!(!input.members.contains(u));
            prop_assert_eq!(input.lifecycle, Lifecycle::Live);
            prop_assert!(gate_open(&input));
            let admitted = input.users.iter().any(|d| {
                matches!(&d.lookup, UserLookup::Found(f) if &f.id == u)
                    && check_user(&d.user, &d.lookup, input.connector.as_ref().unwrap()).is_ok()
            });
            prop_assert!(admitted, "granted an unadmitted user {}", u);
            prop_assert_eq!(plan.record.members[u].origin, Origin::Granted);
        }
        if input.lifecycle == Lifecycle::Deleting(DeletionPolicy::Retain) {
            prop_assert!(!plan.has_writes());
        }
        prop_assert!(keeps_others_claims(&input.record, &plan.record, ME));
        // A preexisting entry only turns Granted when it is being granted again.
        for (u, e) in &input.record.members {
            if e.origin == Origin::Preexisting
                && plan.record.members.get(u).is_some_and(|o| o.origin == Origin::Granted)
            {
                prop_assert!(plan.grants.contains(u));
            }
        }
        let writes: Vec<&String> = plan.grants.iter().chain(&plan.revokes).collect();
        let failures: BTreeMap<String, WriteError> = writes
            .iter()
            .enumerate()
            .filter(|(i, _)| fail_mask & (1 << (i % 5)) != 0)
            .map(|(_, u)| {
                let e = if refused { WriteError::Refused("HTTP 403".into()) } else { WriteError::Failed("boom".into()) };
                ((*u).clone(), e)
            })
            .collect();
        let out = plan.settle(&failures);
        prop_assert!(keeps_others_claims(&input.record, &out.record, ME));
        prop_assert_eq!(out.retry, !failures.is_empty());
        if out.remove_finalizer {
            prop_assert!(!out.record.claimed_by(ME));
        }
        for u in &plan.revokes {
            prop_assert_eq!(failures.contains_key(u), out.record.members.contains_key(u));
        }
        for u in plan.grants.iter().filter(|u| refused && failures.contains_key(*u)) {
            prop_assert!(
                !out.record.members.get(u).is_some_and(|o| o.claimants.contains(ME)),
                "a refused grant of {} kept its intent", u
            );
        }
    }

    /// Applying a plan and deciding again yields no further writes and a stable record.
    #[test]
    fn prop_converges_after_one_round(raw in arb_raw()) {
        let mut input = build(raw);
        round(&mut input);
        let plan = decide(&input);
        prop_assert!(!plan.has_writes(), "{:?} / {:?}", plan.grants, plan.revokes);
        prop_assert_eq!(&plan.record, &input.record);
        let out = plan.settle(&no_failures());
        prop_assert_eq!(&out.record, &input.record);
        prop_assert!(out.events.is_empty(), "{:?}", out.events);
        let shape = |u: &UserStatus| (u.user.clone(), u.user_id.clone(), u.state, u.origin, u.reason);
        prop_assert_eq!(
            out.users.iter().map(shape).collect::<Vec<_>>(),
            input.previous.iter().map(shape).collect::<Vec<_>>()
        );
    }
}

// ---- simulation: several owners, crashes, drift -----------------------------------------

#[derive(Debug, Clone)]
enum Step {
    /// Owner declares exactly the users in the mask (recreating it if it was deleted).
    Declare(usize, u8),
    /// Owner is deleted with Retain (true) or Revoke.
    Delete(usize, bool),
    /// Owner reconciles; 0 = completes, 1 = crashes after the record write,
    /// 2 = crashes after the Okta writes.
    Reconcile(usize, u8),
    /// Someone removes a membership the operator made, outside the operator.
    ExternalRemove(usize),
    /// Someone adds a membership outside the operator.
    ExternalAdd(usize),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..3usize, 0u8..32).prop_map(|(o, m)| Step::Declare(o, m)),
        1 => (0..3usize, any::<bool>()).prop_map(|(o, r)| Step::Delete(o, r)),
        6 => (0..3usize, 0u8..3).prop_map(|(o, c)| Step::Reconcile(o, c)),
        1 => (0..UNIVERSE).prop_map(Step::ExternalRemove),
        1 => (0..UNIVERSE).prop_map(Step::ExternalAdd),
    ]
}

#[derive(Debug, Clone, Default)]
struct Owner {
    users: BTreeSet<String>,
    deleting: Option<DeletionPolicy>,
    gone: bool,
    previous: Vec<UserStatus>,
}

#[derive(Debug, Default)]
struct Sim {
    /// Memberships the operator did not make: must never be removed by it.
    foreign: BTreeSet<String>,
    members: BTreeSet<String>,
    record: GroupRecord,
    owners: [Owner; 3],
    retained: bool,
}

impl Sim {
    fn live_declarations(&self, except: usize) -> BTreeMap<String, BTreeSet<String>> {
        (0..3)
            .filter(|&o| o != except && !self.owners[o].gone && self.owners[o].deleting.is_none())
            .map(|o| (OWNERS[o].to_string(), self.owners[o].users.clone()))
            .collect()
    }

    /// One reconcile of owner `o`; returns whether it wrote to Okta.
    fn reconcile(&mut self, o: usize, crash: u8) -> std::result::Result<bool, TestCaseError> {
        if self.owners[o].gone {
            return Ok(false);
        }
        let owner = &self.owners[o];
        let input = Input {
            provisioning: true,
            owner: OWNERS[o].into(),
            users: owner
                .users
                .iter()
                .map(|u| DeclaredUser {
                    user: entry(&u.replace("00u", "")),
                    lookup: UserLookup::Found(okta_user(&u.replace("00u", ""))),
                })
                .collect(),
            members: self.members.clone(),
            record: self.record.clone(),
            others: self.live_declarations(o),
            lifecycle: owner.deleting.map_or(Lifecycle::Live, Lifecycle::Deleting),
            previous: owner.previous.clone(),
            ..input(&[])
        };
        let plan = decide(&input);
        self.record = plan.record.clone();
        if crash == 1 {
            return Ok(plan.has_writes());
        }
        let others = self.live_declarations(o);
        for u in &plan.revokes {
            prop_assert!(
                !self.foreign.contains(u),
                "revoked a foreign membership {}",
                u
            );
            prop_assert!(
                !others.values().any(|ids| ids.contains(u)),
                "revoked {} still declared elsewhere",
                u
            );
            self.members.remove(u);
        }
        self.members.extend(plan.grants.iter().cloned());
        if crash == 2 {
            return Ok(plan.has_writes());
        }
        let out = plan.settle(&no_failures());
        self.record = out.record;
        let owner = &mut self.owners[o];
        owner.previous = out.users;
        if out.remove_finalizer {
            owner.gone = true;
            owner.previous.clear();
        }
        Ok(plan.has_writes())
    }

    fn step(&mut self, step: &Step) -> std::result::Result<(), TestCaseError> {
        match *step {
            Step::Declare(o, mask) => {
                let owner = &mut self.owners[o];
                if owner.gone {
                    *owner = Owner::default();
                }
                if owner.deleting.is_none() {
                    owner.users = (0..UNIVERSE)
                        .filter(|i| mask & (1 << i) != 0)
                        .map(|i| id(&name(i)))
                        .collect();
                }
            }
            Step::Delete(o, retain) => {
                let owner = &mut self.owners[o];
                if !owner.gone {
                    let policy = if retain {
                        DeletionPolicy::Retain
                    } else {
                        DeletionPolicy::Revoke
                    };
                    owner.deleting = Some(policy);
                    self.retained |= retain;
                }
            }
            Step::Reconcile(o, crash) => {
                self.reconcile(o, crash)?;
            }
            Step::ExternalRemove(i) => {
                let u = id(&name(i));
                if !self.foreign.contains(&u) {
                    self.members.remove(&u);
                }
            }
            Step::ExternalAdd(i) => {
                // Only where neither the record nor a status can mistake it for the
                // operator's: a pending grant, or a grant a status still shows after a crash
                // before its status write (the ambiguities the protocol documents; see
                // `lost_grants`).
                let u = id(&name(i));
                let status_shows_grant = self.owners.iter().any(|o| {
                    !o.gone
                        && o.previous.iter().any(|p| {
                            p.user_id.as_deref() == Some(u.as_str())
                                && p.state == UserState::Granted
                                && p.origin == Some(Origin::Granted)
                        })
                });
                if !self.members.contains(&u)
                    && !self.record.members.contains_key(&u)
                    && !status_shows_grant
                {
                    self.members.insert(u.clone());
                    self.foreign.insert(u);
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Any interleaving of edits, deletions, crashes and outside changes never removes a
    /// foreign membership or one declared elsewhere, and quiesces to exactly the declared
    /// memberships plus the foreign ones.
    #[test]
    fn prop_owners_crashes_and_drift_converge(
        initial in prop::collection::btree_set(0..UNIVERSE, 0..3),
        steps in prop::collection::vec(arb_step(), 0..40),
    ) {
        let mut sim = Sim::default();
        for i in initial {
            sim.members.insert(id(&name(i)));
            sim.foreign.insert(id(&name(i)));
        }
        for step in &steps {
            sim.step(step)?;
        }
        for _ in 0..3 {
            for o in 0..3 {
                sim.reconcile(o, 0)?;
            }
        }
        for o in 0..3 {
            prop_assert!(!sim.reconcile(o, 0)?, "owner {} still writes after quiescing", o);
        }
        let mut declared = BTreeSet::new();
        for (o, owner) in sim.owners.iter().enumerate() {
            prop_assert!(owner.deleting.is_none() || owner.gone, "owner {} stuck deleting", o);
            if owner.gone {
                prop_assert!(!sim.record.claimed_by(OWNERS[o]));
            } else {
                declared.extend(owner.users.iter().cloned());
            }
        }
        prop_assert!(sim.foreign.is_subset(&sim.members));
        prop_assert!(declared.is_subset(&sim.members));
        if !sim.retained {
            let expected: BTreeSet<String> = sim.foreign.union(&declared).cloned().collect();
            prop_assert_eq!(&sim.members, &expected);
        }
    }
}

#[test]
fn a_retry_never_waits_past_the_exact_expiry() {
    let t = now();
    let resync = Duration::from_secs(600);
    let backoff = Some(Duration::from_secs(300));
    let at = |secs: i64| Some(t + SignedDuration::from_secs(secs));
    // Expiry in 10 s: the 300 s back-off must not override it.
    assert_eq!(
        requeue_after(backoff, at(10), t, resync),
        Duration::from_millis(10_001)
    );
    // Back-off sooner than the expiry: the back-off.
    assert_eq!(
        requeue_after(backoff, at(3600), t, resync),
        Duration::from_secs(300)
    );
    assert_eq!(
        requeue_after(backoff, None, t, resync),
        Duration::from_secs(300)
    );
    // No retry: resync, or the expiry when sooner; an expiry already due is now.
    assert_eq!(requeue_after(None, None, t, resync), resync);
    assert_eq!(requeue_after(None, at(3600), t, resync), resync);
    assert_eq!(
        requeue_after(None, at(60), t, resync),
        Duration::from_millis(60_001)
    );
    assert_eq!(
        requeue_after(backoff, at(-5), t, resync),
        Duration::from_millis(1)
    );
}

#[test]
fn a_failing_write_before_expiry_still_requeues_at_the_expiry() {
    // One user's PUT is refused (403) while the grant expires in 10 minutes: the round
    // retries, and the retry wait is bounded by the expiry however far back-off climbed.
    let mut input = input(&["alice", "bob"]);
    input.expiry = Expiry::At(now() + SignedDuration::from_mins(10));
    let plan = decide(&input);
    let refused = BTreeMap::from([(
        id("bob"),
        WriteError::Refused("HTTP 403 E0000006: You do not have permission".into()),
    )]);
    let out = plan.settle(&refused);
    assert!(out.retry);
    let wait = requeue_after(
        Some(Duration::from_secs(300 * 4)),
        out.requeue_at,
        now(),
        Duration::from_secs(3600),
    );
    assert_eq!(wait, Duration::from_millis(600_001));
}

#[test]
fn the_wait_for_a_client_is_bounded_and_skipped_for_a_deletion_holding_no_grant() {
    let limit = Duration::from_secs(60);
    let young = Duration::from_secs(5);
    let old = Duration::from_secs(61);
    let deleting = Lifecycle::Deleting(DeletionPolicy::Revoke);
    let mut input = input(&["alice", "bob"]);
    input.members = members(&["bob"]);
    round(&mut input);
    let granted = input.previous.clone();
    let preexisting_only: Vec<UserStatus> = granted
        .iter()
        .filter(|p| p.origin == Some(Origin::Preexisting))
        .cloned()
        .collect();
    assert!(await_client(young, limit, Lifecycle::Live, &[]));
    assert!(await_client(young, limit, deleting, &granted));
    assert!(
        !await_client(old, limit, Lifecycle::Live, &granted),
        "bounded"
    );
    assert!(!await_client(old, limit, deleting, &granted), "bounded");
    assert!(
        !await_client(young, limit, deleting, &[]),
        "nothing to revoke"
    );
    assert!(!await_client(young, limit, deleting, &preexisting_only));
}

#[test]
fn a_changed_group_is_let_go_of_first_but_a_rename_is_no_move() {
    let other = GroupLookup::Found(OktaGroup {
        id: "00gADM".into(),
        name: "Engineering Admins".into(),
        group_type: "OKTA_GROUP".into(),
    });
    assert_eq!(moved_from(&other, Some(GROUP_ID)), Some(GROUP_ID));
    assert_eq!(moved_from(&group(), Some(GROUP_ID)), None);
    assert_eq!(
        moved_from(&other, None),
        None,
        "never resolved: nothing to let go"
    );
    let renamed = GroupLookup::Renamed {
        group: OktaGroup {
            id: GROUP_ID.into(),
            name: "Platform".into(),
            group_type: "OKTA_GROUP".into(),
        },
        declared: "Engineering On-Call".into(),
    };
    assert_eq!(moved_from(&renamed, Some(GROUP_ID)), None);
    assert_eq!(moved_from(&GroupLookup::NotLookedUp, Some(GROUP_ID)), None);
    assert_eq!(moved_from(&GroupLookup::NotFound, Some(GROUP_ID)), None);

    // Letting go in the old group follows the deletion rules: the operator's grant is
    // revoked, a preexisting membership stays.
    let mut input = input(&["alice", "dave"]);
    input.members = members(&["dave"]);
    round(&mut input);
    input.lifecycle = Lifecycle::Deleting(DeletionPolicy::Revoke);
    let (plan, out) = round(&mut input);
    assert_eq!(plan.revokes, ids(&["alice"]));
    assert!(out.remove_finalizer);
    let ready = moving_condition(&out.ready, GROUP_ID, "00gADM", true);
    assert_eq!(ready.reason, Reason::Pending);
    assert!(!ready.status);
    let waiting = Condition {
        status: false,
        reason: Reason::Deleting,
        message: "being deleted; waiting to let go of RevokeFailed: alice".into(),
    };
    let ready = moving_condition(&waiting, GROUP_ID, "00gADM", false);
    assert!(
        ready
            .message
            .contains("waiting to let go of RevokeFailed: alice in 00gENG first"),
        "{}",
        ready.message
    );
}

/// At the CRD's maximum sizes (1,000 users of 254-character addresses; a connector with 100
/// email domains of 253 characters; the longest owner name) the status and the ownership record
/// stay far below etcd's 1.5 MiB object limit: refused users do not each quote every domain,
/// and no row's message outgrows [`MAX_USER_MESSAGE`].
#[test]
fn a_maximal_membership_keeps_status_and_record_below_a_mebibyte() {
    // Four labels of 61-63 characters (DNS's limit) and a TLD: 253 characters.
    let long_domain = |i: usize| {
        format!(
            "{i:0>61}.{}.{}.{}.com",
            "b".repeat(61),
            "c".repeat(61),
            "d".repeat(63)
        )
    };
    let mut domains: Vec<String> = (0..99).map(long_domain).collect();
    domains.push("example.com".into());
    assert!(domains.iter().take(99).all(|d| d.len() == 253));
    let address = |i: usize, domain: &str| {
        let local = format!("{i:04}{}", "u".repeat(254 - domain.len() - 1 - 4));
        format!("{local}@{domain}")
    };
    let owner = format!("{}/{}", "n".repeat(63), "g".repeat(253));
    for in_scope in [false, true] {
        let domain = if in_scope { "example.com" } else { "other.org" };
        let users: Vec<DeclaredUser> = (0..1000)
            .map(|i| {
                let login = address(i, domain);
                assert_eq!(login.len(), 254);
                DeclaredUser {
                    user: login.clone(),
                    lookup: UserLookup::Found(OktaUser {
                        id: format!("00u{i:017}"),
                        login: login.clone(),
                        email: Some(login),
                        status: "ACTIVE".into(),
                    }),
                }
            })
            .collect();
        let mut input = input(&[]);
        input.users = users;
        input.owner = owner.clone();
        input.connector.as_mut().unwrap().email_domains = domains.clone();
        let (_, out) = round(&mut input);
        let state = if in_scope {
            UserState::Granted
        } else {
            UserState::Failed
        };
        assert!(
            out.users.iter().all(|u| u.state == state),
            "{:?}",
            out.users[0]
        );
        assert!(
            out.users
                .iter()
                .all(|u| u.message.len() <= MAX_USER_MESSAGE)
        );
        let conditions = out.ready.message.len() + out.expired.message.len();
        let status = serde_json::to_vec(&out.users).unwrap().len() + conditions;
        let record = serde_json::to_vec(&out.record).unwrap();
        assert!(
            status < 1 << 20 && record.len() < 1 << 20,
            "in scope {in_scope}: status {status} bytes, record {} bytes",
            record.len()
        );
    }
}

// ---- revocation is not blocked by grant gates (#12, item 4) ---------------------------

/// A change to a round's facts.
type InputChange = Box<dyn Fn(&mut Input)>;

/// Alice granted by this object, then the object is deleted under `change`.
fn deleted_after_grant(change: impl Fn(&mut Input)) -> Input {
    let mut input = input(&["alice"]);
    round(&mut input);
    change(&mut input);
    input.lifecycle = Lifecycle::Deleting(DeletionPolicy::Revoke);
    input
}

#[test]
fn revocation_ignores_provisioning_readiness_and_scope() {
    let changes: Vec<(&str, InputChange)> = vec![
        (
            "operator --provisioning=false",
            Box::new(|i| i.provisioning = false),
        ),
        (
            "connector provisioning: false",
            Box::new(|i| i.connector.as_mut().unwrap().provisioning = false),
        ),
        (
            "connector not Ready (last sync failed) with a client",
            Box::new(|i| i.connector.as_mut().unwrap().ready = false),
        ),
        (
            "group-name filter narrowed",
            Box::new(|i| i.connector.as_mut().unwrap().group_name_filter = Some("sales".into())),
        ),
        (
            "email domains narrowed",
            Box::new(|i| i.connector.as_mut().unwrap().email_domains = vec!["other.org".into()]),
        ),
    ];
    for (what, change) in changes {
        let mut deleting = deleted_after_grant(&change);
        let (plan, out) = round(&mut deleting);
        assert_eq!(plan.revokes, ids(&["alice"]), "{what}");
        assert!(plan.grants.is_empty(), "{what}");
        assert!(out.remove_finalizer, "{what}");
        // The same for an expiry, and for an entry removed from the spec.
        let mut expiring = input(&["alice"]);
        expiring.expiry = Expiry::At(now() + hours(1));
        round(&mut expiring);
        change(&mut expiring);
        expiring.now = now() + hours(2);
        let (plan, out) = round(&mut expiring);
        assert_eq!(plan.revokes, ids(&["alice"]), "{what}");
        assert!(out.expired.status, "{what}: {:?}", out.expired);
        let mut removed = input(&["alice", "bob"]);
        round(&mut removed);
        change(&mut removed);
        removed.users.retain(|d| d.user == entry("bob"));
        let (plan, _) = round(&mut removed);
        assert_eq!(plan.revokes, ids(&["alice"]), "{what}");
        assert!(plan.grants.is_empty(), "{what}");
    }
}

#[test]
fn only_suspension_or_no_client_stop_revocation_and_say_what_waits() {
    for (facts, says) in [
        (
            ConnectorFacts {
                suspended: true,
                ..connector()
            },
            "suspended",
        ),
        (
            ConnectorFacts {
                has_client: false,
                ready: false,
                ..connector()
            },
            "no working Okta client",
        ),
    ] {
        let mut input = deleted_after_grant(|i| i.connector = Some(facts.clone()));
        let (plan, out) = round(&mut input);
        assert!(!plan.has_writes(), "{says}: zero Okta writes");
        assert!(!out.remove_finalizer, "{says}");
        let alice = user_row(&out, "alice");
        assert_eq!(alice.reason, Reason::RevocationWaiting);
        assert!(alice.message.contains(says), "{}", alice.message);
        assert_eq!(out.ready.reason, Reason::RevocationWaiting);
        assert!(
            out.ready
                .message
                .contains("1 revocation(s) waiting (alice@example.com)")
                && out.ready.message.contains(says),
            "{}",
            out.ready.message
        );
        assert_eq!(
            event_reasons(&out),
            vec![(EventType::Warning, "RevocationWaiting")]
        );
    }
}

// ---- the ownership record lost (#12, item 5) ------------------------------------------

#[test]
fn a_lost_record_is_restored_from_the_status_reported_and_still_honoured() {
    let mut input = input(&["alice", "bob"]);
    input.members = members(&["bob"]);
    input.expiry = Expiry::At(now() + hours(1));
    round(&mut input);
    assert_eq!(user_row_origin(&input, "alice"), Some(Origin::Granted));
    // The ConfigMap is gone: the record reads empty.
    input.record = GroupRecord::default();
    assert_eq!(lost_grants(&input), vec![id("alice").as_str()]);
    let (plan, out) = round(&mut input);
    assert!(!plan.has_writes());
    assert_eq!(plan.lost_ownership, ids(&["alice"]));
    assert_eq!(
        plan.record.members[&id("alice")],
        ownership(Origin::Granted, &[ME])
    );
    assert_eq!(user_row(&out, "alice").origin, Some(Origin::Granted));
    assert_eq!(
        user_row(&out, "bob").origin,
        Some(Origin::Preexisting),
        "bob was never the operator's"
    );
    let lost = out.ownership_lost.as_ref().expect("the condition");
    assert_eq!(lost.reason, Reason::OwnershipRecordLost);
    assert!(
        lost.message.contains("alice@example.com"),
        "{}",
        lost.message
    );
    assert!(event_reasons(&out).contains(&(EventType::Warning, "OwnershipRecordLost")));
    // Reported once: the record holds the grant again.
    let (_, again) = round(&mut input);
    assert!(again.ownership_lost.is_none());
    // The expiry still revokes the operator's grant, never bob's.
    input.now = now() + hours(2);
    let (plan, _) = round(&mut input);
    assert_eq!(plan.revokes, ids(&["alice"]));
}

fn user_row_origin(input: &Input, name: &str) -> Option<Origin> {
    input
        .previous
        .iter()
        .find(|p| p.user == entry(name))
        .and_then(|p| p.origin)
}

#[test]
fn a_lost_record_is_judged_only_where_the_status_can_be_trusted() {
    let mut granted = input(&["alice"]);
    round(&mut granted);
    granted.record = GroupRecord::default();
    // Not a member any more (a crash after a recorded revoke): nothing was lost.
    let mut gone = granted.clone();
    gone.members.clear();
    assert!(lost_grants(&gone).is_empty());
    // Members unknown this round (the group was not looked up): judged on the status.
    let mut unknown = gone.clone();
    unknown.group = GroupLookup::NotLookedUp;
    assert_eq!(lost_grants(&unknown), vec![id("alice").as_str()]);
    // No longer declared: the row is being let go already.
    let mut undeclared = granted.clone();
    undeclared.users.clear();
    assert!(lost_grants(&undeclared).is_empty());
    // A record that could not be read says nothing.
    let mut unlocated = granted.clone();
    unlocated.record_located = false;
    assert!(lost_grants(&unlocated).is_empty());
    // A deletion with a lost record still revokes instead of leaving the grant.
    granted.lifecycle = Lifecycle::Deleting(DeletionPolicy::Revoke);
    let (plan, out) = round(&mut granted);
    assert_eq!(plan.revokes, ids(&["alice"]));
    assert!(out.remove_finalizer);
}

// ---- revocations held by the circuit breaker (#12, item 6) -----------------------------

#[test]
fn held_revocations_make_no_write_keep_the_claim_and_retry() {
    let mut input = input(&["alice", "bob"]);
    round(&mut input);
    input.lifecycle = Lifecycle::Deleting(DeletionPolicy::Revoke);
    let mut plan = decide(&input);
    assert_eq!(plan.revokes, ids(&["alice", "bob"]));
    plan.hold_revocations(&BTreeSet::from([id("bob")]), "revocation held: limit 1");
    assert_eq!(plan.revokes, ids(&["alice"]));
    let out = plan.settle(&no_failures());
    assert!(out.retry, "a held revocation is asked for again");
    assert!(!out.remove_finalizer);
    assert!(out.record.members.contains_key(&id("bob")));
    assert!(!out.record.members.contains_key(&id("alice")));
    let bob = user_row(&out, "bob");
    assert_eq!(
        (bob.state, bob.reason),
        (UserState::Pending, Reason::RevocationHeld)
    );
    assert_eq!(out.ready.reason, Reason::RevocationHeld);
    assert_eq!(
        out.ready.message,
        "being deleted; 1 revocation(s) waiting (bob@example.com): revocation held: limit 1"
    );
    // A removed entry's held row stays in the status too.
    let mut removed = self::input(&["alice", "bob"]);
    round(&mut removed);
    removed.users.retain(|d| d.user == entry("alice"));
    let mut plan = decide(&removed);
    plan.hold_revocations(&BTreeSet::from([id("bob")]), "held");
    let out = plan.settle(&no_failures());
    assert_eq!(user_row(&out, "bob").reason, Reason::RevocationHeld);
    assert!(!plan.has_writes());
}
