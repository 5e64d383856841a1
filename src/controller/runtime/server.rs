//! The HTTP server for metrics and probes: `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::{Error, Result};

/// Whether the controllers' caches have synced. Shared by every clone; the controllers set it,
/// `/readyz` reads it. Leadership plays no part: a follower with synced caches is ready.
#[derive(Clone, Debug)]
pub struct Readiness {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// A flag that starts not ready.
    pub fn new() -> Self {
        Readiness {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Marks the process ready (caches synced).
    pub fn set_ready(&self) {
        self.tx.send_replace(true);
    }

    /// Marks the process not ready (e.g. a watch had to be restarted from scratch).
    pub fn set_not_ready(&self) {
        self.tx.send_replace(false);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        *self.tx.borrow()
    }

    /// A receiver of readiness changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

/// Whether the process still runs its loops; `/healthz` answers 503 once it does not.
#[derive(Clone, Debug)]
pub struct Liveness {
    alive: Arc<AtomicBool>,
}

impl Default for Liveness {
    fn default() -> Self {
        Self::new()
    }
}

impl Liveness {
    /// A flag that starts alive.
    pub fn new() -> Self {
        Liveness {
            alive: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Records that the loops have stopped.
    pub fn set_dead(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }

    /// Whether the loops still run.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    readiness: Readiness,
    liveness: Liveness,
}

/// The Prometheus content type for the OpenMetrics text that `prometheus-client` writes.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Builds the router (exposed for tests that drive it without a socket).
pub fn router(metrics: Metrics, readiness: Readiness, liveness: Liveness) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            metrics,
            readiness,
            liveness,
        })
}

async fn serve_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    if state.liveness.is_alive() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "stopped\n")
    }
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced\n")
    }
}

/// A bound, serving metrics server.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free port) and serves in the background.
    pub async fn start(
        addr: SocketAddr,
        metrics: Metrics,
        readiness: Readiness,
        liveness: Liveness,
    ) -> Result<MetricsServer> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::MetricsBind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| Error::MetricsBind { addr, source })?;
        let stop = CancellationToken::new();
        let app = router(metrics, readiness, liveness);
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        });
        tracing::info!(addr = %local_addr, "serving /metrics, /healthz and /readyz");
        Ok(MetricsServer {
            local_addr,
            stop,
            task,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits for open ones to finish.
    pub async fn shutdown(self) -> Result<()> {
        self.stop.cancel();
        match self.task.await {
            Ok(result) => result.map_err(Error::MetricsServe),
            Err(join) => Err(Error::MetricsServe(std::io::Error::other(join))),
        }
    }
}
