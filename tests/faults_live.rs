//! Faults in the real components mid-campaign: the controller binary runs a rolling-reboot
//! campaign on the live Slurm 22.05 cluster through the agent binary, on the real API server
//! (`SLURM_MAINT_E2E_KUBECONFIG`), and part-way
//! - slurmctld is stopped and started again (its saved state kept);
//! - the controller's agent is stopped for 90 s and started again on its port;
//! - kube-apiserver is stopped and started again (etcd kept), then etcd is stopped
//!   briefly under it (tests/k8s/apiserver.sh stop/start; skipped on another cluster);
//! - a node hangs on its reboot (tests/slurm/fake-reboot.sh's `hang` knob).
//!
//! Each campaign must complete (the hung node `Failed`), never with more nodes out than
//! allowed (Slurm sampled every second), no node rebooted twice, a non-preemptable job
//! ending by itself, and the policy's status must say what happened while it happened
//! (as far as an API server that is down lets it be written). The scenarios share the
//! partition and run one at a time. Runs when `SLURM_MAINT_LIVE=1` and a real API server
//! is given (tests/run.sh's live phase on 22.05).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use slurm_maint::api::condition::ConditionStatus;
use slurm_maint::api::{MaintenancePolicy, NodeMaintenance, NodeMaintenancePhase as Phase};
use slurm_maint::apiserver::harness::TestCluster;
use slurm_maint::plan::status::{condition_type, reason};
use slurm_maint::slurm::client::SlurmClient;

const TOKEN: &str = "faults-live-token";
const ALLOWED: usize = 1;
const OUTAGE: Duration = Duration::from_secs(30);

/// The scenarios share the cluster's partition (and its budget): one at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let _turn = TURN.lock().await;
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

/// One campaign of a scenario: the controller binary with its own agent (which a scenario
/// may stop), a second agent through which the test watches Slurm (sampled every second
/// for the budget), and a policy over `nodes` with a non-preemptable job on the last one.
struct Scenario {
    name: &'static str,
    c: TestCluster,
    policies: Api<MaintenancePolicy>,
    works: Api<NodeMaintenance>,
    watch: slurm_maint::slurm::client::AgentClient,
    _watch_agent: common::AgentProc,
    agent: Option<common::AgentProc>,
    agent_port: u16,
    _controller: common::Proc,
    metrics_port: u16,
    boot_before: std::collections::BTreeMap<String, Option<Timestamp>>,
    campaign: Timestamp,
    job: u64,
    sampler: Sampler,
    allowed: usize,
    most_out: usize,
    samples: usize,
    started: Instant,
}

/// Slurm sampled every second in a task of its own (so an API server outage, which slows
/// the test's reads, does not slow it): the most nodes out for us at once, and every state
/// of the job seen (slurmctld forgets a job 30 s after its end).
struct Sampler {
    seen: Arc<Mutex<Sampled>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Sampled {
    most_out: usize,
    samples: usize,
    job_states: std::collections::BTreeSet<String>,
}

impl Sampler {
    fn start(slurm: slurm_maint::slurm::client::AgentClient, job: u64) -> Self {
        let seen = Arc::new(Mutex::new(Sampled::default()));
        let into = seen.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let snap = slurm.snapshot("batch").await;
                let state = job_state(job);
                let mut s = into.lock().unwrap();
                if let Ok(snap) = snap {
                    let out = snap.nodes.iter().filter(|n| out_for_us(n)).count();
                    s.most_out = s.most_out.max(out);
                    s.samples += 1;
                }
                s.job_states.extend(state);
            }
        });
        Self { seen, task }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Seen = (MaintenancePolicy, Vec<NodeMaintenance>);

impl Scenario {
    async fn start(name: &'static str, nodes: &[&str], allowed: usize, reboots: Value) -> Self {
        let (watch_agent, watch_url, watch) = common::start_agent(TOKEN).await;
        let boot_before = common::resume_and_boot_times(&watch, nodes, "batch").await;
        let job = submit_job(nodes[nodes.len() - 1]);
        let sampler = Sampler::start(
            slurm_maint::slurm::client::AgentClient::new(
                &watch_url,
                TOKEN,
                Duration::from_secs(30),
            )
            .unwrap(),
            job,
        );
        let (agent, url, _) = common::start_agent(TOKEN).await;
        let agent_port = agent.port;
        let campaign = Timestamp::now();
        let c = TestCluster::start(name).await;
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
        let metrics_port = common::free_port();
        let controller = common::Proc(
            Command::new(env!("CARGO_BIN_EXE_slurm-maint"))
                .args(["controller", "--namespace", &c.namespace])
                .args(["--lease-namespace", &c.namespace, "--identity", name])
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
            "metadata": {"name": name},
            "spec": {
                "partition": "batch",
                "nodelist": nodes.join(","),
                "agent": {"url": url, "tokenSecretRef": {"name": "agent-token"}},
                "budget": {"maxUnavailable": allowed, "reservationLeadTime": "0s"},
                "reservations": {"enabled": true, "duration": "1h"},
                "reboots": reboots,
                "interval": "5s",
                "campaign": {"rebootRequiredBefore": campaign.to_string()},
            }
        }))
        .unwrap();
        let policies: Api<MaintenancePolicy> = Api::namespaced(c.client.clone(), &c.namespace);
        policies
            .patch(
                name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&policy),
            )
            .await
            .unwrap();
        Self {
            name,
            works: Api::namespaced(c.client.clone(), &c.namespace),
            policies,
            c,
            watch,
            _watch_agent: watch_agent,
            agent: Some(agent),
            agent_port,
            _controller: controller,
            metrics_port,
            boot_before,
            campaign,
            job,
            sampler,
            allowed,
            most_out: 0,
            samples: 0,
            started: Instant::now(),
        }
    }

    /// One sample: the policy and its work (`None` while the API server does not answer);
    /// the sampler's figures so far.
    async fn sample(&mut self) -> Option<Seen> {
        {
            let seen = self.sampler.seen.lock().unwrap();
            (self.most_out, self.samples) = (seen.most_out, seen.samples);
        }
        // Bounded: with etcd gone a request waits for it (a sample must not outlast it).
        let t = Duration::from_secs(5);
        let p = tokio::time::timeout(t, self.policies.get(self.name))
            .await
            .ok()?
            .ok()?;
        let w = tokio::time::timeout(t, self.works.list(&ListParams::default()))
            .await
            .ok()?
            .ok()?
            .items;
        Some((p, w))
    }

    /// The controller's failed passes so far, by error (its metrics).
    async fn pass_errors(&self) -> std::collections::BTreeMap<String, f64> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let Ok(r) = reqwest::get(&url).await else {
            return Default::default();
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .filter_map(|l| l.strip_prefix("slurm_maint_reconcile_errors_total{"))
            .filter(|l| l.contains("controller=\"policy\""))
            .filter_map(|l| {
                let (labels, value) = l.split_once("} ")?;
                let error = labels.split("error=\"").nth(1)?.split('"').next()?;
                Some((error.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// Sample every second until `done` holds, or panic after `secs` with `what`.
    async fn until<F>(&mut self, secs: u64, what: &str, mut done: F) -> Seen
    where
        F: FnMut(&MaintenancePolicy, &[NodeMaintenance]) -> bool,
    {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = None;
        loop {
            if let Some((p, w)) = self.sample().await {
                if done(&p, &w) {
                    return (p, w);
                }
                last = Some(p);
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out after {secs} s ({:?} in): {what}\nlast status: {:#?}",
                self.name,
                self.started.elapsed(),
                last.and_then(|p| p.status)
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Sample every second for `d` (the length of an outage), calling `each` with what
    /// the API server said, if it answered.
    async fn for_a_while<F>(&mut self, d: Duration, mut each: F)
    where
        F: FnMut(Option<&Seen>),
    {
        let end = Instant::now() + d;
        while Instant::now() < end {
            let seen = self.sample().await;
            each(seen.as_ref());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Until the campaign is complete.
    async fn complete(&mut self, secs: u64) -> Seen {
        self.until(secs, "the campaign completes", |p, _| {
            condition(p, condition_type::PROGRESSING).map(|c| c.reason)
                == Some(reason::CAMPAIGN_COMPLETE.to_string())
        })
        .await
    }

    /// What every scenario ends with: never more out than allowed, each node's work
    /// `Completed` (rebooted once: a new BootTime, in service) or, if in `failed`,
    /// `Failed` after one attempt; no reservation of ours left on a completed node; the
    /// job ended by itself.
    async fn check_end(&self, works: &[NodeMaintenance], failed: &[&str]) {
        let most_out = self.sampler.seen.lock().unwrap().most_out;
        assert!(
            most_out <= self.allowed,
            "{}: {most_out} nodes out for maintenance at once, {} allowed",
            self.name,
            self.allowed
        );
        let after = self.watch.snapshot("batch").await.unwrap();
        assert_eq!(works.len(), 3, "{:?}", phases_of(works));
        for nm in works {
            let s = nm.status.clone().unwrap();
            let node = nm.spec.node_name.as_str();
            assert_eq!(s.attempts, 1, "{node} rebooted more than once: {s:?}");
            if failed.contains(&node) {
                assert_eq!(s.phase, Phase::Failed, "{node}: {s:?}");
                continue;
            }
            assert_eq!(s.phase, Phase::Completed, "{node}: {s:?}");
            let n = after.nodes.iter().find(|n| n.name == node).unwrap();
            assert!(
                n.boot_time > self.boot_before[node] && n.boot_time.unwrap() > self.campaign,
                "{node} has no new BootTime"
            );
            assert!(n.state.in_service(), "{node} in service: {}", n.state);
            assert!(
                !after
                    .reservations
                    .iter()
                    .any(|r| r.name.starts_with("slurm-maint") && r.name.contains(node)),
                "{:?}",
                after.reservations
            );
        }
        let ended = ["COMPLETING", "COMPLETED"];
        let states = &self.sampler.seen.lock().unwrap().job_states;
        assert!(
            states.iter().any(|s| ended.contains(&s.as_str()))
                && states
                    .iter()
                    .all(|s| ended.contains(&s.as_str()) || s == "RUNNING" || s == "PENDING"),
            "the non-preemptable job {} did not end by itself: states seen {states:?}",
            self.job,
        );
    }
}

fn condition(p: &MaintenancePolicy, ty: &str) -> Option<slurm_maint::api::condition::Condition> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == ty)
        .cloned()
}

fn phases_of(w: &[NodeMaintenance]) -> Vec<(String, Phase)> {
    w.iter()
        .map(|w| {
            (
                w.spec.node_name.clone(),
                w.status.as_ref().map_or(Phase::Pending, |s| s.phase),
            )
        })
        .collect()
}

/// Mid-campaign: a node rebooting or done, and not all done.
fn mid_campaign(p: &MaintenancePolicy) -> bool {
    p.status.as_ref().is_some_and(|st| {
        st.phases.rebooting + st.phases.recovering + st.phases.completed > 0
            && (st.phases.completed as usize) < st.nodes_needing_work as usize
    })
}

/// A non-preemptable 40 s job on `node` (1 min limit): its node's reservation starts at
/// its end, and it must end by itself.
fn submit_job(node: &str) -> u64 {
    let out = Command::new("sbatch")
        .args(["--parsable", "-p", "batch", "-w", node, "-t", "1"])
        .args(["-o", "/dev/null", "--wrap", "sleep 40"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sbatch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// `JobState` of a job slurmctld still knows (it keeps finished ones for MinJobAge).
fn job_state(id: u64) -> Option<String> {
    let out = Command::new("scontrol")
        .args(["show", "job", &id.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix("JobState="))
        .map(String::from)
}

/// The agent the controller uses is stopped mid-campaign for `AGENT_OUTAGE` (the issue's
/// 5 minutes scaled to 90 s: 18 intervals of 5 s, so many passes meet it) and started
/// again on its port. Meanwhile the policy says Degraded/SlurmUnreachable, pass after pass.
const AGENT_OUTAGE: Duration = Duration::from_secs(90);

#[tokio::test]
async fn a_campaign_survives_its_agent_down_for_many_passes() {
    if !common::live() || std::env::var("SLURM_MAINT_E2E_KUBECONFIG").is_err() {
        eprintln!("skipped: needs SLURM_MAINT_LIVE=1 and a real API server");
        return;
    }
    let _turn = TURN.lock().await;
    let mut s = Scenario::start(
        "agent-down",
        &["node1", "node2", "node3"],
        1,
        json!({"enabled": true, "timeout": "3m"}),
    )
    .await;
    let (p, w) = s.until(300, "mid-campaign", |p, _| mid_campaign(p)).await;
    let then = format!("{:?}", phases_of(&w));
    let at = s.started.elapsed();
    let last_before = p.status.and_then(|s| s.last_pass);
    drop(s.agent.take());
    let mut passes = std::collections::BTreeSet::new();
    let mut said = None;
    let mut moved = vec![];
    s.for_a_while(AGENT_OUTAGE, |seen| {
        let Some((p, w)) = seen else { return };
        if let Some(d) =
            condition(p, condition_type::DEGRADED).filter(|d| d.status == ConditionStatus::True)
        {
            said.get_or_insert((d.reason.clone(), d.message.clone()));
            if let Some(t) = p.status.as_ref().and_then(|s| s.last_pass) {
                passes.insert(t);
            }
        }
        moved.push(phases_of(w));
    })
    .await;
    s.agent = Some(common::restart_agent_on(TOKEN, s.agent_port).await);
    let (why, message) = said.expect("no Degraded condition while the agent was down");
    let (done, works) = s.complete(600).await;
    eprintln!(
        "agent down {AGENT_OUTAGE:?} from {at:?} into the campaign (work then: {then}): \
         {} passes said Degraded/{why}: {message}; campaign complete after {:?}; at most {} \
         node(s) out ({} allowed) in {} one-second samples",
        passes.len(),
        s.started.elapsed(),
        s.most_out,
        s.allowed,
        s.samples
    );
    assert_eq!(why, reason::SLURM_UNREACHABLE, "{message}");
    assert!(
        passes.len() >= 10,
        "only {} passes met the outage (last before it: {last_before:?})",
        passes.len()
    );
    // Without Slurm no work moved: every phase seen during the outage was the one before.
    assert!(
        moved.windows(2).all(|m| m[0] == m[1]),
        "work moved while the agent was down: {moved:?}"
    );
    let st = done.status.clone().unwrap();
    assert_eq!((st.phases.completed, st.nodes_needing_work), (3, 3));
    s.check_end(&works, &[]).await;
    s.c.cleanup().await;
}

/// tests/k8s/apiserver.sh ARGS, awaited (the sampler goes on meanwhile).
async fn apiserver_sh(args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("bash")
        .arg(APISERVER_SH)
        .args(args)
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

const APISERVER_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/k8s/apiserver.sh");

/// Restarts a daemon a failing test left stopped.
struct StartOnDrop(&'static str, bool);

impl Drop for StartOnDrop {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("bash")
                .args([APISERVER_SH, "start", self.0])
                .status();
        }
    }
}

const APISERVER_OUTAGE: Duration = Duration::from_secs(30);
const ETCD_OUTAGE: Duration = Duration::from_secs(15);

/// kube-apiserver stopped mid-campaign and started again (etcd kept), then etcd stopped
/// briefly under the running API server. Status cannot be written while either is down;
/// once they are back the passes resume from the API server's state (the work's
/// resourceVersions guard each write), and nothing is done twice.
#[tokio::test]
async fn a_campaign_survives_the_api_server_restarted_and_etcd_briefly_gone() {
    if !common::live() || std::env::var("SLURM_MAINT_E2E_KUBECONFIG").is_err() {
        eprintln!("skipped: needs SLURM_MAINT_LIVE=1 and a real API server");
        return;
    }
    match apiserver_sh(&["status"]).await {
        Ok(s) if s.contains("kube-apiserver:          running") => {}
        other => {
            eprintln!(
                "skipped: the API server is not one tests/k8s/apiserver.sh runs here: {other:?}"
            );
            return;
        }
    }
    let _turn = TURN.lock().await;
    let mut s = Scenario::start(
        "apiserver",
        &["node1", "node2", "node3"],
        1,
        json!({"enabled": true, "timeout": "3m"}),
    )
    .await;
    let (_, w) = s.until(300, "mid-campaign", |p, _| mid_campaign(p)).await;
    let then = format!("{:?}", phases_of(&w));
    let at = s.started.elapsed();
    let errors_before = s.pass_errors().await;
    let mut guard = StartOnDrop("kube-apiserver", true);
    apiserver_sh(&["stop", "kube-apiserver"]).await.unwrap();
    let mut answered = 0;
    s.for_a_while(APISERVER_OUTAGE, |seen| {
        answered += usize::from(seen.is_some())
    })
    .await;
    apiserver_sh(&["start", "kube-apiserver"]).await.unwrap();
    guard.1 = false;
    let back = Timestamp::now();
    // Passes resume: a pass after the restart, not degraded.
    let (p, _) = s
        .until(120, "a pass after the API server's restart", |p, _| {
            p.status
                .as_ref()
                .and_then(|s| s.last_pass)
                .is_some_and(|t| t > back)
        })
        .await;
    let after_apiserver = format!(
        "{:?}",
        condition(&p, condition_type::PROGRESSING).map(|c| c.message)
    );
    let at_etcd = s.started.elapsed();
    let mut guard = StartOnDrop("etcd", true);
    apiserver_sh(&["stop", "etcd"]).await.unwrap();
    let mut answered_etcd = 0;
    s.for_a_while(ETCD_OUTAGE, |seen| {
        answered_etcd += usize::from(seen.is_some())
    })
    .await;
    apiserver_sh(&["start", "etcd"]).await.unwrap();
    guard.1 = false;
    let back = Timestamp::now();
    s.until(120, "a pass after etcd is back", |p, _| {
        p.status
            .as_ref()
            .and_then(|s| s.last_pass)
            .is_some_and(|t| t > back)
    })
    .await;
    let errors_after = s.pass_errors().await;
    let (done, works) = s.complete(600).await;
    eprintln!(
        "kube-apiserver stopped {at:?} into the campaign (work then: {then}) for \
         {APISERVER_OUTAGE:?} ({answered} reads answered meanwhile), passes again after it: \
         {after_apiserver}; etcd stopped at {at_etcd:?} for {ETCD_OUTAGE:?} ({answered_etcd} \
         reads answered); failed passes by error (controller metrics) before the outages \
         {errors_before:?}, after {errors_after:?}; campaign complete after {:?}; at most {} \
         node(s) out ({} allowed) in {} one-second samples",
        s.started.elapsed(),
        s.most_out,
        s.allowed,
        s.samples
    );
    assert_eq!(answered, 0, "the API server answered while stopped");
    let st = done.status.clone().unwrap();
    assert_eq!((st.phases.completed, st.nodes_needing_work), (3, 3));
    s.check_end(&works, &[]).await;
    s.c.cleanup().await;
}

/// Brings a hung node back (its knob removed, slurmd started with a fresh boot, resumed),
/// however the test ends.
struct Unhang(PathBuf, &'static str);

impl Drop for Unhang {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let conf = std::env::var("SLURM_CONF").unwrap_or_default();
        let _ = Command::new("slurmd")
            .args(["-N", self.1, "-f", &conf, "-b"])
            .env("SLURM_CONF", &conf)
            .status();
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(300));
            let _ = Command::new("scontrol")
                .args(["update", &format!("NodeName={}", self.1), "State=RESUME"])
                .output();
            let out = Command::new("sinfo")
                .args(["-h", "-N", "-n", self.1, "-o", "%T"])
                .output();
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle") {
                return;
            }
        }
    }
}

/// node1 hangs on its reboot (tests/slurm/fake-reboot.sh's `hang` knob: its slurmd is
/// stopped and never started again). With one attempt, its work fails at the 30 s
/// reboot timeout: Failed, kept drained, the policy Ready/NodesFailed; the node stays in
/// the budget (down), and the other two nodes complete in the slot that is left.
#[tokio::test]
async fn a_node_that_hangs_on_reboot_fails_at_the_timeout() {
    if !common::live() || std::env::var("SLURM_MAINT_E2E_KUBECONFIG").is_err() {
        eprintln!("skipped: needs SLURM_MAINT_LIVE=1 and a real API server");
        return;
    }
    let _turn = TURN.lock().await;
    let dir = PathBuf::from(std::env::var("SLURM_TEST_DIR").expect("SLURM_TEST_DIR"));
    let knob = dir.join("hang").join("node1");
    std::fs::create_dir_all(knob.parent().unwrap()).unwrap();
    std::fs::write(&knob, "").unwrap();
    let _unhang = Unhang(knob, "node1");
    let mut s = Scenario::start(
        "hang",
        &["node1", "node2", "node3"],
        2,
        json!({"enabled": true, "timeout": "30s", "maxAttempts": 1}),
    )
    .await;
    let (p, w) = s
        .until(300, "node1's work Failed", |_, w| {
            phases_of(w).contains(&("node1".into(), Phase::Failed))
        })
        .await;
    let nm = w.iter().find(|w| w.spec.node_name == "node1").unwrap();
    let st = nm.status.clone().unwrap();
    let failed = st
        .conditions
        .iter()
        .find(|c| c.r#type == "Failed")
        .cloned()
        .unwrap();
    let at = |ph: Phase| {
        st.transitions
            .iter()
            .rfind(|t| t.phase == ph)
            .map(|t| t.time)
    };
    let failed_after = at(Phase::Rebooting)
        .zip(at(Phase::Failed))
        .map(|(a, b)| b.duration_since(a));
    let budget_then = p.status.as_ref().and_then(|s| s.budget.clone());
    let (done, works) = s.complete(600).await;
    let st = done.status.clone().unwrap();
    let ready = condition(&done, condition_type::READY).unwrap();
    let budget = st.budget.clone().unwrap();
    eprintln!(
        "node1 hung on its reboot: Failed {failed_after:?} after the reboot was issued \
         ({}: {}); budget then {budget_then:?}; campaign complete after {:?}: {} completed, {} \
         failed, Ready/{}: {}; budget at the end {budget:?}; at most {} node(s) out ({} \
         allowed) in {} one-second samples",
        failed.reason,
        failed.message,
        s.started.elapsed(),
        st.phases.completed,
        st.phases.failed,
        ready.reason,
        ready.message,
        s.most_out,
        s.allowed,
        s.samples
    );
    assert_eq!(failed.status, ConditionStatus::True);
    assert!(
        failed
            .message
            .contains("not back in service PT30S after the reboot"),
        "{}",
        failed.message
    );
    assert_eq!((st.phases.completed, st.phases.failed), (2, 1));
    assert_eq!(ready.reason, reason::NODES_FAILED);
    // The failed node is kept drained: it stays in the budget, as down.
    assert!(budget.down >= 1 && budget.combined >= 1, "{budget:?}");
    s.check_end(&works, &["node1"]).await;
    s.c.cleanup().await;
}
