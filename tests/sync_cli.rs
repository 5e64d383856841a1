//! The `sync` command as a user runs it: `sync --demo`, and one-line failures.

use std::process::{Command, Output};

use okta_ciam_operator::sync::snapshot::{GrantKind, PrincipalType, Snapshot};

fn run(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_okta-ciam-operator"))
        .args(args)
        .current_dir(dir)
        // The commercial connector's variables must not leak in from the developer's shell.
        .env_remove("BATON_DOMAIN")
        .env_remove("BATON_EMAIL_DOMAINS")
        .env_remove("BATON_GROUP_NAME_FILTER")
        .env_remove("BATON_API_TOKEN")
        .env_remove("OKTA_API_TOKEN")
        .env_remove("OKTA_CIAM_ALLOW_DOMAINS")
        .env_remove("OKTA_CIAM_API_TOKEN_FILE")
        .output()
        .expect("run the binary")
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn demo_syncs_the_embedded_org_into_snapshot_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["sync", "--demo"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("memberships"), "{stdout}");
    let s = Snapshot::read(&dir.path().join("snapshot.json")).unwrap();
    assert_eq!(s.email_domains, ["example.com", "example.org"]);
    assert_eq!(s.group_name_filter.as_deref(), Some("eng"));
    assert!(!s.users.is_empty());
    assert!(s.users.iter().all(|u| {
        let d = u
            .login
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase());
        let e = u
            .email
            .as_deref()
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase());
        [d, e]
            .into_iter()
            .flatten()
            .any(|d| d == "example.com" || d == "example.org")
    }));
    assert!(
        s.groups
            .iter()
            .all(|g| g.name.to_lowercase().contains("eng"))
    );
    assert!(
        s.grants
            .iter()
            .any(|g| g.kind == GrantKind::GroupMembership)
    );
    assert!(
        s.grants
            .iter()
            .any(|g| g.principal_type == PrincipalType::Group)
    );
    assert_eq!(s.stats.rate_limited, 0);
}

#[test]
fn missing_domain_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["sync", "--email-domains", "example.com"], dir.path());
    assert!(!out.status.success());
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("--domain"), "{lines:?}");
}

#[test]
fn empty_email_domains_fail_instead_of_meaning_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["sync", "--domain", "acme.okta.com", "--email-domains", ""],
        dir.path(),
    );
    assert!(!out.status.success());
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("no email domains"), "{lines:?}");
}

#[test]
fn a_domain_outside_okta_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "sync",
            "--domain",
            "intranet.corp.example",
            "--email-domains",
            "example.com",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("intranet.corp.example"), "{lines:?}");
    assert!(!dir.path().join("snapshot.json").exists());
}

#[test]
fn an_unreachable_org_fails_with_one_line() {
    // Bind and drop a listener so the port is (almost certainly) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "secret-token-value\n").unwrap();
    let domain = format!("127.0.0.1:{port}");
    let out = run(
        &[
            "sync",
            "--domain",
            &domain,
            "--insecure-loopback-http",
            "--email-domains",
            "example.com",
            "--api-token-file",
            token.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("secret-token-value"));
    let error_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "{text}");
}
