//! End to end with the real `run` binary (#12, items 4 and 6): revocation goes through with
//! provisioning off, deleting a connector waits for its memberships' revocations (or the
//! escape annotation), deleting a whole namespace revokes every grant, and the mass-revocation
//! circuit breaker lets exactly its limit of removals through until a person releases more,
//! also when the operator is killed and restarted in between.
//! Okta DELETEs are counted at the emulator.

use crate::e2e_support;

use e2e_support::{E2e, Operator, fixture, logins, wait_for};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use okta_ciam_operator::controller::connector::revocations::ABANDON_ANNOTATION;
use okta_ciam_operator::controller::runtime::breaker::RELEASE_ANNOTATION;
use serde_json::json;

const CONNECTOR: &str = "corp";

/// Membership removals the emulated org answered so far.
fn deletes(e: &E2e) -> u64 {
    e.okta
        .stats()
        .requests
        .by_route
        .iter()
        .filter(|(route, _)| route.starts_with("DELETE "))
        .map(|(_, n)| n)
        .sum()
}

async fn annotate_connector(e: &E2e, key: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    e.connectors()
        .patch(CONNECTOR, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn gone<K>(api: Api<K>, name: &str) -> Option<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.unwrap().is_none().then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_connector_deletion_waits_for_revocations_which_provisioning_off_does_not_stop() {
    let users = logins("user", 3);
    let e = E2e::start(&fixture(&users, &[("Team", &[])])).await;
    e.put_secret("okta-token", "apiToken", "token-1").await;
    e.apply_connector(CONNECTOR, json!({})).await;
    let operator = e.operator("operator", &[]);
    e.wait_connector(CONNECTOR, "Ready", "True", "Synced").await;
    e.apply_membership("team", CONNECTOR, "Team", &users[..2])
        .await;
    e.apply_membership("kept", CONNECTOR, "Team", &users[2..])
        .await;
    e.wait_membership("team", "Ready", "True", "Granted").await;
    e.wait_membership("kept", "Ready", "True", "Granted").await;

    // Provisioning off: a dropped entry is still revoked.
    e.apply_connector(CONNECTOR, json!({"provisioning": false}))
        .await;
    e.apply_membership("team", CONNECTOR, "Team", &users[..1])
        .await;
    let before = deletes(&e);
    wait_for("the dropped user revoked", || async {
        (e.members("Team") == e.user_ids(&[users[0].clone(), users[2].clone()])).then_some(())
    })
    .await;
    assert_eq!(deletes(&e), before + 1);

    // Deleting the connector waits while memberships hold grants, and says so.
    e.connectors()
        .delete(CONNECTOR, &DeleteParams::default())
        .await
        .unwrap();
    let connector = e
        .wait_connector(CONNECTOR, "Deleting", "True", "WaitingForRevocations")
        .await;
    let message = &connector
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Deleting")
        .unwrap()
        .message;
    assert!(message.contains("2 GroupMembership(s)"), "{message}");
    assert!(message.contains(ABANDON_ANNOTATION), "{message}");
    e.wait_event(CONNECTOR, "Warning", "WaitingForRevocations")
        .await;
    assert_eq!(
        deletes(&e),
        before + 1,
        "nothing revoked for the connector's sake"
    );

    // One membership deleted: revoked through the terminating connector's client.
    e.memberships()
        .delete("team", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("team revoked and gone", || gone(e.memberships(), "team")).await;
    assert_eq!(e.members("Team"), e.user_ids(&users[2..]));
    assert_eq!(deletes(&e), before + 2);
    assert!(
        e.connectors().get_opt(CONNECTOR).await.unwrap().is_some(),
        "still waiting for `kept`"
    );

    // The escape: the connector goes, `kept`'s grant stays in Okta, and a Warning says so.
    annotate_connector(&e, ABANDON_ANNOTATION, "true").await;
    wait_for("the connector gone", || gone(e.connectors(), CONNECTOR)).await;
    e.wait_event(CONNECTOR, "Warning", "GrantsAbandoned").await;
    assert_eq!(e.members("Team"), e.user_ids(&users[2..]));
    assert_eq!(deletes(&e), before + 2);
    drop(operator);
    e.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_deleting_the_namespace_revokes_every_grant() {
    let users = logins("user", 3);
    let Some((e, operator)) = namespace_with_grants(json!({}), &users).await else {
        return;
    };
    let before = deletes(&e);
    let namespaces = delete_namespace(&e).await;
    wait_for("the namespace gone", || gone(namespaces.clone(), &e.ns)).await;
    assert!(e.members("Team").is_empty(), "every grant revoked");
    assert_eq!(deletes(&e), before + 3);
    drop(operator);
    e.finish().await;
}

/// A namespace with a connector (`spec` over the defaults) and one granted single-user
/// membership per user, reconciled by an operator installed in a namespace of its own (where
/// its ownership records outlive the deleted namespace). `None` (after a skip line) where the
/// cluster cannot delete a namespace with its contents.
async fn namespace_with_grants(
    spec: serde_json::Value,
    users: &[String],
) -> Option<(E2e, Operator)> {
    let mut e = E2e::start(&fixture(users, &[("Team", &[])])).await;
    if e.server("namespace deletion with its contents").is_none() {
        e.finish().await;
        return None;
    }
    e.put_secret("okta-token", "apiToken", "token-1").await;
    e.apply_connector(CONNECTOR, spec).await;
    let home = e.create_namespace("operator").await;
    let operator = e.operator_at_home("operator", &home, &[]);
    e.wait_connector(CONNECTOR, "Ready", "True", "Synced").await;
    grant_each_in_team(&e, users).await;
    Some((e, operator))
}

/// Deletes the test's namespace (and so everything in it).
async fn delete_namespace(e: &E2e) -> Api<Namespace> {
    let namespaces: Api<Namespace> = Api::all(e.kube.clone());
    namespaces
        .delete(&e.ns, &DeleteParams::default())
        .await
        .unwrap();
    namespaces
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_deleting_a_namespace_revokes_no_more_than_the_limit_before_a_release() {
    const LIMIT: usize = 2;
    const MEMBERSHIPS: usize = 5;
    let users = logins("user", MEMBERSHIPS);
    let spec = json!({"safety": {"maxRevocationsPerHour": LIMIT}});
    let Some((e, operator)) = namespace_with_grants(spec, &users).await else {
        return;
    };
    let before = deletes(&e);
    let namespaces = delete_namespace(&e).await;
    wait_for("the rest held", || async {
        (held(&e, MEMBERSHIPS).await.len() == MEMBERSHIPS - LIMIT).then_some(())
    })
    .await;
    assert_eq!(deletes(&e) - before, LIMIT as u64, "only the limit revoked");
    assert_eq!(e.members("Team").len(), MEMBERSHIPS - LIMIT);

    // A person confirms on the terminating connector, once per window's worth.
    annotate_connector(&e, RELEASE_ANNOTATION, "first").await;
    wait_for("two more revoked", || async {
        (e.members("Team").len() == MEMBERSHIPS - 2 * LIMIT).then_some(())
    })
    .await;
    annotate_connector(&e, RELEASE_ANNOTATION, "second").await;
    wait_for("the namespace gone", || gone(namespaces.clone(), &e.ns)).await;
    assert!(e.members("Team").is_empty(), "every grant revoked");
    assert_eq!(deletes(&e) - before, MEMBERSHIPS as u64);
    drop(operator);
    e.finish().await;
}

/// One granted single-user membership `gm<i>` in Team per user.
async fn grant_each_in_team(e: &E2e, users: &[String]) {
    for (i, user) in users.iter().enumerate() {
        e.apply_membership(
            &format!("gm{i}"),
            CONNECTOR,
            "Team",
            std::slice::from_ref(user),
        )
        .await;
    }
    for i in 0..users.len() {
        e.wait_membership(&format!("gm{i}"), "Ready", "True", "Granted")
            .await;
    }
}

/// A connector with `maxRevocationsPerHour: limit`, an operator, and one granted
/// single-user membership `gm<i>` in Team per user; returns the running operator.
async fn breaker_with_granted_memberships(e: &E2e, limit: usize, users: &[String]) -> Operator {
    e.put_secret("okta-token", "apiToken", "token-1").await;
    e.apply_connector(
        CONNECTOR,
        json!({"safety": {"maxRevocationsPerHour": limit}}),
    )
    .await;
    let operator = e.operator("operator", &[]);
    e.wait_connector(CONNECTOR, "Ready", "True", "Synced").await;
    grant_each_in_team(e, users).await;
    operator
}

/// The memberships `gm0..gm{n}` whose `Ready` says their removal is held.
async fn held(e: &E2e, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("gm{i}");
        let Some(gm) = e.memberships().get_opt(&name).await.unwrap() else {
            continue;
        };
        let reason = gm.status.as_ref().and_then(|s| {
            let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
            Some(ready.reason.clone())
        });
        if reason.as_deref() == Some("RevocationHeld") {
            names.push(name);
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_the_circuit_breaker_lets_the_limit_through_and_a_person_releases_the_rest() {
    const LIMIT: usize = 5;
    const MEMBERSHIPS: usize = 12;
    let users = logins("user", MEMBERSHIPS);
    let e = E2e::start(&fixture(&users, &[("Team", &[])])).await;
    let operator = breaker_with_granted_memberships(&e, LIMIT, &users).await;
    let before = deletes(&e);
    for i in 0..MEMBERSHIPS {
        e.memberships()
            .delete(&format!("gm{i}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    // Exactly the limit goes through; every other membership shows its removal held.
    wait_for("seven removals held", || async {
        (held(&e, MEMBERSHIPS).await.len() == MEMBERSHIPS - LIMIT).then_some(())
    })
    .await;
    assert_eq!(deletes(&e) - before, LIMIT as u64);
    assert_eq!(e.members("Team").len(), MEMBERSHIPS - LIMIT);
    e.wait_connector(CONNECTOR, "RevocationsPaused", "True", "RevocationsPaused")
        .await;
    // The held count settles as the last held memberships report (each change reconciles
    // the connector again).
    wait_for("the connector counting all seven", || async {
        let connector = e.connectors().get(CONNECTOR).await.unwrap();
        let status = connector.status?;
        let paused = status
            .conditions
            .iter()
            .find(|c| c.type_ == "RevocationsPaused")?;
        paused
            .message
            .starts_with("7 removal(s) held: 5 done")
            .then_some(())
    })
    .await;
    e.wait_event(CONNECTOR, "Warning", "RevocationsPaused")
        .await;

    // One release: one more window's worth (5), two still held.
    annotate_connector(&e, RELEASE_ANNOTATION, "first").await;
    wait_for("five more revoked", || async {
        (e.members("Team").len() == MEMBERSHIPS - 2 * LIMIT).then_some(())
    })
    .await;
    wait_for("two removals held", || async {
        (held(&e, MEMBERSHIPS).await.len() == MEMBERSHIPS - 2 * LIMIT).then_some(())
    })
    .await;
    assert_eq!(deletes(&e) - before, 2 * LIMIT as u64);

    // A second release lets the rest go; the connector stops showing the pause.
    annotate_connector(&e, RELEASE_ANNOTATION, "second").await;
    wait_for("every membership gone", || async {
        let left = e.memberships().list(&Default::default()).await.unwrap();
        left.items.is_empty().then_some(())
    })
    .await;
    assert!(e.members("Team").is_empty());
    assert_eq!(deletes(&e) - before, MEMBERSHIPS as u64);
    e.wait_connector(
        CONNECTOR,
        "RevocationsPaused",
        "False",
        "RevocationsFlowing",
    )
    .await;
    drop(operator);
    e.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_killed_and_restarted_operator_keeps_counting_its_removals() {
    const LIMIT: usize = 3;
    const MEMBERSHIPS: usize = 2 * LIMIT;
    let users = logins("user", MEMBERSHIPS);
    let e = E2e::start(&fixture(&users, &[("Team", &[])])).await;
    let mut first = breaker_with_granted_memberships(&e, LIMIT, &users).await;
    let before = deletes(&e);
    // The limit's worth of removals, then the operator dies.
    for i in 0..LIMIT {
        let name = format!("gm{i}");
        e.memberships()
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
        wait_for("the membership revoked and gone", || {
            gone(e.memberships(), &name)
        })
        .await;
    }
    assert_eq!(deletes(&e) - before, LIMIT as u64);
    first.kill();

    // A new process starts with an empty memory: it must read the window from the connector.
    let second = e.operator("operator", &[]);
    for i in LIMIT..MEMBERSHIPS {
        e.memberships()
            .delete(&format!("gm{i}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    wait_for("the rest held after the restart", || async {
        (held(&e, MEMBERSHIPS).await.len() == MEMBERSHIPS - LIMIT).then_some(())
    })
    .await;
    e.wait_connector(CONNECTOR, "RevocationsPaused", "True", "RevocationsPaused")
        .await;
    assert_eq!(
        deletes(&e) - before,
        LIMIT as u64,
        "no removal beyond the limit across the restart"
    );
    assert_eq!(e.members("Team").len(), MEMBERSHIPS - LIMIT);

    // A person releases them.
    annotate_connector(&e, RELEASE_ANNOTATION, "after-restart").await;
    wait_for("every membership gone", || async {
        let left = e.memberships().list(&Default::default()).await.unwrap();
        left.items.is_empty().then_some(())
    })
    .await;
    assert!(e.members("Team").is_empty());
    assert_eq!(deletes(&e) - before, MEMBERSHIPS as u64);
    drop(second);
    e.finish().await;
}
