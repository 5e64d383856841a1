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
    /// The named AccessPolicy does not exist.
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
    /// The approval's name.
    pub name: String,
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
/// policy, by anyone but the requester. Distinct, sorted.
pub fn approvers_to_check(votes: &[Vote], uid: &str, spec: &AccessRequestSpec) -> Vec<String> {
    votes
        .iter()
        .filter(|v| counts_at_all(v, uid, spec))
        .map(|v| v.approver.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn counts_at_all(v: &Vote, uid: &str, spec: &AccessRequestSpec) -> bool {
    v.request_uid == uid && v.policy == spec.policy && v.approver != spec.requester.username
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

/// Counts the votes: only this request's (uid, policy), never the requester's, only approvers
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
                format!("AccessPolicy {} does not exist", input.spec.policy),
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
                self.status.phase = Some(AccessPhase::Revoked);
                let message = format!("GroupMembership {name} was deleted; the grant was revoked");
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
            Membership::Absent => {
                let Some(policy) = input.policy else {
                    return self.fail(
                        reason::POLICY_NOT_FOUND,
                        format!(
                            "AccessPolicy {} was deleted before the grant",
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
                    self.status.phase = Some(AccessPhase::Revoked);
                    let message = "the request was deleted; the grant was revoked".to_owned();
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
