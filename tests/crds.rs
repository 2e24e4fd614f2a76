//! The CRDs: generated files are current, every field is described, printer columns and
//! CEL rules are there, and the rules accept good specs and refuse bad ones.

use kube::core::cel::Validator;
use serde_json::{Value, json};
use slurm_maint::api;

fn crd_named(plural: &str) -> Value {
    let crd = api::crds()
        .into_iter()
        .find(|c| c.spec.names.plural == plural)
        .unwrap_or_else(|| panic!("no CRD {plural}"));
    serde_json::to_value(crd).unwrap()
}

fn schema(plural: &str) -> Value {
    crd_named(plural)["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn crd_files_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    for crd in api::crds() {
        let path = dir.join(api::crd_file_name(&crd));
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == api::crd_yaml(&crd),
            "{} is stale: run `cargo run -- crds --out-dir crds`",
            path.display()
        );
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        files,
        api::crds().len(),
        "crds/ holds files that no type generates"
    );
}

#[test]
fn names_short_names_and_categories() {
    for (plural, kind, short) in [
        ("maintenancepolicies", "MaintenancePolicy", "mpol"),
        ("nodemaintenances", "NodeMaintenance", "snm"),
        ("ocimaintenanceevents", "OciMaintenanceEvent", "ome"),
    ] {
        let crd = crd_named(plural);
        assert_eq!(crd["spec"]["group"], "slurm-maint.io");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["kind"], kind);
        assert_eq!(crd["spec"]["names"]["shortNames"], json!([short]));
        assert_eq!(crd["spec"]["names"]["categories"], json!(["slurm-maint"]));
        let v = &crd["spec"]["versions"][0];
        assert_eq!(v["name"], "v1alpha1");
        assert_eq!(
            v["subresources"]["status"],
            json!({}),
            "{kind} has a status subresource"
        );
        let cols: Vec<&str> = v["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert!(cols.len() >= 5 && cols.contains(&"Age"), "{kind}: {cols:?}");
        let status = &v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
        assert!(status.get("observedGeneration").is_some(), "{kind}");
        let cond = &status["conditions"]["items"]["properties"];
        for f in [
            "type",
            "status",
            "reason",
            "message",
            "lastTransitionTime",
            "observedGeneration",
        ] {
            assert!(cond.get(f).is_some(), "{kind} conditions lack {f}");
        }
    }
    let nm_cols =
        crd_named("nodemaintenances")["spec"]["versions"][0]["additionalPrinterColumns"].clone();
    let names: Vec<_> = nm_cols
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    for want in ["Node", "Phase", "Attempts", "Reservation Start"] {
        assert!(names.iter().any(|n| n == want), "snm lacks column {want}");
    }
}

/// Every property of every schema carries a description, so `kubectl explain` helps.
#[test]
fn every_field_is_described() {
    fn walk(path: &str, s: &Value, missing: &mut Vec<String>) {
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (name, p) in props {
                let here = format!("{path}.{name}");
                let top =
                    path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&name.as_str());
                if !top
                    && p.get("description")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                {
                    missing.push(here.clone());
                }
                walk(&here, p, missing);
            }
        }
        if let Some(items) = s.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    for plural in [
        "maintenancepolicies",
        "nodemaintenances",
        "ocimaintenanceevents",
    ] {
        let mut missing = vec![];
        walk("", &schema(plural), &mut missing);
        assert!(
            missing.is_empty(),
            "{plural}: no description on {missing:?}"
        );
    }
}

fn policy(spec: Value) -> Value {
    json!({
        "apiVersion": "slurm-maint.io/v1alpha1",
        "kind": "MaintenancePolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": spec,
    })
}

fn base_spec() -> Value {
    json!({
        "partition": "batch",
        "agent": {"url": "http://agent:8080", "tokenSecretRef": {"name": "agent-token"}},
    })
}

fn cel(plural: &str, obj: &Value, old: Option<&Value>) -> Result<(), String> {
    Validator::new()
        .validate(&schema(plural), obj, old)
        .map_err(|e| e.to_string())
}

#[test]
fn cel_accepts_good_policies() {
    let mut s = base_spec();
    cel("maintenancepolicies", &policy(s.clone()), None).unwrap();
    s["budget"] = json!({"maxUnavailablePercent": 25.0, "reservationLeadTime": "30m"});
    s["reservations"] = json!({"enabled": true, "duration": "4h"});
    s["reboots"] = json!({"enabled": true, "timeout": "5m", "maxAttempts": 3});
    s["preemption"] = json!({"terminatePreemptableJobs": true});
    s["interval"] = "30s".into();
    cel("maintenancepolicies", &policy(s.clone()), None).unwrap();
    s["budget"] = json!({"maxUnavailable": 2});
    cel("maintenancepolicies", &policy(s.clone()), None).unwrap();
    let oci =
        json!({"enabled": true, "tenancyId": "ocid1.tenancy.oc1..t", "region": "us-ashburn-1"});
    for auth in ["WorkloadIdentity", "InstancePrincipal"] {
        let mut o = oci.clone();
        o["auth"] = auth.into();
        s["oci"] = o;
        cel("maintenancepolicies", &policy(s.clone()), None).unwrap();
    }
    let mut o = oci;
    o["credentialsSecretRef"] = json!({"name": "oci"});
    s["oci"] = o;
    cel("maintenancepolicies", &policy(s.clone()), None).unwrap();
    s["blockers"] = json!({
        "prometheusUrl": "https://prometheus.monitoring:9090/prometheus/",
        "alerts": ["NodeDown", "ceph:HealthError"],
        "tokenSecretRef": {"name": "prom-token"},
        "timeout": "30s",
    });
    cel("maintenancepolicies", &policy(s.clone()), None).unwrap();
    s["healthChecks"] = json!({
        "readiness": "ready",
        "reboot": ["gpu-ecc", "pcie-width"],
        "oci": [{"faults": ["HPCGPU-0001-01", "FLEXIBLE"], "checks": ["gpu-dcgm"]}],
        "ociDefault": ["default"],
        "webhook": {"secretName": "tickets"}
    });
    cel("maintenancepolicies", &policy(s), None).unwrap();
}

#[test]
fn cel_refuses_bad_policies() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"budget": {"maxUnavailable": 2, "maxUnavailablePercent": 10.0}}),
            "not both",
        ),
        (
            json!({"budget": {"maxUnavailablePercent": 0.0}}),
            "greater than 0",
        ),
        (
            json!({"budget": {"maxUnavailablePercent": 150.0}}),
            "at most 100",
        ),
        (
            json!({"reboots": {"enabled": true}}),
            "requires reservations.enabled",
        ),
        (
            json!({"reboots": {"enabled": true}, "reservations": {"enabled": false}}),
            "requires reservations.enabled",
        ),
        (json!({"interval": "1s"}), "between 5s and 1h"),
        (
            json!({"reservations": {"duration": "1m"}}),
            "between 5m and 720h",
        ),
        (
            json!({"reboots": {"timeout": "10s"}}),
            "between 30s and 24h",
        ),
        (json!({"oci": {"enabled": true}}), "requires tenancyId"),
        (
            json!({"oci": {"enabled": true, "tenancyId": "ocid1.tenancy.oc1..t", "region": "us-ashburn-1"}}),
            "auth ApiKey requires credentialsSecretRef",
        ),
        (
            json!({"oci": {"enabled": true, "auth": "ApiKey", "tenancyId": "ocid1.tenancy.oc1..t", "region": "us-ashburn-1"}}),
            "auth ApiKey requires credentialsSecretRef",
        ),
        (
            json!({"oci": {"hostMapping": {"source": "FreeformTag"}}}),
            "requires tagKey",
        ),
        (
            json!({"campaign": {"windows": [{"start": "02:00", "end": "02:00"}]}}),
            "must differ",
        ),
        (
            json!({"blockers": {"prometheusUrl": "http://p:9090/api/v1/alerts?x=1", "alerts": ["A"]}}),
            "no query or fragment",
        ),
        (
            json!({"blockers": {"prometheusUrl": "http://p:9090/#top", "alerts": ["A"]}}),
            "no query or fragment",
        ),
        (
            json!({"blockers": {"prometheusUrl": "http://p:9090", "alerts": ["A"], "timeout": "0s"}}),
            "between 1s and 5m",
        ),
        (
            json!({"healthChecks": {"readiness": "ready", "reboot": ["gpu", "ready"]}}),
            "leave it out of healthChecks.reboot",
        ),
    ];
    for (patch, want) in cases {
        let mut s = base_spec();
        for (k, v) in patch.as_object().unwrap() {
            s[k] = v.clone();
        }
        let err = cel("maintenancepolicies", &policy(s), None).expect_err(&patch.to_string());
        assert!(err.contains(want), "{patch}: {err}");
    }
}

#[test]
fn node_maintenance_node_name_is_immutable() {
    let nm = |node: &str| {
        json!({
            "apiVersion": "slurm-maint.io/v1alpha1", "kind": "NodeMaintenance",
            "metadata": {"name": "x", "namespace": "default"},
            "spec": {"nodeName": node, "policy": "p", "action": "Reboot", "requestedAt": "2026-01-01T00:00:00Z"},
        })
    };
    cel("nodemaintenances", &nm("node1"), None).unwrap();
    cel("nodemaintenances", &nm("node1"), Some(&nm("node1"))).unwrap();
    let err = cel("nodemaintenances", &nm("node2"), Some(&nm("node1"))).unwrap_err();
    assert!(err.contains("nodeName is immutable"), "{err}");
    let mut oci = nm("node1");
    oci["spec"]["action"] = "OciMaintenance".into();
    let err = cel("nodemaintenances", &oci, None).unwrap_err();
    assert!(err.contains("requires ociEvent"), "{err}");
}

#[test]
fn defaults_match_the_seed() {
    let s = schema("maintenancepolicies");
    let spec = &s["properties"]["spec"]["properties"];
    assert_eq!(spec["interval"]["default"], "1m");
    assert_eq!(spec["reboots"]["properties"]["timeout"]["default"], "10m");
    assert_eq!(spec["reboots"]["properties"]["maxAttempts"]["default"], 3);
    assert_eq!(spec["reboots"]["properties"]["enabled"]["default"], false);
    assert_eq!(
        spec["reservations"]["properties"]["enabled"]["default"],
        false
    );
    assert_eq!(
        spec["reservations"]["properties"]["duration"]["default"],
        "6h"
    );
    assert_eq!(
        spec["budget"]["properties"]["reservationLeadTime"]["default"],
        "1h"
    );
    assert_eq!(
        spec["oci"]["properties"]["discoveryInterval"]["default"],
        "15m"
    );
}

/// Every example under `manifests/examples` is a valid policy: it deserialises, passes the
/// CRD's CEL rules and the planner's own checks.
#[test]
fn example_policies_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let obj: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(obj["kind"], "MaintenancePolicy", "{}", path.display());
        cel("maintenancepolicies", &obj, None)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let policy: api::MaintenancePolicy = serde_json::from_value(obj).unwrap();
        let now = "2026-11-22T00:00:00Z".parse().unwrap();
        slurm_maint::plan::Settings::from_spec(&policy.spec, now)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 6);
}

/// kubectl renders a `date` column as an age, and a future time as `<invalid>`: only
/// times in the past (creation) may use it; reservation starts, ETAs and OCI windows
/// are strings.
#[test]
fn only_past_times_are_date_columns() {
    for plural in [
        "maintenancepolicies",
        "nodemaintenances",
        "ocimaintenanceevents",
    ] {
        let crd = crd_named(plural);
        for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
        {
            if c["type"] == "date" {
                assert_eq!(
                    c["jsonPath"], ".metadata.creationTimestamp",
                    "{plural} column {} may be in the future",
                    c["name"]
                );
            }
        }
    }
}

/// Every duration field: one bounded format, and a range named in the message; a value
/// too long for CEL's own `duration()` (`999999999h`) is refused with that message too.
#[test]
fn every_duration_field_has_a_range_that_names_the_field() {
    let fields: &[(&[&str], &str, &str, &str)] = &[
        (&["interval"], "interval", "5s", "1h"),
        (
            &["budget", "reservationLeadTime"],
            "reservationLeadTime",
            "0s",
            "168h",
        ),
        (
            &["reservations", "duration"],
            "reservations.duration",
            "5m",
            "720h",
        ),
        (&["reboots", "timeout"], "reboots.timeout", "30s", "24h"),
        (
            &["reboots", "settleTime"],
            "reboots.settleTime",
            "0s",
            "24h",
        ),
        (
            &["oci", "discoveryInterval"],
            "oci.discoveryInterval",
            "1m",
            "24h",
        ),
        (
            &["oci", "drainPollInterval"],
            "oci.drainPollInterval",
            "5s",
            "1h",
        ),
        (
            &["oci", "maintenancePollInterval"],
            "oci.maintenancePollInterval",
            "5s",
            "1h",
        ),
        (
            &["oci", "scheduleLeadTime"],
            "oci.scheduleLeadTime",
            "5s",
            "168h",
        ),
        (&["oci", "drainAhead"], "oci.drainAhead", "0s", "720h"),
        (&["blockers", "timeout"], "blockers.timeout", "1s", "5m"),
    ];
    let with = |path: &[&str], v: &str| {
        let mut s = base_spec();
        let mut at = &mut s;
        for (i, key) in path.iter().enumerate() {
            if i + 1 == path.len() {
                at[*key] = v.into();
            } else {
                if at.get(*key).is_none() {
                    at[*key] = match *key {
                        "blockers" => json!({"prometheusUrl": "http://p:9090", "alerts": ["A"]}),
                        _ => json!({}),
                    };
                }
                at = &mut at[*key];
            }
        }
        policy(s)
    };
    for (path, name, min, max) in fields {
        let want = format!("{name} must be a duration between {min} and {max}");
        for good in [*min, *max] {
            cel("maintenancepolicies", &with(path, good), None)
                .unwrap_or_else(|e| panic!("{name}={good}: {e}"));
        }
        for bad in ["999999999h", "9999999m", "1000000h"] {
            let err = cel("maintenancepolicies", &with(path, bad), None)
                .expect_err(&format!("{name}={bad}"));
            assert!(err.contains(&want), "{name}={bad}: {err}");
        }
        let max_secs: u64 = max.parse::<api::Duration>().unwrap().as_secs();
        let over = format!("{}s", max_secs + 1);
        let err = cel("maintenancepolicies", &with(path, &over), None)
            .expect_err(&format!("{name}={over}"));
        assert!(err.contains(&want), "{name}={over}: {err}");
    }
    // Every duration-shaped field of the schema is in the list above.
    fn durations(s: &Value, path: String, out: &mut Vec<String>) {
        if s["pattern"].as_str() == Some(api::duration::DURATION_PATTERN) {
            out.push(path.clone());
        }
        for (k, v) in s["properties"].as_object().into_iter().flatten() {
            durations(v, format!("{path}.{k}"), out);
        }
    }
    let mut found = vec![];
    durations(
        &schema("maintenancepolicies")["properties"]["spec"],
        String::new(),
        &mut found,
    );
    let listed: Vec<String> = fields
        .iter()
        .map(|(p, ..)| format!(".{}", p.join(".")))
        .collect();
    found.sort();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    assert_eq!(found, listed_sorted);
}
