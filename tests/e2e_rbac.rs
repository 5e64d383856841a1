//! RBAC least privilege, measured: one leader-elected operator process goes through the
//! connector and membership life cycle, and every (apiGroup, resource, verb) it used must be
//! granted by `manifests/install/rbac.yaml`, while every granted verb must have been used (or
//! be on the commented allow-list below).

mod e2e_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};

use e2e_support::{E2e, fixture, logins, wait_for};
use kube::api::DeleteParams;
use serde::Deserialize;
use serde_json::{Value, json};

/// (apiGroup, resource, verb).
type Grant = (String, String, String);

/// Granted but never requested, each with the reason it stays granted.
const ALLOWED_UNUSED: &[(&str, &str, &str, &str)] = &[
    // No request addresses /finalizers (the operator sets no owner references). Issue #7 asks
    // for it, and admission set-ups that check `update` on `/finalizers` when finalizers or
    // blocking owner references are written (OwnerReferencesPermissionEnforcement, as on
    // OpenShift) would otherwise refuse the membership finalizer.
    (
        "oktaciam.io",
        "oktaciamconnectors/finalizers",
        "update",
        "admission-time check only",
    ),
    (
        "oktaciam.io",
        "groupmemberships/finalizers",
        "update",
        "admission-time check only",
    ),
    // The membership reconciler reads its connector only while the connector has no index
    // (before its first sync, or after a scope change); once the index exists the facts come
    // from it. Whether a run needs the read depends on which reconcile comes first.
    (
        "oktaciam.io",
        "oktaciamconnectors",
        "get",
        "membership reconciler before the connector's first sync",
    ),
];

/// Every rule of the ClusterRole and Role in `rbac.yaml`, flattened.
fn granted() -> BTreeSet<Grant> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/install/rbac.yaml");
    let text = std::fs::read_to_string(path).expect("rbac.yaml");
    let mut out = BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc = Value::deserialize(doc).expect("rbac.yaml parses");
        if !matches!(doc["kind"].as_str(), Some("ClusterRole" | "Role")) {
            continue;
        }
        for rule in doc["rules"].as_array().expect("rules") {
            let list = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .unwrap_or_else(|| panic!("{k} in {rule}"))
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect()
            };
            for g in list("apiGroups") {
                for r in list("resources") {
                    for v in list("verbs") {
                        out.insert((g.clone(), r.clone(), v));
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_every_api_call_is_granted_and_every_grant_is_used() {
    let users = logins("user", 3);
    let e = E2e::start(&fixture(&users, &[("Team", &[])])).await;
    let Some(server) = e.server("counting the operator's requests") else {
        e.finish().await;
        return;
    };
    let operator = e.operator(
        "operator",
        &[
            "--leader-elect",
            "--lease-duration",
            "2s",
            "--lease-renew-deadline",
            "1500ms",
            "--lease-retry-period",
            "200ms",
        ],
    );
    // Connector life cycle: a missing Secret (Warning Event), then Ready.
    e.apply_connector("corp", json!({})).await;
    e.wait_connector("corp", "Ready", "False", "SecretNotFound")
        .await;
    e.put_secret("okta-token", "apiToken", "token-1").await;
    e.wait_connector("corp", "Ready", "True", "Synced").await;

    // Membership life cycle: grant, shrink (record update), delete (revoke, record deleted).
    e.apply_membership("team", "corp", "Team", &users).await;
    e.wait_membership("team", "Ready", "True", "Granted").await;
    e.apply_membership("team", "corp", "Team", &users[..1])
        .await;
    wait_for("a user revoked", || async {
        (e.members("Team") == e.user_ids(&users[..1])).then_some(())
    })
    .await;
    e.wait_membership("team", "Ready", "True", "Granted").await;
    e.memberships()
        .delete("team", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the membership deleted", || async {
        e.memberships()
            .get_opt("team")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(e.members("Team").is_empty());
    // The leader renews its Lease at least once.
    wait_for("a Lease renewal", || async {
        server
            .counters()
            .accesses_of("operator")
            .contains_key(&(
                "coordination.k8s.io".into(),
                "leases".into(),
                "update".into(),
            ))
            .then_some(())
    })
    .await;
    drop(operator);
    let used: BTreeMap<Grant, u64> = server.counters().accesses_of("operator");
    let granted = granted();
    let missing: Vec<&Grant> = used.keys().filter(|u| !granted.contains(*u)).collect();
    assert!(
        missing.is_empty(),
        "used but not granted by rbac.yaml: {missing:?}"
    );
    let allowed: BTreeSet<Grant> = ALLOWED_UNUSED
        .iter()
        .map(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    let unused: Vec<&Grant> = granted.iter().filter(|g| !used.contains_key(*g)).collect();
    eprintln!("used: {used:?}\ngranted but unused: {unused:?}");
    let unexplained: Vec<&&Grant> = unused.iter().filter(|g| !allowed.contains(**g)).collect();
    assert!(
        unexplained.is_empty(),
        "granted but never used (remove from rbac.yaml or allow-list with a reason): {unexplained:?}"
    );
    e.finish().await;
}
