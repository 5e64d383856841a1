//! The set of controllers `run` drives.
//!
//! No reconciler is registered yet: the connector and membership reconcilers are added here
//! by their own changes. Until then the set is empty, which is reported honestly: nothing has
//! caches to sync, so the process is ready at once, and it only waits for shutdown.

use std::convert::Infallible;

use super::Context;

/// Runs every registered controller until `ctx.shutdown` is cancelled.
pub async fn run_controllers(ctx: Context) -> Result<(), Infallible> {
    tracing::warn!("no controllers are registered in this build: nothing will be reconciled");
    // An empty set has no caches, so it is synced by definition.
    ctx.readiness.set_ready();
    ctx.shutdown.cancelled().await;
    Ok(())
}
