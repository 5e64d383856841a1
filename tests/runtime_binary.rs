//! The `okta-ciam-operator run` binary: exit codes at start and on SIGTERM, against the
//! Kubernetes API test server through a kubeconfig.

mod runtime_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use runtime_support::{BOTH_CRDS, kube_server};

const LIMIT: Duration = Duration::from_secs(60);

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
    .stderr(Stdio::piped());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_non_zero_with_a_clear_message_without_the_crds() {
    let (server, dir) = kube_server(&[]).await;
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let output = tokio::task::spawn_blocking(move || operator(&kubeconfig).output().unwrap());
    let output = tokio::time::timeout(LIMIT, output).await.unwrap().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CRDs not installed"), "{stderr}");
    assert!(stderr.contains("kubectl apply -k manifests/"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_zero_on_sigterm() {
    let (server, dir) = kube_server(BOTH_CRDS).await;
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let mut child = operator(&kubeconfig).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    // Forward stderr lines; the reader also keeps the pipe drained.
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
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

    // std has no way to send SIGTERM; `kill` is on every Linux machine.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(
        LIMIT,
        tokio::task::spawn_blocking(move || child.wait().unwrap()),
    )
    .await
    .expect("the operator exits after SIGTERM")
    .unwrap();
    while let Ok(line) = lines.try_recv() {
        seen.push(line);
    }
    assert!(status.success(), "{status:?}: {seen:?}");
    assert!(
        seen.iter().any(|l| l.contains("received SIGTERM")),
        "{seen:?}"
    );
}
