//! The Helm chart's static parts: its CRDs are `crds/` byte for byte, its version follows the
//! crate's, its values file and schema agree, and its Grafana dashboard only queries series
//! the controller exports. (Rendering, `helm lint`, install and RBAC against a real API
//! server: tests/chart/check.sh.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use slurm_maint::controller::metrics::Metrics;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn chart_crds_are_the_generated_crds() {
    let ours = root().join("crds");
    let chart = root().join("charts/slurm-maint/crds");
    assert_eq!(
        files(&ours),
        files(&chart),
        "charts/slurm-maint/crds must hold exactly the files of crds/: cp crds/*.yaml charts/slurm-maint/crds/"
    );
    for name in files(&ours) {
        let a = std::fs::read(ours.join(&name)).unwrap();
        let b = std::fs::read(chart.join(&name)).unwrap();
        assert!(
            a == b,
            "charts/slurm-maint/crds/{name} differs from crds/{name}: cp crds/*.yaml charts/slurm-maint/crds/"
        );
    }
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart = yaml("charts/slurm-maint/Chart.yaml");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

/// Every key of values.yaml is declared in values.schema.json, and every object the schema
/// closes (`additionalProperties: false`) declares only keys values.yaml has — so the
/// schema neither refuses the defaults nor lets a typo through silently.
#[test]
fn values_and_schema_agree() {
    let values = yaml("charts/slurm-maint/values.yaml");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("charts/slurm-maint/values.schema.json")).unwrap(),
    )
    .unwrap();
    fn walk(path: &str, v: &Value, s: &Value, errs: &mut Vec<String>) {
        let (Some(obj), Some(props)) = (v.as_object(), s.get("properties")) else {
            return;
        };
        for (k, child) in obj {
            match props.get(k) {
                Some(cs) => walk(&format!("{path}.{k}"), child, cs, errs),
                None if s["additionalProperties"] == Value::Bool(false) => {
                    errs.push(format!("{path}.{k} is not in the schema"))
                }
                None => {}
            }
        }
        if s["additionalProperties"] == Value::Bool(false) {
            for k in props.as_object().unwrap().keys() {
                if !obj.contains_key(k) && !["global", "claims"].contains(&k.as_str()) {
                    errs.push(format!("schema declares {path}.{k}, values.yaml lacks it"));
                }
            }
        }
    }
    let mut errs = Vec::new();
    walk("", &values, &schema, &mut errs);
    assert!(errs.is_empty(), "{errs:#?}");
}

/// The dashboard's queries name only metric families the controller registers.
#[test]
fn dashboard_queries_exported_series() {
    let m = Metrics::default();
    m.reconciled("policy", 0.1, Some("slurm"));
    m.slurm_call("snapshot", "ok", 0.1);
    let status: slurm_maint::api::MaintenancePolicyStatus =
        serde_json::from_value(serde_json::json!({
            "budget": {"partition": "compute", "total": 4, "unavailable": 1, "down": 0,
                       "combined": 1, "overlap": 0, "committed": 1, "allowed": 2},
            "nodesNeedingWork": 4,
            "phases": {"pending": 3, "reserved": 0, "pendingReboot": 0, "rebooting": 0,
                       "recovering": 0, "healthCheck": 0, "completed": 1, "failed": 0},
            "eta": "2026-12-01T00:00:00Z"
        }))
        .unwrap();
    m.policy("slurm", "compute", &status);
    let text = m.encode();
    let families: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(families.contains("slurm_maint_nodes"), "{families:?}");
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("charts/slurm-maint/dashboards/slurm-maint.json"))
            .unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    fn collect(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if (k == "expr" || k == "query" || k == "definition") && x.is_string() {
                        out.push(x.as_str().unwrap().to_string());
                    } else {
                        collect(x, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    collect(&dash, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut used = BTreeSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("slurm_maint_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            used.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    for name in &used {
        let family = ["_bucket", "_count", "_sum", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            families.contains(family) || families.contains(name.as_str()),
            "the dashboard queries {name}, which the controller does not export ({families:?})"
        );
    }
    for f in [
        "slurm_maint_reconciles",
        "slurm_maint_reconcile_duration_seconds",
        "slurm_maint_nodes",
        "slurm_maint_budget_nodes",
        "slurm_maint_campaign_completion_ratio",
        "slurm_maint_slurm_calls",
    ] {
        assert!(
            used.iter().any(|u| u.starts_with(f)),
            "the dashboard does not show {f}"
        );
    }
}
