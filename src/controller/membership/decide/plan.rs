//! The decision proper ([`decide`]): open the gates, let go of what this object no longer
//! holds, hold or grant what it declares, then lay out the status rows.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::report::name_a_few;
use super::{
    DeletionPolicy, Expiry, GroupLookup, GroupRecord, Input, Lifecycle, OktaUser, Origin,
    Ownership, Reason, Refusal, UserLookup, UserState, UserStatus, check_connector,
    check_grant_policy, check_group_for, check_group_to_let_go, check_operator, check_revocation,
    check_user, is_expired, lost_grants,
};

/// What the plan does for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// No Okta write.
    Keep,
    /// PUT; `drift` when the membership was confirmed before and vanished outside the operator.
    Grant { drift: bool },
    /// DELETE.
    Revoke,
}

/// What one user's row says once its `action` succeeds.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub(super) state: UserState,
    pub(super) origin: Option<Origin>,
    pub(super) reason: Reason,
    pub(super) message: String,
    pub(super) action: Action,
}

impl Planned {
    /// A row that needs no Okta write.
    fn keep(state: UserState, origin: Option<Origin>, reason: Reason, message: String) -> Self {
        Planned {
            state,
            origin,
            reason,
            message,
            action: Action::Keep,
        }
    }
}

/// One status row as planned.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) user: String,
    pub(super) user_id: Option<String>,
    /// False for a removed entry still being let go.
    pub(super) declared: bool,
    pub(super) planned: Planned,
}

/// The writes one round must make, and the record to persist before making them.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The resolved Okta group id (for `status.groupId`), when the group was found.
    pub group_id: Option<String>,
    /// User ids to add: `PUT /api/v1/groups/{groupId}/users/{userId}`.
    pub grants: Vec<String>,
    /// User ids to remove: `DELETE /api/v1/groups/{groupId}/users/{userId}`.
    pub revokes: Vec<String>,
    /// The ownership record to persist **before** any write when it differs from the input.
    pub record: GroupRecord,
    pub(super) rows: Vec<Row>,
    pub(super) group_label: String,
    pub(super) owner: String,
    pub(super) deleting: bool,
    pub(super) expiry: Expiry,
    pub(super) expired: bool,
    pub(super) effective_since: Option<Timestamp>,
    pub(super) previous: Vec<UserStatus>,
    pub(super) now: Timestamp,
    /// User ids whose grant the record had lost ([`lost_grants`]); the plan's record holds
    /// them again.
    pub lost_ownership: Vec<String>,
    /// Some revocations were held back ([`Plan::hold_revocations`]): the round retries.
    pub(super) held: bool,
}

impl Plan {
    /// Whether the round makes any Okta write.
    pub fn has_writes(&self) -> bool {
        !self.grants.is_empty() || !self.revokes.is_empty()
    }

    /// Holds back the revocations of `held` (user ids of [`Plan::revokes`]) that the
    /// connector's circuit breaker did not allow: no DELETE is made, their claims stay in the
    /// record, their rows say `RevocationHeld` with `why`, and the round retries later.
    pub fn hold_revocations(&mut self, held: &BTreeSet<String>, why: &str) {
        if held.is_empty() {
            return;
        }
        self.revokes.retain(|id| !held.contains(id));
        for row in &mut self.rows {
            let p = &mut row.planned;
            if p.action == Action::Revoke
                && row.user_id.as_ref().is_some_and(|id| held.contains(id))
            {
                p.action = Action::Keep;
                p.state = UserState::Pending;
                p.reason = Reason::RevocationHeld;
                p.message = why.to_string();
                self.held = true;
            }
        }
    }
}

/// A declared entry with what the gates say about it.
struct Resolved<'a> {
    user: &'a str,
    /// The user id: from the lookup, or from the previous status when the lookup failed
    /// (so a transient lookup failure never reads as "no longer declared").
    id: Option<&'a str>,
    verdict: Result<&'a OktaUser, Refusal>,
}

fn refused_state(refusal: &Refusal) -> UserState {
    if refusal.reason == Reason::Pending {
        UserState::Pending
    } else {
        UserState::Failed
    }
}

/// A vanished group has no members.
static NO_MEMBERS: BTreeSet<String> = BTreeSet::new();

/// What every step of one decision reads: the input, the gates' verdict and the declared
/// entries resolved against them.
struct Round<'a> {
    input: &'a Input,
    owner: &'a str,
    expired: bool,
    retain: bool,
    /// When set, this object lets go of everything and declared rows end in this state.
    letting_go: Option<UserState>,
    // The grant gate (operator, connector, group) only shapes `resolved`'s verdicts.
    /// What revoking the operator's own grants needs ([`check_revocation`]): far less than
    /// granting, so narrowing the scope or turning provisioning off never strands a grant.
    revoke_gate: Result<(), Refusal>,
    /// Membership is known when the group passed either gate; a vanished group has none.
    observed: Option<&'a BTreeSet<String>>,
    group_label: String,
    previous_by_entry: BTreeMap<&'a str, &'a UserStatus>,
    previous_by_id: BTreeMap<&'a str, &'a UserStatus>,
    resolved: Vec<Resolved<'a>>,
    /// Entries whose lookup has not answered (only while live with the gates open).
    unresolved: Vec<&'a str>,
}

/// The record and writes the steps build up.
struct Draft<'a> {
    record: GroupRecord,
    grants: BTreeSet<String>,
    revokes: BTreeSet<String>,
    /// Per user id: the planned row.
    by_id: BTreeMap<&'a str, Planned>,
}

/// Decides one round for one `GroupMembership`. See the module docs for the protocol.
pub fn decide(input: &Input) -> Plan {
    let lost = lost_grants(input);
    let restored;
    let input = if lost.is_empty() {
        input
    } else {
        let mut with_lost = input.clone();
        with_lost.record.restore(lost.iter().copied(), &input.owner);
        restored = with_lost;
        &restored
    };
    let lost_ownership = lost.into_iter().map(str::to_owned).collect();
    let round = Round::new(input);
    let mut draft = Draft {
        record: input.record.clone(),
        grants: BTreeSet::new(),
        revokes: BTreeSet::new(),
        by_id: BTreeMap::new(),
    };
    round.let_go(&mut draft);
    if round.letting_go.is_none() {
        round.hold(&mut draft);
    }
    let rows = round.rows(&draft);
    let group_id = match &input.group {
        GroupLookup::Found(g) | GroupLookup::Renamed { group: g, .. } => Some(g.id.clone()),
        // Not looked up this round: what the group was resolved to stays known.
        GroupLookup::NotLookedUp => input.group_id.clone(),
        GroupLookup::NotFound => None,
    };
    Plan {
        group_id,
        grants: draft.grants.into_iter().collect(),
        revokes: draft.revokes.into_iter().collect(),
        record: draft.record,
        rows,
        group_label: round.group_label,
        owner: input.owner.clone(),
        deleting: matches!(input.lifecycle, Lifecycle::Deleting(_)),
        expiry: input.expiry,
        expired: round.expired,
        effective_since: input.effective_since,
        previous: input.previous.clone(),
        now: input.now,
        lost_ownership,
        held: false,
    }
}

impl<'a> Round<'a> {
    fn new(input: &'a Input) -> Self {
        let expired = is_expired(input.expiry, input.effective_since, input.now);
        let letting_go = if expired {
            Some(UserState::Expired)
        } else if matches!(input.lifecycle, Lifecycle::Deleting(_)) {
            Some(UserState::Revoked)
        } else {
            None
        };
        let gate = check_operator(input.provisioning)
            .and_then(|()| check_connector(input.connector.as_ref()))
            .and_then(|c| check_group_for(&input.group, c, letting_go.is_some()).map(|g| (c, g)));
        let revoke_gate = check_revocation(input.connector.as_ref())
            .and_then(|_| check_group_to_let_go(&input.group))
            .map(drop);
        let observed = match (&gate, &revoke_gate, &input.group) {
            (Ok(_), _, _) | (_, Ok(()), _) => Some(&input.members),
            (Err(_), Err(_), GroupLookup::NotFound) => Some(&NO_MEMBERS),
            (Err(_), Err(_), _) => None,
        };
        let group_label = match &input.group {
            GroupLookup::Found(g) | GroupLookup::Renamed { group: g, .. } => {
                format!("{} ({})", g.name, g.id)
            }
            GroupLookup::NotLookedUp | GroupLookup::NotFound => "the group".to_string(),
        };
        let previous_by_entry: BTreeMap<&str, &UserStatus> = input
            .previous
            .iter()
            .map(|p| (p.user.as_str(), p))
            .collect();
        let previous_by_id = input
            .previous
            .iter()
            .filter_map(|p| p.user_id.as_deref().map(|id| (id, p)))
            .collect();
        // Gates grants only: a round that lets go never asks, and a refused entry keeps its id
        // (so what it already holds is not let go; see `check_grant_policy`).
        let grant_policy = match (&gate, letting_go) {
            (Ok((_, g)), None) => check_grant_policy(&input.policy, g, &input.users),
            _ => Ok(()),
        };
        let resolved = input
            .users
            .iter()
            .map(|d| {
                let id = match &d.lookup {
                    UserLookup::Found(u) => Some(u.id.as_str()),
                    _ => previous_by_entry
                        .get(d.user.as_str())
                        .and_then(|p| p.user_id.as_deref()),
                };
                let verdict = match &gate {
                    Err(refusal) => Err(refusal.clone()),
                    Ok((c, _)) => grant_policy
                        .clone()
                        .and_then(|()| check_user(&d.user, &d.lookup, c)),
                };
                Resolved {
                    user: &d.user,
                    id,
                    verdict,
                }
            })
            .collect();
        // An entry whose lookup has not answered may name any user, including a claim that
        // the previous status never tied to it (a crash after the write-ahead record, an
        // edited entry): while one is open, a live round revokes nothing it cannot match to
        // an entry. (A closed revocation gate revokes nothing anyway, and says why.)
        let unresolved = if letting_go.is_none() && revoke_gate.is_ok() {
            input
                .users
                .iter()
                .filter(|d| d.lookup == UserLookup::NotLookedUp)
                .map(|d| d.user.as_str())
                .collect()
        } else {
            Vec::new()
        };
        Round {
            input,
            owner: &input.owner,
            expired,
            retain: input.lifecycle == Lifecycle::Deleting(DeletionPolicy::Retain),
            letting_go,
            revoke_gate,
            observed,
            group_label,
            previous_by_entry,
            previous_by_id,
            resolved,
            unresolved,
        }
    }

    /// Let go of every claim this object holds on a user it no longer holds.
    fn let_go(&self, draft: &mut Draft<'a>) {
        let held: BTreeSet<&str> = if self.letting_go.is_some() {
            BTreeSet::new()
        } else {
            self.resolved.iter().filter_map(|r| r.id).collect()
        };
        for (user_id, ownership) in &self.input.record.members {
            let user_id = user_id.as_str();
            if !ownership.claimants.contains(self.owner) || held.contains(user_id) {
                continue;
            }
            let planned = self.let_go_of(user_id, ownership, draft);
            draft.by_id.insert(user_id, planned);
        }
    }

    /// The row of one claim to let go of: revoked, released, or kept waiting.
    fn let_go_of(&self, user_id: &str, ownership: &Ownership, draft: &mut Draft<'_>) -> Planned {
        let owner = self.owner;
        let declarers: BTreeSet<&str> = self
            .input
            .others
            .iter()
            .filter(|(o, ids)| o.as_str() != owner && ids.contains(user_id))
            .map(|(o, _)| o.as_str())
            .collect();
        let co_claimants: Vec<&str> = ownership
            .claimants
            .iter()
            .map(String::as_str)
            .filter(|c| *c != owner)
            .chain(declarers.iter().copied())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let member = self.observed.map(|m| m.contains(user_id));
        let end_state = self.letting_go.unwrap_or(UserState::Revoked);
        let origin = Some(ownership.origin);
        let must_delete = !self.retain
            && ownership.origin == Origin::Granted
            && co_claimants.is_empty()
            && member != Some(false);
        if must_delete && !self.unresolved.is_empty() {
            let message = format!(
                "revocation waits until {} is looked up",
                name_a_few(self.unresolved.iter().copied())
            );
            return Planned::keep(UserState::Pending, origin, Reason::Pending, message);
        }
        if !must_delete {
            let message = if self.retain {
                "left in Okta (deletionPolicy: Retain)".to_string()
            } else if ownership.origin == Origin::Preexisting {
                "preexisting membership left in Okta".to_string()
            } else if !co_claimants.is_empty() {
                format!(
                    "left in Okta: still held by {}",
                    name_a_few(co_claimants.iter().copied())
                )
            } else {
                "no longer a member in Okta".to_string()
            };
            let reason = if member == Some(false) {
                Reason::Revoked
            } else {
                Reason::Retained
            };
            draft.record.release(user_id, owner, &declarers);
            return Planned::keep(end_state, origin, reason, message);
        }
        match &self.revoke_gate {
            Ok(()) => {
                draft.revokes.insert(user_id.to_string());
                let reason = if self.expired {
                    Reason::Expired
                } else {
                    Reason::Revoked
                };
                Planned {
                    state: end_state,
                    origin,
                    reason,
                    message: format!("removed from {}", self.group_label),
                    action: Action::Revoke,
                }
            }
            Err(refusal) => {
                let message = format!("revocation waits ({}): {}", refusal.reason, refusal.message);
                Planned::keep(
                    UserState::Failed,
                    origin,
                    Reason::RevocationWaiting,
                    message,
                )
            }
        }
    }

    /// Hold, grant or adopt every declared user the gates admit.
    fn hold(&self, draft: &mut Draft<'a>) {
        for r in &self.resolved {
            let (Some(user_id), Ok(user)) = (r.id, &r.verdict) else {
                continue;
            };
            if draft.by_id.contains_key(user_id) {
                continue;
            }
            let planned = if self.input.members.contains(&user.id) {
                self.adopt(user_id, &mut draft.record)
            } else {
                self.grant(user_id, draft)
            };
            draft.by_id.insert(user_id, planned);
        }
    }

    /// A declared user already in the group: claimed with the origin the record knows.
    fn adopt(&self, user_id: &str, record: &mut GroupRecord) -> Planned {
        let group_label = &self.group_label;
        let origin = record
            .members
            .get(user_id)
            .map_or(Origin::Preexisting, |o| o.origin);
        record.claim(user_id, self.owner, origin);
        let (reason, message) = match origin {
            Origin::Granted => (
                Reason::Granted,
                format!("member of {group_label}, granted by the operator"),
            ),
            Origin::Preexisting => (
                Reason::Preexisting,
                format!(
                    "member of {group_label} before it was declared; never removed by the operator"
                ),
            ),
        };
        Planned::keep(UserState::Granted, Some(origin), reason, message)
    }

    /// A declared user missing from the group: the write-ahead intent, claimed as Granted
    /// before the PUT is made.
    fn grant(&self, user_id: &str, draft: &mut Draft<'_>) -> Planned {
        let group_label = &self.group_label;
        let drift = self
            .previous_by_id
            .get(user_id)
            .is_some_and(|p| p.state == UserState::Granted);
        draft.record.claim(user_id, self.owner, Origin::Granted);
        draft.grants.insert(user_id.to_string());
        let message = if drift {
            format!("added to {group_label} again after a removal outside the operator")
        } else {
            format!("added to {group_label}")
        };
        Planned {
            state: UserState::Granted,
            origin: Some(Origin::Granted),
            reason: Reason::Granted,
            message,
            action: Action::Grant { drift },
        }
    }

    /// The status rows: declared entries in spec order, then removed entries still being
    /// let go, named as they were declared.
    fn rows(&self, draft: &Draft<'_>) -> Vec<Row> {
        let mut rows = Vec::with_capacity(self.resolved.len());
        let mut listed: BTreeSet<&str> = BTreeSet::new();
        for r in &self.resolved {
            let planned = match r.id.and_then(|id| draft.by_id.get(id)) {
                Some(p) => p.clone(),
                None => self.unplanned(r, &draft.record),
            };
            listed.extend(r.id);
            rows.push(Row {
                user: r.user.to_string(),
                user_id: r.id.map(str::to_string),
                declared: true,
                planned,
            });
        }
        for (user_id, planned) in &draft.by_id {
            if listed.contains(user_id) {
                continue;
            }
            let user = self
                .previous_by_id
                .get(user_id)
                .map_or(*user_id, |p| p.user.as_str());
            rows.push(Row {
                user: user.to_string(),
                user_id: Some(user_id.to_string()),
                declared: false,
                planned: planned.clone(),
            });
        }
        rows
    }

    /// The row of a declared entry neither let go of nor held: nothing held while letting
    /// go, or refused.
    fn unplanned(&self, r: &Resolved<'_>, record: &GroupRecord) -> Planned {
        match (&r.verdict, self.letting_go) {
            (_, Some(end_state)) => match self.previous_by_entry.get(r.user) {
                // Already let go in an earlier round: keep what was reported then.
                Some(p) if p.state == end_state => {
                    Planned::keep(end_state, p.origin, p.reason, p.message.clone())
                }
                _ => {
                    let reason = if self.expired {
                        Reason::Expired
                    } else {
                        Reason::Deleting
                    };
                    Planned::keep(end_state, None, reason, "no membership held".into())
                }
            },
            (Err(refusal), None) => {
                // Without the record (no connector, or no group id to locate it by) keep
                // what the previous status knew, so a later deletion still sees (and
                // reports) the claim.
                let unlocated = !self.input.record_located || self.input.connector.is_none();
                let origin =
                    r.id.and_then(|id| record.members.get(id))
                        .map(|o| o.origin)
                        .or_else(|| {
                            self.previous_by_entry
                                .get(r.user)
                                .filter(|_| unlocated)
                                .and_then(|p| p.origin)
                        });
                Planned::keep(
                    refused_state(refusal),
                    origin,
                    refusal.reason,
                    refusal.message.clone(),
                )
            }
            (Ok(_), None) => unreachable!("an admitted user always has a plan"),
        }
    }
}
