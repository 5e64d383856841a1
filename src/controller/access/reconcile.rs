//! The `AccessRequest` reconciler: gathers the facts (policy, connector, admission policy,
//! approvals, each approver's RBAC now, the request's GroupMembership), asks
//! [`decide`](super::decide) and performs the outcome: creates the GroupMembership owned by
//! the request, deletes it when the request is deleted, applies the status, publishes Events.
//!
//! Triggers: the requests, their AccessApprovals, their GroupMemberships, and a periodic
//! re-check of undecided and granting requests ([`Settings::recheck`]), which is how an
//! installed (or removed) admission policy, a new AccessPolicy or an approver's changed RBAC
//! are noticed. Writes happen only while this replica leads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::decide::{self, Input, Membership, Vote};
use crate::controller::admission;
use crate::controller::membership::decide::EventType;
use crate::controller::runtime::Context;
use crate::controller::runtime::controllers::{CachesSynced, run_kind, run_terms, watched_apis};
use crate::controller::runtime::metrics::ReconcileResult;
use crate::crd::condition::{find_condition, is_true};
use crate::crd::{
    AccessApproval, AccessPhase, AccessPolicy, AccessRequest, AccessRequestStatus, ConditionType,
    FIELD_MANAGER, GroupMembership, OktaCiamConnector,
};

/// The finalizer on every `AccessRequest`: its grant is revoked before it goes.
pub const FINALIZER: &str = "oktaciam.io/access-request";

/// The label on each GroupMembership an AccessRequest created, naming the request.
pub const REQUEST_LABEL: &str = "oktaciam.io/access-request";

/// The RBAC verb an approver needs on the request's `AccessPolicy`.
pub const APPROVE_VERB: &str = "approve";

/// Errors of the access request reconciler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// The request is being deleted and its GroupMembership is still revoking.
    #[error("waiting for GroupMembership {0} to be revoked")]
    Revoking(String),
    /// The leadership term ended during the round.
    #[error("leadership lost during the round")]
    LostLeadership,
}

/// Result of the access request reconciler.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Tunables of [`run_with`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Longest time between two rounds of a request that is not final (pending or granting).
    pub recheck: Duration,
    /// Delay before retrying a failed round.
    pub retry_delay: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            recheck: Duration::from_secs(30),
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
    let approvals = watched_apis::<AccessApproval>(ctx);
    let memberships = watched_apis::<GroupMembership>(ctx);
    let controllers: Vec<Controller<AccessRequest>> = watched_apis::<AccessRequest>(ctx)
        .into_iter()
        .zip(approvals.into_iter().zip(memberships))
        .map(|(requests, (approvals, memberships))| {
            Controller::new(requests, watcher::Config::default())
                .owns(memberships, watcher::Config::default())
                .watches(
                    approvals,
                    watcher::Config::default(),
                    |a: AccessApproval| {
                        let ns = a.namespace()?;
                        Some(ObjectRef::new(&a.spec.request.name).within(&ns))
                    },
                )
                .graceful_shutdown_on(term.clone().cancelled_owned())
        })
        .collect();
    run_kind(
        "access request",
        controllers,
        reconcile,
        error_policy,
        shared,
        &term,
        move || synced.fire(),
    )
    .await;
}

fn key(req: &AccessRequest) -> String {
    format!("{}/{}", req.namespace().unwrap_or_default(), req.name_any())
}

fn error_policy(req: Arc<AccessRequest>, error: &Error, shared: Arc<Shared>) -> Action {
    match error {
        Error::Revoking(_) => tracing::debug!(request = %key(&req), %error, "waiting"),
        _ => tracing::warn!(request = %key(&req), %error, "access request round failed"),
    }
    Action::requeue(shared.settings.retry_delay)
}

async fn reconcile(req: Arc<AccessRequest>, shared: Arc<Shared>) -> Result<Action> {
    let started = std::time::Instant::now();
    let ns = req.namespace().unwrap_or_default();
    let api: Api<AccessRequest> = Api::namespaced(shared.ctx.kube.clone(), &ns);
    let work = finalizer::finalizer(&api, FINALIZER, req, |event| async {
        match event {
            Finalizer::Apply(req) => round(&req, &shared, false).await,
            Finalizer::Cleanup(req) => round(&req, &shared, true).await,
        }
    });
    let result = tokio::select! {
        r = work => r.map_err(|e| match e {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(Box::new(other)),
        }),
        () = shared.term.cancelled() => Err(Error::LostLeadership),
    };
    let outcome = match &result {
        Ok(_) | Err(Error::Revoking(_)) => ReconcileResult::Success,
        Err(_) => ReconcileResult::Error,
    };
    shared
        .ctx
        .metrics
        .record_reconcile("AccessRequest", outcome, started.elapsed());
    result
}

/// One round. `deleting`: the request is going; the round must end with its grant revoked
/// (an `Ok` lets the finalizer go).
async fn round(req: &AccessRequest, shared: &Shared, deleting: bool) -> Result<Action> {
    let kube = &shared.ctx.kube;
    let ns = req.namespace().unwrap_or_default();
    let name = req.name_any();
    let uid = req.uid().unwrap_or_default();
    let previous = req.status.clone().unwrap_or_default();
    let final_phase = matches!(
        previous.phase,
        Some(
            AccessPhase::Denied | AccessPhase::Expired | AccessPhase::Revoked | AccessPhase::Failed
        )
    );
    let gm_name = decide::membership_name(&name);
    let gms: Api<GroupMembership> = Api::namespaced(kube.clone(), &ns);
    let membership = membership_facts(gms.get_opt(&gm_name).await?, &uid);
    if final_phase && !deleting && !matches!(membership, Membership::Owned { .. }) {
        return Ok(Action::await_change());
    }
    let policy = Api::<AccessPolicy>::all(kube.clone())
        .get_opt(&req.spec.policy)
        .await?;
    // A policy with only a `standing` section allows no request: as if it did not exist.
    let rules = policy.as_ref().and_then(|p| p.spec.requests.as_ref());
    let connector = match rules {
        Some(r) => {
            Api::<OktaCiamConnector>::namespaced(kube.clone(), &ns)
                .get_opt(&r.connector_ref.name)
                .await?
        }
        None => None,
    };
    let pending = matches!(previous.phase, None | Some(AccessPhase::Pending));
    let (admission, votes) = if pending && !deleting {
        (
            admission::state(kube).await,
            votes_for(kube, &ns, &name).await?,
        )
    } else {
        (Ok(()), Vec::new())
    };
    let mut authorized = BTreeMap::new();
    if admission.is_ok() && rules.is_some() {
        for approver in decide::approvers_to_check(&votes, &uid, &req.spec) {
            let groups = votes
                .iter()
                .find(|v| v.approver == approver)
                .map(|v| v.approver_groups.clone())
                .unwrap_or_default();
            let permission = admission::Permission {
                resource: "accesspolicies",
                namespace: None,
                name: &req.spec.policy,
                verb: APPROVE_VERB,
            };
            let allowed = admission::subject_may(kube, &approver, groups, permission).await?;
            authorized.insert(approver, allowed);
        }
    }
    let now = Timestamp::now();
    let input = Input {
        name: &name,
        namespace: &ns,
        uid: &uid,
        spec: &req.spec,
        created: req
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0),
        previous: &previous,
        policy: rules,
        email_domains: connector.as_ref().map(|c| c.spec.email_domains.as_slice()),
        admission,
        votes: &votes,
        authorized: &authorized,
        membership: membership.clone(),
        deleting,
        now,
    };
    let out = decide::decide(&input);
    if let Some(grant) = &out.grant {
        create_membership(&gms, req, &gm_name, grant).await?;
    }
    if out.revoke {
        gms.delete(&gm_name, &DeleteParams::default()).await?;
    }
    apply_status(&Api::namespaced(kube.clone(), &ns), req, &out.status).await?;
    publish(shared, req, &out.events).await;
    if deleting {
        return if out.release {
            Ok(Action::await_change())
        } else {
            Err(Error::Revoking(gm_name))
        };
    }
    let settled = matches!(
        out.status.phase,
        Some(
            AccessPhase::Denied | AccessPhase::Expired | AccessPhase::Revoked | AccessPhase::Failed
        )
    );
    if settled {
        return Ok(Action::await_change());
    }
    let mut wait = shared.settings.recheck;
    if let Some(at) = out.requeue_at {
        let until = now.duration_until(at).unsigned_abs();
        wait = wait.min(until);
    }
    Ok(Action::requeue(wait))
}

fn membership_facts(gm: Option<GroupMembership>, uid: &str) -> Membership {
    let Some(gm) = gm else {
        return Membership::Absent;
    };
    if !gm.owner_references().iter().any(|o| o.uid == uid) {
        return Membership::Foreign;
    }
    let status = gm.status.unwrap_or_default();
    Membership::Owned {
        ready: is_true(&status.conditions, ConditionType::Ready),
        expired: is_true(&status.conditions, ConditionType::Expired),
        expires_at: status.expires_at.map(|t| t.0),
        message: find_condition(&status.conditions, ConditionType::Ready)
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "waiting for the GroupMembership".to_owned()),
    }
}

async fn votes_for(kube: &kube::Client, ns: &str, request: &str) -> Result<Vec<Vote>> {
    let list = Api::<AccessApproval>::namespaced(kube.clone(), ns)
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|a| a.spec.request.name == request && a.metadata.deletion_timestamp.is_none())
        .map(|a| Vote {
            request_uid: a.spec.request.uid,
            policy: a.spec.policy,
            decision: a.spec.decision,
            approver: a.spec.approver.username,
            approver_groups: a.spec.approver.groups,
        })
        .collect())
}

async fn create_membership(
    gms: &Api<GroupMembership>,
    req: &AccessRequest,
    name: &str,
    grant: &decide::Grant,
) -> Result<()> {
    let owner = OwnerReference {
        api_version: AccessRequest::api_version(&()).into_owned(),
        kind: AccessRequest::kind(&()).into_owned(),
        name: req.name_any(),
        uid: req.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let body = json!({
        "apiVersion": GroupMembership::api_version(&()),
        "kind": GroupMembership::kind(&()),
        "metadata": {
            "name": name,
            "labels": {REQUEST_LABEL: req.name_any()},
            "ownerReferences": [owner],
        },
        "spec": {
            "connectorRef": {"name": grant.connector},
            "group": {"name": grant.group},
            "users": [grant.user],
            "duration": grant.duration,
            "deletionPolicy": "Revoke",
        },
    });
    gms.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

async fn apply_status(
    api: &Api<AccessRequest>,
    req: &AccessRequest,
    status: &AccessRequestStatus,
) -> Result<()> {
    if req.status.as_ref() == Some(status) {
        return Ok(());
    }
    crate::controller::apply_status(api, &req.name_any(), status).await?;
    Ok(())
}

/// Publishes the round's Events; a failed Event is logged, never fails the round.
async fn publish(shared: &Shared, req: &AccessRequest, events: &[decide::Event]) {
    let reference = req.object_ref(&());
    for e in events {
        let event = KubeEvent {
            type_: match e.event_type {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: e.reason.to_owned(),
            note: Some(e.message.chars().take(1000).collect()),
            action: "Decide".to_owned(),
            secondary: None,
        };
        if let Err(err) = shared.recorder.publish(&event, &reference).await {
            tracing::warn!(request = %key(req), error = %err, "cannot publish Event");
        }
    }
}
