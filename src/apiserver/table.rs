//! `meta.k8s.io/v1` Tables (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), as
//! kube-apiserver 1.34 renders them: custom resources through apiextensions-apiserver's
//! table convertor (printer columns by JSONPath; `date` cells as an age such as `5m`,
//! `<invalid>` for a future time, `<unknown>` for none), built-in kinds through their
//! server-side printers (an `Age` cell already rendered), anything else through the
//! default convertor (`Created At`, the raw timestamp).

use std::sync::OnceLock;

use serde_json::{Value, json};

use super::store::Kind;

/// The column definitions kube-apiserver 1.34.9 serves for the built-in kinds the
/// embedded server has, and its default convertor's (`default`), as it served them.
const BUILTIN_COLUMNS: &str = include_str!("builtin_columns.json");

fn builtin_columns() -> &'static Value {
    static COLUMNS: OnceLock<Value> = OnceLock::new();
    COLUMNS.get_or_init(|| serde_json::from_str(BUILTIN_COLUMNS).expect("valid JSON"))
}

/// `duration.HumanDuration`: about two significant figures; a time more than a second in
/// the future is `<invalid>`.
pub(crate) fn human_duration(nanos: i128) -> String {
    let seconds = nanos / 1_000_000_000;
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The age of an RFC 3339 time as printers show it: `<unknown>` for none, `<invalid>`
/// for one that does not parse (custom resources) or lies in the future.
pub(crate) fn age(timestamp: Option<&str>) -> String {
    match timestamp {
        None | Some("" | "null") => "<unknown>".into(),
        Some(t) => match t.parse::<jiff::Timestamp>() {
            Ok(t) => human_duration(jiff::Timestamp::now().duration_since(t).as_nanos()),
            Err(_) => "<invalid>".into(),
        },
    }
}

/// A simple JSONPath (`.a.b`, `.a[0].b`) into `obj`; `None` when a step is missing.
fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut cur = obj;
    for step in path.split('.').filter(|s| !s.is_empty()) {
        let (field, indexes) = match step.find('[') {
            Some(i) => (&step[..i], &step[i..]),
            None => (step, ""),
        };
        if !field.is_empty() {
            cur = cur.get(field)?;
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            let i: usize = index.trim_end_matches(']').parse().ok()?;
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

/// A JSON number as Go's unstructured decoding holds it: integral ones as int64.
fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
            .map(|f| f as i64)
    })
}

/// A cell of a custom resource's printer column (`cellForJSONValue`, and the JSONPath
/// printer for `string` columns).
fn crd_cell(column_type: &str, value: Option<&Value>) -> Value {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match column_type {
        "string" => match value {
            Value::String(s) => s.clone().into(),
            Value::Number(_) => as_int(value)
                .map(|i| i.to_string())
                .unwrap_or_else(|| value.to_string())
                .into(),
            Value::Bool(b) => b.to_string().into(),
            other => other.to_string().into(),
        },
        "integer" => value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        "number" => value.as_f64().map_or(Value::Null, Value::from),
        "boolean" => value.as_bool().map_or(Value::Null, Value::from),
        "date" => value
            .as_str()
            .map_or(Value::Null, |s| Value::from(age(Some(s)))),
        _ => Value::Null,
    }
}

fn creation(o: &Value) -> Option<&str> {
    o.pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
}

fn str_at<'a>(o: &'a Value, path: &str) -> &'a str {
    o.pointer(path).and_then(Value::as_str).unwrap_or_default()
}

fn count(o: &Value, fields: &[&str]) -> i64 {
    fields
        .iter()
        .filter_map(|f| o.get(*f).and_then(Value::as_object))
        .map(|m| m.len() as i64)
        .sum()
}

/// The cells kube-apiserver's printer writes for a core Event (always the wide form).
fn event_cells(o: &Value) -> Vec<Value> {
    let micro = |p: &str| o.pointer(p).and_then(Value::as_str).map(String::from);
    let first = match micro("/firstTimestamp") {
        Some(t) => age(Some(&t)),
        None => age(micro("/eventTime").as_deref()),
    };
    let mut last = match micro("/lastTimestamp") {
        Some(t) => age(Some(&t)),
        None => first.clone(),
    };
    let mut n = o.get("count").and_then(as_int).unwrap_or(0);
    if let Some(series) = o.get("series").filter(|s| s.is_object()) {
        last = age(series["lastObservedTime"].as_str());
        n = series.get("count").and_then(as_int).unwrap_or(0);
    } else if n == 0 {
        n = 1;
    }
    let kind = str_at(o, "/involvedObject/kind").to_lowercase();
    let name = str_at(o, "/involvedObject/name");
    let target = if name.is_empty() {
        kind
    } else {
        format!("{kind}/{name}")
    };
    let first_non_empty = |a: &str, b: &str| if a.is_empty() { b } else { a }.to_string();
    let component = first_non_empty(
        str_at(o, "/source/component"),
        str_at(o, "/reportingComponent"),
    );
    let instance = first_non_empty(str_at(o, "/source/host"), str_at(o, "/reportingInstance"));
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        last.into(),
        str_at(o, "/type").into(),
        str_at(o, "/reason").into(),
        target.into(),
        str_at(o, "/involvedObject/fieldPath").into(),
        source.into(),
        str_at(o, "/message").trim().into(),
        first.into(),
        n.into(),
        str_at(o, "/metadata/name").into(),
    ]
}

/// The cells of a built-in kind's row (both Event APIs print as core Events).
fn builtin_cells(kind: &Kind, o: &Value) -> Vec<Value> {
    let name: Value = str_at(o, "/metadata/name").into();
    let age_cell = || Value::from(age(creation(o)));
    match (kind.storage_group.as_str(), kind.plural.as_str()) {
        ("", "events") if kind.group.is_empty() => event_cells(o),
        ("", "events") => event_cells(&super::events::to_core(o.clone())),
        ("", "configmaps") => vec![name, count(o, &["data", "binaryData"]).into(), age_cell()],
        ("", "secrets") => vec![
            name,
            str_at(o, "/type").into(),
            count(o, &["data"]).into(),
            age_cell(),
        ],
        ("", "namespaces") => vec![name, str_at(o, "/status/phase").into(), age_cell()],
        ("coordination.k8s.io", "leases") => {
            vec![name, str_at(o, "/spec/holderIdentity").into(), age_cell()]
        }
        _ => vec![
            name,
            creation(o).map_or(Value::Null, |t| Value::from(t.to_string())),
        ],
    }
}

fn builtin_key(kind: &Kind) -> &'static str {
    match (kind.storage_group.as_str(), kind.plural.as_str()) {
        ("", "events") => "events",
        ("", "configmaps") => "configmaps",
        ("", "secrets") => "secrets",
        ("", "namespaces") => "namespaces",
        ("coordination.k8s.io", "leases") => "leases",
        _ => "default",
    }
}

/// The Table of `items`, as served under `kind`.
pub(crate) fn to_table(kind: &Kind, items: &[Value], rv: u64) -> Value {
    let builtin = builtin_columns();
    let name_column = builtin["default"][0].clone();
    let (columns, rows): (Vec<Value>, Vec<Vec<Value>>) = if kind.crd.is_some() {
        let mut printer = kind.printer_columns.clone();
        if printer.is_empty() {
            printer.push(json!({"name": "Age", "type": "date",
                "jsonPath": ".metadata.creationTimestamp",
                "description": builtin["default"][1]["description"]}));
        }
        let mut columns = vec![name_column];
        for c in &printer {
            let path = c["jsonPath"].as_str().unwrap_or_default();
            let description = c
                .get("description")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
                .map(String::from)
                .unwrap_or_else(|| {
                    format!("Custom resource definition column (in JSONPath format): {path}")
                });
            columns.push(json!({
                "name": c["name"], "type": c["type"],
                "format": c.get("format").cloned().unwrap_or_else(|| json!("")),
                "description": description,
                "priority": c.get("priority").cloned().unwrap_or_else(|| json!(0)),
            }));
        }
        let rows = items
            .iter()
            .map(|o| {
                let mut cells = vec![o["metadata"]["name"].clone()];
                for c in &printer {
                    let path = c["jsonPath"].as_str().unwrap_or_default();
                    cells.push(crd_cell(
                        c["type"].as_str().unwrap_or_default(),
                        lookup(o, path),
                    ));
                }
                cells
            })
            .collect();
        (columns, rows)
    } else {
        let columns = builtin[builtin_key(kind)]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let rows = items.iter().map(|o| builtin_cells(kind, o)).collect();
        (columns, rows)
    };
    let rows: Vec<Value> = items
        .iter()
        .zip(rows)
        .map(|(o, cells)| {
            json!({"cells": cells, "object": {
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": o["metadata"],
            }})
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": columns, "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn human_duration_matches_kubernetes() {
        let s = |secs: i128| human_duration(secs * 1_000_000_000);
        for (secs, want) in [
            (-3, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (50 * 3600, "2d2h"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (2528 * 86400, "6y338d"),
            (3000 * 86400, "8y"),
        ] {
            assert_eq!(s(secs), want, "{secs}s");
        }
        assert_eq!(human_duration(-1_999_999_999), "0s");
        assert_eq!(human_duration(-2_000_000_000), "<invalid>");
    }
}
