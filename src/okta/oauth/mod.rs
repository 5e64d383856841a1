//! OAuth 2.0 service-app auth: client credentials with a `private_key_jwt` client assertion,
//! DPoP-bound access tokens (RFC 9449), cached until shortly before expiry and fetched once
//! for all concurrent requests.
//!
//! - [`key`]: the app's private key (PEM or JWK, ES256 or RS256) and JWS signing.
//! - [`scopes`]: the scope each Management API operation needs.
//!
//! The private key and access tokens never leave this module in text form: no `Debug`,
//! `Display` or error here includes them.

pub mod key;
pub mod scopes;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, header};
use serde_json::{Map, Value, json};
use url::Url;

use super::auth::{Auth, RequestAuth};
use super::domain::OrgDomain;
use super::error::{Error, OktaErrorInfo, Result};
pub use key::{Alg, KeyError, PrivateKey};

/// Lifetime of a client assertion. Okta accepts up to an hour; a short one limits replay.
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);
/// An access token is renewed this long before it expires (at most half its lifetime), so a
/// request never leaves with a token about to lapse.
pub const RENEW_MARGIN: Duration = Duration::from_secs(60);
/// How long after it was requested a token of `lifetime` is used before a new one is
/// fetched: [`RENEW_MARGIN`] early, or halfway for tokens shorter than two margins (pure).
pub fn renew_after(lifetime: Duration) -> Duration {
    lifetime - RENEW_MARGIN.min(lifetime / 2)
}

/// The `client_assertion_type` of `private_key_jwt`.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A service app's credentials.
#[derive(Debug)]
pub struct OAuthConfig {
    /// The app's client id (`iss` and `sub` of the assertion).
    pub client_id: String,
    /// The app's private key; its public half is registered with the app in Okta.
    pub key: PrivateKey,
    /// `kid` of the registered public key, sent in the assertion header when set.
    pub key_id: Option<String>,
    /// Scopes to request, such as `okta.users.read`.
    pub scopes: Vec<String>,
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A unique `jti`: 128 random bits.
fn new_jti() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// `base64url(SHA-256(token))`, the `ath` claim binding a DPoP proof to an access token.
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

/// The claims of a `private_key_jwt` client assertion issued at `iat` (pure).
pub fn assertion_claims(client_id: &str, token_url: &Url, iat: u64, jti: &str) -> Value {
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": token_url.as_str(),
        "iat": iat,
        "exp": iat + ASSERTION_LIFETIME.as_secs(),
        "jti": jti,
    })
}

/// The claims of a DPoP proof for `method url` (pure). `htu` drops query and fragment, as
/// RFC 9449 says; `ath` is set for resource requests, `nonce` when the server asked for one.
pub fn dpop_claims(
    method: &Method,
    url: &Url,
    iat: u64,
    jti: &str,
    ath: Option<&str>,
    nonce: Option<&str>,
) -> Value {
    let mut htu = url.clone();
    htu.set_query(None);
    htu.set_fragment(None);
    let mut claims = json!({"htm": method.as_str(), "htu": htu.as_str(), "iat": iat, "jti": jti});
    if let Some(ath) = ath {
        claims["ath"] = ath.into();
    }
    if let Some(nonce) = nonce {
        claims["nonce"] = nonce.into();
    }
    claims
}

/// The parameters of a `WWW-Authenticate` challenge such as
/// `DPoP error="insufficient_scope", scope="okta.users.read"`, names lower-cased (pure).
pub fn challenge_params(value: &str) -> Vec<(String, String)> {
    let rest = value.split_once(' ').map_or("", |(_, rest)| rest);
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            return params;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
}

/// The value of parameter `name` in the response's `WWW-Authenticate` challenges.
pub fn challenge_param(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(challenge_params)
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// An access token. Its text is private to this module and never formatted.
struct AccessToken {
    value: String,
    dpop: bool,
    ath: String,
    renew_at: Instant,
}

/// The cache: the token, and the number of tokens obtained so far (its generation).
#[derive(Default)]
struct Cache {
    token: Option<Arc<AccessToken>>,
    generation: u64,
}

/// What the token endpoint answered.
#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: u64,
}

/// OAuth error body (`error`, `error_description`).
#[derive(serde::Deserialize, Default)]
struct OAuthErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// Service-app auth for one org: implements [`Auth`] with DPoP-bound access tokens.
pub struct OAuthAuth {
    config: OAuthConfig,
    token_url: Url,
    http: reqwest::Client,
    /// The DPoP key: generated per client, never the app's key, so a leaked proof or token
    /// says nothing about the app's credentials.
    dpop: PrivateKey,
    cache: tokio::sync::Mutex<Cache>,
    /// Generation of a token Okta rejected; the next request fetches a new one.
    stale: AtomicU64,
    /// Last `DPoP-Nonce` from the token endpoint / from the resource server.
    token_nonce: Mutex<Option<String>>,
    resource_nonce: Mutex<Option<String>>,
    /// Token requests sent (nonce retries included).
    token_requests: AtomicU64,
}

impl fmt::Debug for OAuthAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthAuth")
            .field("client_id", &self.config.client_id)
            .field("scopes", &self.config.scopes)
            .finish_non_exhaustive()
    }
}

fn sensitive(text: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(text).map_err(|_| Error::InvalidArgument {
        message: "a credential header holds characters HTTP cannot carry".into(),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OAuthAuth {
    /// Auth against the org authorization server of `domain` (`/oauth2/v1/token`).
    pub fn new(domain: &OrgDomain, config: OAuthConfig, timeout: Duration) -> Result<OAuthAuth> {
        let token_url =
            domain
                .base_url()
                .join("oauth2/v1/token")
                .map_err(|e| Error::InvalidArgument {
                    message: format!("cannot build the token URL: {e}"),
                })?;
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(token_url.scheme() == "https")
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("okta-ciam-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Transport {
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(OAuthAuth {
            config,
            token_url,
            http,
            dpop: PrivateKey::generate_es256().0,
            cache: tokio::sync::Mutex::new(Cache::default()),
            stale: AtomicU64::new(0),
            token_nonce: Mutex::new(None),
            resource_nonce: Mutex::new(None),
            token_requests: AtomicU64::new(0),
        })
    }

    /// Token requests sent so far (a `use_dpop_nonce` retry counts as a second request).
    pub fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    fn proof(
        &self,
        method: &Method,
        url: &Url,
        ath: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String> {
        let mut header = Map::new();
        header.insert("typ".into(), "dpop+jwt".into());
        header.insert("jwk".into(), self.dpop.public_jwk());
        let claims = dpop_claims(method, url, unix_now(), &new_jti(), ath, nonce);
        Ok(self.dpop.sign_jwt(header, &claims)?)
    }

    fn assertion(&self) -> Result<String> {
        let mut header = Map::new();
        if let Some(kid) = &self.config.key_id {
            header.insert("kid".into(), kid.as_str().into());
        }
        let claims = assertion_claims(
            &self.config.client_id,
            &self.token_url,
            unix_now(),
            &new_jti(),
        );
        Ok(self.config.key.sign_jwt(header, &claims)?)
    }

    /// The cached token, or a new one. Holding the cache lock while fetching makes every
    /// concurrent caller wait for that one fetch instead of starting its own.
    async fn token(&self) -> Result<(Arc<AccessToken>, u64)> {
        let mut cache = self.cache.lock().await;
        let stale = self.stale.load(Ordering::Acquire) == cache.generation;
        if let Some(token) = &cache.token
            && !stale
            && Instant::now() < token.renew_at
        {
            return Ok((token.clone(), cache.generation));
        }
        cache.token = None;
        let token = Arc::new(self.fetch().await?);
        cache.generation += 1;
        cache.token = Some(token.clone());
        Ok((token, cache.generation))
    }

    /// One client-credentials exchange, answering a `use_dpop_nonce` challenge once.
    async fn fetch(&self) -> Result<AccessToken> {
        let scope = self.config.scopes.join(" ");
        let mut nonce_retried = false;
        loop {
            let nonce = lock(&self.token_nonce).clone();
            let proof = self.proof(&Method::POST, &self.token_url, None, nonce.as_deref())?;
            let assertion = self.assertion()?;
            let form = [
                ("grant_type", "client_credentials"),
                ("scope", scope.as_str()),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.as_str()),
            ];
            self.token_requests.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let response = self
                .http
                .post(self.token_url.clone())
                .header("DPoP", proof)
                .header(header::ACCEPT, "application/json")
                .form(&form)
                .send()
                .await
                .map_err(|e| Error::Transport {
                    message: format!("POST {}: {}", self.token_url.path(), e.without_url()),
                })?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            if let Some(n) = headers.get("dpop-nonce").and_then(|v| v.to_str().ok()) {
                *lock(&self.token_nonce) = Some(n.to_owned());
            }
            let body = response.bytes().await.map_err(|e| Error::Transport {
                message: format!("POST {}: {}", self.token_url.path(), e.without_url()),
            })?;
            if (200..300).contains(&status) {
                let t: TokenResponse =
                    serde_json::from_slice(&body).map_err(|e| Error::Decode {
                        message: format!("token response: {e}"),
                        request_id: None,
                    })?;
                tracing::debug!(client_id = %self.config.client_id, expires_in = t.expires_in, "obtained an OAuth access token");
                return Ok(AccessToken {
                    ath: access_token_hash(&t.access_token),
                    dpop: t.token_type.eq_ignore_ascii_case("DPoP"),
                    value: t.access_token,
                    renew_at: started + renew_after(Duration::from_secs(t.expires_in)),
                });
            }
            let err: OAuthErrorBody = serde_json::from_slice(&body).unwrap_or_default();
            if err.error.as_deref() == Some("use_dpop_nonce")
                && !nonce_retried
                && headers.contains_key("dpop-nonce")
            {
                nonce_retried = true;
                continue;
            }
            return Err(token_error(status, &headers, err));
        }
    }
}

/// The client's error for a refused token request.
fn token_error(status: u16, headers: &HeaderMap, body: OAuthErrorBody) -> Error {
    let info = OktaErrorInfo {
        status,
        error_code: body.error.clone(),
        error_summary: body.error_description,
        error_id: None,
        request_id: headers
            .get("x-okta-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    match (status, body.error.as_deref()) {
        (400 | 403, Some("invalid_scope")) => Error::ScopeNotGranted(info),
        (429, _) | (500..=599, _) => Error::from_status(info),
        // Everything else (invalid_client, invalid_dpop_proof, ...) means these credentials
        // do not work, whatever the status.
        _ => Error::Unauthorized(info),
    }
}

impl Auth for OAuthAuth {
    fn authorize<'a>(
        &'a self,
        method: &'a Method,
        url: &'a Url,
    ) -> BoxFuture<'a, Result<RequestAuth>> {
        Box::pin(async move {
            let (token, generation) = self.token().await?;
            let mut headers = HeaderMap::new();
            let scheme = if token.dpop { "DPoP" } else { "Bearer" };
            headers.insert(
                header::AUTHORIZATION,
                sensitive(&format!("{scheme} {}", token.value))?,
            );
            if token.dpop {
                let nonce = lock(&self.resource_nonce).clone();
                let proof = self.proof(method, url, Some(&token.ath), nonce.as_deref())?;
                headers.insert("dpop", sensitive(&proof)?);
            }
            Ok(RequestAuth {
                headers,
                generation,
            })
        })
    }

    fn rejected(&self, generation: u64, headers: &HeaderMap) -> bool {
        if challenge_param(headers, "error").as_deref() == Some("use_dpop_nonce")
            && let Some(n) = headers.get("dpop-nonce").and_then(|v| v.to_str().ok())
        {
            *lock(&self.resource_nonce) = Some(n.to_owned());
            return true;
        }
        // Expired or revoked: the next request fetches a new token.
        self.stale.fetch_max(generation, Ordering::AcqRel);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed_with_quotes_and_commas() {
        let p = challenge_params(
            r#"DPoP error="insufficient_scope", error_description="The access token provided does not contain the required scopes.", scope="okta.users.read",algs="ES256 RS256""#,
        );
        assert_eq!(p[0], ("error".into(), "insufficient_scope".into()));
        assert_eq!(p[2], ("scope".into(), "okta.users.read".into()));
        assert_eq!(p[3], ("algs".into(), "ES256 RS256".into()));
        assert_eq!(challenge_params("Bearer"), vec![]);
        assert_eq!(
            challenge_params("Bearer realm=x"),
            vec![("realm".into(), "x".into())]
        );
    }

    #[test]
    fn tokens_are_renewed_a_minute_early_or_halfway_when_short() {
        assert_eq!(
            renew_after(Duration::from_secs(3600)),
            Duration::from_secs(3540)
        );
        assert_eq!(
            renew_after(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        assert_eq!(renew_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn claims_follow_the_rfcs() {
        let url = Url::parse("https://acme.okta.com/api/v1/users?limit=200#x").unwrap();
        let c = dpop_claims(&Method::GET, &url, 100, "j1", Some("h"), None);
        assert_eq!(c["htu"], "https://acme.okta.com/api/v1/users");
        assert_eq!(c["htm"], "GET");
        assert_eq!(c["ath"], "h");
        assert!(c.get("nonce").is_none());
        let token_url = Url::parse("https://acme.okta.com/oauth2/v1/token").unwrap();
        let a = assertion_claims("0oa1", &token_url, 100, "j2");
        assert_eq!(
            (a["iss"].as_str(), a["sub"].as_str()),
            (Some("0oa1"), Some("0oa1"))
        );
        assert_eq!(a["aud"], "https://acme.okta.com/oauth2/v1/token");
        assert_eq!(a["exp"], 400);
        assert_ne!(new_jti(), new_jti());
        // RFC 9449's example: ath of the token "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU".
        assert_eq!(
            access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }
}
