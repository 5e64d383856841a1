//! Review benchmark: a 20,000-item `AccessReview` campaign created, decided, completed and
//! reported, with the `AccessReview` reconciler in this process against the Kubernetes API
//! test server (serving the committed CRDs), and the connector's index built from a synthetic
//! snapshot (`REVIEW_BENCH_USERS` users, default 2,000, each a member of all 10 groups).
//!
//! Prints:
//! - the time to freeze the items (create -> `Open`), and to complete the campaign
//!   (`remediation: Report`, one decision revoking one group's 2,000 items) once due;
//! - the chunks written, their total and largest serialised size (etcd's limit: 1.5 MiB);
//! - the time to read the report from the cluster and write it as CSV, and its size;
//! - this process's peak RSS (`VmHWM`; it includes the test server and its store).
//!
//! `cargo bench --bench review` (see docs/reviews.md for recorded figures).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube_test_server::{AuthzRule, AuthzSubject, TestServer};
use okta_ciam_operator::controller::admission;
use okta_ciam_operator::controller::connector::index::{ConnectorFacts, ConnectorIndex};
use okta_ciam_operator::controller::review::{self, report};
use okta_ciam_operator::controller::runtime::Context;
use okta_ciam_operator::controller::runtime::clients::{ClientRegistry, ConnectorKey};
use okta_ciam_operator::controller::runtime::leader::Leadership;
use okta_ciam_operator::controller::runtime::metrics::Metrics;
use okta_ciam_operator::controller::runtime::server::Readiness;
use okta_ciam_operator::crd::review::{AccessReviewChunk, ReviewPhase};
use okta_ciam_operator::crd::{AccessReview, AccessReviewDecision};
use okta_ciam_operator::okta::{ApiToken, ClientOptions, DomainPolicy, OrgDomain};
use okta_ciam_operator::review::cli::WorkbookFormat;
use okta_ciam_operator::review::workbook;
use okta_ciam_operator::sync::scope::EmailDomains;
use okta_ciam_operator::sync::snapshot::{Grant, Snapshot, SnapshotGroup, SnapshotUser};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const NS: &str = "bench";
const GROUPS: usize = 10;
const GIVE_UP: Duration = Duration::from_secs(900);

fn crds() -> Vec<String> {
    [
        "oktaciamconnectors",
        "groupmemberships",
        "accesspolicies",
        "accessrequests",
        "accessapprovals",
        "accessreviews",
        "accessreviewchunks",
        "accessreviewdecisions",
    ]
    .iter()
    .map(|c| format!("{}/crds/{c}.yaml", env!("CARGO_MANIFEST_DIR")))
    .collect()
}

fn snapshot(users: usize) -> Snapshot {
    let groups: Vec<SnapshotGroup> = (0..GROUPS)
        .map(|g| SnapshotGroup {
            id: format!("00g{g:017}"),
            name: format!("Group {g}"),
            group_type: "OKTA_GROUP".into(),
            member_count: users as u64,
        })
        .collect();
    let users: Vec<SnapshotUser> = (0..users)
        .map(|u| SnapshotUser {
            id: format!("00u{u:017}"),
            login: format!("user{u}@example.com"),
            email: Some(format!("user{u}@example.com")),
            status: "ACTIVE".into(),
            disabled: false,
            display_name: format!("User {u}"),
        })
        .collect();
    let grants = users
        .iter()
        .flat_map(|u| groups.iter().map(|g| Grant::membership(&u.id, &g.id)))
        .collect();
    Snapshot {
        domain: "bench.okta.example".into(),
        synced_at: "2026-12-01T00:00:00Z".into(),
        email_domains: vec!["example.com".into()],
        group_name_filter: None,
        users,
        groups,
        roles: Vec::new(),
        custom_roles: Vec::new(),
        grants,
        notes: Vec::new(),
        changes: None,
        log_cursor: None,
        stats: Default::default(),
    }
}

/// This process's peak resident set, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

async fn wait_phase(api: &Api<AccessReview>, phase: ReviewPhase) -> AccessReview {
    let started = Instant::now();
    loop {
        let r = api.get("bench").await.unwrap();
        if r.status.as_ref().and_then(|s| s.phase) == Some(phase) {
            return r;
        }
        assert!(started.elapsed() < GIVE_UP, "gave up waiting for {phase:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let users: usize = std::env::var("REVIEW_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let server = TestServer::start(crds()).await.unwrap();
    let kube = server.client();
    Api::<Namespace>::all(kube.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap(),
        )
        .await
        .unwrap();
    let (policy, binding) = admission::SHIPPED.clone();
    Api::<ValidatingAdmissionPolicy>::all(kube.clone())
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    Api::<ValidatingAdmissionPolicyBinding>::all(kube.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    server.authorizer().allow(AuthzRule {
        subject: AuthzSubject::User("carol@example.org".into()),
        verb: "review".into(),
        group: "oktaciam.io".into(),
        resource: "accessreviews".into(),
        name: "bench".into(),
    });

    // The index the connector reconciler would hold after a sync; its client is never called
    // (remediation: Report), so it points at a closed loopback port.
    let registry = Arc::new(ClientRegistry::new());
    let key = ConnectorKey::new(NS, "acme");
    let loopback = DomainPolicy {
        insecure_loopback_http: true,
        ..DomainPolicy::default()
    };
    let domain = OrgDomain::parse("127.0.0.1:9", &loopback).unwrap();
    registry
        .okta_client(
            &key,
            &domain,
            &ApiToken::new("bench".to_owned()),
            ClientOptions::default(),
        )
        .unwrap();
    let facts = ConnectorFacts {
        ready: true,
        provisioning: true,
        suspended: false,
        email_domains: EmailDomains::new(["example.com"]).unwrap(),
        group_name_filter: None,
        generation: Some(1),
    };
    let index = ConnectorIndex::build(snapshot(users), facts, jiff::Timestamp::now());
    assert!(registry.set_index(&key, Arc::new(index)));

    let stop = CancellationToken::new();
    let ctx = Context {
        kube: kube.clone(),
        namespaces: Vec::new(),
        domain_policy: loopback,
        metrics: Metrics::new(),
        clients: registry,
        readiness: Readiness::new(),
        leadership: Leadership::always(&stop),
        shutdown: stop.clone(),
    };
    let settings = review::Settings {
        recheck: Duration::from_millis(500),
        retry_delay: Duration::from_millis(200),
    };
    let controller = tokio::spawn(async move {
        let (synced, _) = tokio::sync::oneshot::channel();
        review::run_with(ctx, settings, synced).await.unwrap();
    });

    let reviews: Api<AccessReview> = Api::namespaced(kube.clone(), NS);
    // Due far enough ahead to freeze and decide first on a slow machine.
    let due = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
    let obj = serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "spec": {"connectorRef": {"name": "acme"}, "reviewers": {"users": ["carol@example.org"]},
                 "dueAt": due.to_string(), "remediation": "Report"},
    }))
    .unwrap();
    let started = Instant::now();
    let created = reviews.create(&PostParams::default(), &obj).await.unwrap();
    let open = wait_phase(&reviews, ReviewPhase::Open).await;
    let frozen_after = started.elapsed();
    let items = open.status.as_ref().unwrap().items.unwrap();

    let decision = serde_json::from_value(json!({
        "metadata": {"name": "carol-group-0"},
        "spec": {"review": {"name": "bench", "uid": created.metadata.uid.unwrap()},
                 "reviewer": {"username": "carol@example.org"}, "decision": "Revoke",
                 "items": {"groups": ["Group 0"]}},
    }))
    .unwrap();
    Api::<AccessReviewDecision>::namespaced(kube.clone(), NS)
        .create(&PostParams::default(), &decision)
        .await
        .unwrap();
    // Remediation starts at the stored due time (whole seconds, so up to a second before
    // `due`): measure from it by the wall clock, up to the poll that sees the campaign
    // completed (every 100 ms).
    tokio::time::sleep(jiff::Timestamp::now().duration_until(due).unsigned_abs()).await;
    let done = wait_phase(&reviews, ReviewPhase::Completed).await;
    let completed_after_due = jiff::Timestamp::now()
        .duration_since(done.spec.due_at.0)
        .unsigned_abs();
    let status = done.status.unwrap();

    let chunks = Api::<AccessReviewChunk>::namespaced(kube.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let sizes: Vec<usize> = chunks
        .iter()
        .map(|c| serde_json::to_vec(c).unwrap().len())
        .collect();
    let review_size = serde_json::to_vec(&reviews.get("bench").await.unwrap())
        .unwrap()
        .len();

    let report_started = Instant::now();
    let args = report::ReportArgs {
        name: "bench".into(),
        namespace: Some(NS.into()),
        format: WorkbookFormat::Csv,
        output: None,
    };
    let rows = report::read(kube.clone(), &args).await.unwrap();
    let mut csv = Vec::new();
    workbook::write_report_csv(&rows, &mut csv).unwrap();
    let report_time = report_started.elapsed();

    println!("review bench: {items} items ({users} users x {GROUPS} groups)");
    println!(
        "  freeze: {:.2}s from create to Open, {} chunks",
        frozen_after.as_secs_f64(),
        chunks.len()
    );
    println!(
        "  decisions: {:?}; outcomes: {:?}",
        status.decisions.unwrap_or_default(),
        status.outcomes.unwrap_or_default()
    );
    println!(
        "  completed {:.2}s after the due time (seen by a poll every 100 ms)",
        completed_after_due.as_secs_f64()
    );
    println!(
        "  objects: {} chunks, {:.2} MiB in all, largest {:.3} MiB; AccessReview {:.1} KiB",
        sizes.len(),
        sizes.iter().sum::<usize>() as f64 / 1_048_576.0,
        sizes.iter().max().copied().unwrap_or(0) as f64 / 1_048_576.0,
        review_size as f64 / 1024.0
    );
    println!(
        "  report: {} rows, {:.2} MiB CSV, read and written in {:.2}s",
        rows.len(),
        csv.len() as f64 / 1_048_576.0,
        report_time.as_secs_f64()
    );
    println!(
        "  peak RSS: {:.0} MiB (this process: reconciler, test server and its store)",
        peak_rss_mib()
    );
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), controller).await;
    server.shutdown().await;
}
