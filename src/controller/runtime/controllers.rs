//! Running a set of controllers side by side, with one readiness for all of them. Which
//! controllers run is decided above the runtime ([`crate::controller::wiring`]).

use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{StreamExt, TryFuture};
use serde::de::DeserializeOwned;

use kube::Resource;
use kube::runtime::reflector::Store;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::Context;

type Run = Box<
    dyn FnOnce(Context, oneshot::Sender<()>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send,
>;

/// One controller to run: a function of the [`Context`] and a "caches synced" sender that
/// runs until [`Context::shutdown`].
pub struct Controller {
    run: Run,
}

impl Controller {
    /// A controller for `kind`; a returned error is logged as the controller stopping.
    pub fn new<F, Fut, E>(kind: &'static str, run: F) -> Self
    where
        F: FnOnce(Context, oneshot::Sender<()>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        Controller {
            run: Box::new(move |ctx, synced| {
                Box::pin(async move {
                    if let Err(e) = run(ctx, synced).await {
                        tracing::error!(error = %e, "the {kind} controller stopped");
                    }
                })
            }),
        }
    }
}

/// Runs `controllers` until `ctx.shutdown` is cancelled, and marks the process ready once
/// every controller's caches are synced.
pub async fn run_all(ctx: Context, controllers: Vec<Controller>) {
    let mut synced = Vec::with_capacity(controllers.len());
    let runs = controllers.into_iter().map(|c| {
        let (tx, rx) = oneshot::channel();
        synced.push(rx);
        (c.run)(ctx.clone(), tx)
    });
    let runs: Vec<_> = runs.collect();
    let readiness = ctx.readiness.clone();
    let ready = async move {
        let all = futures::future::join_all(synced).await;
        if all.iter().all(Result::is_ok) {
            readiness.set_ready();
        }
    };
    tokio::join!(futures::future::join_all(runs), ready);
}

/// One `Api` per watched namespace, or one over all namespaces when none is named.
pub(crate) fn watched_apis<K>(ctx: &Context) -> Vec<kube::Api<K>>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if ctx.namespaces.is_empty() {
        vec![kube::Api::all(ctx.kube.clone())]
    } else {
        ctx.namespaces
            .iter()
            .map(|ns| kube::Api::namespaced(ctx.kube.clone(), ns))
            .collect()
    }
}

/// The "caches synced" signal of a controller, fired once by whichever comes first: standing
/// by, or a term's caches being listed (a term that ends before they list leaves it to the
/// next).
#[derive(Clone)]
pub(crate) struct CachesSynced(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl CachesSynced {
    fn new(sender: oneshot::Sender<()>) -> Self {
        CachesSynced(Arc::new(Mutex::new(Some(sender))))
    }

    /// Fires the signal unless it was fired before.
    pub(crate) fn fire(&self) {
        let sender = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(sender) = sender {
            let _ = sender.send(());
        }
    }
}

/// Runs `run_term` once per leadership term until `ctx.shutdown`, each with the controller's
/// [`CachesSynced`] signal (a standby fires it at once: it has nothing to sync).
pub(crate) async fn run_terms<F, Fut>(
    ctx: &Context,
    caches_synced: oneshot::Sender<()>,
    mut run_term: F,
) where
    F: FnMut(CancellationToken, CachesSynced) -> Fut,
    Fut: Future<Output = ()>,
{
    let caches_synced = CachesSynced::new(caches_synced);
    if !ctx.leadership.is_leader() {
        caches_synced.fire();
    }
    while let Some(term) = ctx.leadership.acquired().await {
        // Another replica may have removed while this one did not lead.
        ctx.clients.revocations().forget_seeds();
        run_term(term, caches_synced.clone()).await;
        if ctx.shutdown.is_cancelled() {
            break;
        }
    }
}

/// Runs kube-runtime `controllers` of one kind (one per watched namespace) with `reconcile`,
/// each until it ends or [`run_until_stopped`] drops it, and calls `on_synced` once every
/// one's cache has listed. Results are only logged (at debug, naming `kind`): the reconcilers
/// report through status, Events and metrics.
pub(crate) async fn run_kind<K, Ctx, ReconcileFut, E>(
    kind: &'static str,
    controllers: Vec<kube::runtime::Controller<K>>,
    reconcile: fn(Arc<K>, Arc<Ctx>) -> ReconcileFut,
    error_policy: fn(Arc<K>, &E, Arc<Ctx>) -> kube::runtime::controller::Action,
    ctx: Arc<Ctx>,
    stop: &CancellationToken,
    on_synced: impl FnOnce(),
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Debug + Unpin + Default,
    Ctx: Send + Sync + 'static,
    ReconcileFut: TryFuture<Ok = kube::runtime::controller::Action, Error = E> + Send + 'static,
    E: std::error::Error + Send + 'static,
{
    let stores: Vec<Store<K>> = controllers.iter().map(|c| c.store()).collect();
    let ready = async move {
        for store in &stores {
            if store.wait_until_ready().await.is_err() {
                return;
            }
        }
        on_synced();
    };
    let runs = controllers.into_iter().map(|c| {
        let cache = c.store();
        let run = c
            .run(reconcile, error_policy, ctx.clone())
            .for_each(move |result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "{kind} controller event");
                }
            });
        async move { run_until_stopped(run, &cache, stop).await }
    });
    tokio::join!(ready, futures::future::join_all(runs));
}

/// Runs `controller` (a kube-runtime `Controller::run` stream driven to its end) until it
/// ends, or until `stop` is cancelled while `cache` has not finished its first list.
///
/// kube-runtime holds every reconcile until the controller's cache is ready, and its graceful
/// shutdown then waits for that readiness, which can never come once the watch has stopped:
/// a SIGTERM during start-up would sit out the whole shutdown grace. With an unready cache
/// nothing is in flight, so dropping the controller at once loses nothing; with a ready one
/// the controller's own graceful shutdown lets in-flight reconciles finish.
pub(crate) async fn run_until_stopped<K>(
    controller: impl Future<Output = ()>,
    cache: &Store<K>,
    stop: &CancellationToken,
) where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    let stopped_unready = async {
        stop.cancelled().await;
        // `timeout` polls the readiness once before looking at its zero deadline.
        if tokio::time::timeout(Duration::ZERO, cache.wait_until_ready())
            .await
            .is_ok_and(|ready| ready.is_ok())
        {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = controller => {}
        () = stopped_unready => tracing::debug!("stopped before the first list; nothing in flight"),
    }
}
