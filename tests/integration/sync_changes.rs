//! The access change log as a user sees it: `sync` records what changed since the snapshot it
//! replaces, and `diff old.json new.json` prints the same as a table or JSON.

use crate::sync_support;

use std::process::{Command, Output};

use okta_ciam_operator::sync::changes::Changes;
use okta_ciam_operator::sync::snapshot::{Grant, Snapshot};
use okta_emulator::{EmulatorHandle, Fixture};
use sync_support::start;

fn fixture() -> Fixture {
    Fixture::from_yaml(
        "tokens: [test-token]\n\
         users:\n\
         \x20 - {login: alice@example.com, email: alice@example.com}\n\
         \x20 - {login: bob@example.com, email: bob@example.com}\n\
         \x20 - {login: carol@example.com, email: carol@example.com}\n\
         groups:\n\
         \x20 - {name: Engineering, type: OKTA_GROUP, members: [alice@example.com, bob@example.com]}\n\
         \x20 - {name: Support, type: OKTA_GROUP, members: [carol@example.com]}\n\
         roleAssignments:\n\
         \x20 - {group: Support, role: HELP_DESK_ADMIN}\n",
    )
    .expect("fixture")
}

fn binary(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_okta-ciam-operator"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("BATON_API_TOKEN")
        .env_remove("OKTA_API_TOKEN")
        .output()
        .expect("run the binary")
}

fn sync(h: &EmulatorHandle, dir: &std::path::Path) -> String {
    std::fs::write(dir.join("token"), h.token()).unwrap();
    let out = binary(
        &[
            "sync",
            "--domain",
            &h.domain(),
            "--insecure-loopback-http",
            "--email-domains",
            "example.com",
            "--api-token-file",
            "token",
        ],
        dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_records_changes_and_diff_prints_them() {
    let h = start(fixture()).await;
    let dir = tempfile::tempdir().unwrap();
    let first = sync(&h, dir.path());
    assert!(!first.contains("changes"), "no previous snapshot: {first}");
    std::fs::copy(
        dir.path().join("snapshot.json"),
        dir.path().join("old.json"),
    )
    .unwrap();

    let (alice, bob, carol) = (
        h.user_id("alice@example.com").unwrap(),
        h.user_id("bob@example.com").unwrap(),
        h.user_id("carol@example.com").unwrap(),
    );
    let (eng, support) = (
        h.group_id("Engineering").unwrap(),
        h.group_id("Support").unwrap(),
    );
    assert!(h.add_membership(&eng, &carol).unwrap());
    assert!(h.remove_membership(&eng, &alice).unwrap());
    // Bob moves to another tenant's domain: out of scope, and so is his membership.
    h.set_user_profile(&bob, "bob@other.org", "bob@other.org")
        .unwrap();

    let second = sync(&h, dir.path());
    assert!(
        second.contains("users +0 -1, groups +0 -0, memberships +1 -2, role grants +0 -0"),
        "{second}"
    );
    let new = Snapshot::read(&dir.path().join("snapshot.json")).unwrap();
    let old = Snapshot::read(&dir.path().join("old.json")).unwrap();
    let changes = new
        .changes
        .clone()
        .expect("changes against the replaced file");
    assert_eq!(changes.since, old.synced_at);
    let ids = |l: &[okta_ciam_operator::sync::changes::PrincipalChange]| {
        l.iter().map(|p| p.id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&changes.users_removed), std::slice::from_ref(&bob));
    assert!(changes.users_added.is_empty() && changes.groups_added.is_empty());
    let grants = |l: &[okta_ciam_operator::sync::changes::GrantChange]| {
        l.iter().map(|g| g.grant.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        grants(&changes.grants_added),
        [Grant::membership(&carol, &eng)]
    );
    let mut removed = vec![
        Grant::membership(&alice, &eng),
        Grant::membership(&bob, &eng),
    ];
    removed.sort();
    assert_eq!(grants(&changes.grants_removed), removed);
    // The group-held role did not change and is not listed.
    assert!(!format!("{changes:?}").contains(&support));

    // `diff` computes the same from the two files.
    let json = binary(
        &["diff", "old.json", "snapshot.json", "--format", "json"],
        dir.path(),
    );
    assert!(json.status.success());
    let from_diff: Changes = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(from_diff, changes);
    let table = binary(&["diff", "old.json", "snapshot.json"], dir.path());
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("memberships         1        2"), "{table}");
    assert!(
        table.contains(&format!("- user {bob} bob@example.com")),
        "{table}"
    );
    assert_eq!(table.lines().count(), 6 + 4, "{table}");

    // Snapshots of different orgs are refused with one line.
    let mut foreign = old.clone();
    foreign.domain = "other.okta.com".into();
    foreign
        .write_atomic(&dir.path().join("foreign.json"))
        .unwrap();
    let refused = binary(&["diff", "foreign.json", "snapshot.json"], dir.path());
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: the snapshots are of different orgs"),
        "{err}"
    );
    h.shutdown().await;
}
