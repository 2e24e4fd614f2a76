//! Events as a real server keeps them: one store behind core `v1` and `events.k8s.io/v1`,
//! converted field by field as kube-apiserver's `events/v1` conversion does (`note` ⇄
//! `message`, `regarding` ⇄ `involvedObject`, `reportingController` ⇄
//! `reportingComponent`, `deprecatedSource` ⇄ `source`, `deprecatedFirstTimestamp` ⇄
//! `firstTimestamp`, `deprecatedLastTimestamp` ⇄ `lastTimestamp`, `deprecatedCount` ⇄
//! `count`; `eventTime`, `series`, `action`, `reason`, `type`, `related` and
//! `reportingInstance` are the same in both).

use serde_json::{Map, Value, json};

/// `(events.k8s.io/v1 name, core v1 name)` of the fields that differ.
const RENAMED: [(&str, &str); 7] = [
    ("note", "message"),
    ("regarding", "involvedObject"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Fields both versions name alike.
const SHARED: [&str; 7] = [
    "eventTime",
    "series",
    "action",
    "reason",
    "type",
    "related",
    "reportingInstance",
];

/// Drops what Go's `omitempty` leaves out: empty strings, zero counts and nulls.
fn omit_empty(map: &mut Map<String, Value>, keys: &[&str]) {
    for k in keys {
        let empty = match map.get(*k) {
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Number(n)) => n.as_f64() == Some(0.0),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            map.remove(*k);
        }
    }
}

/// An `events.k8s.io/v1` Event as the core Event it is stored as (fields neither
/// version knows are dropped, as decoding a built-in kind drops them).
pub(crate) fn to_core(obj: Value) -> Value {
    let Value::Object(mut from) = obj else {
        return obj;
    };
    let mut out = Map::new();
    for k in ["apiVersion", "kind", "metadata"] {
        if let Some(v) = from.remove(k) {
            out.insert(k.into(), v);
        }
    }
    for (new, core) in RENAMED {
        if let Some(v) = from.remove(new) {
            out.insert(core.into(), v);
        }
    }
    for k in SHARED {
        if let Some(v) = from.remove(k) {
            out.insert(k.into(), v);
        }
    }
    out.insert("apiVersion".into(), "v1".into());
    out.insert("kind".into(), "Event".into());
    normalize_core(Value::Object(out))
}

/// A core Event with the fields core `v1` always serialises (`involvedObject`, `source`,
/// the timestamps as null, the reporting strings as "") and without the empty ones it
/// omits.
pub(crate) fn normalize_core(obj: Value) -> Value {
    let Value::Object(mut map) = obj else {
        return obj;
    };
    for (k, default) in [
        ("involvedObject", json!({})),
        ("source", json!({})),
        ("firstTimestamp", Value::Null),
        ("lastTimestamp", Value::Null),
        ("eventTime", Value::Null),
        ("reportingComponent", json!("")),
        ("reportingInstance", json!("")),
    ] {
        let v = map.entry(k).or_insert(Value::Null);
        if v.is_null() {
            *v = default;
        }
    }
    omit_empty(&mut map, &["reason", "message", "type", "action", "count"]);
    for k in ["series", "related"] {
        if map.get(k).is_some_and(Value::is_null) {
            map.remove(k);
        }
    }
    Value::Object(map)
}

/// A stored (core) Event as `events.k8s.io/v1` serves it.
pub(crate) fn to_events_v1(obj: Value) -> Value {
    let Value::Object(mut from) = obj else {
        return obj;
    };
    let mut out = Map::new();
    for k in ["apiVersion", "kind", "metadata"] {
        if let Some(v) = from.remove(k) {
            out.insert(k.into(), v);
        }
    }
    for (new, core) in RENAMED {
        if let Some(v) = from.remove(core) {
            out.insert(new.into(), v);
        }
    }
    for k in SHARED {
        if let Some(v) = from.remove(k) {
            out.insert(k.into(), v);
        }
    }
    for (k, default) in [
        ("eventTime", Value::Null),
        ("deprecatedSource", json!({})),
        ("deprecatedFirstTimestamp", Value::Null),
        ("deprecatedLastTimestamp", Value::Null),
        ("regarding", json!({})),
    ] {
        let v = out.entry(k).or_insert(Value::Null);
        if v.is_null() {
            *v = default;
        }
    }
    omit_empty(
        &mut out,
        &[
            "note",
            "reason",
            "type",
            "action",
            "reportingController",
            "reportingInstance",
            "deprecatedCount",
        ],
    );
    Value::Object(out)
}

/// The stored (core) field a field selector names, for the selectors a real server
/// supports on Events; `None` when it supports none of that name.
pub(crate) fn selector_path(new_api: bool, path: &str) -> Option<String> {
    const REF: [&str; 7] = [
        "kind",
        "namespace",
        "name",
        "uid",
        "apiVersion",
        "resourceVersion",
        "fieldPath",
    ];
    let reference = if new_api {
        "regarding."
    } else {
        "involvedObject."
    };
    if let Some(field) = path.strip_prefix(reference) {
        return REF
            .contains(&field)
            .then(|| format!("involvedObject.{field}"));
    }
    match (new_api, path) {
        (_, "metadata.name" | "metadata.namespace" | "reason" | "type") => Some(path.into()),
        (false, "reportingComponent") | (true, "reportingController") => {
            Some("reportingComponent".into())
        }
        (false, "source") => Some("source.component".into()),
        _ => None,
    }
}
