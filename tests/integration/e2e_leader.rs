//! End to end: two `run --leader-elect` processes; only the leader writes, and killing it hands
//! over to the standby, which converges work created after the kill.

use crate::e2e_support;

use e2e_support::{E2e, Operator, fixture, logins, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;

const LEASE: &str = "okta-ciam-operator";
const WRITES: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// Lease timings short enough for a quick handover, with room for a loaded machine.
fn elected(e: &E2e, identity: &str) -> Operator {
    e.operator(
        identity,
        &[
            "--leader-elect",
            "--identity",
            identity,
            "--lease-duration",
            "4s",
            "--lease-renew-deadline",
            "3s",
            "--lease-retry-period",
            "300ms",
        ],
    )
}

async fn lease(e: &E2e) -> Option<Lease> {
    Api::<Lease>::namespaced(e.kube.clone(), &e.ns)
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
}

async fn wait_holder(e: &E2e, identity: &str) -> Lease {
    wait_for(&format!("{identity} to hold the Lease"), || async {
        let l = lease(e).await?;
        let holder = l.spec.as_ref()?.holder_identity.as_deref()?;
        (holder == identity).then_some(l)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_only_the_leader_writes_and_a_killed_leader_hands_over() {
    let users = logins("user", 4);
    let e = E2e::start(&fixture(&users, &[("Team A", &[]), ("Team B", &[])])).await;
    e.put_secret("okta-token", "apiToken", "token-1").await;
    e.apply_connector("corp", json!({})).await;

    let mut a = elected(&e, "replica-a");
    wait_holder(&e, "replica-a").await;
    e.wait_connector("corp", "Ready", "True", "Synced").await;
    e.apply_membership("before", "corp", "Team A", &users[..2])
        .await;
    e.wait_membership("before", "Ready", "True", "Granted")
        .await;

    let b = elected(&e, "replica-b");
    wait_for("the standby to be ready", || async {
        (b.probe("/readyz").await == Some(200)).then_some(())
    })
    .await;
    if let Some(server) = e.server("proving the standby makes no writes") {
        let lease_gets = || {
            server
                .counters()
                .accesses_of("replica-b")
                .get(&("coordination.k8s.io".into(), "leases".into(), "get".into()))
                .copied()
                .unwrap_or(0)
        };
        // The standby has been trying for the Lease a few times, and keeps trying while the
        // idle leader holds it: in that span nobody calls Okta.
        wait_for("the standby to poll the Lease", || async {
            (lease_gets() >= 3).then_some(())
        })
        .await;
        let okta_before = e.okta.stats().requests.total;
        let seen = lease_gets();
        wait_for("the standby to poll the Lease again", || async {
            (lease_gets() >= seen + 3).then_some(())
        })
        .await;
        assert_eq!(
            e.okta.stats().requests.total,
            okta_before,
            "no Okta call from the standby"
        );
        let writes: Vec<_> = server
            .counters()
            .accesses_of("replica-b")
            .into_iter()
            .filter(|((_, _, verb), _)| WRITES.contains(&verb.as_str()))
            .collect();
        assert!(writes.is_empty(), "the standby wrote: {writes:?}");
        assert!(
            server.counters().accesses_of("replica-a").contains_key(&(
                "oktaciam.io".into(),
                "groupmemberships/status".into(),
                "patch".into()
            )),
            "the leader wrote the status"
        );
    }

    a.kill();
    // The dead leader's last renewal is final now.
    let old = lease(&e).await.expect("lease").spec.unwrap();
    let new = wait_holder(&e, "replica-b").await.spec.unwrap();
    assert!(
        new.lease_transitions.unwrap_or(0) > old.lease_transitions.unwrap_or(0),
        "{old:?} -> {new:?}"
    );
    let renewed = old.renew_time.expect("renewed").0;
    let acquired = new.acquire_time.expect("acquired").0;
    let duration = k8s_openapi::jiff::SignedDuration::from_secs(4);
    assert!(
        acquired >= renewed + duration,
        "the standby took a live lease: renewed {renewed}, acquired {acquired}"
    );

    e.apply_membership("after", "corp", "Team B", &users[2..])
        .await;
    e.wait_membership("after", "Ready", "True", "Granted").await;
    assert_eq!(e.members("Team B"), e.user_ids(&users[2..]));
    assert_eq!(e.members("Team A"), e.user_ids(&users[..2]));
    if let Some(server) = e.server("checking the new leader's writes") {
        let b_writes = server.counters().accesses_of("replica-b");
        assert!(
            b_writes.contains_key(&(
                "oktaciam.io".into(),
                "groupmemberships/status".into(),
                "patch".into()
            )),
            "{b_writes:?}"
        );
    }
    drop(b);
    e.finish().await;
}
