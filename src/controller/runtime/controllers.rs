//! The set of controllers `run` drives.

use std::convert::Infallible;
use std::hash::Hash;
use std::time::Duration;

use kube::Resource;
use kube::runtime::reflector::Store;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::Context;

/// Runs every registered controller until `ctx.shutdown` is cancelled, and marks the process
/// ready once every controller's caches are synced.
pub async fn run_controllers(ctx: Context) -> Result<(), Infallible> {
    run_controllers_with(ctx, crate::controller::membership::Settings::default()).await
}

/// [`run_controllers`] with the `GroupMembership` controller's settings (e.g. the
/// operator-wide provisioning switch).
pub async fn run_controllers_with(
    ctx: Context,
    membership: crate::controller::membership::Settings,
) -> Result<(), Infallible> {
    let (connector_synced, connector_synced_rx) = oneshot::channel();
    let (membership_synced, membership_synced_rx) = oneshot::channel();
    let (access_synced, access_synced_rx) = oneshot::channel();
    let readiness = ctx.readiness.clone();
    let ready = async move {
        let (connector, membership, access) =
            tokio::join!(connector_synced_rx, membership_synced_rx, access_synced_rx);
        if connector.is_ok() && membership.is_ok() && access.is_ok() {
            readiness.set_ready();
        }
    };
    let memberships = async {
        if let Err(e) =
            crate::controller::membership::run_with(ctx.clone(), membership, membership_synced)
                .await
        {
            tracing::error!(error = %e, "the GroupMembership controller stopped");
        }
    };
    let access = async {
        if let Err(e) = crate::controller::access::run(ctx.clone(), access_synced).await {
            tracing::error!(error = %e, "the AccessRequest controller stopped");
        }
    };
    tokio::join!(
        crate::controller::connector::run(ctx.clone(), connector_synced),
        memberships,
        access,
        ready,
    );
    Ok(())
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
