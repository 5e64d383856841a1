//! Start-up check that the operator's CRDs are installed.
//!
//! Uses API discovery (`GET /apis/oktaciam.io/v1alpha1`), which every authenticated client may
//! read through the default `system:discovery` role, so the operator needs no RBAC on
//! CustomResourceDefinition objects.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;

use super::{Error, Result};

/// API group and version of the operator's resources.
pub const API_VERSION: &str = "oktaciam.io/v1alpha1";

/// The plural resource names that must be served, with their CRD names for messages.
pub const REQUIRED_RESOURCES: [(&str, &str); 8] = [
    ("oktaciamconnectors", "oktaciamconnectors.oktaciam.io"),
    ("groupmemberships", "groupmemberships.oktaciam.io"),
    ("accesspolicies", "accesspolicies.oktaciam.io"),
    ("accessrequests", "accessrequests.oktaciam.io"),
    ("accessapprovals", "accessapprovals.oktaciam.io"),
    ("accessreviews", "accessreviews.oktaciam.io"),
    ("accessreviewchunks", "accessreviewchunks.oktaciam.io"),
    ("accessreviewdecisions", "accessreviewdecisions.oktaciam.io"),
];

/// The CRD names whose resources are absent from a discovery answer (`None`: the whole group
/// version is unknown to the API server).
pub fn missing_crds(resources: Option<&APIResourceList>) -> Vec<&'static str> {
    REQUIRED_RESOURCES
        .iter()
        .filter(|(plural, _)| {
            !resources.is_some_and(|list| list.resources.iter().any(|r| r.name == *plural))
        })
        .map(|(_, crd)| *crd)
        .collect()
}

/// Asks the API server whether every CRD is installed; fails with
/// [`Error::CrdsMissing`] naming the missing ones.
pub async fn check_crds(client: &kube::Client) -> Result<()> {
    let resources = match client.list_api_group_resources(API_VERSION).await {
        Ok(list) => Some(list),
        // The API server answers 404 for a group version it does not serve.
        Err(kube::Error::Api(status)) if status.code == 404 => None,
        Err(e) => return Err(Error::CrdCheck(e)),
    };
    let missing = missing_crds(resources.as_ref());
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::CrdsMissing {
            missing: missing.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    fn list(names: &[&str]) -> APIResourceList {
        APIResourceList {
            group_version: API_VERSION.into(),
            resources: names
                .iter()
                .map(|n| APIResource {
                    name: (*n).into(),
                    namespaced: true,
                    kind: String::new(),
                    singular_name: String::new(),
                    verbs: vec![],
                    ..APIResource::default()
                })
                .collect(),
        }
    }

    #[test]
    fn all_present() {
        let l = list(&[
            "oktaciamconnectors",
            "oktaciamconnectors/status",
            "groupmemberships",
            "accesspolicies",
            "accessrequests",
            "accessrequests/status",
            "accessapprovals",
            "accessreviews",
            "accessreviewchunks",
            "accessreviewdecisions",
        ]);
        assert!(missing_crds(Some(&l)).is_empty());
    }

    #[test]
    fn one_missing() {
        let l = list(&[
            "oktaciamconnectors",
            "oktaciamconnectors/status",
            "accesspolicies",
            "accessrequests",
            "accessapprovals",
            "accessreviews",
            "accessreviewchunks",
            "accessreviewdecisions",
        ]);
        assert_eq!(missing_crds(Some(&l)), vec!["groupmemberships.oktaciam.io"]);
    }

    #[test]
    fn group_unknown() {
        assert_eq!(
            missing_crds(None),
            vec![
                "oktaciamconnectors.oktaciam.io",
                "groupmemberships.oktaciam.io",
                "accesspolicies.oktaciam.io",
                "accessrequests.oktaciam.io",
                "accessapprovals.oktaciam.io",
                "accessreviews.oktaciam.io",
                "accessreviewchunks.oktaciam.io",
                "accessreviewdecisions.oktaciam.io",
            ]
        );
    }

    #[test]
    fn message_tells_how_to_fix() {
        let e = Error::CrdsMissing {
            missing: "groupmemberships.oktaciam.io".into(),
        };
        let msg = e.to_string();
        assert!(msg.contains("CRDs not installed"), "{msg}");
        assert!(msg.contains("kubectl apply -k manifests/"), "{msg}");
        assert!(msg.contains("groupmemberships.oktaciam.io"), "{msg}");
    }
}
