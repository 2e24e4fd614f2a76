//! What a real API server's CEL cost estimator needs from a schema: every string, list
//! and map a rule reads is bounded (`maxLength`, `maxItems`, `maxProperties`), and so is
//! every list or map a rule sits inside (the rule runs once per element). Checked here so
//! that an unbounded read fails a unit test instead of `kubectl apply` on a real cluster.

use serde_json::Value;

/// Every problem of one schema: `<path>: <rule>: <what is unbounded>`.
pub fn unbounded_reads(schema: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    walk(schema, "", &mut Vec::new(), &mut problems);
    problems
}

fn walk(node: &Value, path: &str, containers: &mut Vec<String>, problems: &mut Vec<String>) {
    for rule in node["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let text = rule["rule"].as_str().unwrap_or_default();
        for c in containers.iter() {
            problems.push(format!(
                "{path}: {text}: runs once per element of unbounded {c}"
            ));
        }
        for chain in self_references(text) {
            match resolve(node, &chain) {
                Some(target) => {
                    let at = format!("{path}.{}", chain.join("."));
                    check_bounded(target, at.trim_end_matches('.'), text, problems);
                }
                None => problems.push(format!(
                    "{path}: {text}: reads self.{}, which the schema does not have",
                    chain.join(".")
                )),
            }
        }
    }
    if let Some(props) = node["properties"].as_object() {
        for (name, child) in props {
            walk(child, &format!("{path}.{name}"), containers, problems);
        }
    }
    for (key, bound, suffix) in [
        ("items", "maxItems", "[]"),
        ("additionalProperties", "maxProperties", "{}"),
    ] {
        let child = &node[key];
        if !child.is_object() {
            continue;
        }
        let unbounded = node.get(bound).is_none();
        if unbounded {
            containers.push(format!("{path} (no {bound})"));
        }
        walk(child, &format!("{path}{suffix}"), containers, problems);
        if unbounded {
            containers.pop();
        }
    }
}

/// A value read whole by a rule: a string needs `maxLength` (an `enum` or a date/time
/// `format` bounds it too, as the server's estimator knows); a list `maxItems` and
/// bounded elements; a map `maxProperties` and bounded values. An object is read by its
/// fields, which the rule names (and which are checked as references of their own).
fn check_bounded(node: &Value, at: &str, rule: &str, problems: &mut Vec<String>) {
    match node["type"].as_str() {
        Some("string")
            if node.get("maxLength").is_none()
                && node.get("enum").is_none()
                && !matches!(
                    node["format"].as_str(),
                    Some("date" | "date-time" | "duration")
                ) =>
        {
            problems.push(format!("{at}: {rule}: string without maxLength"));
        }
        Some("array") => {
            if node.get("maxItems").is_none() {
                problems.push(format!("{at}: {rule}: list without maxItems"));
            }
            check_bounded(&node["items"], &format!("{at}[]"), rule, problems);
        }
        Some("object") if node["additionalProperties"].is_object() => {
            if node.get("maxProperties").is_none() {
                problems.push(format!("{at}: {rule}: map without maxProperties"));
            }
            check_bounded(
                &node["additionalProperties"],
                &format!("{at}{{}}"),
                rule,
                problems,
            );
        }
        _ => {}
    }
}

fn resolve<'a>(node: &'a Value, chain: &[String]) -> Option<&'a Value> {
    chain
        .iter()
        .try_fold(node, |n, field| n["properties"].get(field.as_str()))
}

/// The field chains a rule reads through `self` and `oldSelf` (`self.a.b` → `[a, b]`;
/// bare `self` → `[]`); a trailing method call (`self.x.size()`) is not a field, nor is
/// the field `has()` tests for.
fn self_references(rule: &str) -> Vec<Vec<String>> {
    let bytes = rule.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut chains = Vec::new();
    let mut i = 0;
    let mut in_string: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = in_string {
            if b == b'\\' {
                i += 1;
            } else if b == q {
                in_string = None;
            }
            i += 1;
            continue;
        }
        if b == b'\'' || b == b'"' {
            in_string = Some(b);
            i += 1;
            continue;
        }
        let starts_word = i == 0 || !ident(bytes[i - 1]);
        let word = ["oldSelf", "self"]
            .into_iter()
            .find(|w| rule[i..].starts_with(w) && starts_word);
        let Some(word) = word else {
            i += 1;
            continue;
        };
        let mut j = i + word.len();
        if j < bytes.len() && ident(bytes[j]) {
            i = j;
            continue;
        }
        let mut chain = Vec::new();
        while j < bytes.len() && bytes[j] == b'.' {
            let start = j + 1;
            let mut end = start;
            while end < bytes.len() && ident(bytes[end]) {
                end += 1;
            }
            if end == start {
                break;
            }
            if end < bytes.len() && bytes[end] == b'(' {
                break;
            }
            chain.push(rule[start..end].to_string());
            j = end;
        }
        // `has(self.a.b)` reads `self.a` and only tests for `b`.
        if rule[..i].trim_end().ends_with("has(") {
            chain.pop();
        }
        chains.push(chain);
        i = j;
    }
    chains
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_rule_of_the_generated_crds_reads_only_bounded_values() {
        let mut problems = Vec::new();
        for crd in super::super::crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            for v in &crd.spec.versions {
                let schema = serde_json::to_value(
                    v.schema
                        .as_ref()
                        .and_then(|s| s.open_api_v3_schema.as_ref()),
                )
                .unwrap();
                for p in unbounded_reads(&schema) {
                    problems.push(format!("{name} {}: {p}", v.name));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn finds_field_chains_and_skips_methods_and_strings() {
        let r = self_references(
            "has(self.a) && self.a.b.size() > 0 && oldSelf.c == 'self.d' && duration(self) > x",
        );
        let want: Vec<Vec<&str>> = vec![vec![], vec!["a", "b"], vec!["c"], vec![]];
        assert_eq!(r, want);
        assert_eq!(self_references("myself.x"), Vec::<Vec<String>>::new());
    }

    #[test]
    fn unbounded_strings_lists_maps_and_containers_are_reported() {
        let rule = |r: &str| json!([{"rule": r}]);
        let schema = json!({
            "type": "object",
            "properties": {
                "s": {"type": "string", "x-kubernetes-validations": rule("self != ''")},
                "ok": {"type": "string", "maxLength": 5, "x-kubernetes-validations": rule("self != ''")},
                "l": {"type": "array", "maxItems": 3, "items": {"type": "string"},
                      "x-kubernetes-validations": rule("self.size() > 0")},
                "m": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 3},
                      "x-kubernetes-validations": rule("self.size() > 0")},
                "w": {"type": "array", "items": {"type": "object",
                      "properties": {"a": {"type": "string", "maxLength": 5}},
                      "x-kubernetes-validations": rule("self.a != 'x'")}},
                "u": {"type": "object", "x-kubernetes-validations": rule("self.missing")},
            }
        });
        let p = unbounded_reads(&schema).join("\n");
        assert!(
            p.contains(".s: self != '': string without maxLength"),
            "{p}"
        );
        assert!(!p.contains(".ok"), "{p}");
        assert!(
            p.contains(".l[]: self.size() > 0: string without maxLength"),
            "{p}"
        );
        assert!(
            p.contains(".m: self.size() > 0: map without maxProperties"),
            "{p}"
        );
        assert!(p.contains("unbounded .w (no maxItems)"), "{p}");
        assert!(p.contains("reads self.missing"), "{p}");
        assert_eq!(p.lines().count(), 5, "{p}");
    }
}
