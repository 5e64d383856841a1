//! End to end with the real binary under `--require-policy` (as `manifests/install` runs it):
//! a standing `GroupMembership` no `AccessPolicy` allows is refused with zero Okta writes, a
//! policy change lets it be granted, a deleted policy revokes nothing by itself, and
//! just-in-time access (an approved `AccessRequest`) still grants through its own policy.

use crate::e2e_support;

use e2e_support::{E2e, fixture, logins, wait_for};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use okta_ciam_operator::crd::condition::find_condition;
use okta_ciam_operator::crd::{AccessPolicy, ConditionType};
use serde_json::{Value, json};

/// Applies the cluster-wide policy `name` allowing namespaces labelled
/// `oktaciam.io/e2e-tenant: <the test namespace>` to grant `groups` of the emulated org.
async fn standing_policy(e: &E2e, name: &str, groups: Value) {
    let obj = json!({
        "apiVersion": "oktaciam.io/v1alpha1", "kind": "AccessPolicy",
        "metadata": {"name": name},
        "spec": {"standing": {
            "namespaceSelector": {"matchLabels": {"oktaciam.io/e2e-tenant": e.ns}},
            "domain": e.okta.domain(),
            "groups": groups,
        }},
    });
    Api::<AccessPolicy>::all(e.kube.clone())
        .patch(
            name,
            &PatchParams::apply("e2e-test").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_require_policy_refuses_until_a_policy_allows_and_keeps_just_in_time_access() {
    let users = logins("user", 2);
    let e = E2e::start(&fixture(
        &users,
        &[("Staff", &[]), ("Other", &[]), ("Team", &[])],
    ))
    .await;
    let label = json!({"metadata": {"labels": {"oktaciam.io/e2e-tenant": e.ns}}});
    Api::<Namespace>::all(e.kube.clone())
        .patch(&e.ns, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    let policy = format!("e2e-{}", e.ns);
    standing_policy(&e, &policy, json!([{"name": "Staff"}])).await;
    e.put_secret("okta-token", "apiToken", "token-1").await;
    e.apply_connector("corp", json!({})).await;
    let operator = e.operator("operator", &["--require-policy"]);
    e.wait_connector("corp", "Ready", "True", "Synced").await;

    e.apply_membership("other", "corp", "Other", &users).await;
    e.apply_membership("staff", "corp", "Staff", &users).await;
    e.wait_membership("staff", "Ready", "True", "Granted").await;
    let other = e
        .wait_membership("other", "Ready", "False", "NotAllowedByPolicy")
        .await;
    e.wait_event("other", "Warning", "NotAllowedByPolicy").await;
    let ready = find_condition(&other.status.unwrap().conditions, ConditionType::Ready)
        .unwrap()
        .message
        .clone();
    assert!(ready.contains("Other") && ready.contains(&e.ns), "{ready}");
    assert!(e.members("Other").is_empty());
    assert_eq!(
        e.okta_writes(),
        users.len() as u64,
        "only Staff was written"
    );

    // The policy now allows Other too: the running operator picks the change up.
    standing_policy(&e, &policy, json!([{"name": "Staff"}, {"name": "Other"}])).await;
    e.wait_membership("other", "Ready", "True", "Granted").await;
    assert_eq!(e.members("Other"), e.user_ids(&users));

    // The policy goes: the grants stay (reported), and deleting a declaration revokes it.
    Api::<AccessPolicy>::all(e.kube.clone())
        .delete(&policy, &DeleteParams::default())
        .await
        .unwrap();
    e.wait_membership("other", "Ready", "False", "NotAllowedByPolicy")
        .await;
    assert_eq!(e.members("Other"), e.user_ids(&users), "nothing revoked");
    e.memberships()
        .delete("other", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("Other's grants revoked", || async {
        e.members("Other").is_empty().then_some(())
    })
    .await;

    // Just-in-time access under --require-policy: the request's policy allows its grant.
    if let Some(server) = e.server("approving an AccessRequest") {
        crate::e2e_rbac::access_life_cycle(&e, server, &users[0]).await;
    }
    drop(operator);
    e.finish().await;
}
