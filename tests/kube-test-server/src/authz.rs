//! `authorization.k8s.io/v1` `SubjectAccessReview` and `authentication.k8s.io/v1`
//! `SelfSubjectReview`, answered from rules and identities the test sets, since this server
//! authenticates and authorizes no one.
//!
//! A review is allowed when a rule names its user (or one of its groups), verb, API group,
//! resource and name, as an RBAC rule with `resourceNames` would; `*` matches any verb, group,
//! resource or name. Like kube-apiserver, the answer is the posted object with `status` set
//! (`allowed`, and a `reason` when allowed), status 201, and nothing is stored.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};

use crate::error::{ApiError, Result};

/// Who a rule grants to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A username.
    User(String),
    /// A group.
    Group(String),
}

/// One allowed access, like one RBAC rule with one verb, group, resource and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Who.
    pub subject: Subject,
    /// The verb, or `*`.
    pub verb: String,
    /// The API group, or `*`.
    pub group: String,
    /// The resource plural, or `*`.
    pub resource: String,
    /// The object name, or `*`.
    pub name: String,
}

/// An authenticated identity, as `SelfSubjectReview` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    /// The username.
    pub username: String,
    /// The groups.
    pub groups: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    users: BTreeMap<String, UserInfo>,
    reviews: u64,
}

/// Cloneable handle to the rules and identities.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    state: Arc<Mutex<State>>,
}

impl Authorizer {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Allows what `rule` names.
    pub fn allow(&self, rule: Rule) {
        self.state().rules.push(rule);
    }

    /// Removes every rule equal to `rule` (an RBAC binding deleted).
    pub fn revoke(&self, rule: &Rule) {
        self.state().rules.retain(|r| r != rule);
    }

    /// Makes requests with bearer `token` authenticate as `user` (for `SelfSubjectReview`).
    pub fn authenticate(&self, token: &str, user: UserInfo) {
        self.state().users.insert(token.to_owned(), user);
    }

    /// SubjectAccessReviews answered so far.
    pub fn reviews(&self) -> u64 {
        self.state().reviews
    }

    fn allows(&self, user: &str, groups: &[String], attrs: &Value) -> bool {
        let field = |k: &str| attrs.get(k).and_then(Value::as_str).unwrap_or_default();
        let matches = |want: &str, got: &str| want == "*" || want == got;
        self.state().rules.iter().any(|r| {
            let who = match &r.subject {
                Subject::User(u) => u == user,
                Subject::Group(g) => groups.contains(g),
            };
            who && matches(&r.verb, field("verb"))
                && matches(&r.group, field("group"))
                && matches(&r.resource, field("resource"))
                && matches(&r.name, field("name"))
        })
    }

    /// `POST .../subjectaccessreviews`.
    pub(crate) fn review(&self, mut body: Value) -> Result<Value> {
        let spec = body
            .get("spec")
            .ok_or_else(|| ApiError::BadRequest("SubjectAccessReview without spec".into()))?;
        let user = spec.get("user").and_then(Value::as_str).unwrap_or_default();
        let groups: Vec<String> = spec
            .get("groups")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if user.is_empty() && groups.is_empty() {
            return Err(ApiError::BadRequest(
                "at least one of user or group must be specified".into(),
            ));
        }
        let attrs = spec
            .get("resourceAttributes")
            .ok_or_else(|| ApiError::BadRequest("resourceAttributes required".into()))?;
        let allowed = self.allows(user, &groups, attrs);
        self.state().reviews += 1;
        body["status"] = if allowed {
            json!({"allowed": true, "reason": "allowed by kube-test-server rule"})
        } else {
            json!({"allowed": false})
        };
        Ok(body)
    }

    /// `POST .../selfsubjectreviews` by the client with bearer `token`.
    pub(crate) fn self_review(&self, token: &str, mut body: Value) -> Result<Value> {
        let user = self
            .state()
            .users
            .get(token)
            .cloned()
            .ok_or(ApiError::Unauthorized)?;
        body["status"] = json!({"userInfo": {"username": user.username, "groups": user.groups}});
        Ok(body)
    }
}
