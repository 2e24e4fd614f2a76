use super::*;
use crate::api::MaintenanceAction;
use crate::api::MaintenancePolicySpec;
use crate::api::node_maintenance::NodeMaintenancePhase as Phase;
use crate::plan::{self, Settings, Snapshot, Work};

fn cfg(nodes: usize, seed: u64) -> SimConfig {
    SimConfig {
        nodes,
        seed,
        ..SimConfig::default()
    }
}

fn node(sim: &SimCluster, name: &str) -> Node {
    sim.peek()
        .nodes
        .into_iter()
        .find(|n| n.name == name)
        .unwrap()
}

fn jobs_on(sim: &SimCluster, name: &str) -> Vec<Job> {
    sim.peek()
        .jobs
        .into_iter()
        .filter(|j| j.nodes[0] == name)
        .collect()
}

fn resv(name: &str, node: &str, start: Option<Timestamp>, flags: &[&str]) -> Action {
    Action::CreateReservation {
        name: name.into(),
        node: node.into(),
        with: vec![],
        start,
        duration: SignedDuration::from_hours(6),
        users: vec!["root".into()],
        accounts: vec![],
        flags: flags.iter().map(|f| f.to_string()).collect(),
    }
}

fn reboot(node: &str) -> Action {
    Action::Reboot {
        node: node.into(),
        reason: "slurm-maint: test".into(),
    }
}

/// Advance in one-minute steps until `done` or `limit` minutes have passed.
fn run_until(sim: &SimCluster, limit: i64, mut done: impl FnMut(&SimCluster) -> bool) {
    for _ in 0..limit {
        if done(sim) {
            return;
        }
        sim.advance(SignedDuration::from_mins(1));
    }
    assert!(done(sim), "condition not reached in {limit} minutes");
}

#[test]
fn deterministic_for_a_seed() {
    let run = |seed| {
        let sim = SimCluster::new(cfg(30, seed));
        sim.advance(SignedDuration::from_hours(30));
        sim.peek()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn jobs_end_and_new_ones_land() {
    let sim = SimCluster::new(SimConfig {
        idle_pct: 0.0,
        ..cfg(10, 3)
    });
    let before: BTreeSet<u64> = sim.peek().jobs.iter().map(|j| j.id).collect();
    assert_eq!(before.len(), 10);
    sim.advance(SignedDuration::from_hours(100));
    let snap = sim.peek();
    let after: BTreeSet<u64> = snap.jobs.iter().map(|j| j.id).collect();
    assert!(before.is_disjoint(&after), "all first jobs ended by now");
    // Every node is busy again: the workload keeps the cluster full.
    assert_eq!(snap.jobs.len(), 10);
    assert!(snap.nodes.iter().all(|n| n.state.base == "ALLOCATED"));
}

#[tokio::test]
async fn an_active_reservation_keeps_jobs_off() {
    let sim = SimCluster::new(cfg(4, 5));
    let n = "node001";
    let start = sim.now() + SignedDuration::from_hours(200);
    sim.execute(&resv(
        "slurm-maint-x",
        n,
        Some(start),
        &["MAINT", "IGNORE_JOBS"],
    ))
    .await
    .unwrap();
    sim.advance_to(start);
    assert!(
        jobs_on(&sim, n).is_empty(),
        "no job overlaps the reservation"
    );
    let st = node(&sim, n).state;
    assert!(st.has("MAINTENANCE") && st.has("RESERVED"), "{st}");
    assert_eq!(st.base, "IDLE");
    assert_eq!(node(&sim, n).reservation.as_deref(), Some("slurm-maint-x"));
    sim.advance(SignedDuration::from_hours(6));
    assert!(sim.peek().reservations.is_empty(), "expired");
    assert_eq!(jobs_on(&sim, n).len(), 1, "jobs land again");
}

#[tokio::test]
async fn reservation_rules() {
    let sim = SimCluster::new(SimConfig {
        preemptable_pct: 0.0,
        idle_pct: 0.0,
        ..cfg(3, 9)
    });
    let e = sim
        .execute(&resv("other", "node001", None, &["MAINT"]))
        .await;
    assert!(
        matches!(e, Err(SlurmError::Refused { status: 403, .. })),
        "{e:?}"
    );
    let e = sim
        .execute(&resv("slurm-maint-a", "node001", None, &["MAINT"]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Requested nodes are busy"), "{e}");
    sim.execute(&resv(
        "slurm-maint-a",
        "node001",
        None,
        &["MAINT", "IGNORE_JOBS"],
    ))
    .await
    .unwrap();
    let e = sim
        .execute(&resv(
            "slurm-maint-a",
            "node002",
            None,
            &["MAINT", "IGNORE_JOBS"],
        ))
        .await;
    assert!(
        matches!(e, Err(SlurmError::Refused { status: 409, .. })),
        "{e:?}"
    );
    let e = sim
        .execute(&Action::DeleteReservation {
            name: "maint_x".into(),
        })
        .await;
    assert!(
        matches!(e, Err(SlurmError::Refused { status: 403, .. })),
        "{e:?}"
    );
    let d = sim
        .execute(&Action::DeleteReservation {
            name: "slurm-maint-a".into(),
        })
        .await
        .unwrap();
    assert!(d.changed);
}

#[tokio::test]
async fn reboot_of_an_empty_node() {
    let sim = SimCluster::new(cfg(3, 11));
    let n = "node001";
    sim.execute(&resv("slurm-maint-r", n, None, &["MAINT", "IGNORE_JOBS"]))
        .await
        .unwrap();
    run_until(&sim, 200 * 60, |s| jobs_on(s, n).is_empty());
    let boot = node(&sim, n).boot_time.unwrap();
    sim.execute(&reboot(n)).await.unwrap();
    let st = node(&sim, n).state;
    assert!(
        st.base == "DOWN" && st.has("REBOOT_ISSUED") && st.has("DRAIN"),
        "{st}"
    );
    assert!(!sim.health_check(n).await.unwrap().healthy);
    sim.advance(SignedDuration::from_secs(400));
    let after = node(&sim, n);
    // As on Slurm 24.11, the reboot's reason outlives the reboot until it is cleared.
    assert!(
        after.state.in_service()
            && after
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("slurm-maint: ")),
        "{} {:?}",
        after.state,
        after.reason
    );
    assert!(after.boot_time.unwrap() > boot);
    assert!(sim.health_check(n).await.unwrap().healthy);
    assert_eq!(sim.stats().reboots_per_node[n], 1);
    let clear = Action::ClearReason { node: n.into() };
    assert!(sim.execute(&clear).await.unwrap().changed);
    assert_eq!(
        node(&sim, n).reason.as_deref(),
        Some(crate::agent::commands::DONE_REASON)
    );
    assert!(sim.execute(&clear).await.is_err(), "no reason of ours left");
}

#[tokio::test]
async fn reboot_asap_waits_for_the_job() {
    let sim = SimCluster::new(SimConfig {
        idle_pct: 0.0,
        job_mix: JobMix {
            short: 1.0,
            long: 0.0,
        },
        ..cfg(3, 13)
    });
    let n = "node002";
    let end = jobs_on(&sim, n)[0].end_time.unwrap();
    sim.execute(&reboot(n)).await.unwrap();
    let st = node(&sim, n).state;
    assert!(
        st.has("REBOOT_REQUESTED") && st.has("DRAIN") && st.base == "ALLOCATED",
        "{st}"
    );
    sim.advance_to(end - SignedDuration::from_secs(1));
    assert_eq!(jobs_on(&sim, n).len(), 1);
    sim.advance_to(end);
    let st = node(&sim, n).state;
    assert!(st.has("REBOOT_ISSUED"), "{st}");
    sim.advance(SignedDuration::from_secs(400));
    assert!(node(&sim, n).state.in_service());
    assert_eq!(sim.stats().non_preemptable_killed, 0);
}

#[tokio::test]
async fn fail_once_and_never_return() {
    for (fail_once, never) in [(1.0, 0.0), (0.0, 1.0)] {
        let sim = SimCluster::new(SimConfig {
            idle_pct: 1.0,
            reboot_fail_once_pct: fail_once,
            reboot_never_pct: never,
            ..cfg(2, 17)
        });
        let n = "node001";
        sim.execute(&reboot(n)).await.unwrap();
        sim.advance(SignedDuration::from_secs(461));
        let after = node(&sim, n);
        assert_eq!(after.state.base, "DOWN");
        assert!(!after.state.is_rebooting());
        if never > 0.0 {
            assert!(after.state.has("NOT_RESPONDING"), "{}", after.state);
        } else {
            assert_eq!(after.reason.as_deref(), Some("reboot timed out"));
        }
        sim.execute(&reboot(n)).await.unwrap();
        sim.advance(SignedDuration::from_secs(461));
        assert_eq!(
            node(&sim, n).state.in_service(),
            never == 0.0,
            "second reboot"
        );
        assert_eq!(sim.stats().reboots_per_node[n], 2);
    }
}

#[tokio::test]
async fn cancel_only_preemptable() {
    let sim = SimCluster::new(SimConfig {
        idle_pct: 0.0,
        preemptable_pct: 0.5,
        ..cfg(20, 19)
    });
    let jobs = sim.peek().jobs;
    let keep = jobs.iter().find(|j| !j.preemptable).unwrap();
    let e = sim
        .execute(&Action::CancelJob {
            job_id: keep.id,
            node: keep.nodes[0].clone(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SlurmError::Refused { status: 409, code, .. } if code == "NotPreemptable"),
        "{e}"
    );
    let go = jobs.iter().find(|j| j.preemptable).unwrap();
    assert_eq!(go.partition, "scavenger");
    sim.execute(&Action::CancelJob {
        job_id: go.id,
        node: go.nodes[0].clone(),
    })
    .await
    .unwrap();
    assert_eq!(sim.stats().preemptable_cancelled, 1);
}

#[tokio::test]
async fn snapshot_counts_commands_and_drain_resume() {
    let sim = SimCluster::new(SimConfig {
        down_at_start: 1,
        ..cfg(5, 23)
    });
    let snap = sim.snapshot("batch").await.unwrap();
    assert_eq!(sim.stats().commands, 4);
    assert_eq!(snap.nodes.len(), 5);
    assert_eq!(snap.partitions.len(), 2);
    assert!(
        snap.partitions
            .iter()
            .any(|p| p.name == "scavenger" && p.preempts())
    );
    let ops = &snap.nodes[4];
    assert!(ops.state.is_drained() && ops.reason.as_deref().unwrap().starts_with("ops"));
    let e = sim.resume("node005").await.unwrap_err();
    assert!(matches!(e, SlurmError::Refused { status: 409, .. }), "{e}");
    sim.drain("node001", "check").await.unwrap();
    assert_eq!(
        node(&sim, "node001").reason.as_deref(),
        Some("slurm-maint: check")
    );
    sim.resume("node001").await.unwrap();
    assert!(!node(&sim, "node001").state.is_drained());
}

/// The planner driving the simulator to the end of a campaign, within the budget.
#[tokio::test]
async fn planner_end_to_end() {
    for seed in [42, 1, 2, 3] {
        campaign(seed).await;
    }
}

async fn campaign(seed: u64) {
    let sim = SimCluster::new(SimConfig {
        down_at_start: 1,
        reboot_fail_once_pct: 0.15,
        ..cfg(20, seed)
    });
    let start = sim.now();
    let mut spec: MaintenancePolicySpec = serde_json::from_value(serde_json::json!({
        "partition": "batch",
        "agent": {"url": "http://agent", "tokenSecretRef": {"name": "t"}},
        "budget": {"maxUnavailablePercent": 10},
        "reservations": {"enabled": true},
        "reboots": {"enabled": true},
        "preemption": {"terminatePreemptableJobs": true},
    }))
    .unwrap();
    spec.campaign.reboot_required_before = Some(start);
    let initial = sim.peek();
    let down_at_start: BTreeSet<String> = initial
        .nodes
        .iter()
        .filter(|n| !n.state.in_service())
        .map(|n| n.name.clone())
        .collect();
    let mut work: Vec<Work> = vec![];
    let settings = Settings::from_spec(&spec, start).unwrap();
    let (allowed, max_attempts) = (settings.limit.allowed(20), settings.max_attempts);
    let mut passes = 0;
    loop {
        passes += 1;
        assert!(passes < 60 * 24 * 30, "campaign did not finish in 30 days");
        let now = sim.now();
        let s = Settings::from_spec(&spec, now).unwrap();
        let snap = sim.snapshot("batch").await.unwrap();
        let mut health = BTreeMap::new();
        for w in work.iter().filter(|w| w.status.phase == Phase::HealthCheck) {
            health.insert(w.node.clone(), sim.health_check(&w.node).await.unwrap());
        }
        let snapshot = Snapshot {
            nodes: snap.nodes,
            jobs: snap.jobs,
            reservations: snap.reservations,
            health,
            topology: snap.topology,
        };
        let p = plan::plan("p", &s, &snapshot, &work, now);
        assert_eq!(p.budget.allowed, allowed);
        for nw in &p.new_work {
            work.push(Work {
                name: nw.name.clone(),
                node: nw.node.clone(),
                action: MaintenanceAction::Reboot,
                campaign: Some(nw.campaign.clone()),
                status: Default::default(),
                oci: None,
            });
        }
        for u in &p.updates {
            let w = work.iter_mut().find(|w| w.name == u.name).unwrap();
            w.status = u.status.clone();
            for a in &u.actions {
                sim.execute(a)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", a.describe()));
            }
        }
        sim.sample();
        let ours = || work.iter().filter(|w| !down_at_start.contains(&w.node));
        if !work.is_empty() && ours().all(|w| w.status.phase.is_terminal()) {
            break;
        }
        sim.advance(SignedDuration::from_mins(1));
        sim.sample();
    }
    let stats = sim.stats();
    assert_eq!(work.len(), 20);
    // Nodes drained by ops are left alone (still Pending), never rebooted.
    for w in work.iter().filter(|w| down_at_start.contains(&w.node)) {
        assert_eq!(w.status.phase, Phase::Pending, "{}", w.node);
        assert!(!stats.reboots_per_node.contains_key(&w.node));
    }
    let completed = work
        .iter()
        .filter(|w| w.status.phase == Phase::Completed)
        .count();
    assert_eq!(
        completed,
        19,
        "{:#?}",
        work.iter()
            .map(|w| (&w.node, w.status.phase))
            .collect::<Vec<_>>()
    );
    assert!(
        stats.max_unavailable_or_down <= allowed.max(down_at_start.len()),
        "{} out, {allowed} allowed",
        stats.max_unavailable_or_down
    );
    assert!(stats.reboots_per_node.values().all(|r| *r <= max_attempts));
    assert_eq!(stats.non_preemptable_killed, 0);
    eprintln!(
        "campaign seed {seed}: {passes} passes, {:?} virtual, {} commands, stats {stats:?}",
        sim.now().duration_since(start),
        stats.commands
    );
}
