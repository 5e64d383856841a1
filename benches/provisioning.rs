//! Provisioning benchmark: the real `okta-ciam-operator run` binary (a child process)
//! against the Kubernetes API test server (through a kubeconfig) and the Okta emulator
//! (both in this process), so the figures are the operator's.
//!
//! Prints:
//! - provisioning latency (apply -> member in the emulator), p50/p95 over
//!   `PROVISIONING_BENCH_LATENCY_SAMPLES` (default 20) single-user `GroupMembership`s applied
//!   one after another;
//! - the time for 1,000 single-user `GroupMembership`s spread over 10 groups, applied at once,
//!   to all become Ready; the Okta requests (PUTs, member lists, user reads by id, searches)
//!   and 429s they cost, the operator's Kubernetes API calls per membership (counted by the
//!   test server, by verb and resource); and the groups bucket's floor: every request the
//!   burst must make on that bucket (the 1,000 PUTs and the member list of each group, read
//!   before its first grant) at Okta's groups limit (500 per window) and the default 50%
//!   budget, `(ceil(requests / (0.5 * 500)) - 1) * window`, on shortened windows
//!   (`PROVISIONING_BENCH_WINDOW_SECONDS`, default 15, as the sync benchmark), beside the
//!   PUT-only figure.
//!
//! With `PROVISIONING_BENCH_MODE=access`, the just-in-time access section instead (on an
//! unthrottled emulator): approval -> member in Okta p50/p95 over the same number of samples,
//! one AccessRequest approved at a time, and `ACCESS_BURST` (200) pending requests approved at
//! once until every user is a member.
//!
//! `cargo bench --bench provisioning` (see docs/provisioning.md for recorded figures).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_test_server::{Counters, TestServer};
use okta_ciam_operator::crd::{GroupMembership, OktaCiamConnector};
use okta_emulator::{self as emulator, EmulatorConfig, EmulatorHandle, Fixture};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_okta-ciam-operator");
/// Every CRD the operator requires.
const CRDS: [&str; 8] = [
    concat!(env!("CARGO_MANIFEST_DIR"), "/crds/oktaciamconnectors.yaml"),
    concat!(env!("CARGO_MANIFEST_DIR"), "/crds/groupmemberships.yaml"),
    concat!(env!("CARGO_MANIFEST_DIR"), "/crds/accesspolicies.yaml"),
    concat!(env!("CARGO_MANIFEST_DIR"), "/crds/accessrequests.yaml"),
    concat!(env!("CARGO_MANIFEST_DIR"), "/crds/accessapprovals.yaml"),
    concat!(env!("CARGO_MANIFEST_DIR"), "/crds/accessreviews.yaml"),
    concat!(env!("CARGO_MANIFEST_DIR"), "/crds/accessreviewchunks.yaml"),
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/accessreviewdecisions.yaml"
    ),
];
/// The operator's bearer token towards the test server, to tell its requests from the
/// benchmark's own.
const OPERATOR: &str = "operator";
const NS: &str = "bench";
const BURST: usize = 1000;
const GROUPS: usize = 10;
/// Okta's default Workforce limits per window.
const LIMIT_GROUPS: u32 = 500;
const BUDGET_PERCENT: u32 = 50;
/// Every wait in the benchmark gives up after this long.
const GIVE_UP: Duration = Duration::from_secs(900);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fixture(window: u64, samples: usize) -> String {
    let mut f = String::from("tokens: [bench-token]\n");
    let _ = writeln!(
        f,
        "rateLimits: {{windowSeconds: {window}, users: 600, groups: {LIMIT_GROUPS}, default: 1200, concurrency: 75}}"
    );
    f.push_str("users:\n");
    for i in 0..samples {
        let _ = writeln!(f, "  - {{login: latency{i:03}@example.com}}");
    }
    for i in 0..BURST {
        let _ = writeln!(f, "  - {{login: burst{i:04}@example.com}}");
    }
    f.push_str("groups:\n  - {name: Latency}\n");
    for g in 0..GROUPS {
        let _ = writeln!(f, "  - {{name: Burst {g}}}");
    }
    f
}

/// Polls `check` every `every` until it is true; panics after [`GIVE_UP`].
async fn wait_until<F, Fut>(what: &str, every: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + GIVE_UP;
    while !check().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

async fn apply(kube: &Client, name: &str, group: &str, user: &str) {
    let api: Api<GroupMembership> = Api::namespaced(kube.clone(), NS);
    let obj = json!({
        "apiVersion": "oktaciam.io/v1alpha1", "kind": "GroupMembership",
        "metadata": {"name": name},
        "spec": {"connectorRef": {"name": "acme"}, "group": {"name": group}, "users": [user]},
    });
    api.patch(
        name,
        &PatchParams::apply("bench").force(),
        &Patch::Apply(&obj),
    )
    .await
    .expect("apply a GroupMembership");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The operator's Kubernetes API requests between two counter readings, by (resource, verb).
fn operator_calls(before: &Counters, after: &Counters) -> BTreeMap<(String, String), u64> {
    let before = before.accesses_of(OPERATOR);
    after
        .accesses_of(OPERATOR)
        .into_iter()
        .filter_map(|(key, n)| {
            let n = n - before.get(&key).copied().unwrap_or(0);
            let (_, resource, verb) = key;
            (n > 0).then_some(((resource, verb), n))
        })
        .collect()
}

struct Operator(Child);

/// Starts `okta-ciam-operator run` against the cluster of `kubeconfig`, logging to `log`.
fn spawn_operator(kubeconfig: &std::path::Path, log: &std::path::Path) -> Operator {
    Operator(
        Command::new(BIN)
            .args([
                "run",
                "--metrics-addr",
                "127.0.0.1:0",
                "--insecure-loopback-http",
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .env("OKTA_CIAM_LOG_FORMAT", "text")
            .env_remove("OKTA_CIAM_LEADER_ELECT")
            .env_remove("OKTA_CIAM_PROVISIONING")
            .env_remove("BATON_PROVISIONING")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start the operator"),
    )
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn setup(kube: &Client, okta: &EmulatorHandle) {
    let namespaces: Api<Namespace> = Api::all(kube.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), NS);
    let secret = serde_json::from_value(json!({
        "metadata": {"name": "okta"}, "stringData": {"token": okta.token()},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let connectors: Api<OktaCiamConnector> = Api::namespaced(kube.clone(), NS);
    let connector = serde_json::from_value(json!({
        "apiVersion": "oktaciam.io/v1alpha1", "kind": "OktaCiamConnector",
        "metadata": {"name": "acme"},
        "spec": {"domain": okta.domain(), "tokenSecretRef": {"name": "okta", "key": "token"},
                 "emailDomains": ["example.com"], "provisioning": true},
    }))
    .unwrap();
    connectors
        .create(&PostParams::default(), &connector)
        .await
        .unwrap();
}

async fn connector_ready(kube: &Client) -> bool {
    let api: Api<OktaCiamConnector> = Api::namespaced(kube.clone(), NS);
    api.get_opt("acme").await.ok().flatten().is_some_and(|c| {
        c.status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    })
}

async fn ready_count(kube: &Client, prefix: &str) -> usize {
    let api: Api<GroupMembership> = Api::namespaced(kube.clone(), NS);
    let Ok(list) = api.list(&ListParams::default()).await else {
        return 0;
    };
    list.items
        .iter()
        .filter(|gm| {
            gm.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(prefix))
        })
        .filter(|gm| {
            gm.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .count()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let window: u64 = env_or("PROVISIONING_BENCH_WINDOW_SECONDS", 15);
    let samples: usize = env_or("PROVISIONING_BENCH_LATENCY_SAMPLES", 20).max(1);

    if std::env::var("PROVISIONING_BENCH_MODE").as_deref() == Ok("access") {
        return access_benchmark(samples).await;
    }
    let server = TestServer::start(CRDS).await.expect("kube test server");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig_as(&kubeconfig, OPERATOR).unwrap();
    let kube = server.client();
    let okta = emulator::start(EmulatorConfig::new(
        Fixture::from_yaml(&fixture(window, samples)).unwrap(),
    ))
    .await
    .expect("emulator");
    setup(&kube, &okta).await;

    let _operator = spawn_operator(&kubeconfig, &dir.path().join("operator.log"));
    wait_until(
        "the connector's first sync",
        Duration::from_millis(100),
        || connector_ready(&kube),
    )
    .await;

    // Latency: one membership at a time, apply -> member in the emulator.
    let group = okta.group_id("Latency").unwrap();
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let login = format!("latency{i:03}@example.com");
        let user = okta.user_id(&login).unwrap();
        let started = Instant::now();
        apply(&kube, &format!("latency-{i:03}"), "Latency", &login).await;
        wait_until("a member", Duration::from_millis(2), || async {
            okta.members_of(&group).contains(&user)
        })
        .await;
        latencies.push(started.elapsed());
    }
    latencies.sort();

    // Burst: 1,000 memberships applied at once, until every one is Ready.
    let before = okta.stats();
    let kube_before = server.counters();
    let started = Instant::now();
    for i in 0..BURST {
        let login = format!("burst{i:04}@example.com");
        apply(
            &kube,
            &format!("burst-{i:04}"),
            &format!("Burst {}", i % GROUPS),
            &login,
        )
        .await;
    }
    let applied = started.elapsed();
    wait_until(
        "every burst membership Ready",
        Duration::from_millis(250),
        || async { ready_count(&kube, "burst-").await == BURST },
    )
    .await;
    let elapsed = started.elapsed();
    let after = okta.stats();
    let kube_calls = operator_calls(&kube_before, &server.counters());
    let members: BTreeSet<String> = (0..GROUPS)
        .flat_map(|g| okta.members_of(&okta.group_id(&format!("Burst {g}")).unwrap()))
        .collect();
    assert_eq!(members.len(), BURST, "every burst user is a member");

    let by_route = |route: &str| {
        after.requests.by_route.get(route).copied().unwrap_or(0)
            - before.requests.by_route.get(route).copied().unwrap_or(0)
    };
    let requests = after.requests.total - before.requests.total;
    let puts = by_route("PUT /api/v1/groups/{groupId}/users/{userId}");
    let lists = by_route("GET /api/v1/groups/{groupId}/users");
    // The read by id that confirms each user the index answered before its PUT.
    let user_reads = by_route("GET /api/v1/users/{idOrLogin}");
    let searches = by_route("GET /api/v1/users") + by_route("GET /api/v1/groups");
    let per_window = u64::from(LIMIT_GROUPS) * u64::from(BUDGET_PERCENT) / 100;
    // Whole windows the bucket's requests need; the last starts after `windows - 1` resets.
    let floor_of =
        |requests: u64| Duration::from_secs((requests.div_ceil(per_window) - 1) * window);
    // The member lists are part of the floor: a group's members are read before its first
    // grant (what was there before is never the operator's), on the same bucket as the PUTs.
    let floor = floor_of(puts + lists.max(GROUPS as u64));
    let put_floor = floor_of(BURST as u64);

    println!("provisioning benchmark (operator binary: {BIN})");
    println!(
        "latency over {samples} single-user GroupMemberships: p50 {:.0} ms, p95 {:.0} ms",
        percentile(&latencies, 50.0).as_secs_f64() * 1000.0,
        percentile(&latencies, 95.0).as_secs_f64() * 1000.0
    );
    println!(
        "{BURST} GroupMemberships over {GROUPS} groups: all Ready in {:.1} s (applied in {:.1} s)",
        elapsed.as_secs_f64(),
        applied.as_secs_f64()
    );
    println!(
        "okta requests: {requests} ({puts} PUT, {lists} member lists, {user_reads} user reads, {searches} searches); 429s: {}",
        after.rate_limited - before.rate_limited
    );
    let kube_total: u64 = kube_calls.values().sum();
    let kube_detail = kube_calls
        .iter()
        .map(|((resource, verb), n)| format!("{n} {verb} {resource}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "kubernetes API calls by the operator: {kube_total} ({:.2} per membership; {kube_detail})",
        kube_total as f64 / BURST as f64
    );
    let ratio = |f: Duration| elapsed.as_secs_f64() / f.as_secs_f64().max(f64::EPSILON);
    println!(
        "groups bucket floor: {puts} PUTs + {lists} member lists at {per_window} per {window} s window ({LIMIT_GROUPS} x {BUDGET_PERCENT}%) = {:.1} s; ratio {:.2}x (target 1.2x: {})",
        floor.as_secs_f64(),
        ratio(floor),
        if ratio(floor) <= 1.2 { "met" } else { "MISSED" }
    );
    println!(
        "(PUTs alone: {BURST} at {per_window} per window = {:.1} s; ratio {:.2}x)",
        put_floor.as_secs_f64(),
        ratio(put_floor)
    );
    okta.shutdown().await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Just-in-time access (`PROVISIONING_BENCH_MODE=access`): approval -> member in Okta.
// ---------------------------------------------------------------------------------------

/// Requests approved at once in the access burst.
const ACCESS_BURST: usize = 200;
/// The one approver of every access request.
const APPROVER: &str = "approver@example.com";

/// Users `access000..` (samples, then the burst) and group `Access`, with limits far above
/// what the run uses, so the figures are the operator's and not Okta's rate limits.
fn access_fixture(samples: usize) -> String {
    let mut f = String::from(
        "tokens: [bench-token]\nrateLimits: {windowSeconds: 60, users: 100000, userById: 100000, \
         groups: 100000, groupById: 100000, default: 100000, concurrency: 1000}\nusers:\n",
    );
    for i in 0..samples + ACCESS_BURST {
        let _ = writeln!(f, "  - {{login: access{i:03}@example.com}}");
    }
    f.push_str("groups:\n  - {name: Access}\n");
    f
}

/// Creates alice-style request `i` for `access{i}` and returns its (name, uid) once the
/// operator has seen it (phase Pending), as a real request waits for its approver.
async fn pending_request(kube: &Client, i: usize) -> (String, String) {
    use okta_ciam_operator::crd::{AccessPhase, AccessRequest};
    let api: Api<AccessRequest> = Api::namespaced(kube.clone(), NS);
    let name = format!("access-{i:03}");
    let obj = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"policy": "bench", "requester": {"username": format!("access{i:03}@example.com")},
                 "group": "Access", "duration": "1h", "reason": "benchmark"},
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    wait_until("a Pending request", Duration::from_millis(5), || async {
        api.get(&name)
            .await
            .ok()
            .and_then(|r| r.status)
            .and_then(|s| s.phase)
            == Some(AccessPhase::Pending)
    })
    .await;
    (name, created.metadata.uid.unwrap())
}

async fn approve(kube: &Client, name: &str, uid: &str) {
    let api: Api<okta_ciam_operator::crd::AccessApproval> = Api::namespaced(kube.clone(), NS);
    let obj = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-ok")},
        "spec": {"request": {"name": name, "uid": uid}, "policy": "bench", "decision": "Approve",
                 "approver": {"username": APPROVER}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

async fn access_benchmark(samples: usize) {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    use okta_ciam_operator::controller::admission::SHIPPED;
    let server = TestServer::start(CRDS).await.expect("kube test server");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let kube = server.client();
    let okta = emulator::start(EmulatorConfig::new(
        Fixture::from_yaml(&access_fixture(samples)).unwrap(),
    ))
    .await
    .expect("emulator");
    setup(&kube, &okta).await;
    // The admission policy the operator requires (its CEL is not run here), the policy, and
    // the approver's RBAC, answered by the test server's SubjectAccessReviews.
    let (vap, binding) = SHIPPED.clone();
    Api::<ValidatingAdmissionPolicy>::all(kube.clone())
        .create(&PostParams::default(), &vap)
        .await
        .unwrap();
    Api::<ValidatingAdmissionPolicyBinding>::all(kube.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let policy: okta_ciam_operator::crd::AccessPolicy = serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "spec": {"requests": {"connectorRef": {"name": "acme"}, "namespaces": [NS],
                 "groups": ["Access"], "maxDuration": "8h"}},
    }))
    .unwrap();
    Api::<okta_ciam_operator::crd::AccessPolicy>::all(kube.clone())
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    server.authorizer().allow(kube_test_server::AuthzRule {
        subject: kube_test_server::AuthzSubject::User(APPROVER.into()),
        verb: "approve".into(),
        group: "oktaciam.io".into(),
        resource: "accesspolicies".into(),
        name: "bench".into(),
    });
    let _operator = spawn_operator(&kubeconfig, &dir.path().join("operator.log"));
    wait_until(
        "the connector's first sync",
        Duration::from_millis(100),
        || connector_ready(&kube),
    )
    .await;
    let group = okta.group_id("Access").unwrap();
    let member = |i: usize| okta.user_id(&format!("access{i:03}@example.com")).unwrap();

    // Latency: one request at a time, approval created -> member in the emulator.
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let (name, uid) = pending_request(&kube, i).await;
        let user = member(i);
        let started = Instant::now();
        approve(&kube, &name, &uid).await;
        wait_until("a member", Duration::from_millis(2), || async {
            okta.members_of(&group).contains(&user)
        })
        .await;
        latencies.push(started.elapsed());
    }
    latencies.sort();

    // Burst: ACCESS_BURST pending requests, then every approval at once.
    let burst: Vec<usize> = (samples..samples + ACCESS_BURST).collect();
    let pending = futures::future::join_all(burst.iter().map(|i| pending_request(&kube, *i))).await;
    let before = okta.stats();
    let started = Instant::now();
    futures::future::join_all(pending.iter().map(|(name, uid)| approve(&kube, name, uid))).await;
    let approved = started.elapsed();
    let users: BTreeSet<String> = burst.iter().map(|i| member(*i)).collect();
    wait_until(
        "every burst user a member",
        Duration::from_millis(20),
        || async {
            let members: BTreeSet<String> = okta.members_of(&group).into_iter().collect();
            users.is_subset(&members)
        },
    )
    .await;
    let elapsed = started.elapsed();
    let after = okta.stats();

    println!("access request benchmark (operator binary: {BIN}, unthrottled emulator)");
    println!(
        "approval -> member in Okta over {samples} AccessRequests: p50 {:.0} ms, p95 {:.0} ms",
        percentile(&latencies, 50.0).as_secs_f64() * 1000.0,
        percentile(&latencies, 95.0).as_secs_f64() * 1000.0
    );
    println!(
        "{ACCESS_BURST} pending AccessRequests approved at once: every user a member in {:.1} s \
         (approvals created in {:.1} s); okta requests {}, 429s {}",
        elapsed.as_secs_f64(),
        approved.as_secs_f64(),
        after.requests.total - before.requests.total,
        after.rate_limited - before.rate_limited
    );
    okta.shutdown().await;
    server.shutdown().await;
}
