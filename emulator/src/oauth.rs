//! OAuth 2.0 for service apps: the org authorization server's `/oauth2/v1/token`
//! (client credentials, `private_key_jwt`, DPoP) and the access-token check of every
//! `/api/v1` request, with scopes enforced per operation. Decisions are pure functions over
//! [`OAuthState`]; the server only feeds them the request.
//!
//! Where Okta's documentation does not say what it answers, the choice made here is listed
//! in `docs/emulator.md` ("OAuth 2.0").

use std::collections::{BTreeSet, HashMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use super::routes::Route;

/// How far a JWT's `iat` may lie in the future (clock skew), and how old a DPoP proof may be.
pub const SKEW_SECONDS: i64 = 60;
/// The longest client assertion Okta accepts (`exp - iat`).
pub const MAX_ASSERTION_SECONDS: i64 = 3600;
/// The `client_assertion_type` of `private_key_jwt`.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A service app in the fixture (`serviceApps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixtureServiceApp {
    /// The app's client id.
    pub client_id: String,
    /// Its registered public keys, as JWKs (`kid` optional).
    #[serde(default)]
    pub jwks: Vec<Json>,
    /// Okta API scopes granted to the app.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// "Require Demonstrating Proof of Possession (DPoP) header in token requests" (Okta's
    /// default for new service apps).
    #[serde(default = "yes")]
    pub dpop: bool,
    /// Lifetime of issued access tokens (Okta: one hour).
    #[serde(default = "hour")]
    pub token_lifetime_seconds: u32,
}

impl FixtureServiceApp {
    /// An app with Okta's defaults (DPoP required, one-hour tokens).
    pub fn new(client_id: impl Into<String>, jwks: Vec<Json>, scopes: &[&str]) -> Self {
        FixtureServiceApp {
            client_id: client_id.into(),
            jwks,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            dpop: yes(),
            token_lifetime_seconds: hour(),
        }
    }
}

fn yes() -> bool {
    true
}

fn hour() -> u32 {
    3600
}

/// An issued access token.
#[derive(Debug, Clone)]
struct Issued {
    scopes: BTreeSet<String>,
    expires: i64,
    /// JWK thumbprint of the DPoP key the token is bound to.
    jkt: Option<String>,
}

/// Service apps, issued tokens and replay caches.
#[derive(Debug, Default)]
pub struct OAuthState {
    apps: HashMap<String, FixtureServiceApp>,
    assertion_jtis: HashSet<(String, String)>,
    proof_jtis: HashSet<String>,
    tokens: HashMap<String, Issued>,
    nonce: String,
    /// Token requests received.
    pub token_requests: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
}

/// An OAuth error answer: `{error, error_description}`, plus the `WWW-Authenticate`
/// challenge and `DPoP-Nonce` it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// HTTP status.
    pub status: StatusCode,
    /// `error`, e.g. `invalid_client`.
    pub error: &'static str,
    /// `error_description`.
    pub description: String,
    /// `DPoP-Nonce` header to send.
    pub nonce: Option<String>,
    /// For resource requests: the scope the operation needs (`insufficient_scope`).
    pub scope: Option<&'static str>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status,
            error,
            description: description.into(),
            nonce: None,
            scope: None,
        }
    }

    fn client(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    fn proof(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", description)
    }

    /// The body of a token-endpoint error.
    pub fn body(&self) -> Json {
        json!({"error": self.error, "error_description": self.description})
    }

    /// The `WWW-Authenticate` challenge of a resource error.
    pub fn challenge(&self, scheme: &str) -> String {
        let mut text = format!(
            "{scheme} error=\"{}\", error_description=\"{}\"",
            self.error, self.description
        );
        if let Some(scope) = self.scope {
            text.push_str(&format!(", scope=\"{scope}\""));
        }
        text
    }
}

/// The scope an operation needs, from the spec's `security` section.
pub fn required_scope(route: &Route) -> &'static str {
    match route {
        Route::Org => "okta.orgs.read",
        Route::Logs => "okta.logs.read",
        Route::Users | Route::User(_) | Route::UserGroups(_) => "okta.users.read",
        Route::Groups | Route::Group(_) | Route::GroupMembers(_) => "okta.groups.read",
        Route::AddMember(..) | Route::RemoveMember(..) => "okta.groups.manage",
        Route::UserRoles(_)
        | Route::GroupRoles(_)
        | Route::RoleAssignees
        | Route::CustomRoles
        | Route::RolePermissions(_) => "okta.roles.read",
    }
}

/// Whether `granted` covers `needed`: Okta's `.manage` scopes include the `.read` ones.
fn covers(granted: &BTreeSet<String>, needed: &str) -> bool {
    granted.contains(needed)
        || needed
            .strip_suffix(".read")
            .is_some_and(|base| granted.contains(&format!("{base}.manage")))
}

fn b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

fn member(jwk: &Json, name: &str) -> Option<Vec<u8>> {
    jwk.get(name).and_then(Json::as_str).and_then(b64)
}

/// Verifies a compact JWS against `jwk` (ES256 or RS256), returning its claims.
pub fn verify_jws(jwt: &str, jwk: &Json) -> Result<Map<String, Json>, &'static str> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, s] = parts.as_slice() else {
        return Err("is not a compact JWS");
    };
    let header: Map<String, Json> = b64(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("has a malformed header")?;
    let claims: Map<String, Json> = b64(c)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("has malformed claims")?;
    let signature = b64(s).ok_or("has a malformed signature")?;
    let input = format!("{h}.{c}");
    let alg = header.get("alg").and_then(Json::as_str);
    let ok = match (alg, jwk.get("kty").and_then(Json::as_str)) {
        (Some("ES256"), Some("EC")) => {
            let (Some(x), Some(y)) = (member(jwk, "x"), member(jwk, "y")) else {
                return Err("names a malformed key");
            };
            let point = [&[4u8][..], &x, &y].concat();
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(input.as_bytes(), &signature)
                .is_ok()
        }
        (Some("RS256"), Some("RSA")) => {
            let (Some(n), Some(e)) = (member(jwk, "n"), member(jwk, "e")) else {
                return Err("names a malformed key");
            };
            RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &signature)
                .is_ok()
        }
        _ => return Err("uses an algorithm other than the key's ES256 or RS256"),
    };
    if ok {
        Ok(claims)
    } else {
        Err("signature is invalid")
    }
}

/// RFC 7638 thumbprint of a public JWK.
pub fn thumbprint(jwk: &Json) -> Option<String> {
    let s = |n: &str| jwk.get(n).and_then(Json::as_str);
    let canonical = match s("kty")? {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            s("crv")?,
            s("x")?,
            s("y")?
        ),
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e")?, s("n")?),
        _ => return None,
    };
    Some(URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    )))
}

fn int(claims: &Map<String, Json>, name: &str) -> Option<i64> {
    claims.get(name).and_then(Json::as_i64)
}

fn text<'a>(claims: &'a Map<String, Json>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Json::as_str)
}

/// A request to check a DPoP proof against.
pub struct ProofRequest<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// Absolute URL without query (`htu`).
    pub url: &'a str,
    /// `ath` the proof must carry (resource requests).
    pub access_token: Option<&'a str>,
    /// Whether the proof must carry the current nonce (token requests).
    pub nonce: bool,
    /// Now, in Unix seconds.
    pub now: i64,
}

impl OAuthState {
    /// The state for the fixture's apps; `nonce_seed` makes the DPoP nonce unpredictable.
    pub fn new(apps: &[FixtureServiceApp], nonce_seed: u64) -> OAuthState {
        OAuthState {
            apps: apps
                .iter()
                .map(|a| (a.client_id.clone(), a.clone()))
                .collect(),
            nonce: format!("n-{nonce_seed:016x}"),
            ..OAuthState::default()
        }
    }

    /// Replaces an app's registered public keys (key rotation). False for unknown apps.
    pub fn set_keys(&mut self, client_id: &str, jwks: Vec<Json>) -> bool {
        self.apps
            .get_mut(client_id)
            .map(|a| a.jwks = jwks)
            .is_some()
    }

    /// Makes every issued access token expire at `now`.
    pub fn expire_tokens(&mut self, now: i64) {
        for t in self.tokens.values_mut() {
            t.expires = t.expires.min(now);
        }
    }

    fn check_proof(
        &mut self,
        proof: Option<&str>,
        req: &ProofRequest<'_>,
    ) -> Result<String, OAuthError> {
        let proof =
            proof.ok_or_else(|| OAuthError::proof("The DPoP proof JWT header is missing."))?;
        let header: Map<String, Json> = proof
            .split('.')
            .next()
            .and_then(b64)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| OAuthError::proof("The DPoP proof JWT is malformed."))?;
        if text(&header, "typ") != Some("dpop+jwt") {
            return Err(OAuthError::proof(
                "The DPoP proof JWT typ must be dpop+jwt.",
            ));
        }
        let jwk = header
            .get("jwk")
            .filter(|k| k.get("d").is_none())
            .ok_or_else(|| OAuthError::proof("The DPoP proof JWT has no public jwk header."))?;
        let claims = verify_jws(proof, jwk)
            .map_err(|why| OAuthError::proof(format!("The DPoP proof JWT {why}.")))?;
        if text(&claims, "htm") != Some(req.method.as_str())
            || text(&claims, "htu") != Some(req.url)
        {
            return Err(OAuthError::proof(
                "The DPoP proof htm or htu does not match the request.",
            ));
        }
        let iat =
            int(&claims, "iat").ok_or_else(|| OAuthError::proof("The DPoP proof has no iat."))?;
        if iat > req.now + SKEW_SECONDS || iat < req.now - 300 {
            return Err(OAuthError::proof(
                "The DPoP proof iat is outside the accepted window.",
            ));
        }
        if let Some(token) = req.access_token {
            let ath = URL_SAFE_NO_PAD.encode(ring::digest::digest(
                &ring::digest::SHA256,
                token.as_bytes(),
            ));
            if text(&claims, "ath") != Some(ath.as_str()) {
                return Err(OAuthError::proof(
                    "The DPoP proof ath does not match the access token.",
                ));
            }
        }
        if req.nonce && text(&claims, "nonce") != Some(self.nonce.as_str()) {
            let mut e = OAuthError::new(
                StatusCode::BAD_REQUEST,
                "use_dpop_nonce",
                "Authorization server requires nonce in DPoP proof.",
            );
            e.nonce = Some(self.nonce.clone());
            return Err(e);
        }
        let jti =
            text(&claims, "jti").ok_or_else(|| OAuthError::proof("The DPoP proof has no jti."))?;
        if !self.proof_jtis.insert(jti.to_owned()) {
            return Err(OAuthError::proof(
                "The DPoP proof jti has already been used.",
            ));
        }
        thumbprint(jwk)
            .ok_or_else(|| OAuthError::proof("The DPoP proof jwk is not an EC or RSA key."))
    }

    /// `POST /oauth2/v1/token` with the form `form` and the `DPoP` header `proof`. Answers
    /// the token response or an OAuth error.
    pub fn token(
        &mut self,
        form: &HashMap<String, String>,
        proof: Option<&str>,
        token_url: &str,
        now: i64,
    ) -> Result<Json, OAuthError> {
        self.token_requests += 1;
        let field = |n: &str| form.get(n).map(String::as_str);
        if field("grant_type") != Some("client_credentials") {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
            ));
        }
        if field("client_assertion_type") != Some(ASSERTION_TYPE) {
            return Err(OAuthError::client(
                "client_assertion_type must be jwt-bearer (private_key_jwt).",
            ));
        }
        let assertion = field("client_assertion")
            .ok_or_else(|| OAuthError::client("The client_assertion is missing."))?;
        let unverified: Map<String, Json> = assertion
            .split('.')
            .nth(1)
            .and_then(b64)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| OAuthError::client("The client_assertion is malformed."))?;
        let client_id = text(&unverified, "iss").unwrap_or_default().to_owned();
        let app = self
            .apps
            .get(&client_id)
            .cloned()
            .ok_or_else(|| OAuthError::client("The client_id is unknown."))?;
        let kid = assertion
            .split('.')
            .next()
            .and_then(b64)
            .and_then(|b| serde_json::from_slice::<Map<String, Json>>(&b).ok())
            .and_then(|h| text(&h, "kid").map(str::to_owned));
        let claims = app
            .jwks
            .iter()
            .filter(|k| kid.is_none() || k.get("kid").and_then(Json::as_str) == kid.as_deref())
            .find_map(|k| verify_jws(assertion, k).ok())
            .ok_or_else(|| OAuthError::client("The client_assertion signature is invalid."))?;
        if text(&claims, "sub") != Some(client_id.as_str()) {
            return Err(OAuthError::client(
                "The client_assertion sub must equal iss (the client_id).",
            ));
        }
        if text(&claims, "aud") != Some(token_url) {
            return Err(OAuthError::client(
                "The client_assertion aud must be the token endpoint.",
            ));
        }
        let (Some(iat), Some(exp)) = (int(&claims, "iat"), int(&claims, "exp")) else {
            return Err(OAuthError::client(
                "The client_assertion must carry iat and exp.",
            ));
        };
        if exp <= now {
            return Err(OAuthError::client("The client_assertion token is expired."));
        }
        if iat > now + SKEW_SECONDS || exp - iat > MAX_ASSERTION_SECONDS {
            return Err(OAuthError::client(
                "The client_assertion iat or lifetime is not accepted.",
            ));
        }
        let jti = text(&claims, "jti")
            .ok_or_else(|| OAuthError::client("The client_assertion has no jti."))?;
        let requested: BTreeSet<String> = field("scope")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if requested.is_empty() {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "The request must name at least one scope.",
            ));
        }
        let jkt = if app.dpop || proof.is_some() {
            let req = ProofRequest {
                method: &Method::POST,
                url: token_url,
                access_token: None,
                nonce: true,
                now,
            };
            Some(self.check_proof(proof, &req)?)
        } else {
            None
        };
        // Replay is checked last so a nonce challenge does not burn the assertion.
        if !self
            .assertion_jtis
            .insert((client_id.clone(), jti.to_owned()))
        {
            return Err(OAuthError::client(
                "The client_assertion token has already been used.",
            ));
        }
        let missing: Vec<&str> = requested
            .iter()
            .filter(|s| !app.scopes.contains(s))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!(
                    "The following scopes are not granted to the client: {}",
                    missing.join(" ")
                ),
            ));
        }
        self.tokens_issued += 1;
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
        let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
        let lifetime = i64::from(app.token_lifetime_seconds);
        self.tokens.insert(
            token.clone(),
            Issued {
                scopes: requested.clone(),
                expires: now + lifetime,
                jkt,
            },
        );
        Ok(json!({
            "token_type": token_type,
            "expires_in": lifetime,
            "access_token": token,
            "scope": requested.into_iter().collect::<Vec<_>>().join(" "),
        }))
    }

    /// Whether the request with `Authorization: scheme token` (not `SSWS`) and `DPoP`
    /// header `proof` may run `route`.
    pub fn authorize(
        &mut self,
        scheme: &str,
        token: &str,
        proof: Option<&str>,
        route: &Route,
        req: ProofRequest<'_>,
    ) -> Result<(), OAuthError> {
        let invalid = || {
            OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "The access token is invalid.",
            )
        };
        let issued = self.tokens.get(token).cloned().ok_or_else(invalid)?;
        if issued.expires <= req.now {
            return Err(OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "The access token is expired.",
            ));
        }
        match (&issued.jkt, scheme.to_ascii_lowercase().as_str()) {
            (Some(jkt), "dpop") => {
                let thumb = self
                    .check_proof(
                        proof,
                        &ProofRequest {
                            access_token: Some(token),
                            nonce: false,
                            ..req
                        },
                    )
                    .map_err(|mut e| {
                        e.status = StatusCode::UNAUTHORIZED;
                        e
                    })?;
                if &thumb != jkt {
                    return Err(OAuthError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_dpop_proof",
                        "The DPoP proof key does not match the access token.",
                    ));
                }
            }
            (None, "bearer") => {}
            _ => return Err(invalid()),
        }
        let needed = required_scope(route);
        if !covers(&issued.scopes, needed) {
            let mut e = OAuthError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "The access token provided does not contain the required scopes.",
            );
            e.scope = Some(needed);
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manage_scopes_cover_read() {
        let granted: BTreeSet<String> = ["okta.groups.manage".to_owned()].into();
        assert!(covers(&granted, "okta.groups.read"));
        assert!(covers(&granted, "okta.groups.manage"));
        assert!(!covers(&granted, "okta.users.read"));
    }

    #[test]
    fn every_route_needs_the_spec_scope() {
        assert_eq!(required_scope(&Route::Org), "okta.orgs.read");
        assert_eq!(
            required_scope(&Route::AddMember("g".into(), "u".into())),
            "okta.groups.manage"
        );
        assert_eq!(required_scope(&Route::RoleAssignees), "okta.roles.read");
        assert_eq!(
            required_scope(&Route::UserGroups("u".into())),
            "okta.users.read"
        );
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        let jwk = json!({"kty":"RSA","e":"AQAB","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
