//! Helpers shared by the manifest and Argo CD tests: reading YAML from the repository and
//! validating objects against the committed CRDs.

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// A path inside the repository.
pub fn repo_path(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Every YAML document in a file (empty documents skipped).
pub fn load_yaml_docs(relative: &str) -> Vec<Value> {
    let path = repo_path(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Validates whole objects of one kind against the committed CRD's `openAPIV3Schema`.
pub struct CrdValidator(jsonschema::Validator);

impl CrdValidator {
    /// The validator for `crds/<file>`.
    pub fn for_crd_file(file: &str) -> Self {
        let crd = load_yaml_docs(&format!("crds/{file}")).remove(0);
        let schema = object_schema(&crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]);
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("the converted CRD schema is a valid JSON Schema");
        Self(validator)
    }

    /// Every schema violation in `object`, as `path: message` lines.
    pub fn errors(&self, object: &Value) -> Vec<String> {
        self.0
            .iter_errors(object)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }
}

/// The CRD's structural schema as a JSON Schema for whole objects: the root also accepts
/// `apiVersion`, `kind` and `metadata`, which the API server handles itself.
fn object_schema(open_api: &Value) -> Value {
    let mut schema = to_json_schema(open_api);
    let props = schema["properties"]
        .as_object_mut()
        .expect("root has properties");
    props.insert("apiVersion".into(), json!({"type": "string"}));
    props.insert("kind".into(), json!({"type": "string"}));
    props.insert("metadata".into(), json!({"type": "object"}));
    schema
}

/// Converts an OpenAPI v3 structural schema (as in a CRD) into JSON Schema with the same
/// meaning: `nullable` becomes a `null` type, `x-kubernetes-list-type: set` becomes
/// `uniqueItems`, and objects reject unknown fields as `kubectl --validate=strict` does.
/// CEL rules (`x-kubernetes-validations`) cannot be expressed and are left out.
pub fn to_json_schema(node: &Value) -> Value {
    let Some(map) = node.as_object() else {
        return node.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "properties" => {
                let props = value.as_object().expect("properties is an object");
                let converted = props
                    .iter()
                    .map(|(n, s)| (n.clone(), to_json_schema(s)))
                    .collect();
                out.insert(key.clone(), Value::Object(converted));
            }
            "items" => {
                out.insert(key.clone(), to_json_schema(value));
            }
            k if k == "nullable" || k.starts_with("x-kubernetes-") => {}
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if map.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(t) = out.get("type").cloned() {
            out.insert("type".into(), json!([t, "null"]));
        }
        if let Some(Value::Array(values)) = out.get_mut("enum") {
            values.push(Value::Null);
        }
    }
    if map.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
        out.insert("uniqueItems".into(), Value::Bool(true));
    }
    let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if map.contains_key("properties") && !preserves {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}
