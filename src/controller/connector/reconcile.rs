//! The I/O half of the connector reconciler: watches, Secret reads, Okta calls, status writes
//! and Events. Decisions are delegated to [`super::decide`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Predicate, PredicateConfig, WatchStreamExt, predicates, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::oneshot;

use super::decide::{self, EventKind, Outcome, PlannedEvent, SyncReport};
use super::index::{self, ConnectorFacts, ConnectorIndex};
use super::revocations;
use super::{Error, KIND, Result};
use crate::controller::runtime::Context;
use crate::controller::runtime::clients::{ConnectorKey, Obtained, SettingsChange};
use crate::controller::runtime::controllers::run_until_stopped;
use crate::controller::runtime::metrics::ReconcileResult;
use crate::crd::condition::is_true;
use crate::crd::connector::CredentialsSpec;
use crate::crd::{
    ConditionType, FIELD_MANAGER, GroupMembership, OktaCiamConnector, ValidConnectorSpec,
};
use crate::okta::oauth::{OAuthConfig, PrivateKey};
use crate::okta::{ApiToken, ClientStats, Credentials, OktaClient, OrgDomain};
use crate::sync::engine::SyncConfig;
use crate::sync::incremental;
use crate::sync::progress::NoProgress;
use crate::sync::scope::{EmailDomains, GroupNameFilter};
use crate::sync::shrink;
use crate::sync::snapshot::SyncMode;

/// Most System Log events one incremental sync applies before it reads everything instead.
const MAX_LOG_EVENTS: usize = 10_000;

fn jiff_span(d: std::time::Duration) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::try_from(d).unwrap_or(k8s_openapi::jiff::SignedDuration::MAX)
}

/// Shared by every reconcile of one operator process.
struct State {
    ctx: Context,
    recorder: Recorder,
    /// Who publishes Events (also for those written without the recorder).
    reporter: Reporter,
    /// Consecutive failed attempts per connector, for back-off.
    failures: Mutex<HashMap<ConnectorKey, u32>>,
    /// Client counters already exported as metrics, per connector.
    exported: Mutex<HashMap<ConnectorKey, ClientStats>>,
}

impl State {
    /// Updates the connector's count of consecutive failed attempts with `update` and
    /// returns the new count (zero forgets it).
    fn update_failures(&self, key: &ConnectorKey, update: impl FnOnce(u32) -> u32) -> u32 {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = update(map.get(key).copied().unwrap_or(0));
        if n == 0 {
            map.remove(key);
        } else {
            map.insert(key.clone(), n);
        }
        n
    }

    /// Exports the requests `client` made since the last export (by any user of the shared
    /// client, the membership reconciler included, so they are counted exactly once here).
    fn export_stats(&self, key: &ConnectorKey, client: &OktaClient) {
        let now = client.stats();
        let mut map = self.exported.lock().unwrap_or_else(PoisonError::into_inner);
        let delta = now.since(map.get(key).unwrap_or(&ClientStats::default()));
        self.ctx.metrics.record_client_stats(&delta);
        map.insert(key.clone(), now);
    }

    fn forget(&self, key: &ConnectorKey) {
        if self.ctx.clients.remove(key) {
            tracing::info!(connector = %key, "connector deleted: dropped its Okta client and index");
        }
        self.ctx.metrics.remove_connector(&key.namespace, &key.name);
        self.exported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

fn key_of(obj: &OktaCiamConnector) -> Result<ConnectorKey> {
    let ns = obj
        .namespace()
        .ok_or_else(|| Error::NoNamespace(obj.name_any()))?;
    Ok(ConnectorKey::new(ns, obj.name_any()))
}

/// Runs the connector controller in every watched namespace (all when `ctx.namespaces` is
/// empty) until `ctx.shutdown` is cancelled. `caches_synced` fires once every connector cache
/// has been listed, for the runtime's readiness.
pub async fn run(ctx: Context, caches_synced: oneshot::Sender<()>) {
    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let state = Arc::new(State {
        recorder: Recorder::new(ctx.kube.clone(), reporter.clone()),
        reporter,
        ctx: ctx.clone(),
        failures: Mutex::default(),
        exported: Mutex::default(),
    });
    let scopes: Vec<Option<String>> = if ctx.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.namespaces.iter().cloned().map(Some).collect()
    };
    let mut readers = Vec::new();
    let mut controllers = Vec::new();
    for scope in scopes {
        let (reader, fut) = controller(scope, state.clone());
        readers.push(reader);
        controllers.push(fut);
    }
    let readers_for_stop = readers.clone();
    let shutdown = ctx.shutdown.clone();
    let synced = async move {
        tokio::select! {
            listed = future::try_join_all(readers.iter().map(Store::wait_until_ready)) => {
                if listed.is_ok() {
                    tracing::info!("connector caches synced");
                    let _ = caches_synced.send(());
                }
            }
            () = shutdown.cancelled() => {}
        }
    };
    let runs = controllers
        .into_iter()
        .zip(&readers_for_stop)
        .map(|(fut, reader)| run_until_stopped(fut, reader, &ctx.shutdown));
    futures::join!(future::join_all(runs), synced);
}

/// One controller over one namespace (or all), and its connector cache.
fn controller(
    scope: Option<String>,
    state: Arc<State>,
) -> (
    Store<OktaCiamConnector>,
    impl std::future::Future<Output = ()>,
) {
    let client = state.ctx.kube.clone();
    // Secrets are watched by metadata only: their `data` is read with a GET when needed.
    let (connectors, secrets): (Api<OktaCiamConnector>, Api<PartialObjectMeta<Secret>>) =
        match &scope {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client, ns),
            ),
            None => (Api::all(client.clone()), Api::all(client)),
        };
    let (reader, writer) = reflector::store();
    let breaker_scope = scope.clone();
    let cleanup = state.clone();
    let cleanup_reader = reader.clone();
    let stream = watcher(connectors, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .inspect_ok(move |event| match event {
            watcher::Event::Delete(obj) => {
                if let Ok(key) = key_of(obj) {
                    cleanup.forget(&key);
                }
            }
            // A relist: drop what was deleted while the watch was down.
            watcher::Event::InitDone => {
                let live: Vec<ConnectorKey> = cleanup_reader
                    .state()
                    .iter()
                    .filter_map(|c| key_of(c).ok())
                    .collect();
                for key in cleanup.ctx.clients.keys() {
                    let in_scope = scope.as_ref().is_none_or(|ns| *ns == key.namespace);
                    if in_scope && !live.contains(&key) {
                        cleanup.forget(&key);
                    }
                }
            }
            _ => {}
        })
        .applied_objects()
        // The reconciler's own status writes (and any other status-only change) must not
        // trigger it again: only a new generation (a spec change) or the start of a
        // deletion passes. Deletions themselves are handled above, before this filter; the
        // Secret watch and leadership changes trigger reconciles on their own streams.
        .predicate_filter(
            predicates::generation
                .fallback(predicates::resource_version)
                .combine(being_deleted),
            PredicateConfig::default(),
        );
    let mapper_reader = reader.clone();
    let secret_events = watcher(secrets, watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let leadership = state.ctx.leadership.clone();
    let gained = async_stream::stream! {
        let mut rx = leadership.subscribe();
        while rx.changed().await.is_ok() {
            if *rx.borrow_and_update() {
                yield ();
            }
        }
    };
    // A connector whose breaker starts or stops holding removals shows it in its status.
    let mut held_changes = state.ctx.clients.revocations().subscribe();
    let breaker_changed = async_stream::stream! {
        loop {
            match held_changes.recv().await {
                Ok(key) if breaker_scope.as_ref().is_none_or(|ns| *ns == key.namespace) => {
                    yield ObjectRef::<OktaCiamConnector>::new(&key.name).within(&key.namespace);
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    };
    let shutdown = state.ctx.shutdown.clone();
    let fut = Controller::for_stream(stream, reader.clone())
        .watches_stream(secret_events, move |secret| {
            let ns = secret.namespace();
            let name = secret.name_any();
            mapper_reader
                .state()
                .into_iter()
                .filter(|c| c.namespace() == ns && c.spec.secret_names().any(|n| n == name))
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        })
        .reconcile_all_on(gained)
        .reconcile_on(breaker_changed)
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, state)
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connector controller event");
            }
            future::ready(())
        });
    (reader, fut)
}

/// A predicate value that changes when the connector starts being deleted.
fn being_deleted(obj: &OktaCiamConnector) -> Option<u64> {
    Some(u64::from(obj.metadata.deletion_timestamp.is_some()))
}

fn error_policy(obj: Arc<OktaCiamConnector>, error: &Error, state: Arc<State>) -> Action {
    let failures = key_of(&obj).map_or(1, |key| {
        state.update_failures(&key, |n| n.saturating_add(1))
    });
    let delay = decide::backoff(failures);
    tracing::warn!(connector = %obj.name_any(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile(obj: Arc<OktaCiamConnector>, state: Arc<State>) -> Result<Action> {
    // Only the leader reads Okta or writes; gaining leadership reconciles everything again.
    let Some(term) = state.ctx.leadership.current_term() else {
        return Ok(Action::await_change());
    };
    let started = Instant::now();
    let result = tokio::select! {
        r = reconcile_as_leader(&obj, &state, &term) => r,
        () = term.cancelled() => Ok(Action::await_change()),
    };
    let label = if result.is_ok() {
        ReconcileResult::Success
    } else {
        ReconcileResult::Error
    };
    state
        .ctx
        .metrics
        .record_reconcile(KIND, label, started.elapsed());
    result
}

/// What the pipeline found, plus what the decisions around it need.
struct Evaluation {
    outcome: Outcome,
    /// Which settings of the Okta client changed in this reconcile.
    client_change: SettingsChange,
    /// A new spec generation or a new client since the last status: a failure streak
    /// starts again.
    inputs_changed: bool,
    client: Option<OktaClient>,
    /// Facts of a valid spec (readiness still to be set from the outcome).
    facts: Option<ConnectorFacts>,
    /// `spec.syncInterval` of a valid spec.
    interval: Option<std::time::Duration>,
}

impl Evaluation {
    fn with(self, outcome: Outcome) -> Self {
        Evaluation { outcome, ..self }
    }
}

/// The spec in the forms the client and the sync take.
struct Prepared {
    valid: ValidConnectorSpec,
    domain: OrgDomain,
    email_domains: EmailDomains,
    group_name_filter: Option<GroupNameFilter>,
}

fn prepare(obj: &OktaCiamConnector, state: &State) -> std::result::Result<Prepared, String> {
    let valid = obj.spec.validate().map_err(|e| e.to_string())?;
    let domain = OrgDomain::parse(&valid.domain, &state.ctx.domain_policy)
        .map_err(|e| format!("invalid spec: domain: {e}"))?;
    let email_domains = EmailDomains::new(&valid.email_domains)
        .map_err(|e| format!("invalid spec: emailDomains: {e}"))?;
    let group_name_filter = match &valid.group_name_filter {
        Some(f) => {
            GroupNameFilter::new(f).map_err(|e| format!("invalid spec: groupNameFilter: {e}"))?
        }
        None => None,
    };
    Ok(Prepared {
        valid,
        domain,
        email_domains,
        group_name_filter,
    })
}

/// Reads the API token or the OAuth private key from its Secret, or says why it cannot.
/// OAuth scopes default to what the connector uses.
async fn read_credentials(
    state: &State,
    obj: &OktaCiamConnector,
    valid: &ValidConnectorSpec,
    namespace: &str,
) -> Result<std::result::Result<Credentials, Outcome>> {
    let credentials = &valid.credentials;
    let (name, key) = credentials.secret();
    let secrets: Api<Secret> = Api::namespaced(state.ctx.kube.clone(), namespace);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|source| Error::ReadSecret {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })?;
    let Some(secret) = secret else {
        return Ok(Err(Outcome::SecretNotFound {
            secret: name.to_owned(),
        }));
    };
    // Values pasted with `echo` carry a newline; tokens and keys never end in whitespace.
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| std::str::from_utf8(&v.0).ok())
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(value) = value else {
        return Ok(Err(Outcome::SecretKeyMissing {
            secret: name.to_owned(),
            key: key.to_owned(),
        }));
    };
    Ok(match credentials {
        CredentialsSpec::ApiToken(_) => Ok(Credentials::ApiToken(ApiToken::new(value.to_owned()))),
        CredentialsSpec::OAuth(oauth) => match PrivateKey::parse(value) {
            Ok(private_key) => Ok(Credentials::OAuth(Box::new(OAuthConfig {
                client_id: oauth.client_id.clone(),
                key: private_key,
                key_id: oauth.key_id.clone(),
                scopes: if oauth.scopes.is_empty() {
                    crate::okta::oauth::scopes::needed(
                        obj.spec.provisioning,
                        valid.syncs_incrementally(),
                    )
                } else {
                    oauth.scopes.clone()
                },
            }))),
            Err(e) => Err(Outcome::InvalidKey {
                secret: name.to_owned(),
                key: key.to_owned(),
                message: e.to_string(),
            }),
        },
    })
}

async fn evaluate(
    obj: &OktaCiamConnector,
    state: &State,
    key: &ConnectorKey,
    now: Timestamp,
) -> Result<Evaluation> {
    let prepared = match prepare(obj, state) {
        Ok(p) => p,
        Err(message) => {
            return Ok(Evaluation {
                outcome: Outcome::InvalidSpec { message },
                client_change: SettingsChange::default(),
                inputs_changed: true,
                client: None,
                facts: None,
                interval: None,
            });
        }
    };
    let interval = Some(prepared.valid.sync_interval);
    let facts = ConnectorFacts {
        ready: false,
        provisioning: obj.spec.provisioning,
        suspended: obj.spec.suspend,
        email_domains: prepared.email_domains.clone(),
        group_name_filter: prepared.group_name_filter.clone(),
        generation: obj.metadata.generation,
    };
    if let Some(ix) = index::lookup(&state.ctx.clients, key)
        && !ix.same_scope(&facts)
    {
        tracing::info!(connector = %key, "email domains or group filter changed: index dropped");
        state.ctx.clients.invalidate_index(key);
    }
    let status = obj.status.as_ref();
    let new_generation = status.and_then(|s| s.observed_generation) != obj.metadata.generation;
    let done = Evaluation {
        outcome: Outcome::UpToDate,
        client_change: SettingsChange::default(),
        inputs_changed: new_generation,
        client: None,
        facts: Some(facts.clone()),
        interval,
    };
    if obj.spec.suspend {
        return Ok(done.with(Outcome::Suspended));
    }
    let credentials = match read_credentials(state, obj, &prepared.valid, &key.namespace).await? {
        Ok(credentials) => credentials,
        Err(outcome) => return Ok(done.with(outcome)),
    };
    let options = decide::client_options(&prepared.valid.rate_limit);
    let concurrency = options.max_concurrency;
    let (client, obtained) =
        match state
            .ctx
            .clients
            .okta_client_for(key, &prepared.domain, credentials, options)
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(connector = %key, error = %e, "cannot build the Okta client");
                return Ok(done.with(Outcome::OktaFailed {
                    reason: decide::classify_okta(&e),
                    message: e.stable_text(),
                    failed_at: Timestamp::now(),
                    sync_started: None,
                }));
            }
        };
    if obtained != Obtained::Reused {
        // A new client counts from zero.
        state
            .exported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
    let client_change = match obtained {
        Obtained::Rebuilt(change) => change,
        Obtained::Built | Obtained::Reused => SettingsChange::default(),
    };
    let client_changed = obtained != Obtained::Reused;
    let done = Evaluation {
        client_change,
        inputs_changed: done.inputs_changed || client_changed,
        client: Some(client.clone()),
        ..done
    };
    // Still backing off from a failure that nothing has changed since: no Okta call, and
    // the status (with its nextSyncTime) stays as written.
    if let Some(pending) =
        decide::retry_pending(status, obj.metadata.generation, client_changed, now)
    {
        return Ok(done.with(pending));
    }
    let credentials_known =
        status.is_some_and(|s| is_true(&s.conditions, ConditionType::CredentialsValid));
    // New credentials (a first client, a new token or domain), or credentials not known to
    // work: check them before any sync, and sync once they pass (the last sync may have used
    // other credentials). New rate limits alone change nothing about the credentials.
    let check = obtained == Obtained::Built
        || client_change.token
        || client_change.domain
        || !credentials_known;
    if check && let Err(e) = client.get_org().await {
        // The full error (with Okta's errorId and request id) goes to the log only: the
        // status gets text that stays the same while the failure does.
        tracing::warn!(connector = %key, error = %e, "Okta credential check failed");
        return Ok(done.with(Outcome::OktaFailed {
            reason: decide::classify_okta(&e),
            message: e.stable_text(),
            failed_at: Timestamp::now(),
            sync_started: None,
        }));
    }
    let due = decide::sync_due(
        status,
        obj.metadata.generation,
        prepared.valid.sync_interval,
        now,
        check,
    ) || index::lookup(&state.ctx.clients, key).is_none();
    if !due {
        return Ok(done.with(Outcome::UpToDate));
    }
    let config = SyncConfig {
        email_domains: prepared.email_domains,
        group_name_filter: prepared.group_name_filter,
        concurrency,
    };
    let started_at = Timestamp::now();
    let clock = Instant::now();
    tracing::info!(connector = %key, "sync started");
    // Between full syncs the last snapshot is brought up to date from the System Log.
    let previous = index::lookup(&state.ctx.clients, key);
    let full_due = match &previous {
        // What new credentials can read (scopes, an admin role) may differ from what the
        // snapshot was read with: only a full read shows it.
        _ if check => Some("new credentials"),
        Some(ix)
            if Timestamp::now().duration_since(ix.last_full_sync)
                < jiff_span(prepared.valid.full_sync_interval) =>
        {
            None
        }
        Some(_) => Some("fullSyncInterval elapsed"),
        None => Some("no snapshot in memory (first sync, restart or new scope)"),
    };
    let base = previous.as_ref().map(|ix| ix.snapshot());
    // Inline in the reconcile future: dropping the reconcile (leadership lost, shutdown)
    // drops the sync and its requests in flight.
    let result = incremental::sync_auto(
        &client,
        &config,
        base.as_ref(),
        full_due,
        MAX_LOG_EVENTS,
        &NoProgress,
    )
    .await;
    drop(base);
    match result {
        Ok(mut snapshot) => {
            let finished_at = Timestamp::now();
            let counts = decide::counts(&snapshot);
            // The baseline is the last good sync's counts in the status, so the guard holds
            // across restarts; it speaks for this scope when the status describes this
            // generation or the index in memory survived (a change of scope drops it).
            let same_scope = status.and_then(|s| s.observed_generation) == obj.metadata.generation
                || index::lookup(&state.ctx.clients, key).is_some();
            let baseline = status
                .filter(|s| same_scope && s.last_successful_sync_time.is_some())
                .and_then(|s| s.counts.as_ref())
                .map(decide::scope_size);
            if let Some(shrank) = shrink::check(
                baseline,
                decide::scope_size(&counts),
                &prepared.valid.shrink_guard,
            ) {
                tracing::warn!(connector = %key, what = shrank.what, before = shrank.before, after = shrank.after, "snapshot shrank: the last good index stays in use");
                return Ok(done.with(Outcome::SnapshotShrank {
                    message: shrank.message(),
                    finished_at,
                    duration_seconds: clock.elapsed().as_secs_f64(),
                }));
            }
            // The change log is against the index in memory (a scope change dropped it above),
            // with who and when where the System Log said.
            let changes = snapshot.changes.take();
            let full = snapshot.stats.mode == SyncMode::Full;
            tracing::info!(connector = %key, mode = ?snapshot.stats.mode, reason = ?snapshot.stats.full_sync_reason, requests = snapshot.stats.requests, "sync mode");
            if let Some(c) = &changes {
                state
                    .ctx
                    .metrics
                    .record_access_changes(&key.namespace, &key.name, &c.counts());
            }
            let report = SyncReport {
                finished_at,
                duration_seconds: clock.elapsed().as_secs_f64(),
                counts,
                okta: decide::okta_stats(&snapshot),
                changes,
            };
            let ready = ConnectorFacts {
                ready: true,
                ..facts.clone()
            };
            let last_full = match &previous {
                Some(p) if !full => p.last_full_sync,
                _ => finished_at,
            };
            let ix =
                ConnectorIndex::build(snapshot, ready, finished_at).with_last_full_sync(last_full);
            state.ctx.clients.set_index(key, Arc::new(ix));
            state.ctx.metrics.set_last_successful_sync(
                &key.namespace,
                &key.name,
                std::time::SystemTime::now(),
            );
            tracing::info!(connector = %key, users = report.counts.users, groups = report.counts.groups, "sync finished");
            Ok(done.with(Outcome::Synced(report)))
        }
        Err(e) => {
            let started = Some((started_at, clock.elapsed().as_secs_f64()));
            tracing::warn!(connector = %key, error = %e, "sync failed");
            Ok(done.with(Outcome::OktaFailed {
                reason: decide::classify_sync(&e),
                message: e.stable_text(),
                failed_at: Timestamp::now(),
                sync_started: started,
            }))
        }
    }
}

/// Stores the facts that follow from this reconcile with the existing tables, when they
/// changed. An invalid spec has no facts: the index only stops being ready.
fn refresh_facts(state: &State, key: &ConnectorKey, facts: Option<ConnectorFacts>, ready: bool) {
    let Some(ix) = index::lookup(&state.ctx.clients, key) else {
        return;
    };
    let facts = match facts {
        Some(facts) => ConnectorFacts { ready, ..facts },
        None => ConnectorFacts {
            ready: false,
            ..ix.facts.clone()
        },
    };
    if ix.facts != facts {
        state
            .ctx
            .clients
            .set_index(key, Arc::new(ix.with_facts(facts)));
    }
}

async fn reconcile_as_leader(
    obj: &OktaCiamConnector,
    state: &State,
    term: &tokio_util::sync::CancellationToken,
) -> Result<Action> {
    let key = key_of(obj)?;
    let now = Timestamp::now();
    let deleting = obj.metadata.deletion_timestamp.is_some();
    if !deleting && !obj.finalizers().iter().any(|f| f == revocations::FINALIZER) {
        add_finalizer(state, &key, obj).await?;
    }
    // Evaluated while terminating too: memberships deleted with the connector revoke
    // through its client.
    let eval = evaluate(obj, state, &key, now).await?;
    let outcome = &eval.outcome;
    if let Some(client) = &eval.client {
        state.export_stats(&key, client);
    }
    refresh_facts(state, &key, eval.facts.clone(), outcome.serves_index());
    let failures = state.update_failures(&key, |n| {
        decide::failures_after(n, outcome, eval.inputs_changed)
    });
    // `status.revocations` belongs to the circuit breaker's own field manager: this writer
    // leaves it out, so its (possibly stale) cached copy never overwrites a newer window.
    let previous = obj.status.clone().map(|s| crate::crd::ConnectorStatus {
        revocations: None,
        ..s
    });
    let previous = previous.as_ref();
    // An invalid spec never requeues on its own, so its interval does not matter.
    let interval = eval
        .interval
        .unwrap_or(crate::crd::connector::MIN_SYNC_INTERVAL);
    let last_success = previous
        .and_then(|s| s.last_successful_sync_time.as_ref())
        .map(|t| t.0);
    let next = decide::next_attempt(outcome, last_success, interval, failures, now);
    let generation = obj.metadata.generation;
    let mut status = decide::next_status(previous, outcome, generation, next, now);
    let mut events = decide::plan_events(previous, outcome, generation, eval.client_change);
    let held = state.ctx.clients.revocations().state(&key, now);
    let (paused, reason, message) =
        revocations::paused_condition(held, obj.spec.max_revocations_per_hour());
    if set_extra_condition(
        &mut status,
        revocations::PAUSED_CONDITION,
        paused,
        reason,
        &message,
        generation,
        now,
    ) && paused
    {
        events.push(PlannedEvent {
            kind: EventKind::Warning,
            reason: reason.to_owned(),
            action: "Revoke",
            note: message,
        });
    }
    let deletion = if deleting {
        let holding = memberships_holding_grants(state, &key).await?;
        let abandon = obj
            .annotations()
            .get(revocations::ABANDON_ANNOTATION)
            .is_some_and(|v| v == "true");
        Some(revocations::deletion(&holding, abandon))
    } else {
        None
    };
    if let Some(revocations::Deletion::Wait(message)) = &deletion
        && set_extra_condition(
            &mut status,
            revocations::DELETING_CONDITION,
            true,
            "WaitingForRevocations",
            message,
            generation,
            now,
        )
    {
        events.push(PlannedEvent {
            kind: EventKind::Warning,
            reason: "WaitingForRevocations".to_owned(),
            action: "Delete",
            note: message.clone(),
        });
    }

    if previous != Some(&status) {
        if term.is_cancelled() {
            return Ok(Action::await_change());
        }
        let api: Api<OktaCiamConnector> = Api::namespaced(state.ctx.kube.clone(), &key.namespace);
        crate::controller::apply_status(&api, &key.name, &status)
            .await
            .map_err(|source| Error::WriteStatus {
                connector: key.to_string(),
                source,
            })?;
        tracing::info!(connector = %key, reason = %outcome.reason(), ready = outcome.is_ready(), "status updated");
    }
    for event in &events {
        if term.is_cancelled() {
            break;
        }
        publish(state, obj, event).await;
    }
    if let Outcome::Synced(SyncReport {
        changes: Some(changes),
        ..
    }) = outcome
    {
        for event in decide::change_events(changes, decide::CHANGE_EVENT_LIMIT) {
            if term.is_cancelled() {
                break;
            }
            publish_unaggregated(state, obj, &event).await;
        }
    }
    match deletion {
        Some(revocations::Deletion::Finish { abandoned }) => {
            if abandoned > 0 {
                let note = format!(
                    "deleted with annotation {}: {abandoned} grant(s) of its GroupMemberships \
                     left in Okta",
                    revocations::ABANDON_ANNOTATION
                );
                let event = PlannedEvent {
                    kind: EventKind::Warning,
                    reason: "GrantsAbandoned".to_owned(),
                    action: "Delete",
                    note,
                };
                publish(state, obj, &event).await;
            }
            remove_finalizer(state, &key, obj).await?;
            return Ok(Action::await_change());
        }
        // Memberships are not watched here: look again soon.
        Some(revocations::Deletion::Wait(_)) => return Ok(Action::requeue(DELETION_POLL)),
        None => {}
    }
    Ok(match next {
        Some(at) => Action::requeue(decide::delay_until(at, Timestamp::now())),
        None => Action::await_change(),
    })
}

/// How often a deletion waiting for revocations looks at the memberships again.
const DELETION_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Sets a condition of a type outside [`crate::crd::ConditionType`]'s connector set;
/// returns whether its status flipped (or it is new).
fn set_extra_condition(
    status: &mut crate::crd::ConnectorStatus,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    let value = if value { "True" } else { "False" };
    let flipped = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .is_none_or(|c| c.status != value);
    let condition = Condition {
        type_: type_.to_owned(),
        status: value.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time: Time(now),
    };
    crate::crd::condition::set_condition(&mut status.conditions, condition);
    flipped
}

/// The memberships of the connector's namespace that name it, with the grants each may
/// still have to revoke ([`revocations::outstanding_grants`]).
async fn memberships_holding_grants(
    state: &State,
    key: &ConnectorKey,
) -> Result<Vec<(String, usize)>> {
    let api: Api<GroupMembership> = Api::namespaced(state.ctx.kube.clone(), &key.namespace);
    let list = api
        .list(&kube::api::ListParams::default())
        .await
        .map_err(|source| Error::Deletion {
            connector: key.to_string(),
            source,
        })?;
    Ok(list
        .items
        .iter()
        .filter(|gm| gm.spec.connector_ref.name == key.name)
        .map(|gm| {
            let name = format!("{}/{}", key.namespace, gm.name_any());
            (name, revocations::outstanding_grants(gm))
        })
        .collect())
}

async fn add_finalizer(state: &State, key: &ConnectorKey, obj: &OktaCiamConnector) -> Result<()> {
    let rv = obj.resource_version().unwrap_or_default();
    let ops = if obj.metadata.finalizers.is_none() {
        serde_json::json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "add", "path": "/metadata/finalizers", "value": [revocations::FINALIZER]},
        ])
    } else {
        serde_json::json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "add", "path": "/metadata/finalizers/-", "value": revocations::FINALIZER},
        ])
    };
    json_patch(state, key, ops).await
}

async fn remove_finalizer(
    state: &State,
    key: &ConnectorKey,
    obj: &OktaCiamConnector,
) -> Result<()> {
    let Some(index) = obj
        .finalizers()
        .iter()
        .position(|f| f == revocations::FINALIZER)
    else {
        return Ok(());
    };
    let ops = serde_json::json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": revocations::FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]);
    match json_patch(state, key, ops).await {
        // Already gone.
        Err(Error::Deletion {
            source: kube::Error::Api(s),
            ..
        }) if s.code == 404 => Ok(()),
        other => other,
    }
}

async fn json_patch(state: &State, key: &ConnectorKey, ops: serde_json::Value) -> Result<()> {
    let api: Api<OktaCiamConnector> = Api::namespaced(state.ctx.kube.clone(), &key.namespace);
    let patch = serde_json::from_value(ops).expect("static JSON patch operations parse");
    api.patch(
        &key.name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Json::<()>(patch),
    )
    .await
    .map(drop)
    .map_err(|source| Error::Deletion {
        connector: key.to_string(),
        source,
    })
}

async fn publish(state: &State, obj: &OktaCiamConnector, event: &PlannedEvent) {
    let ev = Event {
        type_: match event.kind {
            EventKind::Normal => EventType::Normal,
            EventKind::Warning => EventType::Warning,
        },
        reason: event.reason.clone(),
        note: Some(event.note.clone()),
        action: event.action.to_owned(),
        secondary: None,
    };
    if let Err(e) = state.recorder.publish(&ev, &obj.object_ref(&())).await {
        // An Event is best effort: the status already says the same.
        tracing::warn!(connector = %obj.name_any(), reason = %event.reason, error = %e, "cannot publish Event");
    }
}

/// Publishes an Event as a new object. The recorder folds Events of the same reason into one
/// series for minutes and keeps the first note, which would hide every change but the first.
async fn publish_unaggregated(state: &State, obj: &OktaCiamConnector, event: &PlannedEvent) {
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let now = Timestamp::now();
    let regarding = obj.object_ref(&());
    let namespace = regarding.namespace.clone().unwrap_or_default();
    let ev = K8sEvent {
        action: Some(event.action.to_owned()),
        reason: Some(event.reason.clone()),
        note: Some(event.note.clone()),
        event_time: Some(MicroTime(now)),
        type_: Some(
            match event.kind {
                EventKind::Normal => "Normal",
                EventKind::Warning => "Warning",
            }
            .to_owned(),
        ),
        reporting_controller: Some(state.reporter.controller.clone()),
        reporting_instance: Some(
            state
                .reporter
                .instance
                .clone()
                .unwrap_or_else(|| state.reporter.controller.clone()),
        ),
        metadata: kube::api::ObjectMeta {
            namespace: Some(namespace.clone()),
            // Unique per Event: the name and a random suffix (several per reconcile).
            generate_name: Some(format!("{}.", obj.name_any())),
            ..Default::default()
        },
        regarding: Some(regarding),
        ..Default::default()
    };
    let api: Api<K8sEvent> = Api::namespaced(state.ctx.kube.clone(), &namespace);
    if let Err(e) = api.create(&kube::api::PostParams::default(), &ev).await {
        // Best effort, like every Event: the metrics count the same changes.
        tracing::warn!(connector = %obj.name_any(), reason = %event.reason, error = %e, "cannot publish Event");
    }
}
