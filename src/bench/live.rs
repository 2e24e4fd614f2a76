//! `slurm-maint bench live`: a campaign on the real test cluster (`tests/slurm/cluster.sh
//! up`, or a chroot's env from `tests/slurm/chroot.sh env`), with this binary as the
//! agent and the controller and a Kubernetes API server (embedded, or the cluster
//! `SLURM_MAINT_E2E_KUBECONFIG` names), against the exact optimum of the same trace.
//!
//! The trace (the real-clock issue's): node1 and node2 run 60 s jobs with 2-minute
//! limits, node3 a preemptable 600 s job with an 11-minute limit, node4 is idle; every
//! node needs a reboot, one may be out at a time, the policy's interval is 10 s. The
//! 6-node variant adds node5 (a 180 s job, 4-minute limit) and node6 (idle), two out at
//! a time. `--scale` shortens the jobs (limits stay whole minutes, as Slurm keeps them).
//!
//! The optimum: each node's release is when its job really ended (0 when idle, or when
//! its job is preemptable and may be ended), each node takes the shortest reboot the run
//! saw (reboot issued to completed), and earliest-release-first list scheduling on the
//! budget's slots is optimal for equal lengths ([`super::optimum`]).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::Table;
use super::optimum::{Job, erf_makespan};
use crate::api::node_maintenance::NodeMaintenancePhase as Phase;
use crate::api::{MaintenancePolicy, NodeMaintenance};
use crate::apiserver::harness::TestCluster;
use crate::plan::status::reason;
use crate::slurm::client::{AgentClient, SlurmClient};

const TOKEN: &str = "bench-live-token";

/// One node's part of the trace.
#[derive(Clone, Copy, Debug)]
struct Load {
    node: &'static str,
    /// Seconds the job runs (before `--scale`), `None` when the node is idle.
    run: Option<f64>,
    /// Its time limit in minutes (before `--scale`).
    limit_mins: u32,
    preemptable: bool,
}

fn trace(nodes: usize) -> (Vec<Load>, usize) {
    let job = |node, run, limit_mins, preemptable| Load {
        node,
        run: Some(run),
        limit_mins,
        preemptable,
    };
    let idle = |node| Load {
        node,
        run: None,
        limit_mins: 0,
        preemptable: false,
    };
    let mut t = vec![
        job("node1", 60.0, 2, false),
        job("node2", 60.0, 2, false),
        job("node3", 600.0, 11, true),
        idle("node4"),
    ];
    if nodes <= 4 {
        return (t, 1);
    }
    t.push(job("node5", 180.0, 4, false));
    t.push(idle("node6"));
    (t, 2)
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if !out.status.success() {
        return Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The agent as the live tests run it: this binary, or it through
/// `$SLURM_MAINT_AGENT_WRAPPER` (inside a Slurm chroot).
fn spawn_agent(port: u16) -> Result<Proc, String> {
    let bin = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = match std::env::var_os("SLURM_MAINT_AGENT_WRAPPER").filter(|w| !w.is_empty()) {
        Some(w) => {
            let mut c = Command::new(w);
            c.arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    cmd.args(["agent", "--listen", &format!("127.0.0.1:{port}")])
        .env("SLURM_MAINT_AGENT_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn()
        .map(Proc)
        .map_err(|e| format!("cannot run the agent: {e}"))
}

/// What one run measured.
struct Measured {
    makespan: f64,
    optimum: f64,
    reboot: f64,
    max_out: usize,
    allowed: usize,
    passes: u64,
}

/// Run the trace of `nodes` nodes once per termination setting, and the table.
pub async fn report(nodes: usize, scale: f64) -> Result<String, String> {
    let port = free_port()?;
    let _agent = spawn_agent(port)?;
    let url = format!("http://127.0.0.1:{port}");
    let slurm =
        AgentClient::new(&url, TOKEN, Duration::from_secs(30)).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while slurm.snapshot("batch").await.is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "the agent on {url} does not answer (is a test cluster up?)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut t = Table::new(&[
        "trace",
        "terminate",
        "ours s",
        "optimum s",
        "over s",
        "ratio",
        "reboot s",
        "max out",
        "allowed",
        "passes",
    ]);
    for terminate in [false, true] {
        let m = run_once(&slurm, &url, nodes, scale, terminate).await?;
        t.row(vec![
            format!("{nodes} nodes ×{scale}"),
            terminate.to_string(),
            format!("{:.1}", m.makespan),
            format!("{:.1}", m.optimum),
            format!("{:+.1}", m.makespan - m.optimum),
            format!("{:.3}", m.makespan / m.optimum.max(1.0)),
            format!("{:.1}", m.reboot),
            m.max_out.to_string(),
            m.allowed.to_string(),
            m.passes.to_string(),
        ]);
    }
    Ok(t.render())
}

async fn run_once(
    slurm: &AgentClient,
    url: &str,
    nodes: usize,
    scale: f64,
    terminate: bool,
) -> Result<Measured, String> {
    let (loads, allowed) = trace(nodes);
    let names: Vec<&str> = loads.iter().map(|l| l.node).collect();
    let list = format!("node[1-{}]", loads.len());
    // A clean start: nothing of an earlier run left on the nodes, and no reservation of
    // ours (this bench's or another test's) holding the partition's budget.
    let _ = sh(&["scancel", "-w", &names.join(",")]);
    for r in slurm
        .snapshot("batch")
        .await
        .map_err(|e| e.to_string())?
        .reservations
        .iter()
        .filter(|r| r.name.starts_with("slurm-maint"))
    {
        eprintln!(
            "bench live: deleting reservation {} left by an earlier run",
            r.name
        );
        sh(&["scontrol", "delete", &format!("ReservationName={}", r.name)])?;
    }
    let _ = sh(&[
        "scontrol",
        "update",
        &format!("NodeName={list}"),
        "State=RESUME",
    ]);
    wait_for(slurm, 60, "the nodes idle and in service", |s| {
        names.iter().all(|n| {
            s.nodes
                .iter()
                .any(|x| x.name == *n && x.state.in_service() && !x.state.has("MAINTENANCE"))
        }) && !s
            .jobs
            .iter()
            .any(|j| j.nodes.iter().any(|n| names.contains(&n.as_str())))
    })
    .await?;
    let mut jobs: BTreeMap<u64, &'static str> = BTreeMap::new();
    for l in &loads {
        let Some(run) = l.run else { continue };
        let secs = (run * scale).round().max(1.0) as u64;
        let limit = ((l.limit_mins as f64 * scale).ceil() as u32).max(1);
        let part = if l.preemptable { "scavenger" } else { "batch" };
        let id = sh(&[
            "sbatch",
            "--parsable",
            "-o",
            "/dev/null",
            "-p",
            part,
            "-w",
            l.node,
            "-t",
            &limit.to_string(),
            "--wrap",
            &format!("sleep {secs}"),
        ])?;
        let id: u64 = id
            .trim()
            .split(';')
            .next()
            .unwrap_or("")
            .parse()
            .map_err(|e| format!("sbatch said {id:?}: {e}"))?;
        jobs.insert(id, l.node);
    }
    wait_for(slurm, 60, "the trace's jobs running", |s| {
        jobs.keys()
            .all(|id| s.jobs.iter().any(|j| j.id == *id && j.state == "RUNNING"))
    })
    .await?;

    let c = TestCluster::start("bench-live").await;
    let kubeconfig = kubeconfig(&c).await?;
    let secret = serde_json::from_value(json!({
        "metadata": {"name": "agent-token"}, "stringData": {"token": TOKEN}
    }))
    .map_err(|e| e.to_string())?;
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(c.client.clone(), &c.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .map_err(|e| e.to_string())?;
    let metrics_port = free_port()?;
    let bin = std::env::current_exe().map_err(|e| e.to_string())?;
    let _controller = Proc(
        Command::new(bin)
            .args(["controller", "--namespace", &c.namespace])
            .args(["--lease-namespace", &c.namespace, "--identity", "bench-0"])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run the controller: {e}"))?,
    );
    let t0 = Timestamp::now();
    let policy: MaintenancePolicy = serde_json::from_value(json!({
        "apiVersion": "slurm-maint.io/v1alpha1",
        "kind": "MaintenancePolicy",
        "metadata": {"name": "bench"},
        "spec": {
            "partition": "batch",
            "nodelist": list,
            "agent": {"url": url, "tokenSecretRef": {"name": "agent-token"}},
            "budget": {"maxUnavailable": allowed},
            "reservations": {"enabled": true, "duration": "1h"},
            "reboots": {"enabled": true, "timeout": "2m"},
            "preemption": {"terminatePreemptableJobs": terminate},
            "interval": "10s",
            "campaign": {"rebootRequiredBefore": t0.to_string()},
        }
    }))
    .map_err(|e| e.to_string())?;
    let policies: Api<MaintenancePolicy> = Api::namespaced(c.client.clone(), &c.namespace);
    policies
        .patch(
            "bench",
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&policy),
        )
        .await
        .map_err(|e| e.to_string())?;

    // Every second: nodes out, jobs ended, the campaign done.
    let limit = Duration::from_secs(120 + (900.0 * scale) as u64 * 2);
    let started = Instant::now();
    let mut max_out = 0;
    let mut ended: BTreeMap<&str, Timestamp> = BTreeMap::new();
    loop {
        let snap = slurm.snapshot("batch").await.map_err(|e| e.to_string())?;
        let out = snap
            .nodes
            .iter()
            .filter(|n| names.contains(&n.name.as_str()))
            .filter(|n| !n.state.in_service() || n.state.has("MAINTENANCE"))
            .count();
        max_out = max_out.max(out);
        for (id, node) in &jobs {
            if !snap.jobs.iter().any(|j| j.id == *id && j.is_active()) {
                ended.entry(node).or_insert_with(Timestamp::now);
            }
        }
        let p = policies.get("bench").await.map_err(|e| e.to_string())?;
        let done = p.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.r#type == "Progressing" && c.reason == reason::CAMPAIGN_COMPLETE)
        });
        if done {
            break;
        }
        if started.elapsed() > limit {
            return Err(format!("campaign not done in {limit:?}: {:#?}", p.status));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let items = Api::<NodeMaintenance>::namespaced(c.client.clone(), &c.namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    let passes = reconciles(metrics_port).await;
    c.cleanup().await;

    let mut end = t0;
    let mut reboot = f64::MAX;
    for nm in &items {
        let st = nm.status.clone().unwrap_or_default();
        let at = |ph: Phase| {
            st.transitions
                .iter()
                .rev()
                .find(|t| t.phase == ph)
                .map(|t| t.time)
        };
        let (Some(issued), Some(done)) = (at(Phase::Rebooting), at(Phase::Completed)) else {
            return Err(format!("{} did not complete: {st:?}", nm.spec.node_name));
        };
        end = end.max(done);
        reboot = reboot.min(done.duration_since(issued).as_secs_f64());
        let steps: Vec<String> = st
            .transitions
            .iter()
            .map(|t| {
                format!(
                    "{:?} {:+.0}",
                    t.phase,
                    t.time.duration_since(t0).as_secs_f64()
                )
            })
            .collect();
        let job_end = ended
            .get(nm.spec.node_name.as_str())
            .map(|t| t.duration_since(t0).as_secs_f64());
        eprintln!(
            "bench live: terminate={terminate} {} (job ended {:?} s): {}",
            nm.spec.node_name,
            job_end.map(|x| x.round()),
            steps.join(", ")
        );
    }
    let release = |l: &Load| -> i64 {
        if l.run.is_none() || (l.preemptable && terminate) {
            return 0;
        }
        ended
            .get(l.node)
            .map_or(0, |t| t.duration_since(t0).as_secs().max(0))
    };
    let length = reboot.ceil() as i64;
    let optimum = erf_makespan(
        &loads
            .iter()
            .map(|l| Job {
                release: release(l),
                length,
            })
            .collect::<Vec<_>>(),
        allowed,
    ) as f64;
    Ok(Measured {
        makespan: end.duration_since(t0).as_secs_f64(),
        optimum,
        reboot,
        max_out,
        allowed,
        passes,
    })
}

async fn kubeconfig(c: &TestCluster) -> Result<std::path::PathBuf, String> {
    match c.embedded() {
        Some(server) => {
            let (addr, task) = server
                .serve("127.0.0.1:0".parse().expect("address"))
                .await
                .map_err(|e| e.to_string())?;
            std::mem::forget(task);
            let path = std::env::temp_dir().join(format!("{}.kubeconfig", c.namespace));
            std::fs::write(&path, crate::apiserver::ApiServer::kubeconfig_yaml(addr))
                .map_err(|e| e.to_string())?;
            Ok(path)
        }
        None => Ok(std::env::var("SLURM_MAINT_E2E_KUBECONFIG")
            .map_err(|e| e.to_string())?
            .into()),
    }
}

/// Passes the controller ran (its reconciles of policies), from its metrics.
async fn reconciles(port: u16) -> u64 {
    let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("slurm_maint_reconciles_total{") && l.contains("controller=\"policy\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn wait_for(
    slurm: &AgentClient,
    secs: u64,
    what: &str,
    ok: impl Fn(&crate::agent::api::PartitionSnapshot) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(s) = slurm.snapshot("batch").await
            && ok(&s)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not {what} within {secs} s"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_are_the_issues() {
        let (t, allowed) = trace(4);
        assert_eq!((t.len(), allowed), (4, 1));
        assert!(t[2].preemptable && t[3].run.is_none());
        let (t, allowed) = trace(6);
        assert_eq!((t.len(), allowed), (6, 2));
        // The optimum of the 4-node trace with reboots of 8 s, termination off: node4 at
        // 0, node1 and node2 when their jobs end at 60, node3 at 600.
        let jobs = [0, 60, 60, 600].map(|release| Job { release, length: 8 });
        assert_eq!(erf_makespan(&jobs, 1), 608);
    }
}
