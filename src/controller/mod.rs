//! Kubernetes controllers: one reconciler per kind, the decisions they drive, and the operator
//! runtime around them.

pub mod access;
pub mod admission;
pub mod connector;
pub mod membership;
pub mod review;
pub mod runtime;
pub mod wiring;

pub use wiring::{run, run_controllers, run_controllers_with};

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};

use crate::crd::FIELD_MANAGER;

/// Writes `status` to the object `name` by server-side apply with the operator's field
/// manager, forced: status is the operator's alone. Every reconciler writes status this way;
/// each decides before calling whether the status changed at all.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> kube::Result<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
}

/// Delay before the next attempt on an object after `failures` consecutive failed attempts
/// (1 for the first): `base`, doubled each time, at most `cap`. Both reconcilers back off
/// per object with it.
pub fn retry_delay(base: Duration, cap: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    base.saturating_mul(1 << doublings).min(cap.max(base))
}
