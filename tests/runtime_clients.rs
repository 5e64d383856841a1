//! The client registry with real Okta clients against the Okta emulator on loopback: both
//! reconcilers get the same client (one budget, one set of counters), rotation rebuilds it,
//! and its statistics reach the metrics endpoint's text.

use std::sync::Arc;

use okta_ciam_operator::controller::runtime::clients::{ClientRegistry, ConnectorKey, Obtained};
use okta_ciam_operator::controller::runtime::metrics::Metrics;
use okta_ciam_operator::emulator::{self, EmulatorConfig, GenerateSpec};
use okta_ciam_operator::okta::{ApiToken, ClientOptions, DomainPolicy, OrgDomain};

#[tokio::test]
async fn one_shared_client_per_connector_against_the_emulator() {
    let spec: GenerateSpec =
        "users=5,groups=3,memberships-per-user=1,admins=1,custom-roles=0,domains=example.com"
            .parse()
            .unwrap();
    let org = emulator::start(EmulatorConfig::new(emulator::Fixture::generate(&spec, 7)))
        .await
        .unwrap();
    let policy = DomainPolicy {
        allowed_suffixes: vec![],
        insecure_loopback_http: true,
    };
    let domain = OrgDomain::parse(&org.domain(), &policy).unwrap();
    let token = ApiToken::new(org.token());
    let registry: Arc<ClientRegistry> = Arc::new(ClientRegistry::new());
    let key = ConnectorKey::new("team-a", "corp");

    // The connector reconciler builds the client and syncs through it.
    let (sync_client, obtained) = registry
        .okta_client(&key, &domain, &token, ClientOptions::default())
        .unwrap();
    assert_eq!(obtained, Obtained::Built);
    sync_client.get_org().await.unwrap();

    // The membership reconciler reads the same client: it sees the same counters.
    let shared = registry.client(&key).expect("client registered");
    assert_eq!(shared.stats().requests, 1);
    shared.get_org().await.unwrap();
    assert_eq!(sync_client.stats().requests, 2, "one client, one budget");

    // The same settings reuse; a rotated token rebuilds (fresh counters).
    let (_, obtained) = registry
        .okta_client(&key, &domain, &token, ClientOptions::default())
        .unwrap();
    assert_eq!(obtained, Obtained::Reused);
    let rotated = ApiToken::new("rotated-token".into());
    let (rebuilt, obtained) = registry
        .okta_client(&key, &domain, &rotated, ClientOptions::default())
        .unwrap();
    assert!(
        matches!(obtained, Obtained::Rebuilt(change) if change.token && !change.domain),
        "{obtained:?}"
    );
    assert_eq!(rebuilt.stats().requests, 0);

    // Statistics deltas feed the metrics.
    let metrics = Metrics::new();
    metrics.record_client_stats(&sync_client.stats().since(&Default::default()));
    let text = metrics.encode();
    assert!(
        text.contains(r#"okta_ciam_okta_requests_total{family="org"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"okta_ciam_okta_responses_total{status="200"} 2"#),
        "{text}"
    );

    // Deleting the connector forgets it.
    assert!(registry.remove(&key));
    assert!(registry.client(&key).is_none());
    org.shutdown().await;
}
