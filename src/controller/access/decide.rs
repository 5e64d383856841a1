//! The pure decisions of the `AccessRequest` reconciler: is the request allowed under its
//! policy, which approvals count, is it approved, denied or expired, and what the grant is.
//!
//! Fail-closed rules: nothing is approved while the admission policy cannot be verified;
//! approvals by the requester never count; an approval counts only while its approver still
//! holds RBAC verb `approve` on the policy (re-checked by the caller with a
//! SubjectAccessReview) and, where the policy narrows approvers, is one of them; approvers are
//! counted once however many approvals they create; one counted `Deny` is final.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::controller::membership::decide::EventType;
use crate::crd::access::{
    AccessPhase, AccessRequestSpec, AccessRequestStatus, Decision, RequestRules, Subjects,
};
use crate::crd::condition::{ConditionStatus, ConditionType, new_condition, set_condition};
use crate::crd::connector::parse_duration;

/// How long a request waits for approvals when its policy sets no `pendingTimeout`.
pub const DEFAULT_PENDING_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Reasons of the `Approved` and `Ready` conditions and of Events.
pub mod reason {
    /// Waiting for approvals.
    pub const PENDING: &str = "Pending";
    /// The shipped admission policy is missing, modified or not enforcing.
    pub const APPROVALS_UNVERIFIABLE: &str = "ApprovalsUnverifiable";
    /// The named AccessPolicy does not exist or has no `requests` section.
    pub const POLICY_NOT_FOUND: &str = "PolicyNotFound";
    /// The request is not allowed under its policy.
    pub const INVALID_REQUEST: &str = "InvalidRequest";
    /// Enough distinct approvers approved.
    pub const APPROVED: &str = "Approved";
    /// The policy approves every request (break-glass).
    pub const AUTO_APPROVED: &str = "AutoApproved";
    /// An approver denied.
    pub const DENIED: &str = "Denied";
    /// Not approved within the policy's `pendingTimeout`.
    pub const PENDING_TIMEOUT: &str = "PendingTimeout";
    /// Not approved (yet, or ever): nothing is granted.
    pub const NOT_APPROVED: &str = "NotApproved";
    /// The GroupMembership exists but the user is not a member yet.
    pub const GRANTING: &str = "Granting";
    /// The user is a member in Okta.
    pub const GRANTED: &str = "Granted";
    /// The grant ran out and was revoked.
    pub const EXPIRED: &str = "Expired";
    /// The request (or its GroupMembership) was deleted; the grant was revoked.
    pub const REVOKED: &str = "Revoked";
    /// A GroupMembership of the grant's name exists and is not this request's.
    pub const MEMBERSHIP_NAME_TAKEN: &str = "MembershipNameTaken";
    /// First seen.
    pub const REQUESTED: &str = "Requested";
}

/// One `AccessApproval` naming the request, as the reconciler found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// `spec.request.uid`.
    pub request_uid: String,
    /// `spec.policy`.
    pub policy: String,
    /// `spec.decision`.
    pub decision: Decision,
    /// `spec.approver.username` (checked at admission).
    pub approver: String,
    /// `spec.approver.groups` (checked at admission to be the approver's own).
    pub approver_groups: Vec<String>,
}

/// The request's GroupMembership (named [`membership_name`]), as the reconciler found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// None exists.
    Absent,
    /// One exists that this request does not own.
    Foreign,
    /// This request's.
    Owned {
        /// Every declared user is a member in Okta (`Ready` True).
        ready: bool,
        /// The grant expired and was revoked (`Expired` True).
        expired: bool,
        /// When it expires, once known.
        expires_at: Option<Timestamp>,
        /// Its `Ready` condition's message, shown while granting.
        message: String,
    },
}

/// Everything one decision looks at.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The request's name.
    pub name: &'a str,
    /// The request's namespace.
    pub namespace: &'a str,
    /// The request's uid.
    pub uid: &'a str,
    /// The request's spec.
    pub spec: &'a AccessRequestSpec,
    /// When the request was created.
    pub created: Timestamp,
    /// Its current status (default when it has none).
    pub previous: &'a AccessRequestStatus,
    /// The `requests` rules of the named policy, if it exists.
    pub policy: Option<&'a RequestRules>,
    /// The connector's `emailDomains`, when the connector exists.
    pub email_domains: Option<&'a [String]>,
    /// Whether the shipped admission policy is installed, unmodified and enforcing, else why not.
    pub admission: Result<(), String>,
    /// Approvals naming this request by name.
    pub votes: &'a [Vote],
    /// Per approver username: whether a SubjectAccessReview now allows `approve` on the policy.
    /// An approver missing here does not count.
    pub authorized: &'a BTreeMap<String, bool>,
    /// The request's GroupMembership.
    pub membership: Membership,
    /// The request is being deleted.
    pub deleting: bool,
    /// Now.
    pub now: Timestamp,
}

/// What to create in Kubernetes to grant the access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The connector in the request's namespace.
    pub connector: String,
    /// The Okta group name.
    pub group: String,
    /// The Okta user.
    pub user: String,
    /// The approved (capped) duration.
    pub duration: String,
}

/// An Event to publish on the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub event_type: EventType,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Names the requester and approvers, never credentials.
    pub message: String,
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The status to apply.
    pub status: AccessRequestStatus,
    /// Create this request's GroupMembership.
    pub grant: Option<Grant>,
    /// Delete this request's GroupMembership (the request is being deleted).
    pub revoke: bool,
    /// Nothing is held any more: the finalizer may go.
    pub release: bool,
    /// Events of this round's transitions.
    pub events: Vec<Event>,
    /// When to look again without any change (pending timeout).
    pub requeue_at: Option<Timestamp>,
}

/// The GroupMembership that grants `request`'s access (same namespace, owned by it).
pub fn membership_name(request: &str) -> String {
    let mut name = format!("access-{request}");
    name.truncate(253);
    name
}

/// The Okta user the request is for: `spec.user`, else the requester's username.
pub fn okta_user(spec: &AccessRequestSpec) -> &str {
    spec.user.as_deref().unwrap_or(&spec.requester.username)
}

fn in_subjects(subjects: &Subjects, user: &str, groups: &[String]) -> bool {
    subjects.users.iter().any(|u| u == user) || groups.iter().any(|g| subjects.groups.contains(g))
}

/// Whether the request is allowed under the policy in `namespace`, and if so the duration it
/// is granted for (the requested one, else the default, capped by `maxDuration`).
pub fn allowed(
    spec: &AccessRequestSpec,
    namespace: &str,
    policy: &RequestRules,
    email_domains: Option<&[String]>,
) -> Result<String, String> {
    let mut problems = Vec::new();
    if !policy.namespaces.iter().any(|n| n == namespace) {
        problems.push(format!("namespace {namespace} may not use this policy"));
    }
    if !policy.groups.contains(&spec.group) {
        problems.push(format!(
            "group {:?} is not requestable under this policy",
            spec.group
        ));
    }
    let requester = &spec.requester;
    if let Some(who) = &policy.requesters
        && !in_subjects(who, &requester.username, &requester.groups)
    {
        problems.push(format!(
            "{} may not request under this policy",
            requester.username
        ));
    }
    let user = okta_user(spec);
    if !user.eq_ignore_ascii_case(&requester.username) && !policy.allow_requests_for_others {
        problems.push(format!(
            "{} may only request access for their own user, not {user}",
            requester.username
        ));
    }
    if let Some(domains) = email_domains {
        let domain = user.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        if !domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
            problems.push(format!(
                "user {user} is not in the connector's email domains"
            ));
        }
    }
    if policy.require_reason && spec.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        problems.push("the policy requires a reason".to_owned());
    }
    let duration = granted_duration(spec, policy);
    if let Err(e) = &duration {
        problems.push(e.clone());
    }
    match duration {
        Ok(d) if problems.is_empty() => Ok(d),
        _ => Err(problems.join("; ")),
    }
}

/// The requested duration (else the policy's default, else its maximum), capped by the
/// policy's `maxDuration`.
pub fn granted_duration(spec: &AccessRequestSpec, policy: &RequestRules) -> Result<String, String> {
    let max_text = &policy.max_duration;
    let max = parse_duration(max_text).map_err(|e| format!("policy maxDuration {e}"))?;
    let wanted_text = spec
        .duration
        .as_ref()
        .or(policy.default_duration.as_ref())
        .unwrap_or(max_text);
    let wanted = parse_duration(wanted_text).map_err(|e| format!("duration {e}"))?;
    Ok(if wanted > max { max_text } else { wanted_text }.clone())
}

/// The approvers whose RBAC must be re-checked: approvals of this request (by uid) under its
/// policy, by anyone but the requester and the beneficiary. Distinct, sorted.
pub fn approvers_to_check(votes: &[Vote], uid: &str, spec: &AccessRequestSpec) -> Vec<String> {
    votes
        .iter()
        .filter(|v| counts_at_all(v, uid, spec))
        .map(|v| v.approver.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// An approval of this request under its policy, by neither the requester nor the Okta user
/// who would get the access (a request made for someone else is not theirs to approve).
fn counts_at_all(v: &Vote, uid: &str, spec: &AccessRequestSpec) -> bool {
    v.request_uid == uid
        && v.policy == spec.policy
        && v.approver != spec.requester.username
        && !v.approver.eq_ignore_ascii_case(okta_user(spec))
}

/// The counted decision over the votes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tally {
    /// A counted approver denied (the first, by name).
    Denied {
        /// Who denied.
        by: String,
    },
    /// The distinct counted approvers so far.
    Approvals(BTreeSet<String>),
}

/// Counts the votes: only this request's (uid, policy), never the requester's or the
/// beneficiary's, only approvers
/// still `authorized` and within the policy's `approvers`; a counted `Deny` wins.
pub fn tally(
    votes: &[Vote],
    uid: &str,
    spec: &AccessRequestSpec,
    policy: &RequestRules,
    authorized: &BTreeMap<String, bool>,
) -> Tally {
    let counted: Vec<&Vote> = votes
        .iter()
        .filter(|v| counts_at_all(v, uid, spec))
        .filter(|v| authorized.get(&v.approver).copied().unwrap_or(false))
        .filter(|v| {
            policy
                .approvers
                .as_ref()
                .is_none_or(|s| in_subjects(s, &v.approver, &v.approver_groups))
        })
        .collect();
    if let Some(deny) = counted
        .iter()
        .filter(|v| v.decision == Decision::Deny)
        .min_by(|a, b| a.approver.cmp(&b.approver))
    {
        return Tally::Denied {
            by: deny.approver.clone(),
        };
    }
    Tally::Approvals(
        counted
            .iter()
            .filter(|v| v.decision == Decision::Approve)
            .map(|v| v.approver.clone())
            .collect(),
    )
}

/// Decides the round.
pub fn decide(input: &Input<'_>) -> Outcome {
    let mut d = Draft::new(input);
    let prev = input.previous.phase;
    if input.deleting {
        d.deleting();
        return d.finish();
    }
    match prev {
        Some(
            AccessPhase::Denied | AccessPhase::Expired | AccessPhase::Revoked | AccessPhase::Failed,
        ) => {}
        Some(AccessPhase::Approved | AccessPhase::Active) => d.decided(),
        Some(AccessPhase::Pending) | None => d.pending(),
    }
    d.finish()
}

/// The outcome being built.
struct Draft<'a> {
    input: &'a Input<'a>,
    status: AccessRequestStatus,
    grant: Option<Grant>,
    revoke: bool,
    release: bool,
    events: Vec<Event>,
    requeue_at: Option<Timestamp>,
}

impl<'a> Draft<'a> {
    fn new(input: &'a Input<'a>) -> Self {
        let mut status = input.previous.clone();
        status.okta_user = Some(okta_user(input.spec).to_owned());
        if status.phase.is_none() {
            status.phase = Some(AccessPhase::Pending);
        }
        Draft {
            input,
            status,
            grant: None,
            revoke: false,
            release: false,
            events: Vec::new(),
            requeue_at: None,
        }
    }

    fn condition(&mut self, type_: ConditionType, holds: bool, reason: &str, message: String) {
        let c = new_condition(
            type_,
            ConditionStatus::from(holds),
            reason,
            message,
            None,
            Time(self.input.now),
        );
        set_condition(&mut self.status.conditions, c);
    }

    /// Records the grant as revoked: the phase, `Ready=False` with reason `Revoked`, and a
    /// Normal Event naming who asked.
    fn revoked(&mut self, message: String) {
        self.status.phase = Some(AccessPhase::Revoked);
        self.condition(
            ConditionType::Ready,
            false,
            reason::REVOKED,
            message.clone(),
        );
        let who = self.who();
        self.event(
            EventType::Normal,
            reason::REVOKED,
            format!("{who}: {message}"),
        );
    }

    fn who(&self) -> String {
        let spec = self.input.spec;
        format!(
            "{} for {} in group {:?}",
            spec.requester.username,
            okta_user(spec),
            spec.group
        )
    }

    fn event(&mut self, event_type: EventType, reason: &'static str, message: String) {
        self.events.push(Event {
            event_type,
            reason,
            message,
        });
    }

    fn not_granted(&mut self, message: &str) {
        self.condition(
            ConditionType::Ready,
            false,
            reason::NOT_APPROVED,
            message.to_owned(),
        );
    }

    fn fail(&mut self, reason: &'static str, message: String) {
        self.status.phase = Some(AccessPhase::Failed);
        self.condition(ConditionType::Approved, false, reason, message.clone());
        self.not_granted("nothing is granted");
        let who = self.who();
        self.event(EventType::Warning, reason, format!("{who}: {message}"));
    }

    /// Pending: validate, expire, then count.
    fn pending(&mut self) {
        let input = self.input;
        let Some(policy) = input.policy else {
            self.condition(
                ConditionType::Approved,
                false,
                reason::POLICY_NOT_FOUND,
                format!(
                    "AccessPolicy {} does not exist or has no requests section",
                    input.spec.policy
                ),
            );
            self.not_granted("nothing is granted");
            return;
        };
        let duration = match allowed(input.spec, input.namespace, policy, input.email_domains) {
            Ok(d) => d,
            Err(problems) => return self.fail(reason::INVALID_REQUEST, problems),
        };
        self.status.duration = Some(duration.clone());
        let timeout = policy
            .pending_timeout
            .as_deref()
            .and_then(|t| parse_duration(t).ok())
            .unwrap_or(DEFAULT_PENDING_TIMEOUT);
        let deadline =
            input.created + SignedDuration::try_from(timeout).unwrap_or(SignedDuration::MAX);
        if input.now >= deadline {
            self.status.phase = Some(AccessPhase::Expired);
            self.status.decided_at = Some(Time(input.now));
            let message = format!("not approved within {}", humantime(timeout));
            self.condition(
                ConditionType::Approved,
                false,
                reason::PENDING_TIMEOUT,
                message.clone(),
            );
            self.not_granted("nothing is granted");
            let who = self.who();
            self.event(
                EventType::Normal,
                reason::EXPIRED,
                format!("{who}: {message}"),
            );
            return;
        }
        self.requeue_at = Some(deadline);
        if input.previous.phase.is_none() {
            let who = self.who();
            let why = input.spec.reason.as_deref().unwrap_or("no reason given");
            self.event(
                EventType::Normal,
                reason::REQUESTED,
                format!("{who} for {duration}: {why}"),
            );
        }
        let required = policy.approvals.max(1) as usize;
        if let Err(why) = &input.admission {
            self.status.approvals = Some(format!("0/{required}"));
            let was = self.approved_reason();
            let message = format!("approvals are not honoured: {why}");
            self.condition(
                ConditionType::Approved,
                false,
                reason::APPROVALS_UNVERIFIABLE,
                message.clone(),
            );
            self.not_granted("nothing is granted");
            if was.as_deref() != Some(reason::APPROVALS_UNVERIFIABLE) {
                let who = self.who();
                self.event(
                    EventType::Warning,
                    reason::APPROVALS_UNVERIFIABLE,
                    format!("{who}: {message}"),
                );
            }
            return;
        }
        if policy.auto_approve {
            self.status.approvals = Some(format!("0/{required}"));
            return self.approve(
                reason::AUTO_APPROVED,
                "approved by the policy's autoApprove (break-glass)".to_owned(),
                &duration,
            );
        }
        match tally(input.votes, input.uid, input.spec, policy, input.authorized) {
            Tally::Denied { by } => {
                self.status.phase = Some(AccessPhase::Denied);
                self.status.denied_by = Some(by.clone());
                self.status.decided_at = Some(Time(input.now));
                let message = format!("denied by {by}");
                self.condition(
                    ConditionType::Approved,
                    false,
                    reason::DENIED,
                    message.clone(),
                );
                self.not_granted("nothing is granted");
                let who = self.who();
                self.event(
                    EventType::Normal,
                    reason::DENIED,
                    format!("{who}: {message}"),
                );
            }
            Tally::Approvals(by) => {
                self.status.approvals = Some(format!("{}/{required}", by.len().min(required)));
                if by.len() >= required {
                    self.status.approved_by = by.iter().cloned().collect();
                    let names: Vec<&str> = by.iter().map(String::as_str).collect();
                    return self.approve(
                        reason::APPROVED,
                        format!("approved by {}", names.join(", ")),
                        &duration,
                    );
                }
                self.condition(
                    ConditionType::Approved,
                    false,
                    reason::PENDING,
                    format!("{} of {required} approvals", by.len()),
                );
                self.not_granted("nothing is granted");
            }
        }
    }

    fn approved_reason(&self) -> Option<String> {
        self.input
            .previous
            .conditions
            .iter()
            .find(|c| c.type_ == ConditionType::Approved.as_str())
            .map(|c| c.reason.clone())
    }

    fn approve(&mut self, reason: &'static str, message: String, duration: &str) {
        self.status.phase = Some(AccessPhase::Approved);
        self.status.decided_at = Some(Time(self.input.now));
        self.condition(ConditionType::Approved, true, reason, message.clone());
        let who = self.who();
        let event_type = if reason == reason::AUTO_APPROVED {
            EventType::Warning
        } else {
            EventType::Normal
        };
        self.event(
            event_type,
            reason,
            format!("{who} for {duration}: {message}"),
        );
        self.decided();
    }

    /// Approved or Active: follow the GroupMembership.
    fn decided(&mut self) {
        let input = self.input;
        let name = membership_name(input.name);
        match &input.membership {
            Membership::Absent if input.previous.phase == Some(AccessPhase::Active) => {
                // Deleted by someone: granting again would extend the access past its approval.
                self.revoked(format!(
                    "GroupMembership {name} was deleted; the grant was revoked"
                ));
            }
            Membership::Absent => {
                let Some(policy) = input.policy else {
                    return self.fail(
                        reason::POLICY_NOT_FOUND,
                        format!(
                            "AccessPolicy {} was deleted (or lost its requests section) before the grant",
                            input.spec.policy
                        ),
                    );
                };
                self.status.membership = Some(name);
                self.grant = Some(Grant {
                    connector: policy.connector_ref.name.clone(),
                    group: input.spec.group.clone(),
                    user: okta_user(input.spec).to_owned(),
                    duration: self
                        .status
                        .duration
                        .clone()
                        .unwrap_or_else(|| policy.max_duration.clone()),
                });
                self.condition(
                    ConditionType::Ready,
                    false,
                    reason::GRANTING,
                    "creating the GroupMembership".to_owned(),
                );
            }
            Membership::Foreign => self.fail(
                reason::MEMBERSHIP_NAME_TAKEN,
                format!("GroupMembership {name} exists and is not this request's"),
            ),
            Membership::Owned {
                expired: true,
                expires_at,
                ..
            } => {
                self.status.phase = Some(AccessPhase::Expired);
                self.status.expires_at = expires_at.map(Time);
                let message = "the grant expired and was revoked".to_owned();
                self.condition(
                    ConditionType::Ready,
                    false,
                    reason::EXPIRED,
                    message.clone(),
                );
                let who = self.who();
                self.event(
                    EventType::Normal,
                    reason::EXPIRED,
                    format!("{who}: {message}"),
                );
            }
            Membership::Owned {
                ready: true,
                expires_at,
                ..
            } => {
                self.status.phase = Some(AccessPhase::Active);
                self.status.membership = Some(name);
                self.status.expires_at = expires_at.map(Time);
                let until = expires_at
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "its expiry".into());
                let message = format!("member in Okta until {until}");
                self.condition(ConditionType::Ready, true, reason::GRANTED, message.clone());
                if input.previous.phase != Some(AccessPhase::Active) {
                    let who = self.who();
                    let by = if input.previous.approved_by.is_empty() {
                        "autoApprove".to_owned()
                    } else {
                        input.previous.approved_by.join(", ")
                    };
                    self.event(
                        EventType::Normal,
                        reason::GRANTED,
                        format!("{who}: {message}; approved by {by}"),
                    );
                }
            }
            Membership::Owned { message, .. } => {
                self.status.membership = Some(name);
                self.condition(
                    ConditionType::Ready,
                    false,
                    reason::GRANTING,
                    message.clone(),
                );
            }
        }
    }

    /// Being deleted: revoke the grant by deleting the GroupMembership, then let go.
    fn deleting(&mut self) {
        match self.input.membership {
            Membership::Owned { .. } => self.revoke = true,
            Membership::Absent | Membership::Foreign => {
                self.release = true;
                if matches!(
                    self.input.previous.phase,
                    Some(AccessPhase::Approved | AccessPhase::Active)
                ) {
                    self.revoked("the request was deleted; the grant was revoked".to_owned());
                }
            }
        }
    }

    fn finish(self) -> Outcome {
        Outcome {
            status: self.status,
            grant: self.grant,
            revoke: self.revoke,
            release: self.release,
            events: self.events,
            requeue_at: self.requeue_at,
        }
    }
}

/// `3600s` as `1h`, for messages.
fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (h, 0, 0) if h > 0 => format!("{h}h"),
        (0, m, 0) if m > 0 => format!("{m}m"),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::access::Identity;
    use crate::crd::membership::ConnectorRef;

    const UID: &str = "uid-1";

    fn rules() -> RequestRules {
        RequestRules {
            connector_ref: ConnectorRef {
                name: "acme".into(),
            },
            namespaces: vec!["identity".into()],
            groups: vec!["Eng On-Call".into()],
            requesters: None,
            allow_requests_for_others: false,
            max_duration: "8h".into(),
            default_duration: Some("1h".into()),
            approvals: 2,
            approvers: None,
            require_reason: true,
            allow_privileged: false,
            auto_approve: false,
            pending_timeout: None,
        }
    }

    fn spec() -> AccessRequestSpec {
        AccessRequestSpec {
            policy: "oncall".into(),
            requester: Identity {
                username: "alice@example.com".into(),
                groups: vec!["engineers".into()],
            },
            user: None,
            group: "Eng On-Call".into(),
            duration: Some("2h".into()),
            reason: Some("INC-1 paging".into()),
            ticket: None,
        }
    }

    fn vote(approver: &str, decision: Decision) -> Vote {
        Vote {
            request_uid: UID.into(),
            policy: "oncall".into(),
            decision,
            approver: approver.into(),
            approver_groups: vec!["leads".into()],
        }
    }

    fn t0() -> Timestamp {
        "2026-12-04T10:00:00Z".parse().unwrap()
    }

    struct Case {
        spec: AccessRequestSpec,
        rules: Option<RequestRules>,
        previous: AccessRequestStatus,
        admission: Result<(), String>,
        votes: Vec<Vote>,
        authorized: BTreeMap<String, bool>,
        membership: Membership,
        deleting: bool,
        now: Timestamp,
    }

    impl Case {
        fn new() -> Self {
            Case {
                spec: spec(),
                rules: Some(rules()),
                previous: AccessRequestStatus::default(),
                admission: Ok(()),
                votes: Vec::new(),
                authorized: BTreeMap::new(),
                membership: Membership::Absent,
                deleting: false,
                now: t0() + SignedDuration::from_mins(5),
            }
        }

        fn votes(mut self, votes: &[(&str, Decision, bool)]) -> Self {
            for (who, decision, allowed) in votes {
                self.votes.push(vote(who, *decision));
                self.authorized.insert((*who).to_owned(), *allowed);
            }
            self
        }

        fn decide(&self) -> Outcome {
            decide(&Input {
                name: "alice-oncall",
                namespace: "identity",
                uid: UID,
                spec: &self.spec,
                created: t0(),
                previous: &self.previous,
                policy: self.rules.as_ref(),
                email_domains: Some(&["example.com".to_owned()][..]),
                admission: self.admission.clone(),
                votes: &self.votes,
                authorized: &self.authorized,
                membership: self.membership.clone(),
                deleting: self.deleting,
                now: self.now,
            })
        }
    }

    fn approved_reason(out: &Outcome) -> (&str, &str) {
        let c = out
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Approved")
            .expect("Approved condition");
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn two_distinct_approvers_reach_the_threshold_and_grant_the_requested_duration() {
        let out = Case::new()
            .votes(&[
                ("bob@example.com", Decision::Approve, true),
                ("carol@example.com", Decision::Approve, true),
            ])
            .decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Approved));
        assert_eq!(approved_reason(&out), ("True", reason::APPROVED));
        assert_eq!(out.status.approvals.as_deref(), Some("2/2"));
        assert_eq!(
            out.status.approved_by,
            ["bob@example.com", "carol@example.com"]
        );
        assert_eq!(
            out.grant,
            Some(Grant {
                connector: "acme".into(),
                group: "Eng On-Call".into(),
                user: "alice@example.com".into(),
                duration: "2h".into(),
            })
        );
        assert_eq!(
            out.status.membership.as_deref(),
            Some("access-alice-oncall")
        );
        let reasons: Vec<&str> = out.events.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, [reason::REQUESTED, reason::APPROVED]);
        assert!(
            out.events[1]
                .message
                .contains("bob@example.com, carol@example.com")
        );
        assert!(out.events[1].message.contains("alice@example.com"));
    }

    #[test]
    fn one_approver_twice_counts_once() {
        let mut case = Case::new().votes(&[("bob@example.com", Decision::Approve, true)]);
        case.votes.push(vote("bob@example.com", Decision::Approve));
        let out = case.decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Pending));
        assert_eq!(out.status.approvals.as_deref(), Some("1/2"));
        assert_eq!(approved_reason(&out), ("False", reason::PENDING));
        assert_eq!(out.grant, None);
    }

    #[test]
    fn self_approval_never_counts() {
        let mut case = Case::new().votes(&[
            ("alice@example.com", Decision::Approve, true),
            ("bob@example.com", Decision::Approve, true),
        ]);
        assert_eq!(case.decide().status.approvals.as_deref(), Some("1/2"));
        assert_eq!(
            approvers_to_check(&case.votes, UID, &case.spec),
            ["bob@example.com"]
        );
        // Even with a threshold of one, and even a self-denial.
        let mut one = rules();
        one.approvals = 1;
        case.rules = Some(one);
        case.votes = vec![vote("alice@example.com", Decision::Approve)];
        let out = case.decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Pending));
        case.votes = vec![vote("alice@example.com", Decision::Deny)];
        assert_eq!(case.decide().status.phase, Some(AccessPhase::Pending));
    }

    #[test]
    fn the_beneficiary_of_a_request_for_someone_else_cannot_approve_it() {
        let mut case = Case::new().votes(&[
            ("Bob@example.com", Decision::Approve, true),
            ("carol@example.com", Decision::Approve, true),
        ]);
        case.spec.user = Some("bob@example.com".into());
        let mut others = rules();
        others.allow_requests_for_others = true;
        case.rules = Some(others);
        assert_eq!(case.decide().status.approvals.as_deref(), Some("1/2"));
        assert_eq!(
            approvers_to_check(&case.votes, UID, &case.spec),
            ["carol@example.com"]
        );
    }

    #[test]
    fn a_counted_deny_wins_over_any_number_of_approvals() {
        let out = Case::new()
            .votes(&[
                ("bob@example.com", Decision::Approve, true),
                ("carol@example.com", Decision::Approve, true),
                ("dave@example.com", Decision::Deny, true),
            ])
            .decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Denied));
        assert_eq!(out.status.denied_by.as_deref(), Some("dave@example.com"));
        assert_eq!(approved_reason(&out), ("False", reason::DENIED));
        assert_eq!(out.grant, None);
        assert!(out.events.iter().any(|e| e.reason == reason::DENIED
            && e.message.contains("dave@example.com")
            && e.message.contains("alice@example.com")));
    }

    #[test]
    fn approvers_who_lost_rights_or_are_outside_the_policy_do_not_count() {
        // carol's RBAC was revoked since she approved; dave's deny no longer counts either.
        let out = Case::new()
            .votes(&[
                ("bob@example.com", Decision::Approve, true),
                ("carol@example.com", Decision::Approve, false),
                ("dave@example.com", Decision::Deny, false),
            ])
            .decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Pending));
        assert_eq!(out.status.approvals.as_deref(), Some("1/2"));
        // An approver never asked about does not count.
        let mut case = Case::new();
        case.votes = vec![
            vote("bob@example.com", Decision::Approve),
            vote("carol@example.com", Decision::Approve),
        ];
        assert_eq!(case.decide().status.approvals.as_deref(), Some("0/2"));
        // The policy narrows approvers to group `leads-emea`: bob's `leads` is not enough.
        let mut case = Case::new().votes(&[
            ("bob@example.com", Decision::Approve, true),
            ("carol@example.com", Decision::Approve, true),
        ]);
        let mut narrowed = rules();
        narrowed.approvers = Some(Subjects {
            users: vec!["carol@example.com".into()],
            groups: vec!["leads-emea".into()],
        });
        case.rules = Some(narrowed);
        assert_eq!(case.decide().status.approvals.as_deref(), Some("1/2"));
    }

    #[test]
    fn approvals_of_another_incarnation_or_policy_do_not_count() {
        let mut case = Case::new().votes(&[
            ("bob@example.com", Decision::Approve, true),
            ("carol@example.com", Decision::Approve, true),
        ]);
        case.votes[0].request_uid = "an-older-request".into();
        case.votes[1].policy = "lenient".into();
        assert_eq!(case.decide().status.approvals.as_deref(), Some("0/2"));
        assert!(approvers_to_check(&case.votes, UID, &case.spec).is_empty());
    }

    #[test]
    fn durations_are_capped_by_the_policy_and_default_to_its_default() {
        let mut s = spec();
        s.duration = Some("24h".into());
        assert_eq!(granted_duration(&s, &rules()).unwrap(), "8h");
        s.duration = None;
        assert_eq!(granted_duration(&s, &rules()).unwrap(), "1h");
        let mut r = rules();
        r.default_duration = None;
        assert_eq!(granted_duration(&s, &r).unwrap(), "8h");
        s.duration = Some("90m".into());
        assert_eq!(granted_duration(&s, &r).unwrap(), "90m");
    }

    #[test]
    fn requests_outside_the_policy_fail_with_every_problem_and_no_grant() {
        let mut case = Case::new().votes(&[
            ("bob@example.com", Decision::Approve, true),
            ("carol@example.com", Decision::Approve, true),
        ]);
        case.spec.group = "Eng Admins".into();
        case.spec.user = Some("mallory@evil.example.org".into());
        case.spec.reason = None;
        let out = case.decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Failed));
        assert_eq!(out.grant, None);
        let (status, why) = approved_reason(&out);
        assert_eq!((status, why), ("False", reason::INVALID_REQUEST));
        let message = &out.status.conditions[0].message;
        for part in [
            "\"Eng Admins\" is not requestable",
            "may only request access for their own user",
            "not in the connector's email domains",
            "requires a reason",
        ] {
            assert!(message.contains(part), "{part} in {message}");
        }
        assert_eq!(out.events[0].event_type, EventType::Warning);
    }

    #[test]
    fn requests_for_others_need_the_policy_and_requesters_are_checked() {
        let mut r = rules();
        r.allow_requests_for_others = true;
        r.requesters = Some(Subjects {
            users: vec![],
            groups: vec!["engineers".into()],
        });
        let mut s = spec();
        s.user = Some("bob@example.com".into());
        assert_eq!(allowed(&s, "identity", &r, None), Ok("2h".into()));
        s.requester.groups.clear();
        let e = allowed(&s, "identity", &r, None).unwrap_err();
        assert!(e.contains("alice@example.com may not request"), "{e}");
        let e = allowed(&spec(), "sales", &rules(), None).unwrap_err();
        assert!(e.contains("namespace sales may not use this policy"), "{e}");
    }

    #[test]
    fn without_verified_admission_nothing_is_approved_even_break_glass() {
        let mut case = Case::new().votes(&[
            ("bob@example.com", Decision::Approve, true),
            ("carol@example.com", Decision::Approve, true),
        ]);
        case.admission = Err("ValidatingAdmissionPolicy x is not installed".into());
        let out = case.decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Pending));
        assert_eq!(
            approved_reason(&out),
            ("False", reason::APPROVALS_UNVERIFIABLE)
        );
        assert!(
            out.status.conditions[0]
                .message
                .contains("is not installed")
        );
        assert_eq!(out.grant, None);
        assert!(
            out.events
                .iter()
                .any(|e| e.reason == reason::APPROVALS_UNVERIFIABLE
                    && e.event_type == EventType::Warning)
        );
        // The Warning is published once, not every round.
        case.previous = out.status;
        let again = case.decide();
        assert_eq!(again.grant, None);
        assert!(again.events.is_empty(), "{:?}", again.events);
        let mut auto = rules();
        auto.auto_approve = true;
        case.rules = Some(auto);
        assert_eq!(case.decide().grant, None);
    }

    #[test]
    fn break_glass_approves_with_a_warning() {
        let mut case = Case::new();
        let mut auto = rules();
        auto.auto_approve = true;
        case.rules = Some(auto);
        let out = case.decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Approved));
        assert_eq!(approved_reason(&out), ("True", reason::AUTO_APPROVED));
        assert!(out.grant.is_some());
        assert!(
            out.events
                .iter()
                .any(|e| e.reason == reason::AUTO_APPROVED && e.event_type == EventType::Warning)
        );
    }

    #[test]
    fn pending_requests_expire_after_the_pending_timeout() {
        let mut case = Case::new();
        let out = case.decide();
        assert_eq!(out.requeue_at, Some(t0() + SignedDuration::from_hours(24)));
        case.now = t0() + SignedDuration::from_hours(24);
        let out = case.decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Expired));
        assert_eq!(approved_reason(&out), ("False", reason::PENDING_TIMEOUT));
        assert!(out.status.conditions[0].message.contains("24h"));
        let mut r = rules();
        r.pending_timeout = Some("10m".into());
        case.rules = Some(r);
        case.now = t0() + SignedDuration::from_mins(10);
        assert_eq!(case.decide().status.phase, Some(AccessPhase::Expired));
    }

    #[test]
    fn a_missing_policy_waits() {
        let mut case = Case::new();
        case.rules = None;
        let out = case.decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Pending));
        assert_eq!(approved_reason(&out), ("False", reason::POLICY_NOT_FOUND));
    }

    fn approved_status() -> AccessRequestStatus {
        let case = Case::new().votes(&[
            ("bob@example.com", Decision::Approve, true),
            ("carol@example.com", Decision::Approve, true),
        ]);
        case.decide().status
    }

    #[test]
    fn the_grant_follows_the_group_membership_to_active_and_expired() {
        let mut case = Case::new();
        case.previous = approved_status();
        let until = t0() + SignedDuration::from_hours(2);
        case.membership = Membership::Owned {
            ready: false,
            expired: false,
            expires_at: None,
            message: "0/1 users are members".into(),
        };
        let out = case.decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Approved));
        assert_eq!(out.grant, None);
        case.membership = Membership::Owned {
            ready: true,
            expired: false,
            expires_at: Some(until),
            message: String::new(),
        };
        let out = case.decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Active));
        assert_eq!(out.status.expires_at, Some(Time(until)));
        assert!(out.events.iter().any(|e| {
            e.reason == reason::GRANTED
                && e.message
                    .contains("approved by bob@example.com, carol@example.com")
        }));
        // Approvals appearing or vanishing later change nothing once decided.
        case.previous = out.status;
        case.votes = vec![vote("dave@example.com", Decision::Deny)];
        case.authorized.insert("dave@example.com".into(), true);
        let out = case.decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Active));
        assert!(out.events.is_empty());
        case.membership = Membership::Owned {
            ready: false,
            expired: true,
            expires_at: Some(until),
            message: String::new(),
        };
        let out = case.decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Expired));
        assert!(out.events.iter().any(|e| e.reason == reason::EXPIRED));
        // Final: nothing more happens.
        case.previous = out.status.clone();
        let again = case.decide();
        assert_eq!(again.status, out.status);
        assert!(again.events.is_empty() && again.grant.is_none());
    }

    #[test]
    fn a_deleted_grant_is_not_granted_again() {
        let mut case = Case::new();
        let mut active = approved_status();
        active.phase = Some(AccessPhase::Active);
        case.previous = active;
        let out = case.decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Revoked));
        assert_eq!(out.grant, None);
    }

    #[test]
    fn a_foreign_membership_of_the_same_name_fails_the_request() {
        let mut case = Case::new();
        case.previous = approved_status();
        case.membership = Membership::Foreign;
        let out = case.decide();
        assert_eq!(out.status.phase, Some(AccessPhase::Failed));
        assert_eq!(out.grant, None);
    }

    #[test]
    fn deleting_revokes_first_then_lets_go_as_revoked() {
        let mut case = Case::new();
        let mut active = approved_status();
        active.phase = Some(AccessPhase::Active);
        case.previous = active;
        case.deleting = true;
        case.membership = Membership::Owned {
            ready: true,
            expired: false,
            expires_at: None,
            message: String::new(),
        };
        let out = case.decide();
        assert!(out.revoke && !out.release);
        case.membership = Membership::Absent;
        let out = case.decide();
        assert!(!out.revoke && out.release);
        assert_eq!(out.status.phase, Some(AccessPhase::Revoked));
        assert!(out.events.iter().any(|e| e.reason == reason::REVOKED));
        // A pending request goes without a Revoked phase.
        let mut case = Case::new();
        case.deleting = true;
        let out = case.decide();
        assert!(out.release);
        assert_eq!(out.status.phase, Some(AccessPhase::Pending));
    }
}
