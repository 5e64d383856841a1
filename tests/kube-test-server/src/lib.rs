//! An in-process Kubernetes API server for tests, over real HTTP on `127.0.0.1:0`, so `kube::Client`
//! and `kube::runtime` (watcher, reflector, Controller, server-side apply, event recorder, Lease-based
//! leader election) run against it unmodified.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let server = kube_test_server::TestServer::start(["crds/"]).await?;
//! let client = server.client();
//! server.faults().fail_next_writes(1, kube_test_server::FailWith::Conflict);
//! server.faults().drop_watches();
//! # Ok(()) }
//! ```
//!
//! A child process (e.g. the operator binary) reaches the same server through a kubeconfig file:
//! `server.write_kubeconfig(&path)?` then run the child with `KUBECONFIG=path`. The server lives in
//! the test's tokio runtime, so keep that runtime running while the child works.
//!
//! # Served
//! CRDs loaded from YAML (files or directories, multi-document), core v1 `Namespace`, `Secret`, `ConfigMap`, `Event`,
//! `events.k8s.io/v1` `Event`, `coordination.k8s.io/v1` `Lease`, `admissionregistration.k8s.io/v1`
//! `ValidatingAdmissionPolicy` and `ValidatingAdmissionPolicyBinding` (stored, never evaluated);
//! `authorization.k8s.io/v1` `SubjectAccessReview` and `authentication.k8s.io/v1` `SelfSubjectReview`
//! (create only, answered from the test's [`TestServer::authorizer`] rules, not in discovery); discovery (`/api`, `/api/v1`, `/apis`,
//! `/apis/{group}/{version}`) and `/version`. Namespaces `default`, `kube-system` and `kube-public` exist
//! at start.
//!
//! # Conventions emulated
//! GET; LIST with label (equality and set-based) and field selectors, `limit`/`continue` over a consistent
//! snapshot, `resourceVersion`/`resourceVersionMatch`; WATCH with `resourceVersion` replay from a bounded
//! history, `allowWatchBookmarks`, `sendInitialEvents` with the `k8s.io/initial-events-end` bookmark,
//! 410 `Expired` as an `ERROR` event for compacted versions, a future `resourceVersion` skipping events up
//! to it (as the watch cache), 400 for an unparsable one before streaming, `timeoutSeconds` (a GET of an
//! object path with `watch=true` is a plain GET, as upstream); POST (`generateName`,
//! 409 `AlreadyExists`, 404 for a missing namespace); PUT (409 `Conflict` on a stale resourceVersion);
//! PATCH (merge, json, strategic-merge on built-ins, apply with `fieldManager`/`force` and field-ownership
//! conflicts); DELETE (preconditions, finalizers + `deletionTimestamp`, namespace cascade, 403 for new
//! content in a terminating namespace, owner-reference garbage collection); `dryRun=All`;
//! `uid`, a global resourceVersion, `generation` for custom resources, `creationTimestamp`,
//! `managedFields`; `/status` rules; structural-schema pruning, defaulting and validation (422 `Invalid`);
//! label key/value syntax and name syntax (RFC 1123 subdomain; DNS label for namespaces).
//!
//! # Not emulated
//! - CEL `x-kubernetes-validations` are not evaluated, except the immutability idiom `self == oldSelf`
//!   (see [`TestServer::unenforced_cel_rules`] for the skipped ones); nor are `format` (except
//!   `date-time` on strings), `multipleOf`, or CRD validation ratcheting.
//! - No version conversion: every served version of a CRD shares one storage and the schema of the
//!   version used for the write.
//! - `events.k8s.io/v1` Events are a renamed view of the core v1 Event store, as upstream, but only the
//!   field renames are converted (no `series.state`, no defaulting of the deprecated fields).
//! - No authentication/authorization (reviews answer from test-set rules), admission webhooks or
//!   admission policies, graceful deletion periods, or aggregated
//!   discovery. Garbage collection is synchronous and background-style: dependents whose owners are
//!   all gone are deleted at once; `Foreground` behaves like `Background` (no `foregroundDeletion`
//!   finalizer, `blockOwnerDeletion` ignored); `Orphan` strips the owner reference from dependents.
//! - Server-side apply honours `x-kubernetes-list-type` (atomic/set/map) in CRD schemas, but built-in
//!   types' lists are atomic (except `metadata.finalizers`, a set), `x-kubernetes-map-type` is ignored,
//!   and there is no `.` ownership of plain objects. Strategic merge patch on built-ins behaves as a
//!   JSON merge patch (no `$patch` directives, no merge keys).
//! - `resourceVersionMatch=Exact` for anything but the latest version answers 410; an old version for a
//!   non-exact list serves the latest state.
//! - No protobuf, CBOR or Table output; JSON only. No TLS.
//! - Without `fieldManager`, the manager of an update is the user agent up to its first `/`, or
//!   `unknown` (kube-rs sends no user agent).
//! - Custom resources refuse unconditional PUT (no resourceVersion) like upstream; the built-ins here
//!   allow it.

mod authz;
mod convert;
mod error;
mod faults;
mod fields;
mod http;
mod patch;
mod resources;
mod schema;
mod selector;
mod store;

pub use authz::{Authorizer, Rule as AuthzRule, Subject as AuthzSubject, UserInfo};
pub use error::{ApiError, Cause, Subject};
pub use faults::{Access, Counters, FailWith, Faults};
pub use resources::LoadError;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Errors starting or using the server handle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// CRD files could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Binding or writing files failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The server URL did not parse (never expected).
    #[error("bad server url: {0}")]
    Url(String),
}

/// Result type of this crate's public API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Longest [`TestServer::shutdown`] waits for in-flight requests before cutting them off.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Tunables; [`ServerOptions::default`] suits most tests.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// CRD YAML files or directories of them.
    pub crd_paths: Vec<PathBuf>,
    /// Changes kept for watch resumption; older resourceVersions get 410 `Expired`.
    pub history_limit: usize,
    /// Idle interval after which watches with `allowWatchBookmarks=true` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Upper bound on how long one watch stays open (`timeoutSeconds` is honoured below it).
    pub max_watch: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            crd_paths: Vec::new(),
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(1),
            max_watch: Duration::from_secs(1800),
        }
    }
}

/// A running server. Dropping it stops serving.
pub struct TestServer {
    url: String,
    addr: SocketAddr,
    state: Arc<http::AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server serving the CRDs in these files/directories, with default options.
    pub async fn start<P: AsRef<Path>>(
        crd_paths: impl IntoIterator<Item = P>,
    ) -> Result<TestServer> {
        let crd_paths = crd_paths
            .into_iter()
            .map(|p| p.as_ref().to_path_buf())
            .collect();
        Self::start_with(ServerOptions {
            crd_paths,
            ..ServerOptions::default()
        })
        .await
    }

    /// Starts a server with explicit options.
    pub async fn start_with(opts: ServerOptions) -> Result<TestServer> {
        let mut types = resources::builtins();
        types.extend(resources::load_crds(&opts.crd_paths)?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let store = Arc::new(store::Store::new(opts.history_limit));
        let ns_type = types
            .iter()
            .find(|t| t.plural == "namespaces")
            .expect("built-in")
            .clone();
        let ctx = store::WriteContext {
            manager: "kube-apiserver".into(),
            dry_run: false,
        };
        for ns in ["default", "kube-system", "kube-public"] {
            let obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            store
                .create(&ns_type, None, obj, &ctx)
                .expect("fresh store accepts built-in namespaces");
        }
        let state = Arc::new(http::AppState {
            types,
            store,
            faults: Faults::default(),
            addr: addr.to_string(),
            bookmark_interval: opts.bookmark_interval,
            max_watch: opts.max_watch,
            authorizer: Authorizer::default(),
        });
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!("kube-test-server stopped: {e}");
            }
        });
        Ok(TestServer {
            url: format!("http://{addr}"),
            addr,
            state,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client configuration pointing at this server (namespace `default`, no auth).
    pub fn kube_config(&self) -> kube::Config {
        let uri: ::http::Uri = self.url.parse().expect("server url is a valid URI");
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".into();
        config
    }

    /// A `kube::Client` for this server.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.kube_config()).expect("plain-HTTP kube client builds")
    }

    /// Writes a kubeconfig for a child process (e.g. the operator binary via `KUBECONFIG`).
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> Result<()> {
        self.write_kubeconfig_user(path.as_ref(), "{}")
    }

    /// Writes a kubeconfig whose user sends the bearer token `client`, so that client's requests
    /// are told apart in [`Counters::accesses`] (the token authenticates nothing).
    pub fn write_kubeconfig_as(&self, path: impl AsRef<Path>, client: &str) -> Result<()> {
        let token = serde_json::to_string(client).expect("a string serializes");
        self.write_kubeconfig_user(path.as_ref(), &format!("{{token: {token}}}"))
    }

    fn write_kubeconfig_user(&self, path: &Path, user: &str) -> Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-test-server\n  cluster:\n    server: {url}\n\
             users:\n- name: test\n  user: {user}\ncontexts:\n- name: kube-test-server\n  context:\n    cluster: kube-test-server\n    user: test\n    namespace: default\n\
             current-context: kube-test-server\n",
            url = self.url
        );
        std::fs::write(path, text)?;
        Ok(())
    }

    /// The rules `SubjectAccessReview`s are answered from, and the identities
    /// `SelfSubjectReview`s report.
    pub fn authorizer(&self) -> &Authorizer {
        &self.state.authorizer
    }

    /// Fault injection and counters.
    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }

    /// Request counts, watch events sent, injected failures, objects stored.
    pub fn counters(&self) -> Counters {
        self.state.faults.counters(self.state.store.object_count())
    }

    /// The latest resourceVersion.
    pub fn current_resource_version(&self) -> u64 {
        self.state.store.current_rv()
    }

    /// Forgets the watch history (like an etcd compaction): resuming from any older resourceVersion,
    /// or continuing an older paginated list, now answers 410 `Expired`.
    pub fn compact_history(&self) {
        self.state.store.compact();
    }

    /// Every CEL rule in the loaded CRDs that is not enforced, as `(apiVersion/kind, field path, rule)`.
    pub fn unenforced_cel_rules(&self) -> Vec<(String, String, String)> {
        self.state
            .types
            .iter()
            .filter_map(|t| t.schema.as_ref().map(|s| (t, s)))
            .flat_map(|(t, s)| {
                schema::cel_rules(&s.0)
                    .into_iter()
                    .map(|(p, r)| (format!("{}/{}", t.api_version(), t.kind), p, r))
            })
            .collect()
    }

    /// Stops serving: ends open watches, answers new requests 429 (as kube-apiserver shutting
    /// down), and waits for in-flight requests to finish, at most [`SHUTDOWN_GRACE`]; whatever is
    /// still open then (a client holding a request body open, say) is cut off.
    pub async fn shutdown(mut self) {
        self.state.faults.close();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            tracing::warn!(
                "kube-test-server: connections still open after {SHUTDOWN_GRACE:?}; aborting"
            );
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
