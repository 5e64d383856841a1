//! The set of controllers `run` drives.

use std::convert::Infallible;

use tokio::sync::oneshot;

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
    let readiness = ctx.readiness.clone();
    let ready = async move {
        let (connector, membership) = tokio::join!(connector_synced_rx, membership_synced_rx);
        if connector.is_ok() && membership.is_ok() {
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
    tokio::join!(
        crate::controller::connector::run(ctx.clone(), connector_synced),
        memberships,
        ready,
    );
    Ok(())
}
