//! Status conditions shared by both kinds: `metav1.Condition` entries in a list-map keyed by
//! `type`, and the pure helpers the reconcilers use to update them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition types the operator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// Both kinds: the object is doing what its spec asks (a connector synced with valid
    /// credentials; a membership with every declared user a member in Okta).
    Ready,
    /// Connector: the referenced Secret exists, holds the key, and Okta accepted the token.
    CredentialsValid,
    /// Connector: the last sync succeeded.
    Synced,
    /// Membership: the grant expired and has been revoked.
    Expired,
    /// AccessRequest: the request is approved (False with the reason it is not, yet or ever).
    Approved,
    /// Membership: set True (and kept, as the record of the incident) when the group's
    /// ownership record had lost grants the membership's status shows as the operator's.
    OwnershipRecordLost,
    /// AccessReview: the items are frozen and stored.
    Frozen,
    /// AccessReview: decisions are counted (False while the admission policy that proves who
    /// decided cannot be verified).
    DecisionsCounted,
    /// AccessReview: past `dueAt` with items nobody decided.
    Overdue,
    /// AccessReview: every revoked item has its remediation outcome.
    Remediated,
    /// Recurring AccessReview: the next period's campaign is created (False while its period
    /// has not come, or with the reason it cannot be created).
    Recurring,
}

impl ConditionType {
    /// The `type` string written to the condition.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::CredentialsValid => "CredentialsValid",
            Self::Synced => "Synced",
            Self::Expired => "Expired",
            Self::Approved => "Approved",
            Self::OwnershipRecordLost => "OwnershipRecordLost",
            Self::Frozen => "Frozen",
            Self::DecisionsCounted => "DecisionsCounted",
            Self::Overdue => "Overdue",
            Self::Remediated => "Remediated",
            Self::Recurring => "Recurring",
        }
    }
}

impl std::fmt::Display for ConditionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `status` of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The operator cannot tell yet.
    Unknown,
}

impl ConditionStatus {
    /// The `status` string written to the condition.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(holds: bool) -> Self {
        if holds { Self::True } else { Self::False }
    }
}

/// Builds a condition observed at `now` for the object's `generation`.
pub fn new_condition(
    type_: ConditionType,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.as_str().to_owned(),
        status: status.as_str().to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now,
    }
}

/// Inserts `new`, replacing any condition of the same type. `lastTransitionTime` only moves
/// when the status changes, as `metav1.Condition` requires. Returns whether anything changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            if *old == new {
                return false;
            }
            *old = new;
            true
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// The condition of the given type, if present.
pub fn find_condition(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_str())
}

/// Whether the condition of the given type is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: ConditionType) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn ready(status: ConditionStatus, reason: &str, seconds: i64) -> Condition {
        new_condition(
            ConditionType::Ready,
            status,
            reason,
            "m",
            Some(1),
            at(seconds),
        )
    }

    #[test]
    fn set_condition_inserts_then_replaces_by_type() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            ready(ConditionStatus::False, "A", 10)
        ));
        let synced = new_condition(
            ConditionType::Synced,
            ConditionStatus::True,
            "S",
            "",
            None,
            at(10),
        );
        assert!(set_condition(&mut conditions, synced));
        assert!(set_condition(
            &mut conditions,
            ready(ConditionStatus::True, "B", 20)
        ));
        assert_eq!(conditions.len(), 2);
        let r = find_condition(&conditions, ConditionType::Ready).unwrap();
        assert_eq!((r.status.as_str(), r.reason.as_str()), ("True", "B"));
        assert_eq!(
            r.last_transition_time,
            at(20),
            "status changed, so the time moves"
        );
        assert!(is_true(&conditions, ConditionType::Ready));
        assert!(!is_true(&conditions, ConditionType::CredentialsValid));
    }

    #[test]
    fn same_status_keeps_transition_time_and_reports_no_change_when_identical() {
        let mut conditions = vec![ready(ConditionStatus::False, "A", 10)];
        assert!(!set_condition(
            &mut conditions,
            ready(ConditionStatus::False, "A", 30)
        ));
        assert!(set_condition(
            &mut conditions,
            ready(ConditionStatus::False, "C", 40)
        ));
        let r = find_condition(&conditions, ConditionType::Ready).unwrap();
        assert_eq!(r.reason, "C");
        assert_eq!(r.last_transition_time, at(10));
    }
}
