//! Shared harness of the `GroupMembership` reconciler tests: the Kubernetes API test server
//! (serving the committed CRDs), the in-process Okta emulator, connectors whose shared client
//! is seeded in the registry (optionally with an index from a real sync), and the reconciler.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_test_server::TestServer;
use okta_ciam_operator::controller::membership::{Settings, run_with};
use okta_ciam_operator::controller::runtime::Context;
use okta_ciam_operator::controller::runtime::clients::{ClientRegistry, ConnectorKey};
use okta_ciam_operator::controller::runtime::leader::Leadership;
use okta_ciam_operator::controller::runtime::metrics::Metrics;
use okta_ciam_operator::controller::runtime::server::Readiness;
use okta_ciam_operator::crd::condition::find_condition;
use okta_ciam_operator::crd::{ConditionType, GroupMembership, OktaCiamConnector};
use okta_ciam_operator::okta::{ApiToken, DomainPolicy, OrgDomain};
use okta_emulator::{self as emulator, EmulatorConfig, EmulatorHandle, Fixture};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support;

pub const NS: &str = "identity";
pub const OPERATOR_NS: &str = "okta-ciam-operator";
pub const WAIT: Duration = Duration::from_secs(30);
/// The harness's longest retry delay (the first is 200 ms, doubled per failed round).
pub const RETRY_MAX: Duration = Duration::from_secs(2);

pub const FIXTURE: &str = r#"
tokens: [test-token]
# Short windows: a 429 waits for a reset at most a second away.
rateLimits: {windowSeconds: 1}
users:
  - {login: alice@example.com}
  - {login: bob@example.com}
  - {login: carol@example.com}
  - {login: dave@example.com}
  - {login: mallory@evil.example.org}
  - {login: suspended@example.com, status: SUSPENDED}
  - {login: staged@example.com, status: STAGED}
  - {login: provisioned@example.com, status: PROVISIONED}
  - {login: lockedout@example.com, status: LOCKED_OUT}
  - {login: deprovisioned@example.com, status: DEPROVISIONED}
  # "twin@example.com" is one user's login and another's primary email.
  - {login: twin@example.com}
  - {login: twin2@example.com, email: twin@example.com}
groups:
  - {name: Eng On-Call, members: [dave@example.com]}
  - {name: Eng Admins}
  - {name: Sales}
  - {name: Eng Imported, type: APP_GROUP}
"#;

/// Polls `check` until it yields `Some`, at most `WAIT` (bounded count and time).
pub async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_within(what, WAIT, check).await
}

/// How long bursts of hundreds of memberships may take on a loaded machine.
pub const LONG_WAIT: Duration = Duration::from_secs(240);

/// [`wait_for`] with [`LONG_WAIT`].
pub async fn wait_for_long<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_within(what, LONG_WAIT, check).await
}

pub use crate::support::wait_within;

pub struct Harness {
    pub server: TestServer,
    pub okta: EmulatorHandle,
    pub kube: Client,
    pub registry: Arc<ClientRegistry>,
    pub shutdown: CancellationToken,
    pub operator: Option<JoinHandle<()>>,
    /// The reconciler's settings, used by every (re)start.
    pub settings: Settings,
    /// The metrics every (re)started reconciler records into.
    pub metrics: Metrics,
}

/// What a test may change about the harness.
pub struct Options {
    /// The emulator's fixture (YAML).
    pub fixture: String,
    /// The reconciler's settings.
    pub settings: Settings,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fixture: FIXTURE.to_owned(),
            settings: Settings {
                record_namespace: Some(OPERATOR_NS.into()),
                retry_delay: Duration::from_millis(200),
                retry_max: RETRY_MAX,
                resync: Duration::from_secs(600),
                ..Settings::default()
            },
        }
    }
}

pub use crate::support::fast_client_options as fast_client;

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Harness {
        let server = support::start_test_server().await;
        let kube = server.client();
        let fixture = Fixture::from_yaml(&options.fixture).unwrap();
        let okta = emulator::start(EmulatorConfig::new(fixture)).await.unwrap();
        for ns in [NS, OPERATOR_NS] {
            support::create_namespace(&kube, ns).await;
        }
        let mut h = Harness {
            server,
            okta,
            kube,
            registry: Arc::new(ClientRegistry::new()),
            shutdown: CancellationToken::new(),
            operator: None,
            metrics: Metrics::new(),
            settings: options.settings,
        };
        h.connector("acme", json!({})).await;
        h.start_operator();
        h
    }

    /// Starts the reconciler with a fresh registry holding every connector's client (a
    /// restarted operator, once its connector reconciler synced).
    pub fn start_operator(&mut self) {
        let shutdown = CancellationToken::new();
        let ctx = Context {
            kube: self.kube.clone(),
            namespaces: Vec::new(),
            domain_policy: policy(),
            metrics: self.metrics.clone(),
            clients: self.registry.clone(),
            readiness: Readiness::new(),
            leadership: Leadership::always(&shutdown),
            shutdown: shutdown.clone(),
        };
        let settings = self.settings.clone();
        self.shutdown = shutdown;
        self.operator = Some(tokio::spawn(async move {
            let (caches_synced, _) = tokio::sync::oneshot::channel();
            run_with(ctx, settings, caches_synced).await.unwrap();
        }));
    }

    pub async fn stop_operator(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.operator.take() {
            tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        }
    }

    /// Creates a Ready connector (spec overrides in `extra`) and seeds its shared client.
    pub async fn connector(&self, name: &str, extra: Value) {
        self.connector_without_client(name, extra).await;
        self.seed_client(name);
    }

    /// Creates a connector that the cluster reports Ready but whose shared client this
    /// process has not built yet: what a restarted operator or a new leader first sees.
    pub async fn connector_without_client(&self, name: &str, extra: Value) {
        assert!(extra.is_object(), "extra is an object");
        let spec = json!({
            "domain": self.okta.domain(),
            "tokenSecretRef": {"name": "okta", "key": "token"},
            "emailDomains": ["example.com"],
            "provisioning": true,
        });
        let api: Api<OktaCiamConnector> = Api::namespaced(self.kube.clone(), NS);
        let obj = serde_json::from_value(support::connector_json(name, spec, extra)).unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap();
        self.connector_synced(name, "2026-01-01T00:00:00Z").await;
    }

    /// Builds the connector's shared client, as the connector reconciler's first pass does.
    pub fn seed_client(&self, name: &str) {
        let domain = OrgDomain::parse(&self.okta.domain(), &policy()).unwrap();
        self.registry
            .okta_client(
                &ConnectorKey::new(NS, name),
                &domain,
                &ApiToken::new(self.okta.token()),
                fast_client(),
            )
            .unwrap();
    }

    /// Runs a real sync through the connector's shared client and stores its index, as the
    /// connector reconciler does after each sync.
    pub async fn sync_index(&self, name: &str) {
        self.sync_index_edited(name, |_| {}).await;
    }

    /// [`Harness::sync_index`] with the snapshot edited before it is indexed (an index that
    /// disagrees with Okta, as one gone stale would).
    pub async fn sync_index_edited(
        &self,
        name: &str,
        edit: impl FnOnce(&mut okta_ciam_operator::sync::snapshot::Snapshot),
    ) {
        use okta_ciam_operator::controller::connector::index::{ConnectorFacts, ConnectorIndex};
        use okta_ciam_operator::sync::engine::{SyncConfig, sync};
        use okta_ciam_operator::sync::progress::NoProgress;
        use okta_ciam_operator::sync::scope::EmailDomains;
        let key = ConnectorKey::new(NS, name);
        let client = self.registry.client(&key).expect("the connector's client");
        let email_domains = EmailDomains::new(["example.com"]).unwrap();
        let config = SyncConfig {
            email_domains: email_domains.clone(),
            group_name_filter: None,
            concurrency: 4,
        };
        let mut snapshot = sync(&client, &config, &NoProgress).await.unwrap();
        edit(&mut snapshot);
        let facts = ConnectorFacts {
            ready: true,
            provisioning: true,
            suspended: false,
            email_domains,
            group_name_filter: None,
            generation: Some(1),
        };
        let index = ConnectorIndex::build(snapshot, facts, jiff::Timestamp::now());
        assert!(self.registry.set_index(&key, Arc::new(index)));
    }

    /// Marks the connector Ready with a new sync time, as the connector reconciler does
    /// after each sync.
    pub async fn connector_synced(&self, name: &str, at: &str) {
        let api: Api<OktaCiamConnector> = Api::namespaced(self.kube.clone(), NS);
        let status = json!({"status": {
            "lastSyncTime": at,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "synced",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        }});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    pub fn gms(&self) -> Api<GroupMembership> {
        Api::namespaced(self.kube.clone(), NS)
    }

    pub async fn apply(&self, name: &str, spec: Value) {
        let obj = json!({
            "apiVersion": "oktaciam.io/v1alpha1", "kind": "GroupMembership",
            "metadata": {"name": name}, "spec": spec,
        });
        support::apply(&self.gms(), "test", name, &obj).await;
    }

    pub async fn get(&self, name: &str) -> Option<GroupMembership> {
        self.gms().get_opt(name).await.unwrap()
    }

    /// Waits until the named condition has `status` and `reason`.
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> GroupMembership {
        wait_for(&format!("{name}: {type_}={status} ({reason})"), || async {
            let gm = self.get(name).await?;
            let s = gm.status.as_ref()?;
            let c = s.conditions.iter().find(|c| c.type_ == type_)?;
            (c.status == status && c.reason == reason).then_some(gm.clone())
        })
        .await
    }

    pub async fn wait_gone(&self, name: &str) {
        wait_for(&format!("{name} deleted"), || async {
            self.get(name).await.is_none().then_some(())
        })
        .await;
    }

    pub async fn delete(&self, name: &str) {
        self.gms()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }

    pub fn group(&self, name: &str) -> String {
        self.okta.group_id(name).unwrap()
    }

    pub fn user(&self, login: &str) -> String {
        self.okta.user_id(login).unwrap()
    }

    pub fn members(&self, group: &str) -> BTreeSet<String> {
        self.okta
            .members_of(&self.group(group))
            .into_iter()
            .collect()
    }

    pub fn ids(&self, logins: &[&str]) -> BTreeSet<String> {
        logins.iter().map(|l| self.user(l)).collect()
    }

    /// Membership writes (PUT or DELETE) the emulator answered so far.
    pub fn writes(&self) -> u64 {
        self.requests_where(|route| route.starts_with("PUT ") || route.starts_with("DELETE "))
    }

    /// Requests the emulator answered so far on the routes `pick` selects.
    pub fn requests_where(&self, pick: impl Fn(&str) -> bool) -> u64 {
        self.okta
            .stats()
            .requests
            .by_route
            .iter()
            .filter(|(route, _)| pick(route))
            .map(|(_, n)| n)
            .sum()
    }

    pub async fn event_reasons(&self, name: &str) -> Vec<(String, String)> {
        support::events_about(&self.kube, NS, name).await
    }

    pub async fn wait_event(&self, name: &str, type_: &str, reason: &str) {
        support::wait_event(&self.kube, NS, name, (type_, reason), WAIT).await;
    }

    pub async fn shutdown(mut self) {
        self.stop_operator().await;
        self.okta.shutdown().await;
        self.server.shutdown().await;
    }
}

pub fn policy() -> DomainPolicy {
    DomainPolicy {
        insecure_loopback_http: true,
        ..DomainPolicy::default()
    }
}

/// The spec of a `GroupMembership` declaring one user in a group (by name) via `connector`.
pub fn one_user(connector: &str, group: &str, user: &str) -> Value {
    json!({"connectorRef": {"name": connector}, "group": {"name": group}, "users": [user]})
}

pub fn user_row<'a>(
    gm: &'a GroupMembership,
    user: &str,
) -> &'a okta_ciam_operator::crd::UserMembershipStatus {
    gm.status
        .as_ref()
        .unwrap()
        .users
        .iter()
        .find(|u| u.user == user)
        .unwrap_or_else(|| panic!("no status row for {user}"))
}

/// The membership's condition of type `type_`; panics when it has no status or no such
/// condition.
pub fn condition(gm: &GroupMembership, type_: ConditionType) -> &Condition {
    find_condition(&gm.status.as_ref().unwrap().conditions, type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

pub fn state_of(gm: &GroupMembership, user: &str) -> String {
    let row = user_row(gm, user);
    format!(
        "{:?}/{:?}/{}",
        row.state,
        row.origin,
        row.reason.as_deref().unwrap_or("")
    )
}
