//! Named health checks on a real Slurm 22.05 (the cluster `tests/slurm/cluster.sh up`
//! starts), through the agent binary with a checks file: checks that pass, fail, hang past
//! their timeout and flap then pass; unknown names refused with nothing run; and the
//! controller choosing checks for a rolling reboot and for OCI events by fault (one fault
//! mapped to its checks, another to the default), a failure kept drained with its reason
//! and told to a local webhook exactly once, no check outside HealthCheck. Runs when
//! `SLURM_MAINT_LIVE=1`.

use std::collections::BTreeMap;
use std::path::Path;
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
};
use slurm_maint::apiserver::harness::TestCluster;
use slurm_maint::controller::{self, AgentConnector, Context, Leadership, Pace};
use slurm_maint::oci::emulator::scenario::fault_details;
use slurm_maint::oci::emulator::{Emulator, Scenario};
use slurm_maint::slurm::client::{SlurmClient, SlurmError};
use tokio::sync::watch;

const TOKEN: &str = "checks-live-token";
const TENANCY: &str = "ocid1.tenancy.oc1..aaaaaaaachecks";
const RDMA_FAULT: &str = "HPCRDMA-0002-02";
const GPU_FAULT: &str = "HPCGPU-0001-01";

/// A site check as a shell script: logs `<check> <node> <fault> <unix time>` to
/// `<dir>/log`, fails where `<dir>/fail-<node>` exists, and fails its first two attempts
/// where `<dir>/flap-<node>` exists (a counter file per node and check).
fn script(check: &str) -> String {
    format!(
        r#"set -e
echo "{check} $1 $2 $(date +%s.%N)" >> "$0/log"
if [ -e "$0/fail-$1" ]; then echo "{check}: GPU 1: 2 uncorrected ECC errors"; exit 1; fi
n=$(cat "$0/count-{check}-$1" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0/count-{check}-$1"
if [ -e "$0/flap-$1" ] && [ $n -lt 3 ]; then echo "{check}: busy (attempt $n)"; exit 1; fi
echo "{check}: ok for $2""#
    )
}

fn checks_file(dir: &Path) -> String {
    let d = dir.display().to_string();
    let site = |name: &str, retries: u32| {
        json!({
            "name": name,
            "argv": ["sh", "-c", script(name), d, "{node}", "{fault}"],
            "timeout": "20s", "retries": retries, "backoff": "200ms",
        })
    };
    json!({"checks": [
        {
            "name": "ready",
            "argv": ["scontrol", "show", "node", "{node}"],
            "timeout": "10s", "retries": 5, "backoff": "1s",
            "passPattern": "State=(IDLE|MIXED|ALLOCATED)[+ ]",
            "failPattern": "State=\\S*(DRAIN|DOWN|NOT_RESPONDING)",
        },
        site("gpu", 3),
        site("rdma", 0),
        site("basic", 0),
        site("once", 0),
        {
            "name": "hang",
            "argv": ["sh", "-c", "echo started; sleep 60"],
            "timeout": "2s", "retries": 1, "backoff": "100ms",
        },
    ]})
    .to_string()
}

fn tempdir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("checks-live-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn agent_with_checks(
    dir: &Path,
) -> (
    common::AgentProc,
    String,
    slurm_maint::slurm::client::AgentClient,
) {
    let file = dir.join("checks.yaml");
    std::fs::write(&file, checks_file(dir)).unwrap();
    common::start_agent_with(TOKEN, &["--checks-file", file.to_str().unwrap()]).await
}

async fn commands_run(base: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("slurm_maint_agent_commands_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn the_agent_runs_only_its_named_checks_on_real_slurm() {
    if !common::live() {
        return;
    }
    let dir = tempdir("agent");
    let (_agent, base, slurm) = agent_with_checks(&dir).await;
    let _ = Command::new("scontrol")
        .args(["update", "NodeName=node6", "State=RESUME"])
        .output();

    // Pass: Slurm says node6 is in service.
    let r = slurm.run_check("node6", "ready", None).await.unwrap();
    assert!(r.passed, "{r:?}");
    assert!(r.output.contains("NodeName=node6"), "{r:?}");
    // Fail: drained (by hand, with a reason of someone else's) is not ready; the check is
    // retried with back-off (5 retries, 1 s doubling: more than 30 s).
    Command::new("scontrol")
        .args([
            "update",
            "NodeName=node6",
            "State=DRAIN",
            "Reason=checks-live",
        ])
        .status()
        .unwrap();
    let started = Instant::now();
    let r = slurm.run_check("node6", "ready", None).await.unwrap();
    Command::new("scontrol")
        .args(["update", "NodeName=node6", "State=RESUME"])
        .status()
        .unwrap();
    assert!(!r.passed, "{r:?}");
    assert_eq!(r.attempts, 6);
    assert!(
        r.message.starts_with("output matches the fail pattern"),
        "{r:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(31),
        "back-off 1+2+4+8+16 s"
    );

    // A site check that fails, with its output and {node}/{fault} as whole arguments.
    std::fs::write(dir.join("fail-node6"), "").unwrap();
    let r = slurm
        .run_check("node6", "once", Some(GPU_FAULT))
        .await
        .unwrap();
    std::fs::remove_file(dir.join("fail-node6")).unwrap();
    assert!(!r.passed);
    assert_eq!(r.message, "exit code 1");
    assert_eq!(r.output, "once: GPU 1: 2 uncorrected ECC errors");
    // Flaps, then passes within its retries.
    std::fs::write(dir.join("flap-node6"), "").unwrap();
    let r = slurm.run_check("node6", "gpu", None).await.unwrap();
    std::fs::remove_file(dir.join("flap-node6")).unwrap();
    assert!(r.passed, "{r:?}");
    assert_eq!(r.attempts, 3);
    assert_eq!(r.output, "gpu: ok for none");
    // Hangs past its timeout: killed, retried, failed.
    let started = Instant::now();
    let r = slurm.run_check("node6", "hang", None).await.unwrap();
    assert!(!r.passed);
    assert_eq!(r.attempts, 2);
    assert_eq!(
        r.message,
        "did not finish within 2s and was killed (attempt 2 of 2)"
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    // Unknown names and hostile input: 400, nothing runs.
    let before = commands_run(&base).await;
    let log_before = std::fs::read_to_string(dir.join("log")).unwrap();
    for (node, check, fault) in [
        ("node6", "rm", None),
        ("node6", "default", None),
        ("node6;reboot", "gpu", None),
        ("node6", "gpu", Some("$(reboot)")),
    ] {
        match slurm.run_check(node, check, fault).await {
            Err(SlurmError::Refused { status: 400, .. }) => {}
            other => panic!("{node} {check} {fault:?}: {other:?}"),
        }
    }
    assert_eq!(commands_run(&base).await, before, "nothing ran");
    assert_eq!(
        std::fs::read_to_string(dir.join("log")).unwrap(),
        log_before
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn key_pem(dir: &Path) -> String {
    let path = dir.join("key.pem");
    let st = Command::new("openssl")
        .args(["genrsa", "-out", path.to_str().unwrap(), "2048"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read_to_string(path).unwrap()
}

/// node3: an RDMA fault (mapped to `rdma`); node4: a GPU fault no rule names (the
/// default `basic`).
fn scenario() -> Scenario {
    let mut sc = Scenario::parse(&format!(
        "tenancy: {TENANCY}\ngenerate: {{compartments: 1, instances: 2, events: 2, hostPrefix: live}}\n"
    ))
    .unwrap();
    sc.expand(Timestamp::now());
    for (i, inst) in sc.instances.iter_mut().enumerate() {
        let host = format!("node{}", i + 3);
        inst.display_name = Some(host.clone());
        inst.freeform_tags.insert("slurm-node".into(), host);
    }
    for (ev, f) in sc.events.iter_mut().zip([RDMA_FAULT, GPU_FAULT]) {
        ev.event.additional_details = Some(fault_details(&[f]));
    }
    sc
}

/// (check, node, fault, unix time) of every site check run.
fn log_lines(dir: &Path) -> Vec<(String, String, String, f64)> {
    std::fs::read_to_string(dir.join("log"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].into(), f[1].into(), f[2].into(), f[3].parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn the_policy_chooses_checks_by_work_and_fault_on_real_slurm() {
    if !common::live() {
        return;
    }
    let dir = tempdir("policy");
    let (_agent, url, slurm) = agent_with_checks(&dir).await;
    common::resume_and_boot_times(&slurm, &["node1", "node2", "node3", "node4"], "batch").await;
    std::fs::write(dir.join("flap-node1"), "").unwrap();
    std::fs::write(dir.join("fail-node2"), "").unwrap();
    let hook = common::WebhookReceiver::start(vec![]).await;

    let pem = key_pem(&dir);
    let key = slurm_maint::oci::config::parse_private_key(&pem, None).unwrap();
    let emu = Emulator::new(scenario(), vec![key.to_public_key()]);
    let (oci_addr, _emu_task) = emu.start("127.0.0.1:0").await.unwrap();

    let c = TestCluster::start("checks-live").await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.namespace);
    for s in [
        json!({"metadata": {"name": "agent-token"}, "stringData": {"token": TOKEN}}),
        json!({"metadata": {"name": "tickets"}, "data": {"url": base64(&hook.url)}}),
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
            "reboots": {"enabled": true, "timeout": "2m", "maxAttempts": 1},
            "interval": "5s",
            "campaign": {"rebootRequiredBefore": campaign.to_string()},
            "healthChecks": {
                "readiness": "ready",
                "reboot": ["gpu"],
                "oci": [{"faults": [RDMA_FAULT], "checks": ["rdma"]}],
                "ociDefault": ["basic"],
                "webhook": {"secretName": "tickets"},
            },
            "oci": {
                "enabled": true,
                "tenancyId": TENANCY,
                "region": "us-ashburn-1",
                "endpoint": format!("http://{oci_addr}"),
                "credentialsSecretRef": {"name": "oci"},
                "approvedFaultCodes": [RDMA_FAULT, GPU_FAULT],
                "excludedHosts": ["node5", "node6"],
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
        "checks-live",
    ));
    let (stop, mut rx) = watch::channel(false);
    let task = tokio::spawn(controller::run(
        ctx.clone(),
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
    loop {
        let items = works.list(&ListParams::default()).await.unwrap().items;
        let by_node: BTreeMap<String, NodeMaintenance> = items
            .into_iter()
            .map(|nm| (nm.spec.node_name.clone(), nm))
            .collect();
        let phase = |n: &str| {
            by_node
                .get(n)
                .and_then(|nm| nm.status.as_ref())
                .map(|s| s.phase)
        };
        let ended = ["node1", "node2", "node3", "node4"]
            .iter()
            .all(|n| phase(n).is_some_and(|p| p.is_terminal()));
        if ended {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not done in 420 s: {:#?}",
            by_node
                .values()
                .map(|nm| (
                    &nm.spec.node_name,
                    nm.status.as_ref().map(|s| (s.phase, s.last_error.clone()))
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A few more passes: nothing more is called (and the webhook's note is written).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let _ = stop.send(true);
    let _ = task.await;
    let by_node: BTreeMap<String, NodeMaintenance> = works
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|nm| (nm.spec.node_name.clone(), nm))
        .collect();

    let status = |n: &str| by_node[n].status.clone().unwrap();
    let checks = |n: &str| {
        status(n)
            .health_checks
            .iter()
            .map(|r| (r.name.clone(), r.passed, r.fault.clone()))
            .collect::<Vec<_>>()
    };
    let s = |v: &str| v.to_string();
    // node1: the reboot's checks; gpu flapped and passed within its retries.
    assert_eq!(
        status("node1").phase,
        Phase::Completed,
        "{:?}",
        status("node1")
    );
    assert_eq!(
        checks("node1"),
        [(s("ready"), true, None), (s("gpu"), true, None)]
    );
    assert_eq!(status("node1").health_checks[1].attempts, 3);
    // node2: gpu failed: Failed, drained with a reason naming the check.
    let st2 = status("node2");
    assert_eq!(st2.phase, Phase::Failed, "{st2:?}");
    assert_eq!(
        checks("node2"),
        [(s("ready"), true, None), (s("gpu"), false, None)]
    );
    assert_eq!(
        st2.health_checks[1].output,
        "gpu: GPU 1: 2 uncorrected ECC errors"
    );
    let snap = slurm.snapshot("batch").await.unwrap();
    let node2 = snap.nodes.iter().find(|n| n.name == "node2").unwrap();
    assert!(node2.state.is_drained(), "{}", node2.state);
    let reason = node2.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with(
            "slurm-maint: health check failed after reboot: check gpu failed: exit code 1"
        ),
        "{reason}"
    );
    // OCI: the RDMA fault ran its rule's checks, the GPU fault the default, each with its
    // fault.
    for (n, check, fault) in [("node3", "rdma", RDMA_FAULT), ("node4", "basic", GPU_FAULT)] {
        let nm = &by_node[n];
        assert_eq!(nm.spec.action, MaintenanceAction::OciMaintenance);
        assert_eq!(status(n).phase, Phase::Completed, "{n}: {:?}", status(n));
        assert_eq!(
            checks(n),
            [
                (s("ready"), true, Some(s(fault))),
                (s(check), true, Some(s(fault)))
            ],
            "{n}"
        );
        assert_eq!(
            status(n).health_checks[1].output,
            format!("{check}: ok for {fault}")
        );
    }
    // The webhook: once, for node2's failure.
    let got = hook.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["node"], "node2");
    assert_eq!(got[0]["check"], "gpu");
    assert_eq!(got[0]["output"], "gpu: GPU 1: 2 uncorrected ECC errors");
    assert_eq!(
        st2.notification.as_deref(),
        Some("webhook answered 200 (attempt 1)")
    );
    // Every site check ran while its node's work was in HealthCheck, in one run per node
    // (its attempts: node1's flapped twice then passed, node2's failed all 1 + 3), on no
    // other node.
    let lines = log_lines(&dir);
    let mut runs: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (check, node, fault, time) in &lines {
        *runs.entry((node.clone(), check.clone())).or_default() += 1;
        let st = status(node);
        let entered = st
            .transitions
            .iter()
            .rev()
            .find(|t| t.phase == Phase::HealthCheck)
            .unwrap_or_else(|| panic!("{node} never in HealthCheck, yet {check} ran"))
            .time;
        let entered = entered.as_millisecond() as f64 / 1000.0;
        assert!(
            *time >= entered - 1.0,
            "{check} ran on {node} at {time}, before HealthCheck at {entered}"
        );
        let expected_fault = match node.as_str() {
            "node3" => RDMA_FAULT,
            "node4" => GPU_FAULT,
            _ => "none",
        };
        assert_eq!(fault, expected_fault, "{check} on {node}");
    }
    let want: BTreeMap<(String, String), usize> = [
        (("node1", "gpu"), 3),
        (("node2", "gpu"), 4),
        (("node3", "rdma"), 1),
        (("node4", "basic"), 1),
    ]
    .into_iter()
    .map(|((n, c), k)| ((s(n), s(c)), k))
    .collect();
    assert_eq!(runs, want, "{lines:?}");
    let metrics = ctx.metrics.encode();
    for series in [
        format!(
            r#"slurm_maint_health_checks_total{{namespace="{}",policy="live",check="gpu",outcome="failed"}} 1"#,
            c.namespace
        ),
        format!(
            r#"slurm_maint_health_checks_total{{namespace="{}",policy="live",check="ready",outcome="passed"}} 4"#,
            c.namespace
        ),
        r#"slurm_maint_health_webhook_calls_total{outcome="sent"} 1"#.to_string(),
    ] {
        assert!(metrics.contains(&series), "no {series} in\n{metrics}");
    }
    let _ = Command::new("scontrol")
        .args(["update", "NodeName=node2", "State=RESUME"])
        .output();
    c.cleanup().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

fn base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
