//! The agent binary against a live Slurm 22.05 (the cluster `tests/slurm/cluster.sh up`
//! starts), driven through the controller's own [`AgentClient`]. Runs when
//! `SLURM_MAINT_LIVE=1` (set by `tests/run.sh`). Each test works on its own node.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use slurm_maint::agent::api::PartitionSnapshot;
use slurm_maint::plan::Action;
use slurm_maint::slurm::client::{AgentClient, SlurmClient, SlurmError};

const TOKEN: &str = "live-test-token";

fn live() -> bool {
    let on = std::env::var("SLURM_MAINT_LIVE").as_deref() == Ok("1");
    if !on {
        eprintln!("skipped: set SLURM_MAINT_LIVE=1 with a running cluster (tests/run.sh does)");
    }
    on
}

fn state_dir() -> PathBuf {
    std::env::var("SLURM_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".slurm-test"))
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The agent (killed when dropped), its URL and a client.
struct Agent {
    _proc: common::AgentProc,
    base: String,
    client: AgentClient,
}

/// A plain reqwest client; reqwest is built without a crypto provider of its own.
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The agent on a free port, once its /healthz answers 200.
async fn agent() -> Agent {
    let proc = common::spawn_agent(TOKEN, &[], |port| async move {
        http()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let base = format!("http://127.0.0.1:{}", proc.port);
    let client = AgentClient::new(&base, TOKEN, Duration::from_secs(30)).unwrap();
    Agent {
        _proc: proc,
        base,
        client,
    }
}

/// Poll the partition until `cond` holds (or fail after `secs`).
async fn wait_for(
    a: &Agent,
    secs: u64,
    what: &str,
    cond: impl Fn(&PartitionSnapshot) -> bool,
) -> PartitionSnapshot {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let snap = a.client.snapshot("batch").await.unwrap();
        if cond(&snap) {
            return snap;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:#?}",
            snap.nodes
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn node<'a>(s: &'a PartitionSnapshot, name: &str) -> &'a slurm_maint::slurm::Node {
    s.nodes.iter().find(|n| n.name == name).unwrap()
}

async fn commands_run(a: &Agent) -> f64 {
    let text = http()
        .get(format!("{}/metrics", a.base))
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
async fn snapshot_is_batched_and_requests_are_authenticated_and_validated() {
    if !live() {
        return;
    }
    let a = agent().await;
    let before = commands_run(&a).await;
    let snap = a.client.snapshot("batch").await.unwrap();
    assert_eq!(snap.nodes.len(), 6);
    assert!(
        snap.partitions
            .iter()
            .any(|p| p.name == "scavenger" && p.preempts())
    );
    assert_eq!(
        commands_run(&a).await - before,
        5.0,
        "one command per kind (partitions and topology too, cached from now on), whatever the node count"
    );
    // Partitions are cached now; they are read again to vouch for a job preemptable by its
    // partition, or when a node names a partition the cache lacks (other tests may run such
    // a job, or make a partition, at this moment).
    let names = |s: &PartitionSnapshot| -> Vec<String> {
        s.partitions.iter().map(|p| p.name.clone()).collect()
    };
    let mut known = names(&snap);
    for partition in ["batch", "debug", "batch"] {
        let before = commands_run(&a).await;
        let snap = a.client.snapshot(partition).await.unwrap();
        let vouch = snap.jobs.iter().any(|j| {
            j.preemptable
                && snap
                    .partitions
                    .iter()
                    .any(|p| p.name == j.partition && p.preempts())
        });
        let changed = names(&snap) != known;
        known = names(&snap);
        assert_eq!(
            commands_run(&a).await - before,
            if vouch || changed { 4.0 } else { 3.0 },
            "{partition}: {:?}",
            snap.jobs
        );
        assert_eq!(snap.nodes.len(), if partition == "debug" { 2 } else { 6 });
    }

    let http = http();
    let url = format!("{}/v1/partitions/batch/snapshot", a.base);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        http.get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    for bad in [
        "node1;rm -rf /",
        "$(reboot)",
        "`id`",
        "node 1",
        "-rf",
        "a|b",
        &"n".repeat(200),
    ] {
        let enc: String = bad.bytes().map(|b| format!("%{b:02X}")).collect();
        let r = http
            .post(format!("{}/v1/nodes/{enc}/drain", a.base))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"reason": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], "InvalidName", "{bad}");
    }
}

#[tokio::test]
async fn maint_reservation_lifecycle_and_foreign_reservations() {
    if !live() {
        return;
    }
    let a = agent().await;
    let name = "slurm-maint-node1-live".to_string();
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2);
    let create = Action::CreateReservation {
        name: name.clone(),
        node: "node1".into(),
        with: vec![],
        start: Some(later),
        duration: jiff::SignedDuration::from_mins(30),
        users: vec!["root".into()],
        accounts: vec![],
        flags: vec!["MAINT".into()],
    };
    a.client.execute(&create).await.unwrap();
    let snap = a.client.snapshot("batch").await.unwrap();
    let r = snap.reservations.iter().find(|r| r.name == name).unwrap();
    assert!(r.is_maint() && r.nodes == ["node1"]);
    assert_eq!(r.start.as_second() / 60, later.as_second() / 60);
    assert!(!node(&snap, "node1").state.in_maintenance());

    // Jobs ended early: the reservation moves to now and the node shows MAINTENANCE.
    a.client
        .execute(&Action::UpdateReservationStart {
            name: name.clone(),
            start: None,
        })
        .await
        .unwrap();
    wait_for(&a, 15, "node1 in maintenance", |s| {
        node(s, "node1").state.in_maintenance()
    })
    .await;

    // The node list can change too.
    let r = http()
        .patch(format!("{}/v1/reservations/{name}", a.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"nodes": ["node[1-2]"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let snap = wait_for(&a, 15, "node2 in maintenance", |s| {
        node(s, "node2").state.in_maintenance()
    })
    .await;
    let r = snap.reservations.iter().find(|r| r.name == name).unwrap();
    assert_eq!(r.nodes, ["node1", "node2"]);

    // A reservation that is not ours is never deleted.
    sh(&[
        "scontrol",
        "create",
        "reservation",
        "ReservationName=ops-hold",
        "StartTime=now+1day",
        "Duration=60",
        "Nodes=node2",
        "Users=root",
        "Flags=MAINT",
    ]);
    let err = a
        .client
        .execute(&Action::DeleteReservation {
            name: "ops-hold".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SlurmError::Refused { status: 403, .. }),
        "{err}"
    );
    assert!(sh(&["scontrol", "show", "reservation", "-o"]).contains("ReservationName=ops-hold"));
    sh(&["scontrol", "delete", "ReservationName=ops-hold"]);

    a.client
        .execute(&Action::DeleteReservation { name: name.clone() })
        .await
        .unwrap();
    let snap = wait_for(&a, 15, "node1 out of maintenance", |s| {
        !node(s, "node1").state.in_maintenance()
    })
    .await;
    assert!(snap.reservations.iter().all(|r| r.name != name));
}

#[tokio::test]
async fn drain_and_resume_but_never_someone_elses_drain() {
    if !live() {
        return;
    }
    let a = agent().await;
    a.client.drain("node3", "live test drain").await.unwrap();
    let snap = wait_for(&a, 10, "node3 drained", |s| {
        node(s, "node3").state.is_drained()
    })
    .await;
    assert_eq!(
        node(&snap, "node3").reason.as_deref(),
        Some("slurm-maint: live test drain")
    );
    a.client.resume("node3").await.unwrap();
    wait_for(&a, 10, "node3 back", |s| {
        node(s, "node3").state.in_service()
    })
    .await;

    sh(&[
        "scontrol",
        "update",
        "NodeName=node3",
        "State=DRAIN",
        "Reason=ops: hands off",
    ]);
    let err = a.client.resume("node3").await.unwrap_err();
    assert!(
        matches!(&err, SlurmError::Refused { status: 409, .. }),
        "{err}"
    );
    let snap = a.client.snapshot("batch").await.unwrap();
    assert_eq!(
        node(&snap, "node3").reason.as_deref(),
        Some("ops: hands off")
    );
    sh(&["scontrol", "update", "NodeName=node3", "State=RESUME"]);
}

#[tokio::test]
async fn reboot_brings_a_new_boot_time() {
    if !live() {
        return;
    }
    let a = agent().await;
    // Just after a resume Slurm shows `IDLE+NOT_RESPONDING BootTime=None` for a moment.
    let snap = wait_for(&a, 30, "node4 with a boot time", |s| {
        node(s, "node4").boot_time.is_some()
    })
    .await;
    let before = node(&snap, "node4").boot_time.unwrap();
    // BootTime has one-second resolution: make sure the new boot is a later second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.client
        .execute(&Action::Reboot {
            node: "node4".into(),
            reason: "live test reboot".into(),
        })
        .await
        .unwrap();
    let snap = wait_for(&a, 90, "node4 rebooted and idle", |s| {
        let n = node(s, "node4");
        n.boot_time.is_some_and(|t| t > before) && n.state.in_service()
    })
    .await;
    assert_eq!(node(&snap, "node4").state.base, "IDLE");
    // Slurm 24.11 without accounting storage keeps the reboot's reason; 22.05 and 26.05
    // clear it. Either way no reason of ours is left once it is retired.
    let ours = |s: &PartitionSnapshot| {
        node(s, "node4")
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("slurm-maint: "))
    };
    if ours(&snap) {
        let done = a
            .client
            .execute(&Action::ClearReason {
                node: "node4".into(),
            })
            .await
            .unwrap();
        assert!(done.changed);
    } else {
        let err = a
            .client
            .execute(&Action::ClearReason {
                node: "node4".into(),
            })
            .await;
        assert!(
            err.is_ok_and(|d| !d.changed),
            "no reason: nothing to retire"
        );
    }
    let snap = a.client.snapshot("batch").await.unwrap();
    assert!(!ours(&snap), "{:?}", node(&snap, "node4").reason);
}

/// A node that never comes back from its reboot (its slurmd stays stopped) ends DOWN with
/// "reboot timed out" after ResumeTimeout. (The `noboot` knob, a slurmd restarted without
/// a new boot time, raced in Slurm 22.05: now and then the node was returned to service
/// at ResumeTimeout instead, with its old boot time.)
/// node5's tests take turns.
static NODE5: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Brings node5's slurmd back with a fresh boot, however a test ends.
struct Revive(PathBuf);

impl Drop for Revive {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let conf = std::env::var("SLURM_CONF").unwrap_or_default();
        let _ = Command::new("slurmd")
            .args(["-N", "node5", "-f", &conf, "-b"])
            .status();
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(200));
            let out = Command::new("sinfo")
                .args(["-h", "-N", "-n", "node5", "-o", "%T"])
                .output();
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle") {
                return;
            }
            let _ = Command::new("scontrol")
                .args(["update", "NodeName=node5", "State=RESUME"])
                .output();
        }
    }
}

/// A rebooted node whose slurmd comes back without reporting a boot: 22.05 and 24.11 mark
/// it DOWN "reboot timed out", 26.05 returns it to service with its old BootTime. Either
/// way it was not rebooted, and the planner, fed what the agent reports, never passes it:
/// its attempt fails at the reboot timeout.
#[tokio::test]
async fn a_reboot_without_a_new_boot_is_no_reboot() {
    use slurm_maint::api::node_maintenance::NodeMaintenancePhase as Phase;
    use slurm_maint::api::{MaintenanceAction, MaintenancePolicySpec};
    use slurm_maint::plan::{self, Settings, Snapshot, Work};
    if !live() {
        return;
    }
    let _turn = NODE5.lock().await;
    let a = agent().await;
    let snap = wait_for(&a, 60, "node5 idle with a boot time", |s| {
        let n = node(s, "node5");
        n.boot_time.is_some() && n.state.in_service()
    })
    .await;
    let before = node(&snap, "node5").boot_time.unwrap();
    let knob = state_dir().join("noboot").join("node5");
    std::fs::create_dir_all(knob.parent().unwrap()).unwrap();
    std::fs::write(&knob, "").unwrap();
    let _revive = Revive(knob);
    let issued = jiff::Timestamp::now();
    a.client
        .execute(&Action::Reboot {
            node: "node5".into(),
            reason: "live test noboot".into(),
        })
        .await
        .unwrap();
    let snap = wait_for(&a, 240, "node5 back without a boot, or DOWN", |s| {
        let n = node(s, "node5");
        !n.state.is_rebooting()
            && (n.state.base == "DOWN" || (n.state.in_service() && n.boot_time.is_some()))
    })
    .await;
    let n5 = node(&snap, "node5");
    assert!(
        n5.boot_time
            .is_none_or(|t| t <= before + jiff::SignedDuration::from_secs(2)),
        "no new boot: {:?} vs {before}",
        n5.boot_time
    );
    let mut spec: MaintenancePolicySpec = serde_json::from_value(serde_json::json!({
        "partition": "batch",
        "agent": {"url": "http://agent", "tokenSecretRef": {"name": "t"}},
        "budget": {"maxUnavailable": 6},
        "reservations": {"enabled": true},
        "reboots": {"enabled": true, "timeout": "10m"},
    }))
    .unwrap();
    spec.campaign.reboot_required_before = Some(issued);
    let s = Settings::from_spec(&spec, issued).unwrap();
    let mut work = Work {
        name: "live-node5".into(),
        node: "node5".into(),
        action: MaintenanceAction::Reboot,
        campaign: Some(plan::campaign_id(issued)),
        status: Default::default(),
        oci: None,
    };
    work.status.phase = Phase::Rebooting;
    work.status.attempts = 1;
    work.status.boot_time_before = Some(before);
    work.status.reboot_issued_at = Some(issued);
    let facts = Snapshot {
        nodes: snap.nodes.clone(),
        jobs: snap.jobs.clone(),
        reservations: snap.reservations.clone(),
        health: Default::default(),
        topology: snap.topology.clone(),
    };
    let now = jiff::Timestamp::now();
    let p = plan::plan("live", &s, &facts, std::slice::from_ref(&work), now);
    let phase_of = |p: &plan::Plan| {
        p.updates
            .iter()
            .find(|u| u.name == "live-node5")
            .map_or(Phase::Rebooting, |u| u.status.phase)
    };
    assert!(
        matches!(
            phase_of(&p),
            Phase::Rebooting | Phase::Recovering | Phase::PendingReboot
        ),
        "node5 {} passed as rebooted: {:?}",
        n5.state,
        p.updates
    );
    assert_ne!(phase_of(&p), Phase::HealthCheck);
    let later = issued + jiff::SignedDuration::from_mins(11);
    let p = plan::plan("live", &s, &facts, std::slice::from_ref(&work), later);
    assert_eq!(phase_of(&p), Phase::PendingReboot, "{:?}", p.updates);
}

#[tokio::test]
async fn a_node_that_never_reports_its_boot_ends_down() {
    if !live() {
        return;
    }
    let _turn = NODE5.lock().await;
    let a = agent().await;
    let knob = state_dir().join("hang").join("node5");
    std::fs::create_dir_all(knob.parent().unwrap()).unwrap();
    std::fs::write(&knob, "").unwrap();
    let _revive = Revive(knob);
    a.client
        .execute(&Action::Reboot {
            node: "node5".into(),
            reason: "live test timeout".into(),
        })
        .await
        .unwrap();
    let snap = wait_for(&a, 240, "node5 DOWN after reboot timeout", |s| {
        let n = node(s, "node5");
        n.state.base == "DOWN"
            && !n.state.is_rebooting()
            && n.reason
                .as_deref()
                .is_some_and(|r| r.contains("reboot timed out"))
    })
    .await;
    assert!(node(&snap, "node5").state.is_down());
    // Slurm took it down; the reason still starts with ours, which proves nothing.
    assert!(
        node(&snap, "node5")
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("slurm-maint: ")),
        "{:?}",
        node(&snap, "node5").reason
    );
    let err = a.client.resume("node5").await.unwrap_err();
    assert!(
        matches!(&err, SlurmError::Refused { status: 409, .. })
            && err.to_string().contains("DownBySlurm"),
        "{err}"
    );
    let snap = a.client.snapshot("batch").await.unwrap();
    assert_eq!(node(&snap, "node5").state.base, "DOWN");
}

#[tokio::test]
async fn only_preemptable_jobs_are_cancelled() {
    if !live() {
        return;
    }
    let a = agent().await;
    let submit = |part: &str| -> u64 {
        sh(&[
            "sbatch",
            "--parsable",
            "-o",
            "/dev/null",
            "-p",
            part,
            "-w",
            "node6",
            "-t",
            "10",
            "--wrap",
            "sleep 300",
        ])
        .trim()
        .parse()
        .unwrap()
    };
    let keep = submit("batch");
    let low = submit("scavenger");
    let snap = wait_for(&a, 30, "both jobs running", |s| {
        [keep, low]
            .iter()
            .all(|id| s.jobs.iter().any(|j| j.id == *id && j.state == "RUNNING"))
    })
    .await;
    assert!(snap.jobs.iter().find(|j| j.id == low).unwrap().preemptable);
    assert!(!snap.jobs.iter().find(|j| j.id == keep).unwrap().preemptable);

    let err = a
        .client
        .execute(&Action::CancelJob {
            job_id: keep,
            node: "node6".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SlurmError::Refused { status: 409, .. }),
        "{err}"
    );
    a.client
        .execute(&Action::CancelJob {
            job_id: low,
            node: "node6".into(),
        })
        .await
        .unwrap();
    let snap = wait_for(&a, 30, "preemptable job gone", |s| {
        s.jobs.iter().all(|j| j.id != low)
    })
    .await;
    assert!(
        snap.jobs
            .iter()
            .any(|j| j.id == keep && j.state == "RUNNING"),
        "non-preemptable job still runs"
    );

    // A partition made after the agent cached partitions, then stripped of preemption: the
    // agent (partitions cached for 5 minutes) sees both at once.
    struct Spot(Vec<u64>);
    impl Drop for Spot {
        fn drop(&mut self) {
            for id in &self.0 {
                let _ = Command::new("scancel").arg(id.to_string()).status();
            }
            for _ in 0..50 {
                let gone = Command::new("scontrol")
                    .args(["delete", "PartitionName=spot"])
                    .status()
                    .is_ok_and(|s| s.success());
                if gone {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    let mut spot = Spot(vec![keep]);
    sh(&[
        "scontrol",
        "create",
        "PartitionName=spot",
        "Nodes=node6",
        "PriorityTier=1",
        "PreemptMode=CANCEL",
    ]);
    let cheap = submit("spot");
    spot.0.push(cheap);
    let snap = wait_for(&a, 30, "job in the new partition running", |s| {
        s.jobs.iter().any(|j| j.id == cheap && j.state == "RUNNING")
    })
    .await;
    assert!(snap.partitions.iter().any(|p| p.name == "spot"));
    assert!(
        snap.jobs
            .iter()
            .find(|j| j.id == cheap)
            .unwrap()
            .preemptable
    );
    sh(&[
        "scontrol",
        "update",
        "PartitionName=spot",
        "PreemptMode=OFF",
    ]);
    let snap = a.client.snapshot("batch").await.unwrap();
    let job = snap.jobs.iter().find(|j| j.id == cheap).unwrap();
    assert!(
        !job.preemptable,
        "PreemptMode=OFF is seen at once, not after the cache's TTL"
    );
    drop(spot);
}

/// Runs openssl in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A P-256 key and certificate signed by `ca` (or self-signed without one), with the
/// extensions in `ext` (an openssl extension file body).
fn certificate(dir: &std::path::Path, name: &str, cn: &str, ca: Option<&str>, ext: &str) {
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    let subj = format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subj,
        ],
    );
    let ext_file = format!("{name}.ext");
    let mut sign = vec![
        "x509", "-req", "-in", &csr, "-out", &pem, "-days", "2", "-extfile", &ext_file,
    ];
    match ca {
        Some(ca) => sign.extend(["-CA", ca, "-CAkey", "ca.key", "-CAcreateserial"]),
        None => sign.extend(["-key", key.as_str()]),
    }
    openssl(dir, &sign);
}

#[tokio::test]
async fn tls_with_client_certificates() {
    if !live() {
        return;
    }
    // Under the target dir, not /tmp: the agent may run in a chroot (own /tmp) that sees
    // the repository, target/ included, at the same path.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("slurm-maint-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=slurm-maint test CA",
        ],
    );
    certificate(
        &dir,
        "server",
        "127.0.0.1",
        Some("ca.pem"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    let client_ext = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n";
    certificate(&dir, "client", "controller", Some("ca.pem"), client_ext);
    certificate(&dir, "rogue", "controller", None, client_ext);
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let identity =
        |name: &str| [read(&format!("{name}.pem")), read(&format!("{name}.key"))].concat();
    let ca = read("ca.pem");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();

    let tls_client = |port: u16, identity: Option<&[u8]>| {
        AgentClient::with_tls(
            &format!("https://127.0.0.1:{port}"),
            TOKEN,
            Duration::from_secs(30),
            Some(&ca),
            identity,
        )
        .unwrap()
        .with_retries(0, Duration::ZERO)
    };
    let client_identity = identity("client");
    let proc = common::spawn_agent(
        TOKEN,
        &[
            "--tls-cert",
            &path("server.pem"),
            "--tls-key",
            &path("server.key"),
            "--tls-client-ca",
            &path("ca.pem"),
        ],
        |port| {
            let c = tls_client(port, Some(&client_identity));
            async move { c.snapshot("batch").await.is_ok() }
        },
    )
    .await;
    let port = proc.port;
    let base = format!("https://127.0.0.1:{port}");
    let client = |identity: Option<&[u8]>| tls_client(port, identity);
    let a = Agent {
        _proc: proc,
        base: base.clone(),
        client: client(Some(&client_identity)),
    };
    let snap = a.client.snapshot("batch").await.unwrap();
    assert_eq!(snap.nodes.len(), 6);

    // No client certificate, or one the CA did not sign: the handshake fails.
    for (what, c) in [
        ("no client certificate", client(None)),
        (
            "self-signed client certificate",
            client(Some(&identity("rogue"))),
        ),
    ] {
        let err = c.snapshot("batch").await.unwrap_err();
        assert!(matches!(err, SlurmError::Unreachable(_)), "{what}: {err}");
    }
    // Plain HTTP to the TLS port gets no answer.
    let plain = AgentClient::new(
        &format!("http://127.0.0.1:{port}"),
        TOKEN,
        Duration::from_secs(10),
    )
    .unwrap()
    .with_retries(0, Duration::ZERO);
    let err = plain.snapshot("batch").await.unwrap_err();
    assert!(matches!(err, SlurmError::Unreachable(_)), "{err}");
    // The bearer token is still required over TLS.
    let no_token = AgentClient::with_tls(
        &base,
        "wrong",
        Duration::from_secs(10),
        Some(&ca),
        Some(&identity("client")),
    )
    .unwrap();
    let err = no_token.snapshot("batch").await.unwrap_err();
    assert!(
        matches!(err, SlurmError::Refused { status: 401, .. }),
        "{err}"
    );
    // Failed handshakes did not stop the server.
    assert_eq!(a.client.snapshot("debug").await.unwrap().nodes.len(), 2);
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}
