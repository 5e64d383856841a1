//! What a connector says about revocations through it, as pure decisions: the deletion that
//! waits for its memberships' grants to be revoked (its finalizer), and the
//! `RevocationsPaused` condition of the mass-revocation circuit breaker
//! ([`breaker`](crate::controller::runtime::breaker)).
//!
//! # Deletion
//! Every connector carries [`FINALIZER`]. Deleting it waits while any `GroupMembership` of
//! its namespace that names it, with `deletionPolicy: Revoke`, still holds a grant of the
//! operator according to its status (a `users[]` row with `origin: Granted` in state
//! `Granted`, `Pending` or `Failed`: granted, or a revocation waiting or held). Such a
//! membership stops counting once its grants are revoked (its rows turn `Revoked` or
//! `Expired`) or once it is gone. Memberships with `deletionPolicy: Retain` never hold the
//! connector back: they leave their memberships in Okta by design. While the connector
//! terminates its Okta client stays, so memberships deleted with it (a namespace deletion)
//! still revoke through it.
//!
//! The escape: the annotation [`ABANDON_ANNOTATION`] set to `"true"` lets the deletion finish
//! at once, leaving those grants in Okta, with a Warning Event naming how many were left.

use crate::controller::runtime::breaker::{BreakerState, RELEASE_ANNOTATION};
use crate::crd::GroupMembership;
use crate::crd::membership::{DeletionPolicy, MembershipOrigin, UserMembershipState};

/// The finalizer on every `OktaCiamConnector`.
pub const FINALIZER: &str = "oktaciam.io/connector";

/// Set to `"true"` on a connector being deleted to let the deletion finish without waiting
/// for its memberships' grants to be revoked (they stay in Okta).
pub const ABANDON_ANNOTATION: &str = "oktaciam.io/abandon-grants";

/// Condition type: True while the deletion waits for revocations.
pub const DELETING_CONDITION: &str = "Deleting";

/// Condition type: True while the circuit breaker holds removals.
pub const PAUSED_CONDITION: &str = "RevocationsPaused";

/// The grants of the operator `gm`'s status shows it may still have to revoke (rows with
/// `origin: Granted` not yet `Revoked` or `Expired`); zero for `deletionPolicy: Retain`.
pub fn outstanding_grants(gm: &GroupMembership) -> usize {
    if gm.spec.deletion_policy == DeletionPolicy::Retain {
        return 0;
    }
    let outstanding = |u: &&crate::crd::membership::UserMembershipStatus| {
        u.origin == Some(MembershipOrigin::Granted)
            && !matches!(
                u.state,
                UserMembershipState::Revoked | UserMembershipState::Expired
            )
    };
    gm.status
        .as_ref()
        .map_or(0, |s| s.users.iter().filter(outstanding).count())
}

/// What a deleting connector does this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// Remove the finalizer; `abandoned` grants are left in Okta (by the escape annotation).
    Finish {
        /// Grants left in Okta.
        abandoned: usize,
    },
    /// Keep waiting; the `Deleting` condition's message.
    Wait(String),
}

/// The deletion decision, given the memberships naming the connector (`namespace/name`
/// keys with their [`outstanding_grants`]) and whether the escape annotation is set.
pub fn deletion(holding: &[(String, usize)], abandon: bool) -> Deletion {
    let holding: Vec<&(String, usize)> = holding.iter().filter(|(_, n)| *n > 0).collect();
    let grants: usize = holding.iter().map(|(_, n)| n).sum();
    if holding.is_empty() || abandon {
        return Deletion::Finish { abandoned: grants };
    }
    let names: Vec<&str> = holding.iter().take(5).map(|(k, _)| k.as_str()).collect();
    let more = holding.len().saturating_sub(names.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Deletion::Wait(format!(
        "waiting for {} GroupMembership(s) with deletionPolicy: Revoke to revoke {grants} \
         grant(s) ({}{more}): delete them, or set annotation {ABANDON_ANNOTATION}: \"true\" \
         to leave the grants in Okta",
        holding.len(),
        names.join(", ")
    ))
}

/// The `RevocationsPaused` condition: `(status, reason, message)`.
pub fn paused_condition(state: BreakerState, limit: usize) -> (bool, &'static str, String) {
    if state.unavailable {
        return (
            true,
            "RevocationWindowUnavailable",
            format!(
                "{} removal(s) held: the circuit breaker's window (status.revocations) could not \
                 be read or written, and no removal goes until it can be (retried with every \
                 removal)",
                state.held
            ),
        );
    }
    if state.held == 0 {
        (
            false,
            "RevocationsFlowing",
            format!("no removal held (safety.maxRevocationsPerHour: {limit})"),
        )
    } else {
        (
            true,
            "RevocationsPaused",
            format!(
                "{} removal(s) held: {} done in the last hour, the limit \
                 (safety.maxRevocationsPerHour) is {limit}; give annotation \
                 {RELEASE_ANNOTATION} a new value to release another {limit}, or raise the limit",
                state.held, state.done
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gm(policy: &str, rows: &[(&str, Option<&str>)]) -> GroupMembership {
        let users: Vec<serde_json::Value> = rows
            .iter()
            .enumerate()
            .map(|(i, (state, origin))| {
                let mut row = serde_json::json!({
                    "user": format!("u{i}@example.com"), "state": state, "reason": "Granted",
                    "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z",
                });
                if let Some(o) = origin {
                    row["origin"] = serde_json::json!(o);
                }
                row
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "oktaciam.io/v1alpha1", "kind": "GroupMembership",
            "metadata": {"name": "gm", "namespace": "ns"},
            "spec": {"connectorRef": {"name": "acme"}, "group": {"name": "Eng"},
                     "users": ["u0@example.com"], "deletionPolicy": policy},
            "status": {"users": users},
        }))
        .unwrap()
    }

    #[test]
    fn only_the_operators_grants_not_yet_let_go_count() {
        let rows = [
            ("Granted", Some("Granted")),
            ("Failed", Some("Granted")),
            ("Pending", Some("Granted")),
            ("Granted", Some("Preexisting")),
            ("Revoked", Some("Granted")),
            ("Expired", Some("Granted")),
            ("Failed", None),
        ];
        assert_eq!(outstanding_grants(&gm("Revoke", &rows)), 3);
        assert_eq!(outstanding_grants(&gm("Retain", &rows)), 0);
    }

    #[test]
    fn deletion_waits_for_holders_unless_abandoned() {
        assert_eq!(deletion(&[], false), Deletion::Finish { abandoned: 0 });
        let holding = vec![("ns/a".to_owned(), 2), ("ns/b".to_owned(), 0)];
        let Deletion::Wait(message) = deletion(&holding, false) else {
            panic!("must wait");
        };
        assert!(message.contains("1 GroupMembership(s)"), "{message}");
        assert!(message.contains("2 grant(s) (ns/a)"), "{message}");
        assert!(message.contains(ABANDON_ANNOTATION), "{message}");
        assert_eq!(deletion(&holding, true), Deletion::Finish { abandoned: 2 });
    }

    #[test]
    fn paused_condition_says_counts_and_how_to_release() {
        let (status, reason, message) = paused_condition(
            BreakerState {
                done: 5,
                held: 7,
                unavailable: false,
            },
            5,
        );
        assert!(status);
        assert_eq!(reason, "RevocationsPaused");
        assert!(
            message.starts_with("7 removal(s) held: 5 done"),
            "{message}"
        );
        assert!(message.contains(RELEASE_ANNOTATION));
        let (status, reason, _) = paused_condition(
            BreakerState {
                done: 5,
                held: 0,
                unavailable: false,
            },
            5,
        );
        assert!(!status);
        assert_eq!(reason, "RevocationsFlowing");
        let (status, reason, message) = paused_condition(
            BreakerState {
                done: 0,
                held: 3,
                unavailable: true,
            },
            5,
        );
        assert!(status, "an unreadable window holds");
        assert_eq!(reason, "RevocationWindowUnavailable");
        assert!(message.contains("status.revocations"), "{message}");
    }
}
