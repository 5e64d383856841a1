//! The `GroupMembership` reconciler over real HTTP: the Kubernetes API test server
//! (`tests/kube-test-server`, serving the committed CRDs) and the in-process Okta emulator.
//! The connector's shared client is seeded in the registry and its status set Ready, as the
//! connector reconciler would after a sync.

mod membership_support;
mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, PostParams};
use membership_support::*;
use okta_ciam_operator::controller::membership::FINALIZER;
use okta_ciam_operator::crd::OktaCiamConnector;
use okta_ciam_operator::emulator;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_adds_removes_and_revokes_on_delete_leaving_preexisting_alone() {
    let h = Harness::start().await;
    h.apply(
        "oncall",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng On-Call"},
               "users": ["alice@example.com", "bob@example.com", "dave@example.com"]}),
    )
    .await;
    let gm = h.wait_condition("oncall", "Ready", "True", "Granted").await;
    assert_eq!(
        h.members("Eng On-Call"),
        h.ids(&["alice@example.com", "bob@example.com", "dave@example.com"])
    );
    let status = gm.status.as_ref().unwrap();
    assert_eq!(status.ready_users.as_deref(), Some("3/3"));
    assert_eq!(
        status.group_id.as_deref(),
        Some(h.group("Eng On-Call").as_str())
    );
    assert!(
        gm.metadata
            .finalizers
            .as_ref()
            .unwrap()
            .contains(&FINALIZER.to_string())
    );
    assert_eq!(
        state_of(&gm, "alice@example.com"),
        "Granted/Some(Granted)/Granted"
    );
    assert_eq!(
        state_of(&gm, "dave@example.com"),
        "Granted/Some(Preexisting)/Preexisting"
    );
    h.wait_event("oncall", "Normal", "Granted").await;
    // Two memberships are the operator's own; dave's preexisting one is not counted.
    wait_for("the managed-memberships gauge", || async {
        let text = h.metrics.encode();
        text.contains("okta_ciam_managed_memberships 2")
            .then_some(())
    })
    .await;

    // The ownership record: one labelled ConfigMap in the operator's namespace.
    let cms: Api<ConfigMap> = Api::namespaced(h.kube.clone(), OPERATOR_NS);
    let records = cms
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=okta-ciam-operator"))
        .await
        .unwrap();
    assert_eq!(records.items.len(), 1);
    let record = &records.items[0].data.as_ref().unwrap()["record"];
    assert!(
        record.contains(&h.user("alice@example.com")) && record.contains("identity/oncall"),
        "{record}"
    );

    // Swap bob for carol, and stop declaring dave (preexisting: stays in Okta).
    h.apply(
        "oncall",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng On-Call"},
               "users": ["alice@example.com", "carol@example.com"]}),
    )
    .await;
    wait_for("bob revoked, carol granted", || async {
        (h.members("Eng On-Call")
            == h.ids(&["alice@example.com", "carol@example.com", "dave@example.com"]))
        .then_some(())
    })
    .await;
    let gm = h.wait_condition("oncall", "Ready", "True", "Granted").await;
    assert_eq!(
        gm.status.as_ref().unwrap().ready_users.as_deref(),
        Some("2/2")
    );
    h.wait_event("oncall", "Normal", "Revoked").await;

    // Delete (Revoke): only the operator's grants go.
    h.delete("oncall").await;
    h.wait_gone("oncall").await;
    assert_eq!(h.members("Eng On-Call"), h.ids(&["dave@example.com"]));
    let records = cms.list(&ListParams::default()).await.unwrap();
    assert!(records.items.is_empty(), "an emptied record is removed");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_ownership_and_retain() {
    let h = Harness::start().await;
    let spec = |users: &[&str], policy: &str| {
        json!({"connectorRef": {"name": "acme"}, "group": {"id": h.group("Eng Admins")},
               "users": users, "deletionPolicy": policy})
    };
    h.apply(
        "first",
        spec(&["alice@example.com", "bob@example.com"], "Revoke"),
    )
    .await;
    h.wait_condition("first", "Ready", "True", "Granted").await;
    h.apply("second", spec(&["alice@example.com"], "Revoke"))
        .await;
    let second = h.wait_condition("second", "Ready", "True", "Granted").await;
    // Granted by the operator for `first`: `second` shares that grant.
    assert_eq!(
        state_of(&second, "alice@example.com"),
        "Granted/Some(Granted)/Granted"
    );

    // Deleting `first` revokes bob (only its own) but keeps alice (still declared).
    h.delete("first").await;
    h.wait_gone("first").await;
    assert_eq!(h.members("Eng Admins"), h.ids(&["alice@example.com"]));

    // The last claimant lets go: alice is revoked.
    h.delete("second").await;
    h.wait_gone("second").await;
    assert!(h.members("Eng Admins").is_empty());

    // Retain leaves the grant in Okta.
    h.apply("kept", spec(&["carol@example.com"], "Retain"))
        .await;
    h.wait_condition("kept", "Ready", "True", "Granted").await;
    let writes = h.writes();
    h.delete("kept").await;
    h.wait_gone("kept").await;
    assert_eq!(h.members("Eng Admins"), h.ids(&["carol@example.com"]));
    assert_eq!(h.writes(), writes, "Retain makes no Okta write");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_revokes_at_expiresat_and_keeps_the_object() {
    let h = Harness::start().await;
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4);
    h.apply(
        "jit",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng On-Call"},
               "users": ["alice@example.com", "dave@example.com"], "expiresAt": at.to_string()}),
    )
    .await;
    h.wait_condition("jit", "Expired", "False", "NotExpired")
        .await;
    let gm = h.wait_condition("jit", "Expired", "True", "Expired").await;
    assert_eq!(
        h.members("Eng On-Call"),
        h.ids(&["dave@example.com"]),
        "preexisting dave stays"
    );
    assert_eq!(
        user_row(&gm, "alice@example.com").state,
        okta_ciam_operator::crd::UserMembershipState::Expired
    );
    let ready = gm
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Expired")
    );
    h.wait_event("jit", "Normal", "Expired").await;

    // Extending expiresAt grants again.
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    h.apply(
        "jit",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng On-Call"},
               "users": ["alice@example.com", "dave@example.com"], "expiresAt": later.to_string()}),
    )
    .await;
    h.wait_condition("jit", "Ready", "True", "Granted").await;
    assert!(
        h.members("Eng On-Call")
            .contains(&h.user("alice@example.com"))
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_corrected_after_a_connector_sync_and_across_a_restart() {
    let mut h = Harness::start().await;
    h.apply(
        "oncall",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng On-Call"},
               "users": ["alice@example.com"]}),
    )
    .await;
    h.wait_condition("oncall", "Ready", "True", "Granted").await;
    let group = h.group("Eng On-Call");
    let alice = h.user("alice@example.com");
    assert!(h.okta.remove_membership(&group, &alice).unwrap());
    h.connector_synced("acme", "2026-01-01T01:00:00Z").await;
    wait_for("alice added again", || async {
        h.members("Eng On-Call").contains(&alice).then_some(())
    })
    .await;
    h.wait_event("oncall", "Normal", "DriftCorrected").await;

    // A restarted operator (new process state, same cluster) still owns the grant: removing
    // alice from the spec while it is down revokes her once it is back.
    h.stop_operator().await;
    h.apply(
        "oncall",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng On-Call"},
               "users": ["bob@example.com"]}),
    )
    .await;
    h.start_operator();
    wait_for("alice revoked by the restarted operator", || async {
        (h.members("Eng On-Call") == h.ids(&["bob@example.com", "dave@example.com"])).then_some(())
    })
    .await;

    // A user suspended in Okta is reported, not skipped.
    h.okta
        .set_user_status(&h.user("bob@example.com"), "SUSPENDED")
        .unwrap();
    h.connector_synced("acme", "2026-01-01T02:00:00Z").await;
    let gm = h
        .wait_condition("oncall", "Ready", "False", "UserInactive")
        .await;
    assert_eq!(
        user_row(&gm, "bob@example.com").reason.as_deref(),
        Some("UserInactive")
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_rails_refuse_without_writing() {
    let h = Harness::start().await;
    h.connector("no-provisioning", json!({"provisioning": false}))
        .await;
    h.connector("suspended", json!({"suspend": true})).await;
    h.connector("eng-only", json!({"groupNameFilter": "eng"}))
        .await;
    // Exists but never synced: no Ready condition, no client.
    let api: Api<OktaCiamConnector> = Api::namespaced(h.kube.clone(), NS);
    let unsynced = serde_json::from_value(json!({
        "apiVersion": "oktaciam.io/v1alpha1", "kind": "OktaCiamConnector",
        "metadata": {"name": "unsynced"},
        "spec": {"domain": h.okta.domain(), "tokenSecretRef": {"name": "okta", "key": "token"},
                 "emailDomains": ["example.com"], "provisioning": true},
    }))
    .unwrap();
    api.create(&PostParams::default(), &unsynced).await.unwrap();

    let cases: &[(&str, &str, Value, &str)] = &[
        (
            "missing",
            "nope",
            json!({"name": "Eng On-Call"}),
            "ConnectorNotFound",
        ),
        (
            "not-ready",
            "unsynced",
            json!({"name": "Eng On-Call"}),
            "ConnectorNotReady",
        ),
        (
            "disabled",
            "no-provisioning",
            json!({"name": "Eng On-Call"}),
            "ProvisioningDisabled",
        ),
        (
            "paused",
            "suspended",
            json!({"name": "Eng On-Call"}),
            "ConnectorSuspended",
        ),
        (
            "no-group",
            "acme",
            json!({"name": "No Such Group"}),
            "GroupNotFound",
        ),
        (
            "no-group-id",
            "acme",
            json!({"id": "00gdoesnotexist"}),
            "GroupNotFound",
        ),
        (
            "filtered",
            "eng-only",
            json!({"name": "Sales"}),
            "GroupOutOfScope",
        ),
        (
            "imported",
            "acme",
            json!({"name": "Eng Imported"}),
            "GroupNotOktaManaged",
        ),
    ];
    for (name, connector, group, _) in cases {
        h.apply(name, json!({"connectorRef": {"name": connector}, "group": group, "users": ["alice@example.com"]}))
            .await;
    }
    let user_cases: &[(&str, &str)] = &[
        ("nobody@example.com", "UserNotFound"),
        ("twin@example.com", "UserAmbiguous"),
        ("mallory@evil.example.org", "UserOutOfScope"),
        ("suspended@example.com", "UserInactive"),
    ];
    let users: Vec<&str> = user_cases.iter().map(|(u, _)| *u).collect();
    h.apply(
        "users",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng Admins"}, "users": users}),
    )
    .await;

    for (name, _, _, reason) in cases {
        h.wait_condition(name, "Ready", "False", reason).await;
        h.wait_event(name, "Warning", reason).await;
    }
    // The most important user reason leads; every user carries its own.
    let gm = h
        .wait_condition("users", "Ready", "False", "UserOutOfScope")
        .await;
    for (user, reason) in user_cases {
        assert_eq!(
            user_row(&gm, user).reason.as_deref(),
            Some(*reason),
            "{user}"
        );
        assert_eq!(
            user_row(&gm, user).state,
            okta_ciam_operator::crd::UserMembershipState::Failed
        );
    }
    for (_, reason) in user_cases {
        h.wait_event("users", "Warning", reason).await;
    }
    assert_eq!(h.writes(), 0, "no guard-rail case wrote to Okta");
    assert_eq!(h.members("Eng On-Call"), h.ids(&["dave@example.com"]));
    assert!(h.members("Eng Admins").is_empty());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_through_server_errors_and_rate_limits() {
    let h = Harness::start().await;
    let before_sales = h.members("Sales");
    for (status, name) in [(500u16, "five-hundreds"), (429, "rate-limited")] {
        h.okta.set_faults(emulator::Faults {
            error_rate: 0.4,
            error_status: Some(status),
            ..emulator::Faults::default()
        });
        h.apply(
            name,
            json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng Admins"},
                   "users": ["alice@example.com", "bob@example.com", "carol@example.com"]}),
        )
        .await;
        h.wait_condition(name, "Ready", "True", "Granted").await;
        h.okta.set_faults(emulator::Faults::default());
    }
    assert_eq!(
        h.members("Eng Admins"),
        h.ids(&["alice@example.com", "bob@example.com", "carol@example.com"])
    );
    assert_eq!(
        h.members("Eng On-Call"),
        h.ids(&["dave@example.com"]),
        "memberships not owned are unchanged"
    );
    assert_eq!(h.members("Sales"), before_sales);
    let stats = h.okta.stats();
    assert!(
        stats.requests.by_status.keys().any(|s| s == "500"),
        "{stats:?}"
    );

    // Revocation through faults too: both declarations go, so do the grants.
    h.okta.set_faults(emulator::Faults {
        error_rate: 0.4,
        ..emulator::Faults::default()
    });
    h.delete("five-hundreds").await;
    h.delete("rate-limited").await;
    h.wait_gone("five-hundreds").await;
    h.wait_gone("rate-limited").await;
    h.okta.set_faults(emulator::Faults::default());
    assert!(h.members("Eng Admins").is_empty());
    assert_eq!(h.members("Eng On-Call"), h.ids(&["dave@example.com"]));
    h.shutdown().await;
}
