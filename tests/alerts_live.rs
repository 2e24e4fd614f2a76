//! The chart's alerts in a real Prometheus (Debian's `prometheus`): it scrapes the real
//! controller binary, which reconciles a policy on the real API server
//! (`SLURM_MAINT_E2E_KUBECONFIG`, tests/k8s/apiserver.sh) through the real agent on the live
//! Slurm 22.05 cluster; the rules are the ones the chart renders (tests/alerts/rules.sh).
//! The agent is killed mid-run: SlurmMaintAgentUnreachable must not fire while it answers,
//! and must fire once it is gone. Runs when `SLURM_MAINT_LIVE=1` and a real API server is
//! given (as tests/run.sh does in its live phase on 22.05).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use slurm_maint::api::MaintenancePolicy;
use slurm_maint::apiserver::harness::TestCluster;

const TOKEN: &str = "alerts-live-token";
const ALERT: &str = "SlurmMaintAgentUnreachable";

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `GET` a Prometheus API path; its `data`, or `None` while Prometheus does not answer.
async fn prometheus(base: &str, path: &str) -> Option<Value> {
    let r = http().get(format!("{base}{path}")).send().await.ok()?;
    let body: Value = r.json().await.ok()?;
    (body["status"] == "success").then(|| body["data"].clone())
}

/// The state of `ALERT` in Prometheus (`pending`, `firing`), if it is active.
async fn alert_state(base: &str) -> Option<String> {
    let data = prometheus(base, "/api/v1/alerts").await?;
    data["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == ALERT)
        .and_then(|a| a["state"].as_str().map(String::from))
}

/// Poll `cond` every 500 ms until it holds, or panic after `secs` with `what`.
async fn until<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn agent_unreachable_fires_in_a_real_prometheus() {
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
    let repo = env!("CARGO_MANIFEST_DIR");
    let work = tempfile::tempdir().unwrap();

    // The rules as the chart renders them, with windows short enough for a test.
    let rules = work.path().join("rules.yaml");
    let out = Command::new("bash")
        .arg(format!("{repo}/tests/alerts/rules.sh"))
        .arg("render")
        .arg(&rules)
        .arg(format!("{repo}/tests/alerts/e2e-values.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rendering the rules: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (agent, url, _slurm) = common::start_agent(TOKEN).await;
    let c = TestCluster::start("alerts").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "agent-token"},
        "stringData": {"token": TOKEN}
    }))
    .unwrap();
    Api::<Secret>::namespaced(c.client.clone(), &c.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let metrics_port = common::free_port();
    let kubeconfig = std::env::var("SLURM_MAINT_E2E_KUBECONFIG").unwrap();
    let _controller = common::Proc(
        Command::new(env!("CARGO_BIN_EXE_slurm-maint"))
            .args(["controller", "--namespace", &c.namespace])
            .args(["--lease-namespace", &c.namespace, "--identity", "alerts-0"])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Safe by default: no reservations, no reboots; the controller only watches.
    let policy: MaintenancePolicy = serde_json::from_value(json!({
        "apiVersion": "slurm-maint.io/v1alpha1",
        "kind": "MaintenancePolicy",
        "metadata": {"name": "alerts"},
        "spec": {
            "partition": "batch",
            "agent": {"url": url, "tokenSecretRef": {"name": "agent-token"}},
            "interval": "5s",
        }
    }))
    .unwrap();
    Api::<MaintenancePolicy>::namespaced(c.client.clone(), &c.namespace)
        .patch(
            "alerts",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&policy),
        )
        .await
        .unwrap();

    // Prometheus on a free port, scraping the controller every second.
    let prom_port = common::free_port();
    let config = work.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: slurm-maint\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let _prometheus = common::Proc(
        Command::new(prometheus_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{prom_port}");
    until(60, "Prometheus loads the chart's rules", || async {
        prometheus(&base, "/api/v1/rules").await.is_some_and(|d| {
            d["groups"][0]["rules"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["name"] == ALERT))
        })
    })
    .await;

    // While the agent answers: snapshots succeed in Prometheus' eyes, no alert.
    let ok = "/api/v1/query?query=slurm_maint_slurm_calls_total%7Bverb%3D%22snapshot%22%2Coutcome%3D%22ok%22%7D";
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut first_ok = None;
    loop {
        let v = prometheus(&base, ok).await;
        let n = v.and_then(|d| d["result"][0]["value"][1].as_str()?.parse::<f64>().ok());
        first_ok = first_ok.or(n);
        if n.zip(first_ok).is_some_and(|(n, first)| n >= first + 3.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus saw no successful snapshots within 120 s (last: {n:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        alert_state(&base).await,
        None,
        "{ALERT} is active while the agent answers"
    );

    // The agent goes away: the alert goes pending, then fires.
    drop(agent);
    let killed = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut pending_at = None;
    loop {
        let state = alert_state(&base).await;
        if state.as_deref() == Some("pending") && pending_at.is_none() {
            pending_at = Some(killed.elapsed());
        }
        if state.as_deref() == Some("firing") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ALERT} did not fire within 240 s of the agent's end (state {state:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let fired = killed.elapsed();
    eprintln!(
        "agent killed: {ALERT} pending after {:?}, firing after {fired:?} (rules: window 30s, for 5s; scrape and evaluation every 1s)",
        pending_at.unwrap_or_default()
    );
    c.cleanup().await;
}
