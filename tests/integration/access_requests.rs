//! Just-in-time access requests over real HTTP: the Kubernetes API test server (serving the
//! committed CRDs, answering SubjectAccessReviews from rules set here) and the Okta emulator,
//! with the `GroupMembership` and `AccessRequest` reconcilers running.
//!
//! The test server cannot run the ValidatingAdmissionPolicy's CEL, so these tests write the
//! identities the policy would have admitted; what they prove is the operator's side: it
//! honours approvals only with the shipped policy installed, re-checks approvers, ignores
//! self-approval, lets a Deny win, and grants through an owned GroupMembership.

use crate::membership_support;
use crate::support;

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use kube_test_server::{AuthzRule, AuthzSubject};
use membership_support::*;
use okta_ciam_operator::controller::runtime::Context;
use okta_ciam_operator::controller::runtime::leader::Leadership;
use okta_ciam_operator::controller::runtime::server::Readiness;
use okta_ciam_operator::controller::{access, admission};
use okta_ciam_operator::crd::{AccessPhase, AccessRequest, GroupMembership};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const GROUP: &str = "Eng On-Call";

/// The membership harness plus the access request controller.
struct Access {
    h: Harness,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Access {
    async fn start() -> Access {
        let h = Harness::start().await;
        let stop = CancellationToken::new();
        let ctx = Context {
            kube: h.kube.clone(),
            namespaces: Vec::new(),
            domain_policy: policy(),
            metrics: h.metrics.clone(),
            clients: h.registry.clone(),
            readiness: Readiness::new(),
            leadership: Leadership::always(&stop),
            shutdown: stop.clone(),
        };
        let settings = access::Settings {
            recheck: Duration::from_millis(300),
            retry_delay: Duration::from_millis(200),
        };
        let task = tokio::spawn(async move {
            let (synced, _) = tokio::sync::oneshot::channel();
            access::run_with(ctx, settings, synced).await.unwrap();
        });
        Access { h, stop, task }
    }

    async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
        self.h.shutdown().await;
    }

    /// Creates AccessPolicy `name` (rules in `extra` put over the defaults: one approval,
    /// Eng On-Call through acme, from namespace identity, at most 1h).
    fn policy(&self, name: &str, extra: Value) -> impl Future<Output = ()> + '_ {
        let mut requests = json!({
            "connectorRef": {"name": "acme"}, "namespaces": [NS], "groups": [GROUP],
            "maxDuration": "1h",
        });
        requests
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let obj = json!({"apiVersion": "oktaciam.io/v1alpha1", "kind": "AccessPolicy",
                         "metadata": {"name": name}, "spec": {"requests": requests}});
        let name = name.to_owned();
        async move {
            let api: Api<okta_ciam_operator::crd::AccessPolicy> = Api::all(self.h.kube.clone());
            support::apply(&api, "test", &name, &obj).await;
        }
    }

    /// Installs the shipped ValidatingAdmissionPolicy and binding, `binding` edited.
    async fn install_admission(
        &self,
        edit_binding: impl FnOnce(&mut ValidatingAdmissionPolicyBinding),
    ) {
        let (policy, mut binding) = admission::SHIPPED.clone();
        edit_binding(&mut binding);
        Api::<ValidatingAdmissionPolicy>::all(self.h.kube.clone())
            .create(&PostParams::default(), &policy)
            .await
            .unwrap();
        Api::<ValidatingAdmissionPolicyBinding>::all(self.h.kube.clone())
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
    }

    /// Lets `user` approve under AccessPolicy `policy` (RBAC verb approve, by name).
    fn may_approve(&self, user: &str, policy: &str) -> AuthzRule {
        let rule = AuthzRule {
            subject: AuthzSubject::User(user.into()),
            verb: "approve".into(),
            group: "oktaciam.io".into(),
            resource: "accesspolicies".into(),
            name: policy.into(),
        };
        self.h.server.authorizer().allow(rule.clone());
        rule
    }

    fn requests(&self) -> Api<AccessRequest> {
        Api::namespaced(self.h.kube.clone(), NS)
    }

    /// alice asks for Eng On-Call for `duration`; returns the request's uid.
    async fn request(&self, name: &str, duration: &str) -> String {
        let obj: AccessRequest = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"policy": "oncall", "requester": {"username": "alice@example.com"},
                     "group": GROUP, "duration": duration, "reason": "INC-7 paging"},
        }))
        .unwrap();
        let created = self
            .requests()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
        created.uid().unwrap()
    }

    /// `approver` decides on request `name` (uid `uid`) under policy oncall.
    async fn decide(&self, name: &str, uid: &str, approver: &str, decision: &str) {
        let obj = json!({
            "apiVersion": "oktaciam.io/v1alpha1", "kind": "AccessApproval",
            "metadata": {"generateName": format!("{name}-")},
            "spec": {"request": {"name": name, "uid": uid}, "policy": "oncall",
                     "decision": decision, "approver": {"username": approver}},
        });
        let api: Api<okta_ciam_operator::crd::AccessApproval> =
            Api::namespaced(self.h.kube.clone(), NS);
        api.create(
            &PostParams::default(),
            &serde_json::from_value(obj).unwrap(),
        )
        .await
        .unwrap();
    }

    /// Waits until request `name` is in `phase` with its Approved condition's `reason`.
    async fn wait_phase(&self, name: &str, phase: AccessPhase, reason: &str) -> AccessRequest {
        wait_for(&format!("{name}: {phase:?} ({reason})"), || async {
            let r = self.requests().get_opt(name).await.unwrap()?;
            let s = r.status.as_ref()?;
            let approved = s.conditions.iter().find(|c| c.type_ == "Approved")?;
            (s.phase == Some(phase) && approved.reason == reason).then_some(r.clone())
        })
        .await
    }

    fn is_member(&self, login: &str) -> bool {
        self.h.members(GROUP).contains(&self.h.user(login))
    }

    async fn memberships(&self) -> Vec<GroupMembership> {
        self.h
            .gms()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    async fn events(&self, name: &str) -> Vec<(String, String)> {
        self.h.event_reasons(name).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_request_is_granted_through_an_owned_membership_and_expires() {
    let a = Access::start().await;
    a.policy("oncall", json!({})).await;
    a.install_admission(|_| {}).await;
    a.may_approve("bob@example.com", "oncall");
    let uid = a.request("alice-oncall", "4s").await;
    let pending = a
        .wait_phase("alice-oncall", AccessPhase::Pending, "Pending")
        .await;
    assert_eq!(pending.status.unwrap().approvals.as_deref(), Some("0/1"));
    assert!(a.memberships().await.is_empty());
    let writes_before = a.h.writes();
    assert_eq!(writes_before, 0);

    a.decide("alice-oncall", &uid, "bob@example.com", "Approve")
        .await;
    let active = wait_for("alice-oncall Active", || async {
        let r = a.requests().get_opt("alice-oncall").await.unwrap()?;
        (r.status.as_ref()?.phase == Some(AccessPhase::Active)).then_some(r)
    })
    .await;
    assert!(a.is_member("alice@example.com"));
    let status = active.status.unwrap();
    assert_eq!(status.approved_by, ["bob@example.com"]);
    assert_eq!(status.approvals.as_deref(), Some("1/1"));
    assert_eq!(status.duration.as_deref(), Some("4s"));
    assert!(status.expires_at.is_some());
    let gm = a.h.get("access-alice-oncall").await.expect("the grant");
    let owner = &gm.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("AccessRequest", uid.as_str())
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(gm.spec.users, ["alice@example.com"]);
    assert_eq!(gm.spec.duration.as_deref(), Some("4s"));

    let expired = wait_for("alice-oncall Expired", || async {
        let r = a.requests().get_opt("alice-oncall").await.unwrap()?;
        (r.status.as_ref()?.phase == Some(AccessPhase::Expired)).then_some(r)
    })
    .await;
    assert!(!a.is_member("alice@example.com"));
    // One PUT, one DELETE: the grant and its revocation.
    assert_eq!(a.h.writes(), 2);
    let ready = expired
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Expired")
    );
    let events = a.events("alice-oncall").await;
    for reason in ["Requested", "Approved", "Granted", "Expired"] {
        assert!(
            events.iter().any(|(_, r)| r == reason),
            "{reason} in {events:?}"
        );
    }
    // Events name people, never the connector's token.
    let notes: Vec<String> =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(a.h.kube.clone(), NS)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.note)
            .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("alice@example.com") && n.contains("bob@example.com"))
    );
    let token = a.h.okta.token();
    assert!(notes.iter().all(|n| !n.contains(&token)), "{notes:?}");
    let status = serde_json::to_string(&a.requests().get("alice-oncall").await.unwrap()).unwrap();
    assert!(!status.contains(&token), "{status}");
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_is_final_and_writes_nothing() {
    let a = Access::start().await;
    a.policy("oncall", json!({"approvals": 2})).await;
    a.install_admission(|_| {}).await;
    a.may_approve("bob@example.com", "oncall");
    a.may_approve("carol@example.com", "oncall");
    let uid = a.request("alice-oncall", "30m").await;
    a.decide("alice-oncall", &uid, "bob@example.com", "Approve")
        .await;
    wait_for("1/2 approvals", || async {
        let r = a.requests().get_opt("alice-oncall").await.unwrap()?;
        (r.status?.approvals.as_deref() == Some("1/2")).then_some(())
    })
    .await;
    a.decide("alice-oncall", &uid, "carol@example.com", "Deny")
        .await;
    let denied = a
        .wait_phase("alice-oncall", AccessPhase::Denied, "Denied")
        .await;
    assert_eq!(
        denied.status.unwrap().denied_by.as_deref(),
        Some("carol@example.com")
    );
    assert!(a.memberships().await.is_empty());
    assert_eq!(a.h.writes(), 0);
    a.h.wait_event("alice-oncall", "Normal", "Denied").await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_approval_and_approvers_without_rights_are_ignored() {
    let a = Access::start().await;
    a.policy("oncall", json!({"approvals": 2})).await;
    a.install_admission(|_| {}).await;
    // alice holds the approve right herself; it never counts for her own request.
    a.may_approve("alice@example.com", "oncall");
    let bob = a.may_approve("bob@example.com", "oncall");
    a.may_approve("carol@example.com", "oncall");
    let uid = a.request("alice-oncall", "30m").await;
    a.decide("alice-oncall", &uid, "alice@example.com", "Approve")
        .await;
    a.decide("alice-oncall", &uid, "mallory@example.com", "Approve")
        .await;
    a.decide("alice-oncall", &uid, "bob@example.com", "Approve")
        .await;
    wait_for("1/2 approvals", || async {
        let r = a.requests().get_opt("alice-oncall").await.unwrap()?;
        (r.status?.approvals.as_deref() == Some("1/2")).then_some(())
    })
    .await;
    // bob loses the right before the second approval arrives: re-checked, he no longer counts.
    a.h.server.authorizer().revoke(&bob);
    wait_for("0/2 approvals", || async {
        let r = a.requests().get_opt("alice-oncall").await.unwrap()?;
        (r.status?.approvals.as_deref() == Some("0/2")).then_some(())
    })
    .await;
    a.decide("alice-oncall", &uid, "carol@example.com", "Approve")
        .await;
    wait_for("1/2 approvals", || async {
        let r = a.requests().get_opt("alice-oncall").await.unwrap()?;
        (r.status?.approvals.as_deref() == Some("1/2")).then_some(())
    })
    .await;
    let r = a.requests().get("alice-oncall").await.unwrap();
    assert_eq!(r.status.unwrap().phase, Some(AccessPhase::Pending));
    assert!(a.memberships().await.is_empty());
    assert!(!a.is_member("alice@example.com"));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_admission_policy_approvals_are_unverifiable() {
    let a = Access::start().await;
    a.policy("oncall", json!({})).await;
    a.may_approve("bob@example.com", "oncall");
    let uid = a.request("alice-oncall", "30m").await;
    a.decide("alice-oncall", &uid, "bob@example.com", "Approve")
        .await;
    let r = a
        .wait_phase(
            "alice-oncall",
            AccessPhase::Pending,
            "ApprovalsUnverifiable",
        )
        .await;
    let message = &r.status.unwrap().conditions[0].message;
    assert!(message.contains("is not installed"), "{message}");
    a.h.wait_event("alice-oncall", "Warning", "ApprovalsUnverifiable")
        .await;
    // A binding that only warns does not enforce either.
    a.install_admission(|b| b.spec.validation_actions = vec!["Warn".into()])
        .await;
    wait_for("the binding named", || async {
        let r = a.requests().get_opt("alice-oncall").await.unwrap()?;
        let m = r.status?.conditions.first()?.message.clone();
        m.contains("does not deny").then_some(())
    })
    .await;
    assert!(a.memberships().await.is_empty());
    assert_eq!(a.h.writes(), 0);
    // Enforcing: the same approval now counts.
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(a.h.kube.clone());
    bindings
        .patch(
            admission::binding_name(),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"validationActions": ["Deny"]}})),
        )
        .await
        .unwrap();
    a.wait_phase("alice-oncall", AccessPhase::Active, "Approved")
        .await;
    assert!(a.is_member("alice@example.com"));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_active_request_revokes_the_grant_first() {
    let a = Access::start().await;
    a.policy("oncall", json!({})).await;
    a.install_admission(|_| {}).await;
    a.may_approve("bob@example.com", "oncall");
    let uid = a.request("alice-oncall", "30m").await;
    a.decide("alice-oncall", &uid, "bob@example.com", "Approve")
        .await;
    a.wait_phase("alice-oncall", AccessPhase::Active, "Approved")
        .await;
    assert!(a.is_member("alice@example.com"));
    a.requests()
        .delete("alice-oncall", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("alice-oncall gone", || async {
        a.requests()
            .get_opt("alice-oncall")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(!a.is_member("alice@example.com"));
    assert!(a.memberships().await.is_empty());
    a.h.wait_event("alice-oncall", "Normal", "Revoked").await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecided_request_expires_after_the_pending_timeout() {
    let a = Access::start().await;
    a.policy("oncall", json!({"pendingTimeout": "2s"})).await;
    a.install_admission(|_| {}).await;
    a.request("alice-oncall", "30m").await;
    let r = a
        .wait_phase("alice-oncall", AccessPhase::Expired, "PendingTimeout")
        .await;
    assert!(r.status.unwrap().decided_at.is_some());
    a.h.wait_event("alice-oncall", "Normal", "Expired").await;
    assert!(a.memberships().await.is_empty());
    assert_eq!(a.h.writes(), 0);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_outside_the_policy_or_the_email_domains_fail_before_any_write() {
    let a = Access::start().await;
    a.policy("oncall", json!({"allowRequestsForOthers": true}))
        .await;
    a.install_admission(|_| {}).await;
    a.may_approve("bob@example.com", "oncall");
    let obj: AccessRequest = serde_json::from_value(json!({
        "metadata": {"name": "for-mallory"},
        "spec": {"policy": "oncall", "requester": {"username": "alice@example.com"},
                 "user": "mallory@evil.example.org", "group": "Eng Admins"},
    }))
    .unwrap();
    let uid = a
        .requests()
        .create(&PostParams::default(), &obj)
        .await
        .unwrap()
        .uid()
        .unwrap();
    a.decide("for-mallory", &uid, "bob@example.com", "Approve")
        .await;
    let r = a
        .wait_phase("for-mallory", AccessPhase::Failed, "InvalidRequest")
        .await;
    let message = r.status.unwrap().conditions[0].message.clone();
    assert!(
        message.contains("\"Eng Admins\" is not requestable"),
        "{message}"
    );
    assert!(
        message.contains("mallory@evil.example.org is not in the connector's email domains"),
        "{message}"
    );
    a.h.wait_event("for-mallory", "Warning", "InvalidRequest")
        .await;
    assert!(a.memberships().await.is_empty());
    assert_eq!(a.h.writes(), 0);
    a.shutdown().await;
}
