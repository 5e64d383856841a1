//! The `run` wiring end to end: CRD check, probes and metrics over HTTP, controllers, graceful
//! shutdown and Lease release, against a stand-in Kubernetes API on loopback.

use crate::runtime_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use okta_ciam_operator::controller::runtime::cli::RunArgs;
use okta_ciam_operator::controller::runtime::{Context, Error, Operator};
use okta_ciam_operator::okta::OktaClient;
use runtime_support::{OPERATOR_CRDS, kube_server};
use tokio::sync::oneshot;

const LIMIT: Duration = Duration::from_secs(60);

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: RunArgs,
}

fn args(extra: &[&str]) -> RunArgs {
    let argv = [
        "run",
        "--metrics-addr",
        "127.0.0.1:0",
        "--identity",
        "test-replica",
        "--lease-namespace",
        "default",
    ];
    Wrapper::try_parse_from(argv.iter().chain(extra))
        .unwrap()
        .args
}

async fn lease_holder(server: &kube_test_server::TestServer) -> Option<String> {
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(server.client(), "default");
    api.get_opt("okta-ciam-operator")
        .await
        .unwrap()?
        .spec?
        .holder_identity
}

/// Signals shutdown and waits, bounded, for the run to end without error.
async fn stop_cleanly(stop: oneshot::Sender<()>, run: tokio::task::JoinHandle<Result<(), Error>>) {
    stop.send(()).unwrap();
    tokio::time::timeout(LIMIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let resp = http()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Sets a flag when dropped, to prove a future was dropped (aborted).
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn start_fails_with_a_clear_message_when_the_crds_are_missing() {
    let (kube, _crds) = kube_server(&[]).await;
    let err = Operator::<()>::start(args(&[]), kube.client())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, Error::CrdsMissing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("oktaciamconnectors.oktaciam.io")
            && msg.contains("groupmemberships.oktaciam.io"),
        "{msg}"
    );
    assert!(msg.contains("kubectl apply -k manifests/"), "{msg}");

    let (kube, _crds) = kube_server(&OPERATOR_CRDS[..1]).await;
    let err = Operator::<()>::start(args(&[]), kube.client())
        .await
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("groupmemberships.oktaciam.io")
            && !msg.contains("oktaciamconnectors.oktaciam.io"),
        "{msg}"
    );
}

#[tokio::test]
async fn the_empty_controller_set_serves_probes_and_exits_cleanly_on_signal() {
    let (kube, _crds) = kube_server(OPERATOR_CRDS).await;
    let op = Operator::<OktaClient>::start(args(&[]), kube.client())
        .await
        .unwrap();
    let addr = op.metrics_addr();
    let readiness = op.context().readiness.subscribe();
    let (stop, signal) = oneshot::channel::<()>();
    let run = tokio::spawn(op.run(
        async {
            signal.await.ok();
        },
        okta_ciam_operator::controller::run_controllers,
    ));

    let mut readiness = readiness;
    tokio::time::timeout(LIMIT, readiness.wait_for(|r| *r))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(get(addr, "/readyz").await.0, 200);
    assert_eq!(get(addr, "/healthz").await.0, 200);
    let resp = http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("okta_ciam_okta_rate_limited_total 0"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE okta_ciam_managed_memberships gauge"),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"));

    stop_cleanly(stop, run).await;
    // The server is gone after run returns.
    assert!(
        http()
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn readiness_follows_the_controllers_flag_and_metrics_reach_the_endpoint() {
    let (kube, _crds) = kube_server(OPERATOR_CRDS).await;
    let op = Operator::<()>::start(args(&[]), kube.client())
        .await
        .unwrap();
    let addr = op.metrics_addr();
    let (synced_tx, synced_rx) = oneshot::channel::<()>();
    let (stop, signal) = oneshot::channel::<()>();
    let run = tokio::spawn(op.run(
        async {
            signal.await.ok();
        },
        |ctx: Context<()>| async move {
            synced_rx.await.ok();
            ctx.metrics.set_managed_memberships(3);
            ctx.readiness.set_ready();
            ctx.shutdown.cancelled().await;
            Ok::<(), std::io::Error>(())
        },
    ));
    assert_eq!(
        get(addr, "/readyz").await,
        (503, "caches not synced\n".into())
    );
    synced_tx.send(()).unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while get(addr, "/readyz").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        get(addr, "/metrics")
            .await
            .1
            .contains("okta_ciam_managed_memberships 3")
    );
    stop_cleanly(stop, run).await;
}

#[tokio::test]
async fn controllers_that_ignore_shutdown_are_abandoned_after_the_grace() {
    let (kube, _crds) = kube_server(OPERATOR_CRDS).await;
    let op = Operator::<()>::start(args(&["--shutdown-grace", "50ms"]), kube.client())
        .await
        .unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let result = tokio::time::timeout(
        LIMIT,
        op.run(
            async {
                started_rx.await.ok();
            },
            move |_ctx: Context<()>| async move {
                let _flag = flag;
                started_tx.send(()).ok();
                std::future::pending::<Result<(), std::io::Error>>().await
            },
        ),
    )
    .await
    .expect("run returns once the grace has elapsed");
    result.unwrap();
    assert!(
        dropped.load(Ordering::SeqCst),
        "the stuck controllers were dropped"
    );
}

#[tokio::test]
async fn failing_or_vanishing_controllers_fail_the_run() {
    let (kube, _crds) = kube_server(OPERATOR_CRDS).await;
    let op = Operator::<()>::start(args(&[]), kube.client())
        .await
        .unwrap();
    let err = op
        .run(std::future::pending(), |_ctx: Context<()>| async {
            Err(std::io::Error::other("watch failed"))
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Controllers(_)) && err.to_string().contains("watch failed"),
        "{err}"
    );

    let op = Operator::<()>::start(args(&[]), kube.client())
        .await
        .unwrap();
    let err = op
        .run(std::future::pending(), |_ctx: Context<()>| async {
            Ok::<(), std::io::Error>(())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ControllersExited), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_leader_election_controllers_write_only_in_a_term_and_the_lease_is_released() {
    let (kube, _crds) = kube_server(OPERATOR_CRDS).await;
    let op = Operator::<()>::start(args(&["--leader-elect"]), kube.client())
        .await
        .unwrap();
    let term_ended = Arc::new(AtomicBool::new(false));
    let ended = term_ended.clone();
    let (led_tx, led_rx) = oneshot::channel::<()>();
    let (stop, signal) = oneshot::channel::<()>();
    let run = tokio::spawn(op.run(
        async {
            signal.await.ok();
        },
        move |ctx: Context<()>| async move {
            ctx.readiness.set_ready();
            if let Some(term) = ctx.leadership.acquired().await {
                led_tx.send(()).ok();
                term.cancelled().await;
                ended.store(true, Ordering::SeqCst);
            }
            Ok::<(), std::io::Error>(())
        },
    ));
    tokio::time::timeout(LIMIT, led_rx).await.unwrap().unwrap();
    assert_eq!(lease_holder(&kube).await.as_deref(), Some("test-replica"));
    stop_cleanly(stop, run).await;
    assert!(term_ended.load(Ordering::SeqCst));
    assert_eq!(lease_holder(&kube).await, None, "released");
}
