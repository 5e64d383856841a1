//! The connector reconciler over real HTTP: the operator's controllers run in-process against
//! the Kubernetes API test server (serving the committed CRDs) and the Okta emulator.

use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube_test_server::TestServer;
use okta_ciam_operator::controller::connector::index::{self, ConnectorIndex};
use okta_ciam_operator::controller::run_controllers;
use okta_ciam_operator::controller::runtime::cli::RunArgs;
use okta_ciam_operator::controller::runtime::clients::ConnectorKey;
use okta_ciam_operator::controller::runtime::{Context, Operator};
use okta_ciam_operator::crd::condition::find_condition;
use okta_ciam_operator::crd::{ConditionType, OktaCiamConnector};
use okta_emulator::{self as emulator, EmulatorConfig, EmulatorHandle, Faults, Fixture};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support;
use support::okta_writes;

/// Upper bound for any wait; generous for a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(90);
const NS: &str = "default";
const NAME: &str = "corp";
const SECRET: &str = "okta-token";

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: RunArgs,
}

/// A test server, an emulated org and the operator's controllers running against both.
struct Harness {
    server: TestServer,
    okta: EmulatorHandle,
    ctx: Context,
    stop: Option<oneshot::Sender<()>>,
    operator: JoinHandle<()>,
}

fn fixture() -> Fixture {
    Fixture::from_yaml(
        "tokens: [token-1, token-2]\n\
         users:\n\
         \x20 - {login: alice@example.com, email: alice@example.com}\n\
         \x20 - {login: bob@example.com, email: bob@example.com}\n\
         \x20 - {login: carol@other.org, email: carol@other.org}\n\
         groups:\n\
         \x20 - {name: Engineering, type: OKTA_GROUP, members: [alice@example.com, bob@example.com, carol@other.org]}\n\
         \x20 - {name: Sales, type: OKTA_GROUP, members: [alice@example.com]}\n\
         rateLimits: {windowSeconds: 2}\n",
    )
    .expect("fixture parses")
}

impl Harness {
    async fn start() -> Harness {
        Self::start_with(&[]).await
    }

    /// Starts with extra `run` flags.
    async fn start_with(extra: &[&str]) -> Harness {
        let server = support::start_test_server().await;
        let okta = emulator::start(EmulatorConfig::new(fixture()))
            .await
            .expect("emulator starts");
        let argv = [
            "run",
            "--metrics-addr",
            "127.0.0.1:0",
            "--insecure-loopback-http",
        ];
        let args = Wrapper::try_parse_from(argv.iter().chain(extra))
            .unwrap()
            .args;
        let operator = Operator::start(args, server.client())
            .await
            .expect("operator starts");
        let ctx = operator.context();
        let (stop, stopped) = oneshot::channel::<()>();
        let operator = tokio::spawn(async move {
            let signal = async {
                let _ = stopped.await;
            };
            operator
                .run(signal, run_controllers)
                .await
                .expect("operator stops cleanly");
        });
        Harness {
            server,
            okta,
            ctx,
            stop: Some(stop),
            operator,
        }
    }

    fn connectors(&self) -> Api<OktaCiamConnector> {
        Api::namespaced(self.server.client(), NS)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.server.client(), NS)
    }

    async fn put_secret(&self, key: &str, token: &str) {
        let secret = support::token_secret(SECRET, key, token);
        support::apply(&self.secrets(), "test", SECRET, &secret).await;
    }

    async fn create_connector(&self, domain: &str, extra: serde_json::Value) {
        let spec = serde_json::json!({
            "domain": domain,
            "tokenSecretRef": {"name": SECRET},
            "emailDomains": ["example.com"],
            "syncInterval": "1h",
        });
        let obj: OktaCiamConnector =
            serde_json::from_value(support::connector_json(NAME, spec, extra)).unwrap();
        self.connectors()
            .create(&PostParams::default(), &obj)
            .await
            .expect("connector created");
    }

    /// Stores `token-1`, creates the connector for the emulator's org with `extra` in its spec
    /// and waits for its first sync.
    async fn create_synced(&self, extra: serde_json::Value) -> OktaCiamConnector {
        self.put_secret("apiToken", "token-1").await;
        self.create_connector(&self.okta.domain(), extra).await;
        self.wait_condition(ConditionType::Ready, "True", "Synced")
            .await
    }

    async fn patch_spec(&self, spec: serde_json::Value) {
        self.connectors()
            .patch(
                NAME,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await
            .expect("spec patched");
    }

    /// Waits until the connector's condition `type_` has `status` and `reason`.
    async fn wait_condition(
        &self,
        type_: ConditionType,
        status: &str,
        reason: &str,
    ) -> OktaCiamConnector {
        let (want_status, want_reason) = (status.to_owned(), reason.to_owned());
        let cond = move |obj: Option<&OktaCiamConnector>| {
            obj.and_then(|o| o.status.as_ref())
                .and_then(|s| find_condition(&s.conditions, type_))
                .is_some_and(|c| c.status == want_status && c.reason == want_reason)
        };
        match tokio::time::timeout(LIMIT, await_condition(self.connectors(), NAME, cond)).await {
            Ok(Ok(Some(obj))) => obj,
            other => {
                let now = self.connectors().get(NAME).await.ok();
                panic!(
                    "condition {type_}={status}/{reason} not reached ({other:?}); status: {:#?}",
                    now.and_then(|o| o.status)
                )
            }
        }
    }

    /// Waits until `Ready` has `status` and `reason`, and checks `CredentialsValid` says the
    /// same (the credential check decided the outcome).
    async fn wait_ready_with_credentials(&self, status: &str, reason: &str) -> OktaCiamConnector {
        let obj = self
            .wait_condition(ConditionType::Ready, status, reason)
            .await;
        assert_eq!(
            condition(&obj, ConditionType::CredentialsValid),
            pair(status, reason)
        );
        obj
    }

    /// Revokes the connector's token (`token-1`) in the emulator and changes the spec, which
    /// makes a sync due at once; returns the connector once that sync met the revoked token.
    async fn revoke_token_and_resync(&self) -> OktaCiamConnector {
        assert!(self.okta.revoke_token("token-1"));
        self.patch_spec(serde_json::json!({"syncInterval": "2h"}))
            .await;
        self.wait_ready_with_credentials("False", "Unauthorized")
            .await
    }

    /// Waits until an Event with `reason` about the connector exists, and returns its type.
    async fn wait_event(&self, reason: &str) -> String {
        let kube = self.server.client();
        let found = support::try_wait_within(LIMIT, || async {
            support::events_about(&kube, NS, NAME)
                .await
                .into_iter()
                .find_map(|(type_, r)| (r == reason).then_some(type_))
        })
        .await;
        match found {
            Some(type_) => type_,
            None => panic!("no {reason} Event; have {:?}", self.event_reasons().await),
        }
    }

    async fn event_reasons(&self) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.server.client(), NS);
        let list = events
            .list(&Default::default())
            .await
            .expect("events listed");
        list.items.into_iter().filter_map(|e| e.reason).collect()
    }

    fn key() -> ConnectorKey {
        ConnectorKey::new(NS, NAME)
    }

    fn index(&self) -> Option<std::sync::Arc<ConnectorIndex>> {
        index::lookup(&self.ctx.clients, &Self::key())
    }

    /// Waits until `check` holds for the registry, re-checking on each registry change.
    async fn wait_registry(&self, what: &str, check: impl Fn(&Harness) -> bool) {
        let mut changes = self.ctx.clients.subscribe();
        let wait = async {
            while !check(self) {
                changes.changed().await.expect("registry alive");
            }
        };
        tokio::time::timeout(LIMIT, wait)
            .await
            .unwrap_or_else(|_| panic!("registry never reached: {what}"));
    }

    /// Requests the emulator answered on `route`, e.g. `GET /api/v1/org`.
    fn requests_on(&self, route: &str) -> u64 {
        support::okta_requests_on(&self.okta, route)
    }

    /// Connector reconciles finished without error, from the operator's metrics.
    fn reconciles(&self) -> u64 {
        let metrics = self.ctx.metrics.encode();
        let prefix = r#"okta_ciam_reconciles_total{kind="OktaCiamConnector",result="success"} "#;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .map_or(0, |n| n.trim().parse().expect("a counter value"))
    }

    /// Annotates the token Secret (the token stays the same) and waits until the Secret watch
    /// made the operator reconcile the connector.
    async fn touch_secret_and_wait_for_a_reconcile(&self, value: &str) {
        let before = self.reconciles();
        self.secrets()
            .patch(
                SECRET,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({
                    "metadata": {"annotations": {"example.com/touched": value}}
                })),
            )
            .await
            .expect("secret annotated");
        support::wait_within("a reconcile after the Secret change", LIMIT, || async {
            (self.reconciles() > before).then_some(())
        })
        .await;
    }

    /// Waits until the status schedules a retry after `previous`.
    async fn wait_rescheduled_after(&self, previous: Timestamp) -> OktaCiamConnector {
        support::wait_within("a retry rescheduled", LIMIT, || async {
            let obj = self.connectors().get(NAME).await.ok()?;
            (next_sync_time(&obj) > previous).then_some(obj)
        })
        .await
    }

    async fn resource_version(&self) -> String {
        let obj = self.connectors().get(NAME).await.expect("connector read");
        obj.metadata.resource_version.expect("a resourceVersion")
    }

    /// Asserts that `count` does not move before `retry_at` (polled every 50 ms until half a
    /// second before it: the back-off is honoured, nothing retries in a loop), then waits,
    /// bounded, for the retry that moves it. Returns the count after the retry started.
    async fn assert_retried_only_at(
        &self,
        what: &str,
        retry_at: Timestamp,
        count: impl Fn(&Harness) -> u64,
    ) -> u64 {
        let before = count(self);
        let quiet = Duration::try_from(retry_at.duration_since(Timestamp::now()))
            .unwrap_or_default()
            .saturating_sub(Duration::from_millis(500));
        // Too short a window to tell a back-off from a loop only on a machine stalled for
        // seconds; the assertion says so rather than passing without looking.
        assert!(
            quiet >= Duration::from_secs(1),
            "{what}: the retry is due in {quiet:?} only"
        );
        let early = support::try_wait_within(quiet, || async {
            let now = count(self);
            (now != before).then_some(now)
        })
        .await;
        if let Some(now) = early {
            panic!("{what}: retried before {retry_at} ({before} -> {now} requests)");
        }
        support::wait_within(&format!("{what}: the retry"), LIMIT, || async {
            let now = count(self);
            (now > before).then_some(now)
        })
        .await
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(LIMIT, &mut self.operator)
            .await
            .expect("operator stops in time")
            .expect("operator task did not panic");
        self.okta.shutdown().await;
        self.server.shutdown().await;
    }
}

fn condition(obj: &OktaCiamConnector, type_: ConditionType) -> (String, String) {
    let c = find_condition(&obj.status.as_ref().unwrap().conditions, type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone())
}

fn pair(status: &str, reason: &str) -> (String, String) {
    (status.to_owned(), reason.to_owned())
}

fn next_sync_time(obj: &OktaCiamConnector) -> Timestamp {
    obj.status
        .as_ref()
        .and_then(|s| s.next_sync_time.as_ref())
        .expect("a retry is scheduled")
        .0
}

/// (message, lastTransitionTime) of a condition.
fn message_and_since(obj: &OktaCiamConnector, type_: ConditionType) -> (String, Timestamp) {
    let c = find_condition(&obj.status.as_ref().unwrap().conditions, type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.message.clone(), c.last_transition_time.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_becomes_ready_with_counts_and_an_index_for_memberships() {
    let h = Harness::start().await;
    let obj = h
        .create_synced(serde_json::json!({"provisioning": true}))
        .await;
    let status = obj.status.clone().unwrap();
    assert_eq!(
        condition(&obj, ConditionType::CredentialsValid),
        pair("True", "Synced")
    );
    assert_eq!(
        condition(&obj, ConditionType::Synced),
        pair("True", "Synced")
    );
    assert_eq!(status.observed_generation, obj.metadata.generation);
    let counts = status.counts.expect("counts");
    // carol@other.org is out of scope; her membership is not counted.
    assert_eq!((counts.users, counts.group_memberships), (2, 3));
    assert_eq!(counts.custom_roles, 0);
    assert!(counts.groups >= 2, "{counts:?}");
    assert!(status.okta.expect("okta stats").requests > 0);
    let last = status.last_successful_sync_time.expect("last success").0;
    let next = status.next_sync_time.expect("next sync").0;
    assert_eq!(
        next.duration_since(last),
        k8s_openapi::jiff::SignedDuration::from_hours(1)
    );

    let ix = h.index().expect("index stored after the sync");
    assert!(ix.facts.ready && ix.facts.provisioning && !ix.facts.suspended);
    let alice = ix.user_by_address("ALICE@example.com").expect("alice");
    assert!(ix.user_by_address("carol@other.org").is_none());
    let eng = ix.groups_named("engineering");
    assert_eq!(eng.len(), 1);
    assert!(ix.is_member(&eng[0].id, &alice.id));
    assert_eq!(ix.user_count() as i64, counts.users);
    assert!(h.ctx.clients.client(&Harness::key()).is_some());

    let metrics = h.ctx.metrics.encode();
    assert!(
        metrics.contains("namespace=\"default\",name=\"corp\"")
            || metrics.contains("name=\"corp\",namespace=\"default\""),
        "{metrics}"
    );
    // A first successful sync is not news: no Event.
    assert!(
        h.event_reasons().await.is_empty(),
        "{:?}",
        h.event_reasons().await
    );

    // Deleting the connector drops its client and index; nothing is written to Okta.
    let writes_before = okta_writes(&h.okta);
    h.connectors()
        .delete(NAME, &DeleteParams::default())
        .await
        .unwrap();
    h.wait_registry("client dropped", |h| {
        h.ctx.clients.client(&Harness::key()).is_none()
    })
    .await;
    assert!(h.index().is_none());
    assert_eq!(okta_writes(&h.okta), writes_before);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_problems_are_reported_and_fixed_through_the_secret_watch() {
    let h = Harness::start().await;
    h.create_connector(&h.okta.domain(), serde_json::json!({}))
        .await;
    h.wait_ready_with_credentials("False", "SecretNotFound")
        .await;
    assert_eq!(h.wait_event("SecretNotFound").await, "Warning");
    assert_eq!(
        h.okta.stats().requests.total,
        0,
        "no Okta call without a token"
    );

    h.put_secret("wrongKey", "token-1").await;
    h.wait_condition(ConditionType::CredentialsValid, "False", "SecretKeyMissing")
        .await;

    // Only the Secret changes: its watch (not a timer) brings the connector to Ready.
    h.put_secret("apiToken", "token-1").await;
    h.wait_condition(ConditionType::Ready, "True", "Synced")
        .await;
    assert_eq!(h.wait_event("Recovered").await, "Normal");

    // A deleted Secret flips CredentialsValid only; the sync results stay.
    h.secrets()
        .delete(SECRET, &DeleteParams::default())
        .await
        .unwrap();
    let obj = h
        .wait_condition(ConditionType::CredentialsValid, "False", "SecretNotFound")
        .await;
    assert_eq!(
        condition(&obj, ConditionType::Synced),
        pair("True", "Synced")
    );
    assert_eq!(obj.status.unwrap().counts.unwrap().users, 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_unauthorized_and_a_rotated_one_recovers() {
    let h = Harness::start().await;
    h.create_synced(serde_json::json!({})).await;

    h.revoke_token_and_resync().await;
    assert_eq!(h.wait_event("Unauthorized").await, "Warning");
    assert!(
        !h.index().expect("the index survives").facts.ready,
        "memberships must not act on an unauthorized connector"
    );

    h.put_secret("apiToken", "token-2").await;
    h.wait_ready_with_credentials("True", "Synced").await;
    assert_eq!(h.wait_event("CredentialsChanged").await, "Normal");
    assert_eq!(h.wait_event("Recovered").await, "Normal");
    assert!(h.index().unwrap().facts.ready);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_makes_no_okta_request() {
    let h = Harness::start().await;
    h.put_secret("apiToken", "token-1").await;
    // Valid for the schema, refused by the domain policy (no --allow-domain for it).
    h.create_connector("corp.example.com", serde_json::json!({}))
        .await;
    let obj = h
        .wait_condition(ConditionType::Ready, "False", "InvalidSpec")
        .await;
    let message = find_condition(&obj.status.unwrap().conditions, ConditionType::Ready)
        .unwrap()
        .message
        .clone();
    assert!(message.contains("corp.example.com"), "{message}");
    assert!(!message.contains("token-1"));
    assert_eq!(h.wait_event("InvalidSpec").await, "Warning");
    assert_eq!(h.okta.stats().requests.total, 0);

    // Fixing the spec recovers without any other trigger.
    h.patch_spec(serde_json::json!({"domain": h.okta.domain()}))
        .await;
    h.wait_condition(ConditionType::Ready, "True", "Synced")
        .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspending_stops_syncing_and_deletes_nothing() {
    let h = Harness::start().await;
    let ready = h.create_synced(serde_json::json!({})).await;
    let requests = h.okta.stats().requests.total;

    h.patch_spec(serde_json::json!({"suspend": true})).await;
    let obj = h
        .wait_condition(ConditionType::Ready, "False", "Suspended")
        .await;
    let (before, after) = (ready.status.unwrap(), obj.status.unwrap());
    assert_eq!(after.counts, before.counts);
    assert_eq!(
        after.last_successful_sync_time,
        before.last_successful_sync_time
    );
    assert_eq!(h.okta.stats().requests.total, requests, "no Okta call");
    h.wait_registry("index marked suspended", |h| {
        h.index()
            .is_some_and(|ix| ix.facts.suspended && !ix.facts.ready)
    })
    .await;

    h.patch_spec(serde_json::json!({"suspend": false})).await;
    h.wait_condition(ConditionType::Ready, "True", "Synced")
        .await;
    assert!(h.index().unwrap().facts.ready);

    // A wider scope replaces the index: carol@other.org is now in it.
    h.patch_spec(serde_json::json!({"emailDomains": ["example.com", "other.org"]}))
        .await;
    h.wait_registry("index rebuilt for the new scope", |h| {
        h.index()
            .is_some_and(|ix| ix.user_by_address("carol@other.org").is_some())
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_okta_backs_off_and_recovers_on_its_own() {
    let h = Harness::start().await;
    let first = h.create_synced(serde_json::json!({})).await;
    let first_sync = first.status.unwrap().last_successful_sync_time.unwrap();

    h.okta.set_faults(Faults {
        error_rate: 1.0,
        error_status: Some(503),
        ..Faults::default()
    });
    // A rotated token forces a credential check, which meets the outage.
    h.put_secret("apiToken", "token-2").await;
    let obj = h
        .wait_condition(ConditionType::Ready, "False", "OktaUnreachable")
        .await;
    let status = obj.status.unwrap();
    let next = status.next_sync_time.expect("a retry is scheduled").0;
    let backoff_cap = k8s_openapi::jiff::SignedDuration::from_mins(5);
    assert!(next.duration_since(k8s_openapi::jiff::Timestamp::now()) <= backoff_cap);
    assert_eq!(h.wait_event("OktaUnreachable").await, "Warning");

    // Nothing changes in the cluster: the back-off requeue alone brings it back.
    h.okta.set_faults(Faults::default());
    let obj = h.wait_ready_with_credentials("True", "Synced").await;
    let resynced = obj.status.unwrap().last_successful_sync_time.unwrap();
    assert!(
        resynced > first_sync,
        "the new token is synced with, not just assumed"
    );
    assert_eq!(h.wait_event("Recovered").await, "Normal");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_watched_namespaces_are_reconciled() {
    let h = Harness::start_with(&["--namespace", NS]).await;
    // The same connector in a namespace the operator does not watch, created first.
    let elsewhere: Api<OktaCiamConnector> = Api::namespaced(h.server.client(), "kube-public");
    let spec = serde_json::json!({"domain": h.okta.domain(), "tokenSecretRef": {"name": SECRET},
                                  "emailDomains": ["example.com"]});
    let obj: OktaCiamConnector =
        serde_json::from_value(support::connector_json(NAME, spec, serde_json::json!({}))).unwrap();
    elsewhere
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
    h.create_synced(serde_json::json!({})).await;
    assert!(
        elsewhere.get(NAME).await.unwrap().status.is_none(),
        "a connector outside --namespace got a status"
    );
    assert_eq!(h.ctx.clients.keys(), vec![Harness::key()]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_rechecked_on_a_back_off_not_in_a_loop() {
    let h = Harness::start().await;
    h.create_synced(serde_json::json!({})).await;
    let failing = h.revoke_token_and_resync().await;
    let (message, since) = message_and_since(&failing, ConditionType::CredentialsValid);
    assert!(message.contains("HTTP 401 E0000011"), "{message}");
    assert!(
        !message.contains("errorId") && !message.contains("request id"),
        "per-response ids belong in logs, not in the status: {message}"
    );
    let org = |h: &Harness| h.requests_on("GET /api/v1/org");

    // The first re-check comes at nextSyncTime, not before.
    let first_retry = next_sync_time(&failing);
    h.assert_retried_only_at("the credential re-check", first_retry, org)
        .await;
    let again = h.wait_rescheduled_after(first_retry).await;
    assert_eq!(
        condition(&again, ConditionType::CredentialsValid),
        pair("False", "Unauthorized")
    );
    let (recheck_message, recheck_since) =
        message_and_since(&again, ConditionType::CredentialsValid);
    assert_eq!(recheck_since, since, "False stayed False: no transition");
    assert!(!recheck_message.contains("errorId"), "{recheck_message}");
    // The second failure doubles the wait (status times are whole seconds).
    let second_retry = next_sync_time(&again);
    assert!(
        second_retry.duration_since(first_retry) >= SignedDuration::from_secs(9),
        "{first_retry} -> {second_retry}"
    );
    let rechecks = org(&h);
    assert_eq!(h.wait_event("Unauthorized").await, "Warning");

    // A trigger that changes nothing (the Secret annotated, the token the same) reconciles
    // but neither calls Okta nor rewrites the status while the back-off runs.
    let rv = h.resource_version().await;
    h.touch_secret_and_wait_for_a_reconcile("1").await;
    assert_eq!(org(&h), rechecks, "a re-check before the back-off elapsed");
    assert_eq!(h.resource_version().await, rv, "the status was rewritten");

    h.assert_retried_only_at("the second re-check", second_retry, org)
        .await;
    assert_eq!(org(&h), rechecks + 1, "one GET /api/v1/org per attempt");
    // The same failed check reads the same: only nextSyncTime moved.
    let third = h.wait_rescheduled_after(second_retry).await;
    assert_eq!(
        message_and_since(&third, ConditionType::CredentialsValid),
        (recheck_message, since)
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_storm_during_a_sync_backs_off() {
    let h = Harness::start().await;
    h.create_synced(serde_json::json!({})).await;
    h.okta.set_faults(Faults {
        error_rate: 1.0,
        error_status: Some(503),
        ..Faults::default()
    });
    // A spec change makes a sync due with the known-good token: the sync meets the storm.
    h.patch_spec(serde_json::json!({"syncInterval": "2h"}))
        .await;
    let failing = h
        .wait_condition(ConditionType::Synced, "False", "OktaUnreachable")
        .await;
    assert_eq!(
        condition(&failing, ConditionType::CredentialsValid),
        pair("True", "Synced"),
        "the sync got past the credential check"
    );
    let (message, _) = message_and_since(&failing, ConditionType::Synced);
    assert!(message.contains("HTTP 503"), "{message}");
    assert!(!message.contains("errorId"), "{message}");
    let total = |h: &Harness| h.okta.stats().requests.total;
    h.assert_retried_only_at("the sync retry", next_sync_time(&failing), total)
        .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_reconcile_rewrites_nothing() {
    let h = Harness::start().await;
    h.create_synced(serde_json::json!({})).await;
    let rv = h.resource_version().await;
    let requests = h.okta.stats().requests.total;
    h.touch_secret_and_wait_for_a_reconcile("1").await;
    assert_eq!(
        h.resource_version().await,
        rv,
        "an unchanged status was rewritten"
    );
    assert_eq!(h.okta.stats().requests.total, requests, "nothing was due");
    h.stop().await;
}

/// Notes of the connector's Events with `reason`, in no particular order.
async fn event_notes(h: &Harness, reason: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(h.server.client(), NS);
    events
        .list(&Default::default())
        .await
        .expect("events listed")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shrunken_snapshot_keeps_the_last_good_index_until_accepted_and_changes_become_events() {
    let h = Harness::start().await;
    h.create_synced(
        serde_json::json!({"provisioning": true, "shrinkGuard": {"minPreviousCount": 1}}),
    )
    .await;
    let alice = h.okta.user_id("alice@example.com").unwrap();
    let bob = h.okta.user_id("bob@example.com").unwrap();
    let sales = h.okta.group_id("Sales").unwrap();

    // Both users leave scope (as if the token could no longer see them): a 100% drop.
    h.okta
        .set_user_profile(&alice, "alice@other.org", "alice@other.org")
        .unwrap();
    h.okta
        .set_user_profile(&bob, "bob@other.org", "bob@other.org")
        .unwrap();
    let writes_before = okta_writes(&h.okta);
    h.patch_spec(serde_json::json!({"syncInterval": "2h"}))
        .await;
    let obj = h
        .wait_condition(ConditionType::Synced, "False", "SnapshotShrank")
        .await;
    assert_eq!(
        condition(&obj, ConditionType::Ready),
        pair("False", "SnapshotShrank")
    );
    let (message, _) = message_and_since(&obj, ConditionType::Synced);
    assert!(
        message.contains("0 users against 2") && message.contains("maxUserDropPercent"),
        "{message}"
    );
    // The last good counts and index stay; provisioning may go on with them.
    assert_eq!(obj.status.as_ref().unwrap().counts.unwrap().users, 2);
    let ix = h.index().expect("index kept");
    assert!(
        ix.facts.ready,
        "the last good index still serves provisioning"
    );
    assert!(ix.user_by_address("alice@example.com").is_some());
    support::wait_event(
        &h.server.client(),
        NS,
        NAME,
        ("Warning", "SnapshotShrank"),
        LIMIT,
    )
    .await;
    assert!(event_notes(&h, "AccessChanged").await.is_empty());

    // Accepting the drop: the new snapshot replaces the index, and what changed is told.
    h.patch_spec(serde_json::json!({"shrinkGuard": {"maxUserDropPercent": 100}}))
        .await;
    let obj = h
        .wait_condition(ConditionType::Synced, "True", "Synced")
        .await;
    assert_eq!(obj.status.as_ref().unwrap().counts.unwrap().users, 0);
    h.wait_registry("index replaced", |h| {
        h.index()
            .is_some_and(|ix| ix.user_by_address("alice@example.com").is_none())
    })
    .await;
    // Events are published one by one after the status write.
    let mut notes = support::wait_within("five AccessChanged Events", LIMIT, || async {
        let notes = event_notes(&h, "AccessChanged").await;
        (notes.len() >= 5).then_some(notes)
    })
    .await;
    // Both syncs after the first applied the System Log (no full read within 24h), which
    // names who made each change.
    assert!(support::okta_requests_on(&h.okta, "GET /api/v1/logs") >= 2);
    assert_eq!(
        support::okta_requests_on(&h.okta, "GET /api/v1/iam/roles"),
        1
    );
    let mut bare: Vec<String> = notes
        .iter()
        .map(|n| {
            let (change, by) = n.split_once(" (by ").expect("attributed");
            assert!(by.starts_with("console-admin@emulator.invalid at "), "{n}");
            change.to_owned()
        })
        .collect();
    bare.sort();
    notes.sort();
    let mut expected = vec![
        format!("- user {alice} alice@example.com"),
        format!("- user {bob} bob@example.com"),
        format!("- membership user {alice} in {sales}"),
    ];
    let eng = h.okta.group_id("Engineering").unwrap();
    expected.push(format!("- membership user {alice} in {eng}"));
    expected.push(format!("- membership user {bob} in {eng}"));
    expected.sort();
    assert_eq!(bare, expected);
    let metrics = h.ctx.metrics.encode();
    for (kind, n) in [("users", 2), ("memberships", 3)] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("okta_ciam_access_changes_total{")
                    && l.contains(&format!("kind=\"{kind}\""))
                    && l.contains("change=\"removed\"")
                    && l.ends_with(&format!(" {n}"))),
            "{metrics}"
        );
    }
    assert_eq!(
        okta_writes(&h.okta),
        writes_before,
        "the guard writes nothing"
    );
    h.stop().await;
}
