//! Topology-aware campaigns on real Slurm: the controller binary and the agent binary run
//! a `Spread` and then a `WholeDomain` campaign over the 6 nodes of the cluster
//! `tests/slurm/cluster.sh` (22.05) or `tests/slurm/chroot.sh` (24.11, 26.05) started with
//! `SLURM_TOPOLOGY=tree|block` (domains of 2 nodes: leaf1..leaf3, or block1..block3), with
//! the API server embedded or real (`SLURM_MAINT_E2E_KUBECONFIG`); Slurm is sampled every
//! second. Runs when `SLURM_MAINT_LIVE=1` on a cluster with a topology.

use std::collections::BTreeMap;

mod common;

use slurm_maint::slurm::client::SlurmClient;

const TOKEN: &str = "topology-campaigns-token";

/// `SLURM_TOPOLOGY` as the cluster was started with it.
fn topology_kind() -> String {
    std::env::var("SLURM_TOPOLOGY").unwrap_or_default()
}

/// node1..node6 → the cluster's domain of each (`name(1..=3)`).
fn pairs(name: impl Fn(usize) -> String) -> BTreeMap<String, String> {
    (1..=6usize)
        .map(|i| (format!("node{i}"), name(i.div_ceil(2))))
        .collect()
}

/// The policy's `budget.topology` source for the cluster's `SLURM_TOPOLOGY`.
fn source() -> &'static str {
    if topology_kind() == "block" {
        "SlurmBlocks"
    } else {
        "SlurmSwitches"
    }
}

/// node → domain as the cluster was laid out (leaf1..3 or block1..3).
fn domains() -> BTreeMap<String, String> {
    let prefix = if topology_kind() == "block" {
        "block"
    } else {
        "leaf"
    };
    pairs(|d| format!("{prefix}{d}"))
}

fn sh(args: &[&str]) -> String {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Out of service for the budget: not in service, or in a MAINT reservation.
fn out(n: &slurm_maint::slurm::Node) -> bool {
    !n.state.in_service() || n.state.has("MAINTENANCE")
}

/// One sample of Slurm during a campaign.
struct Sample {
    /// domain → nodes out
    out: BTreeMap<String, Vec<String>>,
    /// nodes running a job
    busy: Vec<String>,
    /// our reservations' node lists
    reservations: Vec<(String, Vec<String>)>,
}

/// A campaign over node[1-6] with `budget`, run by the controller binary through the
/// agent, Slurm sampled every second until it completes; the samples and the
/// NodeMaintenances' domains.
async fn campaign(
    name: &str,
    budget: serde_json::Value,
) -> (Vec<Sample>, BTreeMap<String, Option<String>>) {
    use k8s_openapi::api::core::v1::Secret;
    use kube::Api;
    use kube::api::{ListParams, Patch, PatchParams, PostParams};
    use slurm_maint::api::{MaintenancePolicy, NodeMaintenance, NodeMaintenancePhase};
    use slurm_maint::apiserver::harness::TestCluster;
    use slurm_maint::plan::status::reason;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let (_agent, url, slurm) = common::start_agent(TOKEN).await;
    let nodes: Vec<String> = (1..=6).map(|i| format!("node{i}")).collect();
    let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
    common::resume_and_boot_times(&slurm, &names, "batch").await;
    // Jobs of different lengths (1-minute limits): a domain's nodes come free apart.
    for (i, n) in names.iter().enumerate() {
        let secs = 4 + 6 * (i % 2);
        sh(&[
            "sbatch",
            "--parsable",
            "-o",
            "/dev/null",
            "-p",
            "batch",
            "-w",
            n,
            "-t",
            "1",
            "--wrap",
            &format!("sleep {secs}"),
        ]);
    }
    let campaign_start = jiff::Timestamp::now();
    let c = TestCluster::start(name).await;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "agent-token"},
        "stringData": {"token": TOKEN}
    }))
    .unwrap();
    Api::<Secret>::namespaced(c.client.clone(), &c.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
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
    let _controller = common::Proc(
        Command::new(env!("CARGO_BIN_EXE_slurm-maint"))
            .args(["controller", "--namespace", &c.namespace])
            .args(["--lease-namespace", &c.namespace, "--identity", name])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let policy: MaintenancePolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "slurm-maint.io/v1alpha1",
        "kind": "MaintenancePolicy",
        "metadata": {"name": name},
        "spec": {
            "partition": "batch",
            "nodelist": "node[1-6]",
            "agent": {"url": url, "tokenSecretRef": {"name": "agent-token"}},
            "budget": budget,
            "reservations": {"enabled": true, "duration": "1h"},
            "reboots": {"enabled": true, "timeout": "2m"},
            "interval": "5s",
            "campaign": {"rebootRequiredBefore": campaign_start.to_string()},
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

    let of = domains();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut samples = vec![];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let snap = slurm.snapshot("batch").await.unwrap();
        let mut out_by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in snap.nodes.iter().filter(|n| out(n)) {
            out_by_domain
                .entry(of[&n.name].clone())
                .or_default()
                .push(n.name.clone());
        }
        let busy = snap
            .jobs
            .iter()
            .filter(|j| j.state == "RUNNING")
            .flat_map(|j| j.nodes.clone())
            .collect();
        let reservations = snap
            .reservations
            .iter()
            .filter(|r| r.name.starts_with("slurm-maint"))
            .map(|r| (r.name.clone(), r.nodes.clone()))
            .collect();
        samples.push(Sample {
            out: out_by_domain,
            busy,
            reservations,
        });
        let p = policies.get(name).await.unwrap();
        let progressing = p.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.r#type == "Progressing")
                .map(|c| c.reason.clone())
        });
        if progressing.as_deref() == Some(reason::CAMPAIGN_COMPLETE) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: campaign not done in 300 s: {:#?}",
            p.status
        );
    }
    // Complete means returned: none of our reservations is left in Slurm.
    let left: Vec<String> = slurm
        .snapshot("batch")
        .await
        .unwrap()
        .reservations
        .into_iter()
        .filter(|r| r.name.starts_with("slurm-maint"))
        .map(|r| r.name)
        .collect();
    assert!(
        left.is_empty(),
        "{name}: campaign complete with reservations left in Slurm: {left:?}"
    );
    let items = Api::<NodeMaintenance>::namespaced(c.client.clone(), &c.namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut domain_of = BTreeMap::new();
    for nm in &items {
        let s = nm.status.clone().unwrap();
        assert_eq!(
            s.phase,
            NodeMaintenancePhase::Completed,
            "{}: {s:?}",
            nm.spec.node_name
        );
        domain_of.insert(nm.spec.node_name.clone(), s.domain.clone());
    }
    assert_eq!(domain_of.len(), 6, "{domain_of:?}");
    c.cleanup().await;
    (samples, domain_of)
}

/// Spread, 1 per domain, a partition budget of 3 over 3 domains of 2: never two nodes of
/// one domain out (sampled every second); then WholeDomain with a budget of 2: each domain
/// out whole under one reservation, never partly out while its other nodes run jobs. One
/// test: both campaigns need the same nodes.
#[tokio::test]
async fn spread_and_whole_domain_campaigns_on_real_slurm() {
    if !common::live() {
        return;
    }
    if topology_kind().is_empty() {
        eprintln!("skipped: the cluster has no topology (SLURM_TOPOLOGY=tree|block)");
        return;
    }
    let of = domains();
    let want_domains: BTreeMap<String, Option<String>> = of
        .iter()
        .map(|(n, d)| (n.clone(), Some(d.clone())))
        .collect();

    let (samples, domain_of) = campaign(
        "spread",
        serde_json::json!({
            "maxUnavailable": 3, "reservationLeadTime": "0s",
            "topology": {"source": source(), "mode": "Spread", "maxUnavailablePerDomain": 1},
        }),
    )
    .await;
    let most = samples
        .iter()
        .flat_map(|s| s.out.values().map(Vec::len))
        .max()
        .unwrap_or(0);
    for (i, s) in samples.iter().enumerate() {
        for (d, nodes) in &s.out {
            assert!(
                nodes.len() <= 1,
                "spread: sample {i}: {d} has {nodes:?} out"
            );
        }
        assert!(
            s.out.values().map(Vec::len).sum::<usize>() <= 3,
            "sample {i}: {:?}",
            s.out
        );
    }
    assert_eq!(most, 1, "some node was seen out");
    assert_eq!(
        domain_of, want_domains,
        "spread: NodeMaintenance status.domain"
    );
    eprintln!(
        "spread: {} samples, at most 1 node out per domain",
        samples.len()
    );

    let (samples, domain_of) = campaign(
        "whole",
        serde_json::json!({
            "maxUnavailable": 2, "reservationLeadTime": "0s",
            "topology": {"source": source(), "mode": "WholeDomain"},
        }),
    )
    .await;
    let members = |d: &str| -> Vec<String> {
        of.iter()
            .filter(|(_, x)| *x == d)
            .map(|(n, _)| n.clone())
            .collect()
    };
    let mut seen_whole = std::collections::BTreeSet::new();
    for (i, s) in samples.iter().enumerate() {
        assert!(
            s.out.values().map(Vec::len).sum::<usize>() <= 2,
            "sample {i}: {:?}",
            s.out
        );
        for (d, nodes) in &s.out {
            let rest: Vec<String> = members(d)
                .into_iter()
                .filter(|n| !nodes.contains(n))
                .collect();
            assert!(
                rest.iter().all(|n| !s.busy.contains(n)),
                "whole: sample {i}: {d} partly out ({nodes:?}) while {rest:?} run jobs ({:?})",
                s.busy
            );
            if rest.is_empty() {
                seen_whole.insert(d.clone());
            }
        }
        for (name, nodes) in &s.reservations {
            let d = &of[&nodes[0]];
            let mut all = members(d);
            all.sort();
            let mut got = nodes.clone();
            got.sort();
            assert_eq!(
                got, all,
                "whole: sample {i}: reservation {name} is not all of {d}"
            );
            assert!(
                name.starts_with(&format!("slurm-maint-{d}-")),
                "whole: reservation {name} not named after {d}"
            );
        }
    }
    assert_eq!(
        seen_whole.len(),
        3,
        "every domain seen out whole: {seen_whole:?}"
    );
    assert_eq!(
        domain_of, want_domains,
        "whole: NodeMaintenance status.domain"
    );
    eprintln!("whole: {} samples, every domain out whole", samples.len());
}
