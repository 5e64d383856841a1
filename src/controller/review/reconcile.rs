//! The `AccessReview` reconciler: at `startAt` freezes the items from the connector's index
//! into `AccessReviewChunk`s owned by the review; until `dueAt` tallies the
//! `AccessReviewDecision`s ([`decide::tally`]) into the status and each chunk's status; from
//! `dueAt` remediates every item ([`decide::plan`]), removing memberships only through
//! [`remove_revoked_memberships`] (guard rails, a live re-read, the circuit breaker).
//!
//! Triggers: the reviews, their decisions, and a periodic re-check ([`Settings::recheck`]) by
//! which a started campaign, an index that appeared, an installed admission policy, a
//! reviewer's changed RBAC and the due time are noticed. Writes happen only while this
//! replica leads.
//!
//! Crash safety: chunks are written before the status that records them; a round that finds
//! no recorded digest deletes whatever chunks the review already owns and freezes again.
//! Each chunk's status is written after its items were remediated, so a removal is at most
//! repeated once (and then finds the membership already gone).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::decide::{self, Counted, DecisionFacts, Planned};
use super::recurrence::{self, Next, PREVIOUS_UID_LABEL, SERIES_LABEL};
use crate::controller::admission;
use crate::controller::connector::index;
use crate::controller::membership::lookup;
use crate::controller::runtime::Context;
use crate::controller::runtime::breaker::{RELEASE_ANNOTATION, RemovalRequest};
use crate::controller::runtime::clients::ConnectorKey;
use crate::controller::runtime::controllers::{CachesSynced, run_kind, run_terms, watched_apis};
use crate::controller::runtime::metrics::ReconcileResult;
use crate::crd::condition::{new_condition, set_condition};
use crate::crd::review::{
    AccessReviewChunkStatus, DeclaredBy, ITEMS_PER_CHUNK, ItemOutcome, ItemStatus, OutcomeCounts,
    ReviewItem, ReviewPhase,
};
use crate::crd::{
    AccessReview, AccessReviewChunk, AccessReviewChunkSpec, AccessReviewDecision,
    AccessReviewStatus, ConditionStatus, ConditionType, FIELD_MANAGER, GroupMembership,
    OktaCiamConnector, UserMembershipState,
};
use crate::okta;
use crate::review::items::{ReviewScope, freeze};

/// The label on every chunk, holding its review's uid (names can exceed a label's 63 bytes).
pub const REVIEW_UID_LABEL: &str = "oktaciam.io/access-review-uid";

/// The RBAC verb a reviewer needs on the `AccessReview`.
pub const REVIEW_VERB: &str = "review";

/// Errors of the access review reconciler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The recorded chunks are not all there, or not of the recorded snapshot.
    #[error("review {review}: {problem}")]
    Chunks {
        /// The review.
        review: String,
        /// What is wrong.
        problem: String,
    },
    /// The leadership term ended during the round.
    #[error("leadership lost during the round")]
    LostLeadership,
}

/// Result of the access review reconciler.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Tunables of [`run_with`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Longest time between two rounds of a campaign that is not completed.
    pub recheck: Duration,
    /// Delay before retrying a failed round.
    pub retry_delay: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            recheck: Duration::from_secs(60),
            retry_delay: Duration::from_secs(5),
        }
    }
}

struct Shared {
    ctx: Context,
    settings: Settings,
    recorder: Recorder,
    term: CancellationToken,
}

/// Runs the controller until `ctx.shutdown` with default [`Settings`].
pub async fn run(ctx: Context, caches_synced: oneshot::Sender<()>) -> Result<()> {
    run_with(ctx, Settings::default(), caches_synced).await
}

/// Runs the controller until `ctx.shutdown`: one controller per leadership term.
/// `caches_synced` fires at once on a standby, else when a term's caches are first listed.
pub async fn run_with(
    ctx: Context,
    settings: Settings,
    caches_synced: oneshot::Sender<()>,
) -> Result<()> {
    let (ctx, settings) = (&ctx, &settings);
    run_terms(ctx, caches_synced, |term, synced| {
        run_term(ctx, settings, term, synced)
    })
    .await;
    Ok(())
}

async fn run_term(
    ctx: &Context,
    settings: &Settings,
    term: CancellationToken,
    synced: CachesSynced,
) {
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        settings: settings.clone(),
        recorder: Recorder::new(ctx.kube.clone(), Reporter::from(FIELD_MANAGER)),
        term: term.clone(),
    });
    let controllers: Vec<Controller<AccessReview>> = watched_apis::<AccessReview>(ctx)
        .into_iter()
        .zip(watched_apis::<AccessReviewDecision>(ctx))
        .map(|(reviews, decisions)| {
            Controller::new(reviews, watcher::Config::default())
                .watches(
                    decisions,
                    watcher::Config::default(),
                    |d: AccessReviewDecision| {
                        let ns = d.namespace()?;
                        Some(ObjectRef::new(&d.spec.review.name).within(&ns))
                    },
                )
                .graceful_shutdown_on(term.clone().cancelled_owned())
        })
        .collect();
    run_kind(
        "access review",
        controllers,
        reconcile,
        error_policy,
        shared,
        &term,
        move || synced.fire(),
    )
    .await;
}

fn key(review: &AccessReview) -> String {
    format!(
        "{}/{}",
        review.namespace().unwrap_or_default(),
        review.name_any()
    )
}

fn error_policy(review: Arc<AccessReview>, error: &Error, shared: Arc<Shared>) -> Action {
    tracing::warn!(review = %key(&review), %error, "access review round failed");
    Action::requeue(shared.settings.retry_delay)
}

async fn reconcile(review: Arc<AccessReview>, shared: Arc<Shared>) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = tokio::select! {
        r = round(&review, &shared) => r,
        () = shared.term.cancelled() => Err(Error::LostLeadership),
    };
    let outcome = match &result {
        Ok(_) => ReconcileResult::Success,
        Err(_) => ReconcileResult::Error,
    };
    shared
        .ctx
        .metrics
        .record_reconcile("AccessReview", outcome, started.elapsed());
    result
}

/// One round: create a recurring campaign's successor when its period comes, then freeze,
/// tally, remediate, as far as the time allows.
async fn round(review: &AccessReview, shared: &Shared) -> Result<Action> {
    let now = Timestamp::now();
    let mut status = review.status.clone().unwrap_or_default();
    let successor_wait = create_successor(shared, review, &mut status, now).await?;
    let campaign_wait = campaign_round(review, shared, status, now).await?;
    Ok(match (campaign_wait, successor_wait) {
        (Some(a), Some(b)) => Action::requeue(a.min(b)),
        (Some(wait), None) | (None, Some(wait)) => Action::requeue(wait),
        (None, None) => Action::await_change(),
    })
}

/// Freezes, tallies and remediates, starting from `status` (the recorded one, with the
/// successor noted); returns when to look again, `None` once completed.
async fn campaign_round(
    review: &AccessReview,
    shared: &Shared,
    mut status: AccessReviewStatus,
    now: Timestamp,
) -> Result<Option<Duration>> {
    let previous = review.status.clone().unwrap_or_default();
    if previous.phase == Some(ReviewPhase::Completed) {
        write_status(shared, review, &status).await?;
        return Ok(None);
    }
    let condition = |type_, ok: bool, reason: &str, message: String| {
        review_condition(review, now, type_, ok, reason, message)
    };
    let start = review.spec.start_at.as_ref().map(|t| t.0);
    if let Some(start) = start.filter(|s| *s > now) {
        status.phase = Some(ReviewPhase::Scheduled);
        set_condition(
            &mut status.conditions,
            condition(
                ConditionType::Frozen,
                false,
                "NotStarted",
                format!("the items are frozen at {start}"),
            ),
        );
        write_status(shared, review, &status).await?;
        let until = now.duration_until(start).unsigned_abs();
        return Ok(Some(until.min(shared.settings.recheck)));
    }
    let items = match &previous.snapshot_digest {
        Some(digest) => read_items(shared, review, digest, previous.chunks.unwrap_or(0)).await?,
        None => match freeze_items(shared, review, &mut status).await? {
            Some(items) => {
                set_condition(
                    &mut status.conditions,
                    condition(
                        ConditionType::Frozen,
                        true,
                        "Frozen",
                        format!(
                            "{} items from snapshot {}",
                            items.len(),
                            status.snapshot_digest.as_deref().unwrap_or_default()
                        ),
                    ),
                );
                publish(
                    shared,
                    review,
                    EventType::Normal,
                    "Frozen",
                    &format!(
                        "{} items frozen into {} chunks from snapshot {}",
                        items.len(),
                        status.chunks.unwrap_or(0),
                        status.snapshot_digest.as_deref().unwrap_or_default()
                    ),
                )
                .await;
                items
            }
            None => {
                status.phase = Some(ReviewPhase::Scheduled);
                set_condition(
                    &mut status.conditions,
                    condition(
                        ConditionType::Frozen,
                        false,
                        "WaitingForSnapshot",
                        format!(
                            "connector {} has no snapshot yet (first sync pending, or its \
                             scope changed)",
                            review.spec.connector_ref.name
                        ),
                    ),
                );
                write_status(shared, review, &status).await?;
                return Ok(Some(shared.settings.recheck));
            }
        },
    };

    let verified = admission::state(&shared.ctx.kube).await;
    let tally = match &verified {
        Ok(()) => {
            set_condition(
                &mut status.conditions,
                condition(
                    ConditionType::DecisionsCounted,
                    true,
                    "AdmissionPolicyVerified",
                    "decisions are counted".to_owned(),
                ),
            );
            tally(shared, review, &items).await?
        }
        Err(why) => {
            set_condition(
                &mut status.conditions,
                condition(
                    ConditionType::DecisionsCounted,
                    false,
                    "AdmissionPolicyUnverifiable",
                    format!("no decision counts and nothing is remediated: {why}"),
                ),
            );
            // Fail closed: while nobody can tell who decided, no decision counts.
            decide::tally(&review.spec, &review.uid().unwrap_or_default(), &items, &[])
        }
    };
    let due = review.spec.due_at.0;
    let overdue = now >= due;
    status.decisions = Some(tally.counts);
    status.reviewers = tally.reviewers.clone();
    status.refused_decisions = tally.refused.clone();
    set_condition(
        &mut status.conditions,
        condition(
            ConditionType::Overdue,
            overdue && tally.counts.undecided > 0,
            if overdue { "Due" } else { "NotDue" },
            format!(
                "{} of {} items undecided; due at {due}",
                tally.counts.undecided,
                items.len()
            ),
        ),
    );
    let newly_refused: Vec<_> = tally
        .refused
        .iter()
        .filter(|r| !previous.refused_decisions.iter().any(|p| p.name == r.name))
        .collect();
    for r in newly_refused {
        let message = format!("decision {} not counted: {}", r.name, r.message);
        publish(shared, review, EventType::Warning, &r.reason, &message).await;
    }

    let remediate = overdue && verified.is_ok();
    let outcomes = if remediate {
        status.phase = Some(ReviewPhase::Remediating);
        Some(remediate_and_record(shared, review, &items, &tally.by_item).await?)
    } else {
        if verified.is_ok() {
            record_decisions(shared, review, &items, &tally.by_item).await?;
        }
        status.phase = Some(ReviewPhase::Open);
        None
    };
    if let Some(counts) = outcomes {
        status.outcomes = Some(counts);
        let done = counts.failed == 0 && counts.held == 0;
        let reason = if counts.failed > 0 {
            "RemovalsFailed"
        } else if counts.held > 0 {
            "RemovalsHeld"
        } else {
            "Completed"
        };
        set_condition(
            &mut status.conditions,
            condition(
                ConditionType::Remediated,
                done,
                reason,
                format!(
                    "{} removed, {} already removed, {} change declaration, {} manual, {} \
                     refused, {} failed, {} held, {} reported, {} kept",
                    counts.removed,
                    counts.already_removed,
                    counts.change_declaration,
                    counts.manual,
                    counts.refused,
                    counts.failed,
                    counts.held,
                    counts.reported,
                    counts.kept
                ),
            ),
        );
        if done {
            status.phase = Some(ReviewPhase::Completed);
            status.completed_at = Some(Time(now));
            publish(
                shared,
                review,
                EventType::Normal,
                "Completed",
                &format!(
                    "campaign completed: {} removed, {} change declaration, {} manual, {} \
                     refused",
                    counts.removed, counts.change_declaration, counts.manual, counts.refused
                ),
            )
            .await;
        }
    }
    write_status(shared, review, &status).await?;
    if status.phase == Some(ReviewPhase::Completed) {
        return Ok(None);
    }
    let mut wait = shared.settings.recheck;
    if !overdue {
        wait = wait.min(now.duration_until(due).unsigned_abs());
    } else if status.outcomes.is_some_and(|o| o.failed > 0 || o.held > 0) {
        wait = shared.settings.retry_delay;
    }
    Ok(Some(wait))
}

/// A recurring campaign's successor: created once its period comes (exactly once: found by
/// the label naming this campaign's uid, or by its deterministic name) and recorded in
/// `status.next`. Returns how long until the next period, while it has not come.
async fn create_successor(
    shared: &Shared,
    review: &AccessReview,
    status: &mut AccessReviewStatus,
    now: Timestamp,
) -> Result<Option<Duration>> {
    if status.next.is_some() {
        return Ok(None);
    }
    let condition = |ok: bool, reason: &str, message: String| {
        review_condition(review, now, ConditionType::Recurring, ok, reason, message)
    };
    let (start_at, period, spec) = match recurrence::next(&review.spec, now) {
        Ok(None) => return Ok(None),
        Ok(Some(Next::WaitUntil(at))) => {
            let message = format!("the next campaign is created at {at}");
            set_condition(&mut status.conditions, condition(false, "NotDue", message));
            return Ok(Some(now.duration_until(at).unsigned_abs()));
        }
        Ok(Some(Next::Create {
            start_at,
            period,
            spec,
        })) => (start_at, period, spec),
        Err(why) => {
            refuse_recurrence(
                shared,
                review,
                status,
                condition(false, "InvalidRecurrence", why),
            )
            .await;
            return Ok(None);
        }
    };
    let uid = review.uid().unwrap_or_default();
    let api: Api<AccessReview> = Api::namespaced(
        shared.ctx.kube.clone(),
        &review.namespace().unwrap_or_default(),
    );
    let by_label = ListParams::default().labels(&format!("{PREVIOUS_UID_LABEL}={uid}"));
    let name = match api.list(&by_label).await?.items.first() {
        Some(found) => found.name_any(),
        None => {
            let labels = review.labels();
            let series = recurrence::series(
                &review.name_any(),
                labels.get(SERIES_LABEL).map(String::as_str),
            );
            let name = recurrence::successor_name(&series, start_at, period);
            let mut successor = AccessReview::new(&name, *spec);
            successor.metadata.labels = Some(BTreeMap::from([
                (SERIES_LABEL.to_owned(), series),
                (PREVIOUS_UID_LABEL.to_owned(), uid.clone()),
            ]));
            match api.create(&PostParams::default(), &successor).await {
                Ok(_) => {
                    let message =
                        format!("created AccessReview {name}, the campaign starting at {start_at}");
                    publish(
                        shared,
                        review,
                        EventType::Normal,
                        "NextCampaignCreated",
                        &message,
                    )
                    .await;
                }
                // Another replica's (or an interrupted round's) create won, or the name is
                // someone else's: only the label tells (a list, so no `get` grant is needed).
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    if api.list(&by_label).await?.items.is_empty() {
                        let why = format!(
                            "AccessReview {name} exists and is not this campaign's successor; \
                             rename or delete it"
                        );
                        refuse_recurrence(
                            shared,
                            review,
                            status,
                            condition(false, "NextNameTaken", why),
                        )
                        .await;
                        return Ok(Some(shared.settings.recheck));
                    }
                }
                Err(e) => return Err(e.into()),
            }
            name
        }
    };
    let message = format!("the next campaign is AccessReview {name}");
    set_condition(
        &mut status.conditions,
        condition(true, "NextCreated", message),
    );
    status.next = Some(name);
    Ok(None)
}

/// A condition of the review, observed now.
fn review_condition(
    review: &AccessReview,
    now: Timestamp,
    type_: ConditionType,
    ok: bool,
    reason: &str,
    message: String,
) -> Condition {
    let state = if ok {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    let generation = review.metadata.generation;
    new_condition(type_, state, reason, message, generation, Time(now))
}

/// Records why no successor can be created, with a Warning Event the first time.
async fn refuse_recurrence(
    shared: &Shared,
    review: &AccessReview,
    status: &mut AccessReviewStatus,
    refusal: Condition,
) {
    let known = status.conditions.iter().any(|c| {
        c.type_ == refusal.type_ && c.reason == refusal.reason && c.message == refusal.message
    });
    if !known {
        publish(
            shared,
            review,
            EventType::Warning,
            &refusal.reason,
            &refusal.message,
        )
        .await;
    }
    set_condition(&mut status.conditions, refusal);
}

/// Freezes the items from the connector's index into chunks and records them in `status`;
/// `None` while the connector has no index.
async fn freeze_items(
    shared: &Shared,
    review: &AccessReview,
    status: &mut AccessReviewStatus,
) -> Result<Option<Vec<ReviewItem>>> {
    let ns = review.namespace().unwrap_or_default();
    let connector = &review.spec.connector_ref.name;
    let Some(ix) = index::lookup(&shared.ctx.clients, &ConnectorKey::new(&ns, connector)) else {
        return Ok(None);
    };
    let snapshot = ix.snapshot();
    // Of the snapshot's JSON as the operator serialises it: the same data always gets the
    // same digest, and a changed snapshot a different one.
    let bytes = serde_json::to_vec(&snapshot).unwrap_or_default();
    let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
    let scope = ReviewScope {
        groups: review.spec.groups.clone(),
        include_roles: review.spec.include_roles,
    };
    let mut items = freeze(&snapshot, &scope);
    drop(snapshot);
    let memberships = Api::<GroupMembership>::namespaced(shared.ctx.kube.clone(), &ns)
        .list(&ListParams::default())
        .await?;
    decide::mark_declared(&mut items, &declared(&memberships.items, connector));

    let chunks = chunk_api(shared, review);
    for old in own_chunks(&chunks, review).await? {
        chunks
            .delete(&old.name_any(), &DeleteParams::default())
            .await?;
    }
    let owner = OwnerReference {
        api_version: AccessReview::api_version(&()).into_owned(),
        kind: AccessReview::kind(&()).into_owned(),
        name: review.name_any(),
        uid: review.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let mut count = 0;
    for (index, part) in items.chunks(ITEMS_PER_CHUNK).enumerate() {
        let mut chunk = AccessReviewChunk::new(
            &chunk_name(review, index),
            AccessReviewChunkSpec {
                review: review.name_any(),
                index: i32::try_from(index).unwrap_or(i32::MAX),
                snapshot_digest: digest.clone(),
                items: part.to_vec(),
            },
        );
        chunk.metadata.owner_references = Some(vec![owner.clone()]);
        chunk.metadata.labels = Some(BTreeMap::from([(
            REVIEW_UID_LABEL.to_owned(),
            owner.uid.clone(),
        )]));
        chunks.create(&PostParams::default(), &chunk).await?;
        count += 1;
    }
    status.snapshot_digest = Some(digest);
    status.snapshot_synced_at = Some(Time(ix.synced_at));
    status.frozen_at = Some(Time(Timestamp::now()));
    status.items = Some(items.len() as i64);
    status.chunks = Some(count);
    Ok(Some(items))
}

/// Which memberships of the connector's groups a GroupMembership in the namespace declares,
/// keyed by (group id, user id), from their statuses (the operator's record of who is a
/// member because of which object).
fn declared(
    memberships: &[GroupMembership],
    connector: &str,
) -> HashMap<(String, String), DeclaredBy> {
    let mut out = HashMap::new();
    for gm in memberships
        .iter()
        .filter(|gm| gm.spec.connector_ref.name == connector)
    {
        let Some(status) = &gm.status else { continue };
        let Some(group_id) = &status.group_id else {
            continue;
        };
        for user in &status.users {
            if let (Some(user_id), Some(origin), UserMembershipState::Granted) =
                (&user.user_id, user.origin, user.state)
            {
                out.entry((group_id.clone(), user_id.clone()))
                    .or_insert_with(|| DeclaredBy {
                        membership: gm.name_any(),
                        origin,
                    });
            }
        }
    }
    out
}

fn chunk_api(shared: &Shared, review: &AccessReview) -> Api<AccessReviewChunk> {
    Api::namespaced(
        shared.ctx.kube.clone(),
        &review.namespace().unwrap_or_default(),
    )
}

/// `<review>-<index>`.
pub fn chunk_name(review: &AccessReview, index: usize) -> String {
    format!("{}-{index}", review.name_any())
}

/// The chunks the review owns, sorted by index.
pub async fn own_chunks(
    api: &Api<AccessReviewChunk>,
    review: &AccessReview,
) -> kube::Result<Vec<AccessReviewChunk>> {
    let uid = review.uid().unwrap_or_default();
    let mut chunks = api
        .list(&ListParams::default().labels(&format!("{REVIEW_UID_LABEL}={uid}")))
        .await?
        .items;
    chunks.retain(|c| c.owner_references().iter().any(|o| o.uid == uid));
    chunks.sort_by_key(|c| c.spec.index);
    Ok(chunks)
}

/// The frozen items, checked against what the status recorded.
async fn read_items(
    shared: &Shared,
    review: &AccessReview,
    digest: &str,
    recorded: i32,
) -> Result<Vec<ReviewItem>> {
    let chunks = own_chunks(&chunk_api(shared, review), review).await?;
    let indexes: Vec<i32> = chunks.iter().map(|c| c.spec.index).collect();
    let expected: Vec<i32> = (0..recorded).collect();
    if indexes != expected || chunks.iter().any(|c| c.spec.snapshot_digest != digest) {
        return Err(Error::Chunks {
            review: key(review),
            problem: format!(
                "expected chunks 0..{recorded} of snapshot {digest}, found indexes {indexes:?}"
            ),
        });
    }
    Ok(chunks.into_iter().flat_map(|c| c.spec.items).collect())
}

/// Lists the review's decisions, re-checks each reviewer's RBAC once, and tallies.
async fn tally(
    shared: &Shared,
    review: &AccessReview,
    items: &[ReviewItem],
) -> Result<decide::Tally> {
    let ns = review.namespace().unwrap_or_default();
    let name = review.name_any();
    let uid = review.uid().unwrap_or_default();
    let decisions: Vec<AccessReviewDecision> =
        Api::<AccessReviewDecision>::namespaced(shared.ctx.kube.clone(), &ns)
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|d| d.spec.review.name == name && d.metadata.deletion_timestamp.is_none())
            .collect();
    let mut allowed: HashMap<(&str, &[String]), bool> = HashMap::new();
    for d in decisions.iter().filter(|d| d.spec.review.uid == uid) {
        let reviewer = &d.spec.reviewer;
        let id = (reviewer.username.as_str(), reviewer.groups.as_slice());
        if allowed.contains_key(&id) {
            continue;
        }
        let permission = admission::Permission {
            resource: "accessreviews",
            namespace: Some(&ns),
            name: &name,
            verb: REVIEW_VERB,
        };
        let may = admission::subject_may(
            &shared.ctx.kube,
            &reviewer.username,
            reviewer.groups.clone(),
            permission,
        )
        .await?;
        allowed.insert(id, may);
    }
    let now = Timestamp::now();
    let facts: Vec<DecisionFacts<'_>> = decisions
        .iter()
        .map(|d| DecisionFacts {
            name: d.metadata.name.as_deref().unwrap_or_default(),
            created: d.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0),
            spec: &d.spec,
            rbac_allowed: allowed
                .get(&(
                    d.spec.reviewer.username.as_str(),
                    d.spec.reviewer.groups.as_slice(),
                ))
                .copied()
                .unwrap_or(false),
        })
        .collect();
    Ok(decide::tally(&review.spec, &uid, items, &facts))
}

/// The status entry of an item with its counted decision and (once remediated) outcome.
fn item_status(
    item: &ReviewItem,
    counted: Option<&Counted>,
    outcome: Option<(ItemOutcome, Option<String>)>,
) -> ItemStatus {
    let (outcome, detail) = outcome.unzip();
    ItemStatus {
        id: item.id.clone(),
        decision: counted.map(|c| c.decision),
        reviewer: counted.map(|c| c.reviewer.clone()),
        decided_at: counted.map(|c| Time(c.at)),
        decided_by: counted.map(|c| c.name.clone()),
        outcome,
        detail: detail.flatten(),
    }
}

/// Before the due time: each chunk's status lists the counted decisions of its items.
async fn record_decisions(
    shared: &Shared,
    review: &AccessReview,
    items: &[ReviewItem],
    by_item: &HashMap<String, Counted>,
) -> Result<()> {
    let api = chunk_api(shared, review);
    let existing = own_chunks(&api, review).await?;
    for (index, part) in items.chunks(ITEMS_PER_CHUNK).enumerate() {
        let status = AccessReviewChunkStatus {
            items: part
                .iter()
                .filter_map(|i| by_item.get(&i.id).map(|c| item_status(i, Some(c), None)))
                .collect(),
        };
        write_chunk_status(
            &api,
            existing.get(index),
            &chunk_name(review, index),
            &status,
        )
        .await?;
    }
    Ok(())
}

/// From the due time: the outcome of every item, written chunk by chunk. Items whose recorded
/// outcome is final are not touched again; `Failed` and `Held` ones are tried again.
async fn remediate_and_record(
    shared: &Shared,
    review: &AccessReview,
    items: &[ReviewItem],
    by_item: &HashMap<String, Counted>,
) -> Result<OutcomeCounts> {
    let api = chunk_api(shared, review);
    let existing = own_chunks(&api, review).await?;
    let recorded: HashMap<&str, &ItemStatus> = existing
        .iter()
        .filter_map(|c| c.status.as_ref())
        .flat_map(|s| s.items.iter())
        .filter(|i| i.outcome.is_some_and(ItemOutcome::is_final))
        .map(|i| (i.id.as_str(), i))
        .collect();
    let mut planned = HashMap::new();
    let mut to_remove = Vec::new();
    for item in items
        .iter()
        .filter(|i| !recorded.contains_key(i.id.as_str()))
    {
        match decide::plan(&review.spec, item, by_item.get(&item.id)) {
            Planned::Record(outcome, detail) => {
                planned.insert(item.id.as_str(), (outcome, detail));
            }
            Planned::Remove => to_remove.push(item),
        }
    }
    for (id, (outcome, detail)) in remove_revoked_memberships(shared, review, &to_remove).await? {
        planned.insert(id, (outcome, Some(detail)));
    }
    let mut counts = OutcomeCounts::default();
    for (index, part) in items.chunks(ITEMS_PER_CHUNK).enumerate() {
        let entries: Vec<ItemStatus> = part
            .iter()
            .map(|item| match recorded.get(item.id.as_str()) {
                Some(done) => (*done).clone(),
                None => item_status(
                    item,
                    by_item.get(&item.id),
                    planned.remove(item.id.as_str()),
                ),
            })
            .collect();
        for entry in &entries {
            count(&mut counts, entry.outcome);
        }
        let status = AccessReviewChunkStatus { items: entries };
        write_chunk_status(
            &api,
            existing.get(index),
            &chunk_name(review, index),
            &status,
        )
        .await?;
    }
    Ok(counts)
}

fn count(counts: &mut OutcomeCounts, outcome: Option<ItemOutcome>) {
    let slot = match outcome {
        Some(ItemOutcome::Kept) | None => &mut counts.kept,
        Some(ItemOutcome::Reported) => &mut counts.reported,
        Some(ItemOutcome::Removed) => &mut counts.removed,
        Some(ItemOutcome::AlreadyRemoved) => &mut counts.already_removed,
        Some(ItemOutcome::ChangeDeclaration) => &mut counts.change_declaration,
        Some(ItemOutcome::Manual) => &mut counts.manual,
        Some(ItemOutcome::Refused) => &mut counts.refused,
        Some(ItemOutcome::Failed) => &mut counts.failed,
        Some(ItemOutcome::Held) => &mut counts.held,
    };
    *slot += 1;
}

async fn write_chunk_status(
    api: &Api<AccessReviewChunk>,
    current: Option<&AccessReviewChunk>,
    name: &str,
    status: &AccessReviewChunkStatus,
) -> Result<()> {
    let unchanged = current
        .and_then(|c| c.status.as_ref())
        .map_or(status.items.is_empty(), |s| s == status);
    if !unchanged {
        crate::controller::apply_status(api, name, status).await?;
    }
    Ok(())
}

/// Each group's live members and type, read once per round from Okta.
#[derive(Default)]
struct LiveGroups(HashMap<String, okta::Result<(bool, HashSet<String>)>>);

/// The one place a review removes access in Okta. Each item must pass the guard rails
/// ([`check_removal`]: the connector is not suspended, has credentials and a snapshot, allows
/// provisioning; the group is an `OKTA_GROUP` now and the user still a member by a live
/// read); then the connector's mass-revocation circuit breaker
/// ([`RevocationBreaker::request`](crate::controller::runtime::breaker::RevocationBreaker::request),
/// shared with the membership reconciler) says how many of those may go now, and the rest are
/// `Held`. Returns each item's outcome and detail.
async fn remove_revoked_memberships<'a>(
    shared: &Shared,
    review: &AccessReview,
    items: &[&'a ReviewItem],
) -> Result<Vec<(&'a str, (ItemOutcome, String))>> {
    let ns = review.namespace().unwrap_or_default();
    let key = ConnectorKey::new(&ns, &review.spec.connector_ref.name);
    let mut live = LiveGroups::default();
    let mut outcomes = Vec::with_capacity(items.len());
    let mut ready = Vec::new();
    for item in items {
        match check_removal(shared, &key, &mut live, item).await {
            Ok(client) => ready.push((*item, client)),
            Err(outcome) => outcomes.push((item.id.as_str(), outcome)),
        }
    }
    // Asked even with nothing to remove, so a review that held removals before stops
    // counting as holding them.
    let connector: Api<OktaCiamConnector> = Api::namespaced(shared.ctx.kube.clone(), &ns);
    let (limit, release) = match connector.get_opt(&key.name).await? {
        Some(c) => (
            c.spec.max_revocations_per_hour(),
            c.annotations().get(RELEASE_ANNOTATION).cloned(),
        ),
        // Gone since the guard rails looked: nothing may be removed through it.
        None => (0, None),
    };
    let requester = format!("AccessReview {ns}/{}", review.name_any());
    let breaker = shared.ctx.clients.revocations();
    let now = Timestamp::now();
    let allowance = breaker
        .request(
            &key,
            &RemovalRequest {
                requester: &requester,
                wanted: ready.len(),
                limit,
                release: release.as_deref(),
            },
            now,
        )
        .await;
    shared.ctx.metrics.set_revocations_held(
        &key.namespace,
        &key.name,
        breaker.state(&key, now).held,
    );
    for (position, (item, client)) in ready.into_iter().enumerate() {
        let outcome = if position < allowance.allowed {
            remove_member(&client, item).await
        } else {
            (
                ItemOutcome::Held,
                format!(
                    "held: connector {} reached safety.maxRevocationsPerHour ({limit}); give \
                     annotation {RELEASE_ANNOTATION} a new value to release",
                    key.name
                ),
            )
        };
        outcomes.push((item.id.as_str(), outcome));
    }
    Ok(outcomes)
}

/// The guard rails of one removal and the live re-read of its group: the client to remove
/// with, or the item's outcome when there is nothing to remove (or it may not be).
async fn check_removal(
    shared: &Shared,
    connector: &ConnectorKey,
    live: &mut LiveGroups,
    item: &ReviewItem,
) -> std::result::Result<okta::OktaClient, (ItemOutcome, String)> {
    let refused = |why: String| Err((ItemOutcome::Refused, why));
    let Some(ix) = index::lookup(&shared.ctx.clients, connector) else {
        return refused(format!(
            "connector {} has no snapshot or credentials",
            connector.name
        ));
    };
    if ix.facts.suspended {
        return refused(format!("connector {} is suspended", connector.name));
    }
    if !ix.facts.provisioning {
        return refused(format!(
            "connector {} does not allow provisioning",
            connector.name
        ));
    }
    let Some(client) = shared.ctx.clients.client(connector) else {
        return refused(format!("connector {} has no credentials", connector.name));
    };
    if item.group_type.as_deref() != Some("OKTA_GROUP") {
        return refused(format!("group {} is not an OKTA_GROUP", item.target_name));
    }
    let group = &item.target_id;
    if !live.0.contains_key(group) {
        let read = async {
            let g = client.get_group(group).await?;
            let members = lookup::members(&client, group).await?;
            Ok((
                g.group_type == okta::GroupType::OktaGroup,
                members.into_iter().collect(),
            ))
        }
        .await;
        live.0.insert(group.clone(), read);
    }
    match &live.0[group] {
        Err(okta::Error::NotFound(_)) => Err((
            ItemOutcome::AlreadyRemoved,
            format!("group {} no longer exists", item.target_name),
        )),
        Err(e) => Err((ItemOutcome::Failed, e.stable_text())),
        Ok((false, _)) => refused(format!(
            "group {} is no longer an OKTA_GROUP",
            item.target_name
        )),
        Ok((true, members)) if !members.contains(&item.user_id) => Err((
            ItemOutcome::AlreadyRemoved,
            format!("{} was no longer a member", item.user_login),
        )),
        Ok(_) => Ok(client),
    }
}

/// Removes the item's user from its group (a membership already gone counts as removed).
async fn remove_member(client: &okta::OktaClient, item: &ReviewItem) -> (ItemOutcome, String) {
    match client
        .remove_group_member(&item.target_id, &item.user_id)
        .await
    {
        Ok(()) | Err(okta::Error::NotFound(_)) => (
            ItemOutcome::Removed,
            format!("removed {} from {}", item.user_login, item.target_name),
        ),
        Err(e) => (ItemOutcome::Failed, e.stable_text()),
    }
}

async fn write_status(
    shared: &Shared,
    review: &AccessReview,
    status: &AccessReviewStatus,
) -> Result<()> {
    if review.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<AccessReview> = Api::namespaced(
        shared.ctx.kube.clone(),
        &review.namespace().unwrap_or_default(),
    );
    crate::controller::apply_status(&api, &review.name_any(), status).await?;
    Ok(())
}

/// Publishes an Event on the review; a failed Event is logged, never fails the round.
async fn publish(
    shared: &Shared,
    review: &AccessReview,
    type_: EventType,
    reason: &str,
    message: &str,
) {
    let event = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(message.chars().take(1000).collect()),
        action: "Review".to_owned(),
        secondary: None,
    };
    if let Err(err) = shared
        .recorder
        .publish(&event, &review.object_ref(&()))
        .await
    {
        tracing::warn!(review = %key(review), error = %err, "cannot publish Event");
    }
}
