//! The agent binary under load and abuse, against the live Slurm 22.05 cluster
//! (`tests/slurm/cluster.sh up`; runs when `SLURM_MAINT_LIVE=1`, as `tests/run.sh` sets).
//!
//! - Hostile values (shell metacharacters, NUL and control characters, long and Unicode
//!   strings, option-like names) in every field of every route are refused with 400, and
//!   a recorder in front of the Slurm commands (first in the agent's `PATH`) proves that
//!   none of them ran a command.
//! - Bodies over the size limit are refused with 413; clients that stall in their
//!   headers or body are cut off, and meanwhile others are served.
//! - N concurrent clients: requests/s and latency (printed as a table); every request
//!   answered, a snapshot still three or four Slurm commands.
//!
//! `SLURM_MAINT_LOAD_SCALE=N` multiplies the load test's request counts (default 1).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

const TOKEN: &str = "abuse-test-token";

/// The Slurm commands the agent runs.
const SLURM_COMMANDS: &[&str] = &["scontrol", "squeue", "sinfo", "scancel"];

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A directory of wrappers, one per Slurm command, each appending its command line to
/// `log` (one line per call) and then running the real command.
struct Recorder {
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Recorder {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("invocations.log");
        std::fs::write(&log, "").unwrap();
        for name in SLURM_COMMANDS {
            let real = which(name).unwrap_or_else(|| panic!("{name} is not in PATH"));
            let script = format!(
                "#!/bin/sh\nline=$(printf '%s\\037' \"$0\" \"$@\")\nprintf '%s\\n' \"$line\" >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                real.display()
            );
            let path = dir.path().join(name);
            std::fs::write(&path, script).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self { dir, log }
    }

    /// `PATH` for the agent: the wrappers first.
    fn path(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// Command lines run so far, arguments separated by US.
    fn invocations(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The agent with the recorder first in its `PATH`, ready once `/healthz` answers 200.
async fn recorded_agent(recorder: &Recorder, extra: &[&str]) -> common::AgentProc {
    let path = recorder.path();
    common::spawn_agent_with_env(TOKEN, extra, &[("PATH", &path)], |port| async move {
        http()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
}

async fn plain_agent(extra: &[&str]) -> common::AgentProc {
    common::spawn_agent(TOKEN, extra, |port| async move {
        http()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
}

/// Percent-encode every byte but letters and digits, so any string is one path segment.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Values no name may carry: shell metacharacters, NUL and other control characters,
/// whitespace, option- and path-like names, long and Unicode strings.
fn hostile_names() -> Vec<String> {
    let mut v: Vec<String> = [
        "node1;touch /tmp/slurm-maint-pwned",
        "$(touch /tmp/slurm-maint-pwned)",
        "`id`",
        "node1|id",
        "node1&&id",
        "node1>out",
        "node1<in",
        "node1'",
        "node1\"",
        "node1\\",
        "node1*",
        "node1\nnode2",
        "node1\rX",
        "node\u{0}1",
        "node1\u{7f}",
        "node1\t",
        " node1",
        "node1 ",
        "-rf",
        "--help",
        ".",
        "..",
        "../../etc/passwd",
        "nöde1",
        "узел1",
        "節點1",
        "node1\u{202e}",
        "node1\u{200b}",
        "🔥",
        "node1=x",
        "NodeName=node1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("n".repeat(65));
    v.push("n".repeat(100_000 / 4));
    v
}

/// Values no reason may carry (a reason is free text, so `-`, `.` and `*` are fine).
fn hostile_reasons() -> Vec<String> {
    let mut v: Vec<String> = [
        "kernel; reboot",
        "$(id)",
        "`id`",
        "a | b",
        "a && b",
        "it's",
        "say \"hi\"",
        "a\\b",
        "line\nbreak",
        "nul\u{0}byte",
        "bell\u{7}",
        "tab\there",
        "naïve",
        "очистка",
        "⚠ update",
        "   ",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("r".repeat(257));
    v
}

/// One refused request: what it was, and what came back.
struct Case {
    what: String,
    method: reqwest::Method,
    path: String,
    body: Option<serde_json::Value>,
}

fn cases() -> Vec<Case> {
    use serde_json::json;
    let mut cases = vec![];
    let mut add = |what: String, method: &str, path: String, body: Option<serde_json::Value>| {
        cases.push(Case {
            what,
            method: method.parse().unwrap(),
            path,
            body,
        })
    };
    let reservation = json!({
        "name": "slurm-maint-abuse",
        "nodes": ["node1"],
        "users": ["root"],
        "accounts": [],
        "flags": ["MAINT"],
        "start": "now",
        "durationMinutes": 5,
    });
    for h in hostile_names() {
        let s = segment(&h);
        // A URL's `.` and `..` segments (even percent-encoded) are resolved by the client
        // before sending: as path parameters they never reach the agent.
        let in_path = h != "." && h != "..";
        let mut add =
            |what: String, method: &str, path: String, body: Option<serde_json::Value>| {
                if in_path || !path.contains(&s) {
                    add(what, method, path, body)
                }
            };
        add(
            format!("partition {h:?}"),
            "GET",
            format!("/v1/partitions/{s}/snapshot"),
            None,
        );
        for action in ["resume", "clear-reason", "health"] {
            add(
                format!("{action} node {h:?}"),
                "POST",
                format!("/v1/nodes/{s}/{action}"),
                None,
            );
        }
        add(
            format!("drain node {h:?}"),
            "POST",
            format!("/v1/nodes/{s}/drain"),
            Some(json!({"reason": "kernel update"})),
        );
        add(
            format!("reboot node {h:?}"),
            "POST",
            format!("/v1/nodes/{s}/reboot"),
            Some(json!({"reason": "kernel update"})),
        );
        add(
            format!("job {h:?}"),
            "POST",
            format!("/v1/jobs/{s}/cancel"),
            None,
        );
        add(
            format!("delete reservation {h:?}"),
            "DELETE",
            format!("/v1/reservations/{s}"),
            None,
        );
        add(
            format!("update reservation {h:?}"),
            "PATCH",
            format!("/v1/reservations/{s}"),
            Some(json!({"durationMinutes": 10})),
        );
        for (field, value) in [
            ("name", json!(h)),
            ("nodes", json!([h])),
            ("nodes", json!(["node1", h])),
            ("users", json!([h])),
            ("accounts", json!([h])),
            ("flags", json!([h])),
            ("start", json!(h)),
            ("durationMinutes", json!(h)),
        ] {
            let mut body = reservation.clone();
            body[field] = value.clone();
            add(
                format!("create reservation {field}={value}"),
                "POST",
                "/v1/reservations".into(),
                Some(body),
            );
        }
        for (field, value) in [
            ("nodes", json!([h])),
            ("start", json!(h)),
            ("durationMinutes", json!(h)),
        ] {
            add(
                format!("update reservation {field}={value}"),
                "PATCH",
                "/v1/reservations/slurm-maint-abuse".into(),
                Some(json!({ field: value })),
            );
        }
        add(
            format!("reboot nextState {h:?}"),
            "POST",
            "/v1/nodes/node1/reboot".into(),
            Some(json!({"reason": "kernel update", "nextState": h})),
        );
    }
    for r in hostile_reasons() {
        for action in ["drain", "reboot"] {
            add(
                format!("{action} reason {r:?}"),
                "POST",
                format!("/v1/nodes/node1/{action}"),
                Some(json!({ "reason": r })),
            );
        }
    }
    for id in ["0", "-1", "1e3", "0x10", "18446744073709551616", "1.5"] {
        add(
            format!("job {id:?}"),
            "POST",
            format!("/v1/jobs/{}/cancel", segment(id)),
            None,
        );
    }
    for (what, body) in [
        ("hostlist too large", json!({"nodes": ["node[1-100000]"]})),
        ("nested hostlist", json!({"nodes": ["node[1-[2-3]]"]})),
        ("duration 0", json!({"durationMinutes": 0})),
        ("duration too long", json!({"durationMinutes": 10_000_000})),
        ("negative duration", json!({"durationMinutes": -5})),
        ("nothing to change", json!({})),
    ] {
        add(
            format!("update reservation: {what}"),
            "PATCH",
            "/v1/reservations/slurm-maint-abuse".into(),
            Some(body),
        );
    }
    let mut no_owner = reservation.clone();
    no_owner["users"] = json!([]);
    add(
        "create reservation without users or accounts".into(),
        "POST",
        "/v1/reservations".into(),
        Some(no_owner),
    );
    cases
}

/// Every field of every route, with every hostile value: 400, and the recorder saw no
/// command run for any of them (while it does see the commands of a valid request).
#[tokio::test]
async fn hostile_values_in_every_field_are_400_and_never_reach_a_command() {
    if !common::live() {
        return;
    }
    let recorder = Recorder::new();
    let agent = recorded_agent(&recorder, &[]).await;
    let base = format!("http://127.0.0.1:{}", agent.port);
    let client = http();

    // The control: a valid request runs commands, and the recorder sees them.
    let before = recorder.invocations().len();
    let r = client
        .get(format!("{base}/v1/partitions/batch/snapshot"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let seen = recorder.invocations();
    assert!(
        seen.len() >= before + 3 && seen[before..].iter().any(|l| l.contains("squeue")),
        "the recorder did not see the snapshot's commands: {seen:?}"
    );

    let before = recorder.invocations();
    let cases = cases();
    let mut wrong = vec![];
    for case in &cases {
        let mut request = client
            .request(case.method.clone(), format!("{base}{}", case.path))
            .bearer_auth(TOKEN);
        if let Some(body) = &case.body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let code = body["code"].as_str().unwrap_or_default().to_string();
        if status != 400 || !["InvalidName", "InvalidValue", "BadRequest"].contains(&code.as_str())
        {
            wrong.push(format!("{}: {status} {body}", case.what));
        }
    }
    let after = recorder.invocations();
    assert!(
        wrong.is_empty(),
        "{} of {} hostile requests not refused with 400:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    assert_eq!(
        after[before.len()..],
        [] as [String; 0],
        "hostile requests ran commands"
    );
    assert!(!Path::new("/tmp/slurm-maint-pwned").exists());
    eprintln!(
        "{} hostile requests over {} routes: all 400, no command run",
        cases.len(),
        10
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    if !common::live() {
        return;
    }
    let recorder = Recorder::new();
    let agent = recorded_agent(&recorder, &[]).await;
    let before = recorder.invocations().len();
    let url = format!("http://127.0.0.1:{}/v1/nodes/node1/drain", agent.port);
    let reason = "x".repeat(1 << 20);
    let r = http()
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "reason": reason }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "PayloadTooLarge", "{body}");

    // A body larger than its Content-Length claims, sent chunked: counted as it comes.
    let mut tcp = TcpStream::connect(("127.0.0.1", agent.port)).await.unwrap();
    let head = format!(
        "POST /v1/nodes/node1/drain HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 8192, " ".repeat(8192));
    for _ in 0..16 {
        if tcp.write_all(chunk.as_bytes()).await.is_err() {
            break; // refused and closed before we were done
        }
    }
    let answer = read_answer(&mut tcp, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(recorder.invocations().len(), before, "a command ran");
}

/// What the server sent until it closed the connection (or `deadline` passed).
async fn read_answer(tcp: &mut TcpStream, deadline: Duration) -> String {
    let mut buf = vec![];
    let _ = tokio::time::timeout(deadline, tcp.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Clients that stall in their headers or their body: each is cut off after
/// `--request-timeout`, and while all of them stall, other clients are served.
#[tokio::test]
async fn slow_clients_time_out_without_holding_others() {
    if !common::live() {
        return;
    }
    const TIMEOUT_S: u64 = 8;
    const SLOW: usize = 40;
    let agent = plain_agent(&["--request-timeout", &format!("{TIMEOUT_S}s")]).await;
    let port = agent.port;
    let started = Instant::now();
    let mut slow = vec![];
    for i in 0..SLOW {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let partial = if i % 2 == 0 {
            // headers that never end
            "POST /v1/nodes/node1/drain HTTP/1.1\r\nHost: x\r\n".to_string()
        } else {
            // a body that never comes in full
            format!(
                "POST /v1/nodes/node1/drain HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"reason\""
            )
        };
        tcp.write_all(partial.as_bytes()).await.unwrap();
        slow.push(tcp);
    }

    // Others are served while every slow client still holds its connection.
    let client = http();
    let mut latencies = vec![];
    for _ in 0..20 {
        let t = Instant::now();
        let r = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        latencies.push(t.elapsed());
    }
    let served_at = started.elapsed();

    let mut cut = vec![];
    for (i, mut tcp) in slow.into_iter().enumerate() {
        let answer = read_answer(&mut tcp, Duration::from_secs(60)).await;
        let when = started.elapsed();
        if i % 2 == 1 {
            assert!(
                answer.starts_with("HTTP/1.1 408"),
                "stalled body: {answer:?}"
            );
            assert!(answer.contains("RequestTimeout"), "{answer}");
        } else {
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
                "stalled headers: {answer:?}"
            );
        }
        cut.push(when);
    }
    let last_cut = cut.iter().max().unwrap();
    assert!(
        served_at < *cut.iter().min().unwrap(),
        "others were served only after the slow clients were cut off ({served_at:?})"
    );
    assert!(
        *last_cut < Duration::from_secs(60),
        "a slow client was never cut off"
    );
    latencies.sort();
    eprintln!(
        "{SLOW} stalled clients (half in headers, half in the body), --request-timeout {TIMEOUT_S}s: \
         20 other requests served meanwhile (median {:?}, max {:?}); all stalled ones cut off \
         within {:?} of connecting",
        latencies[latencies.len() / 2],
        latencies.last().unwrap(),
        last_cut
    );
}

/// Figures for one level of concurrency.
struct Level {
    route: &'static str,
    clients: usize,
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    commands: usize,
}

impl Level {
    fn row(&self) -> String {
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
            self.latencies[i].as_secs_f64() * 1000.0
        };
        format!(
            "| {:<10} | {:>7} | {:>8} | {:>8.1} | {:>8.1} | {:>8.1} | {:>8.1} | {:>13} |",
            self.route,
            self.clients,
            self.requests,
            self.requests as f64 / self.elapsed.as_secs_f64(),
            pct(0.5),
            pct(0.95),
            pct(0.99),
            if self.commands == 0 {
                "0".to_string()
            } else {
                format!("{:.2}", self.commands as f64 / self.requests as f64)
            }
        )
    }
}

async fn load(
    base: &str,
    recorder: &Recorder,
    route: &'static str,
    path: &str,
    clients: usize,
    per_client: usize,
) -> Level {
    let client = http();
    let before = recorder.invocations().len();
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let client = client.clone();
            let url = format!("{base}{path}");
            tokio::spawn(async move {
                let mut latencies = vec![];
                for _ in 0..per_client {
                    let t = Instant::now();
                    let r = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
                    let status = r.status();
                    let body = r.bytes().await.unwrap();
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = vec![];
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Level {
        route,
        clients,
        requests: clients * per_client,
        elapsed,
        latencies,
        commands: recorder.invocations().len() - before,
    }
}

/// N concurrent clients on a snapshot (real Slurm commands), `/healthz` (`scontrol
/// ping`) and `/metrics` (no command): all answered 200; a snapshot stays three or four
/// commands however many clients ask at once.
#[tokio::test]
async fn concurrent_clients_are_all_served() {
    if !common::live() {
        return;
    }
    let scale: usize = std::env::var("SLURM_MAINT_LOAD_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let recorder = Recorder::new();
    let agent = recorded_agent(&recorder, &[]).await;
    let base = format!("http://127.0.0.1:{}", agent.port);
    let mut rows = vec![];
    for clients in [1, 8, 32] {
        let per_client = (64 / clients).max(2) * scale;
        let level = load(
            &base,
            &recorder,
            "snapshot",
            "/v1/partitions/batch/snapshot",
            clients,
            per_client,
        )
        .await;
        let per_request = level.commands as f64 / level.requests as f64;
        assert!(
            (3.0..=4.0).contains(&per_request),
            "{per_request} commands per snapshot with {clients} clients"
        );
        rows.push(level);
    }
    for clients in [8, 64] {
        rows.push(load(&base, &recorder, "healthz", "/healthz", clients, 4 * scale).await);
    }
    for clients in [1, 16, 64] {
        let per_client = (2048 / clients) * scale;
        let level = load(&base, &recorder, "metrics", "/metrics", clients, per_client).await;
        assert_eq!(level.commands, 0);
        rows.push(level);
    }
    eprintln!(
        "\nagent under load (Slurm 22.05 on this host, real commands; latency in ms):\n\
         | route      | clients | requests |    req/s |      p50 |      p95 |      p99 | commands/req  |\n\
         |------------|---------|----------|----------|----------|----------|----------|---------------|"
    );
    for r in &rows {
        eprintln!("{}", r.row());
    }
}
