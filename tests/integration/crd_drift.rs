//! The committed `crds/*.yaml` must be exactly what the Rust types generate.

use okta_ciam_operator::crd::cli::render_crds;

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
    let mut stale = Vec::new();
    for (name, generated) in render_crds().expect("CRDs render") {
        let path = format!("{dir}/{name}");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            stale.push(path);
        }
    }
    assert!(
        stale.is_empty(),
        "these CRD files differ from the Rust types in src/crd/: {stale:?}\n\
         regenerate them with `cargo run -- crdgen` and commit the result"
    );
}

#[test]
fn crds_have_the_names_kubectl_users_rely_on() {
    let crds = render_crds().unwrap();
    let names: Vec<&str> = crds.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "oktaciamconnectors.yaml",
            "groupmemberships.yaml",
            "accesspolicies.yaml",
            "accessrequests.yaml",
            "accessapprovals.yaml",
            "accessreviews.yaml",
            "accessreviewchunks.yaml",
            "accessreviewdecisions.yaml"
        ]
    );
    for (_, yaml) in &crds {
        let crd: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap();
        assert_eq!(crd["spec"]["group"], "oktaciam.io");
        // Policies are cluster-wide; everything else lives with its connector.
        let scope = if kind == "AccessPolicy" {
            "Cluster"
        } else {
            "Namespaced"
        };
        assert_eq!(crd["spec"]["scope"], scope, "{kind}");
        assert_eq!(
            crd["spec"]["names"]["categories"],
            serde_json::json!(["okta"])
        );
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        // Policies, approvals and review decisions are written by people only; they have no
        // status.
        if !matches!(
            kind,
            "AccessPolicy" | "AccessApproval" | "AccessReviewDecision"
        ) {
            assert_eq!(version["subresources"]["status"], serde_json::json!({}));
        }
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        let expected: &[&str] = match kind {
            "OktaCiamConnector" => &["Domain", "Ready", "Users", "Groups", "Last Sync", "Age"],
            "GroupMembership" => &["Group", "Users", "Ready", "Expires", "Age"],
            "AccessPolicy" => &["Connector", "Org", "Approvals", "Max", "Age"],
            "AccessRequest" => &["Phase", "Group", "User", "Approvals", "Expires", "Age"],
            "AccessApproval" => &["Request", "Decision", "Approver", "Age"],
            "AccessReview" => &["Phase", "Connector", "Items", "Undecided", "Due", "Age"],
            "AccessReviewChunk" => &["Review", "Index", "Age"],
            "AccessReviewDecision" => &["Review", "Decision", "Reviewer", "Age"],
            other => panic!("unexpected kind {other}"),
        };
        assert_eq!(columns, expected);
    }
}

/// Every property in the schemas carries a description, which `kubectl explain` shows.
#[test]
fn every_schema_property_is_described() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                let here = format!("{path}.{name}");
                if prop
                    .get("description")
                    .and_then(|d| d.as_str())
                    .is_none_or(str::is_empty)
                {
                    missing.push(here.clone());
                }
                walk(&here, prop, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for (name, yaml) in render_crds().unwrap() {
        let crd: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
        walk(
            name,
            &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
            &mut missing,
        );
    }
    assert!(
        missing.is_empty(),
        "properties without a description: {missing:?}"
    );
}
