//! The one place that names the reconcilers: which controllers `run` drives, with their
//! settings. A reconciler for a new kind is added to [`controllers`] and nowhere else in the
//! runtime.

use std::convert::Infallible;

use super::runtime::cli::RunArgs;
use super::runtime::controllers::{Controller, run_all};
use super::runtime::{self, Context, Operator};
use super::{access, connector, membership, review};
use crate::okta::OktaClient;

/// Settings of the controllers that have any.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The `GroupMembership` controller's.
    pub membership: membership::Settings,
}

impl Settings {
    /// The settings `run` takes from its flags: the operator-wide provisioning switch and
    /// whether grants need an AccessPolicy.
    pub fn from_args(args: &RunArgs) -> Self {
        Settings {
            membership: membership::Settings {
                provisioning: args.provisioning_enabled(),
                require_policy: args.require_policy,
                ..membership::Settings::default()
            },
        }
    }
}

/// Every controller, in the order they start.
pub fn controllers(settings: Settings) -> Vec<Controller> {
    vec![
        Controller::new("OktaCiamConnector", |ctx, synced| async move {
            connector::run(ctx, synced).await;
            Ok::<(), Infallible>(())
        }),
        Controller::new("GroupMembership", move |ctx, synced| {
            membership::run_with(ctx, settings.membership, synced)
        }),
        Controller::new("AccessRequest", access::run),
        Controller::new("AccessReview", review::run),
    ]
}

/// Runs every controller with default settings until `ctx.shutdown` is cancelled, and marks
/// the process ready once every controller's caches are synced.
pub async fn run_controllers(ctx: Context) -> Result<(), Infallible> {
    run_controllers_with(ctx, Settings::default()).await
}

/// [`run_controllers`] with the given settings (e.g. the operator-wide provisioning switch).
pub async fn run_controllers_with(ctx: Context, settings: Settings) -> Result<(), Infallible> {
    run_all(ctx, controllers(settings)).await;
    Ok(())
}

/// `okta-ciam-operator run`: connects to the cluster (kubeconfig, else in-cluster), starts
/// the operator and runs every controller until SIGTERM/SIGINT.
pub async fn run(args: RunArgs) -> runtime::Result<()> {
    let signal = runtime::shutdown_signal()?;
    let kube = kube::Client::try_default()
        .await
        .map_err(runtime::Error::KubeConfig)?;
    let settings = Settings::from_args(&args);
    if !settings.membership.provisioning {
        tracing::warn!("provisioning is disabled: every GroupMembership write is refused");
    }
    let operator = Operator::<OktaClient>::start(args, kube).await?;
    operator
        .run(signal, move |ctx| run_controllers_with(ctx, settings))
        .await
}
