//! `slurm-maint demo`: the real controllers on an embedded default — the in-process API
//! server, a simulated Slurm partition on a virtual clock, and the policy in
//! `manifests/examples/demo.yaml` — running one whole rolling-reboot campaign.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

use crate::api::{MaintenancePolicy, NodeMaintenance, NodeMaintenancePhase as Phase};
use crate::apiserver::ApiServer;
use crate::controller::{self, Context, FixedConnector, Leadership, LeaseConfig, Pace};
use crate::sim::{JobMix, SimCluster, SimConfig, SimStats};

/// The demo's policy.
pub const DEMO_POLICY: &str = include_str!("../manifests/examples/demo.yaml");

/// Options of `slurm-maint demo`.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Nodes in the simulated partition.
    #[arg(long, default_value_t = 40)]
    pub nodes: usize,
    /// Seed of the simulated workload.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Virtual seconds per real second.
    #[arg(long, default_value_t = 7200.0)]
    pub speed: f64,
    /// Give up after this many virtual hours.
    #[arg(long, default_value_t = 96)]
    pub max_hours: i64,
    /// Also serve the API server on this address (e.g. 127.0.0.1:8001) and keep it up
    /// after the campaign, for `kubectl --kubeconfig`.
    #[arg(long)]
    pub serve: Option<SocketAddr>,
    /// Print progress lines only (no final tables).
    #[arg(long)]
    pub quiet: bool,
}

/// What a demo run measured.
#[derive(Clone, Debug)]
pub struct DemoReport {
    pub completed: usize,
    pub failed: usize,
    pub campaign_nodes: usize,
    pub makespan: SignedDuration,
    pub allowed: u32,
    pub stats: SimStats,
    pub finished: bool,
    /// Nodes drained by ops before the campaign (they count as down).
    pub drained_by_ops: usize,
}

fn demo_sim(args: &DemoArgs) -> SimConfig {
    SimConfig {
        nodes: args.nodes,
        seed: args.seed,
        down_at_start: 1,
        reboot_fail_once_pct: 0.05,
        job_mix: JobMix {
            short: 0.85,
            long: 0.12,
        },
        ..SimConfig::default()
    }
}

async fn setup(client: &Client, ns: &str) -> Result<MaintenancePolicy, String> {
    let err = |what: &str| {
        let what = what.to_string();
        move |e: kube::Error| format!("{what}: {e}")
    };
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for crd in crate::api::crds() {
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply("slurm-maint-demo").force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(err("apply CRD"))?;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": ns}
    }))
    .expect("valid namespace");
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(format!("create namespace: {e}")),
    }
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "slurm-maint-agent-token", "namespace": ns},
        "stringData": {"token": "demo-token-not-used-by-the-simulator"}
    }))
    .expect("valid secret");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let _ = secrets.create(&PostParams::default(), &secret).await;
    let mut policy: MaintenancePolicy =
        serde_yaml::from_str(DEMO_POLICY).map_err(|e| format!("demo policy: {e}"))?;
    policy.metadata.namespace = Some(ns.into());
    let policies: Api<MaintenancePolicy> = Api::namespaced(client.clone(), ns);
    policies
        .patch(
            &policy.name_any(),
            &PatchParams::apply("slurm-maint-demo").force(),
            &Patch::Apply(&policy),
        )
        .await
        .map_err(err("apply the demo policy"))
}

fn phase_line(items: &[NodeMaintenance]) -> String {
    let mut counts: BTreeMap<Phase, usize> = BTreeMap::new();
    for nm in items {
        *counts
            .entry(nm.status.as_ref().map(|s| s.phase).unwrap_or_default())
            .or_default() += 1;
    }
    Phase::ALL
        .iter()
        .filter_map(|p| counts.get(p).map(|n| format!("{p} {n}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Run the demo; returns what it measured.
pub async fn run(args: DemoArgs) -> Result<DemoReport, String> {
    let server = ApiServer::new();
    let client = server.client();
    let served = match args.serve {
        Some(addr) => {
            let (addr, _task) = server
                .serve(addr)
                .await
                .map_err(|e| format!("serve on {addr}: {e}"))?;
            let path = std::env::temp_dir().join("slurm-maint-demo.kubeconfig");
            std::fs::write(&path, ApiServer::kubeconfig_yaml(addr))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            println!(
                "API server on http://{addr}; try: kubectl --kubeconfig {} get slurm-maint -A",
                path.display()
            );
            Some(path)
        }
        None => None,
    };
    let ns = "slurm";
    let policy = setup(&client, ns).await?;
    let sim = SimCluster::new(demo_sim(&args));
    let start = sim.now();
    let clock_sim = sim.clone();
    let pace = Pace {
        scale: 1.0 / args.speed.max(1.0),
    };
    let leadership = Leadership::default();
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(FixedConnector(Arc::new(sim.clone()))),
        Arc::new(move || clock_sim.now()),
        pace,
        leadership.clone(),
        "demo",
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let elector = tokio::spawn(controller::leader::run(
        client.clone(),
        LeaseConfig::new(ns, "slurm-maint-controller", "demo"),
        leadership,
        stopped(stop_rx.clone()),
    ));
    let controller_task = tokio::spawn(controller::run(
        ctx.clone(),
        Some(ns.to_string()),
        stopped(stop_rx.clone()),
    ));

    println!(
        "demo: {} nodes in partition batch (seed {}), policy {ns}/{}: {}% budget, campaign rebootRequiredBefore {}",
        args.nodes,
        args.seed,
        policy.name_any(),
        policy.spec.budget.max_unavailable_percent.unwrap_or(10.0),
        policy
            .spec
            .campaign
            .reboot_required_before
            .map_or("-".into(), |t| t.to_string()),
    );
    println!("virtual time runs {}x faster than real time\n", args.speed);

    let policies: Api<MaintenancePolicy> = Api::namespaced(client.clone(), ns);
    let works: Api<NodeMaintenance> = Api::namespaced(client.clone(), ns);
    let tick = Duration::from_millis(20);
    let step = SignedDuration::from_secs_f64(tick.as_secs_f64() * args.speed);
    let deadline = start + SignedDuration::from_hours(args.max_hours);
    let mut next_report = start;
    let mut last_line = String::new();
    let mut last_print = start;
    let mut finished = false;
    let mut last: (Vec<NodeMaintenance>, Option<MaintenancePolicy>) = (vec![], None);
    while sim.now() < deadline {
        tokio::time::sleep(tick).await;
        sim.advance(step);
        sim.sample();
        if sim.now() < next_report {
            continue;
        }
        next_report = sim.now() + SignedDuration::from_mins(15);
        let items = works
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        let p = policies
            .get(&policy.name_any())
            .await
            .map_err(|e| e.to_string())?;
        let st = p.status.clone().unwrap_or_default();
        let b = st.budget.clone().unwrap_or_default();
        let elapsed = sim.now().duration_since(start);
        let line = format!(
            "done {:>3}/{:<3} out {}/{} (down {}) | {}",
            st.phases.completed,
            st.nodes_needing_work,
            b.combined,
            b.allowed,
            b.down,
            phase_line(&items),
        );
        let quiet_for = sim.now().duration_since(last_print);
        if line != last_line || quiet_for >= SignedDuration::from_hours(6) {
            println!(
                "[+{:>2}h{:02}m] {line}",
                elapsed.as_hours(),
                (elapsed.as_mins() % 60),
            );
            last_line = line;
            last_print = sim.now();
        }
        let progressing = st
            .conditions
            .iter()
            .find(|c| c.r#type == "Progressing")
            .map(|c| c.reason.clone());
        use crate::plan::status::reason;
        finished = st.nodes_needing_work > 0
            && matches!(
                progressing.as_deref(),
                Some(reason::CAMPAIGN_COMPLETE | reason::WAITING_FOR_BLOCKED_NODES)
            );
        last = (items, Some(p));
        if finished {
            break;
        }
    }
    let _ = stop_tx.send(true);
    let _ = controller_task.await;
    let _ = elector.await;

    let (items, p) = last;
    let st = p.and_then(|p| p.status).unwrap_or_default();
    let count = |ph: Phase| {
        items
            .iter()
            .filter(|nm| nm.status.as_ref().is_some_and(|s| s.phase == ph))
            .count()
    };
    let last_done = items
        .iter()
        .filter_map(|nm| nm.status.as_ref())
        .filter(|s| s.phase.is_terminal())
        .filter_map(|s| s.phase_since)
        .max()
        .unwrap_or(start);
    let report = DemoReport {
        completed: count(Phase::Completed),
        failed: count(Phase::Failed),
        campaign_nodes: st.nodes_needing_work as usize,
        makespan: last_done.duration_since(start),
        allowed: st.budget.as_ref().map_or(0, |b| b.allowed),
        stats: sim.stats(),
        finished,
        drained_by_ops: demo_sim(&args).down_at_start,
    };
    if !args.quiet {
        print_tables(&items, &report, start);
    }
    if let Some(path) = served {
        println!(
            "\nThe API server stays up: kubectl --kubeconfig {} get slurm-maint -A (Ctrl-C to stop)",
            path.display()
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    Ok(report)
}

fn print_tables(items: &[NodeMaintenance], r: &DemoReport, start: Timestamp) {
    println!(
        "\nNAME{:28}NODE      PHASE       ATTEMPTS  RESERVATION START",
        ""
    );
    let mut items: Vec<&NodeMaintenance> = items.iter().collect();
    items.sort_by_key(|nm| nm.spec.node_name.clone());
    for nm in items {
        let st = nm.status.clone().unwrap_or_default();
        println!(
            "{:<32}{:<10}{:<12}{:<10}{}",
            nm.name_any(),
            nm.spec.node_name,
            st.phase.to_string(),
            st.attempts,
            st.reservation_start.map_or("-".into(), |t| format!(
                "+{:.1}h",
                t.duration_since(start).as_secs_f64() / 3600.0
            )),
        );
    }
    let s = &r.stats;
    let max_reboots = s.reboots_per_node.values().max().copied().unwrap_or(0);
    println!("\n{:<44}{}", "campaign finished", r.finished);
    println!(
        "{:<44}{} completed, {} failed, of {}",
        "nodes", r.completed, r.failed, r.campaign_nodes
    );
    println!(
        "{:<44}{:.1} h (virtual)",
        "makespan",
        r.makespan.as_secs_f64() / 3600.0
    );
    println!(
        "{:<44}{} (allowed {}; {} node(s) drained by ops count as down)",
        "most nodes out at once (maintenance ∪ down)",
        s.max_unavailable_or_down,
        r.allowed,
        r.drained_by_ops
    );
    println!("{:<44}{}", "most reboots of one node", max_reboots);
    println!(
        "{:<44}{}",
        "preemptable jobs ended", s.preemptable_cancelled
    );
    println!(
        "{:<44}{}",
        "non-preemptable jobs killed", s.non_preemptable_killed
    );
    println!("{:<44}{}", "Slurm commands (agent equivalent)", s.commands);
}
