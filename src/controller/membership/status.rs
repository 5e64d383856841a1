//! Pure translation between the `GroupMembership` resource and the decision layer: the spec
//! and previous status become [`decide`](super::decide) facts, an [`Outcome`] becomes the
//! status to apply.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::decide::{self, Expiry, Lifecycle, Origin, Outcome, Reason, UserState};
use crate::crd::condition::{new_condition, set_condition};
use crate::crd::connector::parse_duration;
use crate::crd::{
    ConditionType, DeletionPolicy, GroupMembership, MembershipOrigin, MembershipStatus,
    UserMembershipState, UserMembershipStatus,
};

/// The owner key of a `GroupMembership` in ownership records: `namespace/name`.
pub fn owner_key(gm: &GroupMembership) -> String {
    format!(
        "{}/{}",
        gm.metadata.namespace.as_deref().unwrap_or_default(),
        gm.metadata.name.as_deref().unwrap_or_default()
    )
}

/// `spec.expiresAt` / `spec.duration` as an [`Expiry`]. Fails on a duration the schema's
/// pattern admits but that does not parse or overflows.
pub fn expiry_of(gm: &GroupMembership) -> Result<Expiry, String> {
    if let Some(at) = &gm.spec.expires_at {
        return Ok(Expiry::At(at.0));
    }
    match &gm.spec.duration {
        None => Ok(Expiry::Never),
        Some(text) => {
            let d = parse_duration(text)?;
            SignedDuration::try_from(d)
                .map(Expiry::After)
                .map_err(|e| format!("duration {text:?} is out of range: {e}"))
        }
    }
}

/// Checks the spec as the CRD's CEL rules promise (the API server may not evaluate them):
/// exactly one of `group.name` and `group.id`, at most one of `expiresAt` and `duration`,
/// and a duration that parses and fits. Returns the expiry, or why the spec is invalid.
pub fn validate(gm: &GroupMembership) -> Result<Expiry, String> {
    let group = &gm.spec.group;
    match (group.name.as_deref(), group.id.as_deref()) {
        (Some(_), Some(_)) => {
            return Err("spec.group sets both name and id; set exactly one".into());
        }
        (None, None) => return Err("spec.group sets neither name nor id; set exactly one".into()),
        (Some(""), _) => return Err("spec.group.name is empty".into()),
        (_, Some("")) => return Err("spec.group.id is empty".into()),
        _ => {}
    }
    if gm.spec.expires_at.is_some() && gm.spec.duration.is_some() {
        return Err("spec sets both expiresAt and duration; set at most one".into());
    }
    expiry_of(gm).map_err(|e| {
        let text = gm.spec.duration.as_deref().unwrap_or_default();
        format!("spec.duration {text:?}: {e}")
    })
}

/// The status of a live object whose spec is invalid ([`validate`]): what the last round
/// reported, with `Ready` and `Expired` False for [`Reason::InvalidSpec`]. The Warning Event
/// comes with a change of that report only, so a standing refusal is not repeated.
pub fn refuse_spec(
    gm: &GroupMembership,
    message: &str,
    now: Timestamp,
) -> (MembershipStatus, Option<decide::Event>) {
    let generation = gm.metadata.generation;
    let mut status = gm.status.clone().unwrap_or_default();
    let mut changed = false;
    for (type_, text) in [
        (ConditionType::Ready, message.to_owned()),
        (
            ConditionType::Expired,
            "the expiry cannot be known while the spec is invalid".to_owned(),
        ),
    ] {
        changed |= set_condition(
            &mut status.conditions,
            new_condition(
                type_,
                false.into(),
                Reason::InvalidSpec.as_str(),
                text,
                generation,
                Time(now),
            ),
        );
    }
    status.observed_generation = generation;
    let event = changed.then(|| decide::Event {
        event_type: decide::EventType::Warning,
        reason: decide::EventReason::Reason(Reason::InvalidSpec),
        message: message.to_owned(),
    });
    (status, event)
}

/// Live, or being deleted with the declared policy.
pub fn lifecycle_of(gm: &GroupMembership) -> Lifecycle {
    if gm.metadata.deletion_timestamp.is_none() {
        return Lifecycle::Live;
    }
    Lifecycle::Deleting(deletion_policy_of(gm))
}

/// `spec.deletionPolicy`.
pub fn deletion_policy_of(gm: &GroupMembership) -> decide::DeletionPolicy {
    match gm.spec.deletion_policy {
        DeletionPolicy::Revoke => decide::DeletionPolicy::Revoke,
        DeletionPolicy::Retain => decide::DeletionPolicy::Retain,
    }
}

/// `status.effectiveSince`, if recorded.
pub fn effective_since_of(gm: &GroupMembership) -> Option<Timestamp> {
    gm.status.as_ref()?.effective_since.as_ref().map(|t| t.0)
}

/// Whether this object is a live declaration at `now` (for other objects' `others`).
pub fn is_live_at(gm: &GroupMembership, now: Timestamp) -> bool {
    // An unparsable duration counts as live: keeping a membership is the safe side.
    let expiry = expiry_of(gm).unwrap_or(Expiry::Never);
    decide::is_live(lifecycle_of(gm), expiry, effective_since_of(gm), now)
}

/// The Okta user ids this object declares, as its last status resolved them.
pub fn declared_ids(gm: &GroupMembership) -> impl Iterator<Item = &str> {
    gm.status
        .iter()
        .flat_map(|s| &s.users)
        .filter(|row| gm.spec.users.contains(&row.user))
        .filter_map(|row| row.user_id.as_deref())
}

fn state_from(s: UserMembershipState) -> UserState {
    match s {
        UserMembershipState::Pending => UserState::Pending,
        UserMembershipState::Granted => UserState::Granted,
        UserMembershipState::Failed => UserState::Failed,
        UserMembershipState::Expired => UserState::Expired,
        UserMembershipState::Revoked => UserState::Revoked,
    }
}

fn state_to(s: UserState) -> UserMembershipState {
    match s {
        UserState::Pending => UserMembershipState::Pending,
        UserState::Granted => UserMembershipState::Granted,
        UserState::Failed => UserMembershipState::Failed,
        UserState::Expired => UserMembershipState::Expired,
        UserState::Revoked => UserMembershipState::Revoked,
    }
}

fn origin_from(o: MembershipOrigin) -> Origin {
    match o {
        MembershipOrigin::Granted => Origin::Granted,
        MembershipOrigin::Preexisting => Origin::Preexisting,
    }
}

fn origin_to(o: Origin) -> MembershipOrigin {
    match o {
        Origin::Granted => MembershipOrigin::Granted,
        Origin::Preexisting => MembershipOrigin::Preexisting,
    }
}

/// Parses a reason string written by [`build_status`]; unknown text reads as `Pending`.
fn reason_from(text: Option<&str>) -> Reason {
    text.and_then(|t| serde_json::from_value(serde_json::Value::String(t.to_owned())).ok())
        .unwrap_or(Reason::Pending)
}

/// The previous round's per-user rows, for [`decide::Input::previous`].
pub fn previous_rows(gm: &GroupMembership) -> Vec<decide::UserStatus> {
    gm.status
        .iter()
        .flat_map(|s| &s.users)
        .map(|row| decide::UserStatus {
            user: row.user.clone(),
            user_id: row.user_id.clone(),
            state: state_from(row.state),
            origin: row.origin.map(origin_from),
            reason: reason_from(row.reason.as_deref()),
            message: row.message.clone().unwrap_or_default(),
            last_transition_time: row
                .last_transition_time
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        })
        .collect()
}

/// The status to apply after a round: the outcome's users and conditions (keeping condition
/// transition times when the status did not flip), resolved expiry and `readyUsers`.
pub fn build_status(gm: &GroupMembership, out: &Outcome, now: Timestamp) -> MembershipStatus {
    let generation = gm.metadata.generation;
    let mut conditions = gm
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let lost = out
        .ownership_lost
        .as_ref()
        .map(|c| (ConditionType::OwnershipRecordLost, c));
    for (type_, c) in [
        (ConditionType::Ready, &out.ready),
        (ConditionType::Expired, &out.expired),
    ]
    .into_iter()
    .chain(lost)
    {
        set_condition(
            &mut conditions,
            new_condition(
                type_,
                c.status.into(),
                c.reason.as_str(),
                c.message.clone(),
                generation,
                Time(now),
            ),
        );
    }
    let ready = out
        .users
        .iter()
        .filter(|u| u.state == UserState::Granted && gm.spec.users.contains(&u.user))
        .count();
    MembershipStatus {
        observed_generation: generation,
        conditions,
        group_id: out.group_id.clone(),
        expires_at: out.expires_at.map(Time),
        effective_since: out.effective_since.map(Time),
        ready_users: Some(format!("{ready}/{}", gm.spec.users.len())),
        users: out
            .users
            .iter()
            .map(|u| UserMembershipStatus {
                user: u.user.clone(),
                user_id: u.user_id.clone(),
                state: state_to(u.state),
                origin: u.origin.map(origin_to),
                reason: Some(u.reason.as_str().to_owned()),
                message: Some(u.message.clone()),
                last_transition_time: Some(Time(u.last_transition_time)),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::GroupMembershipSpec;
    use std::collections::{BTreeMap, BTreeSet};

    fn gm(users: &[&str], status: Option<MembershipStatus>) -> GroupMembership {
        let spec: GroupMembershipSpec = serde_json::from_value(serde_json::json!({
            "connectorRef": {"name": "acme"},
            "group": {"name": "Eng"},
            "users": users,
            "duration": "8h",
        }))
        .unwrap();
        let mut gm = GroupMembership::new("oncall", spec);
        gm.metadata.namespace = Some("identity".into());
        gm.metadata.generation = Some(3);
        gm.status = status;
        gm
    }

    fn input(gm: &GroupMembership, now: Timestamp) -> decide::Input {
        let connector = decide::ConnectorFacts {
            name: "acme".into(),
            ready: true,
            provisioning: true,
            suspended: false,
            has_client: true,
            email_domains: vec!["example.com".into()],
            group_name_filter: None,
        };
        let user = |login: &str, id: &str| decide::DeclaredUser {
            user: login.into(),
            lookup: decide::UserLookup::Found(decide::OktaUser {
                id: id.into(),
                login: login.into(),
                email: Some(login.into()),
                status: "ACTIVE".into(),
            }),
        };
        decide::Input {
            provisioning: true,
            owner: owner_key(gm),
            connector: Some(connector),
            group: decide::GroupLookup::Found(decide::OktaGroup {
                id: "00g1".into(),
                name: "Eng".into(),
                group_type: "OKTA_GROUP".into(),
            }),
            users: vec![user("a@example.com", "00ua"), user("b@example.com", "00ub")],
            members: BTreeSet::from(["00ub".to_string()]),
            record: decide::GroupRecord::default(),
            record_located: true,
            group_id: None,
            others: BTreeMap::new(),
            lifecycle: lifecycle_of(gm),
            expiry: expiry_of(gm).unwrap(),
            effective_since: effective_since_of(gm),
            previous: previous_rows(gm),
            now,
            policy: decide::PolicyFacts::default(),
        }
    }

    #[test]
    fn a_round_trips_through_status_and_keeps_transition_times() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let first = gm(&["a@example.com", "b@example.com"], None);
        assert_eq!(owner_key(&first), "identity/oncall");
        let out = decide::decide(&input(&first, t0)).settle(&BTreeMap::new());
        let status = build_status(&first, &out, t0);
        assert_eq!(status.ready_users.as_deref(), Some("2/2"));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.effective_since, Some(Time(t0)));
        assert_eq!(
            status.expires_at,
            Some(Time(t0 + SignedDuration::from_hours(8)))
        );
        let origins: Vec<_> = status.users.iter().map(|u| u.origin).collect();
        assert_eq!(
            origins,
            [
                Some(MembershipOrigin::Granted),
                Some(MembershipOrigin::Preexisting)
            ]
        );

        // The next round reads the same rows back and keeps every transition time.
        let t1 = t0 + SignedDuration::from_mins(5);
        let second = gm(&["a@example.com", "b@example.com"], Some(status.clone()));
        let previous = previous_rows(&second);
        assert_eq!(previous, out.users);
        let mut next = input(&second, t1);
        next.members.insert("00ua".into());
        next.record = out.record.clone();
        let out2 = decide::decide(&next).settle(&BTreeMap::new());
        let status2 = build_status(&second, &out2, t1);
        assert_eq!(
            status2.effective_since,
            Some(Time(t0)),
            "duration keeps counting from t0"
        );
        assert_eq!(status2.conditions, status.conditions);
        assert!(
            status2
                .users
                .iter()
                .all(|u| u.last_transition_time == Some(Time(t0)))
        );
        assert_eq!(declared_ids(&second).collect::<Vec<_>>(), ["00ua", "00ub"]);
    }

    #[test]
    fn lifecycle_liveness_and_unknown_reasons() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut g = gm(&["a@example.com"], None);
        assert!(
            is_live_at(&g, t0),
            "a duration not yet started never expires"
        );
        g.status = Some(MembershipStatus {
            effective_since: Some(Time(t0)),
            ..MembershipStatus::default()
        });
        assert!(is_live_at(&g, t0 + SignedDuration::from_hours(7)));
        assert!(!is_live_at(&g, t0 + SignedDuration::from_hours(8)));
        g.spec.deletion_policy = DeletionPolicy::Retain;
        g.metadata.deletion_timestamp = Some(Time(t0));
        assert_eq!(
            lifecycle_of(&g),
            Lifecycle::Deleting(decide::DeletionPolicy::Retain)
        );
        assert!(!is_live_at(&g, t0));
        assert_eq!(reason_from(Some("UserOutOfScope")), Reason::UserOutOfScope);
        assert_eq!(reason_from(Some("SomethingNew")), Reason::Pending);
        assert_eq!(reason_from(None), Reason::Pending);
    }

    #[test]
    fn validate_enforces_what_the_cel_rules_promise() {
        let mut g = gm(&["a@example.com"], None);
        assert!(matches!(validate(&g), Ok(Expiry::After(_))));
        g.spec.group.id = Some("00gX".into());
        assert!(validate(&g).unwrap_err().contains("both name and id"));
        g.spec.group.name = None;
        assert!(validate(&g).is_ok());
        g.spec.group.id = None;
        assert!(validate(&g).unwrap_err().contains("neither name nor id"));
        g.spec.group.id = Some(String::new());
        assert!(validate(&g).unwrap_err().contains("group.id is empty"));
        g.spec.group.id = Some("00gX".into());
        g.spec.expires_at = Some(Time("2030-01-01T00:00:00Z".parse().unwrap()));
        assert!(
            validate(&g)
                .unwrap_err()
                .contains("both expiresAt and duration")
        );
        g.spec.expires_at = None;
        g.spec.duration = Some("soon".into());
        let err = validate(&g).unwrap_err();
        assert!(err.starts_with("spec.duration \"soon\""), "{err}");
    }

    #[test]
    fn an_invalid_spec_keeps_the_rows_and_warns_only_when_the_report_changes() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let rows = MembershipStatus {
            users: vec![UserMembershipStatus {
                user: "a@example.com".into(),
                user_id: Some("00ua".into()),
                state: UserMembershipState::Granted,
                origin: Some(MembershipOrigin::Granted),
                reason: Some("Granted".into()),
                message: Some("granted".into()),
                last_transition_time: Some(Time(t0)),
            }],
            group_id: Some("00gX".into()),
            ..MembershipStatus::default()
        };
        let g = gm(&["a@example.com"], Some(rows.clone()));
        let (status, event) = refuse_spec(&g, "spec.group sets both name and id", t0);
        assert_eq!(status.users, rows.users, "claims stay as reported");
        assert_eq!(status.group_id, rows.group_id);
        for c in &status.conditions {
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("False", "InvalidSpec")
            );
        }
        let event = event.expect("a Warning for the new report");
        assert_eq!(event.event_type, decide::EventType::Warning);
        assert_eq!(event.reason.as_str(), "InvalidSpec");
        let again = gm(&["a@example.com"], Some(status.clone()));
        let later = t0 + SignedDuration::from_mins(5);
        let (same, event) = refuse_spec(&again, "spec.group sets both name and id", later);
        assert_eq!(same, status, "an unchanged report is the same status");
        assert_eq!(event, None);
    }
}
