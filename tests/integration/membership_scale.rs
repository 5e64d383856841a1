//! The `GroupMembership` reconciler at scale and through failures, over real HTTP (the
//! Kubernetes API test server and the Okta emulator): a burst of memberships paced on a
//! tight groups bucket with a bounded number of Okta requests, dropped connections, a crash
//! between the Okta write and the record write, and the operator-wide provisioning switch.

use crate::membership_support;
use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use membership_support::*;
use okta_ciam_operator::controller::membership::Settings;
use okta_ciam_operator::controller::membership::decide::{GroupRecord, Origin, Ownership};
use okta_ciam_operator::controller::membership::record::RecordStore;
use okta_ciam_operator::okta::OrgDomain;
use okta_emulator::Faults;
use serde_json::json;

const USERS: usize = 200;
const GROUPS: usize = 5;
/// Per one-second window; the client's default 50% budget paces at 30 a second.
const GROUPS_LIMIT: u32 = 60;

fn login(i: usize) -> String {
    format!("user{i:03}@example.com")
}

fn group_name(g: usize) -> String {
    format!("Scale {g}")
}

/// Many users, a few groups (one with a member the operator does not own), tight limits.
fn scale_fixture() -> String {
    let mut f = String::from("tokens: [test-token]\n");
    let _ = writeln!(
        f,
        "rateLimits: {{windowSeconds: 1, groups: {GROUPS_LIMIT}, users: 60, default: 120}}"
    );
    f.push_str("users:\n  - {login: outsider@example.com}\n");
    for i in 0..USERS {
        let _ = writeln!(f, "  - {{login: {}}}", login(i));
    }
    f.push_str("groups:\n");
    for g in 0..GROUPS {
        let members = if g == 0 {
            "[outsider@example.com]"
        } else {
            "[]"
        };
        let _ = writeln!(f, "  - {{name: {}, members: {members}}}", group_name(g));
    }
    f
}

/// Settings whose member lists outlive the test, so every extra list read is counted.
fn settings() -> Settings {
    Settings {
        members_max_age: Duration::from_secs(3600),
        ..Options::default().settings
    }
}

async fn start_scale() -> Harness {
    let h = Harness::start_with(Options {
        fixture: scale_fixture(),
        settings: settings(),
    })
    .await;
    h.sync_index("acme").await;
    h
}

/// Kubernetes requests so far by (resource, verb); the harness and the reconciler share
/// one client, so the test's own requests count too.
fn kube_requests(h: &Harness) -> BTreeMap<(String, String), u64> {
    h.server.counters().accesses_of("").into_iter().fold(
        BTreeMap::new(),
        |mut out, ((_, resource, verb), n)| {
            *out.entry((resource, verb)).or_default() += n;
            out
        },
    )
}

fn count(h: &Harness, route: &str) -> u64 {
    support::okta_requests_on(&h.okta, route)
}

const PUT: &str = "PUT /api/v1/groups/{groupId}/users/{userId}";
const MEMBERS: &str = "GET /api/v1/groups/{groupId}/users";
/// The read by id that confirms a user the index answered, on Okta's user-by-id bucket.
const USER: &str = "GET /api/v1/users/{idOrLogin}";

async fn apply_one_user_each(h: &Harness, users: std::ops::Range<usize>) {
    for i in users {
        h.apply(
            &format!("gm-{i:03}"),
            json!({"connectorRef": {"name": "acme"}, "group": {"name": group_name(i % GROUPS)},
                   "users": [login(i)]}),
        )
        .await;
    }
}

/// Waits until every `gm-*` in `users` is Ready; returns how many were Granted.
async fn wait_all_ready(h: &Harness, users: std::ops::Range<usize>) -> usize {
    let want = users.len();
    wait_for_long("every membership Ready", || async {
        let list = h.gms().list(&kube::api::ListParams::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|gm| {
                gm.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        (ready == want).then_some(ready)
    })
    .await
}

fn expected_members(
    h: &Harness,
    users: std::ops::Range<usize>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut want: BTreeMap<String, BTreeSet<String>> = (0..GROUPS)
        .map(|g| (group_name(g), BTreeSet::new()))
        .collect();
    want.get_mut(&group_name(0))
        .unwrap()
        .insert(h.user("outsider@example.com"));
    for i in users {
        want.get_mut(&group_name(i % GROUPS))
            .unwrap()
            .insert(h.user(&login(i)));
    }
    want
}

fn actual_members(h: &Harness) -> BTreeMap<String, BTreeSet<String>> {
    (0..GROUPS)
        .map(|g| (group_name(g), h.members(&group_name(g))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_memberships_converges_on_the_bucket_with_about_one_put_each() {
    let h = start_scale().await;
    let before = h.okta.stats();
    let kube_before = kube_requests(&h);

    apply_one_user_each(&h, 0..USERS).await;
    assert_eq!(wait_all_ready(&h, 0..USERS).await, USERS, "zero failures");
    assert_eq!(actual_members(&h), expected_members(&h, 0..USERS));

    let after = h.okta.stats();
    let requests = after.requests.total - before.requests.total;
    let puts = count(&h, PUT);
    let lists = count(&h, MEMBERS) - before.requests.by_route.get(MEMBERS).copied().unwrap_or(0);
    let user_reads = count(&h, USER) - before.requests.by_route.get(USER).copied().unwrap_or(0);
    // The floor is one PUT per (group, user) on the groups bucket; the index answers every
    // user and group lookup, and each group's member list is read once and shared by its
    // memberships. Each user about to be granted is read once by id, on its own bucket.
    assert_eq!(puts, USERS as u64, "{:?}", after.requests.by_route);
    assert!(lists <= GROUPS as u64, "{lists} member lists");
    assert_eq!(user_reads, USERS as u64, "one user read per grant");
    assert!(
        requests <= (2 * USERS + GROUPS) as u64,
        "{requests} requests: {:?}",
        after.requests.by_route
    );
    // The client stayed inside the bucket. Whether it had to pace to do so depends on how
    // fast this machine issues the burst (a loaded one may never reach the budget), so that
    // it paces when it must is shown deterministically in `okta_client_emulator`.
    assert_eq!(after.rate_limited, before.rate_limited, "no 429");

    // The reconciler's own Kubernetes work: one round per membership, each object read
    // from the watch cache, one finalizer patch (which starts no second round), one status
    // write and one Event each; the ownership records read and written once per batch of a
    // group, not once per membership.
    let kube = kube_requests(&h);
    let made = |resource: &str, verb: &str| {
        let key = (resource.to_owned(), verb.to_owned());
        kube.get(&key).copied().unwrap_or(0) - kube_before.get(&key).copied().unwrap_or(0)
    };
    let n = USERS as u64;
    assert_eq!(made("groupmemberships", "get"), 0, "{kube:?}");
    assert_eq!(
        made("groupmemberships", "patch"),
        2 * n,
        "the test's applies and one finalizer patch each"
    );
    assert_eq!(made("groupmemberships/status", "patch"), n, "{kube:?}");
    assert_eq!(made("events", "create"), n, "one Granted Event each");
    let record_writes = made("configmaps", "create") + made("configmaps", "update");
    assert!(
        made("configmaps", "get") <= n / 4 && record_writes <= n / 4,
        "records read and written in batches: {kube:?}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_and_server_errors_converge_leaving_unowned_members_alone() {
    let h = start_scale().await;
    const N: usize = 40;
    h.okta.set_faults(Faults {
        drop_next: 6,
        drop_rate: 0.1,
        error_rate: 0.15,
        error_status: Some(503),
        ..Faults::default()
    });
    apply_one_user_each(&h, 0..N).await;
    assert_eq!(wait_all_ready(&h, 0..N).await, N);
    let stats = h.okta.stats();
    h.okta.set_faults(Faults::default());
    assert!(
        stats
            .requests
            .by_status
            .get("dropped")
            .copied()
            .unwrap_or(0)
            >= 6,
        "{stats:?}"
    );
    assert_eq!(actual_members(&h), expected_members(&h, 0..N));

    // Revocation through dropped connections too: only the operator's grants go.
    h.okta.set_faults(Faults {
        drop_next: 4,
        drop_rate: 0.1,
        ..Faults::default()
    });
    for i in 0..N {
        h.delete(&format!("gm-{i:03}")).await;
    }
    for i in 0..N {
        h.wait_gone(&format!("gm-{i:03}")).await;
    }
    h.okta.set_faults(Faults::default());
    assert_eq!(actual_members(&h), expected_members(&h, 0..0));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_okta_write_and_the_record_write_converges_without_double_effects() {
    let mut h = start_scale().await;
    h.stop_operator().await;
    let group = h.group(&group_name(1));
    let (granted, intended, revoked, kept) = (
        h.user(&login(1)),
        h.user(&login(2)),
        h.user(&login(3)),
        h.user(&login(4)),
    );
    // The state each crash leaves: the write-ahead record claims all three as Granted.
    // - "granted": the PUT ran, the settled record and status were never written.
    // - "intended": the operator died before the PUT.
    // - "revoked": its owner stopped declaring it, the DELETE ran, the release was not stored.
    h.okta.add_membership(&group, &granted).unwrap();
    h.okta.add_membership(&group, &kept).unwrap();
    let claim = |owner: &str| Ownership {
        origin: Origin::Granted,
        claimants: BTreeSet::from([format!("{NS}/{owner}")]),
    };
    let record = GroupRecord {
        members: BTreeMap::from([
            (granted.clone(), claim("crash-granted")),
            (intended.clone(), claim("crash-intended")),
            (revoked.clone(), claim("crash-revoked")),
        ]),
    };
    let domain = OrgDomain::parse(&h.okta.domain(), &policy())
        .unwrap()
        .to_string();
    let store = RecordStore::new(h.kube.clone(), OPERATOR_NS);
    let read = store.read(&domain, &group).await.unwrap();
    store.write(&domain, &group, &read, &record).await.unwrap();
    let spec = |users: &[String]| json!({"connectorRef": {"name": "acme"}, "group": {"id": group}, "users": users});
    h.apply("crash-granted", spec(&[login(1)])).await;
    h.apply("crash-intended", spec(&[login(2)])).await;
    // Now declares someone else (already a member, so no write is due for it either).
    h.apply("crash-revoked", spec(&[login(4)])).await;
    let puts = count(&h, PUT);
    let deletes = count(&h, "DELETE /api/v1/groups/{groupId}/users/{userId}");

    h.start_operator();
    for name in ["crash-granted", "crash-intended", "crash-revoked"] {
        h.wait_condition(name, "Ready", "True", "Granted").await;
    }
    let gm = h.get("crash-granted").await.unwrap();
    assert_eq!(
        state_of(&gm, &login(1)),
        "Granted/Some(Granted)/Granted",
        "the operator's own grant never turns preexisting"
    );
    let gm = h.get("crash-intended").await.unwrap();
    assert_eq!(state_of(&gm, &login(2)), "Granted/Some(Granted)/Granted");
    let gm = h.get("crash-revoked").await.unwrap();
    assert_eq!(
        state_of(&gm, &login(4)),
        "Granted/Some(Preexisting)/Preexisting"
    );
    assert_eq!(count(&h, PUT) - puts, 1, "only the missing grant is made");
    assert_eq!(
        count(&h, "DELETE /api/v1/groups/{groupId}/users/{userId}"),
        deletes,
        "the revoked membership is not deleted again"
    );
    assert_eq!(
        h.members(&group_name(1)),
        BTreeSet::from([granted.clone(), intended.clone(), kept.clone()])
    );
    let stored = wait_for("the released claim is stored", || async {
        let r = store.read(&domain, &group).await.ok()?.record;
        (!r.members.contains_key(&revoked)).then_some(r)
    })
    .await;
    assert_eq!(stored.members[&granted].origin, Origin::Granted);
    assert_eq!(stored.members[&kept].origin, Origin::Preexisting);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_switch_refuses_every_write_naming_the_flag() {
    let h = Harness::start_with(Options {
        settings: Settings {
            provisioning: false,
            ..Options::default().settings
        },
        ..Options::default()
    })
    .await;
    let before = h.okta.stats().requests.total;
    h.apply(
        "switched-off",
        one_user("acme", "Eng Admins", "alice@example.com"),
    )
    .await;
    let gm = h
        .wait_condition("switched-off", "Ready", "False", "ProvisioningDisabled")
        .await;
    let row = user_row(&gm, "alice@example.com");
    let message = row.message.as_deref().unwrap_or_default();
    assert!(message.contains("--provisioning"), "{message}");
    h.wait_event("switched-off", "Warning", "ProvisioningDisabled")
        .await;
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(h.kube.clone(), NS);
    let notes: Vec<String> = events
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ProvisioningDisabled"))
        .filter_map(|e| e.note)
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("BATON_PROVISIONING")),
        "the Event names the switch: {notes:?}"
    );
    assert_eq!(h.writes(), 0);
    assert_eq!(
        h.okta.stats().requests.total,
        before,
        "not even a lookup reaches Okta"
    );
    assert!(h.members("Eng Admins").is_empty());
    h.shutdown().await;
}
