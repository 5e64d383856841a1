//! Shared helpers for the server's own integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube_test_server::TestServer;
use std::future::Future;
use std::time::Duration;

/// Starts a server with the test CRDs of this crate.
pub async fn start() -> TestServer {
    TestServer::start([concat!(env!("CARGO_MANIFEST_DIR"), "/tests/crds")])
        .await
        .expect("server starts")
}

/// The Widget custom resource type, addressed dynamically.
pub fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    )
}

/// The cluster-scoped Gadget type (no status subresource).
pub fn gadget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Gadget"),
        "gadgets",
    )
}

/// Removes every finalizer of `name` (a merge patch), letting a pending deletion finish.
pub async fn clear_finalizers<K>(api: &kube::Api<K>, name: &str)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("finalizers cleared");
}

/// Builds a Widget from a JSON body.
pub fn widget(name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("valid widget json")
}

/// Polls `check` until it yields a value: at most 400 tries, 25 ms apart (10 s), then panics.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..400 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Awaits a future with a generous bound so a broken server fails the test instead of hanging it.
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The API status of a failed kube call.
pub fn status_of<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}
