//! The runtime against the in-process Kubernetes API test server: CRD discovery, and Lease
//! leader election with injected write failures and conflicts.

use crate::runtime_support;

use std::time::Duration;

use kube_test_server::{FailWith, TestServer};
use okta_ciam_operator::controller::runtime::Error;
use okta_ciam_operator::controller::runtime::crds::check_crds;
use okta_ciam_operator::controller::runtime::leader::{
    ElectionHandle, LeaderElector, LeaseSettings,
};
use runtime_support::{OPERATOR_CRDS, kube_server};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(60);
const NS: &str = "default";
const LEASE: &str = "okta-ciam-operator";

#[tokio::test]
async fn crd_check_uses_discovery() {
    let (none, _d) = kube_server(&[]).await;
    let err = check_crds(&none.client()).await.unwrap_err();
    assert!(matches!(err, Error::CrdsMissing { .. }), "{err:?}");

    let (one, _d) = kube_server(&[("oktaciamconnectors", "OktaCiamConnector")]).await;
    match check_crds(&one.client()).await.unwrap_err() {
        Error::CrdsMissing { missing } => assert_eq!(
            missing,
            "groupmemberships.oktaciam.io, accesspolicies.oktaciam.io, \
             accessrequests.oktaciam.io, accessapprovals.oktaciam.io, \
             accessreviews.oktaciam.io, accessreviewchunks.oktaciam.io, \
             accessreviewdecisions.oktaciam.io"
        ),
        other => panic!("{other:?}"),
    }

    let (both, _d) = kube_server(OPERATOR_CRDS).await;
    check_crds(&both.client()).await.unwrap();
}

fn elector(server: &TestServer, id: &str) -> (CancellationToken, ElectionHandle) {
    let shutdown = CancellationToken::new();
    let settings = LeaseSettings {
        namespace: NS.into(),
        name: LEASE.into(),
        identity: id.into(),
        lease_duration: Duration::from_secs(5),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(200),
    };
    let handle = LeaderElector::spawn(server.client(), settings, &shutdown).unwrap();
    (shutdown, handle)
}

async fn holder(server: &TestServer) -> Option<String> {
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(server.client(), NS);
    api.get_opt(LEASE).await.unwrap()?.spec?.holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn electors_step_down_when_writes_fail_survive_conflicts_and_hand_over_on_release() {
    let (server, _d) = kube_server(&[]).await;
    let (stop_a, a) = elector(&server, "replica-a");
    let term = tokio::time::timeout(LIMIT, a.leadership().acquired())
        .await
        .unwrap()
        .expect("a leads");
    let (stop_b, b) = elector(&server, "replica-b");
    assert_eq!(holder(&server).await.as_deref(), Some("replica-a"));

    // One conflicting write: re-read and renew, leadership unaffected.
    let writes = server.counters().writes("leases");
    server
        .faults()
        .fail_next_writes_to("leases", 1, FailWith::Conflict);
    let deadline = tokio::time::Instant::now() + LIMIT;
    while server.counters().writes("leases") < writes + 3 {
        assert!(tokio::time::Instant::now() < deadline, "no renewals");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !term.is_cancelled(),
        "a conflict alone does not end the term"
    );
    assert!(a.leadership().is_leader() && !b.leadership().is_leader());

    // Every Lease write fails: the leader must stop by itself, and nobody may lead.
    server
        .faults()
        .fail_next_writes_to("leases", usize::MAX, FailWith::InternalError);
    tokio::time::timeout(LIMIT, term.cancelled())
        .await
        .expect("leader steps down");
    // The term's token is cancelled first, "is leader" follows.
    tokio::time::timeout(
        LIMIT,
        a.leadership().subscribe().wait_for(|leading| !leading),
    )
    .await
    .expect("is-leader turns false")
    .unwrap();
    assert!(
        !b.leadership().is_leader(),
        "no write succeeded, so nobody took over"
    );

    // The API heals: exactly one replica leads again.
    server.faults().clear();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !(a.leadership().is_leader() || b.leadership().is_leader()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nobody leads after healing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!(a.leadership().is_leader() && b.leadership().is_leader()));
    let (leader, stop_leader, follower, stop_follower) = if a.leadership().is_leader() {
        (a, stop_a, b, stop_b)
    } else {
        (b, stop_b, a, stop_a)
    };

    // The leader shuts down and releases: the follower takes over.
    stop_leader.cancel();
    leader.release().await;
    let term = tokio::time::timeout(LIMIT, follower.leadership().acquired())
        .await
        .unwrap()
        .expect("follower leads");
    assert!(!term.is_cancelled());
    stop_follower.cancel();
    follower.release().await;
    assert_eq!(holder(&server).await, None);
}
