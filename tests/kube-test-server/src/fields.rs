//! Field ownership (`metadata.managedFields`, `FieldsV1`) and server-side apply.
//!
//! Simplifications against the real server: every list is atomic (owned as one leaf) except
//! `metadata.finalizers`, which is a set (`v:` elements) as upstream; `x-kubernetes-list-type: map`
//! lists are not merged per key; ownership of a map versus its own children is not reconciled.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// A `FieldsV1` tree: keys like `f:spec` or `v:"x"`; an empty map marks an owned leaf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeMap<String, FieldSet>);

/// One path of owned leaf, as `FieldsV1` keys from the root.
pub type FieldPath = Vec<String>;

impl FieldSet {
    fn insert(&mut self, path: &[String]) {
        if let Some((head, rest)) = path.split_first() {
            self.0.entry(head.clone()).or_default().insert(rest);
        }
    }

    fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => true,
            Some((head, rest)) => self.0.get(head).is_some_and(|c| c.contains(rest)),
        }
    }

    fn remove(&mut self, path: &[String]) {
        if let Some((head, rest)) = path.split_first() {
            if rest.is_empty() {
                self.0.remove(head);
            } else if let Some(child) = self.0.get_mut(head) {
                child.remove(rest);
                if child.0.is_empty() {
                    self.0.remove(head);
                }
            }
        }
    }

    /// Every owned leaf path.
    pub fn leaves(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        for (k, child) in &self.0 {
            if child.0.is_empty() {
                out.push(vec![k.clone()]);
            } else {
                for mut p in child.leaves() {
                    p.insert(0, k.clone());
                    out.push(p);
                }
            }
        }
        out
    }

    fn from_paths(paths: &[FieldPath]) -> Self {
        let mut s = FieldSet::default();
        for p in paths {
            s.insert(p);
        }
        s
    }

    fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }

    fn from_json(v: &Value) -> Self {
        FieldSet(
            v.as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.as_str() != ".")
                .map(|(k, v)| (k.clone(), FieldSet::from_json(v)))
                .collect(),
        )
    }
}

/// The leaf paths an object sets, skipping server-owned metadata.
pub fn fields_of(obj: &Value) -> FieldSet {
    let mut paths = Vec::new();
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => metadata_paths(v, &mut paths),
                _ => value_paths(v, vec![format!("f:{k}")], &mut paths),
            }
        }
    }
    FieldSet::from_paths(&paths)
}

fn metadata_paths(meta: &Value, out: &mut Vec<FieldPath>) {
    let m = |s: &str| vec!["f:metadata".to_string(), format!("f:{s}")];
    for key in ["labels", "annotations"] {
        for k in meta
            .get(key)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            let mut p = m(key);
            p.push(format!("f:{k}"));
            out.push(p);
        }
    }
    for f in meta
        .get("finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut p = m("finalizers");
        p.push(format!("v:{f}"));
        out.push(p);
    }
    if meta.get("ownerReferences").is_some() {
        out.push(m("ownerReferences"));
    }
}

fn value_paths(v: &Value, prefix: FieldPath, out: &mut Vec<FieldPath>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let mut p = prefix.clone();
                p.push(format!("f:{k}"));
                value_paths(child, p, out);
            }
        }
        _ => out.push(prefix),
    }
}

/// The value at a `FieldsV1` path, if present.
fn get_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, seg| {
        if let Some(name) = seg.strip_prefix("f:") {
            cur.get(name)
        } else if let Some(item) = seg.strip_prefix("v:") {
            let want: Value = serde_json::from_str(item).ok()?;
            cur.as_array()?.iter().find(|x| **x == want)
        } else {
            None
        }
    })
}

fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parents {
        let Some(next) = seg.strip_prefix("f:").and_then(|n| cur.get_mut(n)) else {
            return;
        };
        cur = next;
    }
    if let (Some(name), Some(map)) = (last.strip_prefix("f:"), cur.as_object_mut()) {
        map.remove(name);
    } else if let (Some(item), Some(list)) = (last.strip_prefix("v:"), cur.as_array_mut())
        && let Ok(want) = serde_json::from_str::<Value>(item)
    {
        list.retain(|x| *x != want);
    }
}

/// Renders a path the way apply conflicts report it, e.g. `.spec.replicas`.
pub fn display_path(path: &[String]) -> String {
    path.iter()
        .map(|s| match s.strip_prefix("f:") {
            Some(n) => format!(".{n}"),
            None => format!("[{}]", s.trim_start_matches("v:")),
        })
        .collect()
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// apiVersion the manager used.
    pub api_version: String,
    /// RFC 3339 time of the last change to this entry.
    pub time: String,
    /// Owned fields.
    pub fields: FieldSet,
    /// `status` for entries made through the status subresource.
    pub subresource: Option<String>,
}

impl Entry {
    fn same_owner(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

/// Reads `metadata.managedFields`.
pub fn read_entries(obj: &Value) -> Vec<Entry> {
    let list = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .map(|e| {
            let s = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            Entry {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                fields: FieldSet::from_json(e.get("fieldsV1").unwrap_or(&Value::Null)),
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            }
        })
        .collect()
}

/// Writes `metadata.managedFields`, dropping entries that own nothing.
pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.0.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": e.fields.to_json(),
            });
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Who changes an object and how, for ownership bookkeeping.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// Field manager name.
    pub manager: &'a str,
    /// apiVersion of the request.
    pub api_version: &'a str,
    /// `Some("status")` for the status subresource.
    pub subresource: Option<&'a str>,
    /// Current time, RFC 3339.
    pub now: &'a str,
}

fn upsert(entries: &mut Vec<Entry>, actor: Actor<'_>, operation: &str, fields: FieldSet) {
    match entries
        .iter_mut()
        .find(|e| e.same_owner(actor.manager, operation, actor.subresource))
    {
        Some(e) => {
            if e.fields != fields {
                e.time = actor.now.to_string();
            }
            e.fields = fields;
            e.api_version = actor.api_version.to_string();
        }
        None => entries.push(Entry {
            manager: actor.manager.to_string(),
            operation: operation.to_string(),
            api_version: actor.api_version.to_string(),
            time: actor.now.to_string(),
            fields,
            subresource: actor.subresource.map(str::to_string),
        }),
    }
}

/// Records a non-apply write (create, update, merge/json patch): changed fields move to `actor`'s
/// `Update` entry; fields that disappeared are owned by nobody.
pub fn record_update(old: &Value, new: &mut Value, actor: Actor<'_>) {
    let reset = new
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty);
    let mut entries = if reset { Vec::new() } else { read_entries(old) };
    let new_leaves = fields_of(new).leaves();
    let changed: Vec<FieldPath> = new_leaves
        .iter()
        .filter(|p| get_at(old, p) != get_at(new, p))
        .cloned()
        .collect();
    let gone: Vec<FieldPath> = fields_of(old)
        .leaves()
        .into_iter()
        .filter(|p| get_at(new, p).is_none())
        .collect();
    for e in &mut entries {
        for p in changed.iter().chain(&gone) {
            e.fields.remove(p);
        }
    }
    if !changed.is_empty() {
        let mut mine = entries
            .iter()
            .find(|e| e.same_owner(actor.manager, "Update", actor.subresource))
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        for p in &changed {
            mine.insert(p);
        }
        upsert(&mut entries, actor, "Update", mine);
    }
    write_entries(new, &entries);
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// Its apiVersion.
    pub api_version: String,
    /// The contested field.
    pub path: FieldPath,
}

/// Server-side apply of `applied` (already stripped to what the endpoint may change) onto `live`.
/// Returns the merged object with updated `managedFields`, or the conflicts when `force` is off.
pub fn apply(
    live: &Value,
    applied: &Value,
    actor: Actor<'_>,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let mut entries = read_entries(live);
    let applied_leaves = fields_of(applied).leaves();
    let mut conflicts = Vec::new();
    for e in entries
        .iter()
        .filter(|e| !e.same_owner(actor.manager, "Apply", actor.subresource))
    {
        for p in &applied_leaves {
            if e.fields.contains(p) && get_at(applied, p) != get_at(live, p) {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    api_version: e.api_version.clone(),
                    path: p.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for c in &conflicts {
        for e in entries.iter_mut().filter(|e| e.manager == c.manager) {
            e.fields.remove(&c.path);
        }
    }
    let previous = entries
        .iter()
        .find(|e| e.same_owner(actor.manager, "Apply", actor.subresource))
        .map(|e| e.fields.leaves())
        .unwrap_or_default();
    let mut merged = live.clone();
    merge_applied(&mut merged, applied);
    for p in previous.iter().filter(|p| !applied_leaves.contains(p)) {
        let owned_elsewhere = entries.iter().any(|e| {
            !e.same_owner(actor.manager, "Apply", actor.subresource) && e.fields.contains(p)
        });
        if !owned_elsewhere {
            remove_at(&mut merged, p);
        }
    }
    upsert(
        &mut entries,
        actor,
        "Apply",
        FieldSet::from_paths(&applied_leaves),
    );
    write_entries(&mut merged, &entries);
    Ok(merged)
}

/// Deep-merges an applied configuration: maps merge, lists replace, finalizers union.
fn merge_applied(target: &mut Value, applied: &Value) {
    fn merge(target: &mut Value, applied: &Value, path: &[&str]) {
        match (target.as_object_mut(), applied) {
            (Some(t), Value::Object(a)) => {
                for (k, v) in a {
                    let mut p = path.to_vec();
                    p.push(k);
                    merge(t.entry(k.clone()).or_insert(Value::Null), v, &p);
                }
            }
            _ if path == ["metadata", "finalizers"] => {
                let mut list = target.as_array().cloned().unwrap_or_default();
                for f in applied.as_array().into_iter().flatten() {
                    if !list.contains(f) {
                        list.push(f.clone());
                    }
                }
                *target = Value::Array(list);
            }
            _ if applied.is_object() => {
                *target = Value::Object(Map::new());
                merge(target, applied, path);
            }
            _ => *target = applied.clone(),
        }
    }
    merge(target, applied, &[]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(m: &str) -> Actor<'_> {
        Actor {
            manager: m,
            api_version: "example.com/v1",
            subresource: None,
            now: "2026-01-01T00:00:00Z",
        }
    }

    #[test]
    fn apply_conflicts_with_other_owner_unless_same_value_or_forced() {
        let live = json!({"metadata": {"name": "a"}, "spec": {"x": 1}});
        let a = apply(
            &live,
            &json!({"metadata": {"name": "a"}, "spec": {"x": 1, "y": 2}}),
            actor("alice"),
            false,
        )
        .unwrap();
        // Same value: shared ownership, no conflict.
        let b = apply(&a, &json!({"spec": {"x": 1}}), actor("bob"), false).unwrap();
        let err = apply(&b, &json!({"spec": {"y": 3}}), actor("bob"), false).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].manager, "alice");
        assert_eq!(display_path(&err[0].path), ".spec.y");
        let forced = apply(&b, &json!({"spec": {"y": 3}}), actor("bob"), true).unwrap();
        assert_eq!(forced["spec"]["y"], 3);
        let owners = read_entries(&forced);
        let alice = owners.iter().find(|e| e.manager == "alice").unwrap();
        assert!(!alice.fields.contains(&["f:spec".into(), "f:y".into()]));
        assert!(alice.fields.contains(&["f:spec".into(), "f:x".into()]));
    }

    #[test]
    fn apply_removes_fields_the_manager_stopped_applying_unless_shared() {
        let live = json!({"metadata": {"name": "a"}});
        let one = apply(&live, &json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["f1"]}, "spec": {"x": 1}}), actor("m"), false)
            .unwrap();
        assert_eq!(one["metadata"]["finalizers"], json!(["f1"]));
        let two = apply(
            &one,
            &json!({"metadata": {"labels": {"a": "1"}}}),
            actor("m"),
            false,
        )
        .unwrap();
        assert_eq!(two["metadata"]["labels"], json!({"a": "1"}));
        assert!(two["spec"].get("x").is_none());
        assert_eq!(two["metadata"]["finalizers"], json!([]));
    }

    #[test]
    fn updates_take_ownership_of_changed_fields() {
        let live = apply(
            &json!({"metadata": {}}),
            &json!({"spec": {"x": 1}}),
            actor("applier"),
            false,
        )
        .unwrap();
        let mut updated = live.clone();
        updated["spec"]["x"] = json!(2);
        record_update(&live, &mut updated, actor("editor"));
        let entries = read_entries(&updated);
        assert_eq!(entries.len(), 1, "applier lost its only field: {entries:?}");
        assert_eq!(entries[0].manager, "editor");
        assert_eq!(entries[0].operation, "Update");
        let err = apply(
            &updated,
            &json!({"spec": {"x": 1}}),
            actor("applier"),
            false,
        )
        .unwrap_err();
        assert_eq!(err[0].manager, "editor");
    }
}
