//! `review export` and `review apply --dry-run` as an auditor runs them: on a snapshot that
//! the real `sync` command wrote from an adversarial org in the emulator.

use std::path::Path;

use crate::sync_cli::{run, run_sync_loopback, token_file};

/// Mixed-case addresses, look-alike domains, an imported group, and the built-in Everyone
/// group holding a role (so every member holds it through the group).
const ORG: &str = r#"
tokens: [review-token]
users:
  - {login: Alice.Admin@Example.COM, email: Alice.Admin@Example.COM, firstName: Alice, lastName: Admin}
  - {login: dave@example.com, email: dave@example.com, firstName: Dave, lastName: D}
  - {login: mallory@example.com.evil.io, email: mallory@example.com.evil.io, firstName: M, lastName: M}
  - {login: trent@sub.example.com, email: trent@sub.example.com, firstName: T, lastName: T}
groups:
  - {name: Everyone, type: BUILT_IN, members: [Alice.Admin@Example.COM, dave@example.com, mallory@example.com.evil.io, trent@sub.example.com]}
  - {name: Engineering, members: [Alice.Admin@Example.COM, dave@example.com, mallory@example.com.evil.io]}
  - {name: AD Staff, type: APP_GROUP, members: [dave@example.com]}
roleAssignments:
  - {group: Everyone, role: READ_ONLY_ADMIN}
  - {user: Alice.Admin@Example.COM, role: SUPER_ADMIN}
"#;

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

async fn snapshot_of_the_org(dir: &Path) {
    let handle = okta_emulator::start(okta_emulator::EmulatorConfig::new(
        okta_emulator::Fixture::from_yaml(ORG).unwrap(),
    ))
    .await
    .unwrap();
    let token = token_file(dir, &handle.token());
    let (domain, dir_owned) = (handle.domain(), dir.to_owned());
    // The binary runs on a blocking thread so the emulator keeps serving meanwhile.
    let out = tokio::task::spawn_blocking(move || run_sync_loopback(&domain, &token, &dir_owned))
        .await
        .unwrap();
    handle.shutdown().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_workbook_from_a_synced_snapshot_and_the_plan_of_its_decisions() {
    let dir = tempfile::tempdir().unwrap();
    snapshot_of_the_org(dir.path()).await;
    let out = run(
        &[
            "review",
            "export",
            "--snapshot",
            "snapshot.json",
            "--roles",
            "-o",
            "workbook.csv",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = format!(
        "sha256:{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(
            std::fs::read(dir.path().join("snapshot.json")).unwrap()
        )
    );
    let sheet = std::fs::read_to_string(dir.path().join("workbook.csv")).unwrap();
    let header: Vec<&str> = sheet.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows = csv_rows(&sheet);
    let summary: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}{}",
                r[col("userLogin")],
                r[col("kind")],
                r[col("targetName")],
                r[col("source")],
                match r[col("viaGroupName")].as_str() {
                    "" => String::new(),
                    g => format!(" via {g}"),
                }
            )
        })
        .collect();
    // Only the two users whose address is exactly in example.com; the built-in group's role
    // reaches each of them through the group.
    assert_eq!(
        summary,
        [
            "Alice.Admin@Example.COM groupMembership Engineering direct",
            "Alice.Admin@Example.COM groupMembership Everyone builtIn",
            "Alice.Admin@Example.COM adminRole Read-Only Administrator viaGroup via Everyone",
            "Alice.Admin@Example.COM adminRole Super Administrator direct",
            "dave@example.com groupMembership AD Staff imported",
            "dave@example.com groupMembership Engineering direct",
            "dave@example.com groupMembership Everyone builtIn",
            "dave@example.com adminRole Read-Only Administrator viaGroup via Everyone",
        ]
    );
    assert!(rows.iter().all(|r| r[col("snapshotDigest")] == digest));

    // Dave's reviewer revokes everything he has; Alice's keeps hers.
    let mut filled = csv::Writer::from_writer(Vec::new());
    filled.write_record(&header).unwrap();
    for mut row in rows {
        let revoke = row[col("userLogin")] == "dave@example.com";
        row[col("decision")] = if revoke { "Revoke" } else { "Approve" }.to_owned();
        row[col("reviewer")] = "carol@example.com".to_owned();
        filled.write_record(&row).unwrap();
    }
    std::fs::write(
        dir.path().join("decisions.csv"),
        filled.into_inner().unwrap(),
    )
    .unwrap();
    let apply = |extra: &[&str]| {
        let mut args = vec![
            "review",
            "apply",
            "--snapshot",
            "snapshot.json",
            "--roles",
            "--decisions",
            "decisions.csv",
        ];
        args.extend_from_slice(extra);
        run(&args, dir.path())
    };
    let out = apply(&["--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    let starts = [
        "MANUAL  dave@example.com  GroupMembership AD Staff",
        "REMOVE  dave@example.com  GroupMembership Engineering",
        "MANUAL  dave@example.com  GroupMembership Everyone",
        "MANUAL  dave@example.com  AdminRole Read-Only Administrator",
    ];
    for (line, start) in lines.iter().zip(starts) {
        assert!(
            line.starts_with(start),
            "{line:?} does not start with {start:?}"
        );
    }
    assert_eq!(
        lines[4],
        format!(
            "dry run: 8 items, 4 approved, 4 revoked (1 would be removed, 3 manual), 0 undecided; snapshot {digest}"
        )
    );

    // Without --dry-run nothing is done: file decisions are not authenticated.
    let out = apply(&[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: review apply only plans (--dry-run)"),
        "{stderr}"
    );
}
