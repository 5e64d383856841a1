//! The shipped manifests: examples (and the YAML in README.md and docs/gitops.md) valid against
//! the committed CRDs, least-privilege RBAC, a hardened Deployment, a tight NetworkPolicy, and
//! kustomize rendering.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::{CrdValidator, load_yaml_docs, repo_path};
use serde::Deserialize;
use serde_json::{Value, json};

const EXAMPLES: &[&str] = &[
    "secret.yaml",
    "connector.yaml",
    "connector-oauth.yaml",
    "groupmembership-plain.yaml",
    "groupmembership-expiring.yaml",
    "groupmembership-shared.yaml",
    "migration.yaml",
    "accesspolicy-standing.yaml",
];

fn examples() -> Vec<(String, Value)> {
    let dir = repo_path("manifests/examples");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = EXAMPLES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "every example file is listed here, so none goes unchecked"
    );
    EXAMPLES
        .iter()
        .flat_map(|f| {
            load_yaml_docs(&format!("manifests/examples/{f}"))
                .into_iter()
                .map(|d| (f.to_string(), d))
        })
        .collect()
}

fn of_kind<'a>(docs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| d)
        .collect()
}

fn validator(kind: &str) -> CrdValidator {
    match kind {
        "OktaCiamConnector" => CrdValidator::for_crd_file("oktaciamconnectors.yaml"),
        "GroupMembership" => CrdValidator::for_crd_file("groupmemberships.yaml"),
        "AccessPolicy" => CrdValidator::for_crd_file("accesspolicies.yaml"),
        other => panic!("no CRD for {other}"),
    }
}

#[test]
fn every_example_custom_resource_validates_against_the_committed_crd() {
    let docs = examples();
    let mut checked = BTreeMap::<String, usize>::new();
    for (file, doc) in &docs {
        if doc["apiVersion"] != "oktaciam.io/v1alpha1" {
            assert_eq!(doc["apiVersion"], "v1", "{file}: unexpected object {doc}");
            continue;
        }
        let kind = doc["kind"].as_str().unwrap();
        let errors = validator(kind).errors(doc);
        assert!(
            errors.is_empty(),
            "{file} ({}): {errors:#?}",
            doc["metadata"]["name"]
        );
        // AccessPolicy is cluster-scoped; the rest live in the tenant's namespace.
        let namespace = (kind != "AccessPolicy").then_some("identity");
        assert_eq!(doc["metadata"]["namespace"].as_str(), namespace, "{file}");
        *checked.entry(kind.to_owned()).or_default() += 1;
    }
    assert_eq!(checked.get("OktaCiamConnector"), Some(&3));
    assert_eq!(checked.get("GroupMembership"), Some(&5));
    assert_eq!(checked.get("AccessPolicy"), Some(&1));
}

/// The contents of every fenced ```` ```yaml ```` block in `text`, in order.
fn fenced_yaml_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```yaml" | "```yml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "unterminated ```yaml block");
    blocks
}

/// The YAML documents of one fenced block (empty documents skipped).
fn yaml_docs(what: &str, block: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(block)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|d| !d.is_null())
        .collect()
}

/// Validates the custom resources among `docs` against the committed CRDs and checks every
/// other object is one of `others` (apiVersion, kind); returns the kinds seen, counted.
fn check_documented_objects(
    what: &str,
    docs: &[Value],
    others: &[(&str, &str)],
) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::<String, usize>::new();
    for doc in docs {
        let (api_version, kind) = (doc["apiVersion"].as_str(), doc["kind"].as_str());
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            panic!("{what}: a YAML document without apiVersion and kind: {doc}");
        };
        if api_version == "oktaciam.io/v1alpha1" {
            let errors = validator(kind).errors(doc);
            assert!(
                errors.is_empty(),
                "{what} ({kind} {}): {errors:#?}",
                doc["metadata"]["name"]
            );
        } else {
            assert!(
                others.contains(&(api_version, kind)),
                "{what}: unexpected {api_version} {kind}"
            );
        }
        *seen.entry(kind.to_owned()).or_default() += 1;
    }
    seen
}

#[test]
fn readme_worked_example_validates_and_references_itself() {
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let (_, section) = readme
        .split_once("\n## A worked example\n")
        .expect("README has the worked example section");
    let section = section.split("\n## ").next().unwrap();
    let block = fenced_yaml_blocks(section)
        .into_iter()
        .next()
        .expect("a ```yaml block in the worked example");
    let docs = yaml_docs("README worked example", &block);
    let seen = check_documented_objects("README worked example", &docs, &[("v1", "Secret")]);
    let count = |k: &str| seen.get(k).copied().unwrap_or(0);
    assert_eq!(
        (
            count("Secret"),
            count("OktaCiamConnector"),
            count("GroupMembership")
        ),
        (1, 1, 1),
        "{seen:?}"
    );
    let one = |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap();
    let (secret, connector, membership) = (
        one("Secret"),
        one("OktaCiamConnector"),
        one("GroupMembership"),
    );
    let ns = &connector["metadata"]["namespace"];
    assert!(ns.is_string());
    assert_eq!(&secret["metadata"]["namespace"], ns);
    assert_eq!(&membership["metadata"]["namespace"], ns);
    assert_eq!(
        connector["spec"]["tokenSecretRef"]["name"],
        secret["metadata"]["name"]
    );
    // The key defaults to apiToken, which the Secret holds.
    let key = connector["spec"]["tokenSecretRef"]["key"]
        .as_str()
        .unwrap_or("apiToken");
    assert!(secret["stringData"][key].is_string(), "{secret}");
    assert_eq!(
        membership["spec"]["connectorRef"]["name"],
        connector["metadata"]["name"]
    );
    // The CRD's CEL rules, which the JSON Schema check above does not evaluate.
    let group = &membership["spec"]["group"];
    assert!(
        group["name"].is_string() != group["id"].is_string(),
        "{group}"
    );
    assert!(membership["spec"]["expiresAt"].is_null() || membership["spec"]["duration"].is_null());
}

#[test]
fn gitops_doc_yaml_blocks_are_known_kinds_and_custom_resources_validate() {
    let text = std::fs::read_to_string(repo_path("docs/gitops.md")).unwrap();
    let blocks = fenced_yaml_blocks(&text);
    assert!(!blocks.is_empty(), "docs/gitops.md has ```yaml blocks");
    let docs: Vec<Value> = blocks
        .iter()
        .enumerate()
        .flat_map(|(i, b)| yaml_docs(&format!("docs/gitops.md block {i}"), b))
        .collect();
    let seen = check_documented_objects(
        "docs/gitops.md",
        &docs,
        &[("argoproj.io/v1alpha1", "Application"), ("v1", "Secret")],
    );
    assert_eq!(seen.get("Application"), Some(&2), "{seen:?}");
    // Both Applications deploy what this repository ships, with server-side apply or
    // skip-dry-run as the doc explains.
    for app in docs.iter().filter(|d| d["kind"] == "Application") {
        assert!(app["spec"]["source"]["path"].is_string(), "{app}");
        assert!(
            app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"].is_string(),
            "{app}"
        );
    }
}

#[test]
fn fenced_yaml_blocks_are_extracted_in_order() {
    let text = "intro\n```yaml\na: 1\n```\n```console\n$ x\n```\n```yaml\nb: 2\n---\nc: 3\n```\n";
    assert_eq!(fenced_yaml_blocks(text), ["a: 1\n", "b: 2\n---\nc: 3\n"]);
}

#[test]
fn examples_reference_each_other_consistently() {
    let docs = examples();
    let secrets = of_kind(&docs, "Secret");
    let connectors = of_kind(&docs, "OktaCiamConnector");
    for c in &connectors {
        // Exactly one of the API token and the OAuth app's private key.
        let oauth = &c["spec"]["auth"]["oauth"];
        let (r, default_key) = match (c["spec"].get("tokenSecretRef"), oauth.is_object()) {
            (Some(token), false) => (token, "apiToken"),
            (None, true) => (&oauth["privateKeySecretRef"], "privateKey"),
            _ => panic!("{} sets not exactly one credential", c["metadata"]["name"]),
        };
        let key = r["key"].as_str().unwrap_or(default_key);
        let secret = secrets
            .iter()
            .find(|s| s["metadata"]["name"] == r["name"])
            .unwrap_or_else(|| panic!("no example Secret {}", r["name"]));
        assert!(
            secret["stringData"].get(key).is_some(),
            "Secret {} lacks key {key}",
            r["name"]
        );
    }
    let migration = connectors
        .iter()
        .find(|c| c["metadata"]["name"] == "acme-migrated")
        .unwrap();
    assert_eq!(
        migration["spec"]["tokenSecretRef"]["key"],
        "BATON_API_TOKEN"
    );

    let memberships = of_kind(&docs, "GroupMembership");
    let mut declared = BTreeMap::<(String, String), usize>::new();
    for m in &memberships {
        let connector = connectors
            .iter()
            .find(|c| c["metadata"]["name"] == m["spec"]["connectorRef"]["name"])
            .unwrap_or_else(|| panic!("no example connector for {}", m["metadata"]["name"]));
        assert_eq!(
            connector["spec"]["provisioning"], true,
            "{} needs provisioning on",
            m["metadata"]["name"]
        );
        let group = m["spec"]["group"].to_string();
        for u in m["spec"]["users"].as_array().unwrap() {
            let email = u.as_str().unwrap();
            let domain = email.rsplit('@').next().unwrap();
            assert!(
                connector["spec"]["emailDomains"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(domain)),
                "{email}"
            );
            *declared
                .entry((group.clone(), email.to_owned()))
                .or_default() += 1;
        }
    }
    assert!(
        declared.values().any(|&n| n > 1),
        "the shared example declares one membership twice"
    );
    assert!(
        memberships
            .iter()
            .any(|m| m["spec"].get("expiresAt").is_some())
    );
    assert!(
        memberships
            .iter()
            .any(|m| m["spec"].get("duration").is_some())
    );
    assert!(
        memberships
            .iter()
            .any(|m| m["spec"]["deletionPolicy"] == "Retain")
    );
}

/// The converted schema must actually reject what the API server rejects (apart from CEL
/// rules, which only the API server evaluates); otherwise the test above proves nothing.
#[test]
fn schema_rejects_broken_objects() {
    let docs = examples();
    let connector = of_kind(&docs, "OktaCiamConnector")[0].clone();
    let membership = of_kind(&docs, "GroupMembership")[0].clone();
    let cases: Vec<(&str, Value, &str, Value)> = vec![
        (
            "OktaCiamConnector",
            connector.clone(),
            "/spec/domain",
            json!("https://acme.okta.com"),
        ),
        (
            "OktaCiamConnector",
            connector.clone(),
            "/spec/emailDomains",
            json!([]),
        ),
        (
            "OktaCiamConnector",
            connector.clone(),
            "/spec/emailDomains",
            json!(["not a domain"]),
        ),
        (
            "OktaCiamConnector",
            connector.clone(),
            "/spec/syncInterval",
            json!("1d"),
        ),
        (
            "OktaCiamConnector",
            connector.clone(),
            "/spec/rateLimit/maxConcurrency",
            json!(76),
        ),
        (
            "OktaCiamConnector",
            connector.clone(),
            "/spec/rateLimit/budgetPercent",
            json!(0),
        ),
        (
            "OktaCiamConnector",
            connector.clone(),
            "/spec/tokenSecretRef/name",
            json!("Bad_Name"),
        ),
        (
            "OktaCiamConnector",
            connector.clone(),
            "/spec/suspend",
            json!("yes"),
        ),
        (
            "OktaCiamConnector",
            connector.clone(),
            "/spec/typo",
            json!(1),
        ),
        (
            "GroupMembership",
            membership.clone(),
            "/spec/users",
            json!([]),
        ),
        (
            "GroupMembership",
            membership.clone(),
            "/spec/users",
            json!(["a@example.com", "a@example.com"]),
        ),
        (
            "GroupMembership",
            membership.clone(),
            "/spec/users",
            Value::Array(
                (0..1001)
                    .map(|i| json!(format!("u{i}@example.com")))
                    .collect(),
            ),
        ),
        (
            "GroupMembership",
            membership.clone(),
            "/spec/deletionPolicy",
            json!("Delete"),
        ),
        (
            "GroupMembership",
            membership.clone(),
            "/spec/expiresAt",
            json!("tomorrow"),
        ),
        (
            "GroupMembership",
            membership.clone(),
            "/spec/duration",
            json!("8 hours"),
        ),
        (
            "GroupMembership",
            membership.clone(),
            "/status/users",
            json!([{"user": "a", "state": "Done"}]),
        ),
    ];
    for (kind, mut object, pointer, value) in cases {
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        if object.pointer(parent).is_none() {
            object[parent.trim_start_matches('/')] = json!({});
        }
        object.pointer_mut(parent).unwrap()[field] = value.clone();
        assert!(
            !validator(kind).errors(&object).is_empty(),
            "{kind} accepted {pointer} = {value}"
        );
    }
    // Control: the unchanged objects pass, so each rejection above is due to its change.
    assert!(validator("OktaCiamConnector").errors(&connector).is_empty());
    assert!(validator("GroupMembership").errors(&membership).is_empty());
}

fn install_docs() -> Vec<Value> {
    let kustomization = load_yaml_docs("manifests/install/kustomization.yaml").remove(0);
    kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .filter(|r| r.ends_with(".yaml"))
        .flat_map(|r| load_yaml_docs(&format!("manifests/install/{r}")))
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// (apiGroup, resource) -> verbs, for every rule of a Role or ClusterRole.
fn grants(role: &Value) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out = BTreeMap::<(String, String), BTreeSet<String>>::new();
    for rule in role["rules"].as_array().unwrap() {
        let strings = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let verbs = strings("verbs");
        for list in ["apiGroups", "resources", "verbs"] {
            assert!(
                !strings(list).iter().any(|s| s.contains('*')),
                "wildcard in {rule}"
            );
        }
        assert!(rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none());
        for g in strings("apiGroups") {
            for r in strings("resources") {
                out.entry((g.clone(), r))
                    .or_default()
                    .extend(verbs.iter().cloned());
            }
        }
    }
    out
}

fn table(rows: &[(&str, &str, &[&str])]) -> BTreeMap<(String, String), BTreeSet<String>> {
    rows.iter()
        .map(|(g, r, v)| {
            (
                (g.to_string(), r.to_string()),
                v.iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect()
}

const CRD_GRANTS: &[(&str, &str, &[&str])] = &[
    (
        "oktaciam.io",
        "oktaciamconnectors",
        &["get", "list", "watch", "patch"],
    ),
    (
        "oktaciam.io",
        "groupmemberships",
        &["get", "list", "watch", "patch", "create", "delete"],
    ),
    ("oktaciam.io", "accesspolicies", &["get", "list", "watch"]),
    (
        "oktaciam.io",
        "accessrequests",
        &["get", "list", "watch", "patch"],
    ),
    ("", "namespaces", &["list", "watch"]),
    ("oktaciam.io", "accessapprovals", &["list", "watch"]),
    ("oktaciam.io", "accessrequests/status", &["patch"]),
    ("oktaciam.io", "accessrequests/finalizers", &["update"]),
    ("oktaciam.io", "accessreviews", &["list", "watch", "create"]),
    ("oktaciam.io", "accessreviewdecisions", &["list", "watch"]),
    (
        "oktaciam.io",
        "accessreviewchunks",
        &["list", "create", "delete"],
    ),
    ("oktaciam.io", "accessreviews/status", &["patch"]),
    ("oktaciam.io", "accessreviewchunks/status", &["patch"]),
    ("oktaciam.io", "accessreviews/finalizers", &["update"]),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
        &["get"],
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
        &["get"],
    ),
    ("authorization.k8s.io", "subjectaccessreviews", &["create"]),
    ("oktaciam.io", "oktaciamconnectors/status", &["patch"]),
    ("oktaciam.io", "groupmemberships/status", &["patch"]),
    ("oktaciam.io", "oktaciamconnectors/finalizers", &["update"]),
    ("oktaciam.io", "groupmemberships/finalizers", &["update"]),
    ("events.k8s.io", "events", &["create", "patch"]),
];

#[test]
fn rbac_is_least_privilege_without_wildcards() {
    let docs = install_docs();
    let mut expected = table(CRD_GRANTS);
    expected.extend(table(&[("", "secrets", &["get", "list", "watch"])]));
    assert_eq!(
        grants(find(&docs, "ClusterRole", "okta-ciam-operator")),
        expected
    );

    let lease_role = find(&docs, "Role", "okta-ciam-operator-leader-election");
    assert_eq!(
        grants(lease_role),
        table(&[
            (
                "coordination.k8s.io",
                "leases",
                &["get", "create", "update"]
            ),
            // Ownership records of the membership reconciler.
            ("", "configmaps", &["get", "create", "update", "delete"]),
        ])
    );
    // Role and bindings carry no namespace of their own: kustomize puts them in the
    // operator's namespace, so the Lease permission cannot reach any other namespace.
    assert!(lease_role["metadata"].get("namespace").is_none());
    for (kind, role) in [
        ("ClusterRoleBinding", "ClusterRole"),
        ("RoleBinding", "Role"),
    ] {
        for b in docs.iter().filter(|d| d["kind"] == kind) {
            assert_eq!(b["roleRef"]["kind"], role);
            assert_eq!(
                b["subjects"],
                json!([{"kind": "ServiceAccount", "name": "okta-ciam-operator", "namespace": "okta-ciam-operator"}])
            );
        }
    }

    let overlay =
        load_yaml_docs("manifests/overlays/namespaced-secrets/clusterrole-without-secrets.yaml");
    assert_eq!(
        grants(&overlay[0]),
        table(CRD_GRANTS),
        "the namespaced variant drops only Secrets"
    );
    let secret_roles = load_yaml_docs("manifests/overlays/namespaced-secrets/secrets-roles.yaml");
    let role = find(&secret_roles, "Role", "okta-ciam-operator-secrets");
    assert_eq!(
        grants(role),
        table(&[("", "secrets", &["get", "list", "watch"])])
    );
}

#[test]
fn deployment_is_hardened_and_leader_elected() {
    let docs = install_docs();
    let deploy = find(&docs, "Deployment", "okta-ciam-operator");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap() > 0);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let sa = find(&docs, "ServiceAccount", "okta-ciam-operator");
    assert_eq!(
        sa["automountServiceAccountToken"], false,
        "only the operator Pod mounts the token"
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "run");
    assert!(args.contains(&"--leader-elect"));
    assert!(args.contains(&"--metrics-addr=0.0.0.0:8080"));
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "POD_NAMESPACE")
    );
    assert_eq!(
        c["ports"],
        json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "metrics"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "metrics"})
    );
    for bound in ["requests", "limits"] {
        assert!(
            c["resources"][bound]["memory"].is_string(),
            "memory {bound}"
        );
        assert!(c["resources"][bound]["cpu"].is_string(), "cpu {bound}");
    }
    let svc = find(&docs, "Service", "okta-ciam-operator-metrics");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(
        svc["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn network_policy_allows_only_dns_api_https_out_and_metrics_in_from_monitoring() {
    let docs = install_docs();
    let np = find(&docs, "NetworkPolicy", "okta-ciam-operator");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    let ports = |rules: &Value| -> BTreeSet<(u64, String)> {
        rules
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r["ports"]
                    .as_array()
                    .expect("every rule names its ports")
                    .iter()
            })
            .map(|p| {
                (
                    p["port"].as_u64().unwrap(),
                    p["protocol"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let tcp = |p: u64| (p, "TCP".to_owned());
    assert_eq!(ports(&np["spec"]["ingress"]), BTreeSet::from([tcp(8080)]));
    // Metrics only from the labelled monitoring namespace(s): every ingress rule names its
    // sources, and each source is exactly that namespace selector (no `podSelector` or
    // `ipBlock` that would open it to more).
    for rule in np["spec"]["ingress"].as_array().unwrap() {
        assert_eq!(
            rule["from"],
            json!([{"namespaceSelector": {"matchLabels": {"oktaciam.io/metrics-scraper": "true"}}}]),
            "{rule}"
        );
    }
    assert_eq!(
        ports(&np["spec"]["egress"]),
        BTreeSet::from([(53, "UDP".to_owned()), tcp(53), tcp(443), tcp(6443)])
    );
    let deploy = find(&docs, "Deployment", "okta-ciam-operator");
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );
}

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn kustomize(dir: &str) -> Vec<Value> {
    kustomize_path(&repo_path(dir))
}

/// The documents `kubectl kustomize` renders from the kustomization in `dir`.
fn kustomize_path(dir: &std::path::Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn integral_floats_as_integers(v: Value) -> Value {
    match v {
        Value::Number(n)
            if n.as_f64()
                .is_some_and(|f| f.fract() == 0.0 && f.abs() < 1e15) =>
        {
            json!(n.as_f64().unwrap() as i64)
        }
        Value::Array(items) => {
            Value::Array(items.into_iter().map(integral_floats_as_integers).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, integral_floats_as_integers(v)))
                .collect(),
        ),
        other => other,
    }
}

#[test]
fn kustomize_renders_the_install_and_the_namespaced_variant() {
    if !kubectl_available() {
        eprintln!(
            "SKIPPED: kubectl is not installed, so `kubectl kustomize manifests/` was not run"
        );
        return;
    }
    let docs: Vec<Value> = kustomize("manifests");
    let kinds: BTreeSet<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    let expected = [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Namespace",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ];
    assert_eq!(kinds, BTreeSet::from(expected));
    let cluster_scoped = [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Namespace",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ];
    for d in &docs {
        if !cluster_scoped.contains(&d["kind"].as_str().unwrap()) {
            assert_eq!(
                d["metadata"]["namespace"], "okta-ciam-operator",
                "{}",
                d["metadata"]["name"]
            );
        }
    }
    // Argo CD creates the namespace first.
    let ns = find(&docs, "Namespace", "okta-ciam-operator");
    assert_eq!(
        ns["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"],
        "-2"
    );
    // The rendered CRDs are the committed ones, byte for byte in meaning.
    for file in [
        "oktaciamconnectors.yaml",
        "groupmemberships.yaml",
        "accesspolicies.yaml",
        "accessrequests.yaml",
        "accessapprovals.yaml",
        "accessreviews.yaml",
        "accessreviewchunks.yaml",
        "accessreviewdecisions.yaml",
    ] {
        let committed = load_yaml_docs(&format!("crds/{file}")).remove(0);
        let rendered = docs
            .iter()
            .find(|d| d["metadata"]["name"] == committed["metadata"]["name"])
            .unwrap();
        let mut rendered = rendered.clone();
        // Argo CD applies the CRDs before anything that uses them, and never prunes or
        // deletes them (that would delete, and so revoke, every membership).
        assert_eq!(
            rendered["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"], "-1",
            "{file}"
        );
        assert_eq!(
            rendered["metadata"]["annotations"]["argocd.argoproj.io/sync-options"],
            "Prune=false,Delete=false",
            "{file}"
        );
        rendered["metadata"]["labels"].take();
        rendered["metadata"]["annotations"].take();
        rendered["metadata"]
            .as_object_mut()
            .unwrap()
            .retain(|_, v| !v.is_null());
        // kustomize writes `75.0` as `75`; compare numbers by value.
        assert!(
            integral_floats_as_integers(rendered) == integral_floats_as_integers(committed),
            "kustomize changed {file} beyond adding labels and annotations"
        );
    }

    let variant = kustomize("manifests/overlays/namespaced-secrets");
    let cluster_role = find(&variant, "ClusterRole", "okta-ciam-operator");
    assert_eq!(grants(cluster_role), table(CRD_GRANTS));
    let deploy = find(&variant, "Deployment", "okta-ciam-operator");
    let args = &deploy["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .unwrap()
            .contains(&json!("--namespace=identity"))
    );
    let role = find(&variant, "Role", "okta-ciam-operator-secrets");
    assert_eq!(role["metadata"]["namespace"], "identity");
}

/// The install's sync-wave patches add their one annotation and keep any other: applied (as
/// copied from `manifests/install/kustomization.yaml`) to a Namespace and a CRD that already
/// carry annotations, as an overlay or a future CRD generator may add.
#[test]
fn sync_wave_patches_keep_existing_annotations() {
    if !kubectl_available() {
        eprintln!("SKIPPED: kubectl is not installed, so the sync-wave patches were not rendered");
        return;
    }
    let install = load_yaml_docs("manifests/install/kustomization.yaml").remove(0);
    let patches = install["patches"].clone();
    assert!(
        patches.as_array().is_some_and(|p| p.len() == 2),
        "{patches}"
    );
    let dir = tempfile::tempdir().unwrap();
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["objects.yaml"],
        "patches": patches,
    });
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        serde_yaml::to_string(&kustomization).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("objects.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns\n  annotations: {team: identity}\n\
         ---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
         metadata:\n  name: things.example.com\n  annotations: {controller-gen.kubebuilder.io/version: v0.16.0}\n",
    )
    .unwrap();
    let docs = kustomize_path(dir.path());
    let annotations = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("{kind} rendered"))["metadata"]["annotations"]
            .clone()
    };
    assert_eq!(
        annotations("Namespace"),
        json!({"team": "identity", "argocd.argoproj.io/sync-wave": "-2"})
    );
    assert_eq!(
        annotations("CustomResourceDefinition"),
        json!({"controller-gen.kubebuilder.io/version": "v0.16.0", "argocd.argoproj.io/sync-wave": "-1",
               "argocd.argoproj.io/sync-options": "Prune=false,Delete=false"})
    );
}

/// Docker is not available here, so check the Dockerfile's contract with the manifests: the
/// runtime stage, the numeric user the Deployment expects, and the entrypoint.
#[test]
fn dockerfile_runs_the_binary_as_the_deployments_numeric_user() {
    let text = std::fs::read_to_string(repo_path("Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let stages: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("FROM "))
        .map(|(i, _)| i)
        .collect();
    assert!(stages.len() >= 2, "multi-stage build");
    let runtime = &lines[*stages.last().unwrap()..];
    assert!(
        runtime[0].starts_with("FROM gcr.io/distroless/static"),
        "{}",
        runtime[0]
    );
    let directive = |name: &str| -> &str {
        runtime
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name}"))
            .trim()
    };
    let deploy = install_docs()
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap();
    let pod_sc = &deploy["spec"]["template"]["spec"]["securityContext"];
    let user = format!("{}:{}", pod_sc["runAsUser"], pod_sc["runAsGroup"]);
    assert_eq!(directive("USER "), user);
    assert_eq!(directive("ENTRYPOINT "), r#"["/okta-ciam-operator"]"#);
    assert_eq!(directive("CMD "), r#"["run"]"#);
}

/// The test server serving every CRD `crds/kustomization.yaml` lists.
async fn test_server_with_the_crds() -> kube_test_server::TestServer {
    let kustomization = load_yaml_docs("crds/kustomization.yaml").remove(0);
    let files: Vec<_> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|f| repo_path(&format!("crds/{}", f.as_str().unwrap())))
        .collect();
    assert_eq!(files.len(), 8, "{files:?}");
    kube_test_server::TestServer::start(files)
        .await
        .expect("the test server loads the CRDs")
}

/// The Kubernetes API test server behind the e2e tests evaluates none of these CEL rules of
/// the committed CRDs (only `self == oldSelf`), so no e2e test against it can show that a
/// violating object is refused; `docs/e2e.md` lists them. A rule added to a CRD fails this
/// test until it is listed here and there.
#[tokio::test]
async fn the_test_server_lists_exactly_these_crd_rules_as_unenforced() {
    let server = test_server_with_the_crds().await;
    let mut got = server.unenforced_cel_rules();
    got.sort();
    let gm = "oktaciam.io/v1alpha1/GroupMembership";
    let conn = "oktaciam.io/v1alpha1/OktaCiamConnector";
    let policy = "oktaciam.io/v1alpha1/AccessPolicy";
    let request = "oktaciam.io/v1alpha1/AccessRequest";
    let review = "oktaciam.io/v1alpha1/AccessReview";
    let positive = "duration(self) > duration('0s')";
    let someone =
        "(has(self.users) && size(self.users) > 0) || (has(self.groups) && size(self.groups) > 0)";
    let mut want: Vec<(String, String, String)> = [
        (
            policy,
            "spec.requests",
            "has(self.defaultDuration) ? duration(self.defaultDuration) <= duration(self.maxDuration) : true",
        ),
        (
            policy,
            "spec",
            "has(self.requests) ? true : has(self.standing)",
        ),
        (
            policy,
            "spec.standing.groups[*]",
            "[has(self.name), has(self.id), has(self.namePrefix)].filter(x, x).size() == 1",
        ),
        (
            policy,
            "spec.standing.groups[*]",
            "!(self.allowPrivileged && has(self.namePrefix))",
        ),
        (policy, "spec.requests.maxDuration", positive),
        (policy, "spec.requests.defaultDuration", positive),
        (policy, "spec.requests.pendingTimeout", positive),
        (request, "spec.duration", positive),
        (
            review,
            "spec",
            "!has(self.startAt) || timestamp(self.startAt) < timestamp(self.dueAt)",
        ),
        (review, "spec", "!has(self.recurrence) || has(self.startAt)"),
        (review, "spec.reviewers", someone),
        (review, "spec.groupReviewers[*].reviewers", someone),
        (
            "oktaciam.io/v1alpha1/AccessReviewDecision",
            "spec.items",
            "(has(self.ids) && size(self.ids) > 0) || (has(self.users) && size(self.users) > 0) || (has(self.groups) && size(self.groups) > 0)",
        ),
        (gm, "spec", "!(has(self.expiresAt) && has(self.duration))"),
        (gm, "spec.duration", "duration(self) > duration('0s')"),
        (gm, "spec.group", "has(self.name) != has(self.id)"),
        (conn, "spec", "has(self.tokenSecretRef) != has(self.auth)"),
        (
            conn,
            "spec.syncInterval",
            "duration(self) >= duration('1m')",
        ),
        (
            conn,
            "spec.fullSyncInterval",
            "duration(self) >= duration('1m')",
        ),
    ]
    .iter()
    .map(|(k, p, r)| (k.to_string(), p.to_string(), r.to_string()))
    .collect();
    want.sort();
    assert_eq!(got, want);
    let docs = std::fs::read_to_string(repo_path("docs/e2e.md")).unwrap();
    for (kind, path, rule) in &want {
        let kind = kind.rsplit('/').next().unwrap();
        let row = format!("| `{kind}` | `{path}` | `{rule}` |");
        assert!(docs.contains(&row), "docs/e2e.md lacks the row {row}");
    }
    server.shutdown().await;
}

/// `format: date-time` is enforced by the test server as by kube-apiserver: 422 naming the field.
#[tokio::test]
async fn the_test_server_refuses_a_membership_with_a_malformed_expires_at() {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
    let server = test_server_with_the_crds().await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("oktaciam.io", "v1alpha1", "GroupMembership"),
        "groupmemberships",
    );
    let api: kube::Api<DynamicObject> = kube::Api::namespaced_with(server.client(), "default", &ar);
    let membership = |name: &str, expires_at: &str| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "oktaciam.io/v1alpha1", "kind": "GroupMembership",
            "metadata": {"name": name},
            "spec": {"connectorRef": {"name": "corp"}, "group": {"name": "Team"},
                     "users": ["a@example.com"], "expiresAt": expires_at},
        }))
        .unwrap()
    };
    let err = api
        .create(&PostParams::default(), &membership("bad", "next friday"))
        .await
        .expect_err("a malformed expiresAt is refused");
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err:?}")
    };
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status
            .message
            .contains("spec.expiresAt in body must be of type date-time: \"next friday\""),
        "{}",
        status.message
    );
    api.create(
        &PostParams::default(),
        &membership("good", "2030-01-01T00:00:00Z"),
    )
    .await
    .expect("an RFC 3339 expiresAt is accepted");
    server.shutdown().await;
}
