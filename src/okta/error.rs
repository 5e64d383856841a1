//! The client's error type. Never carries the API token, private key or access token:
//! errors hold only what Okta answered (status, error body fields, request id) or a transport description.

use std::fmt;
use std::time::Duration;

use super::domain::DomainError;

/// Result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What Okta said about a failed request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OktaErrorInfo {
    /// HTTP status.
    pub status: u16,
    /// `errorCode`, e.g. `E0000011`; the only field meant for program logic.
    pub error_code: Option<String>,
    /// `errorSummary`, human readable.
    pub error_summary: Option<String>,
    /// `errorId`, for Okta support.
    pub error_id: Option<String>,
    /// `X-Okta-Request-Id` response header.
    pub request_id: Option<String>,
}

impl OktaErrorInfo {
    /// The same details without the per-response identifiers (`errorId`, request id).
    pub fn without_ids(&self) -> OktaErrorInfo {
        OktaErrorInfo {
            error_id: None,
            request_id: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for OktaErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(code) = &self.error_code {
            write!(f, " {code}")?;
        }
        if let Some(summary) = &self.error_summary {
            write!(f, ": {summary}")?;
        }
        if let Some(id) = &self.error_id {
            write!(f, " (errorId {id})")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// Errors callers can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 401: bad, expired or revoked token.
    #[error("Okta rejected the credentials: {0}")]
    Unauthorized(OktaErrorInfo),
    /// 403: the token's admin lacks permission, or the object cannot be changed.
    #[error("Okta refused the operation: {0}")]
    Forbidden(OktaErrorInfo),
    /// 403 with an OAuth `insufficient_scope` challenge: the access token lacks `scope`.
    #[error("the OAuth access token lacks scope {scope}: {info}")]
    InsufficientScope {
        /// The missing scope, as Okta's challenge names it (else the one the operation needs
        /// by the spec).
        scope: String,
        /// Okta's answer (boxed: it keeps every `Result` of the client small).
        info: Box<OktaErrorInfo>,
    },
    /// The token endpoint refused a requested scope (`invalid_scope`): it is not granted to
    /// the service app.
    #[error("Okta did not grant the requested OAuth scopes: {0}")]
    ScopeNotGranted(OktaErrorInfo),
    /// The service app's private key cannot sign.
    #[error(transparent)]
    InvalidKey(#[from] super::oauth::KeyError),
    /// 404: unknown id.
    #[error("not found in Okta: {0}")]
    NotFound(OktaErrorInfo),
    /// Any other 4xx (bad search expression, validation error, ...). Never retried.
    #[error("Okta rejected the request: {0}")]
    InvalidRequest(OktaErrorInfo),
    /// Waiting for a rate-limit window would exceed the configured maximum wait.
    #[error(
        "rate limit budget exceeded on bucket {bucket}: waiting {wait:?} would exceed the allowed {max_wait:?}"
    )]
    RateLimitBudgetExceeded {
        /// The rate-limit bucket, e.g. `users`.
        bucket: &'static str,
        /// The wait that would have been needed.
        wait: Duration,
        /// The configured maximum (`ClientOptions::max_rate_limit_wait`).
        max_wait: Duration,
    },
    /// 429 still answered after every allowed retry.
    #[error("rate limited by Okta after all retries: {0}")]
    RateLimited(OktaErrorInfo),
    /// 5xx still answered after every allowed retry.
    #[error("Okta server error after retries: {0}")]
    Server(OktaErrorInfo),
    /// Timeouts, refused or dropped connections, after every allowed retry.
    #[error("transport error talking to Okta: {message}")]
    Transport {
        /// What went wrong (no credentials).
        message: String,
    },
    /// A success response whose body did not match the expected shape.
    #[error("cannot decode Okta response{}: {message}", request_id_suffix(request_id.as_deref()))]
    Decode {
        /// The decoder's message.
        message: String,
        /// `X-Okta-Request-Id` of the response.
        request_id: Option<String>,
    },
    /// A pagination link that leaves the org's origin or leads back to a page of the same
    /// stream (a cycle); refused, never followed.
    #[error("refusing to follow pagination link {link:?}: {reason}")]
    BadNextLink {
        /// The link as received.
        link: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A response body larger than the client accepts ([`crate::okta::MAX_RESPONSE_BYTES`]):
    /// no page the operator reads comes near it, so it is refused unread rather than buffered.
    #[error("Okta's response to {request} is larger than {limit} bytes; refused")]
    ResponseTooLarge {
        /// Method and path (no query: it may hold personal data).
        request: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// A listing that kept offering next pages past the client's page limit
    /// ([`crate::okta::MAX_PAGES`] by default): no org in reach needs that many, so the
    /// stream stops instead of reading forever.
    #[error("Okta's listing {path} went past {limit} pages; stopped")]
    TooManyPages {
        /// The listing's path.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// An argument that cannot name an Okta object (e.g. an empty id); nothing was sent.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What was wrong.
        message: String,
    },
    /// The configured org domain is not acceptable.
    #[error(transparent)]
    InvalidDomain(#[from] DomainError),
}

fn request_id_suffix(id: Option<&str>) -> String {
    id.map(|id| format!(" (request id {id})"))
        .unwrap_or_default()
}

impl Error {
    /// The error's text without the identifiers Okta mints per response (`errorId`,
    /// `X-Okta-Request-Id`): repeats of the same failure read the same, so the text can be
    /// stored or compared where a fresh id on every retry would look like a change. The full
    /// text ([`fmt::Display`]) keeps the ids, for logs and Okta support.
    pub fn stable_text(&self) -> String {
        match self {
            Error::Unauthorized(i) => Error::Unauthorized(i.without_ids()).to_string(),
            Error::Forbidden(i) => Error::Forbidden(i.without_ids()).to_string(),
            Error::InsufficientScope { scope, info } => Error::InsufficientScope {
                scope: scope.clone(),
                info: Box::new(info.without_ids()),
            }
            .to_string(),
            Error::ScopeNotGranted(i) => Error::ScopeNotGranted(i.without_ids()).to_string(),
            Error::NotFound(i) => Error::NotFound(i.without_ids()).to_string(),
            Error::InvalidRequest(i) => Error::InvalidRequest(i.without_ids()).to_string(),
            Error::RateLimited(i) => Error::RateLimited(i.without_ids()).to_string(),
            Error::Server(i) => Error::Server(i.without_ids()).to_string(),
            Error::Decode { message, .. } => Error::Decode {
                message: message.clone(),
                request_id: None,
            }
            .to_string(),
            other => other.to_string(),
        }
    }

    /// True for failures that may succeed later (rate limits, server errors, transport);
    /// false for ones that will not change without someone fixing something.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::RateLimitBudgetExceeded { .. }
                | Error::RateLimited(_)
                | Error::Server(_)
                | Error::Transport { .. }
        )
    }

    /// Okta's error details, when the error came from an Okta error response.
    pub fn okta_info(&self) -> Option<&OktaErrorInfo> {
        match self {
            Error::InsufficientScope { info, .. } => Some(info),
            Error::Unauthorized(i)
            | Error::Forbidden(i)
            | Error::ScopeNotGranted(i)
            | Error::NotFound(i)
            | Error::InvalidRequest(i)
            | Error::RateLimited(i)
            | Error::Server(i) => Some(i),
            _ => None,
        }
    }

    /// Maps a final (non-retried) error response to the variant callers act on.
    pub(crate) fn from_status(info: OktaErrorInfo) -> Error {
        match info.status {
            401 => Error::Unauthorized(info),
            403 => Error::Forbidden(info),
            404 => Error::NotFound(info),
            429 => Error::RateLimited(info),
            500..=599 => Error::Server(info),
            _ => Error::InvalidRequest(info),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_maps_to_variant_and_transience() {
        let info = |status| OktaErrorInfo {
            status,
            ..Default::default()
        };
        assert!(matches!(
            Error::from_status(info(401)),
            Error::Unauthorized(_)
        ));
        assert!(matches!(Error::from_status(info(403)), Error::Forbidden(_)));
        assert!(matches!(Error::from_status(info(404)), Error::NotFound(_)));
        assert!(matches!(
            Error::from_status(info(400)),
            Error::InvalidRequest(_)
        ));
        assert!(matches!(Error::from_status(info(503)), Error::Server(_)));
        assert!(Error::from_status(info(503)).is_transient());
        assert!(Error::from_status(info(429)).is_transient());
        assert!(!Error::from_status(info(400)).is_transient());
    }

    #[test]
    fn display_keeps_okta_fields() {
        let err = Error::Unauthorized(OktaErrorInfo {
            status: 401,
            error_code: Some("E0000011".into()),
            error_summary: Some("Invalid token provided".into()),
            error_id: Some("oaeXYZ".into()),
            request_id: Some("req-1".into()),
        });
        let text = err.to_string();
        for part in [
            "401",
            "E0000011",
            "Invalid token provided",
            "oaeXYZ",
            "req-1",
        ] {
            assert!(text.contains(part), "{text}");
        }
    }

    #[test]
    fn stable_text_drops_only_the_per_response_ids() {
        let info = |error_id: &str, request_id: &str| OktaErrorInfo {
            status: 401,
            error_code: Some("E0000011".into()),
            error_summary: Some("Invalid token provided".into()),
            error_id: Some(error_id.into()),
            request_id: Some(request_id.into()),
        };
        let variants: [fn(OktaErrorInfo) -> Error; 6] = [
            Error::Unauthorized,
            Error::Forbidden,
            Error::NotFound,
            Error::InvalidRequest,
            Error::RateLimited,
            Error::Server,
        ];
        for variant in variants {
            let first = variant(info("oae1", "req-1"));
            let again = variant(info("oae2", "req-2"));
            let text = first.stable_text();
            assert_eq!(text, again.stable_text());
            for part in ["401", "E0000011", "Invalid token provided"] {
                assert!(text.contains(part), "{text}");
            }
            assert!(!text.contains("oae1") && !text.contains("req-1"), "{text}");
            // The full text keeps them, and says the same otherwise.
            assert!(first.to_string().starts_with(&text), "{first}");
        }
        let decode = |id: &str| Error::Decode {
            message: "expected a list".into(),
            request_id: Some(id.into()),
        };
        assert_eq!(decode("a").stable_text(), decode("b").stable_text());
        assert_eq!(
            decode("a").stable_text(),
            "cannot decode Okta response: expected a list"
        );
        assert!(decode("a").to_string().contains("(request id a)"));
        let transport = Error::Transport {
            message: "connection refused".into(),
        };
        assert_eq!(transport.stable_text(), transport.to_string());
    }
}
