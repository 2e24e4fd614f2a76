use std::collections::BTreeMap;

use jiff::Timestamp;

use super::*;
use crate::api::policy::{HostMapping, HostMappingSource, OciSettings};
use crate::oci::emulator::scenario::fault_details;

fn details(raw: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("faultDetails".to_string(), raw.to_string())])
}

#[test]
fn fault_details_as_the_api_encodes_them() {
    let f = parse_faults(Some(&fault_details(&["HPCRDMA-0002-02", "HPCGPU-0001-01"])));
    assert_eq!(f.ids, ["HPCRDMA-0002-02", "HPCGPU-0001-01"]);
    assert!(f.warnings.is_empty());
    assert_eq!(
        f.summary.as_deref(),
        Some(
            "HPCRDMA-0002-02: fault HPCRDMA-0002-02 detected; HPCGPU-0001-01: fault HPCGPU-0001-01 detected"
        )
    );
}

#[test]
fn absent_details_give_no_codes_and_no_warning() {
    assert_eq!(parse_faults(None), Faults::default());
    assert_eq!(parse_faults(Some(&BTreeMap::new())), Faults::default());
    let other = BTreeMap::from([("somethingElse".to_string(), "x".to_string())]);
    assert_eq!(parse_faults(Some(&other)), Faults::default());
}

#[test]
fn malformed_details_give_no_codes_and_a_warning() {
    for raw in [
        "not json at all",
        "",
        "{\"faultId\":",
        "\"HPCRDMA-0002-02\"",
        "42",
        "null",
        "true",
    ] {
        let f = parse_faults(Some(&details(raw)));
        assert!(f.ids.is_empty(), "{raw:?}");
        assert_eq!(f.summary, None, "{raw:?}");
        assert_eq!(f.warnings.len(), 1, "{raw:?}");
    }
}

#[test]
fn entries_without_fault_ids_are_skipped_with_a_warning() {
    let f = parse_faults(Some(&details(
        r#"[{"faultComponent":"GPU"}, {"faultId": 7}, {"faultId": "  "}, "x", {"faultId":"A-1"}, {"faultId":"A-1"}]"#,
    )));
    assert_eq!(f.ids, ["A-1"]);
    assert_eq!(f.warnings.len(), 4);
    assert_eq!(f.summary.as_deref(), Some("A-1"));
}

#[test]
fn a_single_object_counts_as_a_list_of_one() {
    let f = parse_faults(Some(&details(
        r#"{"faultId":"HPCGPU-0001-01","customerDescription":"GPU fell off the bus"}"#,
    )));
    assert_eq!(f.ids, ["HPCGPU-0001-01"]);
    assert_eq!(
        f.summary.as_deref(),
        Some("HPCGPU-0001-01: GPU fell off the bus")
    );
}

#[test]
fn summaries_are_bounded() {
    let long = "x".repeat(500);
    let f = parse_faults(Some(&details(&format!(
        r#"[{{"faultId":"A-1","customerDescription":"{long}"}}]"#
    ))));
    let s = f.summary.unwrap();
    assert_eq!(s.chars().count(), SUMMARY_MAX);
    assert!(s.ends_with('…'));
}

#[test]
fn unknown_enum_values_are_reported() {
    let mut e = InstanceMaintenanceEvent {
        maintenance_category: "FLEXIBLE".into(),
        maintenance_reason: "HARDWARE_REPLACEMENT".into(),
        instance_action: "REBOOT_MIGRATION".into(),
        lifecycle_state: "SCHEDULED".into(),
        ..Default::default()
    };
    assert!(unknown_values(&e).is_empty());
    e.maintenance_category = "SOMEDAY".into();
    e.lifecycle_state = "COMPLETED".into();
    let w = unknown_values(&e);
    assert_eq!(w.len(), 2);
    assert!(w[0].contains("maintenanceCategory") && w[1].contains("COMPLETED"));
    assert!(is_terminal("SUCCEEDED") && is_terminal("FAILED") && is_terminal("CANCELED"));
    assert!(!is_terminal("PROCESSING") && !is_terminal("COMPLETED"));
}

fn instance(name: Option<&str>, tags: &[(&str, &str)]) -> Instance {
    Instance {
        id: "i1".into(),
        display_name: name.map(str::to_string),
        freeform_tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

#[test]
fn host_from_display_name() {
    let m = HostMapping::default();
    assert_eq!(
        map_host(&m, "i1", Some(&instance(Some("gpu-001"), &[])), None),
        Ok("gpu-001".into())
    );
    assert!(map_host(&m, "i1", Some(&instance(None, &[])), None).is_err());
    assert!(map_host(&m, "i1", None, None).is_err());
    let bad = map_host(
        &m,
        "i1",
        Some(&instance(Some("gpu 001; rm -rf"), &[])),
        None,
    );
    assert!(bad.unwrap_err().contains("not a valid Slurm node name"));
    assert!(map_host(&m, "i1", Some(&instance(Some(""), &[])), None).is_err());
}

#[test]
fn host_from_a_freeform_tag() {
    let m = HostMapping {
        source: HostMappingSource::FreeformTag,
        tag_key: Some("slurm-node".into()),
        config_map_name: None,
    };
    let i = instance(Some("ignored"), &[("slurm-node", "gpu-007")]);
    assert_eq!(map_host(&m, "i1", Some(&i), None), Ok("gpu-007".into()));
    let untagged = instance(Some("gpu-007"), &[("other", "x")]);
    assert!(map_host(&m, "i1", Some(&untagged), None).is_err());
}

#[test]
fn host_from_a_config_map() {
    let m = HostMapping {
        source: HostMappingSource::ConfigMap,
        tag_key: None,
        config_map_name: Some("hosts".into()),
    };
    let data = BTreeMap::from([("i1".to_string(), "gpu-009".to_string())]);
    assert_eq!(map_host(&m, "i1", None, Some(&data)), Ok("gpu-009".into()));
    assert!(map_host(&m, "i2", None, Some(&data)).is_err());
    assert!(map_host(&m, "i1", None, None).is_err());
}

fn settings() -> OciSettings {
    OciSettings {
        approved_fault_codes: vec!["HPCRDMA-0002-02".into(), "HPCGPU-0001-01".into()],
        excluded_hosts: vec!["gpu-666".into()],
        daily_schedule_cap: 2,
        ..OciSettings::default()
    }
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn approval_by_exact_fault_code() {
    let s = settings();
    let f = ids(&["OTHER-1", "HPCRDMA-0002-02"]);
    let d = decide(
        &s,
        &Candidate {
            lifecycle_state: "SCHEDULED",
            fault_ids: &f,
            host: Some("gpu-001"),
            ..Default::default()
        },
    );
    assert!(d.approved);
    assert_eq!(d.reason, reason::APPROVED_FAULT_CODE);
    assert!(d.message.contains("HPCRDMA-0002-02") && !d.message.contains("OTHER-1"));
    // Exact: no prefix, case or whitespace leniency.
    for near in [
        "HPCRDMA-0002",
        "hpcrdma-0002-02",
        "HPCRDMA-0002-02 ",
        "HPCRDMA-0002-021",
    ] {
        let f = ids(&[near]);
        let d = decide(
            &s,
            &Candidate {
                lifecycle_state: "SCHEDULED",
                fault_ids: &f,
                host: Some("gpu-001"),
                ..Default::default()
            },
        );
        assert_eq!(d.reason, reason::NO_APPROVED_FAULT_CODE, "{near:?}");
        assert!(!d.approved);
    }
    let none: Vec<String> = vec![];
    let d = decide(
        &s,
        &Candidate {
            lifecycle_state: "SCHEDULED",
            fault_ids: &none,
            host: Some("gpu-001"),
            ..Default::default()
        },
    );
    assert_eq!(d.reason, reason::NO_APPROVED_FAULT_CODE);
    assert!(d.message.contains("none"));
    // An empty approved list approves nothing.
    let d = decide(
        &OciSettings::default(),
        &Candidate {
            lifecycle_state: "SCHEDULED",
            fault_ids: &ids(&["HPCRDMA-0002-02"]),
            host: Some("gpu-001"),
            ..Default::default()
        },
    );
    assert!(!d.approved);
}

#[test]
fn decision_order_covers_every_reason() {
    let s = settings();
    let good = ids(&["HPCGPU-0001-01"]);
    let base = Candidate {
        lifecycle_state: "SCHEDULED",
        fault_ids: &good,
        host: Some("gpu-001"),
        already_processed: false,
        approved_today: 0,
    };
    let r = |c: Candidate<'_>| decide(&s, &c);
    assert_eq!(
        r(Candidate {
            already_processed: true,
            lifecycle_state: "PROCESSING",
            host: None,
            ..base.clone()
        })
        .reason,
        reason::ALREADY_PROCESSED
    );
    for st in [
        "STARTED",
        "PROCESSING",
        "SUCCEEDED",
        "FAILED",
        "CANCELED",
        "WHATEVER",
    ] {
        let d = r(Candidate {
            lifecycle_state: st,
            ..base.clone()
        });
        assert_eq!(
            (d.approved, d.reason),
            (false, reason::NOT_SCHEDULED),
            "{st}"
        );
    }
    let d = r(Candidate {
        host: None,
        ..base.clone()
    });
    assert_eq!((d.approved, d.reason), (false, reason::NO_HOST_MAPPING));
    let d = r(Candidate {
        host: Some("gpu-666"),
        approved_today: 99,
        ..base.clone()
    });
    assert_eq!((d.approved, d.reason), (false, reason::EXCLUDED_HOST));
    let d = r(Candidate {
        approved_today: 1,
        ..base.clone()
    });
    assert!(d.approved);
    let d = r(Candidate {
        approved_today: 2,
        ..base.clone()
    });
    assert_eq!((d.approved, d.reason), (false, reason::DAILY_CAP_REACHED));
    // Cap 0: no cap.
    let uncapped = OciSettings {
        daily_schedule_cap: 0,
        ..s.clone()
    };
    assert!(
        decide(
            &uncapped,
            &Candidate {
                approved_today: 10_000,
                ..base.clone()
            }
        )
        .approved
    );
}

#[test]
fn the_daily_cap_counts_utc_days() {
    let t = |s: &str| s.parse::<Timestamp>().unwrap();
    let now = t("2026-11-26T00:30:00Z");
    let approvals = [
        t("2026-11-25T23:59:59Z"),
        t("2026-11-26T00:00:00Z"),
        t("2026-11-26T00:10:00Z"),
        t("2026-11-27T00:00:00Z"),
    ];
    assert_eq!(scheduled_on_day(now, approvals), 2);
    assert_eq!(scheduled_on_day(now, []), 0);
    assert_eq!(utc_day(t("2026-11-26T23:59:59Z")).to_string(), "2026-11-26");
}

#[test]
fn node_names_are_validated() {
    assert!(valid_node_name("gpu-001"));
    assert!(valid_node_name("node_1.rack2"));
    for bad in ["", "a b", "a;b", "a/b", "$(x)", &"x".repeat(65)] {
        assert!(!valid_node_name(bad), "{bad:?}");
    }
}

/// Found by the fuzzer (fuzz/ agent_validate): a display name starting with `-` or `.`
/// was mapped to a host the agent refuses (400 on every drain), instead of being reported
/// at mapping time.
#[test]
fn node_names_the_agent_refuses_are_not_mapped() {
    for bad in ["-rf", "--help", ".hidden", "..", "."] {
        assert!(!valid_node_name(bad), "{bad:?}");
    }
    let mapping = HostMapping {
        source: HostMappingSource::DisplayName,
        ..Default::default()
    };
    let instance = Instance {
        display_name: Some("-rf".into()),
        ..Default::default()
    };
    let err = map_host(&mapping, "ocid1.instance.x", Some(&instance), None).unwrap_err();
    assert!(err.contains("not a valid Slurm node name"), "{err}");
}

#[test]
fn resource_names_are_dns_labels_and_distinct() {
    let a = resource_name(
        "ocid1.instancemaintenanceevent.oc1.iad.anuwcljrAAAABBBBCCCCDDDDEEEEFFFFGGGGHHHHIIIIJJJJ",
    );
    let b = resource_name(
        "ocid1.instancemaintenanceevent.oc1.phx.anuwcljrAAAABBBBCCCCDDDDEEEEFFFFGGGGHHHHIIIIJJJJ",
    );
    let c = resource_name("ocid1.instancemaintenanceevent.oc1..gen0");
    for n in [&a, &b, &c, &resource_name(""), &resource_name("...")] {
        assert!(n.len() <= 63, "{n}");
        assert!(n.starts_with("ome-"));
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{n}"
        );
        assert!(!n.ends_with('-'));
    }
    assert_ne!(a, b);
    assert!(c.starts_with("ome-gen0-"));
}
