//! The shipped ValidatingAdmissionPolicy (`manifests/install/access-admission.yaml`): no test
//! here can run its CEL (only a real API server does), so these pin what can be checked
//! without one: it parses as the Kubernetes types, `kubectl kustomize manifests/` emits it
//! unchanged, every `object.spec` field its expressions read exists in the
//! committed CRDs, and it covers each identity check docs/access-requests.md promises.

use crate::common;

use common::{CrdValidator, load_yaml_docs, repo_path};
use okta_ciam_operator::controller::admission;
use serde_json::Value;

const FILE: &str = "manifests/install/access-admission.yaml";

fn expressions() -> Vec<String> {
    let policy = &load_yaml_docs(FILE)[0];
    policy["spec"]["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["expression"].as_str().unwrap().to_owned())
        .collect()
}

/// The schema node of `path` (dot-separated, below `spec`) in `crds/<file>`, if it exists.
fn schema_at(file: &str, path: &str) -> Option<Value> {
    let crd = load_yaml_docs(&format!("crds/{file}")).remove(0);
    let mut node =
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone();
    for part in path.split('.') {
        node = node.get("properties")?.get(part)?.clone();
    }
    Some(node)
}

#[test]
fn the_manifest_is_one_policy_and_its_denying_binding() {
    let docs = load_yaml_docs(FILE);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["kind"], "ValidatingAdmissionPolicy");
    assert_eq!(docs[0]["apiVersion"], "admissionregistration.k8s.io/v1");
    assert_eq!(docs[0]["spec"]["failurePolicy"], "Fail");
    assert_eq!(docs[1]["kind"], "ValidatingAdmissionPolicyBinding");
    assert_eq!(docs[1]["spec"]["policyName"], docs[0]["metadata"]["name"]);
    assert_eq!(
        docs[1]["spec"]["validationActions"],
        serde_json::json!(["Deny"])
    );
    // What the operator embeds is this file.
    assert_eq!(
        admission::MANIFEST,
        std::fs::read_to_string(repo_path(FILE)).unwrap()
    );
    let rules = &docs[0]["spec"]["matchConstraints"]["resourceRules"][0];
    assert_eq!(
        rules["resources"],
        serde_json::json!(["accessrequests", "accessapprovals", "accessreviewdecisions"])
    );
    assert_eq!(rules["operations"], serde_json::json!(["CREATE", "UPDATE"]));
}

#[test]
fn every_spec_field_the_expressions_read_exists_in_the_crds() {
    // A trailing segment followed by `(` is a method (`.all(`), not a field.
    let field = regex::Regex::new(r"object\.spec\.([A-Za-z]+(?:\.[A-Za-z]+)*)").unwrap();
    let mut seen = 0;
    for e in expressions() {
        let file = if e.contains("'accessapprovals'") {
            "accessapprovals.yaml"
        } else if e.contains("'accessreviewdecisions'") {
            "accessreviewdecisions.yaml"
        } else {
            "accessrequests.yaml"
        };
        for cap in field.captures_iter(&e) {
            let mut path = &cap[1];
            if e[cap.get(0).unwrap().end()..].starts_with('(') {
                path = path.rsplit_once('.').unwrap().0;
            }
            assert!(
                schema_at(file, path).is_some(),
                "{path} is not a field of {file} (in {e})"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 11);
}

#[test]
fn the_expressions_cover_each_promised_check() {
    let all = expressions();
    let has = |needle: &str| all.iter().any(|e| e.contains(needle));
    assert!(has(
        "object.spec.requester.username == request.userInfo.username"
    ));
    assert!(has(
        "object.spec.approver.username == request.userInfo.username"
    ));
    assert!(has("object.spec.requester.groups.all(g,"));
    assert!(has("object.spec.approver.groups.all(g,"));
    assert!(has(
        "authorizer.group('oktaciam.io').resource('accesspolicies').name(object.spec.policy).check('approve').allowed()"
    ));
    assert!(has("object.spec == oldObject.spec"));
    assert!(has(
        "request.resource.resource != 'accessapprovals' || request.operation != 'UPDATE'"
    ));
    assert!(has(
        "object.spec.reviewer.username == request.userInfo.username"
    ));
    assert!(has("object.spec.reviewer.groups.all(g,"));
    assert!(has(
        "authorizer.group('oktaciam.io').resource('accessreviews').namespace(object.metadata.namespace).name(object.spec.review.name).check('review').allowed()"
    ));
    assert!(has(
        "request.resource.resource != 'accessreviewdecisions' || request.operation != 'UPDATE'"
    ));
    // Balanced parentheses and quotes: a cheap guard against a broken edit.
    for e in &all {
        assert_eq!(e.matches('(').count(), e.matches(')').count(), "{e}");
        assert_eq!(e.matches('\'').count() % 2, 0, "{e}");
    }
}

#[test]
fn kustomize_emits_the_policy_and_binding_unchanged() {
    if std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: kubectl is not installed");
        return;
    }
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(repo_path("manifests"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered: Vec<Value> = serde_yaml::Deserializer::from_slice(&out.stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    for shipped in load_yaml_docs(FILE) {
        let got = rendered
            .iter()
            .find(|d| {
                d["kind"] == shipped["kind"] && d["metadata"]["name"] == shipped["metadata"]["name"]
            })
            .unwrap_or_else(|| panic!("{} not rendered", shipped["kind"]));
        // kustomize 5.5 does not know these kinds are cluster-scoped and adds the install's
        // namespace; kubectl and the API server drop it for cluster-scoped kinds.
        assert_eq!(got["spec"], shipped["spec"]);
    }
}

#[test]
fn the_access_examples_validate_against_the_committed_crds() {
    let mut seen = Vec::new();
    for file in ["policy.yaml", "request.yaml", "approval.yaml"] {
        for doc in load_yaml_docs(&format!("manifests/examples/access/{file}")) {
            let kind = doc["kind"].as_str().unwrap().to_owned();
            let crd = match kind.as_str() {
                "AccessPolicy" => "accesspolicies.yaml",
                "AccessRequest" => "accessrequests.yaml",
                "AccessApproval" => "accessapprovals.yaml",
                other => panic!("{file}: unexpected {other}"),
            };
            let errors = CrdValidator::for_crd_file(crd).errors(&doc);
            assert!(errors.is_empty(), "{file}: {errors:#?}");
            seen.push(kind);
        }
    }
    assert_eq!(seen, ["AccessPolicy", "AccessRequest", "AccessApproval"]);
    // The approvers' role grants exactly the verb the admission policy and operator check.
    let rbac = load_yaml_docs("manifests/examples/access/rbac-approvers.yaml");
    assert_eq!(
        rbac[0]["rules"][0]["verbs"],
        serde_json::json!(["get", "approve"])
    );
    assert_eq!(
        rbac[0]["rules"][0]["resourceNames"],
        serde_json::json!(["oncall"])
    );
    // The request's requester is the approval's request's owner, never the approver.
    let request = &load_yaml_docs("manifests/examples/access/request.yaml")[0];
    let approval = &load_yaml_docs("manifests/examples/access/approval.yaml")[0];
    assert_eq!(
        approval["spec"]["request"]["name"],
        request["metadata"]["name"]
    );
    assert_ne!(
        approval["spec"]["approver"]["username"],
        request["spec"]["requester"]["username"]
    );
}
