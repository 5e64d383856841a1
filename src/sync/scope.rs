//! Who and what a sync covers: the email-domain rule for users, the group-name filter, and the
//! `search` expressions that ask Okta for candidates before the exact client-side checks.

use super::{Error, Result};

/// Longest percent-encoded `search` value sent in one request, in bytes.
///
/// Okta publishes no limit on the length of `search`. Front ends commonly refuse request lines
/// above 8 KiB (nginx's default) and some proxies above 4 KiB; 3000 encoded bytes leave room for
/// the path, `limit` and an `after` cursor under the stricter 4 KiB. One domain's clause is at
/// most ~650 encoded bytes (domains are at most 253 characters), so every domain fits.
pub const MAX_SEARCH_ENCODED_LEN: usize = 3000;

/// Longest DNS name (RFC 1035).
const MAX_DOMAIN_LEN: usize = 253;

/// The configured email domains: lower-case, validated, sorted, without duplicates, never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailDomains(Vec<String>);

impl EmailDomains {
    /// Validates and normalises a list of domains (a leading `@` and surrounding blanks are
    /// dropped; blank entries are ignored). An empty result is [`Error::NoEmailDomains`].
    pub fn new<I, S>(domains: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for raw in domains {
            let raw = raw.as_ref().trim();
            if raw.is_empty() {
                continue;
            }
            out.push(normalise_domain(raw)?);
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err(Error::NoEmailDomains);
        }
        Ok(Self(out))
    }

    /// Parses a comma-separated list, as `BATON_EMAIL_DOMAINS` holds it.
    pub fn parse_list(list: &str) -> Result<Self> {
        Self::new(list.split(','))
    }

    /// The normalised domains, sorted.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Whether the domain part (after the last `@`) of `address` is one of the configured
    /// domains, compared case-insensitively. An address without `@` never matches.
    ///
    /// The comparison is ASCII-only on purpose: configured domains are ASCII, and Unicode case
    /// folding would let look-alikes such as a Kelvin sign `K` match `k`.
    pub fn matches_address(&self, address: &str) -> bool {
        match address.rsplit_once('@') {
            Some((_, domain)) => self.0.binary_search_by(|d| cmp_ascii_ci(d, domain)).is_ok(),
            None => false,
        }
    }

    /// The scope rule for users: `profile.email`'s domain, or `profile.login`'s when the login
    /// is an address. `profile.secondEmail` is deliberately not an input (users can often edit
    /// it themselves; the email domains are the tenant boundary).
    pub fn user_in_scope(&self, login: &str, email: Option<&str>) -> bool {
        email.is_some_and(|e| self.matches_address(e)) || self.matches_address(login)
    }

    /// Server-side `search` expressions that together return a superset of the in-scope users
    /// (`co` also matches look-alikes; [`Self::user_in_scope`] is the exact check). Long
    /// domain lists are split so each expression stays within [`MAX_SEARCH_ENCODED_LEN`].
    pub fn user_search_expressions(&self) -> Vec<String> {
        let clauses = self
            .0
            .iter()
            .map(|d| format!("profile.email co \"@{d}\" or profile.login co \"@{d}\""));
        pack_or_clauses(clauses, MAX_SEARCH_ENCODED_LEN)
    }
}

/// Orders a configured (lower-case ASCII) domain against a candidate, ignoring ASCII case in
/// the candidate, so a sorted list can be binary-searched without allocating.
fn cmp_ascii_ci(configured: &str, candidate: &str) -> std::cmp::Ordering {
    configured
        .bytes()
        .cmp(candidate.bytes().map(|b| b.to_ascii_lowercase()))
}

fn normalise_domain(raw: &str) -> Result<String> {
    let invalid = |reason| Error::InvalidEmailDomain {
        domain: raw.to_string(),
        reason,
    };
    let domain = raw.strip_prefix('@').unwrap_or(raw).to_ascii_lowercase();
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(invalid("longer than 253 characters"));
    }
    if !domain
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(invalid(
            "only letters, digits, '-' and '.' are allowed (use the punycode form of IDNs)",
        ));
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(invalid("empty label"));
        }
        if label.len() > 63 {
            return Err(invalid("a label is longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a label starts or ends with '-'"));
        }
    }
    Ok(domain)
}

/// The optional group-name filter: a case-insensitive "contains" anywhere in `profile.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupNameFilter {
    raw: String,
    lower: String,
}

impl GroupNameFilter {
    /// Builds the filter; an empty string means "no filter" (`Ok(None)`), as an unset
    /// `BATON_GROUP_NAME_FILTER` does. Control characters are refused.
    pub fn new(raw: &str) -> Result<Option<Self>> {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.chars().any(char::is_control) {
            return Err(Error::InvalidGroupNameFilter(
                "control characters are not allowed",
            ));
        }
        Ok(Some(Self {
            raw: raw.to_string(),
            lower: raw.to_lowercase(),
        }))
    }

    /// The filter as configured.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The exact check: `name` contains the filter, ignoring case.
    pub fn matches(&self, name: &str) -> bool {
        name.to_lowercase().contains(&self.lower)
    }

    /// The server-side `search` expression (`profile.name co "..."`, with `"` and `\` escaped).
    pub fn search_expression(&self) -> String {
        format!("profile.name co \"{}\"", escape_search_value(&self.raw))
    }
}

/// Escapes a string for use inside a double-quoted `search` value (SCIM filter syntax).
pub fn escape_search_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Length of `s` once percent-encoded in a query string (unreserved bytes stay, others take 3).
pub fn encoded_len(s: &str) -> usize {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                1
            } else {
                3
            }
        })
        .sum()
}

/// Joins clauses with ` or ` into as few expressions as possible, each at most `limit`
/// encoded bytes. A single clause longer than `limit` still gets an expression of its own.
pub fn pack_or_clauses(clauses: impl IntoIterator<Item = String>, limit: usize) -> Vec<String> {
    const SEP: &str = " or ";
    let sep_len = encoded_len(SEP);
    let mut out = Vec::new();
    let mut current = String::new();
    let mut current_len = 0;
    for clause in clauses {
        let len = encoded_len(&clause);
        if !current.is_empty() && current_len + sep_len + len > limit {
            out.push(std::mem::take(&mut current));
            current_len = 0;
        }
        if !current.is_empty() {
            current.push_str(SEP);
            current_len += sep_len;
        }
        current.push_str(&clause);
        current_len += len;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains(list: &str) -> EmailDomains {
        EmailDomains::parse_list(list).unwrap()
    }

    #[test]
    fn domain_rule_is_exact_and_case_insensitive() {
        let d = domains("example.com");
        assert!(d.matches_address("alice@Example.COM"));
        assert!(d.matches_address("alice@example.com"));
        assert!(!d.matches_address("bob@eng.example.com"));
        assert!(!d.matches_address("x@example.community"));
        assert!(!d.matches_address("y@example.com.evil.io"));
        assert!(!d.matches_address("example.com"));
        assert!(!d.matches_address("z@xexample.com"));
        // Only the part after the last `@` counts.
        assert!(d.matches_address("\"a@evil.io\"@example.com"));
        assert!(!d.matches_address("a@example.com@evil.io"));
        // Unicode case folding must not create matches (Kelvin sign).
        assert!(
            !EmailDomains::parse_list("k.io")
                .unwrap()
                .matches_address("a@\u{212A}.io")
        );
    }

    #[test]
    fn login_counts_only_when_it_is_an_address() {
        let d = domains("example.com");
        assert!(d.user_in_scope("a@example.com", None));
        assert!(d.user_in_scope("plain-login", Some("a@EXAMPLE.com")));
        assert!(d.user_in_scope("a@other.org", Some("a@example.com")));
        assert!(d.user_in_scope("a@example.com", Some("a@other.org")));
        assert!(!d.user_in_scope("example.com", Some("a@other.org")));
        assert!(!d.user_in_scope("a@other.org", None));
    }

    #[test]
    fn domain_list_is_normalised() {
        let d = domains(" @Company.com, example.com,,EXAMPLE.COM ");
        assert_eq!(d.as_slice(), ["company.com", "example.com"]);
    }

    #[test]
    fn domain_list_rejects_empty_and_malformed() {
        assert!(matches!(
            EmailDomains::parse_list(""),
            Err(Error::NoEmailDomains)
        ));
        assert!(matches!(
            EmailDomains::parse_list(" , ,"),
            Err(Error::NoEmailDomains)
        ));
        for bad in [
            "a@b.com",
            "exa mple.com",
            "example..com",
            ".example.com",
            "-x.com",
            "x\".com",
            "*.example.com",
        ] {
            assert!(
                matches!(
                    EmailDomains::parse_list(bad),
                    Err(Error::InvalidEmailDomain { .. })
                ),
                "{bad} accepted"
            );
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(EmailDomains::parse_list(&long).is_err());
    }

    #[test]
    fn one_domain_gives_one_search() {
        assert_eq!(
            domains("example.com").user_search_expressions(),
            [r#"profile.email co "@example.com" or profile.login co "@example.com""#]
        );
    }

    #[test]
    fn long_domain_lists_are_split_under_the_limit_without_losing_any() {
        let list: Vec<String> = (0..200)
            .map(|i| format!("tenant{i:03}.example.com"))
            .collect();
        let d = EmailDomains::new(&list).unwrap();
        let searches = d.user_search_expressions();
        assert!(searches.len() > 1);
        for s in &searches {
            assert!(
                encoded_len(s) <= MAX_SEARCH_ENCODED_LEN,
                "{}",
                encoded_len(s)
            );
        }
        let mut seen: Vec<&str> = searches
            .iter()
            .flat_map(|s| s.split(" or "))
            .filter_map(|c| c.strip_prefix("profile.email co \"@"))
            .map(|c| c.trim_end_matches('"'))
            .collect();
        seen.sort();
        let mut expected: Vec<&str> = list.iter().map(String::as_str).collect();
        expected.sort();
        assert_eq!(seen, expected);
    }

    #[test]
    fn the_longest_domain_fits_in_one_search() {
        let label = "a".repeat(63);
        let longest = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        assert_eq!(longest.len(), 253);
        let searches = domains(&longest).user_search_expressions();
        assert_eq!(searches.len(), 1);
        assert!(encoded_len(&searches[0]) <= MAX_SEARCH_ENCODED_LEN);
    }

    #[test]
    fn group_filter_matches_anywhere_ignoring_case() {
        let f = GroupNameFilter::new("eng").unwrap().unwrap();
        assert!(f.matches("Engineering"));
        assert!(f.matches("Platform ENG team"));
        assert!(f.matches("reengineered"));
        assert!(!f.matches("Sales"));
        assert!(GroupNameFilter::new("").unwrap().is_none());
        assert!(GroupNameFilter::new("a\nb").is_err());
    }

    #[test]
    fn group_filter_search_escapes_quotes() {
        let f = GroupNameFilter::new(r#"R&D "core" \ x"#).unwrap().unwrap();
        assert_eq!(
            f.search_expression(),
            r#"profile.name co "R&D \"core\" \\ x""#
        );
    }

    #[test]
    fn packing_keeps_order_and_respects_the_limit() {
        let clauses = ["aaaa", "bbbb", "cccc"].map(String::from);
        assert_eq!(
            pack_or_clauses(clauses.clone(), 1000),
            ["aaaa or bbbb or cccc"]
        );
        // "aaaa or bbbb" is 4 + 12 + 4 = 20 encoded bytes.
        assert_eq!(
            pack_or_clauses(clauses.clone(), 20),
            ["aaaa or bbbb", "cccc"]
        );
        assert_eq!(pack_or_clauses(clauses, 3), ["aaaa", "bbbb", "cccc"]);
        assert!(pack_or_clauses(Vec::new(), 10).is_empty());
    }
}
