//! JSON merge patch (RFC 7386) and JSON patch (RFC 6902), applied to plain JSON values.

use crate::error::{ApiError, Result};
use serde_json::Value;

/// Applies an RFC 7386 merge patch: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let target_map = target.as_object_mut().expect("made an object above");
    for (k, v) in patch_map {
        if v.is_null() {
            target_map.remove(k);
        } else {
            merge_patch(target_map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Decodes one JSON pointer segment (`~1` is `/`, `~0` is `~`).
fn unescape(seg: &str) -> String {
    seg.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<Vec<String>> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| ApiError::Unprocessable(format!("invalid JSON pointer {path:?}")))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn missing(path: &str) -> ApiError {
    ApiError::Unprocessable(format!(
        "the server rejected our request due to an error in our request: path {path:?} does not exist"
    ))
}

fn parent_mut<'a>(doc: &'a mut Value, segs: &[String], path: &str) -> Result<&'a mut Value> {
    let mut cur = doc;
    for seg in &segs[..segs.len() - 1] {
        cur = match cur {
            Value::Object(m) => m.get_mut(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(move |i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| missing(path))?;
    }
    Ok(cur)
}

fn get<'a>(doc: &'a Value, path: &str) -> Result<&'a Value> {
    split_pointer(path)?
        .iter()
        .try_fold(doc, |cur, seg| match cur {
            Value::Object(m) => m.get(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        })
        .ok_or_else(|| missing(path))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<()> {
    let segs = split_pointer(path)?;
    let Some(last) = segs.last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, &segs, path)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let idx = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| missing(path))?
            };
            a.insert(idx, value);
        }
        _ => return Err(missing(path)),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value> {
    let segs = split_pointer(path)?;
    let last = segs.last().ok_or_else(|| missing(path))?;
    match parent_mut(doc, &segs, path)? {
        Value::Object(m) => m.remove(last).ok_or_else(|| missing(path)),
        Value::Array(a) => {
            let idx = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(|| missing(path))?;
            Ok(a.remove(idx))
        }
        _ => Err(missing(path)),
    }
}

/// Applies an RFC 6902 patch atomically: on any failure the document is left unchanged.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<()> {
    let ops = ops
        .as_array()
        .ok_or_else(|| ApiError::BadRequest("json patch must be an array of operations".into()))?;
    let mut work = doc.clone();
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
        let from = op.get("from").and_then(Value::as_str).unwrap_or_default();
        let value = || {
            op.get("value").cloned().ok_or_else(|| {
                ApiError::Unprocessable(format!("operation {kind} at {path:?} has no value"))
            })
        };
        match kind {
            "add" => add(&mut work, path, value()?)?,
            "remove" => {
                remove(&mut work, path)?;
            }
            "replace" => {
                remove(&mut work, path)?;
                add(&mut work, path, value()?)?;
            }
            "move" => {
                let v = remove(&mut work, from)?;
                add(&mut work, path, v)?;
            }
            "copy" => {
                let v = get(&work, from)?.clone();
                add(&mut work, path, v)?;
            }
            "test" => {
                // As upstream (evanphx/json-patch): a missing path tests equal to null.
                let want = value()?;
                let ok = match get(&work, path) {
                    Ok(got) => *got == want,
                    Err(_) => want.is_null(),
                };
                if !ok {
                    return Err(ApiError::Unprocessable(format!(
                        "the server rejected our request due to an error in our request: testing value {path} failed"
                    )));
                }
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unexpected json patch operation {other:?}"
                )));
            }
        }
    }
    *doc = work;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_merges_deletes_and_replaces() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2], "s": "x"});
        merge_patch(
            &mut doc,
            &json!({"a": {"b": null, "d": 3}, "l": [3], "s": {"n": 1}}),
        );
        assert_eq!(doc, json!({"a": {"c": 2, "d": 3}, "l": [3], "s": {"n": 1}}));
    }

    #[test]
    fn json_patch_supports_all_ops_and_is_atomic() {
        let mut doc = json!({"metadata": {"finalizers": ["a", "b"]}, "x": 1});
        json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": "a"},
                {"op": "remove", "path": "/metadata/finalizers/0"},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "c"},
                {"op": "copy", "from": "/x", "path": "/y"},
                {"op": "move", "from": "/x", "path": "/z"},
                {"op": "replace", "path": "/y", "value": 5},
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"finalizers": ["b", "c"]}, "y": 5, "z": 1})
        );
        let before = doc.clone();
        let err = json_patch(
            &mut doc,
            &json!([{"op": "remove", "path": "/y"}, {"op": "test", "path": "/z", "value": 2}]),
        )
        .unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(doc, before);
        assert_eq!(
            json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}]))
                .unwrap_err()
                .code(),
            422
        );
        json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/nope", "value": null}]),
        )
        .unwrap();
    }

    #[test]
    fn pointer_escapes_are_decoded() {
        let mut doc = json!({"metadata": {"labels": {}}});
        json_patch(
            &mut doc,
            &json!([{"op": "add", "path": "/metadata/labels/a~1b", "value": "v"}]),
        )
        .unwrap();
        assert_eq!(doc["metadata"]["labels"]["a/b"], "v");
    }
}
