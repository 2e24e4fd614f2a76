//! Faults in the real components mid-campaign: the controller binary runs a rolling-reboot
//! campaign on the live Slurm 22.05 cluster through the agent binary, on the real API server
//! (`SLURM_MAINT_E2E_KUBECONFIG`), and slurmctld is stopped part-way and started again
//! (its saved state kept). The campaign must complete, never with more nodes out than
//! allowed (Slurm sampled every second), no node rebooted twice, and the policy's status must
//! say what happened while it happened. Runs when `SLURM_MAINT_LIVE=1` and a real API server
//! is given (tests/run.sh's live phase on 22.05).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use slurm_maint::api::{MaintenancePolicy, NodeMaintenance, NodeMaintenancePhase as Phase};
use slurm_maint::apiserver::harness::TestCluster;
use slurm_maint::plan::status::{condition_type, reason};
use slurm_maint::slurm::client::SlurmClient;

const TOKEN: &str = "faults-live-token";
const ALLOWED: usize = 1;
const OUTAGE: Duration = Duration::from_secs(30);

fn slurmctld_pid() -> Option<i32> {
    let dir = PathBuf::from(std::env::var("SLURM_TEST_DIR").ok()?);
    let pid: i32 = std::fs::read_to_string(dir.join("run/slurmctld.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

/// Out of service for our maintenance: in our reservation, rebooting, or drained by us.
/// (Slurm's own DOWN/UNKNOWN while slurmctld recovers is not ours, and is counted apart.)
fn out_for_us(n: &slurm_maint::slurm::Node) -> bool {
    n.reservation
        .as_deref()
        .is_some_and(|r| r.starts_with("slurm-maint"))
        || n.state.has("MAINTENANCE")
        || n.state.has("REBOOT_REQUESTED")
        || n.state.has("REBOOT_ISSUED")
        || (n.state.is_drained()
            && n.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("slurm-maint")))
}

/// Stop slurmctld (SIGTERM) and wait until it is gone.
async fn stop_slurmctld() {
    let pid = slurmctld_pid().expect("slurmctld is not running (SLURM_TEST_DIR?)");
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(Instant::now() < deadline, "slurmctld {pid} did not stop");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Start slurmctld again with its saved state (no `-c`), as tests/slurm/cluster.sh does.
fn start_slurmctld() {
    let conf = std::env::var("SLURM_CONF").expect("SLURM_CONF");
    let out = Command::new("slurmctld")
        .args(["-f", &conf])
        .env("SLURM_CONF", &conf)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "slurmctld did not start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts slurmctld again if a failing test left it stopped.
struct RestartOnDrop(bool);

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        if self.0 && slurmctld_pid().is_none() {
            start_slurmctld();
        }
    }
}

#[tokio::test]
async fn a_campaign_survives_slurmctld_stopped_and_started_again() {
    if !common::live() {
        return;
    }
    if std::env::var("SLURM_MAINT_E2E_KUBECONFIG").is_err() {
        eprintln!(
            "skipped: needs a real API server (SLURM_MAINT_E2E_KUBECONFIG), as the live phase gives"
        );
        return;
    }
    let (_agent, url, slurm) = common::start_agent(TOKEN).await;
    let boot_before =
        common::resume_and_boot_times(&slurm, &["node1", "node2", "node3"], "batch").await;
    let campaign = Timestamp::now();

    let c = TestCluster::start("faults").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "agent-token"},
        "stringData": {"token": TOKEN}
    }))
    .unwrap();
    Api::<Secret>::namespaced(c.client.clone(), &c.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let kubeconfig = std::env::var("SLURM_MAINT_E2E_KUBECONFIG").unwrap();
    let _controller = common::Proc(
        Command::new(env!("CARGO_BIN_EXE_slurm-maint"))
            .args(["controller", "--namespace", &c.namespace])
            .args(["--lease-namespace", &c.namespace, "--identity", "faults-0"])
            .args([
                "--metrics-addr",
                &format!("127.0.0.1:{}", common::free_port()),
            ])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let policy: MaintenancePolicy = serde_json::from_value(json!({
        "apiVersion": "slurm-maint.io/v1alpha1",
        "kind": "MaintenancePolicy",
        "metadata": {"name": "faults"},
        "spec": {
            "partition": "batch",
            "nodelist": "node[1-3]",
            "agent": {"url": url, "tokenSecretRef": {"name": "agent-token"}},
            "budget": {"maxUnavailable": ALLOWED, "reservationLeadTime": "0s"},
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
            "faults",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&policy),
        )
        .await
        .unwrap();

    let mut restart = RestartOnDrop(false);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut most_out = 0;
    let mut most_unavailable = 0;
    let mut samples = 0;
    let mut down_at: Option<(Instant, String)> = None;
    let mut up_at = None;
    let mut said_during_outage = None;
    let done = loop {
        if let Ok(snap) = slurm.snapshot("batch").await {
            most_out = most_out.max(snap.nodes.iter().filter(|n| out_for_us(n)).count());
            let unavailable = snap.nodes.iter().filter(|n| !n.state.in_service()).count();
            most_unavailable = most_unavailable.max(unavailable);
            samples += 1;
        }
        let p = policies.get("faults").await.unwrap();
        let st = p.status.clone().unwrap_or_default();
        let condition = |ty: &str| st.conditions.iter().find(|c| c.r#type == ty).cloned();
        let mid_campaign = st.phases.rebooting + st.phases.recovering + st.phases.completed > 0
            && st.phases.completed < 3;
        match (&down_at, up_at) {
            (None, _) if mid_campaign => {
                let phases = format!("{:?}", st.phases);
                stop_slurmctld().await;
                restart.0 = true;
                down_at = Some((Instant::now(), phases));
            }
            (Some((t, _)), None) => {
                if let Some(d) = condition(condition_type::DEGRADED)
                    .filter(|d| d.status == slurm_maint::api::condition::ConditionStatus::True)
                {
                    said_during_outage.get_or_insert((d.reason.clone(), d.message.clone()));
                }
                if t.elapsed() >= OUTAGE {
                    start_slurmctld();
                    up_at = Some(Instant::now());
                }
            }
            _ => {}
        }
        if condition(condition_type::PROGRESSING).map(|c| c.reason)
            == Some(reason::CAMPAIGN_COMPLETE.to_string())
        {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "campaign not done in 600 s (slurmctld down at {:?}, up at {:?}): {:#?}",
            down_at.as_ref().map(|d| d.0 - started),
            up_at.map(|t| t - started),
            p.status
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let finished = started.elapsed();
    let (down, phases_then) = down_at.expect("slurmctld was never stopped mid-campaign");
    let up = up_at.expect("slurmctld was never started again");

    let (why, message) =
        said_during_outage.expect("no Degraded condition while slurmctld was down");
    eprintln!(
        "slurmctld stopped {:?} into the campaign (phases then: {phases_then}) for {:?}: \
         campaign complete after {finished:?}, at most {most_out} node(s) out for maintenance \
         ({ALLOWED} allowed; up to {most_unavailable} out of service by Slurm's own account \
         while slurmctld recovered), {samples} one-second samples; status during the outage: \
         Degraded/{why}: {message}",
        down - started,
        up - down
    );
    assert!(
        most_out <= ALLOWED,
        "{most_out} nodes out for maintenance at once, {ALLOWED} allowed"
    );
    assert_eq!(why, reason::SLURM_UNREACHABLE, "{message}");
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
        assert_eq!(
            s.attempts, 1,
            "{} rebooted more than once",
            nm.spec.node_name
        );
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
        assert!(n.state.in_service(), "{} in service: {}", n.name, n.state);
    }
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
