//! The operator runtime behind `okta-ciam-operator run`: everything around the reconcilers.
//!
//! - [`cli::RunArgs`]: flags and their environment twins.
//! - [`crds::check_crds`]: refuses to start without the CRDs.
//! - [`metrics::Metrics`] and [`server::MetricsServer`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`leader`]: Lease-based leader election; [`leader::Leadership`] tells controllers when
//!   they may write.
//! - [`clients::ClientRegistry`]: one Okta client and one index per connector, and
//!   [`breaker::RevocationBreaker`], the mass-revocation circuit breaker.
//! - [`Operator`]: wires these together, runs the controllers and shuts down gracefully.
//!
//! Controllers plug in as a function from [`Context`] to a future
//! ([`controllers::Controller`]; which ones run is wired in [`crate::controller::wiring`],
//! not here); they must
//! - start their watches whether or not this replica leads (followers keep warm caches and
//!   report ready), and call [`server::Readiness::set_ready`] once those caches are synced,
//! - write to Kubernetes or Okta only while holding a live leadership term token
//!   ([`leader::Leadership::acquired`]) and stop writing the moment it is cancelled,
//! - return soon after [`Context::shutdown`] is cancelled, and never leave detached tasks that
//!   write after returning (own them, e.g. in a `JoinSet`, so dropping the future aborts them).

pub mod breaker;
pub mod cli;
pub mod clients;
pub mod controllers;
pub mod crds;
pub mod leader;
pub mod metrics;
pub mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use self::cli::RunArgs;
use self::clients::ClientRegistry;
use self::leader::{ElectionHandle, LeaderElector, Leadership};
use self::metrics::Metrics;
use self::server::{Liveness, MetricsServer, Readiness};
use crate::okta::{DomainPolicy, OktaClient};

/// Errors of the runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag's value cannot work.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    /// No usable kubeconfig or in-cluster configuration.
    #[error("cannot configure the Kubernetes client: {0}")]
    KubeConfig(#[source] kube::Error),
    /// The CRDs are not installed.
    #[error("CRDs not installed ({missing}): apply crds/ or `kubectl apply -k manifests/`")]
    CrdsMissing {
        /// Comma-separated names of the missing CRDs.
        missing: String,
    },
    /// Discovery failed for another reason than a missing API group.
    #[error("cannot check whether the CRDs are installed: {0}")]
    CrdCheck(#[source] kube::Error),
    /// The metrics address cannot be bound.
    #[error("cannot serve metrics on {addr}: {source}")]
    MetricsBind {
        /// The requested address.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The metrics server stopped with an error.
    #[error("metrics server failed: {0}")]
    MetricsServe(#[source] std::io::Error),
    /// A call on the leader election Lease failed.
    #[error("lease {namespace}/{name}: {source}")]
    Lease {
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// SIGTERM/SIGINT handlers cannot be installed.
    #[error("cannot listen for shutdown signals: {0}")]
    Signal(#[source] std::io::Error),
    /// The controllers failed.
    #[error("controllers failed: {0}")]
    Controllers(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The controllers returned although no shutdown was asked for.
    #[error("controllers stopped unexpectedly")]
    ControllersExited,
}

/// Result of the runtime layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What every controller gets. Cheap to clone. `C` is the per-connector client type: the Okta
/// client in the operator, anything cloneable in tests of the wiring.
#[derive(Clone)]
pub struct Context<C = OktaClient> {
    /// The Kubernetes client.
    pub kube: kube::Client,
    /// Namespaces to watch; empty means all namespaces.
    pub namespaces: Vec<String>,
    /// Which Okta domains connectors may name (`--allow-domain`, `--insecure-loopback-http`).
    pub domain_policy: DomainPolicy,
    /// Metrics to record reconciles, Okta requests and memberships in.
    pub metrics: Metrics,
    /// Okta clients and indexes per connector, shared by both reconcilers.
    pub clients: Arc<ClientRegistry<C>>,
    /// Set once the controllers' caches are synced; served on `/readyz`.
    pub readiness: Readiness,
    /// Whether this replica may write, and the current term's token.
    pub leadership: Leadership,
    /// Cancelled on SIGTERM/SIGINT: stop starting work and return promptly.
    pub shutdown: CancellationToken,
}

impl<C> std::fmt::Debug for Context<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("namespaces", &self.namespaces)
            .field("domain_policy", &self.domain_policy)
            .field("leader", &self.leadership.is_leader())
            .field("ready", &self.readiness.is_ready())
            .finish_non_exhaustive()
    }
}

/// A started operator: CRDs checked, metrics served, election joined. Call [`Operator::run`]
/// to drive the controllers until shutdown.
pub struct Operator<C = OktaClient> {
    args: RunArgs,
    context: Context<C>,
    liveness: Liveness,
    server: MetricsServer,
    election: Option<ElectionHandle>,
}

impl<C: Clone + Send + Sync + 'static> Operator<C> {
    /// Validates the arguments, checks the CRDs, starts the metrics server and, with
    /// `--leader-elect`, joins the election.
    pub async fn start(args: RunArgs, kube: kube::Client) -> Result<Self> {
        args.validate()?;
        let lease = args.lease_settings(kube.default_namespace())?;
        crds::check_crds(&kube).await?;
        let metrics = Metrics::new();
        let readiness = Readiness::new();
        let liveness = Liveness::new();
        let server = MetricsServer::start(
            args.metrics_addr,
            metrics.clone(),
            readiness.clone(),
            liveness.clone(),
        )
        .await?;
        let shutdown = CancellationToken::new();
        let (leadership, election) = match lease {
            Some(settings) => {
                let handle = LeaderElector::spawn(kube.clone(), settings, &shutdown)?;
                (handle.leadership(), Some(handle))
            }
            None => (Leadership::always(&shutdown), None),
        };
        let clients = Arc::new(ClientRegistry::new());
        // The breaker's window survives restarts and failovers in the connectors' status.
        clients.revocations().persist_in(kube.clone());
        let context = Context {
            kube,
            namespaces: args.watched_namespaces(),
            domain_policy: DomainPolicy {
                allowed_suffixes: args.allowed_domain_suffixes(),
                insecure_loopback_http: args.insecure_loopback_http,
            },
            metrics,
            clients,
            readiness,
            leadership,
            shutdown,
        };
        Ok(Operator {
            args,
            context,
            liveness,
            server,
            election,
        })
    }

    /// The address the metrics server is bound to.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The controllers' context (a clone).
    pub fn context(&self) -> Context<C> {
        self.context.clone()
    }

    /// Runs `controllers` until `shutdown_signal` resolves, then cancels [`Context::shutdown`],
    /// waits up to `--shutdown-grace` for the controllers (abandoning them after that), releases
    /// the Lease and stops the metrics server. Controllers that stop on their own end the run
    /// with an error.
    pub async fn run<F, Fut, E>(
        self,
        shutdown_signal: impl Future<Output = ()>,
        controllers: F,
    ) -> Result<()>
    where
        F: FnOnce(Context<C>) -> Fut,
        Fut: Future<Output = std::result::Result<(), E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Operator {
            args,
            context,
            liveness,
            server,
            election,
        } = self;
        let shutdown = context.shutdown.clone();
        // Boxed so that dropping it below really drops (and so aborts) the controllers.
        let mut controllers = Box::pin(controllers(context));
        let outcome = tokio::select! {
            ended = &mut controllers => Some(ended),
            () = shutdown_signal => None,
        };
        shutdown.cancel();
        let result = match outcome {
            Some(Ok(())) => Err(Error::ControllersExited),
            Some(Err(e)) => Err(Error::Controllers(e.into())),
            None => {
                tracing::info!(grace = ?args.shutdown_grace, "shutting down");
                match tokio::time::timeout(args.shutdown_grace, &mut controllers).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(Error::Controllers(e.into())),
                    Err(_) => {
                        tracing::warn!("shutdown grace elapsed; abandoning in-flight work");
                        Ok(())
                    }
                }
            }
        };
        // Dropping the future aborts whatever it still owns, before the Lease is released.
        drop(controllers);
        liveness.set_dead();
        if let Some(election) = election {
            election.release().await;
        }
        if let Err(e) = server.shutdown().await {
            tracing::warn!(error = %e, "metrics server stopped with an error");
        }
        result
    }
}

/// Waits for SIGTERM or SIGINT. The handlers are installed before this returns, so a signal
/// arriving right after start is not lost.
pub fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("received SIGTERM"),
            _ = int.recv() => tracing::info!("received SIGINT"),
        }
    })
}
