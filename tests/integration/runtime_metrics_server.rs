//! The metrics and probe server over real HTTP on 127.0.0.1:0.

use std::time::Duration;

use okta_ciam_operator::controller::runtime::metrics::{Metrics, ReconcileResult};
use okta_ciam_operator::controller::runtime::server::{Liveness, MetricsServer, Readiness};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn probes_and_metrics_over_http() {
    let metrics = Metrics::new();
    let readiness = Readiness::new();
    let liveness = Liveness::new();
    let server = MetricsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        metrics.clone(),
        readiness.clone(),
        liveness.clone(),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);

    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/readyz").await.0, 503);
    readiness.set_ready();
    assert_eq!(get(addr, "/readyz").await.0, 200);
    readiness.set_not_ready();
    assert_eq!(get(addr, "/readyz").await.0, 503);

    metrics.record_reconcile(
        "OktaCiamConnector",
        ReconcileResult::Success,
        Duration::from_millis(250),
    );
    metrics.record_okta_requests("groups", 2);
    metrics.record_okta_responses(429, 2);
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"okta_ciam_reconciles_total{kind="OktaCiamConnector",result="success"} 1"#),
        "{body}"
    );
    assert!(
        body.contains(
            r#"okta_ciam_reconcile_duration_seconds_bucket{le="0.32",kind="OktaCiamConnector"} 1"#
        ),
        "{body}"
    );
    assert!(
        body.contains(r#"okta_ciam_okta_requests_total{family="groups"} 2"#),
        "{body}"
    );

    liveness.set_dead();
    assert_eq!(get(addr, "/healthz").await.0, 503);
    assert_eq!(get(addr, "/nope").await.0, 404);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn binding_a_taken_port_is_a_clear_error() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = MetricsServer::start(addr, Metrics::new(), Readiness::new(), Liveness::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
