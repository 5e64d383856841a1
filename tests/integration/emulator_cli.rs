//! The standalone `okta-ciam-operator emulator` process: one stdout line with its URL, serves,
//! and stops on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

#[tokio::test]
async fn standalone_emulator_prints_its_url_serves_and_stops_on_sigterm() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_okta-ciam-operator"))
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--generate",
            "users=25,groups=4",
            "--seed",
            "5",
            "--rate-limit-window-seconds",
            "2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(60), stdout.read_line(&mut line))
        .await
        .expect("the URL line arrives")
        .unwrap();
    let url = line
        .trim_end()
        .strip_prefix("OKTA_EMULATOR_URL=http://127.0.0.1:")
        .map(|port| format!("http://127.0.0.1:{port}"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));

    let client = reqwest::Client::new();
    let users: serde_json::Value = client
        .get(format!("{url}/api/v1/users?search=id%20pr"))
        .header("Authorization", "SSWS test-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users.as_array().unwrap().len(), 25);
    let resp = client
        .get(format!("{url}/api/v1/org"))
        .header("Authorization", "SSWS test-token")
        .send()
        .await
        .unwrap();
    let reset: i64 = resp.headers()["x-rate-limit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        reset <= jiff::Timestamp::now().as_second() + 3,
        "2 s windows"
    );

    let pid = libc::pid_t::try_from(child.id().expect("not reaped yet")).expect("pid fits");
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our unreaped child, so the
    // id cannot have been reused by another process.
    let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    assert!(
        rest.is_empty(),
        "exactly one stdout line, got more: {rest:?}"
    );
}

#[tokio::test]
async fn bad_arguments_fail_with_a_reason() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_okta-ciam-operator"))
        .args(["emulator", "--fixture", "/nonexistent/org.yaml"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/org.yaml"));
}
