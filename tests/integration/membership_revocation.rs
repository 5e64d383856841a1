//! Revocation over real HTTP (#12, items 4 to 6): the membership reconciler against the
//! Kubernetes API test server and the Okta emulator. Grant gates never block letting go of
//! the operator's own grants, a lost ownership record is restored from the membership's status
//! and reported, and the per-connector circuit breaker holds removals beyond its limit until a
//! person releases them, across a restart too (the window is stored in the connector's
//! status). Okta writes are counted at the emulator.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use okta_ciam_operator::controller::runtime::breaker::RELEASE_ANNOTATION;
use okta_ciam_operator::controller::runtime::clients::{ClientRegistry, ConnectorKey};
use okta_ciam_operator::crd::OktaCiamConnector;
use serde_json::json;

use std::sync::Arc;
use std::time::Duration;

use okta_ciam_operator::controller::membership::Settings;

use crate::membership_support::{
    Harness, NS, OPERATOR_NS, Options, one_user, state_of, user_row, wait_for,
};

/// Okta DELETEs (membership removals) the emulator answered so far.
fn deletes(h: &Harness) -> u64 {
    h.requests_where(|route| route.starts_with("DELETE "))
}

async fn patch_connector(h: &Harness, patch: serde_json::Value) {
    let api: Api<OktaCiamConnector> = Api::namespaced(h.kube.clone(), NS);
    api.patch("acme", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_gates_do_not_block_revocation() {
    let h = Harness::start().await;
    let spec = |users: &[&str]| json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng Admins"}, "users": users});
    h.apply("admins", spec(&["alice@example.com", "bob@example.com"]))
        .await;
    h.wait_condition("admins", "Ready", "True", "Granted").await;
    // Provisioning off, the filter narrowed away from the group, the email domains narrowed
    // away from the users, and the last sync failed (not Ready); the client still works.
    patch_connector(
        &h,
        json!({"spec": {"provisioning": false, "groupNameFilter": "Sales",
                         "emailDomains": ["other.org"]}}),
    )
    .await;
    let api: Api<OktaCiamConnector> = Api::namespaced(h.kube.clone(), NS);
    let failed = json!({"status": {"conditions": [{"type": "Ready", "status": "False",
        "reason": "OktaUnreachable", "message": "the last sync failed",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    api.patch_status("acme", &PatchParams::default(), &Patch::Merge(&failed))
        .await
        .unwrap();
    let before = h.writes();
    // Dropping an entry revokes it; the new entry is refused without a write.
    h.apply("admins", spec(&["bob@example.com", "carol@example.com"]))
        .await;
    let gm = wait_for("alice let go", || async {
        let gm = h.get("admins").await?;
        let s = gm.status.as_ref()?;
        (!s.users.iter().any(|u| u.user == "alice@example.com")).then_some(gm.clone())
    })
    .await;
    assert_eq!(
        state_of(&gm, "carol@example.com"),
        "Failed/None/ConnectorNotReady"
    );
    assert_eq!(h.members("Eng Admins"), h.ids(&["bob@example.com"]));
    assert_eq!(h.writes(), before + 1, "one DELETE, no PUT");
    // Deleting revokes the rest and finishes.
    h.delete("admins").await;
    h.wait_gone("admins").await;
    assert!(h.members("Eng Admins").is_empty());
    assert_eq!(h.writes(), before + 2);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_switch_off_still_revokes_at_deletion() {
    let mut h = Harness::start().await;
    h.apply(
        "oncall",
        one_user("acme", "Eng On-Call", "alice@example.com"),
    )
    .await;
    h.wait_condition("oncall", "Ready", "True", "Granted").await;
    h.stop_operator().await;
    // Restarted with `run --provisioning=false`.
    h.settings.provisioning = false;
    h.start_operator();
    h.delete("oncall").await;
    h.wait_gone("oncall").await;
    assert_eq!(
        h.members("Eng On-Call"),
        h.ids(&["dave@example.com"]),
        "the operator's grant revoked, the preexisting member left"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_revocation_waits_and_says_so_with_zero_writes() {
    // The quiet wait for a client (a restart's) is kept short here.
    let defaults = Options::default();
    let h = Harness::start_with(Options {
        settings: Settings {
            await_client_max: Duration::from_millis(500),
            ..defaults.settings
        },
        ..defaults
    })
    .await;
    h.apply(
        "oncall",
        one_user("acme", "Eng Admins", "alice@example.com"),
    )
    .await;
    h.wait_condition("oncall", "Ready", "True", "Granted").await;
    // The credentials are gone: this process no longer holds a client for the connector.
    h.registry.remove(&ConnectorKey::new(NS, "acme"));
    let writes = h.writes();
    h.delete("oncall").await;
    let gm = h
        .wait_condition("oncall", "Ready", "False", "RevocationWaiting")
        .await;
    let row = user_row(&gm, "alice@example.com");
    assert!(
        row.message
            .as_deref()
            .is_some_and(|m| m.contains("no working Okta client")),
        "{row:?}"
    );
    h.wait_event("oncall", "Warning", "RevocationWaiting").await;
    assert_eq!(h.writes(), writes, "zero Okta writes");
    assert_eq!(h.members("Eng Admins"), h.ids(&["alice@example.com"]));
    // A client again: the revocation goes through.
    h.seed_client("acme");
    h.wait_gone("oncall").await;
    assert!(h.members("Eng Admins").is_empty());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_ownership_record_is_restored_reported_and_still_revoked() {
    let h = Harness::start().await;
    h.apply(
        "oncall",
        one_user("acme", "Eng On-Call", "alice@example.com"),
    )
    .await;
    h.wait_condition("oncall", "Ready", "True", "Granted").await;
    let records: Api<ConfigMap> = Api::namespaced(h.kube.clone(), OPERATOR_NS);
    let record = records.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(record.len(), 1, "one record for the group");
    let name = record[0].name_any();
    // The record disappears (a reinstall, a restore from before the grant).
    records
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    // Any round notices: here one triggered by an annotation.
    let touch = json!({"metadata": {"annotations": {"touched": "1"}}});
    h.gms()
        .patch("oncall", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    let gm = h
        .wait_condition(
            "oncall",
            "OwnershipRecordLost",
            "True",
            "OwnershipRecordLost",
        )
        .await;
    assert_eq!(
        state_of(&gm, "alice@example.com"),
        "Granted/Some(Granted)/Granted",
        "still the operator's grant, not preexisting"
    );
    h.wait_event("oncall", "Warning", "OwnershipRecordLost")
        .await;
    let restored = records.get(&name).await.unwrap();
    let text = serde_json::to_string(&restored.data).unwrap();
    assert!(text.contains(&h.user("alice@example.com")), "{text}");
    assert!(
        h.metrics
            .encode()
            .contains("okta_ciam_ownership_grants_lost_total 1"),
        "the metric counts the lost grant"
    );
    // Deletion revokes the operator's grant and leaves the preexisting member.
    h.delete("oncall").await;
    h.wait_gone("oncall").await;
    assert_eq!(h.members("Eng On-Call"), h.ids(&["dave@example.com"]));
    h.shutdown().await;
}

/// Four users, one membership each, against a limit of two removals.
const BREAKER_USERS: [&str; 4] = [
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
    "dave@example.com",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_holds_removals_beyond_the_limit_until_released() {
    let h = Harness::start().await;
    patch_connector(
        &h,
        json!({"spec": {"safety": {"maxRevocationsPerHour": 2}}}),
    )
    .await;
    let users = BREAKER_USERS;
    for (i, user) in users.iter().enumerate() {
        h.apply(&format!("gm{i}"), one_user("acme", "Eng Admins", user))
            .await;
    }
    for i in 0..users.len() {
        h.wait_condition(&format!("gm{i}"), "Ready", "True", "Granted")
            .await;
    }
    let before = deletes(&h);
    for i in 0..users.len() {
        h.delete(&format!("gm{i}")).await;
    }
    // Exactly the limit goes; the rest is held, each membership saying so.
    let held = wait_for("two removals held", || async {
        let mut held = Vec::new();
        for i in 0..users.len() {
            let name = format!("gm{i}");
            if let Some(gm) = h.get(&name).await {
                let s = gm.status.as_ref()?;
                let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
                (ready.reason == "RevocationHeld").then_some(())?;
                held.push(name);
            }
        }
        (held.len() == 2).then_some(held)
    })
    .await;
    assert_eq!(deletes(&h) - before, 2, "no more than the limit");
    assert_eq!(h.members("Eng Admins").len(), 2);
    let key = ConnectorKey::new(NS, "acme");
    let state = h.registry.revocations().state(&key, jiff::Timestamp::now());
    assert_eq!((state.done, state.held), (2, 2));
    assert!(
        h.metrics
            .encode()
            .contains(r#"okta_ciam_revocations_held{namespace="identity",name="acme"} 2"#),
        "{}",
        h.metrics.encode()
    );
    // Still held after further rounds (bounded: a few retries of each).
    let rounds = h.requests_where(|r| r.starts_with("GET "));
    wait_for("the held memberships retried", || async {
        (h.requests_where(|r| r.starts_with("GET ")) > rounds + 4).then_some(())
    })
    .await;
    assert_eq!(deletes(&h) - before, 2);
    // A person releases them: one new annotation value, one more window's worth.
    patch_connector(
        &h,
        json!({"metadata": {"annotations": {RELEASE_ANNOTATION: "2026-06-01"}}}),
    )
    .await;
    for name in &held {
        h.wait_gone(name).await;
    }
    assert!(h.members("Eng Admins").is_empty());
    assert_eq!(deletes(&h) - before, 4);
    h.shutdown().await;
}

/// The memberships among `names` whose `Ready` reason is `RevocationHeld`.
async fn held_among(h: &Harness, names: &[String]) -> Option<Vec<String>> {
    let mut held = Vec::new();
    for name in names {
        if let Some(gm) = h.get(name).await {
            let s = gm.status.as_ref()?;
            let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
            (ready.reason == "RevocationHeld").then_some(())?;
            held.push(name.clone());
        }
    }
    Some(held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_window_survives_a_restart() {
    let mut h = Harness::start().await;
    h.registry.revocations().persist_in(h.kube.clone());
    patch_connector(
        &h,
        json!({"spec": {"safety": {"maxRevocationsPerHour": 2}}}),
    )
    .await;
    let users = BREAKER_USERS;
    let names: Vec<String> = (0..users.len()).map(|i| format!("gm{i}")).collect();
    for (name, user) in names.iter().zip(users) {
        h.apply(name, one_user("acme", "Eng Admins", user)).await;
    }
    for name in &names {
        h.wait_condition(name, "Ready", "True", "Granted").await;
    }
    let before = deletes(&h);
    // The limit's worth of removals, before the restart.
    for name in &names[..2] {
        h.delete(name).await;
        h.wait_gone(name).await;
    }
    assert_eq!(deletes(&h) - before, 2);
    let connectors: Api<OktaCiamConnector> = Api::namespaced(h.kube.clone(), NS);
    let stored = connectors.get("acme").await.unwrap().status.unwrap();
    let counted: i32 = stored
        .revocations
        .expect("the window is stored")
        .removals
        .iter()
        .map(|c| c.count)
        .sum();
    assert_eq!(counted, 2, "both removals stored");

    // A restart: a fresh registry (an empty in-memory window) seeded from the connector.
    h.stop_operator().await;
    h.registry = Arc::new(ClientRegistry::new());
    h.registry.revocations().persist_in(h.kube.clone());
    h.seed_client("acme");
    h.start_operator();
    for name in &names[2..] {
        h.delete(name).await;
    }
    let held = wait_for("the rest held after the restart", || async {
        held_among(&h, &names[2..])
            .await
            .filter(|held| held.len() == 2)
    })
    .await;
    assert_eq!(deletes(&h) - before, 2, "no removal beyond the limit");
    let key = ConnectorKey::new(NS, "acme");
    let state = h.registry.revocations().state(&key, jiff::Timestamp::now());
    assert_eq!((state.done, state.held), (2, 2));
    // A person releases them; the stored release value is then not acted on again.
    patch_connector(
        &h,
        json!({"metadata": {"annotations": {RELEASE_ANNOTATION: "after-restart"}}}),
    )
    .await;
    for name in &held {
        h.wait_gone(name).await;
    }
    assert_eq!(deletes(&h) - before, 4);
    let stored = connectors.get("acme").await.unwrap().status.unwrap();
    assert_eq!(
        stored.revocations.unwrap().released.as_deref(),
        Some("after-restart")
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_cannot_be_stored_holds_every_removal_with_zero_deletes() {
    let h = Harness::start().await;
    h.registry.revocations().persist_in(h.kube.clone());
    h.apply(
        "oncall",
        one_user("acme", "Eng Admins", "alice@example.com"),
    )
    .await;
    h.wait_condition("oncall", "Ready", "True", "Granted").await;
    let before = deletes(&h);
    // The connector's status cannot be written: the removal's count could not be made durable.
    h.server.faults().fail_next_writes_to(
        "oktaciamconnectors",
        usize::MAX,
        kube_test_server::FailWith::InternalError,
    );
    h.delete("oncall").await;
    wait_for("the removal held", || async {
        held_among(&h, &["oncall".to_owned()])
            .await
            .filter(|held| held.len() == 1)
    })
    .await;
    let key = ConnectorKey::new(NS, "acme");
    let state = h.registry.revocations().state(&key, jiff::Timestamp::now());
    assert!(state.unavailable, "{state:?}");
    assert_eq!(state.held, 1);
    assert_eq!(deletes(&h), before, "zero DELETEs without a durable count");
    // Writable again: the next retry stores the count, then removes.
    h.server.faults().clear();
    h.wait_gone("oncall").await;
    assert_eq!(deletes(&h), before + 1);
    assert!(h.members("Eng Admins").is_empty());
    h.shutdown().await;
}
