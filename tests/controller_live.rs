//! The whole operator against a real Slurm 22.05: the controller binary (leader-elected,
//! reading the agent token from its Secret, serving metrics) drives a rolling-reboot campaign through the agent
//! binary on the cluster `tests/slurm/cluster.sh up` starts, with the API server embedded
//! or real (`SLURM_MAINT_E2E_KUBECONFIG`). Runs when `SLURM_MAINT_LIVE=1`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use slurm_maint::api::{MaintenancePolicy, NodeMaintenance, NodeMaintenancePhase as Phase};
use slurm_maint::apiserver::harness::TestCluster;
use slurm_maint::plan::status::reason;
use slurm_maint::slurm::client::SlurmClient;

const TOKEN: &str = "controller-live-token";

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_rolling_reboot_campaign_on_real_slurm() {
    if !common::live() {
        return;
    }
    let (_agent, url, slurm) = common::start_agent(TOKEN).await;
    let boot_before =
        common::resume_and_boot_times(&slurm, &["node1", "node2", "node3"], "batch").await;
    // A user job on node1 with a 1-minute limit: node1's reservation must start after it.
    let job = sh(&[
        "sbatch",
        "--parsable",
        "-o",
        "/dev/null",
        "-p",
        "batch",
        "-w",
        "node1",
        "-t",
        "1",
        "--wrap",
        "sleep 30",
    ]);
    let job: u64 = job.trim().parse().unwrap();
    let campaign = Timestamp::now();

    let c = TestCluster::start("live").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "agent-token"},
        "stringData": {"token": TOKEN}
    }))
    .unwrap();
    Api::<Secret>::namespaced(c.client.clone(), &c.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    // The controller binary, as deployed: kubeconfig, leader election, metrics endpoint.
    let kubeconfig = match c.embedded() {
        Some(server) => {
            let (addr, _task) = server.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let path = std::env::temp_dir().join(format!("{}.kubeconfig", c.namespace));
            std::fs::write(
                &path,
                slurm_maint::apiserver::ApiServer::kubeconfig_yaml(addr),
            )
            .unwrap();
            path
        }
        None => std::env::var("SLURM_MAINT_E2E_KUBECONFIG").unwrap().into(),
    };
    let metrics_port = common::free_port();
    let controller = common::Proc(
        Command::new(env!("CARGO_BIN_EXE_slurm-maint"))
            .args(["controller", "--namespace", &c.namespace])
            .args(["--lease-namespace", &c.namespace, "--identity", "live-0"])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let policy: MaintenancePolicy = serde_json::from_value(json!({
        "apiVersion": "slurm-maint.io/v1alpha1",
        "kind": "MaintenancePolicy",
        "metadata": {"name": "live"},
        "spec": {
            "partition": "batch",
            "nodelist": "node[1-3]",
            "agent": {"url": url, "tokenSecretRef": {"name": "agent-token"}},
            "budget": {"maxUnavailable": 2, "reservationLeadTime": "0s"},
            "reservations": {"enabled": true, "duration": "1h"},
            "reboots": {"enabled": true, "timeout": "2m"},
            "interval": "5s",
            "campaign": {"rebootRequiredBefore": campaign.to_string()},
        }
    }))
    .unwrap();
    let policies: Api<MaintenancePolicy> = Api::namespaced(c.client.clone(), &c.namespace);
    policies
        .patch(
            "live",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&policy),
        )
        .await
        .unwrap();

    // Watch Slurm while the campaign runs: nodes of ours out of service at once.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut most_out = 0;
    let mut job_end = None;
    let done = loop {
        let snap = slurm.snapshot("batch").await.unwrap();
        let out = snap
            .nodes
            .iter()
            .filter(|n| !n.state.in_service() || n.state.has("MAINTENANCE"))
            .count();
        most_out = most_out.max(out);
        if job_end.is_none() && !snap.jobs.iter().any(|j| j.id == job) {
            job_end = Some(Timestamp::now());
        }
        let p = policies.get("live").await.unwrap();
        let progressing = p.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.r#type == "Progressing")
                .map(|c| c.reason.clone())
        });
        if progressing.as_deref() == Some(reason::CAMPAIGN_COMPLETE) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "campaign not done in 300 s: {:#?}",
            p.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Metrics, scraped as Prometheus would.
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "slurm_maint_reconciles_total{controller=\"policy\"}",
        "slurm_maint_slurm_calls_total{verb=\"reboot\",outcome=\"ok\"} 3",
        "slurm_maint_slurm_calls_total{verb=\"snapshot\",outcome=\"ok\"}",
        "phase=\"Completed\"} 3",
        "figure=\"allowed\"} 2",
        "slurm_maint_campaign_completion_ratio{",
    ] {
        assert!(metrics.contains(series), "no {series} in\n{metrics}");
    }
    // SIGTERM: a clean exit that hands the lease back.
    let mut controller = controller;
    unsafe { libc::kill(controller.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = controller.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    let lease = Api::<Lease>::namespaced(c.client.clone(), &c.namespace)
        .get("slurm-maint-controller")
        .await
        .unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity, None, "lease released");

    assert!(most_out <= 2, "{most_out} nodes out at once, 2 allowed");
    let st = done.status.unwrap();
    assert_eq!((st.phases.completed, st.nodes_needing_work), (3, 3));
    let items = Api::<NodeMaintenance>::namespaced(c.client.clone(), &c.namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let after = slurm.snapshot("batch").await.unwrap();
    for nm in &items {
        let s = nm.status.clone().unwrap();
        assert_eq!(s.phase, Phase::Completed, "{}: {s:?}", nm.name_any());
        assert_eq!(s.attempts, 1, "{} rebooted once", nm.spec.node_name);
        let n = after
            .nodes
            .iter()
            .find(|n| n.name == nm.spec.node_name)
            .unwrap();
        assert!(
            n.boot_time > boot_before[&n.name] && n.boot_time.unwrap() > campaign,
            "{} has a new BootTime",
            n.name
        );
        assert!(
            n.state.in_service(),
            "{} back in service: {}",
            n.name,
            n.state
        );
    }
    // node1 was rebooted only after the user's job ended by itself.
    let node1 = items
        .iter()
        .find(|nm| nm.spec.node_name == "node1")
        .unwrap();
    let issued = node1.status.as_ref().unwrap().reboot_issued_at.unwrap();
    let job_end = job_end.expect("the job ended");
    assert!(
        issued >= job_end - jiff::SignedDuration::from_secs(1),
        "reboot at {issued}, job ended {job_end}"
    );
    // Nothing of ours is left in Slurm.
    assert!(
        after
            .reservations
            .iter()
            .all(|r| !r.name.starts_with("slurm-maint")),
        "{:?}",
        after.reservations
    );
    c.cleanup().await;
}
