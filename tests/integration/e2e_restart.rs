//! End to end: the operator is killed in the middle of provisioning a large membership; a new
//! process converges to exactly the declared set, owning every grant.

use crate::e2e_support;

use e2e_support::{E2e, fixture, logins, wait_for};
use okta_ciam_operator::crd::MembershipOrigin;
use okta_emulator::Faults;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_restart_mid_provisioning_converges_to_exactly_the_declared_set() {
    let declared = logins("member", 50);
    let bystanders = logins("bystander", 2);
    let everyone: Vec<String> = declared.iter().chain(&bystanders).cloned().collect();
    let e = E2e::start(&fixture(&everyone, &[("Big", &bystanders)])).await;
    e.put_secret("okta-token", "apiToken", "token-1").await;
    e.apply_connector("corp", json!({})).await;
    let mut first = e.operator("operator", &[]);
    e.wait_connector("corp", "Ready", "True", "Synced").await;

    // Slow Okta writes make the round long enough to be cut in the middle.
    e.okta.set_faults(Faults {
        latency_ms: 100,
        ..Faults::default()
    });
    e.apply_membership("big", "corp", "Big", &declared).await;
    let before = bystanders.len();
    // Wait for several grants (writes go one at a time), so the kill lands mid-round.
    let partial = wait_for("some but not all memberships granted", || async {
        let n = e.members("Big").len() - before;
        (n >= 10 && n < declared.len()).then_some(n)
    })
    .await;
    first.kill();
    let granted_at_kill = e.members("Big").len() - before;
    eprintln!(
        "killed with {granted_at_kill}/{} memberships granted",
        declared.len()
    );
    assert!(
        granted_at_kill < declared.len(),
        "the kill came after the round finished ({partial} seen, {granted_at_kill} at kill)"
    );

    e.okta.set_faults(Faults::default());
    let second = e.operator("operator", &[]);
    let gm = e.wait_membership("big", "Ready", "True", "Granted").await;
    let status = gm.status.expect("status");
    assert_eq!(status.ready_users.as_deref(), Some("50/50"));
    let want: std::collections::BTreeSet<String> = e.user_ids(&everyone);
    assert_eq!(
        e.members("Big"),
        want,
        "exactly the declared users plus the untouched bystanders"
    );
    let not_granted: Vec<_> = status
        .users
        .iter()
        .filter(|u| u.origin != Some(MembershipOrigin::Granted))
        .map(|u| (&u.user, &u.origin, &u.reason))
        .collect();
    assert!(
        not_granted.is_empty(),
        "grants made before the kill must stay owned: {not_granted:?}"
    );
    let deletes: u64 = e
        .okta
        .stats()
        .requests
        .by_route
        .iter()
        .filter(|(route, _)| route.starts_with("DELETE "))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(deletes, 0, "no membership was removed");
    drop(second);
    e.finish().await;
}
