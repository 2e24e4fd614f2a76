//! Patch formats (JSON merge patch, JSON patch) and the field bookkeeping behind the
//! server-side apply approximation.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::store::Kind;

/// Leaf field paths of one apply manager's last applied configuration.
pub(crate) type FieldSet = BTreeSet<Vec<String>>;

/// Leaf paths an apply configuration sets (lists count as one leaf); identity and
/// system metadata excluded, and only status (or everything but status) per endpoint.
pub(crate) fn applied_fields(kind: &Kind, patch: &Value, status_only: bool) -> FieldSet {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut FieldSet) {
        if let (Some(key), Value::Array(items)) = (item_key(path), v) {
            for item in items {
                let mut p = path.clone();
                p.push(key(item));
                out.insert(p);
            }
            return;
        }
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        }
    }
    let mut out = FieldSet::new();
    walk(patch, &mut vec![], &mut out);
    out.retain(|p| {
        let top = p.first().map(String::as_str).unwrap_or_default();
        match top {
            "apiVersion" | "kind" => false,
            "metadata" => {
                !status_only
                    && matches!(
                        p.get(1).map(String::as_str),
                        Some("labels" | "annotations" | "finalizers" | "ownerReferences")
                    )
            }
            "status" => status_only || !kind.status,
            _ => !status_only,
        }
    });
    out
}

/// Leaf paths whose values differ; a write takes ownership of these from apply managers.
pub(crate) fn diff_paths(old: &Value, new: &Value, path: &mut Vec<String>, out: &mut FieldSet) {
    if let (Some(key), Some(a), Some(b)) = (item_key(path), old.as_array(), new.as_array()) {
        let find = |list: &[Value], k: &str| list.iter().find(|i| key(i) == k).cloned();
        for k in a.iter().chain(b).map(key) {
            if find(a, &k) != find(b, &k) {
                let mut p = path.clone();
                p.push(k);
                out.insert(p);
            }
        }
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let (x, y) = (
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                );
                if x != y {
                    path.push(k.clone());
                    diff_paths(x, y, path, out);
                    path.pop();
                }
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// Lists Kubernetes merges by item rather than replacing: `metadata.finalizers` (a set)
/// and `metadata.ownerReferences` (a map keyed by uid); gives the item's key.
fn item_key(path: &[String]) -> Option<fn(&Value) -> String> {
    match path {
        [m, f] if m == "metadata" && f == "finalizers" => {
            Some(|v| v.as_str().unwrap_or_default().to_string())
        }
        [m, f] if m == "metadata" && f == "ownerReferences" => {
            Some(|v| v["uid"].as_str().unwrap_or_default().to_string())
        }
        _ => None,
    }
}

pub(crate) fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if let Some(key) = item_key(parents) {
        if let Some(items) = obj
            .pointer_mut(&format!("/{}", parents.join("/")))
            .and_then(Value::as_array_mut)
        {
            items.retain(|i| key(i) != *last);
        }
        return;
    }
    let mut cur = obj;
    for p in parents {
        match cur.get_mut(p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Server-side apply, approximated: maps merge recursively, finalizers and owner
/// references merge by item, other lists and scalars are replaced, explicit nulls remove.
pub(crate) fn deep_merge(target: &mut Value, applied: &Value) {
    let before: Vec<(String, Value)> = ["finalizers", "ownerReferences"]
        .iter()
        .filter_map(|f| {
            Some((
                f.to_string(),
                target.pointer(&format!("/metadata/{f}"))?.clone(),
            ))
        })
        .collect();
    merge_patch(target, applied);
    for (field, old) in before {
        let path = ["metadata".to_string(), field.clone()];
        let (Some(key), Some(old), Some(new)) = (
            item_key(&path),
            old.as_array(),
            applied
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_array),
        ) else {
            continue;
        };
        let mut merged: Vec<Value> = old
            .iter()
            .map(|o| new.iter().find(|n| key(n) == key(o)).unwrap_or(o).clone())
            .collect();
        merged.extend(
            new.iter()
                .filter(|n| !old.iter().any(|o| key(o) == key(n)))
                .cloned(),
        );
        target["metadata"][field] = Value::Array(merged);
    }
}

/// RFC 6902 JSON patch (add, remove, replace, test, move, copy).
pub(crate) fn json_patch(mut doc: Value, ops: &Value) -> std::result::Result<Value, String> {
    let ops = ops.as_array().ok_or("a JSON patch must be an array")?;
    for op in ops {
        let path = op["path"].as_str().ok_or("op without path")?;
        match op["op"].as_str().unwrap_or_default() {
            "add" => pointer_add(&mut doc, path, op["value"].clone())?,
            "remove" => {
                pointer_remove(&mut doc, path)?;
            }
            "replace" => {
                pointer_remove(&mut doc, path)?;
                pointer_add(&mut doc, path, op["value"].clone())?;
            }
            "test" => {
                // As the real server (evanphx/json-patch): a missing member tests as null.
                let found = doc.pointer(path).unwrap_or(&Value::Null);
                if found != &op["value"] {
                    return Err(format!("testing value {path} failed"));
                }
            }
            "move" | "copy" => {
                let from = op["from"].as_str().ok_or("op without from")?;
                let v = if op["op"] == "move" {
                    pointer_remove(&mut doc, from)?
                } else {
                    doc.pointer(from).cloned().ok_or("missing from")?
                };
                pointer_add(&mut doc, path, v)?;
            }
            other => return Err(format!("unknown JSON patch op {other:?}")),
        }
    }
    Ok(doc)
}

fn split_pointer(path: &str) -> std::result::Result<(String, String), String> {
    let (parent, last) = path.rsplit_once('/').ok_or("invalid JSON pointer")?;
    Ok((parent.into(), last.replace("~1", "/").replace("~0", "~")))
}

fn pointer_add(doc: &mut Value, path: &str, v: Value) -> std::result::Result<(), String> {
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => {
            m.insert(last, v);
        }
        Some(Value::Array(a)) if last == "-" => a.push(v),
        Some(Value::Array(a)) => {
            let i: usize = last.parse().map_err(|_| "bad array index")?;
            if i > a.len() {
                return Err("array index out of range".into());
            }
            a.insert(i, v);
        }
        _ => return Err(format!("doc is missing path: {path}")),
    }
    Ok(())
}

fn pointer_remove(doc: &mut Value, path: &str) -> std::result::Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let removed = match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => m.remove(&last),
        Some(Value::Array(a)) => last
            .parse::<usize>()
            .ok()
            .filter(|i| *i < a.len())
            .map(|i| a.remove(i)),
        _ => None,
    };
    removed.ok_or_else(|| format!("doc is missing path: {path}"))
}
