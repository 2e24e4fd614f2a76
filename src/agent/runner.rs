//! Running command lines: the [`Runner`] trait, the real [`ProcessRunner`], and the
//! [`Counting`] and [`Canned`] runners for tests.

use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

/// What a finished command printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOutput {
    pub stdout: String,
    pub stderr: String,
    /// Exit code; `None` if killed by a signal.
    pub code: Option<i32>,
    pub duration: Duration,
}

impl CommandOutput {
    /// Exited with 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout of a successful command; otherwise [`SlurmError::Failed`] with the
    /// command's own message (stderr, else stdout).
    pub fn into_result(self, argv: &[String]) -> Result<String, SlurmError> {
        if self.success() {
            return Ok(self.stdout);
        }
        let message = [self.stderr.trim(), self.stdout.trim()]
            .into_iter()
            .find(|m| !m.is_empty())
            .unwrap_or("no output")
            .to_string();
        Err(SlurmError::Failed {
            command: argv.join(" "),
            code: self.code,
            message,
        })
    }
}

/// A command that did not do its job.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlurmError {
    #[error("`{command}` could not be started: {message}")]
    Spawn { command: String, message: String },
    #[error("`{command}` did not finish within {}s and was killed", .timeout.as_secs_f64())]
    Timeout { command: String, timeout: Duration },
    /// Non-zero exit; `message` is Slurm's own.
    #[error("`{command}` failed ({}): {message}", exit(.code))]
    Failed {
        command: String,
        code: Option<i32>,
        message: String,
    },
}

fn exit(code: &Option<i32>) -> String {
    code.map_or("killed by a signal".into(), |c| format!("exit code {c}"))
}

impl SlurmError {
    fn message(&self) -> &str {
        match self {
            Self::Failed { message, .. } => message,
            _ => "",
        }
    }

    /// Slurm said the job, node or reservation does not exist.
    pub fn is_not_found(&self) -> bool {
        let m = self.message();
        [
            "Invalid job id",
            "not found",
            "Requested reservation is invalid",
        ]
        .iter()
        .any(|p| m.contains(p))
    }

    /// Slurm said the reservation exists already.
    pub fn is_already_exists(&self) -> bool {
        self.message().contains("Duplicate reservation name")
    }
}

/// Runs a command line (argv, never a shell) and returns what it printed. `Err` only
/// when it could not be started or timed out; a non-zero exit is an `Ok` output.
pub trait Runner: Send + Sync {
    fn run<'a>(&'a self, argv: &'a [String]) -> BoxFuture<'a, Result<CommandOutput, SlurmError>>;

    /// [`Runner::run`] with its own timeout instead of the runner's (a health check's);
    /// runners without timeouts ignore it.
    fn run_for<'a>(
        &'a self,
        argv: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<CommandOutput, SlurmError>> {
        let _ = timeout;
        self.run(argv)
    }
}

/// Runs commands as child processes with a timeout, killing them when it expires.
/// Logs every call (argv, duration, exit code).
#[derive(Clone, Debug)]
pub struct ProcessRunner {
    timeout: Duration,
}

impl ProcessRunner {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl Runner for ProcessRunner {
    fn run<'a>(&'a self, argv: &'a [String]) -> BoxFuture<'a, Result<CommandOutput, SlurmError>> {
        self.run_for(argv, self.timeout)
    }

    fn run_for<'a>(
        &'a self,
        argv: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<CommandOutput, SlurmError>> {
        Box::pin(async move {
            let command = argv.join(" ");
            let Some((program, args)) = argv.split_first() else {
                return Err(SlurmError::Spawn {
                    command,
                    message: "empty command line".into(),
                });
            };
            let started = Instant::now();
            // Its own process group, so a timeout also ends what it started (ssh, ipmitool
            // wrappers), not just the direct child.
            let child = tokio::process::Command::new(program)
                .args(args)
                // The parsers read ISO times: a SLURM_TIME_FORMAT in the agent's
                // environment (relative, or a strftime format) would break every time.
                .env("SLURM_TIME_FORMAT", "standard")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true)
                .spawn();
            let child = match child {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(?argv, error = %e, "command could not be started");
                    return Err(SlurmError::Spawn {
                        command,
                        message: e.to_string(),
                    });
                }
            };
            let group = child.id();
            let result = tokio::time::timeout(timeout, child.wait_with_output()).await;
            if result.is_err()
                && let Some(pgid) = group
            {
                // SAFETY: kill(2) with a negative pid signals the process group we created.
                unsafe {
                    libc::kill(-(pgid as libc::pid_t), libc::SIGKILL);
                }
            }
            let duration = started.elapsed();
            let duration_ms = duration.as_millis() as u64;
            match result {
                Err(_) => {
                    tracing::warn!(?argv, duration_ms, "command timed out and was killed");
                    Err(SlurmError::Timeout { command, timeout })
                }
                Ok(Err(e)) => {
                    tracing::warn!(?argv, duration_ms, error = %e, "command could not be started");
                    Err(SlurmError::Spawn {
                        command,
                        message: e.to_string(),
                    })
                }
                Ok(Ok(out)) => {
                    let code = out.status.code();
                    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                    if code == Some(0) {
                        tracing::info!(?argv, duration_ms, exit_code = code, "command");
                    } else {
                        tracing::warn!(?argv, duration_ms, exit_code = code, stderr = %stderr.trim(), "command failed");
                    }
                    Ok(CommandOutput {
                        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                        stderr,
                        code,
                        duration,
                    })
                }
            }
        })
    }
}

/// Wraps a runner and records every command line it is given.
#[derive(Debug, Default)]
pub struct Counting<R> {
    inner: R,
    seen: Mutex<Vec<Vec<String>>>,
}

impl<R> Counting<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            seen: Mutex::default(),
        }
    }

    /// Commands run so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The command lines run so far, in order.
    pub fn commands(&self) -> Vec<Vec<String>> {
        self.seen.lock().unwrap().clone()
    }

    /// Forget the commands seen.
    pub fn reset(&self) {
        self.seen.lock().unwrap().clear();
    }
}

impl<R: Runner> Runner for Counting<R> {
    fn run<'a>(&'a self, argv: &'a [String]) -> BoxFuture<'a, Result<CommandOutput, SlurmError>> {
        self.seen.lock().unwrap().push(argv.to_vec());
        self.inner.run(argv)
    }

    fn run_for<'a>(
        &'a self,
        argv: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<CommandOutput, SlurmError>> {
        self.seen.lock().unwrap().push(argv.to_vec());
        self.inner.run_for(argv, timeout)
    }
}

/// Answers commands from canned outputs: the first rule whose argv prefix matches wins;
/// anything else exits 1 with "no canned output".
#[derive(Clone, Debug, Default)]
pub struct Canned {
    rules: Vec<(Vec<String>, CommandOutput)>,
}

impl Canned {
    pub fn new() -> Self {
        Self::default()
    }

    /// Commands starting with `prefix` print `stdout` and exit 0.
    pub fn ok(self, prefix: &[&str], stdout: impl Into<String>) -> Self {
        self.output(
            prefix,
            CommandOutput {
                stdout: stdout.into(),
                code: Some(0),
                ..Default::default()
            },
        )
    }

    /// Commands starting with `prefix` print `stderr` and exit with `code`.
    pub fn fail(self, prefix: &[&str], code: i32, stderr: impl Into<String>) -> Self {
        self.output(
            prefix,
            CommandOutput {
                stderr: stderr.into(),
                code: Some(code),
                ..Default::default()
            },
        )
    }

    /// Commands starting with `prefix` produce `output`.
    pub fn output(mut self, prefix: &[&str], output: CommandOutput) -> Self {
        self.rules
            .push((prefix.iter().map(|s| s.to_string()).collect(), output));
        self
    }
}

impl Runner for Canned {
    fn run<'a>(&'a self, argv: &'a [String]) -> BoxFuture<'a, Result<CommandOutput, SlurmError>> {
        let out = self
            .rules
            .iter()
            .find(|(prefix, _)| argv.starts_with(prefix))
            .map(|(_, out)| out.clone())
            .unwrap_or_else(|| CommandOutput {
                stderr: format!("no canned output for {argv:?}"),
                code: Some(1),
                ..Default::default()
            });
        Box::pin(async move { Ok(out) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn runs_argv_and_reports_exit_codes() {
        let r = ProcessRunner::new(Duration::from_secs(10));
        let a = argv(&["echo", "a;b", "$(x)"]);
        let out = r.run(&a).await.unwrap();
        assert_eq!(
            out.stdout, "a;b $(x)\n",
            "arguments reach the program verbatim"
        );
        assert_eq!(out.clone().into_result(&a).unwrap(), "a;b $(x)\n");

        let a = argv(&["ls", "/nonexistent-slurm-maint"]);
        let out = r.run(&a).await.unwrap();
        assert!(!out.success());
        match out.into_result(&a).unwrap_err() {
            SlurmError::Failed { code, message, .. } => {
                assert_eq!(code, Some(2));
                assert!(message.contains("nonexistent-slurm-maint"), "{message}");
            }
            e => panic!("{e:?}"),
        }
    }

    #[tokio::test]
    async fn slurm_prints_standard_times_whatever_the_environment() {
        let r = ProcessRunner::new(Duration::from_secs(10));
        let out = r
            .run(&argv(&["sh", "-c", "echo \"$SLURM_TIME_FORMAT\""]))
            .await
            .unwrap();
        assert_eq!(out.stdout, "standard\n");
    }

    /// A timeout ends the whole process group, not just the direct child.
    #[tokio::test]
    async fn timeout_kills_grandchildren() {
        let dir = std::env::temp_dir().join(format!("runner-pg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let r = ProcessRunner::new(Duration::from_millis(500));
        assert!(matches!(
            r.run(&argv(&["sh", "-c", &script])).await,
            Err(SlurmError::Timeout { .. })
        ));
        let pid = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .to_string();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split(' ').nth(2).is_none_or(|st| st != "Z"))
            .unwrap_or(false);
        assert!(!alive, "grandchild {pid} survived the timeout");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn kills_on_timeout() {
        let r = ProcessRunner::new(Duration::from_millis(200));
        let started = Instant::now();
        let e = r.run(&argv(&["sleep", "5"])).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            e.to_string(),
            "`sleep 5` did not finish within 0.2s and was killed"
        );
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let r = ProcessRunner::new(Duration::from_secs(1));
        let e = r.run(&argv(&["/no/such/slurm-maint"])).await.unwrap_err();
        assert!(matches!(e, SlurmError::Spawn { .. }), "{e:?}");
        assert!(matches!(
            r.run(&[]).await.unwrap_err(),
            SlurmError::Spawn { .. }
        ));
    }

    #[tokio::test]
    async fn counting_and_canned() {
        let r = Counting::new(Canned::new().ok(&["scontrol", "ping"], "UP").fail(
            &["scancel"],
            1,
            "scancel: error: Invalid job id specified",
        ));
        let out = r.run(&argv(&["scontrol", "ping"])).await.unwrap();
        assert_eq!(out.stdout, "UP");
        let a = argv(&["scancel", "9"]);
        let e = r.run(&a).await.unwrap().into_result(&a).unwrap_err();
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "`scancel 9` failed (exit code 1): scancel: error: Invalid job id specified"
        );
        assert!(!r.run(&argv(&["sinfo"])).await.unwrap().success());
        assert_eq!(r.count(), 3);
        assert_eq!(r.commands()[1], a);
    }
}
