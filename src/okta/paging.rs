//! Pagination links: parsing `Link` headers and checking where a next link points.

use url::Url;

/// The `rel="next"` target among `Link` header values. Okta sends one header line per
/// relation, but comma-joined values (as proxies produce) are handled too, as are quoted
/// and unquoted parameters, extra whitespace and multi-valued `rel`.
pub(crate) fn next_link<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    values
        .into_iter()
        .flat_map(parse_link_value)
        .find(|(_, rels)| rels.iter().any(|r| r.eq_ignore_ascii_case("next")))
        .map(|(target, _)| target)
}

/// Parses one `Link` header value into `(target, rel values)` pairs. Malformed entries are
/// skipped rather than failing the whole header.
fn parse_link_value(value: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            return out;
        }
        let Some(after_lt) = rest.strip_prefix('<') else {
            // Not a link-value: skip to the next comma.
            rest = rest.split_once(',').map_or("", |(_, r)| r);
            continue;
        };
        let Some((target, after)) = after_lt.split_once('>') else {
            return out;
        };
        rest = after;
        let mut rels = Vec::new();
        // Parameters: `; name=value` or `; name="quoted value"`, until a comma or the end.
        loop {
            rest = rest.trim_start();
            let Some(params) = rest.strip_prefix(';') else {
                break;
            };
            let params = params.trim_start();
            let name_end = params.find(['=', ';', ',']).unwrap_or(params.len());
            let name = params[..name_end].trim();
            rest = &params[name_end..];
            let mut param_value = String::new();
            if let Some(v) = rest.strip_prefix('=') {
                let v = v.trim_start();
                if let Some(quoted) = v.strip_prefix('"') {
                    let mut chars = quoted.char_indices();
                    let mut end = quoted.len();
                    while let Some((i, c)) = chars.next() {
                        match c {
                            '\\' => {
                                if let Some((_, escaped)) = chars.next() {
                                    param_value.push(escaped);
                                }
                            }
                            '"' => {
                                end = i + 1;
                                break;
                            }
                            c => param_value.push(c),
                        }
                    }
                    rest = &quoted[end..];
                } else {
                    let end = v.find([';', ',']).unwrap_or(v.len());
                    param_value = v[..end].trim().to_owned();
                    rest = &v[end..];
                }
            }
            if name.eq_ignore_ascii_case("rel") {
                rels.extend(param_value.split_whitespace().map(str::to_owned));
            }
        }
        out.push((target.trim().to_owned(), rels));
    }
}

/// Resolves a next link against the current URL and refuses links that leave the org's
/// origin (scheme, host and port) or point back at the current page.
pub(crate) fn check_next(base: &Url, current: &Url, link: &str) -> Result<Url, &'static str> {
    let next = current.join(link).map_err(|_| "not a valid URL")?;
    let same_origin = next.scheme() == base.scheme()
        && next.host_str() == base.host_str()
        && next.port_or_known_default() == base.port_or_known_default();
    if !same_origin {
        return Err("it leaves the org's origin");
    }
    if next.username() != "" || next.password().is_some() {
        return Err("it carries user information");
    }
    if &next == current {
        return Err("it points at the current page");
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_relation() {
        let lines = [
            r#"<https://a.okta.com/api/v1/users?limit=2>; rel="self""#,
            r#"<https://a.okta.com/api/v1/users?after=00u2&limit=2>; rel="next""#,
        ];
        assert_eq!(
            next_link(lines).as_deref(),
            Some("https://a.okta.com/api/v1/users?after=00u2&limit=2")
        );
    }

    #[test]
    fn comma_joined_and_odd_spacing() {
        let line = r#"<https://a.okta.com/x?a=1,2>;rel=self ,  <https://a.okta.com/x?after=b> ;  REL = "prev next""#;
        assert_eq!(
            next_link([line]).as_deref(),
            Some("https://a.okta.com/x?after=b")
        );
        let unquoted = r#"<https://a/x?q="a,b">; title="a, \"b\"; c"; rel=next"#;
        assert_eq!(
            next_link([unquoted]).as_deref(),
            Some(r#"https://a/x?q="a,b""#)
        );
    }

    #[test]
    fn no_next_or_garbage() {
        assert_eq!(next_link([r#"<https://a/x>; rel="self""#]), None);
        assert_eq!(next_link(["garbage, more garbage"]), None);
        assert_eq!(next_link(["<unterminated; rel=next"]), None);
        assert_eq!(next_link(std::iter::empty::<&str>()), None);
        assert_eq!(
            next_link(["junk, <https://a/n>; rel=next"]).as_deref(),
            Some("https://a/n")
        );
    }

    #[test]
    fn next_must_stay_on_origin() {
        let base = Url::parse("https://acme.okta.com/").unwrap();
        let current = Url::parse("https://acme.okta.com/api/v1/users").unwrap();
        assert!(
            check_next(
                &base,
                &current,
                "https://acme.okta.com/api/v1/users?after=x"
            )
            .is_ok()
        );
        assert!(
            check_next(
                &base,
                &current,
                "https://acme.okta.com:443/api/v1/users?after=x"
            )
            .is_ok()
        );
        assert!(check_next(&base, &current, "/api/v1/users?after=x").is_ok());
        for bad in [
            "https://evil.io/api/v1/users?after=x",
            "http://acme.okta.com/api/v1/users?after=x",
            "https://acme.okta.com:8443/api/v1/users?after=x",
            "https://u:p@acme.okta.com/api/v1/users?after=x",
            "//evil.io/x",
            "https://acme.okta.com/api/v1/users",
        ] {
            assert!(check_next(&base, &current, bad).is_err(), "{bad}");
        }
    }
}
