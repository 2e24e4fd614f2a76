//! Parsers against a live Slurm 22.05 (the cluster `tests/slurm/cluster.sh up` starts).
//! Runs when `SLURM_MAINT_LIVE=1` (set by `tests/run.sh`); skipped otherwise.

use std::process::Command;

use jiff::tz::TimeZone;
use slurm_maint::slurm::parse;

fn live() -> bool {
    if std::env::var("SLURM_MAINT_LIVE").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipped: set SLURM_MAINT_LIVE=1 with a running cluster (tests/run.sh does)");
    false
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run Slurm command");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn live_cluster_parses_consistently() {
    if !live() {
        return;
    }
    let tz = TimeZone::system();
    let partitions =
        parse::scontrol_partitions(&run(&["scontrol", "show", "partition", "-o"])).unwrap();
    let preempting = parse::preempting_partitions(&partitions);
    assert!(
        preempting.contains(&"scavenger".to_string()),
        "{partitions:?}"
    );

    // A preemptable job with a limit, and a non-preemptable one without.
    let submit = |args: &[&str]| -> u64 {
        let mut cmd = vec!["sbatch", "--parsable", "-o", "/dev/null"];
        cmd.extend_from_slice(args);
        run(&cmd).trim().split(';').next().unwrap().parse().unwrap()
    };
    let low = submit(&[
        "-p",
        "scavenger",
        "-t",
        "10",
        "-J",
        "live-low",
        "--wrap",
        "sleep 120",
    ]);
    let long = submit(&[
        "-p",
        "batch",
        "-t",
        "UNLIMITED",
        "-J",
        "live-long",
        "--wrap",
        "sleep 120",
    ]);
    let mut jobs = vec![];
    for _ in 0..50 {
        jobs = parse::scontrol_jobs(&run(&["scontrol", "show", "job", "-o"]), &tz, &preempting)
            .unwrap();
        if jobs
            .iter()
            .filter(|j| [low, long].contains(&j.id) && j.is_active())
            .count()
            == 2
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let j_low = jobs.iter().find(|j| j.id == low).unwrap();
    let j_long = jobs.iter().find(|j| j.id == long).unwrap();
    assert!(j_low.is_active() && j_long.is_active(), "{jobs:?}");
    assert!(j_low.preemptable && !j_long.preemptable);
    assert_eq!(j_long.end_time, None, "UNLIMITED has no end");
    assert_eq!(j_low.time_limit_secs, Some(600));
    let end = j_low.end_time.unwrap();
    let start = j_low.start_time.unwrap();
    assert_eq!(end.duration_since(start).as_secs(), 600);
    // Local times read in the system zone land near now.
    assert!(jiff::Timestamp::now().duration_since(start).as_secs().abs() < 120);

    let sq = parse::squeue_json(&run(&["squeue", "--json"]), &preempting).unwrap();
    let q_low = sq.iter().find(|j| j.id == low).unwrap();
    let q_long = sq.iter().find(|j| j.id == long).unwrap();
    assert_eq!(
        (q_low.end_time, q_low.nodes.clone(), q_low.preemptable),
        (j_low.end_time, j_low.nodes.clone(), true)
    );
    assert_eq!((q_long.end_time, q_long.preemptable), (None, false));

    // The agent's narrow listing says what --json says.
    let argv = slurm_maint::agent::commands::squeue_jobs();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let narrow = parse::squeue_narrow(&run(&argv), &tz, &preempting).unwrap();
    for (q, id) in [(q_low, low), (q_long, long)] {
        assert_eq!(narrow.iter().find(|j| j.id == id), Some(q));
    }
    // Active jobs are what the planner reads; 22.05's --json also lists finished ones,
    // 24.11+ leave them out, as the narrow listing's `-t all` keeps them.
    let ids = |jobs: &[slurm_maint::slurm::Job]| {
        let mut v: Vec<u64> = jobs
            .iter()
            .filter(|j| j.is_active())
            .map(|j| j.id)
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&narrow), ids(&sq));

    let nodes = parse::scontrol_nodes(&run(&["scontrol", "show", "node", "-o"]), &tz).unwrap();
    let sinfo = parse::sinfo_json(&run(&["sinfo", "--json"])).unwrap();
    assert!(nodes.len() >= 4);
    let mut a: Vec<_> = nodes
        .iter()
        .map(|n| (&n.name, n.boot_time, n.state.class()))
        .collect();
    // 24.11+ group nodes in sinfo --json, without boot times.
    let grouped = sinfo.iter().all(|n| n.boot_time.is_none());
    let mut b: Vec<_> = sinfo
        .iter()
        .map(|n| (&n.name, n.boot_time, n.state.class()))
        .collect();
    if grouped {
        for (_, boot, _) in a.iter_mut() {
            *boot = None;
        }
    }
    a.sort();
    b.sort();
    assert_eq!(
        a, b,
        "scontrol and sinfo --json agree on names, boot times and classes"
    );
    assert!(
        nodes
            .iter()
            .all(|n| n.boot_time.is_some() && n.name.starts_with("node"))
    );

    run(&["scancel", &low.to_string(), &long.to_string()]);
}
