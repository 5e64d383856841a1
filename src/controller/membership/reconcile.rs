//! The `GroupMembership` reconciler: gathers facts from Kubernetes and Okta, asks
//! [`decide`](super::decide) what to do, and performs it following the crash-safety protocol
//! documented there (fresh record read, write-ahead record, Okta writes, settle, record,
//! status and Events, finalizer).
//!
//! Triggers: the memberships themselves (their spec, deletion, other finalizers or
//! annotations; status-only changes and this controller's own finalizer, its own writes, are
//! filtered out),
//! their connectors (a connector turning ready, enabling provisioning, or finishing a sync
//! re-reconciles every membership that names it: this is the drift check), any change in
//! the client registry (a connector's client or index appearing), the exact expiry instant,
//! a change to any `AccessPolicy` or to a namespace's labels (the grant-policy gate's facts,
//! [`policies`](super::policies)), and a periodic resync. A status equal to the one the object
//! shows is not rewritten.
//!
//! A round that fails or must retry (a failed lookup or write) is retried after
//! [`Settings::retry_delay`], doubled for each further consecutive failure of the same
//! object up to [`Settings::retry_max`], but never later than the exact expiry instant; any
//! round that needs no retry resets it.
//!
//! The connector's `provisioning` and `suspend` are read from the connector object (its
//! watch cache) every round, so turning either off stops grants (and `suspend` also
//! revocations) at once, even while the connector's index still reflects its last sync.
//! Revocations need only the connector's client and no suspension; every round asks the
//! connector's circuit breaker ([`breaker`](crate::controller::runtime::breaker)) for its
//! removals and holds back those over budget (`RevocationHeld`); the release annotation on the
//! connector re-runs its memberships.
//!
//! An invalid spec ([`validate`](super::status::validate)) makes `Ready` False with reason
//! `InvalidSpec`, one Warning Event, no lookups and no Okta writes; the object then waits
//! for a change. Being deleted, it still lets go in the group its status recorded (or just
//! drops the finalizer when it never resolved one).
//!
//! While the group is not looked up (the connector is suspended or has no client; grants
//! are refused and the object never resolved a group; or a lookup failed) `status.groupId`
//! keeps the group it was resolved to, so the record stays locatable. A deletion then waits,
//! with `Ready` False `RevocationWaiting` naming the cause, until the operator's grants can be
//! revoked (a suspended connector is a pause, not a reason to leak grants).
//!
//! When `spec.group` is changed to another existing group, the rounds first let go in the
//! group `status.groupId` recorded, as a deletion with the object's `deletionPolicy` would
//! (`Ready` False `Pending` meanwhile), and act in the new group once nothing is claimed in
//! the old one ([`decide::moved_from`]); the old group's grants are never orphaned.
//!
//! Deletion finishes without the ownership record when it cannot be located and nothing
//! could be revoked anyway: with `Retain`, or when the connector no longer exists (the
//! memberships then stay in Okta, and a Warning Event says how many grants were left).
//!
//! Lookups read the connector's index (its last sync) first and Okta only where the index
//! has no exact answer ([`indexed`](super::indexed)); the group's member list is read once
//! and shared by the rounds of that group for [`Settings::members_max_age`]
//! ([`members`](super::members)). Before the write-ahead record, every user the plan would
//! PUT whose lookup came from the index is read again by id (`GET /api/v1/users/{id}`, on
//! Okta's user-by-id bucket) and the round decides again if the user guard rails now answer
//! differently ([`decide::reconfirm`]): the email domains are the tenant boundary, and the
//! index may be a sync interval old. So a burst of `GroupMembership`s costs about one PUT
//! each on the groups bucket, which is the floor, plus one user read each on its own bucket.
//!
//! The Kubernetes side of a round is kept small so that a burst is paced by Okta, not by the
//! operator: the object comes from the watch cache when it shows this term's last write to
//! it (else one GET), and the rounds of one group that arrive together run as one batch
//! ([`batch`](super::batch)): one record read, one write-ahead record write and at most one
//! settled record write for the whole batch, their Okta writes side by side. Each round then
//! writes its status once (only when it changed) and its Events (only for changes).
//!
//! Writes happen only while this replica leads: each leadership term runs its own
//! controller, and a round in flight is abandoned the moment the term ends (the protocol
//! makes an interrupted round safe to redo).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::batch::Batches;
use super::decide::{
    self, ConnectorFacts, EventType, Expiry, GroupLookup, Input, Lifecycle, UserLookup, WriteError,
};
use super::lookup;
use super::members::MemberCache;
use super::policies::{self, PolicyCaches};
use super::record::{self, RecordStore, Versioned};
use super::status::{
    build_status, declared_ids, deletion_policy_of, effective_since_of, is_live_at, lifecycle_of,
    owner_key, previous_rows, refuse_spec, validate,
};
use crate::controller::connector::index::{self, ConnectorIndex};
use crate::controller::runtime::Context;
use crate::controller::runtime::breaker::{RELEASE_ANNOTATION, RemovalRequest};
use crate::controller::runtime::clients::ConnectorKey;
use crate::controller::runtime::controllers::{CachesSynced, run_kind, run_terms};
use crate::controller::runtime::metrics::ReconcileResult;
use crate::crd::condition::is_true;
use crate::crd::membership::{
    MembershipOrigin, MembershipStatus, UserMembershipState, UserMembershipStatus,
};
use crate::crd::{ConditionType, FIELD_MANAGER, GroupMembership, GroupRef, OktaCiamConnector};
use crate::okta::{OktaClient, OrgDomain};

/// The finalizer on every `GroupMembership`.
pub const FINALIZER: &str = "oktaciam.io/membership";

/// How long a round waits for the connector's client before looking again, in case the
/// registry's change signal is missed.
const AWAIT_CLIENT: Duration = Duration::from_secs(5);

/// How often a round re-plans when a write-ahead record write keeps conflicting.
const RECORD_ATTEMPTS: usize = 5;

/// Errors of the membership reconciler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Reading or writing the ownership record failed.
    #[error(transparent)]
    Record(#[from] record::Error),
    /// The leadership term ended during the round; the next leader redoes it.
    #[error("leadership lost during the round")]
    LostLeadership,
    /// The round's group batch failed (the error is shared by every round in the batch).
    #[error(transparent)]
    Batch(Arc<Error>),
}

/// Result of the membership reconciler.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Tunables of [`run_with`]; [`Settings::default`] is what `run` uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace of the ownership records. Default: `POD_NAMESPACE`, else the kube client's
    /// default namespace (the same rule as the leader Lease).
    pub record_namespace: Option<String>,
    /// Delay before retrying a round that failed or left writes pending; doubled for each
    /// further consecutive failure of the same object, up to `retry_max`.
    pub retry_delay: Duration,
    /// The longest retry delay.
    pub retry_max: Duration,
    /// Longest time between two rounds of one membership (drift check without a sync).
    pub resync: Duration,
    /// The operator-wide provisioning switch (`run --provisioning`): false refuses every
    /// membership write with `ProvisioningDisabled`, whatever the connector says.
    pub provisioning: bool,
    /// How long a group's member list read from Okta is reused by other rounds of the same
    /// group (with this term's own writes applied). A connector sync always forces a fresh
    /// read; zero reads Okta every round.
    pub members_max_age: Duration,
    /// How long into a leadership term a round waits quietly for a Ready connector's client
    /// before reporting `ConnectorNotReady` ([`decide::await_client`]).
    pub await_client_max: Duration,
    /// `run --require-policy`: a grant needs an `AccessPolicy` that allows it
    /// ([`decide::check_grant_policy`]); off, only privileged groups need one.
    pub require_policy: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            record_namespace: None,
            retry_delay: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
            resync: Duration::from_secs(600),
            provisioning: true,
            members_max_age: Duration::from_secs(30),
            await_client_max: Duration::from_secs(60),
            require_policy: false,
        }
    }
}

/// What every round shares.
struct Shared {
    ctx: Context,
    records: RecordStore,
    /// Every watched `GroupMembership` (one store per watched namespace), for `others`.
    stores: Vec<Store<GroupMembership>>,
    recorder: Recorder,
    settings: Settings,
    term: CancellationToken,
    /// When this leadership term started (bounds the wait for a connector's client).
    term_started: Instant,
    /// Member lists of this term (a new term reads Okta afresh).
    members: MemberCache,
    /// Every watched connector (one store per watched namespace).
    connectors: Vec<Store<OktaCiamConnector>>,
    /// Consecutive failed rounds per membership.
    backoff: Backoff,
    /// The rounds of each group, run in batches.
    batches: Arc<Batches<Job>>,
    /// This term's last write to each membership.
    written: Written,
    /// Every AccessPolicy and namespace, for the grant-policy gate.
    policies: PolicyCaches,
}

/// What this term last wrote to each membership (by uid: one incarnation), so a round can
/// tell whether the watch cache has caught up with the operator's own writes, and the
/// managed-memberships gauge can count a status before the cache shows it.
#[derive(Default)]
struct Written(Mutex<HashMap<String, Last>>);

fn uid(gm: &GroupMembership) -> &str {
    gm.metadata.uid.as_deref().unwrap_or_default()
}

/// The object as this term's last write to it returned it.
#[derive(Default)]
struct Last {
    /// Its `resourceVersion`; `None` while a write is under way or its outcome is unknown.
    version: Option<String>,
    /// The operator's grants its status holds ([`held_grants`]).
    held: u64,
}

impl Written {
    fn last(&self) -> std::sync::MutexGuard<'_, HashMap<String, Last>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the cached `gm` shows this term's last write to it: its `resourceVersion` is
    /// the one that write returned, or the term never wrote it and it shows no sign of any
    /// round (no status, no finalizer of this controller: a new object).
    fn caught_up(&self, gm: &GroupMembership) -> bool {
        match self.last().get(uid(gm)) {
            Some(last) => last.version.is_some() && last.version == gm.metadata.resource_version,
            None => gm.status.is_none() && !gm.finalizers().iter().any(|f| f == FINALIZER),
        }
    }

    fn writing(&self, gm: &GroupMembership) {
        let mut last = self.last();
        let entry = last.entry(uid(gm).to_owned()).or_insert_with(|| Last {
            version: None,
            held: held_grants(gm),
        });
        entry.version = None;
    }

    fn forget(&self, gm: &GroupMembership) {
        self.last().remove(uid(gm));
    }

    fn wrote(&self, gm: &GroupMembership) {
        let last = Last {
            version: gm.metadata.resource_version.clone(),
            held: held_grants(gm),
        };
        self.last().insert(uid(gm).to_owned(), last);
    }

    /// Memberships the operator granted and holds, as the watched statuses report them, or
    /// this term's own last write where there was one (the cache may not show it yet). A
    /// membership shared by several `GroupMembership`s counts once per declaration.
    fn managed_memberships(&self, stores: &[Store<GroupMembership>]) -> u64 {
        let last = self.last();
        stores
            .iter()
            .flat_map(Store::state)
            .map(|gm| match last.get(uid(&gm)) {
                Some(written) => written.held,
                None => held_grants(&gm),
            })
            .sum()
    }
}

/// The memberships `gm`'s status shows as granted by the operator and held.
fn held_grants(gm: &GroupMembership) -> u64 {
    let held = |u: &&UserMembershipStatus| {
        u.state == UserMembershipState::Granted && u.origin == Some(MembershipOrigin::Granted)
    };
    gm.status
        .as_ref()
        .map_or(0, |s| s.users.iter().filter(held).count() as u64)
}

/// Per-object exponential back-off ([`decide::retry_delay`]).
struct Backoff {
    base: Duration,
    cap: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one more failed round of `key` and returns the delay before the next one.
    fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures();
        let n = failures.entry(key.to_owned()).or_default();
        *n = n.saturating_add(1);
        decide::retry_delay(self.base, self.cap, *n)
    }

    /// A round of `key` that needs no retry.
    fn reset(&self, key: &str) {
        self.failures().remove(key);
    }
}

/// What a round acts on: the spec (generation), deletion, other controllers' finalizers and
/// annotations of one incarnation (uid). Status-only changes and this controller's own
/// finalizer, both its own writes, are no reason to reconcile again: the round that added the
/// finalizer goes on to act.
fn acted_on(gm: &GroupMembership) -> Option<u64> {
    let mut h = DefaultHasher::new();
    let meta = &gm.metadata;
    meta.uid.hash(&mut h);
    meta.generation.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    let others = meta.finalizers.iter().flatten().filter(|f| *f != FINALIZER);
    others.for_each(|f| f.hash(&mut h));
    meta.annotations.hash(&mut h);
    Some(h.finish())
}

/// Runs the membership controller until `ctx.shutdown`, with default [`Settings`].
/// `caches_synced` fires once this replica is ready to serve: at once on a standby (it has
/// nothing to sync until it leads), or when the first term's caches are listed.
pub async fn run(ctx: Context, caches_synced: oneshot::Sender<()>) -> Result<()> {
    run_with(ctx, Settings::default(), caches_synced).await
}

/// Runs the membership controller until `ctx.shutdown`: waits for leadership, reconciles
/// while leading, and waits again when a term ends.
pub async fn run_with(
    ctx: Context,
    settings: Settings,
    caches_synced: oneshot::Sender<()>,
) -> Result<()> {
    let namespace = settings
        .record_namespace
        .clone()
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|n| !n.is_empty())
        })
        .unwrap_or_else(|| ctx.kube.default_namespace().to_owned());
    let records = RecordStore::new(ctx.kube.clone(), &namespace);
    let (ctx, settings, records) = (&ctx, &settings, &records);
    run_terms(ctx, caches_synced, |term, synced| {
        run_term(ctx, settings, records, term, synced)
    })
    .await;
    Ok(())
}

fn gm_apis(ctx: &Context) -> Vec<(Api<GroupMembership>, Api<OktaCiamConnector>)> {
    if ctx.namespaces.is_empty() {
        vec![(Api::all(ctx.kube.clone()), Api::all(ctx.kube.clone()))]
    } else {
        ctx.namespaces
            .iter()
            .map(|ns| {
                (
                    Api::namespaced(ctx.kube.clone(), ns),
                    Api::namespaced(ctx.kube.clone(), ns),
                )
            })
            .collect()
    }
}

/// One leadership term: a controller per watched namespace, stopped when the term ends.
async fn run_term(
    ctx: &Context,
    settings: &Settings,
    records: &RecordStore,
    term: CancellationToken,
    caches_synced: CachesSynced,
) {
    let mut connector_stores = Vec::new();
    let (policies, policy_changes) = PolicyCaches::start(&ctx.kube, &term);
    let controllers: Vec<Controller<GroupMembership>> = gm_apis(ctx)
        .into_iter()
        .map(|(gms, connectors)| {
            let (store, writer) = reflector::store();
            let own = watcher(gms, watcher::Config::default())
                .default_backoff()
                .reflect(writer)
                .applied_objects()
                .predicate_filter(acted_on, PredicateConfig::default());
            let controller = Controller::for_stream(own, store.clone());
            let (connector_store, connector_writer) = reflector::store();
            connector_stores.push(connector_store);
            let connectors = watcher(connectors, watcher::Config::default())
                .default_backoff()
                .reflect(connector_writer)
                // Deletions too: a membership whose connector is gone may finish deleting.
                .touched_objects();
            let registry = tokio_stream_of(ctx.clients.subscribe());
            controller
                .watches_stream(connectors, move |c: OktaCiamConnector| {
                    memberships_of(&store, &c)
                })
                .reconcile_all_on(registry)
                .reconcile_all_on(tokio_stream_of(policy_changes.clone()))
                .graceful_shutdown_on(term.clone().cancelled_owned())
        })
        .collect();
    let stores: Vec<Store<GroupMembership>> = controllers.iter().map(Controller::store).collect();
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        records: records.clone(),
        stores: stores.clone(),
        recorder: Recorder::new(ctx.kube.clone(), Reporter::from(FIELD_MANAGER)),
        settings: settings.clone(),
        term: term.clone(),
        term_started: Instant::now(),
        members: MemberCache::new(settings.members_max_age),
        connectors: connector_stores,
        backoff: Backoff {
            base: settings.retry_delay,
            cap: settings.retry_max,
            failures: Mutex::new(HashMap::new()),
        },
        batches: Arc::default(),
        written: Written::default(),
        policies,
    });
    run_kind(
        "membership",
        controllers,
        reconcile,
        error_policy,
        shared,
        &term,
        move || caches_synced.fire(),
    )
    .await;
}

/// A stream that yields once per change of the registry.
fn tokio_stream_of(
    mut rx: tokio::sync::watch::Receiver<u64>,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    async_stream::stream! {
        rx.borrow_and_update();
        while rx.changed().await.is_ok() {
            yield ();
        }
    }
}

/// The memberships in the connector's namespace that name it.
fn memberships_of(
    store: &Store<GroupMembership>,
    c: &OktaCiamConnector,
) -> Vec<ObjectRef<GroupMembership>> {
    let ns = c.namespace();
    store
        .state()
        .into_iter()
        .filter(|gm| gm.namespace() == ns && gm.spec.connector_ref.name == c.name_any())
        .map(|gm| ObjectRef::from_obj(&*gm))
        .collect()
}

fn error_policy(gm: Arc<GroupMembership>, error: &Error, shared: Arc<Shared>) -> Action {
    let key = owner_key(&gm);
    tracing::warn!(membership = %key, %error, "membership round failed");
    Action::requeue(shared.backoff.failed(&key))
}

async fn reconcile(gm: Arc<GroupMembership>, shared: Arc<Shared>) -> Result<Action> {
    let started = Instant::now();
    let result = tokio::select! {
        r = round(&gm, &shared) => r,
        () = shared.term.cancelled() => Err(Error::LostLeadership),
    };
    let outcome = if result.is_ok() {
        ReconcileResult::Success
    } else {
        ReconcileResult::Error
    };
    shared
        .ctx
        .metrics
        .record_reconcile("GroupMembership", outcome, started.elapsed());
    shared
        .ctx
        .metrics
        .set_managed_memberships(shared.written.managed_memberships(&shared.stores));
    result
}

/// What a round found out about the connector.
struct Connector {
    facts: Option<ConnectorFacts>,
    /// The org domain in the client's normalised form (keys the record).
    domain: Option<String>,
    client: Option<OktaClient>,
    /// The connector's last sync as lookup tables, when it has one.
    index: Option<Arc<ConnectorIndex>>,
    /// Identifies the connector's last sync: a member list read before it is stale.
    sync: String,
    /// The connector is Ready in the cluster but this process has not built its client yet
    /// (just started, or just became leader): the client appearing re-runs every round.
    awaiting_client: bool,
    /// `spec.safety.maxRevocationsPerHour` and the release annotation, for the breaker.
    breaker: BreakerSettings,
}

/// What the connector says about its mass-revocation circuit breaker.
#[derive(Clone, Default)]
struct BreakerSettings {
    key: Option<ConnectorKey>,
    limit: usize,
    release: Option<String>,
}

/// The connector's facts. `provisioning` and `suspend` always come from the object itself
/// (the watch cache, else a GET before the cache has listed it), so turning either off stops
/// membership writes from the next round on, whatever the last sync saw. The rest comes from
/// its index (the scope its last sync used) when there is one, else from the object (before
/// its first sync, or without the connector reconciler, as in tests that seed only the
/// client).
async fn connector_of(shared: &Shared, gm: &GroupMembership) -> Result<Connector> {
    let ns = gm.namespace().unwrap_or_default();
    let name = &gm.spec.connector_ref.name;
    let key = ConnectorKey::new(&ns, name);
    let cached = ObjectRef::<OktaCiamConnector>::new(name).within(&ns);
    let cached = shared.connectors.iter().find_map(|s| s.get(&cached));
    let api: Api<OktaCiamConnector> = Api::namespaced(shared.ctx.kube.clone(), &ns);
    let object = match cached {
        Some(c) => Some(c),
        None => api.get_opt(name).await?.map(Arc::new),
    };
    let Some(c) = object else {
        return Ok(Connector {
            facts: None,
            domain: None,
            client: None,
            index: None,
            sync: String::new(),
            awaiting_client: false,
            breaker: BreakerSettings::default(),
        });
    };
    let breaker = BreakerSettings {
        key: Some(key.clone()),
        limit: c.spec.max_revocations_per_hour(),
        release: c.annotations().get(RELEASE_ANNOTATION).cloned(),
    };
    let client = shared.ctx.clients.client(&key);
    if let (Some(client), Some(ix)) = (&client, index::lookup(&shared.ctx.clients, &key)) {
        let facts = ConnectorFacts {
            name: name.clone(),
            ready: ix.facts.ready,
            provisioning: c.spec.provisioning,
            suspended: c.spec.suspend,
            has_client: true,
            email_domains: ix.facts.email_domains.as_slice().to_vec(),
            group_name_filter: ix
                .facts
                .group_name_filter
                .as_ref()
                .map(|f| f.as_str().to_owned()),
        };
        return Ok(Connector {
            facts: Some(facts),
            domain: Some(client.domain().to_string()),
            client: Some(client.clone()),
            sync: ix.synced_at.to_string(),
            index: Some(ix),
            awaiting_client: false,
            breaker,
        });
    }
    let domain = match &client {
        Some(client) => Some(client.domain().to_string()),
        None => OrgDomain::parse(&c.spec.domain, &shared.ctx.domain_policy)
            .ok()
            .map(|d| d.to_string()),
    };
    let ready = |c: &OktaCiamConnector| {
        c.status
            .as_ref()
            .is_some_and(|s| is_true(&s.conditions, ConditionType::Ready))
    };
    // Before a round reports the connector not Ready (a refusal its users see), the API
    // server confirms it: the watch cache may not show yet a Ready status written a moment
    // ago. Only this path, a connector without a client, pays the read.
    let c = if ready(&c) {
        c
    } else {
        api.get_opt(name).await?.map(Arc::new).unwrap_or(c)
    };
    let synced = ready(&c);
    let facts = ConnectorFacts {
        name: name.clone(),
        // Without the connector's shared client there is no budget to write through yet.
        ready: synced && client.is_some(),
        provisioning: c.spec.provisioning,
        suspended: c.spec.suspend,
        has_client: client.is_some(),
        email_domains: c.spec.email_domains.clone(),
        group_name_filter: c.spec.group_name_filter.clone(),
    };
    let sync = c
        .status
        .as_ref()
        .and_then(|s| s.last_sync_time.as_ref())
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    Ok(Connector {
        facts: Some(facts),
        domain,
        awaiting_client: synced && client.is_none(),
        client,
        index: None,
        sync,
        breaker,
    })
}

/// Other live declarations of the same group, from the watch caches.
fn others_of(
    shared: &Shared,
    owner: &str,
    group_id: &str,
    now: Timestamp,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut others = BTreeMap::new();
    for store in &shared.stores {
        for other in store.state() {
            // Group ids are unique per org and random across orgs, so a match by id alone
            // can only err on the side of keeping a membership. Checked first: it is cheap,
            // and every round of a burst scans every membership.
            let same_group = other
                .status
                .as_ref()
                .is_some_and(|s| s.group_id.as_deref() == Some(group_id));
            if !same_group {
                continue;
            }
            let key = owner_key(&other);
            if key != owner && is_live_at(&other, now) {
                others.insert(key, declared_ids(&other).map(str::to_owned).collect());
            }
        }
    }
    others
}

async fn add_finalizer(
    api: &Api<GroupMembership>,
    written: &Written,
    gm: &GroupMembership,
) -> Result<GroupMembership> {
    let rv = gm.resource_version().unwrap_or_default();
    let ops = if gm.metadata.finalizers.is_none() {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    };
    json_patch(api, written, gm, ops).await
}

async fn remove_finalizer(
    api: &Api<GroupMembership>,
    written: &Written,
    gm: &GroupMembership,
) -> Result<()> {
    let Some(index) = gm.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let ops = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]);
    let removed = match json_patch(api, written, gm, ops).await {
        // Already gone with the object: nothing left to do.
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 404 => Ok(()),
        other => other.map(drop),
    };
    if removed.is_ok() {
        // Gone, or done with: a new object of the same name starts afresh.
        written.forget(gm);
    }
    removed
}

async fn json_patch(
    api: &Api<GroupMembership>,
    written: &Written,
    gm: &GroupMembership,
    ops: serde_json::Value,
) -> Result<GroupMembership> {
    let patch = serde_json::from_value(ops).expect("static JSON patch operations parse");
    written.writing(gm);
    let patched = api
        .patch(
            &gm.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await?;
    written.wrote(&patched);
    Ok(patched)
}

/// Applies the status unless it is what the object already shows (an unchanged status is
/// not rewritten).
async fn apply_status(
    api: &Api<GroupMembership>,
    written: &Written,
    gm: &GroupMembership,
    status: &MembershipStatus,
) -> Result<()> {
    if gm.status.as_ref() == Some(status) {
        return Ok(());
    }
    written.writing(gm);
    let patched = crate::controller::apply_status(api, &gm.name_any(), status).await?;
    written.wrote(&patched);
    Ok(())
}

/// One round for one membership, with its back-off: a round that failed or must retry
/// waits longer each time (up to [`Settings::retry_max`]); any other round resets it.
async fn round(stale: &GroupMembership, shared: &Shared) -> Result<Action> {
    let key = owner_key(stale);
    match attempt_round(stale, shared).await? {
        Next::Retry(requeue_at) => Ok(Action::requeue(decide::requeue_after(
            Some(shared.backoff.failed(&key)),
            requeue_at,
            Timestamp::now(),
            shared.settings.resync,
        ))),
        Next::Done(action) => {
            shared.backoff.reset(&key);
            Ok(action)
        }
    }
}

/// How a round ended.
enum Next {
    /// Something failed or is pending: retry with back-off, but no later than the exact
    /// expiry instant, if any.
    Retry(Option<Timestamp>),
    /// Nothing to retry.
    Done(Action),
}

/// The membership as a round acts on it: read fresh, with its finalizer, and a spec that
/// can be acted on.
struct Subject {
    api: Api<GroupMembership>,
    gm: GroupMembership,
    owner: String,
    /// The previous round's rows.
    previous: Vec<decide::UserStatus>,
    /// `status.groupId`: the group the previous rounds resolved.
    previous_group: Option<String>,
    expiry: Expiry,
    /// The group to look up: the spec's, or the recorded id for an invalid spec being
    /// deleted.
    group: GroupRef,
}

/// The group a round lets go in first because `spec.group` now names another one.
struct Move {
    from: String,
    to: String,
}

/// What a round's Okta lookups found.
struct Found {
    group: GroupLookup,
    moving: Option<Move>,
    lifecycle: Lifecycle,
    /// Whether the group can be acted on at all (a renamed one can be let go of).
    group_ok: bool,
    users: Vec<decide::DeclaredUser>,
    /// User ids read from Okta this round (not from the connector's index).
    fresh: BTreeSet<String>,
    /// The group id the record is located by.
    group_id: Option<String>,
    lookups_failed: bool,
}

/// Where the group's ownership record lives (known with a connector domain and a group id).
struct Location {
    domain: String,
    group_id: String,
    /// The record's name; it keys the group's member list too.
    record_name: String,
}

/// One round's share of its group's batch: the facts it gathered, to decide on with the
/// batch's record and members.
struct Job {
    /// The round's facts; `group`, `members`, `record`, `others` and `now` are the batch's.
    input: Input,
    /// The connector's client when the operator and the connector admit writes.
    client: Option<OktaClient>,
    /// Whether the group can be acted on at all (a renamed one can be let go of).
    group_ok: bool,
    /// The connector's circuit breaker settings.
    breaker: BreakerSettings,
    /// The connector's last sync (a member list read before it is stale).
    sync: String,
    /// User ids read from Okta this round (not from the connector's index).
    fresh: BTreeSet<String>,
    reply: oneshot::Sender<Result<Settled>>,
}

/// A job's answer: its outcome once the batch's writes were made and the record stored.
struct Settled {
    out: decide::Outcome,
    /// The confirmed record could not be written (a conflict): the next round converges.
    record_pending: bool,
    /// The group's members or a user read again before its PUT could not be read.
    lookups_failed: bool,
}

/// A job with its plan.
struct Decided {
    job: Job,
    plan: decide::Plan,
    lookups_failed: bool,
}

/// How planning a batch ended.
enum Planning {
    /// The write-ahead record is stored (or needed no change): make the Okta writes.
    Stored {
        decided: Vec<Decided>,
        stored: Versioned,
        /// Jobs put off to the next batch.
        carried: Vec<Job>,
    },
    /// The record changed since it was read: plan every job again.
    Conflict(Vec<Job>),
}

/// The group's members as a batch saw them.
enum Seen {
    Members(BTreeSet<String>),
    /// Gone since the index saw it: nothing to hold, nothing to revoke.
    Gone,
    /// The read failed: nothing may be granted or revoked.
    Unknown,
}

async fn attempt_round(stale: &GroupMembership, shared: &Shared) -> Result<Next> {
    let subject = match subject_of(stale, shared).await? {
        Ok(subject) => subject,
        Err(next) => return Ok(next),
    };
    let connector = connector_of(shared, &subject.gm).await?;
    let term_age = shared.term_started.elapsed();
    let limit = shared.settings.await_client_max;
    if connector.awaiting_client
        && decide::await_client(
            term_age,
            limit,
            lifecycle_of(&subject.gm),
            &subject.previous,
        )
    {
        // Not a refusal: reporting ConnectorNotReady here would flip every membership's
        // status, and warn, on each restart and failover. Bounded: past the limit the
        // round goes on and reports the connector as not ready.
        let wait = AWAIT_CLIENT.min(limit.saturating_sub(term_age));
        return Ok(Next::Done(Action::requeue(wait)));
    }
    // Reads and revocations need only a working client of a connector that is not
    // suspended; grants are refused by the decision's own gates (operator and connector
    // provisioning, readiness, scope), so letting go never waits on them. While grants are
    // refused, Okta is read only for an object that resolved a group before (it may hold
    // grants to let go of): a new one costs no request.
    let admitted = decide::check_operator(shared.settings.provisioning).is_ok()
        && decide::check_connector(connector.facts.as_ref()).is_ok();
    let may_let_go = admitted || subject.previous_group.is_some();
    let revocable = decide::check_revocation(connector.facts.as_ref()).is_ok();
    let client = connector
        .client
        .as_ref()
        .filter(|_| revocable && may_let_go);
    let mut found = look_up(&subject, &connector, client).await;
    let policy = policy_facts(shared, &subject.gm, &connector, client, &found).await;
    let location =
        connector
            .domain
            .clone()
            .zip(found.group_id.clone())
            .map(|(domain, group_id)| Location {
                record_name: record::record_name(&domain, &group_id),
                domain,
                group_id,
            });
    let (reply, answer) = oneshot::channel();
    let job = Job {
        input: Input {
            provisioning: shared.settings.provisioning,
            owner: subject.owner.clone(),
            connector: connector.facts.clone(),
            group: found.group.clone(),
            users: found.users.clone(),
            members: BTreeSet::new(),
            others: BTreeMap::new(),
            record: decide::GroupRecord::default(),
            record_located: location.is_some(),
            group_id: found.group_id.clone(),
            lifecycle: found.lifecycle,
            expiry: subject.expiry,
            effective_since: effective_since_of(&subject.gm),
            previous: subject.previous.clone(),
            now: Timestamp::now(),
            policy,
        },
        client: client.cloned(),
        group_ok: found.group_ok,
        breaker: connector.breaker.clone(),
        sync: connector.sync.clone(),
        fresh: std::mem::take(&mut found.fresh),
        reply,
    };
    match &location {
        // One batch at a time per group record in this process.
        Some(l) => {
            if let Some(mut leader) = shared.batches.submit(&l.record_name, job) {
                let mut carried = Vec::new();
                while let Some(jobs) = leader.next_batch(carried) {
                    carried = run_batch(shared, Some(l), jobs).await;
                }
            }
        }
        None => {
            let carried = run_batch(shared, None, vec![job]).await;
            debug_assert!(carried.is_empty(), "a lone job is never put off");
        }
    }
    // No answer: the batch's leader was abandoned when the term ended.
    let settled = answer.await.map_err(|_| Error::LostLeadership)??;
    found.lookups_failed |= settled.lookups_failed;
    finish(
        shared,
        &subject,
        &connector,
        &found,
        location.as_ref(),
        settled,
    )
    .await
}

/// The grant-policy gate's facts. Only a round that may grant (live, admitted, the group
/// found) waits for the caches' first listing and looks for the owning AccessRequest and the
/// group's admin roles; whatever it cannot learn makes its grants wait, never its revocations.
async fn policy_facts(
    shared: &Shared,
    gm: &GroupMembership,
    connector: &Connector,
    client: Option<&OktaClient>,
    found: &Found,
) -> decide::PolicyFacts {
    let may_grant = found.lifecycle == Lifecycle::Live && found.group_ok;
    let (Some(client), GroupLookup::Found(group), true) = (client, &found.group, may_grant) else {
        return shared.policies.facts(
            gm,
            shared.settings.require_policy,
            None,
            &shared.ctx.domain_policy,
            None,
            decide::GroupRoles::NoRole,
        );
    };
    let mut undecided = None;
    if !shared.policies.listed().await {
        undecided = Some("the AccessPolicies and namespaces are not listed yet".to_owned());
    }
    let request = match shared.policies.request_of(&shared.ctx.kube, gm).await {
        Ok(request) => request,
        Err(e) => {
            tracing::warn!(membership = %owner_key(gm), error = %e, "reading the owning AccessRequest failed");
            undecided = Some("the owning AccessRequest could not be read".to_owned());
            None
        }
    };
    let roles = policies::group_roles(connector.index.as_deref(), client, &group.id).await;
    decide::PolicyFacts {
        undecided,
        ..shared.policies.facts(
            gm,
            shared.settings.require_policy,
            connector.domain.clone(),
            &shared.ctx.domain_policy,
            request,
            roles,
        )
    }
}

/// Runs one batch of a group's jobs by the crash-safety protocol and answers each job;
/// returns the jobs put off to the next batch.
async fn run_batch(shared: &Shared, location: Option<&Location>, mut jobs: Vec<Job>) -> Vec<Job> {
    for attempt in 1..=RECORD_ATTEMPTS {
        match plan_batch(shared, location, jobs).await {
            Ok(Planning::Stored {
                decided,
                stored,
                carried,
            }) => {
                write_and_settle(shared, location, decided, stored).await;
                return carried;
            }
            Ok(Planning::Conflict(again)) if attempt < RECORD_ATTEMPTS => jobs = again,
            Ok(Planning::Conflict(again)) => {
                let name = location.map(|l| l.record_name.clone()).unwrap_or_default();
                answer_failed(again, record::Error::Conflict { name }.into());
                return Vec::new();
            }
            Err((e, again)) => {
                answer_failed(again, e);
                return Vec::new();
            }
        }
    }
    unreachable!("the last attempt always returns")
}

/// Answers every job with the batch's error.
fn answer_failed(jobs: Vec<Job>, error: Error) {
    let error = Arc::new(error);
    for job in jobs {
        let _ = job.reply.send(Err(Error::Batch(error.clone())));
    }
}

/// Steps 1 to 3 of the protocol for a batch: read the record fresh and the group's members,
/// decide each job on the record as the jobs before it left it, and store the write-ahead
/// record once for all. A job that touches a user an earlier job of the batch writes is put
/// off to the next batch, so it sees that write's outcome as it would one round later.
async fn plan_batch(
    shared: &Shared,
    location: Option<&Location>,
    jobs: Vec<Job>,
) -> std::result::Result<Planning, (Error, Vec<Job>)> {
    let now = Timestamp::now();
    // 1. The record, fresh, then (once, for the first job that may act) the members.
    let read = match location {
        Some(l) => match shared.records.read(&l.domain, &l.group_id).await {
            Ok(read) => read,
            Err(e) => return Err((e.into(), jobs)),
        },
        None => Versioned {
            record: decide::GroupRecord::default(),
            resource_version: None,
        },
    };
    let mut record = read.record.clone();
    let mut seen = None;
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let mut decided = Vec::new();
    let mut carried = Vec::new();
    for mut job in jobs {
        let (group, members, unknown) = observe(shared, &job, location, &mut seen).await;
        let mut input = job.input.clone();
        input.group = group;
        input.members = members;
        input.record = record.clone();
        input.others = input
            .group_id
            .as_deref()
            .map(|g| others_of(shared, &input.owner, g, now))
            .unwrap_or_default();
        input.now = now;
        // 2. Decide.
        let mut plan = decide::decide(&input);
        let mut fresh = job.fresh.clone();
        let mut lookups_failed = unknown;
        // 2b. Users the plan would PUT as the index saw them (its last sync, maybe an hour
        // old) are read again by id first, at most once a round; where the user guard rails
        // now answer differently (out of the email domains, suspended, gone, or the read
        // failed) the round decides again with Okta's answer, so that user gets no PUT.
        if let (Some(client), Some(facts)) = (&job.client, input.connector.as_ref()) {
            let unconfirmed = decide::unconfirmed_grants(&plan, &fresh);
            if !unconfirmed.is_empty() {
                let (reread, failed) = lookup::reread_users(client, &unconfirmed).await;
                lookups_failed |= failed;
                fresh.extend(reread.keys().cloned());
                if let Some(users) = decide::reconfirm(&input.users, &reread, facts) {
                    input.users = users;
                    plan = decide::decide(&input);
                }
                debug_assert!(decide::unconfirmed_grants(&plan, &fresh).is_empty());
            }
        }
        let writes = plan.grants.iter().chain(&plan.revokes);
        if user_ids(&input)
            .chain(writes)
            .any(|id| touched.contains(id))
        {
            carried.push(job);
            continue;
        }
        hold_over_budget(shared, &job, &mut plan).await;
        touched.extend(plan.grants.iter().chain(&plan.revokes).cloned());
        record = plan.record.clone();
        job.input.users = input.users;
        job.fresh = fresh;
        decided.push(Decided {
            job,
            plan,
            lookups_failed,
        });
    }
    // 3. Write-ahead: every intent of the batch is stored before any Okta write.
    if record == read.record {
        return Ok(Planning::Stored {
            decided,
            stored: read,
            carried,
        });
    }
    let l = location.expect("a plan only changes the record of a located group");
    match shared
        .records
        .write(&l.domain, &l.group_id, &read, &record)
        .await
    {
        Ok(stored) => Ok(Planning::Stored {
            decided,
            stored,
            carried,
        }),
        Err(record::Error::Conflict { .. }) => Ok(Planning::Conflict(
            decided.into_iter().map(|d| d.job).chain(carried).collect(),
        )),
        Err(e) => Err((
            e.into(),
            decided.into_iter().map(|d| d.job).chain(carried).collect(),
        )),
    }
}

/// Asks the connector's circuit breaker for the plan's removals and holds back those over
/// budget. Asked on every round with a connector, with zero removals too, so a membership
/// that no longer waits stops counting as held.
async fn hold_over_budget(shared: &Shared, job: &Job, plan: &mut decide::Plan) {
    let Some(key) = &job.breaker.key else {
        return;
    };
    let breaker = shared.ctx.clients.revocations();
    let request = RemovalRequest {
        requester: &job.input.owner,
        wanted: plan.revokes.len(),
        limit: job.breaker.limit,
        release: job.breaker.release.as_deref(),
    };
    let now = Timestamp::now();
    let allowance = breaker.request(key, &request, now).await;
    let state = breaker.state(key, now);
    shared
        .ctx
        .metrics
        .set_revocations_held(&key.namespace, &key.name, state.held);
    if allowance.held == 0 {
        return;
    }
    let held = plan
        .revokes
        .iter()
        .skip(allowance.allowed)
        .cloned()
        .collect();
    let why = format!(
        "revocation held: connector {} reached safety.maxRevocationsPerHour ({}); give \
         annotation {RELEASE_ANNOTATION} a new value to release",
        key.name, job.breaker.limit
    );
    plan.hold_revocations(&held, &why);
}

/// The user ids a job's decision is about: its declared users and its previous rows.
fn user_ids(input: &Input) -> impl Iterator<Item = &String> {
    let declared = input.users.iter().filter_map(|d| match &d.lookup {
        UserLookup::Found(u) => Some(&u.id),
        _ => None,
    });
    declared.chain(input.previous.iter().filter_map(|p| p.user_id.as_ref()))
}

/// The group as a job sees it, with its members when it can be acted on, and whether the
/// member read failed. The batch reads the members once (`seen`).
async fn observe(
    shared: &Shared,
    job: &Job,
    location: Option<&Location>,
    seen: &mut Option<Seen>,
) -> (GroupLookup, BTreeSet<String>, bool) {
    let group = match &job.input.group {
        GroupLookup::Found(g) | GroupLookup::Renamed { group: g, .. } => Some(g),
        _ => None,
    };
    let (Some(client), Some(g), Some(l)) = (&job.client, group, location.filter(|_| job.group_ok))
    else {
        return (job.input.group.clone(), BTreeSet::new(), false);
    };
    if seen.is_none() {
        *seen = Some(
            match group_members(shared, client, &g.id, &l.record_name, &job.sync).await {
                Ok(members) => Seen::Members(members),
                Err(crate::okta::Error::NotFound(_)) => Seen::Gone,
                Err(e) => {
                    tracing::warn!(group = %g.id, error = %e, "listing members failed");
                    Seen::Unknown
                }
            },
        );
    }
    match seen {
        Some(Seen::Members(members)) => (job.input.group.clone(), members.clone(), false),
        Some(Seen::Gone) => (GroupLookup::NotFound, BTreeSet::new(), false),
        _ => (GroupLookup::NotLookedUp, BTreeSet::new(), true),
    }
}

/// Steps 4 and 5 for a batch: the Okta writes of every job side by side, then each plan
/// settled in turn on the record the jobs before it left, the confirmed record stored once,
/// and every job answered.
async fn write_and_settle(
    shared: &Shared,
    location: Option<&Location>,
    mut decided: Vec<Decided>,
    stored: Versioned,
) {
    let failures = futures::future::join_all(
        decided
            .iter()
            .map(|d| write_okta(shared, d.job.client.as_ref(), &d.plan, location)),
    )
    .await;
    let lost: usize = decided.iter().map(|d| d.plan.lost_ownership.len()).sum();
    if lost > 0 {
        shared.ctx.metrics.record_ownership_grants_lost(lost);
    }
    let mut record = stored.record.clone();
    let mut outs = Vec::with_capacity(decided.len());
    for (d, failures) in decided.iter_mut().zip(&failures) {
        d.plan.record = record;
        let out = d.plan.settle(failures);
        record = out.record.clone();
        outs.push(out);
    }
    let mut record_pending = false;
    if record != stored.record {
        let l = location.expect("a settled record only changes for a located group");
        match shared
            .records
            .write(&l.domain, &l.group_id, &stored, &record)
            .await
        {
            Ok(_) => {}
            // The next round re-plans from the fresh record and converges.
            Err(record::Error::Conflict { .. }) => record_pending = true,
            Err(e) => {
                answer_failed(decided.into_iter().map(|d| d.job).collect(), e.into());
                return;
            }
        }
    }
    for (d, out) in decided.into_iter().zip(outs) {
        let _ = d.job.reply.send(Ok(Settled {
            out,
            record_pending,
            lookups_failed: d.lookups_failed,
        }));
    }
}

/// Step 4: the Okta writes, only for a located group through the connector's shared client;
/// the term's member list follows them.
async fn write_okta(
    shared: &Shared,
    client: Option<&OktaClient>,
    plan: &decide::Plan,
    location: Option<&Location>,
) -> BTreeMap<String, WriteError> {
    let (Some(client), Some(gid)) = (client, &plan.group_id) else {
        return BTreeMap::new();
    };
    if !plan.has_writes() {
        return BTreeMap::new();
    }
    let failures = lookup::write_memberships(client, gid, &plan.grants, &plan.revokes).await;
    if let Some(l) = location {
        shared
            .members
            .apply(&l.record_name, &plan.grants, &plan.revokes, &failures);
    }
    failures
}

/// The membership as of this term's last write to it (the cached object when it shows that
/// write, else read fresh), with the finalizer added. `Err` ends the round:
/// the object is gone or finishing, or its spec is invalid (reported, nothing looked up).
async fn subject_of(
    stale: &GroupMembership,
    shared: &Shared,
) -> Result<std::result::Result<Subject, Next>> {
    let ns = stale.namespace().unwrap_or_default();
    let api: Api<GroupMembership> = Api::namespaced(shared.ctx.kube.clone(), &ns);
    // The cache may lag this term's own last write to the object; `effectiveSince` and the
    // previous rows must be current, so then the object is read fresh.
    let current = shared.written.caught_up(stale).then(|| stale.clone());
    let fresh = match current {
        Some(gm) => Some(gm),
        None => api.get_opt(&stale.name_any()).await?,
    };
    let Some(mut gm) = fresh else {
        return Ok(Err(Next::Done(Action::await_change())));
    };
    let deleting = gm.metadata.deletion_timestamp.is_some();
    let has_finalizer = gm.finalizers().iter().any(|f| f == FINALIZER);
    if deleting && !has_finalizer {
        return Ok(Err(Next::Done(Action::await_change())));
    }
    if !has_finalizer {
        gm = add_finalizer(&api, &shared.written, &gm).await?;
    }
    let owner = owner_key(&gm);
    let previous_group = gm.status.as_ref().and_then(|s| s.group_id.clone());
    let (expiry, group) = match validate(&gm) {
        Ok(expiry) => (expiry, gm.spec.group.clone()),
        // Nothing is looked up or written until the spec changes.
        Err(message) if !deleting => {
            tracing::warn!(membership = %owner, %message, "invalid spec");
            let (status, event) = refuse_spec(&gm, &message, Timestamp::now());
            apply_status(&api, &shared.written, &gm, &status).await?;
            publish(shared, &gm, event.as_slice()).await;
            return Ok(Err(Next::Done(Action::await_change())));
        }
        // Being deleted: let go in the group the status recorded; without one there is no
        // record to find, so nothing is held.
        Err(_) => match &previous_group {
            Some(id) => (
                Expiry::Never,
                GroupRef {
                    name: None,
                    id: Some(id.clone()),
                },
            ),
            None => {
                remove_finalizer(&api, &shared.written, &gm).await?;
                return Ok(Err(Next::Done(Action::await_change())));
            }
        },
    };
    Ok(Ok(Subject {
        api,
        previous: previous_rows(&gm),
        gm,
        owner,
        previous_group,
        expiry,
        group,
    }))
}

/// Looks the group and the declared users up (the connector's index first, then Okta),
/// through `client` only when the operator and the connector admit writes.
async fn look_up(subject: &Subject, connector: &Connector, client: Option<&OktaClient>) -> Found {
    let owner = &subject.owner;
    let previous_group = subject.previous_group.as_deref();
    let index = connector.index.as_deref();
    let mut lookups_failed = false;
    let mut group = match client {
        None => GroupLookup::NotLookedUp,
        Some(client) => {
            match lookup::find_group(client, index, &subject.group, previous_group).await {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(membership = %owner, error = %e, "group lookup failed");
                    lookups_failed = true;
                    GroupLookup::NotLookedUp
                }
            }
        }
    };
    // spec.group now names another group: let go in the recorded one first, as a deletion
    // would; the new group is acted on once that is done (see `decide::moved_from`).
    let mut moving = None;
    if let (Some(client), Some(old)) = (client, decide::moved_from(&group, previous_group)) {
        let GroupLookup::Found(new) = &group else {
            unreachable!("a move is to a found group")
        };
        moving = Some(Move {
            from: old.to_owned(),
            to: new.id.clone(),
        });
        let by_id = GroupRef {
            name: None,
            id: Some(old.to_owned()),
        };
        group = match lookup::find_group(client, index, &by_id, None).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(membership = %owner, error = %e, "old group lookup failed");
                lookups_failed = true;
                GroupLookup::NotLookedUp
            }
        };
    }
    let lifecycle = match moving {
        Some(_) => Lifecycle::Deleting(deletion_policy_of(&subject.gm)),
        None => lifecycle_of(&subject.gm),
    };
    // Letting go needs only the group the grants were made in; the scope rails gate grants
    // in the decision.
    let group_ok = connector.facts.is_some() && decide::check_group_to_let_go(&group).is_ok();
    let declared = &subject.gm.spec.users;
    let users = match client {
        Some(client) if group_ok => lookup::find_users(client, index, declared).await,
        _ => lookup::FoundUsers {
            users: declared
                .iter()
                .map(|u| decide::DeclaredUser {
                    user: u.clone(),
                    lookup: UserLookup::NotLookedUp,
                })
                .collect(),
            ..lookup::FoundUsers::default()
        },
    };
    let group_id = match &group {
        GroupLookup::Found(g) | GroupLookup::Renamed { group: g, .. } => Some(g.id.clone()),
        _ => subject.previous_group.clone(),
    };
    Found {
        group,
        moving,
        lifecycle,
        group_ok,
        users: users.users,
        fresh: users.fresh,
        group_id,
        lookups_failed: lookups_failed || users.failed,
    }
}

/// Step 6: status, Events, finalizer, requeue.
async fn finish(
    shared: &Shared,
    subject: &Subject,
    connector: &Connector,
    found: &Found,
    location: Option<&Location>,
    settled: Settled,
) -> Result<Next> {
    let Settled {
        mut out,
        record_pending,
        ..
    } = settled;
    let (api, gm) = (&subject.api, &subject.gm);
    let now = Timestamp::now();
    let recorded = !record_pending;
    let must_retry = out.retry || found.lookups_failed || record_pending;
    if let Some(Move { from, to }) = &found.moving {
        let done = out.remove_finalizer && recorded;
        out.ready = decide::moving_condition(&out.ready, from, to, done);
        let mut status = build_status(gm, &out, now);
        if done {
            // Nothing is claimed in the old group any more: the next round acts in the new.
            status.group_id = Some(to.clone());
        }
        apply_status(api, &shared.written, gm, &status).await?;
        publish(shared, gm, &out.events).await;
        // Never the finalizer: the object still declares (or must still let go in) the new
        // group.
        return Ok(if done {
            Next::Done(Action::requeue(Duration::ZERO))
        } else if must_retry {
            Next::Retry(None)
        } else {
            Next::Done(Action::requeue(shared.settings.resync))
        });
    }
    let status = build_status(gm, &out, now);
    apply_status(api, &shared.written, gm, &status).await?;
    publish(shared, gm, &out.events).await;

    // A record that could not be located may still hold this object's claims: only a
    // status that never showed a claim, `Retain`, or a connector that is gone (nothing can
    // be revoked, ever) lets the finalizer go without it.
    let previous = &subject.previous;
    let unlocated = match found.lifecycle {
        _ if location.is_some() || previous.iter().all(|p| p.origin.is_none()) => Some(Vec::new()),
        Lifecycle::Deleting(policy) => decide::finish_unlocated(
            policy,
            connector.facts.as_ref(),
            &gm.spec.connector_ref.name,
            previous,
        ),
        Lifecycle::Live => None,
    };
    if let Some(events) = unlocated.filter(|_| out.remove_finalizer && recorded) {
        publish(shared, gm, &events).await;
        remove_finalizer(api, &shared.written, gm).await?;
        return Ok(Next::Done(Action::await_change()));
    }
    if must_retry {
        return Ok(Next::Retry(out.requeue_at));
    }
    let wait = decide::requeue_after(None, out.requeue_at, now, shared.settings.resync);
    Ok(Next::Done(Action::requeue(wait)))
}

/// The group's members: the term's recent list when fresh ([`MemberCache`]), else one paged
/// read from Okta, kept for the next rounds of the group.
async fn group_members(
    shared: &Shared,
    client: &OktaClient,
    group_id: &str,
    cache_key: &str,
    sync: &str,
) -> crate::okta::Result<BTreeSet<String>> {
    if let Some(members) = shared.members.get(cache_key, sync, Instant::now()) {
        return Ok(members);
    }
    let read_at = Instant::now();
    match lookup::members(client, group_id).await {
        Ok(members) => {
            shared
                .members
                .put(cache_key, sync, members.clone(), read_at);
            Ok(members)
        }
        Err(e) => {
            shared.members.forget(cache_key);
            Err(e)
        }
    }
}

/// Publishes the round's Events; a failed Event is logged, never fails the round.
async fn publish(shared: &Shared, gm: &GroupMembership, events: &[decide::Event]) {
    let reference = gm.object_ref(&());
    for e in events {
        let event = KubeEvent {
            type_: match e.event_type {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: e.reason.as_str().to_owned(),
            note: Some(e.message.chars().take(1000).collect()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(err) = shared.recorder.publish(&event, &reference).await {
            tracing::warn!(membership = %owner_key(gm), error = %err, "cannot publish Event");
        }
    }
}
