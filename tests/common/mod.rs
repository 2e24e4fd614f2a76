//! Shared by the live tests: the agent binary on a free loopback port, against the cluster
//! `tests/slurm/cluster.sh up` (Slurm 22.05 on the host) or `tests/slurm/chroot.sh up
//! 24.11|26.05` starts. For a chroot cluster, `chroot.sh env` sets
//! `SLURM_MAINT_AGENT_WRAPPER` (the agent then runs inside the chroot, next to that Slurm's
//! own commands) and puts wrappers for scontrol, sinfo, sbatch, ... first in `PATH`.
#![allow(dead_code)] // each test crate uses its own part

use std::future::Future;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
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

/// `slurm-maint` as the agent runs in the live tests: the binary itself, or that binary
/// given to `$SLURM_MAINT_AGENT_WRAPPER` (which runs it inside a Slurm chroot).
pub fn agent_command() -> Command {
    let bin = env!("CARGO_BIN_EXE_slurm-maint");
    match std::env::var_os("SLURM_MAINT_AGENT_WRAPPER").filter(|w| !w.is_empty()) {
        Some(wrapper) => {
            let mut c = Command::new(wrapper);
            c.arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

/// A loopback port nothing listens on at this moment (the kernel's pick for port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Bytes of the agent's stderr kept (the newest).
const STDERR_KEEP: usize = 256 * 1024;

/// The agent process, its port, and what it wrote to stderr. Killed when dropped; when
/// dropped by a failing test, the end of its stderr is printed.
pub struct AgentProc {
    child: Child,
    pub port: u16,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl AgentProc {
    /// What the agent wrote to stderr so far (the last 256 KiB).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Its exit status, once it has exited; all of its stderr is read by then.
    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().ok().flatten()?;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        Some(status)
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let err = self.stderr();
            let tail = &err[err.len().saturating_sub(8192)..];
            eprintln!(
                "--- agent on port {} (stderr, last {} bytes) ---\n{tail}",
                self.port,
                tail.len()
            );
        }
    }
}

fn spawn_once(port: u16, token: &str, extra: &[&str], env: &[(&str, &str)]) -> AgentProc {
    let mut cmd = agent_command();
    cmd.args(["agent", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .envs(env.iter().copied())
        .env("SLURM_MAINT_AGENT_TOKEN", token)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run the agent ({cmd:?}): {e}"));
    let mut pipe = child.stderr.take().unwrap();
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let sink = stderr.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut kept = sink.lock().unwrap();
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > STDERR_KEEP {
                let cut = kept.len() - STDERR_KEEP;
                kept.drain(..cut);
            }
        }
    });
    AgentProc {
        child,
        port,
        stderr,
        reader: Some(reader),
    }
}

/// Start `slurm-maint agent --listen 127.0.0.1:<free port> EXTRA...` with `token`, and
/// return it once `ready(port)` says so. Should another process take the port between
/// our pick and the agent's bind, it starts again on another one. Panics with the agent's
/// own stderr when it exits, or is not ready within 15 s.
pub async fn spawn_agent<F, Fut>(token: &str, extra: &[&str], ready: F) -> AgentProc
where
    F: Fn(u16) -> Fut,
    Fut: Future<Output = bool>,
{
    spawn_agent_with_env(token, extra, &[], ready).await
}

/// [`spawn_agent`] with extra environment variables for the agent (e.g. its `PATH`).
pub async fn spawn_agent_with_env<F, Fut>(
    token: &str,
    extra: &[&str],
    env: &[(&str, &str)],
    ready: F,
) -> AgentProc
where
    F: Fn(u16) -> Fut,
    Fut: Future<Output = bool>,
{
    let _ = rustls::crypto::ring::default_provider().install_default();
    for attempt in 1..=5 {
        let port = free_port();
        let mut agent = spawn_once(port, token, extra, env);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if ready(port).await {
                return agent;
            }
            if let Some(status) = agent.exited() {
                let err = agent.stderr();
                if err.contains("cannot listen on") && attempt < 5 {
                    eprintln!("agent: port {port} was taken meanwhile, trying another");
                    break;
                }
                panic!(
                    "the agent exited ({status}) before it was ready on port {port}{}\n\
                     --- agent stderr ---\n{err}",
                    wrapper_note()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "the agent was not ready on port {port} within 15 s (is SLURM_CONF set, \
                     is the cluster up?){}\n--- agent stderr ---\n{}",
                    wrapper_note(),
                    agent.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    unreachable!("every attempt either returns, panics or tries again")
}

fn wrapper_note() -> String {
    match std::env::var("SLURM_MAINT_AGENT_WRAPPER") {
        Ok(w) if !w.is_empty() => format!(" (run through SLURM_MAINT_AGENT_WRAPPER={w})"),
        _ => String::new(),
    }
}

/// Start the agent with `token`; returns it with its URL and a client, once it answers a
/// snapshot.
pub async fn start_agent(token: &str) -> (AgentProc, String, AgentClient) {
    start_agent_with(token, &[]).await
}

/// [`start_agent`] with extra agent options.
pub async fn start_agent_with(token: &str, extra: &[&str]) -> (AgentProc, String, AgentClient) {
    let agent = spawn_agent(token, extra, |port| {
        let token = token.to_string();
        async move {
            let url = format!("http://127.0.0.1:{port}");
            let Ok(c) = AgentClient::new(&url, &token, Duration::from_secs(30)) else {
                return false;
            };
            c.with_retries(0, Duration::ZERO)
                .snapshot("batch")
                .await
                .is_ok()
        }
    })
    .await;
    let url = format!("http://127.0.0.1:{}", agent.port);
    let slurm = AgentClient::new(&url, token, Duration::from_secs(30)).unwrap();
    (agent, url, slurm)
}

/// Start the agent with `token` again on `port` (where a policy's URL points), once it
/// answers a snapshot. Panics with its stderr when it does not within 15 s (e.g. another
/// process took the port meanwhile).
pub async fn restart_agent_on(token: &str, port: u16) -> AgentProc {
    let mut agent = spawn_once(port, token, &[], &[]);
    let url = format!("http://127.0.0.1:{port}");
    let client = AgentClient::new(&url, token, Duration::from_secs(30))
        .unwrap()
        .with_retries(0, Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(15);
    while client.snapshot("batch").await.is_err() {
        if let Some(status) = agent.exited() {
            panic!(
                "the agent exited ({status}) on port {port}\n--- agent stderr ---\n{}",
                agent.stderr()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the agent was not ready on port {port} within 15 s\n--- agent stderr ---\n{}",
            agent.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent
}

/// Every node of `nodes` back in service (an earlier test may have left one down), then
/// each node of `partition` with its boot time now.
pub async fn resume_and_boot_times(
    slurm: &AgentClient,
    nodes: &[&str],
    partition: &str,
) -> std::collections::BTreeMap<String, Option<jiff::Timestamp>> {
    for n in nodes {
        let _ = Command::new("scontrol")
            .args(["update", &format!("NodeName={n}"), "State=RESUME"])
            .output();
    }
    slurm
        .snapshot(partition)
        .await
        .unwrap()
        .nodes
        .into_iter()
        .map(|n| (n.name, n.boot_time))
        .collect()
}

/// A local HTTP receiver for the health-check webhook on a free loopback port: records
/// each POST's JSON body and answers with the next status of `answers` (200 after them).
pub struct WebhookReceiver {
    pub url: String,
    pub bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    pub async fn start(answers: Vec<u16>) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/tickets", listener.local_addr().unwrap());
        let bodies: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let seen = bodies.clone();
        let task = tokio::spawn(async move {
            let mut answers = answers.into_iter();
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let Ok(n) = conn.read(&mut chunk).await else {
                        break None;
                    };
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Some(buf[end + 4..end + 4 + len].to_vec());
                    }
                };
                let Some(body) = body else { continue };
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null));
                let status = answers.next().unwrap_or(200);
                let reply = format!(
                    "HTTP/1.1 {status} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = conn.write_all(reply.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
        Self { url, bodies, task }
    }

    /// The bodies received so far.
    pub fn received(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
