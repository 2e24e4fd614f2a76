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

/// The fields one Event version shares with the other: type and metadata, the renamed
/// ones (`from` name → `to` name) and the shared ones; everything else is dropped.
fn carry_over<'a>(
    mut from: Map<String, Value>,
    renames: impl Iterator<Item = (&'a str, &'a str)>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let same = ["apiVersion", "kind", "metadata"].into_iter().chain(SHARED);
    for (old, new) in same.map(|k| (k, k)).chain(renames) {
        if let Some(v) = from.remove(old) {
            out.insert(new.into(), v);
        }
    }
    out
}

/// An `events.k8s.io/v1` Event as the core Event it is stored as (fields neither
/// version knows are dropped, as decoding a built-in kind drops them).
pub(crate) fn to_core(obj: Value) -> Value {
    let Value::Object(from) = obj else {
        return obj;
    };
    let mut out = carry_over(from, RENAMED.iter().map(|&(new, core)| (new, core)));
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
    let Value::Object(from) = obj else {
        return obj;
    };
    let mut out = carry_over(from, RENAMED.iter().map(|&(new, core)| (core, new)));
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

type Cause = super::validate::Cause;

fn text<'a>(e: &'a Value, field: &str) -> &'a str {
    e.get(field).and_then(Value::as_str).unwrap_or_default()
}

fn is_set(e: &Value, field: &str) -> bool {
    e.get(field)
        .is_some_and(|v| !v.is_null() && v != "" && v.as_f64() != Some(0.0))
}

/// A value in an error as Go prints it: strings quoted, numbers bare, references as the
/// struct they are.
fn go_value(field: &str, v: Option<&Value>) -> String {
    match (field, v) {
        ("involvedObject" | "related", Some(Value::Object(r))) => {
            let f = |k: &str| {
                let s = r.get(k).and_then(Value::as_str).unwrap_or_default();
                format!("{s:?}")
            };
            format!(
                "{{\"Kind\":{},\"Namespace\":{},\"Name\":{},\"UID\":{},\"APIVersion\":{},\"ResourceVersion\":{},\"FieldPath\":{}}}",
                f("kind"),
                f("namespace"),
                f("name"),
                f("uid"),
                f("apiVersion"),
                f("resourceVersion"),
                f("fieldPath")
            )
        }
        ("count", None | Some(Value::Null)) => "0".into(),
        (_, Some(Value::String(s))) => format!("{s:?}"),
        (_, None | Some(Value::Null)) => "null".into(),
        (_, Some(v)) => v.to_string(),
    }
}

fn invalid(path: &str, shown: &str, why: &str) -> Cause {
    (
        path.into(),
        format!("Invalid value: {shown}: {why}"),
        "FieldValueInvalid",
    )
}

fn required(path: &str) -> Cause {
    (path.into(), "Required value".into(), "FieldValueRequired")
}

/// kube-apiserver's Event validation of a create (`new_api`: through events.k8s.io/v1)
/// or, with `old`, an update; `e` is the Event as stored (core).
pub(crate) fn validate(e: &Value, new_api: bool, old: Option<&Value>) -> Vec<Cause> {
    let mut out = legacy(e, new_api);
    if !new_api {
        return out;
    }
    let Some(old) = old else {
        if !is_set(e, "eventTime") {
            out.push(required("eventTime"));
        }
        let kind = text(e, "type");
        if kind != "Normal" && kind != "Warning" {
            out.push(invalid(
                "type",
                "\"\"",
                &format!("has invalid value: {kind}"),
            ));
        }
        for f in ["firstTimestamp", "lastTimestamp", "count"] {
            if is_set(e, f) {
                out.push(invalid(f, "\"\"", "needs to be unset"));
            }
        }
        if ["component", "host"]
            .iter()
            .any(|k| e.pointer(&format!("/source/{k}")).is_some_and(|v| v != ""))
        {
            out.push(invalid("source", "\"\"", "needs to be unset"));
        }
        return out;
    };
    // Through events.k8s.io only the series may change.
    for (field, path) in [
        ("involvedObject", "involvedObject"),
        ("reason", "reason"),
        ("message", "message"),
        ("source", "source"),
        ("firstTimestamp", "firstTimestamp"),
        ("lastTimestamp", "lastTimestamp"),
        ("count", "count"),
        ("type", "type"),
        ("eventTime", "eventTime"),
        ("action", "action"),
        ("related", "related"),
        ("reportingComponent", "reportingController"),
        ("reportingInstance", "reportingInstance"),
    ] {
        let now = e.get(field).filter(|v| !v.is_null());
        let before = old.get(field).filter(|v| !v.is_null());
        if now != before {
            out.push(invalid(path, &go_value(field, now), "field is immutable"));
        }
    }
    out
}

/// `legacyValidateEvent`: what every Event must satisfy, whichever API wrote it.
fn legacy(e: &Value, new_api: bool) -> Vec<Cause> {
    let mut out = vec![];
    let ns = e
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let involved_ns = e
        .pointer("/involvedObject/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mismatch = || {
        invalid(
            "involvedObject.namespace",
            &format!("{involved_ns:?}"),
            "does not match event.namespace",
        )
    };
    if !is_set(e, "eventTime") {
        let ok = if involved_ns.is_empty() {
            ns.is_empty() || ns == "default"
        } else {
            ns == involved_ns
        };
        if !ok {
            out.push(mismatch());
        }
        return out;
    }
    if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
        out.push(mismatch());
    }
    let controller = if new_api {
        "reportingController"
    } else {
        "reportingComponent"
    };
    let reporting = text(e, "reportingComponent");
    if reporting.is_empty() {
        out.push(required(controller));
    } else if !super::validate::is_qualified_name(reporting) {
        out.push(invalid(
            controller,
            &format!("{reporting:?}"),
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ));
    }
    for f in ["reportingInstance", "action", "reason"] {
        if text(e, f).is_empty() {
            out.push(required(f));
        }
    }
    out
}
