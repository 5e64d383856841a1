//! The set of controllers `run` drives.

use std::convert::Infallible;

use tokio::sync::oneshot;

use super::Context;

/// Runs every registered controller until `ctx.shutdown` is cancelled, and marks the process
/// ready once every controller's caches are synced.
pub async fn run_controllers(ctx: Context) -> Result<(), Infallible> {
    let (connector_synced, connector_synced_rx) = oneshot::channel();
    let readiness = ctx.readiness.clone();
    let ready = async move {
        // JOIN POINT (membership): await the membership controller's own "caches synced"
        // signal here too before setting readiness.
        if connector_synced_rx.await.is_ok() {
            readiness.set_ready();
        }
    };
    tokio::join!(
        crate::controller::connector::run(ctx.clone(), connector_synced),
        // JOIN POINT (membership): add `crate::controller::membership::reconcile::run(ctx)`.
        ready,
    );
    Ok(())
}
