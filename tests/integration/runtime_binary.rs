//! The `okta-ciam-operator run` binary: exit codes at start and on SIGTERM, against the
//! Kubernetes API test server through a kubeconfig.

use crate::runtime_support;

use std::process::Stdio;
use std::time::Duration;

use runtime_support::{OPERATOR_CRDS, kube_server};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(60);

/// The `run` binary; the child is SIGKILLed when its handle is dropped (a failed assertion or a
/// timeout included), so no test leaves an operator behind.
fn operator(kubeconfig: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_okta-ciam-operator"));
    cmd.args([
        "--log-format",
        "json",
        "run",
        "--metrics-addr",
        "127.0.0.1:0",
    ])
    .env("KUBECONFIG", kubeconfig)
    .env("RUST_LOG", "info")
    .env_remove("OKTA_CIAM_LEADER_ELECT")
    .env_remove("KUBERNETES_SERVICE_HOST")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_non_zero_with_a_clear_message_without_the_crds() {
    let (server, dir) = kube_server(&[]).await;
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    // On timeout the output future, and with it the child, is dropped: kill_on_drop kills it.
    let output = tokio::time::timeout(LIMIT, operator(&kubeconfig).output())
        .await
        .expect("the operator exits without the CRDs")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CRDs not installed"), "{stderr}");
    assert!(stderr.contains("kubectl apply -k manifests/"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_zero_on_sigterm() {
    let (server, dir) = kube_server(OPERATOR_CRDS).await;
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let mut child = operator(&kubeconfig).spawn().unwrap();
    // Forward stderr lines; the reader also keeps the pipe drained.
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let serving = tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.recv().await {
            let done = line.contains("serving /metrics");
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await
    .expect("the operator starts serving");
    assert!(serving, "stderr closed before serving: {seen:?}");

    let pid = child.id().expect("the child has not been reaped yet");
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our unreaped child, so the
    // id cannot have been reused by another process.
    let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    let status = tokio::time::timeout(LIMIT, child.wait())
        .await
        .expect("the operator exits after SIGTERM")
        .unwrap();
    // The stderr reader ends when the pipe closes; collect what it has left, bounded.
    let _ = tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.recv().await {
            seen.push(line);
        }
    })
    .await;
    assert!(status.success(), "{status:?}: {seen:?}");
    assert!(
        seen.iter().any(|l| l.contains("received SIGTERM")),
        "{seen:?}"
    );
    // Idle (and possibly still listing its caches), it has nothing to wait for: it must not
    // sit out the shutdown grace and abandon work.
    assert!(
        !seen.iter().any(|l| l.contains("shutdown grace elapsed")),
        "{seen:?}"
    );
}
