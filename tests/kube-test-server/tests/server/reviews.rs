//! SubjectAccessReview and SelfSubjectReview, answered from the test's rules, and the stored
//! (never evaluated) admission policy objects.

use crate::common;

use common::start;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use kube::Api;
use kube::api::PostParams;
use kube_test_server::{AuthzRule, AuthzSubject, UserInfo};
use serde_json::json;

fn review(user: &str, groups: &[&str], name: &str) -> SubjectAccessReview {
    serde_json::from_value(json!({"spec": {
        "user": user, "groups": groups,
        "resourceAttributes": {"group": "oktaciam.io", "resource": "accesspolicies", "verb": "approve", "name": name},
    }}))
    .unwrap()
}

#[tokio::test]
async fn subject_access_reviews_follow_the_rules_by_user_group_and_name() {
    let server = start().await;
    let api: Api<SubjectAccessReview> = Api::all(server.client());
    let allowed = |r: SubjectAccessReview| r.status.unwrap().allowed;
    let ask = |user: &'static str, groups: &'static [&'static str], name: &'static str| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &review(user, groups, name))
                .await
                .unwrap()
        }
    };
    assert!(!allowed(ask("bob", &[], "oncall").await));
    let by_user = AuthzRule {
        subject: AuthzSubject::User("bob".into()),
        verb: "approve".into(),
        group: "oktaciam.io".into(),
        resource: "accesspolicies".into(),
        name: "oncall".into(),
    };
    server.authorizer().allow(by_user.clone());
    server.authorizer().allow(AuthzRule {
        subject: AuthzSubject::Group("leads".into()),
        name: "*".into(),
        ..by_user.clone()
    });
    assert!(allowed(ask("bob", &[], "oncall").await));
    assert!(!allowed(ask("bob", &[], "admins").await));
    assert!(allowed(ask("carol", &["leads"], "admins").await));
    assert!(!allowed(ask("carol", &[], "admins").await));
    server.authorizer().revoke(&by_user);
    assert!(!allowed(ask("bob", &[], "oncall").await));
    assert_eq!(server.authorizer().reviews(), 6);
    // Nothing is stored, and a review needs a subject.
    let err = api
        .create(&PostParams::default(), &review("", &[], "oncall"))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 400));
}

#[tokio::test]
async fn self_subject_reviews_report_the_token_s_identity_or_401() {
    let server = start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig_as(&path, "alice-token").unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&path).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let api: Api<SelfSubjectReview> = Api::all(client);
    let err = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 401));
    server.authorizer().authenticate(
        "alice-token",
        UserInfo {
            username: "alice@example.com".into(),
            groups: vec!["engineers".into()],
        },
    );
    let me = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    let info = me.status.unwrap().user_info.unwrap();
    assert_eq!(info.username.as_deref(), Some("alice@example.com"));
    assert_eq!(info.groups, Some(vec!["engineers".to_owned()]));
}

#[tokio::test]
async fn admission_policy_objects_are_stored_cluster_scoped() {
    let server = start().await;
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(server.client());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(server.client());
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"validations": [{"expression": "true"}]},
    }))
    .unwrap();
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"policyName": "p", "validationActions": ["Deny"]},
    }))
    .unwrap();
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let got = policies.get("p").await.unwrap();
    assert_eq!(got.spec.unwrap().validations.unwrap()[0].expression, "true");
    assert_eq!(
        bindings.get("p").await.unwrap().spec.validation_actions,
        ["Deny"]
    );
}
