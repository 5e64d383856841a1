//! Settling a round once its writes were attempted ([`Plan::settle`]): the confirmed
//! record, the status rows, the Events and the conditions.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::plan::{Action, Row};
use super::report::{bounded, name_a_few, summarize};
use super::{
    Condition, Event, EventReason, EventType, Expiry, GroupRecord, Plan, Reason, UserState,
    UserStatus, WriteError,
};

/// Everything the reconciler writes back after a round.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `status.groupId`.
    pub group_id: Option<String>,
    /// The ownership record to persist when it differs from [`Plan::record`].
    pub record: GroupRecord,
    /// `status.users`: declared entries in spec order, then removed entries still being let go.
    pub users: Vec<UserStatus>,
    /// The `Ready` condition.
    pub ready: Condition,
    /// The `Expired` condition.
    pub expired: Condition,
    /// The `OwnershipRecordLost` condition, set (True) only by the round that found the
    /// group's ownership record had lost grants this object made ([`Plan::lost_ownership`]).
    pub ownership_lost: Option<Condition>,
    /// Events to emit.
    pub events: Vec<Event>,
    /// `status.expiresAt` (resolved).
    pub expires_at: Option<Timestamp>,
    /// When the grant first became effective (store it in status; feed it back next round).
    pub effective_since: Option<Timestamp>,
    /// Requeue exactly at this instant (the expiry), if set.
    pub requeue_at: Option<Timestamp>,
    /// A write failed: requeue with backoff.
    pub retry: bool,
    /// The object is being deleted and holds no claim any more: remove the finalizer
    /// (after the record write succeeded).
    pub remove_finalizer: bool,
}

/// The planned rows with the write failures applied.
struct Applied {
    record: GroupRecord,
    /// Rows still to report (a removed entry leaves once its claim is gone).
    rows: Vec<Row>,
    /// Entries added, added again after drift, and removed by this round's writes.
    granted: Vec<String>,
    drifted: Vec<String>,
    revoked: Vec<String>,
    retry: bool,
}

impl Plan {
    /// Completes the round once the writes were attempted. `failures` maps user ids whose
    /// PUT or DELETE failed to the error; every other planned write counts as done. Pass
    /// an empty map when the plan had no writes.
    pub fn settle(&self, failures: &BTreeMap<String, WriteError>) -> Outcome {
        let applied = self.apply(failures);
        let previous: BTreeMap<&str, &UserStatus> =
            self.previous.iter().map(|p| (p.user.as_str(), p)).collect();
        let users = self.user_statuses(&applied.rows, &previous);
        let events = self.events(&applied, &users, &previous);

        let live = !self.deleting && !self.expired;
        let declared_granted = users
            .iter()
            .zip(&applied.rows)
            .any(|(u, row)| row.declared && u.state == UserState::Granted);
        let effective_since = self
            .effective_since
            .or_else(|| (live && declared_granted).then_some(self.now));
        let expires_at = self.expiry.resolve(effective_since);
        let still_claimed = applied.record.claimed_by(&self.owner);

        Outcome {
            group_id: self.group_id.clone(),
            ready: self.ready(&users, still_claimed),
            expired: self.expired_condition(&users, expires_at, still_claimed),
            ownership_lost: self.ownership_lost_condition(),
            record: applied.record,
            users,
            events,
            expires_at,
            effective_since,
            requeue_at: if live { expires_at } else { None },
            retry: applied.retry || self.held,
            remove_finalizer: self.deleting && !still_claimed,
        }
    }

    /// The record and rows once the failed writes are taken into account.
    fn apply(&self, failures: &BTreeMap<String, WriteError>) -> Applied {
        let owner = self.owner.as_str();
        let mut applied = Applied {
            record: self.record.clone(),
            rows: Vec::with_capacity(self.rows.len()),
            granted: Vec::new(),
            drifted: Vec::new(),
            revoked: Vec::new(),
            retry: false,
        };
        for planned in &self.rows {
            let mut row = planned.clone();
            let failure = row.user_id.as_deref().and_then(|id| failures.get(id));
            let p = &mut row.planned;
            match (p.action, failure) {
                (Action::Grant { .. }, Some(WriteError::Failed(m))) => {
                    // The outcome is unknown, so the intent stays recorded: the next round
                    // finds the membership (and keeps it) or grants again.
                    p.state = UserState::Failed;
                    p.reason = Reason::GrantFailed;
                    p.message = format!("adding to {} failed: {m}", self.group_label);
                    applied.retry = true;
                }
                (Action::Grant { .. }, Some(WriteError::NotFound(m) | WriteError::Refused(m))) => {
                    // Okta definitely did not add it: drop the intent, so a membership
                    // someone adds by hand later is never taken for the operator's own.
                    let id = row.user_id.as_deref().expect("a grant has a user id");
                    applied.record.release(id, owner, &BTreeSet::new());
                    p.state = UserState::Failed;
                    p.origin = None;
                    p.reason = Reason::GrantFailed;
                    p.message = format!("adding to {} was refused: {m}", self.group_label);
                    applied.retry = true;
                }
                (Action::Grant { drift: true }, None) => applied.drifted.push(row.user.clone()),
                (Action::Grant { drift: false }, None) => applied.granted.push(row.user.clone()),
                (Action::Revoke, Some(WriteError::Failed(m) | WriteError::Refused(m))) => {
                    p.state = UserState::Failed;
                    p.reason = Reason::RevokeFailed;
                    p.message = format!("removing from {} failed: {m}", self.group_label);
                    applied.retry = true;
                }
                (Action::Revoke, None | Some(WriteError::NotFound(_))) => {
                    let id = row.user_id.as_deref().expect("a revoke has a user id");
                    applied.record.release(id, owner, &BTreeSet::new());
                    applied.revoked.push(row.user.clone());
                }
                (Action::Keep, _) => {}
            }
            // A removed entry leaves the status once its claim is gone.
            let waiting = row.planned.state == UserState::Failed
                || row.planned.reason == Reason::RevocationHeld;
            if !row.declared && !waiting {
                continue;
            }
            applied.rows.push(row);
        }
        applied
    }

    /// `status.users`, keeping each row's transition time while its state stands.
    fn user_statuses(
        &self,
        rows: &[Row],
        previous: &BTreeMap<&str, &UserStatus>,
    ) -> Vec<UserStatus> {
        rows.iter()
            .map(|row| {
                let p = &row.planned;
                let since = previous
                    .get(row.user.as_str())
                    .filter(|prev| prev.state == p.state)
                    .map_or(self.now, |prev| prev.last_transition_time);
                UserStatus {
                    user: row.user.clone(),
                    user_id: row.user_id.clone(),
                    state: p.state,
                    origin: p.origin,
                    reason: p.reason,
                    message: bounded(&p.message),
                    last_transition_time: since,
                }
            })
            .collect()
    }

    /// Normal Events for the writes made and new expiries, Warnings for new failures only.
    fn events(
        &self,
        applied: &Applied,
        users: &[UserStatus],
        previous: &BTreeMap<&str, &UserStatus>,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let mut normal = |reason: EventReason, verb: &str, names: &[String]| {
            if !names.is_empty() {
                events.push(Event {
                    event_type: EventType::Normal,
                    reason,
                    message: format!(
                        "{verb} {}: {}",
                        self.group_label,
                        name_a_few(names.iter().map(String::as_str))
                    ),
                });
            }
        };
        normal(
            EventReason::Reason(Reason::Granted),
            "added to",
            &applied.granted,
        );
        normal(
            EventReason::DriftCorrected,
            "added again to",
            &applied.drifted,
        );
        normal(
            EventReason::Reason(Reason::Revoked),
            "removed from",
            &applied.revoked,
        );
        let newly_expired: Vec<String> = users
            .iter()
            .filter(|u| u.state == UserState::Expired)
            .filter(|u| {
                previous
                    .get(u.user.as_str())
                    .is_none_or(|p| p.state != UserState::Expired)
            })
            .map(|u| u.user.clone())
            .collect();
        normal(
            EventReason::Reason(Reason::Expired),
            "expired in",
            &newly_expired,
        );
        if let Some(lost) = self.ownership_lost_condition() {
            events.push(Event {
                event_type: EventType::Warning,
                reason: EventReason::Reason(Reason::OwnershipRecordLost),
                message: lost.message,
            });
        }
        // Transitions only, so a standing refusal is not repeated every round.
        let changed = |u: &&UserStatus| {
            previous
                .get(u.user.as_str())
                .is_none_or(|p| p.state != u.state || p.reason != u.reason)
        };
        let mut warnings: BTreeMap<Reason, Vec<&UserStatus>> = BTreeMap::new();
        for u in users.iter().filter(changed) {
            if u.state == UserState::Failed {
                warnings.entry(u.reason).or_default().push(u);
            }
        }
        for (reason, affected) in warnings {
            let first = affected[0].message.as_str();
            let names = name_a_few(affected.iter().map(|u| u.user.as_str()));
            let message = if affected.len() == 1 {
                format!("{}: {first}", affected[0].user)
            } else {
                format!("{names}: {first} (and similar)")
            };
            events.push(Event {
                event_type: EventType::Warning,
                reason: EventReason::Reason(reason),
                message,
            });
        }
        events
    }

    /// The `Ready` condition.
    fn ready(&self, users: &[UserStatus], still_claimed: bool) -> Condition {
        let not_granted = users.iter().filter(|u| u.state != UserState::Granted);
        if let Some(waiting) = waiting_revocations(users).filter(|_| self.deleting) {
            Condition {
                message: format!("being deleted; {}", waiting.message),
                ..waiting
            }
        } else if self.deleting {
            let message = if still_claimed {
                format!(
                    "being deleted; waiting to let go of {}",
                    summarize(not_granted).1
                )
            } else {
                "being deleted".to_string()
            };
            Condition {
                status: false,
                reason: Reason::Deleting,
                message,
            }
        } else if self.expired {
            Condition {
                status: false,
                reason: Reason::Expired,
                message: format!("the grant to {} has expired", self.group_label),
            }
        } else if let (Some(reason), text) = summarize(not_granted) {
            // A grant-policy refusal is about the group and namespace, not a user: say which.
            let policy_refusal = users.iter().find(|u| {
                u.reason == reason
                    && matches!(
                        reason,
                        Reason::NotAllowedByPolicy | Reason::GroupHoldsAdminRole
                    )
            });
            Condition {
                status: false,
                reason,
                message: match policy_refusal {
                    Some(u) => format!("{text}; {}", u.message),
                    None => text,
                },
            }
        } else {
            Condition {
                status: true,
                reason: Reason::Granted,
                message: format!(
                    "all {} users are members of {}",
                    users.len(),
                    self.group_label
                ),
            }
        }
    }

    /// The `OwnershipRecordLost` condition of a round that restored lost grants.
    fn ownership_lost_condition(&self) -> Option<Condition> {
        let names = self.lost_ownership.iter().map(|id| {
            self.previous
                .iter()
                .find(|p| p.user_id.as_deref() == Some(id))
                .map_or(id.as_str(), |p| p.user.as_str())
        });
        (!self.lost_ownership.is_empty()).then(|| Condition {
            status: true,
            reason: Reason::OwnershipRecordLost,
            message: format!(
                "the ownership record of {} had lost {} grant(s) this object's status shows as \
                 made by the operator ({}): recorded again, so they are revoked at expiry or \
                 deletion as before",
                self.group_label,
                self.lost_ownership.len(),
                name_a_few(names)
            ),
        })
    }

    /// The `Expired` condition.
    fn expired_condition(
        &self,
        users: &[UserStatus],
        expires_at: Option<Timestamp>,
        still_claimed: bool,
    ) -> Condition {
        match expires_at {
            None => Condition {
                status: false,
                reason: Reason::NoExpiry,
                message: match self.expiry {
                    Expiry::After(d) => {
                        format!("expires {d:#} after the grant first becomes effective")
                    }
                    _ => "no expiry set".to_string(),
                },
            },
            Some(at) if !self.expired => Condition {
                status: false,
                reason: Reason::NotExpired,
                message: format!("expires at {at}"),
            },
            Some(at) if !still_claimed => Condition {
                status: true,
                reason: Reason::Expired,
                message: format!("expired at {at}; memberships let go"),
            },
            Some(at) => {
                if let Some(waiting) = waiting_revocations(users) {
                    return Condition {
                        message: format!("expired at {at}; {}", waiting.message),
                        ..waiting
                    };
                }
                let failed = users.iter().filter(|u| u.state == UserState::Failed);
                let (reason, text) = summarize(failed);
                Condition {
                    status: false,
                    reason: reason.unwrap_or(Reason::Pending),
                    message: format!("expired at {at}; revocation pending: {text}"),
                }
            }
        }
    }
}

/// What stops this object's revocations, when something does: the first reason (waiting on
/// the connector before held by its breaker), how many wait, and why, in the row's words.
fn waiting_revocations(users: &[UserStatus]) -> Option<Condition> {
    [Reason::RevocationWaiting, Reason::RevocationHeld]
        .into_iter()
        .find_map(|reason| {
            let rows: Vec<&UserStatus> = users.iter().filter(|u| u.reason == reason).collect();
            let first = rows.first()?;
            Some(Condition {
                status: false,
                reason,
                message: format!(
                    "{} revocation(s) waiting ({}): {}",
                    rows.len(),
                    name_a_few(rows.iter().map(|u| u.user.as_str())),
                    first.message
                ),
            })
        })
}
