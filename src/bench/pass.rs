//! The cost of one reconcile pass at the scale of the largest GPU clusters: 10 000 nodes,
//! 100 000 running jobs, ~1 000 NodeMaintenances in flight. A small timing harness (the
//! median of N runs); whole-process figures (memory, API requests) are reported apart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::Table;
use crate::api::node_maintenance::{NodeMaintenancePhase as Phase, Transition};
use crate::api::{
    MaintenanceAction, MaintenancePolicy, MaintenancePolicySpec, NodeMaintenance,
    NodeMaintenanceStatus,
};
use crate::plan::{self, Settings, Snapshot, Work};
use crate::sim::{SimCluster, SimConfig};
use crate::slurm::parse;

const NODES: usize = 10_000;
const JOBS: usize = 100_000;
const IN_FLIGHT: usize = 1_000;
const CACHED: usize = 20_000;

const NODE_LINE: &str = include_str!(
    "../../tests/fixtures/slurm-22.05/02-jobs-reservations-drain/scontrol-show-node.txt"
);
const NARROW: &str =
    include_str!("../../tests/fixtures/slurm-22.05/06-squeue-narrow/squeue-narrow.txt");
const RESV_LINES: &str = include_str!(
    "../../tests/fixtures/slurm-22.05/02-jobs-reservations-drain/scontrol-show-reservation.txt"
);
const PART_LINES: &str = include_str!(
    "../../tests/fixtures/slurm-22.05/02-jobs-reservations-drain/scontrol-show-partition.txt"
);
const SQUEUE: &str =
    include_str!("../../tests/fixtures/slurm-22.05/02-jobs-reservations-drain/squeue.json");

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

fn base() -> Timestamp {
    "2026-11-22T07:14:49Z".parse().expect("valid")
}

fn local(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC)
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

fn node_name(i: usize) -> String {
    format!("gpu{:05}", i + 1)
}

/// What the agent's commands print for the big partition, from real 22.05 records.
pub struct SlurmText {
    pub nodes: String,
    /// `squeue` in the agent's narrow format ([`parse::SQUEUE_FORMAT`]).
    pub jobs: String,
    /// `squeue --json`, which the agent used before.
    pub jobs_json: String,
    pub reservations: String,
    pub partitions: String,
}

/// Realistic output: every field Slurm prints, names and times varied.
pub fn generate() -> SlurmText {
    let t0 = base();
    let node_tpl = first_line(NODE_LINE);
    let mut nodes = String::with_capacity(NODES * (node_tpl.len() + 64));
    for i in 0..NODES {
        let name = node_name(i);
        let mut line = node_tpl
            .replacen("NodeName=node1 ", &format!("NodeName={name} "), 1)
            .replace("NodeHostName=localhost", &format!("NodeHostName={name}"))
            .replace(
                "BootTime=2026-11-22T05:12:42",
                &format!(
                    "BootTime={}",
                    local(t0 - SignedDuration::from_hours(1 + (i % 500) as i64))
                ),
            );
        if i % 50 == 0 {
            line = line.replace("State=MIXED", "State=MIXED+DRAIN");
            line.push_str(" Reason=ops: bad DIMM on slot 3 [root@2026-11-22T07:14:46]");
        }
        nodes.push_str(&line);
        nodes.push('\n');
    }
    // Job 1 of the fixture: RUNNING in batch on node1, 30 min limit, QOS (null).
    let narrow_tpl: Vec<&str> = NARROW
        .split("\u{1e}\n")
        .find(|r| r.starts_with("1\u{1f}"))
        .expect("job 1 in the fixture")
        .split('\u{1f}')
        .collect();
    let mut jobs_narrow = String::with_capacity(JOBS * 96);
    let squeue: Value = serde_json::from_str(SQUEUE).expect("fixture is JSON");
    let jtpl = squeue["jobs"][0].clone();
    let mut jobs = Vec::with_capacity(JOBS);
    for id in 0..JOBS {
        let node = node_name(id % NODES);
        let limit_min = [30u64, 120, 720, 1440, 2880][id % 5];
        let start = t0 - SignedDuration::from_mins((id % 600) as i64);
        let end = start + SignedDuration::from_mins(limit_min as i64);
        let part = if (id / NODES).is_multiple_of(5) {
            "scavenger"
        } else {
            "batch"
        };
        let mut f = narrow_tpl.clone();
        let (id_s, start_s, end_s) = ((id + 1).to_string(), local(start), local(end));
        let limit_s = match limit_min {
            m if m >= 1440 => format!("{}-{:02}:00:00", m / 1440, m / 60 % 24),
            m if m >= 60 => format!("{}:00:00", m / 60),
            m => format!("{m}:00"),
        };
        f[0] = &id_s;
        f[1] = part;
        f[3] = &node;
        f[4] = &start_s;
        f[5] = &end_s;
        f[6] = &limit_s;
        jobs_narrow.push_str(&f.join("\u{1f}"));
        jobs_narrow.push_str("\u{1e}\n");
        let mut j = jtpl.clone();
        j["job_id"] = json!(id + 1);
        j["nodes"] = json!(node);
        j["batch_host"] = json!(node);
        j["required_nodes"] = json!(node);
        j["job_resources"]["nodes"] = json!(node);
        j["partition"] = json!(part);
        j["time_limit"] = json!(limit_min);
        j["start_time"] = json!(start.as_second());
        j["end_time"] = json!(end.as_second());
        jobs.push(j);
    }
    let jobs_json = json!({"meta": squeue["meta"], "errors": [], "jobs": jobs}).to_string();
    let resv_tpl = first_line(RESV_LINES);
    let mut reservations = String::new();
    for i in 0..IN_FLIGHT {
        let name = node_name(i * 10);
        reservations.push_str(
            &resv_tpl
                .replace(
                    "ReservationName=maint_node6",
                    &format!("ReservationName=slurm-maint-{name}-c1795000000"),
                )
                .replace("Nodes=node6", &format!("Nodes={name}")),
        );
        reservations.push('\n');
    }
    let all = format!("gpu[00001-{NODES:05}]");
    let partitions = PART_LINES
        .lines()
        .map(|l| {
            l.replace("Nodes=node[1-6]", &format!("Nodes={all}"))
                .replace("TotalNodes=6", &format!("TotalNodes={NODES}"))
        })
        .collect::<Vec<_>>()
        .join("\n");
    SlurmText {
        nodes,
        jobs: jobs_narrow,
        jobs_json,
        reservations,
        partitions,
    }
}

/// Median wall time of `runs` calls.
fn median<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = vec![];
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let out = f();
        times.push(t.elapsed());
        last = Some(out);
    }
    times.sort();
    (times[times.len() / 2], last.expect("runs ≥ 1"))
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn spec() -> MaintenancePolicySpec {
    let mut spec: MaintenancePolicySpec = serde_json::from_value(json!({
        "partition": "batch",
        "agent": {"url": "http://agent", "tokenSecretRef": {"name": "t"}},
        "budget": {"maxUnavailablePercent": 10},
        "reservations": {"enabled": true},
        "reboots": {"enabled": true, "timeout": "20m"},
        "preemption": {"terminatePreemptableJobs": true},
    }))
    .expect("valid spec");
    spec.campaign.reboot_required_before = Some(base());
    spec
}

fn status(phase: Phase, now: Timestamp, node: &str) -> NodeMaintenanceStatus {
    let transitions = [
        Phase::Pending,
        Phase::Reserved,
        Phase::PendingReboot,
        Phase::Rebooting,
    ]
    .iter()
    .take_while(|p| **p != phase)
    .chain(std::iter::once(&phase))
    .map(|p| Transition {
        phase: *p,
        time: now,
        message: format!("{p} on {node}"),
    })
    .collect();
    NodeMaintenanceStatus {
        phase,
        phase_since: Some(now),
        attempts: u32::from(matches!(
            phase,
            Phase::Rebooting | Phase::Recovering | Phase::Completed
        )),
        transitions,
        reservation_name: Some(format!("slurm-maint-{node}-c1795000000")),
        reservation_start: Some(now + SignedDuration::from_hours(2)),
        ..Default::default()
    }
}

/// Every node needs work: 1 000 in flight, 4 000 done, the rest waiting.
fn works(now: Timestamp) -> Vec<Work> {
    let campaign = plan::campaign_id(base());
    (0..NODES)
        .map(|i| {
            let node = node_name(i);
            let phase = if i % 10 == 0 {
                [
                    Phase::Reserved,
                    Phase::PendingReboot,
                    Phase::Rebooting,
                    Phase::Recovering,
                ][(i / 10) % 4]
            } else if i < 5_000 {
                Phase::Completed
            } else {
                Phase::Pending
            };
            Work {
                name: plan::work_name("bench", &node, &campaign),
                node: node.clone(),
                action: MaintenanceAction::Reboot,
                campaign: Some(campaign.clone()),
                status: status(phase, now, &node),
                oci: None,
            }
        })
        .collect()
}

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resident memory added by `CACHED` NodeMaintenances in a kube-runtime reflector store,
/// MiB (before, after).
fn reflector_memory() -> (f64, f64) {
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    let before = rss_kib().unwrap_or(0);
    let mut writer: Writer<NodeMaintenance> = Writer::default();
    let reader = writer.as_reader();
    let now = base();
    let campaign = plan::campaign_id(base());
    for i in 0..CACHED {
        let node = node_name(i % NODES);
        let name = plan::work_name("bench", &format!("{node}-{}", i / NODES), &campaign);
        let phase = [
            Phase::Pending,
            Phase::Reserved,
            Phase::Rebooting,
            Phase::Completed,
        ][i % 4];
        let nm: NodeMaintenance = serde_json::from_value(json!({
            "apiVersion": "slurm-maint.io/v1alpha1",
            "kind": "NodeMaintenance",
            "metadata": {
                "name": name, "namespace": "slurm", "uid": format!("00000000-0000-0000-0000-{i:012}"),
                "resourceVersion": (i + 1000).to_string(), "generation": 1,
                "labels": {"slurm-maint.io/policy": "bench", "slurm-maint.io/node": node, "slurm-maint.io/campaign": campaign},
                "ownerReferences": [{"apiVersion": "slurm-maint.io/v1alpha1", "kind": "MaintenancePolicy", "name": "bench", "uid": "11111111-1111-1111-1111-111111111111", "controller": true}],
            },
            "spec": {"nodeName": node, "policy": "bench", "action": "Reboot", "requestedAt": now.to_string()},
            "status": status(phase, now, &node),
        }))
        .expect("valid NodeMaintenance");
        writer.apply_watcher_event(&Event::Apply(nm));
    }
    let after = rss_kib().unwrap_or(0);
    assert_eq!(reader.state().len(), CACHED);
    drop(writer);
    (before as f64 / 1024.0, after as f64 / 1024.0)
}

/// API requests of the real policy reconciler over a campaign on the simulator:
/// (passes, writes, reads, FSM transitions).
async fn api_writes(nodes: usize, passes: usize) -> Result<(usize, u64, u64, u64, String), String> {
    use kube::api::{Api, ListParams, PostParams};
    let server = crate::apiserver::ApiServer::with_crds(&crate::api::crds());
    let client = server.client();
    let sim = SimCluster::new(SimConfig {
        nodes,
        seed: 5,
        ..SimConfig::default()
    });
    let clock = sim.clone();
    let ctx = Arc::new(crate::controller::Context::new(
        client.clone(),
        Arc::new(crate::controller::FixedConnector(Arc::new(sim.clone()))),
        Arc::new(move || clock.now()),
        crate::controller::Pace::default(),
        crate::controller::Leadership::always(),
        "bench",
    ));
    let mut spec = spec();
    spec.campaign.reboot_required_before = Some(sim.now());
    let policy: MaintenancePolicy = serde_json::from_value(json!({
        "apiVersion": "slurm-maint.io/v1alpha1",
        "kind": "MaintenancePolicy",
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": spec,
    }))
    .map_err(|e| e.to_string())?;
    let policies: Api<MaintenancePolicy> = Api::namespaced(client.clone(), "default");
    let nms: Api<NodeMaintenance> = Api::namespaced(client.clone(), "default");
    policies
        .create(&PostParams::default(), &policy)
        .await
        .map_err(|e| format!("create policy: {e}"))?;
    // The first reconcile only adds the finalizer.
    let p = policies.get("bench").await.map_err(|e| e.to_string())?;
    crate::controller::policy::reconcile(Arc::new(p), ctx.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut phases: std::collections::BTreeMap<String, Phase> = Default::default();
    let (mut writes, mut reads, mut transitions) = (0, 0, 0);
    for _ in 0..passes {
        sim.advance(SignedDuration::from_mins(1));
        let p = policies.get("bench").await.map_err(|e| e.to_string())?;
        let (r0, w0) = server.request_counts();
        crate::controller::policy::reconcile(Arc::new(p), ctx.clone())
            .await
            .map_err(|e| e.to_string())?;
        let (r1, w1) = server.request_counts();
        writes += w1 - w0;
        reads += r1 - r0;
        for nm in nms
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
        {
            let phase = nm.status.as_ref().map(|s| s.phase).unwrap_or_default();
            let name = nm.metadata.name.clone().unwrap_or_default();
            if phases.insert(name, phase) != Some(phase) {
                transitions += 1;
            }
        }
    }
    let by: Vec<String> = server
        .writes_by_resource()
        .into_iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    Ok((passes, writes, reads, transitions, by.join(", ")))
}

/// Snapshots taken one after the other (well within the partition cache's TTL).
const AGENT_PASSES: usize = 10;

/// What the agent's snapshot code does over [`AGENT_PASSES`] passes on the generated
/// output: commands run in each pass (with the bench's jobs, and with no job preemptable
/// by its partition), and the median time of a whole snapshot.
struct AgentPasses {
    counts: Vec<usize>,
    counts_quiet: Vec<usize>,
    snapshot: Duration,
}

async fn agent_passes(text: &SlurmText, runs: usize) -> Result<AgentPasses, String> {
    use crate::agent::commands;
    use crate::agent::snapshot::{self, Inputs, PartitionCache};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let tz = TimeZone::UTC;
    let inputs = Inputs {
        partition: "batch",
        tz: &tz,
        preemptable_qos: &[],
    };
    let quiet_jobs = text
        .jobs
        .replace("\u{1f}scavenger\u{1f}", "\u{1f}batch\u{1f}");
    let mut out = AgentPasses {
        counts: vec![],
        counts_quiet: vec![],
        snapshot: Duration::MAX,
    };
    let mut times = vec![];
    for quiet in [false, true] {
        let jobs = if quiet { &quiet_jobs } else { &text.jobs };
        let cache = PartitionCache::new(snapshot::DEFAULT_PARTITION_TTL);
        let ran = AtomicUsize::new(0);
        let run = |argv: Vec<String>| {
            ran.fetch_add(1, Ordering::Relaxed);
            let answer = match commands::verb(&argv).as_str() {
                "scontrol show node" => Ok(text.nodes.clone()),
                "squeue" => Ok(jobs.clone()),
                "scontrol show reservation" => Ok(text.reservations.clone()),
                "scontrol show partition" => Ok(text.partitions.clone()),
                "scontrol show topology" => Ok(String::new()),
                other => Err(format!("the bench has no output for {other}")),
            };
            async move {
                answer.map_err(|message| crate::agent::SlurmError::Failed {
                    command: argv.join(" "),
                    code: Some(1),
                    message,
                })
            }
        };
        for pass in 0..AGENT_PASSES.max(runs) {
            let started = Instant::now();
            let snap = snapshot::take(&run, &cache, &inputs)
                .await
                .map_err(|e| e.to_string())?;
            if !quiet && pass > 0 {
                times.push(started.elapsed());
            }
            if snap.nodes.len() != NODES || snap.jobs.len() != JOBS {
                return Err(format!(
                    "snapshot has {} nodes and {} jobs",
                    snap.nodes.len(),
                    snap.jobs.len()
                ));
            }
            if pass < AGENT_PASSES {
                let counts = if quiet {
                    &mut out.counts_quiet
                } else {
                    &mut out.counts
                };
                counts.push(ran.swap(0, Ordering::Relaxed));
            }
        }
    }
    times.sort();
    out.snapshot = times[times.len() / 2];
    Ok(out)
}

/// The pass table.
pub fn report(runs: usize) -> Result<String, String> {
    let mut out = format!(
        "Pass benchmark: {NODES} nodes, {JOBS} running jobs, {IN_FLIGHT} NodeMaintenances in flight \
         (of {NODES}); median of {runs} runs; records cloned from real Slurm 22.05 output.\n"
    );
    let (mem_before, mem_after) = reflector_memory();
    let text = generate();
    let tz = TimeZone::UTC;
    let mb = |s: &str| s.len() as f64 / 1e6;

    let (t_nodes, nodes) = median(runs, || parse::scontrol_nodes(&text.nodes, &tz));
    let nodes = nodes.map_err(|e| e.to_string())?;
    let (t_parts, parts) = median(runs, || parse::scontrol_partitions(&text.partitions));
    let parts = parts.map_err(|e| e.to_string())?;
    let preempting = parse::preempting_partitions(&parts);
    let (t_jobs, jobs) = median(runs, || parse::squeue_narrow(&text.jobs, &tz, &preempting));
    let jobs = jobs.map_err(|e| e.to_string())?;
    let (t_json, json_jobs) = median(runs, || parse::squeue_json(&text.jobs_json, &preempting));
    let json_jobs = json_jobs.map_err(|e| e.to_string())?;
    let (t_resv, resv) = median(runs, || {
        parse::scontrol_reservations(&text.reservations, &tz)
    });
    let resv = resv.map_err(|e| e.to_string())?;
    assert_eq!((nodes.len(), jobs.len()), (NODES, JOBS));
    if jobs != json_jobs {
        return Err("squeue's narrow format and --json disagree".into());
    }
    drop(json_jobs);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let agent = rt.block_on(agent_passes(&text, runs))?;

    let now = base() + SignedDuration::from_mins(1);
    let settings = Settings::from_spec(&spec(), now).map_err(|e| e.to_string())?;
    let snapshot = Snapshot {
        nodes,
        jobs,
        reservations: resv,
        health: Default::default(),
        topology: None,
    };
    let work = works(now);
    let (t_plan, p) = median(runs, || {
        plan::plan("bench", &settings, &snapshot, &work, now)
    });

    let (passes, writes, reads, transitions, by) = rt.block_on(api_writes(100, 180))?;

    let mut t = Table::new(&["figure", "value", "target", "meets"]);
    let yes = |b: bool| if b { "yes" } else { "NO" }.to_string();
    let n = AGENT_PASSES;
    let per_pass = |c: &[usize]| -> (String, bool) {
        let (first, rest) = (c[0], &c[1..]);
        let steady = rest.iter().copied().max().unwrap_or(first);
        if rest.iter().all(|&x| x == steady) && first > steady {
            (format!("{steady} + {}/N", first - steady), steady <= 3)
        } else {
            (steady.to_string(), steady <= 3)
        }
    };
    for (label, counts) in [
        (
            "with the bench's jobs (20 % in scavenger, PreemptMode=CANCEL)",
            &agent.counts,
        ),
        (
            "when no job is preemptable by its partition (scavenger's jobs moved to batch)",
            &agent.counts_quiet,
        ),
    ] {
        let (value, meets) = per_pass(counts);
        t.row(vec![
            format!(
                "Slurm commands per pass {label}; {n} passes within the TTL: {}",
                counts
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            value,
            "≤ 3".into(),
            yes(meets),
        ]);
    }
    let parse_total = t_nodes + t_parts + t_jobs + t_resv;
    t.row(vec![
        format!(
            "parse scontrol show node -o ({NODES} nodes, {:.1} MB), ms",
            mb(&text.nodes)
        ),
        ms(t_nodes),
        String::new(),
        String::new(),
    ]);
    t.row(vec![
        format!(
            "parse squeue, narrow format ({JOBS} jobs, {:.1} MB), ms",
            mb(&text.jobs)
        ),
        ms(t_jobs),
        String::new(),
        String::new(),
    ]);
    t.row(vec![
        format!("parse scontrol show reservation -o ({IN_FLIGHT}), ms"),
        ms(t_resv),
        String::new(),
        String::new(),
    ]);
    t.row(vec![
        "parse scontrol show partition -o, ms".into(),
        ms(t_parts),
        String::new(),
        String::new(),
    ]);
    t.row(vec![
        "parse the agent's answers (all four), ms".into(),
        ms(parse_total),
        "≤ 200".into(),
        yes(parse_total <= Duration::from_millis(200)),
    ]);
    t.row(vec![
        "(the agent's whole snapshot: parse, cache checks, filter), ms".into(),
        ms(agent.snapshot),
        String::new(),
        String::new(),
    ]);
    t.row(vec![
        format!(
            "(parse squeue --json instead, as before: {JOBS} jobs, {:.0} MB, same jobs), ms",
            mb(&text.jobs_json)
        ),
        ms(t_json),
        String::new(),
        String::new(),
    ]);
    t.row(vec![
        format!(
            "plan one pass ({} updates, {} actions), ms",
            p.updates.len(),
            p.actions().count()
        ),
        ms(t_plan),
        "≤ 50".into(),
        yes(t_plan <= Duration::from_millis(50)),
    ]);
    let per = writes as f64 / transitions.max(1) as f64;
    t.row(vec![
        format!("API writes per FSM transition ({writes} writes, {transitions} transitions, {reads} reads, {passes} passes, 100 nodes)"),
        format!("{per:.2}"),
        "≤ 2".into(),
        yes(per <= 2.0),
    ]);
    let added = mem_after - mem_before;
    t.row(vec![
        format!("RSS with {CACHED} NodeMaintenances in a reflector store, MiB (+{added:.0} MiB for the store)"),
        format!("{mem_after:.0}"),
        "≤ 150".into(),
        yes(mem_after <= 150.0),
    ]);
    out.push_str(&t.render());
    out.push_str(&format!(
        "API writes by request over the whole run (CRD set-up and finalizer included): {by}\n"
    ));
    Ok(out)
}
