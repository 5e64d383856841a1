//! End to end: the `run` binary brings a connector to Ready, reports Secret and token problems,
//! picks up a rotated token without a restart, and never writes a spec (which Argo CD would see
//! as drift from Git).

use crate::e2e_support;

use e2e_support::{E2e, fixture, logins, wait_for};
use okta_ciam_operator::crd::{FIELD_MANAGER, OktaCiamConnector};
use serde_json::{Value, json};

const CONNECTOR: &str = "corp";

fn org() -> String {
    let users = logins("user", 4);
    fixture(
        &users,
        &[
            ("Engineering", &users[..3]),
            ("Sales", &users[2..]),
            ("Empty", &[]),
        ],
    )
}

/// Evaluates the simple JSONPaths used by printer columns: `.a.b` and
/// `.list[?(@.key=="value")].field`.
fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let step = regex::Regex::new(r#"\.(\w+)(?:\[\?\(@\.(\w+)=="([^"]*)"\)\])?"#).unwrap();
    let steps: Vec<_> = step.captures_iter(path).collect();
    let covered: usize = steps.iter().map(|c| c[0].len()).sum();
    assert_eq!(covered, path.len(), "unsupported JSONPath {path}");
    steps.iter().try_fold(obj, |node, c| {
        let child = node.get(&c[1])?;
        match (c.get(2), c.get(3)) {
            (Some(key), Some(value)) => child
                .as_array()?
                .iter()
                .find(|item| item[key.as_str()] == value.as_str()),
            _ => Some(child),
        }
    })
}

/// Every `additionalPrinterColumns` value of `obj` (`kubectl get` columns), by column name.
fn printer_columns(crd_file: &str, obj: &Value) -> Vec<(String, Option<Value>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/").to_owned() + crd_file;
    let crd: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|col| {
            let value = json_path(obj, col["jsonPath"].as_str().unwrap()).cloned();
            (col["name"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

/// (users, groups, memberships) the emulated org holds for `example.com` addresses.
fn org_counts(e: &E2e) -> (i64, i64, i64) {
    let state = e.okta.state_json();
    let in_scope: Vec<&str> = state["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["login"].as_str().unwrap().ends_with("@example.com"))
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    let groups = state["groups"].as_array().unwrap();
    let memberships = groups
        .iter()
        .flat_map(|g| g["members"].as_array().unwrap())
        .filter(|m| in_scope.contains(&m.as_str().unwrap()))
        .count();
    (
        in_scope.len() as i64,
        groups.len() as i64,
        memberships as i64,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_connector_becomes_ready_with_counts_printer_columns_and_readyz() {
    let e = E2e::start(&org()).await;
    let operator = e.operator("operator", &[]);
    wait_for("/readyz to answer 200", || async {
        (operator.probe("/readyz").await == Some(200)).then_some(())
    })
    .await;
    assert_eq!(operator.probe("/healthz").await, Some(200));

    e.put_secret("okta-token", "apiToken", "token-1").await;
    e.apply_connector(CONNECTOR, json!({})).await;
    let obj = e.wait_connector(CONNECTOR, "Ready", "True", "Synced").await;
    let status = obj.status.clone().unwrap();
    assert_eq!(status.observed_generation, obj.metadata.generation);
    let counts = status.counts.expect("counts");
    let (users, groups, memberships) = org_counts(&e);
    assert_eq!(
        (counts.users, counts.groups, counts.group_memberships),
        (users, groups, memberships),
        "status counts match the org (outsider@other.org out of scope)"
    );

    let as_json = serde_json::to_value(&obj).unwrap();
    let columns = printer_columns("oktaciamconnectors.yaml", &as_json);
    for (name, value) in &columns {
        assert!(value.is_some(), "column {name} is empty: {columns:?}");
    }
    let column = |name: &str| columns.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(column("Ready"), Some(json!("True")));
    assert_eq!(column("Users"), Some(json!(users)));
    assert_eq!(column("Domain"), Some(json!(e.okta.domain())));

    let metrics = reqwest::get(format!("http://{}/metrics", operator.metrics_addr().await))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(CONNECTOR), "{metrics}");

    let (exit, logs) = operator.terminate().await;
    assert!(exit.success(), "{exit:?}: {logs:?}");
    assert!(logs.iter().any(|l| l.contains("sync finished")), "{logs:?}");
    assert!(
        !logs.iter().any(|l| l.contains("token-1")),
        "the token leaked into the logs"
    );
    e.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_bad_secret_revoked_and_rotated_token_without_restart() {
    let e = E2e::start(&org()).await;
    let mut operator = e.operator("operator", &[]);
    e.put_secret("okta-token", "wrongKey", "token-1").await;
    e.apply_connector(CONNECTOR, json!({})).await;
    e.wait_connector(CONNECTOR, "CredentialsValid", "False", "SecretKeyMissing")
        .await;
    e.wait_connector(CONNECTOR, "Ready", "False", "SecretKeyMissing")
        .await;
    assert_eq!(
        e.okta.stats().requests.total,
        0,
        "no Okta call without a token"
    );

    e.put_secret("okta-token", "apiToken", "token-1").await;
    e.wait_connector(CONNECTOR, "Ready", "True", "Synced").await;

    assert!(e.okta.revoke_token("token-1"));
    // A spec change makes a sync due at once; it meets the revoked token.
    e.apply_connector(CONNECTOR, json!({"syncInterval": "2h"}))
        .await;
    let obj: OktaCiamConnector = e
        .wait_connector(CONNECTOR, "Ready", "False", "Unauthorized")
        .await;
    let cred = obj.status.unwrap().conditions;
    assert!(
        cred.iter().any(|c| c.type_ == "CredentialsValid"
            && c.status == "False"
            && c.reason == "Unauthorized"),
        "{cred:?}"
    );
    e.wait_event(CONNECTOR, "Warning", "Unauthorized").await;

    // Rotation: Okta accepts a new token, the Secret gets it; the same process recovers.
    assert!(e.okta.add_token("token-2"));
    e.put_secret("okta-token", "apiToken", "token-2").await;
    e.wait_connector(CONNECTOR, "Ready", "True", "Synced").await;
    e.wait_event(CONNECTOR, "Normal", "Recovered").await;
    assert!(operator.is_running(), "recovered without a restart");
    let starts = operator
        .logs()
        .iter()
        .filter(|l| l.contains("serving /metrics"))
        .count();
    assert_eq!(starts, 1);

    // Neither token, old or new, reached Events, status or logs along the way.
    let events: Vec<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(e.kube.clone(), &e.ns)
            .list(&Default::default())
            .await
            .unwrap()
            .items;
    let connector: OktaCiamConnector = kube::Api::namespaced(e.kube.clone(), &e.ns)
        .get(CONNECTOR)
        .await
        .unwrap();
    let published = format!(
        "{}{}{}",
        serde_json::to_string(&events).unwrap(),
        serde_json::to_string(&connector.status).unwrap(),
        operator.logs().join("\n")
    );
    for token in ["token-1", "token-2"] {
        assert!(!published.contains(token), "{token} leaked: {published}");
    }
    operator.kill();
    e.finish().await;
}

/// (manager, subresource, owns something under `spec`) of every managedFields entry.
fn field_owners(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Vec<(String, String, bool)> {
    meta.managed_fields
        .iter()
        .flatten()
        .map(|m| {
            let fields = m
                .fields_v1
                .as_ref()
                .map(|f| f.0.clone())
                .unwrap_or_default();
            (
                m.manager.clone().unwrap_or_default(),
                m.subresource.clone().unwrap_or_default(),
                fields.get("f:spec").is_some(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_the_operator_writes_status_and_metadata_but_never_spec() {
    let users = logins("user", 2);
    let e = E2e::start(&fixture(&users, &[("Team", &[])])).await;
    let operator = e.operator("operator", &[]);
    e.put_secret("okta-token", "apiToken", "token-1").await;
    e.apply_connector(CONNECTOR, json!({})).await;
    e.wait_connector(CONNECTOR, "Ready", "True", "Synced").await;
    e.apply_membership("team", CONNECTOR, "Team", &users).await;
    let membership = e.wait_membership("team", "Ready", "True", "Granted").await;
    let connector = e.connectors().get(CONNECTOR).await.unwrap();
    drop(operator);
    for (what, meta) in [
        ("connector", &connector.metadata),
        ("membership", &membership.metadata),
    ] {
        let owners = field_owners(meta);
        // The operator did write this object (its status), so the check below is not vacuous.
        assert!(
            owners
                .iter()
                .any(|(m, sub, _)| m == FIELD_MANAGER && sub == "status"),
            "{what}: no status entry of {FIELD_MANAGER}: {owners:?}"
        );
        // Only the test's own apply (standing in for Argo CD) owns spec fields.
        let spec_owners: Vec<&(String, String, bool)> =
            owners.iter().filter(|(_, _, spec)| *spec).collect();
        assert!(
            spec_owners.iter().all(|(m, _, _)| m == "e2e-test") && !spec_owners.is_empty(),
            "{what}: spec owned by {spec_owners:?}"
        );
    }
    e.finish().await;
}
