//! The served resource types: built-ins (Namespaces, Secrets, Events, Leases) and CRDs loaded from
//! YAML, plus the discovery documents kube-rs reads.

use crate::convert::Conversion;
use crate::schema::Schema;
use serde_json::{Value, json};
use std::path::PathBuf;

/// One served resource at one group/version.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group, empty for core.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Secret`.
    pub kind: String,
    /// Plural resource name used in URLs.
    pub plural: String,
    /// Singular name for discovery.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Whether `/status` is a subresource (status then changes only through it).
    pub status_subresource: bool,
    /// Custom resources track `metadata.generation`, are validated and reject strategic merge patch.
    pub custom: bool,
    /// Structural schema for custom resources.
    pub schema: Option<Schema>,
    /// Field labels accepted in field selectors.
    pub field_labels: &'static [&'static str],
    /// Short names for discovery.
    pub short_names: Vec<String>,
    /// Group whose store holds the objects (differs for `events.k8s.io`, a view of core Events).
    pub storage_group: String,
    /// Conversion between the served and the stored form.
    pub conversion: Conversion,
}

impl ResourceType {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key: objects are shared across versions of one group/resource.
    pub fn storage_key(&self) -> (String, String) {
        (self.storage_group.clone(), self.plural.clone())
    }

    fn discovery_entries(&self) -> Vec<Value> {
        let verbs = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        let mut out = vec![json!({
            "name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
            "kind": self.kind, "verbs": verbs, "shortNames": self.short_names,
        })];
        if self.status_subresource {
            out.push(json!({
                "name": format!("{}/status", self.plural), "singularName": "", "namespaced": self.namespaced,
                "kind": self.kind, "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }
}

const META_LABELS: &[&str] = &["metadata.name", "metadata.namespace"];

fn builtin(
    group: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    field_labels: &'static [&'static str],
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        status_subresource: kind == "Namespace",
        custom: false,
        schema: None,
        field_labels,
        short_names: Vec::new(),
        storage_group: group.into(),
        conversion: Conversion::None,
    }
}

/// The built-in resources this server serves.
pub fn builtins() -> Vec<ResourceType> {
    vec![
        builtin(
            "",
            "Namespace",
            "namespaces",
            false,
            &["metadata.name", "status.phase"],
        ),
        builtin(
            "",
            "Secret",
            "secrets",
            true,
            &["metadata.name", "metadata.namespace", "type"],
        ),
        builtin("", "ConfigMap", "configmaps", true, META_LABELS),
        builtin(
            "",
            "Event",
            "events",
            true,
            &[
                "metadata.name",
                "metadata.namespace",
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
        ),
        ResourceType {
            storage_group: String::new(),
            conversion: Conversion::EventsV1,
            ..builtin("events.k8s.io", "Event", "events", true, META_LABELS)
        },
        builtin("coordination.k8s.io", "Lease", "leases", true, META_LABELS),
        builtin(
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
            false,
            META_LABELS,
        ),
        builtin(
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            false,
            META_LABELS,
        ),
    ]
}

/// Errors loading CRD files.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file or directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// Path concerned.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The YAML was not a CRD this server understands.
    #[error("parsing {path}: {message}")]
    Parse {
        /// Path concerned.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

/// Expands directories into their `*.yaml`/`*.yml` files (sorted), keeping plain files as given.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let io = |source| LoadError::Io {
                path: p.clone(),
                source,
            };
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(io)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Loads every CRD document from the given files or directories (multi-document YAML allowed).
pub fn load_crds(paths: &[PathBuf]) -> Result<Vec<ResourceType>, LoadError> {
    let mut out = Vec::new();
    for path in expand(paths)? {
        let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let parse = |message: String| LoadError::Parse {
                path: path.clone(),
                message,
            };
            let value: Value = serde::Deserialize::deserialize(doc)
                .map_err(|e: serde_yaml::Error| parse(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            out.extend(crd_types(&value).map_err(parse)?);
        }
    }
    Ok(out)
}

/// Turns one CRD object into one served type per served version.
pub fn crd_types(crd: &Value) -> Result<Vec<ResourceType>, String> {
    if crd.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
        return Err("not a CustomResourceDefinition".into());
    }
    let spec = crd.get("spec").ok_or("CRD without spec")?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let names = spec.get("names").ok_or("CRD without spec.names")?;
    let group = s(spec, "group").ok_or("CRD without spec.group")?;
    let kind = s(names, "kind").ok_or("CRD without spec.names.kind")?;
    let plural = s(names, "plural").ok_or("CRD without spec.names.plural")?;
    let singular = s(names, "singular").unwrap_or_else(|| kind.to_lowercase());
    let short_names = names
        .get("shortNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let namespaced = s(spec, "scope").as_deref() != Some("Cluster");
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or("CRD without spec.versions")?;
    Ok(versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) != Some(false))
        .filter_map(|v| {
            Some(ResourceType {
                group: group.clone(),
                version: s(v, "name")?,
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced,
                status_subresource: v.pointer("/subresources/status").is_some(),
                custom: true,
                schema: v.pointer("/schema/openAPIV3Schema").cloned().map(Schema),
                field_labels: META_LABELS,
                short_names: Vec::clone(&short_names),
                storage_group: group.clone(),
                conversion: Conversion::None,
            })
        })
        .collect())
}

/// `GET /api`.
pub fn core_versions(addr: &str) -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}],
    })
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`.
pub fn resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let matching: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    let first = matching.first()?;
    let resources: Vec<Value> = matching
        .iter()
        .flat_map(|t| t.discovery_entries())
        .collect();
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": first.api_version(), "resources": resources}),
    )
}

/// `GET /apis`: every non-core group with its versions (first loaded version preferred).
pub fn group_list(types: &[ResourceType]) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, vs)) if !vs.contains(&t.version) => vs.push(t.version.clone()),
            Some(_) => {}
            None => groups.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, vs)| {
            let gv = |v: &String| json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": vs.iter().map(gv).collect::<Vec<_>>(), "preferredVersion": gv(&vs[0])})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_yields_one_type_per_served_version_and_discovery_lists_status() {
        let crd = json!({
            "kind": "CustomResourceDefinition",
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1", "served": true, "subresources": {"status": {}}, "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v0", "served": false}
                ]}
        });
        let types = crd_types(&crd).unwrap();
        assert_eq!(types.len(), 1);
        assert!(types[0].status_subresource && types[0].custom && types[0].namespaced);
        let list = resource_list(&types, "example.com", "v1").unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["widgets", "widgets/status"]);
        assert_eq!(
            group_list(&types)["groups"][0]["preferredVersion"]["groupVersion"],
            "example.com/v1"
        );
        assert!(crd_types(&json!({"kind": "Secret"})).is_err());
    }
}
