//! Request authentication: SSWS API tokens here, OAuth 2.0 service apps in
//! [`super::oauth`]. Both sit behind the [`Auth`] trait the client calls per request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, header};
use url::Url;

use super::domain::OrgDomain;
use super::error::Result;
use super::oauth::{OAuthAuth, OAuthConfig};

/// An Okta API token. Its `Debug` and `Display` print a redaction, so it cannot leak through
/// logs or error messages by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// Wraps a token. Surrounding whitespace is trimmed, because tokens read from Kubernetes
    /// Secrets or files often end in a newline that Okta would reject.
    pub fn new(token: String) -> Self {
        let trimmed = token.trim();
        if trimmed.len() == token.len() {
            ApiToken(token)
        } else {
            ApiToken(trimmed.to_owned())
        }
    }

    /// The raw token. Only for building the `Authorization` header; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl fmt::Display for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Credentials for one request: the headers to send (marked sensitive) and which
/// credentials they came from, so a rejection can renew exactly those.
#[derive(Debug)]
pub struct RequestAuth {
    /// `Authorization` and, for DPoP, `DPoP`.
    pub headers: HeaderMap,
    /// Opaque number of the credentials used (e.g. which access token), for [`Auth::rejected`].
    pub generation: u64,
}

/// Produces the credentials of every request.
pub trait Auth: Send + Sync + 'static {
    /// The headers for `method url` (per request: a DPoP proof names both).
    fn authorize<'a>(
        &'a self,
        method: &'a Method,
        url: &'a Url,
    ) -> BoxFuture<'a, Result<RequestAuth>>;

    /// Told that Okta answered 401 to credentials of `generation`, with `headers`. True when
    /// fresh credentials may succeed, so the request is sent once more right away (an access
    /// token that expired or was revoked mid-sync); false when retrying cannot help.
    fn rejected(&self, generation: u64, headers: &HeaderMap) -> bool {
        let _ = (generation, headers);
        false
    }
}

/// What a client authenticates with. Consumed when the client is built (a private key is not
/// copied around).
#[derive(Debug)]
pub enum Credentials {
    /// An API token (SSWS).
    ApiToken(ApiToken),
    /// An OAuth 2.0 service app (boxed: it holds the key pair).
    OAuth(Box<OAuthConfig>),
}

impl Credentials {
    /// Text that differs whenever the credentials do: the token, or the OAuth settings with
    /// the public half of the key. Secret for the token; hash it ([`std::hash::BuildHasher`]
    /// with a per-process key), never log or store it.
    pub fn identity(&self) -> String {
        match self {
            Credentials::ApiToken(t) => format!("ssws\0{}", t.expose()),
            Credentials::OAuth(c) => format!(
                "oauth\0{}\0{}\0{}\0{}",
                c.client_id,
                c.key_id.as_deref().unwrap_or(""),
                c.scopes.join(" "),
                c.key.public_jwk()
            ),
        }
    }

    /// The [`Auth`] for requests to `domain`; token requests time out after `timeout`.
    pub fn into_auth(self, domain: &OrgDomain, timeout: Duration) -> Result<Arc<dyn Auth>> {
        Ok(match self {
            Credentials::ApiToken(t) => Arc::new(SswsAuth::new(t)),
            Credentials::OAuth(c) => Arc::new(OAuthAuth::new(domain, *c, timeout)?),
        })
    }
}

/// `Authorization: SSWS <token>` auth with an API token.
#[derive(Clone)]
pub struct SswsAuth {
    header: HeaderValue,
}

impl SswsAuth {
    /// Builds the header once. Control characters can never be part of a valid token and
    /// cannot travel in a header, so they are dropped; Okta then answers 401 for the
    /// mangled token, which surfaces as [`crate::okta::Error::Unauthorized`].
    pub fn new(token: ApiToken) -> Self {
        let mut bytes = b"SSWS ".to_vec();
        bytes.extend(
            token
                .expose()
                .bytes()
                .filter(|b| (*b >= 0x20 && *b != 0x7f) || *b == b'\t'),
        );
        let mut header =
            HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| HeaderValue::from_static("SSWS"));
        header.set_sensitive(true);
        SswsAuth { header }
    }
}

impl fmt::Debug for SswsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SswsAuth(<redacted>)")
    }
}

impl Auth for SswsAuth {
    fn authorize<'a>(&'a self, _: &'a Method, _: &'a Url) -> BoxFuture<'a, Result<RequestAuth>> {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, self.header.clone());
        Box::pin(std::future::ready(Ok(RequestAuth {
            headers,
            generation: 0,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted_in_debug_and_display() {
        let token = ApiToken::new("00abcSECRETxyz\n".to_owned());
        assert_eq!(format!("{token:?}"), "ApiToken(<redacted>)");
        assert_eq!(format!("{token}"), "ApiToken(<redacted>)");
        assert_eq!(token.expose(), "00abcSECRETxyz");
        let auth = SswsAuth::new(token);
        assert!(!format!("{auth:?}").contains("SECRET"));
    }

    #[test]
    fn oauth_credentials_debug_shows_no_key_and_identity_follows_the_key() {
        let oauth = |key: super::super::oauth::PrivateKey| {
            Credentials::OAuth(Box::new(OAuthConfig {
                client_id: "0oa1".into(),
                key,
                key_id: None,
                scopes: vec!["okta.users.read".into()],
            }))
        };
        let (key, pem) = super::super::oauth::PrivateKey::generate_es256();
        let same = super::super::oauth::PrivateKey::parse(&pem).unwrap();
        let (a, b) = (oauth(key), oauth(same));
        let text = format!("{a:?}");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(
            text.contains("<redacted>") && !text.contains(&body[..32]),
            "{text}"
        );
        assert_eq!(a.identity(), b.identity());
        let other = oauth(super::super::oauth::PrivateKey::generate_es256().0);
        assert_ne!(a.identity(), other.identity());
        let token = Credentials::ApiToken(ApiToken::new("SECRET".into()));
        assert!(!format!("{token:?}").contains("SECRET"));
    }

    #[tokio::test]
    async fn header_is_sensitive_and_ssws() {
        let auth = SswsAuth::new(ApiToken::new("tok\u{7}en".to_owned()));
        let url = Url::parse("https://acme.okta.com/api/v1/org").unwrap();
        let request = auth.authorize(&Method::GET, &url).await.unwrap();
        let header = &request.headers[header::AUTHORIZATION];
        assert!(header.is_sensitive());
        assert_eq!(header.as_bytes(), b"SSWS token");
        assert!(!format!("{header:?}").contains("token"));
    }
}
