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
use crate::controller::{self, Context, FixedConnector, Leadership, Pace};
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
    /// Give up after this many virtual hours (default: sized from the workload the seed
    /// generated, see [`give_up_after`]).
    #[arg(long)]
    pub max_hours: Option<i64>,
    /// Also serve the API server on this address (e.g. 127.0.0.1:8001) and keep it up
    /// after the campaign, for `kubectl --kubeconfig`.
    #[arg(long)]
    pub serve: Option<SocketAddr>,
    /// Print progress lines only (no final tables).
    #[arg(long)]
    pub quiet: bool,
    /// Also run this many OCI instance maintenance events on the partition's nodes,
    /// through the in-process OCI emulator (all with an approved fault code): they share
    /// the budget with the campaign.
    #[arg(long, default_value_t = 0)]
    pub oci_events: usize,
    /// Where the controllers' log goes, so that it does not break the campaign's view.
    #[arg(long, default_value_os_t = default_log())]
    pub log: std::path::PathBuf,
}

/// The demo's log file: in the temporary directory.
pub fn default_log() -> std::path::PathBuf {
    std::env::temp_dir().join("slurm-maint-demo.log")
}

impl DemoArgs {
    /// The defaults of `slurm-maint demo`.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seed,
            max_hours: None,
            serve: None,
            quiet: true,
            oci_events: 0,
            log: default_log(),
        }
    }
}

/// The key the demo signs its OCI calls with: made for the in-process emulator only,
/// public, worthless anywhere else.
const DEMO_OCI_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDCDX2GdeLnGior
OKsEfg+PxlWSgxanauqBTGDYuWmIF9AC5bCchVd1F5xfiY5AjgwRKKn1JuUjrG9i
wNPALFQu2+ik7cJt3FgrNpzfEuMqKtsHZ+o/UdUXRxOOicVDJ7iRJRB6971RulpS
a9zj0Ixiwd5bUK+djeMKfxSalGutMnz4r8zdyUzHCmOkf/PIW1TIlIgNg5ZnDRfs
T5gG7e8kIYK0SsBRxEijqniyCU6KvEEo5jwmcQpVSS2Q4tO33+rQ2tB6Gqnews8x
zyUrcBpfCGXpA0DkLocNOH/NpLXqRlVhFtooyYrl6OLI4tXU224ergARMveXyoNu
dsx7bwrtAgMBAAECggEACWQEvJKM4fkqrD/ISuXc0+zZrEbqvDxYz9wF3ccPO9ZH
KzS5WMG9Kz3yw87Q0v/sxpHMs7/nm9PW6hUByk1632+l8QFOhOmCXMj+S29LDfnX
8qJNPDY2FTPL1vyEzsynymJcS08c2s0lXNK6dE3d1VOjcpDThtDceWAP+7EOCuoO
fePClenPnuAxVEByeioJJz6VF3IUK0C1aNZOnLREE4HJEgIBYy3RuSOjFWhjYixO
yFBfcBx8yFsJcDTN0wrhB4V/rxoxLkpOLaB09qjKFqF0ZPhxvEOJ5APaekPT4gxQ
Jy814ZR3tBf6T6XQ4thYGqFYqWdODO1h+U7+Ci8s0QKBgQDitPumqRJiFEnPSzMS
PfdevbAgo3cCiq0tjv3B/SJVLfuRyWjeFdxtptyevpu2k4suzS0wI8A2O68IOHuG
SjRMd4CHwaWDN9mcopmy8aPn74+AH2z7OY/Np6WvBqZmAENWDlHuqFbl/UE2qseF
rLg/bDmqb8chF3EyUuB/RLnyeQKBgQDbIF5tgc8133H7rGsh0v7/Gc5hhP7Ym0jl
woYQuFHGIhIJolmt1SJDcO31okR784DoAutlKnNo9VVj1618LVItG8MKZbsSMPD9
Slg6j4qDHtSh8wJB5XElWp3LPQ9+TBHAr4a4gRsU5r5SWRoZf0FBGmJPhB97RS/0
1KNPQf2fFQKBgQDaEbz/UyKbtWhKPcuigHiyaURCIPsZNsveRu1Q7G1aAiE62sJE
3kJqN1eAW1jtBn+bRUFyTPFXOZHkFnC7fCVSaKD59QuAbPil8sJlnopLT+R5GcF6
5qOs7tYwxfTJqPcckCm/p63vDOzt6NiDfOC+IRxXFa415pa8EXxg73ruAQKBgFBu
uTqJA35K3pP63fg0ctVAq7iwELuBhGiR1pQclCeeKfDPXwunyEPpF++p+GlnIFIJ
gE5KHsLQCt/zMwL5v8g/AIC4hspOnKbcuzYDqlwm3PX1NUbq6XVEpdcMOrupQHrx
8wmWmlI5wHKJskLZqyIyhROa89NTuh6sTqWxG19hAoGAe+0QroYpbk9Kiyq/JraU
Hu7VnzCT7Pc9mmb7c/mnX/YLsCBU8J1LiswsIHpW3tExxU4alPAEm4L+w1DQqIOk
DHZoFHgotAaEGUhwxht+75RG2f57h0DwJLZ9GIKnDavSwmG/mcZ3nw225fQQXvWU
p+LPXYmvgMPXgbxR+4wQLtE=
-----END PRIVATE KEY-----
";

/// The in-process OCI emulator with `events` events on instances named after the
/// partition's nodes, on the simulation's clock itself (the controller's): the two never
/// disagree on the time, so a window the controller asks for `scheduleLeadTime` ahead is
/// ahead to OCI too. The policy gets OCI settings and their credentials Secret.
async fn setup_oci(
    client: &Client,
    ns: &str,
    policy: &str,
    events: usize,
    sim: &SimCluster,
) -> Result<crate::oci::emulator::Emulator, String> {
    use crate::oci::emulator::{Emulator, Generate, Scenario};
    let tenancy = "ocid1.tenancy.oc1..aaaaaaaademo";
    let scenario = Scenario {
        tenancy: tenancy.into(),
        step_seconds: 600.0,
        generate: Some(Generate {
            compartments: 1,
            instances: events,
            events,
            host_prefix: "node".into(),
            fault_ids: vec!["HPCRDMA-0002-02".into()],
        }),
        ..Scenario::default()
    };
    let key =
        crate::oci::config::parse_private_key(DEMO_OCI_KEY, None).map_err(|e| e.to_string())?;
    let clock = sim.clone();
    let emu = Emulator::with_clock(
        scenario,
        vec![key.to_public_key()],
        Arc::new(move || clock.now()),
    );
    let (addr, _task) = emu
        .start("127.0.0.1:0")
        .await
        .map_err(|e| format!("OCI emulator: {e}"))?;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "oci-api-key", "namespace": ns},
        "stringData": {
            "config": format!("[DEFAULT]\nuser=ocid1.user.oc1..demo\ntenancy={tenancy}\nregion=us-ashburn-1\nkey_file=unused\n"),
            "key": DEMO_OCI_KEY,
        }
    }))
    .expect("valid secret");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let _ = secrets.create(&PostParams::default(), &secret).await;
    let policies: Api<MaintenancePolicy> = Api::namespaced(client.clone(), ns);
    policies
        .patch(
            policy,
            &PatchParams::apply("slurm-maint-demo-oci").force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "slurm-maint.io/v1alpha1",
                "kind": "MaintenancePolicy",
                "metadata": {"name": policy, "namespace": ns},
                "spec": {"oci": {
                    "enabled": true,
                    "tenancyId": tenancy,
                    "region": "us-ashburn-1",
                    "endpoint": format!("http://{addr}"),
                    "credentialsSecretRef": {"name": "oci-api-key"},
                    "approvedFaultCodes": ["HPCRDMA-0002-02"],
                }}
            })),
        )
        .await
        .map_err(|e| format!("OCI settings: {e}"))?;
    println!(
        "OCI: {events} maintenance event(s) in the emulator on http://{addr}, fault HPCRDMA-0002-02 approved"
    );
    Ok(emu)
}

/// The simulated site check that fails in the demo: (node, check, its output).
pub const CHECK_FAILURE: (&str, &str, &str) = (
    "node007",
    "gpu-ecc",
    "GPU 3: 12 uncorrected volatile ECC errors",
);

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
    /// Why the campaign can never go on, when it stopped for that.
    pub stuck: Option<String>,
    /// The virtual time it was given, when it did not finish.
    pub gave_up_after: Option<SignedDuration>,
    /// The OCI events' run, with `--oci-events`.
    pub oci: Option<OciReport>,
    /// Nodes whose work failed a health check: (node, Slurm state, Slurm reason).
    pub check_failures: Vec<(String, String, String)>,
}

/// What the OCI side of a demo run did.
#[derive(Clone, Debug, Default)]
pub struct OciReport {
    /// OCI NodeMaintenances Completed / Failed.
    pub completed: usize,
    pub failed: usize,
    /// Every `lastError` an OCI NodeMaintenance ended with.
    pub errors: Vec<String>,
    /// Requests the emulator refused, and the first ones with their reasons.
    pub refused: u64,
    pub refusals: Vec<String>,
    /// How far the emulator's clock is from the simulation's at the end.
    pub clock_skew: SignedDuration,
}

impl DemoReport {
    /// Why the run is a failure, if it is one.
    pub fn failure(&self) -> Option<String> {
        if self.finished {
            return None;
        }
        Some(match (&self.stuck, self.gave_up_after) {
            (Some(why), _) => format!("the campaign cannot go on: {why}"),
            (None, Some(limit)) => format!(
                "the campaign did not finish in {:.0} virtual hours",
                limit.as_secs_f64() / 3600.0
            ),
            (None, None) => "the campaign did not finish".into(),
        })
    }
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

/// How many of `items` are in each phase, in the phases' order (`Pending 3, Reserved 1`).
fn phase_line<'a>(items: impl IntoIterator<Item = &'a NodeMaintenance>) -> String {
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

/// The virtual time after which the demo gives up, sized from the workload the seed
/// generated: `busy` is how long the jobs running at the start really run (their hidden
/// ends). Every node may have to wait that long for its jobs, and the `needing` nodes go
/// `allowed` at a time, each wave taking at most `per_node` (lead time, every reboot
/// attempt's timeout, settle time); jobs landing on nodes that wait their turn can hold a
/// node once more as long as a job runs. The limit is twice the longest such schedule:
/// a campaign that needs more is broken, not slow.
pub fn give_up_after(
    busy: SignedDuration,
    needing: usize,
    allowed: usize,
    per_node: SignedDuration,
) -> SignedDuration {
    let waves = needing.div_ceil(allowed.max(1)) as i32;
    (busy + per_node * waves) * 2
}

/// One node's maintenance at its longest, by the policy: lead time, every attempt's reboot
/// timeout, settle time.
fn longest_per_node(policy: &MaintenancePolicy) -> SignedDuration {
    let spec = &policy.spec;
    spec.budget.reservation_lead_time.as_span()
        + spec.reboots.timeout.as_span() * spec.reboots.max_attempts.max(1) as i32
        + spec.reboots.settle_time.as_span()
}

/// Work of ours that holds a node now (reservation active or imminent, rebooting,
/// recovering, health check).
fn in_flight(st: &crate::api::policy::MaintenancePolicyStatus) -> u32 {
    let p = &st.phases;
    p.reserved + p.pending_reboot + p.rebooting + p.recovering + p.health_check
}

/// Why the campaign waits, from the planner's per-node `next` reasons: the first waiting
/// node's, when none of ours is in flight (otherwise it is simply busy).
pub fn waiting_line(st: &crate::api::policy::MaintenancePolicyStatus) -> Option<String> {
    if in_flight(st) > 0 {
        return None;
    }
    let n = st.next.iter().find(|n| n.waiting.is_some())?;
    Some(format!(
        "waiting: {}: {}",
        n.node,
        n.waiting.as_deref().unwrap_or_default()
    ))
}

/// The campaign can never go on: the budget is full, none of its slots is ours, and the
/// nodes that hold them are down or drained by others (in the demo, ops' drained nodes
/// and failed nodes never come back on their own).
pub fn stuck(st: &crate::api::policy::MaintenancePolicyStatus) -> bool {
    let Some(b) = &st.budget else { return false };
    in_flight(st) == 0
        && st.phases.pending > 0
        && b.unavailable == 0
        && b.committed >= b.allowed
        && st.next.iter().all(|n| {
            n.waiting
                .as_deref()
                .is_some_and(|w| w.starts_with("budget full"))
        })
}

/// The demo's kubeconfig: the embedded server's, with `ns` as the default namespace.
fn kubeconfig(addr: SocketAddr, ns: &str) -> Result<String, String> {
    let mut cfg: serde_yaml::Value = serde_yaml::from_str(&ApiServer::kubeconfig_yaml(addr))
        .map_err(|e| format!("kubeconfig: {e}"))?;
    let contexts = cfg
        .get_mut("contexts")
        .and_then(|c| c.as_sequence_mut())
        .ok_or("kubeconfig: no contexts")?;
    for c in contexts {
        if let Some(m) = c.get_mut("context").and_then(|c| c.as_mapping_mut()) {
            m.insert("namespace".into(), ns.into());
        }
    }
    serde_yaml::to_string(&cfg).map_err(|e| format!("kubeconfig: {e}"))
}

/// How long (real time) the controller may take for one pass before the demo says it
/// hangs: a guard against a broken controller, never what decides the campaign.
const PASS_GUARD: Duration = Duration::from_secs(120);

/// Run the demo; returns what it measured. Virtual time moves in lockstep with the
/// controller: one policy interval after each pass, never by the wall clock, so a seed
/// gives the same campaign on any machine, however loaded.
pub async fn run(args: DemoArgs) -> Result<DemoReport, String> {
    let server = ApiServer::new();
    let client = server.client();
    let ns = "slurm";
    let served = match args.serve {
        Some(addr) => {
            let (addr, _task) = server
                .serve(addr)
                .await
                .map_err(|e| format!("serve on {addr}: {e}"))?;
            let path = std::env::temp_dir().join("slurm-maint-demo.kubeconfig");
            std::fs::write(&path, kubeconfig(addr, ns)?)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            println!(
                "API server on http://{addr}; try: kubectl --kubeconfig {} get slurm-maint",
                path.display()
            );
            Some(path)
        }
        None => None,
    };
    let policy = setup(&client, ns).await?;
    let sim = SimCluster::new(demo_sim(&args));
    let (node, check, output) = CHECK_FAILURE;
    sim.fail_check(node, check, output);
    let start = sim.now();
    let emu = match args.oci_events {
        0 => None,
        n => Some(setup_oci(&client, ns, &policy.name_any(), n, &sim).await?),
    };
    let clock_sim = sim.clone();
    // Passes run when the driver moves the clock (Context::tick), not on timers: a
    // virtual minute is a real minute to the requeue timers, which never fire first.
    let pace = Pace { scale: 1.0 };
    // One replica, no election: the first pass runs as soon as the policy is seen.
    let leadership = Leadership::always();
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
    let controller_task = tokio::spawn(controller::run(
        ctx.clone(),
        Some(ns.to_string()),
        stopped(stop_rx.clone()),
    ));

    let settings = crate::plan::Settings::from_spec(&policy.spec, start)
        .map_err(|e| format!("demo policy: {e}"))?;
    let allowed = settings.limit.allowed(args.nodes);
    let needing = args.nodes + args.oci_events;
    let limit = match args.max_hours {
        Some(h) => SignedDuration::from_hours(h),
        None => give_up_after(
            sim.busy_until().duration_since(start),
            needing,
            allowed,
            longest_per_node(&policy),
        ),
    };
    println!(
        "demo: {} nodes in partition batch (seed {}), policy {ns}/{}: {}% budget ({allowed} at once), campaign rebootRequiredBefore {}",
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
    println!(
        "virtual time moves {} after each pass of the controller; gives up after {:.0} virtual hours; controller log: {}\n",
        policy.spec.interval,
        limit.as_secs_f64() / 3600.0,
        args.log.display(),
    );

    let policies: Api<MaintenancePolicy> = Api::namespaced(client.clone(), ns);
    let works: Api<NodeMaintenance> = Api::namespaced(client.clone(), ns);
    let step = policy.spec.interval.as_span();
    let deadline = start + limit;
    let mut next_report = start;
    let mut last_line = String::new();
    let mut last_waiting: Option<String> = None;
    let mut last_print = start;
    let mut finished = false;
    let mut stuck_since: Option<Timestamp> = None;
    let mut stuck_why = None;
    let mut last: (Vec<NodeMaintenance>, Option<MaintenancePolicy>) = (vec![], None);
    loop {
        match tokio::time::timeout(PASS_GUARD, ctx.wait_for_pass(sim.now())).await {
            Ok(true) => {}
            Ok(false) => return Err("the controller stopped".into()),
            Err(_) => {
                return Err(format!(
                    "the controller made no pass at +{:.1} h in {} s (real time)",
                    sim.now().duration_since(start).as_secs_f64() / 3600.0,
                    PASS_GUARD.as_secs()
                ));
            }
        }
        sim.sample();
        if sim.now() >= next_report {
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
            let oci: Vec<&NodeMaintenance> = items
                .iter()
                .filter(|nm| nm.spec.action == crate::api::MaintenanceAction::OciMaintenance)
                .collect();
            let oci_done = oci
                .iter()
                .filter(|nm| nm.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
                .count();
            let reboots_done = items
                .iter()
                .filter(|nm| nm.spec.action == crate::api::MaintenanceAction::Reboot)
                .filter(|nm| {
                    nm.status
                        .as_ref()
                        .is_some_and(|s| s.phase == Phase::Completed)
                })
                .count();
            // The campaign's reboots and the OCI events' work apart: a node can have both.
            let reboots = items
                .iter()
                .filter(|nm| nm.spec.action == crate::api::MaintenanceAction::Reboot);
            let line = format!(
                "done {:>3}/{:<3} out {}/{} (down {}) | {}{}",
                reboots_done,
                st.nodes_needing_work,
                b.combined,
                b.allowed,
                b.down,
                phase_line(reboots),
                if args.oci_events > 0 {
                    format!(
                        " | OCI events done {oci_done}/{}: {}",
                        oci.len(),
                        phase_line(oci.iter().copied())
                    )
                } else {
                    String::new()
                },
            );
            let waiting = waiting_line(&st);
            let quiet_for = sim.now().duration_since(last_print);
            if line != last_line
                || waiting != last_waiting
                || quiet_for >= SignedDuration::from_hours(6)
            {
                println!(
                    "[+{:>2}h{:02}m] {line}",
                    elapsed.as_hours(),
                    (elapsed.as_mins() % 60),
                );
                if let Some(w) = &waiting {
                    println!("{:10} {w}", "");
                }
                last_line = line;
                last_waiting = waiting;
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
                )
                && oci_done == oci.len();
            // Two reports in a row (so never a passing moment) with nothing that can move.
            if stuck(&st) {
                let since = *stuck_since.get_or_insert(sim.now());
                if sim.now() > since {
                    stuck_why = waiting_line(&st);
                }
            } else {
                stuck_since = None;
            }
            last = (items, Some(p));
            if finished || stuck_why.is_some() {
                break;
            }
        }
        if sim.now() >= deadline {
            break;
        }
        sim.advance(step);
        sim.sample();
        ctx.tick();
    }
    let _ = stop_tx.send(true);
    let _ = controller_task.await;

    let (items, p) = last;
    let st = p.and_then(|p| p.status).unwrap_or_default();
    let count = |ph: Phase| {
        items
            .iter()
            .filter(|nm| nm.spec.action == crate::api::MaintenanceAction::Reboot)
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
    let slurm_now = sim.peek();
    let check_failures = items
        .iter()
        .filter(|nm| {
            nm.status.as_ref().is_some_and(|s| {
                s.phase == Phase::Failed && s.health_checks.iter().any(|r| !r.passed)
            })
        })
        .filter_map(|nm| {
            let n = slurm_now
                .nodes
                .iter()
                .find(|n| n.name == nm.spec.node_name)?;
            Some((
                n.name.clone(),
                n.state.to_string(),
                n.reason.clone().unwrap_or_default(),
            ))
        })
        .collect();
    let report = DemoReport {
        check_failures,
        completed: count(Phase::Completed),
        failed: count(Phase::Failed),
        campaign_nodes: st.nodes_needing_work as usize,
        makespan: last_done.duration_since(start),
        allowed: st.budget.as_ref().map_or(0, |b| b.allowed),
        stats: sim.stats(),
        finished,
        drained_by_ops: demo_sim(&args).down_at_start,
        stuck: stuck_why.map(|w| {
            format!(
                "{w}; nodes drained by ops never come back in the demo, and {allowed} node(s) at once is all the budget allows for {} nodes",
                args.nodes
            )
        }),
        gave_up_after: (!finished).then_some(limit),
        oci: emu.as_ref().map(|emu| {
            let oci: Vec<_> = items
                .iter()
                .filter(|nm| nm.spec.action == crate::api::MaintenanceAction::OciMaintenance)
                .filter_map(|nm| nm.status.as_ref())
                .collect();
            let (refused, refusals) = emu.refusals();
            OciReport {
                completed: oci.iter().filter(|s| s.phase == Phase::Completed).count(),
                failed: oci.iter().filter(|s| s.phase == Phase::Failed).count(),
                errors: oci.iter().filter_map(|s| s.last_error.clone()).collect(),
                refused,
                refusals,
                clock_skew: emu.now().duration_since(sim.now()),
            }
        }),
    };
    if !args.quiet {
        print_tables(&items, &report, start);
    }
    if let Some(path) = served {
        println!(
            "\nThe API server stays up: kubectl --kubeconfig {} get slurm-maint (Ctrl-C to stop)",
            path.display()
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    Ok(report)
}

fn print_tables(items: &[NodeMaintenance], r: &DemoReport, start: Timestamp) {
    println!(
        "\nNAME{:28}NODE      ACTION          PHASE       ATTEMPTS  RESERVATION START",
        ""
    );
    let mut items: Vec<&NodeMaintenance> = items.iter().collect();
    items.sort_by_key(|nm| nm.spec.node_name.clone());
    for nm in items {
        let st = nm.status.clone().unwrap_or_default();
        println!(
            "{:<32}{:<10}{:<16}{:<12}{:<10}{}",
            nm.name_any(),
            nm.spec.node_name,
            format!("{:?}", nm.spec.action),
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
    for (node, state, reason) in &r.check_failures {
        println!(
            "{:<44}{node} kept {state}: {reason}",
            "failed a health check"
        );
    }
    if let Some(o) = &r.oci {
        println!(
            "{:<44}{} completed, {} failed; {} request(s) refused by OCI",
            "OCI events", o.completed, o.failed, o.refused
        );
        for why in o.refusals.iter().take(5) {
            println!("{:<44}{why}", "");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// What must be the same in two runs of one seed.
    fn outcome(r: &DemoReport) -> (bool, usize, usize, SignedDuration, SimStats) {
        (
            r.finished,
            r.completed,
            r.failed,
            r.makespan,
            r.stats.clone(),
        )
    }

    /// The default demo's first `hours` virtual hours (the campaign's busiest part: every
    /// budget slot in use): enough to tell two runs apart, cheaper than a whole campaign.
    fn first_hours(seed: u64, hours: i64) -> DemoArgs {
        DemoArgs {
            max_hours: Some(hours),
            ..DemoArgs::new(40, seed)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_seed_gives_one_campaign() {
        let a = run(first_hours(7, 8)).await.unwrap();
        let b = run(first_hours(7, 8)).await.unwrap();
        assert!(a.completed >= 10, "{} completed", a.completed);
        assert_eq!(outcome(&a), outcome(&b));
        // Another seed, another workload: the comparison above can fail.
        let c = run(first_hours(8, 8)).await.unwrap();
        assert_ne!(outcome(&a), outcome(&c));
    }

    /// CPU-bound threads beside the demo (a loaded machine) change nothing but its
    /// wall time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_loaded_machine_gives_the_same_campaign() {
        let quiet = run(first_hours(5, 8)).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                })
            })
            .collect();
        let loaded = run(first_hours(5, 8)).await;
        stop.store(true, Ordering::Relaxed);
        for s in spinners {
            s.join().unwrap();
        }
        let loaded = loaded.unwrap();
        assert!(quiet.completed >= 10, "{} completed", quiet.completed);
        assert_eq!(outcome(&quiet), outcome(&loaded));
    }

    /// Four nodes at 10 %: one node may be out, and ops' drained node is it. The demo
    /// says so and stops instead of waiting out its limit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_budget_held_by_ops_is_reported_not_waited_out() {
        let r = run(DemoArgs::new(4, 7)).await.unwrap();
        assert!(!r.finished);
        let why = r.failure().unwrap();
        assert!(
            why.contains("budget full: 1 of 1 allowed nodes out")
                && why.contains("down or drained by others: node004")
                && why.contains("ops: bad DIMM"),
            "{why}"
        );
        assert_eq!(r.completed, 0);
    }

    /// `--oci-events 3`: the emulator runs on the simulation's clock, so every window the
    /// controller asks for is ahead to OCI too (no refused request, no error left on any
    /// OCI work), and all three events complete in the first hours.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_oci_events_run_clean() {
        let r = run(DemoArgs {
            oci_events: 3,
            ..first_hours(7, 4)
        })
        .await
        .unwrap();
        let oci = r.oci.expect("an OCI report");
        assert_eq!(oci.clock_skew, SignedDuration::ZERO, "one clock");
        assert_eq!((oci.refused, &oci.refusals), (0, &vec![]));
        assert!(oci.errors.is_empty(), "{:?}", oci.errors);
        assert_eq!((oci.completed, oci.failed), (3, 0));
        assert_eq!(r.failed, r.check_failures.len(), "only the failing check");
    }

    /// The default demo: the simulated site check fails on node007, whose work ends
    /// Failed with the node kept drained and a reason naming the check (it counts as down
    /// in the budget from then on); every other node completes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_failing_its_health_check_is_kept_drained() {
        let r = run(DemoArgs::new(40, 7)).await.unwrap();
        assert!(r.finished, "{:?}", r.failure());
        assert_eq!(r.failed, 1, "{:?}", r.check_failures);
        let (node, state, reason) = &r.check_failures[0];
        assert_eq!(node, CHECK_FAILURE.0);
        assert!(state.contains("DRAIN"), "{state}");
        assert_eq!(
            reason,
            "slurm-maint: health check failed after reboot: check gpu-ecc failed: exit code 1"
        );
        assert_eq!(
            r.completed + r.failed + r.drained_by_ops,
            r.campaign_nodes,
            "the rest completed"
        );
    }

    #[test]
    fn the_kubeconfig_defaults_to_the_demo_namespace() {
        let yaml = kubeconfig("127.0.0.1:8001".parse().unwrap(), "slurm").unwrap();
        let cfg: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        let ctx = &cfg["contexts"][0]["context"];
        assert_eq!(ctx["namespace"].as_str(), Some("slurm"), "{yaml}");
        assert_eq!(
            cfg["clusters"][0]["cluster"]["server"].as_str(),
            Some("http://127.0.0.1:8001")
        );
    }

    #[test]
    fn the_limit_grows_with_the_workload() {
        let h = SignedDuration::from_hours;
        let m = SignedDuration::from_mins;
        // 40 nodes, 4 at once, jobs up to 96 h, 1 h 32 min per node at most.
        let forty = give_up_after(h(96), 40, 4, m(92));
        let two_hundred = give_up_after(h(96), 200, 20, m(92));
        assert_eq!(forty, two_hundred);
        assert!(forty > h(96 + 10 * 92 / 60));
        assert!(give_up_after(h(96), 400, 20, m(92)) > forty);
        assert!(give_up_after(h(120), 40, 4, m(92)) > forty);
    }
}
