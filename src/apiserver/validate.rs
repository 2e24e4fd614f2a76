//! Admission of custom resources against their CRD's structural schema: pruning,
//! defaulting, OpenAPI value checks and CEL `x-kubernetes-validations`.

use kube::core::cel::{ErrorKind, Validator, apply_defaults};
use serde_json::{Map, Value, json};

use super::store::{ApiError, Kind, Result};

pub(crate) type Cause = (String, String, &'static str);

/// What 1.34 adds when OpenAPI errors stopped the CEL rules from running
/// (apiextensions-apiserver's `hasBlockingErr`: `field.Invalid(nil, nil, …)`).
pub(crate) const RULES_NOT_CHECKED: &str = "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

/// Error types after which a real server does not evaluate CEL rules.
const BLOCKING: [&str; 5] = [
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTooLong",
    "FieldValueTooMany",
    "FieldValueTypeInvalid",
];

/// Prunes, defaults and validates `obj` in place; 422 Invalid on failure, 400 when
/// `strict` (`fieldValidation=Strict`) and the object has fields the schema does not know.
/// `causes` are the errors already found in the object's metadata: a real server reports
/// them in the same 422 as the schema's, before them.
pub(crate) fn admit(
    kind: &Kind,
    name: &str,
    obj: &mut Value,
    old: Option<&Value>,
    strict: bool,
    mut causes: Vec<Cause>,
) -> Result<()> {
    let Some(schema) = &kind.schema else {
        return invalid_if_any(kind, name, &causes);
    };
    let mut removed = vec![];
    prune(schema, obj, true, "", &mut removed);
    if strict && !removed.is_empty() {
        let fields: Vec<String> = removed
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        return Err(ApiError::bad_request(format!(
            "{k} in version \"{v}\" cannot be handled as a {k}: strict decoding error: {}",
            fields.join(", "),
            k = kind.kind,
            v = kind.version,
        )));
    }
    *obj = apply_defaults(schema, obj);
    check(schema, obj, "", true, &mut causes);
    if has_rules(schema) {
        if causes.iter().any(|(_, _, r)| BLOCKING.contains(r)) {
            causes.push((
                "<nil>".into(),
                format!("Invalid value: null: {RULES_NOT_CHECKED}"),
                "FieldValueInvalid",
            ));
        } else if let Err(errors) = Validator::new().validate(schema, obj, old) {
            causes.extend(errors.iter().map(|e| cel_cause(obj, e)));
        }
    }
    invalid_if_any(kind, name, &causes)
}

fn cel_cause(obj: &Value, e: &kube::core::cel::ValidationError) -> Cause {
    let msg = match (&e.kind, e.reason.as_deref()) {
        (ErrorKind::ValidationFailure, Some("FieldValueForbidden")) => {
            format!("Forbidden: {}", e.message)
        }
        (ErrorKind::ValidationFailure, Some("FieldValueRequired")) => {
            format!("Required value: {}", e.message)
        }
        (ErrorKind::ValidationFailure, Some("FieldValueDuplicate")) => {
            format!("Duplicate value: {}", e.message)
        }
        (ErrorKind::ValidationFailure, _) => format!(
            "Invalid value: \"{}\": {}",
            type_name(lookup(obj, &e.field_path)),
            e.message
        ),
        _ => format!("Internal error: {} evaluating rule: {}", e.message, e.rule),
    };
    let reason = match e.reason.as_deref() {
        Some("FieldValueForbidden") => "FieldValueForbidden",
        Some("FieldValueRequired") => "FieldValueRequired",
        Some("FieldValueDuplicate") => "FieldValueDuplicate",
        _ => "FieldValueInvalid",
    };
    (e.field_path.clone(), msg, reason)
}

/// Whether any level of the schema has `x-kubernetes-validations` (a real server builds
/// no CEL validator, and so adds no "not checked" cause, for a schema without rules).
fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => {
            m.get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .is_some_and(|r| !r.is_empty())
                || m.values().any(has_rules)
        }
        Value::Array(a) => a.iter().any(has_rules),
        _ => false,
    }
}

fn invalid_if_any(kind: &Kind, name: &str, causes: &[Cause]) -> Result<()> {
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(kind, name, causes))
    }
}

fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.split(['.', '['])
        .filter(|p| !p.is_empty())
        .try_fold(obj, |v, p| match p.strip_suffix(']') {
            Some(i) => match i.parse::<usize>() {
                Ok(i) => v.get(i),
                Err(_) => v.get(i.trim_matches(['\'', '"'])),
            },
            None => v.get(p),
        })
}

fn type_name(v: Option<&Value>) -> &'static str {
    match v {
        Some(Value::Object(_)) => "object",
        Some(Value::Array(_)) => "array",
        Some(Value::String(_)) => "string",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => "integer",
        Some(Value::Number(_)) => "number",
        Some(Value::Null) | None => "null",
    }
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool) == Some(true)
}

/// Drops fields the schema does not know and nulls the schema does not allow.
fn prune(schema: &Value, v: &mut Value, root: bool, path: &str, removed: &mut Vec<String>) {
    if flag(schema, "x-kubernetes-int-or-string") {
        return;
    }
    let keep_meta = root || flag(schema, "x-kubernetes-embedded-resource");
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if keep_meta && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = props
                    .and_then(|p| p.get(&k))
                    .or(additional.filter(|a| a.is_object()));
                match sub {
                    Some(s) => {
                        if map[&k].is_null() && !flag(s, "nullable") {
                            map.remove(&k);
                        } else if let Some(child) = map.get_mut(&k) {
                            prune(s, child, false, &join(path, &k), removed);
                        }
                    }
                    None if preserve || additional == Some(&Value::Bool(true)) => {}
                    None => {
                        map.remove(&k);
                        removed.push(join(path, &k));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(s, item, false, &format!("{path}[{i}]"), removed);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn fmt_num(v: &Value) -> String {
    v.to_string()
}

fn check(schema: &Value, v: &Value, path: &str, root: bool, out: &mut Vec<Cause>) {
    if v.is_null() {
        if !flag(schema, "nullable") {
            let t = schema["type"].as_str().unwrap_or("object");
            out.push((
                path.into(),
                format!("Invalid value: \"null\": {path} in body must be of type {t}: \"null\""),
                "FieldValueTypeInvalid",
            ));
        }
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !(v.is_string() || type_name(Some(v)) == "integer") {
            out.push((
                path.into(),
                format!(
                    "Invalid value: \"{}\": {path} in body must be of type integer,string: \"{}\"",
                    type_name(Some(v)),
                    type_name(Some(v))
                ),
                "FieldValueTypeInvalid",
            ));
        }
        return;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let got = type_name(Some(v));
        let integral = v.as_f64().is_some_and(|f| f.fract() == 0.0);
        let ok = match t {
            "integer" => got == "integer" || (got == "number" && integral),
            "number" => got == "integer" || got == "number",
            other => got == other,
        };
        if !ok {
            out.push((
                path.into(),
                format!("Invalid value: \"{got}\": {path} in body must be of type {t}: \"{got}\""),
                "FieldValueTypeInvalid",
            ));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(v)
    {
        let list: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        out.push((
            path.into(),
            format!(
                "Unsupported value: {v}: supported values: {}",
                list.join(", ")
            ),
            "FieldValueNotSupported",
        ));
    }
    match v {
        Value::Number(_) => check_number(schema, v, path, out),
        Value::String(s) => check_string(schema, s, path, out),
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && n > max
            {
                out.push((
                    path.into(),
                    format!("Too many: {n}: must have at most {max} items"),
                    "FieldValueTooMany",
                ));
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && n < min
            {
                out.push((
                    path.into(),
                    format!("Invalid value: {n}: {path} in body should have at least {min} items"),
                    "FieldValueInvalid",
                ));
            }
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(s, item, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        Value::Object(map) => check_object(schema, map, path, root, out),
        _ => {}
    }
}

fn check_number(schema: &Value, v: &Value, path: &str, out: &mut Vec<Cause>) {
    let x = as_f64(v).unwrap_or_default();
    if let Some(min) = schema.get("minimum").and_then(as_f64) {
        let exclusive = flag(schema, "exclusiveMinimum");
        if x < min || (exclusive && x == min) {
            let rel = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            out.push((
                path.into(),
                format!(
                    "Invalid value: {}: {path} in body should be {rel} {}",
                    fmt_num(v),
                    fmt_num(&schema["minimum"])
                ),
                "FieldValueInvalid",
            ));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(as_f64) {
        let exclusive = flag(schema, "exclusiveMaximum");
        if x > max || (exclusive && x == max) {
            let rel = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            out.push((
                path.into(),
                format!(
                    "Invalid value: {}: {path} in body should be {rel} {}",
                    fmt_num(v),
                    fmt_num(&schema["maximum"])
                ),
                "FieldValueInvalid",
            ));
        }
    }
}

fn check_string(schema: &Value, s: &str, path: &str, out: &mut Vec<Cause>) {
    let n = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && n > max
    {
        out.push((
            path.into(),
            format!("Too long: may not be more than {max} bytes"),
            "FieldValueTooLong",
        ));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && n < min
    {
        out.push((
            path.into(),
            format!("Invalid value: \"{s}\": {path} in body should be at least {min} chars long"),
            "FieldValueInvalid",
        ));
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str)
        && matches_pattern(s, p) == Some(false)
    {
        out.push((
            path.into(),
            format!("Invalid value: \"{s}\": {path} in body should match '{p}'"),
            "FieldValueInvalid",
        ));
    }
    if schema["format"] == "date-time" && s.parse::<jiff::Timestamp>().is_err() {
        out.push((
            path.into(),
            format!("Invalid value: \"{s}\": {path} in body must be of type date-time: \"{s}\""),
            "FieldValueTypeInvalid",
        ));
    }
}

fn check_object(
    schema: &Value,
    map: &Map<String, Value>,
    path: &str,
    root: bool,
    out: &mut Vec<Cause>,
) {
    let n = map.len() as u64;
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && n > max
    {
        out.push((
            path.into(),
            format!("Too many: {n}: must have at most {max} items"),
            "FieldValueTooMany",
        ));
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (k, child) in map {
        if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
            check(s, child, &join(path, k), false, out);
        }
    }
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(r) {
            out.push((join(path, r), "Required value".into(), "FieldValueRequired"));
        }
    }
}

/// Go-RE2-style pattern match through CEL's `matches`; `None` when the pattern does not compile.
fn matches_pattern(s: &str, pattern: &str) -> Option<bool> {
    use kube::core::cel::cel::{Context, Program, Value as Cel};
    thread_local! {
        static PROGRAM: Option<Program> = Program::compile("s.matches(p)").ok();
    }
    let mut ctx = Context::default();
    ctx.add_variable_from_value("s", s.to_string());
    ctx.add_variable_from_value("p", pattern.to_string());
    PROGRAM.with(|p| match p.as_ref()?.execute(&ctx) {
        Ok(Cel::Bool(b)) => Some(b),
        _ => None,
    })
}

/// Object names: DNS-1123 subdomains, or labels for namespaces.
pub(crate) fn name_causes(kind: &Kind, name: &str) -> Vec<Cause> {
    let label = kind.is_namespace();
    let max = if label { 63 } else { 253 };
    let ok_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (!label && c == '.');
    let ok = !name.is_empty()
        && name.len() <= max
        && name.chars().all(ok_char)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        return vec![];
    }
    let what = if label {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
    } else {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
    };
    vec![(
        "metadata.name".into(),
        format!("Invalid value: \"{name}\": {what}"),
        "FieldValueInvalid",
    )]
}

fn is_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

pub(crate) fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= 253
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
                && prefix.starts_with(|c: char| c.is_ascii_alphanumeric())
                && prefix.ends_with(|c: char| c.is_ascii_alphanumeric())
                && is_name_part(name)
        }
        None => is_name_part(s),
    }
}

/// Label, annotation, finalizer and owner-reference rules every real server enforces.
pub(crate) fn metadata_causes(obj: &Value) -> Vec<Cause> {
    const KEY: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
    let meta = &obj["metadata"];
    let mut causes: Vec<Cause> = vec![];
    let invalid = |field: &str, value: &str, why: &str| {
        (
            field.to_string(),
            format!("Invalid value: \"{value}\": {why}"),
            "FieldValueInvalid",
        )
    };
    for (field, map) in [
        ("labels", &meta["labels"]),
        ("annotations", &meta["annotations"]),
    ] {
        for (k, v) in map.as_object().into_iter().flatten() {
            if !is_qualified_name(k) {
                causes.push(invalid(&format!("metadata.{field}"), k, KEY));
            }
            match v.as_str() {
                Some(v) if field == "labels" && !(v.is_empty() || is_name_part(v)) => {
                    causes.push(invalid("metadata.labels", v, VALUE));
                }
                Some(_) => {}
                None => causes.push(invalid(
                    &format!("metadata.{field}"),
                    &v.to_string(),
                    "must be a string",
                )),
            }
        }
    }
    for (i, f) in meta["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = f.as_str().unwrap_or_default();
        if !is_qualified_name(f) {
            causes.push(invalid(&format!("metadata.finalizers[{i}]"), f, KEY));
        }
    }
    let refs = meta["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, r) in refs.iter().enumerate() {
        for field in ["apiVersion", "kind", "name", "uid"] {
            if r[field].as_str().is_none_or(str::is_empty) {
                causes.push((
                    format!("metadata.ownerReferences[{i}].{field}"),
                    format!("Invalid value: \"\": {field} must not be empty"),
                    "FieldValueInvalid",
                ));
            }
        }
    }
    if refs
        .iter()
        .filter(|r| r["controller"] == json!(true))
        .count()
        > 1
    {
        causes.push((
            "metadata.ownerReferences".into(),
            "Invalid value: []: Only one reference can have Controller set to true".into(),
            "FieldValueInvalid",
        ));
    }
    causes
}

pub(crate) fn crd_causes(name: &str, crd: &Value) -> Vec<Cause> {
    let spec = &crd["spec"];
    let plural = spec.pointer("/names/plural").and_then(Value::as_str);
    let group = spec["group"].as_str();
    let mut causes: Vec<Cause> = vec![];
    match (plural, group) {
        (Some(p), Some(g)) if name == format!("{p}.{g}") => {}
        (Some(p), Some(g)) => causes.push((
            "metadata.name".into(),
            format!(
                "Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group ({p}.{g})"
            ),
            "FieldValueInvalid",
        )),
        _ => causes.push((
            "spec".into(),
            "Required value: group and names.plural are required".into(),
            "FieldValueRequired",
        )),
    }
    if spec
        .pointer("/names/kind")
        .and_then(Value::as_str)
        .is_none()
    {
        causes.push((
            "spec.names.kind".into(),
            "Required value".into(),
            "FieldValueRequired",
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count()
        != 1
    {
        causes.push((
            "spec.versions".into(),
            "Invalid value: must have exactly one version marked as storage version".into(),
            "FieldValueInvalid",
        ));
    }
    causes
}
