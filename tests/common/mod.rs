//! Shared by the live tests: the agent binary on a loopback port, against the cluster
//! `tests/slurm/cluster.sh up` starts.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use slurm_maint::slurm::client::{AgentClient, SlurmClient};

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether the live tests run (`SLURM_MAINT_LIVE=1`, set by `tests/run.sh`).
pub fn live() -> bool {
    let on = std::env::var("SLURM_MAINT_LIVE").as_deref() == Ok("1");
    if !on {
        eprintln!("skipped: set SLURM_MAINT_LIVE=1 with a running cluster (tests/run.sh does)");
    }
    on
}

/// Start the agent on `port` with `token`; returns it with its URL and a client, once it
/// answers a snapshot.
pub async fn start_agent(port: u16, token: &str) -> (Proc, String, AgentClient) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let agent = Proc(
        Command::new(env!("CARGO_BIN_EXE_slurm-maint"))
            .args(["agent", "--listen", &format!("127.0.0.1:{port}")])
            .env("SLURM_MAINT_AGENT_TOKEN", token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let slurm = AgentClient::new(&url, token, Duration::from_secs(30)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while slurm.snapshot("batch").await.is_err() {
        assert!(Instant::now() < deadline, "agent did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (agent, url, slurm)
}
