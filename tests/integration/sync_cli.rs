//! The `sync` command as a user runs it: `sync --demo`, and one-line failures.

use std::process::{Command, Output};

use okta_ciam_operator::sync::snapshot::{GrantKind, PrincipalType, Snapshot};

pub(crate) fn run(args: &[&str], dir: &std::path::Path) -> Output {
    run_with_env(args, dir, &[])
}

fn run_with_env(args: &[&str], dir: &std::path::Path, env: &[(&str, &str)]) -> Output {
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
        .env_remove("OKTA_CIAM_OAUTH_CLIENT_ID")
        .env_remove("OKTA_CIAM_OAUTH_PRIVATE_KEY_FILE")
        .env_remove("OKTA_CIAM_OAUTH_KEY_ID")
        .env_remove("OKTA_CIAM_OAUTH_SCOPES")
        // The default log level is under test: a developer's RUST_LOG must not change it.
        .env_remove("RUST_LOG")
        .env_remove("OKTA_CIAM_LOG_FORMAT")
        .envs(env.iter().copied())
        .output()
        .expect("run the binary")
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(String::from)
        .collect()
}

/// The failure shape docs/sync.md promises: exit code 1, stderr exactly one line and it starts
/// with `error:`, nothing on stdout, no snapshot written, and `secret` nowhere in the output.
/// Returns the error line.
fn assert_one_line_failure(out: &Output, dir: &std::path::Path, secret: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines = stderr_lines(out);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with("error: "), "{lines:?}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(!secret.is_empty());
    assert!(!stderr.contains(secret) && !stdout.contains(secret));
    assert!(!dir.join("snapshot.json").exists());
    lines[0].clone()
}

/// A file holding `token`, in `dir`.
pub(crate) fn token_file(dir: &std::path::Path, token: &str) -> String {
    let path = dir.join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Runs `sync` against the org at `domain` over plain loopback HTTP, with the token in the file
/// `token` and `example.com` as the email domain.
pub(crate) fn run_sync_loopback(domain: &str, token: &str, dir: &std::path::Path) -> Output {
    run(
        &[
            "sync",
            "--domain",
            domain,
            "--insecure-loopback-http",
            "--email-domains",
            "example.com",
            "--api-token-file",
            token,
        ],
        dir,
    )
}

const TOKEN: &str = "secret-token-value";

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
    let line = assert_one_line_failure(&out, dir.path(), TOKEN);
    assert!(line.contains("--domain"), "{line}");
}

#[test]
fn empty_email_domains_fail_instead_of_meaning_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["sync", "--domain", "acme.okta.com", "--email-domains", ""],
        dir.path(),
    );
    let line = assert_one_line_failure(&out, dir.path(), TOKEN);
    assert!(line.contains("no email domains"), "{line}");
}

#[test]
fn a_domain_outside_okta_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_env(
        &[
            "sync",
            "--domain",
            "intranet.corp.example",
            "--email-domains",
            "example.com",
        ],
        dir.path(),
        &[("BATON_API_TOKEN", TOKEN)],
    );
    let line = assert_one_line_failure(&out, dir.path(), TOKEN);
    assert!(line.contains("intranet.corp.example"), "{line}");
}

#[test]
fn an_invalid_flag_fails_with_one_line_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    for (args, names) in [
        (&["sync", "--no-such-flag"][..], "--no-such-flag"),
        (&["sync", "--max-concurrency", "0", "--demo"][..], "0"),
        (&["sync", "--budget-percent", "lots", "--demo"][..], "lots"),
    ] {
        let out = run_with_env(args, dir.path(), &[("BATON_API_TOKEN", TOKEN)]);
        let line = assert_one_line_failure(&out, dir.path(), TOKEN);
        assert!(line.contains(names), "{args:?}: {line}");
    }
}

#[test]
fn help_and_version_still_succeed_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["sync", "--help"][..], &["--help"], &["--version"]] {
        let out = run(args, dir.path());
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
        assert!(out.stderr.is_empty(), "{args:?}");
    }
    let help = run(&["sync", "--help"], dir.path());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--email-domains"));
}

#[test]
fn an_unreachable_org_fails_with_one_line() {
    // Bind and drop a listener so the port is (almost certainly) closed. The client retries
    // the refused connections before giving up; those retries must not add lines.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), TOKEN);
    let domain = format!("127.0.0.1:{port}");
    let out = run_sync_loopback(&domain, &token, dir.path());
    assert_one_line_failure(&out, dir.path(), TOKEN);
}

#[tokio::test]
async fn a_rejected_token_fails_with_one_line() {
    let handle = okta_emulator::start(okta_emulator::EmulatorConfig::new(
        okta_emulator::Fixture::demo(),
    ))
    .await
    .unwrap();
    let wrong = format!("not-{}", handle.token());
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), &wrong);
    let domain = handle.domain();
    let dir_path = dir.path().to_owned();
    // The binary runs on a blocking thread so the emulator keeps serving meanwhile.
    let out = tokio::task::spawn_blocking(move || run_sync_loopback(&domain, &token, &dir_path))
        .await
        .unwrap();
    let line = assert_one_line_failure(&out, dir.path(), &wrong);
    assert!(line.contains("rejected the credentials"), "{line}");
    let stats = handle.stats();
    handle.shutdown().await;
    assert!(
        stats.requests.total > 0,
        "the binary never reached the emulator"
    );
}

/// An emulated org with one service app whose public key is `key`'s, granted `scopes`.
async fn oauth_org(
    key: &okta_ciam_operator::okta::PrivateKey,
    scopes: &[&str],
) -> okta_emulator::EmulatorHandle {
    let mut fixture = okta_emulator::Fixture::demo();
    fixture.service_apps = vec![okta_emulator::FixtureServiceApp::new(
        "0oaSyncApp",
        vec![key.public_jwk()],
        scopes,
    )];
    okta_emulator::start(okta_emulator::EmulatorConfig::new(fixture))
        .await
        .unwrap()
}

#[tokio::test]
async fn oauth_from_the_environment_syncs_and_a_missing_scope_fails_with_one_line() {
    use okta_ciam_operator::okta::PrivateKey;
    let (key, pem) = PrivateKey::generate_es256();
    let handle = oauth_org(
        &key,
        &[
            "okta.orgs.read",
            "okta.users.read",
            "okta.groups.read",
            "okta.roles.read",
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, &pem).unwrap();
    let key_path = key_path.to_str().unwrap().to_owned();
    let sync = |scopes: &'static str| {
        let (domain, key_path, dir) = (handle.domain(), key_path.clone(), dir.path().to_owned());
        // The binary runs on a blocking thread so the emulator keeps serving meanwhile.
        tokio::task::spawn_blocking(move || {
            run_with_env(
                &["sync", "--insecure-loopback-http", "--domain", &domain],
                &dir,
                &[
                    ("BATON_EMAIL_DOMAINS", "example.com"),
                    ("OKTA_CIAM_OAUTH_CLIENT_ID", "0oaSyncApp"),
                    ("OKTA_CIAM_OAUTH_PRIVATE_KEY_FILE", &key_path),
                    ("OKTA_CIAM_OAUTH_SCOPES", scopes),
                ],
            )
        })
    };
    let out = sync("").await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let snapshot = Snapshot::read(&dir.path().join("snapshot.json")).unwrap();
    assert!(!snapshot.users.is_empty());
    let key_body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!stderr.contains(&key_body[..40]));
    std::fs::remove_file(dir.path().join("snapshot.json")).unwrap();
    // Without okta.roles.read the sync stops at the first role read (after the progress
    // lines of users and groups), naming the scope.
    let out = sync("okta.orgs.read,okta.users.read,okta.groups.read")
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines = stderr_lines(&out);
    let last = lines.last().unwrap();
    assert!(last.starts_with("error: "), "{lines:?}");
    assert!(last.contains("lacks scope okta.roles.read"), "{last}");
    assert!(!lines.iter().any(|l| l.contains(&key_body[..40])));
    assert!(!dir.path().join("snapshot.json").exists());
    handle.shutdown().await;
}

#[tokio::test]
async fn an_unreadable_private_key_fails_with_one_line_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "U0VDUkVUS0VZTUFURVJJQUwxMjM0NTY3ODkw";
    let path = dir.path().join("key.pem");
    std::fs::write(
        &path,
        format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    let out = run(
        &[
            "sync",
            "--domain",
            "acme.okta.com",
            "--email-domains",
            "example.com",
            "--oauth-client-id",
            "0oa1",
            "--oauth-private-key-file",
            path.to_str().unwrap(),
        ],
        dir.path(),
    );
    let line = assert_one_line_failure(&out, dir.path(), secret);
    assert!(line.contains("private key was rejected"), "{line}");
}
