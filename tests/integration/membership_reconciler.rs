//! The `GroupMembership` reconciler over real HTTP: the Kubernetes API test server
//! (`tests/kube-test-server`, serving the committed CRDs) and the in-process Okta emulator.
//! The connector's shared client is seeded in the registry and its status set Ready, as the
//! connector reconciler would after a sync.

use crate::membership_support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, PostParams};
use membership_support::*;
use okta_ciam_operator::controller::membership::FINALIZER;
use okta_ciam_operator::crd::{ConditionType, OktaCiamConnector};
use okta_emulator as emulator;
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
    let ready = condition(&gm, ConditionType::Ready);
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
        one_user("acme", "Eng On-Call", "alice@example.com"),
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
    h.apply("oncall", one_user("acme", "Eng On-Call", "bob@example.com"))
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
        ("staged@example.com", "UserInactive"),
        ("provisioned@example.com", "UserInactive"),
        ("lockedout@example.com", "UserInactive"),
        ("deprovisioned@example.com", "UserInactive"),
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
        // Into the group that also holds dave's membership, which the operator does not own.
        h.apply(
            name,
            json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng On-Call"},
                   "users": ["alice@example.com", "bob@example.com", "carol@example.com"]}),
        )
        .await;
        h.wait_condition(name, "Ready", "True", "Granted").await;
        h.okta.set_faults(emulator::Faults::default());
    }
    assert_eq!(
        h.members("Eng On-Call"),
        h.ids(&[
            "alice@example.com",
            "bob@example.com",
            "carol@example.com",
            "dave@example.com"
        ])
    );
    assert!(h.members("Eng Admins").is_empty());
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
    assert_eq!(
        h.members("Eng On-Call"),
        h.ids(&["dave@example.com"]),
        "the membership the operator does not own survives the revocations"
    );
    assert!(h.members("Eng Admins").is_empty());
    assert_eq!(h.members("Sales"), before_sales);
    h.shutdown().await;
}

/// The status row's message and the object's resourceVersion.
fn row_and_version(gm: &okta_ciam_operator::crd::GroupMembership, user: &str) -> (String, String) {
    (
        user_row(gm, user).message.clone().unwrap_or_default(),
        gm.metadata.resource_version.clone().unwrap_or_default(),
    )
}

/// Membership rounds that ended without an error so far.
fn successful_rounds(h: &Harness) -> u64 {
    let metric = r#"okta_ciam_reconciles_total{kind="GroupMembership",result="success"} "#;
    h.metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(metric))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// PUTs the emulator answered so far.
fn puts(h: &Harness) -> u64 {
    h.requests_where(|route| route.starts_with("PUT "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_put_backs_off_without_rewriting_status_and_keeps_no_intent() {
    let h = Harness::start().await;
    // The index takes the imported group for an OKTA_GROUP, so the guard rail admits it and
    // Okta answers every PUT with 403 E0000006 (a fresh errorId each time).
    let sync = || {
        h.sync_index_edited("acme", |snapshot| {
            for g in snapshot
                .groups
                .iter_mut()
                .filter(|g| g.name == "Eng Imported")
            {
                g.group_type = "OKTA_GROUP".into();
            }
        })
    };
    sync().await;
    h.apply(
        "refused",
        one_user("acme", "Eng Imported", "alice@example.com"),
    )
    .await;
    let gm = h
        .wait_condition("refused", "Ready", "False", "GrantFailed")
        .await;
    h.wait_event("refused", "Warning", "GrantFailed").await;
    let row = user_row(&gm, "alice@example.com");
    let message = row.message.clone().unwrap_or_default();
    assert!(message.contains("HTTP 403 E0000006"), "{message}");
    assert!(
        !message.contains("errorId") && !message.contains("request id"),
        "{message}"
    );
    assert_eq!(row.origin, None, "the refused grant holds no claim");

    // The retries follow the back-off (200 ms doubling to a 2 s cap) and the status,
    // unchanged, is not rewritten. Waits for four more PUTs: the back-off spaces them at
    // least 400 + 800 + 1600 ms apart after the first, where a fixed 200 ms delay would take
    // 800 ms for all four and a hot loop next to nothing. A lower bound only, so a slow
    // machine cannot fail it.
    let (before, version) = (puts(&h), row_and_version(&gm, "alice@example.com"));
    let started = std::time::Instant::now();
    wait_for("four retried PUTs", || async {
        (puts(&h) - before >= 4).then_some(())
    })
    .await;
    let spent = started.elapsed();
    assert!(
        spent >= std::time::Duration::from_millis(400 + 800 + 1600),
        "four retried PUTs within {spent:?}: no back-off"
    );
    let gm = h.get("refused").await.unwrap();
    assert_eq!(row_and_version(&gm, "alice@example.com"), version);

    // Someone adds alice by hand: the refused PUT left no intent, so her membership is
    // preexisting and survives the entry being dropped.
    let group = h.group("Eng Imported");
    let alice = h.user("alice@example.com");
    assert!(h.okta.add_membership(&group, &alice).unwrap());
    // A new sync: the next round reads the members afresh.
    sync().await;
    let gm = h
        .wait_condition("refused", "Ready", "True", "Granted")
        .await;
    assert_eq!(
        state_of(&gm, "alice@example.com"),
        "Granted/Some(Preexisting)/Preexisting"
    );
    h.delete("refused").await;
    h.wait_gone("refused").await;
    assert_eq!(h.members("Eng Imported"), h.ids(&["alice@example.com"]));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_off_or_suspend_on_the_connector_stops_writes_despite_the_index() {
    let h = Harness::start().await;
    // The index says provisioning is on and the connector is not suspended.
    h.sync_index("acme").await;
    let spec = |users: &[&str]| json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng Admins"}, "users": users});
    h.apply("admins", spec(&["alice@example.com"])).await;
    h.wait_condition("admins", "Ready", "True", "Granted").await;
    let api: Api<OktaCiamConnector> = Api::namespaced(h.kube.clone(), NS);
    // Provisioning off refuses the new entry but still revokes the dropped one (#12, item 4:
    // revocation is not a grant); suspended, neither is written.
    for (change, reason, revoked) in [
        (
            json!({"spec": {"provisioning": false}}),
            "ProvisioningDisabled",
            1,
        ),
        (
            json!({"spec": {"provisioning": true, "suspend": true}}),
            "ConnectorSuspended",
            0,
        ),
    ] {
        api.patch(
            "acme",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&change),
        )
        .await
        .unwrap();
        h.wait_condition("admins", "Ready", "False", reason).await;
        let writes = h.writes();
        h.apply("admins", spec(&["bob@example.com"])).await;
        wait_for("the spec change reconciled", || async {
            let gm = h.get("admins").await?;
            let s = gm.status.as_ref()?;
            s.users
                .iter()
                .any(|u| u.user == "bob@example.com")
                .then_some(())
        })
        .await;
        h.wait_condition("admins", "Ready", "False", reason).await;
        assert_eq!(h.writes(), writes + revoked, "{reason}: Okta writes");
        assert!(
            h.members("Eng Admins").is_empty(),
            "{reason}: bob never granted"
        );
        h.apply("admins", spec(&["alice@example.com"])).await;
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_renamed_after_the_grant_is_still_revoked_on_deletion() {
    let h = Harness::start().await;
    h.apply(
        "renamed",
        one_user("acme", "Eng Admins", "alice@example.com"),
    )
    .await;
    h.wait_condition("renamed", "Ready", "True", "Granted")
        .await;
    let group = h.group("Eng Admins");
    h.okta.rename_group(&group, "Platform Admins").unwrap();
    h.connector_synced("acme", "2026-01-01T01:00:00Z").await;
    // Reported honestly: the declared name no longer matches the group it was granted in.
    let gm = h
        .wait_condition("renamed", "Ready", "False", "GroupRenamed")
        .await;
    let message = user_row(&gm, "alice@example.com")
        .message
        .clone()
        .unwrap_or_default();
    assert!(
        message.contains("Platform Admins") && message.contains(&group),
        "{message}"
    );
    assert_eq!(
        gm.status.as_ref().unwrap().group_id.as_deref(),
        Some(group.as_str())
    );
    h.wait_event("renamed", "Warning", "GroupRenamed").await;
    assert_eq!(
        h.okta.members_of(&group),
        vec![h.user("alice@example.com")],
        "nothing revoked while live"
    );

    h.delete("renamed").await;
    h.wait_gone("renamed").await;
    assert!(
        h.okta.members_of(&group).is_empty(),
        "the grant was revoked by id"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_is_reported_once_without_okta_calls_and_can_be_deleted() {
    let h = Harness::start().await;
    let cases = [
        (
            "both-group-keys",
            json!({"connectorRef": {"name": "acme"},
                   "group": {"name": "Eng Admins", "id": h.group("Eng Admins")},
                   "users": ["alice@example.com"]}),
            "both name and id",
        ),
        (
            "both-expiries",
            json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng Admins"},
                   "users": ["alice@example.com"], "duration": "1h",
                   "expiresAt": "2030-01-01T00:00:00Z"}),
            "both expiresAt and duration",
        ),
    ];
    let requests = h.requests_where(|_| true);
    for (name, spec, _) in &cases {
        h.apply(name, spec.clone()).await;
    }
    for (name, _, why) in &cases {
        let gm = h
            .wait_condition(name, "Ready", "False", "InvalidSpec")
            .await;
        let ready = condition(&gm, ConditionType::Ready);
        assert!(ready.message.contains(why), "{name}: {}", ready.message);
        h.wait_event(name, "Warning", "InvalidSpec").await;
    }
    assert_eq!(
        h.requests_where(|_| true),
        requests,
        "no Okta call for an invalid spec"
    );
    // It waits for a change: a connector sync re-reconciles every membership, and those
    // rounds neither call Okta nor rewrite the status nor repeat the Event.
    let mut versions = Vec::new();
    for (name, _, _) in &cases {
        versions.push(h.get(name).await.unwrap().metadata.resource_version);
    }
    let rounds = successful_rounds(&h);
    h.connector_synced("acme", "2026-01-01T01:00:00Z").await;
    wait_for("both re-reconciled after the sync", || async {
        (successful_rounds(&h) >= rounds + cases.len() as u64).then_some(())
    })
    .await;
    assert_eq!(
        h.requests_where(|_| true),
        requests,
        "no Okta call for an invalid spec"
    );
    for ((name, _, _), version) in cases.iter().zip(&versions) {
        assert_eq!(
            &h.get(name).await.unwrap().metadata.resource_version,
            version,
            "{name}"
        );
        let warnings = h
            .event_reasons(name)
            .await
            .into_iter()
            .filter(|(t, r)| t == "Warning" && r == "InvalidSpec")
            .count();
        assert_eq!(warnings, 1, "{name}");
    }
    for (name, _, _) in &cases {
        h.delete(name).await;
        h.wait_gone(name).await;
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_completes_when_the_connector_is_gone_leaving_memberships_in_okta() {
    let mut h = Harness::start().await;
    h.connector("doomed", json!({})).await;
    for (name, policy, user) in [
        ("revoking", "Revoke", "alice@example.com"),
        ("retaining", "Retain", "bob@example.com"),
    ] {
        h.apply(
            name,
            json!({"connectorRef": {"name": "doomed"}, "group": {"name": "Eng Admins"},
                   "users": [user], "deletionPolicy": policy}),
        )
        .await;
        h.wait_condition(name, "Ready", "True", "Granted").await;
    }
    // The connector's deletion is seen at once, and the grants are still reported.
    let api: Api<OktaCiamConnector> = Api::namespaced(h.kube.clone(), NS);
    api.delete("doomed", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    for (name, user) in [
        ("revoking", "alice@example.com"),
        ("retaining", "bob@example.com"),
    ] {
        let gm = h
            .wait_condition(name, "Ready", "False", "ConnectorNotFound")
            .await;
        assert_eq!(
            user_row(&gm, user).origin,
            Some(okta_ciam_operator::crd::MembershipOrigin::Granted)
        );
    }
    // As in a namespace deletion, the memberships go while nothing reconciles them.
    h.stop_operator().await;
    for name in ["revoking", "retaining"] {
        h.delete(name).await;
    }
    let writes = h.writes();
    h.start_operator();
    for name in ["revoking", "retaining"] {
        h.wait_gone(name).await;
    }
    assert_eq!(
        h.writes(),
        writes,
        "nothing can be revoked without the connector"
    );
    assert_eq!(
        h.members("Eng Admins"),
        h.ids(&["alice@example.com", "bob@example.com"])
    );
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(h.kube.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap();
    let left = events
        .items
        .iter()
        .find(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("revoking")
                && e.reason.as_deref() == Some("ConnectorNotFound")
                && e.note.as_deref().is_some_and(|n| n.contains("leaving"))
        })
        .unwrap_or_else(|| panic!("no Warning about the grant left: {:?}", events.items));
    assert_eq!(left.type_.as_deref(), Some("Warning"));
    assert!(
        left.note.as_deref().unwrap().contains(" 1 "),
        "{:?}",
        left.note
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_connector_without_a_client_yet_is_waited_for_quietly() {
    let h = Harness::start().await;
    h.connector_without_client("late", json!({})).await;
    h.apply("waits", one_user("late", "Eng Admins", "alice@example.com"))
        .await;
    // A whole round has run (the reconcile metric counts finished rounds) ...
    wait_for("a finished round", || async {
        let text = h.metrics.encode();
        text.lines()
            .any(|l| {
                l.starts_with("okta_ciam_reconciles_total{")
                    && l.contains("GroupMembership")
                    && !l.ends_with(" 0")
            })
            .then_some(())
    })
    .await;
    // ... and reported nothing: a restart or failover is not the connector failing.
    let gm = h.get("waits").await.unwrap();
    assert!(gm.status.is_none(), "{:?}", gm.status);
    assert!(h.event_reasons("waits").await.is_empty());
    assert_eq!(h.writes(), 0);
    // The client appearing re-runs the round.
    h.seed_client("late");
    h.wait_condition("waits", "Ready", "True", "Granted").await;
    assert!(
        !h.event_reasons("waits")
            .await
            .iter()
            .any(|(_, reason)| reason == "ConnectorNotReady")
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_connector_keeps_group_and_origins_and_deletion_waits_to_revoke() {
    let h = Harness::start().await;
    let spec = |users: &[&str]| json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng Admins"}, "users": users});
    h.apply("paused", spec(&["alice@example.com"])).await;
    h.wait_condition("paused", "Ready", "True", "Granted").await;
    let group = h.group("Eng Admins");
    let api: Api<OktaCiamConnector> = Api::namespaced(h.kube.clone(), NS);
    let suspend = |on: bool| {
        let api = api.clone();
        async move {
            api.patch(
                "acme",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&json!({"spec": {"suspend": on}})),
            )
            .await
            .unwrap();
        }
    };
    suspend(true).await;
    h.wait_condition("paused", "Ready", "False", "ConnectorSuspended")
        .await;
    // A second round while suspended (a spec change) must still know the group and the
    // operator's grant: neither is looked up, both come from the previous round.
    h.apply("paused", spec(&["alice@example.com", "bob@example.com"]))
        .await;
    let gm = wait_for("the spec change reconciled", || async {
        let gm = h.get("paused").await?;
        let s = gm.status.as_ref()?;
        s.users
            .iter()
            .any(|u| u.user == "bob@example.com")
            .then_some(gm.clone())
    })
    .await;
    assert_eq!(
        gm.status.as_ref().unwrap().group_id.as_deref(),
        Some(group.as_str()),
        "groupId kept while the group is not looked up"
    );
    assert_eq!(
        format!("{:?}", user_row(&gm, "alice@example.com").origin),
        "Some(Granted)",
        "the grant is still reported as the operator's"
    );

    // Deleting while suspended: no write, and the finalizer stays while the grant is held.
    let writes = h.writes();
    h.delete("paused").await;
    let gm = h
        .wait_condition("paused", "Ready", "False", "RevocationWaiting")
        .await;
    let message = &condition(&gm, ConditionType::Ready).message;
    assert!(message.contains("connector acme is suspended"), "{message}");
    assert!(
        gm.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.contains(&FINALIZER.to_string()))
    );
    assert_eq!(h.writes(), writes, "no Okta write while suspended");
    assert_eq!(h.members("Eng Admins"), h.ids(&["alice@example.com"]));

    // Resuming lets the deletion revoke the operator's grant and finish.
    suspend(false).await;
    h.wait_gone("paused").await;
    assert!(h.members("Eng Admins").is_empty(), "the grant was revoked");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_holding_no_grant_does_not_wait_for_a_client() {
    let h = Harness::start().await;
    h.connector_without_client("late", json!({})).await;
    h.apply(
        "nothing-held",
        one_user("late", "Eng Admins", "alice@example.com"),
    )
    .await;
    wait_for("the finalizer", || async {
        let gm = h.get("nothing-held").await?;
        gm.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.contains(&FINALIZER.to_string()))
            .then_some(())
    })
    .await;
    // Nothing was granted, so the deletion has nothing to revoke: it finishes although the
    // connector's client never appears.
    h.delete("nothing-held").await;
    h.wait_gone("nothing-held").await;
    assert_eq!(h.writes(), 0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_comes_is_reported_once_the_wait_is_over() {
    let defaults = Options::default();
    let h = Harness::start_with(Options {
        settings: okta_ciam_operator::controller::membership::Settings {
            await_client_max: std::time::Duration::ZERO,
            ..defaults.settings
        },
        ..defaults
    })
    .await;
    h.connector_without_client("late", json!({})).await;
    h.apply("never", one_user("late", "Eng Admins", "alice@example.com"))
        .await;
    h.wait_condition("never", "Ready", "False", "ConnectorNotReady")
        .await;
    assert_eq!(h.writes(), 0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_group_lets_go_in_the_old_one_before_acting_in_the_new() {
    let h = Harness::start().await;
    let spec = |group: &str| json!({"connectorRef": {"name": "acme"}, "group": {"name": group}, "users": ["alice@example.com", "dave@example.com"]});
    h.apply("moves", spec("Eng On-Call")).await;
    h.wait_condition("moves", "Ready", "True", "Granted").await;
    let old = h.group("Eng On-Call");
    let new = h.group("Eng Admins");
    // alice granted by the operator, dave preexisting.
    assert_eq!(
        h.members("Eng On-Call"),
        h.ids(&["alice@example.com", "dave@example.com"])
    );

    h.apply("moves", spec("Eng Admins")).await;
    let gm = wait_for("granted in the new group", || async {
        let gm = h.get("moves").await?;
        let s = gm.status.as_ref()?;
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
        (s.group_id.as_deref() == Some(new.as_str()) && ready.reason == "Granted")
            .then_some(gm.clone())
    })
    .await;
    // The operator's grant in the old group is revoked; the preexisting one stays.
    assert_eq!(h.okta.members_of(&old), vec![h.user("dave@example.com")]);
    assert_eq!(
        h.members("Eng Admins"),
        h.ids(&["alice@example.com", "dave@example.com"])
    );
    assert_eq!(
        state_of(&gm, "alice@example.com"),
        "Granted/Some(Granted)/Granted"
    );

    // And the deletion now revokes in the new group.
    h.delete("moves").await;
    h.wait_gone("moves").await;
    assert!(h.members("Eng Admins").is_empty());
    assert_eq!(h.okta.members_of(&old), vec![h.user("dave@example.com")]);
    h.shutdown().await;
}

/// `GET /api/v1/users/{id}`: the read that confirms a user the index answered.
fn user_reads(h: &Harness) -> u64 {
    h.requests_where(|route| route == "GET /api/v1/users/{idOrLogin}")
}

fn user_searches(h: &Harness) -> u64 {
    h.requests_where(|route| route == "GET /api/v1/users")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_the_index_admits_but_okta_no_longer_does_gets_no_put() {
    let h = Harness::start().await;
    // The index is built while alice and bob are in scope and active; then, before any
    // membership names them, alice leaves the email domains and bob is suspended in Okta.
    h.sync_index("acme").await;
    let alice = h.user("alice@example.com");
    let bob = h.user("bob@example.com");
    h.okta
        .set_user_profile(&alice, "alice@elsewhere.org", "alice@elsewhere.org")
        .unwrap();
    h.okta.set_user_status(&bob, "SUSPENDED").unwrap();
    let (searches, reads) = (user_searches(&h), user_reads(&h));

    h.apply("moved", one_user("acme", "Eng Admins", "alice@example.com"))
        .await;
    let gm = h
        .wait_condition("moved", "Ready", "False", "UserOutOfScope")
        .await;
    let row = user_row(&gm, "alice@example.com");
    assert_eq!(row.reason.as_deref(), Some("UserOutOfScope"));
    assert!(
        row.message.as_deref().unwrap_or_default().contains(&alice),
        "{row:?}"
    );
    h.apply(
        "suspended",
        one_user("acme", "Eng Admins", "bob@example.com"),
    )
    .await;
    let gm = h
        .wait_condition("suspended", "Ready", "False", "UserInactive")
        .await;
    assert_eq!(
        user_row(&gm, "bob@example.com").reason.as_deref(),
        Some("UserInactive")
    );

    assert_eq!(h.writes(), 0, "no PUT for either");
    assert!(h.members("Eng Admins").is_empty());
    // The index named both users (no search); Okta's read by id refused them.
    assert_eq!(user_searches(&h), searches);
    assert!(user_reads(&h) >= reads + 2);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_from_the_index_cost_one_user_read_each() {
    let h = Harness::start().await;
    h.sync_index("acme").await;
    let puts = |h: &Harness| h.requests_where(|route| route.starts_with("PUT "));
    let (searches, reads, puts_before) = (user_searches(&h), user_reads(&h), puts(&h));

    h.apply(
        "admins",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng Admins"},
               "users": ["alice@example.com", "bob@example.com", "carol@example.com"]}),
    )
    .await;
    // dave is a member already: nothing is written for him, so he is not read again.
    h.apply(
        "oncall",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng On-Call"},
               "users": ["alice@example.com", "dave@example.com"]}),
    )
    .await;
    h.wait_condition("admins", "Ready", "True", "Granted").await;
    h.wait_condition("oncall", "Ready", "True", "Granted").await;
    assert_eq!(
        h.members("Eng Admins"),
        h.ids(&["alice@example.com", "bob@example.com", "carol@example.com"])
    );
    assert_eq!(puts(&h) - puts_before, 4);
    assert_eq!(user_reads(&h) - reads, 4, "one user read per grant");
    assert_eq!(user_searches(&h), searches, "the index named every user");

    // A drift re-grant is confirmed the same way. The connector's next sync (a new index)
    // is what re-reads the member list; the sync itself reads no user by id.
    let group = h.group("Eng Admins");
    assert!(
        h.okta
            .remove_membership(&group, &h.user("bob@example.com"))
            .unwrap()
    );
    h.sync_index("acme").await;
    h.connector_synced("acme", "2026-01-01T01:00:00Z").await;
    h.wait_event("admins", "Normal", "DriftCorrected").await;
    assert!(h.members("Eng Admins").contains(&h.user("bob@example.com")));
    assert_eq!(puts(&h) - puts_before, 5);
    assert_eq!(user_reads(&h) - reads, 5, "one user read per grant");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_user_read_puts_nothing_and_retries() {
    let h = Harness::start().await;
    h.sync_index("acme").await;
    let spec = |user: &str| json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng Admins"}, "users": [user]});
    h.apply("first", spec("alice@example.com")).await;
    h.wait_condition("first", "Ready", "True", "Granted").await;
    let (reads, writes) = (user_reads(&h), h.writes());
    // The group's member list is shared from the first round, and the index names bob: the
    // next Okta request is the read of bob, which Okta refuses (a 403 is not retried).
    h.okta.set_faults(emulator::Faults {
        fail_next: 1,
        error_status: Some(403),
        ..emulator::Faults::default()
    });
    h.apply("second", spec("bob@example.com")).await;
    h.wait_condition("second", "Ready", "True", "Granted").await;
    assert!(h.okta.stats().requests.by_status.contains_key("403"));
    assert_eq!(h.writes() - writes, 1, "one PUT, after the read succeeded");
    // Had the failed round PUT bob, the retry would have found him a member and not read him.
    assert_eq!(
        user_reads(&h) - reads,
        2,
        "the failed read, then the retry's"
    );
    h.shutdown().await;
}
