//! Field ownership (`metadata.managedFields`, `FieldsV1`) and server-side apply.
//!
//! Lists follow the schema's `x-kubernetes-list-type`: `atomic` (the default) is one leaf, `set`
//! items are `v:` leaves, `map` items are `k:` nodes with a `.` leaf and per-field leaves, merged by
//! key. `metadata.finalizers` is a set as upstream; other metadata lists are atomic. Simplifications:
//! ownership of a field versus its own children is not reconciled (a leaf that later grows children
//! stops being a leaf), and an emptied set/map list is removed with its last item.

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

    /// Whether `path` is an owned leaf (a prefix of owned leaves is not).
    fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.0.is_empty(),
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
                .map(|(k, v)| (k.clone(), FieldSet::from_json(v)))
                .collect(),
        )
    }
}

/// How a list is owned, from the structural schema (`x-kubernetes-list-type`).
enum ListType<'a> {
    /// One leaf for the whole list (the default).
    Atomic,
    /// Each distinct scalar value is its own leaf (`v:`).
    Set,
    /// Each item, identified by its key fields, is a node (`k:`).
    Map(Vec<&'a str>),
}

fn list_type(schema: Option<&Value>) -> ListType<'_> {
    match schema
        .and_then(|s| s.get("x-kubernetes-list-type"))
        .and_then(Value::as_str)
    {
        Some("set") => ListType::Set,
        Some("map") => ListType::Map(
            schema
                .and_then(|s| s.get("x-kubernetes-list-map-keys"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect(),
        ),
        _ => ListType::Atomic,
    }
}

fn child_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let s = schema?;
    s.get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
}

fn items_schema(schema: Option<&Value>) -> Option<&Value> {
    schema?.get("items")
}

/// `k:{"key":value,...}` for a list-map item (keys in sorted order, as upstream).
fn map_key(item: &Value, keys: &[&str]) -> String {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    let mut picked = Map::new();
    for k in sorted {
        picked.insert(k.to_string(), item.get(k).cloned().unwrap_or(Value::Null));
    }
    format!("k:{}", Value::Object(picked))
}

/// The leaf paths an object sets, skipping server-owned metadata.
pub fn fields_of(obj: &Value, schema: Option<&Value>) -> FieldSet {
    let mut paths = Vec::new();
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => metadata_paths(v, &mut paths),
                _ => value_paths(
                    v,
                    child_schema(schema, k),
                    vec![format!("f:{k}")],
                    &mut paths,
                ),
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

fn value_paths(v: &Value, schema: Option<&Value>, prefix: FieldPath, out: &mut Vec<FieldPath>) {
    let extend = |seg: String| {
        let mut p = prefix.clone();
        p.push(seg);
        p
    };
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                value_paths(
                    child,
                    child_schema(schema, k),
                    extend(format!("f:{k}")),
                    out,
                );
            }
        }
        Value::Array(items) if !items.is_empty() => match list_type(schema) {
            ListType::Atomic => out.push(prefix),
            ListType::Set => out.extend(items.iter().map(|i| extend(format!("v:{i}")))),
            ListType::Map(keys) => {
                for item in items {
                    let node = extend(map_key(item, &keys));
                    let mut own = node.clone();
                    own.push(".".into());
                    out.push(own);
                    value_paths(item, items_schema(schema), node, out);
                }
            }
        },
        _ => out.push(prefix),
    }
}

/// Stands for "the item exists" at a `.` path segment.
static EXISTS: Value = Value::Bool(true);

fn key_matches(item: &Value, key: &str) -> bool {
    serde_json::from_str::<Value>(key)
        .ok()
        .and_then(|k| k.as_object().cloned())
        .is_some_and(|k| {
            k.iter()
                .all(|(f, want)| item.get(f).unwrap_or(&Value::Null) == want)
        })
}

/// The value at a `FieldsV1` path, if present.
fn get_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, seg| {
        if let Some(name) = seg.strip_prefix("f:") {
            cur.get(name)
        } else if let Some(item) = seg.strip_prefix("v:") {
            let want: Value = serde_json::from_str(item).ok()?;
            cur.as_array()?.iter().find(|x| **x == want)
        } else if let Some(key) = seg.strip_prefix("k:") {
            cur.as_array()?.iter().find(|x| key_matches(x, key))
        } else if seg == "." {
            Some(&EXISTS)
        } else {
            None
        }
    })
}

fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if last == "." {
        return remove_at(obj, parents);
    }
    let mut cur = obj;
    for seg in parents {
        let next = if let Some(n) = seg.strip_prefix("f:") {
            cur.get_mut(n)
        } else if let Some(key) = seg.strip_prefix("k:") {
            cur.as_array_mut()
                .and_then(|a| a.iter_mut().find(|x| key_matches(x, key)))
        } else {
            None
        };
        let Some(next) = next else { return };
        cur = next;
    }
    if let (Some(name), Some(map)) = (last.strip_prefix("f:"), cur.as_object_mut()) {
        map.remove(name);
    } else if let (Some(item), Some(list)) = (last.strip_prefix("v:"), cur.as_array_mut())
        && let Ok(want) = serde_json::from_str::<Value>(item)
    {
        list.retain(|x| *x != want);
    } else if let (Some(key), Some(list)) = (last.strip_prefix("k:"), cur.as_array_mut()) {
        list.retain(|x| !key_matches(x, key));
    }
}

/// Renders a path the way apply conflicts report it, e.g. `.spec.replicas`.
pub fn display_path(path: &[String]) -> String {
    path.iter()
        .filter(|s| *s != ".")
        .map(|s| match s.strip_prefix("f:") {
            Some(n) => format!(".{n}"),
            None => format!("[{}]", s.trim_start_matches("v:").trim_start_matches("k:")),
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
    /// Structural schema of the type, for list semantics (`None` for built-ins: lists are atomic).
    pub schema: Option<&'a Value>,
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
    let new_leaves = fields_of(new, actor.schema).leaves();
    let changed: Vec<FieldPath> = new_leaves
        .iter()
        .filter(|p| get_at(old, p) != get_at(new, p))
        .cloned()
        .collect();
    let gone: Vec<FieldPath> = fields_of(old, actor.schema)
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
    let applied_leaves = fields_of(applied, actor.schema).leaves();
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
    merge_applied(&mut merged, applied, actor.schema);
    for p in previous.iter().filter(|p| !applied_leaves.contains(p)) {
        let owned_elsewhere = entries.iter().any(|e| {
            !e.same_owner(actor.manager, "Apply", actor.subresource) && e.fields.contains(p)
        });
        if !owned_elsewhere {
            remove_at(&mut merged, p);
            // A set or list-map emptied by the removal goes with its last item.
            let items = if p.last().is_some_and(|l| l == ".") {
                2
            } else {
                1
            };
            let container = &p[..p.len().saturating_sub(items)];
            let emptied = p.len() > items
                && !p[p.len() - items].starts_with("f:")
                && get_at(&merged, container)
                    .is_some_and(|c| c.as_array().is_some_and(Vec::is_empty));
            if emptied && !applied_leaves.iter().any(|a| a.as_slice() == container) {
                remove_at(&mut merged, container);
            }
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

/// Deep-merges an applied configuration: maps merge, atomic lists replace, sets (and finalizers)
/// union, list-maps merge item by key.
fn merge_applied(target: &mut Value, applied: &Value, schema: Option<&Value>) {
    fn union(target: &mut Value, applied: &Value) {
        let mut list = target.as_array().cloned().unwrap_or_default();
        for f in applied.as_array().into_iter().flatten() {
            if !list.contains(f) {
                list.push(f.clone());
            }
        }
        *target = Value::Array(list);
    }
    fn merge(target: &mut Value, applied: &Value, schema: Option<&Value>, finalizers: bool) {
        match applied {
            Value::Object(a) => {
                if !target.is_object() {
                    *target = Value::Object(Map::new());
                }
                let t = target.as_object_mut().expect("made an object above");
                for (k, v) in a {
                    let slot = t.entry(k.clone()).or_insert(Value::Null);
                    merge(slot, v, child_schema(schema, k), false);
                }
            }
            Value::Array(items) if target.is_array() => match list_type(schema) {
                _ if finalizers => union(target, applied),
                ListType::Atomic => *target = applied.clone(),
                ListType::Set => union(target, applied),
                ListType::Map(keys) => {
                    let list = target.as_array_mut().expect("checked is_array");
                    for item in items {
                        let key = map_key(item, &keys);
                        let key = key.trim_start_matches("k:");
                        match list.iter_mut().find(|x| key_matches(x, key)) {
                            Some(existing) => merge(existing, item, items_schema(schema), false),
                            None => list.push(item.clone()),
                        }
                    }
                }
            },
            _ => *target = applied.clone(),
        }
    }
    let Some(map) = applied.as_object() else {
        *target = applied.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object above");
    for (k, v) in map {
        let slot = t.entry(k.clone()).or_insert(Value::Null);
        if k == "metadata" {
            // No schema below metadata: only finalizers are a set, everything else merges as maps.
            if let (Some(slot_map), Some(meta)) = (slot.as_object_mut(), v.as_object()) {
                for (mk, mv) in meta {
                    let mslot = slot_map.entry(mk.clone()).or_insert(Value::Null);
                    merge(mslot, mv, None, mk == "finalizers");
                }
                continue;
            }
        }
        merge(slot, v, child_schema(schema, k), false);
    }
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
            schema: None,
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
        assert!(
            two["metadata"].get("finalizers").is_none(),
            "emptied set goes away"
        );
    }

    #[test]
    fn list_map_items_are_owned_per_key() {
        let schema = json!({"properties": {"status": {"properties": {"conditions": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}
        }}}}});
        let with_schema = |m| Actor {
            schema: Some(&schema),
            ..actor(m)
        };
        let cond = |t: &str, s: &str| json!({"type": t, "status": s});
        let live = json!({"metadata": {"name": "a"}});
        let a = apply(
            &live,
            &json!({"status": {"conditions": [cond("Ready", "True")]}}),
            with_schema("ctrl-a"),
            false,
        )
        .unwrap();
        let b = apply(
            &a,
            &json!({"status": {"conditions": [cond("Synced", "False")]}}),
            with_schema("ctrl-b"),
            false,
        )
        .unwrap();
        assert_eq!(
            b["status"]["conditions"],
            json!([cond("Ready", "True"), cond("Synced", "False")])
        );
        let entry = read_entries(&b)
            .into_iter()
            .find(|e| e.manager == "ctrl-b")
            .unwrap();
        assert!(entry.fields.contains(&[
            "f:status".into(),
            "f:conditions".into(),
            r#"k:{"type":"Synced"}"#.into(),
            ".".into()
        ]));
        let err = apply(
            &b,
            &json!({"status": {"conditions": [cond("Ready", "False")]}}),
            with_schema("ctrl-b"),
            false,
        )
        .unwrap_err();
        assert_eq!(
            display_path(&err[0].path),
            r#".status.conditions[{"type":"Ready"}].status"#
        );
        // ctrl-a drops its item: only that item goes.
        let c = apply(
            &b,
            &json!({"status": {"conditions": []}}),
            with_schema("ctrl-a"),
            false,
        )
        .unwrap();
        assert_eq!(c["status"]["conditions"], json!([cond("Synced", "False")]));
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
