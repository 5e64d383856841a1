//! The client registry with real Okta clients against the Okta emulator on loopback: both
//! reconcilers get the same client (one budget, one set of counters), rotation rebuilds it,
//! and its statistics reach the metrics endpoint's text.

use std::sync::Arc;

use okta_ciam_operator::controller::runtime::clients::{ClientRegistry, ConnectorKey, Obtained};
use okta_ciam_operator::controller::runtime::metrics::Metrics;
use okta_ciam_operator::okta::{ApiToken, ClientOptions, DomainPolicy, OrgDomain};
use okta_emulator::{self as emulator, EmulatorConfig, Faults, GenerateSpec, RateLimits};

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

/// Two connectors on one org share its concurrency bound: with the smaller `maxConcurrency`
/// (4) applying to both, an org that answers 429 above 4 requests in flight never does, even
/// with both connectors sending at once. With a bound each (4 + 8) it would.
#[tokio::test]
async fn connectors_on_one_org_share_one_concurrency_bound() {
    let spec: GenerateSpec =
        "users=5,groups=3,memberships-per-user=1,admins=1,custom-roles=0,domains=example.com"
            .parse()
            .unwrap();
    let mut config = EmulatorConfig::new(emulator::Fixture::generate(&spec, 7));
    config.rate_limits = RateLimits {
        concurrency: 4,
        ..RateLimits::default()
    };
    let org = emulator::start(config).await.unwrap();
    // Requests linger, so all of them would overlap unless the client holds them back.
    org.set_faults(Faults {
        latency_ms: 100,
        ..Faults::default()
    });
    let policy = DomainPolicy {
        allowed_suffixes: vec![],
        insecure_loopback_http: true,
    };
    let domain = OrgDomain::parse(&org.domain(), &policy).unwrap();
    let second_token = "second-connector-token";
    org.add_token(second_token);
    let registry: ClientRegistry = ClientRegistry::new();
    let options = |max_concurrency, budget_percent| ClientOptions {
        max_concurrency,
        budget_percent,
        ..ClientOptions::default()
    };
    let (a, _) = registry
        .okta_client(
            &ConnectorKey::new("team-a", "corp"),
            &domain,
            &ApiToken::new(org.token()),
            options(4, 50),
        )
        .unwrap();
    let (b, _) = registry
        .okta_client(
            &ConnectorKey::new("team-b", "corp"),
            &domain,
            &ApiToken::new(second_token.into()),
            options(8, 30),
        )
        .unwrap();
    assert!(a.budget().same_as(b.budget()));
    let budget = registry.org_budget(&domain.to_string()).unwrap();
    assert_eq!(budget.limits(), (4, 30), "the smallest of each applies");

    let calls = (0..8)
        .flat_map(|_| [a.clone(), b.clone()])
        .map(|c| async move { c.get_org().await });
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(org.stats().requests.total, 16);
    assert_eq!(
        org.stats().rate_limited,
        0,
        "never above the org's 4 in flight"
    );
    assert_eq!(a.stats().requests + b.stats().requests, 16);
    org.shutdown().await;
}
