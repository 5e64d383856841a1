//! Helpers shared by the integration tests that run the operator against the Kubernetes API
//! test server and the Okta emulator: bounded polling, the test server with the committed
//! CRDs, and builders of namespaces, token Secrets and connectors.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_test_server::TestServer;
use okta_ciam_operator::okta::ClientOptions;
use okta_emulator::EmulatorHandle;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// How often the polling helpers re-check.
const POLL: Duration = Duration::from_millis(50);

/// Polls `check` every 50 ms until it yields `Some`, at most `limit` (bounded in count as
/// well: one poll per 50 ms of the limit, sleeps only lengthen); `None` on timeout.
pub async fn try_wait_within<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    for _ in 0..=limit.as_millis() / POLL.as_millis() {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    None
}

/// [`try_wait_within`], panicking naming `what` on timeout.
pub async fn wait_within<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match try_wait_within(limit, check).await {
        Some(v) => v,
        None => panic!("timed out waiting for {what}"),
    }
}

/// Starts the Kubernetes API test server serving the committed CRDs.
pub async fn start_test_server() -> TestServer {
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
    TestServer::start([
        format!("{crds}/oktaciamconnectors.yaml"),
        format!("{crds}/groupmemberships.yaml"),
        format!("{crds}/accesspolicies.yaml"),
        format!("{crds}/accessrequests.yaml"),
        format!("{crds}/accessapprovals.yaml"),
        format!("{crds}/accessreviews.yaml"),
        format!("{crds}/accessreviewchunks.yaml"),
        format!("{crds}/accessreviewdecisions.yaml"),
    ])
    .await
    .expect("test server starts")
}

/// Creates the namespace `name`.
pub async fn create_namespace(kube: &Client, name: &str) {
    let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(kube.clone())
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("namespace {name} created: {e}"));
}

/// A Secret `name` holding `{key: token}`, for server-side apply.
pub fn token_secret(name: &str, key: &str, token: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// An `OktaCiamConnector` object `name` whose spec is `spec` with the top-level fields of
/// `extra` put over it.
pub fn connector_json(name: &str, mut spec: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        base.extend(extra);
    }
    json!({"apiVersion": "oktaciam.io/v1alpha1", "kind": "OktaCiamConnector",
           "metadata": {"name": name}, "spec": spec})
}

/// Server-side applies `obj` as `name` through `api`, forcing ownership for field manager
/// `manager`.
pub async fn apply<K>(
    api: &Api<K>,
    manager: &str,
    name: &str,
    obj: &(impl Serialize + std::fmt::Debug),
) -> K
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(obj),
    )
    .await
    .unwrap_or_else(|e| panic!("{name} applied: {e}"))
}

/// (type, reason) of every Event in `ns` about the object `name`.
pub async fn events_about(kube: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(kube.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("events listed")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
        .collect()
}

/// Waits, at most `limit`, until an Event of `type_` with `reason` about `name` exists in `ns`.
pub async fn wait_event(
    kube: &Client,
    ns: &str,
    name: &str,
    (type_, reason): (&str, &str),
    limit: Duration,
) {
    wait_within(
        &format!("{type_} Event {reason} about {name}"),
        limit,
        || async {
            events_about(kube, ns, name)
                .await
                .iter()
                .any(|(t, r)| t == type_ && r == reason)
                .then_some(())
        },
    )
    .await;
}

/// Requests the emulator answered so far that were not reads.
pub fn okta_writes(okta: &EmulatorHandle) -> u64 {
    okta.stats()
        .requests
        .by_route
        .iter()
        .filter(|(route, _)| !route.starts_with("GET "))
        .map(|(_, n)| n)
        .sum()
}

/// Requests the emulator answered so far on `route`, e.g. `GET /api/v1/org`.
pub fn okta_requests_on(okta: &EmulatorHandle, route: &str) -> u64 {
    okta.stats()
        .requests
        .by_route
        .get(route)
        .copied()
        .unwrap_or(0)
}

/// Okta client options with short delays, so retry tests finish quickly.
pub fn fast_client_options() -> ClientOptions {
    ClientOptions {
        retry_base_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
        max_rate_limit_wait: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}
