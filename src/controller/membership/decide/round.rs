//! Decisions around a round: when to requeue, whether to wait for the connector's client,
//! moving to another group, and deletions whose record cannot be located.

use std::time::Duration;

use jiff::Timestamp;

use super::{
    Condition, ConnectorFacts, DeletionPolicy, Event, EventReason, EventType, GroupLookup,
    Lifecycle, Origin, Reason, UserStatus,
};

/// The per-object back-off both reconcilers use, here after rounds that failed or left
/// writes pending.
pub use crate::controller::retry_delay;

/// How long until the next round: the back-off delay when the round must retry, else the
/// resync period; in both cases no later than the exact expiry `requeue_at` (a failing
/// write of one user must not keep the others' access past expiry). Tokio timers may fire
/// a hair early, so the expiry wait gets one millisecond more, landing at or past it.
pub fn requeue_after(
    backoff: Option<Duration>,
    requeue_at: Option<Timestamp>,
    now: Timestamp,
    resync: Duration,
) -> Duration {
    let wait = backoff.unwrap_or(resync);
    match requeue_at {
        Some(at) => {
            let ms = (at.as_millisecond() - now.as_millisecond()).max(0);
            wait.min(Duration::from_millis(ms.unsigned_abs() + 1))
        }
        None => wait,
    }
}

/// Whether a round waits quietly for the connector's client (the connector is Ready in the
/// cluster but this process has not built its client yet: a restart or a new leadership
/// term) rather than reporting `ConnectorNotReady`.
///
/// Only while the term is younger than `limit`: a client that never comes (the connector
/// reconciler keeps failing without rewriting a stale `Ready`) must surface as a refusal,
/// not freeze a deletion or hide an expiry forever. And never for a deletion whose status
/// holds no grant of the operator: there is nothing to revoke, so it can finish at once.
pub fn await_client(
    term_age: Duration,
    limit: Duration,
    lifecycle: Lifecycle,
    previous: &[UserStatus],
) -> bool {
    let holds_grants = previous.iter().any(|p| p.origin == Some(Origin::Granted));
    term_age < limit && (lifecycle == Lifecycle::Live || holds_grants)
}

/// The group to let go in first when the declared group now resolves to another group than
/// the one `status.groupId` recorded (`spec.group` was changed to an existing group).
///
/// Acting in the new group at once would orphan the grants in the old one: its record would
/// never be visited again. So the round lets go in the recorded group as a deletion with the
/// object's `deletionPolicy` would (same ownership rules: preexisting memberships and those
/// still held by others stay), and acts in the new group only once this object claims
/// nothing there. A rename keeps the id ([`GroupLookup::Renamed`]) and is no move.
pub fn moved_from<'a>(group: &GroupLookup, recorded: Option<&'a str>) -> Option<&'a str> {
    match (group, recorded) {
        (GroupLookup::Found(g), Some(old)) if g.id != old => Some(old),
        _ => None,
    }
}

/// The `Ready` condition of a round that lets go in the old group of a move
/// ([`moved_from`]), from the condition the letting-go round produced.
pub fn moving_condition(letting_go: &Condition, from: &str, to: &str, done: bool) -> Condition {
    let message = if done {
        format!("spec.group changed from {from} to {to}: let go in {from}")
    } else {
        let waiting = letting_go
            .message
            .strip_prefix("being deleted; ")
            .unwrap_or("waiting to let go");
        format!("spec.group changed from {from} to {to}: {waiting} in {from} first")
    };
    Condition {
        status: false,
        reason: Reason::Pending,
        message,
    }
}

/// Whether a deletion whose ownership record cannot be located (no connector to name the
/// org, or no group id) may finish, and the Events saying so. `Some`: remove the finalizer.
///
/// Without the connector nothing can be revoked, ever: the memberships stay in Okta (nothing
/// is lost) and a Warning says how many grants of this object were left. With `Retain`
/// nothing would be revoked anyway. Otherwise (`Revoke`, connector present) the round waits
/// for the record to be locatable, as a claim in it may still have to be revoked.
pub fn finish_unlocated(
    policy: DeletionPolicy,
    connector: Option<&ConnectorFacts>,
    connector_name: &str,
    previous: &[UserStatus],
) -> Option<Vec<Event>> {
    if connector.is_some() {
        return (policy == DeletionPolicy::Retain).then(Vec::new);
    }
    let grants = previous
        .iter()
        .filter(|p| p.origin == Some(Origin::Granted))
        .count();
    Some(vec![Event {
        event_type: EventType::Warning,
        reason: EventReason::Reason(Reason::ConnectorNotFound),
        message: format!(
            "connector {connector_name} does not exist: deleted leaving in Okta the {grants} \
             membership(s) this object granted"
        ),
    }])
}
