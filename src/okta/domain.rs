//! Validation of the Okta org domain a connector points at.
//!
//! Stricter than Okta's SDKs on purpose: tenants who write connector resources must not be
//! able to point the operator at arbitrary internal addresses.

use std::fmt;

use url::Url;

/// Okta's own parent domains; org hosts must be subdomains of one of these by default.
pub const OKTA_SUFFIXES: &[&str] = &[
    "okta.com",
    "oktapreview.com",
    "okta-emea.com",
    "okta-gov.com",
    "okta.mil",
];

/// Hosts that plain HTTP may reach with [`DomainPolicy::insecure_loopback_http`].
const LOOPBACK_HOSTS: &[&str] = &["127.0.0.1", "::1", "localhost"];

/// What a cluster administrator allows beyond Okta's own domains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainPolicy {
    /// Extra allowed suffixes (custom domains), e.g. `login.example.com` or `example.com`.
    /// A host matches when it equals the suffix or is a subdomain of it.
    pub allowed_suffixes: Vec<String>,
    /// Allow `http://` to `127.0.0.1`, `[::1]` or `localhost` with a port (the emulator).
    pub insecure_loopback_http: bool,
}

/// Why a domain was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Nothing was given.
    #[error("the Okta domain is empty")]
    Empty,
    /// Whitespace anywhere in the input.
    #[error("the Okta domain contains whitespace")]
    Whitespace,
    /// A URL scheme was given where only a host is expected.
    #[error("the Okta domain must be a host name without a scheme such as https://")]
    Scheme,
    /// `http://` was given without the loopback opt-out (or to a non-loopback host).
    #[error(
        "plain HTTP is only allowed to 127.0.0.1, [::1] or localhost with --insecure-loopback-http"
    )]
    InsecureHttp,
    /// A path, query or fragment follows the host.
    #[error("the Okta domain must not contain a path, query or fragment")]
    Path,
    /// `user@host` form.
    #[error("the Okta domain must not contain user information")]
    Userinfo,
    /// The port is not a number in 1..=65535.
    #[error("invalid port in the Okta domain")]
    Port,
    /// Loopback over plain HTTP needs an explicit port.
    #[error("a loopback Okta domain needs a port")]
    PortRequired,
    /// Not a valid DNS host name.
    #[error("invalid host name {0:?}")]
    Host(String),
    /// The admin console host, not the API host.
    #[error("{0:?} is an Okta admin console host (contains -admin); use the org's API host")]
    AdminConsole(String),
    /// The host is not under an allowed suffix.
    #[error("{0:?} is not under an Okta domain or an allowed custom domain (see --allow-domain)")]
    NotAllowed(String),
}

/// A validated org domain and the base URL requests go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgDomain {
    /// `host[:port]`, with brackets around IPv6 literals.
    authority: String,
    base_url: Url,
}

impl OrgDomain {
    /// Validates `input` (`host` or `host:port`) against `policy`.
    pub fn parse(input: &str, policy: &DomainPolicy) -> Result<OrgDomain, DomainError> {
        if input.is_empty() {
            return Err(DomainError::Empty);
        }
        if input.chars().any(char::is_whitespace) {
            return Err(DomainError::Whitespace);
        }
        let (rest, http) = match split_scheme(input) {
            Some(("http", rest)) if policy.insecure_loopback_http => (rest, true),
            Some(("http", _)) => return Err(DomainError::InsecureHttp),
            Some(_) => return Err(DomainError::Scheme),
            None => (input, false),
        };
        // A lone trailing slash after `http://host:port` is how URLs are usually written.
        let rest = if http {
            rest.strip_suffix('/').unwrap_or(rest)
        } else {
            rest
        };
        if rest.contains('@') {
            return Err(DomainError::Userinfo);
        }
        if rest.contains(['/', '\\', '?', '#']) {
            return Err(DomainError::Path);
        }
        let (host, port) = split_host_port(rest)?;
        let host = host.to_ascii_lowercase();
        let loopback = LOOPBACK_HOSTS.contains(&host.as_str());
        if http && !loopback {
            return Err(DomainError::InsecureHttp);
        }
        let scheme = if loopback && policy.insecure_loopback_http {
            if port.is_none() {
                return Err(DomainError::PortRequired);
            }
            tracing::warn!(
                host = %host,
                "using plain HTTP to a loopback Okta domain (--insecure-loopback-http); never do this in production"
            );
            "http"
        } else {
            validate_dns_host(&host)?;
            if host.contains("-admin") {
                return Err(DomainError::AdminConsole(host));
            }
            if !is_allowed(&host, &policy.allowed_suffixes) {
                return Err(DomainError::NotAllowed(host));
            }
            "https"
        };
        let host_part = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let authority = match port {
            Some(p) => format!("{host_part}:{p}"),
            None => host_part,
        };
        let base_url = Url::parse(&format!("{scheme}://{authority}/"))
            .map_err(|_| DomainError::Host(authority.clone()))?;
        Ok(OrgDomain {
            authority,
            base_url,
        })
    }

    /// The org's base URL, e.g. `https://acme.okta.com/`.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }
}

impl fmt::Display for OrgDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority)
    }
}

/// Splits `scheme://rest` when the input starts with a URL scheme.
fn split_scheme(input: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = input.split_once("://")?;
    let is_scheme = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if is_scheme {
        let lower = scheme.to_ascii_lowercase();
        Some((if lower == "http" { "http" } else { "other" }, rest))
    } else {
        // "://" without a plausible scheme in front is still not a host name.
        Some(("other", rest))
    }
}

/// Splits `host`, `host:port` or `[v6]:port`.
fn split_host_port(input: &str) -> Result<(&str, Option<u16>), DomainError> {
    let (host, port) = if let Some(rest) = input.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| DomainError::Host(input.to_owned()))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(DomainError::Host(input.to_owned())),
            },
        }
    } else {
        match input.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (input, None),
        }
    };
    if host.is_empty() {
        return Err(DomainError::Host(input.to_owned()));
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(DomainError::Port),
            }
        }
        Some(_) => return Err(DomainError::Port),
    };
    Ok((host, port))
}

/// A DNS name of letters, digits and inner hyphens, at most 253 characters.
fn validate_dns_host(host: &str) -> Result<(), DomainError> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(DomainError::Host(host.to_owned()));
    }
    Ok(())
}

/// True when `host` is a subdomain of an Okta suffix, or equals or is a subdomain of an
/// allowed custom suffix.
fn is_allowed(host: &str, custom: &[String]) -> bool {
    let under = |suffix: &str| {
        host.len() > suffix.len()
            && host.ends_with(suffix)
            && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
    };
    if OKTA_SUFFIXES.iter().any(|s| under(s)) {
        return true;
    }
    custom.iter().any(|s| {
        let s = s.trim().trim_start_matches('.').to_ascii_lowercase();
        !s.is_empty() && (host == s || under(&s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> DomainPolicy {
        DomainPolicy::default()
    }

    fn loopback() -> DomainPolicy {
        DomainPolicy {
            insecure_loopback_http: true,
            ..DomainPolicy::default()
        }
    }

    #[test]
    fn accepts_okta_subdomains() {
        for input in [
            "acme.okta.com",
            "ACME.OktaPreview.com",
            "acme.okta-emea.com",
            "acme.okta-gov.com",
            "acme.okta.mil",
            "acme.okta.com:8443",
        ] {
            let d = OrgDomain::parse(input, &strict()).unwrap();
            assert_eq!(d.base_url().scheme(), "https", "{input}");
        }
        let d = OrgDomain::parse("acme.okta.com", &strict()).unwrap();
        assert_eq!(d.base_url().as_str(), "https://acme.okta.com/");
        assert_eq!(d.to_string(), "acme.okta.com");
    }

    #[test]
    fn rejects_malformed_input() {
        let cases: &[(&str, DomainError)] = &[
            ("", DomainError::Empty),
            (" acme.okta.com", DomainError::Whitespace),
            ("acme.okta.com\n", DomainError::Whitespace),
            ("https://acme.okta.com", DomainError::Scheme),
            ("http://acme.okta.com", DomainError::InsecureHttp),
            ("acme.okta.com/api", DomainError::Path),
            ("acme.okta.com?x=1", DomainError::Path),
            ("acme.okta.com#x", DomainError::Path),
            ("user@acme.okta.com", DomainError::Userinfo),
            ("acme.okta.com:0", DomainError::Port),
            ("acme.okta.com:99999", DomainError::Port),
            ("acme.okta.com:", DomainError::Port),
            ("acme.okta.com:x", DomainError::Port),
            ("acme..okta.com", DomainError::Host("acme..okta.com".into())),
            ("-acme.okta.com", DomainError::Host("-acme.okta.com".into())),
            (
                "acme-admin.okta.com",
                DomainError::AdminConsole("acme-admin.okta.com".into()),
            ),
            ("okta.com", DomainError::NotAllowed("okta.com".into())),
            (
                "evilokta.com",
                DomainError::NotAllowed("evilokta.com".into()),
            ),
            (
                "acme.okta.com.evil.io",
                DomainError::NotAllowed("acme.okta.com.evil.io".into()),
            ),
            ("10.0.0.1", DomainError::NotAllowed("10.0.0.1".into())),
        ];
        for (input, want) in cases {
            assert_eq!(
                OrgDomain::parse(input, &strict()).as_ref(),
                Err(want),
                "{input}"
            );
        }
    }

    #[test]
    fn custom_suffixes_need_allowing() {
        let policy = DomainPolicy {
            allowed_suffixes: vec![".Example.com".into()],
            ..DomainPolicy::default()
        };
        assert!(OrgDomain::parse("login.example.com", &strict()).is_err());
        assert!(OrgDomain::parse("login.example.com", &policy).is_ok());
        assert!(OrgDomain::parse("example.com", &policy).is_ok());
        assert!(OrgDomain::parse("badexample.com", &policy).is_err());
        assert_eq!(
            OrgDomain::parse("sso-admin.example.com", &policy),
            Err(DomainError::AdminConsole("sso-admin.example.com".into()))
        );
    }

    #[test]
    fn loopback_http_only_with_opt_out_and_port() {
        assert_eq!(
            OrgDomain::parse("127.0.0.1:8080", &strict()),
            Err(DomainError::NotAllowed("127.0.0.1".into()))
        );
        assert_eq!(
            OrgDomain::parse("http://127.0.0.1:8080", &strict()),
            Err(DomainError::InsecureHttp)
        );
        assert_eq!(
            OrgDomain::parse("127.0.0.1", &loopback()),
            Err(DomainError::PortRequired)
        );
        assert_eq!(
            OrgDomain::parse("http://10.0.0.1:80", &loopback()),
            Err(DomainError::InsecureHttp)
        );
        assert_eq!(
            OrgDomain::parse("http://127.0.0.1:8080/path", &loopback()),
            Err(DomainError::Path)
        );
        for (input, url, shown) in [
            ("127.0.0.1:8080", "http://127.0.0.1:8080/", "127.0.0.1:8080"),
            (
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/",
                "127.0.0.1:8080",
            ),
            (
                "http://127.0.0.1:8080/",
                "http://127.0.0.1:8080/",
                "127.0.0.1:8080",
            ),
            ("[::1]:9000", "http://[::1]:9000/", "[::1]:9000"),
            ("localhost:9000", "http://localhost:9000/", "localhost:9000"),
        ] {
            let d = OrgDomain::parse(input, &loopback()).unwrap();
            assert_eq!(d.base_url().as_str(), url, "{input}");
            assert_eq!(d.to_string(), shown);
        }
        // Okta hosts stay https in loopback mode.
        let d = OrgDomain::parse("acme.okta.com", &loopback()).unwrap();
        assert_eq!(d.base_url().scheme(), "https");
    }
}
