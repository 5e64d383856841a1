//! Authenticated decisions, shared by just-in-time access (`AccessApproval`) and user access
//! reviews (`AccessReviewDecision`): the fail-closed check of the shipped admission policy
//! ([`verify`], [`state`]) and the re-check of a decider's RBAC at decision time
//! ([`subject_may`]). The operator honours decisions only while the
//! `ValidatingAdmissionPolicy` and its binding from `manifests/install/access-admission.yaml`
//! are installed, unmodified in what the checks rely on, and enforcing.
//!
//! What must match the shipped manifest: the policy's `matchConstraints`, `validations`,
//! `matchConditions` (none) and `paramKind` (none), and `failurePolicy: Fail`; the binding's
//! `policyName`, `matchResources` (none) and `paramRef` (none), and `validationActions`
//! containing `Deny`. Messages, audit annotations and labels may differ.

use std::sync::LazyLock;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use serde::Deserialize;

/// The shipped manifest: the policy, then its binding.
pub const MANIFEST: &str = include_str!("../../manifests/install/access-admission.yaml");

/// The shipped policy and binding, parsed once. The manifest is part of the binary, so a
/// parse failure is a build defect (and `tests::shipped_manifest_parses` catches it).
pub static SHIPPED: LazyLock<(ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding)> =
    LazyLock::new(|| {
        let mut docs = serde_yaml::Deserializer::from_str(MANIFEST);
        let policy = ValidatingAdmissionPolicy::deserialize(docs.next().expect("policy document"))
            .expect("the shipped ValidatingAdmissionPolicy parses");
        let binding =
            ValidatingAdmissionPolicyBinding::deserialize(docs.next().expect("binding document"))
                .expect("the shipped ValidatingAdmissionPolicyBinding parses");
        (policy, binding)
    });

/// The name of the shipped policy (and of its binding).
pub fn policy_name() -> &'static str {
    SHIPPED.0.metadata.name.as_deref().unwrap_or_default()
}

/// The name of the shipped binding.
pub fn binding_name() -> &'static str {
    SHIPPED.1.metadata.name.as_deref().unwrap_or_default()
}

/// Whether the shipped admission policy is in force in the cluster; any failure to tell counts
/// as not (the `Err` says why, in one line).
pub async fn state(kube: &kube::Client) -> Result<(), String> {
    let policy = Api::<ValidatingAdmissionPolicy>::all(kube.clone())
        .get_opt(policy_name())
        .await
        .map_err(|e| format!("cannot read the ValidatingAdmissionPolicy: {e}"))?;
    let binding = Api::<ValidatingAdmissionPolicyBinding>::all(kube.clone())
        .get_opt(binding_name())
        .await
        .map_err(|e| format!("cannot read the ValidatingAdmissionPolicyBinding: {e}"))?;
    verify(policy.as_ref(), binding.as_ref())
}

/// What a decider must be allowed: the RBAC verb on one named object of the operator's group.
#[derive(Debug, Clone, Copy)]
pub struct Permission<'a> {
    /// The plural resource, such as `accesspolicies`.
    pub resource: &'a str,
    /// The object's namespace; `None` for cluster-scoped kinds.
    pub namespace: Option<&'a str>,
    /// The object's name.
    pub name: &'a str,
    /// The verb, such as `approve`.
    pub verb: &'a str,
}

/// Asks the API server (SubjectAccessReview) whether `user` with `groups` is allowed
/// `permission` now: admission checked it when the decision was made; RBAC may have changed
/// since.
pub async fn subject_may(
    kube: &kube::Client,
    user: &str,
    groups: Vec<String>,
    permission: Permission<'_>,
) -> kube::Result<bool> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: Some(groups).filter(|g| !g.is_empty()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(crate::crd::GROUP.to_owned()),
                resource: Some(permission.resource.to_owned()),
                namespace: permission.namespace.map(str::to_owned),
                verb: Some(permission.verb.to_owned()),
                name: Some(permission.name.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(kube.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer
        .status
        .is_some_and(|s| s.allowed && s.denied != Some(true)))
}

/// Whether the installed objects enforce what the shipped ones do; else why not (one line,
/// naming the object and the field).
pub fn verify(
    installed_policy: Option<&ValidatingAdmissionPolicy>,
    installed_binding: Option<&ValidatingAdmissionPolicyBinding>,
) -> Result<(), String> {
    let (shipped_policy, shipped_binding) = &*SHIPPED;
    let name = policy_name();
    let Some(policy) = installed_policy else {
        return Err(format!("ValidatingAdmissionPolicy {name} is not installed"));
    };
    let Some(binding) = installed_binding else {
        return Err(format!(
            "ValidatingAdmissionPolicyBinding {} is not installed",
            binding_name()
        ));
    };
    let differs = |field: &str| format!("ValidatingAdmissionPolicy {name}: {field} was modified");
    let (Some(spec), Some(shipped)) = (&policy.spec, &shipped_policy.spec) else {
        return Err(differs("spec"));
    };
    if spec.match_constraints != shipped.match_constraints {
        return Err(differs("matchConstraints"));
    }
    if spec.validations != shipped.validations {
        return Err(differs("validations"));
    }
    if spec
        .match_conditions
        .as_ref()
        .is_some_and(|c| !c.is_empty())
    {
        return Err(differs("matchConditions"));
    }
    if spec.param_kind.is_some() {
        return Err(differs("paramKind"));
    }
    // Unset is served as `Fail`.
    if spec.failure_policy.as_deref().unwrap_or("Fail") != "Fail" {
        return Err(differs("failurePolicy"));
    }
    let bname = binding_name();
    let bdiffers =
        |field: &str| format!("ValidatingAdmissionPolicyBinding {bname}: {field} was modified");
    let (bspec, bshipped) = (&binding.spec, &shipped_binding.spec);
    if bspec.policy_name != bshipped.policy_name {
        return Err(bdiffers("policyName"));
    }
    if bspec.param_ref.is_some() {
        return Err(bdiffers("paramRef"));
    }
    if !matches_everything(bspec.match_resources.as_ref()) {
        return Err(bdiffers("matchResources"));
    }
    if !bspec.validation_actions.iter().any(|x| x == "Deny") {
        return Err(format!(
            "ValidatingAdmissionPolicyBinding {bname} does not deny (validationActions lacks Deny)"
        ));
    }
    Ok(())
}

/// A binding's `matchResources` that narrows nothing: unset, or only the API server's
/// defaults (empty selectors, `matchPolicy: Equivalent`, no rules).
fn matches_everything(
    m: Option<&k8s_openapi::api::admissionregistration::v1::MatchResources>,
) -> bool {
    let Some(m) = m else { return true };
    let empty_selector =
        |s: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>| {
            s.as_ref().is_none_or(|s| {
                s.match_labels.as_ref().is_none_or(|l| l.is_empty())
                    && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
            })
        };
    empty_selector(&m.namespace_selector)
        && empty_selector(&m.object_selector)
        && m.resource_rules.as_ref().is_none_or(|r| r.is_empty())
        && m.exclude_resource_rules
            .as_ref()
            .is_none_or(|r| r.is_empty())
        && m.match_policy.as_deref().is_none_or(|p| p == "Equivalent")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::MatchResources;

    fn shipped() -> (ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding) {
        SHIPPED.clone()
    }

    #[test]
    fn shipped_manifest_parses_and_verifies_against_itself() {
        let (p, b) = shipped();
        assert_eq!(policy_name(), "okta-ciam-access-identity");
        assert_eq!(b.spec.policy_name, policy_name());
        assert_eq!(verify(Some(&p), Some(&b)), Ok(()));
    }

    #[test]
    fn missing_objects_are_named() {
        let (p, b) = shipped();
        let e = verify(None, Some(&b)).unwrap_err();
        assert!(
            e.contains("ValidatingAdmissionPolicy okta-ciam-access-identity is not installed"),
            "{e}"
        );
        let e = verify(Some(&p), None).unwrap_err();
        assert!(
            e.contains("Binding okta-ciam-access-identity is not installed"),
            "{e}"
        );
    }

    #[test]
    fn a_dropped_or_edited_validation_is_refused() {
        let (mut p, b) = shipped();
        p.spec.as_mut().unwrap().validations.as_mut().unwrap().pop();
        assert!(
            verify(Some(&p), Some(&b))
                .unwrap_err()
                .contains("validations")
        );
        let (mut p, _) = shipped();
        p.spec.as_mut().unwrap().validations.as_mut().unwrap()[0].expression = "true".into();
        assert!(
            verify(Some(&p), Some(&b))
                .unwrap_err()
                .contains("validations")
        );
    }

    #[test]
    fn narrowed_matching_ignore_policy_or_params_are_refused() {
        let (p0, b0) = shipped();
        let mut p = p0.clone();
        p.spec
            .as_mut()
            .unwrap()
            .match_constraints
            .as_mut()
            .unwrap()
            .resource_rules
            .as_mut()
            .unwrap()[0]
            .operations = Some(vec!["UPDATE".into()]);
        assert!(
            verify(Some(&p), Some(&b0))
                .unwrap_err()
                .contains("matchConstraints")
        );
        let mut p = p0.clone();
        p.spec.as_mut().unwrap().failure_policy = Some("Ignore".into());
        assert!(
            verify(Some(&p), Some(&b0))
                .unwrap_err()
                .contains("failurePolicy")
        );
        let mut p = p0.clone();
        p.spec.as_mut().unwrap().match_conditions = Some(vec![Default::default()]);
        assert!(
            verify(Some(&p), Some(&b0))
                .unwrap_err()
                .contains("matchConditions")
        );
        // The API server's defaults on the binding narrow nothing.
        let mut b = b0.clone();
        b.spec.match_resources = Some(MatchResources {
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(Default::default()),
            object_selector: Some(Default::default()),
            ..Default::default()
        });
        assert_eq!(verify(Some(&p0), Some(&b)), Ok(()));
        let mut b = b0.clone();
        b.spec.match_resources = Some(MatchResources {
            namespace_selector: Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some([("audit".to_owned(), "only".to_owned())].into()),
                    ..Default::default()
                },
            ),
            ..Default::default()
        });
        assert!(
            verify(Some(&p0), Some(&b))
                .unwrap_err()
                .contains("matchResources")
        );
        let mut b = b0.clone();
        b.spec.policy_name = "other".into();
        assert!(
            verify(Some(&p0), Some(&b))
                .unwrap_err()
                .contains("policyName")
        );
    }

    #[test]
    fn a_binding_that_only_warns_or_audits_is_refused() {
        let (p, mut b) = shipped();
        b.spec.validation_actions = vec!["Warn".into(), "Audit".into()];
        let e = verify(Some(&p), Some(&b)).unwrap_err();
        assert!(e.contains("does not deny"), "{e}");
        b.spec.validation_actions = vec!["Audit".into(), "Deny".into()];
        assert_eq!(verify(Some(&p), Some(&b)), Ok(()));
    }
}
