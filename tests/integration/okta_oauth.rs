//! OAuth 2.0 service-app auth over real HTTP against the emulator: `private_key_jwt`
//! assertions (good, expired, replayed, wrong key), DPoP (missing proof, nonce challenge),
//! the token cache (one fetch for concurrent calls, renewal when a token expires mid-sync),
//! scopes per endpoint, key formats and rotation, and that no key or token reaches logs or
//! errors.

use crate::log_capture;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use log_capture::CapturedLogs;
use okta_ciam_operator::okta::oauth::{self, ASSERTION_TYPE, OAuthAuth, OAuthConfig, PrivateKey};
use okta_ciam_operator::okta::{
    ClientOptions, DomainPolicy, Error, OktaClient, OrgDomain, UserQuery,
};
use okta_emulator::{EmulatorConfig, EmulatorHandle, Fixture, FixtureServiceApp};
use serde_json::{Map, Value, json};

const APP: &str = "0oaServiceApp1";
const NARROW_APP: &str = "0oaNarrowApp1";
const KID: &str = "key-1";

const ORG: &str = r#"
users:
  - {login: alice@example.com}
  - {login: bob@example.com}
  - {login: carol@example.com}
groups:
  - {name: Engineering, members: [alice@example.com]}
"#;

fn all_scopes() -> Vec<String> {
    oauth::scopes::needed(true, true)
}

fn app(client_id: &str, key: &PrivateKey, scopes: Vec<String>) -> FixtureServiceApp {
    let mut jwk = key.public_jwk();
    jwk["kid"] = KID.into();
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    FixtureServiceApp::new(client_id, vec![jwk], &scopes)
}

/// An emulator with two service apps sharing `key`: one granted every scope the operator
/// uses, one without `okta.roles.read`.
async fn start(key: &PrivateKey) -> EmulatorHandle {
    let mut fixture = Fixture::from_yaml(ORG).unwrap();
    let narrow: Vec<String> = all_scopes()
        .into_iter()
        .filter(|s| s != oauth::scopes::ROLES_READ)
        .collect();
    fixture.service_apps = vec![app(APP, key, all_scopes()), app(NARROW_APP, key, narrow)];
    okta_emulator::start(EmulatorConfig::new(fixture))
        .await
        .unwrap()
}

fn domain(emu: &EmulatorHandle) -> OrgDomain {
    let policy = DomainPolicy {
        insecure_loopback_http: true,
        ..DomainPolicy::default()
    };
    OrgDomain::parse(&emu.domain(), &policy).unwrap()
}

fn options() -> ClientOptions {
    ClientOptions {
        retry_base_delay: Duration::from_millis(10),
        retry_max_delay: Duration::from_millis(50),
        request_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

fn client(
    emu: &EmulatorHandle,
    client_id: &str,
    key: PrivateKey,
    scopes: Vec<String>,
) -> (OktaClient, Arc<OAuthAuth>) {
    let config = OAuthConfig {
        client_id: client_id.into(),
        key,
        key_id: Some(KID.into()),
        scopes,
    };
    let auth = Arc::new(OAuthAuth::new(&domain(emu), config, Duration::from_secs(10)).unwrap());
    let client = OktaClient::new(domain(emu), auth.clone(), options()).unwrap();
    (client, auth)
}

fn copy(pem: &str) -> PrivateKey {
    PrivateKey::parse(pem).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A hand-made token request, to send assertions the client would never make.
struct RawTokenRequest {
    token_url: url::Url,
    dpop: PrivateKey,
    http: reqwest::Client,
}

impl RawTokenRequest {
    fn new(emu: &EmulatorHandle) -> Self {
        RawTokenRequest {
            token_url: emu.url().join("oauth2/v1/token").unwrap(),
            dpop: PrivateKey::generate_es256().0,
            http: reqwest::Client::new(),
        }
    }

    fn assertion(&self, key: &PrivateKey, iat: u64, jti: &str) -> String {
        let mut header = Map::new();
        header.insert("kid".into(), KID.into());
        let claims = oauth::assertion_claims(APP, &self.token_url, iat, jti);
        key.sign_jwt(header, &claims).unwrap()
    }

    /// Posts `assertion` with a DPoP proof (carrying `nonce` when given), or without one.
    async fn send(
        &self,
        assertion: &str,
        proof: bool,
        nonce: Option<&str>,
    ) -> (u16, Option<String>, Value) {
        let mut request = self.http.post(self.token_url.clone()).form(&[
            ("grant_type", "client_credentials"),
            ("scope", "okta.users.read"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ]);
        if proof {
            let mut header = Map::new();
            header.insert("typ".into(), "dpop+jwt".into());
            header.insert("jwk".into(), self.dpop.public_jwk());
            let jti = format!("proof-{}", rand::random::<u64>());
            let claims = oauth::dpop_claims(
                &http::Method::POST,
                &self.token_url,
                now(),
                &jti,
                None,
                nonce,
            );
            request = request.header("DPoP", self.dpop.sign_jwt(header, &claims).unwrap());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let nonce = response
            .headers()
            .get("dpop-nonce")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, nonce, response.json().await.unwrap())
    }
}

#[tokio::test]
async fn good_assertion_answers_the_nonce_challenge_and_one_token_serves_concurrent_calls_and_renewals()
 {
    let (key, _) = PrivateKey::generate_es256();
    let emu = start(&key).await;
    let (client, auth) = client(&emu, APP, key, all_scopes());
    let calls = (0..12).map(|_| client.get_org());
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // One nonce challenge, then one token for all twelve calls.
    assert_eq!(auth.token_requests(), 2);
    assert_eq!(emu.oauth_counts(), (2, 1));
    // Later calls reuse it.
    let users: Vec<_> = client
        .list_users(&UserQuery::default())
        .try_concat()
        .await
        .unwrap();
    assert_eq!(users.len(), 3);
    assert_eq!(emu.oauth_counts(), (2, 1));
    // When the token lapses under twelve calls at once, their 401s renew it once.
    emu.expire_access_tokens();
    let results = futures::future::join_all((0..12).map(|_| client.get_org())).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(emu.oauth_counts().1, 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn rsa_and_jwk_keys_sign_assertions_okta_accepts() {
    let data = |f: &str| {
        std::fs::read_to_string(format!(
            "{}/tests/data/oauth/{f}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    for (file, alg) in [
        ("rsa-test-key.pem", "RS256"),
        ("rsa-test-key-pkcs1.pem", "RS256"),
        ("rsa-test-key.jwk.json", "RS256"),
        ("ec-test-key.jwk.json", "ES256"),
    ] {
        let key = PrivateKey::parse(&data(file)).unwrap();
        assert_eq!(key.alg().as_str(), alg, "{file}");
        let emu = start(&key).await;
        let (client, _) = client(
            &emu,
            APP,
            PrivateKey::parse(&data(file)).unwrap(),
            all_scopes(),
        );
        client
            .get_org()
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn expired_assertion_is_refused() {
    let (key, _) = PrivateKey::generate_es256();
    let emu = start(&key).await;
    let raw = RawTokenRequest::new(&emu);
    // Issued ten minutes ago with the five-minute lifetime: expired five minutes ago.
    let assertion = raw.assertion(&key, now() - 600, "expired-1");
    let (status, _, body) = raw.send(&assertion, true, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    assert_eq!(emu.oauth_counts().1, 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn replayed_jti_is_refused_and_missing_proof_is_refused() {
    let (key, _) = PrivateKey::generate_es256();
    let emu = start(&key).await;
    let raw = RawTokenRequest::new(&emu);
    let assertion = raw.assertion(&key, now(), "jti-once");
    // No DPoP proof at all: refused before the assertion is spent.
    let (status, _, body) = raw.send(&assertion, false, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{body}"
    );
    // A proof without the nonce: challenged, assertion still unspent.
    let (status, nonce, body) = raw.send(&assertion, true, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("use_dpop_nonce")),
        "{body}"
    );
    let nonce = nonce.expect("the challenge carries DPoP-Nonce");
    let (status, _, body) = raw.send(&assertion, true, Some(&nonce)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(body["expires_in"], 3600);
    // The same assertion again (fresh proof): its jti was used.
    let (status, _, body) = raw.send(&assertion, true, Some(&nonce)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already been used"),
        "{body}"
    );

    // A DPoP-bound token used without a proof on a resource request.
    let token = {
        let a = raw.assertion(&key, now(), "jti-two");
        raw.send(&a, true, Some(&nonce)).await.2["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let response = reqwest::Client::new()
        .get(emu.url().join("api/v1/org").unwrap())
        .header("Authorization", format!("DPoP {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("invalid_dpop_proof"), "{challenge}");
    emu.shutdown().await;
}

#[tokio::test]
async fn wrong_key_is_unauthorized_and_nothing_secret_is_logged() {
    let (registered, _) = PrivateKey::generate_es256();
    let emu = start(&registered).await;
    let (other, other_pem) = PrivateKey::generate_es256();
    let logs = CapturedLogs::start();
    let (client, auth) = client(&emu, APP, other, all_scopes());
    let err = client.get_org().await.unwrap_err();
    let Error::Unauthorized(info) = &err else {
        panic!("expected Unauthorized, got {err:?}");
    };
    assert_eq!(info.error_code.as_deref(), Some("invalid_client"));
    assert!(err.to_string().contains("signature is invalid"), "{err}");
    // Refused credentials are not retried (the signature is checked before the DPoP nonce).
    assert_eq!(auth.token_requests(), 1);
    let body: String = other_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for text in [
        format!("{err}"),
        format!("{err:?}"),
        format!("{auth:?}"),
        logs.text(),
    ] {
        assert!(
            !text.contains(&body[..40]) && !text.contains("PRIVATE KEY"),
            "{text}"
        );
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn token_expiring_mid_sync_is_renewed_once_and_never_logged() {
    let (key, _) = PrivateKey::generate_es256();
    let emu = start(&key).await;
    let logs = CapturedLogs::start();
    let (client, _) = client(&emu, APP, key, all_scopes());
    let query = UserQuery {
        limit: Some(1),
        ..UserQuery::default()
    };
    let mut pages = client.list_users(&query);
    let first = pages.try_next().await.unwrap().unwrap();
    assert_eq!(first.len(), 1);
    emu.expire_access_tokens();
    let rest: Vec<_> = pages.try_concat().await.unwrap();
    assert_eq!(rest.len(), 2);
    // Two tokens: the first, and one after the 401 on the second page.
    assert_eq!(emu.oauth_counts().1, 2);
    assert_eq!(client.stats().requests_by_status.get(&401), Some(&1));
    let text = logs.text();
    assert!(
        !text.contains("DPoP ey") && !text.contains("access_token"),
        "{text}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn missing_scope_is_named_per_endpoint_and_ungranted_scope_at_the_token_endpoint() {
    let (key, pem) = PrivateKey::generate_es256();
    let emu = start(&key).await;
    let narrow: Vec<String> = all_scopes()
        .into_iter()
        .filter(|s| s != oauth::scopes::ROLES_READ)
        .collect();
    let (client_narrow, _) = client(&emu, NARROW_APP, key, narrow);
    client_narrow.get_org().await.unwrap();
    let user = client_narrow.get_user("alice@example.com").await.unwrap();
    let err = client_narrow.list_user_roles(&user.id).await.unwrap_err();
    match &err {
        Error::InsufficientScope { scope, info } => {
            assert_eq!(scope, "okta.roles.read");
            assert_eq!(info.status, 403);
        }
        other => panic!("expected InsufficientScope, got {other:?}"),
    }
    assert!(
        err.to_string().contains("lacks scope okta.roles.read"),
        "{err}"
    );
    // Asking for a scope the app was not granted fails at the token endpoint.
    let (client_greedy, _) = client(&emu, NARROW_APP, copy(&pem), all_scopes());
    let err = client_greedy.get_org().await.unwrap_err();
    assert!(matches!(err, Error::ScopeNotGranted(_)), "{err:?}");
    assert!(err.to_string().contains("okta.roles.read"), "{err}");
    emu.shutdown().await;
}

#[tokio::test]
async fn rotated_key_works_once_registered_and_the_old_one_stops() {
    let (old, old_pem) = PrivateKey::generate_es256();
    let emu = start(&old).await;
    let (new, new_pem) = PrivateKey::generate_es256();
    let mut jwk = new.public_jwk();
    jwk["kid"] = KID.into();
    assert!(emu.set_service_app_keys(APP, vec![jwk]));
    let (with_new, _) = client(&emu, APP, copy(&new_pem), all_scopes());
    with_new.get_org().await.unwrap();
    let (with_old, _) = client(&emu, APP, copy(&old_pem), all_scopes());
    assert!(matches!(
        with_old.get_org().await,
        Err(Error::Unauthorized(_))
    ));
    assert!(!emu.set_service_app_keys("0oaUnknown", vec![json!({})]));
    emu.shutdown().await;
}
