//! End to end: the API server drops every watch stream; changes made right after the drop are
//! still picked up by the running operator.

use crate::e2e_support;

use e2e_support::{E2e, fixture, logins, wait_for};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_changes_after_dropped_watches_are_picked_up() {
    let users = logins("user", 3);
    let e = E2e::start(&fixture(&users, &[("Team", &[])])).await;
    let Some(server) = e.server("dropping watch streams") else {
        e.finish().await;
        return;
    };
    e.put_secret("okta-token", "apiToken", "token-1").await;
    e.apply_connector("corp", json!({})).await;
    let operator = e.operator("operator", &[]);
    e.wait_connector("corp", "Ready", "True", "Synced").await;
    let watches = |resource: &str| {
        server
            .counters()
            .accesses_of("operator")
            .iter()
            .filter(|((_, r, verb), _)| r == resource && verb == "watch")
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let (gm_watches, secret_watches) = (watches("groupmemberships"), watches("secrets"));
    assert!(gm_watches > 0 && secret_watches > 0);

    // A new membership, created right after the streams end.
    server.faults().drop_watches();
    e.apply_membership("team", "corp", "Team", &users).await;
    e.wait_membership("team", "Ready", "True", "Granted").await;
    assert_eq!(e.members("Team"), e.user_ids(&users));
    wait_for("the operator to watch again", || async {
        (watches("groupmemberships") > gm_watches && watches("secrets") > secret_watches)
            .then_some(())
    })
    .await;

    // A token rotation, right after the streams end again: only the Secret watch can tell.
    let secret_watches = watches("secrets");
    server.faults().drop_watches();
    assert!(e.okta.add_token("token-2"));
    assert!(e.okta.revoke_token("token-1"));
    e.put_secret("okta-token", "apiToken", "token-2").await;
    e.wait_event("corp", "Normal", "CredentialsChanged").await;
    e.wait_connector("corp", "CredentialsValid", "True", "Synced")
        .await;
    assert!(
        watches("secrets") > secret_watches,
        "the Secret watch resumed"
    );
    drop(operator);
    e.finish().await;
}
