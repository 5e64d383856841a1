//! End to end with OAuth: the `run` binary moves a provisioning connector from
//! `tokenSecretRef` to `auth.oauth` with one spec change and keeps its ownership record and
//! grants; then a key rotated through the Secret, a missing scope and an unreadable key, each
//! reported as its condition, with no key in Events, status or logs.

use crate::e2e_support;
use crate::support;

use e2e_support::{E2e, fixture, logins};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use okta_ciam_operator::crd::OktaCiamConnector;
use okta_ciam_operator::okta::PrivateKey;
use okta_ciam_operator::okta::oauth::scopes;
use serde_json::{Value, json};

const CONNECTOR: &str = "corp";
const APP: &str = "0oaOperatorApp";

/// The org: users `user-00..03`, `user-00` already in Engineering, and one service app
/// with `key`'s public key and every scope the operator uses.
fn org(key: &PrivateKey) -> String {
    let users = logins("user", 4);
    let scopes: Vec<String> = scopes::needed(true, true);
    format!(
        "{}serviceApps:\n  - {{clientId: {APP}, jwks: [{}], scopes: [{}]}}\n",
        fixture(&users, &[("Engineering", &users[..1])]),
        key.public_jwk(),
        scopes.join(", ")
    )
}

/// The connector's spec as the test's Git would hold it: OAuth instead of the token.
fn oauth_connector(e: &E2e, oauth: Value) -> Value {
    let spec = json!({
        "domain": e.okta.domain(),
        "auth": {"oauth": oauth},
        "emailDomains": ["example.com"],
        "syncInterval": "1h",
        "provisioning": true,
    });
    support::connector_json(CONNECTOR, spec, json!({}))
}

async fn apply_oauth(e: &E2e, oauth: Value) {
    support::apply(
        &e.connectors(),
        "e2e-test",
        CONNECTOR,
        &oauth_connector(e, oauth),
    )
    .await;
}

/// The ownership records in the operator's namespace (the test namespace here).
async fn records(e: &E2e) -> Vec<String> {
    Api::<ConfigMap>::namespaced(e.kube.clone(), &e.ns)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=okta-ciam-operator"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|cm| cm.data.and_then(|d| d.get("record").cloned()))
        .collect()
}

fn key_body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()[..48]
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_token_to_oauth_keeps_grants_then_rotation_scope_and_bad_key_are_reported() {
    let (key, pem) = PrivateKey::generate_es256();
    let e = E2e::start(&org(&key)).await;
    let mut operator = e.operator("operator", &[]);
    let users = logins("user", 4);
    let ids =
        |idx: &[usize]| e.user_ids(&idx.iter().map(|i| users[*i].clone()).collect::<Vec<_>>());

    // With the API token: grant user-01 and user-02 (user-00 was a member before).
    e.put_secret("okta-token", "apiToken", "token-1").await;
    e.apply_connector(CONNECTOR, json!({})).await;
    e.wait_connector(CONNECTOR, "Ready", "True", "Synced").await;
    e.apply_membership("eng", CONNECTOR, "Engineering", &users[1..3])
        .await;
    e.wait_membership("eng", "Ready", "True", "Granted").await;
    assert_eq!(e.members("Engineering"), ids(&[0, 1, 2]));
    let record = records(&e).await;
    assert_eq!(record.len(), 1, "{record:?}");

    // One spec change: auth.oauth instead of tokenSecretRef (scopes left to the default).
    // A merge patch, as `kubectl patch` sends it: the test server keeps the defaulted
    // `tokenSecretRef.key` when an apply merely leaves `tokenSecretRef` out.
    e.put_secret("okta-key", "privateKey", &pem).await;
    let oauth = json!({"clientId": APP, "privateKeySecretRef": {"name": "okta-key"}});
    e.connectors()
        .patch(
            CONNECTOR,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tokenSecretRef": null, "auth": {"oauth": oauth}}})),
        )
        .await
        .unwrap();
    let obj: OktaCiamConnector = e.wait_connector(CONNECTOR, "Ready", "True", "Synced").await;
    assert!(obj.spec.token_secret_ref.is_none());
    e.wait_event(CONNECTOR, "Normal", "CredentialsChanged")
        .await;
    assert!(
        e.okta.oauth_counts().1 >= 1,
        "the connector got an access token"
    );
    // From here on only OAuth works.
    assert!(e.okta.revoke_token("token-1"));
    assert_eq!(
        records(&e).await,
        record,
        "the ownership record is untouched"
    );

    // The grants made with the token are still the operator's: user-02 is revoked when no
    // longer declared, user-03 granted, user-00 (preexisting) left alone.
    let writes = e.okta_writes();
    e.apply_membership(
        "eng",
        CONNECTOR,
        "Engineering",
        &[users[1].clone(), users[3].clone()],
    )
    .await;
    e2e_support::wait_for("user-02 revoked, user-03 granted", || async {
        (e.members("Engineering") == ids(&[0, 1, 3])).then_some(())
    })
    .await;
    assert_eq!(e.okta_writes() - writes, 2);
    e.memberships()
        .delete("eng", &DeleteParams::default())
        .await
        .unwrap();
    e2e_support::wait_for("membership deleted", || async {
        e.memberships()
            .get_opt("eng")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        e.members("Engineering"),
        ids(&[0]),
        "only the operator's grants went"
    );
    assert!(records(&e).await.is_empty());

    // Key rotation: Okta gets the new public key, the Secret the new private key.
    let (new_key, new_pem) = PrivateKey::generate_es256();
    let issued = e.okta.oauth_counts().1;
    assert!(e.okta.set_service_app_keys(APP, vec![new_key.public_jwk()]));
    e.put_secret("okta-key", "privateKey", &new_pem).await;
    e2e_support::wait_for("a token for the rotated key", || async {
        (e.okta.oauth_counts().1 > issued).then_some(())
    })
    .await;
    e.wait_connector(CONNECTOR, "CredentialsValid", "True", "Synced")
        .await;

    // Without okta.roles.read the sync fails naming the scope.
    let narrow: Vec<String> = scopes::needed(true, true)
        .into_iter()
        .filter(|s| s != scopes::ROLES_READ)
        .collect();
    apply_oauth(
        &e,
        json!({"clientId": APP, "privateKeySecretRef": {"name": "okta-key"}, "scopes": narrow}),
    )
    .await;
    let obj = e
        .wait_connector(CONNECTOR, "Ready", "False", "InsufficientScope")
        .await;
    let conditions = obj.status.unwrap().conditions;
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert!(
        ready.message.contains("lacks scope okta.roles.read"),
        "{}",
        ready.message
    );
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "CredentialsValid" && c.reason == "InsufficientScope")
    );
    e.wait_event(CONNECTOR, "Warning", "InsufficientScope")
        .await;

    // A Secret that holds no usable key.
    let garbage = "-----BEGIN PRIVATE KEY-----\nU0VDUkVUS0VZTUFURVJJQUwxMjM0NTY3ODkw\n-----END PRIVATE KEY-----\n";
    e.put_secret("okta-key", "privateKey", garbage).await;
    let obj = e
        .wait_connector(CONNECTOR, "Ready", "False", "InvalidKey")
        .await;
    let ready = obj
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(ready.message.contains("\"okta-key\""), "{}", ready.message);
    e.wait_event(CONNECTOR, "Warning", "InvalidKey").await;

    // No key, old, new or broken, reached Events, status or logs.
    let events: Vec<k8s_openapi::api::events::v1::Event> = Api::namespaced(e.kube.clone(), &e.ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let connector = e.connectors().get(CONNECTOR).await.unwrap();
    let published = format!(
        "{}{}{}",
        serde_json::to_string(&events).unwrap(),
        serde_json::to_string(&connector.status).unwrap(),
        operator.logs().join("\n")
    );
    for secret in [
        key_body(&pem),
        key_body(&new_pem),
        "U0VDUkVUS0VZTUFURVJJQUwx".to_owned(),
    ] {
        assert!(!published.contains(&secret), "{secret} leaked");
    }
    operator.kill();
    e.finish().await;
}
