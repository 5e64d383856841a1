//! The facts of the grant-policy gate ([`check_grant_policy`](super::decide::check_grant_policy)) and where they come
//! from: every `AccessPolicy` and every namespace's labels, kept in watch caches for the
//! leadership term (a change to a policy, or to a namespace's labels, re-reconciles every
//! membership); the `AccessRequest` that owns a membership, read by name; and the Okta admin
//! roles of the declared group, from the connector's index (its last sync) or, for a group
//! the index does not know, from Okta.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::decide::{GroupRoles, PolicyFacts, RequestGrant, StandingPolicy};
use crate::controller::connector::index::ConnectorIndex;
use crate::crd::{AccessPhase, AccessPolicy, AccessRequest, GroupMembership};
use crate::okta::{DomainPolicy, OktaClient, OrgDomain};
use futures::StreamExt;

/// How long a round that may grant waits for the caches' first listing; past it, its grants
/// wait (`Pending`) for a later round.
const AWAIT_LISTED: Duration = Duration::from_secs(30);

/// The term's caches of policies and namespaces.
#[derive(Clone)]
pub(super) struct PolicyCaches {
    policies: Store<AccessPolicy>,
    namespaces: Store<Namespace>,
}

impl PolicyCaches {
    /// Starts both watches for the term (they stop with it). The receiver changes whenever a
    /// policy changes or a namespace's labels do, after the first listing.
    pub(super) fn start(kube: &Client, term: &CancellationToken) -> (Self, watch::Receiver<u64>) {
        let (changed, rx) = watch::channel(0u64);
        let (policies, policy_writer) = reflector::store();
        let (namespaces, namespace_writer) = reflector::store();
        let policy_events = watcher(
            Api::<AccessPolicy>::all(kube.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(policy_writer);
        let namespace_events = watcher(
            Api::<Namespace>::all(kube.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(namespace_writer);
        let bump = changed.clone();
        let mut listed = false;
        spawn_until(
            term,
            policy_events.for_each(move |event| {
                match event {
                    Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => bump_on(&bump),
                    // A re-list may hide changes made while the watch was down.
                    Ok(watcher::Event::InitDone) if listed => bump_on(&bump),
                    Ok(watcher::Event::InitDone) => listed = true,
                    _ => {}
                }
                futures::future::ready(())
            }),
        );
        // Only label changes of known namespaces matter: a new namespace has no memberships yet.
        let mut labels: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        let mut relabelled_while_relisting = false;
        spawn_until(
            term,
            namespace_events.for_each(move |event| {
                let mut relabelled = |ns: &Namespace| {
                    let now = ns.labels().clone();
                    let before = labels.insert(ns.name_any(), now.clone());
                    before.is_some_and(|b| b != now)
                };
                match event {
                    Ok(watcher::Event::Apply(ns)) if relabelled(&ns) => bump_on(&changed),
                    Ok(watcher::Event::InitApply(ns)) => {
                        relabelled_while_relisting |= relabelled(&ns);
                    }
                    Ok(watcher::Event::InitDone)
                        if std::mem::take(&mut relabelled_while_relisting) =>
                    {
                        bump_on(&changed);
                    }
                    _ => {}
                }
                futures::future::ready(())
            }),
        );
        (
            PolicyCaches {
                policies,
                namespaces,
            },
            rx,
        )
    }

    /// Waits (bounded) until both caches have listed once; false when they have not.
    pub(super) async fn listed(&self) -> bool {
        let both = async {
            self.policies.wait_until_ready().await.is_ok()
                && self.namespaces.wait_until_ready().await.is_ok()
        };
        tokio::time::timeout(AWAIT_LISTED, both)
            .await
            .unwrap_or(false)
    }

    /// The gate's facts for one round; `request` and `group_roles` as found by the round.
    pub(super) fn facts(
        &self,
        gm: &GroupMembership,
        require_policy: bool,
        domain: Option<String>,
        domain_policy: &DomainPolicy,
        request: Option<RequestGrant>,
        group_roles: GroupRoles,
    ) -> PolicyFacts {
        let namespace = gm.namespace().unwrap_or_default();
        let namespace_labels = self
            .namespaces
            .get(&reflector::ObjectRef::new(&namespace))
            .map(|ns| ns.labels().clone())
            .unwrap_or_default();
        let standing = self
            .policies
            .state()
            .iter()
            .filter_map(|p| {
                let rules = p.spec.standing.clone()?;
                let domain = OrgDomain::parse(&rules.domain, domain_policy)
                    .ok()
                    .map(|d| d.to_string());
                Some(StandingPolicy {
                    policy: p.name_any(),
                    domain,
                    rules,
                })
            })
            .collect();
        PolicyFacts {
            require_policy,
            namespace,
            namespace_labels,
            connector: gm.spec.connector_ref.name.clone(),
            domain,
            standing,
            request,
            group_roles,
            undecided: None,
        }
    }

    /// The `AccessRequest` that owns `gm` (its controller owner reference, same uid), with
    /// its policy's `requests` section from the cache; `None` when no request owns it.
    pub(super) async fn request_of(
        &self,
        kube: &Client,
        gm: &GroupMembership,
    ) -> kube::Result<Option<RequestGrant>> {
        let kind = AccessRequest::kind(&());
        let api_version = AccessRequest::api_version(&());
        let Some(owner) = gm
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true) && o.kind == kind && o.api_version == api_version)
        else {
            return Ok(None);
        };
        let api: Api<AccessRequest> =
            Api::namespaced(kube.clone(), &gm.namespace().unwrap_or_default());
        let Some(request) = api.get_opt(&owner.name).await? else {
            return Ok(None);
        };
        if request.uid().as_deref() != Some(owner.uid.as_str()) {
            return Ok(None);
        }
        let status = request.status.clone().unwrap_or_default();
        let rules = self
            .policies
            .get(&reflector::ObjectRef::new(&request.spec.policy))
            .and_then(|p| p.spec.requests.clone());
        Ok(Some(RequestGrant {
            request: request.name_any(),
            granting: matches!(
                status.phase,
                Some(AccessPhase::Approved | AccessPhase::Active)
            ),
            group: request.spec.group.clone(),
            user: status.okta_user,
            rules,
        }))
    }
}

fn bump_on(changed: &watch::Sender<u64>) {
    changed.send_modify(|n| *n = n.wrapping_add(1));
}

/// Drives `work` until the term ends.
fn spawn_until(
    term: &CancellationToken,
    work: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let term = term.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = work => {}
            () = term.cancelled() => {}
        }
    });
}

/// The admin roles `group_id` holds: from the connector's index when it knows the group (the
/// sync reads group-held roles completely), else one read from Okta
/// (`GET /api/v1/groups/{id}/roles`); [`GroupRoles::Unknown`] when that read fails.
pub(super) async fn group_roles(
    index: Option<&ConnectorIndex>,
    client: &OktaClient,
    group_id: &str,
) -> GroupRoles {
    if let Some(ix) = index.filter(|ix| ix.group(group_id).is_some()) {
        return held(ix.group_roles(group_id).to_vec());
    }
    match client.list_group_roles(group_id).await {
        Ok(assignments) => held(
            assignments
                .into_iter()
                .map(|a| match (a.role, a.label) {
                    // A custom role's `type` is always CUSTOM: name it by label, else id.
                    (Some(id), label) if a.role_type.eq_ignore_ascii_case("CUSTOM") => {
                        label.unwrap_or(id)
                    }
                    _ => a.role_type,
                })
                .collect(),
        ),
        Err(e) => {
            tracing::warn!(group = %group_id, error = %e, "reading the group's admin roles failed");
            GroupRoles::Unknown
        }
    }
}

fn held(mut roles: Vec<String>) -> GroupRoles {
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() {
        GroupRoles::NoRole
    } else {
        GroupRoles::Held(roles)
    }
}
