//! Leader election over HTTP against a Lease stand-in that can cut off one replica: two
//! electors, a partitioned leader, release.

use crate::runtime_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use okta_ciam_operator::controller::runtime::leader::{
    ElectionHandle, LeaderElector, LeaseSettings,
};
use runtime_support::{FakeKube, wait_until};
use tokio_util::sync::CancellationToken;

const NS: &str = "ops";
const LEASE: &str = "okta-ciam-operator";
const LIMIT: Duration = Duration::from_secs(60);

fn settings(identity: &str) -> LeaseSettings {
    LeaseSettings {
        namespace: NS.into(),
        name: LEASE.into(),
        identity: identity.into(),
        // A 3 s margin between the leader's step-down and the earliest takeover keeps the
        // order deterministic on a loaded machine.
        lease_duration: Duration::from_secs(5),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(200),
    }
}

struct Replica {
    id: &'static str,
    shutdown: CancellationToken,
    handle: ElectionHandle,
}

fn replica(kube: &FakeKube, id: &'static str) -> Replica {
    let shutdown = CancellationToken::new();
    let handle = LeaderElector::spawn(kube.client(), settings(id), &shutdown).unwrap();
    Replica {
        id,
        shutdown,
        handle,
    }
}

/// Observed (replica, is-leader) changes, in order.
type Events = Arc<Mutex<Vec<(&'static str, bool)>>>;

/// Records every observed (replica, is-leader) change and flags any moment both lead.
fn monitor(a: &Replica, b: &Replica) -> (Events, Arc<Mutex<bool>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let both = Arc::new(Mutex::new(false));
    let (mut ra, mut rb) = (
        a.handle.leadership().subscribe(),
        b.handle.leadership().subscribe(),
    );
    let (ida, idb) = (a.id, b.id);
    let (ev, bo) = (events.clone(), both.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = ra.changed() => { if r.is_err() { break; } ev.lock().unwrap().push((ida, *ra.borrow())); }
                r = rb.changed() => { if r.is_err() { break; } ev.lock().unwrap().push((idb, *rb.borrow())); }
            }
            if *ra.borrow() && *rb.borrow() {
                *bo.lock().unwrap() = true;
            }
        }
    });
    (events, both)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_a_partitioned_leader_steps_down_before_takeover_and_release_hands_over() {
    let kube = FakeKube::start().await;
    let a = replica(&kube, "replica-a");
    let b = replica(&kube, "replica-b");
    let (events, both) = monitor(&a, &b);

    wait_until("a leader", LIMIT, || {
        a.handle.leadership().is_leader() || b.handle.leadership().is_leader()
    })
    .await;
    let (leader, follower) = if a.handle.leadership().is_leader() {
        (a, b)
    } else {
        (b, a)
    };
    let term = leader
        .handle
        .leadership()
        .current_term()
        .expect("leader has a live term");
    let lease = kube.lease(NS, LEASE).expect("lease created");
    assert_eq!(lease["spec"]["holderIdentity"], leader.id);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 5);

    // The leader keeps renewing: the resourceVersion moves while nobody else writes.
    let rv0 = lease["metadata"]["resourceVersion"].clone();
    wait_until("a renewal", LIMIT, || {
        kube.lease(NS, LEASE).unwrap()["metadata"]["resourceVersion"] != rv0
    })
    .await;
    assert!(!follower.handle.leadership().is_leader());

    // Cut the leader off from the API: it must stop, then (only later) the follower takes over.
    kube.partition(leader.id, true);
    wait_until("the follower to lead", LIMIT, || {
        follower.handle.leadership().is_leader()
    })
    .await;
    assert!(term.is_cancelled(), "the old term's token is cancelled");
    assert!(!leader.handle.leadership().is_leader());
    {
        let events = events.lock().unwrap();
        let stepped_down = events
            .iter()
            .position(|e| *e == (leader.id, false))
            .expect("old leader stepped down");
        let took_over = events
            .iter()
            .position(|e| *e == (follower.id, true))
            .expect("follower took over");
        assert!(stepped_down < took_over, "{events:?}");
    }
    let lease = kube.lease(NS, LEASE).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], follower.id);
    assert_eq!(lease["spec"]["leaseTransitions"], 1);

    // Heal the partition: the old leader follows. Then the new leader shuts down and releases,
    // and the old one takes over without waiting for expiry of a live lease.
    kube.partition(leader.id, false);
    follower.shutdown.cancel();
    wait_until("the releasing replica to stop leading", LIMIT, || {
        !follower.handle.leadership().is_leader()
    })
    .await;
    follower.handle.release().await;
    wait_until("the old leader to lead again", LIMIT, || {
        leader.handle.leadership().is_leader()
    })
    .await;
    assert!(
        !*both.lock().unwrap(),
        "two replicas led at once: {:?}",
        events.lock().unwrap()
    );

    leader.shutdown.cancel();
    leader.handle.release().await;
    let lease = kube.lease(NS, LEASE).unwrap();
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_term_at_once_but_the_lease_is_held_until_release() {
    let kube = FakeKube::start().await;
    let r = replica(&kube, "solo");
    let term = tokio::time::timeout(LIMIT, r.handle.leadership().acquired())
        .await
        .expect("acquires a free lease")
        .expect("leads");
    r.shutdown.cancel();
    tokio::time::timeout(LIMIT, term.cancelled())
        .await
        .expect("term ends on shutdown");
    // Still the holder: in-flight work may finish before another replica starts.
    assert_eq!(
        kube.lease(NS, LEASE).unwrap()["spec"]["holderIdentity"],
        "solo"
    );
    r.handle.release().await;
    assert!(kube.lease(NS, LEASE).unwrap()["spec"]["holderIdentity"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_never_led_does_not_touch_the_lease_on_release() {
    let kube = FakeKube::start().await;
    let leader = replica(&kube, "leader");
    tokio::time::timeout(LIMIT, leader.handle.leadership().acquired())
        .await
        .unwrap()
        .unwrap();
    let other = replica(&kube, "other");
    // Let the follower read the lease at least once, then stop it.
    let rv = kube.lease(NS, LEASE).unwrap()["metadata"]["resourceVersion"].clone();
    wait_until("a renewal", LIMIT, || {
        kube.lease(NS, LEASE).unwrap()["metadata"]["resourceVersion"] != rv
    })
    .await;
    assert!(!other.handle.leadership().is_leader());
    other.shutdown.cancel();
    other.handle.release().await;
    assert_eq!(
        kube.lease(NS, LEASE).unwrap()["spec"]["holderIdentity"],
        "leader"
    );
    assert!(leader.handle.leadership().is_leader());
    leader.shutdown.cancel();
    leader.handle.release().await;
}
