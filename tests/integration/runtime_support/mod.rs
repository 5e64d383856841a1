//! Test helpers: a Kubernetes API test server with the operator's CRDs, and a tiny Lease API
//! that can cut off one replica.
//!
//! The Lease stand-in exists because a partition of *one* replica (its writes fail while the
//! other's succeed) is what shows a cut-off leader stepping down before a takeover; the
//! Kubernetes API test server injects failures per resource, not per writer.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

#[derive(Default)]
struct Inner {
    leases: HashMap<(String, String), Value>,
    next_rv: u64,
    /// Writes whose holderIdentity is one of these fail with 503 (a partitioned replica).
    failing_holders: HashSet<String>,
    conflicts: u64,
}

/// Handle on the Lease stand-in.
#[derive(Clone)]
pub struct FakeKube {
    inner: Arc<Mutex<Inner>>,
    pub url: String,
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message});
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

fn holder_of(lease: &Value) -> Option<String> {
    lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

async fn get_lease(
    State(s): State<FakeKube>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match s.inner.lock().unwrap().leases.get(&(ns, name.clone())) {
        Some(lease) => Json(lease.clone()).into_response(),
        None => status(404, "NotFound", &format!("leases \"{name}\" not found")),
    }
}

async fn create_lease(
    State(s): State<FakeKube>,
    Path(ns): Path<String>,
    Json(mut lease): Json<Value>,
) -> Response {
    let mut inner = s.inner.lock().unwrap();
    if holder_of(&lease).is_some_and(|h| inner.failing_holders.contains(&h)) {
        return status(503, "ServiceUnavailable", "partitioned");
    }
    let name = lease["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if inner.leases.contains_key(&(ns.clone(), name.clone())) {
        inner.conflicts += 1;
        return status(409, "AlreadyExists", "already exists");
    }
    inner.next_rv += 1;
    lease["metadata"]["resourceVersion"] = json!(inner.next_rv.to_string());
    inner.leases.insert((ns, name), lease.clone());
    (StatusCode::CREATED, Json(lease)).into_response()
}

async fn replace_lease(
    State(s): State<FakeKube>,
    Path((ns, name)): Path<(String, String)>,
    Json(mut lease): Json<Value>,
) -> Response {
    let mut inner = s.inner.lock().unwrap();
    let key = (ns, name.clone());
    let Some(current) = inner.leases.get(&key) else {
        return status(404, "NotFound", "not found");
    };
    let writer = holder_of(&lease).or_else(|| holder_of(current));
    if writer.is_some_and(|h| inner.failing_holders.contains(&h)) {
        return status(503, "ServiceUnavailable", "partitioned");
    }
    if lease["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
        inner.conflicts += 1;
        return status(409, "Conflict", "the object has been modified");
    }
    inner.next_rv += 1;
    lease["metadata"]["resourceVersion"] = json!(inner.next_rv.to_string());
    inner.leases.insert(key, lease.clone());
    Json(lease).into_response()
}

impl FakeKube {
    /// Starts the Lease API.
    pub async fn start() -> FakeKube {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = FakeKube {
            inner: Arc::new(Mutex::new(Inner::default())),
            url,
        };
        let app = Router::new()
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
                axum::routing::post(create_lease),
            )
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
                get(get_lease).put(replace_lease),
            )
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// A kube client talking to this server.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// Makes every write naming `identity` as holder fail, as if that replica lost the API.
    pub fn partition(&self, identity: &str, failing: bool) {
        let mut inner = self.inner.lock().unwrap();
        if failing {
            inner.failing_holders.insert(identity.to_owned());
        } else {
            inner.failing_holders.remove(identity);
        }
    }

    /// The stored Lease, if any.
    pub fn lease(&self, ns: &str, name: &str) -> Option<Value> {
        self.inner
            .lock()
            .unwrap()
            .leases
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }
}

/// Polls `check` every 20 ms until it holds, at most `limit`; panics with `what` otherwise.
pub async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A minimal CRD of the operator's group: only what discovery needs.
fn crd_yaml(plural: &str, kind: &str) -> String {
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.oktaciam.io
spec:
  group: oktaciam.io
  scope: Namespaced
  names:
    plural: {plural}
    singular: {singular}
    kind: {kind}
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#,
        singular = kind.to_ascii_lowercase()
    )
}

/// The operator's kinds, as (plural, kind).
pub const OPERATOR_CRDS: &[(&str, &str)] = &[
    ("oktaciamconnectors", "OktaCiamConnector"),
    ("groupmemberships", "GroupMembership"),
    ("accesspolicies", "AccessPolicy"),
    ("accessrequests", "AccessRequest"),
    ("accessapprovals", "AccessApproval"),
    ("accessreviews", "AccessReview"),
    ("accessreviewchunks", "AccessReviewChunk"),
    ("accessreviewdecisions", "AccessReviewDecision"),
];

/// A Kubernetes API test server serving CRDs for `kinds` (plural, kind). Keep the directory
/// alive as long as the server.
pub async fn kube_server(
    kinds: &[(&str, &str)],
) -> (kube_test_server::TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (plural, kind) in kinds {
        std::fs::write(
            dir.path().join(format!("{plural}.yaml")),
            crd_yaml(plural, kind),
        )
        .unwrap();
    }
    (
        kube_test_server::TestServer::start([dir.path()])
            .await
            .unwrap(),
        dir,
    )
}
