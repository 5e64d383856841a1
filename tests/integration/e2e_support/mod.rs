//! Shared harness of the end-to-end tests: the `okta-ciam-operator run` binary as child processes
//! against the Kubernetes API test server (or the cluster named by `OKTA_CIAM_E2E_KUBECONFIG`)
//! and the Okta emulator on loopback.
//!
//! Each test gets its own namespace; the operator is started with `--namespace` and
//! `POD_NAMESPACE` set to it, so its Lease and ownership records stay there too and a real
//! cluster is left as it was (the namespace is deleted at the end).
//! [`E2e::operator_at_home`] gives the process a separate `POD_NAMESPACE` instead.

#![allow(dead_code)] // each e2e test binary uses a different part

use std::collections::BTreeSet;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use kube_test_server::TestServer;
use okta_ciam_operator::crd::{GroupMembership, OktaCiamConnector};
use okta_emulator::{self as emulator, EmulatorConfig, EmulatorHandle, Fixture};
use serde_json::{Value, json};

use crate::support;

/// Upper bound of every wait: generous for a loaded 2-core machine, never a synchronisation.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Environment variable naming a kubeconfig of a real cluster to run against.
pub const EXTERNAL_KUBECONFIG: &str = "OKTA_CIAM_E2E_KUBECONFIG";

/// Polls `check` every 50 ms until it yields `Some`, at most [`LIMIT`] (bounded in count and
/// time); panics naming `what` otherwise.
pub async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    support::wait_within(what, LIMIT, check).await
}

/// Polls `check` every 50 ms until it yields `Some`, at most [`LIMIT`]; `None` on timeout.
pub async fn try_wait_for<T, F, Fut>(check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    support::try_wait_within(LIMIT, check).await
}

/// Where the Kubernetes API comes from.
enum Cluster {
    /// The in-process test server (faults and counters available).
    Server(TestServer),
    /// A real cluster from [`EXTERNAL_KUBECONFIG`].
    External(PathBuf),
}

/// One test's cluster, namespace and Okta org.
pub struct E2e {
    cluster: Cluster,
    /// The test's own client (no bearer token: its requests count as client `""`).
    pub kube: Client,
    /// The namespace everything of this test lives in.
    pub ns: String,
    /// The emulated Okta org.
    pub okta: EmulatorHandle,
    /// Further namespaces made by [`E2e::create_namespace`], deleted at the end like `ns`.
    others: Vec<String>,
    dir: tempfile::TempDir,
}

impl E2e {
    /// Starts the test server with the committed CRDs (or connects to the external cluster),
    /// creates the test's namespace, and starts the emulator with `fixture` (YAML).
    pub async fn start(fixture: &str) -> E2e {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cluster, kube) = match std::env::var_os(EXTERNAL_KUBECONFIG) {
            Some(path) => {
                let path = PathBuf::from(path);
                let config = kube::config::Kubeconfig::read_from(&path)
                    .unwrap_or_else(|e| panic!("{EXTERNAL_KUBECONFIG}: {e}"));
                let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
                    .await
                    .expect("the external kubeconfig loads");
                let kube = Client::try_from(config).expect("client for the external cluster");
                (Cluster::External(path), kube)
            }
            None => {
                let server = support::start_test_server().await;
                let kube = server.client();
                (Cluster::Server(server), kube)
            }
        };
        let ns = format!("okta-e2e-{:08x}", rand::random::<u32>());
        support::create_namespace(&kube, &ns).await;
        let fixture = Fixture::from_yaml(fixture).expect("fixture parses");
        let okta = emulator::start(EmulatorConfig::new(fixture))
            .await
            .expect("emulator starts");
        E2e {
            cluster,
            kube,
            ns,
            okta,
            others: Vec::new(),
            dir,
        }
    }

    /// Creates one more namespace for this test (e.g. for the operator's own objects, apart
    /// from the watched one) and returns its name; on a real cluster it is deleted at the end.
    pub async fn create_namespace(&mut self, prefix: &str) -> String {
        let ns = format!("{prefix}-{:08x}", rand::random::<u32>());
        support::create_namespace(&self.kube, &ns).await;
        self.others.push(ns.clone());
        ns
    }

    /// The test server, or `None` (with the reason printed) when running against a real
    /// cluster: for tests and checks that need fault injection or request counters.
    pub fn server(&self, needed_for: &str) -> Option<&TestServer> {
        match &self.cluster {
            Cluster::Server(s) => Some(s),
            Cluster::External(_) => {
                eprintln!(
                    "skipped against {EXTERNAL_KUBECONFIG}: {needed_for} needs the test server"
                );
                None
            }
        }
    }

    /// Starts `okta-ciam-operator run` with `extra` flags, watching only this test's namespace.
    /// Against the test server its requests are counted as client `client`.
    pub fn operator(&self, client: &str, extra: &[&str]) -> Operator {
        self.operator_at_home(client, &self.ns, extra)
    }

    /// Like [`E2e::operator`], but with `POD_NAMESPACE` (where the Lease and the ownership
    /// records live) set to `home` instead of the watched namespace, as in a real install
    /// where the operator runs in its own namespace.
    pub fn operator_at_home(&self, client: &str, home: &str, extra: &[&str]) -> Operator {
        let kubeconfig = match &self.cluster {
            Cluster::Server(s) => {
                let path = self.dir.path().join(format!("kubeconfig-{client}"));
                s.write_kubeconfig_as(&path, client)
                    .expect("kubeconfig written");
                path
            }
            Cluster::External(path) => path.clone(),
        };
        Operator::spawn(&kubeconfig, &self.ns, home, extra)
    }

    /// Creates or replaces the token Secret `name` holding `{key: token}`.
    pub async fn put_secret(&self, name: &str, key: &str, token: &str) {
        let secret = support::token_secret(name, key, token);
        support::apply(
            &Api::<Secret>::namespaced(self.kube.clone(), &self.ns),
            "e2e-test",
            name,
            &secret,
        )
        .await;
    }

    /// Server-side applies an `OktaCiamConnector` reading the token from Secret `okta-token`
    /// (key `apiToken`) for `example.com` addresses, with `extra` merged into the spec.
    pub async fn apply_connector(&self, name: &str, extra: Value) {
        assert!(extra.is_object(), "extra is an object");
        let spec = json!({
            "domain": self.okta.domain(),
            "tokenSecretRef": {"name": "okta-token"},
            "emailDomains": ["example.com"],
            "syncInterval": "1h",
            "provisioning": true,
        });
        let obj = support::connector_json(name, spec, extra);
        support::apply(&self.connectors(), "e2e-test", name, &obj).await;
    }

    /// Server-side applies a `GroupMembership` of the fixture users `logins` (see [`fixture`])
    /// in Okta group `group` through connector `connector`.
    pub async fn apply_membership(
        &self,
        name: &str,
        connector: &str,
        group: &str,
        logins: &[String],
    ) {
        let users: Vec<String> = logins.iter().map(|l| address(l)).collect();
        let obj = json!({"apiVersion": "oktaciam.io/v1alpha1", "kind": "GroupMembership",
                         "metadata": {"name": name},
                         "spec": {"connectorRef": {"name": connector}, "group": {"name": group},
                                  "users": users}});
        support::apply(&self.memberships(), "e2e-test", name, &obj).await;
    }

    /// Okta ids of the fixture users `logins`.
    pub fn user_ids(&self, logins: &[String]) -> BTreeSet<String> {
        logins
            .iter()
            .map(|l| self.okta.user_id(&address(l)).expect("fixture user"))
            .collect()
    }

    /// The test namespace's connectors.
    pub fn connectors(&self) -> Api<OktaCiamConnector> {
        Api::namespaced(self.kube.clone(), &self.ns)
    }

    /// The test namespace's group memberships.
    pub fn memberships(&self) -> Api<GroupMembership> {
        Api::namespaced(self.kube.clone(), &self.ns)
    }

    /// Waits until the connector's condition `type_` has `status` and `reason`.
    pub async fn wait_connector(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> OktaCiamConnector {
        wait_condition(&self.connectors(), name, (type_, status, reason), |o| {
            o.status
                .as_ref()
                .map(|s| (&s.conditions, s.observed_generation))
        })
        .await
    }

    /// Waits until the membership's condition `type_` has `status` and `reason`.
    pub async fn wait_membership(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> GroupMembership {
        wait_condition(&self.memberships(), name, (type_, status, reason), |o| {
            o.status
                .as_ref()
                .map(|s| (&s.conditions, s.observed_generation))
        })
        .await
    }

    /// (type, reason) of every Event about the object `name` in the test namespace.
    pub async fn events_about(&self, name: &str) -> Vec<(String, String)> {
        support::events_about(&self.kube, &self.ns, name).await
    }

    /// Waits until an Event of `type_` with `reason` about `name` exists.
    pub async fn wait_event(&self, name: &str, type_: &str, reason: &str) {
        support::wait_event(&self.kube, &self.ns, name, (type_, reason), LIMIT).await;
    }

    /// Ids of the members of the emulated group `group`.
    pub fn members(&self, group: &str) -> BTreeSet<String> {
        let id = self.okta.group_id(group).expect("group exists");
        self.okta.members_of(&id).into_iter().collect()
    }

    /// Okta requests that were not reads, so far.
    pub fn okta_writes(&self) -> u64 {
        support::okta_writes(&self.okta)
    }

    /// Stops the emulator and the test server; on a real cluster, lets go of the test's
    /// memberships (finalizers) and deletes its namespace. Stop the operators first.
    pub async fn finish(self) {
        self.okta.shutdown().await;
        match self.cluster {
            Cluster::Server(server) => server.shutdown().await,
            Cluster::External(_) => {
                let gms: Api<GroupMembership> = Api::namespaced(self.kube.clone(), &self.ns);
                let none = Patch::Merge(json!({"metadata": {"finalizers": null}}));
                for gm in gms
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
                {
                    let name = gm.metadata.name.unwrap_or_default();
                    let _ = gms.patch(&name, &PatchParams::default(), &none).await;
                }
                // Connectors wait for their memberships' revocations; nothing revokes now.
                let connectors: Api<OktaCiamConnector> =
                    Api::namespaced(self.kube.clone(), &self.ns);
                for c in connectors
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
                {
                    let name = c.metadata.name.unwrap_or_default();
                    let _ = connectors
                        .patch(&name, &PatchParams::default(), &none)
                        .await;
                }
                for ns in std::iter::once(&self.ns).chain(&self.others) {
                    let _ = Api::<Namespace>::all(self.kube.clone())
                        .delete(ns, &DeleteParams::default())
                        .await;
                }
            }
        }
    }
}

/// Waits until `name` has the condition (type, status, reason) for its current generation;
/// on timeout, panics showing the status it has.
async fn wait_condition<K>(
    api: &Api<K>,
    name: &str,
    (type_, status, reason): (&str, &str, &str),
    conditions: impl Fn(&K) -> Option<(&Vec<Condition>, Option<i64>)>,
) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let found = try_wait_for(|| async {
        let obj = api.get_opt(name).await.ok()??;
        let (list, observed) = conditions(&obj)?;
        let hit = list
            .iter()
            .any(|c| c.type_ == type_ && c.status == status && c.reason == reason);
        (hit && observed == obj.meta().generation).then_some(obj)
    })
    .await;
    match found {
        Some(obj) => obj,
        None => {
            let now = api.get_opt(name).await.ok().flatten();
            let now = now.map(|o| serde_json::to_value(o).unwrap_or_default()["status"].clone());
            panic!("{name}: {type_}={status}/{reason} not reached; status now {now:#?}")
        }
    }
}

/// The address of fixture user `login`.
pub fn address(login: &str) -> String {
    format!("{login}@example.com")
}

/// A fixture YAML with tokens `token-1`/`token-2` (only `token-1` accepted until
/// [`EmulatorHandle::add_token`]), users `<login>@example.com` for each of `logins`, and
/// `groups` as (name, member logins).
pub fn fixture(logins: &[String], groups: &[(&str, &[String])]) -> String {
    let mut yaml = String::from("tokens: [token-1]\nrateLimits: {windowSeconds: 1}\nusers:\n");
    for l in logins {
        yaml.push_str(&format!("  - {{login: {}}}\n", address(l)));
    }
    yaml.push_str("  - {login: outsider@other.org}\ngroups:\n");
    for (name, members) in groups {
        let members: Vec<String> = members.iter().map(|m| address(m)).collect();
        yaml.push_str(&format!(
            "  - {{name: {name}, members: [{}]}}\n",
            members.join(", ")
        ));
    }
    yaml
}

/// `prefix-00`, `prefix-01`, ...: `n` user logins.
pub fn logins(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:02}")).collect()
}

/// The `run` binary as a child process; killed (SIGKILL) and reaped when dropped, also when
/// the test panics.
pub struct Operator {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Operator {
    fn spawn(kubeconfig: &Path, namespace: &str, home: &str, extra: &[&str]) -> Operator {
        let mut child = Command::new(env!("CARGO_BIN_EXE_okta-ciam-operator"))
            .args([
                "--log-format",
                "json",
                "run",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(["--insecure-loopback-http", "--namespace", namespace])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", home)
            .env("RUST_LOG", "info,okta_ciam_operator=debug")
            .env_remove("OKTA_CIAM_LEADER_ELECT")
            .env_remove("OKTA_CIAM_NAMESPACES")
            .env_remove("POD_NAME")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the operator binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        // Keeps the pipe drained so the child never blocks on logging.
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        Operator {
            child,
            logs,
            reader: Some(reader),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for a JSON log line whose message is `message` and returns it (the binary's
    /// JSON format has the event's fields at the top level).
    pub async fn wait_log(&self, message: &str) -> Value {
        wait_for(&format!("log line {message:?}"), || async {
            self.logs().iter().find_map(|line| {
                let v: Value = serde_json::from_str(line).ok()?;
                (v["message"] == message).then_some(v)
            })
        })
        .await
    }

    /// The bound metrics/probe address, as the binary logs it.
    pub async fn metrics_addr(&self) -> SocketAddr {
        let fields = self
            .wait_log("serving /metrics, /healthz and /readyz")
            .await;
        fields["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {fields}"))
    }

    /// HTTP status of `GET path` on the metrics server.
    pub async fn probe(&self, path: &str) -> Option<u16> {
        let url = format!("http://{}{path}", self.metrics_addr().await);
        let resp = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        Some(resp.status().as_u16())
    }

    /// Kills the process at once (SIGKILL: no cleanup, as a node failure) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn terminate(mut self) -> (ExitStatus, Vec<String>) {
        let early = self.child.try_wait().expect("wait on the child");
        assert!(
            early.is_none(),
            "the operator exited before SIGTERM: {early:?}"
        );
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the child was still unreaped just
        // above, so `pid` cannot name another process.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
        let status = wait_for("the operator to exit after SIGTERM", || {
            let exited = self.child.try_wait().expect("wait on the child");
            async move { exited }
        })
        .await;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (status, self.logs())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}
