//! Structural-schema handling for custom objects, in the real server's order: prune unknown fields and
//! non-nullable nulls, apply defaults (nested), then validate against the `openAPIV3Schema`.
//!
//! Not enforced: `format` other than `date-time` on strings (so not `int32`/`int64`, `date`, `uuid`,
//! ...), `multipleOf`, `uniqueItems` outside `x-kubernetes-list-type: set`, and every CEL rule in
//! `x-kubernetes-validations` except the immutability idiom `self == oldSelf` ([`cel_rules`] lists
//! the skipped ones so tests can report them).

use crate::error::Cause;
use regex::Regex;
use serde_json::{Map, Value};

/// Prunes, defaults and validates a whole custom object in place; returns the validation causes.
pub fn prepare(root: &Schema, obj: &mut Value) -> Vec<Cause> {
    let schema = &root.0;
    let Some(map) = obj.as_object_mut() else {
        return vec![Cause::new("FieldValueTypeInvalid", "", "object expected")];
    };
    let props = schema.get("properties").and_then(Value::as_object);
    let mut causes = Vec::new();
    // apiVersion, kind and metadata are the server's business, not the schema's.
    let keep = |k: &str| matches!(k, "apiVersion" | "kind" | "metadata");
    if !preserves_unknown(schema) {
        map.retain(|k, _| keep(k) || props.is_some_and(|p| p.contains_key(k)));
    }
    if let Some(props) = props {
        for (key, sub) in props.iter().filter(|(k, _)| !keep(k)) {
            prune_and_default_field(map, key, sub);
            if let Some(v) = map.get(key) {
                validate(sub, v, key, &mut causes);
            }
        }
    }
    for req in required(schema).filter(|r| !keep(r)) {
        if !map.contains_key(req) {
            causes.push(Cause::new("FieldValueRequired", req, "Required value"));
        }
    }
    causes
}

/// A CRD version's `openAPIV3Schema`.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema(pub Value);

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn required(schema: &Value) -> impl Iterator<Item = &str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
}

/// Drops a non-nullable null, applies the field's default if absent, then recurses into the value.
fn prune_and_default_field(map: &mut Map<String, Value>, key: &str, schema: &Value) {
    if map.get(key).is_some_and(Value::is_null) && !nullable(schema) {
        map.remove(key);
    }
    if !map.contains_key(key)
        && let Some(default) = schema.get("default")
    {
        map.insert(key.to_string(), default.clone());
    }
    if let Some(v) = map.get_mut(key) {
        prune_and_default(schema, v);
    }
}

fn prune_and_default(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                if !preserves_unknown(schema) {
                    map.retain(|k, _| props.contains_key(k));
                }
                for (key, sub) in props {
                    prune_and_default_field(map, key, sub);
                }
            } else if let Some(sub) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                for v in map.values_mut() {
                    prune_and_default(sub, v);
                }
            } else if !preserves_unknown(schema)
                && schema.get("x-kubernetes-embedded-resource").is_none()
            {
                // A structural object schema with neither properties nor additionalProperties keeps nothing.
                if schema.get("type").and_then(Value::as_str) == Some("object") {
                    map.clear();
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for v in items {
                    prune_and_default(sub, v);
                }
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn show(v: &Value) -> String {
    v.to_string()
}

/// `strfmt.IsDateTime` of kube-openapi: a `YYYY-MM-DD` calendar date, `T` (either case), then
/// `hh:mm:ss`, optional fraction and `Z` or `±hh:mm`. Hours, minutes and seconds are range-checked
/// (no leap second); the offset is not.
fn is_date_time(s: &str) -> bool {
    static TIME: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")
            .expect("valid regex")
    });
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let mut parts = lower.split('t');
    let (Some(date), Some(time)) = (parts.next(), parts.next()) else {
        return false;
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let valid_date = match date.split('-').collect::<Vec<_>>().as_slice() {
        [y, m, d]
            if y.len() == 4
                && m.len() == 2
                && d.len() == 2
                && [y, m, d].iter().all(|p| digits(p)) =>
        {
            match (y.parse::<i16>(), m.parse::<i8>(), d.parse::<i8>()) {
                (Ok(y), Ok(m), Ok(d)) => jiff::civil::Date::new(y, m, d).is_ok(),
                _ => false,
            }
        }
        _ => false,
    };
    valid_date
        && TIME
            .captures(time)
            .is_some_and(|c| &c[1] <= "23" && &c[2] <= "59" && &c[3] <= "59")
}

fn type_ok(schema: &Value, v: &Value) -> bool {
    if v.is_null() {
        return nullable(schema);
    }
    if schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return matches!(type_name(v), "integer" | "string");
    }
    match schema.get("type").and_then(Value::as_str) {
        None => true,
        Some("number") => v.is_number(),
        Some(t) => type_name(v) == t,
    }
}

/// Validates one value against its schema, appending causes with `path` as the field.
fn validate(schema: &Value, v: &Value, path: &str, causes: &mut Vec<Cause>) {
    if !type_ok(schema, v) {
        let want = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("integer or string");
        causes.push(Cause::new(
            "FieldValueTypeInvalid",
            path,
            format!(
                "Invalid value: \"{}\": {path} in body must be of type {want}: {:?}",
                type_name(v),
                type_name(v)
            ),
        ));
        return;
    }
    if v.is_null() {
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(show).collect();
        causes.push(Cause::new(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                show(v),
                list.join(", ")
            ),
        ));
    }
    let invalid = |msg: String| {
        Cause::new(
            "FieldValueInvalid",
            path,
            format!("Invalid value: {}: {path} in body {msg}", show(v)),
        )
    };
    match v {
        Value::String(s) => {
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                match Regex::new(p) {
                    Ok(re) if !re.is_match(s) => {
                        causes.push(invalid(format!("should match '{p}'")))
                    }
                    Ok(_) => {}
                    Err(e) => causes.push(Cause::new(
                        "FieldValueInvalid",
                        path,
                        format!("invalid pattern {p:?}: {e}"),
                    )),
                }
            }
            if schema.get("format").and_then(Value::as_str) == Some("date-time") && !is_date_time(s)
            {
                // As kube-openapi's format validator: an InvalidType error, which the CRD
                // handler reports as TypeInvalid showing the value's kind.
                causes.push(Cause::new(
                    "FieldValueTypeInvalid",
                    path,
                    format!(
                        "Invalid value: \"string\": {path} in body must be of type date-time: {}",
                        show(v)
                    ),
                ));
            }
            let len = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                causes.push(invalid(format!("should be at least {min} chars long")));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                causes.push(Cause::new(
                    "FieldValueTooLong",
                    path,
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            let excl = |k: &str| schema.get(k).and_then(Value::as_bool) == Some(true);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if excl("exclusiveMinimum") && x <= min {
                    causes.push(invalid(format!("should be greater than {min}")));
                } else if x < min {
                    causes.push(invalid(format!("should be greater than or equal to {min}")));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if excl("exclusiveMaximum") && x >= max {
                    causes.push(invalid(format!("should be less than {max}")));
                } else if x > max {
                    causes.push(invalid(format!("should be less than or equal to {max}")));
                }
            }
        }
        Value::Array(items) => validate_array(schema, items, path, causes),
        Value::Object(map) => validate_object(schema, map, path, causes),
        Value::Bool(_) | Value::Null => {}
    }
    validate_combinators(schema, v, path, causes);
}

fn validate_array(schema: &Value, items: &[Value], path: &str, causes: &mut Vec<Cause>) {
    let n = items.len() as u64;
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && n < min
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            path,
            format!("Invalid value: {n}: {path} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && n > max
    {
        causes.push(Cause::new(
            "FieldValueTooMany",
            path,
            format!("Too many: {n}: must have at most {max} items"),
        ));
    }
    if let Some(sub) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate(sub, item, &format!("{path}[{i}]"), causes);
        }
    }
    // Identity of list entries: whole values for sets, the key fields for maps.
    let identity = |item: &Value| -> Value {
        match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => {
                let keys = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array);
                let picked: Map<String, Value> = keys
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|k| (k.to_string(), item.get(k).cloned().unwrap_or(Value::Null)))
                    .collect();
                Value::Object(picked)
            }
            _ => item.clone(),
        }
    };
    if matches!(
        schema.get("x-kubernetes-list-type").and_then(Value::as_str),
        Some("set" | "map")
    ) {
        let mut seen: Vec<Value> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let id = identity(item);
            if seen.contains(&id) {
                causes.push(Cause::new(
                    "FieldValueDuplicate",
                    &format!("{path}[{i}]"),
                    format!("Duplicate value: {}", show(&id)),
                ));
            } else {
                seen.push(id);
            }
        }
    }
}

fn validate_object(schema: &Value, map: &Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    for req in required(schema) {
        if !map.contains_key(req) {
            causes.push(Cause::new(
                "FieldValueRequired",
                &format!("{path}.{req}"),
                "Required value",
            ));
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in map {
            if let Some(sub) = props.get(k) {
                validate(sub, v, &format!("{path}.{k}"), causes);
            }
        }
    } else if let Some(sub) = schema.get("additionalProperties").filter(|s| s.is_object()) {
        for (k, v) in map {
            validate(sub, v, &format!("{path}[{k}]"), causes);
        }
    }
    let n = map.len() as u64;
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
        && n < min
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            path,
            format!("Invalid value: {n}: {path} in body should have at least {min} properties"),
        ));
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && n > max
    {
        causes.push(Cause::new(
            "FieldValueTooMany",
            path,
            format!("Too many: {n}: must have at most {max} items"),
        ));
    }
}

/// `allOf`, `anyOf`, `oneOf` and `not` (value constraints only, as structural schemas allow).
fn validate_combinators(schema: &Value, v: &Value, path: &str, causes: &mut Vec<Cause>) {
    let passes = |sub: &Value| {
        let mut c = Vec::new();
        validate(sub, v, path, &mut c);
        c.is_empty()
    };
    let list = |k: &str| {
        schema
            .get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for sub in list("allOf") {
        validate(&sub, v, path, causes);
    }
    let any = list("anyOf");
    if !any.is_empty() && !any.iter().any(passes) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            path,
            format!(
                "Invalid value: {}: {path} in body must match at least one schema in anyOf",
                show(v)
            ),
        ));
    }
    let one = list("oneOf");
    if !one.is_empty() && one.iter().filter(|s| passes(s)).count() != 1 {
        causes.push(Cause::new(
            "FieldValueInvalid",
            path,
            format!(
                "Invalid value: {}: {path} in body must validate one and only one schema (oneOf)",
                show(v)
            ),
        ));
    }
    if let Some(not) = schema.get("not")
        && passes(not)
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            path,
            format!(
                "Invalid value: {}: {path} in body must not validate the schema (not)",
                show(v)
            ),
        ));
    }
}

/// Whether a CEL rule is the immutability idiom `self == oldSelf`, the one rule this server enforces.
pub fn is_immutability_rule(rule: &str) -> bool {
    let compact: String = rule.chars().filter(|c| !c.is_whitespace()).collect();
    compact == "self==oldSelf" || compact == "oldSelf==self"
}

/// Enforces `self == oldSelf` rules on an update: such a field may not change once set.
/// Like upstream transition rules, it applies only where both the old and new value exist.
pub fn check_immutable(schema: &Schema, old: &Value, new: &Value) -> Vec<Cause> {
    fn walk(schema: &Value, old: &Value, new: &Value, path: &str, out: &mut Vec<Cause>) {
        for rule in schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let text = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
            if is_immutability_rule(text) && old != new {
                let message = rule
                    .get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("failed rule: {text}"), str::to_string);
                out.push(Cause::new(
                    "FieldValueInvalid",
                    path,
                    format!("Invalid value: \"{}\": {message}", type_name(new)),
                ));
            }
        }
        for (k, sub) in schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if let (Some(o), Some(n)) = (old.get(k), new.get(k)) {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(sub, o, n, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&schema.0, old, new, "", &mut out);
    out
}

/// Every CEL rule (`x-kubernetes-validations[].rule`) in a schema that this server does not evaluate
/// (all but `self == oldSelf`), with the field path it is attached to.
pub fn cel_rules(schema: &Value) -> Vec<(String, String)> {
    fn walk(schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
        for rule in schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = rule.get("rule").and_then(Value::as_str)
                && !is_immutability_rule(r)
            {
                out.push((path.to_string(), r.to_string()));
            }
        }
        for (k, sub) in schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            walk(sub, &p, out);
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[*]"), out);
        }
        if let Some(add) = schema.get("additionalProperties").filter(|s| s.is_object()) {
            walk(add, &format!("{path}[*]"), out);
        }
    }
    let mut out = Vec::new();
    walk(schema, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "x-kubernetes-validations": [{"rule": "self.max >= self.min"}],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                        "mode": {"type": "string", "enum": ["Fast", "Slow"], "default": "Fast"},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 5},
                        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set", "maxItems": 3},
                        "nested": {"type": "object", "default": {}, "properties": {
                            "timeout": {"type": "string", "default": "30s"}
                        }},
                        "port": {"x-kubernetes-int-or-string": true},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}}
                    }
                },
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
            }
        }))
    }

    #[test]
    fn defaults_prunes_and_accepts_valid_objects() {
        let mut obj = json!({
            "apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a", "extra": 1},
            "spec": {"name": "abc", "unknown": 1, "replicas": null, "port": "http", "free": {"any": {"thing": 1}}, "labels": {"a": "b"}},
            "junk": true
        });
        assert_eq!(prepare(&schema(), &mut obj), vec![]);
        assert_eq!(obj["spec"]["mode"], "Fast");
        assert_eq!(obj["spec"]["nested"]["timeout"], "30s");
        assert!(obj["spec"].get("unknown").is_none());
        assert!(obj["spec"].get("replicas").is_none());
        assert!(obj.get("junk").is_none());
        assert_eq!(obj["metadata"]["extra"], 1);
        assert_eq!(obj["spec"]["free"]["any"]["thing"], 1);
    }

    #[test]
    fn reports_each_violation_with_the_real_reason() {
        let mut obj = json!({"spec": {"name": "ABC", "mode": "Medium", "replicas": 9, "tags": ["a", "b", "a", "c"], "port": 1.5}});
        let causes = prepare(&schema(), &mut obj);
        let got: Vec<(&str, &str)> = causes
            .iter()
            .map(|c| (c.reason.as_str(), c.field.as_str()))
            .collect();
        assert!(got.contains(&("FieldValueInvalid", "spec.name")), "{got:?}");
        assert!(
            got.contains(&("FieldValueNotSupported", "spec.mode")),
            "{got:?}"
        );
        assert!(
            got.contains(&("FieldValueInvalid", "spec.replicas")),
            "{got:?}"
        );
        assert!(got.contains(&("FieldValueTooMany", "spec.tags")), "{got:?}");
        assert!(
            got.contains(&("FieldValueDuplicate", "spec.tags[2]")),
            "{got:?}"
        );
        assert!(
            got.contains(&("FieldValueTypeInvalid", "spec.port")),
            "{got:?}"
        );
        let mut missing = json!({"spec": {"replicas": "x"}});
        let causes = prepare(&schema(), &mut missing);
        assert!(
            causes
                .iter()
                .any(|c| c.reason == "FieldValueRequired" && c.field == "spec.name")
        );
        assert!(
            causes
                .iter()
                .any(|c| c.reason == "FieldValueTypeInvalid" && c.field == "spec.replicas")
        );
    }

    #[test]
    fn immutability_rules_are_enforced_on_update_only_where_both_values_exist() {
        let schema = Schema(json!({"properties": {"spec": {"properties": {
            "tenant": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "tenant is immutable"}]}
        }}}}));
        let old = json!({"spec": {"tenant": "a"}});
        let causes = check_immutable(&schema, &old, &json!({"spec": {"tenant": "b"}}));
        assert_eq!(
            causes,
            vec![Cause::new(
                "FieldValueInvalid",
                "spec.tenant",
                "Invalid value: \"string\": tenant is immutable"
            )]
        );
        assert!(check_immutable(&schema, &old, &old).is_empty());
        assert!(
            check_immutable(
                &schema,
                &json!({"spec": {}}),
                &json!({"spec": {"tenant": "b"}})
            )
            .is_empty()
        );
        assert!(
            cel_rules(&schema.0).is_empty(),
            "the enforced rule is not listed as unenforced"
        );
    }

    #[test]
    fn date_time_format_follows_kube_openapi() {
        for ok in [
            "2026-12-01T19:00:00Z",
            "2026-12-01t19:00:00z",
            "2024-02-29T23:59:59.123456789+05:30",
            "2026-12-01T00:00:00-00:00",
        ] {
            assert!(is_date_time(ok), "{ok}");
        }
        for bad in [
            "",
            "tomorrow",
            "2026-12-01",
            "2026-12-01T19:00:00",
            "2026-12-01 19:00:00Z",
            "2026-12-01T19:00Z",
            "2026-13-01T19:00:00Z",
            "2025-02-29T19:00:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T19:60:00Z",
            "2026-12-01T19:00:00+0100",
            "2026-12-01T19:00:00Z[UTC]",
            "26-12-01T19:00:00Z",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
        let schema = Schema(serde_json::json!({"type": "object", "properties": {
            "at": {"type": "string", "format": "date-time"},
            "n": {"type": "integer", "format": "int32"},
        }}));
        let mut ok = serde_json::json!({"at": "2026-12-01T19:00:00Z", "n": 1_i64 << 40});
        assert!(
            prepare(&schema, &mut ok).is_empty(),
            "int32 is not enforced"
        );
        let mut bad = serde_json::json!({"at": "soon"});
        let causes = prepare(&schema, &mut bad);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].reason, "FieldValueTypeInvalid");
        assert_eq!(causes[0].field, "at");
        assert_eq!(
            causes[0].message,
            "Invalid value: \"string\": at in body must be of type date-time: \"soon\""
        );
    }

    #[test]
    fn lists_cel_rules_it_does_not_enforce() {
        assert_eq!(
            cel_rules(&schema().0),
            vec![("spec".to_string(), "self.max >= self.min".to_string())]
        );
    }
}
