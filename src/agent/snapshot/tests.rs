use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::agent::runner::CommandOutput;

/// Slurm's answers, changeable between snapshots, and the commands asked.
#[derive(Default)]
struct Slurm {
    answers: Mutex<HashMap<String, String>>,
    asked: Mutex<Vec<String>>,
}

impl Slurm {
    fn set(&self, verb: &str, text: impl Into<String>) {
        self.answers
            .lock()
            .unwrap()
            .insert(verb.into(), text.into());
    }

    async fn run(&self, argv: Argv) -> Result<String, SlurmError> {
        let verb = commands::verb(&argv);
        self.asked.lock().unwrap().push(verb.clone());
        let out = self.answers.lock().unwrap().get(&verb).cloned();
        CommandOutput {
            stdout: out.clone().unwrap_or_default(),
            stderr: if out.is_none() {
                format!("nothing for {verb}")
            } else {
                String::new()
            },
            code: Some(if out.is_some() { 0 } else { 1 }),
            ..Default::default()
        }
        .into_result(&argv)
    }

    /// Commands asked since the last call.
    fn asked(&self) -> Vec<String> {
        let mut v = std::mem::take(&mut *self.asked.lock().unwrap());
        v.sort();
        v
    }
}

const THREE: [&str; 3] = ["scontrol show node", "scontrol show reservation", "squeue"];
const FOUR: [&str; 4] = [
    "scontrol show node",
    "scontrol show partition",
    "scontrol show reservation",
    "squeue",
];
/// The first pass, or one after the cache expired: partitions and topology too.
const FIVE: [&str; 5] = [
    "scontrol show node",
    "scontrol show partition",
    "scontrol show reservation",
    "scontrol show topology",
    "squeue",
];

fn job(id: u64, partition: &str, state: &str, nodes: &str, qos: &str) -> String {
    let fields = [
        &id.to_string(),
        partition,
        state,
        nodes,
        "2026-11-22T06:00:00",
        "2026-11-22T07:00:00",
        "1:00:00",
        qos,
        "alice",
        "j",
    ];
    format!("{}\u{1e}\n", fields.join("\u{1f}"))
}

fn node(name: &str, partitions: &str) -> String {
    format!(
        "NodeName={name} State=IDLE Partitions={partitions} BootTime=2026-11-22T06:00:00 Reason=(null)\n"
    )
}

/// Partitions `batch` (node[1-4], OFF), `scavenger` (node[1-4], `scavenger_mode`),
/// `other` (other1, OFF).
fn partitions(scavenger_mode: &str) -> String {
    format!(
        "PartitionName=batch Nodes=node[1-4] PriorityTier=10 PreemptMode=OFF State=UP\n\
         PartitionName=scavenger Nodes=node[1-4] PriorityTier=1 PreemptMode={scavenger_mode} State=UP\n\
         PartitionName=other Nodes=other1 PriorityTier=10 PreemptMode=OFF State=UP\n"
    )
}

fn slurm(jobs: &str) -> Slurm {
    let s = Slurm::default();
    let mut nodes: String = (1..=4)
        .map(|i| node(&format!("node{i}"), "batch,scavenger"))
        .collect();
    nodes.push_str(&node("other1", "other"));
    s.set("scontrol show node", nodes);
    s.set("squeue", jobs);
    s.set(
        "scontrol show reservation",
        "No reservations in the system\n",
    );
    s.set("scontrol show partition", partitions("CANCEL"));
    // 24.11+ without a topology: nothing at all.
    s.set("scontrol show topology", "");
    s
}

static UTC: TimeZone = TimeZone::UTC;

fn inputs<'a>(partition: &'a str, qos: &'a [String]) -> Inputs<'a> {
    Inputs {
        partition,
        tz: &UTC,
        preemptable_qos: qos,
    }
}

async fn take_with(s: &Slurm, cache: &PartitionCache, partition: &str) -> PartitionSnapshot {
    let qos = ["spot".to_string()];
    take(|argv| s.run(argv), cache, &inputs(partition, &qos))
        .await
        .unwrap()
}

fn flags(snap: &PartitionSnapshot) -> Vec<(u64, bool)> {
    snap.jobs.iter().map(|j| (j.id, j.preemptable)).collect()
}

#[test]
fn the_cache_keeps_partitions_for_its_ttl_only() {
    let p = scontrol_parts("CANCEL");
    let off = PartitionCache::new(Duration::ZERO);
    off.put(p.clone());
    assert!(off.get().is_none(), "a zero TTL caches nothing");
    let short = PartitionCache::new(Duration::from_millis(50));
    assert!(short.get().is_none());
    short.put(p.clone());
    assert_eq!(short.get().unwrap().as_slice(), p.as_slice());
    std::thread::sleep(Duration::from_millis(60));
    assert!(short.get().is_none(), "expired");
}

fn scontrol_parts(mode: &str) -> Vec<Partition> {
    parse::scontrol_partitions(&partitions(mode)).unwrap()
}

fn parsed(s: &Slurm) -> (Vec<Node>, Vec<Job>) {
    let a = s.answers.lock().unwrap();
    (
        parse::scontrol_nodes(&a["scontrol show node"], &TimeZone::UTC).unwrap(),
        parse::squeue_narrow(&a["squeue"], &TimeZone::UTC, &[]).unwrap(),
    )
}

#[test]
fn doubts() {
    let qos = ["spot".to_string()];
    let batch = inputs("batch", &qos);
    let parts = scontrol_parts("CANCEL");
    let quiet = slurm(&job(1, "batch", "RUNNING", "node1", "normal"));
    let (nodes, jobs) = parsed(&quiet);
    assert_eq!(doubt(&batch, &nodes, &jobs, &parts), None);
    assert_eq!(
        doubt(&inputs("gpu", &qos), &nodes, &jobs, &parts),
        Some(Doubt::UnknownPartition("gpu".into()))
    );

    // A node names a partition made since the cache was filled.
    let mut more = nodes.clone();
    more[0].partitions.push("gpu".into());
    assert_eq!(
        doubt(&batch, &more, &jobs, &parts),
        Some(Doubt::UnknownPartition("gpu".into()))
    );
    // node4 left batch.
    let mut fewer = nodes.clone();
    fewer[3].partitions = vec!["scavenger".into()];
    assert_eq!(
        doubt(&batch, &fewer, &jobs, &parts),
        Some(Doubt::Membership("batch".into()))
    );
    // A record listing no node (Nodes=ALL): membership comes from the nodes alone.
    let mut all = parts.clone();
    all[0].nodes = vec!["ALL".into()];
    assert_eq!(doubt(&batch, &nodes, &jobs, &all), None);

    // Preemptable only by the cached PreemptMode: doubt. By QOS, or not at all: none.
    let jobs = parse::squeue_narrow(
        &[
            job(2, "scavenger", "RUNNING", "node2", "spot"),
            job(3, "scavenger", "COMPLETED", "node2", "normal"),
            job(4, "scavenger", "RUNNING", "other1", "normal"),
        ]
        .concat(),
        &TimeZone::UTC,
        &[],
    )
    .unwrap();
    assert_eq!(doubt(&batch, &nodes, &jobs, &parts), None);
    let jobs = parse::squeue_narrow(
        &job(5, "scavenger", "RUNNING", "node2", "normal"),
        &TimeZone::UTC,
        &[],
    )
    .unwrap();
    assert_eq!(
        doubt(&batch, &nodes, &jobs, &parts),
        Some(Doubt::Preemption(5))
    );
    assert_eq!(doubt(&batch, &nodes, &jobs, &scontrol_parts("OFF")), None);
}

#[tokio::test]
async fn three_commands_while_the_cache_vouches() {
    let s = slurm(
        &[
            job(1, "batch", "RUNNING", "node1", "normal"),
            job(2, "scavenger", "RUNNING", "node2", "spot"),
        ]
        .concat(),
    );
    let cache = PartitionCache::new(Duration::from_secs(300));
    let first = take_with(&s, &cache, "batch").await;
    assert_eq!(s.asked(), FIVE);
    assert_eq!(first.topology, None, "no topology");
    assert_eq!(flags(&first), [(1, false), (2, true)]);
    for _ in 0..3 {
        let again = take_with(&s, &cache, "batch").await;
        assert_eq!(s.asked(), THREE);
        assert_eq!(again, first);
    }
    // Other partitions are answered from the same cache.
    assert_eq!(take_with(&s, &cache, "other").await.nodes.len(), 1);
    assert_eq!(s.asked(), THREE);

    let uncached = PartitionCache::new(Duration::ZERO);
    for _ in 0..2 {
        take_with(&s, &uncached, "batch").await;
        assert_eq!(
            s.asked(),
            FIVE,
            "TTL 0 reads partitions and topology every time"
        );
    }
}

/// The cache said scavenger preempts; an administrator set PreemptMode=OFF since. The job
/// there must not look preemptable.
#[tokio::test]
async fn a_stale_preempt_mode_never_makes_a_job_preemptable() {
    let s = slurm(&job(1, "batch", "RUNNING", "node1", "normal"));
    let cache = PartitionCache::new(Duration::from_secs(2));
    take_with(&s, &cache, "batch").await;
    s.asked();
    s.set("scontrol show partition", partitions("OFF"));
    s.set("squeue", job(7, "scavenger", "RUNNING", "node3", "normal"));
    let snap = take_with(&s, &cache, "batch").await;
    assert_eq!(flags(&snap), [(7, false)]);
    assert_eq!(s.asked(), FOUR, "read again before answering");
    assert!(
        !parse::preempting_partitions(&cache.get().unwrap()).contains(&"scavenger".to_string())
    );

    // It preempts again: until the cache expires, the job stays on the safe side.
    s.set("scontrol show partition", partitions("REQUEUE"));
    assert_eq!(flags(&take_with(&s, &cache, "batch").await), [(7, false)]);
    assert_eq!(s.asked(), THREE);
    std::thread::sleep(Duration::from_millis(2100));
    // Then each answer that relies on it is read fresh (the first with the expired topology).
    for want in [&FIVE[..], &FOUR[..]] {
        assert_eq!(flags(&take_with(&s, &cache, "batch").await), [(7, true)]);
        assert_eq!(s.asked(), want);
    }
    // Preemptable by QOS: no partition needs vouching.
    s.set("squeue", job(8, "scavenger", "RUNNING", "node3", "spot"));
    assert_eq!(flags(&take_with(&s, &cache, "batch").await), [(8, true)]);
    assert_eq!(s.asked(), THREE);
}

#[tokio::test]
async fn new_partitions_and_moved_nodes_are_read_early() {
    let s = slurm(&job(1, "batch", "RUNNING", "node1", "normal"));
    let cache = PartitionCache::new(Duration::from_secs(300));
    take_with(&s, &cache, "batch").await;
    s.asked();

    // node5 joins batch and a new partition gpu.
    let mut nodes: String = (1..=5)
        .map(|i| node(&format!("node{i}"), "batch,scavenger,gpu"))
        .collect();
    nodes.push_str(&node("other1", "other"));
    s.set("scontrol show node", nodes);
    s.set(
        "scontrol show partition",
        format!(
            "{}PartitionName=gpu Nodes=node[1-5] PreemptMode=OFF\n",
            partitions("CANCEL").replace("node[1-4]", "node[1-5]")
        ),
    );
    let snap = take_with(&s, &cache, "batch").await;
    assert_eq!(s.asked(), FOUR);
    assert_eq!(snap.nodes.len(), 5);
    assert_eq!(snap.partitions.len(), 4);
    take_with(&s, &cache, "gpu").await;
    assert_eq!(s.asked(), THREE, "gpu is known now");

    // A partition nobody has: read again, then not found.
    let qos: [String; 0] = [];
    let err = take(|argv| s.run(argv), &cache, &inputs("nosuch", &qos))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotFound(_)), "{err}");
    assert_eq!(s.asked(), FOUR);
}

#[tokio::test]
async fn slurm_errors_pass_through() {
    let s = slurm("");
    s.answers.lock().unwrap().remove("squeue");
    let cache = PartitionCache::new(Duration::from_secs(300));
    let qos: [String; 0] = [];
    let err = take(|argv| s.run(argv), &cache, &inputs("batch", &qos))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Slurm(_)), "{err}");
    assert!(
        cache.get().is_none(),
        "nothing cached from a failed snapshot"
    );
    s.set("squeue", "garbage without the format\n");
    let err = take(|argv| s.run(argv), &cache, &inputs("batch", &qos))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Output(_)), "{err}");
}

fn fixture(path: &str) -> String {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Real `scontrol show topology` of 24.11 (blocks) and 22.05 (switches) in the snapshot,
/// read once per TTL like the partitions.
#[tokio::test]
async fn the_topology_is_read_once_per_ttl() {
    let s = slurm(&job(1, "batch", "RUNNING", "node1", "normal"));
    s.set(
        "scontrol show topology",
        fixture("slurm-24.11/topology-block/scontrol-show-topology.txt"),
    );
    let cache = PartitionCache::new(Duration::from_secs(2));
    let first = take_with(&s, &cache, "batch").await;
    assert_eq!(s.asked(), FIVE);
    let t = first.topology.as_ref().expect("a topology");
    let blocks: Vec<(&str, &[String])> = t
        .blocks
        .iter()
        .map(|b| (b.name.as_str(), b.nodes.as_slice()))
        .collect();
    assert_eq!(
        blocks,
        [
            ("block1", &["node1".to_string(), "node2".into()][..]),
            ("block2", &["node3".to_string(), "node4".into()][..]),
            ("block3", &["node5".to_string(), "node6".into()][..]),
        ]
    );
    assert!(t.switches.is_empty());
    // Every block, also of nodes outside the partition: a domain may span partitions.
    assert_eq!(first.nodes.len(), 4);

    // A reconfigure to switches shows only once the cache expires.
    s.set(
        "scontrol show topology",
        fixture("slurm-22.05/topology-tree/scontrol-show-topology.txt"),
    );
    let again = take_with(&s, &cache, "batch").await;
    assert_eq!(s.asked(), THREE);
    assert_eq!(again.topology, first.topology);
    std::thread::sleep(Duration::from_millis(2100));
    let later = take_with(&s, &cache, "batch").await;
    assert_eq!(s.asked(), FIVE);
    let t = later.topology.expect("a topology");
    assert!(t.blocks.is_empty());
    assert_eq!(t.switch_domains(0)["node3"], "leaf2");
    assert_eq!(t.switch_domains(1)["node6"], "spine");
}

/// Partitions read again for a doubt do not read the topology again.
#[tokio::test]
async fn a_partition_doubt_leaves_the_topology_cached() {
    let s = slurm(&job(8, "scavenger", "RUNNING", "node2", "normal"));
    let cache = PartitionCache::new(Duration::from_secs(300));
    take_with(&s, &cache, "batch").await;
    assert_eq!(s.asked(), FIVE);
    take_with(&s, &cache, "batch").await;
    assert_eq!(
        s.asked(),
        FOUR,
        "partitions doubted (job 8), the topology not"
    );
}

#[tokio::test]
async fn topology_answers_of_real_slurm_without_one() {
    let qos: [String; 0] = [];
    // 22.05: a message on stderr, exit 0; the agent only sees the empty stdout.
    let s = slurm("");
    let cache = PartitionCache::new(Duration::ZERO);
    let snap = take(|argv| s.run(argv), &cache, &inputs("batch", &qos))
        .await
        .unwrap();
    assert_eq!(snap.topology, None);
    // Should a version exit 1 with that message: still no topology, no error.
    s.answers.lock().unwrap().remove("scontrol show topology");
    let run = |argv: Argv| {
        let asked = commands::verb(&argv);
        let fut = s.run(argv);
        async move {
            if asked == "scontrol show topology" {
                return CommandOutput {
                    stderr: "scontrol: error: No topology information available\n".into(),
                    code: Some(1),
                    ..Default::default()
                }
                .into_result(&commands::show_topology());
            }
            fut.await
        }
    };
    let snap = take(run, &cache, &inputs("batch", &qos)).await.unwrap();
    assert_eq!(snap.topology, None);
    // Any other failure, or output that is no topology, fails the snapshot.
    let err = take(|argv| s.run(argv), &cache, &inputs("batch", &qos))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("scontrol show topology"), "{err}");
    s.set(
        "scontrol show topology",
        "SwitchName=s1 Level=zero Nodes=node1\n",
    );
    let err = take(|argv| s.run(argv), &cache, &inputs("batch", &qos))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Output(_)), "{err}");
    assert!(err.to_string().contains("bad Level"), "{err}");
}
