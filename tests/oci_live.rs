//! OCI maintenance events end to end on a real Slurm 22.05 (the cluster
//! `tests/slurm/cluster.sh up` starts, through the agent binary), with the OCI emulator
//! injecting 20 % 429/500 answers and the API server embedded or real
//! (`SLURM_MAINT_E2E_KUBECONFIG`), while a rolling reboot runs in the same partition.
//! Runs when `SLURM_MAINT_LIVE=1`.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use slurm_maint::api::{
    MaintenanceAction, MaintenancePolicy, NodeMaintenance, NodeMaintenancePhase as Phase,
    OciMaintenanceEvent,
};
use slurm_maint::apiserver::harness::TestCluster;
use slurm_maint::controller::{self, AgentConnector, Context, Leadership, Pace};
use slurm_maint::oci::emulator::scenario::{Faults, fault_details};
use slurm_maint::oci::emulator::{Emulator, Scenario};
use slurm_maint::slurm::client::SlurmClient;
use tokio::sync::watch;

const TOKEN: &str = "oci-live-token";
const TENANCY: &str = "ocid1.tenancy.oc1..aaaaaaaalive";
const APPROVED: &str = "HPCRDMA-0002-02";

fn key_pem() -> String {
    let dir = std::env::temp_dir().join(format!("oci-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("key.pem");
    let st = Command::new("openssl")
        .args(["genrsa", "-out", path.to_str().unwrap(), "2048"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read_to_string(path).unwrap()
}

/// node3, node4: approved faults; node5: a fault not on the list; node6: excluded.
fn scenario() -> Scenario {
    let mut sc = Scenario::parse(&format!(
        "tenancy: {TENANCY}\ngenerate: {{compartments: 1, instances: 4, events: 4, hostPrefix: live}}\n"
    ))
    .unwrap();
    sc.expand(Timestamp::now());
    for (i, inst) in sc.instances.iter_mut().enumerate() {
        let host = format!("node{}", i + 3);
        inst.display_name = Some(host.clone());
        inst.freeform_tags.insert("slurm-node".into(), host);
    }
    let faults = [APPROVED, APPROVED, "HPCGPU-0001-01", APPROVED];
    for (ev, f) in sc.events.iter_mut().zip(faults) {
        ev.event.additional_details = Some(fault_details(&[f]));
    }
    sc
}

#[tokio::test]
async fn oci_events_and_a_rolling_reboot_share_the_budget_on_real_slurm() {
    if !common::live() {
        return;
    }
    let (_agent, url, slurm) = common::start_agent(TOKEN).await;
    for n in 1..=6 {
        let _ = Command::new("scontrol")
            .args(["update", &format!("NodeName=node{n}"), "State=RESUME"])
            .output();
    }

    let pem = key_pem();
    let key = slurm_maint::oci::config::parse_private_key(&pem, None).unwrap();
    let emu = Emulator::new(scenario(), vec![key.to_public_key()]);
    emu.set_faults(Faults {
        error_rate: 0.2,
        latency_ms: 0,
        seed: 7,
    });
    let (oci_addr, _emu_task) = emu.start("127.0.0.1:0").await.unwrap();

    let c = TestCluster::start("oci-live").await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.namespace);
    for s in [
        json!({"metadata": {"name": "agent-token"}, "stringData": {"token": TOKEN}}),
        json!({"metadata": {"name": "oci"}, "stringData": {
            "config": format!("[DEFAULT]\nuser=ocid1.user.oc1..live\ntenancy={TENANCY}\nkey_file=/unused\nregion=us-ashburn-1\n"),
            "key": pem,
        }}),
    ] {
        let s: Secret = serde_json::from_value(s).unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let campaign = Timestamp::now();
    let policy: MaintenancePolicy = serde_json::from_value(json!({
        "apiVersion": "slurm-maint.io/v1alpha1",
        "kind": "MaintenancePolicy",
        "metadata": {"name": "live"},
        "spec": {
            "partition": "batch",
            "nodelist": "node[1-2]",
            "agent": {"url": url, "tokenSecretRef": {"name": "agent-token"}},
            "budget": {"maxUnavailable": 2, "reservationLeadTime": "0s"},
            "reservations": {"enabled": true, "duration": "1h"},
            "reboots": {"enabled": true, "timeout": "2m"},
            "interval": "5s",
            "campaign": {"rebootRequiredBefore": campaign.to_string()},
            "oci": {
                "enabled": true,
                "tenancyId": TENANCY,
                "region": "us-ashburn-1",
                "endpoint": format!("http://{oci_addr}"),
                "credentialsSecretRef": {"name": "oci"},
                "approvedFaultCodes": [APPROVED],
                "excludedHosts": ["node6"],
                "dailyScheduleCap": 10,
                "scheduleLeadTime": "5s"
            }
        }
    }))
    .unwrap();
    let ctx = Arc::new(Context::new(
        c.client.clone(),
        Arc::new(AgentConnector::new(
            c.client.clone(),
            Duration::from_secs(30),
            None,
            None,
        )),
        controller::wall_clock(),
        Pace::default(),
        Leadership::always(),
        "oci-live",
    ));
    let (stop, mut rx) = watch::channel(false);
    let task = tokio::spawn(controller::run(
        ctx,
        Some(c.namespace.clone()),
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    Api::<MaintenancePolicy>::namespaced(c.client.clone(), &c.namespace)
        .patch(
            "live",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&policy),
        )
        .await
        .unwrap();

    let works: Api<NodeMaintenance> = Api::namespaced(c.client.clone(), &c.namespace);
    let deadline = Instant::now() + Duration::from_secs(420);
    let mut most_out = 0;
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let mut oci_reasons: std::collections::BTreeMap<String, String> = Default::default();
    let items = loop {
        let snap = slurm.snapshot("batch").await.unwrap();
        let out: Vec<&str> = snap
            .nodes
            .iter()
            .filter(|n| !n.state.in_service() || n.state.has("MAINTENANCE"))
            .map(|n| n.name.as_str())
            .collect();
        most_out = most_out.max(out.len());
        touched.extend(
            snap.nodes
                .iter()
                .filter(|n| n.state.is_drained() || n.state.has("MAINTENANCE"))
                .map(|n| n.name.clone()),
        );
        for n in snap.nodes.iter().filter(|n| n.state.is_drained()) {
            if let Some(r) = n.reason.as_ref().filter(|r| r.contains("OCI maintenance")) {
                oci_reasons.insert(n.name.clone(), r.clone());
            }
        }
        let items = works.list(&ListParams::default()).await.unwrap().items;
        let done = |a: MaintenanceAction| {
            items
                .iter()
                .filter(|nm| nm.spec.action == a)
                .filter(|nm| {
                    nm.status
                        .as_ref()
                        .is_some_and(|s| s.phase == Phase::Completed)
                })
                .count()
        };
        if done(MaintenanceAction::OciMaintenance) == 2 && done(MaintenanceAction::Reboot) == 2 {
            break items;
        }
        if Instant::now() >= deadline {
            let mirrored = Api::<OciMaintenanceEvent>::namespaced(c.client.clone(), &c.namespace)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items;
            let p = Api::<MaintenancePolicy>::namespaced(c.client.clone(), &c.namespace)
                .get("live")
                .await
                .unwrap();
            panic!(
                "OCI mirrors: {:#?}\npolicy: {:#?}",
                mirrored
                    .iter()
                    .map(|o| (&o.spec.slurm_node, &o.spec.lifecycle_state, &o.status))
                    .collect::<Vec<_>>(),
                p.status
            );
        }
        assert!(
            Instant::now() < deadline,
            "not done in 420 s: {:#?}",
            items
                .iter()
                .map(|nm| (
                    &nm.spec.node_name,
                    nm.status.as_ref().map(|s| (s.phase, s.last_error.clone()))
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = stop.send(true);
    let _ = task.await;

    assert!(most_out <= 2, "{most_out} nodes out at once, 2 allowed");
    for n in ["node5", "node6"] {
        assert!(!touched.contains(n), "{n} was touched: {touched:?}");
    }
    let oci_nodes: BTreeSet<&str> = items
        .iter()
        .filter(|nm| nm.spec.action == MaintenanceAction::OciMaintenance)
        .map(|nm| nm.spec.node_name.as_str())
        .collect();
    assert_eq!(oci_nodes, BTreeSet::from(["node3", "node4"]));
    // Slurm showed the fault behind each OCI drain, after our prefix.
    for n in ["node3", "node4"] {
        let r = oci_reasons.get(n).map(String::as_str).unwrap_or_default();
        assert!(
            r.starts_with(&format!("slurm-maint: OCI maintenance: {APPROVED}")),
            "{n}: {r:?}"
        );
    }
    let after = slurm.snapshot("batch").await.unwrap();
    for n in ["node3", "node4"] {
        let node = after.nodes.iter().find(|x| x.name == n).unwrap();
        assert!(node.state.in_service(), "{n} resumed: {}", node.state);
    }
    for nm in items
        .iter()
        .filter(|nm| nm.spec.action == MaintenanceAction::OciMaintenance)
    {
        let st = nm.status.as_ref().unwrap();
        assert!(st.work_request_id.is_some(), "{}", nm.spec.node_name);
        let ev = emu
            .event(&nm.spec.oci_event.as_ref().unwrap().event_id)
            .unwrap();
        assert_eq!(ev.lifecycle_state, "SUCCEEDED");
    }
    // Every event is mirrored with its decision; the two not approved say why.
    let mirrored = Api::<OciMaintenanceEvent>::namespaced(c.client.clone(), &c.namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(mirrored.len(), 4);
    for o in &mirrored {
        let st = o.status.as_ref().unwrap();
        let a = st.approval.as_ref().unwrap();
        match o.spec.slurm_node.as_deref() {
            Some("node3" | "node4") => {
                assert!(a.approved);
                assert_eq!(st.outcome.as_deref(), Some("Completed"));
            }
            Some("node5") => assert!(!a.approved && a.reason == "NoApprovedFaultCode", "{a:?}"),
            Some("node6") => assert!(!a.approved && a.reason == "ExcludedHost", "{a:?}"),
            other => panic!("unexpected host {other:?}"),
        }
    }
    c.cleanup().await;
}
