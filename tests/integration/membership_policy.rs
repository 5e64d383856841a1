//! The grant-policy gate over real HTTP (Kubernetes API test server, Okta emulator): with
//! `require_policy` a `GroupMembership` no `AccessPolicy` allows is refused with zero Okta
//! writes, a policy or namespace-label change re-reconciles it, a narrowed policy keeps the
//! grants already made until the declaration goes, and a group holding an Okta admin role is
//! refused unless a policy names it exactly with `allowPrivileged`.

use crate::membership_support;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use membership_support::*;
use okta_ciam_operator::controller::membership::Settings;
use okta_ciam_operator::crd::{AccessPolicy, AccessRequest, ConditionType};
use serde_json::{Value, json};

/// The harness fixture plus two privileged groups: one holding a standard role, one a
/// custom role.
fn privileged_fixture() -> String {
    format!(
        "{FIXTURE}  - {{name: Eng Root}}\n  - {{name: Eng Helpdesk}}\n\
         customRoles:\n  - {{label: Helpdesk Plus, permissions: [okta.users.read]}}\n\
         roleAssignments:\n  - {{group: Eng Root, role: SUPER_ADMIN}}\n\
         \x20 - {{group: Eng Helpdesk, customRole: Helpdesk Plus, resourceSet: Support}}\n"
    )
}

async fn start(require_policy: bool) -> Harness {
    let defaults = Options::default();
    Harness::start_with(Options {
        fixture: privileged_fixture(),
        settings: Settings {
            require_policy,
            ..defaults.settings
        },
    })
    .await
}

fn policies(h: &Harness) -> Api<AccessPolicy> {
    Api::all(h.kube.clone())
}

/// Creates or replaces the cluster-wide policy `name` with a `standing` section for the
/// harness's org, selecting namespaces labelled `tenant: identity`.
async fn standing_policy(h: &Harness, name: &str, groups: Value) {
    let obj = json!({
        "apiVersion": "oktaciam.io/v1alpha1", "kind": "AccessPolicy",
        "metadata": {"name": name},
        "spec": {"standing": {
            "namespaceSelector": {"matchLabels": {"tenant": "identity"}},
            "domain": h.okta.domain(),
            "groups": groups,
        }},
    });
    policies(h)
        .patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap();
}

async fn label_namespace(h: &Harness, labels: Value) {
    let patch = json!({"metadata": {"labels": labels}});
    Api::<Namespace>::all(h.kube.clone())
        .patch(NS, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn ready_message(h: &Harness, name: &str) -> String {
    let gm = h.get(name).await.unwrap();
    condition(&gm, ConditionType::Ready).message.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_policy_refuses_without_writes_until_a_policy_or_label_change_allows() {
    let h = start(true).await;
    standing_policy(&h, "tenants", json!([{"namePrefix": "Eng "}])).await;
    h.apply("sales", one_user("acme", "Sales", "alice@example.com"))
        .await;

    // The namespace has no label yet, and the policy names no such group: refused.
    h.wait_condition("sales", "Ready", "False", "NotAllowedByPolicy")
        .await;
    h.wait_event("sales", "Warning", "NotAllowedByPolicy").await;
    let message = ready_message(&h, "sales").await;
    assert!(
        message.contains("Sales") && message.contains(NS),
        "{message}"
    );
    assert_eq!(h.writes(), 0, "refused before any Okta write");

    // The policy now names the group, but does not select the namespace yet.
    standing_policy(
        &h,
        "tenants",
        json!([{"namePrefix": "Eng "}, {"name": "Sales"}]),
    )
    .await;
    h.apply("oncall", one_user("acme", "Eng On-Call", "bob@example.com"))
        .await;
    h.wait_condition("oncall", "Ready", "False", "NotAllowedByPolicy")
        .await;
    assert_eq!(h.writes(), 0);

    // Labelling the namespace re-reconciles both, and both are granted.
    label_namespace(&h, json!({"tenant": "identity"})).await;
    h.wait_condition("sales", "Ready", "True", "Granted").await;
    h.wait_condition("oncall", "Ready", "True", "Granted").await;
    assert!(h.members("Sales").contains(&h.user("alice@example.com")));
    assert_eq!(h.writes(), 2);

    // The policy narrows again: nothing is revoked behind the declaration's back, the refusal
    // is reported, and no further write is made.
    standing_policy(&h, "tenants", json!([{"namePrefix": "Eng "}])).await;
    h.wait_condition("sales", "Ready", "False", "NotAllowedByPolicy")
        .await;
    assert!(h.members("Sales").contains(&h.user("alice@example.com")));
    assert_eq!(h.writes(), 2, "a narrowed policy revokes nothing by itself");
    let gm = h.get("sales").await.unwrap();
    assert_eq!(
        state_of(&gm, "alice@example.com"),
        "Failed/Some(Granted)/NotAllowedByPolicy"
    );

    // The declaration goes: its grant is revoked although no policy allows the group.
    h.delete("sales").await;
    h.wait_gone("sales").await;
    assert!(!h.members("Sales").contains(&h.user("alice@example.com")));
    assert_eq!(h.writes(), 3, "one DELETE");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_groups_need_an_exact_policy_entry_even_without_require_policy() {
    let h = start(false).await;
    label_namespace(&h, json!({"tenant": "identity"})).await;
    // Without an index the group's roles are read from Okta; with one, from the index.
    h.apply("root", one_user("acme", "Eng Root", "alice@example.com"))
        .await;
    h.wait_condition("root", "Ready", "False", "GroupHoldsAdminRole")
        .await;
    h.wait_event("root", "Warning", "GroupHoldsAdminRole").await;
    let message = ready_message(&h, "root").await;
    assert!(message.contains("SUPER_ADMIN"), "{message}");
    h.sync_index("acme").await;
    h.apply(
        "helpdesk",
        one_user("acme", "Eng Helpdesk", "alice@example.com"),
    )
    .await;
    h.wait_condition("helpdesk", "Ready", "False", "GroupHoldsAdminRole")
        .await;
    let message = ready_message(&h, "helpdesk").await;
    assert!(message.contains("Helpdesk Plus"), "{message}");
    // An unprivileged group needs no policy without require_policy.
    h.apply("plain", one_user("acme", "Eng Admins", "alice@example.com"))
        .await;
    h.wait_condition("plain", "Ready", "True", "Granted").await;
    assert_eq!(h.writes(), 1, "only the unprivileged group was written");

    // A prefix rule, or an exact one without allowPrivileged, is not enough.
    standing_policy(
        &h,
        "admins",
        json!([{"namePrefix": "Eng "}, {"name": "Eng Root"}]),
    )
    .await;
    h.wait_condition("root", "Ready", "False", "GroupHoldsAdminRole")
        .await;
    assert_eq!(h.writes(), 1);
    // Named exactly with allowPrivileged: granted (and the policy change re-reconciled it).
    standing_policy(
        &h,
        "admins",
        json!([{"name": "Eng Root", "allowPrivileged": true}]),
    )
    .await;
    h.wait_condition("root", "Ready", "True", "Granted").await;
    h.wait_condition("helpdesk", "Ready", "False", "GroupHoldsAdminRole")
        .await;
    assert_eq!(h.writes(), 2);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_an_approved_access_request_owns_is_allowed_by_its_policy() {
    let h = start(true).await;
    let policy = json!({
        "apiVersion": "oktaciam.io/v1alpha1", "kind": "AccessPolicy",
        "metadata": {"name": "oncall"},
        "spec": {"requests": {"connectorRef": {"name": "acme"}, "namespaces": [NS],
                 "groups": ["Eng On-Call"], "maxDuration": "8h"}},
    });
    policies(&h)
        .create(
            &PostParams::default(),
            &serde_json::from_value(policy).unwrap(),
        )
        .await
        .unwrap();
    let requests: Api<AccessRequest> = Api::namespaced(h.kube.clone(), NS);
    let request = json!({
        "apiVersion": "oktaciam.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": "jit"},
        "spec": {"policy": "oncall", "requester": {"username": "alice@example.com"},
                 "group": "Eng On-Call", "duration": "1h"},
    });
    let uid = requests
        .create(
            &PostParams::default(),
            &serde_json::from_value(request).unwrap(),
        )
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    // What the access controller writes once the request is approved.
    let status = json!({"status": {"phase": "Active", "oktaUser": "alice@example.com"}});
    requests
        .patch_status("jit", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let owned = |name: &str, user: &str| {
        json!({
            "apiVersion": "oktaciam.io/v1alpha1", "kind": "GroupMembership",
            "metadata": {"name": name, "ownerReferences": [{
                "apiVersion": "oktaciam.io/v1alpha1", "kind": "AccessRequest", "name": "jit",
                "uid": uid, "controller": true}]},
            "spec": one_user("acme", "Eng On-Call", user),
        })
    };
    // A membership that claims the request but declares another user: refused.
    h.gms()
        .create(
            &PostParams::default(),
            &serde_json::from_value(owned("forged", "bob@example.com")).unwrap(),
        )
        .await
        .unwrap();
    h.wait_condition("forged", "Ready", "False", "NotAllowedByPolicy")
        .await;
    assert_eq!(h.writes(), 0);
    // The request's own membership: allowed by the request's policy, no standing rule needed.
    h.gms()
        .create(
            &PostParams::default(),
            &serde_json::from_value(owned("access-jit", "alice@example.com")).unwrap(),
        )
        .await
        .unwrap();
    h.wait_condition("access-jit", "Ready", "True", "Granted")
        .await;
    assert_eq!(h.writes(), 1);
    h.gms()
        .delete("forged", &DeleteParams::default())
        .await
        .unwrap();
    h.shutdown().await;
}
