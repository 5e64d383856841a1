//! The `GroupMembership` reconciler over real HTTP: the Kubernetes API test server
//! (`tests/kube-test-server`, serving the committed CRDs) and the in-process Okta emulator.
//! The connector's shared client is seeded in the registry and its status set Ready, as the
//! connector reconciler would after a sync.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_test_server::TestServer;
use okta_ciam_operator::controller::membership::{FINALIZER, Settings, run_with};
use okta_ciam_operator::controller::runtime::Context;
use okta_ciam_operator::controller::runtime::clients::{ClientRegistry, ConnectorKey};
use okta_ciam_operator::controller::runtime::leader::Leadership;
use okta_ciam_operator::controller::runtime::metrics::Metrics;
use okta_ciam_operator::controller::runtime::server::Readiness;
use okta_ciam_operator::crd::{GroupMembership, OktaCiamConnector};
use okta_ciam_operator::emulator::{self, EmulatorConfig, EmulatorHandle, Fixture};
use okta_ciam_operator::okta::{ApiToken, ClientOptions, DomainPolicy, OrgDomain};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const NS: &str = "identity";
const OPERATOR_NS: &str = "okta-ciam-operator";
const WAIT: Duration = Duration::from_secs(30);

const FIXTURE: &str = r#"
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
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    for _ in 0..3000 {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

struct Harness {
    server: TestServer,
    okta: EmulatorHandle,
    kube: Client,
    registry: Arc<ClientRegistry>,
    shutdown: CancellationToken,
    operator: Option<JoinHandle<()>>,
}

fn fast_client() -> ClientOptions {
    ClientOptions {
        retry_base_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
        max_rate_limit_wait: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

impl Harness {
    async fn start() -> Harness {
        let crds = [
            concat!(env!("CARGO_MANIFEST_DIR"), "/crds/oktaciamconnectors.yaml"),
            concat!(env!("CARGO_MANIFEST_DIR"), "/crds/groupmemberships.yaml"),
        ];
        let server = TestServer::start(crds).await.unwrap();
        let kube = server.client();
        let fixture = Fixture::from_yaml(FIXTURE).unwrap();
        let okta = emulator::start(EmulatorConfig::new(fixture)).await.unwrap();
        let namespaces: Api<Namespace> = Api::all(kube.clone());
        for ns in [NS, OPERATOR_NS] {
            let obj = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
            namespaces
                .create(&PostParams::default(), &obj)
                .await
                .unwrap();
        }
        let mut h = Harness {
            server,
            okta,
            kube,
            registry: Arc::new(ClientRegistry::new()),
            shutdown: CancellationToken::new(),
            operator: None,
        };
        h.connector("acme", json!({})).await;
        h.start_operator();
        h
    }

    /// Starts the reconciler with a fresh registry holding every connector's client (a
    /// restarted operator, once its connector reconciler synced).
    fn start_operator(&mut self) {
        let shutdown = CancellationToken::new();
        let ctx = Context {
            kube: self.kube.clone(),
            namespaces: Vec::new(),
            domain_policy: policy(),
            metrics: Metrics::new(),
            clients: self.registry.clone(),
            readiness: Readiness::new(),
            leadership: Leadership::always(&shutdown),
            shutdown: shutdown.clone(),
        };
        let settings = Settings {
            record_namespace: Some(OPERATOR_NS.into()),
            retry_delay: Duration::from_millis(200),
            resync: Duration::from_secs(600),
        };
        self.shutdown = shutdown;
        self.operator = Some(tokio::spawn(async move {
            let (caches_synced, _) = tokio::sync::oneshot::channel();
            run_with(ctx, settings, caches_synced).await.unwrap();
        }));
    }

    async fn stop_operator(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.operator.take() {
            tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        }
    }

    /// Creates a Ready connector (spec overrides in `extra`) and seeds its shared client.
    async fn connector(&self, name: &str, extra: Value) {
        let mut spec = json!({
            "domain": self.okta.domain(),
            "tokenSecretRef": {"name": "okta", "key": "token"},
            "emailDomains": ["example.com"],
            "provisioning": true,
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let api: Api<OktaCiamConnector> = Api::namespaced(self.kube.clone(), NS);
        let obj = serde_json::from_value(json!({
            "apiVersion": "oktaciam.io/v1alpha1", "kind": "OktaCiamConnector",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap();
        self.connector_synced(name, "2026-01-01T00:00:00Z").await;
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

    /// Marks the connector Ready with a new sync time, as the connector reconciler does
    /// after each sync.
    async fn connector_synced(&self, name: &str, at: &str) {
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

    fn gms(&self) -> Api<GroupMembership> {
        Api::namespaced(self.kube.clone(), NS)
    }

    async fn apply(&self, name: &str, spec: Value) {
        let obj = json!({
            "apiVersion": "oktaciam.io/v1alpha1", "kind": "GroupMembership",
            "metadata": {"name": name}, "spec": spec,
        });
        self.gms()
            .patch(
                name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(&obj),
            )
            .await
            .unwrap();
    }

    async fn get(&self, name: &str) -> Option<GroupMembership> {
        self.gms().get_opt(name).await.unwrap()
    }

    /// Waits until the named condition has `status` and `reason`.
    async fn wait_condition(
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

    async fn wait_gone(&self, name: &str) {
        wait_for(&format!("{name} deleted"), || async {
            self.get(name).await.is_none().then_some(())
        })
        .await;
    }

    async fn delete(&self, name: &str) {
        self.gms()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }

    fn group(&self, name: &str) -> String {
        self.okta.group_id(name).unwrap()
    }

    fn user(&self, login: &str) -> String {
        self.okta.user_id(login).unwrap()
    }

    fn members(&self, group: &str) -> BTreeSet<String> {
        self.okta
            .members_of(&self.group(group))
            .into_iter()
            .collect()
    }

    fn ids(&self, logins: &[&str]) -> BTreeSet<String> {
        logins.iter().map(|l| self.user(l)).collect()
    }

    /// Membership writes (PUT or DELETE) the emulator answered so far.
    fn writes(&self) -> u64 {
        self.okta
            .stats()
            .requests
            .by_route
            .iter()
            .filter(|(route, _)| route.starts_with("PUT ") || route.starts_with("DELETE "))
            .map(|(_, n)| n)
            .sum()
    }

    async fn event_reasons(&self, name: &str) -> Vec<(String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.kube.clone(), NS);
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
            .collect()
    }

    async fn wait_event(&self, name: &str, type_: &str, reason: &str) {
        wait_for(&format!("{type_} Event {reason} on {name}"), || async {
            self.event_reasons(name)
                .await
                .iter()
                .any(|(t, r)| t == type_ && r == reason)
                .then_some(())
        })
        .await;
    }

    async fn shutdown(mut self) {
        self.stop_operator().await;
        self.okta.shutdown().await;
        self.server.shutdown().await;
    }
}

fn policy() -> DomainPolicy {
    DomainPolicy {
        insecure_loopback_http: true,
        ..DomainPolicy::default()
    }
}

fn user_row<'a>(
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

fn state_of(gm: &GroupMembership, user: &str) -> String {
    let row = user_row(gm, user);
    format!(
        "{:?}/{:?}/{}",
        row.state,
        row.origin,
        row.reason.as_deref().unwrap_or("")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_adds_removes_and_revokes_on_delete_leaving_preexisting_alone() {
    let h = Harness::start().await;
    h.apply(
        "oncall",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng On-Call"},
               "users": ["alice@example.com", "bob@example.com", "dave@example.com"]}),
    )
    .await;
    let gm = h.wait_condition("oncall", "Ready", "True", "Granted").await;
    assert_eq!(
        h.members("Eng On-Call"),
        h.ids(&["alice@example.com", "bob@example.com", "dave@example.com"])
    );
    let status = gm.status.as_ref().unwrap();
    assert_eq!(status.ready_users.as_deref(), Some("3/3"));
    assert_eq!(
        status.group_id.as_deref(),
        Some(h.group("Eng On-Call").as_str())
    );
    assert!(
        gm.metadata
            .finalizers
            .as_ref()
            .unwrap()
            .contains(&FINALIZER.to_string())
    );
    assert_eq!(
        state_of(&gm, "alice@example.com"),
        "Granted/Some(Granted)/Granted"
    );
    assert_eq!(
        state_of(&gm, "dave@example.com"),
        "Granted/Some(Preexisting)/Preexisting"
    );
    h.wait_event("oncall", "Normal", "Granted").await;

    // The ownership record: one labelled ConfigMap in the operator's namespace.
    let cms: Api<ConfigMap> = Api::namespaced(h.kube.clone(), OPERATOR_NS);
    let records = cms
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=okta-ciam-operator"))
        .await
        .unwrap();
    assert_eq!(records.items.len(), 1);
    let record = &records.items[0].data.as_ref().unwrap()["record"];
    assert!(
        record.contains(&h.user("alice@example.com")) && record.contains("identity/oncall"),
        "{record}"
    );

    // Swap bob for carol, and stop declaring dave (preexisting: stays in Okta).
    h.apply(
        "oncall",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng On-Call"},
               "users": ["alice@example.com", "carol@example.com"]}),
    )
    .await;
    wait_for("bob revoked, carol granted", || async {
        (h.members("Eng On-Call")
            == h.ids(&["alice@example.com", "carol@example.com", "dave@example.com"]))
        .then_some(())
    })
    .await;
    let gm = h.wait_condition("oncall", "Ready", "True", "Granted").await;
    assert_eq!(
        gm.status.as_ref().unwrap().ready_users.as_deref(),
        Some("2/2")
    );
    h.wait_event("oncall", "Normal", "Revoked").await;

    // Delete (Revoke): only the operator's grants go.
    h.delete("oncall").await;
    h.wait_gone("oncall").await;
    assert_eq!(h.members("Eng On-Call"), h.ids(&["dave@example.com"]));
    let records = cms.list(&ListParams::default()).await.unwrap();
    assert!(records.items.is_empty(), "an emptied record is removed");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_ownership_and_retain() {
    let h = Harness::start().await;
    let spec = |users: &[&str], policy: &str| {
        json!({"connectorRef": {"name": "acme"}, "group": {"id": h.group("Eng Admins")},
               "users": users, "deletionPolicy": policy})
    };
    h.apply(
        "first",
        spec(&["alice@example.com", "bob@example.com"], "Revoke"),
    )
    .await;
    h.wait_condition("first", "Ready", "True", "Granted").await;
    h.apply("second", spec(&["alice@example.com"], "Revoke"))
        .await;
    let second = h.wait_condition("second", "Ready", "True", "Granted").await;
    // Granted by the operator for `first`: `second` shares that grant.
    assert_eq!(
        state_of(&second, "alice@example.com"),
        "Granted/Some(Granted)/Granted"
    );

    // Deleting `first` revokes bob (only its own) but keeps alice (still declared).
    h.delete("first").await;
    h.wait_gone("first").await;
    assert_eq!(h.members("Eng Admins"), h.ids(&["alice@example.com"]));

    // The last claimant lets go: alice is revoked.
    h.delete("second").await;
    h.wait_gone("second").await;
    assert!(h.members("Eng Admins").is_empty());

    // Retain leaves the grant in Okta.
    h.apply("kept", spec(&["carol@example.com"], "Retain"))
        .await;
    h.wait_condition("kept", "Ready", "True", "Granted").await;
    let writes = h.writes();
    h.delete("kept").await;
    h.wait_gone("kept").await;
    assert_eq!(h.members("Eng Admins"), h.ids(&["carol@example.com"]));
    assert_eq!(h.writes(), writes, "Retain makes no Okta write");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_revokes_at_expiresat_and_keeps_the_object() {
    let h = Harness::start().await;
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4);
    h.apply(
        "jit",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng On-Call"},
               "users": ["alice@example.com", "dave@example.com"], "expiresAt": at.to_string()}),
    )
    .await;
    h.wait_condition("jit", "Expired", "False", "NotExpired")
        .await;
    let gm = h.wait_condition("jit", "Expired", "True", "Expired").await;
    assert_eq!(
        h.members("Eng On-Call"),
        h.ids(&["dave@example.com"]),
        "preexisting dave stays"
    );
    assert_eq!(
        user_row(&gm, "alice@example.com").state,
        okta_ciam_operator::crd::UserMembershipState::Expired
    );
    let ready = gm
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Expired")
    );
    h.wait_event("jit", "Normal", "Expired").await;

    // Extending expiresAt grants again.
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    h.apply(
        "jit",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng On-Call"},
               "users": ["alice@example.com", "dave@example.com"], "expiresAt": later.to_string()}),
    )
    .await;
    h.wait_condition("jit", "Ready", "True", "Granted").await;
    assert!(
        h.members("Eng On-Call")
            .contains(&h.user("alice@example.com"))
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_corrected_after_a_connector_sync_and_across_a_restart() {
    let mut h = Harness::start().await;
    h.apply(
        "oncall",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng On-Call"},
               "users": ["alice@example.com"]}),
    )
    .await;
    h.wait_condition("oncall", "Ready", "True", "Granted").await;
    let group = h.group("Eng On-Call");
    let alice = h.user("alice@example.com");
    assert!(h.okta.remove_membership(&group, &alice).unwrap());
    h.connector_synced("acme", "2026-01-01T01:00:00Z").await;
    wait_for("alice added again", || async {
        h.members("Eng On-Call").contains(&alice).then_some(())
    })
    .await;
    h.wait_event("oncall", "Normal", "DriftCorrected").await;

    // A restarted operator (new process state, same cluster) still owns the grant: removing
    // alice from the spec while it is down revokes her once it is back.
    h.stop_operator().await;
    h.apply(
        "oncall",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng On-Call"},
               "users": ["bob@example.com"]}),
    )
    .await;
    h.start_operator();
    wait_for("alice revoked by the restarted operator", || async {
        (h.members("Eng On-Call") == h.ids(&["bob@example.com", "dave@example.com"])).then_some(())
    })
    .await;

    // A user suspended in Okta is reported, not skipped.
    h.okta
        .set_user_status(&h.user("bob@example.com"), "SUSPENDED")
        .unwrap();
    h.connector_synced("acme", "2026-01-01T02:00:00Z").await;
    let gm = h
        .wait_condition("oncall", "Ready", "False", "UserInactive")
        .await;
    assert_eq!(
        user_row(&gm, "bob@example.com").reason.as_deref(),
        Some("UserInactive")
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_rails_refuse_without_writing() {
    let h = Harness::start().await;
    h.connector("no-provisioning", json!({"provisioning": false}))
        .await;
    h.connector("suspended", json!({"suspend": true})).await;
    h.connector("eng-only", json!({"groupNameFilter": "eng"}))
        .await;
    // Exists but never synced: no Ready condition, no client.
    let api: Api<OktaCiamConnector> = Api::namespaced(h.kube.clone(), NS);
    let unsynced = serde_json::from_value(json!({
        "apiVersion": "oktaciam.io/v1alpha1", "kind": "OktaCiamConnector",
        "metadata": {"name": "unsynced"},
        "spec": {"domain": h.okta.domain(), "tokenSecretRef": {"name": "okta", "key": "token"},
                 "emailDomains": ["example.com"], "provisioning": true},
    }))
    .unwrap();
    api.create(&PostParams::default(), &unsynced).await.unwrap();

    let cases: &[(&str, &str, Value, &str)] = &[
        (
            "missing",
            "nope",
            json!({"name": "Eng On-Call"}),
            "ConnectorNotFound",
        ),
        (
            "not-ready",
            "unsynced",
            json!({"name": "Eng On-Call"}),
            "ConnectorNotReady",
        ),
        (
            "disabled",
            "no-provisioning",
            json!({"name": "Eng On-Call"}),
            "ProvisioningDisabled",
        ),
        (
            "paused",
            "suspended",
            json!({"name": "Eng On-Call"}),
            "ConnectorSuspended",
        ),
        (
            "no-group",
            "acme",
            json!({"name": "No Such Group"}),
            "GroupNotFound",
        ),
        (
            "no-group-id",
            "acme",
            json!({"id": "00gdoesnotexist"}),
            "GroupNotFound",
        ),
        (
            "filtered",
            "eng-only",
            json!({"name": "Sales"}),
            "GroupOutOfScope",
        ),
        (
            "imported",
            "acme",
            json!({"name": "Eng Imported"}),
            "GroupNotOktaManaged",
        ),
    ];
    for (name, connector, group, _) in cases {
        h.apply(name, json!({"connectorRef": {"name": connector}, "group": group, "users": ["alice@example.com"]}))
            .await;
    }
    let user_cases: &[(&str, &str)] = &[
        ("nobody@example.com", "UserNotFound"),
        ("twin@example.com", "UserAmbiguous"),
        ("mallory@evil.example.org", "UserOutOfScope"),
        ("suspended@example.com", "UserInactive"),
    ];
    let users: Vec<&str> = user_cases.iter().map(|(u, _)| *u).collect();
    h.apply(
        "users",
        json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng Admins"}, "users": users}),
    )
    .await;

    for (name, _, _, reason) in cases {
        h.wait_condition(name, "Ready", "False", reason).await;
        h.wait_event(name, "Warning", reason).await;
    }
    // The most important user reason leads; every user carries its own.
    let gm = h
        .wait_condition("users", "Ready", "False", "UserOutOfScope")
        .await;
    for (user, reason) in user_cases {
        assert_eq!(
            user_row(&gm, user).reason.as_deref(),
            Some(*reason),
            "{user}"
        );
        assert_eq!(
            user_row(&gm, user).state,
            okta_ciam_operator::crd::UserMembershipState::Failed
        );
    }
    for (_, reason) in user_cases {
        h.wait_event("users", "Warning", reason).await;
    }
    assert_eq!(h.writes(), 0, "no guard-rail case wrote to Okta");
    assert_eq!(h.members("Eng On-Call"), h.ids(&["dave@example.com"]));
    assert!(h.members("Eng Admins").is_empty());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_through_server_errors_and_rate_limits() {
    let h = Harness::start().await;
    let before_sales = h.members("Sales");
    for (status, name) in [(500u16, "five-hundreds"), (429, "rate-limited")] {
        h.okta.set_faults(emulator::Faults {
            error_rate: 0.4,
            error_status: Some(status),
            ..emulator::Faults::default()
        });
        h.apply(
            name,
            json!({"connectorRef": {"name": "acme"}, "group": {"name": "Eng Admins"},
                   "users": ["alice@example.com", "bob@example.com", "carol@example.com"]}),
        )
        .await;
        h.wait_condition(name, "Ready", "True", "Granted").await;
        h.okta.set_faults(emulator::Faults::default());
    }
    assert_eq!(
        h.members("Eng Admins"),
        h.ids(&["alice@example.com", "bob@example.com", "carol@example.com"])
    );
    assert_eq!(
        h.members("Eng On-Call"),
        h.ids(&["dave@example.com"]),
        "memberships not owned are unchanged"
    );
    assert_eq!(h.members("Sales"), before_sales);
    let stats = h.okta.stats();
    assert!(
        stats.requests.by_status.keys().any(|s| s == "500"),
        "{stats:?}"
    );

    // Revocation through faults too: both declarations go, so do the grants.
    h.okta.set_faults(emulator::Faults {
        error_rate: 0.4,
        ..emulator::Faults::default()
    });
    h.delete("five-hundreds").await;
    h.delete("rate-limited").await;
    h.wait_gone("five-hundreds").await;
    h.wait_gone("rate-limited").await;
    h.okta.set_faults(emulator::Faults::default());
    assert!(h.members("Eng Admins").is_empty());
    assert_eq!(h.members("Eng On-Call"), h.ids(&["dave@example.com"]));
    h.shutdown().await;
}
