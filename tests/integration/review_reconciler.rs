//! User access review campaigns over real HTTP: the Kubernetes API test server (serving the
//! committed CRDs, answering SubjectAccessReviews from rules set here), the Okta emulator with
//! an adversarial org, and the `GroupMembership` and `AccessReview` reconcilers running.
//!
//! The test server cannot run the ValidatingAdmissionPolicy's CEL, so these tests write the
//! reviewer identities the policy would have admitted; what they prove is the operator's side:
//! items frozen with how each grant came about, decisions counted only from listed reviewers
//! who do not review themselves, and remediation that removes only what neither Git nor a
//! person owns, with every Okta DELETE counted.

use crate::membership_support;

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube_test_server::{AuthzRule, AuthzSubject};
use membership_support::*;
use okta_ciam_operator::controller::admission;
use okta_ciam_operator::controller::review::{self, report};
use okta_ciam_operator::controller::runtime::Context;
use okta_ciam_operator::controller::runtime::leader::Leadership;
use okta_ciam_operator::controller::runtime::server::Readiness;
use okta_ciam_operator::crd::review::{
    AccessReviewChunk, GrantSource, ItemKind, ItemOutcome, ReviewItem, ReviewPhase,
};
use okta_ciam_operator::crd::{AccessReview, AccessReviewDecision, MembershipOrigin};
use okta_ciam_operator::review::cli::WorkbookFormat;
use okta_ciam_operator::review::workbook;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Mixed-case addresses, a look-alike domain, an imported group, the built-in Everyone group
/// holding a role (so every member holds it through the group), a direct role.
const ORG: &str = r#"
tokens: [test-token]
rateLimits: {windowSeconds: 1}
users:
  - {login: Alice.Admin@Example.COM, email: Alice.Admin@Example.COM}
  - {login: dave@example.com}
  - {login: erin@example.com}
  - {login: frank@example.com}
  - {login: grace@example.com}
  - {login: carol@example.com}
  - {login: mallory@example.com.evil.io}
groups:
  - {name: Everyone, type: BUILT_IN, members: [Alice.Admin@Example.COM, dave@example.com, erin@example.com, frank@example.com, grace@example.com, carol@example.com, mallory@example.com.evil.io]}
  - {name: Engineering, members: [Alice.Admin@Example.COM, dave@example.com, erin@example.com, grace@example.com, mallory@example.com.evil.io]}
  - {name: Payroll}
  - {name: AD Staff, type: APP_GROUP, members: [dave@example.com]}
roleAssignments:
  - {group: Everyone, role: READ_ONLY_ADMIN}
  - {user: Alice.Admin@Example.COM, role: SUPER_ADMIN}
"#;

const REVIEW: &str = "q4";

/// The membership harness on [`ORG`] plus the review controller (one or more replicas).
struct Reviews {
    h: Harness,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Reviews {
    async fn start() -> Reviews {
        let h = Harness::start_with(Options {
            fixture: ORG.to_owned(),
            ..Options::default()
        })
        .await;
        let mut r = Reviews {
            h,
            stop: CancellationToken::new(),
            tasks: Vec::new(),
        };
        r.start_replica();
        r
    }

    /// Starts another review controller that also leads, as two replicas would during a
    /// leadership hand-over.
    fn start_replica(&mut self) {
        let ctx = Context {
            kube: self.h.kube.clone(),
            namespaces: Vec::new(),
            domain_policy: policy(),
            metrics: self.h.metrics.clone(),
            clients: self.h.registry.clone(),
            readiness: Readiness::new(),
            leadership: Leadership::always(&self.stop),
            shutdown: self.stop.clone(),
        };
        let settings = review::Settings {
            recheck: Duration::from_millis(300),
            retry_delay: Duration::from_millis(200),
        };
        self.tasks.push(tokio::spawn(async move {
            let (synced, _) = tokio::sync::oneshot::channel();
            review::run_with(ctx, settings, synced).await.unwrap();
        }));
    }

    async fn shutdown(self) {
        self.stop.cancel();
        for task in self.tasks {
            tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        }
        self.h.shutdown().await;
    }

    async fn install_admission(&self) {
        let (policy, binding) = admission::SHIPPED.clone();
        Api::<ValidatingAdmissionPolicy>::all(self.h.kube.clone())
            .create(&PostParams::default(), &policy)
            .await
            .unwrap();
        Api::<ValidatingAdmissionPolicyBinding>::all(self.h.kube.clone())
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
    }

    /// Lets `user` review the campaign (RBAC verb review on the AccessReview).
    fn may_review(&self, user: &str) {
        self.h.server.authorizer().allow(AuthzRule {
            subject: AuthzSubject::User(user.into()),
            verb: "review".into(),
            group: "oktaciam.io".into(),
            resource: "accessreviews".into(),
            name: REVIEW.into(),
        });
    }

    fn reviews(&self) -> Api<AccessReview> {
        Api::namespaced(self.h.kube.clone(), NS)
    }

    /// Creates the campaign (spec fields in `extra` over the defaults); returns its uid.
    async fn campaign(&self, extra: Value) -> String {
        self.campaign_named(REVIEW, extra).await
    }

    /// [`Reviews::campaign`] under another name.
    async fn campaign_named(&self, name: &str, extra: Value) -> String {
        let mut spec = json!({
            "connectorRef": {"name": "acme"},
            "includeRoles": true,
            "reviewers": {"users": ["carol@example.com", "alice.admin@example.com"]},
            "dueAt": due_in(3600),
            "remediation": "Revoke",
        });
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let obj =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
        let created = self
            .reviews()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
        created.metadata.uid.unwrap()
    }

    /// `reviewer` decides `decision` on the items `selector` picks.
    async fn decide(&self, name: &str, uid: &str, reviewer: &str, decision: &str, selector: Value) {
        let obj = json!({
            "metadata": {"name": name},
            "spec": {"review": {"name": REVIEW, "uid": uid}, "reviewer": {"username": reviewer},
                     "decision": decision, "items": selector, "note": format!("{name} by {reviewer}")},
        });
        Api::<AccessReviewDecision>::namespaced(self.h.kube.clone(), NS)
            .create(
                &PostParams::default(),
                &serde_json::from_value(obj).unwrap(),
            )
            .await
            .unwrap();
    }

    async fn wait_review(&self, what: &str, check: impl Fn(&AccessReview) -> bool) -> AccessReview {
        wait_for(what, || async {
            let r = self.reviews().get_opt(REVIEW).await.unwrap()?;
            check(&r).then_some(r)
        })
        .await
    }

    async fn chunks(&self) -> Vec<AccessReviewChunk> {
        let mut chunks = Api::<AccessReviewChunk>::namespaced(self.h.kube.clone(), NS)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        chunks.sort_by_key(|c| c.spec.index);
        chunks
    }

    async fn items(&self) -> Vec<ReviewItem> {
        self.chunks()
            .await
            .into_iter()
            .flat_map(|c| c.spec.items)
            .collect()
    }

    fn deletes(&self) -> u64 {
        self.h.requests_where(|route| route.starts_with("DELETE "))
    }
}

fn due_in(seconds: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds)).to_string()
}

fn phase(r: &AccessReview) -> Option<ReviewPhase> {
    r.status.as_ref().and_then(|s| s.phase)
}

fn find<'a>(items: &'a [ReviewItem], login: &str, target: &str) -> &'a ReviewItem {
    items
        .iter()
        .find(|i| i.user_login == login && i.target_name == target)
        .unwrap_or_else(|| panic!("no item {login} / {target}"))
}

/// GroupMemberships grant frank Payroll (Granted) and declare dave in Engineering
/// (Preexisting); then the connector's index is built from a real sync.
async fn declared_memberships_and_index(r: &Reviews) {
    r.h.apply("payroll", one_user("acme", "Payroll", "frank@example.com"))
        .await;
    r.h.apply("eng", one_user("acme", "Engineering", "dave@example.com"))
        .await;
    r.h.wait_condition("payroll", "Ready", "True", "Granted")
        .await;
    r.h.wait_condition("eng", "Ready", "True", "Granted").await;
    r.h.sync_index("acme").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_are_frozen_with_how_each_grant_came_about() {
    let r = Reviews::start().await;
    declared_memberships_and_index(&r).await;
    let uid = r.campaign(json!({})).await;
    let frozen = r
        .wait_review("frozen", |r| phase(r) == Some(ReviewPhase::Open))
        .await;
    let status = frozen.status.unwrap();
    assert!(status.snapshot_digest.unwrap().starts_with("sha256:"));
    let items = r.items().await;
    assert_eq!(status.items, Some(items.len() as i64));
    assert_eq!(status.chunks, Some(1));
    let chunk = &r.chunks().await[0];
    assert_eq!(
        chunk.metadata.owner_references.as_ref().unwrap()[0].uid,
        uid
    );

    // The look-alike domain never reaches a reviewer; the mixed-case login is kept as Okta has it.
    assert!(items.iter().all(|i| !i.user_login.contains("evil")));
    let alice = "Alice.Admin@Example.COM";
    assert_eq!(
        find(&items, alice, "Engineering").source,
        GrantSource::Direct
    );
    assert_eq!(find(&items, alice, "Everyone").source, GrantSource::BuiltIn);
    let super_admin = items
        .iter()
        .find(|i| i.user_login == alice && i.target_id == "SUPER_ADMIN")
        .unwrap();
    assert_eq!(
        (super_admin.kind, super_admin.source),
        (ItemKind::AdminRole, GrantSource::Direct)
    );
    // The built-in group's role: one item per in-scope member, through the group.
    let read_only: Vec<&ReviewItem> = items
        .iter()
        .filter(|i| i.target_id == "READ_ONLY_ADMIN")
        .collect();
    assert_eq!(read_only.len(), 6);
    assert!(
        read_only.iter().all(|i| i.source == GrantSource::ViaGroup
            && i.via_group_name.as_deref() == Some("Everyone"))
    );
    assert_eq!(
        find(&items, "dave@example.com", "AD Staff").source,
        GrantSource::Imported
    );
    // Declared memberships name their GroupMembership and how it came to be.
    let declared = |login: &str, group: &str| {
        find(&items, login, group)
            .declared_by
            .as_ref()
            .map(|d| (d.membership.clone(), d.origin))
    };
    assert_eq!(
        declared("frank@example.com", "Payroll"),
        Some(("payroll".to_owned(), MembershipOrigin::Granted))
    );
    assert_eq!(
        declared("dave@example.com", "Engineering"),
        Some(("eng".to_owned(), MembershipOrigin::Preexisting))
    );
    assert_eq!(declared("erin@example.com", "Engineering"), None);
    r.h.wait_event(REVIEW, "Normal", "Frozen").await;
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_counted_refused_and_remediated_over_http() {
    let r = Reviews::start().await;
    declared_memberships_and_index(&r).await;
    r.install_admission().await;
    for reviewer in [
        "carol@example.com",
        "alice.admin@example.com",
        "bob@example.com",
    ] {
        r.may_review(reviewer);
    }
    // Long enough to decide everything before it, short enough to wait for.
    let uid = r.campaign(json!({"dueAt": due_in(20)})).await;
    r.wait_review("open", |r| phase(r) == Some(ReviewPhase::Open))
        .await;
    let items = r.items().await;
    let id = |login: &str, target: &str| find(&items, login, target).id.clone();
    let alice = "Alice.Admin@Example.COM";
    let alice_super_admin = items
        .iter()
        .find(|i| i.user_login == alice && i.target_id == "SUPER_ADMIN")
        .unwrap()
        .id
        .clone();

    // One decision over a whole group; a later one keeps erin (latest per item wins).
    r.decide(
        "d1-eng",
        &uid,
        "carol@example.com",
        "Revoke",
        json!({"groups": ["engineering"]}),
    )
    .await;
    r.decide(
        "d2-list",
        &uid,
        "carol@example.com",
        "Revoke",
        json!({"ids": [id("frank@example.com", "Payroll"), id("dave@example.com", "AD Staff"), alice_super_admin]}),
    )
    .await;
    r.decide(
        "d3-erin",
        &uid,
        "carol@example.com",
        "Keep",
        json!({"users": ["ERIN@example.com"], "groups": ["Engineering"]}),
    )
    .await;
    // Refused: alice's own Everyone membership, bob (RBAC, but not a listed reviewer), and
    // eve (no RBAC verb review).
    r.decide(
        "d4-self",
        &uid,
        "alice.admin@example.com",
        "Keep",
        json!({"groups": ["Everyone"]}),
    )
    .await;
    r.decide(
        "d5-bob",
        &uid,
        "bob@example.com",
        "Keep",
        json!({"groups": ["Payroll"]}),
    )
    .await;
    r.decide(
        "d6-eve",
        &uid,
        "eve@example.com",
        "Revoke",
        json!({"groups": ["Payroll"]}),
    )
    .await;
    // grace leaves Engineering out of band before the due time: already removed.
    assert!(
        r.h.okta
            .remove_membership(&r.h.group("Engineering"), &r.h.user("grace@example.com"))
            .unwrap()
    );

    let counted = r
        .wait_review("decisions counted", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.refused_decisions.len() == 3)
        })
        .await;
    let status = counted.status.unwrap();
    let decisions = status.decisions.unwrap();
    // Revoked: alice, dave, grace in Engineering; frank Payroll, dave AD Staff, alice's role.
    assert_eq!((decisions.keep, decisions.revoke), (1, 6));
    assert_eq!(decisions.undecided, items.len() as i64 - 7);
    assert_eq!(status.reviewers.len(), 1);
    assert_eq!(
        (status.reviewers[0].keep, status.reviewers[0].revoke),
        (1, 6)
    );
    let mut refused: Vec<(String, String)> = status
        .refused_decisions
        .iter()
        .map(|d| (d.name.clone(), d.reason.clone()))
        .collect();
    refused.sort();
    assert_eq!(
        refused,
        [
            ("d4-self".to_owned(), "SelfReview".to_owned()),
            ("d5-bob".to_owned(), "NotAReviewer".to_owned()),
            ("d6-eve".to_owned(), "NotAuthorized".to_owned())
        ]
    );
    r.h.wait_event(REVIEW, "Warning", "SelfReview").await;
    assert_eq!(r.deletes(), 0, "nothing is removed before the due time");

    let done = r
        .wait_review("completed", |r| phase(r) == Some(ReviewPhase::Completed))
        .await;
    let outcomes = done.status.unwrap().outcomes.unwrap();
    assert_eq!(outcomes.removed, 1, "{outcomes:?}");
    assert_eq!(outcomes.already_removed, 1);
    assert_eq!(outcomes.change_declaration, 2);
    assert_eq!(outcomes.manual, 2);
    assert_eq!((outcomes.refused, outcomes.failed), (0, 0));
    // Exactly one Okta DELETE: alice out of Engineering. Declared and manual items wrote nothing.
    assert_eq!(r.deletes(), 1);
    assert!(!r.h.members("Engineering").contains(&r.h.user(alice)));
    assert!(
        r.h.members("Engineering")
            .contains(&r.h.user("dave@example.com"))
    );
    assert!(
        r.h.members("Payroll")
            .contains(&r.h.user("frank@example.com"))
    );
    assert!(
        r.h.members("AD Staff")
            .contains(&r.h.user("dave@example.com"))
    );

    // Each item records its outcome and who decided it.
    let statuses: Vec<_> = r
        .chunks()
        .await
        .into_iter()
        .flat_map(|c| c.status.unwrap_or_default().items)
        .collect();
    assert_eq!(statuses.len(), items.len());
    let of = |id: &str| statuses.iter().find(|s| s.id == id).unwrap();
    let dave_eng = of(&id("dave@example.com", "Engineering"));
    assert_eq!(dave_eng.outcome, Some(ItemOutcome::ChangeDeclaration));
    assert!(
        dave_eng
            .detail
            .as_ref()
            .unwrap()
            .contains("GroupMembership eng")
    );
    assert_eq!(dave_eng.decided_by.as_deref(), Some("d1-eng"));
    let erin = of(&id("erin@example.com", "Engineering"));
    assert_eq!(
        (erin.outcome, erin.decided_by.as_deref()),
        (Some(ItemOutcome::Kept), Some("d3-erin"))
    );
    assert_eq!(
        of(&id(alice, "Engineering")).outcome,
        Some(ItemOutcome::Removed)
    );
    assert_eq!(
        of(&id("grace@example.com", "Engineering")).outcome,
        Some(ItemOutcome::AlreadyRemoved)
    );
    r.h.wait_event(REVIEW, "Normal", "Completed").await;

    // The evidence, as `review report` reads it from the cluster.
    let args = report::ReportArgs {
        name: REVIEW.to_owned(),
        namespace: Some(NS.to_owned()),
        format: WorkbookFormat::Csv,
        output: None,
    };
    let rows = report::read(r.h.kube.clone(), &args).await.unwrap();
    assert_eq!(rows.len(), items.len());
    let mut csv = Vec::new();
    workbook::write_report_csv(&rows, &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let digest = done_digest(&r).await;
    let alice_row = csv
        .lines()
        .find(|l| l.starts_with(&id(alice, "Engineering")))
        .unwrap();
    for field in [
        digest.as_str(),
        "Revoke",
        "carol@example.com",
        "d1-eng by carol@example.com",
        "d1-eng",
        "Removed",
    ] {
        assert!(alice_row.contains(field), "{field} not in {alice_row}");
    }
    assert!(csv.lines().next().unwrap().ends_with(
        "snapshotDigest,decision,reviewer,note,decidedAt,decidedBy,outcome,outcomeDetail"
    ));
    assert!(csv.contains("eng (Preexisting)"));
    r.shutdown().await;
}

async fn done_digest(r: &Reviews) -> String {
    let review = r.reviews().get(REVIEW).await.unwrap();
    review.status.unwrap().snapshot_digest.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_admission_policy_nothing_counts_and_nothing_is_removed() {
    let r = Reviews::start().await;
    r.h.sync_index("acme").await;
    r.may_review("carol@example.com");
    let uid = r.campaign(json!({"dueAt": due_in(4)})).await;
    r.wait_review("open", |r| phase(r) == Some(ReviewPhase::Open))
        .await;
    r.decide(
        "d1",
        &uid,
        "carol@example.com",
        "Revoke",
        json!({"groups": ["Engineering"]}),
    )
    .await;
    let overdue = r
        .wait_review("overdue", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Overdue" && c.status == "True")
            })
        })
        .await;
    let status = overdue.status.unwrap();
    let counted = status
        .conditions
        .iter()
        .find(|c| c.type_ == "DecisionsCounted")
        .unwrap();
    assert_eq!(
        (counted.status.as_str(), counted.reason.as_str()),
        ("False", "AdmissionPolicyUnverifiable")
    );
    assert_eq!(status.phase, Some(ReviewPhase::Open));
    assert_eq!(status.decisions.unwrap_or_default().revoke, 0);
    assert_eq!(r.deletes(), 0);
    r.shutdown().await;
}

#[test]
fn the_review_examples_validate_against_the_committed_crds() {
    use crate::common::{CrdValidator, load_yaml_docs};
    let mut seen = Vec::new();
    for file in ["campaign.yaml", "decision.yaml"] {
        for doc in load_yaml_docs(&format!("manifests/examples/review/{file}")) {
            let kind = doc["kind"].as_str().unwrap().to_owned();
            let crd = match kind.as_str() {
                "AccessReview" => "accessreviews.yaml",
                "AccessReviewDecision" => "accessreviewdecisions.yaml",
                other => panic!("{file}: unexpected {other}"),
            };
            let errors = CrdValidator::for_crd_file(crd).errors(&doc);
            assert!(errors.is_empty(), "{file}: {errors:#?}");
            seen.push(kind);
        }
    }
    assert_eq!(seen, ["AccessReview", "AccessReviewDecision"]);
    // The period's syntax: days, hours, minutes, seconds; no months, no fractions.
    let mut campaign = load_yaml_docs("manifests/examples/review/campaign.yaml").remove(0);
    let validator = CrdValidator::for_crd_file("accessreviews.yaml");
    for bad in ["3mo", "quarterly", "1.5d", "d", ""] {
        campaign["spec"]["recurrence"]["every"] = json!(bad);
        assert!(!validator.errors(&campaign).is_empty(), "{bad:?} accepted");
    }
    campaign["spec"]["recurrence"]["every"] = json!("1d12h");
    assert!(validator.errors(&campaign).is_empty());
}

/// Review removals go through the connector's mass-revocation circuit breaker: over
/// `maxRevocationsPerHour` they are `Held` (no Okta write) until the connector's release
/// annotation gets a new value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_removals_are_held_by_the_connectors_circuit_breaker() {
    use kube::api::{Patch, PatchParams};
    use okta_ciam_operator::crd::OktaCiamConnector;
    let r = Reviews::start().await;
    declared_memberships_and_index(&r).await;
    r.install_admission().await;
    r.may_review("carol@example.com");
    let connectors: Api<OktaCiamConnector> = Api::namespaced(r.h.kube.clone(), NS);
    let patch = |body: Value| {
        let connectors = connectors.clone();
        async move {
            connectors
                .patch("acme", &PatchParams::default(), &Patch::Merge(&body))
                .await
                .unwrap();
        }
    };
    patch(json!({"spec": {"safety": {"maxRevocationsPerHour": 1}}})).await;
    // Long enough to decide before it, short enough to wait for.
    let uid = r.campaign(json!({"dueAt": due_in(15)})).await;
    r.wait_review("open", |r| phase(r) == Some(ReviewPhase::Open))
        .await;
    // Engineering: alice, erin and grace are removable; dave is declared by a GroupMembership.
    r.decide(
        "d1-eng",
        &uid,
        "carol@example.com",
        "Revoke",
        json!({"groups": ["Engineering"]}),
    )
    .await;
    let outcomes = |r: &AccessReview| r.status.as_ref().and_then(|s| s.outcomes);
    let held = r
        .wait_review("removals held", |r| {
            outcomes(r).is_some_and(|o| o.removed == 1 && o.held == 2)
        })
        .await;
    assert_eq!(r.deletes(), 1, "one removal within the limit");
    assert_eq!(phase(&held), Some(ReviewPhase::Remediating));
    let remediated = held
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Remediated")
        .unwrap();
    assert_eq!(
        (remediated.status.as_str(), remediated.reason.as_str()),
        ("False", "RemovalsHeld")
    );
    let engineers = || r.h.members("Engineering");
    let before = engineers().len();

    // Each new annotation value lets one more limit's worth through.
    patch(json!({"metadata": {"annotations": {"oktaciam.io/release-revocations": "1"}}})).await;
    r.wait_review("one more removed", |r| {
        outcomes(r).is_some_and(|o| o.removed == 2 && o.held == 1)
    })
    .await;
    assert_eq!(engineers().len(), before - 1);
    patch(json!({"metadata": {"annotations": {"oktaciam.io/release-revocations": "2"}}})).await;
    let done = r
        .wait_review("completed", |r| phase(r) == Some(ReviewPhase::Completed))
        .await;
    let o = outcomes(&done).unwrap();
    assert_eq!(
        (o.removed, o.held, o.change_declaration),
        (3, 0, 1),
        "{o:?}"
    );
    assert_eq!(r.deletes(), 3);
    assert!(
        engineers().contains(&r.h.user("dave@example.com")),
        "the declared membership stays"
    );
    r.shutdown().await;
}

/// Two replicas both leading (as during a hand-over) and a six-second period: the recurring
/// campaign gets exactly one successor, one period later, with the same spec; the
/// non-recurring one gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recurring_campaign_creates_its_next_campaign_exactly_once() {
    use okta_ciam_operator::controller::review::recurrence::{PREVIOUS_UID_LABEL, SERIES_LABEL};
    let mut r = Reviews::start().await;
    r.start_replica();
    r.h.sync_index("acme").await;
    // Whole seconds, as Kubernetes times are written.
    let start = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap();
    let at = |seconds: i64| (start + jiff::SignedDuration::from_secs(seconds)).to_string();
    let times = json!({"startAt": at(0), "dueAt": at(2), "remediation": "Report"});
    let once = r.campaign_named("once", times.clone()).await;
    let mut recurring = times.clone();
    recurring["recurrence"] = json!({"every": "6s"});
    let uid = r.campaign(recurring).await;
    let mut overlapping = times.clone();
    overlapping["recurrence"] = json!({"every": "1s"});
    let short = r.campaign_named("short", overlapping).await;

    let first = r
        .wait_review("the next campaign recorded", |r| {
            r.status.as_ref().is_some_and(|s| s.next.is_some())
        })
        .await;
    // At its time whatever the phase: without the admission policy nothing is counted, so
    // the first campaign never completes.
    assert_eq!(phase(&first), Some(ReviewPhase::Open));
    let next_name = first.status.as_ref().unwrap().next.clone().unwrap();
    let successors_of = |uid: &str| {
        let reviews = r.reviews();
        let selector = format!("{PREVIOUS_UID_LABEL}={uid}");
        async move {
            reviews
                .list(&ListParams::default().labels(&selector))
                .await
                .unwrap()
                .items
        }
    };
    let successors = successors_of(&uid).await;
    assert_eq!(successors.len(), 1, "{successors:?}");
    let next = &successors[0];
    let next_start = start + jiff::SignedDuration::from_secs(6);
    assert_eq!(next.metadata.name.as_deref(), Some(next_name.as_str()));
    assert_eq!(
        next_name,
        format!("{REVIEW}-{}", next_start.strftime("%Y%m%d-%H%M%S"))
    );
    let mut want = first.spec.clone();
    want.start_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        next_start,
    ));
    want.due_at = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        start + jiff::SignedDuration::from_secs(8),
    );
    assert_eq!(next.spec, want);
    assert_eq!(
        next.metadata.labels.as_ref().unwrap().get(SERIES_LABEL),
        Some(&REVIEW.to_owned())
    );
    // Not owned: deleting one campaign never garbage-collects a later campaign's evidence.
    assert!(next.metadata.owner_references.is_none());
    r.h.wait_event(REVIEW, "Normal", "NextCampaignCreated")
        .await;

    // The series goes on from the successor; the first campaign still has its one.
    wait_for("the successor's own next campaign", || async {
        r.reviews().get(&next_name).await.unwrap().status?.next
    })
    .await;
    assert_eq!(successors_of(&uid).await.len(), 1);
    let once_status = r.reviews().get("once").await.unwrap().status.unwrap();
    assert_eq!(once_status.next, None);
    assert!(
        !once_status
            .conditions
            .iter()
            .any(|c| c.type_ == "Recurring")
    );
    assert!(successors_of(&once).await.is_empty());
    // A period shorter than the campaign is refused with a reason and creates nothing.
    r.h.wait_event("short", "Warning", "InvalidRecurrence")
        .await;
    let short_status = r.reviews().get("short").await.unwrap().status.unwrap();
    let recurring = short_status
        .conditions
        .iter()
        .find(|c| c.type_ == "Recurring")
        .unwrap();
    assert_eq!(
        (recurring.status.as_str(), recurring.reason.as_str()),
        ("False", "InvalidRecurrence")
    );
    assert!(
        recurring.message.contains("shorter than the campaign"),
        "{}",
        recurring.message
    );
    assert!(successors_of(&short).await.is_empty());
    r.shutdown().await;
}
