//! `spec.blockers` against a real Prometheus (Debian's `prometheus`): the controller binary
//! runs a rolling-reboot campaign on the live Slurm 22.05 cluster through the agent binary,
//! on the real API server (`SLURM_MAINT_E2E_KUBECONFIG`), with an alert as its blocker.
//! The alert's rule reads a gauge this test serves on a loopback port (Prometheus scrapes
//! it every second), so the test decides when the alert fires:
//!
//! 1. alert firing: work is created but none leaves Pending, for many passes; the status
//!    says which alert blocks (condition Blocked/AlertsFiring, the waiting nodes' note);
//! 2. alert resolved: work starts;
//! 3. Prometheus stopped: the node in flight finishes, the next one does not start,
//!    Blocked/PrometheusUnreachable with the connection error;
//! 4. Prometheus back, nothing firing: the campaign completes, never more than allowed out.
//!
//! Runs when `SLURM_MAINT_LIVE=1` and a real API server is given (tests/run.sh's live phase
//! on 22.05).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use slurm_maint::api::condition::{Condition, ConditionStatus};
use slurm_maint::api::{MaintenancePolicy, NodeMaintenance, NodeMaintenancePhase as Phase};
use slurm_maint::apiserver::harness::TestCluster;
use slurm_maint::plan::status::{condition_type, reason};
use slurm_maint::slurm::client::SlurmClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "blockers-live-token";
const ALERT: &str = "SlurmMaintTestBlocker";
const ALLOWED: usize = 1;
const NODES: [&str; 2] = ["node4", "node5"];
/// Passes watched while work must stay held.
const HELD_PASSES: usize = 4;

/// The gauge Prometheus scrapes, `blockers_test_block`: 1 while `block` is set. Served
/// until the test ends.
async fn serve_gauge(block: Arc<AtomicBool>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let v = u8::from(block.load(Ordering::SeqCst));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = 0;
                while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") && got < buf.len() {
                    match s.read(&mut buf[got..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n,
                    }
                }
                let body = format!("# TYPE blockers_test_block gauge\nblockers_test_block {v}\n");
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

/// Debian's Prometheus on `port`, scraping the gauge every second, with the blocker rule.
fn start_prometheus(bin: &str, dir: &Path, port: u16) -> common::Proc {
    common::Proc(
        Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The state of `ALERT` in Prometheus (`pending`, `firing`), `None` when inactive, and
/// `Err` while Prometheus does not answer.
async fn alert_state(base: &str) -> Result<Option<String>, ()> {
    let r = http()
        .get(format!("{base}/api/v1/alerts"))
        .send()
        .await
        .map_err(|_| ())?;
    let body: Value = r.json().await.map_err(|_| ())?;
    if body["status"] != "success" {
        return Err(());
    }
    Ok(body["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["labels"]["alertname"] == ALERT)
        .and_then(|a| a["state"].as_str().map(String::from)))
}

/// Out of service for our maintenance: in our reservation, rebooting, or drained by us.
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

struct Watch {
    policies: Api<MaintenancePolicy>,
    works: Api<NodeMaintenance>,
    slurm: slurm_maint::slurm::client::AgentClient,
    most_out: usize,
    samples: usize,
    started: Instant,
}

impl Watch {
    /// One sample: Slurm's view (for the budget), the policy and its work.
    async fn sample(&mut self) -> (MaintenancePolicy, Vec<NodeMaintenance>) {
        if let Ok(snap) = self.slurm.snapshot("batch").await {
            self.most_out = self
                .most_out
                .max(snap.nodes.iter().filter(|n| out_for_us(n)).count());
            self.samples += 1;
        }
        let p = self.policies.get("blockers").await.unwrap();
        let w = self.works.list(&ListParams::default()).await.unwrap().items;
        (p, w)
    }

    /// Sample every second until `done` holds, or panic after `secs` with `what`.
    async fn until<F>(&mut self, secs: u64, what: &str, mut done: F) -> MaintenancePolicy
    where
        F: FnMut(&MaintenancePolicy, &[NodeMaintenance]) -> bool,
    {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (p, w) = self.sample().await;
            if done(&p, &w) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {secs} s ({:?} into the test): {what}\npolicy status: {:#?}\nwork: {:#?}",
                self.started.elapsed(),
                p.status,
                w.iter()
                    .map(|w| (w.name_any(), w.status.as_ref().map(|s| s.phase)))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Watch `passes` more passes of the controller (by `status.lastPass`), asserting
    /// `hold` on every sample meanwhile.
    async fn holds_for<F>(&mut self, passes: usize, what: &str, mut hold: F)
    where
        F: FnMut(&MaintenancePolicy, &[NodeMaintenance]) -> Result<(), String>,
    {
        let mut seen = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(30 + 15 * passes as u64);
        loop {
            let (p, w) = self.sample().await;
            if let Err(e) = hold(&p, &w) {
                panic!("{what}: {e}\npolicy status: {:#?}", p.status);
            }
            if let Some(t) = p.status.as_ref().and_then(|s| s.last_pass) {
                seen.insert(t);
            }
            if seen.len() > passes {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {} passes seen in time: {what}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn blocked(p: &MaintenancePolicy) -> Option<Condition> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == condition_type::BLOCKED)
        .cloned()
}

/// Every node of the plan preview waits, naming the alert (from the pass after the one
/// that created their work: work created in a pass is previewed without a note).
fn waiting_name_the_alert(p: &MaintenancePolicy) -> Result<(), String> {
    let st = p.status.as_ref().ok_or("no status")?;
    if st.next.is_empty()
        || st
            .next
            .iter()
            .any(|n| !n.waiting.as_deref().is_some_and(|why| why.contains(ALERT)))
    {
        return Err(format!(
            "a waiting node does not name the alert: {:?}",
            st.next
        ));
    }
    Ok(())
}

fn phases(w: &[NodeMaintenance]) -> Vec<Phase> {
    w.iter()
        .map(|w| w.status.as_ref().map_or(Phase::Pending, |s| s.phase))
        .collect()
}

#[tokio::test]
async fn blocking_alerts_hold_new_work_in_a_real_prometheus() {
    if !common::live() {
        return;
    }
    if std::env::var("SLURM_MAINT_E2E_KUBECONFIG").is_err() {
        eprintln!(
            "skipped: needs a real API server (SLURM_MAINT_E2E_KUBECONFIG), as the live phase gives"
        );
        return;
    }
    let prometheus_bin = ["/usr/bin/prometheus", "/usr/sbin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("Debian's prometheus is not installed (tests/run.sh installs it)");
    let work_dir = tempfile::tempdir().unwrap();
    let dir: PathBuf = work_dir.path().into();

    // The gauge, set: the alert will fire.
    let block = Arc::new(AtomicBool::new(true));
    let gauge_port = serve_gauge(block.clone()).await;
    std::fs::write(
        dir.join("rules.yaml"),
        format!(
            "groups:\n  - name: blockers-test\n    rules:\n      - alert: {ALERT}\n        expr: blockers_test_block == 1\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: gauge\n    static_configs:\n      - targets: ['127.0.0.1:{gauge_port}']\n",
            dir.join("rules.yaml").display()
        ),
    )
    .unwrap();
    let prom_port = common::free_port();
    let base = format!("http://127.0.0.1:{prom_port}");
    let mut prometheus = Some(start_prometheus(prometheus_bin, &dir, prom_port));
    let deadline = Instant::now() + Duration::from_secs(90);
    while alert_state(&base).await != Ok(Some("firing".into())) {
        assert!(
            Instant::now() < deadline,
            "{ALERT} did not fire in Prometheus within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let (_agent, url, slurm) = common::start_agent(TOKEN).await;
    let boot_before = common::resume_and_boot_times(&slurm, &NODES, "batch").await;
    let campaign = Timestamp::now();
    let c = TestCluster::start("blockers").await;
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
            .args([
                "--lease-namespace",
                &c.namespace,
                "--identity",
                "blockers-0",
            ])
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
        "metadata": {"name": "blockers"},
        "spec": {
            "partition": "batch",
            "nodelist": "node[4-5]",
            "agent": {"url": url, "tokenSecretRef": {"name": "agent-token"}},
            "budget": {"maxUnavailable": ALLOWED, "reservationLeadTime": "0s"},
            "reservations": {"enabled": true, "duration": "1h"},
            "reboots": {"enabled": true, "timeout": "2m"},
            "interval": "5s",
            "campaign": {"rebootRequiredBefore": campaign.to_string()},
            "blockers": {"prometheusUrl": base, "alerts": ["SomeOtherAlert", ALERT], "timeout": "2s"},
        }
    }))
    .unwrap();
    let policies: Api<MaintenancePolicy> = Api::namespaced(c.client.clone(), &c.namespace);
    policies
        .patch(
            "blockers",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&policy),
        )
        .await
        .unwrap();
    let mut watch = Watch {
        policies,
        works: Api::namespaced(c.client.clone(), &c.namespace),
        slurm,
        most_out: 0,
        samples: 0,
        started: Instant::now(),
    };

    // 1. Firing: the work exists, Pending, the status names the alert.
    let p = watch
        .until(
            120,
            "Blocked/AlertsFiring with both nodes' work Pending",
            |p, w| {
                w.len() == 2
                    && blocked(p).is_some_and(|b| {
                        b.status == ConditionStatus::True && b.reason == reason::ALERTS_FIRING
                    })
                    && waiting_name_the_alert(p).is_ok()
            },
        )
        .await;
    let b = blocked(&p).unwrap();
    assert!(
        b.message.contains(ALERT) && !b.message.contains("SomeOtherAlert"),
        "{}",
        b.message
    );
    watch
        .holds_for(HELD_PASSES, "while the alert fires", |p, w| {
            if phases(w).iter().any(|ph| *ph != Phase::Pending) {
                return Err(format!("work left Pending: {:?}", phases(w)));
            }
            waiting_name_the_alert(p)
        })
        .await;
    let reservations = watch.slurm.snapshot("batch").await.unwrap().reservations;
    assert!(
        reservations
            .iter()
            .all(|r| !r.name.starts_with("slurm-maint")),
        "a reservation was made while blocked: {reservations:?}"
    );
    let held_for = watch.started.elapsed();

    // 2. Resolved: work starts.
    block.store(false, Ordering::SeqCst);
    let resolved = Instant::now();
    watch
        .until(120, "work starts once the alert is resolved", |p, w| {
            blocked(p).is_some_and(|b| b.reason == reason::NO_ALERTS_FIRING)
                && phases(w).iter().any(|ph| *ph != Phase::Pending)
        })
        .await;
    let started_after = resolved.elapsed();

    // 3. Prometheus gone: the node in flight finishes, the other waits, the status says why.
    drop(prometheus.take());
    let p = watch
        .until(
            240,
            "Blocked/PrometheusUnreachable, one node Completed, the other Pending",
            |p, w| {
                let mut ph = phases(w);
                ph.sort();
                blocked(p).is_some_and(|b| b.reason == reason::PROMETHEUS_UNREACHABLE)
                    && ph == [Phase::Pending, Phase::Completed]
            },
        )
        .await;
    let b = blocked(&p).unwrap();
    assert_eq!(b.status, ConditionStatus::True);
    assert!(
        b.message.contains(&format!("127.0.0.1:{prom_port}")),
        "{}",
        b.message
    );
    watch
        .holds_for(HELD_PASSES, "while Prometheus is down", |p, w| {
            let ph = phases(w);
            if ph.iter().filter(|ph| **ph == Phase::Pending).count() != 1 {
                return Err(format!("the second node started: {ph:?}"));
            }
            match blocked(p) {
                Some(b) if b.reason == reason::PROMETHEUS_UNREACHABLE => Ok(()),
                other => Err(format!("Blocked is {other:?}")),
            }
        })
        .await;

    // 4. Prometheus back, nothing firing: the campaign completes.
    prometheus = Some(start_prometheus(prometheus_bin, &dir, prom_port));
    let done = watch
        .until(300, "the campaign completes", |p, _| {
            p.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.r#type == condition_type::PROGRESSING && c.reason == reason::CAMPAIGN_COMPLETE
                })
            })
        })
        .await;
    eprintln!(
        "blockers: held {HELD_PASSES}+ passes while {ALERT} fired ({held_for:?}); work started \
         {started_after:?} after the alert was resolved; held {HELD_PASSES}+ passes while \
         Prometheus was down; campaign complete at {:?}; at most {} node(s) out ({ALLOWED} \
         allowed) in {} one-second samples",
        watch.started.elapsed(),
        watch.most_out,
        watch.samples
    );
    assert!(watch.most_out <= ALLOWED, "{} out", watch.most_out);
    let st = done.status.unwrap();
    assert_eq!((st.phases.completed, st.nodes_needing_work), (2, 2));
    let after = watch.slurm.snapshot("batch").await.unwrap();
    for nm in watch
        .works
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        let s = nm.status.unwrap();
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
            n.boot_time > boot_before[&n.name] && n.state.in_service(),
            "{}: {:?} {}",
            n.name,
            n.boot_time,
            n.state
        );
    }
    drop(prometheus);
    c.cleanup().await;
}
